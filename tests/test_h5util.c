/* test_h5util.c — the HDF5 idiom module: attributes of every kind written and read back exactly
 * (and replaced when written twice), poet_h5_close resetting handles of every kind, and readers
 * failing with the caller's status and a message naming file, attribute and object. Serial.
 *
 *   test_h5util DIR    works in DIR (created by the caller)
 */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/h5util.h"
#include "testutil.h"

static void check_message(poet_status st, poet_status want, const char *text, const char *what) {
    TEST_CHECK(st == want, "%s: status %d, expected %d (%s)", what, (int)st, (int)want,
               poet_error_message());
    TEST_CHECK(strstr(poet_error_message(), text) != NULL, "%s: message '%s' lacks '%s'", what,
               poet_error_message(), text);
    poet_error_clear();
}

/* Every attribute kind round trips through a closed and reopened file. */
static void round_trip(const char *path) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    TEST_CHECK(file >= 0, "cannot create %s", path);
    int shape[3] = {1, 28, 28};
    uint64_t seed = 0xfedcba9876543210ull;
    TEST_OK(poet_h5_attr_write_int(file, "i32", H5T_STD_I32LE, -7, path));
    TEST_OK(poet_h5_attr_write_int(file, "i64", H5T_NATIVE_INT64, 1LL << 40, path));
    TEST_OK(poet_h5_attr_write_double(file, "lr", 0.125, path));
    TEST_OK(poet_h5_attr_write_string(file, "name", "first", path));
    TEST_OK(poet_h5_attr_write_string(file, "name", "ünïcode, replaced", path)); /* replaces */
    TEST_OK(poet_h5_attr_write(file, "shape", H5T_STD_I32LE, H5T_NATIVE_INT, 3, shape, path));
    TEST_OK(poet_h5_attr_write(file, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &seed, path));
    TEST_CHECK(poet_h5_close(&file) >= 0 && file == H5I_INVALID_HID, "file close/reset");

    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    TEST_CHECK(file >= 0, "cannot reopen %s", path);
    int i32 = 0, got_shape[3] = {0};
    long long i64 = 0;
    double lr = 0;
    uint64_t got_seed = 0;
    char *name = NULL;
    TEST_OK(poet_h5_attr_read(file, "i32", H5T_NATIVE_INT, 0, &i32, POET_ERR_DATA, path, "/"));
    TEST_OK(poet_h5_attr_read(file, "i64", H5T_NATIVE_LLONG, 0, &i64, POET_ERR_DATA, path, "/"));
    TEST_OK(poet_h5_attr_read(file, "lr", H5T_NATIVE_DOUBLE, 0, &lr, POET_ERR_DATA, path, "/"));
    TEST_OK(
        poet_h5_attr_read(file, "shape", H5T_NATIVE_INT, 3, got_shape, POET_ERR_DATA, path, "/"));
    TEST_OK(
        poet_h5_attr_read(file, "seed", H5T_NATIVE_UINT64, 0, &got_seed, POET_ERR_DATA, path, "/"));
    TEST_OK(poet_h5_attr_read_string(file, "name", &name, POET_ERR_DATA, path, "/"));
    TEST_CHECK(i32 == -7 && i64 == 1LL << 40 && lr == 0.125 && got_seed == seed,
               "numbers: %d %lld %g %llx", i32, i64, lr, (unsigned long long)got_seed);
    TEST_CHECK(got_shape[0] == 1 && got_shape[1] == 28 && got_shape[2] == 28, "shape");
    TEST_CHECK(name && strcmp(name, "ünïcode, replaced") == 0, "string: '%s'", name ? name : "");
    free(name);
    TEST_CHECK(poet_h5_attr_class(file, "i32") == H5T_INTEGER, "class of i32");
    TEST_CHECK(poet_h5_attr_class(file, "lr") == H5T_FLOAT, "class of lr");
    TEST_CHECK(poet_h5_attr_class(file, "name") == H5T_STRING, "class of name");
    TEST_CHECK(poet_h5_attr_class(file, "absent") == H5T_NO_CLASS, "class of a missing one");
    TEST_CHECK(poet_error_message()[0] == '\0', "attr_class recorded '%s'", poet_error_message());

    /* Failures carry the caller's status and name file, attribute and object. */
    char *text = NULL;
    int one = 0, three[3];
    check_message(
        poet_h5_attr_read(file, "absent", H5T_NATIVE_INT, 0, &one, POET_ERR_CHECKPOINT, path, "/"),
        POET_ERR_CHECKPOINT, "attribute absent of / is missing", "missing attribute");
    check_message(
        poet_h5_attr_read(file, "i32", H5T_NATIVE_INT, 3, three, POET_ERR_DATA, path, "/"),
        POET_ERR_DATA, "attribute i32 of / has 1 values, expected 3", "wrong count");
    check_message(poet_h5_attr_read_string(file, "lr", &text, POET_ERR_DATA, path, "/"),
                  POET_ERR_DATA, "attribute lr of / is not a string", "not a string");
    TEST_CHECK(text == NULL, "no string handed out on failure");
    check_message(poet_h5_attr_read_string(file, "absent", &text, POET_ERR_DATA, path, "/"),
                  POET_ERR_DATA, path, "missing string names the file");
    poet_h5_close(&file);
}

/* poet_h5_close closes every kind of handle, resets it, and ignores invalid ones. */
static void close_resets(const char *path) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hsize_t n = 4;
    hid_t ids[6] = {H5Gopen2(file, "/", H5P_DEFAULT),  H5Screate_simple(1, &n, NULL),
                    H5Tcopy(H5T_NATIVE_INT),           H5Pcreate(H5P_DATASET_XFER),
                    H5Aopen(file, "i32", H5P_DEFAULT), file};
    for (int i = 0; i < 6; i++) {
        hid_t id = ids[i];
        TEST_CHECK(id > 0 && H5Iis_valid(id) > 0, "handle %d was not opened", i);
        TEST_CHECK(poet_h5_close(&ids[i]) >= 0, "closing handle %d failed", i);
        TEST_CHECK(ids[i] == H5I_INVALID_HID, "handle %d not reset", i);
        TEST_CHECK(H5Iis_valid(id) <= 0, "handle %d still open", i);
        TEST_CHECK(poet_h5_close(&ids[i]) == 0, "closing handle %d twice is not harmless", i);
    }
    hid_t never = H5I_INVALID_HID;
    TEST_CHECK(poet_h5_close(&never) == 0 && never == H5I_INVALID_HID, "invalid id");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_h5util DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/attributes.h5", argv[1]);
    poet_h5_quiet();
    round_trip(path);
    close_resets(path);
    return test_finish("h5util");
}
