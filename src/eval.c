/* eval.c — ensemble and member metrics on the test set, summed exactly across ranks. */
#include "poet/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "poet/loss.h"
#include "poet/metrics.h"
#include "poet/mpierror.h"

/* Per-rank scratch for one evaluation pass. */
typedef struct {
    float *images;                   /* [E, C, H, W] */
    uint8_t *labels;                 /* [E] */
    float *member_logits;            /* [n_local, E, K] */
    int64_t *fixed;                  /* [E, K] this rank's partial sums */
    int64_t *fixed_total;            /* [E, K] on rank 0 */
    double *mean;                    /* [E, K] */
    uint8_t *predictions;            /* [n_local, N] each local member's argmax per test image */
    double *member_nll;              /* [n_local] sums */
    long *member_correct;            /* [n_local] */
    poet_metrics *member_metrics;    /* [n_local] Brier and ECE sums */
    int64_t *probs;                  /* [E, K] this rank's members' probabilities, fixed point */
    int64_t *probs_total;            /* [E, K] on rank 0 */
    poet_metrics ensemble, probmean; /* rank 0: q̄ and p̄ */
} eval_scratch;

static void scratch_free(eval_scratch *s) {
    free(s->images);
    free(s->labels);
    free(s->member_logits);
    free(s->fixed);
    free(s->fixed_total);
    free(s->mean);
    free(s->predictions);
    free(s->member_nll);
    free(s->member_correct);
    free(s->member_metrics);
    free(s->probs);
    free(s->probs_total);
}

static int argmax(const float *row, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (row[k] > row[best])
            best = k;
    return best;
}

/* Records each local member's prediction, NLL and correctness for rows [first, first + rows). */
static void score_members(const poet_ensemble *e, eval_scratch *s, long first, int rows, long N) {
    int K = e->classes;
    for (int i = 0; i < e->n_local; i++) {
        const float *logits = s->member_logits + (size_t)i * e->eval_batch * K;
        double loss;
        long correct;
        poet_loss_member(logits, K, s->labels, rows, K, &loss, &correct);
        s->member_nll[i] += loss * rows;
        s->member_correct[i] += correct;
        for (int b = 0; b < rows; b++) {
            s->predictions[(size_t)i * N + first + b] = (uint8_t)argmax(logits + (size_t)b * K, K);
            double row[256], p[256]; /* K <= 256 (data.classes) */
            for (int k = 0; k < K; k++)
                row[k] = logits[(size_t)b * K + k];
            poet_softmax_row(row, K, p);
            poet_metrics_add(&s->member_metrics[i], p, K, s->labels[b]);
            /* p̄'s sum in fixed point: exact, so it does not depend on the rank count. */
            for (int k = 0; k < K; k++)
                s->probs[(size_t)b * K + k] += (int64_t)llrint(p[k] * POET_FIXED_SCALE);
        }
    }
}

/* Mean over member pairs of the fraction of images two members classify differently:
 * for one image with class counts c_k, the disagreeing pairs are (M² − Σ c_k²) / 2. */
static double pairwise_disagreement(const uint8_t *all_predictions, int M, long N, int K) {
    if (M < 2)
        return 0.0;
    double disagreeing = 0;
    int counts[256];
    for (long n = 0; n < N; n++) {
        memset(counts, 0, sizeof(int) * K);
        for (int j = 0; j < M; j++)
            counts[all_predictions[(size_t)j * N + n]]++;
        long same = 0;
        for (int k = 0; k < K; k++)
            same += (long)counts[k] * counts[k];
        disagreeing += ((double)M * M - same) / 2.0;
    }
    return disagreeing / ((double)M * (M - 1) / 2.0 * N);
}

/* Rank 0 gathers every member's predictions and per-member sums, indexed by global id. */
static poet_status gather_members(MPI_Comm comm, const poet_ensemble *e, eval_scratch *s, long N,
                                  poet_eval_result *out) {
    poet_status st = POET_OK;
    int M = e->cfg->members, K = e->classes;
    uint8_t *all = NULL;
    double *sums = NULL, *total = NULL;
    poet_metrics *metrics = NULL, *metrics_total = NULL; /* [M] */
    POET_ALLOC(sums, 2 * (size_t)M);
    POET_ALLOC(total, 2 * (size_t)M);
    for (int i = 0; i < e->n_local; i++) {
        sums[e->local_ids[i]] = s->member_nll[i];
        sums[M + e->local_ids[i]] = (double)s->member_correct[i];
    }
    POET_MPI(MPI_Reduce(sums, total, 2 * M, MPI_DOUBLE, MPI_SUM, 0, comm));
    /* Each member's metrics come from its owner alone: the sum only adds zeros, so it is exact. */
    POET_ALLOC(metrics, M);
    POET_ALLOC(metrics_total, M);
    memset(metrics, 0, (size_t)M * sizeof *metrics);
    for (int i = 0; i < e->n_local; i++)
        metrics[e->local_ids[i]] = s->member_metrics[i];
    POET_MPI(
        MPI_Reduce(metrics, metrics_total, M * POET_METRICS_DOUBLES, MPI_DOUBLE, MPI_SUM, 0, comm));
    /* Predictions: each member's row goes to rank 0 from its owner, in global order. */
    if (e->rank == 0)
        POET_ALLOC(all, (size_t)M * N);
    for (int j = 0; j < M; j++) {
        int owner = e->member_rank[j];
        int local = -1;
        for (int i = 0; i < e->n_local; i++)
            if (e->local_ids[i] == j)
                local = i;
        if (e->rank == 0 && owner == 0)
            memcpy(all + (size_t)j * N, s->predictions + (size_t)local * N, N);
        else if (e->rank == 0)
            POET_MPI(MPI_Recv(all + (size_t)j * N, (int)N, MPI_UINT8_T, owner, 4300 + j % 1000,
                              comm, MPI_STATUS_IGNORE));
        else if (owner == e->rank)
            POET_MPI(MPI_Send(s->predictions + (size_t)local * N, (int)N, MPI_UINT8_T, 0,
                              4300 + j % 1000, comm));
    }
    if (e->rank == 0) {
        double acc_sum = 0, nll_sum = 0;
        for (int j = 0; j < M; j++) {
            out->member_nll[j] = total[j] / N;
            out->member_accuracy[j] = total[M + j] / N;
            acc_sum += out->member_accuracy[j];
            nll_sum += out->member_nll[j];
        }
        out->mean_member_accuracy = acc_sum / M;
        out->mean_member_nll = nll_sum / M;
        out->chance_threshold = poet_metrics_chance_threshold(K, (double)N);
        for (int j = 0; j < M; j++) {
            out->member_brier[j] = poet_metrics_brier(&metrics_total[j]);
            out->member_ece[j] = poet_metrics_ece(&metrics_total[j]);
            out->mean_member_brier += out->member_brier[j] / M;
            out->mean_member_ece += out->member_ece[j] / M;
            out->member_at_chance[j] = out->member_accuracy[j] <= out->chance_threshold;
            out->members_at_chance += out->member_accuracy[j] <= out->chance_threshold;
        }
        out->disagreement = pairwise_disagreement(all, M, N, K);
    }
fail:
    free(all);
    free(sums);
    free(total);
    free(metrics);
    free(metrics_total);
    return st;
}

poet_status poet_eval_run(MPI_Comm comm, poet_ensemble *e, const poet_dataset *test, long iteration,
                          poet_eval_result *out) {
    poet_status st = POET_OK;
    eval_scratch s = {0};
    int K = e->classes, E = e->eval_batch, M = e->cfg->members;
    long N = test->count;
    size_t image_size = (size_t)test->channels * test->height * test->width;
    double nll = 0;
    long correct = 0;
    memset(out, 0, sizeof *out);
    out->iteration = iteration;
    out->images = N;
    POET_ALLOC(s.images, (size_t)E * image_size);
    POET_ALLOC(s.labels, E);
    POET_ALLOC(s.member_logits, (size_t)e->n_local * E * K);
    POET_ALLOC(s.fixed, (size_t)E * K);
    POET_ALLOC(s.fixed_total, (size_t)E * K);
    POET_ALLOC(s.mean, (size_t)E * K);
    POET_ALLOC(s.predictions, (size_t)e->n_local * N);
    POET_ALLOC(s.member_nll, e->n_local);
    POET_ALLOC(s.member_correct, e->n_local);
    POET_ALLOC(s.member_metrics, e->n_local);
    memset(s.member_metrics, 0, (size_t)e->n_local * sizeof *s.member_metrics);
    POET_ALLOC(s.probs, (size_t)E * K);
    POET_ALLOC(s.probs_total, (size_t)E * K);
    for (long first = 0; first < N; first += E) {
        int rows = (int)(N - first < E ? N - first : E);
        /* The last batch may be short: pad the images with zeros and ignore those rows. */
        memset(s.images, 0, (size_t)E * image_size * sizeof(float));
        POET_TRY(poet_data_slice(test, first, rows, s.images, s.labels));
        memset(s.fixed, 0, (size_t)E * K * sizeof(int64_t));
        memset(s.probs, 0, (size_t)E * K * sizeof(int64_t));
        POET_TRY(poet_ensemble_eval_forward(e, s.images, rows, s.member_logits, s.fixed));
        score_members(e, &s, first, rows, N);
        POET_MPI(MPI_Reduce(s.fixed, s.fixed_total, rows * K, MPI_INT64_T, MPI_SUM, 0, comm));
        POET_MPI(MPI_Reduce(s.probs, s.probs_total, rows * K, MPI_INT64_T, MPI_SUM, 0, comm));
        if (e->rank == 0) {
            double loss;
            long batch_correct;
            poet_loss_fixed_to_mean(s.fixed_total, rows, K, M, s.mean);
            poet_loss_joint(s.mean, s.labels, rows, K, M, NULL, &loss, &batch_correct);
            nll += loss * rows;
            correct += batch_correct;
            double q[256];
            for (int b = 0; b < rows; b++) {
                poet_softmax_row(s.mean + (size_t)b * K, K, q);
                poet_metrics_add(&s.ensemble, q, K, s.labels[b]);
            }
            poet_loss_fixed_to_mean(s.probs_total, rows, K, M, s.mean); /* p̄, reusing the buffer */
            for (int b = 0; b < rows; b++)
                poet_metrics_add(&s.probmean, s.mean + (size_t)b * K, K, s.labels[b]);
        }
    }
    out->ensemble_nll = nll / N;
    out->ensemble_accuracy = (double)correct / N;
    out->ensemble_brier = poet_metrics_brier(&s.ensemble);
    out->ensemble_ece = poet_metrics_ece(&s.ensemble);
    out->probmean_accuracy = poet_metrics_accuracy(&s.probmean);
    out->probmean_nll = poet_metrics_nll(&s.probmean);
    out->probmean_brier = poet_metrics_brier(&s.probmean);
    out->probmean_ece = poet_metrics_ece(&s.probmean);
    POET_TRY(gather_members(comm, e, &s, N, out));
    double pair[2] = {out->ensemble_nll, out->ensemble_accuracy};
    POET_MPI(MPI_Bcast(pair, 2, MPI_DOUBLE, 0, comm));
    out->ensemble_nll = pair[0];
    out->ensemble_accuracy = pair[1];
fail:
    scratch_free(&s);
    return st;
}
