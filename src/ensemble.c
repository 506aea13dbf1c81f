/* ensemble.c — a rank's members: placement, stacks over one contiguous parameter buffer. */
#include "poet/ensemble.h"

#include <stdlib.h>
#include <string.h>

#include "poet/loss.h"
#include "poet/optim.h"

poet_status poet_placement(const poet_config *cfg, int ranks, int *member_rank) {
    int M = cfg->members;
    if (ranks > M)
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: model.members: %d members cannot be spread over %d ranks (every "
                              "rank needs at least one member); run with at most %d ranks",
                              cfg->source, M, ranks, M);
    if (!cfg->placement_explicit) {
        /* Block placement: the first M % P ranks own one member more. */
        int base = M / ranks, extra = M % ranks, j = 0;
        for (int r = 0; r < ranks; r++)
            for (int i = 0; i < base + (r < extra); i++)
                member_rank[j++] = r;
        return POET_OK;
    }
    int owned[POET_MAX_MEMBERS] = {0};
    for (int j = 0; j < M; j++) {
        if (cfg->member_rank[j] >= ranks)
            return poet_error_set(POET_ERR_CONFIG,
                                  "%s: model.placement[%d]: rank %d does not exist in a run of %d "
                                  "ranks",
                                  cfg->source, j, cfg->member_rank[j], ranks);
        member_rank[j] = cfg->member_rank[j];
        owned[member_rank[j]]++;
    }
    for (int r = 0; r < ranks; r++)
        if (!owned[r])
            return poet_error_set(
                POET_ERR_CONFIG,
                "%s: model.placement: rank %d owns no member; every rank of the %d "
                "needs at least one",
                cfg->source, r, ranks);
    return POET_OK;
}

/* Groups the rank's members into stacks: runs of consecutive owned members with one architecture
 * (fused), or one member each. */
static poet_status plan_stacks(poet_ensemble *e) {
    poet_status st = POET_OK;
    POET_ALLOC(e->stacks, e->n_local);
    e->n_stacks = 0;
    size_t offset = 0, state_offset = 0;
    for (int i = 0; i < e->n_local;) {
        int arch = e->cfg->member_arch[e->local_ids[i]];
        int g = 1;
        while (e->cfg->fused && !e->per_member && i + g < e->n_local &&
               e->cfg->member_arch[e->local_ids[i + g]] == arch)
            g++;
        poet_member_stack *s = &e->stacks[e->n_stacks++];
        s->arch = arch;
        s->first_local = i;
        s->members = g;
        s->param_offset = offset;
        offset += (size_t)g * e->plans[arch].param_count;
        s->state_offset = state_offset;
        state_offset += (size_t)g * e->plans[arch].state_count;
        i += g;
    }
    e->n_params = offset;
    e->n_state = state_offset;
fail:
    return st;
}

/* Writes each member's initial weights (a function of seed and global member id only). */
static poet_status init_weights(poet_ensemble *e) {
    poet_status st = POET_OK;
    float *member = NULL;
    size_t largest = 0;
    for (int a = 0; a < e->cfg->n_archs; a++)
        if (e->plans[a].param_count > largest)
            largest = e->plans[a].param_count;
    POET_ALLOC(member, largest);
    for (int i = 0; i < e->n_local; i++) {
        int id = e->local_ids[i];
        const poet_arch_plan *plan = &e->plans[e->cfg->member_arch[id]];
        poet_arch_init_member(plan, e->cfg->seed, id, member);
        poet_ensemble_member_set(e, i, e->params, member);
        poet_arch_init_state(plan, member); /* state_count <= param_count: 2C of a BN's 2C */
        poet_ensemble_state_set(e, i, member);
    }
fail:
    free(member);
    return st;
}

static poet_status create_stack_primitives(poet_ensemble *e, poet_member_stack *s,
                                           int train_slots) {
    poet_status st = POET_OK;
    const poet_arch_plan *plan = &e->plans[s->arch];
    if (train_slots < 1 || train_slots > POET_TRAIN_SLOTS)
        POET_FAIL(POET_ERR_CONFIG, "%s: distributed.chunks: expected 1..%d micro-batches, got %d",
                  e->cfg->source, POET_TRAIN_SLOTS, train_slots);
    float *p = e->params + s->param_offset, *g = e->grads + s->param_offset;
    /* config.h numbers model.convolution as net.h does: 0 gemm, 1 onednn; training.threads 0
     * leaves the count to OpenMP's default, which the command line sets (src/main.c). */
    poet_stack_options opt = {.convolution =
                                  e->cfg->convolution == 1 ? POET_CONV_ONEDNN : POET_CONV_GEMM,
                              .threads = e->cfg->threads,
                              .state = e->state + s->state_offset,
                              .sync = e->sync,
                              .sync_context = e->sync_context};
    for (int slot = 0; slot < train_slots; slot++)
        POET_TRY(poet_stack_create(plan, s->members, e->batch, 1, &opt, p, g, &s->train[slot]));
    POET_TRY(poet_stack_create(plan, s->members, e->eval_batch, 0, &opt, p, g, &s->eval));
    POET_ALLOC(s->logits, (size_t)e->batch * s->members * e->classes);
    POET_ALLOC(s->eval_logits, (size_t)e->eval_batch * s->members * e->classes);
fail:
    return st;
}

poet_status poet_ensemble_create(const poet_config *cfg, int rank, int ranks, poet_shape input,
                                 int batch, int train_slots, int eval_batch,
                                 poet_stack_sync_fn sync, void *sync_context, poet_ensemble *e) {
    poet_status st = POET_OK;
    memset(e, 0, sizeof *e);
    e->sync = sync;
    e->sync_context = sync_context;
    e->cfg = cfg;
    e->rank = rank;
    e->ranks = ranks;
    e->classes = cfg->classes;
    e->batch = batch;
    e->eval_batch = eval_batch;
    e->input = input;
    POET_ALLOC(e->plans, cfg->n_archs > 0 ? cfg->n_archs : 1);
    for (int a = 0; a < cfg->n_archs; a++)
        POET_TRY(poet_arch_plan_build(&cfg->archs[a], input, cfg->classes, "model.architecture",
                                      &e->plans[a]));
    POET_TRY(poet_placement(cfg, ranks, e->member_rank));
    for (int j = 0; j < cfg->members; j++)
        if (e->member_rank[j] == rank)
            e->local_ids[e->n_local++] = j;
    /* A fused stack feeds one gradient to all its members; own gradients need a stack each. */
    e->per_member = cfg->beta < 1.0 || cfg->member_dropout > 0;
    POET_TRY(plan_stacks(e));
    for (int slot = 0; slot < POET_TRAIN_SLOTS; slot++)
        poet_ensemble_draw(e, slot, 0);
    if (e->per_member) {
        POET_ALLOC(e->own_grad, (size_t)train_slots * e->n_local * batch * cfg->classes);
        POET_ALLOC(e->member_grad, (size_t)batch * cfg->classes);
    }
    POET_ALLOC(e->params, e->n_params);
    POET_ALLOC(e->grads, e->n_params);
    POET_ALLOC(e->velocity, e->n_params);
    POET_ALLOC(e->state, e->n_state + 1);
    POET_ALLOC(e->member_loss, e->n_local);
    POET_ALLOC(e->member_correct, e->n_local);
    for (int s = 0; s < e->n_stacks; s++)
        POET_TRY(create_stack_primitives(e, &e->stacks[s], train_slots));
    POET_TRY(init_weights(e));
    return POET_OK;
fail:
    poet_ensemble_destroy(e);
    return st;
}

void poet_ensemble_destroy(poet_ensemble *e) {
    for (int s = 0; e->stacks && s < e->n_stacks; s++) {
        poet_member_stack *ms = &e->stacks[s];
        for (int slot = 0; slot < POET_TRAIN_SLOTS; slot++)
            poet_stack_destroy(ms->train[slot]);
        poet_stack_destroy(ms->eval);
        free(ms->logits);
        free(ms->eval_logits);
    }
    free(e->stacks);
    free(e->plans);
    free(e->params);
    free(e->grads);
    free(e->velocity);
    free(e->state);
    free(e->member_loss);
    free(e->member_correct);
    free(e->own_grad);
    free(e->member_grad);
    memset(e, 0, sizeof *e);
}

void poet_ensemble_draw(poet_ensemble *e, int slot, long iteration) {
    e->kept_count[slot] = poet_loss_dropout_draw(e->cfg->seed, iteration, e->cfg->members,
                                                 e->cfg->member_dropout, e->kept[slot]);
}

/* Local member i's own part of the gradient for the batch in `slot`. */
static float *own_grad(poet_ensemble *e, int slot, int local) {
    return e->own_grad + ((size_t)slot * e->n_local + local) * e->batch * e->classes;
}

/* Member stack s's forward, and its members' logits into the sums and losses. */
static poet_status stack_forward(poet_ensemble *e, int s, int slot, const float *images,
                                 const uint8_t *labels, int64_t *fixed_sum) {
    poet_status st = POET_OK;
    int K = e->classes;
    poet_member_stack *ms = &e->stacks[s];
    size_t row = (size_t)ms->members * K;
    POET_TRY(poet_stack_forward(ms->train[slot], images, ms->logits));
    for (int g = 0; g < ms->members; g++) {
        int local = ms->first_local + g;
        double loss;
        long correct;
        const float *logits = ms->logits + (size_t)g * K;
        if (e->kept[slot][e->local_ids[local]])
            POET_TRY(poet_loss_add_fixed(fixed_sum, logits, row, e->batch, K, e->local_ids[local]));
        if (e->per_member)
            poet_loss_member_grad_rows(logits, row, labels, e->batch, K,
                                       (double)e->cfg->members * e->cfg->batch_size,
                                       1.0 - e->cfg->beta, own_grad(e, slot, local));
        poet_loss_member(ms->logits + (size_t)g * K, row, labels, e->batch, K, &loss, &correct);
        e->member_loss[local] += loss * e->batch; /* poet_loss_member gives the batch mean */
        e->member_correct[local] += correct;
    }
fail:
    return st;
}

poet_status poet_ensemble_forward(poet_ensemble *e, int slot, const float *images,
                                  const uint8_t *labels, int64_t *fixed_sum) {
    for (int s = 0; s < e->n_stacks; s++) {
        poet_status st = stack_forward(e, s, slot, images, labels, fixed_sum);
        if (st != POET_OK) { /* the rest still take part in the group's exchanges */
            for (int rest = s + 1; rest < e->n_stacks; rest++)
                poet_stack_skip(e->stacks[rest].train[slot], 0);
            return st;
        }
    }
    e->batches_tracked++;
    return POET_OK;
}

poet_status poet_ensemble_skip(poet_ensemble *e, int slot, int backward) {
    poet_status st = POET_OK;
    for (int s = 0; s < e->n_stacks; s++) {
        poet_status skip_st = poet_stack_skip(e->stacks[s].train[slot], backward);
        st = st == POET_OK ? skip_st : st;
    }
    return st;
}

/* Member stack s's backward. */
static poet_status stack_backward(poet_ensemble *e, int s, int slot, const float *grad,
                                  int accumulate) {
    size_t n = (size_t)e->batch * e->classes;
    if (!e->per_member)
        return poet_stack_backward(e->stacks[s].train[slot], grad, accumulate);
    /* One member per stack: its joint part if it is in the mean, plus its own part (+0 adds
     * nothing, so beta = 0 keeps a one-member run's bits). */
    int local = e->stacks[s].first_local;
    const float *own = own_grad(e, slot, local);
    int kept = e->kept[slot][e->local_ids[local]];
    for (size_t i = 0; i < n; i++)
        e->member_grad[i] = (kept ? grad[i] : 0.0f) + own[i];
    return poet_stack_backward(e->stacks[s].train[slot], e->member_grad, accumulate);
}

poet_status poet_ensemble_backward(poet_ensemble *e, int slot, const float *grad, int accumulate) {
    for (int s = 0; s < e->n_stacks; s++) {
        poet_status st = stack_backward(e, s, slot, grad, accumulate);
        if (st != POET_OK) { /* the rest still take part in the group's exchanges */
            for (int rest = s + 1; rest < e->n_stacks; rest++)
                poet_stack_skip(e->stacks[rest].train[slot], 1);
            return st;
        }
    }
    return POET_OK;
}

void poet_ensemble_step(poet_ensemble *e, double lr) {
    poet_sgd_step_params p = {lr, e->cfg->momentum, e->cfg->weight_decay, e->cfg->nesterov};
    if (e->cfg->decay_bn_bias || e->cfg->weight_decay == 0) {
        poet_sgd_step(e->params, e->grads, e->velocity, e->n_params, &p);
        return;
    }
    /* Without decay on biases and batchnorm's weights (the 1-D tensors, as PyTorch users
     * exclude them with parameter groups): tensor by tensor. The update is per element, so the
     * decayed tensors get exactly the one-pass result. Stack layout: a tensor's G copies are
     * contiguous. */
    for (int s = 0; s < e->n_stacks; s++) {
        const poet_member_stack *ms = &e->stacks[s];
        const poet_arch_plan *plan = &e->plans[ms->arch];
        for (int t = 0; t < plan->n_tensors; t++) {
            const poet_tensor_info *ti = &plan->tensors[t];
            size_t at = ms->param_offset + (size_t)ms->members * ti->offset;
            poet_sgd_step_params q = p;
            q.weight_decay = ti->ndims == 1 ? 0 : p.weight_decay;
            poet_sgd_step(e->params + at, e->grads + at, e->velocity + at,
                          (size_t)ms->members * ti->count, &q);
        }
    }
}

poet_status poet_ensemble_eval_forward(poet_ensemble *e, const float *images, int rows,
                                       float *member_logits, int64_t *fixed_sum) {
    poet_status st = POET_OK;
    int K = e->classes;
    for (int s = 0; s < e->n_stacks; s++) {
        poet_member_stack *ms = &e->stacks[s];
        size_t row = (size_t)ms->members * K;
        POET_TRY(poet_stack_forward(ms->eval, images, ms->eval_logits));
        for (int g = 0; g < ms->members; g++) {
            int local = ms->first_local + g;
            float *out = member_logits + (size_t)local * e->eval_batch * K;
            for (int b = 0; b < rows; b++)
                memcpy(out + (size_t)b * K, ms->eval_logits + b * row + (size_t)g * K,
                       K * sizeof(float));
            POET_TRY(poet_loss_add_fixed(fixed_sum, ms->eval_logits + (size_t)g * K, row, rows, K,
                                         e->local_ids[local]));
        }
    }
fail:
    return st;
}

const poet_member_stack *poet_ensemble_stack_of(const poet_ensemble *e, int local, int *g) {
    for (int s = 0; s < e->n_stacks; s++) {
        const poet_member_stack *ms = &e->stacks[s];
        if (local >= ms->first_local && local < ms->first_local + ms->members) {
            *g = local - ms->first_local;
            return ms;
        }
    }
    *g = -1;
    return NULL;
}

void poet_ensemble_member_get(const poet_ensemble *e, int local, const float *buffer,
                              float *member) {
    int g;
    const poet_member_stack *ms = poet_ensemble_stack_of(e, local, &g);
    poet_stack_member_get(&e->plans[ms->arch], ms->members, buffer + ms->param_offset, g, member);
}

void poet_ensemble_member_set(poet_ensemble *e, int local, float *buffer, const float *member) {
    int g;
    const poet_member_stack *ms = poet_ensemble_stack_of(e, local, &g);
    poet_stack_member_set(&e->plans[ms->arch], ms->members, buffer + ms->param_offset, g, member);
}

void poet_ensemble_state_get(const poet_ensemble *e, int local, float *member_state) {
    int g;
    const poet_member_stack *ms = poet_ensemble_stack_of(e, local, &g);
    poet_stack_state_get(&e->plans[ms->arch], ms->members, e->state + ms->state_offset, g,
                         member_state);
}

void poet_ensemble_state_set(poet_ensemble *e, int local, const float *member_state) {
    int g;
    const poet_member_stack *ms = poet_ensemble_stack_of(e, local, &g);
    poet_stack_state_set(&e->plans[ms->arch], ms->members, e->state + ms->state_offset, g,
                         member_state);
}
