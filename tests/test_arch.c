/* test_arch.c — shape inference, tensor names/offsets, error messages and initialisation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/rng.h"
#include "testutil.h"

/* conv(->20,k3,s2) relu conv(->40,k3,s2) relu avg_pool(6) linear(->20) relu linear(->K), built by
 * hand so this test does not depend on the config module. */
static poet_arch reference_arch(int classes) {
    poet_arch a;
    memset(&a, 0, sizeof a);
    strcpy(a.name, "reference");
    poet_layer_spec l[] = {
        conv(20, 3, 2, 0), relu(), conv(40, 3, 2, 0), relu(), pool(POET_LAYER_AVG_POOL, 6, 6, 0),
        linear(20),        relu(), linear(classes)};
    a.n_layers = (int)(sizeof l / sizeof l[0]);
    memcpy(a.layers, l, sizeof l);
    return a;
}

static void check_shape(int layer, poet_shape got, int c, int h, int w) {
    TEST_CHECK(got.c == c && got.h == h && got.w == w, "layer %d: got %dx%dx%d, expected %dx%dx%d",
               layer, got.c, got.h, got.w, c, h, w);
}

static void test_reference_plan(void) {
    poet_arch a = reference_arch(10);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){1, 28, 28}, 10, "model.architecture", &plan));
    TEST_CHECK(plan.n_layers == 8, "n_layers %d", plan.n_layers);
    check_shape(0, plan.layers[0].out, 20, 13, 13);
    check_shape(1, plan.layers[1].out, 20, 13, 13);
    check_shape(2, plan.layers[2].out, 40, 6, 6);
    check_shape(4, plan.layers[4].out, 40, 1, 1);
    check_shape(5, plan.layers[5].out, 20, 1, 1);
    check_shape(7, plan.layers[7].out, 10, 1, 1);
    TEST_CHECK(plan.layers[5].kernel_h == 1 && plan.layers[5].kernel_w == 1, "linear kernel %dx%d",
               plan.layers[5].kernel_h, plan.layers[5].kernel_w);
    TEST_CHECK(plan.layers[4].kernel_h == 6 && plan.layers[4].stride == 6, "avg pool k%d s%d",
               plan.layers[4].kernel_h, plan.layers[4].stride);

    size_t expect = 20 * 9 + 20 + 40 * 20 * 9 + 40 + 20 * 40 + 20 + 10 * 20 + 10;
    TEST_CHECK(plan.param_count == expect, "param_count %zu, expected %zu", plan.param_count,
               expect);

    struct {
        const char *name;
        int ndims;
        int64_t dims[4];
        size_t offset;
        int fan_in;
    } want[] = {
        {"conv1.weight", 4, {20, 1, 3, 3}, 0, 9},      {"conv1.bias", 1, {20}, 180, 9},
        {"conv2.weight", 4, {40, 20, 3, 3}, 200, 180}, {"conv2.bias", 1, {40}, 200 + 7200, 180},
        {"fc1.weight", 2, {20, 40}, 7440, 40},         {"fc1.bias", 1, {20}, 7440 + 800, 40},
        {"fc2.weight", 2, {10, 20}, 8260, 20},         {"fc2.bias", 1, {10}, 8460, 20},
    };
    TEST_CHECK(plan.n_tensors == 8, "n_tensors %d", plan.n_tensors);
    for (int t = 0; t < 8 && t < plan.n_tensors; t++) {
        const poet_tensor_info *info = &plan.tensors[t];
        TEST_CHECK(strcmp(info->name, want[t].name) == 0, "tensor %d name %s, expected %s", t,
                   info->name, want[t].name);
        TEST_CHECK(info->ndims == want[t].ndims, "%s ndims %d", info->name, info->ndims);
        size_t count = 1;
        for (int d = 0; d < want[t].ndims; d++) {
            TEST_CHECK(info->dims[d] == want[t].dims[d], "%s dim %d = %lld, expected %lld",
                       info->name, d, (long long)info->dims[d], (long long)want[t].dims[d]);
            count *= (size_t)want[t].dims[d];
        }
        TEST_CHECK(info->count == count, "%s count %zu", info->name, info->count);
        TEST_CHECK(info->offset == want[t].offset, "%s offset %zu, expected %zu", info->name,
                   info->offset, want[t].offset);
        TEST_CHECK(info->fan_in == want[t].fan_in, "%s fan_in %d, expected %d", info->name,
                   info->fan_in, want[t].fan_in);
    }
    int wt[] = {0, -1, 2, -1, -1, 4, -1, 6};
    for (int i = 0; i < 8; i++)
        TEST_CHECK(plan.layers[i].weight_tensor == wt[i], "layer %d weight_tensor %d, expected %d",
                   i, plan.layers[i].weight_tensor, wt[i]);

    /* conv1 2·20·13·13·9 + bias, relu, conv2 2·40·6·6·180 + bias, relu, pool 40·36, fc's. */
    double flops = (2.0 * 20 * 169 * 9 + 20 * 169) + 20 * 169 + (2.0 * 40 * 36 * 180 + 40 * 36) +
                   40 * 36 + 40 * 36 + (2.0 * 20 * 40 + 20) + 20 + (2.0 * 10 * 20 + 10);
    TEST_CHECK(fabs(plan.forward_flops - flops) < 0.5, "forward_flops %.0f, expected %.0f",
               plan.forward_flops, flops);

    char text[256];
    poet_arch_describe(&a, text, sizeof text);
    printf("reference: %s\n", text);
    TEST_CHECK(strcmp(text, "conv(20,k3,s2) relu conv(40,k3,s2) relu avg_pool(k6,s6) linear(20) "
                            "relu linear(10)") == 0,
               "describe: %s", text);
    char small[12];
    poet_arch_describe(&a, small, sizeof small);
    TEST_CHECK(strlen(small) < sizeof small, "describe overflowed");
}

/* Padding, stride, max pool with padding, global pool and linear after a spatial layer. */
static void test_other_layers(void) {
    poet_arch a;
    memset(&a, 0, sizeof a);
    poet_layer_spec l[] = {conv(4, 3, 1, 1), pool(POET_LAYER_MAX_POOL, 3, 2, 1), relu(),
                           conv(6, 2, 1, 0), global_pool(POET_LAYER_AVG_POOL),   linear(3)};
    a.n_layers = 6;
    memcpy(a.layers, l, sizeof l);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){2, 7, 9}, 3, "x", &plan));
    check_shape(0, plan.layers[0].out, 4, 7, 9);
    check_shape(1, plan.layers[1].out, 4, 4, 5); /* (7+2-3)/2+1 = 4, (9+2-3)/2+1 = 5 */
    check_shape(3, plan.layers[3].out, 6, 3, 4);
    check_shape(4, plan.layers[4].out, 6, 1, 1);
    TEST_CHECK(plan.layers[4].kernel_h == 3 && plan.layers[4].kernel_w == 4 &&
                   plan.layers[4].stride == 1 && plan.layers[4].padding == 0,
               "global pool k%dx%d s%d p%d", plan.layers[4].kernel_h, plan.layers[4].kernel_w,
               plan.layers[4].stride, plan.layers[4].padding);

    /* linear straight after a spatial layer: kernel = input H/W, weight [3, 6·3·4]. */
    a.layers[4] = relu();
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){2, 7, 9}, 3, "x", &plan));
    TEST_CHECK(plan.layers[5].kernel_h == 3 && plan.layers[5].kernel_w == 4, "linear kernel %dx%d",
               plan.layers[5].kernel_h, plan.layers[5].kernel_w);
    const poet_tensor_info *fc = &plan.tensors[plan.layers[5].weight_tensor];
    TEST_CHECK(strcmp(fc->name, "fc1.weight") == 0 && fc->dims[0] == 3 && fc->dims[1] == 72 &&
                   fc->fan_in == 72,
               "%s [%lld, %lld] fan_in %d", fc->name, (long long)fc->dims[0],
               (long long)fc->dims[1], fc->fan_in);
    TEST_CHECK(strcmp(plan.tensors[2].name, "conv2.weight") == 0 && plan.tensors[2].fan_in == 16,
               "%s fan_in %d", plan.tensors[2].name, plan.tensors[2].fan_in);

    /* pool stride 0 means "= kernel". */
    poet_arch b;
    memset(&b, 0, sizeof b);
    b.n_layers = 2;
    b.layers[0] = pool(POET_LAYER_MAX_POOL, 2, 0, 0);
    b.layers[1] = linear(5);
    TEST_OK(poet_arch_plan_build(&b, (poet_shape){1, 8, 8}, 5, "x", &plan));
    check_shape(0, plan.layers[0].out, 1, 4, 4);

    char text[256];
    poet_arch_describe(&a, text, sizeof text);
    printf("custom: %s\n", text);
    TEST_CHECK(strcmp(text, "conv(4,k3,s1,p1) max_pool(k3,s2,p1) relu conv(6,k2,s1) relu "
                            "linear(3)") == 0,
               "describe: %s", text);
}

/* Builds `a` and expects a config error whose message contains every `needle`. */
static void expect_error(const poet_arch *a, poet_shape in, int classes, const char *n1,
                         const char *n2) {
    poet_arch_plan plan;
    poet_error_clear();
    poet_status st = poet_arch_plan_build(a, in, classes, "model.architecture", &plan);
    const char *msg = poet_error_message();
    printf("expected error: %s\n", msg);
    TEST_CHECK(st == POET_ERR_CONFIG, "status %d, expected config error", (int)st);
    TEST_CHECK(strstr(msg, n1) != NULL, "message lacks \"%s\": %s", n1, msg);
    TEST_CHECK(!n2 || strstr(msg, n2) != NULL, "message lacks \"%s\": %s", n2, msg);
    poet_error_clear();
}

static void test_errors(void) {
    poet_arch a = reference_arch(10);
    /* 5x5 input: conv1 -> 2x2, conv2 does not fit. */
    expect_error(&a, (poet_shape){1, 5, 5}, 10, "model.architecture[2]: kernel 3 does not fit",
                 "2x2");
    /* 28x28 with a 12 kernel pool after 6x6. */
    a.layers[4].kernel = 12;
    a.layers[4].stride = 12;
    expect_error(&a, (poet_shape){1, 28, 28}, 10, "model.architecture[4]: kernel 12", "6x6");
    a = reference_arch(10);
    /* Wrong class count. */
    expect_error(&a, (poet_shape){1, 28, 28}, 7, "model.architecture: network ends with 10x1x1",
                 "expected 7 logits");
    /* No final linear layer: ends with 40x1x1 after the pool. */
    a.n_layers = 5;
    expect_error(&a, (poet_shape){1, 28, 28}, 10,
                 "network ends with 40x1x1 outputs, expected 10 logits", "end with a linear");
    a = reference_arch(10);
    a.layers[0].stride = 0;
    expect_error(&a, (poet_shape){1, 28, 28}, 10, "model.architecture[0]", "stride");
    a = reference_arch(10);
    a.layers[4] = pool(POET_LAYER_MAX_POOL, 2, 2, 2);
    expect_error(&a, (poet_shape){1, 28, 28}, 10, "model.architecture[4]", "padding");
    a.n_layers = 0;
    expect_error(&a, (poet_shape){1, 28, 28}, 10, "model.architecture", "layers");

    /* Graphs: an add of 4x8x8 and 6x4x4, an input that is not an earlier layer. */
    poet_layer_spec g[] = {conv(4, 3, 1, 1), conv(6, 3, 2, 1), add_of(0, 1), linear(10)};
    memset(&a, 0, sizeof a);
    a.n_layers = 4;
    memcpy(a.layers, g, sizeof g);
    expect_error(&a, (poet_shape){1, 8, 8}, 10,
                 "model.architecture[2].inputs: add expects inputs of one shape, got 4x8x8 "
                 "(layer 0) and 6x4x4 (layer 1)",
                 NULL);
    a.layers[1] = conv(4, 3, 1, 1);
    a.layers[2] = add_of(0, 2);
    expect_error(&a, (poet_shape){1, 8, 8}, 10,
                 "model.architecture[2]: input 1 is layer 2, expected an earlier layer (0 to 1)",
                 NULL);
    a.layers[2] = add_of(0, 1);
    a.layers[2].n_inputs = 1;
    expect_error(&a, (poet_shape){1, 8, 8}, 10,
                 "model.architecture[2].inputs: add expects 2 to 4 inputs, got 1", NULL);
}

/* A residual block with a strided 1x1 projection: shapes follow the named inputs. */
static void test_graph_plan(void) {
    poet_layer_spec l[] = {conv(4, 3, 1, 1), relu(),           conv(8, 3, 2, 1),
                           relu(),           conv(8, 3, 1, 1), from(conv(8, 1, 2, 0), 1),
                           add_of(4, 5),     relu(),           global_pool(POET_LAYER_AVG_POOL),
                           linear(10)};
    poet_arch a;
    memset(&a, 0, sizeof a);
    a.n_layers = 10;
    memcpy(a.layers, l, sizeof l);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){3, 9, 9}, 10, "model.architecture", &plan));
    check_shape(5, plan.layers[5].in, 4, 9, 9);
    check_shape(5, plan.layers[5].out, 8, 5, 5);
    check_shape(6, plan.layers[6].in, 8, 5, 5);
    TEST_CHECK(plan.layers[6].n_inputs == 2 && plan.layers[6].inputs[0] == 4 &&
                   plan.layers[6].inputs[1] == 5,
               "add inputs");
    TEST_CHECK(plan.layers[7].n_inputs == 1 && plan.layers[7].inputs[0] == 6, "default input");
    TEST_CHECK(plan.layers[0].inputs[0] == -1, "layer 0 reads the images");
    TEST_CHECK(!poet_arch_is_chain(&plan), "a graph is not a chain");
    /* conv1..conv4 then fc1: the projection is the fourth convolution. */
    TEST_CHECK(strcmp(plan.tensors[6].name, "conv4.weight") == 0 && plan.tensors[6].dims[2] == 1,
               "projection tensor %s", plan.tensors[6].name);
    poet_arch r = reference_arch(10);
    TEST_OK(poet_arch_plan_build(&r, (poet_shape){1, 28, 28}, 10, "model.architecture", &plan));
    TEST_CHECK(poet_arch_is_chain(&plan), "the reference network is a chain");
}

static void test_equal(void) {
    poet_arch a = reference_arch(10), b = reference_arch(10);
    strcpy(b.name, "custom-0");
    b.layers[1].kernel = 99; /* meaningless for relu */
    TEST_CHECK(poet_arch_equal(&a, &b), "equal archs differ");
    b.layers[2].stride = 1;
    TEST_CHECK(!poet_arch_equal(&a, &b), "different strides compare equal");
    b = reference_arch(10);
    b.layers[4].stride = 0; /* default stride = kernel 6 */
    TEST_CHECK(poet_arch_equal(&a, &b), "pool stride 0 and = kernel differ");
    b = reference_arch(11);
    TEST_CHECK(!poet_arch_equal(&a, &b), "different class counts compare equal");
    b = reference_arch(10);
    b.n_layers = 7;
    TEST_CHECK(!poet_arch_equal(&a, &b), "different layer counts compare equal");
}

static void test_init(void) {
    poet_arch a = reference_arch(10);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){1, 28, 28}, 10, "x", &plan));
    size_t n = plan.param_count;
    float *m3 = malloc(n * sizeof *m3), *m3b = malloc(n * sizeof *m3b);
    float *m4 = malloc(n * sizeof *m4), *other = malloc(n * sizeof *other);
    if (!m3 || !m3b || !m4 || !other) {
        fprintf(stderr, "FAIL out of memory\n");
        exit(1);
    }
    poet_arch_init_member(&plan, 42, 3, m3);
    poet_arch_init_member(&plan, 42, 4, m4);
    poet_arch_init_member(&plan, 43, 3, other);
    /* Another member first, then member 3 again: nothing but (seed, 3) matters. */
    poet_arch_init_member(&plan, 42, 0, m3b);
    poet_arch_init_member(&plan, 42, 3, m3b);
    TEST_CHECK(memcmp(m3, m3b, n * sizeof *m3) == 0, "member 3 init is not deterministic");

    size_t same4 = 0, same_seed = 0, out_of_bounds = 0;
    for (int t = 0; t < plan.n_tensors; t++) {
        const poet_tensor_info *info = &plan.tensors[t];
        double bound = 1.0 / sqrt((double)info->fan_in);
        double lo = 0, hi = 0, sum = 0;
        for (size_t i = info->offset; i < info->offset + info->count; i++) {
            if (!(fabs(m3[i]) <= bound * (1 + 1e-7))) /* float rounding of the bound */
                out_of_bounds++;
            lo = fmin(lo, m3[i]);
            hi = fmax(hi, m3[i]);
            sum += m3[i];
        }
        printf("%-13s bound %.4f min %+.4f max %+.4f mean %+.4f\n", info->name, bound, lo, hi,
               sum / (double)info->count);
        /* The bigger tensors should span most of the interval. */
        if (info->count >= 100)
            TEST_CHECK(hi > 0.8 * bound && lo < -0.8 * bound &&
                           fabs(sum / info->count) < 0.2 * bound,
                       "%s does not look uniform in +-%g", info->name, bound);
    }
    for (size_t i = 0; i < n; i++) {
        same4 += m3[i] == m4[i];
        same_seed += m3[i] == other[i];
    }
    TEST_CHECK(out_of_bounds == 0, "%zu values outside +-1/sqrt(fan_in)", out_of_bounds);
    TEST_CHECK(same4 < 5, "members 3 and 4 share %zu of %zu values", same4, n);
    TEST_CHECK(same_seed < 5, "seeds 42 and 43 share %zu of %zu values", same_seed, n);

    /* The documented counter: element e of member 3 comes from (42, INIT, (3 << 40) + e). */
    size_t e = plan.tensors[2].offset + 17;
    double u = poet_rng_uniform(42, POET_STREAM_INIT, ((uint64_t)3 << 40) + e);
    float expect = (float)((2.0 * u - 1.0) / sqrt(180.0));
    TEST_CHECK(m3[e] == expect, "element %zu = %g, expected %g", e, m3[e], expect);
    free(m3);
    free(m3b);
    free(m4);
    free(other);
}

/* The memory estimate of the reference network on 28x28, counted by hand: 8470 parameters;
 * per row 784 input + 3380 (conv1) + 1440 (conv2) + 40 (pool) + 20 + 10 (linear) = 5674 kept
 * activations (relus run in place); conv2's im2col 20·9·36 = 6480 per row (conv1's: 1·9·169). */
static void test_memory_estimate(void) {
    poet_arch a = reference_arch(10);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){1, 28, 28}, 10, "model.architecture", &plan));
    double want = 4.0 * (3 * 8470 + 3 * 2 * 2 * 5674 + 5 * 5674);
    double got = poet_arch_member_bytes(&plan, 2, 3, 5);
    TEST_CHECK(got == want, "member bytes %.0f, expected %.0f", got, want);
    got = poet_arch_workspace_bytes(&plan, 7);
    TEST_CHECK(got == 4.0 * 7 * 6480, "workspace bytes %.0f, expected %.0f", got, 4.0 * 7 * 6480);
}

/* The built-ins: parameter counts (He et al.: ResNet-20 0.27M; Zagoruyko and Komodakis:
 * WRN-28-10 36.5M; convolutions without bias, as theirs), PyTorch-style names. */
static void test_builtins(void) {
    static poet_arch a;
    static poet_arch_plan plan;
    static const struct {
        const char *name;
        size_t params;
        int layers;
    } cases[] = {{"resnet-8", 78042, 30},
                 {"resnet-20", 272474, 72},
                 {"resnet-56", 855770, 198},
                 {"wrn-16-4", 2748890, 50},
                 {"wrn-28-10", 36479194, 92}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        TEST_CHECK(poet_arch_builtin(cases[i].name, 10, &a), "%s is built in", cases[i].name);
        TEST_OK(poet_arch_plan_build(&a, (poet_shape){3, 32, 32}, 10, "model.architecture", &plan));
        TEST_CHECK(plan.param_count == cases[i].params && a.n_layers == cases[i].layers,
                   "%s: %zu parameters, %d layers", cases[i].name, plan.param_count, a.n_layers);
        TEST_CHECK(strcmp(a.name, cases[i].name) == 0, "%s: name %s", cases[i].name, a.name);
        for (int t = 0; t < plan.n_tensors; t++) /* only fc has a bias */
            TEST_CHECK(!strstr(plan.tensors[t].name, "bias") ||
                           strstr(plan.tensors[t].name, "bn") ||
                           strstr(plan.tensors[t].name, "fc") ||
                           strstr(plan.tensors[t].name, "downsample.1"),
                       "%s has a tensor %s", cases[i].name, plan.tensors[t].name);
    }
    TEST_OK(poet_arch_builtin("resnet-20", 7, &a) ? POET_OK : POET_ERR_CONFIG);
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){1, 28, 28}, 7, "model.architecture", &plan));
    const char *names[] = {"conv1.weight",          "bn1.bias",
                           "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                           "layer3.2.bn2.weight",   "fc.weight"};
    for (size_t n = 0; n < sizeof names / sizeof *names; n++) {
        int found = 0;
        for (int t = 0; t < plan.n_tensors; t++)
            found |= strcmp(plan.tensors[t].name, names[n]) == 0;
        TEST_CHECK(found, "resnet-20 has a tensor %s", names[n]);
    }
    TEST_CHECK(strcmp(plan.states[2].name, "layer1.0.bn1.running_mean") == 0, "state %s",
               plan.states[2].name);
    const char *bad[] = {"resnet-21", "resnet-7", "resnet-20x", "wrn-28",
                         "wrn-27-10", "wrn-28-0", "resnet-110"};
    for (size_t n = 0; n < sizeof bad / sizeof *bad; n++)
        TEST_CHECK(!poet_arch_builtin(bad[n], 10, &a), "%s is not built in", bad[n]);
    /* Ids name tensors: two layers whose tensors would share a name are refused. */
    poet_layer_spec l[] = {conv(4, 3, 1, 1), conv(4, 3, 1, 1), global_pool(POET_LAYER_AVG_POOL),
                           linear(10)};
    snprintf(l[0].id, sizeof l[0].id, "conv2");
    memset(&a, 0, sizeof a);
    a.n_layers = 4;
    memcpy(a.layers, l, sizeof l);
    expect_error(&a, (poet_shape){1, 8, 8}, 10,
                 "model.architecture: two parameter tensors are named conv2.weight", NULL);
}

/* "bias": false: the layer's bias tensor is gone from the plan, its count and the names; the
 * tensors after it move up; the description says so. */
static void test_no_bias(void) {
    static poet_arch a;
    static poet_arch_plan plan;
    poet_layer_spec l[] = {no_bias(conv(4, 3, 1, 1)), batchnorm(), relu(),
                           global_pool(POET_LAYER_AVG_POOL), linear(10)};
    memset(&a, 0, sizeof a);
    a.n_layers = 5;
    memcpy(a.layers, l, sizeof l);
    TEST_OK(poet_arch_plan_build(&a, (poet_shape){3, 8, 8}, 10, "model.architecture", &plan));
    /* conv 4·3·3·3 = 108, bn 4 + 4, fc 10·4 + 10 */
    TEST_CHECK(plan.param_count == 108 + 8 + 50 && plan.n_tensors == 5,
               "bias-free conv: %zu parameters in %d tensors, expected 166 in 5", plan.param_count,
               plan.n_tensors);
    TEST_CHECK(strcmp(plan.tensors[1].name, "bn1.weight") == 0 && plan.tensors[1].offset == 108,
               "tensor 1 is %s at %zu, expected bn1.weight at 108", plan.tensors[1].name,
               plan.tensors[1].offset);
    TEST_CHECK(!plan.layers[0].has_bias && plan.layers[4].has_bias, "has_bias %d %d",
               plan.layers[0].has_bias, plan.layers[4].has_bias);
    char text[256];
    poet_arch_describe(&a, text, sizeof text);
    TEST_CHECK(strncmp(text, "conv(4,k3,s1,p1,nobias) batchnorm", 33) == 0, "described as %s",
               text);
    poet_arch b = a;
    b.layers[0].no_bias = 0;
    TEST_CHECK(!poet_arch_equal(&a, &b), "a conv with bias differs from one without");
}

int main(void) {
    test_no_bias();
    test_builtins();
    test_graph_plan();
    test_reference_plan();
    test_memory_estimate();
    test_other_layers();
    test_errors();
    test_equal();
    test_init();
    return test_finish("arch");
}
