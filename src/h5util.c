/* h5util.c — closing HDF5 handles by kind, attributes, and HDF5's error text (h5util.h). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "poet/h5util.h"

#include "poet/fsutil.h"

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Walks HDF5's error stack and keeps the innermost description: the most specific cause. */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *data) {
    char *out = data;
    if (n == 0 && err->desc && err->desc[0]) /* walking upward, entry 0 is the most specific */
        snprintf(out, 256, "%s (in %s)", err->desc, err->func_name ? err->func_name : "?");
    return 0;
}

const char *poet_hdf5_error_string(void) {
    static char text[256];
    snprintf(text, sizeof text, "no HDF5 error description");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, text);
    return text;
}

void poet_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

herr_t poet_h5_close(hid_t *id) {
    herr_t closed = 0;
    if (*id <= 0) /* H5I_INVALID_HID, or a zeroed field never opened: no HDF5 id is 0 */
        return 0;
    switch (H5Iget_type(*id)) {
    case H5I_FILE:
        closed = H5Fclose(*id);
        break;
    case H5I_GROUP:
        closed = H5Gclose(*id);
        break;
    case H5I_DATATYPE:
        closed = H5Tclose(*id);
        break;
    case H5I_DATASPACE:
        closed = H5Sclose(*id);
        break;
    case H5I_DATASET:
        closed = H5Dclose(*id);
        break;
    case H5I_ATTR:
        closed = H5Aclose(*id);
        break;
    case H5I_GENPROP_LST:
        closed = H5Pclose(*id);
        break;
    default:
        closed = -1;
        break; /* not an id this module hands out, or already closed */
    }
    *id = H5I_INVALID_HID;
    return closed;
}

/* A variable-length UTF-8 string type (caller closes). */
static hid_t vlen_string_type(H5T_cset_t cset) {
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type >= 0 && (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, cset) < 0))
        poet_h5_close(&type);
    return type;
}

poet_status poet_h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                               hsize_t n, const void *value, const char *path) {
    poet_status st = POET_OK;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    htri_t exists = H5Aexists(obj, name);
    if (exists == 0 || (exists > 0 && H5Adelete(obj, name) >= 0))
        space = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    if (space >= 0)
        attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, mem_type, value) < 0)
        st = poet_error_set(POET_ERR_HDF5, "%s: cannot write attribute %s: %s", path, name,
                            poet_hdf5_error_string());
    poet_h5_close(&attr);
    poet_h5_close(&space);
    return st;
}

poet_status poet_h5_attr_write_int(hid_t obj, const char *name, hid_t file_type, long long value,
                                   const char *path) {
    return poet_h5_attr_write(obj, name, file_type, H5T_NATIVE_LLONG, 0, &value, path);
}

poet_status poet_h5_attr_write_double(hid_t obj, const char *name, double value, const char *path) {
    return poet_h5_attr_write(obj, name, H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 0, &value, path);
}

poet_status poet_h5_attr_write_string(hid_t obj, const char *name, const char *value,
                                      const char *path) {
    poet_status st = POET_OK;
    hid_t type = vlen_string_type(H5T_CSET_UTF8);
    if (type < 0)
        POET_FAIL(POET_ERR_HDF5, "%s: cannot write attribute %s: %s", path, name,
                  poet_hdf5_error_string());
    POET_TRY(poet_h5_attr_write(obj, name, type, type, 0, &value, path));
fail:
    poet_h5_close(&type);
    return st;
}

H5T_class_t poet_h5_attr_class(hid_t obj, const char *name) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID;
    H5T_class_t cls = H5T_NO_CLASS;
    if (H5Aexists(obj, name) > 0 && (attr = H5Aopen(obj, name, H5P_DEFAULT)) >= 0 &&
        (type = H5Aget_type(attr)) >= 0)
        cls = H5Tget_class(type);
    poet_h5_close(&type);
    poet_h5_close(&attr);
    return cls;
}

/* Opens attribute `name`, failing with `bad` when it is missing. */
static poet_status open_attr(hid_t obj, const char *name, poet_status bad, const char *path,
                             const char *where, hid_t *out) {
    poet_status st = POET_OK;
    htri_t exists = H5Aexists(obj, name);
    POET_H5(exists);
    if (!exists)
        POET_FAIL(bad, "%s: attribute %s of %s is missing", path, name, where);
    POET_H5(*out = H5Aopen(obj, name, H5P_DEFAULT));
fail:
    return st;
}

poet_status poet_h5_attr_read(hid_t obj, const char *name, hid_t mem_type, hsize_t n, void *value,
                              poet_status bad, const char *path, const char *where) {
    poet_status st = POET_OK;
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID;
    POET_TRY(open_attr(obj, name, bad, path, where, &attr));
    POET_H5(space = H5Aget_space(attr));
    hssize_t values = H5Sget_simple_extent_npoints(space);
    if (values != (hssize_t)(n ? n : 1))
        POET_FAIL(bad, "%s: attribute %s of %s has %lld values, expected %llu", path, name, where,
                  (long long)values, (unsigned long long)(n ? n : 1));
    POET_H5(H5Aread(attr, mem_type, value));
fail:
    poet_h5_close(&space);
    poet_h5_close(&attr);
    return st;
}

poet_status poet_h5_attr_read_string(hid_t obj, const char *name, char **out, poet_status bad,
                                     const char *path, const char *where) {
    poet_status st = POET_OK;
    hid_t attr = H5I_INVALID_HID, stored = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    char *text = NULL;
    int variable;
    *out = NULL;
    POET_TRY(open_attr(obj, name, bad, path, where, &attr));
    POET_H5(stored = H5Aget_type(attr));
    if (H5Tget_class(stored) != H5T_STRING)
        POET_FAIL(bad, "%s: attribute %s of %s is not a string", path, name, where);
    /* HDF5 converts between string sizes but not between character sets: read in the stored one. */
    H5T_cset_t cset = H5Tget_cset(stored);
    POET_H5(variable = H5Tis_variable_str(stored));
    if (variable) {
        POET_H5(mem = vlen_string_type(cset));
        POET_H5(H5Aread(attr, mem, &text));
        *out = strdup(text ? text : "");
    } else {
        size_t size = H5Tget_size(stored);
        POET_ALLOC(*out, size + 1);
        POET_H5(mem = H5Tcopy(H5T_C_S1));
        POET_H5(H5Tset_size(mem, size + 1));
        POET_H5(H5Tset_cset(mem, cset));
        POET_H5(H5Aread(attr, mem, *out));
    }
    if (!*out)
        POET_FAIL(POET_ERR_NOMEM, "out of memory reading attribute %s of %s", name, path);
fail:
    if (text)
        H5free_memory(text);
    if (st != POET_OK) {
        free(*out);
        *out = NULL;
    }
    poet_h5_close(&mem);
    poet_h5_close(&stored);
    poet_h5_close(&attr);
    return st;
}

/* ---- the I/O watchdog ------------------------------------------------------------------------ */

#define WATCH_DEFAULT_SECONDS 120

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int started, armed, rank;
    long seconds;             /* POET_IO_TIMEOUT; 0 = off */
    struct timespec deadline; /* CLOCK_REALTIME, as pthread_cond_timedwait wants */
    char what[128], path[1024], remove[1024];
} watch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, -1, {0, 0}, "", "", ""};

/* Stuck inside a collective: the main thread cannot be reached, so this thread reports and ends
 * the whole job (MPI_Abort is the one MPI call it makes). */
static void watch_fire(void) {
    const char *cause = poet_fs_write_cause(watch.path, 0, "cause unknown");
    fprintf(stderr,
            "poet: rank %d: no progress for %ld s while %s %s (%s; a collective "
            "HDF5/MPI-IO operation is stuck after a failed write, POET_IO_TIMEOUT sets the "
            "limit); aborting\n",
            watch.rank, watch.seconds, watch.what, watch.path, cause);
    fflush(stderr);
    if (watch.remove[0])
        unlink(watch.remove);
    MPI_Abort(MPI_COMM_WORLD, POET_ERR_IO);
    _exit(POET_ERR_IO);
}

static void *watch_thread(void *unused) {
    (void)unused;
    pthread_mutex_lock(&watch.lock);
    for (;;) {
        while (!watch.armed)
            pthread_cond_wait(&watch.changed, &watch.lock);
        struct timespec deadline = watch.deadline;
        if (pthread_cond_timedwait(&watch.changed, &watch.lock, &deadline) != 0 && watch.armed &&
            deadline.tv_sec == watch.deadline.tv_sec && deadline.tv_nsec == watch.deadline.tv_nsec)
            watch_fire();
    }
    return NULL;
}

void poet_h5_watch_arm(const char *what, const char *path, const char *remove) {
    pthread_mutex_lock(&watch.lock);
    if (watch.seconds < 0) {
        const char *env = getenv("POET_IO_TIMEOUT");
        char *end = NULL;
        watch.seconds = env && *env ? strtol(env, &end, 10) : WATCH_DEFAULT_SECONDS;
        if (watch.seconds < 0 || (end && *end))
            watch.seconds = WATCH_DEFAULT_SECONDS;
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized)
            MPI_Comm_rank(MPI_COMM_WORLD, &watch.rank);
    }
    if (watch.seconds > 0 && !watch.started) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The thread inherits a mask blocking every signal: SIGTERM/SIGUSR1 stay the training
         * thread's, exactly as without a watchdog. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        watch.started = pthread_create(&thread, &attr, watch_thread, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (watch.started) {
        snprintf(watch.what, sizeof watch.what, "%s", what);
        snprintf(watch.path, sizeof watch.path, "%s", path);
        snprintf(watch.remove, sizeof watch.remove, "%s", remove ? remove : "");
        clock_gettime(CLOCK_REALTIME, &watch.deadline);
        watch.deadline.tv_sec += watch.seconds;
        watch.armed = 1;
        pthread_cond_broadcast(&watch.changed);
    }
    pthread_mutex_unlock(&watch.lock);
}

void poet_h5_watch_disarm(void) {
    pthread_mutex_lock(&watch.lock);
    watch.armed = 0;
    pthread_cond_broadcast(&watch.changed);
    pthread_mutex_unlock(&watch.lock);
}
