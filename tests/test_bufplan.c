/* test_bufplan.c — the buffer planner (bufplan.h) and what it buys a stack (net.h's census).
 *
 * Planner: buffers alive at the same time never share a byte, at any alignment, for random
 * lifetimes and sizes (zero included); buffers that are never alive together share one place; the
 * checker itself rejects an overlapping placement (so the first check can fail).
 *
 * Stack: a training stack of ResNet-8 members (batch normalisation, residual adds, a projection),
 * with both convolution paths and one or two lanes, keeps its lanes' whole-batch backward buffers
 * in pools a small fraction of their separate sizes: the bound below is what liveness allows in
 * this network (at most a few gradients alive at once against one per layer), so a regression
 * back to one buffer per layer fails here, and net_vs_reference checks that the values are right.
 * Its members keep no batchnorm or add output that only forward reads, and what the batch costs
 * stays below poet_arch_member_bytes, the estimate memplan.c refuses networks by.
 */
#include <string.h>

#include "poet/arch.h"
#include "poet/bufplan.h"
#include "poet/net.h"
#include "poet/rng.h"
#include "testutil.h"

#define MAX_BUFS 64

static void random_plans(void) {
    poet_buf_life bufs[MAX_BUFS];
    size_t offsets[MAX_BUFS];
    const size_t aligns[] = {1, 64, 4096};
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + trial % MAX_BUFS;
        uint64_t c = (uint64_t)trial * 1000;
        size_t total = 0, align = aligns[trial % 3];
        for (int i = 0; i < n; i++) {
            int a = (int)(20 * poet_rng_uniform(5, POET_STREAM_TEST, c++));
            int b = (int)(20 * poet_rng_uniform(5, POET_STREAM_TEST, c++));
            bufs[i].first = a < b ? a : b;
            bufs[i].last = a < b ? b : a;
            bufs[i].bytes = i % 9 == 4 ? 0 : (size_t)(1 + 100000 * poet_rng_uniform(5, 0, c++));
            total += (bufs[i].bytes + align - 1) / align * align;
        }
        size_t arena = poet_bufplan_place(n, bufs, align, offsets);
        TEST_CHECK(poet_bufplan_valid(n, bufs, align, offsets, arena),
                   "trial %d: %d buffers placed with overlaps", trial, n);
        TEST_CHECK(arena <= total, "trial %d: arena %zu > %zu, the buffers one after another",
                   trial, arena, total);
        /* No arena is smaller than the bytes alive at the busiest step. */
        for (int step = 0; step < 20; step++) {
            size_t alive = 0;
            for (int i = 0; i < n; i++)
                if (bufs[i].first <= step && step <= bufs[i].last)
                    alive += bufs[i].bytes;
            TEST_CHECK(arena >= alive, "trial %d step %d: arena %zu < %zu alive", trial, step,
                       arena, alive);
        }
    }
}

static void fixed_plans(void) {
    /* One after another in time: all at offset 0, the arena the largest. */
    poet_buf_life seq[] = {{100, 0, 0}, {300, 1, 1}, {200, 2, 2}};
    size_t off[3];
    size_t arena = poet_bufplan_place(3, seq, 1, off);
    TEST_CHECK(arena == 300 && off[0] == 0 && off[1] == 0 && off[2] == 0,
               "disjoint lives: arena %zu, offsets %zu %zu %zu", arena, off[0], off[1], off[2]);
    /* A chain where each buffer overlaps its neighbours only (a backward pass's gradients). */
    poet_buf_life chain[] = {{64, 0, 1}, {64, 1, 2}, {64, 2, 3}, {64, 3, 4}};
    size_t off4[4];
    arena = poet_bufplan_place(4, chain, 64, off4);
    TEST_CHECK(arena == 128, "neighbour lives: arena %zu, expected two buffers' 128", arena);
    TEST_CHECK(poet_bufplan_valid(4, chain, 64, off4, arena), "neighbour lives overlap");
    /* The checker catches two buffers alive together at the same place. */
    size_t bad[] = {0, 0, 128, 0};
    TEST_CHECK(!poet_bufplan_valid(4, chain, 64, bad, 256), "overlap not detected");
    TEST_CHECK(poet_bufplan_place(0, NULL, 64, NULL) == 0, "no buffers, an arena");
}

static void stack_pools(poet_convolution conv, int threads) {
    poet_arch arch;
    poet_arch_plan plan;
    TEST_CHECK(poet_arch_builtin("resnet-8", 10, &arch), "resnet-8 is not built in");
    poet_shape input = {3, 16, 16};
    TEST_OK(poet_arch_plan_build(&arch, input, 10, "resnet-8", &plan));
    int G = 2, B = 8;
    float *params = xmalloc((size_t)G * plan.param_count * sizeof(float));
    float *grads = xmalloc((size_t)G * plan.param_count * sizeof(float));
    float *state = xmalloc(((size_t)G * plan.state_count + 1) * sizeof(float));
    poet_stack_options opt = {.convolution = conv, .threads = threads, .state = state};
    poet_stack *s = NULL;
    TEST_OK(poet_stack_create(&plan, G, B, 1, &opt, params, grads, &s));
    poet_stack_census c;
    poet_stack_census_get(s, &c);
    /* ResNet-8's 22 layers each leave a whole-batch gradient; its backward never holds more than
     * a block's few at once. */
    TEST_CHECK(c.pool > 0 && c.pool * 4 <= c.backward_unpooled,
               "%s, %d lane(s): lane pools %.0f bytes against %.0f unpooled: expected <= 1/4",
               conv == POET_CONV_GEMM ? "gemm" : "onednn", threads, c.pool, c.backward_unpooled);
    /* Members keep only what backward reads: not batchnorm's and add's outputs before a relu,
     * which is what poet_arch_member_bytes counts (its kept values: its training bytes for B rows
     * less its evaluation bytes for B rows). Its activation terms (its bytes for B rows less those
     * for none) stay above what the members and lanes hold for the batch, as memplan.c needs. */
    double kept = poet_arch_member_bytes(&plan, B, 1, 0) - poet_arch_member_bytes(&plan, 0, 1, B);
    double rows = poet_arch_member_bytes(&plan, B, 1, 0) - poet_arch_member_bytes(&plan, 0, 1, 0);
    double held = c.dst + c.src_copy + c.workspace + c.pool;
    TEST_CHECK(c.dst / G <= kept, "member outputs %.0f bytes each, more than the %.0f kept",
               c.dst / G, kept);
    TEST_CHECK(held / G <= rows,
               "outputs, copies, workspaces and pools %.0f bytes per member, above the "
               "estimate's %.0f for the batch",
               held / G, rows);
    poet_stack_destroy(s);
    free(params);
    free(grads);
    free(state);
}

int main(void) {
    random_plans();
    fixed_plans();
    for (int threads = 1; threads <= 2; threads++) {
        stack_pools(POET_CONV_GEMM, threads);
        stack_pools(POET_CONV_ONEDNN, threads);
    }
    return test_finish("bufplan");
}
