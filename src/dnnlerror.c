/* dnnlerror.c — oneDNN's status strings. */
#include "poet/dnnlerror.h"

const char *poet_dnnl_status_string(dnnl_status_t status) {
    switch (status) {
    case dnnl_success:
        return "success";
    case dnnl_out_of_memory:
        return "out of memory";
    case dnnl_invalid_arguments:
        return "invalid arguments";
    case dnnl_unimplemented:
        return "unimplemented (no kernel for these shapes/layouts)";
    case dnnl_iterator_ends:
        return "iterator ends";
    case dnnl_runtime_error:
        return "runtime error";
    case dnnl_not_required:
        return "not required";
    default:
        return "unknown oneDNN status";
    }
}
