/*
 * launch.c - vs_sandbox_run: the process choreography of one sandbox.
 *
 *   launcher ──clone(NEWUSER|NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS)──▶ init (pid 1)
 *      writes uid/gid maps, says "go",               builds the file system (fs.c)
 *      creates the cgroup meanwhile and sends        joins the cgroup (v1: itself),
 *      "go2" (the limits it enforces, and on v1      unshares its cgroup namespace,
 *      the cgroup files for init)                    forks the program and reaps
 *                                                      └─▶ program: drops everything,
 *      supervises seccomp notifications,                    sends its seccomp listener
 *      enforces the wall-clock and pids limits,             to the launcher, execve
 *      reads the program's wait status from init
 *
 * init is the sandbox's pid 1: when it exits the kernel kills everything
 * left in the pid namespace, so killing init is how every limit ends the
 * sandbox. The launcher never trusts what happens inside: setup errors come
 * back as text on a close-on-exec pipe, the program's status as 4 bytes on
 * another, and a missing or short answer is itself an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "fs.h"
#include "landlock.h"
#include "outcome.h"
#include "seccomp_policy.h"
#include "snapshot.h"
#include "vs/sandbox.h"

#define AGENT_ID 1000
#define UID_RANGE_BASE 1500000000u  /* host uids of sandboxes when run as root */
#define UID_RANGE_SLOTS 65536u
#define POLL_MS 50
#define SETUP_TIMEOUT_MS 10000

static const char *const search_path[] = {"/usr/local/bin", "/usr/bin", "/bin", NULL};

void vs_sandbox_policy_init(struct vs_sandbox_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->preset = VS_PRESET_MINIMAL;
    p->workspace_bytes = 64ull << 20;
    p->tmp_bytes = 16ull << 20;
    p->nofile = 256;
    p->command_fd = -1;
    p->cwd = "/workspace";
    p->snapshot_fd = -1;
    p->stdin_fd = -1;
    p->stdout_fd = -1;
}

/* ---- names ----------------------------------------------------------------- */

const char *vs_kill_reason_name(enum vs_kill_reason k)
{
    static const char *const names[] = {"none",    "time", "memory",  "pids",
                                        "seccomp", "cpu",  "watchdog"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

const char *vs_limit_mode_name(enum vs_limit_mode m)
{
    static const char *const names[] = {"rlimit", "cgroup-v1", "cgroup-v2"};
    return (unsigned)m < sizeof(names) / sizeof(names[0]) ? names[m] : "unknown";
}

const char *vs_preset_name(enum vs_seccomp_preset p)
{
    static const char *const names[] = {"minimal", "compute", "network"};
    return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "unknown";
}

int vs_preset_parse(const char *name, enum vs_seccomp_preset *out)
{
    for (int i = VS_PRESET_MINIMAL; i <= VS_PRESET_NETWORK; i++) {
        if (name != NULL && strcmp(name, vs_preset_name((enum vs_seccomp_preset)i)) == 0) {
            *out = (enum vs_seccomp_preset)i;
            return 0;
        }
    }
    return -EINVAL;
}

int vs_sandbox_exit_status(const struct vs_sandbox_result *r)
{
    switch (r->kill_reason) {
    case VS_KILL_TIME: return VS_SANDBOX_EXIT_TIME;
    case VS_KILL_MEMORY: return VS_SANDBOX_EXIT_MEMORY;
    case VS_KILL_PIDS: return VS_SANDBOX_EXIT_PIDS;
    case VS_KILL_SECCOMP: return VS_SANDBOX_EXIT_SECCOMP;
    case VS_KILL_CPU: return VS_SANDBOX_EXIT_CPU;
    case VS_KILL_WATCHDOG: return VS_SANDBOX_EXIT_STOPPED;
    case VS_KILL_NONE: break;
    }
    if (r->setup_error[0] != '\0')
        return VS_SANDBOX_EXIT_SETUP;
    if (r->signal > 0)
        return 128 + r->signal;
    return r->exit_code >= 0 ? r->exit_code : VS_SANDBOX_EXIT_SETUP;
}

/* ---- inside: shared helpers ------------------------------------------------- */

/* Report a setup failure to the launcher and die. Only async-signal-safe
 * calls: this runs in forked children. */
static void die(int errfd, const char *msg)
{
    size_t n = strlen(msg);
    if (write(errfd, msg, n) < 0) {
        /* nothing more to do: the launcher sees a silent death */
    }
    _exit(127);
}

static void die_errno(int errfd, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
    die(errfd, msg);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n == (ssize_t)strlen(text) ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return rc;
}

/* ---- the program ------------------------------------------------------------ */

struct inside {
    const struct vs_sandbox_policy *p;
    char *const *argv;
    int errfd;          /* setup errors, close-on-exec */
    int fdsock;         /* the seccomp listener goes back here */
    bool root_mode;     /* the launcher is host root: ns uid 0 is mapped */
    unsigned enforced;  /* limits a cgroup enforces (VS_CG_*) */
};

/* The launcher's second "go", on the socket: sent once the cgroup exists
 * (it is created while init builds the file system), with the v1 "tasks"
 * files init writes itself into as SCM_RIGHTS (see
 * vs_cgroup_self_attach_open). */
#define GO2_MAX_FDS 4
struct go2 {
    uint32_t enforced;  /* limits the cgroup enforces (VS_CG_*) */
    uint32_t n_fds;
};

static int send_go2(int sock, const struct go2 *g, const int *fds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * GO2_MAX_FDS)];
    } u;
    struct iovec iov = {.iov_base = (void *)g, .iov_len = sizeof(*g)};
    struct msghdr msg;
    ssize_t n;

    if (g->n_fds > GO2_MAX_FDS)
        return -EINVAL;
    memset(&u, 0, sizeof(u));
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (g->n_fds > 0) {
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * g->n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * g->n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * g->n_fds);
    }
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == (ssize_t)sizeof(*g) ? 0 : -EIO;
}

/* In init: the go2 message and exactly the fds it announces, or -1 (any
 * fds received are closed). */
static int recv_go2(int sock, struct go2 *g, int *fds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * GO2_MAX_FDS)];
    } u;
    struct iovec iov = {.iov_base = g, .iov_len = sizeof(*g)};
    struct msghdr msg;
    ssize_t n;
    size_t got = 0;
    bool bad = false;

    memset(&u, 0, sizeof(u));
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (got < GO2_MAX_FDS)
                fds[got++] = fd;
            else
                close(fd);
        }
    }
    if (n != (ssize_t)sizeof(*g) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        g->n_fds != got)
        bad = true;
    if (bad) {
        while (got > 0)
            close(fds[--got]);
        return -1;
    }
    return 0;
}

static void drop_capabilities(int errfd)
{
    /* The bounding set first: that needs CAP_SETPCAP, which goes next.
     * Capabilities are numbered 0..cap_last_cap without gaps, and the
     * kernel answers EINVAL past the last one: that ends the loop, without
     * reading /proc/sys/kernel/cap_last_cap through stdio. */
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL && cap > 0)
            break;
        die_errno(errfd, "drop the bounding set");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        die_errno(errfd, "clear ambient capabilities");
}

static void clear_capability_sets(int errfd)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        die_errno(errfd, "clear capabilities");
}

static void become_agent(const struct inside *in)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0 && in->root_mode)
        die_errno(in->errfd, "drop supplementary groups");
    drop_capabilities(in->errfd);
    /* Raw system calls: glibc's wrappers would "broadcast" the change to
     * the threads of the (threaded) launcher this process was cloned from,
     * and wait for threads that do not exist here. */
    if (syscall(SYS_setresgid, AGENT_ID, AGENT_ID, AGENT_ID) < 0)
        die_errno(in->errfd, "setresgid");
    if (syscall(SYS_setresuid, AGENT_ID, AGENT_ID, AGENT_ID) < 0)
        die_errno(in->errfd, "setresuid");
    clear_capability_sets(in->errfd);
}

static void set_limit(int errfd, int resource, uint64_t value, const char *name)
{
    struct rlimit rl;
    if (getrlimit(resource, &rl) < 0)
        die_errno(errfd, name);
    rlim_t v = (rlim_t)value;
    if (rl.rlim_max != RLIM_INFINITY && v > rl.rlim_max)
        v = rl.rlim_max; /* hard limits can only be lowered */
    rl.rlim_cur = rl.rlim_max = v;
    if (setrlimit(resource, &rl) < 0)
        die_errno(errfd, name);
}

static void apply_rlimits(const struct inside *in)
{
    const struct vs_sandbox_policy *p = in->p;
    set_limit(in->errfd, RLIMIT_CORE, 0, "RLIMIT_CORE");
    set_limit(in->errfd, RLIMIT_NOFILE, p->nofile, "RLIMIT_NOFILE");
    set_limit(in->errfd, RLIMIT_FSIZE, p->fsize_bytes > 0 ? p->fsize_bytes : p->workspace_bytes,
              "RLIMIT_FSIZE");
    if (p->cpu_limit_ms > 0) {
        /* SIGXCPU at the soft limit names the cause; the hard limit, a
         * second later, kills a program that ignores it. */
        struct rlimit cpu = {.rlim_cur = (rlim_t)((p->cpu_limit_ms + 999) / 1000)};
        cpu.rlim_max = cpu.rlim_cur + 1;
        if (setrlimit(RLIMIT_CPU, &cpu) < 0)
            die_errno(in->errfd, "RLIMIT_CPU");
    }
    /* Where no cgroup enforces them these are the memory and process
     * limits. As root each sandbox has its own host uid, so RLIMIT_NPROC
     * also backs the pids cgroup. */
    if (p->memory_bytes > 0 && !(in->enforced & VS_CG_MEMORY))
        set_limit(in->errfd, RLIMIT_AS, p->memory_bytes, "RLIMIT_AS");
    if (p->pids > 0 && (!(in->enforced & VS_CG_PIDS) || in->root_mode))
        set_limit(in->errfd, RLIMIT_NPROC, p->pids, "RLIMIT_NPROC");
}

static void only_allowed_fds(struct inside *in)
{
    /* Move our two descriptors out of the way of fd 3 first. */
    int errfd = fcntl(in->errfd, F_DUPFD_CLOEXEC, 64);
    int fdsock = fcntl(in->fdsock, F_DUPFD_CLOEXEC, 64);
    if (errfd < 0 || fdsock < 0)
        die_errno(in->errfd, "move descriptors");
    close(in->errfd);
    close(in->fdsock);
    in->errfd = errfd;
    in->fdsock = fdsock;
    int cmd = in->p->command_fd;
    if (cmd >= 0 && cmd != 3) {
        if (dup2(cmd, 3) < 0)
            die_errno(in->errfd, "command channel");
    }
    /* Keep errfd and fdsock until the exec (errfd is close-on-exec, fdsock
     * is closed by hand); close everything else in three ranges. */
    unsigned first = cmd >= 0 ? 4 : 3;
    unsigned lo = (unsigned)(in->errfd < in->fdsock ? in->errfd : in->fdsock);
    unsigned hi = (unsigned)(in->errfd < in->fdsock ? in->fdsock : in->errfd);
    if (syscall(SYS_close_range, first, lo - 1, 0) < 0 ||
        (hi > lo + 1 && syscall(SYS_close_range, lo + 1, hi - 1, 0) < 0) ||
        syscall(SYS_close_range, hi + 1, ~0u, 0) < 0)
        die_errno(in->errfd, "close inherited descriptors");
}

/* The final steps, in an order where each one still has what it needs. */
static void run_program(struct inside *in)
{
    const struct vs_sandbox_policy *p = in->p;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        die_errno(in->errfd, "PR_SET_PDEATHSIG");
    if (setsid() < 0)
        die_errno(in->errfd, "setsid");
    if ((p->stdin_fd >= 0 && dup2(p->stdin_fd, 0) < 0) ||
        (p->stdout_fd >= 0 && (dup2(p->stdout_fd, 1) < 0 || dup2(p->stdout_fd, 2) < 0)))
        die_errno(in->errfd, "stdio");
    only_allowed_fds(in);
    become_agent(in);
    apply_rlimits(in);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die_errno(in->errfd, "no_new_privs");
    static const char *const ro[] = {"/", NULL};
    static const char *const rw[] = {"/workspace", "/tmp", "/dev", NULL};
    int abi = 0;
    int rc = vs_landlock_apply(ro, rw, p->preset == VS_PRESET_NETWORK, &abi);
    if (rc < 0 && rc != -ENOSYS && rc != -EOPNOTSUPP) {
        errno = -rc;
        die_errno(in->errfd, "landlock");
    }
    if (chdir(p->cwd) < 0)
        die_errno(in->errfd, "chdir");

    char *env[VS_SANDBOX_MAX_ENV + 1];
    for (size_t i = 0; i < p->n_env; i++)
        env[i] = (char *)p->env[i];
    env[p->n_env] = NULL;

    /* Find the program before the filter goes on: lookups are file system
     * work the filter may not allow to the launcher's own code. */
    char path[PATH_MAX];
    const char *prog = in->argv[0];
    if (strchr(prog, '/') == NULL) {
        path[0] = '\0';
        for (const char *const *d = search_path; *d != NULL; d++) {
            snprintf(path, sizeof(path), "%s/%s", *d, prog);
            if (access(path, X_OK) == 0)
                break;
            path[0] = '\0';
        }
        if (path[0] == '\0') {
            errno = ENOENT;
            die_errno(in->errfd, prog);
        }
        prog = path;
    }

    struct sock_fprog filter;
    if (vs_seccomp_program(p->preset, &filter) < 0)
        die(in->errfd, "no seccomp program for the preset");
    int listener = vs_seccomp_install(&filter);
    if (listener < 0) {
        errno = -listener;
        die_errno(in->errfd, "seccomp");
    }
    if (vs_fd_send(in->fdsock, listener) < 0)
        die_errno(in->errfd, "send the seccomp listener");
    close(listener);
    close(in->fdsock);
    execve(prog, in->argv, env);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "execute %s", prog);
    die_errno(in->errfd, what);
}

/* ---- init: pid 1 of the sandbox --------------------------------------------- */

static void end_everything(int sig)
{
    (void)sig;
    kill(-1, SIGKILL);
}

/* The program has ended: end what it left running, so nothing writes
 * while the snapshot is taken, and write the snapshot of /workspace/out
 * as init sees it - inside the sandbox's mount namespace. */
static void take_snapshot(const struct vs_sandbox_policy *p)
{
    if (p->snapshot_fd < 0)
        return;
    kill(-1, SIGKILL);
    struct vs_snapshot_stats st;
    vs_snapshot_write("/workspace/out", p->snapshot_fd, p->snapshot_max_bytes, &st);
    close(p->snapshot_fd);
}

/* Close every descriptor but 0-2 and keep[0..n) (n small; -1 entries are
 * ignored). A launcher in a threaded daemon holds other sandboxes' pipes
 * and channels, and init must not keep them open. */
static void close_all_but(int errfd, int *keep, size_t n)
{
    for (size_t i = 1; i < n; i++) /* insertion sort */
        for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned from = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < (int)from)
            continue;
        if ((unsigned)keep[i] > from && syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0) < 0)
            die_errno(errfd, "close inherited descriptors");
        from = (unsigned)keep[i] + 1;
    }
    if (syscall(SYS_close_range, from, ~0u, 0) < 0)
        die_errno(errfd, "close inherited descriptors");
}

static void run_init(struct inside *in, int syncfd, int statusfd)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        die_errno(in->errfd, "PR_SET_PDEATHSIG");
    int keep[] = {syncfd,           statusfd,           in->errfd,         in->fdsock,
                  in->p->command_fd, in->p->snapshot_fd, in->p->stdin_fd, in->p->stdout_fd};
    close_all_but(in->errfd, keep, sizeof keep / sizeof keep[0]);
    char go;
    if (read(syncfd, &go, 1) != 1)
        _exit(127); /* the launcher went away */
    /* The uid/gid maps are written. The launcher creates the cgroup while
     * we build the file system (nothing here depends on the cgroup). */
    if (in->root_mode) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
            die_errno(in->errfd, "become the namespace's root");
        /* A uid change clears the parent-death signal: set it again, then
         * make sure the launcher did not die in between (its end of the
         * sync pipe would be closed). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
            die_errno(in->errfd, "PR_SET_PDEATHSIG");
        struct pollfd pfd = {.fd = syncfd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLIN)))
            _exit(127);
    }
    close(syncfd);
    /* The file system's mount points and the program's files get the usual
     * modes whatever the launcher's umask (a daemon's 027 would make /opt
     * 0750, closed to the sandbox's uid). */
    umask(022);
    char err[256];
    if (vs_fs_build(in->p, err, sizeof(err)) < 0)
        die(in->errfd, err);
    if (sethostname("vs-sandbox", 10) < 0)
        die_errno(in->errfd, "sethostname");
    /* Nothing inside may read or write init's memory. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        die_errno(in->errfd, "PR_SET_DUMPABLE");

    /* go2: the cgroup is ready. On v1 we join it ourselves (see
     * vs_cgroup_self_attach_open); the descriptors are closed before
     * anything else runs. On v2 the launcher has moved us already. */
    struct go2 g;
    int cg_fds[GO2_MAX_FDS];
    if (recv_go2(in->fdsock, &g, cg_fds) < 0)
        _exit(127); /* the launcher gave up (and says why) */
    in->enforced = g.enforced;
    if (g.n_fds > 0) {
        int rc = vs_cgroup_self_attach(cg_fds, g.n_fds);
        for (size_t i = 0; i < g.n_fds; i++)
            close(cg_fds[i]);
        if (rc < 0) {
            errno = -rc;
            die_errno(in->errfd, "join the cgroup");
        }
    }
    /* In the sandbox's cgroup now: a cgroup namespace rooted there hides the
     * host's hierarchy. */
    if (unshare(CLONE_NEWCGROUP) < 0)
        die_errno(in->errfd, "cgroup namespace");

    /* vs_sandbox_finish: the program's work is done; end it and all it
     * started (init is the one process kill(-1) spares), then snapshot. */
    struct sigaction finish = {.sa_handler = end_everything, .sa_flags = SA_RESTART};
    sigemptyset(&finish.sa_mask);
    if (sigaction(SIGUSR1, &finish, NULL) < 0)
        die_errno(in->errfd, "SIGUSR1");
    /* A raw clone, not fork(): glibc's fork takes malloc's arena locks, and
     * init is a copy of a launcher that may have had other threads (a
     * daemon's) holding them - locks no thread here will ever release. */
    pid_t prog = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (prog < 0)
        die_errno(in->errfd, "fork the program");
    if (prog == 0) {
        close(statusfd);
        run_program(in);
    }
    close(in->fdsock);
    close(in->errfd);
    if (in->p->command_fd >= 0)
        close(in->p->command_fd);
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            _exit(127);
        if (w == prog) {
            take_snapshot(in->p);
            int32_t status = st;
            ssize_t n = write(statusfd, &status, sizeof(status));
            _exit(n == (ssize_t)sizeof(status) ? 0 : 127);
        }
    }
}

/* ---- the launcher ----------------------------------------------------------------- */

static int write_maps(pid_t pid, bool root_mode, uint32_t host_uid, char *err, size_t errlen)
{
    char path[64], map[128];
    int rc;
    if (root_mode) {
        /* ns 0 (init while it builds) and 1000 (the program): two host uids
         * from the dedicated range, never host root. */
        snprintf(map, sizeof(map), "0 %u 1\n%d %u 1\n", host_uid - 1, AGENT_ID, host_uid);
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        rc = write_file(path, map);
        if (rc == 0) {
            snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
            rc = write_file(path, map);
        }
    } else {
        snprintf(map, sizeof(map), "%d %u 1\n", AGENT_ID, (unsigned)geteuid());
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        rc = write_file(path, map);
        snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
        if (rc == 0)
            rc = write_file(path, "deny");
        snprintf(map, sizeof(map), "%d %u 1\n", AGENT_ID, (unsigned)getegid());
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        if (rc == 0)
            rc = write_file(path, map);
    }
    if (rc < 0)
        snprintf(err, errlen, "cannot write the uid/gid maps: %s", strerror(-rc));
    return rc;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void userns_refused(int e, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "cannot create the sandbox's namespaces: %s. User namespaces are refused here: "
             "check that user.max_user_namespaces is above 0, that "
             "kernel.unprivileged_userns_clone is 1 (Debian), and that AppArmor's "
             "kernel.apparmor_restrict_unprivileged_userns is 0 or a profile allows userns "
             "for this binary",
             strerror(e));
}

struct run {
    const struct vs_sandbox_policy *p;
    struct vs_sandbox_result *r;
    pid_t init;
    int errfd, statusfd, fdsock;
    int listener;       /* the seccomp listener until its first notification */
    vs_cgroup *cg;
    struct vs_seccomp_supervisor *sup;
    bool killed_time, killed_pids, killed_watchdog;
    int32_t prog_status;
    bool have_status;
    int ctl[2];         /* vs_sandbox_finish / _kill wake the supervisor here */
    _Atomic int request;/* what they asked: REQUEST_* */
    _Atomic bool ended;
};

enum { REQUEST_NONE, REQUEST_FINISH, REQUEST_KILL };

struct vs_sandbox {
    struct run run;
    uint64_t start;
    uint32_t serial;    /* this process's launch count: names its cgroup and host uid */
    int syncw;          /* init's "go" pipe, kept until the end */
};

/* Launches by this process: sandboxes started at once (a daemon's threads)
 * need cgroups and host uids of their own. */
static _Atomic uint32_t launches;

static void kill_sandbox(struct run *run)
{
    kill(run->init, SIGKILL); /* pid 1 gone: the kernel kills the namespace */
    if (run->cg != NULL)
        vs_cgroup_kill(run->cg);
}

/* Act on what vs_sandbox_finish or vs_sandbox_kill asked. */
static void take_request(struct run *run)
{
    char drain[16];
    if (read(run->ctl[0], drain, sizeof drain) < 0) {
        /* nothing to drain: the request below is what counts */
    }
    int req = atomic_exchange(&run->request, REQUEST_NONE);
    if (req == REQUEST_KILL && !run->killed_watchdog) {
        run->killed_watchdog = true;
        kill_sandbox(run);
    } else if (req == REQUEST_FINISH) {
        kill(run->init, SIGUSR1); /* init ends the program, then snapshots */
    }
}

/* Wait for init while enforcing the wall clock and the pids limit and
 * collecting the seccomp listener and the program's status. */
static void supervise(struct run *run, uint64_t start)
{
    const struct vs_sandbox_policy *p = run->p;
    /* A pidfd wakes the poll the moment init exits. */
    int pidfd = (int)syscall(SYS_pidfd_open, run->init, 0);
    bool init_done = false;
    while (!init_done) {
        /* The supervisor thread only starts when the listener has a first
         * notification: most programs never hit a named denial, and a
         * thread costs its stack mapping and a clone at every launch. */
        struct pollfd fds[5] = {{.fd = run->fdsock, .events = POLLIN},
                                {.fd = run->statusfd, .events = POLLIN},
                                {.fd = pidfd, .events = POLLIN},
                                {.fd = run->listener, .events = POLLIN},
                                {.fd = run->ctl[0], .events = POLLIN}};
        int timeout = pidfd >= 0 ? -1 : POLL_MS;
        if (p->time_limit_ms > 0 && !run->killed_time && !run->killed_pids) {
            uint64_t elapsed = mono_ms() - start;
            if (elapsed >= p->time_limit_ms) {
                run->killed_time = true;
                kill_sandbox(run);
            } else if (timeout < 0 || p->time_limit_ms - elapsed < (uint64_t)timeout) {
                timeout = (int)(p->time_limit_ms - elapsed);
            }
        }
        if (run->cg != NULL && p->pids > 0 && (timeout < 0 || timeout > POLL_MS))
            timeout = POLL_MS; /* the pids counter has no event to wait on */
        if (poll(fds, 5, timeout) > 0) {
            if (fds[4].revents & POLLIN)
                take_request(run);
            if (fds[3].revents & POLLIN) {
                if (vs_seccomp_supervisor_start(run->listener, p->seccomp_log, &run->sup) < 0)
                    close(run->listener); /* the program gets ENOSYS for these calls */
                run->listener = -1;
            } else if (fds[3].revents & (POLLHUP | POLLERR | POLLNVAL)) {
                close(run->listener); /* every user of the filter is gone */
                run->listener = -1;
            }
            if (fds[0].revents & POLLIN) {
                int listener = vs_fd_recv(run->fdsock);
                /* The first listener waits for its first notification
                 * (then the supervisor owns it); anything else is closed. */
                if (listener >= 0 && run->sup == NULL && run->listener < 0)
                    run->listener = listener;
                else if (listener >= 0)
                    close(listener);
                if (listener < 0) {
                    close(run->fdsock);
                    run->fdsock = -1;
                }
            } else if (fds[0].revents & (POLLHUP | POLLERR)) {
                close(run->fdsock);
                run->fdsock = -1;
            }
            if (fds[1].revents & (POLLIN | POLLHUP)) {
                ssize_t n = read(run->statusfd, &run->prog_status, sizeof(run->prog_status));
                run->have_status = n == (ssize_t)sizeof(run->prog_status);
                close(run->statusfd);
                run->statusfd = -1;
            }
        }
        if (run->cg != NULL && p->pids > 0 && !run->killed_pids && !run->killed_time) {
            struct vs_cgroup_stats st;
            if (vs_cgroup_stats(run->cg, &st) == 0 && st.pids_max_hits > 0) {
                run->r->pids_limit_hit = true;
                run->killed_pids = true;
                kill_sandbox(run);
            }
        }
        int st;
        struct rusage ru;
        if (wait4(run->init, &st, WNOHANG, &ru) == run->init) {
            init_done = true;
            run->r->cpu_ms = (uint64_t)ru.ru_utime.tv_sec * 1000 +
                             (uint64_t)ru.ru_utime.tv_usec / 1000 +
                             (uint64_t)ru.ru_stime.tv_sec * 1000 +
                             (uint64_t)ru.ru_stime.tv_usec / 1000;
            run->r->peak_memory_bytes = (uint64_t)ru.ru_maxrss * 1024;
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    /* A status written just before init exited. */
    if (run->statusfd >= 0) {
        ssize_t n = read(run->statusfd, &run->prog_status, sizeof(run->prog_status));
        run->have_status = n == (ssize_t)sizeof(run->prog_status);
    }
}

static void classify(struct run *run)
{
    struct vs_sandbox_result *r = run->r;
    const struct vs_sandbox_policy *p = run->p;
    struct vs_cgroup_stats cs = {0};
    if (run->cg != NULL && vs_cgroup_stats(run->cg, &cs) == 0) {
        if (cs.peak_memory_bytes > r->peak_memory_bytes)
            r->peak_memory_bytes = cs.peak_memory_bytes;
        if (cs.pids_max_hits > 0)
            r->pids_limit_hit = true;
    }
    if (run->have_status)
        vs_outcome_status(run->prog_status, r);
    if (run->killed_watchdog)
        r->kill_reason = VS_KILL_WATCHDOG;
    else if (run->killed_time)
        r->kill_reason = VS_KILL_TIME;
    else if (run->killed_pids)
        r->kill_reason = VS_KILL_PIDS;
    else
        r->kill_reason = vs_outcome_signal_reason(p, r, cs.oom_kills);
    if (r->kill_reason == VS_KILL_SECCOMP && r->n_denied == 0 && r->n_denied < VS_SANDBOX_MAX_DENIED)
        snprintf(r->denied[r->n_denied++], sizeof(r->denied[0]), "(foreign ABI)");
}

static void read_setup_error(struct run *run)
{
    char buf[sizeof(run->r->setup_error)];
    ssize_t n = read(run->errfd, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        snprintf(run->r->setup_error, sizeof(run->r->setup_error), "%s", buf);
    }
}

/* While init builds the file system: create the sandbox's cgroup, get
 * init into it (v1: init does that itself with the "tasks" files sent
 * along; v2: we write its pid) and send go2. 0, or -errno with
 * r->setup_error set. */
static int cgroup_for_init(struct run *run, pid_t init, uint32_t serial)
{
    const struct vs_sandbox_policy *p = run->p;
    struct vs_sandbox_result *r = run->r;
    char name[64];
    snprintf(name, sizeof(name), "sb-%d-%u", (int)getpid(), (unsigned)serial);
    /* At most one CPU's worth of time per period, whatever it spawns. */
    struct vs_cgroup_limits lim = {.memory_bytes = p->memory_bytes, .pids = p->pids,
                                   .cpu_quota_us = 100000, .cpu_period_us = 100000};
    struct go2 g = {.enforced = 0, .n_fds = 0};
    int fds[GO2_MAX_FDS];
    unsigned enforced = 0;
    int rc = vs_cgroup_new(name, &lim, &run->cg, &r->limit_mode, &enforced);
    if (rc < 0) {
        run->cg = NULL;
        r->limit_mode = VS_LIMITS_RLIMIT;
        if (rc != -ENOTSUP) {
            /* A cgroup that should work and does not is not a reason to
             * run with weaker limits. */
            snprintf(r->setup_error, sizeof(r->setup_error), "cannot create the cgroup: %s",
                     strerror(-rc));
            return rc;
        }
    } else {
        g.enforced = enforced;
        int n = vs_cgroup_self_attach_open(run->cg, fds, GO2_MAX_FDS);
        if (n > 0) {
            g.n_fds = (uint32_t)n;
        } else if ((rc = vs_cgroup_attach(run->cg, init)) < 0) {
            snprintf(r->setup_error, sizeof(r->setup_error), "cannot join the cgroup: %s",
                     strerror(-rc));
            return rc;
        }
    }
    rc = send_go2(run->fdsock, &g, fds);
    for (uint32_t i = 0; i < g.n_fds; i++)
        close(fds[i]);
    if (rc < 0)
        snprintf(r->setup_error, sizeof(r->setup_error), "cannot start init: %s", strerror(-rc));
    return rc;
}

/* Close and free what the launcher holds for sb. */
static void release(struct vs_sandbox *sb)
{
    struct run *run = &sb->run;
    int fds[] = {sb->syncw, run->errfd, run->statusfd, run->fdsock, run->listener, run->ctl[0],
                 run->ctl[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (run->cg != NULL)
        vs_cgroup_free(run->cg);
    free(sb);
}

/* The end of a sandbox's supervision: its result, complete. */
static int conclude(struct vs_sandbox *sb, int rc)
{
    struct run *run = &sb->run;
    struct vs_sandbox_result *r = run->r;
    read_setup_error(run);
    if (rc == 0 && r->setup_error[0] != '\0')
        rc = -EIO;
    if (run->sup != NULL)
        r->n_denied = vs_seccomp_supervisor_stop(run->sup, r->denied, VS_SANDBOX_MAX_DENIED);
    run->sup = NULL;
    r->wall_ms = mono_ms() - sb->start;
    if (rc == 0)
        classify(run);
    atomic_store(&run->ended, true);
    return rc;
}

int vs_sandbox_start(const struct vs_sandbox_policy *p, char *const argv[],
                     struct vs_sandbox_result *r, vs_sandbox **out)
{
    *out = NULL;
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    if (p == NULL || argv == NULL || argv[0] == NULL || p->n_env > VS_SANDBOX_MAX_ENV ||
        p->n_ro_binds > VS_SANDBOX_MAX_BINDS) {
        snprintf(r->setup_error, sizeof(r->setup_error), "invalid arguments");
        return -EINVAL;
    }
    struct vs_sandbox *sb = calloc(1, sizeof *sb);
    if (sb == NULL) {
        snprintf(r->setup_error, sizeof(r->setup_error), "out of memory");
        return -ENOMEM;
    }
    sb->start = mono_ms();
    sb->serial = atomic_fetch_add(&launches, 1);
    bool root_mode = geteuid() == 0;
    uint32_t host_uid = p->host_uid;
    if (root_mode && host_uid == 0)
        host_uid = UID_RANGE_BASE +
                   2u * (((uint32_t)getpid() * 7919u + sb->serial) % UID_RANGE_SLOTS) + 1u;
    r->host_uid = root_mode ? host_uid : (uint32_t)geteuid();

    struct run *run = &sb->run;
    *run = (struct run){.p = p, .r = r, .init = -1, .errfd = -1, .statusfd = -1, .fdsock = -1,
                        .listener = -1, .ctl = {-1, -1}};
    sb->syncw = -1;
    r->limit_mode = VS_LIMITS_RLIMIT;
    int syncp[2] = {-1, -1}, errp[2] = {-1, -1}, statusp[2] = {-1, -1}, sockp[2] = {-1, -1};
    if (pipe2(syncp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(statusp, O_CLOEXEC) < 0 || pipe2(run->ctl, O_CLOEXEC | O_NONBLOCK) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockp) < 0) {
        int e = errno;
        int *all[] = {syncp, errp, statusp, sockp};
        for (size_t i = 0; i < 4; i++)
            for (size_t j = 0; j < 2; j++)
                if (all[i][j] >= 0)
                    close(all[i][j]);
        snprintf(r->setup_error, sizeof(r->setup_error), "pipes: %s", strerror(e));
        release(sb);
        return -e;
    }

    r->landlock_abi = vs_landlock_abi();

    struct inside in = {.p = p, .argv = argv, .errfd = errp[1], .fdsock = sockp[1],
                        .root_mode = root_mode};
    long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                 CLONE_NEWUTS | SIGCHLD;
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(syncp[1]);
        close(errp[0]);
        close(statusp[0]);
        close(sockp[0]);
        run_init(&in, syncp[0], statusp[1]);
        _exit(127);
    }
    int e = errno;
    close(syncp[0]);
    close(errp[1]);
    close(statusp[1]);
    close(sockp[1]);
    sb->syncw = syncp[1];
    run->errfd = errp[0];
    run->statusfd = statusp[0];
    run->fdsock = sockp[0];
    int rc = 0;
    if (pid < 0) {
        userns_refused(e, r->setup_error, sizeof(r->setup_error));
        rc = -e;
    } else {
        run->init = pid;
        rc = write_maps(pid, root_mode, host_uid, r->setup_error, sizeof(r->setup_error));
        if (rc == 0 && write(syncp[1], "g", 1) != 1) {
            rc = -errno;
            snprintf(r->setup_error, sizeof(r->setup_error), "cannot start init: %s",
                     strerror(errno));
        }
        if (rc == 0)
            rc = cgroup_for_init(run, pid, sb->serial);
        if (rc == 0) {
            *out = sb;
            return 0;
        }
        kill(pid, SIGKILL);
        supervise(run, sb->start); /* reaps init */
    }
    rc = conclude(sb, rc);
    release(sb);
    return rc;
}

int vs_sandbox_wait(vs_sandbox *sb)
{
    supervise(&sb->run, sb->start);
    return conclude(sb, 0);
}

/* Hand the supervisor a request and wake it. */
static int request(vs_sandbox *sb, int what)
{
    if (atomic_load(&sb->run.ended))
        return -EALREADY;
    atomic_store(&sb->run.request, what);
    return write(sb->run.ctl[1], "r", 1) == 1 || errno == EAGAIN ? 0 : -errno;
}

int vs_sandbox_finish(vs_sandbox *sb)
{
    return request(sb, REQUEST_FINISH);
}

int vs_sandbox_kill(vs_sandbox *sb)
{
    return request(sb, REQUEST_KILL);
}

int vs_sandbox_set_memory(vs_sandbox *sb, uint64_t bytes)
{
    if (atomic_load(&sb->run.ended))
        return -EALREADY;
    return sb->run.cg != NULL ? vs_cgroup_set_memory(sb->run.cg, bytes) : -ENOTSUP;
}

void vs_sandbox_free(vs_sandbox *sb)
{
    if (sb != NULL)
        release(sb);
}

int vs_sandbox_run(const struct vs_sandbox_policy *p, char *const argv[],
                   struct vs_sandbox_result *r)
{
    vs_sandbox *sb = NULL;
    int rc = vs_sandbox_start(p, argv, r, &sb);
    if (rc < 0)
        return rc;
    rc = vs_sandbox_wait(sb);
    vs_sandbox_free(sb);
    return rc;
}
