/* metrics.c — accuracy, NLL, Brier score and 15-bin expected calibration error as sums. */
#include "poet/metrics.h"

#include <math.h>
#include <string.h>

#include "poet/loss.h"

int poet_metrics_bin(double confidence) {
    int b = (int)ceil(confidence * POET_ECE_BINS) - 1;
    return b < 0 ? 0 : b >= POET_ECE_BINS ? POET_ECE_BINS - 1 : b;
}

void poet_metrics_add(poet_metrics *m, const double *probs, int classes, int label) {
    int best = 0;
    double brier = 0;
    for (int k = 0; k < classes; k++) {
        if (probs[k] > probs[best])
            best = k;
        double d = probs[k] - (k == label);
        brier += d * d;
    }
    double correct = best == label;
    int b = poet_metrics_bin(probs[best]);
    m->images += 1;
    m->correct += correct;
    /* A probability that underflowed to 0 would give +inf: the smallest normal double instead. */
    m->nll -= log(fmax(probs[label], 2.2250738585072014e-308));
    m->brier += brier;
    m->bin_count[b] += 1;
    m->bin_confidence[b] += probs[best];
    m->bin_correct[b] += correct;
}

void poet_metrics_add_logits(poet_metrics *m, const float *logits, int classes, int label) {
    double row[256], probs[256]; /* classes <= 256: labels are bytes */
    for (int k = 0; k < classes; k++)
        row[k] = logits[k];
    poet_softmax_row(row, classes, probs);
    poet_metrics_add(m, probs, classes, label);
}

void poet_metrics_merge(poet_metrics *a, const poet_metrics *b) {
    double *x = (double *)a;
    const double *y = (const double *)b;
    for (int i = 0; i < POET_METRICS_DOUBLES; i++)
        x[i] += y[i];
}

double poet_metrics_accuracy(const poet_metrics *m) {
    return m->images > 0 ? m->correct / m->images : 0;
}

double poet_metrics_nll(const poet_metrics *m) { return m->images > 0 ? m->nll / m->images : 0; }

double poet_metrics_brier(const poet_metrics *m) {
    return m->images > 0 ? m->brier / m->images : 0;
}

double poet_metrics_ece(const poet_metrics *m) {
    double ece = 0;
    for (int b = 0; b < POET_ECE_BINS; b++)
        if (m->bin_count[b] > 0)
            ece += fabs(m->bin_correct[b] - m->bin_confidence[b]); /* n_b·|acc_b − conf_b| */
    return m->images > 0 ? ece / m->images : 0;
}

double poet_metrics_chance_threshold(int classes, double images) {
    double p = 1.0 / classes;
    return p + 3.0 * sqrt(p * (1 - p) / (images > 0 ? images : 1));
}
