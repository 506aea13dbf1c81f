/* reference.c — the naive double-precision network and joint loss (the oracle of the tests).
 *
 * Legend: B = batch, C/I = input channels, O = output channels, H/W = input height/width,
 * OH/OW = output height/width, K = classes, M = members.
 *
 * Every layer is a <layer>_forward / <layer>_backward pair of plain loops written straight from the
 * definition, in NCHW. Nothing is blocked or reordered: speed does not matter, obviousness does.
 * Pooling follows PyTorch's defaults: avg_pool counts padded zeros (count_include_pad=True) and
 * max_pool treats padding as -inf, picks the first maximum in row-major window order and sends the
 * whole gradient to it.
 *
 * A network is a graph: layer l reads act[inputs[k] + 1] (act[0] = the images); add sums its
 * inputs. Backward gives each input its share of dL/d(input) by adding into that input's grad, so
 * an output read by several layers receives the sum of their gradients.
 *
 * Batch normalisation (PyTorch's BatchNorm2d, eps 1e-5, momentum 0.1): per channel c over batch
 * and pixels (n = B·H·W values), train mode y = w·(x − μ)/sqrt(σ² + eps) + b with the batch's
 * mean μ and biased variance σ², then running_mean ← 0.9·running_mean + 0.1·μ and
 * running_var ← 0.9·running_var + 0.1·σ²·n/(n − 1); eval mode uses the running statistics.
 */
#include "poet/reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct poet_ref_cache {
    int batch;
    int n_layers;
    double
        *act[POET_MAX_LAYERS + 1]; /* act[0] = input, act[l+1] = output of layer l: [B, C, H, W] */
    double *grad[POET_MAX_LAYERS + 1]; /* dL/d act[l], same shapes */
    long *argmax[POET_MAX_LAYERS];     /* max_pool: [B, C, OH, OW] flat input index of the winner */
    double *scratch;                   /* one layer's dL/d(input) before it is added to its grad */
    double *xhat[POET_MAX_LAYERS];     /* batchnorm: the normalised input, [B, C, H, W] */
    double *inv_std[POET_MAX_LAYERS];  /* batchnorm: 1/sqrt(σ² + eps) used, [C] */
    double *state;                     /* member state (running statistics), or NULL */
    int train;                         /* batchnorm mode */
};

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

void poet_ref_set_state(poet_ref_cache *cache, double *state, int train) {
    cache->state = state;
    cache->train = train;
}

static size_t shape_count(poet_shape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }

poet_ref_cache *poet_ref_cache_create(const poet_arch_plan *plan, int batch) {
    poet_ref_cache *cache = calloc(1, sizeof *cache);
    if (!cache)
        return NULL;
    cache->batch = batch;
    cache->n_layers = plan->n_layers;
    size_t most = 1;
    for (int l = 0; l <= plan->n_layers; l++) {
        poet_shape s = l == 0 ? plan->input : plan->layers[l - 1].out;
        size_t n = (size_t)batch * shape_count(s);
        most = n > most ? n : most;
        cache->act[l] = calloc(n ? n : 1, sizeof(double));
        cache->grad[l] = calloc(n ? n : 1, sizeof(double));
        if (!cache->act[l] || !cache->grad[l])
            goto fail;
    }
    cache->scratch = calloc(most, sizeof(double));
    if (!cache->scratch)
        goto fail;
    for (int l = 0; l < plan->n_layers; l++) {
        if (plan->layers[l].kind == POET_LAYER_BATCHNORM) {
            size_t n = (size_t)batch * shape_count(plan->layers[l].out);
            cache->xhat[l] = calloc(n ? n : 1, sizeof(double));
            cache->inv_std[l] = calloc((size_t)plan->layers[l].out.c, sizeof(double));
            if (!cache->xhat[l] || !cache->inv_std[l])
                goto fail;
        }
        if (plan->layers[l].kind != POET_LAYER_MAX_POOL)
            continue;
        size_t n = (size_t)batch * shape_count(plan->layers[l].out);
        cache->argmax[l] = calloc(n ? n : 1, sizeof(long));
        if (!cache->argmax[l])
            goto fail;
    }
    return cache;
fail:
    poet_ref_cache_destroy(cache);
    return NULL;
}

void poet_ref_cache_destroy(poet_ref_cache *cache) {
    if (!cache)
        return;
    for (int l = 0; l <= cache->n_layers; l++) {
        free(cache->act[l]);
        free(cache->grad[l]);
    }
    for (int l = 0; l < cache->n_layers; l++) {
        free(cache->argmax[l]);
        free(cache->xhat[l]);
        free(cache->inv_std[l]);
    }
    free(cache->scratch);
    free(cache);
}

/* ---- convolution: y[b,o,oh,ow] = bias[o] + Σ_{i,kh,kw} w[o,i,kh,kw] · x[b,i,oh·s−p+kh,ow·s−p+kw]
 */

static void conv_forward(const poet_layer_plan *lp, const double *w, const double *bias, int batch,
                         const double *x, double *y) {
    poet_shape in = lp->in, out = lp->out;
    int kh_n = lp->kernel_h, kw_n = lp->kernel_w, s = lp->stride, p = lp->padding;
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < out.c; o++)
            for (int oh = 0; oh < out.h; oh++)
                for (int ow = 0; ow < out.w; ow++) {
                    double sum = bias ? bias[o] : 0.0;
                    for (int i = 0; i < in.c; i++)
                        for (int kh = 0; kh < kh_n; kh++)
                            for (int kw = 0; kw < kw_n; kw++) {
                                int ih = oh * s - p + kh, iw = ow * s - p + kw;
                                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w)
                                    continue; /* zero padding */
                                sum += w[((o * in.c + i) * kh_n + kh) * kw_n + kw] *
                                       x[((b * in.c + i) * in.h + ih) * in.w + iw];
                            }
                    y[((b * out.c + o) * out.h + oh) * out.w + ow] = sum;
                }
}

/* Accumulates dw, dbias (already zeroed; NULL: no bias) and overwrites dx (when not NULL) from dy.
 */
static void conv_backward(const poet_layer_plan *lp, const double *w, int batch, const double *x,
                          const double *dy, double *dw, double *dbias, double *dx) {
    poet_shape in = lp->in, out = lp->out;
    int kh_n = lp->kernel_h, kw_n = lp->kernel_w, s = lp->stride, p = lp->padding;
    if (dx)
        memset(dx, 0, (size_t)batch * shape_count(in) * sizeof *dx);
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < out.c; o++)
            for (int oh = 0; oh < out.h; oh++)
                for (int ow = 0; ow < out.w; ow++) {
                    double g = dy[((b * out.c + o) * out.h + oh) * out.w + ow];
                    if (dbias)
                        dbias[o] += g;
                    for (int i = 0; i < in.c; i++)
                        for (int kh = 0; kh < kh_n; kh++)
                            for (int kw = 0; kw < kw_n; kw++) {
                                int ih = oh * s - p + kh, iw = ow * s - p + kw;
                                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w)
                                    continue;
                                size_t wi = (size_t)((o * in.c + i) * kh_n + kh) * kw_n + kw;
                                size_t xi = (size_t)((b * in.c + i) * in.h + ih) * in.w + iw;
                                dw[wi] += g * x[xi];
                                if (dx)
                                    dx[xi] += g * w[wi];
                            }
                }
}

/* ---- relu: y = max(0, x); dx = dy where x > 0 ---- */

static void relu_forward(size_t n, const double *x, double *y) {
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] > 0 ? x[i] : 0;
}

static void relu_backward(size_t n, const double *x, const double *dy, double *dx) {
    for (size_t i = 0; i < n; i++)
        dx[i] = x[i] > 0 ? dy[i] : 0;
}

/* ---- avg_pool: y = Σ_window x / (kh·kw), padded zeros counted (count_include_pad=True) ---- */

static void avg_pool_forward(const poet_layer_plan *lp, int batch, const double *x, double *y) {
    poet_shape in = lp->in, out = lp->out;
    int kh_n = lp->kernel_h, kw_n = lp->kernel_w, s = lp->stride, p = lp->padding;
    double area = (double)kh_n * kw_n;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < out.c; c++)
            for (int oh = 0; oh < out.h; oh++)
                for (int ow = 0; ow < out.w; ow++) {
                    double sum = 0;
                    for (int kh = 0; kh < kh_n; kh++)
                        for (int kw = 0; kw < kw_n; kw++) {
                            int ih = oh * s - p + kh, iw = ow * s - p + kw;
                            if (ih >= 0 && ih < in.h && iw >= 0 && iw < in.w)
                                sum += x[((b * in.c + c) * in.h + ih) * in.w + iw];
                        }
                    y[((b * out.c + c) * out.h + oh) * out.w + ow] = sum / area;
                }
}

static void avg_pool_backward(const poet_layer_plan *lp, int batch, const double *dy, double *dx) {
    poet_shape in = lp->in, out = lp->out;
    int kh_n = lp->kernel_h, kw_n = lp->kernel_w, s = lp->stride, p = lp->padding;
    double area = (double)kh_n * kw_n;
    memset(dx, 0, (size_t)batch * shape_count(in) * sizeof *dx);
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < out.c; c++)
            for (int oh = 0; oh < out.h; oh++)
                for (int ow = 0; ow < out.w; ow++) {
                    double g = dy[((b * out.c + c) * out.h + oh) * out.w + ow] / area;
                    for (int kh = 0; kh < kh_n; kh++)
                        for (int kw = 0; kw < kw_n; kw++) {
                            int ih = oh * s - p + kh, iw = ow * s - p + kw;
                            if (ih >= 0 && ih < in.h && iw >= 0 && iw < in.w)
                                dx[((b * in.c + c) * in.h + ih) * in.w + iw] += g;
                        }
                }
}

/* ---- max_pool: y = max over the window's real elements; the first maximum wins ---- */

static void max_pool_forward(const poet_layer_plan *lp, int batch, const double *x, double *y,
                             long *argmax) {
    poet_shape in = lp->in, out = lp->out;
    int kh_n = lp->kernel_h, kw_n = lp->kernel_w, s = lp->stride, p = lp->padding;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < out.c; c++)
            for (int oh = 0; oh < out.h; oh++)
                for (int ow = 0; ow < out.w; ow++) {
                    double best = -INFINITY;
                    long best_at = -1;
                    for (int kh = 0; kh < kh_n; kh++)
                        for (int kw = 0; kw < kw_n; kw++) {
                            int ih = oh * s - p + kh, iw = ow * s - p + kw;
                            if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w)
                                continue; /* padding is -inf: never chosen */
                            long xi = ((long)(b * in.c + c) * in.h + ih) * in.w + iw;
                            if (best_at < 0 || x[xi] > best) { /* strict: ties keep the first */
                                best = x[xi];
                                best_at = xi;
                            }
                        }
                    long yi = ((long)(b * out.c + c) * out.h + oh) * out.w + ow;
                    y[yi] = best;
                    argmax[yi] = best_at;
                }
}

static void max_pool_backward(const poet_layer_plan *lp, int batch, const double *dy,
                              const long *argmax, double *dx) {
    size_t n_out = (size_t)batch * shape_count(lp->out);
    memset(dx, 0, (size_t)batch * shape_count(lp->in) * sizeof *dx);
    for (size_t i = 0; i < n_out; i++)
        if (argmax[i] >= 0)
            dx[argmax[i]] += dy[i];
}

/* ---- linear: y[b,o] = bias[o] + Σ_i w[o,i] · x[b,i], x flattened as C·H·W ---- */

static void linear_forward(const poet_layer_plan *lp, const double *w, const double *bias,
                           int batch, const double *x, double *y) {
    size_t n_in = shape_count(lp->in);
    int n_out = lp->out.c;
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < n_out; o++) {
            double sum = bias ? bias[o] : 0.0;
            for (size_t i = 0; i < n_in; i++)
                sum += w[o * n_in + i] * x[b * n_in + i];
            y[(size_t)b * n_out + o] = sum;
        }
}

static void linear_backward(const poet_layer_plan *lp, const double *w, int batch, const double *x,
                            const double *dy, double *dw, double *dbias, double *dx) {
    size_t n_in = shape_count(lp->in);
    int n_out = lp->out.c;
    if (dx)
        memset(dx, 0, (size_t)batch * n_in * sizeof *dx);
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < n_out; o++) {
            double g = dy[(size_t)b * n_out + o];
            if (dbias)
                dbias[o] += g;
            for (size_t i = 0; i < n_in; i++) {
                dw[o * n_in + i] += g * x[b * n_in + i];
                if (dx)
                    dx[b * n_in + i] += g * w[o * n_in + i];
            }
        }
}

/* ---- batch normalisation, per channel c over n = B·H·W values ---- */

static void batchnorm_forward(const poet_layer_plan *lp, const double *w, const double *bias,
                              int batch, const double *x, double *y, double *xhat, double *inv_std,
                              double *running_mean, double *running_var, int train) {
    int C = lp->in.c;
    size_t HW = (size_t)lp->in.h * lp->in.w, n = (size_t)batch * HW;
    for (int c = 0; c < C; c++) {
        double mean = running_mean[c], var = running_var[c];
        if (train) {
            double sum = 0, sq = 0;
            for (int b = 0; b < batch; b++)
                for (size_t p = 0; p < HW; p++)
                    sum += x[((size_t)b * C + c) * HW + p];
            mean = sum / (double)n;
            for (int b = 0; b < batch; b++)
                for (size_t p = 0; p < HW; p++) {
                    double d = x[((size_t)b * C + c) * HW + p] - mean;
                    sq += d * d;
                }
            var = sq / (double)n;
            running_mean[c] = (1 - BN_MOMENTUM) * running_mean[c] + BN_MOMENTUM * mean;
            double unbiased = n > 1 ? sq / (double)(n - 1) : var;
            running_var[c] = (1 - BN_MOMENTUM) * running_var[c] + BN_MOMENTUM * unbiased;
        }
        inv_std[c] = 1 / sqrt(var + BN_EPS);
        for (int b = 0; b < batch; b++)
            for (size_t p = 0; p < HW; p++) {
                size_t i = ((size_t)b * C + c) * HW + p;
                xhat[i] = (x[i] - mean) * inv_std[c];
                y[i] = w[c] * xhat[i] + bias[c];
            }
    }
}

/* Train mode: μ and σ² depend on every x, so dx_i = inv_std/n · (n·g_i − Σg − x̂_i·Σ g·x̂) with
 * g = dy·w. Eval mode: the statistics are constants, dx = dy·w·inv_std. */
static void batchnorm_backward(const poet_layer_plan *lp, const double *w, int batch,
                               const double *dy, const double *xhat, const double *inv_std,
                               int train, double *dw, double *dbias, double *dx) {
    int C = lp->in.c;
    size_t HW = (size_t)lp->in.h * lp->in.w, n = (size_t)batch * HW;
    for (int c = 0; c < C; c++) {
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int b = 0; b < batch; b++)
            for (size_t p = 0; p < HW; p++) {
                size_t i = ((size_t)b * C + c) * HW + p;
                sum_dy += dy[i];
                sum_dy_xhat += dy[i] * xhat[i];
            }
        dw[c] = sum_dy_xhat;
        dbias[c] = sum_dy;
        if (!dx)
            continue;
        for (int b = 0; b < batch; b++)
            for (size_t p = 0; p < HW; p++) {
                size_t i = ((size_t)b * C + c) * HW + p;
                double g = dy[i] * w[c];
                dx[i] = train ? inv_std[c] / (double)n *
                                    ((double)n * g - w[c] * sum_dy - xhat[i] * w[c] * sum_dy_xhat)
                              : g * inv_std[c];
            }
    }
}

/* ---- the whole member ---- */

void poet_ref_forward(const poet_arch_plan *plan, const double *params, int batch, const double *x,
                      double *logits, poet_ref_cache *cache) {
    memcpy(cache->act[0], x, (size_t)batch * shape_count(plan->input) * sizeof *x);
    for (int l = 0; l < plan->n_layers; l++) {
        const poet_layer_plan *lp = &plan->layers[l];
        const double *in = cache->act[lp->inputs[0] + 1];
        double *out = cache->act[l + 1];
        const double *w = NULL, *bias = NULL;
        if (lp->weight_tensor >= 0) {
            w = params + plan->tensors[lp->weight_tensor].offset;
            if (lp->has_bias) /* a conv or linear layer with "bias": false has none */
                bias = params + plan->tensors[lp->weight_tensor + 1].offset;
        }
        switch (lp->kind) {
        case POET_LAYER_CONV:
            conv_forward(lp, w, bias, batch, in, out);
            break;
        case POET_LAYER_RELU:
            relu_forward((size_t)batch * shape_count(lp->in), in, out);
            break;
        case POET_LAYER_AVG_POOL:
            avg_pool_forward(lp, batch, in, out);
            break;
        case POET_LAYER_MAX_POOL:
            max_pool_forward(lp, batch, in, out, cache->argmax[l]);
            break;
        case POET_LAYER_LINEAR:
            linear_forward(lp, w, bias, batch, in, out);
            break;
        case POET_LAYER_BATCHNORM: {
            double *rm = cache->state + plan->states[lp->state_tensor].offset;
            double *rv = cache->state + plan->states[lp->state_tensor + 1].offset;
            batchnorm_forward(lp, w, bias, batch, in, out, cache->xhat[l], cache->inv_std[l], rm,
                              rv, cache->train);
            break;
        }
        case POET_LAYER_ADD: {
            size_t n = (size_t)batch * shape_count(lp->out);
            memcpy(out, in, n * sizeof *out);
            for (int k = 1; k < lp->n_inputs; k++) {
                const double *more = cache->act[lp->inputs[k] + 1];
                for (size_t i = 0; i < n; i++)
                    out[i] += more[i];
            }
            break;
        }
        }
    }
    /* The last activation is [B, K, 1, 1], i.e. [B, K]. */
    memcpy(logits, cache->act[plan->n_layers], (size_t)batch * plan->classes * sizeof *logits);
}

/* dst += src, n elements. */
static void add_into(size_t n, const double *src, double *dst) {
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Runs the layers in reverse order; grad[l] receives dL/d act[l], summed over the layers that
 * read act[l]: when layer l is reached, every layer that reads its output (all later) has added
 * its share. The input gradient (grad[0]) is only computed when the caller asks for dx. */
void poet_ref_backward(const poet_arch_plan *plan, const double *params, int batch,
                       const double *dlogits, poet_ref_cache *cache, double *dparams, double *dx) {
    memset(dparams, 0, plan->param_count * sizeof *dparams);
    for (int l = 0; l < plan->n_layers; l++) {
        poet_shape s = l == 0 ? plan->input : plan->layers[l - 1].out;
        memset(cache->grad[l], 0, (size_t)batch * shape_count(s) * sizeof(double));
    }
    memcpy(cache->grad[plan->n_layers], dlogits, (size_t)batch * plan->classes * sizeof *dlogits);
    for (int l = plan->n_layers - 1; l >= 0; l--) {
        const poet_layer_plan *lp = &plan->layers[l];
        const double *x = cache->act[lp->inputs[0] + 1], *dy = cache->grad[l + 1];
        size_t n_in = (size_t)batch * shape_count(lp->in);
        if (lp->kind == POET_LAYER_ADD) {
            for (int k = 0; k < lp->n_inputs; k++)
                add_into(n_in, dy, cache->grad[lp->inputs[k] + 1]);
            continue;
        }
        double *dxl = (lp->inputs[0] >= 0 || dx) ? cache->scratch : NULL;
        const double *w = NULL;
        double *dw = NULL, *dbias = NULL;
        if (lp->weight_tensor >= 0) {
            w = params + plan->tensors[lp->weight_tensor].offset;
            dw = dparams + plan->tensors[lp->weight_tensor].offset;
            if (lp->has_bias)
                dbias = dparams + plan->tensors[lp->weight_tensor + 1].offset;
        }
        switch (lp->kind) {
        case POET_LAYER_CONV:
            conv_backward(lp, w, batch, x, dy, dw, dbias, dxl);
            break;
        case POET_LAYER_LINEAR:
            linear_backward(lp, w, batch, x, dy, dw, dbias, dxl);
            break;
        case POET_LAYER_RELU:
            if (dxl)
                relu_backward((size_t)batch * shape_count(lp->in), x, dy, dxl);
            break;
        case POET_LAYER_AVG_POOL:
            if (dxl)
                avg_pool_backward(lp, batch, dy, dxl);
            break;
        case POET_LAYER_MAX_POOL:
            if (dxl)
                max_pool_backward(lp, batch, dy, cache->argmax[l], dxl);
            break;
        case POET_LAYER_BATCHNORM:
            batchnorm_backward(lp, w, batch, dy, cache->xhat[l], cache->inv_std[l], cache->train,
                               dw, dbias, dxl);
            break;
        case POET_LAYER_ADD:
            break;
        }
        if (dxl)
            add_into(n_in, dxl, cache->grad[lp->inputs[0] + 1]);
    }
    if (dx)
        memcpy(dx, cache->grad[0], (size_t)batch * shape_count(plan->input) * sizeof *dx);
}

/* ---- joint loss ----
 * m_b = (1/M) Σ_j f_jb,  q_b = softmax(m_b),  L = −(1/B) Σ_b log q_b[y_b].
 * Chain rule, end to end: dL/dm_b = (q_b − onehot(y_b))/B and dm_b/df_jb = 1/M, so every member
 * receives dL/df_jb = (q_b − onehot(y_b))/(M·B). */
double poet_ref_joint_loss(const double *logits, int members, int batch, int classes,
                           const uint8_t *labels, double *dlogits) {
    size_t bk = (size_t)batch * classes;
    double loss = 0;
    double *mean = malloc(classes * sizeof *mean);
    if (!mean)
        return NAN;
    for (int b = 0; b < batch; b++) {
        for (int k = 0; k < classes; k++) {
            double sum = 0;
            for (int j = 0; j < members; j++)
                sum += logits[j * bk + (size_t)b * classes + k];
            mean[k] = sum / members;
        }
        double top = mean[0];
        for (int k = 1; k < classes; k++)
            top = fmax(top, mean[k]);
        double z = 0;
        for (int k = 0; k < classes; k++)
            z += exp(mean[k] - top);
        double log_z = top + log(z);
        loss += log_z - mean[labels[b]];
        if (!dlogits)
            continue;
        for (int k = 0; k < classes; k++) {
            double q = exp(mean[k] - log_z);
            double g = (q - (k == labels[b])) / batch / members;
            for (int j = 0; j < members; j++)
                dlogits[j * bk + (size_t)b * classes + k] = g;
        }
    }
    free(mean);
    return loss / batch;
}

double poet_ref_blend_loss(const double *logits, int members, int batch, int classes,
                           const uint8_t *labels, double beta, double *dlogits) {
    size_t bk = (size_t)batch * classes;
    double joint = poet_ref_joint_loss(logits, members, batch, classes, labels, dlogits);
    double own = 0;
    if (dlogits)
        for (size_t i = 0; i < (size_t)members * bk; i++)
            dlogits[i] *= beta;
    for (int j = 0; j < members; j++) {
        /* Member j alone is a one-member ensemble: its loss is the joint loss of its logits. */
        double *d = dlogits ? malloc(bk * sizeof *d) : NULL;
        if (dlogits && !d)
            return NAN;
        own += poet_ref_joint_loss(logits + j * bk, 1, batch, classes, labels, d);
        for (size_t i = 0; d && i < bk; i++)
            dlogits[j * bk + i] += (1 - beta) * d[i] / members;
        free(d);
    }
    return beta * joint + (1 - beta) * own / members;
}
