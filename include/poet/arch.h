/* arch.h — what a member architecture means: shapes, parameter tensors, names and initialisation.
 *
 * Shared by the oneDNN network (net.h), the plain-C reference (reference.h) and checkpoints, so all
 * three agree on every tensor's name, shape and place.
 *
 * Legend: B = batch, C = channels, H/W = height/width, K = classes, G = members in one stack.
 *
 * "Member layout": one member's parameters are its tensors one after another, in layer order, each
 * in PyTorch's layout: conv weight OIHW then bias O; linear weight [out, in] then bias [out] (no
 * bias tensor for a layer with "bias": false, PyTorch's bias=False), where
 * `in` flattens the input as C·H·W in that order (PyTorch's flatten of NCHW).
 * Tensor names are PyTorch-style: conv<i>.weight, conv<i>.bias, fc<i>.weight, fc<i>.bias,
 * bn<i>.weight, bn<i>.bias (1-based, counted per kind).
 *
 * "Member state": what a member keeps besides its parameters, not trained by gradients: batch
 * normalisation's running statistics, bn<i>.running_mean and bn<i>.running_var, one after another
 * in layer order like the parameters. PyTorch's num_batches_tracked is one counter per member
 * (every batchnorm layer counts the same training forwards); checkpoints write it per layer.
 */
#ifndef POET_ARCH_H
#define POET_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "poet/config.h"
#include "poet/error.h"

typedef struct {
    int c, h, w; /* one image / one activation: C×H×W */
} poet_shape;

typedef struct {
    poet_layer_kind kind;
    int n_inputs;                /* 1, or 2..POET_MAX_INPUTS for add */
    int inputs[POET_MAX_INPUTS]; /* the layers it reads, always earlier ones; -1: the images */
    poet_shape in, out;          /* in: the shape of every input */
    int kernel_h, kernel_w;      /* resolved: global pooling and linear use the whole input */
    int stride, padding;
    int weight_tensor; /* index of the weight in poet_arch_plan.tensors, bias is +1; -1 none */
    int has_bias;      /* weight layers: a bias tensor follows the weight (conv/linear "bias") */
    int state_tensor;  /* batchnorm: running_mean in poet_arch_plan.states, var +1; -1 none */
} poet_layer_plan;

/* How a tensor starts: PyTorch's defaults for its layer. */
typedef enum {
    POET_INIT_UNIFORM, /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): conv and linear weights and biases */
    POET_INIT_ONES,    /* batchnorm weight, running_var */
    POET_INIT_ZEROS    /* batchnorm bias, running_mean */
} poet_init_kind;

typedef struct {
    char name[64]; /* "conv1.weight", "layer1.0.bn1.running_mean" */
    int ndims;
    int64_t dims[4]; /* PyTorch shape: OIHW, O, [out, in], [out] */
    size_t count;    /* elements */
    size_t offset;   /* first element in member layout */
    int fan_in;      /* for PyTorch's default init bound 1/sqrt(fan_in) */
    poet_init_kind init;
} poet_tensor_info;

typedef struct {
    poet_shape input;
    int classes;
    int n_layers;
    poet_layer_plan layers[POET_MAX_LAYERS];
    int n_tensors;
    poet_tensor_info tensors[2 * POET_MAX_LAYERS];
    size_t param_count; /* per member */
    int n_states;
    poet_tensor_info states[2 * POET_MAX_LAYERS]; /* member state (offsets in state layout) */
    size_t state_count;                           /* per member */
    double forward_flops;                         /* per image, multiply-adds counted as 2 */
} poet_arch_plan;

/* Infers every layer's shapes. Fails (POET_ERR_CONFIG, naming `where`, e.g. "model.architecture",
 * and the layer index) when a kernel does not fit its input, an add's inputs differ in shape, an
 * input is not an earlier layer, or the network does not end in K×1×1 logits. */
poet_status poet_arch_plan_build(const poet_arch *arch, poet_shape input, int classes,
                                 const char *where, poet_arch_plan *plan);

/* PyTorch's default initialisation, weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn
 * from (seed, POET_STREAM_INIT) at a counter that depends only on the global member index, so a
 * member's initial weights do not depend on ranks, placement or fusion. Writes member layout. */
void poet_arch_init_member(const poet_arch_plan *plan, uint64_t seed, int member, float *params);

/* A member's initial state (running means 0, variances 1), in member state layout. */
void poet_arch_init_state(const poet_arch_plan *plan, float *state);

/* 1 when layer kind `kind` has parameters (conv, linear, batchnorm). */
int poet_arch_has_params(poet_layer_kind kind);

/* 1 when every layer reads only the layer before it (no add, no named inputs). */
int poet_arch_is_chain(const poet_arch_plan *plan);

/* Estimated bytes one member of `plan` needs on its rank: parameters ×3 (weights, gradients,
 * momentum); for `rows` rows in each of `slots` micro-batches in flight, the activations backward
 * reads (relus run in place; batchnorm and add outputs only a relu, add or pooling reads live in
 * the lane's pool) and a lane's pool of at most one buffer per activation; and the activations
 * without gradients for `eval_rows` evaluation rows; 4-byte floats. A documented approximation
 * (docs/config.md, "Memory estimate") used to refuse networks that cannot fit, not to predict the
 * peak; a double, so absurd networks do not overflow. */
double poet_arch_member_bytes(const poet_arch_plan *plan, int rows, int slots, int eval_rows);

/* Bytes of the largest convolution's im2col matrix for `rows` images: the workspace a rank's
 * members share (one per rank in the estimate). */
double poet_arch_workspace_bytes(const poet_arch_plan *plan, int rows);

/* The named built-in architectures for K classes, any input shape (global average pooling before
 * the classifier), tensors named as PyTorch's modules name them:
 *   resnet-N  He et al.'s CIFAR ResNet, N = 6n + 2 (8..68): conv3x3(16)-BN-relu, 3 stages of n
 *             basic blocks (conv3x3-BN-relu-conv3x3-BN, add, relu) of 16, 32, 64 channels, the
 *             first block of stages 2 and 3 with stride 2 and a 1x1 strided convolution + BN on
 *             its shortcut (option B), global average pooling, fc. Tensors conv1, bn1,
 *             layer<s>.<b>.conv1/bn1/conv2/bn2, layer<s>.<b>.downsample.0/.1, fc.
 *   wrn-N-k   Zagoruyko and Komodakis's Wide ResNet, N = 6n + 4 (10..), widening k >= 1:
 *             conv3x3(16), 3 stages of n pre-activation blocks (BN-relu-conv3x3-BN-relu-conv3x3,
 *             add) of 16k, 32k, 64k channels, a 1x1 convolution on the shortcut where the shape
 *             changes (read after the block's first BN-relu), then BN-relu, global average
 *             pooling, fc. Tensors conv1, block<s>.layer.<b>.bn1/conv1/bn2/conv2/convShortcut,
 *             bn1, fc.
 * Convolutions have no bias (bias=False, as in PyTorch's definitions: a BN follows them); fc has.
 * Returns 1 and fills `arch` (named `name`) when `name` is one of these, else 0. */
int poet_arch_builtin(const char *name, int classes, poet_arch *arch);

/* Two architectures are equal when every layer spec and input is equal (names and ids aside). */
int poet_arch_equal(const poet_arch *a, const poet_arch *b);

/* Human-readable one-line description, e.g. "conv(20,k3,s2) relu ... linear(10)". */
void poet_arch_describe(const poet_arch *arch, char *out, size_t size);

#endif
