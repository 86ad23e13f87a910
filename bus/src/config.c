/*
 * config.c - YAML configuration files checked against schemas (vs/config.h).
 *
 * The file is read into memory (at most 1 MiB), parsed with libyaml's event
 * parser and turned into a jansson tree while it is checked: every key is
 * classified when it is met, so an error can name the file, the line and
 * the dotted path without a side table of line numbers. After the document,
 * the required keys are looked up in the tree.
 *
 * Why it is shaped this way:
 * - Checking at load means the getters cannot fail: they read a tree whose
 *   shape is known and return the default for an absent key. A typo is an
 *   error ("key 'nats.urll' is not known"), never a silent default.
 * - The event parser (not libyaml's document loader) lets the loader refuse
 *   aliases and anchors before anything is expanded (billion laughs), stop at
 *   the 17th level of nesting before the whole file is parsed, and keep the
 *   recursion of this file bounded by that depth.
 * - A value is stored in the tree as: STRING a json string, INT a json
 *   integer, BOOL a json boolean, SIZE and DURATION the text as written (a
 *   json string), parsed again by the getter with the same parser, so the
 *   whole uint64 range works (jansson integers are signed), LIST an array of
 *   strings, MAP objects, arrays and strings as written. An empty value
 *   ("key:", "~", "null") of a mapping or list is stored as json null and
 *   reads as absent, so commenting out every entry of a section is not an
 *   error.
 * - Keys of the checked part are plain names without '.', so a dotted path
 *   has one meaning; below a VS_CFG_MAP key anything goes (keys with dots
 *   included), which the getters reach only when the path is unambiguous.
 */
#include "vs/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <yaml.h>

#define CFG_MAX_BYTES (1024 * 1024)
#define CFG_MAX_DEPTH 16

struct vs_config {
    json_t *root; /* an object */
};

/* State of one vs_config_load. */
struct loader {
    yaml_parser_t parser;
    const char *file;
    const unsigned char *buf; /* the file's bytes, for reader error lines */
    size_t len;
    const struct vs_cfg_key *const *schemas;
    size_t nschemas;
    char *err;
    size_t errlen;
};

/* A suffix and what it multiplies by; the tables end with a NULL name. */
struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1}, {"B", 1},
    {"K", 1ULL << 10}, {"KiB", 1ULL << 10},
    {"M", 1ULL << 20}, {"MiB", 1ULL << 20},
    {"G", 1ULL << 30}, {"GiB", 1ULL << 30},
    {"T", 1ULL << 40}, {"TiB", 1ULL << 40},
    {NULL, 0},
};

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}, {NULL, 0},
};

/* What a value of each type must be, for error messages. */
static const char *const type_desc[] = {
    [VS_CFG_STRING] = "a string",
    [VS_CFG_INT] = "an integer",
    [VS_CFG_BOOL] = "a boolean (true/false, yes/no, on/off)",
    [VS_CFG_SIZE] = "a size (bytes, or with B, K, KiB, M, MiB, G, GiB, T, TiB)",
    [VS_CFG_DURATION] = "a duration (milliseconds, or with ms, s, m, h)",
    [VS_CFG_LIST] = "a list of strings",
    [VS_CFG_MAP] = "a mapping",
};

/* ---- scalar parsers ---- */

/* Digits followed by one of units' suffixes (exact case, no spaces, no
 * sign, no fraction). 0, -EINVAL for bad syntax, -ERANGE past UINT64_MAX. */
static int parse_scaled(const char *s, const struct unit *units, uint64_t *out)
{
    uint64_t v = 0;
    bool range = false;
    size_t i = 0;

    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            range = true;
        else
            v = v * 10 + d;
    }
    if (i == 0)
        return -EINVAL;
    for (const struct unit *u = units; u->name != NULL; u++) {
        if (strcmp(s + i, u->name) != 0)
            continue;
        if (range || v > UINT64_MAX / u->mult)
            return -ERANGE;
        *out = v * u->mult;
        return 0;
    }
    return -EINVAL;
}

/* Decimal with an optional sign. 0, -EINVAL or -ERANGE (outside int64). */
static int parse_int64(const char *s, int64_t *out)
{
    bool neg = s[0] == '-';
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0, start = i;
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    bool range = false;

    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (lim - d) / 10)
            range = true;
        else
            v = v * 10 + d;
    }
    if (i == start || s[i] != '\0')
        return -EINVAL;
    if (range)
        return -ERANGE;
    *out = !neg ? (int64_t)v : v == lim ? INT64_MIN : -(int64_t)v;
    return 0;
}

/* true/false, yes/no, on/off in any case. 0 or -EINVAL. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off"};

    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(s, words[i]) == 0) {
            *out = i % 2 == 0;
            return 0;
        }
    }
    return -EINVAL;
}

int vs_parse_size(const char *s, uint64_t *out)
{
    return s != NULL && parse_scaled(s, size_units, out) == 0 ? 0 : -EINVAL;
}

int vs_parse_duration_ms(const char *s, uint64_t *out)
{
    return s != NULL && parse_scaled(s, duration_units, out) == 0 ? 0 : -EINVAL;
}

/* ---- errors ---- */

/* Show control characters in s as '?' so that an error stays one line. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* Write "FILE:LINE: message" (or "FILE: message" when line is 0) to the
 * caller's buffer as one line. Returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static int fail(struct loader *ld, size_t line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (ld->err == NULL || ld->errlen == 0)
        return -EINVAL;
    if (line != 0)
        n = snprintf(ld->err, ld->errlen, "%s:%zu: ", ld->file, line);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", ld->file);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    one_line(ld->err);
    return -EINVAL;
}

/* "cannot open FILE: reason" / "cannot read FILE: reason"; returns -e. */
static int io_error(struct loader *ld, const char *what, int e)
{
    if (ld->err != NULL && ld->errlen > 0) {
        snprintf(ld->err, ld->errlen, "cannot %s %s: %s", what, ld->file, strerror(e));
        one_line(ld->err);
    }
    return -e;
}

static int oom(struct loader *ld)
{
    fail(ld, 0, "out of memory");
    return -ENOMEM;
}

static size_t line_of(const yaml_event_t *ev)
{
    return ev->start_mark.line + 1;
}

/* Explain why yaml_parser_parse failed. */
static int syntax_error(struct loader *ld)
{
    const yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem != NULL ? p->problem : "unknown problem";

    if (p->error == YAML_MEMORY_ERROR)
        return oom(ld);
    if (p->error == YAML_READER_ERROR) {
        size_t line = 1;
        for (size_t i = 0; i < p->problem_offset && i < ld->len; i++)
            line += ld->buf[i] == '\n';
        return fail(ld, line, "invalid input: %s (byte %zu)", problem, p->problem_offset);
    }
    if (p->context != NULL)
        return fail(ld, p->problem_mark.line + 1, "YAML syntax error: %s (%s at line %zu)",
                    problem, p->context, p->context_mark.line + 1);
    return fail(ld, p->problem_mark.line + 1, "YAML syntax error: %s", problem);
}

/* ---- loading ---- */

/* The next event, refusing aliases and anchors. On success the caller owns
 * *ev (yaml_event_delete); on error nothing is left to free. */
static int next_event(struct loader *ld, yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL;

    if (!yaml_parser_parse(&ld->parser, ev))
        return syntax_error(ld);
    if (ev->type == YAML_ALIAS_EVENT)
        anchor = ev->data.alias.anchor;
    else if (ev->type == YAML_SCALAR_EVENT)
        anchor = ev->data.scalar.anchor;
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        anchor = ev->data.sequence_start.anchor;
    else if (ev->type == YAML_MAPPING_START_EVENT)
        anchor = ev->data.mapping_start.anchor;
    if (anchor != NULL) {
        size_t line = line_of(ev);
        bool alias = ev->type == YAML_ALIAS_EVENT;
        yaml_event_delete(ev);
        return fail(ld, line, "YAML %s are not allowed", alias ? "aliases" : "anchors");
    }
    return 0;
}

/* An empty plain scalar, "~" or "null": no value. */
static bool is_null(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;

    return ev->type == YAML_SCALAR_EVENT && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
            strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/* prefix + "." + key, or a copy of key when prefix is NULL; NULL when out
 * of memory. */
static char *join(const char *prefix, const char *key, size_t len)
{
    size_t plen = prefix != NULL ? strlen(prefix) + 1 : 0;
    char *p = malloc(plen + len + 1);

    if (p == NULL)
        return NULL;
    if (prefix != NULL) {
        memcpy(p, prefix, plen - 1);
        p[plen - 1] = '.';
    }
    memcpy(p + plen, key, len);
    p[plen + len] = '\0';
    return p;
}

/* The schema key with exactly this path (the first one wins), or NULL;
 * *branch tells whether some schema key lies below path. */
static const struct vs_cfg_key *find_key(const struct loader *ld, const char *path, bool *branch)
{
    size_t n = strlen(path);

    *branch = false;
    for (size_t s = 0; s < ld->nschemas; s++) {
        for (const struct vs_cfg_key *k = ld->schemas[s]; k != NULL && k->path != NULL; k++) {
            if (strcmp(k->path, path) == 0)
                return k;
            if (strncmp(k->path, path, n) == 0 && k->path[n] == '.')
                *branch = true;
        }
    }
    return NULL;
}

/* A scalar event as a json string; path names it in errors. */
static int scalar_string(struct loader *ld, const yaml_event_t *ev, const char *path, json_t **out)
{
    if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length) != NULL)
        return fail(ld, line_of(ev), "'%s' contains a NUL character", path);
    *out = json_stringn((const char *)ev->data.scalar.value, ev->data.scalar.length);
    return *out != NULL ? 0 : oom(ld);
}

static int load_mapping(struct loader *ld, const yaml_event_t *start, const char *prefix,
                        bool checked, int depth, json_t **out);

/* Anything below a VS_CFG_MAP key, starting at ev (borrowed) at nesting
 * level depth: scalars become strings, sequences arrays, mappings objects. */
static int load_free(struct loader *ld, const yaml_event_t *ev, const char *path, int depth,
                     json_t **out)
{
    json_t *arr;
    int rc = 0;

    if (ev->type == YAML_SCALAR_EVENT)
        return scalar_string(ld, ev, path, out);
    if (ev->type == YAML_MAPPING_START_EVENT)
        return load_mapping(ld, ev, path, false, depth + 1, out);
    /* the only other event that can start a node */
    if (depth + 1 > CFG_MAX_DEPTH)
        return fail(ld, line_of(ev), "nesting deeper than %d levels", CFG_MAX_DEPTH);
    if ((arr = json_array()) == NULL)
        return oom(ld);
    for (;;) {
        yaml_event_t item;
        json_t *child = NULL;

        if ((rc = next_event(ld, &item)) != 0)
            break;
        if (item.type != YAML_SEQUENCE_END_EVENT) {
            rc = load_free(ld, &item, path, depth + 1, &child);
            if (rc == 0 && json_array_append_new(arr, child) != 0)
                rc = oom(ld);
        }
        bool end = item.type == YAML_SEQUENCE_END_EVENT;
        yaml_event_delete(&item);
        if (rc != 0 || end)
            break;
    }
    if (rc != 0)
        json_decref(arr);
    else
        *out = arr;
    return rc;
}

/* A sequence of scalars at nesting level depth; start is its
 * SEQUENCE_START (borrowed). */
static int load_list(struct loader *ld, const yaml_event_t *start, const char *path, int depth,
                     json_t **out)
{
    json_t *arr;
    int rc = 0;

    if (depth > CFG_MAX_DEPTH)
        return fail(ld, line_of(start), "nesting deeper than %d levels", CFG_MAX_DEPTH);
    if ((arr = json_array()) == NULL)
        return oom(ld);
    for (;;) {
        yaml_event_t item;
        json_t *s = NULL;

        if ((rc = next_event(ld, &item)) != 0)
            break;
        bool end = item.type == YAML_SEQUENCE_END_EVENT;
        if (!end && item.type != YAML_SCALAR_EVENT)
            rc = fail(ld, line_of(&item), "'%s' must be %s", path, type_desc[VS_CFG_LIST]);
        else if (!end && (rc = scalar_string(ld, &item, path, &s)) == 0 &&
                 json_array_append_new(arr, s) != 0)
            rc = oom(ld);
        yaml_event_delete(&item);
        if (rc != 0 || end)
            break;
    }
    if (rc != 0)
        json_decref(arr);
    else
        *out = arr;
    return rc;
}

/* The value of schema key path of the given type, starting at ev (borrowed)
 * inside a mapping at nesting level depth. */
static int load_typed(struct loader *ld, const yaml_event_t *ev, const char *path,
                      enum vs_cfg_type type, int depth, json_t **out)
{
    const char *s = (const char *)ev->data.scalar.value;
    int64_t i;
    uint64_t u;
    bool b;
    int rc;

    if (type == VS_CFG_MAP || type == VS_CFG_LIST) {
        if (is_null(ev))
            *out = json_null();
        else if (type == VS_CFG_MAP && ev->type == YAML_MAPPING_START_EVENT)
            return load_mapping(ld, ev, path, false, depth + 1, out);
        else if (type == VS_CFG_LIST && ev->type == YAML_SEQUENCE_START_EVENT)
            return load_list(ld, ev, path, depth + 1, out);
        else
            return fail(ld, line_of(ev), "'%s' must be %s", path, type_desc[type]);
        return 0;
    }
    if (ev->type != YAML_SCALAR_EVENT)
        return fail(ld, line_of(ev), "'%s' must be %s", path, type_desc[type]);
    if (type == VS_CFG_STRING)
        return scalar_string(ld, ev, path, out);
    if (memchr(s, '\0', ev->data.scalar.length) != NULL)
        rc = -EINVAL;
    else if (type == VS_CFG_INT)
        rc = parse_int64(s, &i);
    else if (type == VS_CFG_BOOL)
        rc = parse_bool(s, &b);
    else
        rc = parse_scaled(s, type == VS_CFG_SIZE ? size_units : duration_units, &u);
    if (rc == -ERANGE)
        return fail(ld, line_of(ev), "'%s' is out of range", path);
    if (rc != 0)
        return fail(ld, line_of(ev), "'%s' must be %s", path, type_desc[type]);
    if (type == VS_CFG_INT)
        *out = json_integer(i);
    else if (type == VS_CFG_BOOL)
        *out = json_boolean(b);
    else
        *out = json_stringn(s, ev->data.scalar.length);
    return *out != NULL ? 0 : oom(ld);
}

/* One key (kev, borrowed) and its value, added to obj. */
static int load_entry(struct loader *ld, const yaml_event_t *kev, json_t *obj,
                      const char *prefix, bool checked, int depth)
{
    const char *name = (const char *)kev->data.scalar.value;
    size_t len = kev->data.scalar.length, line = line_of(kev);
    const struct vs_cfg_key *key = NULL;
    bool branch = false;
    yaml_event_t vev;
    json_t *child = NULL;
    char *path;
    int rc;

    if (kev->type != YAML_SCALAR_EVENT)
        return fail(ld, line, "mapping keys must be strings");
    if (memchr(name, '\0', len) != NULL)
        return fail(ld, line, "a key contains a NUL character");
    if ((path = join(prefix, name, len)) == NULL)
        return oom(ld);
    if (checked && (len == 0 || memchr(name, '.', len) != NULL))
        rc = fail(ld, line, "key '%s' must not be empty or contain '.'", path);
    else if (json_object_getn(obj, name, len) != NULL)
        rc = fail(ld, line, "duplicate key '%s'", path);
    else if (checked && (key = find_key(ld, path, &branch)) == NULL && !branch)
        rc = fail(ld, line, "key '%s' is not known", path);
    else if ((rc = next_event(ld, &vev)) == 0) {
        if (!checked)
            rc = load_free(ld, &vev, path, depth, &child);
        else if (key != NULL)
            rc = load_typed(ld, &vev, path, key->type, depth, &child);
        else if (is_null(&vev))
            child = json_null();
        else if (vev.type == YAML_MAPPING_START_EVENT)
            rc = load_mapping(ld, &vev, path, true, depth + 1, &child);
        else
            rc = fail(ld, line_of(&vev), "'%s' must be %s", path, type_desc[VS_CFG_MAP]);
        yaml_event_delete(&vev);
        /* json_object_setn_new releases child on failure too */
        if (rc == 0 && json_object_setn_new(obj, name, len, child) != 0)
            rc = oom(ld);
    }
    free(path);
    return rc;
}

/* A mapping at nesting level depth; start is its MAPPING_START (borrowed),
 * prefix its dotted path (NULL at the top). checked: keys are checked
 * against the schemas; otherwise (below a VS_CFG_MAP key) taken as they are. */
static int load_mapping(struct loader *ld, const yaml_event_t *start, const char *prefix,
                        bool checked, int depth, json_t **out)
{
    json_t *obj;
    int rc = 0;

    if (depth > CFG_MAX_DEPTH)
        return fail(ld, line_of(start), "nesting deeper than %d levels", CFG_MAX_DEPTH);
    if ((obj = json_object()) == NULL)
        return oom(ld);
    for (;;) {
        yaml_event_t kev;

        if ((rc = next_event(ld, &kev)) != 0)
            break;
        bool end = kev.type == YAML_MAPPING_END_EVENT;
        if (!end)
            rc = load_entry(ld, &kev, obj, prefix, checked, depth);
        yaml_event_delete(&kev);
        if (rc != 0 || end)
            break;
    }
    if (rc != 0)
        json_decref(obj);
    else
        *out = obj;
    return rc;
}

/* The whole stream: nothing (an empty config), or one document whose top
 * node is a mapping or empty. */
static int load_stream(struct loader *ld, json_t **root)
{
    yaml_event_t ev;
    int rc;

    *root = NULL;
    if ((rc = next_event(ld, &ev)) != 0) /* STREAM_START */
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next_event(ld, &ev)) != 0)
        return rc;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        *root = json_object();
        return *root != NULL ? 0 : oom(ld);
    }
    yaml_event_delete(&ev); /* DOCUMENT_START */
    if ((rc = next_event(ld, &ev)) != 0)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = load_mapping(ld, &ev, NULL, true, 1, root);
    else if (is_null(&ev))
        rc = (*root = json_object()) != NULL ? 0 : oom(ld);
    else
        rc = fail(ld, line_of(&ev), "the top level must be a mapping");
    yaml_event_delete(&ev);
    if (rc == 0 && (rc = next_event(ld, &ev)) == 0) { /* DOCUMENT_END */
        yaml_event_delete(&ev);
        if ((rc = next_event(ld, &ev)) == 0) {
            if (ev.type == YAML_DOCUMENT_START_EVENT)
                rc = fail(ld, line_of(&ev), "only one YAML document is allowed");
            yaml_event_delete(&ev);
        }
    }
    if (rc != 0) {
        json_decref(*root);
        *root = NULL;
    }
    return rc;
}

static const json_t *lookup(const vs_config *c, const char *path)
{
    const json_t *node;

    if (c == NULL || path == NULL)
        return NULL;
    node = c->root;
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);

        node = json_object_getn(node, path, n);
        if (node == NULL || dot == NULL)
            return node;
        path = dot + 1;
    }
}

/* Every required key of every schema is present (and not empty). */
static int check_required(struct loader *ld, const vs_config *c)
{
    for (size_t s = 0; s < ld->nschemas; s++) {
        for (const struct vs_cfg_key *k = ld->schemas[s]; k != NULL && k->path != NULL; k++) {
            const json_t *v = lookup(c, k->path);
            if (k->required && (v == NULL || json_is_null(v)))
                return fail(ld, 0, "missing required key '%s'", k->path);
        }
    }
    return 0;
}

/* Read the whole file, refusing more than CFG_MAX_BYTES. */
static int read_all(struct loader *ld, unsigned char **buf, size_t *len)
{
    unsigned char *p;
    size_t n = 0;
    int fd, rc = 0;

    fd = open(ld->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return io_error(ld, "open", errno);
    if ((p = malloc(CFG_MAX_BYTES + 1)) == NULL) {
        close(fd);
        return oom(ld);
    }
    while (n < CFG_MAX_BYTES + 1) {
        ssize_t r = read(fd, p + n, CFG_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = io_error(ld, "read", errno);
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc == 0 && n > CFG_MAX_BYTES)
        rc = fail(ld, 0, "larger than %d bytes", CFG_MAX_BYTES);
    if (rc != 0) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = n;
    return 0;
}

int vs_config_load(const char *path, const struct vs_cfg_key *const *schemas, size_t nschemas,
                   vs_config **out, char *err, size_t errlen)
{
    struct loader ld = {.file = path, .schemas = schemas, .nschemas = nschemas,
                        .err = err, .errlen = errlen};
    unsigned char *buf = NULL;
    vs_config tmp;
    size_t len = 0;
    int rc;

    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if ((rc = read_all(&ld, &buf, &len)) != 0)
        return rc;
    ld.buf = buf;
    ld.len = len;
    if (!yaml_parser_initialize(&ld.parser)) {
        free(buf);
        return oom(&ld);
    }
    yaml_parser_set_input_string(&ld.parser, buf, len);
    rc = load_stream(&ld, &tmp.root);
    yaml_parser_delete(&ld.parser);
    free(buf);
    if (rc == 0)
        rc = check_required(&ld, &tmp);
    if (rc == 0 && (*out = malloc(sizeof **out)) == NULL)
        rc = oom(&ld);
    if (rc != 0) {
        json_decref(tmp.root);
        return rc;
    }
    **out = tmp;
    return 0;
}

int vs_config_empty(vs_config **out)
{
    vs_config *c = malloc(sizeof *c);

    if (c == NULL || (c->root = json_object()) == NULL) {
        free(c);
        *out = NULL;
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void vs_config_free(vs_config *c)
{
    if (c == NULL)
        return;
    json_decref(c->root);
    free(c);
}

/* Getters: the value at path when it is there with the right type, else
 * def. c may be NULL (every key absent). */

const char *vs_config_string(const vs_config *c, const char *path, const char *def)
{
    const json_t *v = lookup(c, path);
    return json_is_string(v) ? json_string_value(v) : def;
}

int64_t vs_config_int(const vs_config *c, const char *path, int64_t def)
{
    const json_t *v = lookup(c, path);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

bool vs_config_bool(const vs_config *c, const char *path, bool def)
{
    const json_t *v = lookup(c, path);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

uint64_t vs_config_size(const vs_config *c, const char *path, uint64_t def)
{
    const json_t *v = lookup(c, path);
    uint64_t n;
    return json_is_string(v) && vs_parse_size(json_string_value(v), &n) == 0 ? n : def;
}

uint64_t vs_config_duration_ms(const vs_config *c, const char *path, uint64_t def)
{
    const json_t *v = lookup(c, path);
    uint64_t n;
    return json_is_string(v) && vs_parse_duration_ms(json_string_value(v), &n) == 0 ? n : def;
}

size_t vs_config_list_len(const vs_config *c, const char *path)
{
    const json_t *v = lookup(c, path);
    return json_is_array(v) ? json_array_size(v) : 0;
}

const char *vs_config_list_get(const vs_config *c, const char *path, size_t i)
{
    const json_t *v = lookup(c, path);
    return json_is_array(v) ? json_string_value(json_array_get(v, i)) : NULL;
}
