/* losslog.c — the per-iteration loss log: one HDF5 file per run, written collectively via MPI-IO.
 *
 * Schema and meaning of every dataset: docs/log-format.md. Sizes: T iteration rows, E evaluation
 * rows, M members, n = rows buffered since the last flush.
 *
 * Rows live in memory until a flush, so between flushes the file on disk is never touched: a run
 * killed at any moment outside a flush leaves a file that opens and holds every flushed row. A
 * flush extends every dataset (collective), writes the new rows (collective transfers; rank 0
 * writes the ensemble columns, every rank its own members' columns) and flushes the file globally.
 *
 * Resuming shrinks datasets. Parallel HDF5 1.10 shrinks chunked datasets unreliably (ranks whose
 * caches differ disagree inside the file-size collectives and hang), so rank 0 does the truncation
 * alone through the serial driver before the file is opened for MPI-IO.
 */
#include "poet/losslog.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "poet/fsutil.h"
#include "poet/h5util.h"
#include "poet/mpierror.h"

#define LOSSLOG_FORMAT_VERSION 2 /* 2: mean member loss and diversity columns */

enum {
    COL_ITERATION,
    COL_LOSS,
    COL_ACCURACY,
    COL_LR,
    COL_SECONDS,
    COL_BYTES,
    COL_MEAN_MEMBER,
    COL_DIVERSITY,
    N_ITER_COLS
};
static const char *const ITER_NAMES[N_ITER_COLS] = {
    "iteration", "loss", "accuracy", "lr", "seconds", "bytes", "mean_member_loss", "diversity"};

enum {
    EV_ITERATION,
    EV_IMAGES,
    EV_NLL,
    EV_ACCURACY,
    EV_MEAN_MEMBER_ACCURACY,
    EV_DISAGREEMENT,
    EV_MEAN_MEMBER_NLL,
    EV_DIVERSITY,
    EV_BRIER,
    EV_ECE,
    EV_PROBMEAN_ACCURACY,
    EV_PROBMEAN_NLL,
    EV_PROBMEAN_BRIER,
    EV_PROBMEAN_ECE,
    EV_MEAN_MEMBER_BRIER,
    EV_MEAN_MEMBER_ECE,
    EV_MEMBERS_AT_CHANCE,
    N_EVAL_COLS
};
static const char *const EVAL_NAMES[N_EVAL_COLS] = {"iteration",
                                                    "images",
                                                    "ensemble_nll",
                                                    "ensemble_accuracy",
                                                    "mean_member_accuracy",
                                                    "disagreement",
                                                    "mean_member_nll",
                                                    "diversity",
                                                    "ensemble_brier",
                                                    "ensemble_ece",
                                                    "probmean_accuracy",
                                                    "probmean_nll",
                                                    "probmean_brier",
                                                    "probmean_ece",
                                                    "mean_member_brier",
                                                    "mean_member_ece",
                                                    "members_at_chance"};

/* The [E, M] evaluation matrices, one column per member. */
enum { MX_ACCURACY, MX_NLL, MX_BRIER, MX_ECE, MX_AT_CHANCE, N_EVAL_MATRICES };
static const char *const MATRIX_NAMES[N_EVAL_MATRICES] = {
    "member_accuracy", "member_nll", "member_brier", "member_ece", "member_at_chance"};

static const double *matrix_row(const poet_eval_result *res, int which) {
    switch (which) {
    case MX_ACCURACY:
        return res->member_accuracy;
    case MX_NLL:
        return res->member_nll;
    case MX_BRIER:
        return res->member_brier;
    case MX_ECE:
        return res->member_ece;
    default:
        return res->member_at_chance;
    }
}

/* The open datasets of one log file and their rows. */
typedef struct {
    hid_t iter[N_ITER_COLS];       /* [T] each */
    hid_t member_loss;             /* [T, M] */
    hid_t eval[N_EVAL_COLS];       /* [E] each */
    hid_t matrix[N_EVAL_MATRICES]; /* [E, M] each */
    hsize_t rows, eval_rows;       /* T and E */
} log_layout;

struct poet_losslog {
    MPI_Comm comm;
    int rank;
    char path[POET_PATH_MAX];
    int members; /* M */
    int n_local;
    int local_ids[POET_MAX_MEMBERS];  /* ascending global ids of this rank's members */
    int local_slot[POET_MAX_MEMBERS]; /* caller's local index of ascending position p */
    hid_t file, dxpl;
    log_layout ds;
    /* buffered since the last flush */
    int capacity;                /* cfg->log_flush_every */
    int buffered;                /* n */
    poet_iteration_record *recs; /* [capacity] (rank 0's are written) */
    double *local_loss;          /* [capacity, n_local], columns in ascending global id order */
    int eval_buffered, eval_capacity;
    poet_eval_result *evals; /* [eval_capacity] */
    int failed; /* a write failed: nothing more is written, rows already flushed stay as they are */
};

/* ---- small HDF5 helpers ---------------------------------------------------------------------- */

static void layout_init(log_layout *ds) {
    for (int c = 0; c < N_ITER_COLS; c++)
        ds->iter[c] = H5I_INVALID_HID;
    for (int c = 0; c < N_EVAL_COLS; c++)
        ds->eval[c] = H5I_INVALID_HID;
    ds->member_loss = H5I_INVALID_HID;
    for (int x = 0; x < N_EVAL_MATRICES; x++)
        ds->matrix[x] = H5I_INVALID_HID;
    ds->rows = ds->eval_rows = 0;
}

static void layout_close(log_layout *ds) {
    for (int c = 0; c < N_ITER_COLS; c++)
        poet_h5_close(&ds->iter[c]);
    for (int c = 0; c < N_EVAL_COLS; c++)
        poet_h5_close(&ds->eval[c]);
    poet_h5_close(&ds->member_loss);
    for (int x = 0; x < N_EVAL_MATRICES; x++)
        poet_h5_close(&ds->matrix[x]);
}

/* Rows per chunk: about 128 KiB of doubles per chunk, between 16 and 1024 rows. */
static hsize_t chunk_rows(int width) {
    hsize_t rows = (hsize_t)(131072 / (8 * (width > 0 ? width : 1)));
    return rows < 16 ? 16 : rows > 1024 ? 1024 : rows;
}

/* An empty extendible dataset of `width` columns (width 0: one-dimensional). */
static poet_status create_dataset(hid_t parent, const char *name, hid_t type, int width,
                                  const char *path, hid_t *out) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    int rank = width > 0 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)width}, maxdims[2] = {H5S_UNLIMITED, (hsize_t)width};
    hsize_t chunk[2] = {chunk_rows(width), (hsize_t)width};
    POET_H5(space = H5Screate_simple(rank, dims, maxdims));
    POET_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE));
    POET_H5(H5Pset_chunk(dcpl, rank, chunk));
    *out = H5Dcreate2(parent, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (*out < 0)
        POET_FAIL(POET_ERR_HDF5, "%s: cannot create dataset %s: %s", path, name,
                  poet_hdf5_error_string());
fail:
    poet_h5_close(&dcpl);
    poet_h5_close(&space);
    return st;
}

/* Opens an existing dataset and checks its rank and column count; returns its row count. */
static poet_status open_dataset(hid_t parent, const char *group, const char *name, int width,
                                const char *path, hid_t *out, hsize_t *rows, int *foreign) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    int want = width > 0 ? 2 : 1;
    if (H5Lexists(parent, name, H5P_DEFAULT) <= 0)
        POET_FAIL(POET_ERR_DATA, "%s: not a poet loss log (cannot resume it): missing /%s/%s", path,
                  group, name);
    POET_H5(*out = H5Dopen2(parent, name, H5P_DEFAULT));
    POET_H5(space = H5Dget_space(*out));
    int got = H5Sget_simple_extent_ndims(space);
    if (got != want)
        POET_FAIL(POET_ERR_DATA, "%s: /%s/%s: expected %d dimension(s), found %d", path, group,
                  name, want, got);
    H5Sget_simple_extent_dims(space, dims, NULL);
    if (width > 0 && dims[1] != (hsize_t)width) {
        *foreign = 1;
        POET_FAIL(POET_ERR_DATA,
                  "%s: /%s/%s has %llu member columns but this run has %d members; the log "
                  "belongs to another ensemble",
                  path, group, name, (unsigned long long)dims[1], width);
    }
    *rows = dims[0];
fail:
    poet_h5_close(&space);
    return st;
}

static poet_status set_rows(hid_t d, hsize_t rows, int width, const char *path) {
    poet_status st = POET_OK;
    hsize_t dims[2] = {rows, (hsize_t)width};
    if (H5Dset_extent(d, dims) < 0)
        POET_FAIL(POET_ERR_HDF5, "%s: cannot resize a dataset to %llu rows: %s", path,
                  (unsigned long long)rows, poet_hdf5_error_string());
fail:
    return st;
}

/* ---- layout ---------------------------------------------------------------------------------- */

static poet_status layout_create(hid_t file, int members, const char *path, log_layout *ds) {
    poet_status st = POET_OK;
    hid_t iters = H5I_INVALID_HID, evals = H5I_INVALID_HID;
    POET_H5(iters = H5Gcreate2(file, "iterations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    for (int c = 0; c < N_ITER_COLS; c++)
        POET_TRY(create_dataset(iters, ITER_NAMES[c],
                                c == COL_ITERATION ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, 0, path,
                                &ds->iter[c]));
    POET_TRY(
        create_dataset(iters, "member_loss", H5T_NATIVE_DOUBLE, members, path, &ds->member_loss));
    POET_H5(evals = H5Gcreate2(file, "eval", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    for (int c = 0; c < N_EVAL_COLS; c++)
        POET_TRY(create_dataset(evals, EVAL_NAMES[c],
                                c <= EV_IMAGES || c == EV_MEMBERS_AT_CHANCE ? H5T_NATIVE_INT64
                                                                            : H5T_NATIVE_DOUBLE,
                                0, path, &ds->eval[c]));
    for (int x = 0; x < N_EVAL_MATRICES; x++)
        POET_TRY(create_dataset(evals, MATRIX_NAMES[x], H5T_NATIVE_DOUBLE, members, path,
                                &ds->matrix[x]));
fail:
    poet_h5_close(&evals);
    poet_h5_close(&iters);
    return st;
}

/* Opens every dataset of an existing log. T (E) is the rows every iteration (evaluation) dataset
 * has: a flush cut short could leave them uneven, and only the common prefix is complete. A log of
 * another ensemble (other member count) fails with *foreign set; any other failure means damage. */
static poet_status layout_open(hid_t file, int members, const char *path, log_layout *ds,
                               int *foreign) {
    poet_status st = POET_OK;
    hid_t iters = H5I_INVALID_HID, evals = H5I_INVALID_HID;
    hsize_t rows = 0;
    for (int g = 0; g < 2; g++)
        if (H5Lexists(file, g ? "eval" : "iterations", H5P_DEFAULT) <= 0)
            POET_FAIL(POET_ERR_DATA, "%s: not a poet loss log (cannot resume it): missing /%s",
                      path, g ? "eval" : "iterations");
    POET_H5(iters = H5Gopen2(file, "iterations", H5P_DEFAULT));
    POET_H5(evals = H5Gopen2(file, "eval", H5P_DEFAULT));
    for (int c = 0; c <= N_ITER_COLS; c++) {
        int matrix = c == N_ITER_COLS;
        POET_TRY(open_dataset(iters, "iterations", matrix ? "member_loss" : ITER_NAMES[c],
                              matrix ? members : 0, path, matrix ? &ds->member_loss : &ds->iter[c],
                              &rows, foreign));
        ds->rows = c == 0 || rows < ds->rows ? rows : ds->rows;
    }
    for (int c = 0; c < N_EVAL_COLS + N_EVAL_MATRICES; c++) {
        const char *name = c < N_EVAL_COLS ? EVAL_NAMES[c] : MATRIX_NAMES[c - N_EVAL_COLS];
        hid_t *d = c < N_EVAL_COLS ? &ds->eval[c] : &ds->matrix[c - N_EVAL_COLS];
        POET_TRY(open_dataset(evals, "eval", name, c < N_EVAL_COLS ? 0 : members, path, d, &rows,
                              foreign));
        ds->eval_rows = c == 0 || rows < ds->eval_rows ? rows : ds->eval_rows;
    }
fail:
    poet_h5_close(&evals);
    poet_h5_close(&iters);
    return st;
}

/* Resizes every dataset to T = rows and E = eval_rows. */
static poet_status layout_set_rows(log_layout *ds, hsize_t rows, hsize_t eval_rows, int members,
                                   const char *path) {
    poet_status st = POET_OK;
    for (int c = 0; c < N_ITER_COLS; c++)
        POET_TRY(set_rows(ds->iter[c], rows, 0, path));
    POET_TRY(set_rows(ds->member_loss, rows, members, path));
    for (int c = 0; c < N_EVAL_COLS; c++)
        POET_TRY(set_rows(ds->eval[c], eval_rows, 0, path));
    for (int x = 0; x < N_EVAL_MATRICES; x++)
        POET_TRY(set_rows(ds->matrix[x], eval_rows, members, path));
    ds->rows = rows;
    ds->eval_rows = eval_rows;
fail:
    return st;
}

/* ---- resume (rank 0 alone, serial driver) ---------------------------------------------------- */

/* Leading rows of the int64 column `d` ([rows]) below `limit` (or equal to it, when `inclusive`).
 * Rows are appended in iteration order, so that prefix is exactly what a resumed run keeps. */
static poet_status kept_prefix(hid_t d, hsize_t rows, long limit, int inclusive, const char *path,
                               hsize_t *kept, long *last) {
    poet_status st = POET_OK;
    int64_t *values = NULL; /* [rows] */
    hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
    hsize_t start = 0, n = rows, count = 0;
    if (rows > 0) {
        POET_ALLOC(values, rows);
        POET_H5(file_space = H5Dget_space(d));
        POET_H5(mem_space = H5Screate_simple(1, &n, NULL));
        POET_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, NULL, &n, NULL));
        if (H5Dread(d, H5T_NATIVE_INT64, mem_space, file_space, H5P_DEFAULT, values) < 0)
            POET_FAIL(POET_ERR_DATA, "%s: cannot read the iteration column to resume: %s", path,
                      poet_hdf5_error_string());
        while (count < rows && (values[count] < limit || (inclusive && values[count] == limit)))
            count++;
    }
    *kept = count;
    *last = count ? (long)values[count - 1] : -1;
fail:
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    free(values);
    return st;
}

/* Iteration rows at or past first_iteration are dropped (the resumed run writes them again);
 * evaluation rows *past* it too. An evaluation at exactly first_iteration measured the checkpointed
 * weights (train.c evaluates before it checkpoints) and the resumed run does not repeat it, so it
 * stays. A log whose rows end elsewhere than just before first_iteration does not match the
 * checkpoint: that is worth a warning (the rows are kept), not a refusal. Any failure other than a
 * log of another ensemble sets *damaged. Serial: see the top of the file. */
static poet_status truncate_for_resume(const char *path, int members, long first_iteration,
                                       int *damaged) {
    poet_status st = POET_OK;
    hid_t file = H5I_INVALID_HID;
    log_layout ds;
    hsize_t keep = 0, keep_eval = 0;
    long last = -1, last_eval = -1;
    int foreign = 0;
    layout_init(&ds);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0)
        POET_FAIL(POET_ERR_DATA,
                  "%s: cannot reopen the loss log to resume it (damaged or not "
                  "HDF5?): %s",
                  path, poet_hdf5_error_string());
    POET_TRY(layout_open(file, members, path, &ds, &foreign));
    POET_TRY(kept_prefix(ds.iter[COL_ITERATION], ds.rows, first_iteration, 0, path, &keep, &last));
    POET_TRY(kept_prefix(ds.eval[EV_ITERATION], ds.eval_rows, first_iteration, 1, path, &keep_eval,
                         &last_eval));
    if (last != first_iteration - 1)
        fprintf(stderr,
                "poet: warning: %s: the log's iterations end at %ld but the checkpoint resumes at "
                "iteration %ld: the log does not match the checkpoint (rows kept as they are)\n",
                path, last, first_iteration);
    POET_TRY(layout_set_rows(&ds, keep, keep_eval, members, path));
fail:
    layout_close(&ds);
    if (poet_h5_close(&file) < 0 && st == POET_OK)
        st = poet_error_set(POET_ERR_HDF5, "%s: cannot close the loss log after truncating it: %s",
                            path, poet_hdf5_error_string());
    *damaged = st != POET_OK && !foreign;
    return st;
}

/* Rank 0: renames a damaged log to the first free <path>.damaged-<n>, so that nothing in it is lost
 * and a new log can take its place. */
static poet_status move_aside(const char *path, char *moved, size_t size) {
    struct stat sb;
    for (int n = 1; n < 10000; n++) {
        if (snprintf(moved, size, "%s.damaged-%d", path, n) >= (int)size)
            break;
        if (stat(moved, &sb) != 0 && errno == ENOENT) {
            if (rename(path, moved) != 0)
                return poet_error_set(POET_ERR_IO,
                                      "%s: cannot move the damaged loss log aside to "
                                      "%s: %s",
                                      path, moved, strerror(errno));
            return POET_OK;
        }
    }
    return poet_error_set(POET_ERR_IO, "%s: no free name to move the damaged loss log aside", path);
}

/* Rank 0 prepares a resumed log (or finds none); every rank learns the outcome, and on failure
 * rank 0's status and message, so that all ranks fail alike. A damaged log (not HDF5, truncated,
 * datasets missing or unreadable) is moved aside with a warning and a new log continues from
 * first_iteration; a log of another ensemble stays an error. */
static poet_status prepare_resume(poet_losslog *log, long first_iteration, int *exists) {
    poet_status st = POET_OK;
    struct {
        int exists, status;
        char message[512];
    } outcome = {0, POET_OK, ""};
    if (log->rank == 0) {
        struct stat sb;
        int damaged = 0;
        outcome.exists = stat(log->path, &sb) == 0;
        if (outcome.exists)
            outcome.status =
                truncate_for_resume(log->path, log->members, first_iteration, &damaged);
        if (damaged) {
            char moved[POET_PATH_MAX + 32], reason[sizeof outcome.message];
            snprintf(reason, sizeof reason, "%s", poet_error_message());
            poet_error_clear();
            outcome.status = move_aside(log->path, moved, sizeof moved);
            outcome.exists = 0;
            if (outcome.status == POET_OK)
                fprintf(stderr,
                        "poet: warning: the loss log is damaged (%s); moved it aside to %s "
                        "and starting a new log at iteration %ld\n",
                        reason, moved, first_iteration);
        }
        if (outcome.status != POET_OK)
            snprintf(outcome.message, sizeof outcome.message, "%s", poet_error_message());
    }
    POET_MPI(MPI_Bcast(&outcome, (int)sizeof outcome, MPI_BYTE, 0, log->comm));
    if (outcome.status != POET_OK)
        POET_FAIL((poet_status)outcome.status, "%s", outcome.message);
    *exists = outcome.exists;
fail:
    return st;
}

/* Every rank's outcome of one collective write (`err`: errno right after it). A full disk fails
 * only some ranks; all agree before any goes on to the next collective call, and fail together
 * with one I/O error naming the log and the cause. A failed log stays failed (see poet_losslog). */
static poet_status agree_write(poet_losslog *log, herr_t written, int err, const char *what) {
    poet_status st = POET_OK;
    if (written < 0)
        st = poet_error_set(POET_ERR_IO, "%s: cannot write %s: %s", log->path, what,
                            poet_fs_write_cause(log->path, err, poet_hdf5_error_string()));
    st = poet_error_agree(log->comm, st);
    log->failed = log->failed || st != POET_OK;
    return st;
}

/* ---- opening --------------------------------------------------------------------------------- */

/* The run's identity on the root: every rank writes the same values (attributes are metadata, so
 * the writes are collective), hence the time string comes from rank 0. */
static poet_status write_root_attributes(poet_losslog *log, const poet_config *cfg, int ranks,
                                         int created) {
    poet_status st = POET_OK;
    char now[64] = "";
    char *json = NULL;
    if (log->rank == 0) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    POET_MPI(MPI_Bcast(now, (int)sizeof now, MPI_CHAR, 0, log->comm));
    json = poet_config_to_json(cfg);
    if (!json)
        POET_FAIL(POET_ERR_NOMEM, "%s: cannot serialise the config for the log", log->path);
    /* Integers as H5T_NATIVE_INT64 (stored as 64-bit little-endian): what readers expect. */
    hid_t f = log->file;
    const char *path = log->path;
    POET_TRY(poet_h5_attr_write_string(f, "config", json, path));
    POET_TRY(poet_h5_attr_write_string(f, "poet_version", POET_VERSION, path));
    POET_TRY(poet_h5_attr_write_int(f, "format_version", H5T_NATIVE_INT64, LOSSLOG_FORMAT_VERSION,
                                    path));
    POET_TRY(poet_h5_attr_write_int(f, "members", H5T_NATIVE_INT64, cfg->members, path));
    POET_TRY(poet_h5_attr_write_int(f, "ranks", H5T_NATIVE_INT64, ranks, path));
    POET_TRY(poet_h5_attr_write_int(f, "batch_size", H5T_NATIVE_INT64, cfg->batch_size, path));
    POET_TRY(poet_h5_attr_write_double(f, "lr", cfg->lr, path));
    POET_TRY(poet_h5_attr_write_string(f, "tree", poet_tree_kind_name(cfg->tree), path));
    POET_TRY(poet_h5_attr_write_int(f, "arity", H5T_NATIVE_INT64, cfg->arity, path));
    POET_TRY(poet_h5_attr_write_string(f, "overlap", poet_overlap_mode_name(cfg->overlap), path));
    POET_TRY(poet_h5_attr_write_string(f, "run_name", cfg->run_name, path));
    POET_TRY(poet_h5_attr_write_string(f, created ? "created" : "resumed", now, path));
fail:
    free(json);
    return st;
}

static poet_status open_file(poet_losslog *log, int exists) {
    poet_status st = POET_OK;
    hid_t fapl = H5I_INVALID_HID;
    POET_H5(fapl = H5Pcreate(H5P_FILE_ACCESS));
    POET_H5(H5Pset_fapl_mpio(fapl, log->comm, MPI_INFO_NULL));
    if (exists)
        log->file = H5Fopen(log->path, H5F_ACC_RDWR, fapl);
    else
        log->file = H5Fcreate(log->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (log->file < 0)
        POET_FAIL(exists ? POET_ERR_DATA : POET_ERR_IO, "%s: cannot %s the loss log: %s", log->path,
                  exists ? "reopen (to resume)" : "create", poet_hdf5_error_string());
fail:
    poet_h5_close(&fapl);
    return st;
}

/* The caller passes member losses in local order; the file wants ascending global ids. */
static void order_local_members(poet_losslog *log, const poet_ensemble *e) {
    /* A member group's ranks hold the same members (group.h): its shard 0 writes their columns. */
    log->n_local = e->shard > 0 ? 0 : e->n_local;
    for (int i = 0; i < e->n_local; i++)
        log->local_slot[i] = i;
    for (int i = 1; i < e->n_local; i++) /* insertion sort: n_local is small and usually sorted */
        for (int j = i; j > 0; j--) {
            int *slot = log->local_slot;
            if (e->local_ids[slot[j - 1]] < e->local_ids[slot[j]])
                break;
            int tmp = slot[j];
            slot[j] = slot[j - 1];
            slot[j - 1] = tmp;
        }
    for (int p = 0; p < e->n_local; p++)
        log->local_ids[p] = e->local_ids[log->local_slot[p]];
}

poet_status poet_losslog_open(MPI_Comm comm, const char *path, const poet_config *cfg,
                              const poet_ensemble *e, long first_iteration, poet_losslog **out) {
    poet_status st = POET_OK;
    poet_losslog *log = NULL;
    int exists = 0, ranks = 1, foreign = 0;
    *out = NULL;
    poet_h5_quiet();
    POET_ALLOC(log, 1);
    log->file = log->dxpl = H5I_INVALID_HID;
    layout_init(&log->ds);
    log->comm = comm;
    POET_MPI(MPI_Comm_rank(comm, &log->rank));
    POET_MPI(MPI_Comm_size(comm, &ranks));
    snprintf(log->path, sizeof log->path, "%s", path);
    log->members = cfg->members;
    order_local_members(log, e);
    log->capacity = cfg->log_flush_every > 0 ? cfg->log_flush_every : 1;
    POET_ALLOC(log->recs, log->capacity);
    POET_ALLOC(log->local_loss, (size_t)log->capacity * (log->n_local ? log->n_local : 1));
    POET_H5(log->dxpl = H5Pcreate(H5P_DATASET_XFER));
    POET_H5(H5Pset_dxpl_mpio(log->dxpl, H5FD_MPIO_COLLECTIVE));

    if (first_iteration > 0)
        POET_TRY(prepare_resume(log, first_iteration, &exists));
    POET_TRY(open_file(log, exists));
    if (exists)
        POET_TRY(layout_open(log->file, log->members, log->path, &log->ds, &foreign));
    else
        POET_TRY(layout_create(log->file, log->members, log->path, &log->ds));
    POET_TRY(write_root_attributes(log, cfg, ranks, !exists));
    poet_h5_watch_arm("opening the loss log", log->path, NULL);
    errno = 0;
    herr_t flushed = H5Fflush(log->file, H5F_SCOPE_GLOBAL);
    st = agree_write(log, flushed, errno, "the log's metadata");
    poet_h5_watch_disarm();
    POET_TRY(st);
    *out = log;
    return POET_OK;
fail:
    if (log) {
        /* Close without flushing rows: there are none, and the file may be unusable. */
        log->buffered = log->eval_buffered = 0;
        poet_losslog_close(log);
    }
    return st;
}

/* ---- writing --------------------------------------------------------------------------------- */

/* Writes rows [start, start+n) of a one-column dataset from `values`; only `writer` selects
 * anything, the other ranks join the collective transfer with an empty selection. */
static poet_status write_column(poet_losslog *log, hid_t d, hid_t type, hsize_t start, hsize_t n,
                                const void *values, int writer) {
    poet_status st = POET_OK;
    hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
    POET_H5(file_space = H5Dget_space(d));
    POET_H5(mem_space = H5Screate_simple(1, &n, NULL));
    if (writer)
        POET_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, NULL, &n, NULL));
    else {
        POET_H5(H5Sselect_none(file_space));
        POET_H5(H5Sselect_none(mem_space));
    }
    errno = 0;
    herr_t written = H5Dwrite(d, type, mem_space, file_space, log->dxpl, values);
    POET_TRY(agree_write(log, written, errno, "log rows"));
fail:
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    return st;
}

/* Writes rows [start, start+n) of the columns `ids` ([count], ascending) of a [rows, M] dataset
 * from `values` ([n, count], row-major). The selection is a union of column blocks, one per run of
 * consecutive ids; HDF5 walks it in row-major file order, which is the memory order because the ids
 * ascend. count = 0 joins the collective transfer with an empty selection. */
static poet_status write_columns(poet_losslog *log, hid_t d, hsize_t start, hsize_t n,
                                 const int *ids, int count, const double *values) {
    poet_status st = POET_OK;
    hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
    hsize_t mem_dims[2] = {n, (hsize_t)(count > 0 ? count : 1)};
    POET_H5(file_space = H5Dget_space(d));
    POET_H5(mem_space = H5Screate_simple(2, mem_dims, NULL));
    POET_H5(H5Sselect_none(file_space));
    if (count == 0)
        POET_H5(H5Sselect_none(mem_space));
    for (int i = 0; i < count;) {
        int run = 1;
        while (i + run < count && ids[i + run] == ids[i] + run)
            run++;
        hsize_t offset[2] = {start, (hsize_t)ids[i]}, block[2] = {n, (hsize_t)run};
        POET_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_OR, offset, NULL, block, NULL));
        i += run;
    }
    errno = 0;
    herr_t written = H5Dwrite(d, H5T_NATIVE_DOUBLE, mem_space, file_space, log->dxpl, values);
    POET_TRY(agree_write(log, written, errno, "member columns"));
fail:
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    return st;
}

/* Per-rank arrays up to this many ranks: attributes live in the object header, 64 KiB at most. */
#define TRAFFIC_RANKS_MAX 1024

poet_status poet_losslog_traffic(poet_losslog *log, int groups, int group_size, double tree_bytes,
                                 double group_bytes, double data_parallel_bytes) {
    poet_status st = POET_OK;
    int ranks = 1;
    double *all = NULL; /* [2, P] tree bytes, then group bytes */
    if (log->failed)
        return POET_OK;
    POET_MPI(MPI_Comm_size(log->comm, &ranks));
    POET_ALLOC(all, 2 * (size_t)ranks);
    POET_MPI(MPI_Allgather(&tree_bytes, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, log->comm));
    POET_MPI(MPI_Allgather(&group_bytes, 1, MPI_DOUBLE, all + ranks, 1, MPI_DOUBLE, log->comm));
    /* Attributes are metadata: every rank writes the same values. */
    hid_t f = log->file;
    st = poet_h5_attr_write_int(f, "groups", H5T_NATIVE_INT64, groups, log->path);
    if (st == POET_OK)
        st = poet_h5_attr_write_int(f, "group_size", H5T_NATIVE_INT64, group_size, log->path);
    if (st == POET_OK)
        st = poet_h5_attr_write_double(f, "data_parallel_bytes_per_iteration", data_parallel_bytes,
                                       log->path);
    if (st == POET_OK && ranks <= TRAFFIC_RANKS_MAX)
        st = poet_h5_attr_write(f, "tree_bytes_per_iteration", H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE,
                                (hsize_t)ranks, all, log->path);
    if (st == POET_OK && ranks <= TRAFFIC_RANKS_MAX)
        st = poet_h5_attr_write(f, "group_bytes_per_iteration", H5T_NATIVE_DOUBLE,
                                H5T_NATIVE_DOUBLE, (hsize_t)ranks, all + ranks, log->path);
    st = poet_error_agree(log->comm, st);
    log->failed = log->failed || st != POET_OK;
fail:
    free(all);
    return st;
}

/* Every rank must flush the same number of rows, or the collective resizes disagree and the file
 * is corrupted; checked here because a mismatch is a caller bug that would otherwise hang. */
static poet_status check_same_rows(poet_losslog *log) {
    poet_status st = POET_OK;
    int mine[4] = {log->buffered, -log->buffered, log->eval_buffered, -log->eval_buffered};
    int all[4];
    POET_MPI(MPI_Allreduce(mine, all, 4, MPI_INT, MPI_MAX, log->comm));
    if (all[0] != -all[1] || all[2] != -all[3])
        POET_FAIL(POET_ERR_INTERNAL,
                  "%s: ranks buffered different numbers of log rows (iterations %d..%d, "
                  "evaluations %d..%d); every rank must append the same rows",
                  log->path, -all[1], all[0], -all[3], all[2]);
fail:
    return st;
}

static poet_status flush_iterations(poet_losslog *log, double *scratch) {
    poet_status st = POET_OK;
    hsize_t n = (hsize_t)log->buffered, start = log->ds.rows;
    int64_t *ints = (int64_t *)scratch;  /* same size as a double */
    double *sums = NULL, *totals = NULL; /* [n] this rank's and every rank's kept member losses */
    POET_ALLOC(sums, n);
    POET_ALLOC(totals, n);
    for (hsize_t r = 0; r < n; r++)
        sums[r] = log->recs[r].kept_loss_sum;
    POET_MPI(MPI_Reduce(sums, totals, (int)n, MPI_DOUBLE, MPI_SUM, 0, log->comm));
    for (int c = 0; c < N_ITER_COLS; c++)
        POET_TRY(set_rows(log->ds.iter[c], start + n, 0, log->path));
    POET_TRY(set_rows(log->ds.member_loss, start + n, log->members, log->path));
    for (int c = 0; c < N_ITER_COLS; c++) {
        for (hsize_t r = 0; r < n; r++) {
            const poet_iteration_record *rec = &log->recs[r];
            switch (c) {
            case COL_ITERATION:
                ints[r] = rec->iteration;
                break;
            case COL_LOSS:
                scratch[r] = rec->loss;
                break;
            case COL_ACCURACY:
                scratch[r] = rec->accuracy;
                break;
            case COL_LR:
                scratch[r] = rec->lr;
                break;
            case COL_SECONDS:
                scratch[r] = rec->seconds;
                break;
            case COL_BYTES:
                scratch[r] = rec->bytes;
                break;
            case COL_MEAN_MEMBER:
                scratch[r] = totals[r] / rec->kept;
                break;
            default:
                scratch[r] = totals[r] / rec->kept - rec->loss;
                break;
            }
        }
        POET_TRY(write_column(log, log->ds.iter[c],
                              c == COL_ITERATION ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, start, n,
                              scratch, log->rank == 0));
    }
    POET_TRY(write_columns(log, log->ds.member_loss, start, n, log->local_ids, log->n_local,
                           log->local_loss));
    log->ds.rows = start + n;
    log->buffered = 0;
fail:
    free(sums);
    free(totals);
    return st;
}

/* Evaluation rows: rank 0's results hold every member's values, so rank 0 writes whole rows. */
static poet_status flush_evals(poet_losslog *log, double *scratch) {
    poet_status st = POET_OK;
    hsize_t n = (hsize_t)log->eval_buffered, start = log->ds.eval_rows;
    int64_t *ints = (int64_t *)scratch;
    double *matrix = NULL; /* [n, M] */
    int *all_ids = NULL;   /* [M] 0..M-1 */
    int writer = log->rank == 0;
    for (int c = 0; c < N_EVAL_COLS; c++)
        POET_TRY(set_rows(log->ds.eval[c], start + n, 0, log->path));
    for (int x = 0; x < N_EVAL_MATRICES; x++)
        POET_TRY(set_rows(log->ds.matrix[x], start + n, log->members, log->path));
    for (int c = 0; c < N_EVAL_COLS; c++) {
        for (hsize_t r = 0; r < n; r++) {
            const poet_eval_result *res = &log->evals[r];
            switch (c) {
            case EV_ITERATION:
                ints[r] = res->iteration;
                break;
            case EV_IMAGES:
                ints[r] = res->images;
                break;
            case EV_NLL:
                scratch[r] = res->ensemble_nll;
                break;
            case EV_ACCURACY:
                scratch[r] = res->ensemble_accuracy;
                break;
            case EV_MEAN_MEMBER_ACCURACY:
                scratch[r] = res->mean_member_accuracy;
                break;
            case EV_DISAGREEMENT:
                scratch[r] = res->disagreement;
                break;
            case EV_MEAN_MEMBER_NLL:
                scratch[r] = res->mean_member_nll;
                break;
            case EV_DIVERSITY:
                scratch[r] = res->mean_member_nll - res->ensemble_nll;
                break;
            case EV_BRIER:
                scratch[r] = res->ensemble_brier;
                break;
            case EV_ECE:
                scratch[r] = res->ensemble_ece;
                break;
            case EV_PROBMEAN_ACCURACY:
                scratch[r] = res->probmean_accuracy;
                break;
            case EV_PROBMEAN_NLL:
                scratch[r] = res->probmean_nll;
                break;
            case EV_PROBMEAN_BRIER:
                scratch[r] = res->probmean_brier;
                break;
            case EV_PROBMEAN_ECE:
                scratch[r] = res->probmean_ece;
                break;
            case EV_MEAN_MEMBER_BRIER:
                scratch[r] = res->mean_member_brier;
                break;
            case EV_MEAN_MEMBER_ECE:
                scratch[r] = res->mean_member_ece;
                break;
            default:
                ints[r] = res->members_at_chance;
                break;
            }
        }
        hid_t type =
            c <= EV_IMAGES || c == EV_MEMBERS_AT_CHANCE ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
        POET_TRY(write_column(log, log->ds.eval[c], type, start, n, scratch, writer));
    }
    POET_ALLOC(matrix, (size_t)n * log->members);
    POET_ALLOC(all_ids, log->members);
    for (int j = 0; j < log->members; j++)
        all_ids[j] = j;
    for (int which = 0; which < N_EVAL_MATRICES; which++) {
        for (hsize_t r = 0; r < n; r++)
            memcpy(&matrix[r * log->members], matrix_row(&log->evals[r], which),
                   (size_t)log->members * sizeof *matrix);
        POET_TRY(write_columns(log, log->ds.matrix[which], start, n, all_ids,
                               writer ? log->members : 0, matrix));
    }
    log->ds.eval_rows = start + n;
    log->eval_buffered = 0;
fail:
    free(all_ids);
    free(matrix);
    return st;
}

poet_status poet_losslog_flush(poet_losslog *log) {
    poet_status st = POET_OK;
    double *scratch = NULL; /* [max(n, eval n)] one column at a time */
    if (log->failed)
        return poet_error_set(POET_ERR_IO, "%s: an earlier write to the loss log failed",
                              log->path);
    POET_TRY(check_same_rows(log));
    if (log->buffered == 0 && log->eval_buffered == 0)
        return POET_OK;
    poet_h5_watch_arm("writing the loss log", log->path, NULL);
    POET_ALLOC(scratch, log->buffered > log->eval_buffered ? log->buffered : log->eval_buffered);
    if (log->buffered)
        POET_TRY(flush_iterations(log, scratch));
    if (log->eval_buffered)
        POET_TRY(flush_evals(log, scratch));
    /* Global flush: the superblock, object headers and chunk indexes on disk now describe every
     * row written, so a run killed before the next flush leaves a readable log. */
    st = poet_error_agree(log->comm,
                          log->rank == 0 ? poet_fs_check_room(log->path, "log rows") : POET_OK);
    log->failed = log->failed || st != POET_OK;
    POET_TRY(st);
    errno = 0;
    herr_t flushed = H5Fflush(log->file, H5F_SCOPE_GLOBAL);
    POET_TRY(agree_write(log, flushed, errno, "the log's metadata"));
fail:
    poet_h5_watch_disarm();
    free(scratch);
    return st;
}

int poet_losslog_flush_due(const poet_losslog *log) { return log->buffered + 1 >= log->capacity; }

poet_status poet_losslog_append(poet_losslog *log, const poet_iteration_record *rec,
                                const double *local_member_loss) {
    int r = log->buffered;
    log->recs[r] = *rec;
    for (int p = 0; p < log->n_local; p++)
        log->local_loss[(size_t)r * log->n_local + p] = local_member_loss[log->local_slot[p]];
    log->buffered++;
    return log->buffered >= log->capacity ? poet_losslog_flush(log) : POET_OK;
}

poet_status poet_losslog_eval(poet_losslog *log, const poet_eval_result *res) {
    poet_status st = POET_OK;
    if (log->eval_buffered == log->eval_capacity) {
        int capacity = log->eval_capacity ? 2 * log->eval_capacity : 4;
        poet_eval_result *grown = realloc(log->evals, (size_t)capacity * sizeof *grown);
        if (!grown)
            POET_FAIL(POET_ERR_NOMEM, "%s: out of memory buffering an evaluation row", log->path);
        log->evals = grown;
        log->eval_capacity = capacity;
    }
    log->evals[log->eval_buffered++] = *res;
    /* Evaluations are rare and costly to repeat: write them (and the rows before them) at once. */
    POET_TRY(poet_losslog_flush(log));
fail:
    return st;
}

poet_status poet_losslog_close(poet_losslog *log) {
    poet_status st = POET_OK;
    if (!log)
        return POET_OK;
    if (log->file > 0 && !log->failed && (log->buffered || log->eval_buffered))
        st = poet_losslog_flush(log);
    poet_h5_watch_arm("closing the loss log", log->path, NULL);
    layout_close(&log->ds);
    errno = 0;
    if (poet_h5_close(&log->file) < 0 && st == POET_OK)
        st = poet_error_set(POET_ERR_IO, "%s: cannot close the loss log: %s", log->path,
                            poet_fs_write_cause(log->path, errno, poet_hdf5_error_string()));
    poet_h5_watch_disarm();
    poet_h5_close(&log->dxpl);
    st = poet_error_agree(log->comm, st); /* closing is collective: every rank gets here */
    free(log->recs);
    free(log->local_loss);
    free(log->evals);
    free(log);
    return st;
}
