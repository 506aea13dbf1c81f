/* data_cifar.c — the CIFAR-10 and CIFAR-100 binary files.
 *
 * A file is a run of records, each the label byte(s) then 3072 pixel bytes: 1024 red, 1024 green,
 * 1024 blue, each a 32×32 image row-major (so [C, H, W] already). CIFAR-10 records have one label
 * byte (3073 bytes); CIFAR-100 records a coarse then a fine label byte (3074 bytes). Several files
 * (data_batch_1.bin … data_batch_5.bin) form one set, in the sorted order of a glob pattern.
 */
#define _POSIX_C_SOURCE 200809L /* glob, fileno */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "poet/data.h"

#define CIFAR_C 3
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_C * CIFAR_SIDE * CIFAR_SIDE)

/* The size in bytes of the regular file `path`. */
static poet_status file_size(const char *path, long long *size) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return poet_error_set(POET_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return poet_error_set(POET_ERR_DATA, "%s: not a regular file", path);
    *size = (long long)sb.st_size;
    return POET_OK;
}

/* Appends the records of one file: pixels and the chosen label of each. */
static poet_status read_file(const char *path, int label_bytes, int label_at, long n,
                             const char *what, int classes, uint8_t *pixels, uint8_t *labels) {
    poet_status st = POET_OK;
    size_t record = (size_t)label_bytes + CIFAR_PIXELS;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        POET_FAIL(POET_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
    POET_ALLOC(buf, record);
    for (long i = 0; i < n; i++) {
        if (fread(buf, 1, record, f) != record)
            POET_FAIL(POET_ERR_DATA, "%s: read failed at %s record %ld", path, what, i);
        labels[i] = buf[label_at];
        if (labels[i] >= classes)
            POET_FAIL(POET_ERR_DATA, "%s: label %d at index %ld is >= classes (%d)", path,
                      labels[i], i, classes);
        memcpy(pixels + (size_t)i * CIFAR_PIXELS, buf + label_bytes, CIFAR_PIXELS);
    }
fail:
    free(buf);
    if (f)
        fclose(f);
    return st;
}

poet_status poet_data_read_cifar(const poet_data_spec *spec, poet_dataset *ds) {
    poet_status st = POET_OK;
    glob_t files = {0};
    long long *sizes = NULL;
    int label_bytes = spec->cifar == POET_CIFAR_10 ? 1 : 2;
    int label_at = spec->cifar == POET_CIFAR_100_FINE ? 1 : 0;
    const char *what = spec->cifar == POET_CIFAR_10 ? "CIFAR-10" : "CIFAR-100";
    long long record = label_bytes + CIFAR_PIXELS, total = 0;
    int g = glob(spec->images, 0, NULL, &files);
    if (g == GLOB_NOMATCH)
        POET_FAIL(POET_ERR_DATA, "%s: cannot open: no such file (or no file matches the pattern)",
                  spec->images);
    if (g != 0)
        POET_FAIL(POET_ERR_DATA, "%s: cannot list the files of the pattern", spec->images);
    POET_ALLOC(sizes, files.gl_pathc);
    for (size_t i = 0; i < files.gl_pathc; i++) {
        const char *path = files.gl_pathv[i];
        POET_TRY(file_size(path, &sizes[i]));
        if (sizes[i] == 0 || sizes[i] % record != 0)
            POET_FAIL(POET_ERR_DATA,
                      "%s: %lld bytes is not a whole number of %lld-byte %s records (%d label "
                      "byte(s) + %d pixels)%s",
                      path, sizes[i], record, what, label_bytes, CIFAR_PIXELS,
                      sizes[i] % (record + (label_bytes == 1 ? 1 : -1)) == 0 && sizes[i] > 0
                          ? (label_bytes == 1 ? "; a CIFAR-100 file? set data.cifar_labels to "
                                                "\"fine\" or \"coarse\""
                                              : "; a CIFAR-10 file? set data.cifar_labels to "
                                                "\"cifar10\"")
                          : "");
        total += sizes[i] / record;
    }
    if (total > 0x7fffffffLL)
        POET_FAIL(POET_ERR_DATA, "%s: %lld images, more than %d", spec->images, total, 0x7fffffff);
    ds->count = (long)total;
    ds->channels = CIFAR_C;
    ds->height = ds->width = CIFAR_SIDE;
    POET_ALLOC(ds->pixels, (size_t)total * CIFAR_PIXELS);
    POET_ALLOC(ds->labels, (size_t)total);
    long done = 0;
    for (size_t i = 0; i < files.gl_pathc; i++) {
        long n = (long)(sizes[i] / record);
        POET_TRY(read_file(files.gl_pathv[i], label_bytes, label_at, n, what, spec->classes,
                           ds->pixels + (size_t)done * CIFAR_PIXELS, ds->labels + done));
        done += n;
    }
fail:
    free(sizes);
    globfree(&files);
    return st;
}
