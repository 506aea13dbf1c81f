/* rng.c — counter-based random numbers: every value is a pure function of (seed, stream, counter).
 *
 * THE FORMULA (frozen: checkpoints, initial weights and batch orders depend on it, and the rng test
 * pins known answers, so any change is caught). All arithmetic is on uint64_t, modulo 2^64:
 *
 *   G       = 0x9e3779b97f4a7c15                    (SplitMix64's increment, 2^64 / golden ratio)
 *   mix(z)  = z ^= z >> 30;  z *= 0xbf58476d1ce4e5b9;
 *             z ^= z >> 27;  z *= 0x94d049bb133111eb;
 *             z ^= z >> 31;  return z                (the SplitMix64 finaliser, a bijection)
 *
 *   poet_rng_u64(seed, stream, counter) =
 *       mix( mix( mix(counter + G) ^ (stream + 2G) ) ^ (seed + 3G) )
 *
 * Why this shape: each mix() makes every output bit depend on every input bit, so nesting one mix
 * per argument decorrelates neighbouring counters, streams and seeds alike. For a fixed (seed,
 * stream) the map counter -> value is a bijection (a chain of bijections), so one stream never
 * repeats a value, and, unlike "SplitMix64 seeded with hash(seed, stream)", two streams are not
 * shifted copies of one sequence. The added multiples of G keep the all-zero input from mapping to
 * zero (mix(0) = 0).
 *
 *   poet_rng_uniform = (u64 >> 11) * 2^-53            (exact in double: 53 random bits)
 *   poet_rng_below(n) = r mod n for the first draw r >= 2^64 mod n (rejects the short last block)
 *   poet_rng_permutation: Fisher-Yates from the top (i = n-1 .. 1 swaps i with below(i + 1)),
 *                         sequential generator on POET_STREAM_SHUFFLE starting at epoch << 40.
 */
#include "poet/rng.h"

#define RNG_GAMMA UINT64_C(0x9e3779b97f4a7c15)

static uint64_t mix(uint64_t z) {
    z ^= z >> 30;
    z *= UINT64_C(0xbf58476d1ce4e5b9);
    z ^= z >> 27;
    z *= UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return z;
}

uint64_t poet_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t z = mix(counter + RNG_GAMMA);
    z = mix(z ^ (stream + 2 * RNG_GAMMA));
    return mix(z ^ (seed + 3 * RNG_GAMMA));
}

/* The top 53 bits are the best-mixed ones; multiplying by 2^-53 is exact, so the result is one of
 * the 2^53 equally spaced values k·2^-53 in [0, 1). */
static double to_unit(uint64_t bits) { return (double)(bits >> 11) * 0x1.0p-53; }

double poet_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return to_unit(poet_rng_u64(seed, stream, counter));
}

void poet_rng_init(poet_rng *rng, uint64_t seed, uint64_t stream) {
    rng->seed = seed;
    rng->stream = stream;
    rng->counter = 0;
}

uint64_t poet_rng_next(poet_rng *rng) {
    return poet_rng_u64(rng->seed, rng->stream, rng->counter++);
}

double poet_rng_range(poet_rng *rng, double lo, double hi) {
    double r = lo + (hi - lo) * to_unit(poet_rng_next(rng));
    /* lo + (hi - lo)·u can round up to hi when u is just below 1; keep the interval half-open. */
    return r < hi ? r : lo;
}

/* 2^64 = q·n + rem: the values [0, rem) would be one more time in [0, n) than the rest, so they
 * are drawn again. The rejection probability is rem / 2^64 < n / 2^64, i.e. negligible unless n is
 * near 2^64. n = 0 (an empty range) returns 0 without drawing. */
uint64_t poet_rng_below(poet_rng *rng, uint64_t n) {
    if (n == 0)
        return 0;
    uint64_t rem = (0 - n) % n; /* (2^64 - n) mod n == 2^64 mod n */
    uint64_t r;
    do
        r = poet_rng_next(rng);
    while (r < rem);
    return r % n;
}

/* Epoch e's draws use counters [e·2^40, (e+1)·2^40): disjoint for every n < 2^40 (with rejection
 * draws included), so epochs never share a random number. */
void poet_rng_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, size_t n) {
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    poet_rng rng;
    poet_rng_init(&rng, seed, POET_STREAM_SHUFFLE);
    rng.counter = epoch << 40;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)poet_rng_below(&rng, i);
        uint32_t tmp = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = tmp;
    }
}
