/*
 * seccomp_notify.c - the seccomp user-notification side of the sandbox:
 * passing the listener fd from the sandboxed child to the launcher
 * (SCM_RIGHTS), and the supervisor thread that answers the filter's
 * notifications, names the denied syscalls and implements log mode.
 *
 * Why it is shaped this way:
 * - The filter answers SECCOMP_RET_USER_NOTIF for every named denial, so
 *   the launcher learns the syscall (the kernel hands over struct
 *   seccomp_data: number, arch, register arguments). That is the only way
 *   to report "denied: socket" instead of a bare EPERM, and it lets log mode
 *   decide per call.
 * - One thread with poll() on the listener and an eventfd for stop: the
 *   launcher's own loop (wall clock, pids, status) stays as it is. The
 *   thread blocks every signal so the launcher's handlers run elsewhere.
 * - The name is recorded before the answer is sent, so once the sandboxed
 *   process has seen its EPERM the name is in the list: a launcher that
 *   reaps the sandbox and then stops the supervisor never loses a name.
 * - Log mode keeps the always-blocked list denied. The decision uses the
 *   register arguments in seccomp_data, the same values the BPF filter saw,
 *   so there is no time-of-check/time-of-use gap in the classification;
 *   SECCOMP_USER_NOTIF_FLAG_CONTINUE itself is only used in log mode.
 * - A response can fail with ENOENT when the target died (or was
 *   interrupted) meanwhile: that is normal and ignored. The loop ends when
 *   the listener reports POLLHUP (every task using the filter is gone and
 *   reaped) or when stop is asked for.
 * - Logging: log_warnx lines in log mode with the syscall name and pid; the
 *   arguments are never printed (they may be pointers into the program's
 *   memory or carry its data). One line per distinct syscall and outcome
 *   (the first occurrence): a loop of denied calls must not flood the
 *   launcher's stderr, and the first pid is the interesting one.
 */
#include "seccomp_policy.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vs/log.h"

/* ---- fd passing ---------------------------------------------------------------- */

int vs_fd_send(int sock, int fd)
{
    char byte = 'L';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg;
    ssize_t n;

    if (fd < 0)
        return -EBADF;
    memset(&u, 0, sizeof(u));
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == 1 ? 0 : -EIO;
}

int vs_fd_recv(int sock)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } u;
    struct msghdr msg;
    ssize_t n;
    int fd = -1;

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
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = got;
            else
                close(got); /* only one was expected */
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        if (fd >= 0)
            close(fd);
        return -EBADMSG;
    }
    if (fd < 0)
        return n == 0 ? -ECONNRESET : -EBADMSG;
    return fd;
}

/* ---- the supervisor ------------------------------------------------------------- */

#define VS_LOG_NR_MAX 1024

struct vs_seccomp_supervisor {
    pthread_t thread;
    int listener;
    int stop_fd; /* eventfd: written by stop */
    bool log_mode;
    /* Written by the thread only; read by stop after the join. */
    char names[VS_SANDBOX_MAX_DENIED][VS_SECCOMP_NAME_MAX];
    size_t n_names;
    int error; /* first unexpected error of the loop, or 0 */
    /* Syscall numbers already logged, [0] let through, [1] denied: one line
     * per distinct call, so a program cannot flood the launcher's log. */
    uint8_t logged[2][VS_LOG_NR_MAX / 8];
    _Atomic uint64_t count;
};

/* Remember name if it is new and there is room. */
static void record(struct vs_seccomp_supervisor *s, const char *name)
{
    for (size_t i = 0; i < s->n_names; i++)
        if (strcmp(s->names[i], name) == 0)
            return;
    if (s->n_names < VS_SANDBOX_MAX_DENIED) {
        snprintf(s->names[s->n_names], VS_SECCOMP_NAME_MAX, "%s", name);
        s->n_names++;
    }
}

/* Receive and answer one notification. 0, or -errno for an error that ends
 * the loop. */
static int handle_one(struct vs_seccomp_supervisor *s)
{
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    char fallback[VS_SECCOMP_NAME_MAX];

    memset(&req, 0, sizeof(req)); /* the kernel insists */
    if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
        if (errno == EINTR || errno == ENOENT) /* the target went away */
            return 0;
        return -errno;
    }

    /* The filter only passes the native arch; anything else (impossible)
     * is treated as always blocked. */
    char *name = seccomp_syscall_resolve_num_arch(req.data.arch, req.data.nr);
    const char *shown = name;
    if (shown == NULL) {
        snprintf(fallback, sizeof(fallback), "syscall_%d", req.data.nr);
        shown = fallback;
    }
    uint64_t args[6];
    for (int i = 0; i < 6; i++)
        args[i] = req.data.args[i];
    bool always = name == NULL || vs_seccomp_always_blocked(name, args);
    bool let_through = s->log_mode && !always;

    record(s, shown);
    atomic_fetch_add(&s->count, 1);
    bool first = true;
    if (req.data.nr >= 0 && req.data.nr < VS_LOG_NR_MAX) {
        uint8_t *bits = s->logged[let_through ? 0 : 1];
        uint8_t bit = (uint8_t)(1u << (req.data.nr % 8));
        first = (bits[req.data.nr / 8] & bit) == 0;
        bits[req.data.nr / 8] |= bit;
    }
    if (first && s->log_mode && let_through)
        log_warnx("seccomp log mode: allowed syscall=%s pid=%u (denied by the preset)", shown,
                  req.pid);
    else if (first && s->log_mode)
        log_warnx("seccomp log mode: denied syscall=%s pid=%u (always blocked)", shown, req.pid);
    else if (first)
        log_debug("seccomp: denied syscall=%s pid=%u", shown, req.pid);
    free(name);

    memset(&resp, 0, sizeof(resp));
    resp.id = req.id;
    if (let_through) {
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        resp.error = -EPERM;
    }
    int rc;
    do
        rc = ioctl(s->listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != ENOENT) /* ENOENT: the target died or was interrupted */
        return -errno;
    return 0;
}

static void *supervisor_main(void *arg)
{
    struct vs_seccomp_supervisor *s = arg;

    for (;;) {
        struct pollfd fds[2] = {{.fd = s->listener, .events = POLLIN},
                                {.fd = s->stop_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            s->error = -errno;
            break;
        }
        if (fds[0].revents & POLLIN) {
            int rc = handle_one(s);
            if (rc < 0) {
                s->error = rc;
                break;
            }
        } else if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            break; /* every task using the filter is gone */
        }
        if (fds[1].revents & POLLIN)
            break;
    }
    return NULL;
}

int vs_seccomp_supervisor_start(int listener_fd, bool log_mode, struct vs_seccomp_supervisor **out)
{
    sigset_t all, old;
    int rc;

    if (listener_fd < 0 || out == NULL)
        return -EINVAL;
    *out = NULL;
    struct vs_seccomp_supervisor *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->listener = listener_fd;
    s->log_mode = log_mode;
    atomic_init(&s->count, 0);
    s->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (s->stop_fd < 0) {
        rc = -errno;
        free(s);
        return rc;
    }
    /* The thread inherits this mask: no signal is ever handled there. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&s->thread, NULL, supervisor_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        close(s->stop_fd);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

size_t vs_seccomp_supervisor_stop(struct vs_seccomp_supervisor *s,
                                  char names[][VS_SECCOMP_NAME_MAX], size_t max)
{
    uint64_t one = 1;
    size_t n = 0;

    if (s == NULL)
        return 0;
    while (write(s->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    pthread_join(s->thread, NULL);
    if (s->error != 0)
        log_warnx("seccomp supervisor ended on an error: %s", strerror(-s->error));
    for (; names != NULL && n < max && n < s->n_names; n++)
        memcpy(names[n], s->names[n], VS_SECCOMP_NAME_MAX);
    close(s->listener);
    close(s->stop_fd);
    free(s);
    return n;
}

uint64_t vs_seccomp_supervisor_count(const struct vs_seccomp_supervisor *s)
{
    return s == NULL ? 0 : atomic_load(&s->count);
}
