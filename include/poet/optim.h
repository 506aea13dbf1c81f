/* optim.h — SGD with momentum (PyTorch semantics) and learning-rate schedules.
 *
 * One fused pass over a rank's contiguous parameter, gradient and velocity buffers:
 *   g ← g + wd·w;  v ← μ·v + g;  d = nesterov ? g + μ·v : v;  w ← w − lr·d
 * With v starting at zero this equals PyTorch's torch.optim.SGD (dampening 0), whose first step
 * sets v = g.
 */
#ifndef POET_OPTIM_H
#define POET_OPTIM_H

#include <stddef.h>

#include "poet/config.h"

typedef struct {
    double lr, momentum, weight_decay;
    int nesterov;
} poet_sgd_step_params;

void poet_sgd_step(float *params, const float *grads, float *velocity, size_t n,
                   const poet_sgd_step_params *p);

/* Learning rate at 0-based iteration t of a run of `total` iterations:
 * constant: lr; step: lr·gamma^floor(t/step_size); cosine: min_lr + (lr−min_lr)(1+cos(π
 * t/total))/2. */
double poet_lr_at(const poet_config *cfg, long iteration, long total);

#endif
