/* gemmconv.h — a convolution as matrix products: im2col, oneDNN's sgemm, col2im.
 *
 * The reference network's convolutions are small (20 -> 40 channels on 13x13 images): written as
 * products over an im2col matrix they run faster than oneDNN 2.6's convolution primitives
 * (bench/README.md, "Convolutions as products"), and the layers around them need no layout
 * changes. Products with a narrow window go to narrowgemm's AVX-512 kernels instead of sgemm where
 * the CPU has AVX-512 (cpu.h). Activations are nhwc; the layer's input may be any plain layout
 * (given by strides), so the images feed the first convolution directly.
 *
 * Legend: R = B·OH·OW output pixels (rows), KC = KH·KW·C (the window of one output pixel, in
 * (kh, kw, c) order), O = output channels. A row of the im2col matrix is the window and a 1
 * (KC + 1 floats: the width). The weights in gemm layout are two copies: [KC + 1, O] ("hwio",
 * the biases as a last row) for the forward product, then [O, KC + 1] (output channel o's window
 * and bias per row) for the backward-data product: each product reads the layout sgemm runs it
 * faster from (bench/README.md, "Weights in two layouts"). The weight gradient comes out as
 * [O, KC + 1]. The ones column puts the bias into the forward product and dL/db into the
 * weight-gradient product, so neither needs a pass of its own.
 *
 * Everything here runs on the calling thread (oneDNN's sgemm inside the caller's OpenMP thread):
 * the results are bitwise the same whatever else runs.
 */
#ifndef POET_GEMMCONV_H
#define POET_GEMMCONV_H

#include <stddef.h>

#include "poet/error.h"

typedef struct {
    int batch, in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int kernel_h, kernel_w, stride, padding;
} poet_conv_shape;

/* Where element (b, c, h, w) of a plain 4-D tensor lives: b·n + c·c + h·h + w·w floats in. */
typedef struct {
    size_t n, c, h, w;
} poet_strides;

/* Strides of a dense nhwc tensor of these dimensions. */
poet_strides poet_strides_nhwc(int channels, int height, int width);

size_t poet_gemmconv_rows(const poet_conv_shape *s);  /* R */
size_t poet_gemmconv_cols(const poet_conv_shape *s);  /* KC */
size_t poet_gemmconv_width(const poet_conv_shape *s); /* KC + 1 */

/* col [R, KC + 1] from the input: the windows (positions in the padding are 0), with max(x, 0)
 * of the input when `relu`, and the ones column. */
void poet_gemmconv_im2col(const poet_conv_shape *s, const float *src, poet_strides in, int relu,
                          float *col);

/* Floats of the weights in gemm layout: 2·O·(KC + 1). */
size_t poet_gemmconv_weights_floats(const poet_conv_shape *s);

/* PyTorch's weights [O, C, KH, KW] and bias [O] into gemm layout (both copies); a NULL bias (a
 * layer without one) is a zero bias row. */
void poet_gemmconv_weights_to_gemm(const poet_conv_shape *s, const float *oihw, const float *bias,
                                   float *w);
/* A weight gradient dw [O, KC + 1] (poet_gemmconv_backward_weights) into PyTorch's layouts; a
 * NULL bias drops dL/db. */
void poet_gemmconv_gradients_from_gemm(const poet_conv_shape *s, const float *dw, float *oihw,
                                       float *bias);

/* The functions below take every image of `s` at once; callers run a batch in chunks of images
 * (a shape with a smaller `batch` and pointers moved on by whole images), sized so that a chunk's
 * matrices stay in a core's L2 cache (src/net.c). col_buf holds poet_gemmconv_rows(s) ·
 * poet_gemmconv_width(s) floats, dcol_buf poet_gemmconv_rows(s) · poet_gemmconv_cols(s). The
 * input goes through relu first when `input_relu` (a relu whose output is not stored).
 *
 * They return POET_OK, or POET_ERR_DNNL when sgemm fails, and record no message: they run inside
 * the stack's OpenMP regions, where threads must not race for error.h's one message; the caller
 * names the failed step once the region has ended (src/net.c, run_members). */

/* dst [R, O] (nhwc) = col · [KC + 1, O] (the convolution plus bias), then max(·, 0) when `relu`.
 * col is `shared_col` (built once for several members) or else built from src (laid out as `in`
 * says) into col_buf. */
poet_status poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                                  int input_relu, const float *shared_col, float *col_buf,
                                  const float *w, int relu, float *dst);

/* Whether this layer's products run in the narrow kernels now (narrowgemm.h: a small window, and
 * the AVX-512 code on), rather than sgemm. */
int poet_gemmconv_is_narrow(const poet_conv_shape *s);

/* The convolution `next` that reads a layer's nhwc output, for filling next's im2col matrix while
 * that output is written (poet_gemmconv_forward_filling): where each of its input pixels goes in
 * the matrix (at most `places` places per pixel), and whether it applies relu to its input. */
typedef struct {
    poet_conv_shape shape; /* next's; its batch is set from each call's */
    int relu;
    size_t places;
    int *offsets, *counts; /* [input pixels · places], [input pixels] */
} poet_gemmconv_next;

/* Whether next's im2col matrix can be filled that way: no padding (every element of the matrix
 * but the ones column is some input pixel's), and one image's part of it indexable by an int. */
int poet_gemmconv_can_fill(const poet_conv_shape *next);

/* Builds the table for `next` (poet_gemmconv_can_fill must hold), at creation, outside parallel
 * regions: POET_OK, or POET_ERR_NOMEM with its message recorded (nothing allocated).
 * poet_gemmconv_next_free releases it. */
poet_status poet_gemmconv_next_init(const poet_conv_shape *next, int relu, poet_gemmconv_next *out);
void poet_gemmconv_next_free(poet_gemmconv_next *next);

/* poet_gemmconv_forward, and next's im2col matrix of the same images into next_col, bit for bit
 * what poet_gemmconv_im2col(next, dst, nhwc, next->relu) would build: where the narrow kernels
 * run, straight from their registers, so that nothing reads dst back. */
poet_status poet_gemmconv_forward_filling(const poet_conv_shape *s, const float *src,
                                          poet_strides in, int input_relu, const float *shared_col,
                                          float *col_buf, const float *w, int relu, float *dst,
                                          const poet_gemmconv_next *next, float *next_col);

/* dsrc (nhwc) = col2im(ddst · [O, KC]), through dcol_buf. With `relu_out` (the input of a relu
 * before this layer, or its output: nhwc), the gradient of that relu is applied too: dsrc is 0
 * where relu_out is not > 0. */
poet_status poet_gemmconv_backward_data(const poet_conv_shape *s, const float *ddst, const float *w,
                                        float *dcol_buf, const float *relu_out, float *dsrc);

/* dw [O, KC + 1] = ddstᵀ · col: dL/dW and, in the last column, dL/db; added to what is there
 * when `accumulate` (the chunks after a batch's first). col as for forward: `shared_col`, or
 * rebuilt from src into col_buf (cheaper than keeping the whole batch's matrix). */
poet_status poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *src,
                                           poet_strides in, int input_relu, const float *shared_col,
                                           float *col_buf, const float *ddst, int accumulate,
                                           float *dw);

#endif
