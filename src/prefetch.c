/* prefetch.c — the batch-building thread (prefetch.h): a ring of `depth` slots, one mutex and two
 * condition variables (a slot filled, a slot freed). */
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask, clock_gettime */
#include "poet/prefetch.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    float *images;
    uint8_t *labels;
} slot;

struct poet_prefetch {
    poet_batcher *batcher;
    long next_fill, next_take, end; /* iterations: the thread's next, the trainer's next, the end */
    int depth;
    slot *slots;        /* iteration t lives in slots[t % depth] */
    poet_status status; /* the thread's failure, reported by the next take */
    char message[512];
    int stop, started;
    pthread_mutex_t lock;
    pthread_cond_t filled, freed;
    pthread_t thread;
};

static void *run(void *arg) {
    poet_prefetch *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop && p->next_fill < p->end && p->status == POET_OK) {
        if (p->next_fill - p->next_take >= p->depth) { /* every slot holds a batch not yet taken */
            pthread_cond_wait(&p->freed, &p->lock);
            continue;
        }
        long it = p->next_fill;
        slot *s = &p->slots[it % p->depth];
        pthread_mutex_unlock(&p->lock);
        /* Only this thread touches the batcher and this slot until next_fill moves past it. */
        poet_status st = poet_batcher_fill(p->batcher, it, s->images, s->labels);
        pthread_mutex_lock(&p->lock);
        if (st != POET_OK) {
            p->status = st;
            snprintf(p->message, sizeof p->message, "%s", poet_error_message());
        } else {
            p->next_fill++;
        }
        pthread_cond_broadcast(&p->filled);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

poet_status poet_prefetch_start(poet_batcher *batcher, long first, long end, int depth,
                                size_t images, int batch, poet_prefetch **out) {
    poet_status st = POET_OK;
    poet_prefetch *p = NULL;
    *out = NULL;
    POET_ALLOC(p, 1);
    p->batcher = batcher;
    p->next_fill = p->next_take = first;
    p->end = end;
    p->depth = depth;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->filled, NULL);
    pthread_cond_init(&p->freed, NULL);
    POET_ALLOC(p->slots, depth);
    for (int i = 0; i < depth; i++) {
        POET_ALLOC(p->slots[i].images, images);
        POET_ALLOC(p->slots[i].labels, batch);
    }
    /* The thread inherits this mask: every signal blocked, so SIGTERM/SIGUSR1 reach the training
     * thread's handler and no signal interrupts the batch building. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, run, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        POET_FAIL(POET_ERR_INTERNAL, "cannot start the data prefetch thread: %s", strerror(rc));
    p->started = 1;
    *out = p;
    return POET_OK;
fail:
    poet_prefetch_stop(p);
    return st;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

poet_status poet_prefetch_take(poet_prefetch *p, long it, float **images, uint8_t **labels,
                               double *waited) {
    poet_status st = POET_OK;
    double t0 = now();
    pthread_mutex_lock(&p->lock);
    if (it != p->next_take || it >= p->end) {
        pthread_mutex_unlock(&p->lock);
        return poet_error_set(POET_ERR_INTERNAL,
                              "data prefetch: iteration %ld asked for, %ld is the next of %ld", it,
                              p->next_take, p->end);
    }
    while (p->next_fill <= it && p->status == POET_OK)
        pthread_cond_wait(&p->filled, &p->lock);
    if (p->status != POET_OK) {
        st = poet_error_set(p->status, "%s", p->message);
    } else {
        slot *s = &p->slots[it % p->depth];
        float *fi = s->images;
        uint8_t *fl = s->labels;
        s->images = *images; /* the trainer's previous buffers become this slot's */
        s->labels = *labels;
        *images = fi;
        *labels = fl;
        p->next_take++;
        pthread_cond_broadcast(&p->freed);
    }
    pthread_mutex_unlock(&p->lock);
    if (waited)
        *waited += now() - t0;
    return st;
}

void poet_prefetch_stop(poet_prefetch *p) {
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->stop = 1;
        pthread_cond_broadcast(&p->freed);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    for (int i = 0; p->slots && i < p->depth; i++) {
        free(p->slots[i].images);
        free(p->slots[i].labels);
    }
    free(p->slots);
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->filled);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
