/* h5util.h — poet's one HDF5 idiom: the checking macro, the error text, closing handles, and
 * attributes. Used by the checkpoint, the loss log and `poet report`.
 *
 * Handles: every hid_t starts as H5I_INVALID_HID and is released with poet_h5_close(&id) in the
 * function's one `fail:` block (reverse order of acquisition), which closes by the handle's kind
 * and resets it, so closing twice or closing what was never opened is harmless.
 *
 * Messages: poet's messages say what failed; HDF5's automatic printing of its error stack is
 * silenced once, by poet_h5_quiet(), and the stack's innermost description is read back into our
 * one-line message by poet_hdf5_error_string().
 */
#ifndef POET_H5UTIL_H
#define POET_H5UTIL_H

#include <hdf5.h>

#include "poet/error.h"

/* HDF5: `expr` returns herr_t or hid_t; negative is failure. */
#define POET_H5(expr)                                                                              \
    do {                                                                                           \
        if ((long long)(expr) < 0)                                                                 \
            POET_FAIL(POET_ERR_HDF5, "%s:%d: HDF5 call %s failed: %s", __FILE__, __LINE__, #expr,  \
                      poet_hdf5_error_string());                                                   \
    } while (0)

/* The innermost (most specific) description on HDF5's error stack, e.g. "file write failed (in
 * H5FD_sec2_write)"; "no HDF5 error description" when the stack is empty. */
const char *poet_hdf5_error_string(void);

/* Turns off HDF5's automatic printing of its error stack (the one place that does). Cheap and
 * idempotent: every entry point that opens files calls it. */
void poet_h5_quiet(void);

/* Closes `*id` according to its kind (file, group, dataset, dataspace, datatype, attribute,
 * property list) and sets it to H5I_INVALID_HID. An invalid id is left alone. Returns what the
 * close returned (negative: it failed, e.g. a file whose final flush failed). */
herr_t poet_h5_close(hid_t *id);

/* Writes attribute `name` of `obj` holding `n` values (n = 0: a scalar) of `mem_type`, stored as
 * `file_type`; an existing attribute of that name is replaced. With parallel HDF5 it is collective
 * (same value on every rank). Failures are POET_ERR_HDF5 naming `path` and the attribute. */
poet_status poet_h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                               hsize_t n, const void *value, const char *path);

/* Shorthands: a scalar integer stored as `file_type` (e.g. H5T_STD_I32LE), a double stored as
 * H5T_NATIVE_DOUBLE, and a variable-length UTF-8 string (h5py reads it as str, h5dump prints it
 * whole, and a long config does not run into the 64 KiB limit of compact attribute storage). */
poet_status poet_h5_attr_write_int(hid_t obj, const char *name, hid_t file_type, long long value,
                                   const char *path);
poet_status poet_h5_attr_write_double(hid_t obj, const char *name, double value, const char *path);
poet_status poet_h5_attr_write_string(hid_t obj, const char *name, const char *value,
                                      const char *path);

/* The class of attribute `name` of `obj` (H5T_INTEGER, H5T_FLOAT, H5T_STRING, ...), or
 * H5T_NO_CLASS when there is no such attribute or it cannot be read. Records no message. */
H5T_class_t poet_h5_attr_class(hid_t obj, const char *name);

/* Reads attribute `name` of `obj` holding `n` values (0: a scalar), converted to `mem_type`. A
 * missing attribute or another number of values fails with `bad` (e.g. POET_ERR_CHECKPOINT) and
 * "<path>: attribute <name> of <where> is missing" / "... has N values, expected M"; `where` is
 * the object's path inside the file, for messages. */
poet_status poet_h5_attr_read(hid_t obj, const char *name, hid_t mem_type, hsize_t n, void *value,
                              poet_status bad, const char *path, const char *where);

/* A string attribute (variable- or fixed-length, any character set) as a malloc'd copy the caller
 * frees. Missing or not a string: `bad`, as above. */
poet_status poet_h5_attr_read_string(hid_t obj, const char *name, char **out, poet_status bad,
                                     const char *path, const char *where);

/* The I/O watchdog. A failed write on one rank can leave the others inside a collective of
 * parallel HDF5 or MPI-IO that never returns (each rank in a different one, deaf to signals). Code
 * that does collective file I/O arms the watchdog around it; when it is not disarmed within
 * POET_IO_TIMEOUT seconds (environment; default 120, 0 = off) a thread prints one line naming
 * `what`, `path` and the rank, removes `remove` (a temporary file; NULL for none) and ends the job
 * with MPI_Abort(POET_ERR_IO): a clear I/O error instead of an endless spin. Arming again
 * re-arms. */
void poet_h5_watch_arm(const char *what, const char *path, const char *remove);
void poet_h5_watch_disarm(void);

#endif
