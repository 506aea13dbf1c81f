/* data.h — IDX (MNIST-format) data sets, normalisation and deterministic batches.
 *
 * Files may be raw or gzip-compressed (zlib reads both transparently). Every rank loads the data
 * itself and derives the same batch from (seed, epoch, position), so no data moves over MPI.
 */
#ifndef POET_DATA_H
#define POET_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "poet/error.h"

typedef struct {
    char images_path[1024];
    long count;          /* N images */
    int channels;        /* C = 1 for IDX images */
    int height, width;   /* H, W */
    float *pixels;       /* [N, C, H, W] normalised: (x/255 - mean)/std */
    uint8_t *labels;     /* [N] */
    int classes;         /* K: every label is < K */
} poet_dataset;

/* Loads an IDX3 image file and an IDX1 label file (raw or .gz). Errors, each naming the file:
 * missing/unreadable, bad magic, truncated, image/label count mismatch, label >= classes.
 * labels_path may be NULL: images only, every label 0 (prediction). */
poet_status poet_data_load(const char *images_path, const char *labels_path, int classes,
                           double mean, double std, poet_dataset *ds);

/* Fails (POET_ERR_DATA, one line naming the file and both shapes) unless every image of `ds` is
 * channels×height×width, the network's input; `input_from` says what fixed that input (e.g. "the
 * training images, <path>"). Images of another size would be read past their end or in part. */
poet_status poet_data_check_shape(const poet_dataset *ds, int channels, int height, int width,
                                  const char *input_from);

void poet_data_free(poet_dataset *ds);

/* Iteration order over a data set for one run: epoch e visits the images in the order
 * poet_rng_permutation(seed, e) (or file order without shuffle); a batch is B consecutive entries
 * of that order and an epoch has floor(N / B) batches (the remainder is dropped, as PyTorch's
 * drop_last=True). Iteration t (0-based, counted over the whole run) is batch t % batches_per_epoch
 * of epoch t / batches_per_epoch, so any rank can compute any iteration's batch. */
typedef struct {
    const poet_dataset *ds;
    uint64_t seed;
    int shuffle;
    int batch;               /* B */
    long batches_per_epoch;
    long cached_epoch;       /* epoch whose permutation is in `order`, -1 none */
    uint32_t *order;         /* [N] */
} poet_batcher;

poet_status poet_batcher_init(poet_batcher *b, const poet_dataset *ds, uint64_t seed, int shuffle,
                              int batch);
void poet_batcher_free(poet_batcher *b);

/* Copies iteration t's batch: images [B, C, H, W] and labels [B]. */
poet_status poet_batcher_fill(poet_batcher *b, long iteration, float *images, uint8_t *labels);

/* Copies images [first, first + n) in file order (evaluation). */
void poet_data_slice(const poet_dataset *ds, long first, long n, float *images, uint8_t *labels);

#endif
