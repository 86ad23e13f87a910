/*
 * vs_container_init.c - vs-container-init, pid 1 of every container the
 * Podman backend starts (sandboxd/src/podman.c; descriptors, options and
 * the report: src/container_init.h).
 *
 * Podman applies most of the policy (namespaces, read-only root, tmpfs,
 * capabilities, no_new_privs, the seccomp profile, cgroup limits); what it
 * cannot do is done here, the way the native launcher's init does it:
 *   - check that the cgroup really enforces the memory and pids limits
 *     before anything runs (rootless Podman on cgroup v1 ignores them with
 *     a warning);
 *   - run the program with exactly the policy's environment, fd 3 as the
 *     command channel and nothing else above stderr, RLIMIT_FSIZE, and
 *     Landlock (read-only /, writable /workspace, /tmp and /dev);
 *   - the wall-clock limit, and the pids limit as a stop (like the native
 *     launcher, reaching it ends the sandbox), both measured in here, to
 *     the millisecond, from the program's start;
 *   - when the program ends (or is stopped by a limit, by SIGTERM from
 *     `podman stop`, or by the launcher's VS_CINIT_FINISH): kill everything
 *     left, then write the ustar snapshot of /workspace/out to fd 4 and
 *     report; when the launcher died or gave up (its end of the report
 *     socket hung up), kill everything and exit at once.
 *
 * It is linked statically (sandboxd/CMakeLists.txt) because it runs in the
 * image's file system, whose libc (if any) is not ours, and it runs under
 * the same seccomp preset as the program: it uses only calls every preset
 * allows, and no allocation (static buffers). It refuses to run as
 * anything but pid 1, where kill(-1) reaches only the container.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container_init.h"
#include "landlock.h"
#include "snapshot.h"

#define OUT_DIR "/workspace/out"
#define POLL_MS 50 /* the pids counter has no event to wait on */
#define CG "/sys/fs/cgroup/"

struct opts {
    bool command, snapshot, net;
    uint64_t snapshot_max, time_limit_ms, memory, pids, fsize;
    const char *cwd;
    char **argv;
};

static struct vs_cinit_report report = {.magic = VS_CINIT_MAGIC, .version = VS_CINIT_VERSION,
                                        .status = -1};
static volatile sig_atomic_t stop_requested;
static char env_buf[VS_CINIT_ENV_MAX + 1];
static char *env[VS_CINIT_ENV_COUNT + 1];
static pid_t prog = -1;
static bool prog_done;

static void send_report(void)
{
    if (write(VS_CINIT_FD_REPORT, &report, sizeof(report)) < 0) {
        /* the launcher is gone: nobody to tell */
    }
}

/* A setup error: say it on stderr (podman's, which the launcher reads),
 * report it and end the container. */
__attribute__((format(printf, 1, 2), noreturn)) static void setup_failed(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report.error, sizeof(report.error), fmt, ap);
    va_end(ap);
    dprintf(2, "vs-container-init: %s\n", report.error);
    send_report();
    _exit(127);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s != NULL ? strtoull(s, &end, 10) : 0;
    if (s == NULL || errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static void parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--command") == 0) {
            o->command = true;
            continue;
        }
        if (strcmp(a, "--net") == 0) {
            o->net = true;
            continue;
        }
        /* The rest take a value. */
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        bool ok;
        if (strcmp(a, "--snapshot") == 0)
            ok = o->snapshot = parse_u64(v, &o->snapshot_max);
        else if (strcmp(a, "--time-limit") == 0)
            ok = parse_u64(v, &o->time_limit_ms);
        else if (strcmp(a, "--memory") == 0)
            ok = parse_u64(v, &o->memory);
        else if (strcmp(a, "--pids") == 0)
            ok = parse_u64(v, &o->pids);
        else if (strcmp(a, "--fsize") == 0)
            ok = parse_u64(v, &o->fsize);
        else if (strcmp(a, "--chdir") == 0)
            ok = v != NULL && (o->cwd = v)[0] == '/';
        else
            ok = false;
        if (!ok)
            setup_failed("bad option %s (this init is started by vs_podman_run only)", a);
    }
    if (i + 1 >= argc || o->cwd == NULL)
        setup_failed("usage: %s [options] --chdir DIR -- PROG [ARGS...]", argv[0]);
    o->argv = argv + i + 1;
}

/* The program's environment from the memfd: "NAME=VALUE\0" each. */
static void load_env(void)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = pread(VS_CINIT_FD_ENV, env_buf + len, sizeof(env_buf) - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            setup_failed("read the environment: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof(env_buf))
            setup_failed("the environment is larger than %u bytes", VS_CINIT_ENV_MAX);
    }
    close(VS_CINIT_FD_ENV);
    if (len > 0 && env_buf[len - 1] != '\0')
        setup_failed("malformed environment");
    size_t n = 0;
    for (size_t off = 0; off < len; off += strlen(env_buf + off) + 1) {
        char *var = env_buf + off;
        if (n == VS_CINIT_ENV_COUNT || var[0] == '=' || strchr(var, '=') == NULL)
            setup_failed("malformed environment");
        env[n++] = var;
    }
    env[n] = NULL;
}

/* ---- the cgroup, as the container sees it ------------------------------------- */

static int cgroup_version(void)
{
    if (access(CG "cgroup.controllers", F_OK) == 0)
        return 2;
    return access(CG "memory", F_OK) == 0 || access(CG "pids", F_OK) == 0 ? 1 : 0;
}

/* The file of a controller: v2 and v1 names. */
static const char *cg_file(int version, const char *v2, const char *v1)
{
    return version == 2 ? v2 : version == 1 ? v1 : NULL;
}

static bool read_text(const char *path, char *buf, size_t size)
{
    int fd = path != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* A limit file: a number, or "max" (UINT64_MAX). */
static bool read_limit(const char *path, uint64_t *out)
{
    char buf[64];
    if (!read_text(path, buf, sizeof(buf)))
        return false;
    buf[strcspn(buf, "\n")] = '\0';
    if (strcmp(buf, "max") == 0) {
        *out = UINT64_MAX;
        return true;
    }
    return parse_u64(buf, out);
}

/* The value of the line "key N" of a flat-keyed file (memory.events ...). */
static bool read_key(const char *path, const char *key, uint64_t *out)
{
    char buf[4096];
    if (!read_text(path, buf, sizeof(buf)))
        return false;
    size_t klen = strlen(key);
    for (char *line = buf; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return parse_u64(line + klen + 1, out);
        line = next;
    }
    return false;
}

/* Refuse to run the program when a limit it was promised is not there. */
static void check_limits(const struct opts *o, int version)
{
    uint64_t v;
    const char *mem = cg_file(version, CG "memory.max", CG "memory/memory.limit_in_bytes");
    const char *pids = cg_file(version, CG "pids.max", CG "pids/pids.max");
    if (o->memory > 0 && (!read_limit(mem, &v) || v > o->memory))
        setup_failed("the container's cgroup does not enforce the memory limit of %llu bytes "
                     "(rootless Podman on cgroup v1 ignores limits)",
                     (unsigned long long)o->memory);
    if (o->pids > 0 && (!read_limit(pids, &v) || v > o->pids))
        setup_failed("the container's cgroup does not enforce the pids limit of %llu "
                     "(rootless Podman on cgroup v1 ignores limits)",
                     (unsigned long long)o->pids);
}

/* ---- processes ------------------------------------------------------------------- */

static void on_term(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    /* Only from outside the container (podman stop, runc kill): a sender
     * in another pid namespace shows as pid 0. The program may not end
     * its own sandbox early this way. */
    if (si->si_pid == 0)
        stop_requested = 1;
}

static void on_child(int sig)
{
    (void)sig; /* only to interrupt ppoll */
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reap whatever has exited; the program's status goes to the report.
 * Returns waitpid's last answer (0: children left, -1 ECHILD: none). */
static pid_t reap(void)
{
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w;
        if (w == prog) {
            report.status = st;
            prog_done = true;
        }
    }
}

/* Kill everything but us, again until nothing is left: a process forked
 * while kill(-1) ran is caught by the next round. */
static void kill_everything(void)
{
    for (;;) {
        kill(-1, SIGKILL);
        if (reap() < 0)
            return;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* In the program's process: report to errfd and exit. */
__attribute__((noreturn)) static void child_failed(int errfd, const char *what)
{
    dprintf(errfd, "%s: %s", what, strerror(errno));
    _exit(127);
}

static const char *const search_path[] = {"/usr/local/bin", "/usr/bin", "/bin", NULL};

__attribute__((noreturn)) static void run_program(const struct opts *o, int errfd,
                                                  const sigset_t *mask)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    if (setsid() < 0)
        child_failed(errfd, "setsid");
    if (dup2(VS_CINIT_FD_STDIN, 0) < 0 || dup2(VS_CINIT_FD_STDOUT, 1) < 0 ||
        dup2(VS_CINIT_FD_STDERR, 2) < 0)
        child_failed(errfd, "standard descriptors");
    /* Nothing above stderr but the command channel (errfd is >= 10 and
     * close-on-exec). */
    unsigned first = o->command ? VS_CINIT_FD_COMMAND + 1 : VS_CINIT_FD_COMMAND;
    if (syscall(SYS_close_range, first, (unsigned)errfd - 1, 0) < 0 ||
        syscall(SYS_close_range, (unsigned)errfd + 1, ~0u, 0) < 0)
        child_failed(errfd, "close inherited descriptors");
    if (o->fsize > 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_FSIZE, &rl) < 0)
            child_failed(errfd, "RLIMIT_FSIZE");
        rlim_t v = (rlim_t)o->fsize;
        if (rl.rlim_max != RLIM_INFINITY && v > rl.rlim_max)
            v = rl.rlim_max;
        rl.rlim_cur = rl.rlim_max = v;
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
            child_failed(errfd, "RLIMIT_FSIZE");
    }
    if (chdir(o->cwd) < 0)
        child_failed(errfd, "chdir");
    static const char *const ro[] = {"/", NULL};
    static const char *const rw[] = {"/workspace", "/tmp", "/dev", NULL};
    int rc = vs_landlock_apply(ro, rw, o->net, NULL);
    if (rc < 0 && rc != -ENOSYS && rc != -EOPNOTSUPP) {
        errno = -rc;
        child_failed(errfd, "landlock");
    }
    char path[PATH_MAX];
    const char *file = o->argv[0];
    if (strchr(file, '/') == NULL) {
        path[0] = '\0';
        for (const char *const *d = search_path; *d != NULL && path[0] == '\0'; d++) {
            snprintf(path, sizeof(path), "%s/%s", *d, file);
            if (access(path, X_OK) < 0)
                path[0] = '\0';
        }
        if (path[0] == '\0') {
            errno = ENOENT;
            child_failed(errfd, file);
        }
        file = path;
    }
    execve(file, o->argv, env);
    char what[PATH_MAX + 16];
    snprintf(what, sizeof(what), "execute %s", file);
    child_failed(errfd, what);
}

/* Wait for the program while enforcing the wall clock and the pids limit,
 * and ending it on SIGTERM from outside, on the launcher's VS_CINIT_FINISH,
 * or when the launcher dies. */
static void supervise(const struct opts *o, int version, uint64_t start)
{
    const char *pids_events = cg_file(version, CG "pids.events", CG "pids/pids.events");
    uint64_t hits;
    bool watch_pids = o->pids > 0 && read_key(pids_events, "max", &hits);
    bool killed = false;
    sigset_t none;
    sigemptyset(&none);
    while (reap() >= 0 && !prog_done) {
        uint64_t now = mono_ms();
        if (!killed && !stop_requested) {
            if (o->time_limit_ms > 0 && now - start >= o->time_limit_ms)
                report.flags |= VS_CINIT_F_TIME;
            else if (watch_pids && read_key(pids_events, "max", &hits) && hits > 0)
                report.flags |= VS_CINIT_F_PIDS;
        }
        if (!killed && (stop_requested || (report.flags & (VS_CINIT_F_TIME | VS_CINIT_F_PIDS)))) {
            killed = true;
            kill(-1, SIGKILL); /* the program's status comes with its reaping */
        }
        int64_t timeout = -1;
        if (!killed && o->time_limit_ms > 0)
            timeout = (int64_t)(o->time_limit_ms - (now - start));
        if (!killed && watch_pids && (timeout < 0 || timeout > POLL_MS))
            timeout = POLL_MS;
        if (killed)
            timeout = POLL_MS; /* a process forked during the kill: kill again */
        struct timespec ts = {.tv_sec = timeout / 1000, .tv_nsec = (timeout % 1000) * 1000000};
        struct pollfd pfd = {.fd = VS_CINIT_FD_REPORT, .events = POLLIN};
        int n = ppoll(&pfd, 1, timeout >= 0 ? &ts : NULL, &none);
        char msg = 0;
        if (n > 0 && (pfd.revents & POLLIN) && read(VS_CINIT_FD_REPORT, &msg, 1) == 1 &&
            msg == VS_CINIT_FINISH) {
            stop_requested = 1; /* ended like `podman stop`: the snapshot is taken */
        } else if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            /* The launcher died or gave up (end of file, hang-up, anything
             * but a request): nobody waits for a snapshot or a report. */
            kill_everything();
            _exit(137);
        }
        if (killed && n == 0)
            kill(-1, SIGKILL);
    }
}

int main(int argc, char **argv)
{
    if (getpid() != 1) {
        /* kill(-1) outside a pid namespace would reach every process of
         * the user. */
        dprintf(2, "vs-container-init: must run as pid 1 of a container (vs_podman_run)\n");
        return 127;
    }
    struct opts o;
    parse(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN); /* a closed snapshot reader is an error, not a death */
    /* Nothing in here may read or write our memory; Landlock wants
     * no_new_privs (podman's no-new-privileges sets it too). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        setup_failed("prctl: %s", strerror(errno));
    load_env();
    int version = cgroup_version();
    report.flags |= version == 2 ? VS_CINIT_F_CGROUP_V2 : version == 1 ? VS_CINIT_F_CGROUP_V1 : 0;
    check_limits(&o, version);
    if (mkdir(OUT_DIR, 0700) < 0 && errno != EEXIST)
        setup_failed("mkdir " OUT_DIR ": %s", strerror(errno));
    report.landlock_abi = vs_landlock_abi();

    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGTERM);
    struct sigaction term = {.sa_sigaction = on_term, .sa_flags = SA_SIGINFO};
    struct sigaction chld = {.sa_handler = on_child};
    if (sigprocmask(SIG_BLOCK, &block, &orig) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &chld, NULL) < 0)
        setup_failed("signals: %s", strerror(errno));
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) < 0)
        setup_failed("pipe: %s", strerror(errno));
    /* Above the descriptors the program gets (see run_program). */
    int errfd = fcntl(errp[1], F_DUPFD_CLOEXEC, 10);
    if (errfd < 0)
        setup_failed("pipe: %s", strerror(errno));
    close(errp[1]);

    uint64_t start = mono_ms();
    prog = fork();
    if (prog < 0)
        setup_failed("fork: %s", strerror(errno));
    if (prog == 0) {
        close(errp[0]);
        run_program(&o, errfd, &orig);
    }
    close(errfd);
    supervise(&o, version, start);
    kill_everything();

    char err[sizeof(report.error)];
    ssize_t n = read(errp[0], err, sizeof(err) - 1);
    close(errp[0]);
    if (n > 0) {
        err[n] = '\0';
        snprintf(report.error, sizeof(report.error), "%s", err);
        dprintf(2, "vs-container-init: %s\n", report.error);
    }

    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) == 0) {
        report.cpu_ms = (uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000 +
                        (uint64_t)ru.ru_stime.tv_sec * 1000 + (uint64_t)ru.ru_stime.tv_usec / 1000;
        report.peak_memory_bytes = (uint64_t)ru.ru_maxrss * 1024;
    }
    uint64_t v;
    if (read_limit(cg_file(version, CG "memory.peak", CG "memory/memory.max_usage_in_bytes"), &v) &&
        v != UINT64_MAX && v > report.peak_memory_bytes)
        report.peak_memory_bytes = v;
    if (read_key(cg_file(version, CG "memory.events", CG "memory/memory.oom_control"), "oom_kill",
                 &v))
        report.oom_kills = v;
    if (read_key(cg_file(version, CG "pids.events", CG "pids/pids.events"), "max", &v) && v > 0)
        report.flags |= VS_CINIT_F_PIDS_HIT;

    /* Nothing runs any more: the tree is what the program left. */
    if (o.snapshot && report.error[0] == '\0') {
        struct vs_snapshot_stats st;
        int rc = vs_snapshot_write(OUT_DIR, VS_CINIT_FD_SNAPSHOT, o.snapshot_max, &st);
        report.snapshot_errno = -rc;
        if (rc < 0)
            dprintf(2, "vs-container-init: snapshot: %s\n", strerror(-rc));
    }
    send_report();
    if (report.error[0] != '\0')
        return 127;
    return WIFSIGNALED(report.status) ? 128 + WTERMSIG(report.status) : WEXITSTATUS(report.status);
}
