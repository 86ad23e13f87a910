/*
 * bench_sandboxd.c - vs-sandboxd end to end, on a nats-server of its own:
 *   tasks/s   N admitted tasks, each running vs-reference-agent --trivial
 *             (heartbeat, result.txt, SIGNAL_COMPLETE) in a native sandbox,
 *             its snapshot sealed and its TaskOutput stored, timed from the
 *             first admission to the last output; beside the launch floor
 *             in the same run: the same number of `true` run back to back
 *             through vs_sandbox_run in this process (no bus, no agent);
 *   backends  the same agent from a signed image, through a second
 *             vs-sandboxd of each backend (sandboxd.backend native, then
 *             podman; each its own configuration and log, on the same
 *             nats-server), in the same run: the image is a root file
 *             system holding nothing but the static agent at
 *             /opt/vs/vs-reference-agent and the launchers' mount points,
 *             named by its content digest and signed with a minisign key of
 *             its own (the daemons' sandboxd.trusted_keys), and every task
 *             names it, so each task is verified and runs in it. The native
 *             line runs the image too, not the host's view of the line
 *             above, so that the two lines differ by the backend alone (the
 *             first line stays the host-view figure it always was); their
 *             ratio is printed. Each backend's first task (the image
 *             verified the first time; under Podman imported into its store
 *             as localhost/vs-image:<hex>) is run and waited for before the
 *             clock starts, then N tasks are timed as above; under Podman,
 *             whose container costs ~0.5 s here (~8 tasks/s, 4 at once),
 *             the same N, 2 with --quick. Every wait is bounded (native 60
 *             s, podman 30 s + 3 s a task). Without minisign (images cannot
 *             be signed) neither line runs; without podman or runc the
 *             podman line is skipped, saying so. The imported image is
 *             removed again at the end (`podman image rm` of its tag, not
 *             forced: a run still using it keeps it).
 *   memory    K tasks running `sleep` at once: the growth of the daemon's
 *             resident memory per running sandbox, and the private memory
 *             of each sandbox's init (a copy of the daemon, written pages
 *             only) - what a running sandbox costs the host besides the
 *             agent's own memory. Target: <= 1 MiB per sandbox.
 * Each phase counts only the outputs of its own tasks (their requester
 * names the phase); one of a run that did not complete (SIGNAL_COMPLETE,
 * exit 0, no kill) - a refused image, a failed launch - is said on stderr
 * with the daemon's log, and its line shows it. Nothing is judged: the
 * ctest bench.sandboxd_smoke runs --quick to prove this runs.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "busfix.h"
#include "daemon.h"
#include "imagefix.h"
#include "vs/ids.h"
#include "vs/image.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/sandbox.h"
#include "vs/v1/task.pb-c.h"

#define MAX_TASKS 4

/* The signed image the backend lines run. */
struct image {
    char *images;                           /* the daemons' sandboxd.images */
    char digest[VS_IMAGE_DIGEST_LEN];
    char *signature;                        /* minisign's text over "<digest>\n" */
    struct vs_test_keypair key;             /* its .pub is sandboxd.trusted_keys */
};

struct bench {
    struct vs_natsd nats;
    uv_loop_t loop;
    vs_bus *bus;
    char *dir;
    vs_boxkey *launcher, *scanner;
    char launcher_file[512], node_file[512], scanner_hex[65];
    struct vs_daemon daemon;                /* the host-view and memory runs */
    struct vs_daemon native, podman;        /* the backend lines, from the image */
    vs_consumer *outputs;
    const char *phase;                      /* the requester of this phase's tasks */
    uint64_t seen, failed;                  /* this phase's outputs; those of no complete run */
    char failure[200];                      /* what the first failed one said */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Outputs of this phase's tasks (the requester says which: a task left in
 * the shared consumer by an earlier phase is not counted). */
static int on_output(vs_msg *m, void *arg)
{
    struct bench *b = arg;
    const Vs__V1__TaskOutput *o = (const Vs__V1__TaskOutput *)vs_msg_body(m);
    if (o == NULL || b->phase == NULL || strcmp(o->requester, b->phase) != 0)
        return 0;
    b->seen++;
    if (!o->completed || o->exit_code != 0 || o->signal != 0 ||
        o->kill_reason != VS__V1__KILL_REASON__KILL_REASON_NONE) {
        if (b->failed++ == 0)
            snprintf(b->failure, sizeof b->failure,
                     "completed %d, exit %d, signal %d, kill reason %d", (int)o->completed,
                     (int)o->exit_code, (int)o->signal, (int)o->kill_reason);
    }
    return 0;
}

/* Start vs-sandboxd d (configuration and log <dir>/<name>.*) running command
 * (a YAML flow list), with the section's lines extra ("  key: value\n"
 * each) besides the keys and limits every run shares. */
static int start_daemon(struct bench *b, struct vs_daemon *d, const char *name, const char *command,
                        int max_tasks, const char *extra)
{
    vs_daemon_init(d, VS_SANDBOXD_BIN, b->dir, name);
    int rc = vs_write_file(d->cfg,
                           "nats:\n  url: %s\nlog:\n  level: warn\nshutdown_timeout: 10s\n"
                           "sandboxd:\n  launcher_key: %s\n  scanner_key: \"%s\"\n  node_key: %s\n"
                           "  command: %s\n%s  max_tasks: %d\n  heartbeat_timeout: 60s\n",
                           b->nats.url, b->launcher_file, b->scanner_hex, b->node_file, command,
                           extra, max_tasks);
    if (rc == 0)
        rc = vs_daemon_spawn(d);
    return rc == 0 ? vs_daemon_wait(d, b->bus, vs_daemon_answers_stats, b->bus, 60000, 50) : rc;
}

/* Admit a task of this phase; image NULL: none (the host's view). */
static void admit(struct bench *b, const struct image *image)
{
    uint8_t task[VS_ID_LEN];
    const struct vs_test_task t = {
        .agent = "bench-agent",
        .requester = b->phase,
        .payload = "task\n",
        .payload_len = 5,
        .image_digest = image != NULL ? image->digest : NULL,
        .image_signature = image != NULL ? image->signature : NULL,
    };
    vs_test_admit(b->bus, vs_boxkey_public(b->launcher), &t, task);
}

/* A new phase: its tasks' requester, nothing seen yet. */
static void phase(struct bench *b, const char *name)
{
    b->phase = name;
    b->seen = b->failed = 0;
    b->failure[0] = '\0';
}

/* Run the loop until want outputs of this phase have arrived or timeout_ms. */
static bool wait_for(struct bench *b, uint64_t want, uint64_t timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    while (b->seen < want && now_ms() < end)
        vs_test_idle(b->bus, 5);
    return b->seen >= want;
}

/* Admit n tasks naming image at once and wait (up to timeout_ms) for their
 * outputs; the milliseconds from the first admission to the last output, 0
 * when not all arrived. */
static uint64_t timed_tasks(struct bench *b, unsigned n, const struct image *image,
                            uint64_t timeout_ms)
{
    uint64_t t0 = now_ms();
    for (unsigned i = 0; i < n; i++)
        admit(b, image);
    bool all = wait_for(b, n, timeout_ms);
    uint64_t ms = now_ms() - t0;
    return all ? (ms > 0 ? ms : 1) : 0;
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

/* ---- the backend lines ------------------------------------------------------------ */

/* The launchers' mount points in the image; the agent goes to /opt/vs. */
static const char *const image_dirs[] = {"proc", "dev", "sys", "tmp", "workspace", "etc", "opt",
                                         "opt/vs"};

/* The signed image under <dir>/images: the tree made, hashed, signed with a
 * new key pair and moved to images/<digest hex>. 0, or -1 said on stderr
 * (minisign's failures end the program, saying why). */
static int make_image(struct bench *b, struct image *img)
{
    char path[VS_TEST_PATH_MAX];
    if (chmod(b->dir, 0755) != 0) { /* the sandbox's uid reaches the image */
        perror("bench_sandboxd: chmod of the scratch directory");
        return -1;
    }
    vs_test_keypair_make(b->dir, "image", &img->key);
    img->images = vs_path(b->dir, "images");
    char *tree = vs_path(b->dir, "tree");
    int rc = mkdir(img->images, 0755) == 0 && mkdir(tree, 0755) == 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < sizeof image_dirs / sizeof image_dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tree, image_dirs[i]);
        rc = mkdir(path, 0755);
    }
    snprintf(path, sizeof path, "%s/opt/vs/vs-reference-agent", tree);
    if (rc == 0)
        rc = vs_copy_file(VS_REFERENCE_AGENT_BIN, path, 0755);
    if (rc == 0 && (rc = vs_image_digest_dir(tree, img->digest)) < 0)
        fprintf(stderr, "bench_sandboxd: cannot hash %s: %s\n", tree, strerror(-rc));
    if (rc == 0) {
        img->signature = vs_test_sign_digest(&img->key, b->dir, img->digest, "bench_sandboxd");
        snprintf(path, sizeof path, "%s/%s", img->images, img->digest + strlen("sha256:"));
        rc = rename(tree, path);
    }
    if (rc != 0)
        fprintf(stderr, "bench_sandboxd: cannot make the image in %s\n", b->dir);
    free(tree);
    return rc;
}

/* One backend's line: a vs-sandboxd d of that backend (name: its files
 * and the phase) runs the image; the first task untimed, then n timed
 * ones, each wait bounded by timeout_ms. The tasks per second; 0 when the
 * daemon did not start or not every timed task completed (said). */
static double backend_run(struct bench *b, struct vs_daemon *d, const char *name,
                          const char *backend, const struct image *img, unsigned n,
                          uint64_t timeout_ms)
{
    char extra[1024];
    snprintf(extra, sizeof extra, "  backend: %s\n  images: %s\n  trusted_keys: [%s]\n", backend,
             img->images, img->key.pub);
    if (start_daemon(b, d, name, "[/opt/vs/vs-reference-agent, --trivial]", MAX_TASKS, extra) != 0) {
        fprintf(stderr, "bench_sandboxd: vs-sandboxd (%s backend) did not start\n", backend);
        vs_daemon_dump_log(d);
        vs_daemon_stop(d, 15000);
        return 0;
    }
    phase(b, name);
    bool warm = timed_tasks(b, 1, img, timeout_ms) > 0 && b->failed == 0;
    uint64_t ms = 0;
    if (warm) {
        phase(b, name);
        ms = timed_tasks(b, n, img, timeout_ms);
    }
    if (!warm || ms == 0 || b->failed > 0) {
        fprintf(stderr,
                "bench_sandboxd: %s backend: %s: %" PRIu64 " of %u outputs, %" PRIu64
                " of no complete run%s%s\n",
                backend, warm ? "timed tasks" : "first task", b->seen, warm ? n : 1, b->failed,
                b->failure[0] != '\0' ? ": " : "", b->failure);
        vs_daemon_dump_log(d);
        ms = 0;
    }
    vs_daemon_stop(d, 15000);
    return ms > 0 ? 1000.0 * n / (double)ms : 0.0;
}

/* podman with args, its output into <dir>/podman.log (bounded: 60 s); the
 * exit status, what it said into r (vs_run_free it). */
static void podman_cmd(struct bench *b, const char *podman, const char *verb, const char *arg,
                       struct vs_run *r)
{
    char *log = vs_path(b->dir, "podman.log");
    const char *argv[] = {podman, "image", verb, arg, NULL};
    const struct vs_spawn s = {.argv = argv, .out = log, .err = log, .keep_fd = -1};
    pid_t pid = vs_proc_start(&s);
    if (pid > 0) {
        vs_run_finish(pid, 60000, NULL, NULL, log, log, r);
    } else {
        r->status = -1;
        r->out = strdup("cannot start podman\n");
        r->err = strdup("");
    }
    free(log);
}

/* Remove the image the podman daemon imported (localhost/vs-image:<hex>),
 * when it is there; not forced: a run still using it keeps it. */
static void podman_rmi(struct bench *b, const char *podman, const struct image *img)
{
    char tag[128];
    snprintf(tag, sizeof tag, "localhost/vs-image:%s", img->digest + strlen("sha256:"));
    struct vs_run r;
    podman_cmd(b, podman, "exists", tag, &r);
    bool exists = r.status == 0;
    vs_run_free(&r);
    if (!exists)
        return;
    podman_cmd(b, podman, "rm", tag, &r);
    if (r.status != 0)
        fprintf(stderr, "bench_sandboxd: %s image rm %s: %s", podman, tag, r.out);
    vs_run_free(&r);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        printf("usage: bench_sandboxd [--quick]\n"
               "  tasks/s of vs-sandboxd natively (host view), natively and under podman from a\n"
               "  signed image, the launch floor, and the memory of a running sandbox\n"
               "  --quick: a few tasks of each (the smoke test)\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    unsigned n = quick ? 4 : 40, k = quick ? 2 : 8, np = quick ? 2 : n;
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
    vs_js_read(b.bus, "TASKS", "vs.task.output", 0, 0, &vs__v1__task_output__descriptor, on_output,
               &b, &b.outputs);
    int status = 0;

    /* tasks per second */
    char sdk[512], binds[600];
    snprintf(sdk, sizeof sdk, "%s", VS_REFERENCE_AGENT_BIN);
    *strrchr(sdk, '/') = '\0';
    snprintf(binds, sizeof binds, "  binds: [\"%s:/opt/sdk\"]\n", sdk);
    if (start_daemon(&b, &b.daemon, "sandboxd", "[/opt/sdk/vs-reference-agent, --trivial]",
                     MAX_TASKS, binds) != 0) {
        vs_daemon_dump_log(&b.daemon);
        return 1;
    }
    phase(&b, "bench-host");
    uint64_t daemon_ms = timed_tasks(&b, n, NULL, 120000);
    bool all = daemon_ms > 0;
    if (b.failed > 0)
        status = 1;
    vs_daemon_stop(&b.daemon, 15000);

    struct vs_sandbox_policy p;
    vs_sandbox_policy_init(&p);
    p.preset = VS_PRESET_COMPUTE;
    char *true_argv[] = {"/bin/true", NULL};
    uint64_t t0 = now_ms();
    for (unsigned i = 0; i < n; i++) {
        struct vs_sandbox_result r;
        if (vs_sandbox_run(&p, true_argv, &r) != 0)
            status = 1;
    }
    uint64_t floor_ms = now_ms() - t0;
    printf("bench_sandboxd: %u tasks, vs-reference-agent --trivial, up to %d at once, native sandboxes, "
           "2 cores\n", n, MAX_TASKS);
    printf("vs-sandboxd (bus, sealed payload, agent, snapshot, attestation): %7.1f tasks/s%s\n",
           all ? 1000.0 * n / (double)daemon_ms : 0.0,
           !all ? "  (not all outputs arrived)" : b.failed > 0 ? "  (some runs did not complete)" : "");
    printf("vs_sandbox_run of /bin/true, one at a time (launch floor):       %7.1f runs/s\n",
           1000.0 * n / (double)(floor_ms > 0 ? floor_ms : 1));
    fflush(stdout);

    /* the backends, from a signed image */
    struct image img = {0};
    char podman[512], runc[512];
    if (access(VS_TEST_MINISIGN, X_OK) != 0) {
        printf("image lines (native and podman backends) skipped: minisign is not installed (%s)\n",
               VS_TEST_MINISIGN);
    } else if (make_image(&b, &img) != 0) {
        status = 1;
    } else {
        printf("bench_sandboxd: the same agent from a signed image (%.19s..., the static agent "
               "alone), up to %d at once; %u tasks native, %u podman, each after one untimed\n",
               img.digest, MAX_TASKS, n, np);
        double native = backend_run(&b, &b.native, "sandboxd-native", "native", &img, n, 60000);
        printf("vs-sandboxd, native backend (same agent, signed image):          %7.1f tasks/s%s\n",
               native, native > 0 ? "" : "  (failed: see above)");
        fflush(stdout);
        if (native == 0)
            status = 1;
        if (!vs_find_program("podman", podman, sizeof podman)) {
            printf("podman line skipped: podman is not installed\n");
        } else if (!vs_find_program("runc", runc, sizeof runc)) {
            printf("podman line skipped: runc is not installed (the Podman backend runs runc)\n");
        } else {
            double pod = backend_run(&b, &b.podman, "sandboxd-podman", "podman", &img, np,
                                     30000 + 3000 * (uint64_t)np);
            printf("vs-sandboxd, podman backend (same agent, signed image):          %7.1f tasks/s%s\n",
                   pod, pod > 0 ? "" : "  (failed: see above)");
            if (pod > 0 && native > 0)
                printf("podman / native backend, same image:                             %7.3f\n",
                       pod / native);
            fflush(stdout);
            if (pod == 0)
                status = 1;
            podman_rmi(&b, podman, &img);
        }
    }

    /* memory per running sandbox */
    phase(&b, "bench-memory");
    if (start_daemon(&b, &b.daemon, "sandboxd-mem", "[/bin/sleep, \"4\"]", (int)k, "") != 0)
        return 1;
    vs_test_idle(b.bus, 500);
    uint64_t idle_kb = proc_kb(b.daemon.pid, "status", "VmRSS:");
    for (unsigned i = 0; i < k; i++)
        admit(&b, NULL);
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
    free(img.images);
    free(img.signature);
    vs_test_keypair_free(&img.key);
    return all ? status : 1;
}
