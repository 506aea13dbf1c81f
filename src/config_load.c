/* config_load.c — reading a config: the file, its JSON syntax, and --set overrides applied to the
 * tree before the key-by-key checks of config.c (poet_config_parse_root). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/arch.h"
#include "poet/config.h"

#include "configimpl.h"

#define SNIPPET_MAX 60 /* characters of JSON text shown around a syntax error */

/* "invalid JSON near line L: <snippet>": the text around the error position on its line (cJSON
 * may report the position just after the offending token, even at the line's end). */
static poet_status invalid_json(const char *src, const char *text, const char *error_at) {
    if (!error_at || error_at < text)
        error_at = text;
    int line = 1;
    const char *line_start = text;
    for (const char *c = text; c < error_at && *c; c++)
        if (*c == '\n') {
            line++;
            line_start = c + 1;
        }
    const char *from =
        error_at - line_start > SNIPPET_MAX / 2 ? error_at - SNIPPET_MAX / 2 : line_start;
    while (from < error_at && isspace((unsigned char)*from))
        from++;
    const char *to = error_at;
    while (*to && *to != '\n' && to - from < SNIPPET_MAX)
        to++;
    int at_end = *error_at == '\0';
    return poet_error_set(POET_ERR_CONFIG, "%s: invalid JSON near line %d: %s%.*s%s%s", src, line,
                          from > line_start && !isspace((unsigned char)from[-1]) ? "..." : "",
                          (int)(to - from), from, to > from && at_end ? " " : "",
                          at_end ? "(unexpected end of input)" : "");
}

static poet_status parse_json(const char *src, const char *text, cJSON **root) {
    const char *error_at = NULL;
    *root = cJSON_ParseWithOpts(text, &error_at, 1);
    return *root ? POET_OK : invalid_json(src, text, error_at);
}

poet_status poet_config_parse(const char *json_text, const char *source, poet_config *cfg) {
    poet_status st = POET_OK;
    cJSON *root = NULL;
    const char *src = source && source[0] ? source : "(config)";
    poet_config_defaults(cfg);
    snprintf(cfg->source, POET_PATH_MAX, "%s", src);
    if (!json_text)
        POET_FAIL(POET_ERR_CONFIG, "%s: no config text", src);
    POET_TRY(parse_json(src, json_text, &root));
    POET_TRY(poet_config_parse_root(src, root, cfg));
fail:
    cJSON_Delete(root);
    return st;
}

/* The file's whole text, NUL-terminated; a NUL byte inside it is an error (the JSON would end
 * there and the rest be ignored). */
static poet_status read_config_text(const char *path, char **out) {
    poet_status st = POET_OK;
    char *text = NULL;
    size_t size = 0, capacity = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        POET_FAIL(POET_ERR_CONFIG, "%s: cannot read config: %s", path, strerror(errno));
    /* Read in growing chunks: works for pipes and /dev/stdin too, where the size is unknown. */
    for (;;) {
        if (capacity - size < 4096) {
            capacity = capacity ? 2 * capacity : 65536;
            char *grown = realloc(text, capacity);
            if (!grown)
                POET_FAIL(POET_ERR_NOMEM, "%s: out of memory reading config", path);
            text = grown;
        }
        size_t got = fread(text + size, 1, capacity - size - 1, f);
        size += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        POET_FAIL(POET_ERR_CONFIG, "%s: cannot read config: %s", path, strerror(errno));
    text[size] = '\0';
    if (strlen(text) != size)
        POET_FAIL(POET_ERR_CONFIG, "%s: invalid JSON near line 1: the file contains a NUL byte",
                  path);
    *out = text;
    text = NULL;
fail:
    if (f)
        fclose(f);
    free(text);
    return st;
}

poet_status poet_config_load(const char *path, poet_config *cfg) {
    return poet_config_load_overrides(path, 0, NULL, cfg);
}

/* The value of one --set item. Complete JSON is taken as it is; a bare word (one that cannot begin
 * a JSON value other than true/false/null) is a string, as docs/cli.md promises. Text that begins
 * like a number, string, array or object but is not one whole JSON value (7abc, 0.1.5, [1,2) is an
 * error: reading only its valid beginning would silently train with another value. */
static poet_status override_value(const char *item, const char *text, cJSON **out) {
    const char *error_at = NULL;
    *out = cJSON_ParseWithOpts(text, &error_at, 1);
    if (*out)
        return POET_OK;
    const char *first = text;
    while (isspace((unsigned char)*first))
        first++;
    if (!*first || !strchr("-0123456789\"[{", *first)) {
        *out = cJSON_CreateString(text);
        return *out ? POET_OK : poet_error_set(POET_ERR_NOMEM, "out of memory applying --set");
    }
    if (!error_at || error_at < text)
        error_at = text;
    return poet_error_set(POET_ERR_CONFIG,
                          "--set %s: VALUE is not one complete JSON value (%s%.*s%s); quote a "
                          "string as KEY='\"...\"'",
                          item, *error_at ? "unexpected text at '" : "unexpected end",
                          *error_at ? SNIPPET_MAX : 0, error_at, *error_at ? "'" : "");
}

/* Sets the dotted KEY of one --set KEY=VALUE inside `root`, creating objects on the way. */
static poet_status apply_override(cJSON *root, const char *item) {
    const char *eq = strchr(item, '=');
    if (!eq || eq == item)
        return poet_error_set(POET_ERR_USAGE, "--set: expected KEY=VALUE, got '%s'", item);
    char key[256];
    size_t klen = (size_t)(eq - item);
    if (klen >= sizeof key)
        return poet_error_set(POET_ERR_USAGE, "--set: key too long in '%s'", item);
    memcpy(key, item, klen);
    key[klen] = '\0';
    cJSON *value = NULL;
    poet_status st = override_value(item, eq + 1, &value);
    if (st != POET_OK)
        return st;
    cJSON *node = root;
    char *part = key, *dot;
    while ((dot = strchr(part, '.'))) {
        *dot = '\0';
        cJSON *next = cJSON_GetObjectItemCaseSensitive(node, part);
        if (!next) {
            next = cJSON_CreateObject();
            if (!next || !cJSON_AddItemToObject(node, part, next)) {
                cJSON_Delete(next);
                cJSON_Delete(value);
                return poet_error_set(POET_ERR_NOMEM, "out of memory applying --set");
            }
        }
        if (!cJSON_IsObject(next)) {
            cJSON_Delete(value);
            return poet_error_set(POET_ERR_USAGE, "--set %s: '%s' is not an object", item, part);
        }
        node = next;
        part = dot + 1;
    }
    cJSON_bool placed = cJSON_GetObjectItemCaseSensitive(node, part)
                            ? cJSON_ReplaceItemInObjectCaseSensitive(node, part, value)
                            : cJSON_AddItemToObject(node, part, value);
    if (!placed) {
        cJSON_Delete(value);
        return poet_error_set(POET_ERR_NOMEM, "out of memory applying --set");
    }
    return POET_OK;
}

/* A message about a key that a --set item gave says so: "<file>: <key>: ... (from --set ITEM)".
 * The last item for that key is the one that counts. */
static void name_override(poet_status st, const char *path, int n, const char *const *overrides) {
    char message[1024], prefix[KEY_PATH_MAX + 8];
    snprintf(message, sizeof message, "%s", poet_error_message());
    size_t skip = strlen(path) + 2; /* "<file>: " */
    if (strncmp(message, path, strlen(path)) != 0 || strlen(message) < skip)
        return;
    for (int i = n - 1; i >= 0; i--) {
        const char *eq = strchr(overrides[i], '=');
        if (!eq || (size_t)(eq - overrides[i]) >= KEY_PATH_MAX)
            continue;
        snprintf(prefix, sizeof prefix, "%.*s:", (int)(eq - overrides[i]), overrides[i]);
        if (strncmp(message + skip, prefix, strlen(prefix)) == 0) {
            poet_error_clear();
            poet_error_set(st, "%s (from --set %s)", message, overrides[i]);
            return;
        }
    }
}

poet_status poet_config_load_overrides(const char *path, int n, const char *const *overrides,
                                       poet_config *cfg) {
    poet_status st = POET_OK;
    char *text = NULL;
    cJSON *root = NULL;
    poet_config_defaults(cfg);
    snprintf(cfg->source, POET_PATH_MAX, "%s", path);
    POET_TRY(read_config_text(path, &text));
    /* The file is checked whole before any override touches it, so --set never hides an error in
     * the file (trailing text, a second object). */
    POET_TRY(parse_json(path, text, &root));
    if (!cJSON_IsObject(root))
        POET_TRY(poet_config_parse_root(path, root, cfg)); /* names what the top level should be */
    for (int i = 0; i < n; i++)
        POET_TRY(apply_override(root, overrides[i]));
    st = poet_config_parse_root(path, root, cfg);
    if (st != POET_OK)
        name_override(st, path, n, overrides);
fail:
    cJSON_Delete(root);
    free(text);
    return st;
}
