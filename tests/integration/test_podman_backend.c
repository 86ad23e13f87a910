/*
 * test_podman_backend.c - the Podman backend (vs/podman.h) against a real
 * podman and runc: a busybox root file system made here is imported by its
 * content digest, and each test runs a program in it under a policy and
 * checks what came back:
 *
 *   import     the image is named by digest, reused, and refused under a
 *              digest that is not its own;
 *   exit       the program's status, exactly the policy's environment, a
 *              cgroup limit mode;
 *   identity   uid/gid 1000, no capabilities, no_new_privs, a seccomp
 *              filter, read-only root, writable /workspace as cwd;
 *   network    none: only lo, and the host's 127.0.0.1 listener is not
 *              reachable (with the network preset, so sockets work);
 *   limits     memory (an OOM kill named "memory", a SIGKILL of its own
 *              not), pids (a fork bomb stopped, "pids"), wall clock (sleep
 *              60 ends within seconds);
 *   fd 3       the command channel, both ways;
 *   snapshot   the ustar of /workspace/out holds the file and not the
 *              symlink to /etc/passwd, and no other descriptor leaks in;
 *   setup      a missing program is a setup error;
 *   CLI        vs-sandbox run --backend podman --image DIR: status, --json.
 *
 * Podman and runc are required, as in test_podman.c: without them this
 * test FAILS and says what to install. No image is pulled. Every run is
 * bounded: each policy has a wall-clock limit, vs_podman_run kills the
 * container (podman kill by name) 60 s after it, podman's --timeout 30 s
 * after it, and should this process die, the container's init sees its
 * report socket close and ends the container. The image (unique to this
 * run: the rootfs holds the scratch directory's name) is removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "proc.h"
#include "vs/image.h"
#include "vs/podman.h"
#include "vs/sandbox.h"

#ifndef VS_SANDBOX_BIN
#error "vs-sandbox is not built (sandboxd/vs-sandbox.c)"
#endif
#ifndef VS_CONTAINER_INIT_BIN
#error "vs-container-init is not built (sandboxd/CMakeLists.txt)"
#endif

#define INSTALL_HINT "apt-get install -y podman runc (CI installs them; this test does not skip)"
#define LIMIT_MS 20000 /* every run's wall-clock limit */
#define CMD_DEADLINE_MS 60000
#define LONG_NAME                                                                                 \
    "a-file-whose-name-is-longer-than-the-hundred-bytes-a-ustar-header-holds-"                   \
    "so-that-the-image-needs-a-pax-header-for-it.txt"

static const char *const applets[] = {"sh", "cat", "echo", "env", "id", "grep", "pwd", "ls",
                                      "ln", "sleep", "dd", "nc", "true", NULL};

static struct {
    bool ready;
    char podman[256];
    char *dir;                         /* scratch: the rootfs, outputs */
    char *rootfs;
    char digest[VS_IMAGE_DIGEST_LEN];
    char id[VS_PODMAN_IMAGE_ID_LEN];
    int runs;
} fx;


/* podman, runc, vs-container-init, and the image: once. A failure, not a
 * skip, when anything is missing. */
static void fixture(void)
{
    if (fx.ready)
        return;
    char runc[256], busybox[256];
    if (!vs_find_program("podman", fx.podman, sizeof(fx.podman)))
        fail_msg("podman is not installed: " INSTALL_HINT);
    if (!vs_find_program("runc", runc, sizeof(runc)))
        fail_msg("runc is not installed (crun does not work on hybrid-cgroup hosts): "
                 INSTALL_HINT);
    if (!vs_find_program("busybox", busybox, sizeof(busybox)))
        fail_msg("busybox is not installed: apt-get install -y busybox-static");
    setenv("VS_CONTAINER_INIT", VS_CONTAINER_INIT_BIN, 1);

    /* A root file system: a static busybox and its applets, the mount
     * points' parents, and a file that makes this run's digest its own. */
    fx.dir = vs_scratch_dir("vs-podman-backend");
    assert_non_null(fx.dir);
    assert_int_equal(chmod(fx.dir, 0755), 0);
    fx.rootfs = vs_path(fx.dir, "rootfs");
    char path[512];
    assert_int_equal(mkdir(fx.rootfs, 0755), 0);
    static const char *const dirs[] = {"bin", "etc", "proc", "dev", "tmp", "workspace", NULL};
    for (const char *const *d = dirs; *d != NULL; d++) {
        snprintf(path, sizeof(path), "%s/%s", fx.rootfs, *d);
        assert_int_equal(mkdir(path, 0755), 0);
    }
    snprintf(path, sizeof(path), "%s/bin/busybox", fx.rootfs);
    if (vs_copy_file(busybox, path, 0755) < 0)
        fail_msg("cannot copy %s into the root file system: %s", busybox, strerror(errno));
    for (const char *const *a = applets; *a != NULL; a++) {
        snprintf(path, sizeof(path), "%s/bin/%s", fx.rootfs, *a);
        assert_int_equal(symlink("busybox", path), 0);
    }
    snprintf(path, sizeof(path), "%s/etc/passwd", fx.rootfs);
    assert_int_equal(vs_write_file(path, "root:x:0:0:root:/:/bin/sh\n"
                                         "agent:x:1000:1000::/workspace:/bin/sh\n"),
                     0);
    /* Names that ustar cannot hold (the import writes pax headers). */
    snprintf(path, sizeof(path), "%s/etc/%s", fx.rootfs, LONG_NAME);
    assert_int_equal(vs_write_file(path, "long name\n"), 0);
    snprintf(path, sizeof(path), "%s/etc/long-link", fx.rootfs);
    assert_int_equal(symlink("/etc/" LONG_NAME, path), 0);
    snprintf(path, sizeof(path), "%s/etc/vs-test-run", fx.rootfs);
    assert_int_equal(vs_write_file(path, "%s\n", fx.dir), 0);
    assert_int_equal(vs_image_digest_dir(fx.rootfs, fx.digest), 0);

    char why[512] = "";
    int rc = vs_podman_image_import(fx.rootfs, fx.digest, fx.id, sizeof(fx.id), why, sizeof(why));
    if (rc < 0)
        fail_msg("vs_podman_image_import: %s (%s); podman and runc must work here: " INSTALL_HINT,
                 strerror(-rc), why);
    fx.ready = true;
}

static int teardown_group(void **state)
{
    (void)state;
    if (fx.ready) {
        char tag[192];
        snprintf(tag, sizeof(tag), "localhost/vs-image:%s", fx.digest + 7);
        const char *argv[] = {fx.podman, "rmi", tag, NULL};
        pid_t pid = vs_proc_spawn(argv, NULL, NULL);
        if (pid > 0 && vs_proc_wait(pid, CMD_DEADLINE_MS) == -ETIMEDOUT)
            vs_proc_kill(pid);
    }
    vs_scratch_free(fx.dir);
    free(fx.rootfs);
    return 0;
}

static void policy(struct vs_sandbox_policy *p)
{
    vs_sandbox_policy_init(p);
    p->time_limit_ms = LIMIT_MS;
}

/* Run sh -c script under p; its stdout and stderr come back in out
 * (malloc'd). Returns vs_podman_run's result. */
static int run_sh(struct vs_sandbox_policy *p, const char *script, int snapshot_fd,
                  struct vs_sandbox_result *r, char **out)
{
    fixture();
    char name[32];
    snprintf(name, sizeof(name), "out-%d", fx.runs++);
    char *path = vs_path(fx.dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    p->stdout_fd = fd;
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    int rc = vs_podman_run(p, fx.id, argv, snapshot_fd, 1 << 20, r);
    close(fd);
    *out = vs_slurp(path);
    print_message("status %d (%s), kill reason %s, wall %llu ms%s%s\n%s", vs_sandbox_exit_status(r),
                  strerror(-rc), vs_kill_reason_name(r->kill_reason),
                  (unsigned long long)r->wall_ms, r->setup_error[0] ? ": " : "", r->setup_error,
                  *out);
    free(path);
    return rc;
}

static void test_import_by_digest(void **state)
{
    (void)state;
    fixture();
    assert_int_equal(strncmp(fx.id, "sha256:", 7), 0);
    assert_int_equal(strlen(fx.id), 7 + 64);
    /* Imported once: the same image again, by its name. */
    char id[VS_PODMAN_IMAGE_ID_LEN], why[512] = "";
    assert_int_equal(vs_podman_image_import(fx.rootfs, fx.digest, id, sizeof(id), why, sizeof(why)),
                     0);
    assert_string_equal(id, fx.id);
    /* A digest that is not the tree's names nothing. */
    char wrong[VS_IMAGE_DIGEST_LEN] = "sha256:";
    memset(wrong + 7, '0', 64);
    wrong[71] = '\0';
    assert_int_equal(vs_podman_image_import(fx.rootfs, wrong, id, sizeof(id), why, sizeof(why)),
                     -EBADMSG);
    assert_non_null(strstr(why, "digest mismatch"));
    assert_int_equal(vs_podman_image_import(fx.rootfs, "latest", id, sizeof(id), why, sizeof(why)),
                     -EINVAL);
}

static void test_exit_status_and_environment(void **state)
{
    (void)state;
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.env[p.n_env++] = "GREETING=hello world";
    p.env[p.n_env++] = "EMPTY=";
    char *out;
    /* env, not sh: sh would add PWD and friends */
    assert_int_equal(run_sh(&p, "/bin/env; exit 7", -1, &r, &out), 0);
    free(out);
    assert_int_equal(r.exit_code, 7);
    assert_int_equal(vs_sandbox_exit_status(&r), 7);
    assert_int_equal(r.kill_reason, VS_KILL_NONE);
    assert_true(r.limit_mode == VS_LIMITS_CGROUP_V1 || r.limit_mode == VS_LIMITS_CGROUP_V2);

    fixture();
    char *path = vs_path(fx.dir, "env");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    p.stdout_fd = fd;
    char *argv[] = {"env", NULL}; /* looked up in /usr/local/bin:/usr/bin:/bin */
    assert_int_equal(vs_podman_run(&p, fx.id, argv, -1, 0, &r), 0);
    close(fd);
    out = vs_slurp(path);
    assert_string_equal(out, "GREETING=hello world\nEMPTY=\n");
    assert_int_equal(r.exit_code, 0);
    free(out);
    free(path);
}

static void test_identity_and_file_system(void **state)
{
    (void)state;
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    char *out;
    assert_int_equal(run_sh(&p,
                            "id -u; id -g;"
                            "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status;"
                            "pwd;"
                            "if echo x > /etc/x; then echo ETC-WRITABLE; else echo etc-ro; fi;"
                            "echo y > /workspace/y && echo workspace-rw;"
                            "echo t > /tmp/t && echo tmp-rw;"
                            "cat /etc/long-link",
                            -1, &r, &out),
                     0);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(out, "1000\n1000\n"));
    assert_non_null(strstr(out, "CapEff:\t0000000000000000\n"));
    assert_non_null(strstr(out, "NoNewPrivs:\t1\n"));
    assert_non_null(strstr(out, "Seccomp:\t2\n"));
    assert_non_null(strstr(out, "\n/workspace\n"));
    assert_non_null(strstr(out, "etc-ro\n"));
    assert_null(strstr(out, "ETC-WRITABLE"));
    assert_non_null(strstr(out, "workspace-rw\n"));
    assert_non_null(strstr(out, "tmp-rw\nlong name\n"));
    assert_int_equal(r.host_uid, geteuid() == 0 ? 1000u : 0u);
    free(out);
}

static void test_no_network(void **state)
{
    (void)state;
    /* A listener on the host's loopback: the container must not reach it. */
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 4), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    char script[256];
    snprintf(script, sizeof(script),
             "ls /sys/class/net; if nc 127.0.0.1 %d </dev/null 2>/dev/null; "
             "then echo REACHED; else echo refused; fi",
             ntohs(a.sin_port));
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.preset = VS_PRESET_NETWORK; /* sockets allowed: only the namespace stops them */
    char *out;
    assert_int_equal(run_sh(&p, script, -1, &r, &out), 0);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(out, "lo\nrefused\n");
    assert_true(accept(ls, NULL, NULL) < 0 && errno == EAGAIN);
    close(ls);
    free(out);
}

static void test_memory_limit(void **state)
{
    (void)state;
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.memory_bytes = 32u << 20;
    char *out;
    /* A SIGKILL that is not the OOM killer's is not a memory kill. */
    assert_int_equal(run_sh(&p, "kill -9 $$", -1, &r, &out), 0);
    assert_int_equal(r.signal, 9);
    assert_int_equal(r.kill_reason, VS_KILL_NONE);
    free(out);
    /* dd fills a 96 MiB buffer (exec: the program itself is what is killed) */
    assert_int_equal(run_sh(&p, "exec dd if=/dev/zero of=/dev/null bs=96M count=1", -1, &r, &out),
                     0);
    assert_int_equal(r.kill_reason, VS_KILL_MEMORY);
    assert_int_equal(r.signal, 9);
    assert_int_equal(vs_sandbox_exit_status(&r), VS_SANDBOX_EXIT_MEMORY);
    assert_null(strstr(out, "records out"));
    assert_true(r.peak_memory_bytes > 16u << 20);
    free(out);
}

static void test_pids_limit_stops_a_fork_bomb(void **state)
{
    (void)state;
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.pids = 16;
    char *out;
    /* The bomb in a subshell (ash exits when a fork fails), then a
     * program that stays: the stop comes from init seeing the limit hit,
     * not from the bomb's collapse. */
    assert_int_equal(run_sh(&p, "(b() { b & b & wait; }; b); exec sleep 30", -1, &r, &out), 0);
    assert_int_equal(r.kill_reason, VS_KILL_PIDS);
    assert_true(r.pids_limit_hit);
    assert_int_equal(vs_sandbox_exit_status(&r), VS_SANDBOX_EXIT_PIDS);
    assert_true(r.wall_ms < 10000);
    free(out);
}

static void test_wall_clock_limit(void **state)
{
    (void)state;
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.time_limit_ms = 1000;
    char *out;
    assert_int_equal(run_sh(&p, "sleep 60", -1, &r, &out), 0);
    assert_int_equal(r.kill_reason, VS_KILL_TIME);
    assert_int_equal(vs_sandbox_exit_status(&r), VS_SANDBOX_EXIT_TIME);
    assert_true(r.wall_ms >= 1000 && r.wall_ms < 8000); /* podman's start-up included */
    free(out);
}

static void test_command_channel_is_fd_3(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[0], "ping\n", 5), 5);
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    p.command_fd = sv[1];
    char *out;
    assert_int_equal(run_sh(&p, "read -r line <&3; echo \"got $line\" >&3", -1, &r, &out), 0);
    close(sv[1]);
    assert_int_equal(r.exit_code, 0);
    char buf[64] = "";
    struct pollfd pfd = {.fd = sv[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    ssize_t n = read(sv[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    assert_string_equal(buf, "got ping\n");
    close(sv[0]);
    free(out);
}

/* The entries of a ustar stream in a file: "name size\n" each, and the
 * content of want into content. */
static void list_tar(int fd, char *list, size_t size, const char *want, char *content, size_t csize)
{
    struct archive *a = archive_read_new();
    assert_non_null(a);
    archive_read_support_format_tar(a);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(archive_read_open_fd(a, fd, 10240), ARCHIVE_OK);
    struct archive_entry *e;
    size_t len = 0;
    list[0] = content[0] = '\0';
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        len += (size_t)snprintf(list + len, size - len, "%s %lld\n", archive_entry_pathname(e),
                                (long long)archive_entry_size(e));
        assert_true(len < size);
        if (strcmp(archive_entry_pathname(e), want) == 0) {
            la_ssize_t n = archive_read_data(a, content, csize - 1);
            content[n > 0 ? n : 0] = '\0';
        }
    }
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);
}

static void test_snapshot_takes_files_not_symlinks(void **state)
{
    (void)state;
    fixture();
    char *path = vs_path(fx.dir, "snapshot.tar");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    char *out;
    assert_int_equal(run_sh(&p,
                            "echo 'the deliverable' > /workspace/out/a.txt;"
                            "ln -s /etc/passwd /workspace/out/passwd;"
                            "for f in 4 5 6 7 8 9; do"
                            "  [ -e /proc/self/fd/$f ] && echo LEAK $f;"
                            "done;"
                            "exit 0",
                            fd, &r, &out),
                     0);
    assert_int_equal(r.exit_code, 0);
    assert_null(strstr(out, "LEAK"));
    char list[1024], content[256];
    list_tar(fd, list, sizeof(list), "a.txt", content, sizeof(content));
    print_message("snapshot:\n%s", list);
    assert_non_null(strstr(list, "a.txt 16\n"));
    assert_string_equal(content, "the deliverable\n");
    assert_null(strstr(list, "passwd"));
    list_tar(fd, list, sizeof(list), ".vs-snapshot", content, sizeof(content));
    assert_non_null(strstr(content, "files 1\n"));
    assert_non_null(strstr(content, "skipped 1\n"));
    close(fd);
    free(path);
    free(out);
}

static void test_missing_program_is_a_setup_error(void **state)
{
    (void)state;
    fixture();
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    policy(&p);
    char *argv[] = {"/no/such/program", NULL};
    assert_int_equal(vs_podman_run(&p, fx.id, argv, -1, 0, &r), -EIO);
    assert_non_null(strstr(r.setup_error, "/no/such/program"));
    assert_int_equal(vs_sandbox_exit_status(&r), VS_SANDBOX_EXIT_SETUP);
    /* an image named by a tag is refused: runs take the ID */
    assert_int_equal(vs_podman_run(&p, "localhost/vs-image:latest", argv, -1, 0, &r), -EINVAL);
}

/* vs-sandbox run --backend podman: the same exit status and --json result
 * as the native path; vs-container-init found next to vs-sandbox (the
 * environment names no other). */
static void test_cli_backend_podman(void **state)
{
    (void)state;
    fixture();
    char *out = vs_path(fx.dir, "cli.out"), *err = vs_path(fx.dir, "cli.err");
    const char *argv[] = {VS_SANDBOX_BIN, "run", "--backend", "podman", "--image", fx.rootfs,
                          "--json", "--time-limit", "20", "--setenv", "A", "b", "--",
                          "/bin/sh", "-c", "echo \"out $A\"; exit 3", NULL};
    const char *env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    struct vs_spawn sp = {.argv = argv, .env = env, .out = out, .err = err};
    pid_t pid = vs_proc_start(&sp);
    assert_true(pid > 0);
    struct vs_run r;
    vs_run_finish(pid, CMD_DEADLINE_MS, NULL, NULL, out, err, &r);
    print_message("vs-sandbox: status %d\n%s%s", r.status, r.out, r.err);
    assert_int_equal(r.status, 3);
    assert_string_equal(r.out, "out b\n");
    assert_non_null(strstr(r.err, "\"exit_code\":3,"));
    assert_non_null(strstr(r.err, "\"kill_reason\":\"none\""));
    assert_non_null(strstr(r.err, "\"mode\":\"cgroup-v"));
    assert_non_null(strstr(r.err, "\"status\":3"));
    vs_run_free(&r);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_by_digest),
        cmocka_unit_test(test_exit_status_and_environment),
        cmocka_unit_test(test_identity_and_file_system),
        cmocka_unit_test(test_no_network),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_pids_limit_stops_a_fork_bomb),
        cmocka_unit_test(test_wall_clock_limit),
        cmocka_unit_test(test_command_channel_is_fd_3),
        cmocka_unit_test(test_snapshot_takes_files_not_symlinks),
        cmocka_unit_test(test_missing_program_is_a_setup_error),
        cmocka_unit_test(test_cli_backend_podman),
    };
    return cmocka_run_group_tests_name("podman backend", tests, NULL, teardown_group);
}
