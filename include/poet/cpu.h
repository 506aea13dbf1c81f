/* cpu.h — whether poet's hand-written AVX-512 code runs on this machine.
 *
 * A few hot loops have AVX-512 versions next to their portable C (the narrow products of
 * narrowgemm, the short copies and sums of gemmconv's im2col and col2im, pool's sums and masks).
 * They are compiled on x86-64 with GCC or Clang (POET_AVX512_CODE) and chosen at run time when
 * the CPU has AVX-512F.
 * Both versions compute the same values in the same order except the narrow products, which
 * round differently from sgemm (narrowgemm.h).
 */
#ifndef POET_CPU_H
#define POET_CPU_H

#ifndef POET_AVX512_CODE /* -DPOET_AVX512_CODE=0 builds without it */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define POET_AVX512_CODE 1
#else
#define POET_AVX512_CODE 0
#endif
#endif

/* 1 when the AVX-512 versions run: compiled in, the CPU has AVX-512F, not switched off. */
int poet_cpu_avx512(void);

/* Switches the AVX-512 versions off (0) or back on (1, where the CPU allows): tests run both. */
void poet_cpu_set_avx512(int enabled);

#endif
