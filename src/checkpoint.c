/* checkpoint.c — whole-ensemble checkpoints: one HDF5 file written collectively through MPI-IO,
 * published atomically, verified by a CRC32 per member when read. Layout:
 * docs/checkpoint-format.md.
 *
 * Legend: M = members, P = ranks, n = members this rank owns, N = one member's parameter count.
 *
 * Parallel HDF5 requires every metadata change (groups, datasets, attributes) to be made by all
 * ranks with the same arguments. Every rank knows the placement and the plans, so all ranks create
 * and open every object in the same order; only the raw data differs: the owner of a member
 * transfers its tensors, the others take part in the collective transfer with an empty selection.
 * Because the metadata steps are the same everywhere, a bad file (missing dataset, wrong shape,
 * another ensemble) fails on every rank at the same step. What only one rank can see (a checksum
 * of its own members, a failed allocation) is settled by poet_error_agree() before any collective
 * decision.
 */
#define _POSIX_C_SOURCE 200809L

#include "poet/checkpoint.h"
#include "poet/fsutil.h"
#include "poet/h5util.h"
#include "poet/mpierror.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cjson/cJSON.h>

#define RNG_DESCRIPTION "counter-based SplitMix64; batch order = f(seed, epoch)"
#define NAME_PREFIX "ckpt-"
#define NAME_SUFFIX ".h5"
#define TMP_SUFFIX ".tmp"
#define LATEST_NAME "latest"
#define DESCRIBE_MAX 512

/* A member's tensor sets, in this order in the file, in member buffers and in the checksum: its
 * parameters, their momentum, and its buffers (PyTorch's word: batch normalisation's running
 * statistics, the member state of arch.h; no group when the member has none). */
enum { KIND_PARAMS, KIND_MOMENTUM, KIND_BUFFERS, KINDS };
static const char *const KIND_GROUP[KINDS] = {"params", "momentum", "buffers"};

/* Kind k's tensors: the parameter tensors for params and momentum, the state tensors for buffers.
 * A member's block is [params N][momentum N][buffers S]: kind k starts at k·N. */
static int kind_count(const poet_arch_plan *plan, int k) {
    return k == KIND_BUFFERS ? plan->n_states : plan->n_tensors;
}
static const poet_tensor_info *kind_tensor(const poet_arch_plan *plan, int k, int t) {
    return k == KIND_BUFFERS ? &plan->states[t] : &plan->tensors[t];
}
static size_t block_count(const poet_arch_plan *plan) {
    return 2 * plan->param_count + plan->state_count;
}

/* ---------------------------------------------------------------------------------------------
 * Error messages
 * ------------------------------------------------------------------------------------------- */

/* Replaces the recorded message by a checkpoint error "<path>: <what>: <recorded message>". */
static poet_status recast(const char *path, const char *what) {
    char cause[1024];
    snprintf(cause, sizeof cause, "%s", poet_error_message());
    poet_error_clear();
    return poet_error_set(POET_ERR_CHECKPOINT, "%s: %s: %s", path, what, cause);
}

/* Turns an unexpected HDF5 failure while reading `path` into a checkpoint error that names the
 * file: for the user a file HDF5 cannot read is a bad checkpoint, whatever the HDF5 reason. */
static poet_status as_checkpoint_error(poet_status st, const char *path) {
    return st == POET_ERR_HDF5 ? recast(path, "unreadable checkpoint") : st;
}

/* ---------------------------------------------------------------------------------------------
 * Member copies and checksums
 * ------------------------------------------------------------------------------------------- */

/* This rank's members in member layout, the form the file holds: member i's block is
 * [params N][momentum N] starting at offset[i]. */
typedef struct {
    int n;
    size_t *offset; /* [n + 1] */
    float *data;    /* [offset[n]] */
    uint32_t *crc;  /* [n] */
} member_copies;

static void copies_free(member_copies *mc) {
    free(mc->offset);
    free(mc->data);
    free(mc->crc);
    memset(mc, 0, sizeof *mc);
}

static size_t member_count(const poet_ensemble *e, const poet_config *cfg, int member) {
    return e->plans[cfg->member_arch[member]].param_count;
}

static poet_status copies_alloc(const poet_config *cfg, const poet_ensemble *e, member_copies *mc) {
    poet_status st = POET_OK;
    mc->n = e->n_local;
    POET_ALLOC(mc->offset, e->n_local + 1);
    for (int i = 0; i < e->n_local; i++)
        mc->offset[i + 1] =
            mc->offset[i] + block_count(&e->plans[cfg->member_arch[e->local_ids[i]]]);
    POET_ALLOC(mc->data, mc->offset[e->n_local]);
    POET_ALLOC(mc->crc, e->n_local);
    return POET_OK;
fail:
    copies_free(mc);
    return st;
}

/* CRC32 (zlib) of the floats' bytes as they lie in memory (little-endian on every platform poet
 * runs on); zlib takes at most 4 GiB per call, hence the chunks. */
static uint32_t checksum_floats(const float *x, size_t n) {
    const unsigned char *bytes = (const unsigned char *)x;
    size_t left = n * sizeof(float);
    uLong crc = crc32(0L, Z_NULL, 0);
    while (left) {
        uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        crc = crc32(crc, bytes, chunk);
        bytes += chunk;
        left -= chunk;
    }
    return (uint32_t)crc;
}

/* Fails with `status` naming member j's first tensor (in member layout: params, then momentum)
 * that holds a NaN or an infinity: such weights are never published nor taken for good. */
static poet_status check_finite(const poet_arch_plan *plan, const float *block, int j,
                                poet_status status, const char *path, const char *consequence) {
    for (int k = 0; k < KINDS; k++)
        for (int t = 0; t < kind_count(plan, k); t++) {
            const poet_tensor_info *ti = kind_tensor(plan, k, t);
            const float *x = block + k * plan->param_count + ti->offset;
            for (size_t i = 0; i < ti->count; i++)
                if (!isfinite(x[i]))
                    return poet_error_set(status,
                                          "%s: member %d %s/%s holds a non-finite value (%g at "
                                          "element %zu)%s",
                                          path, j, KIND_GROUP[k], ti->name, (double)x[i], i,
                                          consequence);
        }
    return POET_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Names and small file-system helpers
 * ------------------------------------------------------------------------------------------- */

static poet_status join_path(char *out, size_t size, const char *dir, const char *name,
                             const char *suffix) {
    int n = snprintf(out, size, "%s/%s%s", dir, name, suffix);
    if (n < 0 || (size_t)n >= size)
        return poet_error_set(POET_ERR_IO, "%s/%s%s: path longer than %zu characters", dir, name,
                              suffix, size - 1);
    return POET_OK;
}

/* A rename is durable only once the directory entry itself is on disk. */
static poet_status sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        poet_status st =
            poet_error_set(POET_ERR_IO, "cannot sync directory %s: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return st;
    }
    close(fd);
    return POET_OK;
}

/* "ckpt-<digits>.h5" exactly (no .tmp): its iteration, or -1. */
static long checkpoint_iteration(const char *name) {
    size_t len = strlen(name), pre = strlen(NAME_PREFIX), suf = strlen(NAME_SUFFIX);
    if (len <= pre + suf || strncmp(name, NAME_PREFIX, pre) != 0 ||
        strcmp(name + len - suf, NAME_SUFFIX) != 0)
        return -1;
    long it = 0;
    for (size_t i = pre; i < len - suf; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        it = it * 10 + (name[i] - '0');
    }
    return it;
}

typedef struct {
    long iteration;
    char name[256];
} listed_file;

static int newest_first(const void *a, const void *b) {
    long x = ((const listed_file *)a)->iteration, y = ((const listed_file *)b)->iteration;
    return (x < y) - (x > y);
}

/* The checkpoints in `dir`, newest (highest iteration) first. A missing directory has none. */
static poet_status list_checkpoints(const char *dir, listed_file **out, int *count) {
    poet_status st = POET_OK;
    listed_file *files = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    *out = NULL;
    *count = 0;
    if (!d) {
        if (errno == ENOENT)
            return POET_OK;
        return poet_error_set(POET_ERR_IO, "cannot list checkpoint directory %s: %s", dir,
                              strerror(errno));
    }
    for (struct dirent *ent; (ent = readdir(d));) {
        long it = checkpoint_iteration(ent->d_name);
        if (it < 0 || strlen(ent->d_name) >= sizeof files->name)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            listed_file *grown = realloc(files, (size_t)cap * sizeof *files);
            if (!grown)
                POET_FAIL(POET_ERR_NOMEM, "out of memory listing %s", dir);
            files = grown;
        }
        files[n].iteration = it;
        snprintf(files[n].name, sizeof files[n].name, "%s", ent->d_name);
        n++;
    }
    qsort(files, (size_t)n, sizeof *files, newest_first);
    *out = files;
    *count = n;
    files = NULL;
fail:
    closedir(d);
    free(files);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

static poet_status write_root_attributes(hid_t file, const char *path, const poet_config *cfg,
                                         const poet_ensemble *e, const poet_train_position *pos,
                                         const char *config_json) {
    poet_status st = POET_OK;
    int input[3] = {e->input.c, e->input.h, e->input.w};
    POET_TRY(poet_h5_attr_write_int(file, "format_version", H5T_STD_I32LE,
                                    POET_CHECKPOINT_FORMAT_VERSION, path));
    POET_TRY(poet_h5_attr_write_string(file, "poet_version", POET_VERSION, path));
    POET_TRY(poet_h5_attr_write_int(file, "iteration", H5T_STD_I64LE, pos->iteration, path));
    POET_TRY(poet_h5_attr_write_int(file, "epoch", H5T_STD_I64LE, pos->epoch, path));
    POET_TRY(poet_h5_attr_write_int(file, "position", H5T_STD_I64LE, pos->position, path));
    POET_TRY(poet_h5_attr_write_int(file, "total_iterations", H5T_STD_I64LE, pos->total_iterations,
                                    path));
    POET_TRY(
        poet_h5_attr_write(file, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &cfg->seed, path));
    POET_TRY(poet_h5_attr_write_string(file, "rng", RNG_DESCRIPTION, path));
    POET_TRY(poet_h5_attr_write_int(file, "members", H5T_STD_I32LE, cfg->members, path));
    POET_TRY(poet_h5_attr_write_int(file, "ranks_written", H5T_STD_I32LE, e->ranks, path));
    POET_TRY(
        poet_h5_attr_write(file, "input_shape", H5T_STD_I32LE, H5T_NATIVE_INT, 3, input, path));
    POET_TRY(poet_h5_attr_write_string(file, "config", config_json, path));
fail:
    return st;
}

/* What every collective write step needs: the ranks, the file being written and the property
 * lists. */
typedef struct {
    MPI_Comm comm;
    const char *path; /* the .tmp file */
    hid_t gcpl, dcpl, dxpl;
    poet_status failed; /* this rank's first failed write, agreed once all data is written */
} writer;

/* Every rank's outcome of one collective transfer (`written`, with `err` the errno right after
 * it). A full disk fails only the ranks whose part lands past the end of the space; they must not
 * go on to a collective call the others are not in, so all agree here and fail together with one
 * I/O error naming the file, the object and the cause. */
static poet_status agree_write(const writer *w, herr_t written, int err, const char *object) {
    poet_status st = POET_OK;
    if (written < 0)
        st = poet_error_set(POET_ERR_IO, "%s: cannot write %s: %s", w->path, object,
                            poet_fs_write_cause(w->path, err, poet_hdf5_error_string()));
    return poet_error_agree(w->comm, st);
}

/* A failed independent write: remembered (the first one), agreed after the last data write. */
static void note_failed_write(writer *w, int err, const char *object) {
    if (w->failed == POET_OK)
        w->failed = poet_error_set(POET_ERR_IO, "%s: cannot write %s: %s", w->path, object,
                                   poet_fs_write_cause(w->path, err, poet_hdf5_error_string()));
}

/* Collective: creates one tensor's dataset in group `where` (its space allocated at creation, as
 * parallel HDF5 does for contiguous data); the owner (data != NULL) alone writes it, independently.
 * A collective transfer per tensor cost several MPI collectives each, every one a few round trips
 * between hosts (bench/README.md: checkpoints across hosts). */
static poet_status write_tensor(writer *w, hid_t group, const char *where,
                                const poet_tensor_info *t, const float *data) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t dims[4];
    char object[160];
    for (int d = 0; d < t->ndims; d++)
        dims[d] = (hsize_t)t->dims[d];
    POET_H5(space = H5Screate_simple(t->ndims, dims, NULL));
    POET_H5(dset = H5Dcreate2(group, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, w->dcpl,
                              H5P_DEFAULT));
    snprintf(object, sizeof object, "%s/%s", where, t->name);
    errno = 0;
    if (data && H5Dwrite(dset, H5T_NATIVE_FLOAT, space, space, w->dxpl, data) < 0)
        note_failed_write(w, errno, object);
fail:
    poet_h5_close(&dset);
    poet_h5_close(&space);
    return st;
}

/* Collective: /members/<jjjj>/ with its attributes and both tensor groups. `block` is the member's
 * [params N][momentum N] on its owner, NULL elsewhere. */
static poet_status write_member(writer *w, hid_t members, const poet_config *cfg,
                                const poet_arch_plan *plan, int j, const float *block,
                                long long batches_tracked) {
    poet_status st = POET_OK;
    hid_t group = H5I_INVALID_HID, kind_group = H5I_INVALID_HID;
    char name[16], where[64], describe[DESCRIBE_MAX];
    int arch = cfg->member_arch[j];
    snprintf(name, sizeof name, "%04d", j);
    poet_arch_describe(&cfg->archs[arch], describe, sizeof describe);
    POET_H5(group = H5Gcreate2(members, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    POET_TRY(poet_h5_attr_write_string(group, "architecture", describe, w->path));
    POET_TRY(poet_h5_attr_write_int(group, "arch_index", H5T_STD_I32LE, arch, w->path));
    if (plan->n_states > 0) /* PyTorch's num_batches_tracked: the same for every batchnorm */
        POET_TRY(poet_h5_attr_write_int(group, "num_batches_tracked", H5T_STD_I64LE,
                                        batches_tracked, w->path));
    for (int k = 0; k < KINDS; k++) {
        if (kind_count(plan, k) == 0 && k == KIND_BUFFERS)
            continue;
        POET_H5(kind_group = H5Gcreate2(group, KIND_GROUP[k], H5P_DEFAULT, w->gcpl, H5P_DEFAULT));
        snprintf(where, sizeof where, "/members/%s/%s", name, KIND_GROUP[k]);
        for (int t = 0; t < kind_count(plan, k); t++) {
            const poet_tensor_info *ti = kind_tensor(plan, k, t);
            const float *data = block ? block + k * plan->param_count + ti->offset : NULL;
            POET_TRY(write_tensor(w, kind_group, where, ti, data));
        }
        poet_h5_close(&kind_group);
    }
fail:
    poet_h5_close(&kind_group);
    poet_h5_close(&group);
    return st;
}

/* Selects this rank's members in a [M] dataspace: one element per owned member, ascending, so the
 * selection's order matches local order. */
static poet_status select_local(hid_t space, const poet_ensemble *e, int n) {
    poet_status st = POET_OK;
    POET_H5(H5Sselect_none(space));
    for (int i = 0; i < n; i++) {
        hsize_t start = (hsize_t)e->local_ids[i], count = 1;
        POET_H5(H5Sselect_hyperslab(space, H5S_SELECT_OR, &start, NULL, &count, NULL));
    }
fail:
    return st;
}

/* Collective: /checksums [M] uint32, each rank writing its members' entries. */
static poet_status write_checksums(writer *w, hid_t file, const poet_ensemble *e, int members,
                                   const member_copies *mc) {
    poet_status st = POET_OK;
    hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t m = (hsize_t)members, n = (hsize_t)(mc->n ? mc->n : 1);
    POET_H5(file_space = H5Screate_simple(1, &m, NULL));
    POET_H5(dset = H5Dcreate2(file, "checksums", H5T_STD_U32LE, file_space, H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT));
    POET_TRY(select_local(file_space, e, mc->n));
    POET_H5(mem_space = H5Screate_simple(1, &n, NULL));
    errno = 0;
    if (mc->n && H5Dwrite(dset, H5T_NATIVE_UINT32, mem_space, file_space, w->dxpl, mc->crc) < 0)
        note_failed_write(w, errno, "/checksums");
fail:
    poet_h5_close(&dset);
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    return st;
}

/* Collective: creates `tmp` and writes everything into it, then flushes and closes it. A failure
 * on any rank is agreed before the file is closed (closing is collective too); the ranks then
 * empty the partial file first, so that on a full disk closing it finds room for its metadata. */
static poet_status write_file(MPI_Comm comm, const char *tmp, const poet_config *cfg,
                              const poet_ensemble *e, const poet_train_position *pos,
                              const member_copies *mc, const char *config_json) {
    poet_status st = POET_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, members = H5I_INVALID_HID;
    writer w = {comm, tmp, H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID, POET_OK};
    int rank = 0;
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_H5(fapl = H5Pcreate(H5P_FILE_ACCESS));
    POET_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    /* Metadata leaves in one collective write at the flush rather than rank 0's many small ones. */
    POET_H5(H5Pset_coll_metadata_write(fapl, 1));
    errno = 0;
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0)
        POET_FAIL(POET_ERR_IO, "cannot create checkpoint %s: %s", tmp,
                  poet_fs_write_cause(tmp, errno, poet_hdf5_error_string()));
    POET_H5(w.dxpl = H5Pcreate(H5P_DATASET_XFER));
    POET_H5(H5Pset_dxpl_mpio(w.dxpl, H5FD_MPIO_INDEPENDENT));
    /* Every element is written, so HDF5 need not write fill values first. */
    POET_H5(w.dcpl = H5Pcreate(H5P_DATASET_CREATE));
    POET_H5(H5Pset_fill_time(w.dcpl, H5D_FILL_TIME_NEVER));
    /* Tensor groups remember creation (= member layout) order, so h5py iterates them that way. */
    POET_H5(w.gcpl = H5Pcreate(H5P_GROUP_CREATE));
    POET_H5(H5Pset_link_creation_order(w.gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));

    POET_TRY(write_root_attributes(file, tmp, cfg, e, pos, config_json));
    POET_H5(members = H5Gcreate2(file, "members", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    int local = 0; /* local_ids ascend, so owned members come up in order */
    for (int j = 0; j < cfg->members; j++) {
        const float *block = NULL;
        if (local < mc->n && e->local_ids[local] == j)
            block = mc->data + mc->offset[local++];
        POET_TRY(write_member(&w, members, cfg, &e->plans[cfg->member_arch[j]], j, block,
                              (long long)e->batches_tracked));
    }
    POET_TRY(write_checksums(&w, file, e, cfg->members, mc));
    /* One agreement for every data write: a rank whose write failed (a full disk) went on making
     * the same collective metadata calls as the others, so none waits for another here. */
    POET_TRY(poet_error_agree(comm, w.failed));
    POET_TRY(
        poet_error_agree(comm, rank == 0 ? poet_fs_check_room(tmp, "the checkpoint") : POET_OK));
    errno = 0;
    herr_t flushed = H5Fflush(file, H5F_SCOPE_GLOBAL);
    POET_TRY(agree_write(&w, flushed, errno, "the file's metadata"));
fail:
    st = poet_error_agree(comm, st);
    if (st != POET_OK && file >= 0) {
        if (rank == 0 && truncate(tmp, 0) != 0)
            fprintf(stderr, "poet: warning: cannot empty %s: %s\n", tmp, strerror(errno));
        MPI_Barrier(comm);
    }
    poet_h5_close(&members);
    poet_h5_close(&w.gcpl);
    poet_h5_close(&w.dcpl);
    poet_h5_close(&w.dxpl);
    errno = 0;
    if (poet_h5_close(&file) < 0 && st == POET_OK)
        st = poet_error_set(POET_ERR_IO, "%s: cannot close checkpoint: %s", tmp,
                            poet_fs_write_cause(tmp, errno, poet_hdf5_error_string()));
    poet_h5_close(&fapl);
    return st;
}

/* Rank 0, after every rank closed the file: replaces `latest` through a renamed temporary. */
static poet_status write_latest(const char *dir, const char *name) {
    poet_status st = POET_OK;
    char tmp[POET_PATH_MAX], latest[POET_PATH_MAX];
    FILE *f = NULL;
    POET_TRY(join_path(tmp, sizeof tmp, dir, LATEST_NAME, TMP_SUFFIX));
    POET_TRY(join_path(latest, sizeof latest, dir, LATEST_NAME, ""));
    f = fopen(tmp, "w");
    if (!f)
        POET_FAIL(POET_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (fprintf(f, "%s\n", name) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        POET_FAIL(POET_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    int closed = fclose(f);
    f = NULL;
    if (closed != 0)
        POET_FAIL(POET_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, latest) != 0)
        POET_FAIL(POET_ERR_IO, "cannot rename %s to %s: %s", tmp, latest, strerror(errno));
    POET_TRY(sync_dir(dir));
fail:
    if (f)
        fclose(f);
    if (st != POET_OK)
        unlink(tmp);
    return st;
}

/* Rank 0: keeps the `keep` newest checkpoints and always the one just written. Failing to remove
 * an old file is worth a warning, not the loss of the new checkpoint. */
static poet_status prune(const char *dir, int keep, const char *written) {
    poet_status st = POET_OK;
    listed_file *files = NULL;
    int n = 0, kept = 0;
    POET_TRY(list_checkpoints(dir, &files, &n));
    for (int i = 0; i < n; i++) {
        if (strcmp(files[i].name, written) == 0 || kept < keep) {
            kept++;
            continue;
        }
        char path[POET_PATH_MAX];
        if (join_path(path, sizeof path, dir, files[i].name, "") == POET_OK && unlink(path) != 0)
            fprintf(stderr, "poet: warning: cannot remove old checkpoint %s: %s\n", path,
                    strerror(errno));
    }
fail:
    free(files);
    return st;
}

/* Rank 0: publishes the closed temporary file as the newest checkpoint. */
static poet_status publish(const poet_config *cfg, const char *tmp, const char *final,
                           const char *name) {
    poet_status st = POET_OK;
    if (rename(tmp, final) != 0)
        POET_FAIL(POET_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    POET_TRY(sync_dir(cfg->checkpoint_dir));
    POET_TRY(write_latest(cfg->checkpoint_dir, name));
    POET_TRY(prune(cfg->checkpoint_dir, cfg->checkpoint_keep > 1 ? cfg->checkpoint_keep : 1, name));
fail:
    return st;
}

/* This rank's members in member layout, with their checksums; a non-finite parameter or momentum
 * value is a numerical error naming member and tensor (`path`: the checkpoint not written). */
static poet_status gather_local(const poet_config *cfg, const poet_ensemble *e, const char *path,
                                member_copies *mc) {
    poet_status st = POET_OK;
    if (e->shard > 0) /* the group's other ranks hold the same members: shard 0 writes them */
        return POET_OK;
    POET_TRY(copies_alloc(cfg, e, mc));
    for (int i = 0; i < e->n_local; i++) {
        int j = e->local_ids[i];
        size_t count = member_count(e, cfg, j);
        float *block = mc->data + mc->offset[i];
        poet_ensemble_member_get(e, i, e->params, block);
        poet_ensemble_member_get(e, i, e->velocity, block + count);
        poet_ensemble_state_get(e, i, block + 2 * count);
        POET_TRY(check_finite(&e->plans[cfg->member_arch[j]], block, j, POET_ERR_NUMERIC, path,
                              "; checkpoint not written"));
        mc->crc[i] = checksum_floats(block, mc->offset[i + 1] - mc->offset[i]);
    }
fail:
    return st;
}

/* Rank 0: the file system must have room for the whole checkpoint (the older ones stay until it is
 * published) where it tells its free space: refusing beforehand is clean, while a write that runs
 * out of space mid-way fails inside the collective transfers. The estimate is the tensors' bytes
 * plus the config and a margin for HDF5's metadata (measured: ~35 KiB for 4 members). */
static poet_status check_space(const poet_config *cfg, const poet_ensemble *e, const char *final,
                               const char *config_json) {
    long long need = 64 * 1024 + 2 * (long long)strlen(config_json);
    for (int j = 0; j < cfg->members; j++)
        need += (long long)(block_count(&e->plans[cfg->member_arch[j]]) * sizeof(float)) + 8192;
    const char *skip = getenv("POET_SKIP_SPACE_CHECK"); /* tests: run into a full disk instead */
    if (skip && strcmp(skip, "1") == 0)
        return POET_OK;
    long long left = poet_fs_free_bytes(cfg->checkpoint_dir);
    if (left >= 0 && left < need)
        return poet_error_set(POET_ERR_IO,
                              "%s: not enough free space for the checkpoint: it needs about %lld "
                              "bytes, %lld are left (No space left on device)",
                              final, need, left);
    return POET_OK;
}

poet_status poet_checkpoint_write(MPI_Comm comm, const poet_config *cfg, const poet_ensemble *e,
                                  const poet_train_position *pos, char *path_out,
                                  size_t path_size) {
    poet_status st = POET_OK;
    member_copies mc = {0};
    char *config_json = NULL;
    char name[64], final[POET_PATH_MAX], tmp[POET_PATH_MAX];
    int rank, written = 0;
    poet_h5_quiet();
    POET_MPI(MPI_Comm_rank(comm, &rank));
    snprintf(name, sizeof name, NAME_PREFIX "%08ld" NAME_SUFFIX, pos->iteration);

    /* Rank-local preparation first, so no rank enters a collective HDF5 call another rank skips. */
    st = join_path(final, sizeof final, cfg->checkpoint_dir, name, "");
    if (st == POET_OK)
        st = join_path(tmp, sizeof tmp, cfg->checkpoint_dir, name, TMP_SUFFIX);
    if (st == POET_OK && rank == 0)
        st = poet_fs_make_dirs(cfg->checkpoint_dir, "checkpoint directory");
    if (st == POET_OK)
        st = gather_local(cfg, e, final, &mc);
    if (st == POET_OK && !(config_json = poet_config_to_json(cfg)))
        st = poet_error_set(POET_ERR_NOMEM, "out of memory writing the config of checkpoint %s",
                            name);
    if (st == POET_OK && rank == 0)
        st = check_space(cfg, e, final, config_json);
    POET_TRY(poet_error_agree(comm, st));

    written = 1;
    poet_h5_watch_arm("writing checkpoint", tmp, tmp);
    st = poet_error_agree(comm, write_file(comm, tmp, cfg, e, pos, &mc, config_json));
    poet_h5_watch_disarm();
    POET_TRY(st);
    POET_TRY(poet_error_agree(comm, rank == 0 ? publish(cfg, tmp, final, name) : POET_OK));
    if (path_out && path_size)
        snprintf(path_out, path_size, "%s", final);
fail:
    /* On failure no good checkpoint is replaced: the temporary goes, `latest` is untouched. Every
     * rank got here through the same poet_error_agree(), so the barrier lets none return before it
     * is gone. */
    if (st != POET_OK && written) {
        if (rank == 0)
            unlink(tmp);
        MPI_Barrier(comm);
    }
    free(config_json);
    copies_free(&mc);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

/* What the root of a checkpoint says. */
typedef struct {
    int format_version;
    char *poet_version;
    poet_train_position pos;
    uint64_t seed;
    int members, ranks_written;
    int input[3];
    poet_config *config; /* the stored config, parsed */
} header;

static void header_free(header *h) {
    free(h->poet_version);
    free(h->config);
    memset(h, 0, sizeof *h);
}

/* Every root number within its range, so that nothing downstream (the loss log's truncation, the
 * training loop, placement) ever sees an iteration of -5 or a shape of 0. */
static poet_status check_ranges(const char *path, const header *h) {
    const poet_train_position *p = &h->pos;
    const char *name = NULL;
    long long value = 0, low = 0, high = 0;
    if (p->total_iterations < 1)
        name = "total_iterations", value = p->total_iterations, low = 1, high = LONG_MAX;
    else if (p->iteration < 0 || p->iteration > p->total_iterations)
        name = "iteration", value = p->iteration, high = p->total_iterations;
    else if (p->epoch < 0 || p->epoch > p->iteration)
        name = "epoch", value = p->epoch, high = p->iteration;
    else if (p->position < 0 || p->position > p->iteration)
        name = "position", value = p->position, high = p->iteration;
    else if (h->members < 1 || h->members > POET_MAX_MEMBERS)
        name = "members", value = h->members, low = 1, high = POET_MAX_MEMBERS;
    else if (h->ranks_written < 1)
        name = "ranks_written", value = h->ranks_written, low = 1, high = INT_MAX;
    for (int d = 0; d < 3 && !name; d++)
        if (h->input[d] < 1 || h->input[d] > 65536)
            name = "input_shape", value = h->input[d], low = 1, high = 65536;
    if (!name)
        return POET_OK;
    return poet_error_set(POET_ERR_CHECKPOINT, "%s: attribute %s is %lld, expected %lld..%lld",
                          path, name, value, low, high);
}

/* A root attribute of `n` values (0: a scalar); missing or misshapen is a checkpoint error. */
static poet_status root_attr(hid_t file, const char *path, const char *name, hid_t mem_type,
                             hsize_t n, void *value) {
    return poet_h5_attr_read(file, name, mem_type, n, value, POET_ERR_CHECKPOINT, path, "/");
}

/* The stored config is the ensemble's identity: it must be a JSON object naming its model, so that
 * a hand-written file with config "{}" does not verify by falling back on today's defaults. */
static poet_status check_config_identity(const char *path, const char *json) {
    cJSON *root = cJSON_Parse(json);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    int ok = cJSON_IsObject(root) && cJSON_IsObject(model);
    cJSON_Delete(root);
    if (ok)
        return POET_OK;
    return poet_error_set(POET_ERR_CHECKPOINT,
                          "%s: attribute config of / does not describe an ensemble (expected a "
                          "JSON object with a \"model\" object, as poet writes)",
                          path);
}

static poet_status read_header(hid_t file, const char *path, header *h) {
    poet_status st = POET_OK;
    char *json = NULL;
    memset(h, 0, sizeof *h);
    htri_t has_version = H5Aexists(file, "format_version");
    POET_H5(has_version);
    if (!has_version)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: not a poet checkpoint (no format_version attribute)",
                  path);
    POET_TRY(root_attr(file, path, "format_version", H5T_NATIVE_INT, 0, &h->format_version));
    if (h->format_version != POET_CHECKPOINT_FORMAT_VERSION)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: format_version is %d, this poet reads version %d", path,
                  h->format_version, POET_CHECKPOINT_FORMAT_VERSION);
    POET_TRY(poet_h5_attr_read_string(file, "poet_version", &h->poet_version, POET_ERR_CHECKPOINT,
                                      path, "/"));
    POET_TRY(root_attr(file, path, "iteration", H5T_NATIVE_LONG, 0, &h->pos.iteration));
    POET_TRY(root_attr(file, path, "epoch", H5T_NATIVE_LONG, 0, &h->pos.epoch));
    POET_TRY(root_attr(file, path, "position", H5T_NATIVE_LONG, 0, &h->pos.position));
    POET_TRY(
        root_attr(file, path, "total_iterations", H5T_NATIVE_LONG, 0, &h->pos.total_iterations));
    POET_TRY(root_attr(file, path, "seed", H5T_NATIVE_UINT64, 0, &h->seed));
    POET_TRY(root_attr(file, path, "members", H5T_NATIVE_INT, 0, &h->members));
    POET_TRY(root_attr(file, path, "ranks_written", H5T_NATIVE_INT, 0, &h->ranks_written));
    POET_TRY(root_attr(file, path, "input_shape", H5T_NATIVE_INT, 3, h->input));
    POET_TRY(poet_h5_attr_read_string(file, "config", &json, POET_ERR_CHECKPOINT, path, "/"));
    POET_TRY(check_config_identity(path, json));
    POET_ALLOC(h->config, 1);
    char source[POET_PATH_MAX + 16];
    snprintf(source, sizeof source, "%s:config", path);
    if (poet_config_parse(json, source, h->config) != POET_OK)
        POET_TRY(recast(path, "stored config does not parse"));
    if (h->config->members != h->members)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: attribute members is %d but the stored config has %d",
                  path, h->members, h->config->members);
    POET_TRY(check_ranges(path, h));
fail:
    free(json);
    if (st != POET_OK)
        header_free(h);
    return st;
}

/* The checkpoint must hold the ensemble this run trains: same members, architectures, classes and
 * input shape (the rest of the config, e.g. learning rate or rank count, may change on resume). */
static poet_status check_ensemble(const char *path, const header *h, const poet_config *cfg,
                                  poet_shape input) {
    const poet_config *old = h->config;
    if (old->members != cfg->members)
        return poet_error_set(POET_ERR_CHECKPOINT, "%s: checkpoint has %d members, config has %d",
                              path, old->members, cfg->members);
    if (old->classes != cfg->classes)
        return poet_error_set(POET_ERR_CHECKPOINT, "%s: checkpoint has %d classes, config has %d",
                              path, old->classes, cfg->classes);
    if (h->input[0] != input.c || h->input[1] != input.h || h->input[2] != input.w)
        return poet_error_set(
            POET_ERR_CHECKPOINT, "%s: checkpoint input shape is %dx%dx%d, this run's is %dx%dx%d",
            path, h->input[0], h->input[1], h->input[2], input.c, input.h, input.w);
    for (int j = 0; j < cfg->members; j++) {
        const poet_arch *a = &old->archs[old->member_arch[j]],
                        *b = &cfg->archs[cfg->member_arch[j]];
        if (poet_arch_equal(a, b))
            continue;
        char was[DESCRIBE_MAX], now[DESCRIBE_MAX];
        poet_arch_describe(a, was, sizeof was);
        poet_arch_describe(b, now, sizeof now);
        return poet_error_set(
            POET_ERR_CHECKPOINT,
            "%s: member %d architecture differs: checkpoint has %s, config has %s", path, j, was,
            now);
    }
    return POET_OK;
}

/* A member group's own attributes: arch_index must name the stored config's architecture of member
 * j and architecture must describe it (a missing group is reported by open_tensor, by name). */
static poet_status check_member(hid_t file, const char *path, const header *h, int j) {
    poet_status st = POET_OK;
    hid_t group = H5I_INVALID_HID;
    char where[32], want[DESCRIBE_MAX];
    char *describe = NULL;
    int arch = -1;
    snprintf(where, sizeof where, "/members/%04d", j);
    if (H5Lexists(file, "/members", H5P_DEFAULT) <= 0 || H5Lexists(file, where, H5P_DEFAULT) <= 0)
        return POET_OK;
    POET_H5(group = H5Gopen2(file, where, H5P_DEFAULT));
    POET_TRY(poet_h5_attr_read(group, "arch_index", H5T_NATIVE_INT, 0, &arch, POET_ERR_CHECKPOINT,
                               path, where));
    if (arch != h->config->member_arch[j])
        POET_FAIL(POET_ERR_CHECKPOINT,
                  "%s: attribute arch_index of %s is %d, expected %d (the "
                  "stored config's)",
                  path, where, arch, h->config->member_arch[j]);
    POET_TRY(poet_h5_attr_read_string(group, "architecture", &describe, POET_ERR_CHECKPOINT, path,
                                      where));
    poet_arch_describe(&h->config->archs[arch], want, sizeof want);
    if (strcmp(describe, want) != 0)
        POET_FAIL(POET_ERR_CHECKPOINT,
                  "%s: attribute architecture of %s is '%s', expected '%s' (the stored config's)",
                  path, where, describe, want);
fail:
    free(describe);
    poet_h5_close(&group);
    return st;
}

/* Opens dataset /members/<jjjj>/<kind>/<tensor>, checking each level exists and the shape is the
 * plan's, so a damaged file is reported by name rather than by an HDF5 stack. */
static poet_status open_tensor(hid_t file, const char *path, int j, int kind,
                               const poet_tensor_info *t, hid_t *out) {
    poet_status st = POET_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char object[160];
    *out = H5I_INVALID_HID;
    int n = snprintf(object, sizeof object, "/members");
    const char *parts[3] = {NULL, KIND_GROUP[kind], t->name};
    for (int level = 0; level < 3; level++) {
        char id[16];
        snprintf(id, sizeof id, "%04d", j);
        n += snprintf(object + n, sizeof object - (size_t)n, "/%s", level ? parts[level] : id);
        if (level == 0) {
            htri_t top = H5Lexists(file, "/members", H5P_DEFAULT);
            POET_H5(top);
            if (!top)
                POET_FAIL(POET_ERR_CHECKPOINT, "%s: group /members is missing", path);
        }
        htri_t exists = H5Lexists(file, object, H5P_DEFAULT);
        POET_H5(exists);
        if (!exists)
            POET_FAIL(POET_ERR_CHECKPOINT, "%s: %s %s is missing", path,
                      level == 2 ? "dataset" : "group", object);
    }
    POET_H5(dset = H5Dopen2(file, object, H5P_DEFAULT));
    POET_H5(space = H5Dget_space(dset));
    hsize_t dims[8];
    int ndims = H5Sget_simple_extent_ndims(space);
    POET_H5(ndims);
    int same = ndims == t->ndims;
    if (same && ndims <= 8) {
        H5Sget_simple_extent_dims(space, dims, NULL);
        for (int d = 0; d < ndims; d++)
            same = same && dims[d] == (hsize_t)t->dims[d];
    }
    if (!same) {
        char want[64] = "", got[64] = "";
        for (int d = 0, m = 0; d < t->ndims; d++)
            m += snprintf(want + m, sizeof want - (size_t)m, "%s%lld", d ? "x" : "",
                          (long long)t->dims[d]);
        for (int d = 0, m = 0; d < ndims && d < 8; d++)
            m += snprintf(got + m, sizeof got - (size_t)m, "%s%llu", d ? "x" : "",
                          (unsigned long long)dims[d]);
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: dataset %s has shape %s, expected %s", path, object,
                  ndims <= 8 ? got : "(more than 8 dimensions)", want);
    }
    *out = dset;
    dset = H5I_INVALID_HID;
fail:
    poet_h5_close(&space);
    poet_h5_close(&dset);
    return st;
}

/* Reads one tensor into `data` (member layout); data == NULL joins a collective read with an
 * empty selection. */
static poet_status read_tensor(hid_t file, const char *path, hid_t dxpl, int j, int kind,
                               const poet_tensor_info *t, float *data) {
    poet_status st = POET_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    float none;
    POET_TRY(open_tensor(file, path, j, kind, t, &dset));
    POET_H5(space = H5Dget_space(dset));
    if (!data)
        POET_H5(H5Sselect_none(space));
    POET_H5(H5Dread(dset, H5T_NATIVE_FLOAT, space, space, dxpl, data ? data : &none));
fail:
    poet_h5_close(&space);
    poet_h5_close(&dset);
    return st;
}

/* /checksums [M] (small: every rank reads all of it). */
static poet_status read_checksums(hid_t file, const char *path, hid_t dxpl, int members,
                                  uint32_t *crc) {
    poet_status st = POET_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists = H5Lexists(file, "/checksums", H5P_DEFAULT);
    POET_H5(exists);
    if (!exists)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: dataset /checksums is missing", path);
    POET_H5(dset = H5Dopen2(file, "/checksums", H5P_DEFAULT));
    POET_H5(space = H5Dget_space(dset));
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (H5Sget_simple_extent_ndims(space) != 1 || n != members)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: dataset /checksums has %lld entries, expected %d", path,
                  (long long)n, members);
    POET_H5(H5Dread(dset, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, dxpl, crc));
fail:
    poet_h5_close(&space);
    poet_h5_close(&dset);
    return st;
}

/* Collective: checks the header against cfg and reads every owned member into `mc` and all the
 * stored checksums. All ranks open every dataset in the same order, so a damaged file fails on
 * all ranks at the same step. */
/* The num_batches_tracked attribute of member j's group (members with batchnorm). */
static poet_status read_tracked(hid_t file, const char *path, int j, long long *tracked) {
    poet_status st = POET_OK;
    hid_t group = H5I_INVALID_HID;
    char where[32];
    snprintf(where, sizeof where, "/members/%04d", j);
    POET_H5(group = H5Gopen2(file, where, H5P_DEFAULT));
    POET_TRY(poet_h5_attr_read(group, "num_batches_tracked", H5T_NATIVE_LLONG, 0, tracked,
                               POET_ERR_CHECKPOINT, path, where));
fail:
    poet_h5_close(&group);
    return st;
}

/* Why a checkpoint file does not open: missing or unreadable (errno), else not HDF5 at all. */
static const char *open_failure(const char *path) {
    static char text[POET_PATH_MAX + 320];
    struct stat sb;
    if (stat(path, &sb) != 0)
        snprintf(text, sizeof text, "%s: cannot open checkpoint: %s", path, strerror(errno));
    else
        snprintf(text, sizeof text, "%s: cannot open as HDF5 (truncated or not a checkpoint): %s",
                 path, poet_hdf5_error_string());
    return text;
}

static poet_status read_file(MPI_Comm comm, const char *path, const poet_config *cfg,
                             const poet_ensemble *e, member_copies *mc, uint32_t *stored_crc,
                             poet_train_position *pos, long long *tracked) {
    poet_status st = POET_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    header h = {0};
    POET_H5(fapl = H5Pcreate(H5P_FILE_ACCESS));
    POET_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s", open_failure(path));
    POET_H5(dxpl = H5Pcreate(H5P_DATASET_XFER));
    POET_H5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
    POET_TRY(read_header(file, path, &h));
    POET_TRY(check_ensemble(path, &h, cfg, e->input));
    int local = 0;
    for (int j = 0; j < cfg->members; j++) {
        const poet_arch_plan *plan = &e->plans[cfg->member_arch[j]];
        float *block = NULL;
        if (local < mc->n && e->local_ids[local] == j)
            block = mc->data + mc->offset[local++];
        POET_TRY(check_member(file, path, &h, j));
        if (plan->n_states > 0 && *tracked < 0)
            POET_TRY(read_tracked(file, path, j, tracked));
        for (int k = 0; k < KINDS; k++)
            for (int t = 0; t < kind_count(plan, k); t++) {
                const poet_tensor_info *ti = kind_tensor(plan, k, t);
                float *data = block ? block + k * plan->param_count + ti->offset : NULL;
                POET_TRY(read_tensor(file, path, dxpl, j, k, ti, data));
            }
    }
    POET_TRY(read_checksums(file, path, dxpl, cfg->members, stored_crc));
    *pos = h.pos;
fail:
    header_free(&h);
    poet_h5_close(&dxpl);
    poet_h5_close(&file);
    poet_h5_close(&fapl);
    return as_checkpoint_error(st, path);
}

/* Rank-local: every owned member's recomputed checksum must be the stored one, and every value
 * finite. */
static poet_status verify_local(const char *path, const poet_config *cfg, const poet_ensemble *e,
                                member_copies *mc, const uint32_t *stored) {
    for (int i = 0; i < mc->n; i++) {
        int j = e->local_ids[i];
        uint32_t crc = checksum_floats(mc->data + mc->offset[i], mc->offset[i + 1] - mc->offset[i]);
        if (crc != stored[j])
            return poet_error_set(POET_ERR_CHECKPOINT,
                                  "%s: member %d checksum mismatch: stored 0x%08x, computed 0x%08x "
                                  "(corrupt data)",
                                  path, j, (unsigned)stored[j], (unsigned)crc);
        poet_status finite = check_finite(&e->plans[cfg->member_arch[j]], mc->data + mc->offset[i],
                                          j, POET_ERR_CHECKPOINT, path, "");
        if (finite != POET_OK)
            return finite;
    }
    return POET_OK;
}

poet_status poet_checkpoint_read(MPI_Comm comm, const char *path, const poet_config *cfg,
                                 poet_ensemble *e, poet_train_position *pos) {
    poet_status st = POET_OK;
    member_copies mc = {0};
    uint32_t *stored = NULL;
    poet_train_position read_pos = {0};
    poet_h5_quiet();

    st = copies_alloc(cfg, e, &mc);
    if (st == POET_OK) {
        stored = calloc((size_t)cfg->members, sizeof *stored);
        if (!stored)
            st = poet_error_set(POET_ERR_NOMEM, "out of memory reading checkpoint %s", path);
    }
    POET_TRY(poet_error_agree(comm, st));
    long long read_tracked = -1; /* -1: no member has batchnorm */
    st = read_file(comm, path, cfg, e, &mc, stored, &read_pos, &read_tracked);
    if (st == POET_OK)
        st = verify_local(path, cfg, e, &mc, stored);
    POET_TRY(poet_error_agree(comm, st));

    /* Only now, with every rank's members verified, does the ensemble change. */
    for (int i = 0; i < mc.n; i++) {
        size_t count = member_count(e, cfg, e->local_ids[i]);
        poet_ensemble_member_set(e, i, e->params, mc.data + mc.offset[i]);
        poet_ensemble_member_set(e, i, e->velocity, mc.data + mc.offset[i] + count);
        poet_ensemble_state_set(e, i, mc.data + mc.offset[i] + 2 * count);
    }
    if (read_tracked >= 0)
        e->batches_tracked = read_tracked;
    *pos = read_pos;
fail:
    free(stored);
    copies_free(&mc);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Resuming
 * ------------------------------------------------------------------------------------------- */

/* Whether `latest` holds a plain file name, so that it can only name a file inside the checkpoint
 * directory: no directory part, not absolute, not "." or "..". */
static int plain_name(const char *name) {
    return name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Rank 0: the files to try, best first: the one `latest` names (when it is a plain file name), then
 * every ckpt-*.h5 newest first. */
static poet_status list_candidates(const char *dir, char (**out)[POET_PATH_MAX], int *count) {
    poet_status st = POET_OK;
    listed_file *files = NULL;
    char(*cand)[POET_PATH_MAX] = NULL;
    char latest_path[POET_PATH_MAX], latest[256] = "";
    int n = 0, total = 0;
    *out = NULL;
    *count = 0;
    POET_TRY(join_path(latest_path, sizeof latest_path, dir, LATEST_NAME, ""));
    FILE *f = fopen(latest_path, "r");
    if (f) {
        if (!fgets(latest, sizeof latest, f))
            latest[0] = '\0';
        fclose(f);
        latest[strcspn(latest, "\r\n")] = '\0';
    }
    POET_TRY(list_checkpoints(dir, &files, &n));
    POET_ALLOC(cand, n + 1);
    if (latest[0] && !plain_name(latest)) {
        fprintf(stderr,
                "poet: warning: %s names '%s', not a file name inside the checkpoint "
                "directory; ignored\n",
                latest_path, latest);
        latest[0] = '\0';
    }
    if (latest[0] && join_path(cand[total], POET_PATH_MAX, dir, latest, "") == POET_OK)
        total++;
    for (int i = 0; i < n; i++) {
        if (latest[0] && strcmp(files[i].name, latest) == 0)
            continue;
        if (join_path(cand[total], POET_PATH_MAX, dir, files[i].name, "") == POET_OK)
            total++;
    }
    *out = cand;
    *count = total;
    cand = NULL;
fail:
    free(cand);
    free(files);
    return st;
}

/* The reason of a failed read without the leading "<path>: " it already names. */
static const char *reason_without_path(const char *message, const char *path) {
    size_t len = strlen(path);
    if (strncmp(message, path, len) == 0 && strncmp(message + len, ": ", 2) == 0)
        return message + len + 2;
    return message;
}

poet_status poet_checkpoint_resume(MPI_Comm comm, const poet_config *cfg, poet_ensemble *e,
                                   poet_train_position *pos, int *found, char *path_out,
                                   size_t path_size) {
    poet_status st = POET_OK;
    char(*cand)[POET_PATH_MAX] = NULL;
    int n = 0, rank, rejected = 0; /* rank 0: files that exist but do not verify */
    *found = 0;
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_TRY(poet_error_agree(comm, rank == 0 ? list_candidates(cfg->checkpoint_dir, &cand, &n)
                                              : POET_OK));
    POET_MPI(MPI_Bcast(&n, 1, MPI_INT, 0, comm));
    for (int i = 0; i < n; i++) {
        char path[POET_PATH_MAX];
        if (rank == 0)
            snprintf(path, sizeof path, "%s", cand[i]);
        POET_MPI(MPI_Bcast(path, (int)sizeof path, MPI_CHAR, 0, comm));
        /* read agrees on its outcome, so every rank takes the same branch here. */
        poet_status read = poet_checkpoint_read(comm, path, cfg, e, pos);
        if (read == POET_OK) {
            *found = 1;
            if (path_out && path_size)
                snprintf(path_out, path_size, "%s", path);
            break;
        }
        if (read != POET_ERR_CHECKPOINT)
            POET_TRY(read);
        if (rank == 0) {
            struct stat sb;
            rejected += stat(path, &sb) == 0;
            fprintf(stderr, "poet: skipping %s: %s\n", path,
                    reason_without_path(poet_error_message(), path));
        }
        poet_error_clear();
    }
    /* Checkpoints that all fail to verify are not "no checkpoint": starting afresh would overwrite
     * the run's log and, in time, its checkpoints. The user decides what to do with them. */
    if (!*found && rank == 0 && rejected)
        st = poet_error_set(POET_ERR_CHECKPOINT,
                            "%s: none of the %d checkpoint file(s) there verifies (each reported "
                            "above); move them aside to start afresh",
                            cfg->checkpoint_dir, rejected);
    POET_TRY(poet_error_agree(comm, st));
fail:
    free(cand);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Inspecting
 * ------------------------------------------------------------------------------------------- */

/* One member's stored tensors (member layout) and their recomputed checksum; fails when one holds a
 * non-finite value. */
static poet_status inspect_member(hid_t file, const char *path, const poet_arch_plan *plan, int j,
                                  float *block, uint32_t *crc) {
    poet_status st = POET_OK;
    for (int k = 0; k < KINDS; k++)
        for (int t = 0; t < kind_count(plan, k); t++) {
            const poet_tensor_info *ti = kind_tensor(plan, k, t);
            POET_TRY(read_tensor(file, path, H5P_DEFAULT, j, k, ti,
                                 block + k * plan->param_count + ti->offset));
        }
    *crc = checksum_floats(block, block_count(plan));
    POET_TRY(check_finite(plan, block, j, POET_ERR_CHECKPOINT, path, ""));
fail:
    return as_checkpoint_error(st, path);
}

poet_status poet_checkpoint_peek(const char *path, poet_config *stored, poet_shape *input,
                                 long *iteration) {
    poet_status st = POET_OK;
    hid_t file = H5I_INVALID_HID;
    header h = {0};
    poet_h5_quiet();
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); /* serial: the default (sec2) driver */
    if (file < 0)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s", open_failure(path));
    POET_TRY(read_header(file, path, &h));
    *stored = *h.config;
    *input = (poet_shape){h.input[0], h.input[1], h.input[2]};
    *iteration = h.pos.iteration;
fail:
    header_free(&h);
    poet_h5_close(&file);
    return st;
}

poet_status poet_checkpoint_inspect(const char *path, FILE *out) {
    poet_status st = POET_OK;
    hid_t file = H5I_INVALID_HID;
    header h = {0};
    uint32_t *stored = NULL;
    float *block = NULL;
    poet_arch_plan *plans = NULL;
    int bad = 0;
    poet_h5_quiet();
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); /* serial: the default (sec2) driver */
    if (file < 0)
        POET_FAIL(POET_ERR_CHECKPOINT,
                  "%s: cannot open as HDF5 (missing, truncated or not a "
                  "checkpoint): %s",
                  path, poet_hdf5_error_string());
    POET_TRY(read_header(file, path, &h));
    const poet_config *c = h.config;
    fprintf(out, "checkpoint %s\n", path);
    fprintf(out, "format_version %d (poet %s)\n", h.format_version, h.poet_version);
    fprintf(out, "iteration %ld of %ld (epoch %ld, position %ld)\n", h.pos.iteration,
            h.pos.total_iterations, h.pos.epoch, h.pos.position);
    fprintf(out, "seed %llu\n", (unsigned long long)h.seed);
    fprintf(out, "members %d, written by %d ranks\n", h.members, h.ranks_written);

    POET_ALLOC(plans, c->n_archs);
    size_t largest = 0;
    poet_shape input = {h.input[0], h.input[1], h.input[2]};
    for (int a = 0; a < c->n_archs; a++) {
        if (poet_arch_plan_build(&c->archs[a], input, c->classes, "stored config", &plans[a]) !=
            POET_OK)
            POET_TRY(recast(path, "stored architecture does not fit its input shape"));
        if (block_count(&plans[a]) > largest)
            largest = block_count(&plans[a]);
    }
    POET_ALLOC(block, largest);
    POET_ALLOC(stored, c->members);
    POET_TRY(
        as_checkpoint_error(read_checksums(file, path, H5P_DEFAULT, c->members, stored), path));

    fprintf(out, "%-6s %-10s %-10s %-10s %-6s %s\n", "member", "params", "stored", "computed",
            "status", "architecture");
    for (int j = 0; j < c->members; j++) {
        const poet_arch_plan *plan = &plans[c->member_arch[j]];
        char describe[DESCRIBE_MAX];
        uint32_t crc = 0;
        poet_arch_describe(&c->archs[c->member_arch[j]], describe, sizeof describe);
        poet_status got = as_checkpoint_error(check_member(file, path, &h, j), path);
        if (got == POET_OK)
            got = inspect_member(file, path, plan, j, block, &crc);
        if (got != POET_OK && got != POET_ERR_CHECKPOINT)
            POET_TRY(got);
        int ok = got == POET_OK && crc == stored[j];
        bad += !ok;
        char computed[16] = "-";
        if (crc || got == POET_OK)
            snprintf(computed, sizeof computed, "0x%08x", (unsigned)crc);
        fprintf(out, "%04d   %-10zu 0x%08x %-10s %-6s %s", j, plan->param_count,
                (unsigned)stored[j], computed, ok ? "OK" : "BAD", describe);
        if (got != POET_OK)
            fprintf(out, " (%s)", reason_without_path(poet_error_message(), path));
        fprintf(out, "\n");
        poet_error_clear();
    }
    if (bad)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: %d of %d members do not verify", path, bad, c->members);
fail:
    free(plans);
    free(block);
    free(stored);
    header_free(&h);
    poet_h5_close(&file);
    return st;
}
