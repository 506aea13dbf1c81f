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

#endif
