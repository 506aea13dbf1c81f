/* main.c — the `poet` command line: parses arguments, runs a subcommand, turns its status into a
 * one-line message and an exit code. The only place that decides to exit or abort. */
#define _DEFAULT_SOURCE /* gethostname */
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poet/checkpoint.h"
#include "poet/config.h"
#include "poet/data.h"
#include "poet/error.h"
#include "poet/normalise.h"
#include "poet/predict.h"
#include "poet/report.h"
#include "poet/rundir.h"
#include "poet/train.h"

static const char usage_text[] =
    "usage: poet <command> [options]\n"
    "\n"
    "Product-Of-Experts Ensemble Trainer: trains an ensemble of conv nets jointly across MPI "
    "ranks.\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set KEY=VALUE ...] [--resume | --resume-from FILE | --overwrite]\n"
    "        [--quiet] [--trajectory FILE] [--stop-after N] [--deadline TIME|slurm]\n"
    "        train the ensemble described by the JSON file CONFIG (run under mpirun for several\n"
    "        ranks). --resume continues from the newest checkpoint that verifies; --overwrite\n"
    "        starts over in a checkpoint directory that holds an earlier run's files.\n"
    "  eval CONFIG [--set KEY=VALUE ...] [--checkpoint FILE]\n"
    "        evaluate a checkpoint (default: the newest good one) on the test set\n"
    "  predict CONFIG|CKPT --input IMAGES -o OUT.h5|OUT.csv [--labels LABELS] [--checkpoint FILE]\n"
    "        [--set KEY=VALUE ...] [--quiet]\n"
    "        apply the ensemble of a checkpoint (CKPT, or CONFIG's newest) to IDX images and\n"
    "        write per image its probabilities, prediction, members' probabilities and\n"
    "        disagreement\n"
    "  inspect FILE\n"
    "        print a checkpoint's metadata and per-member checksums, verifying them\n"
    "  report LOG.h5 [LOG2.h5 ...] [--csv]\n"
    "        summarise (and compare) per-iteration loss logs\n"
    "  convert [--format idx|cifar] [--cifar-labels cifar10|fine|coarse] IMAGES [LABELS] OUT.h5\n"
    "        write an IDX (IMAGES and LABELS) or CIFAR (IMAGES, a glob pattern of .bin files)\n"
    "        data set as the HDF5 layout of docs/data-format.md\n"
    "  --help, --version\n"
    "\n"
    "--set KEY=VALUE overrides one config key, e.g. --set training.iterations=50\n"
    "        --set distributed.tree='\"kary\"' (VALUE is JSON; a bare word is taken as a string)\n"
    "\n"
    "exit codes: 0 done, 2 usage, 3 config, 4 data, 5 I/O (also: checkpoint directory in\n"
    "            use or holding another run's files), 7 oneDNN, 8 MPI, 9 HDF5, 10 checkpoint,\n"
    "            11 numerical, 12 another rank failed, 75 stopped by SIGTERM/SIGUSR1 or before\n"
    "            the deadline, after a checkpoint (requeue and run again with --resume).\n"
    "            See docs/cli.md.\n";

typedef struct {
    MPI_Comm comm;
    int rank, size;
} world;

#define MAX_OVERRIDES 64

/* Config overrides from --set KEY=VALUE, applied to the JSON before validation so they are checked
 * exactly like keys in the file. */
typedef struct {
    int n;
    const char *items[MAX_OVERRIDES];
} overrides;

/* Loads CONFIG with the overrides applied; errors still name the file and the key. */
static poet_status load_config(const char *path, const overrides *ov, poet_config *cfg) {
    return poet_config_load_overrides(path, ov->n, ov->items, cfg);
}

/* Takes `--set KEY=VALUE` at argv[*i]; returns 1 when it did. */
static int take_override(int argc, char **argv, int *i, overrides *ov) {
    if (strcmp(argv[*i], "--set") || *i + 1 >= argc || ov->n >= MAX_OVERRIDES)
        return 0;
    ov->items[ov->n++] = argv[++*i];
    return 1;
}

static int usage_error(const world *w, const char *fmt, const char *arg) {
    if (w->rank == 0) {
        fprintf(stderr, "poet: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n%s", usage_text);
    }
    return POET_ERR_USAGE;
}

/* Prints the recorded message once: rank 0 for failures every rank shares, the failing rank itself
 * for its own (named with rank and host). */
static void report_failure(const world *w, poet_status st) {
    char host[256] = "?";
    gethostname(host, sizeof host);
    if (st == POET_ERR_REMOTE) {
        if (w->rank == 0)
            fprintf(stderr, "poet: %s\n", poet_error_message());
        return;
    }
    int shared = poet_error_is_shared() || st == POET_ERR_CONFIG || st == POET_ERR_DATA ||
                 st == POET_ERR_USAGE;
    if (w->size == 1 || (shared && w->rank == 0))
        fprintf(stderr, "poet: %s\n", poet_error_message());
    else if (!shared)
        fprintf(stderr, "poet: rank %d/%d on %s: %s\n", w->rank, w->size, host,
                poet_error_message());
}

/* Threads per rank: the config's (the ensemble passes it to every stack it creates), else
 * OMP_NUM_THREADS, else the node's cores over its ranks: made OpenMP's default here, which the
 * stacks created without a thread count of their own use (net.h, poet_stack_options). */
static void choose_threads(const world *w, const poet_config *cfg) {
    if (cfg->threads > 0 || getenv("OMP_NUM_THREADS"))
        return;
    MPI_Comm node;
    int local_ranks = 1;
    if (MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        /* a hint only: on failure, count this rank alone */
        if (MPI_Comm_size(node, &local_ranks) != MPI_SUCCESS || local_ranks < 1)
            local_ranks = 1;
        MPI_Comm_free(&node);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cores / local_ranks);
    omp_set_num_threads(threads > 0 ? threads : 1);
}

static void print_summary(const poet_config *cfg, const poet_train_summary *s, int ranks) {
    printf(
        "done: %ld iterations, final batch loss %.4f, %.1f s, %.0f images/s (%.0f member-images/s)"
        "\n",
        s->iterations_done, s->final_loss, s->seconds, s->images_per_second,
        s->images_per_second * cfg->members);
    printf("communication: %llu bytes/iteration on rank 0, %llu..%llu over the %d rank(s) (sent + "
           "received); data-parallel training of the same ensemble would move ~%llu per rank\n",
           (unsigned long long)s->bytes_per_iteration,
           (unsigned long long)s->bytes_per_iteration_min,
           (unsigned long long)s->bytes_per_iteration_max, ranks,
           (unsigned long long)s->data_parallel_bytes_per_iteration);
    if (s->group_size > 1) /* the line above stays as it was: bench/run.sh reads it */
        printf("member groups: %d groups of %d ranks, each rank a shard of every batch; the "
               "reduce trees move the figures above (per rank), the groups' all-reduce of the "
               "weight gradients%s %llu bytes/iteration on rank 0, %llu..%llu over the ranks "
               "(sent + received), against ~%llu per rank for data parallelism over all %d "
               "ranks\n",
               s->groups, s->group_size,
               cfg->sync_batchnorm ? " and the batch-norm statistics' exchanges" : "",
               (unsigned long long)s->group_bytes_per_iteration,
               (unsigned long long)s->group_bytes_per_iteration_min,
               (unsigned long long)s->group_bytes_per_iteration_max,
               (unsigned long long)s->data_parallel_bytes_per_iteration, ranks);
    static const char *const names[POET_PHASES] = {"data",     "forward",   "communication",
                                                   "backward", "optimizer", "other"};
    double total = 0;
    for (int p = 0; p < POET_PHASES; p++)
        total += s->phase_seconds[p];
    printf("memory: peak resident %.1f MiB on rank 0, %.1f MiB on the largest rank\n",
           s->peak_rss_mib, s->peak_rss_mib_max);
    /* A line of its own: bench/run.sh reads the one above. */
    printf("memory estimate (before training, docs/config.md): %.1f MiB on rank 0, %.1f MiB on "
           "the largest rank\n",
           s->memory_estimate_mib, s->memory_estimate_mib_max);
    printf("data: %ld training, %ld validation and %ld test images of %dx%dx%d (CxHxW) %s %s, %.1f "
           "MiB per "
           "rank with the batch buffers; batches built %s (the profile's data: time waited)\n",
           s->train_images, s->validation_images, s->test_images, s->channels, s->height, s->width,
           s->streamed ? "read per batch from HDF5 as" : "held as",
           s->float_pixels ? "float32" : "uint8", s->data_mib,
           cfg->prefetch ? "ahead by a prefetch thread" : "on the training thread");
    printf("profile (rank 0):");
    for (int p = 0; p < POET_PHASES; p++)
        printf(" %s %.1f%%", names[p], total > 0 ? 100 * s->phase_seconds[p] / total : 0.0);
    printf("\n");
    if (s->checkpoints)
        printf("checkpoints: %d written, the last in %.2f s, %.2f s in all (rank 0's wall time)\n",
               s->checkpoints, s->checkpoint_seconds_last, s->checkpoint_seconds_total);
    if (s->evaluated)
        printf("test: ensemble accuracy %.4f, nll %.4f, mean member accuracy %.4f, disagreement "
               "%.4f\n",
               s->eval.ensemble_accuracy, s->eval.ensemble_nll, s->eval.mean_member_accuracy,
               s->eval.disagreement);
}

static int cmd_train(const world *w, int argc, char **argv) {
    poet_train_options opt = {0};
    overrides ov = {0};
    const char *config_path = NULL;
    char deadline[96];
    int overwrite = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (take_override(argc, argv, &i, &ov))
            continue;
        if (!strcmp(a, "--resume"))
            opt.resume = 1;
        else if (!strcmp(a, "--overwrite"))
            overwrite = 1;
        else if (!strcmp(a, "--resume-from") && i + 1 < argc)
            opt.resume_from = argv[++i];
        else if (!strcmp(a, "--quiet"))
            opt.quiet = 1;
        else if (!strcmp(a, "--deadline") && i + 1 < argc) {
            /* the config key, so it is checked and stored like one */
            snprintf(deadline, sizeof deadline, "training.deadline=\"%.64s\"", argv[++i]);
            if (ov.n < MAX_OVERRIDES)
                ov.items[ov.n++] = deadline;
        } else if (!strcmp(a, "--trajectory") && i + 1 < argc)
            opt.trajectory = argv[++i];
        else if (!strcmp(a, "--stop-after") && i + 1 < argc) {
            char *end;
            opt.stop_after = strtol(argv[++i], &end, 10);
            if (*end || opt.stop_after < 1)
                return usage_error(w, "train: --stop-after: expected an integer >= 1, got '%s'",
                                   argv[i]);
        } else if (a[0] == '-')
            return usage_error(w, "train: unknown or incomplete option '%s'", a);
        else if (config_path)
            return usage_error(w, "train: more than one config file given ('%s')", a);
        else
            config_path = a;
    }
    if (!config_path)
        return usage_error(w, "train: missing CONFIG%s", "");
    if (opt.resume && opt.resume_from)
        return usage_error(w,
                           "train: --resume and --resume-from %s exclude each other (--resume "
                           "takes the newest good checkpoint, --resume-from that file)",
                           opt.resume_from);
    if (overwrite && (opt.resume || opt.resume_from))
        return usage_error(w, "train: --overwrite starts over, %s continues: give one of them",
                           opt.resume ? "--resume" : "--resume-from");
    poet_config *cfg = calloc(1, sizeof *cfg);
    poet_train_summary *summary = calloc(1, sizeof *summary);
    poet_rundir *lock = NULL;
    poet_rundir_mode mode = opt.resume || opt.resume_from ? POET_RUNDIR_RESUME
                            : overwrite                   ? POET_RUNDIR_OVERWRITE
                                                          : POET_RUNDIR_FRESH;
    poet_status st = cfg && summary ? load_config(config_path, &ov, cfg) : POET_ERR_NOMEM;
    if (st == POET_OK) {
        choose_threads(w, cfg);
        /* Handlers first: a stop signal while the lock is taken ends the run through the clean
         * path (checkpoint, exit 75, lock released) instead of killing it with the lock held. */
        poet_train_install_signal_handlers();
        st = poet_rundir_acquire(w->comm, cfg, mode, opt.quiet, &lock);
    }
    if (st == POET_OK)
        st = poet_normalise_resolve(w->comm, cfg, opt.resume_from, opt.resume, opt.quiet);
    if (st == POET_OK)
        st = poet_train_run(w->comm, cfg, &opt, summary);
    poet_rundir_release(lock); /* on every path, before an error may end the job with MPI_Abort */
    if (st == POET_OK && w->rank == 0 && !opt.quiet && !summary->already_finished)
        print_summary(cfg, summary, w->size);
    if (st == POET_STOPPED && w->rank == 0)
        fprintf(stderr,
                "poet: stopped after iteration %ld with a checkpoint%s; resume with "
                "--resume (exit %d)\n",
                summary->iterations_done,
                summary->deadline_stop ? " to finish before the deadline" : "", POET_STOPPED);
    free(cfg);
    free(summary);
    return st;
}

static int cmd_eval(const world *w, int argc, char **argv) {
    const char *config_path = NULL, *checkpoint = NULL;
    overrides ov = {0};
    for (int i = 0; i < argc; i++) {
        if (take_override(argc, argv, &i, &ov))
            continue;
        if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc)
            checkpoint = argv[++i];
        else if (argv[i][0] == '-')
            return usage_error(w, "eval: unknown or incomplete option '%s'", argv[i]);
        else if (config_path)
            return usage_error(w, "eval: more than one config file given ('%s')", argv[i]);
        else
            config_path = argv[i];
    }
    if (!config_path)
        return usage_error(w, "eval: missing CONFIG%s", "");
    poet_config *cfg = calloc(1, sizeof *cfg);
    poet_eval_result *r = calloc(1, sizeof *r);
    poet_status st = cfg && r ? load_config(config_path, &ov, cfg) : POET_ERR_NOMEM;
    if (st == POET_OK) {
        choose_threads(w, cfg);
        st = poet_normalise_resolve(w->comm, cfg, checkpoint, 1, 1);
    }
    if (st == POET_OK)
        st = poet_train_evaluate(w->comm, cfg, checkpoint, r);
    if (st == POET_OK && w->rank == 0) {
        printf("iteration %ld, %ld test images\n", r->iteration, r->images);
        printf("ensemble: accuracy %.4f  nll %.4f  brier %.4f  ece %.4f  (mean of logits)\n",
               r->ensemble_accuracy, r->ensemble_nll, r->ensemble_brier, r->ensemble_ece);
        printf("          accuracy %.4f  nll %.4f  brier %.4f  ece %.4f  (mean of probabilities)\n",
               r->probmean_accuracy, r->probmean_nll, r->probmean_brier, r->probmean_ece);
        printf("members:  mean accuracy %.4f  nll %.4f  brier %.4f  ece %.4f  disagreement %.4f  "
               "diversity %.4f\n",
               r->mean_member_accuracy, r->mean_member_nll, r->mean_member_brier,
               r->mean_member_ece, r->disagreement, r->mean_member_nll - r->ensemble_nll);
        for (int j = 0; j < cfg->members; j++)
            printf("  member %4d: accuracy %.4f  nll %.4f  brier %.4f  ece %.4f%s\n", j,
                   r->member_accuracy[j], r->member_nll[j], r->member_brier[j], r->member_ece[j],
                   r->member_at_chance[j] > 0 ? "  (at chance level)" : "");
    }
    free(cfg);
    free(r);
    return st;
}

static int cmd_predict(const world *w, int argc, char **argv) {
    poet_predict_options opt = {0};
    overrides ov = {0};
    const char *source = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (take_override(argc, argv, &i, &ov))
            continue;
        if (!strcmp(a, "--input") && i + 1 < argc)
            opt.images = argv[++i];
        else if (!strcmp(a, "--labels") && i + 1 < argc)
            opt.labels = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc)
            opt.output = argv[++i];
        else if (!strcmp(a, "--checkpoint") && i + 1 < argc)
            opt.checkpoint = argv[++i];
        else if (!strcmp(a, "--quiet"))
            opt.quiet = 1;
        else if (a[0] == '-')
            return usage_error(w, "predict: unknown or incomplete option '%s'", a);
        else if (source)
            return usage_error(w, "predict: more than one CONFIG or CKPT given ('%s')", a);
        else
            source = a;
    }
    if (!source)
        return usage_error(w, "predict: missing CONFIG or CKPT%s", "");
    if (!opt.images)
        return usage_error(w, "predict: missing --input IMAGES%s", "");
    if (!opt.output)
        return usage_error(w, "predict: missing -o OUT.h5 or OUT.csv%s", "");
    if (poet_predict_output_format(opt.output) < 0)
        return usage_error(w, "predict: -o %s: expected a name ending in .h5, .hdf5 or .csv",
                           opt.output);
    /* HDF5 content or an HDF5 name (a missing checkpoint is then reported as one) */
    int is_checkpoint = poet_predict_is_hdf5(source) || poet_predict_output_format(source) == 0;
    if (is_checkpoint && (opt.checkpoint || ov.n))
        return usage_error(w,
                           "predict: %s is a checkpoint: --checkpoint and --set go with a "
                           "CONFIG",
                           source);
    poet_config *cfg = NULL;
    poet_predict_summary *summary = calloc(1, sizeof *summary);
    poet_status st = summary ? POET_OK : POET_ERR_NOMEM;
    if (st == POET_OK && !is_checkpoint) {
        cfg = calloc(1, sizeof *cfg);
        st = cfg ? load_config(source, &ov, cfg) : POET_ERR_NOMEM;
    } else
        opt.checkpoint = source;
    if (st == POET_OK) {
        choose_threads(w, cfg ? cfg : &(poet_config){0});
        st = poet_predict_run(w->comm, cfg, &opt, summary);
    }
    if (st == POET_OK && w->rank == 0 && !opt.quiet) {
        printf("predicted %ld images with %s (iteration %ld) into %s\n", summary->images,
               summary->checkpoint, summary->iteration, opt.output);
        if (summary->labelled)
            printf("ensemble: accuracy %.4f\n", summary->accuracy);
    }
    free(cfg);
    free(summary);
    return st;
}

static int cmd_inspect(const world *w, int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-')
        return usage_error(w, "inspect: expected exactly one checkpoint FILE%s", "");
    if (w->rank != 0)
        return POET_OK;
    poet_status st = poet_checkpoint_inspect(argv[0], stdout);
    if (st != POET_OK)
        poet_error_mark_agreed(); /* only rank 0 works; nothing to abort */
    return st;
}

static int cmd_report(const world *w, int argc, char **argv) {
    int csv = 0, n = 0;
    char **paths = calloc(argc > 0 ? argc : 1, sizeof *paths);
    if (!paths)
        return POET_ERR_NOMEM;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else if (argv[i][0] == '-') {
            free(paths);
            return usage_error(w, "report: unknown option '%s'", argv[i]);
        } else
            paths[n++] = argv[i];
    }
    if (!n) {
        free(paths);
        return usage_error(w, "report: expected at least one LOG.h5%s", "");
    }
    poet_status st = POET_OK;
    if (w->rank == 0) {
        st = poet_report_run(n, paths, csv, stdout);
        if (st != POET_OK)
            poet_error_mark_agreed();
    }
    free(paths);
    return st;
}

static int cmd_convert(const world *w, int argc, char **argv) {
    static const char *const formats[] = {"auto", "idx", "cifar", NULL};
    static const char *const labels[] = {"cifar10", "fine", "coarse", NULL};
    poet_data_spec spec = {0};
    const char *paths[3];
    int n = 0;
    spec.n_norm = 1;
    spec.std[0] = 1;
    spec.classes = 256; /* any byte label: the training config checks them against its classes */
    for (int i = 0; i < argc; i++) {
        int is_format = !strcmp(argv[i], "--format");
        int is_labels = !strcmp(argv[i], "--cifar-labels");
        if (is_format || is_labels) {
            const char *const *names = is_format ? formats : labels;
            int k = 0;
            while (i + 1 < argc && names[k] && strcmp(names[k], argv[i + 1]))
                k++;
            if (i + 1 >= argc || !names[k])
                return usage_error(w, "convert: %s expects one of the documented values", argv[i]);
            if (is_format)
                spec.format = (poet_data_format)k;
            else
                spec.cifar = (poet_cifar_labels)k;
            i++;
        } else if (argv[i][0] == '-' || n == 3) {
            return usage_error(w, "convert: unexpected argument '%s'", argv[i]);
        } else {
            paths[n++] = argv[i];
        }
    }
    if (n < 2)
        return usage_error(w, "convert: expected IMAGES [LABELS] OUT.h5%s", "");
    spec.images = paths[0];
    spec.labels = n == 3 ? paths[1] : NULL;
    if (w->rank != 0)
        return POET_OK;
    poet_dataset ds;
    poet_status st = POET_OK;
    if (spec.format == POET_DATA_AUTO)
        st = poet_data_infer(spec.images, &spec.format);
    if (st == POET_OK && (spec.format == POET_DATA_IDX) != (n == 3))
        st = poet_error_set(POET_ERR_USAGE, "convert: %s is %s: expected %s", spec.images,
                            poet_data_format_name(spec.format),
                            n == 3 ? "IMAGES OUT.h5 (the labels are in the CIFAR files)"
                                   : "IMAGES LABELS OUT.h5 for IDX");
    if (st == POET_OK && (st = poet_data_load_spec(&spec, &ds)) == POET_OK) {
        st = poet_data_write_hdf5(&ds, paths[n - 1]);
        if (st == POET_OK)
            printf("%s: %ld images of %dx%dx%d (CxHxW) and their labels\n", paths[n - 1], ds.count,
                   ds.channels, ds.height, ds.width);
        poet_data_free(&ds);
    }
    if (st != POET_OK)
        poet_error_mark_agreed(); /* only rank 0 works; nothing to abort */
    return st;
}

static int dispatch(const world *w, int argc, char **argv) {
    if (argc < 2)
        return usage_error(w, "missing command%s", "");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (w->rank == 0)
            fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        if (w->rank == 0)
            printf("poet %s\n", POET_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "train"))
        return cmd_train(w, argc - 2, argv + 2);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(w, argc - 2, argv + 2);
    if (!strcmp(cmd, "predict"))
        return cmd_predict(w, argc - 2, argv + 2);
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(w, argc - 2, argv + 2);
    if (!strcmp(cmd, "report"))
        return cmd_report(w, argc - 2, argv + 2);
    if (!strcmp(cmd, "convert"))
        return cmd_convert(w, argc - 2, argv + 2);
    return usage_error(w, "unknown command '%s'", cmd);
}

int main(int argc, char **argv) {
    world w;
    MPI_Init(&argc, &argv);
    /* Errors come back as codes so every failure gets our one-line message. */
    MPI_Comm_dup(MPI_COMM_WORLD, &w.comm);
    MPI_Comm_set_errhandler(w.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(w.comm, &w.rank);
    MPI_Comm_size(w.comm, &w.size);
    int code = dispatch(&w, argc, argv);
    if (code == POET_ERR_USAGE && poet_error_message()[0] && w.rank == 0)
        fprintf(stderr, "poet: %s\n", poet_error_message()); /* e.g. a bad --set */
    if (code != POET_OK && code != POET_STOPPED && code != POET_ERR_USAGE) {
        report_failure(&w, (poet_status)code);
        /* A failure the other ranks do not know about could leave them waiting in a collective:
         * end the whole job instead. Shared failures shut down normally. */
        if (!poet_error_is_agreed() && code != POET_ERR_CONFIG && w.size > 1) {
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, code);
        }
    }
    MPI_Comm_free(&w.comm);
    MPI_Finalize();
    return code;
}
