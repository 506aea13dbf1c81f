/* config.h — the run configuration, parsed from JSON with cJSON and validated key by key.
 *
 * Every key has a default except the data paths' (which default to Debian's dataset-fashion-mnist).
 * Errors name the file, the key path, the value and what was expected, e.g.
 *   configs/x.json: training.batch_size: expected integer >= 1, got -5
 * docs/config.md documents every key.
 */
#ifndef POET_CONFIG_H
#define POET_CONFIG_H

#include <stdint.h>

#include "poet/data.h"
#include "poet/error.h"

#define POET_PATH_MAX 1024
#define POET_NAME_MAX 128
#define POET_MAX_LAYERS 256 /* resnet-56 has 198 */
#define POET_MAX_ARCHS 16
#define POET_MAX_MEMBERS 1024
#define POET_MAX_INPUTS 4 /* inputs of one add layer */
#define POET_ID_MAX 32    /* a layer id's bytes, with the terminating NUL */
#define POET_MAX_ARITY 64 /* the reduce tree's largest fan-in (distributed.arity) */
/* data.mean and data.std bounds: (x/255 - mean)/std stays within ±2000 (docs/config.md). */
#define POET_MEAN_MIN -1.0
#define POET_MEAN_MAX 2.0
#define POET_STD_MIN 0.001
#define POET_STD_MAX 1000.0

typedef enum {
    POET_LAYER_CONV, /* convolution: out, kernel, stride, padding; weight OIHW, bias O */
    POET_LAYER_RELU,
    POET_LAYER_AVG_POOL, /* kernel, stride (default = kernel), padding; global = whole input */
    POET_LAYER_MAX_POOL,
    POET_LAYER_LINEAR,   /* out; flattens its input (C·H·W, PyTorch order); weight [out, in] */
    POET_LAYER_ADD,      /* the element-wise sum of 2..POET_MAX_INPUTS inputs of one shape */
    POET_LAYER_BATCHNORM /* PyTorch's BatchNorm2d: weight, bias C; running mean, variance C */
} poet_layer_kind;

typedef struct {
    poet_layer_kind kind;
    int out;     /* conv: out channels; linear: out features */
    int kernel;  /* conv/pool: square kernel size */
    int stride;  /* conv/pool */
    int padding; /* conv/pool */
    int global;  /* pool: 1 = kernel covers the whole input (global pooling) */
    int no_bias; /* conv/linear: 1 = no bias tensor ("bias": false, PyTorch's bias=False) */
    /* The graph: a layer reads the previous layer's output (layer 0: the images) unless it names
     * its inputs. Inputs are always earlier layers, so a network has no cycles. */
    char id[POET_ID_MAX];        /* "" or the name other layers' "input"/"inputs" use */
    int n_inputs;                /* 0: the previous layer; else inputs[0..n_inputs-1] */
    int inputs[POET_MAX_INPUTS]; /* indices of earlier layers */
} poet_layer_spec;

typedef struct {
    char name[POET_NAME_MAX]; /* "reference" for the built-in network, else "custom-<i>" */
    int n_layers;
    poet_layer_spec layers[POET_MAX_LAYERS];
} poet_arch;

/* AUTO: measured and chosen at start-up among the other three (netprobe.h). */
typedef enum { POET_TREE_BINARY, POET_TREE_KARY, POET_TREE_MPI, POET_TREE_AUTO } poet_tree_kind;
typedef enum { POET_OVERLAP_NONE, POET_OVERLAP_EXACT, POET_OVERLAP_STALE } poet_overlap_mode;
typedef enum { POET_LR_CONSTANT, POET_LR_STEP, POET_LR_COSINE } poet_lr_schedule;
/* What the members are trained on (docs/objectives.md): the joint loss of the mean logits, each
 * member's own loss, or a blend of the two weighted by beta. */
typedef enum {
    POET_OBJECTIVE_JOINT,
    POET_OBJECTIVE_INDEPENDENT,
    POET_OBJECTIVE_BLEND
} poet_objective;

typedef struct {
    char source[POET_PATH_MAX]; /* file the config came from (for messages) */

    /* data */
    char train_images[POET_PATH_MAX];
    char train_labels[POET_PATH_MAX];
    char test_images[POET_PATH_MAX];
    char test_labels[POET_PATH_MAX];
    double mean, std;          /* normalisation (x/255 - mean)/std; the first value of an array */
    int mean_count, std_count; /* 0: a single number; else per-channel values in channel_* */
    double channel_mean[POET_DATA_MAX_CHANNELS], channel_std[POET_DATA_MAX_CHANNELS];
    int mean_auto, std_auto; /* "auto": 1 until normalise.c resolved it from the data, then 2 */
    int shuffle;             /* 1: permute each epoch from (seed, epoch) */
    int classes;             /* K; labels must be < K */
    poet_data_format format; /* AUTO: told from the training images file */
    poet_cifar_labels cifar_labels;     /* CIFAR-10 records or CIFAR-100's fine/coarse label */
    char images_dataset[POET_NAME_MAX]; /* HDF5 dataset names */
    char labels_dataset[POET_NAME_MAX];
    poet_data_layout layout;  /* HDF5 images: AUTO = the dataset's layout attribute */
    int prefetch;             /* batches a separate thread builds ahead; 0 = none */
    int augment_crop_padding; /* random crop after zero padding by this much; 0 = none */
    int augment_flip;         /* 1: random horizontal flip */
    int in_memory;            /* 0: HDF5 images read from the file as batches need them */
    double validation;        /* held out of the training set: a count >= 1, a fraction
                                 in (0, 1), or 0 = none */

    /* model */
    int members; /* M */
    int n_archs; /* distinct architectures */
    poet_arch archs[POET_MAX_ARCHS];
    int member_arch[POET_MAX_MEMBERS]; /* architecture index of member j */
    int placement_explicit;            /* 0: block placement over the ranks */
    int member_rank[POET_MAX_MEMBERS]; /* explicit member -> rank map when placement_explicit */
    int fused;       /* 1: run a rank's same-architecture members as one grouped graph */
    int convolution; /* 0 "gemm": im2col + sgemm; 1 "onednn": oneDNN primitives */

    /* training */
    int batch_size; /* B */
    int epochs;
    long iterations; /* total iterations; 0 = epochs * (train size / B) */
    double lr, momentum, weight_decay;
    int decay_bn_bias; /* 0: no weight decay on biases and batchnorm weights (1-D tensors) */
    int nesterov;
    poet_lr_schedule schedule;
    long step_size; /* step schedule: multiply lr by gamma every step_size iterations */
    double gamma;
    double min_lr; /* cosine schedule floor */
    uint64_t seed;
    int threads;    /* OMP threads per rank; 0 = cores / ranks on this node */
    int log_every;  /* progress line every N iterations (0 = never) */
    int eval_every; /* test-set evaluation every N iterations (0 = only at the end) */
    poet_objective objective;
    double beta;           /* weight of the joint term: 1 joint, 0 independent, in between blend */
    double member_dropout; /* probability that a member is left out of an iteration's mean */
    char deadline[64];     /* "" none, "slurm", or an ISO time: stop with a checkpoint before it */

    /* distributed */
    poet_tree_kind tree;
    int arity; /* kary tree arity k >= 2 (binary: 2) */
    poet_overlap_mode overlap;
    int chunks;     /* exact overlap: micro-batches per batch */
    int group_size; /* S: ranks per member group, each taking a shard of the batch; 0 = automatic */
    int sync_batchnorm; /* S > 1: batchnorm normalises with the whole group's batch statistics */
    double timeout;     /* seconds a wait on the tree may last before the job ends; 0 = no limit */
    double memory_limit_gib; /* most memory a rank's estimate may need; 0 = node's / its ranks */

    /* output */
    char run_name[POET_NAME_MAX];
    char checkpoint_dir[POET_PATH_MAX]; /* default checkpoints/<run_name> */
    int checkpoint_every;               /* 0 = only at the end and on signals */
    int checkpoint_keep;                /* keep the last K checkpoints */
    char log_file[POET_PATH_MAX]; /* per-iteration HDF5 loss log; "" = <checkpoint_dir>/log.h5 */
    int log_flush_every;
    double checkpoint_every_seconds; /* also checkpoint when this much wall time passed; 0 = off */
} poet_config;

/* Fills `cfg` with every default (Fashion-MNIST paths, reference network, M=10, B=200, ...). */
void poet_config_defaults(poet_config *cfg);

/* Parses and validates JSON text; `source` names it in messages. On error `cfg` is unspecified. */
poet_status poet_config_parse(const char *json_text, const char *source, poet_config *cfg);

/* Reads the file at `path` and parses it. */
poet_status poet_config_load(const char *path, poet_config *cfg);

/* The same with `n` command-line overrides "KEY=VALUE" (--set) applied in order before the checks,
 * so they are checked exactly like keys in the file. The file must be valid JSON on its own, and
 * every VALUE one complete JSON value or a bare word (taken as a string). A malformed item (no
 * '=') is POET_ERR_USAGE, a bad VALUE POET_ERR_CONFIG naming the item. */
poet_status poet_config_load_overrides(const char *path, int n, const char *const *overrides,
                                       poet_config *cfg);

/* The fully resolved config (defaults filled in) as JSON text; caller frees. Parsing it again gives
 * an equal config, which is how checkpoints store and compare it. */
char *poet_config_to_json(const poet_config *cfg);

/* Writes into `arch` the built-in reference network for K classes:
 * conv(->20,k3,s2) relu conv(->40,k3,s2) relu avg_pool(6) linear(->20) relu linear(->K). */
void poet_config_reference_arch(poet_arch *arch, int classes);

/* What poet_data_load_spec needs to load the training (test = 0) or test set of `cfg`; the
 * spec's strings point into `cfg`. */
void poet_config_data_spec(const poet_config *cfg, int test, poet_data_spec *spec);

/* The number of validation images held out of a training set of n (0 = none). */
long poet_config_validation_count(const poet_config *cfg, long n);

/* Number of iterations the run trains for, given the training set size. */
long poet_config_total_iterations(const poet_config *cfg, long train_size);

const char *poet_tree_kind_name(poet_tree_kind kind);
const char *poet_overlap_mode_name(poet_overlap_mode mode);
const char *poet_layer_kind_name(poet_layer_kind kind); /* as the config names it: "conv", ... */

#endif
