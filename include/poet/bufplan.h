/* bufplan.h — places buffers whose lifetimes are known in one arena, so that two buffers alive at
 * the same time never share a byte while buffers alive at different times reuse the same memory.
 *
 * A lifetime is a closed range of steps [first, last] (for the stack's backward: the layer indices
 * at which the buffer is written or read, net.c/netmem.c). Two buffers are alive together exactly
 * when their ranges intersect. Placement is first fit, largest buffer first, and depends on nothing
 * but its inputs (bitwise-reproducible runs need the same layout on every rank and every run).
 */
#ifndef POET_BUFPLAN_H
#define POET_BUFPLAN_H

#include <stddef.h>

typedef struct {
    size_t bytes;
    int first, last; /* steps, first <= last */
} poet_buf_life;

/* Offsets (multiples of `align`, a power of two) of the n buffers in one arena, into offsets[n];
 * returns the arena's size in bytes (0 when n == 0). */
size_t poet_bufplan_place(int n, const poet_buf_life *bufs, size_t align, size_t *offsets);

/* 1 when every buffer lies inside `arena` bytes at an `align`ed offset and no two buffers alive
 * together overlap; else 0. The planner's contract, for tests. */
int poet_bufplan_valid(int n, const poet_buf_life *bufs, size_t align, const size_t *offsets,
                       size_t arena);

#endif
