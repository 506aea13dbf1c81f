/* netprobe.h — choosing the reduce tree from the network (distributed.tree: "auto").
 *
 * At start-up rank 0 ping-pongs with every other rank, a few round trips of an empty message and
 * of one up message (B×K partial sums and the header), and takes the worst rank's one-way latency
 * L and time per byte β. Each candidate shape is costed as depth × latency + bytes / bandwidth per
 * exchange (reduce up, gradient down), with up/down message bytes u, d:
 *   kary(k), binary = kary(2): height h of the tree (edges root → deepest rank); at every level a
 *       rank takes c = min(k, P − 1) messages in turn and sends c in turn:  h · (2L + c·(u + d)·β)
 *   mpi: modelled as a binomial tree (MPI libraries' usual choice for small messages): ⌈log2 P⌉
 *       levels of one message each way:  ⌈log2 P⌉ · (2L + (u + d)·β)
 * k runs over 3 … min(P − 1, POET_MAX_ARITY) (k ≥ P − 1 is the flat tree). Rank 0 decides and
 * broadcasts, so every rank builds the same tree. Ties go to the earlier of binary, kary (smaller
 * k first), mpi.
 */
#ifndef POET_NETPROBE_H
#define POET_NETPROBE_H

#include <mpi.h>
#include <stddef.h>

#include "poet/config.h"
#include "poet/error.h"

typedef struct {
    double latency;          /* one-way seconds, the slowest rank from rank 0 */
    double seconds_per_byte; /* the slowest rank's */
    size_t up_bytes, down_bytes;
    poet_tree_kind kind; /* the choice: binary, kary or mpi */
    int arity;
    double predicted; /* seconds per exchange, the choice */
    double predicted_binary, predicted_mpi;
} poet_netprobe;

/* Predicted seconds per exchange of a tree shape over `ranks` ranks (formulas above). */
double poet_netprobe_cost(poet_tree_kind kind, int arity, int ranks, double latency,
                          double seconds_per_byte, size_t up_bytes, size_t down_bytes);

/* The cheapest shape for these figures (every rank given the same figures picks the same). */
void poet_netprobe_pick(int ranks, poet_netprobe *probe);

/* Collective: measures, picks on rank 0 and broadcasts; `values` per message (B×K). */
poet_status poet_netprobe_choose(MPI_Comm comm, size_t values, poet_netprobe *out);

/* One line describing the choice and its figures, e.g. for rank 0 to print. */
void poet_netprobe_describe(const poet_netprobe *probe, char *text, size_t size);

#endif
