/* fsutil.c — mkdir -p and dirname without modifying the caller's strings. */
#include "poet/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "poet/config.h"

poet_status poet_fs_make_dirs(const char *dir, const char *what) {
    char path[POET_PATH_MAX];
    if (!dir[0])
        return poet_error_set(POET_ERR_IO, "%s is empty", what);
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return poet_error_set(POET_ERR_IO, "%s: %s path too long", dir, what);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        struct stat sb;
        if (mkdir(path, 0777) != 0) {
            int err = errno;
            if (err != EEXIST || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
                return poet_error_set(POET_ERR_IO, "cannot create %s %s: %s: %s", what, dir, path,
                                      err == EEXIST ? "not a directory" : strerror(err));
        }
        *p = saved;
        if (!saved)
            return POET_OK;
    }
}

void poet_fs_dirname(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, size, ".");
        return;
    }
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    snprintf(out, size, "%.*s", (int)len, path);
}
