/* dnnlerror.h — oneDNN's side of the error path: POET_DNNL and oneDNN's status strings, for the
 * modules that call oneDNN (net.c); error.h itself stays free of oneDNN. */
#ifndef POET_DNNLERROR_H
#define POET_DNNLERROR_H

#include <dnnl.h>

#include "poet/error.h"

/* oneDNN's status as words, e.g. "unimplemented (no kernel for these shapes/layouts)". */
const char *poet_dnnl_status_string(dnnl_status_t status);

/* oneDNN: `expr` returns dnnl_status_t. */
#define POET_DNNL(expr)                                                                            \
    do {                                                                                           \
        dnnl_status_t dnnl_status_ = (expr);                                                       \
        if (dnnl_status_ != dnnl_success)                                                          \
            POET_FAIL(POET_ERR_DNNL, "%s:%d: oneDNN call %s failed: %s", __FILE__, __LINE__,       \
                      #expr, poet_dnnl_status_string(dnnl_status_));                               \
    } while (0)

#endif
