/* train.h — the training loop of one rank, and the signals that stop it cleanly.
 *
 * Per iteration: batch from (seed, iteration) → forward of the rank's members → fixed-point logit
 * sum up the tree → root: softmax of the mean, loss, gradient (q̄ − p)/(M·B) → gradient down the
 * tree → backward → SGD step. A stop signal (SIGTERM, SIGUSR1) is carried up in the tree header,
 * the root's decision comes back down, and every rank checkpoints after the same iteration and
 * returns POET_STOPPED.
 */
#ifndef POET_TRAIN_H
#define POET_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "poet/config.h"
#include "poet/eval.h"

typedef struct {
    int resume;              /* --resume: continue from the newest good checkpoint, if any */
    const char *resume_from; /* --resume-from FILE: that checkpoint */
    long stop_after; /* testing: behave as if stopped by a signal after this many iterations (0 =
                        never) */
    int quiet;       /* no progress lines */
    const char *trajectory; /* if set, rank 0 appends "iteration loss-as-hex" lines to this file */
} poet_train_options;

/* Where a rank's training time goes (the summary's profile line; bench/ reads it). */
typedef enum {
    POET_PHASE_DATA, /* batch assembly */
    POET_PHASE_FORWARD,
    POET_PHASE_COMM, /* tree traffic and waiting for it, and the root's loss */
    POET_PHASE_BACKWARD,
    POET_PHASE_OPTIMIZER,
    POET_PHASE_OTHER, /* progress, loss log, periodic evaluation and checkpoints */
    POET_PHASES
} poet_phase;

typedef struct {
    long iterations_done;
    int deadline_stop; /* stopped (exit 75) to finish before training.deadline */
    double final_loss;
    double seconds;
    double images_per_second;     /* ensemble images (each seen by all members) */
    uint64_t bytes_per_iteration; /* this rank, sent + received, mean over the run's iterations */
    uint64_t bytes_per_iteration_min, bytes_per_iteration_max; /* over all ranks */
    uint64_t data_parallel_bytes_per_iteration; /* what all-reducing every gradient would move */
    int groups, group_size; /* member groups (group.h): G groups of S ranks (S = 1: P <= M) */
    uint64_t group_bytes_per_iteration; /* this rank's group all-reduce, sent + received */
    uint64_t group_bytes_per_iteration_min, group_bytes_per_iteration_max; /* over all ranks */
    double phase_seconds[POET_PHASES]; /* rank 0's time per phase over the training loop */
    double peak_rss_mib;               /* this rank's peak resident memory */
    double peak_rss_mib_max;           /* the largest over all ranks */
    double memory_estimate_mib;        /* this rank's estimate before training (memplan.h) */
    double memory_estimate_mib_max;    /* the largest over all ranks */
    double data_mib; /* this rank's data sets and batch buffers (the same on every rank) */
    long train_images, validation_images, test_images;
    int channels, height, width; /* the images' shape, C×H×W */
    int float_pixels;            /* 1: held as float32 (HDF5 float images), 0: as uint8 */
    int streamed;                /* 1: training images read from their HDF5 file per batch */
    poet_eval_result eval;
    int evaluated;
    int already_finished; /* --resume found the run complete and changed nothing */
    int checkpoints;      /* written by this run, and rank 0's wall time for them */
    double checkpoint_seconds_last, checkpoint_seconds_total;
} poet_train_summary;

/* Installs SIGTERM/SIGUSR1 handlers that only set a flag read at the next iteration. */
void poet_train_install_signal_handlers(void);

/* Runs the whole training (collective over comm). Returns POET_OK when finished, POET_STOPPED after
 * a signal-triggered checkpoint, or an error (every rank returns an error status, none hangs). */
poet_status poet_train_run(MPI_Comm comm, const poet_config *cfg, const poet_train_options *opt,
                           poet_train_summary *summary);

/* `poet eval`: loads the checkpoint at `checkpoint_path` (NULL: the newest good one in
 * cfg->checkpoint_dir) and evaluates the ensemble on the test set (collective). */
poet_status poet_train_evaluate(MPI_Comm comm, const poet_config *cfg, const char *checkpoint_path,
                                poet_eval_result *result);

#endif
