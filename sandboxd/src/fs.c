/*
 * fs.c - builds the sandbox's file system, bubblewrap-style.
 *
 * The init process, already in its own user and mount namespaces, mounts
 * a small staging tmpfs and pivots into it, so that the host's root stays
 * reachable at /oldroot as the source of binds (host paths under /tmp
 * included). The new root is assembled under /newroot, made read-only,
 * then becomes "/" with a second pivot_root, and the host's tree is
 * detached. Every step is checked: a sandbox that is half built never
 * runs anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"

#define AGENT_UID 1000
#define STAGING "/tmp"
#define NEWROOT "/newroot"
#define OLDROOT "/oldroot"

/* Record the failing step and return -errno. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    int saved = errno != 0 ? errno : EIO;
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", what, strerror(saved));
    return -saved;
}

#define CHECK(expr, ...)                                    \
    do {                                                    \
        if ((expr) < 0)                                     \
            return fail(err, errlen, __VA_ARGS__);          \
    } while (0)

/* mkdir -p for a path inside the new root (relative to it). */
static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -1;
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}

static int write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* Flags a remount of a bind must keep: in a user namespace the kernel
 * refuses to clear the atime and noexec flags of a mount it inherited. */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv) < 0)
        return 0;
    unsigned long f = 0;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* Bind src (a host path under /oldroot) read-only on dst, creating the
 * mount point (a directory or an empty file, like the source). */
static int ro_bind(const char *src, const char *dst, char *err, size_t errlen)
{
    struct stat st;
    CHECK(stat(src, &st), "bind source %s", src + strlen(OLDROOT));
    if (S_ISDIR(st.st_mode)) {
        CHECK(mkdirs(dst, 0755), "mount point %s", dst + strlen(NEWROOT));
    } else {
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", dst);
        char *slash = strrchr(parent, '/');
        if (slash != NULL && slash != parent) {
            *slash = '\0';
            CHECK(mkdirs(parent, 0755), "mount point %s", parent + strlen(NEWROOT));
        }
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0 && errno != EEXIST)
            return fail(err, errlen, "mount point %s", dst + strlen(NEWROOT));
        if (fd >= 0)
            close(fd);
    }
    CHECK(mount(src, dst, NULL, MS_BIND | MS_REC, NULL), "bind %s", src + strlen(OLDROOT));
    CHECK(mount(NULL, dst, NULL,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | locked_flags(dst), NULL),
          "read-only remount of %s", dst + strlen(NEWROOT));
    return 0;
}

/* The default root: the host's /usr and its merged-/usr links, plus a tiny
 * /etc that names the agent user and nothing of the host. */
static int host_view(char *err, size_t errlen)
{
    static const char *const dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char src[64], dst[64], target[PATH_MAX];
        snprintf(src, sizeof(src), OLDROOT "/%s", dirs[i]);
        snprintf(dst, sizeof(dst), NEWROOT "/%s", dirs[i]);
        struct stat st;
        if (lstat(src, &st) < 0)
            continue; /* this host has no such directory */
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(src, target, sizeof(target) - 1);
            CHECK(n, "readlink %s", src + strlen(OLDROOT));
            target[n] = '\0';
            CHECK(symlink(target, dst), "symlink %s", dst + strlen(NEWROOT));
        } else if (S_ISDIR(st.st_mode)) {
            int rc = ro_bind(src, dst, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    CHECK(mkdir(NEWROOT "/etc", 0755), "mkdir /etc");
    CHECK(write_text(NEWROOT "/etc/passwd",
                     "root:x:0:0:root:/:/bin/false\n"
                     "agent:x:1000:1000:agent:/workspace:/bin/sh\n"
                     "nobody:x:65534:65534:nobody:/:/bin/false\n", 0644),
          "write /etc/passwd");
    CHECK(write_text(NEWROOT "/etc/group", "root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n", 0644),
          "write /etc/group");
    CHECK(write_text(NEWROOT "/etc/hostname", "vs-sandbox\n", 0644), "write /etc/hostname");
    struct stat st;
    if (stat(OLDROOT "/etc/ld.so.cache", &st) == 0) {
        int rc = ro_bind(OLDROOT "/etc/ld.so.cache", NEWROOT "/etc/ld.so.cache", err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int size_tmpfs(const char *dst, uint64_t bytes, const char *mode, unsigned long flags,
                      const char *owner, char *err, size_t errlen)
{
    char opts[128];
    snprintf(opts, sizeof(opts), "mode=%s,size=%llu%s%s", mode,
             (unsigned long long)(bytes > 0 ? bytes : 4096), owner != NULL ? "," : "",
             owner != NULL ? owner : "");
    CHECK(mkdirs(dst, 0755), "mount point %s", dst + strlen(NEWROOT));
    CHECK(mount("tmpfs", dst, "tmpfs", flags, opts), "tmpfs %s", dst + strlen(NEWROOT));
    return 0;
}

/* A minimal /dev: host device nodes bound on empty files (a user namespace
 * cannot mknod), a private devpts, a bounded /dev/shm and the usual links. */
static int minimal_dev(const struct vs_sandbox_policy *p, char *err, size_t errlen)
{
    int rc = size_tmpfs(NEWROOT "/dev", 64 * 1024, "0755", MS_NOSUID | MS_NOEXEC, NULL, err,
                        errlen);
    if (rc < 0)
        return rc;
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        char src[64], dst[64];
        snprintf(src, sizeof(src), OLDROOT "/dev/%s", nodes[i]);
        snprintf(dst, sizeof(dst), NEWROOT "/dev/%s", nodes[i]);
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        CHECK(fd, "create /dev/%s", nodes[i]);
        close(fd);
        CHECK(mount(src, dst, NULL, MS_BIND, NULL), "bind /dev/%s", nodes[i]);
        CHECK(mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC, NULL),
              "remount /dev/%s", nodes[i]);
    }
    CHECK(mkdirs(NEWROOT "/dev/pts", 0755), "mkdir /dev/pts");
    CHECK(mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=620"),
          "devpts");
    CHECK(symlink("pts/ptmx", NEWROOT "/dev/ptmx"), "symlink /dev/ptmx");
    rc = size_tmpfs(NEWROOT "/dev/shm", p->tmp_bytes, "1777", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    NULL, err, errlen);
    if (rc < 0)
        return rc;
    static const char *const links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        char dst[64];
        snprintf(dst, sizeof(dst), NEWROOT "/dev/%s", links[i][1]);
        CHECK(symlink(links[i][0], dst), "symlink /dev/%s", links[i][1]);
    }
    return 0;
}

/* A fresh /proc for the new pid namespace, with the paths that leak host
 * state or reach the kernel masked (files: /dev/null on top; directories:
 * an empty read-only tmpfs) and the writable tunables made read-only. */
static int fresh_proc(char *err, size_t errlen)
{
    CHECK(mkdirs(NEWROOT "/proc", 0555), "mkdir /proc");
    CHECK(mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
          "mount /proc");
    static const char *const masked_files[] = {
        "kcore", "keys", "key-users", "timer_list", "timer_stats", "sched_debug", "latency_stats",
        "kallsyms", "kpagecount", "kpageflags", "kpagecgroup", "vmallocinfo", "config.gz",
        "sysrq-trigger", "modules", "slabinfo", "pagetypeinfo", "iomem", "ioports", "buddyinfo"};
    for (size_t i = 0; i < sizeof(masked_files) / sizeof(masked_files[0]); i++) {
        char dst[96];
        snprintf(dst, sizeof(dst), NEWROOT "/proc/%s", masked_files[i]);
        if (access(dst, F_OK) < 0)
            continue;
        CHECK(mount(OLDROOT "/dev/null", dst, NULL, MS_BIND, NULL), "mask /proc/%s",
              masked_files[i]);
        /* nodev: the mask cannot even be opened as the null device. */
        CHECK(mount(NULL, dst, NULL,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
              "read-only mask /proc/%s", masked_files[i]);
    }
    static const char *const masked_dirs[] = {"acpi", "scsi", "asound", "driver", "tty"};
    for (size_t i = 0; i < sizeof(masked_dirs) / sizeof(masked_dirs[0]); i++) {
        char dst[96];
        snprintf(dst, sizeof(dst), NEWROOT "/proc/%s", masked_dirs[i]);
        struct stat st;
        if (stat(dst, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        CHECK(mount("tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "size=0,mode=0555"),
              "mask /proc/%s", masked_dirs[i]);
    }
    static const char *const read_only[] = {"sys", "irq", "bus", "fs"};
    for (size_t i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++) {
        char dst[96];
        snprintf(dst, sizeof(dst), NEWROOT "/proc/%s", read_only[i]);
        if (access(dst, F_OK) < 0)
            continue;
        CHECK(mount(dst, dst, NULL, MS_BIND | MS_REC, NULL), "bind /proc/%s", read_only[i]);
        CHECK(mount(NULL, dst, NULL,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
              "read-only /proc/%s", read_only[i]);
    }
    return 0;
}

static int workspace(const struct vs_sandbox_policy *p, char *err, size_t errlen)
{
    char owner[48];
    snprintf(owner, sizeof(owner), "uid=%d,gid=%d", AGENT_UID, AGENT_UID);
    int rc = size_tmpfs(NEWROOT "/workspace", p->workspace_bytes, "0700", MS_NOSUID | MS_NODEV,
                        owner, err, errlen);
    if (rc < 0)
        return rc;
    CHECK(mkdirs(NEWROOT "/workspace/out", 0700), "mkdir /workspace/out");
    CHECK(chown(NEWROOT "/workspace/out", AGENT_UID, AGENT_UID), "chown /workspace/out");
    return size_tmpfs(NEWROOT "/tmp", p->tmp_bytes, "1777", MS_NOSUID | MS_NODEV, NULL, err,
                      errlen);
}

int vs_fs_build(const struct vs_sandbox_policy *p, char *err, size_t errlen)
{
    /* Nothing we mount may propagate back to the host. */
    CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / private");
    CHECK(mount("tmpfs", STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k"),
          "staging tmpfs");
    CHECK(chdir(STAGING), "chdir staging");
    CHECK(mkdir("newroot", 0755), "mkdir newroot");
    CHECK(mkdir("oldroot", 0755), "mkdir oldroot");
    CHECK(syscall(SYS_pivot_root, ".", "oldroot"), "pivot_root into staging");
    CHECK(chdir("/"), "chdir /");

    int rc;
    if (p->rootfs != NULL) {
        char src[PATH_MAX];
        snprintf(src, sizeof(src), OLDROOT "%s", p->rootfs);
        CHECK(mount(src, NEWROOT, NULL, MS_BIND | MS_REC, NULL), "bind rootfs %s", p->rootfs);
    } else {
        CHECK(mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m"),
              "root tmpfs");
        if ((rc = host_view(err, errlen)) < 0)
            return rc;
    }
    if ((rc = fresh_proc(err, errlen)) < 0 || (rc = minimal_dev(p, err, errlen)) < 0 ||
        (rc = workspace(p, err, errlen)) < 0)
        return rc;
    for (size_t i = 0; i < p->n_ro_binds; i++) {
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof(src), OLDROOT "%s", p->ro_binds[i].src);
        snprintf(dst, sizeof(dst), NEWROOT "%s", p->ro_binds[i].dst);
        if ((rc = ro_bind(src, dst, err, errlen)) < 0)
            return rc;
    }
    /* The root itself becomes read-only. */
    if (p->rootfs != NULL)
        CHECK(mount(NULL, NEWROOT, NULL,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV |
                        locked_flags(NEWROOT),
                    NULL),
              "read-only root");
    else
        CHECK(mount(NULL, NEWROOT, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                    "mode=0755,size=1m"),
              "read-only root");

    /* Leave the host's tree behind for good. */
    CHECK(umount2(OLDROOT, MNT_DETACH), "detach the host root");
    CHECK(chdir(NEWROOT), "chdir newroot");
    CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root into the new root");
    CHECK(umount2(".", MNT_DETACH), "detach the staging root");
    CHECK(chdir("/"), "chdir /");
    return 0;
}
