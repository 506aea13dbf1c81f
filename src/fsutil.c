/* fsutil.c — mkdir -p and dirname without modifying the caller's strings; free space and the
 * cause of a failed write. */
#include "poet/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

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

long long poet_fs_free_bytes(const char *path) {
    struct statvfs vfs;
    char dir[POET_PATH_MAX];
    if (statvfs(path, &vfs) != 0) { /* a file not created yet: ask its directory */
        poet_fs_dirname(path, dir, sizeof dir);
        if (statvfs(dir, &vfs) != 0)
            return -1;
    }
    return (long long)vfs.f_bavail * (long long)vfs.f_frsize;
}

const char *poet_fs_write_cause(const char *path, int err, const char *fallback) {
    if (err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS || err == EFBIG)
        return strerror(err);
    long long left = poet_fs_free_bytes(path);
    if (left >= 0 && left < 65536)
        return strerror(ENOSPC);
    return fallback;
}

poet_status poet_fs_check_room(const char *path, const char *what) {
    long long left = poet_fs_free_bytes(path);
    if (left >= 0 && left < 65536)
        return poet_error_set(POET_ERR_IO, "%s: cannot write %s: %s (%lld bytes left)", path, what,
                              strerror(ENOSPC), left);
    return POET_OK;
}
