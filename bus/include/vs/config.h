/*
 * config.h - YAML configuration files (libyaml), checked against a schema.
 *
 * A daemon declares the keys it understands; loading rejects unknown keys
 * (a typo must not silently fall back to a default), wrong types and
 * missing required keys, with the file, line and key in the message. The
 * parsed document is kept as a jansson tree; values are read by dotted
 * path ("nats.url"). Sizes accept KiB/MiB/GiB suffixes, durations ms/s/m/h.
 */
#ifndef VS_CONFIG_H
#define VS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

enum vs_cfg_type {
    VS_CFG_STRING,
    VS_CFG_INT,
    VS_CFG_BOOL,
    VS_CFG_SIZE,      /* bytes: 123, "64KiB", "16MiB", "2GiB" */
    VS_CFG_DURATION,  /* milliseconds: 250, "500ms", "30s", "5m", "2h" */
    VS_CFG_LIST,      /* a sequence of strings */
    VS_CFG_MAP,       /* free-form mapping (not checked below this key) */
};

struct vs_cfg_key {
    const char *path;     /* dotted path; NULL ends a schema */
    enum vs_cfg_type type;
    bool required;
    const char *help;
};

typedef struct vs_config vs_config;

/* Load and check path against the given schemas (an array of nschemas
 * NULL-path-terminated key arrays). On error returns -EINVAL (or -errno of
 * the open) and writes a one-line explanation to err. */
VS_API int vs_config_load(const char *path, const struct vs_cfg_key *const *schemas,
                          size_t nschemas, vs_config **out, char *err, size_t errlen);
/* An empty configuration (every key at its default). */
VS_API int vs_config_empty(vs_config **out);
VS_API void vs_config_free(vs_config *c);

VS_API const char *vs_config_string(const vs_config *c, const char *path, const char *def);
VS_API int64_t vs_config_int(const vs_config *c, const char *path, int64_t def);
VS_API bool vs_config_bool(const vs_config *c, const char *path, bool def);
VS_API uint64_t vs_config_size(const vs_config *c, const char *path, uint64_t def);
VS_API uint64_t vs_config_duration_ms(const vs_config *c, const char *path, uint64_t def);
/* Number of strings in a list and the i-th one (NULL when absent). */
VS_API size_t vs_config_list_len(const vs_config *c, const char *path);
VS_API const char *vs_config_list_get(const vs_config *c, const char *path, size_t i);

/* Parsers shared with command lines: 0 or -EINVAL. */
VS_API int vs_parse_size(const char *s, uint64_t *out);
VS_API int vs_parse_duration_ms(const char *s, uint64_t *out);

#endif
