/* loss.h — the ensemble loss: softmax of the mean logits, cross entropy, and its gradient.
 *
 * Logits are summed in 64-bit fixed point (POET_FIXED_SCALE units per 1.0) so that the sum is exact
 * and independent of the order in which members, ranks and tree nodes add it up: the trajectory is
 * bitwise the same for any rank count and tree shape.
 */
#ifndef POET_LOSS_H
#define POET_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "poet/error.h"

#define POET_FIXED_BITS 32
/* 2^32: resolution 2.3e-10, far below fp32 logit rounding */
#define POET_FIXED_SCALE 4294967296.0
#define POET_FIXED_LIMIT 1048576.0 /* |logit| must stay below 2^20 so M·2^52 never overflows */

/* acc[b*K + k] += round(logits[b*row_stride + k] * 2^32). Fails with POET_ERR_NUMERIC naming the
 * member when a logit is NaN, infinite or |logit| >= POET_FIXED_LIMIT (a diverged run). */
poet_status poet_loss_add_fixed(int64_t *acc, const float *logits, size_t row_stride, int batch,
                                int classes, int member);

/* mean[b*K + k] = acc[b*K + k] / 2^32 / M. */
void poet_loss_fixed_to_mean(const int64_t *acc, int batch, int classes, int members,
                             double *mean_logits);

/* The joint loss: loss = mean_b -log softmax(mean_logits_b)[label_b] (log-sum-exp stable);
 * *correct = number of b whose argmax equals the label; grad[b*K + k] = (q̄ - p)/(M·B), the gradient
 * every member receives. grad may be NULL (evaluation). */
void poet_loss_joint(const double *mean_logits, const uint8_t *labels, int batch, int classes,
                     int members, float *grad, double *loss, long *correct);

/* The same with the joint term weighted: grad[b*K + k] = beta·(q̄ − p)/(M·B), rounded to float
 * once (beta = 1 gives poet_loss_joint's bits). The blended objective's joint part
 * (docs/objectives.md). */
void poet_loss_joint_weighted(const double *mean_logits, const uint8_t *labels, int batch,
                              int classes, int members, double beta, float *grad, double *loss,
                              long *correct);

/* The same for `batch` rows of a larger batch (a micro-batch, or a group's shard of the batch):
 * grad = beta·(q̄ − p)/denominator with denominator = M·B of the whole batch, and *loss the mean
 * over these rows. poet_loss_joint_weighted is this with denominator members·batch (same bits). */
void poet_loss_joint_rows(const double *mean_logits, const uint8_t *labels, int batch, int classes,
                          double denominator, double beta, float *grad, double *loss,
                          long *correct);

/* A member's own part of the blended gradient, computed by the rank that owns it:
 * grad[b*K + k] = weight·(softmax(f)_b − p_b)/(members·B), weight = 1 − beta. The logits are
 * rounded to the fixed-point grid first, exactly as a one-member ensemble's mean is, so that with
 * weight 1 and members 1 the bits equal a one-member joint run's gradient. */
void poet_loss_member_grad(const float *logits, size_t row_stride, const uint8_t *labels, int batch,
                           int classes, int members, double weight, float *grad);

/* The same with the divisor given whole: weight·(softmax(f) − p)/denominator (M·B of the whole
 * batch when `batch` rows are a part of it). */
void poet_loss_member_grad_rows(const float *logits, size_t row_stride, const uint8_t *labels,
                                int batch, int classes, double denominator, double weight,
                                float *grad);

/* Member dropout: kept[j] = 1 for the members that join iteration `iteration`'s mean, drawn from
 * (seed, iteration) alone so every rank and every resume draws the same subset; each member is left
 * out with probability `rate`, and when all would be, one member drawn uniformly stays. Returns the
 * number kept (>= 1). rate 0 keeps all without drawing. */
int poet_loss_dropout_draw(uint64_t seed, long iteration, int members, double rate,
                           unsigned char *kept);

/* One member's own loss and correct count from its logits (row stride in floats). */
void poet_loss_member(const float *logits, size_t row_stride, const uint8_t *labels, int batch,
                      int classes, double *loss, long *correct);

/* Softmax probabilities of one row (length K), stable. */
void poet_softmax_row(const double *logits, int classes, double *probs);

#endif
