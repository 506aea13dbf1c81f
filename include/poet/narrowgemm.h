/* narrowgemm.h — the two products of a narrow convolution, written out for AVX-512.
 *
 * A convolution whose window is small (the reference network's first layer: 3x3 on one channel,
 * a width of 10 with the ones column) gives sgemm products with an inner dimension of 10 and 20
 * output columns. oneDNN's sgemm packs its operands and runs a blocked loop for every call; on
 * these shapes that overhead, not the arithmetic, sets its rate. The kernels here keep the whole
 * weight matrix in vector registers and stream the rows once (the figures: bench/README.md,
 * "Narrow products"). Products that do not fit, and machines without AVX-512 (cpu.h), use sgemm.
 *
 * Layouts as in gemmconv.h: rows of `width` floats (a window and its 1), weights [width, out],
 * weight gradients [out, width]. The last element of every row of col must be 1 (gemmconv's ones
 * column): the kernels add the bias row instead of multiplying by it.
 * The sums run in a fixed order (over the width; for the weight gradient over the call's rows in
 * order, then onto what dw holds), so results do not depend on threads. They round differently
 * from sgemm.
 */
#ifndef POET_NARROWGEMM_H
#define POET_NARROWGEMM_H

#include <stddef.h>

#define POET_NARROW_MAX_WIDTH 16
#define POET_NARROW_MAX_OUT 32

/* Whether a product of this width and output count goes through the kernels. */
int poet_narrow_fits(size_t width, size_t out);

/* dst [rows, out] = col [rows, width] · w (w: [width, out]), then max(·, 0) when `relu`.
 * Only for shapes where poet_narrow_fits holds, and where poet_cpu_avx512() (cpu.h). */
void poet_narrow_forward(size_t rows, size_t width, size_t out, const float *col, const float *w,
                         int relu, float *dst);

/* Where a forward's output rows also go: the im2col matrix of the convolution that reads them
 * (gemmconv.h), filled without reading the output back. The rows are whole images of `pixels`
 * rows each; row r (pixel p of image i) is stored, through max(·, 0) when `relu`, at
 * col + i·col_image + offsets[p·places + j] for j < counts[p]. */
typedef struct {
    float *col;
    size_t pixels, col_image, places;
    const int *offsets, *counts;
    int relu;
} poet_narrow_scatter;

/* poet_narrow_forward, and every output row also where `to` says (the same values, bit for bit).
 * rows must be a multiple of to->pixels. */
void poet_narrow_forward_scatter(size_t rows, size_t width, size_t out, const float *col,
                                 const float *w, int relu, float *dst,
                                 const poet_narrow_scatter *to);

/* dw [out, width] = ddstᵀ · col (ddst: [rows, out]), added to dw when `accumulate`. */
void poet_narrow_weights(size_t rows, size_t width, size_t out, const float *ddst, const float *col,
                         int accumulate, float *dw);

#endif
