/*
 * seccomp_policy.h - the sandbox's seccomp policy (internal to vssandbox,
 * not installed): the preset table, the prebuilt BPF programs, loading a
 * program in the sandboxed child, passing its listener fd to the launcher,
 * and the user-notification supervisor that names denied syscalls.
 *
 * Why it is shaped this way:
 * - One table of rules (seccomp_policy.c) is the policy. The build-time
 *   generator (tools/seccomp_gen.c) feeds it to libseccomp, checks the
 *   resulting BPF against the table with a small BPF interpreter, and writes
 *   the programs and their SHA-256 into seccomp_programs.c. At launch the
 *   library only hands the prebuilt struct sock_fprog to seccomp(2): no
 *   libseccomp rule building, no allocation, nothing that can fail in the
 *   child between fork and execve. The Podman/Docker profile is written from
 *   the same table.
 * - The programs are for the architecture of the build machine (the
 *   generator runs there); vs_seccomp_program refuses them (-ENOEXEC) when
 *   the library is built for another one. Only the native ABI is in the
 *   filter: a foreign one (i386 via int 0x80, x32 via __X32_SYSCALL_BIT)
 *   kills the process (SIGSYS).
 * - Every rule compares at most one argument, and the rules of one syscall
 *   either have the same action or match disjoint argument values, so the
 *   result never depends on how libseccomp orders overlapping rules. The
 *   generator verifies this on probe values and fails the build otherwise.
 *
 * Outcomes of a syscall under a preset:
 *   allowed                    runs;
 *   named denial               the filter answers SECCOMP_RET_USER_NOTIF and
 *                              the supervisor records the syscall's name and
 *                              answers EPERM. These are the calls of a bigger
 *                              preset (socket under minimal) and the "always
 *                              blocked" list (mount, ptrace, bpf, unshare,
 *                              clone with a CLONE_NEW* flag, ioctl TIOCSTI,
 *                              socket(AF_NETLINK), personality(PER_LINUX32), ...);
 *   clone3                     ENOSYS (its flags are in memory where BPF
 *                              cannot see them; glibc falls back to clone);
 *   anything else              ENOSYS, not named;
 *   foreign ABI                the process is killed by SIGSYS.
 *
 * Log mode (--seccomp-log): the supervisor logs each named denial (syscall
 * name and pid, never argument contents) and lets preset-level denials run
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE), so that one run shows everything a
 * program needs from a bigger preset. The always-blocked list stays denied
 * (EPERM) in log mode too: log mode widens a preset, it never lifts the
 * sandbox's own guarantees. CONTINUE is only safe here because log mode is a
 * development aid that trusts the program more, by design.
 *
 * The symbols are exported (VS_API) for the launcher's CLI and the unit
 * tests; this header is not installed and not a stable API.
 */
#ifndef VS_SECCOMP_POLICY_H
#define VS_SECCOMP_POLICY_H

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vs/api.h"
#include "vs/sandbox.h"

#define VS_PRESET_COUNT 3
#define VS_SECCOMP_NAME_MAX 32 /* a recorded syscall name, with its NUL */

/* ---- the policy table ------------------------------------------------------ */

enum vs_sc_kind {
    VS_SC_ALLOW,  /* allowed from preset `level` up, a named denial below it */
    VS_SC_BLOCK,  /* always blocked: a named denial in every preset and mode */
    VS_SC_ENOSYS, /* ENOSYS in every preset (clone3), not named */
};

/* The comparisons the table uses (libseccomp's, 64-bit). */
enum vs_sc_op {
    VS_OP_NONE,      /* no comparison: the whole syscall */
    VS_OP_EQ,        /* args[arg] == a */
    VS_OP_GT,        /* args[arg] > a (unsigned) */
    VS_OP_MASKED_EQ, /* (args[arg] & a) == b */
};

#define VS_SC_OPTIONAL 0x1 /* skip (with a note) if libseccomp does not know the name */

struct vs_sc_rule {
    const char *name;
    uint8_t kind;  /* enum vs_sc_kind */
    uint8_t level; /* enum vs_seccomp_preset, VS_SC_ALLOW only */
    uint8_t op;    /* enum vs_sc_op */
    uint8_t arg;   /* argument index 0..5 */
    uint8_t flags; /* VS_SC_OPTIONAL */
    uint64_t a, b;
};

/* The table, in order. */
VS_API extern const struct vs_sc_rule vs_seccomp_rules[];
VS_API extern const size_t vs_seccomp_n_rules;

/* "minimal", "compute", "network"; NULL for a bad value. */
VS_API const char *vs_seccomp_preset_str(enum vs_seccomp_preset p);

/* Does rule r match these arguments? */
VS_API bool vs_sc_rule_matches(const struct vs_sc_rule *r, const uint64_t args[6]);

/* The seccomp return value (SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF or
 * SECCOMP_RET_ERRNO|ENOSYS) the table gives syscall `name` with args under
 * preset p. -EDOM when two matching rules disagree (a table bug). */
VS_API int vs_seccomp_table_action(enum vs_seccomp_preset p, const char *name,
                                   const uint64_t args[6], uint32_t *action);

/* Is this call on the always-blocked list? (Preset independent: the
 * supervisor uses it to keep these denied in log mode.) */
VS_API bool vs_seccomp_always_blocked(const char *name, const uint64_t args[6]);

/* ---- prebuilt programs ----------------------------------------------------- */

/* What the generator writes (seccomp_programs.c). */
struct vs_seccomp_prebuilt {
    const struct sock_filter *filter;
    unsigned short len;
    uint8_t sha256[32]; /* of the len * 8 bytes at filter */
};
extern const struct vs_seccomp_prebuilt vs_seccomp_prebuilt[VS_PRESET_COUNT];
extern const uint32_t vs_seccomp_prebuilt_arch; /* AUDIT_ARCH_* of the build machine */
extern const struct sock_filter vs_seccomp_prog_minimal[], vs_seccomp_prog_compute[],
    vs_seccomp_prog_network[];
extern const unsigned short vs_seccomp_prog_minimal_len, vs_seccomp_prog_compute_len,
    vs_seccomp_prog_network_len;

/* The prebuilt program of preset p (points into read-only data; do not
 * modify). 0, -EINVAL for a bad preset, -ENOEXEC when the programs were
 * generated for another architecture. */
VS_API int vs_seccomp_program(enum vs_seccomp_preset p, struct sock_fprog *prog);

/* SHA-256 of preset p's BPF bytes (all zero for a bad preset). */
VS_API void vs_seccomp_program_hash(enum vs_seccomp_preset p, uint8_t out[32]);

/* Run a seccomp BPF program on one struct seccomp_data, as the kernel would
 * (the subset of classic BPF that seccomp accepts). Returns the filter's
 * return value; 0 (SECCOMP_RET_KILL_THREAD) for a malformed program. */
VS_API uint32_t vs_seccomp_bpf_run(const struct sock_fprog *prog, const struct seccomp_data *d);

/* Check prog against the table for preset p on probe values: every syscall
 * number the native architecture has, the table's argument values and their
 * neighbours, pseudo-random arguments, x32 and foreign-arch calls. 0, or
 * -EPROTO with the first difference described in err. */
VS_API int vs_seccomp_selfcheck(enum vs_seccomp_preset p, const struct sock_fprog *prog,
                                char *err, size_t errlen);

/* ---- loading, in the sandboxed child ---------------------------------------- */

/* Load prog with SECCOMP_FILTER_FLAG_NEW_LISTENER. Call it last before
 * execve, after PR_SET_NO_NEW_PRIVS, in a single-threaded process. After
 * it, the calls the filter allows are all that is left: sendmsg (to pass
 * the listener on with vs_fd_send), close and execve are allowed by every
 * preset. Returns the listener fd (close-on-exec) or -errno. */
VS_API int vs_seccomp_install(const struct sock_fprog *prog);

/* Pass fd over the unix socket sock (SCM_RIGHTS, one data byte).
 * 0 or -errno. */
VS_API int vs_fd_send(int sock, int fd);

/* Receive one fd sent with vs_fd_send (close-on-exec). Returns it, or
 * -ECONNRESET when the peer closed first, -EBADMSG when the message had no
 * fd or was truncated (any fds received are closed), or -errno. */
VS_API int vs_fd_recv(int sock);

/* ---- the supervisor, in the launcher ---------------------------------------- */

struct vs_seccomp_supervisor;

/* Start a thread that answers the notifications on listener_fd: it records
 * the names of up to VS_SANDBOX_MAX_DENIED distinct syscalls in the order
 * first seen and answers EPERM; in log mode it logs each call (log_warnx:
 * name and pid) and lets preset-level denials continue, while always-blocked
 * calls are still answered EPERM. It ends when all the filter's users are
 * gone (POLLHUP) or on vs_seccomp_supervisor_stop. On success the
 * supervisor owns listener_fd; on failure the caller still does.
 * 0 or -errno. */
VS_API int vs_seccomp_supervisor_start(int listener_fd, bool log_mode,
                                       struct vs_seccomp_supervisor **out);

/* Stop (if still running) and join the thread, copy up to max recorded names
 * to names (each NUL-terminated), close the listener and free s. Returns how
 * many names were copied. s may be NULL (returns 0). Tasks still waiting for
 * an answer get ENOSYS from the kernel once the listener is closed. */
VS_API size_t vs_seccomp_supervisor_stop(struct vs_seccomp_supervisor *s,
                                         char names[][VS_SECCOMP_NAME_MAX], size_t max);

/* How many notifications the supervisor answered so far (for tests and
 * statistics). */
VS_API uint64_t vs_seccomp_supervisor_count(const struct vs_seccomp_supervisor *s);

/* ---- the same policy for Podman/Docker --------------------------------------- */

/* Write preset p as an OCI seccomp profile (JSON, as Docker and Podman read
 * it): defaultAction SCMP_ACT_ERRNO with defaultErrnoRet 38 (ENOSYS), only
 * the native architecture, allowed calls with their argument filters, and
 * named denials as SCMP_ACT_ERRNO errnoRet 1 (EPERM) since those runtimes
 * have no notification supervisor. 0, -EINVAL, -ENOMEM or -EIO. */
VS_API int vs_seccomp_export_oci(enum vs_seccomp_preset p, FILE *out);

#endif
