/* error.h — status codes, the one error message, and the checking macros.
 *
 * Every fallible poet function returns a poet_status. The first failure records a one-line message
 * (file/key, what was expected, what was found) with poet_error_set(); callers propagate the status
 * upwards and only the CLI decides to print the message and exit. One checking macro per library
 * turns a library failure into such a message with file:line, the failed expression and the
 * library's own error string: POET_MPI and the agreement between ranks in mpierror.h, POET_DNNL in
 * dnnlerror.h, beside the modules that use each library, so this header needs neither.
 *
 * Convention inside functions: a local `poet_status st = POET_OK;`, the POET_* macros jump to a
 * `fail:` label on error, and the label releases what was acquired (HDF5/SCR style).
 */
#ifndef POET_ERROR_H
#define POET_ERROR_H

#include <stddef.h>

/* The longest recorded message, with its terminating zero. */
#define POET_ERROR_MAX 1024

typedef enum {
    POET_OK = 0,
    POET_ERR_USAGE = 2,       /* command line: the CLI exits 2 */
    POET_ERR_CONFIG = 3,      /* bad JSON config */
    POET_ERR_DATA = 4,        /* bad or missing data file */
    POET_ERR_IO = 5,          /* filesystem */
    POET_ERR_NOMEM = 6,       /* allocation */
    POET_ERR_DNNL = 7,        /* oneDNN call failed */
    POET_ERR_MPI = 8,         /* MPI call failed */
    POET_ERR_HDF5 = 9,        /* HDF5 call failed */
    POET_ERR_CHECKPOINT = 10, /* checkpoint missing, corrupt or of another ensemble */
    POET_ERR_NUMERIC = 11,    /* NaN/Inf or fixed-point overflow in logits */
    POET_ERR_REMOTE = 12,     /* another rank failed; it printed the reason */
    POET_ERR_INTERNAL = 13,
    POET_STOPPED = 75 /* not an error: stopped by a signal after checkpointing (EX_TEMPFAIL) */
} poet_status;

/* Records the message for `status` unless one is already recorded (the first failure is the cause;
 * later ones are consequences). Returns `status` so it can be used as `return poet_error_set(...)`.
 */
poet_status poet_error_set(poet_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The recorded message, or "" when none. */
const char *poet_error_message(void);

/* Forgets the recorded message (tests that provoke several errors in a row). */
void poet_error_clear(void);

/* Whether every rank knows about the recorded failure (it went through an agreement step or the
 * tree's error flag), so all ranks can shut down MPI normally; otherwise the CLI must MPI_Abort. */
void poet_error_mark_agreed(void);
int poet_error_is_agreed(void);

/* Whether every rank holds the same recorded message (it went through poet_error_agree in
 * mpierror.h, which marks it so: shared and agreed), so one rank printing it is enough. */
void poet_error_mark_shared(void);
int poet_error_is_shared(void);

/* Short name of a status, e.g. "config error". */
const char *poet_status_name(poet_status status);

/* Jump to `fail` with `st` set when a poet call fails. */
#define POET_TRY(expr)                                                                             \
    do {                                                                                           \
        poet_status try_status_ = (expr);                                                          \
        if (try_status_ != POET_OK) {                                                              \
            st = try_status_;                                                                      \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Fail with a message from within a function that has `st` and `fail:`. */
#define POET_FAIL(status, ...)                                                                     \
    do {                                                                                           \
        st = poet_error_set((status), __VA_ARGS__);                                                \
        goto fail;                                                                                 \
    } while (0)

/* Allocation that fails through the same path. */
#define POET_ALLOC(ptr, count)                                                                     \
    do {                                                                                           \
        size_t alloc_count_ = (size_t)(count);                                                     \
        (ptr) = calloc(alloc_count_ ? alloc_count_ : 1, sizeof(*(ptr)));                           \
        if (!(ptr))                                                                                \
            POET_FAIL(POET_ERR_NOMEM, "%s:%d: out of memory allocating %zu x %zu bytes", __FILE__, \
                      __LINE__, alloc_count_, sizeof(*(ptr)));                                     \
    } while (0)

#endif
