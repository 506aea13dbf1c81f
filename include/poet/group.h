/* group.h — member groups: more ranks than members, data-parallel inside a group.
 *
 * Legend: P = ranks, M = members, S = ranks per group (distributed.group_size), G = P / S groups,
 * B = batch, n = floats summed by the group all-reduce.
 *
 * Rank r is shard s = r mod S of group g = r / S: a group's ranks are consecutive, so that the
 * large message (the members' weight gradients) stays on a node when ranks are placed node by
 * node. Members are placed over the G groups exactly as over the ranks when S = 1 (poet_placement);
 * the S ranks of a group hold the same members and each takes one contiguous shard of every batch,
 * the first B mod S shards one row more. Per iteration the logits of shard s are summed across the
 * groups by the reduce tree over the shard's communicator (the G ranks with shard index s, in group
 * order: tree rank = g); after backward, the S ranks of a group sum their weight gradients with
 * poet_group_allreduce before the optimiser step. S = 1 is the layout of P <= M: no group traffic.
 */
#ifndef POET_GROUP_H
#define POET_GROUP_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "poet/config.h"
#include "poet/error.h"

typedef struct {
    int ranks;     /* P */
    int size;      /* S */
    int groups;    /* G */
    int group;     /* g: this rank's group, its "rank" for member placement */
    int shard;     /* s: this rank's shard in its group (0 writes the group's checkpoint share) */
    int first_row; /* where this rank's shard starts in the batch */
    int rows;      /* the shard's rows */
} poet_layout;

/* The layout of `ranks` ranks for cfg (members, batch, group_size, chunks), seen from `rank`.
 * group_size 0 (automatic): S = 1 when P <= M, else G = the largest divisor of P that is at most M.
 * Fails with POET_ERR_CONFIG naming the key when S does not divide P, when there would be more
 * groups than members, when a shard would have no rows, or when distributed.chunks does not divide
 * every shard's rows. */
poet_status poet_layout_resolve(const poet_config *cfg, int ranks, int rank, poet_layout *out);

/* Rows [*first, *first + *rows) of shard `shard` of S in a batch of `batch`. */
void poet_layout_shard(int batch, int size, int shard, int *first, int *rows);

typedef struct poet_group poet_group;

/* Collective over comm (every rank, S > 1): the group's and the shard's communicators. */
poet_status poet_group_create(MPI_Comm comm, const poet_layout *layout, poet_group **out);
void poet_group_destroy(poet_group *group);

/* The G ranks with this rank's shard index, ranked by group: the reduce tree of this shard. */
MPI_Comm poet_group_shard_comm(const poet_group *group);
/* The S ranks of this rank's group, ranked by shard. */
MPI_Comm poet_group_comm(const poet_group *group);

/* Seconds a wait of the all-reduce may last (distributed.timeout; 0: no limit), plus `grace`: the
 * reduce trees' waits must run out first, so that the rank next to a silent one names it. */
void poet_group_set_timeout(poet_group *group, double seconds, double grace);

/* Sums `values` [n] and `extras` [x] over the group's S ranks, in place, every rank getting the
 * same bits: each rank sums one contiguous block of `values` (block p = [p·n/S, (p+1)·n/S)) over
 * the shards in shard order 0, 1, …, S−1 and the blocks are then gathered; the extras are summed in
 * shard order on every rank. Data moves point to point (each rank sends 2·(S−1)/S·n floats and
 * receives as many), the order of the sums is ours, not the MPI library's: the result is a function
 * of the layout alone. Every wait is bounded (poet_group_set_timeout); a peer silent for longer
 * fails it with POET_ERR_MPI naming its rank and host (not agreed: the CLI ends the job). */
poet_status poet_group_allreduce(poet_group *group, float *values, size_t n, double *extras,
                                 size_t x);

/* Sums `x` [n] over the group's S ranks in place, in shard order on every rank (every rank gets the
 * same bits): one exchange, each rank sending its n doubles to every peer. Bounded as the
 * all-reduce; `what` names the exchange in the timeout message. Used by synchronised batch
 * normalisation (distributed.sync_batchnorm): its per-channel sums cross the group this way. */
poet_status poet_group_sum(poet_group *group, double *x, size_t n, const char *what);

/* poet_group_sum as a stack's sync (poet_stack_options.sync, net.h): `group` is the poet_group. */
poet_status poet_group_sum_callback(void *group, double *x, size_t n);

/* Payload bytes this rank sent and received through the all-reduce since creation. */
uint64_t poet_group_bytes(const poet_group *group);

#endif
