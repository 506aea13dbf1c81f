/* test_metrics.c — accuracy, NLL, Brier score and 15-bin ECE against values computed by hand on
 * four fixed predictions; the bins' edges; merging partial sums; the chance threshold; and the
 * diversity of a mean of logits (mean member CE − ensemble CE) never negative. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "poet/loss.h"
#include "poet/metrics.h"
#include "poet/rng.h"
#include "testutil.h"

#define K 3

/* Four predictions chosen away from bin edges:
 *   p = (0.70, 0.20, 0.10), y 0: right, confidence 0.70 (bin 10), Brier .09+.04+.01 = 0.14
 *   p = (0.20, 0.50, 0.30), y 2: wrong, confidence 0.50 (bin 7),  Brier .04+.25+.49 = 0.78
 *   p = (0.68, 0.22, 0.10), y 0: right, confidence 0.68 (bin 10), Brier .1024+.0484+.01 = 0.1608
 *   p = (0.25, 0.42, 0.33), y 1: right, confidence 0.42 (bin 6),  Brier .0625+.3364+.1089 = 0.5078
 * ECE = (|2 − 1.38| + |0 − 0.5| + |1 − 0.42|) / 4 = 1.7 / 4 = 0.425. */
static const double P[4][K] = {
    {0.70, 0.20, 0.10}, {0.20, 0.50, 0.30}, {0.68, 0.22, 0.10}, {0.25, 0.42, 0.33}};
static const int Y[4] = {0, 2, 0, 1};

static void test_hand(void) {
    poet_metrics m, half1, half2;
    memset(&m, 0, sizeof m);
    memset(&half1, 0, sizeof half1);
    memset(&half2, 0, sizeof half2);
    for (int n = 0; n < 4; n++) {
        poet_metrics_add(&m, P[n], K, Y[n]);
        poet_metrics_add(n < 2 ? &half1 : &half2, P[n], K, Y[n]);
    }
    double got[4] = {poet_metrics_accuracy(&m), poet_metrics_nll(&m), poet_metrics_brier(&m),
                     poet_metrics_ece(&m)};
    double want[4] = {0.75, -(log(0.7) + log(0.3) + log(0.68) + log(0.42)) / 4,
                      (0.14 + 0.78 + 0.1608 + 0.5078) / 4, 0.425};
    test_compare_f64("accuracy, nll, brier, ece (hand)", got, want, 4, 1e-12, 1e-12);
    TEST_CHECK(m.bin_count[10] == 2 && m.bin_count[7] == 1 && m.bin_count[6] == 1,
               "bins: 10 holds %g, 7 %g, 6 %g; expected 2, 1, 1", m.bin_count[10], m.bin_count[7],
               m.bin_count[6]);
    poet_metrics_merge(&half1, &half2);
    TEST_CHECK(memcmp(&half1, &m, sizeof m) == 0 || fabs(poet_metrics_ece(&half1) - 0.425) < 1e-12,
               "merged halves differ from the whole");
    test_compare_f64("merged halves' ece", (double[]){poet_metrics_ece(&half1)}, &want[3], 1, 1e-12,
                     1e-12);
    /* A perfectly calibrated, perfectly confident prediction: Brier 0, ECE 0. */
    poet_metrics sure;
    memset(&sure, 0, sizeof sure);
    double one[K] = {0, 1, 0};
    poet_metrics_add(&sure, one, K, 1);
    TEST_CHECK(poet_metrics_brier(&sure) == 0 && poet_metrics_ece(&sure) == 0 &&
                   poet_metrics_accuracy(&sure) == 1,
               "a sure right prediction: brier %g ece %g", poet_metrics_brier(&sure),
               poet_metrics_ece(&sure));
    /* From logits: softmax(ln 0.7, ln 0.2, ln 0.1) = P[0]. */
    poet_metrics from_logits, from_probs;
    memset(&from_logits, 0, sizeof from_logits);
    memset(&from_probs, 0, sizeof from_probs);
    float logits[K] = {(float)log(0.7), (float)log(0.2), (float)log(0.1)};
    poet_metrics_add_logits(&from_logits, logits, K, 0);
    poet_metrics_add(&from_probs, P[0], K, 0);
    test_compare_f64("brier from logits", (double[]){poet_metrics_brier(&from_logits)},
                     (double[]){poet_metrics_brier(&from_probs)}, 1, 1e-7, 1e-6);
}

/* Bin b holds confidences in (b/15, (b+1)/15]. */
static void test_bins(void) {
    struct {
        double c;
        int bin;
    } cases[] = {{0.0, 0}, {0.01, 0}, {0.1, 1}, {0.5, 7}, {0.7, 10}, {0.99, 14}, {1.0, 14}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        TEST_CHECK(poet_metrics_bin(cases[i].c) == cases[i].bin,
                   "confidence %g in bin %d, expected %d", cases[i].c, poet_metrics_bin(cases[i].c),
                   cases[i].bin);
    double t = poet_metrics_chance_threshold(10, 10000);
    test_compare_f64("chance threshold K=10 N=10000 (0.1 + 3·0.003)", &t, (double[]){0.109}, 1,
                     1e-12, 1e-12);
}

/* CE is convex in the logits (log-sum-exp is convex, the label term linear), so by Jensen the CE of
 * the mean logits is at most the mean of the members' CEs: the diversity is never negative. */
static void test_diversity_nonnegative(void) {
    enum { M = 5, B = 4, C = 10, CASES = 500 };
    float logits[M][B * C];
    uint8_t labels[B];
    int negative = 0;
    double least = INFINITY;
    for (int t = 0; t < CASES; t++) {
        int64_t acc[B * C] = {0};
        double mean[B * C], ensemble, member_sum = 0;
        long correct;
        for (int b = 0; b < B; b++)
            labels[b] = (uint8_t)(poet_rng_u64(9, POET_STREAM_TEST, (uint64_t)t * 64 + b) % C);
        for (int j = 0; j < M; j++) {
            for (int i = 0; i < B * C; i++)
                logits[j][i] =
                    (float)((poet_rng_uniform(9, POET_STREAM_TEST,
                                              1000000 + ((uint64_t)t * M + j) * B * C + i) -
                             0.5) *
                            (t % 10 + 1) * 4);
            TEST_OK(poet_loss_add_fixed(acc, logits[j], C, B, C, j));
            double loss;
            poet_loss_member(logits[j], C, labels, B, C, &loss, &correct);
            member_sum += loss;
        }
        poet_loss_fixed_to_mean(acc, B, C, M, mean);
        poet_loss_joint(mean, labels, B, C, M, NULL, &ensemble, &correct);
        double diversity = member_sum / M - ensemble;
        least = fmin(least, diversity);
        negative += diversity < -1e-9; /* fixed-point rounding of the mean: 2^-32 per logit */
    }
    printf("diversity over %d random ensembles: least %.3g\n", CASES, least);
    TEST_CHECK(negative == 0, "%d of %d ensembles had a negative diversity", negative, CASES);
}

int main(void) {
    test_hand();
    test_bins();
    test_diversity_nonnegative();
    return test_finish("metrics");
}
