/* test_net_signals.c — a stack keeps computing correctly while signals with a handler keep
 * arriving (what SIGTERM/SIGUSR1 from Slurm, or a sampling profiler, do to a training rank).
 *
 * oneDNN 2.6's JIT sgemm kernels move rsp into the heap, so a handler that runs on a thread inside
 * such a kernel writes its signal frame over heap memory and glibc later aborts ("corrupted size
 * vs. prev_size"). net.c blocks signals on its computing threads; this test sends thousands of
 * thread-directed signals at the computing thread during 60 forward/backward steps on 2 threads
 * and checks that the process survives, the handler ran (the signals were not lost: they arrive
 * once the members are done), and the results are the same as without signals, bit for bit.
 * Without the blocking it aborted within a few steps here.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "poet/arch.h"
#include "poet/net.h"
#include "poet/rng.h"
#include "testutil.h"

enum { G = 4, B = 200, K = 10, STEPS = 60 };

static atomic_long handled;
static atomic_int sending;
static pthread_t target;

static void on_signal(int sig) {
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

/* Signals the computing thread every ~20 µs until told to stop. */
static void *sender(void *arg) {
    (void)arg;
    struct timespec pause = {0, 20000};
    while (atomic_load(&sending)) {
        pthread_kill(target, SIGUSR1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* STEPS forward + backward steps; the last step's logits and gradients into the outputs. */
static void run_steps(const poet_arch_plan *plan, const float *params, const float *images,
                      const float *dlogits, float *logits, float *grads) {
    poet_stack *stack = NULL;
    const poet_stack_options two_threads = {
        .convolution = POET_CONV_GEMM, .threads = 2, .state = NULL};
    TEST_OK(poet_stack_create(plan, G, B, 1, &two_threads, (float *)params, grads, &stack));
    for (int i = 0; i < STEPS; i++) {
        TEST_OK(poet_stack_forward(stack, images, logits));
        TEST_OK(poet_stack_backward(stack, dlogits, 0));
    }
    poet_stack_destroy(stack);
}

int main(void) {
    poet_arch arch;
    memset(&arch, 0, sizeof arch);
    poet_layer_spec layers[] = {
        conv(20, 3, 2, 0), relu(), conv(40, 3, 2, 0), relu(), global_pool(POET_LAYER_AVG_POOL),
        linear(20),        relu(), linear(K)};
    arch.n_layers = (int)(sizeof layers / sizeof *layers);
    memcpy(arch.layers, layers, sizeof layers);
    poet_arch_plan plan;
    TEST_OK(poet_arch_plan_build(&arch, (poet_shape){1, 28, 28}, K, "test", &plan));

    size_t n_params = (size_t)G * plan.param_count;
    float *params = xmalloc(n_params * sizeof *params), *member = xmalloc(plan.param_count * 4);
    float *images = xmalloc((size_t)B * 784 * sizeof(float)), *dlogits = xmalloc(B * K * 4);
    float *quiet_logits = xmalloc((size_t)B * G * K * 4), *loud_logits = xmalloc(B * G * K * 4);
    float *quiet_grads = xmalloc(n_params * 4), *loud_grads = xmalloc(n_params * 4);
    for (int g = 0; g < G; g++) {
        poet_arch_init_member(&plan, 99, g, member);
        poet_stack_member_set(&plan, G, params, g, member);
    }
    for (size_t i = 0; i < (size_t)B * 784; i++)
        images[i] = (float)(poet_rng_uniform(5, 1, i) * 3.0 - 0.5);
    for (size_t i = 0; i < (size_t)B * K; i++)
        dlogits[i] = (float)((poet_rng_uniform(5, 2, i) - 0.5) / (G * B));

    run_steps(&plan, params, images, dlogits, quiet_logits, quiet_grads);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    target = pthread_self();
    atomic_store(&sending, 1);
    pthread_t thread;
    TEST_CHECK(pthread_create(&thread, NULL, sender, NULL) == 0, "cannot start the sender");
    run_steps(&plan, params, images, dlogits, loud_logits, loud_grads);
    atomic_store(&sending, 0);
    pthread_join(thread, NULL);

    long n = atomic_load(&handled);
    printf("%ld signals handled during %d steps on 2 threads\n", n, STEPS);
    TEST_CHECK(n > 0, "no signal reached the handler: blocked signals must still arrive");
    TEST_CHECK(memcmp(quiet_logits, loud_logits, (size_t)B * G * K * 4) == 0,
               "logits changed when signals arrived");
    TEST_CHECK(memcmp(quiet_grads, loud_grads, n_params * 4) == 0,
               "gradients changed when signals arrived");
    return test_finish("net_signals");
}
