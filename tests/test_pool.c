/* test_pool.c — global average pooling with relu (pool.h) against its definition: pooled means
 * in double, the relu mask and the backward exactly; the AVX-512 and portable versions bit for
 * bit (where the CPU has AVX-512), for channel counts around the 16-lane register (1, 15, 16, 17,
 * 40, 100: a partial last register, several registers, more than the portable row of 64), one
 * pixel or 36, one image or three; inputs with exact zeros, -0, negatives and NaN; nothing written
 * past the outputs. */
#include <math.h>
#include <string.h>

#include "poet/cpu.h"
#include "poet/pool.h"
#include "poet/rng.h"
#include "testutil.h"

#define SENTINEL 12345.f
#define MASK_SENTINEL 0xA5

/* Values in [-1, 1) with every 7th exactly 0, every 11th -0 and every 29th NaN. */
static void fill_activations(float *v, size_t count, uint64_t seed) {
    for (size_t i = 0; i < count; i++) {
        v[i] = (float)(2 * poet_rng_uniform(seed, 0, i) - 1);
        if (i % 7 == 3)
            v[i] = 0.f;
        if (i % 11 == 5)
            v[i] = -0.f;
        if (i % 29 == 13)
            v[i] = NAN;
    }
}

typedef struct {
    float *pooled, *dy;
    unsigned char *mask;
} pool_outputs;

static pool_outputs outputs_new(size_t n, size_t HW, size_t C) {
    pool_outputs o = {xmalloc((n * C + 1) * sizeof(float)),
                      xmalloc((n * HW * C + 1) * sizeof(float)), xmalloc(n * HW * C + 1)};
    o.pooled[n * C] = o.dy[n * HW * C] = SENTINEL;
    o.mask[n * HW * C] = MASK_SENTINEL;
    return o;
}

static void outputs_free(pool_outputs *o) { free(o->pooled), free(o->dy), free(o->mask); }

/* Forward and backward of one shape with the current code path. */
static void run(size_t n, size_t HW, size_t C, int relu, const float *y, const float *dpooled,
                pool_outputs *o) {
    poet_pool_global_forward(n, HW, C, relu, y, o->pooled, relu ? o->mask : NULL);
    poet_pool_global_backward(n, HW, C, dpooled, relu ? o->mask : NULL, o->dy);
}

/* The outputs of `o` against the definitions. The input has no NaN where relu is off. */
static void check_definition(const char *what, size_t n, size_t HW, size_t C, int relu,
                             const float *y, const float *dpooled, const pool_outputs *o) {
    double *mean = xmalloc(n * C * sizeof *mean);
    size_t wrong_mask = 0, wrong_dy = 0;
    for (size_t b = 0; b < n; b++)
        for (size_t c = 0; c < C; c++) {
            double sum = 0;
            for (size_t p = 0; p < HW; p++) {
                size_t i = (b * HW + p) * C + c;
                int through = !relu || y[i] > 0.f;
                sum += relu ? (through ? y[i] : 0.0) : y[i];
                if (relu)
                    wrong_mask += o->mask[i] != through;
                float expect = through ? dpooled[b * C + c] / (float)HW : 0.f;
                wrong_dy += memcmp(&o->dy[i], &expect, sizeof expect) != 0;
            }
            mean[b * C + c] = sum / (double)HW;
        }
    char label[160];
    snprintf(label, sizeof label, "%s: pooled", what);
    test_compare_f32(label, o->pooled, mean, n * C, 1e-6, 1e-6);
    TEST_CHECK(wrong_mask == 0, "%s: %zu mask bytes differ from y > 0", what, wrong_mask);
    TEST_CHECK(wrong_dy == 0, "%s: %zu elements of dy differ from mask ? dpooled / HW : 0", what,
               wrong_dy);
    TEST_CHECK(o->pooled[n * C] == SENTINEL && o->dy[n * HW * C] == SENTINEL &&
                   (!relu || o->mask[n * HW * C] == MASK_SENTINEL),
               "%s: wrote past an output", what);
    free(mean);
}

static size_t differing_bytes(const void *a, const void *b, size_t bytes) {
    const unsigned char *x = a, *y = b;
    size_t differ = 0;
    for (size_t i = 0; i < bytes; i++)
        differ += x[i] != y[i];
    return differ;
}

static void check_shape(size_t n, size_t HW, size_t C, int relu, int avx512) {
    size_t count = n * HW * C;
    float *y = xmalloc(count * sizeof *y), *dpooled = xmalloc(n * C * sizeof *dpooled);
    fill_activations(y, count, 7 + n * 1000 + HW * 100 + C);
    if (!relu) /* without a relu a NaN would only spread; keep the means finite */
        for (size_t i = 0; i < count; i++)
            if (isnan(y[i]))
                y[i] = 0.5f;
    for (size_t i = 0; i < n * C; i++)
        dpooled[i] = (float)(poet_rng_uniform(99, 1, i) - 0.5);
    char what[96];
    snprintf(what, sizeof what, "n=%zu HW=%zu C=%zu relu=%d", n, HW, C, relu);

    poet_cpu_set_avx512(0);
    pool_outputs portable = outputs_new(n, HW, C);
    run(n, HW, C, relu, y, dpooled, &portable);
    check_definition(what, n, HW, C, relu, y, dpooled, &portable);
    if (avx512) {
        poet_cpu_set_avx512(1);
        pool_outputs fast = outputs_new(n, HW, C);
        run(n, HW, C, relu, y, dpooled, &fast);
        check_definition(what, n, HW, C, relu, y, dpooled, &fast);
        size_t differ = differing_bytes(fast.pooled, portable.pooled, n * C * sizeof(float)) +
                        differing_bytes(fast.dy, portable.dy, count * sizeof(float)) +
                        (relu ? differing_bytes(fast.mask, portable.mask, count) : 0);
        TEST_CHECK(differ == 0, "%s: AVX-512 and portable differ in %zu bytes", what, differ);
        outputs_free(&fast);
    }
    poet_cpu_set_avx512(1);
    outputs_free(&portable);
    free(y), free(dpooled);
}

int main(void) {
    int avx512 = poet_cpu_avx512();
    if (!avx512)
        printf("this CPU has no AVX-512: the portable loops only\n");
    const size_t ns[] = {1, 3}, Ps[] = {1, 36}, Cs[] = {1, 15, 16, 17, 40, 100};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++)
            for (size_t c = 0; c < sizeof Cs / sizeof *Cs; c++)
                for (int relu = 0; relu < 2; relu++)
                    check_shape(ns[a], Ps[b], Cs[c], relu, avx512);
    printf("pooling checked for %zu shapes, with and without relu%s\n",
           2 * 2 * sizeof Cs / sizeof *Cs, avx512 ? ", AVX-512 against portable" : "");
    return test_finish("pool");
}
