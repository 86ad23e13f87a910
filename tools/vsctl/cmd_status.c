/*
 * cmd_status.c - `vsctl status`: one row per daemon instance on the bus.
 *
 * Every daemon answers the ".all" broadcast of vs.sys.health and
 * vs.sys.stats, so one publish per subject with our own reply inbox
 * reaches every instance, and all answers are collected for a fixed window
 * (request/reply would stop at the first). Daemons listed in
 * STATE/stack.list that did not answer are shown as DOWN: "expected but
 * silent" is the failure an operator needs to see, so it sets the exit
 * status. A StatsReply carries no pid, so counters are joined to the
 * health row by component when that component has one instance.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/ids.h"
#include "vs/pbjson.h"
#include "vs/subjects.h"
#include "vs/v1/sys.pb-c.h"
#include "vsctl.h"

#define DEFAULT_WINDOW_MS 700
#define MAX_ROWS 256

struct row {
    char component[VSCTL_NAME_MAX + 1];
    char state[32];
    char version[32];
    int32_t pid;
    uint64_t uptime_ms;
    bool narrowed, bus_connected;
    bool answered;             /* health reply received */
    json_t *counters;          /* name -> value, or NULL */
};

struct collect {
    struct row rows[MAX_ROWS];
    size_t nrows;
    json_t *stats;             /* array of {component, counters} */
};

static void copy_token(char *out, size_t size, const char *in)
{
    /* Replies are input from the bus: keep printable ASCII only. */
    size_t o = 0;
    for (const char *p = in != NULL ? in : ""; *p != '\0' && o + 1 < size; p++)
        out[o++] = (*p > ' ' && *p < 0x7f) ? *p : '?';
    out[o] = '\0';
}

/* When nobody listens, the server answers the inbox with an empty "503 no
 * responders" status message; it decodes as an empty reply. Every real
 * answer names its component. */
static bool real_reply(const vs_msg *m, const char *component)
{
    size_t len;
    vs_msg_data(m, &len);
    return len > 0 && component != NULL && component[0] != '\0';
}

static int on_health(vs_msg *m, void *arg)
{
    struct collect *c = arg;
    const Vs__V1__HealthReply *r = (const Vs__V1__HealthReply *)vs_msg_body(m);
    if (!real_reply(m, r != NULL ? r->component : NULL) || c->nrows == MAX_ROWS)
        return 0;
    struct row *row = &c->rows[c->nrows++];
    memset(row, 0, sizeof(*row));
    copy_token(row->component, sizeof(row->component), r->component);
    copy_token(row->state, sizeof(row->state), r->state);
    copy_token(row->version, sizeof(row->version), r->version);
    row->pid = r->pid;
    row->uptime_ms = r->uptime_ms;
    row->narrowed = r->narrowed;
    row->bus_connected = r->bus_connected;
    row->answered = true;
    return 0;
}

static int on_stats(vs_msg *m, void *arg)
{
    struct collect *c = arg;
    const Vs__V1__StatsReply *r = (const Vs__V1__StatsReply *)vs_msg_body(m);
    if (!real_reply(m, r != NULL ? r->component : NULL))
        return 0;
    char component[VSCTL_NAME_MAX + 1];
    copy_token(component, sizeof(component), r->component);
    json_t *counters = json_object();
    for (size_t i = 0; i < r->n_counters; i++) {
        char name[VSCTL_NAME_MAX + 1];
        copy_token(name, sizeof(name), r->counters[i]->name);
        json_object_set_new(counters, name, json_integer((json_int_t)r->counters[i]->value));
    }
    json_array_append_new(c->stats, json_pack("{s:s, s:o}", "component", component,
                                               "counters", counters));
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcmp(x->component, y->component);
    return c != 0 ? c : (x->pid > y->pid) - (x->pid < y->pid);
}

/* Counters of a row when its component has exactly one instance and one
 * stats answer. */
static void join_stats(struct collect *c)
{
    for (size_t i = 0; i < c->nrows; i++) {
        struct row *row = &c->rows[i];
        size_t instances = 0, answers = 0;
        json_t *found = NULL;
        for (size_t k = 0; k < c->nrows; k++)
            instances += strcmp(c->rows[k].component, row->component) == 0;
        size_t idx;
        json_t *s;
        json_array_foreach(c->stats, idx, s) {
            if (strcmp(json_string_value(json_object_get(s, "component")), row->component) == 0) {
                answers++;
                found = json_object_get(s, "counters");
            }
        }
        if (instances == 1 && answers == 1)
            row->counters = json_incref(found);
    }
}

static void format_uptime(uint64_t ms, char *out, size_t size)
{
    uint64_t s = ms / 1000;
    if (s < 60)
        snprintf(out, size, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(out, size, "%llum%02llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else if (s < 86400)
        snprintf(out, size, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    else
        snprintf(out, size, "%llud%02lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
}

static void counter_text(const struct row *row, const char *name, char *out, size_t size)
{
    json_t *v = row->counters != NULL ? json_object_get(row->counters, name) : NULL;
    if (v != NULL)
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, size, "-");
}

static void print_table(const struct collect *c, const char *url, bool reachable)
{
    printf("bus: %s (%s)\n", url, reachable ? "reachable" : "UNREACHABLE");
    if (c->nrows == 0) {
        printf("no daemon answered\n");
        return;
    }
    printf("%-16s %8s %-9s %-8s %8s %10s %10s %8s %8s\n", "COMPONENT", "PID", "STATE",
           "NARROWED", "UPTIME", "RECEIVED", "HANDLED", "INVALID", "ERRORS");
    for (size_t i = 0; i < c->nrows; i++) {
        const struct row *r = &c->rows[i];
        char pid[16] = "-", up[32] = "-", rc[24], hd[24], iv[24], er[24];
        if (r->answered) {
            snprintf(pid, sizeof(pid), "%d", (int)r->pid);
            format_uptime(r->uptime_ms, up, sizeof(up));
        }
        counter_text(r, "received", rc, sizeof(rc));
        counter_text(r, "handled", hd, sizeof(hd));
        counter_text(r, "invalid", iv, sizeof(iv));
        counter_text(r, "errors", er, sizeof(er));
        printf("%-16s %8s %-9s %-8s %8s %10s %10s %8s %8s\n", r->component, pid,
               r->answered ? r->state : "DOWN", r->answered ? (r->narrowed ? "yes" : "NO") : "-",
               up, rc, hd, iv, er);
    }
}

static json_t *rows_json(const struct collect *c, const char *url, bool reachable, bool ok)
{
    json_t *daemons = json_array();
    for (size_t i = 0; i < c->nrows; i++) {
        const struct row *r = &c->rows[i];
        json_t *d;
        if (r->answered)
            d = json_pack("{s:s, s:i, s:s, s:b, s:I, s:b, s:s}", "component", r->component,
                          "pid", (int)r->pid, "state", r->state, "narrowed", r->narrowed,
                          "uptime_ms", (json_int_t)r->uptime_ms, "bus_connected",
                          r->bus_connected, "version", r->version);
        else
            d = json_pack("{s:s, s:s}", "component", r->component, "state", "DOWN");
        if (d != NULL && r->counters != NULL)
            json_object_set(d, "counters", r->counters);
        json_array_append_new(daemons, d);
    }
    json_t *doc = json_pack("{s:{s:s, s:b}, s:o, s:b}", "bus", "url", url, "reachable",
                            reachable, "daemons", daemons, "ok", ok);
    /* Counters that could not be given to one instance (several instances
     * of a component answer alike: StatsReply has no pid). */
    bool unjoined = false;
    for (size_t i = 0; i < c->nrows; i++)
        unjoined = unjoined || (c->rows[i].answered && c->rows[i].counters == NULL);
    if (doc != NULL && unjoined && json_array_size(c->stats) > 0)
        json_object_set(doc, "stats", c->stats);
    return doc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl status [--json] [--timeout MS]\n"
            "Ask every daemon on the bus for its health and counters (vs.sys.health.all,\n"
            "vs.sys.stats.all) and print one row per instance: component, pid, state,\n"
            "narrowed (no_new_privs + seccomp), uptime, received/handled/invalid/errors.\n"
            "Daemons of STATE/stack.list that do not answer are shown as DOWN.\n"
            "Exit status 1 when the bus is unreachable or an expected daemon is DOWN.\n\n"
            "  --json         one JSON document: bus, daemons (counters when known), ok\n"
            "  --timeout MS   how long answers are collected (default 700)\n\n"
            VSCTL_COMMON_HELP);
}

static int broadcast(vs_bus *bus, enum vs_subject_id id, const ProtobufCMessageDescriptor *desc,
                     vs_msg_handler cb, struct collect *c, vs_sub **sub)
{
    char inbox[128], subject[VS_SUBJECT_MAX];
    const char *all[] = {"all"};
    int rc = vs_bus_new_inbox(bus, inbox, sizeof(inbox));
    if (rc == 0)
        rc = vs_subject_format(id, subject, sizeof(subject), false, all, 1);
    if (rc >= 0)
        rc = vs_bus_subscribe(bus, inbox, NULL, desc, cb, c, sub);
    if (rc < 0)
        return rc;
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    req.sent_at_ns = vs_now_ns();
    uint8_t buf[32];
    size_t len = vs__v1__sys_request__pack(&req, buf);
    /* The subscription was sent before this publish on the same
     * connection, so the server routes the replies. */
    return vs_bus_publish_raw(bus, subject, inbox, buf, len, NULL, 0);
}

int cmd_status(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    uint64_t window = DEFAULT_WINDOW_MS;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'j': json = true; break;
        case 't':
            if (!vsctl_opt_uint("timeout", optarg, 1, 600000, &window))
                return VSCTL_USAGE;
            break;
        case 'h': usage(stdout); return VSCTL_OK;
        default: usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("status takes no arguments");
        return VSCTL_USAGE;
    }

    /* What should be running: optional (a stack may be run by systemd). */
    struct vsctl_daemon expected[VSCTL_MAX_DAEMONS];
    size_t nexpected = 0;
    const char *state = vsctl_state_dir(ctx);
    if (state != NULL)
        vsctl_stack_read(state, expected, VSCTL_MAX_DAEMONS, &nexpected);

    char url[VSCTL_URL_MAX];
    vsctl_url_redact(vsctl_url(ctx), url, sizeof(url));
    struct collect *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return VSCTL_FAIL;
    c->stats = json_array();

    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    vs_sub *health = NULL, *stats = NULL;
    bool reachable = vsctl_connect(ctx, &loop, &bus) == 0;
    if (reachable) {
        int rc = broadcast(bus, VS_SUBJ_SYS_HEALTH, &vs__v1__health_reply__descriptor, on_health,
                           c, &health);
        if (rc == 0)
            rc = broadcast(bus, VS_SUBJ_SYS_STATS, &vs__v1__stats_reply__descriptor, on_stats, c,
                           &stats);
        if (rc < 0) {
            vsctl_err("cannot ask the daemons: %s", strerror(-rc));
            reachable = false;
        } else {
            vsctl_sleep_bus(bus, window);
        }
    }
    vs_sub_free(health);
    vs_sub_free(stats);

    join_stats(c);
    bool ok = reachable;
    for (size_t i = 0; i < nexpected; i++) {
        bool seen = false;
        for (size_t k = 0; k < c->nrows && !seen; k++)
            seen = c->rows[k].answered && strcmp(c->rows[k].component, expected[i].name) == 0;
        if (!seen && c->nrows < MAX_ROWS) {
            struct row *row = &c->rows[c->nrows++];
            memset(row, 0, sizeof(*row));
            copy_token(row->component, sizeof(row->component), expected[i].name);
            ok = false;
        }
    }
    qsort(c->rows, c->nrows, sizeof(c->rows[0]), cmp_rows);

    if (json) {
        json_t *doc = rows_json(c, url, reachable, ok);
        vsctl_print_json(stdout, doc);
        json_decref(doc);
    } else if (reachable) {
        print_table(c, url, reachable);
    }
    if (reachable && !ok) {
        size_t down = 0;
        for (size_t i = 0; i < c->nrows; i++)
            down += !c->rows[i].answered;
        vsctl_err("%zu expected daemon%s did not answer", down, down == 1 ? "" : "s");
    }
    for (size_t i = 0; i < c->nrows; i++)
        json_decref(c->rows[i].counters);
    json_decref(c->stats);
    free(c);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return fflush(stdout) == 0 && ok ? VSCTL_OK : VSCTL_FAIL;
}
