/* test_net.c — the oneDNN stack against the double-precision reference, member by member.
 *
 * For architectures that cover every layer kind (padding, stride, max/avg/global pooling, layers
 * before the first weight layer, linear after a spatial layer, a network that ends in pooling, the
 * reference network) and G ∈ {1, 3} members, B ∈ {1, 5} images: every member's logits and every
 * parameter gradient match poet_ref_forward/poet_ref_backward of that member alone; backward with
 * accumulate adds; an inference stack (on 2 threads) gives the training stack's logits; member
 * get/set round trip; refusals. Everything for both convolution algorithms (im2col + sgemm, and
 * oneDNN's convolution primitives), plus batches that span several chunks of the gemm chains
 * (and of the global average pooling those chains run, with and without a relu before it).
 * Convolutions and linear layers without bias ("bias": false) on every path.
 * With gemm convolutions, backward differentiates the forward it follows even when the parameters
 * changed in between (the stale mode). fp32 against double: |got - ref| <= ATOL + RTOL·|ref|.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/cpu.h"
#include "poet/net.h"
#include "poet/reference.h"
#include "poet/rng.h"
#include "testutil.h"

#define ATOL 1e-5
#define RTOL 1e-4

typedef struct {
    const char *name;
    poet_shape input;
    int classes;
    int n_layers;
    poet_layer_spec layers[16];
} net_case;

/* Uniform floats in [lo, hi) from the test stream, starting at `counter`. */
static void fill_f32(float *v, size_t n, uint64_t counter, double lo, double hi) {
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * poet_rng_uniform(11, POET_STREAM_TEST, counter + i));
}

static void to_f64(const float *src, double *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static void build_plan(const net_case *nc, poet_arch_plan *plan) {
    poet_arch arch;
    memset(&arch, 0, sizeof arch);
    arch.n_layers = nc->n_layers;
    memcpy(arch.layers, nc->layers, (size_t)nc->n_layers * sizeof *nc->layers);
    TEST_OK(poet_arch_plan_build(&arch, nc->input, nc->classes, nc->name, plan));
}

/* Compares every tensor of member g's gradient (float, member layout) against `ref` × scale. */
static void compare_tensors(const char *what, const poet_arch_plan *plan, int g, const float *got,
                            const double *ref, double scale) {
    double *scaled = xmalloc(plan->param_count * sizeof *scaled);
    for (size_t i = 0; i < plan->param_count; i++)
        scaled[i] = scale * ref[i];
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *ti = &plan->tensors[t];
        char label[96];
        snprintf(label, sizeof label, "  %s m%d %s", what, g, ti->name);
        test_compare_f32(label, got + ti->offset, scaled + ti->offset, ti->count, ATOL, RTOL);
    }
    free(scaled);
}

/* One architecture, G members, batch B: the whole comparison. */
static void run_case(const net_case *nc, const poet_stack_options *opt, int G, int B) {
    poet_arch_plan plan;
    build_plan(nc, &plan);
    int K = plan.classes;
    size_t n_params = plan.param_count, n_img = (size_t)plan.input.c * plan.input.h * plan.input.w;
    printf("%s: G=%d B=%d (%zu params per member)\n", nc->name, G, B, n_params);

    float *params = xmalloc((size_t)G * n_params * sizeof *params);
    float *grads = xmalloc((size_t)G * n_params * sizeof *grads);
    float *member = xmalloc(n_params * sizeof *member);
    double *member_d = xmalloc(n_params * sizeof *member_d);
    double *dparams = xmalloc(n_params * sizeof *dparams);
    float *images = xmalloc((size_t)B * n_img * sizeof *images);
    double *images_d = xmalloc((size_t)B * n_img * sizeof *images_d);
    float *logits = xmalloc((size_t)B * G * K * sizeof *logits);
    float *logits_inf = xmalloc((size_t)B * G * K * sizeof *logits_inf);
    float *member_logits = xmalloc((size_t)B * K * sizeof *member_logits);
    double *ref_logits = xmalloc((size_t)B * K * sizeof *ref_logits);
    float *dlogits = xmalloc((size_t)B * K * sizeof *dlogits);
    double *dlogits_d = xmalloc((size_t)B * K * sizeof *dlogits_d);

    for (int g = 0; g < G; g++) { /* different weights for every member */
        poet_arch_init_member(&plan, 1234, 3 * g + 1, member);
        poet_stack_member_set(&plan, G, params, g, member);
    }
    /* Batch normalisation: running statistics away from 0 and 1, different for every member;
     * its weight and bias away from PyTorch's 1 and 0 too, so their gradients mean something. */
    size_t n_state = plan.state_count;
    float *state = xmalloc(((size_t)G * n_state + 1) * sizeof *state);
    float *member_state = xmalloc((n_state + 1) * sizeof *member_state);
    double *state_d = xmalloc((n_state + 1) * sizeof *state_d);
    double *state_ref = xmalloc(((size_t)G * n_state + 1) * sizeof *state_ref);
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < plan.n_states; t++)
            fill_f32(member_state + plan.states[t].offset, plan.states[t].count,
                     (2u << 30) + 1000u * (unsigned)(t + 100 * g), t % 2 ? 0.5 : -0.5,
                     t % 2 ? 1.5 : 0.5);
        poet_stack_state_set(&plan, G, state, g, member_state);
        poet_stack_member_get(&plan, G, params, g, member);
        for (int l = 0; l < plan.n_layers; l++)
            if (plan.layers[l].kind == POET_LAYER_BATCHNORM) {
                const poet_tensor_info *w = &plan.tensors[plan.layers[l].weight_tensor];
                fill_f32(member + w->offset, 2 * w->count, (3u << 30) + 1000u * (unsigned)l, -1.0,
                         1.0);
            }
        poet_stack_member_set(&plan, G, params, g, member);
    }
    poet_stack_options with_state = *opt;
    with_state.state = n_state ? state : NULL;
    opt = &with_state;
    fill_f32(images, (size_t)B * n_img, 0, -1.0, 2.0);
    to_f64(images, images_d, (size_t)B * n_img);
    /* The real gradient is (q̄ - p)/(M·B): of order 1/B. */
    fill_f32(dlogits, (size_t)B * K, 1u << 30, -1.0 / B, 1.0 / B);
    to_f64(dlogits, dlogits_d, (size_t)B * K);

    poet_stack *stack = NULL, *inference = NULL;
    TEST_OK(poet_stack_create(&plan, G, B, 1, opt, params, grads, &stack));
    TEST_CHECK(poet_stack_members(stack) == G && poet_stack_batch(stack) == B, "G/B accessors");
    TEST_OK(poet_stack_forward(stack, images, logits));
    TEST_OK(poet_stack_backward(stack, dlogits, 0));

    poet_ref_cache *cache = poet_ref_cache_create(&plan, B);
    TEST_CHECK(cache != NULL, "reference cache");
    for (int g = 0; g < G; g++) {
        poet_stack_member_get(&plan, G, params, g, member);
        to_f64(member, member_d, n_params);
        /* The reference starts from the running statistics the stack started from. */
        for (int t = 0; t < plan.n_states; t++)
            fill_f32(member_state + plan.states[t].offset, plan.states[t].count,
                     (2u << 30) + 1000u * (unsigned)(t + 100 * g), t % 2 ? 0.5 : -0.5,
                     t % 2 ? 1.5 : 0.5);
        to_f64(member_state, state_ref + (size_t)g * n_state, n_state);
        poet_ref_set_state(cache, state_ref + (size_t)g * n_state, 1);
        poet_ref_forward(&plan, member_d, B, images_d, ref_logits, cache);
        if (n_state) { /* the training forward moved the running statistics like PyTorch's */
            poet_stack_state_get(&plan, G, state, g, member_state);
            char what[64];
            snprintf(what, sizeof what, "  running stats m%d", g);
            test_compare_f32(what, member_state, state_ref + (size_t)g * n_state, n_state, ATOL,
                             RTOL);
        }
        for (int b = 0; b < B; b++)
            memcpy(member_logits + (size_t)b * K, logits + ((size_t)b * G + g) * K,
                   (size_t)K * sizeof(float));
        char label[64];
        snprintf(label, sizeof label, "  logits m%d", g);
        test_compare_f32(label, member_logits, ref_logits, (size_t)B * K, ATOL, RTOL);

        poet_ref_backward(&plan, member_d, B, dlogits_d, cache, dparams, NULL);
        poet_stack_member_get(&plan, G, grads, g, member);
        compare_tensors("grad", &plan, g, member, dparams, 1.0);
        if (g == G - 1) { /* accumulate: a second backward adds the same gradient */
            TEST_OK(poet_stack_backward(stack, dlogits, 1));
            poet_stack_member_get(&plan, G, grads, g, member);
            compare_tensors("grad x2 (accumulate)", &plan, g, member, dparams, 2.0);
        }
    }

    /* An inference stack computes the same logits; on 2 threads its lanes share activations. */
    poet_stack_options two_threads = *opt;
    two_threads.threads = 2;
    TEST_OK(poet_stack_create(&plan, G, B, 0, &two_threads, params, NULL, &inference));
    TEST_OK(poet_stack_forward(inference, images, logits_inf));
    double *logits_d = xmalloc((size_t)B * G * K * sizeof *logits_d);
    to_f64(logits, logits_d, (size_t)B * G * K);
    if (!n_state) {
        test_compare_f32("  inference logits vs training", logits_inf, logits_d, (size_t)B * G * K,
                         1e-6, 1e-6);
    } else { /* eval mode: the running statistics, against the reference in eval mode */
        for (int g = 0; g < G; g++) {
            poet_stack_member_get(&plan, G, params, g, member);
            to_f64(member, member_d, n_params);
            poet_ref_set_state(cache, state_ref + (size_t)g * n_state, 0);
            poet_ref_forward(&plan, member_d, B, images_d, ref_logits, cache);
            for (int b = 0; b < B; b++)
                memcpy(member_logits + (size_t)b * K, logits_inf + ((size_t)b * G + g) * K,
                       (size_t)K * sizeof(float));
            char label[64];
            snprintf(label, sizeof label, "  eval-mode logits m%d", g);
            test_compare_f32(label, member_logits, ref_logits, (size_t)B * K, ATOL, RTOL);
        }
    }
    free(logits_d);
    free(state), free(member_state), free(state_d), free(state_ref);

    poet_ref_cache_destroy(cache);
    poet_stack_destroy(inference);
    poet_stack_destroy(stack);
    free(params), free(grads), free(member), free(member_d), free(dparams), free(images);
    free(images_d), free(logits), free(logits_inf), free(member_logits), free(ref_logits);
    free(dlogits), free(dlogits_d);
}

/* member_set then member_get returns the member, and leaves the other members alone. */
static void member_round_trip(const net_case *nc) {
    poet_arch_plan plan;
    build_plan(nc, &plan);
    int G = 4;
    size_t n_params = plan.param_count;
    float *stack = xmalloc(G * n_params * sizeof *stack),
          *before = xmalloc(G * n_params * sizeof *before);
    float *member = xmalloc(n_params * sizeof *member), *back = xmalloc(n_params * sizeof *back);
    fill_f32(stack, G * n_params, 99, -1, 1);
    memcpy(before, stack, G * n_params * sizeof *stack);
    fill_f32(member, n_params, 5555, -1, 1);
    poet_stack_member_set(&plan, G, stack, 2, member);
    poet_stack_member_get(&plan, G, stack, 2, back);
    TEST_CHECK(memcmp(member, back, n_params * sizeof *member) == 0, "member 2 round trip");
    size_t changed = 0;
    for (size_t i = 0; i < G * n_params; i++)
        changed += stack[i] != before[i];
    TEST_CHECK(changed == n_params, "member_set changed %zu elements, expected %zu", changed,
               n_params);
    /* Stack layout: tensor t of member g at G·offset + g·count. */
    const poet_tensor_info *t1 = &plan.tensors[1];
    TEST_CHECK(stack[G * t1->offset + 2 * t1->count] == member[t1->offset],
               "tensor %s of member 2 where net.h says", t1->name);
    printf("member get/set round trip: %zu of %zu elements changed\n", changed, G * n_params);
    free(stack), free(before), free(member), free(back);
}

/* Backward differentiates the forward it follows, even when the parameters change in between (the
 * stale overlap mode steps the weights between a batch's forward and its backward): the gemm
 * convolutions recompute their chains' inner outputs in backward, from the weights and biases of
 * the forward. The gradients must equal those of an undisturbed forward + backward, bit for bit. */
static void backward_uses_forward_parameters(const net_case *nc, const poet_stack_options *opt,
                                             int G, int B) {
    poet_arch_plan plan;
    build_plan(nc, &plan);
    size_t n_params = plan.param_count, n_img = (size_t)plan.input.c * plan.input.h * plan.input.w;
    size_t all = (size_t)G * n_params;
    float *params = xmalloc(all * sizeof *params), *grads = xmalloc(all * sizeof *grads);
    float *expected = xmalloc(all * sizeof *expected);
    float *images = xmalloc((size_t)B * n_img * sizeof *images);
    float *logits = xmalloc((size_t)B * G * plan.classes * sizeof *logits);
    float *dlogits = xmalloc((size_t)B * plan.classes * sizeof *dlogits);
    fill_f32(params, all, 777, -0.5, 0.5);
    fill_f32(images, (size_t)B * n_img, 4242, -1.0, 2.0);
    fill_f32(dlogits, (size_t)B * plan.classes, 1u << 29, -1.0 / B, 1.0 / B);
    poet_stack *stack = NULL;
    TEST_OK(poet_stack_create(&plan, G, B, 1, opt, params, grads, &stack));
    TEST_OK(poet_stack_forward(stack, images, logits));
    TEST_OK(poet_stack_backward(stack, dlogits, 0));
    memcpy(expected, grads, all * sizeof *grads);
    TEST_OK(poet_stack_forward(stack, images, logits));
    for (size_t i = 0; i < all; i++) /* a step between forward and backward */
        params[i] -= 0.25f * expected[i] + 0.01f;
    TEST_OK(poet_stack_backward(stack, dlogits, 0));
    size_t differ = 0;
    for (size_t i = 0; i < all; i++)
        differ += memcmp(&grads[i], &expected[i], sizeof(float)) != 0;
    printf("%s: G=%d B=%d, parameters changed between forward and backward: %zu of %zu "
           "gradients differ\n",
           nc->name, G, B, differ, all);
    TEST_CHECK(differ == 0, "backward after a parameter change: %zu gradients differ", differ);
    poet_stack_destroy(stack);
    free(params), free(grads), free(expected), free(images), free(logits), free(dlogits);
}

/* Refusals: no weight layer (config error, nothing leaked, *out NULL); backward on an inference
 * stack. */
static void error_paths(void) {
    net_case pool_only = {"pool only", {4, 3, 3}, 4, 1, {global_pool(POET_LAYER_AVG_POOL)}};
    poet_arch_plan plan;
    build_plan(&pool_only, &plan);
    float params[1] = {0}, grads[1] = {0};
    poet_stack *stack = (poet_stack *)params; /* must be reset to NULL */
    poet_status st = poet_stack_create(&plan, 2, 3, 1, NULL, params, grads, &stack);
    printf("no weight layer: %s: %s\n", poet_status_name(st), poet_error_message());
    TEST_CHECK(st == POET_ERR_CONFIG && stack == NULL, "expected a config error, got %d", st);
    poet_error_clear();

    net_case mlp = {"mlp", {1, 2, 2}, 2, 1, {linear(2)}};
    build_plan(&mlp, &plan);
    float w[10] = {0}, images[4] = {0}, logits[2], dlogits[2] = {0};
    TEST_OK(poet_stack_create(&plan, 1, 1, 0, NULL, w, NULL, &stack));
    TEST_OK(poet_stack_forward(stack, images, logits));
    st = poet_stack_backward(stack, dlogits, 0);
    printf("backward on inference stack: %s: %s\n", poet_status_name(st), poet_error_message());
    TEST_CHECK(st != POET_OK, "backward on an inference stack must fail");
    poet_error_clear();
    poet_stack_destroy(stack);
}

int main(void) {
    const net_case cases[] = {
        {"reference 1x28x28",
         {1, 28, 28},
         10,
         8,
         {conv(20, 3, 2, 0), relu(), conv(40, 3, 2, 0), relu(), pool(POET_LAYER_AVG_POOL, 6, 6, 0),
          linear(20), relu(), linear(10)}},
        {"pad/stride/max/avg-pad/linear-after-spatial",
         {3, 12, 12},
         5,
         9,
         {conv(8, 3, 1, 1), relu(), pool(POET_LAYER_MAX_POOL, 2, 2, 0), conv(6, 3, 2, 1), relu(),
          pool(POET_LAYER_AVG_POOL, 3, 2, 1), linear(7), relu(), linear(5)}},
        {"shared-prefix pool, global avg",
         {2, 10, 10},
         4,
         6,
         {pool(POET_LAYER_MAX_POOL, 2, 2, 0), relu(), conv(5, 3, 1, 0), relu(),
          global_pool(POET_LAYER_AVG_POOL), linear(4)}},
        {"mlp on images", {1, 6, 6}, 3, 3, {linear(16), relu(), linear(3)}},
        {"two convolutions without a relu between (one chain)",
         {1, 10, 10},
         3,
         5,
         {conv(4, 3, 1, 1), conv(6, 3, 1, 0), relu(), global_pool(POET_LAYER_AVG_POOL), linear(3)}},
        {"ends in global max pool",
         {2, 9, 9},
         6,
         6,
         {conv(6, 3, 1, 1), relu(), pool(POET_LAYER_MAX_POOL, 3, 2, 1), conv(6, 1, 1, 0),
          pool(POET_LAYER_AVG_POOL, 2, 1, 0), global_pool(POET_LAYER_MAX_POOL)}},
        {"convolution straight into global average pooling",
         {2, 7, 7},
         3,
         3,
         {conv(5, 3, 2, 1), global_pool(POET_LAYER_AVG_POOL), linear(3)}},
        {"ends in relu and global average pooling",
         {1, 9, 9},
         4,
         5,
         {conv(6, 3, 2, 0), relu(), conv(4, 3, 1, 1), relu(), global_pool(POET_LAYER_AVG_POOL)}},
        /* Residual blocks (graphs): the relu before a block is read by the block and by the add,
         * so its gradient is a sum; the projection reads it too, strided. */
        {"residual block, identity shortcut, 1 channel",
         {1, 8, 8},
         4,
         9,
         {conv(4, 3, 1, 1), relu(), conv(4, 3, 1, 1), relu(), conv(4, 3, 1, 1), add_of(1, 4),
          relu(), global_pool(POET_LAYER_AVG_POOL), linear(4)}},
        {"residual block, identity shortcut, 3 channels",
         {3, 7, 6},
         4,
         9,
         {conv(5, 3, 1, 1), relu(), conv(5, 3, 1, 1), relu(), conv(5, 3, 1, 1), add_of(1, 4),
          relu(), global_pool(POET_LAYER_AVG_POOL), linear(4)}},
        {"residual block, 1x1 strided projection, 1 channel",
         {1, 9, 9},
         4,
         10,
         {conv(4, 3, 1, 1), relu(), conv(6, 3, 2, 1), relu(), conv(6, 3, 1, 1),
          from(conv(6, 1, 2, 0), 1), add_of(4, 5), relu(), global_pool(POET_LAYER_AVG_POOL),
          linear(4)}},
        {"residual block, 1x1 strided projection, 3 channels",
         {3, 8, 8},
         5,
         10,
         {conv(8, 3, 1, 1), relu(), conv(16, 3, 2, 1), relu(), conv(16, 3, 1, 1),
          from(conv(16, 1, 2, 0), 1), add_of(4, 5), relu(), global_pool(POET_LAYER_AVG_POOL),
          linear(5)}},
        {"batchnorm residual block, identity shortcut, 1 channel",
         {1, 8, 8},
         4,
         12,
         {conv(4, 3, 1, 1), batchnorm(), relu(), conv(4, 3, 1, 1), batchnorm(), relu(),
          conv(4, 3, 1, 1), batchnorm(), add_of(2, 7), relu(), global_pool(POET_LAYER_AVG_POOL),
          linear(4)}},
        {"batchnorm residual block, 1x1 strided projection, 3 channels",
         {3, 9, 9},
         5,
         14,
         {conv(8, 3, 1, 1), batchnorm(), relu(), conv(16, 3, 2, 1), batchnorm(), relu(),
          conv(16, 3, 1, 1), batchnorm(), from(conv(16, 1, 2, 0), 2), batchnorm(), add_of(7, 9),
          relu(), global_pool(POET_LAYER_AVG_POOL), linear(5)}},
        /* Convolutions without bias ("bias": false, as PyTorch's ResNets before BN): a chain of
         * two (relu fused, narrow kernels), then a BN block with a bias-free projection and a
         * bias-free linear layer. */
        {"bias-free convolutions, chain and batchnorm residual block, 3 channels",
         {3, 9, 9},
         5,
         13,
         {no_bias(conv(8, 3, 1, 1)), relu(), no_bias(conv(8, 3, 1, 1)), batchnorm(), relu(),
          no_bias(conv(16, 3, 2, 1)), batchnorm(), from(no_bias(conv(16, 1, 2, 0)), 4), batchnorm(),
          add_of(6, 8), relu(), global_pool(POET_LAYER_AVG_POOL), no_bias(linear(5))}},
    };
    const net_case chunky = {"two 3x3 convolutions, padding 1",
                             {1, 16, 16},
                             4,
                             6,
                             {conv(8, 3, 1, 1), relu(), conv(8, 3, 1, 1), relu(),
                              global_pool(POET_LAYER_AVG_POOL), linear(4)}};
    const int Gs[] = {1, 3}, Bs[] = {1, 5};
    /* gemm twice: with poet's AVX-512 code (narrow products, im2col/col2im runs: the default
     * where the CPU has it) and with the portable code and sgemm for every product. */
    const poet_convolution algorithms[] = {POET_CONV_GEMM, POET_CONV_GEMM, POET_CONV_ONEDNN};
    const int avx512[] = {1, 0, 1};
    const char *names[] = {"im2col + products (AVX-512 code where the CPU has it)",
                           "im2col + sgemm, portable code only", "oneDNN primitives"};
    for (int a = 0; a < 3; a++) {
        printf("== convolutions as %s\n", names[a]);
        const poet_stack_options opt = {.convolution = algorithms[a], .threads = 1, .state = NULL};
        poet_cpu_set_avx512(avx512[a]);
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
            for (int gi = 0; gi < 2; gi++)
                for (int bi = 0; bi < 2; bi++)
                    run_case(&cases[c], &opt, Gs[gi], Bs[bi]);
        /* Batches of several chunks, the last one partial (src/net.c, chain_chunk_images): the
         * reference network's two convolutions form one chain of 7 images per chunk, chunky's
         * (padding 1) one of 4; cases[1]'s convolutions (a pooling between) are two chains. */
        run_case(&cases[0], &opt, 2, 20);
        run_case(&cases[1], &opt, 3, 40);
        run_case(&chunky, &opt, 2, 40);
        member_round_trip(&cases[1]);
    }
    const poet_stack_options gemm = {.convolution = POET_CONV_GEMM, .threads = 1, .state = NULL};
    backward_uses_forward_parameters(&cases[0], &gemm, 3, 20);
    backward_uses_forward_parameters(&chunky, &gemm, 2, 9);
    error_paths();
    return test_finish("net_vs_reference");
}
