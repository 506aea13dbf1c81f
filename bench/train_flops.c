/* train_flops.c — floating-point work of one training iteration, computed from the layer shapes of
 * a config's members (the same poet_arch_plan the trainer builds), so bench/run.sh can turn
 * member-images/s into GFLOP/s.
 *
 * usage: train_flops CONFIG [C H W]     input shape defaults to 1 28 28 (Fashion-MNIST)
 *
 * Counted: multiply-adds of the weight layers, 2 flops each (the work a GEMM peak is comparable
 * to). For a weight layer with m multiply-adds per image (conv: out_c·out_h·out_w·in_c·k_h·k_w;
 * linear: out·in) one training step does
 *   forward        2m  (y = W x)
 *   weight grad    2m  (dW = dy xᵀ)
 *   input grad     2m  (dx = Wᵀ dy), except the first weight layer: nothing upstream needs it
 * so per image and member: train = 6·Σm − 2·m_first. Bias, relu, pooling and the loss (a few
 * element-wise passes, under 1% here) are left out and listed separately.
 * Prints each layer, then the machine-readable line
 *   train_flops_per_member_image <average over the members>
 */
#include <stdio.h>
#include <stdlib.h>

#include "poet/arch.h"
#include "poet/config.h"

/* Multiply-adds of one layer per image; 0 for layers without weights. */
static double layer_macs(const poet_layer_plan *lp) {
    double out = (double)lp->out.c * lp->out.h * lp->out.w;
    if (lp->kind == POET_LAYER_CONV)
        return out * lp->in.c * lp->kernel_h * lp->kernel_w;
    if (lp->kind == POET_LAYER_LINEAR)
        return out * lp->in.c * lp->in.h * lp->in.w;
    return 0;
}

/* Training flops per image of one architecture (formula above); `show` prints its layers. */
static double train_flops(const poet_arch_plan *plan, int show, double *forward,
                          double *elementwise) {
    double total = 0;
    int first = 1;
    *forward = *elementwise = 0;
    for (int i = 0; i < plan->n_layers; i++) {
        const poet_layer_plan *lp = &plan->layers[i];
        double m = layer_macs(lp);
        double out = (double)lp->out.c * lp->out.h * lp->out.w;
        if (m > 0) {
            total += (first ? 4 : 6) * m;
            *forward += 2 * m;
            *elementwise += 2 * out; /* bias forward and its gradient */
            first = 0;
        } else {
            *elementwise += 2 * (double)lp->in.c * lp->in.h * lp->in.w; /* forward and backward */
        }
        if (show)
            printf("  layer %d %-8s %dx%dx%d -> %dx%dx%d: %.0f multiply-adds\n", i,
                   poet_layer_kind_name(lp->kind), lp->in.c, lp->in.h, lp->in.w, lp->out.c,
                   lp->out.h, lp->out.w, m);
    }
    return total;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 5) {
        fprintf(stderr, "usage: train_flops CONFIG [C H W]\n");
        return 2;
    }
    poet_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return 6;
    poet_shape input = {1, 28, 28};
    if (argc == 5)
        input = (poet_shape){atoi(argv[2]), atoi(argv[3]), atoi(argv[4])};
    poet_status st = poet_config_load(argv[1], cfg);
    double sum = 0;
    for (int j = 0; st == POET_OK && j < cfg->members; j++) {
        int a = cfg->member_arch[j];
        int show = j == 0 || a != cfg->member_arch[j - 1];
        poet_arch_plan plan;
        double fwd, elem;
        st = poet_arch_plan_build(&cfg->archs[a], input, cfg->classes, "model.architecture", &plan);
        if (st != POET_OK)
            break;
        if (show)
            printf("members from %d, architecture %d:\n", j, a);
        double t = train_flops(&plan, show, &fwd, &elem);
        if (show)
            printf("  per image: forward %.0f, training %.0f flops (+ %.0f element-wise)\n", fwd, t,
                   elem);
        sum += t;
    }
    if (st != POET_OK)
        fprintf(stderr, "train_flops: %s\n", poet_error_message());
    else
        printf("train_flops_per_member_image %.0f\n", sum / cfg->members);
    free(cfg);
    return st;
}
