/*
 * cmd_audit.c - `vsctl audit tail` (follow the AUDIT stream), `vsctl audit
 * emit` (send one event and confirm it is stored), the safe printing of an
 * event, and the dispatch of the audit log's commands (query, verify,
 * export, import-check, prove, backup: cmd_auditlog.c).
 *
 * tail reads with vs_js_read: an ordered, ephemeral, ack-less consumer, so
 * watching the stream never takes work from auditd's durable consumer.
 * Events are hostile input: every string printed in the human form is
 * escaped (control characters, invalid UTF-8, C1 and bidi controls), so an
 * agent cannot rewrite the operator's terminal through an audit detail.
 *
 * emit goes through vs_audit_emitv like every component, with a completion
 * callback: the server's ack of the event means it is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vs/audit.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/pbjson.h"
#include "vs/subjects.h"
#include "vsctl.h"

#define AUDIT_STREAM "AUDIT"
#define MAX_DETAILS 32          /* vs_audit_emit's limit */
#define MAX_VALUE 1024          /* values are truncated beyond this by the library */
#define EMIT_TIMEOUT_MS 5000

/* ---- printing ------------------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at p and its code point; 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, uint32_t *cp)
{
    size_t n;
    uint32_t c;
    if (p[0] < 0x80)
        return *cp = p[0], 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, c = p[0] & 0x1f;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, c = p[0] & 0x0f;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, c = p[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (n == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    *cp = c;
    return n;
}

static bool invisible_control(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

/* Print s escaped; quoted (with \" inside) when quote is set. */
static void put_escaped(FILE *out, const char *s, bool quote)
{
    const unsigned char *p = (const unsigned char *)s;
    if (quote)
        fputc('"', out);
    while (*p != '\0') {
        uint32_t cp;
        size_t n = utf8_seq(p, &cp);
        if (n == 0) {
            fprintf(out, "\\x%02x", *p);
            p++;
            continue;
        }
        if (n == 1) {
            switch (cp) {
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            case '\\': fputs("\\\\", out); break;
            case '"':
                fputs(quote ? "\\\"" : "\"", out);
                break;
            default:
                if (cp < 0x20 || cp == 0x7f)
                    fprintf(out, "\\x%02x", (unsigned)cp);
                else
                    fputc((int)cp, out);
            }
        } else if (invisible_control(cp)) {
            fprintf(out, "\\u%04x", (unsigned)cp);
        } else {
            fwrite(p, 1, n, out);
        }
        p += n;
    }
    if (quote)
        fputc('"', out);
}

/* A value is quoted when it is empty or would not read back as one word. */
static void put_value(FILE *out, const char *s)
{
    bool quote = s[0] == '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && !quote; p++)
        quote = *p <= ' ' || *p == '"' || *p == '=' || *p == 0x7f || *p >= 0x80;
    put_escaped(out, s, quote);
}

static void format_time(uint64_t ns, char *out, size_t size)
{
    time_t secs = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03uZ", base, (unsigned)(ns / 1000000ull % 1000));
}

bool vsctl_audit_print_event(FILE *out, const Vs__V1__AuditEvent *ev, bool json)
{
    if (json) {
        json_t *j = vs_pb_to_json(&ev->base);
        bool ok = j != NULL && vsctl_print_json(out, j);
        json_decref(j);
        return ok;
    }
    char when[48];
    format_time(ev->time_ns, when, sizeof(when));
    fprintf(out, "%s %-8s ", when, vs_severity_name(ev->severity));
    put_escaped(out, ev->category, false);
    fputc('/', out);
    put_escaped(out, ev->event, false);
    fputs(" comp=", out);
    put_value(out, ev->component);
    if (ev->agent != NULL && ev->agent[0] != '\0') {
        fputs(" agent=", out);
        put_value(out, ev->agent);
    }
    if (ev->task_id.len > 0 && ev->task_id.len <= 64) {
        char hex[129];
        vs_hex(ev->task_id.data, ev->task_id.len, hex);
        fprintf(out, " task=%s", hex);
    }
    for (size_t i = 0; i < ev->n_details; i++) {
        fputc(' ', out);
        put_value(out, ev->details[i]->key);
        fputc('=', out);
        put_value(out, ev->details[i]->value);
    }
    fputc('\n', out);
    return fflush(out) == 0 && !ferror(out);
}

/* ---- tail ----------------------------------------------------------------------- */

static void tail_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit tail [--category C] [--min-severity S] [--agent A]\n"
            "                        [--last N] [--count N] [--timeout S] [--json]\n"
            "Follow the AUDIT stream (read-only: auditd's consumer is not touched). One line\n"
            "per event:\n"
            "  TIME SEVERITY CATEGORY/EVENT comp=C [agent=A] [task=HEX] [KEY=VALUE]...\n"
            "values are quoted when they contain spaces, control characters are escaped.\n\n"
            "  --category C       only events of category C (subject vs.audit.C.*)\n"
            "  --min-severity S   debug, info, notice, warning, error, critical, alert\n"
            "  --agent A          only events about agent A\n"
            "  --last N           start with the last N events of the stream (before the\n"
            "                     filters), then follow; default: only new events\n"
            "  --count N          stop after N events (exit 1 if the timeout comes first)\n"
            "  --timeout S        stop after S seconds (default: run until SIGINT)\n"
            "  --json             one AuditEvent per line as JSON\n\n" VSCTL_COMMON_HELP);
}

struct tail {
    Vs__V1__Severity min_severity;
    const char *agent;
    bool json;
    uint64_t count, seen;
    bool done, broken;
};

static int on_event(vs_msg *m, void *arg)
{
    struct tail *t = arg;
    const Vs__V1__AuditEvent *ev = (const Vs__V1__AuditEvent *)vs_msg_body(m);
    if (t->done || ev == NULL)
        return 0;
    if (ev->severity < t->min_severity)
        return 0;
    if (t->agent != NULL && (ev->agent == NULL || strcmp(ev->agent, t->agent) != 0))
        return 0;
    if (!vsctl_audit_print_event(stdout, ev, t->json)) {
        t->broken = true;
        t->done = true;
    }
    if (t->count > 0 && ++t->seen >= t->count)
        t->done = true;
    return 0;
}

/* vs_js_read reports a failed consumer creation only in the log, so check
 * first that the stream exists, to say so in one clear line. */
static int check_stream(vs_bus *bus)
{
    uint64_t last;
    int rc = vs_js_stream_last_seq_sync(bus, AUDIT_STREAM, &last);
    if (rc == -ENOENT)
        vsctl_err("the %s stream does not exist on this server (streams are declared by "
                  "`vsctl up` and by the daemons)",
                  AUDIT_STREAM);
    else if (rc == -EHOSTUNREACH)
        vsctl_err("JetStream is not enabled on this server");
    else if (rc < 0)
        vsctl_err("cannot look up the %s stream: %s", AUDIT_STREAM, strerror(-rc));
    return rc;
}

static int cmd_tail(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"category", required_argument, NULL, 'c'},
        {"min-severity", required_argument, NULL, 's'},
        {"agent", required_argument, NULL, 'a'},
        {"last", required_argument, NULL, 'l'},
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct tail t = {.min_severity = VS__V1__SEVERITY__SEVERITY_UNSPECIFIED};
    const char *category = NULL;
    uint64_t last = 0, timeout_ms = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'c': category = optarg; break;
        case 's':
            if (vs_severity_parse(optarg, &t.min_severity) < 0) {
                vsctl_err("--min-severity: one of debug, info, notice, warning, error, "
                          "critical, alert");
                return VSCTL_USAGE;
            }
            break;
        case 'a': t.agent = optarg; break;
        case 'l':
            if (!vsctl_opt_uint("last", optarg, 1, 1000000, &last))
                return VSCTL_USAGE;
            break;
        case 'n':
            if (!vsctl_opt_uint("count", optarg, 1, UINT32_MAX, &t.count))
                return VSCTL_USAGE;
            break;
        case 't':
            if (!vsctl_opt_duration("timeout", optarg, &timeout_ms))
                return VSCTL_USAGE;
            break;
        case 'j': t.json = true; break;
        case 'h': tail_usage(stdout); return VSCTL_OK;
        default: tail_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("audit tail takes no arguments (see --help)");
        return VSCTL_USAGE;
    }
    char filter[VS_SUBJECT_MAX];
    if (category != NULL) {
        if (!vs_audit_category_valid(category)) {
            vsctl_err("--category: a lower-case token [a-z0-9_-], not '%s'", category);
            return VSCTL_USAGE;
        }
        snprintf(filter, sizeof(filter), "vs.audit.%s.*", category);
    } else {
        snprintf(filter, sizeof(filter), "vs.audit.>");
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    vs_consumer *reader = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) < 0 || check_stream(bus) < 0)
        goto out;
    int rc = vs_js_read(bus, AUDIT_STREAM, filter, last > 0 ? 0 : UINT64_MAX, last,
                        &vs__v1__audit_event__descriptor, on_event, &t, &reader);
    if (rc < 0) {
        vsctl_err("cannot read the %s stream: %s", AUDIT_STREAM, strerror(-rc));
        goto out;
    }
    bool interrupted = vsctl_run_until_signal(bus, &t.done, timeout_ms);
    if (!t.broken && t.count > 0 && t.seen < t.count && !interrupted) {
        vsctl_err("timed out after %llu of %llu events", (unsigned long long)t.seen,
                  (unsigned long long)t.count);
        result = VSCTL_FAIL;
    } else {
        result = VSCTL_OK;
    }
out:
    vs_consumer_free(reader);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

/* ---- emit ----------------------------------------------------------------------- */

static void emit_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit emit --category C --severity S --event E [--agent A]\n"
            "                        [--task HEX] [KEY=VALUE]...\n"
            "Emit one audit event (component \"vsctl\") through vs_audit_emitv, wait until\n"
            "the AUDIT stream has stored it, and print its event id (32 hex digits).\n\n"
            "  --category C   lower-case token [a-z0-9_-]\n"
            "  --severity S   debug, info, notice, warning, error, critical, alert\n"
            "  --event E      the event name\n"
            "  --agent A      the agent the event is about\n"
            "  --task HEX     the task id (32 hex digits)\n"
            "  --timeout S    how long to wait for the confirmation (5)\n"
            "  KEY=VALUE      details, at most %d, values up to %d bytes\n\n" VSCTL_COMMON_HELP,
            MAX_DETAILS, MAX_VALUE);
}

struct emit {
    const char *event;
    const char *agent;
    const char *const *details;   /* key, value, ... */
    size_t ndetails;
    bool done;
    int status;
    uint8_t id[VS_ID_LEN];
};

static void on_emitted(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct emit *e = arg;
    e->status = status;
    e->done = true;
}

static int emit_and_confirm(vs_bus *bus, const char *category, Vs__V1__Severity severity,
                            const uint8_t *task, struct emit *e, uint64_t timeout_ms)
{
    int rc = check_stream(bus);
    if (rc < 0)
        return rc;
    rc = vs_audit_emitv(bus, category, severity, e->agent, task, e->event, e->details,
                        e->ndetails, on_emitted, e, e->id);
    if (rc < 0) {
        vsctl_err("cannot emit the event: %s", rc == -EINVAL ? "bad category or details"
                                                             : strerror(-rc));
        return rc;
    }
    if (vs_bus_run_until(bus, &e->done, timeout_ms) < 0) {
        vsctl_err("the event was not stored in %s within %llu ms", AUDIT_STREAM,
                  (unsigned long long)timeout_ms);
        return -ETIMEDOUT;
    }
    if (e->status < 0)
        vsctl_err("the event was not stored: %s", strerror(-e->status));
    return e->status;
}

static int cmd_emit(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"category", required_argument, NULL, 'c'},
        {"severity", required_argument, NULL, 's'},
        {"event", required_argument, NULL, 'e'},
        {"agent", required_argument, NULL, 'a'},
        {"task", required_argument, NULL, 'T'},
        {"timeout", required_argument, NULL, 't'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *category = NULL, *severity_name = NULL, *task_hex = NULL;
    struct emit e = {0};
    uint64_t timeout_ms = EMIT_TIMEOUT_MS;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'c': category = optarg; break;
        case 's': severity_name = optarg; break;
        case 'e': e.event = optarg; break;
        case 'a': e.agent = optarg; break;
        case 'T': task_hex = optarg; break;
        case 't':
            if (!vsctl_opt_duration("timeout", optarg, &timeout_ms))
                return VSCTL_USAGE;
            break;
        case 'h': emit_usage(stdout); return VSCTL_OK;
        default: emit_usage(stderr); return VSCTL_USAGE;
        }
    }
    Vs__V1__Severity severity;
    if (category == NULL || severity_name == NULL || e.event == NULL) {
        vsctl_err("audit emit needs --category, --severity and --event (see --help)");
        return VSCTL_USAGE;
    }
    if (!vs_audit_category_valid(category)) {
        vsctl_err("--category: a lower-case token [a-z0-9_-], not '%s'", category);
        return VSCTL_USAGE;
    }
    if (vs_severity_parse(severity_name, &severity) < 0) {
        vsctl_err("--severity: one of debug, info, notice, warning, error, critical, alert");
        return VSCTL_USAGE;
    }
    if (e.event[0] == '\0') {
        vsctl_err("--event: empty");
        return VSCTL_USAGE;
    }
    uint8_t task[VS_ID_LEN];
    if (task_hex != NULL && vs_unhex(task_hex, task, VS_ID_LEN) < 0) {
        vsctl_err("--task: 32 hex digits expected");
        return VSCTL_USAGE;
    }
    size_t n = (size_t)(argc - optind);
    if (n > MAX_DETAILS) {
        vsctl_err("at most %d details", MAX_DETAILS);
        return VSCTL_USAGE;
    }
    const char *details[2 * MAX_DETAILS];
    char *copies[MAX_DETAILS] = {0};
    int result = VSCTL_USAGE;
    for (size_t i = 0; i < n; i++) {
        const char *arg = argv[optind + (int)i];
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg) {
            vsctl_err("'%s' is not KEY=VALUE", arg);
            goto out;
        }
        if (strlen(eq + 1) > MAX_VALUE) {
            vsctl_err("the value of %.*s is longer than %d bytes", (int)(eq - arg), arg, MAX_VALUE);
            goto out;
        }
        copies[i] = strndup(arg, (size_t)(eq - arg));
        if (copies[i] == NULL) {
            result = VSCTL_FAIL;
            goto out;
        }
        details[2 * i] = copies[i];
        details[2 * i + 1] = eq + 1;
    }
    e.details = details;
    e.ndetails = n;

    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) == 0 &&
        emit_and_confirm(bus, category, severity, task_hex != NULL ? task : NULL, &e,
                         timeout_ms) == 0) {
        char id_hex[VS_ID_HEX_LEN];
        vs_hex(e.id, VS_ID_LEN, id_hex);
        printf("%s\n", id_hex);
        result = fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
    }
    vs_bus_free(bus);
    uv_loop_close(&loop);
out:
    for (size_t i = 0; i < n && i < MAX_DETAILS; i++)
        free(copies[i]);
    return result;
}

/* ---- dispatch ------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(struct vsctl *ctx, int argc, char **argv);
    const char *summary;
} audit_commands[] = {
    {"tail", cmd_tail, "follow the AUDIT stream"},
    {"emit", cmd_emit, "emit one event"},
    {"query", cmd_audit_query, "stored events by agent, task, category, severity, time"},
    {"verify", cmd_audit_verify, "verify the log against its signed checkpoints"},
    {"export", cmd_audit_export, "the log as JSON Lines (with the entry bytes)"},
    {"import-check", cmd_audit_import_check, "re-hash an export, name the first bad line"},
    {"prove", cmd_audit_prove, "inclusion and consistency proofs, verified here"},
    {"backup", cmd_audit_backup, "consistent copy of the store (read-only, while running)"},
};

static void usage(FILE *out)
{
    for (size_t i = 0; i < sizeof(audit_commands) / sizeof(audit_commands[0]); i++)
        fprintf(out, "%s vsctl audit %-13s %s\n", i == 0 ? "usage:" : "      ",
                audit_commands[i].name, audit_commands[i].summary);
    fprintf(out, "`vsctl audit COMMAND --help` for the options.\n");
}

int cmd_audit(struct vsctl *ctx, int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return VSCTL_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return VSCTL_OK;
    }
    vsctl_getopt_reset();
    for (size_t i = 0; i < sizeof(audit_commands) / sizeof(audit_commands[0]); i++)
        if (strcmp(argv[1], audit_commands[i].name) == 0)
            return audit_commands[i].run(ctx, argc - 1, argv + 1);
    vsctl_err("unknown audit command '%s' (see vsctl audit --help)", argv[1]);
    return VSCTL_USAGE;
}
