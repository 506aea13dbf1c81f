/* net.c — a stack of G same-architecture members run as one chain of oneDNN primitives.
 *
 * Legend: B = batch, G = members in the stack, C/H/W = channels/height/width of one member's
 * activation, K = classes, O/I = a weight layer's output/input channels per member.
 *
 * Layer l of the stack maps activation a_l to a_{l+1}. Until the first weight layer (conv or
 * linear) every member sees the same images, so those layers run once on C channels ("shared");
 * the first weight layer is a plain convolution with G·O outputs, and from there on every
 * activation has G·C channels, member g owning channels [g·C, (g+1)·C). Later weight layers are
 * grouped convolutions with G groups; a linear layer is a convolution whose kernel is its whole
 * input, so its weight [O, C·H·W] is exactly an OIHW weight [O, C, H, W].
 *
 * Every primitive is created once in poet_stack_create for the fixed batch. Activations live in
 * the layouts oneDNN picks (format_tag_any, queried back); a reorder sits between two primitives
 * only where the producer's layout differs from what the consumer asked for (a "link"). The user's
 * parameters and gradients stay plain (stack layout = goihw / oihw and plain biases) and are
 * reordered at the edges. All scratch memory (oneDNN scratchpads included) is allocated here, so
 * forward and backward allocate nothing.
 */
#include "poet/net.h"

#include <dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* A primitive and the view of the stack's shared scratchpad buffer it runs with. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t scratchpad; /* NULL when the primitive needs none */
} net_op;

/* A consumer's view of a producer's memory: the memory itself when the layouts agree, else a
 * copy in the consumer's layout that `reorder` refreshes before each use. */
typedef struct {
    dnnl_memory_t from;  /* producer's memory (not owned) */
    dnnl_memory_t mem;   /* what the consumer reads: `from` or `owned` */
    dnnl_memory_t owned; /* NULL when no reorder is needed */
    net_op reorder;
} net_link;

typedef struct {
    poet_layer_kind kind;
    int has_backward; /* runs in backward at all (layers before the first weight layer do not) */
    int needs_dsrc;   /* backward must produce dL/d(input): some earlier layer has weights */

    /* forward */
    net_op fwd;
    net_link src;            /* a_l in fwd's src layout */
    dnnl_memory_t dst;       /* a_{l+1}, owned, in fwd's dst layout */
    dnnl_memory_t workspace; /* max pooling in training: where the maxima were */

    /* weight layers: user tensors (plain stack layout, not owned buffers) */
    dnnl_memory_t user_w; /* [G·O, I, kh, kw] or [G, O, I, kh, kw] over params */
    dnnl_memory_t user_b; /* [G·O] over params */
    net_link w;           /* user_w in fwd's weights layout, refreshed every forward */

    /* backward data (conv) / backward (relu, pool) */
    net_op bwd;
    dnnl_memory_desc_t bwd_ddst_md; /* layout bwd wants dL/da_{l+1} in */
    net_link ddst;                  /* dL/da_{l+1} in bwd's layout */
    net_link bwd_w;                 /* weights in bwd's layout (from w.mem) */
    dnnl_memory_t dsrc;             /* dL/da_l, owned, in bwd's diff_src layout */

    /* backward weights */
    net_op bwdw;
    dnnl_memory_desc_t bwdw_src_md, bwdw_ddst_md;
    net_link bwdw_src;               /* a_l in bwdw's layout (from src.mem) */
    net_link bwdw_ddst;              /* dL/da_{l+1} in bwdw's layout */
    dnnl_memory_t dw;                /* dL/dW in bwdw's layout when that is not plain, else NULL */
    net_op dw_reorder;               /* dw -> plain */
    dnnl_memory_t grad_w, grad_b;    /* plain, over the user's grads */
    dnnl_memory_t acc_w, acc_b;      /* plain, over the stack's accumulate buffer */
    size_t w_offset, w_count;        /* in the stack-layout buffers, all G members */
    size_t b_offset, b_count;
} net_layer;

#define NET_MAX_OPS (POET_MAX_LAYERS * 12 + 4)

struct poet_stack {
    poet_arch_plan plan;
    int G, B, training;
    int first_w; /* index of the first weight layer */
    float *params, *grads;

    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr; /* user-managed scratchpad for every primitive */

    net_layer *layers; /* [plan.n_layers] */

    dnnl_memory_t images;  /* [B, C, H, W] plain, owned copy of the caller's images */
    float *images_buf;     /* its data */
    dnnl_memory_t logits;  /* [B, G·K, 1, 1] plain: the last dst itself or a reordered copy */
    net_op logits_reorder; /* last dst -> logits, when the last dst is not plain */
    dnnl_memory_t dlogits; /* [B, G·K, 1, 1] plain, dL/dlogits broadcast to every member */
    float *dlogits_buf;

    float *acc;            /* gradients computed here before being added (accumulate = 1) */

    net_op *ops[NET_MAX_OPS]; /* every op, so their scratchpads can point into one buffer */
    int n_ops;
    size_t scratchpad_size;
    void *scratchpad;
};

/* ---- small helpers ---------------------------------------------------------------------------- */

static int is_weight_layer(poet_layer_kind kind) {
    return kind == POET_LAYER_CONV || kind == POET_LAYER_LINEAR;
}

static void activation_md(dnnl_memory_desc_t *md, int batch, int channels, int h, int w,
                          dnnl_format_tag_t tag, poet_status *st) {
    dnnl_dims_t dims = {batch, channels, h, w};
    if (dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag) != dnnl_success)
        *st = poet_error_set(POET_ERR_DNNL, "net.c: cannot describe activation [%d, %d, %d, %d]",
                             batch, channels, h, w);
}

static const dnnl_memory_desc_t *memory_md(dnnl_memory_t mem) {
    const dnnl_memory_desc_t *md = NULL;
    dnnl_memory_get_memory_desc(mem, &md);
    return md;
}

static void *memory_data(dnnl_memory_t mem) {
    void *handle = NULL;
    dnnl_memory_get_data_handle(mem, &handle);
    return handle;
}

/* Creates the primitive of `pd` and registers it for the shared scratchpad. */
static poet_status op_create(poet_stack *s, const_dnnl_primitive_desc_t pd, net_op *op) {
    poet_status st = POET_OK;
    if (s->n_ops == NET_MAX_OPS)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: more than %d primitives in one stack", NET_MAX_OPS);
    POET_DNNL(dnnl_primitive_create(&op->prim, pd));
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t size = md ? dnnl_memory_desc_get_size(md) : 0;
    if (size > 0) {
        /* The handle is set once the largest scratchpad, hence the shared buffer, is known. */
        POET_DNNL(dnnl_memory_create(&op->scratchpad, md, s->engine, DNNL_MEMORY_NONE));
        if (size > s->scratchpad_size)
            s->scratchpad_size = size;
    }
    s->ops[s->n_ops++] = op;
fail:
    return st;
}

static void op_destroy(net_op *op) {
    if (op->prim)
        dnnl_primitive_destroy(op->prim);
    if (op->scratchpad)
        dnnl_memory_destroy(op->scratchpad);
    op->prim = NULL;
    op->scratchpad = NULL;
}

/* Executes `op` with `args` plus its scratchpad. */
static poet_status op_run(poet_stack *s, const net_op *op, int nargs, const dnnl_exec_arg_t *args) {
    poet_status st = POET_OK;
    dnnl_exec_arg_t all[8];
    if (nargs > 7)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: %d arguments for one primitive (at most 7)", nargs);
    memcpy(all, args, (size_t)nargs * sizeof *args);
    if (op->scratchpad)
        all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, op->scratchpad};
    POET_DNNL(dnnl_primitive_execute(op->prim, s->stream, nargs, all));
fail:
    return st;
}

static poet_status reorder_create(poet_stack *s, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, net_op *op) {
    poet_status st = POET_OK;
    dnnl_primitive_desc_t pd = NULL;
    POET_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, s->engine, to, s->engine, s->attr));
    POET_TRY(op_create(s, pd, op));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

static poet_status reorder_run(poet_stack *s, const net_op *op, dnnl_memory_t from,
                               dnnl_memory_t to) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return op_run(s, op, 2, args);
}

/* Lets a consumer that wants layout `want` read `from`. */
static poet_status link_create(poet_stack *s, dnnl_memory_t from, const dnnl_memory_desc_t *want,
                               net_link *lk) {
    poet_status st = POET_OK;
    lk->from = from;
    lk->mem = from;
    if (dnnl_memory_desc_equal(memory_md(from), want))
        return POET_OK;
    POET_DNNL(dnnl_memory_create(&lk->owned, want, s->engine, DNNL_MEMORY_ALLOCATE));
    lk->mem = lk->owned;
    POET_TRY(reorder_create(s, memory_md(from), want, &lk->reorder));
fail:
    return st;
}

/* Brings the consumer's copy up to date with the producer (nothing when they share memory). */
static poet_status link_run(poet_stack *s, const net_link *lk) {
    if (!lk->owned)
        return POET_OK;
    return reorder_run(s, &lk->reorder, lk->from, lk->owned);
}

static void link_destroy(net_link *lk) {
    op_destroy(&lk->reorder);
    if (lk->owned)
        dnnl_memory_destroy(lk->owned);
    lk->owned = NULL;
}

static poet_status memory_alloc(poet_stack *s, const dnnl_memory_desc_t *md, dnnl_memory_t *mem) {
    poet_status st = POET_OK;
    POET_DNNL(dnnl_memory_create(mem, md, s->engine, DNNL_MEMORY_ALLOCATE));
fail:
    return st;
}

/* Channel multiplicity of layer l's input and output: 1 while the images are shared. */
static int in_mult(const poet_stack *s, int l) { return l <= s->first_w ? 1 : s->G; }
static int out_mult(const poet_stack *s, int l) { return l < s->first_w ? 1 : s->G; }

/* oneDNN wants padding on both sides; PyTorch floors the output size, which oneDNN's integer
 * division reproduces with symmetric padding. Checks that the plan agrees. */
static poet_status check_window(const poet_layer_plan *lp, int l) {
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

/* ---- weight layers: convolution and linear ---------------------------------------------------- */

/* Describes a weight layer's weights (stack layout when `tag` is plain) and bias. */
static poet_status weight_mds(const poet_stack *s, int l, dnnl_format_tag_t tag,
                              dnnl_memory_desc_t *w_md, dnnl_memory_desc_t *b_md) {
    poet_status st = POET_OK;
    const poet_layer_plan *lp = &s->plan.layers[l];
    int G = s->G, O = lp->out.c, I = lp->in.c;
    int grouped = l > s->first_w && G > 1;
    if (grouped) {
        dnnl_dims_t dims = {G, O, I, lp->kernel_h, lp->kernel_w};
        POET_DNNL(dnnl_memory_desc_init_by_tag(w_md, 5, dims, dnnl_f32,
                                               tag == dnnl_format_tag_any ? tag : dnnl_goihw));
    } else {
        /* The first weight layer sees shared images: G·O plain outputs; G = 1 needs no groups. */
        dnnl_dims_t dims = {(dnnl_dim_t)O * out_mult(s, l), I, lp->kernel_h, lp->kernel_w};
        POET_DNNL(dnnl_memory_desc_init_by_tag(w_md, 4, dims, dnnl_f32,
                                               tag == dnnl_format_tag_any ? tag : dnnl_oihw));
    }
    dnnl_dims_t bdims = {(dnnl_dim_t)O * out_mult(s, l)};
    POET_DNNL(dnnl_memory_desc_init_by_tag(b_md, 1, bdims, dnnl_f32, dnnl_x));
fail:
    return st;
}

static poet_status primitive_desc(poet_stack *s, const void *desc, const_dnnl_primitive_desc_t hint,
                                  dnnl_primitive_desc_t *pd, int l, const char *what) {
    if (dnnl_primitive_desc_create(pd, desc, s->attr, s->engine, hint) != dnnl_success)
        return poet_error_set(POET_ERR_DNNL, "net.c: layer %d: oneDNN has no %s primitive for "
                                             "these shapes (G=%d, B=%d)",
                              l, what, s->G, s->B);
    return POET_OK;
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* The conv's parameters: plain memories over the user's params and grads, and the forward
 * weights link (user layout -> the layout fwd chose). */
static poet_status conv_params(poet_stack *s, int l, const_dnnl_primitive_desc_t fwd_pd) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    const poet_tensor_info *tw = &s->plan.tensors[s->plan.layers[l].weight_tensor];
    const poet_tensor_info *tb = tw + 1;
    dnnl_memory_desc_t w_md, b_md;
    POET_TRY(weight_mds(s, l, dnnl_oihw, &w_md, &b_md));
    L->w_offset = (size_t)s->G * tw->offset;
    L->w_count = (size_t)s->G * tw->count;
    L->b_offset = (size_t)s->G * tb->offset;
    L->b_count = (size_t)s->G * tb->count;
    if (dnnl_memory_desc_get_size(&w_md) != L->w_count * sizeof(float) ||
        dnnl_memory_desc_get_size(&b_md) != L->b_count * sizeof(float))
        POET_FAIL(POET_ERR_INTERNAL, "net.c: layer %d: tensor %s has %zu elements, the layer's "
                                     "shape needs %zu",
                  l, tw->name, tw->count, dnnl_memory_desc_get_size(&w_md) / sizeof(float) / s->G);
    POET_DNNL(dnnl_memory_create(&L->user_w, &w_md, s->engine, s->params + L->w_offset));
    POET_DNNL(dnnl_memory_create(&L->user_b, &b_md, s->engine, s->params + L->b_offset));
    POET_TRY(link_create(s, L->user_w, query(fwd_pd, dnnl_query_weights_md), &L->w));
    if (s->training) {
        POET_DNNL(dnnl_memory_create(&L->grad_w, &w_md, s->engine, s->grads + L->w_offset));
        POET_DNNL(dnnl_memory_create(&L->grad_b, &b_md, s->engine, s->grads + L->b_offset));
    }
fail:
    return st;
}

/* Backward weights: dL/dW and dL/db. When oneDNN's diff-weights layout is not plain, it writes
 * into `dw` and a reorder brings the result to the user's stack layout. */
static poet_status conv_backward_weights(poet_stack *s, int l, const dnnl_convolution_desc_t *fd,
                                         const_dnnl_primitive_desc_t fwd_pd) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t desc;
    dnnl_memory_desc_t src_any = fd->src_desc, dst_any = fd->dst_desc, w_any, b_md, w_plain;
    src_any.format_kind = dnnl_format_kind_any;
    dst_any.format_kind = dnnl_format_kind_any;
    POET_TRY(weight_mds(s, l, dnnl_format_tag_any, &w_any, &b_md));
    POET_TRY(weight_mds(s, l, dnnl_oihw, &w_plain, &b_md));
    POET_DNNL(dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &src_any,
                                                          &w_any, &b_md, &dst_any, fd->strides,
                                                          fd->padding[0], fd->padding[1]));
    POET_TRY(primitive_desc(s, &desc, fwd_pd, &pd, l, "convolution backward-weights"));
    POET_TRY(op_create(s, pd, &L->bwdw));
    L->bwdw_src_md = *query(pd, dnnl_query_src_md);
    L->bwdw_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *dw_md = query(pd, dnnl_query_diff_weights_md);
    if (!dnnl_memory_desc_equal(dw_md, &w_plain)) {
        POET_TRY(memory_alloc(s, dw_md, &L->dw));
        POET_TRY(reorder_create(s, dw_md, &w_plain, &L->dw_reorder));
    }
    POET_DNNL(dnnl_memory_create(&L->acc_w, &w_plain, s->engine, s->acc));
    POET_DNNL(dnnl_memory_create(&L->acc_b, &b_md, s->engine, s->acc + L->w_count));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* Backward data: dL/d(input) from dL/d(output) and the weights. */
static poet_status conv_backward_data(poet_stack *s, int l, const dnnl_convolution_desc_t *fd,
                                      const_dnnl_primitive_desc_t fwd_pd) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t desc;
    dnnl_memory_desc_t src_any = fd->src_desc, dst_any = fd->dst_desc, w_any, b_md;
    src_any.format_kind = dnnl_format_kind_any;
    dst_any.format_kind = dnnl_format_kind_any;
    POET_TRY(weight_mds(s, l, dnnl_format_tag_any, &w_any, &b_md));
    POET_DNNL(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &src_any,
                                                       &w_any, &dst_any, fd->strides,
                                                       fd->padding[0], fd->padding[1]));
    POET_TRY(primitive_desc(s, &desc, fwd_pd, &pd, l, "convolution backward-data"));
    POET_TRY(op_create(s, pd, &L->bwd));
    L->bwd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    POET_TRY(memory_alloc(s, query(pd, dnnl_query_diff_src_md), &L->dsrc));
    /* Forward leaves the current weights in w.mem; backward reads them from there. */
    POET_TRY(link_create(s, L->w.mem, query(pd, dnnl_query_weights_md), &L->bwd_w));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* A convolution or linear layer reading `prev` (a_l). */
static poet_status conv_create(poet_stack *s, int l, dnnl_memory_t prev) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    int linear = lp->kind == POET_LAYER_LINEAR;
    int stride = linear ? 1 : lp->stride, pad = linear ? 0 : lp->padding;
    if (!linear)
        POET_TRY(check_window(lp, l));
    dnnl_memory_desc_t src_any, dst_any, w_any, b_md;
    activation_md(&src_any, s->B, lp->in.c * in_mult(s, l), lp->in.h, lp->in.w,
                  dnnl_format_tag_any, &st);
    activation_md(&dst_any, s->B, lp->out.c * out_mult(s, l), lp->out.h, lp->out.w,
                  dnnl_format_tag_any, &st);
    if (st != POET_OK)
        goto fail;
    POET_TRY(weight_mds(s, l, dnnl_format_tag_any, &w_any, &b_md));
    dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
    dnnl_convolution_desc_t desc;
    dnnl_prop_kind_t prop = s->training ? dnnl_forward_training : dnnl_forward_inference;
    POET_DNNL(dnnl_convolution_forward_desc_init(&desc, prop, dnnl_convolution_direct, &src_any,
                                                 &w_any, &b_md, &dst_any, strides, padding,
                                                 padding));
    POET_TRY(primitive_desc(s, &desc, NULL, &pd, l, linear ? "linear" : "convolution"));
    POET_TRY(op_create(s, pd, &L->fwd));
    POET_TRY(link_create(s, prev, query(pd, dnnl_query_src_md), &L->src));
    POET_TRY(memory_alloc(s, query(pd, dnnl_query_dst_md), &L->dst));
    POET_TRY(conv_params(s, l, pd));
    if (s->training) {
        POET_TRY(conv_backward_weights(s, l, &desc, pd));
        if (L->needs_dsrc)
            POET_TRY(conv_backward_data(s, l, &desc, pd));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* ---- relu and pooling: per-channel, so they work in whatever layout the producer chose -------- */

static poet_status relu_create(poet_stack *s, int l, dnnl_memory_t prev) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL, bpd = NULL;
    const dnnl_memory_desc_t *md = memory_md(prev);
    dnnl_eltwise_desc_t desc, bdesc;
    dnnl_prop_kind_t prop = L->has_backward ? dnnl_forward_training : dnnl_forward_inference;
    POET_DNNL(dnnl_eltwise_forward_desc_init(&desc, prop, dnnl_eltwise_relu, md, 0.f, 0.f));
    POET_TRY(primitive_desc(s, &desc, NULL, &pd, l, "relu"));
    POET_TRY(op_create(s, pd, &L->fwd));
    POET_TRY(link_create(s, prev, md, &L->src));
    POET_TRY(memory_alloc(s, query(pd, dnnl_query_dst_md), &L->dst));
    if (L->has_backward) {
        POET_DNNL(dnnl_eltwise_backward_desc_init(&bdesc, dnnl_eltwise_relu, md, md, 0.f, 0.f));
        POET_TRY(primitive_desc(s, &bdesc, pd, &bpd, l, "relu backward"));
        POET_TRY(op_create(s, bpd, &L->bwd));
        L->bwd_ddst_md = *query(bpd, dnnl_query_diff_dst_md);
        POET_TRY(memory_alloc(s, query(bpd, dnnl_query_diff_src_md), &L->dsrc));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return st;
}

static poet_status pool_create(poet_stack *s, int l, dnnl_memory_t prev) {
    poet_status st = POET_OK;
    net_layer *L = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL, bpd = NULL;
    const dnnl_memory_desc_t *src_md = memory_md(prev);
    dnnl_memory_desc_t dst_any;
    POET_TRY(check_window(lp, l));
    activation_md(&dst_any, s->B, lp->out.c * out_mult(s, l), lp->out.h, lp->out.w,
                  dnnl_format_tag_any, &st);
    if (st != POET_OK)
        goto fail;
    /* PyTorch's AvgPool2d counts the padding (count_include_pad=True); with floored output sizes
     * no window reaches past the padding, so the divisor is always kh·kw, as here. */
    dnnl_alg_kind_t alg = lp->kind == POET_LAYER_MAX_POOL ? dnnl_pooling_max
                                                          : dnnl_pooling_avg_include_padding;
    dnnl_dims_t strides = {lp->stride, lp->stride}, kernel = {lp->kernel_h, lp->kernel_w};
    dnnl_dims_t dilation = {0, 0}, padding = {lp->padding, lp->padding};
    dnnl_pooling_v2_desc_t desc, bdesc;
    dnnl_prop_kind_t prop = L->has_backward ? dnnl_forward_training : dnnl_forward_inference;
    POET_DNNL(dnnl_pooling_v2_forward_desc_init(&desc, prop, alg, src_md, &dst_any, strides,
                                                kernel, dilation, padding, padding));
    POET_TRY(primitive_desc(s, &desc, NULL, &pd, l, "pooling"));
    POET_TRY(op_create(s, pd, &L->fwd));
    POET_TRY(link_create(s, prev, src_md, &L->src));
    const dnnl_memory_desc_t *dst_md = query(pd, dnnl_query_dst_md);
    POET_TRY(memory_alloc(s, dst_md, &L->dst));
    const dnnl_memory_desc_t *ws_md = query(pd, dnnl_query_workspace_md);
    if (ws_md && dnnl_memory_desc_get_size(ws_md) > 0)
        POET_TRY(memory_alloc(s, ws_md, &L->workspace));
    if (L->has_backward) {
        POET_DNNL(dnnl_pooling_v2_backward_desc_init(&bdesc, alg, src_md, dst_md, strides, kernel,
                                                     dilation, padding, padding));
        POET_TRY(primitive_desc(s, &bdesc, pd, &bpd, l, "pooling backward"));
        POET_TRY(op_create(s, bpd, &L->bwd));
        L->bwd_ddst_md = *query(bpd, dnnl_query_diff_dst_md);
        POET_TRY(memory_alloc(s, query(bpd, dnnl_query_diff_src_md), &L->dsrc));
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return st;
}

/* ---- create / destroy ------------------------------------------------------------------------- */

/* The backward links of every layer, once every layer's dL/d(input) memory exists: layer l reads
 * dL/da_{l+1} from layer l+1's dsrc, the last layer from the broadcast dlogits. */
static poet_status backward_links(poet_stack *s) {
    poet_status st = POET_OK;
    for (int l = s->plan.n_layers - 1; l >= s->first_w; l--) {
        net_layer *L = &s->layers[l];
        dnnl_memory_t next = l == s->plan.n_layers - 1 ? s->dlogits : s->layers[l + 1].dsrc;
        if (L->bwd.prim)
            POET_TRY(link_create(s, next, &L->bwd_ddst_md, &L->ddst));
        if (L->bwdw.prim) {
            /* Take bwd's copy when there is one: usually the layouts agree and nothing is copied. */
            POET_TRY(link_create(s, L->bwd.prim ? L->ddst.mem : next, &L->bwdw_ddst_md,
                                 &L->bwdw_ddst));
            POET_TRY(link_create(s, L->src.mem, &L->bwdw_src_md, &L->bwdw_src));
        }
    }
fail:
    return st;
}

/* Plain logits: the last layer's dst itself when oneDNN chose plain, else a reordered copy. */
static poet_status output_create(poet_stack *s) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t plain;
    dnnl_memory_t last = s->layers[s->plan.n_layers - 1].dst;
    activation_md(&plain, s->B, s->G * s->plan.classes, 1, 1, dnnl_nchw, &st);
    if (st != POET_OK)
        goto fail;
    if (dnnl_memory_desc_equal(memory_md(last), &plain)) {
        s->logits = last;
        return POET_OK;
    }
    POET_TRY(memory_alloc(s, &plain, &s->logits));
    POET_TRY(reorder_create(s, memory_md(last), &plain, &s->logits_reorder));
fail:
    return st;
}

/* Checks what the stack relies on: a weight layer, K×1×1 logits, tensors where the plan says. */
static poet_status check_plan(const poet_arch_plan *plan, int members, int batch, int *first_w) {
    *first_w = -1;
    for (int l = plan->n_layers - 1; l >= 0; l--)
        if (is_weight_layer(plan->layers[l].kind))
            *first_w = l;
    if (members < 1 || batch < 1)
        return poet_error_set(POET_ERR_INTERNAL, "net.c: stack of %d members, batch %d: expected "
                                                 "both >= 1",
                              members, batch);
    if (plan->n_layers < 1 || *first_w < 0)
        return poet_error_set(POET_ERR_CONFIG, "net.c: architecture has no conv or linear layer; "
                                               "a stack needs at least one layer with parameters");
    const poet_shape *out = &plan->layers[plan->n_layers - 1].out;
    if (out->c != plan->classes || out->h != 1 || out->w != 1)
        return poet_error_set(POET_ERR_INTERNAL, "net.c: network ends in %dx%dx%d, expected %dx1x1 "
                                                 "logits",
                              out->c, out->h, out->w, plan->classes);
    for (int l = 0; l < plan->n_layers; l++) {
        int t = plan->layers[l].weight_tensor;
        if (is_weight_layer(plan->layers[l].kind) && (t < 0 || t + 1 >= plan->n_tensors))
            return poet_error_set(POET_ERR_INTERNAL, "net.c: layer %d has weight tensor %d of %d",
                                  l, t, plan->n_tensors);
    }
    return POET_OK;
}

/* Points every op's scratchpad at one buffer: ops run one at a time on the stack's stream. */
static poet_status scratchpad_create(poet_stack *s) {
    poet_status st = POET_OK;
    if (s->scratchpad_size == 0)
        return POET_OK;
    s->scratchpad = aligned_alloc(64, (s->scratchpad_size + 63) / 64 * 64);
    if (!s->scratchpad)
        POET_FAIL(POET_ERR_NOMEM, "net.c: out of memory allocating a %zu-byte scratchpad",
                  s->scratchpad_size);
    for (int i = 0; i < s->n_ops; i++)
        if (s->ops[i]->scratchpad)
            POET_DNNL(dnnl_memory_set_data_handle(s->ops[i]->scratchpad, s->scratchpad));
fail:
    return st;
}

static poet_status layers_create(poet_stack *s) {
    poet_status st = POET_OK;
    dnnl_memory_t prev = s->images;
    for (int l = 0; l < s->plan.n_layers; l++) {
        net_layer *L = &s->layers[l];
        L->kind = s->plan.layers[l].kind;
        L->has_backward = s->training && l >= s->first_w;
        L->needs_dsrc = s->training && l > s->first_w;
        switch (L->kind) {
        case POET_LAYER_CONV:
        case POET_LAYER_LINEAR: POET_TRY(conv_create(s, l, prev)); break;
        case POET_LAYER_RELU: POET_TRY(relu_create(s, l, prev)); break;
        case POET_LAYER_AVG_POOL:
        case POET_LAYER_MAX_POOL: POET_TRY(pool_create(s, l, prev)); break;
        default: POET_FAIL(POET_ERR_INTERNAL, "net.c: layer %d has unknown kind %d", l, L->kind);
        }
        prev = L->dst;
    }
fail:
    return st;
}

static size_t max_weight_layer_count(const poet_stack *s) {
    size_t most = 0;
    for (int l = 0; l < s->plan.n_layers; l++) {
        int t = s->plan.layers[l].weight_tensor;
        if (is_weight_layer(s->plan.layers[l].kind)) {
            size_t n = (size_t)s->G * (s->plan.tensors[t].count + s->plan.tensors[t + 1].count);
            if (n > most)
                most = n;
        }
    }
    return most;
}

poet_status poet_stack_create(const poet_arch_plan *plan, int members, int batch, int training,
                              float *params, float *grads, poet_stack **out) {
    poet_status st = POET_OK;
    poet_stack *s = NULL;
    *out = NULL;
    int first_w;
    POET_TRY(check_plan(plan, members, batch, &first_w));
    if (!params || (training && !grads))
        POET_FAIL(POET_ERR_INTERNAL, "net.c: stack needs a params%s buffer",
                  training ? " and a grads" : "");
    POET_ALLOC(s, 1);
    s->plan = *plan;
    s->G = members;
    s->B = batch;
    s->training = training;
    s->first_w = first_w;
    s->params = params;
    s->grads = grads;
    POET_ALLOC(s->layers, plan->n_layers);
    if (training)
        POET_ALLOC(s->acc, max_weight_layer_count(s));
    POET_DNNL(dnnl_engine_create(&s->engine, dnnl_cpu, 0));
    POET_DNNL(dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags));
    POET_DNNL(dnnl_primitive_attr_create(&s->attr));
    POET_DNNL(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user));

    dnnl_memory_desc_t md;
    activation_md(&md, batch, plan->input.c, plan->input.h, plan->input.w, dnnl_nchw, &st);
    if (st != POET_OK)
        goto fail;
    POET_TRY(memory_alloc(s, &md, &s->images));
    s->images_buf = memory_data(s->images);
    POET_TRY(layers_create(s));
    POET_TRY(output_create(s));
    if (training) {
        activation_md(&md, batch, members * plan->classes, 1, 1, dnnl_nchw, &st);
        if (st != POET_OK)
            goto fail;
        POET_TRY(memory_alloc(s, &md, &s->dlogits));
        s->dlogits_buf = memory_data(s->dlogits);
    }
    if (training)
        POET_TRY(backward_links(s));
    POET_TRY(scratchpad_create(s));
    *out = s;
    return POET_OK;
fail:
    poet_stack_destroy(s);
    return st;
}

static void layer_destroy(net_layer *L) {
    dnnl_memory_t mems[] = {L->dst,    L->workspace, L->user_w, L->user_b, L->dsrc, L->dw,
                            L->grad_w, L->grad_b,    L->acc_w,  L->acc_b};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    net_link *links[] = {&L->src, &L->w, &L->ddst, &L->bwd_w, &L->bwdw_src, &L->bwdw_ddst};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        link_destroy(links[i]);
    op_destroy(&L->fwd);
    op_destroy(&L->bwd);
    op_destroy(&L->bwdw);
    op_destroy(&L->dw_reorder);
}

void poet_stack_destroy(poet_stack *s) {
    if (!s)
        return;
    if (s->layers) {
        /* The logits memory is the last dst itself when no reorder was needed. */
        if (s->logits && s->logits != s->layers[s->plan.n_layers - 1].dst)
            dnnl_memory_destroy(s->logits);
        for (int l = 0; l < s->plan.n_layers; l++)
            layer_destroy(&s->layers[l]);
    }
    op_destroy(&s->logits_reorder);
    if (s->images)
        dnnl_memory_destroy(s->images);
    if (s->dlogits)
        dnnl_memory_destroy(s->dlogits);
    if (s->attr)
        dnnl_primitive_attr_destroy(s->attr);
    if (s->stream)
        dnnl_stream_destroy(s->stream);
    if (s->engine)
        dnnl_engine_destroy(s->engine);
    free(s->scratchpad);
    free(s->acc);
    free(s->layers);
    free(s);
}

int poet_stack_members(const poet_stack *s) { return s->G; }
int poet_stack_batch(const poet_stack *s) { return s->B; }

/* ---- forward ---------------------------------------------------------------------------------- */

static poet_status layer_forward(poet_stack *s, net_layer *L) {
    poet_status st = POET_OK;
    POET_TRY(link_run(s, &L->src));
    if (is_weight_layer(L->kind)) {
        /* The weights change every step: refresh oneDNN's copy when its layout is not plain. */
        POET_TRY(link_run(s, &L->w));
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, L->src.mem},
                                  {DNNL_ARG_WEIGHTS, L->w.mem},
                                  {DNNL_ARG_BIAS, L->user_b},
                                  {DNNL_ARG_DST, L->dst}};
        POET_TRY(op_run(s, &L->fwd, 4, args));
    } else {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, L->src.mem},
                                  {DNNL_ARG_DST, L->dst},
                                  {DNNL_ARG_WORKSPACE, L->workspace}};
        POET_TRY(op_run(s, &L->fwd, L->workspace ? 3 : 2, args));
    }
fail:
    return st;
}

poet_status poet_stack_forward(poet_stack *s, const float *images, float *logits) {
    poet_status st = POET_OK;
    const poet_shape *in = &s->plan.input;
    /* Our own copy: backward of the first layer reads the images after the caller moved on. */
    memcpy(s->images_buf, images, (size_t)s->B * in->c * in->h * in->w * sizeof(float));
    for (int l = 0; l < s->plan.n_layers; l++)
        POET_TRY(layer_forward(s, &s->layers[l]));
    if (s->logits_reorder.prim)
        POET_TRY(reorder_run(s, &s->logits_reorder, s->layers[s->plan.n_layers - 1].dst,
                             s->logits));
    POET_DNNL(dnnl_stream_wait(s->stream));
    memcpy(logits, memory_data(s->logits), (size_t)s->B * s->G * s->plan.classes * sizeof(float));
fail:
    return st;
}

/* ---- backward --------------------------------------------------------------------------------- */

/* dL/dW and dL/db of a weight layer into the user's grads (or the accumulate buffer first). */
static poet_status weights_backward(poet_stack *s, net_layer *L, int accumulate) {
    poet_status st = POET_OK;
    dnnl_memory_t plain_w = accumulate ? L->acc_w : L->grad_w;
    dnnl_memory_t plain_b = accumulate ? L->acc_b : L->grad_b;
    POET_TRY(link_run(s, &L->bwdw_src));
    POET_TRY(link_run(s, &L->bwdw_ddst));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, L->bwdw_src.mem},
                              {DNNL_ARG_DIFF_DST, L->bwdw_ddst.mem},
                              {DNNL_ARG_DIFF_WEIGHTS, L->dw ? L->dw : plain_w},
                              {DNNL_ARG_DIFF_BIAS, plain_b}};
    POET_TRY(op_run(s, &L->bwdw, 4, args));
    if (L->dw)
        POET_TRY(reorder_run(s, &L->dw_reorder, L->dw, plain_w));
    if (accumulate) {
        POET_DNNL(dnnl_stream_wait(s->stream));
        float *gw = s->grads + L->w_offset, *gb = s->grads + L->b_offset;
        const float *aw = s->acc, *ab = s->acc + L->w_count;
        for (size_t i = 0; i < L->w_count; i++)
            gw[i] += aw[i];
        for (size_t i = 0; i < L->b_count; i++)
            gb[i] += ab[i];
    }
fail:
    return st;
}

/* dL/d(input) of layer L from dL/d(output). */
static poet_status data_backward(poet_stack *s, net_layer *L) {
    poet_status st = POET_OK;
    POET_TRY(link_run(s, &L->ddst));
    if (is_weight_layer(L->kind)) {
        POET_TRY(link_run(s, &L->bwd_w));
        dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, L->ddst.mem},
                                  {DNNL_ARG_WEIGHTS, L->bwd_w.mem},
                                  {DNNL_ARG_DIFF_SRC, L->dsrc}};
        POET_TRY(op_run(s, &L->bwd, 3, args));
    } else {
        /* relu reads its input; max pooling reads the workspace; avg pooling neither. */
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, L->ddst.mem}, {DNNL_ARG_DIFF_SRC, L->dsrc}};
        int n = 2;
        if (L->kind == POET_LAYER_RELU)
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, L->src.mem};
        else if (L->workspace)
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, L->workspace};
        POET_TRY(op_run(s, &L->bwd, n, args));
    }
fail:
    return st;
}

poet_status poet_stack_backward(poet_stack *s, const float *dlogits, int accumulate) {
    poet_status st = POET_OK;
    int G = s->G, K = s->plan.classes;
    if (!s->training)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: backward on a stack created for inference");
    /* Every member receives the same ensemble gradient: dlogits_buf[b][g][k] = dlogits[b][k]. */
    for (int b = 0; b < s->B; b++)
        for (int g = 0; g < G; g++)
            memcpy(s->dlogits_buf + ((size_t)b * G + g) * K, dlogits + (size_t)b * K,
                   (size_t)K * sizeof(float));
    /* Backward runs the layers in reverse order, down to the first layer with weights: nothing
     * before it has parameters, and nobody needs dL/d(images). */
    for (int l = s->plan.n_layers - 1; l >= s->first_w; l--) {
        net_layer *L = &s->layers[l];
        if (L->needs_dsrc)
            POET_TRY(data_backward(s, L));
        if (is_weight_layer(L->kind))
            POET_TRY(weights_backward(s, L, accumulate));
    }
    POET_DNNL(dnnl_stream_wait(s->stream));
fail:
    return st;
}

/* ---- member views and threads ----------------------------------------------------------------- */

void poet_stack_member_get(const poet_arch_plan *plan, int members, const float *stack_buf, int g,
                           float *member_buf) {
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *ti = &plan->tensors[t];
        memcpy(member_buf + ti->offset, stack_buf + (size_t)members * ti->offset + g * ti->count,
               ti->count * sizeof(float));
    }
}

void poet_stack_member_set(const poet_arch_plan *plan, int members, float *stack_buf, int g,
                           const float *member_buf) {
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *ti = &plan->tensors[t];
        memcpy(stack_buf + (size_t)members * ti->offset + g * ti->count, member_buf + ti->offset,
               ti->count * sizeof(float));
    }
}

void poet_net_set_threads(int threads) {
    if (threads >= 1)
        omp_set_num_threads(threads);
}
