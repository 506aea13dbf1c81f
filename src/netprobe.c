/* netprobe.c — ping-pongs between rank 0 and every other rank, and the tree shape they suggest
 * (netprobe.h has the cost model). */
#include "poet/netprobe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/mpierror.h"
#include "poet/tree.h"

enum { TAG_PROBE = 4300, WARMUP = 2, ROUNDS = 5 };

static int tree_height(int ranks, int arity) {
    int height = 0;
    for (long r = 1; r < ranks; r = (long)arity * r + 1)
        height++;
    return height;
}

static int ceil_log2(int n) {
    int levels = 0;
    while ((1L << levels) < n)
        levels++;
    return levels;
}

double poet_netprobe_cost(poet_tree_kind kind, int arity, int ranks, double latency,
                          double seconds_per_byte, size_t up_bytes, size_t down_bytes) {
    double both = (double)(up_bytes + down_bytes) * seconds_per_byte;
    if (kind == POET_TREE_MPI)
        return ceil_log2(ranks) * (2 * latency + both);
    if (kind == POET_TREE_BINARY)
        arity = 2;
    int fan_in = arity < ranks - 1 ? arity : ranks - 1; /* the root's children, the most of any */
    return tree_height(ranks, arity) * (2 * latency + fan_in * both);
}

void poet_netprobe_pick(int ranks, poet_netprobe *p) {
    double best = poet_netprobe_cost(POET_TREE_BINARY, 2, ranks, p->latency, p->seconds_per_byte,
                                     p->up_bytes, p->down_bytes);
    p->kind = POET_TREE_BINARY;
    p->arity = 2;
    p->predicted_binary = best;
    int widest = ranks - 1 < POET_MAX_ARITY ? ranks - 1 : POET_MAX_ARITY;
    for (int k = 3; k <= widest; k++) {
        double cost = poet_netprobe_cost(POET_TREE_KARY, k, ranks, p->latency, p->seconds_per_byte,
                                         p->up_bytes, p->down_bytes);
        if (cost < best) {
            best = cost;
            p->kind = POET_TREE_KARY;
            p->arity = k;
        }
    }
    p->predicted_mpi = poet_netprobe_cost(POET_TREE_MPI, 2, ranks, p->latency, p->seconds_per_byte,
                                          p->up_bytes, p->down_bytes);
    if (p->predicted_mpi < best) {
        best = p->predicted_mpi;
        p->kind = POET_TREE_MPI;
        p->arity = 2;
    }
    p->predicted = best;
}

/* Rank 0's least round trip (seconds) with `peer` for `bytes`; the peer echoes. */
static poet_status ping_pong(MPI_Comm comm, int rank, int peer, unsigned char *buffer, int bytes,
                             double *least) {
    poet_status st = POET_OK;
    *least = 1e30;
    for (int i = 0; i < WARMUP + ROUNDS; i++) {
        if (rank == 0) {
            double t0 = MPI_Wtime();
            POET_MPI(MPI_Send(buffer, bytes, MPI_BYTE, peer, TAG_PROBE, comm));
            POET_MPI(MPI_Recv(buffer, bytes, MPI_BYTE, peer, TAG_PROBE, comm, MPI_STATUS_IGNORE));
            double rtt = MPI_Wtime() - t0;
            if (i >= WARMUP && rtt < *least)
                *least = rtt;
        } else {
            POET_MPI(MPI_Recv(buffer, bytes, MPI_BYTE, 0, TAG_PROBE, comm, MPI_STATUS_IGNORE));
            POET_MPI(MPI_Send(buffer, bytes, MPI_BYTE, 0, TAG_PROBE, comm));
        }
    }
fail:
    return st;
}

poet_status poet_netprobe_choose(MPI_Comm comm, size_t values, poet_netprobe *out) {
    poet_status st = POET_OK;
    unsigned char *buffer = NULL;
    int rank, ranks;
    memset(out, 0, sizeof *out);
    out->up_bytes = (POET_TREE_HEADER + values) * sizeof(int64_t);
    out->down_bytes = POET_TREE_HEADER * sizeof(int64_t) + values * sizeof(float);
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_MPI(MPI_Comm_size(comm, &ranks));
    POET_ALLOC(buffer, out->up_bytes);
    /* Rank 0 meets the others one at a time; the rest wait at the broadcast below. */
    for (int peer = 1; peer < ranks; peer++) {
        if (rank != 0 && rank != peer)
            continue;
        double small = 0, large = 0;
        POET_TRY(ping_pong(comm, rank, peer, buffer, 1, &small));
        POET_TRY(ping_pong(comm, rank, peer, buffer, (int)out->up_bytes, &large));
        if (rank == 0) {
            double latency = small / 2;
            double per_byte = large > small ? (large - small) / 2 / (double)out->up_bytes : 0;
            if (latency > out->latency)
                out->latency = latency;
            if (per_byte > out->seconds_per_byte)
                out->seconds_per_byte = per_byte;
        }
    }
    if (rank == 0)
        poet_netprobe_pick(ranks, out);
    double figures[6] = {out->latency,          out->seconds_per_byte, out->predicted,
                         out->predicted_binary, out->predicted_mpi,    0};
    int shape[2] = {(int)out->kind, out->arity};
    POET_MPI(MPI_Bcast(figures, 6, MPI_DOUBLE, 0, comm));
    POET_MPI(MPI_Bcast(shape, 2, MPI_INT, 0, comm));
    out->latency = figures[0];
    out->seconds_per_byte = figures[1];
    out->predicted = figures[2];
    out->predicted_binary = figures[3];
    out->predicted_mpi = figures[4];
    out->kind = (poet_tree_kind)shape[0];
    out->arity = shape[1];
fail:
    free(buffer);
    return st;
}

void poet_netprobe_describe(const poet_netprobe *p, char *text, size_t size) {
    char shape[32];
    if (p->kind == POET_TREE_KARY)
        snprintf(shape, sizeof shape, "kary (arity %d)", p->arity);
    else
        snprintf(shape, sizeof shape, "%s", poet_tree_kind_name(p->kind));
    double bandwidth = p->seconds_per_byte > 0 ? 1e-9 / p->seconds_per_byte : 0;
    snprintf(text, size,
             "tree auto: %s; one-way latency %.1f us, bandwidth %.2f GB/s (slowest rank from rank "
             "0); predicted per exchange of %zu+%zu bytes: %s %.1f us, binary %.1f us, mpi %.1f us",
             shape, p->latency * 1e6, bandwidth, p->up_bytes, p->down_bytes, shape,
             p->predicted * 1e6, p->predicted_binary * 1e6, p->predicted_mpi * 1e6);
}
