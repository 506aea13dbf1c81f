/* error.c — the one recorded error message (MPI's side: mpierror.c; oneDNN's: dnnlerror.c). */
#include "poet/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char recorded_message[POET_ERROR_MAX];
static int message_recorded;
static int failure_agreed;
static int message_shared;

void poet_error_mark_agreed(void) { failure_agreed = 1; }
int poet_error_is_agreed(void) { return failure_agreed; }
int poet_error_is_shared(void) { return message_shared; }

void poet_error_mark_shared(void) {
    failure_agreed = 1;
    message_shared = 1;
}

poet_status poet_error_set(poet_status status, const char *fmt, ...) {
    if (message_recorded)
        return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(recorded_message, sizeof recorded_message, fmt, ap);
    va_end(ap);
    /* Keep the message on one line: callers print it as a single log line. */
    for (char *c = recorded_message; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    message_recorded = 1;
    return status;
}

const char *poet_error_message(void) { return message_recorded ? recorded_message : ""; }

void poet_error_clear(void) {
    message_recorded = 0;
    failure_agreed = 0;
    message_shared = 0;
    recorded_message[0] = '\0';
}

const char *poet_status_name(poet_status status) {
    switch (status) {
    case POET_OK:
        return "ok";
    case POET_ERR_USAGE:
        return "usage error";
    case POET_ERR_CONFIG:
        return "config error";
    case POET_ERR_DATA:
        return "data error";
    case POET_ERR_IO:
        return "I/O error";
    case POET_ERR_NOMEM:
        return "out of memory";
    case POET_ERR_DNNL:
        return "oneDNN error";
    case POET_ERR_MPI:
        return "MPI error";
    case POET_ERR_HDF5:
        return "HDF5 error";
    case POET_ERR_CHECKPOINT:
        return "checkpoint error";
    case POET_ERR_NUMERIC:
        return "numerical error";
    case POET_ERR_REMOTE:
        return "error on another rank";
    case POET_ERR_INTERNAL:
        return "internal error";
    case POET_STOPPED:
        return "stopped";
    }
    return "unknown error";
}
