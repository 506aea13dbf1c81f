/* data_hdf5.c — images and labels from an HDF5 file (docs/data-format.md).
 *
 * The image dataset (default "images") is uint8 or float32 of rank 4, [N, C, H, W] or
 * [N, H, W, C] (its string attribute "layout", "NCHW" or "NHWC", or data.layout says which), or of
 * rank 3, [N, H, W] with one channel; float32 pixels are on the x/255 scale (0..1 for the usual
 * images). The label dataset (default "labels") holds N integers of any integer type in 0..K-1.
 * Each rank reads the file itself, serially; images are read a block at a time through a
 * hyperslab, so an NHWC set is transposed to NCHW without a second full-size copy.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/data.h"
#include "poet/h5util.h"

#define BLOCK_IMAGES 1024 /* images per hyperslab read */

typedef struct {
    const char *path, *name;
    hid_t dset, space, type;
    int rank, nhwc, is_float;
    hsize_t dims[4];
} image_source;

/* The dataset `name` of file `file`, or a data error naming it and the config key to set. */
static poet_status open_dataset(hid_t file, const char *path, const char *name, const char *key,
                                hid_t *dset) {
    poet_status st = POET_OK;
    htri_t there = H5Lexists(file, name, H5P_DEFAULT);
    if (there <= 0 || H5Oexists_by_name(file, name, H5P_DEFAULT) <= 0)
        POET_FAIL(POET_ERR_DATA, "%s: no dataset \"%s\" (set %s to the dataset's name)", path, name,
                  key);
    *dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (*dset < 0)
        POET_FAIL(POET_ERR_DATA, "%s: \"%s\" is not a dataset (%s)", path, name, key);
fail:
    return st;
}

static poet_status layout_of(const poet_data_spec *spec, image_source *s) {
    poet_status st = POET_OK;
    char *attr = NULL;
    if (s->rank == 3) {
        s->nhwc = 0;
        return POET_OK;
    }
    if (spec->layout != POET_LAYOUT_AUTO) {
        s->nhwc = spec->layout == POET_LAYOUT_NHWC;
        return POET_OK;
    }
    if (poet_h5_attr_class(s->dset, "layout") == H5T_STRING) {
        POET_TRY(
            poet_h5_attr_read_string(s->dset, "layout", &attr, POET_ERR_DATA, s->path, s->name));
        if (strcmp(attr, "NCHW") != 0 && strcmp(attr, "NHWC") != 0)
            POET_FAIL(POET_ERR_DATA,
                      "%s: attribute layout of %s is \"%s\", expected \"NCHW\" or \"NHWC\"",
                      s->path, s->name, attr);
        s->nhwc = strcmp(attr, "NHWC") == 0;
    } else if (s->dims[1] <= 4 && s->dims[3] > 4) {
        s->nhwc = 0; /* few channels first, a wide last axis: [N, C, H, W] */
    } else if (s->dims[3] <= 4 && s->dims[1] > 4) {
        s->nhwc = 1;
    } else {
        POET_FAIL(POET_ERR_DATA,
                  "%s: cannot tell whether %s [%llu, %llu, %llu, %llu] is NCHW or NHWC: give it a "
                  "string attribute layout or set data.layout",
                  s->path, s->name, (unsigned long long)s->dims[0], (unsigned long long)s->dims[1],
                  (unsigned long long)s->dims[2], (unsigned long long)s->dims[3]);
    }
fail:
    free(attr);
    return st;
}

/* Opens the image dataset and checks its type and rank; fills the shape of `ds`. */
static poet_status open_images(hid_t file, const poet_data_spec *spec, image_source *s,
                               poet_dataset *ds) {
    poet_status st = POET_OK;
    POET_TRY(open_dataset(file, s->path, s->name, "data.images_dataset", &s->dset));
    POET_H5(s->space = H5Dget_space(s->dset));
    POET_H5(s->type = H5Dget_type(s->dset));
    H5T_class_t cls = H5Tget_class(s->type);
    size_t size = H5Tget_size(s->type);
    if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(s->type) == H5T_SGN_NONE)
        s->is_float = 0;
    else if (cls == H5T_FLOAT && size == 4)
        s->is_float = 1;
    else
        POET_FAIL(POET_ERR_DATA,
                  "%s: dataset %s has an unsupported type (%s of %zu bytes): expected uint8 or "
                  "float32 images",
                  s->path, s->name,
                  cls == H5T_INTEGER ? (H5Tget_sign(s->type) == H5T_SGN_NONE ? "unsigned integer"
                                                                             : "signed integer")
                  : cls == H5T_FLOAT ? "float"
                                     : "not a number",
                  size);
    s->rank = H5Sget_simple_extent_ndims(s->space);
    if (s->rank != 3 && s->rank != 4)
        POET_FAIL(POET_ERR_DATA,
                  "%s: dataset %s has rank %d, expected 4 ([N, C, H, W] or [N, H, W, C]) or 3 "
                  "([N, H, W])",
                  s->path, s->name, s->rank);
    H5Sget_simple_extent_dims(s->space, s->dims, NULL);
    POET_TRY(layout_of(spec, s));
    hsize_t n = s->dims[0], c = s->rank == 3 ? 1 : s->nhwc ? s->dims[3] : s->dims[1];
    hsize_t h = s->rank == 3 ? s->dims[1] : s->nhwc ? s->dims[1] : s->dims[2];
    hsize_t w = s->rank == 3 ? s->dims[2] : s->nhwc ? s->dims[2] : s->dims[3];
    if (n < 1 || n > 0x7fffffff || c < 1 || c > 4096 || h < 1 || h > 65536 || w < 1 || w > 65536)
        POET_FAIL(POET_ERR_DATA,
                  "%s: dataset %s holds %llu images of %llux%llux%llu (CxHxW): expected 1..2^31-1 "
                  "images of 1..4096 channels of 1..65536 x 1..65536 pixels",
                  s->path, s->name, (unsigned long long)n, (unsigned long long)c,
                  (unsigned long long)h, (unsigned long long)w);
    ds->count = (long)n;
    ds->channels = (int)c;
    ds->height = (int)h;
    ds->width = (int)w;
fail:
    return st;
}

/* Images [first, first + n) into `out` as [n, C, H, W] (bytes or floats). */
static poet_status read_block(const image_source *s, const poet_dataset *ds, long first, long n,
                              void *scratch, void *out) {
    poet_status st = POET_OK;
    hid_t mem = H5I_INVALID_HID;
    hsize_t start[4] = {(hsize_t)first, 0, 0, 0}, count[4];
    memcpy(count, s->dims, sizeof count);
    count[0] = (hsize_t)n;
    POET_H5(H5Sselect_hyperslab(s->space, H5S_SELECT_SET, start, NULL, count, NULL));
    POET_H5(mem = H5Screate_simple(s->rank, count, NULL));
    hid_t mem_type = s->is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    size_t elem = s->is_float ? sizeof(float) : 1;
    if (H5Dread(s->dset, mem_type, mem, s->space, H5P_DEFAULT, s->nhwc ? scratch : out) < 0)
        POET_FAIL(POET_ERR_DATA, "%s: reading images %ld..%ld of %s failed: %s", s->path, first,
                  first + n - 1, s->name, poet_hdf5_error_string());
    if (s->nhwc) { /* [n, H, W, C] -> [n, C, H, W] */
        size_t C = (size_t)ds->channels, HW = (size_t)ds->height * ds->width;
        for (long i = 0; i < n; i++)
            for (size_t p = 0; p < HW; p++)
                for (size_t c = 0; c < C; c++)
                    memcpy((char *)out + (((size_t)i * C + c) * HW + p) * elem,
                           (const char *)scratch + (((size_t)i * HW + p) * C + c) * elem, elem);
    }
fail:
    poet_h5_close(&mem);
    return st;
}

static poet_status read_labels(hid_t file, const char *path, const poet_data_spec *spec,
                               poet_dataset *ds) {
    poet_status st = POET_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    long long *values = NULL;
    const char *name = spec->labels_dataset;
    POET_TRY(open_dataset(file, path, name, "data.labels_dataset", &dset));
    POET_H5(space = H5Dget_space(dset));
    POET_H5(type = H5Dget_type(dset));
    if (H5Tget_class(type) != H5T_INTEGER)
        POET_FAIL(POET_ERR_DATA, "%s: dataset %s has an unsupported type: expected integer labels",
                  path, name);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 1};
    if (rank == 1 || rank == 2)
        H5Sget_simple_extent_dims(space, dims, NULL);
    if ((rank != 1 && rank != 2) || dims[1] != 1)
        POET_FAIL(POET_ERR_DATA, "%s: dataset %s has rank %d, expected 1 ([N] labels)", path, name,
                  rank);
    if ((long long)dims[0] != ds->count)
        POET_FAIL(POET_ERR_DATA, "%s: %llu labels in %s but %ld images in %s", path,
                  (unsigned long long)dims[0], name, ds->count, spec->images_dataset);
    POET_ALLOC(values, dims[0]);
    POET_ALLOC(ds->labels, dims[0]);
    if (H5Dread(dset, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0)
        POET_FAIL(POET_ERR_DATA, "%s: reading %s failed: %s", path, name, poet_hdf5_error_string());
    for (long i = 0; i < ds->count; i++) {
        if (values[i] < 0 || values[i] >= spec->classes)
            POET_FAIL(POET_ERR_DATA, "%s: label %lld at index %ld of %s is not in 0..%d (classes)",
                      path, values[i], i, name, spec->classes - 1);
        ds->labels[i] = (uint8_t)values[i];
    }
fail:
    free(values);
    poet_h5_close(&type);
    poet_h5_close(&space);
    poet_h5_close(&dset);
    return st;
}

/* A streamed set keeps its file and image dataset open; one image is read at a time. */
typedef struct {
    hid_t file;
    image_source s;
    void *raw, *scratch; /* one image as [C, H, W]; as stored (NHWC) before the transpose */
} h5_stream;

void poet_data_hdf5_close(void *stream) {
    h5_stream *h = stream;
    if (!h)
        return;
    poet_h5_close(&h->s.type);
    poet_h5_close(&h->s.space);
    poet_h5_close(&h->s.dset);
    poet_h5_close(&h->file);
    free(h->raw);
    free(h->scratch);
    free(h);
}

poet_status poet_data_hdf5_fetch(const poet_dataset *ds, long index, const void **raw) {
    h5_stream *h = ds->stream;
    poet_status st = read_block(&h->s, ds, index, 1, h->scratch, h->raw);
    *raw = h->raw;
    return st;
}

poet_status poet_data_read_hdf5(const poet_data_spec *spec, poet_dataset *ds) {
    poet_status st = POET_OK;
    const char *path = spec->images;
    hid_t file = H5I_INVALID_HID;
    image_source s = {
        path, spec->images_dataset, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, 0, 0, 0,
        {0}};
    void *scratch = NULL;
    poet_h5_quiet();
    if (H5Fis_hdf5(path) <= 0) {
        FILE *f = fopen(path, "rb");
        if (f)
            fclose(f);
        POET_FAIL(POET_ERR_DATA, "%s: %s", path,
                  f ? "not an HDF5 file (no HDF5 signature)"
                    : "cannot open: no such file or "
                      "not readable");
    }
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        POET_FAIL(POET_ERR_DATA, "%s: cannot open as HDF5: %s", path, poet_hdf5_error_string());
    POET_TRY(open_images(file, spec, &s, ds));
    size_t size = (size_t)ds->channels * ds->height * ds->width;
    size_t elem = s.is_float ? sizeof(float) : 1;
    if (spec->streamed) {
        h5_stream *h = NULL;
        POET_TRY(read_labels(file, path, spec, ds));
        POET_ALLOC(h, 1);
        ds->stream = h;
        ds->stream_float = s.is_float;
        h->file = file;
        h->s = s;
        file = s.dset = s.space = s.type = H5I_INVALID_HID; /* the stream holds them now */
        POET_ALLOC(h->raw, size * elem);
        POET_ALLOC(h->scratch, size * elem);
        goto fail; /* nothing more to read now; poet_data_free closes the stream */
    }
    if (s.is_float)
        POET_ALLOC(ds->values, (size_t)ds->count * size);
    else
        POET_ALLOC(ds->pixels, (size_t)ds->count * size);
    if (s.nhwc)
        POET_ALLOC(scratch, (size_t)BLOCK_IMAGES * size * elem);
    for (long first = 0; first < ds->count; first += BLOCK_IMAGES) {
        long n = ds->count - first < BLOCK_IMAGES ? ds->count - first : BLOCK_IMAGES;
        void *out = s.is_float ? (void *)(ds->values + (size_t)first * size)
                               : (void *)(ds->pixels + (size_t)first * size);
        POET_TRY(read_block(&s, ds, first, n, scratch, out));
    }
    for (size_t i = 0; s.is_float && i < (size_t)ds->count * size; i++)
        if (!isfinite(ds->values[i]))
            POET_FAIL(POET_ERR_DATA, "%s: image %zu of %s has a value that is not finite", path,
                      i / size, s.name);
    POET_TRY(read_labels(file, path, spec, ds));
fail:
    free(scratch);
    poet_h5_close(&s.type);
    poet_h5_close(&s.space);
    poet_h5_close(&s.dset);
    poet_h5_close(&file);
    return st;
}

/* One dataset of `count` elements of `mem_type`, stored as `file_type`, shaped `dims`. */
static poet_status write_dataset(hid_t file, const char *path, const char *name, hid_t file_type,
                                 hid_t mem_type, int rank, const hsize_t *dims, const void *data,
                                 hid_t *out) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID;
    POET_H5(space = H5Screate_simple(rank, dims, NULL));
    POET_H5(*out = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (H5Dwrite(*out, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        POET_FAIL(POET_ERR_IO, "%s: writing %s failed: %s", path, name, poet_hdf5_error_string());
fail:
    poet_h5_close(&space);
    return st;
}

poet_status poet_data_write_hdf5(const poet_dataset *ds, const char *path) {
    poet_status st = POET_OK;
    hid_t file = H5I_INVALID_HID, images = H5I_INVALID_HID, labels = H5I_INVALID_HID;
    hsize_t dims[4] = {(hsize_t)ds->count, (hsize_t)ds->channels, (hsize_t)ds->height,
                       (hsize_t)ds->width};
    poet_h5_quiet();
    file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        POET_FAIL(POET_ERR_IO, "%s: cannot create: %s", path, poet_hdf5_error_string());
    if (ds->values)
        POET_TRY(write_dataset(file, path, "images", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims,
                               ds->values, &images));
    else
        POET_TRY(write_dataset(file, path, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, dims,
                               ds->pixels, &images));
    POET_TRY(poet_h5_attr_write_string(images, "layout", "NCHW", path));
    POET_TRY(write_dataset(file, path, "labels", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, dims,
                           ds->labels, &labels));
    POET_TRY(poet_h5_attr_write_string(file, "source", ds->images_path, path));
fail:
    poet_h5_close(&labels);
    poet_h5_close(&images);
    if (poet_h5_close(&file) < 0 && st == POET_OK)
        st = poet_error_set(POET_ERR_IO, "%s: closing failed: %s", path, poet_hdf5_error_string());
    return st;
}
