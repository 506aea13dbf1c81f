/* config_json.c — a config written back as JSON (poet_config_to_json): every key with its value,
 * defaults included, so a checkpoint's stored config describes its run completely. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/config.h"

#include "configimpl.h"

/* ---------------------------------------------------------------------------------------------
 * Output. Every add goes through these so one allocation failure anywhere is noticed at the end.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    int failed;
} builder;

static cJSON *attach(builder *b, cJSON *parent, const char *key, cJSON *item) {
    if (!item || !parent) {
        b->failed = 1;
        cJSON_Delete(item);
        return NULL;
    }
    if (key ? !cJSON_AddItemToObject(parent, key, item) : !cJSON_AddItemToArray(parent, item)) {
        b->failed = 1;
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

/* Integers are written as raw digits: exact up to 2^63 whatever cJSON's number formatting does. */
static void put_int(builder *b, cJSON *parent, const char *key, long long value) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", value);
    attach(b, parent, key, cJSON_CreateRaw(digits));
}

/* cJSON prints doubles with up to 17 significant digits, enough to read back the same double. */
static void put_number(builder *b, cJSON *parent, const char *key, double value) {
    attach(b, parent, key, cJSON_CreateNumber(value));
}

static void put_string(builder *b, cJSON *parent, const char *key, const char *value) {
    attach(b, parent, key, cJSON_CreateString(value));
}

static void put_bool(builder *b, cJSON *parent, const char *key, int value) {
    attach(b, parent, key, cJSON_CreateBool(value));
}

static cJSON *arch_json(builder *b, const poet_arch *arch, int classes) {
    poet_arch reference;
    poet_config_reference_arch(&reference, classes);
    if (strcmp(arch->name, "reference") == 0 && poet_arch_equal(arch, &reference))
        return cJSON_CreateString("reference");
    poet_arch *builtin = malloc(sizeof *builtin);
    int named = builtin && poet_arch_builtin(arch->name, classes, builtin) &&
                poet_arch_equal(arch, builtin);
    free(builtin);
    if (named)
        return cJSON_CreateString(arch->name);
    cJSON *layers = cJSON_CreateArray();
    for (int i = 0; layers && i < arch->n_layers; i++) {
        const poet_layer_spec *s = &arch->layers[i];
        cJSON *layer = attach(b, layers, NULL, cJSON_CreateObject());
        put_string(b, layer, "type", LAYER_NAMES[s->kind]);
        switch (s->kind) {
        case POET_LAYER_CONV:
            put_int(b, layer, "out_channels", s->out);
            put_int(b, layer, "kernel", s->kernel);
            put_int(b, layer, "stride", s->stride);
            put_int(b, layer, "padding", s->padding);
            if (s->no_bias) /* only then: configs without the key resolve as before */
                put_bool(b, layer, "bias", 0);
            break;
        case POET_LAYER_AVG_POOL:
        case POET_LAYER_MAX_POOL:
            if (s->global) {
                put_bool(b, layer, "global", 1);
                break;
            }
            put_int(b, layer, "kernel", s->kernel);
            put_int(b, layer, "stride", s->stride > 0 ? s->stride : s->kernel);
            put_int(b, layer, "padding", s->padding);
            break;
        case POET_LAYER_LINEAR:
            put_int(b, layer, "out_features", s->out);
            if (s->no_bias)
                put_bool(b, layer, "bias", 0);
            break;
        case POET_LAYER_RELU:
        case POET_LAYER_ADD:
        case POET_LAYER_BATCHNORM:
            break;
        }
        if (s->id[0])
            put_string(b, layer, "id", s->id);
        if (s->kind == POET_LAYER_ADD) {
            cJSON *inputs = attach(b, layer, "inputs", cJSON_CreateArray());
            for (int k = 0; inputs && k < s->n_inputs; k++)
                attach(b, inputs, NULL, cJSON_CreateString(arch->layers[s->inputs[k]].id));
        } else if (s->n_inputs > 0) {
            put_string(b, layer, "input", arch->layers[s->inputs[0]].id);
        }
    }
    return layers;
}

/* Members as an integer plus one architecture, or as groups: maximal runs of one architecture. */
static void put_members(builder *b, cJSON *model, const poet_config *cfg) {
    if (cfg->n_archs <= 1) {
        put_int(b, model, "members", cfg->members);
        attach(b, model, "architecture", arch_json(b, &cfg->archs[0], cfg->classes));
        return;
    }
    cJSON *groups = attach(b, model, "members", cJSON_CreateArray());
    for (int j = 0; groups && j < cfg->members;) {
        int a = cfg->member_arch[j], count = 0;
        while (j + count < cfg->members && cfg->member_arch[j + count] == a)
            count++;
        cJSON *group = attach(b, groups, NULL, cJSON_CreateObject());
        put_int(b, group, "count", count);
        attach(b, group, "architecture", arch_json(b, &cfg->archs[a], cfg->classes));
        j += count;
    }
}

char *poet_config_to_json(const poet_config *cfg) {
    builder b = {0};
    char *text = NULL, *copy = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        b.failed = 1;

    cJSON *data = attach(&b, root, "data", cJSON_CreateObject());
    put_string(&b, data, "train_images", cfg->train_images);
    put_string(&b, data, "train_labels", cfg->train_labels);
    put_string(&b, data, "test_images", cfg->test_images);
    put_string(&b, data, "test_labels", cfg->test_labels);
    /* "auto" until resolved, then the values themselves: a checkpoint stores what its run used. */
    if (cfg->mean_auto == 1)
        put_string(&b, data, "mean", "auto");
    else if (cfg->mean_count)
        attach(&b, data, "mean", cJSON_CreateDoubleArray(cfg->channel_mean, cfg->mean_count));
    else
        put_number(&b, data, "mean", cfg->mean);
    if (cfg->std_auto == 1)
        put_string(&b, data, "std", "auto");
    else if (cfg->std_count)
        attach(&b, data, "std", cJSON_CreateDoubleArray(cfg->channel_std, cfg->std_count));
    else
        put_number(&b, data, "std", cfg->std);
    put_bool(&b, data, "shuffle", cfg->shuffle);
    put_int(&b, data, "classes", cfg->classes);
    put_string(&b, data, "format", DATA_FORMATS[cfg->format]);
    put_string(&b, data, "cifar_labels", CIFAR_LABELS[cfg->cifar_labels]);
    put_string(&b, data, "layout", LAYOUTS[cfg->layout]);
    put_string(&b, data, "images_dataset", cfg->images_dataset);
    put_string(&b, data, "labels_dataset", cfg->labels_dataset);
    put_int(&b, data, "prefetch", cfg->prefetch);
    put_number(&b, data, "validation", cfg->validation);
    put_bool(&b, data, "in_memory", cfg->in_memory);
    cJSON *augment = attach(&b, data, "augment", cJSON_CreateObject());
    put_int(&b, augment, "crop_padding", cfg->augment_crop_padding);
    put_bool(&b, augment, "flip", cfg->augment_flip);

    cJSON *model = attach(&b, root, "model", cJSON_CreateObject());
    put_members(&b, model, cfg);
    if (cfg->placement_explicit) {
        cJSON *ranks = attach(&b, model, "placement", cJSON_CreateArray());
        for (int j = 0; j < cfg->members; j++)
            put_int(&b, ranks, NULL, cfg->member_rank[j]);
    } else {
        put_string(&b, model, "placement", "block");
    }
    put_bool(&b, model, "fused", cfg->fused);
    put_string(&b, model, "convolution", CONVOLUTION_NAMES[cfg->convolution]);

    cJSON *t = attach(&b, root, "training", cJSON_CreateObject());
    put_int(&b, t, "batch_size", cfg->batch_size);
    put_int(&b, t, "epochs", cfg->epochs);
    put_int(&b, t, "iterations", cfg->iterations);
    put_number(&b, t, "lr", cfg->lr);
    put_number(&b, t, "momentum", cfg->momentum);
    put_number(&b, t, "weight_decay", cfg->weight_decay);
    put_bool(&b, t, "nesterov", cfg->nesterov);
    put_bool(&b, t, "decay_bn_bias", cfg->decay_bn_bias);
    put_string(&b, t, "schedule", SCHEDULE_NAMES[cfg->schedule]);
    put_int(&b, t, "step_size", cfg->step_size);
    put_number(&b, t, "gamma", cfg->gamma);
    put_number(&b, t, "min_lr", cfg->min_lr);
    put_int(&b, t, "seed", (long long)cfg->seed);
    put_int(&b, t, "threads", cfg->threads);
    put_int(&b, t, "log_every", cfg->log_every);
    put_int(&b, t, "eval_every", cfg->eval_every);
    put_string(&b, t, "objective", OBJECTIVE_NAMES[cfg->objective]);
    if (cfg->objective == POET_OBJECTIVE_BLEND)
        put_number(&b, t, "beta", cfg->beta);
    put_number(&b, t, "member_dropout", cfg->member_dropout);
    put_string(&b, t, "deadline", cfg->deadline);

    cJSON *d = attach(&b, root, "distributed", cJSON_CreateObject());
    put_string(&b, d, "tree", poet_tree_kind_name(cfg->tree));
    put_int(&b, d, "arity", cfg->arity);
    put_string(&b, d, "overlap", poet_overlap_mode_name(cfg->overlap));
    put_int(&b, d, "chunks", cfg->chunks);
    put_number(&b, d, "memory_limit_gib", cfg->memory_limit_gib);
    put_number(&b, d, "timeout", cfg->timeout);
    put_int(&b, d, "group_size", cfg->group_size);
    put_bool(&b, d, "sync_batchnorm", cfg->sync_batchnorm);

    cJSON *o = attach(&b, root, "output", cJSON_CreateObject());
    put_string(&b, o, "run_name", cfg->run_name);
    put_string(&b, o, "checkpoint_dir", cfg->checkpoint_dir);
    put_int(&b, o, "checkpoint_every", cfg->checkpoint_every);
    put_int(&b, o, "checkpoint_keep", cfg->checkpoint_keep);
    put_string(&b, o, "log_file", cfg->log_file);
    put_int(&b, o, "log_flush_every", cfg->log_flush_every);
    put_number(&b, o, "checkpoint_every_seconds", cfg->checkpoint_every_seconds);

    if (!b.failed)
        text = cJSON_Print(root);
    if (text) /* hand back plain malloc memory whatever allocator hooks cJSON was given */
        copy = malloc(strlen(text) + 1);
    if (copy)
        memcpy(copy, text, strlen(text) + 1);
    else
        poet_error_set(POET_ERR_NOMEM, "out of memory writing the config as JSON");
    cJSON_free(text);
    cJSON_Delete(root);
    return copy;
}
