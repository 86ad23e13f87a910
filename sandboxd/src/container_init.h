/*
 * container_init.h - the private contract between the Podman backend
 * (podman.c, in the launcher) and vs-container-init
 * (tools/vs_container_init.c, pid 1 of every container it starts): the
 * descriptors podman passes in, init's options, and the one report init
 * sends back. Both are built from this tree, so the report is a plain
 * struct; its magic and version catch an init of another build.
 *
 *   /.vs/init [--command] [--snapshot MAX] [--time-limit MS] [--memory BYTES]
 *             [--pids N] [--fsize BYTES] [--net] --chdir DIR -- PROG [ARGS...]
 *
 * Why a report on a socket rather than the container's exit status: with
 * `podman run --rm` the container is gone when podman returns, and its
 * status is one byte that the program can forge (exit 137 looks like an
 * OOM kill) and that podman also uses for its own failures (125-127).
 * init sends what only it knows - the program's wait status, whether a
 * limit stopped it, the cgroup's OOM kills and peak memory, a setup error -
 * over a socket the program never holds (init closes it in the program and
 * is not dumpable, so /proc/1/fd stays closed to uid 1000 too). The
 * launcher's end of the same socket tells init when the launcher died, or
 * gave up on the sandbox (vs_podman_kill shuts it down): init then kills
 * everything and exits without a snapshot, so a container never outlives
 * the process that waits for it. The launcher's one message on it,
 * VS_CINIT_FINISH (vs_podman_finish), asks init to end the program as
 * `podman stop` does: everything is killed, the snapshot is still taken.
 *
 * Why the environment travels in a memfd: podman adds variables of its own
 * (container, HOSTNAME, HOME, PATH, TERM) to whatever --env passes, and
 * --env puts values on podman's command line, which every local user can
 * read. init gives the program exactly the memfd's variables.
 */
#ifndef VS_CONTAINER_INIT_H
#define VS_CONTAINER_INIT_H

#include <stdint.h>

/* Descriptors of init (podman --preserve-fds VS_CINIT_NFDS passes the
 * launcher's 3..9 as they are). */
enum {
    VS_CINIT_FD_COMMAND = 3,  /* the command channel (/dev/null without --command) */
    VS_CINIT_FD_SNAPSHOT = 4, /* where the snapshot goes (/dev/null without --snapshot) */
    VS_CINIT_FD_REPORT = 5,   /* SOCK_SEQPACKET: the report; a hangup means the launcher died */
    VS_CINIT_FD_ENV = 6,      /* sealed memfd: "NAME=VALUE\0" for each variable */
    VS_CINIT_FD_STDIN = 7,    /* the program's stdin, stdout and stderr (init's own */
    VS_CINIT_FD_STDOUT = 8,   /* 0-2 are podman's, whose output the launcher reads */
    VS_CINIT_FD_STDERR = 9,   /* for messages) */
    VS_CINIT_NFDS = 7,
};

#define VS_CINIT_PATH "/.vs/init"  /* where the launcher mounts init */
#define VS_CINIT_ENV_MAX (256u << 10)
#define VS_CINIT_ENV_COUNT 64      /* VS_SANDBOX_MAX_ENV */
#define VS_CINIT_MAGIC 0x76736369u /* "vsci" */
#define VS_CINIT_VERSION 1u
#define VS_CINIT_FINISH 'F'        /* launcher -> init: the program's work is done */

/* What init saw (flags). */
#define VS_CINIT_F_TIME 0x1      /* init killed the program at the wall-clock limit */
#define VS_CINIT_F_PIDS 0x2      /* init stopped the container: the pids limit was reached */
#define VS_CINIT_F_PIDS_HIT 0x4  /* the pids limit refused a fork (stopped or not) */
#define VS_CINIT_F_CGROUP_V1 0x8 /* limits are in cgroup v1 controllers */
#define VS_CINIT_F_CGROUP_V2 0x10

struct vs_cinit_report {
    uint32_t magic, version;
    int32_t status;           /* the program's wait status; -1 when it never ran */
    uint32_t flags;
    int32_t landlock_abi;     /* applied to the program; 0: none */
    int32_t snapshot_errno;   /* 0, or why the snapshot could not be written */
    uint64_t oom_kills;       /* the memory cgroup's OOM kills */
    uint64_t peak_memory_bytes;
    uint64_t cpu_ms;          /* user + system time of everything init reaped */
    char error[256];          /* a setup error ("" when none): the program did not run */
};

#endif
