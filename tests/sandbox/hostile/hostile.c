/*
 * hostile.c - the adversary for the sandbox battery (tests/integration/
 * test_hostile.c): one static, multi-call program whose first argument
 * names an attack. Each case tries one thing an untrusted agent could try
 * to get out of vs-sandbox (read host files, regain privileges, exhaust
 * resources, reach the network, poke the kernel's attack surface, touch the
 * host's processes) and prints what happened as
 *
 *     RESULT <what> <errno-name or outcome> [details]
 *
 * on stdout, written unbuffered so that a line printed just before a policy
 * kill is not lost. The driver checks these lines together with
 * vs-sandbox's --json report, so a case fails when the protection it
 * probes is missing, not only when the program crashes.
 *
 * Why one static binary: it is copied or bound into any root file system
 * and run by an unprivileged user without a dynamic loader or shared
 * libraries in the way. Nothing here ever does real damage when a
 * protection is missing: it never writes a sysrq trigger, never keeps a
 * mount or a namespace it obtained, and every loop is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define X32_SYSCALL_BIT 0x40000000L
#define MIB (1024L * 1024L)

/* ---- output --------------------------------------------------------------- */

static const char *ename(int e)
{
    if (e == 0)
        return "OK";
    const char *n = strerrorname_np(e);
    return n != NULL ? n : "EUNKNOWN";
}

/* One line on stdout with a single write(2): nothing buffered to lose. */
__attribute__((format(printf, 1, 2))) static void out(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* nowhere else to say it */
    }
}

static void result(const char *what, int err)
{
    out("RESULT %s %s", what, ename(err));
}

/* errno of a call that returns -1 on failure (0 when it succeeded). */
#define ERR(expr) ((expr) < 0 ? errno : 0)

/* Open path read-only; if that works, print what is there (a leak the
 * driver looks for) and return 0, else the errno. */
static int try_read(const char *what, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    out("LEAK %s %s: %s", what, path, buf);
    return 0;
}

/* ---- files ---------------------------------------------------------------- */

static int c_shadow(char **av)
{
    (void)av;
    result("shadow", try_read("shadow", "/etc/shadow"));
    return 0;
}

/* av[0]: a host file that is not bound into the sandbox. */
static int c_hostfile(char **av)
{
    struct stat st;
    result("hostfile", try_read("hostfile", av[0]));
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", av[0]);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir)
        *slash = '\0';
    result("hostdir", ERR(stat(dir, &st)));
    return 0;
}

static int c_write_usr(char **av)
{
    (void)av;
    int fd = open("/usr/x", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    result("write_usr", fd < 0 ? errno : 0);
    /* an existing file, too: truncating a host binary */
    int fd2 = open("/usr/bin/env", O_WRONLY | O_CLOEXEC);
    result("write_usr_existing", fd2 < 0 ? errno : 0);
    return 0;
}

static int c_write_root(char **av)
{
    (void)av;
    int fd = open("/x", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    result("write_root", fd < 0 ? errno : 0);
    result("mkdir_root", ERR(mkdir("/newdir", 0755)));
    return 0;
}

/* av[0]: the host file. */
static int c_dotdot(char **av)
{
    char path[PATH_MAX], cwd[PATH_MAX];
    if (chdir("/workspace") < 0)
        return 3;
    result("dotdot_shadow", try_read("dotdot", "../../../../../../../../etc/shadow"));
    snprintf(path, sizeof(path), "../../../../../../../..%s", av[0]);
    result("dotdot_hostfile", try_read("dotdot", path));
    if (chdir("../../../../../../..") < 0 || getcwd(cwd, sizeof(cwd)) == NULL)
        return 3;
    out("RESULT dotdot_cwd %s", cwd);
    return 0;
}

/* av[0]: the host file. */
static int c_symlink(char **av)
{
    int e1 = ERR(symlink("/etc/shadow", "/workspace/l1"));
    int e2 = ERR(symlink(av[0], "/workspace/l2"));
    if (e1 != 0 || e2 != 0) {
        out("RESULT symlink_create %s", ename(e1 != 0 ? e1 : e2));
        return 3;
    }
    result("symlink_shadow", try_read("symlink", "/workspace/l1"));
    result("symlink_hostfile", try_read("symlink", "/workspace/l2"));
    return 0;
}

/* av[0]: the host file. */
static int c_proc1root(char **av)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/1/root%s", av[0]);
    result("proc1root", try_read("proc1root", path));
    result("proc1root_shadow", try_read("proc1root", "/proc/1/root/etc/shadow"));
    snprintf(path, sizeof(path), "/proc/self/root%s", av[0]);
    result("procselfroot", try_read("procselfroot", path));
    /* init's cwd and fds, which held the host's tree while it built ours */
    result("proc1cwd", try_read("proc1cwd", "/proc/1/cwd/etc/shadow"));
    int fd = open("/proc/1/fd/0", O_RDONLY | O_CLOEXEC);
    result("proc1fd", fd < 0 ? errno : 0);
    /* init's memory, and its executable - the launcher's binary on the host
     * (overwriting it is the runc CVE-2019-5736 escape) */
    fd = open("/proc/1/mem", O_RDONLY | O_CLOEXEC);
    result("proc1mem", fd < 0 ? errno : 0);
    fd = open("/proc/1/exe", O_WRONLY | O_CLOEXEC);
    result("proc1exe_write", fd < 0 ? errno : 0);
    fd = open("/proc/1/exe", O_RDONLY | O_CLOEXEC);
    result("proc1exe_read", fd < 0 ? errno : 0);
    fd = open("/proc/self/exe", O_WRONLY | O_CLOEXEC);
    result("selfexe_write", fd < 0 ? errno : 0);
    return 0;
}

/* The launcher's descriptors are not reachable through /proc or /dev/fd. */
static int c_procfd(char **av)
{
    (void)av;
    static const char *const paths[] = {"/proc/self/fd/3", "/proc/self/fd/7", "/dev/fd/7",
                                        "/proc/self/fd/64", "/proc/self/fd/65"};
    int worst = ENOENT;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char link[PATH_MAX] = "";
            ssize_t n = readlink(paths[i], link, sizeof(link) - 1);
            link[n > 0 ? n : 0] = '\0';
            out("LEAK procfd %s -> %s", paths[i], link);
            worst = 0;
        } else if (errno != ENOENT && worst != 0) {
            worst = errno;
        }
    }
    result("procfd", worst);
    /* what fds 0-2 are: the launcher's stdio, nothing else */
    for (int i = 0; i < 3; i++) {
        char p[32], link[PATH_MAX] = "";
        snprintf(p, sizeof(p), "/proc/self/fd/%d", i);
        ssize_t n = readlink(p, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        out("INFO fd%d %s", i, link);
    }
    return 0;
}

static int c_mknod(char **av)
{
    (void)av;
    result("mknod", ERR(mknod("/workspace/dev", S_IFCHR | 0666, makedev(1, 3))));
    result("mknod_blk", ERR(mknod("/workspace/blk", S_IFBLK | 0666, makedev(8, 0))));
    /* a FIFO is fine: the preset allows mknod for that */
    result("mkfifo", ERR(mknod("/workspace/fifo", S_IFIFO | 0600, 0)));
    return 0;
}

static int c_sys(char **av)
{
    (void)av;
    struct stat st;
    int fd = open("/sys/kernel/uevent_helper", O_WRONLY | O_CLOEXEC);
    result("sys_write", fd < 0 ? errno : 0);
    result("sys_stat", ERR(stat("/sys", &st)));
    fd = open("/sys/fs/cgroup/cgroup.procs", O_WRONLY | O_CLOEXEC);
    result("sys_cgroup", fd < 0 ? errno : 0);
    return 0;
}

/* Never writes: a real, writable sysrq-trigger or sysctl would be
 * reported, not used. */
static int c_sysrq(char **av)
{
    (void)av;
    struct stat st;
    int fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        result("sysrq", errno);
    } else {
        if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
            minor(st.st_rdev) == 3)
            out("RESULT sysrq MASKED_NULL");
        else
            out("RESULT sysrq WRITABLE");
        close(fd);
    }
    fd = open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC);
    result("procsys_write", fd < 0 ? errno : 0);
    if (fd >= 0)
        close(fd);
    return 0;
}

/* The /proc files that leak kernel or host state read as /dev/null (or
 * not at all). av: names under /proc. */
static int c_procmask(char **av)
{
    for (; *av != NULL; av++) {
        char path[PATH_MAX], what[96];
        snprintf(path, sizeof(path), "/proc/%s", *av);
        snprintf(what, sizeof(what), "mask_%s", *av);
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            result(what, errno);
            continue;
        }
        char buf[64];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
            minor(st.st_rdev) == 3 && n == 0)
            out("RESULT %s MASKED_NULL", what);
        else if (n < 0)
            result(what, errno);
        else
            out("RESULT %s READABLE %zd", what, n);
        close(fd);
    }
    return 0;
}

/* ---- privilege -------------------------------------------------------------- */

static int c_chroot(char **av)
{
    (void)av;
    result("chroot", ERR(chroot("/workspace")));
    return 0;
}

static int c_pivot_root(char **av)
{
    (void)av;
    result("pivot_root", ERR(syscall(SYS_pivot_root, "/workspace", "/workspace/out")));
    return 0;
}

static int c_mount(char **av)
{
    (void)av;
    if (mkdir("/workspace/m", 0755) < 0)
        return 3;
    int e = ERR(mount("none", "/workspace/m", "tmpfs", 0, "size=1m"));
    result("mount", e);
    if (e == 0)
        umount2("/workspace/m", MNT_DETACH);
    return 0;
}

static int c_unshare(char **av)
{
    (void)av;
    result("unshare", ERR(unshare(CLONE_NEWUSER)));
    return 0;
}

static int c_setns(char **av)
{
    (void)av;
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    result("setns", ERR(setns(fd >= 0 ? fd : 0, 0)));
    return 0;
}

static int c_ptrace(char **av)
{
    (void)av;
    pid_t child = fork();
    if (child < 0) {
        out("RESULT ptrace_fork %s", ename(errno));
        return 3;
    }
    if (child == 0) {
        for (;;)
            pause();
    }
    int e = ERR(ptrace(PTRACE_ATTACH, child, NULL, NULL));
    result("ptrace", e);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}

/* Who am I: uid 1000, no capabilities in any set, no_new_privs. */
static int c_creds(char **av)
{
    (void)av;
    FILE *f = fopen("/proc/self/status", "re");
    if (f == NULL) {
        out("RESULT creds %s", ename(errno));
        return 3;
    }
    char line[256], bad[512] = "";
    int seen = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char key[64], val[128];
        if (sscanf(line, "%63[^:]:%*[ \t]%127[^\n]", key, val) != 2)
            continue;
        const char *want = NULL;
        if (strcmp(key, "NoNewPrivs") == 0)
            want = "1";
        else if (strncmp(key, "Cap", 3) == 0)
            want = "0000000000000000";
        else if (strcmp(key, "Uid") == 0 || strcmp(key, "Gid") == 0)
            want = "1000\t1000\t1000\t1000";
        else if (strcmp(key, "Seccomp") == 0)
            want = "2";
        if (want == NULL)
            continue;
        seen++;
        if (strcmp(val, want) != 0) {
            size_t l = strlen(bad);
            snprintf(bad + l, sizeof(bad) - l, " %s=%s", key, val);
        }
    }
    fclose(f);
    gid_t groups[8];
    int ng = getgroups(8, groups);
    if (ng != 0) {
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof(bad) - l, " groups=%d", ng);
    }
    if (seen < 9)
        out("RESULT creds MISSING %d", seen);
    else if (bad[0] != '\0')
        out("RESULT creds BAD%s", bad);
    else
        out("RESULT creds OK uid=%d euid=%d", (int)getuid(), (int)geteuid());
    return 0;
}

static int c_capset(char **av)
{
    (void)av;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0xff, sizeof(data));
    result("capset", ERR(syscall(SYS_capset, &hdr, data)));
    result("setuid0", ERR(setuid(0)));
    result("setresuid0", ERR(setresuid(0, 0, 0)));
    return 0;
}

static int c_clone3(char **av)
{
    (void)av;
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    long rc = syscall(SYS_clone3, &args, sizeof(args));
    if (rc == 0)
        _exit(0);
    int e = rc < 0 ? errno : 0;
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    result("clone3", e);
    return 0;
}

static int c_clone_newuser(char **av)
{
    (void)av;
    long rc = syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);
    if (rc == 0)
        _exit(0);
    int e = rc < 0 ? errno : 0;
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    result("clone_newuser", e);
    /* the same flag in the upper half of the register must not slip through */
    rc = syscall(SYS_clone, (long)(0x100000000L | CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);
    if (rc == 0)
        _exit(0);
    e = rc < 0 ? errno : 0;
    if (rc > 0)
        waitpid((pid_t)rc, NULL, 0);
    result("clone_newuser_high", e);
    return 0;
}

/* Execute av[0], a setuid-root copy of this program bound into the
 * sandbox: nosuid mounts, no_new_privs and the unmapped owner must each keep
 * it from gaining anything. */
static int c_suid(char **av)
{
    struct stat st;
    struct statvfs sv;
    if (stat(av[0], &st) < 0) {
        out("RESULT suid_stat %s", ename(errno));
        return 3;
    }
    out("INFO suid mode=%o uid=%d", (unsigned)st.st_mode & 07777, (int)st.st_uid);
    out("RESULT suid_nosuid_mount %s",
        statvfs(av[0], &sv) == 0 ? (sv.f_flag & ST_NOSUID ? "YES" : "NO") : ename(errno));
    out("RESULT usr_nosuid_mount %s",
        statvfs("/usr/bin", &sv) == 0 ? (sv.f_flag & ST_NOSUID ? "YES" : "NO") : ename(errno));
    char *const argv[] = {av[0], (char *)"whoami", NULL};
    char *const envp[] = {NULL};
    execve(av[0], argv, envp);
    out("RESULT suid_exec %s", ename(errno));
    return 0;
}

static int c_whoami(char **av)
{
    (void)av;
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    out("RESULT whoami uid=%d euid=%d suid=%d", (int)r, (int)e, (int)s);
    return 0;
}

/* ---- resources ----------------------------------------------------------------- */

/* Fork children that sleep until none can be made; then keep trying for a
 * while (so that a pids controller reports the limit) and say how far it
 * got. Bounded: 4096 children at most. */
static int c_forkbomb(char **av)
{
    (void)av;
    int n = 0, e = 0;
    for (int i = 0; i < 4096; i++) {
        pid_t p = fork();
        if (p == 0) {
            for (;;)
                pause();
        }
        if (p < 0) {
            e = errno;
            break;
        }
        n++;
    }
    for (int i = 0; i < 200 && e != 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p > 0)
            waitpid(p, NULL, 0);
    }
    out("RESULT forkbomb %s n=%d", ename(e), n);
    return 0; /* the children go with the sandbox's pid namespace */
}

/* Map and touch 1 MiB at a time, up to 4 GiB. */
static int c_membomb(char **av)
{
    (void)av;
    long mib = 0;
    int e = 0;
    for (; mib < 4096; mib++) {
        char *p = mmap(NULL, (size_t)MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                       0);
        if (p == MAP_FAILED) {
            e = errno;
            break;
        }
        memset(p, 0x5a, (size_t)MIB);
    }
    out("RESULT membomb %s mib=%ld", ename(e), mib);
    return 0;
}

/* Fill a file system: one file until it stops growing, then a second.
 * av: the directories (default /workspace); one RESULT line each. */
static int c_diskbomb(char **av)
{
    static char buf[64 * 1024];
    static const char *const dflt[] = {"/workspace", NULL};
    const char *const *dirs = av[0] != NULL ? (const char *const *)av : dflt;
    signal(SIGXFSZ, SIG_IGN);
    memset(buf, 'x', sizeof(buf));
    for (; *dirs != NULL; dirs++) {
        long total = 0;
        int e = 0;
        for (int f = 0; f < 2; f++) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/fill%d", *dirs, f);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0) {
                e = errno;
                break;
            }
            for (int i = 0; i < 65536; i++) { /* 4 GiB at most */
                ssize_t n = write(fd, buf, sizeof(buf));
                if (n < 0) {
                    e = errno;
                    break;
                }
                total += n; /* a short write: the next one says why it stopped */
            }
            close(fd);
        }
        if (av[0] == NULL)
            out("RESULT diskbomb %s total=%ld", ename(e), total);
        else
            out("RESULT fill%s %s total=%ld", *dirs, ename(e), total);
    }
    return 0;
}

static int c_cpuspin(char **av)
{
    (void)av;
    out("RESULT cpuspin STARTED");
    /* bounded all the same: 60 s of spinning, then say it was not stopped */
    time_t end = time(NULL) + 60;
    volatile unsigned long x = 0;
    while (time(NULL) < end)
        for (int i = 0; i < 1000000; i++)
            x++;
    out("RESULT cpuspin NOT_STOPPED");
    return 0;
}

/* Leave a detached child behind and exit: it must not outlive the
 * sandbox (its command line carries the driver's token, av[0]). */
static int c_daemon(char **av)
{
    (void)av;
    pid_t p = fork();
    if (p < 0) {
        result("daemon_fork", errno);
        return 3;
    }
    if (p == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        time_t end = time(NULL) + 60;
        while (time(NULL) < end)
            sleep(1);
        _exit(0);
    }
    waitpid(p, NULL, 0);
    out("RESULT daemon LEFT");
    return 0;
}

/* ---- network ---------------------------------------------------------------------- */

static int c_tcp(char **av)
{
    (void)av;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    result("tcp", fd < 0 ? errno : 0);
    int fd6 = socket(AF_INET6, SOCK_DGRAM, 0);
    result("udp6", fd6 < 0 ? errno : 0);
    return 0;
}

static int connect_to(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int e = ERR(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    close(fd);
    return e;
}

/* av[0]: a port the driver listens on (127.0.0.1) on the host. */
static int c_connect(char **av)
{
    int port = atoi(av[0]);
    result("connect_loopback", connect_to("127.0.0.1", port));
    result("connect_external", connect_to("1.1.1.1", 80));
    /* the interfaces this network namespace has */
    struct if_nameindex *ifs = if_nameindex();
    char names[256] = "";
    for (struct if_nameindex *i = ifs; i != NULL && i->if_index != 0; i++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s%s", l > 0 ? "," : "", i->if_name);
    }
    if (ifs != NULL)
        if_freenameindex(ifs);
    out("INFO interfaces %s", names[0] != '\0' ? names : "(none)");
    return 0;
}

/* av[0]: an abstract unix socket name the driver listens on. Abstract
 * names belong to the network namespace. */
static int c_abstract(char **av)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(av[0]);
    if (len + 1 > sizeof(sa.sun_path))
        return 3;
    memcpy(sa.sun_path + 1, av[0], len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        result("abstract_socket", errno);
        return 0;
    }
    result("abstract",
           ERR(connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len))));
    close(fd);
    return 0;
}

/* A DNS lookup by hand (a static binary's getaddrinfo would need the
 * host's NSS modules): there is no resolver configuration, and a query to
 * a public resolver or to a local one cannot leave the namespace. */
static int c_dns(char **av)
{
    (void)av;
    struct stat st;
    result("resolv_conf", ERR(stat("/etc/resolv.conf", &st)));
    /* a minimal query for example.com A */
    static const unsigned char q[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a',
                                      'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
    static const char *const servers[] = {"8.8.8.8", "127.0.0.53"};
    for (size_t i = 0; i < 2; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
        inet_pton(AF_INET, servers[i], &sa.sin_addr);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            result(i == 0 ? "dns_public" : "dns_local", errno);
            continue;
        }
        ssize_t n = sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sa, sizeof(sa));
        int e = n < 0 ? errno : 0;
        if (e == 0) {
            /* it left: wait briefly for an answer */
            struct timeval tv = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            unsigned char ans[512];
            if (recv(fd, ans, sizeof(ans), 0) > 0)
                out("LEAK dns answer from %s", servers[i]);
        }
        result(i == 0 ? "dns_public" : "dns_local", e);
        close(fd);
    }
    return 0;
}

static int c_netlink(char **av)
{
    (void)av;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    result("netlink", fd < 0 ? errno : 0);
    return 0;
}

static int c_packet(char **av)
{
    (void)av;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    result("packet", fd < 0 ? errno : 0);
    return 0;
}

/* ---- kernel surface ------------------------------------------------------------------ */

static int c_io_uring(char **av)
{
    (void)av;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    result("io_uring_setup", ERR(syscall(SYS_io_uring_setup, 8, &p)));
    return 0;
}

static int c_userfaultfd(char **av)
{
    (void)av;
    result("userfaultfd", ERR(syscall(SYS_userfaultfd, O_CLOEXEC)));
    return 0;
}

static int c_bpf(char **av)
{
    (void)av;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    result("bpf", ERR(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr))));
    return 0;
}

static int c_keyctl(char **av)
{
    (void)av;
    result("keyctl", ERR(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)));
    return 0;
}

static int c_perf(char **av)
{
    (void)av;
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof(attr);
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    result("perf_event_open", ERR(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0)));
    return 0;
}

/* Push a character into the input of the terminal on fd 0 (whatever it
 * is: the filter decides before the kernel looks at the fd). */
static int c_tiocsti(char **av)
{
    (void)av;
    char c = 'x';
    result("tiocsti", ERR(ioctl(STDIN_FILENO, TIOCSTI, &c)));
    /* the same request with garbage in the upper half of the register */
    result("tiocsti_high", ERR(syscall(SYS_ioctl, STDIN_FILENO, 0xdead000000000000UL | TIOCSTI, &c)));
    return 0;
}

/* getpid through the i386 entry point: the filter only knows the native
 * ABI, so this must kill the process before the kernel runs it. */
static int c_int80(char **av)
{
    (void)av;
    out("RESULT int80 ATTEMPT");
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    out("RESULT int80 EXECUTED ret=%ld", ret);
    return 0;
}

/* getpid through the x32 ABI: killed, or at worst ENOSYS - never run. */
static int c_x32(char **av)
{
    (void)av;
    out("RESULT x32 ATTEMPT");
    long rc = syscall(X32_SYSCALL_BIT | SYS_getpid);
    out("RESULT x32 EXECUTED %s rc=%ld", rc < 0 ? ename(errno) : "OK", rc);
    return 0;
}

static int c_personality(char **av)
{
    (void)av;
    result("personality", ERR(personality(PER_LINUX32)));
    int cur = personality(0xffffffff);
    out("INFO personality now 0x%x", (unsigned)cur);
    return 0;
}

/* ---- the host ------------------------------------------------------------------------ */

static int count_procs(void)
{
    int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[8192];
    int n = 0;
    long len;
    while ((len = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < len;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            if (d->name[0] >= '1' && d->name[0] <= '9')
                n++;
            off += d->reclen;
        }
    }
    close(fd);
    return n;
}

/* av[0]: the pid of a process on the host. */
static int c_hostpid(char **av)
{
    pid_t pid = (pid_t)atoi(av[0]);
    result("hostpid", ERR(kill(pid, 0)));
    out("RESULT procs %d self=%d", count_procs(), (int)getpid());
    return 0;
}

static int c_killhost(char **av)
{
    pid_t pid = (pid_t)atoi(av[0]);
    result("killhost", ERR(kill(pid, SIGKILL)));
    /* the sandbox's own init ignores signals from inside its namespace */
    int e = ERR(kill(1, SIGKILL));
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    out("RESULT killinit %s survived", ename(e));
    return 0;
}

static int c_hostname(char **av)
{
    (void)av;
    result("sethostname", ERR(sethostname("pwned-by-agent", 14)));
    result("setdomainname", ERR(setdomainname("pwned", 5)));
    struct utsname u;
    uname(&u);
    out("RESULT nodename %s", u.nodename);
    return 0;
}

/* Every descriptor beyond stdio must be closed (3: only with --command-fd). */
static int c_fds(char **av)
{
    (void)av;
    struct rlimit rl;
    long max = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)rl.rlim_cur > max)
        max = (long)rl.rlim_cur > 65536 ? 65536 : (long)rl.rlim_cur;
    char open_fds[256] = "";
    int other = 0;
    for (int fd = 3; fd < max; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            size_t l = strlen(open_fds);
            snprintf(open_fds + l, sizeof(open_fds) - l, "%s%d", l > 0 ? "," : "", fd);
        } else if (errno != EBADF) {
            other = errno;
        }
    }
    int stdio = 0;
    for (int fd = 0; fd < 3; fd++)
        stdio += fcntl(fd, F_GETFD) >= 0;
    out("RESULT fds %s open=%s stdio=%d", ename(other != 0 ? other : EBADF),
        open_fds[0] != '\0' ? open_fds : "none", stdio);
    return 0;
}

static int c_env(char **av)
{
    (void)av;
    char all[1024] = "";
    int n = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++, n++) {
        size_t l = strlen(all);
        snprintf(all + l, sizeof(all) - l, "%s%s", l > 0 ? ";" : "", *e);
    }
    out("RESULT env n=%d %s", n, n > 0 ? all : "(empty)");
    return 0;
}

/* ---- a well-behaved program ------------------------------------------------------------ */

/* Files, a pipe, a child: what a normal static tool does. */
static int c_ok(char **av)
{
    (void)av;
    int fd = open("/workspace/out/data.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "hello sandbox\n", 14) != 14 || close(fd) < 0) {
        result("ok_write", errno);
        return 1;
    }
    int p[2];
    if (pipe(p) < 0) {
        result("ok_pipe", errno);
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        char buf[32];
        int in = open("/workspace/out/data.txt", O_RDONLY | O_CLOEXEC);
        ssize_t n = in >= 0 ? read(in, buf, sizeof(buf)) : -1;
        _exit(n == 14 && write(p[1], buf, 14) == 14 ? 0 : 1);
    }
    close(p[1]);
    char got[32] = "";
    ssize_t n = read(p[0], got, sizeof(got) - 1);
    int st = 0;
    waitpid(child, &st, 0);
    if (child < 0 || n != 14 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
        strncmp(got, "hello sandbox\n", 14) != 0) {
        out("RESULT ok FAILED n=%zd st=%d", n, st);
        return 1;
    }
    unsigned long sum = 0;
    for (unsigned long i = 1; i <= 1000000; i++)
        sum += i;
    out("RESULT ok OK sum=%lu", sum);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

struct hcase {
    const char *name;
    int nargs;
    int (*fn)(char **av);
};

static const struct hcase cases[] = {
    {"shadow", 0, c_shadow},       {"hostfile", 1, c_hostfile},
    {"write_usr", 0, c_write_usr}, {"write_root", 0, c_write_root},
    {"dotdot", 1, c_dotdot},       {"symlink", 1, c_symlink},
    {"proc1root", 1, c_proc1root}, {"procfd", 0, c_procfd},
    {"mknod", 0, c_mknod},         {"sys", 0, c_sys},
    {"sysrq", 0, c_sysrq},         {"procmask", 1, c_procmask},
    {"chroot", 0, c_chroot},       {"pivot_root", 0, c_pivot_root},
    {"mount", 0, c_mount},         {"unshare", 0, c_unshare},
    {"setns", 0, c_setns},         {"ptrace", 0, c_ptrace},
    {"creds", 0, c_creds},         {"capset", 0, c_capset},
    {"clone3", 0, c_clone3},       {"clone_newuser", 0, c_clone_newuser},
    {"forkbomb", 0, c_forkbomb},   {"membomb", 0, c_membomb},
    {"diskbomb", 0, c_diskbomb},   {"cpuspin", 0, c_cpuspin},
    {"daemon", 1, c_daemon},
    {"tcp", 0, c_tcp},             {"connect", 1, c_connect},
    {"abstract", 1, c_abstract},   {"dns", 0, c_dns},
    {"netlink", 0, c_netlink},     {"packet", 0, c_packet},
    {"io_uring", 0, c_io_uring},   {"userfaultfd", 0, c_userfaultfd},
    {"bpf", 0, c_bpf},             {"keyctl", 0, c_keyctl},
    {"perf", 0, c_perf},           {"tiocsti", 0, c_tiocsti},
    {"int80", 0, c_int80},         {"x32", 0, c_x32},
    {"personality", 0, c_personality}, {"hostpid", 1, c_hostpid},
    {"killhost", 1, c_killhost},   {"hostname", 0, c_hostname},
    {"fds", 0, c_fds},             {"env", 0, c_env},
    {"suid", 1, c_suid},           {"whoami", 0, c_whoami},
    {"ok", 0, c_ok},
};

int main(int argc, char **argv)
{
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            if (strcmp(argv[1], cases[i].name) != 0)
                continue;
            if (argc - 2 < cases[i].nargs) {
                fprintf(stderr, "hostile %s: needs %d argument(s)\n", cases[i].name,
                        cases[i].nargs);
                return 2;
            }
            return cases[i].fn(argv + 2);
        }
    }
    fprintf(stderr, "usage: hostile CASE [ARGS]; cases:");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        fprintf(stderr, " %s", cases[i].name);
    fprintf(stderr, "\n");
    return 2;
}
