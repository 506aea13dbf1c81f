/* memplan.h — the memory one rank will need, estimated before training, and the check that it fits
 * the rank's share of the node.
 *
 * The estimate (docs/config.md, "Memory estimate") adds, for every member the rank holds,
 * poet_arch_member_bytes (parameters ×3, activations and their gradients, im2col workspace,
 * evaluation buffers), and the data sets and batch buffers the rank holds. The limit is
 * distributed.memory_limit_gib when set, else the node's physical memory (sysconf) divided by the
 * ranks on that node (MPI_Comm_split_type shared).
 */
#ifndef POET_MEMPLAN_H
#define POET_MEMPLAN_H

#include <mpi.h>

#include "poet/arch.h"
#include "poet/config.h"
#include "poet/error.h"

typedef struct {
    double members_bytes; /* the rank's members: parameters, activations, workspace */
    double data_bytes;    /* data sets and batch buffers, as the caller counted them */
    double total_bytes;
    double limit_bytes; /* what the rank may use */
    int local_ranks;    /* ranks on this node */
} poet_memplan;

/* Collective over comm (every rank must call it: it counts the ranks on each node). Estimates this
 * rank's need for `rows` rows per micro-batch, `slots` micro-batches in flight and `eval_rows`
 * evaluation rows on images of shape `input`, plus `data_bytes`, into *plan. Returns a rank-local
 * POET_ERR_CONFIG naming distributed.memory_limit_gib when the estimate exceeds the limit (the
 * caller agrees on it with the other ranks). */
poet_status poet_memplan_check(MPI_Comm comm, const poet_config *cfg, poet_shape input, int rows,
                               int slots, int eval_rows, double data_bytes, poet_memplan *plan);

#endif
