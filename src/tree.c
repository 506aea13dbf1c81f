/* tree.c — non-blocking reduce/broadcast over a k-ary tree of ranks, or over MPI's own collectives.
 *
 * Each slot runs a small state machine:
 *   reduce_start: post receives from the children (a leaf sends to its parent at once)
 *   progress:     once every child's partial sum arrived, add them and send up
 *   reduce_wait:  finish that; on the root the slot's up buffer now holds the totals
 *   bcast_start:  the root sends the gradient to its children; others post a receive from the
 * parent bcast_wait:   once the parent's message arrived, forward it to the children
 *
 * Every wait is bounded (distributed.timeout): a peer that stops answering (hung, or its host's
 * link down) ends the wait with a message naming it, rather than leaving the rank in MPI_Wait until
 * Open MPI's own keepalive gives up minutes later. Waits test the requests, spinning for a moment
 * (the fast path: most messages are already there or arrive within microseconds), then sleeping
 * with a growing pause so a waiting rank leaves the cores to the ranks still computing.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "poet/tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "poet/mpierror.h"

enum { TAG_UP = 4100, TAG_DOWN = 4200, TAG_SYNC_UP = 4300, TAG_SYNC_DOWN = 4301 };
#define MAX_CHILDREN 64
#define SPIN_SECONDS 1e-3    /* test without pausing this long before sleeping between tests */
#define PAUSE_FIRST_NS 20000 /* then pause 20 µs, doubling up to 1 ms */
#define PAUSE_MOST_NS 1000000

typedef struct {
    int64_t *up;            /* [H + n] own partial, then the sum of the subtree */
    int64_t *from_children; /* [children][H + n] */
    unsigned char *down;    /* [8H + 4n] header then float gradient */
    MPI_Request child_recv[MAX_CHILDREN];
    MPI_Request parent_send;
    MPI_Request parent_recv;
    MPI_Request child_send[MAX_CHILDREN];
    MPI_Request collective;
    int index;          /* slot number: messages of different slots never match each other */
    int reducing;       /* between reduce_start and reduce_wait */
    int up_sent;        /* partial sum already added and sent up */
    int down_forwarded; /* gradient already sent on to the children */
} tree_slot;

struct poet_tree {
    MPI_Comm comm;
    int rank, size;
    poet_tree_kind kind;
    int arity;
    int parent;
    int n_children;
    int children[MAX_CHILDREN];
    size_t n; /* values per message */
    int slots;
    tree_slot *slot;
    uint64_t bytes_sent, bytes_received;
    double timeout;                       /* seconds a wait may last (distributed.timeout) */
    int depth;                            /* edges from the root to this rank */
    int tree_height;                      /* edges from the root to the deepest rank */
    char (*host)[MPI_MAX_PROCESSOR_NAME]; /* [size] every rank's host, for the timeout message */
    int *world; /* [size] every rank's rank in MPI_COMM_WORLD: a shard's tree (group.h) runs on a
                 * communicator of its own, but messages name the ranks the user launched */
};

static size_t up_count(const poet_tree *t) { return POET_TREE_HEADER + t->n; }
static size_t down_bytes(const poet_tree *t) {
    return POET_TREE_HEADER * sizeof(int64_t) + t->n * sizeof(float);
}

int poet_tree_parent_of(int rank, int arity) { return rank == 0 ? -1 : (rank - 1) / arity; }

/* Edges from `rank` down to the deepest rank of its subtree: in this layout the leftmost path is
 * the longest. */
static int subtree_height(int rank, int size, int arity) {
    int height = 0;
    for (long r = (long)arity * rank + 1; r < size; r = (long)arity * r + 1)
        height++;
    return height;
}

int poet_tree_children_of(int rank, int size, int arity, int *children, int max_children) {
    int count = 0;
    for (int i = 1; i <= arity && count < max_children; i++) {
        long child = (long)arity * rank + i;
        if (child < size)
            children[count++] = (int)child;
    }
    return count;
}

poet_status poet_tree_create(MPI_Comm comm, poet_tree_kind kind, int arity, size_t values,
                             int slots, poet_tree **out) {
    poet_status st = POET_OK;
    poet_tree *t = NULL;
    *out = NULL;
    if (kind == POET_TREE_BINARY)
        arity = 2;
    if (kind == POET_TREE_AUTO) /* resolved by netprobe before */
        return poet_error_set(POET_ERR_INTERNAL, "poet_tree_create: tree \"auto\" not resolved");
    if (arity < 2 || arity > MAX_CHILDREN)
        return poet_error_set(POET_ERR_CONFIG, "distributed.arity: expected 2..%d, got %d",
                              MAX_CHILDREN, arity);
    POET_ALLOC(t, 1);
    t->comm = comm;
    t->kind = kind;
    t->arity = arity;
    t->n = values;
    t->slots = slots;
    POET_MPI(MPI_Comm_rank(comm, &t->rank));
    POET_MPI(MPI_Comm_size(comm, &t->size));
    t->parent = poet_tree_parent_of(t->rank, arity);
    t->n_children = poet_tree_children_of(t->rank, t->size, arity, t->children, MAX_CHILDREN);
    t->timeout = POET_TREE_DEFAULT_TIMEOUT;
    for (int r = t->rank; r > 0; r = poet_tree_parent_of(r, arity))
        t->depth++;
    t->tree_height = subtree_height(0, t->size, arity);
    /* Hosts are only needed to name a peer that stopped answering, but by then it is too late to
     * ask: gather them now (once per run). */
    POET_ALLOC(t->host, t->size);
    {
        char mine[MPI_MAX_PROCESSOR_NAME] = "";
        int length = 0;
        POET_MPI(MPI_Get_processor_name(mine, &length));
        POET_MPI(MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, t->host,
                               MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm));
        int world = 0;
        POET_ALLOC(t->world, t->size);
        POET_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &world));
        POET_MPI(MPI_Allgather(&world, 1, MPI_INT, t->world, 1, MPI_INT, comm));
    }
    POET_ALLOC(t->slot, slots);
    for (int s = 0; s < slots; s++) {
        tree_slot *sl = &t->slot[s];
        sl->index = s;
        POET_ALLOC(sl->up, up_count(t));
        POET_ALLOC(sl->from_children, up_count(t) * (size_t)(t->n_children ? t->n_children : 1));
        POET_ALLOC(sl->down, down_bytes(t));
        sl->parent_send = sl->parent_recv = sl->collective = MPI_REQUEST_NULL;
        for (int c = 0; c < MAX_CHILDREN; c++)
            sl->child_recv[c] = sl->child_send[c] = MPI_REQUEST_NULL;
    }
    *out = t;
    return POET_OK;
fail:
    poet_tree_destroy(t);
    return st;
}

void poet_tree_destroy(poet_tree *t) {
    if (!t)
        return;
    for (int s = 0; t->slot && s < t->slots; s++) {
        free(t->slot[s].up);
        free(t->slot[s].from_children);
        free(t->slot[s].down);
    }
    free(t->slot);
    free(t->host);
    free(t->world);
    free(t);
}

int poet_tree_is_root(const poet_tree *t) { return t->rank == 0; }
int64_t *poet_tree_up(poet_tree *t, int slot) { return t->slot[slot].up; }
int64_t *poet_tree_down_header(poet_tree *t, int slot) { return (int64_t *)t->slot[slot].down; }
float *poet_tree_down_values(poet_tree *t, int slot) {
    return (float *)(t->slot[slot].down + POET_TREE_HEADER * sizeof(int64_t));
}
uint64_t poet_tree_bytes_sent(const poet_tree *t) { return t->bytes_sent; }
uint64_t poet_tree_bytes_received(const poet_tree *t) { return t->bytes_received; }
void poet_tree_set_timeout(poet_tree *t, double seconds) { t->timeout = seconds; }
double poet_tree_timeout(const poet_tree *t) { return t->timeout; }

/* The extra time a wait on `peer` gets beyond the timeout, one step per tree level between the
 * stall and this rank. A rank that stops answering leaves every rank above it waiting on a child
 * and every rank below it waiting on a parent; the staggering makes the rank right above the silent
 * one (waiting on a subtree of the least height) give up first, so its message names the cause. */
static double grace(const poet_tree *t, int peer) {
    double step = t->timeout < 4 ? t->timeout / 4 : 1.0;
    if (peer < 0) /* MPI's collectives: no peer to tell */
        return 0;
    if (peer == t->parent) /* below the stall: after every rank above has had its turn */
        return step * (t->tree_height + t->depth);
    return step * subtree_height(peer, t->size, t->arity);
}

static void pause_for(long nanoseconds) {
    struct timespec ts = {nanoseconds / 1000000000L, nanoseconds % 1000000000L};
    nanosleep(&ts, NULL);
}

/* Waits for `count` requests, `peer[i]` the rank at the other end of request i (-1 for a
 * collective); `what` says what the rank waited for. Fails naming the first peer whose deadline
 * passed. */
static poet_status wait_bounded(poet_tree *t, int count, MPI_Request *req, const int *peer,
                                const char *what) {
    poet_status st = POET_OK;
    int done = 0;
    POET_MPI(MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE));
    if (done || t->timeout <= 0) {
        if (!done) /* no deadline (distributed.timeout 0) */
            POET_MPI(MPI_Waitall(count, req, MPI_STATUSES_IGNORE));
        return POET_OK;
    }
    double start = MPI_Wtime();
    long pause = 0;
    for (;;) {
        POET_MPI(MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE));
        if (done)
            return POET_OK;
        double waited = MPI_Wtime() - start;
        for (int i = 0; i < count; i++) {
            if (waited <= t->timeout + grace(t, peer[i]))
                continue;
            int arrived = 0;
            POET_MPI(MPI_Test(&req[i], &arrived, MPI_STATUS_IGNORE));
            if (arrived)
                continue;
            if (peer[i] < 0)
                POET_FAIL(POET_ERR_MPI,
                          "no answer for %.1f s (distributed.timeout %g s) while waiting for %s "
                          "(tree mpi: MPI's collective does not tell which rank is missing); "
                          "ending the job",
                          waited, t->timeout, what);
            POET_FAIL(POET_ERR_MPI,
                      "no answer from rank %d on host %s for %.1f s (distributed.timeout %g s) "
                      "while waiting for %s; ending the job",
                      t->world[peer[i]], t->host[peer[i]], waited, t->timeout, what);
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

/* Adds the children's subtree sums into ours and sends the result to the parent (not at the root).
 */
static poet_status send_up(poet_tree *t, tree_slot *sl) {
    poet_status st = POET_OK;
    size_t count = up_count(t);
    for (int c = 0; c < t->n_children; c++) {
        const int64_t *child = sl->from_children + (size_t)c * count;
        for (size_t i = 0; i < count; i++)
            sl->up[i] += child[i];
    }
    if (t->parent >= 0) {
        POET_MPI(MPI_Isend(sl->up, (int)count, MPI_INT64_T, t->parent, TAG_UP + sl->index, t->comm,
                           &sl->parent_send));
        t->bytes_sent += count * sizeof(int64_t);
    }
    sl->up_sent = 1;
fail:
    return st;
}

poet_status poet_tree_reduce_start(poet_tree *t, int slot) {
    poet_status st = POET_OK;
    tree_slot *sl = &t->slot[slot];
    size_t count = up_count(t);
    sl->up_sent = 0;
    sl->reducing = 1;
    if (t->kind == POET_TREE_MPI) {
        /* In place at the root; other ranks' buffers are only read. */
        void *send = t->rank == 0 ? MPI_IN_PLACE : (void *)sl->up;
        POET_MPI(MPI_Ireduce(send, sl->up, (int)count, MPI_INT64_T, MPI_SUM, 0, t->comm,
                             &sl->collective));
        /* The library's internal traffic is not visible: count the payload each rank hands over
         * (sent by the others, taken in once by the root). */
        if (t->rank != 0)
            t->bytes_sent += count * sizeof(int64_t);
        else
            t->bytes_received += count * sizeof(int64_t);
        return POET_OK;
    }
    for (int c = 0; c < t->n_children; c++) {
        POET_MPI(MPI_Irecv(sl->from_children + (size_t)c * count, (int)count, MPI_INT64_T,
                           t->children[c], TAG_UP + sl->index, t->comm, &sl->child_recv[c]));
        t->bytes_received += count * sizeof(int64_t);
    }
    if (t->n_children == 0)
        POET_TRY(send_up(t, sl));
fail:
    return st;
}

/* Sends up as soon as every child arrived; never blocks. */
static poet_status progress_slot(poet_tree *t, tree_slot *sl) {
    poet_status st = POET_OK;
    if (t->kind == POET_TREE_MPI || !sl->reducing || sl->up_sent || t->n_children == 0)
        return POET_OK;
    int done = 0;
    POET_MPI(MPI_Testall(t->n_children, sl->child_recv, &done, MPI_STATUSES_IGNORE));
    if (done)
        POET_TRY(send_up(t, sl));
fail:
    return st;
}

poet_status poet_tree_progress(poet_tree *t) {
    poet_status st = POET_OK;
    for (int s = 0; s < t->slots; s++)
        POET_TRY(progress_slot(t, &t->slot[s]));
fail:
    return st;
}

poet_status poet_tree_reduce_wait(poet_tree *t, int slot) {
    poet_status st = POET_OK;
    tree_slot *sl = &t->slot[slot];
    sl->reducing = 0;
    if (t->kind == POET_TREE_MPI) {
        int everyone = -1;
        return wait_bounded(t, 1, &sl->collective, &everyone, "MPI_Ireduce of the logit sums");
    }
    if (!sl->up_sent) {
        POET_TRY(wait_bounded(t, t->n_children, sl->child_recv, t->children,
                              "its partial logit sums (tree, up)"));
        POET_TRY(send_up(t, sl));
    }
    POET_TRY(wait_bounded(t, 1, &sl->parent_send, &t->parent,
                          "it to take this rank's partial sums (tree, up)"));
fail:
    return st;
}

static poet_status send_down(poet_tree *t, tree_slot *sl) {
    poet_status st = POET_OK;
    for (int c = 0; c < t->n_children; c++) {
        POET_MPI(MPI_Isend(sl->down, (int)down_bytes(t), MPI_BYTE, t->children[c],
                           TAG_DOWN + sl->index, t->comm, &sl->child_send[c]));
        t->bytes_sent += down_bytes(t);
    }
    sl->down_forwarded = 1;
fail:
    return st;
}

poet_status poet_tree_bcast_start(poet_tree *t, int slot) {
    poet_status st = POET_OK;
    tree_slot *sl = &t->slot[slot];
    sl->down_forwarded = 0;
    if (t->kind == POET_TREE_MPI) {
        POET_MPI(MPI_Ibcast(sl->down, (int)down_bytes(t), MPI_BYTE, 0, t->comm, &sl->collective));
        if (t->rank != 0)
            t->bytes_received += down_bytes(t);
        else
            t->bytes_sent += down_bytes(t);
        return POET_OK;
    }
    if (t->parent < 0)
        return send_down(t, sl);
    POET_MPI(MPI_Irecv(sl->down, (int)down_bytes(t), MPI_BYTE, t->parent, TAG_DOWN + sl->index,
                       t->comm, &sl->parent_recv));
    t->bytes_received += down_bytes(t);
fail:
    return st;
}

poet_status poet_tree_bcast_wait(poet_tree *t, int slot) {
    poet_status st = POET_OK;
    tree_slot *sl = &t->slot[slot];
    if (t->kind == POET_TREE_MPI) {
        int everyone = -1;
        return wait_bounded(t, 1, &sl->collective, &everyone, "MPI_Ibcast of the gradient");
    }
    if (!sl->down_forwarded) {
        POET_TRY(wait_bounded(t, 1, &sl->parent_recv, &t->parent, "the gradient (tree, down)"));
        POET_TRY(send_down(t, sl));
    }
    POET_TRY(wait_bounded(t, t->n_children, sl->child_send, t->children,
                          "it to take the gradient (tree, down)"));
fail:
    return st;
}

/* Zero-byte messages up the tree and back down, every wait bounded as the exchange's. The last
 * gradient sent down completes on the sender once it is in the socket, whether or not the child
 * will ever read it; only the child's word coming back up proves it still answers. */
poet_status poet_tree_sync(poet_tree *t, const char *step) {
    poet_status st = POET_OK;
    MPI_Request req[MAX_CHILDREN];
    char what[160];
    if (t->size == 1)
        return POET_OK;
    if (t->kind == POET_TREE_MPI) {
        int everyone = -1;
        MPI_Request barrier = MPI_REQUEST_NULL;
        snprintf(what, sizeof what, "MPI_Ibarrier before %s", step);
        POET_MPI(MPI_Ibarrier(t->comm, &barrier));
        return wait_bounded(t, 1, &barrier, &everyone, what);
    }
    for (int c = 0; c < t->n_children; c++)
        POET_MPI(MPI_Irecv(NULL, 0, MPI_BYTE, t->children[c], TAG_SYNC_UP, t->comm, &req[c]));
    snprintf(what, sizeof what, "it to reach %s (tree sync, up)", step);
    POET_TRY(wait_bounded(t, t->n_children, req, t->children, what));
    if (t->parent >= 0) {
        MPI_Request up = MPI_REQUEST_NULL, down = MPI_REQUEST_NULL;
        POET_MPI(MPI_Isend(NULL, 0, MPI_BYTE, t->parent, TAG_SYNC_UP, t->comm, &up));
        POET_MPI(MPI_Irecv(NULL, 0, MPI_BYTE, t->parent, TAG_SYNC_DOWN, t->comm, &down));
        snprintf(what, sizeof what, "it to take this rank's word before %s (tree sync, up)", step);
        POET_TRY(wait_bounded(t, 1, &up, &t->parent, what));
        snprintf(what, sizeof what, "its go-ahead for %s (tree sync, down)", step);
        POET_TRY(wait_bounded(t, 1, &down, &t->parent, what));
    }
    for (int c = 0; c < t->n_children; c++)
        POET_MPI(MPI_Isend(NULL, 0, MPI_BYTE, t->children[c], TAG_SYNC_DOWN, t->comm, &req[c]));
    snprintf(what, sizeof what, "it to take the go-ahead for %s (tree sync, down)", step);
    POET_TRY(wait_bounded(t, t->n_children, req, t->children, what));
fail:
    return st;
}
