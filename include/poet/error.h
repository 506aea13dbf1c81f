/* error.h — status codes, the one error message, and the checking macros.
 *
 * Every fallible poet function returns a poet_status. The first failure records a one-line message
 * (file/key, what was expected, what was found) with poet_error_set(); callers propagate the status
 * upwards and only the CLI decides to print the message and exit. One checking macro per library
 * (oneDNN, MPI, HDF5) turns a library failure into such a message with file:line, the failed
 * expression and the library's own error string.
 *
 * Convention inside functions: a local `poet_status st = POET_OK;`, the POET_* macros jump to a
 * `fail:` label on error, and the label releases what was acquired (HDF5/SCR style).
 */
#ifndef POET_ERROR_H
#define POET_ERROR_H

#include <mpi.h>
#include <stddef.h>

typedef enum {
    POET_OK = 0,
    POET_ERR_USAGE = 2,     /* command line: the CLI exits 2 */
    POET_ERR_CONFIG = 3,    /* bad JSON config */
    POET_ERR_DATA = 4,      /* bad or missing data file */
    POET_ERR_IO = 5,        /* filesystem */
    POET_ERR_NOMEM = 6,     /* allocation */
    POET_ERR_DNNL = 7,      /* oneDNN call failed */
    POET_ERR_MPI = 8,       /* MPI call failed */
    POET_ERR_HDF5 = 9,      /* HDF5 call failed */
    POET_ERR_CHECKPOINT = 10, /* checkpoint missing, corrupt or of another ensemble */
    POET_ERR_NUMERIC = 11,  /* NaN/Inf or fixed-point overflow in logits */
    POET_ERR_REMOTE = 12,   /* another rank failed; it printed the reason */
    POET_ERR_INTERNAL = 13,
    POET_STOPPED = 75       /* not an error: stopped by a signal after checkpointing (EX_TEMPFAIL) */
} poet_status;

/* Records the message for `status` unless one is already recorded (the first failure is the cause;
 * later ones are consequences). Returns `status` so it can be used as `return poet_error_set(...)`. */
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

/* Collective over `comm`: every rank learns whether any rank's `local` status failed. The first
 * failing rank's status and message become every rank's (so all return the same error and rank 0
 * can print the real cause), and the failure is marked agreed and shared. POET_OK when none failed.
 * Call it before any collective step that a rank-local failure could break. */
poet_status poet_error_agree(MPI_Comm comm, poet_status local);

/* Whether every rank holds the same recorded message (it went through poet_error_agree), so one
 * rank printing it is enough. */
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

/* oneDNN: `expr` returns dnnl_status_t. */
#define POET_DNNL(expr)                                                                            \
    do {                                                                                           \
        int dnnl_status_ = (int)(expr);                                                            \
        if (dnnl_status_ != 0)                                                                     \
            POET_FAIL(POET_ERR_DNNL, "%s:%d: oneDNN call %s failed: %s", __FILE__, __LINE__, #expr, \
                      poet_dnnl_status_string(dnnl_status_));                                      \
    } while (0)

/* MPI: `expr` returns an MPI error code (communicators use MPI_ERRORS_RETURN). */
#define POET_MPI(expr)                                                                             \
    do {                                                                                           \
        int mpi_status_ = (expr);                                                                  \
        if (mpi_status_ != 0)                                                                      \
            POET_FAIL(POET_ERR_MPI, "%s:%d: MPI call %s failed: %s", __FILE__, __LINE__, #expr,    \
                      poet_mpi_error_string(mpi_status_));                                         \
    } while (0)

/* The libraries' own error strings (defined in error.c; each library is linked into poet). */
const char *poet_dnnl_status_string(int status);
const char *poet_mpi_error_string(int code);

#endif
