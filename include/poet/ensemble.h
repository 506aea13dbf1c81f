/* ensemble.h — the members one rank owns: placement, their stacks, and one contiguous buffer each
 * for parameters, gradients and momentum (so the optimiser is one fused pass).
 *
 * Members are numbered 0..M-1 globally. A rank's members are kept in ascending order and grouped
 * into stacks: with `fused`, consecutive owned members of the same architecture share one stack (a
 * grouped oneDNN graph); without, every member is a stack of its own. Either way the math is the
 * same.
 */
#ifndef POET_ENSEMBLE_H
#define POET_ENSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#include "poet/arch.h"
#include "poet/config.h"
#include "poet/error.h"
#include "poet/net.h"

/* Training stacks per member stack: one per micro-batch (exact overlap) or 2 (stale mode). */
#define POET_TRAIN_SLOTS 16

typedef struct {
    int arch;            /* architecture index in cfg->archs */
    int first_local;     /* index of its first member among the rank's members */
    int members;         /* G */
    size_t param_offset; /* where its stack-layout parameters start in the rank's buffers */
    size_t state_offset; /* where its stack-layout state starts in the rank's state buffer */
    poet_stack
        *train[POET_TRAIN_SLOTS]; /* training stacks, one per micro-batch in flight (activations) */
    poet_stack *eval;             /* inference stack for evaluation batches */
    float *logits;                /* [B_train, G·K] scratch */
    float *eval_logits;           /* [B_eval, G·K] scratch */
} poet_member_stack;

typedef struct {
    const poet_config *cfg;
    int rank, ranks; /* this rank's member group and the groups (the ranks when P <= M) */
    int shard;       /* its shard in the group (group.h): only shard 0 writes the members out */
    int classes;     /* K */
    int batch;       /* rows per training stack call (B, or B / chunks; of a shard with groups) */
    int eval_batch;
    poet_shape input;
    poet_arch_plan *plans;             /* [cfg->n_archs]; allocated: a plan of 256 layers is
                                        * ~150 KB, too much for an ensemble on the stack */
    int member_rank[POET_MAX_MEMBERS]; /* owner of every member */
    int n_local;
    int local_ids[POET_MAX_MEMBERS]; /* global ids of this rank's members, ascending */
    int n_stacks;
    poet_member_stack *stacks;
    size_t n_params; /* floats in each of the three buffers */
    float *params;   /* every owned member's parameters, stack layout per stack */
    float *grads;
    float *velocity;
    size_t n_state;          /* floats of member state (batchnorm's running stats) */
    float *state;            /* every owned member's state, stack layout per stack */
    int64_t batches_tracked; /* training forwards so far: PyTorch's num_batches_tracked,
                              * the same for every member with batchnorm, every rank */
    double *member_loss;     /* [n_local] last batch's own losses (sum over rows) */
    long *member_correct;    /* [n_local] */
    /* Objectives other than joint, and member dropout, give each member its own logit gradient
     * (docs/objectives.md); such members run one per stack. */
    int per_member;
    unsigned char kept[POET_TRAIN_SLOTS][POET_MAX_MEMBERS]; /* by global id: in the slot's mean */
    int kept_count[POET_TRAIN_SLOTS];
    float *own_grad;         /* [slots][n_local][batch·K] the local part, per_member */
    float *member_grad;      /* [batch·K] scratch: one member's whole gradient */
    poet_stack_sync_fn sync; /* synchronised batch normalisation (NULL: none) */
    void *sync_context;
} poet_ensemble;

/* Owner of every member: explicit map from the config, or block placement (ranks 0..M%P-1 own one
 * more). Fails when P > M, or an explicit rank is >= P, or a rank would own no member. */
poet_status poet_placement(const poet_config *cfg, int ranks, int *member_rank);

/* Builds this rank's members: plans, stacks for `batch` rows (`train_slots` sets of activations:
 * chunks, or 2 in the stale mode) and for `eval_batch` rows, and initial weights from (seed, member
 * id). `sync` (NULL: none) synchronises the training stacks' batch normalisation with the same
 * stacks of other ranks (net.h, poet_stack_options.sync): every rank taking part must then make
 * the same forward and backward calls, or poet_ensemble_skip in their place. */
poet_status poet_ensemble_create(const poet_config *cfg, int rank, int ranks, poet_shape input,
                                 int batch, int train_slots, int eval_batch,
                                 poet_stack_sync_fn sync, void *sync_context, poet_ensemble *e);
void poet_ensemble_destroy(poet_ensemble *e);

/* Draws which members join the mean of the batch in `slot` at `iteration` (member dropout; all of
 * them without it). Every rank draws the same subset. Call before the slot's forward. */
void poet_ensemble_draw(poet_ensemble *e, int slot, long iteration);

/* Forward of every owned member on `images` ([batch, C, H, W]); adds their logits in fixed point
 * into `fixed_sum` ([batch, K], not cleared) and adds each member's own loss (sum over rows) and
 * correct count into member_loss/member_correct. */
poet_status poet_ensemble_forward(poet_ensemble *e, int slot, const float *images,
                                  const uint8_t *labels, int64_t *fixed_sum);

/* Backward of every owned member for the same `grad` ([batch, K]); gradients overwrite, or add.
 * With per_member, a member left out of the slot's mean gets no part of `grad`, and every member
 * adds its own part computed by its forward. */
poet_status poet_ensemble_backward(poet_ensemble *e, int slot, const float *grad, int accumulate);

/* In place of a forward (backward = 0) or backward of `slot` that this rank does not run: the
 * exchanges of synchronised batch normalisation, contributing nothing (nothing without). */
poet_status poet_ensemble_skip(poet_ensemble *e, int slot, int backward);

/* One SGD step over the rank's whole buffer. */
void poet_ensemble_step(poet_ensemble *e, double lr);

/* Inference forward for evaluation: logits of local member i for `rows` images are written to
 * member_logits[i][row][k] ([n_local, eval_batch, K]); fixed_sum as above. */
poet_status poet_ensemble_eval_forward(poet_ensemble *e, const float *images, int rows,
                                       float *member_logits, int64_t *fixed_sum);

/* Where local member i's parameters live: its stack and its index g inside it. */
const poet_member_stack *poet_ensemble_stack_of(const poet_ensemble *e, int local, int *g);

/* Copy local member i's parameters or momentum between the rank's buffer and member layout. */
void poet_ensemble_member_get(const poet_ensemble *e, int local, const float *buffer,
                              float *member);
void poet_ensemble_member_set(poet_ensemble *e, int local, float *buffer, const float *member);

/* Copy local member i's state (member state layout, arch.h) out of or into the rank's buffer. */
void poet_ensemble_state_get(const poet_ensemble *e, int local, float *member_state);
void poet_ensemble_state_set(poet_ensemble *e, int local, const float *member_state);

#endif
