/* net.c — a stack of G same-architecture members run as chains of oneDNN primitives.
 *
 * Legend: B = batch, G = members in the stack, L = layers, T = lanes (threads), C/H/W =
 * channels/height/width of one member's activation (HW = H·W pixels), K = classes, O/I = a weight
 * layer's output/input channels. Capitals are only these sizes: a layer is `layer` (index l),
 * a lane `lane`, t indexes parameter tensors.
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
 * scratchpad and the transient backward buffers its members take turns with. A stack of G members
 * uses at most G threads: fuse members (G >= threads) to use every core. The thread count and the
 * convolution algorithm are the stack's own, fixed at creation (poet_stack_options).
 *
 * Why not one grouped convolution over G·C channels (the first design), and the other layouts and
 * kernels that were measured and not kept: bench/README.md, "Tried and not kept".
 *
 * Layouts: weight layers use nhwc activations when their input has >= 8 channels and oneDNN has
 * optimised kernels for that (activation_tag), else the layouts oneDNN picks (format_tag_any,
 * queried back); relu and pooling work in the layout of the weight layer they feed
 * (elementwise_layout). A reorder sits between two primitives only where the producer's layout
 * differs from what the consumer asked for. The user's parameters and gradients
 * are plain (member g's OIHW tensor inside the stack layout is contiguous) and reordered at the
 * edges. Everything, oneDNN scratchpads included, is allocated in poet_stack_create: forward and
 * backward allocate nothing.
 *
 * Fusion: relu right after a conv/linear layer is that layer's post-op (bitwise the same: relu is
 * exact); the relu layer keeps only its backward, which reads the post-relu output, and its
 * layout's reorder, if any.
 *
 * Convolutions ("gemm", the default; poet_stack_options.convolution): a conv or linear layer (a
 * convolution whose kernel covers its input) has no oneDNN primitives but runs as im2col +
 * dnnl_sgemm + col2im (gemmconv.h) on the lane's thread, nhwc in and out, its weights rearranged
 * into gemm layout each forward (faster on the reference network, linear layers included:
 * bench/README.md). Its input is read in place when plain (the images, nhwc activations); the
 * first weight layer's im2col matrix is built once per batch by each thread for all its members
 * (run_members). A fused relu just before it is "folded":
 * its backward is the mask in the convolution's col2im. Fused relus whose layouts agree run
 * backward as a select loop (oneDNN's eltwise backward was ~3x slower here).
 *
 * Chains (chains_create): consecutive gemm convolutions run chunk by chunk of images, every layer
 * of the chain on a chunk while it is in cache; only the chain's last output is stored, and
 * backward recomputes the inner outputs chunk by chunk (from the weights copied at forward), then
 * rebuilds each chunk's im2col matrix instead of keeping the batch's. The step is memory-bound:
 * on the reference network this moves a fraction of the bytes per member and step, runs faster on
 * two threads and keeps a sixth of the memory per member (figures in bench/README.md). A chain
 * that ends in relu and global average pooling (the reference network) runs those too, chunk by
 * chunk (chain_pool_create, pool.h): its output then never leaves the cache; a one-byte relu mask
 * per element is all that backward keeps of it.
 */
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask */
#include "poet/net.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>

#include <stdlib.h>
#include <string.h>

#include "poet/dnnlerror.h"
#include "poet/gemmconv.h"
#include "poet/pool.h"

/* A primitive; `pad` indexes its scratchpad view in every lane (-1: it needs none). */
typedef struct {
    dnnl_primitive_t prim; /* NULL: not needed (for reorders: the two layouts agree) */
    int pad;
} net_op;

/* Layer l's primitives and layouts, shared by all members and lanes. A reorder op with a NULL
 * primitive means the consumer reads the producer's memory directly. */
typedef struct {
    poet_layer_kind kind;
    int needs_dsrc; /* backward produces dL/da_l: an earlier layer has weights */
    /* A weight layer followed by relu applies it as a post-op (relu_after); that relu layer
     * (fused) then has no forward primitive: its output is its input, reordered to its layout
     * when needed, and its backward reads that output (relu'(x) from relu(x) > 0). */
    int relu_after, fused;

    net_op fwd, bwd, bwdw; /* bwd: backward data (conv) or backward (relu, pool) */
    dnnl_memory_desc_t src_md, dst_md, ws_md; /* fwd's layouts; ws_md size 0 without workspace */
    dnnl_memory_desc_t w_md;                  /* fwd's weights layout */
    dnnl_format_tag_t tag; /* weight layers: their activations' layout (nhwc, or oneDNN's pick) */
    net_op src_reorder;    /* a_l (producer layout) -> src_md */
    net_op w_reorder;      /* plain weights -> w_md, refreshed every forward */

    dnnl_memory_desc_t bwd_ddst_md, bwd_w_md, dsrc_md;   /* bwd's layouts */
    dnnl_memory_desc_t bwdw_src_md, bwdw_ddst_md, dw_md; /* bwdw's layouts */
    net_op ddst_reorder;                                 /* dL/da_{l+1} -> bwd_ddst_md */
    net_op bwd_w_reorder;                                /* w_md -> bwd_w_md */
    net_op bwdw_src_reorder;                             /* src_md -> bwdw_src_md */
    net_op bwdw_ddst_reorder; /* dL/da_{l+1} (bwd's copy when bwd runs) -> bwdw_ddst_md */
    net_op dw_reorder;        /* dw_md -> plain */

    size_t w_offset, w_count; /* weight tensor: offset in member layout, elements per member */
    size_t b_offset, b_count; /* bias tensor */

    /* A convolution run as im2col + sgemm (gemmconv.h): no fwd/bwd/bwdw primitives; nhwc output
     * and dL/d(input); reads its input through in_strides (src_md, or the nhwc src_copy). */
    int gemm;
    poet_conv_shape shape;
    poet_strides in_strides;
    int shared_col; /* the first weight layer: its im2col matrix is the same for every member */
    int fold_relu;  /* its backward data also applies the backward of the fused relu before it */
    /* Consecutive gemm convolutions (with at most a relu between two) form a chain that
     * runs chunk by chunk of images, all its layers on one chunk before the next (chain_create):
     * a chunk's activations, im2col matrices and gradients stay in the core's cache. */
    int chain_first, chain_last; /* the chain's first and last gemm layers */
    int chunk;                   /* images per chunk, the same for the whole chain */
    int inner;  /* in a chain before its last gemm layer: the output lives only in a lane's chunk
                 * buffer, before its fused relu (the next layer's im2col applies that), and
                 * backward recomputes it; no unit dst (nor for that relu) */
    int folded; /* relu: the next layer's backward data does this layer's backward */
    /* A chain whose last layer is followed (through its fused relu, if any) by global average
     * pooling also runs that pooling (chain_pool_create): each chunk's output is pooled while
     * it is in cache, and backward builds each chunk's dL/d(output) from the pooled gradient
     * and the relu's mask. No batch-sized pass over the output or its gradient is left. */
    int chain_pool; /* the chain's last layer: index of the pooling layer it runs, 0 if none;
                     * its output then lives only in a lane's chunk buffer (no unit dst) */
    int by_chain;   /* that relu and pooling layer: the chain does their forward and backward */
    /* An inner layer whose products run in the narrow kernels also fills the next gemm layer's
     * im2col matrix (its col_buf) as it writes its output (chain_fills_create): the next layer
     * then builds none of its own in forward or backward. */
    int fills_next;
    poet_gemmconv_next next; /* where each output pixel goes in that matrix */
    int relu_loop; /* fused relu: backward is a loop (dL/d(input), output and gradient agree) */
} net_layer;

/* A lane's transient buffers for one layer: written and read within one member's backward. */
typedef struct {
    dnnl_memory_t ddst_copy, bwd_w_copy, bwdw_src_copy, bwdw_ddst_copy; /* reorder targets */
    dnnl_memory_t dsrc;                                                 /* dL/da_l in dsrc_md */
    float *col_buf, *dcol; /* gemm: a chunk's im2col matrix and dL/d of it */
    float *dw_gemm;        /* gemm: dL/dW and dL/db in gemm layout, summed over chunks */
    float *chunk_out;      /* gemm, inner or chain_pool: the layer's output for one chunk (an inner
                            * layer's before its relu) */
    float *chunk_ddst;     /* gemm, chain_pool: dL/d(output) for one chunk */
    dnnl_memory_t dw;      /* dL/dW in dw_md when that is not plain */
    dnnl_memory_t acc_w, acc_b; /* plain, over the lane's accumulate buffer */
} net_scratch;

/* What one thread needs to run members: its own stream, scratchpad and transient buffers. */
typedef struct {
    dnnl_stream_t stream;
    net_scratch *layers; /* [L] */
    float *acc;          /* a member's layer gradient before it is added (accumulate = 1) */
    void *scratchpad;
    dnnl_memory_t *pads; /* [n_ops]: each op's scratchpad view of `scratchpad`, or NULL */
    /* gemm, shared_col: the first weight layer's im2col matrix for the whole batch. Every thread
     * with members builds its own copy from the images and its members read only that: on two
     * threads this ran the forward ~8% faster than one matrix built in halves by both threads
     * (bench/README.md); it costs one matrix per thread (1.35 MB for the reference network). */
    float *shared_col;
} net_lane;

/* Member g's memories in layer l. Layers before the first weight layer exist only for member 0. */
typedef struct {
    dnnl_memory_t dst;            /* a_{l+1} in dst_md, kept for backward */
    dnnl_memory_t workspace;      /* max pooling in training: where the maxima were */
    dnnl_memory_t src_copy;       /* a_l in src_md when src_reorder is needed */
    dnnl_memory_t user_w, user_b; /* plain, over the member's slices of params */
    dnnl_memory_t w_copy;         /* weights in w_md when w_reorder is needed */
    dnnl_memory_t grad_w, grad_b; /* plain, over the member's slices of grads */
    /* gemm: weights and bias in gemm layout, copied every forward: backward recomputes inner
     * layers with them, and in the stale mode the parameters change in between */
    float *w_gemm;
    /* gemm, chain_pool with a relu, training: where the chain's output was > 0, one byte per
     * element (a quarter of the output it replaces), the relu's mask for backward */
    unsigned char *relu_mask;
} net_unit;

/* What failed in a member's run inside a parallel region. poet_error_set keeps one process-wide
 * message, which the threads must not race for: there the helpers return a poet_status without a
 * message and note here what failed, and run_members records the message once the region has
 * ended, naming the member and this step. */
typedef struct {
    const char *step;   /* e.g. "backward data (sgemm)"; NULL while nothing failed */
    dnnl_status_t dnnl; /* oneDNN's status when a oneDNN call failed, else dnnl_success */
} net_fault;

#define NET_MAX_OPS (POET_MAX_LAYERS * 10 + 4)

struct poet_stack {
    poet_arch_plan plan;
    int G, B, L, training;
    int conv_gemm; /* convolutions as im2col + sgemm (poet_stack_options.convolution) */
    int first_w;   /* index of the first weight layer */
    float *params, *grads;

    dnnl_engine_t engine;
    dnnl_primitive_attr_t attr;      /* user-managed scratchpad for every primitive */
    dnnl_primitive_attr_t relu_attr; /* the same, and relu as a post-op (relu_after) */

    net_layer *layers; /* [L] */
    net_unit *units;   /* [G][L] */
    net_lane *lanes;   /* [T] */
    int T;

    dnnl_memory_t images; /* [B, C, H, W] plain: our copy, backward may read it */
    float *images_buf;
    dnnl_memory_t *logits_view; /* [G]: [B, K, 1, 1] with row stride G·K over logits_buf + g·K */
    float *logits_buf;          /* [B, G·K] */
    net_op logits_reorder;      /* last dst -> a member's logits view */
    dnnl_memory_t dlogits;      /* [B, K, 1, 1] plain, the gradient every member receives */
    float *dlogits_buf;

    poet_status *member_st;  /* [G]: how each member's run in a parallel region ended */
    net_fault *member_fault; /* [G]: and what failed */

    int n_ops;
    dnnl_memory_desc_t pad_md[NET_MAX_OPS]; /* scratchpad layout of each op that needs one */
    size_t scratchpad_size;                 /* the largest */
};

static net_unit *unit(poet_stack *s, int g, int l) { return &s->units[(size_t)g * s->L + l]; }

static int is_weight_layer(poet_layer_kind kind) {
    return kind == POET_LAYER_CONV || kind == POET_LAYER_LINEAR;
}

/* ---- oneDNN helpers -------------------------------------------------------------------------- */

static poet_status activation_md(dnnl_memory_desc_t *md, int batch, int channels, int h, int w,
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

static void *memory_data(dnnl_memory_t mem) {
    void *handle = NULL;
    dnnl_memory_get_data_handle(mem, &handle);
    return handle;
}

/* A memory over `handle`, or over a buffer oneDNN allocates when `handle` is NULL. */
static poet_status memory_new(poet_stack *s, const dnnl_memory_desc_t *md, void *handle,
                              dnnl_memory_t *mem) {
    poet_status st = POET_OK;
    POET_DNNL(dnnl_memory_create(mem, md, s->engine, handle ? handle : DNNL_MEMORY_ALLOCATE));
fail:
    return st;
}

/* A 64-byte aligned float buffer (sgemm's favourite); freed with free(). */
static poet_status floats_new(float **buf, size_t count) {
    size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    *buf = aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (!*buf)
        return poet_error_set(POET_ERR_NOMEM, "net.c: out of memory allocating %zu bytes", bytes);
    return POET_OK;
}

static void memory_free(dnnl_memory_t *mem) {
    if (*mem)
        dnnl_memory_destroy(*mem);
    *mem = NULL;
}

/* Creates the primitive of `pd` and notes its scratchpad, which every lane provides. */
static poet_status op_create(poet_stack *s, const_dnnl_primitive_desc_t pd, net_op *op) {
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

static void op_destroy(net_op *op) {
    if (op->prim)
        dnnl_primitive_destroy(op->prim);
    op->prim = NULL;
}

/* Inside a parallel region: a oneDNN call; on failure notes `name` and oneDNN's status in `fault`
 * and returns POET_ERR_DNNL. */
#define NET_DNNL(fault, expr, name)                                                                \
    do {                                                                                           \
        dnnl_status_t net_rc_ = (expr);                                                            \
        if (net_rc_ != dnnl_success) {                                                             \
            (fault)->step = (name);                                                                \
            (fault)->dnnl = net_rc_;                                                               \
            return POET_ERR_DNNL;                                                                  \
        }                                                                                          \
    } while (0)

/* Inside a parallel region: a call that returns a poet_status without a message (gemmconv); on
 * failure notes `name` in `fault` and returns that status. */
#define NET_TRY(fault, expr, name)                                                                 \
    do {                                                                                           \
        poet_status net_st_ = (expr);                                                              \
        if (net_st_ != POET_OK) {                                                                  \
            (fault)->step = (name);                                                                \
            return net_st_;                                                                        \
        }                                                                                          \
    } while (0)

/* Inside a parallel region: a helper that notes its own failed step in the fault it was given. */
#define NET_PASS(expr)                                                                             \
    do {                                                                                           \
        poet_status net_st_ = (expr);                                                              \
        if (net_st_ != POET_OK)                                                                    \
            return net_st_;                                                                        \
    } while (0)

/* Executes `op` on `lane` with `args` plus the lane's scratchpad for it. */
static dnnl_status_t op_run(const net_lane *lane, const net_op *op, int nargs,
                            const dnnl_exec_arg_t *args) {
    dnnl_exec_arg_t all[8];
    if (nargs > 7)
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
static poet_status reorder_create(poet_stack *s, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, net_op *op) {
    poet_status st = POET_OK;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_equal(from, to))
        return POET_OK;
    POET_DNNL(dnnl_reorder_primitive_desc_create(&pd, from, s->engine, to, s->engine, s->attr));
    POET_TRY(op_create(s, pd, op));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* What a consumer behind `reorder` reads: the copy when there is a reorder, else the producer's. */
static dnnl_memory_t via(const net_op *reorder, dnnl_memory_t from, dnnl_memory_t copy) {
    return reorder->prim ? copy : from;
}

/* Brings `copy` up to date with `from` (nothing when the consumer reads `from` directly). */
static dnnl_status_t refresh(const net_lane *lane, const net_op *reorder, dnnl_memory_t from,
                             dnnl_memory_t copy) {
    if (!reorder->prim)
        return dnnl_success;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, copy}};
    return op_run(lane, reorder, 2, args);
}

/* The buffer a reorder writes into, when there is a reorder. */
static poet_status copy_for(poet_stack *s, const net_op *reorder, const dnnl_memory_desc_t *md,
                            dnnl_memory_t *copy) {
    if (!reorder->prim)
        return POET_OK;
    return memory_new(s, md, NULL, copy);
}

/* oneDNN takes padding on both sides; PyTorch floors the output size, which oneDNN's integer
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

/* ---- layer primitives ------------------------------------------------------------------------ */

/* One member's weights [O, I, kh, kw] (a linear layer's [O, C·H·W] is [O, C, H, W]), bias [O]. */
static poet_status weight_mds(const poet_layer_plan *lp, dnnl_format_tag_t tag,
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
    POET_TRY(weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
    POET_DNNL(dnnl_convolution_backward_weights_desc_init(
        desc, dnnl_convolution_direct, &fd->src_desc, &w_any, &b_md, &fd->dst_desc, fd->strides,
        fd->padding[0], fd->padding[1]));
fail:
    return st;
}

static poet_status backward_data_desc(const poet_layer_plan *lp, const dnnl_convolution_desc_t *fd,
                                      dnnl_convolution_desc_t *desc) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t w_any, b_md;
    POET_TRY(weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
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
    POET_TRY(weight_mds(lp, dnnl_oihw, &w_plain, &b_md));
    POET_TRY(backward_weights_desc(lp, fd, &desc));
    POET_TRY(primitive_desc(s, &desc, fwd_pd, NULL, &pd, l, "convolution backward-weights"));
    POET_TRY(op_create(s, pd, &layer->bwdw));
    layer->bwdw_src_md = *query(pd, dnnl_query_src_md);
    layer->bwdw_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *dw_md = query(pd, dnnl_query_diff_weights_md);
    layer->dw_md = *dw_md;
    POET_TRY(reorder_create(s, dw_md, &w_plain, &layer->dw_reorder));
    POET_TRY(reorder_create(s, &layer->src_md, &layer->bwdw_src_md, &layer->bwdw_src_reorder));
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
    POET_TRY(op_create(s, pd, &layer->bwd));
    layer->bwd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    layer->dsrc_md = *query(pd, dnnl_query_diff_src_md);
    /* Forward leaves the current weights in fwd's layout; backward reorders from there. */
    layer->bwd_w_md = *query(pd, dnnl_query_weights_md);
    POET_TRY(reorder_create(s, &layer->w_md, &layer->bwd_w_md, &layer->bwd_w_reorder));
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
    POET_TRY(activation_md(&src_md, s->B, lp->in.c, lp->in.h, lp->in.w, tag));
    POET_TRY(activation_md(&dst_md, s->B, lp->out.c, lp->out.h, lp->out.w, tag));
    POET_TRY(weight_mds(lp, dnnl_format_tag_any, &w_any, &b_md));
    dnnl_dims_t strides = {stride, stride}, padding = {pad, pad};
    dnnl_prop_kind_t prop = s->training ? dnnl_forward_training : dnnl_forward_inference;
    POET_DNNL(dnnl_convolution_forward_desc_init(desc, prop, dnnl_convolution_direct, &src_md,
                                                 &w_any, &b_md, &dst_md, strides, padding,
                                                 padding));
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
static dnnl_format_tag_t activation_tag(poet_stack *s, int l) {
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
                return activation_md(md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc);
            break;
        }
    return POET_OK;
}

/* The strides of a plain (unblocked) 4-D layout; 0 when the layout is blocked. */
static int plain_strides(const dnnl_memory_desc_t *md, poet_strides *st) {
    if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks)
        return 0;
    const dnnl_dim_t *d = md->format_desc.blocking.strides;
    *st = (poet_strides){(size_t)d[0], (size_t)d[1], (size_t)d[2], (size_t)d[3]};
    return 1;
}

/* A convolution as im2col + sgemm: output and dL/d(input) nhwc, input read in place when its
 * layout is plain (else through a reorder to nhwc). Backward reorders bring dL/d(output) to
 * nhwc; the weights stay plain and are rearranged by gemmconv. */
static poet_status gemm_conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    POET_TRY(check_window(lp, l));
    layer->shape =
        (poet_conv_shape){s->B,      lp->in.c,     lp->in.h,     lp->in.w,   lp->out.c,  lp->out.h,
                          lp->out.w, lp->kernel_h, lp->kernel_w, lp->stride, lp->padding};
    layer->shared_col = l == s->first_w;
    layer->src_md = *in_md;
    if (!plain_strides(in_md, &layer->in_strides)) {
        POET_TRY(activation_md(&layer->src_md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc));
        POET_TRY(reorder_create(s, in_md, &layer->src_md, &layer->src_reorder));
        layer->in_strides = poet_strides_nhwc(lp->in.c, lp->in.h, lp->in.w);
    }
    POET_TRY(activation_md(&layer->dst_md, s->B, lp->out.c, lp->out.h, lp->out.w, dnnl_nhwc));
    dnnl_memory_desc_t b_md;
    POET_TRY(weight_mds(lp, dnnl_oihw, &layer->w_md, &b_md));
    layer->bwd_ddst_md = layer->bwdw_ddst_md = layer->dst_md;
    POET_TRY(activation_md(&layer->dsrc_md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc));
fail:
    return st;
}

/* Gemm layer `layer`'s shape for a chunk of n images. */
static poet_conv_shape chunk_shape(const net_layer *layer, int n) {
    poet_conv_shape chunk = layer->shape;
    chunk.batch = n;
    return chunk;
}

/* A convolution or linear layer, its activations in the layout activation_tag chose. */
static poet_status conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    int linear = lp->kind == POET_LAYER_LINEAR;
    if (!linear)
        POET_TRY(check_window(lp, l));
    dnnl_memory_desc_t w_plain, b_md;
    POET_TRY(weight_mds(lp, dnnl_oihw, &w_plain, &b_md));
    dnnl_convolution_desc_t desc;
    POET_TRY(forward_desc(s, l, layer->tag, &desc));
    POET_TRY(primitive_desc(s, &desc, NULL, layer->relu_after ? s->relu_attr : NULL, &pd, l,
                            linear ? "linear" : "convolution"));
    POET_TRY(op_create(s, pd, &layer->fwd));
    layer->src_md = *query(pd, dnnl_query_src_md);
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    POET_TRY(reorder_create(s, in_md, &layer->src_md, &layer->src_reorder));
    layer->w_md = *query(pd, dnnl_query_weights_md);
    POET_TRY(reorder_create(s, &w_plain, &layer->w_md, &layer->w_reorder));
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
    POET_TRY(op_create(s, pd, &layer->bwd));
    layer->bwd_ddst_md = *query(pd, dnnl_query_diff_dst_md);
    layer->dsrc_md = *query(pd, dnnl_query_diff_src_md);
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return st;
}

/* relu, per element, in the layout elementwise_layout picks. */
static poet_status relu_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_eltwise_desc_t desc, bdesc;
    POET_TRY(elementwise_layout(s, l, producer_md, &layer->src_md));
    POET_TRY(reorder_create(s, producer_md, &layer->src_md, &layer->src_reorder));
    const dnnl_memory_desc_t *in_md = &layer->src_md;
    dnnl_prop_kind_t prop = layer->needs_dsrc ? dnnl_forward_training : dnnl_forward_inference;
    /* Fused: the producer applied relu already, so backward gets the same relu'(x) from the
     * output: relu(x) > 0 exactly when x > 0, and both give 0 at x = 0. The forward descriptor
     * only serves as backward's hint. */
    dnnl_alg_kind_t alg = layer->fused ? dnnl_eltwise_relu_use_dst_for_bwd : dnnl_eltwise_relu;
    POET_DNNL(dnnl_eltwise_forward_desc_init(&desc, prop, alg, in_md, 0.f, 0.f));
    POET_TRY(primitive_desc(s, &desc, NULL, NULL, &pd, l, "relu"));
    if (!layer->fused)
        POET_TRY(op_create(s, pd, &layer->fwd));
    layer->dst_md = *query(pd, dnnl_query_dst_md);
    if (layer->needs_dsrc) {
        POET_DNNL(dnnl_eltwise_backward_desc_init(&bdesc, alg, in_md, in_md, 0.f, 0.f));
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
static poet_status pool_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst_any;
    POET_TRY(check_window(lp, l));
    POET_TRY(elementwise_layout(s, l, producer_md, &layer->src_md));
    POET_TRY(reorder_create(s, producer_md, &layer->src_md, &layer->src_reorder));
    const dnnl_memory_desc_t *in_md = &layer->src_md;
    POET_TRY(activation_md(&dst_any, s->B, lp->out.c, lp->out.h, lp->out.w, dnnl_format_tag_any));
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
    POET_TRY(op_create(s, pd, &layer->fwd));
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

/* ---- create / destroy ------------------------------------------------------------------------ */

/* A gemm convolution that reads a fused relu's output in place applies that relu's backward in
 * its col2im (one pass over dL/d(input) fewer): the mask is the relu's output, in the same nhwc
 * layout as the gradient. */
static void fold_relus(poet_stack *s) {
    for (int l = s->first_w + 1; l < s->L; l++) {
        net_layer *layer = &s->layers[l], *relu = &s->layers[l - 1];
        if (layer->gemm && layer->needs_dsrc && !layer->src_reorder.prim &&
            relu->kind == POET_LAYER_RELU && relu->fused && relu->needs_dsrc &&
            dnnl_memory_desc_equal(&relu->dst_md, &layer->dsrc_md))
            layer->fold_relu = relu->folded = 1;
    }
}

/* Whether gemm layer `next` can join the chain that ends in gemm layer `last`: it reads last's
 * output in place, through at most a fused relu that needs no reorder, and in training that
 * relu's backward is folded into next's (nothing runs between the two convolutions) and the
 * gradient last receives is next's dL/d(input) as it is (no reorders). */
static int chain_continues(const poet_stack *s, int last, int next) {
    const net_layer *layer = &s->layers[last], *next_layer = &s->layers[next];
    int relu_between = next == last + 2;
    if (!next_layer->gemm || next_layer->src_reorder.prim || layer->relu_after != relu_between)
        return 0;
    if (relu_between && s->layers[last + 1].src_reorder.prim)
        return 0;
    if (!s->training)
        return 1;
    return (!relu_between || next_layer->fold_relu) && !layer->ddst_reorder.prim &&
           !layer->bwdw_ddst_reorder.prim;
}

/* How many images a chunk of a chain holds: its layers' im2col matrices, outputs and gradients
 * for one chunk take about CHAIN_CHUNK_FLOATS floats (512 KiB, half of a Zen 4 core's L2). */
#define CHAIN_CHUNK_FLOATS 131072
static int chain_chunk_images(const poet_stack *s, int first, int last) {
    size_t per_image = 0;
    for (int l = first; l <= last; l++) {
        const net_layer *layer = &s->layers[l];
        if (!layer->gemm)
            continue;
        const poet_conv_shape *sh = &layer->shape;
        size_t pixels = (size_t)sh->out_h * sh->out_w;
        /* dL/d(input) counted in inference too: the same chunks, the same sums, in both */
        per_image += pixels * (poet_gemmconv_width(sh) + (size_t)sh->out_c) +
                     (size_t)sh->in_h * sh->in_w * sh->in_c;
    }
    size_t n = CHAIN_CHUNK_FLOATS / (per_image > 0 ? per_image : 1);
    if (n < 1)
        n = 1;
    return n < (size_t)s->B ? (int)n : s->B;
}

/* Multiply-adds of gemm layer `layer`'s forward for the whole batch. */
static double gemm_macs(const net_layer *layer) {
    return (double)poet_gemmconv_rows(&layer->shape) * poet_gemmconv_cols(&layer->shape) *
           layer->shape.out_c;
}

/* The layer after weight layer l and the relu fused into it, if any. */
static int past_relu(const poet_stack *s, int l) { return s->layers[l].relu_after ? l + 2 : l + 1; }

/* Whether a plain layout holds [B, C, 1, 1] as rows of C floats. */
static int rows_of_channels(const dnnl_memory_desc_t *md, int C) {
    poet_strides st;
    return plain_strides(md, &st) && st.c == 1 && st.n == (size_t)C;
}

/* Lets the chain ending in gemm layer `last` run the global average pooling after it (through
 * its fused relu, if any): the pooling reads last's nhwc output as it is, writes rows of
 * channels and, in training, receives its gradient as rows of channels (after its reorder). */
static void chain_pool_create(poet_stack *s, int last) {
    net_layer *layer = &s->layers[last];
    int p = past_relu(s, last);
    if (p >= s->L)
        return;
    net_layer *pool = &s->layers[p];
    const poet_layer_plan *pp = &s->plan.layers[p];
    if (pool->kind != POET_LAYER_AVG_POOL || pp->out.h != 1 || pp->out.w != 1 ||
        pp->kernel_h != pp->in.h || pp->kernel_w != pp->in.w || pp->padding != 0)
        return;
    if (pool->src_reorder.prim || (layer->relu_after && s->layers[last + 1].src_reorder.prim) ||
        !rows_of_channels(&pool->dst_md, pp->out.c))
        return;
    if (s->training && !rows_of_channels(&pool->bwd_ddst_md, pp->out.c))
        return;
    layer->chain_pool = p;
    pool->by_chain = 1;
    if (layer->relu_after)
        s->layers[last + 1].by_chain = 1;
}

/* Groups the gemm layers into chains (net_layer.chain_first). A layer joins only while the
 * layers that would become inner (recomputed in backward) cost at most a tenth of the chain's
 * training arithmetic (~3 forwards): for the reference network 3.5% (its 1 -> 20 channel
 * convolution), which buys not storing or re-reading that layer's output. Needs every layer's
 * layouts and, in training, the backward reorders. */
static void chains_create(poet_stack *s) {
    for (int l = s->first_w; l < s->L; l++) {
        if (!s->layers[l].gemm)
            continue;
        int last = l;
        double inner_macs = 0, macs = gemm_macs(&s->layers[l]);
        for (;;) {
            int next = past_relu(s, last);
            if (next >= s->L || !chain_continues(s, last, next))
                break;
            double with_next = macs + gemm_macs(&s->layers[next]);
            if (10 * (inner_macs + gemm_macs(&s->layers[last])) > 3 * with_next)
                break;
            inner_macs += gemm_macs(&s->layers[last]);
            macs = with_next;
            last = next;
        }
        int chunk = chain_chunk_images(s, l, last);
        for (int k = l; k <= last; k++) {
            s->layers[k].chain_first = l;
            s->layers[k].chain_last = last;
            s->layers[k].chunk = chunk;
            s->layers[k].inner = k < last;
        }
        chain_pool_create(s, last);
        l = last;
    }
}

/* The inner chain layers that fill the next layer's im2col matrix: those whose products run in
 * the narrow kernels (where they do not, gemmconv builds the matrix from the output instead, so
 * the result is the same), before a layer without padding. This saves the next layer's im2col
 * pass in forward and again in backward (bench/README.md). */
static poet_status chain_fills_create(poet_stack *s) {
    poet_status st = POET_OK;
    for (int l = s->first_w; l < s->L; l++) {
        net_layer *layer = &s->layers[l];
        if (!layer->gemm || !layer->inner || !poet_gemmconv_is_narrow(&layer->shape))
            continue;
        net_layer *next_layer = &s->layers[past_relu(s, l)];
        if (!poet_gemmconv_can_fill(&next_layer->shape))
            continue;
        POET_TRY(poet_gemmconv_next_init(&next_layer->shape, layer->relu_after, &layer->next));
        layer->fills_next = 1;
    }
fail:
    return st;
}

/* Every layer's primitives, in forward order: each layer learns its input's layout from the one
 * before it (the images are plain). */
static poet_status layers_create(poet_stack *s) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t images_md;
    POET_TRY(activation_md(&images_md, s->B, s->plan.input.c, s->plan.input.h, s->plan.input.w,
                           dnnl_nchw));
    for (int l = 0; l < s->L; l++) {
        net_layer *layer = &s->layers[l];
        const poet_layer_plan *lp = &s->plan.layers[l];
        layer->kind = lp->kind;
        layer->needs_dsrc = s->training && l > s->first_w;
        if (is_weight_layer(lp->kind)) {
            const poet_tensor_info *tw = &s->plan.tensors[lp->weight_tensor];
            layer->w_offset = tw->offset;
            layer->w_count = tw->count;
            layer->b_offset = tw[1].offset;
            layer->b_count = tw[1].count;
        }
    }
    /* relu right after a weight layer becomes that layer's post-op. */
    for (int l = s->first_w; l + 1 < s->L; l++)
        if (is_weight_layer(s->layers[l].kind) && s->layers[l + 1].kind == POET_LAYER_RELU)
            s->layers[l].relu_after = s->layers[l + 1].fused = 1;
    for (int l = 0; l < s->L; l++)
        s->layers[l].gemm = s->conv_gemm && is_weight_layer(s->layers[l].kind);
    /* Layouts first: relu and pooling look ahead to the weight layer they feed. */
    for (int l = 0; l < s->L; l++)
        if (is_weight_layer(s->layers[l].kind))
            s->layers[l].tag = activation_tag(s, l);
    for (int l = 0; l < s->L; l++) {
        const poet_layer_plan *lp = &s->plan.layers[l];
        const dnnl_memory_desc_t *in_md = l == 0 ? &images_md : &s->layers[l - 1].dst_md;
        switch (lp->kind) {
        case POET_LAYER_CONV:
        case POET_LAYER_LINEAR:
            POET_TRY(s->layers[l].gemm ? gemm_conv_create(s, l, in_md) : conv_create(s, l, in_md));
            break;
        case POET_LAYER_RELU:
            POET_TRY(relu_create(s, l, in_md));
            break;
        case POET_LAYER_AVG_POOL:
        case POET_LAYER_MAX_POOL:
            POET_TRY(pool_create(s, l, in_md));
            break;
        default:
            POET_FAIL(POET_ERR_INTERNAL, "net.c: layer %d has unknown kind %d", l, lp->kind);
        }
    }
    fold_relus(s);
fail:
    return st;
}

/* The backward reorders, once every layer knows the layout of its dL/d(input): layer l reads
 * dL/da_{l+1} from layer l+1's dsrc, the last layer from the plain dlogits. */
static poet_status backward_reorders(poet_stack *s) {
    poet_status st = POET_OK;
    const dnnl_memory_desc_t *dlogits_md = NULL;
    POET_DNNL(dnnl_memory_get_memory_desc(s->dlogits, &dlogits_md));
    for (int l = s->L - 1; l >= s->first_w; l--) {
        net_layer *layer = &s->layers[l];
        int next = l + 1 < s->L && s->layers[l + 1].folded ? l + 2 : l + 1;
        const dnnl_memory_desc_t *next_md = l == s->L - 1 ? dlogits_md : &s->layers[next].dsrc_md;
        if (layer->needs_dsrc)
            POET_TRY(reorder_create(s, next_md, &layer->bwd_ddst_md, &layer->ddst_reorder));
        if (is_weight_layer(layer->kind)) {
            /* From bwd's copy when there is one: usually the layouts agree, nothing is copied. */
            const dnnl_memory_desc_t *from = layer->needs_dsrc ? &layer->bwd_ddst_md : next_md;
            POET_TRY(reorder_create(s, from, &layer->bwdw_ddst_md, &layer->bwdw_ddst_reorder));
        }
    }
fail:
    return st;
}

/* Where each member's logits go: a strided view of logits_buf, row stride G·K. */
static poet_status output_create(poet_stack *s) {
    poet_status st = POET_OK;
    int K = s->plan.classes;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t view, dlogits_md;
    dnnl_dims_t dims = {s->B, K, 1, 1}, strides = {(dnnl_dim_t)s->G * K, 1, 1, 1};
    POET_DNNL(dnnl_memory_desc_init_by_strides(&view, 4, dims, dnnl_f32, strides));
    POET_ALLOC(s->logits_buf, (size_t)s->B * s->G * K);
    POET_ALLOC(s->logits_view, s->G);
    for (int g = 0; g < s->G; g++)
        POET_TRY(memory_new(s, &view, s->logits_buf + (size_t)g * K, &s->logits_view[g]));
    /* Always a reorder: even a plain last layer writes rows of K, the view has rows of G·K. */
    POET_DNNL(dnnl_reorder_primitive_desc_create(&pd, &s->layers[s->L - 1].dst_md, s->engine, &view,
                                                 s->engine, s->attr));
    POET_TRY(op_create(s, pd, &s->logits_reorder));
    if (s->training) {
        POET_TRY(activation_md(&dlogits_md, s->B, K, 1, 1, dnnl_nchw));
        POET_TRY(memory_new(s, &dlogits_md, NULL, &s->dlogits));
        s->dlogits_buf = memory_data(s->dlogits);
    }
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
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
        POET_TRY(copy_for(s, &layer->src_reorder, &layer->src_md, &u->src_copy));
        /* A fused relu's output is its input as it reads it (the producer's, or the copy). */
        void *alias =
            layer->fused
                ? memory_data(via(&layer->src_reorder, unit(s, g, l - 1)->dst, u->src_copy))
                : NULL;
        POET_TRY(memory_new(s, &layer->dst_md, alias, &u->dst));
        if (dnnl_memory_desc_get_size(&layer->ws_md) > 0)
            POET_TRY(memory_new(s, &layer->ws_md, NULL, &u->workspace));
    }
    if (!is_weight_layer(layer->kind))
        return POET_OK;
    if (layer->gemm) {
        POET_TRY(floats_new(&u->w_gemm, poet_gemmconv_weights_floats(&layer->shape)));
        if (layer->chain_pool && layer->relu_after && s->training)
            POET_ALLOC(u->relu_mask, (size_t)s->B * layer->shape.out_h * layer->shape.out_w *
                                         (size_t)layer->shape.out_c);
    }
    /* Stack layout: tensor t of member g starts at G·offset + g·count (net.h). */
    size_t w_at = (size_t)s->G * layer->w_offset + (size_t)g * layer->w_count;
    size_t b_at = (size_t)s->G * layer->b_offset + (size_t)g * layer->b_count;
    dnnl_memory_desc_t w_plain, b_md;
    POET_TRY(weight_mds(&s->plan.layers[l], dnnl_oihw, &w_plain, &b_md));
    POET_TRY(memory_new(s, &w_plain, s->params + w_at, &u->user_w));
    POET_TRY(memory_new(s, &b_md, s->params + b_at, &u->user_b));
    POET_TRY(copy_for(s, &layer->w_reorder, &layer->w_md, &u->w_copy));
    if (s->training) {
        POET_TRY(memory_new(s, &w_plain, s->grads + w_at, &u->grad_w));
        POET_TRY(memory_new(s, &b_md, s->grads + b_at, &u->grad_b));
    }
fail:
    return st;
}

/* A lane's transient buffers for layer l: the targets of its backward reorders, dL/da_l, and the
 * accumulate views. */
static poet_status scratch_create(poet_stack *s, net_lane *lane, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    net_scratch *x = &lane->layers[l];
    POET_TRY(copy_for(s, &layer->ddst_reorder, &layer->bwd_ddst_md, &x->ddst_copy));
    POET_TRY(copy_for(s, &layer->bwd_w_reorder, &layer->bwd_w_md, &x->bwd_w_copy));
    POET_TRY(copy_for(s, &layer->bwdw_src_reorder, &layer->bwdw_src_md, &x->bwdw_src_copy));
    POET_TRY(copy_for(s, &layer->bwdw_ddst_reorder, &layer->bwdw_ddst_md, &x->bwdw_ddst_copy));
    POET_TRY(copy_for(s, &layer->dw_reorder, &layer->dw_md, &x->dw));
    if (layer->needs_dsrc && !layer->folded && !layer->by_chain)
        POET_TRY(memory_new(s, &layer->dsrc_md, NULL, &x->dsrc));
    if (layer->gemm) {
        poet_conv_shape chunk = chunk_shape(layer, layer->chunk);
        if (!layer->shared_col)
            POET_TRY(
                floats_new(&x->col_buf, poet_gemmconv_rows(&chunk) * poet_gemmconv_width(&chunk)));
        if (layer->needs_dsrc)
            POET_TRY(floats_new(&x->dcol, poet_gemmconv_rows(&chunk) * poet_gemmconv_cols(&chunk)));
        if (layer->inner || layer->chain_pool)
            POET_TRY(
                floats_new(&x->chunk_out, poet_gemmconv_rows(&chunk) * (size_t)layer->shape.out_c));
        if (s->training)
            POET_TRY(
                floats_new(&x->dw_gemm, poet_gemmconv_width(&layer->shape) * layer->shape.out_c));
        if (s->training && layer->chain_pool)
            POET_TRY(floats_new(&x->chunk_ddst,
                                poet_gemmconv_rows(&chunk) * (size_t)layer->shape.out_c));
    }
    if (is_weight_layer(layer->kind) && s->training) {
        dnnl_memory_desc_t w_plain, b_md;
        POET_TRY(weight_mds(&s->plan.layers[l], dnnl_oihw, &w_plain, &b_md));
        POET_TRY(memory_new(s, &w_plain, lane->acc, &x->acc_w));
        POET_TRY(memory_new(s, &b_md, lane->acc + layer->w_count, &x->acc_b));
    }
fail:
    return st;
}

/* The accumulate buffer holds the largest one-member weight+bias pair. */
static size_t largest_layer_params(const poet_arch_plan *plan) {
    size_t most = 0;
    for (int l = 0; l < plan->n_layers; l++) {
        int t = plan->layers[l].weight_tensor;
        if (is_weight_layer(plan->layers[l].kind) &&
            plan->tensors[t].count + plan->tensors[t + 1].count > most)
            most = plan->tensors[t].count + plan->tensors[t + 1].count;
    }
    return most;
}

/* A lane's buffers; `has_members`: some member runs on it (lane index < G), so it needs the shared
 * im2col matrix when there is one. */
static poet_status lane_create(poet_stack *s, net_lane *lane, int has_members) {
    poet_status st = POET_OK;
    const net_layer *first_layer = &s->layers[s->first_w];
    if (first_layer->gemm && first_layer->shared_col && has_members)
        POET_TRY(floats_new(&lane->shared_col, poet_gemmconv_rows(&first_layer->shape) *
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
        POET_TRY(memory_new(s, &s->pad_md[i], lane->scratchpad, &lane->pads[i]));
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
        return poet_error_set(POET_ERR_INTERNAL,
                              "net.c: stack of %d members, batch %d: expected both >= 1", members,
                              batch);
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
        if (is_weight_layer(plan->layers[l].kind) && (t < 0 || t + 1 >= plan->n_tensors))
            return poet_error_set(POET_ERR_INTERNAL, "net.c: layer %d has weight tensor %d of %d",
                                  l, t, plan->n_tensors);
    }
    return POET_OK;
}

/* The stack's attributes plus relu as a post-op, for weight layers followed by relu. */
static poet_status relu_attr_create(poet_stack *s) {
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

/* Everything but the allocation of the stack itself; primitives are configured for one thread. */
static poet_status stack_build(poet_stack *s) {
    poet_status st = POET_OK;
    POET_ALLOC(s->layers, s->L);
    POET_ALLOC(s->units, (size_t)s->G * s->L);
    POET_ALLOC(s->lanes, s->T);
    POET_ALLOC(s->member_st, s->G);
    POET_ALLOC(s->member_fault, s->G);
    POET_DNNL(dnnl_engine_create(&s->engine, dnnl_cpu, 0));
    POET_DNNL(dnnl_primitive_attr_create(&s->attr));
    POET_DNNL(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user));
    POET_TRY(relu_attr_create(s));
    dnnl_memory_desc_t images_md;
    POET_TRY(activation_md(&images_md, s->B, s->plan.input.c, s->plan.input.h, s->plan.input.w,
                           dnnl_nchw));
    POET_TRY(memory_new(s, &images_md, NULL, &s->images));
    s->images_buf = memory_data(s->images);
    POET_TRY(layers_create(s));
    POET_TRY(output_create(s));
    if (s->training)
        POET_TRY(backward_reorders(s));
    chains_create(s);
    POET_TRY(chain_fills_create(s));
    /* Layers before the first weight layer see only the images: computed once, for member 0. */
    for (int g = 0; g < s->G; g++)
        for (int l = g == 0 ? 0 : s->first_w; l < s->L; l++)
            POET_TRY(unit_create(s, g, l));
    for (int i = 0; i < s->T; i++)
        POET_TRY(lane_create(s, &s->lanes[i], i < s->G));
fail:
    return st;
}

poet_status poet_stack_create(const poet_arch_plan *plan, int members, int batch, int training,
                              const poet_stack_options *options, float *params, float *grads,
                              poet_stack **out) {
    poet_status st = POET_OK;
    poet_stack *s = NULL;
    poet_stack_options defaults = {POET_CONV_GEMM, 0};
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
    s->training = training;
    s->conv_gemm = opt->convolution == POET_CONV_GEMM;
    s->first_w = first_w;
    s->params = params;
    s->grads = grads;
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
    dnnl_memory_t *mems[] = {&u->dst,    &u->workspace, &u->src_copy, &u->user_w,
                             &u->user_b, &u->w_copy,    &u->grad_w,   &u->grad_b};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        memory_free(mems[i]);
    free(u->w_gemm);
    free(u->relu_mask);
}

static void lane_destroy(poet_stack *s, net_lane *lane) {
    if (lane->layers)
        for (int l = 0; l < s->L; l++) {
            net_scratch *x = &lane->layers[l];
            dnnl_memory_t *mems[] = {&x->ddst_copy,      &x->bwd_w_copy, &x->bwdw_src_copy,
                                     &x->bwdw_ddst_copy, &x->dsrc,       &x->dw,
                                     &x->acc_w,          &x->acc_b};
            for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
                memory_free(mems[i]);
            free(x->col_buf);
            free(x->dcol);
            free(x->dw_gemm);
            free(x->chunk_out);
            free(x->chunk_ddst);
        }
    if (lane->pads)
        for (int i = 0; i < s->n_ops; i++)
            memory_free(&lane->pads[i]);
    if (lane->stream)
        dnnl_stream_destroy(lane->stream);
    free(lane->scratchpad);
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
                     &layer->dw_reorder};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        op_destroy(ops[i]);
    poet_gemmconv_next_free(&layer->next);
}

void poet_stack_destroy(poet_stack *s) {
    if (!s)
        return;
    if (s->lanes)
        for (int i = 0; i < s->T; i++)
            lane_destroy(s, &s->lanes[i]);
    if (s->units)
        for (size_t i = 0; i < (size_t)s->G * s->L; i++)
            unit_destroy(&s->units[i]);
    if (s->layers)
        for (int l = 0; l < s->L; l++)
            layer_destroy(&s->layers[l]);
    if (s->logits_view)
        for (int g = 0; g < s->G; g++)
            memory_free(&s->logits_view[g]);
    op_destroy(&s->logits_reorder);
    memory_free(&s->images);
    memory_free(&s->dlogits);
    if (s->attr)
        dnnl_primitive_attr_destroy(s->attr);
    if (s->relu_attr)
        dnnl_primitive_attr_destroy(s->relu_attr);
    if (s->engine)
        dnnl_engine_destroy(s->engine);
    free(s->member_st);
    free(s->member_fault);
    free(s->logits_view);
    free(s->logits_buf);
    free(s->lanes);
    free(s->units);
    free(s->layers);
    free(s);
}

int poet_stack_members(const poet_stack *s) { return s->G; }
int poet_stack_batch(const poet_stack *s) { return s->B; }

/* ---- forward --------------------------------------------------------------------------------- */

/* Whose unit holds member g's activations: its own in training, its lane's in inference. */
static int activation_owner(const poet_stack *s, const net_lane *lane, int g) {
    return s->training ? g : (int)(lane - s->lanes);
}

/* a_l in the units of owner a: the images, or the previous layer's output (member 0's while the
 * layers are shared). */
static dnnl_memory_t layer_input(poet_stack *s, int a, int l) {
    if (l == 0)
        return s->images;
    return unit(s, l - 1 < s->first_w ? 0 : a, l - 1)->dst;
}

/* The input as layer l's forward reads it. */
static dnnl_memory_t layer_src(poet_stack *s, int a, int l) {
    return via(&s->layers[l].src_reorder, layer_input(s, a, l), unit(s, a, l)->src_copy);
}

/* Images per chunk in floats: where chunk b0 starts in gemm layer `layer`'s input, output and
 * shared im2col matrix. */
static size_t in_image(const net_layer *layer) { return layer->in_strides.n; }
static size_t out_image(const net_layer *layer) {
    return (size_t)layer->shape.out_h * layer->shape.out_w * layer->shape.out_c;
}
static size_t col_image(const net_layer *layer) {
    return (size_t)layer->shape.out_h * layer->shape.out_w * poet_gemmconv_width(&layer->shape);
}

/* The lane's copy of the first weight layer's im2col matrix, which every member shares, chunk by
 * chunk (the im2col of a whole batch at once would need a shape of B images). */
static void shared_im2col(poet_stack *s, const net_lane *lane) {
    const net_layer *layer = &s->layers[s->first_w];
    const float *src = memory_data(layer_src(s, 0, s->first_w));
    for (int b0 = 0; b0 < s->B; b0 += layer->chunk) {
        poet_conv_shape part =
            chunk_shape(layer, s->B - b0 < layer->chunk ? s->B - b0 : layer->chunk);
        poet_gemmconv_im2col(&part, src + b0 * in_image(layer), layer->in_strides, 0,
                             lane->shared_col + b0 * col_image(layer));
    }
}

/* The gemm layer before gemm layer l in its chain (a fused relu may sit between). */
static int previous_gemm(const poet_stack *s, int l) {
    return s->layers[l - 1].gemm ? l - 1 : l - 2;
}

/* Gemm layer l's im2col matrix for the chunk from image b0 on when it is built before the layer
 * runs: the lane's copy of the shared one, or the layer's chunk buffer that the layer before it
 * filled (fills_next); NULL when the layer builds its own. */
static const float *prebuilt_col(const poet_stack *s, const net_lane *lane, int l, int b0) {
    const net_layer *layer = &s->layers[l];
    if (layer->shared_col)
        return lane->shared_col + (size_t)b0 * col_image(layer);
    if (l != layer->chain_first && s->layers[previous_gemm(s, l)].fills_next)
        return lane->layers[l].col_buf;
    return NULL;
}

/* Gemm layer l's input for the chunk from image b0 on: the stored activation for a chain's first
 * layer, else the chunk buffer of the gemm layer before it (the relu between already applied). */
static const float *chunk_input(poet_stack *s, const net_lane *lane, int a, int l, int b0) {
    const net_layer *layer = &s->layers[l];
    if (l != layer->chain_first)
        return lane->layers[previous_gemm(s, l)].chunk_out;
    return (const float *)memory_data(layer_src(s, a, l)) + b0 * in_image(layer);
}

/* Whether gemm layer l applies the relu before it in its im2col: its input is an inner layer's
 * output, stored before its relu. */
static int input_relu(const poet_stack *s, int l) {
    const net_layer *layer = &s->layers[l];
    return l != layer->chain_first && s->layers[previous_gemm(s, l)].relu_after;
}

/* Where gemm layer l's output for the chunk from image b0 on goes. */
static float *chunk_output(poet_stack *s, const net_lane *lane, int a, int l, int b0) {
    const net_layer *layer = &s->layers[l];
    if (layer->inner || layer->chain_pool)
        return lane->layers[l].chunk_out;
    return (float *)memory_data(unit(s, a, l)->dst) + b0 * out_image(layer);
}

/* Forward of gemm layer l of member g on images b0..b0+n-1 (activations in owner a's units). */
static poet_status gemm_chunk_forward(poet_stack *s, const net_lane *lane, int g, int a, int l,
                                      int b0, int n, net_fault *fault) {
    const net_layer *layer = &s->layers[l];
    const net_unit *u = unit(s, g, l);
    poet_conv_shape part = chunk_shape(layer, n);
    const float *src = chunk_input(s, lane, a, l, b0), *col = prebuilt_col(s, lane, l, b0);
    int relu = layer->relu_after && !layer->inner && !layer->chain_pool;
    float *dst = chunk_output(s, lane, a, l, b0);
    float *col_buf = lane->layers[l].col_buf;
    poet_status st =
        layer->fills_next
            ? poet_gemmconv_forward_filling(&part, src, layer->in_strides, input_relu(s, l), col,
                                            col_buf, u->w_gemm, relu, dst, &layer->next,
                                            lane->layers[past_relu(s, l)].col_buf)
            : poet_gemmconv_forward(&part, src, layer->in_strides, input_relu(s, l), col, col_buf,
                                    u->w_gemm, relu, dst);
    NET_TRY(fault, st, "forward (sgemm)");
    return POET_OK;
}

/* The relu and pooling that chain layer `last` runs, on owner a's images b0..b0+n-1 (the chunk's
 * output in the lane's buffer, before the relu), and in training the relu's mask for backward. */
static void chain_pool_forward(poet_stack *s, const net_lane *lane, int a, int last, int b0,
                               int n) {
    const net_layer *layer = &s->layers[last];
    size_t C = (size_t)layer->shape.out_c;
    float *pooled = (float *)memory_data(unit(s, a, layer->chain_pool)->dst) + b0 * C;
    unsigned char *mask = unit(s, a, last)->relu_mask;
    poet_pool_global_forward((size_t)n, (size_t)layer->shape.out_h * layer->shape.out_w, C,
                             layer->relu_after, lane->layers[last].chunk_out, pooled,
                             mask ? mask + b0 * out_image(layer) : NULL);
}

/* Member g's chain of gemm layers from `first` on, chunk by chunk: each chunk goes through every
 * layer of the chain while it is in cache, and only the last layer's output is stored. */
static poet_status chain_forward(poet_stack *s, const net_lane *lane, int g, int a, int first,
                                 net_fault *fault) {
    const net_layer *first_layer = &s->layers[first];
    if (!first_layer->shared_col) {
        NET_DNNL(fault,
                 refresh(lane, &first_layer->src_reorder, layer_input(s, a, first),
                         unit(s, a, first)->src_copy),
                 "input reorder");
        NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    }
    for (int l = first; l <= first_layer->chain_last; l++) {
        const net_layer *layer = &s->layers[l];
        net_unit *u = unit(s, g, l);
        if (!layer->gemm)
            continue;
        poet_gemmconv_weights_to_gemm(&layer->shape, memory_data(u->user_w), memory_data(u->user_b),
                                      u->w_gemm);
    }
    for (int b0 = 0; b0 < s->B; b0 += first_layer->chunk) {
        int n = s->B - b0 < first_layer->chunk ? s->B - b0 : first_layer->chunk;
        for (int l = first; l <= first_layer->chain_last; l++)
            if (s->layers[l].gemm)
                NET_PASS(gemm_chunk_forward(s, lane, g, a, l, b0, n, fault));
        if (s->layers[first_layer->chain_last].chain_pool)
            chain_pool_forward(s, lane, a, first_layer->chain_last, b0, n);
    }
    return POET_OK;
}

/* Layer l of member g, its activations in owner a's units. */
static poet_status layer_forward(poet_stack *s, const net_lane *lane, int g, int a, int l,
                                 net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l), *act = unit(s, a, l);
    if (layer->gemm)
        return chain_forward(s, lane, g, a, l, fault);
    if (layer->by_chain)
        return POET_OK;
    NET_DNNL(fault, refresh(lane, &layer->src_reorder, layer_input(s, a, l), act->src_copy),
             "input reorder");
    if (layer->fused) /* the producer applied it */
        return POET_OK;
    dnnl_memory_t src = layer_src(s, a, l);
    if (is_weight_layer(layer->kind)) {
        /* The weights change every step: refresh oneDNN's copy when its layout is not plain. */
        NET_DNNL(fault, refresh(lane, &layer->w_reorder, u->user_w, u->w_copy), "weights reorder");
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src},
                                  {DNNL_ARG_WEIGHTS, via(&layer->w_reorder, u->user_w, u->w_copy)},
                                  {DNNL_ARG_BIAS, u->user_b},
                                  {DNNL_ARG_DST, act->dst}};
        NET_DNNL(fault, op_run(lane, &layer->fwd, 4, args), "forward");
    } else {
        dnnl_exec_arg_t args[] = {
            {DNNL_ARG_SRC, src}, {DNNL_ARG_DST, act->dst}, {DNNL_ARG_WORKSPACE, act->workspace}};
        NET_DNNL(fault, op_run(lane, &layer->fwd, act->workspace ? 3 : 2, args), "forward");
    }
    return POET_OK;
}

/* Member g's layers from the first weight layer on, then its logits into the stack's buffer. */
static poet_status member_forward(poet_stack *s, const net_lane *lane, int g, net_fault *fault) {
    int a = activation_owner(s, lane, g);
    for (int l = s->first_w; l < s->L; l++) {
        NET_PASS(layer_forward(s, lane, g, a, l, fault));
        if (s->layers[l].gemm) /* the whole chain ran */
            l = s->layers[l].chain_last;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, unit(s, a, s->L - 1)->dst},
                              {DNNL_ARG_TO, s->logits_view[g]}};
    NET_DNNL(fault, op_run(lane, &s->logits_reorder, 2, args), "logits reorder");
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
                 refresh(lane, &first_layer->src_reorder, layer_input(s, 0, s->first_w),
                         unit(s, 0, s->first_w)->src_copy),
                 "input reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    return POET_OK;
}

/* ---- backward -------------------------------------------------------------------------------- */

/* dL/da_{l+1} as the producer left it: layer l+1's dsrc (l+2's when l+1 is a relu folded into
 * it), or the dlogits for the last layer. */
static dnnl_memory_t layer_dnext(poet_stack *s, const net_lane *lane, int l) {
    if (l == s->L - 1)
        return s->dlogits;
    return lane->layers[s->layers[l + 1].folded ? l + 2 : l + 1].dsrc;
}

/* A fused relu's backward as a select: dL/d(input) = dL/d(output) where the output is > 0. */
static poet_status relu_loop_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                      net_fault *fault) {
    net_layer *layer = &s->layers[l];
    const net_scratch *x = &lane->layers[l];
    dnnl_memory_t dnext = layer_dnext(s, lane, l);
    NET_DNNL(fault, refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy), "gradient reorder");
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
static poet_status data_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                 net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    if (layer->relu_loop)
        return relu_loop_backward(s, lane, g, l, fault);
    dnnl_memory_t dnext = layer_dnext(s, lane, l);
    NET_DNNL(fault, refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy), "gradient reorder");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, via(&layer->ddst_reorder, dnext, x->ddst_copy)},
                               {DNNL_ARG_DIFF_SRC, x->dsrc}};
    int n = 2;
    if (is_weight_layer(layer->kind)) {
        dnnl_memory_t w = via(&layer->w_reorder, u->user_w, u->w_copy);
        NET_DNNL(fault, refresh(lane, &layer->bwd_w_reorder, w, x->bwd_w_copy), "weights reorder");
        args[n++] =
            (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, via(&layer->bwd_w_reorder, w, x->bwd_w_copy)};
    } else if (layer->kind == POET_LAYER_RELU) {
        args[n++] = layer->fused ? (dnnl_exec_arg_t){DNNL_ARG_DST, u->dst}
                                 : (dnnl_exec_arg_t){DNNL_ARG_SRC, layer_src(s, g, l)};
    } else if (u->workspace) { /* max pooling; average pooling needs neither */
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, u->workspace};
    }
    NET_DNNL(fault, op_run(lane, &layer->bwd, n, args), "backward data");
    return POET_OK;
}

/* Adds what landed in the lane's accumulate buffer to member g's gradient. */
static void accumulate_into(poet_stack *s, const net_lane *lane, int g, const net_layer *layer) {
    float *gw = s->grads + (size_t)s->G * layer->w_offset + (size_t)g * layer->w_count;
    float *gb = s->grads + (size_t)s->G * layer->b_offset + (size_t)g * layer->b_count;
    const float *aw = lane->acc, *ab = lane->acc + layer->w_count;
    for (size_t i = 0; i < layer->w_count; i++)
        gw[i] += aw[i];
    for (size_t i = 0; i < layer->b_count; i++)
        gb[i] += ab[i];
}

/* dL/dW and dL/db of layer l for member g, into its grads (or added to them). */
static poet_status weights_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                    int accumulate, net_fault *fault) {
    net_layer *layer = &s->layers[l];
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    dnnl_memory_t src = layer_src(s, g, l), dnext = layer_dnext(s, lane, l);
    dnnl_memory_t ddst = layer->needs_dsrc ? via(&layer->ddst_reorder, dnext, x->ddst_copy) : dnext;
    dnnl_memory_t plain_w = accumulate ? x->acc_w : u->grad_w;
    dnnl_memory_t plain_b = accumulate ? x->acc_b : u->grad_b;
    NET_DNNL(fault, refresh(lane, &layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy),
             "gradient reorder");
    NET_DNNL(fault, refresh(lane, &layer->bwdw_src_reorder, src, x->bwdw_src_copy),
             "input reorder");
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, via(&layer->bwdw_src_reorder, src, x->bwdw_src_copy)},
        {DNNL_ARG_DIFF_DST, via(&layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy)},
        {DNNL_ARG_DIFF_WEIGHTS, via(&layer->dw_reorder, plain_w, x->dw)},
        {DNNL_ARG_DIFF_BIAS, plain_b}};
    NET_DNNL(fault, op_run(lane, &layer->bwdw, 4, args), "backward weights");
    NET_DNNL(fault, refresh(lane, &layer->dw_reorder, x->dw, plain_w), "weight gradient reorder");
    if (accumulate) {
        NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
        accumulate_into(s, lane, g, layer);
    }
    return POET_OK;
}

/* dL/d(output) of the chain's last layer, as backward data (*for_data) and backward weights
 * (*for_weights) read it, after their reorders. */
static poet_status chain_gradient(poet_stack *s, const net_lane *lane, int last,
                                  const float **for_data, const float **for_weights,
                                  net_fault *fault) {
    const net_layer *layer = &s->layers[last];
    const net_scratch *x = &lane->layers[last];
    dnnl_memory_t dnext = layer_dnext(s, lane, last), ddst = dnext;
    if (layer->needs_dsrc) {
        NET_DNNL(fault, refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy),
                 "gradient reorder");
        ddst = via(&layer->ddst_reorder, dnext, x->ddst_copy);
    }
    NET_DNNL(fault, refresh(lane, &layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy),
             "gradient reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    *for_data = memory_data(ddst);
    *for_weights = memory_data(via(&layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy));
    return POET_OK;
}

/* Gemm layer l of member g on images b0..b0+n-1, given dL/d(output) of those images: dL/dW and
 * dL/db added to the lane's sums (started when b0 == 0), and dL/d(input), with the folded relu's
 * backward, into the lane's dsrc: at the chunk's place for the chain's first layer (layers
 * before the chain read it), else at its start (the layer before reads it in this chunk). */
static poet_status gemm_chunk_backward(poet_stack *s, const net_lane *lane, int g, int l, int b0,
                                       int n, const float *ddst_data, const float *ddst_w,
                                       net_fault *fault) {
    const net_layer *layer = &s->layers[l];
    const net_scratch *x = &lane->layers[l];
    poet_conv_shape part = chunk_shape(layer, n);
    const float *src = chunk_input(s, lane, g, l, b0);
    NET_TRY(fault,
            poet_gemmconv_backward_weights(&part, src, layer->in_strides, input_relu(s, l),
                                           prebuilt_col(s, lane, l, b0), x->col_buf, ddst_w, b0 > 0,
                                           x->dw_gemm),
            "backward weights (sgemm)");
    if (!layer->needs_dsrc)
        return POET_OK;
    float *dsrc = memory_data(x->dsrc);
    NET_TRY(fault,
            poet_gemmconv_backward_data(
                &part, ddst_data, unit(s, g, l)->w_gemm, x->dcol, layer->fold_relu ? src : NULL,
                l == layer->chain_first ? dsrc + b0 * in_image(layer) : dsrc),
            "backward data (sgemm)");
    return POET_OK;
}

/* Member g's gradients of its chain of gemm layers ending at `last`, from the lane's sums into
 * its grads (or added to them). */
static void chain_gradients_out(poet_stack *s, const net_lane *lane, int g, int last,
                                int accumulate) {
    for (int l = s->layers[last].chain_first; l <= last; l++) {
        const net_layer *layer = &s->layers[l];
        const net_scratch *x = &lane->layers[l];
        if (!layer->gemm)
            continue;
        net_unit *u = unit(s, g, l);
        poet_gemmconv_gradients_from_gemm(&layer->shape, x->dw_gemm,
                                          memory_data(accumulate ? x->acc_w : u->grad_w),
                                          memory_data(accumulate ? x->acc_b : u->grad_b));
        if (accumulate)
            accumulate_into(s, lane, g, layer);
    }
}

/* dL/d(output) of pooling layer p, which a chain runs, as rows of channels. */
static poet_status pooled_gradient(poet_stack *s, const net_lane *lane, int p,
                                   const float **dpooled, net_fault *fault) {
    const net_layer *pool = &s->layers[p];
    const net_scratch *x = &lane->layers[p];
    dnnl_memory_t dnext = layer_dnext(s, lane, p);
    NET_DNNL(fault, refresh(lane, &pool->ddst_reorder, dnext, x->ddst_copy), "gradient reorder");
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    *dpooled = memory_data(via(&pool->ddst_reorder, dnext, x->ddst_copy));
    return POET_OK;
}

/* dL/d(output) of chain layer `last` for member g's images b0..b0+n-1, from the gradient of the
 * pooling it runs (dpooled: the batch's), into the lane's chunk buffer. */
static const float *chain_pool_backward(poet_stack *s, const net_lane *lane, int g, int last,
                                        const float *dpooled, int b0, int n) {
    const net_layer *layer = &s->layers[last];
    const net_scratch *x = &lane->layers[last];
    size_t C = (size_t)layer->shape.out_c, HW = (size_t)layer->shape.out_h * layer->shape.out_w;
    const unsigned char *mask = unit(s, g, last)->relu_mask;
    poet_pool_global_backward((size_t)n, HW, C, dpooled + b0 * C,
                              mask ? mask + b0 * out_image(layer) : NULL, x->chunk_ddst);
    return x->chunk_ddst;
}

/* Backward of member g's chain of gemm layers ending at `last`, in chain_forward's chunks: each
 * chunk first recomputes the inner layers' outputs, then goes from the last layer to the first,
 * each handing the one before its dL/d(input). */
static poet_status chain_backward(poet_stack *s, const net_lane *lane, int g, int last,
                                  int accumulate, net_fault *fault) {
    const net_layer *last_layer = &s->layers[last];
    const float *ddst_data = NULL, *ddst_w = NULL, *dpooled = NULL;
    if (last_layer->chain_pool)
        NET_PASS(pooled_gradient(s, lane, last_layer->chain_pool, &dpooled, fault));
    else
        NET_PASS(chain_gradient(s, lane, last, &ddst_data, &ddst_w, fault));
    for (int b0 = 0; b0 < s->B; b0 += last_layer->chunk) {
        int n = s->B - b0 < last_layer->chunk ? s->B - b0 : last_layer->chunk;
        for (int l = last_layer->chain_first; l < last; l++)
            if (s->layers[l].gemm)
                NET_PASS(gemm_chunk_forward(s, lane, g, g, l, b0, n, fault));
        const float *chunk_data, *chunk_w; /* dL/d(the chain's output) for the chunk */
        if (last_layer->chain_pool) {
            chunk_data = chunk_w = chain_pool_backward(s, lane, g, last, dpooled, b0, n);
        } else {
            chunk_data = ddst_data + b0 * out_image(last_layer);
            chunk_w = ddst_w + b0 * out_image(last_layer);
        }
        for (int l = last; l >= last_layer->chain_first; l--) {
            if (!s->layers[l].gemm)
                continue;
            const float *for_data = chunk_data, *for_weights = chunk_w;
            if (l < last) /* the next gemm layer's dL/d(input), at the start of its buffer */
                for_data = for_weights = memory_data(layer_dnext(s, lane, l));
            NET_PASS(gemm_chunk_backward(s, lane, g, l, b0, n, for_data, for_weights, fault));
        }
    }
    chain_gradients_out(s, lane, g, last, accumulate);
    return POET_OK;
}

/* Backward runs the layers in reverse order, down to the first layer with weights: nothing
 * before it has parameters, and nobody needs dL/d(images). */
static poet_status member_backward(poet_stack *s, const net_lane *lane, int g, int accumulate,
                                   net_fault *fault) {
    for (int l = s->L - 1; l >= s->first_w; l--) {
        if (s->layers[l].by_chain)
            continue;
        if (s->layers[l].gemm) {
            NET_PASS(chain_backward(s, lane, g, l, accumulate, fault));
            l = s->layers[l].chain_first;
            continue;
        }
        if (s->layers[l].needs_dsrc && !s->layers[l].folded)
            NET_PASS(data_backward(s, lane, g, l, fault));
        if (is_weight_layer(s->layers[l].kind))
            NET_PASS(weights_backward(s, lane, g, l, accumulate, fault));
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

/* Runs every member's forward (backward = 0) or backward, one member per thread at a time. Each
 * thread runs its primitives single-threaded, as they were created.
 *
 * Signals are blocked on the computing threads meanwhile: oneDNN 2.6's JIT sgemm kernels point
 * rsp into the heap, so a signal handler running on such a thread (ours for SIGTERM/SIGUSR1, a
 * profiler's) writes its frame over heap memory (oneDNN issue #4845, fixed in 3.x by PR #4855).
 * Seen here as "corrupted size vs. prev_size" aborts when Slurm preempted a job. A blocked signal
 * goes to another thread (MPI's) or waits until the members are done: our handler only sets a
 * flag that the trainer reads between steps anyway. */
static poet_status run_members(poet_stack *s, int backward, int accumulate) {
    poet_status shared_st = POET_OK;
    net_fault shared_fault = {NULL, dnnl_success};
    for (int g = 0; g < s->G; g++) {
        s->member_st[g] = POET_OK;
        s->member_fault[g] = shared_fault;
    }
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
        if (!backward && (s->first_w > 0 || s->layers[s->first_w].shared_col)) {
#pragma omp single
            shared_st = shared_forward(s, lane, &shared_fault);
            /* the single's barrier: every thread sees the shared layers' output */
            if (lane->shared_col && shared_st == POET_OK)
                shared_im2col(s, lane);
        }
#pragma omp for schedule(static)
        for (int g = 0; g < s->G; g++)
            if (shared_st == POET_OK)
                s->member_st[g] = backward
                                      ? member_backward(s, lane, g, accumulate, &s->member_fault[g])
                                      : member_forward(s, lane, g, &s->member_fault[g]);
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

poet_status poet_stack_forward(poet_stack *s, const float *images, float *logits) {
    poet_status st = POET_OK;
    const poet_shape *in = &s->plan.input;
    /* Our own copy: backward of the first layer reads the images after the caller moved on. */
    memcpy(s->images_buf, images, (size_t)s->B * in->c * in->h * in->w * sizeof(float));
    POET_TRY(run_members(s, 0, 0));
    memcpy(logits, s->logits_buf, (size_t)s->B * s->G * s->plan.classes * sizeof(float));
fail:
    return st;
}

poet_status poet_stack_backward(poet_stack *s, const float *dlogits, int accumulate) {
    poet_status st = POET_OK;
    if (!s->training)
        POET_FAIL(POET_ERR_INTERNAL, "net.c: backward on a stack created for inference");
    memcpy(s->dlogits_buf, dlogits, (size_t)s->B * s->plan.classes * sizeof(float));
    POET_TRY(run_members(s, 1, accumulate));
fail:
    return st;
}

/* ---- member views ---------------------------------------------------------------------------- */

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
