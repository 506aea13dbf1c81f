/* mpierror.h — MPI's side of the error path: agreeing on failure across ranks, and POET_MPI.
 *
 * error.h holds the status codes, the one recorded message and the generic macros, without MPI, so
 * that modules which do not communicate build and test without it; modules that call MPI include
 * this header too (SCR keeps its MPI error code apart from its serial one in the same way).
 */
#ifndef POET_MPIERROR_H
#define POET_MPIERROR_H

#include <mpi.h>

#include "poet/error.h"

/* Collective over `comm`: every rank learns whether any rank's `local` status failed. The first
 * failing rank's status and message become every rank's (so all return the same error and rank 0
 * can print the real cause), and the failure is marked agreed and shared. POET_OK when none failed.
 * Call it before any collective step that a rank-local failure could break. */
poet_status poet_error_agree(MPI_Comm comm, poet_status local);

/* MPI's own description of an error code. */
const char *poet_mpi_error_string(int code);

/* MPI: `expr` returns an MPI error code (communicators use MPI_ERRORS_RETURN). */
#define POET_MPI(expr)                                                                             \
    do {                                                                                           \
        int mpi_status_ = (expr);                                                                  \
        if (mpi_status_ != 0)                                                                      \
            POET_FAIL(POET_ERR_MPI, "%s:%d: MPI call %s failed: %s", __FILE__, __LINE__, #expr,    \
                      poet_mpi_error_string(mpi_status_));                                         \
    } while (0)

#endif
