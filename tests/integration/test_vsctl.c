/*
 * test_vsctl.c - the vsctl binary against real processes: `vsctl up` with
 * the fixture daemon vs-testd under the supervisor (real nats-server,
 * --port 0, a mkdtemp state directory), status, the supervisor restarting
 * a daemon killed with SIGKILL, audit emit/tail, pub/sub (core and
 * JetStream), refusals (unknown JSON field, subject outside the table),
 * keys init-box with seal and unseal,
 * and `vsctl down` leaving no process and no pid file behind.
 *
 * vsctl runs as a child with a clean environment (PATH only) and an
 * explicit --state, its stdout and stderr captured in separate files. The
 * stack is shared by the tests of one group (starting it is the slow
 * part); the group teardown always runs `vsctl down` and then kills
 * whatever is left by pid. The test process is a child subreaper, so the
 * supervisor (orphaned when `vsctl up` exits) is reaped here and "gone"
 * means really gone. Every wait is bounded.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "daemon.h"
#include "natsd.h"

static char *state;         /* the shared stack's state directory */
static char up_output[4096];
static struct vs_vsctl cli = {.bin = VS_VSCTL_BIN}; /* scratch: the captured outputs */

/* Run vsctl --state dir on the NULL-ended arguments, bounded by timeout_ms. */
static void vsctl_in(const char *dir, int timeout_ms, struct vs_run *r, const char *const *args)
{
    cli.state = dir;
    vs_vsctl_run(&cli, r, timeout_ms, NULL, args);
}

#define vsctl(r, timeout_ms, ...) vsctl_in(state, timeout_ms, r, VS_ARGS(__VA_ARGS__))

static void state_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", state, name);
}

static pid_t state_pid(const char *name)
{
    char path[400];
    state_path(path, sizeof(path), name);
    char *text = vs_slurp(path);
    pid_t pid = text != NULL ? (pid_t)atoi(text) : 0;
    free(text);
    return pid;
}

static bool file_exists(const char *name)
{
    char path[400];
    state_path(path, sizeof(path), name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Gone: no such process, or a zombie (reaped here when it is ours). */
static bool gone(pid_t pid)
{
    if (pid <= 0)
        return true;
    int status;
    waitpid(pid, &status, WNOHANG);
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char st[64];
    return vs_proc_status_field(pid, "State", st, sizeof(st)) == 0 && st[0] == 'Z';
}

static bool wait_gone(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (gone(pid))
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static void reap_orphans(void)
{
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0) {
    }
}

/* testd's row of `vsctl status --json`: pid (0 when absent) etc. */
struct testd_row {
    int exit;
    json_int_t pid;
    bool narrowed;
    char state[32];
};

static void status_testd(struct testd_row *row)
{
    struct vs_run r;
    vsctl(&r, 10000, "status", "--json");
    memset(row, 0, sizeof(*row));
    row->exit = r.status;
    json_t *doc = json_loads(r.out, 0, NULL);
    json_t *daemons = json_object_get(doc, "daemons");
    size_t i;
    json_t *d;
    json_array_foreach(daemons, i, d) {
        if (strcmp(json_string_value(json_object_get(d, "component")), "testd") != 0)
            continue;
        row->pid = json_integer_value(json_object_get(d, "pid"));
        row->narrowed = json_is_true(json_object_get(d, "narrowed"));
        snprintf(row->state, sizeof(row->state), "%s",
                 json_string_value(json_object_get(d, "state")));
    }
    json_decref(doc);
    vs_run_free(&r);
}

/* ---- the stack, shared by the group ----------------------------------------------- */

static void stack_cleanup(void)
{
    if (state == NULL)
        return;
    pid_t sup = state_pid("supervisor.pid");
    pid_t nats = state_pid("run/nats-server.pid");
    pid_t testd = state_pid("run/testd.pid");
    if (sup > 0 && !gone(sup)) {
        struct vs_run r;
        vsctl(&r, 35000, "down");
        vs_run_free(&r);
    }
    pid_t pids[] = {testd, nats, sup};
    for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        if (!gone(pids[i])) {
            kill(pids[i], SIGKILL);
            wait_gone(pids[i], 2000);
        }
    }
    reap_orphans();
    vs_rmtree(state);
    free(state);
    state = NULL;
}

static int stack_setup(void **unused)
{
    (void)unused;
    state = vs_scratch_dir("vs-vsctl-state");
    if (state == NULL)
        return -1;
    char etc[400], extra[400];
    state_path(etc, sizeof(etc), "etc");
    mkdir(etc, 0700);
    state_path(extra, sizeof(extra), "etc/testd.extra.yaml");
    if (vs_write_file(extra, "testd:\n  effects: %s/testd.effects\n", state) < 0)
        return -1;

    char daemon[400];
    snprintf(daemon, sizeof(daemon), "testd=%s", VS_TESTD_BIN);
    struct vs_run r;
    vsctl(&r, 40000, "up", "--port", "0", "--daemon", daemon);
    snprintf(up_output, sizeof(up_output), "%s", r.out);
    int ok = r.status == 0;
    if (!ok)
        fprintf(stderr, "vsctl up failed (%d): %s%s\n", r.status, r.out, r.err);
    vs_run_free(&r);
    if (!ok) {
        stack_cleanup();
        return -1;
    }
    return 0;
}

static int stack_teardown(void **unused)
{
    (void)unused;
    stack_cleanup();
    return 0;
}

/* ---- without a stack --------------------------------------------------------------- */

static void test_help_and_usage(void **unused)
{
    (void)unused;
    static const char *const cmds[][4] = {
        {"up", "--help", NULL},         {"down", "--help", NULL},
        {"status", "--help", NULL},     {"pub", "--help", NULL},
        {"sub", "--help", NULL},        {"audit", "tail", "--help"},
        {"audit", "emit", "--help"},    {"subjects", "--help", NULL},
        {"seal", "--help", NULL},       {"unseal", "--help", NULL},
    };
    char *dir = vs_scratch_dir("vs-vsctl-help");
    assert_non_null(dir);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct vs_run r;
        vsctl_in(dir, 5000, &r, cmds[i]);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, "usage: vsctl"));
        vs_run_free(&r);
    }
    struct vs_run r;
    vsctl_in(dir, 5000, &r, VS_ARGS("status", "--bogus"));
    assert_int_equal(r.status, 2);
    vs_run_free(&r);
    vsctl_in(dir, 5000, &r, VS_ARGS("frobnicate"));
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "unknown command"));
    vs_run_free(&r);
    vs_rmtree(dir);
    free(dir);
}

/* keys init-box, seal and unseal without a stack: a payload sealed to a
 * box key opens with that key alone, to the same bytes. */
static void test_seal_unseal(void **unused)
{
    (void)unused;
    char *dir = vs_scratch_dir("vs-vsctl-seal");
    assert_non_null(dir);
    char key[400], other[400], plain[400], sealed[400];
    snprintf(key, sizeof key, "%s/pool.key", dir);
    snprintf(other, sizeof other, "%s/other.key", dir);
    snprintf(plain, sizeof plain, "%s/plain.txt", dir);
    snprintf(sealed, sizeof sealed, "%s/sealed.json", dir);
    static const char text[] = "the task: summarize the report\n";
    assert_int_equal(vs_write_file(plain, "%s", text), 0);
    struct vs_run r;
    vsctl_in(dir, 5000, &r, VS_ARGS("keys", "init-box", key));
    vs_vsctl_expect(&r, 0, NULL);
    char pk[65] = "";
    snprintf(pk, sizeof pk, "%s", r.out);
    assert_int_equal(strlen(pk), 64);
    vs_run_free(&r);
    vsctl_in(dir, 5000, &r, VS_ARGS("keys", "init-box", key));
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "never overwritten"));
    vs_run_free(&r);
    vsctl_in(dir, 5000, &r, VS_ARGS("keys", "init-box", other));
    vs_vsctl_expect(&r, 0, NULL);
    vs_run_free(&r);
    cli.state = dir;
    vs_vsctl_run(&cli, &r, 5000, sealed, VS_ARGS("seal", "--to", pk, plain));
    vs_vsctl_expect(&r, 0, NULL);
    vs_run_free(&r);
    char *json = vs_slurp(sealed);
    assert_non_null(json);
    assert_null(strstr(json, "summarize")); /* no plaintext in the sealed form */
    assert_non_null(strstr(json, "\"ciphertext\""));
    free(json);
    vsctl_in(dir, 5000, &r, VS_ARGS("unseal", "--key", key, sealed));
    vs_vsctl_expect(&r, 0, NULL);
    assert_string_equal(r.out, text);
    vs_run_free(&r);
    vsctl_in(dir, 5000, &r, VS_ARGS("unseal", "--key", other, sealed));
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "does not open"));
    vs_run_free(&r);
    vsctl_in(dir, 5000, &r, VS_ARGS("seal", "--to", "abcd", plain));
    assert_int_equal(r.status, 2);
    vs_run_free(&r);
    vs_rmtree(dir);
    free(dir);
}

static void test_nothing_up(void **unused)
{
    (void)unused;
    char *dir = vs_scratch_dir("vs-vsctl-empty");
    assert_non_null(dir);
    /* A port nobody listens on, so a server on 4222 cannot interfere. */
    char url[64];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", vs_free_port());
    struct vs_run r;
    vsctl_in(dir, 10000, &r, VS_ARGS("status", "--url", url));
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "cannot reach the bus"));
    int lines = 0;
    for (const char *p = r.err; *p != '\0'; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1); /* one clear line */
    vs_run_free(&r);
    vsctl_in(dir, 10000, &r, VS_ARGS("down"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "not running"));
    vs_run_free(&r);
    vs_rmtree(dir);
    free(dir);
}

/* ---- with the stack ----------------------------------------------------------------- */

static void test_up_summary_and_already_up(void **unused)
{
    (void)unused;
    assert_non_null(strstr(up_output, "stack up in"));
    assert_non_null(strstr(up_output, "testd"));
    assert_non_null(strstr(up_output, "narrowed"));
    assert_true(file_exists("nats.url"));
    assert_true(file_exists("etc/testd.yaml"));
    assert_true(state_pid("supervisor.pid") > 0);
    struct vs_run r;
    vsctl(&r, 10000, "up", "--port", "0");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "already up"));
    vs_run_free(&r);
}

static void test_status_running(void **unused)
{
    (void)unused;
    struct testd_row row;
    status_testd(&row);
    assert_int_equal(row.exit, 0);
    assert_true(row.pid > 0);
    assert_true(row.narrowed);
    assert_string_equal(row.state, "running");
    assert_int_equal(row.pid, state_pid("run/testd.pid"));
    struct vs_run r;
    vsctl(&r, 10000, "status");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "testd"));
    assert_non_null(strstr(r.out, "running"));
    assert_non_null(strstr(r.out, "reachable"));
    vs_run_free(&r);
}

static void test_restart_after_kill(void **unused)
{
    (void)unused;
    struct testd_row before, after = {0};
    status_testd(&before);
    assert_true(before.pid > 0);
    assert_int_equal(kill((pid_t)before.pid, SIGKILL), 0);
    for (int waited = 0; waited < 10000; waited += 300) {
        usleep(300 * 1000);
        status_testd(&after);
        if (after.exit == 0 && after.pid > 0 && after.pid != before.pid)
            break;
    }
    assert_int_equal(after.exit, 0);
    assert_true(after.pid > 0);
    assert_true(after.pid != before.pid);
    char log[400];
    state_path(log, sizeof(log), "logs/supervisor.log");
    assert_true(vs_file_count(log, "killed by signal 9") >= 1);
    assert_true(vs_file_count(log, "restarting testd") >= 1);
}

static void test_audit_emit_then_tail(void **unused)
{
    (void)unused;
    struct vs_run r;
    vsctl(&r, 15000, "audit", "emit", "--category", "vsctltest", "--severity", "notice", "--event",
          "probe", "--agent", "a1", "k1=v1", "k2=two words");
    assert_int_equal(r.status, 0);
    char id[64] = "";
    sscanf(r.out, "%63s", id);
    assert_int_equal(strlen(id), 32);
    vs_run_free(&r);

    vsctl(&r, 15000, "audit", "tail", "--category", "vsctltest", "--last", "5", "--count", "1",
          "--timeout", "5");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "vsctltest/probe"));
    assert_non_null(strstr(r.out, "comp=vsctl"));
    assert_non_null(strstr(r.out, "agent=a1"));
    assert_non_null(strstr(r.out, "k2=\"two words\""));
    vs_run_free(&r);

    vsctl(&r, 15000, "audit", "tail", "--category", "vsctltest", "--last", "5", "--count", "1",
          "--timeout", "5", "--json", "--min-severity", "notice");
    assert_int_equal(r.status, 0);
    json_t *ev = json_loads(r.out, 0, NULL);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "probe");
    assert_string_equal(json_string_value(json_object_get(ev, "severity")), "SEVERITY_NOTICE");
    json_decref(ev);
    vs_run_free(&r);

    /* Filtered out by severity: nothing within the timeout. */
    vsctl(&r, 15000, "audit", "tail", "--category", "vsctltest", "--last", "5", "--count", "1",
          "--timeout", "1", "--min-severity", "error");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    vs_run_free(&r);
}

static void test_pub_sub_heartbeat(void **unused)
{
    (void)unused;
    const char *args[] = {"sub", "vs.agent.a1.heartbeat", "--count", "1", "--timeout", "10",
                          "--json", NULL};
    char out[VS_TEST_PATH_MAX], err[VS_TEST_PATH_MAX];
    cli.state = state;
    pid_t sub = vs_vsctl_start(&cli, args, NULL, out, err);
    assert_true(sub > 0);
    /* Publish only once the subscription is live. */
    assert_int_equal(vs_wait_file_contains(err, "listening on", 5000), 0);
    struct vs_run r;
    vsctl(&r, 10000, "pub", "vs.agent.a1.heartbeat",
          "{\"type\":\"COMMAND_HEARTBEAT\",\"agent\":\"a1\",\"heartbeat\":{\"sequence\":5}}");
    assert_int_equal(r.status, 0);
    vs_run_free(&r);
    struct vs_run s;
    vs_vsctl_finish(&cli, sub, 12000, out, err, &s);
    assert_int_equal(s.status, 0);
    json_t *line = json_loads(s.out, 0, NULL);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "subject")), "vs.agent.a1.heartbeat");
    json_t *msg = json_object_get(line, "message");
    assert_string_equal(json_string_value(json_object_get(msg, "agent")), "a1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(msg, "heartbeat"), "sequence")), 5);
    json_decref(line);
    vs_run_free(&s);
}

static void test_pub_jetstream(void **unused)
{
    (void)unused;
    const char *body = "{\"stage\":\"vsctl-test\",\"status\":{\"code\":\"STATUS_DENIED\"}}";
    struct vs_run r;
    vsctl(&r, 10000, "pub", "vs.task.rejected", body, "--msg-id", "vsctl-test-1");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "stored in TASKS seq "));
    assert_null(strstr(r.out, "duplicate"));
    vs_run_free(&r);
    vsctl(&r, 10000, "pub", "vs.task.rejected", body, "--msg-id", "vsctl-test-1");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "stored in TASKS seq "));
    assert_non_null(strstr(r.out, "(duplicate)"));
    vs_run_free(&r);
}

static void test_pub_refusals(void **unused)
{
    (void)unused;
    struct vs_run r;
    vsctl(&r, 10000, "pub", "vs.task.rejected", "{\"stage\":\"x\",\"stagez\":\"typo\"}");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "stagez"));
    assert_string_equal(r.out, "");
    vs_run_free(&r);
    vsctl(&r, 10000, "pub", "vs.not.a.subject", "{}");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "vsctl subjects"));
    vs_run_free(&r);
    vsctl(&r, 10000, "pub", "vs.agent.*.heartbeat", "{}");
    assert_int_equal(r.status, 1);
    vs_run_free(&r);
}

static void test_request_reply(void **unused)
{
    (void)unused;
    struct vs_run r;
    vsctl(&r, 10000, "pub", "vs.sys.health.testd", "{}");
    assert_int_equal(r.status, 0);
    json_t *reply = json_loads(r.out, 0, NULL);
    assert_non_null(reply);
    assert_string_equal(json_string_value(json_object_get(reply, "component")), "testd");
    json_decref(reply);
    vs_run_free(&r);
}

static void test_subjects(void **unused)
{
    (void)unused;
    struct vs_run r;
    vsctl(&r, 5000, "subjects");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "vs.task.submit"));
    assert_non_null(strstr(r.out, "jetstream"));
    vs_run_free(&r);
    vsctl(&r, 5000, "subjects", "--markdown");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "| `vs.task.submit` |"));
    vs_run_free(&r);
}

static void test_down_stops_everything(void **unused)
{
    (void)unused;
    pid_t sup = state_pid("supervisor.pid");
    pid_t nats = state_pid("run/nats-server.pid");
    struct testd_row row;
    status_testd(&row);
    assert_true(sup > 0);
    assert_true(nats > 0);
    assert_true(row.pid > 0);
    char url[128];
    char path[400];
    state_path(path, sizeof(path), "nats.url");
    char *text = vs_slurp(path);
    snprintf(url, sizeof(url), "%.*s", (int)strcspn(text, "\n"), text);
    free(text);

    struct vs_run r;
    vsctl(&r, 35000, "down");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "stopped"));
    assert_non_null(strstr(r.out, "testd"));
    vs_run_free(&r);
    assert_true(wait_gone(sup, 5000));
    assert_true(wait_gone(nats, 5000));
    assert_true(wait_gone((pid_t)row.pid, 5000));
    assert_false(file_exists("supervisor.pid"));
    assert_false(file_exists("nats.url"));

    vsctl(&r, 10000, "down");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "not running"));
    vs_run_free(&r);

    /* The stack's own URL no longer answers. */
    vsctl(&r, 10000, "status", "--url", url);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "cannot reach the bus"));
    vs_run_free(&r);
}

int main(void)
{
    /* The supervisor is orphaned when `vsctl up` exits: adopt it, so that
     * it is reaped here and a test can tell it is gone. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    char *scratch = vs_scratch_dir("vs-vsctl-out");
    if (scratch == NULL)
        return 1;
    cli.scratch = scratch;
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_help_and_usage),
        cmocka_unit_test(test_seal_unseal),
        cmocka_unit_test(test_nothing_up),
    };
    const struct CMUnitTest stack[] = {
        cmocka_unit_test(test_up_summary_and_already_up),
        cmocka_unit_test(test_status_running),
        cmocka_unit_test(test_restart_after_kill),
        cmocka_unit_test(test_audit_emit_then_tail),
        cmocka_unit_test(test_pub_sub_heartbeat),
        cmocka_unit_test(test_pub_jetstream),
        cmocka_unit_test(test_pub_refusals),
        cmocka_unit_test(test_request_reply),
        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_down_stops_everything),
    };
    int failed = cmocka_run_group_tests_name("vsctl without a stack", alone, NULL, NULL);
    failed += cmocka_run_group_tests_name("vsctl with a stack", stack, stack_setup, stack_teardown);
    vs_rmtree(scratch);
    free(scratch);
    return failed != 0;
}
