/* report.h — `poet report`: what a run's loss log (docs/log-format.md) says, for one run or
 * several.
 *
 * Serial: opens the logs with HDF5's default driver (no MPI-IO), so it runs on one rank and in
 * tools. Smoothing everywhere is a trailing window mean: the mean of the last w per-batch values
 * ending at an iteration, w = poet_report_window(T) for a log of T iterations (fewer at the start).
 */
#ifndef POET_REPORT_H
#define POET_REPORT_H

#include <stdio.h>

#include "poet/config.h"
#include "poet/error.h"

#define POET_REPORT_POINTS 5 /* smoothed loss at 0%, 25%, 50%, 75%, 100% of the rows */

typedef struct {
    char path[POET_PATH_MAX];
    /* run, from the root attributes */
    char run_name[POET_NAME_MAX];
    char poet_version[32];
    char created[64];
    char tree[32]; /* "binary", "kary", "mpi" */
    char overlap[32];
    int members, ranks, batch_size, arity;
    double lr; /* configured (initial) learning rate */
    /* iterations */
    long rows; /* T: iteration rows in the log */
    long first_iteration, last_iteration;
    int window;            /* w of the smoothing */
    double final_loss;     /* raw ensemble loss of the last row */
    double final_smoothed; /* smoothed ensemble loss at the last row */
    double best_smoothed;  /* lowest smoothed ensemble loss ... */
    long best_iteration;   /* ... and the iteration it ends at */
    long point_iteration[POET_REPORT_POINTS];
    double point_smoothed[POET_REPORT_POINTS];
    double end_member_loss;   /* mean over members and over the last window of the member losses */
    double end_ensemble_loss; /* mean ensemble loss over the same window */
    double final_accuracy_smoothed; /* ensemble batch accuracy, last window mean */
    double total_seconds;           /* sum of the per-iteration times */
    double images_per_second;       /* batch_size · T / total_seconds (ensemble images) */
    double bytes_per_iteration;     /* mean of rank 0's sent + received bytes */
    /* last evaluation row (evaluated = 0 when the log has none) */
    int evaluated;
    long evals;
    long eval_iteration, eval_images;
    double eval_nll, eval_accuracy, eval_mean_member_accuracy, eval_disagreement;
    /* The decomposition (docs/objectives.md), NAN in logs before format 2: over the last window,
     * the mean member loss of the members in each iteration's mean and the diversity (it minus the
     * ensemble loss); at the last evaluation, the held-out mean member NLL and diversity. */
    int decomposed;
    double end_mean_member_loss, end_diversity;
    double eval_mean_member_nll, eval_diversity;
} poet_report_summary;

/* Smoothing window for a log of `rows` iterations: rows/10 clamped to [1, 100]. */
int poet_report_window(long rows);

/* Reads the log at `path` and fills `out`. Fails with POET_ERR_IO when the file cannot be read,
 * POET_ERR_DATA when it is not HDF5, is truncated, or lacks the poet datasets, e.g.
 *   run.h5: not a poet loss log: missing /iterations/loss */
poet_status poet_report_load(const char *path, poet_report_summary *out);

/* The human-readable block of one run. */
void poet_report_print(const poet_report_summary *s, FILE *out);

/* One line per run under a header: the comparison of several runs. */
void poet_report_print_table(const poet_report_summary *s, int n, FILE *out);

/* The same per-run summary as CSV: a header line, then one line per run. */
void poet_report_print_csv(const poet_report_summary *s, int n, FILE *out);

/* `poet report`: loads every log first (fails on the first bad one, printing nothing), then prints
 * each run's block and, for several logs, the comparison table; with `csv` only the CSV. */
poet_status poet_report_run(int nlogs, char **paths, int csv, FILE *out);

#endif
