/* rng.h — our own portable, counter-based random numbers.
 *
 * Everything random in poet (initial weights, the shuffle of each epoch) is a pure function of
 * (seed, stream, counter), computed with the SplitMix64 finaliser. Any rank can therefore compute
 * any member's initial weights or any epoch's batch order without communication, and the numbers
 * are the same on every machine and compiler (no rand(), no floating-point in the integer path).
 */
#ifndef POET_RNG_H
#define POET_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Streams keep independent uses of one seed apart. */
enum {
    POET_STREAM_SHUFFLE = 1,
    POET_STREAM_INIT = 2,
    POET_STREAM_TEST = 3,
    POET_STREAM_DROPOUT = 4,   /* member dropout: which members join an iteration's mean */
    POET_STREAM_AUGMENT = 5,   /* crops and flips per (epoch, image) */
    POET_STREAM_VALIDATION = 6 /* which training images are held out for validation */
};

/* A 64-bit value that depends on every bit of (seed, stream, counter). */
uint64_t poet_rng_u64(uint64_t seed, uint64_t stream, uint64_t counter);

/* Uniform double in [0, 1) with 53 random bits. */
double poet_rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);

/* A sequential generator over one stream, for loops that draw many numbers. */
typedef struct {
    uint64_t seed, stream, counter;
} poet_rng;

void poet_rng_init(poet_rng *rng, uint64_t seed, uint64_t stream);
uint64_t poet_rng_next(poet_rng *rng);
/* Uniform double in [lo, hi). */
double poet_rng_range(poet_rng *rng, double lo, double hi);
/* Uniform integer in [0, n), without modulo bias. */
uint64_t poet_rng_below(poet_rng *rng, uint64_t n);

/* perm[0..n) = a permutation of 0..n-1 that depends only on (seed, epoch): Fisher-Yates driven by
 * stream POET_STREAM_SHUFFLE and a counter that starts at epoch << 40. */
void poet_rng_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, size_t n);

#endif
