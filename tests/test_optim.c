/* test_optim.c — poet_sgd_step against torch.optim.SGD's algorithm written out by hand, and the
 * learning-rate schedules at chosen iterations. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "poet/optim.h"
#include "poet/rng.h"
#include "testutil.h"

#define N 37 /* odd: exercises the vectorised loop's scalar tail */
#define STEPS 6

/* torch.optim.SGD.step for one float tensor, as documented (dampening 0): the momentum buffer is
 * created on the first step as a copy of d_p, later buf = μ·buf + d_p; every operation in float
 * like PyTorch's CPU kernels for float32 tensors. */
typedef struct {
    float p[N], buf[N];
    int has_buf;
} torch_sgd;

static void torch_step(torch_sgd *s, const float *grad, double lr, double mu, double wd,
                       int nesterov) {
    for (int i = 0; i < N; i++) {
        float d_p = grad[i];
        if (wd != 0)
            d_p = d_p + (float)wd * s->p[i];
        if (mu != 0) {
            if (!s->has_buf)
                s->buf[i] = d_p;
            else
                s->buf[i] = (float)mu * s->buf[i] + d_p;
            d_p = nesterov ? d_p + (float)mu * s->buf[i] : s->buf[i];
        }
        s->p[i] = s->p[i] + (float)(-lr) * d_p;
    }
    s->has_buf = 1;
}

static void check_sgd(double mu, double wd, int nesterov) {
    torch_sgd torch;
    float params[N], velocity[N], grad[N];
    for (int i = 0; i < N; i++)
        torch.p[i] = params[i] = (float)(poet_rng_uniform(1, POET_STREAM_TEST, i) * 2 - 1);
    memset(velocity, 0, sizeof velocity);
    torch.has_buf = 0;
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++)
            grad[i] = (float)(poet_rng_uniform(2, POET_STREAM_TEST, (uint64_t)t * N + i) - 0.5);
        double lr = 0.1 / (1 + t); /* a schedule changes lr between steps */
        poet_sgd_step_params sp = {lr, mu, wd, nesterov};
        poet_sgd_step(params, grad, velocity, N, &sp);
        torch_step(&torch, grad, lr, mu, wd, nesterov);
    }
    double want[N];
    for (int i = 0; i < N; i++)
        want[i] = torch.p[i];
    char what[96];
    snprintf(what, sizeof what, "sgd mu=%g wd=%g nesterov=%d, %d steps", mu, wd, nesterov, STEPS);
    test_compare_f32(what, params, want, N, 1e-7, 0);
    /* The step really moved the parameters (the test could not pass by doing nothing). */
    float start = (float)(poet_rng_uniform(1, POET_STREAM_TEST, 0) * 2 - 1);
    TEST_CHECK(fabsf(params[0] - start) > 1e-4f, "%s: parameters did not move", what);
}

static void check_lr(const char *what, const poet_config *cfg, long t, long total, double want) {
    double got = poet_lr_at(cfg, t, total);
    char name[96];
    snprintf(name, sizeof name, "lr %s t=%ld", what, t);
    test_compare_f64(name, &got, &want, 1, 1e-15, 1e-12);
}

static void test_schedules(void) {
    poet_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 0.1;
    cfg.schedule = POET_LR_CONSTANT;
    check_lr("constant", &cfg, 0, 100, 0.1);
    check_lr("constant", &cfg, 99, 100, 0.1);

    cfg.schedule = POET_LR_STEP;
    cfg.step_size = 30;
    cfg.gamma = 0.5;
    check_lr("step", &cfg, 0, 100, 0.1);
    check_lr("step", &cfg, 29, 100, 0.1);
    check_lr("step", &cfg, 30, 100, 0.05);
    check_lr("step", &cfg, 65, 100, 0.025);
    check_lr("step", &cfg, 90, 100, 0.0125);

    cfg.schedule = POET_LR_COSINE;
    cfg.min_lr = 0.001;
    check_lr("cosine", &cfg, 0, 100, 0.1);
    check_lr("cosine", &cfg, 50, 100, 0.0505);
    check_lr("cosine", &cfg, 25, 100, 0.001 + 0.099 * (1 + sqrt(0.5)) / 2);
    check_lr("cosine", &cfg, 100, 100, 0.001);
    check_lr("cosine (past the end)", &cfg, 150, 100, 0.001);
}

int main(void) {
    check_sgd(0.9, 5e-4, 0);
    check_sgd(0.9, 1e-3, 1);
    check_sgd(0.5, 0, 1);
    check_sgd(0, 0, 0);
    check_sgd(0, 1e-2, 0);
    test_schedules();
    return test_finish("optim");
}
