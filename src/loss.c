/* loss.c — the ensemble loss: fixed-point sum of the members' logits, softmax of the mean, cross
 * entropy and the gradient every member receives.
 *
 * Legend: B = batch, K = classes, M = members.
 *
 * Why fixed point: floating-point addition is not associative, so a sum over members would depend
 * on how ranks and tree nodes group it. Each logit is rounded once to an integer number of 2^-32
 * units; integer addition is exact and associative, so every grouping gives the same bits.
 * |logit| < 2^20 keeps each term below 2^52 and the sum of up to 2^11 members below 2^63.
 */
#include "poet/loss.h"

#include <math.h>

#include "poet/rng.h"

poet_status poet_loss_add_fixed(int64_t *acc, const float *logits, size_t row_stride, int batch,
                                int classes, int member) {
    poet_status st = POET_OK;
    for (int b = 0; b < batch; b++)
        for (int k = 0; k < classes; k++) {
            double v = logits[(size_t)b * row_stride + k];
            /* Also catches NaN: every comparison with NaN is false. */
            if (!(fabs(v) < POET_FIXED_LIMIT))
                POET_FAIL(POET_ERR_NUMERIC,
                          "member %d: logit [%d][%d] = %g is NaN, infinite or |logit| >= %g: the "
                          "member has diverged (lower the learning rate)",
                          member, b, k, v, POET_FIXED_LIMIT);
            /* llrint rounds to nearest even: exact in double since |v·2^32| < 2^52. */
            acc[(size_t)b * classes + k] += (int64_t)llrint(v * POET_FIXED_SCALE);
        }
fail:
    return st;
}

void poet_loss_fixed_to_mean(const int64_t *acc, int batch, int classes, int members,
                             double *mean_logits) {
    size_t n = (size_t)batch * classes;
    for (size_t i = 0; i < n; i++)
        mean_logits[i] = (double)acc[i] / POET_FIXED_SCALE / members;
}

void poet_softmax_row(const double *logits, int classes, double *probs) {
    double top = logits[0];
    for (int k = 1; k < classes; k++)
        top = fmax(top, logits[k]);
    double z = 0;
    for (int k = 0; k < classes; k++) {
        probs[k] = exp(logits[k] - top); /* <= 1: no overflow whatever the logits' scale */
        z += probs[k];
    }
    for (int k = 0; k < classes; k++)
        probs[k] /= z;
}

/* log Σ_k exp(row[k]), shifted by the maximum so that it neither overflows nor underflows. */
static double log_sum_exp(const double *row, int classes) {
    double top = row[0];
    for (int k = 1; k < classes; k++)
        top = fmax(top, row[k]);
    double z = 0;
    for (int k = 0; k < classes; k++)
        z += exp(row[k] - top);
    return top + log(z);
}

/* The first maximum wins, so ties resolve to the lowest class index everywhere. */
static int argmax_row_f64(const double *row, int classes) {
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (row[k] > row[best])
            best = k;
    return best;
}

void poet_loss_joint(const double *mean_logits, const uint8_t *labels, int batch, int classes,
                     int members, float *grad, double *loss, long *correct) {
    poet_loss_joint_weighted(mean_logits, labels, batch, classes, members, 1.0, grad, loss,
                             correct);
}

void poet_loss_joint_weighted(const double *mean_logits, const uint8_t *labels, int batch,
                              int classes, int members, double beta, float *grad, double *loss,
                              long *correct) {
    poet_loss_joint_rows(mean_logits, labels, batch, classes, (double)members * batch, beta, grad,
                         loss, correct);
}

void poet_loss_joint_rows(const double *mean_logits, const uint8_t *labels, int batch, int classes,
                          double denominator, double beta, float *grad, double *loss,
                          long *correct) {
    double total = 0;
    long hits = 0;
    double scale = 1.0 / denominator;
    for (int b = 0; b < batch; b++) {
        const double *row = mean_logits + (size_t)b * classes; /* [K] */
        double lse = log_sum_exp(row, classes);
        total += lse - row[labels[b]];
        hits += argmax_row_f64(row, classes) == labels[b];
        if (!grad)
            continue;
        /* dL/df_jb = (softmax(mean)_b − onehot(label_b)) / (M·B), identical for every member j. */
        for (int k = 0; k < classes; k++) {
            double q = exp(row[k] - lse);
            /* beta = 1: the multiplication is exact, so the joint objective keeps its bits. */
            grad[(size_t)b * classes + k] = (float)(beta * ((q - (k == labels[b])) * scale));
        }
    }
    if (loss)
        *loss = total / batch;
    if (correct)
        *correct = hits;
}

void poet_loss_member(const float *logits, size_t row_stride, const uint8_t *labels, int batch,
                      int classes, double *loss, long *correct) {
    double total = 0;
    long hits = 0;
    for (int b = 0; b < batch; b++) {
        const float *row = logits + (size_t)b * row_stride; /* [K] */
        int best = 0; /* first maximum: ties go to the lowest class index */
        for (int k = 1; k < classes; k++)
            if (row[k] > row[best])
                best = k;
        double top = row[best], z = 0;
        for (int k = 0; k < classes; k++)
            z += exp((double)row[k] - top);
        total += top + log(z) - (double)row[labels[b]];
        hits += best == labels[b];
    }
    if (loss)
        *loss = batch ? total / batch : 0;
    if (correct)
        *correct = hits;
}

/* A logit as the fixed-point sum of a one-member ensemble gives it back: rounded to 2^-32. */
static double on_fixed_grid(float v) {
    return (double)(int64_t)llrint((double)v * POET_FIXED_SCALE) / POET_FIXED_SCALE;
}

void poet_loss_member_grad(const float *logits, size_t row_stride, const uint8_t *labels, int batch,
                           int classes, int members, double weight, float *grad) {
    poet_loss_member_grad_rows(logits, row_stride, labels, batch, classes, (double)members * batch,
                               weight, grad);
}

void poet_loss_member_grad_rows(const float *logits, size_t row_stride, const uint8_t *labels,
                                int batch, int classes, double denominator, double weight,
                                float *grad) {
    double scale = 1.0 / denominator;
    for (int b = 0; b < batch; b++) {
        const float *row = logits + (size_t)b * row_stride; /* [K] */
        /* The same operations in the same order as log_sum_exp over a mean row. */
        double top = on_fixed_grid(row[0]);
        for (int k = 1; k < classes; k++)
            top = fmax(top, on_fixed_grid(row[k]));
        double z = 0;
        for (int k = 0; k < classes; k++)
            z += exp(on_fixed_grid(row[k]) - top);
        double lse = top + log(z);
        for (int k = 0; k < classes; k++) {
            double q = exp(on_fixed_grid(row[k]) - lse);
            grad[(size_t)b * classes + k] = (float)(weight * ((q - (k == labels[b])) * scale));
        }
    }
}

int poet_loss_dropout_draw(uint64_t seed, long iteration, int members, double rate,
                           unsigned char *kept) {
    int count = 0;
    /* Counters: iteration in the high bits, the member (< 2^11) below; 2^11 draws the survivor. */
    uint64_t base = (uint64_t)iteration << 12;
    for (int j = 0; j < members; j++) {
        kept[j] = rate <= 0 || poet_rng_uniform(seed, POET_STREAM_DROPOUT, base + j) >= rate;
        count += kept[j];
    }
    if (count == 0) {
        kept[poet_rng_u64(seed, POET_STREAM_DROPOUT, base + 2048) % (uint64_t)members] = 1;
        count = 1;
    }
    return count;
}
