/* net.c — a stack of G same-architecture members: the layers in order, every buffer, and the
 * threads that run the members.
 *
 * Legend: netimpl.h. The oneDNN backend is netdnnl.c, the gemm-chain backend netchain.c; this
 * file decides which runs each layer, creates everything in forward order, and runs the members.
 *
 * Layer l maps activation a_l to a_{l+1}. Every layer's primitives are created once, for one
 * member's shapes and the fixed batch, and run once per member on that member's memories: the G
 * members share primitives (JIT code), the one copy of the images, and every layer before the
 * first weight layer (it sees only the images, so it is computed once).
 *
 * Threads: members run in parallel, one OpenMP thread each ("lanes"), and every primitive is
 * created for and run on a single thread. So a member's arithmetic is bitwise the same for any G,
 * any thread count and any placement of members on ranks, and two threads on two cores do twice
 * the work (oneDNN threading each small layer instead scaled worse). A lane owns a stream, a
 * scratchpad and the transient buffers its members take turns with, the whole-batch ones in one
 * pool shared by liveness and the gemm chains' in one arena (netmem.c). A stack of G members
 * uses at most G threads: fuse members (G >= threads) to use every core. The thread count and the
 * convolution algorithm are the stack's own, fixed at creation (poet_stack_options).
 *
 * Why not one grouped convolution over G·C channels (the first design), and the other layouts and
 * kernels that were measured and not kept: bench/README.md, "Tried and not kept".
 *
 * Everything, oneDNN scratchpads included, is allocated in poet_stack_create: forward and
 * backward allocate nothing.
 */
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask */
#include "poet/net.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netimpl.h"
#include "poet/dnnlerror.h"
#include "poet/gemmconv.h"

/* Every layer's primitives, in forward order: each layer learns its input's layout from the one
 * before it (the images are plain). */
static poet_status layers_create(poet_stack *s) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t images_md;
    POET_TRY(net_activation_md(&images_md, s->B, s->plan.input.c, s->plan.input.h, s->plan.input.w,
                               dnnl_nchw));
    for (int l = 0; l < s->L; l++) {
        net_layer *layer = &s->layers[l];
        const poet_layer_plan *lp = &s->plan.layers[l];
        layer->kind = lp->kind;
        layer->input = lp->inputs[0];
        layer->sole_reader = -1;
        /* dL/d(input) only where the input depends on weights: past the first weight layer. An
         * add passes its gradient on as it is and computes none. */
        layer->needs_dsrc = s->training && layer->input >= s->first_w && lp->kind != POET_LAYER_ADD;
        if (lp->kind == POET_LAYER_BATCHNORM) /* its one backward primitive computes it anyway */
            layer->needs_dsrc = s->training;
        if (poet_arch_has_params(lp->kind)) {
            const poet_tensor_info *tw = &s->plan.tensors[lp->weight_tensor];
            layer->w_offset = tw->offset;
            layer->w_count = tw->count;
            if (lp->has_bias) { /* else b_count 0: no bias memories, no bias in the primitives */
                layer->b_offset = tw[1].offset;
                layer->b_count = tw[1].count;
            }
        }
    }
    for (int l = 0; l < s->L; l++) {
        const poet_layer_plan *lp = &s->plan.layers[l];
        for (int k = 0; k < lp->n_inputs; k++)
            if (lp->inputs[k] >= 0) {
                net_layer *in = &s->layers[lp->inputs[k]];
                in->sole_reader = in->n_readers++ ? -1 : l;
            }
    }
    /* relu right after a weight layer, its only reader, becomes that layer's post-op. */
    for (int l = s->first_w; l + 1 < s->L; l++)
        if (is_weight_layer(s->layers[l].kind) && s->layers[l + 1].kind == POET_LAYER_RELU &&
            s->layers[l].sole_reader == l + 1)
            s->layers[l].relu_after = s->layers[l + 1].fused = 1;
    for (int l = 0; l < s->L; l++)
        s->layers[l].gemm = s->conv_gemm && is_weight_layer(s->layers[l].kind);
    /* Layouts first: relu and pooling look ahead to the weight layer they feed. */
    for (int l = 0; l < s->L; l++)
        if (is_weight_layer(s->layers[l].kind))
            s->layers[l].tag = net_activation_tag(s, l);
    for (int l = 0; l < s->L; l++) {
        const poet_layer_plan *lp = &s->plan.layers[l];
        int input = s->layers[l].input;
        const dnnl_memory_desc_t *in_md = input < 0 ? &images_md : &s->layers[input].dst_md;
        switch (lp->kind) {
        case POET_LAYER_CONV:
        case POET_LAYER_LINEAR:
            POET_TRY(s->layers[l].gemm ? net_gemm_conv_create(s, l, in_md)
                                       : net_conv_create(s, l, in_md));
            break;
        case POET_LAYER_RELU:
            POET_TRY(net_relu_create(s, l, in_md));
            break;
        case POET_LAYER_AVG_POOL:
        case POET_LAYER_MAX_POOL:
            POET_TRY(net_pool_create(s, l, in_md));
            break;
        case POET_LAYER_ADD:
            POET_TRY(net_add_create(s, l));
            break;
        case POET_LAYER_BATCHNORM:
            POET_TRY(net_batchnorm_create(s, l, in_md));
            break;
        default:
            POET_FAIL(POET_ERR_INTERNAL, "net.c: layer %d has unknown kind %d", l, lp->kind);
        }
    }
    net_fold_relus(s);
fail:
    return st;
}

/* [C] plain views for a batchnorm layer's parameters, gradients and statistics. */
static poet_status batchnorm_unit_create(poet_stack *s, int g, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_memory_desc_t c_md;
    dnnl_dims_t dims = {lp->out.c};
    POET_DNNL(dnnl_memory_desc_init_by_tag(&c_md, 1, dims, dnnl_f32, dnnl_x));
    size_t w_at = (size_t)s->G * layer->w_offset + (size_t)g * layer->w_count;
    size_t b_at = (size_t)s->G * layer->b_offset + (size_t)g * layer->b_count;
    POET_TRY(net_memory_new(s, &c_md, s->params + w_at, &u->user_w));
    POET_TRY(net_memory_new(s, &c_md, s->params + b_at, &u->user_b));
    if (s->training) {
        POET_TRY(net_memory_new(s, &c_md, s->grads + w_at, &u->grad_w));
        POET_TRY(net_memory_new(s, &c_md, s->grads + b_at, &u->grad_b));
        POET_TRY(net_memory_new(s, &c_md, NULL, &u->bn_mean));
        POET_TRY(net_memory_new(s, &c_md, NULL, &u->bn_var));
    } else {
        const poet_tensor_info *rm = &s->plan.states[lp->state_tensor];
        POET_TRY(net_memory_new(s, &c_md, s->state + (size_t)s->G * rm->offset + g * rm->count,
                                &u->bn_mean));
        POET_TRY(net_memory_new(s, &c_md, s->state + (size_t)s->G * rm[1].offset + g * rm[1].count,
                                &u->bn_var));
    }
fail:
    return st;
}

/* Member g's memories for layer l: activations kept for backward and views of its parameters.
 * An inference stack keeps nothing for backward: members 0..T-1 hold the activations that each
 * lane's members take turns with (activation_owner). */
static poet_status unit_create(poet_stack *s, int g, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    int output_kept =
        !layer->inner && !layer->chain_pool && !(layer->by_chain && layer->kind == POET_LAYER_RELU);
    if ((s->training || g < s->T) && output_kept) {
        /* Pooled: a place in the first lane's pool until a forward points them into its lane's. */
        void *pool = s->T > 0 ? s->lanes[0].pool : NULL;
        if (layer->src_reorder.prim)
            POET_TRY(net_memory_new(s, &layer->src_md,
                                    net_pool_place(s, pool, l, NET_POOL_SRC_COPY), &u->src_copy));
        /* A fused relu's output is its input as it reads it (the producer's, or the copy). */
        void *alias =
            layer->fused
                ? memory_data(via(&layer->src_reorder, unit(s, g, l - 1)->dst, u->src_copy))
                : net_pool_place(s, pool, l, NET_POOL_DST);
        POET_TRY(net_memory_new(s, &layer->dst_md, alias, &u->dst));
        if (dnnl_memory_desc_get_size(&layer->ws_md) > 0)
            POET_TRY(net_memory_new(s, &layer->ws_md, NULL, &u->workspace));
    }
    if (layer->kind == POET_LAYER_BATCHNORM)
        return batchnorm_unit_create(s, g, l);
    if (!is_weight_layer(layer->kind))
        return POET_OK;
    if (layer->gemm) {
        POET_TRY(net_floats_new(&u->w_gemm, poet_gemmconv_weights_floats(&layer->shape)));
        if (layer->chain_pool && layer->relu_after && s->training)
            POET_ALLOC(u->relu_mask, (size_t)s->B * layer->shape.out_h * layer->shape.out_w *
                                         (size_t)layer->shape.out_c);
    }
    /* Stack layout: tensor t of member g starts at G·offset + g·count (net.h). */
    size_t w_at = (size_t)s->G * layer->w_offset + (size_t)g * layer->w_count;
    size_t b_at = (size_t)s->G * layer->b_offset + (size_t)g * layer->b_count;
    dnnl_memory_desc_t w_plain, b_md;
    POET_TRY(net_weight_mds(&s->plan.layers[l], dnnl_oihw, &w_plain, &b_md));
    POET_TRY(net_memory_new(s, &w_plain, s->params + w_at, &u->user_w));
    if (layer->b_count)
        POET_TRY(net_memory_new(s, &b_md, s->params + b_at, &u->user_b));
    POET_TRY(net_copy_for(s, &layer->w_reorder, &layer->w_md, &u->w_copy));
    if (s->training) {
        POET_TRY(net_memory_new(s, &w_plain, s->grads + w_at, &u->grad_w));
        if (layer->b_count)
            POET_TRY(net_memory_new(s, &b_md, s->grads + b_at, &u->grad_b));
    }
fail:
    return st;
}

/* A lane's transient buffers for layer l: the targets of its backward reorders, dL/da_l (those
 * whole-batch ones in the lane's pool where net_pool_plan placed them), the gemm chains' chunk
 * buffers, and the accumulate views. */
static poet_status scratch_create(poet_stack *s, net_lane *lane, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    net_scratch *x = &lane->layers[l];
    for (int slot = 0; slot < NET_POOL_LANE_SLOTS; slot++) {
        const dnnl_memory_desc_t *md = net_pool_slot_md(s, l, slot);
        if (md)
            POET_TRY(net_memory_new(s, md, net_pool_place(s, lane->pool, l, slot),
                                    net_pool_slot_mem(x, slot)));
    }
    POET_TRY(net_copy_for(s, &layer->bwd_w_reorder, &layer->bwd_w_md, &x->bwd_w_copy));
    POET_TRY(net_copy_for(s, &layer->dw_reorder, &layer->dw_md, &x->dw));
    float **bufs[NET_GEMM_BUFS] = {&x->col_buf, &x->dcol, &x->chunk_out, &x->dw_gemm,
                                   &x->chunk_ddst};
    for (int k = 0; k < NET_GEMM_BUFS; k++) {
        size_t at = s->chain_at[l * NET_GEMM_BUFS + k];
        if (at != SIZE_MAX)
            *bufs[k] = (float *)((char *)lane->chain_arena + at);
    }
    if (layer->kind == POET_LAYER_BATCHNORM && s->training) {
        dnnl_memory_desc_t c_md;
        dnnl_dims_t dims = {s->plan.layers[l].out.c};
        POET_DNNL(dnnl_memory_desc_init_by_tag(&c_md, 1, dims, dnnl_f32, dnnl_x));
        POET_TRY(net_memory_new(s, &c_md, lane->acc, &x->acc_w));
        POET_TRY(net_memory_new(s, &c_md, lane->acc + layer->w_count, &x->acc_b));
        if (s->n_sync > 0)
            POET_TRY(net_bnsync_scratch_create(s, x, l));
    }
    if (is_weight_layer(layer->kind) && s->training) {
        dnnl_memory_desc_t w_plain, b_md;
        POET_TRY(net_weight_mds(&s->plan.layers[l], dnnl_oihw, &w_plain, &b_md));
        POET_TRY(net_memory_new(s, &w_plain, lane->acc, &x->acc_w));
        if (layer->b_count)
            POET_TRY(net_memory_new(s, &b_md, lane->acc + layer->w_count, &x->acc_b));
    }
fail:
    return st;
}

/* The accumulate buffer holds the largest one-member weight+bias pair. */
static size_t largest_layer_params(const poet_arch_plan *plan) {
    size_t most = 0;
    for (int l = 0; l < plan->n_layers; l++) {
        int t = plan->layers[l].weight_tensor;
        if (!poet_arch_has_params(plan->layers[l].kind))
            continue;
        size_t count = plan->tensors[t].count;
        if (plan->layers[l].has_bias)
            count += plan->tensors[t + 1].count;
        most = count > most ? count : most;
    }
    return most;
}

/* A lane's buffers; `has_members`: some member runs on it (lane index < G), so it needs the shared
 * im2col matrix when there is one. */
static poet_status lane_create(poet_stack *s, net_lane *lane, int has_members) {
    poet_status st = POET_OK;
    const net_layer *first_layer = &s->layers[s->first_w];
    if (first_layer->gemm && first_layer->shared_col && has_members)
        POET_TRY(net_floats_new(&lane->shared_col, poet_gemmconv_rows(&first_layer->shape) *
                                                       poet_gemmconv_width(&first_layer->shape)));
    POET_DNNL(dnnl_stream_create(&lane->stream, s->engine, dnnl_stream_default_flags));
    POET_ALLOC(lane->layers, s->L);
    POET_ALLOC(lane->acc, largest_layer_params(&s->plan));
    POET_ALLOC(lane->pads, s->n_ops);
    for (int l = 0; l < s->L; l++)
        POET_TRY(scratch_create(s, lane, l));
    if (s->scratchpad_size > 0) {
        lane->scratchpad = aligned_alloc(64, (s->scratchpad_size + 63) / 64 * 64);
        if (!lane->scratchpad)
            POET_FAIL(POET_ERR_NOMEM, "net.c: out of memory allocating a %zu-byte scratchpad",
                      s->scratchpad_size);
    }
    /* One buffer for all of the lane's ops: they run one at a time. */
    for (int i = 0; i < s->n_ops; i++)
        POET_TRY(net_memory_new(s, &s->pad_md[i], lane->scratchpad, &lane->pads[i]));
fail:
    return st;
}

/* Checks what the stack relies on: a weight layer, K×1×1 logits, tensors where the plan says. */
static poet_status check_plan(const poet_arch_plan *plan, int members, int batch, int *first_w) {
    *first_w = -1;
    for (int l = plan->n_layers - 1; l >= 0; l--)
        if (poet_arch_has_params(plan->layers[l].kind))
            *first_w = l;
    if (members < 1 || batch < 1)
        return poet_error_set(POET_ERR_INTERNAL,
                              "net.c: stack of %d members, batch %d: expected both >= 1", members,
                              batch);
    for (int l = 0; l < plan->n_layers; l++) {
        const poet_layer_plan *lp = &plan->layers[l];
        int read = l == plan->n_layers - 1;
        for (int r = l + 1; r < plan->n_layers && !read; r++)
            for (int k = 0; k < plan->layers[r].n_inputs; k++)
                read |= plan->layers[r].inputs[k] == l;
        if (!read || lp->n_inputs < 1 || lp->n_inputs > POET_MAX_INPUTS)
            return poet_error_set(POET_ERR_INTERNAL, "net.c: layer %d has %d inputs and %s read", l,
                                  lp->n_inputs, read ? "is" : "is not");
        for (int k = 0; k < lp->n_inputs; k++)
            if (lp->inputs[k] >= l || lp->inputs[k] < (lp->kind == POET_LAYER_ADD ? 0 : -1))
                return poet_error_set(POET_ERR_INTERNAL, "net.c: layer %d reads layer %d", l,
                                      lp->inputs[k]);
    }
    if (plan->n_layers < 1 || *first_w < 0)
        return poet_error_set(POET_ERR_CONFIG,
                              "net.c: architecture has no conv or linear layer; a stack needs at "
                              "least one layer with parameters");
    const poet_shape *out = &plan->layers[plan->n_layers - 1].out;
    if (out->c != plan->classes || out->h != 1 || out->w != 1)
        return poet_error_set(POET_ERR_INTERNAL,
                              "net.c: network ends in %dx%dx%d, expected %dx1x1 logits", out->c,
                              out->h, out->w, plan->classes);
    for (int l = 0; l < plan->n_layers; l++) {
        int t = plan->layers[l].weight_tensor;
        if (poet_arch_has_params(plan->layers[l].kind) &&
            (t < 0 || t + plan->layers[l].has_bias >= plan->n_tensors))
            return poet_error_set(POET_ERR_INTERNAL, "net.c: layer %d has weight tensor %d of %d",
                                  l, t, plan->n_tensors);
    }
    return POET_OK;
}

/* Everything but the allocation of the stack itself; primitives are configured for one thread. */
static poet_status stack_build(poet_stack *s) {
    poet_status st = POET_OK;
    POET_ALLOC(s->layers, s->L);
    POET_ALLOC(s->units, (size_t)s->G * s->L);
    POET_ALLOC(s->lanes, s->n_lanes);
    POET_ALLOC(s->member_st, s->G);
    POET_ALLOC(s->member_fault, s->G);
    POET_DNNL(dnnl_engine_create(&s->engine, dnnl_cpu, 0));
    POET_DNNL(dnnl_primitive_attr_create(&s->attr));
    POET_DNNL(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user));
    POET_TRY(net_relu_attr_create(s));
    dnnl_memory_desc_t images_md;
    POET_TRY(net_activation_md(&images_md, s->B, s->plan.input.c, s->plan.input.h, s->plan.input.w,
                               dnnl_nchw));
    POET_TRY(net_memory_new(s, &images_md, NULL, &s->images));
    s->images_buf = memory_data(s->images);
    POET_TRY(layers_create(s));
    POET_TRY(net_output_create(s));
    if (s->training)
        POET_TRY(net_backward_reorders(s));
    net_chains_create(s);
    POET_TRY(net_chain_fills_create(s));
    POET_TRY(net_pool_plan(s));
    POET_TRY(net_chain_arena_plan(s));
    for (int i = 0; i < s->n_lanes; i++) { /* before the units: they point into the pools */
        net_lane *lane = &s->lanes[i];
        if (s->pool_bytes > 0 && !(lane->pool = aligned_alloc(4096, s->pool_bytes)))
            POET_FAIL(POET_ERR_NOMEM, "net.c: out of memory allocating a %zu-byte buffer pool",
                      s->pool_bytes);
        if (s->chain_bytes > 0 && !(lane->chain_arena = aligned_alloc(4096, s->chain_bytes)))
            POET_FAIL(POET_ERR_NOMEM, "net.c: out of memory allocating a %zu-byte chain arena",
                      s->chain_bytes);
    }
    /* Layers before the first weight layer see only the images: computed once, for member 0. */
    for (int g = 0; g < s->G; g++)
        for (int l = g == 0 ? 0 : s->first_w; l < s->L; l++)
            POET_TRY(unit_create(s, g, l));
    for (int i = 0; i < s->n_lanes; i++)
        POET_TRY(lane_create(s, &s->lanes[i], i < s->G));
    if (s->n_sync > 0) {
        size_t most = 0;
        for (int k = 0; k < s->n_sync; k++) {
            size_t n = net_bnsync_doubles(s, s->sync_layers[k]);
            most = n > most ? n : most;
        }
        POET_ALLOC(s->sync_buf, most);
        POET_ALLOC(s->sync_sums, most);
    }
fail:
    return st;
}

poet_status poet_stack_create(const poet_arch_plan *plan, int members, int batch, int training,
                              const poet_stack_options *options, float *params, float *grads,
                              poet_stack **out) {
    poet_status st = POET_OK;
    poet_stack *s = NULL;
    poet_stack_options defaults = {.convolution = POET_CONV_GEMM, .threads = 0, .state = NULL};
    const poet_stack_options *opt = options ? options : &defaults;
    int first_w, threads = opt->threads > 0 ? opt->threads : omp_get_max_threads();
    int omp_default = omp_get_max_threads();
    *out = NULL;
    POET_TRY(check_plan(plan, members, batch, &first_w));
    if (!params || (training && !grads))
        POET_FAIL(POET_ERR_INTERNAL, "net.c: a %s stack needs params%s",
                  training ? "training" : "inference", training ? " and grads" : "");
    POET_ALLOC(s, 1);
    s->plan = *plan;
    s->G = members;
    s->B = batch;
    s->L = plan->n_layers;
    s->T = threads < members ? threads : members;
    s->n_lanes = s->T;
    if (training && opt->sync) {
        for (int l = 0; l < plan->n_layers; l++)
            if (plan->layers[l].kind == POET_LAYER_BATCHNORM)
                s->sync_layers[s->n_sync++] = l;
        s->sync_fn = opt->sync;
        s->sync_context = opt->sync_context;
        if (s->n_sync > 0)
            s->n_lanes = members;
    }
    s->training = training;
    s->conv_gemm = opt->convolution == POET_CONV_GEMM;
    s->first_w = first_w;
    s->params = params;
    s->grads = grads;
    s->state = opt->state;
    if (plan->state_count > 0 && !s->state)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: the plan has batchnorm: the stack needs a state");
    /* oneDNN sizes its kernels' work split by the thread count at creation. */
    omp_set_num_threads(1);
    st = stack_build(s);
    omp_set_num_threads(omp_default);
    if (st != POET_OK)
        goto fail;
    *out = s;
    return POET_OK;
fail:
    poet_stack_destroy(s);
    return st;
}

static void unit_destroy(net_unit *u) {
    dnnl_memory_t *mems[] = {&u->dst,    &u->workspace, &u->src_copy, &u->user_w,  &u->user_b,
                             &u->w_copy, &u->grad_w,    &u->grad_b,   &u->bn_mean, &u->bn_var};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        net_memory_free(mems[i]);
    free(u->w_gemm);
    free(u->relu_mask);
}

static void lane_destroy(poet_stack *s, net_lane *lane) {
    if (lane->layers)
        for (int l = 0; l < s->L; l++) {
            net_scratch *x = &lane->layers[l];
            dnnl_memory_t *mems[] = {&x->ddst_copy,      &x->bwd_w_copy, &x->bwdw_src_copy,
                                     &x->bwdw_ddst_copy, &x->dsrc,       &x->dw,
                                     &x->acc_w,          &x->acc_b,      &x->dsum,
                                     &x->fix_a,          &x->fix_b};
            for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
                net_memory_free(mems[i]);
        }
    if (lane->pads)
        for (int i = 0; i < s->n_ops; i++)
            net_memory_free(&lane->pads[i]);
    if (lane->stream)
        dnnl_stream_destroy(lane->stream);
    free(lane->scratchpad);
    free(lane->pool);
    free(lane->chain_arena);
    free(lane->shared_col);
    free(lane->pads);
    free(lane->acc);
    free(lane->layers);
}

static void layer_destroy(net_layer *layer) {
    net_op *ops[] = {&layer->fwd,
                     &layer->bwd,
                     &layer->bwdw,
                     &layer->src_reorder,
                     &layer->w_reorder,
                     &layer->ddst_reorder,
                     &layer->bwd_w_reorder,
                     &layer->bwdw_src_reorder,
                     &layer->bwdw_ddst_reorder,
                     &layer->dw_reorder,
                     &layer->grad_sum,
                     &layer->sync_fwd,
                     &layer->sync_bwd,
                     &layer->sync_fix};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        net_op_destroy(ops[i]);
    poet_gemmconv_next_free(&layer->next);
}

void poet_stack_destroy(poet_stack *s) {
    if (!s)
        return;
    if (s->lanes)
        for (int i = 0; i < s->n_lanes; i++)
            lane_destroy(s, &s->lanes[i]);
    if (s->units)
        for (size_t i = 0; i < (size_t)s->G * s->L; i++)
            unit_destroy(&s->units[i]);
    if (s->layers)
        for (int l = 0; l < s->L; l++)
            layer_destroy(&s->layers[l]);
    if (s->logits_view)
        for (int g = 0; g < s->G; g++)
            net_memory_free(&s->logits_view[g]);
    net_op_destroy(&s->logits_reorder);
    net_memory_free(&s->images);
    net_memory_free(&s->dlogits);
    if (s->attr)
        dnnl_primitive_attr_destroy(s->attr);
    if (s->relu_attr)
        dnnl_primitive_attr_destroy(s->relu_attr);
    if (s->engine)
        dnnl_engine_destroy(s->engine);
    free(s->member_st);
    free(s->member_fault);
    free(s->sync_buf);
    free(s->sync_sums);
    free(s->pool_at);
    free(s->chain_at);
    free(s->logits_view);
    free(s->logits_buf);
    free(s->lanes);
    free(s->units);
    free(s->layers);
    free(s);
}

int poet_stack_members(const poet_stack *s) { return s->G; }
int poet_stack_batch(const poet_stack *s) { return s->B; }
/* ---- forward ----------------------------------------------------------------------------------
 */

/* Whose unit holds member g's activations: its own in training, its lane's in inference. */
static int activation_owner(const poet_stack *s, const net_lane *lane, int g) {
    return s->training ? g : (int)(lane - s->lanes);
}

/* a_l in the units of owner a: the images, or the previous layer's output (member 0's while the
 * layers are shared). */
dnnl_memory_t net_layer_input(poet_stack *s, int a, int l) {
    return net_layer_input_at(s, a, l, 0);
}

dnnl_memory_t net_layer_input_at(poet_stack *s, int a, int l, int k) {
    int input = s->plan.layers[l].inputs[k];
    if (input < 0)
        return s->images;
    return unit(s, input < s->first_w ? 0 : a, input)->dst;
}

/* The input as layer l's forward reads it. */
dnnl_memory_t net_layer_src(poet_stack *s, int a, int l) {
    return via(&s->layers[l].src_reorder, net_layer_input(s, a, l), unit(s, a, l)->src_copy);
}

/* Layer l of member g, its activations in owner a's units: a gemm layer runs its whole chain. */
static poet_status layer_forward(poet_stack *s, const net_lane *lane, int g, int a, int l,
                                 net_fault *fault) {
    const net_layer *layer = &s->layers[l];
    if (layer->gemm)
        return net_chain_forward(s, lane, g, a, l, fault);
    if (layer->by_chain)
        return POET_OK;
    return net_dnnl_forward(s, lane, g, a, l, fault);
}

/* Phase k's layers in forward, [*from, *to]: without synchronised batch normalisation one phase,
 * the first weight layer to the last; with it, phase k ends at the k-th batchnorm layer (its
 * statistics step) and phase k + 1 starts there (its normalisation). Chains hold no batchnorm,
 * so no phase cuts one. */
static void forward_span(const poet_stack *s, int k, int *from, int *to) {
    *from = k == 0 ? s->first_w : s->sync_layers[k - 1];
    *to = k == s->n_sync ? s->L - 1 : s->sync_layers[k];
}

/* Member g's layers of phase k (all from the first weight layer on when nothing is synchronised),
 * and after the last its logits into the stack's buffer. */
static poet_status member_forward(poet_stack *s, const net_lane *lane, int g, int k,
                                  net_fault *fault) {
    int a = activation_owner(s, lane, g), from, to;
    forward_span(s, k, &from, &to);
    for (int l = from; l <= to; l++) {
        if (s->n_sync > 0 && l == from && k > 0)
            NET_PASS(net_bnsync_normalise(s, lane, g, l, fault));
        else if (s->n_sync > 0 && l == to && k < s->n_sync)
            NET_PASS(net_bnsync_stats(s, lane, g, l, fault));
        else
            NET_PASS(layer_forward(s, lane, g, a, l, fault));
        if (s->layers[l].gemm) /* the whole chain ran */
            l = s->layers[l].chain_last;
    }
    if (k < s->n_sync)
        return POET_OK;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, unit(s, a, s->L - 1)->dst},
                              {DNNL_ARG_TO, s->logits_view[g]}};
    NET_DNNL(fault, net_op_run(lane, &s->logits_reorder, 2, args), "logits reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    return POET_OK;
}

/* The layers before the first weight layer, computed once (as member 0's), and the first weight
 * layer's input as its im2col reads it (shared_im2col follows): it is the same for every member. */
static poet_status shared_forward(poet_stack *s, const net_lane *lane, net_fault *fault) {
    for (int l = 0; l < s->first_w; l++)
        NET_PASS(layer_forward(s, lane, 0, 0, l, fault));
    const net_layer *first_layer = &s->layers[s->first_w];
    if (first_layer->shared_col)
        NET_DNNL(fault,
                 net_refresh(lane, &first_layer->src_reorder, net_layer_input(s, 0, s->first_w),
                             unit(s, 0, s->first_w)->src_copy),
                 "input reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    return POET_OK;
}

/* ---- backward ---------------------------------------------------------------------------------
 */

/* dL/da_{l+1} as the producer left it: layer l+1's dsrc (l+2's when l+1 is a relu folded into
 * it), or the dlogits for the last layer. */
dnnl_memory_t net_layer_dnext(poet_stack *s, const net_lane *lane, int l) {
    if (l == s->L - 1)
        return s->dlogits;
    const net_layer *layer = &s->layers[l];
    if (layer->n_readers > 1)
        return lane->layers[l].dsum;
    if (s->layers[layer->sole_reader].kind == POET_LAYER_ADD)
        return net_layer_dnext(s, lane, layer->sole_reader);
    return lane->layers[net_dsrc_owner(s, layer->sole_reader)].dsrc;
}

int net_dsrc_owner(const poet_stack *s, int r) { return s->layers[r].folded ? r + 1 : r; }

/* dL/d(output) of layer l, read by several layers: the sum of their dL/d(input) into the lane's
 * dsum. Runs when backward reaches l: every reader is later, so each has left its share. */
static poet_status gradient_sum(poet_stack *s, const net_lane *lane, int l, net_fault *fault) {
    dnnl_exec_arg_t args[POET_MAX_LAYERS + 1];
    int n = 0;
    for (int r = l + 1; r < s->L; r++)
        for (int k = 0; k < s->plan.layers[r].n_inputs; k++)
            if (s->plan.layers[r].inputs[k] == l) {
                dnnl_memory_t share = s->layers[r].kind == POET_LAYER_ADD
                                          ? net_layer_dnext(s, lane, r)
                                          : lane->layers[net_dsrc_owner(s, r)].dsrc;
                args[n] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + n, share};
                n++;
            }
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, lane->layers[l].dsum};
    NET_DNNL(fault, net_op_run(lane, &s->layers[l].grad_sum, n, args), "gradient sum");
    return POET_OK;
}

/* Phase k's layers in backward, *hi down to *lo: forward's phases in reverse; a phase ends at a
 * batchnorm layer's backward and the next starts with its fix. */
static void backward_span(const poet_stack *s, int k, int *hi, int *lo) {
    *hi = k == 0 ? s->L - 1 : s->sync_layers[s->n_sync - k];
    *lo = k == s->n_sync ? s->first_w : s->sync_layers[s->n_sync - 1 - k];
}

/* Backward runs the layers in reverse order, down to the first layer with weights: nothing
 * before it has parameters, and nobody needs dL/d(images). Phase k's layers only (backward_span).
 */
static poet_status member_backward(poet_stack *s, const net_lane *lane, int g, int accumulate,
                                   int k, net_fault *fault) {
    int hi, lo;
    backward_span(s, k, &hi, &lo);
    for (int l = hi; l >= lo; l--) {
        if (s->n_sync > 0 && l == hi && k > 0) {
            NET_PASS(net_bnsync_fix(s, lane, g, l, NULL, NULL, fault));
            continue;
        }
        if (s->layers[l].grad_sum.prim)
            NET_PASS(gradient_sum(s, lane, l, fault));
        if (s->layers[l].by_chain || s->layers[l].kind == POET_LAYER_ADD)
            continue;
        if (s->layers[l].kind == POET_LAYER_BATCHNORM) {
            NET_PASS(net_batchnorm_backward(s, lane, g, l, accumulate, fault));
            continue;
        }
        if (s->layers[l].gemm) {
            NET_PASS(net_chain_backward(s, lane, g, l, accumulate, fault));
            l = s->layers[l].chain_first;
            continue;
        }
        if (s->layers[l].needs_dsrc && !s->layers[l].folded)
            NET_PASS(net_data_backward(s, lane, g, l, fault));
        if (is_weight_layer(s->layers[l].kind))
            NET_PASS(net_weights_backward(s, lane, g, l, accumulate, fault));
    }
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    return POET_OK;
}

/* ---- running the members --------------------------------------------------------------------- */

/* Records, once the parallel region has ended, the one message for a run that failed with `st`:
 * member g's (g < 0: the shared layers'), naming the step that failed. */
static poet_status run_failed(const poet_stack *s, int g, int backward, poet_status st,
                              const net_fault *fault) {
    const char *step = fault->step ? fault->step : "a step";
    const char *why =
        fault->dnnl != dnnl_success ? poet_dnnl_status_string(fault->dnnl) : poet_status_name(st);
    if (g < 0)
        return poet_error_set(st, "net.c: forward of the shared layers: %s failed: %s", step, why);
    return poet_error_set(st, "net.c: member %d of %d: %s %s failed: %s", g, s->G,
                          backward ? "backward" : "forward", step, why);
}

/* Runs phase k of every member's forward (backward = 0) or backward, one member per thread at a
 * time. Each thread runs its primitives single-threaded, as they were created; a member runs on
 * its thread's lane, or on its own when the stack synchronises batch normalisation.
 *
 * Signals are blocked on the computing threads meanwhile: oneDNN 2.6's JIT sgemm kernels point
 * rsp into the heap, so a signal handler running on such a thread (ours for SIGTERM/SIGUSR1, a
 * profiler's) writes its frame over heap memory (oneDNN issue #4845, fixed in 3.x by PR #4855).
 * Seen here as "corrupted size vs. prev_size" aborts when Slurm preempted a job. A blocked signal
 * goes to another thread (MPI's) or waits until the members are done: our handler only sets a
 * flag that the trainer reads between steps anyway. */
static poet_status run_phase(poet_stack *s, int backward, int accumulate, int k) {
    poet_status shared_st = POET_OK;
    net_fault shared_fault = {NULL, dnnl_success};
    int own_lanes = s->n_lanes > s->T;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
#pragma omp parallel num_threads(s->T)
    {
        sigset_t worker_saved;
        int worker = omp_get_thread_num() != 0; /* thread 0 is this one, blocked above */
        if (worker)
            pthread_sigmask(SIG_BLOCK, &all, &worker_saved);
        omp_set_num_threads(1); /* this thread's nested regions: oneDNN's kernels */
        const net_lane *lane = &s->lanes[omp_get_thread_num()];
        if (!backward && k == 0 && (s->first_w > 0 || s->layers[s->first_w].shared_col)) {
#pragma omp single
            shared_st = shared_forward(s, lane, &shared_fault);
            /* the single's barrier: every thread sees the shared layers' output */
            if (lane->shared_col && shared_st == POET_OK && !own_lanes)
                net_shared_im2col(s, lane);
        }
#pragma omp for schedule(static)
        for (int g = 0; g < s->G; g++) {
            const net_lane *mine = own_lanes ? &s->lanes[g] : lane;
            if (shared_st != POET_OK || s->member_st[g] != POET_OK)
                continue;
            if (own_lanes && !backward && k == 0 && mine->shared_col)
                net_shared_im2col(s, mine);
            s->member_st[g] = backward
                                  ? member_backward(s, mine, g, accumulate, k, &s->member_fault[g])
                                  : member_forward(s, mine, g, k, &s->member_fault[g]);
        }
        if (worker)
            pthread_sigmask(SIG_SETMASK, &worker_saved, NULL);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (shared_st != POET_OK)
        return run_failed(s, -1, backward, shared_st, &shared_fault);
    for (int g = 0; g < s->G; g++)
        if (s->member_st[g] != POET_OK)
            return run_failed(s, g, backward, s->member_st[g], &s->member_fault[g]);
    return POET_OK;
}

/* The exchange after phase k at batchnorm layer l: this stack's sums (zeros when `contribute` is
 * 0: a failed or skipped pass still takes part, so that the other stacks are not left waiting),
 * summed over the stacks taking part by the caller's sync. */
static poet_status sync_layer(poet_stack *s, int l, int backward, int contribute) {
    size_t n = net_bnsync_doubles(s, l);
    if (!contribute)
        memset(s->sync_buf, 0, n * sizeof(double));
    else if (backward) /* the members' sums are there already (net_batchnorm_backward) */
        s->sync_buf[n - 1] = net_bnsync_local_count(s, l);
    else
        net_bnsync_pack_stats(s, l, s->sync_buf);
    poet_status st = s->sync_fn(s->sync_context, s->sync_buf, n);
    if (st == POET_OK && !backward)
        net_bnsync_unpack_stats(s, l, s->sync_buf);
    if (st == POET_OK && backward) /* the fixes read them while the next sums are collected */
        memcpy(s->sync_sums, s->sync_buf, n * sizeof(double));
    return st;
}

/* Every phase of a forward or backward pass, `run` = 0 for a pass that does not compute at all
 * (poet_stack_skip). A phase that fails leaves the rest of the pass to the exchanges alone. */
static poet_status run_members(poet_stack *s, int backward, int accumulate, int run) {
    poet_status st = POET_OK;
    for (int g = 0; g < s->G; g++) {
        s->member_st[g] = POET_OK;
        s->member_fault[g] = (net_fault){NULL, dnnl_success};
    }
    if (!run)
        st = POET_ERR_INTERNAL; /* not a failure: nothing runs, and nothing is reported */
    for (int k = 0; k <= s->n_sync; k++) {
        if (st == POET_OK)
            st = run_phase(s, backward, accumulate, k);
        if (k == s->n_sync)
            break;
        int l = backward ? s->sync_layers[s->n_sync - 1 - k] : s->sync_layers[k];
        poet_status sync_st = sync_layer(s, l, backward, st == POET_OK);
        if (sync_st != POET_OK) /* the exchange itself failed: nobody left to keep in step */
            return sync_st;
    }
    return run ? st : POET_OK;
}

poet_status poet_stack_skip(poet_stack *s, int backward) {
    if (s->n_sync == 0 || (backward && !s->training))
        return POET_OK;
    return run_members(s, backward, 0, 0);
}

poet_status poet_stack_forward(poet_stack *s, const float *images, float *logits) {
    poet_status st = POET_OK;
    const poet_shape *in = &s->plan.input;
    /* Our own copy: backward of the first layer reads the images after the caller moved on. */
    memcpy(s->images_buf, images, (size_t)s->B * in->c * in->h * in->w * sizeof(float));
    POET_TRY(run_members(s, 0, 0, 1));
    memcpy(logits, s->logits_buf, (size_t)s->B * s->G * s->plan.classes * sizeof(float));
fail:
    return st;
}

poet_status poet_stack_backward(poet_stack *s, const float *dlogits, int accumulate) {
    poet_status st = POET_OK;
    if (!s->training)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: backward on a stack created for inference");
    memcpy(s->dlogits_buf, dlogits, (size_t)s->B * s->plan.classes * sizeof(float));
    POET_TRY(run_members(s, 1, accumulate, 1));
fail:
    return st;
}

/* ---- member views ---------------------------------------------------------------------------- */

void poet_stack_state_get(const poet_arch_plan *plan, int members, const float *stack_buf, int g,
                          float *member_buf) {
    for (int t = 0; t < plan->n_states; t++) {
        const poet_tensor_info *ti = &plan->states[t];
        memcpy(member_buf + ti->offset,
               stack_buf + (size_t)members * ti->offset + (size_t)g * ti->count,
               ti->count * sizeof(float));
    }
}

void poet_stack_state_set(const poet_arch_plan *plan, int members, float *stack_buf, int g,
                          const float *member_buf) {
    for (int t = 0; t < plan->n_states; t++) {
        const poet_tensor_info *ti = &plan->states[t];
        memcpy(stack_buf + (size_t)members * ti->offset + (size_t)g * ti->count,
               member_buf + ti->offset, ti->count * sizeof(float));
    }
}

void poet_stack_member_get(const poet_arch_plan *plan, int members, const float *stack_buf, int g,
                           float *member_buf) {
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *ti = &plan->tensors[t];
        memcpy(member_buf + ti->offset,
               stack_buf + (size_t)members * ti->offset + (size_t)g * ti->count,
               ti->count * sizeof(float));
    }
}

void poet_stack_member_set(const poet_arch_plan *plan, int members, float *stack_buf, int g,
                           const float *member_buf) {
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *ti = &plan->tensors[t];
        memcpy(stack_buf + (size_t)members * ti->offset + (size_t)g * ti->count,
               member_buf + ti->offset, ti->count * sizeof(float));
    }
}
