/* losslog.h — the per-iteration loss log: one HDF5 file per run, written collectively via MPI-IO.
 *
 * Schema: docs/log-format.md. Rows are buffered in memory and flushed every cfg->log_flush_every
 * iterations and at every checkpoint; rank 0 writes the ensemble columns, each rank its own
 * members' columns of the member-loss matrix.
 */
#ifndef POET_LOSSLOG_H
#define POET_LOSSLOG_H

#include <mpi.h>

#include "poet/config.h"
#include "poet/ensemble.h"
#include "poet/eval.h"

typedef struct poet_losslog poet_losslog;

/* One iteration as the root saw it (other ranks pass the same struct; only rank 0's is written). */
typedef struct {
    long iteration;  /* 0-based */
    double loss;     /* ensemble loss of the batch */
    double accuracy; /* ensemble batch accuracy */
    double lr;
    double seconds; /* wall time of the iteration on rank 0 */
    double bytes;   /* bytes rank 0 sent + received in the iteration */
    /* The decomposition (docs/objectives.md): each rank's own sum of the mean losses of its
     * members that were in the iteration's mean, and how many members the mean had. The log adds
     * the ranks' sums at a flush (no traffic per iteration) for mean_member_loss and diversity. */
    double kept_loss_sum;
    int kept;
} poet_iteration_record;

/* Collective. Creates `path`, or when first_iteration > 0 reopens it and drops every row at or past
 * first_iteration (a resumed run rewrites them), so each iteration is in the log exactly once. */
poet_status poet_losslog_open(MPI_Comm comm, const char *path, const poet_config *cfg,
                              const poet_ensemble *e, long first_iteration, poet_losslog **out);

/* Buffers one iteration: the root's record and this rank's members' own losses (mean over the
 * batch, [e->n_local], in local order). Flushes when the buffer is full (collective then). */
poet_status poet_losslog_append(poet_losslog *log, const poet_iteration_record *rec,
                                const double *local_member_loss);

/* Whether the next poet_losslog_append flushes (a collective step: the caller may check its peers
 * first, poet_tree_sync). */
int poet_losslog_flush_due(const poet_losslog *log);

/* Collective: appends an evaluation row (rank 0's values are written). */
poet_status poet_losslog_eval(poet_losslog *log, const poet_eval_result *res);

/* Collective: the run's traffic per iteration as root attributes (docs/log-format.md): the member
 * groups' shape, every rank's reduce-tree and group all-reduce bytes (sent + received; gathered
 * here, each rank passes its own) and what data parallelism over all ranks would move per rank. A
 * log whose writes failed earlier is left alone. */
poet_status poet_losslog_traffic(poet_losslog *log, int groups, int group_size, double tree_bytes,
                                 double group_bytes, double data_parallel_bytes);

/* Collective: writes what is buffered and flushes the file to disk. */
poet_status poet_losslog_flush(poet_losslog *log);

/* Collective: flushes and closes. */
poet_status poet_losslog_close(poet_losslog *log);

#endif
