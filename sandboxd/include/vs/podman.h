/*
 * podman.h - the Podman backend: the native launcher's policy (struct
 * vs_sandbox_policy, vs/sandbox.h) applied to an image through
 * `podman --runtime runc run --rm`, with the same result (struct
 * vs_sandbox_result) and exit statuses (vs_sandbox_exit_status).
 *
 * Why a second backend: operators who already run Podman get its image
 * store and tooling, and the same sandbox semantics as the native
 * launcher. Why this shape:
 *  - Images are made locally, never pulled: a rootfs tree (verified
 *    against its content digest, vs/image.h) is imported once under the tag
 *    localhost/vs-image:<digest hex>, and runs name the image by its ID (a
 *    digest of the image), never by that mutable tag.
 *  - Podman applies what it can: no network, every capability dropped,
 *    no-new-privileges, the preset's seccomp profile (vs_seccomp_export_oci
 *    in a temporary file), a read-only root, size-bounded tmpfs /workspace
 *    (owned by the agent), /tmp and /dev/shm, cgroup memory (no swap), pids
 *    and one CPU, rlimits (nofile, core 0, cpu), uid and gid 1000.
 *  - The rest is done by vs-container-init, a static program that the
 *    backend mounts read-only at /.vs/init and runs as the container's pid
 *    1: it checks that the cgroup enforces the memory and pids limits,
 *    gives the program exactly the policy's environment (podman would add
 *    its own variables), fd 3 as the command channel and nothing else above
 *    stderr, RLIMIT_FSIZE and Landlock; it enforces the wall-clock limit
 *    and stops the sandbox when the pids limit is reached; when the program
 *    ends it kills everything left, writes the snapshot, and reports the
 *    program's status, OOM kills, peak memory and CPU time over a private
 *    socket. That report, not podman's exit status (which the program can
 *    forge, and which podman shares with its own errors), is the result.
 *
 * Requirements: podman (looked up in $PATH, then /usr/local/bin, /usr/bin,
 * /bin) with runc (crun refuses hybrid-cgroup hosts; runc works wherever
 * podman does), and vs-container-init, found as $VS_CONTAINER_INIT when
 * that is set, else next to the running executable, else where it is
 * installed (libexec). Limits need a cgroup podman can write: rootful
 * podman, or rootless on cgroup v2 with delegated memory and pids
 * controllers; init refuses to start the program when a limit it was
 * given is not enforced. Paths given to podman (the init, bind sources and
 * targets) may not contain ':' or ','.
 *
 * All functions return 0 or a negative errno; none prints or exits. They
 * keep no global state and may be called from several threads at once;
 * they start podman with posix_spawn and wait for it by pid (a SIGCHLD
 * handler that reaps every child, or SIGCHLD ignored, breaks that, as it
 * does vs_sandbox_run).
 */
#ifndef VS_PODMAN_H
#define VS_PODMAN_H

#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/sandbox.h"

/* "sha256:" + 64 hex digits + NUL: an image ID as vs_podman_image_import
 * writes it and vs_podman_run takes it. */
#define VS_PODMAN_IMAGE_ID_LEN 72

/*
 * Make the image of rootfs_dir in Podman's local store and write its ID
 * ("sha256:<64 hex>") to image_id. digest is the tree's content digest
 * ("sha256:" + 64 lowercase hex, vs_image_digest_dir) and names the image:
 * localhost/vs-image:<hex>. When an image of that name exists it is
 * reused; otherwise the tree is hashed and must match digest (-EBADMSG
 * otherwise: the name would lie), then written as a tar stream into
 * `podman import - localhost/vs-image:<hex>`. Nothing is ever pulled.
 *
 * The image is the tree with owners set to root, setuid/setgid bits
 * stripped, devices, fifos and sockets left out, and the container's mount
 * points made (replacing whatever the tree has at those paths, which the
 * mounts would hide anyway): /proc, /dev, /sys, /tmp (1777), /workspace
 * (0700) and /.vs. Two imports of one digest at the same time both
 * succeed; the name then refers to the later image, and the ID each call
 * returned stays valid until the image is removed.
 *
 * -EINVAL for a malformed argument, -ERANGE when size is below
 * VS_PODMAN_IMAGE_ID_LEN, -ENOENT when podman is not installed, -EBADMSG
 * for a digest mismatch, -EIO when podman fails (why has its message),
 * -ETIMEDOUT when it hangs, or the errno of reading the tree. why
 * (NUL-terminated, truncated to why_len; may be NULL when why_len is 0)
 * says what failed.
 */
VS_API int vs_podman_image_import(const char *rootfs_dir, const char *digest, char *image_id,
                                  size_t size, char *why, size_t why_len);

/*
 * Run argv in a new container of image_id (from vs_podman_image_import)
 * under p, wait for it and describe its end in *r, like vs_sandbox_run.
 * Blocking: it returns when the container is gone (podman run --rm).
 *
 * argv[0] is absolute or looked up in /usr/local/bin:/usr/bin:/bin inside.
 * The program gets p->stdin_fd as stdin and p->stdout_fd as stdout and
 * stderr (each -1: the caller's own), p->command_fd as fd 3 (when >= 0)
 * and no other descriptor, exactly p->env, p->cwd as its working
 * directory, p->ro_binds as read-only bind mounts, and runs as uid and gid
 * 1000 (without a user namespace: rootful podman runs it as host uid 1000;
 * r->host_uid says so, and is 0 when rootless, where the host uid is a
 * subordinate one). p->rootfs and p->host_uid are not used. The caller's
 * descriptors stay open (they are the caller's to close).
 *
 * Differences from the native launcher, by Podman's design:
 *  - named denials are answered EPERM by the profile and not named
 *    (r->n_denied is 0); p->seccomp_log is refused (-ENOTSUP): log mode
 *    needs the native supervisor;
 *  - /sys is mounted read-only (the cgroup files init reads are there) and
 *    /proc is masked as Podman masks it;
 *  - the wall-clock limit is measured from the program's start (podman's
 *    own start-up, typically 0.1-0.5 s, is not counted; r->wall_ms is);
 *  - the cpu-time limit is RLIMIT_CPU per process (podman --ulimit).
 *
 * snapshot_fd, when >= 0, receives the ustar snapshot of /workspace/out
 * (src/snapshot.h: at most snapshot_max content bytes, then a trailer and
 * the end-of-archive blocks) once the program and everything it started
 * are gone, also after a wall-clock, pids or memory kill or a `podman
 * stop` (unlike vs_sandbox_run, whose limits kill its init at once). It
 * must be a file, or a pipe that another thread drains while this call
 * blocks: init waits while the pipe is full, and the call's deadline
 * (below) ends a sandbox whose snapshot is not read. p->snapshot_fd must
 * be -1 or the same descriptor (-EINVAL otherwise); p->snapshot_max_bytes
 * is not used.
 *
 * Limits and their kill reasons: time (init kills the program at
 * p->time_limit_ms), pids (the pids cgroup reached p->pids: init stops the
 * sandbox, r->pids_limit_hit), memory (SIGKILL while the memory cgroup
 * counted an OOM kill: the count comes from init, a forged exit 137 is
 * not one), seccomp (SIGSYS), cpu (SIGXCPU, or SIGKILL at the hard limit).
 * r->limit_mode is the cgroup version init found its limits in.
 *
 * Bounded: with a wall-clock limit, podman's --timeout kills the container
 * 30 s after it (even when this process is gone), and this call kills it
 * (podman kill by its name, vs-<random>) 60 s after it, reporting "time".
 * Without one it waits as long as the program runs, like vs_sandbox_run.
 * When the calling process dies, init sees its end of the report socket
 * close and kills the container.
 *
 * Returns 0 when the program ran (its fate is in *r). Otherwise
 * r->setup_error says why: -EINVAL for bad arguments (image_id must be
 * "sha256:<64 hex>"), -ENOTSUP for seccomp log mode, -ENOENT when podman or
 * vs-container-init is missing, -EIO when podman or init could not start
 * the program (podman's message, or init's: a limit not enforced, a
 * program not found). -EIO with r->exit_code set when the program ran but
 * its snapshot could not be written.
 */
VS_API int vs_podman_run(const struct vs_sandbox_policy *p, const char *image_id,
                         char *const argv[], int snapshot_fd, uint64_t snapshot_max,
                         struct vs_sandbox_result *r);

/*
 * vs_podman_run in steps, for a daemon that steers its sandboxes (like
 * vs_sandbox_start and its companions, vs/sandbox.h):
 *   start       start podman and return; *out until vs_podman_free. p, argv
 *               and r must stay valid until then. Errors as vs_podman_run's.
 *   wait        block until the container is gone and fill r (run it on a
 *               thread of its own); vs_podman_run's return. Call once.
 *   finish      from any thread while wait runs: the program's work is
 *               done; init ends it and everything it started, and the
 *               snapshot is still taken.
 *   kill        from any thread while wait runs: init kills everything at
 *               once, no snapshot, no report; r->kill_reason is
 *               VS_KILL_WATCHDOG.
 *   set_memory  raise (or lower) the running container's memory limit, swap
 *               still none (`podman update`; blocks up to a minute, so not
 *               on an event loop's thread). -EIO when podman refuses.
 * finish, kill and set_memory return 0, -EALREADY once wait has seen the
 * container end, or a negative errno.
 */
typedef struct vs_podman vs_podman;
VS_API int vs_podman_start(const struct vs_sandbox_policy *p, const char *image_id,
                           char *const argv[], int snapshot_fd, uint64_t snapshot_max,
                           struct vs_sandbox_result *r, vs_podman **out);
VS_API int vs_podman_wait(vs_podman *pm);
VS_API int vs_podman_finish(vs_podman *pm);
VS_API int vs_podman_kill(vs_podman *pm);
VS_API int vs_podman_set_memory(vs_podman *pm, uint64_t bytes);
VS_API void vs_podman_free(vs_podman *pm);

#endif
