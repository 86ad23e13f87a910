/*
 * cmd_up.c - `vsctl up` and `vsctl down`: a local stack in a state
 * directory, run by a background supervisor (supervisor.c).
 *
 * up prepares everything that can fail with a clear message before any
 * process starts (state directory, the lock, the daemons' binaries and
 * extra configs, the port, nats-server), then forks the supervisor and
 * waits until the stack really works: nats-server accepts, the JetStream
 * streams are declared, and every daemon answers vs.sys.health.NAME.
 *
 * The single-stack guarantee is an flock on STATE/supervisor.pid taken
 * before the fork and inherited by the supervisor (the lock belongs to the
 * open file, which the up process then closes): there is no moment where a
 * second `up` could slip in, and a crashed supervisor releases it with its
 * last descriptor. `down` and "already up" both test that lock rather than
 * trusting a pid that may have been reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vs/ids.h"
#include "vs/js.h"
#include "vs/subjects.h"
#include "vs/v1/sys.pb-c.h"
#include "vsctl.h"

#define DEFAULT_PORT 4222
#define UP_TIMEOUT_MS 30000
#define DOWN_TIMEOUT_MS 30000
#define HEALTH_TIMEOUT_MS 1000

/* ---- the lock on STATE/supervisor.pid --------------------------------------------- */

/* Open and exclusively lock the pid file. fd with the lock held,
 * -EWOULDBLOCK when a stack holds it, or -errno. */
static int lock_pid_file(const char *path)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
        }
        /* The holder before us may have removed the file after we opened
         * it: only the file at the path counts. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
    return -EAGAIN;
}

/* Whether a live supervisor holds the pid file's lock. */
static bool stack_locked(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool locked = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return locked;
}

static void write_own_pid(int fd, pid_t pid)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%d\n", (int)pid);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
        vsctl_err("cannot write the pid file: %s", strerror(errno));
}

static pid_t run_pid(const char *state, const char *name)
{
    char run[PATH_MAX], path[PATH_MAX], file[VSCTL_NAME_MAX + 16];
    if (snprintf(file, sizeof(file), "%s.pid", name) >= (int)sizeof(file) ||
        vsctl_path(run, sizeof(run), state, VSCTL_RUN_DIR) < 0 ||
        vsctl_path(path, sizeof(path), run, file) < 0)
        return 0;
    return vsctl_read_pid(path);
}

/* ---- up ---------------------------------------------------------------------------- */

static void up_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl up [--port N] [--daemon NAME[=PATH]]... [--foreground]\n"
            "Start a local stack in the state directory, run by a background supervisor:\n"
            "nats-server with JetStream on 127.0.0.1:PORT (store STATE/jetstream, config\n"
            "STATE/nats-server.conf), then each daemon. Waits (30 s at most) until the\n"
            "server accepts and every daemon answers vs.sys.health.NAME, then prints a\n"
            "summary. Says so and exits 0 when the stack is already up.\n\n"
            "  --port N             client port (default 4222; 0 picks a free one)\n"
            "  --daemon NAME[=PATH] run vs-NAME: PATH, else vs-NAME next to vsctl, else in\n"
            "                       PATH. Repeatable. Without --daemon, the daemons of the\n"
            "                       last up (STATE/stack.list) are started again.\n"
            "  --foreground         run the supervisor in this process (containers,\n"
            "                       systemd); it logs to stderr\n\n"
            "Daemon NAME runs as `vs-NAME -c STATE/etc/NAME.yaml` with only PATH in its\n"
            "environment, cwd STATE, output in STATE/logs/NAME.log. vsctl writes NAME.yaml\n"
            "at every start: the `nats: {url: ...}` section it owns, then your keys copied\n"
            "verbatim from STATE/etc/NAME.extra.yaml if that file exists (it must not have\n"
            "its own top-level nats: section).\n"
            "A process that exits is restarted after 0.5 s, doubling to 30 s (reset after\n"
            "60 s of uptime); see STATE/logs/supervisor.log. `vsctl down` stops the stack.\n"
            "Files: STATE/supervisor.pid (locked while up), STATE/nats.url, STATE/run/*.pid.\n\n"
            VSCTL_COMMON_HELP);
}

/* --daemon NAME[=PATH] -> name and absolute path of an executable. */
static int resolve_daemon(const char *spec, struct vsctl_daemon *d)
{
    const char *eq = strchr(spec, '=');
    size_t nlen = eq != NULL ? (size_t)(eq - spec) : strlen(spec);
    if (nlen == 0 || nlen > VSCTL_NAME_MAX) {
        vsctl_err("--daemon: bad name in '%s'", spec);
        return -EINVAL;
    }
    memcpy(d->name, spec, nlen);
    d->name[nlen] = '\0';
    if (!vs_token_valid(d->name) || strcmp(d->name, "all") == 0) {
        vsctl_err("--daemon: '%s' is not a daemon name ([A-Za-z0-9_-], not \"all\")", d->name);
        return -EINVAL;
    }
    char path[PATH_MAX];
    if (eq != NULL) {
        if (realpath(eq + 1, path) == NULL) {
            vsctl_err("--daemon %s: %s: %s", d->name, eq + 1, strerror(errno));
            return -ENOENT;
        }
    } else {
        char exe[32 + VSCTL_NAME_MAX], dir[PATH_MAX];
        snprintf(exe, sizeof(exe), "vs-%s", d->name);
        bool have_dir = vsctl_exe_dir(dir, sizeof(dir)) == 0;
        bool beside = have_dir && vsctl_path(path, sizeof(path), dir, exe) == 0 &&
                      access(path, X_OK) == 0;
        if (!beside && vsctl_find_exe(exe, NULL, path, sizeof(path)) < 0) {
            vsctl_err("no %s next to vsctl (%s) or in PATH; use --daemon %s=PATH", exe,
                      have_dir ? dir : "?", d->name);
            return -ENOENT;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        vsctl_err("--daemon %s: %s is not an executable file", d->name, path);
        return -EACCES;
    }
    snprintf(d->path, sizeof(d->path), "%s", path);
    return 0;
}

static int prepare_dirs(const char *state)
{
    static const char *const subdirs[] = {VSCTL_LOG_DIR, VSCTL_ETC_DIR, VSCTL_RUN_DIR,
                                          VSCTL_JS_DIR};
    int rc = vsctl_mkdirs(state, 0750);
    for (size_t i = 0; rc == 0 && i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char dir[PATH_MAX];
        rc = vsctl_path(dir, sizeof(dir), state, subdirs[i]);
        if (rc == 0)
            rc = vsctl_mkdirs(dir, 0750);
    }
    if (rc < 0)
        vsctl_err("cannot create the state directory %s: %s", state, strerror(-rc));
    return rc;
}

static void say_already_up(const char *state, const char *pidpath)
{
    char urlpath[PATH_MAX];
    char *url = NULL;
    if (vsctl_path(urlpath, sizeof(urlpath), state, VSCTL_URL_FILE) == 0)
        url = vsctl_read_file(urlpath, NULL);
    if (url != NULL)
        url[strcspn(url, "\r\n")] = '\0';
    printf("stack already up in %s (supervisor pid %d%s%s)\n", state, (int)vsctl_read_pid(pidpath),
           url != NULL ? ", " : "", url != NULL ? url : "");
    free(url);
}

struct health {
    bool done;
    int status;
    int32_t pid;
    bool narrowed;
    char state[32];
};

static void on_health(int status, const ProtobufCMessage *reply, void *arg)
{
    struct health *h = arg;
    h->status = status;
    if (status == 0) {
        const Vs__V1__HealthReply *r = (const Vs__V1__HealthReply *)reply;
        h->pid = r->pid;
        h->narrowed = r->narrowed;
        snprintf(h->state, sizeof(h->state), "%s", r->state != NULL ? r->state : "?");
        for (char *p = h->state; *p != '\0'; p++)
            if (*p <= ' ' || *p >= 0x7f)
                *p = '?';
    }
    h->done = true;
}

/* The supervisor (our child until we exit) is still there? */
static bool supervisor_alive(pid_t pid, int *status)
{
    return waitpid(pid, status, WNOHANG) == 0;
}

static void report_supervisor_exit(const char *state, int status)
{
    if (WIFSIGNALED(status))
        vsctl_err("the supervisor was killed by signal %d; see %s/%s/supervisor.log",
                  WTERMSIG(status), state, VSCTL_LOG_DIR);
    else
        vsctl_err("the supervisor exited with status %d; see %s/%s/supervisor.log",
                  WEXITSTATUS(status), state, VSCTL_LOG_DIR);
}

/* Wait until the stack works, then print the summary. */
static int wait_ready(const char *state, pid_t sup, const struct vsctl_daemon *daemons, size_t n)
{
    uint64_t deadline = vs_mono_ms() + UP_TIMEOUT_MS;
    char urlpath[PATH_MAX], url[VSCTL_URL_MAX] = "";
    int status;
    vsctl_path(urlpath, sizeof(urlpath), state, VSCTL_URL_FILE);
    /* 1. nats-server accepts (the supervisor writes nats.url then). */
    for (;;) {
        char *text = vsctl_read_file(urlpath, NULL);
        if (text != NULL && text[0] != '\0') {
            text[strcspn(text, "\r\n")] = '\0';
            snprintf(url, sizeof(url), "%s", text);
            free(text);
            break;
        }
        free(text);
        if (!supervisor_alive(sup, &status)) {
            report_supervisor_exit(state, status);
            return VSCTL_FAIL;
        }
        if (vs_mono_ms() >= deadline) {
            vsctl_err("nats-server did not accept connections within %d s; see %s/%s/nats-server.log "
                      "(the supervisor keeps trying; `vsctl down` stops it)",
                      UP_TIMEOUT_MS / 1000, state, VSCTL_LOG_DIR);
            return VSCTL_FAIL;
        }
        usleep(50 * 1000);
    }
    /* 2. connect and declare the streams (tools need them even before a
     * daemon has started). */
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    while (vsctl_connect_quiet(url, &loop, &bus) < 0) {
        if (vs_mono_ms() >= deadline) {
            vsctl_err("cannot connect to %s", url);
            goto out;
        }
        usleep(100 * 1000);
    }
    int rc = vs_js_declare_all_sync(bus);
    if (rc < 0) {
        vsctl_err("cannot declare the JetStream streams: %s", strerror(-rc));
        goto out;
    }
    /* 3. every daemon answers its health request. */
    struct health h[VSCTL_MAX_DAEMONS] = {0};
    for (size_t i = 0; i < n; i++) {
        char subject[VS_SUBJECT_MAX];
        const char *tok[] = {daemons[i].name};
        vs_subject_format(VS_SUBJ_SYS_HEALTH, subject, sizeof(subject), false, tok, 1);
        for (;;) {
            Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
            req.sent_at_ns = vs_now_ns();
            h[i].done = false;
            rc = vs_bus_request(bus, subject, &req.base, &vs__v1__health_reply__descriptor,
                                HEALTH_TIMEOUT_MS, on_health, &h[i]);
            if (rc == 0)
                vs_bus_run_until(bus, &h[i].done, HEALTH_TIMEOUT_MS + 500);
            if (rc == 0 && h[i].done && h[i].status == 0)
                break;
            if (!supervisor_alive(sup, &status)) {
                report_supervisor_exit(state, status);
                goto out;
            }
            if (vs_mono_ms() >= deadline) {
                vsctl_err("%s does not answer %s after %d s; see %s/%s/%s.log (the supervisor "
                          "keeps restarting it; `vsctl down` stops the stack)",
                          daemons[i].name, subject, UP_TIMEOUT_MS / 1000, state, VSCTL_LOG_DIR,
                          daemons[i].name);
                goto out;
            }
            vsctl_sleep_bus(bus, 200);
        }
    }
    printf("stack up in %s\n", state);
    printf("  %-14s pid %-8d log %s/%s/supervisor.log\n", "supervisor", (int)sup, state,
           VSCTL_LOG_DIR);
    printf("  %-14s pid %-8d %s\n", "nats-server", (int)run_pid(state, "nats-server"), url);
    for (size_t i = 0; i < n; i++)
        printf("  %-14s pid %-8d %s, %s\n", daemons[i].name, (int)h[i].pid, h[i].state,
               h[i].narrowed ? "narrowed" : "NOT narrowed");
    result = fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
out:
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

int cmd_up(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"daemon", required_argument, NULL, 'd'},
        {"foreground", no_argument, NULL, 'f'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    uint64_t port = DEFAULT_PORT;
    bool foreground = false;
    const char *specs[VSCTL_MAX_DAEMONS];
    size_t nspecs = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'p':
            if (!vsctl_opt_uint("port", optarg, 0, 65535, &port))
                return VSCTL_USAGE;
            break;
        case 'd':
            if (nspecs == VSCTL_MAX_DAEMONS) {
                vsctl_err("at most %d daemons", VSCTL_MAX_DAEMONS);
                return VSCTL_USAGE;
            }
            specs[nspecs++] = optarg;
            break;
        case 'f': foreground = true; break;
        case 'h': up_usage(stdout); return VSCTL_OK;
        default: up_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("up takes no arguments (daemons are given with --daemon)");
        return VSCTL_USAGE;
    }
    if (ctx->opt_url != NULL)
        vsctl_err("note: --url is ignored by up (the stack's URL is 127.0.0.1:PORT)");
    const char *state = vsctl_state_dir(ctx);
    if (state == NULL)
        return VSCTL_FAIL;
    for (const char *p = state; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f) {
            vsctl_err("the state directory path may not contain quotes, backslashes or "
                      "control characters");
            return VSCTL_FAIL;
        }
    }
    if (prepare_dirs(state) < 0)
        return VSCTL_FAIL;

    char pidpath[PATH_MAX];
    if (vsctl_path(pidpath, sizeof(pidpath), state, VSCTL_PID_FILE) < 0) {
        vsctl_err("state directory path too long");
        return VSCTL_FAIL;
    }
    int lock = lock_pid_file(pidpath);
    if (lock == -EWOULDBLOCK) {
        say_already_up(state, pidpath);
        return VSCTL_OK;
    }
    if (lock < 0) {
        vsctl_err("cannot lock %s: %s", pidpath, strerror(-lock));
        return VSCTL_FAIL;
    }

    /* From here on we own the state directory until the fork hands the
     * lock to the supervisor; on any failure, release it. */
    static struct vsctl_daemon daemons[VSCTL_MAX_DAEMONS];
    size_t n = 0;
    int result = VSCTL_FAIL;
    char nats_bin[PATH_MAX];
    static const char *const sbin[] = {"/usr/sbin", "/usr/local/sbin", NULL};
    if (nspecs == 0) {
        if (vsctl_stack_read(state, daemons, VSCTL_MAX_DAEMONS, &n) == 0 && n > 0)
            fprintf(stderr, "vsctl: starting the daemons of %s/%s\n", state, VSCTL_STACK_FILE);
    }
    for (size_t i = 0; i < nspecs; i++) {
        if (resolve_daemon(specs[i], &daemons[n]) < 0)
            goto fail;
        for (size_t k = 0; k < n; k++) {
            if (strcmp(daemons[k].name, daemons[n].name) == 0) {
                vsctl_err("--daemon %s given twice", daemons[n].name);
                goto fail;
            }
        }
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        char *text = NULL, err[512];
        if (vsctl_daemon_config_text(state, daemons[i].name, "nats://127.0.0.1:1", &text, err,
                                     sizeof(err)) < 0) {
            vsctl_err("%s", err);
            goto fail;
        }
        free(text);
    }
    if (vsctl_find_exe("nats-server", sbin, nats_bin, sizeof(nats_bin)) < 0) {
        vsctl_err("nats-server not found in PATH or /usr/sbin (apt-get install -y nats-server)");
        goto fail;
    }
    if (port == 0) {
        int p = vsctl_free_port();
        if (p < 0) {
            vsctl_err("cannot find a free port: %s", strerror(-p));
            goto fail;
        }
        port = (uint64_t)p;
    } else if (!vsctl_port_free((int)port)) {
        vsctl_err("127.0.0.1:%d is in use (another nats-server?); choose one with --port",
                  (int)port);
        goto fail;
    }
    if (vsctl_stack_write(state, daemons, n) < 0) {
        vsctl_err("cannot write %s/%s", state, VSCTL_STACK_FILE);
        goto fail;
    }

    struct vsctl_stack stack = {
        .state = state,
        .nats_bin = nats_bin,
        .port = (int)port,
        .daemons = daemons,
        .ndaemons = n,
    };
    if (foreground) {
        write_own_pid(lock, getpid());
        result = vsctl_supervise(&stack);
        close(lock);
        return result;
    }

    char logdir[PATH_MAX], logpath[PATH_MAX];
    vsctl_path(logdir, sizeof(logdir), state, VSCTL_LOG_DIR);
    if (vsctl_path(logpath, sizeof(logpath), logdir, "supervisor.log") < 0)
        goto fail;
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (logfd < 0) {
        vsctl_err("cannot open %s: %s", logpath, strerror(errno));
        goto fail;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        vsctl_err("cannot fork: %s", strerror(errno));
        close(logfd);
        goto fail;
    }
    if (pid == 0) {
        /* The supervisor: its own session, no terminal, stdio to its log. */
        setsid();
        int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nullfd >= 0)
            dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        if (nullfd > 2)
            close(nullfd);
        close(logfd);
        if (chdir("/") < 0)
            _exit(VSCTL_FAIL);
        write_own_pid(lock, getpid());
        int code = vsctl_supervise(&stack);
        fflush(stdout);
        _exit(code);
    }
    close(logfd);
    close(lock); /* the supervisor holds the lock through its copy */
    return wait_ready(state, pid, daemons, n);

fail:
    unlink(pidpath);
    close(lock);
    return result;
}

/* ---- down -------------------------------------------------------------------------- */

static void down_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl down\n"
            "Stop the stack of the state directory: SIGTERM to its supervisor, which stops\n"
            "the daemons (SIGKILL after 15 s), then nats-server, and removes\n"
            "STATE/supervisor.pid and STATE/nats.url. Waits up to 30 s and prints what\n"
            "was stopped; says \"not running\" (exit 0) when no stack is up.\n\n"
            VSCTL_COMMON_HELP);
}

int cmd_down(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'h': down_usage(stdout); return VSCTL_OK;
        default: down_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("down takes no arguments");
        return VSCTL_USAGE;
    }
    const char *state = vsctl_state_dir(ctx);
    if (state == NULL)
        return VSCTL_FAIL;
    char pidpath[PATH_MAX];
    if (vsctl_path(pidpath, sizeof(pidpath), state, VSCTL_PID_FILE) < 0)
        return VSCTL_FAIL;
    if (!stack_locked(pidpath)) {
        /* A pid file nobody locks is left from a crash: remove it under
         * our own lock so that a starting `up` is not disturbed. */
        int fd = lock_pid_file(pidpath);
        if (fd >= 0) {
            unlink(pidpath);
            close(fd);
        }
        printf("not running (no stack in %s)\n", state);
        return VSCTL_OK;
    }
    pid_t sup = 0;
    for (int i = 0; i < 20 && (sup = vsctl_read_pid(pidpath)) == 0; i++)
        usleep(50 * 1000); /* a supervisor that just started writes it */
    if (sup == 0) {
        vsctl_err("%s is locked but holds no pid", pidpath);
        return VSCTL_FAIL;
    }
    /* What is running, to say what was stopped. */
    struct vsctl_daemon daemons[VSCTL_MAX_DAEMONS];
    size_t n = 0;
    vsctl_stack_read(state, daemons, VSCTL_MAX_DAEMONS, &n);
    pid_t pids[VSCTL_MAX_DAEMONS];
    for (size_t i = 0; i < n; i++)
        pids[i] = run_pid(state, daemons[i].name);
    pid_t nats = run_pid(state, "nats-server");

    if (kill(sup, SIGTERM) < 0 && errno != ESRCH) {
        vsctl_err("cannot signal the supervisor (pid %d): %s", (int)sup, strerror(errno));
        return VSCTL_FAIL;
    }
    uint64_t deadline = vs_mono_ms() + DOWN_TIMEOUT_MS;
    while (stack_locked(pidpath)) {
        if (vs_mono_ms() >= deadline) {
            vsctl_err("the supervisor (pid %d) is still running after %d s; see %s/%s/supervisor.log",
                      (int)sup, DOWN_TIMEOUT_MS / 1000, state, VSCTL_LOG_DIR);
            return VSCTL_FAIL;
        }
        usleep(50 * 1000);
    }
    printf("stopped the stack in %s\n", state);
    for (size_t i = 0; i < n; i++) {
        if (pids[i] > 0)
            printf("  %-14s pid %d\n", daemons[i].name, (int)pids[i]);
        else
            printf("  %-14s (was not running)\n", daemons[i].name);
    }
    if (nats > 0)
        printf("  %-14s pid %d\n", "nats-server", (int)nats);
    printf("  %-14s pid %d\n", "supervisor", (int)sup);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}
