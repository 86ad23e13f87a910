/*
 * test_hostile.c - the sandbox battery: vs-sandbox against a hostile
 * program (tests/sandbox/hostile, one static binary with a subcommand per
 * attack), busybox scripts and python3, each case run twice - as root and
 * rootless (a child that drops to uid/gid 65534 and executes copies of
 * vs-sandbox and of the hostile binary from a mkdtemp directory).
 *
 * Why it is built this way: a sandbox test that only checks "the program
 * failed" passes just as well when the protection is missing and the
 * program failed for another reason. So every case asserts HOW the attempt
 * was stopped: the errno the program saw (its "RESULT <what> <errno>"
 * lines), the syscall the seccomp supervisor named in denied_syscalls, the
 * kill_reason and exit status of vs-sandbox --json, or the state of the
 * host afterwards (a host process still alive, the host's hostname
 * unchanged, a host listener that saw no connection). Limits are asserted
 * per limits.mode: with a cgroup the sandbox is stopped, with rlimits the
 * program's own calls fail.
 *
 * The host side of the fixture: a secret file in a mkdtemp directory that
 * is never bound (its content must never show up in the program's output),
 * the same file open as fd 7 without close-on-exec in vs-sandbox, a
 * SECRET_TOKEN in vs-sandbox's environment, a `sleep` process, a TCP
 * listener on 127.0.0.1 and an abstract unix socket. Two cases look from
 * the host while the sandbox runs: a detached child must not outlive the
 * sandbox, and SIGKILL to vs-sandbox itself must take init and the program
 * with it (neither of which may run as host root). Every run is bounded
 * (--time-limit and a deadline here; survivors are killed by pid) and the
 * cases run in sequence; each prints one summary line (case, mode, how it
 * was stopped). Arguments name cases to run only those; VS_HOSTILE_KEEP=1
 * keeps the outputs. Needs root (it runs every case as root and as nobody).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "proc.h"

#ifndef VS_SANDBOX_BIN
#define VS_SANDBOX_BIN ""
#endif
#ifndef VS_HOSTILE_BIN
#define VS_HOSTILE_BIN ""
#endif

#define NOBODY 65534
#define UID_RANGE_BASE 1500000000u /* launch.c: host uids of sandboxes run by root */
#define RUN_DEADLINE_MS 40000      /* per vs-sandbox run, beyond its own --time-limit */
#define LEAKED_FD 7
#define MAX_ARGV 48
#define HOSTILE_IN "/opt/hostile"  /* where the hostile binary is bound inside */
#define SCRIPTS_IN "/opt/scripts"  /* where the busybox scripts are bound inside */
#define PY_THREADS                                                                         \
    "import json, threading\n"                                                             \
    "r = []\n"                                                                             \
    "ts = [threading.Thread(target=lambda i=i: r.append(i * i)) for i in range(4)]\n"      \
    "[t.start() for t in ts]\n"                                                            \
    "[t.join() for t in ts]\n"                                                             \
    "print(json.dumps({'squares': sorted(r)}))\n"
#define PY_DNS                                                                             \
    "import socket\n"                                                                      \
    "try:\n"                                                                               \
    "    print('RESULT pydns RESOLVED', socket.getaddrinfo('example.com', 80)[0][4])\n"    \
    "except socket.gaierror as e:\n"                                                       \
    "    print('RESULT pydns GAIERROR', e.errno)\n"

/* ---- the fixture ------------------------------------------------------------- */

static struct {
    char copies[64];      /* mkdtemp, 0755: vs-sandbox, hostile, scripts for nobody */
    char hostdir[64];     /* mkdtemp, never bound: the secret file */
    char hostfile[128];
    char secret[64];
    char sandbox_copy[128], hostile_copy[128], scripts_copy[128], scripts_src[256];
    char suid_copy[128];  /* the hostile binary, setuid root (04755, owned by root) */
    char orphan_token_root[64], orphan_token_nobody[64];
    char scratch[64];     /* outputs of the runs */
    pid_t sleeper;
    char sleeper_pid[16];
    int tcp_fd;           /* host listener on 127.0.0.1 */
    char tcp_port[16];
    int abs_fd;           /* host listener on an abstract unix socket */
    char abs_name[64];
    char hostname[256];
    int runs;
} fx;

struct sb {
    bool rootless;
    int status;           /* vs-sandbox's exit status; -1: killed at the deadline */
    char *out, *err;
    json_t *json;         /* the --json object, or NULL */
    const char *kill_reason, *mode;
    int exit_code, signal;
    bool pids_hit;
    long long wall_ms, host_uid;
    char denied[256];     /* "a,b,c" */
    char cmd[2048];       /* for messages */
    char seen[256];       /* launcher_killed: "pid:uid ..." of the sandbox's processes */
    bool seen_root;       /* ... one of which ran as host root */
};

static void sb_free(struct sb *r)
{
    free(r->out);
    free(r->err);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static int copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int o = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = in >= 0 && o >= 0 ? 0 : -1;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(o, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (o >= 0 && close(o) < 0)
        rc = -1;
    if (rc == 0 && chmod(dst, mode) < 0)
        rc = -1;
    return rc;
}

static void rm_rf(const char *dir)
{
    if (dir[0] != '/' || strncmp(dir, "/tmp/", 5) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* ---- running vs-sandbox ------------------------------------------------------ */

/* Placeholders in a case's options and argv. */
static const char *subst(const char *a, bool rootless)
{
    if (strcmp(a, "@H") == 0)
        return HOSTILE_IN;
    if (strcmp(a, "@FILE") == 0)
        return fx.hostfile;
    if (strcmp(a, "@PID") == 0)
        return fx.sleeper_pid;
    if (strcmp(a, "@PORT") == 0)
        return fx.tcp_port;
    if (strcmp(a, "@ABS") == 0)
        return fx.abs_name;
    if (strcmp(a, "@SUID") == 0)
        return fx.suid_copy;
    if (strcmp(a, "@TOKEN") == 0) /* one per mode: survivors of one run never count twice */
        return rootless ? fx.orphan_token_nobody : fx.orphan_token_root;
    if (strcmp(a, "@SCRIPTS") == 0)
        return rootless ? fx.scripts_copy : fx.scripts_src;
    return a;
}

static void parse_json(struct sb *r)
{
    /* the last line of stderr that is a JSON object */
    char *line = NULL;
    for (char *p = r->err; p != NULL && *p != '\0';) {
        if (*p == '{')
            line = p;
        char *nl = strchr(p, '\n');
        p = nl != NULL ? nl + 1 : NULL;
    }
    if (line == NULL)
        return;
    char *nl = strchr(line, '\n');
    size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
    json_error_t jerr;
    r->json = json_loadb(line, len, 0, &jerr);
    if (r->json == NULL)
        return;
    json_t *j = r->json;
    r->kill_reason = json_string_value(json_object_get(j, "kill_reason"));
    r->mode = json_string_value(json_object_get(json_object_get(j, "limits"), "mode"));
    r->exit_code = (int)json_integer_value(json_object_get(j, "exit_code"));
    r->signal = (int)json_integer_value(json_object_get(j, "signal"));
    r->pids_hit = json_is_true(json_object_get(j, "pids_limit_hit"));
    r->wall_ms = json_integer_value(json_object_get(j, "wall_ms"));
    r->host_uid = json_integer_value(json_object_get(j, "host_uid"));
    json_t *d = json_object_get(j, "denied_syscalls");
    for (size_t i = 0; i < json_array_size(d); i++) {
        size_t l = strlen(r->denied);
        snprintf(r->denied + l, sizeof(r->denied) - l, "%s%s", i > 0 ? "," : "",
                 json_string_value(json_array_get(d, i)));
    }
    if (r->kill_reason == NULL)
        r->kill_reason = "?";
    if (r->mode == NULL)
        r->mode = "?";
}

/* The host's view of the processes whose command line holds token (but
 * skip): "pid:uid" of each into r->seen, and whether any is host root. */
static void host_view_of(const char *token, pid_t skip, struct sb *r)
{
    DIR *d = opendir("/proc");
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == (int)skip)
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
        if (fd >= 0)
            close(fd);
        if (len <= 0 || memmem(buf, (size_t)len, token, strlen(token)) == NULL)
            continue;
        snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        char line[256];
        long ruid = -1, euid = -1;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, "Uid: %ld %ld", &ruid, &euid) == 2)
                break;
        if (f != NULL)
            fclose(f);
        size_t l = strlen(r->seen);
        snprintf(r->seen + l, sizeof(r->seen) - l, "%s%s:%ld", l > 0 ? " " : "", e->d_name, euid);
        if (ruid == 0 || euid == 0)
            r->seen_root = true;
    }
    if (d != NULL)
        closedir(d);
}

/* In vs-sandbox's child (stdio set up): the secret file open as fd 7
 * without close-on-exec, and for a rootless run uid/gid nobody. */
static int sandbox_child(void *arg)
{
    bool rootless = *(const bool *)arg;
    int leak = open(fx.hostfile, O_RDONLY); /* no O_CLOEXEC: a leaked descriptor */
    if (leak < 0 || dup2(leak, LEAKED_FD) < 0)
        return -1;
    if (rootless && (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
                     setresuid(NOBODY, NOBODY, NOBODY) < 0)) {
        dprintf(2, "test_hostile: cannot become nobody: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Run vs-sandbox run --json --time-limit T [opts] -- argv, as root or as
 * nobody, with fd 7 (the secret file) open and SECRET_TOKEN set. */
static void run_sandbox(bool rootless, const char *time_limit, const char *const *opts,
                        const char *const *argv, int kill_ms, struct sb *r)
{
    memset(r, 0, sizeof(*r));
    r->rootless = rootless;
    const char *av[MAX_ARGV + 1];
    size_t n = 0;
    av[n++] = rootless ? fx.sandbox_copy : VS_SANDBOX_BIN;
    av[n++] = "run";
    av[n++] = "--json";
    av[n++] = "--time-limit";
    av[n++] = time_limit;
    av[n++] = "--ro-bind";
    av[n++] = rootless ? fx.hostile_copy : VS_HOSTILE_BIN;
    av[n++] = HOSTILE_IN;
    for (size_t i = 0; opts != NULL && opts[i] != NULL && n < MAX_ARGV - 8; i++)
        av[n++] = subst(opts[i], rootless);
    av[n++] = "--";
    for (size_t i = 0; argv[i] != NULL && n < MAX_ARGV; i++)
        av[n++] = subst(argv[i], rootless);
    av[n] = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(r->cmd);
        snprintf(r->cmd + l, sizeof(r->cmd) - l, "%s%s", i > 0 ? " " : "", av[i]);
    }

    char out[128], err[128];
    int id = ++fx.runs;
    snprintf(out, sizeof(out), "%s/out.%d", fx.scratch, id);
    snprintf(err, sizeof(err), "%s/err.%d", fx.scratch, id);
    static const char *const env[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                      "SECRET_TOKEN=xyz", "HOME=/nonexistent", NULL};
    struct vs_spawn sp = {.argv = av, .env = env, .out = out, .err = err,
                          .child = sandbox_child, .arg = &rootless, .keep_fd = LEAKED_FD};
    pid_t pid = vs_proc_start(&sp);
    assert_true(pid >= 0);
    int st = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r->status = -1;
    bool killed = false;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (kill_ms > 0 && ms >= kill_ms && !killed) {
            /* first look from the host at what runs in the sandbox */
            for (size_t i = 0; argv[i] != NULL; i++)
                if (strcmp(argv[i], "@TOKEN") == 0)
                    host_view_of(subst(argv[i], rootless), pid, r);
            kill(pid, SIGKILL); /* the launcher dies: the sandbox must die with it */
            killed = true;
            continue;
        }
        if (ms > RUN_DEADLINE_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        usleep(5000);
    }
    r->out = vs_slurp(out);
    r->err = vs_slurp(err);
    parse_json(r);
}

/* ---- assertions ---------------------------------------------------------------- */

static const char *mode_name(const struct sb *r)
{
    return r->rootless ? "rootless" : "root";
}

/* A failed check is reported with the run's command and output (once per
 * run) and counted; test_case fails after both modes ran, so a report
 * always says how root and rootless each fared. */
static int failures;
static const struct sb *context_shown;

__attribute__((format(printf, 2, 3))) static void failf(const struct sb *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    failures++;
    print_error("[%s] %s\n", mode_name(r), msg);
    if (context_shown != r) {
        context_shown = r;
        print_error("  command: %s\n  status: %d\n  stdout:\n%s\n  stderr:\n%s\n", r->cmd,
                    r->status, r->out, r->err);
    }
}

#define CHECK(r, cond, ...)             \
    do {                                \
        if (!(cond))                    \
            failf((r), __VA_ARGS__);    \
    } while (0)

static bool has_line(const struct sb *r, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = r->out; p != NULL && *p != '\0';) {
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0' || p[n] == ' '))
            return true;
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return false;
}

/* The value after "RESULT what " (up to the end of the line), or "". */
static const char *result_of(const struct sb *r, const char *what, char *buf, size_t size)
{
    char key[128];
    snprintf(key, sizeof(key), "RESULT %s ", what);
    buf[0] = '\0';
    const char *p = strstr(r->out, key);
    while (p != NULL && p != r->out && p[-1] != '\n')
        p = strstr(p + 1, key);
    if (p == NULL)
        return buf;
    p += strlen(key);
    size_t n = strcspn(p, "\n");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p);
    return buf;
}

/* RESULT what is exactly one of the space-separated alternatives in any. */
static void expect_result(const struct sb *r, const char *what, const char *any)
{
    char got[256], alts[256];
    result_of(r, what, got, sizeof(got));
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(got, " "), got);
    snprintf(alts, sizeof(alts), "%s", any);
    for (char *save = NULL, *a = strtok_r(alts, " ", &save); a != NULL;
         a = strtok_r(NULL, " ", &save))
        if (strcmp(first, a) == 0)
            return;
    failf(r, "RESULT %s: expected one of {%s}, got '%s'", what, any, got[0] ? got : "(no line)");
}

static bool denied_has(const struct sb *r, const char *name)
{
    char list[300];
    snprintf(list, sizeof(list), ",%s,", r->denied);
    char key[64];
    snprintf(key, sizeof(key), ",%s,", name);
    return strstr(list, key) != NULL;
}

static void expect_denied(const struct sb *r, const char *name)
{
    CHECK(r, denied_has(r, name), "denied_syscalls should name '%s', has [%s]", name, r->denied);
}

static void expect_not_denied(const struct sb *r, const char *name)
{
    CHECK(r, !denied_has(r, name), "denied_syscalls should not name '%s' (the kernel, not the "
          "filter, must refuse it), has [%s]", name, r->denied);
}

static void expect_status(const struct sb *r, int status)
{
    CHECK(r, r->status == status, "vs-sandbox exit status %d, expected %d", r->status, status);
}

static void expect_kill(const struct sb *r, const char *reason)
{
    CHECK(r, r->kill_reason != NULL && strcmp(r->kill_reason, reason) == 0,
          "kill_reason '%s', expected '%s'", r->kill_reason ? r->kill_reason : "(none)", reason);
}

static bool mode_is_cgroup(const struct sb *r)
{
    return r->mode != NULL && strncmp(r->mode, "cgroup", 6) == 0;
}

/* What every run must satisfy. */
static void common_checks(const struct sb *r)
{
    CHECK(r, r->status >= 0, "vs-sandbox did not finish within %d ms", RUN_DEADLINE_MS);
    CHECK(r, r->json != NULL, "no JSON object on stderr");
    CHECK(r, json_object_get(r->json, "setup_error") == NULL, "setup_error: %s",
          json_string_value(json_object_get(r->json, "setup_error")));
    CHECK(r, r->status != 200 && r->status != 210, "setup/usage failure %d", r->status);
    CHECK(r, strstr(r->out, "LEAK") == NULL, "the program reported a leak");
    CHECK(r, strstr(r->out, fx.secret) == NULL && strstr(r->err, fx.secret) == NULL,
          "the host's secret file content reached the output");
    CHECK(r, strstr(r->out, "SECRET_TOKEN") == NULL, "SECRET_TOKEN reached the program");
    /* never host root: a uid from the dedicated range as root, our own rootless */
    CHECK(r, r->host_uid != 0, "host_uid is 0");
    if (r->rootless)
        CHECK(r, r->host_uid == NOBODY, "rootless host_uid %lld, expected %d", r->host_uid, NOBODY);
    else
        CHECK(r, r->host_uid >= UID_RANGE_BASE, "root-mode host_uid %lld is not in the range",
              r->host_uid);
}

/* A normal ending (the program ran to its end with status 0) */
static void expect_clean(const struct sb *r)
{
    expect_status(r, 0);
    expect_kill(r, "none");
}

/* "RESULT what EPERM" and `what` named by the supervisor. */
static void expect_named(const struct sb *r, const char *what, const char *syscall_name)
{
    expect_clean(r);
    expect_result(r, what, "EPERM");
    expect_denied(r, syscall_name);
}

/* ---- the cases ------------------------------------------------------------------- */

#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NET OPTS("--preset", "network")
#define COMPUTE OPTS("--preset", "compute")

struct hcase {
    const char *name;
    const char *time_limit;
    const char *const *opts;
    const char *const *argv;
    void (*check)(const struct sb *r);
    const char *how; /* for the summary line */
};

static void ck_shadow(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "shadow", "ENOENT");
}

static void ck_hostfile(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "hostfile", "ENOENT");
    expect_result(r, "hostdir", "ENOENT");
}

static void ck_write_usr(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "write_usr", "EROFS");
    expect_result(r, "write_usr_existing", "EROFS EACCES");
}

static void ck_write_root(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "write_root", "EROFS");
    expect_result(r, "mkdir_root", "EROFS");
}

static void ck_dotdot(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "dotdot_shadow", "ENOENT");
    expect_result(r, "dotdot_hostfile", "ENOENT");
    expect_result(r, "dotdot_cwd", "/");
}

static void ck_symlink(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "symlink_shadow", "ENOENT");
    expect_result(r, "symlink_hostfile", "ENOENT");
}

static void ck_proc1root(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "proc1root", "EACCES ENOENT");
    expect_result(r, "proc1root_shadow", "EACCES ENOENT");
    expect_result(r, "procselfroot", "ENOENT");
    expect_result(r, "proc1cwd", "EACCES ENOENT");
    expect_result(r, "proc1fd", "EACCES");
    expect_result(r, "proc1mem", "EACCES");
    expect_result(r, "proc1exe_write", "EACCES");
    expect_result(r, "proc1exe_read", "EACCES");
    expect_result(r, "selfexe_write", "ETXTBSY EROFS EACCES");
}

static void ck_procfd(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "procfd", "ENOENT");
}

static void ck_mknod(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "mknod", "EPERM");
    expect_result(r, "mknod_blk", "EPERM");
    expect_result(r, "mkfifo", "OK");
    expect_not_denied(r, "mknod");
    expect_not_denied(r, "mknodat");
}

static void ck_sys(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "sys_write", "ENOENT");
    expect_result(r, "sys_stat", "ENOENT");
    expect_result(r, "sys_cgroup", "ENOENT");
}

/* A kernel without the file (CONFIG_MAGIC_SYSRQ, CONFIG_PROC_KCORE unset)
 * has nothing to mask: ENOENT is then the right answer, and only then. */
static bool host_has(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void ck_sysrq(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "sysrq", host_has("/proc/sysrq-trigger") ? "MASKED_NULL EACCES EROFS EPERM"
                                                              : "ENOENT");
    expect_result(r, "procsys_write", "EACCES EROFS");
}

#define MASKED "kcore", "keys", "key-users", "timer_list", "kallsyms", "vmallocinfo", \
               "config.gz", "modules", "slabinfo", "iomem"

static void ck_procmask(const struct sb *r)
{
    static const char *const names[] = {MASKED};
    expect_clean(r);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char what[64], host[64];
        snprintf(what, sizeof(what), "mask_%s", names[i]);
        snprintf(host, sizeof(host), "/proc/%s", names[i]);
        expect_result(r, what, host_has(host) ? "MASKED_NULL EACCES EPERM" : "ENOENT");
    }
}

static void ck_chroot(const struct sb *r) { expect_named(r, "chroot", "chroot"); }
static void ck_pivot_root(const struct sb *r) { expect_named(r, "pivot_root", "pivot_root"); }
static void ck_mount(const struct sb *r) { expect_named(r, "mount", "mount"); }
static void ck_unshare(const struct sb *r) { expect_named(r, "unshare", "unshare"); }
static void ck_setns(const struct sb *r) { expect_named(r, "setns", "setns"); }
static void ck_ptrace(const struct sb *r) { expect_named(r, "ptrace", "ptrace"); }

static void ck_creds(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "creds", "OK");
    CHECK(r, has_line(r, "RESULT creds OK uid=1000 euid=1000"), "not uid 1000 inside");
}

static void ck_capset(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "capset", "EPERM");
    /* EINVAL rootless: uid 0 is not even mapped in the namespace */
    expect_result(r, "setuid0", "EPERM EINVAL");
    expect_result(r, "setresuid0", "EPERM EINVAL");
    expect_not_denied(r, "capset");
}

static void ck_clone3(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "clone3", "ENOSYS");
    expect_not_denied(r, "clone3");
}

static void ck_clone_newuser(const struct sb *r)
{
    expect_named(r, "clone_newuser", "clone");
    expect_result(r, "clone_newuser_high", "EPERM");
}

static void ck_forkbomb(const struct sb *r)
{
    if (mode_is_cgroup(r)) {
        expect_status(r, 203);
        expect_kill(r, "pids");
        CHECK(r, r->pids_hit, "pids_limit_hit is false");
    } else {
        expect_clean(r);
        expect_result(r, "forkbomb", "EAGAIN");
        char got[128];
        result_of(r, "forkbomb", got, sizeof(got));
        const char *n = strstr(got, "n=");
        CHECK(r, n != NULL && atoi(n + 2) < 32, "more than 32 processes: %s", got);
    }
}

static void ck_membomb(const struct sb *r)
{
    if (mode_is_cgroup(r)) {
        expect_status(r, 202);
        expect_kill(r, "memory");
    } else {
        expect_clean(r);
        expect_result(r, "membomb", "ENOMEM");
        char got[128];
        result_of(r, "membomb", got, sizeof(got));
        const char *m = strstr(got, "mib=");
        CHECK(r, m != NULL && atoi(m + 4) <= 64, "more than 64 MiB mapped: %s", got);
    }
}

static void ck_diskbomb(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "diskbomb", "ENOSPC EFBIG");
    char got[128];
    result_of(r, "diskbomb", got, sizeof(got));
    const char *t = strstr(got, "total=");
    CHECK(r, t != NULL && atol(t + 6) <= 8L * 1024 * 1024 + 64 * 1024 &&
                 atol(t + 6) >= 6L * 1024 * 1024,
          "the workspace held %s (8 MiB expected)", got);
}

static void ck_cpuspin(const struct sb *r)
{
    expect_status(r, 201);
    expect_kill(r, "time");
    CHECK(r, r->wall_ms >= 900 && r->wall_ms < 5000, "wall_ms %lld", r->wall_ms);
    CHECK(r, has_line(r, "RESULT cpuspin STARTED"), "the program never started");
}

static void ck_tcp(const struct sb *r)
{
    expect_named(r, "tcp", "socket");
    expect_result(r, "udp6", "EPERM");
}

static void ck_connect(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "connect_loopback", "ENETUNREACH ECONNREFUSED");
    expect_result(r, "connect_external", "ENETUNREACH");
    int c = accept4(fx.tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
        close(c);
    CHECK(r, c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
          "the host's listener on 127.0.0.1:%s got a connection from the sandbox", fx.tcp_port);
}

static void ck_abstract(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "abstract", "ECONNREFUSED ENOENT");
    int c = accept4(fx.abs_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0)
        close(c);
    CHECK(r, c < 0, "the host's abstract socket got a connection from the sandbox");
}

static void ck_dns(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "resolv_conf", "ENOENT");
    expect_result(r, "dns_public", "ENETUNREACH");
    expect_result(r, "dns_local", "ENETUNREACH");
}

static void ck_pydns(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "pydns", "GAIERROR");
}

static void ck_netlink(const struct sb *r) { expect_named(r, "netlink", "socket"); }
static void ck_packet(const struct sb *r) { expect_named(r, "packet", "socket"); }
static void ck_io_uring(const struct sb *r) { expect_named(r, "io_uring_setup", "io_uring_setup"); }
static void ck_userfaultfd(const struct sb *r) { expect_named(r, "userfaultfd", "userfaultfd"); }
static void ck_bpf(const struct sb *r) { expect_named(r, "bpf", "bpf"); }
static void ck_keyctl(const struct sb *r) { expect_named(r, "keyctl", "keyctl"); }
static void ck_perf(const struct sb *r) { expect_named(r, "perf_event_open", "perf_event_open"); }

static void ck_tiocsti(const struct sb *r)
{
    expect_named(r, "tiocsti", "ioctl");
    expect_result(r, "tiocsti_high", "EPERM");
}

static void ck_foreign_abi(const struct sb *r, const char *what)
{
    char line[64];
    snprintf(line, sizeof(line), "RESULT %s ATTEMPT", what);
    CHECK(r, has_line(r, line), "the program never tried");
    snprintf(line, sizeof(line), "RESULT %s EXECUTED", what);
    CHECK(r, !has_line(r, line), "the foreign-ABI system call ran and returned");
    expect_status(r, 204);
    expect_kill(r, "seccomp");
    CHECK(r, r->signal == SIGSYS, "signal %d, expected SIGSYS", r->signal);
}

static void ck_int80(const struct sb *r) { ck_foreign_abi(r, "int80"); }
static void ck_x32(const struct sb *r) { ck_foreign_abi(r, "x32"); }
static void ck_personality(const struct sb *r) { expect_named(r, "personality", "personality"); }

static void ck_hostpid(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "hostpid", "ESRCH");
    char got[64];
    result_of(r, "procs", got, sizeof(got));
    CHECK(r, got[0] != '\0' && atoi(got) > 0 && atoi(got) < 5, "/proc shows %s processes", got);
}

static void ck_killhost(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "killhost", "ESRCH");
    expect_result(r, "killinit", "OK EPERM");
    CHECK(r, waitpid(fx.sleeper, NULL, WNOHANG) == 0 && kill(fx.sleeper, 0) == 0,
          "the host process %d is gone", (int)fx.sleeper);
}

static void ck_hostname(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "sethostname", "OK EPERM ENOSYS");
    expect_result(r, "nodename", "vs-sandbox");
    char now[256] = "";
    gethostname(now, sizeof(now));
    CHECK(r, strcmp(now, fx.hostname) == 0, "the host's hostname changed: '%s' -> '%s'",
          fx.hostname, now);
}

static void ck_fds(const struct sb *r)
{
    expect_clean(r);
    CHECK(r, has_line(r, "RESULT fds EBADF open=none stdio=3"), "descriptors beyond 0-2 are open");
}

static void ck_fds_cmd(const struct sb *r)
{
    expect_clean(r);
    CHECK(r, has_line(r, "RESULT fds EBADF open=3 stdio=3"),
          "with --command-fd only fd 3 may be open beyond 0-2");
}

static void ck_env(const struct sb *r)
{
    expect_clean(r);
    CHECK(r, has_line(r, "RESULT env n=1 FOO=bar"), "the environment is not exactly FOO=bar");
}

static void ck_suid(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "usr_nosuid_mount", "YES");
    expect_result(r, "suid_nosuid_mount", "YES");
    CHECK(r, has_line(r, "RESULT whoami uid=1000 euid=1000 suid=1000"),
          "the setuid-root binary changed the program's uids");
}

/* Processes on the host whose command line holds token; with kill_them,
 * SIGKILL each (by pid: they are the survivors of our own run). */
static int count_token(const char *token, bool kill_them)
{
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
        if (fd >= 0)
            close(fd);
        if (len > 0 && memmem(buf, (size_t)len, token, strlen(token)) != NULL) {
            n++;
            if (kill_them)
                kill((pid_t)atoi(e->d_name), SIGKILL);
        }
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static void ck_orphan(const struct sb *r)
{
    const char *token = r->rootless ? fx.orphan_token_nobody : fx.orphan_token_root;
    CHECK(r, r->status == 128 + SIGKILL, "vs-sandbox status %d, expected to be killed",
          r->status);
    CHECK(r, has_line(r, "RESULT cpuspin STARTED"), "the program was not running yet");
    /* seen from the host: init and the program, never as host root */
    CHECK(r, r->seen[0] != '\0' && strchr(r->seen, ' ') != NULL,
          "expected init and the program on the host, saw '%s'", r->seen);
    CHECK(r, !r->seen_root, "a sandboxed process runs as host root: %s", r->seen);
    int left = -1;
    for (int i = 0; i < 60 && left != 0; i++) {
        left = count_token(token, false);
        if (left != 0)
            usleep(50 * 1000);
    }
    if (left != 0)
        count_token(token, true); /* do not leave them spinning */
    CHECK(r, left == 0,
          "%d process(es) of the sandbox (its init and the program) outlived the killed "
          "launcher by 3 s", left);
}

static void ck_daemon(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "daemon", "LEFT");
    const char *token = r->rootless ? fx.orphan_token_nobody : fx.orphan_token_root;
    int left = -1;
    for (int i = 0; i < 60 && left != 0; i++) {
        left = count_token(token, false);
        if (left != 0)
            usleep(50 * 1000);
    }
    if (left != 0)
        count_token(token, true);
    CHECK(r, left == 0, "%d detached process(es) outlived the sandbox", left);
}

static void ck_cpulimit(const struct sb *r)
{
    expect_status(r, 205);
    expect_kill(r, "cpu");
    CHECK(r, r->signal == SIGXCPU || r->signal == SIGKILL, "signal %d", r->signal);
    CHECK(r, r->wall_ms < 5000, "wall_ms %lld", r->wall_ms);
}

static void ck_tmpbomb(const struct sb *r)
{
    static const char *const dirs[] = {"fill/tmp", "fill/dev/shm"};
    expect_clean(r);
    for (size_t i = 0; i < 2; i++) {
        char got[128];
        expect_result(r, dirs[i], "ENOSPC");
        result_of(r, dirs[i], got, sizeof(got));
        const char *t = strstr(got, "total=");
        CHECK(r, t != NULL && atol(t + 6) <= 4L * 1024 * 1024 + 64 * 1024,
              "%s held %s (4 MiB expected)", dirs[i], got);
    }
}

static void ck_ok(const struct sb *r)
{
    expect_clean(r);
    expect_result(r, "ok", "OK");
    CHECK(r, r->denied[0] == '\0', "a well-behaved static program had denials: [%s]", r->denied);
}

static void ck_busybox(const struct sb *r)
{
    static const char *const want =
        "lines 5\n"
        "first line 5\n"
        "sha aad281b9f8f7d3e2\n"
        "tar 8\n"
        "ls out \n"
        "out all.txt\n"
        "whoami 1000:1000 /workspace\n"
        "RESULT busybox OK\n";
    expect_clean(r);
    CHECK(r, strcmp(r->out, want) == 0, "busybox output differs from:\n%s", want);
}

static void ck_escape(const struct sb *r)
{
    expect_clean(r);
    static const char *const refused[] = {"shadow", "write_etc", "write_usr", "mount",
                                          "chroot", "wget", "nc", "hostname"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        expect_result(r, refused[i], "REFUSED");
    expect_result(r, "hostname_now", "vs-sandbox");
    expect_result(r, "sys", "0");
    expect_result(r, "escape", "DONE");
    expect_denied(r, "mount");
    expect_denied(r, "chroot");
    expect_denied(r, "socket");
    char got[64];
    result_of(r, "procs", got, sizeof(got));
    CHECK(r, atoi(got) > 0 && atoi(got) < 8, "/proc shows %s processes", got);
}

static void ck_py_compute(const struct sb *r)
{
    expect_clean(r);
    CHECK(r, strcmp(r->out, "{\"squares\": [0, 1, 4, 9]}\n") == 0, "python3 output");
    expect_not_denied(r, "clone");
}

static void ck_py_minimal(const struct sb *r)
{
    CHECK(r, r->status == 1, "python3 under minimal should fail with status 1 (can't start a "
          "thread), got %d", r->status);
    expect_kill(r, "none");
    expect_denied(r, "clone");
    CHECK(r, strstr(r->err, "can't start new thread") != NULL, "python3 did not report the "
          "refused thread");
}

static const struct hcase cases[] = {
    /* files */
    {"shadow", "10", NULL, ARGV("@H", "shadow"), ck_shadow, "ENOENT (not in the sandbox)"},
    {"hostfile", "10", NULL, ARGV("@H", "hostfile", "@FILE"), ck_hostfile, "ENOENT (not bound)"},
    {"write_usr", "10", NULL, ARGV("@H", "write_usr"), ck_write_usr, "EROFS"},
    {"write_root", "10", NULL, ARGV("@H", "write_root"), ck_write_root, "EROFS"},
    {"dotdot", "10", NULL, ARGV("@H", "dotdot", "@FILE"), ck_dotdot, "ENOENT, .. ends at /"},
    {"symlink", "10", NULL, ARGV("@H", "symlink", "@FILE"), ck_symlink, "ENOENT"},
    {"proc1root", "10", NULL, ARGV("@H", "proc1root", "@FILE"), ck_proc1root,
     "EACCES/ENOENT"},
    {"procfd", "10", NULL, ARGV("@H", "procfd"), ck_procfd, "ENOENT (no such fd)"},
    {"mknod", "10", NULL, ARGV("@H", "mknod"), ck_mknod, "EPERM (kernel), FIFO ok"},
    {"sys", "10", NULL, ARGV("@H", "sys"), ck_sys, "ENOENT (no /sys)"},
    {"sysrq", "10", NULL, ARGV("@H", "sysrq"), ck_sysrq, "masked / unwritable"},
    {"procmask", "10", NULL, ARGV("@H", "procmask", MASKED), ck_procmask,
     "/dev/null on top (ENOENT where the kernel lacks it)"},
    /* privilege */
    {"chroot", "10", NULL, ARGV("@H", "chroot"), ck_chroot, "EPERM named chroot"},
    {"pivot_root", "10", NULL, ARGV("@H", "pivot_root"), ck_pivot_root, "EPERM named"},
    {"mount", "10", NULL, ARGV("@H", "mount"), ck_mount, "EPERM named mount"},
    {"unshare", "10", NULL, ARGV("@H", "unshare"), ck_unshare, "EPERM named unshare"},
    {"setns", "10", NULL, ARGV("@H", "setns"), ck_setns, "EPERM named setns"},
    {"ptrace", "10", NULL, ARGV("@H", "ptrace"), ck_ptrace, "EPERM named ptrace"},
    {"creds", "10", NULL, ARGV("@H", "creds"), ck_creds, "uid 1000, no caps, NoNewPrivs"},
    {"capset", "10", NULL, ARGV("@H", "capset"), ck_capset, "EPERM (kernel)"},
    {"clone3", "10", NULL, ARGV("@H", "clone3"), ck_clone3, "ENOSYS"},
    {"clone_newuser", "10", NULL, ARGV("@H", "clone_newuser"), ck_clone_newuser,
     "EPERM named clone"},
    {"log_mode_mount", "10", OPTS("--seccomp-log"), ARGV("@H", "mount"), ck_mount,
     "--seccomp-log: still EPERM named mount"},
    /* resources */
    {"forkbomb", "10", OPTS("--pids", "32"), ARGV("@H", "forkbomb"), ck_forkbomb,
     "pids (cgroup) / EAGAIN (rlimit)"},
    {"membomb", "10", OPTS("--mem", "64"), ARGV("@H", "membomb"), ck_membomb,
     "memory (cgroup) / ENOMEM (rlimit)"},
    {"diskbomb", "10", OPTS("--workspace-size", "8"), ARGV("@H", "diskbomb"), ck_diskbomb,
     "ENOSPC/EFBIG <= 8 MiB"},
    {"cpuspin", "1", NULL, ARGV("@H", "cpuspin"), ck_cpuspin, "time, 201"},
    {"cpu_limit", "10", OPTS("--cpu-limit", "1"), ARGV("@H", "cpuspin"), ck_cpulimit,
     "cpu, 205"},
    {"tmp_bomb", "10", OPTS("--tmp-size", "4"), ARGV("@H", "diskbomb", "/tmp", "/dev/shm"),
     ck_tmpbomb, "ENOSPC <= 4 MiB each"},
    {"daemon", "10", NULL, ARGV("@H", "daemon", "@TOKEN"), ck_daemon,
     "detached child dies with the sandbox"},
    /* network */
    {"tcp_minimal", "10", NULL, ARGV("@H", "tcp"), ck_tcp, "EPERM named socket"},
    {"connect", "10", NET, ARGV("@H", "connect", "@PORT"), ck_connect,
     "ENETUNREACH, host listener untouched"},
    {"abstract_unix", "10", NET, ARGV("@H", "abstract", "@ABS"), ck_abstract,
     "ECONNREFUSED (other netns)"},
    {"dns", "10", NET, ARGV("@H", "dns"), ck_dns, "no resolv.conf, ENETUNREACH"},
    {"py_getaddrinfo", "10", NET, ARGV("/usr/bin/python3", "-c", PY_DNS), ck_pydns,
     "gaierror"},
    {"netlink", "10", NET, ARGV("@H", "netlink"), ck_netlink, "EPERM named socket"},
    {"packet", "10", NET, ARGV("@H", "packet"), ck_packet, "EPERM named socket"},
    /* kernel surface */
    {"io_uring", "10", NULL, ARGV("@H", "io_uring"), ck_io_uring, "EPERM named"},
    {"userfaultfd", "10", NULL, ARGV("@H", "userfaultfd"), ck_userfaultfd, "EPERM named"},
    {"bpf", "10", NULL, ARGV("@H", "bpf"), ck_bpf, "EPERM named"},
    {"keyctl", "10", NULL, ARGV("@H", "keyctl"), ck_keyctl, "EPERM named"},
    {"perf", "10", NULL, ARGV("@H", "perf"), ck_perf, "EPERM named"},
    {"tiocsti", "10", NULL, ARGV("@H", "tiocsti"), ck_tiocsti, "EPERM named ioctl"},
    {"int80", "10", NULL, ARGV("@H", "int80"), ck_int80, "SIGSYS, seccomp, 204"},
    {"x32", "10", NULL, ARGV("@H", "x32"), ck_x32, "SIGSYS, seccomp, 204"},
    {"personality", "10", NULL, ARGV("@H", "personality"), ck_personality, "EPERM named"},
    /* the host */
    {"hostpid", "10", NULL, ARGV("@H", "hostpid", "@PID"), ck_hostpid, "ESRCH, own /proc"},
    {"killhost", "10", NULL, ARGV("@H", "killhost", "@PID"), ck_killhost,
     "ESRCH, host process alive"},
    {"hostname", "10", NULL, ARGV("@H", "hostname"), ck_hostname, "host hostname unchanged"},
    {"fds", "10", NULL, ARGV("@H", "fds"), ck_fds, "EBADF beyond 2 (fd 7 leaked in)"},
    {"fds_cmdfd", "10", OPTS("--command-fd", "7"), ARGV("@H", "fds"), ck_fds_cmd,
     "only fd 3 beyond 2"},
    {"env", "10", OPTS("--setenv", "FOO", "bar"), ARGV("@H", "env"), ck_env,
     "only --setenv"},
    {"setuid_exec", "10", OPTS("--ro-bind", "@SUID", "/opt/suid"),
     ARGV("@H", "suid", "/opt/suid"), ck_suid, "nosuid + NNP: euid stays 1000"},
    {"launcher_killed", "20", NULL, ARGV("@H", "cpuspin", "@TOKEN"), ck_orphan,
     "SIGKILL vs-sandbox: nothing survives"},
    /* real programs */
    {"static_ok", "10", NULL, ARGV("@H", "ok"), ck_ok, "runs, no denials"},
    {"busybox_files", "10", OPTS("--ro-bind", "@SCRIPTS", SCRIPTS_IN, "--setenv", "PATH",
                                 "/usr/bin:/bin"),
     ARGV("/bin/busybox", "sh", SCRIPTS_IN "/files.sh"), ck_busybox, "runs"},
    {"busybox_escape", "10", OPTS("--ro-bind", "@SCRIPTS", SCRIPTS_IN, "--setenv", "PATH",
                                  "/usr/bin:/bin"),
     ARGV("/bin/busybox", "sh", SCRIPTS_IN "/escape.sh"), ck_escape, "all refused"},
    {"python_compute", "10", COMPUTE, ARGV("/usr/bin/python3", "-c", PY_THREADS), ck_py_compute,
     "runs (threads, json)"},
    {"python_minimal", "10", NULL, ARGV("/usr/bin/python3", "-c", PY_THREADS), ck_py_minimal,
     "EPERM named clone"},
};

static void summary(const struct hcase *c, const struct sb *r)
{
    char results[512] = "";
    for (const char *p = r->out; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, "\n");
        if (strncmp(p, "RESULT ", 7) == 0 && strlen(results) + n < sizeof(results) - 4) {
            size_t l = strlen(results);
            snprintf(results + l, sizeof(results) - l, "%s%.*s", l > 0 ? "; " : "",
                     (int)(n - 7), p + 7);
        }
        p = p[n] != '\0' ? p + n + 1 : NULL;
    }
    printf("hostile: %-15s %-8s status=%-3d kill=%-7s mode=%-9s denied=[%s] wall=%lldms | %s | %s\n",
           c->name, mode_name(r), r->status, r->kill_reason ? r->kill_reason : "?",
           r->mode ? r->mode : "?", r->denied, r->wall_ms, c->how, results);
    if (r->seen[0] != '\0')
        printf("hostile: %-15s %-8s on the host before the kill (pid:euid): %s\n", c->name,
               mode_name(r), r->seen);
    fflush(stdout);
}

/* The case that kills vs-sandbox itself (after 500 ms) instead of letting
 * it report. */
static int kill_launcher_ms(const struct hcase *c)
{
    return c->check == ck_orphan ? 500 : 0;
}

static void test_case(void **state)
{
    const struct hcase *c = *state;
    failures = 0;
    for (int rootless = 0; rootless < 2; rootless++) {
        struct sb r;
        run_sandbox(rootless != 0, c->time_limit, c->opts, c->argv, kill_launcher_ms(c), &r);
        summary(c, &r);
        int before = failures;
        if (kill_launcher_ms(c) == 0) /* a killed launcher writes no report */
            common_checks(&r);
        if (failures == before) /* the case's own checks need a report to read */
            c->check(&r);
        context_shown = NULL;
        sb_free(&r);
    }
    if (failures > 0)
        fail_msg("%s: %d check(s) failed", c->name, failures);
}

/* ---- the host side ----------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (VS_SANDBOX_BIN[0] == '\0' || VS_HOSTILE_BIN[0] == '\0') {
        print_error("test_hostile: built without VS_SANDBOX_BIN/VS_HOSTILE_BIN: the "
                    "battery cannot run (tests/CMakeLists.txt must define them)\n");
        return -1;
    }
    if (geteuid() != 0) {
        print_error("test_hostile: must run as root (it runs every case as root and as "
                    "nobody)\n");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(fx.copies, sizeof(fx.copies), "/tmp/vs-hostile-bin.XXXXXX");
    snprintf(fx.hostdir, sizeof(fx.hostdir), "/tmp/vs-hostile-host.XXXXXX");
    snprintf(fx.scratch, sizeof(fx.scratch), "/tmp/vs-hostile-out.XXXXXX");
    if (mkdtemp(fx.copies) == NULL || mkdtemp(fx.hostdir) == NULL || mkdtemp(fx.scratch) == NULL)
        return -1;
    /* nobody reads the copies; the host directory stays readable by nobody
     * too, so that "not reachable" is the sandbox's doing, not permissions */
    if (chmod(fx.copies, 0755) < 0 || chmod(fx.hostdir, 0755) < 0)
        return -1;
    snprintf(fx.sandbox_copy, sizeof(fx.sandbox_copy), "%s/vs-sandbox", fx.copies);
    snprintf(fx.hostile_copy, sizeof(fx.hostile_copy), "%s/hostile", fx.copies);
    snprintf(fx.scripts_copy, sizeof(fx.scripts_copy), "%s/scripts", fx.copies);
    snprintf(fx.suid_copy, sizeof(fx.suid_copy), "%s/hostile-suid", fx.copies);
    snprintf(fx.orphan_token_root, sizeof(fx.orphan_token_root), "vs-hostile-orphan-%d-asroot",
             (int)getpid());
    snprintf(fx.orphan_token_nobody, sizeof(fx.orphan_token_nobody),
             "vs-hostile-orphan-%d-asnobody", (int)getpid());
    snprintf(fx.scripts_src, sizeof(fx.scripts_src), "%s/tests/sandbox/busybox", VS_SOURCE_DIR);
    if (copy_file(VS_SANDBOX_BIN, fx.sandbox_copy, 0755) < 0 ||
        copy_file(VS_HOSTILE_BIN, fx.hostile_copy, 0755) < 0 ||
        copy_file(VS_HOSTILE_BIN, fx.suid_copy, 04755) < 0 || mkdir(fx.scripts_copy, 0755) < 0)
        return -1;
    static const char *const scripts[] = {"files.sh", "escape.sh"};
    for (size_t i = 0; i < 2; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof(src), "%s/%s", fx.scripts_src, scripts[i]);
        snprintf(dst, sizeof(dst), "%s/%s", fx.scripts_copy, scripts[i]);
        if (copy_file(src, dst, 0644) < 0)
            return -1;
    }

    unsigned rnd = 0;
    if (syscall(SYS_getrandom, &rnd, sizeof(rnd), 0) < 0)
        rnd = (unsigned)getpid();
    snprintf(fx.secret, sizeof(fx.secret), "HOSTSECRET-%08x", rnd);
    snprintf(fx.hostfile, sizeof(fx.hostfile), "%s/secret.txt", fx.hostdir);
    FILE *f = fopen(fx.hostfile, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", fx.secret);
    fclose(f);
    chmod(fx.hostfile, 0644);

    fx.sleeper = fork();
    if (fx.sleeper == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sleep", "sleep", "600", (char *)NULL);
        _exit(127);
    }
    snprintf(fx.sleeper_pid, sizeof(fx.sleeper_pid), "%d", (int)fx.sleeper);

    fx.tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fx.tcp_fd < 0 || bind(fx.tcp_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(fx.tcp_fd, 8) < 0 || getsockname(fx.tcp_fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    snprintf(fx.tcp_port, sizeof(fx.tcp_port), "%d", ntohs(a.sin_port));

    snprintf(fx.abs_name, sizeof(fx.abs_name), "vs-hostile-%d", (int)getpid());
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    memcpy(u.sun_path + 1, fx.abs_name, strlen(fx.abs_name));
    fx.abs_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fx.abs_fd < 0 ||
        bind(fx.abs_fd, (struct sockaddr *)&u,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(fx.abs_name))) < 0 ||
        listen(fx.abs_fd, 8) < 0)
        return -1;
    if (gethostname(fx.hostname, sizeof(fx.hostname)) < 0)
        return -1;
    printf("hostile: vs-sandbox %s, hostile %s, copies in %s\n", VS_SANDBOX_BIN, VS_HOSTILE_BIN,
           fx.copies);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (fx.sleeper > 0) {
        kill(fx.sleeper, SIGKILL);
        waitpid(fx.sleeper, NULL, 0);
    }
    if (fx.tcp_fd > 0)
        close(fx.tcp_fd);
    if (fx.abs_fd > 0)
        close(fx.abs_fd);
    rm_rf(fx.copies);
    rm_rf(fx.hostdir);
    if (getenv("VS_HOSTILE_KEEP") == NULL)
        rm_rf(fx.scratch);
    else
        printf("hostile: outputs kept in %s\n", fx.scratch);
    return 0;
}

int main(int argc, char **argv)
{
    /* optional: run only the cases named on the command line */
    static struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0])];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool wanted = argc < 2;
        for (int a = 1; a < argc && !wanted; a++)
            wanted = strcmp(argv[a], cases[i].name) == 0;
        if (!wanted)
            continue;
        tests[n].name = cases[i].name;
        tests[n].test_func = test_case;
        tests[n].setup_func = NULL;
        tests[n].teardown_func = NULL;
        tests[n].initial_state = (void *)(uintptr_t)&cases[i];
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "test_hostile: no such case\n");
        return 2;
    }
    return _cmocka_run_group_tests("hostile", tests, n, group_setup, group_teardown);
}
