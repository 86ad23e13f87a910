/*
 * test_scan.c - unit tests of the scanner library (workers/scan,
 * vs/scan.h) with small rulesets written here: what a finding says (rule,
 * family, offset and length of the secret, line and column, a redacted
 * sample that never holds the secret), the validators (Luhn, SSN rules,
 * IBAN mod-97, JWT structure, entropy), the allowlists (global and per
 * rule: literals, regexes, stopwords) and the `vs:allow` marker, one
 * finding per secret for open-ended patterns, overlapping rules settled
 * in favour of the more severe one, stopping from the callback, rule
 * files refused with the line and the reason, and the size anomaly.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vs/scan.h"

#define MAX_FOUND 32

struct found {
    struct vs_finding f[MAX_FOUND];
    size_t n;
    int stop_after; /* 0: never */
};

static int collect(const struct vs_finding *f, void *arg)
{
    struct found *r = arg;
    assert_true(r->n < MAX_FOUND);
    r->f[r->n++] = *f;
    return r->stop_after > 0 && r->n == (size_t)r->stop_after ? 7 : 0;
}

static const char RULES[] =
    "ruleset: test\n"
    "allow:\n"
    "  literals: ['ghp_000000000000000000000000000000000000']\n"
    "  stopwords: ['example']\n"
    "rules:\n"
    "  - id: github-pat\n"
    "    family: vcs\n"
    "    description: GitHub token\n"
    "    pattern: '\\b(ghp_[A-Za-z0-9]{36})\\b'\n"
    "    severity: high\n"
    "    confidence: high\n"
    "    secret_group: 1\n"
    "  - id: card\n"
    "    family: pii\n"
    "    pattern: '\\b([0-9]{4}(?:[ -]?[0-9]{4}){3})\\b'\n"
    "    validator: luhn\n"
    "    secret_group: 1\n"
    "  - id: ssn\n"
    "    family: pii\n"
    "    pattern: '\\b([0-9]{3}-[0-9]{2}-[0-9]{4})\\b'\n"
    "    validator: ssn\n"
    "    secret_group: 1\n"
    "  - id: iban\n"
    "    family: pii\n"
    "    pattern: '\\b([A-Z]{2}[0-9]{2}[A-Z0-9]{11,30})\\b'\n"
    "    validator: iban\n"
    "    secret_group: 1\n"
    "  - id: jwt\n"
    "    family: jwt\n"
    "    pattern: '\\b(eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,})'\n"
    "    validator: jwt\n"
    "    secret_group: 1\n"
    "  - id: generic\n"
    "    family: generic\n"
    "    pattern: '(?:token|password)\\s*[:=]\\s*([^\\s]{12,})'\n"
    "    flags: [caseless]\n"
    "    confidence: low\n"
    "    validator: entropy\n"
    "    min_entropy: 3.5\n"
    "    secret_group: 1\n"
    "    allow:\n"
    "      regexes: ['^[a-z]+$']\n"
    "      stopwords: ['changeme']\n";

static vs_ruleset *load(const char *yaml)
{
    vs_ruleset *rs = NULL;
    char err[600] = "";
    int rc = vs_ruleset_parse(yaml, strlen(yaml), "test.yaml", &rs, err, sizeof err);
    if (rc != 0)
        fail_msg("rules refused: %s", err);
    return rs;
}

static void scan(const vs_ruleset *rs, const char *text, struct found *out)
{
    vs_scan_scratch *s = NULL;
    assert_int_equal(vs_scan_scratch_new(rs, &s), 0);
    int rc = vs_scan(rs, s, (const uint8_t *)text, strlen(text), 0, collect, out);
    assert_int_equal(rc, out->stop_after > 0 && out->n == (size_t)out->stop_after ? 7 : 0);
    vs_scan_scratch_free(s);
}

static void assert_no_secret(const struct vs_finding *f, const char *text)
{
    char secret[256];
    assert_true(f->length < sizeof secret);
    memcpy(secret, text + f->offset, f->length);
    secret[f->length] = '\0';
    assert_null(strstr(f->sample, secret));
    assert_true(strlen(f->sample) < f->length + 16);
}

static void test_finding_fields(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    const char *text = "first line\nexport GH=ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 # ci\n";
    struct found r = {0};
    scan(rs, text, &r);
    assert_int_equal(r.n, 1);
    const struct vs_finding *f = &r.f[0];
    assert_string_equal(f->rule_id, "github-pat");
    assert_string_equal(f->family, "vcs");
    assert_string_equal(f->description, "GitHub token");
    assert_int_equal(f->offset, strstr(text, "ghp_") - text);
    assert_int_equal(f->length, 40);
    assert_int_equal(f->line, 2);
    assert_int_equal(f->column, 11);
    assert_int_equal(f->severity, VS_SEV_HIGH);
    assert_int_equal(f->confidence, VS_CONF_HIGH);
    assert_string_equal(f->sample, "ghp_... (40 chars)");
    assert_no_secret(f, text);
    vs_ruleset_free(rs);
}

static void test_validators(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    static const struct {
        const char *text;
        const char *rule; /* NULL: nothing found */
    } cases[] = {
        {"card 4111 1111 1111 1111 ok", "card"},
        {"card 4111 1111 1111 1112 ok", NULL},          /* Luhn fails */
        {"ssn 219-09-9999 on file", "ssn"},
        {"ssn 000-12-3456 on file", NULL},              /* area 000 */
        {"ssn 666-12-3456 on file", NULL},              /* area 666 */
        {"ssn 912-12-3456 on file", NULL},              /* area 9xx */
        {"ssn 219-00-3456 on file", NULL},              /* group 00 */
        {"ssn 219-09-0000 on file", NULL},              /* serial 0000 */
        {"iban GB82WEST12345698765432 pay", "iban"},
        {"iban GB82WEST12345698765433 pay", NULL},      /* mod 97 fails */
        {"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX3ZhbHVl end", "jwt"},
        {"jwt eyJub3Rqc29uLWF0LWFsbA.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX3ZhbHVl end", NULL},
        {"password = Zx9qLm2vR8tK4wP7", "generic"},
        {"password = aaaaaaaaaaaaaaaa", NULL},          /* entropy too low */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct found r = {0};
        scan(rs, cases[i].text, &r);
        if (cases[i].rule == NULL) {
            if (r.n != 0)
                fail_msg("case %zu '%s': unexpected %s", i, cases[i].text, r.f[0].rule_id);
            continue;
        }
        if (r.n != 1 || strcmp(r.f[0].rule_id, cases[i].rule) != 0)
            fail_msg("case %zu '%s': expected %s, got %zu findings", i, cases[i].text, cases[i].rule,
                     r.n);
        assert_no_secret(&r.f[0], cases[i].text);
    }
    vs_ruleset_free(rs);
}

static void test_allowlists_and_marker(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    static const char *const quiet[] = {
        "ghp_000000000000000000000000000000000000",           /* global literal */
        "ghp_EXAMPLEaB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1",          /* global stopword, any case */
        "token: abcdefghijklmnopqrstuvwxyz",                  /* rule regex */
        "token: Zx9qLm2vR8tChangeMe7",                        /* rule stopword */
        "key ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 # vs:allow test fixture",
    };
    for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++) {
        struct found r = {0};
        scan(rs, quiet[i], &r);
        if (r.n != 0)
            fail_msg("'%s' was reported as %s", quiet[i], r.f[0].rule_id);
    }
    /* The marker covers its own line only. */
    struct found r = {0};
    scan(rs, "a ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5 # vs:allow\n"
             "b ghp_bB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5\n",
         &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.f[0].line, 2);
    vs_ruleset_free(rs);
}

static void test_one_finding_per_secret(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    /* An open repeat ends after every character Hyperscan passes; the
     * token on a "token:" line is the GitHub rule's (more confident). */
    const char *text = "password = Zx9qLm2vR8tK4wP7Yb6Nc5Md3\n"
                       "token: ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5\n"
                       "two: 4111111111111111 and 5500005555555559\n";
    struct found r = {0};
    scan(rs, text, &r);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.f[0].rule_id, "generic");
    assert_int_equal(r.f[0].length, strlen("Zx9qLm2vR8tK4wP7Yb6Nc5Md3"));
    assert_string_equal(r.f[1].rule_id, "github-pat");
    assert_string_equal(r.f[2].rule_id, "card");
    assert_string_equal(r.f[3].rule_id, "card");
    assert_true(r.f[2].offset < r.f[3].offset);
    assert_int_equal(r.f[3].line, 3);
    vs_ruleset_free(rs);
}

/* Lines and columns far into a text: thousands of lines (more than the
 * line counter sums at once) before the first finding, more between it
 * and the next, a line without a break at the end. */
static void test_positions_far_in(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    static const char filler[] = "an ordinary line of text, nothing to see\n";
    static const char token[] = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
    size_t cap = 8000 * sizeof filler + 256, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s", filler);
    len += (size_t)snprintf(text + len, cap - len, "\n\tkey %s\n", token);
    for (int i = 0; i < 2999; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s", filler);
    len += (size_t)snprintf(text + len, cap - len, "%s", token); /* no break after it */
    struct found r = {0};
    scan(rs, text, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.f[0].line, 5002);
    assert_int_equal(r.f[0].column, 6);
    assert_int_equal(r.f[1].line, 8002);
    assert_int_equal(r.f[1].column, 1);
    free(text);
    vs_ruleset_free(rs);
}

static void test_stop_and_empty(void **state)
{
    (void)state;
    vs_ruleset *rs = load(RULES);
    struct found r = {.stop_after = 1};
    scan(rs, "4111111111111111 5500005555555559", &r);
    assert_int_equal(r.n, 1);
    struct found none = {0};
    scan(rs, "", &none);
    assert_int_equal(none.n, 0);
    vs_scan_scratch *s = NULL;
    assert_int_equal(vs_scan_scratch_new(rs, &s), 0);
    assert_int_equal(vs_scan(rs, s, NULL, 1, 0, collect, &none), -EINVAL);
    vs_scan_scratch_free(s);
    vs_ruleset_free(rs);
}

/* Detector rules: random-looking runs of the base64 or hex alphabet, long
 * enough, are reported; regular ones, short ones and digests are not. */
static void test_detectors(void **state)
{
    (void)state;
    vs_ruleset *rs = load("ruleset: t\nrules:\n"
                          "  - id: hex-run\n    family: covert\n    detector: hex-run\n"
                          "    min_len: 129\n    window: 64\n    min_entropy: 3.0\n"
                          "  - id: b64-run\n    family: covert\n    detector: base64-run\n"
                          "    min_len: 120\n    window: 64\n    min_entropy: 4.5\n");
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char hex[] = "0123456789abcdef";
    char text[1024];
    uint32_t x = 12345;
    size_t k = (size_t)snprintf(text, sizeof text, "blob: ");
    for (int i = 0; i < 200; i++, x = x * 1103515245u + 12345u)
        text[k++] = b64[(x >> 16) % 64];
    text[k++] = '=';
    k += (size_t)snprintf(text + k, sizeof text - k, "\nhex ");
    size_t hex_at = k;
    for (int i = 0; i < 256; i++, x = x * 1103515245u + 12345u)
        text[k++] = hex[(x >> 16) % 16];
    snprintf(text + k, sizeof text - k, "\n");
    struct found r = {0};
    scan(rs, text, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.f[0].rule_id, "b64-run");
    assert_int_equal(r.f[0].offset, 6);
    assert_int_equal(r.f[0].length, 201); /* with its padding */
    assert_string_equal(r.f[1].rule_id, "hex-run");
    assert_int_equal(r.f[1].offset, hex_at);
    assert_int_equal(r.f[1].length, 256);
    /* Regular, short, or a digest: nothing. */
    memset(text, 'A', 300);
    text[300] = '\0';
    struct found none = {0};
    scan(rs, text, &none);
    scan(rs, "sha512-Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmF"
             "yYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6 "
             "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2"
             "877eec2f63b931bd47417a81a538327af927da3e",
         &none);
    assert_int_equal(none.n, 0);
    vs_ruleset_free(rs);
}

/* A prefilter stands in for the pattern in Hyperscan and the pattern is
 * searched around its hits; a dotted-run detector hands long labels to
 * the pattern. Both find exactly what the pattern alone would. */
static void test_prefilter_and_labels(void **state)
{
    (void)state;
    vs_ruleset *rs = load("ruleset: t\nrules:\n"
                          "  - id: mail\n    family: pii\n"
                          "    pattern: '(?:^|[^A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64}@[a-z]+\\.[a-z]{2,8})\\b'\n"
                          "    prefilter: '@[a-z]+\\.[a-z]{2,8}\\b'\n    secret_group: 1\n"
                          "  - id: tunnel\n    family: covert\n"
                          "    pattern: '\\b((?:[a-z0-9]{20,63}\\.){3,}[a-z]{2,24})\\b'\n"
                          "    detector: dotted-run\n    min_len: 20\n    secret_group: 1\n");
    static const char text[] = "write to first.last+tag@example.org now\n"
                               "two long labels: aaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbb.com\n"
                               "three: x.0123456789abcdefghij.0123456789abcdefghijk.0123456789abcdefghijkl.io!\n";
    struct found r = {0};
    scan(rs, text, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.f[0].rule_id, "mail");
    assert_int_equal(r.f[0].offset, strstr(text, "first") - text);
    assert_int_equal(r.f[0].length, strlen("first.last+tag@example.org"));
    assert_string_equal(r.f[1].rule_id, "tunnel");
    assert_int_equal(r.f[1].offset, strstr(text, "0123456789abcdefghij.") - text);
    assert_int_equal(r.f[1].length, 3 * 21 + 3 + 2);
    vs_ruleset_free(rs);
}

/* A lattice is a prefilter of every phrase of its word lists: the rule
 * finds a match holding any of them (spacing is one whitespace, an empty
 * word leaves its list out) and nothing that holds none. */
static void test_lattice(void **state)
{
    (void)state;
    vs_ruleset *rs = load("ruleset: t\nrules:\n"
                          "  - id: send\n    family: exfiltration\n    flags: [caseless]\n"
                          "    pattern: '\\b(?:send|post)\\s+(?:(?:the|all)\\s+){0,2}(?:chat log|secrets?)\\b'\n"
                          "    lattice:\n      - [send, post, the, all]\n      - [chat log, secret, secrets]\n");
    static const char *const hits[] = {"please send secrets now", "POST\tthe chat log",
                                       "send all the secret!"};
    for (size_t i = 0; i < 3; i++) {
        struct found r = {0};
        scan(rs, hits[i], &r);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.f[0].rule_id, "send");
    }
    struct found none = {0};
    scan(rs, "send the report; the chat is logged; resend secretly", &none);
    assert_int_equal(none.n, 0);
    vs_ruleset_free(rs);
}

/* lead bounds how far before a lattice hit's end the match is looked for:
 * "send all the secret" starts 19 bytes before the end of "the secret". */
static void test_lead(void **state)
{
    (void)state;
    static const char rule[] =
        "ruleset: t\nrules:\n"
        "  - id: send\n    family: exfiltration\n    lead: %d\n"
        "    pattern: '\\b(?:send|post)\\s+(?:(?:the|all)\\s+){0,2}(?:chat log|secrets?)\\b'\n"
        "    lattice:\n      - [send, post, the, all]\n      - [chat log, secret, secrets]\n";
    char yaml[sizeof rule + 16];
    for (int lead = 18; lead <= 19; lead++) {
        snprintf(yaml, sizeof yaml, rule, lead);
        vs_ruleset *rs = load(yaml);
        struct found r = {0};
        scan(rs, "so: send all the secret!", &r);
        assert_int_equal(r.n, lead == 19 ? 1 : 0);
        vs_ruleset_free(rs);
    }
}

static void test_rule_files_refused(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *says; /* in the message */
    } bad[] = {
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    colour: red\n",
         "test.yaml:6: unknown rule key 'colour'"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: '(unclosed'\n",
         "rule a: pattern at offset"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: '(a)\\1'\n", "rule a (line 3): hyperscan"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n  - id: a\n    family: f\n"
         "    pattern: 'y'\n",
         "rule id a is used twice"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    validator: entropy\n",
         "needs min_entropy"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: '(x)'\n    secret_group: 2\n",
         "secret_group 2 but the pattern has 1 groups"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    severity: dire\n",
         "severity: unknown value 'dire'"},
        {"rules: [\n", "YAML"},
        {"ruleset: t\n", "ruleset and rules are required"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    detector: hex-run\n",
         "a detector needs min_len, window and min_entropy"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    detector: hex-run\n",
         "detectors hex-run and base64-run take none"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    detector: dotted-run\n",
         "detectors hex-run and base64-run take none"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    detector: dotted-run\n",
         "dotted-run needs min_len"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    lattice: [[x], []]\n",
         "every list needs a word"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    lattice: []\n",
         "lattice: expected 1 to 8 word lists"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    prefilter: 'x'\n"
         "    lattice: [[x]]\n",
         "a prefilter or a lattice, not both"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x+'\n    detector: dotted-run\n"
         "    min_len: 20\n    prefilter: 'x'\n",
         "a detector rule takes no prefilter"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    prefilter: 'x'\n"
         "    lead: 600\n",
         "lead 600 is longer than max_len 512"},
        {"ruleset: t\nrules:\n  - id: a\n    family: f\n    pattern: 'x'\n    lead: 6\n",
         "lead needs a prefilter, a lattice or a detector"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vs_ruleset *rs = NULL;
        char err[600] = "";
        int rc = vs_ruleset_parse(bad[i].yaml, strlen(bad[i].yaml), "test.yaml", &rs, err, sizeof err);
        assert_int_equal(rc, -EINVAL);
        assert_null(rs);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].says);
    }
    vs_ruleset *rs = NULL;
    char err[600];
    assert_int_equal(vs_ruleset_load("/nonexistent/rules.yaml", &rs, err, sizeof err), -ENOENT);
}

/* The size anomaly: nothing within flag x expected or when the expected
 * size is unknown, medium above it, high above block x expected; the
 * finding places the excess after the expected bytes; bad factors are
 * refused. */
static void test_size_anomaly(void **state)
{
    (void)state;
    struct vs_finding f;
    const double flag = VS_SCAN_SIZE_FLAG_FACTOR, block = VS_SCAN_SIZE_BLOCK_FACTOR;
    assert_int_equal(vs_scan_size_anomaly(4096, 1024, flag, block, &f), 0); /* exactly 4x */
    assert_int_equal(vs_scan_size_anomaly(1u << 30, 0, flag, block, &f), 0);
    assert_int_equal(vs_scan_size_anomaly(4097, 1024, flag, block, &f), 1);
    assert_int_equal(f.severity, VS_SEV_MEDIUM);
    assert_int_equal(vs_scan_size_anomaly(16384, 1024, flag, block, &f), 1); /* exactly 16x */
    assert_int_equal(f.severity, VS_SEV_MEDIUM);
    assert_int_equal(vs_scan_size_anomaly(12582912, 1048576, flag, 8.0, &f), 1);
    assert_int_equal(f.severity, VS_SEV_HIGH);
    assert_string_equal(f.rule_id, VS_SCAN_SIZE_ANOMALY_RULE);
    assert_string_equal(f.rule_id, "size-anomaly");
    assert_string_equal(f.family, "covert");
    assert_non_null(f.description);
    assert_int_equal(f.offset, 1048576);
    assert_int_equal(f.length, 12582912 - 1048576);
    assert_int_equal(f.confidence, VS_CONF_HIGH);
    assert_int_equal(f.transforms, 0);
    assert_string_equal(f.sample, "12582912 bytes, expected 1048576");
    assert_int_equal(vs_scan_size_anomaly(10, 1, flag, block, NULL), -EINVAL);
    assert_int_equal(vs_scan_size_anomaly(10, 1, 0.5, block, &f), -EINVAL);
    assert_int_equal(vs_scan_size_anomaly(10, 1, flag, 2.0, &f), -EINVAL);
    assert_int_equal(vs_scan_size_anomaly(10, 1, flag, NAN, &f), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finding_fields),
        cmocka_unit_test(test_validators),
        cmocka_unit_test(test_allowlists_and_marker),
        cmocka_unit_test(test_one_finding_per_secret),
        cmocka_unit_test(test_positions_far_in),
        cmocka_unit_test(test_stop_and_empty),
        cmocka_unit_test(test_detectors),
        cmocka_unit_test(test_prefilter_and_labels),
        cmocka_unit_test(test_lattice),
        cmocka_unit_test(test_lead),
        cmocka_unit_test(test_rule_files_refused),
        cmocka_unit_test(test_size_anomaly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
