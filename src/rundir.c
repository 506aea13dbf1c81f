/* rundir.c — the checkpoint directory's lock and the fresh-run check (contract in rundir.h).
 *
 * Everything here runs on rank 0, which alone touches the directory; the other ranks learn the
 * outcome from one poet_error_agree.
 */
#define _DEFAULT_SOURCE /* gethostname, kill */
#include "poet/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "poet/fsutil.h"
#include "poet/mpierror.h"

#define LOCK_TEXT_MAX 512
#define TAKE_ATTEMPTS 3 /* link, find a stale lock, take it over, link again: then give up */
#define LISTED_MAX 3    /* earlier files named in the refusal message */

struct poet_rundir {
    int held;                      /* rank 0 made the lock file */
    char path[POET_PATH_MAX + 16]; /* <checkpoint_dir>/poet.lock */
    char text[LOCK_TEXT_MAX];      /* its content, to remove only our own */
};

/* The holder as the lock file names it. */
typedef struct {
    char host[256];
    long pid;
    char job[64];     /* SLURM_JOB_ID or "-" */
    char restart[32]; /* SLURM_RESTART_COUNT or "-" */
} holder;

static const char *env_or_dash(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : "-";
}

static void this_process(holder *h) {
    memset(h, 0, sizeof *h);
    if (gethostname(h->host, sizeof h->host - 1) != 0)
        snprintf(h->host, sizeof h->host, "unknown");
    h->pid = (long)getpid();
    snprintf(h->job, sizeof h->job, "%s", env_or_dash("SLURM_JOB_ID"));
    snprintf(h->restart, sizeof h->restart, "%s", env_or_dash("SLURM_RESTART_COUNT"));
}

static void holder_text(const holder *h, char *out, size_t size) {
    snprintf(out, size, "host=%s pid=%ld slurm_job=%s restart=%s\n", h->host, h->pid, h->job,
             h->restart);
}

/* "host node17, pid 1234, Slurm job 5678" for messages. */
static void holder_describe(const holder *h, char *out, size_t size) {
    if (strcmp(h->job, "-") != 0)
        snprintf(out, size, "host %s, pid %ld, Slurm job %s", h->host, h->pid, h->job);
    else
        snprintf(out, size, "host %s, pid %ld", h->host, h->pid);
}

/* The lock's text; 0 when it cannot be read (e.g. it vanished meanwhile). */
static int read_lock(const char *path, char *text, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t got = fread(text, 1, size - 1, f);
    fclose(f);
    text[got] = '\0';
    return 1;
}

static int parse_holder(const char *text, holder *h) {
    memset(h, 0, sizeof *h);
    return sscanf(text, "host=%255s pid=%ld slurm_job=%63s restart=%31s", h->host, &h->pid, h->job,
                  h->restart) == 4 &&
           h->pid > 0;
}

/* Whether the holder is certainly gone: a dead process on this host, or an earlier run of this
 * same (requeued) Slurm job. Anything else may still be running. */
static int holder_is_gone(const holder *h, const holder *me) {
    if (strcmp(h->host, me->host) == 0 && kill((pid_t)h->pid, 0) != 0 && errno == ESRCH)
        return 1;
    return strcmp(h->job, "-") != 0 && strcmp(h->job, me->job) == 0 &&
           strcmp(h->restart, me->restart) != 0;
}

/* Creates the lock with `text`: written whole under a private name first, then linked. Returns 1
 * when made, 0 when a lock exists, -1 on another error (recorded). */
/* Where hard links are not supported: O_CREAT|O_EXCL, then the text (a reader may briefly see the
 * lock empty; it then reports an unreadable lock rather than take it). */
static int try_exclusive(const char *lock, const char *text) {
    int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 && errno == EEXIST)
        return 0;
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd) != 0) {
        poet_error_set(POET_ERR_IO, "cannot create lock %s: %s", lock, strerror(errno));
        if (fd >= 0)
            unlink(lock);
        return -1;
    }
    return 1;
}

static int try_link(const char *lock, const char *text, const char *host) {
    char mine[POET_PATH_MAX + 300];
    snprintf(mine, sizeof mine, "%s.%.200s.%ld", lock, host, (long)getpid());
    int fd = open(mine, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        poet_error_set(POET_ERR_IO, "cannot create lock %s: %s", mine, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    int err = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    int made = -1;
    if (!ok)
        poet_error_set(POET_ERR_IO, "cannot write lock %s: %s", mine, strerror(err));
    else if (link(mine, lock) == 0)
        made = 1;
    else if (errno == EEXIST)
        made = 0;
    else if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == ENOSYS)
        made = -2; /* no hard links on this file system */
    else
        poet_error_set(POET_ERR_IO, "cannot create lock %s: %s", lock, strerror(errno));
    unlink(mine);
    return made == -2 ? try_exclusive(lock, text) : made;
}

/* Moves a stale lock out of the way, unless another process replaced it since it was read (then
 * that process's lock is put back and the caller sees it on its next attempt). */
static void take_over(const char *lock, const char *stale_text, const holder *stale) {
    char aside[POET_PATH_MAX + 64], now[LOCK_TEXT_MAX];
    snprintf(aside, sizeof aside, "%s.stale.%ld", lock, (long)getpid());
    if (rename(lock, aside) != 0)
        return; /* gone already: the next attempt links */
    if (!read_lock(aside, now, sizeof now) || strcmp(now, stale_text) != 0) {
        (void)link(aside, lock); /* fails when someone linked meanwhile: theirs stands */
        unlink(aside);
        return;
    }
    unlink(aside);
    char who[400];
    holder_describe(stale, who, sizeof who);
    fprintf(stderr, "poet: warning: %s: taking over the lock of a run that is gone (%s)\n", lock,
            who);
}

static poet_status take_lock(poet_rundir *r) {
    holder me, other;
    this_process(&me);
    holder_text(&me, r->text, sizeof r->text);
    for (int attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        int made = try_link(r->path, r->text, me.host);
        if (made < 0)
            return POET_ERR_IO;
        if (made) {
            r->held = 1;
            return POET_OK;
        }
        char text[LOCK_TEXT_MAX];
        if (!read_lock(r->path, text, sizeof text))
            continue; /* released meanwhile */
        if (!parse_holder(text, &other))
            return poet_error_set(POET_ERR_IO,
                                  "%s: the checkpoint directory is locked by an unreadable lock "
                                  "file; remove it if no run uses the directory",
                                  r->path);
        if (!holder_is_gone(&other, &me)) {
            char who[400];
            holder_describe(&other, who, sizeof who);
            return poet_error_set(POET_ERR_IO,
                                  "%s: the checkpoint directory is in use by another run (%s); "
                                  "wait for it to end or choose another output.checkpoint_dir "
                                  "(remove the lock only if that run is gone)",
                                  r->path, who);
        }
        take_over(r->path, text, &other);
    }
    return poet_error_set(POET_ERR_IO,
                          "%s: could not take the lock after %d attempts (other runs "
                          "keep taking it)",
                          r->path, TAKE_ATTEMPTS);
}

/* A file an earlier run of poet leaves in its checkpoint directory. */
static int is_run_file(const char *name) {
    return strncmp(name, "ckpt-", 5) == 0 || strncmp(name, "latest", 6) == 0;
}

static void log_path(const poet_config *cfg, char *out, size_t size) {
    if (cfg->log_file[0])
        snprintf(out, size, "%s", cfg->log_file);
    else
        snprintf(out, size, "%s/log.h5", cfg->checkpoint_dir);
}

/* Rank 0, holding the lock: another run's checkpoints and log are refused (FRESH) or removed
 * (OVERWRITE). */
static poet_status check_earlier_run(const poet_config *cfg, poet_rundir_mode mode, int quiet) {
    poet_status st = POET_OK;
    char listed[LISTED_MAX * 64 + 160] = "", path[POET_PATH_MAX + 300], log[POET_PATH_MAX + 16];
    int found = 0, removed = 0;
    struct stat sb;
    DIR *dir = opendir(cfg->checkpoint_dir);
    if (!dir)
        POET_FAIL(POET_ERR_IO, "cannot read checkpoint directory %s: %s", cfg->checkpoint_dir,
                  strerror(errno));
    log_path(cfg, log, sizeof log);
    for (struct dirent *d; (d = readdir(dir));) {
        if (!is_run_file(d->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", cfg->checkpoint_dir, d->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || strcmp(path, log) == 0)
            continue;
        if (found < LISTED_MAX)
            snprintf(listed + strlen(listed), sizeof listed - strlen(listed), "%s%.60s",
                     found ? ", " : "", d->d_name);
        found++;
        if (mode == POET_RUNDIR_OVERWRITE) {
            if (unlink(path) != 0)
                POET_FAIL(POET_ERR_IO, "--overwrite: cannot remove %s: %s", path, strerror(errno));
            removed++;
        }
    }
    if (stat(log, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (found < LISTED_MAX)
            snprintf(listed + strlen(listed), sizeof listed - strlen(listed),
                     "%sthe loss log %.120s", found ? ", " : "", log);
        found++;
        if (mode == POET_RUNDIR_OVERWRITE) {
            if (unlink(log) != 0)
                POET_FAIL(POET_ERR_IO, "--overwrite: cannot remove %s: %s", log, strerror(errno));
            removed++;
        }
    }
    if (found && mode == POET_RUNDIR_FRESH)
        POET_FAIL(POET_ERR_IO,
                  "%s holds another run's files (%s%s); continue that run with --resume, or "
                  "start over with --overwrite (removes them)",
                  cfg->checkpoint_dir, listed, found > LISTED_MAX ? ", ..." : "");
    if (removed && !quiet)
        printf("--overwrite: removed %d file(s) of an earlier run from %s\n", removed,
               cfg->checkpoint_dir);
fail:
    if (dir)
        closedir(dir);
    return st;
}

poet_status poet_rundir_acquire(MPI_Comm comm, const poet_config *cfg, poet_rundir_mode mode,
                                int quiet, poet_rundir **out) {
    poet_status st = POET_OK;
    int rank = 0;
    poet_rundir *r = NULL;
    *out = NULL;
    MPI_Comm_rank(comm, &rank);
    r = calloc(1, sizeof *r);
    if (!r)
        st = poet_error_set(POET_ERR_NOMEM, "out of memory for the checkpoint directory's lock");
    if (st == POET_OK && rank == 0) {
        st = poet_fs_make_dirs(cfg->checkpoint_dir, "checkpoint directory");
        if (st == POET_OK && snprintf(r->path, sizeof r->path, "%s/%s", cfg->checkpoint_dir,
                                      POET_LOCK_NAME) >= (int)sizeof r->path)
            st = poet_error_set(POET_ERR_IO, "%s: checkpoint directory path too long",
                                cfg->checkpoint_dir);
        if (st == POET_OK)
            st = take_lock(r);
        if (st == POET_OK && mode != POET_RUNDIR_RESUME)
            st = check_earlier_run(cfg, mode, quiet);
        fflush(stdout);
    }
    st = poet_error_agree(comm, st);
    if (st != POET_OK) {
        poet_rundir_release(r);
        return st;
    }
    *out = r;
    return POET_OK;
}

void poet_rundir_release(poet_rundir *lock) {
    if (!lock)
        return;
    char text[LOCK_TEXT_MAX];
    if (lock->held && read_lock(lock->path, text, sizeof text) && strcmp(text, lock->text) == 0)
        unlink(lock->path);
    free(lock);
}
