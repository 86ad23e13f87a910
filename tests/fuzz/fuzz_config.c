/*
 * fuzz_config.c - libFuzzer target: YAML configuration files through
 * vs_config_load (vs/config.h), and the size and duration parsers that
 * command lines share.
 *
 * The input is written to one in-memory file (memfd, or a mkstemp file
 * when memfd is unavailable), created once and rewritten per input, and
 * loaded against two schemas that use every key type (STRING, INT, BOOL,
 * SIZE, DURATION, LIST, MAP), nested sections, and a path declared by both
 * (the first wins). Checks:
 *   - a failure is -EINVAL with a one-line message;
 *   - after a success every getter works: a SIZE or DURATION value (kept
 *     as text) parses with vs_parse_size / vs_parse_duration_ms to what the
 *     getter returns, every LIST element is a string;
 *   - loading again with a schema that requires "name" succeeds exactly
 *     when the first load gave "name" a string;
 *   - vs_parse_size and vs_parse_duration_ms on the raw input (a
 *     NUL-terminated copy): a value they accept, printed in decimal, parses
 *     back to the same value.
 * Any violation aborts after a line on stderr.
 *
 * VS_FUZZ_WRITE_SEEDS=<dir> writes seed files to dir and exits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"

#include "vs/config.h"
#include "vs/keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct vs_cfg_key schema_main[] = {
    {"name", VS_CFG_STRING, false, "instance name"},
    {"debug", VS_CFG_BOOL, false, "verbose logs"},
    {"workers", VS_CFG_INT, false, "worker threads"},
    {"nats.url", VS_CFG_STRING, false, "server URL"},
    {"nats.timeout", VS_CFG_DURATION, false, "request timeout"},
    {"nats.servers", VS_CFG_LIST, false, "more servers"},
    {"limits.memory", VS_CFG_SIZE, false, "memory limit"},
    {"limits.pids", VS_CFG_INT, false, "process limit"},
    {"limits.deep.ttl", VS_CFG_DURATION, false, "three levels down"},
    {NULL, VS_CFG_STRING, false, NULL},
};

static const struct vs_cfg_key schema_extra[] = {
    {"labels", VS_CFG_MAP, false, "free-form"},
    {"allow", VS_CFG_LIST, false, "allowed things"},
    {"cache.size", VS_CFG_SIZE, false, "cache size"},
    {"cache.ttl", VS_CFG_DURATION, false, "cache ttl"},
    {"cache.enabled", VS_CFG_BOOL, false, "cache on"},
    {"name", VS_CFG_INT, false, "shadowed by schema_main"},
    {NULL, VS_CFG_STRING, false, NULL},
};

static const struct vs_cfg_key schema_required[] = {
    {"name", VS_CFG_STRING, true, "must be there"},
    {NULL, VS_CFG_STRING, false, NULL},
};

static const struct vs_cfg_key *const schemas[] = {schema_main, schema_extra};
static const struct vs_cfg_key *const schemas_req[] = {schema_main, schema_extra,
                                                       schema_required};

static int cfg_fd = -1;
static char cfg_path[4096];

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void remove_file(void)
{
    unlink(cfg_path);
}

/* Replace the file's contents with data. */
static void put_file(const uint8_t *data, size_t size)
{
    size_t off = 0;

    if (ftruncate(cfg_fd, 0) != 0) {
        die("ftruncate", cfg_path);
    }
    while (off < size) {
        ssize_t n = pwrite(cfg_fd, data + off, size - off, (off_t)off);
        if (n <= 0) {
            die("pwrite", cfg_path);
        }
        off += (size_t)n;
    }
}

/* Whether an earlier schema key has k's path (the first one wins). */
static bool shadowed(const struct vs_cfg_key *k)
{
    for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++) {
        for (const struct vs_cfg_key *e = schemas[s]; e->path != NULL; e++) {
            if (e == k) {
                return false;
            }
            if (strcmp(e->path, k->path) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* The getters on a loaded configuration, with the invariants above. */
static void check_getters(const vs_config *c)
{
    for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++) {
        for (const struct vs_cfg_key *k = schemas[s]; k->path != NULL; k++) {
            const char *text = vs_config_string(c, k->path, NULL);
            uint64_t u = 0;

            switch (k->type) {
            case VS_CFG_STRING:
                (void)vs_config_int(c, k->path, -1);
                break;
            case VS_CFG_INT:
                (void)vs_config_int(c, k->path, 1);
                if (text != NULL && !shadowed(k)) {
                    die("an INT value reads as a string", k->path);
                }
                break;
            case VS_CFG_BOOL:
                (void)vs_config_bool(c, k->path, true);
                break;
            case VS_CFG_SIZE:
                if (text != NULL &&
                    (vs_parse_size(text, &u) != 0 || vs_config_size(c, k->path, ~u) != u)) {
                    die("a loaded SIZE does not parse back", text);
                }
                break;
            case VS_CFG_DURATION:
                if (text != NULL && (vs_parse_duration_ms(text, &u) != 0 ||
                                     vs_config_duration_ms(c, k->path, ~u) != u)) {
                    die("a loaded DURATION does not parse back", text);
                }
                break;
            case VS_CFG_LIST:
                for (size_t i = 0, n = vs_config_list_len(c, k->path); i < n; i++) {
                    if (vs_config_list_get(c, k->path, i) == NULL) {
                        die("a LIST element is not a string", k->path);
                    }
                }
                if (vs_config_list_get(c, k->path, vs_config_list_len(c, k->path)) != NULL) {
                    die("a LIST has an element past its length", k->path);
                }
                break;
            case VS_CFG_MAP:
                (void)vs_config_string(c, "labels.team", NULL);
                (void)vs_config_list_len(c, "labels.hosts");
                (void)vs_config_list_get(c, "labels.hosts", 0);
                (void)vs_config_size(c, "labels.a.b", 0);
                break;
            }
        }
    }
}

/* A number accepted by parse, printed in decimal, parses to itself. */
static void check_parser(int (*parse)(const char *, uint64_t *), const char *s, const char *name)
{
    uint64_t v = 0, again = 0;
    char dec[32];

    if (parse(s, &v) != 0) {
        return;
    }
    snprintf(dec, sizeof dec, "%" PRIu64, v);
    if (parse(dec, &again) != 0 || again != v) {
        fprintf(stderr, "fuzz_config: %s(\"%s\") = %" PRIu64 "\n", name, s, v);
        die("the decimal form of a parsed value does not parse to itself", dec);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    vs_config *c = NULL;
    int rc;

    put_file(data, size);
    err[0] = 'x';
    err[1] = '\0';
    rc = vs_config_load(cfg_path, schemas, 2, &c, err, sizeof err);
    if (rc != 0) {
        if (rc != -EINVAL || c != NULL || err[0] == '\0' || strcmp(err, "x") == 0 ||
            strchr(err, '\n') != NULL) {
            fprintf(stderr, "fuzz_config: rc %d, err \"%s\"\n", rc, err);
            die("a refusal must be -EINVAL with a one-line message and no config", NULL);
        }
    } else {
        if (c == NULL) {
            die("loaded, but no config", NULL);
        }
        check_getters(c);
        bool has_name = vs_config_string(c, "name", NULL) != NULL;
        vs_config *c2 = NULL;
        rc = vs_config_load(cfg_path, schemas_req, 3, &c2, err, sizeof err);
        if ((rc == 0) != has_name) {
            fprintf(stderr, "fuzz_config: rc %d, err \"%s\", name %s\n", rc, err,
                    has_name ? "present" : "absent");
            die("a required key is checked inconsistently", NULL);
        }
        vs_config_free(c2);
        vs_config_free(c);
    }

    char *s = malloc(size + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check_parser(vs_parse_size, s, "vs_parse_size");
    check_parser(vs_parse_duration_ms, s, "vs_parse_duration_ms");
    free(s);
    return 0;
}

/* ---- init and seeds -------------------------------------------------------- */

static void write_seeds(const char *dir)
{
    static const struct fuzz_seed seeds[] = {
        {"full.yaml",
         "# every key type\n"
         "name: vs-fuzz\n"
         "debug: yes\n"
         "workers: -42\n"
         "nats:\n"
         "  url: \"nats://127.0.0.1:4222\"\n"
         "  timeout: 30s\n"
         "  servers:\n"
         "    - nats://a:4222\n"
         "    - 'nats://b:4222'\n"
         "limits:\n"
         "  memory: 512MiB\n"
         "  pids: 64\n"
         "  deep:\n"
         "    ttl: 2h\n"
         "labels:\n"
         "  team: core\n"
         "  hosts: [a, b]\n"
         "  nested: {x.y: 1, z: [1, {w: v}]}\n"
         "allow: [read, write]\n"
         "cache:\n"
         "  size: 18446744073709551615\n"
         "  ttl: 250ms\n"
         "  enabled: Off\n"},
        {"flow.yaml", "{name: a, nats: {url: x, servers: [y, z]}, cache: {size: 1T}}\n"},
        {"empty-sections.yaml", "name:\nnats:\nlimits: ~\nlabels: null\nallow:\n"},
        {"minimal.yaml", "name: x\n"},
        {"empty.yaml", ""},
        {"doc-markers.yaml", "---\nname: \"\\u00e9\\t\"\n...\n"},
        {"two-docs.yaml", "---\nname: a\n---\nname: b\n"},
        {"anchor.yaml", "name: &n x\nnats:\n  url: *n\n"},
        {"unknown-key.yaml", "nats:\n  urll: typo\n"},
        {"wrong-type.yaml", "workers: many\nlimits:\n  memory: 1.5GiB\n"},
        {"out-of-range.yaml", "workers: 9223372036854775808\nlimits: {memory: 20000000TiB}\n"},
        {"list-of-maps.yaml", "allow:\n  - {a: b}\n"},
        {"dotted-key.yaml", "nats.url: x\n"},
        {"duplicate.yaml", "name: a\nname: b\n"},
        {"deep.yaml", "labels: {a: {b: {c: {d: {e: {f: {g: {h: {i: {j: {k: {l: {m: {n: {o: {p: "
                      "{q: {r: 1}}}}}}}}}}}}}}}}}\n"},
        {"scalar-top.yaml", "64KiB"},
        {"duration.txt", "1500ms"},
        {"bad-utf8.yaml", "name: \xff\xfe\n"},
    };
    fuzz_write_seeds(dir, seeds, sizeof seeds / sizeof seeds[0]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("VS_FUZZ_WRITE_SEEDS");

    (void)argc;
    (void)argv;
    if (vs_crypto_init() != 0) {
        abort();
    }
    if (seeds != NULL && seeds[0] != '\0') {
        write_seeds(seeds);
        exit(0);
    }
    cfg_fd = memfd_create("fuzz_config.yaml", MFD_CLOEXEC);
    if (cfg_fd >= 0) {
        snprintf(cfg_path, sizeof cfg_path, "/proc/self/fd/%d", cfg_fd);
        if (access(cfg_path, R_OK) != 0) { /* no /proc */
            close(cfg_fd);
            cfg_fd = -1;
        }
    }
    if (cfg_fd < 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(cfg_path, sizeof cfg_path, "%s/vs-fuzz-config-XXXXXX",
                 tmp != NULL && tmp[0] ? tmp : "/tmp");
        cfg_fd = mkstemp(cfg_path);
        if (cfg_fd < 0) {
            die("mkstemp", cfg_path);
        }
        atexit(remove_file);
    }
    return 0;
}
