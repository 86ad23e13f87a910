/*
 * podman.c - the Podman backend (contract: vs/podman.h; the protocol with
 * the container's init: container_init.h).
 *
 * Why this shape:
 *  - podman is a separate program, started with posix_spawn (safe in a
 *    threaded daemon: no fork of our address space, no code of ours runs
 *    in the child) and waited for by pid with a deadline. Every descriptor
 *    it gets is named in file actions (dup2 to its place, then closefrom),
 *    so nothing else of the caller leaks into it or into the container.
 *  - The container's descriptors 3..9 are arranged in podman's process
 *    and passed with --preserve-fds (see container_init.h): the command
 *    channel, the snapshot, the report socket, the environment memfd and
 *    the caller's stdio. Podman's own stdout and stderr (its messages, and
 *    init's) go to a memfd that is read for setup errors only, so the
 *    program's output never passes through conmon or a log file.
 *  - The result comes from init's report; podman's exit status is used
 *    only when there is no report (podman failed, or killed the container
 *    at its --timeout).
 *  - The image is written here, as a pax archive, into podman import's
 *    stdin, a socket (send with MSG_NOSIGNAL: a podman that dies early is
 *    an error, not a SIGPIPE for the daemon), after the tree is hashed
 *    against the digest that will name it.
 */
#include "outcome.h"
#include "vs/podman.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container_init.h"
#include "seccomp_policy.h"
#include "vs/image.h"

#ifndef VS_CONTAINER_INIT_INSTALLED
#error "VS_CONTAINER_INIT_INSTALLED (vs-container-init's installed path) is set by CMake"
#endif

#define RUNTIME "runc"
#define AGENT "1000:1000"
#define AGENT_UID 1000
#define TAG_PREFIX "localhost/vs-image:"
#define HEX_LEN 64
#define CMD_TIMEOUT_MS 60000u     /* podman image exists / inspect / kill / rm */
#define IMPORT_TIMEOUT_MS 600000u /* podman import, after its input ended */
#define STALL_MS 60000            /* podman import stopped reading its input */
#define PODMAN_GRACE_S 30u        /* --timeout beyond the wall-clock limit */
#define CALL_GRACE_MS 60000u      /* our own deadline beyond it */
#define OUT_TAIL 400              /* podman's last words, for messages */
#define IO_CHUNK 65536
#define NPROC_MAX 32768u          /* --ulimit nproc, see build_args */

extern char **environ;

_Static_assert(VS_CINIT_ENV_COUNT >= VS_SANDBOX_MAX_ENV, "init takes every policy variable");


static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[len] == '\0';
}

/* "sha256:" + 64 lowercase hex: the hex, or NULL. */
static const char *digest_hex(const char *d)
{
    return d != NULL && strncmp(d, "sha256:", 7) == 0 && is_hex(d + 7, HEX_LEN) ? d + 7 : NULL;
}

/* ---- finding the programs ------------------------------------------------------ */

static int find_podman(char out[PATH_MAX])
{
    const char *env = getenv("PATH");
    char path[4096];
    snprintf(path, sizeof(path), "%s:/usr/local/bin:/usr/bin:/bin", env != NULL ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(path, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if (d[0] == '/' && snprintf(out, PATH_MAX, "%s/podman", d) < PATH_MAX &&
            access(out, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

/* vs-container-init: $VS_CONTAINER_INIT, next to our executable, or
 * installed. */
static int find_init(char out[PATH_MAX], char *why, size_t why_len)
{
    const char *env = getenv("VS_CONTAINER_INIT");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, PATH_MAX, "%s", env);
    } else {
        static const char base[] = "vs-container-init";
        ssize_t n = readlink("/proc/self/exe", out, PATH_MAX - sizeof(base));
        char *slash = n > 0 ? memrchr(out, '/', (size_t)n) : NULL;
        if (slash != NULL)
            memcpy(slash + 1, base, sizeof(base));
        if (slash == NULL || access(out, X_OK) < 0)
            snprintf(out, PATH_MAX, "%s", VS_CONTAINER_INIT_INSTALLED);
    }
    if (out[0] != '/' || strpbrk(out, ":,") != NULL)
        return vs_why(why, why_len, -EINVAL,
                    "vs-container-init path %s: absolute, without ':' or ','", out);
    if (access(out, X_OK) < 0)
        return vs_why(why, why_len, -ENOENT,
                    "vs-container-init not found (%s: %s): set VS_CONTAINER_INIT or install it",
                    out, strerror(errno));
    return 0;
}

/* ---- running podman ------------------------------------------------------------ */

struct spawn {
    const char *const *argv;
    int in;         /* stdin; -1: /dev/null */
    int out;        /* stdout and stderr; -1: /dev/null */
    const int *fds; /* become 3, 4, ... in podman */
    size_t nfds;
};

static int spawn(const struct spawn *s, pid_t *pid)
{
    /* Every source is first copied above all targets, so that no dup2
     * overwrites a source that a later one needs. */
    int top = 3 + (int)s->nfds;
    int src[3 + VS_CINIT_NFDS];
    size_t n = 0;
    int null = -1, rc = 0;
    if (s->nfds > VS_CINIT_NFDS)
        return -EINVAL;
    if (s->in < 0 || s->out < 0) {
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0)
            return -errno;
    }
    int wanted[3 + VS_CINIT_NFDS];
    wanted[0] = s->in >= 0 ? s->in : null;
    wanted[1] = wanted[2] = s->out >= 0 ? s->out : null;
    for (size_t i = 0; i < s->nfds; i++)
        wanted[3 + i] = s->fds[i];
    for (; n < 3 + s->nfds; n++) {
        src[n] = fcntl(wanted[n], F_DUPFD_CLOEXEC, top);
        if (src[n] < 0) {
            rc = -errno;
            break;
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (rc == 0) {
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = -posix_spawn_file_actions_adddup2(&fa, src[i], (int)i);
        if (rc == 0)
            rc = -posix_spawn_file_actions_addclosefrom_np(&fa, top);
        /* Its own process group (a terminal's ^C to ours is not for it),
         * default signal handling and nothing blocked. */
        if (rc == 0)
            rc = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                      POSIX_SPAWN_SETSIGDEF);
        if (rc == 0)
            rc = -posix_spawnattr_setsigmask(&attr, &none);
        if (rc == 0)
            rc = -posix_spawnattr_setsigdefault(&attr, &all);
        if (rc == 0)
            rc = -posix_spawn(pid, s->argv[0], &fa, &attr, (char *const *)s->argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
    }
    while (n > 0)
        close(src[--n]);
    if (null >= 0)
        close(null);
    return rc;
}

/* Wait for pid until deadline (mono_ms; 0: none): 0 with its wait status,
 * -ETIMEDOUT, or -errno. */
static int wait_until(pid_t pid, uint64_t deadline, int *status)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int rc;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) {
            rc = 0;
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        int timeout = pidfd >= 0 ? -1 : 50;
        if (deadline > 0) {
            uint64_t now = mono_ms();
            if (now >= deadline) {
                rc = -ETIMEDOUT;
                break;
            }
            if (timeout < 0 || deadline - now < (uint64_t)timeout)
                timeout = (int)(deadline - now);
        }
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        poll(&pfd, pidfd >= 0 ? 1 : 0, timeout);
    }
    if (pidfd >= 0)
        close(pidfd);
    return rc;
}

/* Kill podman (its process group) and reap it. */
static void kill_reap(pid_t pid)
{
    int st;
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
}

/* The last OUT_TAIL bytes podman (and init) wrote to the memfd, on one
 * line. */
static void read_tail(int memfd, char *out, size_t size)
{
    struct stat st;
    out[0] = '\0';
    if (size == 0 || fstat(memfd, &st) < 0)
        return;
    size_t want = size - 1 < OUT_TAIL ? size - 1 : OUT_TAIL;
    off_t from = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
    ssize_t n = pread(memfd, out, want, from);
    out[n > 0 ? n : 0] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    for (char *c = out; *c != '\0'; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
}

/* Run a short podman command with a deadline: 0 with its wait status and
 * the tail of its output, -ETIMEDOUT (killed), or -errno. */
static int podman_cmd(const char *const *argv, uint64_t timeout_ms, int *status, char *out,
                      size_t size)
{
    int memfd = memfd_create("vs-podman", MFD_CLOEXEC);
    if (memfd < 0)
        return -errno;
    struct spawn s = {.argv = argv, .in = -1, .out = memfd};
    pid_t pid;
    int rc = spawn(&s, &pid);
    if (rc == 0) {
        rc = wait_until(pid, mono_ms() + timeout_ms, status);
        if (rc == -ETIMEDOUT)
            kill_reap(pid);
        read_tail(memfd, out, size);
    }
    close(memfd);
    return rc;
}

/* ---- the image ------------------------------------------------------------------- */

/* The tree goes to podman import as a pax archive written here (a ustar
 * header per entry, and a pax header before it when a name, a link target
 * or a size does not fit ustar's fields): libarchive's writers cannot be
 * linked statically without every format they know (xar, 7zip) and their
 * libraries, and vs-sandbox is linked statically. */
#define BLOCK 512

struct tar {
    int fd;               /* podman import's stdin, a socket */
    char path[PATH_MAX];  /* of the current entry, relative to the root */
    char *buf;            /* IO_CHUNK bytes */
    char *why;
    size_t why_len;
};

/* The container's mount points: made by the image, whatever the tree has
 * there (the mounts hide it). runc gives a tmpfs the mode of the directory
 * it is mounted on, so these modes are the mounts' modes. */
static const struct {
    const char *name;
    mode_t mode;
} mount_points[] = {
    {".vs", 0755}, {"dev", 0755},  {"proc", 0555},
    {"sys", 0555}, {"tmp", 01777}, {"workspace", 0700},
};

static int tar_send(struct tar *t, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        struct pollfd pfd = {.fd = t->fd, .events = POLLOUT};
        int n = poll(&pfd, 1, STALL_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return vs_why(t->why, t->why_len, n == 0 ? -ETIMEDOUT : -errno,
                        "podman import stopped reading its input");
        ssize_t w = send(t->fd, (const char *)buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            return vs_why(t->why, t->why_len, -errno, "podman import: %s", strerror(errno));
        done += (size_t)w;
    }
    return 0;
}

/* An octal field of width w: w-1 digits and a NUL. */
static void octal(char *field, size_t w, uint64_t v)
{
    field[w - 1] = '\0';
    for (size_t i = w - 1; i > 0; i--, v >>= 3)
        field[i - 1] = (char)('0' + (v & 7));
}

/* A ustar header; names and sizes that fit are the caller's business. */
static int tar_block(struct tar *t, const char *name, char type, unsigned mode, uint64_t size,
                     const char *link)
{
    char h[BLOCK];
    memset(h, 0, sizeof(h));
    memcpy(h, name, strnlen(name, 100));
    octal(h + 100, 8, mode);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, size);
    octal(h + 136, 12, 0); /* times are not part of an image's digest either */
    h[156] = type;
    if (link != NULL)
        memcpy(h + 157, link, strnlen(link, 100));
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof(h); i++)
        sum += (unsigned char)h[i];
    octal(h + 148, 7, sum);
    return tar_send(t, h, sizeof(h));
}

/* Append the pax record "LEN key=value\n" (LEN counts the whole record). */
static size_t pax_record(char *out, size_t at, size_t size, const char *key, const char *value)
{
    size_t body = strlen(key) + strlen(value) + 3, len = body + 1;
    while (len != body + (size_t)snprintf(NULL, 0, "%zu", len))
        len = body + (size_t)snprintf(NULL, 0, "%zu", len);
    if (at < size)
        snprintf(out + at, size - at, "%zu %s=%s\n", len, key, value);
    return at + len;
}

/* The header(s) of one entry: a pax header first when ustar cannot hold
 * the name, the link target or the size. */
static int tar_entry(struct tar *t, char type, unsigned mode, uint64_t size, const char *link)
{
    char name[PATH_MAX + 1];
    snprintf(name, sizeof(name), "%s%s", t->path, type == '5' ? "/" : "");
    bool long_size = size >= (1ull << 33);
    if (strlen(name) <= 100 && (link == NULL || strlen(link) <= 100) && !long_size)
        return tar_block(t, name, type, mode, size, link);
    /* Records: at most a path and a link of PATH_MAX and a size. */
    static const size_t cap = 2 * PATH_MAX + 128;
    char *pax = t->buf;
    char num[24];
    size_t len = pax_record(pax, 0, cap, "path", name);
    if (link != NULL)
        len = pax_record(pax, len, cap, "linkpath", link);
    if (long_size) {
        snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
        len = pax_record(pax, len, cap, "size", num);
    }
    if (len > cap)
        return vs_why(t->why, t->why_len, -ENAMETOOLONG, "name too long: %s", name);
    size_t pad = (BLOCK - len % BLOCK) % BLOCK;
    memset(pax + len, 0, pad);
    int rc = tar_block(t, "././@PaxHeader", 'x', 0644, len, NULL);
    if (rc == 0)
        rc = tar_send(t, pax, len + pad);
    return rc == 0 ? tar_block(t, name, type, mode, long_size ? 0 : size, link) : rc;
}

/* Exactly size bytes of fd, padded to a block (a file that shrank meanwhile
 * is padded with zeros, one that grew is cut). */
static int tar_data(struct tar *t, int fd, uint64_t size)
{
    uint64_t left = size;
    while (left > 0) {
        size_t want = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        ssize_t n = read(fd, t->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vs_why(t->why, t->why_len, -errno, "cannot read %s: %s", t->path, strerror(errno));
        if (n == 0) {
            memset(t->buf, 0, want);
            n = (ssize_t)want;
        }
        int rc = tar_send(t, t->buf, (size_t)n);
        if (rc < 0)
            return rc;
        left -= (uint64_t)n;
    }
    size_t pad = (size_t)((BLOCK - size % BLOCK) % BLOCK);
    memset(t->buf, 0, pad);
    return pad > 0 ? tar_send(t, t->buf, pad) : 0;
}

static int tar_dir(struct tar *t, int dfd, size_t plen, unsigned depth);

/* One entry of the directory dfd, named t->path (ending in name). */
static int tar_one(struct tar *t, int dfd, const char *name, size_t plen, unsigned depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return vs_why(t->why, t->why_len, -errno, "%s: %s", t->path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return vs_why(t->why, t->why_len, -errno, "%s: %s", t->path, strerror(errno));
        int rc = tar_entry(t, '5', st.st_mode & 07777, 0, NULL);
        return rc == 0 ? tar_dir(t, fd, plen, depth + 1) : (close(fd), rc);
    }
    if (S_ISREG(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
            int rc = vs_why(t->why, t->why_len, -errno, "%s: %s", t->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return rc;
        }
        /* setuid/setgid never reach an image (the digest refuses them too) */
        int rc = tar_entry(t, '0', st.st_mode & 0777, (uint64_t)st.st_size, NULL);
        if (rc == 0)
            rc = tar_data(t, fd, (uint64_t)st.st_size);
        close(fd);
        return rc;
    }
    if (S_ISLNK(st.st_mode)) {
        char link[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, link, sizeof(link));
        if (n < 0 || n == (ssize_t)sizeof(link))
            return vs_why(t->why, t->why_len, n < 0 ? -errno : -ENAMETOOLONG,
                        "%s: cannot read the link", t->path);
        link[n] = '\0';
        return tar_entry(t, '2', 0777, 0, link);
    }
    return 0; /* devices, fifos, sockets: the container has its own /dev */
}

/* Every entry of the directory fd (named t->path[0..plen)); takes fd. */
static int tar_dir(struct tar *t, int fd, size_t plen, unsigned depth)
{
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        close(fd);
        return vs_why(t->why, t->why_len, -e, "%s: %s", plen > 0 ? t->path : "/", strerror(e));
    }
    if (depth > VS_IMAGE_MAX_DEPTH) {
        closedir(d);
        return vs_why(t->why, t->why_len, -ELOOP, "%s: nested too deeply", t->path);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        bool mount_point = false;
        for (size_t i = 0; depth == 0 && i < sizeof(mount_points) / sizeof(mount_points[0]); i++)
            mount_point |= strcmp(de->d_name, mount_points[i].name) == 0;
        if (mount_point)
            continue;
        size_t len = plen + (plen > 0) + strlen(de->d_name);
        if (len >= sizeof(t->path)) {
            rc = vs_why(t->why, t->why_len, -ENAMETOOLONG, "path too long below %s", t->path);
            break;
        }
        snprintf(t->path + plen, sizeof(t->path) - plen, "%s%s", plen > 0 ? "/" : "", de->d_name);
        rc = tar_one(t, dirfd(d), de->d_name, len, depth);
        t->path[plen] = '\0';
    }
    if (rc == 0 && errno != 0)
        rc = vs_why(t->why, t->why_len, -errno, "%s: %s", plen > 0 ? t->path : "/", strerror(errno));
    closedir(d);
    return rc;
}

/* The image of the tree at root (see vs_podman_image_import), to fd. */
static int write_image(int fd, const char *root, char *why, size_t why_len)
{
    struct tar t = {.fd = fd, .why = why, .why_len = why_len};
    int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return vs_why(why, why_len, -errno, "%s: %s", root, strerror(errno));
    t.buf = malloc(IO_CHUNK);
    if (t.buf == NULL) {
        close(dfd);
        return vs_why(why, why_len, -ENOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof(mount_points) / sizeof(mount_points[0]) && rc == 0; i++) {
        snprintf(t.path, sizeof(t.path), "%s", mount_points[i].name);
        rc = tar_entry(&t, '5', mount_points[i].mode, 0, NULL);
    }
    t.path[0] = '\0';
    if (rc == 0)
        rc = tar_dir(&t, dfd, 0, 0);
    else
        close(dfd);
    if (rc == 0) {
        memset(t.buf, 0, 2 * BLOCK);
        rc = tar_send(&t, t.buf, 2 * BLOCK);
    }
    free(t.buf);
    return rc;
}

/* `podman import - tag` with the tree as its input. */
static int import_tree(const char *podman, const char *root, const char *tag, char *why,
                       size_t why_len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return vs_why(why, why_len, -errno, "socketpair: %s", strerror(errno));
    int memfd = memfd_create("vs-podman", MFD_CLOEXEC);
    if (memfd < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return vs_why(why, why_len, -e, "memfd: %s", strerror(e));
    }
    const char *argv[] = {podman, "import", "--quiet", "-", tag, NULL};
    struct spawn s = {.argv = argv, .in = sv[1], .out = memfd};
    pid_t pid;
    int rc = spawn(&s, &pid);
    close(sv[1]);
    if (rc < 0) {
        close(sv[0]);
        close(memfd);
        return vs_why(why, why_len, rc, "cannot start podman: %s", strerror(-rc));
    }
    rc = write_image(sv[0], root, why, why_len);
    close(sv[0]); /* the end of podman's input */
    int st = 0;
    int wrc = wait_until(pid, mono_ms() + (rc == 0 ? IMPORT_TIMEOUT_MS : CMD_TIMEOUT_MS), &st);
    if (wrc == -ETIMEDOUT)
        kill_reap(pid);
    char tail[OUT_TAIL + 1];
    read_tail(memfd, tail, sizeof(tail));
    close(memfd);
    if (wrc == -ETIMEDOUT)
        return vs_why(why, why_len, -ETIMEDOUT, "podman import did not finish");
    if (wrc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
        return vs_why(why, why_len, -EIO, "podman import failed (status %d): %s", st, tail);
    return rc < 0 ? rc : wrc;
}

int vs_podman_image_import(const char *rootfs_dir, const char *digest, char *image_id,
                           size_t size, char *why, size_t why_len)
{
    if (why != NULL && why_len > 0)
        why[0] = '\0';
    const char *hex = digest_hex(digest);
    if (rootfs_dir == NULL || rootfs_dir[0] == '\0' || hex == NULL || image_id == NULL)
        return vs_why(why, why_len, -EINVAL, "bad arguments (digest: sha256:<64 lowercase hex>)");
    if (size < VS_PODMAN_IMAGE_ID_LEN)
        return vs_why(why, why_len, -ERANGE, "image_id needs %d bytes", VS_PODMAN_IMAGE_ID_LEN);
    char podman[PATH_MAX];
    if (find_podman(podman) < 0)
        return vs_why(why, why_len, -ENOENT, "podman is not installed");
    char tag[sizeof(TAG_PREFIX) + HEX_LEN];
    snprintf(tag, sizeof(tag), TAG_PREFIX "%s", hex);
    char out[OUT_TAIL + 1];
    int st;
    /* Every launch of an imported image asks for its ID: one podman call */
    const char *inspect[] = {podman, "image", "inspect", "--format", "{{.Id}}", tag, NULL};
    if (podman_cmd(inspect, CMD_TIMEOUT_MS, &st, out, sizeof(out)) == 0 && WIFEXITED(st) &&
        WEXITSTATUS(st) == 0 && is_hex(out, HEX_LEN)) {
        snprintf(image_id, size, "sha256:%s", out);
        return 0;
    }
    const char *exists[] = {podman, "image", "exists", tag, NULL};
    int rc = podman_cmd(exists, CMD_TIMEOUT_MS, &st, out, sizeof(out));
    if (rc < 0)
        return vs_why(why, why_len, rc, "podman image exists: %s", strerror(-rc));
    if (!WIFEXITED(st) || WEXITSTATUS(st) > 1)
        return vs_why(why, why_len, -EIO, "podman image exists failed (status %d): %s", st, out);
    if (WEXITSTATUS(st) == 1) {
        char found[VS_IMAGE_DIGEST_LEN];
        rc = vs_image_digest_dir(rootfs_dir, found);
        if (rc < 0)
            return vs_why(why, why_len, rc, "cannot hash %s: %s", rootfs_dir, strerror(-rc));
        if (strcmp(found, digest) != 0)
            return vs_why(why, why_len, -EBADMSG, "digest mismatch: expected %s, found %s", digest,
                        found);
        rc = import_tree(podman, rootfs_dir, tag, why, why_len);
        if (rc < 0)
            return rc;
    }
    rc = podman_cmd(inspect, CMD_TIMEOUT_MS, &st, out, sizeof(out));
    if (rc < 0)
        return vs_why(why, why_len, rc, "podman image inspect: %s", strerror(-rc));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !is_hex(out, HEX_LEN))
        return vs_why(why, why_len, -EIO, "podman image inspect %s failed (status %d): %s", tag, st,
                    out);
    snprintf(image_id, size, "sha256:%s", out);
    return 0;
}

/* ---- the run ---------------------------------------------------------------------- */

/* A growing, NULL-terminated argument vector of copies. */
struct args {
    char **v;
    size_t n, cap;
    bool oom;
};

__attribute__((format(printf, 2, 3))) static void arg(struct args *a, const char *fmt, ...)
{
    if (a->oom)
        return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap > 0 ? a->cap * 2 : 128;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&a->v[a->n], fmt, ap);
    va_end(ap);
    if (n < 0) {
        a->oom = true;
        return;
    }
    a->v[++a->n] = NULL;
}

static void args_free(struct args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

static bool podman_path_ok(const char *s)
{
    return s != NULL && s[0] == '/' && strpbrk(s, ":,") == NULL;
}

static int check_policy(const struct vs_sandbox_policy *p, const char *image_id,
                        char *const argv[], int snapshot_fd, struct vs_sandbox_result *r)
{
    if (p == NULL || argv == NULL || argv[0] == NULL || argv[0][0] == '\0' ||
        digest_hex(image_id) == NULL || p->n_env > VS_SANDBOX_MAX_ENV ||
        p->n_ro_binds > VS_SANDBOX_MAX_BINDS || p->workspace_bytes == 0 || p->tmp_bytes == 0 ||
        p->nofile == 0 || (p->cwd != NULL && p->cwd[0] != '/'))
        return vs_why(r->setup_error, sizeof(r->setup_error), -EINVAL,
                    "invalid arguments (image_id: sha256:<64 hex> from vs_podman_image_import)");
    if (p->seccomp_log)
        return vs_why(r->setup_error, sizeof(r->setup_error), -ENOTSUP,
                    "seccomp log mode needs the native launcher's supervisor");
    if (p->snapshot_fd >= 0 && p->snapshot_fd != snapshot_fd)
        return vs_why(r->setup_error, sizeof(r->setup_error), -EINVAL,
                    "the snapshot descriptor is vs_podman_run's argument (policy: -1 or the same)");
    for (size_t i = 0; i < p->n_env; i++)
        if (p->env[i] == NULL || p->env[i][0] == '=' || strchr(p->env[i], '=') == NULL)
            return vs_why(r->setup_error, sizeof(r->setup_error), -EINVAL,
                        "environment entry %zu is not NAME=VALUE", i);
    for (size_t i = 0; i < p->n_ro_binds; i++)
        if (!podman_path_ok(p->ro_binds[i].src) || !podman_path_ok(p->ro_binds[i].dst))
            return vs_why(r->setup_error, sizeof(r->setup_error), -EINVAL,
                        "bind %zu: absolute paths without ':' or ','", i);
    return 0;
}

/* The preset as a Podman profile, in a temporary file. */
static int write_profile(enum vs_seccomp_preset preset, char path[PATH_MAX])
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] != '/')
        dir = "/tmp";
    if (snprintf(path, PATH_MAX, "%s/vs-seccomp-XXXXXX.json", dir) >= PATH_MAX)
        return -ENAMETOOLONG;
    int fd = mkostemps(path, 5, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(path);
        return -e;
    }
    int rc = vs_seccomp_export_oci(preset, f);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(path);
    return rc;
}

/* The policy's environment, sealed in a memfd for init. */
static int env_memfd(const struct vs_sandbox_policy *p)
{
    int fd = memfd_create("vs-env", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    size_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < p->n_env && rc == 0; i++) {
        size_t len = strlen(p->env[i]) + 1;
        total += len;
        if (total > VS_CINIT_ENV_MAX)
            rc = -E2BIG;
        else if (write(fd, p->env[i], len) != (ssize_t)len)
            rc = -EIO;
    }
    if (rc == 0 &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* The podman command line for p (see vs/podman.h). */
static void build_args(struct args *a, const struct vs_sandbox_policy *p, const char *podman,
                       const char *init, const char *name, const char *profile,
                       const char *image_id, char *const argv[], bool snapshot,
                       uint64_t snapshot_max)
{
    arg(a, "%s", podman);
    arg(a, "--runtime");
    arg(a, RUNTIME);
    arg(a, "run");
    arg(a, "--rm");
    arg(a, "--pull=never");
    arg(a, "--name=%s", name);
    arg(a, "--network=none");
    arg(a, "--ipc=private");
    arg(a, "--cgroupns=private");
    arg(a, "--hostname=vs-sandbox");
    arg(a, "--cap-drop=ALL");
    arg(a, "--security-opt=no-new-privileges");
    arg(a, "--security-opt=seccomp=%s", profile);
    arg(a, "--read-only");
    arg(a, "--read-only-tmpfs=false");
    /* U: owned by the agent (podman's uid= spelling); the mode is the
     * image directory's (runc), see mount_points. */
    arg(a, "--tmpfs=/workspace:rw,size=%llu,mode=0700,U,notmpcopyup",
        (unsigned long long)p->workspace_bytes);
    arg(a, "--tmpfs=/tmp:rw,size=%llu,mode=1777,U,notmpcopyup", (unsigned long long)p->tmp_bytes);
    arg(a, "--shm-size=%llub", (unsigned long long)p->tmp_bytes);
    if (p->memory_bytes > 0) {
        arg(a, "--memory=%llub", (unsigned long long)p->memory_bytes);
        arg(a, "--memory-swap=%llub", (unsigned long long)p->memory_bytes);
    }
    if (p->pids > 0)
        arg(a, "--pids-limit=%u", p->pids);
    else
        arg(a, "--pids-limit=-1");
    arg(a, "--cpus=1");
    arg(a, "--ulimit=nofile=%u:%u", p->nofile, p->nofile);
    arg(a, "--ulimit=core=0:0");
    /* RLIMIT_NPROC counts every process of host uid 1000 (no user
     * namespace), other containers' too, so the pids cgroup is the limit
     * and this is only the explicit value podman needs: Podman's default
     * (32768), or less when we have less. runc cannot set more than its own
     * hard limit without CAP_SYS_RESOURCE, and podman's processes run with
     * 32768 (seen on Debian 12's podman 4.3). */
    struct rlimit nproc;
    uint64_t nproc_max = NPROC_MAX;
    if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_max != RLIM_INFINITY &&
        nproc.rlim_max < nproc_max)
        nproc_max = nproc.rlim_max;
    arg(a, "--ulimit=nproc=%llu:%llu", (unsigned long long)nproc_max,
        (unsigned long long)nproc_max);
    if (p->cpu_limit_ms > 0) {
        unsigned long long s = (p->cpu_limit_ms + 999) / 1000;
        arg(a, "--ulimit=cpu=%llu:%llu", s, s + 1);
    }
    if (p->time_limit_ms > 0)
        arg(a, "--timeout=%llu",
            (unsigned long long)((p->time_limit_ms + 999) / 1000 + PODMAN_GRACE_S));
    arg(a, "--user=" AGENT);
    arg(a, "--workdir=/");
    arg(a, "--http-proxy=false");
    arg(a, "--log-driver=none");
    arg(a, "--preserve-fds=%d", VS_CINIT_NFDS);
    arg(a, "--volume=%s:" VS_CINIT_PATH ":ro", init);
    for (size_t i = 0; i < p->n_ro_binds; i++)
        arg(a, "--volume=%s:%s:ro,nosuid,nodev", p->ro_binds[i].src, p->ro_binds[i].dst);
    arg(a, "--entrypoint=" VS_CINIT_PATH);
    arg(a, "%s", image_id);
    /* init's options (container_init.h) */
    if (p->command_fd >= 0)
        arg(a, "--command");
    if (snapshot) {
        arg(a, "--snapshot");
        arg(a, "%llu", (unsigned long long)snapshot_max);
    }
    if (p->time_limit_ms > 0) {
        arg(a, "--time-limit");
        arg(a, "%llu", (unsigned long long)p->time_limit_ms);
    }
    if (p->memory_bytes > 0) {
        arg(a, "--memory");
        arg(a, "%llu", (unsigned long long)p->memory_bytes);
    }
    if (p->pids > 0) {
        arg(a, "--pids");
        arg(a, "%u", p->pids);
    }
    arg(a, "--fsize");
    arg(a, "%llu", (unsigned long long)(p->fsize_bytes > 0 ? p->fsize_bytes : p->workspace_bytes));
    if (p->preset == VS_PRESET_NETWORK)
        arg(a, "--net");
    arg(a, "--chdir");
    arg(a, "%s", p->cwd != NULL ? p->cwd : "/workspace");
    arg(a, "--");
    for (size_t i = 0; argv[i] != NULL; i++)
        arg(a, "%s", argv[i]);
}

/* Our deadline passed, or podman's process is no longer ours to wait
 * for: kill the container by name, then podman (only while it is our
 * unreaped child: its pid cannot have been reused), then remove what is
 * left. */
static void stop_container(const char *podman, const char *name, pid_t pid)
{
    char out[OUT_TAIL + 1];
    int st;
    const char *kill_argv[] = {podman, "kill", "--signal", "KILL", name, NULL};
    podman_cmd(kill_argv, CMD_TIMEOUT_MS, &st, out, sizeof(out));
    int rc = wait_until(pid, mono_ms() + CMD_TIMEOUT_MS, &st);
    if (rc == 0)
        return;
    if (rc == -ETIMEDOUT)
        kill_reap(pid);
    const char *rm_argv[] = {podman, "rm", "--force", name, NULL};
    podman_cmd(rm_argv, CMD_TIMEOUT_MS, &st, out, sizeof(out));
}

/* The policy's descriptor; else ours (0-2) when it is open; else
 * /dev/null. A bad descriptor of the policy fails in spawn (EBADF). */
static int pick_fd(int policy_fd, int ours, int null)
{
    if (policy_fd >= 0)
        return policy_fd;
    return ours >= 0 && fcntl(ours, F_GETFD) >= 0 ? ours : null;
}

static void classify(const struct vs_sandbox_policy *p, const struct vs_cinit_report *rep,
                     struct vs_sandbox_result *r)
{
    r->limit_mode = (rep->flags & VS_CINIT_F_CGROUP_V2)   ? VS_LIMITS_CGROUP_V2
                    : (rep->flags & VS_CINIT_F_CGROUP_V1) ? VS_LIMITS_CGROUP_V1
                                                          : VS_LIMITS_RLIMIT;
    r->landlock_abi = rep->landlock_abi;
    r->cpu_ms = rep->cpu_ms;
    r->peak_memory_bytes = rep->peak_memory_bytes;
    if (rep->status >= 0)
        vs_outcome_status(rep->status, r);
    r->pids_limit_hit = (rep->flags & (VS_CINIT_F_PIDS | VS_CINIT_F_PIDS_HIT)) != 0;
    if (rep->flags & VS_CINIT_F_TIME)
        r->kill_reason = VS_KILL_TIME;
    else if (rep->flags & VS_CINIT_F_PIDS)
        r->kill_reason = VS_KILL_PIDS;
    else
        r->kill_reason = vs_outcome_signal_reason(p, r, rep->oom_kills);
}

/* One container from vs_podman_start to vs_podman_free. */
struct vs_podman {
    const struct vs_sandbox_policy *p;
    struct vs_sandbox_result *r;
    char podman[PATH_MAX], profile[PATH_MAX];
    char name[3 + 16 + 1]; /* vs-<16 hex> */
    struct args a;
    int rep, null, memfd; /* our end of init's report socket, /dev/null, podman's output */
    pid_t pid;
    uint64_t start;
    _Atomic bool ended, killed;
};

void vs_podman_free(vs_podman *pm)
{
    if (pm == NULL)
        return;
    args_free(&pm->a);
    if (pm->profile[0] != '\0')
        unlink(pm->profile);
    int fds[] = {pm->rep, pm->null, pm->memfd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(pm);
}

int vs_podman_start(const struct vs_sandbox_policy *p, const char *image_id, char *const argv[],
                    int snapshot_fd, uint64_t snapshot_max, struct vs_sandbox_result *r,
                    vs_podman **out)
{
    if (r == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    r->limit_mode = VS_LIMITS_RLIMIT;
    int rc = check_policy(p, image_id, argv, snapshot_fd, r);
    if (rc < 0)
        return rc;
    char *err = r->setup_error;
    size_t errlen = sizeof(r->setup_error);
    vs_podman *pm = calloc(1, sizeof(*pm));
    if (pm == NULL)
        return vs_why(err, errlen, -ENOMEM, "out of memory");
    pm->p = p;
    pm->r = r;
    pm->rep = pm->null = pm->memfd = -1;
    pm->pid = -1;
    pm->start = mono_ms();
    r->host_uid = geteuid() == 0 ? AGENT_UID : 0;

    char init[PATH_MAX];
    unsigned char rnd[8];
    if (find_podman(pm->podman) < 0)
        rc = vs_why(err, errlen, -ENOENT, "podman is not installed");
    else if ((rc = find_init(init, err, errlen)) < 0)
        ;
    else if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rc = vs_why(err, errlen, -EIO, "getrandom: %s", strerror(errno));
    else if ((rc = write_profile(p->preset, pm->profile)) < 0) {
        pm->profile[0] = '\0';
        rc = vs_why(err, errlen, rc, "cannot write the seccomp profile: %s", strerror(-rc));
    }
    if (rc < 0) {
        vs_podman_free(pm);
        return rc;
    }
    snprintf(pm->name, sizeof(pm->name), "vs-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);

    int envfd = env_memfd(p);
    int rep[2] = {-1, -1};
    pm->null = open("/dev/null", O_RDWR | O_CLOEXEC);
    pm->memfd = memfd_create("vs-podman", MFD_CLOEXEC);
    if (envfd < 0)
        rc = vs_why(err, errlen, envfd, "environment: %s", strerror(-envfd));
    else if (pm->null < 0 || pm->memfd < 0 ||
             socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rep) < 0)
        rc = vs_why(err, errlen, -errno, "descriptors: %s", strerror(errno));
    pm->rep = rep[0];
    if (rc == 0) {
        build_args(&pm->a, p, pm->podman, init, pm->name, pm->profile, image_id, argv,
                   snapshot_fd >= 0, snapshot_max);
        if (pm->a.oom)
            rc = vs_why(err, errlen, -ENOMEM, "out of memory");
    }
    if (rc == 0) {
        int fds[VS_CINIT_NFDS] = {pick_fd(p->command_fd, -1, pm->null),
                                  pick_fd(snapshot_fd, -1, pm->null),
                                  rep[1],
                                  envfd,
                                  pick_fd(p->stdin_fd, 0, pm->null),
                                  pick_fd(p->stdout_fd, 1, pm->null),
                                  pick_fd(p->stdout_fd, 2, pm->null)};
        struct spawn s = {.argv = (const char *const *)pm->a.v, .in = -1, .out = pm->memfd,
                          .fds = fds, .nfds = VS_CINIT_NFDS};
        if ((rc = spawn(&s, &pm->pid)) < 0)
            rc = vs_why(err, errlen, rc, "cannot start podman: %s", strerror(-rc));
    }
    /* Only podman (and the container) hold init's ends now. */
    if (rep[1] >= 0)
        close(rep[1]);
    if (envfd >= 0)
        close(envfd);
    if (rc < 0) {
        vs_podman_free(pm);
        return rc;
    }
    *out = pm;
    return 0;
}

int vs_podman_wait(vs_podman *pm)
{
    const struct vs_sandbox_policy *p = pm->p;
    struct vs_sandbox_result *r = pm->r;
    char *err = r->setup_error;
    size_t errlen = sizeof(r->setup_error);
    int rc = 0, st = 0;
    bool ours = false; /* our deadline killed it */
    uint64_t deadline = p->time_limit_ms > 0 ? pm->start + p->time_limit_ms + CALL_GRACE_MS : 0;
    int wrc = wait_until(pm->pid, deadline, &st);
    if (wrc == -ETIMEDOUT) {
        stop_container(pm->podman, pm->name, pm->pid);
        ours = true;
    } else if (wrc < 0) {
        stop_container(pm->podman, pm->name, pm->pid);
        rc = vs_why(err, errlen, wrc, "waiting for podman: %s (was SIGCHLD ignored?)",
                    strerror(-wrc));
    }
    atomic_store(&pm->ended, true);
    r->wall_ms = mono_ms() - pm->start;
    struct vs_cinit_report report;
    bool have = rc == 0 && !atomic_load(&pm->killed) &&
                recv(pm->rep, &report, sizeof(report), MSG_DONTWAIT) == (ssize_t)sizeof(report) &&
                report.magic == VS_CINIT_MAGIC && report.version == VS_CINIT_VERSION;
    if (have) {
        report.error[sizeof(report.error) - 1] = '\0';
        classify(p, &report, r);
        if (report.error[0] != '\0')
            rc = vs_why(err, errlen, -EIO, "%s", report.error);
        else if (report.snapshot_errno != 0)
            rc = vs_why(err, errlen, -EIO, "cannot write the snapshot: %s",
                        strerror(report.snapshot_errno));
    } else if (rc == 0 && atomic_load(&pm->killed)) {
        /* vs_podman_kill: init ended the container without a report. */
        r->kill_reason = VS_KILL_WATCHDOG;
        r->signal = SIGKILL;
    } else if (rc == 0 && (ours || (p->time_limit_ms > 0 &&
                                    r->wall_ms >= p->time_limit_ms + PODMAN_GRACE_S * 1000))) {
        /* Killed from outside at a deadline (ours, or podman's --timeout):
         * init had no chance to report. */
        r->kill_reason = VS_KILL_TIME;
    } else if (rc == 0) {
        char tail[OUT_TAIL + 1];
        read_tail(pm->memfd, tail, sizeof(tail));
        rc = vs_why(err, errlen, -EIO, "podman run failed (exit %d) without a report from "
                    "vs-container-init: %s", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
                    tail[0] != '\0' ? tail : "no message");
    }
    return rc;
}

int vs_podman_finish(vs_podman *pm)
{
    if (atomic_load(&pm->ended))
        return -EALREADY;
    char finish = VS_CINIT_FINISH;
    return send(pm->rep, &finish, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

int vs_podman_kill(vs_podman *pm)
{
    if (atomic_load(&pm->ended))
        return -EALREADY;
    atomic_store(&pm->killed, true);
    /* init sees the socket hang up, kills everything and exits */
    return shutdown(pm->rep, SHUT_RDWR) == 0 ? 0 : -errno;
}

int vs_podman_set_memory(vs_podman *pm, uint64_t bytes)
{
    if (atomic_load(&pm->ended))
        return -EALREADY;
    if (bytes == 0)
        return -EINVAL;
    char mem[32], out[OUT_TAIL + 1];
    snprintf(mem, sizeof(mem), "%" PRIu64, bytes);
    /* memory+swap equal to memory: still no swap */
    const char *argv[] = {pm->podman, "update", "--memory", mem, "--memory-swap", mem, pm->name,
                          NULL};
    int st = 0;
    int rc = podman_cmd(argv, CMD_TIMEOUT_MS, &st, out, sizeof(out));
    if (rc < 0)
        return rc;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

int vs_podman_run(const struct vs_sandbox_policy *p, const char *image_id, char *const argv[],
                  int snapshot_fd, uint64_t snapshot_max, struct vs_sandbox_result *r)
{
    vs_podman *pm = NULL;
    int rc = vs_podman_start(p, image_id, argv, snapshot_fd, snapshot_max, r, &pm);
    if (rc < 0)
        return rc;
    rc = vs_podman_wait(pm);
    vs_podman_free(pm);
    return rc;
}
