/* netmem.c — which whole-batch buffers share each lane's pool, and a census of a stack's memory.
 *
 * Legend: netimpl.h.
 *
 * Backward: a lane's whole-batch backward buffers (dL/d(input) of each layer, the sums of several
 * readers' gradients, and the reorder copies of gradients and inputs) are written and read within
 * one member's backward, and most of them only for a step or two: a layer's dL/d(input) is born
 * at its backward and dies at its input layer's. The analysis below follows member_backward
 * (net.c) step by step; what each step reads and writes is the backends' (netdnnl.c,
 * netchain.c), taken generously: a step is said to touch every pooled buffer of the layers it
 * runs, so a buffer's life may be longer than it is, never shorter.
 *
 * Forward: in a ResNet, batchnorm's and add's outputs are read only by the relu after them, whose
 * backward reads its own output instead (netdnnl.c), so they die at that relu's forward; a relu's
 * or pooling's copy of its input in its own layout dies within its forward. Those outputs and
 * copies keep a memory in every member's unit, but each forward points it into the running lane's
 * pool (net_pool_forward_views): lanes run members one after another, each member's forward on
 * whichever lane runs it.
 *
 * Both passes share one time line, forward first, so the pool holds the larger of the two. Two
 * buffers share bytes only when their lives do not meet (bufplan.h). Only dense buffers are pooled
 * (no padding in their layout): oneDNN may rely on zeros in a padded area that another buffer
 * sharing the bytes would overwrite. The gemm chains' chunk buffers are not pooled (forward uses
 * them too, for a chain's whole run), and no pooled buffer carries anything from one member's
 * pass to the next.
 */
#include <dnnl.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "netimpl.h"
#include "poet/bufplan.h"
#include "poet/gemmconv.h"

/* Pooled offsets are page-aligned: stronger than oneDNN's own 64-byte allocations, so no kernel
 * meets a pooled buffer at an alignment it would not meet in a buffer of its own. */
#define POOL_ALIGN 4096

/* Whether backward reads a layer's own output: a relu's backward reads it (relu'(x) from
 * relu(x) > 0); batchnorm, add and pooling compute their dL/d(input) without it (max pooling from
 * its workspace), convolutions from their input. */
static int reads_own_output(const net_layer *layer) { return layer->kind == POET_LAYER_RELU; }

/* Whether reader r's backward reads its input as forward left it: relus and pooling run by
 * oneDNN do not (a relu reads its own output), nor does add; batchnorm and weight layers do, and
 * so does anything a gemm chain runs. */
static int reads_input_in_backward(const net_layer *r) {
    if (r->gemm || r->by_chain || r->fused)
        return 1;
    switch (r->kind) {
    case POET_LAYER_ADD:
    case POET_LAYER_RELU:
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        return 0;
    default:
        return 1;
    }
}

/* Layer l's output is read only in forward, by later layers of the same member: batchnorm's and
 * add's before a relu in a ResNet. Only in training (an inference stack keeps a lane's outputs on
 * its first members' units), only past the shared layers, never the logits, nor an output a chain
 * writes in chunks or a fused relu's view. */
static int forward_only_output(const poet_stack *s, int l) {
    const net_layer *layer = &s->layers[l];
    if (!s->training || l < s->first_w || l == s->L - 1 || layer->gemm || layer->by_chain ||
        layer->fused || layer->inner || layer->chain_pool || reads_own_output(layer))
        return 0;
    for (int r = l + 1; r < s->L; r++)
        for (int k = 0; k < s->plan.layers[r].n_inputs; k++)
            if (s->plan.layers[r].inputs[k] == l && reads_input_in_backward(&s->layers[r]))
                return 0;
    return 1;
}

/* Layer l's copy of its input in its own layout is read only by its forward: a relu's or
 * pooling's that oneDNN runs (weight layers' and batchnorm's backward read theirs). */
static int forward_only_input_copy(const poet_stack *s, int l) {
    const net_layer *layer = &s->layers[l];
    return s->training && l >= s->first_w && !layer->fused && !layer->by_chain &&
           (layer->kind == POET_LAYER_RELU || layer->kind == POET_LAYER_AVG_POOL ||
            layer->kind == POET_LAYER_MAX_POOL);
}

const dnnl_memory_desc_t *net_pool_slot_md(const poet_stack *s, int l, int slot) {
    const net_layer *layer = &s->layers[l];
    switch (slot) {
    case NET_POOL_DSRC:
        return layer->needs_dsrc && !layer->folded && !layer->by_chain ? &layer->dsrc_md : NULL;
    case NET_POOL_DSUM:
        return layer->grad_sum.prim ? &layer->dst_md : NULL;
    case NET_POOL_DDST_COPY:
        return layer->ddst_reorder.prim ? &layer->bwd_ddst_md : NULL;
    case NET_POOL_BWDW_SRC_COPY:
        return layer->bwdw_src_reorder.prim ? &layer->bwdw_src_md : NULL;
    case NET_POOL_BWDW_DDST_COPY:
        return layer->bwdw_ddst_reorder.prim ? &layer->bwdw_ddst_md : NULL;
    case NET_POOL_DST:
        return forward_only_output(s, l) ? &layer->dst_md : NULL;
    case NET_POOL_SRC_COPY:
        return layer->src_reorder.prim && forward_only_input_copy(s, l) ? &layer->src_md : NULL;
    default:
        return NULL;
    }
}

dnnl_memory_t *net_pool_slot_mem(net_scratch *x, int slot) {
    dnnl_memory_t *mems[NET_POOL_LANE_SLOTS] = {&x->dsrc, &x->dsum, &x->ddst_copy,
                                                &x->bwdw_src_copy, &x->bwdw_ddst_copy};
    return mems[slot];
}

/* No padding: every byte belongs to an element the primitives write. */
static int dense(const dnnl_memory_desc_t *md) {
    size_t bytes = sizeof(float);
    for (int d = 0; d < md->ndims; d++) {
        if (md->padded_dims[d] != md->dims[d])
            return 0;
        bytes *= (size_t)md->dims[d];
    }
    return md->format_kind == dnnl_blocked && md->data_type == dnnl_f32 &&
           dnnl_memory_desc_get_size(md) == bytes;
}

/* When each (layer, slot) buffer holds data: [first, last] in one time for both passes, forward's
 * layer l at time l and backward's step l (member_backward's loop index) at time 2L - 1 - l, so a
 * buffer of forward and one of backward are never alive together; first > last: never used. */
typedef struct {
    int L;
    int first[POET_MAX_LAYERS][NET_POOL_SLOTS], last[POET_MAX_LAYERS][NET_POOL_SLOTS];
} lives;

static void alive_at(lives *v, int l, int slot, int time) {
    if (time < v->first[l][slot])
        v->first[l][slot] = time;
    if (time > v->last[l][slot])
        v->last[l][slot] = time;
}

/* Backward step `step` writes or reads layer l's buffer in `slot`. */
static void touch(lives *v, int l, int slot, int step) {
    alive_at(v, l, slot, 2 * v->L - 1 - step);
}

/* The buffer net_layer_dnext returns for layer l, touched at `step` (nothing for the dlogits). */
static void touch_dnext(const poet_stack *s, lives *v, int l, int step) {
    const net_layer *layer = &s->layers[l];
    if (l == s->L - 1 || layer->n_readers < 1)
        return;
    if (layer->n_readers > 1)
        touch(v, l, NET_POOL_DSUM, step);
    else if (s->layers[layer->sole_reader].kind == POET_LAYER_ADD)
        touch_dnext(s, v, layer->sole_reader, step);
    else
        touch(v, net_dsrc_owner(s, layer->sole_reader), NET_POOL_DSRC, step);
}

/* Everything layer m's backward may read or write, at `step`. */
static void touch_layer(const poet_stack *s, lives *v, int m, int step) {
    for (int slot = 0; slot < NET_POOL_LANE_SLOTS; slot++)
        touch(v, m, slot, step);
    touch_dnext(s, v, m, step);
}

/* Forward: a pooled output lives from its layer to its last reader, a pooled input copy within its
 * layer (forward runs the layers in index order; a chain's layers use no pooled buffer). */
static void forward_lives(const poet_stack *s, lives *v) {
    for (int l = 0; l < s->L; l++) {
        alive_at(v, l, NET_POOL_SRC_COPY, l);
        alive_at(v, l, NET_POOL_DST, l);
        for (int k = 0; k < s->plan.layers[l].n_inputs; k++)
            if (s->plan.layers[l].inputs[k] >= 0)
                alive_at(v, s->plan.layers[l].inputs[k], NET_POOL_DST, l);
    }
}

/* member_backward's steps, and what each touches. */
static void backward_lives(const poet_stack *s, lives *v) {
    for (int l = s->L - 1; l >= s->first_w; l--) {
        const net_layer *layer = &s->layers[l];
        if (layer->grad_sum.prim) { /* gradient_sum: the readers' shares into dsum */
            touch(v, l, NET_POOL_DSUM, l);
            for (int r = l + 1; r < s->L; r++)
                for (int k = 0; k < s->plan.layers[r].n_inputs; k++)
                    if (s->plan.layers[r].inputs[k] == l) {
                        if (s->layers[r].kind == POET_LAYER_ADD)
                            touch_dnext(s, v, r, l);
                        else
                            touch(v, net_dsrc_owner(s, r), NET_POOL_DSRC, l);
                    }
        }
        if (layer->by_chain || layer->kind == POET_LAYER_ADD)
            continue;
        if (layer->gemm) { /* the whole chain, and the relu and pooling it runs, at this step */
            int top = layer->chain_pool > l ? layer->chain_pool : l;
            for (int m = layer->chain_first; m <= top; m++)
                touch_layer(s, v, m, l);
            l = layer->chain_first;
            continue;
        }
        touch_layer(s, v, l, l);
    }
}

poet_status net_pool_plan(poet_stack *s) {
    poet_status st = POET_OK;
    size_t n_slots = (size_t)s->L * NET_POOL_SLOTS;
    lives *v = NULL;
    poet_buf_life *bufs = NULL;
    size_t *offsets = NULL;
    int *which = NULL;
    POET_ALLOC(s->pool_at, n_slots);
    for (size_t i = 0; i < n_slots; i++)
        s->pool_at[i] = SIZE_MAX;
    s->pool_bytes = 0;
    if (!s->training)
        return POET_OK;
    POET_ALLOC(v, 1);
    POET_ALLOC(bufs, n_slots);
    POET_ALLOC(offsets, n_slots);
    POET_ALLOC(which, n_slots);
    v->L = s->L;
    for (int l = 0; l < s->L; l++)
        for (int slot = 0; slot < NET_POOL_SLOTS; slot++) {
            v->first[l][slot] = INT_MAX;
            v->last[l][slot] = -1;
        }
    forward_lives(s, v);
    backward_lives(s, v);
    int n = 0;
    for (int l = 0; l < s->L; l++)
        for (int slot = 0; slot < NET_POOL_SLOTS; slot++) {
            const dnnl_memory_desc_t *md = net_pool_slot_md(s, l, slot);
            if (!md || !dense(md) || v->first[l][slot] > v->last[l][slot])
                continue; /* absent, padded, or never used: a buffer of its own as before */
            bufs[n] =
                (poet_buf_life){dnnl_memory_desc_get_size(md), v->first[l][slot], v->last[l][slot]};
            which[n++] = l * NET_POOL_SLOTS + slot;
        }
    s->pool_bytes = poet_bufplan_place(n, bufs, POOL_ALIGN, offsets);
    for (int i = 0; i < n; i++)
        s->pool_at[which[i]] = offsets[i];
fail:
    free(v);
    free(bufs);
    free(offsets);
    free(which);
    return st;
}

void *net_pool_place(const poet_stack *s, void *pool, int l, int slot) {
    size_t at = s->pool_at[l * NET_POOL_SLOTS + slot];
    return at == SIZE_MAX || !pool ? NULL : (char *)pool + at;
}

dnnl_status_t net_pool_forward_views(const poet_stack *s, const net_lane *lane, int a, int l) {
    const net_unit *u = &s->units[(size_t)a * s->L + l];
    dnnl_status_t rc = dnnl_success;
    void *dst = net_pool_place(s, lane->pool, l, NET_POOL_DST);
    void *copy = net_pool_place(s, lane->pool, l, NET_POOL_SRC_COPY);
    if (dst)
        rc = dnnl_memory_set_data_handle(u->dst, dst);
    if (copy && rc == dnnl_success)
        rc = dnnl_memory_set_data_handle(u->src_copy, copy);
    return rc;
}

/* ---- census ---------------------------------------------------------------------------------- */

static double mem_bytes(dnnl_memory_t mem) {
    const dnnl_memory_desc_t *md = NULL;
    if (!mem || dnnl_memory_get_memory_desc(mem, &md) != dnnl_success)
        return 0;
    return (double)dnnl_memory_desc_get_size(md);
}

void poet_stack_census_get(const poet_stack *s, poet_stack_census *c) {
    *c = (poet_stack_census){0};
    for (int g = 0; g < s->G; g++)
        for (int l = 0; l < s->L; l++) {
            const net_layer *layer = &s->layers[l];
            const net_unit *u = &s->units[(size_t)g * s->L + l];
            /* a fused relu's output is a view of its input; pooled ones are the lanes' */
            if (!layer->fused && s->pool_at[l * NET_POOL_SLOTS + NET_POOL_DST] == SIZE_MAX)
                c->dst += mem_bytes(u->dst);
            if (s->pool_at[l * NET_POOL_SLOTS + NET_POOL_SRC_COPY] == SIZE_MAX)
                c->src_copy += mem_bytes(u->src_copy);
            c->workspace += mem_bytes(u->workspace);
            c->unit_other += mem_bytes(u->w_copy);
            if (s->training) /* an inference stack's statistics are views of the state */
                c->unit_other += mem_bytes(u->bn_mean) + mem_bytes(u->bn_var);
            if (u->w_gemm)
                c->unit_other +=
                    sizeof(float) * (double)poet_gemmconv_weights_floats(&layer->shape);
            if (u->relu_mask)
                c->unit_other += (double)s->B * layer->shape.out_h * layer->shape.out_w *
                                 (double)layer->shape.out_c;
        }
    for (int i = 0; i < s->n_lanes; i++) {
        const net_lane *lane = &s->lanes[i];
        for (int l = 0; l < s->L; l++) {
            net_scratch *x = &lane->layers[l];
            for (int slot = 0; slot < NET_POOL_LANE_SLOTS; slot++) {
                double bytes = mem_bytes(*net_pool_slot_mem(x, slot));
                c->backward_unpooled += bytes;
                if (s->pool_at[l * NET_POOL_SLOTS + slot] == SIZE_MAX)
                    c->lane_private += bytes;
            }
            c->lane_private += mem_bytes(x->bwd_w_copy) + mem_bytes(x->dw);
        }
        c->lane_private += (double)s->chain_bytes;
        c->pool += (double)s->pool_bytes;
        c->scratchpad += (double)s->scratchpad_size;
        if (lane->shared_col)
            c->shared_col += sizeof(float) *
                             (double)poet_gemmconv_rows(&s->layers[s->first_w].shape) *
                             (double)poet_gemmconv_width(&s->layers[s->first_w].shape);
    }
}

/* ---- the gemm chains' lane buffers ----------------------------------------------------------- */

void net_gemm_scratch_floats(const poet_stack *s, int l, size_t floats[NET_GEMM_BUFS]) {
    const net_layer *layer = &s->layers[l];
    for (int k = 0; k < NET_GEMM_BUFS; k++)
        floats[k] = 0;
    if (!layer->gemm)
        return;
    poet_conv_shape chunk = net_chunk_shape(layer, layer->chunk);
    size_t rows = poet_gemmconv_rows(&chunk);
    if (!layer->shared_col)
        floats[NET_GEMM_COL] = rows * poet_gemmconv_width(&chunk);
    if (layer->needs_dsrc)
        floats[NET_GEMM_DCOL] = rows * poet_gemmconv_cols(&chunk);
    if (layer->inner || layer->chain_pool)
        floats[NET_GEMM_CHUNK_OUT] = rows * (size_t)layer->shape.out_c;
    if (s->training)
        floats[NET_GEMM_DW] = poet_gemmconv_width(&layer->shape) * layer->shape.out_c;
    if (s->training && layer->chain_pool)
        floats[NET_GEMM_CHUNK_DDST] = rows * (size_t)layer->shape.out_c;
}

/* A chain's buffers (im2col matrices, their gradients, chunk outputs and gradients, dL/dW sums)
 * hold data only while that chain runs, in forward or in backward: nothing in them outlives the
 * chain's step (backward rebuilds every chunk's matrices and recomputes inner outputs, and hands
 * its gradients out before the step ends), and chains run one at a time on a lane. So the chains
 * share one arena per lane, each laid out from offset 0; the chain's own buffers never overlap. */
poet_status net_chain_arena_plan(poet_stack *s) {
    poet_status st = POET_OK;
    size_t n_slots = (size_t)s->L * NET_GEMM_BUFS;
    POET_ALLOC(s->chain_at, n_slots);
    for (size_t i = 0; i < n_slots; i++)
        s->chain_at[i] = SIZE_MAX;
    s->chain_bytes = 0;
    for (int l = 0; l < s->L; l++) {
        if (!s->layers[l].gemm || s->layers[l].chain_first != l)
            continue;
        size_t at = 0;
        for (int m = l; m <= s->layers[l].chain_last; m++) {
            size_t floats[NET_GEMM_BUFS];
            net_gemm_scratch_floats(s, m, floats);
            for (int k = 0; k < NET_GEMM_BUFS; k++)
                if (floats[k] > 0) {
                    s->chain_at[m * NET_GEMM_BUFS + k] = at;
                    at += (floats[k] * sizeof(float) + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN;
                }
        }
        s->chain_bytes = at > s->chain_bytes ? at : s->chain_bytes;
    }
fail:
    return st;
}
