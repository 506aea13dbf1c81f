/* arch.c — shape inference, parameter tensors and initialisation of one member architecture.
 *
 * Legend: C = channels, H/W = height/width, K = classes, O/I = output/input channels.
 *
 * Everything here is pure and cheap: the oneDNN network, the reference and checkpoints each build
 * their own plan from the same poet_arch and therefore agree on names, shapes and offsets.
 */
#include "poet/arch.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "poet/rng.h"

/* A pool's stride defaults to its kernel (PyTorch's stride=None); the config may leave it 0. */
static int pool_stride(const poet_layer_spec *s) { return s->stride > 0 ? s->stride : s->kernel; }

/* Appends one parameter tensor (or, `state`, one state tensor) to the plan; returns its index.
 * Sizes were checked by the caller. */
static int append_tensor(poet_arch_plan *plan, int state, const char *prefix, int number,
                         const char *suffix, int ndims, const int64_t *dims, int fan_in,
                         poet_init_kind init) {
    int t = state ? plan->n_states++ : plan->n_tensors++;
    poet_tensor_info *info = state ? &plan->states[t] : &plan->tensors[t];
    size_t *count = state ? &plan->state_count : &plan->param_count;
    memset(info, 0, sizeof *info);
    if (number < 0) /* prefix is the layer's id */
        snprintf(info->name, sizeof info->name, "%s.%s", prefix, suffix);
    else
        snprintf(info->name, sizeof info->name, "%s%d.%s", prefix, number, suffix);
    info->ndims = ndims;
    info->count = 1;
    for (int d = 0; d < ndims; d++) {
        info->dims[d] = dims[d];
        info->count *= (size_t)dims[d];
    }
    info->offset = *count;
    info->fan_in = fan_in;
    info->init = init;
    *count += info->count;
    return t;
}

static int add_tensor(poet_arch_plan *plan, const char *prefix, int number, const char *suffix,
                      int ndims, const int64_t *dims, int fan_in) {
    return append_tensor(plan, 0, prefix, number, suffix, ndims, dims, fan_in, POET_INIT_UNIFORM);
}

int poet_arch_has_params(poet_layer_kind kind) {
    return kind == POET_LAYER_CONV || kind == POET_LAYER_LINEAR || kind == POET_LAYER_BATCHNORM;
}

/* Output size of a sliding window along one axis, or a message when the kernel does not fit. */
static poet_status window_out(const char *where, int index, const poet_layer_spec *s, int kernel_h,
                              int kernel_w, int stride, int padding, poet_shape in, int *out_h,
                              int *out_w) {
    poet_status st = POET_OK;
    if (in.h + 2 * padding < kernel_h || in.w + 2 * padding < kernel_w)
        POET_FAIL(POET_ERR_CONFIG,
                  "%s[%d]: kernel %d does not fit input %dx%d (padding %d) of this %s layer: "
                  "use a smaller kernel or more padding",
                  where, index, kernel_h, in.h, in.w, padding, poet_layer_kind_name(s->kind));
    *out_h = (in.h + 2 * padding - kernel_h) / stride + 1;
    *out_w = (in.w + 2 * padding - kernel_w) / stride + 1;
fail:
    return st;
}

/* Checks the numbers of one layer spec that shape inference relies on. */
static poet_status check_spec(const char *where, int index, const poet_layer_spec *s) {
    poet_status st = POET_OK;
    switch (s->kind) {
    case POET_LAYER_CONV:
        if (s->out < 1 || s->kernel < 1 || s->stride < 1 || s->padding < 0)
            POET_FAIL(POET_ERR_CONFIG,
                      "%s[%d]: conv expects out >= 1, kernel >= 1, stride >= 1, padding >= 0, "
                      "got out %d, kernel %d, stride %d, padding %d",
                      where, index, s->out, s->kernel, s->stride, s->padding);
        break;
    case POET_LAYER_LINEAR:
        if (s->out < 1)
            POET_FAIL(POET_ERR_CONFIG, "%s[%d]: linear expects out >= 1, got %d", where, index,
                      s->out);
        break;
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        if (s->global)
            break;
        if (s->kernel < 1 || s->stride < 0 || s->padding < 0)
            POET_FAIL(POET_ERR_CONFIG,
                      "%s[%d]: %s expects kernel >= 1, stride >= 1, padding >= 0, got kernel %d, "
                      "stride %d, padding %d",
                      where, index, poet_layer_kind_name(s->kind), s->kernel, s->stride,
                      s->padding);
        /* PyTorch's rule: a window must never lie entirely in the padding. */
        if (2 * s->padding > s->kernel)
            POET_FAIL(POET_ERR_CONFIG, "%s[%d]: %s padding %d must be at most half the kernel %d",
                      where, index, poet_layer_kind_name(s->kind), s->padding, s->kernel);
        break;
    case POET_LAYER_RELU:
        break;
    case POET_LAYER_BATCHNORM:
        break;
    case POET_LAYER_ADD:
        if (s->n_inputs < 2 || s->n_inputs > POET_MAX_INPUTS)
            POET_FAIL(POET_ERR_CONFIG, "%s[%d].inputs: add expects 2 to %d inputs, got %d", where,
                      index, POET_MAX_INPUTS, s->n_inputs);
        break;
    default:
        POET_FAIL(POET_ERR_CONFIG, "%s[%d]: unknown layer kind %d", where, index, (int)s->kind);
    }
fail:
    return st;
}

/* Resolves one layer: kernel, stride, padding, output shape and its parameter tensors. */
static poet_status plan_layer(const char *where, int index, const poet_layer_spec *s, poet_shape in,
                              int *n_conv, int *n_fc, int *n_bn, poet_arch_plan *plan) {
    poet_status st = POET_OK;
    poet_layer_plan *lp = &plan->layers[index];
    memset(lp, 0, sizeof *lp);
    lp->kind = s->kind;
    lp->in = in;
    lp->out = in;
    lp->kernel_h = lp->kernel_w = 1;
    lp->stride = 1;
    lp->weight_tensor = -1;
    lp->state_tensor = -1;
    POET_TRY(check_spec(where, index, s));

    switch (s->kind) {
    case POET_LAYER_CONV: {
        lp->kernel_h = lp->kernel_w = s->kernel;
        lp->stride = s->stride;
        lp->padding = s->padding;
        POET_TRY(window_out(where, index, s, s->kernel, s->kernel, s->stride, s->padding, in,
                            &lp->out.h, &lp->out.w));
        lp->out.c = s->out;
        int64_t fan_in = (int64_t)in.c * s->kernel * s->kernel;
        if (fan_in > INT_MAX || (int64_t)s->out * fan_in > INT_MAX)
            POET_FAIL(POET_ERR_CONFIG, "%s[%d]: conv weight %d x %lld is too large", where, index,
                      s->out, (long long)fan_in);
        int64_t wdims[4] = {s->out, in.c, s->kernel, s->kernel};
        int64_t bdims[1] = {s->out};
        ++*n_conv;
        const char *prefix = s->id[0] ? s->id : "conv";
        int number = s->id[0] ? -1 : *n_conv;
        lp->weight_tensor = add_tensor(plan, prefix, number, "weight", 4, wdims, (int)fan_in);
        lp->has_bias = !s->no_bias;
        if (lp->has_bias)
            add_tensor(plan, prefix, number, "bias", 1, bdims, (int)fan_in);
        break;
    }
    case POET_LAYER_LINEAR: {
        /* Flattens C·H·W: recorded as a kernel over the whole input, like a global window. */
        int64_t fan_in = (int64_t)in.c * in.h * in.w;
        if (fan_in > INT_MAX || (int64_t)s->out * fan_in > INT_MAX)
            POET_FAIL(POET_ERR_CONFIG, "%s[%d]: linear weight %d x %lld is too large", where, index,
                      s->out, (long long)fan_in);
        lp->kernel_h = in.h;
        lp->kernel_w = in.w;
        lp->out = (poet_shape){s->out, 1, 1};
        int64_t wdims[2] = {s->out, fan_in};
        int64_t bdims[1] = {s->out};
        ++*n_fc;
        const char *prefix = s->id[0] ? s->id : "fc";
        int number = s->id[0] ? -1 : *n_fc;
        lp->weight_tensor = add_tensor(plan, prefix, number, "weight", 2, wdims, (int)fan_in);
        lp->has_bias = !s->no_bias;
        if (lp->has_bias)
            add_tensor(plan, prefix, number, "bias", 1, bdims, (int)fan_in);
        break;
    }
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        if (s->global) {
            lp->kernel_h = in.h;
            lp->kernel_w = in.w;
            lp->out.h = lp->out.w = 1;
        } else {
            lp->kernel_h = lp->kernel_w = s->kernel;
            lp->stride = pool_stride(s);
            lp->padding = s->padding;
            POET_TRY(window_out(where, index, s, s->kernel, s->kernel, lp->stride, s->padding, in,
                                &lp->out.h, &lp->out.w));
        }
        break;
    case POET_LAYER_BATCHNORM: {
        /* Per channel over batch and pixels: a linear layer's features would want BatchNorm1d. */
        int from = s->n_inputs > 0 ? s->inputs[0] : index - 1;
        if (from >= 0 && plan->layers[from].kind == POET_LAYER_LINEAR)
            POET_FAIL(POET_ERR_CONFIG,
                      "%s[%d]: batchnorm expects channels x height x width (a conv's or pool's "
                      "output), got layer %d's, a linear layer's features",
                      where, index, from);
        int64_t dims[1] = {in.c};
        ++*n_bn;
        const char *p = s->id[0] ? s->id : "bn";
        int k = s->id[0] ? -1 : *n_bn;
        lp->weight_tensor = append_tensor(plan, 0, p, k, "weight", 1, dims, 1, POET_INIT_ONES);
        append_tensor(plan, 0, p, k, "bias", 1, dims, 1, POET_INIT_ZEROS);
        lp->has_bias = 1;
        lp->state_tensor =
            append_tensor(plan, 1, p, k, "running_mean", 1, dims, 1, POET_INIT_ZEROS);
        append_tensor(plan, 1, p, k, "running_var", 1, dims, 1, POET_INIT_ONES);
        break;
    }
    case POET_LAYER_RELU:
    case POET_LAYER_ADD:
        break;
    }
fail:
    return st;
}

/* Resolves layer `index`'s inputs (the previous layer by default, -1 for the images) and the
 * shape they share; an add's inputs must agree in shape. */
static poet_status plan_inputs(const char *where, int index, const poet_layer_spec *s,
                               const poet_arch_plan *plan, poet_layer_plan *lp, poet_shape *in) {
    poet_status st = POET_OK;
    lp->n_inputs = s->n_inputs > 0 ? s->n_inputs : 1;
    if (s->n_inputs == 0)
        lp->inputs[0] = index - 1;
    for (int k = 0; k < s->n_inputs; k++) {
        if (s->inputs[k] < 0 || s->inputs[k] >= index)
            POET_FAIL(POET_ERR_CONFIG,
                      "%s[%d]: input %d is layer %d, expected an earlier layer (0 to %d)", where,
                      index, k, s->inputs[k], index - 1);
        lp->inputs[k] = s->inputs[k];
    }
    if (s->kind != POET_LAYER_ADD && lp->n_inputs != 1)
        POET_FAIL(POET_ERR_CONFIG, "%s[%d]: a %s layer reads one input, got %d", where, index,
                  poet_layer_kind_name(s->kind), lp->n_inputs);
    for (int k = 0; k < lp->n_inputs; k++) {
        int j = lp->inputs[k];
        poet_shape shape = j < 0 ? plan->input : plan->layers[j].out;
        if (k == 0) {
            *in = shape;
        } else if (shape.c != in->c || shape.h != in->h || shape.w != in->w) {
            POET_FAIL(POET_ERR_CONFIG,
                      "%s[%d].inputs: add expects inputs of one shape, got %dx%dx%d (layer %d) "
                      "and %dx%dx%d (layer %d)",
                      where, index, in->c, in->h, in->w, lp->inputs[0], shape.c, shape.h, shape.w,
                      j);
        }
    }
fail:
    return st;
}

/* Multiply-adds count 2; pooling and relu count one operation per input element they read. */
static double layer_flops(const poet_layer_plan *lp) {
    double out_elems = (double)lp->out.c * lp->out.h * lp->out.w;
    switch (lp->kind) {
    case POET_LAYER_CONV:
        return 2.0 * out_elems * lp->in.c * lp->kernel_h * lp->kernel_w + out_elems;
    case POET_LAYER_LINEAR:
        return 2.0 * out_elems * lp->in.c * lp->in.h * lp->in.w + out_elems;
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        return out_elems * lp->kernel_h * lp->kernel_w;
    case POET_LAYER_RELU:
        return out_elems;
    case POET_LAYER_ADD:
        return out_elems * (lp->n_inputs - 1);
    case POET_LAYER_BATCHNORM:
        return 4 * out_elems; /* statistics, then a multiply-add */
    }
    return 0;
}

poet_status poet_arch_plan_build(const poet_arch *arch, poet_shape input, int classes,
                                 const char *where, poet_arch_plan *plan) {
    poet_status st = POET_OK;
    memset(plan, 0, sizeof *plan);
    plan->input = input;
    plan->classes = classes;
    if (arch->n_layers < 1 || arch->n_layers > POET_MAX_LAYERS)
        POET_FAIL(POET_ERR_CONFIG, "%s: expected 1 to %d layers, got %d", where, POET_MAX_LAYERS,
                  arch->n_layers);
    if (input.c < 1 || input.h < 1 || input.w < 1)
        POET_FAIL(POET_ERR_CONFIG, "%s: input shape %dx%dx%d is empty", where, input.c, input.h,
                  input.w);

    poet_shape shape = input;
    int n_conv = 0, n_fc = 0, n_bn = 0;
    for (int i = 0; i < arch->n_layers; i++) {
        poet_layer_plan inputs = {0};
        poet_shape in = input;
        POET_TRY(plan_inputs(where, i, &arch->layers[i], plan, &inputs, &in));
        POET_TRY(plan_layer(where, i, &arch->layers[i], in, &n_conv, &n_fc, &n_bn, plan));
        plan->layers[i].n_inputs = inputs.n_inputs;
        memcpy(plan->layers[i].inputs, inputs.inputs, sizeof inputs.inputs);
        plan->n_layers = i + 1;
        shape = plan->layers[i].out;
        plan->forward_flops += layer_flops(&plan->layers[i]);
    }
    /* Tensor names are checkpoint dataset names: an id such as "conv2" on another layer than the
     * second convolution would give two tensors one name. */
    for (int a = 0; a < plan->n_tensors + plan->n_states; a++)
        for (int b = a + 1; b < plan->n_tensors + plan->n_states; b++) {
            const char *na = a < plan->n_tensors ? plan->tensors[a].name
                                                 : plan->states[a - plan->n_tensors].name;
            const char *nb = b < plan->n_tensors ? plan->tensors[b].name
                                                 : plan->states[b - plan->n_tensors].name;
            if (strcmp(na, nb) == 0)
                POET_FAIL(POET_ERR_CONFIG,
                          "%s: two parameter tensors are named %s: give the layers other ids",
                          where, na);
        }
    if (shape.c != classes || shape.h != 1 || shape.w != 1)
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: network ends with %dx%dx%d outputs, expected %d logits (end with a linear "
                  "layer of %d outputs)",
                  where, shape.c, shape.h, shape.w, classes, classes);
fail:
    return st;
}

/* Whether layer i's output is read only in forward when training: a batchnorm's or add's whose
 * readers are all relus (not in place after them), adds or pooling, none of which reads its input
 * in backward. The lanes hold those in their buffer pools (src/netmem.c), not the members. Outputs
 * of fewer than 16 channels or a multiple of it may be padded in oneDNN's blocked layouts, which
 * stay with the member: they count as kept, so the estimate stays above the truth. */
static int forward_only(const poet_arch_plan *plan, int i) {
    const poet_layer_plan *lp = &plan->layers[i];
    if ((lp->kind != POET_LAYER_BATCHNORM && lp->kind != POET_LAYER_ADD) ||
        i == plan->n_layers - 1 || lp->out.c % 16 != 0)
        return 0;
    for (int r = i + 1; r < plan->n_layers; r++)
        for (int k = 0; k < plan->layers[r].n_inputs; k++)
            if (plan->layers[r].inputs[k] == i && plan->layers[r].kind != POET_LAYER_RELU &&
                plan->layers[r].kind != POET_LAYER_ADD &&
                plan->layers[r].kind != POET_LAYER_AVG_POOL &&
                plan->layers[r].kind != POET_LAYER_MAX_POOL)
                return 0;
    return 1;
}

/* Floats per image of every layer's output (and the input): relus run in place on their
 * producer's output (net.c folds them), so they add nothing; with `training`, the outputs only
 * forward reads are left out too (forward_only). */
static double kept_activations(const poet_arch_plan *plan, int training) {
    double floats = (double)plan->input.c * plan->input.h * plan->input.w;
    for (int i = 0; i < plan->n_layers; i++) {
        const poet_layer_plan *lp = &plan->layers[i];
        /* A relu reading a conv or linear layer runs in place (a post-op); one after batchnorm
         * or add has an output of its own. */
        int in_place = lp->kind == POET_LAYER_RELU && lp->inputs[0] == i - 1 && i > 0 &&
                       (plan->layers[i - 1].kind == POET_LAYER_CONV ||
                        plan->layers[i - 1].kind == POET_LAYER_LINEAR);
        if (!in_place && !(training && forward_only(plan, i)))
            floats += (double)lp->out.c * lp->out.h * lp->out.w;
    }
    return floats;
}

/* Training: the member's kept values, and a whole lane's pool for its gradients and forward-only
 * outputs, bounded by one buffer per activation (the pool shares them by liveness and holds a
 * few; a lane may run a single member). */
double poet_arch_member_bytes(const poet_arch_plan *plan, int rows, int slots, int eval_rows) {
    double all = kept_activations(plan, 0), kept = kept_activations(plan, 1);
    double floats = 3.0 * (double)plan->param_count       /* weights, grads, momentum */
                    + (double)slots * rows * (kept + all) /* values, the lane's pool */
                    + (double)eval_rows * all;            /* inference: values only */
    return floats * sizeof(float);
}

double poet_arch_workspace_bytes(const poet_arch_plan *plan, int rows) {
    double largest = 0; /* floats per image of the largest convolution's unfolded input */
    for (int i = 0; i < plan->n_layers; i++) {
        const poet_layer_plan *lp = &plan->layers[i];
        if (lp->kind == POET_LAYER_CONV) {
            double cols = (double)lp->in.c * lp->kernel_h * lp->kernel_w * lp->out.h * lp->out.w;
            largest = cols > largest ? cols : largest;
        }
    }
    return largest * rows * sizeof(float);
}

/* Element e of member `member` is drawn at counter (member << 40) + e: 2^40 elements per member is
 * far beyond any network here, and the counter depends on nothing but the global member index and
 * the element's place in member layout, so any rank can initialise any member identically. */
void poet_arch_init_member(const poet_arch_plan *plan, uint64_t seed, int member, float *params) {
    uint64_t base = (uint64_t)member << 40;
    for (int t = 0; t < plan->n_tensors; t++) {
        const poet_tensor_info *info = &plan->tensors[t];
        double bound = 1.0 / sqrt((double)info->fan_in);
        if (info->init != POET_INIT_UNIFORM) {
            for (size_t i = 0; i < info->count; i++)
                params[info->offset + i] = info->init == POET_INIT_ONES ? 1.f : 0.f;
            continue;
        }
        for (size_t i = 0; i < info->count; i++) {
            size_t e = info->offset + i;
            double u = poet_rng_uniform(seed, POET_STREAM_INIT, base + e);
            params[e] = (float)((2.0 * u - 1.0) * bound);
        }
    }
}

int poet_arch_is_chain(const poet_arch_plan *plan) {
    for (int l = 0; l < plan->n_layers; l++)
        if (plan->layers[l].n_inputs != 1 || plan->layers[l].inputs[0] != l - 1)
            return 0;
    return 1;
}

void poet_arch_init_state(const poet_arch_plan *plan, float *state) {
    for (int t = 0; t < plan->n_states; t++) {
        const poet_tensor_info *info = &plan->states[t];
        for (size_t i = 0; i < info->count; i++)
            state[info->offset + i] = info->init == POET_INIT_ONES ? 1.f : 0.f;
    }
}

static int spec_equal(const poet_layer_spec *a, const poet_layer_spec *b) {
    if (a->kind != b->kind || a->n_inputs != b->n_inputs)
        return 0;
    for (int k = 0; k < a->n_inputs; k++)
        if (a->inputs[k] != b->inputs[k])
            return 0;
    switch (a->kind) {
    case POET_LAYER_CONV:
        return a->out == b->out && a->kernel == b->kernel && a->stride == b->stride &&
               a->padding == b->padding && a->no_bias == b->no_bias;
    case POET_LAYER_LINEAR:
        return a->out == b->out && a->no_bias == b->no_bias;
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        if (a->global || b->global)
            return a->global && b->global;
        return a->kernel == b->kernel && pool_stride(a) == pool_stride(b) &&
               a->padding == b->padding;
    case POET_LAYER_RELU:
    case POET_LAYER_ADD:
    case POET_LAYER_BATCHNORM:
        return 1;
    }
    return 0;
}

/* Compares only the fields that mean something for each kind, so unused fields left at different
 * values by a parser do not make two identical networks differ. */
int poet_arch_equal(const poet_arch *a, const poet_arch *b) {
    if (a->n_layers != b->n_layers)
        return 0;
    for (int i = 0; i < a->n_layers; i++)
        if (!spec_equal(&a->layers[i], &b->layers[i]))
            return 0;
    return 1;
}

static void describe_layer(const poet_layer_spec *s, char *buf, size_t size) {
    switch (s->kind) {
    case POET_LAYER_CONV:
        if (s->padding)
            snprintf(buf, size, "conv(%d,k%d,s%d,p%d%s)", s->out, s->kernel, s->stride, s->padding,
                     s->no_bias ? ",nobias" : "");
        else
            snprintf(buf, size, "conv(%d,k%d,s%d%s)", s->out, s->kernel, s->stride,
                     s->no_bias ? ",nobias" : "");
        break;
    case POET_LAYER_LINEAR:
        snprintf(buf, size, "linear(%d%s)", s->out, s->no_bias ? ",nobias" : "");
        break;
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        if (s->global)
            snprintf(buf, size, "%s(global)", poet_layer_kind_name(s->kind));
        else if (s->padding)
            snprintf(buf, size, "%s(k%d,s%d,p%d)", poet_layer_kind_name(s->kind), s->kernel,
                     pool_stride(s), s->padding);
        else
            snprintf(buf, size, "%s(k%d,s%d)", poet_layer_kind_name(s->kind), s->kernel,
                     pool_stride(s));
        break;
    case POET_LAYER_RELU:
        snprintf(buf, size, "relu");
        break;
    case POET_LAYER_BATCHNORM:
        snprintf(buf, size, "batchnorm");
        break;
    case POET_LAYER_ADD: {
        int n = snprintf(buf, size, "add(");
        for (int k = 0; k < s->n_inputs && n > 0 && (size_t)n < size; k++)
            n += snprintf(buf + n, size - (size_t)n, "%s%d", k ? "," : "", s->inputs[k]);
        if (n > 0 && (size_t)n < size)
            snprintf(buf + n, size - (size_t)n, ")");
        break;
    }
    default:
        snprintf(buf, size, "unknown(%d)", (int)s->kind);
        break;
    }
}

void poet_arch_describe(const poet_arch *arch, char *out, size_t size) {
    if (!size)
        return;
    out[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < arch->n_layers && used + 1 < size; i++) {
        char layer[64];
        describe_layer(&arch->layers[i], layer, sizeof layer);
        const poet_layer_spec *s = &arch->layers[i];
        if (s->kind != POET_LAYER_ADD && s->n_inputs == 1) { /* reads another layer than i-1 */
            size_t len = strlen(layer);
            snprintf(layer + len, sizeof layer - len, "<%d", s->inputs[0]);
        }
        int n = snprintf(out + used, size - used, "%s%s", i ? " " : "", layer);
        if (n < 0)
            break;
        used += (size_t)n; /* snprintf truncated at size-1 when n is too large: loop ends */
    }
}

/* ---- built-in architectures ---- */

/* Appends a layer reading layer `input` (-2: the previous one); returns its index, -1 when the
 * architecture is full. */
static int put(poet_arch *a, poet_layer_kind kind, int out, int kernel, int stride, int input,
               const char *id) {
    if (a->n_layers >= POET_MAX_LAYERS)
        return -1;
    int l = a->n_layers++;
    poet_layer_spec *s = &a->layers[l];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->out = out;
    s->kernel = kernel;
    s->stride = stride;
    s->padding = kernel / 2;
    /* Every convolution of both built-ins feeds a batchnorm (or, in wrn, an add before one), which
     * would cancel a bias: no bias, as in He et al.'s, Zagoruyko and Komodakis's and torchvision's
     * modules, so their PyTorch definitions load a member's state as it is. */
    s->no_bias = kind == POET_LAYER_CONV;
    if (kind == POET_LAYER_AVG_POOL)
        s->global = 1;
    if (id) { /* the built-ins' ids fit (put's callers: at most 28 bytes) */
        size_t len = strlen(id);
        len = len < sizeof s->id - 1 ? len : sizeof s->id - 1;
        memcpy(s->id, id, len);
        s->id[len] = '\0';
    }
    if (input != -2 && input != l - 1) {
        s->n_inputs = 1;
        s->inputs[0] = input;
    }
    return l;
}

static int put_add(poet_arch *a, int x, int y) {
    int l = put(a, POET_LAYER_ADD, 0, 0, 0, -2, NULL);
    if (l >= 0) {
        a->layers[l].n_inputs = 2;
        a->layers[l].inputs[0] = x;
        a->layers[l].inputs[1] = y;
    }
    return l;
}

static void resnet(poet_arch *a, int n, int classes) {
    char id[64]; /* at most 28 bytes used: "block3.layer.10.convShortcut" */
    put(a, POET_LAYER_CONV, 16, 3, 1, -2, "conv1");
    put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, "bn1");
    int x = put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL), channels = 16;
    for (int s = 1; s <= 3; s++)
        for (int b = 0; b < n; b++) {
            int width = 16 << (s - 1), stride = s > 1 && b == 0 ? 2 : 1;
#define ID(suffix) (snprintf(id, sizeof id, "layer%d.%d.%s", s, b, suffix), id)
            put(a, POET_LAYER_CONV, width, 3, stride, x, ID("conv1"));
            put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, ID("bn1"));
            put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL);
            put(a, POET_LAYER_CONV, width, 3, 1, -2, ID("conv2"));
            int y = put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, ID("bn2")), shortcut = x;
            if (stride != 1 || channels != width) {
                put(a, POET_LAYER_CONV, width, 1, stride, x, ID("downsample.0"));
                shortcut = put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, ID("downsample.1"));
            }
#undef ID
            put_add(a, y, shortcut);
            x = put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL);
            channels = width;
        }
    put(a, POET_LAYER_AVG_POOL, 0, 0, 0, -2, NULL);
    put(a, POET_LAYER_LINEAR, classes, 0, 0, -2, "fc");
}

static void wide_resnet(poet_arch *a, int n, int k, int classes) {
    char id[64]; /* at most 28 bytes used: "block3.layer.10.convShortcut" */
    int x = put(a, POET_LAYER_CONV, 16, 3, 1, -2, "conv1"), channels = 16;
    for (int s = 1; s <= 3; s++)
        for (int b = 0; b < n; b++) {
            int width = (16 * k) << (s - 1), stride = s > 1 && b == 0 ? 2 : 1;
#define ID(suffix) (snprintf(id, sizeof id, "block%d.layer.%d.%s", s, b, suffix), id)
            put(a, POET_LAYER_BATCHNORM, 0, 0, 0, x, ID("bn1"));
            int o = put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL);
            put(a, POET_LAYER_CONV, width, 3, stride, -2, ID("conv1"));
            put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, ID("bn2"));
            put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL);
            int y = put(a, POET_LAYER_CONV, width, 3, 1, -2, ID("conv2")), shortcut = x;
            if (stride != 1 || channels != width)
                shortcut = put(a, POET_LAYER_CONV, width, 1, stride, o, ID("convShortcut"));
#undef ID
            x = put_add(a, y, shortcut);
            channels = width;
        }
    put(a, POET_LAYER_BATCHNORM, 0, 0, 0, -2, "bn1");
    put(a, POET_LAYER_RELU, 0, 0, 0, -2, NULL);
    put(a, POET_LAYER_AVG_POOL, 0, 0, 0, -2, NULL);
    put(a, POET_LAYER_LINEAR, classes, 0, 0, -2, "fc");
}

int poet_arch_builtin(const char *name, int classes, poet_arch *arch) {
    int depth = 0, k = 0, used = 0;
    memset(arch, 0, sizeof *arch);
    if (sscanf(name, "resnet-%d%n", &depth, &used) == 1 && name[used] == '\0' && depth >= 8 &&
        (depth - 2) % 6 == 0 && 9 + 21 * ((depth - 2) / 6) <= POET_MAX_LAYERS)
        resnet(arch, (depth - 2) / 6, classes);
    else if (sscanf(name, "wrn-%d-%d%n", &depth, &k, &used) == 2 && name[used] == '\0' &&
             depth >= 10 && (depth - 4) % 6 == 0 && k >= 1 && k <= 64 &&
             7 + 24 * ((depth - 4) / 6) <= POET_MAX_LAYERS)
        wide_resnet(arch, (depth - 4) / 6, k, classes);
    else
        return 0;
    snprintf(arch->name, sizeof arch->name, "%s", name);
    return 1;
}
