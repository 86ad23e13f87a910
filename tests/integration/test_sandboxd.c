/*
 * test_sandboxd.c - vs-sandboxd on a real nats-server, running real
 * sandboxes with tests/fixtures/vs-test-agent (bound read-only at /opt/vs)
 * as the agent; the task's payload, on the agent's stdin, names what the
 * agent does.
 *
 * Checked, each through what comes out on the bus (the TaskOutput on
 * vs.task.output, its snapshot opened with the scanner key, its signed
 * attestation, the agent's heartbeats on vs.agent.<agent>.heartbeat):
 *   - a task runs, completes, and its snapshot holds what it wrote; the
 *     attestation verifies and names the task and the image;
 *   - a heartbeat that names another agent and task is published under
 *     the task's own agent and id;
 *   - an agent that never beats is killed by the watchdog;
 *   - REQUEST_MEMORY within the policy's maximum and beyond it;
 *   - a frame that is no AgentCommand is answered INVALID (the agent
 *     carries on); a frame announcing more than the maximum size ends
 *     the sandbox;
 *   - a symlink in out/ to a host file is not followed;
 *   - an output of 5 MiB arrives whole (a blob);
 *   - a task longer than the consumer's ack wait is launched once;
 *   - sandboxd killed mid-task: the task is redelivered to the restarted
 *     daemon and ends once (one TaskOutput).
 * Tasks are admitted one at a time here; many at once is what
 * tools/bench/sandboxd does (it found the launcher's init waiting forever in
 * glibc's setresuid, which signals a threaded process's other threads).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/attestation.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/pbjson.h"
#include "vs/keys.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define WAIT_MS 30000
#define KEPT 64
#define AGENT "agent-under-test"

struct fixture {
    struct vs_busfix base;
    char *dir;
    struct vs_daemon sandboxd;
    vs_boxkey *launcher, *scanner, *requester;
    uint8_t node_pk[VS_SIGN_PUBLICKEY_LEN];
    vs_consumer *output_reader;
    vs_sub *heartbeats;
    Vs__V1__TaskOutput *outputs[KEPT];
    size_t noutputs;
    char heartbeat_agents[KEPT][80];
    uint8_t heartbeat_tasks[KEPT][VS_ID_LEN];
    size_t nheartbeats;
};

static int on_output(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    assert_true(f->noutputs < KEPT);
    f->outputs[f->noutputs++] = (Vs__V1__TaskOutput *)vs_test_copy(vs_msg_body(m));
    return 0;
}

static int on_heartbeat(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    const Vs__V1__AgentCommand *c = (const Vs__V1__AgentCommand *)vs_msg_body(m);
    if (f->nheartbeats < KEPT && c->task_id.len == VS_ID_LEN) {
        snprintf(f->heartbeat_agents[f->nheartbeats], sizeof f->heartbeat_agents[0], "%s:%s",
                 vs_msg_subject(m), c->agent);
        memcpy(f->heartbeat_tasks[f->nheartbeats], c->task_id.data, VS_ID_LEN);
        f->nheartbeats++;
    }
    return 0;
}

static bool answers(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct fixture *f = arg;
    static const char *const names[] = {"launched"};
    uint64_t v;
    return vs_test_counters(f->base.bus, "sandboxd", names, &v, 1, 300) >= 0;
}

static uint64_t counter(struct fixture *f, const char *name)
{
    const char *names[] = {name};
    uint64_t v = 0;
    assert_true(vs_test_counters(f->base.bus, "sandboxd", names, &v, 1, 5000) >= 0);
    return v;
}

static int setup(void **state)
{
    assert_int_equal(vs_crypto_init(), 0);
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    vs_busfix_init(&f->base, 0);
    f->dir = vs_scratch_dir("vs-sandboxd");
    assert_non_null(f->dir);
    assert_int_equal(vs_boxkey_new(&f->launcher), 0);
    assert_int_equal(vs_boxkey_new(&f->scanner), 0);
    assert_int_equal(vs_boxkey_new(&f->requester), 0);
    vs_signkey *node = NULL;
    assert_int_equal(vs_signkey_new(&node), 0);
    memcpy(f->node_pk, vs_signkey_public(node), VS_SIGN_PUBLICKEY_LEN);
    char *launcher_file = vs_path(f->dir, "launcher.key"), *node_file = vs_path(f->dir, "node.key");
    assert_int_equal(vs_boxkey_save(f->launcher, launcher_file), 0);
    assert_int_equal(vs_signkey_save(node, node_file), 0);
    vs_signkey_free(node);
    char scanner_hex[2 * VS_BOX_PUBLICKEY_LEN + 1], agent_dir[VS_TEST_PATH_MAX];
    sodium_bin2hex(scanner_hex, sizeof scanner_hex, vs_boxkey_public(f->scanner), VS_BOX_PUBLICKEY_LEN);
    snprintf(agent_dir, sizeof agent_dir, "%s", VS_TEST_AGENT_BIN);
    *strrchr(agent_dir, '/') = '\0';
    vs_daemon_init(&f->sandboxd, VS_SANDBOXD_BIN, f->dir, "sandboxd");
    assert_int_equal(vs_write_file(f->sandboxd.cfg,
                                   "nats:\n  url: %s\nlog:\n  level: debug\nshutdown_timeout: 5s\n"
                                   "sandboxd:\n  launcher_key: %s\n  scanner_key: \"%s\"\n"
                                   "  node_key: %s\n  command: [/opt/vs/vs-test-agent, \"-\"]\n"
                                   "  binds: [\"%s:/opt/vs\"]\n  heartbeat_timeout: 10s\n"
                                   "  complete_grace: 1s\n  ack_wait: 2s\n  max_memory: 512MiB\n"
                                   "  default_memory: 128MiB\n",
                                   f->base.nats.url, launcher_file, scanner_hex, node_file, agent_dir),
                     0);
    free(launcher_file);
    free(node_file);
    assert_int_equal(vs_js_read(f->base.bus, "TASKS", "vs.task.output", 0, 0,
                                &vs__v1__task_output__descriptor, on_output, f, &f->output_reader),
                     0);
    assert_int_equal(vs_bus_subscribe(f->base.bus, "vs.agent.*.heartbeat", NULL,
                                      &vs__v1__agent_command__descriptor, on_heartbeat, f,
                                      &f->heartbeats),
                     0);
    vs_daemon_start(&f->sandboxd, f->base.bus, answers, f, WAIT_MS, 50);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vs_daemon_stop(&f->sandboxd, 10000), 0);
    vs_consumer_free(f->output_reader);
    vs_sub_free(f->heartbeats);
    vs_busfix_fini(&f->base);
    for (size_t i = 0; i < f->noutputs; i++)
        vs__v1__task_output__free_unpacked(f->outputs[i], NULL);
    vs_boxkey_free(f->launcher);
    vs_boxkey_free(f->scanner);
    vs_boxkey_free(f->requester);
    vs_scratch_free(f->dir);
    free(f);
    return 0;
}

/* ---- tasks ------------------------------------------------------------------------ */

/* Admit a task whose payload (the agent's stdin) is `what`; its id into task. */
static void admit(struct fixture *f, const char *what, uint8_t task[VS_ID_LEN])
{
    vs_id_new(task);
    size_t n = strlen(what);
    uint8_t *sealed = malloc(n + VS_SEAL_OVERHEAD), kid[VS_KEY_ID_LEN];
    assert_non_null(sealed);
    assert_int_equal(vs_seal(vs_boxkey_public(f->launcher), what, n, sealed), 0);
    vs_key_id(vs_boxkey_public(f->launcher), VS_BOX_PUBLICKEY_LEN, kid);
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    p.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
    p.ciphertext = (ProtobufCBinaryData){n + VS_SEAL_OVERHEAD, sealed};
    Vs__V1__TaskSubmit t = VS__V1__TASK_SUBMIT__INIT;
    t.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    t.requester = "req-1";
    t.agent = AGENT;
    t.payload = &p;
    t.requester_box_key = (ProtobufCBinaryData){VS_BOX_PUBLICKEY_LEN,
                                                (uint8_t *)vs_boxkey_public(f->requester)};
    Vs__V1__TaskAdmitted a = VS__V1__TASK_ADMITTED__INIT;
    a.task = &t;
    char hex[VS_ID_HEX_LEN], id[VS_ID_HEX_LEN + 8];
    vs_hex(task, VS_ID_LEN, hex);
    snprintf(id, sizeof id, "%s.adm", hex);
    assert_int_equal(vs_js_publish(f->base.bus, "vs.task.admitted", &a.base, id, NULL, NULL), 0);
    free(sealed);
}

/* The task's output (waited for); fails without one. */
static const Vs__V1__TaskOutput *output_of(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    for (int waited = 0; waited < WAIT_MS; waited += 20) {
        for (size_t i = 0; i < f->noutputs; i++)
            if (f->outputs[i]->task_id.len == VS_ID_LEN &&
                memcmp(f->outputs[i]->task_id.data, task, VS_ID_LEN) == 0)
                return f->outputs[i];
        vs_test_idle(f->base.bus, 20);
    }
    vs_daemon_dump_log(&f->sandboxd);
    fail_msg("no TaskOutput for the task");
    return NULL;
}

static size_t outputs_for(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    size_t n = 0;
    for (size_t i = 0; i < f->noutputs; i++)
        n += memcmp(f->outputs[i]->task_id.data, task, VS_ID_LEN) == 0;
    return n;
}

/* The snapshot opened with the scanner key (malloc'd ustar). */
static uint8_t *snapshot_of(struct fixture *f, const Vs__V1__TaskOutput *o, size_t *len)
{
    uint8_t *data = NULL;
    assert_non_null(o->snapshot);
    assert_int_equal(vs_test_open_payload(f->base.bus, o->snapshot, f->scanner, 64u << 20, WAIT_MS,
                                          &data, len), 0);
    return data;
}

/* A file of a ustar stream (the last of that name), or NULL. */
static const uint8_t *tar_file(const uint8_t *tar, size_t len, const char *name, size_t *size)
{
    const uint8_t *found = NULL;
    for (size_t off = 0; off + 512 <= len && tar[off] != 0;) {
        size_t sz = (size_t)strtoull((const char *)tar + off + 124, NULL, 8);
        if (strncmp((const char *)tar + off, name, 100) == 0) {
            found = tar + off + 512;
            *size = sz;
        }
        off += 512 + (sz + 511) / 512 * 512;
    }
    return found;
}

static char *seen_of(struct fixture *f, const Vs__V1__TaskOutput *o)
{
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, o, &len);
    const uint8_t *seen = tar_file(tar, len, "seen.txt", &size);
    char *text = strndup(seen != NULL ? (const char *)seen : "", seen != NULL ? size : 0);
    free(tar);
    return text;
}

/* ---- the tests ---------------------------------------------------------------------- */

static void test_task_runs(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "trivial\n", task);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_int_equal(o->exit_code, 0);
    assert_true(o->completed);
    assert_int_equal(o->kill_reason, VS__V1__KILL_REASON__KILL_REASON_NONE);
    assert_string_equal(o->agent, AGENT);
    assert_string_equal(o->requester, "req-1");
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, o, &len);
    const uint8_t *result = tar_file(tar, len, "result.txt", &size);
    assert_non_null(result);
    assert_int_equal(size, 3);
    assert_memory_equal(result, "ok\n", 3);
    free(tar);
    /* the attestation */
    const Vs__V1__Attestation *a = o->attestation;
    assert_non_null(a);
    assert_int_equal(vs_attestation_verify(a), 0);
    assert_memory_equal(a->node_key.data, f->node_pk, VS_SIGN_PUBLICKEY_LEN);
    assert_memory_equal(a->task_id.data, task, VS_ID_LEN);
    assert_string_equal(a->image_digest, "host");
    Vs__V1__Attestation forged = *a;
    forged.image_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(vs_attestation_verify(&forged), -EBADMSG);

    /* vsctl attest verify, on the TaskOutput as JSON, and on a forged one */
    char node_hex[2 * VS_SIGN_PUBLICKEY_LEN + 1], task_hex[VS_ID_HEX_LEN];
    sodium_bin2hex(node_hex, sizeof node_hex, f->node_pk, VS_SIGN_PUBLICKEY_LEN);
    vs_hex(task, VS_ID_LEN, task_hex);
    json_t *j = vs_pb_to_json(&o->base);
    char *good = vs_path(f->dir, "output.json"), *bad = vs_path(f->dir, "forged.json");
    assert_int_equal(json_dump_file(j, good, 0), 0);
    json_object_set_new(json_object_get(j, "attestation"), "image_digest", json_string("other"));
    assert_int_equal(json_dump_file(j, bad, 0), 0);
    json_decref(j);
    struct vs_vsctl cli = {.bin = VS_VSCTL_BIN, .state = f->dir, .url = f->base.nats.url,
                           .scratch = f->dir, .bus = f->base.bus};
    vs_vsctl_check(&cli, WAIT_MS, 0, "signature: valid",
                   VS_ARGS("attest", "verify", "--node-key", node_hex, "--task", task_hex, good));
    vs_vsctl_check(&cli, WAIT_MS, 1, NULL, VS_ARGS("attest", "verify", bad));
    vs_vsctl_check(&cli, WAIT_MS, 1, NULL,
                   VS_ARGS("attest", "verify", "--node-key", "00", good));
    free(good);
    free(bad);
}

static void test_forged_ids_are_restamped(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "forge\n", task);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_int_equal(o->exit_code, 0);
    bool own = false;
    for (size_t i = 0; i < f->nheartbeats; i++) {
        assert_null(strstr(f->heartbeat_agents[i], "victim"));
        if (memcmp(f->heartbeat_tasks[i], task, VS_ID_LEN) == 0) {
            own = true;
            assert_string_equal(f->heartbeat_agents[i], "vs.agent." AGENT ".heartbeat:" AGENT);
        }
    }
    assert_true(own);
}

static void test_watchdog(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "silent 60\n", task);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_int_equal(o->kill_reason, VS__V1__KILL_REASON__KILL_REASON_WATCHDOG);
    assert_false(o->completed);
    assert_true(o->wall_time_ms < 30000);
}

static void test_memory(void **state)
{
    struct fixture *f = *state;
    uint8_t inside[VS_ID_LEN], beyond[VS_ID_LEN];
    admit(f, "memory 268435456\n", inside); /* 256 MiB: within 512 */
    char *seen = seen_of(f, output_of(f, inside));
    if (strncmp(seen, "granted ", 8) != 0)
        assert_string_equal(seen, "denied the task runs on rlimits alone: its memory limit cannot change\n");
    else
        assert_string_equal(seen, "granted 268435456\n");
    free(seen);
    admit(f, "memory 1073741824\n", beyond); /* 1 GiB: beyond */
    seen = seen_of(f, output_of(f, beyond));
    assert_string_equal(seen, "denied above the policy's maximum\n");
    free(seen);
}

static void test_bad_frames(void **state)
{
    struct fixture *f = *state;
    uint8_t garbage[VS_ID_LEN], oversized[VS_ID_LEN];
    uint64_t invalid = counter(f, "invalid_frames");
    admit(f, "garbage\n", garbage);
    const Vs__V1__TaskOutput *o = output_of(f, garbage);
    assert_true(o->completed);
    char *seen = seen_of(f, o);
    assert_string_equal(seen, "garbage INVALID\n");
    free(seen);
    admit(f, "oversized\n", oversized);
    o = output_of(f, oversized);
    assert_false(o->completed);
    assert_int_not_equal(o->kill_reason, VS__V1__KILL_REASON__KILL_REASON_NONE);
    assert_int_equal(counter(f, "invalid_frames"), invalid + 2);
}

static void test_symlink_not_followed(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "symlink\n", task);
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, output_of(f, task), &len);
    assert_non_null(tar_file(tar, len, "real.txt", &size));
    assert_null(tar_file(tar, len, "passwd", &size));
    assert_null(memmem(tar, len, "root:x:0:0", 10));
    free(tar);
}

static void test_large_output(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "output 5242880\n", task);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_non_null(o->snapshot->blob); /* above a message: a blob */
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, o, &len);
    const uint8_t *big = tar_file(tar, len, "big.bin", &size);
    assert_non_null(big);
    assert_int_equal(size, 5242880);
    for (size_t i = 0; i < size; i++)
        if (big[i] != (uint8_t)('a' + i % 26))
            fail_msg("byte %zu differs", i);
    free(tar);
}

static void test_longer_than_ack_wait(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    uint64_t launched = counter(f, "launched");
    admit(f, "beating 5\n", task); /* 5 s against an ack wait of 2 s */
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_true(o->completed);
    vs_test_idle(f->base.bus, 500);
    assert_int_equal(counter(f, "launched"), launched + 1);
    assert_int_equal(outputs_for(f, task), 1);
}

static void test_crash_redelivers_once(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    uint64_t launched = counter(f, "launched");
    admit(f, "beating 3\n", task);
    for (int waited = 0; counter(f, "launched") == launched; waited += 100) {
        assert_true(waited < WAIT_MS);
        vs_test_idle(f->base.bus, 100);
    }
    vs_daemon_kill(&f->sandboxd); /* mid-task */
    vs_daemon_start(&f->sandboxd, f->base.bus, answers, f, WAIT_MS, 50);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_true(o->completed);
    vs_test_idle(f->base.bus, 3000); /* a second output would have come by now */
    assert_int_equal(outputs_for(f, task), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_runs),
        cmocka_unit_test(test_forged_ids_are_restamped),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_symlink_not_followed),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_longer_than_ack_wait),
        cmocka_unit_test(test_crash_redelivers_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
