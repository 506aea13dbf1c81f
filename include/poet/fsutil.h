/* fsutil.h — the few file-system helpers several modules share. */
#ifndef POET_FSUTIL_H
#define POET_FSUTIL_H

#include <stddef.h>

#include "poet/error.h"

/* mkdir -p `dir`; an existing non-directory component is an error naming `what` (e.g. "checkpoint
 * directory"). */
poet_status poet_fs_make_dirs(const char *dir, const char *what);

/* The directory part of `path` ("." when it has none) into `out`. */
void poet_fs_dirname(const char *path, char *out, size_t size);

/* Bytes an unprivileged writer may still use on the file system holding `path` (statvfs), or -1
 * when it does not tell. */
long long poet_fs_free_bytes(const char *path);

/* Why a write to `path` failed, for a one-line message: the errno `err` when it names a cause of
 * its own (no space, quota, I/O error, read-only, file too large), else "No space left on device"
 * when the file system of `path` has (almost) nothing left, else `fallback` (e.g. HDF5's own
 * description of the failure). Libraries such as MPI-IO keep the errno of a failed pwrite, but not
 * always; the free space is the second witness. */
const char *poet_fs_write_cause(const char *path, int err, const char *fallback);

/* Rank 0 of a collective write, before the flush that writes the file's metadata: the file
 * system holding `path` must still have room (64 KiB), or the write is failed with ENOSPC's
 * "<path>: cannot write <what>: No space left on device". MPI-IO does not always report a data
 * write that ran out of space on every rank (or at all), and a metadata flush that then fails on
 * one rank leaves the others waiting inside its collective file sync. */
poet_status poet_fs_check_room(const char *path, const char *what);

#endif
