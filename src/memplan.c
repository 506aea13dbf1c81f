/* memplan.c — per-rank memory estimate and its limit (contract in memplan.h). */
#define _DEFAULT_SOURCE /* sysconf(_SC_PHYS_PAGES) */
#include "poet/memplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poet/ensemble.h"
#include "poet/group.h"
#include "poet/mpierror.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* Ranks sharing this rank's node; 1 when MPI cannot tell. */
static int ranks_on_node(MPI_Comm comm) {
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    return local > 0 ? local : 1;
}

poet_status poet_memplan_check(MPI_Comm comm, const poet_config *cfg, poet_shape input, int rows,
                               int slots, int eval_rows, double data_bytes, poet_memplan *plan) {
    poet_status st = POET_OK;
    int rank = 0, ranks = 1, members = 0;
    int *owner = NULL;
    poet_arch_plan *arch_plans = NULL;
    memset(plan, 0, sizeof *plan);
    plan->local_ranks = ranks_on_node(comm); /* first: collective, whatever fails below */
    POET_MPI(MPI_Comm_rank(comm, &rank));
    POET_MPI(MPI_Comm_size(comm, &ranks));
    POET_ALLOC(owner, POET_MAX_MEMBERS);
    POET_ALLOC(arch_plans, cfg->n_archs);
    /* With more ranks than members (group.h) a rank holds its member group's members. */
    poet_layout layout;
    POET_TRY(poet_layout_resolve(cfg, ranks, rank, &layout));
    POET_TRY(poet_placement(cfg, layout.groups, owner));
    for (int a = 0; a < cfg->n_archs; a++) {
        st = poet_arch_plan_build(&cfg->archs[a], input, cfg->classes, "model.architecture",
                                  &arch_plans[a]);
        if (st != POET_OK) { /* the first place a network meets the data's shape: say where */
            char cause[512];
            snprintf(cause, sizeof cause, "%s", poet_error_message());
            poet_error_clear();
            POET_FAIL(st, "%s: %s (the network's input is %dx%dx%d, the training images %s)",
                      cfg->source, cause, input.c, input.h, input.w, cfg->train_images);
        }
    }
    double workspace = 0; /* shared by the rank's members: the largest one counts */
    for (int j = 0; j < cfg->members; j++)
        if (owner[j] == layout.group) {
            const poet_arch_plan *p = &arch_plans[cfg->member_arch[j]];
            double w = poet_arch_workspace_bytes(p, rows > eval_rows ? rows : eval_rows);
            plan->members_bytes += poet_arch_member_bytes(p, rows, slots, eval_rows);
            workspace = w > workspace ? w : workspace;
            members++;
        }
    plan->members_bytes += workspace;
    plan->data_bytes = data_bytes;
    plan->total_bytes = plan->members_bytes + plan->data_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double node = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    plan->limit_bytes =
        cfg->memory_limit_gib > 0 ? cfg->memory_limit_gib * GIB : node / plan->local_ranks;
    if (plan->limit_bytes > 0 && plan->total_bytes > plan->limit_bytes) {
        char limit[160];
        if (cfg->memory_limit_gib > 0)
            snprintf(limit, sizeof limit, "the %.3g GiB distributed.memory_limit_gib allows",
                     cfg->memory_limit_gib);
        else
            snprintf(limit, sizeof limit,
                     "its share of the node: %.1f GiB of memory over %d rank(s)", node / GIB,
                     plan->local_ranks);
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: distributed.memory_limit_gib: rank %d needs an estimated %.1f GiB (%d "
                  "member(s): %.1f GiB for parameters, gradients, momentum, activations and "
                  "workspace; data %.1f GiB) but has %.1f GiB, %s; use a smaller network or "
                  "batch, more ranks or nodes, or raise distributed.memory_limit_gib",
                  cfg->source, rank, plan->total_bytes / GIB, members, plan->members_bytes / GIB,
                  plan->data_bytes / GIB, plan->limit_bytes / GIB, limit);
    }
fail:
    free(owner);
    free(arch_plans);
    return st;
}
