/*
 * vs-sandbox.c - the launcher's command line, in the spirit of bwrap:
 *
 *   vs-sandbox run [options] -- PROG ARGS...
 *   vs-sandbox seccomp-export --preset P [-o FILE]
 *
 * It exits with the program's own status, 128+signal when a signal killed
 * it, or a documented code >= 200 for a setup failure or a policy kill, so
 * scripts can tell "the agent failed" from "the sandbox stopped it".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "seccomp_policy.h"
#include "vs/config.h"
#include "vs/image.h"
#include "vs/podman.h"
#include "vs/sandbox.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: vs-sandbox run [options] -- PROG [ARGS...]\n"
        "       vs-sandbox seccomp-export --preset P [-o FILE]\n"
        "       vs-sandbox image-digest [--cache DIR] PATH\n"
        "\n"
        "Run PROG in a throw-away sandbox: new user, pid, mount, net, ipc, uts and cgroup\n"
        "namespaces; uid 1000 inside, an unprivileged host uid outside (never host root);\n"
        "a read-only root; tmpfs /workspace (with /workspace/out), /tmp and /dev/shm; a\n"
        "minimal /dev; a fresh /proc with sensitive paths masked; no /sys; no capabilities;\n"
        "no_new_privs; Landlock where the kernel has it; a default-deny seccomp preset.\n"
        "\n"
        "run options:\n"
        "  --rootfs DIR           root file system (default: the host's /usr, /bin, /lib*,\n"
        "                         read-only, and a minimal /etc naming the agent user)\n"
        "  --ro-bind SRC DST      bind host SRC read-only at DST (repeatable)\n"
        "  --preset P             minimal (default): computation and file I/O, no sockets,\n"
        "                         no threads; compute: minimal + threads, futex,\n"
        "                         scheduling; network: compute + AF_UNIX/INET/INET6 sockets\n"
        "  --seccomp-log          log the preset's denials and let them through (the\n"
        "                         always-blocked calls stay blocked)\n"
        "  --time-limit SECONDS   wall-clock limit; kills the whole sandbox\n"
        "  --cpu-limit SECONDS    cpu-time limit (RLIMIT_CPU)\n"
        "  --mem MIB              memory limit. With a cgroup (v2 where delegated, v1 where\n"
        "                         writable, e.g. as root here) it bounds the sandbox's\n"
        "                         resident memory and an excess is an OOM kill reported as\n"
        "                         'memory'; with rlimits only it is RLIMIT_AS per process\n"
        "                         (address space: allocations fail, nothing is killed)\n"
        "  --pids N               process limit. With a cgroup, reaching it stops the\n"
        "                         sandbox ('pids'); with rlimits only it is RLIMIT_NPROC of\n"
        "                         the host uid (forks fail)\n"
        "  --workspace-size MIB   size of the /workspace tmpfs (64)\n"
        "  --tmp-size MIB         size of /tmp and of /dev/shm (16)\n"
        "  --nofile N             RLIMIT_NOFILE (256)\n"
        "  --setenv NAME VALUE    the only environment the program gets (repeatable)\n"
        "  --chdir DIR            working directory inside (/workspace)\n"
        "  --command-fd FD        pass FD as the program's fd 3 (the command channel)\n"
        "  --snapshot FILE        when the program has ended, write the regular files of\n"
        "                         /workspace/out to FILE as ustar, taken inside the sandbox\n"
        "                         (symlinks are never followed)\n"
        "  --snapshot-max MIB     content the snapshot holds at most (64)\n"
        "  --json                 print the result as one JSON object on stderr\n"
        "  --backend podman       run in a Podman (runc) container of --image instead, with\n"
        "                         the same policy (vs/podman.h; no --rootfs, --seccomp-log)\n"
        "  --image DIR            the root file system for --backend podman: imported once\n"
        "                         as localhost/vs-image:<content digest>, never pulled\n"
        "\n"
        "exit status:\n"
        "  N        the program's own exit status\n"
        "  128+S    the program was killed by signal S\n"
        "  200      the sandbox could not be set up (the message says why)\n"
        "  201      wall-clock limit reached\n"
        "  202      memory limit reached (cgroup OOM kill)\n"
        "  203      pids limit reached\n"
        "  204      killed by the seccomp filter (a foreign-ABI system call)\n"
        "  205      cpu-time limit reached\n"
        "  210      usage error\n");
}

static int parse_u64(const char *s, uint64_t scale, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > UINT64_MAX / scale)
        return -EINVAL;
    *out = v * scale;
    return 0;
}

static void print_json(const struct vs_sandbox_policy *p, const struct vs_sandbox_result *r)
{
    json_t *denied = json_array();
    for (size_t i = 0; i < r->n_denied; i++)
        json_array_append_new(denied, json_string(r->denied[i]));
    json_t *limits = json_pack(
        "{s:s, s:I, s:I, s:I, s:i, s:I, s:I, s:i, s:s}", "mode", vs_limit_mode_name(r->limit_mode),
        "time_limit_ms", (json_int_t)p->time_limit_ms, "cpu_limit_ms", (json_int_t)p->cpu_limit_ms,
        "memory_bytes", (json_int_t)p->memory_bytes, "pids", (int)p->pids, "workspace_bytes",
        (json_int_t)p->workspace_bytes, "tmp_bytes", (json_int_t)p->tmp_bytes, "nofile",
        (int)p->nofile, "preset", vs_preset_name(p->preset));
    json_t *j = json_pack("{s:i, s:i, s:s, s:o, s:o, s:i, s:I, s:b, s:I, s:I, s:I, s:i}",
                          "exit_code", r->exit_code, "signal", r->signal, "kill_reason",
                          vs_kill_reason_name(r->kill_reason), "denied_syscalls", denied,
                          "limits", limits, "landlock_abi", r->landlock_abi, "host_uid",
                          (json_int_t)r->host_uid, "pids_limit_hit", r->pids_limit_hit,
                          "wall_ms", (json_int_t)r->wall_ms, "cpu_ms", (json_int_t)r->cpu_ms,
                          "peak_memory_bytes", (json_int_t)r->peak_memory_bytes, "status",
                          vs_sandbox_exit_status(r));
    if (j != NULL && r->setup_error[0] != '\0')
        json_object_set_new(j, "setup_error", json_string(r->setup_error));
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text != NULL)
        fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(j);
}

/* --backend podman: the image of rootfs (imported once, named by its
 * content digest), then the run. */
static int run_podman(const struct vs_sandbox_policy *p, const char *rootfs, char *const argv[],
                      struct vs_sandbox_result *r)
{
    char digest[VS_IMAGE_DIGEST_LEN], id[VS_PODMAN_IMAGE_ID_LEN], why[256] = "";
    int rc = vs_image_digest_dir(rootfs, digest);
    if (rc < 0)
        snprintf(why, sizeof(why), "cannot hash it: %s", strerror(-rc));
    else
        rc = vs_podman_image_import(rootfs, digest, id, sizeof(id), why, sizeof(why));
    if (rc == 0)
        return vs_podman_run(p, id, argv, p->snapshot_fd, p->snapshot_max_bytes, r);
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    snprintf(r->setup_error, sizeof(r->setup_error), "image %s: %s", rootfs, why);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    enum { O_ROOTFS = 256, O_ROBIND, O_PRESET, O_LOG, O_TIME, O_CPU, O_MEM, O_PIDS, O_WS,
           O_TMP, O_NOFILE, O_SETENV, O_CHDIR, O_CMDFD, O_JSON, O_HELP, O_SNAP, O_SNAPMAX,
           O_BACKEND, O_IMAGE };
    static const struct option opts[] = {
        {"rootfs", required_argument, NULL, O_ROOTFS}, {"ro-bind", required_argument, NULL, O_ROBIND},
        {"preset", required_argument, NULL, O_PRESET}, {"seccomp-log", no_argument, NULL, O_LOG},
        {"time-limit", required_argument, NULL, O_TIME}, {"cpu-limit", required_argument, NULL, O_CPU},
        {"mem", required_argument, NULL, O_MEM},       {"pids", required_argument, NULL, O_PIDS},
        {"workspace-size", required_argument, NULL, O_WS}, {"tmp-size", required_argument, NULL, O_TMP},
        {"nofile", required_argument, NULL, O_NOFILE}, {"setenv", required_argument, NULL, O_SETENV},
        {"chdir", required_argument, NULL, O_CHDIR},   {"command-fd", required_argument, NULL, O_CMDFD},
        {"json", no_argument, NULL, O_JSON},           {"help", no_argument, NULL, O_HELP},
        {"snapshot", required_argument, NULL, O_SNAP}, {"snapshot-max", required_argument, NULL, O_SNAPMAX},
        {"backend", required_argument, NULL, O_BACKEND}, {"image", required_argument, NULL, O_IMAGE},
        {NULL, 0, NULL, 0}};
    struct vs_sandbox_policy p;
    vs_sandbox_policy_init(&p);
    p.snapshot_max_bytes = 64u << 20;
    const char *snapshot = NULL;
    bool json = false, podman = false;
    const char *image = NULL;
    static char env_store[VS_SANDBOX_MAX_ENV][4096];
    int opt;
    uint64_t v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_ROOTFS: p.rootfs = optarg; break;
        case O_ROBIND:
            if (optind >= argc || p.n_ro_binds == VS_SANDBOX_MAX_BINDS || optarg[0] != '/' ||
                argv[optind][0] != '/') {
                fprintf(stderr, "vs-sandbox: --ro-bind needs two absolute paths (at most %d)\n",
                        VS_SANDBOX_MAX_BINDS);
                return VS_SANDBOX_EXIT_USAGE;
            }
            p.ro_binds[p.n_ro_binds].src = optarg;
            p.ro_binds[p.n_ro_binds++].dst = argv[optind++];
            break;
        case O_PRESET: bad = vs_preset_parse(optarg, &p.preset); break;
        case O_LOG: p.seccomp_log = true; break;
        case O_TIME: bad = parse_u64(optarg, 1000, &p.time_limit_ms); break;
        case O_CPU: bad = parse_u64(optarg, 1000, &p.cpu_limit_ms); break;
        case O_MEM: bad = parse_u64(optarg, 1 << 20, &p.memory_bytes); break;
        case O_PIDS: bad = parse_u64(optarg, 1, &v) || v == 0 || v > 1 << 20; p.pids = (uint32_t)v; break;
        case O_WS: bad = parse_u64(optarg, 1 << 20, &p.workspace_bytes) || p.workspace_bytes == 0; break;
        case O_TMP: bad = parse_u64(optarg, 1 << 20, &p.tmp_bytes) || p.tmp_bytes == 0; break;
        case O_NOFILE: bad = parse_u64(optarg, 1, &v) || v < 8 || v > 1 << 20; p.nofile = (uint32_t)v; break;
        case O_SETENV:
            if (optind >= argc || p.n_env == VS_SANDBOX_MAX_ENV || strchr(optarg, '=') != NULL ||
                optarg[0] == '\0') {
                fprintf(stderr, "vs-sandbox: --setenv needs NAME VALUE (NAME without '=')\n");
                return VS_SANDBOX_EXIT_USAGE;
            }
            snprintf(env_store[p.n_env], sizeof(env_store[0]), "%s=%s", optarg, argv[optind++]);
            p.env[p.n_env] = env_store[p.n_env];
            p.n_env++;
            break;
        case O_CHDIR: p.cwd = optarg; bad = optarg[0] != '/'; break;
        case O_CMDFD: bad = parse_u64(optarg, 1, &v) || v < 3 || v > 65535; p.command_fd = (int)v; break;
        case O_JSON: json = true; break;
        case O_SNAP: snapshot = optarg; break;
        case O_SNAPMAX: bad = parse_u64(optarg, 1 << 20, &p.snapshot_max_bytes); break;
        case O_HELP: usage(stdout); return 0;
        case O_BACKEND:
            podman = strcmp(optarg, "podman") == 0;
            bad = !podman && strcmp(optarg, "native") != 0;
            break;
        case O_IMAGE: image = optarg; break;
        default: usage(stderr); return VS_SANDBOX_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "vs-sandbox: bad value for --%s: %s\n", opts[opt - O_ROOTFS].name, optarg);
            return VS_SANDBOX_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "vs-sandbox: nothing to run (vs-sandbox run [options] -- PROG ARGS)\n");
        return VS_SANDBOX_EXIT_USAGE;
    }
    if (podman != (image != NULL) || (podman && p.rootfs != NULL)) {
        fprintf(stderr, "vs-sandbox: --backend podman takes --image DIR (and no --rootfs)\n");
        return VS_SANDBOX_EXIT_USAGE;
    }
    if (snapshot != NULL &&
        (p.snapshot_fd = open(snapshot, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "vs-sandbox: %s: %s\n", snapshot, strerror(errno));
        return VS_SANDBOX_EXIT_SETUP;
    }
    struct vs_sandbox_result r;
    int rc = podman ? run_podman(&p, image, argv + optind, &r)
                    : vs_sandbox_run(&p, argv + optind, &r);
    if (p.snapshot_fd >= 0)
        close(p.snapshot_fd);
    if (rc < 0 && r.setup_error[0] == '\0')
        snprintf(r.setup_error, sizeof(r.setup_error), "%s", strerror(-rc));
    if (r.setup_error[0] != '\0')
        fprintf(stderr, "vs-sandbox: %s\n", r.setup_error);
    if (json)
        print_json(&p, &r);
    return vs_sandbox_exit_status(&r);
}

static int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"preset", required_argument, NULL, 'p'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    enum vs_seccomp_preset preset = VS_PRESET_MINIMAL;
    const char *path = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "p:o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (vs_preset_parse(optarg, &preset) < 0) {
                fprintf(stderr, "vs-sandbox: unknown preset %s (minimal, compute, network)\n", optarg);
                return VS_SANDBOX_EXIT_USAGE;
            }
            break;
        case 'o': path = optarg; break;
        case 'h':
            printf("usage: vs-sandbox seccomp-export --preset minimal|compute|network [-o FILE]\n"
                   "Write the preset as a Docker/Podman seccomp profile (JSON). Named denials\n"
                   "become EPERM there (no user-notification supervisor).\n");
            return 0;
        default: return VS_SANDBOX_EXIT_USAGE;
        }
    }
    FILE *out = path != NULL ? fopen(path, "w") : stdout;
    if (out == NULL) {
        fprintf(stderr, "vs-sandbox: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = vs_seccomp_export_oci(preset, out);
    if (path != NULL && fclose(out) != 0)
        rc = -errno;
    if (rc < 0) {
        fprintf(stderr, "vs-sandbox: export failed: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}

/* vs-sandbox image-digest: what an operator signs. */
static int cmd_image_digest(int argc, char **argv)
{
    static const struct option opts[] = {{"cache", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cache = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': cache = optarg; break;
        case 'h':
            printf("usage: vs-sandbox image-digest [--cache DIR] PATH\n"
                   "Print the content digest of the image at PATH (\"sha256:<64 hex>\" and a\n"
                   "newline): a root file system, or an OCI image layout, which is unpacked\n"
                   "into --cache DIR first (vs-sandboxd's sandboxd.image_cache reuses it).\n"
                   "That line is what vs-sandboxd verifies a minisign signature over:\n"
                   "  vs-sandbox image-digest PATH > digest && minisign -S -s KEY -m digest\n"
                   "and the image goes under sandboxd.images named by the digest's hex.\n");
            return 0;
        default: return VS_SANDBOX_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "vs-sandbox: image-digest takes one PATH (see --help)\n");
        return VS_SANDBOX_EXIT_USAGE;
    }
    const char *path = argv[optind];
    char marker[PATH_MAX], rootfs[PATH_MAX], digest[VS_IMAGE_DIGEST_LEN], why[256] = "";
    snprintf(marker, sizeof marker, "%s/oci-layout", path);
    bool layout = access(marker, F_OK) == 0;
    if (layout && cache == NULL) {
        fprintf(stderr, "vs-sandbox: %s is an OCI image layout: give --cache DIR to unpack it in\n",
                path);
        return VS_SANDBOX_EXIT_USAGE;
    }
    int rc = layout ? vs_image_unpack_oci(path, cache, rootfs, digest, why, sizeof why)
                    : vs_image_digest_dir(path, digest);
    if (rc < 0) {
        fprintf(stderr, "vs-sandbox: %s: %s\n", path, why[0] != '\0' ? why : strerror(-rc));
        return 1;
    }
    printf("%s\n", digest);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? VS_SANDBOX_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "seccomp-export") == 0)
        return cmd_export(argc - 1, argv + 1);
    if (strcmp(argv[1], "image-digest") == 0)
        return cmd_image_digest(argc - 1, argv + 1);
    fprintf(stderr, "vs-sandbox: unknown command %s (run, seccomp-export, image-digest)\n", argv[1]);
    return VS_SANDBOX_EXIT_USAGE;
}
