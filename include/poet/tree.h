/* tree.h — the reduce tree: members' summed logits travel up to the root, the gradient comes down.
 *
 * Per iteration every rank sends and receives B×K values plus a fixed header, whatever the model.
 *
 * Layout (rank 0 is the root; P ranks):
 *   kary(k):  parent(r) = (r - 1) / k,  children(r) = k·r + 1 … k·r + k  (those < P)
 *   binary:   kary with k = 2
 *   mpi:      MPI_Ireduce (sum) + MPI_Ibcast, the library's own algorithm, as the baseline
 *
 * Up:   int64 [POET_TREE_HEADER + n]: header (flag counts, summed) then n fixed-point partial sums.
 *       Integer sums are exact, so the total is independent of the tree shape.
 * Down: bytes: int64 [POET_TREE_HEADER] decision header, then float [n] gradient.
 *
 * Operations are non-blocking so a rank can compute while values travel; several may be in flight,
 * one per slot (overlap of micro-batches, or the stale mode's previous batch). Every operation on a
 * slot is: reduce_start → reduce_wait → bcast_start → bcast_wait, on every rank.
 *
 * Waits are bounded (poet_tree_set_timeout, distributed.timeout): a peer silent for longer fails
 * the wait with POET_ERR_MPI and a message naming its rank and host, not agreed with the other
 * ranks (the CLI then ends the job with MPI_Abort). Ranks further from the silent one wait a little
 * longer (one step per tree level, min(1 s, timeout/4)), so the first to give up names the cause.
 */
#ifndef POET_TREE_H
#define POET_TREE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "poet/config.h"
#include "poet/error.h"

/* Header fields, summed on the way up and decided by the root on the way down. */
enum {
    POET_HDR_STOP = 0,  /* ranks that received a stop signal (SIGTERM/SIGUSR1) */
    POET_HDR_ERROR = 1, /* ranks that failed locally (they printed why) */
    POET_HDR_RESERVED0 = 2,
    POET_HDR_RESERVED1 = 3,
    POET_TREE_HEADER = 4
};

typedef struct poet_tree poet_tree;

#define POET_TREE_DEFAULT_TIMEOUT 180.0 /* seconds; distributed.timeout's default */

/* `values` = n per message (B×K, or a micro-batch's rows × K); `slots` operations may be in flight.
 * `comm` must return errors (MPI_ERRORS_RETURN). */
poet_status poet_tree_create(MPI_Comm comm, poet_tree_kind kind, int arity, size_t values,
                             int slots, poet_tree **out);
void poet_tree_destroy(poet_tree *tree);

int poet_tree_is_root(const poet_tree *tree);
/* Parent of `rank` (-1 for the root) and its children, for a kary tree of arity k over `size`
 * ranks. */
int poet_tree_parent_of(int rank, int arity);
int poet_tree_children_of(int rank, int size, int arity, int *children, int max_children);

/* The slot's up buffer: write POET_TREE_HEADER header counts then n partial sums before
 * reduce_start. After reduce_wait, on the root it holds the totals. */
int64_t *poet_tree_up(poet_tree *tree, int slot);
/* The slot's down buffers: the root writes header and gradient before bcast_start; after bcast_wait
 * every rank reads them. */
int64_t *poet_tree_down_header(poet_tree *tree, int slot);
float *poet_tree_down_values(poet_tree *tree, int slot);

poet_status poet_tree_reduce_start(poet_tree *tree, int slot);
poet_status poet_tree_reduce_wait(poet_tree *tree, int slot);
poet_status poet_tree_bcast_start(poet_tree *tree, int slot);
poet_status poet_tree_bcast_wait(poet_tree *tree, int slot);

/* Seconds a wait may last before it fails naming the peer (0: no limit). Collective over nothing:
 * each rank sets its own, normally all the same. */
void poet_tree_set_timeout(poet_tree *tree, double seconds);
double poet_tree_timeout(const poet_tree *tree);

/* Collective, bounded as every wait: a barrier through the tree before a step that uses MPI's own
 * collectives (the loss-log flush, an evaluation, a checkpoint), whose waits have no deadline. A
 * peer lost since the last exchange is named here, by the rank nearest it, rather than leaving
 * every rank inside HDF5's collective write. `step` names the step for the message. */
poet_status poet_tree_sync(poet_tree *tree, const char *step);

/* Lets MPI move what is in flight (call between layers while computing). */
poet_status poet_tree_progress(poet_tree *tree);

/* Payload bytes this rank sent and received since creation (headers included). */
uint64_t poet_tree_bytes_sent(const poet_tree *tree);
uint64_t poet_tree_bytes_received(const poet_tree *tree);

#endif
