/*
 * test_landlock.c - sandboxd/src/landlock.c against the running kernel.
 *
 * Landlock restricts the calling process for good, so every restricted
 * case runs in a forked child: the child sets no_new_privs, applies a
 * policy, tries a list of operations and writes what each one returned
 * (0 or its errno) into a pipe; the parent asserts. The proof cases are
 * ones that would succeed for root without Landlock (creating a file in
 * /etc, listing /root, connecting to a port the parent listens on,
 * signalling the parent), so a missing protection fails the test rather
 * than passing by accident. Expectations follow the kernel's ABI: TCP
 * from 4, scopes from 6; this machine must have Landlock at all.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../sandboxd/src/landlock.h"

/* What the child saw; each field is 0 (worked) or an errno. */
struct ll_report {
    int apply_rc;  /* vs_landlock_apply's return */
    int abi_used;
    int read_etc;  /* open /etc/hostname O_RDONLY */
    int write_etc; /* open /etc/hostname O_WRONLY */
    int create_etc;/* create a new file in /etc */
    int list_root; /* open /root (not listed) */
    int write_tmp; /* create + write + truncate a file in the rw dir */
    int exec_usr;  /* fork + exec /usr/bin/true, 0 if it exited 0 */
    int devnull;   /* open /dev/null O_WRONLY */
    int tty_new;   /* open the pty slave now and tcgetattr it */
    int tty_old;   /* tcgetattr on the pty master opened before */
    int connect;   /* TCP connect to the parent's listener */
    int bind;      /* TCP bind to 127.0.0.1:0 */
    int signal;    /* kill(getppid(), 0) */
    int abstract;  /* connect to the parent's abstract unix socket */
};

struct ll_case {
    const char *const *ro;
    const char *const *rw;
    bool allow_network;
    bool nnp;
    int port;               /* the parent's TCP listener */
    const char *abstract;   /* the parent's abstract socket name (without the NUL) */
    const char *dir;        /* the rw directory */
};

static int err_of(int rc)
{
    return rc < 0 ? errno : 0;
}

static int open_err(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);

    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static int run_checks(const struct ll_case *c, struct ll_report *r, int old_tty)
{
    char path[256];
    struct sockaddr_in sin;
    struct sockaddr_un sun;
    int fd, st;
    pid_t pid;

    r->read_etc = open_err("/etc/hostname", O_RDONLY);
    r->write_etc = open_err("/etc/hostname", O_WRONLY);
    snprintf(path, sizeof(path), "/etc/vs-landlock-test-%d", (int)getpid());
    r->create_etc = open_err(path, O_WRONLY | O_CREAT | O_EXCL);
    if (r->create_etc == 0)
        unlink(path); /* the protection is missing: do not leave litter */
    r->list_root = open_err("/root", O_RDONLY | O_DIRECTORY);

    snprintf(path, sizeof(path), "%s/f", c->dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r->write_tmp = errno;
    } else {
        r->write_tmp = write(fd, "hello", 5) == 5 ? 0 : EIO;
        if (!r->write_tmp)
            r->write_tmp = err_of(truncate(path, 2));
        close(fd);
    }

    pid = fork();
    if (pid == 0) {
        execl("/usr/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    r->exec_usr = pid < 0 ? errno : waitpid(pid, &st, 0) != pid ? errno
                  : WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : ENOEXEC;

    r->devnull = open_err("/dev/null", O_WRONLY);
    if (old_tty >= 0) {
        struct termios t;
        const char *slave = ptsname(old_tty);

        r->tty_old = err_of(tcgetattr(old_tty, &t));
        fd = slave ? open(slave, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
        if (fd < 0) {
            r->tty_new = errno;
        } else {
            r->tty_new = err_of(tcgetattr(fd, &t));
            close(fd);
        }
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)c->port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r->connect = fd < 0 ? errno : err_of(connect(fd, (struct sockaddr *)&sin, sizeof(sin)));
    if (fd >= 0)
        close(fd);
    sin.sin_port = 0;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r->bind = fd < 0 ? errno : err_of(bind(fd, (struct sockaddr *)&sin, sizeof(sin)));
    if (fd >= 0)
        close(fd);

    r->signal = err_of(kill(getppid(), 0));

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path + 1, c->abstract, strlen(c->abstract));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r->abstract = fd < 0 ? errno
                         : err_of(connect(fd, (struct sockaddr *)&sun,
                                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                                      strlen(c->abstract))));
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Run case c in a child and return its report. */
static struct ll_report run_case(const struct ll_case *c, bool with_tty)
{
    struct ll_report r;
    int p[2], st, tty = -1;
    pid_t pid;

    if (with_tty) {
        tty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(tty >= 0);
        assert_int_equal(grantpt(tty), 0);
        assert_int_equal(unlockpt(tty), 0);
        assert_non_null(ptsname(tty));
    }
    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        memset(&r, 0, sizeof(r));
        r.tty_new = r.tty_old = -1;
        close(p[0]);
        if (c->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(10);
        r.apply_rc = vs_landlock_apply(c->ro, c->rw, c->allow_network, &r.abi_used);
        if (r.apply_rc == 0)
            run_checks(c, &r, tty);
        _exit(write(p[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 11);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &r, sizeof(r)), (ssize_t)sizeof(r));
    close(p[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    if (tty >= 0)
        close(tty);
    return r;
}

/* A TCP listener on 127.0.0.1 (port in *port) and an abstract unix
 * listener named name: things the sandbox must not reach. */
static void listeners(int *tcp, int *port, int *unx, char *name, size_t size)
{
    struct sockaddr_in sin;
    struct sockaddr_un sun;
    socklen_t len = sizeof(sin);

    *tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*tcp >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(*tcp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(*tcp, 8), 0);
    assert_int_equal(getsockname(*tcp, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);

    snprintf(name, size, "vs-landlock-test-%d", (int)getpid());
    *unx = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*unx >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path + 1, name, strlen(name));
    assert_int_equal(bind(*unx, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))),
                     0);
    assert_int_equal(listen(*unx, 8), 0);
}

static void rm_dir(const char *dir)
{
    char p[256];

    snprintf(p, sizeof(p), "%s/f", dir);
    unlink(p);
    rmdir(dir);
}

static void test_abi(void **state)
{
    int abi = vs_landlock_abi();

    (void)state;
    print_message("landlock ABI of this kernel: %d\n", abi);
    assert_true(abi > 0);
}

static void require_root(void)
{
    if (geteuid() != 0)
        fail_msg("this test needs root (euid %d): its proofs are writes root could otherwise do; "
                 "CI runs the suite as root", (int)geteuid());
}

/* ro /usr /etc, rw a temp dir, no network: the full proof. */
static void test_restrict(void **state)
{
    char dir[] = "/tmp/vs-landlock-XXXXXX", name[64];
    const char *ro[] = { "/usr", "/etc", "/nonexistent/vs-landlock", NULL };
    const char *rw[] = { dir, NULL };
    struct ll_case c = { ro, rw, false, true, 0, name, dir };
    struct ll_report r;
    int tcp, unx, abi = vs_landlock_abi();

    (void)state;
    require_root();
    assert_true(abi > 0);
    assert_non_null(mkdtemp(dir));
    listeners(&tcp, &c.port, &unx, name, sizeof(name));
    r = run_case(&c, true);
    close(tcp);
    close(unx);
    rm_dir(dir);

    print_message("applied ABI %d: read /etc %d, write /etc %d, create in /etc %d, /root %d, "
                  "rw dir %d, exec %d, /dev/null %d, tty %d/%d, connect %d, bind %d, signal %d, "
                  "abstract %d\n",
                  r.abi_used, r.read_etc, r.write_etc, r.create_etc, r.list_root, r.write_tmp,
                  r.exec_usr, r.devnull, r.tty_old, r.tty_new, r.connect, r.bind, r.signal, r.abstract);
    assert_int_equal(r.apply_rc, 0);
    assert_int_equal(r.abi_used, abi);
    assert_int_equal(r.read_etc, 0);
    assert_int_equal(r.write_etc, EACCES);
    assert_int_equal(r.create_etc, EACCES);
    assert_int_equal(r.list_root, EACCES);
    assert_int_equal(r.write_tmp, 0);
    assert_int_equal(r.exec_usr, 0);
    assert_int_equal(r.devnull, EACCES); /* /dev not listed */
    assert_int_equal(r.tty_old, 0);      /* opened before: untouched */
    assert_int_equal(r.tty_new, EACCES);
    if (abi >= 4) {
        assert_int_equal(r.connect, EACCES);
        assert_int_equal(r.bind, EACCES);
    } else {
        assert_int_equal(r.connect, 0);
    }
    if (abi >= 6) {
        assert_int_equal(r.signal, EPERM);
        assert_int_equal(r.abstract, EPERM);
    } else {
        assert_int_equal(r.signal, 0);
        assert_int_equal(r.abstract, 0);
    }
}

/* "/dev" in rw: /dev/null writable, a new tty opens and answers ioctls
 * (ioctl_dev is handled from ABI 5 and granted by the rw rule);
 * allow_network: TCP is not handled. */
static void test_dev_and_network(void **state)
{
    char dir[] = "/tmp/vs-landlock-XXXXXX", name[64];
    const char *ro[] = { "/usr", "/etc", NULL };
    const char *rw[] = { dir, "/dev", NULL };
    struct ll_case c = { ro, rw, true, true, 0, name, dir };
    struct ll_report r;
    int tcp, unx, abi = vs_landlock_abi();

    (void)state;
    require_root();
    assert_true(abi > 0);
    assert_non_null(mkdtemp(dir));
    listeners(&tcp, &c.port, &unx, name, sizeof(name));
    r = run_case(&c, true);
    close(tcp);
    close(unx);
    rm_dir(dir);

    assert_int_equal(r.apply_rc, 0);
    assert_int_equal(r.devnull, 0);
    assert_int_equal(r.tty_old, 0);
    assert_int_equal(r.tty_new, 0);
    assert_int_equal(r.connect, 0);
    assert_int_equal(r.bind, 0);
    assert_int_equal(r.create_etc, EACCES); /* the filesystem is still walled */
}

/* Without no_new_privs the call refuses before touching anything, even
 * for root (whom the kernel itself would let through). */
static void test_requires_nnp(void **state)
{
    const char *rw[] = { "/tmp", NULL };
    struct ll_case c = { NULL, rw, false, false, 0, "x", "/tmp" };
    struct ll_report r;

    (void)state;
    assert_true(vs_landlock_abi() > 0);
    r = run_case(&c, false);
    assert_int_equal(r.apply_rc, -EPERM);
    assert_int_equal(r.abi_used, 0);
}

/* A path that cannot be opened for another reason than not existing
 * (here ENAMETOOLONG) is a setup error, not something to skip. */
static void test_unopenable_path_is_error(void **state)
{
    static char longp[5000];
    const char *ro[] = { longp, NULL };
    struct ll_case c = { ro, NULL, false, true, 0, "x", "/tmp" };
    struct ll_report r;

    (void)state;
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    r = run_case(&c, false);
    assert_int_equal(r.apply_rc, -ENAMETOOLONG);
    assert_int_equal(r.abi_used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi),
        cmocka_unit_test(test_restrict),
        cmocka_unit_test(test_dev_and_network),
        cmocka_unit_test(test_requires_nnp),
        cmocka_unit_test(test_unopenable_path_is_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
