/* deadline.h — deadline-aware stopping: when a run must end by a wall-clock time
 * (training.deadline,
 * --deadline), rank 0 measures its iterations, evaluations and checkpoints and decides when to stop
 * so that the final checkpoint is written before the deadline. The decision travels to every rank
 * in the reduce tree's header, exactly as the stop flag of a signal (train.c).
 *
 * The deadline is an ISO-8601 local time ("2026-12-02T15:40:00", also with a space instead of the
 * T, seconds optional, a trailing Z for UTC) or "slurm": the job's end time as Slurm reports it
 * (`squeue -h -j $SLURM_JOB_ID -o %e`, else `scontrol show job $SLURM_JOB_ID`'s EndTime).
 */
#ifndef POET_DEADLINE_H
#define POET_DEADLINE_H

#include "poet/error.h"

/* Seconds kept free after the final checkpoint (process exit, MPI teardown, Slurm's own margin). */
#define POET_DEADLINE_MARGIN_SECONDS 10.0
/* A checkpoint's duration assumed until one has been measured. */
#define POET_DEADLINE_FIRST_CHECKPOINT_SECONDS 30.0

typedef struct {
    double at;        /* the deadline, seconds since the epoch; 0 = none */
    double iteration; /* estimates in seconds: the slowest of the last iterations, decaying */
    double checkpoint;
    double evaluation;
    double fake_step; /* tests (POET_TEST_SECONDS_PER_STEP): the clock advances this much per
                         iteration, checkpoint and evaluation, and every estimate is this */
    double fake_now;
} poet_deadline;

/* Whether `text` is a deadline this module understands ("slurm" or an ISO time); no clock read. */
int poet_deadline_valid(const char *text);

/* Resolves `text` to a time (asking Slurm for "slurm"; "" or NULL: no deadline, the clock only);
 * fails with POET_ERR_CONFIG naming `what`
 * (e.g. "training.deadline") when it cannot, or when the deadline is already past. */
poet_status poet_deadline_init(poet_deadline *d, const char *text, const char *what);

/* Seconds since the epoch (the test clock when one is set). */
double poet_deadline_now(const poet_deadline *d);

/* Records the measured duration of one iteration, checkpoint or evaluation. */
void poet_deadline_note_iteration(poet_deadline *d, double seconds);
void poet_deadline_note_checkpoint(poet_deadline *d, double seconds);
void poet_deadline_note_evaluation(poet_deadline *d, double seconds);

/* Before an iteration: 1 when the run must stop after it, because one more iteration (plus an
 * evaluation when `evaluations` are due, 0..2) and the final checkpoint would not fit before the
 * deadline. */
int poet_deadline_stop_after_next(const poet_deadline *d, int evaluations);

#endif
