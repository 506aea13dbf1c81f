/* test_tree.c — the reduce tree on its own: every rank contributes known values through every tree
 * shape; the root must see the exact sums, every rank the root's gradient and decision, and the
 * layout must match docs/design.md. Runs under mpiexec with any rank count. */
#include <mpi.h>
#include <string.h>

#include "poet/tree.h"
#include "testutil.h"

enum { VALUES = 37, SLOTS = 3 };

static int64_t contribution(int rank, int slot, size_t i) {
    return (int64_t)(rank + 1) * 1000003 + (int64_t)slot * 7919 + (int64_t)i * (rank % 3 - 1);
}

static void check_layout(void) {
    int children[8];
    TEST_CHECK(poet_tree_parent_of(0, 2) == -1, "root has no parent");
    TEST_CHECK(poet_tree_parent_of(4, 2) == 1, "binary parent of 4 is 1");
    TEST_CHECK(poet_tree_parent_of(6, 3) == 1, "3-ary parent of 6 is 1");
    int n = poet_tree_children_of(1, 7, 2, children, 8);
    TEST_CHECK(n == 2 && children[0] == 3 && children[1] == 4, "binary children of 1 in 7 ranks");
    n = poet_tree_children_of(1, 5, 3, children, 8);
    TEST_CHECK(n == 1 && children[0] == 4, "3-ary children of 1 in 5 ranks");
}

/* Runs `rounds` exchanges with all slots in flight at once, as the overlap mode does. */
static void exercise(MPI_Comm comm, poet_tree_kind kind, int arity, int rank, int size) {
    poet_tree *tree = NULL;
    TEST_OK(poet_tree_create(comm, kind, arity, VALUES, SLOTS, &tree));
    for (int round = 0; round < 3; round++) {
        for (int s = 0; s < SLOTS; s++) {
            int64_t *up = poet_tree_up(tree, s);
            up[POET_HDR_STOP] = rank == size - 1 && round == 1;
            up[POET_HDR_ERROR] = 0;
            up[POET_HDR_RESERVED0] = up[POET_HDR_RESERVED1] = 0;
            for (size_t i = 0; i < VALUES; i++)
                up[POET_TREE_HEADER + i] = contribution(rank, s, i) + round;
            TEST_OK(poet_tree_reduce_start(tree, s));
            TEST_OK(poet_tree_progress(tree));
        }
        for (int s = 0; s < SLOTS; s++) {
            TEST_OK(poet_tree_reduce_wait(tree, s));
            if (rank == 0) {
                const int64_t *total = poet_tree_up(tree, s);
                long bad = 0;
                for (size_t i = 0; i < VALUES; i++) {
                    int64_t want = 0;
                    for (int r = 0; r < size; r++)
                        want += contribution(r, s, i) + round;
                    bad += total[POET_TREE_HEADER + i] != want;
                }
                TEST_CHECK(bad == 0, "kind %d arity %d round %d slot %d: %ld wrong sums", kind,
                           arity, round, s, bad);
                TEST_CHECK(total[POET_HDR_STOP] == (round == 1), "stop count %lld",
                           (long long)total[POET_HDR_STOP]);
                int64_t *hdr = poet_tree_down_header(tree, s);
                float *g = poet_tree_down_values(tree, s);
                hdr[POET_HDR_STOP] = total[POET_HDR_STOP];
                hdr[POET_HDR_ERROR] = 0;
                for (size_t i = 0; i < VALUES; i++)
                    g[i] = (float)(i * 0.5 + s + round);
            }
            TEST_OK(poet_tree_bcast_start(tree, s));
        }
        for (int s = 0; s < SLOTS; s++) {
            TEST_OK(poet_tree_bcast_wait(tree, s));
            const float *g = poet_tree_down_values(tree, s);
            long bad = 0;
            for (size_t i = 0; i < VALUES; i++)
                bad += g[i] != (float)(i * 0.5 + s + round);
            TEST_CHECK(bad == 0, "rank %d kind %d slot %d: %ld wrong gradient values", rank, kind,
                       s, bad);
            TEST_CHECK(poet_tree_down_header(tree, s)[POET_HDR_STOP] == (round == 1),
                       "rank %d: stop decision", rank);
        }
    }
    /* Every non-root rank sends its sums up once per exchange and receives the gradient once. */
    if (rank != 0 && kind != POET_TREE_MPI) {
        uint64_t up = (POET_TREE_HEADER + VALUES) * 8, down = POET_TREE_HEADER * 8 + VALUES * 4;
        int children[64];
        int n =
            poet_tree_children_of(rank, size, kind == POET_TREE_BINARY ? 2 : arity, children, 64);
        uint64_t want_sent = 3 * SLOTS * (up + n * down), want_recv = 3 * SLOTS * (down + n * up);
        TEST_CHECK(poet_tree_bytes_sent(tree) == want_sent, "rank %d sent %llu, expected %llu",
                   rank, (unsigned long long)poet_tree_bytes_sent(tree),
                   (unsigned long long)want_sent);
        TEST_CHECK(poet_tree_bytes_received(tree) == want_recv,
                   "rank %d received %llu, expected %llu", rank,
                   (unsigned long long)poet_tree_bytes_received(tree),
                   (unsigned long long)want_recv);
    }
    poet_tree_destroy(tree);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm comm;
    int rank, size;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    check_layout();
    exercise(comm, POET_TREE_BINARY, 2, rank, size);
    exercise(comm, POET_TREE_KARY, 3, rank, size);
    exercise(comm, POET_TREE_KARY, 4, rank, size);
    exercise(comm, POET_TREE_MPI, 2, rank, size);
    int mine = test_failures, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_SUM, comm);
    test_failures = all;
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return rank == 0 ? test_finish("tree") : (all != 0);
}
