/*
 * vs-scan.c - the scanners on the command line (DESIGN.md §10):
 *   vs-scan exfil|injection [--json|--sarif] [--rules FILE] [--block LEVEL]
 *           [--expected-bytes N] [FILE|-]
 * Exit status: 0 when nothing at or above the block level was found, 1
 * when something was, 2 on an error (unreadable input or rules, usage).
 *
 * The ruleset is workers/scan/rules/<name>.yaml (the directory is fixed at
 * build time; VS_SCAN_RULES_DIR or --rules overrides it). Output is one
 * line per finding (FILE:LINE:COL: severity rule (family): description,
 * redacted sample), or a JSON report, or a SARIF 2.1.0 log for code-
 * scanning tools. Findings never contain the secret itself. Injection
 * scans also look at the normalized text and inside encoded runs
 * (vs_scan_deep); a finding says which transformations revealed it.
 * The input is read and scanned as a stream (vs_scan_stream), so its size
 * is not bounded by memory.
 * Exfil scans given --expected-bytes also judge the input's size
 * (vs_scan_size_anomaly, the daemon's default factors): an input far
 * larger than expected is a finding like the rules' ones.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/normalize.h"
#include "vs/scan.h"

#define READ_CHUNK (1u << 20)

enum format { FORMAT_TEXT, FORMAT_JSON, FORMAT_SARIF };

struct report {
    const char *input;          /* "-" for stdin */
    enum format format;
    enum vs_severity block;
    bool size_checked;          /* --expected-bytes: the size anomaly is judged */
    uint64_t expected_bytes;
    struct vs_finding anomaly;  /* the size anomaly, when found (rule_id set) */
    bool blocked;
    size_t count;
    json_t *findings;           /* JSON and SARIF: collected, printed at the end */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vs-scan exfil|injection [--json|--sarif] [--rules FILE] [--block LEVEL]\n"
            "               [--expected-bytes N] [FILE|-]\n"
            "  exfil        secrets, PII and covert channels (output leaving a sandbox)\n"
            "  injection    prompt injection (text going to an agent)\n"
            "  --json       a JSON report\n"
            "  --sarif      a SARIF 2.1.0 log\n"
            "  --rules FILE the ruleset file (default: %s/<ruleset>.yaml;\n"
            "               VS_SCAN_RULES_DIR overrides the directory)\n"
            "  --block LEVEL  the lowest severity that fails the scan (exit 1): info, low,\n"
            "               medium, high (default) or critical\n"
            "  --expected-bytes N  exfil only: report an input above %gx N bytes (medium),\n"
            "               above %gx N high (size-anomaly)\n"
            "Reads FILE, or standard input when it is - or absent. Exit status: 0 clean,\n"
            "1 something at or above the block level, 2 error.\n",
            VS_SCAN_RULES_DIR, VS_SCAN_SIZE_FLAG_FACTOR, VS_SCAN_SIZE_BLOCK_FACTOR);
}

/* The names of VS_NORM_* bits, comma-separated ("" for none). */
static void transform_names(unsigned bits, char *out, size_t n)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{VS_NORM_INVISIBLE, "invisible"}, {VS_NORM_HOMOGLYPH, "homoglyph"},
                 {VS_NORM_LEET, "leetspeak"},     {VS_NORM_SPACED, "spaced"},
                 {VS_NORM_BASE64, "base64"},      {VS_NORM_HEX, "hex"},
                 {VS_NORM_PERCENT, "percent"},    {VS_NORM_HTML, "html-entities"},
                 {VS_NORM_UESCAPE, "escapes"},    {VS_NORM_DIACRITIC, "diacritics"}};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0] && used < n; i++)
        if (bits & names[i].bit)
            used += (size_t)snprintf(out + used, n - used, "%s%s", used ? "," : "", names[i].name);
}

static int on_finding(const struct vs_finding *f, void *arg)
{
    char how[128];
    transform_names(f->transforms, how, sizeof how);
    struct report *r = arg;
    r->count++;
    if (f->severity >= r->block)
        r->blocked = true;
    if (r->format == FORMAT_TEXT) {
        printf("%s:%zu:%zu: %s %s (%s): %s [%s]%s%s%s\n", r->input, f->line, f->column,
               vs_scan_severity_name(f->severity), f->rule_id, f->family, f->description, f->sample,
               how[0] ? " (found after: " : "", how, how[0] ? ")" : "");
        return 0;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "rule", f->rule_id,
                          "family", f->family, "description", f->description, "severity",
                          vs_scan_severity_name(f->severity), "offset", (json_int_t)f->offset, "length",
                          (json_int_t)f->length, "line", (json_int_t)f->line, "column",
                          (json_int_t)f->column, "sample", f->sample, "found_after", how);
    return o == NULL || json_array_append_new(r->findings, o) != 0 ? -ENOMEM : 0;
}

static const char *sarif_level(enum vs_severity s)
{
    return s >= VS_SEV_HIGH ? "error" : s >= VS_SEV_MEDIUM ? "warning" : "note";
}

static json_t *sarif_rule(const char *id, const char *family, const char *desc,
                          enum vs_severity sev)
{
    return json_pack("{s:s, s:{s:s}, s:{s:s}, s:{s:s, s:s}}", "id", id, "shortDescription", "text",
                     desc, "defaultConfiguration", "level", sarif_level(sev), "properties",
                     "family", family, "severity", vs_scan_severity_name(sev));
}

/* SARIF 2.1.0: one run, the ruleset's rules in the driver, one result per
 * finding with its region (line, column, byte offset and length). */
static json_t *sarif(const vs_ruleset *rs, const struct report *r)
{
    json_t *rules = json_array();
    for (size_t i = 0; i < vs_ruleset_size(rs); i++) {
        const char *id, *family, *desc;
        enum vs_severity sev;
        vs_ruleset_rule(rs, i, &id, &family, &desc, &sev);
        json_array_append_new(rules, sarif_rule(id, family, desc, sev));
    }
    const struct vs_finding *a = &r->anomaly;
    if (a->rule_id != NULL)
        json_array_append_new(rules, sarif_rule(a->rule_id, a->family, a->description, a->severity));
    json_t *results = json_array();
    size_t i;
    json_t *f;
    json_array_foreach(r->findings, i, f) {
        const char *sev = json_string_value(json_object_get(f, "severity"));
        enum vs_severity s = VS_SEV_MEDIUM;
        vs_scan_severity_parse(sev, &s);
        char msg[256];
        snprintf(msg, sizeof msg, "%s: %s", json_string_value(json_object_get(f, "description")),
                 json_string_value(json_object_get(f, "sample")));
        json_array_append_new(
            results,
            json_pack("{s:s, s:s, s:{s:s}, s:[{s:{s:{s:s}, s:{s:O, s:O, s:O, s:O}}}]}", "ruleId",
                      json_string_value(json_object_get(f, "rule")), "level", sarif_level(s),
                      "message", "text", msg, "locations", "physicalLocation", "artifactLocation",
                      "uri", strcmp(r->input, "-") == 0 ? "stdin" : r->input, "region", "startLine",
                      json_object_get(f, "line"), "startColumn", json_object_get(f, "column"),
                      "byteOffset", json_object_get(f, "offset"), "byteLength",
                      json_object_get(f, "length")));
    }
    return json_pack("{s:s, s:s, s:[{s:{s:{s:s, s:s, s:o}}, s:o}]}", "$schema",
                     "https://json.schemastore.org/sarif-2.1.0.json", "version", "2.1.0", "runs",
                     "tool", "driver", "name", "vs-scan", "informationUri",
                     "https://example.invalid/vibeshield", "rules", rules, "results", results);
}

/* The 1-based line and column of offset in data (offset <= len). */
/* Where the input passes a byte offset, counted as the input streams by:
 * its line and column once it has gone past. */
struct position {
    uint64_t at;            /* the offset looked for */
    uint64_t seen;          /* bytes counted so far */
    size_t line;            /* lines before the current one, +1 */
    uint64_t line_start;    /* offset of the current line */
    bool found;
    size_t found_line, found_column;
};

static void count_position(struct position *p, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!p->found && p->seen + i == p->at) {
            p->found = true;
            p->found_line = p->line;
            p->found_column = (size_t)(p->at - p->line_start + 1);
        }
        if (data[i] == '\n') {
            p->line++;
            p->line_start = p->seen + i + 1;
        }
    }
    p->seen += n;
}

/* --expected-bytes: the size anomaly as one more finding, placed where the
 * input passes the expected size. */
static int check_size(struct report *r, const struct position *p)
{
    if (!r->size_checked)
        return 0;
    int rc = vs_scan_size_anomaly(p->seen, r->expected_bytes, VS_SCAN_SIZE_FLAG_FACTOR,
                                  VS_SCAN_SIZE_BLOCK_FACTOR, &r->anomaly);
    if (rc <= 0)
        return rc;
    r->anomaly.line = p->found_line;
    r->anomaly.column = p->found_column;
    return on_finding(&r->anomaly, r);
}

/* Stream the input through the scan (in bounded memory, whatever its
 * size), counting where the expected size falls. 0 or -errno; *read_error
 * tells an input error from a scan's. */
static int scan_input(const vs_ruleset *rs, vs_scan_scratch *s, bool deep, struct report *r,
                      struct position *p, bool *read_error)
{
    FILE *f = strcmp(r->input, "-") == 0 ? stdin : fopen(r->input, "rb");
    if (f == NULL) {
        *read_error = true;
        return -errno;
    }
    uint8_t *chunk = malloc(READ_CHUNK);
    vs_scan_stream *st = NULL;
    int rc = chunk == NULL ? -ENOMEM : vs_scan_stream_new(rs, s, deep, on_finding, r, &st);
    while (rc == 0) {
        size_t got = fread(chunk, 1, READ_CHUNK, f);
        if (got == 0) {
            if (ferror(f)) {
                *read_error = true;
                rc = -EIO;
            }
            break;
        }
        if (r->size_checked)
            count_position(p, chunk, got);
        else
            p->seen += got;
        rc = vs_scan_stream_write(st, chunk, got);
    }
    if (rc == 0)
        rc = vs_scan_stream_finish(st);
    vs_scan_stream_free(st);
    free(chunk);
    if (f != stdin)
        fclose(f);
    return rc;
}

/* A byte count: decimal digits only. */
static int parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0)
        return -EINVAL;
    *out = v;
    return 0;
}

static int print_report(const vs_ruleset *rs, struct report *r)
{
    if (r->format == FORMAT_TEXT)
        return 0;
    json_t *doc = r->format == FORMAT_SARIF
                      ? sarif(rs, r)
                      : json_pack("{s:s, s:s, s:b, s:O}", "ruleset", vs_ruleset_name(rs), "input",
                                  r->input, "blocked", r->blocked, "findings", r->findings);
    if (doc == NULL)
        return -ENOMEM;
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2)) == 0 && fputc('\n', stdout) != EOF ? 0 : -EIO;
    json_decref(doc);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},         {"sarif", no_argument, NULL, 's'},
        {"rules", required_argument, NULL, 'r'},  {"block", required_argument, NULL, 'b'},
        {"expected-bytes", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct report r = {.format = FORMAT_TEXT, .block = VS_SEV_HIGH};
    const char *rules = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': r.format = FORMAT_JSON; break;
        case 's': r.format = FORMAT_SARIF; break;
        case 'r': rules = optarg; break;
        case 'b':
            if (vs_scan_severity_parse(optarg, &r.block) != 0) {
                fprintf(stderr, "vs-scan: --block: unknown level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'e':
            if (parse_bytes(optarg, &r.expected_bytes) != 0) {
                fprintf(stderr, "vs-scan: --expected-bytes: not a byte count '%s'\n", optarg);
                return 2;
            }
            r.size_checked = true;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || (strcmp(argv[optind], "exfil") != 0 && strcmp(argv[optind], "injection") != 0) ||
        argc - optind > 2) {
        usage(stderr);
        return 2;
    }
    const char *ruleset = argv[optind];
    bool injection = strcmp(ruleset, "injection") == 0; /* text for an agent: normalized, decoded */
    if (injection && r.size_checked) {
        fprintf(stderr, "vs-scan: --expected-bytes judges outputs: exfil only\n");
        return 2;
    }
    r.input = optind + 1 < argc ? argv[optind + 1] : "-";
    char path[4096];
    if (rules == NULL) {
        const char *dir = getenv("VS_SCAN_RULES_DIR");
        snprintf(path, sizeof path, "%s/%s.yaml", dir != NULL && dir[0] ? dir : VS_SCAN_RULES_DIR,
                 ruleset);
        rules = path;
    }
    char err[600];
    vs_ruleset *rs = NULL;
    vs_scan_scratch *s = NULL;
    int rc = vs_ruleset_load(rules, &rs, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "vs-scan: %s\n", err);
        return 2;
    }
    struct position pos = {.at = r.expected_bytes, .line = 1};
    bool read_error = false;
    r.findings = json_array();
    if (r.findings == NULL || (rc = vs_scan_scratch_new(rs, &s)) < 0 ||
        (rc = scan_input(rs, s, injection, &r, &pos, &read_error)) < 0 ||
        (rc = check_size(&r, &pos)) < 0 || (rc = print_report(rs, &r)) < 0) {
        if (read_error)
            fprintf(stderr, "vs-scan: %s: %s\n", r.input, strerror(-rc));
        else
            fprintf(stderr, "vs-scan: %s\n", strerror(rc < 0 ? -rc : ENOMEM));
    }
    json_decref(r.findings);
    vs_scan_scratch_free(s);
    vs_ruleset_free(rs);
    return rc < 0 ? 2 : r.blocked ? 1 : 0;
}
