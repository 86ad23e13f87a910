/*
 * test_seccomp.c - the seccomp presets with real filters and real syscalls.
 *
 * Each case forks a child that sets no_new_privs, loads a prebuilt preset
 * with vs_seccomp_install, passes the listener back with vs_fd_send, makes
 * the syscall under test and reports its result and errno over the same
 * socket; the parent runs the notification supervisor and asserts the exact
 * outcome: the return value, the errno, the names the supervisor recorded,
 * or the signal that killed the child. Nothing is mocked.
 *
 * The tests run as root on CI, so a probe of a denied call always uses
 * arguments that would fail harmlessly if the filter let it through (paths
 * that do not exist, fd -1, an invalid command), and a probe that could
 * create a process (clone, clone3) exits at once in that process.
 *
 * Also: the program hashes, the BPF self-check (and that it catches a wrong
 * program), fd passing errors, and the OCI profile parsed with jansson.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "../../sandboxd/src/seccomp_policy.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

struct outcome {
    bool have;  /* the child reported a result */
    long ret;
    int err;
    int status; /* waitpid status */
    char names[VS_SANDBOX_MAX_DENIED][VS_SECCOMP_NAME_MAX];
    size_t n;
};

struct report {
    long ret;
    int err;
};

typedef long (*probe_fn)(void);

/* Run fn in a child under preset p; the parent supervises. */
static void run_case(enum vs_seccomp_preset p, bool log_mode, probe_fn fn, struct outcome *o)
{
    int sv[2];
    struct report m;

    memset(o, 0, sizeof(*o));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit nocore = {0, 0};
        struct sock_fprog prog;

        close(sv[0]);
        setrlimit(RLIMIT_CORE, &nocore); /* SIGSYS dumps core otherwise */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(120);
        if (vs_seccomp_program(p, &prog) < 0)
            _exit(121);
        int fd = vs_seccomp_install(&prog);
        if (fd < 0)
            _exit(122);
        if (vs_fd_send(sv[1], fd) < 0)
            _exit(123);
        close(fd);
        errno = 0;
        m.ret = fn();
        m.err = errno;
        if (write(sv[1], &m, sizeof(m)) != (ssize_t)sizeof(m))
            _exit(124);
        _exit(0);
    }
    close(sv[1]);
    int fd = vs_fd_recv(sv[0]);
    assert_true(fd >= 0);
    struct vs_seccomp_supervisor *s = NULL;
    assert_int_equal(vs_seccomp_supervisor_start(fd, log_mode, &s), 0);
    ssize_t n;
    do
        n = read(sv[0], &m, sizeof(m));
    while (n < 0 && errno == EINTR);
    o->have = n == (ssize_t)sizeof(m);
    if (o->have) {
        o->ret = m.ret;
        o->err = m.err;
    }
    assert_int_equal(waitpid(pid, &o->status, 0), pid);
    o->n = vs_seccomp_supervisor_stop(s, o->names, VS_SANDBOX_MAX_DENIED);
    close(sv[0]);
}

/* The child exited normally after reporting. */
static void assert_reported(const struct outcome *o)
{
    assert_true(WIFEXITED(o->status));
    assert_int_equal(WEXITSTATUS(o->status), 0);
    assert_true(o->have);
}

/* The call failed with EPERM and the supervisor named it, and nothing else. */
static void assert_named_eperm(enum vs_seccomp_preset p, probe_fn fn, const char *name)
{
    struct outcome o;

    run_case(p, false, fn, &o);
    assert_reported(&o);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, EPERM);
    assert_int_equal(o.n, 1);
    assert_string_equal(o.names[0], name);
}

/* The call failed with err and nothing was named. */
static void assert_unnamed_errno(enum vs_seccomp_preset p, probe_fn fn, int err)
{
    struct outcome o;

    run_case(p, false, fn, &o);
    assert_reported(&o);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, err);
    assert_int_equal(o.n, 0);
}

/* The call succeeded (ret >= 0) and nothing was named. */
static void assert_allowed(enum vs_seccomp_preset p, probe_fn fn)
{
    struct outcome o;

    run_case(p, false, fn, &o);
    assert_reported(&o);
    if (o.ret < 0)
        fail_msg("expected success, got errno %d (%s)", o.err, strerror(o.err));
    assert_int_equal(o.n, 0);
}

/* The child was killed by SIGSYS (foreign ABI). */
static void assert_killed(enum vs_seccomp_preset p, probe_fn fn)
{
    struct outcome o;

    run_case(p, false, fn, &o);
    assert_false(o.have);
    assert_true(WIFSIGNALED(o.status));
    assert_int_equal(WTERMSIG(o.status), SIGSYS);
}

/* ---- probes (run in the filtered child) ---------------------------------------- */

static long probe_socket_inet(void) { return socket(AF_INET, SOCK_STREAM, 0); }
static long probe_socket_inet6(void) { return socket(AF_INET6, SOCK_DGRAM, 0); }
static long probe_socket_unix(void) { return socket(AF_UNIX, SOCK_STREAM, 0); }
static long probe_socket_netlink(void) { return socket(AF_NETLINK, SOCK_RAW, 0); }
static long probe_socket_packet(void) { return socket(AF_PACKET, SOCK_RAW, 0); }
static long probe_socket_alg(void) { return socket(AF_ALG, SOCK_SEQPACKET, 0); }
static long probe_socket_vsock(void) { return socket(AF_VSOCK, SOCK_STREAM, 0); }
static long probe_socket_bluetooth(void) { return socket(AF_BLUETOOTH, SOCK_STREAM, 0); }
/* AF_INET with garbage in the upper half of the register: the kernel reads
 * an int and would see AF_INET; the filter must not allow it. */
static long probe_socket_inet_highbits(void)
{
    return syscall(SYS_socket, (1ul << 32) | AF_INET, SOCK_STREAM, 0);
}

static long probe_socketpair_unix(void)
{
    int sv[2];
    long r = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    if (r == 0) {
        char c = 'x';
        if (send(sv[0], &c, 1, 0) != 1 || recv(sv[1], &c, 1, 0) != 1)
            return -1;
    }
    return r;
}
static long probe_socketpair_inet(void)
{
    int sv[2];
    return socketpair(AF_INET, SOCK_STREAM, 0, sv);
}

static long probe_unshare(void) { return unshare(CLONE_NEWUSER); }

static long probe_clone_newuser(void)
{
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0); /* only if the filter failed */
    return r;
}

static long probe_clone3(void)
{
    uint64_t args[8] = {0}; /* struct clone_args, version 0 (64 bytes) */
    args[4] = SIGCHLD;      /* exit_signal */
    long r = syscall(SYS_clone3, args, sizeof(args));
    if (r == 0)
        _exit(0);
    return r;
}

static long probe_fork(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    if (pid < 0)
        return -1;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        return -1;
    return 0;
}

static long probe_ptrace(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL); }
static long probe_tiocsti(void) { return ioctl(-1, TIOCSTI, "x"); }
static long probe_tiocsti_highbits(void)
{
    return syscall(SYS_ioctl, -1, (1ul << 32) | TIOCSTI, "x");
}
static long probe_tioclinux(void) { return ioctl(-1, TIOCLINUX, "x"); }
/* An allowed request on a pipe: the kernel answers ENOTTY. */
static long probe_tiocgwinsz(void)
{
    int p[2];
    struct winsize ws;
    if (pipe(p) < 0)
        return -1;
    return ioctl(p[0], TIOCGWINSZ, &ws);
}
/* A request not on the allow-list: ENOSYS from the filter. */
static long probe_ioctl_other(void) { return ioctl(-1, 0x1234abcdu, 0); }

static long probe_personality_linux32(void) { return personality(PER_LINUX32); }
static long probe_personality_query(void) { return personality(0xffffffff); }
static long probe_personality_linux(void) { return personality(PER_LINUX); }
static long probe_personality_norandom(void) { return personality(ADDR_NO_RANDOMIZE); }

static long probe_nr1000(void) { return syscall(1000, 0, 0, 0); }
static long probe_kcmp(void) { return syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0); }
static long probe_mount(void)
{
    return mount("none", "/nonexistent/vs-seccomp-test", "tmpfs", 0, NULL);
}
static long probe_bpf(void) { return syscall(SYS_bpf, -1, NULL, 0); }
static long probe_io_uring(void) { return syscall(SYS_io_uring_setup, 0, NULL); }
static long probe_keyctl(void) { return syscall(SYS_keyctl, 0, 0, 0, 0, 0); }
static long probe_fsopen(void) { return syscall(SYS_fsopen, "vs-no-such-fs", 0); }

/* A thread: needs clone(CLONE_THREAD) and futex. */
static void *thread_body(void *arg) { return arg; }
static long probe_thread(void)
{
    pthread_t t;
    int rc = pthread_create(&t, NULL, thread_body, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    pthread_join(t, NULL);
    return 0;
}

#if defined(__x86_64__)
/* getpid through the i386 ABI (int 0x80, eax = 20). */
static long probe_int80(void)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    return ret;
}
/* getpid through the x32 ABI. */
static long probe_x32(void) { return syscall(SYS_getpid | 0x40000000L); }
#endif

static long probe_exec_true(void)
{
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve(argv[0], argv, envp);
    return -1;
}

static long probe_exec_shell(void)
{
    char *argv[] = {"/bin/sh", "-c",
                    "set -e; d=$(mktemp -d); echo hello > $d/f; cat $d/f | tr a-z A-Z > $d/g; "
                    "grep -q HELLO $d/g; ls / | wc -l > /dev/null; mkdir $d/x; mv $d/g $d/x/; "
                    "ln -s $d/x/g $d/l; readlink $d/l > /dev/null; chmod 600 $d/f; "
                    "rm -r $d",
                    NULL};
    /* LANG makes every program run setlocale, whose pthread_once wakes with
     * futex even single-threaded. */
    char *envp[] = {"PATH=/usr/bin:/bin", "TMPDIR=/tmp", "LANG=C.UTF-8", NULL};
    execve(argv[0], argv, envp);
    return -1;
}

static long probe_exec_python(void)
{
    char *argv[] = {"/usr/bin/python3", "-c",
                    "import json, hashlib, subprocess, tempfile, os\n"
                    "with tempfile.TemporaryDirectory() as d:\n"
                    "    p = os.path.join(d, 'f')\n"
                    "    open(p, 'w').write(json.dumps({'a': 1}))\n"
                    "    assert json.load(open(p)) == {'a': 1}\n"
                    "assert subprocess.run(['/bin/true']).returncode == 0\n"
                    "hashlib.sha256(b'x').hexdigest()\n",
                    NULL};
    /* HOME: without it site.py looks the user up, and glibc NSS tries the
     * nscd socket (a named "socket" denial under minimal). */
    char *envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp", NULL};
    execve(argv[0], argv, envp);
    return -1;
}

/* Many distinct always-blocked calls, with arguments that fail harmlessly. */
static long probe_many(void)
{
    syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); /* preset-level (minimal) */
    syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    syscall(SYS_mount, "none", "/nonexistent/x", "tmpfs", 0, 0);
    syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0); /* a repeat: not named twice */
    syscall(SYS_umount2, "/nonexistent/x", 0);
    syscall(SYS_unshare, CLONE_NEWNS);
    syscall(SYS_setns, -1, 0);
    syscall(SYS_pivot_root, "/nonexistent/a", "/nonexistent/b");
    syscall(SYS_chroot, "/nonexistent/x");
    syscall(SYS_keyctl, 0, 0, 0, 0, 0);
    syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
    syscall(SYS_request_key, NULL, NULL, NULL, 0);
    syscall(SYS_bpf, -1, NULL, 0);
    syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    syscall(SYS_io_uring_setup, 0, NULL);
    syscall(SYS_swapon, "/nonexistent/x", 0);
    syscall(SYS_swapoff, "/nonexistent/x");
    syscall(SYS_acct, "/nonexistent/x");   /* 17th distinct name: not recorded */
    syscall(SYS_syslog, 10, NULL, 0);
    errno = 0;
    return 0;
}

/* ---- real-syscall tests ----------------------------------------------------------- */

static void test_sockets(void **state)
{
    (void)state;
    assert_named_eperm(VS_PRESET_MINIMAL, probe_socket_inet, "socket");
    assert_named_eperm(VS_PRESET_MINIMAL, probe_socket_unix, "socket");
    assert_named_eperm(VS_PRESET_COMPUTE, probe_socket_inet6, "socket");
    assert_allowed(VS_PRESET_MINIMAL, probe_socketpair_unix);
    assert_named_eperm(VS_PRESET_MINIMAL, probe_socketpair_inet, "socketpair");
    assert_allowed(VS_PRESET_NETWORK, probe_socket_inet);
    assert_allowed(VS_PRESET_NETWORK, probe_socket_inet6);
    assert_allowed(VS_PRESET_NETWORK, probe_socket_unix);
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_netlink, "socket");
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_packet, "socket");
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_alg, "socket");
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_vsock, "socket");
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_bluetooth, "socket");
    assert_named_eperm(VS_PRESET_NETWORK, probe_socket_inet_highbits, "socket");
}

static void test_namespaces_and_clone(void **state)
{
    (void)state;
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        assert_named_eperm((enum vs_seccomp_preset)p, probe_unshare, "unshare");
        assert_named_eperm((enum vs_seccomp_preset)p, probe_clone_newuser, "clone");
        assert_unnamed_errno((enum vs_seccomp_preset)p, probe_clone3, ENOSYS);
        assert_allowed((enum vs_seccomp_preset)p, probe_fork);
    }
}

static void test_always_blocked(void **state)
{
    (void)state;
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        enum vs_seccomp_preset ps = (enum vs_seccomp_preset)p;
        assert_named_eperm(ps, probe_ptrace, "ptrace");
        assert_named_eperm(ps, probe_mount, "mount");
        assert_named_eperm(ps, probe_fsopen, "fsopen");
        assert_named_eperm(ps, probe_bpf, "bpf");
        assert_named_eperm(ps, probe_io_uring, "io_uring_setup");
        assert_named_eperm(ps, probe_keyctl, "keyctl");
        assert_named_eperm(ps, probe_tiocsti, "ioctl");
        assert_named_eperm(ps, probe_tiocsti_highbits, "ioctl");
        assert_named_eperm(ps, probe_tioclinux, "ioctl");
        assert_named_eperm(ps, probe_personality_linux32, "personality");
        assert_named_eperm(ps, probe_personality_norandom, "personality");
    }
}

static void test_allowed_arguments(void **state)
{
    struct outcome o;

    (void)state;
    run_case(VS_PRESET_MINIMAL, false, probe_tiocgwinsz, &o);
    assert_reported(&o);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, ENOTTY); /* the kernel's answer: the filter let it through */
    assert_int_equal(o.n, 0);
    assert_unnamed_errno(VS_PRESET_NETWORK, probe_ioctl_other, ENOSYS);
    assert_allowed(VS_PRESET_MINIMAL, probe_personality_query);
    assert_allowed(VS_PRESET_MINIMAL, probe_personality_linux);
}

static void test_unknown_syscalls(void **state)
{
    (void)state;
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        assert_unnamed_errno((enum vs_seccomp_preset)p, probe_nr1000, ENOSYS);
        assert_unnamed_errno((enum vs_seccomp_preset)p, probe_kcmp, ENOSYS);
    }
}

static void test_threads(void **state)
{
    struct outcome o;

    (void)state;
    assert_allowed(VS_PRESET_COMPUTE, probe_thread);
    assert_allowed(VS_PRESET_NETWORK, probe_thread);
    run_case(VS_PRESET_MINIMAL, false, probe_thread, &o);
    assert_reported(&o);
    assert_int_equal(o.ret, -1);
    assert_int_not_equal(o.err, 0);
    assert_true(o.n >= 1);
    assert_string_equal(o.names[0], "clone");
}

static void test_foreign_abi_killed(void **state)
{
    (void)state;
#if defined(__x86_64__)
    /* Control: without a filter, int 0x80 works when the kernel has i386
     * emulation (otherwise it faults before seccomp is consulted). */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(probe_int80() == getpid() ? 0 : 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    bool ia32 = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ia32)
        print_message("no i386 emulation in this kernel: int 0x80 not tried under a filter\n");
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        if (ia32)
            assert_killed((enum vs_seccomp_preset)p, probe_int80);
        assert_killed((enum vs_seccomp_preset)p, probe_x32);
    }
#else
    skip();
#endif
}

static void test_exec_programs(void **state)
{
    struct outcome o;

    (void)state;
    run_case(VS_PRESET_MINIMAL, false, probe_exec_true, &o);
    assert_false(o.have);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 0);
    assert_int_equal(o.n, 0);

    run_case(VS_PRESET_MINIMAL, false, probe_exec_shell, &o);
    for (size_t i = 0; i < o.n; i++)
        print_message("shell under minimal: denied %s\n", o.names[i]);
    assert_false(o.have);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 0);
    assert_int_equal(o.n, 0);

    if (access("/usr/bin/python3", X_OK) != 0) {
        print_message("no /usr/bin/python3: python under minimal not tried\n");
        return;
    }
    run_case(VS_PRESET_MINIMAL, false, probe_exec_python, &o);
    for (size_t i = 0; i < o.n; i++)
        print_message("python3 under minimal: denied %s\n", o.names[i]);
    assert_false(o.have);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 0);
    assert_int_equal(o.n, 0);
}

static void test_names_ordered_distinct_capped(void **state)
{
    static const char *const want[] = {
        "socket", "ptrace", "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "io_uring_setup",
        "swapon", "swapoff"};
    struct outcome o;

    (void)state;
    run_case(VS_PRESET_MINIMAL, false, probe_many, &o);
    assert_reported(&o);
    assert_int_equal(o.n, VS_SANDBOX_MAX_DENIED);
    for (size_t i = 0; i < VS_SANDBOX_MAX_DENIED; i++)
        assert_string_equal(o.names[i], want[i]);
}

/* If the launcher never runs a supervisor (the listener is closed), named
 * denials fail closed: the kernel answers ENOSYS. */
static void test_no_supervisor_fails_closed(void **state)
{
    int sv[2];
    struct report m;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sock_fprog prog;
        char go;
        close(sv[0]);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            vs_seccomp_program(VS_PRESET_MINIMAL, &prog) < 0)
            _exit(120);
        int fd = vs_seccomp_install(&prog);
        if (fd < 0 || vs_fd_send(sv[1], fd) < 0)
            _exit(121);
        close(fd);
        if (read(sv[1], &go, 1) != 1) /* wait until the parent closed its copy */
            _exit(122);
        errno = 0;
        m.ret = socket(AF_INET, SOCK_STREAM, 0);
        m.err = errno;
        _exit(write(sv[1], &m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : 123);
    }
    close(sv[1]);
    int fd = vs_fd_recv(sv[0]);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(write(sv[0], "g", 1), 1);
    assert_int_equal(read(sv[0], &m, sizeof(m)), sizeof(m));
    assert_int_equal(m.ret, -1);
    assert_int_equal(m.err, ENOSYS);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(sv[0]);
}

/* A target killed while its notification is pending: the supervisor starts
 * afterwards, finds nothing to answer, ends on POLLHUP, and stop still works. */
static void test_target_dies_pending(void **state)
{
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sock_fprog prog;
        close(sv[0]);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            vs_seccomp_program(VS_PRESET_MINIMAL, &prog) < 0)
            _exit(120);
        int fd = vs_seccomp_install(&prog);
        if (fd < 0 || vs_fd_send(sv[1], fd) < 0)
            _exit(121);
        close(fd);
        socket(AF_INET, SOCK_STREAM, 0); /* blocks: nobody answers yet */
        _exit(0);
    }
    close(sv[1]);
    int fd = vs_fd_recv(sv[0]);
    assert_true(fd >= 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1); /* the notification is pending */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    struct vs_seccomp_supervisor *s = NULL;
    assert_int_equal(vs_seccomp_supervisor_start(fd, false, &s), 0);
    char names[VS_SANDBOX_MAX_DENIED][VS_SECCOMP_NAME_MAX];
    assert_int_equal(vs_seccomp_supervisor_count(s), 0);
    assert_int_equal(vs_seccomp_supervisor_stop(s, names, VS_SANDBOX_MAX_DENIED), 0);
    close(sv[0]);
}

/* ---- log mode ---------------------------------------------------------------------- */

static int cap_fd = -1, saved_stderr = -1;

static void capture_start(void)
{
    char path[] = "/tmp/vs-test-seccomp-XXXXXX";
    cap_fd = mkstemp(path);
    assert_true(cap_fd >= 0);
    unlink(path);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(cap_fd, STDERR_FILENO) >= 0);
}

static char *capture_end(void)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    off_t size = lseek(cap_fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(cap_fd, buf, (size_t)size, 0), size);
    buf[size] = '\0';
    close(cap_fd);
    return buf;
}

static long probe_socket_repeat(void)
{
    long r = 0;
    for (int i = 0; i < 5 && r >= 0; i++) {
        r = socket(AF_INET, SOCK_STREAM, 0);
        if (r >= 0)
            close((int)r);
    }
    return r;
}

/* How often needle occurs in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_log_mode(void **state)
{
    struct outcome o;
    char *log;

    (void)state;
    /* A preset-level denial is logged, named, and runs. */
    capture_start();
    run_case(VS_PRESET_MINIMAL, true, probe_socket_inet, &o);
    log = capture_end();
    assert_reported(&o);
    assert_true(o.ret >= 0); /* a real socket */
    assert_int_equal(o.n, 1);
    assert_string_equal(o.names[0], "socket");
    assert_non_null(strstr(log, "level=warn"));
    assert_non_null(strstr(log, "syscall=socket"));
    assert_non_null(strstr(log, "pid="));
    free(log);

    /* One line per distinct call, however often it is made. */
    capture_start();
    run_case(VS_PRESET_MINIMAL, true, probe_socket_repeat, &o);
    log = capture_end();
    assert_reported(&o);
    assert_true(o.ret >= 0);
    assert_int_equal(count_of(log, "syscall=socket"), 1);
    free(log);

    /* Always blocked stays EPERM (and is logged). */
    capture_start();
    run_case(VS_PRESET_MINIMAL, true, probe_ptrace, &o);
    log = capture_end();
    assert_reported(&o);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, EPERM);
    assert_int_equal(o.n, 1);
    assert_string_equal(o.names[0], "ptrace");
    assert_non_null(strstr(log, "syscall=ptrace"));
    assert_non_null(strstr(log, "always blocked"));
    free(log);

    /* Also when the always-blocked case is an argument filter on a call the
     * preset otherwise names. */
    capture_start();
    run_case(VS_PRESET_MINIMAL, true, probe_socket_netlink, &o);
    free(capture_end());
    assert_reported(&o);
    assert_int_equal(o.err, EPERM);
    capture_start();
    run_case(VS_PRESET_NETWORK, true, probe_clone_newuser, &o);
    free(capture_end());
    assert_reported(&o);
    assert_int_equal(o.err, EPERM);

    /* Threads under minimal in log mode: clone (and what threads use) go through. */
    capture_start();
    run_case(VS_PRESET_MINIMAL, true, probe_thread, &o);
    free(capture_end());
    assert_reported(&o);
    assert_int_equal(o.ret, 0);
    assert_true(o.n >= 1);
    assert_string_equal(o.names[0], "clone");
}

/* ---- programs, self-check, fd passing, OCI -------------------------------------------- */

static void test_program_hashes(void **state)
{
    uint8_t h[VS_PRESET_COUNT][32], mine[32];
    struct sock_fprog prog;

    (void)state;
    assert_true(sodium_init() >= 0);
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        assert_int_equal(vs_seccomp_program((enum vs_seccomp_preset)p, &prog), 0);
        assert_true(prog.len > 10);
        vs_seccomp_program_hash((enum vs_seccomp_preset)p, h[p]);
        crypto_hash_sha256(mine, (const unsigned char *)prog.filter,
                           prog.len * sizeof(struct sock_filter));
        assert_memory_equal(mine, h[p], 32);
    }
    assert_memory_not_equal(h[0], h[1], 32);
    assert_memory_not_equal(h[0], h[2], 32);
    assert_memory_not_equal(h[1], h[2], 32);
    assert_int_equal(vs_seccomp_program((enum vs_seccomp_preset)7, &prog), -EINVAL);
}

static void test_selfcheck(void **state)
{
    struct sock_fprog prog;
    char err[512];

    (void)state;
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        assert_int_equal(vs_seccomp_program((enum vs_seccomp_preset)p, &prog), 0);
        if (vs_seccomp_selfcheck((enum vs_seccomp_preset)p, &prog, err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    /* The minimal program is not the network policy. */
    assert_int_equal(vs_seccomp_program(VS_PRESET_MINIMAL, &prog), 0);
    assert_int_equal(vs_seccomp_selfcheck(VS_PRESET_NETWORK, &prog, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "preset network"));

    /* A program whose first allow is turned into a kill is caught. */
    struct sock_filter *copy = malloc(prog.len * sizeof(*copy));
    assert_non_null(copy);
    memcpy(copy, prog.filter, prog.len * sizeof(*copy));
    for (size_t i = 0; i < prog.len; i++)
        if (copy[i].code == (BPF_RET | BPF_K) && copy[i].k == SECCOMP_RET_ALLOW) {
            copy[i].k = SECCOMP_RET_KILL_PROCESS;
            break;
        }
    struct sock_fprog bad = {.len = prog.len, .filter = copy};
    assert_int_equal(vs_seccomp_selfcheck(VS_PRESET_MINIMAL, &bad, err, sizeof(err)), -EPROTO);
    free(copy);
}

static void test_table_classification(void **state)
{
    uint64_t a[6] = {0};
    uint32_t act;

    (void)state;
    a[0] = AF_INET;
    assert_false(vs_seccomp_always_blocked("socket", a));
    assert_int_equal(vs_seccomp_table_action(VS_PRESET_MINIMAL, "socket", a, &act), 0);
    assert_int_equal(act, SECCOMP_RET_USER_NOTIF);
    assert_int_equal(vs_seccomp_table_action(VS_PRESET_NETWORK, "socket", a, &act), 0);
    assert_int_equal(act, SECCOMP_RET_ALLOW);
    a[0] = AF_NETLINK;
    assert_true(vs_seccomp_always_blocked("socket", a));
    a[0] = CLONE_THREAD | CLONE_VM;
    assert_false(vs_seccomp_always_blocked("clone", a));
    a[0] = CLONE_NEWPID | SIGCHLD;
    assert_true(vs_seccomp_always_blocked("clone", a));
    a[0] = 0;
    assert_true(vs_seccomp_always_blocked("mount", a));
    assert_false(vs_seccomp_always_blocked("personality", a));
    a[0] = PER_LINUX32;
    assert_true(vs_seccomp_always_blocked("personality", a));
    a[0] = 0xffffffffu;
    assert_false(vs_seccomp_always_blocked("personality", a));
    assert_int_equal(vs_seccomp_table_action(VS_PRESET_NETWORK, "kcmp", a, &act), 0);
    assert_int_equal(act, SECCOMP_RET_ERRNO | ENOSYS);
}

static void test_fd_passing_errors(void **state)
{
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "x", 1), 1); /* data without an fd */
    assert_int_equal(vs_fd_recv(sv[0]), -EBADMSG);
    close(sv[1]);
    assert_int_equal(vs_fd_recv(sv[0]), -ECONNRESET);
    close(sv[0]);

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vs_fd_send(sv[1], STDIN_FILENO), 0);
    int fd = vs_fd_recv(sv[0]);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    assert_int_equal(vs_fd_send(sv[1], -1), -EBADF);
    close(sv[0]);
    close(sv[1]);
}

/* The profile of preset p, parsed. */
static json_t *oci_profile(enum vs_seccomp_preset p)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;

    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(vs_seccomp_export_oci(p, f), 0);
    fclose(f);
    json_t *root = json_loads(buf, 0, &jerr);
    if (root == NULL)
        fail_msg("profile is not JSON: %s (line %d)", jerr.text, jerr.line);
    free(buf);
    return root;
}

/* Does the entry list name? */
static bool entry_names(json_t *e, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(e, "names"), i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

static void test_oci_export(void **state)
{
    size_t i;
    json_t *e;

    (void)state;
    for (int p = 0; p < VS_PRESET_COUNT; p++) {
        json_t *root = oci_profile((enum vs_seccomp_preset)p);
        assert_string_equal(json_string_value(json_object_get(root, "defaultAction")),
                            "SCMP_ACT_ERRNO");
        assert_int_equal(json_integer_value(json_object_get(root, "defaultErrnoRet")), ENOSYS);
        json_t *archs = json_object_get(root, "architectures");
        assert_int_equal(json_array_size(archs), 1);
        assert_string_equal(json_string_value(json_array_get(archs, 0)), "SCMP_ARCH_X86_64");

        bool socket_inet = false, ptrace_eperm = false, clone3_enosys = false;
        json_array_foreach(json_object_get(root, "syscalls"), i, e)
        {
            const char *action = json_string_value(json_object_get(e, "action"));
            json_t *args = json_object_get(e, "args");
            json_int_t errno_ret = json_integer_value(json_object_get(e, "errnoRet"));
            assert_non_null(action);
            if (entry_names(e, "socket") && args != NULL) {
                json_t *a = json_array_get(args, 0);
                if (json_integer_value(json_object_get(a, "index")) == 0 &&
                    json_integer_value(json_object_get(a, "value")) == AF_INET &&
                    strcmp(json_string_value(json_object_get(a, "op")), "SCMP_CMP_EQ") == 0) {
                    socket_inet = true;
                    if (p == VS_PRESET_NETWORK) {
                        assert_string_equal(action, "SCMP_ACT_ALLOW");
                    } else {
                        assert_string_equal(action, "SCMP_ACT_ERRNO");
                        assert_int_equal(errno_ret, EPERM);
                    }
                }
            }
            if (entry_names(e, "ptrace")) {
                assert_string_equal(action, "SCMP_ACT_ERRNO");
                assert_int_equal(errno_ret, EPERM);
                ptrace_eperm = true;
            }
            if (entry_names(e, "clone3")) {
                assert_int_equal(errno_ret, ENOSYS);
                clone3_enosys = true;
            }
        }
        assert_true(socket_inet);
        assert_true(ptrace_eperm);
        assert_true(clone3_enosys);
        json_decref(root);
    }
    assert_int_equal(vs_seccomp_export_oci((enum vs_seccomp_preset)9, stdout), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_program_hashes),
        cmocka_unit_test(test_selfcheck),
        cmocka_unit_test(test_table_classification),
        cmocka_unit_test(test_fd_passing_errors),
        cmocka_unit_test(test_oci_export),
        cmocka_unit_test(test_sockets),
        cmocka_unit_test(test_namespaces_and_clone),
        cmocka_unit_test(test_always_blocked),
        cmocka_unit_test(test_allowed_arguments),
        cmocka_unit_test(test_unknown_syscalls),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_foreign_abi_killed),
        cmocka_unit_test(test_exec_programs),
        cmocka_unit_test(test_names_ordered_distinct_capped),
        cmocka_unit_test(test_no_supervisor_fails_closed),
        cmocka_unit_test(test_target_dies_pending),
        cmocka_unit_test(test_log_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
