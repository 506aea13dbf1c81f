/* gemmconv.c — convolution as im2col + sgemm + col2im (see gemmconv.h for the layouts).
 *
 * Legend: B = batch, C/H/W = input channels/height/width, O/OH/OW = output channels/height/width,
 * KH/KW = kernel, S = stride, P = padding, R = B·OH·OW, KC = KH·KW·C.
 */
#include "poet/gemmconv.h"

#include <dnnl.h>
#include <string.h>

#include "poet/narrowgemm.h"

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

size_t poet_gemmconv_width(const poet_conv_shape *s) { return poet_gemmconv_cols(s) + 1; }

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
    for (size_t i = 0; i < n; i++)
        to[i] = from[i];
}

static void zero_floats(size_t n, float *restrict to) {
    for (size_t i = 0; i < n; i++)
        to[i] = 0.f;
}

/* to = max(from, 0): a relu whose input is copied anyway. */
static void copy_relu_floats(size_t n, const float *restrict from, float *restrict to) {
    for (size_t i = 0; i < n; i++) {
        float v = from[i];
        to[i] = v > 0.f ? v : 0.f;
    }
}

/* One row of the im2col matrix: the window of output pixel (b, oh, ow), relu applied to the
 * input when `relu`, and the ones column. */
static void im2col_row(const poet_conv_shape *s, const float *image, poet_strides in, int relu,
                       int oh, int ow, float *row) {
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
            const float *from = line + (size_t)(iw0 + kw0) * in.w;
            size_t n = (size_t)(kw1 - kw0) * C;
            if (relu)
                copy_relu_floats(n, from, out + (size_t)kw0 * C);
            else
                copy_floats(n, from, out + (size_t)kw0 * C);
        } else {
            for (int kw = kw0; kw < kw1; kw++)
                for (int c = 0; c < C; c++) {
                    float v = line[(size_t)(iw0 + kw) * in.w + (size_t)c * in.c];
                    out[(size_t)kw * C + c] = relu && !(v > 0.f) ? 0.f : v;
                }
        }
        zero_floats((size_t)(KW - kw1) * C, out + (size_t)kw1 * C);
    }
    row[poet_gemmconv_cols(s)] = 1.f;
}

void poet_gemmconv_im2col(const poet_conv_shape *s, const float *src, poet_strides in, int relu,
                          float *col) {
    size_t width = poet_gemmconv_width(s);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++)
                im2col_row(s, src + (size_t)b * in.n, in, relu, oh, ow,
                           col + (((size_t)b * s->out_h + oh) * s->out_w + ow) * width);
}

size_t poet_gemmconv_weights_floats(const poet_conv_shape *s) {
    return 2 * (size_t)s->out_c * poet_gemmconv_width(s);
}

/* Where backward data's copy of the weights ([O, KC + 1]) starts in the gemm weights. */
static const float *weights_by_output(const poet_conv_shape *s, const float *w) {
    return w + (size_t)s->out_c * poet_gemmconv_width(s);
}

void poet_gemmconv_weights_to_gemm(const poet_conv_shape *s, const float *oihw, const float *bias,
                                   float *w) {
    int C = s->in_c, KH = s->kernel_h, KW = s->kernel_w;
    size_t O = (size_t)s->out_c, KC = poet_gemmconv_cols(s), width = KC + 1;
    float *by_output = w + O * width;
    for (size_t o = 0; o < O; o++) {
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    size_t j = ((size_t)kh * KW + kw) * C + c;
                    float v = oihw[((o * C + c) * KH + kh) * KW + kw];
                    w[j * O + o] = v;
                    by_output[o * width + j] = v;
                }
        w[KC * O + o] = by_output[o * width + KC] = bias[o];
    }
}

void poet_gemmconv_gradients_from_gemm(const poet_conv_shape *s, const float *dw, float *oihw,
                                       float *bias) {
    int C = s->in_c, KH = s->kernel_h, KW = s->kernel_w;
    size_t width = poet_gemmconv_width(s);
    for (int o = 0; o < s->out_c; o++) {
        const float *row = dw + (size_t)o * width;
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    oihw[(((size_t)o * C + c) * KH + kh) * KW + kw] =
                        row[((size_t)kh * KW + kw) * C + c];
        bias[o] = row[width - 1];
    }
}

/* y = max(y, 0). */
static void relu_in_place(size_t n, float *restrict y) {
    for (size_t i = 0; i < n; i++)
        y[i] = y[i] > 0.f ? y[i] : 0.f;
}

/* The im2col matrix a product reads: the shared one, or one built from src into col_buf. */
static const float *windows(const poet_conv_shape *s, const float *src, poet_strides in,
                            int input_relu, const float *shared_col, float *col_buf) {
    if (shared_col)
        return shared_col;
    poet_gemmconv_im2col(s, src, in, input_relu, col_buf);
    return col_buf;
}

/* Whether a layer's products go through the narrow kernels (a small window: sgemm's overhead
 * would dominate) rather than sgemm. */
static int narrow(size_t width, size_t out) {
    return poet_narrow_fits(width, out) && poet_narrow_available();
}

/* The product [R, KC + 1] · [KC + 1, O]: the ones column times the bias row adds the bias inside
 * the product (no pass over dst for it). */
int poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                          int input_relu, const float *shared_col, float *col_buf, const float *w,
                          int relu, float *dst) {
    size_t R = poet_gemmconv_rows(s), width = poet_gemmconv_width(s), O = (size_t)s->out_c;
    const float *col = windows(s, src, in, input_relu, shared_col, col_buf);
    if (narrow(width, O)) {
        poet_narrow_forward(R, width, O, col, w, relu, dst);
        return 0;
    }
    dnnl_status_t rc =
        dnnl_sgemm('N', 'N', (dnnl_dim_t)R, (dnnl_dim_t)O, (dnnl_dim_t)width, 1.f, col,
                   (dnnl_dim_t)width, w, (dnnl_dim_t)O, 0.f, dst, (dnnl_dim_t)O);
    if (rc != dnnl_success)
        return (int)rc;
    if (relu)
        relu_in_place(R * O, dst);
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

/* d = d where y > 0, else 0: relu's backward from its output (exact, as oneDNN's). */
static void relu_mask(size_t n, const float *restrict y, float *restrict d) {
    for (size_t i = 0; i < n; i++) {
        float v = d[i];
        d[i] = y[i] > 0.f ? v : 0.f;
    }
}

/* dcol [R, KC] = ddst · [O, KC] (the weights by output channel; ldb = KC + 1 skips the bias). */
int poet_gemmconv_backward_data(const poet_conv_shape *s, const float *ddst, const float *w,
                                float *dcol_buf, const float *relu_out, float *dsrc) {
    size_t KC = poet_gemmconv_cols(s), O = (size_t)s->out_c, pixels = (size_t)s->out_h * s->out_w;
    size_t image = (size_t)s->in_h * s->in_w * s->in_c;
    dnnl_status_t rc =
        dnnl_sgemm('N', 'N', (dnnl_dim_t)poet_gemmconv_rows(s), (dnnl_dim_t)KC, (dnnl_dim_t)O, 1.f,
                   ddst, (dnnl_dim_t)O, weights_by_output(s, w), (dnnl_dim_t)poet_gemmconv_width(s),
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

/* [O, KC + 1] = ddstᵀ · col: the ones column makes the last column dL/db, the column sums of
 * ddst, summed by the product. */
int poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *src, poet_strides in,
                                   int input_relu, const float *shared_col, float *col_buf,
                                   const float *ddst, int accumulate, float *dw) {
    size_t R = poet_gemmconv_rows(s), width = poet_gemmconv_width(s), O = (size_t)s->out_c;
    const float *col = windows(s, src, in, input_relu, shared_col, col_buf);
    if (narrow(width, O)) {
        poet_narrow_weights(R, width, O, ddst, col, accumulate, dw);
        return 0;
    }
    dnnl_status_t rc = dnnl_sgemm('T', 'N', (dnnl_dim_t)O, (dnnl_dim_t)width, (dnnl_dim_t)R, 1.f,
                                  ddst, (dnnl_dim_t)O, col, (dnnl_dim_t)width,
                                  accumulate ? 1.f : 0.f, dw, (dnnl_dim_t)width);
    return rc == dnnl_success ? 0 : (int)rc;
}
