/*
 * narrow.c - the seccomp allowlist a daemon enters before its event loop.
 *
 * Three tiers: the calls a daemon runs on in steady state are allowed; the
 * calls only an intruder would make (exec, ptrace, mounts, namespaces,
 * bpf, kernel keys, modules, io_uring, ...) kill the process, so an exploit
 * attempt is loud; anything else fails with EPERM so that a rarely used
 * library path degrades instead of taking the daemon down. Foreign ABIs
 * (i386, x32) are killed by libseccomp's bad-architecture action. Calls are
 * named, not numbered, and resolved for the running architecture.
 */
#include <errno.h>
#include <string.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#include <seccomp.h>

#include "vs/log.h"
#include "vs/narrow.h"

static const char *const allowed[] = {
    /* memory */
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "mincore", "membarrier",
    "mlock", "mlock2", "munlock", /* sodium_malloc'd keys */
    /* files and descriptors (configs, keys, LMDB) */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek",
    "close", "openat", "open", "fstat", "newfstatat", "stat", "lstat", "statx", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "fcntl", "flock", "dup",
    "dup2", "dup3", "pipe2", "fsync", "fdatasync", "msync", "ftruncate", "fallocate", "rename",
    "renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "umask", "getcwd",
    /* event loop */
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
    "poll", "ppoll", "select", "pselect6", "timerfd_create", "timerfd_settime",
    "timerfd_gettime",
    /* network (the bus) */
    "connect", "getsockopt", "setsockopt", "getsockname", "getpeername", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "bind",
    /* threads and time */
    "futex", "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "gettid", "getpid",
    "getppid", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "gettimeofday", "time",
    /* signals and exit */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack",
    "restart_syscall", "tgkill", "exit", "exit_group",
    /* identity and limits (read-only) */
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "uname",
    "sysinfo", "getrlimit", "prlimit64", "getrusage", "getrandom",
};

static const char *const fatal_calls[] = {
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
    "pivot_root", "chroot", "unshare", "setns", "bpf", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_by_handle_at", "name_to_handle_at", "fsopen", "fsmount",
    "move_mount", "open_tree", "fsconfig", "fspick", "mount_setattr", "iopl", "ioperm", "acct",
    "settimeofday", "clock_settime", "personality", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capset",
};

/* Only what a sanitizer runtime needs at exit (LeakSanitizer stops the
 * world with a traced clone). Never in a normal build. */
#ifdef VS_SANITIZE
static const char *const sanitizer_calls[] = {"ptrace", "wait4", "clone", "prctl", "sched_getparam", "getdents"};
#endif

static bool is_extra(const int *extra, int nr)
{
    for (const int *e = extra; e != NULL && *e >= 0; e++)
        if (*e == nr)
            return true;
    return false;
}

static int add_named(scmp_filter_ctx ctx, uint32_t action, const char *const *names, size_t n,
                     const int *extra)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue; /* not a call on this architecture */
        if (action != SCMP_ACT_ALLOW && is_extra(extra, nr))
            continue; /* the daemon asked for it explicitly */
        int rc = seccomp_rule_add(ctx, action, nr, 0);
        if (rc < 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

static int add_argument_rules(scmp_filter_ctx ctx)
{
    int rc = 0;
#ifndef VS_SANITIZE
    /* Threads only: a clone without CLONE_THREAD would be a new process. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                          (struct scmp_arg_cmp){0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD});
#endif
    /* glibc falls back from clone3 to clone on ENOSYS; clone3's flags are
     * in memory, out of the filter's sight. */
    rc = rc ? rc : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    static const int families[] = {AF_UNIX, AF_INET, AF_INET6};
    for (size_t i = 0; rc == 0 && i < sizeof(families) / sizeof(families[0]); i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                              (struct scmp_arg_cmp){0, SCMP_CMP_EQ, (scmp_datum_t)families[i], 0});
    static const unsigned long ioctls[] = {FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS, TIOCGWINSZ};
    for (size_t i = 0; rc == 0 && i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                              (struct scmp_arg_cmp){1, SCMP_CMP_EQ, (scmp_datum_t)ioctls[i], 0});
#ifndef VS_SANITIZE
    static const int prctls[] = {PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE};
    for (size_t i = 0; rc == 0 && i < sizeof(prctls) / sizeof(prctls[0]); i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              (struct scmp_arg_cmp){0, SCMP_CMP_EQ, (scmp_datum_t)prctls[i], 0});
#endif
    return rc;
}

int vs_narrow(const int *extra, bool log_only)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM));
    if (ctx == NULL)
        return -ENOMEM;
    int rc = add_named(ctx, SCMP_ACT_ALLOW, allowed, sizeof(allowed) / sizeof(allowed[0]), NULL);
#ifdef VS_SANITIZE
    if (rc == 0)
        rc = add_named(ctx, SCMP_ACT_ALLOW, sanitizer_calls,
                       sizeof(sanitizer_calls) / sizeof(sanitizer_calls[0]), NULL);
#endif
    for (const int *e = extra; rc == 0 && e != NULL && *e >= 0; e++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, *e, 0);
    if (rc == 0)
        rc = add_argument_rules(ctx);
    if (rc == 0)
        rc = add_named(ctx, log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS, fatal_calls,
                       sizeof(fatal_calls) / sizeof(fatal_calls[0]), extra);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0)
        log_warnx("cannot load the seccomp filter: %s", strerror(-rc));
    return rc;
}
