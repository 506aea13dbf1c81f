/* test_netprobe.c — distributed.tree "auto": the cost model picks the shape the formulas in
 * netprobe.h say for latency- and bandwidth-bound figures, and the measured choice is one valid
 * shape, the same on every rank, usable to build the tree. Runs under mpiexec with any rank count.
 */
#include <mpi.h>

#include "poet/netprobe.h"
#include "poet/tree.h"
#include "testutil.h"

static poet_netprobe figures(double latency, double per_byte) {
    poet_netprobe p = {0};
    p.latency = latency;
    p.seconds_per_byte = per_byte;
    p.up_bytes = (4 + 2000) * 8;
    p.down_bytes = 4 * 8 + 2000 * 4;
    return p;
}

static void check_model(void) {
    /* 4 ranks, latency only: the flat tree (one level) beats two levels of binary or binomial. */
    poet_netprobe p = figures(1e-3, 0);
    poet_netprobe_pick(4, &p);
    TEST_CHECK(p.kind == POET_TREE_KARY && p.arity == 3, "latency-bound P=4: kind %d arity %d",
               p.kind, p.arity);
    /* Bandwidth only: the binomial tree's one message per level wins (2 vs kary 3, binary 4). */
    p = figures(0, 1e-9);
    poet_netprobe_pick(4, &p);
    TEST_CHECK(p.kind == POET_TREE_MPI, "bandwidth-bound P=4: kind %d", p.kind);
    /* 2 ranks: every shape is one message each way; ties go to binary. */
    p = figures(1e-4, 1e-9);
    poet_netprobe_pick(2, &p);
    TEST_CHECK(p.kind == POET_TREE_BINARY, "P=2: kind %d", p.kind);
    /* 64 ranks, latency-bound: one level of 63 children. */
    p = figures(1e-3, 1e-12);
    poet_netprobe_pick(64, &p);
    TEST_CHECK(p.kind == POET_TREE_KARY && p.arity == 63, "latency-bound P=64: arity %d", p.arity);
    double binary = poet_netprobe_cost(POET_TREE_BINARY, 2, 7, 1.0, 0, 0, 0);
    TEST_CHECK(binary == 2 * 2.0, "binary over 7 ranks: 2 levels of 2L, got %g", binary);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    check_model();
    poet_netprobe p;
    TEST_OK(poet_netprobe_choose(comm, 400, &p));
    TEST_CHECK(p.kind == POET_TREE_BINARY || p.kind == POET_TREE_KARY || p.kind == POET_TREE_MPI,
               "chosen kind %d", p.kind);
    TEST_CHECK(p.arity >= 2 && p.arity <= POET_MAX_ARITY, "chosen arity %d", p.arity);
    TEST_CHECK(size == 1 || (p.latency > 0 && p.predicted > 0), "figures measured: L %g",
               p.latency);
    int mine[2] = {(int)p.kind, p.arity}, least[2], most[2];
    MPI_Allreduce(mine, least, 2, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(mine, most, 2, MPI_INT, MPI_MAX, comm);
    TEST_CHECK(least[0] == most[0] && least[1] == most[1], "every rank the same shape");
    poet_tree *tree = NULL;
    TEST_OK(poet_tree_create(comm, p.kind, p.arity, 400, 1, &tree));
    poet_tree_destroy(tree);
    int failures = test_failures, all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, comm);
    test_failures = all;
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return rank == 0 ? test_finish("netprobe") : (all != 0);
}
