/* reference.h — a naive, obviously-correct plain-C double-precision network and joint loss.
 *
 * The oracle the oneDNN path and the trainer are held against: loops straight from the layer
 * definitions, no blocking, no layouts. One member, member layout parameters (arch.h).
 */
#ifndef POET_REFERENCE_H
#define POET_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "poet/arch.h"

/* Activations of every layer, kept by forward for backward. */
typedef struct poet_ref_cache poet_ref_cache;

poet_ref_cache *poet_ref_cache_create(const poet_arch_plan *plan, int batch);
void poet_ref_cache_destroy(poet_ref_cache *cache);

/* Batch normalisation's mode and running statistics for the next forward and backward: `train` = 1
 * normalises with the batch's statistics (biased variance) and updates the running statistics in
 * `state` (PyTorch: momentum 0.1, unbiased variance); 0 normalises with them. `state` is member
 * state layout (arch.h), NULL when the plan has no batchnorm. Both default to 0 / NULL: a plan
 * with batchnorm needs a state. */
void poet_ref_set_state(poet_ref_cache *cache, double *state, int train);

/* x: [B, C, H, W]; logits: [B, K]. */
void poet_ref_forward(const poet_arch_plan *plan, const double *params, int batch, const double *x,
                      double *logits, poet_ref_cache *cache);

/* dlogits: [B, K]; dparams (member layout) is overwritten; dx ([B,C,H,W]) may be NULL. */
void poet_ref_backward(const poet_arch_plan *plan, const double *params, int batch,
                       const double *dlogits, poet_ref_cache *cache, double *dparams, double *dx);

/* The joint loss of M members' logits ([M][B][K]): mean over the batch of
 * -log softmax(mean_j logits_j)[label]. Returns the loss; when dlogits ([M][B][K]) is not NULL it
 * receives dL/dlogits_j, derived end to end through the mean ("single graph"). */
double poet_ref_joint_loss(const double *logits, int members, int batch, int classes,
                           const uint8_t *labels, double *dlogits);

/* The blended objective (docs/objectives.md) of M members' logits ([M][B][K]):
 * beta · joint loss + (1 − beta) · mean over members of each member's own cross entropy. dlogits
 * ([M][B][K], may be NULL) receives dL/dlogits_j, derived term by term. */
double poet_ref_blend_loss(const double *logits, int members, int batch, int classes,
                           const uint8_t *labels, double beta, double *dlogits);

#endif
