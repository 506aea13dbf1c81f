/* checkpoint.h — whole-ensemble checkpoints in one HDF5 file written collectively through MPI-IO.
 *
 * Layout and every field: docs/checkpoint-format.md. Files are written as
 * <dir>/ckpt-<iteration, 8 digits>.h5.tmp, closed by every rank, then renamed by rank 0;
 * <dir>/latest (a one-line text file naming the newest checkpoint) is replaced atomically with
 * rename(2); only the newest `checkpoint_keep` are kept. A crash mid-write leaves a .tmp that is
 * never taken for good.
 *
 * The training state a checkpoint holds is "iterations completed": the run resumes at that
 * iteration with the same batch order (a pure function of seed and epoch), so nothing else is
 * needed to replay.
 */
#ifndef POET_CHECKPOINT_H
#define POET_CHECKPOINT_H

#include <mpi.h>
#include <stdio.h>

#include "poet/config.h"
#include "poet/ensemble.h"

#define POET_CHECKPOINT_FORMAT_VERSION 1

typedef struct {
    long iteration;        /* iterations completed */
    long epoch;            /* iteration / batches_per_epoch */
    long position;         /* iteration % batches_per_epoch: batches done in that epoch */
    long total_iterations; /* of the run */
} poet_train_position;

/* Collective. Writes every member's parameters and momentum (each rank its own members). `path_out`
 * (may be NULL) receives the final file name. On any rank's failure no file replaces a good one. */
poet_status poet_checkpoint_write(MPI_Comm comm, const poet_config *cfg, const poet_ensemble *e,
                                  const poet_train_position *pos, char *path_out, size_t path_size);

/* Collective. Reads `path` into `e` (each rank its own members, whatever rank count wrote it) after
 * verifying format, checksums and that its ensemble (members, architectures) matches cfg. */
poet_status poet_checkpoint_read(MPI_Comm comm, const char *path, const poet_config *cfg,
                                 poet_ensemble *e, poet_train_position *pos);

/* Collective. The newest checkpoint in cfg->checkpoint_dir that verifies (rank 0 decides and tells
 * the others; corrupt ones are reported on stderr and skipped). *found = 0 when there is none. */
poet_status poet_checkpoint_resume(MPI_Comm comm, const poet_config *cfg, poet_ensemble *e,
                                   poet_train_position *pos, int *found, char *path_out,
                                   size_t path_size);

/* Serial (any rank may call it): the identity of checkpoint `path` without its tensors: the stored
 * config (parsed), the input shape and the iterations completed. Checkpoint errors as read's. */
poet_status poet_checkpoint_peek(const char *path, poet_config *stored, poet_shape *input,
                                 long *iteration);

/* Serial: prints metadata and per-member checksums of `path` to `out`, verifying every checksum.
 * Returns POET_ERR_CHECKPOINT when anything does not verify. */
poet_status poet_checkpoint_inspect(const char *path, FILE *out);

#endif
