/* arch.h — what a member architecture means: shapes, parameter tensors, names and initialisation.
 *
 * Shared by the oneDNN network (net.h), the plain-C reference (reference.h) and checkpoints, so all
 * three agree on every tensor's name, shape and place.
 *
 * Legend: B = batch, C = channels, H/W = height/width, K = classes, G = members in one stack.
 *
 * "Member layout": one member's parameters are its tensors one after another, in layer order, each
 * in PyTorch's layout: conv weight OIHW then bias O; linear weight [out, in] then bias [out], where
 * `in` flattens the input as C·H·W in that order (PyTorch's flatten of NCHW).
 * Tensor names are PyTorch-style: conv<i>.weight, conv<i>.bias, fc<i>.weight, fc<i>.bias (1-based,
 * counted per kind).
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
    poet_shape in, out;
    int kernel_h, kernel_w;  /* resolved: global pooling and linear use the whole input */
    int stride, padding;
    int weight_tensor;       /* index of the weight in poet_arch_plan.tensors, bias is +1; -1 none */
} poet_layer_plan;

typedef struct {
    char name[32];        /* "conv1.weight" */
    int ndims;
    int64_t dims[4];      /* PyTorch shape: OIHW, O, [out, in], [out] */
    size_t count;         /* elements */
    size_t offset;        /* first element in member layout */
    int fan_in;           /* for PyTorch's default init bound 1/sqrt(fan_in) */
} poet_tensor_info;

typedef struct {
    poet_shape input;
    int classes;
    int n_layers;
    poet_layer_plan layers[POET_MAX_LAYERS];
    int n_tensors;
    poet_tensor_info tensors[2 * POET_MAX_LAYERS];
    size_t param_count;   /* per member */
    double forward_flops; /* per image, multiply-adds counted as 2 */
} poet_arch_plan;

/* Infers every layer's shapes. Fails (POET_ERR_CONFIG, naming `where`, e.g. "model.architecture")
 * when a kernel does not fit its input or the network does not end in K×1×1 logits. */
poet_status poet_arch_plan_build(const poet_arch *arch, poet_shape input, int classes,
                                 const char *where, poet_arch_plan *plan);

/* PyTorch's default initialisation, weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn
 * from (seed, POET_STREAM_INIT) at a counter that depends only on the global member index, so a
 * member's initial weights do not depend on ranks, placement or fusion. Writes member layout. */
void poet_arch_init_member(const poet_arch_plan *plan, uint64_t seed, int member, float *params);

/* Estimated bytes one member of `plan` needs on its rank: parameters ×3 (weights, gradients,
 * momentum), the layers' kept activations (relus run in place) and their gradients for `rows` rows
 * in each of `slots` micro-batches in flight, and the activations without gradients for
 * `eval_rows` evaluation rows; 4-byte floats. A documented approximation (docs/config.md, "Memory
 * estimate") used to refuse networks that cannot fit, not to predict the peak; a double, so absurd
 * networks do not overflow. */
double poet_arch_member_bytes(const poet_arch_plan *plan, int rows, int slots, int eval_rows);

/* Bytes of the largest convolution's im2col matrix for `rows` images: the workspace a rank's
 * members share (one per rank in the estimate). */
double poet_arch_workspace_bytes(const poet_arch_plan *plan, int rows);

/* Two architectures are equal when every layer spec is equal (names aside). */
int poet_arch_equal(const poet_arch *a, const poet_arch *b);

/* Human-readable one-line description, e.g. "conv(20,k3,s2) relu ... linear(10)". */
void poet_arch_describe(const poet_arch *arch, char *out, size_t size);

#endif
