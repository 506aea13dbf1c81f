/* test_checkpoint.c — checkpoints: a known pattern written and read back byte for byte (with
 * another stack layout, and in the elastic mode with another rank count), every documented field,
 * pruning and `latest`, every kind of bad checkpoint, resume past a corrupt newest file, failed
 * writes. Runs with any rank count: test_checkpoint             the whole suite, in
 * ./ckpt-test-p<ranks> test_checkpoint write DIR   writes the elastic fixture DIR/ckpt-00000007.h5
 *   test_checkpoint read DIR    resumes from DIR with this rank count and checks the pattern
 *   test_checkpoint identity DIR   a checkpoint missing one identity field (config, format
 *                               version, a member's architecture or arch_index) or holding an empty
 *                               config is refused naming it; leaves DIR/no-<field>.h5 for the CLI
 *                               test (poet inspect exits 10)
 *   test_checkpoint nonfinite DIR  a NaN or infinity in parameters or momentum: never written
 *                               (numerical error naming member and tensor), never read or
 *                               inspected as good even when its checksum matches
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "poet/checkpoint.h"
#include "testutil.h"

#define M 5
#define ELASTIC_ITERATION 7

static MPI_Comm comm = MPI_COMM_WORLD;
static int rank, ranks;
static const poet_shape input = {1, 28, 28};

/* ---------------------------------------------------------------------------------------------
 * Ensembles with a known pattern
 * ------------------------------------------------------------------------------------------- */

/* M members; member 3 has a narrower first convolution, so architectures differ between members. */
static void make_config(poet_config *cfg, const char *dir, int fused) {
    poet_config_defaults(cfg);
    cfg->members = M;
    cfg->n_archs = 2;
    cfg->archs[1] = cfg->archs[0];
    snprintf(cfg->archs[1].name, sizeof cfg->archs[1].name, "custom-1");
    cfg->archs[1].layers[0].out = 16;
    cfg->member_arch[3] = 1;
    cfg->fused = fused;
    cfg->checkpoint_keep = 2;
    snprintf(cfg->checkpoint_dir, sizeof cfg->checkpoint_dir, "%s", dir);
}

static void create(const poet_config *cfg, poet_ensemble *e) {
    TEST_OK(poet_ensemble_create(cfg, rank, ranks, input, 4, 1, 4, NULL, NULL, e));
}

/* Value k of member j's params (kind 0) or momentum (kind 1) in the pattern `salt`: distinct for
 * every (salt, member, kind, k), exactly representable, never the PyTorch-style initial value. */
static float pattern(long salt, int j, int kind, size_t k) {
    return (float)((double)((k * 7919 + (size_t)j * 104729 + (size_t)kind * 1299709 +
                             (size_t)salt * 15485863) %
                            2000003) /
                       1048576.0 -
                   0.9);
}

static size_t member_params(const poet_ensemble *e, int j) {
    return e->plans[e->cfg->member_arch[j]].param_count;
}

/* Member j's [params N][momentum N] in the pattern. */
static float *pattern_block(const poet_ensemble *e, long salt, int j) {
    size_t n = member_params(e, j);
    float *block = malloc(2 * n * sizeof *block);
    if (!block)
        exit(1);
    for (int kind = 0; kind < 2; kind++)
        for (size_t k = 0; k < n; k++)
            block[kind * n + k] = pattern(salt, j, kind, k);
    return block;
}

static void fill(poet_ensemble *e, long salt) {
    for (int i = 0; i < e->n_local; i++) {
        float *block = pattern_block(e, salt, e->local_ids[i]);
        poet_ensemble_member_set(e, i, e->params, block);
        poet_ensemble_member_set(e, i, e->velocity, block + member_params(e, e->local_ids[i]));
        free(block);
    }
}

/* Every owned member's params and momentum equal the pattern byte for byte; prints the largest
 * difference either way. */
static void check_pattern(const poet_ensemble *e, long salt, const char *what) {
    for (int i = 0; i < e->n_local; i++) {
        int j = e->local_ids[i];
        size_t n = member_params(e, j);
        float *want = pattern_block(e, salt, j), *got = malloc(2 * n * sizeof *got);
        double *ref = malloc(2 * n * sizeof *ref);
        if (!got || !ref)
            exit(1);
        poet_ensemble_member_get(e, i, e->params, got);
        poet_ensemble_member_get(e, i, e->velocity, got + n);
        for (size_t k = 0; k < 2 * n; k++)
            ref[k] = want[k];
        char label[128];
        snprintf(label, sizeof label, "%s: rank %d member %d", what, rank, j);
        test_compare_f32(label, got, ref, 2 * n, 1e-300, 0); /* exact; atol > 0 avoids 0/0 */
        TEST_CHECK(memcmp(got, want, 2 * n * sizeof *got) == 0, "%s: bytes differ", label);
        free(want);
        free(got);
        free(ref);
    }
}

static uint32_t pattern_crc(const poet_ensemble *e, long salt, int j) {
    float *block = pattern_block(e, salt, j);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)block,
                                   (uInt)(2 * member_params(e, j) * sizeof(float)));
    free(block);
    return crc;
}

/* ---------------------------------------------------------------------------------------------
 * Files (rank 0 changes them; a barrier follows)
 * ------------------------------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) {
    if (rank == 0)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    MPI_Barrier(comm);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void read_text(const char *path, char *out, size_t size) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    if (rank == 0) {
        FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
        char buf[65536];
        size_t n;
        TEST_CHECK(in && out, "cannot copy %s to %s", from, to);
        while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
            fwrite(buf, 1, n, out);
        if (in)
            fclose(in);
        if (out)
            fclose(out);
    }
    MPI_Barrier(comm);
}

/* Flips one bit in the middle of dataset `dset`'s raw data, where only the checksum can notice. */
static void flip_byte(const char *path, const char *dset) {
    if (rank == 0) {
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(file, dset, H5P_DEFAULT);
        haddr_t offset = H5Dget_offset(d);
        hsize_t bytes = H5Dget_storage_size(d);
        H5Dclose(d);
        H5Fclose(file);
        TEST_CHECK(offset != HADDR_UNDEF && bytes > 8, "no raw data for %s in %s", dset, path);
        FILE *f = fopen(path, "r+b");
        unsigned char byte = 0;
        TEST_CHECK(f, "cannot open %s", path);
        if (f) {
            long at = (long)(offset + bytes / 2);
            fseek(f, at, SEEK_SET);
            TEST_CHECK(fread(&byte, 1, 1, f) == 1, "cannot read %s", path);
            byte ^= 0x10;
            fseek(f, at, SEEK_SET);
            fwrite(&byte, 1, 1, f);
            fclose(f);
        }
    }
    MPI_Barrier(comm);
}

static void delete_object(const char *path, const char *object) {
    if (rank == 0) {
        hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        TEST_CHECK(file >= 0 && H5Ldelete(file, object, H5P_DEFAULT) >= 0, "cannot delete %s in %s",
                   object, path);
        if (file >= 0)
            H5Fclose(file);
    }
    MPI_Barrier(comm);
}

static void truncate_half(const char *path) {
    if (rank == 0) {
        struct stat sb;
        TEST_CHECK(stat(path, &sb) == 0 && truncate(path, sb.st_size / 2) == 0,
                   "cannot truncate %s", path);
    }
    MPI_Barrier(comm);
}

/* The regular files of `dir` with their sizes, sorted: "name:size " ... (to prove nothing changed).
 */
static void snapshot(const char *dir, char *out, size_t size) {
    char cmd[POET_PATH_MAX + 64];
    out[0] = '\0';
    if (rank == 0) {
        snprintf(cmd, sizeof cmd, "cd '%s' && find . -maxdepth 1 -type f -printf '%%f:%%s ' | sort",
                 dir);
        FILE *p = popen(cmd, "r");
        if (p) {
            size_t n = fread(out, 1, size - 1, p);
            out[n] = '\0';
            pclose(p);
        }
    }
    MPI_Bcast(out, (int)size, MPI_CHAR, 0, comm);
}

/* ---------------------------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------------------------- */

/* `st` must be `want` on this rank with `text` in the message; the message is shown once. */
static void expect_error(poet_status st, poet_status want, const char *text, const char *what) {
    const char *msg = poet_error_message();
    TEST_CHECK(st == want, "%s: status %d, expected %d (%s)", what, (int)st, (int)want, msg);
    TEST_CHECK(strstr(msg, text) != NULL, "%s: message lacks '%s': %s", what, text, msg);
    TEST_CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line", what);
    if (rank == 0)
        printf("%-28s -> %s\n", what, msg);
    poet_error_clear();
}

static char *string_attr(hid_t obj, const char *name) {
    char *value = NULL, *copy;
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8); /* HDF5 does not convert between ASCII and UTF-8 */
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0 || H5Aread(attr, type, &value) < 0 || !value) {
        TEST_CHECK(0, "string attribute %s missing", name);
        copy = strdup("");
    } else {
        copy = strdup(value);
        H5free_memory(value);
    }
    if (attr >= 0)
        H5Aclose(attr);
    H5Tclose(type);
    return copy;
}

static long long int_attr(hid_t obj, const char *name, hid_t type, size_t n, long long *values) {
    long long scratch[4] = {0};
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    TEST_CHECK(attr >= 0 && H5Aread(attr, type, values ? (void *)values : scratch) >= 0,
               "attribute %s missing or not an integer", name);
    if (attr >= 0) {
        hid_t space = H5Aget_space(attr);
        hssize_t count = H5Sget_simple_extent_npoints(space);
        TEST_CHECK(count == (hssize_t)(n ? n : 1), "attribute %s has %lld values", name,
                   (long long)count);
        H5Sclose(space);
        H5Aclose(attr);
    }
    return values ? values[0] : scratch[0];
}

/* Collects link names of a group in creation order. */
typedef struct {
    int n;
    char names[64][32];
} link_names;

static herr_t collect_name(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group, (void)info;
    link_names *l = data;
    if (l->n < 64)
        snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
    return 0;
}

/* Opens a checkpoint with plain serial HDF5 and checks every field docs/checkpoint-format.md
 * lists. */
static void check_fields(const char *path, const poet_config *cfg, const poet_ensemble *e,
                         const poet_train_position *pos, long salt) {
    if (rank != 0)
        return;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    TEST_CHECK(file >= 0, "cannot open %s", path);
    if (file < 0)
        return;
    hid_t i64 = H5T_NATIVE_LLONG;
    TEST_CHECK(int_attr(file, "format_version", i64, 0, NULL) == POET_CHECKPOINT_FORMAT_VERSION,
               "format_version");
    char *s = string_attr(file, "poet_version");
    TEST_CHECK(strcmp(s, POET_VERSION) == 0, "poet_version %s", s);
    free(s);
    TEST_CHECK(int_attr(file, "iteration", i64, 0, NULL) == pos->iteration, "iteration");
    TEST_CHECK(int_attr(file, "epoch", i64, 0, NULL) == pos->epoch, "epoch");
    TEST_CHECK(int_attr(file, "position", i64, 0, NULL) == pos->position, "position");
    TEST_CHECK(int_attr(file, "total_iterations", i64, 0, NULL) == pos->total_iterations,
               "total_iterations");
    unsigned long long seed = 0;
    hid_t a = H5Aopen(file, "seed", H5P_DEFAULT);
    TEST_CHECK(a >= 0 && H5Aread(a, H5T_NATIVE_ULLONG, &seed) >= 0 && seed == cfg->seed,
               "seed %llu", seed);
    if (a >= 0)
        H5Aclose(a);
    s = string_attr(file, "rng");
    TEST_CHECK(strstr(s, "SplitMix64") && strstr(s, "f(seed, epoch)"), "rng %s", s);
    free(s);
    TEST_CHECK(int_attr(file, "members", i64, 0, NULL) == M, "members");
    TEST_CHECK(int_attr(file, "ranks_written", i64, 0, NULL) == ranks, "ranks_written");
    long long shape[3] = {0};
    int_attr(file, "input_shape", i64, 3, shape);
    TEST_CHECK(shape[0] == 1 && shape[1] == 28 && shape[2] == 28, "input_shape %lldx%lldx%lld",
               shape[0], shape[1], shape[2]);
    s = string_attr(file, "config");
    poet_config *stored = calloc(1, sizeof *stored);
    TEST_CHECK(stored && poet_config_parse(s, "stored", stored) == POET_OK &&
                   stored->members == M && stored->member_arch[3] == 1 &&
                   poet_arch_equal(&stored->archs[1], &cfg->archs[1]),
               "config does not parse back to the ensemble: %s", poet_error_message());
    free(stored);
    free(s);

    for (int j = 0; j < M; j++) {
        char name[64], want[512];
        const poet_arch_plan *plan = &e->plans[cfg->member_arch[j]];
        snprintf(name, sizeof name, "/members/%04d", j);
        hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
        TEST_CHECK(g >= 0, "group %s", name);
        if (g < 0)
            continue;
        s = string_attr(g, "architecture");
        poet_arch_describe(&cfg->archs[cfg->member_arch[j]], want, sizeof want);
        TEST_CHECK(strcmp(s, want) == 0, "%s architecture '%s', expected '%s'", name, s, want);
        free(s);
        TEST_CHECK(int_attr(g, "arch_index", i64, 0, NULL) == cfg->member_arch[j], "%s arch_index",
                   name);
        /* Tensors iterate in member layout order (what h5py shows, what the checksum covers). */
        link_names order = {0};
        hsize_t at = 0;
        H5Literate_by_name(g, "params", H5_INDEX_CRT_ORDER, H5_ITER_INC, &at, collect_name, &order,
                           H5P_DEFAULT);
        int same_order = order.n == plan->n_tensors;
        for (int t = 0; same_order && t < plan->n_tensors; t++)
            same_order = strcmp(order.names[t], plan->tensors[t].name) == 0;
        TEST_CHECK(same_order, "%s/params: creation order is not the member layout order", name);
        H5Gclose(g);
        for (int kind = 0; kind < 2; kind++)
            for (int t = 0; t < plan->n_tensors; t++) {
                const poet_tensor_info *ti = &plan->tensors[t];
                char dname[128];
                snprintf(dname, sizeof dname, "%s/%s/%s", name, kind ? "momentum" : "params",
                         ti->name);
                hid_t d = H5Dopen2(file, dname, H5P_DEFAULT);
                TEST_CHECK(d >= 0, "dataset %s", dname);
                if (d < 0)
                    continue;
                hid_t space = H5Dget_space(d), type = H5Dget_type(d);
                hsize_t dims[8] = {0};
                int nd = H5Sget_simple_extent_dims(space, dims, NULL);
                int same = nd == ti->ndims;
                for (int k = 0; same && k < nd; k++)
                    same = dims[k] == (hsize_t)ti->dims[k];
                TEST_CHECK(same, "%s shape differs from the plan", dname);
                TEST_CHECK(H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4,
                           "%s is not float32", dname);
                /* One tensor's values, read independently of poet's reader. */
                if (kind == 1 && t == plan->n_tensors - 1) {
                    float *v = malloc(ti->count * sizeof *v);
                    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
                    int ok = 1;
                    for (size_t k = 0; k < ti->count; k++)
                        ok = ok && v[k] == pattern(salt, j, 1, ti->offset + k);
                    TEST_CHECK(ok, "%s values differ from the pattern", dname);
                    free(v);
                }
                H5Tclose(type);
                H5Sclose(space);
                H5Dclose(d);
            }
    }
    hid_t d = H5Dopen2(file, "/checksums", H5P_DEFAULT);
    uint32_t crc[M] = {0};
    TEST_CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, crc) >= 0,
               "/checksums");
    for (int j = 0; j < M; j++)
        TEST_CHECK(crc[j] == pattern_crc(e, salt, j),
                   "checksum of member %d: 0x%08x, expected 0x%08x", j, crc[j],
                   pattern_crc(e, salt, j));
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(file);
}

/* Rank 0 inspects `path`; returns its status and whether the output has `ok` OK and `bad` BAD
 * member lines. */
static void check_inspect(const char *path, poet_status want, int ok, int bad) {
    if (rank != 0)
        return;
    FILE *out = tmpfile();
    poet_status st = poet_checkpoint_inspect(path, out);
    char text[8192], line[1024];
    int n_ok = 0, n_bad = 0;
    rewind(out);
    text[0] = '\0';
    while (fgets(line, sizeof line, out)) {
        strncat(text, line, sizeof text - strlen(text) - 1);
        n_ok += strstr(line, " OK ") != NULL;
        n_bad += strstr(line, " BAD ") != NULL;
    }
    fclose(out);
    printf("inspect %s:\n%s", path, text);
    TEST_CHECK(st == want, "inspect %s: status %d, expected %d: %s", path, (int)st, (int)want,
               poet_error_message());
    TEST_CHECK(n_ok == ok && n_bad == bad, "inspect %s: %d OK and %d BAD lines, expected %d and %d",
               path, n_ok, n_bad, ok, bad);
    TEST_CHECK(strstr(text, "iteration 300 of 1000") && strstr(text, "seed 42"),
               "inspect %s: metadata lines missing", path);
    poet_error_clear();
}

/* ---------------------------------------------------------------------------------------------
 * The suite
 * ------------------------------------------------------------------------------------------- */

static poet_config cfg, cfg_unfused, cfg_fewer, cfg_other_arch, cfg_bad_dir;

static void join(char *out, const char *dir, const char *name) {
    if (snprintf(out, POET_PATH_MAX, "%s/%s", dir, name) >= POET_PATH_MAX) {
        fprintf(stderr, "FAIL path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

static poet_status write_at(const poet_config *c, poet_ensemble *e, long iteration, char *path) {
    poet_train_position pos = {iteration, iteration / 200, iteration % 200, 1000};
    fill(e, iteration);
    return poet_checkpoint_write(comm, c, e, &pos, path, POET_PATH_MAX);
}

static void suite(void) {
    char dir[64], path[POET_PATH_MAX], want[POET_PATH_MAX], text[4096], latest[POET_PATH_MAX];
    snprintf(dir, sizeof dir, "ckpt-test-p%d", ranks);
    join(latest, dir, "latest");
    remove_tree(dir);
    make_config(&cfg, dir, 1);
    make_config(&cfg_unfused, dir, 0); /* another stack layout: fusion must not matter */
    poet_ensemble e, r;
    create(&cfg, &e);
    create(&cfg_unfused, &r);

    /* Round trip, every field, `latest`. */
    poet_train_position pos = {100, 0, 100, 1000}, got = {0};
    TEST_OK(write_at(&cfg, &e, 100, path));
    join(want, dir, "ckpt-00000100.h5");
    TEST_CHECK(strcmp(path, want) == 0, "path_out %s, expected %s", path, want);
    read_text(latest, text, sizeof text);
    TEST_CHECK(strcmp(text, "ckpt-00000100.h5\n") == 0, "latest holds '%s'", text);
    check_fields(path, &cfg, &e, &pos, 100);
    TEST_OK(poet_checkpoint_read(comm, path, &cfg_unfused, &r, &got));
    TEST_CHECK(got.iteration == 100 && got.epoch == 0 && got.position == 100 &&
                   got.total_iterations == 1000,
               "position read back %ld/%ld/%ld/%ld", got.iteration, got.epoch, got.position,
               got.total_iterations);
    check_pattern(&r, 100, "round trip");

    /* keep = 2: the third write prunes the first. */
    TEST_OK(write_at(&cfg, &e, 200, path));
    TEST_OK(write_at(&cfg, &e, 300, path));
    char files[4096];
    snapshot(dir, files, sizeof files);
    TEST_CHECK(strstr(files, "ckpt-00000200.h5:") && strstr(files, "ckpt-00000300.h5:") &&
                   !strstr(files, "ckpt-00000100.h5") && !strstr(files, ".tmp"),
               "after pruning the directory holds: %s", files);
    read_text(latest, text, sizeof text);
    TEST_CHECK(strcmp(text, "ckpt-00000300.h5\n") == 0, "latest holds '%s'", text);
    check_inspect(path, POET_OK, M, 0);

    /* Bad checkpoints: each a clear checkpoint error, and the ensemble left as it was. */
    char bad[POET_PATH_MAX];
    join(bad, dir, "bad-truncated.h5");
    copy_file(path, bad);
    truncate_half(bad);
    expect_error(poet_checkpoint_read(comm, bad, &cfg_unfused, &r, &got), POET_ERR_CHECKPOINT,
                 "bad-truncated.h5: cannot open as HDF5", "truncated file");
    join(bad, dir, "bad-flipped.h5");
    copy_file(path, bad);
    flip_byte(bad, "/members/0003/params/conv1.weight");
    expect_error(poet_checkpoint_read(comm, bad, &cfg_unfused, &r, &got), POET_ERR_CHECKPOINT,
                 "bad-flipped.h5: member 3 checksum mismatch", "flipped byte");
    check_inspect(bad, POET_ERR_CHECKPOINT, M - 1, 1);
    join(bad, dir, "bad-deleted.h5");
    copy_file(path, bad);
    delete_object(bad, "/members/0001/momentum/fc2.bias");
    expect_error(poet_checkpoint_read(comm, bad, &cfg_unfused, &r, &got), POET_ERR_CHECKPOINT,
                 "bad-deleted.h5: dataset /members/0001/momentum/fc2.bias is missing",
                 "deleted dataset");
    join(bad, dir, "no-such-file.h5");
    expect_error(poet_checkpoint_read(comm, bad, &cfg_unfused, &r, &got), POET_ERR_CHECKPOINT,
                 "no-such-file.h5: cannot open", "missing file");
    check_pattern(&r, 100, "unchanged after failed reads");

    make_config(&cfg_fewer, dir, 1);
    cfg_fewer.members = M - 1;
    poet_ensemble fewer;
    create(&cfg_fewer, &fewer);
    expect_error(poet_checkpoint_read(comm, path, &cfg_fewer, &fewer, &got), POET_ERR_CHECKPOINT,
                 "ckpt-00000300.h5: checkpoint has 5 members, config has 4", "other member count");
    poet_ensemble_destroy(&fewer);
    make_config(&cfg_other_arch, dir, 1);
    cfg_other_arch.member_arch[3] = 0;
    poet_ensemble other;
    create(&cfg_other_arch, &other);
    expect_error(
        poet_checkpoint_read(comm, path, &cfg_other_arch, &other, &got), POET_ERR_CHECKPOINT,
        "ckpt-00000300.h5: member 3 architecture differs: checkpoint has conv(16,k3,s2) relu",
        "other architecture");
    poet_ensemble_destroy(&other);

    /* Resume: the newest is corrupt (in a member the last rank owns), the previous one is taken. */
    int found = 0;
    TEST_OK(poet_checkpoint_resume(comm, &cfg_unfused, &r, &got, &found, path, sizeof path));
    TEST_CHECK(found && got.iteration == 300, "resume took %s at %ld", path, got.iteration);
    check_pattern(&r, 300, "resumed from the newest");
    join(want, dir, "ckpt-00000300.h5");
    flip_byte(want, "/members/0004/momentum/fc1.weight");
    TEST_OK(poet_checkpoint_resume(comm, &cfg_unfused, &r, &got, &found, path, sizeof path));
    join(want, dir, "ckpt-00000200.h5");
    TEST_CHECK(found && strcmp(path, want) == 0 && got.iteration == 200,
               "resume after corruption took %s at %ld (found %d), expected %s", path,
               got.iteration, found, want);
    check_pattern(&r, 200, "resumed past a corrupt newest");
    poet_config cfg_empty;
    make_config(&cfg_empty, "ckpt-test-nothing-here", 0);
    TEST_OK(poet_checkpoint_resume(comm, &cfg_empty, &r, &got, &found, path, sizeof path));
    TEST_CHECK(!found, "resume found a checkpoint in an empty directory: %s", path);

    /* Failed writes leave every existing checkpoint and `latest` as they were. */
    char before[4096], after[4096];
    snapshot(dir, before, sizeof before);
    make_config(&cfg_bad_dir, dir, 1);
    snprintf(cfg_bad_dir.checkpoint_dir, sizeof cfg_bad_dir.checkpoint_dir, "%s/latest/sub", dir);
    expect_error(write_at(&cfg_bad_dir, &e, 400, path), POET_ERR_IO,
                 "cannot create checkpoint directory", "directory under a file");
    char blocker[POET_PATH_MAX];
    join(blocker, dir, "ckpt-00000400.h5");
    if (rank == 0) {
        mkdir(blocker, 0777);
        join(want, blocker, "occupied");
        mkdir(want, 0777);
    }
    MPI_Barrier(comm);
    expect_error(write_at(&cfg, &e, 400, path), POET_ERR_IO, "cannot rename",
                 "rename onto a directory");
    join(want, dir, "ckpt-00000400.h5.tmp");
    TEST_CHECK(!exists(want), "%s left behind after a failed write", want);
    snapshot(dir, after, sizeof after);
    TEST_CHECK(strcmp(before, after) == 0,
               "failed writes changed the directory:\n  before %s\n  after  %s", before, after);
    read_text(latest, text, sizeof text);
    TEST_CHECK(strcmp(text, "ckpt-00000300.h5\n") == 0, "latest holds '%s'", text);

    poet_ensemble_destroy(&r);
    poet_ensemble_destroy(&e);
    int failures = 0; /* every rank must take the same branch: remove_tree is collective */
    MPI_Allreduce(&test_failures, &failures, 1, MPI_INT, MPI_SUM, comm);
    if (!failures)
        remove_tree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Elastic: written by one rank count, read by another
 * ------------------------------------------------------------------------------------------- */

static void elastic_write(const char *dir) {
    char path[POET_PATH_MAX];
    poet_ensemble e;
    remove_tree(dir);
    make_config(&cfg, dir, 1);
    create(&cfg, &e);
    TEST_OK(write_at(&cfg, &e, ELASTIC_ITERATION, path));
    poet_ensemble_destroy(&e);
}

static void elastic_read(const char *dir) {
    char path[POET_PATH_MAX];
    poet_ensemble r;
    poet_train_position got = {0};
    int found = 0;
    make_config(&cfg_unfused, dir, 0);
    create(&cfg_unfused, &r);
    TEST_OK(poet_checkpoint_resume(comm, &cfg_unfused, &r, &got, &found, path, sizeof path));
    TEST_CHECK(found && got.iteration == ELASTIC_ITERATION, "found %d, iteration %ld", found,
               got.iteration);
    check_pattern(&r, ELASTIC_ITERATION, "elastic");
    poet_ensemble_destroy(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Non-finite weights
 * ------------------------------------------------------------------------------------------- */

static const poet_tensor_info *tensor_named(const poet_ensemble *e, int j, const char *name) {
    const poet_arch_plan *plan = &e->plans[e->cfg->member_arch[j]];
    for (int t = 0; t < plan->n_tensors; t++)
        if (strcmp(plan->tensors[t].name, name) == 0)
            return &plan->tensors[t];
    fprintf(stderr, "FAIL no tensor %s\n", name);
    exit(1);
}

/* The pattern `salt` everywhere, but member j's value `at` (in member layout) is `value`. */
static void fill_with(poet_ensemble *e, long salt, int j, size_t at, float value) {
    fill(e, salt);
    for (int i = 0; i < e->n_local; i++)
        if (e->local_ids[i] == j) {
            float *block = pattern_block(e, salt, j);
            block[at] = value;
            poet_ensemble_member_set(e, i, e->params, block);
            poet_ensemble_member_set(e, i, e->velocity, block + member_params(e, j));
            free(block);
        }
}

/* Rank 0 sets element `at` of dataset `dset` to `value` and /checksums[j] to `crc`: a file whose
 * checksums agree with its non-finite contents. */
static void poke(const char *path, const char *dset, hsize_t at, float value, int j, uint32_t crc) {
    if (rank == 0) {
        hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hsize_t one = 1, where[2] = {at, (hsize_t)j};
        hid_t mem = H5Screate_simple(1, &one, NULL);
        for (int k = 0; k < 2; k++) {
            hid_t d = H5Dopen2(file, k ? "/checksums" : dset, H5P_DEFAULT);
            hid_t space = H5Dget_space(d);
            H5Sselect_elements(space, H5S_SELECT_SET, 1, &where[k]);
            herr_t w = k ? H5Dwrite(d, H5T_NATIVE_UINT32, mem, space, H5P_DEFAULT, &crc)
                         : H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &value);
            TEST_CHECK(w >= 0, "cannot write %s in %s", k ? "/checksums" : dset, path);
            H5Sclose(space);
            H5Dclose(d);
        }
        H5Sclose(mem);
        H5Fclose(file);
    }
    MPI_Barrier(comm);
}

static void nonfinite(const char *dir) {
    char path[POET_PATH_MAX], bad[POET_PATH_MAX], before[4096], after[4096];
    poet_ensemble e, r;
    poet_train_position pos = {400, 2, 0, 1000}, got = {0};
    remove_tree(dir);
    make_config(&cfg, dir, 1);
    create(&cfg, &e);
    create(&cfg, &r);
    TEST_OK(write_at(&cfg, &e, 300, path));
    snapshot(dir, before, sizeof before);

    /* Never written: a NaN in momentum, an infinity in parameters (on whichever rank owns them). */
    size_t n2 = member_params(&e, 2), n4 = member_params(&e, 4);
    fill_with(&e, 400, 2, n2 + tensor_named(&e, 2, "fc1.weight")->offset + 5, NAN);
    expect_error(poet_checkpoint_write(comm, &cfg, &e, &pos, path, sizeof path), POET_ERR_NUMERIC,
                 "ckpt-00000400.h5: member 2 momentum/fc1.weight holds a non-finite value (nan at "
                 "element 5); checkpoint not written",
                 "NaN momentum");
    fill_with(&e, 400, 4, tensor_named(&e, 4, "conv1.bias")->offset, INFINITY);
    expect_error(poet_checkpoint_write(comm, &cfg, &e, &pos, path, sizeof path), POET_ERR_NUMERIC,
                 "member 4 params/conv1.bias holds a non-finite value (inf at element 0)",
                 "infinite parameter");
    (void)n4;
    snapshot(dir, after, sizeof after);
    TEST_CHECK(strcmp(before, after) == 0,
               "refused writes changed the directory:\n  before %s\n"
               "  after  %s",
               before, after);

    /* A file holding a NaN with a matching checksum: refused by read and by inspect. */
    join(bad, dir, "nan-with-good-checksum.h5");
    if (rank == 0) {
        char cmd[3 * POET_PATH_MAX];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, bad);
        TEST_CHECK(system(cmd) == 0, "cannot copy %s", path);
    }
    const poet_tensor_info *bias = tensor_named(&e, 1, "fc2.bias");
    float *block = pattern_block(&e, 300, 1);
    block[bias->offset + 3] = NAN;
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const unsigned char *)block,
                                   (uInt)(2 * member_params(&e, 1) * sizeof(float)));
    free(block);
    poke(bad, "/members/0001/params/fc2.bias", 3, NAN, 1, crc);
    expect_error(poet_checkpoint_read(comm, bad, &cfg, &r, &got), POET_ERR_CHECKPOINT,
                 "nan-with-good-checksum.h5: member 1 params/fc2.bias holds a non-finite value",
                 "NaN in a stored tensor");
    check_inspect(bad, POET_ERR_CHECKPOINT, M - 1, 1);
    poet_ensemble_destroy(&r);
    poet_ensemble_destroy(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Identity: the fields that say what a checkpoint holds are required
 * ------------------------------------------------------------------------------------------- */

/* Rank 0: in `path`, deletes attribute `name` of `object`, or (value != NULL) rewrites it as the
 * string `value`. */
static void edit_attr(const char *path, const char *object, const char *name, const char *value) {
    if (rank == 0) {
        hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t obj = file >= 0 ? H5Oopen(file, object, H5P_DEFAULT) : H5I_INVALID_HID;
        herr_t done = obj >= 0 ? H5Adelete(obj, name) : -1;
        if (done >= 0 && value) {
            hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
            H5Tset_size(type, H5T_VARIABLE);
            hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
            done = attr >= 0 ? H5Awrite(attr, type, &value) : -1;
            if (attr >= 0)
                H5Aclose(attr);
            H5Sclose(space);
            H5Tclose(type);
        }
        TEST_CHECK(done >= 0, "cannot edit attribute %s of %s in %s", name, object, path);
        if (obj >= 0)
            H5Oclose(obj);
        if (file >= 0)
            H5Fclose(file);
    }
    MPI_Barrier(comm);
}

static void identity(const char *dir) {
    static const struct {
        const char *file, *object, *name, *value, *message;
    } cases[] = {
        {"no-config.h5", "/", "config", NULL, "no-config.h5: attribute config of / is missing"},
        {"empty-config.h5", "/", "config", "{}",
         "empty-config.h5: attribute config of / does not describe an ensemble"},
        {"no-format_version.h5", "/", "format_version", NULL,
         "no-format_version.h5: not a poet checkpoint (no format_version attribute)"},
        {"no-architecture.h5", "/members/0003", "architecture", NULL,
         "no-architecture.h5: attribute architecture of /members/0003 is missing"},
        {"other-architecture.h5", "/members/0003", "architecture", "conv(1,k1,s1)",
         "other-architecture.h5: attribute architecture of /members/0003 is 'conv(1,k1,s1)', "
         "expected 'conv(16,k3,s2)"},
        {"no-arch_index.h5", "/members/0002", "arch_index", NULL,
         "no-arch_index.h5: attribute arch_index of /members/0002 is missing"},
    };
    char path[POET_PATH_MAX], bad[POET_PATH_MAX];
    poet_config c;
    poet_ensemble e, r;
    poet_train_position got = {0};
    remove_tree(dir);
    make_config(&c, dir, 0);
    create(&c, &e);
    create(&c, &r);
    TEST_OK(write_at(&c, &e, 300, path));
    TEST_OK(poet_checkpoint_read(comm, path, &c, &r, &got));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        join(bad, dir, cases[i].file);
        copy_file(path, bad);
        edit_attr(bad, cases[i].object, cases[i].name, cases[i].value);
        expect_error(poet_checkpoint_read(comm, bad, &c, &r, &got), POET_ERR_CHECKPOINT,
                     cases[i].message, cases[i].file);
        if (rank == 0) {
            FILE *out = tmpfile();
            poet_status st = poet_checkpoint_inspect(bad, out);
            fclose(out);
            /* a member's field fails that member's line; the summary counts it */
            const char *want =
                strcmp(cases[i].object, "/") ? "1 of 5 members do not verify" : cases[i].message;
            TEST_CHECK(st == POET_ERR_CHECKPOINT && strstr(poet_error_message(), want),
                       "inspect %s: status %d: %s", bad, (int)st, poet_error_message());
            poet_error_clear();
        }
    }
    poet_ensemble_destroy(&r);
    poet_ensemble_destroy(&e);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        elastic_write(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "read") == 0)
        elastic_read(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "nonfinite") == 0)
        nonfinite(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "identity") == 0)
        identity(argv[2]);
    else if (argc == 1)
        suite();
    else {
        fprintf(stderr, "usage: %s [write DIR | read DIR | nonfinite DIR | identity DIR]\n",
                argv[0]);
        test_failures++;
    }
    /* One verdict for all ranks. */
    int total = 0;
    MPI_Allreduce(&test_failures, &total, 1, MPI_INT, MPI_SUM, comm);
    test_failures = total;
    char name[64];
    snprintf(name, sizeof name, "checkpoint (%d ranks, rank %d)", ranks, rank);
    int code = test_finish(name);
    MPI_Finalize();
    return code;
}
