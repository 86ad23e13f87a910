/*
 * sandbox.h - the native launcher: run one program in a throw-away,
 * rootless sandbox and report how it ended.
 *
 * One call, vs_sandbox_run, does everything bwrap/nsjail-style launchers
 * do, each step checked and fatal on failure: user, pid, mount, net, ipc,
 * uts and cgroup namespaces; the program runs as uid 1000 inside and an
 * unprivileged host uid outside (never host root, also when the launcher is
 * root); pivot_root into a read-only root; size-bounded tmpfs /workspace,
 * /tmp and /dev/shm; a minimal /dev; a fresh /proc with the usual paths
 * masked; no /sys; every capability dropped; no_new_privs; rlimits; cgroup
 * limits where the host lets us; Landlock where the kernel has it; and a
 * default-deny seccomp preset whose named denials are reported by a
 * user-notification supervisor. A wall-clock limit kills the whole pid
 * namespace.
 */
#ifndef VS_SANDBOX_H
#define VS_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

/* Exit codes of vs-sandbox (the program's own status otherwise, 128+signal
 * when a signal killed it). */
enum vs_sandbox_exit {
    VS_SANDBOX_EXIT_SETUP = 200,   /* the sandbox could not be set up */
    VS_SANDBOX_EXIT_TIME = 201,    /* wall-clock limit */
    VS_SANDBOX_EXIT_MEMORY = 202,  /* memory limit (cgroup OOM kill) */
    VS_SANDBOX_EXIT_PIDS = 203,    /* pids limit reached (the sandbox is stopped) */
    VS_SANDBOX_EXIT_SECCOMP = 204, /* killed by the seccomp filter (foreign ABI) */
    VS_SANDBOX_EXIT_CPU = 205,     /* cpu-time limit */
    VS_SANDBOX_EXIT_STOPPED = 206, /* stopped by its launcher (vs_sandbox_stop: watchdog) */
    VS_SANDBOX_EXIT_USAGE = 210,   /* bad command line */
};

enum vs_seccomp_preset { VS_PRESET_MINIMAL, VS_PRESET_COMPUTE, VS_PRESET_NETWORK };

enum vs_kill_reason {
    VS_KILL_NONE,
    VS_KILL_TIME,
    VS_KILL_MEMORY,
    VS_KILL_PIDS,
    VS_KILL_SECCOMP,
    VS_KILL_CPU,
    VS_KILL_WATCHDOG,   /* vs_sandbox_kill: its owner gave up on it (missed heartbeats) */
};

/* How limits were enforced. */
enum vs_limit_mode { VS_LIMITS_RLIMIT, VS_LIMITS_CGROUP_V1, VS_LIMITS_CGROUP_V2 };

#define VS_SANDBOX_MAX_BINDS 32
#define VS_SANDBOX_MAX_ENV 64
#define VS_SANDBOX_MAX_DENIED 16

struct vs_bind {
    const char *src;          /* host path */
    const char *dst;          /* path inside the sandbox */
};

struct vs_sandbox_policy {
    const char *rootfs;       /* NULL: read-only view of the host's /usr, /bin, /lib* */
    struct vs_bind ro_binds[VS_SANDBOX_MAX_BINDS];
    size_t n_ro_binds;
    enum vs_seccomp_preset preset;
    bool seccomp_log;         /* named denials are logged and allowed */
    uint64_t time_limit_ms;   /* 0: none */
    uint64_t cpu_limit_ms;    /* 0: none */
    uint64_t memory_bytes;    /* 0: none */
    uint32_t pids;            /* 0: none */
    uint64_t workspace_bytes; /* size of the /workspace tmpfs */
    uint64_t tmp_bytes;       /* size of /tmp and of /dev/shm */
    uint32_t nofile;          /* RLIMIT_NOFILE */
    uint64_t fsize_bytes;     /* RLIMIT_FSIZE; 0: the workspace size */
    const char *env[VS_SANDBOX_MAX_ENV]; /* "NAME=VALUE"; nothing else is passed */
    size_t n_env;
    int command_fd;           /* becomes fd 3 inside; -1: none */
    int stdin_fd;             /* becomes the program's stdin; -1: the launcher's */
    int stdout_fd;            /* becomes its stdout and stderr; -1: the launcher's */
    uint32_t host_uid;        /* host uid the program runs as when the launcher is
                                 root; 0: a uid from the dedicated range */
    const char *cwd;          /* inside; default /workspace */
    int snapshot_fd;          /* -1: none; else, once the program has ended, init writes
                                 the ustar snapshot of /workspace/out here (from inside
                                 the sandbox; sandboxd/src/snapshot.h) and closes it */
    uint64_t snapshot_max_bytes; /* content bytes the snapshot holds at most */
};

struct vs_sandbox_result {
    int exit_code;            /* the program's status, or -1 */
    int signal;               /* the signal that killed it, or 0 */
    enum vs_kill_reason kill_reason;
    char denied[VS_SANDBOX_MAX_DENIED][32]; /* named denied syscalls, in order seen */
    size_t n_denied;
    enum vs_limit_mode limit_mode;
    int landlock_abi;         /* 0: not available */
    bool pids_limit_hit;
    uint32_t host_uid;        /* what the program ran as on the host */
    uint64_t wall_ms;
    uint64_t cpu_ms;
    uint64_t peak_memory_bytes;
    char setup_error[512];    /* set when the sandbox could not be built */
};

/* Defaults: minimal preset, 64 MiB workspace, 16 MiB /tmp, 256 fds,
 * /workspace as cwd, no command channel, no snapshot. */
VS_API void vs_sandbox_policy_init(struct vs_sandbox_policy *p);

/* Run argv (argv[0] absolute, or looked up in /usr/local/bin:/usr/bin:/bin
 * inside the sandbox) under p. Returns 0 when the program ran (its fate is
 * in *r, see vs_sandbox_exit_status), or a negative errno when the sandbox
 * could not be built (r->setup_error says why, and what to change when user
 * namespaces are refused). */
VS_API int vs_sandbox_run(const struct vs_sandbox_policy *p, char *const argv[],
                          struct vs_sandbox_result *r);

/* ---- a sandbox its owner steers while it runs (vs-sandboxd) ------------- */

typedef struct vs_sandbox vs_sandbox;

/* Build the sandbox and start argv in it, as vs_sandbox_run does, but
 * return once the program runs. p, argv and r must stay valid until
 * vs_sandbox_free. Returns 0 and *out, or a negative errno (r->setup_error
 * says why; *out NULL, nothing left running). */
VS_API int vs_sandbox_start(const struct vs_sandbox_policy *p, char *const argv[],
                            struct vs_sandbox_result *r, vs_sandbox **out);
/* Supervise the sandbox until it has ended and fill the result given to
 * vs_sandbox_start. Blocks: run it on a thread of its own. 0, or -EIO when
 * the setup failed after all. Call once. */
VS_API int vs_sandbox_wait(vs_sandbox *sb);
/* From any thread while vs_sandbox_wait runs. finish: end the program
 * (and everything it started) because its work is done; the snapshot is
 * still taken. kill: end the whole sandbox at once, no snapshot, kill
 * reason VS_KILL_WATCHDOG. 0, -EALREADY once the sandbox has ended. */
VS_API int vs_sandbox_finish(vs_sandbox *sb);
VS_API int vs_sandbox_kill(vs_sandbox *sb);
/* Raise (or lower) the memory limit of the running sandbox: -ENOTSUP when
 * it runs on rlimits alone (no memory cgroup), else as vs_cgroup_set_memory. */
VS_API int vs_sandbox_set_memory(vs_sandbox *sb, uint64_t bytes);
/* Release what the sandbox holds. After vs_sandbox_wait. NULL: no-op. */
VS_API void vs_sandbox_free(vs_sandbox *sb);

/* The exit status vs-sandbox reports for r (see enum vs_sandbox_exit). */
VS_API int vs_sandbox_exit_status(const struct vs_sandbox_result *r);

/* Names for JSON and messages. */
VS_API const char *vs_kill_reason_name(enum vs_kill_reason k);
VS_API const char *vs_limit_mode_name(enum vs_limit_mode m);
VS_API const char *vs_preset_name(enum vs_seccomp_preset p);
VS_API int vs_preset_parse(const char *name, enum vs_seccomp_preset *out);

#endif
