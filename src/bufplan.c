/* bufplan.c — first-fit placement of buffers with known lifetimes (bufplan.h).
 *
 * Largest first: the big buffers (a layer's whole-batch gradients) settle at low offsets and the
 * small ones fill the gaps between them. For each buffer, the already placed buffers alive at the
 * same time are taken in offset order and the buffer goes into the first gap that holds it. n is
 * a few per layer, so the quadratic work is nothing next to creating a layer's primitives.
 */
#include "poet/bufplan.h"

#include <stdlib.h>

static int alive_together(const poet_buf_life *a, const poet_buf_life *b) {
    return a->first <= b->last && b->first <= a->last;
}

static size_t round_up(size_t bytes, size_t align) { return (bytes + align - 1) / align * align; }

size_t poet_bufplan_place(int n, const poet_buf_life *bufs, size_t align, size_t *offsets) {
    if (n <= 0)
        return 0;
    int *order = malloc((size_t)n * sizeof *order);   /* placement order: largest first */
    int *placed = malloc((size_t)n * sizeof *placed); /* placed and alive together, by offset */
    if (!order || !placed) {
        /* No memory for the plan: every buffer gets its own place, which is always valid. */
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            offsets[i] = at;
            at += round_up(bufs[i].bytes, align);
        }
        free(order);
        free(placed);
        return at;
    }
    for (int i = 0; i < n; i++) { /* insertion sort: stable, so ties keep the callers' order */
        int j = i;
        while (j > 0 && bufs[order[j - 1]].bytes < bufs[i].bytes) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    size_t arena = 0;
    for (int k = 0; k < n; k++) {
        int b = order[k], m = 0;
        for (int p = 0; p < k; p++) {
            int q = order[p];
            if (!alive_together(&bufs[b], &bufs[q]))
                continue;
            int j = m++;
            while (j > 0 && offsets[placed[j - 1]] > offsets[q]) {
                placed[j] = placed[j - 1];
                j--;
            }
            placed[j] = q;
        }
        size_t at = 0, size = round_up(bufs[b].bytes, align);
        for (int j = 0; j < m; j++) {
            int q = placed[j];
            if (offsets[q] >= at + size)
                break; /* the gap before q holds it */
            size_t end = offsets[q] + round_up(bufs[q].bytes, align);
            at = end > at ? end : at;
        }
        offsets[b] = at;
        arena = at + size > arena ? at + size : arena;
    }
    free(order);
    free(placed);
    return arena;
}

int poet_bufplan_valid(int n, const poet_buf_life *bufs, size_t align, const size_t *offsets,
                       size_t arena) {
    for (int i = 0; i < n; i++) {
        if (offsets[i] % align != 0 || offsets[i] + bufs[i].bytes > arena)
            return 0;
        for (int j = 0; j < i; j++)
            if (alive_together(&bufs[i], &bufs[j]) && bufs[i].bytes > 0 && bufs[j].bytes > 0 &&
                offsets[i] < offsets[j] + bufs[j].bytes && offsets[j] < offsets[i] + bufs[i].bytes)
                return 0;
    }
    return 1;
}
