/* test_narrowgemm.c — the AVX-512 narrow products against double-precision products: every
 * (width, out) shape class (one register or two, a partial last register), row counts that leave
 * a remainder, relu, accumulation, and nothing written past the output. The rows end in the ones
 * column, as gemmconv's im2col matrices do (width 1 is the bias alone). */
#include <math.h>
#include <string.h>

#include "poet/cpu.h"
#include "poet/narrowgemm.h"
#include "poet/rng.h"
#include "testutil.h"

#define SENTINEL 12345.f

static void fill(float *v, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(poet_rng_uniform(seed, 0, i) - 0.5);
}

/* dst [rows, out] = col · w in double (w: [width, out]). */
static void forward_ref(size_t rows, size_t width, size_t out, const float *col, const float *w,
                        int relu, double *dst) {
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            double s = 0;
            for (size_t k = 0; k < width; k++)
                s += (double)col[r * width + k] * w[k * out + o];
            dst[r * out + o] = relu && s < 0 ? 0 : s;
        }
}

/* dw [out, width] = base + ddstᵀ · col in double. */
static void weights_ref(size_t rows, size_t width, size_t out, const float *ddst, const float *col,
                        const float *base, double *dw) {
    for (size_t o = 0; o < out; o++)
        for (size_t k = 0; k < width; k++) {
            double s = base ? base[o * width + k] : 0;
            for (size_t r = 0; r < rows; r++)
                s += (double)ddst[r * out + o] * col[r * width + k];
            dw[o * width + k] = s;
        }
}

static void check_shape(size_t rows, size_t width, size_t out, int relu, int accumulate) {
    char what[128];
    float *col = xmalloc(rows * width * sizeof *col), *w = xmalloc(out * width * sizeof *w);
    float *ddst = xmalloc(rows * out * sizeof *ddst);
    float *dst = xmalloc((rows * out + 1) * sizeof *dst),
          *dw = xmalloc((out * width + 1) * sizeof *dw);
    float *base = xmalloc(out * width * sizeof *base);
    double *ref = xmalloc((rows * out + out * width) * sizeof *ref);
    fill(col, rows * width, 1 + rows * 1000 + width);
    for (size_t r = 0; r < rows; r++) /* gemmconv's ones column, which the kernels rely on */
        col[r * width + width - 1] = 1.f;
    fill(w, out * width, 2 + out);
    fill(ddst, rows * out, 3 + rows);
    fill(base, out * width, 4);
    dst[rows * out] = SENTINEL;
    poet_narrow_forward(rows, width, out, col, w, relu, dst);
    forward_ref(rows, width, out, col, w, relu, ref);
    snprintf(what, sizeof what, "forward rows=%zu width=%zu out=%zu relu=%d", rows, width, out,
             relu);
    test_compare_f32(what, dst, ref, rows * out, 1e-6, 1e-5);
    TEST_CHECK(dst[rows * out] == SENTINEL, "%s wrote past its output", what);

    memcpy(dw, base, out * width * sizeof *dw);
    dw[out * width] = SENTINEL;
    poet_narrow_weights(rows, width, out, ddst, col, accumulate, dw);
    weights_ref(rows, width, out, ddst, col, accumulate ? base : NULL, ref);
    snprintf(what, sizeof what, "weights rows=%zu width=%zu out=%zu accumulate=%d", rows, width,
             out, accumulate);
    /* sums of up to 1183 terms of magnitude <= 1/4 */
    test_compare_f32(what, dw, ref, out * width, 1e-4, 1e-5);
    TEST_CHECK(dw[out * width] == SENTINEL, "%s wrote past its output", what);
    free(col), free(w), free(ddst), free(dst), free(dw), free(base), free(ref);
}

int main(void) {
    TEST_CHECK(poet_narrow_fits(10, 20), "the reference network's first convolution fits");
    TEST_CHECK(!poet_narrow_fits(17, 20) && !poet_narrow_fits(10, 33) && !poet_narrow_fits(0, 4) &&
                   !poet_narrow_fits(4, 0),
               "shapes past the limits do not fit");
    if (!poet_cpu_avx512()) {
        printf("SKIP: this CPU has no AVX-512; sgemm runs every product\n");
        return test_failures ? 1 : 77;
    }
    const size_t rows[] = {1, 3, 4, 5, 1183}, widths[] = {1, 10, 16}, outs[] = {1, 16, 20, 32};
    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
        for (size_t k = 0; k < sizeof widths / sizeof *widths; k++)
            for (size_t o = 0; o < sizeof outs / sizeof *outs; o++)
                check_shape(rows[r], widths[k], outs[o], (int)((r + o) % 2), (int)((r + k) % 2));

    /* Switched off, the AVX-512 code is not offered (gemmconv then uses sgemm). */
    poet_cpu_set_avx512(0);
    TEST_CHECK(!poet_cpu_avx512(), "poet_cpu_set_avx512(0) switches the AVX-512 code off");
    poet_cpu_set_avx512(1);
    TEST_CHECK(poet_cpu_avx512(), "poet_cpu_set_avx512(1) switches it back on");
    return test_finish("narrowgemm");
}
