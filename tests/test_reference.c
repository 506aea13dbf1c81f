/* test_reference.c — the reference network against hand-computed layers and central finite
 * differences, and the joint loss's gradient against finite differences and (q̄ − p)/(M·B). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/reference.h"
#include "poet/rng.h"
#include "testutil.h"

#define EPS 1e-6
#define ATOL 1e-6
#define RTOL 1e-6
/* finite differences per tensor; larger tensors are sampled with a stride */
#define MAX_SAMPLES 40

static poet_arch make_arch(int n, const poet_layer_spec *layers) {
    poet_arch a;
    memset(&a, 0, sizeof a);
    a.n_layers = n;
    memcpy(a.layers, layers, (size_t)n * sizeof *layers);
    return a;
}

static void fill_uniform(double *v, size_t n, uint64_t counter, double lo, double hi) {
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * poet_rng_uniform(7, POET_STREAM_TEST, counter + i);
}

static size_t image_count(poet_shape s) { return (size_t)s.c * s.h * s.w; }

/* ---- hand-computed forward values ---- */

static void build(const poet_arch *a, poet_shape in, int classes, poet_arch_plan *plan) {
    TEST_OK(poet_arch_plan_build(a, in, classes, "test", plan));
}

/* One 1x3x3 image through conv(1,k2,s1,p1) with all-ones weights, bias 0.5, then global avg pool
 * to a scalar logit: every input element lies in exactly 4 windows of the 4x4 output. */
static void test_hand_conv_avg(void) {
    poet_layer_spec l[] = {conv(1, 2, 1, 1), global_pool(POET_LAYER_AVG_POOL)};
    poet_arch a = make_arch(2, l);
    poet_arch_plan plan;
    build(&a, (poet_shape){1, 3, 3}, 1, &plan);
    double params[5] = {1, 1, 1, 1, 0.5};
    double x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, logit;
    poet_ref_cache *cache = poet_ref_cache_create(&plan, 1);
    TEST_CHECK(cache != NULL, "cache");
    poet_ref_forward(&plan, params, 1, x, &logit, cache);
    double expect = 0.5 + 4.0 * 45 / 16; /* Σ over 16 outputs of (bias + window sum) / 16 */
    test_compare_f64("hand conv(p1)+global avg", &logit, &expect, 1, 1e-12, 1e-12);
    poet_ref_cache_destroy(cache);
}

/* avg_pool(k2,s2,p1) counts padding (PyTorch's count_include_pad=True): the corner output is
 * x[0,0]/4. max_pool(k2,s2,p1) ignores padding even when every real value is negative. */
static void test_hand_pools(void) {
    double x[16];
    for (int i = 0; i < 16; i++)
        x[i] = -(double)(i + 1); /* 4x4: -1 .. -16 */
    poet_arch_plan plan;
    poet_layer_spec la[] = {pool(POET_LAYER_AVG_POOL, 2, 2, 1), linear(1)};
    poet_arch a = make_arch(2, la);
    build(&a, (poet_shape){1, 4, 4}, 1, &plan);
    poet_ref_cache *cache = poet_ref_cache_create(&plan, 1);
    /* fc weight picks output (0,0) and (1,1) of the 3x3 pool output: [1,0,0,0,1,0,0,0,0], bias 0 */
    double params[10] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0}, logit;
    poet_ref_forward(&plan, params, 1, x, &logit, cache);
    double expect = -1.0 / 4 + (-(6 + 7 + 10 + 11) / 4.0);
    test_compare_f64("hand avg_pool(k2,s2,p1)", &logit, &expect, 1, 1e-12, 1e-12);
    poet_ref_cache_destroy(cache);

    poet_layer_spec lm[] = {pool(POET_LAYER_MAX_POOL, 2, 2, 1), linear(1)};
    a = make_arch(2, lm);
    build(&a, (poet_shape){1, 4, 4}, 1, &plan);
    cache = poet_ref_cache_create(&plan, 1);
    poet_ref_forward(&plan, params, 1, x, &logit, cache);
    expect = -1.0 + -6.0;
    test_compare_f64("hand max_pool(k2,s2,p1) negative", &logit, &expect, 1, 1e-12, 1e-12);
    poet_ref_cache_destroy(cache);

    /* Ties: a constant image; the gradient goes to the first element of each window only. */
    poet_layer_spec lt[] = {pool(POET_LAYER_MAX_POOL, 2, 2, 0), linear(1)};
    a = make_arch(2, lt);
    build(&a, (poet_shape){1, 4, 4}, 1, &plan);
    cache = poet_ref_cache_create(&plan, 1);
    double ones[16], tparams[5] = {1, 2, 3, 4, 0}, dparams[5], dx[16], one = 1;
    for (int i = 0; i < 16; i++)
        ones[i] = 3;
    poet_ref_forward(&plan, tparams, 1, ones, &logit, cache);
    poet_ref_backward(&plan, tparams, 1, &one, cache, dparams, dx);
    double want_dx[16] = {1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0};
    test_compare_f64("max_pool tie -> first element", dx, want_dx, 16, 1e-15, 0);
    poet_ref_cache_destroy(cache);
}

/* Linear flattens C·H·W in that order: weight column c·H·W + h·W + w multiplies x[c,h,w]. */
static void test_hand_linear(void) {
    poet_layer_spec l[] = {linear(1)};
    poet_arch a = make_arch(1, l);
    poet_arch_plan plan;
    build(&a, (poet_shape){2, 2, 3}, 1, &plan);
    double x[12], params[13] = {0}, logit;
    for (int i = 0; i < 12; i++)
        x[i] = i * i;
    params[1 * 6 + 0 * 3 + 2] = 1; /* x[c=1, h=0, w=2] = 8² */
    params[12] = 0.25;
    poet_ref_cache *cache = poet_ref_cache_create(&plan, 1);
    poet_ref_forward(&plan, params, 1, x, &logit, cache);
    double expect = 64.25;
    test_compare_f64("hand linear flatten order", &logit, &expect, 1, 1e-12, 0);
    poet_ref_cache_destroy(cache);
}

/* ---- finite differences through a whole network ---- */

typedef struct {
    const poet_arch_plan *plan;
    int batch;
    const double *x;
    const double *r;       /* [B, K] weights of the "sum of logits times r" loss */
    const uint8_t *labels; /* when not NULL the loss is the joint loss of this one member */
    double *logits;        /* [B, K] scratch */
    poet_ref_cache *cache;
} fd_problem;

static double fd_loss(const fd_problem *p, const double *params, const double *x) {
    poet_ref_forward(p->plan, params, p->batch, x, p->logits, p->cache);
    size_t n = (size_t)p->batch * p->plan->classes;
    if (p->labels)
        return poet_ref_joint_loss(p->logits, 1, p->batch, p->plan->classes, p->labels, NULL);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p->logits[i] * p->r[i];
    return sum;
}

/* Central difference of the loss in v[i] (v is the parameters or the input). */
static double central(const fd_problem *p, double *params, double *x, double *v, size_t i) {
    double keep = v[i];
    v[i] = keep + EPS;
    double up = fd_loss(p, params, x);
    v[i] = keep - EPS;
    double down = fd_loss(p, params, x);
    v[i] = keep;
    return (up - down) / (2 * EPS);
}

/* Compares `analytic` against finite differences at a strided sample of [begin, begin+count). */
static void check_range(const char *what, const fd_problem *p, double *params, double *x, double *v,
                        size_t begin, size_t count, const double *analytic) {
    size_t stride = count > MAX_SAMPLES ? (count + MAX_SAMPLES - 1) / MAX_SAMPLES : 1;
    double got[MAX_SAMPLES + 1], want[MAX_SAMPLES + 1];
    size_t n = 0;
    for (size_t i = begin; i < begin + count && n <= MAX_SAMPLES; i += stride, n++) {
        want[n] = central(p, params, x, v, i);
        got[n] = analytic[i];
    }
    test_compare_f64(what, got, want, n, ATOL, RTOL);
}

/* Batch normalisation's mode in gradcheck: train (batch statistics) or eval (running ones). */
static int bn_train = 1;

static void gradcheck(const char *name, const poet_arch *a, poet_shape in, int classes,
                      int use_joint) {
    const int batch = 3;
    poet_arch_plan plan;
    build(a, in, classes, &plan);
    size_t nx = batch * image_count(in), nk = (size_t)batch * classes, np = plan.param_count;
    double *params = xmalloc(np * sizeof(double)), *dparams = xmalloc(np * sizeof(double));
    double *x = xmalloc(nx * sizeof(double)), *dx = xmalloc(nx * sizeof(double));
    double *r = xmalloc(nk * sizeof(double)), *logits = xmalloc(nk * sizeof(double));
    double *dlogits = xmalloc(nk * sizeof(double));
    uint8_t labels[3] = {0, (uint8_t)(classes - 1), (uint8_t)(1 % classes)};
    /* Parameters of PyTorch's scale but not tiny, so the loss is not flat. */
    fill_uniform(params, np, 1000, -0.5, 0.5);
    fill_uniform(x, nx, 100000, -1, 1);
    fill_uniform(r, nk, 200000, -1, 1);
    poet_ref_cache *cache = poet_ref_cache_create(&plan, batch);
    TEST_CHECK(cache != NULL, "cache");
    /* Running statistics away from 0 and 1, so eval mode is not the identity. */
    double *state = xmalloc((plan.state_count + 1) * sizeof(double));
    for (int t = 0; t < plan.n_states; t++)
        fill_uniform(state + plan.states[t].offset, plan.states[t].count, 300000 + 1000 * t,
                     t % 2 ? 0.5 : -0.5, t % 2 ? 1.5 : 0.5);
    poet_ref_set_state(cache, state, bn_train);

    fd_problem p = {&plan, batch, x, r, use_joint ? labels : NULL, logits, cache};
    poet_ref_forward(&plan, params, batch, x, logits, cache);
    if (use_joint)
        poet_ref_joint_loss(logits, 1, batch, classes, labels, dlogits);
    else
        memcpy(dlogits, r, nk * sizeof *r);
    poet_ref_backward(&plan, params, batch, dlogits, cache, dparams, dx);

    printf("-- %s (%s loss), %zu parameters\n", name, use_joint ? "joint" : "weighted-sum", np);
    for (int t = 0; t < plan.n_tensors; t++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s", name, plan.tensors[t].name);
        check_range(what, &p, params, x, params, plan.tensors[t].offset, plan.tensors[t].count,
                    dparams);
    }
    char what[96];
    snprintf(what, sizeof what, "%s dx", name);
    check_range(what, &p, params, x, x, 0, nx, dx);

    /* dx == NULL must give the same parameter gradients. */
    double *dparams2 = xmalloc(np * sizeof(double));
    poet_ref_forward(&plan, params, batch, x, logits, cache);
    poet_ref_backward(&plan, params, batch, dlogits, cache, dparams2, NULL);
    TEST_CHECK(memcmp(dparams, dparams2, np * sizeof(double)) == 0,
               "%s: parameter gradients differ when dx is not asked for", name);

    poet_ref_cache_destroy(cache);
    free(state);
    free(params);
    free(dparams);
    free(dparams2);
    free(x);
    free(dx);
    free(r);
    free(logits);
    free(dlogits);
}

static void test_networks(void) {
    /* padding, stride, max_pool with padding, linear after a spatial layer */
    poet_layer_spec n1[] = {conv(3, 3, 1, 1), relu(), pool(POET_LAYER_MAX_POOL, 3, 2, 1),
                            conv(4, 2, 2, 0), relu(), linear(4)};
    poet_arch a1 = make_arch(6, n1);
    gradcheck("net1", &a1, (poet_shape){2, 7, 7}, 4, 0);
    gradcheck("net1", &a1, (poet_shape){2, 7, 7}, 4, 1);

    /* strided conv, avg_pool with padding, global avg pool, two linears */
    poet_layer_spec n2[] = {conv(4, 3, 2, 0),
                            pool(POET_LAYER_AVG_POOL, 2, 1, 1),
                            relu(),
                            conv(5, 3, 1, 1),
                            global_pool(POET_LAYER_AVG_POOL),
                            linear(6),
                            relu(),
                            linear(3)};
    poet_arch a2 = make_arch(8, n2);
    gradcheck("net2", &a2, (poet_shape){1, 8, 8}, 3, 0);

    /* non-square input, global max pool, max_pool stride defaulting to the kernel */
    poet_layer_spec n3[] = {conv(4, 2, 1, 0), pool(POET_LAYER_MAX_POOL, 2, 0, 0), relu(),
                            global_pool(POET_LAYER_MAX_POOL), linear(5)};
    poet_arch a3 = make_arch(5, n3);
    gradcheck("net3", &a3, (poet_shape){3, 7, 5}, 5, 0);
    gradcheck("net3", &a3, (poet_shape){3, 7, 5}, 5, 1);

    /* the reference network itself, smaller K, sampled */
    poet_layer_spec ref[] = {
        conv(20, 3, 2, 0), relu(), conv(40, 3, 2, 0), relu(), pool(POET_LAYER_AVG_POOL, 6, 6, 0),
        linear(20),        relu(), linear(10)};
    poet_arch ar = make_arch(8, ref);
    gradcheck("reference", &ar, (poet_shape){1, 28, 28}, 10, 1);

    /* Residual blocks (graphs with add): the stem's output is read twice, so its gradient is the
     * sum over both readers. Identity shortcut, then a 1x1 strided projection on the shortcut;
     * 1 and 3 input channels. */
    poet_layer_spec id_block[] = {
        conv(3, 3, 1, 1), relu(),       conv(3, 3, 1, 1), relu(),
        conv(3, 3, 1, 1), add_of(1, 4), relu(),           global_pool(POET_LAYER_AVG_POOL),
        linear(4)};
    poet_arch ai = make_arch(9, id_block);
    gradcheck("residual identity", &ai, (poet_shape){1, 6, 6}, 4, 0);
    gradcheck("residual identity", &ai, (poet_shape){3, 5, 6}, 4, 1);
    poet_layer_spec proj_block[] = {
        conv(3, 3, 1, 1), relu(),           conv(5, 3, 2, 1),
        relu(),           conv(5, 3, 1, 1), from(conv(5, 1, 2, 0), 1),
        add_of(4, 5),     relu(),           global_pool(POET_LAYER_AVG_POOL),
        linear(4)};
    poet_arch ap = make_arch(10, proj_block);
    gradcheck("residual projection", &ap, (poet_shape){1, 7, 7}, 4, 0);
    gradcheck("residual projection", &ap, (poet_shape){3, 8, 6}, 4, 1);

    /* Batch normalisation in a residual block with a projection, train and eval mode. */
    poet_layer_spec bn_block[] = {conv(3, 3, 1, 1),
                                  batchnorm(),
                                  relu(),
                                  conv(4, 3, 2, 1),
                                  batchnorm(),
                                  relu(),
                                  conv(4, 3, 1, 1),
                                  batchnorm(),
                                  from(conv(4, 1, 2, 0), 2),
                                  batchnorm(),
                                  add_of(7, 9),
                                  relu(),
                                  global_pool(POET_LAYER_AVG_POOL),
                                  linear(3)};
    poet_arch ab = make_arch(14, bn_block);
    for (bn_train = 1; bn_train >= 0; bn_train--) {
        const char *name = bn_train ? "batchnorm block (train)" : "batchnorm block (eval)";
        gradcheck(name, &ab, (poet_shape){1, 6, 6}, 3, 0);
        gradcheck(name, &ab, (poet_shape){3, 5, 5}, 3, 1);
    }
    bn_train = 1;

    /* Convolutions before batchnorm without bias ("bias": false), and a linear layer without. */
    poet_layer_spec nb_block[] = {no_bias(conv(3, 3, 1, 1)),
                                  batchnorm(),
                                  relu(),
                                  no_bias(conv(3, 3, 1, 1)),
                                  batchnorm(),
                                  add_of(2, 4),
                                  relu(),
                                  global_pool(POET_LAYER_AVG_POOL),
                                  no_bias(linear(3))};
    poet_arch anb = make_arch(9, nb_block);
    gradcheck("bias-free block", &anb, (poet_shape){3, 5, 5}, 3, 1);
}

/* PyTorch's running statistics over two steps, by hand: one channel, two images of 1x2 pixels,
 * weight 1, bias 0, then a 1x1 convolution (weight 1, bias 0) and global average pooling.
 * Step 1: x = {1, 2, 3, 4}: μ = 2.5, σ² = 1.25 (biased), 5/3 (unbiased):
 *   running_mean = 0.9·0 + 0.1·2.5 = 0.25, running_var = 0.9·1 + 0.1·5/3 = 1.0666…
 * Step 2: x = {0, 0, 2, 2}: μ = 1, σ² = 1, 4/3:
 *   running_mean = 0.9·0.25 + 0.1·1 = 0.325, running_var = 0.9·1.0666… + 0.1·4/3 = 1.0933…
 * Eval then gives image 1 ({1, 2}): mean of (x − 0.325)/sqrt(1.0933… + 1e-5). */
static void test_hand_batchnorm(void) {
    poet_layer_spec l[] = {batchnorm(), conv(1, 1, 1, 0), global_pool(POET_LAYER_AVG_POOL)};
    poet_arch a = make_arch(3, l);
    poet_arch_plan plan;
    build(&a, (poet_shape){1, 1, 2}, 1, &plan);
    TEST_CHECK(plan.state_count == 2 && strcmp(plan.states[0].name, "bn1.running_mean") == 0 &&
                   strcmp(plan.states[1].name, "bn1.running_var") == 0 &&
                   strcmp(plan.tensors[0].name, "bn1.weight") == 0,
               "batchnorm tensors");
    double params[] = {1, 0, 1, 0}; /* bn weight, bias; conv weight, bias */
    double state[] = {0, 1}, logits[2];
    double x1[] = {1, 2, 3, 4}, x2[] = {0, 0, 2, 2};
    poet_ref_cache *cache = poet_ref_cache_create(&plan, 2);
    poet_ref_set_state(cache, state, 1);
    poet_ref_forward(&plan, params, 2, x1, logits, cache);
    TEST_CHECK(fabs(state[0] - 0.25) < 1e-15 && fabs(state[1] - (0.9 + 0.5 / 3)) < 1e-15,
               "step 1 running stats %.17g %.17g", state[0], state[1]);
    double want = (1.5 - 2.5) / sqrt(1.25 + 1e-5); /* image 1: mean of x̂ over {1, 2} */
    TEST_CHECK(fabs(logits[0] - want) < 1e-12, "step 1 logit %.17g, expected %.17g", logits[0],
               want);
    poet_ref_forward(&plan, params, 2, x2, logits, cache);
    double rv = 0.9 * (0.9 + 0.5 / 3) + 0.4 / 3;
    TEST_CHECK(fabs(state[0] - 0.325) < 1e-15 && fabs(state[1] - rv) < 1e-15,
               "step 2 running stats %.17g %.17g", state[0], state[1]);
    poet_ref_set_state(cache, state, 0);
    poet_ref_forward(&plan, params, 2, x1, logits, cache);
    want = (1.5 - 0.325) / sqrt(rv + 1e-5);
    TEST_CHECK(fabs(logits[0] - want) < 1e-12, "eval logit %.17g, expected %.17g", logits[0], want);
    TEST_CHECK(state[0] == 0.325, "eval leaves the running statistics alone");
    poet_ref_cache_destroy(cache);
}

/* The add layer by hand: two branches of one conv each, summed. */
static void test_hand_add(void) {
    /* input 1x1x2 (two pixels), conv a = 2x, conv b = 3a + 1 (1x1 kernels), add, linear = sum */
    poet_layer_spec l[] = {conv(1, 1, 1, 0), from(conv(1, 1, 1, 0), -1), add_of(0, 1), linear(1)};
    poet_arch a = make_arch(4, l);
    poet_arch_plan plan;
    poet_error_clear();
    /* Layer inputs are earlier layers; -1 (the images) is not one a spec may name. */
    TEST_CHECK(poet_arch_plan_build(&a, (poet_shape){1, 1, 2}, 1, "test", &plan) == POET_ERR_CONFIG,
               "input -1 refused");
    poet_error_clear();
    /* Branch b reads conv a: y = Σ_pixels (2x) + (3·(2x) + 1). */
    a.layers[1].inputs[0] = 0;
    build(&a, (poet_shape){1, 1, 2}, 1, &plan);
    double params[] = {2, 0, 3, 1, 1, 1, 0}; /* wa, ba, wb, bb, linear w[2], linear b */
    double x[] = {1, 2}, logit;
    poet_ref_cache *cache = poet_ref_cache_create(&plan, 1);
    poet_ref_forward(&plan, params, 1, x, &logit, cache);
    /* pixel 1: 2 + 7 = 9; pixel 2: 4 + 13 = 17 */
    TEST_CHECK(fabs(logit - 26) < 1e-12, "add forward: %g, expected 26", logit);
    double dlogit = 1, dparams[7], dx[2];
    poet_ref_backward(&plan, params, 1, &dlogit, cache, dparams, dx);
    /* dL/dx_i = 2 (direct) + 3·2 (through b) = 8 */
    TEST_CHECK(fabs(dx[0] - 8) < 1e-12 && fabs(dx[1] - 8) < 1e-12, "add backward dx: %g %g", dx[0],
               dx[1]);
    poet_ref_cache_destroy(cache);
}

/* ---- joint loss ---- */

static void test_joint_loss(int members) {
    const int batch = 3, classes = 5;
    size_t bk = (size_t)batch * classes, n = (size_t)members * bk;
    double *logits = xmalloc(n * sizeof(double)), *grad = xmalloc(n * sizeof(double));
    double *fd = xmalloc(n * sizeof(double)), *expect = xmalloc(n * sizeof(double));
    uint8_t labels[3] = {2, 0, 4};
    fill_uniform(logits, n, 300000 + 1000 * (uint64_t)members, -3, 3);
    double loss = poet_ref_joint_loss(logits, members, batch, classes, labels, grad);

    /* The definition, written out without the log-sum-exp trick (logits are small). */
    double want_loss = 0;
    for (int b = 0; b < batch; b++) {
        double mean[5], z = 0;
        for (int k = 0; k < classes; k++) {
            mean[k] = 0;
            for (int j = 0; j < members; j++)
                mean[k] += logits[j * bk + b * classes + k] / members;
            z += exp(mean[k]);
        }
        want_loss += -log(exp(mean[labels[b]]) / z) / batch;
        for (int k = 0; k < classes; k++)
            for (int j = 0; j < members; j++)
                expect[j * bk + b * classes + k] =
                    (exp(mean[k]) / z - (k == labels[b])) / (members * batch);
    }
    for (size_t i = 0; i < n; i++) {
        double keep = logits[i];
        logits[i] = keep + EPS;
        double up = poet_ref_joint_loss(logits, members, batch, classes, labels, NULL);
        logits[i] = keep - EPS;
        double down = poet_ref_joint_loss(logits, members, batch, classes, labels, NULL);
        logits[i] = keep;
        fd[i] = (up - down) / (2 * EPS);
    }
    char what[64];
    snprintf(what, sizeof what, "joint loss M=%d value", members);
    test_compare_f64(what, &loss, &want_loss, 1, 1e-12, 1e-12);
    snprintf(what, sizeof what, "joint loss M=%d grad vs FD", members);
    test_compare_f64(what, grad, fd, n, 1e-8, 1e-6);
    snprintf(what, sizeof what, "joint loss M=%d grad = (q-p)/(MB)", members);
    test_compare_f64(what, grad, expect, n, 1e-15, 1e-12);
    free(logits);
    free(grad);
    free(fd);
    free(expect);
}

int main(void) {
    test_hand_add();
    test_hand_batchnorm();
    test_hand_conv_avg();
    test_hand_pools();
    test_hand_linear();
    test_networks();
    test_joint_loss(1);
    test_joint_loss(3);
    test_joint_loss(10);
    return test_finish("reference_gradcheck");
}
