/* test_losslog.c — the loss log and `poet report`.
 *
 *   test_losslog            (1 or 2 ranks) rows and member columns read back exactly with plain
 *                           HDF5; resume truncation; a log of another ensemble refused
 *   test_losslog kill       a writer killed with SIGKILL after a flush leaves a readable log
 *   test_losslog report     poet_report_load/run numbers on a known log; damaged, foreign and
 *                           missing files fail with their one-line messages
 *   test_losslog sample F   writes a realistic small log to F (for the plot test)
 *
 * Every value written is exactly representable, so read-back comparisons are exact: EXACT is the
 * tolerance (test_compare_f64 divides by atol + rtol·|ref|, so it cannot be zero).
 */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "poet/config.h"
#include "poet/ensemble.h"
#include "poet/losslog.h"
#include "poet/report.h"
#include "testutil.h"

#define EXACT 1e-300

static int rank, ranks;

/* ---- fixtures -------------------------------------------------------------------------------- */

/* A 4-member ensemble of the reference network on 1×28×28 inputs, batch 2. With 2 ranks the
 * placement interleaves (rank 0 owns 1 and 3, rank 1 owns 0 and 2) so that each rank's member
 * columns are not one block. */
static void make_ensemble(poet_config *cfg, poet_ensemble *e, int flush_every, int placed_ranks) {
    poet_config_defaults(cfg);
    snprintf(cfg->source, sizeof cfg->source, "test_losslog");
    snprintf(cfg->run_name, sizeof cfg->run_name, "losslog-test");
    cfg->members = 4;
    cfg->batch_size = 2;
    cfg->lr = 0.25;
    cfg->tree = POET_TREE_KARY;
    cfg->arity = 3;
    cfg->log_flush_every = flush_every;
    if (placed_ranks == 2) {
        static const int interleaved[4] = {1, 0, 1, 0};
        cfg->placement_explicit = 1;
        memcpy(cfg->member_rank, interleaved, sizeof interleaved);
    }
    poet_shape input = {1, 28, 28};
    memset(e, 0, sizeof *e);
    TEST_OK(poet_ensemble_create(cfg, rank, ranks, input, 2, 1, 2, NULL, NULL, e));
}

/* The values of iteration `it` (pass = which run wrote it, so a rewritten row is recognisable). */
static double row_loss(long it, int pass) { return 2.0 + 0.25 * (double)(it % 8) + 1000.0 * pass; }
static double member_value(long it, int member, int pass) {
    return 0.5 * (double)it + 0.125 * member + 1000.0 * pass;
}

static poet_iteration_record make_record(long it, int pass) {
    poet_iteration_record rec = {it,
                                 row_loss(it, pass),
                                 0.5 + 0.0625 * (double)(it % 4),
                                 0.25 / (double)(1 + it % 2),
                                 0.5 + 0.125 * (double)(it % 3),
                                 1024.0 * (double)(it + 1),
                                 0,
                                 0};
    if (rank != 0) /* only rank 0's record may reach the file */
        rec.loss = rec.accuracy = rec.lr = rec.seconds = rec.bytes = -1.0;
    return rec;
}

static void append_rows(poet_losslog *log, const poet_ensemble *e, long from, long to, int pass) {
    double local[POET_MAX_MEMBERS];
    for (long it = from; it < to; it++) {
        poet_iteration_record rec = make_record(it, pass);
        for (int i = 0; i < e->n_local; i++) {
            local[i] = member_value(it, e->local_ids[i], pass);
            rec.kept_loss_sum += local[i]; /* this rank's part: the log adds the ranks' */
        }
        rec.kept = e->cfg->members;
        TEST_OK(poet_losslog_append(log, &rec, local));
    }
}

static void eval_row(poet_losslog *log, long iteration, int members) {
    poet_eval_result res;
    memset(&res, 0, sizeof res);
    res.iteration = iteration;
    res.images = 100 + iteration;
    res.ensemble_nll = 0.75 + 0.001953125 * (double)iteration;
    res.ensemble_accuracy = 0.5 + 0.0078125 * (double)(iteration % 8);
    for (int j = 0; j < members; j++) {
        res.member_accuracy[j] = 0.25 + 0.015625 * j + 0.0009765625 * (double)iteration;
        res.member_nll[j] = 1.5 + 0.03125 * j;
    }
    res.mean_member_accuracy = 0.375;
    res.mean_member_nll = 1.5 + 0.03125 * (members - 1) / 2.0; /* the mean of member_nll */
    res.disagreement = 0.125 + 0.0009765625 * (double)iteration;
    if (rank != 0) /* other ranks hold partial results; rank 0's must be what is written */
        for (int j = 0; j < members; j++)
            res.member_accuracy[j] = res.member_nll[j] = -1.0;
    TEST_OK(poet_losslog_eval(log, &res));
}

/* ---- plain-HDF5 reading (serial driver, rank 0 only) ----------------------------------------- */

/* Reads a whole dataset as doubles (or int64 viewed as double: values here are small); returns the
 * element count and the first dimension in *rows. */
static double *read_all(hid_t file, const char *name, hsize_t *rows, hsize_t *cols) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        TEST_CHECK(d >= 0, "dataset %s missing", name);
        *rows = 0;
        return calloc(1, sizeof(double));
    }
    hid_t space = H5Dget_space(d);
    hsize_t dims[2] = {0, 1};
    int nd = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    *rows = dims[0];
    if (cols)
        *cols = nd == 2 ? dims[1] : 1;
    size_t n = (size_t)dims[0] * (nd == 2 ? dims[1] : 1);
    double *v = calloc(n ? n : 1, sizeof *v);
    if (n)
        TEST_CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0,
                   "reading %s", name);
    H5Sclose(space);
    H5Dclose(d);
    return v;
}

static int64_t read_int_attribute(hid_t file, const char *name) {
    int64_t v = -1;
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
        TEST_CHECK(0, "attribute %s unreadable", name);
    if (a >= 0)
        H5Aclose(a);
    return v;
}

/* Checks every /iterations row against what `expect_pass(it)` run wrote for iterations
 * 0..rows-1, and the evaluation rows against `eval_its`. */
/* Called on rank 0 only, so make_record gives the values rank 0 appended. */
static void check_file(const char *path, long rows, int (*expect_pass)(long), const long *eval_its,
                       int evals, int members) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    TEST_CHECK(file >= 0, "%s does not open with the serial driver", path);
    if (file < 0)
        return;
    hsize_t t = 0, m = 0, e = 0, em = 0;
    double *it = read_all(file, "iterations/iteration", &t, NULL);
    TEST_CHECK((long)t == rows, "%s: %llu iteration rows, expected %ld", path,
               (unsigned long long)t, rows);
    if ((long)t == rows) {
        double *want = calloc((size_t)rows * members + 1, sizeof *want);
        for (long r = 0; r < rows; r++)
            want[r] = (double)r;
        test_compare_f64("iterations/iteration", it, want, t, EXACT, 0);
        const char *cols[] = {"iterations/loss", "iterations/accuracy", "iterations/lr",
                              "iterations/seconds", "iterations/bytes"};
        for (int c = 0; c < 5; c++) {
            hsize_t n = 0;
            double *got = read_all(file, cols[c], &n, NULL);
            TEST_CHECK(n == t, "%s has %llu rows, iteration has %llu", cols[c],
                       (unsigned long long)n, (unsigned long long)t);
            for (long r = 0; r < rows; r++) {
                poet_iteration_record rec = make_record(r, expect_pass(r));
                double v[5] = {rec.loss, rec.accuracy, rec.lr, rec.seconds, rec.bytes};
                want[r] = v[c];
            }
            if (n == t)
                test_compare_f64(cols[c], got, want, t, EXACT, 0);
            free(got);
        }
        double *ml = read_all(file, "iterations/member_loss", &m, &em);
        TEST_CHECK(m == t && (int)em == members, "member_loss is %llux%llu, expected %ldx%d",
                   (unsigned long long)m, (unsigned long long)em, rows, members);
        for (long r = 0; r < rows; r++)
            for (int j = 0; j < members; j++)
                want[r * members + j] = member_value(r, j, expect_pass(r));
        if (m == t && (int)em == members)
            test_compare_f64("iterations/member_loss", ml, want, (size_t)rows * members, EXACT, 0);
        free(ml);
        /* The decomposition: the mean of every rank's members' losses, and it minus the loss. */
        for (int c = 0; c < 2; c++) {
            hsize_t n = 0;
            const char *name = c ? "iterations/diversity" : "iterations/mean_member_loss";
            double *got = read_all(file, name, &n, NULL);
            for (long r = 0; r < rows; r++) {
                double mean = 0;
                for (int j = 0; j < members; j++)
                    mean += member_value(r, j, expect_pass(r));
                mean /= members;
                want[r] = c ? mean - row_loss(r, expect_pass(r)) : mean;
            }
            TEST_CHECK(n == t, "%s has %llu rows, expected %llu", name, (unsigned long long)n,
                       (unsigned long long)t);
            if (n == t)
                test_compare_f64(name, got, want, t, 1e-12, 1e-12);
            free(got);
        }
        free(want);
    }
    free(it);

    double *eit = read_all(file, "eval/iteration", &e, NULL);
    TEST_CHECK((int)e == evals, "%s: %llu eval rows, expected %d", path, (unsigned long long)e,
               evals);
    if ((int)e == evals && evals > 0) {
        double want_it[8], want_acc[8 * 4];
        hsize_t n = 0, c = 0;
        for (int r = 0; r < evals; r++) {
            want_it[r] = (double)eval_its[r];
            for (int j = 0; j < members; j++)
                want_acc[r * members + j] =
                    0.25 + 0.015625 * j + 0.0009765625 * (double)eval_its[r];
        }
        test_compare_f64("eval/iteration", eit, want_it, e, EXACT, 0);
        double *acc = read_all(file, "eval/member_accuracy", &n, &c);
        TEST_CHECK(n == e && (int)c == members, "eval/member_accuracy shape");
        if (n == e && (int)c == members)
            test_compare_f64("eval/member_accuracy", acc, want_acc, (size_t)evals * members, EXACT,
                             0);
        free(acc);
    }
    free(eit);
    TEST_CHECK(read_int_attribute(file, "members") == members, "attribute members");
    TEST_CHECK(read_int_attribute(file, "format_version") == 2, "attribute format_version");
    TEST_CHECK(read_int_attribute(file, "ranks") == ranks, "attribute ranks");
    H5Fclose(file);
}

static int pass_first(long it) {
    (void)it;
    return 0;
}
static int pass_resumed(long it) { return it >= 20; }

/* The stored config must parse back into the run's config. */
static void check_config_attribute(const char *path) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = file >= 0 ? H5Aopen(file, "config", H5P_DEFAULT) : -1;
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8); /* HDF5 does not convert between character sets */
    char *json = NULL;
    TEST_CHECK(a >= 0 && H5Aread(a, type, &json) >= 0 && json, "config attribute unreadable");
    if (json) {
        poet_config back;
        poet_status st = poet_config_parse(json, "config attribute", &back);
        TEST_CHECK(st == POET_OK && back.members == 4 && back.batch_size == 2,
                   "config attribute does not parse back (%s)", poet_error_message());
        H5free_memory(json);
    }
    H5Tclose(type);
    if (a >= 0)
        H5Aclose(a);
    if (file >= 0)
        H5Fclose(file);
}

/* ---- collective tests ------------------------------------------------------------------------ */

/* 23 rows with a flush every 7 (three automatic flushes, two rows left for close) and two
 * evaluations; read back whole. */
static void test_rows(void) {
    poet_config cfg;
    poet_ensemble e;
    poet_losslog *log = NULL;
    char path[64];
    snprintf(path, sizeof path, "losslog_rows_%d.h5", ranks);
    make_ensemble(&cfg, &e, 7, ranks);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, path, &cfg, &e, 0, &log));
    append_rows(log, &e, 0, 10, 0);
    eval_row(log, 10, 4);
    append_rows(log, &e, 10, 23, 0);
    eval_row(log, 23, 4);
    append_rows(log, &e, 23, 23, 0);
    TEST_OK(poet_losslog_close(log));
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        long evals[2] = {10, 23};
        check_file(path, 23, pass_first, evals, 2, 4);
        check_config_attribute(path);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    poet_ensemble_destroy(&e);
}

/* 30 rows (evaluations at 10, 20, 25); resume at 20 and write 20..34 again with other values
 * (evaluation at 30): 35 rows, each iteration once, 20.. from the second run; the evaluation at 20
 * measured the checkpointed weights and stays, the one at 25 goes. */
static void test_resume(void) {
    poet_config cfg;
    poet_ensemble e;
    poet_losslog *log = NULL;
    char path[64], fresh[64];
    snprintf(path, sizeof path, "losslog_resume_%d.h5", ranks);
    snprintf(fresh, sizeof fresh, "losslog_resume_fresh_%d.h5", ranks);
    make_ensemble(&cfg, &e, 8, ranks);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, path, &cfg, &e, 0, &log));
    append_rows(log, &e, 0, 10, 0);
    eval_row(log, 10, 4);
    append_rows(log, &e, 10, 20, 0);
    eval_row(log, 20, 4);
    append_rows(log, &e, 20, 25, 0);
    eval_row(log, 25, 4);
    append_rows(log, &e, 25, 30, 0);
    TEST_OK(poet_losslog_close(log));

    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, path, &cfg, &e, 20, &log));
    append_rows(log, &e, 20, 30, 1);
    eval_row(log, 30, 4);
    append_rows(log, &e, 30, 35, 1);
    TEST_OK(poet_losslog_close(log));
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        long evals[3] = {10, 20, 30};
        check_file(path, 35, pass_resumed, evals, 3, 4);
    }

    /* Resuming a run whose log is gone starts a new log at that iteration. */
    if (rank == 0)
        remove(fresh);
    MPI_Barrier(MPI_COMM_WORLD);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, fresh, &cfg, &e, 20, &log));
    append_rows(log, &e, 20, 22, 1);
    TEST_OK(poet_losslog_close(log));
    if (rank == 0) {
        hid_t f = H5Fopen(fresh, H5F_ACC_RDONLY, H5P_DEFAULT);
        hsize_t n = 0;
        double *it = f >= 0 ? read_all(f, "iterations/iteration", &n, NULL) : NULL;
        TEST_CHECK(n == 2 && it[0] == 20 && it[1] == 21, "fresh resumed log: %llu rows",
                   (unsigned long long)n);
        free(it);
        if (f >= 0)
            H5Fclose(f);
    }

    /* A log of a 4-member ensemble cannot take the rows of a 5-member one. */
    poet_config five = cfg;
    five.members = 5;
    poet_error_clear();
    poet_status st = poet_losslog_open(MPI_COMM_WORLD, path, &five, &e, 10, &log);
    TEST_CHECK(st == POET_ERR_DATA && strstr(poet_error_message(), path) &&
                   strstr(poet_error_message(), "another ensemble"),
               "opening a 4-member log for 5 members: status %d, message '%s'", (int)st,
               poet_error_message());
    if (rank == 0)
        printf("expected error: %s\n", poet_error_message());
    poet_error_clear();
    MPI_Barrier(MPI_COMM_WORLD);
    poet_ensemble_destroy(&e);
}

/* ---- kill -9 --------------------------------------------------------------------------------- */

#define KILL_PATH "losslog_kill.h5"

/* Flushes 12 rows and an evaluation, buffers 4 more, then dies without closing anything. */
static void killed_writer(void) {
    poet_config cfg;
    poet_ensemble e;
    poet_losslog *log = NULL;
    make_ensemble(&cfg, &e, 5, 1);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, KILL_PATH, &cfg, &e, 0, &log));
    append_rows(log, &e, 0, 12, 0); /* flushes at 5 and 10 */
    eval_row(log, 12, 4);           /* flushes rows 10, 11 and the evaluation */
    append_rows(log, &e, 12, 16, 0);
    raise(SIGKILL);
}

/* Runs an external reader on the killed file when the tool is there; 77 in its output = absent. */
static void external_reader(const char *what, const char *command) {
    int code = system(command);
    if (WIFEXITED(code) && WEXITSTATUS(code) == 77) {
        printf("(%s not available: skipped)\n", what);
        return;
    }
    TEST_CHECK(WIFEXITED(code) && WEXITSTATUS(code) == 0, "%s cannot read the killed log", what);
    if (WIFEXITED(code) && WEXITSTATUS(code) == 0)
        printf("%s reads the killed log\n", what);
}

static int test_kill(int argc, char **argv) {
    remove(KILL_PATH);
    /* Fork before MPI exists in this process: the child is a singleton MPI process of its own. */
    pid_t child = fork();
    if (child == 0) {
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &ranks);
        killed_writer();
        _exit(3); /* not reached */
    }
    int status = 0;
    waitpid(child, &status, 0);
    TEST_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
               "writer was not killed by SIGKILL (status %d)", status);
    /* Other readers first, while this process has not started MPI (system() forks). */
    external_reader("h5dump", "command -v h5dump >/dev/null || exit 77; "
                              "h5dump -d /iterations/loss " KILL_PATH " >/dev/null");
    external_reader("h5py", "for p in /usr/bin/python3 python3; do "
                            "if $p -c 'import h5py' 2>/dev/null; then exec $p -c \""
                            "import h5py; f = h5py.File('" KILL_PATH "', 'r'); "
                            "n = f['iterations/loss'].shape[0]; assert n == 12, n; "
                            "assert f['eval/iteration'][:].tolist() == [12]\"; fi; done; exit 77");
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    long evals[1] = {12};
    check_file(KILL_PATH, 12, pass_first, evals, 1, 4);
    poet_report_summary s;
    poet_status st = poet_report_load(KILL_PATH, &s);
    TEST_CHECK(st == POET_OK && s.rows == 12 && s.evals == 1, "report on the killed log: %s",
               poet_error_message());

    /* The restarted run resumes from its checkpoint at 12 and writes on: 0..15 once each. */
    poet_config cfg;
    poet_ensemble e;
    poet_losslog *log = NULL;
    make_ensemble(&cfg, &e, 5, 1);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, KILL_PATH, &cfg, &e, 12, &log));
    append_rows(log, &e, 12, 16, 0);
    TEST_OK(poet_losslog_close(log));
    check_file(KILL_PATH, 16, pass_first, evals, 1, 4);
    poet_ensemble_destroy(&e);
    int code = test_finish("losslog_kill");
    MPI_Finalize();
    return code;
}

/* ---- report ---------------------------------------------------------------------------------- */

/* The smoothed value at row i, the obvious way (the report uses running sums). */
static double naive_smoothed(const double *loss, long i, int w) {
    double sum = 0;
    long from = i - w + 1 < 0 ? 0 : i - w + 1;
    for (long k = from; k <= i; k++)
        sum += loss[k];
    return sum / (double)(i - from + 1);
}

/* A 1-rank log of `rows` iterations with a falling loss and members above the ensemble. */
static void write_report_log(const char *path, long rows) {
    poet_config cfg;
    poet_ensemble e;
    poet_losslog *log = NULL;
    make_ensemble(&cfg, &e, 16, 1);
    TEST_OK(poet_losslog_open(MPI_COMM_WORLD, path, &cfg, &e, 0, &log));
    for (long it = 0; it < rows; it++) {
        double loss = 2.0 * exp(-(double)it / 40.0) + 0.05 * (double)((it * 7) % 5);
        poet_iteration_record rec = {it,
                                     loss,
                                     1.0 - loss / 3.0,
                                     0.25,
                                     0.004 + 0.001 * (double)(it % 2),
                                     4096.0 + (double)(it % 3),
                                     0,
                                     4};
        double members[4];
        for (int j = 0; j < 4; j++)
            members[j] = loss + 0.1 * (j + 1);
        for (int j = 0; j < 4; j++)
            rec.kept_loss_sum += members[j];
        TEST_OK(poet_losslog_append(log, &rec, members));
        if ((it + 1) % 50 == 0)
            eval_row(log, it + 1, 4);
    }
    TEST_OK(poet_losslog_close(log));
    poet_ensemble_destroy(&e);
}

static void expect_load_error(const char *path, poet_status want, const char *text) {
    poet_report_summary s;
    poet_error_clear();
    poet_status st = poet_report_load(path, &s);
    TEST_CHECK(st == want && strstr(poet_error_message(), text) &&
                   strstr(poet_error_message(), path) && !strchr(poet_error_message(), '\n'),
               "%s: status %d (want %d), message '%s' (want '%s')", path, (int)st, (int)want,
               poet_error_message(), text);
    printf("expected error: %s\n", poet_error_message());
    poet_error_clear();
}

static char *slurp(FILE *f) {
    long n = ftell(f);
    char *text = calloc((size_t)n + 1, 1);
    rewind(f);
    if (fread(text, 1, (size_t)n, f) != (size_t)n)
        TEST_CHECK(0, "cannot read back report output");
    return text;
}

static void test_report_numbers(const char *path, long rows) {
    double loss[1000], seconds = 0, bytes = 0, member_sum = 0;
    int w = poet_report_window(rows);
    for (long it = 0; it < rows; it++) {
        loss[it] = 2.0 * exp(-(double)it / 40.0) + 0.05 * (double)((it * 7) % 5);
        seconds += 0.004 + 0.001 * (double)(it % 2);
        bytes += 4096.0 + (double)(it % 3);
    }
    double best = INFINITY;
    long best_it = -1;
    for (long it = 0; it < rows; it++)
        if (naive_smoothed(loss, it, w) < best) {
            best = naive_smoothed(loss, it, w);
            best_it = it;
        }
    for (long it = rows - w; it < rows; it++)
        for (int j = 0; j < 4; j++)
            member_sum += loss[it] + 0.1 * (j + 1);
    poet_report_summary s;
    TEST_OK(poet_report_load(path, &s));
    TEST_CHECK(s.rows == rows && s.first_iteration == 0 && s.last_iteration == rows - 1,
               "rows %ld (%ld..%ld)", s.rows, s.first_iteration, s.last_iteration);
    TEST_CHECK(w == 12 && s.window == w, "window %d, expected 12 for %ld rows", s.window, rows);
    TEST_CHECK(s.members == 4 && s.batch_size == 2 && s.ranks == 1 && s.arity == 3 &&
                   !strcmp(s.tree, "kary") && s.lr == 0.25 && !strcmp(s.run_name, "losslog-test"),
               "run attributes: members %d batch %d ranks %d tree %s(%d) lr %g name %s", s.members,
               s.batch_size, s.ranks, s.tree, s.arity, s.lr, s.run_name);
    double got[9] = {s.final_loss,        s.final_smoothed,      s.best_smoothed,
                     s.end_member_loss,   s.end_ensemble_loss,   s.total_seconds,
                     s.images_per_second, s.bytes_per_iteration, (double)s.best_iteration};
    double want[9] = {loss[rows - 1],
                      naive_smoothed(loss, rows - 1, w),
                      best,
                      member_sum / (4.0 * w),
                      naive_smoothed(loss, rows - 1, w),
                      seconds,
                      2.0 * (double)rows / seconds,
                      bytes / (double)rows,
                      (double)best_it};
    test_compare_f64("report summary", got, want, 9, 1e-12, 1e-12);
    /* The decomposition columns: every member in every mean, so the mean member loss is the
     * members' mean and the diversity the gap; held out, eval_row's member NLLs 1.5 + j/32. */
    TEST_CHECK(s.decomposed, "report: the decomposition columns were not found");
    double got_d[4] = {s.end_mean_member_loss, s.end_diversity, s.eval_mean_member_nll,
                       s.eval_diversity};
    double eval_nll = 0.75 + 0.001953125 * 100, member_nll = 1.5 + 0.03125 * 1.5;
    double want_d[4] = {member_sum / (4.0 * w), member_sum / (4.0 * w) - want[4], member_nll,
                        member_nll - eval_nll};
    test_compare_f64("report decomposition", got_d, want_d, 4, 1e-12, 1e-12);
    double want_points[POET_REPORT_POINTS];
    long want_its[POET_REPORT_POINTS] = {0, 30, 60, 89, 119}; /* round(k·119/4) */
    for (int k = 0; k < POET_REPORT_POINTS; k++) {
        want_points[k] = naive_smoothed(loss, want_its[k], w);
        TEST_CHECK(s.point_iteration[k] == want_its[k], "point %d at iteration %ld, expected %ld",
                   k, s.point_iteration[k], want_its[k]);
    }
    test_compare_f64("smoothed points", s.point_smoothed, want_points, POET_REPORT_POINTS, 1e-12,
                     1e-12);
    TEST_CHECK(s.evaluated && s.evals == 2 && s.eval_iteration == 100 && s.eval_images == 200 &&
                   s.eval_accuracy == 0.5 + 0.0078125 * 4 &&
                   s.eval_nll == 0.75 + 0.001953125 * 100 && s.eval_mean_member_accuracy == 0.375 &&
                   s.eval_disagreement == 0.125 + 0.0009765625 * 100,
               "last evaluation: %ld rows, iteration %ld, images %ld, accuracy %g, nll %g", s.evals,
               s.eval_iteration, s.eval_images, s.eval_accuracy, s.eval_nll);
}

static void test_report_output(const char *path) {
    char *paths[2] = {(char *)path, (char *)path};
    FILE *out = tmpfile();
    TEST_OK(poet_report_run(1, paths, 0, out));
    char *text = slurp(out);
    printf("%s", text);
    TEST_CHECK(strstr(text, "4 members on 1 rank(s), batch 2, lr 0.25, tree kary(3)") &&
                   strstr(text, "120 logged (0..119)") && strstr(text, "trailing mean of 12") &&
                   strstr(text, "after 100 iterations on 200 images"),
               "single-run report lacks expected lines");
    free(text);
    fclose(out);

    out = tmpfile();
    TEST_OK(poet_report_run(2, paths, 0, out));
    text = slurp(out);
    TEST_CHECK(strstr(text, "run ") && strstr(text, "images/s") && strstr(text, "losslog-test"),
               "comparison table missing");
    printf("%s", strstr(text, "\nrun ") ? strstr(text, "\nrun ") : text);
    free(text);
    fclose(out);

    out = tmpfile();
    TEST_OK(poet_report_run(2, paths, 1, out));
    text = slurp(out);
    printf("%s", text);
    int lines = 0, fields[3] = {0, 0, 0};
    for (char *c = text; *c; c++) {
        if (lines < 3 && *c == ',')
            fields[lines]++;
        if (*c == '\n')
            lines++;
    }
    TEST_CHECK(lines == 3 && !strncmp(text, "path,run_name,members,", 22) &&
                   fields[0] == fields[1] && fields[1] == fields[2],
               "CSV: %d lines, %d/%d/%d commas", lines, fields[0], fields[1], fields[2]);
    free(text);
    fclose(out);
}

static void copy_prefix(const char *from, const char *to, double fraction) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    TEST_CHECK(in && out, "cannot copy %s", from);
    if (!in || !out)
        exit(1);
    fseek(in, 0, SEEK_END);
    long n = (long)(ftell(in) * fraction);
    rewind(in);
    for (long i = 0; i < n; i++)
        fputc(fgetc(in), out);
    fclose(in);
    fclose(out);
}

static int test_report(void) {
    const char *good = "report_good.h5";
    write_report_log(good, 120);
    test_report_numbers(good, 120);
    test_report_output(good);

    copy_prefix(good, "report_truncated.h5", 0.5);
    expect_load_error("report_truncated.h5", POET_ERR_DATA,
                      "cannot open as HDF5 (truncated or not HDF5)");
    FILE *junk = fopen("report_garbage.h5", "w");
    fputs("this is not HDF5 at all\n", junk);
    fclose(junk);
    expect_load_error("report_garbage.h5", POET_ERR_DATA,
                      "cannot open as HDF5 (truncated or not HDF5)");
    /* A valid HDF5 file of someone else's. */
    hid_t f = H5Fcreate("report_foreign.h5", H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims = 3;
    double v[3] = {1, 2, 3};
    hid_t space = H5Screate_simple(1, &dims, NULL);
    hid_t d =
        H5Dcreate2(f, "data", H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    expect_load_error("report_foreign.h5", POET_ERR_DATA,
                      "not a poet loss log: missing /iterations/loss");
    expect_load_error("report_missing.h5", POET_ERR_IO, "cannot open");

    /* One bad log among good ones fails the whole report and prints nothing. */
    char *paths[2] = {(char *)good, "report_foreign.h5"};
    FILE *out = tmpfile();
    poet_status st = poet_report_run(2, paths, 0, out);
    TEST_CHECK(st == POET_ERR_DATA && ftell(out) == 0,
               "report of good+foreign: status %d, %ld bytes", (int)st, ftell(out));
    fclose(out);
    poet_error_clear();
    return test_finish("report");
}

/* A log worth plotting: 300 iterations, members above the ensemble, evaluations every 100. */
static void write_sample(const char *path) { write_report_log(path, 300); }

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "kill"))
        return test_kill(argc, argv);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    int code;
    if (argc > 1 && !strcmp(argv[1], "report")) {
        code = test_report();
    } else if (argc > 2 && !strcmp(argv[1], "sample")) {
        write_sample(argv[2]);
        code = test_finish("losslog sample");
    } else {
        test_rows();
        test_resume();
        int failures = test_failures, all = 0;
        MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        test_failures = all;
        code = rank == 0 ? test_finish(ranks == 1 ? "losslog" : "losslog_mpi2") : (all ? 1 : 0);
    }
    MPI_Finalize();
    return code;
}
