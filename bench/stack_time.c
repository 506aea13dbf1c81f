/* stack_time.c — the network alone: forward and backward of one rank's fused stack, timed for each
 * convolution algorithm (im2col + sgemm, oneDNN convolution primitives) in the same run.
 *
 * usage: stack_time CONFIG [ITERATIONS [ROUNDS [ONLY]]]   defaults 30 iterations, 5 rounds
 *        ONLY = gemm or onednn times that algorithm alone (for profilers)
 *        POET_BENCH_INPUT=CxHxW sets the image shape (default 1x28x28, Fashion-MNIST's)
 *        POET_BENCH_WARMUP=N untimed steps before each round (default 3)
 *
 * Builds one stack of all the config's members (the first member's architecture) with the config's
 * batch, PyTorch-initialised weights and random images, on OMP_NUM_THREADS threads (default: all
 * cores). A round times ITERATIONS forward+backward steps of each algorithm after the untimed
 * ones; rounds alternate the algorithms and each one's best round counts (interference only
 * slows a run down). No data loading, loss, communication or optimiser: what is left is the
 * network, which is where poet spends ~99% of a step (the trainer's profile line). Prints
 * per-step milliseconds, member-images/s and the ratio gemm / onednn, plus machine-readable lines
 *   stack_time <algorithm> <forward ms> <backward ms> <member-images/s>
 *   stack_time_memory <algorithms> <measured MiB per member> <estimated MiB per member>
 *
 * With ONLY, only that algorithm's stack is built, so the memory line is that algorithm's: the
 * growth of the resident set's high-water mark (VmHWM) from after the random images were made to
 * the end, over the members (parameters, gradients, running statistics, the stack's activations
 * and workspaces; no momentum, no data set), and the trainer's estimate per member
 * (poet_arch_member_bytes for one batch in flight, no evaluation rows: it counts momentum too).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "poet/arch.h"
#include "poet/config.h"
#include "poet/net.h"

/* A field of /proc/self/status in bytes (0 where there is no /proc). */
static double status_bytes(const char *field) {
    char line[256];
    double kib = 0;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kib = atof(line + n + 1);
    if (f)
        fclose(f);
    return 1024.0 * kib;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const char *name;
    poet_convolution algorithm;
    poet_stack *stack;
    double forward, backward; /* best round's seconds per step */
} variant;

/* One round: `iterations` timed steps after `warmup` untimed ones; keeps the best per-step times.
 */
static poet_status time_round(variant *v, const float *images, float *logits, const float *dlogits,
                              int iterations, int warmup) {
    poet_status st = POET_OK;
    double fwd = 0, bwd = 0;
    for (int i = -warmup; i < iterations && st == POET_OK; i++) {
        double t0 = seconds();
        st = poet_stack_forward(v->stack, images, logits);
        double t1 = seconds();
        if (st == POET_OK)
            st = poet_stack_backward(v->stack, dlogits, 0);
        double t2 = seconds();
        if (i >= 0) {
            fwd += t1 - t0;
            bwd += t2 - t1;
        }
    }
    if (v->forward == 0 || fwd + bwd < (v->forward + v->backward) * iterations) {
        v->forward = fwd / iterations;
        v->backward = bwd / iterations;
    }
    return st;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: stack_time CONFIG [ITERATIONS [ROUNDS [gemm|onednn]]]\n");
        return 2;
    }
    int iterations = argc > 2 ? atoi(argv[2]) : 30, rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (iterations < 1 || rounds < 1) {
        fprintf(stderr, "stack_time: ITERATIONS and ROUNDS must be >= 1\n");
        return 2;
    }
    poet_config *cfg = calloc(1, sizeof *cfg);
    poet_arch_plan plan;
    variant v[] = {{"gemm", POET_CONV_GEMM, NULL, 0, 0}, {"onednn", POET_CONV_ONEDNN, NULL, 0, 0}};
    float *params = NULL, *grads = NULL, *images = NULL, *logits = NULL, *dlogits = NULL;
    poet_shape input = {1, 28, 28};
    const char *shape = getenv("POET_BENCH_INPUT"), *warm = getenv("POET_BENCH_WARMUP");
    int warmup = warm ? atoi(warm) : 3;
    if (warmup < 0) {
        fprintf(stderr, "stack_time: POET_BENCH_WARMUP: expected an integer >= 0, got '%s'\n",
                warm);
        return 2;
    }
    if (shape && (sscanf(shape, "%dx%dx%d", &input.c, &input.h, &input.w) != 3 || input.c < 1 ||
                  input.h < 1 || input.w < 1)) {
        fprintf(stderr, "stack_time: POET_BENCH_INPUT: expected CxHxW, got '%s'\n", shape);
        free(cfg);
        return 2;
    }
    poet_status st = cfg ? poet_config_load(argv[1], cfg) : POET_ERR_NOMEM;
    if (st == POET_OK)
        st = poet_arch_plan_build(&cfg->archs[cfg->member_arch[0]], input, cfg->classes,
                                  "model.architecture", &plan);
    if (st != POET_OK) {
        fprintf(stderr, "stack_time: %s\n", poet_error_message());
        free(cfg);
        return st;
    }
    int G = cfg->members, B = cfg->batch_size, K = plan.classes;
    size_t P = (size_t)G * plan.param_count;
    size_t pixels = (size_t)B * input.c * input.h * input.w;
    size_t S = (size_t)G * plan.state_count;
    /* The input batch is shared by the members: made before the memory baseline. */
    images = malloc(pixels * sizeof *images);
    dlogits = malloc((size_t)B * K * sizeof *dlogits);
    if (!images || !dlogits) {
        fprintf(stderr, "stack_time: out of memory\n");
        return 6;
    }
    srand(1);
    for (size_t i = 0; i < pixels; i++)
        images[i] = (float)rand() / (float)RAND_MAX * 3.f - 0.4f; /* normalised pixel range */
    for (size_t i = 0; i < (size_t)B * K; i++)
        dlogits[i] = ((float)rand() / (float)RAND_MAX - 0.5f) / (float)(G * B);
    double baseline = status_bytes("VmRSS");
    float *state = calloc(S + 1, sizeof *state);
    params = malloc(P * sizeof *params);
    grads = malloc(P * sizeof *grads);
    logits = malloc((size_t)B * G * K * sizeof *logits);
    float *member = malloc(plan.param_count * sizeof *member);
    if (!params || !grads || !logits || !member) {
        fprintf(stderr, "stack_time: out of memory\n");
        return 6;
    }
    for (int g = 0; g < G; g++) {
        poet_arch_init_member(&plan, 42, g, member);
        poet_stack_member_set(&plan, G, params, g, member);
        poet_arch_init_state(&plan, member);
        if (state)
            poet_stack_state_set(&plan, G, state, g, member);
    }

    int threads = omp_get_max_threads();
    const char *only = argc > 4 ? argv[4] : NULL;
    for (int a = 0; a < 2 && st == POET_OK; a++) {
        poet_stack_options opt = {
            .convolution = v[a].algorithm, .threads = threads, .state = S ? state : NULL};
        if (!only || strcmp(only, v[a].name) == 0)
            st = poet_stack_create(&plan, G, B, 1, &opt, params, grads, &v[a].stack);
    }
    for (int r = 0; r < rounds && st == POET_OK; r++)
        for (int a = 0; a < 2 && st == POET_OK; a++)
            if (!only || strcmp(only, v[(a + r) % 2].name) == 0)
                st = time_round(&v[(a + r) % 2], images, logits, dlogits, iterations, warmup);
    if (st != POET_OK) {
        fprintf(stderr, "stack_time: %s\n", poet_error_message());
    } else {
        printf("stack of %d members, batch %d, %d thread(s), best of %d rounds of %d steps\n", G, B,
               threads, rounds, iterations);
        for (int a = 0; a < 2; a++) {
            if (!v[a].stack)
                continue;
            double rate = (double)G * B / (v[a].forward + v[a].backward);
            printf("  %-7s forward %7.2f ms  backward %7.2f ms  %9.0f member-images/s\n", v[a].name,
                   1e3 * v[a].forward, 1e3 * v[a].backward, rate);
        }
        if (!only)
            printf("  gemm / onednn: %.2fx\n",
                   (v[1].forward + v[1].backward) / (v[0].forward + v[0].backward));
        for (int a = 0; a < 2; a++) /* where the memory is, MiB per member (net.h) */
            if (v[a].stack) {
                poet_stack_census c;
                poet_stack_census_get(v[a].stack, &c);
                double m = (double)G * 1024.0 * 1024.0;
                printf("  %-7s MiB/member: outputs %.1f  input copies %.1f  workspaces %.1f  "
                       "weights+stats %.1f  lane pools %.1f (backward buffers unpooled %.1f)  "
                       "lane other %.1f  scratchpads %.1f  im2col %.1f\n",
                       v[a].name, c.dst / m, c.src_copy / m, c.workspace / m, c.unit_other / m,
                       c.pool / m, c.backward_unpooled / m, c.lane_private / m, c.scratchpad / m,
                       c.shared_col / m);
            }
        for (int a = 0; a < 2; a++)
            if (v[a].stack)
                printf("stack_time %s %.3f %.3f %.0f\n", v[a].name, 1e3 * v[a].forward,
                       1e3 * v[a].backward, (double)G * B / (v[a].forward + v[a].backward));
        const double mib = 1024.0 * 1024.0;
        printf("stack_time_memory %s %.2f %.2f\n", only ? only : "both",
               (status_bytes("VmHWM") - baseline) / G / mib,
               poet_arch_member_bytes(&plan, B, 1, 0) / mib);
    }
    for (int a = 0; a < 2; a++)
        poet_stack_destroy(v[a].stack);
    free(params);
    free(grads);
    free(images);
    free(logits);
    free(dlogits);
    free(member);
    free(state);
    free(cfg);
    return st;
}
