/* test_gemmconv.c — im2col and col2im against direct definitions, and the AVX-512 runs against
 * the portable loops bit for bit: nhwc inputs with runs long enough for the AVX-512 code, with
 * and without padding, a single-channel input, an nchw input (element by element), relu with
 * negative zeros and NaNs in the input. (test_net covers the products and whole networks.) */
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
    TEST_CHECK(poet_gemmconv_backward_data(s, ddst, w, dcol, relu_out, fast) == 0, "sgemm failed");
    poet_cpu_set_avx512(0);
    TEST_CHECK(poet_gemmconv_backward_data(s, ddst, w, dcol, relu_out, portable) == 0,
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
    return test_finish("gemmconv");
}
