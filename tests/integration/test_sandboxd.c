/*
 * test_sandboxd.c - vs-sandboxd on a real nats-server, running real
 * sandboxes with tests/fixtures/vs-test-agent as the agent; the task's
 * payload, on the agent's stdin, names what the agent does. The suite runs
 * once per backend (`test_sandboxd --backend native|podman`, two ctest
 * tests): natively the agent is bound read-only at /opt/vs over the host's
 * file system; under Podman every task names a signed image that holds it
 * (static, with the SDK's reference agent beside it), and podman and runc
 * are required (CI installs them; without them this FAILS and says so).
 *
 * Checked, each through what comes out on the bus (the TaskOutput on
 * vs.task.output, its snapshot opened with the scanner key, its signed
 * attestation, the agent's heartbeats on vs.agent.<agent>.heartbeat):
 *   - a task runs, completes, and its snapshot holds what it wrote; the
 *     attestation verifies and names the task and the image;
 *   - a heartbeat that names another agent and task is published under
 *     the task's own agent and id;
 *   - an agent that never beats is killed by the watchdog;
 *   - REQUEST_MEMORY within the policy's maximum and beyond it, and DENIED
 *     on rlimits alone (the daemon run as nobody, natively);
 *   - STATE_SYNC put, get, a losing compare-and-set, delete and a bad key,
 *     the value stored sealed in the agent_state bucket;
 *   - a frame that is no AgentCommand is answered INVALID (the agent
 *     carries on); a frame announcing more than the maximum size ends
 *     the sandbox;
 *   - a symlink in out/ to a host file is not followed; the agent's
 *     stdout and stderr (their last 16 KiB) join the snapshot;
 *   - an output of 5 MiB arrives whole (a blob);
 *   - a task longer than the consumer's ack wait is launched once;
 *   - sandboxd killed mid-task: the task is redelivered to the restarted
 *     daemon and ends once (one TaskOutput);
 *   - images: a signed root file system and a signed OCI image layout run;
 *     a wrong digest, a key that is not trusted and a signature of another
 *     digest are refused, each with an audit alert and no run; `vs-sandbox
 *     image-digest` prints each image's digest, the one an operator signs;
 *   - the SDK's reference agent runs with the same result on both backends.
 * Tasks are admitted one at a time here; many at once is what
 * tools/bench/sandboxd does (it found the launcher's init waiting forever in
 * glibc's setresuid, which signals a threaded process's other threads).
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include <sys/stat.h>

#include "busfix.h"
#include "daemon.h"
#include "imagefix.h"
#include "proc.h"
#include "vs/attestation.h"
#include "vs/ids.h"
#include "vs/image.h"
#include "vs/js.h"
#include "vs/pbjson.h"
#include "vs/keys.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/task.pb-c.h"

#ifndef VS_REFERENCE_AGENT_BIN
#error "vs-reference-agent is not built (sdk/CMakeLists.txt)"
#endif

#define WAIT_MS 30000
#define KEPT 64
#define AGENT "agent-under-test"

#define NOBODY 65534

static bool podman; /* the backend under test: podman, else native */

/* An image as a task names it. */
struct image {
    char digest[VS_IMAGE_DIGEST_LEN];
    char *signature;
};

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
    struct vs_test_keypair trusted, untrusted;
    struct image rootfs, oci;               /* signed images under sandboxd.images */
    vs_consumer *audit_reader;
    char refusals[KEPT][300];               /* "<task hex> <reason>" of each "refused" alert */
    size_t nrefusals;
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

static int on_audit(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    const Vs__V1__AuditEvent *e = (const Vs__V1__AuditEvent *)vs_msg_body(m);
    if (strcmp(e->category, "sandbox") != 0 || strcmp(e->event, "refused") != 0 ||
        e->task_id.len != VS_ID_LEN || f->nrefusals >= KEPT)
        return 0;
    assert_int_equal(e->severity, VS__V1__SEVERITY__SEVERITY_ALERT);
    char hex[VS_ID_HEX_LEN];
    vs_hex(e->task_id.data, VS_ID_LEN, hex);
    snprintf(f->refusals[f->nrefusals++], sizeof f->refusals[0], "%s %s", hex,
             vs_test_audit_detail(e, "reason"));
    return 0;
}

static uint64_t counter(struct fixture *f, const char *name)
{
    const char *names[] = {name};
    uint64_t v = 0;
    assert_true(vs_test_counters(f->base.bus, "sandboxd", names, &v, 1, 5000) >= 0);
    return v;
}

/* The daemon with the umask vsctl's supervisor gives every daemon (027):
 * the sandboxes it builds must not inherit it. */
static void start_sandboxd(struct fixture *f)
{
    mode_t old = umask(027);
    vs_daemon_start(&f->sandboxd, f->base.bus, vs_daemon_answers_stats, f->base.bus, WAIT_MS, 50);
    umask(old);
}

/* ---- images ---------------------------------------------------------------------- */

/* The agents, static, at /opt/vs of an image; the rest are the launchers'
 * mount points. */
static const char *const image_dirs[] = {"proc", "dev", "sys", "tmp", "workspace", "etc", "opt",
                                         "opt/vs"};

/* Move the tree or layout at src to images/<hex of digest>. */
static void file_under(const char *images, const char *src, const char *digest)
{
    char *dst = vs_path(images, digest + strlen("sha256:"));
    assert_int_equal(rename(src, dst), 0);
    free(dst);
}

/* Copies of both agents in dir. */
static void put_agents(const char *dir)
{
    char *test = vs_path(dir, "vs-test-agent"), *reference = vs_path(dir, "vs-reference-agent");
    assert_int_equal(vs_copy_file(VS_TEST_AGENT_BIN, test, 0755), 0);
    assert_int_equal(vs_copy_file(VS_REFERENCE_AGENT_BIN, reference, 0755), 0);
    free(test);
    free(reference);
}

/* Both signed images in <dir>/images (returned, malloc'd): a root file
 * system, and an OCI layout (with one file more, so another digest). */
static char *make_images(struct fixture *f)
{
    assert_true(vs_test_minisign_present());
    assert_int_equal(chmod(f->dir, 0755), 0); /* the sandbox's uid reaches the images */
    vs_test_keypair_make(f->dir, "trusted", &f->trusted);
    vs_test_keypair_make(f->dir, "untrusted", &f->untrusted);
    char *images = vs_path(f->dir, "images"), *tree = vs_path(f->dir, "tree");
    char path[VS_TEST_PATH_MAX];
    assert_int_equal(mkdir(images, 0755), 0);
    assert_int_equal(mkdir(tree, 0755), 0);
    for (size_t i = 0; i < sizeof image_dirs / sizeof image_dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tree, image_dirs[i]);
        assert_int_equal(mkdir(path, 0755), 0);
    }
    char *agents = vs_path(f->dir, "agents");
    assert_int_equal(mkdir(agents, 0755), 0);
    put_agents(agents);
    snprintf(path, sizeof path, "%s/opt/vs", tree);
    put_agents(path);
    free(agents);
    assert_int_equal(vs_image_digest_dir(tree, f->rootfs.digest), 0);
    f->rootfs.signature = vs_test_sign_digest(&f->trusted, f->dir, f->rootfs.digest, "rootfs");
    file_under(images, tree, f->rootfs.digest);

    struct vs_test_member members[sizeof image_dirs / sizeof image_dirs[0] + 3];
    size_t n = 0;
    for (; n < sizeof image_dirs / sizeof image_dirs[0]; n++)
        members[n] = (struct vs_test_member){image_dirs[n], VS_MEMBER_DIR, 0755, NULL};
    members[n++] = (struct vs_test_member){"opt/vs/vs-test-agent", VS_MEMBER_HOST_FILE, 0755,
                                           VS_TEST_AGENT_BIN};
    members[n++] = (struct vs_test_member){"opt/vs/vs-reference-agent", VS_MEMBER_HOST_FILE, 0755,
                                           VS_REFERENCE_AGENT_BIN};
    members[n++] = (struct vs_test_member){"etc/os-release", VS_MEMBER_FILE, 0644,
                                           "NAME=\"an OCI image\"\n"};
    struct vs_test_layer layer = {members, n, true, false};
    char *layout = vs_test_make_layout(f->dir, "layout", &layer, 1);
    /* its digest is that of the tree it unpacks to */
    char *cache = vs_path(f->dir, "cache"), rootfs[PATH_MAX], why[256];
    assert_int_equal(mkdir(cache, 0755), 0);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs, f->oci.digest, why, sizeof why), 0);
    f->oci.signature = vs_test_sign_digest(&f->trusted, f->dir, f->oci.digest, "oci");
    file_under(images, layout, f->oci.digest);
    free(cache);
    free(layout);
    free(tree);
    return images;
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
    char scanner_hex[2 * VS_BOX_PUBLICKEY_LEN + 1], binds[VS_TEST_PATH_MAX + 32];
    sodium_bin2hex(scanner_hex, sizeof scanner_hex, vs_boxkey_public(f->scanner), VS_BOX_PUBLICKEY_LEN);
    char *images = make_images(f), *agents = vs_path(f->dir, "agents");
    /* Podman runs the agents from the image; natively they are bound over
     * the host's view (and over the image's /opt/vs, which holds the same). */
    snprintf(binds, sizeof binds, "  binds: [\"%s:/opt/vs\"]\n", agents);
    free(agents);
    vs_daemon_init(&f->sandboxd, VS_SANDBOXD_BIN, f->dir, "sandboxd");
    assert_int_equal(vs_write_file(f->sandboxd.cfg,
                                   "nats:\n  url: %s\nlog:\n  level: debug\nshutdown_timeout: 5s\n"
                                   "sandboxd:\n  launcher_key: %s\n  scanner_key: \"%s\"\n"
                                   "  node_key: %s\n  command: [/opt/vs/vs-test-agent, \"-\"]\n"
                                   "%s  heartbeat_timeout: 10s\n"
                                   "  complete_grace: 1s\n  ack_wait: 2s\n  max_memory: 512MiB\n"
                                   "  default_memory: 128MiB\n  backend: %s\n  images: %s\n"
                                   "  trusted_keys: [%s]\n",
                                   f->base.nats.url, launcher_file, scanner_hex, node_file,
                                   podman ? "" : binds, podman ? "podman" : "native", images,
                                   f->trusted.pub),
                     0);
    /* test_memory_on_rlimits runs the daemon as nobody too (root reads them still) */
    assert_int_equal(chown(launcher_file, NOBODY, NOBODY), 0);
    assert_int_equal(chown(node_file, NOBODY, NOBODY), 0);
    assert_int_equal(chmod(f->sandboxd.cfg, 0644), 0);
    free(launcher_file);
    free(node_file);
    free(images);
    assert_int_equal(vs_js_read(f->base.bus, "AUDIT", NULL, 0, 0, &vs__v1__audit_event__descriptor,
                                on_audit, f, &f->audit_reader),
                     0);
    assert_int_equal(vs_js_read(f->base.bus, "TASKS", "vs.task.output", 0, 0,
                                &vs__v1__task_output__descriptor, on_output, f, &f->output_reader),
                     0);
    assert_int_equal(vs_bus_subscribe(f->base.bus, "vs.agent.*.heartbeat", NULL,
                                      &vs__v1__agent_command__descriptor, on_heartbeat, f,
                                      &f->heartbeats),
                     0);
    start_sandboxd(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(vs_daemon_stop(&f->sandboxd, 10000), 0);
    vs_consumer_free(f->output_reader);
    vs_consumer_free(f->audit_reader);
    vs_sub_free(f->heartbeats);
    vs_busfix_fini(&f->base);
    for (size_t i = 0; i < f->noutputs; i++)
        vs__v1__task_output__free_unpacked(f->outputs[i], NULL);
    vs_boxkey_free(f->launcher);
    vs_boxkey_free(f->scanner);
    vs_boxkey_free(f->requester);
    free(f->rootfs.signature);
    free(f->oci.signature);
    vs_test_keypair_free(&f->trusted);
    vs_test_keypair_free(&f->untrusted);
    vs_scratch_free(f->dir);
    free(f);
    return 0;
}

/* ---- tasks ------------------------------------------------------------------------ */

/* Admit a task whose payload (the agent's stdin) is `what` and that names
 * image (NULL: none); its id into task. */
static void admit_image(struct fixture *f, const char *what, const struct image *image,
                        uint8_t task[VS_ID_LEN])
{
    const struct vs_test_task t = {
        .agent = AGENT,
        .requester = "req-1",
        .payload = what,
        .payload_len = strlen(what),
        .requester_box_key = vs_boxkey_public(f->requester),
        .image_digest = image != NULL ? image->digest : NULL,
        .image_signature = image != NULL ? image->signature : NULL,
    };
    assert_int_equal(vs_test_admit(f->base.bus, vs_boxkey_public(f->launcher), &t, task), 0);
}

/* A task of the backend's kind: natively on the host's file system, under
 * Podman in the signed root file system. */
static void admit(struct fixture *f, const char *what, uint8_t task[VS_ID_LEN])
{
    admit_image(f, what, podman ? &f->rootfs : NULL, task);
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

/* The task ran in its image (attested), and did what "trivial" does. */
static const Vs__V1__TaskOutput *assert_ran(struct fixture *f, const uint8_t task[VS_ID_LEN],
                                            const char *digest)
{
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_int_equal(o->exit_code, 0);
    assert_true(o->completed);
    assert_non_null(o->attestation);
    assert_string_equal(o->attestation->image_digest, digest);
    assert_int_equal(vs_attestation_verify(o->attestation), 0);
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, o, &len);
    const uint8_t *result = tar_file(tar, len, "result.txt", &size);
    assert_non_null(result);
    assert_int_equal(size, 3);
    assert_memory_equal(result, "ok\n", 3);
    free(tar);
    return o;
}

/* ---- the tests ---------------------------------------------------------------------- */

static void test_task_runs(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "trivial\n", task);
    const Vs__V1__TaskOutput *o = assert_ran(f, task, podman ? f->rootfs.digest : "host");
    assert_int_equal(o->kill_reason, VS__V1__KILL_REASON__KILL_REASON_NONE);
    assert_string_equal(o->agent, AGENT);
    assert_string_equal(o->requester, "req-1");
    /* the attestation */
    const Vs__V1__Attestation *a = o->attestation;
    assert_memory_equal(a->node_key.data, f->node_pk, VS_SIGN_PUBLICKEY_LEN);
    assert_memory_equal(a->task_id.data, task, VS_ID_LEN);
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
    if (!podman && strncmp(seen, "granted ", 8) != 0) /* podman: always a memory cgroup */
        assert_string_equal(seen, "denied the task runs on rlimits alone: its memory limit cannot change\n");
    else
        assert_string_equal(seen, "granted 268435456\n");
    free(seen);
    admit(f, "memory 1073741824\n", beyond); /* 1 GiB: beyond */
    seen = seen_of(f, output_of(f, beyond));
    assert_string_equal(seen, "denied above the policy's maximum\n");
    free(seen);
}

/* The native launcher run by an unprivileged user has no memory cgroup it
 * may write (cgroup v1 is root's; v2 without a delegated subtree): the task
 * runs on rlimits alone, and REQUEST_MEMORY is DENIED with that reason. */
static void test_memory_on_rlimits(void **state)
{
    struct fixture *f = *state;
    if (podman) {
        print_message("the rootless launcher is the native one: nothing to run under podman\n");
        return;
    }
    assert_int_equal(vs_daemon_stop(&f->sandboxd, 10000), 0); /* one consumer at a time */
    struct vs_daemon rootless;
    vs_daemon_init(&rootless, VS_SANDBOXD_BIN, f->dir, "sandboxd-rootless");
    snprintf(rootless.cfg, sizeof rootless.cfg, "%s", f->sandboxd.cfg);
    rootless.run_as = NOBODY;
    vs_daemon_start(&rootless, f->base.bus, vs_daemon_answers_stats, f->base.bus, WAIT_MS, 50);
    uint8_t task[VS_ID_LEN];
    admit(f, "memory 268435456\n", task);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    char *seen = seen_of(f, o);
    if (strcmp(seen, "denied the task runs on rlimits alone: its memory limit cannot change\n") != 0)
        vs_daemon_dump_log(&rootless);
    assert_string_equal(seen, "denied the task runs on rlimits alone: its memory limit cannot change\n");
    assert_true(o->completed);
    free(seen);
    assert_int_equal(vs_daemon_stop(&rootless, 10000), 0);
    start_sandboxd(f);
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
    start_sandboxd(f);
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_true(o->completed);
    vs_test_idle(f->base.bus, 3000); /* a second output would have come by now */
    assert_int_equal(outputs_for(f, task), 1);
}

/* The task was refused with an alert whose reason holds `why`, and did not run. */
static void assert_refused(struct fixture *f, const uint8_t task[VS_ID_LEN], const char *why)
{
    const Vs__V1__TaskOutput *o = output_of(f, task);
    assert_int_equal(o->exit_code, -1);
    assert_false(o->completed);
    assert_true(o->snapshot == NULL ||
                (o->snapshot->ciphertext.len == 0 && o->snapshot->blob == NULL));
    char hex[VS_ID_HEX_LEN];
    vs_hex(task, VS_ID_LEN, hex);
    for (int waited = 0; waited < WAIT_MS; waited += 20) {
        for (size_t i = 0; i < f->nrefusals; i++)
            if (strncmp(f->refusals[i], hex, VS_ID_HEX_LEN - 1) == 0) {
                if (strstr(f->refusals[i], why) == NULL)
                    fail_msg("refused for another reason: %s", f->refusals[i]);
                return;
            }
        vs_test_idle(f->base.bus, 20);
    }
    fail_msg("no audit alert for the refused task");
}

static void test_images(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    uint64_t launched = counter(f, "launched");
    admit_image(f, "trivial\n", &f->rootfs, task);
    assert_ran(f, task, f->rootfs.digest);
    admit_image(f, "trivial\n", &f->oci, task);
    assert_ran(f, task, f->oci.digest);

    /* a digest that is not the tree's: images/<its hex> is the other tree */
    struct image wrong = {.digest = "sha256:"};
    for (size_t i = 0; i < 64; i++)
        strcat(wrong.digest, "e");
    char *images = vs_path(f->dir, "images"), *alias = vs_path(images, wrong.digest + 7);
    char *target = vs_path(images, f->rootfs.digest + 7);
    assert_int_equal(symlink(target, alias), 0);
    wrong.signature = vs_test_sign_digest(&f->trusted, f->dir, wrong.digest, "wrong");
    admit_image(f, "trivial\n", &wrong, task);
    assert_refused(f, task, "digest mismatch");
    free(wrong.signature);

    /* signed by a key this launcher does not trust */
    struct image untrusted = f->rootfs;
    untrusted.signature = vs_test_sign_digest(&f->untrusted, f->dir, f->rootfs.digest, "rogue");
    admit_image(f, "trivial\n", &untrusted, task);
    assert_refused(f, task, "untrusted key");
    free(untrusted.signature);

    /* a trusted signature, of another image */
    struct image swapped = f->rootfs;
    swapped.signature = f->oci.signature;
    admit_image(f, "trivial\n", &swapped, task);
    assert_refused(f, task, "does not verify");
    assert_int_equal(counter(f, "launched"), launched + 2);
    free(images);
    free(alias);
    free(target);
}

/* vs-sandbox image-digest, what an operator signs: the digest of each image. */
static void image_digest_cli(struct fixture *f, const struct image *image, const char *cache,
                             int status, const char *out_want)
{
    char *images = vs_path(f->dir, "images"), *path = vs_path(images, image->digest + 7);
    char *out = vs_path(f->dir, "cli.out"), *err = vs_path(f->dir, "cli.err");
    const char *argv[] = {VS_SANDBOX_BIN, "image-digest", "--cache", cache, path, NULL};
    if (cache == NULL) { /* no --cache */
        argv[2] = path;
        argv[3] = NULL;
    }
    struct vs_spawn sp = {.argv = argv, .out = out, .err = err};
    pid_t pid = vs_proc_start(&sp);
    assert_true(pid > 0);
    struct vs_run r;
    vs_run_finish(pid, WAIT_MS, NULL, NULL, out, err, &r);
    if (r.status != status)
        fail_msg("vs-sandbox image-digest: status %d: %s", r.status, r.err);
    if (out_want != NULL) {
        char want[VS_IMAGE_DIGEST_LEN + 1];
        snprintf(want, sizeof want, "%s\n", out_want);
        assert_string_equal(r.out, want);
    }
    vs_run_free(&r);
    free(images);
    free(path);
    free(out);
    free(err);
}

static void test_image_digest_cli(void **state)
{
    struct fixture *f = *state;
    char *cache = vs_path(f->dir, "cli-cache");
    assert_int_equal(mkdir(cache, 0755), 0);
    image_digest_cli(f, &f->rootfs, NULL, 0, f->rootfs.digest);
    image_digest_cli(f, &f->oci, cache, 0, f->oci.digest);
    image_digest_cli(f, &f->oci, NULL, 210, NULL); /* a layout needs a cache */
    free(cache);
}

static void test_state_sync(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit(f, "state\n", task);
    char *seen = seen_of(f, output_of(f, task));
    char want[256];
    snprintf(want, sizeof want,
             "put 0\nget 0 draft one, same revision 1\ncas %d\ndelete 0\nget 0 [0]\nbad %d\n",
             -EACCES, -EINVAL);
    assert_string_equal(seen, want);
    free(seen);
    /* the bucket held the value sealed, never in clear */
    json_t *msg = vs_test_js_api(f->base.bus, "$JS.API.STREAM.MSG.GET.KV_agent_state",
                                 "{\"seq\":1}");
    const char *data = json_string_value(json_object_get(json_object_get(msg, "message"), "data"));
    assert_non_null(data);
    uint8_t raw[512];
    size_t len = 0;
    assert_int_equal(sodium_base642bin(raw, sizeof raw, data, strlen(data), NULL, &len, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(len, strlen("draft one") + VS_SEAL_OVERHEAD);
    assert_null(memmem(raw, len, "draft", 5));
    json_decref(msg);
}

/* The agent's stdout and stderr reach the deliverable (their last 16 KiB). */
static void test_agent_output(void **state)
{
    struct fixture *f = *state;
    uint8_t failed[VS_ID_LEN], noisy[VS_ID_LEN];
    admit(f, "fail\n", failed);
    const Vs__V1__TaskOutput *o = output_of(f, failed);
    assert_int_equal(o->exit_code, 3);
    assert_false(o->completed);
    size_t len = 0, size = 0;
    uint8_t *tar = snapshot_of(f, o, &len);
    const uint8_t *text = tar_file(tar, len, ".vs-agent-output", &size);
    assert_non_null(text);
    const char *want = "vs-test-agent: giving up: the input makes no sense\n";
    assert_int_equal(size, strlen(want));
    assert_memory_equal(text, want, size);
    free(tar);

    admit(f, "noisy 100000\n", noisy);
    tar = snapshot_of(f, output_of(f, noisy), &len);
    text = tar_file(tar, len, ".vs-agent-output", &size);
    assert_non_null(text);
    const char *head = "[the first 83616 bytes are not kept]\n"; /* 100000 - 16384 */
    assert_true(size == strlen(head) + 16384);
    assert_memory_equal(text, head, strlen(head));
    for (size_t i = strlen(head); i < size; i++)
        if (text[i] != (uint8_t)('a' + (83616 + i - strlen(head)) % 26))
            fail_msg("byte %zu of the output differs", i);
    assert_non_null(tar_file(tar, len, "result.txt", &size)); /* the rest is intact */
    free(tar);
}

static void test_reference_agent(void **state)
{
    struct fixture *f = *state;
    uint8_t task[VS_ID_LEN];
    admit_image(f, "reference\n", &f->rootfs, task); /* the same image on both backends */
    assert_ran(f, task, f->rootfs.digest);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--backend") == 0 &&
        (strcmp(argv[2], "podman") == 0 || strcmp(argv[2], "native") == 0)) {
        podman = strcmp(argv[2], "podman") == 0;
    } else if (argc != 1) {
        fprintf(stderr, "usage: test_sandboxd [--backend native|podman]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_runs),
        cmocka_unit_test(test_forged_ids_are_restamped),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_on_rlimits),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_symlink_not_followed),
        cmocka_unit_test(test_large_output),
        cmocka_unit_test(test_longer_than_ack_wait),
        cmocka_unit_test(test_crash_redelivers_once),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_image_digest_cli),
        cmocka_unit_test(test_state_sync),
        cmocka_unit_test(test_agent_output),
        cmocka_unit_test(test_reference_agent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
