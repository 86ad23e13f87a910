/*
 * test_podman.c - vs-sandbox's seccomp presets as Podman sees them: the
 * profile `vs-sandbox seccomp-export` writes is given to
 * `podman --runtime runc run --security-opt seccomp=FILE`, and a probe
 * inside the container (tests/sandbox/podman_probe.c, static, alone in a
 * temporary root file system) reports what the filter does:
 *
 *   minimal, compute   Seccomp: 2, socket(AF_INET) fails with EPERM (a named
 *                      denial: EPERM in the OCI profile, where vs-sandbox's
 *                      own supervisor would have named it)
 *   network            Seccomp: 2, socket(AF_INET) works
 *
 * Podman and runc are required, not optional: without them this test
 * FAILS and says what to install (CI installs both). runc, because crun
 * does not work on hybrid-cgroup hosts like ours. No image is pulled
 * (--rootfs), no network is set up (--network none: the socket is only
 * created, never connected), and the ulimits are below the hard limits of
 * small VMs (Podman's defaults are not). Every podman run has a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"

#ifndef VS_SANDBOX_BIN
#error "vs-sandbox is not built (sandboxd/vs-sandbox.c)"
#endif
#ifndef VS_PODMAN_PROBE_BIN
#error "podman_probe is not built (tests/sandbox/podman/CMakeLists.txt)"
#endif

#define PODMAN_DEADLINE_MS 120000
#define INSTALL_HINT "apt-get install -y podman runc (CI installs them; this test does not skip)"

static struct {
    bool ready;
    char podman[256];
    char dir[64];       /* mkdtemp: the profiles and the outputs */
    char rootfs[96];    /* dir/rootfs, 0755: just /probe */
    int runs;
} fx;


static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    size_t n = f != NULL ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f != NULL)
        fclose(f);
}

/* Run argv (argv[0] absolute) with a deadline; its stdout and stderr land
 * in out. Returns the wait status, or -1 when it had to be killed. */
static int run_cmd(const char *const *argv, char *out, size_t size)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/run-%d.log", fx.dir, fx.runs++);
    pid_t pid = vs_proc_spawn(argv, NULL, log);
    assert_true(pid > 0);
    int st = vs_proc_wait(pid, PODMAN_DEADLINE_MS);
    if (st == -ETIMEDOUT) {
        vs_proc_kill(pid);
        st = -1;
    }
    slurp(log, out, size);
    return st;
}

/* Podman, runc, the probe's root file system: once, and a failure (not a
 * skip) when anything is missing. */
static void fixture(void)
{
    if (fx.ready)
        return;
    char runc[256];
    if (!vs_find_program("podman", fx.podman, sizeof(fx.podman)))
        fail_msg("podman is not installed: " INSTALL_HINT);
    if (!vs_find_program("runc", runc, sizeof(runc)))
        fail_msg("runc is not installed (crun does not work on hybrid-cgroup hosts): " INSTALL_HINT);
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/vs-podman-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.rootfs, sizeof(fx.rootfs), "%s/rootfs", fx.dir);
    char probe[160];
    snprintf(probe, sizeof(probe), "%s/probe", fx.rootfs);
    if (mkdir(fx.rootfs, 0755) < 0 || chmod(fx.rootfs, 0755) < 0 ||
        vs_copy_file(VS_PODMAN_PROBE_BIN, probe, 0755) < 0)
        fail_msg("cannot build the container's root file system in %s: %s", fx.rootfs,
                 strerror(errno));
    fx.ready = true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    if (fx.dir[0] != '\0')
        nftw(fx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Export preset, run the probe under it in Podman; the probe's output in
 * out. */
static void probe_with(const char *preset, char *out, size_t size)
{
    fixture();
    char profile[128], msg[4096];
    snprintf(profile, sizeof(profile), "%s/%s.json", fx.dir, preset);
    const char *export[] = {VS_SANDBOX_BIN, "seccomp-export", "--preset", preset, "-o", profile,
                            NULL};
    int st = run_cmd(export, msg, sizeof(msg));
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("vs-sandbox seccomp-export --preset %s failed (status %d): %s", preset, st, msg);
    char secopt[160];
    snprintf(secopt, sizeof(secopt), "seccomp=%s", profile);
    const char *podman[] = {fx.podman, "--runtime", "runc", "run", "--rm", "--network", "none",
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                            "--security-opt", secopt, "--rootfs", fx.rootfs, "/probe", "socket",
                            NULL};
    st = run_cmd(podman, out, size);
    print_message("podman --runtime runc, %s profile: status %d\n%s", preset, st, out);
    if (st < 0)
        fail_msg("podman did not finish within %d ms", PODMAN_DEADLINE_MS);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("podman --runtime runc run ... --security-opt seccomp=<%s> --rootfs %s /probe "
                 "failed (status %d); its output:\n%s\n(podman and runc must work here: "
                 INSTALL_HINT ")",
                 preset, fx.rootfs, st, out);
    if (strstr(out, "SECCOMP 2\n") == NULL)
        fail_msg("the probe did not run under a seccomp filter (want \"SECCOMP 2\"):\n%s", out);
}

static void test_minimal_denies_socket_with_eperm(void **state)
{
    (void)state;
    char out[16384];
    probe_with("minimal", out, sizeof(out));
    if (strstr(out, "SOCKET EPERM\n") == NULL)
        fail_msg("socket(AF_INET) under the minimal profile: want EPERM, got:\n%s", out);
}

static void test_compute_denies_socket_with_eperm(void **state)
{
    (void)state;
    char out[16384];
    probe_with("compute", out, sizeof(out));
    if (strstr(out, "SOCKET EPERM\n") == NULL)
        fail_msg("socket(AF_INET) under the compute profile: want EPERM, got:\n%s", out);
}

static void test_network_allows_socket(void **state)
{
    (void)state;
    char out[16384];
    probe_with("network", out, sizeof(out));
    if (strstr(out, "SOCKET OK\n") == NULL)
        fail_msg("socket(AF_INET) under the network profile: want OK, got:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_denies_socket_with_eperm),
        cmocka_unit_test(test_compute_denies_socket_with_eperm),
        cmocka_unit_test(test_network_allows_socket),
    };
    return cmocka_run_group_tests_name("podman", tests, NULL, teardown_group);
}
