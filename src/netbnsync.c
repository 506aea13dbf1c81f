/* netbnsync.c — synchronised batch normalisation (poet_stack_options.sync): a training stack's
 * batchnorm layers normalise with statistics summed over every stack taking part (the shards of a
 * member group, distributed.sync_batchnorm), and backward gives the gradient of exactly that.
 *
 * Legend: netimpl.h; n = this stack's elements per channel (B·H·W), N = the sum of n over the
 * stacks taking part, μ and σ² the combined mean and biased variance, inv = 1/sqrt(σ² + eps),
 * x̂ = (x − μ)·inv, γ the layer's weight (scale).
 *
 * Forward of layer l takes two steps with an exchange between them (net.c runs the members in
 * phases that end at each batchnorm layer):
 *   stats      oneDNN's training forward gives this stack's mean and biased variance (its output
 *              is overwritten by the next step); they leave as n·mean and n·(var + mean²), with n,
 *              and come back summed: μ = S1/N, σ² = S2/N − μ², computed in double;
 *   normalise  a forward with μ and σ² as given statistics; the running statistics move towards
 *              them as PyTorch's do, with N for the unbiased variance.
 * Backward of layer l, likewise:
 *   backward   oneDNN's backward with the statistics as given: γ·inv·dy, and this stack's
 *              Σdy·x̂ (its dL/dγ) and Σdy (dL/dβ), which cross the group;
 *   fix        the part that flows through μ and σ²:
 *                dx = γ·inv·(dy − Σdy/N − x̂·Σ(dy·x̂)/N) = γ·inv·dy + a + b·x,
 *                b = −γ·inv²·Σ(dy·x̂)/N,   a = −γ·inv·Σdy/N − b·μ,
 *              added per channel by one binary primitive (x·b, then + a, then + the gradient
 *              already there through a sum post-op), in the layers' own layouts.
 * The weight gradients stay this stack's own sums: the group's all-reduce adds them up anyway.
 * One stack alone computes PyTorch's BatchNorm2d this way too, rounded differently.
 */
#include <dnnl.h>

#include <math.h>
#include <string.h>

#include "netimpl.h"
#include "poet/dnnlerror.h"

#define BN_EPS 1e-5 /* as netdnnl.c: PyTorch's BatchNorm2d default */

static size_t channels(const poet_stack *s, int l) { return (size_t)s->plan.layers[l].out.c; }

/* Elements per channel in this stack's batch: B·H·W. */
static double local_count(const poet_stack *s, int l) {
    const poet_layer_plan *lp = &s->plan.layers[l];
    return (double)s->B * lp->in.h * lp->in.w;
}

size_t net_bnsync_doubles(const poet_stack *s, int l) {
    return 2 * (size_t)s->G * channels(s, l) + 1;
}

static poet_status op_from(poet_stack *s, const void *desc, const_dnnl_primitive_desc_t hint,
                           const_dnnl_primitive_attr_t attr, net_op *op, dnnl_primitive_desc_t *pd,
                           int l, const char *what) {
    if (dnnl_primitive_desc_create(pd, desc, attr, s->engine, hint) != dnnl_success)
        return poet_error_set(POET_ERR_DNNL,
                              "net.c: layer %d: oneDNN has no %s primitive for these shapes "
                              "(batch %d)",
                              l, what, s->B);
    return net_op_create(s, *pd, op);
}

/* The fix: dst (dL/dx, dsrc_md) += x (src_md) · b + a, b and a [1, C, 1, 1]. */
static poet_status fix_create(poet_stack *s, int l) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_memory_desc_t per_channel;
    dnnl_binary_desc_t desc;
    dnnl_dims_t dims = {1, (dnnl_dim_t)channels(s, l), 1, 1};
    POET_DNNL(dnnl_memory_desc_init_by_tag(&per_channel, 4, dims, dnnl_f32, dnnl_nchw));
    POET_DNNL(dnnl_primitive_attr_clone(&attr, s->attr));
    POET_DNNL(dnnl_post_ops_create(&ops));
    POET_DNNL(dnnl_post_ops_append_binary(ops, dnnl_binary_add, &per_channel));
    POET_DNNL(dnnl_post_ops_append_sum(ops, 1.f));
    POET_DNNL(dnnl_primitive_attr_set_post_ops(attr, ops));
    POET_DNNL(dnnl_binary_desc_init(&desc, dnnl_binary_mul, &layer->src_md, &per_channel,
                                    &layer->dsrc_md));
    POET_TRY(op_from(s, &desc, NULL, attr, &layer->sync_fix, &pd, l,
                     "synchronised batch normalisation's gradient fix"));
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (ops)
        dnnl_post_ops_destroy(ops);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return st;
}

poet_status net_bnsync_create(poet_stack *s, int l, unsigned flags) {
    poet_status st = POET_OK;
    net_layer *layer = &s->layers[l];
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_batch_normalization_desc_t desc, bdesc;
    flags |= dnnl_use_global_stats;
    POET_DNNL(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training,
                                                         &layer->src_md, (float)BN_EPS, flags));
    POET_TRY(op_from(s, &desc, NULL, s->attr, &layer->sync_fwd, &fpd, l,
                     "batch normalisation with given statistics"));
    POET_DNNL(dnnl_batch_normalization_backward_desc_init(&bdesc, dnnl_backward, &layer->dst_md,
                                                          &layer->src_md, (float)BN_EPS, flags));
    POET_TRY(op_from(s, &bdesc, fpd, s->attr, &layer->sync_bwd, &bpd, l,
                     "batch normalisation backward with given statistics"));
    /* It shares the per-batch backward's buffers: the same layouts or nothing. */
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0),
                                &layer->dst_md) ||
        !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_dst_md, 0),
                                &layer->bwd_ddst_md) ||
        !dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_src_md, 0),
                                &layer->dsrc_md))
        POET_FAIL(POET_ERR_DNNL,
                  "net.c: layer %d: oneDNN picked other layouts for batch normalisation with given "
                  "statistics than for the batch's own",
                  l);
    POET_TRY(fix_create(s, l));
fail:
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (bpd)
        dnnl_primitive_desc_destroy(bpd);
    return st;
}

poet_status net_bnsync_scratch_create(poet_stack *s, net_scratch *x, int l) {
    poet_status st = POET_OK;
    dnnl_memory_desc_t per_channel;
    dnnl_dims_t dims = {1, (dnnl_dim_t)channels(s, l), 1, 1};
    POET_DNNL(dnnl_memory_desc_init_by_tag(&per_channel, 4, dims, dnnl_f32, dnnl_nchw));
    POET_TRY(net_memory_new(s, &per_channel, NULL, &x->fix_a));
    POET_TRY(net_memory_new(s, &per_channel, NULL, &x->fix_b));
fail:
    return st;
}

/* ---- forward ----------------------------------------------------------------------------------
 */

/* Member g's layer l forward on `op`: the batch's statistics out (fwd) or the group's in
 * (sync_fwd); both read and write the same memories. */
/* Member g's layer l forward on `op`: the batch's statistics out (fwd) or the group's in
 * (sync_fwd). An output only forward reads lives in the lane's pool (netmem.c): this member's
 * lane, the same place for both steps. */
static poet_status forward_on(poet_stack *s, const net_lane *lane, int g, int l, const net_op *op,
                              const char *step, net_fault *fault) {
    NET_DNNL(fault, net_pool_forward_views(s, lane, g, l), "buffer pool");
    NET_DNNL(fault, net_batchnorm_run(s, lane, g, g, l, op), step);
    NET_DNNL(fault, dnnl_stream_wait(lane->stream), "stream wait");
    return POET_OK;
}

poet_status net_bnsync_stats(poet_stack *s, const net_lane *lane, int g, int l, net_fault *fault) {
    return forward_on(s, lane, g, l, &s->layers[l].fwd, "batch statistics", fault);
}

void net_bnsync_pack_stats(poet_stack *s, int l, double *x) {
    size_t C = channels(s, l);
    double n = local_count(s, l);
    for (int g = 0; g < s->G; g++) {
        const float *mean = memory_data(unit(s, g, l)->bn_mean);
        const float *var = memory_data(unit(s, g, l)->bn_var);
        for (size_t c = 0; c < C; c++) {
            x[2 * (g * C + c)] = n * mean[c];
            x[2 * (g * C + c) + 1] = n * ((double)var[c] + (double)mean[c] * mean[c]);
        }
    }
    x[2 * s->G * C] = n;
}

void net_bnsync_unpack_stats(poet_stack *s, int l, const double *x) {
    size_t C = channels(s, l);
    double N = x[2 * s->G * C];
    s->sync_count[l] = N;
    if (N <= 0) /* nobody contributed (every stack failed): keep this stack's own */
        return;
    for (int g = 0; g < s->G; g++) {
        float *mean = memory_data(unit(s, g, l)->bn_mean);
        float *var = memory_data(unit(s, g, l)->bn_var);
        for (size_t c = 0; c < C; c++) {
            double mu = x[2 * (g * C + c)] / N, sq = x[2 * (g * C + c) + 1] / N - mu * mu;
            mean[c] = (float)mu;
            var[c] = (float)(sq > 0 ? sq : 0); /* rounding can leave a constant channel below 0 */
        }
    }
}

poet_status net_bnsync_normalise(poet_stack *s, const net_lane *lane, int g, int l,
                                 net_fault *fault) {
    NET_PASS(forward_on(s, lane, g, l, &s->layers[l].sync_fwd,
                        "batch normalisation with the group's statistics", fault));
    net_batchnorm_update(s, g, l, s->sync_count[l] > 0 ? s->sync_count[l] : local_count(s, l));
    return POET_OK;
}

/* ---- backward ---------------------------------------------------------------------------------
 */

void net_bnsync_keep_sums(poet_stack *s, int g, int l, const float *dgamma, const float *dbeta) {
    size_t C = channels(s, l);
    double *x = s->sync_buf;
    for (size_t c = 0; c < C; c++) {
        x[2 * (g * C + c)] = dgamma[c];
        x[2 * (g * C + c) + 1] = dbeta[c];
    }
}

double net_bnsync_local_count(const poet_stack *s, int l) { return local_count(s, l); }

poet_status net_bnsync_fix(poet_stack *s, const net_lane *lane, int g, int l, const float *dgamma,
                           const float *dbeta, net_fault *fault) {
    size_t C = channels(s, l);
    net_unit *u = unit(s, g, l);
    const net_scratch *x = &lane->layers[l];
    /* The group's sums (sync_sums, after the exchange), or the ones given. */
    const double *sums = dgamma ? NULL : s->sync_sums + 2 * (size_t)g * C;
    double N = dgamma ? local_count(s, l) : s->sync_sums[2 * s->G * C];
    const float *gamma = memory_data(u->user_w), *mean = memory_data(u->bn_mean);
    const float *var = memory_data(u->bn_var);
    float *a = memory_data(x->fix_a), *b = memory_data(x->fix_b);
    for (size_t c = 0; c < C; c++) {
        double dg = sums ? sums[2 * c] : dgamma[c], db = sums ? sums[2 * c + 1] : dbeta[c];
        double inv = 1.0 / sqrt((double)var[c] + BN_EPS);
        double bc = N > 0 ? -gamma[c] * inv * inv * dg / N : 0;
        double ac = N > 0 ? -gamma[c] * inv * db / N - bc * mean[c] : 0;
        a[c] = (float)ac;
        b[c] = (float)bc;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC_0, net_layer_src(s, g, l)},
                              {DNNL_ARG_SRC_1, x->fix_b},
                              {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, x->fix_a},
                              {DNNL_ARG_DST, x->dsrc}};
    NET_DNNL(fault, net_op_run(lane, &s->layers[l].sync_fix, 4, args),
             "batch normalisation's gradient through its statistics");
    return POET_OK;
}
