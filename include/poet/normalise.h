/* normalise.h — data.mean / data.std "auto": the training set's own pixel mean and standard
 * deviation (of x/255 over every pixel), computed once when a run starts and stored in its
 * checkpoints (the stored config holds the numbers), so a resumed run, eval and predict reuse them.
 */
#ifndef POET_NORMALISE_H
#define POET_NORMALISE_H

#include <mpi.h>

#include "poet/config.h"

/* Collective. Replaces "auto" in cfg by numbers: from `checkpoint`'s stored config when one is
 * given (or, with try_latest, the one `latest` names in cfg->checkpoint_dir, if any), else computed
 * from the training set. Every rank computes the same numbers; errors are agreed. Rank 0 prints the
 * values unless quiet. */
poet_status poet_normalise_resolve(MPI_Comm comm, poet_config *cfg, const char *checkpoint,
                                   int try_latest, int quiet);

/* Serial: the mean and (population) standard deviation of x/255 over every pixel (all channels) of
 * cfg's training images, read in cfg's data format. */
poet_status poet_normalise_compute(const poet_config *cfg, double *mean, double *std);

#endif
