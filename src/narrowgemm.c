/* narrowgemm.c — narrow convolution products with AVX-512 intrinsics (see narrowgemm.h).
 *
 * Output channels run along the vector lanes, 16 to a register, one or two registers (`blocks`)
 * per row; the last register's lanes past `out` are masked. The last column of col is gemmconv's
 * ones column, so its products are additions of the bias row (forward) or of the gradient
 * (dL/db): the same values as the multiply-adds by 1, without their broadcasts and multiplies. Each
 * kernel is compiled once per (width, blocks) pair so that the width loop unrolls and the weights
 * or sums stay in registers: a width known only at run time would keep them in memory.
 */
#include "poet/narrowgemm.h"

#include "poet/cpu.h"

#if POET_AVX512_CODE
#include <immintrin.h>
#endif

int poet_narrow_fits(size_t width, size_t out) {
    return width >= 1 && width <= POET_NARROW_MAX_WIDTH && out >= 1 && out <= POET_NARROW_MAX_OUT;
}

#if POET_AVX512_CODE

#define KERNEL static inline __attribute__((always_inline, target("avx512f")))
#define ENTRY static __attribute__((target("avx512f")))
#define LANES 16
#define ROWS_AT_ONCE 4 /* rows per step of forward: 4 x 2 sums + 2 x width weights in registers */

/* Lanes of the last register that hold output channels. */
KERNEL __mmask16 last_lanes(size_t out, int blocks) {
    return (__mmask16)((1u << (out - (size_t)(blocks - 1) * LANES)) - 1u);
}

/* Block b (16 output channels) of a row of `out` floats; the lanes past `out` are 0. */
KERNEL __m512 load_block(const float *row, int b, const int blocks, __mmask16 tail) {
    return b == blocks - 1 ? _mm512_maskz_loadu_ps(tail, row + b * LANES)
                           : _mm512_loadu_ps(row + b * LANES);
}

/* One output row from its sum registers, through max(·, 0) when `relu`. */
KERNEL void store_row(float *d, const __m512 *sum, const int blocks, __mmask16 tail, int relu) {
#pragma GCC unroll 2
    for (int b = 0; b < blocks; b++) {
        __m512 v = relu ? _mm512_max_ps(sum[b], _mm512_setzero_ps()) : sum[b];
        if (b == blocks - 1)
            _mm512_mask_storeu_ps(d + b * LANES, tail, v);
        else
            _mm512_storeu_ps(d + b * LANES, v);
    }
}

/* Where the scatter of forward_body stands: the next row's pixel (its places and their count),
 * the pixels left in its image and that image's part of the im2col matrix. Copied out of the
 * poet_narrow_scatter into locals: the vector stores may alias anything, so fields read through
 * a pointer would be reloaded after every store. */
typedef struct {
    const int *offsets, *counts;
    size_t left;
    float *image;
} scatter_at;

KERNEL scatter_at scatter_start(const poet_narrow_scatter *to) {
    return (scatter_at){to->offsets, to->counts, to->pixels, to->col};
}

/* One output row (its sums) into the places of its pixel, then on to the next pixel. */
KERNEL void scatter_row(const poet_narrow_scatter *to, size_t places, int relu, scatter_at *at,
                        const __m512 *sum, const int blocks, __mmask16 tail) {
    int count = *at->counts;
    for (int j = 0; j < count; j++)
        store_row(at->image + at->offsets[j], sum, blocks, tail, relu);
    at->offsets += places;
    at->counts++;
    if (--at->left == 0) {
        float *next_image = at->image + to->col_image;
        *at = scatter_start(to);
        at->image = next_image;
    }
}

/* Forward: rows at a time, each row's outputs = Σ_k col[row, k] · (row k of w); with `to`, also
 * scattered into the next layer's im2col matrix (NULL: compiled out). */
KERNEL void forward_body(size_t rows, const int W, const int blocks, size_t out, const float *col,
                         const float *w, int relu, float *dst, const poet_narrow_scatter *to) {
    __mmask16 tail = last_lanes(out, blocks);
    scatter_at at = {0};
    size_t places = 0;
    int scatter_relu = 0;
    if (to) {
        at = scatter_start(to);
        places = to->places;
        scatter_relu = to->relu;
    }
    __m512 wk[POET_NARROW_MAX_WIDTH][2];
#pragma GCC unroll 16
    for (int k = 0; k < W; k++) {
        wk[k][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
        for (int b = 0; b < blocks; b++)
            wk[k][b] = load_block(w + k * out, b, blocks, tail);
    }
    size_t r = 0;
    for (; r + ROWS_AT_ONCE <= rows; r += ROWS_AT_ONCE) {
        __m512 sum[ROWS_AT_ONCE][2];
#pragma GCC unroll 4
        for (int i = 0; i < ROWS_AT_ONCE; i++)
            sum[i][0] = sum[i][1] = _mm512_setzero_ps();
        const float *c = col + r * (size_t)W;
#pragma GCC unroll 16
        for (int k = 0; k < W - 1; k++)
#pragma GCC unroll 4
            for (int i = 0; i < ROWS_AT_ONCE; i++) {
                __m512 x = _mm512_set1_ps(c[i * W + k]);
#pragma GCC unroll 2
                for (int b = 0; b < blocks; b++)
                    sum[i][b] = _mm512_fmadd_ps(x, wk[k][b], sum[i][b]);
            }
#pragma GCC unroll 4
        for (int i = 0; i < ROWS_AT_ONCE; i++) /* the ones column: 1 · bias */
#pragma GCC unroll 2
            for (int b = 0; b < blocks; b++)
                sum[i][b] = _mm512_add_ps(sum[i][b], wk[W - 1][b]);
#pragma GCC unroll 4
        for (int i = 0; i < ROWS_AT_ONCE; i++) {
            store_row(dst + (r + (size_t)i) * out, sum[i], blocks, tail, relu);
            if (to)
                scatter_row(to, places, scatter_relu, &at, sum[i], blocks, tail);
        }
    }
    for (; r < rows; r++) { /* the last rows, one at a time (the same sums in the same order) */
        __m512 sum[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        const float *c = col + r * (size_t)W;
#pragma GCC unroll 16
        for (int k = 0; k < W - 1; k++) {
            __m512 x = _mm512_set1_ps(c[k]);
#pragma GCC unroll 2
            for (int b = 0; b < blocks; b++)
                sum[b] = _mm512_fmadd_ps(x, wk[k][b], sum[b]);
        }
#pragma GCC unroll 2
        for (int b = 0; b < blocks; b++)
            sum[b] = _mm512_add_ps(sum[b], wk[W - 1][b]);
        store_row(dst + r * out, sum, blocks, tail, relu);
        if (to)
            scatter_row(to, places, scatter_relu, &at, sum, blocks, tail);
    }
}

/* Weight gradient: one sum register per (k, block), every row added in order. */
KERNEL void weights_body(size_t rows, const int W, const int blocks, size_t out, const float *ddst,
                         const float *col, int accumulate, float *dw) {
    __m512 sum[POET_NARROW_MAX_WIDTH][2];
#pragma GCC unroll 16
    for (int k = 0; k < W; k++)
        sum[k][0] = sum[k][1] = _mm512_setzero_ps();
    __mmask16 tail = last_lanes(out, blocks);
    for (size_t r = 0; r < rows; r++) {
        const float *g = ddst + r * out, *c = col + r * (size_t)W;
        __m512 gv[2];
#pragma GCC unroll 2
        for (int b = 0; b < blocks; b++)
            gv[b] = load_block(g, b, blocks, tail);
#pragma GCC unroll 16
        for (int k = 0; k < W - 1; k++) {
            __m512 x = _mm512_set1_ps(c[k]);
#pragma GCC unroll 2
            for (int b = 0; b < blocks; b++)
                sum[k][b] = _mm512_fmadd_ps(x, gv[b], sum[k][b]);
        }
#pragma GCC unroll 2
        for (int b = 0; b < blocks; b++) /* the ones column: dL/db */
            sum[W - 1][b] = _mm512_add_ps(sum[W - 1][b], gv[b]);
    }
#pragma GCC unroll 16
    for (int k = 0; k < W; k++) {
        float lanes[2 * LANES];
        _mm512_storeu_ps(lanes, sum[k][0]);
        _mm512_storeu_ps(lanes + LANES, sum[k][1]);
        for (size_t o = 0; o < out; o++) {
            float *d = &dw[o * (size_t)W + k];
            *d = accumulate ? *d + lanes[o] : lanes[o];
        }
    }
}

/* One compiled copy of each kernel per (width, blocks). */
#define NARROW_INSTANCE(W)                                                                         \
    ENTRY void forward_##W(size_t rows, int blocks, size_t out, const float *col, const float *w,  \
                           int relu, float *dst, const poet_narrow_scatter *to) {                  \
        if (blocks == 1 && to)                                                                     \
            forward_body(rows, W, 1, out, col, w, relu, dst, to);                                  \
        else if (blocks == 1)                                                                      \
            forward_body(rows, W, 1, out, col, w, relu, dst, NULL);                                \
        else if (to)                                                                               \
            forward_body(rows, W, 2, out, col, w, relu, dst, to);                                  \
        else                                                                                       \
            forward_body(rows, W, 2, out, col, w, relu, dst, NULL);                                \
    }                                                                                              \
    ENTRY void weights_##W(size_t rows, int blocks, size_t out, const float *ddst,                 \
                           const float *col, int accumulate, float *dw) {                          \
        if (blocks == 1)                                                                           \
            weights_body(rows, W, 1, out, ddst, col, accumulate, dw);                              \
        else                                                                                       \
            weights_body(rows, W, 2, out, ddst, col, accumulate, dw);                              \
    }
#define NARROW_WIDTHS(X)                                                                           \
    X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
NARROW_WIDTHS(NARROW_INSTANCE)

typedef void (*forward_fn)(size_t, int, size_t, const float *, const float *, int, float *,
                           const poet_narrow_scatter *);
typedef void (*weights_fn)(size_t, int, size_t, const float *, const float *, int, float *);
#define NARROW_FORWARD_ENTRY(W) forward_##W,
#define NARROW_WEIGHTS_ENTRY(W) weights_##W,
static const forward_fn forward_by_width[] = {NARROW_WIDTHS(NARROW_FORWARD_ENTRY)};
static const weights_fn weights_by_width[] = {NARROW_WIDTHS(NARROW_WEIGHTS_ENTRY)};

static int blocks_for(size_t out) { return out > LANES ? 2 : 1; }

void poet_narrow_forward(size_t rows, size_t width, size_t out, const float *col, const float *w,
                         int relu, float *dst) {
    forward_by_width[width - 1](rows, blocks_for(out), out, col, w, relu, dst, NULL);
}

void poet_narrow_forward_scatter(size_t rows, size_t width, size_t out, const float *col,
                                 const float *w, int relu, float *dst,
                                 const poet_narrow_scatter *to) {
    forward_by_width[width - 1](rows, blocks_for(out), out, col, w, relu, dst, to);
}

void poet_narrow_weights(size_t rows, size_t width, size_t out, const float *ddst, const float *col,
                         int accumulate, float *dw) {
    weights_by_width[width - 1](rows, blocks_for(out), out, ddst, col, accumulate, dw);
}

#else /* no AVX-512 code on this platform: poet_cpu_avx512() is 0, callers use sgemm */

void poet_narrow_forward(size_t rows, size_t width, size_t out, const float *col, const float *w,
                         int relu, float *dst) {
    (void)rows, (void)width, (void)out, (void)col, (void)w, (void)relu, (void)dst;
}

void poet_narrow_forward_scatter(size_t rows, size_t width, size_t out, const float *col,
                                 const float *w, int relu, float *dst,
                                 const poet_narrow_scatter *to) {
    (void)rows, (void)width, (void)out, (void)col, (void)w, (void)relu, (void)dst, (void)to;
}

void poet_narrow_weights(size_t rows, size_t width, size_t out, const float *ddst, const float *col,
                         int accumulate, float *dw) {
    (void)rows, (void)width, (void)out, (void)ddst, (void)col, (void)accumulate, (void)dw;
}

#endif
