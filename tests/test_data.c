/* test_data.c — IDX loading (raw and gzip), normalisation, every data error, batch order and
 * slices. Fixtures are written at run time into a fresh directory under the working directory
 * (the build tree) and removed when the test passes. With a Fashion-MNIST directory as argv[1], the
 * real train and test sets are loaded and checked against pinned counts and checksums. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "poet/data.h"
#include "poet/error.h"
#include "poet/rng.h"
#include "testutil.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

static char fixture_dir[64];
static char created[64][160]; /* every fixture path, for the cleanup */
static int n_created;

static const char *fixture_path(const char *name) {
    if (n_created == 64) {
        fprintf(stderr, "FAIL too many fixtures\n");
        exit(1);
    }
    snprintf(created[n_created], sizeof created[0], "%s/%s", fixture_dir, name);
    return created[n_created++];
}

typedef struct {
    unsigned char *bytes;
    size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *data, size_t len) {
    if (len == 0)
        return;
    if (b->len + len > b->cap) {
        b->cap = 2 * (b->len + len);
        b->bytes = realloc(b->bytes, b->cap);
        if (!b->bytes) {
            fprintf(stderr, "FAIL out of memory\n");
            exit(1);
        }
    }
    memcpy(b->bytes + b->len, data, len);
    b->len += len;
}

static void put_be32(bytes_t *b, uint32_t v) {
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    put(b, p, 4);
}

static bytes_t idx3(uint32_t n, uint32_t h, uint32_t w, const unsigned char *pixels) {
    bytes_t b = {0};
    put_be32(&b, 0x00000803);
    put_be32(&b, n);
    put_be32(&b, h);
    put_be32(&b, w);
    put(&b, pixels, (size_t)n * h * w);
    return b;
}

static bytes_t idx1(uint32_t n, const unsigned char *labels) {
    bytes_t b = {0};
    put_be32(&b, 0x00000801);
    put_be32(&b, n);
    put(&b, labels, n);
    return b;
}

/* Writes the first `len` bytes of b, raw or through zlib's gzip writer; returns the path. */
static const char *write_fixture(const char *name, const bytes_t *b, size_t len, int gz) {
    const char *path = fixture_path(name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || (len && gzwrite(f, b->bytes, (unsigned)len) != (int)len) || gzclose(f) != Z_OK) {
            fprintf(stderr, "FAIL cannot write %s\n", path);
            exit(1);
        }
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b->bytes, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "FAIL cannot write %s\n", path);
            exit(1);
        }
    }
    return path;
}

static bytes_t read_whole(const char *path) {
    bytes_t b = {0};
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        put(&b, buf, n);
    if (f)
        fclose(f);
    return b;
}

/* Deterministic, incompressible-looking bytes (so a cut gzip file really loses data). */
static void fill_bytes(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(poet_rng_u64(seed, POET_STREAM_TEST, i) >> 56);
}

/* ---- loading -------------------------------------------------------------------------------- */

enum { N = 5, H = 3, W = 4, K = 3 };
static unsigned char small_pixels[N * H * W], small_labels[N];
static const double MEAN = 0.25, STD = 0.5;

/* The whole set normalised, as batches see it (caller frees). */
static float *normalised(const poet_dataset *ds) {
    size_t size = (size_t)ds->channels * ds->height * ds->width;
    float *all = malloc(sizeof *all * size * (size_t)ds->count);
    if (!all) {
        fprintf(stderr, "FAIL out of memory\n");
        exit(1);
    }
    poet_data_slice(ds, 0, ds->count, all, NULL);
    return all;
}

static void check_small(const poet_dataset *ds, const char *what) {
    TEST_CHECK(ds->count == N && ds->channels == 1 && ds->height == H && ds->width == W,
               "%s: shape %ld x %d x %d x %d", what, ds->count, ds->channels, ds->height,
               ds->width);
    TEST_CHECK(ds->classes == K, "%s: classes %d", what, ds->classes);
    double ref[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        ref[i] = (float)((small_pixels[i] / 255.0 - MEAN) / STD);
    /* Exact: the loader must compute the same double expression and round it once to float
     * (atol 1e-30 only keeps the tolerance ratio finite; the values are of order 1). */
    float *values = normalised(ds);
    test_compare_f32(what, values, ref, N * H * W, 1e-30, 0);
    free(values);
    /* In memory the pixels stay the bytes of the file. */
    TEST_CHECK(ds->pixels && !ds->values && memcmp(ds->pixels, small_pixels, N * H * W) == 0,
               "%s: pixels not held as the file's bytes", what);
    TEST_CHECK(memcmp(ds->labels, small_labels, N) == 0, "%s: labels differ", what);
}

static void test_load(void) {
    for (int i = 0; i < N * H * W; i++)
        small_pixels[i] = (unsigned char)(i * 37 + 11);
    small_pixels[0] = 0;
    small_pixels[1] = 255;
    for (int i = 0; i < N; i++)
        small_labels[i] = (unsigned char)(i % K);
    bytes_t im = idx3(N, H, W, small_pixels), lb = idx1(N, small_labels);
    poet_dataset ds;

    const char *im_raw = write_fixture("im.idx", &im, im.len, 0);
    const char *lb_raw = write_fixture("lb.idx", &lb, lb.len, 0);
    TEST_OK(poet_data_load(im_raw, lb_raw, K, MEAN, STD, &ds));
    check_small(&ds, "raw IDX pixels");
    TEST_CHECK(strcmp(ds.images_path, im_raw) == 0, "images_path '%s'", ds.images_path);
    float *values = normalised(&ds);
    TEST_CHECK(values[0] == (float)(-MEAN / STD) && values[1] == (float)((1 - MEAN) / STD),
               "0 and 255 map to %g and %g", values[0], values[1]);
    free(values);
    /* Images of another shape than the network's input: one line naming file and both shapes. */
    TEST_OK(poet_data_check_shape(&ds, 1, H, W, "the training images, t"));
    poet_error_clear();
    TEST_CHECK(poet_data_check_shape(&ds, 1, H + 1, W, "the training images, t") == POET_ERR_DATA,
               "another height accepted");
    char want[256];
    snprintf(want, sizeof want,
             "%s: images are 1x%dx%d (CxHxW) but the network's input is 1x%dx%d (the training "
             "images, t)",
             im_raw, H, W, H + 1, W);
    TEST_CHECK(strcmp(poet_error_message(), want) == 0, "message '%s', expected '%s'",
               poet_error_message(), want);
    poet_error_clear();
    poet_data_free(&ds);
    TEST_CHECK(ds.pixels == NULL && ds.labels == NULL, "free leaves dangling pointers");

    const char *im_gz = write_fixture("im.idx.gz", &im, im.len, 1);
    const char *lb_gz = write_fixture("lb.idx.gz", &lb, lb.len, 1);
    TEST_OK(poet_data_load(im_gz, lb_gz, K, MEAN, STD, &ds));
    check_small(&ds, "gzip IDX pixels");
    poet_data_free(&ds);

    /* Bytes after the data are ignored, raw and gzip. */
    put(&im, "trailing", 8);
    put(&lb, "more", 4);
    const char *im_extra = write_fixture("im_extra.idx", &im, im.len, 0);
    const char *lb_extra = write_fixture("lb_extra.idx.gz", &lb, lb.len, 1);
    TEST_OK(poet_data_load(im_extra, lb_extra, K, MEAN, STD, &ds));
    check_small(&ds, "IDX with trailing bytes");
    poet_data_free(&ds);
    free(im.bytes);
    free(lb.bytes);
}

/* ---- errors --------------------------------------------------------------------------------- */

/* One bad input: the load fails with `status`, a one-line message naming `file` and containing
 * `text`, and leaves nothing allocated. */
static void expect_error(const char *what, const char *images, const char *labels, int classes,
                         double std, poet_status status, const char *file, const char *text) {
    poet_dataset ds;
    poet_error_clear();
    poet_status st = poet_data_load(images, labels, classes, MEAN, std, &ds);
    const char *msg = poet_error_message();
    printf("%-28s -> %s\n", what, msg);
    TEST_CHECK(st == status, "%s: status %d, expected %d", what, (int)st, (int)status);
    TEST_CHECK(strstr(msg, text) != NULL, "%s: message '%s' lacks '%s'", what, msg, text);
    TEST_CHECK(strncmp(msg, file, strlen(file)) == 0, "%s: message '%s' does not start with '%s'",
               what, msg, file);
    TEST_CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line", what);
    TEST_CHECK(ds.pixels == NULL && ds.labels == NULL, "%s: buffers left allocated", what);
}

static void test_errors(void) {
    unsigned char pixels[N * H * W] = {0}, labels[N] = {0, 1, 2, 0, 1};
    bytes_t im = idx3(N, H, W, pixels), lb = idx1(N, labels);
    const char *im_ok = write_fixture("err_im.idx", &im, im.len, 0);
    const char *lb_ok = write_fixture("err_lb.idx", &lb, lb.len, 0);
    const char *missing = fixture_path("no_such_file.idx");
    char msg[512];

    expect_error("missing images", missing, lb_ok, K, STD, POET_ERR_DATA, missing,
                 ": cannot open: No such file or directory");
    expect_error("missing labels", im_ok, missing, K, STD, POET_ERR_DATA, missing,
                 ": cannot open: No such file or directory");
    expect_error("directory", fixture_dir, lb_ok, K, STD, POET_ERR_DATA, fixture_dir,
                 ": read failed: Is a directory");
    expect_error("labels as images", lb_ok, lb_ok, K, STD, POET_ERR_DATA, lb_ok,
                 ": bad magic 0x00000801, expected 0x00000803 (IDX3 unsigned-byte images)");
    expect_error("images as labels", im_ok, im_ok, K, STD, POET_ERR_DATA, im_ok,
                 ": bad magic 0x00000803, expected 0x00000801 (IDX1 unsigned-byte labels)");

    const char *empty = write_fixture("empty.idx", &im, 0, 0);
    expect_error("empty file", empty, lb_ok, K, STD, POET_ERR_DATA, empty,
                 ": truncated: expected a 16-byte IDX3 unsigned-byte images header, got 0 bytes");
    const char *short_hdr = write_fixture("short_header.idx.gz", &im, 12, 1);
    expect_error("short header", short_hdr, lb_ok, K, STD, POET_ERR_DATA, short_hdr,
                 ": truncated: expected a 16-byte IDX3 unsigned-byte images header, got 12 bytes");
    const char *short_im = write_fixture("short_pixels.idx", &im, 16 + 50, 0);
    snprintf(msg, sizeof msg, ": truncated: expected %d bytes of pixels, got 50", N * H * W);
    expect_error("short pixels", short_im, lb_ok, K, STD, POET_ERR_DATA, short_im, msg);
    const char *short_im_gz = write_fixture("short_pixels.idx.gz", &im, 16 + 50, 1);
    expect_error("short pixels (gzip)", short_im_gz, lb_ok, K, STD, POET_ERR_DATA, short_im_gz,
                 msg);
    const char *short_lb = write_fixture("short_labels.idx", &lb, 8 + 3, 0);
    expect_error("short labels", im_ok, short_lb, K, STD, POET_ERR_DATA, short_lb,
                 ": truncated: expected 5 bytes of labels, got 3");

    bytes_t lb4 = idx1(N - 1, labels);
    const char *few = write_fixture("four_labels.idx", &lb4, lb4.len, 0);
    snprintf(msg, sizeof msg, ": 4 labels but %s has 5 images", im_ok);
    expect_error("count mismatch", im_ok, few, K, STD, POET_ERR_DATA, few, msg);
    unsigned char bad_labels[N] = {0, 1, 2, 12, 1};
    bytes_t lb_bad = idx1(N, bad_labels);
    const char *bad = write_fixture("label12.idx.gz", &lb_bad, lb_bad.len, 1);
    expect_error("label >= classes", im_ok, bad, 10, STD, POET_ERR_DATA, bad,
                 ": label 12 at index 3 is >= classes (10)");

    static const uint32_t absurd[3][3] = {{0, H, W}, {N, 0, W}, {N, H, 70000}};
    for (int i = 0; i < 3; i++) {
        bytes_t hdr = idx3(absurd[i][0], absurd[i][1], 0, NULL);
        hdr.len -= 4; /* rewrite W, which idx3 had to write as 0 to skip the pixels */
        put_be32(&hdr, absurd[i][2]);
        put(&hdr, pixels, sizeof pixels);
        char name[32];
        snprintf(name, sizeof name, "absurd%d.idx", i);
        const char *path = write_fixture(name, &hdr, hdr.len, 0);
        snprintf(msg, sizeof msg, ": absurd image dimensions %u x %u x %u", (unsigned)absurd[i][0],
                 (unsigned)absurd[i][1], (unsigned)absurd[i][2]);
        expect_error("absurd dimensions", path, lb_ok, K, STD, POET_ERR_DATA, path, msg);
        free(hdr.bytes);
    }

    /* Corrupt gzip: a big incompressible image file, then (a) cut in the middle, (b) an invalid
     * deflate block type right after the 10-byte gzip header, (c) a wrong CRC in the trailer,
     * which only the read past the data notices. */
    enum { BN = 50, BH = 16, BW = 16 };
    unsigned char big_pixels[BN * BH * BW], big_labels[BN] = {0};
    fill_bytes(big_pixels, sizeof big_pixels, 1);
    bytes_t big = idx3(BN, BH, BW, big_pixels), big_lb = idx1(BN, big_labels);
    const char *big_lb_path = write_fixture("big_lb.idx", &big_lb, big_lb.len, 0);
    const char *big_gz = write_fixture("big.idx.gz", &big, big.len, 1);
    poet_dataset ds;
    poet_error_clear();
    TEST_OK(poet_data_load(big_gz, big_lb_path, K, MEAN, STD, &ds));
    poet_data_free(&ds);
    bytes_t gz = read_whole(big_gz);
    TEST_CHECK(gz.len > 1000 && gz.bytes[0] == 0x1f && gz.bytes[1] == 0x8b,
               "gzip fixture of %zu bytes", gz.len);
    const char *cut = write_fixture("cut.idx.gz", &gz, gz.len / 2, 0);
    snprintf(msg, sizeof msg, ": truncated: expected %d bytes of pixels, got ", BN * BH * BW);
    expect_error("gzip cut in half", cut, big_lb_path, K, STD, POET_ERR_DATA, cut, msg);
    expect_error("gzip cut in half (note)", cut, big_lb_path, K, STD, POET_ERR_DATA, cut,
                 "(the gzip stream ends early)");
    gz.bytes[10] = 0xff; /* BFINAL = 1, BTYPE = 3: reserved */
    const char *badblock = write_fixture("bad_block.idx.gz", &gz, gz.len, 0);
    expect_error("corrupt deflate data", badblock, big_lb_path, K, STD, POET_ERR_DATA, badblock,
                 ": corrupt gzip stream: invalid block type");
    free(gz.bytes);
    gz = read_whole(big_gz);
    gz.bytes[gz.len - 8] ^= 0x5a; /* the trailer is CRC-32, then the length */
    const char *badcrc = write_fixture("bad_crc.idx.gz", &gz, gz.len, 0);
    expect_error("wrong gzip CRC", badcrc, big_lb_path, K, STD, POET_ERR_DATA, badcrc,
                 ": corrupt gzip stream: incorrect data check");

    expect_error("classes = 0", im_ok, lb_ok, 0, STD, POET_ERR_CONFIG, lb_ok,
                 "classes must be 1..256");
    expect_error("std = 0", im_ok, lb_ok, K, 0.0, POET_ERR_CONFIG, im_ok, "std > 0");
    poet_error_clear();
    free(gz.bytes);
    free(big.bytes);
    free(big_lb.bytes);
    free(lb_bad.bytes);
    free(lb4.bytes);
    free(im.bytes);
    free(lb.bytes);
}

/* ---- batches -------------------------------------------------------------------------------- */

/* Which data set image a batch entry is: images are all different, so compare whole images. */
static long identify(const poet_dataset *ds, const float *image) {
    size_t size = (size_t)ds->height * ds->width;
    float *all = normalised(ds);
    long found = -1;
    for (long i = 0; i < ds->count && found < 0; i++)
        if (memcmp(all + i * size, image, size * sizeof *image) == 0)
            found = i;
    free(all);
    return found;
}

/* Fills iteration t and returns the data set indices of its B images (checking the labels). */
static void batch_indices(poet_batcher *b, long t, long *idx) {
    const poet_dataset *ds = b->ds;
    size_t size = (size_t)ds->height * ds->width;
    float *images = malloc(sizeof *images * size * b->batch);
    uint8_t labels[64];
    TEST_OK(poet_batcher_fill(b, t, images, labels));
    for (int i = 0; i < b->batch; i++) {
        idx[i] = identify(ds, images + i * size);
        TEST_CHECK(idx[i] >= 0 && labels[i] == ds->labels[idx[i]],
                   "iteration %ld entry %d: image %ld, label %d", t, i, idx[i], labels[i]);
    }
    free(images);
}

static void test_batcher(void) {
    enum { BN = 12, BH = 2, BW = 3, B = 4, BPE = BN / B };
    unsigned char pixels[BN * BH * BW], labels[BN];
    fill_bytes(pixels, sizeof pixels, 2);
    for (int i = 0; i < BN; i++) {
        pixels[i * BH * BW] = (unsigned char)i; /* every image distinct */
        labels[i] = (unsigned char)(i % 10);
    }
    bytes_t im = idx3(BN, BH, BW, pixels), lb = idx1(BN, labels);
    const char *im_path = write_fixture("batch_im.idx", &im, im.len, 0);
    const char *lb_path = write_fixture("batch_lb.idx", &lb, lb.len, 0);
    poet_dataset ds;
    TEST_OK(poet_data_load(im_path, lb_path, 10, 0.5, 0.25, &ds));
    long idx[B];

    /* Without shuffle: file order, the same in every epoch. */
    poet_batcher plain;
    TEST_OK(poet_batcher_init(&plain, &ds, 1, 0, B));
    TEST_CHECK(plain.batches_per_epoch == BPE, "batches_per_epoch %ld", plain.batches_per_epoch);
    int misplaced = 0;
    for (long t = 0; t < 2 * BPE; t++) {
        batch_indices(&plain, t, idx);
        for (int i = 0; i < B; i++)
            misplaced += idx[i] != (t % BPE) * B + i;
    }
    TEST_CHECK(misplaced == 0, "%d entries out of file order without shuffle", misplaced);
    poet_batcher_free(&plain);

    /* With shuffle: iteration t is batch t % BPE of permutation(seed, t / BPE); visit the
     * iterations out of order so the cached permutation is replaced and reused. */
    poet_batcher sh;
    TEST_OK(poet_batcher_init(&sh, &ds, 77, 1, B));
    static const long visit[] = {0, 1, 2, 7, 3, 4, 5, 1, 11, 6, 8, 7};
    int wrong = 0;
    for (size_t v = 0; v < sizeof visit / sizeof visit[0]; v++) {
        long t = visit[v];
        uint32_t perm[BN];
        poet_rng_permutation(77, (uint64_t)(t / BPE), perm, BN);
        batch_indices(&sh, t, idx);
        for (int i = 0; i < B; i++)
            wrong += idx[i] != (long)perm[(t % BPE) * B + i];
    }
    TEST_CHECK(wrong == 0, "%d entries differ from permutation(seed, t / %d)", wrong, BPE);

    /* Every image exactly once per epoch; epochs in different orders. */
    long first_order[BN];
    int epochs_differ = 0;
    for (long e = 0; e < 4; e++) {
        int seen[BN] = {0};
        long order[BN];
        for (long t = e * BPE; t < (e + 1) * BPE; t++) {
            batch_indices(&sh, t, idx);
            for (int i = 0; i < B; i++) {
                order[(t % BPE) * B + i] = idx[i];
                if (idx[i] >= 0)
                    seen[idx[i]]++;
            }
        }
        int not_once = 0;
        for (int i = 0; i < BN; i++)
            not_once += seen[i] != 1;
        TEST_CHECK(not_once == 0, "epoch %ld: %d images not seen exactly once", e, not_once);
        if (e == 0)
            memcpy(first_order, order, sizeof order);
        else
            epochs_differ += memcmp(first_order, order, sizeof order) != 0;
    }
    TEST_CHECK(epochs_differ == 3, "only %d of epochs 1..3 differ from epoch 0", epochs_differ);

    /* A second, independently created batcher (another rank) gives the same batch for the same
     * iteration, whatever it computed before; another seed gives another order. */
    poet_batcher other, reseeded;
    TEST_OK(poet_batcher_init(&other, &ds, 77, 1, B));
    TEST_OK(poet_batcher_init(&reseeded, &ds, 78, 1, B));
    int mismatches = 0, reseed_same = 1;
    for (long t = 13; t >= 0; t -= 3) {
        long a[B], b2[B], c[B];
        batch_indices(&other, t, b2);
        batch_indices(&sh, t, a);
        batch_indices(&reseeded, t, c);
        mismatches += memcmp(a, b2, sizeof a) != 0;
        reseed_same &= memcmp(a, c, sizeof a) == 0;
    }
    TEST_CHECK(mismatches == 0, "%d iterations differ between two batchers with one seed",
               mismatches);
    TEST_CHECK(!reseed_same, "seeds 77 and 78 give the same batches");
    /* NULL skips a buffer. */
    uint8_t lab[B];
    TEST_OK(poet_batcher_fill(&other, 5, NULL, lab));
    batch_indices(&other, 5, idx);
    int lab_wrong = 0;
    for (int i = 0; i < B; i++)
        lab_wrong += idx[i] < 0 || lab[i] != ds.labels[idx[i]];
    TEST_CHECK(lab_wrong == 0, "labels-only fill differs in %d entries", lab_wrong);
    poet_batcher_free(&other);
    poet_batcher_free(&reseeded);
    poet_batcher_free(&sh);

    /* drop_last: 12 images in batches of 5 give 2 batches of distinct images; 13 is too many. */
    poet_batcher five;
    TEST_OK(poet_batcher_init(&five, &ds, 5, 1, 5));
    TEST_CHECK(five.batches_per_epoch == 2, "12 / 5 gives %ld batches", five.batches_per_epoch);
    poet_batcher_free(&five);
    static const int bad_sizes[2] = {BN + 1, 0};
    for (int i = 0; i < 2; i++) {
        poet_batcher tb;
        poet_error_clear();
        poet_status st = poet_batcher_init(&tb, &ds, 5, 1, bad_sizes[i]);
        printf("batch size %-17d -> %s\n", bad_sizes[i], poet_error_message());
        TEST_CHECK(st == POET_ERR_CONFIG && strstr(poet_error_message(), "expected 1..12") &&
                       strstr(poet_error_message(), im_path),
                   "batch size %d: status %d, message '%s'", bad_sizes[i], (int)st,
                   poet_error_message());
        TEST_CHECK(tb.order == NULL, "failed init left an allocation");
    }
    poet_error_clear();

    /* Slices copy [first, first + n) in file order. */
    float slice[3 * BH * BW];
    uint8_t slice_labels[3];
    poet_data_slice(&ds, 7, 3, slice, slice_labels);
    int slice_wrong = 0;
    for (int i = 0; i < 3; i++)
        slice_wrong +=
            identify(&ds, slice + i * BH * BW) != 7 + i || slice_labels[i] != labels[7 + i];
    TEST_CHECK(slice_wrong == 0, "%d slice entries are not images 7..9", slice_wrong);

    poet_data_free(&ds);
    free(im.bytes);
    free(lb.bytes);
}

/* ---- the real Fashion-MNIST ----------------------------------------------------------------- */

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The pixel bytes as stored are summed and compared with a pinned checksum. */
static void check_real(const char *dir, const char *images, const char *labels, long count,
                       const uint8_t *first_labels, uint64_t pixel_sum) {
    char im_path[1024], lb_path[1024];
    snprintf(im_path, sizeof im_path, "%s/%s", dir, images);
    snprintf(lb_path, sizeof lb_path, "%s/%s", dir, labels);
    poet_dataset ds;
    double t0 = seconds();
    TEST_OK(poet_data_load(im_path, lb_path, 10, 0.0, 1.0, &ds));
    double took = seconds() - t0;
    printf("%s: %ld x %d x %d x %d loaded in %.3f s\n", images, ds.count, ds.channels, ds.height,
           ds.width, took);
    TEST_CHECK(ds.count == count && ds.channels == 1 && ds.height == 28 && ds.width == 28,
               "%s: shape %ld x %d x %d x %d", images, ds.count, ds.channels, ds.height, ds.width);
    long per_class[10] = {0};
    for (long i = 0; i < ds.count; i++)
        per_class[ds.labels[i]]++;
    for (int k = 0; k < 10; k++)
        TEST_CHECK(per_class[k] == count / 10, "%s: class %d has %ld images", labels, k,
                   per_class[k]);
    int first_wrong = 0;
    for (int i = 0; i < 20; i++)
        first_wrong += ds.labels[i] != first_labels[i];
    TEST_CHECK(first_wrong == 0, "%s: %d of the first 20 labels differ from the pinned ones",
               labels, first_wrong);
    uint64_t sum = 0;
    size_t n = (size_t)ds.count * 28 * 28;
    for (size_t i = 0; i < n; i++)
        sum += ds.pixels[i];
    TEST_CHECK(sum == pixel_sum, "%s: pixel byte sum %llu, pinned %llu", images,
               (unsigned long long)sum, (unsigned long long)pixel_sum);
    poet_data_free(&ds);
}

static void test_real(const char *dir) {
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir ? dir : "");
    if (!dir || access(probe, R_OK) != 0) {
        printf("SKIP real Fashion-MNIST checks: %s not readable\n",
               dir ? probe : "(no directory given)");
        return;
    }
    /* Read once from the files with an independent script (Python's gzip) and frozen. */
    static const uint8_t train_first[20] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5,
                                            0, 9, 5, 5, 7, 9, 1, 0, 6, 4};
    static const uint8_t test_first[20] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7,
                                           4, 5, 7, 3, 4, 1, 2, 4, 8, 0};
    check_real(dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000, train_first,
               UINT64_C(3431114169));
    check_real(dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000, test_first,
               UINT64_C(573469082));
}

int main(int argc, char **argv) {
    snprintf(fixture_dir, sizeof fixture_dir, "data_fixtures_XXXXXX");
    if (!mkdtemp(fixture_dir)) {
        fprintf(stderr, "FAIL cannot create a fixture directory: %s\n", strerror(errno));
        return 1;
    }
    test_load();
    test_errors();
    test_batcher();
    test_real(argc > 1 ? argv[1] : NULL);
    if (test_failures == 0) { /* keep the fixtures of a failed run for a look */
        for (int i = 0; i < n_created; i++)
            unlink(created[i]);
        rmdir(fixture_dir);
    } else {
        printf("fixtures kept in %s\n", fixture_dir);
    }
    return test_finish("data");
}
