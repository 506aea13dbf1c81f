/* predict.c — `poet predict`: a checkpoint's ensemble applied to images, written per image to HDF5
 * or CSV. Layout of both outputs: docs/predict.md. */
#define _POSIX_C_SOURCE 200809L

#include "poet/predict.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poet/checkpoint.h"
#include "poet/data.h"
#include "poet/ensemble.h"
#include "poet/fsutil.h"
#include "poet/h5util.h"
#include "poet/loss.h"
#include "poet/mpierror.h"

/* Rows per forward: the evaluation batch of train.c, so predictions are eval's to the bit. */
#define PREDICT_BATCH 500
#define TMP_SUFFIX ".tmp"

/* The output file, open on rank 0 only. */
typedef struct {
    int csv;
    char tmp[POET_PATH_MAX + 8];
    FILE *text;
    hid_t file;
    hid_t probs, prediction, members, member_prediction, disagreement, labels;
} sink;

/* Rank 0's per-batch results, in global member order. */
typedef struct {
    float *probs;         /* [E, K] */
    int32_t *prediction;  /* [E] */
    float *member_probs;  /* [E, M, K] */
    int32_t *member_pred; /* [E, M] */
    float *disagreement;  /* [E] */
} batch_out;

int poet_predict_is_hdf5(const char *path) {
    static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return got == sizeof head && memcmp(head, signature, sizeof head) == 0;
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n > m && strcmp(s + n - m, tail) == 0;
}

int poet_predict_output_format(const char *output) {
    if (ends_with(output, ".csv"))
        return 1;
    if (ends_with(output, ".h5") || ends_with(output, ".hdf5"))
        return 0;
    return -1;
}

/* The checkpoint `latest` names in `dir` (a plain file name written by checkpoint.c). */
static poet_status latest_checkpoint(const char *dir, char *out, size_t size) {
    poet_status st = POET_OK;
    char latest[POET_PATH_MAX + 16], name[POET_PATH_MAX] = "";
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *f = fopen(latest, "r");
    if (!f)
        POET_FAIL(POET_ERR_CHECKPOINT,
                  "%s: no checkpoint to predict with (%s; train first, or give --checkpoint FILE)",
                  latest, strerror(errno));
    if (!fgets(name, sizeof name, f))
        name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    if (!name[0] || strchr(name, '/'))
        POET_FAIL(POET_ERR_CHECKPOINT, "%s: does not name a checkpoint file", latest);
    if (snprintf(out, size, "%s/%s", dir, name) >= (int)size)
        POET_FAIL(POET_ERR_CHECKPOINT, "%s/%s: path too long", dir, name);
fail:
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Output (rank 0)
 * ------------------------------------------------------------------------------------------- */

static poet_status create_dataset(sink *s, const char *name, hid_t type, int ndims,
                                  const hsize_t *dims, hid_t *out) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID;
    POET_H5(space = H5Screate_simple(ndims, dims, NULL));
    *out = H5Dcreate2(s->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (*out < 0)
        POET_FAIL(POET_ERR_IO, "%s: cannot create dataset %s: %s", s->tmp, name,
                  poet_hdf5_error_string());
fail:
    poet_h5_close(&space);
    return st;
}

static poet_status sink_open(sink *s, const poet_predict_options *opt, long N, int M, int K,
                             const char *checkpoint, long iteration) {
    poet_status st = POET_OK;
    s->csv = poet_predict_output_format(opt->output) == 1;
    snprintf(s->tmp, sizeof s->tmp, "%s" TMP_SUFFIX, opt->output);
    if (s->csv) {
        s->text = fopen(s->tmp, "w");
        if (!s->text)
            POET_FAIL(POET_ERR_IO, "%s: cannot create the output file: %s", opt->output,
                      strerror(errno));
        fprintf(s->text, "image,prediction,disagreement");
        for (int k = 0; k < K; k++)
            fprintf(s->text, ",p%d", k);
        for (int j = 0; j < M; j++)
            for (int k = 0; k < K; k++)
                fprintf(s->text, ",m%d_p%d", j, k);
        fprintf(s->text, "%s\n", opt->labels ? ",label" : "");
        return POET_OK;
    }
    errno = 0;
    s->file = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (s->file < 0)
        POET_FAIL(POET_ERR_IO, "%s: cannot create the output file: %s", opt->output,
                  errno ? strerror(errno) : poet_hdf5_error_string());
    hsize_t nk[2] = {(hsize_t)N, (hsize_t)K}, nmk[3] = {(hsize_t)N, (hsize_t)M, (hsize_t)K};
    hsize_t nm[2] = {(hsize_t)N, (hsize_t)M}, n = (hsize_t)N;
    POET_TRY(create_dataset(s, "probabilities", H5T_IEEE_F32LE, 2, nk, &s->probs));
    POET_TRY(create_dataset(s, "prediction", H5T_STD_I32LE, 1, &n, &s->prediction));
    POET_TRY(create_dataset(s, "member_probabilities", H5T_IEEE_F32LE, 3, nmk, &s->members));
    POET_TRY(create_dataset(s, "member_prediction", H5T_STD_I32LE, 2, nm, &s->member_prediction));
    POET_TRY(create_dataset(s, "disagreement", H5T_IEEE_F32LE, 1, &n, &s->disagreement));
    if (opt->labels)
        POET_TRY(create_dataset(s, "labels", H5T_STD_I32LE, 1, &n, &s->labels));
    POET_TRY(poet_h5_attr_write_string(s->file, "checkpoint", checkpoint, s->tmp));
    POET_TRY(poet_h5_attr_write_int(s->file, "iteration", H5T_STD_I64LE, iteration, s->tmp));
    POET_TRY(poet_h5_attr_write_string(s->file, "images", opt->images, s->tmp));
    POET_TRY(poet_h5_attr_write_int(s->file, "members", H5T_STD_I32LE, M, s->tmp));
    POET_TRY(poet_h5_attr_write_int(s->file, "classes", H5T_STD_I32LE, K, s->tmp));
    POET_TRY(poet_h5_attr_write_string(s->file, "poet_version", POET_VERSION, s->tmp));
fail:
    return st;
}

/* Writes rows [first, first + rows) of a dataset whose first dimension is the image. */
static poet_status write_rows(const sink *s, hid_t dset, hid_t mem_type, long first, int rows,
                              const void *data) {
    poet_status st = POET_OK;
    hid_t file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
    hsize_t dims[3], start[3] = {0, 0, 0}, count[3];
    POET_H5(file_space = H5Dget_space(dset));
    int nd = H5Sget_simple_extent_ndims(file_space);
    POET_H5(nd);
    H5Sget_simple_extent_dims(file_space, dims, NULL);
    start[0] = (hsize_t)first;
    count[0] = (hsize_t)rows;
    for (int d = 1; d < nd; d++)
        count[d] = dims[d];
    POET_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL));
    POET_H5(mem_space = H5Screate_simple(nd, count, NULL));
    errno = 0;
    if (H5Dwrite(dset, mem_type, mem_space, file_space, H5P_DEFAULT, data) < 0)
        POET_FAIL(POET_ERR_IO, "%s: cannot write: %s", s->tmp,
                  poet_fs_write_cause(s->tmp, errno, poet_hdf5_error_string()));
fail:
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    return st;
}

static poet_status sink_write(const sink *s, const batch_out *b, const uint8_t *labels, long first,
                              int rows, int M, int K) {
    poet_status st = POET_OK;
    if (s->csv) {
        for (int r = 0; r < rows; r++) {
            fprintf(s->text, "%ld,%d,%.9g", first + r, (int)b->prediction[r],
                    (double)b->disagreement[r]);
            for (int k = 0; k < K; k++)
                fprintf(s->text, ",%.9g", (double)b->probs[(size_t)r * K + k]);
            for (int i = 0; i < M * K; i++)
                fprintf(s->text, ",%.9g", (double)b->member_probs[(size_t)r * M * K + i]);
            if (labels)
                fprintf(s->text, ",%d", (int)labels[r]);
            fprintf(s->text, "\n");
        }
        if (ferror(s->text))
            POET_FAIL(POET_ERR_IO, "%s: cannot write: %s", s->tmp, strerror(errno));
        return POET_OK;
    }
    POET_TRY(write_rows(s, s->probs, H5T_NATIVE_FLOAT, first, rows, b->probs));
    POET_TRY(write_rows(s, s->prediction, H5T_NATIVE_INT32, first, rows, b->prediction));
    POET_TRY(write_rows(s, s->members, H5T_NATIVE_FLOAT, first, rows, b->member_probs));
    POET_TRY(write_rows(s, s->member_prediction, H5T_NATIVE_INT32, first, rows, b->member_pred));
    POET_TRY(write_rows(s, s->disagreement, H5T_NATIVE_FLOAT, first, rows, b->disagreement));
    if (labels)
        POET_TRY(write_rows(s, s->labels, H5T_NATIVE_UINT8, first, rows, labels));
fail:
    return st;
}

/* Closes the output; on success renames the temporary onto the output's name, else removes it. */
static poet_status sink_close(sink *s, poet_status st, const char *output, double accuracy,
                              int labelled) {
    if (s->csv && s->text) {
        if (fclose(s->text) != 0 && st == POET_OK)
            st = poet_error_set(POET_ERR_IO, "%s: cannot write: %s", s->tmp, strerror(errno));
        s->text = NULL;
    } else if (!s->csv) {
        if (st == POET_OK && labelled && s->file >= 0)
            st = poet_h5_attr_write_double(s->file, "accuracy", accuracy, s->tmp);
        hid_t *ids[] = {&s->probs,        &s->prediction, &s->members, &s->member_prediction,
                        &s->disagreement, &s->labels};
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
            poet_h5_close(ids[i]);
        if (s->file >= 0 && poet_h5_close(&s->file) < 0 && st == POET_OK)
            st = poet_error_set(POET_ERR_IO, "%s: cannot close: %s", s->tmp,
                                poet_hdf5_error_string());
    }
    if (!s->tmp[0])
        return st;
    if (st == POET_OK && rename(s->tmp, output) != 0)
        st = poet_error_set(POET_ERR_IO, "%s: cannot rename %s onto it: %s", output, s->tmp,
                            strerror(errno));
    if (st != POET_OK)
        unlink(s->tmp);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The pass
 * ------------------------------------------------------------------------------------------- */

static int argmax_f64(const double *row, int K) {
    int best = 0; /* the first maximum, as loss.c: ties resolve as in eval */
    for (int k = 1; k < K; k++)
        if (row[k] > row[best])
            best = k;
    return best;
}

/* Rank 0: one batch's per-image results from the summed fixed-point logits and every member's
 * logits ([M, rows, K] in global order). */
static void score(const int64_t *fixed, const float *logits, int rows, int M, int K, double *mean,
                  double *row, int *counts, batch_out *b) {
    poet_loss_fixed_to_mean(fixed, rows, K, M, mean);
    for (int r = 0; r < rows; r++) {
        double p[256];
        poet_softmax_row(mean + (size_t)r * K, K, p);
        for (int k = 0; k < K; k++)
            b->probs[(size_t)r * K + k] = (float)p[k];
        b->prediction[r] = argmax_f64(mean + (size_t)r * K, K);
        memset(counts, 0, sizeof(int) * K);
        for (int j = 0; j < M; j++) {
            const float *l = logits + ((size_t)j * rows + r) * K;
            for (int k = 0; k < K; k++)
                row[k] = l[k];
            poet_softmax_row(row, K, p);
            for (int k = 0; k < K; k++)
                b->member_probs[((size_t)r * M + j) * K + k] = (float)p[k];
            int pred = argmax_f64(row, K);
            b->member_pred[(size_t)r * M + j] = pred;
            counts[pred]++;
        }
        /* The fraction of member pairs that disagree: (M² − Σ c_k²) / 2 over M(M−1)/2 pairs. */
        long same = 0;
        for (int k = 0; k < K; k++)
            same += (long)counts[k] * counts[k];
        b->disagreement[r] = M < 2 ? 0.0f : (float)(((double)M * M - same) / ((double)M * (M - 1)));
    }
}

/* The members a run of `opt`'s checkpoint (or cfg's newest) holds; 0 when it cannot be read here
 * (the prediction itself then reports why, on every rank alike). */
static int checkpoint_members(const poet_config *cfg, const poet_predict_options *opt) {
    char path[POET_PATH_MAX];
    poet_config *run = calloc(1, sizeof *run);
    poet_shape input;
    long iteration = 0;
    int members = 0;
    poet_status st = POET_OK;
    if (opt->checkpoint)
        snprintf(path, sizeof path, "%s", opt->checkpoint);
    else if (cfg)
        st = latest_checkpoint(cfg->checkpoint_dir, path, sizeof path);
    else
        st = POET_ERR_USAGE;
    if (run && st == POET_OK && poet_checkpoint_peek(path, run, &input, &iteration) == POET_OK)
        members = run->members;
    free(run);
    poet_error_clear();
    return members;
}

static poet_status predict_on(MPI_Comm comm, const poet_config *cfg,
                              const poet_predict_options *opt, poet_predict_summary *out);

/* More ranks than members (a P > M training allocation reused): the first M ranks predict, as a
 * run of M ranks would, and the others wait for their verdict. */
poet_status poet_predict_run(MPI_Comm comm, const poet_config *cfg, const poet_predict_options *opt,
                             poet_predict_summary *out) {
    poet_status st = POET_OK;
    int rank = 0, ranks = 1, members = checkpoint_members(cfg, opt), agreed = 0;
    MPI_Comm part = MPI_COMM_NULL;
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_MPI(MPI_Comm_size(comm, &ranks));
    POET_MPI(MPI_Allreduce(&members, &agreed, 1, MPI_INT, MPI_MIN, comm));
    if (agreed < 1 || ranks <= agreed)
        return predict_on(comm, cfg, opt, out);
    POET_MPI(MPI_Comm_split(comm, rank < agreed ? 0 : MPI_UNDEFINED, rank, &part));
    memset(out, 0, sizeof *out);
    if (part != MPI_COMM_NULL) {
        st = predict_on(part, cfg, opt, out);
        MPI_Comm_free(&part);
    }
    st = poet_error_agree(comm, st);
fail:
    return st;
}

static poet_status predict_on(MPI_Comm comm, const poet_config *cfg,
                              const poet_predict_options *opt, poet_predict_summary *out) {
    poet_status st = POET_OK;
    int rank = 0, ranks = 1, created = 0;
    poet_config *run = NULL;
    poet_dataset ds = {0};
    poet_ensemble e;
    sink s = {0};
    batch_out b = {0};
    float *images = NULL, *local_logits = NULL, *gathered = NULL, *ordered = NULL;
    int64_t *fixed = NULL, *fixed_total = NULL;
    uint8_t *batch_labels = NULL;
    double *mean = NULL, *row = NULL;
    int *counts = NULL, *recv_counts = NULL, *displs = NULL, *order = NULL;
    long correct = 0, N = 0;
    int M = 0, K = 0, E = 0;
    size_t image_size = 0;
    poet_shape input = {0, 0, 0};
    memset(out, 0, sizeof *out);
    memset(&e, 0, sizeof e);
    s.file = s.probs = s.prediction = s.members = s.member_prediction = s.disagreement = s.labels =
        H5I_INVALID_HID;
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_MPI(MPI_Comm_size(comm, &ranks));

    /* Which checkpoint, and what it holds: every rank reads the header itself. */
    POET_ALLOC(run, 1);
    if (opt->checkpoint)
        snprintf(out->checkpoint, sizeof out->checkpoint, "%s", opt->checkpoint);
    else
        st = latest_checkpoint(cfg->checkpoint_dir, out->checkpoint, sizeof out->checkpoint);
    if (st == POET_OK)
        st = poet_checkpoint_peek(out->checkpoint, run, &input, &out->iteration);
    if (st == POET_OK && cfg) {
        /* data.mean/std "auto" in CONFIG: the values the checkpoint's run computed */
        double mean = run->mean, std = run->std;
        *run = *cfg;
        if (run->mean_auto == 1)
            run->mean = mean, run->mean_auto = 2;
        if (run->std_auto == 1)
            run->std = std, run->std_auto = 2;
    }
    POET_TRY(poet_error_agree(comm, st));
    M = run->members;
    K = run->classes;

    /* The images, in the checkpoint's normalisation and shape. */
    poet_data_spec spec;
    poet_config_data_spec(run, 1, &spec); /* the run's format options and normalisation */
    spec.format = POET_DATA_AUTO;         /* told from the input file itself */
    spec.images = opt->images;
    spec.labels = opt->labels;
    spec.streamed = 0;
    st = poet_data_load_spec(&spec, &ds);
    if (st == POET_OK) {
        char input_from[POET_PATH_MAX + 32];
        snprintf(input_from, sizeof input_from, "the checkpoint %s", out->checkpoint);
        st = poet_data_check_shape(&ds, input.c, input.h, input.w, input_from);
    }
    POET_TRY(poet_error_agree(comm, st));
    N = ds.count;

    /* The output is created before the work, so a bad path fails at once. */
    if (rank == 0)
        st = sink_open(&s, opt, N, M, K, out->checkpoint, out->iteration);
    POET_TRY(poet_error_agree(comm, st));

    POET_TRY(poet_error_agree(
        comm, poet_ensemble_create(run, rank, ranks, input, 1, 1, PREDICT_BATCH, NULL, NULL, &e)));
    created = 1;
    poet_train_position pos;
    POET_TRY(poet_checkpoint_read(comm, out->checkpoint, run, &e, &pos));

    E = e.eval_batch;
    image_size = (size_t)input.c * input.h * input.w;
    st = POET_OK;
    POET_ALLOC(images, (size_t)E * image_size);
    POET_ALLOC(batch_labels, E);
    POET_ALLOC(local_logits, (size_t)(e.n_local ? e.n_local : 1) * E * K);
    POET_ALLOC(fixed, (size_t)E * K);
    POET_ALLOC(fixed_total, (size_t)E * K);
    POET_ALLOC(recv_counts, ranks);
    POET_ALLOC(displs, ranks);
    POET_ALLOC(order, M);
    if (rank == 0) {
        POET_ALLOC(gathered, (size_t)M * E * K);
        POET_ALLOC(ordered, (size_t)M * E * K);
        POET_ALLOC(mean, (size_t)E * K);
        POET_ALLOC(row, K);
        POET_ALLOC(counts, K);
        POET_ALLOC(b.probs, (size_t)E * K);
        POET_ALLOC(b.prediction, E);
        POET_ALLOC(b.member_probs, (size_t)E * M * K);
        POET_ALLOC(b.member_pred, (size_t)E * M);
        POET_ALLOC(b.disagreement, E);
    }
fail: /* the preparation's only: the loop below ends through `done` */
    /* Allocation failures are local: agree before the collective loop. */
    st = poet_error_agree(comm, st);
    if (st != POET_OK)
        goto done;

    /* Gathered logits arrive rank by rank, each rank's members ascending: order[] maps that
     * position back to the global member id. */
    int at = 0;
    for (int r = 0; r < ranks; r++)
        for (int j = 0; j < M; j++)
            if (e.member_rank[j] == r)
                order[at++] = j;

    int reported = 0;
    for (long first = 0; first < N; first += E) {
        int rows = (int)(N - first < E ? N - first : E);
        memset(images, 0, (size_t)E * image_size * sizeof(float));
        st = poet_data_slice(&ds, first, rows, images, batch_labels);
        memset(fixed, 0, (size_t)E * K * sizeof(int64_t));
        if (st == POET_OK)
            st = poet_ensemble_eval_forward(&e, images, rows, local_logits, fixed);
        if ((st = poet_error_agree(comm, st)) != POET_OK)
            goto done;
        /* Each local member's rows packed contiguously: [n_local, rows, K]. */
        for (int i = 0; i < e.n_local; i++)
            memmove(local_logits + (size_t)i * rows * K, local_logits + (size_t)i * E * K,
                    (size_t)rows * K * sizeof(float));
        int offset = 0;
        for (int r = 0; r < ranks; r++) {
            int owned = 0;
            for (int j = 0; j < M; j++)
                owned += e.member_rank[j] == r;
            recv_counts[r] = owned * rows * K;
            displs[r] = offset;
            offset += recv_counts[r];
        }
        /* No POET_MPI here: its jump would leave the loop for the preparation's `fail`. */
        int rc = MPI_Reduce(fixed, fixed_total, rows * K, MPI_INT64_T, MPI_SUM, 0, comm);
        if (rc == MPI_SUCCESS)
            rc = MPI_Gatherv(local_logits, e.n_local * rows * K, MPI_FLOAT, gathered, recv_counts,
                             displs, MPI_FLOAT, 0, comm);
        st = rc == MPI_SUCCESS ? POET_OK
                               : poet_error_set(POET_ERR_MPI, "predict: gathering the logits: %s",
                                                poet_mpi_error_string(rc));
        if (rank == 0 && st == POET_OK) {
            for (int p = 0; p < M; p++)
                memcpy(ordered + (size_t)order[p] * rows * K, gathered + (size_t)p * rows * K,
                       (size_t)rows * K * sizeof(float));
            score(fixed_total, ordered, rows, M, K, mean, row, counts, &b);
            for (int r = 0; r < rows; r++)
                correct += opt->labels && b.prediction[r] == ds.labels[first + r];
            st = sink_write(&s, &b, opt->labels ? ds.labels + first : NULL, first, rows, M, K);
            long done_rows = first + rows;
            if (!opt->quiet && N >= 10L * E && done_rows * 10 / N > reported) {
                reported = (int)(done_rows * 10 / N);
                printf("predict: %ld of %ld images (%d%%)\n", done_rows, N, reported * 10);
                fflush(stdout);
            }
        }
        if ((st = poet_error_agree(comm, st)) != POET_OK)
            goto done;
    }
    out->images = N;
    out->labelled = opt->labels != NULL;
    out->accuracy = N ? (double)correct / N : 0.0;
done:
    if (rank == 0 && s.tmp[0])
        st = sink_close(&s, st, opt->output, out->accuracy, out->labelled);
    st = poet_error_agree(comm, st);
    if (created)
        poet_ensemble_destroy(&e);
    poet_data_free(&ds);
    free(run);
    free(images);
    free(batch_labels);
    free(local_logits);
    free(gathered);
    free(ordered);
    free(fixed);
    free(fixed_total);
    free(mean);
    free(row);
    free(counts);
    free(recv_counts);
    free(displs);
    free(order);
    free(b.probs);
    free(b.prediction);
    free(b.member_probs);
    free(b.member_pred);
    free(b.disagreement);
    return st;
}
