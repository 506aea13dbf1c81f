/* test_config.c — defaults, the shipped configs, one exact message per kind of bad config, JSON
 * round trips and the iteration count. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/config.h"
#include "testutil.h"

#ifndef POET_SOURCE_DIR
#error "POET_SOURCE_DIR must name the source tree (tests/config.cmake defines it)"
#endif

/* ------------------------------------------------------------------------------------------------
 * Field-by-field comparison: names the first field that differs (source is ignored).
 * ---------------------------------------------------------------------------------------------- */

static const char *arch_difference(const poet_arch *a, const poet_arch *b) {
    if (strcmp(a->name, b->name) != 0)
        return "name";
    if (a->n_layers != b->n_layers)
        return "n_layers";
    for (int i = 0; i < a->n_layers; i++) {
        const poet_layer_spec *x = &a->layers[i], *y = &b->layers[i];
        if (x->kind != y->kind || x->out != y->out || x->kernel != y->kernel ||
            x->stride != y->stride || x->padding != y->padding || x->global != y->global ||
            x->no_bias != y->no_bias || strcmp(x->id, y->id) != 0 || x->n_inputs != y->n_inputs)
            return "layers";
        for (int k = 0; k < x->n_inputs; k++)
            if (x->inputs[k] != y->inputs[k])
                return "inputs";
    }
    return NULL;
}

#define DIFF_IF(cond, field)                                                                       \
    if (cond)                                                                                      \
    return field
#define SAME_STR(f) DIFF_IF(strcmp(a->f, b->f) != 0, #f)
#define SAME(f) DIFF_IF(a->f != b->f, #f)

static const char *config_difference(const poet_config *a, const poet_config *b) {
    SAME_STR(train_images);
    SAME_STR(train_labels);
    SAME_STR(test_images);
    SAME_STR(test_labels);
    SAME(mean);
    SAME(std);
    SAME(shuffle);
    SAME(classes);
    SAME(members);
    SAME(n_archs);
    for (int i = 0; i < a->n_archs; i++)
        DIFF_IF(arch_difference(&a->archs[i], &b->archs[i]), "archs");
    for (int j = 0; j < a->members; j++)
        DIFF_IF(a->member_arch[j] != b->member_arch[j], "member_arch");
    SAME(placement_explicit);
    for (int j = 0; a->placement_explicit && j < a->members; j++)
        DIFF_IF(a->member_rank[j] != b->member_rank[j], "member_rank");
    SAME(fused);
    SAME(batch_size);
    SAME(epochs);
    SAME(iterations);
    SAME(lr);
    SAME(momentum);
    SAME(weight_decay);
    SAME(nesterov);
    SAME(decay_bn_bias);
    SAME(schedule);
    SAME(step_size);
    SAME(gamma);
    SAME(min_lr);
    SAME(seed);
    SAME(threads);
    SAME(log_every);
    SAME(eval_every);
    SAME(tree);
    SAME(arity);
    SAME(memory_limit_gib);
    SAME(overlap);
    SAME(chunks);
    SAME_STR(run_name);
    SAME_STR(checkpoint_dir);
    SAME(checkpoint_every);
    SAME(checkpoint_keep);
    SAME_STR(log_file);
    SAME(log_flush_every);
    return NULL;
}

/* parse(to_json(cfg)) must equal cfg, and writing it again must give the same text. */
static void check_round_trip(const char *what, const poet_config *cfg) {
    static poet_config again;
    char *text = poet_config_to_json(cfg);
    TEST_CHECK(text != NULL, "%s: to_json failed: %s", what, poet_error_message());
    if (!text)
        return;
    poet_status st = poet_config_parse(text, "round-trip", &again);
    TEST_CHECK(st == POET_OK, "%s: parsing to_json's output failed: %s\n%s", what,
               poet_error_message(), text);
    if (st == POET_OK) {
        const char *diff = config_difference(cfg, &again);
        TEST_CHECK(diff == NULL, "%s: round trip changed field %s\n%s", what, diff, text);
        char *text2 = poet_config_to_json(&again);
        TEST_CHECK(text2 && strcmp(text, text2) == 0, "%s: second to_json differs", what);
        free(text2);
    }
    printf("round trip %-28s %s\n", what, st == POET_OK ? "ok" : "FAIL");
    free(text);
    poet_error_clear();
}

/* ------------------------------------------------------------------------------------------------
 * Defaults and the shipped configs
 * ---------------------------------------------------------------------------------------------- */

static void check_reference_arch(const poet_arch *a, int classes) {
    TEST_CHECK(strcmp(a->name, "reference") == 0, "name %s", a->name);
    TEST_CHECK(a->n_layers == 8, "n_layers %d", a->n_layers);
    const poet_layer_spec *l = a->layers;
    TEST_CHECK(l[0].kind == POET_LAYER_CONV && l[0].out == 20 && l[0].kernel == 3 &&
                   l[0].stride == 2 && l[0].padding == 0,
               "conv1");
    TEST_CHECK(l[1].kind == POET_LAYER_RELU, "relu1");
    TEST_CHECK(l[2].kind == POET_LAYER_CONV && l[2].out == 40 && l[2].kernel == 3 &&
                   l[2].stride == 2,
               "conv2");
    TEST_CHECK(l[4].kind == POET_LAYER_AVG_POOL && l[4].kernel == 6 && l[4].stride == 6 &&
                   !l[4].global,
               "pool");
    TEST_CHECK(l[5].kind == POET_LAYER_LINEAR && l[5].out == 20, "fc1");
    TEST_CHECK(l[6].kind == POET_LAYER_RELU, "relu3");
    TEST_CHECK(l[7].kind == POET_LAYER_LINEAR && l[7].out == classes, "fc2 out %d", l[7].out);
}

static void test_defaults(void) {
    static poet_config cfg, parsed;
    poet_config_defaults(&cfg);
    TEST_CHECK(strcmp(cfg.train_images,
                      "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") == 0,
               "%s", cfg.train_images);
    TEST_CHECK(
        strcmp(cfg.test_labels, "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") == 0,
        "%s", cfg.test_labels);
    TEST_CHECK(cfg.mean == 0.1307 && cfg.std == 0.3081 && cfg.shuffle == 1 && cfg.classes == 10,
               "data defaults");
    TEST_CHECK(cfg.members == 10 && cfg.n_archs == 1 && !cfg.placement_explicit && cfg.fused == 1,
               "model defaults");
    for (int j = 0; j < cfg.members; j++)
        TEST_CHECK(cfg.member_arch[j] == 0, "member_arch[%d]", j);
    check_reference_arch(&cfg.archs[0], 10);
    TEST_CHECK(cfg.batch_size == 200 && cfg.epochs == 1 && cfg.iterations == 0 && cfg.lr == 0.5 &&
                   cfg.momentum == 0.9 && cfg.weight_decay == 0 && !cfg.nesterov,
               "training defaults");
    TEST_CHECK(cfg.schedule == POET_LR_CONSTANT && cfg.step_size == 1000 && cfg.gamma == 0.1 &&
                   cfg.min_lr == 0 && cfg.seed == 42 && cfg.threads == 0 && cfg.log_every == 20 &&
                   cfg.eval_every == 0,
               "schedule defaults");
    TEST_CHECK(cfg.tree == POET_TREE_BINARY && cfg.arity == 2 && cfg.overlap == POET_OVERLAP_NONE &&
                   cfg.chunks == 1,
               "distributed defaults");
    TEST_CHECK(strcmp(cfg.run_name, "fashion-mnist") == 0 &&
                   strcmp(cfg.checkpoint_dir, "checkpoints/fashion-mnist") == 0 &&
                   cfg.checkpoint_every == 0 && cfg.checkpoint_keep == 3 && cfg.log_file[0] == 0 &&
                   cfg.log_flush_every == 50,
               "output defaults");

    /* "{}" is the defaults. */
    TEST_OK(poet_config_parse("{}", "empty", &parsed));
    const char *diff = config_difference(&cfg, &parsed);
    TEST_CHECK(diff == NULL, "{} differs from the defaults in %s", diff);
    TEST_CHECK(strcmp(parsed.source, "empty") == 0, "source %s", parsed.source);

    /* Derived defaults: checkpoint_dir follows run_name, the reference net follows classes, a
     * binary tree has arity 2 whatever is written. */
    TEST_OK(poet_config_parse("{\"output\":{\"run_name\":\"abc\"},\"data\":{\"classes\":5},"
                              "\"distributed\":{\"tree\":\"binary\",\"arity\":7}}",
                              "derived", &parsed));
    TEST_CHECK(strcmp(parsed.checkpoint_dir, "checkpoints/abc") == 0, "%s", parsed.checkpoint_dir);
    check_reference_arch(&parsed.archs[0], 5);
    TEST_CHECK(parsed.arity == 2, "binary arity %d", parsed.arity);
    TEST_OK(poet_config_parse("{\"distributed\":{\"tree\":\"kary\",\"arity\":3}}", "k", &parsed));
    TEST_CHECK(parsed.tree == POET_TREE_KARY && parsed.arity == 3, "kary arity %d", parsed.arity);

    TEST_CHECK(strcmp(poet_tree_kind_name(POET_TREE_BINARY), "binary") == 0 &&
                   strcmp(poet_tree_kind_name(POET_TREE_KARY), "kary") == 0 &&
                   strcmp(poet_tree_kind_name(POET_TREE_MPI), "mpi") == 0,
               "tree names");
    TEST_CHECK(strcmp(poet_overlap_mode_name(POET_OVERLAP_NONE), "none") == 0 &&
                   strcmp(poet_overlap_mode_name(POET_OVERLAP_EXACT), "exact") == 0 &&
                   strcmp(poet_overlap_mode_name(POET_OVERLAP_STALE), "stale") == 0,
               "overlap names");
    check_round_trip("defaults", &cfg);
}

static void load_shipped(const char *name, poet_config *cfg) {
    char path[POET_PATH_MAX];
    snprintf(path, sizeof path, "%s/configs/%s", POET_SOURCE_DIR, name);
    TEST_OK(poet_config_load(path, cfg));
    TEST_CHECK(strcmp(cfg->source, path) == 0, "source %s", cfg->source);
    /* Every shipped network must fit 28x28 images and end in K logits. */
    for (int a = 0; a < cfg->n_archs; a++) {
        static poet_arch_plan plan;
        poet_shape image = {1, 28, 28};
        poet_status st = poet_arch_plan_build(&cfg->archs[a], image, cfg->classes, name, &plan);
        TEST_CHECK(st == POET_OK, "%s: architecture %d does not plan: %s", name, a,
                   poet_error_message());
        poet_error_clear();
    }
    check_round_trip(name, cfg);
}

static void test_shipped_configs(void) {
    static poet_config cfg;
    load_shipped("fashion-mnist.json", &cfg);
    TEST_CHECK(cfg.members == 10 && cfg.batch_size == 200 && cfg.lr == 0.5 && cfg.momentum == 0.9 &&
                   cfg.epochs == 1 && cfg.log_every == 20 && cfg.eval_every == 100 &&
                   cfg.checkpoint_every == 100,
               "fashion-mnist.json values");
    TEST_CHECK(strcmp(cfg.run_name, "fashion-mnist") == 0, "%s", cfg.run_name);
    TEST_CHECK(strstr(cfg.train_images, "fashion-mnist/train-images-idx3-ubyte.gz") != NULL, "%s",
               cfg.train_images);

    load_shipped("mnist.json", &cfg);
    TEST_CHECK(strstr(cfg.train_images, "/mnist/train-images") != NULL, "%s", cfg.train_images);
    TEST_CHECK(strcmp(cfg.run_name, "mnist") == 0, "%s", cfg.run_name);

    load_shipped("heterogeneous.json", &cfg);
    TEST_CHECK(cfg.n_archs == 2, "n_archs %d", cfg.n_archs);
    TEST_CHECK(strcmp(cfg.archs[0].name, "reference") == 0 &&
                   strcmp(cfg.archs[1].name, "custom-1") == 0,
               "names %s %s", cfg.archs[0].name, cfg.archs[1].name);
    int has_max_pool = 0;
    for (int i = 0; i < cfg.archs[1].n_layers; i++)
        has_max_pool |= cfg.archs[1].layers[i].kind == POET_LAYER_MAX_POOL;
    TEST_CHECK(has_max_pool, "the variant has a max_pool layer");
    int first_variant = 0;
    while (first_variant < cfg.members && cfg.member_arch[first_variant] == 0)
        first_variant++;
    TEST_CHECK(first_variant > 0 && first_variant < cfg.members, "groups numbered in order");
    for (int j = first_variant; j < cfg.members; j++)
        TEST_CHECK(cfg.member_arch[j] == 1, "member %d arch %d", j, cfg.member_arch[j]);

    load_shipped("quick.json", &cfg);
    TEST_CHECK(cfg.members == 4 && cfg.iterations == 50, "quick: members %d iterations %ld",
               cfg.members, cfg.iterations);
}

/* ------------------------------------------------------------------------------------------------
 * Bad configs: each must fail with POET_ERR_CONFIG and this exact text in the message.
 * ---------------------------------------------------------------------------------------------- */

static const struct {
    const char *json;
    const char *message; /* substring of poet_error_message() */
} BAD[] = {
    {"{\"training\": {\"batch_size\": -5}}",
     "configs/x.json: training.batch_size: expected integer >= 1, got -5"},
    {"{\"training\": {\"batchsize\": 10}}",
     "configs/x.json: training.batchsize: unknown key, did you mean training.batch_size?"},
    {"{\"model\": {\"lr\": 0.1}}",
     "configs/x.json: model.lr: unknown key, did you mean training.lr?"},
    {"{\"foo\": 1}", "configs/x.json: foo: unknown key, expected one of: data, model, training, "
                     "distributed, output"},
    {"{\"training\": {\"lr\": \"fast\"}}",
     "configs/x.json: training.lr: expected number > 0, got \"fast\""},
    {"{\"distributed\": {\"tree\": \"ring\"}}",
     "configs/x.json: distributed.tree: expected one of "
     "\"binary\", \"kary\", \"mpi\", \"auto\", got \"ring\""},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3}, "
     "{\"type\": \"gelu\"}]}}",
     "configs/x.json: model.architecture[1].type: expected one of \"conv\", \"relu\", "
     "\"avg_pool\", \"max_pool\", \"linear\", \"add\", \"batchnorm\", got \"gelu\""},
    {"{\"training\": {\"epochs\": 2.5}}",
     "configs/x.json: training.epochs: expected integer >= 1, got 2.5"},
    {"{\"model\": {\"members\": 3, \"placement\": [0, 1]}}",
     "configs/x.json: model.placement: expected \"block\" or array of 3 ranks >= 0 (one per "
     "member), got [0,1]"},
    {"{\"model\": {\"members\": 2, \"placement\": [0, -1]}}",
     "configs/x.json: model.placement[1]: expected integer >= 0, got -1"},
    {"{\n  \"training\": {\n    \"lr\": 0.5,\n  }\n}",
     "configs/x.json: invalid JSON near line 4: }"},
    {"{\"data\": {} } trailing",
     "configs/x.json: invalid JSON near line 1: {\"data\": {} } trailing"},
    {"{\"data\": {\"classes\": 3", "configs/x.json: invalid JSON near line 1: {\"data\": "
                                   "{\"classes\": 3 (unexpected end of input)"},
    {"", "configs/x.json: invalid JSON near line 1: (unexpected end of input)"},
    {"[1, 2]", "configs/x.json: top level: expected JSON object, got [1,2]"},
    {"{\"model\": {\"members\": [{\"count\": 1000}, {\"count\": 100}]}}",
     "configs/x.json: model.members[1].count: expected integer between 1 and 24 (at most 1024 "
     "members in total), got 100"},
    {"{\"model\": {\"members\": []}}",
     "configs/x.json: model.members: expected integer between 1 and 1024 or non-empty array of "
     "groups, got []"},
    {"{\"model\": {\"members\": 1025}}",
     "configs/x.json: model.members: expected integer between 1 and 1024 or non-empty array of "
     "groups, got 1025"},
    {"{\"model\": {\"members\": [{\"architecture\": \"reference\"}]}}",
     "configs/x.json: model.members[0].count: expected integer between 1 and 1024, got nothing"},
    {"{\"model\": {\"members\": [{\"count\": 2}], \"architecture\": \"reference\"}}",
     "configs/x.json: model.architecture: expected no model-level architecture when model.members "
     "lists groups"},
    {"{\"training\": {\"momentum\": 0, \"nesterov\": true}}",
     "configs/x.json: training.nesterov: expected false when training.momentum is 0"},
    {"{\"training\": {\"batch_size\": 100}, \"distributed\": {\"overlap\": \"exact\", \"chunks\": "
     "3}}",
     "configs/x.json: distributed.chunks: expected a divisor of training.batch_size (100), got 3"},
    {"{\"training\": {\"batch_size\": 25}, \"distributed\": {\"chunks\": 2}}",
     "configs/x.json: distributed.chunks: expected a divisor of training.batch_size (25), got 2"},
    {"{\"distributed\": {\"chunks\": 17}}",
     "configs/x.json: distributed.chunks: expected integer between 1 and 16, got 17"},
    {"{\"data\": {\"classes\": 1}}",
     "configs/x.json: data.classes: expected integer between 2 and 256, got 1"},
    {"{\"data\": {\"std\": 0}}",
     "configs/x.json: data.std: expected number in [0.001, 1000], got 0"},
    {"{\"data\": {\"std\": 1e-300}}",
     "configs/x.json: data.std: expected number in [0.001, 1000], got 1e-300"},
    {"{\"data\": {\"mean\": 1e308}}",
     "configs/x.json: data.mean: expected number in [-1, 2], got 1e+308"},
    {"{\"distributed\": {\"memory_limit_gib\": -1}}",
     "configs/x.json: distributed.memory_limit_gib: expected number >= 0, got -1"},
    {"{\"distributed\": {\"tree\": \"kary\", \"arity\": 2147483647}}",
     "configs/x.json: distributed.arity: expected integer between 2 and 64, got 2147483647"},
    {"{\"data\": {\"shuffle\": 1}}", "configs/x.json: data.shuffle: expected true or false, got 1"},
    {"{\"data\": {\"train_images\": \"\"}}", "configs/x.json: data.train_images: expected "
                                             "non-empty string of at most 1023 bytes, got \"\""},
    {"{\"training\": {\"momentum\": 1}}",
     "configs/x.json: training.momentum: expected number in [0, 1), got 1"},
    {"{\"training\": {\"gamma\": 0}}",
     "configs/x.json: training.gamma: expected number in (0, 1], got 0"},
    {"{\"training\": {\"schedule\": \"linear\"}}",
     "configs/x.json: training.schedule: expected one of \"constant\", \"step\", \"cosine\", got "
     "\"linear\""},
    {"{\"training\": {\"seed\": 9007199254740994}}",
     "configs/x.json: training.seed: expected integer between 0 and 9007199254740992, got "
     "9007199254740994"},
    {"{\"training\": {\"threads\": 3000000000}}",
     "configs/x.json: training.threads: expected integer between 0 and 2147483647, got 3000000000"},
    {"{\"training\": {\"lr\": 0.1, \"lr\": 0.2}}",
     "configs/x.json: training.lr: expected each key at most once, got a second value 0.2"},
    {"{\"training\": 5}", "configs/x.json: training: expected object, got 5"},
    {"{\"distributed\": {\"overlap\": \"partial\"}}",
     "configs/x.json: distributed.overlap: expected one of \"none\", \"exact\", \"stale\", got "
     "\"partial\""},
    {"{\"distributed\": {\"tree\": \"kary\", \"arity\": 1}}",
     "configs/x.json: distributed.arity: expected integer between 2 and 64, got 1"},
    {"{\"output\": {\"run_name\": \"my run\"}}",
     "configs/x.json: output.run_name: expected string of at most 127 letters, digits, '.', '_' "
     "and '-'"},
    {"{\"output\": {\"checkpoint_keep\": 0}}",
     "configs/x.json: output.checkpoint_keep: expected integer >= 1, got 0"},
    {"{\"model\": {\"architecture\": \"resnet-21\"}}",
     "configs/x.json: model.architecture: expected \"reference\", \"resnet-N\" (N = 6n+2, 8..68), "
     "\"wrn-N-k\" (N = 6n+4 >= 10, k >= 1) or non-empty array of layer objects, got \"resnet-21\""},
    {"{\"model\": {\"architecture\": \"tiny\"}}",
     "configs/x.json: model.architecture: expected \"reference\", \"resnet-N\" (N = 6n+2, 8..68), "
     "\"wrn-N-k\" (N = 6n+4 >= 10, k >= 1) or non-empty array of layer "
     "objects, got \"tiny\""},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4}]}}",
     "configs/x.json: model.architecture[0].kernel: expected integer >= 1, got nothing"},
    {"{\"model\": {\"architecture\": [{\"type\": \"relu\", \"bias\": false}]}}",
     "configs/x.json: model.architecture[0].bias: expected no \"bias\" on a relu layer (only conv "
     "and linear have one), got false"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": "
     "3}, {\"type\": \"batchnorm\", \"bias\": false}]}}",
     "configs/x.json: model.architecture[1].bias: expected no \"bias\" on a batchnorm layer (only "
     "conv and linear have one), got false"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": "
     "3, \"bias\": 0}]}}",
     "configs/x.json: model.architecture[0].bias: expected true or false, got 0"},
    {"{\"model\": {\"architecture\": [{\"type\": \"relu\", \"kernel\": 2}]}}",
     "configs/x.json: model.architecture[0].kernel: unknown key, expected one of: type"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernal\": 3}]}}",
     "configs/x.json: model.architecture[0].kernal: unknown key, did you mean "
     "model.architecture[0].kernel?"},
    {"{\"model\": {\"architecture\": [{\"type\": \"max_pool\", \"global\": true, \"kernel\": 2}]}}",
     "configs/x.json: model.architecture[0].kernel: expected no kernel, stride or padding with "
     "\"global\": true, got 2"},
    {"{\"model\": {\"architecture\": [{\"type\": \"avg_pool\", \"kernel\": 2, \"padding\": 2}]}}",
     "configs/x.json: model.architecture[0].padding: expected integer between 0 and 1, got 2"},
    {"{\"model\": {\"architecture\": [5]}}",
     "configs/x.json: model.architecture[0]: expected layer object such as {\"type\": \"relu\"}, "
     "got 5"},
    /* The graph: ids, inputs, add (issue 13). */
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"relu\", \"input\": "
     "\"b\"}]}}",
     "configs/x.json: model.architecture[1].input: expected the id of an earlier layer, got \"b\", "
     "which no layer has"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"relu\", \"id\": \"r\", "
     "\"input\": \"r\"}]}}",
     "configs/x.json: model.architecture[1].input: expected the id of an earlier layer, got \"r\", "
     "this layer's own id (a cycle)"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\", \"input\": \"c\"}, {\"type\": "
     "\"relu\", \"id\": \"c\"}]}}",
     "configs/x.json: model.architecture[0].input: expected the id of an earlier layer, got \"c\", "
     "layer 1's, which comes later (a layer reads only earlier layers, so the network has no "
     "cycles)"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"relu\", \"id\": "
     "\"a\"}]}}",
     "configs/x.json: model.architecture[1].id: expected an id no other layer has (layer 0 has "
     "it), got \"a\""},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a b\"}]}}",
     "configs/x.json: model.architecture[0].id: expected string of 1 to 31 letters, digits, '_', "
     "'-' or '.', got \"a b\""},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"add\", \"inputs\": "
     "[\"a\"]}]}}",
     "configs/x.json: model.architecture[1].inputs: expected array of 2 to 4 layer ids, got "
     "[\"a\"]"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3}, "
     "{\"type\": \"add\"}]}}",
     "configs/x.json: model.architecture[1].inputs: expected array of 2 to 4 layer ids, got "
     "nothing"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"add\", \"inputs\": "
     "[\"a\", \"a\"]}]}}",
     "configs/x.json: model.architecture[1].inputs[1]: expected a layer id not already in inputs, "
     "got \"a\""},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"add\", \"inputs\": "
     "[\"a\", 3]}]}}",
     "configs/x.json: model.architecture[1].inputs[1]: expected the id of an earlier layer (a "
     "string), got 3"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"add\", \"input\": "
     "\"a\"}]}}",
     "configs/x.json: model.architecture[1].input: unknown key, did you mean "
     "model.architecture[1].inputs?"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, \"inputs\": "
     "[\"a\"]}]}}",
     "configs/x.json: model.architecture[1].inputs: unknown key, did you mean "
     "model.architecture[1].input?"},
    {"{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, "
     "\"id\": \"a\"}, {\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, \"id\": \"b\"}, "
     "{\"type\": "
     "\"relu\", \"input\": \"a\"}]}}",
     "configs/x.json: model.architecture[1]: expected a layer whose output a later layer reads, "
     "got a conv that no layer reads"},
    {"{\"model\": {\"members\": [{\"count\": 1, \"architecture\": [{\"type\": \"linear\", "
     "\"out_features\": 0}]}]}}",
     "configs/x.json: model.members[0].architecture[0].out_features: expected integer >= 1, got 0"},
};

static void test_bad_configs(void) {
    static poet_config cfg;
    size_t n = sizeof BAD / sizeof BAD[0];
    for (size_t i = 0; i < n; i++) {
        poet_error_clear();
        poet_status st = poet_config_parse(BAD[i].json, "configs/x.json", &cfg);
        const char *msg = poet_error_message();
        TEST_CHECK(st == POET_ERR_CONFIG, "bad config %zu: status %d for %s", i, (int)st,
                   BAD[i].json);
        TEST_CHECK(strstr(msg, BAD[i].message) != NULL,
                   "bad config %zu:\n  json:     %s\n  message:  %s\n  expected: %s", i,
                   BAD[i].json, msg, BAD[i].message);
        TEST_CHECK(strchr(msg, '\n') == NULL, "bad config %zu: message spans lines", i);
    }
    printf("bad configs: %zu cases\n", n);

    /* A path longer than the fixed buffer. */
    size_t long_len = POET_PATH_MAX + 10;
    char *json = malloc(long_len + 64);
    if (!json)
        exit(1);
    int head = sprintf(json, "{\"data\": {\"test_labels\": \"");
    memset(json + head, 'a', long_len);
    strcpy(json + head + long_len, "\"}}");
    poet_error_clear();
    TEST_CHECK(poet_config_parse(json, "long.json", &cfg) == POET_ERR_CONFIG, "long path");
    TEST_CHECK(strstr(poet_error_message(), "long.json: data.test_labels: expected non-empty "
                                            "string of at most 1023 bytes, got \"aaaa") != NULL,
               "long path message: %s", poet_error_message());
    free(json);

    /* More distinct architectures than the table holds: 17 groups, each one linear layer. */
    char big[4096];
    int used = sprintf(big, "{\"model\": {\"members\": [");
    for (int g = 0; g <= POET_MAX_ARCHS; g++)
        used += sprintf(big + used,
                        "%s{\"count\": 1, \"architecture\": [{\"type\": \"linear\", "
                        "\"out_features\": %d}]}",
                        g ? ", " : "", g + 1);
    sprintf(big + used, "]}}");
    poet_error_clear();
    TEST_CHECK(poet_config_parse(big, "many.json", &cfg) == POET_ERR_CONFIG, "17 architectures");
    TEST_CHECK(strstr(poet_error_message(),
                      "many.json: model.members[16].architecture: expected at "
                      "most 16 distinct architectures") != NULL,
               "17 architectures message: %s", poet_error_message());

    /* Unreadable file. */
    poet_error_clear();
    TEST_CHECK(poet_config_load("/nonexistent/poet/x.json", &cfg) == POET_ERR_CONFIG, "missing");
    TEST_CHECK(strcmp(poet_error_message(),
                      "/nonexistent/poet/x.json: cannot read config: No such file or directory") ==
                   0,
               "missing file message: %s", poet_error_message());
    poet_error_clear();
}

/* ------------------------------------------------------------------------------------------------
 * Round trips of unusual configs, sharing of identical architectures, iteration counts
 * ---------------------------------------------------------------------------------------------- */

static const char *EXPLICIT =
    "{\"data\": {\"mean\": -0.123456789012345678, \"std\": 0.00123456789012345678, "
    "\"shuffle\": false, \"classes\": "
    "7,"
    "            \"train_images\": \"a \\\"quoted\\\" path\"},"
    " \"model\": {\"members\": [{\"count\": 2},"
    "                          {\"count\": 3, \"architecture\": ["
    "                              {\"type\": \"conv\", \"out_channels\": 8, \"kernel\": 5, "
    "                               \"padding\": 2},"
    "                              {\"type\": \"relu\"},"
    "                              {\"type\": \"max_pool\", \"kernel\": 3, \"stride\": 2, "
    "                               \"padding\": 1},"
    "                              {\"type\": \"avg_pool\", \"global\": true},"
    "                              {\"type\": \"linear\", \"out_features\": 7}]},"
    "                          {\"count\": 1, \"architecture\": \"reference\"}],"
    "            \"placement\": [0, 0, 1, 1, 2, 3], \"fused\": false},"
    " \"training\": {\"batch_size\": 96, \"iterations\": 123456789012, \"lr\": 0.1, "
    "               \"momentum\": 0.95, \"weight_decay\": 5e-4, \"nesterov\": true, "
    "               \"schedule\": \"cosine\", \"step_size\": 77, \"gamma\": 0.5, \"min_lr\": 1e-5,"
    "               \"seed\": 9007199254740992, \"threads\": 3, \"log_every\": 0, "
    "               \"eval_every\": 7},"
    " \"distributed\": {\"tree\": \"kary\", \"arity\": 4, \"overlap\": \"exact\", \"chunks\": 4,"
    "                 \"memory_limit_gib\": 1.5},"
    " \"output\": {\"run_name\": \"x.y_z-1\", \"checkpoint_dir\": \"/tmp/ck\", "
    "             \"checkpoint_every\": 9, \"checkpoint_keep\": 1, \"log_file\": \"l.h5\", "
    "             \"log_flush_every\": 2}}";

static void test_round_trips(void) {
    static poet_config cfg;
    TEST_OK(poet_config_parse(EXPLICIT, "explicit", &cfg));
    TEST_CHECK(cfg.members == 6 && cfg.n_archs == 2, "members %d n_archs %d", cfg.members,
               cfg.n_archs);
    static const int arch_of[6] = {0, 0, 1, 1, 1, 0}; /* the last group reuses the reference */
    static const int rank_of[6] = {0, 0, 1, 1, 2, 3};
    for (int j = 0; j < 6; j++) {
        TEST_CHECK(cfg.member_arch[j] == arch_of[j], "member_arch[%d] = %d", j, cfg.member_arch[j]);
        TEST_CHECK(cfg.member_rank[j] == rank_of[j], "member_rank[%d] = %d", j, cfg.member_rank[j]);
    }
    TEST_CHECK(cfg.placement_explicit == 1, "placement_explicit");
    TEST_CHECK(cfg.seed == UINT64_C(9007199254740992), "seed %" PRIu64, cfg.seed);
    TEST_CHECK(cfg.iterations == 123456789012L, "iterations %ld", cfg.iterations);
    const poet_layer_spec *pool = &cfg.archs[1].layers[2];
    TEST_CHECK(pool->kind == POET_LAYER_MAX_POOL && pool->kernel == 3 && pool->stride == 2 &&
                   pool->padding == 1,
               "max_pool spec");
    TEST_CHECK(cfg.archs[1].layers[3].global == 1, "global pool");
    TEST_CHECK(cfg.archs[1].layers[0].stride == 1, "conv stride default");
    check_round_trip("explicit placement", &cfg);

    /* The reference written out layer by layer is the reference: one shared entry. */
    TEST_OK(poet_config_parse(
        "{\"model\": {\"members\": [{\"count\": 2, \"architecture\": \"reference\"}, {\"count\": "
        "2, "
        "\"architecture\": [{\"type\": \"conv\", \"out_channels\": 20, \"kernel\": 3, \"stride\": "
        "2}, {\"type\": \"relu\"}, {\"type\": \"conv\", \"out_channels\": 40, \"kernel\": 3, "
        "\"stride\": 2}, {\"type\": \"relu\"}, {\"type\": \"avg_pool\", \"kernel\": 6}, {\"type\": "
        "\"linear\", \"out_features\": 20}, {\"type\": \"relu\"}, {\"type\": \"linear\", "
        "\"out_features\": 10}]}]}}",
        "shared", &cfg));
    TEST_CHECK(cfg.n_archs == 1 && cfg.members == 4, "shared: n_archs %d members %d", cfg.n_archs,
               cfg.members);
    check_reference_arch(&cfg.archs[0], 10);
    check_round_trip("shared architecture", &cfg);

    /* Groups A, B, A keep their order. */
    TEST_OK(poet_config_parse(
        "{\"model\": {\"members\": [{\"count\": 1}, {\"count\": 2, \"architecture\": "
        "[{\"type\": \"avg_pool\", \"global\": true}, {\"type\": \"linear\", \"out_features\": "
        "10}]},"
        " {\"count\": 3}]}}",
        "aba", &cfg));
    TEST_CHECK(cfg.n_archs == 2 && cfg.members == 6 && cfg.member_arch[0] == 0 &&
                   cfg.member_arch[1] == 1 && cfg.member_arch[2] == 1 && cfg.member_arch[3] == 0,
               "A,B,A groups");
    check_round_trip("groups A,B,A", &cfg);

    /* A residual graph: ids and inputs survive the round trip; an input naming the previous
     * layer is the default (n_inputs 0), so writing it or not is the same network. */
    TEST_OK(poet_config_parse(
        "{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, "
        "\"kernel\": 3, \"padding\": 1, \"id\": \"stem\"}, {\"type\": \"relu\", \"input\": "
        "\"stem\"}, {\"type\": \"conv\", \"out_channels\": 4, \"kernel\": 3, \"padding\": 1, "
        "\"id\": \"c1\"}, {\"type\": \"add\", \"inputs\": [\"stem\", \"c1\"]}, {\"type\": "
        "\"avg_pool\", \"global\": true}, {\"type\": \"linear\", \"out_features\": 10}]}}",
        "graph", &cfg));
    const poet_layer_spec *g = cfg.archs[0].layers;
    TEST_CHECK(cfg.archs[0].n_layers == 6 && strcmp(g[0].id, "stem") == 0 && g[1].n_inputs == 0 &&
                   g[3].kind == POET_LAYER_ADD && g[3].n_inputs == 2 && g[3].inputs[0] == 0 &&
                   g[3].inputs[1] == 2,
               "residual graph spec");
    check_round_trip("residual graph", &cfg);

    /* "bias": false on a conv and a linear survives the round trip; "bias": true is the default
     * and is not written back. */
    TEST_OK(poet_config_parse(
        "{\"model\": {\"architecture\": [{\"type\": \"conv\", \"out_channels\": 4, "
        "\"kernel\": 3, \"bias\": false}, {\"type\": \"batchnorm\"}, {\"type\": \"conv\", "
        "\"out_channels\": 4, \"kernel\": 1, \"bias\": true}, {\"type\": \"avg_pool\", "
        "\"global\": true}, {\"type\": \"linear\", \"out_features\": 10, \"bias\": false}]}}",
        "no bias", &cfg));
    g = cfg.archs[0].layers;
    TEST_CHECK(g[0].no_bias == 1 && g[2].no_bias == 0 && g[4].no_bias == 1, "bias flags %d %d %d",
               g[0].no_bias, g[2].no_bias, g[4].no_bias);
    check_round_trip("bias false", &cfg);
    char *text = poet_config_to_json(&cfg);
    TEST_CHECK(text && strstr(text, "\"bias\":\tfalse") && !strstr(text, "\"bias\":\ttrue"),
               "resolved config writes only \"bias\": false:\n%s", text ? text : "(null)");
    free(text);

    /* A built-in is written back by its name. */
    TEST_OK(poet_config_parse("{\"model\": {\"members\": [{\"count\": 2, \"architecture\": "
                              "\"resnet-20\"}, {\"count\": 1, \"architecture\": \"wrn-16-4\"}]}}",
                              "builtins", &cfg));
    TEST_CHECK(cfg.n_archs == 2 && strcmp(cfg.archs[0].name, "resnet-20") == 0 &&
                   strcmp(cfg.archs[1].name, "wrn-16-4") == 0 && cfg.archs[0].n_layers == 72,
               "built-in names %s %s", cfg.archs[0].name, cfg.archs[1].name);
    check_round_trip("built-in architectures", &cfg);
}

static void test_total_iterations(void) {
    static poet_config cfg;
    poet_config_defaults(&cfg);
    TEST_CHECK(poet_config_total_iterations(&cfg, 60000) == 300, "default: %ld",
               poet_config_total_iterations(&cfg, 60000));
    cfg.epochs = 3;
    TEST_CHECK(poet_config_total_iterations(&cfg, 60100) == 900, "3 epochs, partial batch dropped");
    TEST_CHECK(poet_config_total_iterations(&cfg, 150) == 0, "set smaller than a batch");
    cfg.iterations = 50;
    TEST_CHECK(poet_config_total_iterations(&cfg, 60000) == 50, "explicit iterations");
}

int main(void) {
    test_defaults();
    test_shipped_configs();
    test_bad_configs();
    test_round_trips();
    test_total_iterations();
    return test_finish("config");
}
