/* netimpl.h — what the files of the network module share: the stack's layers, members' memories
 * and lanes, and the functions one file calls in another. Private to src/net*.c; callers use net.h.
 *
 * Legend: B = batch, G = members in the stack, L = layers, T = lanes (threads), C/H/W =
 * channels/height/width of one member's activation (HW = H·W pixels), K = classes, O/I = a weight
 * layer's output/input channels. Capitals are only these sizes: a layer is `layer` (index l),
 * a lane `lane`, t indexes parameter tensors.
 *
 * The module's files:
 *   net.c      the stack: layer order, every buffer, creation and destruction, the member loops
 *              (forward in layer order, backward in reverse) and the threads that run them
 *   netdnnl.c  the oneDNN backend: layouts, primitives and reorders, and running a layer on them
 *   netchain.c the gemm-chain backend: convolutions as im2col + sgemm, run chunk by chunk of
 *              images in chains of consecutive layers (gemmconv.h, pool.h)
 *   netbnsync.c synchronised batch normalisation: statistics summed over several stacks
 *   netmem.c   which whole-batch buffers share each lane's pool (liveness over forward and
 *              backward, bufplan.h), and the census of a stack's memory
 */
#ifndef POET_NETIMPL_H
#define POET_NETIMPL_H

#include <dnnl.h>

#include <stddef.h>

#include "poet/arch.h"
#include "poet/error.h"
#include "poet/gemmconv.h"
#include "poet/net.h"

/* A primitive; `pad` indexes its scratchpad view in every lane (-1: it needs none). */
typedef struct {
    dnnl_primitive_t prim; /* NULL: not needed (for reorders: the two layouts agree) */
    int pad;
} net_op;

/* Layer l's primitives and layouts, shared by all members and lanes. A reorder op with a NULL
 * primitive means the consumer reads the producer's memory directly. */
typedef struct {
    poet_layer_kind kind;
    int needs_dsrc; /* backward produces dL/d(input): an earlier layer has weights */
    /* The graph (arch.h): a layer reads `input` (add: every plan input); its output is read by
     * n_readers later layers. The chain optimisations below (relu fusion and folding, chains,
     * pooling in a chain) apply only where an output has one reader, the next layer. A layer with
     * several readers gets dL/d(output) as the sum of theirs (grad_sum, into the lane's dsum). */
    int input; /* -1: the images */
    int n_readers;
    int sole_reader; /* the reader when n_readers == 1, else -1 */
    net_op grad_sum; /* oneDNN sum of the readers' dL/d(input), in dst_md */
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
    /* batchnorm in a synchronised stack (netbnsync.c): forward and backward with given
     * statistics, and the per-channel fix of dL/d(input) */
    net_op sync_fwd, sync_bwd, sync_fix;
} net_layer;

/* A lane's transient buffers for one layer: written and read within one member's backward. */
typedef struct {
    dnnl_memory_t ddst_copy, bwd_w_copy, bwdw_src_copy, bwdw_ddst_copy; /* reorder targets */
    dnnl_memory_t dsrc;                                                 /* dL/da_l in dsrc_md */
    dnnl_memory_t dsum;    /* dL/d(output) summed over several readers (grad_sum), in dst_md */
    float *col_buf, *dcol; /* gemm: a chunk's im2col matrix and dL/d of it */
    float *dw_gemm;        /* gemm: dL/dW and dL/db in gemm layout, summed over chunks */
    float *chunk_out;      /* gemm, inner or chain_pool: the layer's output for one chunk (an inner
                            * layer's before its relu) */
    float *chunk_ddst;     /* gemm, chain_pool: dL/d(output) for one chunk */
    dnnl_memory_t dw;      /* dL/dW in dw_md when that is not plain */
    dnnl_memory_t acc_w, acc_b; /* plain, over the lane's accumulate buffer */
    dnnl_memory_t fix_a, fix_b; /* synchronised batchnorm: the fix's a and b [1, C, 1, 1] */
} net_scratch;

/* The whole-batch buffers that share one pool per lane by liveness (netmem.c): the lane's
 * backward buffers (net_scratch), and the member outputs and input copies that only forward reads
 * (their net_unit memories are pointed into the running lane's pool by each forward). */
enum {
    NET_POOL_DSRC,
    NET_POOL_DSUM,
    NET_POOL_DDST_COPY,
    NET_POOL_BWDW_SRC_COPY,
    NET_POOL_BWDW_DDST_COPY,
    NET_POOL_LANE_SLOTS, /* the ones above are net_scratch's */
    NET_POOL_DST = NET_POOL_LANE_SLOTS,
    NET_POOL_SRC_COPY,
    NET_POOL_SLOTS
};

/* The gemm chains' lane buffers of a layer (net_scratch), in net_gemm_scratch_floats' order. */
enum {
    NET_GEMM_COL,
    NET_GEMM_DCOL,
    NET_GEMM_CHUNK_OUT,
    NET_GEMM_DW,
    NET_GEMM_CHUNK_DDST,
    NET_GEMM_BUFS
};

/* What one thread needs to run members: its own stream, scratchpad and transient buffers. */
typedef struct {
    dnnl_stream_t stream;
    net_scratch *layers; /* [L] */
    void *pool;          /* the pooled buffers of `layers` (poet_stack.pool_at), or NULL */
    void *chain_arena;   /* the gemm chains' buffers of `layers` (poet_stack.chain_at), or NULL */
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
    /* batchnorm: the batch's mean and biased variance [C] from forward (training), or views of
     * the member's running statistics in the stack's state (inference) */
    dnnl_memory_t bn_mean, bn_var;
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
    float *state; /* G * plan.state_count, stack layout (poet_stack_options.state) */

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

    /* Synchronised batch normalisation (poet_stack_options.sync, netbnsync.c): the members run
     * in phases that end at each of the n_sync batchnorm layers, with sync_fn summing sync_buf
     * over the stacks taking part in between; each member then has a lane of its own (n_lanes =
     * G), as its backward buffers must outlive a phase. n_sync = 0: one phase, T lanes. */
    int n_sync;
    int sync_layers[POET_MAX_LAYERS];   /* the batchnorm layers in forward order */
    double sync_count[POET_MAX_LAYERS]; /* N of each layer's last exchange */
    double *sync_buf;                   /* [the largest net_bnsync_doubles]: the exchange */
    double *sync_sums; /* [the same]: backward's summed Σdy·x̂, Σdy and N, which the fixes read */
    poet_stack_sync_fn sync_fn;
    void *sync_context;
    int n_lanes;

    int n_ops;
    dnnl_memory_desc_t pad_md[NET_MAX_OPS]; /* scratchpad layout of each op that needs one */
    size_t scratchpad_size;                 /* the largest */

    /* [L][NET_POOL_SLOTS]: where each lane's buffer of that layer and slot sits in its pool;
     * SIZE_MAX: it has its own allocation (absent, padded or never used). */
    size_t *pool_at;
    size_t pool_bytes; /* one lane's pool */
    /* [L][NET_GEMM_BUFS]: where each lane's gemm buffer of that layer sits in its chain arena:
     * a chain uses its buffers only while it runs, so every chain starts at 0 (netmem.c). */
    size_t *chain_at;
    size_t chain_bytes; /* one lane's chain arena */
};

static inline net_unit *unit(poet_stack *s, int g, int l) {
    return &s->units[(size_t)g * s->L + l];
}

static inline int is_weight_layer(poet_layer_kind kind) {
    return kind == POET_LAYER_CONV || kind == POET_LAYER_LINEAR;
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

/* NULL for no memory (the bias of a layer without one). */
static inline void *memory_data(dnnl_memory_t mem) {
    void *handle = NULL;
    if (mem)
        dnnl_memory_get_data_handle(mem, &handle);
    return handle;
}

/* What a consumer behind `reorder` reads: the copy when there is a reorder, else the producer's. */
static inline dnnl_memory_t via(const net_op *reorder, dnnl_memory_t from, dnnl_memory_t copy) {
    return reorder->prim ? copy : from;
}

/* ---- netdnnl.c: the oneDNN backend ---------------------------------------------------------- */

poet_status net_activation_md(dnnl_memory_desc_t *md, int batch, int channels, int h, int w,
                              dnnl_format_tag_t tag);
poet_status net_memory_new(poet_stack *s, const dnnl_memory_desc_t *md, void *handle,
                           dnnl_memory_t *mem);
poet_status net_floats_new(float **buf, size_t count);
void net_memory_free(dnnl_memory_t *mem);
poet_status net_op_create(poet_stack *s, const_dnnl_primitive_desc_t pd, net_op *op);
void net_op_destroy(net_op *op);
dnnl_status_t net_op_run(const net_lane *lane, const net_op *op, int nargs,
                         const dnnl_exec_arg_t *args);
poet_status net_reorder_create(poet_stack *s, const dnnl_memory_desc_t *from,
                               const dnnl_memory_desc_t *to, net_op *op);
dnnl_status_t net_refresh(const net_lane *lane, const net_op *reorder, dnnl_memory_t from,
                          dnnl_memory_t copy);
poet_status net_copy_for(poet_stack *s, const net_op *reorder, const dnnl_memory_desc_t *md,
                         dnnl_memory_t *copy);
poet_status net_check_window(const poet_layer_plan *lp, int l);
poet_status net_weight_mds(const poet_layer_plan *lp, dnnl_format_tag_t tag,
                           dnnl_memory_desc_t *w_md, dnnl_memory_desc_t *b_md);
dnnl_format_tag_t net_activation_tag(poet_stack *s, int l);
poet_status net_conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md);
poet_status net_relu_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md);
poet_status net_pool_create(poet_stack *s, int l, const dnnl_memory_desc_t *producer_md);
poet_status net_add_create(poet_stack *s, int l);
poet_status net_batchnorm_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md);
poet_status net_batchnorm_backward(poet_stack *s, const net_lane *lane, int g, int l,
                                   int accumulate, net_fault *fault);
poet_status net_backward_reorders(poet_stack *s);
poet_status net_output_create(poet_stack *s);
poet_status net_relu_attr_create(poet_stack *s);
poet_status net_dnnl_forward(poet_stack *s, const net_lane *lane, int g, int a, int l,
                             net_fault *fault);
poet_status net_data_backward(poet_stack *s, const net_lane *lane, int g, int l, net_fault *fault);
void net_accumulate_into(poet_stack *s, const net_lane *lane, int g, const net_layer *layer);
poet_status net_weights_backward(poet_stack *s, const net_lane *lane, int g, int l, int accumulate,
                                 net_fault *fault);

dnnl_status_t net_batchnorm_run(poet_stack *s, const net_lane *lane, int g, int a, int l,
                                const net_op *op);
void net_batchnorm_update(poet_stack *s, int g, int l, double n);

/* ---- netbnsync.c: synchronised batch normalisation ---------------------------------------------
 */

size_t net_bnsync_doubles(const poet_stack *s, int l); /* layer l's exchange: 2·G·C + 1 */
double net_bnsync_local_count(const poet_stack *s, int l);
poet_status net_bnsync_create(poet_stack *s, int l, unsigned flags);
poet_status net_bnsync_scratch_create(poet_stack *s, net_scratch *x, int l);
poet_status net_bnsync_stats(poet_stack *s, const net_lane *lane, int g, int l, net_fault *fault);
void net_bnsync_pack_stats(poet_stack *s, int l, double *x);
void net_bnsync_unpack_stats(poet_stack *s, int l, const double *x);
poet_status net_bnsync_normalise(poet_stack *s, const net_lane *lane, int g, int l,
                                 net_fault *fault);
void net_bnsync_keep_sums(poet_stack *s, int g, int l, const float *dgamma, const float *dbeta);
/* dL/d(input) += a + b·x: from the group's sums (dgamma NULL) or this stack's (dgamma, dbeta). */
poet_status net_bnsync_fix(poet_stack *s, const net_lane *lane, int g, int l, const float *dgamma,
                           const float *dbeta, net_fault *fault);

/* ---- netchain.c: the gemm-chain backend --------------------------------------------------------
 */

int net_plain_strides(const dnnl_memory_desc_t *md, poet_strides *st);
poet_status net_gemm_conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md);
poet_conv_shape net_chunk_shape(const net_layer *layer, int n);
void net_fold_relus(poet_stack *s);
void net_chains_create(poet_stack *s);
poet_status net_chain_fills_create(poet_stack *s);
void net_shared_im2col(poet_stack *s, const net_lane *lane);
poet_status net_chain_forward(poet_stack *s, const net_lane *lane, int g, int a, int first,
                              net_fault *fault);
poet_status net_chain_backward(poet_stack *s, const net_lane *lane, int g, int last, int accumulate,
                               net_fault *fault);

/* ---- netmem.c: the lanes' pooled backward buffers ------------------------------------------- */

/* Layer l's buffer in `slot` (its layout), or NULL when the layer has none. */
const dnnl_memory_desc_t *net_pool_slot_md(const poet_stack *s, int l, int slot);
dnnl_memory_t *net_pool_slot_mem(net_scratch *x, int slot);
/* Fills pool_at and pool_bytes from the layers' buffers and their lives in forward and backward. */
poet_status net_pool_plan(poet_stack *s);
/* Where layer l's buffer in `slot` sits in the pool of `pool`, or NULL: its own allocation. */
void *net_pool_place(const poet_stack *s, void *pool, int l, int slot);
/* Points member a's pooled output and input copy of layer l into the lane's pool: in forward,
 * before the layer runs (members take turns on lanes, each forward on whichever lane runs it). */
dnnl_status_t net_pool_forward_views(const poet_stack *s, const net_lane *lane, int a, int l);
/* Floats of each of layer l's gemm lane buffers (0: none). */
void net_gemm_scratch_floats(const poet_stack *s, int l, size_t floats[NET_GEMM_BUFS]);
/* Fills chain_at and chain_bytes: each chain's buffers one after another from offset 0. */
poet_status net_chain_arena_plan(poet_stack *s);

/* ---- net.c: the stack
 * ---------------------------------------------------------------------------- */

dnnl_memory_t net_layer_input(poet_stack *s, int a, int l);
dnnl_memory_t net_layer_input_at(poet_stack *s, int a, int l, int k); /* add: input k */
/* The layer whose dL/d(input) is reader r's share of its input's gradient, as it leaves it:
 * r, or r + 1 when r is a relu folded into it (an add passes its own gradient on instead). */
int net_dsrc_owner(const poet_stack *s, int r);
dnnl_memory_t net_layer_src(poet_stack *s, int a, int l);
dnnl_memory_t net_layer_dnext(poet_stack *s, const net_lane *lane, int l);

#endif
