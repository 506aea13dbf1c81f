/* config.c — the run configuration: defaults and the key-by-key checks of a parsed JSON tree
 * (reading the file and --set: config_load.c; writing JSON back: config_json.c).
 *
 * Parsing walks the JSON tree section by section in a fixed order, whatever the key order in the
 * file: data before model (the reference network's last layer has data.classes outputs), training
 * before distributed (chunks must divide the batch size). Every check names the full key path, what
 * was expected and the offending value as JSON; the first failure is recorded with poet_error_set()
 * and parsing stops there.
 *
 * Message format (docs/config.md documents it):
 *   <source>: <key.path>: expected <what>, got <value as JSON>
 *   <source>: <key.path>: unknown key, did you mean <key.path>?
 *   <source>: invalid JSON near line <L>: <snippet>
 */
#include "poet/config.h"
#include "poet/arch.h"
#include "poet/deadline.h"

#include "configimpl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist/"
#define SHOWN_VALUE_MAX 60 /* longest value quoted in a message before it is cut with "..." */
/* 2^53: the largest integer a JSON number holds exactly */
#define EXACT_INT_MAX 9007199254740992LL

/* ---------------------------------------------------------------------------------------------
 * Defaults and small public helpers
 * ------------------------------------------------------------------------------------------- */

static void set_layer(poet_layer_spec *s, poet_layer_kind kind, int out, int kernel, int stride) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->out = out;
    s->kernel = kernel;
    s->stride = stride;
}

void poet_config_reference_arch(poet_arch *arch, int classes) {
    memset(arch, 0, sizeof *arch);
    snprintf(arch->name, sizeof arch->name, "reference");
    poet_layer_spec *l = arch->layers;
    set_layer(&l[0], POET_LAYER_CONV, 20, 3, 2);
    set_layer(&l[1], POET_LAYER_RELU, 0, 0, 0);
    set_layer(&l[2], POET_LAYER_CONV, 40, 3, 2);
    set_layer(&l[3], POET_LAYER_RELU, 0, 0, 0);
    set_layer(&l[4], POET_LAYER_AVG_POOL, 0, 6, 6);
    set_layer(&l[5], POET_LAYER_LINEAR, 20, 0, 0);
    set_layer(&l[6], POET_LAYER_RELU, 0, 0, 0);
    set_layer(&l[7], POET_LAYER_LINEAR, classes, 0, 0);
    arch->n_layers = 8;
}

void poet_config_defaults(poet_config *cfg) {
    /* Zeroing first makes unused bytes (string tails, unused member slots) identical between any
     * two configs, which keeps comparisons simple. */
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->train_images, POET_PATH_MAX, "%s", DEFAULT_DATA_DIR "train-images-idx3-ubyte.gz");
    snprintf(cfg->train_labels, POET_PATH_MAX, "%s", DEFAULT_DATA_DIR "train-labels-idx1-ubyte.gz");
    snprintf(cfg->test_images, POET_PATH_MAX, "%s", DEFAULT_DATA_DIR "t10k-images-idx3-ubyte.gz");
    snprintf(cfg->test_labels, POET_PATH_MAX, "%s", DEFAULT_DATA_DIR "t10k-labels-idx1-ubyte.gz");
    cfg->mean = 0.1307;
    cfg->std = 0.3081;
    cfg->shuffle = 1;
    cfg->classes = 10;
    snprintf(cfg->images_dataset, POET_NAME_MAX, "images");
    snprintf(cfg->labels_dataset, POET_NAME_MAX, "labels");
    cfg->prefetch = 0;
    cfg->in_memory = 1;

    cfg->members = 10;
    cfg->n_archs = 1;
    poet_config_reference_arch(&cfg->archs[0], cfg->classes);
    cfg->fused = 1;

    cfg->batch_size = 200;
    cfg->epochs = 1;
    cfg->lr = 0.5;
    cfg->momentum = 0.9;
    cfg->decay_bn_bias = 1; /* PyTorch's SGD decays every parameter it is given */
    cfg->schedule = POET_LR_CONSTANT;
    cfg->step_size = 1000;
    cfg->gamma = 0.1;
    cfg->seed = 42;
    cfg->log_every = 20;
    cfg->objective = POET_OBJECTIVE_JOINT;
    cfg->beta = 1.0;

    cfg->tree = POET_TREE_BINARY;
    cfg->arity = 2;
    cfg->overlap = POET_OVERLAP_NONE;
    cfg->chunks = 1;
    cfg->group_size = 0;
    cfg->timeout = 180.0; /* POET_TREE_DEFAULT_TIMEOUT: minutes, not Open MPI's ~8 (tree.h) */

    snprintf(cfg->run_name, POET_NAME_MAX, "fashion-mnist");
    snprintf(cfg->checkpoint_dir, POET_PATH_MAX, "checkpoints/%s", cfg->run_name);
    cfg->checkpoint_keep = 3;
    cfg->log_flush_every = 50;
}

long poet_config_total_iterations(const poet_config *cfg, long train_size) {
    if (cfg->iterations > 0)
        return cfg->iterations;
    return (long)cfg->epochs * (train_size / cfg->batch_size);
}

const char *const TREE_NAMES[] = {"binary", "kary", "mpi", "auto", NULL};
const char *const OVERLAP_NAMES[] = {"none", "exact", "stale", NULL};
const char *const SCHEDULE_NAMES[] = {"constant", "step", "cosine", NULL};
const char *const OBJECTIVE_NAMES[] = {"joint", "independent", "blend", NULL};
const char *const CONVOLUTION_NAMES[] = {"gemm", "onednn", NULL};
const char *const LAYER_NAMES[] = {"conv",   "relu", "avg_pool",  "max_pool",
                                   "linear", "add",  "batchnorm", NULL};

const char *poet_tree_kind_name(poet_tree_kind kind) {
    return (unsigned)kind <= POET_TREE_AUTO ? TREE_NAMES[kind] : "unknown";
}

const char *poet_overlap_mode_name(poet_overlap_mode mode) {
    return (unsigned)mode <= POET_OVERLAP_STALE ? OVERLAP_NAMES[mode] : "unknown";
}

const char *poet_layer_kind_name(poet_layer_kind kind) {
    return (unsigned)kind <= POET_LAYER_BATCHNORM ? LAYER_NAMES[kind] : "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * The keys each level accepts (also used to suggest a key that was put in the wrong section)
 * ------------------------------------------------------------------------------------------- */

static const char *const TOP_KEYS[] = {"data", "model", "training", "distributed", "output", NULL};
static const char *const DATA_KEYS[] = {
    "train_images",   "train_labels", "test_images", "test_labels",  "mean",      "std",
    "shuffle",        "classes",      "format",      "cifar_labels", "layout",    "images_dataset",
    "labels_dataset", "prefetch",     "augment",     "validation",   "in_memory", NULL};
static const char *const AUGMENT_KEYS[] = {"crop_padding", "flip", NULL};
const char *const DATA_FORMATS[] = {"auto", "idx", "cifar", "hdf5", NULL};
const char *const CIFAR_LABELS[] = {"cifar10", "fine", "coarse", NULL};
const char *const LAYOUTS[] = {"auto", "NCHW", "NHWC", NULL};
static const char *const MODEL_KEYS[] = {"members", "architecture", "placement",
                                         "fused",   "convolution",  NULL};
static const char *const TRAINING_KEYS[] = {
    "batch_size", "epochs",       "iterations",     "lr",
    "momentum",   "weight_decay", "nesterov",       "schedule",
    "step_size",  "gamma",        "min_lr",         "seed",
    "threads",    "log_every",    "eval_every",     "decay_bn_bias",
    "objective",  "beta",         "member_dropout", "deadline",
    NULL};
static const char *const DISTRIBUTED_KEYS[] = {
    "tree",    "arity",      "overlap",        "chunks", "memory_limit_gib",
    "timeout", "group_size", "sync_batchnorm", NULL};
static const char *const OUTPUT_KEYS[] = {
    "run_name", "checkpoint_dir",  "checkpoint_every",         "checkpoint_keep",
    "log_file", "log_flush_every", "checkpoint_every_seconds", NULL};
static const char *const GROUP_KEYS[] = {"count", "architecture", NULL};
static const char *const CONV_KEYS[] = {"type", "out_channels", "kernel", "stride", "padding",
                                        "bias", "id",           "input",  NULL};
static const char *const RELU_KEYS[] = {"type", "id", "input", NULL}; /* batchnorm's too */
static const char *const POOL_KEYS[] = {"type",   "kernel", "stride", "padding",
                                        "global", "id",     "input",  NULL};
static const char *const LINEAR_KEYS[] = {"type", "out_features", "bias", "id", "input", NULL};
static const char *const ADD_KEYS[] = {"type", "inputs", "id", NULL};

static const struct {
    const char *name;
    const char *const *keys;
} SECTIONS[] = {{"data", DATA_KEYS},
                {"model", MODEL_KEYS},
                {"training", TRAINING_KEYS},
                {"distributed", DISTRIBUTED_KEYS},
                {"output", OUTPUT_KEYS}};

/* ---------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------- */

/* Marks a key path cut at the buffer's end (only absurdly nested or named keys get there). */
static void mark_cut(char *out, int written) {
    if (written >= KEY_PATH_MAX)
        memcpy(out + KEY_PATH_MAX - 4, "...", 4);
}

/* "parent.key", or "key" at the top level. */
static void key_path(char *out, const char *parent, const char *key) {
    mark_cut(out, parent[0] ? snprintf(out, KEY_PATH_MAX, "%s.%s", parent, key)
                            : snprintf(out, KEY_PATH_MAX, "%s", key));
}

static void index_path(char *out, const char *parent, int index) {
    mark_cut(out, snprintf(out, KEY_PATH_MAX, "%s[%d]", parent, index));
}

/* The JSON text of `item` for a message, cut after SHOWN_VALUE_MAX characters (long arrays then
 * also say how many elements they have); "nothing" for a missing key. */
static void show_value(const cJSON *item, char *out, size_t size) {
    if (!item) {
        snprintf(out, size, "nothing");
        return;
    }
    if (cJSON_IsNumber(item) && !isfinite(item->valuedouble)) { /* cJSON would print null */
        snprintf(out, size, "a number too large for a double");
        return;
    }
    char *text = cJSON_PrintUnformatted((cJSON *)item);
    if (!text) {
        snprintf(out, size, "(a value too large to show)");
        return;
    }
    if (strlen(text) <= SHOWN_VALUE_MAX)
        snprintf(out, size, "%s", text);
    else if (cJSON_IsArray(item))
        snprintf(out, size, "%.*s... (%d elements)", SHOWN_VALUE_MAX, text,
                 cJSON_GetArraySize(item));
    else
        snprintf(out, size, "%.*s...", SHOWN_VALUE_MAX, text);
    cJSON_free(text);
}

/* Records "<src>: <path>: expected <what>, got <value>" and returns POET_ERR_CONFIG. */
static poet_status bad_value(const char *src, const char *path, const char *what,
                             const cJSON *item) {
    char shown[SHOWN_VALUE_MAX + 32];
    show_value(item, shown, sizeof shown);
    return poet_error_set(POET_ERR_CONFIG, "%s: %s: expected %s, got %s", src,
                          path[0] ? path : "top level", what, shown);
}

/* Levenshtein distance ignoring case; long strings count as far apart (no suggestion for them). */
static int edit_distance(const char *a, const char *b) {
    enum { LONGEST = 48 };
    size_t la = strlen(a), lb = strlen(b);
    if (la > LONGEST || lb > LONGEST)
        return INT_MAX;
    int row[LONGEST + 1]; /* distances from a[0..i) to b[0..j) for the current i */
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diagonal = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int above = row[j];
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int best = diagonal + cost;
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* The key path to suggest for unknown `key` under `parent`: a close spelling among the keys of this
 * level, else the same key in another section (e.g. "batch_size" put under "model"). */
static int suggest_key(const char *parent, const char *key, const char *const *allowed, char *out) {
    int best = INT_MAX;
    const char *best_key = NULL;
    for (const char *const *k = allowed; *k; k++) {
        int d = edit_distance(key, *k);
        int tolerated = strlen(*k) <= 3 ? 1 : 2; /* short keys: one edit, else anything matches */
        if (d <= tolerated && d < best) {
            best = d;
            best_key = *k;
        }
    }
    if (best_key) {
        key_path(out, parent, best_key);
        return 1;
    }
    if (strchr(parent, '[')) /* inside layers and groups only local spellings make sense */
        return 0;
    for (size_t s = 0; s < sizeof SECTIONS / sizeof SECTIONS[0]; s++)
        for (const char *const *k = SECTIONS[s].keys; *k; k++)
            if (edit_distance(key, *k) == 0 && strcmp(parent, SECTIONS[s].name) != 0) {
                key_path(out, SECTIONS[s].name, *k);
                return 1;
            }
    return 0;
}

static poet_status unknown_key(const char *src, const char *parent, const char *key,
                               const char *const *allowed) {
    char path[KEY_PATH_MAX], suggestion[KEY_PATH_MAX];
    key_path(path, parent, key);
    if (suggest_key(parent, key, allowed, suggestion))
        return poet_error_set(POET_ERR_CONFIG, "%s: %s: unknown key, did you mean %s?", src, path,
                              suggestion);
    char list[512] = "";
    size_t used = 0;
    for (const char *const *k = allowed; *k && used < sizeof list; k++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s%s", k == allowed ? "" : ", ", *k);
    return poet_error_set(POET_ERR_CONFIG, "%s: %s: unknown key, expected one of: %s", src, path,
                          list);
}

/* Fails unless `obj` is an object whose keys are all in `allowed` (NULL-terminated), each once. */
static poet_status check_object(const char *src, const char *path, const cJSON *obj,
                                const char *const *allowed, const char *what) {
    if (!cJSON_IsObject(obj))
        return bad_value(src, path, what, obj);
    for (const cJSON *child = obj->child; child; child = child->next) {
        const char *const *k = allowed;
        while (*k && strcmp(*k, child->string) != 0)
            k++;
        if (!*k)
            return unknown_key(src, path, child->string, allowed);
        for (const cJSON *earlier = obj->child; earlier != child; earlier = earlier->next)
            if (strcmp(earlier->string, child->string) == 0) {
                char child_path[KEY_PATH_MAX], shown[SHOWN_VALUE_MAX + 32];
                key_path(child_path, path, child->string);
                show_value(child, shown, sizeof shown);
                return poet_error_set(
                    POET_ERR_CONFIG,
                    "%s: %s: expected each key at most once, got a second value %s", src,
                    child_path, shown);
            }
    }
    return POET_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Typed values. read_* check one JSON value found at `path`; opt_* look up an optional key and
 * leave *out untouched when the key is absent.
 * ------------------------------------------------------------------------------------------- */

/* An integer in [lo, hi]. `hi_is_type_limit` says hi only marks the field's capacity, so the
 * message says "integer >= lo" unless the value is above it. `what` overrides the description. */
static poet_status read_integer(const char *src, const char *path, const cJSON *item, long long lo,
                                long long hi, int hi_is_type_limit, const char *what,
                                long long *out) {
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (isfinite(d) && d == floor(d) && d >= (double)lo && d <= (double)hi) {
            *out = (long long)d;
            return POET_OK;
        }
    }
    char described[96];
    if (!what) {
        int above = cJSON_IsNumber(item) && item->valuedouble > (double)hi;
        if (hi_is_type_limit && !above)
            snprintf(described, sizeof described, "integer >= %lld", lo);
        else
            snprintf(described, sizeof described, "integer between %lld and %lld", lo, hi);
        what = described;
    }
    return bad_value(src, path, what, item);
}

static poet_status read_int(const char *src, const char *path, const cJSON *item, int lo, int hi,
                            int *out) {
    long long v = 0;
    poet_status st = read_integer(src, path, item, lo, hi, hi == INT_MAX, NULL, &v);
    if (st == POET_OK)
        *out = (int)v;
    return st;
}

static poet_status opt_int(const char *src, const char *parent, const cJSON *obj, const char *key,
                           int lo, int hi, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    char path[KEY_PATH_MAX];
    key_path(path, parent, key);
    return read_int(src, path, item, lo, hi, out);
}

/* A key whose value is an integer up to 2^53 (iterations, step sizes): exact in JSON. */
static poet_status opt_long(const char *src, const char *parent, const cJSON *obj, const char *key,
                            long lo, long *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    char path[KEY_PATH_MAX];
    key_path(path, parent, key);
    long long hi = EXACT_INT_MAX < LONG_MAX ? EXACT_INT_MAX : LONG_MAX;
    long long v = 0;
    poet_status st = read_integer(src, path, item, lo, hi, 1, NULL, &v);
    if (st == POET_OK)
        *out = (long)v;
    return st;
}

/* A number within bounds; `lo_open`/`hi_open` exclude the bound; NAN bounds mean unbounded. */
static poet_status opt_number(const char *src, const char *parent, const cJSON *obj,
                              const char *key, double lo, int lo_open, double hi, int hi_open,
                              double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        int ok = isfinite(d);
        if (!isnan(lo))
            ok = ok && (lo_open ? d > lo : d >= lo);
        if (!isnan(hi))
            ok = ok && (hi_open ? d < hi : d <= hi);
        if (ok) {
            *out = d;
            return POET_OK;
        }
    }
    char what[96], path[KEY_PATH_MAX];
    if (isnan(lo) && isnan(hi))
        snprintf(what, sizeof what, "finite number");
    else if (isnan(hi))
        snprintf(what, sizeof what, "number %s %g", lo_open ? ">" : ">=", lo);
    else if (isnan(lo))
        snprintf(what, sizeof what, "number %s %g", hi_open ? "<" : "<=", hi);
    else
        snprintf(what, sizeof what, "number in %c%g, %g%c", lo_open ? '(' : '[', lo, hi,
                 hi_open ? ')' : ']');
    key_path(path, parent, key);
    return bad_value(src, path, what, item);
}

static poet_status opt_bool(const char *src, const char *parent, const cJSON *obj, const char *key,
                            int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    if (!cJSON_IsBool(item)) {
        char path[KEY_PATH_MAX];
        key_path(path, parent, key);
        return bad_value(src, path, "true or false", item);
    }
    *out = cJSON_IsTrue(item);
    return POET_OK;
}

/* A string that fits `size` bytes with its terminator; empty only when `allow_empty`. */
static poet_status opt_string(const char *src, const char *parent, const cJSON *obj,
                              const char *key, int allow_empty, char *out, size_t size) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    char path[KEY_PATH_MAX], what[96];
    key_path(path, parent, key);
    const char *text = cJSON_GetStringValue(item);
    size_t len = text ? strlen(text) : 0;
    if (!text || (!allow_empty && len == 0) || len >= size) {
        snprintf(what, sizeof what, "%sstring of at most %zu bytes",
                 allow_empty ? "" : "non-empty ", size - 1);
        return bad_value(src, path, what, item);
    }
    memcpy(out, text, len + 1);
    return POET_OK;
}

/* One of `names` (NULL-terminated); *out becomes its index. */
static poet_status read_enum(const char *src, const char *path, const cJSON *item,
                             const char *const *names, int *out) {
    const char *text = cJSON_GetStringValue(item);
    for (int i = 0; text && names[i]; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return POET_OK;
        }
    char what[256] = "one of ";
    size_t used = strlen(what);
    for (int i = 0; names[i] && used < sizeof what; i++)
        used +=
            (size_t)snprintf(what + used, sizeof what - used, "%s\"%s\"", i ? ", " : "", names[i]);
    return bad_value(src, path, what, item);
}

static poet_status opt_enum(const char *src, const char *parent, const cJSON *obj, const char *key,
                            const char *const *names, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return POET_OK;
    char path[KEY_PATH_MAX];
    key_path(path, parent, key);
    return read_enum(src, path, item, names, out);
}

/* ---------------------------------------------------------------------------------------------
 * Sections
 * ------------------------------------------------------------------------------------------- */

/* data.mean / data.std: a number, or an array of 1..POET_DATA_MAX_CHANNELS numbers (one per
 * channel) within the same bounds; *count is 0 for a number, else the array's length. */
static poet_status opt_norm(const char *src, const cJSON *data, const char *key, double lo,
                            double hi, double *scalar, double *values, int *count) {
    poet_status st = POET_OK;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(data, key);
    if (!cJSON_IsArray(item)) {
        POET_TRY(opt_number(src, "data", data, key, lo, 0, hi, 0, scalar));
        if (item)
            *count = 0;
        return POET_OK;
    }
    int n = cJSON_GetArraySize(item);
    if (n < 1 || n > POET_DATA_MAX_CHANNELS) {
        char path[KEY_PATH_MAX], what[96];
        key_path(path, "data", key);
        snprintf(what, sizeof what, "a number or an array of 1..%d numbers",
                 POET_DATA_MAX_CHANNELS);
        return bad_value(src, path, what, item);
    }
    for (int i = 0; i < n; i++) {
        char name[32];
        cJSON *element = cJSON_GetArrayItem(item, i);
        snprintf(name, sizeof name, "%s[%d]", key, i);
        /* opt_number looks keys up by name: check the element through a one-key object. */
        cJSON *one = cJSON_CreateObject();
        if (!one || !cJSON_AddItemReferenceToObject(one, name, element)) {
            cJSON_Delete(one);
            POET_FAIL(POET_ERR_NOMEM, "%s: out of memory checking data.%s", src, name);
        }
        st = opt_number(src, "data", one, name, lo, 0, hi, 0, &values[i]);
        cJSON_Delete(one);
        POET_TRY(st);
    }
    *scalar = values[0];
    *count = n;
fail:
    return st;
}

static poet_status parse_data(const char *src, const cJSON *data, poet_config *cfg) {
    poet_status st = POET_OK;
    if (!data)
        return POET_OK;
    POET_TRY(check_object(src, "data", data, DATA_KEYS, "object"));
    POET_TRY(opt_string(src, "data", data, "train_images", 0, cfg->train_images, POET_PATH_MAX));
    POET_TRY(opt_string(src, "data", data, "train_labels", 0, cfg->train_labels, POET_PATH_MAX));
    POET_TRY(opt_string(src, "data", data, "test_images", 0, cfg->test_images, POET_PATH_MAX));
    POET_TRY(opt_string(src, "data", data, "test_labels", 0, cfg->test_labels, POET_PATH_MAX));
    /* Pixels are x/255 in [0, 1] before (x - mean) / std: within these bounds every input stays
     * within ±2000 (std 1/255 with mean 0 gives the raw 0..255 scale), so no constant can make
     * inputs, and then weights, infinite. */
    /* "auto": computed from the training set when a run starts (normalise.c). */
    const char *mean_text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "mean"));
    const char *std_text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "std"));
    cfg->mean_auto = mean_text && !strcmp(mean_text, "auto");
    cfg->std_auto = std_text && !strcmp(std_text, "auto");
    if (!cfg->mean_auto)
        POET_TRY(opt_norm(src, data, "mean", POET_MEAN_MIN, POET_MEAN_MAX, &cfg->mean,
                          cfg->channel_mean, &cfg->mean_count));
    if (!cfg->std_auto)
        POET_TRY(opt_norm(src, data, "std", POET_STD_MIN, POET_STD_MAX, &cfg->std, cfg->channel_std,
                          &cfg->std_count));
    if (cfg->mean_count && cfg->std_count && cfg->mean_count != cfg->std_count)
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: data.std: expected %d values, one per channel as data.mean, got %d", src,
                  cfg->mean_count, cfg->std_count);
    POET_TRY(opt_bool(src, "data", data, "shuffle", &cfg->shuffle));
    POET_TRY(opt_int(src, "data", data, "classes", 2, 256, &cfg->classes));
    int format = cfg->format, cifar = cfg->cifar_labels, layout = cfg->layout;
    POET_TRY(opt_enum(src, "data", data, "format", DATA_FORMATS, &format));
    POET_TRY(opt_enum(src, "data", data, "cifar_labels", CIFAR_LABELS, &cifar));
    POET_TRY(opt_enum(src, "data", data, "layout", LAYOUTS, &layout));
    cfg->format = (poet_data_format)format;
    cfg->cifar_labels = (poet_cifar_labels)cifar;
    cfg->layout = (poet_data_layout)layout;
    POET_TRY(
        opt_string(src, "data", data, "images_dataset", 0, cfg->images_dataset, POET_NAME_MAX));
    POET_TRY(
        opt_string(src, "data", data, "labels_dataset", 0, cfg->labels_dataset, POET_NAME_MAX));
    POET_TRY(opt_int(src, "data", data, "prefetch", 0, 16, &cfg->prefetch));
    POET_TRY(opt_number(src, "data", data, "validation", 0, 0, 2147483647.0, 0, &cfg->validation));
    if (cfg->validation >= 1 && cfg->validation != floor(cfg->validation))
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: data.validation: expected a whole number of images or a fraction below 1, "
                  "got %g",
                  src, cfg->validation);
    POET_TRY(opt_bool(src, "data", data, "in_memory", &cfg->in_memory));
    /* A streamed file is read through HDF5, which this build may not let two threads use. */
    if (!cfg->in_memory && (cfg->prefetch > 0 || cfg->validation > 0))
        POET_FAIL(POET_ERR_CONFIG,
                  "%s: data.in_memory: false needs data.prefetch 0 and no data.validation (got "
                  "prefetch %d, validation %g)",
                  src, cfg->prefetch, cfg->validation);
    const cJSON *augment = cJSON_GetObjectItemCaseSensitive(data, "augment");
    if (augment) {
        POET_TRY(check_object(src, "data.augment", augment, AUGMENT_KEYS, "object"));
        POET_TRY(opt_int(src, "data.augment", augment, "crop_padding", 0, 1024,
                         &cfg->augment_crop_padding));
        POET_TRY(opt_bool(src, "data.augment", augment, "flip", &cfg->augment_flip));
    }
fail:
    return st;
}

long poet_config_validation_count(const poet_config *cfg, long n) {
    if (cfg->validation <= 0)
        return 0;
    if (cfg->validation >= 1)
        return (long)cfg->validation;
    long count = (long)floor(cfg->validation * (double)n);
    return count > 0 ? count : 1;
}

void poet_config_data_spec(const poet_config *cfg, int test, poet_data_spec *spec) {
    memset(spec, 0, sizeof *spec);
    spec->format = cfg->format;
    spec->images = test ? cfg->test_images : cfg->train_images;
    spec->labels = test ? cfg->test_labels : cfg->train_labels;
    spec->classes = cfg->classes;
    /* A single number applies to every channel; an array gives one per channel (the other key,
     * when a single number, is repeated to match). */
    int n = cfg->mean_count > cfg->std_count ? cfg->mean_count : cfg->std_count;
    spec->n_norm = n ? n : 1;
    for (int c = 0; c < spec->n_norm; c++) {
        spec->mean[c] = cfg->mean_count ? cfg->channel_mean[c] : cfg->mean;
        spec->std[c] = cfg->std_count ? cfg->channel_std[c] : cfg->std;
    }
    spec->cifar = cfg->cifar_labels;
    spec->images_dataset = cfg->images_dataset;
    spec->labels_dataset = cfg->labels_dataset;
    spec->layout = cfg->layout;
    spec->streamed = !cfg->in_memory;
}

/* A required integer key of a layer or group object. */
static poet_status need_int(const char *src, const char *parent, const cJSON *obj, const char *key,
                            int lo, int hi, int *out) {
    char path[KEY_PATH_MAX];
    key_path(path, parent, key);
    return read_int(src, path, cJSON_GetObjectItemCaseSensitive(obj, key), lo, hi, out);
}

static poet_status parse_pool(const char *src, const char *path, const cJSON *item,
                              poet_layer_spec *spec) {
    poet_status st = POET_OK;
    POET_TRY(opt_bool(src, path, item, "global", &spec->global));
    if (spec->global) {
        /* The window is the whole input, so a kernel, stride or padding would be contradicted. */
        static const char *const WINDOW_KEYS[] = {"kernel", "stride", "padding", NULL};
        for (const char *const *k = WINDOW_KEYS; *k; k++) {
            const cJSON *given = cJSON_GetObjectItemCaseSensitive(item, *k);
            char key[KEY_PATH_MAX];
            key_path(key, path, *k);
            if (given)
                return bad_value(src, key, "no kernel, stride or padding with \"global\": true",
                                 given);
        }
        return POET_OK;
    }
    POET_TRY(need_int(src, path, item, "kernel", 1, INT_MAX, &spec->kernel));
    spec->stride = spec->kernel; /* PyTorch's stride=None */
    POET_TRY(opt_int(src, path, item, "stride", 1, INT_MAX, &spec->stride));
    /* PyTorch's rule: padding beyond half the kernel would make windows of padding only. */
    POET_TRY(opt_int(src, path, item, "padding", 0, spec->kernel / 2, &spec->padding));
fail:
    return st;
}

/* A layer's optional "id": letters, digits, '_', '-', '.', at most POET_ID_MAX - 1 bytes. */
static poet_status parse_id(const char *src, const char *path, const cJSON *item,
                            poet_layer_spec *spec) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
    if (!id)
        return POET_OK;
    char key[KEY_PATH_MAX], what[128];
    key_path(key, path, "id");
    snprintf(what, sizeof what, "string of 1 to %d letters, digits, '_', '-' or '.'",
             POET_ID_MAX - 1);
    const char *text = cJSON_GetStringValue(id);
    if (!text || !text[0] || strlen(text) >= POET_ID_MAX)
        return bad_value(src, key, what, id);
    for (const char *c = text; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("_-.", *c))
            return bad_value(src, key, what, id);
    snprintf(spec->id, sizeof spec->id, "%s", text);
    return POET_OK;
}

/* One layer object at `path` (e.g. "model.architecture[2]"). Unused spec fields stay 0; its
 * inputs are resolved once every layer's id is known (parse_inputs). */
static poet_status parse_layer(const char *src, const char *path, const cJSON *item,
                               poet_layer_spec *spec) {
    poet_status st = POET_OK;
    memset(spec, 0, sizeof *spec);
    if (!cJSON_IsObject(item))
        return bad_value(src, path, "layer object such as {\"type\": \"relu\"}", item);
    char type_path[KEY_PATH_MAX];
    key_path(type_path, path, "type");
    int kind = 0;
    POET_TRY(read_enum(src, type_path, cJSON_GetObjectItemCaseSensitive(item, "type"), LAYER_NAMES,
                       &kind));
    spec->kind = (poet_layer_kind)kind;
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(item, "bias");
    if (bias && spec->kind != POET_LAYER_CONV && spec->kind != POET_LAYER_LINEAR) {
        char what[96];
        key_path(type_path, path, "bias");
        snprintf(what, sizeof what, "no \"bias\" on a %s layer (only conv and linear have one)",
                 LAYER_NAMES[kind]);
        return bad_value(src, type_path, what, bias);
    }
    if (bias) { /* "bias": true is the default, written out */
        int has = 1;
        POET_TRY(opt_bool(src, path, item, "bias", &has));
        spec->no_bias = !has;
    }
    switch (spec->kind) {
    case POET_LAYER_CONV:
        POET_TRY(check_object(src, path, item, CONV_KEYS, "layer object"));
        POET_TRY(need_int(src, path, item, "out_channels", 1, INT_MAX, &spec->out));
        POET_TRY(need_int(src, path, item, "kernel", 1, INT_MAX, &spec->kernel));
        spec->stride = 1;
        POET_TRY(opt_int(src, path, item, "stride", 1, INT_MAX, &spec->stride));
        POET_TRY(opt_int(src, path, item, "padding", 0, INT_MAX, &spec->padding));
        break;
    case POET_LAYER_RELU:
    case POET_LAYER_BATCHNORM:
        POET_TRY(check_object(src, path, item, RELU_KEYS, "layer object"));
        break;
    case POET_LAYER_AVG_POOL:
    case POET_LAYER_MAX_POOL:
        POET_TRY(check_object(src, path, item, POOL_KEYS, "layer object"));
        POET_TRY(parse_pool(src, path, item, spec));
        break;
    case POET_LAYER_LINEAR:
        POET_TRY(check_object(src, path, item, LINEAR_KEYS, "layer object"));
        POET_TRY(need_int(src, path, item, "out_features", 1, INT_MAX, &spec->out));
        break;
    case POET_LAYER_ADD:
        POET_TRY(check_object(src, path, item, ADD_KEYS, "layer object"));
        break;
    }
    POET_TRY(parse_id(src, path, item, spec));
fail:
    return st;
}

/* Where layer `index` finds the layer `name` refers to: an earlier layer, or a message naming
 * `path` (the "input" key, or one element of "inputs"). */
static poet_status resolve_input(const char *src, const char *path, const cJSON *name,
                                 const poet_arch *arch, int n_layers, int index, int *out) {
    const char *text = cJSON_GetStringValue(name);
    if (!text || !text[0])
        return bad_value(src, path, "the id of an earlier layer (a string)", name);
    for (int j = 0; j < n_layers; j++) {
        if (strcmp(arch->layers[j].id, text) != 0)
            continue;
        if (j == index)
            return poet_error_set(POET_ERR_CONFIG,
                                  "%s: %s: expected the id of an earlier layer, got \"%s\", this "
                                  "layer's own id (a cycle)",
                                  src, path, text);
        if (j > index)
            return poet_error_set(POET_ERR_CONFIG,
                                  "%s: %s: expected the id of an earlier layer, got \"%s\", layer "
                                  "%d's, which comes later (a layer reads only earlier layers, so "
                                  "the network has no cycles)",
                                  src, path, text, j);
        *out = j;
        return POET_OK;
    }
    return poet_error_set(POET_ERR_CONFIG,
                          "%s: %s: expected the id of an earlier layer, got \"%s\", which no "
                          "layer has",
                          src, path, text);
}

/* Layer `index`'s "input" (one id) or, for add, "inputs" (2..POET_MAX_INPUTS ids). An input that
 * names the previous layer is the default and is stored as such (n_inputs 0), so two ways of
 * writing one network compare equal. */
static poet_status parse_inputs(const char *src, const char *path, const cJSON *item,
                                poet_arch *arch, int n_layers, int index) {
    poet_status st = POET_OK;
    poet_layer_spec *spec = &arch->layers[index];
    char key[KEY_PATH_MAX], element[KEY_PATH_MAX];
    if (spec->kind != POET_LAYER_ADD) {
        const cJSON *input = cJSON_GetObjectItemCaseSensitive(item, "input");
        if (!input)
            return POET_OK;
        key_path(key, path, "input");
        POET_TRY(resolve_input(src, key, input, arch, n_layers, index, &spec->inputs[0]));
        spec->n_inputs = spec->inputs[0] == index - 1 ? 0 : 1;
        return POET_OK;
    }
    key_path(key, path, "inputs");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(item, "inputs");
    char what[96];
    snprintf(what, sizeof what, "array of 2 to %d layer ids", POET_MAX_INPUTS);
    int n = cJSON_IsArray(inputs) ? cJSON_GetArraySize(inputs) : 0;
    if (n < 2 || n > POET_MAX_INPUTS)
        return bad_value(src, key, what, inputs);
    int i = 0;
    for (const cJSON *name = inputs->child; name; name = name->next, i++) {
        index_path(element, key, i);
        POET_TRY(resolve_input(src, element, name, arch, n_layers, index, &spec->inputs[i]));
        for (int k = 0; k < i; k++)
            if (spec->inputs[k] == spec->inputs[i])
                return bad_value(src, element, "a layer id not already in inputs", name);
    }
    spec->n_inputs = n;
fail:
    return st;
}

/* Every layer but the last must be read by a later one: an output nobody reads is a mistake in
 * the graph (a forgotten "input"), not something to compute and throw away. */
static poet_status check_outputs_read(const char *src, const char *path, const poet_arch *arch) {
    for (int i = 0; i + 1 < arch->n_layers; i++) {
        int read = 0;
        for (int j = i + 1; j < arch->n_layers && !read; j++) {
            const poet_layer_spec *s = &arch->layers[j];
            if (s->n_inputs == 0)
                read = j == i + 1;
            for (int k = 0; k < s->n_inputs; k++)
                read |= s->inputs[k] == i;
        }
        if (!read)
            return poet_error_set(POET_ERR_CONFIG,
                                  "%s: %s[%d]: expected a layer whose output a later layer reads, "
                                  "got a %s that no layer reads (name it in a later layer's "
                                  "\"input\"/\"inputs\", or remove it)",
                                  src, path, i, poet_layer_kind_name(arch->layers[i].kind));
    }
    return POET_OK;
}

/* ARCH: "reference" or an array of layer objects. `item` NULL means the reference network. */
static poet_status parse_arch(const char *src, const char *path, const cJSON *item, int classes,
                              poet_arch *arch) {
    poet_status st = POET_OK;
    const char *what = "\"reference\", \"resnet-N\" (N = 6n+2, 8..68), \"wrn-N-k\" (N = 6n+4 >= "
                       "10, k >= 1) or non-empty array of layer objects";
    const char *text = cJSON_GetStringValue(item);
    if (!item || (text && strcmp(text, "reference") == 0)) {
        poet_config_reference_arch(arch, classes);
        return POET_OK;
    }
    if (text && poet_arch_builtin(text, classes, arch))
        return POET_OK;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) == 0)
        return bad_value(src, path, what, item);
    if (cJSON_GetArraySize(item) > POET_MAX_LAYERS) {
        char limited[96];
        snprintf(limited, sizeof limited, "array of at most %d layers", POET_MAX_LAYERS);
        return bad_value(src, path, limited, item);
    }
    memset(arch, 0, sizeof *arch);
    int i = 0;
    for (const cJSON *layer = item->child; layer; layer = layer->next, i++) {
        char layer_path[KEY_PATH_MAX], id_path[KEY_PATH_MAX];
        index_path(layer_path, path, i);
        POET_TRY(parse_layer(src, layer_path, layer, &arch->layers[i]));
        for (int j = 0; j < i && arch->layers[i].id[0]; j++)
            if (strcmp(arch->layers[j].id, arch->layers[i].id) == 0) {
                char what[96];
                key_path(id_path, layer_path, "id");
                snprintf(what, sizeof what, "an id no other layer has (layer %d has it)", j);
                return bad_value(src, id_path, what, cJSON_GetObjectItemCaseSensitive(layer, "id"));
            }
    }
    arch->n_layers = i;
    i = 0;
    for (const cJSON *layer = item->child; layer; layer = layer->next, i++) {
        char layer_path[KEY_PATH_MAX];
        index_path(layer_path, path, i);
        POET_TRY(parse_inputs(src, layer_path, layer, arch, arch->n_layers, i));
    }
    POET_TRY(check_outputs_read(src, path, arch));
fail:
    return st;
}

/* Index of `arch` in cfg->archs, appending it when new (names: "reference" for the built-in
 * network however it was written, else "custom-<index>"); -1 when the table is full. */
static int intern_arch(poet_config *cfg, const poet_arch *arch) {
    for (int a = 0; a < cfg->n_archs; a++)
        if (poet_arch_equal(&cfg->archs[a], arch))
            return a;
    if (cfg->n_archs == POET_MAX_ARCHS)
        return -1;
    int a = cfg->n_archs++;
    poet_arch reference;
    poet_config_reference_arch(&reference, cfg->classes);
    cfg->archs[a] = *arch;
    poet_arch *builtin = malloc(sizeof *builtin);
    int named = builtin && poet_arch_builtin(arch->name, cfg->classes, builtin) &&
                poet_arch_equal(arch, builtin);
    free(builtin);
    if (named)
        return a; /* keeps its name: "resnet-20" */
    memset(cfg->archs[a].name, 0, POET_NAME_MAX);
    if (poet_arch_equal(arch, &reference))
        snprintf(cfg->archs[a].name, POET_NAME_MAX, "reference");
    else
        snprintf(cfg->archs[a].name, POET_NAME_MAX, "custom-%d", a);
    return a;
}

/* model.members as an array of {"count", "architecture"} groups, numbered in order. */
static poet_status parse_groups(const char *src, const cJSON *groups, poet_config *cfg) {
    poet_status st = POET_OK;
    poet_arch *arch = NULL;
    POET_ALLOC(arch, 1);
    int g = 0, total = 0;
    for (const cJSON *group = groups->child; group; group = group->next, g++) {
        char path[KEY_PATH_MAX], arch_path[KEY_PATH_MAX];
        index_path(path, "model.members", g);
        POET_TRY(check_object(src, path, group, GROUP_KEYS,
                              "group object {\"count\": ..., \"architecture\": ...}"));
        int count = 0;
        POET_TRY(need_int(src, path, group, "count", 1, POET_MAX_MEMBERS, &count));
        if (total + count > POET_MAX_MEMBERS) {
            char what[128], count_path[KEY_PATH_MAX];
            snprintf(what, sizeof what, "integer between 1 and %d (at most %d members in total)",
                     POET_MAX_MEMBERS - total, POET_MAX_MEMBERS);
            key_path(count_path, path, "count");
            st = bad_value(src, count_path, what, cJSON_GetObjectItemCaseSensitive(group, "count"));
            goto fail;
        }
        key_path(arch_path, path, "architecture");
        const cJSON *arch_item = cJSON_GetObjectItemCaseSensitive(group, "architecture");
        POET_TRY(parse_arch(src, arch_path, arch_item, cfg->classes, arch));
        int a = intern_arch(cfg, arch);
        if (a < 0) {
            char what[96];
            snprintf(what, sizeof what, "at most %d distinct architectures", POET_MAX_ARCHS);
            st = bad_value(src, arch_path, what, arch_item);
            goto fail;
        }
        for (int j = 0; j < count; j++)
            cfg->member_arch[total + j] = a;
        total += count;
    }
    cfg->members = total;
fail:
    free(arch);
    return st;
}

/* model.placement: "block", or one rank per member. */
static poet_status parse_placement(const char *src, const cJSON *placement, poet_config *cfg) {
    poet_status st = POET_OK;
    const char *text = cJSON_GetStringValue(placement);
    if (!placement || (text && strcmp(text, "block") == 0))
        return POET_OK;
    char what[96];
    snprintf(what, sizeof what, "\"block\" or array of %d ranks >= 0 (one per member)",
             cfg->members);
    if (!cJSON_IsArray(placement) || cJSON_GetArraySize(placement) != cfg->members)
        return bad_value(src, "model.placement", what, placement);
    int j = 0;
    for (const cJSON *rank = placement->child; rank; rank = rank->next, j++) {
        char path[KEY_PATH_MAX];
        index_path(path, "model.placement", j);
        POET_TRY(read_int(src, path, rank, 0, INT_MAX, &cfg->member_rank[j]));
    }
    cfg->placement_explicit = 1;
fail:
    return st;
}

static poet_status parse_model(const char *src, const cJSON *model, poet_config *cfg) {
    poet_status st = POET_OK;
    poet_arch *arch = NULL;
    const cJSON *members = NULL, *arch_item = NULL, *placement = NULL;
    if (model) {
        POET_TRY(check_object(src, "model", model, MODEL_KEYS, "object"));
        members = cJSON_GetObjectItemCaseSensitive(model, "members");
        arch_item = cJSON_GetObjectItemCaseSensitive(model, "architecture");
        placement = cJSON_GetObjectItemCaseSensitive(model, "placement");
        POET_TRY(opt_bool(src, "model", model, "fused", &cfg->fused));
        POET_TRY(
            opt_enum(src, "model", model, "convolution", CONVOLUTION_NAMES, &cfg->convolution));
    }
    cfg->n_archs = 0;
    memset(cfg->archs, 0, sizeof cfg->archs);
    memset(cfg->member_arch, 0, sizeof cfg->member_arch);
    if (cJSON_IsArray(members) && cJSON_GetArraySize(members) > 0) {
        if (arch_item)
            return bad_value(src, "model.architecture",
                             "no model-level architecture when model.members lists groups (give "
                             "each group its own)",
                             arch_item);
        POET_TRY(parse_groups(src, members, cfg));
    } else {
        if (members) {
            long long m = 0;
            POET_TRY(read_integer(src, "model.members", members, 1, POET_MAX_MEMBERS, 0,
                                  "integer between 1 and 1024 or non-empty array of groups", &m));
            cfg->members = (int)m;
        }
        POET_ALLOC(arch, 1);
        POET_TRY(parse_arch(src, "model.architecture", arch_item, cfg->classes, arch));
        intern_arch(cfg, arch); /* the first entry of an empty table: cannot fail */
    }
    POET_TRY(parse_placement(src, placement, cfg));
fail:
    free(arch);
    return st;
}

static poet_status parse_training(const char *src, const cJSON *t, poet_config *cfg) {
    poet_status st = POET_OK;
    if (!t)
        return POET_OK;
    POET_TRY(check_object(src, "training", t, TRAINING_KEYS, "object"));
    POET_TRY(opt_int(src, "training", t, "batch_size", 1, INT_MAX, &cfg->batch_size));
    POET_TRY(opt_int(src, "training", t, "epochs", 1, INT_MAX, &cfg->epochs));
    POET_TRY(opt_long(src, "training", t, "iterations", 0, &cfg->iterations));
    POET_TRY(opt_number(src, "training", t, "lr", 0.0, 1, NAN, 0, &cfg->lr));
    POET_TRY(opt_number(src, "training", t, "momentum", 0.0, 0, 1.0, 1, &cfg->momentum));
    POET_TRY(opt_number(src, "training", t, "weight_decay", 0.0, 0, NAN, 0, &cfg->weight_decay));
    POET_TRY(opt_bool(src, "training", t, "nesterov", &cfg->nesterov));
    POET_TRY(opt_bool(src, "training", t, "decay_bn_bias", &cfg->decay_bn_bias));
    int schedule = (int)cfg->schedule;
    POET_TRY(opt_enum(src, "training", t, "schedule", SCHEDULE_NAMES, &schedule));
    cfg->schedule = (poet_lr_schedule)schedule;
    POET_TRY(opt_long(src, "training", t, "step_size", 1, &cfg->step_size));
    POET_TRY(opt_number(src, "training", t, "gamma", 0.0, 1, 1.0, 0, &cfg->gamma));
    POET_TRY(opt_number(src, "training", t, "min_lr", 0.0, 0, NAN, 0, &cfg->min_lr));
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(t, "seed");
    if (seed) {
        long long v = 0;
        POET_TRY(read_integer(src, "training.seed", seed, 0, EXACT_INT_MAX, 0, NULL, &v));
        cfg->seed = (uint64_t)v;
    }
    POET_TRY(opt_int(src, "training", t, "threads", 0, INT_MAX, &cfg->threads));
    POET_TRY(opt_int(src, "training", t, "log_every", 0, INT_MAX, &cfg->log_every));
    POET_TRY(opt_int(src, "training", t, "eval_every", 0, INT_MAX, &cfg->eval_every));
    /* Only the form here: whether it is past, or what Slurm says, is asked when training starts. */
    POET_TRY(opt_string(src, "training", t, "deadline", 1, cfg->deadline, sizeof cfg->deadline));
    if (cfg->deadline[0] && !poet_deadline_valid(cfg->deadline))
        return bad_value(src, "training.deadline",
                         "\"slurm\" or an ISO time such as \"2026-12-02T15:40:00\"",
                         cJSON_GetObjectItemCaseSensitive(t, "deadline"));
    /* Nesterov's look-ahead is a momentum step; without momentum it silently does nothing. */
    if (cfg->nesterov && cfg->momentum == 0.0)
        return bad_value(src, "training.nesterov",
                         "false when training.momentum is 0 (Nesterov needs momentum > 0)",
                         cJSON_GetObjectItemCaseSensitive(t, "nesterov"));
    int objective = (int)cfg->objective;
    POET_TRY(opt_enum(src, "training", t, "objective", OBJECTIVE_NAMES, &objective));
    cfg->objective = (poet_objective)objective;
    /* beta only means something for a blend; joint and independent are its two ends. */
    const cJSON *beta = cJSON_GetObjectItemCaseSensitive(t, "beta");
    if (beta && cfg->objective != POET_OBJECTIVE_BLEND)
        return bad_value(src, "training.beta", "no beta unless training.objective is \"blend\"",
                         beta);
    if (cfg->objective == POET_OBJECTIVE_BLEND && !beta)
        return bad_value(src, "training.objective",
                         "\"blend\" together with training.beta (a number in [0, 1])",
                         cJSON_GetObjectItemCaseSensitive(t, "objective"));
    cfg->beta = cfg->objective == POET_OBJECTIVE_JOINT ? 1.0 : 0.0;
    POET_TRY(opt_number(src, "training", t, "beta", 0.0, 0, 1.0, 0, &cfg->beta));
    POET_TRY(
        opt_number(src, "training", t, "member_dropout", 0.0, 0, 1.0, 1, &cfg->member_dropout));
fail:
    return st;
}

static poet_status parse_distributed(const char *src, const cJSON *d, poet_config *cfg) {
    poet_status st = POET_OK;
    cJSON *shown = NULL;
    if (d) {
        POET_TRY(check_object(src, "distributed", d, DISTRIBUTED_KEYS, "object"));
        int tree = (int)cfg->tree, overlap = (int)cfg->overlap;
        POET_TRY(opt_enum(src, "distributed", d, "tree", TREE_NAMES, &tree));
        cfg->tree = (poet_tree_kind)tree;
        POET_TRY(opt_int(src, "distributed", d, "arity", 2, POET_MAX_ARITY, &cfg->arity));
        POET_TRY(opt_enum(src, "distributed", d, "overlap", OVERLAP_NAMES, &overlap));
        cfg->overlap = (poet_overlap_mode)overlap;
        POET_TRY(opt_int(src, "distributed", d, "chunks", 1, 16, &cfg->chunks));
        POET_TRY(opt_number(src, "distributed", d, "memory_limit_gib", 0.0, 0, NAN, 0,
                            &cfg->memory_limit_gib));
        POET_TRY(opt_number(src, "distributed", d, "timeout", 0.0, 0, NAN, 0, &cfg->timeout));
        POET_TRY(opt_int(src, "distributed", d, "group_size", 0, 65536, &cfg->group_size));
        POET_TRY(opt_bool(src, "distributed", d, "sync_batchnorm", &cfg->sync_batchnorm));
    }
    if (cfg->tree == POET_TREE_BINARY)
        cfg->arity = 2;
    /* Micro-batches split every batch evenly so their gradients add up to the batch's gradient. */
    if (cfg->batch_size % cfg->chunks != 0) {
        char what[160];
        snprintf(what, sizeof what, "a divisor of training.batch_size (%d)", cfg->batch_size);
        const cJSON *given = cJSON_GetObjectItemCaseSensitive(d, "chunks");
        if (!given) /* the default was used: show it */
            given = shown = cJSON_CreateNumber(cfg->chunks);
        st = bad_value(src, "distributed.chunks", what, given);
    }
fail:
    cJSON_Delete(shown);
    return st;
}

/* [A-Za-z0-9._-]+ and not "." or "..": it names a directory under checkpoints/. */
static int valid_run_name(const char *name) {
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            return 0;
    return 1;
}

static poet_status parse_output(const char *src, const cJSON *o, poet_config *cfg) {
    poet_status st = POET_OK;
    if (!o)
        return POET_OK;
    POET_TRY(check_object(src, "output", o, OUTPUT_KEYS, "object"));
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "run_name");
    if (name) {
        const char *text = cJSON_GetStringValue(name);
        if (!text || !valid_run_name(text) || strlen(text) >= POET_NAME_MAX)
            return bad_value(src, "output.run_name",
                             "string of at most 127 letters, digits, '.', '_' and '-' (not \".\" "
                             "or \"..\")",
                             name);
        snprintf(cfg->run_name, POET_NAME_MAX, "%s", text);
        snprintf(cfg->checkpoint_dir, POET_PATH_MAX, "checkpoints/%s", cfg->run_name);
    }
    POET_TRY(opt_string(src, "output", o, "checkpoint_dir", 0, cfg->checkpoint_dir, POET_PATH_MAX));
    POET_TRY(opt_int(src, "output", o, "checkpoint_every", 0, INT_MAX, &cfg->checkpoint_every));
    POET_TRY(opt_int(src, "output", o, "checkpoint_keep", 1, INT_MAX, &cfg->checkpoint_keep));
    POET_TRY(opt_string(src, "output", o, "log_file", 1, cfg->log_file, POET_PATH_MAX));
    POET_TRY(opt_int(src, "output", o, "log_flush_every", 1, INT_MAX, &cfg->log_flush_every));
    POET_TRY(opt_number(src, "output", o, "checkpoint_every_seconds", 0.0, 0, NAN, 0,
                        &cfg->checkpoint_every_seconds));
fail:
    return st;
}

/* Every section of a parsed JSON tree, in the order the header comment gives. */
poet_status poet_config_parse_root(const char *src, const cJSON *root, poet_config *cfg) {
    poet_status st = POET_OK;
    POET_TRY(check_object(src, "", root, TOP_KEYS, "JSON object"));
    POET_TRY(parse_data(src, cJSON_GetObjectItemCaseSensitive(root, "data"), cfg));
    POET_TRY(parse_training(src, cJSON_GetObjectItemCaseSensitive(root, "training"), cfg));
    POET_TRY(parse_model(src, cJSON_GetObjectItemCaseSensitive(root, "model"), cfg));
    POET_TRY(parse_distributed(src, cJSON_GetObjectItemCaseSensitive(root, "distributed"), cfg));
    POET_TRY(parse_output(src, cJSON_GetObjectItemCaseSensitive(root, "output"), cfg));
fail:
    return st;
}

/* The whole text as one JSON value: nothing but white space may follow it. */
