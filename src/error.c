/* error.c — the one recorded error message and the libraries' error strings. */
#include "poet/error.h"

#include <dnnl.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char recorded_message[1024];
static int message_recorded;
static int failure_agreed;
static int message_shared;

void poet_error_mark_agreed(void) { failure_agreed = 1; }
int poet_error_is_agreed(void) { return failure_agreed; }
int poet_error_is_shared(void) { return message_shared; }

/* An MPI_Allreduce(MIN) over "my rank if I failed" is a logical OR that also names the first
 * failing rank, whose status and message are then broadcast. */
poet_status poet_error_agree(MPI_Comm comm, poet_status local) {
    int rank, ranks, first;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &ranks) != MPI_SUCCESS)
        return poet_error_set(POET_ERR_MPI, "cannot query the communicator while agreeing");
    int mine = local != POET_OK ? rank : ranks;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
        return poet_error_set(POET_ERR_MPI, "MPI_Allreduce failed while agreeing on success");
    if (first == ranks)
        return POET_OK;
    char message[sizeof recorded_message];
    int code = (int)local;
    if (rank == first)
        snprintf(message, sizeof message, "%s", poet_error_message());
    if (MPI_Bcast(message, (int)sizeof message, MPI_CHAR, first, comm) != MPI_SUCCESS ||
        MPI_Bcast(&code, 1, MPI_INT, first, comm) != MPI_SUCCESS)
        return poet_error_set(POET_ERR_MPI, "MPI_Bcast failed while agreeing on a failure");
    if (rank != first) {
        poet_error_clear();
        poet_error_set((poet_status)code, "%s", message);
    }
    failure_agreed = 1;
    message_shared = 1;
    return (poet_status)code;
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
    case POET_OK: return "ok";
    case POET_ERR_USAGE: return "usage error";
    case POET_ERR_CONFIG: return "config error";
    case POET_ERR_DATA: return "data error";
    case POET_ERR_IO: return "I/O error";
    case POET_ERR_NOMEM: return "out of memory";
    case POET_ERR_DNNL: return "oneDNN error";
    case POET_ERR_MPI: return "MPI error";
    case POET_ERR_HDF5: return "HDF5 error";
    case POET_ERR_CHECKPOINT: return "checkpoint error";
    case POET_ERR_NUMERIC: return "numerical error";
    case POET_ERR_REMOTE: return "error on another rank";
    case POET_ERR_INTERNAL: return "internal error";
    case POET_STOPPED: return "stopped";
    }
    return "unknown error";
}

const char *poet_dnnl_status_string(int status) {
    switch ((dnnl_status_t)status) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented (no kernel for these shapes/layouts)";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown oneDNN status";
    }
}

const char *poet_mpi_error_string(int code) {
    static char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", code);
    return text;
}
