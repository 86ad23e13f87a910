/*
 * bench_sandboxd.c - vs-sandboxd end to end, on a nats-server of its own:
 *   tasks/s   N admitted tasks, each running vs-reference-agent --trivial
 *             (heartbeat, result.txt, SIGNAL_COMPLETE) in a native sandbox,
 *             its snapshot sealed and its TaskOutput stored, timed from the
 *             first admission to the last output; beside the launch floor
 *             in the same run: the same number of `true` run back to back
 *             through vs_sandbox_run in this process (no bus, no agent);
 *   memory    K tasks running `sleep` at once: the growth of the daemon's
 *             resident memory per running sandbox, and the private memory
 *             of each sandbox's init (a copy of the daemon, written pages
 *             only) - what a running sandbox costs the host besides the
 *             agent's own memory. Target: <= 1 MiB per sandbox.
 * The Podman backend is not wired into the daemon yet, so it has no line.
 * Nothing is judged: the ctest bench.sandboxd_smoke runs --quick to prove
 * this runs.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/sandbox.h"
#include "vs/v1/task.pb-c.h"

struct bench {
    struct vs_natsd nats;
    uv_loop_t loop;
    vs_bus *bus;
    char *dir;
    vs_boxkey *launcher, *scanner;
    char launcher_file[512], node_file[512], scanner_hex[65];
    struct vs_daemon daemon;
    vs_consumer *outputs;
    uint64_t seen;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int on_output(vs_msg *m, void *arg)
{
    (void)m;
    struct bench *b = arg;
    b->seen++;
    return 0;
}

static bool answers(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct bench *b = arg;
    static const char *const names[] = {"launched"};
    uint64_t v;
    return vs_test_counters(b->bus, "sandboxd", names, &v, 1, 300) >= 0;
}

/* Start vs-sandboxd running command (a YAML flow list). */
static int start_daemon(struct bench *b, const char *name, const char *command, int max_tasks)
{
    char sdk[512];
    snprintf(sdk, sizeof sdk, "%s", VS_REFERENCE_AGENT_BIN);
    *strrchr(sdk, '/') = '\0';
    vs_daemon_init(&b->daemon, VS_SANDBOXD_BIN, b->dir, name);
    int rc = vs_write_file(b->daemon.cfg,
                           "nats:\n  url: %s\nlog:\n  level: warn\nshutdown_timeout: 10s\n"
                           "sandboxd:\n  launcher_key: %s\n  scanner_key: \"%s\"\n  node_key: %s\n"
                           "  command: %s\n  binds: [\"%s:/opt/sdk\"]\n  max_tasks: %d\n"
                           "  heartbeat_timeout: 60s\n",
                           b->nats.url, b->launcher_file, b->scanner_hex, b->node_file, command,
                           sdk, max_tasks);
    if (rc == 0)
        rc = vs_daemon_spawn(&b->daemon);
    return rc == 0 ? vs_daemon_wait(&b->daemon, b->bus, answers, b, 60000, 50) : rc;
}

static void admit(struct bench *b)
{
    uint8_t task[VS_ID_LEN], sealed[16 + VS_SEAL_OVERHEAD], kid[VS_KEY_ID_LEN];
    vs_id_new(task);
    vs_seal(vs_boxkey_public(b->launcher), "task\n", 5, sealed);
    vs_key_id(vs_boxkey_public(b->launcher), VS_BOX_PUBLICKEY_LEN, kid);
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    p.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
    p.ciphertext = (ProtobufCBinaryData){5 + VS_SEAL_OVERHEAD, sealed};
    Vs__V1__TaskSubmit t = VS__V1__TASK_SUBMIT__INIT;
    t.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    t.requester = "bench";
    t.agent = "bench-agent";
    t.payload = &p;
    Vs__V1__TaskAdmitted a = VS__V1__TASK_ADMITTED__INIT;
    a.task = &t;
    char hex[VS_ID_HEX_LEN];
    vs_hex(task, VS_ID_LEN, hex);
    vs_js_publish(b->bus, "vs.task.admitted", &a.base, hex, NULL, NULL);
}

/* Run the loop until cond(b) or timeout_ms. */
static bool wait_for(struct bench *b, uint64_t want, uint64_t timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    while (b->seen < want && now_ms() < end)
        vs_test_idle(b->bus, 5);
    return b->seen >= want;
}

/* kB of a "Name:" line of /proc/PID/status or smaps_rollup. */
static uint64_t proc_kb(pid_t pid, const char *file, const char *name)
{
    char path[64], *text;
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    text = vs_slurp(path);
    const char *p = strstr(text, name);
    uint64_t v = p != NULL ? strtoull(p + strlen(name), NULL, 10) : 0;
    free(text);
    return v;
}

/* The sandboxes' inits (children of the daemon's threads) and their
 * private memory in kB; *n gets how many. */
static uint64_t inits_private_kb(pid_t daemon, unsigned *n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)daemon);
    DIR *d = opendir(path);
    uint64_t kb = 0;
    *n = 0;
    for (struct dirent *de; d != NULL && (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        char file[320];
        snprintf(file, sizeof file, "/proc/%d/task/%s/children", (int)daemon, de->d_name);
        char *text = vs_slurp(file), *save = NULL;
        for (char *tok = strtok_r(text, " \n", &save); tok != NULL; tok = strtok_r(NULL, " \n", &save)) {
            pid_t init = (pid_t)atoi(tok);
            kb += proc_kb(init, "smaps_rollup", "Private_Dirty:") +
                  proc_kb(init, "smaps_rollup", "Private_Clean:");
            (*n)++;
        }
        free(text);
    }
    if (d != NULL)
        closedir(d);
    return kb;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        printf("usage: bench_sandboxd [--quick]\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    unsigned n = quick ? 4 : 40, k = quick ? 2 : 8;
    struct bench b = {0};
    if (vs_crypto_init() != 0 || uv_loop_init(&b.loop) != 0 || vs_natsd_start(&b.nats) != 0 ||
        vs_natsd_bus(&b.nats, &b.loop, 0, &b.bus) != 0 || (b.dir = vs_scratch_dir("bench-sandboxd")) == NULL) {
        fprintf(stderr, "bench_sandboxd: cannot set up nats-server and the bus\n");
        return 1;
    }
    vs_signkey *node = NULL;
    vs_boxkey_new(&b.launcher);
    vs_boxkey_new(&b.scanner);
    vs_signkey_new(&node);
    snprintf(b.launcher_file, sizeof b.launcher_file, "%s/launcher.key", b.dir);
    snprintf(b.node_file, sizeof b.node_file, "%s/node.key", b.dir);
    vs_boxkey_save(b.launcher, b.launcher_file);
    vs_signkey_save(node, b.node_file);
    vs_signkey_free(node);
    sodium_bin2hex(b.scanner_hex, sizeof b.scanner_hex, vs_boxkey_public(b.scanner), VS_BOX_PUBLICKEY_LEN);
    vs_js_read(b.bus, "TASKS", "vs.task.output", 0, 0, NULL, on_output, &b, &b.outputs);
    int status = 0;

    /* tasks per second */
    if (start_daemon(&b, "sandboxd", "[/opt/sdk/vs-reference-agent, --trivial]", 4) != 0) {
        vs_daemon_dump_log(&b.daemon);
        return 1;
    }
    uint64_t t0 = now_ms();
    for (unsigned i = 0; i < n; i++)
        admit(&b);
    bool all = wait_for(&b, n, 120000);
    uint64_t daemon_ms = now_ms() - t0;
    vs_daemon_stop(&b.daemon, 15000);

    struct vs_sandbox_policy p;
    vs_sandbox_policy_init(&p);
    p.preset = VS_PRESET_COMPUTE;
    char *true_argv[] = {"/bin/true", NULL};
    t0 = now_ms();
    for (unsigned i = 0; i < n; i++) {
        struct vs_sandbox_result r;
        if (vs_sandbox_run(&p, true_argv, &r) != 0)
            status = 1;
    }
    uint64_t floor_ms = now_ms() - t0;
    printf("bench_sandboxd: %u tasks, vs-reference-agent --trivial, up to 4 at once, native sandboxes, "
           "2 cores\n", n);
    printf("vs-sandboxd (bus, sealed payload, agent, snapshot, attestation): %7.1f tasks/s%s\n",
           all ? 1000.0 * n / (double)(daemon_ms > 0 ? daemon_ms : 1) : 0.0,
           all ? "" : "  (not all outputs arrived)");
    printf("vs_sandbox_run of /bin/true, one at a time (launch floor):       %7.1f runs/s\n",
           1000.0 * n / (double)(floor_ms > 0 ? floor_ms : 1));

    /* memory per running sandbox */
    b.seen = 0;
    if (start_daemon(&b, "sandboxd-mem", "[/bin/sleep, \"4\"]", (int)k) != 0)
        return 1;
    vs_test_idle(b.bus, 500);
    uint64_t idle_kb = proc_kb(b.daemon.pid, "status", "VmRSS:");
    for (unsigned i = 0; i < k; i++)
        admit(&b);
    vs_test_idle(b.bus, 1500);
    uint64_t busy_kb = proc_kb(b.daemon.pid, "status", "VmRSS:");
    unsigned running = 0;
    uint64_t inits_kb = inits_private_kb(b.daemon.pid, &running);
    wait_for(&b, k, 60000);
    vs_daemon_stop(&b.daemon, 15000);
    printf("memory: %u sandboxes running; vs-sandboxd RSS %" PRIu64 " kB idle, %" PRIu64
           " kB busy: %.0f kB per sandbox; each init %.0f kB private (target <= 1024 kB in all)\n",
           running, idle_kb, busy_kb,
           (double)(busy_kb > idle_kb ? busy_kb - idle_kb : 0) / k,
           running > 0 ? (double)inits_kb / running : 0.0);
    vs_consumer_free(b.outputs);
    vs_bus_free(b.bus);
    uv_loop_close(&b.loop);
    vs_natsd_destroy(&b.nats);
    vs_scratch_free(b.dir);
    vs_boxkey_free(b.launcher);
    vs_boxkey_free(b.scanner);
    return all ? status : 1;
}
