/* pool.c — global average pooling of nhwc chunks with the relu before it (see pool.h).
 *
 * The portable loops vectorise over channels with the compiler's baseline vectors; the AVX-512
 * versions hold 16 channels of one image in a register across its pixels. Both add the pixels
 * in order; where the relu lets nothing through, the portable loop adds +0 and the AVX-512 one
 * leaves the sum alone, which is the same value (sums start at +0 and only grow).
 */
#include "poet/pool.h"

#include <string.h>

#include "poet/cpu.h"

#if POET_AVX512_CODE
#include <immintrin.h>
#endif

#define ROW_FLOATS 64 /* the portable backward's scaled gradient, this many channels at a time */

static void forward_portable(size_t n, size_t HW, size_t C, int relu, const float *restrict y,
                             float *restrict pooled, unsigned char *restrict relu_mask) {
    if (relu && relu_mask)
        for (size_t i = 0; i < n * HW * C; i++)
            relu_mask[i] = y[i] > 0.f;
    for (size_t b = 0; b < n; b++) {
        const float *restrict image = y + b * HW * C;
        float *restrict sum = pooled + b * C;
        for (size_t c = 0; c < C; c++)
            sum[c] = 0.f;
        for (size_t p = 0; p < HW; p++) {
            const float *restrict v = image + p * C;
            if (relu)
                for (size_t c = 0; c < C; c++)
                    sum[c] += v[c] > 0.f ? v[c] : 0.f;
            else
                for (size_t c = 0; c < C; c++)
                    sum[c] += v[c];
        }
        for (size_t c = 0; c < C; c++)
            sum[c] /= (float)HW;
    }
}

static void backward_portable(size_t n, size_t HW, size_t C, const float *restrict dpooled,
                              const unsigned char *restrict relu_mask, float *restrict dy) {
    float row[ROW_FLOATS];
    for (size_t b = 0; b < n; b++)
        for (size_t c0 = 0; c0 < C; c0 += ROW_FLOATS) {
            size_t len = C - c0 < ROW_FLOATS ? C - c0 : ROW_FLOATS;
            for (size_t c = 0; c < len; c++)
                row[c] = dpooled[b * C + c0 + c] / (float)HW;
            for (size_t p = 0; p < HW; p++) {
                size_t at = (b * HW + p) * C + c0;
                if (!relu_mask) {
                    memcpy(dy + at, row, len * sizeof *row);
                    continue;
                }
                for (size_t c = 0; c < len; c++) {
                    float v = row[c]; /* loaded unconditionally: the loop vectorises to a blend */
                    dy[at + c] = relu_mask[at + c] ? v : 0.f;
                }
            }
        }
}

#if POET_AVX512_CODE
#define AVX512 __attribute__((target("avx512f")))
#define LANES 16
#define GROUP 4 /* registers of channels per pass over the pixels: independent sums */

/* The lanes of channels c0.. that exist (none past C). */
AVX512 static inline __mmask16 channel_lanes(size_t C, size_t c0) {
    if (c0 >= C)
        return 0;
    return C - c0 >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - c0)) - 1u);
}

/* The lanes of the GROUP registers of channels from c0 on. */
AVX512 static inline void group_lanes(size_t C, size_t c0, __mmask16 lanes[GROUP]) {
#pragma GCC unroll 4
    for (int k = 0; k < GROUP; k++)
        lanes[k] = channel_lanes(C, c0 + (size_t)k * LANES);
}

AVX512 static void forward_avx512(size_t n, size_t HW, size_t C, int relu, const float *y,
                                  float *pooled, unsigned char *relu_mask) {
    const __m512 zero = _mm512_setzero_ps(), pixels = _mm512_set1_ps((float)HW);
    const __m512i one = _mm512_set1_epi32(1);
    for (size_t b = 0; b < n; b++)
        for (size_t c0 = 0; c0 < C; c0 += GROUP * LANES) {
            __mmask16 lanes[GROUP];
            __m512 sum[GROUP];
            group_lanes(C, c0, lanes);
#pragma GCC unroll 4
            for (int k = 0; k < GROUP; k++)
                sum[k] = zero;
            for (size_t p = 0; p < HW; p++) {
                size_t at = (b * HW + p) * C + c0;
#pragma GCC unroll 4
                for (int k = 0; k < GROUP; k++) {
                    if (!lanes[k])
                        break;
                    __m512 v = _mm512_maskz_loadu_ps(lanes[k], y + at + k * LANES);
                    if (!relu) {
                        sum[k] = _mm512_add_ps(sum[k], v);
                        continue;
                    }
                    __mmask16 positive = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
                    sum[k] = _mm512_mask_add_ps(sum[k], positive, sum[k], v);
                    if (relu_mask)
                        _mm512_mask_cvtepi32_storeu_epi8(relu_mask + at + k * LANES, lanes[k],
                                                         _mm512_maskz_mov_epi32(positive, one));
                }
            }
#pragma GCC unroll 4
            for (int k = 0; k < GROUP; k++)
                _mm512_mask_storeu_ps(pooled + b * C + c0 + k * LANES, lanes[k],
                                      _mm512_div_ps(sum[k], pixels));
        }
}

/* The lanes whose mask byte is not 0, of the `count` bytes from m on (at most 16 read; fewer
 * than 16 left before the mask's end are copied first, so nothing past it is read). */
AVX512 static inline __mmask16 mask_lanes(const unsigned char *m, size_t count, size_t left) {
    __m128i bytes;
    if (left >= LANES) {
        bytes = _mm_loadu_si128((const __m128i *)m);
    } else {
        unsigned char part[LANES] = {0};
        memcpy(part, m, count < LANES ? count : LANES);
        bytes = _mm_loadu_si128((const __m128i *)part);
    }
    __m512i wide = _mm512_cvtepu8_epi32(bytes);
    return _mm512_test_epi32_mask(wide, wide);
}

AVX512 static void backward_avx512(size_t n, size_t HW, size_t C, const float *dpooled,
                                   const unsigned char *relu_mask, float *dy) {
    const __m512 pixels = _mm512_set1_ps((float)HW);
    size_t end = n * HW * C;
    for (size_t b = 0; b < n; b++)
        for (size_t c0 = 0; c0 < C; c0 += GROUP * LANES) {
            __mmask16 lanes[GROUP];
            __m512 row[GROUP];
            group_lanes(C, c0, lanes);
#pragma GCC unroll 4
            for (int k = 0; k < GROUP; k++)
                row[k] = _mm512_div_ps(
                    _mm512_maskz_loadu_ps(lanes[k], dpooled + b * C + c0 + k * LANES), pixels);
            for (size_t p = 0; p < HW; p++) {
                size_t at = (b * HW + p) * C + c0;
#pragma GCC unroll 4
                for (int k = 0; k < GROUP; k++) {
                    if (!lanes[k])
                        break;
                    size_t i = at + (size_t)k * LANES;
                    __m512 v = row[k];
                    if (relu_mask)
                        v = _mm512_maskz_mov_ps(
                            mask_lanes(relu_mask + i, C - c0 - k * LANES, end - i), row[k]);
                    _mm512_mask_storeu_ps(dy + i, lanes[k], v);
                }
            }
        }
}
#endif

void poet_pool_global_forward(size_t n, size_t HW, size_t C, int relu, const float *y,
                              float *pooled, unsigned char *relu_mask) {
#if POET_AVX512_CODE
    if (poet_cpu_avx512()) {
        forward_avx512(n, HW, C, relu, y, pooled, relu_mask);
        return;
    }
#endif
    forward_portable(n, HW, C, relu, y, pooled, relu_mask);
}

void poet_pool_global_backward(size_t n, size_t HW, size_t C, const float *dpooled,
                               const unsigned char *relu_mask, float *dy) {
#if POET_AVX512_CODE
    if (poet_cpu_avx512()) {
        backward_avx512(n, HW, C, dpooled, relu_mask, dy);
        return;
    }
#endif
    backward_portable(n, HW, C, dpooled, relu_mask, dy);
}
