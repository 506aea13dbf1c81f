/* metrics.h — the metrics ensemble papers report, accumulated one prediction at a time:
 * accuracy, NLL, Brier score and expected calibration error (docs/objectives.md).
 *
 * A poet_metrics holds only sums (every field a double), so partial metrics of disjoint images or
 * of different members add up elementwise (MPI_SUM over the whole struct as doubles).
 */
#ifndef POET_METRICS_H
#define POET_METRICS_H

#include <stdint.h>

#define POET_ECE_BINS                                                                              \
    15 /* equal-width confidence bins: bin b holds confidences in (b/15, (b+1)/15] */

typedef struct {
    double images;                        /* N */
    double correct;                       /* argmax = label */
    double nll;                           /* Σ −log p[label] */
    double brier;                         /* Σ_n Σ_k (p_k − [k = label])² */
    double bin_count[POET_ECE_BINS];      /* images whose confidence (max p) falls in the bin */
    double bin_confidence[POET_ECE_BINS]; /* Σ confidence in the bin */
    double bin_correct[POET_ECE_BINS];    /* Σ correct in the bin */
} poet_metrics;

#define POET_METRICS_DOUBLES ((int)(sizeof(poet_metrics) / sizeof(double)))

/* The bin of a confidence c in [0, 1]: ceil(15·c) − 1, clamped to 0..14. */
int poet_metrics_bin(double confidence);

/* Adds one prediction: probabilities probs[0..K) (summing to 1) for an image of class `label`.
 * The predicted class is the first maximum (ties to the lowest index, as everywhere in poet). */
void poet_metrics_add(poet_metrics *m, const double *probs, int classes, int label);

/* Adds one prediction given as logits (softmax taken here, in double). */
void poet_metrics_add_logits(poet_metrics *m, const float *logits, int classes, int label);

/* Elementwise a += b. */
void poet_metrics_merge(poet_metrics *a, const poet_metrics *b);

/* The means over the images (0 for an empty struct). ECE = Σ_b (n_b / N)·|acc_b − conf_b|. */
double poet_metrics_accuracy(const poet_metrics *m);
double poet_metrics_nll(const poet_metrics *m);
double poet_metrics_brier(const poet_metrics *m);
double poet_metrics_ece(const poet_metrics *m);

/* Chance level for member health: a member at or below 1/K + 3·sqrt((1/K)(1 − 1/K)/N) — three
 * standard errors above what guessing a class uniformly scores on N images — is "at chance". */
double poet_metrics_chance_threshold(int classes, double images);

#endif
