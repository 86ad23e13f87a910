/*
 * test_daemon.c - the daemon skeleton as a real process (tests/fixtures/
 * vs-testd) against a real nats-server: config checking (-n), narrowing
 * (Seccomp: 2, NoNewPrivs: 1), health and stats, redelivery after kill -9
 * with the effect applied once, "JetStream + reply" answered once after a
 * redelivery, graceful shutdown with work in flight, hostile input, and
 * surviving a broker restart.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/bus.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

struct fixture {
    struct vs_busfix base;
    char *dir;
    char effects[256];
    struct vs_daemon testd[4];
    int ntestd;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(&f->base, 0);
    f->dir = vs_scratch_dir("vs-testd");
    assert_non_null(f->dir);
    snprintf(f->effects, sizeof(f->effects), "%s/effects", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < f->ntestd; i++)
        vs_daemon_kill(&f->testd[i]);
    vs_busfix_fini(&f->base);
    vs_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void idle(struct fixture *f, uint64_t ms)
{
    vs_test_idle(f->base.bus, ms);
}

/* Wait for a line in the effects file while the test's bus keeps running
 * (its publishes are written by the loop). 0 or -ETIMEDOUT. */
static int wait_effect(struct fixture *f, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (vs_file_count(f->effects, needle) > 0)
            return 0;
        idle(f, 50);
    }
    return -ETIMEDOUT;
}

/* Write a config with the given extra testd lines and return its path. */
static const char *config(struct fixture *f, const char *name, const char *extra)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s.yaml", f->dir, name);
    assert_int_equal(vs_write_file(path,
                                   "nats:\n  url: %s\n  max_msg: 16KiB\nlog:\n  level: debug\n"
                                   "shutdown_timeout: 8s\n"
                                   "testd:\n  effects: %s\n  ack_wait: 1s\n%s",
                                   f->base.nats.url, f->effects, extra != NULL ? extra : ""),
                     0);
    return path;
}

struct health {
    bool done;
    int status;
    bool narrowed;
    int32_t pid;
};

static void on_health(int status, const ProtobufCMessage *msg, void *arg)
{
    struct health *h = arg;
    h->done = true;
    h->status = status;
    if (status == 0) {
        const Vs__V1__HealthReply *r = (const Vs__V1__HealthReply *)msg;
        h->narrowed = r->narrowed;
        h->pid = r->pid;
    }
}

static struct health ask_health(struct fixture *f)
{
    struct health h = {0};
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    assert_int_equal(vs_bus_request(f->base.bus, "vs.sys.health.testd", &req.base,
                                    &vs__v1__health_reply__descriptor, 1000, on_health, &h), 0);
    assert_int_equal(vs_bus_run_until(f->base.bus, &h.done, 5000), 0);
    return h;
}

/* Ready: this instance answers the health subject. */
static bool testd_ready(struct vs_daemon *d, void *arg)
{
    struct health h = ask_health(arg);
    return h.status == 0 && h.pid == d->pid;
}

/* Start vs-testd and wait until it answers its health subject. */
static pid_t start_testd(struct fixture *f, const char *cfg)
{
    assert_true(f->ntestd < (int)(sizeof(f->testd) / sizeof(f->testd[0])));
    struct vs_daemon *d = &f->testd[f->ntestd++];
    vs_daemon_init(d, VS_TESTD_BIN, f->dir, "testd"); /* every instance logs to testd.log */
    snprintf(d->cfg, sizeof(d->cfg), "%s", cfg);
    vs_daemon_start(d, f->base.bus, testd_ready, f, 10000, 100);
    return d->pid;
}

/* pid is gone (reaped here): nothing to kill at teardown. */
static void forget(struct fixture *f, pid_t pid)
{
    for (int i = 0; i < f->ntestd; i++)
        if (f->testd[i].pid == pid)
            f->testd[i].pid = 0;
}

static int run_check(const char *cfg, const char *out)
{
    const char *argv[] = {VS_TESTD_BIN, "-n", "-c", cfg, NULL};
    pid_t pid = vs_proc_spawn(argv, NULL, out);
    int status = vs_proc_wait(pid, 10000);
    assert_true(status >= 0 && WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* vs-testd -n on a configuration file with exactly `text`. */
static int check_text(struct fixture *f, const char *name, const char *text, const char *out)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.yaml", f->dir, name);
    assert_int_equal(vs_write_file(path, "%s", text), 0);
    return run_check(path, out);
}

static void test_config_check(void **state)
{
    struct fixture *f = *state;
    char out[256];
    snprintf(out, sizeof(out), "%s/check.out", f->dir);
    assert_int_equal(run_check(config(f, "good", "  work: 250ms\n"), out), 0);
    assert_int_equal(vs_file_count(out, "configuration OK"), 1);

    assert_int_equal(check_text(f, "typo",
                                "nats:\n  url: nats://127.0.0.1:1\n  urll: x\n"
                                "testd:\n  effects: /tmp/x\n",
                                out),
                     1);
    assert_int_equal(vs_file_count(out, "nats.urll"), 1);
    assert_int_equal(vs_file_count(out, ":3:"), 1); /* the line is named */
    assert_int_equal(check_text(f, "type", "testd:\n  effects: /tmp/x\n  work: soon\n", out), 1);
    assert_true(vs_file_count(out, "testd.work") >= 1);
    assert_int_equal(check_text(f, "missing", "log:\n  level: info\n", out), 1);
    assert_true(vs_file_count(out, "testd.effects") >= 1);
    assert_int_equal(
        check_text(f, "level", "log:\n  level: loud\ntestd:\n  effects: /tmp/x\n", out), 1);
    assert_true(vs_file_count(out, "log.level") >= 1);
}

static void test_daemon_is_narrowed(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start_testd(f, config(f, "narrow", NULL));
    char v[64];
    assert_int_equal(vs_proc_status_field(pid, "Seccomp", v, sizeof(v)), 0);
    assert_string_equal(v, "2");
    assert_int_equal(vs_proc_status_field(pid, "NoNewPrivs", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    struct health h = ask_health(f);
    assert_int_equal(h.status, 0);
    assert_true(h.narrowed);
}

static void publish_task(struct fixture *f, uint8_t id[VS_ID_LEN], char hex[VS_ID_HEX_LEN])
{
    vs_id_new(id);
    vs_hex(id, VS_ID_LEN, hex);
    Vs__V1__TaskSubmit t = VS__V1__TASK_SUBMIT__INIT;
    t.task_id.data = id;
    t.task_id.len = VS_ID_LEN;
    t.agent = "agent-1";
    assert_int_equal(vs_js_publish(f->base.bus, "vs.task.submit", &t.base, hex, NULL, NULL), 0);
}

static void test_redelivery_after_kill_handled_once(void **state)
{
    struct fixture *f = *state;
    pid_t first = start_testd(f, config(f, "slow", "  work: 60s\n"));
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN], line[64];
    publish_task(f, id, hex);
    snprintf(line, sizeof(line), "start %s", hex);
    assert_int_equal(wait_effect(f, line, 10000), 0);
    /* Three ack waits pass while it works: progress reports keep the
     * message from being redelivered meanwhile. */
    idle(f, 3000);
    assert_int_equal(vs_file_count(f->effects, line), 1);

    vs_proc_kill(first);
    forget(f, first);
    start_testd(f, config(f, "fast", NULL));
    snprintf(line, sizeof(line), "done %s", hex);
    assert_int_equal(wait_effect(f, line, 15000), 0);
    idle(f, 2500);
    assert_int_equal(vs_file_count(f->effects, line), 1);
    assert_int_equal(vs_test_stream_count(f->base.bus, "TASKS", "vs.task.rejected"), 1);
}

static void test_crash_after_effect_output_once(void **state)
{
    struct fixture *f = *state;
    /* The effect happens, then the process dies before its output: the
     * redelivery finds the effect and only publishes the output. */
    pid_t first = start_testd(f, config(f, "crashy", "  crash: after_effect\n"));
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN], line[64];
    publish_task(f, id, hex);
    for (int i = 0; i < 200 && vs_proc_alive(first); i++)
        idle(f, 50);
    assert_false(vs_proc_alive(first));
    forget(f, first);
    start_testd(f, config(f, "fast", NULL));
    snprintf(line, sizeof(line), "duplicate %s", hex);
    assert_int_equal(wait_effect(f, line, 15000), 0);
    snprintf(line, sizeof(line), "done %s", hex);
    assert_int_equal(vs_file_count(f->effects, line), 1);
    assert_int_equal(vs_test_stream_count(f->base.bus, "TASKS", "vs.task.rejected"), 1);
}

struct answer {
    int calls;
    int status;
    Vs__V1__StatusCode code;
    bool done;
};

static void on_answer(int status, const ProtobufCMessage *msg, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->done = true;
    a->status = status;
    if (status == 0)
        a->code = ((const Vs__V1__LedgerReply *)msg)->status->code;
}

static void js_reply_after_crash(struct fixture *f, const char *crash)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "  crash: %s\n", crash);
    pid_t first = start_testd(f, config(f, "crashy", extra));
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN], line[64];
    vs_id_new(id);
    vs_hex(id, VS_ID_LEN, hex);
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    cmd.command_id.data = id;
    cmd.command_id.len = VS_ID_LEN;
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    struct answer a = {0};
    assert_int_equal(vs_js_request(f->base.bus, "vs.ledger.command", &cmd.base, hex,
                                   &vs__v1__ledger_reply__descriptor, 20000, on_answer, &a), 0);
    /* The first instance dies (before or after its reply); the next one
     * gets the redelivery and answers again from its record. */
    while (vs_proc_alive(first))
        idle(f, 50);
    forget(f, first);
    start_testd(f, config(f, "fast", NULL));
    snprintf(line, sizeof(line), "redelivered %s", hex);
    for (int i = 0; i < 300 && vs_file_count(f->effects, line) == 0; i++)
        idle(f, 50);
    assert_int_equal(vs_file_count(f->effects, line), 1);
    assert_int_equal(vs_bus_run_until(f->base.bus, &a.done, 10000), 0);
    idle(f, 500);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.code, VS__V1__STATUS_CODE__STATUS_OK);
    snprintf(line, sizeof(line), "applied %s", hex);
    assert_int_equal(vs_file_count(f->effects, line), 1);
}

static void test_js_reply_once_when_reply_was_lost(void **state)
{
    js_reply_after_crash(*state, "after_effect");
}

static void test_js_reply_once_when_ack_was_lost(void **state)
{
    js_reply_after_crash(*state, "after_reply");
}

static void test_sigterm_finishes_in_flight_work(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start_testd(f, config(f, "steady", "  work: 1500ms\n"));
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN], line[64];
    publish_task(f, id, hex);
    snprintf(line, sizeof(line), "start %s", hex);
    assert_int_equal(wait_effect(f, line, 10000), 0);
    kill(pid, SIGTERM);
    int status = vs_proc_wait(pid, 10000);
    forget(f, pid);
    assert_true(status >= 0 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    snprintf(line, sizeof(line), "done %s", hex);
    assert_int_equal(vs_file_count(f->effects, line), 1);
    /* It was acked before exit: a new instance gets nothing to redo. */
    start_testd(f, config(f, "fast", NULL));
    idle(f, 2500);
    snprintf(line, sizeof(line), "%s", hex);
    assert_int_equal(vs_file_count(f->effects, line), 2); /* start + done */
    assert_int_equal(vs_test_stream_count(f->base.bus, "TASKS", "vs.task.rejected"), 1);
}

struct stats {
    bool done;
    uint64_t invalid;
};

static void on_stats(int status, const ProtobufCMessage *msg, void *arg)
{
    struct stats *s = arg;
    s->done = true;
    if (status != 0)
        return;
    const Vs__V1__StatsReply *r = (const Vs__V1__StatsReply *)msg;
    for (size_t i = 0; i < r->n_counters; i++)
        if (strcmp(r->counters[i]->name, "invalid") == 0)
            s->invalid = r->counters[i]->value;
}

struct raw {
    bool done;
    Vs__V1__StatusCode code;
};

static void on_raw(int status, vs_msg *reply, void *arg)
{
    struct raw *r = arg;
    r->done = true;
    if (status == 0) {
        size_t len;
        const uint8_t *d = vs_msg_data(reply, &len);
        Vs__V1__HealthReply *h = vs__v1__health_reply__unpack(NULL, len, d);
        if (h != NULL && h->status != NULL)
            r->code = h->status->code;
        vs__v1__health_reply__free_unpacked(h, NULL);
    }
}

static void test_hostile_input_daemon_keeps_serving(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start_testd(f, config(f, "hostile", NULL));
    struct raw r = {0};
    assert_int_equal(vs_bus_request_raw(f->base.bus, "vs.sys.health.testd", "\x0a\xff\xff", 3, NULL, 0,
                                        2000, on_raw, &r), 0);
    assert_int_equal(vs_bus_run_until(f->base.bus, &r.done, 5000), 0);
    assert_int_equal(r.code, VS__V1__STATUS_CODE__STATUS_INVALID);
    /* Over the daemon's 16 KiB limit (the test's bus allows 1 MiB). */
    size_t big = 200 * 1024;
    char *blob = calloc(1, big);
    assert_int_equal(vs_bus_publish_raw(f->base.bus, "vs.sys.health.testd", NULL, blob, big, NULL, 0), 0);
    free(blob);
    /* A task that is not one (poison on a JetStream consumer). */
    assert_int_equal(vs_js_publish_raw(f->base.bus, "vs.task.submit", "garbage!", 8, NULL, 0, NULL, NULL), 0);
    idle(f, 500);
    struct health h = ask_health(f);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.pid, pid);
    struct stats s = {0};
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    assert_int_equal(vs_bus_request(f->base.bus, "vs.sys.stats.testd", &req.base,
                                    &vs__v1__stats_reply__descriptor, 2000, on_stats, &s), 0);
    assert_int_equal(vs_bus_run_until(f->base.bus, &s.done, 5000), 0);
    assert_int_equal(s.invalid, 3);
    assert_true(vs_proc_alive(pid));
}

static void test_survives_broker_restart(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start_testd(f, config(f, "restart", NULL));
    assert_int_equal(vs_natsd_restart(&f->base.nats), 0);
    /* Our own bus reconnects too; then the daemon answers and consumes. */
    struct health h = {0};
    for (int i = 0; i < 100; i++) {
        h = ask_health(f);
        if (h.status == 0)
            break;
        idle(f, 100);
    }
    assert_int_equal(h.status, 0);
    assert_int_equal(h.pid, pid);
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN], line[64];
    publish_task(f, id, hex);
    snprintf(line, sizeof(line), "done %s", hex);
    assert_int_equal(wait_effect(f, line, 15000), 0);
}

int main(void)
{
    log_init("test", VS_LOG_WARN);
    assert_int_equal(vs_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daemon_is_narrowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_after_kill_handled_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_after_effect_output_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_js_reply_once_when_reply_was_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_js_reply_once_when_ack_was_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_finishes_in_flight_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_input_daemon_keeps_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_broker_restart, setup, teardown),
    };
    return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
