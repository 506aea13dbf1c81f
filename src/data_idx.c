/* data_idx.c — IDX image/label files (raw or gzip).
 *
 * IDX layout (all integers big-endian):
 *   images (IDX3): magic 0x00000803, N, H, W (uint32 each), then N·H·W uint8 pixels, row-major;
 *   labels (IDX1): magic 0x00000801, N (uint32), then N uint8 labels.
 * Files are read through zlib's gz* functions, which read gzip and uncompressed files alike.
 * Bytes after the expected data are ignored; missing bytes are an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "poet/data.h"

#define IDX3_MAGIC 0x00000803u
#define IDX1_MAGIC 0x00000801u
#define IDX_MAX_SIDE (1u << 16)            /* H, W: larger is a corrupt header, not an image */
#define IDX_MAX_COUNT 0x7fffffffu          /* N: batch orders are uint32 and counts are long */
#define IDX_MAX_PIXELS (UINT64_C(1) << 36) /* N·H·W: 64 GiB of bytes, surely corrupt */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* zlib's messages start with "<path>: "; our messages already name the file once. */
static const char *gz_message(gzFile f, const char *path, int *errnum) {
    const char *msg = gzerror(f, errnum);
    size_t len = strlen(path);
    if (msg && strncmp(msg, path, len) == 0 && msg[len] == ':' && msg[len + 1] == ' ')
        msg += len + 2;
    return msg && msg[0] ? msg : "unknown zlib error";
}

static poet_status open_idx(const char *path, gzFile *out) {
    errno = 0;
    *out = gzopen(path, "rb");
    if (!*out)
        return poet_error_set(POET_ERR_DATA, "%s: cannot open: %s", path,
                              errno ? strerror(errno) : "out of memory in zlib");
    /* Larger than zlib's 8 KiB default: fewer read() calls for a 26 MB compressed file. */
    gzbuffer(*out, 1u << 17);
    return POET_OK;
}

/* Reads up to `len` bytes; *got says how many arrived. A gzread error (corrupt stream, I/O error)
 * fails; a short read at the end of the file is left to the caller, which knows what was due. */
static poet_status read_some(gzFile f, const char *path, void *buf, size_t len, size_t *got) {
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        unsigned ask = want > (1u << 30) ? (1u << 30) : (unsigned)want; /* gzread takes an int */
        int n = gzread(f, (unsigned char *)buf + *got, ask);
        if (n < 0) {
            int errnum;
            const char *msg = gz_message(f, path, &errnum);
            if (errnum == Z_ERRNO)
                return poet_error_set(POET_ERR_DATA, "%s: read failed: %s", path, msg);
            return poet_error_set(POET_ERR_DATA, "%s: corrupt gzip stream: %s", path, msg);
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return POET_OK;
}

/* After a short read: a gzip stream cut off mid-way is reported by zlib as "unexpected end of
 * file"; both that and a raw file that simply ends are a truncated file. */
static poet_status truncated(gzFile f, const char *path, size_t want, size_t got,
                             const char *what) {
    int errnum;
    gz_message(f, path, &errnum);
    return poet_error_set(POET_ERR_DATA, "%s: truncated: expected %zu bytes of %s, got %zu%s", path,
                          want, what, got,
                          errnum == Z_BUF_ERROR ? " (the gzip stream ends early)" : "");
}

/* The data ended where expected; one more read lets zlib reach the end of a gzip member and check
 * its CRC, so a silently corrupted stream is still caught. Trailing bytes are ignored. */
static poet_status check_trailer(gzFile f, const char *path) {
    unsigned char scratch[4096];
    size_t got;
    return read_some(f, path, scratch, sizeof scratch, &got);
}

/* Reads the magic and `ndims` dimensions; a wrong magic is reported before a short header, since
 * a short file of another kind is better described by its magic. */
static poet_status read_header(gzFile f, const char *path, uint32_t magic, const char *kind,
                               int ndims, uint32_t *dims) {
    unsigned char hdr[16];
    size_t len = 4 + 4 * (size_t)ndims, got;
    poet_status st = read_some(f, path, hdr, len, &got);
    if (st != POET_OK)
        return st;
    if (got >= 4 && be32(hdr) != magic)
        return poet_error_set(POET_ERR_DATA, "%s: bad magic 0x%08x, expected 0x%08x (%s)", path,
                              (unsigned)be32(hdr), (unsigned)magic, kind);
    if (got < len)
        return poet_error_set(POET_ERR_DATA,
                              "%s: truncated: expected a %zu-byte %s header, got %zu bytes", path,
                              len, kind, got);
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    return POET_OK;
}

/* Pixels [N, 1, H, W], read as they are stored (normalised when a batch is built). */
static poet_status read_pixels(gzFile f, const char *path, uint8_t *pixels, size_t count) {
    size_t got;
    poet_status st = read_some(f, path, pixels, count, &got);
    if (st == POET_OK && got < count)
        st = truncated(f, path, count, got, "pixels");
    return st;
}

static poet_status load_images(const char *path, poet_dataset *ds) {
    poet_status st = POET_OK;
    gzFile f = NULL;
    uint32_t dims[3];
    POET_TRY(open_idx(path, &f));
    POET_TRY(read_header(f, path, IDX3_MAGIC, "IDX3 unsigned-byte images", 3, dims));
    uint64_t pixels = (uint64_t)dims[0] * dims[1] * dims[2];
    if (dims[0] == 0 || dims[0] > IDX_MAX_COUNT || dims[1] == 0 || dims[1] > IDX_MAX_SIDE ||
        dims[2] == 0 || dims[2] > IDX_MAX_SIDE || pixels > IDX_MAX_PIXELS)
        POET_FAIL(POET_ERR_DATA,
                  "%s: absurd image dimensions %u x %u x %u (expected 1..%u images of 1..%u x "
                  "1..%u pixels): not an image file or a corrupt header",
                  path, (unsigned)dims[0], (unsigned)dims[1], (unsigned)dims[2], IDX_MAX_COUNT,
                  IDX_MAX_SIDE, IDX_MAX_SIDE);
    ds->count = (long)dims[0];
    ds->channels = 1;
    ds->height = (int)dims[1];
    ds->width = (int)dims[2];

    POET_ALLOC(ds->pixels, pixels);
    POET_TRY(read_pixels(f, path, ds->pixels, (size_t)pixels));
    POET_TRY(check_trailer(f, path));
fail:
    if (f)
        gzclose(f);
    return st;
}

static poet_status load_labels(const char *path, const char *images_path, int classes,
                               poet_dataset *ds) {
    poet_status st = POET_OK;
    gzFile f = NULL;
    uint32_t n = 0;
    size_t got;
    POET_TRY(open_idx(path, &f));
    POET_TRY(read_header(f, path, IDX1_MAGIC, "IDX1 unsigned-byte labels", 1, &n));
    /* Checked before reading, so a corrupt count never sizes an allocation. */
    if ((long)n != ds->count)
        POET_FAIL(POET_ERR_DATA, "%s: %lu labels but %s has %ld images", path, (unsigned long)n,
                  images_path, ds->count);
    POET_ALLOC(ds->labels, n);
    POET_TRY(read_some(f, path, ds->labels, n, &got));
    if (got < n) {
        st = truncated(f, path, n, got, "labels");
        goto fail;
    }
    POET_TRY(check_trailer(f, path));
    POET_TRY(poet_data_check_labels(ds->labels, (long)n, classes, path));
fail:
    if (f)
        gzclose(f);
    return st;
}

poet_status poet_data_read_idx(const poet_data_spec *spec, poet_dataset *ds) {
    poet_status st = POET_OK;
    POET_TRY(load_images(spec->images, ds));
    if (spec->labels)
        POET_TRY(load_labels(spec->labels, spec->images, spec->classes, ds));
    else /* images only (poet predict without --labels): every label 0 */
        POET_ALLOC(ds->labels, (size_t)ds->count);
fail:
    return st;
}

/* The first four bytes (after gzip decoding) are an IDX magic: 0x0000 then the type and rank. */
int poet_data_is_idx(const char *path) {
    gzFile f = gzopen(path, "rb");
    unsigned char m[4];
    int ok = f && gzread(f, m, 4) == 4 && m[0] == 0 && m[1] == 0 && m[2] == 0x08 &&
             (m[3] == 1 || m[3] == 3);
    if (f)
        gzclose(f);
    return ok;
}
