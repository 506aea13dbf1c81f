/* mpierror.c — agreeing on failure across ranks, and MPI's error strings. */
#include "poet/mpierror.h"

#include <stdio.h>

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
    char message[POET_ERROR_MAX];
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
    poet_error_mark_shared();
    return (poet_status)code;
}

const char *poet_mpi_error_string(int code) {
    static char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", code);
    return text;
}
