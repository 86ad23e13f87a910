/*
 * test_cgroup.c - sandboxd/src/cgroup.c against the real kernel.
 *
 * No mocks: each test creates a real cgroup, forks a child that waits on a
 * pipe until the parent has attached it, then lets the child attack one
 * limit (allocate past memory, fork past pids, burn cpu) and asserts how it
 * was stopped: the signal, the errno, the kernel's counters, and the
 * values in the cgroup files found through /proc/<child>/cgroup (so the
 * test does not trust the module's own idea of where its cgroup is).
 * Children never call cmocka; they report through their exit status or a
 * pipe and the parent asserts.
 *
 * The limit tests need root (CI runs the suite as root) and fail loudly
 * otherwise. The unprivileged test drops to uid/gid 65534 in a child and
 * expects -ENOTSUP (rlimits only), or a working delegated v2 cgroup on a
 * host that has one.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../sandboxd/src/cgroup.h"

#define MiB (1024ULL * 1024ULL)
#define MAX_DIRS 8

/* The cgroup of the running test, freed by the teardown when an assert
 * ends the test early, so a failure leaves no cgroup (and no child) behind. */
static vs_cgroup *g_cg;

static int teardown(void **state)
{
    (void)state;
    vs_cgroup_free(g_cg);
    g_cg = NULL;
    return 0;
}

static void require_root(void)
{
    if (geteuid() != 0)
        fail_msg("this test needs root (euid %d): it creates real cgroups; CI runs the suite as root",
                 (int)geteuid());
}

static const char *mode_name(enum vs_limit_mode m)
{
    return m == VS_LIMITS_CGROUP_V2 ? "cgroup-v2" : m == VS_LIMITS_CGROUP_V1 ? "cgroup-v1" : "rlimit";
}

/* A name unique to this process and call. */
static const char *test_name(const char *what)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "vstest-%s-%d", what, (int)getpid());
    return buf;
}

typedef int (*child_fn)(int report_fd);

/* Fork a child that waits until the parent has attached it to cg, then
 * runs fn and exits with its result. report_fd (write end) is passed to fn
 * when report is non-NULL; *report gets the read end. */
static pid_t spawn_attached(vs_cgroup *cg, child_fn fn, int *report)
{
    int go[2], rep[2] = { -1, -1 };
    pid_t pid;

    assert_int_equal(pipe(go), 0);
    if (report)
        assert_int_equal(pipe(rep), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;

        close(go[1]);
        if (rep[0] >= 0)
            close(rep[0]);
        if (read(go[0], &c, 1) != 1)
            _exit(120);
        _exit(fn(rep[1]));
    }
    close(go[0]);
    if (rep[1] >= 0)
        close(rep[1]);
    assert_int_equal(vs_cgroup_attach(cg, pid), 0);
    assert_int_equal(write(go[1], "x", 1), 1);
    close(go[1]);
    if (report)
        *report = rep[0];
    return pid;
}

static int wait_status(pid_t pid)
{
    int st;

    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

/* The directories of pid's cgroups in the hierarchies we use, from
 * /proc/<pid>/cgroup: v1 memory/pids/cpu(acct) and v2. Every one of them
 * must be a sandbox cgroup ("/vibeshield/<name>"). Returns the count. */
static int child_dirs(pid_t pid, const char *name, char dirs[MAX_DIRS][512])
{
    char path[64], line[1024], suffix[128];
    struct statfs sf;
    const char *v2root = "/sys/fs/cgroup/unified";
    FILE *f;
    int n = 0, k = 0;

    if (statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == 0x63677270)
        v2root = "/sys/fs/cgroup";
    snprintf(suffix, sizeof(suffix), "/vibeshield/%s", name);
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) && n < MAX_DIRS) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *p;
        size_t len;

        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        p = c2 + 1;
        p[strcspn(p, "\n")] = '\0';
        len = strlen(p);
        if (len < strlen(suffix) || strcmp(p + len - strlen(suffix), suffix) != 0)
            continue;
        if (strcmp(line, "0") == 0)
            k = snprintf(dirs[n++], 512, "%s%s", v2root, p);
        else if (strstr(c1 + 1, "memory") || strstr(c1 + 1, "pids") || strstr(c1 + 1, "cpu"))
            k = snprintf(dirs[n++], 512, "/sys/fs/cgroup/%s%s",
                         strchr(c1 + 1, ',') ? strtok(c1 + 1, ",") : c1 + 1, p);
        assert_true(k >= 0 && k < 512);
    }
    fclose(f);
    return n;
}

/* The number in the file `file` of the first dir that has it; fails the
 * test when none has it. */
static long long dir_value(char dirs[MAX_DIRS][512], int n, const char *file)
{
    char p[600], buf[128];
    int i;

    for (i = 0; i < n; i++) {
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", dirs[i], file);
        if (!(f = fopen(p, "r")))
            continue;
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        return strcmp(buf, "max\n") == 0 ? -1 : atoll(buf);
    }
    fail_msg("no cgroup of the child has %s", file);
    return 0;
}

static int child_sleep(int fd)
{
    (void)fd;
    for (;;)
        pause();
    return 0;
}

/* Touch bytes of fresh memory page by page; 0 if it survived. */
static int touch(size_t bytes)
{
    volatile char *p = malloc(bytes);
    size_t i;

    if (!p)
        return 3;
    for (i = 0; i < bytes; i += 4096)
        p[i] = 1;
    return 0;
}

static int child_touch_200(int fd)
{
    (void)fd;
    return touch(200 * MiB);
}

/* Burn at least 60 ms of cpu time, then sleep until killed. */
static int child_burn(int fd)
{
    struct rusage ru;

    (void)fd;
    do {
        for (volatile int i = 0; i < 1000000; i++)
            ;
        getrusage(RUSAGE_SELF, &ru);
    } while (ru.ru_utime.tv_sec == 0 && ru.ru_utime.tv_usec < 60000);
    if (write(fd, "b", 1) != 1)
        return 4;
    for (;;)
        pause();
    return 0;
}

struct fork_report {
    int forked;    /* forks that succeeded before the first failure */
    int first_err; /* errno of the first failed fork, 0 if none failed */
};

/* Fork 64 sleeping children; report how far it got and why it stopped. */
static int child_fork64(int fd)
{
    struct fork_report r = { 0, 0 };
    pid_t kids[64];
    int i;

    for (i = 0; i < 64; i++) {
        pid_t k = fork();

        if (k == 0) {
            pause();
            _exit(0);
        }
        if (k < 0) {
            r.first_err = errno;
            break;
        }
        kids[r.forked++] = k;
    }
    for (i = 0; i < r.forked; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    return write(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 5;
}

static void assert_gone(char dirs[MAX_DIRS][512], int n)
{
    struct stat st;
    int i;

    for (i = 0; i < n; i++) {
        errno = 0;
        assert_int_equal(stat(dirs[i], &st), -1);
        assert_int_equal(errno, ENOENT);
    }
}

/* Limits land in the files, cpu is accounted, kill kills, free removes. */
static void test_create_kill_free(void **state)
{
    struct vs_cgroup_limits l = { 64 * MiB, 16, 50000, 100000 };
    struct vs_cgroup_stats s;
    enum vs_limit_mode mode;
    unsigned enforced;
    vs_cgroup *cg;
    const char *name;
    char dirs[MAX_DIRS][512], c;
    int n, st, rep;
    pid_t pid;

    (void)state;
    require_root();
    name = test_name("basic");
    assert_int_equal(vs_cgroup_new(name, &l, &cg, &mode, &enforced), 0);
    g_cg = cg;
    print_message("cgroup mode: %s, enforced:%s%s%s\n", mode_name(mode),
                  enforced & VS_CG_MEMORY ? " memory" : "", enforced & VS_CG_PIDS ? " pids" : "",
                  enforced & VS_CG_CPU ? " cpu" : "");
    assert_true(mode == VS_LIMITS_CGROUP_V1 || mode == VS_LIMITS_CGROUP_V2);
    assert_true(enforced & VS_CG_MEMORY);
    assert_true(enforced & VS_CG_PIDS);
    if (mode == VS_LIMITS_CGROUP_V1 && access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", F_OK) == 0)
        assert_true(enforced & VS_CG_CPU);

    pid = spawn_attached(cg, child_burn, &rep);
    assert_int_equal(read(rep, &c, 1), 1); /* it has burnt its cpu */
    close(rep);
    n = child_dirs(pid, name, dirs);
    assert_true(n >= 1);
    if (mode == VS_LIMITS_CGROUP_V1) {
        assert_int_equal(dir_value(dirs, n, "memory.limit_in_bytes"), (long long)(64 * MiB));
        if (access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0)
            assert_int_equal(dir_value(dirs, n, "memory.memsw.limit_in_bytes"), (long long)(64 * MiB));
        assert_int_equal(dir_value(dirs, n, "pids.max"), 16);
        if (enforced & VS_CG_CPU) {
            assert_int_equal(dir_value(dirs, n, "cpu.cfs_quota_us"), 50000);
            assert_int_equal(dir_value(dirs, n, "cpu.cfs_period_us"), 100000);
        }
    } else {
        assert_int_equal(dir_value(dirs, n, "memory.max"), (long long)(64 * MiB));
        assert_int_equal(dir_value(dirs, n, "pids.max"), 16);
    }

    assert_int_equal(vs_cgroup_stats(cg, &s), 0);
    print_message("cpu_usage_us after burning >= 60 ms: %llu\n", (unsigned long long)s.cpu_usage_us);
    assert_true(s.cpu_usage_us >= 50000); /* margin for the pre-attach instant */

    assert_int_equal(vs_cgroup_kill(cg), 0);
    st = wait_status(pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);

    vs_cgroup_free(cg);
    g_cg = NULL;
    assert_gone(dirs, n);
}

/* A child touching 200 MiB under a 64 MiB limit is OOM-killed and counted;
 * after a raise to 256 MiB the same child survives. */
static void test_memory(void **state)
{
    struct vs_cgroup_limits l = { 64 * MiB, 0, 0, 0 };
    struct vs_cgroup_stats s;
    enum vs_limit_mode mode;
    unsigned enforced;
    vs_cgroup *cg;
    const char *name;
    char dirs[MAX_DIRS][512];
    int n, st;
    pid_t pid;

    (void)state;
    require_root();
    name = test_name("mem");
    assert_int_equal(vs_cgroup_new(name, &l, &cg, &mode, &enforced), 0);
    g_cg = cg;
    assert_true(enforced & VS_CG_MEMORY);
    assert_false(enforced & (VS_CG_PIDS | VS_CG_CPU)); /* not asked for */

    pid = spawn_attached(cg, child_touch_200, NULL);
    st = wait_status(pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    assert_int_equal(vs_cgroup_stats(cg, &s), 0);
    print_message("oom_kills=%llu peak=%llu MiB memory_max_hits=%llu\n", (unsigned long long)s.oom_kills,
                  (unsigned long long)(s.peak_memory_bytes / MiB), (unsigned long long)s.memory_max_hits);
    assert_true(s.oom_kills >= 1);
    /* memory_max_hits is informational (v1 failcnt is 0 on 6.18): not asserted */
    if (mode == VS_LIMITS_CGROUP_V1 || s.peak_memory_bytes != 0) /* v2: memory.peak is 5.19+ */
        assert_true(s.peak_memory_bytes >= 60 * MiB);

    /* Raise (memsw before limit on v1), and check the files and the effect. */
    assert_int_equal(vs_cgroup_set_memory(cg, 256 * MiB), 0);
    pid = spawn_attached(cg, child_sleep, NULL);
    n = child_dirs(pid, name, dirs);
    if (mode == VS_LIMITS_CGROUP_V1) {
        assert_int_equal(dir_value(dirs, n, "memory.limit_in_bytes"), (long long)(256 * MiB));
        if (access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0)
            assert_int_equal(dir_value(dirs, n, "memory.memsw.limit_in_bytes"), (long long)(256 * MiB));
    } else {
        assert_int_equal(dir_value(dirs, n, "memory.max"), (long long)(256 * MiB));
    }
    kill(pid, SIGKILL);
    wait_status(pid);
    pid = spawn_attached(cg, child_touch_200, NULL);
    st = wait_status(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    /* Lower again (limit before memsw on v1) and remove the limit. */
    assert_int_equal(vs_cgroup_set_memory(cg, 32 * MiB), 0);
    assert_int_equal(vs_cgroup_set_memory(cg, 0), 0);
    vs_cgroup_free(cg);
    g_cg = NULL;
    assert_gone(dirs, n);
}

/* Forks beyond pids.max fail with EAGAIN and are counted. */
static void test_pids(void **state)
{
    struct vs_cgroup_limits l = { 0, 16, 0, 0 };
    struct vs_cgroup_stats s;
    struct fork_report r;
    enum vs_limit_mode mode;
    unsigned enforced;
    vs_cgroup *cg;
    int st, rep;
    pid_t pid;

    (void)state;
    require_root();
    assert_int_equal(vs_cgroup_new(test_name("pids"), &l, &cg, &mode, &enforced), 0);
    g_cg = cg;
    assert_true(enforced & VS_CG_PIDS);

    pid = spawn_attached(cg, child_fork64, &rep);
    assert_int_equal(read(rep, &r, sizeof(r)), (ssize_t)sizeof(r));
    close(rep);
    st = wait_status(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    print_message("forks before the limit: %d, then errno %d (%s)\n", r.forked, r.first_err,
                  strerror(r.first_err));
    assert_int_equal(r.first_err, EAGAIN);
    assert_int_equal(r.forked, 15); /* 16 tasks: the child and 15 more */
    assert_int_equal(vs_cgroup_stats(cg, &s), 0);
    assert_true(s.pids_max_hits >= 1);
    vs_cgroup_free(cg);
    g_cg = NULL;
}

/* A name that is in use by a live sandbox is refused, without harming it;
 * an empty leftover of the same name is replaced. */
static void test_duplicate(void **state)
{
    struct vs_cgroup_limits l = { 64 * MiB, 16, 0, 0 };
    enum vs_limit_mode mode;
    unsigned enforced;
    vs_cgroup *cg, *cg2 = (vs_cgroup *)&l;
    const char *name;
    char dirs[MAX_DIRS][512];
    int n, st;
    pid_t pid;

    (void)state;
    require_root();
    name = test_name("dup");
    assert_int_equal(vs_cgroup_new(name, &l, &cg, &mode, &enforced), 0);
    g_cg = cg;
    pid = spawn_attached(cg, child_sleep, NULL);
    n = child_dirs(pid, name, dirs);
    assert_true(n >= 1);
    assert_int_equal(vs_cgroup_new(name, &l, &cg2, &mode, &enforced), -EEXIST);
    assert_null(cg2);
    assert_int_equal(mode, VS_LIMITS_RLIMIT);
    assert_int_equal(enforced, 0);
    assert_int_equal(child_dirs(pid, name, dirs), n); /* still there, still in it */
    vs_cgroup_free(cg); /* kills the sleeper */
    g_cg = NULL;
    st = wait_status(pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    assert_gone(dirs, n);

    /* A leftover without processes (a crashed launcher's) is replaced. */
    assert_int_equal(vs_cgroup_new(name, &l, &cg, &mode, &enforced), 0);
    g_cg = cg;
    assert_int_equal(vs_cgroup_new(name, &l, &cg2, &mode, &enforced), 0);
    assert_non_null(cg2);
    pid = spawn_attached(cg2, child_sleep, NULL);
    assert_int_equal(child_dirs(pid, name, dirs), n);
    vs_cgroup_free(cg2);
    st = wait_status(pid);
    assert_true(WIFSIGNALED(st));
    assert_gone(dirs, n);
    vs_cgroup_free(cg); /* its directories went with cg2's: nothing to do */
    g_cg = NULL;
}

static void test_bad_arguments(void **state)
{
    static const char *bad[] = { "", "a/b", "..", ".", "x y", "a\nb", "name.with.dots",
                                 "0123456789012345678901234567890123456789012345678901234567890123x" };
    struct vs_cgroup_limits l = { 0, 0, 0, 0 };
    enum vs_limit_mode mode;
    unsigned enforced;
    vs_cgroup *cg;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(vs_cgroup_new(bad[i], &l, &cg, &mode, &enforced), -EINVAL);
    assert_int_equal(vs_cgroup_new(NULL, &l, &cg, &mode, &enforced), -EINVAL);
    assert_int_equal(vs_cgroup_new("ok", NULL, &cg, &mode, &enforced), -EINVAL);
    l.cpu_quota_us = 50000;
    l.cpu_period_us = 10; /* below the kernel's 1 ms */
    assert_int_equal(vs_cgroup_new("ok", &l, &cg, &mode, &enforced), -EINVAL);
    assert_int_equal(vs_cgroup_attach(NULL, 1), -EINVAL);
    assert_int_equal(vs_cgroup_kill(NULL), -EINVAL);
    vs_cgroup_free(NULL);
}

struct unpriv_report {
    int rc;
    int mode;
    unsigned enforced;
};

/* As uid/gid 65534: -ENOTSUP (the launcher then uses rlimits), or on a
 * host with a delegated v2 cgroup for that user, a cgroup that enforces. */
static void test_unprivileged(void **state)
{
    struct vs_cgroup_limits l = { 64 * MiB, 16, 50000, 100000 };
    struct unpriv_report r;
    int p[2], st;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        enum vs_limit_mode mode;
        vs_cgroup *cg = NULL;

        close(p[0]);
        if (geteuid() == 0 &&
            (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
            _exit(10);
        r.rc = vs_cgroup_new(test_name("unpriv"), &l, &cg, &mode, &r.enforced);
        r.mode = (int)mode;
        vs_cgroup_free(cg);
        _exit(write(p[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 11);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &r, sizeof(r)), (ssize_t)sizeof(r));
    close(p[0]);
    st = wait_status(pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    print_message("unprivileged (uid %d): rc=%d (%s), mode %s, enforced 0x%x\n",
                  geteuid() == 0 ? 65534 : (int)geteuid(), r.rc, r.rc ? strerror(-r.rc) : "ok",
                  mode_name((enum vs_limit_mode)r.mode), r.enforced);
    if (r.rc == -ENOTSUP) {
        assert_int_equal(r.mode, VS_LIMITS_RLIMIT);
        assert_int_equal(r.enforced, 0);
    } else {
        assert_int_equal(r.rc, 0);
        assert_true(r.mode == VS_LIMITS_CGROUP_V1 || r.mode == VS_LIMITS_CGROUP_V2);
        assert_true(r.enforced != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_unprivileged),
        cmocka_unit_test_teardown(test_create_kill_free, teardown),
        cmocka_unit_test_teardown(test_memory, teardown),
        cmocka_unit_test_teardown(test_pids, teardown),
        cmocka_unit_test_teardown(test_duplicate, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
