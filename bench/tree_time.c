/* tree_time: the reduce tree alone, one exchange (reduce_start → reduce_wait → bcast_start →
 * bcast_wait) of B×K values per round, on every tree shape; rank 0 prints microseconds per exchange
 * (median of the repeats). Measures the cost of the tree's waiting, e.g. that bounded waits
 * (distributed.timeout) did not slow the fast path.
 *
 *   mpirun -np 4 build/bench/tree_time [VALUES [ROUNDS [REPEATS]]]     (default 2000 2000 5)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/tree.h"

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int exchange(poet_tree *tree, int values) {
    int64_t *up = poet_tree_up(tree, 0);
    memset(up, 0, sizeof(int64_t) * (POET_TREE_HEADER + (size_t)values));
    up[POET_TREE_HEADER] = 1;
    if (poet_tree_reduce_start(tree, 0) != POET_OK || poet_tree_reduce_wait(tree, 0) != POET_OK)
        return 1;
    if (poet_tree_is_root(tree))
        memset(poet_tree_down_header(tree, 0), 0, sizeof(int64_t) * POET_TREE_HEADER);
    if (poet_tree_bcast_start(tree, 0) != POET_OK || poet_tree_bcast_wait(tree, 0) != POET_OK)
        return 1;
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int values = argc > 1 ? atoi(argv[1]) : 2000;
    int rounds = argc > 2 ? atoi(argv[2]) : 2000;
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    int rank, size;
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const struct {
        const char *name;
        poet_tree_kind kind;
        int arity;
    } shapes[] = {
        {"binary", POET_TREE_BINARY, 2}, {"kary3", POET_TREE_KARY, 3}, {"mpi", POET_TREE_MPI, 2}};
    double *times = calloc((size_t)repeats, sizeof(double));
    int failed = 0;
    if (rank == 0)
        printf("tree_time: %d ranks, %d values, %d rounds x %d repeats\n", size, values, rounds,
               repeats);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && !failed; s++) {
        poet_tree *tree = NULL;
        if (poet_tree_create(comm, shapes[s].kind, shapes[s].arity, (size_t)values, 1, &tree) !=
            POET_OK) {
            fprintf(stderr, "tree_time: %s\n", poet_error_message());
            failed = 1;
            break;
        }
        for (int i = 0; i < rounds / 10 && !failed; i++) /* warm up */
            failed |= exchange(tree, values);
        for (int r = 0; r < repeats && !failed; r++) {
            MPI_Barrier(comm);
            double t0 = MPI_Wtime();
            for (int i = 0; i < rounds && !failed; i++)
                failed |= exchange(tree, values);
            times[r] = (MPI_Wtime() - t0) / rounds * 1e6;
        }
        qsort(times, (size_t)repeats, sizeof(double), compare_double);
        if (rank == 0 && !failed)
            printf("%-7s %8.1f us per exchange (median; min %.1f, max %.1f)\n", shapes[s].name,
                   times[repeats / 2], times[0], times[repeats - 1]);
        poet_tree_destroy(tree);
    }
    if (failed)
        fprintf(stderr, "tree_time: rank %d: %s\n", rank, poet_error_message());
    free(times);
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return failed;
}
