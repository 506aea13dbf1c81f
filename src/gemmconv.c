/* gemmconv.c — convolution as im2col + sgemm + col2im (see gemmconv.h for the layouts).
 *
 * Legend: B = batch, C/H/W = input channels/height/width, O/OH/OW = output channels/height/width,
 * KH/KW = kernel, S = stride, P = padding, R = B·OH·OW, KC = KH·KW·C.
 */
#include "poet/gemmconv.h"

#include <dnnl.h>
#include <string.h>

poet_strides poet_strides_nhwc(int channels, int height, int width) {
    poet_strides st = {(size_t)height * width * channels, 1, (size_t)width * channels,
                       (size_t)channels};
    return st;
}

size_t poet_gemmconv_rows(const poet_conv_shape *s) {
    return (size_t)s->batch * s->out_h * s->out_w;
}

size_t poet_gemmconv_cols(const poet_conv_shape *s) {
    return (size_t)s->kernel_h * s->kernel_w * s->in_c;
}

/* The kernel columns [*first, *end) whose input column ow·S − P + kw lies inside the image. */
static void valid_kernel_range(int out_pos, int stride, int padding, int kernel, int in_size,
                               int *first, int *end) {
    int start = out_pos * stride - padding;
    *first = start < 0 ? -start : 0;
    *end = in_size - start < kernel ? in_size - start : kernel;
    if (*end < *first)
        *end = *first;
}

/* Loops rather than memcpy/memset: the runs here are short (a kernel row, tens of floats) and
 * the calls cost more than the copies (CMakeLists.txt keeps GCC from turning them back). */
static void copy_floats(size_t n, const float *restrict from, float *restrict to) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) /* fixed-length inner loops: straight vector moves */
        for (size_t k = 0; k < 16; k++)
            to[i + k] = from[i + k];
    for (; i + 4 <= n; i += 4)
        for (size_t k = 0; k < 4; k++)
            to[i + k] = from[i + k];
    for (; i < n; i++)
        to[i] = from[i];
}

static void zero_floats(size_t n, float *restrict to) {
    for (size_t i = 0; i < n; i++)
        to[i] = 0.f;
}

/* One row of the im2col matrix: the window of output pixel (b, oh, ow). */
static void im2col_row(const poet_conv_shape *s, const float *image, poet_strides in, int oh,
                       int ow, float *row) {
    int C = s->in_c, KW = s->kernel_w;
    int kw0, kw1;
    valid_kernel_range(ow, s->stride, s->padding, KW, s->in_w, &kw0, &kw1);
    /* nhwc, or a single channel: the window's row is one run */
    int contiguous = (in.c == 1 || C == 1) && in.w == (size_t)C;
    for (int kh = 0; kh < s->kernel_h; kh++) {
        float *out = row + (size_t)kh * KW * C;
        int ih = oh * s->stride - s->padding + kh;
        if (ih < 0 || ih >= s->in_h) {
            zero_floats((size_t)KW * C, out);
            continue;
        }
        zero_floats((size_t)kw0 * C, out);
        const float *line = image + (size_t)ih * in.h;
        int iw0 = ow * s->stride - s->padding;
        if (contiguous) {
            copy_floats((size_t)(kw1 - kw0) * C, line + (size_t)(iw0 + kw0) * in.w,
                        out + (size_t)kw0 * C);
        } else {
            for (int kw = kw0; kw < kw1; kw++)
                for (int c = 0; c < C; c++)
                    out[(size_t)kw * C + c] = line[(size_t)(iw0 + kw) * in.w + (size_t)c * in.c];
        }
        zero_floats((size_t)(KW - kw1) * C, out + (size_t)kw1 * C);
    }
}

void poet_gemmconv_im2col(const poet_conv_shape *s, const float *src, poet_strides in,
                          float *col) {
    size_t KC = poet_gemmconv_cols(s);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++)
                im2col_row(s, src + (size_t)b * in.n, in, oh, ow,
                           col + (((size_t)b * s->out_h + oh) * s->out_w + ow) * KC);
}

void poet_gemmconv_weights_to_gemm(const poet_conv_shape *s, const float *oihw, float *ohwi) {
    int C = s->in_c, KH = s->kernel_h, KW = s->kernel_w;
    for (int o = 0; o < s->out_c; o++)
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    ohwi[(((size_t)o * KH + kh) * KW + kw) * C + c] =
                        oihw[(((size_t)o * C + c) * KH + kh) * KW + kw];
}

void poet_gemmconv_weights_from_gemm(const poet_conv_shape *s, const float *ohwi, float *oihw) {
    int C = s->in_c, KH = s->kernel_h, KW = s->kernel_w;
    for (int o = 0; o < s->out_c; o++)
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    oihw[(((size_t)o * C + c) * KH + kh) * KW + kw] =
                        ohwi[(((size_t)o * KH + kh) * KW + kw) * C + c];
}

/* y = y + bias, then max(y, 0) when `relu`, over `rows` rows of n. Narrow rows (tens of
 * channels) go in blocks of whole rows against the bias repeated as often, so that the loop
 * runs long enough to vectorise instead of restarting every n floats. */
static void add_bias_rows(size_t rows, size_t n, const float *restrict bias, int relu,
                          float *restrict y) {
    enum { PATTERN = 256 };
    float pattern[PATTERN];
    size_t per_block = n <= PATTERN ? PATTERN / n : 1, block = per_block * n;
    const float *b = bias;
    if (n <= PATTERN) {
        for (size_t i = 0; i < block; i++)
            pattern[i] = bias[i % n];
        b = pattern;
    }
    size_t r = 0;
    for (; r + per_block <= rows; r += per_block, y += block) {
        if (relu)
            for (size_t i = 0; i < block; i++) {
                float v = y[i] + b[i];
                y[i] = v > 0.f ? v : 0.f;
            }
        else
            for (size_t i = 0; i < block; i++)
                y[i] += b[i];
    }
    for (; r < rows; r++, y += n)
        for (size_t i = 0; i < n; i++) {
            float v = y[i] + bias[i];
            y[i] = !relu ? v : v > 0.f ? v : 0.f;
        }
}

int poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                          const float *shared_col, float *col_buf, const float *w_ohwi,
                          const float *bias, int relu, float *dst) {
    size_t R = poet_gemmconv_rows(s), KC = poet_gemmconv_cols(s), O = (size_t)s->out_c;
    const float *col = shared_col;
    if (!col) {
        poet_gemmconv_im2col(s, src, in, col_buf);
        col = col_buf;
    }
    dnnl_status_t rc = dnnl_sgemm('N', 'T', (dnnl_dim_t)R, (dnnl_dim_t)O, (dnnl_dim_t)KC, 1.f, col,
                                  (dnnl_dim_t)KC, w_ohwi, (dnnl_dim_t)KC, 0.f, dst, (dnnl_dim_t)O);
    if (rc != dnnl_success)
        return (int)rc;
    add_bias_rows(R, O, bias, relu, dst);
    return 0;
}

/* Adds the window rows of image b's output pixels back onto dsrc_image (nhwc), pixel by pixel in
 * (oh, ow, kh, kw) order: a fixed order, so the sums do not depend on anything else. In nhwc the
 * kernel columns of one kernel row are one contiguous run, as in im2col. */
static void col2im_image(const poet_conv_shape *s, const float *dcol_image,
                         float *restrict dsrc_image) {
    int C = s->in_c, KW = s->kernel_w;
    size_t KC = poet_gemmconv_cols(s);
    for (int oh = 0; oh < s->out_h; oh++)
        for (int ow = 0; ow < s->out_w; ow++) {
            const float *restrict row = dcol_image + ((size_t)oh * s->out_w + ow) * KC;
            int kw0, kw1;
            valid_kernel_range(ow, s->stride, s->padding, KW, s->in_w, &kw0, &kw1);
            int iw0 = ow * s->stride - s->padding;
            for (int kh = 0; kh < s->kernel_h; kh++) {
                int ih = oh * s->stride - s->padding + kh;
                if (ih < 0 || ih >= s->in_h)
                    continue;
                const float *restrict from = row + ((size_t)kh * KW + kw0) * C;
                float *restrict to = dsrc_image + ((size_t)ih * s->in_w + iw0 + kw0) * C;
                size_t n = (size_t)(kw1 - kw0) * C;
                for (size_t i = 0; i < n; i++)
                    to[i] += from[i];
            }
        }
}

/* db += the column sums of the [rows, n] matrix dy: the caller's chunks of rows are summed
 * separately and added (blocked summation, as oneDNN's own bias gradient). */
static void add_column_sums(size_t rows, size_t n, const float *restrict dy, float *restrict db) {
    enum { BLOCK = 64 };
    for (size_t o0 = 0; o0 < n; o0 += BLOCK) {
        size_t m = n - o0 < BLOCK ? n - o0 : BLOCK;
        float sum[BLOCK] = {0};
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < m; o++)
                sum[o] += dy[r * n + o0 + o];
        for (size_t o = 0; o < m; o++)
            db[o0 + o] += sum[o];
    }
}

/* d = d where y > 0, else 0: relu's backward from its output (exact, as oneDNN's). */
static void relu_mask(size_t n, const float *restrict y, float *restrict d) {
    for (size_t i = 0; i < n; i++) {
        float v = d[i];
        d[i] = y[i] > 0.f ? v : 0.f;
    }
}

int poet_gemmconv_backward_data(const poet_conv_shape *s, const float *ddst, const float *w_ohwi,
                                float *dcol_buf, const float *relu_out, float *dsrc) {
    size_t KC = poet_gemmconv_cols(s), O = (size_t)s->out_c, pixels = (size_t)s->out_h * s->out_w;
    size_t image = (size_t)s->in_h * s->in_w * s->in_c;
    dnnl_status_t rc = dnnl_sgemm('N', 'N', (dnnl_dim_t)poet_gemmconv_rows(s), (dnnl_dim_t)KC,
                                  (dnnl_dim_t)O, 1.f, ddst, (dnnl_dim_t)O, w_ohwi, (dnnl_dim_t)KC,
                                  0.f, dcol_buf, (dnnl_dim_t)KC);
    if (rc != dnnl_success)
        return (int)rc;
    for (int b = 0; b < s->batch; b++) {
        float *d = dsrc + b * image;
        zero_floats(image, d);
        col2im_image(s, dcol_buf + (size_t)b * pixels * KC, d);
        if (relu_out)
            relu_mask(image, relu_out + b * image, d);
    }
    return 0;
}

int poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *src, poet_strides in,
                                   const float *shared_col, float *col_buf, const float *ddst,
                                   int accumulate, float *dw_ohwi, float *db) {
    size_t R = poet_gemmconv_rows(s), KC = poet_gemmconv_cols(s), O = (size_t)s->out_c;
    const float *col = shared_col;
    if (!col) {
        poet_gemmconv_im2col(s, src, in, col_buf);
        col = col_buf;
    }
    dnnl_status_t rc = dnnl_sgemm('T', 'N', (dnnl_dim_t)O, (dnnl_dim_t)KC, (dnnl_dim_t)R, 1.f,
                                  ddst, (dnnl_dim_t)O, col, (dnnl_dim_t)KC,
                                  accumulate ? 1.f : 0.f, dw_ohwi, (dnnl_dim_t)KC);
    if (rc != dnnl_success)
        return (int)rc;
    if (!accumulate)
        zero_floats(O, db);
    add_column_sums(R, O, ddst, db);
    return 0;
}
