/*
 * test_config.c - vs_config_load and the size/duration parsers.
 *
 * Each test writes a YAML file into a private mkdtemp directory, loads it
 * against the schemas below and checks either the values read back or the
 * exact error text (file, line, key), since those messages are what an
 * operator sees when a daemon refuses to start.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vs/config.h"

static const struct vs_cfg_key daemon_keys[] = {
    {"name", VS_CFG_STRING, false, "display name"},
    {"nats.url", VS_CFG_STRING, true, "bus URL"},
    {"nats.port", VS_CFG_INT, false, "port"},
    {"nats.tls.enabled", VS_CFG_BOOL, false, "use TLS"},
    {"limits.max_blob", VS_CFG_SIZE, false, "largest blob"},
    {"limits.timeout", VS_CFG_DURATION, false, "request timeout"},
    {"peers", VS_CFG_LIST, false, "peer names"},
    {"labels", VS_CFG_MAP, false, "free-form labels"},
    {NULL, VS_CFG_STRING, false, NULL},
};

static const struct vs_cfg_key common_keys[] = {
    {"log.level", VS_CFG_STRING, false, "debug, info, warn, error"},
    {"shutdown_timeout", VS_CFG_DURATION, false, "bound on draining"},
    {NULL, VS_CFG_STRING, false, NULL},
};

/* The same keys, none required: for files that legitimately omit nats.url. */
static const struct vs_cfg_key optional_keys[] = {
    {"nats.url", VS_CFG_STRING, false, "bus URL"},
    {"labels", VS_CFG_MAP, false, "free-form labels"},
    {NULL, VS_CFG_STRING, false, NULL},
};

static const struct vs_cfg_key *const schemas[] = {daemon_keys, common_keys};
static const struct vs_cfg_key *const optional[] = {optional_keys};

static char dir[] = "/tmp/vs-test-config-XXXXXX";
static char file[sizeof dir + 16];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(file, sizeof file, "%s/t.yaml", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(file);
    return rmdir(dir);
}

static void write_file(const char *text, size_t len)
{
    FILE *f = fopen(file, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Write text and load it against the given schemas. */
static int load_with(const char *text, const struct vs_cfg_key *const *s, size_t n,
                     vs_config **c, char *err, size_t errlen)
{
    write_file(text, strlen(text));
    return vs_config_load(file, s, n, c, err, errlen);
}

static vs_config *load_ok(const char *text)
{
    vs_config *c = NULL;
    char err[256];
    int rc = load_with(text, schemas, 2, &c, err, sizeof err);

    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

/* Loading text against schemas s (n of them) must fail with -EINVAL,
 * leave *out NULL and write exactly file + suffix (printf-formatted). */
__attribute__((format(printf, 4, 5)))
static void expect_error_in(const struct vs_cfg_key *const *s, size_t n, const char *text,
                            const char *fmt, ...)
{
    char err[512], suffix[400], want[512];
    vs_config *c = (vs_config *)1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(suffix, sizeof suffix, fmt, ap);
    va_end(ap);
    snprintf(want, sizeof want, "%s%s", file, suffix);
    assert_int_equal(load_with(text, s, n, &c, err, sizeof err), -EINVAL);
    assert_null(c);
    assert_string_equal(err, want);
}

#define expect_error(text, ...) expect_error_in(schemas, 2, (text), __VA_ARGS__)

static void test_good_file_all_types(void **state)
{
    (void)state;
    vs_config *c = load_ok("# a daemon\n"
                           "name: \"123\"\n"
                           "nats:\n"
                           "  url: nats://127.0.0.1:4222\n"
                           "  port: -42\n"
                           "  tls:\n"
                           "    enabled: yes\n"
                           "limits:\n"
                           "  max_blob: 16MiB\n"
                           "  timeout: 30s\n"
                           "peers: [a, \"b c\", 3]\n"
                           "labels:\n"
                           "  team: core\n"
                           "log:\n"
                           "  level: debug\n"
                           "shutdown_timeout: 2500\n");

    assert_string_equal(vs_config_string(c, "name", NULL), "123");
    assert_string_equal(vs_config_string(c, "nats.url", NULL), "nats://127.0.0.1:4222");
    assert_int_equal(vs_config_int(c, "nats.port", 0), -42);
    assert_true(vs_config_bool(c, "nats.tls.enabled", false));
    assert_int_equal(vs_config_size(c, "limits.max_blob", 0), 16 * 1024 * 1024);
    assert_int_equal(vs_config_duration_ms(c, "limits.timeout", 0), 30000);
    assert_int_equal(vs_config_list_len(c, "peers"), 3);
    assert_string_equal(vs_config_list_get(c, "peers", 0), "a");
    assert_string_equal(vs_config_list_get(c, "peers", 1), "b c");
    assert_string_equal(vs_config_list_get(c, "peers", 2), "3");
    assert_null(vs_config_list_get(c, "peers", 3));
    assert_string_equal(vs_config_string(c, "labels.team", NULL), "core");
    assert_string_equal(vs_config_string(c, "log.level", NULL), "debug");
    assert_int_equal(vs_config_duration_ms(c, "shutdown_timeout", 0), 2500);
    /* a getter of the wrong type for a key falls back to its default */
    assert_int_equal(vs_config_int(c, "nats.url", 7), 7);
    vs_config_free(c);
}

static void test_int_limits(void **state)
{
    (void)state;
    vs_config *c = load_ok("nats: {url: x, port: -9223372036854775808}\n");
    assert_true(vs_config_int(c, "nats.port", 0) == INT64_MIN);
    vs_config_free(c);
    c = load_ok("nats: {url: x, port: \"+9223372036854775807\"}\n");
    assert_true(vs_config_int(c, "nats.port", 0) == INT64_MAX);
    vs_config_free(c);

    expect_error("nats:\n  url: x\n  port: 9223372036854775808\n",
                 ":3: 'nats.port' is out of range");
    expect_error("nats:\n  url: x\n  port: -9223372036854775809\n",
                 ":3: 'nats.port' is out of range");
    expect_error("nats:\n  url: x\n  port: 0x10\n", ":3: 'nats.port' must be an integer");
    expect_error("nats:\n  url: x\n  port: 1_000\n", ":3: 'nats.port' must be an integer");
    expect_error("nats:\n  url: x\n  port: ''\n", ":3: 'nats.port' must be an integer");
}

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("nats:\n  url: x\n  urll: y\n", ":3: key 'nats.urll' is not known");
    expect_error("nats:\n  url: x\nlogg:\n  level: info\n", ":3: key 'logg' is not known");
    /* a key below a leaf is not known either */
    expect_error("nats:\n  url: x\n  port:\n    deep: 1\n", ":4: 'nats.port' must be an integer");
    /* a dotted key would make paths ambiguous */
    expect_error("nats.url: x\n", ":1: key 'nats.url' must not be empty or contain '.'");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_error("nats:\n  url: x\nlog:\n  level: [debug]\n", ":4: 'log.level' must be a string");
    expect_error("nats:\n  url: x\n  port: eighty\n", ":3: 'nats.port' must be an integer");
    expect_error("nats: nats://x\n", ":1: 'nats' must be a mapping");
    expect_error("nats:\n  url: x\npeers: a\n", ":3: 'peers' must be a list of strings");
    expect_error("nats:\n  url: x\npeers:\n  - a\n  - {b: c}\n",
                 ":5: 'peers' must be a list of strings");
    expect_error("nats:\n  url: x\nlabels: [a]\n", ":3: 'labels' must be a mapping");
    expect_error("nats:\n  url: {a: b}\n", ":2: 'nats.url' must be a string");
    expect_error("- a\n- b\n", ":1: the top level must be a mapping");
    expect_error("just text\n", ":1: the top level must be a mapping");
    expect_error("? [a]\n: b\n", ":1: mapping keys must be strings");
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_error("name: x\n", ": missing required key 'nats.url'");
    /* an empty section reads as absent */
    expect_error("nats:\n", ": missing required key 'nats.url'");
    expect_error("", ": missing required key 'nats.url'");
}

static void test_bad_size_duration_overflow(void **state)
{
    (void)state;
    const char *size_msg = "'limits.max_blob' must be a size (bytes, or with B, K, KiB, M, "
                           "MiB, G, GiB, T, TiB)";
    const char *dur_msg =
        "'limits.timeout' must be a duration (milliseconds, or with ms, s, m, h)";

    expect_error("nats: {url: x}\nlimits:\n  max_blob: 1.5GiB\n", ":3: %s", size_msg);
    expect_error("nats: {url: x}\nlimits:\n  max_blob: 10 MiB\n", ":3: %s", size_msg);
    expect_error("nats: {url: x}\nlimits:\n  max_blob: 10mib\n", ":3: %s", size_msg);
    expect_error("nats: {url: x}\nlimits:\n  max_blob: -1\n", ":3: %s", size_msg);
    expect_error("nats: {url: x}\nlimits:\n  timeout: 1d\n", ":3: %s", dur_msg);
    expect_error("nats: {url: x}\nlimits:\n  timeout: s\n", ":3: %s", dur_msg);
    expect_error("nats: {url: x}\nlimits:\n  max_blob: 18446744073709551616\n",
                 ":3: 'limits.max_blob' is out of range");
    expect_error("nats: {url: x}\nlimits:\n  max_blob: 16777216TiB\n",
                 ":3: 'limits.max_blob' is out of range");
    expect_error("nats: {url: x}\nlimits:\n  timeout: 5124095576031h\n",
                 ":3: 'limits.timeout' is out of range");

    /* the largest values still load, quoted or not */
    vs_config *c = load_ok("nats: {url: x}\nlimits:\n  max_blob: \"18446744073709551615\"\n"
                           "  timeout: 5124095576030h\n");
    assert_true(vs_config_size(c, "limits.max_blob", 0) == UINT64_MAX);
    assert_true(vs_config_duration_ms(c, "limits.timeout", 0) == 5124095576030ULL * 3600000);
    vs_config_free(c);
}

static void test_bool_forms(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool value;
    } forms[] = {
        {"true", true},   {"True", true},  {"TRUE", true}, {"yes", true},  {"Yes", true},
        {"on", true},     {"ON", true},    {"false", false}, {"False", false}, {"no", false},
        {"NO", false},    {"off", false},  {"'off'", false},
    };
    char text[128];

    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(text, sizeof text, "nats:\n  url: x\n  tls:\n    enabled: %s\n", forms[i].text);
        vs_config *c = load_ok(text);
        /* the default is the opposite, so a fallback would be caught */
        assert_int_equal(vs_config_bool(c, "nats.tls.enabled", !forms[i].value), forms[i].value);
        vs_config_free(c);
    }
    static const char *const bad[] = {"1", "0", "y", "n", "enable", "truee"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "nats:\n  url: x\n  tls:\n    enabled: %s\n", bad[i]);
        expect_error(text, ":4: 'nats.tls.enabled' must be a boolean (true/false, yes/no, on/off)");
    }
}

static void test_list(void **state)
{
    (void)state;
    vs_config *c = load_ok("nats: {url: x}\npeers:\n  - alpha\n  - 'beta'\n  - \"\"\n");
    assert_int_equal(vs_config_list_len(c, "peers"), 3);
    assert_string_equal(vs_config_list_get(c, "peers", 0), "alpha");
    assert_string_equal(vs_config_list_get(c, "peers", 1), "beta");
    assert_string_equal(vs_config_list_get(c, "peers", 2), "");
    vs_config_free(c);

    c = load_ok("nats: {url: x}\npeers: []\n");
    assert_int_equal(vs_config_list_len(c, "peers"), 0);
    assert_null(vs_config_list_get(c, "peers", 0));
    vs_config_free(c);

    /* an empty value is an absent list */
    c = load_ok("nats: {url: x}\npeers:\n");
    assert_int_equal(vs_config_list_len(c, "peers"), 0);
    vs_config_free(c);

    expect_error("nats: {url: x}\npeers:\n  - [a]\n", ":3: 'peers' must be a list of strings");
}

static void test_map_subtree_unchecked(void **state)
{
    (void)state;
    vs_config *c = load_ok("nats: {url: x}\n"
                           "labels:\n"
                           "  team: core\n"
                           "  anything:\n"
                           "    goes: [1, {x: y}, [z]]\n"
                           "  host.example.com: 42\n"
                           "  '': empty key\n");
    assert_string_equal(vs_config_string(c, "labels.team", NULL), "core");
    assert_string_equal(vs_config_string(c, "labels.anything.goes", "def"), "def");
    vs_config_free(c);

    /* duplicates are refused below a map too */
    expect_error("nats: {url: x}\nlabels:\n  a:\n    b: 1\n    b: 2\n",
                 ":5: duplicate key 'labels.a.b'");
}

static void test_empty_file(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "# only a comment\n", "---\n", "--- ~\n", "\n\n"};
    char err[256];

    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        vs_config *c = NULL;
        assert_int_equal(load_with(texts[i], optional, 1, &c, err, sizeof err), 0);
        assert_non_null(c);
        assert_string_equal(vs_config_string(c, "nats.url", "dflt"), "dflt");
        vs_config_free(c);
    }
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_error("nats: {url: x}\npeers: [a, b\n",
                 ":3: YAML syntax error: did not find expected ',' or ']' "
                 "(while parsing a flow sequence at line 2)");
    expect_error("nats:\n  url: \"abc\n",
                 ":3: YAML syntax error: found unexpected end of stream "
                 "(while scanning a quoted scalar at line 2)");
    expect_error("nats:\n\turl: x\n",
                 ":2: YAML syntax error: found character that cannot start any token "
                 "(while scanning for the next token at line 2)");
    expect_error("nats:\n  url: x\n bad: 1\n",
                 ":3: YAML syntax error: did not find expected key "
                 "(while parsing a block mapping at line 1)");
    expect_error("name: \"tab\there\"\nnats: {url: \"\\q\"}\n",
                 ":2: YAML syntax error: found unknown escape character "
                 "(while parsing a quoted scalar at line 2)");
    /* invalid UTF-8 is caught by libyaml's reader, reported with its line */
    expect_error("nats:\n  url: \xff\n", ":2: invalid input: invalid leading UTF-8 octet (byte 13)");
}

static void test_alias_anchor_rejected(void **state)
{
    (void)state;
    expect_error("nats:\n  url: &u x\n", ":2: YAML anchors are not allowed");
    expect_error("nats: &n\n  url: x\n", ":1: YAML anchors are not allowed");
    expect_error("nats:\n  url: x\nname: *u\n", ":3: YAML aliases are not allowed");
    expect_error("nats: {url: x}\nlabels:\n  a: &a [1, 2]\n  b: [*a, *a]\n",
                 ":3: YAML anchors are not allowed");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_error("nats:\n  url: a\n  url: b\n", ":3: duplicate key 'nats.url'");
    expect_error("nats:\n  url: a\nnats:\n  port: 1\n", ":3: duplicate key 'nats'");
    /* an empty section still counts as present */
    expect_error("nats:\nnats:\n  url: x\n", ":2: duplicate key 'nats'");
}

static void test_multiple_documents(void **state)
{
    (void)state;
    expect_error("nats: {url: x}\n---\nname: y\n", ":2: only one YAML document is allowed");
    expect_error("nats: {url: x}\n...\n---\nname: y\n", ":3: only one YAML document is allowed");
}

/* "nats: {url: x}\nlabels: " then k flow mappings (or sequences) nested. */
static char *nested(int k, bool seq)
{
    size_t cap = 64 + (size_t)k * 6;
    char *s = malloc(cap);
    size_t n;

    assert_non_null(s);
    n = (size_t)snprintf(s, cap, "nats: {url: x}\nlabels: {x: ");
    for (int i = 0; i < k; i++)
        n += (size_t)snprintf(s + n, cap - n, seq ? "[" : "{a: ");
    n += (size_t)snprintf(s + n, cap - n, "v");
    for (int i = 0; i < k; i++)
        n += (size_t)snprintf(s + n, cap - n, seq ? "]" : "}");
    snprintf(s + n, cap - n, "}\n");
    return s;
}

static void test_nested_too_deep(void **state)
{
    (void)state;
    /* top level 1, labels 2, so k more levels reach 2 + k */
    for (int seq = 0; seq < 2; seq++) {
        char *ok = nested(14, seq), *bad = nested(15, seq);
        vs_config *c = load_ok(ok);
        vs_config_free(c);
        expect_error(bad, ":2: nesting deeper than 16 levels");
        free(ok);
        free(bad);
    }
    /* the checked part counts too: mappings implied by a path and lists */
    static const struct vs_cfg_key deep_keys[] = {
        {"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", VS_CFG_STRING, true, "16 levels deep"},
        {"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.list", VS_CFG_LIST, false, "list at level 16"},
        {NULL, VS_CFG_STRING, false, NULL},
    };
    static const struct vs_cfg_key *const deep[] = {deep_keys};
    char err[256];
    vs_config *c = NULL;
    const char *text = "a: {b: {c: {d: {e: {f: {g: {h: {i: {j: {k: {l: {m: {n: {o: "
                       "{p: leaf}}}}}}}}}}}}}}}\n";
    assert_int_equal(load_with(text, deep, 1, &c, err, sizeof err), 0);
    assert_string_equal(vs_config_string(c, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", NULL), "leaf");
    vs_config_free(c);
    expect_error_in(deep, 1,
                    "a: {b: {c: {d: {e: {f: {g: {h: {i: {j: {k: {l: {m: {n: {o: "
                    "{p: leaf, list: [x]}}}}}}}}}}}}}}}\n",
                    ":1: nesting deeper than 16 levels");
}

static void test_defaults_for_absent_keys(void **state)
{
    (void)state;
    vs_config *c = load_ok("nats:\n  url: x\n");
    vs_config *empty = NULL;

    assert_int_equal(vs_config_empty(&empty), 0);
    const vs_config *all[] = {c, empty, NULL};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(vs_config_string(all[i], "name", "anon"), "anon");
        assert_null(vs_config_string(all[i], "log.level", NULL));
        assert_int_equal(vs_config_int(all[i], "nats.port", 4222), 4222);
        assert_true(vs_config_bool(all[i], "nats.tls.enabled", true));
        assert_false(vs_config_bool(all[i], "nats.tls.enabled", false));
        assert_int_equal(vs_config_size(all[i], "limits.max_blob", 1234), 1234);
        assert_int_equal(vs_config_duration_ms(all[i], "limits.timeout", 99), 99);
        assert_int_equal(vs_config_list_len(all[i], "peers"), 0);
        assert_null(vs_config_list_get(all[i], "peers", 0));
        assert_string_equal(vs_config_string(all[i], "no.such.path", "d"), "d");
    }
    vs_config_free(c);
    vs_config_free(empty);
    vs_config_free(NULL);
}

static void test_open_failure(void **state)
{
    (void)state;
    char path[sizeof dir + 32], err[512], want[512];
    vs_config *c = (vs_config *)1;

    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    assert_int_equal(vs_config_load(path, schemas, 2, &c, err, sizeof err), -ENOENT);
    assert_null(c);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", path);
    assert_string_equal(err, want);

    /* a directory opens but cannot be read */
    assert_int_equal(vs_config_load(dir, schemas, 2, &c, err, sizeof err), -EISDIR);
    snprintf(want, sizeof want, "cannot read %s: Is a directory", dir);
    assert_string_equal(err, want);

    /* a small or absent error buffer is not overrun */
    assert_int_equal(vs_config_load(path, schemas, 2, &c, err, 8), -ENOENT);
    assert_string_equal(err, "cannot ");
    assert_int_equal(vs_config_load(path, schemas, 2, &c, NULL, 0), -ENOENT);
}

static void test_file_size_limit(void **state)
{
    (void)state;
    size_t max = 1024 * 1024;
    char *text = malloc(max + 1);
    char err[256];
    vs_config *c = NULL;

    assert_non_null(text);
    memset(text, '#', max + 1);
    for (size_t i = 63; i < max + 1; i += 64)
        text[i] = '\n';
    text[max - 1] = '\n';
    write_file(text, max);
    assert_int_equal(vs_config_load(file, optional, 1, &c, err, sizeof err), 0);
    vs_config_free(c);

    write_file(text, max + 1);
    assert_int_equal(vs_config_load(file, optional, 1, &c, err, sizeof err), -EINVAL);
    assert_null(c);
    char want[512];
    snprintf(want, sizeof want, "%s: larger than 1048576 bytes", file);
    assert_string_equal(err, want);
    free(text);
}

static void test_error_stays_one_line(void **state)
{
    (void)state;
    /* a key with a newline in it is shown with '?' */
    expect_error("nats: {url: x}\n\"a\\nb\": 1\n", ":2: key 'a?b' is not known");
    /* a NUL inside a value is refused rather than cut */
    expect_error("nats: {url: \"x\\0y\"}\n", ":1: 'nats.url' contains a NUL character");
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"1", 1},
        {"123B", 123},
        {"1K", 1024},
        {"1KiB", 1024},
        {"64KiB", 65536},
        {"16MiB", 16ULL << 20},
        {"16M", 16ULL << 20},
        {"2GiB", 2ULL << 30},
        {"3G", 3ULL << 30},
        {"1TiB", 1ULL << 40},
        {"007", 7},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ULL << 40},
    };
    static const char *const bad[] = {
        "", "-1", "+1", "1.5GiB", "1.0", " 1", "1 ", "1 KiB", "1kib", "1KB", "1k", "KiB",
        "1PiB", "0x10", "1KiBB", "18446744073709551616", "16777216TiB",
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        assert_int_equal(vs_parse_size(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        if (vs_parse_size(bad[i], &v) != -EINVAL)
            fail_msg("vs_parse_size accepted \"%s\"", bad[i]);
        assert_int_equal(v, 12345);
    }
    assert_int_equal(vs_parse_size(NULL, &v), -EINVAL);
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},       {"250", 250},         {"500ms", 500}, {"30s", 30000},
        {"5m", 300000}, {"2h", 7200000},      {"0s", 0},
        {"18446744073709551615", UINT64_MAX}, {"18446744073709551ms", 18446744073709551ULL},
        {"18446744073709551s", 18446744073709551000ULL}, {"5124095576030h", 5124095576030ULL * 3600000},
    };
    static const char *const bad[] = {
        "", "-1", "+5s", "1.5s", "5 s", "5S", "5min", "1d", "s", "ms", "5sec",
        "18446744073709551616", "18446744073709552s", "5124095576031h",
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        assert_int_equal(vs_parse_duration_ms(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        if (vs_parse_duration_ms(bad[i], &v) != -EINVAL)
            fail_msg("vs_parse_duration_ms accepted \"%s\"", bad[i]);
        assert_int_equal(v, 12345);
    }
    assert_int_equal(vs_parse_duration_ms(NULL, &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_all_types),
        cmocka_unit_test(test_int_limits),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_bad_size_duration_overflow),
        cmocka_unit_test(test_bool_forms),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_map_subtree_unchecked),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_alias_anchor_rejected),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_nested_too_deep),
        cmocka_unit_test(test_defaults_for_absent_keys),
        cmocka_unit_test(test_open_failure),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_error_stays_one_line),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
