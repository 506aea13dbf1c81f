/* netchain.c — the gemm-chain backend of a stack (net.c): convolutions as im2col + sgemm,
 * consecutive ones run chunk by chunk of images.
 *
 * Legend: netimpl.h.
 *
 * Convolutions ("gemm", the default; poet_stack_options.convolution): a conv or linear layer (a
 * convolution whose kernel covers its input) has no oneDNN primitives but runs as im2col +
 * dnnl_sgemm + col2im (gemmconv.h) on the lane's thread, nhwc in and out, its weights rearranged
 * into gemm layout each forward (faster on the reference network, linear layers included:
 * bench/README.md). Its input is read in place when plain (the images, nhwc activations); the
 * first weight layer's im2col matrix is built once per batch by each thread for all its members
 * (run_members, net.c). A fused relu just before it is "folded": its backward is the mask in the
 * convolution's col2im.
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
#include <dnnl.h>

#include <stddef.h>

#include "netimpl.h"
#include "poet/gemmconv.h"
#include "poet/pool.h"

/* The strides of a plain (unblocked) 4-D layout; 0 when the layout is blocked. */
int net_plain_strides(const dnnl_memory_desc_t *md, poet_strides *st) {
    if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks)
        return 0;
    const dnnl_dim_t *d = md->format_desc.blocking.strides;
    *st = (poet_strides){(size_t)d[0], (size_t)d[1], (size_t)d[2], (size_t)d[3]};
    return 1;
}

/* A convolution as im2col + sgemm: output and dL/d(input) nhwc, input read in place when its
 * layout is plain (else through a reorder to nhwc). Backward reorders bring dL/d(output) to
 * nhwc; the weights stay plain and are rearranged by gemmconv. */
poet_status net_gemm_conv_create(poet_stack *s, int l, const dnnl_memory_desc_t *in_md) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    const poet_layer_plan *lp = &s->plan.layers[l];
    POET_TRY(net_check_window(lp, l));
    layer->shape =
        (poet_conv_shape){s->B,      lp->in.c,     lp->in.h,     lp->in.w,   lp->out.c,  lp->out.h,
                          lp->out.w, lp->kernel_h, lp->kernel_w, lp->stride, lp->padding};
    layer->shared_col = l == s->first_w;
    layer->src_md = *in_md;
    if (!net_plain_strides(in_md, &layer->in_strides)) {
        POET_TRY(net_activation_md(&layer->src_md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc));
        POET_TRY(net_reorder_create(s, in_md, &layer->src_md, &layer->src_reorder));
        layer->in_strides = poet_strides_nhwc(lp->in.c, lp->in.h, lp->in.w);
    }
    POET_TRY(net_activation_md(&layer->dst_md, s->B, lp->out.c, lp->out.h, lp->out.w, dnnl_nhwc));
    dnnl_memory_desc_t b_md;
    POET_TRY(net_weight_mds(lp, dnnl_oihw, &layer->w_md, &b_md));
    layer->bwd_ddst_md = layer->bwdw_ddst_md = layer->dst_md;
    POET_TRY(net_activation_md(&layer->dsrc_md, s->B, lp->in.c, lp->in.h, lp->in.w, dnnl_nhwc));
fail:
    return st;
}

/* Gemm layer `layer`'s shape for a chunk of n images. */
poet_conv_shape net_chunk_shape(const net_layer *layer, int n) {
    poet_conv_shape chunk = layer->shape;
    chunk.batch = n;
    return chunk;
}

/* A gemm convolution that reads a fused relu's output in place applies that relu's backward in
 * its col2im (one pass over dL/d(input) fewer): the mask is the relu's output, in the same nhwc
 * layout as the gradient. */
void net_fold_relus(poet_stack *s) {
    for (int l = s->first_w + 1; l < s->L; l++) {
        net_layer *layer = &s->layers[l], *relu = &s->layers[l - 1];
        if (layer->gemm && layer->needs_dsrc && !layer->src_reorder.prim &&
            relu->kind == POET_LAYER_RELU && relu->fused && relu->needs_dsrc &&
            layer->input == l - 1 && relu->sole_reader == l &&
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
    if (s->layers[relu_between ? last + 1 : last].sole_reader !=
        next) /* inner outputs are not kept */
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
    return net_plain_strides(md, &st) && st.c == 1 && st.n == (size_t)C;
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
    if (s->layers[layer->relu_after ? last + 1 : last].sole_reader != p)
        return;
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
void net_chains_create(poet_stack *s) {
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
poet_status net_chain_fills_create(poet_stack *s) {
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

/* ---- forward ----------------------------------------------------------------------------------
 */
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
void net_shared_im2col(poet_stack *s, const net_lane *lane) {
    const net_layer *layer = &s->layers[s->first_w];
    const float *src = memory_data(net_layer_src(s, 0, s->first_w));
    for (int b0 = 0; b0 < s->B; b0 += layer->chunk) {
        poet_conv_shape part =
            net_chunk_shape(layer, s->B - b0 < layer->chunk ? s->B - b0 : layer->chunk);
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
    return (const float *)memory_data(net_layer_src(s, a, l)) + b0 * in_image(layer);
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
    poet_conv_shape part = net_chunk_shape(layer, n);
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
poet_status net_chain_forward(poet_stack *s, const net_lane *lane, int g, int a, int first,
                              net_fault *fault) {
    const net_layer *first_layer = &s->layers[first];
    if (!first_layer->shared_col) {
        NET_DNNL(fault,
                 net_refresh(lane, &first_layer->src_reorder, net_layer_input(s, a, first),
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

/* ---- backward ---------------------------------------------------------------------------------
 */

/* dL/d(output) of the chain's last layer, as backward data (*for_data) and backward weights
 * (*for_weights) read it, after their reorders. */
static poet_status chain_gradient(poet_stack *s, const net_lane *lane, int last,
                                  const float **for_data, const float **for_weights,
                                  net_fault *fault) {
    const net_layer *layer = &s->layers[last];
    const net_scratch *x = &lane->layers[last];
    dnnl_memory_t dnext = net_layer_dnext(s, lane, last), ddst = dnext;
    if (layer->needs_dsrc) {
        NET_DNNL(fault, net_refresh(lane, &layer->ddst_reorder, dnext, x->ddst_copy),
                 "gradient reorder");
        ddst = via(&layer->ddst_reorder, dnext, x->ddst_copy);
    }
    NET_DNNL(fault, net_refresh(lane, &layer->bwdw_ddst_reorder, ddst, x->bwdw_ddst_copy),
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
    poet_conv_shape part = net_chunk_shape(layer, n);
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
            net_accumulate_into(s, lane, g, layer);
    }
}

/* dL/d(output) of pooling layer p, which a chain runs, as rows of channels. */
static poet_status pooled_gradient(poet_stack *s, const net_lane *lane, int p,
                                   const float **dpooled, net_fault *fault) {
    const net_layer *pool = &s->layers[p];
    const net_scratch *x = &lane->layers[p];
    dnnl_memory_t dnext = net_layer_dnext(s, lane, p);
    NET_DNNL(fault, net_refresh(lane, &pool->ddst_reorder, dnext, x->ddst_copy),
             "gradient reorder");
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
poet_status net_chain_backward(poet_stack *s, const net_lane *lane, int g, int last, int accumulate,
                               net_fault *fault) {
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
                for_data = for_weights = memory_data(net_layer_dnext(s, lane, l));
            NET_PASS(gemm_chunk_backward(s, lane, g, l, b0, n, for_data, for_weights, fault));
        }
    }
    chain_gradients_out(s, lane, g, last, accumulate);
    return POET_OK;
}
