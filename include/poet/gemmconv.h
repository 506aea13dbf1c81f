/* gemmconv.h — a convolution as matrix products: im2col, oneDNN's sgemm, col2im.
 *
 * The reference network's convolutions are small (20 -> 40 channels on 13x13 images) and oneDNN
 * 2.6's direct kernels reach about half of its own sgemm rate on them; written as products over
 * an im2col matrix the three passes run ~1.2x faster and the layers around them need no layout
 * changes (src/net.c, bench/README.md). Activations are nhwc; the layer's input may be any plain
 * layout (given by strides), so the images feed the first convolution directly.
 *
 * Legend: R = B·OH·OW output pixels (rows), KC = KH·KW·C (columns of one row of the im2col
 * matrix, in (kh, kw, c) order), O = output channels. Weights in gemm layout are [O, KH, KW, C]
 * ("ohwi"), so that row o of the weights matches a row of the im2col matrix.
 *
 * Everything here runs on the calling thread (oneDNN's sgemm inside the caller's OpenMP thread):
 * the results are bitwise the same whatever else runs.
 */
#ifndef POET_GEMMCONV_H
#define POET_GEMMCONV_H

#include <stddef.h>

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

size_t poet_gemmconv_rows(const poet_conv_shape *s); /* R */
size_t poet_gemmconv_cols(const poet_conv_shape *s); /* KC */

/* col [R, KC] from the input; positions in the padding are 0. */
void poet_gemmconv_im2col(const poet_conv_shape *s, const float *src, poet_strides in,
                          float *col);

/* Weights between PyTorch's [O, C, KH, KW] and gemm layout [O, KH, KW, C]. */
void poet_gemmconv_weights_to_gemm(const poet_conv_shape *s, const float *oihw, float *ohwi);
void poet_gemmconv_weights_from_gemm(const poet_conv_shape *s, const float *ohwi, float *oihw);

/* The functions below take every image of `s` at once; callers run a batch in chunks of images
 * (a shape with a smaller `batch` and pointers moved on by whole images), sized so that a chunk's
 * matrices stay in a core's L2 cache (src/net.c). Buffers called col_buf / dcol_buf hold
 * poet_gemmconv_rows(s) · poet_gemmconv_cols(s) floats. */

/* dst [R, O] (nhwc) = col · Wᵀ + bias, then max(·, 0) when `relu`. col is `shared_col` (built
 * once for several members) or else built from src (laid out as `in` says) into col_buf.
 * Returns 0, or oneDNN's status when sgemm fails. */
int poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                          const float *shared_col, float *col_buf, const float *w_ohwi,
                          const float *bias, int relu, float *dst);

/* dsrc (nhwc) = col2im(ddst · W), through dcol_buf. With `relu_out` (the input as relu left it,
 * nhwc), the gradient of that relu is applied too: dsrc is 0 where relu_out is not > 0. */
int poet_gemmconv_backward_data(const poet_conv_shape *s, const float *ddst, const float *w_ohwi,
                                float *dcol_buf, const float *relu_out, float *dsrc);

/* dw_ohwi [O, KC] = ddstᵀ · col and db [O] = the column sums of ddst, or both added to what is
 * there when `accumulate` (the chunks after a batch's first). col as for forward: `shared_col`,
 * or rebuilt from src into col_buf (cheaper than keeping the whole batch's matrix). */
int poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *src, poet_strides in,
                                   const float *shared_col, float *col_buf, const float *ddst,
                                   int accumulate, float *dw_ohwi, float *db);

#endif
