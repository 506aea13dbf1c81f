/* prefetch.h — a thread that builds the next batches while the current iteration computes.
 *
 * The thread fills iterations first, first + 1, ..., end - 1 in order through the batcher (which
 * it then owns), into `depth` slots of its own; the training thread takes iteration t's batch by
 * swapping buffers with the slot that holds it, so no batch is copied and the batch is exactly
 * the one poet_batcher_fill would build: runs with and without prefetch are bitwise the same. The
 * thread blocks every signal (SIGTERM/SIGUSR1 stay the training thread's, and oneDNN's threads see
 * none either).
 */
#ifndef POET_PREFETCH_H
#define POET_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "poet/data.h"
#include "poet/error.h"

typedef struct poet_prefetch poet_prefetch;

/* Starts the thread for iterations [first, end) with `depth` (>= 1) batches ahead; `images` is
 * the floats of one batch (B·C·H·W), `batch` its B. */
poet_status poet_prefetch_start(poet_batcher *batcher, long first, long end, int depth,
                                size_t images, int batch, poet_prefetch **out);

/* Waits for iteration `it`'s batch (the next one due) and swaps it into *images / *labels (buffers
 * of the sizes given at start, which the thread takes over). Adds the time waited to *waited.
 * Fails with the batcher's error, or POET_ERR_INTERNAL when `it` is not the next iteration. */
poet_status poet_prefetch_take(poet_prefetch *p, long it, float **images, uint8_t **labels,
                               double *waited);

/* Stops and joins the thread and frees the slots (NULL is fine). */
void poet_prefetch_stop(poet_prefetch *p);

#endif
