/* test_joint_gradient.c — the ensemble gradient three ways, for M ∈ {1, 3, 10} members of the
 * reference network on a batch of B = 8 random 1×28×28 images:
 *   (a) "multiple graphs": M separate G=1 stacks; their logits summed in fixed point, the joint
 *       loss's (q̄ − p)/(M·B) fed to each stack's backward;
 *   (b) "single graph": one fused G=M stack, the same loss path;
 *   (c) the double reference: per-member forward, poet_ref_joint_loss differentiated end to end
 *       through the mean, per-member backward.
 * (a) and (b) run the same oneDNN primitives on the same numbers, so they must agree bit for bit
 * (logits, loss and every gradient: a member's trajectory does not depend on fusion), and so must
 * (b) run on 2 threads (members in parallel); both must match (c) for every parameter of every
 * member, and the losses must agree.
 *
 * The blended objective (docs/objectives.md) for several beta: the trainer's split gradient (the
 * joint part weighted at the root, each member's own part added by its rank) against the double
 * reference differentiated term by term, and the reference's logit gradient against central finite
 * differences of its loss.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/loss.h"
#include "poet/net.h"
#include "poet/reference.h"
#include "poet/rng.h"
#include "testutil.h"

#define B 8
#define K 10
#define ATOL_REF 1e-6 /* gradients are of order 1/(M·B); fp32 against double */
#define RTOL_REF 1e-4

static poet_layer_spec spec(poet_layer_kind kind, int out, int k, int s) {
    poet_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = kind;
    l.out = out;
    l.kernel = k;
    l.stride = s;
    return l;
}

/* conv(->20,k3,s2) relu conv(->40,k3,s2) relu avg_pool(6) linear(->20) relu linear(->K). */
static void reference_plan(poet_arch_plan *plan) {
    poet_arch arch;
    memset(&arch, 0, sizeof arch);
    poet_layer_spec layers[] = {
        spec(POET_LAYER_CONV, 20, 3, 2),    spec(POET_LAYER_RELU, 0, 0, 0),
        spec(POET_LAYER_CONV, 40, 3, 2),    spec(POET_LAYER_RELU, 0, 0, 0),
        spec(POET_LAYER_AVG_POOL, 0, 6, 6), spec(POET_LAYER_LINEAR, 20, 0, 0),
        spec(POET_LAYER_RELU, 0, 0, 0),     spec(POET_LAYER_LINEAR, K, 0, 0)};
    arch.n_layers = (int)(sizeof layers / sizeof *layers);
    memcpy(arch.layers, layers, sizeof layers);
    TEST_OK(poet_arch_plan_build(&arch, (poet_shape){1, 28, 28}, K, "reference", plan));
}

/* The loss path every rank runs: fixed-point sum of the members' logits, mean, joint loss.
 * logits of member j, image b: logits[j][b * stride + k]. */
static void joint_loss(float *const *logits, size_t stride, int M, const uint8_t *labels,
                       float *grad, double *loss) {
    int64_t acc[B * K] = {0};
    double mean[B * K];
    long correct = 0;
    for (int j = 0; j < M; j++)
        TEST_OK(poet_loss_add_fixed(acc, logits[j], stride, B, K, j));
    poet_loss_fixed_to_mean(acc, B, K, M, mean);
    poet_loss_joint(mean, labels, B, K, M, grad, loss, &correct);
}

/* Member j's parameters (members' buffers one after another, n each) as doubles. */
static void member_as_double(const float *params, int j, size_t n, double *params_d) {
    for (size_t i = 0; i < n; i++)
        params_d[i] = params[(size_t)j * n + i];
}

/* The double reference's forward of all M members: logits [M, B, K] and each member's cache (for
 * its backward); params_d is scratch for one member's parameters. */
static void reference_forward(const poet_arch_plan *plan, int M, const float *params,
                              const double *images_d, double *params_d, double *ref_logits,
                              poet_ref_cache **caches) {
    for (int j = 0; j < M; j++) {
        caches[j] = poet_ref_cache_create(plan, B);
        member_as_double(params, j, plan->param_count, params_d);
        poet_ref_forward(plan, params_d, B, images_d, ref_logits + (size_t)j * B * K, caches[j]);
    }
}

/* A batch of images in [-0.5, 1.5) (as float and the same values as double) and labels < K, all
 * from `seed`. */
static void random_batch(uint64_t seed, size_t n_img, float *images, double *images_d,
                         uint8_t *labels) {
    for (size_t i = 0; i < n_img; i++)
        images_d[i] = images[i] = (float)(2.0 * poet_rng_uniform(seed, POET_STREAM_TEST, i) - 0.5);
    for (int b = 0; b < B; b++)
        labels[b] = (uint8_t)poet_rng_u64(seed, POET_STREAM_TEST, 1000000 + b) % K;
}
static void run(int M) {
    poet_arch_plan plan;
    reference_plan(&plan);
    size_t n_params = plan.param_count, n_img = (size_t)B * 28 * 28;
    printf("M=%d members, B=%d, %zu params each\n", M, B, n_params);

    float *images = xmalloc(n_img * sizeof *images);
    double *images_d = xmalloc(n_img * sizeof *images_d);
    uint8_t labels[B];
    random_batch(3, n_img, images, images_d, labels);

    /* (a) multiple graphs: member j's params/grads in its own buffer. */
    const poet_stack_options one_thread = {
        .convolution = POET_CONV_GEMM, .threads = 1, .state = NULL};
    float *sep_params = xmalloc((size_t)M * n_params * sizeof(float));
    float *sep_grads = xmalloc((size_t)M * n_params * sizeof(float));
    float *sep_logits = xmalloc((size_t)M * B * K * sizeof(float));
    poet_stack **sep = xmalloc((size_t)M * sizeof *sep);
    float **sep_rows = xmalloc((size_t)M * sizeof *sep_rows);
    float grad_a[B * K], grad_b[B * K];
    double loss_a, loss_b;
    for (int j = 0; j < M; j++) {
        poet_arch_init_member(&plan, 2024, j, sep_params + j * n_params);
        TEST_OK(poet_stack_create(&plan, 1, B, 1, &one_thread, sep_params + j * n_params,
                                  sep_grads + j * n_params, &sep[j]));
        sep_rows[j] = sep_logits + (size_t)j * B * K;
        TEST_OK(poet_stack_forward(sep[j], images, sep_rows[j]));
    }
    joint_loss(sep_rows, K, M, labels, grad_a, &loss_a);
    for (int j = 0; j < M; j++)
        TEST_OK(poet_stack_backward(sep[j], grad_a, 0));

    /* (b) single graph: the same members fused into one G=M stack. */
    float *fused_params = xmalloc((size_t)M * n_params * sizeof(float));
    float *fused_grads = xmalloc((size_t)M * n_params * sizeof(float));
    float *fused_logits = xmalloc((size_t)B * M * K * sizeof(float));
    float **fused_rows = xmalloc((size_t)M * sizeof *fused_rows);
    poet_stack *fused = NULL;
    for (int j = 0; j < M; j++) {
        poet_stack_member_set(&plan, M, fused_params, j, sep_params + j * n_params);
        fused_rows[j] = fused_logits + (size_t)j * K;
    }
    TEST_OK(poet_stack_create(&plan, M, B, 1, &one_thread, fused_params, fused_grads, &fused));
    TEST_OK(poet_stack_forward(fused, images, fused_logits));
    joint_loss(fused_rows, (size_t)M * K, M, labels, grad_b, &loss_b);
    TEST_OK(poet_stack_backward(fused, grad_b, 0));

    /* (b) again with members on 2 threads: bitwise the same. */
    float *par_grads = xmalloc((size_t)M * n_params * sizeof(float));
    float *par_logits = xmalloc((size_t)B * M * K * sizeof(float));
    float par_grad[B * K];
    double loss_par;
    poet_stack *par = NULL;
    const poet_stack_options two_threads = {
        .convolution = POET_CONV_GEMM, .threads = 2, .state = NULL};
    TEST_OK(poet_stack_create(&plan, M, B, 1, &two_threads, fused_params, par_grads, &par));
    TEST_OK(poet_stack_forward(par, images, par_logits));
    for (int j = 0; j < M; j++)
        fused_rows[j] = par_logits + (size_t)j * K;
    joint_loss(fused_rows, (size_t)M * K, M, labels, par_grad, &loss_par);
    TEST_OK(poet_stack_backward(par, par_grad, 0));
    for (int j = 0; j < M; j++)
        fused_rows[j] = fused_logits + (size_t)j * K;
    TEST_CHECK(memcmp(par_logits, fused_logits, (size_t)B * M * K * sizeof(float)) == 0 &&
                   memcmp(par_grads, fused_grads, (size_t)M * n_params * sizeof(float)) == 0 &&
                   loss_par == loss_b,
               "2 threads changed logits, loss or gradients of the fused stack");
    printf("  2 threads: logits, loss and gradients bitwise equal to 1 thread: %s\n",
           memcmp(par_grads, fused_grads, (size_t)M * n_params * sizeof(float)) == 0 ? "yes"
                                                                                     : "NO");
    poet_stack_destroy(par);
    free(par_grads), free(par_logits);

    /* (c) the reference, differentiated end to end through the mean of the logits. */
    double *params_d = xmalloc(n_params * sizeof(double));
    double *ref_logits = xmalloc((size_t)M * B * K * sizeof(double));
    double *ref_dlogits = xmalloc((size_t)M * B * K * sizeof(double));
    double *ref_grads = xmalloc((size_t)M * n_params * sizeof(double));
    poet_ref_cache **caches = xmalloc((size_t)M * sizeof *caches);
    reference_forward(&plan, M, sep_params, images_d, params_d, ref_logits, caches);
    double loss_c = poet_ref_joint_loss(ref_logits, M, B, K, labels, ref_dlogits);
    for (int j = 0; j < M; j++) {
        member_as_double(sep_params, j, n_params, params_d);
        poet_ref_backward(&plan, params_d, B, ref_dlogits + (size_t)j * B * K, caches[j],
                          ref_grads + j * n_params, NULL);
    }

    printf("  loss: separate %.9f fused %.9f reference %.9f\n", loss_a, loss_b, loss_c);
    TEST_CHECK(loss_a == loss_b, "loss separate %.17g vs fused %.17g: expected identical", loss_a,
               loss_b);
    size_t logit_mismatch = 0;
    for (int j = 0; j < M; j++)
        for (int b = 0; b < B; b++)
            logit_mismatch += memcmp(sep_rows[j] + b * K, fused_rows[j] + (size_t)b * M * K,
                                     K * sizeof(float)) != 0;
    TEST_CHECK(logit_mismatch == 0, "%zu logit rows differ between separate and fused",
               logit_mismatch);
    TEST_CHECK(fabs(loss_a - loss_c) <= 1e-5, "loss separate %.9g vs ref %.9g", loss_a, loss_c);

    float *fused_member = xmalloc(n_params * sizeof(float));
    double *sep_d = xmalloc(n_params * sizeof(double));
    for (int j = 0; j < M; j++) {
        poet_stack_member_get(&plan, M, fused_grads, j, fused_member);
        for (size_t i = 0; i < n_params; i++)
            sep_d[i] = sep_grads[j * n_params + i];
        for (int t = 0; t < plan.n_tensors; t++) {
            const poet_tensor_info *ti = &plan.tensors[t];
            char label[96];
            snprintf(label, sizeof label, "  m%d %s fused vs separate", j, ti->name);
            /* atol 1e-30: only identical values pass (0/0 would be NaN). */
            test_compare_f32(label, fused_member + ti->offset, sep_d + ti->offset, ti->count, 1e-30,
                             0);
            snprintf(label, sizeof label, "  m%d %s separate vs reference", j, ti->name);
            test_compare_f32(label, sep_grads + j * n_params + ti->offset,
                             ref_grads + j * n_params + ti->offset, ti->count, ATOL_REF, RTOL_REF);
            snprintf(label, sizeof label, "  m%d %s fused vs reference", j, ti->name);
            test_compare_f32(label, fused_member + ti->offset,
                             ref_grads + j * n_params + ti->offset, ti->count, ATOL_REF, RTOL_REF);
        }
    }

    for (int j = 0; j < M; j++) {
        poet_stack_destroy(sep[j]);
        poet_ref_cache_destroy(caches[j]);
    }
    poet_stack_destroy(fused);
    free(images), free(images_d), free(sep_params), free(sep_grads), free(sep_logits), free(sep);
    free(sep_rows), free(fused_rows);
    free(fused_params), free(fused_grads), free(fused_logits), free(params_d), free(ref_logits);
    free(ref_dlogits), free(ref_grads), free(caches), free(fused_member), free(sep_d);
}

/* The blended gradient of M members for `beta`, as the trainer computes it, against the
 * reference. */
static void run_blend(int M, double beta) {
    poet_arch_plan plan;
    reference_plan(&plan);
    size_t n_params = plan.param_count, n_img = (size_t)B * 28 * 28;
    printf("blend M=%d beta=%g\n", M, beta);
    float *images = xmalloc(n_img * sizeof *images);
    double *images_d = xmalloc(n_img * sizeof *images_d);
    uint8_t labels[B];
    random_batch(5, n_img, images, images_d, labels);
    const poet_stack_options one_thread = {
        .convolution = POET_CONV_GEMM, .threads = 1, .state = NULL};
    float *params = xmalloc((size_t)M * n_params * sizeof(float));
    float *grads = xmalloc((size_t)M * n_params * sizeof(float));
    float *logits = xmalloc((size_t)M * B * K * sizeof(float));
    poet_stack **stacks = xmalloc((size_t)M * sizeof *stacks);
    int64_t acc[B * K] = {0};
    double mean[B * K], loss;
    float joint[B * K], own[B * K], whole[B * K];
    long correct;
    for (int j = 0; j < M; j++) {
        poet_arch_init_member(&plan, 77, j, params + j * n_params);
        TEST_OK(poet_stack_create(&plan, 1, B, 1, &one_thread, params + j * n_params,
                                  grads + j * n_params, &stacks[j]));
        TEST_OK(poet_stack_forward(stacks[j], images, logits + (size_t)j * B * K));
        TEST_OK(poet_loss_add_fixed(acc, logits + (size_t)j * B * K, K, B, K, j));
    }
    poet_loss_fixed_to_mean(acc, B, K, M, mean);
    poet_loss_joint_weighted(mean, labels, B, K, M, beta, joint, &loss, &correct);
    for (int j = 0; j < M; j++) {
        poet_loss_member_grad(logits + (size_t)j * B * K, K, labels, B, K, M, 1 - beta, own);
        for (int i = 0; i < B * K; i++)
            whole[i] = joint[i] + own[i];
        TEST_OK(poet_stack_backward(stacks[j], whole, 0));
    }
    /* The reference: double forward, blended loss differentiated term by term, double backward. */
    double *params_d = xmalloc(n_params * sizeof(double));
    double *ref_logits = xmalloc((size_t)M * B * K * sizeof(double));
    double *ref_dlogits = xmalloc((size_t)M * B * K * sizeof(double));
    double *ref_grads = xmalloc((size_t)M * n_params * sizeof(double));
    poet_ref_cache **caches = xmalloc((size_t)M * sizeof *caches);
    reference_forward(&plan, M, params, images_d, params_d, ref_logits, caches);
    poet_ref_blend_loss(ref_logits, M, B, K, labels, beta, ref_dlogits);
    for (int j = 0; j < M; j++) {
        member_as_double(params, j, n_params, params_d);
        poet_ref_backward(&plan, params_d, B, ref_dlogits + (size_t)j * B * K, caches[j],
                          ref_grads + j * n_params, NULL);
        for (int t = 0; t < plan.n_tensors; t++) {
            const poet_tensor_info *ti = &plan.tensors[t];
            char label[96];
            snprintf(label, sizeof label, "  m%d %s blend vs reference", j, ti->name);
            test_compare_f32(label, grads + j * n_params + ti->offset,
                             ref_grads + j * n_params + ti->offset, ti->count, ATOL_REF, RTOL_REF);
        }
    }
    /* The reference's own logit gradient against central differences of its loss. */
    double worst = 0, h = 1e-5;
    for (size_t i = 0; i < (size_t)M * B * K; i++) {
        double keep = ref_logits[i];
        ref_logits[i] = keep + h;
        double up = poet_ref_blend_loss(ref_logits, M, B, K, labels, beta, NULL);
        ref_logits[i] = keep - h;
        double down = poet_ref_blend_loss(ref_logits, M, B, K, labels, beta, NULL);
        ref_logits[i] = keep;
        worst = fmax(worst, fabs((up - down) / (2 * h) - ref_dlogits[i]));
    }
    printf("  reference dL/dlogits vs finite differences: worst |difference| %.3g\n", worst);
    TEST_CHECK(worst < 1e-8, "blend beta=%g: finite differences differ by %g", beta, worst);
    for (int j = 0; j < M; j++) {
        poet_stack_destroy(stacks[j]);
        poet_ref_cache_destroy(caches[j]);
    }
    free(images), free(images_d), free(params), free(grads), free(logits), free(stacks);
    free(params_d), free(ref_logits), free(ref_dlogits), free(ref_grads), free(caches);
}

int main(void) {
    const int Ms[] = {1, 3, 10};
    for (int i = 0; i < 3; i++)
        run(Ms[i]);
    const double betas[] = {0.0, 0.3, 0.7, 1.0};
    for (int i = 0; i < 4; i++)
        run_blend(3, betas[i]);
    return test_finish("joint_gradient");
}
