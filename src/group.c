/* group.c — member groups (contract in group.h): the layout of P ranks over the members, the
 * communicators of groups and shards, and the group's deterministic all-reduce.
 *
 * The all-reduce is point to point rather than MPI_Allreduce: the MPI standard does not promise
 * that an MPI_Allreduce sums in the same order for a given layout (Open MPI's tuned component picks
 * its algorithm by message size and communicator size, and another component such as han or hcoll
 * may take over on other nodes), while here every block is summed in shard order by the rank that
 * owns it, so the bits depend on the layout alone; and a wait on a named peer can say which rank
 * stopped answering (distributed.timeout), which a collective cannot.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "poet/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "poet/mpierror.h"

enum { TAG_BLOCK = 4500, TAG_EXTRAS = 4501, TAG_GATHER = 4502, TAG_SUM = 4503 };
#define SPIN_SECONDS 1e-3    /* as tree.c: test without pausing this long, then sleep between */
#define PAUSE_FIRST_NS 20000 /* tests, 20 µs doubling up to 1 ms */
#define PAUSE_MOST_NS 1000000

struct poet_group {
    poet_layout layout;
    MPI_Comm group_comm, shard_comm;
    double timeout, grace;
    int *world;                           /* [S] each group rank's rank in the run's communicator */
    char (*host)[MPI_MAX_PROCESSOR_NAME]; /* [S] and its host, for the timeout message */
    MPI_Request *req;                     /* [4·S] */
    int *peer;                            /* [4·S] the group rank at the other end of req[i] */
    float *blocks;                        /* [S, largest block] the peers' parts of our block */
    double *extras;                       /* [S, capacity] every rank's extras */
    size_t block_capacity, extras_capacity;
    uint64_t bytes;
};

void poet_layout_shard(int batch, int size, int shard, int *first, int *rows) {
    int base = batch / size, extra = batch % size;
    *rows = base + (shard < extra);
    *first = shard * base + (shard < extra ? shard : extra);
}

/* The smallest group size that leaves at most M groups of P ranks (P itself at worst). */
static int smallest_fitting_size(int ranks, int members) {
    for (int size = 1; size < ranks; size++)
        if (ranks % size == 0 && ranks / size <= members)
            return size;
    return ranks;
}

poet_status poet_layout_resolve(const poet_config *cfg, int ranks, int rank, poet_layout *out) {
    int M = cfg->members, S = cfg->group_size, B = cfg->batch_size;
    memset(out, 0, sizeof *out);
    if (S == 0) {
        int G = ranks < M ? ranks : M; /* the most groups that divide the ranks: smallest shards */
        while (ranks % G != 0)
            G--;
        S = ranks / G;
    } else if (ranks % S != 0) {
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: distributed.group_size: expected a divisor of the run's %d "
                              "ranks, got %d",
                              cfg->source, ranks, S);
    }
    int G = ranks / S;
    if (G > M)
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: distributed.group_size: %d ranks in groups of %d make %d member "
                              "groups, but the %d members cannot be spread over them (every group "
                              "needs at least one member); use a group_size of at least %d, or 0 "
                              "(automatic)",
                              cfg->source, ranks, S, G, M, smallest_fitting_size(ranks, M));
    if (B < S)
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: training.batch_size: %d rows cannot be split over the %d ranks "
                              "of a member group (%d ranks, %d members); use a larger batch or "
                              "fewer ranks",
                              cfg->source, B, S, ranks, M);
    out->ranks = ranks;
    out->size = S;
    out->groups = G;
    out->group = rank / S;
    out->shard = rank % S;
    poet_layout_shard(B, S, out->shard, &out->first_row, &out->rows);
    if (S > 1 && cfg->overlap != POET_OVERLAP_STALE)
        for (int s = 0; s < S && s <= B % S; s++) { /* the two shard sizes there are */
            int first, rows;
            poet_layout_shard(B, S, s, &first, &rows);
            if (rows % cfg->chunks != 0)
                return poet_error_set(POET_ERR_CONFIG,
                                      "%s: distributed.chunks: expected a divisor of every "
                                      "shard's rows (batch %d over the %d ranks of a member group "
                                      "gives shards of %d%s rows), got %d",
                                      cfg->source, B, S, B / S, B % S ? " and one more" : "",
                                      cfg->chunks);
        }
    return POET_OK;
}

poet_status poet_group_create(MPI_Comm comm, const poet_layout *layout, poet_group **out) {
    poet_status st = POET_OK;
    poet_group *g = NULL;
    int S = layout->size, world = 0;
    *out = NULL;
    POET_ALLOC(g, 1);
    g->layout = *layout;
    g->group_comm = g->shard_comm = MPI_COMM_NULL;
    g->timeout = 0;
    POET_MPI(MPI_Comm_rank(comm, &world));
    POET_MPI(MPI_Comm_split(comm, layout->group, layout->shard, &g->group_comm));
    POET_MPI(MPI_Comm_split(comm, layout->shard, layout->group, &g->shard_comm));
    /* Failures must come back as codes, as on the run's communicator (tree.h). */
    POET_MPI(MPI_Comm_set_errhandler(g->group_comm, MPI_ERRORS_RETURN));
    POET_MPI(MPI_Comm_set_errhandler(g->shard_comm, MPI_ERRORS_RETURN));
    POET_ALLOC(g->world, S);
    POET_ALLOC(g->host, S);
    POET_ALLOC(g->req, 4 * (size_t)S);
    POET_ALLOC(g->peer, 4 * (size_t)S);
    POET_MPI(MPI_Allgather(&world, 1, MPI_INT, g->world, 1, MPI_INT, g->group_comm));
    {
        /* A silent peer cannot be asked its host later: gather them now (once per run). */
        char mine[MPI_MAX_PROCESSOR_NAME] = "";
        int length = 0;
        POET_MPI(MPI_Get_processor_name(mine, &length));
        POET_MPI(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, g->host,
                               MPI_MAX_PROCESSOR_NAME, MPI_CHAR, g->group_comm));
    }
    *out = g;
    return POET_OK;
fail:
    poet_group_destroy(g);
    return st;
}

void poet_group_destroy(poet_group *g) {
    if (!g)
        return;
    if (g->group_comm != MPI_COMM_NULL)
        MPI_Comm_free(&g->group_comm);
    if (g->shard_comm != MPI_COMM_NULL)
        MPI_Comm_free(&g->shard_comm);
    free(g->world);
    free(g->host);
    free(g->req);
    free(g->peer);
    free(g->blocks);
    free(g->extras);
    free(g);
}

MPI_Comm poet_group_shard_comm(const poet_group *g) { return g->shard_comm; }
MPI_Comm poet_group_comm(const poet_group *g) { return g->group_comm; }
uint64_t poet_group_bytes(const poet_group *g) { return g->bytes; }

void poet_group_set_timeout(poet_group *g, double seconds, double grace) {
    g->timeout = seconds;
    g->grace = grace;
}

static void pause_for(long nanoseconds) {
    struct timespec ts = {nanoseconds / 1000000000L, nanoseconds % 1000000000L};
    nanosleep(&ts, NULL);
}

/* Waits for `count` requests, peer[i] the group rank at the other end of req[i]; past the timeout
 * (and its grace) fails naming the first peer whose request is still open. */
static poet_status wait_bounded(poet_group *g, int count, const char *what) {
    poet_status st = POET_OK;
    int done = 0;
    POET_MPI(MPI_Testall(count, g->req, &done, MPI_STATUSES_IGNORE));
    if (done)
        return POET_OK;
    if (g->timeout <= 0) { /* no deadline (distributed.timeout 0) */
        POET_MPI(MPI_Waitall(count, g->req, MPI_STATUSES_IGNORE));
        return POET_OK;
    }
    double start = MPI_Wtime();
    long pause = 0;
    for (;;) {
        POET_MPI(MPI_Testall(count, g->req, &done, MPI_STATUSES_IGNORE));
        if (done)
            return POET_OK;
        double waited = MPI_Wtime() - start;
        if (waited > g->timeout + g->grace)
            for (int i = 0; i < count; i++) {
                int arrived = 0;
                POET_MPI(MPI_Test(&g->req[i], &arrived, MPI_STATUS_IGNORE));
                if (!arrived)
                    POET_FAIL(POET_ERR_MPI,
                              "no answer from rank %d on host %s for %.1f s (distributed.timeout "
                              "%g s) while waiting for %s (all-reduce of member group %d); "
                              "ending the job",
                              g->world[g->peer[i]], g->host[g->peer[i]], waited, g->timeout, what,
                              g->layout.group);
            }
        if (waited > SPIN_SECONDS) {
            pause =
                pause ? (pause * 2 < PAUSE_MOST_NS ? pause * 2 : PAUSE_MOST_NS) : PAUSE_FIRST_NS;
            pause_for(pause);
        }
    }
fail:
    return st;
}

static size_t block_start(size_t n, int size, int p) { return n * (size_t)p / (size_t)size; }

/* Room for the peers' parts of our block and everyone's extras. */
static poet_status reserve(poet_group *g, size_t block, size_t x) {
    poet_status st = POET_OK;
    int S = g->layout.size;
    if (block > g->block_capacity) {
        free(g->blocks);
        g->blocks = NULL;
        g->block_capacity = 0;
        POET_ALLOC(g->blocks, (size_t)S * block);
        g->block_capacity = block;
    }
    if (x > g->extras_capacity) {
        free(g->extras);
        g->extras = NULL;
        g->extras_capacity = 0;
        POET_ALLOC(g->extras, (size_t)S * x);
        g->extras_capacity = x;
    }
fail:
    return st;
}

/* x [n]: ours with the peers' (received into g->extras), summed in shard order 0, 1, …, S−1:
 * every rank the same bits. */
static void sum_extras(poet_group *g, double *x, size_t n) {
    int S = g->layout.size;
    memcpy(g->extras + (size_t)g->layout.shard * g->extras_capacity, x, n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double sum = g->extras[i];
        for (int p = 1; p < S; p++)
            sum += g->extras[(size_t)p * g->extras_capacity + i];
        x[i] = sum;
    }
}

poet_status poet_group_allreduce(poet_group *g, float *values, size_t n, double *extras, size_t x) {
    poet_status st = POET_OK;
    int S = g->layout.size, s = g->layout.shard, count = 0;
    size_t lo = block_start(n, S, s), mine = block_start(n, S, s + 1) - lo;
    POET_TRY(reserve(g, mine > 0 ? mine : 1, x > 0 ? x : 1));
    /* 1. Every peer p gets its block of our values and our extras; we get our block of theirs. */
    for (int p = 0; p < S; p++) {
        if (p == s)
            continue;
        size_t plo = block_start(n, S, p), pn = block_start(n, S, p + 1) - plo;
        g->peer[count] = p;
        POET_MPI(MPI_Irecv(g->blocks + (size_t)p * g->block_capacity, (int)mine, MPI_FLOAT, p,
                           TAG_BLOCK, g->group_comm, &g->req[count++]));
        g->peer[count] = p;
        POET_MPI(MPI_Irecv(g->extras + (size_t)p * g->extras_capacity, (int)x, MPI_DOUBLE, p,
                           TAG_EXTRAS, g->group_comm, &g->req[count++]));
        g->peer[count] = p;
        POET_MPI(MPI_Isend(values + plo, (int)pn, MPI_FLOAT, p, TAG_BLOCK, g->group_comm,
                           &g->req[count++]));
        g->peer[count] = p;
        POET_MPI(
            MPI_Isend(extras, (int)x, MPI_DOUBLE, p, TAG_EXTRAS, g->group_comm, &g->req[count++]));
        g->bytes += (pn + mine) * sizeof(float) + 2 * x * sizeof(double); /* sent + received */
    }
    POET_TRY(wait_bounded(g, count, "its shard's weight gradients"));
    /* 2. Our block and the extras, summed in shard order 0, 1, …, S−1 (every rank the same). */
    memcpy(g->blocks + (size_t)s * g->block_capacity, values + lo, mine * sizeof(float));
    for (size_t i = 0; i < mine; i++) {
        float sum = g->blocks[i];
        for (int p = 1; p < S; p++)
            sum += g->blocks[(size_t)p * g->block_capacity + i];
        values[lo + i] = sum;
    }
    sum_extras(g, extras, x);
    /* 3. Every rank's summed block to every rank. */
    count = 0;
    for (int p = 0; p < S; p++) {
        if (p == s)
            continue;
        size_t plo = block_start(n, S, p), pn = block_start(n, S, p + 1) - plo;
        g->peer[count] = p;
        POET_MPI(MPI_Irecv(values + plo, (int)pn, MPI_FLOAT, p, TAG_GATHER, g->group_comm,
                           &g->req[count++]));
        g->peer[count] = p;
        POET_MPI(MPI_Isend(values + lo, (int)mine, MPI_FLOAT, p, TAG_GATHER, g->group_comm,
                           &g->req[count++]));
        g->bytes += (pn + mine) * sizeof(float);
    }
    POET_TRY(wait_bounded(g, count, "its block of the summed weight gradients"));
fail:
    return st;
}

poet_status poet_group_sum(poet_group *g, double *x, size_t n, const char *what) {
    poet_status st = POET_OK;
    int S = g->layout.size, s = g->layout.shard, count = 0;
    POET_TRY(reserve(g, 1, n > 0 ? n : 1));
    for (int p = 0; p < S; p++) {
        if (p == s)
            continue;
        g->peer[count] = p;
        POET_MPI(MPI_Irecv(g->extras + (size_t)p * g->extras_capacity, (int)n, MPI_DOUBLE, p,
                           TAG_SUM, g->group_comm, &g->req[count++]));
        g->peer[count] = p;
        POET_MPI(MPI_Isend(x, (int)n, MPI_DOUBLE, p, TAG_SUM, g->group_comm, &g->req[count++]));
        g->bytes += 2 * n * sizeof(double); /* sent + received */
    }
    POET_TRY(wait_bounded(g, count, what));
    sum_extras(g, x, n);
fail:
    return st;
}

poet_status poet_group_sum_callback(void *group, double *x, size_t n) {
    return poet_group_sum(group, x, n, "its batch-norm statistics");
}
