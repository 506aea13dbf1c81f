/* rundir.h — one run per checkpoint directory.
 *
 * A training run holds a lock on its checkpoint directory for as long as it runs: the file
 * <checkpoint_dir>/poet.lock, one line naming its holder,
 *   host=<hostname> pid=<pid> slurm_job=<SLURM_JOB_ID or -> restart=<SLURM_RESTART_COUNT or ->
 * made atomically (written whole under a private name, then hard-linked to poet.lock, which fails
 * when the name exists — the O_CREAT|O_EXCL guarantee, without a moment where the lock exists but
 * is still empty; where the file system has no hard links, O_CREAT|O_EXCL directly). A second run
 * is refused with a message naming the holder. A lock left by a process that is gone is taken over
 * with a warning: on the same host when kill(pid, 0) says ESRCH, and on any host when it names this
 * Slurm job with another SLURM_RESTART_COUNT (an earlier incarnation of a requeued job, killed
 * before it could remove its lock).
 *
 * Holding the lock, a fresh run (neither --resume nor --resume-from) refuses a directory that holds
 * another run's checkpoints (ckpt-*, latest) or loss log, unless --overwrite says to remove them;
 * they are removed only once the lock is held. docs/cli.md describes the rules and messages.
 */
#ifndef POET_RUNDIR_H
#define POET_RUNDIR_H

#include <mpi.h>

#include "poet/config.h"
#include "poet/error.h"

#define POET_LOCK_NAME "poet.lock"

typedef enum {
    POET_RUNDIR_FRESH,    /* a new run: another run's files are an error */
    POET_RUNDIR_RESUME,   /* --resume / --resume-from: the files are this run's own */
    POET_RUNDIR_OVERWRITE /* --overwrite: another run's files are removed once the lock is held */
} poet_rundir_mode;

typedef struct poet_rundir poet_rundir;

/* Collective over comm, before any other work of the run. Rank 0 creates cfg->checkpoint_dir,
 * takes its lock and checks (or, with POET_RUNDIR_OVERWRITE, removes) earlier files; every rank
 * agrees on the outcome through poet_error_agree. A refused lock or directory is POET_ERR_IO (exit
 * 5). On success *out is the lock (every rank gets a handle; only rank 0's holds the file); on
 * failure *out is NULL and nothing is held. Rank 0 prints what it removed unless `quiet`. */
poet_status poet_rundir_acquire(MPI_Comm comm, const poet_config *cfg, poet_rundir_mode mode,
                                int quiet, poet_rundir **out);

/* Rank-local, never collective, so it is safe on every exit path (errors, signals, before an
 * abort): rank 0 removes the lock file if it is still its own. NULL does nothing. */
void poet_rundir_release(poet_rundir *lock);

#endif
