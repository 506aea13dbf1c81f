/* netdnnl.c — the oneDNN backend of a stack (net.c): layouts, primitives and reorders, created
 * once per stack, and a layer's forward and backward on them for one member.
 *
 * Legend: netimpl.h.
 *
 * Layouts: weight layers use nhwc activations when their input has >= 8 channels and oneDNN has
 * optimised kernels for that (activation_tag), else the layouts oneDNN picks (format_tag_any,
 * queried back); relu and pooling work in the layout of the weight layer they feed
 * (elementwise_layout). A reorder sits between two primitives only where the producer's layout
 * differs from what the consumer asked for. The user's parameters and gradients
 * are plain (member g's OIHW tensor inside the stack layout is contiguous) and reordered at the
 * edges.
 *
 * Fusion: relu right after a conv/linear layer is that layer's post-op (bitwise the same: relu is
 * exact); the relu layer keeps only its backward, which reads the post-relu output, and its
 * layout's reorder, if any.
 *
 * Fused relus whose layouts agree run backward as a select loop (oneDNN's eltwise backward was
 * ~3x slower here).
 */
#include <dnnl.h>

#include <stdlib.h>
#include <string.h>

#include "netimpl.h"
#include "poet/dnnlerror.h"

/* ---- oneDNN helpers -------------------------------------------------------------------------- */

poet_status net_activation_md(dnnl_memory_desc_t *md, int batch, int channels, int h, int w,
                              dnnl_format_tag_t tag) {
    poet_status st = POET_OK;
    dnnl_dims_t dims = {batch, channels, h, w};
    POET_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
fail:
    return st;
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* A memory over `handle`, or over a buffer oneDNN allocates when `handle` is NULL. */
poet_status net_memory_new(poet_stack *s, const dnnl_memory_desc_t *md, void *handle,
                           dnnl_memory_t *mem) {
    poet_status st = POET_OK;
    POET_DNNL(dnnl_memory_create(mem, md, s->engine, handle ? handle : DNNL_MEMORY_ALLOCATE));
fail:
    return st;
}

/* A 64-byte aligned float buffer (sgemm's favourite); freed with free(). */
poet_status net_floats_new(float **buf, size_t count) {
    size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    *buf = aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (!*buf)
        return poet_error_set(POET_ERR_NOMEM, "net.c: out of memory allocating %zu bytes", bytes);
    return POET_OK;
}

void net_memory_free(dnnl_memory_t *mem) {
    if (*mem)
        dnnl_memory_destroy(*mem);
    *mem = NULL;
}

/* Creates the primitive of `pd` and notes its scratchpad, which every lane provides. */
poet_status net_op_create(poet_stack *s, const_dnnl_primitive_desc_t pd, net_op *op) {
    poet_status st = POET_OK;
    op->pad = -1;
    POET_DNNL(dnnl_primitive_create(&op->prim, pd));
    const dnnl_memory_desc_t *md = query(pd, dnnl_query_scratchpad_md);
    size_t size = md ? dnnl_memory_desc_get_size(md) : 0;
    if (size > 0) {
        if (s->n_ops == NET_MAX_OPS)
            POET_FAIL(POET_ERR_INTERNAL, "net.c: more than %d primitives with scratchpads",
                      NET_MAX_OPS);
        op->pad = s->n_ops++;
        s->pad_md[op->pad] = *md;
        if (size > s->scratchpad_size)
            s->scratchpad_size = size;
    }
fail:
    return st;
}

void net_op_destroy(net_op *op) {
    if (op->prim)
        dnnl_primitive_destroy(op->prim);
    op->prim = NULL;
}
/* Executes `op` on `lane` with `args` plus the lane's scratchpad for it. */
dnnl_status_t net_op_run(const net_lane *lane, const net_op *op, int nargs,
                         const dnnl_exec_arg_t *args) {
    dnnl_exec_arg_t all[12];
    if (nargs > 11)
        return dnnl_invalid_arguments;
    memcpy(all, args, (size_t)nargs * sizeof *args);
    if (op->pad >= 0)
        all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, lane->pads[op->pad]};
    return dnnl_primitive_execute(op->prim, lane->stream, nargs, all);
}

/* `attr`: NULL for the stack's plain one. */
static poet_status primitive_desc(poet_stack *s, const void *desc, const_dnnl_primitive_desc_t hint,
                                  const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd,
                                  int l, const char *what) {
    if (dnnl_primitive_desc_create(pd, desc, attr ? attr : s->attr, s->engine, hint) !=
        dnnl_success)
        return poet_error_set(POET_ERR_DNNL,
                              "net.c: layer %d: oneDNN has no %s primitive for these shapes "
                              "(batch %d)",
                              l, what, s->B);
    return POET_OK;
}

/* A reorder from layout `from` to `to`, or nothing (op->prim stays NULL) when they agree. */
poet_status net_reorder_create(poet_stack *s, const dnnl_memory_desc_t *from,
                               const dnnl_memory_desc_t *to, net_op *op) {
    poet_status st = POET_OK;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return POET_OK;
    POET_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, s->engine, to, s->engine, s->attr));
    POET_TRY(net_op_create(s, pd, op));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Brings `copy` up to date with `from` (nothing when the consumer reads `from` directly). */
dnnl_status_t net_refresh(const net_lane *lane, const net_op *reorder, dnnl_memory_t from,
                          dnnl_memory_t copy) {
    if (!reorder->prim)
        return dnnl_success;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, copy}};
    return net_op_run(lane, reorder, 2, args);
}

/* The buffer a reorder writes into, when there is a reorder. */
poet_status net_copy_for(poet_stack *s, const net_op *reorder, const dnnl_memory_desc_t *md,
                         dnnl_memory_t *copy) {
    if (!reorder->prim)
        return POET_OK;
    return net_memory_new(s, md, NULL, copy);
}

/* oneDNN takes padding on both sides; PyTorch floors the output size, which oneDNN's integer
 * division reproduces with symmetric padding. Checks that the plan agrees. */
poet_status net_check_window(const poet_layer_plan *lp, int l) {
    int oh = (lp->in.h + 2 * lp->padding - lp->kernel_h) / lp->stride + 1;
    int ow = (lp->in.w + 2 * lp->padding - lp->kernel_w) / lp->stride + 1;
    if (lp->stride < 1 || oh != lp->out.h || ow != lp->out.w)
        return poet_error_set(POET_ERR_INTERNAL,
                              "net.c: layer %d: plan says output %dx%d, kernel %dx%d stride %d "
                              "padding %d on %dx%d gives %dx%d",
                              l, lp->out.h, lp->out.w, lp->kernel_h, lp->kernel_w, lp->stride,
                              lp->padding, lp->in.h, lp->in.w, oh, ow);
    return POET_OK;
}
/* ---- layer primitives ------------------------------------------------------------------------ */

/* One member's weights [O, I, kh, kw] (a linear layer's [O, C·H·W] is [O, C, H, W]), bias [O]. */
poet_status net_weight_mds(const poet_layer_plan *lp, dnnl_format_tag_t tag,
                           dnnl_memory_desc_t *w_md, dnnl_memory_desc_t *b_md) {
    poet_status st = POET_OK;
    dnnl_dims_t dims = {lp->out.c, lp->in.c, lp->kernel_h, lp->kernel_w}, bdims = {lp->out.c};
    POET_DNNL(dnnl_memory_desc_init_by_tag(w_md, 4, dims, dnnl_f32, tag));
    POET_DNNL(dnnl_memory_desc_init_by_tag(b_md, 1, bdims, dnnl_f32, dnnl_x));
fail:
    return st;
}

/* Backward descriptors of a weight layer from its forward one: same activation layouts, weights
 * in whatever layout oneDNN prefers. */
static poet_status backward_weights_desc(const poet_layer_plan *lp,
                                         const dnnl_convolution_desc_t *fd,
                                         dnnl_convolution_desc_t *desc) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t w_any, b_md;
    POET_TRY(net_weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
    POET_DNNL(dnnl_convolution_backward_weights_desc_init(
        desc, dnnl_convolution_direct, &fd->src_desc, &w_any, lp->has_bias ? &b_md : NULL,
        &fd->dst_desc, fd->strides, fd->padding[0], fd->padding[1]));
fail:
    return st;
}

static poet_status backward_data_desc(const poet_layer_plan *lp, const dnnl_convolution_desc_t *fd,
                                      dnnl_convolution_desc_t *desc) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t w_any, b_md;
    POET_TRY(net_weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
    POET_DNNL(dnnl_convolution_backward_data_desc_init(desc, dnnl_convolution_direct, &fd->src_desc,
                                                       &w_any, &fd->dst_desc, fd->strides,
                                                       fd->padding[0], fd->padding[1]));
fail:
    return st;
}

/* Backward weights: dL/dW and dL/db. */
static poet_status conv_backward_weights(poet_stack *s, int l, const dnnl_convolution_desc_t *fd,
                                         const_dnnl_primitive_desc_t fwd_pd) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t desc;
    dnnl_memory_desc_t w_plain, b_md;
    POET_TRY(net_weight_mds(lp, dnnl_oihw, &w_plain, &b_md));
    POET_TRY(backward_weights_desc(lp, fd, &desc));
    POET_TRY(primitive_desc(s, &desc, fwd_pd, NULL, &pd, l, "convolution backward-weights"));
    POET_TRY(net_op_create(s, pd, &layer->bwdw));
    layer->bwdw_src_md = *query(pd, dnnl_query_src_md);
    layer->bwdw_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *dw_md = query(pd, dnnl_query_diff_weights_md);
    layer->dw_md = *dw_md;
    POET_TRY(net_reorder_create(s, dw_md, &w_plain, &layer->dw_reorder));
    POET_TRY(net_reorder_create(s, &layer->src_md, &layer->bwdw_src_md, &layer->bwdw_src_reorder));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Backward data: dL/d(input) from dL/d(output) and the weights. */
static poet_status conv_backward_data(poet_stack *s, int l, const dnnl_convolution_desc_t *fd,
                                      const_dnnl_primitive_desc_t fwd_pd) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t desc;
    POET_TRY(backward_data_desc(&s->plan.layers[l], fd, &desc));
    POET_TRY(primitive_desc(s, &desc, fwd_pd, NULL, &pd, l, "convolution backward-data"));
    POET_TRY(net_op_create(s, pd, &layer->bwd));
    layer->bwd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    layer->dsrc_md = *query(pd, dnnl_query_diff_src_md);
    /* Forward leaves the current weights in fwd's layout; backward reorders from there. */
    layer->bwd_w_md = *query(pd, dnnl_query_weights_md);
    POET_TRY(net_reorder_create(s, &layer->w_md, &layer->bwd_w_md, &layer->bwd_w_reorder));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The forward descriptor of a weight layer with activations in layout `tag` (a linear layer is a
 * convolution whose kernel is its whole input). */
static poet_status forward_desc(const poet_stack *s, int l, dnnl_format_tag_t tag,
                                dnnl_convolution_desc_t *desc) {
    poet_status st = POET_OK;
    const poet_layer_plan *lp = &s->plan.layers[l];
    int linear = lp->kind == POET_LAYER_LINEAR;
    int stride = linear ? 1 : lp->stride, pad = linear ? 0 : lp->padding;
    dnnl_memory_desc_t src_md, dst_md, w_any, b_md;
    POET_TRY(net_activation_md(&src_md, s->B, lp->in.c, lp->in.h, lp->in.w, tag));
    POET_TRY(net_activation_md(&dst_md, s->B, lp->out.c, lp->out.h, lp->out.w, tag));
    POET_TRY(net_weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
    dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
    dnnl_prop_kind_t prop = s->training ? dnnl_forward_training : dnnl_forward_inference;
    /* A layer without bias ("bias": false) gets a primitive without one (NULL bias desc). */
    POET_DNNL(dnnl_convolution_forward_desc_init(desc, prop, dnnl_convolution_direct, &src_md,
                                                 &w_any, lp->has_bias ? &b_md : NULL, &dst_md,
                                                 strides, padding, padding));
fail:
    return st;
}

/* 1 when oneDNN has an optimised (not "ref") kernel for `desc`. */
static int has_fast_kernel(poet_stack *s, const void *desc, const_dnnl_primitive_desc_t hint,
                           dnnl_primitive_desc_t *pd) {
    const char *impl = NULL;
    *pd = NULL;
    if (dnnl_primitive_desc_create(pd, desc, s->attr, s->engine, hint) != dnnl_success)
        return 0;
    dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl);
    return impl && strncmp(impl, "ref", 3) != 0;
}

/* 1 when forward and every backward primitive the layer needs have optimised kernels in layout
 * `tag`. Only descriptors are created: cheap, no JIT. */
static int layout_is_fast(poet_stack *s, int l, dnnl_format_tag_t tag) {
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_convolution_desc_t fd, bwd, bdd;
    dnnl_primitive_desc_t fpd = NULL, wpd = NULL, dpd = NULL;
    int had_message = poet_error_message()[0] != '\0';
    int fast = forward_desc(s, l, tag, &fd) == POET_OK && has_fast_kernel(s, &fd, NULL, &fpd);
    if (fast && s->training)
        fast =
            backward_weights_desc(lp, &fd, &bwd) == POET_OK && has_fast_kernel(s, &bwd, fpd, &wpd);
    if (fast && s->layers[l].needs_dsrc)
        fast = backward_data_desc(lp, &fd, &bdd) == POET_OK && has_fast_kernel(s, &bdd, fpd, &dpd);
    dnnl_primitive_desc_t pds[] = {fpd, wpd, dpd};
    for (int i = 0; i < 3; i++)
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
    if (!had_message) /* a failed probe is not an error: the caller falls back */
        poet_error_clear();
    return fast;
}

/* The activation layout of weight layer l: nhwc when its input has at least 8 channels and oneDNN
 * has optimised kernels for it; the brgemm kernels then skip the padding to 16-channel blocks that
 * blocked layouts carry (the reference network's conv 20->40 ran ~25% faster). A layer on few
 * channels (the images) runs best in the blocked layout oneDNN picks itself (conv 1->20: 0.3 ms
 * blocked against 0.9 ms nhwc per member, forward + backward, B = 200). The rule depends only on
 * the shapes, so every member and every rank computes a layer the same way. */
dnnl_format_tag_t net_activation_tag(poet_stack *s, int l) {
    if (s->layers[l].gemm)
        return dnnl_nhwc;
    if (s->plan.layers[l].in.c >= 8 && layout_is_fast(s, l, dnnl_nhwc))
        return dnnl_nhwc;
    return dnnl_format_tag_any;
}

/* The layout relu/pooling layer l works in: nhwc when the next weight layer reads nhwc, so that a
 * reorder from a blocked producer happens before the relu/pooling on the smaller unpadded tensor
 * and never between layers that agree; else the producer's own layout. */
static poet_status elementwise_layout(const poet_stack *s, int l,
                                      const dnnl_memory_desc_t *producer, dnnl_memory_desc_t *md) {
    const poet_layer_plan *lp = &s->plan.layers[l];
    *md = *producer;
    for (int w = l + 1; w < s->L; w++)
        if (is_weight_layer(s->layers[w].kind)) {
            if (s->layers[w].tag == dnnl_nhwc)
                return net_activation_md(md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc);
            break;
        }
    return POET_OK;
}

/* A convolution or linear layer, its activations in the layout activation_tag chose. */
poet_status net_conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    int linear = lp->kind == POET_LAYER_LINEAR;
    if (!linear)
        POET_TRY(net_check_window(lp, l));
    dnnl_memory_desc_t w_plain, b_md;
    POET_TRY(net_weight_mds(lp, dnnl_oihw, &w_plain, &b_md));
    dnnl_convolution_desc_t desc;
    POET_TRY(forward_desc(s, l, layer->tag, &desc));
    POET_TRY(primitive_desc(s, &desc, NULL, layer->relu_after ? s->relu_attr : NULL, &pd, l,
                            linear ? "linear" : "convolution"));
    POET_TRY(net_op_create(s, pd, &layer->fwd));
    layer->src_md = *query(pd, dnnl_query_src_md);
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    POET_TRY(net_reorder_create(s, in_md, &layer->src_md, &layer->src_reorder));
    layer->w_md = *query(pd, dnnl_query_weights_md);
    POET_TRY(net_reorder_create(s, &w_plain, &layer->w_md, &layer->w_reorder));
    if (s->training) {
        POET_TRY(conv_backward_weights(s, l, &desc, pd));
        if (layer->needs_dsrc)
            POET_TRY(conv_backward_data(s, l, &desc, pd));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Backward of relu/pooling: dL/d(input) in the forward input's layout. */
static poet_status elementwise_backward(poet_stack *s, int l, const void *bdesc,
                                        const_dnnl_primitive_desc_t fwd_pd, const char *what) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    POET_TRY(primitive_desc(s, bdesc, fwd_pd, NULL, &pd, l, what));
    POET_TRY(net_op_create(s, pd, &layer->bwd));
    layer->bwd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    layer->dsrc_md = *query(pd, dnnl_query_diff_src_md);
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* relu, per element, in the layout elementwise_layout picks. */
poet_status net_relu_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_eltwise_desc_t desc, bdesc;
    POET_TRY(elementwise_layout(s, l, producer_md, &layer->src_md));
    POET_TRY(net_reorder_create(s, producer_md, &layer->src_md, &layer->src_reorder));
    const dnnl_memory_desc_t *in_md = &layer->src_md;
    dnnl_prop_kind_t prop = layer->needs_dsrc ? dnnl_forward_training : dnnl_forward_inference;
    /* Backward gets relu'(x) from the output: relu(x) > 0 exactly when x > 0 (both masks are
     * false at 0, -0 and NaN), and oneDNN's backward multiplies dL/d(output) by the same 1 or 0
     * either way, so the input need not be kept (its producer's output can live in the lane's
     * pool, netmem.c). The forward primitive stays relu from the input, as it always computed;
     * a descriptor with the dst algorithm serves as backward's hint (alone, for a fused relu,
     * whose producer applied it). */
    POET_DNNL(dnnl_eltwise_forward_desc_init(&desc, prop, dnnl_eltwise_relu, in_md, 0.f, 0.f));
    POET_TRY(primitive_desc(s, &desc, NULL, NULL, &pd, l, "relu"));
    if (!layer->fused)
        POET_TRY(net_op_create(s, pd, &layer->fwd));
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    if (layer->needs_dsrc) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        POET_DNNL(dnnl_eltwise_forward_desc_init(&desc, prop, dnnl_eltwise_relu_use_dst_for_bwd,
                                                 in_md, 0.f, 0.f));
        POET_TRY(primitive_desc(s, &desc, NULL, NULL, &pd, l, "relu"));
        POET_DNNL(dnnl_eltwise_backward_desc_init(&bdesc, dnnl_eltwise_relu_use_dst_for_bwd, in_md,
                                                  in_md, 0.f, 0.f));
        POET_TRY(elementwise_backward(s, l, &bdesc, pd, "relu backward"));
        /* oneDNN's eltwise backward ran at ~1 element/ns on these tensors; the same select in a
         * loop is memory-bound and exact. */
        layer->relu_loop = layer->fused &&
                           dnnl_memory_desc_equal(&layer->bwd_ddst_md, &layer->dst_md) &&
                           dnnl_memory_desc_equal(&layer->dsrc_md, &layer->dst_md);
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* max or average pooling, per channel, in the layout elementwise_layout picks. */
poet_status net_pool_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst_any;
    POET_TRY(net_check_window(lp, l));
    POET_TRY(elementwise_layout(s, l, producer_md, &layer->src_md));
    POET_TRY(net_reorder_create(s, producer_md, &layer->src_md, &layer->src_reorder));
    const dnnl_memory_desc_t *in_md = &layer->src_md;
    POET_TRY(
        net_activation_md(&dst_any, s->B, lp->out.c, lp->out.h, lp->out.w, dnnl_format_tag_any));
    /* PyTorch's AvgPool2d counts the padding (count_include_pad=True); with floored output sizes
     * no window reaches past the padding, so the divisor is always kh·kw, as here. */
    dnnl_alg_kind_t alg =
        lp->kind == POET_LAYER_MAX_POOL ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;
    dnnl_dims_t strides = {lp->stride, lp->stride}, kernel = {lp->kernel_h, lp->kernel_w};
    dnnl_dims_t dilation = {0, 0}, padding = {lp->padding, lp->padding};
    dnnl_pooling_v2_desc_t desc, bdesc;
    dnnl_prop_kind_t prop = layer->needs_dsrc ? dnnl_forward_training : dnnl_forward_inference;
    POET_DNNL(dnnl_pooling_v2_forward_desc_init(&desc, prop, alg, in_md, &dst_any, strides, kernel,
                                                dilation, padding, padding));
    POET_TRY(primitive_desc(s, &desc, NULL, NULL, &pd, l, "pooling"));
    POET_TRY(net_op_create(s, pd, &layer->fwd));
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    const dnnl_memory_desc_t *ws_md = query(pd, dnnl_query_workspace_md);
    if (ws_md) /* a zero descriptor (size 0) when there is no workspace */
        layer->ws_md = *ws_md;
    if (layer->needs_dsrc) {
        POET_DNNL(dnnl_pooling_v2_backward_desc_init(&bdesc, alg, in_md, &layer->dst_md, strides,
                                                     kernel, dilation, padding, padding));
        POET_TRY(elementwise_backward(s, l, &bdesc, pd, "pooling backward"));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The element-wise sum of an add layer's inputs, in the first input's layout (oneDNN's sum takes
 * the others in theirs). Backward has nothing to compute: each input receives dL/d(output). */
poet_status net_add_create(poet_stack *s, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t srcs[POET_MAX_INPUTS];
    float scales[POET_MAX_INPUTS];
    for (int k = 0; k < lp->n_inputs; k++) {
        srcs[k] = s->layers[lp->inputs[k]].dst_md;
        scales[k] = 1.f; /* exact: the sum rounds once per addition, as a + b does */
    }
    if (dnnl_sum_primitive_desc_create(&pd, &srcs[0], lp->n_inputs, scales, srcs, s->attr,
                                       s->engine) != dnnl_success)
        POET_FAIL(POET_ERR_DNNL, "net.c: layer %d: oneDNN has no sum primitive for these layouts",
                  l);
    POET_TRY(net_op_create(s, pd, &layer->fwd));
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    layer->src_md = layer->dst_md;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

#define BN_EPS 1e-5f /* PyTorch's BatchNorm2d defaults */
#define BN_MOMENTUM 0.1

/* Batch normalisation in its producer's layout: a training stack normalises with the batch's
 * statistics (oneDNN computes the mean and the biased variance), an inference stack with the
 * running statistics (global stats); one backward primitive gives dL/d(input), dL/dweight and
 * dL/dbias. */
poet_status net_batchnorm_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_batch_normalization_desc_t desc, bdesc;
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (s->training ? 0 : dnnl_use_global_stats);
    dnnl_prop_kind_t prop = s->training ? dnnl_forward_training : dnnl_forward_inference;
    layer->src_md = *in_md;
    POET_DNNL(dnnl_batch_normalization_forward_desc_init(&desc, prop, in_md, BN_EPS, flags));
    POET_TRY(primitive_desc(s, &desc, NULL, NULL, &pd, l, "batch normalisation"));
    POET_TRY(net_op_create(s, pd, &layer->fwd));
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    if (s->training) {
        POET_DNNL(dnnl_batch_normalization_backward_desc_init(&bdesc, dnnl_backward, &layer->dst_md,
                                                              in_md, BN_EPS, flags));
        POET_TRY(elementwise_backward(s, l, &bdesc, pd, "batch normalisation backward"));
        if (s->n_sync > 0)
            POET_TRY(net_bnsync_create(s, l, flags));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Member g's batchnorm layer l on forward primitive `op` (the batch's statistics out, or given
 * ones in), its activations in owner a's units. */
dnnl_status_t net_batchnorm_run(poet_stack *s, const net_lane *lane, int g, int a, int l,
                                const net_op *op) {
    net_unit *u = unit(s, g, l);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, net_layer_input(s, a, l)},
                              {DNNL_ARG_DST, unit(s, a, l)->dst},
                              {DNNL_ARG_SCALE, u->user_w},
                              {DNNL_ARG_SHIFT, u->user_b},
                              {DNNL_ARG_MEAN, u->bn_mean},
                              {DNNL_ARG_VARIANCE, u->bn_var}};
    return net_op_run(lane, op, 6, args);
}

/* After a training forward of member g's batchnorm layer l: its running statistics move towards
 * the batch's, as PyTorch's do (running_var with the unbiased variance, n/(n − 1) × biased). */
void net_batchnorm_update(poet_stack *s, int g, int l, double n) {
    const poet_layer_plan *lp = &s->plan.layers[l];
    const poet_tensor_info *rm = &s->plan.states[lp->state_tensor], *rv = rm + 1;
    float *mean = s->state + (size_t)s->G * rm->offset + (size_t)g * rm->count;
    float *var = s->state + (size_t)s->G * rv->offset + (size_t)g * rv->count;
    const float *batch_mean = memory_data(unit(s, g, l)->bn_mean);
    const float *batch_var = memory_data(unit(s, g, l)->bn_var);
    double unbias = n > 1 ? n / (n - 1) : 1;
    for (int c = 0; c < lp->in.c; c++) {
        mean[c] = (float)((1 - BN_MOMENTUM) * mean[c] + BN_MOMENTUM * batch_mean[c]);
        var[c] = (float)((1 - BN_MOMENTUM) * var[c] + BN_MOMENTUM * unbias * batch_var[c]);
    }
}

/* Backward of member g's batchnorm layer l: dL/d(input) into the lane's dsrc, dL/dweight and
 * dL/dbias into its grads (or added to them). */
poet_status net_batchnorm_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                   int accumulate, net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    dnnl_memory_t dnext = net_layer_dnext(s, lane, l);
    NET_DNNL(fault, net_refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy),
             "gradient reorder");
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, net_layer_src(s, g, l)},
        {DNNL_ARG_MEAN, u->bn_mean},
        {DNNL_ARG_VARIANCE, u->bn_var},
        {DNNL_ARG_DIFF_DST, via(&layer->ddst_reorder, dnext, x->ddst_copy)},
        {DNNL_ARG_SCALE, u->user_w},
        {DNNL_ARG_SHIFT, u->user_b}, /* oneDNN 2.6 asks for it with dnnl_use_shift */
        {DNNL_ARG_DIFF_SRC, x->dsrc},
        {DNNL_ARG_DIFF_SCALE, accumulate ? x->acc_w : u->grad_w},
        {DNNL_ARG_DIFF_SHIFT, accumulate ? x->acc_b : u->grad_b}};
    /* Synchronised (netbnsync.c): the statistics are the group's, given; the part of the
     * gradient through them is added after the exchange of this batch's sums. */
    const net_op *op = s->n_sync > 0 ? &layer->sync_bwd : &layer->bwd;
    NET_DNNL(fault, net_op_run(lane, op, 9, args), "batch normalisation backward");
    if (s->n_sync > 0) {
        NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
        net_bnsync_keep_sums(s, g, l, memory_data(accumulate ? x->acc_w : u->grad_w),
                             memory_data(accumulate ? x->acc_b : u->grad_b));
    }
    if (accumulate) {
        NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
        net_accumulate_into(s, lane, g, layer);
    }
    return POET_OK;
}

/* The layout dL/d(output of l) arrives in: the dlogits for the last layer, the lane's dsum when
 * several layers read l, an add reader's own gradient, else its one reader's dL/d(input). */
static const dnnl_memory_desc_t *gradient_md(const poet_stack *s, int l,
                                             const dnnl_memory_desc_t *dlogits_md) {
    const net_layer *layer = &s->layers[l];
    if (l == s->L - 1)
        return dlogits_md;
    if (layer->n_readers > 1)
        return &layer->dst_md;
    if (s->layers[layer->sole_reader].kind == POET_LAYER_ADD)
        return gradient_md(s, layer->sole_reader, dlogits_md);
    return &s->layers[net_dsrc_owner(s, layer->sole_reader)].dsrc_md;
}

/* Layer l's grad_sum: its readers' dL/d(input) (an add's: its own gradient), summed into dst_md. */
static poet_status gradient_sum_create(poet_stack *s, int l, const dnnl_memory_desc_t *dlogits_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t srcs[8];
    float scales[8];
    int n = 0;
    if (layer->n_readers > 6) /* net_op_run takes 7 arguments: the readers' and the sum's */
        POET_FAIL(POET_ERR_CONFIG,
                  "model.architecture[%d]: expected at most 6 layers reading one output, got %d", l,
                  layer->n_readers);
    for (int r = l + 1; r < s->L; r++)
        for (int k = 0; k < s->plan.layers[r].n_inputs; k++)
            if (s->plan.layers[r].inputs[k] == l) {
                srcs[n] = s->layers[r].kind == POET_LAYER_ADD
                              ? *gradient_md(s, r, dlogits_md)
                              : s->layers[net_dsrc_owner(s, r)].dsrc_md;
                scales[n++] = 1.f;
            }
    if (dnnl_sum_primitive_desc_create(&pd, &layer->dst_md, n, scales, srcs, s->attr, s->engine) !=
        dnnl_success)
        POET_FAIL(POET_ERR_DNNL,
                  "net.c: layer %d: oneDNN has no sum primitive for its readers' gradients", l);
    POET_TRY(net_op_create(s, pd, &layer->grad_sum));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The backward reorders, once every layer knows the layout of its dL/d(input): layer l reads
 * dL/d(output) as gradient_md says (in a chain: layer l+1's dsrc), the last layer from the plain
 * dlogits. */
poet_status net_backward_reorders(poet_stack *s) {
    poet_status st = POET_OK;
    const dnnl_memory_desc_t *dlogits_md = NULL;
    POET_DNNL(dnnl_memory_get_memory_desc(s->dlogits, &dlogits_md));
    for (int l = s->L - 1; l >= s->first_w; l--) {
        net_layer *layer = &s->layers[l];
        if (layer->n_readers > 1)
            POET_TRY(gradient_sum_create(s, l, dlogits_md));
        const dnnl_memory_desc_t *next_md = gradient_md(s, l, dlogits_md);
        if (layer->needs_dsrc)
            POET_TRY(net_reorder_create(s, next_md, &layer->bwd_ddst_md, &layer->ddst_reorder));
        if (is_weight_layer(layer->kind)) {
            /* From bwd's copy when there is one: usually the layouts agree, nothing is copied. */
            const dnnl_memory_desc_t *from = layer->needs_dsrc ? &layer->bwd_ddst_md : next_md;
            POET_TRY(net_reorder_create(s, from, &layer->bwdw_ddst_md, &layer->bwdw_ddst_reorder));
        }
    }
fail:
    return st;
}

/* Where each member's logits go: a strided view of logits_buf, row stride G·K. */
poet_status net_output_create(poet_stack *s) {
    poet_status st = POET_OK;
    int K = s->plan.classes;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t view, dlogits_md;
    dnnl_dims_t dims = {s->B, K, 1, 1}, strides = {(dnnl_dim_t)s->G * K, 1, 1, 1};
    POET_DNNL(dnnl_memory_desc_init_by_strides(&view, 4, dims, dnnl_f32, strides));
    POET_ALLOC(s->logits_buf, (size_t)s->B * s->G * K);
    POET_ALLOC(s->logits_view, s->G);
    for (int g = 0; g < s->G; g++)
        POET_TRY(net_memory_new(s, &view, s->logits_buf + (size_t)g * K, &s->logits_view[g]));
    /* Always a reorder: even a plain last layer writes rows of K, the view has rows of G·K. */
    POET_DNNL(dnnl_reorder_primitive_desc_create(&pd, &s->layers[s->L - 1].dst_md, s->engine, &view,
                                                 s->engine, s->attr));
    POET_TRY(net_op_create(s, pd, &s->logits_reorder));
    if (s->training) {
        POET_TRY(net_activation_md(&dlogits_md, s->B, K, 1, 1, dnnl_nchw));
        POET_TRY(net_memory_new(s, &dlogits_md, NULL, &s->dlogits));
        s->dlogits_buf = memory_data(s->dlogits);
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* The stack's attributes plus relu as a post-op, for weight layers followed by relu. */
poet_status net_relu_attr_create(poet_stack *s) {
    poet_status st = POET_OK;
    dnnl_post_ops_t ops = NULL;
    POET_DNNL(dnnl_primitive_attr_clone(&s->relu_attr, s->attr));
    POET_DNNL(dnnl_post_ops_create(&ops));
    POET_DNNL(dnnl_post_ops_append_eltwise(ops, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    POET_DNNL(dnnl_primitive_attr_set_post_ops(s->relu_attr, ops));
fail:
    if (ops)
        dnnl_post_ops_destroy(ops);
    return st;
}

/* ---- running a layer ----------------------------------------------------------------------- */

/* Layer l (neither gemm nor run by a chain) of member g, its activations in owner a's units. */
poet_status net_dnnl_forward(poet_stack *s, const net_lane *lane, int g, int a, int l,
                             net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l), *act = unit(s, a, l);
    NET_DNNL(fault, net_pool_forward_views(s, lane, a, l), "buffer pool");
    if (layer->kind == POET_LAYER_BATCHNORM) {
        NET_DNNL(fault, net_batchnorm_run(s, lane, g, a, l, &layer->fwd), "batch normalisation");
        if (s->training) {
            NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
            net_batchnorm_update(s, g, l,
                                 (double)s->B * s->plan.layers[l].in.h * s->plan.layers[l].in.w);
        }
        return POET_OK;
    }
    if (layer->kind == POET_LAYER_ADD) {
        dnnl_exec_arg_t args[POET_MAX_INPUTS + 1];
        int n = s->plan.layers[l].n_inputs;
        for (int k = 0; k < n; k++)
            args[k] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + k, net_layer_input_at(s, a, l, k)};
        args[n] = (dnnl_exec_arg_t){DNNL_ARG_DST, act->dst};
        NET_DNNL(fault, net_op_run(lane, &layer->fwd, n + 1, args), "add");
        return POET_OK;
    }
    NET_DNNL(fault, net_refresh(lane, &layer->src_reorder, net_layer_input(s, a, l), act->src_copy),
             "input reorder");
    if (layer->fused) /* the producer applied it */
        return POET_OK;
    dnnl_memory_t src = net_layer_src(s, a, l);
    if (is_weight_layer(layer->kind)) {
        /* The weights change every step: refresh oneDNN's copy when its layout is not plain. */
        NET_DNNL(fault, net_refresh(lane, &layer->w_reorder, u->user_w, u->w_copy),
                 "weights reorder");
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, via(&layer->w_reorder, u->user_w, u->w_copy)},
                                  {DNNL_ARG_DST, act->dst},
                                  {DNNL_ARG_BIAS, u->user_b}};
        NET_DNNL(fault, net_op_run(lane, &layer->fwd, u->user_b ? 4 : 3, args), "forward");
    } else {
        dnnl_exec_arg_t args[] = {
            {DNNL_ARG_SRC, src}, {DNNL_ARG_DST, act->dst}, {DNNL_ARG_WORKSPACE, act->workspace}};
        NET_DNNL(fault, net_op_run(lane, &layer->fwd, act->workspace ? 3 : 2, args), "forward");
    }
    return POET_OK;
}

/* A fused relu's backward as a select: dL/d(input) = dL/d(output) where the output is > 0. */
static poet_status relu_loop_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                      net_fault *fault) {
    net_layer *layer = &s->layers[l];
    const net_scratch *x = &lane->layers[l];
    dnnl_memory_t dnext = net_layer_dnext(s, lane, l);
    NET_DNNL(fault, net_refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy),
             "gradient reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    const float *restrict d = memory_data(via(&layer->ddst_reorder, dnext, x->ddst_copy));
    const float *restrict y = memory_data(unit(s, g, l)->dst);
    float *restrict out = memory_data(x->dsrc);
    size_t n = dnnl_memory_desc_get_size(&layer->dst_md) / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        float v = d[i]; /* loaded unconditionally: the loop vectorises to a blend */
        out[i] = y[i] > 0.f ? v : 0.f;
    }
    return POET_OK;
}

/* dL/d(input) of layer l for member g, into the lane's dsrc. */
poet_status net_data_backward(poet_stack *s, const net_lane *lane, int g, int l, net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    if (layer->relu_loop)
        return relu_loop_backward(s, lane, g, l, fault);
    dnnl_memory_t dnext = net_layer_dnext(s, lane, l);
    NET_DNNL(fault, net_refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy),
             "gradient reorder");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, via(&layer->ddst_reorder, dnext, x->ddst_copy)},
                               {DNNL_ARG_DIFF_SRC, x->dsrc}};
    int n = 2;
    if (is_weight_layer(layer->kind)) {
        dnnl_memory_t w = via(&layer->w_reorder, u->user_w, u->w_copy);
        NET_DNNL(fault, net_refresh(lane, &layer->bwd_w_reorder, w, x->bwd_w_copy),
                 "weights reorder");
        args[n++] =
            (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, via(&layer->bwd_w_reorder, w, x->bwd_w_copy)};
    } else if (layer->kind == POET_LAYER_RELU) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, u->dst};
    } else if (u->workspace) { /* max pooling; average pooling needs neither */
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, u->workspace};
    }
    NET_DNNL(fault, net_op_run(lane, &layer->bwd, n, args), "backward data");
    return POET_OK;
}

/* Adds what landed in the lane's accumulate buffer to member g's gradient. */
void net_accumulate_into(poet_stack *s, const net_lane *lane, int g, const net_layer *layer) {
    float *gw = s->grads + (size_t)s->G * layer->w_offset + (size_t)g * layer->w_count;
    float *gb = s->grads + (size_t)s->G * layer->b_offset + (size_t)g * layer->b_count;
    const float *aw = lane->acc, *ab = lane->acc + layer->w_count;
    for (size_t i = 0; i < layer->w_count; i++)
        gw[i] += aw[i];
    for (size_t i = 0; i < layer->b_count; i++)
        gb[i] += ab[i];
}

/* dL/dW and dL/db of layer l for member g, into its grads (or added to them). */
poet_status net_weights_backward(poet_stack *s, const net_lane *lane, int g, int l, int accumulate,
                                 net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    dnnl_memory_t src = net_layer_src(s, g, l), dnext = net_layer_dnext(s, lane, l);
    dnnl_memory_t ddst = layer->needs_dsrc ? via(&layer->ddst_reorder, dnext, x->ddst_copy) : dnext;
    dnnl_memory_t plain_w = accumulate ? x->acc_w : u->grad_w;
    dnnl_memory_t plain_b = accumulate ? x->acc_b : u->grad_b;
    NET_DNNL(fault, net_refresh(lane, &layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy),
             "gradient reorder");
    NET_DNNL(fault, net_refresh(lane, &layer->bwdw_src_reorder, src, x->bwdw_src_copy),
             "input reorder");
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, via(&layer->bwdw_src_reorder, src, x->bwdw_src_copy)},
        {DNNL_ARG_DIFF_DST, via(&layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy)},
        {DNNL_ARG_DIFF_WEIGHTS, via(&layer->dw_reorder, plain_w, x->dw)},
        {DNNL_ARG_DIFF_BIAS, plain_b}}; /* last: left out for a layer without bias */
    NET_DNNL(fault, net_op_run(lane, &layer->bwdw, layer->b_count ? 4 : 3, args),
             "backward weights");
    NET_DNNL(fault, net_refresh(lane, &layer->dw_reorder, x->dw, plain_w),
             "weight gradient reorder");
    if (accumulate) {
        NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
        net_accumulate_into(s, lane, g, layer);
    }
    return POET_OK;
}
