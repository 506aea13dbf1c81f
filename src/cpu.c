/* cpu.c — the run-time choice of poet's AVX-512 code (see cpu.h). */
#include "poet/cpu.h"

static int avx512_enabled = 1;

int poet_cpu_avx512(void) {
#if POET_AVX512_CODE
    return avx512_enabled && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void poet_cpu_set_avx512(int enabled) { avx512_enabled = enabled != 0; }
