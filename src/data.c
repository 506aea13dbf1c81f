/* data.c — the data set in memory: loading by format, normalisation tables, shape checks, and
 * deterministic batches. The format readers are data_idx.c, data_cifar.c and data_hdf5.c. */
#include "poet/data.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/h5util.h"
#include "poet/rng.h"

static size_t image_size(const poet_dataset *ds) {
    return (size_t)ds->channels * (size_t)ds->height * (size_t)ds->width;
}

const char *poet_data_format_name(poet_data_format format) {
    static const char *const names[] = {"auto", "idx", "cifar", "hdf5"};
    return (unsigned)format <= POET_DATA_HDF5 ? names[format] : "unknown";
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

poet_status poet_data_infer(const char *path, poet_data_format *format) {
    poet_h5_quiet();
    if (H5Fis_hdf5(path) > 0)
        *format = POET_DATA_HDF5;
    else if (poet_data_is_idx(path))
        *format = POET_DATA_IDX;
    else if (ends_with(path, ".bin"))
        *format = POET_DATA_CIFAR;
    else {
        FILE *f = fopen(path, "rb");
        if (!f && !strpbrk(path, "*?["))
            return poet_error_set(POET_ERR_DATA, "%s: cannot open: no such file or not readable",
                                  path);
        if (f)
            fclose(f);
        return poet_error_set(POET_ERR_DATA,
                              "%s: cannot tell the format (not HDF5, not IDX, not a .bin CIFAR "
                              "file): set data.format to \"idx\", \"cifar\" or \"hdf5\"",
                              path);
    }
    return POET_OK;
}

poet_status poet_data_check_labels(const uint8_t *labels, long n, int classes, const char *path) {
    for (long i = 0; i < n; i++)
        if (labels[i] >= classes)
            return poet_error_set(POET_ERR_DATA, "%s: label %d at index %lu is >= classes (%d)",
                                  path, labels[i], (unsigned long)i, classes);
    return POET_OK;
}

/* Each of the 256 byte values normalised once, in double, then rounded to float: the values the
 * earlier all-float data sets held, so batches are bitwise the same. */
static void fill_tables(poet_dataset *ds) {
    for (int n = 0; n < ds->n_norm; n++)
        for (int v = 0; v < 256; v++)
            ds->table[n][v] = (float)(((double)v / 255.0 - ds->mean[n]) / ds->std[n]);
}

poet_status poet_data_load_spec(const poet_data_spec *spec, poet_dataset *ds) {
    poet_status st = POET_OK;
    memset(ds, 0, sizeof *ds);
    /* The config module validates these; repeated here so a bad caller gets a message, not NaNs. */
    if (spec->classes < 1 || spec->classes > 256)
        POET_FAIL(POET_ERR_CONFIG, "%s: classes must be 1..256 for byte labels, got %d",
                  spec->labels ? spec->labels : spec->images, spec->classes);
    if (spec->n_norm < 1 || spec->n_norm > POET_DATA_MAX_CHANNELS)
        POET_FAIL(POET_ERR_CONFIG, "%s: expected 1..%d mean/std values, got %d", spec->images,
                  POET_DATA_MAX_CHANNELS, spec->n_norm);
    for (int n = 0; n < spec->n_norm; n++)
        if (!isfinite(spec->mean[n]) || !isfinite(spec->std[n]) || !(spec->std[n] > 0))
            POET_FAIL(POET_ERR_CONFIG,
                      "%s: normalisation needs a finite mean and std > 0, got mean %g std %g",
                      spec->images, spec->mean[n], spec->std[n]);
    snprintf(ds->images_path, sizeof ds->images_path, "%s", spec->images);
    ds->classes = spec->classes;
    ds->n_norm = spec->n_norm;
    memcpy(ds->mean, spec->mean, sizeof ds->mean);
    memcpy(ds->std, spec->std, sizeof ds->std);
    poet_data_format format = spec->format;
    if (format == POET_DATA_AUTO)
        POET_TRY(poet_data_infer(spec->images, &format));
    if (spec->streamed && format != POET_DATA_HDF5)
        POET_FAIL(POET_ERR_DATA,
                  "%s: data.in_memory false reads images from an HDF5 file, this is %s (convert "
                  "it with poet convert)",
                  spec->images, poet_data_format_name(format));
    if (format == POET_DATA_IDX)
        POET_TRY(poet_data_read_idx(spec, ds));
    else if (format == POET_DATA_CIFAR)
        POET_TRY(poet_data_read_cifar(spec, ds));
    else
        POET_TRY(poet_data_read_hdf5(spec, ds));
    if (ds->n_norm != 1 && ds->n_norm != ds->channels)
        POET_FAIL(POET_ERR_DATA,
                  "%s: images have %d channel(s) but data.mean/data.std give %d values (expected "
                  "1 or %d)",
                  spec->images, ds->channels, ds->n_norm, ds->channels);
    fill_tables(ds);
    return POET_OK;
fail:
    poet_data_free(ds);
    return st;
}

poet_status poet_data_load(const char *images_path, const char *labels_path, int classes,
                           double mean, double std, poet_dataset *ds) {
    poet_data_spec spec = {0};
    spec.format = POET_DATA_IDX;
    spec.images = images_path;
    spec.labels = labels_path;
    spec.classes = classes;
    spec.n_norm = 1;
    spec.mean[0] = mean;
    spec.std[0] = std;
    return poet_data_load_spec(&spec, ds);
}

typedef struct {
    uint64_t key;
    uint32_t index;
} keyed;

static int by_key(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Copies the images of `all` whose flag equals `want` into `out`, in file order. */
static poet_status take_images(const poet_dataset *all, const uint8_t *in_val, int want, long n,
                               poet_dataset *out) {
    poet_status st = POET_OK;
    size_t size = image_size(all);
    *out = *all;
    out->pixels = NULL;
    out->values = NULL;
    out->labels = NULL;
    out->count = n;
    if (all->pixels)
        POET_ALLOC(out->pixels, (size_t)n * size);
    else
        POET_ALLOC(out->values, (size_t)n * size);
    POET_ALLOC(out->labels, n);
    for (long i = 0, k = 0; i < all->count; i++) {
        if (in_val[i] != want)
            continue;
        if (all->pixels)
            memcpy(out->pixels + (size_t)k * size, all->pixels + (size_t)i * size, size);
        else
            memcpy(out->values + (size_t)k * size, all->values + (size_t)i * size,
                   size * sizeof(float));
        out->labels[k++] = all->labels[i];
    }
fail:
    return st;
}

poet_status poet_data_split(poet_dataset *all, long n_val, uint64_t seed, poet_dataset *train,
                            poet_dataset *val) {
    poet_status st = POET_OK;
    keyed *keys = NULL;
    uint8_t *in_val = NULL;
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (n_val < 1 || n_val >= all->count)
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: data.validation: expected 1..%ld images held out of the %ld, got %ld",
                  all->images_path, all->count - 1, all->count, n_val);
    POET_ALLOC(keys, all->count);
    POET_ALLOC(in_val, all->count);
    for (long i = 0; i < all->count; i++)
        keys[i] = (keyed){poet_rng_u64(seed, POET_STREAM_VALIDATION, (uint64_t)i), (uint32_t)i};
    qsort(keys, (size_t)all->count, sizeof *keys, by_key);
    for (long i = 0; i < n_val; i++)
        in_val[keys[i].index] = 1;
    POET_TRY(take_images(all, in_val, 0, all->count - n_val, train));
    POET_TRY(take_images(all, in_val, 1, n_val, val));
    poet_data_free(all);
fail:
    if (st != POET_OK) {
        poet_data_free(train);
        poet_data_free(val);
    }
    free(keys);
    free(in_val);
    return st;
}

poet_status poet_data_check_shape(const poet_dataset *ds, int channels, int height, int width,
                                  const char *input_from) {
    if (ds->channels == channels && ds->height == height && ds->width == width)
        return POET_OK;
    return poet_error_set(POET_ERR_DATA,
                          "%s: images are %dx%dx%d (CxHxW) but the network's input is %dx%dx%d "
                          "(%s)",
                          ds->images_path, ds->channels, ds->height, ds->width, channels, height,
                          width, input_from);
}

double poet_data_bytes(const poet_dataset *ds) {
    double images = (double)ds->count * (double)image_size(ds);
    return (ds->values ? images * sizeof(float) : ds->pixels ? images : 0) + (double)ds->count;
}

void poet_data_free(poet_dataset *ds) {
    if (!ds)
        return;
    free(ds->pixels);
    free(ds->values);
    free(ds->labels);
    if (ds->stream)
        poet_data_hdf5_close(ds->stream);
    memset(ds, 0, sizeof *ds);
}

/* Bytes go through their channel's table; float images get (v - mean)/std computed the same way
 * (in double, rounded once to float). A streamed image is read from the file first. */
poet_status poet_data_image(const poet_dataset *ds, long index, float *out) {
    size_t hw = (size_t)ds->height * ds->width, size = image_size(ds);
    const uint8_t *bytes = ds->pixels ? ds->pixels + (size_t)index * size : NULL;
    const float *floats = ds->values ? ds->values + (size_t)index * size : NULL;
    if (ds->stream) {
        const void *raw;
        poet_status st = poet_data_hdf5_fetch(ds, index, &raw);
        if (st != POET_OK)
            return st;
        if (ds->stream_float)
            floats = raw;
        else
            bytes = raw;
    }
    for (int c = 0; c < ds->channels; c++) {
        int n = ds->n_norm == 1 ? 0 : c;
        float *o = out + (size_t)c * hw;
        if (bytes) {
            const uint8_t *p = bytes + (size_t)c * hw;
            const float *table = ds->table[n];
            for (size_t i = 0; i < hw; i++)
                o[i] = table[p[i]];
        } else {
            const float *v = floats + (size_t)c * hw;
            for (size_t i = 0; i < hw; i++)
                o[i] = (float)(((double)v[i] - ds->mean[n]) / ds->std[n]);
        }
    }
    return POET_OK;
}

void poet_batcher_set_rows(poet_batcher *b, int first, int rows) {
    b->image_first = first;
    b->image_rows = rows;
}

void poet_batcher_set_augment(poet_batcher *b, int crop_padding, int flip) {
    b->crop_padding = crop_padding;
    b->flip = flip != 0;
}

/* The image normalised whole, then each output pixel picked from it: a source pixel outside the
 * image reads the normalised black pixel of its channel. */
poet_status poet_data_image_augmented(const poet_dataset *ds, long index, int crop_padding,
                                      int flip, uint64_t u, float *out) {
    int P = crop_padding, H = ds->height, W = ds->width;
    uint64_t side = (uint64_t)(2 * P + 1);
    int oy = (int)(u % side) - P, ox = (int)((u >> 16) % side) - P;
    int flipped = flip && ((u >> 32) & 1);
    size_t hw = (size_t)H * W;
    float stack_image[4096];
    float *src = image_size(ds) <= 4096 ? stack_image : malloc(image_size(ds) * sizeof *src);
    if (!src)
        return poet_error_set(POET_ERR_NOMEM, "out of memory augmenting an image of %zu floats",
                              image_size(ds));
    poet_status st = poet_data_image(ds, index, src);
    for (int c = 0; st == POET_OK && c < ds->channels; c++) {
        int n = ds->n_norm == 1 ? 0 : c;
        float black = !ds->values && !ds->stream_float ? ds->table[n][0]
                                                       : (float)((0.0 - ds->mean[n]) / ds->std[n]);
        const float *s = src + (size_t)c * hw;
        float *o = out + (size_t)c * hw;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int sy = y + oy, sx = (flipped ? W - 1 - x : x) + ox;
                o[(size_t)y * W + x] =
                    sy >= 0 && sy < H && sx >= 0 && sx < W ? s[(size_t)sy * W + sx] : black;
            }
    }
    if (src != stack_image)
        free(src);
    return st;
}

poet_status poet_batcher_init(poet_batcher *b, const poet_dataset *ds, uint64_t seed, int shuffle,
                              int batch) {
    poet_status st = POET_OK;
    memset(b, 0, sizeof *b);
    if (batch < 1 || batch > ds->count)
        POET_FAIL(POET_ERR_CONFIG,
                  "batch size %d does not fit %s: expected 1..%ld (the number of images)", batch,
                  ds->images_path, ds->count);
    b->ds = ds;
    b->seed = seed;
    b->shuffle = shuffle != 0;
    b->batch = batch;
    b->batches_per_epoch = ds->count / batch;
    b->cached_epoch = -1;
    b->image_rows = batch;
    POET_ALLOC(b->order, ds->count);
    /* Without shuffle every epoch has the file order; fill it once for good. */
    if (!b->shuffle)
        for (long i = 0; i < ds->count; i++)
            b->order[i] = (uint32_t)i;
    return POET_OK;
fail:
    poet_batcher_free(b);
    return st;
}

void poet_batcher_free(poet_batcher *b) {
    if (!b)
        return;
    free(b->order);
    memset(b, 0, sizeof *b);
    b->cached_epoch = -1;
}

/* Images or labels may be NULL to skip copying them. Consecutive iterations stay in one epoch, so
 * the permutation is computed once per epoch (a few ms for 60000 images) and kept. */
poet_status poet_batcher_fill(poet_batcher *b, long iteration, float *images, uint8_t *labels) {
    poet_status st = POET_OK;
    if (!b->order)
        POET_FAIL(POET_ERR_INTERNAL, "poet_batcher_fill: batcher not initialised");
    if (iteration < 0)
        POET_FAIL(POET_ERR_INTERNAL, "poet_batcher_fill: iteration %ld is negative", iteration);
    long epoch = iteration / b->batches_per_epoch;
    long first = (iteration % b->batches_per_epoch) * b->batch;
    if (b->shuffle && b->cached_epoch != epoch) {
        poet_rng_permutation(b->seed, (uint64_t)epoch, b->order, (size_t)b->ds->count);
        b->cached_epoch = epoch;
    }
    const poet_dataset *ds = b->ds;
    size_t size = image_size(ds);
    for (int i = 0; i < b->batch; i++) {
        uint32_t idx = b->order[first + i];
        int built = i >= b->image_first && i < b->image_first + b->image_rows;
        if (images && built && (b->crop_padding || b->flip))
            POET_TRY(poet_data_image_augmented(
                ds, idx, b->crop_padding, b->flip,
                poet_rng_u64(b->seed, POET_STREAM_AUGMENT, (uint64_t)epoch << 32 | idx),
                images + (size_t)i * size));
        else if (images && built)
            POET_TRY(poet_data_image(ds, idx, images + (size_t)i * size));
        if (labels)
            labels[i] = ds->labels[idx];
    }
fail:
    return st;
}

/* Precondition: 0 <= first and first + n <= ds->count (evaluation walks the set in file order). */
poet_status poet_data_slice(const poet_dataset *ds, long first, long n, float *images,
                            uint8_t *labels) {
    poet_status st = POET_OK;
    size_t size = image_size(ds);
    for (long i = 0; images && i < n; i++)
        POET_TRY(poet_data_image(ds, first + i, images + (size_t)i * size));
    if (labels)
        memcpy(labels, ds->labels + first, (size_t)n);
fail:
    return st;
}
