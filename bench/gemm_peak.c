/* gemm_peak.c — the machine's fp32 GEMM rate through oneDNN's dnnl_sgemm, the yardstick that
 * bench/run.sh divides poet's achieved GFLOP/s by.
 *
 * usage: gemm_peak [N] [REPEATS] [THREADS...]   defaults: 2048 5 1 2
 * For each thread count: C[N,N] = A[N,N]·B[N,N] REPEATS times after one warm-up call, the best
 * time counted (best of N: a shared machine only ever makes a run slower). One line each:
 *   sgemm n=2048 threads=1 best 0.123 s 139.6 GFLOP/s
 * A multiply-add counts 2 flops, so one product is 2·N³ flops.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Fills `x` with values in [-1, 1) from a fixed linear congruential sequence: the data only has to
 * be finite and non-trivial (no denormals), not random. */
static void fill(float *x, size_t count, unsigned seed) {
    unsigned s = seed;
    for (size_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) * (2.0 / 16777216.0) - 1.0);
    }
}

/* Best seconds of `repeats` timed products on `threads` threads; negative when oneDNN fails. */
static double best_time(int n, int repeats, int threads, const float *a, const float *b, float *c) {
    omp_set_num_threads(threads);
    double best = -1;
    for (int r = 0; r <= repeats; r++) { /* r = 0 is the warm-up (page faults, JIT, caches) */
        double t0 = now_seconds();
        dnnl_status_t s = dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now_seconds() - t0;
        if (s != dnnl_success) {
            fprintf(stderr, "gemm_peak: dnnl_sgemm(n=%d, threads=%d) failed: status %d\n", n,
                    threads, (int)s);
            return -1;
        }
        if (r > 0 && (best < 0 || dt < best))
            best = dt;
    }
    return best;
}

static int parse_positive(const char *text, const char *what, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || v < 1 || v > 1 << 16) {
        fprintf(stderr, "gemm_peak: %s: expected an integer 1..65536, got '%s'\n", what, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int main(int argc, char **argv) {
    int n = 2048, repeats = 5;
    int threads[16] = {1, 2}, n_threads = 2;
    if (argc > 1 && !parse_positive(argv[1], "N", &n))
        return 2;
    if (argc > 2 && !parse_positive(argv[2], "REPEATS", &repeats))
        return 2;
    if (argc > 3) {
        n_threads = 0;
        for (int i = 3; i < argc && n_threads < 16; i++)
            if (!parse_positive(argv[i], "THREADS", &threads[n_threads++]))
                return 2;
    }
    size_t count = (size_t)n * n;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b),
          *c = malloc(count * sizeof *c); /* each [N, N], row-major */
    int code = 0;
    if (!a || !b || !c) {
        fprintf(stderr, "gemm_peak: out of memory for three %dx%d matrices\n", n, n);
        code = 6;
        goto done;
    }
    fill(a, count, 1);
    fill(b, count, 2);
    for (int i = 0; i < n_threads; i++) {
        double t = best_time(n, repeats, threads[i], a, b, c);
        if (t <= 0) {
            code = 7;
            goto done;
        }
        printf("sgemm n=%d threads=%d best %.4f s %.1f GFLOP/s\n", n, threads[i], t,
               2.0 * n * n * (double)n / t * 1e-9);
        fflush(stdout);
    }
done:
    free(a);
    free(b);
    free(c);
    return code;
}
