/* report.c — `poet report`: summaries and comparisons of loss logs (docs/log-format.md).
 *
 * Sizes: T iteration rows, E evaluation rows, M members, w the smoothing window. Only the ensemble
 * columns ([T] each) are read whole; of the member matrix only the last w rows.
 */
#include "poet/report.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "poet/h5util.h"

#define FORMAT_VERSION_UNDERSTOOD 2

int poet_report_window(long rows) {
    long w = rows / 10;
    return (int)(w < 1 ? 1 : w > 100 ? 100 : w);
}

/* ---- reading --------------------------------------------------------------------------------- */

typedef struct {
    hid_t file;
    const char *path;
} log_file;

/* Whether "/group/name" is there, checking each link (a missing group is not an HDF5 error). */
static int has_object(hid_t file, const char *group, const char *name) {
    if (H5Lexists(file, group, H5P_DEFAULT) <= 0)
        return 0;
    char full[256];
    snprintf(full, sizeof full, "%s/%s", group, name);
    return H5Lexists(file, full, H5P_DEFAULT) > 0;
}

/* Reads rows [start, start+n) of the dataset /group/name (1-D, or 2-D with all columns) converted
 * to `type`. The dataset must exist (checked by the caller). */
static poet_status read_rows(const log_file *lf, const char *group, const char *name, hid_t type,
                             hsize_t start, hsize_t n, void *out) {
    poet_status st = POET_OK;
    hid_t d = H5I_INVALID_HID, file_space = H5I_INVALID_HID, mem_space = H5I_INVALID_HID;
    char full[256];
    hsize_t dims[2] = {0, 1};
    snprintf(full, sizeof full, "%s/%s", group, name);
    if (n == 0)
        return POET_OK;
    if ((d = H5Dopen2(lf->file, full, H5P_DEFAULT)) < 0 || (file_space = H5Dget_space(d)) < 0)
        POET_FAIL(POET_ERR_DATA, "%s: cannot open /%s: %s", lf->path, full,
                  poet_hdf5_error_string());
    int ndims = H5Sget_simple_extent_ndims(file_space);
    H5Sget_simple_extent_dims(file_space, dims, NULL);
    hsize_t offset[2] = {start, 0}, count[2] = {n, ndims == 2 ? dims[1] : 1};
    POET_H5(mem_space = H5Screate_simple(ndims, count, NULL));
    POET_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, offset, NULL, count, NULL));
    if (H5Dread(d, type, mem_space, file_space, H5P_DEFAULT, out) < 0)
        POET_FAIL(POET_ERR_DATA, "%s: cannot read /%s (damaged file?): %s", lf->path, full,
                  poet_hdf5_error_string());
fail:
    poet_h5_close(&mem_space);
    poet_h5_close(&file_space);
    poet_h5_close(&d);
    return st;
}

/* Rows (first dimension) and columns (second, 1 for 1-D) of /group/name; checks the rank. */
static poet_status dataset_shape(const log_file *lf, const char *group, const char *name,
                                 int want_dims, hsize_t *rows, hsize_t *cols) {
    poet_status st = POET_OK;
    hid_t d = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char full[256];
    hsize_t dims[2] = {0, 1};
    snprintf(full, sizeof full, "%s/%s", group, name);
    if (!has_object(lf->file, group, name))
        POET_FAIL(POET_ERR_DATA, "%s: not a poet loss log: missing /%s", lf->path, full);
    if ((d = H5Dopen2(lf->file, full, H5P_DEFAULT)) < 0 || (space = H5Dget_space(d)) < 0)
        POET_FAIL(POET_ERR_DATA, "%s: not a poet loss log: /%s is not a dataset", lf->path, full);
    int ndims = H5Sget_simple_extent_ndims(space);
    if (ndims != want_dims)
        POET_FAIL(POET_ERR_DATA, "%s: not a poet loss log: /%s has %d dimension(s), expected %d",
                  lf->path, full, ndims, want_dims);
    H5Sget_simple_extent_dims(space, dims, NULL);
    *rows = dims[0];
    *cols = ndims == 2 ? dims[1] : 1;
fail:
    poet_h5_close(&space);
    poet_h5_close(&d);
    return st;
}

/* The run's identity is optional (older or foreign logs), so an attribute that is absent, of
 * another kind or unreadable leaves the default. Reading one records no message: a failed read's
 * message is dropped (nothing else is recorded while a log loads; the first failure ends it). */

/* A root attribute as text (variable- or fixed-length string); "" when absent or not a string. */
static void read_string_attribute(hid_t file, const char *name, char *out, size_t size) {
    char *text = NULL;
    out[0] = '\0';
    if (poet_h5_attr_class(file, name) != H5T_STRING)
        return;
    if (poet_h5_attr_read_string(file, name, &text, POET_ERR_DATA, "log", "/") == POET_OK)
        snprintf(out, size, "%s", text);
    else
        poet_error_clear();
    free(text);
}

/* A numeric root attribute converted to double; `fallback` when absent or not a number. */
static double read_number_attribute(hid_t file, const char *name, double fallback) {
    double value = fallback;
    H5T_class_t cls = poet_h5_attr_class(file, name);
    if (cls != H5T_INTEGER && cls != H5T_FLOAT)
        return fallback;
    if (poet_h5_attr_read(file, name, H5T_NATIVE_DOUBLE, 0, &value, POET_ERR_DATA, "log", "/") !=
        POET_OK) {
        poet_error_clear();
        value = fallback;
    }
    return value;
}

static void read_run_attributes(hid_t file, poet_report_summary *s) {
    read_string_attribute(file, "run_name", s->run_name, sizeof s->run_name);
    read_string_attribute(file, "poet_version", s->poet_version, sizeof s->poet_version);
    read_string_attribute(file, "created", s->created, sizeof s->created);
    read_string_attribute(file, "tree", s->tree, sizeof s->tree);
    read_string_attribute(file, "overlap", s->overlap, sizeof s->overlap);
    s->members = (int)read_number_attribute(file, "members", 0);
    s->ranks = (int)read_number_attribute(file, "ranks", 0);
    s->batch_size = (int)read_number_attribute(file, "batch_size", 0);
    s->arity = (int)read_number_attribute(file, "arity", 0);
    s->lr = read_number_attribute(file, "lr", NAN);
}

/* ---- summarising ----------------------------------------------------------------------------- */

static const char *const ITER_COLUMNS[] = {"iteration", "accuracy", "lr", "seconds", "bytes", NULL};
static const char *const EVAL_COLUMNS[] = {
    "iteration",    "images", "ensemble_nll", "ensemble_accuracy", "mean_member_accuracy",
    "disagreement", NULL};

/* T: the rows every iteration column has (a log cut off inside a flush may have uneven columns;
 * the common prefix is what was completely written). Also checks the member matrix. */
static poet_status count_rows(const log_file *lf, hsize_t *rows, hsize_t *members, hsize_t *evals) {
    poet_status st = POET_OK;
    hsize_t r = 0, c = 0;
    /* /iterations/loss first: it is the column a foreign file most obviously lacks. */
    POET_TRY(dataset_shape(lf, "iterations", "loss", 1, rows, &c));
    for (const char *const *name = ITER_COLUMNS; *name; name++) {
        POET_TRY(dataset_shape(lf, "iterations", *name, 1, &r, &c));
        *rows = r < *rows ? r : *rows;
    }
    POET_TRY(dataset_shape(lf, "iterations", "member_loss", 2, &r, members));
    *rows = r < *rows ? r : *rows;
    POET_TRY(dataset_shape(lf, "eval", EVAL_COLUMNS[0], 1, evals, &c));
    for (const char *const *name = EVAL_COLUMNS + 1; *name; name++) {
        POET_TRY(dataset_shape(lf, "eval", *name, 1, &r, &c));
        *evals = r < *evals ? r : *evals;
    }
fail:
    return st;
}

/* Trailing window mean of values[0..i] over at most w values, for every i ([T] -> [T]). */
static void trailing_mean(const double *values, long rows, int w, double *out) {
    double sum = 0.0;
    for (long i = 0; i < rows; i++) {
        sum += values[i];
        if (i >= w)
            sum -= values[i - w];
        out[i] = sum / (double)(i + 1 < w ? i + 1 : w);
    }
}

static double mean_of(const double *values, long n) {
    double sum = 0.0;
    for (long i = 0; i < n; i++)
        sum += values[i];
    return n > 0 ? sum / (double)n : NAN;
}

static poet_status summarise_iterations(const log_file *lf, long rows, long members,
                                        poet_report_summary *s) {
    poet_status st = POET_OK;
    int64_t *iteration = NULL;                                                             /* [T] */
    double *loss = NULL, *accuracy = NULL, *seconds = NULL, *bytes = NULL, *smooth = NULL; /* [T] */
    double *member_tail = NULL; /* [w, M] */
    s->rows = rows;
    s->window = poet_report_window(rows);
    if (rows == 0)
        return POET_OK;
    int w = s->window;
    POET_ALLOC(iteration, rows);
    POET_ALLOC(loss, rows);
    POET_ALLOC(accuracy, rows);
    POET_ALLOC(seconds, rows);
    POET_ALLOC(bytes, rows);
    POET_ALLOC(smooth, rows);
    POET_ALLOC(member_tail, (size_t)w * (members > 0 ? members : 1));
    POET_TRY(read_rows(lf, "iterations", "iteration", H5T_NATIVE_INT64, 0, rows, iteration));
    POET_TRY(read_rows(lf, "iterations", "loss", H5T_NATIVE_DOUBLE, 0, rows, loss));
    POET_TRY(read_rows(lf, "iterations", "accuracy", H5T_NATIVE_DOUBLE, 0, rows, accuracy));
    POET_TRY(read_rows(lf, "iterations", "seconds", H5T_NATIVE_DOUBLE, 0, rows, seconds));
    POET_TRY(read_rows(lf, "iterations", "bytes", H5T_NATIVE_DOUBLE, 0, rows, bytes));
    if (members > 0)
        POET_TRY(read_rows(lf, "iterations", "member_loss", H5T_NATIVE_DOUBLE, (hsize_t)(rows - w),
                           (hsize_t)w, member_tail));

    s->first_iteration = iteration[0];
    s->last_iteration = iteration[rows - 1];
    s->final_loss = loss[rows - 1];
    trailing_mean(loss, rows, w, smooth);
    s->final_smoothed = smooth[rows - 1];
    s->best_smoothed = smooth[0];
    s->best_iteration = iteration[0];
    for (long i = 1; i < rows; i++)
        if (smooth[i] < s->best_smoothed) {
            s->best_smoothed = smooth[i];
            s->best_iteration = iteration[i];
        }
    for (int k = 0; k < POET_REPORT_POINTS; k++) {
        long i = (long)floor((double)k * (double)(rows - 1) / (POET_REPORT_POINTS - 1) + 0.5);
        s->point_iteration[k] = iteration[i];
        s->point_smoothed[k] = smooth[i];
    }
    s->end_ensemble_loss = mean_of(loss + rows - w, w);
    s->decomposed = has_object(lf->file, "iterations", "diversity") &&
                    has_object(lf->file, "iterations", "mean_member_loss");
    s->end_mean_member_loss = s->end_diversity = NAN;
    if (s->decomposed) {
        /* accuracy's buffer is read already: reuse it and smooth for the column's window. */
        POET_TRY(
            read_rows(lf, "iterations", "mean_member_loss", H5T_NATIVE_DOUBLE, 0, rows, smooth));
        s->end_mean_member_loss = mean_of(smooth + rows - w, w);
        POET_TRY(read_rows(lf, "iterations", "diversity", H5T_NATIVE_DOUBLE, 0, rows, smooth));
        s->end_diversity = mean_of(smooth + rows - w, w);
    }
    s->end_member_loss = mean_of(member_tail, (long)w * members);
    s->final_accuracy_smoothed = mean_of(accuracy + rows - w, w);
    for (long i = 0; i < rows; i++)
        s->total_seconds += seconds[i];
    s->images_per_second =
        s->total_seconds > 0 ? (double)s->batch_size * (double)rows / s->total_seconds : 0.0;
    s->bytes_per_iteration = mean_of(bytes, rows);
fail:
    free(member_tail);
    free(smooth);
    free(bytes);
    free(seconds);
    free(accuracy);
    free(loss);
    free(iteration);
    return st;
}

static poet_status summarise_evals(const log_file *lf, long evals, poet_report_summary *s) {
    poet_status st = POET_OK;
    hsize_t last = (hsize_t)(evals - 1);
    int64_t it = 0, images = 0;
    s->evals = evals;
    s->evaluated = evals > 0;
    if (!evals)
        return POET_OK;
    POET_TRY(read_rows(lf, "eval", "iteration", H5T_NATIVE_INT64, last, 1, &it));
    POET_TRY(read_rows(lf, "eval", "images", H5T_NATIVE_INT64, last, 1, &images));
    POET_TRY(read_rows(lf, "eval", "ensemble_nll", H5T_NATIVE_DOUBLE, last, 1, &s->eval_nll));
    POET_TRY(
        read_rows(lf, "eval", "ensemble_accuracy", H5T_NATIVE_DOUBLE, last, 1, &s->eval_accuracy));
    POET_TRY(read_rows(lf, "eval", "mean_member_accuracy", H5T_NATIVE_DOUBLE, last, 1,
                       &s->eval_mean_member_accuracy));
    POET_TRY(
        read_rows(lf, "eval", "disagreement", H5T_NATIVE_DOUBLE, last, 1, &s->eval_disagreement));
    s->eval_mean_member_nll = s->eval_diversity = NAN;
    if (has_object(lf->file, "eval", "mean_member_nll") &&
        has_object(lf->file, "eval", "diversity")) {
        POET_TRY(read_rows(lf, "eval", "mean_member_nll", H5T_NATIVE_DOUBLE, last, 1,
                           &s->eval_mean_member_nll));
        POET_TRY(
            read_rows(lf, "eval", "diversity", H5T_NATIVE_DOUBLE, last, 1, &s->eval_diversity));
    }
    s->eval_iteration = it;
    s->eval_images = images;
fail:
    return st;
}

poet_status poet_report_load(const char *path, poet_report_summary *out) {
    poet_status st = POET_OK;
    log_file lf = {H5I_INVALID_HID, path};
    struct stat sb;
    hsize_t rows = 0, members = 0, evals = 0;
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    poet_h5_quiet();
    if (stat(path, &sb) != 0)
        POET_FAIL(POET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        POET_FAIL(POET_ERR_IO, "%s: is a directory, expected a loss log file", path);
    lf.file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (lf.file < 0)
        POET_FAIL(POET_ERR_DATA, "%s: cannot open as HDF5 (truncated or not HDF5)", path);
    POET_TRY(count_rows(&lf, &rows, &members, &evals));
    read_run_attributes(lf.file, out);
    double version = read_number_attribute(lf.file, "format_version", 1);
    if (version > FORMAT_VERSION_UNDERSTOOD)
        POET_FAIL(POET_ERR_DATA,
                  "%s: loss log format_version %g is newer than this poet reads (%d)", path,
                  version, FORMAT_VERSION_UNDERSTOOD);
    if (out->members == 0)
        out->members = (int)members;
    POET_TRY(summarise_iterations(&lf, (long)rows, (long)members, out));
    POET_TRY(summarise_evals(&lf, (long)evals, out));
fail:
    poet_h5_close(&lf.file);
    return st;
}

/* ---- printing -------------------------------------------------------------------------------- */

/* "kary(4)" for trees with an arity, else the name; "?" when the log did not say. */
static void tree_text(const poet_report_summary *s, char *out, size_t size) {
    if (!s->tree[0])
        snprintf(out, size, "?");
    else if (!strcmp(s->tree, "kary"))
        snprintf(out, size, "kary(%d)", s->arity);
    else
        snprintf(out, size, "%s", s->tree);
}

static const char *run_label(const poet_report_summary *s) {
    return s->run_name[0] ? s->run_name : s->path;
}

void poet_report_print(const poet_report_summary *s, FILE *out) {
    char tree[48];
    tree_text(s, tree, sizeof tree);
    fprintf(out, "%s: run \"%s\" (poet %s, created %s)\n", s->path,
            s->run_name[0] ? s->run_name : "?", s->poet_version[0] ? s->poet_version : "?",
            s->created[0] ? s->created : "?");
    fprintf(out, "  ensemble    %d members on %d rank(s), batch %d, lr %g, tree %s, overlap %s\n",
            s->members, s->ranks, s->batch_size, s->lr, tree, s->overlap[0] ? s->overlap : "?");
    if (s->rows == 0) {
        fprintf(out, "  iterations  none logged\n");
    } else {
        fprintf(out, "  iterations  %ld logged (%ld..%ld)\n", s->rows, s->first_iteration,
                s->last_iteration);
        fprintf(out,
                "  loss        final %.6g (smoothed %.6g), best smoothed %.6g at iteration %ld\n",
                s->final_loss, s->final_smoothed, s->best_smoothed, s->best_iteration);
        fprintf(out, "  smoothed    trailing mean of %d:", s->window);
        for (int k = 0; k < POET_REPORT_POINTS; k++)
            fprintf(out, "%s %d%% %.6g (it %ld)", k ? "," : "", 100 * k / (POET_REPORT_POINTS - 1),
                    s->point_smoothed[k], s->point_iteration[k]);
        fprintf(out, "\n");
        fprintf(out,
                "  members     last %d iterations: mean member loss %.6g vs ensemble loss %.6g "
                "(gap %.6g); ensemble batch accuracy %.4f\n",
                s->window, s->end_member_loss, s->end_ensemble_loss,
                s->end_member_loss - s->end_ensemble_loss, s->final_accuracy_smoothed);
        if (s->decomposed)
            fprintf(out,
                    "  diversity   train (last %d): ensemble CE %.6g, mean member CE %.6g, "
                    "diversity %.6g\n",
                    s->window, s->end_ensemble_loss, s->end_mean_member_loss, s->end_diversity);
        fprintf(out, "  throughput  %.1f images/s (%.3f s over %ld iterations, %.2f ms each)\n",
                s->images_per_second, s->total_seconds, s->rows,
                1000.0 * s->total_seconds / (double)s->rows);
        fprintf(out, "  traffic     %.0f bytes/iteration (rank 0, sent + received)\n",
                s->bytes_per_iteration);
    }
    if (s->evaluated)
        fprintf(out,
                "  eval        after %ld iterations on %ld images: ensemble accuracy %.4f, "
                "NLL %.6g; mean member accuracy %.4f; disagreement %.4f (%ld evaluation(s))\n",
                s->eval_iteration, s->eval_images, s->eval_accuracy, s->eval_nll,
                s->eval_mean_member_accuracy, s->eval_disagreement, s->evals);
    else
        fprintf(out, "  eval        none logged\n");
    if (s->evaluated && !isnan(s->eval_diversity))
        fprintf(out,
                "  diversity   held-out (after %ld iterations): ensemble NLL %.6g, mean member NLL "
                "%.6g, diversity %.6g\n",
                s->eval_iteration, s->eval_nll, s->eval_mean_member_nll, s->eval_diversity);
}

void poet_report_print_table(const poet_report_summary *s, int n, FILE *out) {
    fprintf(out, "%-24s %7s %5s %5s %-9s %8s %10s %10s %8s %9s %8s %9s %10s %12s\n", "run",
            "members", "ranks", "batch", "tree", "iters", "final~", "best~", "best_it", "gap",
            "eval_acc", "eval_nll", "images/s", "bytes/it");
    for (int i = 0; i < n; i++) {
        const poet_report_summary *r = &s[i];
        char tree[48], acc[16] = "-", nll[16] = "-";
        tree_text(r, tree, sizeof tree);
        if (r->evaluated) {
            snprintf(acc, sizeof acc, "%.4f", r->eval_accuracy);
            snprintf(nll, sizeof nll, "%.4f", r->eval_nll);
        }
        fprintf(out,
                "%-24.24s %7d %5d %5d %-9s %8ld %10.5f %10.5f %8ld %9.5f %8s %9s %10.1f %12.0f\n",
                run_label(r), r->members, r->ranks, r->batch_size, tree, r->rows, r->final_smoothed,
                r->best_smoothed, r->best_iteration, r->end_member_loss - r->end_ensemble_loss, acc,
                nll, r->images_per_second, r->bytes_per_iteration);
    }
    fprintf(out, "(~ = smoothed: trailing mean over each run's window; gap = mean member loss - "
                 "ensemble loss over the last window)\n");
}

/* A CSV field, quoted when it holds a separator, quote or line break. */
static void csv_text(FILE *out, const char *text) {
    if (!strpbrk(text, ",\"\n\r")) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *c = text; *c; c++) {
        if (*c == '"')
            fputc('"', out);
        fputc(*c, out);
    }
    fputc('"', out);
}

void poet_report_print_csv(const poet_report_summary *s, int n, FILE *out) {
    fprintf(out, "path,run_name,members,ranks,batch_size,lr,tree,arity,overlap,iterations,"
                 "first_iteration,last_iteration,window,final_loss,final_loss_smoothed,"
                 "best_loss_smoothed,best_iteration");
    for (int k = 0; k < POET_REPORT_POINTS; k++)
        fprintf(out, ",smoothed_%d", 100 * k / (POET_REPORT_POINTS - 1));
    fprintf(out, ",end_member_loss,end_ensemble_loss,member_gap,evaluations,eval_iteration,"
                 "eval_images,eval_accuracy,eval_nll,eval_mean_member_accuracy,eval_disagreement,"
                 "seconds,images_per_second,bytes_per_iteration\n");
    for (int i = 0; i < n; i++) {
        const poet_report_summary *r = &s[i];
        csv_text(out, r->path);
        fputc(',', out);
        csv_text(out, r->run_name);
        fprintf(out, ",%d,%d,%d,%.9g,", r->members, r->ranks, r->batch_size, r->lr);
        csv_text(out, r->tree);
        fprintf(out, ",%d,", r->arity);
        csv_text(out, r->overlap);
        fprintf(out, ",%ld", r->rows);
        if (r->rows > 0) {
            fprintf(out, ",%ld,%ld,%d,%.9g,%.9g,%.9g,%ld", r->first_iteration, r->last_iteration,
                    r->window, r->final_loss, r->final_smoothed, r->best_smoothed,
                    r->best_iteration);
            for (int k = 0; k < POET_REPORT_POINTS; k++)
                fprintf(out, ",%.9g", r->point_smoothed[k]);
            fprintf(out, ",%.9g,%.9g,%.9g", r->end_member_loss, r->end_ensemble_loss,
                    r->end_member_loss - r->end_ensemble_loss);
        } else {
            fprintf(out, ",,,,,,,");
            for (int k = 0; k < POET_REPORT_POINTS; k++)
                fprintf(out, ",");
            fprintf(out, ",,,");
        }
        fprintf(out, ",%ld", r->evals);
        if (r->evaluated)
            fprintf(out, ",%ld,%ld,%.9g,%.9g,%.9g,%.9g", r->eval_iteration, r->eval_images,
                    r->eval_accuracy, r->eval_nll, r->eval_mean_member_accuracy,
                    r->eval_disagreement);
        else
            fprintf(out, ",,,,,,");
        if (r->rows > 0)
            fprintf(out, ",%.9g,%.9g,%.9g\n", r->total_seconds, r->images_per_second,
                    r->bytes_per_iteration);
        else
            fprintf(out, ",,,\n");
    }
}

poet_status poet_report_run(int nlogs, char **paths, int csv, FILE *out) {
    poet_status st = POET_OK;
    poet_report_summary *runs = NULL; /* [nlogs] */
    POET_ALLOC(runs, nlogs);
    for (int i = 0; i < nlogs; i++)
        POET_TRY(poet_report_load(paths[i], &runs[i]));
    if (csv) {
        poet_report_print_csv(runs, nlogs, out);
    } else {
        for (int i = 0; i < nlogs; i++) {
            if (i)
                fputc('\n', out);
            poet_report_print(&runs[i], out);
        }
        if (nlogs > 1) {
            fputc('\n', out);
            poet_report_print_table(runs, nlogs, out);
        }
    }
    fflush(out);
fail:
    free(runs);
    return st;
}
