/*
 * seccomp_policy.c - the seccomp presets as data, and everything that reads
 * that data at run time: the prebuilt programs (vs_seccomp_program), their
 * hashes, loading one in the sandboxed child, the classification the
 * supervisor needs, a BPF interpreter and self-check, and the OCI
 * (Podman/Docker) profile export.
 *
 * Why it is shaped this way:
 * - The table below is the whole policy. tools/seccomp_gen.c turns it into
 *   BPF with libseccomp at build time (and verifies the BPF against the
 *   table with vs_seccomp_selfcheck); vs_seccomp_export_oci writes the same
 *   rules as JSON. There is no second list anywhere.
 * - Default deny: a syscall not in the table answers ENOSYS (what a kernel
 *   without it would say, so libcs fall back gracefully). A rule of kind
 *   ALLOW is allowed from its preset up and is a *named* denial in the
 *   smaller presets (the supervisor answers EPERM and reports the name); a
 *   rule of kind BLOCK is a named denial everywhere, also in log mode.
 * - A rule compares at most one argument (libseccomp's limit per argument,
 *   and what the OCI format can express per entry). "Everything but these
 *   values" is written as a union of single comparisons that do not overlap
 *   the allowed values (see socket and personality), so rules of different
 *   actions never overlap and libseccomp's ordering of overlapping rules
 *   never matters.
 * - Integer arguments the kernel reads as 32-bit (ioctl's cmd, clone's
 *   flags, personality) are compared masked to their low 32 bits, or with
 *   rules that deny any value with high bits set, so garbage in the upper
 *   half of a register cannot slip a denied value past the filter.
 *
 * Deliberate choices beyond the brief (each noted at its rule):
 * - set_robust_list and rseq are in minimal: glibc >= 2.35 calls both at the
 *   start of every process, so every program would otherwise report them.
 * - futex is in minimal (futex_waitv stays compute): glibc's pthread_once
 *   (setlocale, iconv, NSS) calls FUTEX_WAKE in single-threaded processes
 *   too, and glibc aborts ("The futex facility returned an unexpected error
 *   code") when futex fails, so ls, date, python3 ... would all die.
 * - sched_yield and sched_getaffinity are in minimal (nproc, libc spin
 *   loops); the other sched_* calls are compute.
 * - The socket I/O calls (send*, recv*, shutdown, get/setsockopt,
 *   getsockname/getpeername) are in minimal: they only work on sockets the
 *   process already has, which under minimal can only come from
 *   socketpair(AF_UNIX) or inheritance, and the child needs sendmsg to pass
 *   the listener fd on after loading the filter. socket, connect, bind,
 *   listen, accept and accept4 are network.
 * - socket families: AF_UNIX, AF_INET, AF_INET6 are network; every other
 *   family (not just NETLINK, PACKET, ALG, VSOCK) is always blocked.
 *   socketpair: AF_UNIX in every preset, any other family always blocked.
 * - open_by_handle_at is always blocked (the "shocker" container escape).
 * - seccomp and landlock_* are allowed in minimal: a program may only
 *   restrict itself further.
 * - ioctl is an allow-list of terminal and file requests; TIOCSTI and
 *   TIOCLINUX are always blocked; other requests answer ENOSYS.
 * - kill/tgkill/tkill cannot be limited to "own processes" in BPF; the pid
 *   namespace and the sandbox uid do that.
 */
#include "seccomp_policy.h"

#include <errno.h>
#include <jansson.h>
#include <linux/audit.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define VS_NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#define VS_NATIVE_OCI_ARCH "SCMP_ARCH_X86_64"
#elif defined(__aarch64__)
#define VS_NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#define VS_NATIVE_OCI_ARCH "SCMP_ARCH_AARCH64"
#else
#error "add the AUDIT_ARCH and SCMP_ARCH names of this architecture"
#endif

#define X32_SYSCALL_BIT 0x40000000u

/* ---- the table ------------------------------------------------------------- */

#define M VS_PRESET_MINIMAL
#define C VS_PRESET_COMPUTE
#define N VS_PRESET_NETWORK

#define ALLOW(n, lvl) {n, VS_SC_ALLOW, lvl, VS_OP_NONE, 0, 0, 0, 0}
#define ALLOW_OPT(n, lvl) {n, VS_SC_ALLOW, lvl, VS_OP_NONE, 0, VS_SC_OPTIONAL, 0, 0}
#define ALLOW_IF(n, lvl, i, op, a, b) {n, VS_SC_ALLOW, lvl, op, i, 0, a, b}
#define BLOCK(n) {n, VS_SC_BLOCK, 0, VS_OP_NONE, 0, 0, 0, 0}
#define BLOCK_IF(n, i, op, a, b) {n, VS_SC_BLOCK, 0, op, i, 0, a, b}

/* ioctl requests are unsigned int: compare the low 32 bits only. */
#define IOCTL_OK(cmd) ALLOW_IF("ioctl", M, 1, VS_OP_MASKED_EQ, 0xffffffffu, (uint32_t)(cmd))
#define IOCTL_BLOCK(cmd) BLOCK_IF("ioctl", 1, VS_OP_MASKED_EQ, 0xffffffffu, (uint32_t)(cmd))

/* Namespace flags of clone (CLONE_NEWTIME is 0x80, which legacy clone reads
 * as part of the exit signal: no valid signal has it, so denying it costs
 * nothing). */
#define VS_CLONE_NS                                                                        \
    ((uint64_t)(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | \
                CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME))
#define CLONE_NS_BLOCK(f) BLOCK_IF("clone", 0, VS_OP_MASKED_EQ, (uint64_t)(f), (uint64_t)(f))

/* personality: 0 (PER_LINUX) and 0xffffffff (query) are allowed. The rest
 * of the 64-bit space is "high bits set" (one GT rule) plus every 32-bit
 * value that is neither all zeros nor all ones; such a value has a set bit
 * followed (cyclically) by a clear one, so the 32 rules "bit i set, bit i+1
 * clear" cover it and none of them matches 0 or 0xffffffff. */
#define PERS_CUBE(i)                                                                     \
    BLOCK_IF("personality", 0, VS_OP_MASKED_EQ, (1ull << (i)) | (1ull << (((i) + 1) % 32)), \
             1ull << (i))

const struct vs_sc_rule vs_seccomp_rules[] = {
    /* -- minimal: file I/O ---------------------------------------------------- */
    ALLOW("read", M), ALLOW("write", M), ALLOW("readv", M), ALLOW("writev", M),
    ALLOW("pread64", M), ALLOW("pwrite64", M), ALLOW("preadv", M), ALLOW("pwritev", M),
    ALLOW("preadv2", M), ALLOW("pwritev2", M), ALLOW("lseek", M), ALLOW("close", M),
    ALLOW("close_range", M), ALLOW("open", M), ALLOW("openat", M), ALLOW("openat2", M),
    ALLOW("creat", M), ALLOW("stat", M), ALLOW("fstat", M), ALLOW("lstat", M),
    ALLOW("newfstatat", M), ALLOW("statx", M), ALLOW("statfs", M), ALLOW("fstatfs", M),
    ALLOW("access", M), ALLOW("faccessat", M), ALLOW("faccessat2", M), ALLOW("getdents", M),
    ALLOW("getdents64", M), ALLOW("getcwd", M), ALLOW("chdir", M), ALLOW("fchdir", M),
    ALLOW("fcntl", M), ALLOW("flock", M), ALLOW("dup", M), ALLOW("dup2", M), ALLOW("dup3", M),
    ALLOW("pipe", M), ALLOW("pipe2", M), ALLOW("copy_file_range", M), ALLOW("sendfile", M),
    ALLOW("splice", M), ALLOW("tee", M), ALLOW("vmsplice", M), ALLOW("memfd_create", M),
    ALLOW("poll", M), ALLOW("ppoll", M), ALLOW("select", M), ALLOW("pselect6", M),
    ALLOW("epoll_create", M), ALLOW("epoll_create1", M), ALLOW("epoll_ctl", M),
    ALLOW("epoll_wait", M), ALLOW("epoll_pwait", M), ALLOW("epoll_pwait2", M),
    ALLOW("eventfd", M), ALLOW("eventfd2", M), ALLOW("signalfd", M), ALLOW("signalfd4", M),
    ALLOW("timerfd_create", M), ALLOW("timerfd_settime", M), ALLOW("timerfd_gettime", M),
    ALLOW("inotify_init", M), ALLOW("inotify_init1", M), ALLOW("inotify_add_watch", M),
    ALLOW("inotify_rm_watch", M),
    /* -- minimal: file operations (Landlock and the mounts confine them to the
     * workspace; the filter only decides which operations exist) ---------- */
    ALLOW("mkdir", M), ALLOW("mkdirat", M), ALLOW("rmdir", M), ALLOW("unlink", M),
    ALLOW("unlinkat", M), ALLOW("rename", M), ALLOW("renameat", M), ALLOW("renameat2", M),
    ALLOW("link", M), ALLOW("linkat", M), ALLOW("symlink", M), ALLOW("symlinkat", M),
    ALLOW("readlink", M), ALLOW("readlinkat", M), ALLOW("chmod", M), ALLOW("fchmod", M),
    ALLOW("fchmodat", M), ALLOW_OPT("fchmodat2", M), ALLOW("chown", M), ALLOW("fchown", M),
    ALLOW("lchown", M), ALLOW("fchownat", M), ALLOW("umask", M), ALLOW("truncate", M),
    ALLOW("ftruncate", M), ALLOW("fallocate", M), ALLOW("fsync", M), ALLOW("fdatasync", M),
    ALLOW("syncfs", M), ALLOW("sync_file_range", M), ALLOW("fadvise64", M),
    ALLOW("readahead", M), ALLOW("utime", M), ALLOW("utimes", M), ALLOW("utimensat", M),
    ALLOW("futimesat", M), ALLOW("mknod", M), ALLOW("mknodat", M), /* FIFOs; nodev mounts */
    ALLOW("getxattr", M), ALLOW("lgetxattr", M), ALLOW("fgetxattr", M), ALLOW("listxattr", M),
    ALLOW("llistxattr", M), ALLOW("flistxattr", M), ALLOW("setxattr", M),
    ALLOW("lsetxattr", M), ALLOW("fsetxattr", M), ALLOW("removexattr", M),
    ALLOW("lremovexattr", M), ALLOW("fremovexattr", M),
    /* -- minimal: memory ------------------------------------------------------ */
    ALLOW("brk", M), ALLOW("mmap", M), ALLOW("munmap", M), ALLOW("mprotect", M),
    ALLOW("mremap", M), ALLOW("madvise", M), ALLOW("msync", M), ALLOW("mincore", M),
    ALLOW("mlock", M), ALLOW("mlock2", M), ALLOW("munlock", M), ALLOW("mlockall", M),
    ALLOW("munlockall", M),
    /* -- minimal: signals, time ----------------------------------------------- */
    ALLOW("rt_sigaction", M), ALLOW("rt_sigprocmask", M), ALLOW("rt_sigreturn", M),
    ALLOW("rt_sigpending", M), ALLOW("rt_sigtimedwait", M), ALLOW("rt_sigsuspend", M),
    ALLOW("rt_sigqueueinfo", M), ALLOW("rt_tgsigqueueinfo", M), ALLOW("sigaltstack", M),
    ALLOW("pause", M), ALLOW("alarm", M), ALLOW("getitimer", M), ALLOW("setitimer", M),
    ALLOW("kill", M), ALLOW("tgkill", M), ALLOW("tkill", M), ALLOW("restart_syscall", M),
    ALLOW("clock_gettime", M), ALLOW("clock_getres", M), ALLOW("clock_nanosleep", M),
    ALLOW("nanosleep", M), ALLOW("gettimeofday", M), ALLOW("time", M),
    ALLOW("timer_create", M), ALLOW("timer_settime", M), ALLOW("timer_gettime", M),
    ALLOW("timer_getoverrun", M), ALLOW("timer_delete", M),
    /* -- minimal: processes --------------------------------------------------- */
    ALLOW("execve", M), ALLOW("fork", M), ALLOW("vfork", M), ALLOW("wait4", M),
    ALLOW("waitid", M), ALLOW("exit", M), ALLOW("exit_group", M), ALLOW("pidfd_open", M),
    ALLOW("pidfd_send_signal", M), ALLOW("set_tid_address", M),
    ALLOW("set_robust_list", M), ALLOW("rseq", M), /* glibc start-up, every process */
    ALLOW("futex", M), /* glibc's once/locale code wakes with FUTEX_WAKE single-threaded */
    ALLOW("arch_prctl", M), ALLOW("prctl", M), ALLOW("getpid", M), ALLOW("getppid", M),
    ALLOW("gettid", M), ALLOW("getuid", M), ALLOW("geteuid", M), ALLOW("getgid", M),
    ALLOW("getegid", M), ALLOW("getresuid", M), ALLOW("getresgid", M), ALLOW("getgroups", M),
    ALLOW("getpgrp", M), ALLOW("getpgid", M), ALLOW("setpgid", M), ALLOW("getsid", M),
    ALLOW("setsid", M), ALLOW("setuid", M), ALLOW("setgid", M), ALLOW("setreuid", M),
    ALLOW("setregid", M), ALLOW("setresuid", M), ALLOW("setresgid", M), ALLOW("setgroups", M),
    ALLOW("setfsuid", M), ALLOW("setfsgid", M), ALLOW("capget", M), ALLOW("capset", M),
    ALLOW("getrlimit", M), ALLOW("setrlimit", M), ALLOW("prlimit64", M), ALLOW("getrusage", M),
    ALLOW("times", M), ALLOW("getpriority", M), ALLOW("uname", M), ALLOW("sysinfo", M),
    ALLOW("getcpu", M), ALLOW("getrandom", M), ALLOW("sched_yield", M),
    ALLOW("sched_getaffinity", M), ALLOW("seccomp", M), ALLOW("landlock_create_ruleset", M),
    ALLOW("landlock_add_rule", M), ALLOW("landlock_restrict_self", M),
    /* clone: a new process (fork, posix_spawn's CLONE_VM|CLONE_VFORK) in
     * minimal, a thread (CLONE_THREAD) in compute, a namespace never. The
     * three sets are disjoint and cover every flags value. */
    ALLOW_IF("clone", M, 0, VS_OP_MASKED_EQ, VS_CLONE_NS | CLONE_THREAD, 0),
    ALLOW_IF("clone", C, 0, VS_OP_MASKED_EQ, VS_CLONE_NS | CLONE_THREAD, CLONE_THREAD),
    CLONE_NS_BLOCK(CLONE_NEWNS), CLONE_NS_BLOCK(CLONE_NEWCGROUP), CLONE_NS_BLOCK(CLONE_NEWUTS),
    CLONE_NS_BLOCK(CLONE_NEWIPC), CLONE_NS_BLOCK(CLONE_NEWUSER), CLONE_NS_BLOCK(CLONE_NEWPID),
    CLONE_NS_BLOCK(CLONE_NEWNET), CLONE_NS_BLOCK(CLONE_NEWTIME),
    /* clone3 passes its flags in memory: ENOSYS makes glibc use clone. */
    {"clone3", VS_SC_ENOSYS, 0, VS_OP_NONE, 0, 0, 0, 0},
    /* personality: the default persona and the query only. */
    ALLOW_IF("personality", M, 0, VS_OP_EQ, PER_LINUX, 0),
    ALLOW_IF("personality", M, 0, VS_OP_EQ, 0xffffffffu, 0),
    BLOCK_IF("personality", 0, VS_OP_GT, 0xffffffffu, 0),
    PERS_CUBE(0), PERS_CUBE(1), PERS_CUBE(2), PERS_CUBE(3), PERS_CUBE(4), PERS_CUBE(5),
    PERS_CUBE(6), PERS_CUBE(7), PERS_CUBE(8), PERS_CUBE(9), PERS_CUBE(10), PERS_CUBE(11),
    PERS_CUBE(12), PERS_CUBE(13), PERS_CUBE(14), PERS_CUBE(15), PERS_CUBE(16), PERS_CUBE(17),
    PERS_CUBE(18), PERS_CUBE(19), PERS_CUBE(20), PERS_CUBE(21), PERS_CUBE(22), PERS_CUBE(23),
    PERS_CUBE(24), PERS_CUBE(25), PERS_CUBE(26), PERS_CUBE(27), PERS_CUBE(28), PERS_CUBE(29),
    PERS_CUBE(30), PERS_CUBE(31),
    /* ioctl: terminal and file requests; pushing input into a terminal never. */
    IOCTL_OK(TCGETS), IOCTL_OK(TCSETS), IOCTL_OK(TCSETSW), IOCTL_OK(TCSETSF), IOCTL_OK(TCSBRK),
    IOCTL_OK(TCSBRKP), IOCTL_OK(TCXONC), IOCTL_OK(TCFLSH), IOCTL_OK(TIOCSCTTY),
    IOCTL_OK(TIOCGPGRP), IOCTL_OK(TIOCSPGRP), IOCTL_OK(TIOCOUTQ), IOCTL_OK(TIOCGWINSZ),
    IOCTL_OK(TIOCSWINSZ), IOCTL_OK(TIOCGSID), IOCTL_OK(TIOCGPTN), IOCTL_OK(TIOCSPTLCK),
    IOCTL_OK(TIOCGPTPEER), IOCTL_OK(FIONREAD), IOCTL_OK(FIONBIO), IOCTL_OK(FIOASYNC),
    IOCTL_OK(FIOCLEX), IOCTL_OK(FIONCLEX), IOCTL_OK(FIOQSIZE), IOCTL_OK(FIGETBSZ),
    IOCTL_OK(FICLONE), IOCTL_OK(FS_IOC_GETFLAGS),
    IOCTL_BLOCK(TIOCSTI), IOCTL_BLOCK(TIOCLINUX),
    /* sockets the process already has (see the header comment) */
    ALLOW("sendmsg", M), ALLOW("recvmsg", M), ALLOW("sendto", M), ALLOW("recvfrom", M),
    ALLOW("sendmmsg", M), ALLOW("recvmmsg", M), ALLOW("shutdown", M), ALLOW("getsockopt", M),
    ALLOW("setsockopt", M), ALLOW("getsockname", M), ALLOW("getpeername", M),
    ALLOW_IF("socketpair", M, 0, VS_OP_EQ, AF_UNIX, 0),
    BLOCK_IF("socketpair", 0, VS_OP_EQ, AF_UNSPEC, 0),
    BLOCK_IF("socketpair", 0, VS_OP_GT, AF_UNIX, 0),

    /* -- compute: threads, scheduling, SysV/POSIX IPC, AIO, NUMA -------------- */
    ALLOW("futex_waitv", C), ALLOW("membarrier", C),
    ALLOW("setpriority", C), ALLOW("ioprio_get", C),
    ALLOW("ioprio_set", C), ALLOW("sched_setaffinity", C), ALLOW("sched_getparam", C),
    ALLOW("sched_setparam", C), ALLOW("sched_getscheduler", C), ALLOW("sched_setscheduler", C),
    ALLOW("sched_get_priority_max", C), ALLOW("sched_get_priority_min", C),
    ALLOW("sched_rr_get_interval", C), ALLOW("sched_setattr", C), ALLOW("sched_getattr", C),
    ALLOW("get_mempolicy", C), ALLOW("set_mempolicy", C), ALLOW("mbind", C),
    ALLOW("pkey_alloc", C), ALLOW("pkey_free", C), ALLOW("pkey_mprotect", C),
    ALLOW("shmget", C), ALLOW("shmat", C), ALLOW("shmdt", C), ALLOW("shmctl", C),
    ALLOW("semget", C), ALLOW("semop", C), ALLOW("semtimedop", C), ALLOW("semctl", C),
    ALLOW("msgget", C), ALLOW("msgsnd", C), ALLOW("msgrcv", C), ALLOW("msgctl", C),
    ALLOW("mq_open", C), ALLOW("mq_unlink", C), ALLOW("mq_timedsend", C),
    ALLOW("mq_timedreceive", C), ALLOW("mq_notify", C), ALLOW("mq_getsetattr", C),
    ALLOW("io_setup", C), ALLOW("io_destroy", C), ALLOW("io_submit", C), ALLOW("io_cancel", C),
    ALLOW("io_getevents", C), ALLOW("io_pgetevents", C),

    /* -- network: new sockets of three families ------------------------------- */
    ALLOW("connect", N), ALLOW("bind", N), ALLOW("listen", N), ALLOW("accept", N),
    ALLOW("accept4", N),
    ALLOW_IF("socket", N, 0, VS_OP_EQ, AF_UNIX, 0),
    ALLOW_IF("socket", N, 0, VS_OP_EQ, AF_INET, 0),
    ALLOW_IF("socket", N, 0, VS_OP_EQ, AF_INET6, 0),
    /* every other family, in every preset (AF_NETLINK, AF_PACKET, AF_ALG and
     * AF_VSOCK are in the GT rule): 0, 3..9, and above AF_INET6 (10) */
    BLOCK_IF("socket", 0, VS_OP_EQ, AF_UNSPEC, 0), BLOCK_IF("socket", 0, VS_OP_EQ, 3, 0),
    BLOCK_IF("socket", 0, VS_OP_EQ, 4, 0), BLOCK_IF("socket", 0, VS_OP_EQ, 5, 0),
    BLOCK_IF("socket", 0, VS_OP_EQ, 6, 0), BLOCK_IF("socket", 0, VS_OP_EQ, 7, 0),
    BLOCK_IF("socket", 0, VS_OP_EQ, 8, 0), BLOCK_IF("socket", 0, VS_OP_EQ, 9, 0),
    BLOCK_IF("socket", 0, VS_OP_GT, AF_INET6, 0),

    /* -- always blocked ------------------------------------------------------- */
    BLOCK("ptrace"), BLOCK("process_vm_readv"), BLOCK("process_vm_writev"),
    BLOCK("mount"), BLOCK("umount2"), BLOCK("fsopen"), BLOCK("fsconfig"), BLOCK("fsmount"),
    BLOCK("fspick"), BLOCK("move_mount"), BLOCK("open_tree"), BLOCK("mount_setattr"),
    BLOCK("unshare"), BLOCK("setns"), BLOCK("pivot_root"), BLOCK("chroot"),
    BLOCK("keyctl"), BLOCK("add_key"), BLOCK("request_key"), BLOCK("bpf"),
    BLOCK("perf_event_open"), BLOCK("userfaultfd"), BLOCK("io_uring_setup"),
    BLOCK("io_uring_enter"), BLOCK("io_uring_register"), BLOCK("kexec_load"),
    BLOCK("kexec_file_load"), BLOCK("init_module"), BLOCK("finit_module"),
    BLOCK("delete_module"), BLOCK("reboot"), BLOCK("swapon"), BLOCK("swapoff"), BLOCK("acct"),
    BLOCK("iopl"), BLOCK("ioperm"), BLOCK("syslog"), BLOCK("open_by_handle_at"),
};
const size_t vs_seccomp_n_rules = sizeof(vs_seccomp_rules) / sizeof(vs_seccomp_rules[0]);

#undef M
#undef C
#undef N

static const char *const preset_strs[VS_PRESET_COUNT] = {"minimal", "compute", "network"};

const char *vs_seccomp_preset_str(enum vs_seccomp_preset p)
{
    return (unsigned)p < VS_PRESET_COUNT ? preset_strs[p] : NULL;
}

/* ---- evaluating the table ---------------------------------------------------- */

bool vs_sc_rule_matches(const struct vs_sc_rule *r, const uint64_t args[6])
{
    uint64_t v = r->arg < 6 ? args[r->arg] : 0;

    switch (r->op) {
    case VS_OP_NONE: return true;
    case VS_OP_EQ: return v == r->a;
    case VS_OP_GT: return v > r->a;
    case VS_OP_MASKED_EQ: return (v & r->a) == r->b;
    default: return false;
    }
}

/* The seccomp action of rule r under preset p. */
static uint32_t rule_action(const struct vs_sc_rule *r, enum vs_seccomp_preset p)
{
    switch (r->kind) {
    case VS_SC_ALLOW: return (unsigned)p >= r->level ? SECCOMP_RET_ALLOW : SECCOMP_RET_USER_NOTIF;
    case VS_SC_BLOCK: return SECCOMP_RET_USER_NOTIF;
    default: return SECCOMP_RET_ERRNO | ENOSYS;
    }
}

int vs_seccomp_table_action(enum vs_seccomp_preset p, const char *name, const uint64_t args[6],
                            uint32_t *action)
{
    bool found = false;
    uint32_t act = SECCOMP_RET_ERRNO | ENOSYS;

    if ((unsigned)p >= VS_PRESET_COUNT)
        return -EINVAL;
    for (size_t i = 0; name != NULL && i < vs_seccomp_n_rules; i++) {
        const struct vs_sc_rule *r = &vs_seccomp_rules[i];
        if (strcmp(r->name, name) != 0 || !vs_sc_rule_matches(r, args))
            continue;
        uint32_t a = rule_action(r, p);
        if (found && a != act)
            return -EDOM;
        found = true;
        act = a;
    }
    *action = act;
    return 0;
}

bool vs_seccomp_always_blocked(const char *name, const uint64_t args[6])
{
    for (size_t i = 0; name != NULL && i < vs_seccomp_n_rules; i++) {
        const struct vs_sc_rule *r = &vs_seccomp_rules[i];
        if (r->kind == VS_SC_BLOCK && strcmp(r->name, name) == 0 && vs_sc_rule_matches(r, args))
            return true;
    }
    return false;
}

/* ---- prebuilt programs -------------------------------------------------------- */

#ifndef VS_SECCOMP_GENERATOR
int vs_seccomp_program(enum vs_seccomp_preset p, struct sock_fprog *prog)
{
    if ((unsigned)p >= VS_PRESET_COUNT || prog == NULL)
        return -EINVAL;
    if (vs_seccomp_prebuilt_arch != VS_NATIVE_AUDIT_ARCH)
        return -ENOEXEC;
    prog->len = vs_seccomp_prebuilt[p].len;
    /* The kernel only reads the program; sock_fprog just lacks the const. */
    prog->filter = (struct sock_filter *)(uintptr_t)vs_seccomp_prebuilt[p].filter;
    return 0;
}

void vs_seccomp_program_hash(enum vs_seccomp_preset p, uint8_t out[32])
{
    if ((unsigned)p >= VS_PRESET_COUNT)
        memset(out, 0, 32);
    else
        memcpy(out, vs_seccomp_prebuilt[p].sha256, 32);
}
#endif

/* ---- loading ------------------------------------------------------------------ */

int vs_seccomp_install(const struct sock_fprog *prog)
{
    if (prog == NULL || prog->len == 0 || prog->filter == NULL)
        return -EINVAL;
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog);
    if (fd < 0)
        return -errno;
    return (int)fd;
}

/* ---- a classic BPF interpreter (the seccomp subset) ------------------------------ */

uint32_t vs_seccomp_bpf_run(const struct sock_fprog *prog, const struct seccomp_data *d)
{
    uint32_t A = 0, X = 0, mem[BPF_MEMWORDS] = {0};
    const unsigned char *data = (const unsigned char *)d;

    for (size_t pc = 0; prog != NULL && pc < prog->len; pc++) {
        const struct sock_filter *f = &prog->filter[pc];
        uint32_t k = f->k, src = BPF_SRC(f->code) == BPF_X ? X : k;

        switch (BPF_CLASS(f->code)) {
        case BPF_LD:
            if (f->code == (BPF_LD | BPF_W | BPF_ABS)) {
                if (k % 4 != 0 || k > sizeof(*d) - 4)
                    return 0;
                memcpy(&A, data + k, 4);
            } else if (f->code == (BPF_LD | BPF_W | BPF_LEN)) {
                A = sizeof(*d);
            } else if (f->code == (BPF_LD | BPF_IMM)) {
                A = k;
            } else if (f->code == (BPF_LD | BPF_MEM) && k < BPF_MEMWORDS) {
                A = mem[k];
            } else {
                return 0;
            }
            break;
        case BPF_LDX:
            if (f->code == (BPF_LDX | BPF_W | BPF_LEN))
                X = sizeof(*d);
            else if (f->code == (BPF_LDX | BPF_IMM))
                X = k;
            else if (f->code == (BPF_LDX | BPF_MEM) && k < BPF_MEMWORDS)
                X = mem[k];
            else
                return 0;
            break;
        case BPF_ST:
        case BPF_STX:
            if (k >= BPF_MEMWORDS)
                return 0;
            mem[k] = BPF_CLASS(f->code) == BPF_ST ? A : X;
            break;
        case BPF_ALU:
            switch (BPF_OP(f->code)) {
            case BPF_ADD: A += src; break;
            case BPF_SUB: A -= src; break;
            case BPF_MUL: A *= src; break;
            case BPF_DIV:
                if (src == 0)
                    return 0;
                A /= src;
                break;
            case BPF_MOD:
                if (src == 0)
                    return 0;
                A %= src;
                break;
            case BPF_AND: A &= src; break;
            case BPF_OR: A |= src; break;
            case BPF_XOR: A ^= src; break;
            case BPF_LSH: A = src < 32 ? A << src : 0; break;
            case BPF_RSH: A = src < 32 ? A >> src : 0; break;
            case BPF_NEG: A = 0u - A; break;
            default: return 0;
            }
            break;
        case BPF_JMP: {
            bool t;
            if (BPF_OP(f->code) == BPF_JA) {
                pc += k;
                continue;
            }
            switch (BPF_OP(f->code)) {
            case BPF_JEQ: t = A == src; break;
            case BPF_JGT: t = A > src; break;
            case BPF_JGE: t = A >= src; break;
            case BPF_JSET: t = (A & src) != 0; break;
            default: return 0;
            }
            pc += t ? f->jt : f->jf;
            break;
        }
        case BPF_RET:
            if (BPF_RVAL(f->code) == BPF_K)
                return k;
            if (BPF_RVAL(f->code) == BPF_A)
                return A;
            return 0;
        case BPF_MISC:
            if (BPF_MISCOP(f->code) == BPF_TAX)
                X = A;
            else
                A = X;
            break;
        default: return 0;
        }
    }
    return 0; /* fell off the end: the kernel would not have accepted it */
}

/* ---- self-check ------------------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Compare one call's BPF result with the expected one. */
static int probe(const struct sock_fprog *prog, enum vs_seccomp_preset p, uint32_t arch, int nr,
                 const char *name, const uint64_t args[6], uint32_t expect, char *err,
                 size_t errlen)
{
    struct seccomp_data d;
    memset(&d, 0, sizeof(d));
    d.nr = nr;
    d.arch = arch;
    d.instruction_pointer = 0x401000;
    memcpy(d.args, args, sizeof(d.args));
    uint32_t got = vs_seccomp_bpf_run(prog, &d);
    if (got == expect)
        return 0;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen,
                 "preset %s: %s (nr %d, arch 0x%x, args 0x%llx 0x%llx 0x%llx): BPF returns "
                 "0x%08x, the table says 0x%08x",
                 preset_strs[p], name != NULL ? name : "?", nr, arch,
                 (unsigned long long)args[0], (unsigned long long)args[1],
                 (unsigned long long)args[2], got, expect);
    return -EPROTO;
}

/* Probe syscall nr (name, or NULL if libseccomp has no name for it) with
 * values around every comparison the table makes on it. */
static int probe_syscall(const struct sock_fprog *prog, enum vs_seccomp_preset p, int nr,
                         const char *name, uint64_t *seed, char *err, size_t errlen)
{
    uint64_t args[6] = {0}, vals[96];
    uint32_t expect;
    int rc;

    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 6; i++)
            args[i] = round == 0 ? 0 : xorshift(seed) >> (round * 7 % 64);
        if (vs_seccomp_table_action(p, name, args, &expect) < 0) {
            snprintf(err, errlen, "table: rules of %s overlap with different actions", name);
            return -EPROTO;
        }
        if ((rc = probe(prog, p, VS_NATIVE_AUDIT_ARCH, nr, name, args, expect, err, errlen)) < 0)
            return rc;
    }
    for (size_t ri = 0; name != NULL && ri < vs_seccomp_n_rules; ri++) {
        const struct vs_sc_rule *r = &vs_seccomp_rules[ri];
        size_t n = 0;
        if (r->op == VS_OP_NONE || strcmp(r->name, name) != 0)
            continue;
        const uint64_t base[] = {0, 1, 2, 3, 0xffffffffu, 0x100000000ull, ~0ull,
                                 0xffffffff00000000ull, 0x7fffffffu, 0x80000000u};
        for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
            vals[n++] = base[i];
        const uint64_t around[] = {r->a, r->b};
        for (size_t i = 0; i < 2; i++) {
            vals[n++] = around[i];
            vals[n++] = around[i] - 1;
            vals[n++] = around[i] + 1;
            vals[n++] = around[i] | 0x100000000ull;
            vals[n++] = around[i] | 0xffffffff00000000ull;
        }
        if (r->op == VS_OP_MASKED_EQ) {
            /* the datum with each masked bit flipped (up to 32), and with
             * random unmasked bits */
            for (int bit = 0; bit < 64 && n < 80; bit++)
                if (r->a & (1ull << bit))
                    vals[n++] = r->b ^ (1ull << bit);
            for (int i = 0; i < 8; i++)
                vals[n++] = r->b | (xorshift(seed) & ~r->a);
        }
        while (n < sizeof(vals) / sizeof(vals[0]))
            vals[n++] = xorshift(seed) >> (xorshift(seed) % 64);
        for (size_t i = 0; i < n; i++) {
            for (int j = 0; j < 6; j++)
                args[j] = i % 2 ? xorshift(seed) : 0;
            args[r->arg] = vals[i];
            if (vs_seccomp_table_action(p, name, args, &expect) < 0) {
                snprintf(err, errlen, "table: rules of %s overlap with different actions", name);
                return -EPROTO;
            }
            if ((rc = probe(prog, p, VS_NATIVE_AUDIT_ARCH, nr, name, args, expect, err, errlen)) <
                0)
                return rc;
        }
    }
    return 0;
}

int vs_seccomp_selfcheck(enum vs_seccomp_preset p, const struct sock_fprog *prog, char *err,
                         size_t errlen)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)p;
    uint64_t args[6] = {0};
    char dummy[8];
    int rc;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if ((unsigned)p >= VS_PRESET_COUNT || prog == NULL)
        return -EINVAL;

    /* Every syscall number of the native ABI, and numbers past the end. */
    for (int nr = -1; nr < 1100; nr++) {
        char *name = nr >= 0 ? seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr) : NULL;
        rc = probe_syscall(prog, p, nr, name, &seed, err, errlen);
        free(name);
        if (rc < 0)
            return rc;
    }
    /* Foreign ABIs are killed: x32 numbers on the native arch, i386, and an
     * architecture nobody uses. */
    const int x32[] = {0, 1, 39, 59, 101, 165, 0x1000, 0x3ffffffe};
    for (size_t i = 0; i < sizeof(x32) / sizeof(x32[0]); i++)
        if ((rc = probe(prog, p, VS_NATIVE_AUDIT_ARCH, (int)(X32_SYSCALL_BIT | (uint32_t)x32[i]),
                        "x32", args, SECCOMP_RET_KILL_PROCESS, err, errlen)) < 0)
            return rc;
    const uint32_t foreign[] = {AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64 ^ 1, 0};
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
        for (int nr = 0; nr < 400; nr += 7)
            if (foreign[i] != VS_NATIVE_AUDIT_ARCH &&
                (rc = probe(prog, p, foreign[i], nr, "foreign", args, SECCOMP_RET_KILL_PROCESS,
                            err, errlen)) < 0)
                return rc;
    return 0;
}

/* ---- the OCI profile ------------------------------------------------------------- */

static const char *oci_op(uint8_t op)
{
    switch (op) {
    case VS_OP_EQ: return "SCMP_CMP_EQ";
    case VS_OP_GT: return "SCMP_CMP_GT";
    case VS_OP_MASKED_EQ: return "SCMP_CMP_MASKED_EQ";
    default: return NULL;
    }
}

/* An entry {"names":[name], "action":..., ["errnoRet":...], ["args":[...]]}. */
static json_t *oci_entry(json_t *names, uint32_t action, const struct vs_sc_rule *cond)
{
    json_t *e = json_object();
    if (e == NULL) {
        json_decref(names);
        return NULL;
    }
    int bad = json_object_set_new(e, "names", names);
    if (action == SECCOMP_RET_ALLOW) {
        bad |= json_object_set_new(e, "action", json_string("SCMP_ACT_ALLOW"));
    } else {
        /* Podman and Docker cannot notify: a named denial is plain EPERM. */
        int err = action == SECCOMP_RET_USER_NOTIF ? EPERM : (int)(action & SECCOMP_RET_DATA);
        bad |= json_object_set_new(e, "action", json_string("SCMP_ACT_ERRNO"));
        bad |= json_object_set_new(e, "errnoRet", json_integer(err));
    }
    if (cond != NULL && cond->op != VS_OP_NONE) {
        json_t *arg = json_object(), *args = json_array();
        /* OCI: MASKED_EQ's value is the mask and valueTwo the datum. The
         * values are written as JSON integers (int64); every value in the
         * table fits. */
        bad |= json_object_set_new(arg, "index", json_integer(cond->arg));
        bad |= json_object_set_new(arg, "value", json_integer((json_int_t)cond->a));
        bad |= json_object_set_new(arg, "valueTwo", json_integer((json_int_t)cond->b));
        bad |= json_object_set_new(arg, "op", json_string(oci_op(cond->op)));
        bad |= json_array_append_new(args, arg);
        bad |= json_object_set_new(e, "args", args);
    }
    if (bad != 0) {
        json_decref(e);
        return NULL;
    }
    return e;
}

int vs_seccomp_export_oci(enum vs_seccomp_preset p, FILE *out)
{
    /* unconditional rules, grouped by action: allow, EPERM, ENOSYS */
    static const uint32_t groups[] = {SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF,
                                      SECCOMP_RET_ERRNO | ENOSYS};
    int rc = -ENOMEM;

    if ((unsigned)p >= VS_PRESET_COUNT || out == NULL)
        return -EINVAL;
    json_t *root = json_object(), *syscalls = json_array(), *archs = json_array();
    if (root == NULL || syscalls == NULL || archs == NULL) {
        json_decref(root);
        json_decref(syscalls);
        json_decref(archs);
        return -ENOMEM;
    }
    int bad = json_object_set_new(root, "defaultAction", json_string("SCMP_ACT_ERRNO"));
    bad |= json_object_set_new(root, "defaultErrnoRet", json_integer(ENOSYS));
    bad |= json_array_append_new(archs, json_string(VS_NATIVE_OCI_ARCH));
    bad |= json_object_set_new(root, "architectures", archs);
    bad |= json_object_set_new(root, "syscalls", syscalls);
    if (bad != 0)
        goto done;

    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        json_t *names = json_array();
        if (names == NULL)
            goto done;
        for (size_t i = 0; i < vs_seccomp_n_rules; i++) {
            const struct vs_sc_rule *r = &vs_seccomp_rules[i];
            if (r->op == VS_OP_NONE && rule_action(r, p) == groups[g] &&
                json_array_append_new(names, json_string(r->name)) != 0) {
                json_decref(names);
                goto done;
            }
        }
        if (json_array_size(names) == 0) {
            json_decref(names);
            continue;
        }
        json_t *e = oci_entry(names, groups[g], NULL);
        if (e == NULL || json_array_append_new(syscalls, e) != 0)
            goto done;
    }
    for (size_t i = 0; i < vs_seccomp_n_rules; i++) {
        const struct vs_sc_rule *r = &vs_seccomp_rules[i];
        if (r->op == VS_OP_NONE)
            continue;
        json_t *names = json_array();
        if (names == NULL || json_array_append_new(names, json_string(r->name)) != 0) {
            json_decref(names);
            goto done;
        }
        json_t *e = oci_entry(names, rule_action(r, p), r);
        if (e == NULL || json_array_append_new(syscalls, e) != 0)
            goto done;
    }
    rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 && fputc('\n', out) != EOF
             ? 0
             : -EIO;
    if (rc == 0 && fflush(out) != 0)
        rc = -EIO;
done:
    json_decref(root);
    return rc;
}
