/* eval.h — test-set evaluation of the whole ensemble across ranks.
 *
 * Every rank forwards its members over the test set in inference mode; the fixed-point logit sums
 * meet at rank 0 with MPI_Reduce (exact, so the result does not depend on the rank count); members'
 * predictions are gathered so rank 0 can measure how often members disagree.
 */
#ifndef POET_EVAL_H
#define POET_EVAL_H

#include <mpi.h>

#include "poet/data.h"
#include "poet/ensemble.h"

typedef struct {
    long iteration;      /* iterations trained when evaluated */
    long images;         /* test images used */
    double ensemble_nll; /* mean -log q̄[label] */
    double ensemble_accuracy;
    double member_accuracy[POET_MAX_MEMBERS]; /* each member on its own, by global id */
    double member_nll[POET_MAX_MEMBERS];
    double mean_member_accuracy;
    double mean_member_nll; /* mean over members of member_nll; minus ensemble_nll: diversity */
    double disagreement;    /* mean over member pairs of the fraction of images they classify
                               differently */
    /* Calibration (docs/objectives.md): Brier score and 15-bin ECE of the ensemble's prediction
     * q̄ = softmax(mean logits), of the deep-ensembles prediction p̄ = mean softmax(f_j), and of
     * each member alone. */
    double ensemble_brier, ensemble_ece;
    double probmean_accuracy, probmean_nll, probmean_brier, probmean_ece;
    double member_brier[POET_MAX_MEMBERS], member_ece[POET_MAX_MEMBERS];
    double mean_member_brier, mean_member_ece;
    /* Member health: members whose accuracy is at or below poet_metrics_chance_threshold. */
    double chance_threshold;
    int members_at_chance;
    double member_at_chance[POET_MAX_MEMBERS]; /* 1 or 0, by global id (a log matrix column) */
} poet_eval_result;

/* Collective over comm. The full result is valid on rank 0 (other ranks get ensemble metrics too).
 */
poet_status poet_eval_run(MPI_Comm comm, poet_ensemble *e, const poet_dataset *test, long iteration,
                          poet_eval_result *out);

#endif
