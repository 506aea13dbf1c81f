/* pool.h — global average pooling of nhwc images, with the relu before it, chunk by chunk.
 *
 * A chain of gemm convolutions (netchain.c) that ends in relu and global average pooling (the
 * reference network's last convolution) runs both on each chunk of images while the chunk's output
 * is in cache: forward pools max(y, 0) and keeps only a one-byte mask of where y > 0; backward
 * rebuilds the chunk's dL/dy from the pooled gradient and that mask. No batch-sized output or
 * gradient is stored or read (bench/README.md has the figures).
 *
 * Layouts: y and dy are n images of HW pixels (H·W) of C channels (nhwc, pixels in order),
 * pooled and dpooled rows of C, the mask one byte per element of y. Each channel's sum runs over
 * the pixels in order, then is divided by HW; the AVX-512 versions (cpu.h) compute the same values
 * in the same order as the portable ones, bit for bit.
 */
#ifndef POET_POOL_H
#define POET_POOL_H

#include <stddef.h>

/* pooled [n, C] = the mean over the HW pixels of max(y, 0) with `relu`, else of y; with relu and a
 * relu_mask, relu_mask [n, HW, C] = 1 where y > 0, else 0 (NaN and -0 give 0, as relu's backward
 * in oneDNN). */
void poet_pool_global_forward(size_t n, size_t HW, size_t C, int relu, const float *y,
                              float *pooled, unsigned char *relu_mask);

/* dy [n, HW, C] = dpooled / HW at every pixel, 0 where relu_mask is 0 (relu_mask NULL: no relu). */
void poet_pool_global_backward(size_t n, size_t HW, size_t C, const float *dpooled,
                               const unsigned char *relu_mask, float *dy);

#endif
