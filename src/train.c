/* train.c — one rank's training loop: forward, reduce tree, backward, step; evaluation, logs,
 * checkpoints and the clean stop on SIGTERM/SIGUSR1. */
#define _POSIX_C_SOURCE 200809L /* sigaction, clock_gettime */
#include "poet/train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "poet/checkpoint.h"
#include "poet/data.h"
#include "poet/deadline.h"
#include "poet/ensemble.h"
#include "poet/fsutil.h"
#include "poet/group.h"
#include "poet/loss.h"
#include "poet/losslog.h"
#include "poet/memplan.h"
#include "poet/mpierror.h"
#include "poet/net.h"
#include "poet/netprobe.h"
#include "poet/optim.h"
#include "poet/prefetch.h"
#include "poet/tree.h"

#define EVAL_BATCH 500

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void poet_train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything one rank holds during training. */
typedef struct {
    MPI_Comm comm;
    int rank, ranks;
    const poet_config *cfg;
    const poet_train_options *opt;
    poet_dataset train, test;
    poet_dataset val; /* held out of the training set (data.validation), or empty */
    poet_batcher batcher;
    poet_prefetch *prefetch; /* the thread building batches ahead, or NULL (data.prefetch 0) */
    poet_ensemble ens;
    poet_tree *tree;
    poet_layout layout; /* member groups (group.h): S = 1 when P <= M */
    poet_group *group;  /* the group's communicators and all-reduce; NULL when S = 1 */
    MPI_Comm tree_comm; /* the tree's ranks: the run's, or this rank's shard across the groups */
    double *extras;     /* [GROUP_EXTRAS + n_local] summed over the group with the gradients */
    poet_losslog *log;
    int chunks;          /* micro-batches per batch, or per shard (tree slots) */
    int rows;            /* rows per micro-batch */
    long total;          /* iterations of the run */
    long start;          /* first iteration this process runs */
    size_t image_size;   /* C·H·W */
    float *images[2];    /* [B, C, H, W]; two in the stale mode (this batch and the next) */
    uint8_t *labels[2];  /* [B] */
    double *mean;        /* [rows, K] root scratch */
    double *member_loss; /* [n_local] mean own loss of the last batch */
    poet_status local;   /* this rank's own failure, carried up the tree to stop every rank */
    int fault_rank;      /* testing: POET_FAULT_RANK fails at POET_FAULT_ITERATION (-1: never) */
    long fault_iteration;
    int sleep_rank;       /* testing: POET_FAULT_SLEEP_RANK stops answering at */
    long sleep_iteration; /* POET_FAULT_SLEEP_ITERATION (default 0) for POET_FAULT_SLEEP_SECONDS */
    unsigned sleep_seconds;
    int sleep_at_end; /* POET_FAULT_SLEEP_AT=end: after the iteration's exchange, not before it */
    int checkpoints;  /* written so far, and their wall time on this rank (the summary) */
    double checkpoint_last, checkpoint_total;
    FILE *trajectory;
    double phase_mark; /* when the current phase began */
    double phase_seconds[POET_PHASES];
    poet_memplan memory; /* the estimate checked before anything large is allocated */
    int evaluate_only;   /* poet eval: its member lines mark members at chance, no warning */
    /* Rank 0 decides from its clock; the decision travels in the tree header (HDR_DEADLINE,
     * HDR_CHECKPOINT) so every rank acts on the same iteration. */
    poet_deadline deadline;
    double last_checkpoint; /* poet_deadline_now() of the last checkpoint (or the start) */
    int flag_deadline;      /* rank 0: stop after the iteration now being sent up */
    int flag_checkpoint;    /* rank 0: checkpoint after it (output.checkpoint_every_seconds) */
    int checkpoint_pending; /* rank 0: a checkpoint flag is on its way */
} trainer;

/* The tree header's spare fields carry rank 0's clock decisions, like the signal's stop flag. */
#define HDR_DEADLINE POET_HDR_RESERVED0
#define HDR_CHECKPOINT POET_HDR_RESERVED1

/* Charges the time since the last mark to `phase` (profile in the summary and bench/). */
static void lap(trainer *t, poet_phase phase) {
    double now = now_seconds();
    t->phase_seconds[phase] += now - t->phase_mark;
    t->phase_mark = now;
}

static poet_status load_data(trainer *t) {
    poet_status st = POET_OK;
    const poet_config *c = t->cfg;
    poet_data_spec spec;
    poet_config_data_spec(c, 0, &spec);
    POET_TRY(poet_data_load_spec(&spec, &t->train));
    long n_val = poet_config_validation_count(c, t->train.count);
    if (n_val > 0) {
        poet_dataset all = t->train;
        POET_TRY(poet_data_split(&all, n_val, c->seed, &t->train, &t->val));
    }
    poet_config_data_spec(c, 1, &spec);
    POET_TRY(poet_data_load_spec(&spec, &t->test));
    /* The training images fix the network's input; evaluation forwards test images through it. */
    char input_from[POET_PATH_MAX + 32];
    snprintf(input_from, sizeof input_from, "the training images, %s", c->train_images);
    POET_TRY(poet_data_check_shape(&t->test, t->train.channels, t->train.height, t->train.width,
                                   input_from));
    POET_TRY(poet_batcher_init(&t->batcher, &t->train, c->seed, c->shuffle, c->batch_size));
    poet_batcher_set_augment(&t->batcher, c->augment_crop_padding, c->augment_flip);
    /* A member group's rank forwards its shard only: the other rows' images are not built. */
    poet_batcher_set_rows(&t->batcher, t->layout.first_row, t->layout.rows);
fail:
    return st;
}

/* The group all-reduce's extras: the shards' decisions and losses travel with the gradients. */
enum {
    X_STOP, /* the decision header of this rank's shard, as read_decision() saw it */
    X_ERROR,
    X_DEADLINE,
    X_CHECKPOINT,
    X_FAILED,    /* ranks of the group with a failure of their own (no step for the group) */
    X_LOSS,      /* the shard's part of the batch loss: its mean × rows / B (tree roots only) */
    X_CORRECT,   /* the shard's correct predictions (tree roots only) */
    GROUP_EXTRAS /* then [n_local] the members' own mean losses, the shard's part */
};

/* tree "auto": shard 0's ranks measure their tree's network (each shard's tree spans the same
 * hosts, one rank per group) and tell the rest of their group. */
static poet_status choose_tree(trainer *t, poet_tree_kind *kind, int *arity) {
    poet_status st = POET_OK;
    int choice[3] = {0, 0, POET_OK};
    if (t->layout.shard == 0) {
        poet_netprobe probe;
        char line[512];
        choice[2] = poet_netprobe_choose(t->tree_comm, (size_t)t->rows * t->cfg->classes, &probe);
        if (choice[2] == POET_OK) {
            choice[0] = (int)probe.kind;
            choice[1] = probe.arity;
            poet_netprobe_describe(&probe, line, sizeof line);
            if (t->rank == 0 && !t->opt->quiet)
                printf("%s\n", line);
        }
    }
    if (t->group)
        POET_MPI(MPI_Bcast(choice, 3, MPI_INT, 0, poet_group_comm(t->group)));
    if (choice[2] != POET_OK && t->layout.shard == 0)
        return (poet_status)choice[2];
    if (choice[2] != POET_OK)
        POET_FAIL((poet_status)choice[2], "tree \"auto\": the network measurement failed on the "
                                          "member group's first rank");
    *kind = (poet_tree_kind)choice[0];
    *arity = choice[1];
fail:
    return st;
}

/* A wait in the group all-reduce must outlast every tree wait (one step per tree level each way,
 * tree.c), so that a silent rank is named by its neighbour in the tree rather than by a rank of
 * another group that waits for a peer stuck in that tree. */
static double group_grace(const trainer *t, poet_tree_kind kind, int arity) {
    double step = t->cfg->timeout < 4 ? t->cfg->timeout / 4 : 1.0;
    int k = kind == POET_TREE_BINARY ? 2 : arity, height = 0;
    for (long r = 0; k >= 2 && (long)k * r + 1 < t->layout.groups; r = (long)k * r + 1)
        height++;
    return step * (2 * height + 2);
}

static poet_status setup(trainer *t) {
    poet_status st = POET_OK;
    const poet_config *c = t->cfg;
    int slots = c->overlap == POET_OVERLAP_STALE ? 2 : t->chunks;
    poet_shape input = {t->train.channels, t->train.height, t->train.width};
    t->image_size = (size_t)input.c * input.h * input.w;
    t->total = poet_config_total_iterations(c, t->train.count);
    /* Data sets (pixels as stored, byte labels) are held already, the two batch buffers soon. */
    double data_bytes = poet_data_bytes(&t->train) + poet_data_bytes(&t->val) +
                        poet_data_bytes(&t->test) +
                        2.0 * c->batch_size * (t->image_size * sizeof(float) + 1);
    POET_TRY(
        poet_memplan_check(t->comm, c, input, t->rows, slots, EVAL_BATCH, data_bytes, &t->memory));
    t->tree_comm = t->comm;
    if (t->layout.size > 1) {
        POET_TRY(poet_group_create(t->comm, &t->layout, &t->group));
        t->tree_comm = poet_group_shard_comm(t->group);
    }
    /* A rank holds its member group's members (the members of rank `group` of `groups`); with
     * distributed.sync_batchnorm their batch normalisation uses the whole group's batch. */
    int sync = t->group && c->sync_batchnorm;
    POET_TRY(poet_ensemble_create(c, t->layout.group, t->layout.groups, input, t->rows, slots,
                                  EVAL_BATCH, sync ? poet_group_sum_callback : NULL,
                                  sync ? t->group : NULL, &t->ens));
    t->ens.shard = t->layout.shard;
    poet_tree_kind kind = c->tree;
    int arity = c->arity;
    if (kind == POET_TREE_AUTO)
        POET_TRY(choose_tree(t, &kind, &arity));
    POET_TRY(
        poet_tree_create(t->tree_comm, kind, arity, (size_t)t->rows * c->classes, slots, &t->tree));
    poet_tree_set_timeout(t->tree, c->timeout);
    if (t->group)
        poet_group_set_timeout(t->group, c->timeout, group_grace(t, kind, arity));
    POET_ALLOC(t->extras, GROUP_EXTRAS + (size_t)t->ens.n_local);
    for (int i = 0; i < 2; i++) {
        POET_ALLOC(t->images[i], (size_t)c->batch_size * t->image_size);
        POET_ALLOC(t->labels[i], c->batch_size);
    }
    POET_ALLOC(t->mean, (size_t)t->rows * c->classes);
    POET_ALLOC(t->member_loss, t->ens.n_local > 0 ? t->ens.n_local : 1);
fail:
    return st;
}

static void teardown(trainer *t) {
    poet_prefetch_stop(t->prefetch); /* before the batcher it uses goes */
    poet_tree_destroy(t->tree);
    poet_group_destroy(t->group); /* after the tree, which runs on the group's shard communicator */
    poet_ensemble_destroy(&t->ens);
    poet_batcher_free(&t->batcher);
    poet_data_free(&t->train);
    poet_data_free(&t->val);
    poet_data_free(&t->test);
    for (int i = 0; i < 2; i++) {
        free(t->images[i]);
        free(t->labels[i]);
    }
    free(t->mean);
    free(t->member_loss);
    free(t->extras);
    if (t->trajectory)
        fclose(t->trajectory);
}

/* Keeps the members' own mean losses of the batch just forwarded, before the next forward adds to
 * the ensemble's accumulators. */
static void snapshot_member_loss(trainer *t) {
    for (int i = 0; i < t->ens.n_local; i++)
        t->member_loss[i] = t->ens.member_loss[i] / t->cfg->batch_size;
    memset(t->ens.member_loss, 0, sizeof(double) * t->ens.n_local);
    memset(t->ens.member_correct, 0, sizeof(long) * t->ens.n_local);
}

/* Tests make one rank fail at one iteration (POET_FAULT_RANK, POET_FAULT_ITERATION), or stop
 * answering there (POET_FAULT_SLEEP_*: the others' tree waits time out, distributed.timeout). */
static void inject_fault(trainer *t, long it) {
    if (!t->sleep_at_end && t->sleep_rank == t->rank && t->sleep_iteration == it)
        sleep(t->sleep_seconds);
    if (t->local == POET_OK && t->fault_iteration == it && t->fault_rank == t->rank)
        t->local = poet_error_set(POET_ERR_INTERNAL,
                                  "injected failure at iteration %ld "
                                  "(POET_FAULT_RANK/POET_FAULT_ITERATION)",
                                  it);
}

/* Fills the slot's up buffer: header flags, then this rank's fixed-point logit sum of `rows`
 * images. A local failure is not returned here but carried up as an error flag, so no rank waits
 * forever. */
static void forward_micro_batch(trainer *t, int slot, const float *images, const uint8_t *labels,
                                poet_status *local) {
    int64_t *up = poet_tree_up(t->tree, slot);
    memset(up, 0, (POET_TREE_HEADER + (size_t)t->rows * t->cfg->classes) * sizeof(int64_t));
    if (*local == POET_OK)
        *local = poet_ensemble_forward(&t->ens, slot, images, labels, up + POET_TREE_HEADER);
    else /* the rank's group may synchronise batch normalisation: it must not wait for us */
        poet_ensemble_skip(&t->ens, slot, 0);
    up[POET_HDR_STOP] = stop_requested ? 1 : 0;
    up[POET_HDR_ERROR] = *local != POET_OK;
    up[HDR_DEADLINE] = t->flag_deadline;
    up[HDR_CHECKPOINT] = t->flag_checkpoint;
}

/* Root: the joint loss and gradient of one micro-batch from the summed logits; the decision header
 * passes the flag counts on. `loss_sum` and `correct` accumulate over the micro-batches. */
static void root_loss(trainer *t, int slot, const uint8_t *labels, double *loss_sum,
                      long *correct) {
    const poet_config *c = t->cfg;
    const int64_t *total = poet_tree_up(t->tree, slot);
    int64_t *decision = poet_tree_down_header(t->tree, slot);
    float *grad = poet_tree_down_values(t->tree, slot);
    double loss;
    long ok;
    /* The mean is over the members in this iteration's mean (all of them without dropout). */
    int kept = t->ens.kept_count[slot];
    poet_loss_fixed_to_mean(total + POET_TREE_HEADER, t->rows, c->classes, kept, t->mean);
    /* M·B of the whole batch as the divisor gives every row of a micro-batch or shard
     * (q̄ − p)/(M·B); beta weighs the joint term of a blend, whose own terms the members' ranks add
     * (docs/objectives.md). */
    poet_loss_joint_rows(t->mean, labels, t->rows, c->classes, (double)kept * c->batch_size,
                         c->beta, grad, &loss, &ok);
    *loss_sum += t->chunks == 1 && !t->group ? loss : loss * t->rows / c->batch_size;
    *correct += ok;
    decision[POET_HDR_STOP] = total[POET_HDR_STOP];
    decision[POET_HDR_ERROR] = total[POET_HDR_ERROR];
    decision[HDR_DEADLINE] = total[HDR_DEADLINE];
    decision[HDR_CHECKPOINT] = total[HDR_CHECKPOINT];
}

typedef struct {
    double loss, accuracy;
    int stop, error;
    int deadline, checkpoint; /* rank 0's clock decisions (the deadline also sets stop) */
} iteration_outcome;

/* Iteration `it`'s batch into images[slot]/labels[slot]: taken from the prefetch thread (which
 * built it while earlier iterations computed), or built here. The same batch either way. */
static poet_status next_batch(trainer *t, long it, int slot) {
    if (t->prefetch)
        return poet_prefetch_take(t->prefetch, it, &t->images[slot], &t->labels[slot], NULL);
    return poet_batcher_fill(&t->batcher, it, t->images[slot], t->labels[slot]);
}

static void read_decision(const int64_t *decision, iteration_outcome *out) {
    out->stop |= decision[POET_HDR_STOP] > 0 || decision[HDR_DEADLINE] > 0;
    out->error |= decision[POET_HDR_ERROR] > 0;
    out->deadline |= decision[HDR_DEADLINE] > 0;
    out->checkpoint |= decision[HDR_CHECKPOINT] > 0;
}

/* Member groups (group.h): the S ranks of a group sum their weight gradients, in shard order,
 * before the step, and with them what each shard alone knows: its tree's decision (a stop, a
 * failure or rank 0's clock flags seen in shard 1's tree reach shard 0 here, so every rank of
 * every group acts alike), the shard's part of the loss and the members' own losses, and whether
 * a rank of the group failed on its own (then no rank of the group steps: their weights stay
 * equal). Without groups (S = 1) nothing moves and nothing changes. */
static poet_status combine_group(trainer *t, iteration_outcome *out, double *loss, long *correct,
                                 int *group_failed) {
    poet_status st = POET_OK;
    double *x = t->extras;
    *group_failed = t->local != POET_OK;
    if (!t->group)
        return POET_OK;
    x[X_STOP] = out->stop;
    x[X_ERROR] = out->error;
    x[X_DEADLINE] = out->deadline;
    x[X_CHECKPOINT] = out->checkpoint;
    x[X_FAILED] = t->local != POET_OK;
    x[X_LOSS] = *loss;
    x[X_CORRECT] = (double)*correct;
    for (int i = 0; i < t->ens.n_local; i++)
        x[GROUP_EXTRAS + i] = t->member_loss[i];
    lap(t, POET_PHASE_BACKWARD);
    POET_TRY(poet_group_allreduce(t->group, t->ens.grads, t->ens.n_params, x,
                                  GROUP_EXTRAS + (size_t)t->ens.n_local));
    lap(t, POET_PHASE_COMM);
    out->stop = x[X_STOP] > 0;
    out->error = x[X_ERROR] > 0;
    out->deadline = x[X_DEADLINE] > 0;
    out->checkpoint = x[X_CHECKPOINT] > 0;
    *group_failed = x[X_FAILED] > 0;
    *loss = x[X_LOSS];
    *correct = (long)x[X_CORRECT];
    for (int i = 0; i < t->ens.n_local; i++)
        t->member_loss[i] = x[GROUP_EXTRAS + i];
fail:
    return st;
}

/* One iteration with `chunks` micro-batches. With overlap, the reduction of micro-batch c travels
 * while c+1 is forwarded and earlier ones run backward; without, every exchange completes at once.
 * The arithmetic is identical either way. */
static poet_status run_iteration(trainer *t, long it, iteration_outcome *out) {
    poet_status st = POET_OK;
    poet_status *local = &t->local;
    const poet_config *c = t->cfg;
    int overlap = c->overlap == POET_OVERLAP_EXACT;
    double loss = 0;
    long correct = 0;
    lap(t, POET_PHASE_OTHER); /* logging, evaluation, checkpoints since the last iteration */
    if (*local == POET_OK)
        *local = next_batch(t, it, 0);
    inject_fault(t, it);
    lap(t, POET_PHASE_DATA);
    for (int ch = 0; ch < t->chunks; ch++) {
        poet_ensemble_draw(&t->ens, ch, it);
        size_t row = (size_t)t->layout.first_row + (size_t)ch * t->rows; /* in the batch */
        forward_micro_batch(t, ch, t->images[0] + row * t->image_size, t->labels[0] + row, local);
        lap(t, POET_PHASE_FORWARD);
        POET_TRY(poet_tree_reduce_start(t->tree, ch));
        if (!overlap)
            POET_TRY(poet_tree_reduce_wait(t->tree, ch));
        POET_TRY(poet_tree_progress(t->tree));
        lap(t, POET_PHASE_COMM);
    }
    for (int ch = 0; ch < t->chunks; ch++) {
        if (overlap)
            POET_TRY(poet_tree_reduce_wait(t->tree, ch));
        if (poet_tree_is_root(t->tree))
            root_loss(t, ch, t->labels[0] + t->layout.first_row + (size_t)ch * t->rows, &loss,
                      &correct);
        POET_TRY(poet_tree_bcast_start(t->tree, ch));
        if (!overlap)
            POET_TRY(poet_tree_bcast_wait(t->tree, ch));
    }
    for (int ch = 0; ch < t->chunks; ch++) {
        if (overlap)
            POET_TRY(poet_tree_bcast_wait(t->tree, ch));
        lap(t, POET_PHASE_COMM);
        read_decision(poet_tree_down_header(t->tree, ch), out);
        if (!out->error && *local == POET_OK)
            *local =
                poet_ensemble_backward(&t->ens, ch, poet_tree_down_values(t->tree, ch), ch > 0);
        else /* another shard's tree may have said otherwise: the group's exchanges go on */
            poet_ensemble_skip(&t->ens, ch, 1);
        lap(t, POET_PHASE_BACKWARD);
    }
    snapshot_member_loss(t);
    int group_failed = 0;
    POET_TRY(combine_group(t, out, &loss, &correct, &group_failed));
    if (*local != POET_OK && out->error) {
        /* This rank's own failure went up the tree with this exchange: every rank stops now. A
         * failure in backward is only known here; the next iteration carries it up. */
        poet_error_mark_agreed();
        return *local;
    }
    if (!out->error && !group_failed && *local == POET_OK)
        poet_ensemble_step(&t->ens, poet_lr_at(c, it, t->total));
    lap(t, POET_PHASE_OPTIMIZER);
    out->loss = loss;
    out->accuracy = (double)correct / c->batch_size;
fail:
    return st;
}

/* Stale mode, a different algorithm: the forward of batch it+1 runs (with the weights before
 * step it) while batch it's gradient travels, so communication hides behind computation at the
 * price of one-step-stale gradients. Two activation sets (slots) alternate. stale_launch() forwards
 * a batch and starts its reduction; stale_finish() completes the oldest one in flight. */
static poet_status stale_launch(trainer *t, long it) {
    poet_status st = POET_OK;
    int slot = (int)(it % 2);
    if (t->local == POET_OK)
        t->local = next_batch(t, it, slot);
    inject_fault(t, it);
    lap(t, POET_PHASE_DATA);
    poet_ensemble_draw(&t->ens, slot, it);
    forward_micro_batch(t, slot, t->images[slot] + (size_t)t->layout.first_row * t->image_size,
                        t->labels[slot] + t->layout.first_row, &t->local);
    lap(t, POET_PHASE_FORWARD);
    POET_TRY(poet_tree_reduce_start(t->tree, slot));
    lap(t, POET_PHASE_COMM);
fail:
    return st;
}

static poet_status stale_finish(trainer *t, long it, iteration_outcome *out, int apply) {
    poet_status st = POET_OK;
    int slot = (int)(it % 2);
    double loss = 0;
    long correct = 0;
    POET_TRY(poet_tree_reduce_wait(t->tree, slot));
    if (poet_tree_is_root(t->tree))
        root_loss(t, slot, t->labels[slot] + t->layout.first_row, &loss, &correct);
    POET_TRY(poet_tree_bcast_start(t->tree, slot));
    POET_TRY(poet_tree_bcast_wait(t->tree, slot));
    lap(t, POET_PHASE_COMM);
    read_decision(poet_tree_down_header(t->tree, slot), out);
    if (apply && !out->error && t->local == POET_OK)
        t->local = poet_ensemble_backward(&t->ens, slot, poet_tree_down_values(t->tree, slot), 0);
    else if (apply) /* as in run_iteration; a drained batch (apply 0) skips on every rank alike */
        poet_ensemble_skip(&t->ens, slot, 1);
    lap(t, POET_PHASE_BACKWARD);
    int group_failed = t->local != POET_OK;
    if (apply) /* a drained batch (apply 0, every rank alike) neither steps nor combines */
        POET_TRY(combine_group(t, out, &loss, &correct, &group_failed));
    out->loss = loss;
    out->accuracy = (double)correct / t->cfg->batch_size;
    if (apply && !out->error && !group_failed && t->local == POET_OK)
        poet_ensemble_step(&t->ens, poet_lr_at(t->cfg, it, t->total));
    lap(t, POET_PHASE_OPTIMIZER);
    if (t->local != POET_OK && out->error) {
        poet_error_mark_agreed();
        return t->local;
    }
fail:
    return st;
}

static poet_status run_stale_iteration(trainer *t, long it, iteration_outcome *out) {
    poet_status st = POET_OK;
    lap(t, POET_PHASE_OTHER);
    if (it == t->start) /* prologue: the first batch has no predecessor to hide behind */
        POET_TRY(stale_launch(t, it));
    snapshot_member_loss(t); /* batch it's own losses, before batch it+1 adds to them */
    if (it + 1 < t->total)
        POET_TRY(stale_launch(t, it + 1));
    POET_TRY(stale_finish(t, it, out, 1));
    /* A stop after this iteration: drain batch it+1's exchange so every rank ends in step. */
    if (out->stop && it + 1 < t->total) {
        iteration_outcome drained = {0};
        POET_TRY(stale_finish(t, it + 1, &drained, 0));
    }
fail:
    return st;
}

/* Progress line from rank 0: iteration/total, loss, batch accuracy, images/s, ETA. */
static void print_progress(const trainer *t, long it, const iteration_outcome *o, double elapsed,
                           long done) {
    double rate = done / (elapsed > 0 ? elapsed : 1e-9);
    double eta = (t->total - it - 1) / (rate > 0 ? rate : 1e-9);
    printf("iter %6ld/%ld  loss %.4f  acc %.3f  %8.0f img/s  %7.0f member-img/s  ETA %s%.0fs\n",
           it + 1, t->total, o->loss, o->accuracy, rate * t->cfg->batch_size,
           rate * t->cfg->batch_size * t->cfg->members, eta > 60 ? "~" : "", eta);
    fflush(stdout);
}

static void print_eval(const char *set, const poet_eval_result *r, int members) {
    printf("%s iter %ld: ensemble accuracy %.4f  nll %.4f  | mean member accuracy %.4f  "
           "disagreement %.4f  | mean member nll %.4f  diversity %.4f\n",
           set, r->iteration, r->ensemble_accuracy, r->ensemble_nll, r->mean_member_accuracy,
           r->disagreement, r->mean_member_nll, r->mean_member_nll - r->ensemble_nll);
    printf("      calibration: ensemble brier %.4f  ece %.4f  | probability mean accuracy %.4f  "
           "nll %.4f  brier %.4f  ece %.4f  | mean member brier %.4f  ece %.4f\n",
           r->ensemble_brier, r->ensemble_ece, r->probmean_accuracy, r->probmean_nll,
           r->probmean_brier, r->probmean_ece, r->mean_member_brier, r->mean_member_ece);
    printf("      members:");
    for (int j = 0; j < members && j < 16; j++)
        printf(" %.3f", r->member_accuracy[j]);
    printf("%s\n", members > 16 ? " ..." : "");
    fflush(stdout);
}

/* Member health: a member whose accuracy is at chance level has stopped learning (or never
 * started); say which, once per evaluation, even with --quiet. */
static void warn_members_at_chance(const poet_eval_result *r, int members) {
    if (!r->members_at_chance)
        return;
    fprintf(stderr,
            "poet: warning: evaluation after %ld iterations: %d member(s) at chance level "
            "(accuracy <= %.4f on %ld images):",
            r->iteration, r->members_at_chance, r->chance_threshold, r->images);
    for (int j = 0, shown = 0; j < members && shown < 16; j++)
        if (r->member_at_chance[j] > 0) {
            fprintf(stderr, " member %d (%.4f)", j, r->member_accuracy[j]);
            shown++;
        }
    fprintf(stderr, "%s\n", r->members_at_chance > 16 ? " ..." : "");
}

/* Periodic evaluations use the validation images when data.validation holds some out; the test
 * set is used at the end of training (and by `poet eval`) only. */
static poet_status evaluate(trainer *t, long iteration, int periodic, poet_train_summary *summary) {
    poet_status st = POET_OK;
    int val = periodic && t->val.count > 0;
    double t0 = now_seconds();
    if (!t->group) {
        POET_TRY(
            poet_eval_run(t->comm, &t->ens, val ? &t->val : &t->test, iteration, &summary->eval));
    } else {
        /* One rank per group evaluates (shard 0: its shard communicator holds every member once);
         * the others wait here, not in a bounded tree or group wait. */
        if (t->layout.shard == 0)
            st = poet_eval_run(t->tree_comm, &t->ens, val ? &t->val : &t->test, iteration,
                               &summary->eval);
        POET_TRY(poet_error_agree(t->comm, st));
    }
    poet_deadline_note_evaluation(&t->deadline, now_seconds() - t0);
    summary->evaluated = 1;
    if (t->rank == 0 && !t->opt->quiet)
        print_eval(val ? "valid" : "eval ", &summary->eval, t->cfg->members);
    if (t->rank == 0 && !t->evaluate_only)
        warn_members_at_chance(&summary->eval, t->cfg->members);
    if (t->log)
        POET_TRY(poet_losslog_eval(t->log, &summary->eval));
fail:
    return st;
}

static poet_status checkpoint(trainer *t, long iterations_done) {
    poet_status st = POET_OK;
    char path[POET_PATH_MAX];
    poet_train_position pos = {iterations_done, iterations_done / t->batcher.batches_per_epoch,
                               iterations_done % t->batcher.batches_per_epoch, t->total};
    double t0 = now_seconds();
    if (t->log)
        POET_TRY(poet_losslog_flush(t->log));
    POET_TRY(poet_checkpoint_write(t->comm, t->cfg, &t->ens, &pos, path, sizeof path));
    t->checkpoint_last = now_seconds() - t0;
    t->checkpoint_total += t->checkpoint_last;
    t->checkpoints++;
    poet_deadline_note_checkpoint(&t->deadline, t->checkpoint_last);
    t->last_checkpoint = poet_deadline_now(&t->deadline);
    if (t->rank == 0 && !t->opt->quiet)
        printf("checkpoint %s (iteration %ld)\n", path, iterations_done);
fail:
    return st;
}

/* Loads the checkpoint to resume from, if any; every rank learns the same outcome. `path` receives
 * the checkpoint's file name ("" without one). */
static poet_status resume(trainer *t, char *path, size_t size) {
    poet_status st = POET_OK;
    poet_train_position pos = {0};
    int found = 0;
    path[0] = '\0';
    if (t->opt->resume_from) {
        POET_TRY(poet_checkpoint_read(t->comm, t->opt->resume_from, t->cfg, &t->ens, &pos));
        snprintf(path, size, "%s", t->opt->resume_from);
        found = 1;
    } else if (t->opt->resume) {
        POET_TRY(poet_checkpoint_resume(t->comm, t->cfg, &t->ens, &pos, &found, path, size));
    }
    t->start = found ? pos.iteration : 0;
    if (t->rank == 0 && !t->opt->quiet && (t->opt->resume || t->opt->resume_from))
        printf(found ? "resuming from %s at iteration %ld\n"
                     : "no checkpoint to resume: %sstarting "
                       "at iteration %ld\n",
               path, t->start);
fail:
    return st;
}

/* Training only: a checkpoint past this run's end (the config's iterations or epochs were lowered)
 * cannot be continued; every rank sees the same numbers, so all fail alike. Checked before the log
 * is opened, so a refused checkpoint changes nothing. */
static poet_status check_resume_point(trainer *t, const char *path) {
    poet_status st = POET_OK;
    if (t->start > t->total)
        st = poet_error_set(POET_ERR_CHECKPOINT,
                            "%s: checkpoint is at iteration %ld, past this run's %ld iterations "
                            "(training.iterations or training.epochs lowered?)",
                            path, t->start, t->total);
    return poet_error_agree(t->comm, st);
}

/* Writes "iteration loss(hex float)" so tests can compare trajectories bit for bit. */
static void record_trajectory(trainer *t, long it, double loss) {
    if (t->trajectory) {
        fprintf(t->trajectory, "%ld %a\n", it, loss);
        fflush(t->trajectory); /* so a test can watch the run progress and interrupt it */
    }
}

static poet_status log_iteration(trainer *t, long it, const iteration_outcome *o, double seconds,
                                 uint64_t bytes) {
    poet_iteration_record rec = {
        it, o->loss, o->accuracy, poet_lr_at(t->cfg, it, t->total), seconds, (double)bytes, 0, 0};
    /* The members in this iteration's mean: micro-batches share the iteration's draw (slot 0); the
     * stale mode keeps iteration it's in slot it % 2. */
    int slot = t->cfg->overlap == POET_OVERLAP_STALE ? (int)(it % 2) : 0;
    rec.kept = t->ens.kept_count[slot];
    for (int i = 0; i < t->ens.n_local && t->layout.shard == 0; i++) /* a group's members once */
        if (t->ens.kept[slot][t->ens.local_ids[i]])
            rec.kept_loss_sum += t->member_loss[i];
    return t->log ? poet_losslog_append(t->log, &rec, t->member_loss) : POET_OK;
}

static uint64_t tree_bytes(const trainer *t) {
    return poet_tree_bytes_sent(t->tree) + poet_tree_bytes_received(t->tree);
}

static uint64_t group_bytes(const trainer *t) { return t->group ? poet_group_bytes(t->group) : 0; }

/* Peak resident memory (MiB) and tree traffic of every rank, gathered so rank 0 can report the
 * spread over ranks. */
static poet_status measure_ranks(trainer *t, poet_train_summary *summary) {
    poet_status st = POET_OK;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = ru.ru_maxrss / 1024.0, largest = 0; /* Linux reports KiB */
    POET_MPI(MPI_Allreduce(&mine, &largest, 1, MPI_DOUBLE, MPI_MAX, t->comm));
    summary->peak_rss_mib = mine;
    summary->peak_rss_mib_max = largest;
    unsigned long long bytes = summary->bytes_per_iteration, least = 0, most = 0;
    POET_MPI(MPI_Allreduce(&bytes, &least, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, t->comm));
    POET_MPI(MPI_Allreduce(&bytes, &most, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, t->comm));
    double estimate = t->memory.total_bytes / (1024.0 * 1024.0), estimate_max = 0;
    POET_MPI(MPI_Allreduce(&estimate, &estimate_max, 1, MPI_DOUBLE, MPI_MAX, t->comm));
    summary->memory_estimate_mib = estimate;
    summary->memory_estimate_mib_max = estimate_max;
    summary->bytes_per_iteration_min = least;
    summary->bytes_per_iteration_max = most;
    bytes = summary->group_bytes_per_iteration;
    POET_MPI(MPI_Allreduce(&bytes, &least, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, t->comm));
    POET_MPI(MPI_Allreduce(&bytes, &most, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, t->comm));
    summary->group_bytes_per_iteration_min = least;
    summary->group_bytes_per_iteration_max = most;
fail:
    return st;
}

/* Rank 0, before iteration `it`: whether to stop after it for the deadline, and whether a
 * checkpoint is due by output.checkpoint_every_seconds. The flags go up with its header. */
static void decide_by_clock(trainer *t, long it) {
    const poet_config *c = t->cfg;
    if (t->rank != 0)
        return;
    int evaluations = 0;
    for (long done = it + 1; done <= it + 2; done++)
        evaluations += c->eval_every && done % c->eval_every == 0 && done < t->total;
    t->flag_deadline =
        it + 1 < t->total && poet_deadline_stop_after_next(&t->deadline, evaluations);
    t->flag_checkpoint = 0;
    if (c->checkpoint_every_seconds > 0 && !t->checkpoint_pending &&
        poet_deadline_now(&t->deadline) - t->last_checkpoint >= c->checkpoint_every_seconds)
        t->flag_checkpoint = t->checkpoint_pending = 1;
}

static poet_status train_loop(trainer *t, poet_train_summary *summary) {
    poet_status st = POET_OK;
    const poet_config *c = t->cfg;
    double started = now_seconds();
    long it = t->start;
    uint64_t bytes_at_start = tree_bytes(t), group_at_start = group_bytes(t);
    t->phase_mark = started;
    for (; it < t->total; it++) {
        iteration_outcome o = {0};
        double t0 = now_seconds();
        uint64_t bytes0 = tree_bytes(t);
        decide_by_clock(t, it);
        POET_TRY(t->cfg->overlap == POET_OVERLAP_STALE ? run_stale_iteration(t, it, &o)
                                                       : run_iteration(t, it, &o));
        /* Tests: silent between exchanges, where the log flush, evaluations and checkpoints run. */
        if (t->sleep_at_end && t->sleep_rank == t->rank && t->sleep_iteration == it)
            sleep(t->sleep_seconds);
        if (o.error) {
            poet_error_mark_agreed();
            POET_FAIL(POET_ERR_REMOTE,
                      "stopping: another rank failed at iteration %ld (see its "
                      "message)",
                      it);
        }
        summary->final_loss = o.loss;
        /* Average so far: in the stale mode an iteration's traffic straddles two iterations. */
        summary->bytes_per_iteration =
            (tree_bytes(t) - bytes_at_start) / (uint64_t)(it + 1 - t->start);
        summary->group_bytes_per_iteration =
            (group_bytes(t) - group_at_start) / (uint64_t)(it + 1 - t->start);
        record_trajectory(t, it, o.loss);
        if (t->log && poet_losslog_flush_due(t->log))
            POET_TRY(poet_tree_sync(t->tree, "the loss-log flush"));
        POET_TRY(log_iteration(t, it, &o, now_seconds() - t0, tree_bytes(t) - bytes0));
        if (t->rank == 0 && !t->opt->quiet && c->log_every &&
            ((it + 1) % c->log_every == 0 || it + 1 == t->total))
            print_progress(t, it, &o, now_seconds() - started, it + 1 - t->start);
        long done = it + 1;
        poet_deadline_note_iteration(&t->deadline, now_seconds() - t0);
        if (c->eval_every && done % c->eval_every == 0 && done < t->total) {
            POET_TRY(poet_tree_sync(t->tree, "an evaluation"));
            POET_TRY(evaluate(t, done, 1, summary));
        }
        if (t->opt->stop_after && done == t->opt->stop_after)
            o.stop = 1; /* tests: behave exactly as if a signal had arrived */
        if (o.stop) {
            POET_TRY(poet_tree_sync(t->tree, "a checkpoint"));
            POET_TRY(checkpoint(t, done));
            summary->iterations_done = done;
            summary->deadline_stop = o.deadline;
            st = POET_STOPPED;
            goto fail;
        }
        if (o.checkpoint)
            t->checkpoint_pending = 0;
        if (((c->checkpoint_every && done % c->checkpoint_every == 0) || o.checkpoint) &&
            done < t->total) {
            POET_TRY(poet_tree_sync(t->tree, "a checkpoint"));
            POET_TRY(checkpoint(t, done));
        }
    }
    lap(t, POET_PHASE_OTHER);
    memcpy(summary->phase_seconds, t->phase_seconds, sizeof t->phase_seconds);
    summary->iterations_done = it;
    summary->seconds = now_seconds() - started;
    if (it > t->start)
        summary->images_per_second = (double)(it - t->start) * c->batch_size / summary->seconds;
    POET_TRY(poet_tree_sync(t->tree, "the final evaluation"));
    POET_TRY(evaluate(t, it, 0, summary));
    POET_TRY(checkpoint(t, it));
    POET_TRY(measure_ranks(t, summary));
fail:
    summary->checkpoints = t->checkpoints;
    summary->checkpoint_seconds_last = t->checkpoint_last;
    summary->checkpoint_seconds_total = t->checkpoint_total;
    return st;
}

/* Creates the log's directory on rank 0 (every rank agrees on the outcome) and opens the log. */
static poet_status open_log(trainer *t) {
    poet_status st = POET_OK;
    char path[POET_PATH_MAX + 16], dir[POET_PATH_MAX + 16];
    if (t->cfg->log_file[0])
        snprintf(path, sizeof path, "%s", t->cfg->log_file);
    else
        snprintf(path, sizeof path, "%s/log.h5", t->cfg->checkpoint_dir);
    poet_fs_dirname(path, dir, sizeof dir);
    POET_TRY(poet_error_agree(t->comm, t->rank == 0 ? poet_fs_make_dirs(dir, "loss-log directory")
                                                    : POET_OK));
    POET_TRY(poet_losslog_open(t->comm, path, t->cfg, &t->ens, t->start, &t->log));
fail:
    return st;
}

/* The member groups of this run (group.h) and the members' placement over them. */
static poet_status resolve_layout(trainer *t) {
    poet_status st = POET_OK;
    int owner[POET_MAX_MEMBERS];
    POET_TRY(poet_layout_resolve(t->cfg, t->ranks, t->rank, &t->layout));
    POET_TRY(poet_placement(t->cfg, t->layout.groups, owner));
fail:
    return st;
}

poet_status poet_train_run(MPI_Comm comm, const poet_config *cfg, const poet_train_options *opt,
                           poet_train_summary *summary) {
    poet_status st = POET_OK;
    trainer t;
    char resumed_from[POET_PATH_MAX];
    memset(&t, 0, sizeof t);
    memset(summary, 0, sizeof *summary);
    t.comm = comm;
    t.cfg = cfg;
    t.opt = opt;
    POET_MPI(MPI_Comm_rank(comm, &t.rank));
    POET_MPI(MPI_Comm_size(comm, &t.ranks));
    t.fault_rank = getenv("POET_FAULT_RANK") ? atoi(getenv("POET_FAULT_RANK")) : -1;
    t.fault_iteration = getenv("POET_FAULT_ITERATION") ? atol(getenv("POET_FAULT_ITERATION")) : -1;
    t.sleep_rank = getenv("POET_FAULT_SLEEP_RANK") ? atoi(getenv("POET_FAULT_SLEEP_RANK")) : -1;
    {
        const char *it = getenv("POET_FAULT_SLEEP_ITERATION");
        const char *secs = getenv("POET_FAULT_SLEEP_SECONDS");
        t.sleep_iteration = it ? atol(it) : 0;
        t.sleep_seconds = secs ? (unsigned)atoi(secs) : 3600; /* (default 3600) */
        t.sleep_at_end =
            getenv("POET_FAULT_SLEEP_AT") && !strcmp(getenv("POET_FAULT_SLEEP_AT"), "end");
    }
    /* Layout and placement are cheap and wrong rank counts are common: say so before loading
     * any data. */
    POET_TRY(poet_error_agree(comm, resolve_layout(&t)));
    t.chunks = cfg->overlap == POET_OVERLAP_STALE ? 1 : cfg->chunks;
    t.rows = t.layout.rows / t.chunks;
    POET_TRY(poet_error_agree(comm, load_data(&t)));
    POET_TRY(poet_error_agree(comm, setup(&t)));
    summary->data_mib = t.memory.data_bytes / (1024.0 * 1024.0);
    summary->train_images = t.train.count;
    summary->validation_images = t.val.count;
    summary->test_images = t.test.count;
    summary->channels = t.train.channels;
    summary->height = t.train.height;
    summary->width = t.train.width;
    summary->float_pixels = t.train.values != NULL || t.train.stream_float;
    summary->streamed = t.train.stream != NULL;
    POET_TRY(resume(&t, resumed_from, sizeof resumed_from));
    POET_TRY(check_resume_point(&t, resumed_from));
    if (resumed_from[0] && t.start == t.total) {
        /* A finished run: evaluating, logging or checkpointing again would only repeat its end. */
        if (t.rank == 0)
            printf("poet: the run is already finished: %s is at iteration %ld of %ld; nothing to "
                   "do\n",
                   resumed_from, t.start, t.total);
        summary->iterations_done = t.start;
        summary->already_finished = 1;
        st = measure_ranks(&t, summary);
        goto fail;
    }
    /* Rank 0 alone reads the clock and asks Slurm; a deadline already past fails every rank. */
    POET_TRY(poet_error_agree(
        comm, t.rank == 0 ? poet_deadline_init(&t.deadline, cfg->deadline, "training.deadline")
                          : POET_OK));
    t.last_checkpoint = poet_deadline_now(&t.deadline);
    if (opt->trajectory && t.rank == 0 && !(t.trajectory = fopen(opt->trajectory, "a")))
        st = poet_error_set(POET_ERR_IO, "%s: cannot open trajectory file", opt->trajectory);
    POET_TRY(poet_error_agree(comm, st));
    POET_TRY(open_log(&t));
    if (cfg->prefetch > 0)
        POET_TRY(
            poet_error_agree(comm, poet_prefetch_start(&t.batcher, t.start, t.total, cfg->prefetch,
                                                       (size_t)cfg->batch_size * t.image_size,
                                                       cfg->batch_size, &t.prefetch)));
    summary->data_parallel_bytes_per_iteration = 0;
    {
        /* Data parallelism would all-reduce every parameter's gradient: a ring moves about
         * 2·(P−1)/P of all parameters per rank, sent and as much received. */
        unsigned long long all_params = 0;
        unsigned long long mine = t.layout.shard == 0 ? t.ens.n_params : 0; /* each member once */
        POET_MPI(MPI_Allreduce(&mine, &all_params, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm));
        summary->data_parallel_bytes_per_iteration =
            (uint64_t)(2.0 * 2.0 * (t.ranks - 1) / (t.ranks > 1 ? t.ranks : 1) * all_params * 4);
    }
    summary->groups = t.layout.groups;
    summary->group_size = t.layout.size;
    if (t.rank == 0 && !opt->quiet) {
        char groups[128] = "";
        if (t.layout.size > 1)
            snprintf(groups, sizeof groups,
                     " in %d member groups of %d ranks (shards of %d%s rows%s)", t.layout.groups,
                     t.layout.size, cfg->batch_size / t.layout.size,
                     cfg->batch_size % t.layout.size ? " and one more" : "",
                     cfg->sync_batchnorm ? ", batch-norm statistics synchronised" : "");
        printf("poet %s: %d members on %d rank(s)%s, tree %s, overlap %s, %ld iterations of batch "
               "%d (iterations %ld..%ld)\n",
               POET_VERSION, cfg->members, t.ranks, groups, poet_tree_kind_name(cfg->tree),
               poet_overlap_mode_name(cfg->overlap), t.total, cfg->batch_size, t.start + 1,
               t.total);
    }
    st = train_loop(&t, summary);
    if (t.log && (st == POET_OK || st == POET_STOPPED)) {
        poet_status traffic_st = poet_losslog_traffic(
            t.log, t.layout.groups, t.layout.size, (double)summary->bytes_per_iteration,
            (double)summary->group_bytes_per_iteration,
            (double)summary->data_parallel_bytes_per_iteration);
        st = traffic_st == POET_OK ? st : traffic_st;
    }
    /* Closing the log is collective: a failure only this rank knows of (a peer that stopped
     * answering the tree) must reach MPI_Abort in the CLI, not wait for ranks that never come. */
    if (t.log && (st == POET_OK || st == POET_STOPPED || poet_error_is_agreed())) {
        poet_status close_st = poet_losslog_close(t.log);
        if (st == POET_OK || st == POET_STOPPED)
            st = close_st == POET_OK ? st : close_st;
    }
fail:
    teardown(&t);
    return st;
}

poet_status poet_train_evaluate(MPI_Comm comm, const poet_config *cfg, const char *checkpoint_path,
                                poet_eval_result *result) {
    poet_status st = POET_OK;
    trainer t;
    poet_train_options opt = {0};
    poet_train_summary summary;
    char path[POET_PATH_MAX];
    memset(&t, 0, sizeof t);
    opt.quiet = 1;
    opt.resume = 1;
    opt.resume_from = checkpoint_path;
    t.comm = comm;
    t.cfg = cfg;
    t.opt = &opt;
    t.chunks = 1;
    t.evaluate_only = 1;
    POET_MPI(MPI_Comm_rank(comm, &t.rank));
    POET_MPI(MPI_Comm_size(comm, &t.ranks));
    POET_TRY(poet_error_agree(comm, resolve_layout(&t)));
    t.rows = t.layout.rows;
    POET_TRY(poet_error_agree(comm, load_data(&t)));
    POET_TRY(poet_error_agree(comm, setup(&t)));
    POET_TRY(resume(&t, path, sizeof path));
    if (t.start == 0 && !checkpoint_path) {
        st = poet_error_set(POET_ERR_CHECKPOINT, "%s: no checkpoint to evaluate in %s", cfg->source,
                            cfg->checkpoint_dir);
        st = poet_error_agree(comm, st); /* every rank found none: one message, printed once */
        goto fail;
    }
    POET_TRY(evaluate(&t, t.start, 0, &summary));
    *result = summary.eval;
fail:
    teardown(&t);
    return st;
}
