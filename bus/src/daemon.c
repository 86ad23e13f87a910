/*
 * daemon.c - the start-up, narrowing, health and shutdown sequence shared
 * by every daemon (see daemon.h for the order of steps).
 *
 * Keeping this in one place means every daemon gets the same command line,
 * the same config checks, the same privilege drop before it reads a single
 * bus message, the same vs.sys answers and the same graceful stop, and a
 * fix to any of them reaches all daemons at once.
 */
#include <errno.h>
#include <sys/prctl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vs/audit.h"
#include "vs/daemon.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/narrow.h"
#include "vs/subjects.h"
#include "vs/v1/sys.pb-c.h"

#define IDLE_POLL_MS 50
#define MAX_COUNTERS 64

static const struct vs_cfg_key common_keys[] = {
    {"nats.url", VS_CFG_STRING, false, "NATS server URL(s), comma-separated"},
    {"nats.user", VS_CFG_STRING, false, "user name for NATS authentication"},
    {"nats.password", VS_CFG_STRING, false, "password for NATS authentication"},
    {"nats.creds", VS_CFG_STRING, false, "NATS credentials file (nkeys/JWT)"},
    {"nats.max_msg", VS_CFG_SIZE, false, "largest bus message accepted (default 1MiB)"},
    {"nats.replicas", VS_CFG_INT, false, "JetStream replicas of declared streams (default 1)"},
    {"log.level", VS_CFG_STRING, false, "debug, info, warn or error (default info)"},
    {"seccomp", VS_CFG_STRING, false, "enforce (default) or log (diagnosis only)"},
    {"shutdown_timeout", VS_CFG_DURATION, false, "how long in-flight work may take at stop (10s)"},
    {NULL, VS_CFG_STRING, false, NULL},
};

struct vs_daemon {
    const struct vs_daemon_def *def;
    vs_config *cfg;
    uv_loop_t loop;
    vs_bus *bus;
    void *data;
    vs_sub *sys_subs[4];
    uv_signal_t sigint, sigterm;
    uv_timer_t drain_timer;
    uint64_t started_ms;
    uint64_t drain_deadline_ms;
    bool narrowed;
    bool stopping;
    bool done;
};

vs_bus *vs_daemon_bus(vs_daemon *d)
{
    return d->bus;
}

uv_loop_t *vs_daemon_loop(vs_daemon *d)
{
    return &d->loop;
}

const vs_config *vs_daemon_config(vs_daemon *d)
{
    return d->cfg;
}

void vs_daemon_set_data(vs_daemon *d, void *data)
{
    d->data = data;
}

void *vs_daemon_data(vs_daemon *d)
{
    return d->data;
}

/* ---- vs.sys answers ------------------------------------------------------------ */

static int on_health(vs_msg *m, void *arg)
{
    vs_daemon *d = arg;
    Vs__V1__Status status = VS__V1__STATUS__INIT;
    status.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__HealthReply r = VS__V1__HEALTH_REPLY__INIT;
    r.status = &status;
    r.component = (char *)d->def->component;
    r.version = (char *)VS_VERSION;
    r.pid = (int32_t)getpid();
    r.uptime_ms = vs_mono_ms() - d->started_ms;
    r.bus_connected = vs_bus_connected(d->bus);
    r.narrowed = d->narrowed;
    r.state = (char *)(d->stopping ? "draining" : "running");
    return vs_msg_respond(m, &r.base) == -ENOENT ? -EINVAL : 0;
}

struct counters {
    Vs__V1__Counter items[MAX_COUNTERS];
    Vs__V1__Counter *ptrs[MAX_COUNTERS];
    size_t n;
};

static void add_counter(void *ctx, const char *name, uint64_t value)
{
    struct counters *c = ctx;
    if (c->n == MAX_COUNTERS)
        return;
    vs__v1__counter__init(&c->items[c->n]);
    c->items[c->n].name = (char *)name;
    c->items[c->n].value = value;
    c->ptrs[c->n] = &c->items[c->n];
    c->n++;
}

static int on_stats(vs_msg *m, void *arg)
{
    vs_daemon *d = arg;
    struct vs_bus_stats s;
    vs_bus_stats_get(d->bus, &s);
    struct counters c = {.n = 0};
    add_counter(&c, "received", s.received);
    add_counter(&c, "handled", s.handled);
    add_counter(&c, "invalid", s.invalid);
    add_counter(&c, "errors", s.errors);
    add_counter(&c, "published", s.published);
    add_counter(&c, "reconnects", s.reconnects);
    add_counter(&c, "audit_failed", vs_audit_failed());
    if (d->def->counters != NULL)
        d->def->counters(d, add_counter, &c);
    Vs__V1__Status status = VS__V1__STATUS__INIT;
    status.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__StatsReply r = VS__V1__STATS_REPLY__INIT;
    r.status = &status;
    r.component = (char *)d->def->component;
    r.n_counters = c.n;
    r.counters = c.ptrs;
    return vs_msg_respond(m, &r.base) == -ENOENT ? -EINVAL : 0;
}

static int answer_sys(vs_daemon *d)
{
    const char *names[] = {d->def->component, "all"};
    const enum vs_subject_id ids[] = {VS_SUBJ_SYS_HEALTH, VS_SUBJ_SYS_STATS};
    vs_msg_handler handlers[] = {on_health, on_stats};
    size_t k = 0;
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 2; j++) {
            char subject[VS_SUBJECT_MAX];
            const char *tok[] = {names[j]};
            int rc = vs_subject_format(ids[i], subject, sizeof(subject), false, tok, 1);
            if (rc < 0)
                return rc;
            rc = vs_bus_subscribe(d->bus, subject, NULL, &vs__v1__sys_request__descriptor,
                                  handlers[i], d, &d->sys_subs[k++]);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* ---- shutdown ------------------------------------------------------------------ */

static void on_drain_tick(uv_timer_t *t)
{
    vs_daemon *d = t->data;
    bool idle = d->def->idle == NULL || d->def->idle(d);
    if (!idle && vs_mono_ms() < d->drain_deadline_ms)
        return;
    if (!idle)
        log_warnx("shutdown timeout: stopping with work in flight (it will be redelivered)");
    uv_timer_stop(t);
    d->done = true;
    uv_stop(&d->loop);
}

void vs_daemon_shutdown(vs_daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("stopping: no new work, finishing what is in flight");
    if (d->def->stop != NULL)
        d->def->stop(d);
    d->drain_deadline_ms =
        vs_mono_ms() + vs_config_duration_ms(d->cfg, "shutdown_timeout", 10000);
    uv_timer_start(&d->drain_timer, on_drain_tick, 0, IDLE_POLL_MS);
}

static void on_signal(uv_signal_t *s, int signum)
{
    log_info("received signal %d", signum);
    vs_daemon_shutdown(s->data);
}

/* ---- start-up ------------------------------------------------------------------- */

static void usage(const struct vs_daemon_def *def, FILE *out)
{
    fprintf(out,
            "usage: vs-%s [-c FILE] [-n] [-v]\n"
            "%s\n\n"
            "  -c, --config FILE  configuration file (YAML)\n"
            "  -n, --check        check the configuration and exit (0: valid)\n"
            "  -v, --verbose      log at debug level\n"
            "  -V, --version      print the version\n"
            "  -h, --help         this help\n\n"
            "configuration keys:\n",
            def->component, def->summary);
    for (const struct vs_cfg_key *k = common_keys; k->path != NULL; k++)
        fprintf(out, "  %-22s %s\n", k->path, k->help);
    for (const struct vs_cfg_key *k = def->config; k != NULL && k->path != NULL; k++)
        fprintf(out, "  %-22s %s%s\n", k->path, k->help, k->required ? " (required)" : "");
}

static int load_config(const struct vs_daemon_def *def, const char *path, vs_config **out)
{
    if (path == NULL)
        return vs_config_empty(out);
    const struct vs_cfg_key *schemas[] = {common_keys, def->config};
    char err[512];
    int rc = vs_config_load(path, schemas, def->config != NULL ? 2 : 1, out, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "vs-%s: %s\n", def->component, err);
        return rc;
    }
    /* Values with a closed set of choices are checked here, at load. */
    enum vs_log_level level;
    const char *lvl = vs_config_string(*out, "log.level", "info");
    const char *mode = vs_config_string(*out, "seccomp", "enforce");
    if (log_level_parse(lvl, &level) < 0)
        snprintf(err, sizeof(err), "%s: log.level must be debug, info, warn or error", path);
    else if (strcmp(mode, "enforce") != 0 && strcmp(mode, "log") != 0)
        snprintf(err, sizeof(err), "%s: seccomp must be enforce or log", path);
    else
        return 0;
    fprintf(stderr, "vs-%s: %s\n", def->component, err);
    vs_config_free(*out);
    *out = NULL;
    return -EINVAL;
}

static int connect_bus(vs_daemon *d)
{
    char name[96];
    snprintf(name, sizeof(name), "vs-%s", d->def->component);
    struct vs_bus_opts o = {
        .url = vs_config_string(d->cfg, "nats.url", VS_BUS_DEFAULT_URL),
        .name = name,
        .user = vs_config_string(d->cfg, "nats.user", NULL),
        .password = vs_config_string(d->cfg, "nats.password", NULL),
        .creds_file = vs_config_string(d->cfg, "nats.creds", NULL),
        .max_msg = (size_t)vs_config_size(d->cfg, "nats.max_msg", VS_BUS_DEFAULT_MAX_MSG),
        .component = d->def->component,
        .replicas = (int)vs_config_int(d->cfg, "nats.replicas", 1),
    };
    int rc = vs_bus_new(&d->loop, &o, &d->bus);
    if (rc < 0) {
        log_warnx("cannot connect to the bus at %s: %s", o.url, strerror(-rc));
        return rc;
    }
    rc = vs_js_declare_all_sync(d->bus);
    if (rc < 0)
        log_warnx("cannot declare the JetStream streams: %s", strerror(-rc));
    return rc;
}

static int start(vs_daemon *d)
{
    int rc = connect_bus(d);
    if (rc == 0 && d->def->open != NULL && (rc = d->def->open(d)) < 0)
        log_warnx("cannot open %s resources: %s", d->def->component, strerror(-rc));
    /* open may take seconds (rulesets compiled, more so under ASan) while
     * the loop's cached time stands still: deadlines set from here on
     * (consumer creation, publishes) must not count it as already spent. */
    uv_update_time(&d->loop);
    if (rc == 0) {
        bool log_only = strcmp(vs_config_string(d->cfg, "seccomp", "enforce"), "log") == 0;
        if (log_only)
            log_warnx("seccomp in log mode: violations are only logged by the kernel");
        if (d->def->no_filter_reason != NULL) {
            log_warnx("no seccomp filter: %s", d->def->no_filter_reason);
            rc = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : -errno;
            d->narrowed = false;
        } else {
            rc = vs_narrow(d->def->syscalls, log_only);
            d->narrowed = rc == 0 && !log_only;
        }
    }
    if (rc == 0)
        rc = answer_sys(d);
    if (rc == 0 && d->def->start != NULL && (rc = d->def->start(d)) < 0)
        log_warnx("cannot start %s: %s", d->def->component, strerror(-rc));
    return rc;
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void stop_everything(vs_daemon *d)
{
    for (size_t i = 0; i < sizeof(d->sys_subs) / sizeof(d->sys_subs[0]); i++)
        vs_sub_free(d->sys_subs[i]);
    if (d->def->close != NULL)
        d->def->close(d);
    if (d->bus != NULL)
        vs_audit_emit(d->bus, "daemon", VS__V1__SEVERITY__SEVERITY_INFO, NULL, NULL, "stopped",
                      "component", d->def->component, NULL);
    vs_bus_free(d->bus);
    uv_close((uv_handle_t *)&d->sigint, on_closed_noop);
    uv_close((uv_handle_t *)&d->sigterm, on_closed_noop);
    uv_close((uv_handle_t *)&d->drain_timer, on_closed_noop);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    vs_config_free(d->cfg);
}

int vs_daemon_main(const struct vs_daemon_def *def, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    bool check = false, verbose = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:nvVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'n': check = true; break;
        case 'v': verbose = true; break;
        case 'V': printf("vs-%s %s\n", def->component, VS_VERSION); return 0;
        case 'h': usage(def, stdout); return 0;
        default: usage(def, stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(def, stderr);
        return 2;
    }
    log_init(def->component, verbose ? VS_LOG_DEBUG : VS_LOG_INFO);

    vs_daemon d = {.def = def};
    if (load_config(def, config_path, &d.cfg) < 0)
        return 1;
    if (check) {
        printf("%s: configuration OK\n", config_path != NULL ? config_path : "(defaults)");
        vs_config_free(d.cfg);
        return 0;
    }
    enum vs_log_level level = VS_LOG_INFO;
    if (!verbose && log_level_parse(vs_config_string(d.cfg, "log.level", "info"), &level) == 0)
        log_init(def->component, level);

    signal(SIGPIPE, SIG_IGN);
    if (vs_crypto_init() < 0 || uv_loop_init(&d.loop) != 0) {
        log_warnx("cannot initialize");
        vs_config_free(d.cfg);
        return 1;
    }
    d.started_ms = vs_mono_ms();
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_timer_init(&d.loop, &d.drain_timer);
    d.sigint.data = d.sigterm.data = d.drain_timer.data = &d;

    int rc = start(&d);
    if (rc == 0) {
        uv_signal_start(&d.sigint, on_signal, SIGINT);
        uv_signal_start(&d.sigterm, on_signal, SIGTERM);
        vs_audit_emit(d.bus, "daemon", VS__V1__SEVERITY__SEVERITY_INFO, NULL, NULL, "started",
                      "component", def->component, "version", VS_VERSION, NULL);
        log_info("running (pid %d, seccomp %s)", (int)getpid(), d.narrowed ? "enforced" : "logging");
        while (!d.done)
            uv_run(&d.loop, UV_RUN_DEFAULT);
        log_info("stopped");
    }
    stop_everything(&d);
    return rc == 0 ? 0 : 1;
}
