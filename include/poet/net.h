/* net.h — a stack of G members with the same architecture, run with oneDNN primitives.
 *
 * A stack is the unit of computation on a rank. With G = 1 it is one member's network; with G > 1
 * it is the fused form: one set of oneDNN primitives (created once for one member's shapes and the
 * batch) runs for every member on that member's parameters and activations, sharing the images,
 * the layers before the first weight layer and the JIT code. Members run in parallel, one thread
 * each (up to the stack's thread count, poet_stack_options), on single-threaded primitives, so a
 * member's arithmetic is bitwise the same for any G, any thread count and any placement; a G = 1
 * stack uses one thread (why not grouped convolutions over G·C channels: bench/README.md). Linear
 * layers are convolutions whose kernel covers the whole input; convolutions run by default as
 * im2col + sgemm on the member's thread (gemmconv.h), or as oneDNN convolution primitives.
 *
 * Parameters live outside the stack (the rank owns one contiguous buffer for all its stacks so the
 * optimiser is one pass). A stack's parameters are in "stack layout": tensor-major, each tensor
 * holding the G members' copies one after another in member layout order (see arch.h), which is
 * exactly oneDNN's grouped weight layout (goihw) and the G·O bias:
 *   tensor t of member g starts at  G * plan.tensors[t].offset + g * plan.tensors[t].count.
 *
 * Primitives are created once per (shape, batch) in poet_stack_create and reused; user-visible
 * tensors (images, logits, parameters, gradients) are plain; activations stay in the layouts oneDNN
 * prefers and are reordered only at the edges.
 */
#ifndef POET_NET_H
#define POET_NET_H

#include <stddef.h>

#include "poet/arch.h"
#include "poet/error.h"

typedef struct poet_stack poet_stack;

/* Sums x [n] over every stack taking part (poet_stack_options.sync). */
typedef poet_status (*poet_stack_sync_fn)(void *context, double *x, size_t n);

/* How convolution and linear layers run (a linear layer is a convolution whose kernel covers its
 * whole input): as im2col + oneDNN's sgemm (gemmconv.h), or as oneDNN convolution primitives. Both
 * compute the same layers; they round differently. */
typedef enum { POET_CONV_GEMM = 0, POET_CONV_ONEDNN = 1 } poet_convolution;

/* Choices fixed when a stack is created, as oneDNN takes a primitive's attributes at creation:
 * stacks with different options live side by side. Zeroed options (or NULL) are the defaults. */
typedef struct {
    poet_convolution convolution; /* default POET_CONV_GEMM */
    int threads; /* OpenMP threads the stack runs members on, up to min(threads, G); 0: OpenMP's
                  * default at creation (omp_get_max_threads(): OMP_NUM_THREADS, or the cores) */
    /* The members' state (batch normalisation's running statistics): G * plan->state_count
     * floats in stack layout, like the parameters; must stay valid while the stack lives. A
     * training stack's forward normalises with the batch's statistics and updates these (each
     * member its own, PyTorch's momentum 0.1 and unbiased variance); an inference stack
     * normalises with them. NULL when the plan has no batchnorm. */
    float *state;
    /* Synchronised batch normalisation (training stacks with batchnorm; NULL: each stack normalises
     * with its own batch's statistics). Called on the caller's thread between the members'
     * parallel runs, once per batchnorm layer in forward (layer order) and once in backward
     * (reverse order), with n doubles that must come back summed over every stack taking part,
     * each getting the same bits: per member and channel two sums (forward n·mean and
     * n·(var + mean²), backward dL/dweight and dL/dbias), then the elements per channel n. A
     * pass makes all its calls even when it fails part-way (contributing zeros), and
     * poet_stack_skip makes them for a pass not run, so the stacks taking part stay in step. A
     * member then has a lane (its backward buffers) of its own instead of sharing its thread's. */
    poet_stack_sync_fn sync;
    void *sync_context;
} poet_stack_options;

/* `params` and `grads` point to G * plan->param_count floats each, in stack layout; they must stay
 * valid while the stack lives. `training` = 0 creates forward-inference primitives only. */
poet_status poet_stack_create(const poet_arch_plan *plan, int members, int batch, int training,
                              const poet_stack_options *options, float *params, float *grads,
                              poet_stack **out);
void poet_stack_destroy(poet_stack *stack);

/* Where a stack's memory is, in bytes summed over its members and lanes: for bench/stack_time's
 * breakdown and the memory tests. Views of the caller's params, grads and state are not counted. */
typedef struct {
    double dst, src_copy, workspace; /* members' kept outputs, reordered inputs, pooling's maxima */
    double unit_other;               /* members' weight copies and batchnorm statistics */
    double backward_unpooled;        /* the lanes' whole-batch backward buffers, each on its own */
    double pool;                     /* the lanes' pools that hold most of them */
    double lane_private; /* lane buffers outside the pools (unpooled, weights, gemm chunks) */
    double scratchpad, shared_col; /* oneDNN's scratchpads; the first layer's im2col matrices */
} poet_stack_census;
void poet_stack_census_get(const poet_stack *stack, poet_stack_census *census);

int poet_stack_members(const poet_stack *stack); /* G */
int poet_stack_batch(const poet_stack *stack);   /* B */

/* images: [B, C, H, W] plain. logits: [B, G·K] plain — member g's logit k of image b is at
 * logits[b * G·K + g * K + k]. Keeps what backward needs. Forward and backward record one message
 * on failure, naming the member and the step that failed. */
poet_status poet_stack_forward(poet_stack *stack, const float *images, float *logits);

/* dlogits: [B, K] plain, the same gradient for every member (the ensemble's (q̄ - p)/(M·B)).
 * Computes every parameter gradient into `grads` (overwriting, or adding when `accumulate`).
 * Needs the preceding forward of the same batch. */
poet_status poet_stack_backward(poet_stack *stack, const float *dlogits, int accumulate);

/* A forward (backward = 0) or backward pass that this stack does not compute: with synchronised
 * batch normalisation it still makes the pass's exchanges, contributing nothing; otherwise nothing.
 */
poet_status poet_stack_skip(poet_stack *stack, int backward);

/* Copy one member's state between stack layout and member state layout (arch.h). */
void poet_stack_state_get(const poet_arch_plan *plan, int members, const float *stack_buf, int g,
                          float *member_buf);
void poet_stack_state_set(const poet_arch_plan *plan, int members, float *stack_buf, int g,
                          const float *member_buf);

/* Copy one member's parameters between stack layout and member layout. */
void poet_stack_member_get(const poet_arch_plan *plan, int members, const float *stack_buf, int g,
                           float *member_buf);
void poet_stack_member_set(const poet_arch_plan *plan, int members, float *stack_buf, int g,
                           const float *member_buf);

#endif
