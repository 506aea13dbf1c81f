/* configimpl.h — what the config module's files (config.c, config_load.c, config_json.c) share:
 * the names each enum value has in JSON, and the key-by-key parse of a JSON tree. Private to them.
 */
#ifndef POET_CONFIGIMPL_H
#define POET_CONFIGIMPL_H

#include <cjson/cJSON.h>

#include "poet/config.h"

#define KEY_PATH_MAX 512 /* longest key path in a message, e.g. model.members[3].architecture */

/* NULL-terminated, indexed by the enum's value. */
extern const char *const TREE_NAMES[];
extern const char *const OVERLAP_NAMES[];
extern const char *const SCHEDULE_NAMES[];
extern const char *const OBJECTIVE_NAMES[];
extern const char *const CONVOLUTION_NAMES[];
extern const char *const LAYER_NAMES[];
extern const char *const DATA_FORMATS[];
extern const char *const CIFAR_LABELS[];
extern const char *const LAYOUTS[];

/* Every section of a parsed JSON tree into cfg (which holds the defaults), checking every key;
 * errors are POET_ERR_CONFIG naming `src` and the key path. */
poet_status poet_config_parse_root(const char *src, const cJSON *root, poet_config *cfg);

#endif
