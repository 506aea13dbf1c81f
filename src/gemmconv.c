/* gemmconv.c — convolution as im2col + sgemm + col2im (see gemmconv.h for the layouts).
 *
 * Legend: B = batch, C/H/W = input channels/height/width, O/OH/OW = output channels/height/width,
 * KH/KW = kernel, R = B·OH·OW, KC = KH·KW·C; stride and padding go by their names (P means ranks
 * elsewhere in poet).
 */
#include "poet/gemmconv.h"

#include <dnnl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "poet/cpu.h"
#include "poet/narrowgemm.h"

#if POET_AVX512_CODE
#include <immintrin.h>
#endif

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

/* The kernel columns [*first, *end) whose input column ow·stride − padding + kw lies inside the
 * image. */
static void valid_kernel_range(int out_pos, int stride, int padding, int kernel, int in_size,
                               int *first, int *end) {
    int start = out_pos * stride - padding;
    *first = start < 0 ? -start : 0;
    *end = in_size - start < kernel ? in_size - start : kernel;
    if (*end < *first)
        *end = *first;
}

/* Short runs: a kernel row of a window, KW·C floats (60 for the reference network's second
 * convolution). Loops rather than memcpy/memset: the calls cost more than the copies
 * (CMakeLists.txt keeps GCC from turning the loops back into calls). The AVX-512 versions do 16
 * floats a step and the tail with a mask (for runs of 16 floats or more: avx512_runs); GCC's
 * loops for a run-time length spend much of a 60-float run on their prologue and scalar tail.
 * Both give the same values: max(v, 0) with v NaN or -0 is +0, as v > 0 ? v : 0 is. */
typedef void (*run_fn)(size_t n, const float *restrict from, float *restrict to);

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

/* to += from. */
static void add_floats(size_t n, const float *restrict from, float *restrict to) {
    for (size_t i = 0; i < n; i++)
        to[i] += from[i];
}

#if POET_AVX512_CODE
#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __mmask16 tail_mask(size_t n) { return (__mmask16)((1u << n) - 1u); }

AVX512 static inline void copy_floats_avx512(size_t n, const float *restrict from,
                                             float *restrict to) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(to + i, _mm512_loadu_ps(from + i));
    if (i < n)
        _mm512_mask_storeu_ps(to + i, tail_mask(n - i),
                              _mm512_maskz_loadu_ps(tail_mask(n - i), from + i));
}

AVX512 static inline void copy_relu_floats_avx512(size_t n, const float *restrict from,
                                                  float *restrict to) {
    __m512 zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(to + i, _mm512_max_ps(_mm512_loadu_ps(from + i), zero));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(to + i, m, _mm512_max_ps(_mm512_maskz_loadu_ps(m, from + i), zero));
    }
}

AVX512 static inline void add_floats_avx512(size_t n, const float *restrict from,
                                            float *restrict to) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(to + i, _mm512_add_ps(_mm512_loadu_ps(to + i), _mm512_loadu_ps(from + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(
            to + i, m,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, to + i), _mm512_maskz_loadu_ps(m, from + i)));
    }
}
#endif

/* Whether a window's kernel row is one run of the input: nhwc, or a single channel. */
static int runs_are_contiguous(const poet_conv_shape *s, poet_strides in) {
    return (in.c == 1 || s->in_c == 1) && in.w == (size_t)s->in_c;
}

/* The rows of output line (b, oh) when kernel rows are contiguous runs (runs_are_contiguous):
 * per pixel, KH runs copied by `copy` (through relu when `relu`), or zeroed where the window
 * leaves the image, and the ones column. */
static inline __attribute__((always_inline)) void
im2col_line_runs(const poet_conv_shape *s, const float *image, poet_strides in, int relu, int oh,
                 float *rows, run_fn copy, run_fn copy_relu) {
    int C = s->in_c, KH = s->kernel_h, KW = s->kernel_w;
    size_t width = poet_gemmconv_width(s), run = (size_t)KW * C;
    for (int ow = 0; ow < s->out_w; ow++) {
        float *row = rows + (size_t)ow * width;
        int kw0, kw1;
        valid_kernel_range(ow, s->stride, s->padding, KW, s->in_w, &kw0, &kw1);
        size_t lead = (size_t)kw0 * C, n = (size_t)(kw1 - kw0) * C;
        const float *first = image + (size_t)(ow * s->stride - s->padding + kw0) * in.w;
        for (int kh = 0; kh < KH; kh++) {
            float *out = row + kh * run;
            int ih = oh * s->stride - s->padding + kh;
            if (ih < 0 || ih >= s->in_h) {
                zero_floats(run, out);
                continue;
            }
            zero_floats(lead, out);
            if (relu)
                copy_relu(n, first + (size_t)ih * in.h, out + lead);
            else
                copy(n, first + (size_t)ih * in.h, out + lead);
            zero_floats(run - lead - n, out + lead + n);
        }
        row[width - 1] = 1.f;
    }
}

/* The rows of output line (b, oh) for any other input layout, element by element. */
static void im2col_line_strided(const poet_conv_shape *s, const float *image, poet_strides in,
                                int relu, int oh, float *rows) {
    int C = s->in_c, KW = s->kernel_w;
    size_t width = poet_gemmconv_width(s);
    for (int ow = 0; ow < s->out_w; ow++) {
        float *row = rows + (size_t)ow * width;
        int kw0, kw1;
        valid_kernel_range(ow, s->stride, s->padding, KW, s->in_w, &kw0, &kw1);
        for (int kh = 0; kh < s->kernel_h; kh++) {
            float *out = row + (size_t)kh * KW * C;
            int ih = oh * s->stride - s->padding + kh;
            for (int kw = 0; kw < KW; kw++)
                for (int c = 0; c < C; c++) {
                    int inside = ih >= 0 && ih < s->in_h && kw >= kw0 && kw < kw1;
                    float v = inside ? image[(size_t)ih * in.h +
                                             (size_t)(ow * s->stride - s->padding + kw) * in.w +
                                             (size_t)c * in.c]
                                     : 0.f;
                    out[(size_t)kw * C + c] = relu && !(v > 0.f) ? 0.f : v;
                }
        }
        row[width - 1] = 1.f;
    }
}

/* Every output line through im2col_line_runs, with these run functions. */
static inline __attribute__((always_inline)) void im2col_runs(const poet_conv_shape *s,
                                                              const float *src, poet_strides in,
                                                              int relu, float *col, run_fn copy,
                                                              run_fn copy_relu) {
    size_t line = (size_t)s->out_w * poet_gemmconv_width(s);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            im2col_line_runs(s, src + (size_t)b * in.n, in, relu, oh,
                             col + ((size_t)b * s->out_h + oh) * line, copy, copy_relu);
}

static void im2col_portable(const poet_conv_shape *s, const float *src, poet_strides in, int relu,
                            float *col) {
    if (runs_are_contiguous(s, in)) {
        im2col_runs(s, src, in, relu, col, copy_floats, copy_relu_floats);
        return;
    }
    size_t line = (size_t)s->out_w * poet_gemmconv_width(s);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            im2col_line_strided(s, src + (size_t)b * in.n, in, relu, oh,
                                col + ((size_t)b * s->out_h + oh) * line);
}

#if POET_AVX512_CODE
/* Contiguous runs of 16 floats or more (kernel rows of several channels). */
AVX512 static void im2col_avx512(const poet_conv_shape *s, const float *src, poet_strides in,
                                 int relu, float *col) {
    im2col_runs(s, src, in, relu, col, copy_floats_avx512, copy_relu_floats_avx512);
}

/* Whether the AVX-512 runs pay: they do for runs of a vector or more; shorter ones (a
 * single-channel image's kernel rows, 3 floats) ran slower than GCC's loops. */
static int avx512_runs(const poet_conv_shape *s, poet_strides in) {
    return poet_cpu_avx512() && runs_are_contiguous(s, in) && s->kernel_w * s->in_c >= 16;
}
#endif

void poet_gemmconv_im2col(const poet_conv_shape *s, const float *src, poet_strides in, int relu,
                          float *col) {
#if POET_AVX512_CODE
    if (avx512_runs(s, in)) {
        im2col_avx512(s, src, in, relu, col);
        return;
    }
#endif
    im2col_portable(s, src, in, relu, col);
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
        w[KC * O + o] = by_output[o * width + KC] = bias ? bias[o] : 0.f;
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
        if (bias)
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
    return poet_narrow_fits(width, out) && poet_cpu_avx512();
}

int poet_gemmconv_is_narrow(const poet_conv_shape *s) {
    return narrow(poet_gemmconv_width(s), (size_t)s->out_c);
}

/* The product [R, KC + 1] · [KC + 1, O]: the ones column times the bias row adds the bias inside
 * the product (no pass over dst for it). */
poet_status poet_gemmconv_forward(const poet_conv_shape *s, const float *src, poet_strides in,
                                  int input_relu, const float *shared_col, float *col_buf,
                                  const float *w, int relu, float *dst) {
    size_t R = poet_gemmconv_rows(s), width = poet_gemmconv_width(s), O = (size_t)s->out_c;
    const float *col = windows(s, src, in, input_relu, shared_col, col_buf);
    if (narrow(width, O)) {
        poet_narrow_forward(R, width, O, col, w, relu, dst);
        return POET_OK;
    }
    if (dnnl_sgemm('N', 'N', (dnnl_dim_t)R, (dnnl_dim_t)O, (dnnl_dim_t)width, 1.f, col,
                   (dnnl_dim_t)width, w, (dnnl_dim_t)O, 0.f, dst, (dnnl_dim_t)O) != dnnl_success)
        return POET_ERR_DNNL;
    if (relu)
        relu_in_place(R * O, dst);
    return POET_OK;
}

int poet_gemmconv_can_fill(const poet_conv_shape *next) {
    /* the table's offsets within one image's part of the matrix are ints */
    size_t image = (size_t)next->out_h * next->out_w * poet_gemmconv_width(next);
    return next->padding == 0 && image <= INT_MAX;
}

poet_status poet_gemmconv_next_init(const poet_conv_shape *next, int relu,
                                    poet_gemmconv_next *out) {
    const poet_conv_shape *s = next;
    size_t pixels = (size_t)s->in_h * s->in_w, width = poet_gemmconv_width(s);
    /* windows overlapping one pixel: ceil(kernel / stride) per dimension */
    size_t places = (size_t)((s->kernel_h + s->stride - 1) / s->stride) *
                    (size_t)((s->kernel_w + s->stride - 1) / s->stride);
    *out = (poet_gemmconv_next){*next, relu, places, calloc(pixels * places, sizeof(int)),
                                calloc(pixels, sizeof(int))};
    if (!out->offsets || !out->counts) {
        poet_gemmconv_next_free(out);
        return poet_error_set(POET_ERR_NOMEM,
                              "gemmconv.c: out of memory for the im2col placement table of a "
                              "%dx%dx%d input",
                              s->in_h, s->in_w, s->in_c);
    }
    for (int oh = 0; oh < s->out_h; oh++)
        for (int ow = 0; ow < s->out_w; ow++)
            for (int kh = 0; kh < s->kernel_h; kh++)
                for (int kw = 0; kw < s->kernel_w; kw++) {
                    size_t pixel = (size_t)(oh * s->stride + kh) * s->in_w + ow * s->stride + kw;
                    size_t at = ((size_t)oh * s->out_w + ow) * width +
                                ((size_t)kh * s->kernel_w + kw) * s->in_c;
                    out->offsets[pixel * places + out->counts[pixel]++] = (int)at;
                }
    return POET_OK;
}

void poet_gemmconv_next_free(poet_gemmconv_next *next) {
    free(next->offsets);
    free(next->counts);
    next->offsets = next->counts = NULL;
}

poet_status poet_gemmconv_forward_filling(const poet_conv_shape *s, const float *src,
                                          poet_strides in, int input_relu, const float *shared_col,
                                          float *col_buf, const float *w, int relu, float *dst,
                                          const poet_gemmconv_next *next, float *next_col) {
    size_t R = poet_gemmconv_rows(s), width = poet_gemmconv_width(s), O = (size_t)s->out_c;
    poet_conv_shape ns = next->shape;
    ns.batch = s->batch;
    size_t next_width = poet_gemmconv_width(&ns), next_rows = poet_gemmconv_rows(&ns);
    if (narrow(width, O)) {
        const float *col = windows(s, src, in, input_relu, shared_col, col_buf);
        poet_narrow_scatter to = {next_col,
                                  (size_t)s->out_h * s->out_w,
                                  (size_t)ns.out_h * ns.out_w * next_width,
                                  next->places,
                                  next->offsets,
                                  next->counts,
                                  next->relu || relu};
        poet_narrow_forward_scatter(R, width, O, col, w, relu, dst, &to);
        for (size_t r = 0; r < next_rows; r++)
            next_col[r * next_width + next_width - 1] = 1.f;
        return POET_OK;
    }
    poet_status st =
        poet_gemmconv_forward(s, src, in, input_relu, shared_col, col_buf, w, relu, dst);
    if (st != POET_OK)
        return st;
    poet_gemmconv_im2col(&ns, dst, poet_strides_nhwc(ns.in_c, ns.in_h, ns.in_w), next->relu,
                         next_col);
    return POET_OK;
}

/* Adds the window rows of image b's output pixels back onto dsrc_image (nhwc), pixel by pixel in
 * (oh, ow, kh, kw) order: a fixed order, so the sums do not depend on anything else. In nhwc the
 * kernel columns of one kernel row are one contiguous run, as in im2col; `add` adds one run. */
static inline __attribute__((always_inline)) void col2im_image(const poet_conv_shape *s,
                                                               const float *dcol_image,
                                                               float *restrict dsrc_image,
                                                               run_fn add) {
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
                add((size_t)(kw1 - kw0) * C, row + ((size_t)kh * KW + kw0) * C,
                    dsrc_image + ((size_t)ih * s->in_w + iw0 + kw0) * C);
            }
        }
}

/* d = d where y > 0, else 0: relu's backward from its output (exact, as oneDNN's). */
static inline __attribute__((always_inline)) void relu_mask(size_t n, const float *restrict y,
                                                            float *restrict d) {
    for (size_t i = 0; i < n; i++) {
        float v = d[i];
        d[i] = y[i] > 0.f ? v : 0.f;
    }
}

/* dsrc = col2im(dcol) for every image, then relu's mask when relu_out is given. */
static inline __attribute__((always_inline)) void col2im_all(const poet_conv_shape *s,
                                                             const float *dcol,
                                                             const float *relu_out, float *dsrc,
                                                             run_fn add) {
    size_t KC = poet_gemmconv_cols(s), pixels = (size_t)s->out_h * s->out_w;
    size_t image = (size_t)s->in_h * s->in_w * s->in_c;
    for (int b = 0; b < s->batch; b++) {
        float *d = dsrc + b * image;
        zero_floats(image, d);
        col2im_image(s, dcol + (size_t)b * pixels * KC, d, add);
        if (relu_out)
            relu_mask(image, relu_out + b * image, d);
    }
}

static void col2im_portable(const poet_conv_shape *s, const float *dcol, const float *relu_out,
                            float *dsrc) {
    col2im_all(s, dcol, relu_out, dsrc, add_floats);
}

#if POET_AVX512_CODE
AVX512 static void col2im_avx512(const poet_conv_shape *s, const float *dcol, const float *relu_out,
                                 float *dsrc) {
    col2im_all(s, dcol, relu_out, dsrc, add_floats_avx512);
}
#endif

/* dcol [R, KC] = ddst · [O, KC] (the weights by output channel; ldb = KC + 1 skips the bias). */
poet_status poet_gemmconv_backward_data(const poet_conv_shape *s, const float *ddst, const float *w,
                                        float *dcol_buf, const float *relu_out, float *dsrc) {
    size_t KC = poet_gemmconv_cols(s), O = (size_t)s->out_c;
    if (dnnl_sgemm('N', 'N', (dnnl_dim_t)poet_gemmconv_rows(s), (dnnl_dim_t)KC, (dnnl_dim_t)O, 1.f,
                   ddst, (dnnl_dim_t)O, weights_by_output(s, w), (dnnl_dim_t)poet_gemmconv_width(s),
                   0.f, dcol_buf, (dnnl_dim_t)KC) != dnnl_success)
        return POET_ERR_DNNL;
#if POET_AVX512_CODE
    if (avx512_runs(s, poet_strides_nhwc(s->in_c, s->in_h, s->in_w))) {
        col2im_avx512(s, dcol_buf, relu_out, dsrc);
        return POET_OK;
    }
#endif
    col2im_portable(s, dcol_buf, relu_out, dsrc);
    return POET_OK;
}

/* [O, KC + 1] = ddstᵀ · col: the ones column makes the last column dL/db, the column sums of
 * ddst, summed by the product. */
poet_status poet_gemmconv_backward_weights(const poet_conv_shape *s, const float *src,
                                           poet_strides in, int input_relu, const float *shared_col,
                                           float *col_buf, const float *ddst, int accumulate,
                                           float *dw) {
    size_t R = poet_gemmconv_rows(s), width = poet_gemmconv_width(s), O = (size_t)s->out_c;
    const float *col = windows(s, src, in, input_relu, shared_col, col_buf);
    if (narrow(width, O)) {
        poet_narrow_weights(R, width, O, ddst, col, accumulate, dw);
        return POET_OK;
    }
    if (dnnl_sgemm('T', 'N', (dnnl_dim_t)O, (dnnl_dim_t)width, (dnnl_dim_t)R, 1.f, ddst,
                   (dnnl_dim_t)O, col, (dnnl_dim_t)width, accumulate ? 1.f : 0.f, dw,
                   (dnnl_dim_t)width) != dnnl_success)
        return POET_ERR_DNNL;
    return POET_OK;
}
