/* test_rng.c — the counter-based generator: pinned known answers (any change to the formula breaks
 * reproducibility of old runs and must fail here), the documented formula restated independently,
 * ranges, unbiasedness, decorrelation and permutations. Everything is deterministic. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "poet/rng.h"
#include "testutil.h"

/* The formula exactly as rng.c's header comment documents it, written out again. */
static uint64_t doc_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t doc_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    const uint64_t g = UINT64_C(0x9e3779b97f4a7c15);
    return doc_mix(doc_mix(doc_mix(counter + g) ^ (stream + 2 * g)) ^ (seed + 3 * g));
}

static int popcount64(uint64_t x) {
    int n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

/* Computed once from the documented formula (and cross-checked with an independent script) and
 * frozen. */
static void test_known_answers(void) {
    static const struct {
        uint64_t seed, stream, counter, value;
    } kat[] = {
        {0, 0, 0, UINT64_C(0x1e35cdb4bf4f6f16)},
        {1, 2, 3, UINT64_C(0x4d6c22c19b840d95)},
        {42, POET_STREAM_SHUFFLE, UINT64_C(1) << 40, UINT64_C(0x97730b4ca0c408d6)},
        {42, POET_STREAM_INIT, 12345, UINT64_C(0xe77b760b5f7760de)},
        {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_C(0x5e923dc280790b9a)},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint64_t got = poet_rng_u64(kat[i].seed, kat[i].stream, kat[i].counter);
        TEST_CHECK(got == kat[i].value,
                   "u64(%" PRIu64 ", %" PRIu64 ", %" PRIu64 ") = 0x%016" PRIx64
                   ", pinned 0x%016" PRIx64,
                   kat[i].seed, kat[i].stream, kat[i].counter, got, kat[i].value);
    }
    /* The first entries of one permutation pin the epoch << 40 counter start and Fisher-Yates. */
    static const uint32_t perm_kat[10] = {7, 5, 9, 3, 1, 2, 4, 6, 0, 8};
    uint32_t perm[10];
    poet_rng_permutation(7, 3, perm, 10);
    for (int i = 0; i < 10; i++)
        TEST_CHECK(perm[i] == perm_kat[i], "permutation(7, 3, n=10)[%d] = %u, pinned %u", i,
                   (unsigned)perm[i], (unsigned)perm_kat[i]);
}

static void test_formula(void) {
    int bad = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t seed = i * 7919, stream = i % 5, counter = (i * i) << (i % 50);
        if (poet_rng_u64(seed, stream, counter) != doc_u64(seed, stream, counter))
            bad++;
    }
    TEST_CHECK(bad == 0, "%d of 1000 values differ from the documented formula", bad);
}

static void test_uniform(void) {
    double lo = 1, hi = 0, sum = 0;
    int inexact = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = poet_rng_uniform(5, POET_STREAM_TEST, (uint64_t)i);
        if (u !=
            (double)(poet_rng_u64(5, POET_STREAM_TEST, (uint64_t)i) >> 11) / 9007199254740992.0)
            inexact++;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
    }
    printf("uniform: %d draws in [%.6f, %.6f], mean %.5f\n", n, lo, hi, sum / n);
    TEST_CHECK(inexact == 0, "%d values are not (u64 >> 11) * 2^-53", inexact);
    TEST_CHECK(lo >= 0 && hi < 1, "range [%g, %g] not inside [0, 1)", lo, hi);
    TEST_CHECK(fabs(sum / n - 0.5) < 0.005, "mean %g too far from 0.5", sum / n);
    /* The extremes of the mapping: all-zero top bits give 0, all-one bits stay below 1. */
    TEST_CHECK((double)(UINT64_MAX >> 11) * 0x1.0p-53 < 1.0, "2^53-1 / 2^53 rounds to 1");

    poet_rng rng;
    poet_rng_init(&rng, 5, POET_STREAM_TEST);
    int outside = 0;
    for (int i = 0; i < 10000; i++) {
        double r = poet_rng_range(&rng, -0.25, 0.75);
        if (!(r >= -0.25 && r < 0.75))
            outside++;
    }
    TEST_CHECK(outside == 0, "%d range(-0.25, 0.75) values outside [-0.25, 0.75)", outside);
}

static void test_sequential(void) {
    poet_rng rng;
    poet_rng_init(&rng, 99, POET_STREAM_INIT);
    int bad = 0;
    for (uint64_t k = 0; k < 100; k++)
        if (poet_rng_next(&rng) != poet_rng_u64(99, POET_STREAM_INIT, k))
            bad++;
    TEST_CHECK(bad == 0, "%d of 100 poet_rng_next values differ from u64(seed, stream, k)", bad);
    TEST_CHECK(rng.counter == 100, "counter %" PRIu64 " after 100 draws", rng.counter);
}

/* Chi-square of `draws` values of below(n) over n cells; n - 1 degrees of freedom. */
static double chi_square_below(uint64_t seed, uint64_t n, int draws) {
    long counts[64] = {0};
    poet_rng rng;
    poet_rng_init(&rng, seed, POET_STREAM_TEST);
    for (int i = 0; i < draws; i++)
        counts[poet_rng_below(&rng, n)]++;
    double expected = (double)draws / (double)n, chi2 = 0;
    for (uint64_t c = 0; c < n; c++)
        chi2 += (counts[c] - expected) * (counts[c] - expected) / expected;
    return chi2;
}

static void test_below(void) {
    static const uint64_t sizes[] = {1, 2, 3, 7, 10, 1000, (UINT64_C(1) << 63) + 1, UINT64_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        poet_rng rng;
        poet_rng_init(&rng, s, POET_STREAM_TEST);
        int outside = 0;
        for (int i = 0; i < 2000; i++)
            if (poet_rng_below(&rng, sizes[s]) >= sizes[s])
                outside++;
        TEST_CHECK(outside == 0, "%d of 2000 below(%" PRIu64 ") values out of range", outside,
                   sizes[s]);
    }
    /* For n = 2^63 + 1 half of all 64-bit values are rejected: the draws must show it (about 2
     * per value) and the results must still cover both halves of [0, n). */
    poet_rng rng;
    poet_rng_init(&rng, 1, POET_STREAM_TEST);
    uint64_t big = (UINT64_C(1) << 63) + 1;
    int upper = 0;
    for (int i = 0; i < 1000; i++)
        upper += poet_rng_below(&rng, big) >= (big >> 1);
    printf("below(2^63+1): 1000 values took %" PRIu64 " draws, %d in the upper half\n", rng.counter,
           upper);
    TEST_CHECK(rng.counter > 1800 && rng.counter < 2200, "%" PRIu64 " draws, expected about 2000",
               rng.counter);
    TEST_CHECK(upper > 400 && upper < 600, "%d of 1000 in the upper half", upper);

    /* 9 and 62 degrees of freedom: a fair generator exceeds 40 / 130 with probability < 1e-5. */
    double chi10 = chi_square_below(11, 10, 100000), chi63 = chi_square_below(12, 63, 63000);
    printf("below: chi-square %.2f (9 dof) for n=10, %.2f (62 dof) for n=63\n", chi10, chi63);
    TEST_CHECK(chi10 < 40, "chi-square %.2f for below(10)", chi10);
    TEST_CHECK(chi63 < 130, "chi-square %.2f for below(63)", chi63);
    poet_rng_init(&rng, 1, POET_STREAM_TEST);
    TEST_CHECK(poet_rng_below(&rng, 0) == 0 && rng.counter == 0,
               "below(0) must return 0 and draw nothing");
}

/* Flipping any one input bit must flip about half of the output bits, in every argument. */
static void test_avalanche(void) {
    const char *names[3] = {"seed", "stream", "counter"};
    for (int arg = 0; arg < 3; arg++) {
        double worst = 32;
        for (int bit = 0; bit < 64; bit++) {
            long flips = 0;
            for (uint64_t k = 0; k < 64; k++) {
                uint64_t in[3] = {k * 31 + 1, k % 4, k * 1000003}, out[3];
                memcpy(out, in, sizeof in);
                out[arg] ^= UINT64_C(1) << bit;
                flips += popcount64(poet_rng_u64(in[0], in[1], in[2]) ^
                                    poet_rng_u64(out[0], out[1], out[2]));
            }
            double mean = flips / 64.0;
            if (fabs(mean - 32) > fabs(worst - 32))
                worst = mean;
        }
        printf("avalanche: flipping one %s bit flips %.2f output bits at worst (ideal 32)\n",
               names[arg], worst);
        TEST_CHECK(fabs(worst - 32) < 5, "%s bit flips only %.2f of 64 output bits", names[arg],
                   worst);
    }
}

static double correlation(const double *x, const double *y, int n) {
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        mx += x[i] / n;
        my += y[i] / n;
    }
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

/* Neighbouring streams, seeds and counters must look independent (|r| ~ 1/sqrt(n) = 0.01). */
static void test_correlation(void) {
    enum { N = 10000 };
    static double a[N], b[N], c[N], d[N];
    for (int i = 0; i < N; i++) {
        a[i] = poet_rng_uniform(1, POET_STREAM_SHUFFLE, (uint64_t)i);
        b[i] = poet_rng_uniform(1, POET_STREAM_INIT, (uint64_t)i);
        c[i] = poet_rng_uniform(2, POET_STREAM_SHUFFLE, (uint64_t)i);
        d[i] = poet_rng_uniform(1, POET_STREAM_SHUFFLE, (uint64_t)i + 1);
    }
    double r_stream = correlation(a, b, N), r_seed = correlation(a, c, N),
           r_counter = correlation(a, d, N);
    printf("correlation: streams %.4f, seeds %.4f, counters %.4f\n", r_stream, r_seed, r_counter);
    TEST_CHECK(fabs(r_stream) < 0.05, "streams 1 and 2 correlate: %g", r_stream);
    TEST_CHECK(fabs(r_seed) < 0.05, "seeds 1 and 2 correlate: %g", r_seed);
    TEST_CHECK(fabs(r_counter) < 0.05, "counters k and k+1 correlate: %g", r_counter);
}

static int is_permutation(const uint32_t *perm, size_t n) {
    static unsigned char seen[1000];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < n; i++) {
        if (perm[i] >= n || seen[perm[i]])
            return 0;
        seen[perm[i]] = 1;
    }
    return 1;
}

static void test_permutation(void) {
    enum { N = 1000 };
    static uint32_t p0[N], p0again[N], p1[N], q0[N];
    poet_rng_permutation(3, 0, p0, N);
    poet_rng_permutation(3, 0, p0again, N);
    poet_rng_permutation(3, 1, p1, N);
    poet_rng_permutation(4, 0, q0, N);
    TEST_CHECK(is_permutation(p0, N) && is_permutation(p1, N) && is_permutation(q0, N),
               "not a permutation of 0..%d", N - 1);
    TEST_CHECK(memcmp(p0, p0again, sizeof p0) == 0, "repeated call gives another permutation");
    int same_epoch = 0, same_seed = 0, fixed = 0;
    for (int i = 0; i < N; i++) {
        same_epoch += p0[i] == p1[i];
        same_seed += p0[i] == q0[i];
        fixed += p0[i] == (uint32_t)i;
    }
    /* A random pair of permutations agrees in about one place. */
    printf("permutation: epochs 0/1 agree in %d places, seeds 3/4 in %d, %d fixed points\n",
           same_epoch, same_seed, fixed);
    TEST_CHECK(same_epoch < 10, "epochs 0 and 1 agree in %d of %d places", same_epoch, N);
    TEST_CHECK(same_seed < 10, "seeds 3 and 4 agree in %d of %d places", same_seed, N);
    TEST_CHECK(fixed < 10, "%d fixed points: hardly shuffled", fixed);

    uint32_t tiny[2] = {9, 9};
    poet_rng_permutation(3, 0, tiny, 0); /* n = 0 touches nothing */
    TEST_CHECK(tiny[0] == 9, "n = 0 wrote into the array");
    poet_rng_permutation(3, 0, tiny, 1);
    TEST_CHECK(tiny[0] == 0, "n = 1 gives %u, expected 0", (unsigned)tiny[0]);

    /* Where element 0 lands over 5000 epochs of n = 5: uniform over the 5 places (4 dof). */
    long where[5] = {0};
    for (uint64_t e = 0; e < 5000; e++) {
        uint32_t p[5];
        poet_rng_permutation(8, e, p, 5);
        for (int i = 0; i < 5; i++)
            if (p[i] == 0)
                where[i]++;
    }
    double chi2 = 0;
    for (int i = 0; i < 5; i++)
        chi2 += (where[i] - 1000.0) * (where[i] - 1000.0) / 1000.0;
    printf("permutation: chi-square %.2f (4 dof) for the place of element 0\n", chi2);
    TEST_CHECK(chi2 < 30, "chi-square %.2f: element 0 does not land uniformly", chi2);
}

int main(void) {
    test_known_answers();
    test_formula();
    test_uniform();
    test_sequential();
    test_below();
    test_avalanche();
    test_correlation();
    test_permutation();
    return test_finish("rng");
}
