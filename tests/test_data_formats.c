/* test_data_formats.c — CIFAR binary and HDF5 data sets: files written here in the exact formats
 * (CIFAR records byte by byte, HDF5 through the library) with known pixels and labels are read
 * back exactly, normalised per channel, told apart by data.format "auto", and every bad file is a
 * one-line data error naming the file and what was expected. Fixtures live in a fresh directory
 * under the working directory (the build tree), removed when the test passes. */
#define _POSIX_C_SOURCE 200809L

#include <hdf5.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "poet/data.h"
#include "poet/error.h"
#include "poet/h5util.h"
#include "poet/rng.h"
#include "testutil.h"

static char dir[64];

static const char *path_of(const char *name) {
    static char paths[16][160];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Pixel c,y,x of image i: distinct across images and channels, covering 0..255. */
static uint8_t pixel(long i, int c, int y, int x) {
    return (uint8_t)(i * 7 + c * 85 + y * 3 + x * 5);
}

/* ---- CIFAR ---------------------------------------------------------------------------------- */

/* Writes n CIFAR records of images first..first+n-1; label bytes from `label`. */
static void write_cifar(const char *path, long first, long n, int label_bytes, long extra_bytes,
                        int bad_label_at) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "FAIL cannot write %s\n", path);
        exit(1);
    }
    for (long i = first; i < first + n; i++) {
        uint8_t rec[3074];
        int k = 0;
        if (label_bytes == 2)
            rec[k++] = (uint8_t)(i % 20);                           /* coarse */
        rec[k++] = (uint8_t)(i % 10 + (label_bytes == 2 ? 50 : 0)); /* fine / CIFAR-10 */
        if (i == bad_label_at)
            rec[k - 1] = 200;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[k++] = pixel(i, c, y, x);
        fwrite(rec, 1, (size_t)k, f);
    }
    for (long b = 0; b < extra_bytes; b++)
        fputc(0, f);
    fclose(f);
}

static poet_data_spec spec_of(poet_data_format format, const char *images, int classes) {
    poet_data_spec s = {0};
    s.format = format;
    s.images = images;
    s.classes = classes;
    s.n_norm = 1;
    s.mean[0] = 0.0;
    s.std[0] = 1.0;
    s.images_dataset = "images";
    s.labels_dataset = "labels";
    return s;
}

/* Every pixel and label of images 0..n-1 as written. */
static void check_exact(const poet_dataset *ds, long n, const char *what, int label_add,
                        int label_mod) {
    TEST_CHECK(ds->count == n && ds->channels == 3 && ds->height == 32 && ds->width == 32,
               "%s: shape %ld x %d x %d x %d", what, ds->count, ds->channels, ds->height,
               ds->width);
    long wrong = 0, wrong_labels = 0;
    for (long i = 0; i < ds->count && i < n; i++) {
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    wrong += ds->pixels[((i * 3 + c) * 32 + y) * 32 + x] != pixel(i, c, y, x);
        wrong_labels += ds->labels[i] != (uint8_t)(i % label_mod + label_add);
    }
    TEST_CHECK(wrong == 0 && wrong_labels == 0, "%s: %ld pixels and %ld labels differ", what, wrong,
               wrong_labels);
}

/* The call fails with `code` and a message holding `a` and `b` (NULL: not checked). */
static void expect_fail(const char *what, const poet_data_spec *spec, poet_status code,
                        const char *a, const char *b) {
    poet_dataset ds;
    poet_error_clear();
    poet_status st = poet_data_load_spec(spec, &ds);
    const char *msg = poet_error_message();
    printf("%-28s -> %s\n", what, msg);
    TEST_CHECK(st == code, "%s: status %d, expected %d (%s)", what, (int)st, (int)code, msg);
    TEST_CHECK(!a || strstr(msg, a), "%s: message lacks '%s': %s", what, a, msg);
    TEST_CHECK(!b || strstr(msg, b), "%s: message lacks '%s': %s", what, b, msg);
    TEST_CHECK(!strchr(msg, '\n'), "%s: message is not one line", what);
    TEST_CHECK(ds.pixels == NULL && ds.values == NULL && ds.labels == NULL,
               "%s: buffers left allocated", what);
}

static void test_cifar(void) {
    /* CIFAR-10: two files of 3 and 2 records form one set of 5, in the pattern's sorted order. */
    write_cifar(path_of("data_batch_1.bin"), 0, 3, 1, 0, -1);
    write_cifar(path_of("data_batch_2.bin"), 3, 2, 1, 0, -1);
    poet_dataset ds;
    poet_data_spec s = spec_of(POET_DATA_CIFAR, path_of("data_batch_*.bin"), 10);
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 5, "CIFAR-10", 0, 10);
    TEST_CHECK(poet_data_bytes(&ds) == 5.0 * 3073, "bytes held %g", poet_data_bytes(&ds));
    poet_data_free(&ds);

    /* Per-channel normalisation: channel c of every image is (x/255 - mean[c]) / std[c]. */
    s.n_norm = 3;
    const double mean[3] = {0.49, 0.48, 0.45}, std[3] = {0.25, 0.24, 0.26};
    memcpy(s.mean, mean, sizeof mean);
    memcpy(s.std, std, sizeof std);
    TEST_OK(poet_data_load_spec(&s, &ds));
    float image[3 * 32 * 32];
    double ref[3 * 32 * 32];
    poet_data_image(&ds, 4, image);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 1024; p++)
            ref[c * 1024 + p] = (float)((pixel(4, c, p / 32, p % 32) / 255.0 - mean[c]) / std[c]);
    test_compare_f32("per-channel normalisation", image, ref, 3 * 1024, 1e-30, 0);
    poet_data_free(&ds);
    s.n_norm = 2;
    expect_fail("2 means for 3 channels", &s, POET_ERR_DATA, "3 channel(s)", "give 2 values");
    s.n_norm = 1;

    /* The format is told from the name; a single file works as its own pattern. */
    poet_data_spec a = spec_of(POET_DATA_AUTO, path_of("data_batch_1.bin"), 10);
    TEST_OK(poet_data_load_spec(&a, &ds));
    check_exact(&ds, 3, "CIFAR-10 auto", 0, 10);
    poet_data_free(&ds);

    /* CIFAR-100: coarse then fine label byte. */
    write_cifar(path_of("train.bin"), 0, 4, 2, 0, -1);
    poet_data_spec h = spec_of(POET_DATA_CIFAR, path_of("train.bin"), 100);
    h.cifar = POET_CIFAR_100_FINE;
    TEST_OK(poet_data_load_spec(&h, &ds));
    check_exact(&ds, 4, "CIFAR-100 fine", 50, 10);
    poet_data_free(&ds);
    h.cifar = POET_CIFAR_100_COARSE;
    h.classes = 20;
    TEST_OK(poet_data_load_spec(&h, &ds));
    check_exact(&ds, 4, "CIFAR-100 coarse", 0, 20);
    poet_data_free(&ds);

    /* Errors. */
    h.cifar = POET_CIFAR_10;
    h.classes = 100;
    expect_fail("CIFAR-100 read as CIFAR-10", &h, POET_ERR_DATA, path_of("train.bin"),
                "not a whole number of 3073-byte CIFAR-10 records");
    write_cifar(path_of("short.bin"), 0, 2, 1, -1, -1);
    TEST_CHECK(truncate(path_of("short.bin"), 2 * 3073 - 1) == 0, "cannot truncate");
    poet_data_spec t = spec_of(POET_DATA_CIFAR, path_of("short.bin"), 10);
    expect_fail("truncated CIFAR", &t, POET_ERR_DATA, path_of("short.bin"), "6145 bytes");
    write_cifar(path_of("badlabel.bin"), 0, 3, 1, 0, 2);
    t.images = path_of("badlabel.bin");
    expect_fail("CIFAR label >= K", &t, POET_ERR_DATA, path_of("badlabel.bin"),
                "label 200 at index 2 is >= classes (10)");
    t.images = path_of("none_*.bin");
    expect_fail("CIFAR no file", &t, POET_ERR_DATA, path_of("none_*.bin"), "no such file");
    t.format = POET_DATA_AUTO;
    t.images = path_of("nothing.dat");
    expect_fail("auto, missing file", &t, POET_ERR_DATA, path_of("nothing.dat"), "cannot open");
}

/* ---- HDF5 ----------------------------------------------------------------------------------- */

typedef struct {
    hid_t type; /* file type of the images */
    int rank;   /* 3 or 4 */
    int nhwc;
    const char *layout_attr; /* NULL: none */
    const char *images_name, *labels_name;
    long n, n_labels;
    int bad_label_at;
    hid_t label_type;
} h5_fixture;

static void write_h5(const char *path, const h5_fixture *f) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {(hsize_t)f->n, 3, 32, 32};
    if (f->rank == 3) {
        dims[1] = 32;
        dims[2] = 32;
    } else if (f->nhwc) {
        dims[1] = 32;
        dims[2] = 32;
        dims[3] = 3;
    }
    int C = f->rank == 3 ? 1 : 3;
    size_t count = (size_t)f->n * C * 1024;
    float *values = xmalloc(count * sizeof *values);
    for (long i = 0; i < f->n; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < 1024; p++) {
                size_t at =
                    f->nhwc ? ((size_t)i * 1024 + p) * C + c : ((size_t)i * C + c) * 1024 + p;
                values[at] = pixel(i, c, p / 32, p % 32);
            }
    hid_t space = H5Screate_simple(f->rank, dims, NULL);
    if (f->images_name) {
        hid_t d =
            H5Dcreate2(file, f->images_name, f->type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (H5Tget_class(f->type) == H5T_FLOAT)
            for (size_t i = 0; i < count; i++)
                values[i] /= 255.0f;
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
        if (f->layout_attr)
            poet_h5_attr_write_string(d, "layout", f->layout_attr, path);
        H5Dclose(d);
    }
    H5Sclose(space);
    free(values);
    if (f->labels_name) {
        hsize_t ln = (hsize_t)f->n_labels;
        long long *labels = xmalloc((size_t)(ln + 1) * sizeof *labels);
        for (hsize_t i = 0; i < ln; i++)
            labels[i] = (long long)(i % 10);
        if (f->bad_label_at >= 0)
            labels[f->bad_label_at] = -1;
        hid_t ls = H5Screate_simple(1, &ln, NULL);
        hid_t d = H5Dcreate2(file, f->labels_name, f->label_type, ls, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
        H5Dclose(d);
        H5Sclose(ls);
        free(labels);
    }
    H5Fclose(file);
}

static h5_fixture good(void) {
    h5_fixture f = {H5T_STD_U8LE, 4, 0, "NCHW", "images", "labels", 6, 6, -1, H5T_STD_I64LE};
    return f;
}

static void test_hdf5(void) {
    poet_h5_quiet();
    poet_dataset ds;
    const char *p = path_of("nchw.h5");
    h5_fixture f = good();
    write_h5(p, &f);
    poet_data_spec s = spec_of(POET_DATA_AUTO, p, 10);
    TEST_OK(poet_data_load_spec(&s, &ds)); /* told from the HDF5 signature */
    check_exact(&ds, 6, "HDF5 NCHW uint8", 0, 10);
    poet_data_free(&ds);

    /* NHWC, by attribute and by the config key (no attribute), reads back as [N, C, H, W]. */
    const char *q = path_of("nhwc.h5");
    f.nhwc = 1;
    f.layout_attr = "NHWC";
    f.label_type = H5T_STD_U8LE;
    write_h5(q, &f);
    s.images = q;
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 6, "HDF5 NHWC uint8 (attribute)", 0, 10);
    poet_data_free(&ds);
    f.layout_attr = NULL;
    write_h5(q, &f);
    s.layout = POET_LAYOUT_NHWC;
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 6, "HDF5 NHWC uint8 (data.layout)", 0, 10);
    poet_data_free(&ds);
    s.layout = POET_LAYOUT_AUTO; /* 32x32x3: the last axis is few, so NHWC is told apart */
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 6, "HDF5 NHWC uint8 (told from the shape)", 0, 10);
    /* Streamed (data.in_memory false): the same normalised images, read from the file. */
    poet_dataset streamed;
    s.streamed = 1;
    TEST_OK(poet_data_load_spec(&s, &streamed));
    TEST_CHECK(streamed.stream && !streamed.pixels && memcmp(streamed.labels, ds.labels, 6) == 0,
               "streamed set holds its pixels or other labels");
    float *mem = xmalloc(sizeof *mem * 6 * 3072), *str = xmalloc(sizeof *str * 6 * 3072);
    TEST_OK(poet_data_slice(&ds, 0, 6, mem, NULL));
    TEST_OK(poet_data_slice(&streamed, 0, 6, str, NULL));
    TEST_CHECK(memcmp(mem, str, sizeof *mem * 6 * 3072) == 0, "streamed images differ");
    free(mem);
    free(str);
    poet_data_free(&streamed);
    s.streamed = 0;
    poet_data_free(&ds);

    /* float32 images on the x/255 scale normalise as the bytes would (within float rounding). */
    const char *r = path_of("float.h5");
    f = good();
    f.type = H5T_IEEE_F32LE;
    write_h5(r, &f);
    s = spec_of(POET_DATA_HDF5, r, 10);
    s.mean[0] = 0.5;
    s.std[0] = 0.25;
    TEST_OK(poet_data_load_spec(&s, &ds));
    TEST_CHECK(ds.values && !ds.pixels, "float images not held as floats");
    float image[3 * 1024];
    double ref[3 * 1024];
    poet_data_image(&ds, 5, image);
    for (int c = 0; c < 3; c++)
        for (int q2 = 0; q2 < 1024; q2++)
            ref[c * 1024 + q2] = ((double)(pixel(5, c, q2 / 32, q2 % 32) / 255.0f) - 0.5) / 0.25;
    test_compare_f32("float32 images", image, ref, 3 * 1024, 0, 1e-6);
    poet_data_free(&ds);

    /* Custom dataset names. */
    f = good();
    f.images_name = "xtrain";
    f.labels_name = "y";
    const char *named = path_of("named.h5");
    write_h5(named, &f);
    s = spec_of(POET_DATA_HDF5, named, 10);
    s.images_dataset = "xtrain";
    s.labels_dataset = "y";
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 6, "HDF5 named datasets", 0, 10);
    poet_data_free(&ds);

    /* Errors, each naming the file. */
    s.images_dataset = "images";
    expect_fail("missing image dataset", &s, POET_ERR_DATA, named,
                "no dataset \"images\" (set data.images_dataset");
    s.images_dataset = "xtrain";
    s.labels_dataset = "labels";
    expect_fail("missing label dataset", &s, POET_ERR_DATA, named,
                "no dataset \"labels\" (set data.labels_dataset");

    const char *e = path_of("bad.h5");
    s = spec_of(POET_DATA_HDF5, e, 10);
    f = good();
    f.type = H5T_STD_I16LE;
    write_h5(e, &f);
    expect_fail("int16 images", &s, POET_ERR_DATA, e, "expected uint8 or float32 images");
    f = good();
    f.type = H5T_IEEE_F64LE;
    write_h5(e, &f);
    expect_fail("float64 images", &s, POET_ERR_DATA, e, "float of 8 bytes");
    f = good();
    f.n_labels = 5;
    write_h5(e, &f);
    expect_fail("N mismatch", &s, POET_ERR_DATA, e, "5 labels in labels but 6 images");
    f = good();
    f.bad_label_at = 3;
    write_h5(e, &f);
    expect_fail("negative label", &s, POET_ERR_DATA, e, "label -1 at index 3 of labels");
    f = good();
    write_h5(e, &f);
    s.classes = 4;
    expect_fail("label >= K", &s, POET_ERR_DATA, e, "label 4 at index 4 of labels is not in 0..3");
    s.classes = 10;
    f = good();
    f.layout_attr = "CHWN";
    write_h5(e, &f);
    expect_fail("bad layout attribute", &s, POET_ERR_DATA, e, "expected \"NCHW\" or \"NHWC\"");
    f = good();
    f.layout_attr = NULL;
    f.nhwc = 0;
    write_h5(e, &f); /* [N, 3, 32, 32] without attribute: told from the shape */
    TEST_OK(poet_data_load_spec(&s, &ds));
    check_exact(&ds, 6, "HDF5 NCHW (told from the shape)", 0, 10);
    poet_data_free(&ds);
    f.label_type = H5T_IEEE_F32LE;
    write_h5(e, &f);
    expect_fail("float labels", &s, POET_ERR_DATA, e, "expected integer labels");
    /* Rank 2 images. */
    hid_t file = H5Fcreate(e, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d2[2] = {6, 1024};
    hid_t sp = H5Screate_simple(2, d2, NULL);
    H5Dclose(H5Dcreate2(file, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(sp);
    H5Fclose(file);
    expect_fail("rank 2 images", &s, POET_ERR_DATA, e, "has rank 2, expected 4");
    /* Not HDF5 at all. */
    FILE *junk = fopen(e, "wb");
    fputs("not hdf5", junk);
    fclose(junk);
    expect_fail("not an HDF5 file", &s, POET_ERR_DATA, e, "not an HDF5 file");
    s.format = POET_DATA_AUTO;
    expect_fail("auto, unknown format", &s, POET_ERR_DATA, e, "set data.format");
    poet_error_clear();
}

/* ---- augmentation --------------------------------------------------------------------------- */

/* Batches with crop and flip equal the definition in data.h, computed here from the raw bytes. */
static void test_augment(void) {
    enum { P = 4, B = 5 };
    poet_dataset ds;
    poet_data_spec s = spec_of(POET_DATA_CIFAR, path_of("data_batch_*.bin"), 10);
    s.n_norm = 3;
    const double mean[3] = {0.4, 0.5, 0.6}, std[3] = {0.2, 0.3, 0.25};
    memcpy(s.mean, mean, sizeof mean);
    memcpy(s.std, std, sizeof std);
    TEST_OK(poet_data_load_spec(&s, &ds));
    poet_batcher b;
    TEST_OK(poet_batcher_init(&b, &ds, 99, 1, B));
    poet_batcher_set_augment(&b, P, 1);
    float *got = xmalloc(sizeof *got * B * 3072);
    uint8_t labels[B];
    long wrong = 0, flips = 0, shifted = 0, draws = 0;
    for (long t = 0; t < 6; t++) { /* epochs 0..5 (one batch per epoch of 5 images) */
        TEST_OK(poet_batcher_fill(&b, t, got, labels));
        uint32_t perm[5];
        poet_rng_permutation(99, (uint64_t)t, perm, 5);
        for (int i = 0; i < B; i++) {
            long idx = perm[i];
            uint64_t u = poet_rng_u64(99, POET_STREAM_AUGMENT, (uint64_t)t << 32 | (uint64_t)idx);
            int oy = (int)(u % (2 * P + 1)) - P, ox = (int)((u >> 16) % (2 * P + 1)) - P;
            int flip = (int)((u >> 32) & 1);
            flips += flip;
            shifted += oy != 0 || ox != 0;
            draws++;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++) {
                        int sy = y + oy, sx = (flip ? 31 - x : x) + ox;
                        int byte =
                            sy >= 0 && sy < 32 && sx >= 0 && sx < 32 ? pixel(idx, c, sy, sx) : 0;
                        float want = (float)((byte / 255.0 - mean[c]) / std[c]);
                        wrong += got[((size_t)i * 3 + c) * 1024 + y * 32 + x] != want;
                    }
            wrong += labels[i] != (uint8_t)(idx % 10);
        }
    }
    TEST_CHECK(wrong == 0, "%ld augmented values differ from the definition", wrong);
    TEST_CHECK(flips > 0 && flips < draws && shifted > draws / 2,
               "draws not varied: %ld flips and %ld shifts in %ld images", flips, shifted, draws);
    /* Another batcher (another rank, or a resumed run) builds the same batch for iteration 4. */
    poet_batcher other;
    TEST_OK(poet_batcher_init(&other, &ds, 99, 1, B));
    poet_batcher_set_augment(&other, P, 1);
    float *again = xmalloc(sizeof *again * B * 3072);
    TEST_OK(poet_batcher_fill(&b, 4, got, labels));
    TEST_OK(poet_batcher_fill(&other, 4, again, labels));
    TEST_CHECK(memcmp(got, again, sizeof *got * B * 3072) == 0, "two batchers differ");
    poet_batcher_free(&other);
    poet_batcher_free(&b);
    free(got);
    free(again);
    poet_data_free(&ds);
}

/* ---- validation split ----------------------------------------------------------------------- */

static void test_split(void) {
    poet_dataset all, train, val, again_train, again_val;
    poet_data_spec s = spec_of(POET_DATA_CIFAR, path_of("data_batch_*.bin"), 10);
    TEST_OK(poet_data_load_spec(&s, &all));
    TEST_OK(poet_data_split(&all, 2, 7, &train, &val));
    TEST_CHECK(all.pixels == NULL, "the whole set was not freed");
    TEST_CHECK(train.count == 3 && val.count == 2, "split %ld + %ld", train.count, val.count);
    /* Image i is known by its first pixel (i * 7); by definition val = the 2 smallest keys. */
    uint64_t key[5];
    for (int i = 0; i < 5; i++)
        key[i] = poet_rng_u64(7, POET_STREAM_VALIDATION, (uint64_t)i);
    int seen[5] = {0}, in_val[5] = {0}, out_of_order = 0;
    for (int v = 0; v < 2; v++) { /* the two smallest keys */
        int best = -1;
        for (int i = 0; i < 5; i++)
            if (!in_val[i] && (best < 0 || key[i] < key[best]))
                best = i;
        in_val[best] = 1;
    }
    long prev = -1;
    for (long k = 0; k < val.count; k++) {
        int i = val.pixels[k * 3072] / 7;
        seen[i]++;
        out_of_order += i <= prev || !in_val[i] || val.labels[k] != i % 10;
        prev = i;
    }
    prev = -1;
    for (long k = 0; k < train.count; k++) {
        int i = train.pixels[k * 3072] / 7;
        seen[i]++;
        out_of_order += i <= prev || in_val[i] || train.labels[k] != i % 10;
        prev = i;
    }
    int not_once = 0;
    for (int i = 0; i < 5; i++)
        not_once += seen[i] != 1;
    TEST_CHECK(not_once == 0 && out_of_order == 0,
               "%d images not in exactly one part, %d misplaced (validation: the smallest keys, "
               "both in file order)",
               not_once, out_of_order);
    /* Another rank splits the same way. */
    TEST_OK(poet_data_load_spec(&s, &all));
    TEST_OK(poet_data_split(&all, 2, 7, &again_train, &again_val));
    TEST_CHECK(memcmp(again_val.pixels, val.pixels, 2 * 3072) == 0 &&
                   memcmp(again_train.pixels, train.pixels, 3 * 3072) == 0,
               "the split differs between two calls");
    poet_data_free(&again_train);
    poet_data_free(&again_val);
    TEST_OK(poet_data_load_spec(&s, &all));
    poet_error_clear();
    TEST_CHECK(poet_data_split(&all, 5, 7, &again_train, &again_val) == POET_ERR_CONFIG &&
                   strstr(poet_error_message(), "data.validation: expected 1..4 images"),
               "holding out every image: %s", poet_error_message());
    poet_data_free(&all);
    poet_data_free(&train);
    poet_data_free(&val);
    poet_error_clear();
}

int main(void) {
    snprintf(dir, sizeof dir, "data_formats_%d", (int)getpid());
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "FAIL cannot create %s\n", dir);
        return 1;
    }
    test_cifar();
    test_hdf5();
    test_augment();
    test_split();
    int rc = test_finish("data_formats");
    if (rc == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", dir);
    }
    return rc;
}
