/* data.h — image data sets (IDX, CIFAR binary, HDF5), normalisation and deterministic batches.
 *
 * Every rank loads the data itself and derives the same batch from (seed, epoch, position), so no
 * data moves over MPI. Pixels stay in memory as they are stored (uint8, or float32 for HDF5
 * float images) and are normalised per channel when a batch is built, through a 256-entry table
 * per channel for bytes: the floats are exactly those a float copy of the set would hold.
 * docs/data-format.md describes the formats.
 */
#ifndef POET_DATA_H
#define POET_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "poet/error.h"

#define POET_DATA_MAX_CHANNELS 16 /* per-channel mean/std values a config may give */

typedef enum { POET_DATA_AUTO, POET_DATA_IDX, POET_DATA_CIFAR, POET_DATA_HDF5 } poet_data_format;
/* CIFAR records: CIFAR-10 has one label byte; CIFAR-100 a coarse and a fine label byte. */
typedef enum { POET_CIFAR_10, POET_CIFAR_100_FINE, POET_CIFAR_100_COARSE } poet_cifar_labels;
/* HDF5 image layout: from the dataset's "layout" attribute (AUTO), else as given. */
typedef enum { POET_LAYOUT_AUTO, POET_LAYOUT_NCHW, POET_LAYOUT_NHWC } poet_data_layout;

/* What to load: the format, the files and how to read and normalise them. */
typedef struct {
    poet_data_format format;
    const char *images; /* IDX images; CIFAR files (a glob pattern); the HDF5 file */
    const char *labels; /* IDX labels, or NULL: images only, every label 0 (predict) */
    int classes;        /* K: every label must be < K */
    int n_norm;         /* 1: one mean/std for every channel; else one per channel */
    double mean[POET_DATA_MAX_CHANNELS], std[POET_DATA_MAX_CHANNELS]; /* (x/255 - mean)/std */
    poet_cifar_labels cifar;
    const char *images_dataset; /* HDF5 dataset names ("images", "labels") */
    const char *labels_dataset;
    poet_data_layout layout;
    int streamed; /* HDF5 only: images read from the file when a batch needs them */
} poet_data_spec;

typedef struct {
    char images_path[1024];
    long count;        /* N images */
    int channels;      /* C */
    int height, width; /* H, W */
    uint8_t *pixels;   /* [N, C, H, W] bytes as stored, or NULL for float images */
    float *values;     /* [N, C, H, W] float32 images (HDF5), on the x/255 scale, or NULL */
    uint8_t *labels;   /* [N] */
    void *stream;      /* streamed HDF5 images (pixels and values NULL): the open file */
    int stream_float;  /* the streamed images are float32 */
    int classes;       /* K: every label is < K */
    int n_norm;        /* 1 or channels */
    double mean[POET_DATA_MAX_CHANNELS], std[POET_DATA_MAX_CHANNELS];
    float table[POET_DATA_MAX_CHANNELS][256]; /* byte -> normalised float, per channel */
} poet_dataset;

/* Loads a data set as `spec` says (format AUTO: told from the file; see poet_data_infer). Every
 * error is POET_ERR_DATA (POET_ERR_CONFIG for bad classes/mean/std) with one line naming the file
 * and what was expected: missing/unreadable, bad magic or signature, truncated, wrong sizes, image/
 * label count mismatch, label >= classes, unsupported dtype or rank, a dataset missing, a number of
 * mean/std values other than 1 or the images' channels. */
poet_status poet_data_load_spec(const poet_data_spec *spec, poet_dataset *ds);

/* An IDX3 image file and an IDX1 label file (raw or .gz) with one mean and std. */
poet_status poet_data_load(const char *images_path, const char *labels_path, int classes,
                           double mean, double std, poet_dataset *ds);

/* The format of `path` for AUTO: HDF5 by its signature, IDX by its magic (raw or gzip), CIFAR by a
 * name ending in .bin (or a glob pattern of such names). Otherwise POET_ERR_DATA asking for
 * data.format. */
poet_status poet_data_infer(const char *path, poet_data_format *format);
const char *poet_data_format_name(poet_data_format format);

/* Fails (POET_ERR_DATA, one line naming the file and both shapes) unless every image of `ds` is
 * channels×height×width, the network's input; `input_from` says what fixed that input (e.g. "the
 * training images, <path>"). Images of another size would be read past their end or in part. */
poet_status poet_data_check_shape(const poet_dataset *ds, int channels, int height, int width,
                                  const char *input_from);

/* Splits `all` into `train` and `val` (both in file order; `all` is freed): the n_val images with
 * the smallest keys poet_rng_u64(seed, POET_STREAM_VALIDATION, i) (ties by index) form `val`, the
 * rest `train`. A pure function of (seed, N, n_val): the same on every rank, disjoint. Fails
 * (POET_ERR_CONFIG) unless 1 <= n_val < N. */
poet_status poet_data_split(poet_dataset *all, long n_val, uint64_t seed, poet_dataset *train,
                            poet_dataset *val);

/* Bytes of memory the loaded set holds (pixels or values, labels). */
double poet_data_bytes(const poet_dataset *ds);

void poet_data_free(poet_dataset *ds);

/* Writes image `index`, normalised, as C·H·W floats. Fails only for a streamed set whose file
 * cannot be read (one thread at a time may read a streamed set). */
poet_status poet_data_image(const poet_dataset *ds, long index, float *out);

/* Iteration order over a data set for one run: epoch e visits the images in the order
 * poet_rng_permutation(seed, e) (or file order without shuffle); a batch is B consecutive entries
 * of that order and an epoch has floor(N / B) batches (the remainder is dropped, as PyTorch's
 * drop_last=True). Iteration t (0-based, counted over the whole run) is batch t % batches_per_epoch
 * of epoch t / batches_per_epoch, so any rank can compute any iteration's batch. */
typedef struct {
    const poet_dataset *ds;
    uint64_t seed;
    int shuffle;
    int batch; /* B */
    long batches_per_epoch;
    long cached_epoch;           /* epoch whose permutation is in `order`, -1 none */
    uint32_t *order;             /* [N] */
    int crop_padding, flip;      /* augmentation (poet_batcher_set_augment) */
    int image_first, image_rows; /* the rows whose images are built (poet_batcher_set_rows) */
} poet_batcher;

poet_status poet_batcher_init(poet_batcher *b, const poet_dataset *ds, uint64_t seed, int shuffle,
                              int batch);
void poet_batcher_free(poet_batcher *b);

/* Augmentation of training batches: image i of epoch e draws u = poet_rng_u64(seed,
 * POET_STREAM_AUGMENT, e << 32 | i) and, with P = crop_padding, takes offsets
 * oy = u % (2P+1) - P, ox = (u >> 16) % (2P+1) - P and (with flip) flips when bit 32 of u is set:
 *   out[c][y][x] = in[c][y + oy][x' + ox],   x' = W-1-x when flipped, else x,
 * where a position outside the image is a black pixel (byte 0 or float 0, then normalised: the
 * zero padding of torchvision's RandomCrop before Normalize). So every rank builds the same batch
 * for any iteration, whatever the rank count or a resume. */
void poet_batcher_set_augment(poet_batcher *b, int crop_padding, int flip);

/* Builds only rows [first, first + rows) of every batch's images (a member group's shard,
 * group.h), in their places in the batch buffer; the other rows' images are left as they are,
 * every label is written. The default is the whole batch. */
void poet_batcher_set_rows(poet_batcher *b, int first, int rows);

/* Writes image `index` augmented by the draw `u` (as above; crop_padding and flip of `b`). */
poet_status poet_data_image_augmented(const poet_dataset *ds, long index, int crop_padding,
                                      int flip, uint64_t u, float *out);

/* Builds iteration t's batch: normalised (and augmented) images [B, C, H, W] and labels [B]. */
poet_status poet_batcher_fill(poet_batcher *b, long iteration, float *images, uint8_t *labels);

/* Normalised images [first, first + n) in file order (evaluation). */
poet_status poet_data_slice(const poet_dataset *ds, long first, long n, float *images,
                            uint8_t *labels);

/* ---- format readers (data_idx.c, data_cifar.c, data_hdf5.c) ----------------------------------
 * Each fills count, channels, height, width, pixels or values and labels of `ds` (checking labels
 * < spec->classes); poet_data_load_spec checks the rest and frees on failure. */
poet_status poet_data_read_idx(const poet_data_spec *spec, poet_dataset *ds);
poet_status poet_data_read_cifar(const poet_data_spec *spec, poet_dataset *ds);
poet_status poet_data_read_hdf5(const poet_data_spec *spec, poet_dataset *ds);

/* 1 when `path` starts with an IDX magic (raw or gzip). */
int poet_data_is_idx(const char *path);

/* Streamed HDF5 sets: image `index` as stored ([C, H, W] bytes or floats) in a buffer of the
 * stream's, valid until the next call; and closing the stream (poet_data_free does). */
poet_status poet_data_hdf5_fetch(const poet_dataset *ds, long index, const void **raw);
void poet_data_hdf5_close(void *stream);

/* Writes `ds` as an HDF5 data set (docs/data-format.md): "images" [N, C, H, W] uint8 (float32 for
 * float images) with the attribute layout = "NCHW", "labels" [N] uint8, and the file attribute
 * source naming where the images came from. The `poet convert` command. */
poet_status poet_data_write_hdf5(const poet_dataset *ds, const char *path);

/* Fails naming `path` when a label is >= classes (labels[i] for i < n; `where` names the set). */
poet_status poet_data_check_labels(const uint8_t *labels, long n, int classes, const char *path);

#endif
