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

/* One row of the im2col matrix: the window of output pixel (b, oh, ow). */
static void im2col_row(const poet_conv_shape *s, const float *image, poet_strides in, int oh,
                       int ow, float *row) {
    int C = s->in_c, KW = s->kernel_w;
    int kw0, kw1;
    valid_kernel_range(ow, s->stride, s->padding, KW, s->in_w, &kw0, &kw1);
    int contiguous = in.c == 1 && in.w == (size_t)C; /* nhwc: the window's row is one run */
    for (int kh = 0; kh < s->kernel_h; kh++) {
        float *out = row + (size_t)kh * KW * C;
        int ih = oh * s->stride - s->padding + kh;
        if (ih < 0 || ih >= s->in_h) {
            memset(out, 0, (size_t)KW * C * sizeof *out);
            continue;
        }
        memset(out, 0, (size_t)kw0 * C * sizeof *out);
        const float *line = image + (size_t)ih * in.h;
        int iw0 = ow * s->stride - s->padding;
        if (contiguous) {
            memcpy(out + (size_t)kw0 * C, line + (size_t)(iw0 + kw0) * in.w,
                   (size_t)(kw1 - kw0) * C * sizeof *out);
        } else {
            for (int kw = kw0; kw < kw1; kw++)
                for (int c = 0; c < C; c++)
                    out[(size_t)kw * C + c] = line[(size_t)(iw0 + kw) * in.w + (size_t)c * in.c];
        }
        memset(out + (size_t)kw1 * C, 0, (size_t)(KW - kw1) * C * sizeof *out);
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

/* y = y + bias, then max(y, 0) when `relu`. */
static void add_bias(size_t n, const float *restrict bias, int relu, float *restrict y) {
    if (relu)
        for (size_t i = 0; i < n; i++) {
            float v = y[i] + bias[i];
            y[i] = v > 0.f ? v : 0.f;
        }
    else
        for (size_t i = 0; i < n; i++)
            y[i] += bias[i];
}

int poet_gemmconv_chunk_images(const poet_conv_shape *s) {
    size_t per_image = (size_t)s->out_h * s->out_w * poet_gemmconv_cols(s);
    size_t n = per_image > 0 ? POET_GEMMCONV_CHUNK_FLOATS / per_image : 1;
    if (n < 1)
        n = 1;
    return n < (size_t)s->batch ? (int)n : s->batch;
}

size_t poet_gemmconv_chunk_floats(const poet_conv_shape *s) {
    return (size_t)poet_gemmconv_chunk_images(s) * s->out_h * s->out_w * poet_gemmconv_cols(s);
}

/* The im2col rows of images [b0, b0 + n): a slice of the shared matrix, or built from src into
 * `col` (at the chunk's place when `col` holds the whole matrix, else at its start). */
static const float *chunk_col(const poet_conv_shape *s, const float *src, poet_strides in,
                              const float *shared_col, float *col, int col_whole, int b0, int n) {
    size_t per_image = (size_t)s->out_h * s->out_w * poet_gemmconv_cols(s);
    if (shared_col)
        return shared_col + (size_t)b0 * per_image;
    float *out = col_whole ? col + (size_t)b0 * per_image : col;
    poet_conv_shape part = *s;
    part.batch = n;
    poet_gemmconv_im2col(&part, src + (size_t)b0 * in.n, in, out);
    return out;
}

int poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                          const float *shared_col, float *col, int col_whole, const float *w_ohwi,
                          const float *bias, int relu, float *dst) {
    size_t KC = poet_gemmconv_cols(s), O = (size_t)s->out_c, pixels = (size_t)s->out_h * s->out_w;
    int chunk = poet_gemmconv_chunk_images(s);
    for (int b0 = 0; b0 < s->batch; b0 += chunk) {
        int n = s->batch - b0 < chunk ? s->batch - b0 : chunk;
        size_t rows = (size_t)n * pixels;
        const float *a = chunk_col(s, src, in, shared_col, col, col_whole, b0, n);
        float *y = dst + (size_t)b0 * pixels * O;
        dnnl_status_t rc = dnnl_sgemm('N', 'T', (dnnl_dim_t)rows, (dnnl_dim_t)O, (dnnl_dim_t)KC,
                                      1.f, a, (dnnl_dim_t)KC, w_ohwi, (dnnl_dim_t)KC, 0.f, y,
                                      (dnnl_dim_t)O);
        if (rc != dnnl_success)
            return (int)rc;
        for (size_t r = 0; r < rows; r++)
            add_bias(O, bias, relu, y + r * O);
    }
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

/* db += the column sums of the [rows, n] matrix dy: per chunk, so a float sum covers a chunk's
 * rows and the chunks' sums are added (blocked summation, as oneDNN's own bias gradient). */
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
    int chunk = poet_gemmconv_chunk_images(s);
    for (int b0 = 0; b0 < s->batch; b0 += chunk) {
        int n = s->batch - b0 < chunk ? s->batch - b0 : chunk;
        dnnl_status_t rc = dnnl_sgemm('N', 'N', (dnnl_dim_t)(n * pixels), (dnnl_dim_t)KC,
                                      (dnnl_dim_t)O, 1.f, ddst + (size_t)b0 * pixels * O,
                                      (dnnl_dim_t)O, w_ohwi, (dnnl_dim_t)KC, 0.f, dcol_buf,
                                      (dnnl_dim_t)KC);
        if (rc != dnnl_success)
            return (int)rc;
        for (int b = b0; b < b0 + n; b++) {
            float *d = dsrc + b * image;
            memset(d, 0, image * sizeof *d);
            col2im_image(s, dcol_buf + (size_t)(b - b0) * pixels * KC, d);
            if (relu_out)
                relu_mask(image, relu_out + b * image, d);
        }
    }
    return 0;
}

int poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *col, const float *ddst,
                                   float *dw_ohwi, float *db) {
    size_t R = poet_gemmconv_rows(s), KC = poet_gemmconv_cols(s), O = (size_t)s->out_c;
    dnnl_status_t rc = dnnl_sgemm('T', 'N', (dnnl_dim_t)O, (dnnl_dim_t)KC, (dnnl_dim_t)R, 1.f,
                                  ddst, (dnnl_dim_t)O, col, (dnnl_dim_t)KC, 0.f, dw_ohwi,
                                  (dnnl_dim_t)KC);
    if (rc != dnnl_success)
        return (int)rc;
    memset(db, 0, O * sizeof *db);
    size_t chunk = (size_t)poet_gemmconv_chunk_images(s) * s->out_h * s->out_w;
    for (size_t r0 = 0; r0 < R; r0 += chunk)
        add_column_sums(R - r0 < chunk ? R - r0 : chunk, O, ddst + r0 * O, db);
    return 0;
}
