/* predict.h — applies a checkpoint's ensemble to images and writes, per image, the ensemble's class
 * probabilities and prediction, every member's probabilities and the members' disagreement.
 *
 * Members are spread over the ranks as in training; each rank forwards its own members over every
 * image, the fixed-point logit sums meet at rank 0 (exact, as in eval.c, so the ensemble's output
 * does not depend on the rank count) and the members' logits are gathered there. Rank 0 alone
 * writes the output file (HDF5 or CSV, layout in docs/predict.md), through a temporary renamed when
 * complete.
 */
#ifndef POET_PREDICT_H
#define POET_PREDICT_H

#include <mpi.h>

#include "poet/config.h"

typedef struct {
    const char *checkpoint; /* the checkpoint; NULL: the one `latest` names in cfg's directory */
    const char *images;     /* IDX3 images (raw or .gz) */
    const char *labels; /* IDX1 labels or NULL: with labels the output holds them and accuracy */
    const char *output; /* *.h5 / *.hdf5 (HDF5) or *.csv */
    int quiet;          /* no progress lines */
} poet_predict_options;

typedef struct {
    long images;
    long iteration; /* of the checkpoint */
    int labelled;
    double accuracy; /* of the ensemble's prediction, when labelled */
    char checkpoint[POET_PATH_MAX];
} poet_predict_summary;

/* Whether `path` starts with the HDF5 signature (a checkpoint rather than a JSON config). */
int poet_predict_is_hdf5(const char *path);

/* Whether `output`'s name says a format: 1 CSV, 0 HDF5, -1 neither. */
int poet_predict_output_format(const char *output);

/* Collective. cfg == NULL: the ensemble is the one the checkpoint's stored config describes;
 * otherwise cfg's (checked against the checkpoint as eval does). Errors: a checkpoint error (10)
 * for a missing or bad checkpoint, a data error (4) for images the networks do not take, an I/O
 * error (5) naming the output file when it cannot be written. With more ranks than the
 * checkpoint's members, the first M ranks predict (as a run of M ranks) and the others wait. */
poet_status poet_predict_run(MPI_Comm comm, const poet_config *cfg, const poet_predict_options *opt,
                             poet_predict_summary *out);

#endif
