/* test_gemmconv.c — im2col and col2im against direct definitions, and the AVX-512 runs against
 * the portable loops bit for bit: nhwc inputs with runs long enough for the AVX-512 code, with
 * and without padding, a single-channel input, an nchw input (element by element), relu with
 * negative zeros and NaNs in the input; the forward that fills the next convolution's im2col
 * matrix against forward + im2col; a failed product as a status without a message. (test_net
 * covers the products and whole networks.) */
#include <math.h>
#include <string.h>

#include "poet/cpu.h"
#include "poet/gemmconv.h"
#include "poet/rng.h"
#include "testutil.h"

typedef struct {
    const char *name;
    poet_conv_shape shape;
    int nchw; /* the input's layout: nchw rather than nhwc */
} conv_case;

static poet_strides input_strides(const conv_case *cc) {
    const poet_conv_shape *s = &cc->shape;
    if (!cc->nchw)
        return poet_strides_nhwc(s->in_c, s->in_h, s->in_w);
    poet_strides st = {(size_t)s->in_c * s->in_h * s->in_w, (size_t)s->in_h * s->in_w,
                       (size_t)s->in_w, 1};
    return st;
}

static size_t input_floats(const poet_conv_shape *s) {
    return (size_t)s->batch * s->in_c * s->in_h * s->in_w;
}

/* Values in [-1, 1) with some -0 and NaN, which relu must turn into +0. */
static void fill_input(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(2 * poet_rng_uniform(seed, 1, i) - 1);
    for (size_t i = 0; i < n; i += 7)
        x[i] = -0.f;
    for (size_t i = 3; i < n; i += 29)
        x[i] = NAN;
}

/* Element (b, oh·OW + ow, (kh·KW + kw)·C + c) of the im2col matrix, from its definition. */
static float window_value(const conv_case *cc, const float *x, int relu, int b, int oh, int ow,
                          int kh, int kw, int c) {
    const poet_conv_shape *s = &cc->shape;
    poet_strides st = input_strides(cc);
    int ih = oh * s->stride - s->padding + kh, iw = ow * s->stride - s->padding + kw;
    if (ih < 0 || ih >= s->in_h || iw < 0 || iw >= s->in_w)
        return 0.f;
    float v = x[b * st.n + c * st.c + ih * st.h + iw * st.w];
    return relu && !(v > 0.f) ? 0.f : v;
}

static int same_bits(const float *a, const float *b, size_t n, size_t *where) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
            *where = i;
            return 0;
        }
    return 1;
}

static void check_im2col(const conv_case *cc, const float *x, int relu) {
    const poet_conv_shape *s = &cc->shape;
    size_t width = poet_gemmconv_width(s), n = poet_gemmconv_rows(s) * width, at = 0;
    float *fast = xmalloc(n * sizeof *fast), *portable = xmalloc(n * sizeof *portable);
    float *ref = xmalloc(n * sizeof *ref);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++) {
                float *row = ref + (((size_t)b * s->out_h + oh) * s->out_w + ow) * width;
                for (int kh = 0; kh < s->kernel_h; kh++)
                    for (int kw = 0; kw < s->kernel_w; kw++)
                        for (int c = 0; c < s->in_c; c++)
                            row[((size_t)kh * s->kernel_w + kw) * s->in_c + c] =
                                window_value(cc, x, relu, b, oh, ow, kh, kw, c);
                row[width - 1] = 1.f;
            }
    poet_cpu_set_avx512(1);
    poet_gemmconv_im2col(s, x, input_strides(cc), relu, fast);
    poet_cpu_set_avx512(0);
    poet_gemmconv_im2col(s, x, input_strides(cc), relu, portable);
    poet_cpu_set_avx512(1);
    TEST_CHECK(same_bits(portable, ref, n, &at), "%s relu=%d: portable im2col differs at %zu",
               cc->name, relu, at);
    TEST_CHECK(same_bits(fast, ref, n, &at), "%s relu=%d: im2col with AVX-512 runs differs at %zu",
               cc->name, relu, at);
    printf("%-44s relu=%d im2col: %zu values checked\n", cc->name, relu, n);
    free(fast), free(portable), free(ref);
}

/* dsrc = col2im(ddst · W) masked by relu_out, in double from the definition of the convolution's
 * input gradient. */
static void backward_data_ref(const conv_case *cc, const float *ddst, const float *oihw,
                              const float *relu_out, double *dsrc) {
    const poet_conv_shape *s = &cc->shape;
    size_t image = (size_t)s->in_h * s->in_w * s->in_c;
    memset(dsrc, 0, (size_t)s->batch * image * sizeof *dsrc);
    for (int b = 0; b < s->batch; b++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++)
                for (int o = 0; o < s->out_c; o++) {
                    double g = ddst[(((size_t)b * s->out_h + oh) * s->out_w + ow) * s->out_c + o];
                    for (int kh = 0; kh < s->kernel_h; kh++)
                        for (int kw = 0; kw < s->kernel_w; kw++) {
                            int ih = oh * s->stride - s->padding + kh;
                            int iw = ow * s->stride - s->padding + kw;
                            if (ih < 0 || ih >= s->in_h || iw < 0 || iw >= s->in_w)
                                continue;
                            for (int c = 0; c < s->in_c; c++)
                                dsrc[b * image + ((size_t)ih * s->in_w + iw) * s->in_c + c] +=
                                    g * oihw[(((size_t)o * s->in_c + c) * s->kernel_h + kh) *
                                                 s->kernel_w +
                                             kw];
                        }
                }
    for (size_t i = 0; relu_out && i < (size_t)s->batch * image; i++)
        if (!(relu_out[i] > 0.f))
            dsrc[i] = 0;
}

static void check_col2im(const conv_case *cc, int masked) {
    const poet_conv_shape *s = &cc->shape;
    size_t in_n = input_floats(s), out_n = poet_gemmconv_rows(s) * s->out_c, at = 0;
    size_t w_n = (size_t)s->out_c * poet_gemmconv_cols(s);
    float *ddst = xmalloc(out_n * sizeof *ddst), *oihw = xmalloc(w_n * sizeof *oihw);
    float *bias = xmalloc((size_t)s->out_c * sizeof *bias), *relu_out = NULL;
    float *w = xmalloc(poet_gemmconv_weights_floats(s) * sizeof *w);
    float *dcol = xmalloc(poet_gemmconv_rows(s) * poet_gemmconv_cols(s) * sizeof *dcol);
    float *fast = xmalloc(in_n * sizeof *fast), *portable = xmalloc(in_n * sizeof *portable);
    double *ref = xmalloc(in_n * sizeof *ref);
    for (size_t i = 0; i < out_n; i++)
        ddst[i] = (float)(poet_rng_uniform(7, 2, i) - 0.5);
    for (size_t i = 0; i < w_n; i++)
        oihw[i] = (float)(poet_rng_uniform(7, 3, i) - 0.5);
    for (int o = 0; o < s->out_c; o++)
        bias[o] = 1.f; /* must not reach dL/d(input) */
    if (masked) {
        relu_out = xmalloc(in_n * sizeof *relu_out);
        fill_input(relu_out, in_n, 11);
    }
    poet_gemmconv_weights_to_gemm(s, oihw, bias, w);
    poet_cpu_set_avx512(1);
    TEST_CHECK(poet_gemmconv_backward_data(s, ddst, w, dcol, relu_out, fast) == POET_OK,
               "sgemm failed");
    poet_cpu_set_avx512(0);
    TEST_CHECK(poet_gemmconv_backward_data(s, ddst, w, dcol, relu_out, portable) == POET_OK,
               "sgemm failed");
    poet_cpu_set_avx512(1);
    backward_data_ref(cc, ddst, oihw, relu_out, ref);
    char what[96];
    snprintf(what, sizeof what, "%s col2im masked=%d", cc->name, masked);
    test_compare_f32(what, portable, ref, in_n, 1e-6, 1e-5);
    TEST_CHECK(same_bits(fast, portable, in_n, &at),
               "%s masked=%d: col2im with AVX-512 runs differs from the portable loops at %zu",
               cc->name, masked, at);
    free(ddst), free(oihw), free(bias), free(relu_out), free(w), free(dcol), free(fast);
    free(portable), free(ref);
}

/* poet_gemmconv_forward_filling against poet_gemmconv_forward followed by next's im2col of its
 * output: the output and next's whole matrix bit for bit (every element written: the matrix starts
 * as NaNs, a sentinel sits past it), for the current code path (AVX-512 or portable). */
static void check_filling(const char *name, poet_conv_shape s, poet_conv_shape next, int relu,
                          int next_relu) {
    next.batch = s.batch;
    size_t n_in = input_floats(&s), n_out = poet_gemmconv_rows(&s) * (size_t)s.out_c;
    size_t n_col = poet_gemmconv_rows(&s) * poet_gemmconv_width(&s);
    size_t n_next = poet_gemmconv_rows(&next) * poet_gemmconv_width(&next);
    size_t n_w = (size_t)s.out_c * s.in_c * s.kernel_h * s.kernel_w;
    float *x = xmalloc(n_in * sizeof *x), *oihw = xmalloc(n_w * sizeof *oihw);
    float *bias = xmalloc((size_t)s.out_c * sizeof *bias);
    float *w = xmalloc(poet_gemmconv_weights_floats(&s) * sizeof *w);
    float *col = xmalloc(n_col * sizeof *col), *dst = xmalloc(n_out * sizeof *dst);
    float *dst_ref = xmalloc(n_out * sizeof *dst_ref);
    float *next_col = xmalloc((n_next + 1) * sizeof *next_col);
    float *next_ref = xmalloc(n_next * sizeof *next_ref);
    fill_input(x, n_in, 7);
    for (size_t i = 0; i < n_w; i++)
        oihw[i] = (float)(poet_rng_uniform(8, 1, i) - 0.5);
    for (int o = 0; o < s.out_c; o++)
        bias[o] = (float)(poet_rng_uniform(9, 1, (uint64_t)o) - 0.5);
    poet_gemmconv_weights_to_gemm(&s, oihw, bias, w);
    poet_strides in = poet_strides_nhwc(s.in_c, s.in_h, s.in_w);

    TEST_CHECK(poet_gemmconv_forward(&s, x, in, 0, NULL, col, w, relu, dst_ref) == POET_OK,
               "%s: forward", name);
    poet_gemmconv_im2col(&next, dst_ref, poet_strides_nhwc(next.in_c, next.in_h, next.in_w),
                         next_relu, next_ref);

    poet_gemmconv_next table;
    TEST_CHECK(poet_gemmconv_can_fill(&next), "%s: next can be filled", name);
    TEST_CHECK(poet_gemmconv_next_init(&next, next_relu, &table) == POET_OK, "%s: table", name);
    for (size_t i = 0; i < n_next; i++)
        next_col[i] = NAN;
    next_col[n_next] = 12345.f;
    TEST_CHECK(poet_gemmconv_forward_filling(&s, x, in, 0, NULL, col, w, relu, dst, &table,
                                             next_col) == POET_OK,
               "%s: forward filling", name);
    size_t where = 0;
    TEST_CHECK(same_bits(dst, dst_ref, n_out, &where), "%s: output differs at %zu", name, where);
    TEST_CHECK(same_bits(next_col, next_ref, n_next, &where),
               "%s: next's im2col matrix differs at %zu (%g, expected %g)", name, where,
               next_col[where], next_ref[where]);
    TEST_CHECK(next_col[n_next] == 12345.f, "%s: wrote past next's matrix", name);
    printf("%s: filled %zu elements of next's im2col matrix as its im2col does\n", name, n_next);
    poet_gemmconv_next_free(&table);
    free(x), free(oihw), free(bias), free(w), free(col), free(dst), free(dst_ref);
    free(next_col), free(next_ref);
}

/* A product that sgemm refuses (here a negative row count) is POET_ERR_DNNL from each of the
 * three products, and no message is recorded: they run inside the stack's OpenMP regions, and the
 * stack records one message, naming the member and step, once the region has ended. */
static void sgemm_failure(void) {
    /* 20 channels, 1x1 kernel: a width of 21, too wide for the narrow kernels, so sgemm runs */
    poet_conv_shape s = {-1, 20, 1, 1, 4, 1, 1, 1, 1, 1, 0};
    poet_strides in = poet_strides_nhwc(20, 1, 1);
    float col[21] = {0}, w[2 * 4 * 21] = {0}, dw[4 * 21] = {0}, ddst[4] = {0}, dcol[20] = {0};
    float out[20] = {0};
    poet_error_clear();
    poet_status fwd = poet_gemmconv_forward(&s, NULL, in, 0, col, NULL, w, 0, out);
    poet_status data = poet_gemmconv_backward_data(&s, ddst, w, dcol, NULL, out);
    poet_status weights = poet_gemmconv_backward_weights(&s, NULL, in, 0, col, NULL, ddst, 0, dw);
    printf("sgemm refusing: forward %s, backward data %s, backward weights %s; message '%s'\n",
           poet_status_name(fwd), poet_status_name(data), poet_status_name(weights),
           poet_error_message());
    TEST_CHECK(fwd == POET_ERR_DNNL && data == POET_ERR_DNNL && weights == POET_ERR_DNNL,
               "a failed sgemm must be POET_ERR_DNNL (got %d, %d, %d)", fwd, data, weights);
    TEST_CHECK(poet_error_message()[0] == '\0', "gemmconv recorded a message: %s",
               poet_error_message());
}

int main(void) {
    const conv_case cases[] = {
        /* the reference network's second convolution: runs of 60 floats, no padding */
        {"20->40 3x3 stride 2 (reference conv2)", {3, 20, 13, 13, 40, 6, 6, 3, 3, 2, 0}, 0},
        /* runs of 24 cut short by padding at the borders */
        {"8->8 3x3 stride 1 padding 1", {2, 8, 7, 7, 8, 7, 7, 3, 3, 1, 1}, 0},
        /* runs of 17: one vector and a one-float tail */
        {"17->5 1x1 stride 2 padding 1", {2, 17, 5, 5, 5, 4, 4, 1, 1, 2, 1}, 0},
        /* single channel: runs of 3, the portable loops either way */
        {"1->20 3x3 stride 2 (reference conv1)", {2, 1, 28, 28, 20, 13, 13, 3, 3, 2, 0}, 0},
        /* three channels in nchw: element by element */
        {"3->4 3x3 stride 2 padding 1, nchw input", {2, 3, 9, 8, 4, 5, 4, 3, 3, 2, 1}, 1},
    };
    if (!poet_cpu_avx512())
        printf("no AVX-512 here: both paths are the portable loops\n");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = input_floats(&cases[i].shape);
        float *x = xmalloc(n * sizeof *x);
        fill_input(x, n, 100 + i);
        check_im2col(&cases[i], x, 0);
        check_im2col(&cases[i], x, 1);
        if (!cases[i].nchw) { /* backward data produces nhwc */
            check_col2im(&cases[i], 0);
            check_col2im(&cases[i], 1);
        }
        free(x);
    }
    /* The forward that also fills the next convolution's im2col matrix, on both code paths:
     * narrow kernels with the AVX-512 code, sgemm + im2col without it (and for wide windows). */
    const struct {
        const char *name;
        poet_conv_shape layer, next; /* batches set below */
        int relu, next_relu;
    } fills[] = {
        {"reference conv1 -> conv2",
         {0, 1, 28, 28, 20, 13, 13, 3, 3, 2, 0},
         {0, 20, 13, 13, 40, 6, 6, 3, 3, 2, 0},
         0,
         1},
        {"padded 3x3 -> 3x3 stride 1, no relu",
         {0, 1, 10, 10, 4, 10, 10, 3, 3, 1, 1},
         {0, 4, 10, 10, 6, 8, 8, 3, 3, 1, 0},
         0,
         0},
        {"1x1 with its own relu -> 2x2 stride 2 (last row and column unread)",
         {0, 1, 13, 13, 8, 13, 13, 1, 1, 1, 0},
         {0, 8, 13, 13, 5, 6, 6, 2, 2, 2, 0},
         1,
         0},
        {"a window too wide for the narrow kernels (sgemm)",
         {0, 3, 9, 9, 6, 7, 7, 3, 3, 1, 0},
         {0, 6, 7, 7, 4, 5, 5, 3, 3, 1, 0},
         0,
         1},
    };
    for (int fast = 0; fast < 2; fast++) {
        poet_cpu_set_avx512(fast);
        printf("== forward filling the next matrix, %s\n", fast ? "AVX-512 code" : "portable");
        for (int batch = 1; batch <= 3; batch += 2)
            for (size_t f = 0; f < sizeof fills / sizeof *fills; f++) {
                poet_conv_shape layer = fills[f].layer;
                layer.batch = batch;
                check_filling(fills[f].name, layer, fills[f].next, fills[f].relu,
                              fills[f].next_relu);
            }
    }
    poet_cpu_set_avx512(1);
    poet_conv_shape padded = {1, 4, 8, 8, 4, 8, 8, 3, 3, 1, 1};
    TEST_CHECK(!poet_gemmconv_can_fill(&padded), "a padded next convolution is not filled");
    sgemm_failure();
    return test_finish("gemmconv");
}
