/* optim.c — SGD with momentum (PyTorch semantics) and learning-rate schedules.
 *
 * The step is one pass over flat float buffers with no branches inside the loop, so the compiler
 * vectorises it; the arithmetic is done in float like PyTorch's CPU kernels for float tensors.
 */
#include "poet/optim.h"

#include <math.h>

/* M_PI is POSIX, not C11. */
static const double pi = 3.14159265358979323846;

/* One loop per variant keeps the nesterov test out of the inner loop. `restrict`: the three
 * buffers never overlap, which is what lets the compiler vectorise. */
void poet_sgd_step(float *restrict params, const float *restrict grads, float *restrict velocity,
                   size_t n, const poet_sgd_step_params *p) {
    const float lr = (float)p->lr, mu = (float)p->momentum, wd = (float)p->weight_decay;
    if (p->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] + wd * params[i];
            float v = mu * velocity[i] + g;
            velocity[i] = v;
            params[i] -= lr * (g + mu * v);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float g = grads[i] + wd * params[i];
            float v = mu * velocity[i] + g;
            velocity[i] = v;
            params[i] -= lr * v;
        }
    }
}

double poet_lr_at(const poet_config *cfg, long iteration, long total) {
    switch (cfg->schedule) {
    case POET_LR_CONSTANT:
        return cfg->lr;
    case POET_LR_STEP:
        if (cfg->step_size <= 0)
            return cfg->lr;
        return cfg->lr * pow(cfg->gamma, (double)(iteration / cfg->step_size));
    case POET_LR_COSINE: {
        if (total <= 0)
            return cfg->lr;
        /* Past the end (e.g. a run extended after a restart) the rate stays at its floor. */
        double t = iteration < total ? (double)iteration : (double)total;
        return cfg->min_lr + (cfg->lr - cfg->min_lr) * (1 + cos(pi * t / (double)total)) / 2;
    }
    }
    return cfg->lr;
}
