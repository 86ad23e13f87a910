/*
 * landlock.h - Landlock for the sandbox: a second, independent filesystem
 * (and TCP, and IPC-scope) wall behind the mount namespace.
 *
 * The mount namespace already decides what the sandbox can see; Landlock
 * makes the same decision again in the LSM layer, so a mistake in the
 * mount setup (a writable bind, a leaked fd, a mount the program manages
 * to make) does not turn into write access. It is best effort by design:
 * kernels without Landlock (or with it disabled at boot) run the sandbox
 * without it and the result says "landlock abi 0"; everything else that
 * goes wrong is a real setup error.
 *
 * The ABI is always the running kernel's (Debian's headers stop at ABI 2,
 * so the newer constants are defined in landlock.c): every filesystem
 * right the kernel knows is handled, so rights added by newer ABIs are
 * denied unless a rule grants them.
 *
 * Internal to vssandbox; exported (VS_API) only so that the unit tests can
 * link against the shared library.
 */
#ifndef VS_SANDBOX_LANDLOCK_H
#define VS_SANDBOX_LANDLOCK_H

#include <stdbool.h>

#include "vs/api.h"

/* The Landlock ABI version of the running kernel (1 = 5.13, 2 = 5.19
 * refer, 3 = 6.2 truncate, 4 = 6.7 TCP, 5 = 6.10 ioctl on devices,
 * 6 = 6.12 scopes, 7 = 6.15 audit flags), 0 when Landlock is not built in
 * (ENOSYS) or disabled (EOPNOTSUPP). */
VS_API int vs_landlock_abi(void);

/*
 * Restrict the calling thread and everything it later forks or execs.
 *  - ro (NULL-terminated, may be NULL): read files, list directories and
 *    execute, under each path;
 *  - rw: every filesystem right under each path (create, remove, write,
 *    rename across directories, truncate, device ioctls);
 *  - everything else: denied, for every right the ABI knows (refer from
 *    ABI 2, truncate from 3, ioctl_dev from 5).
 *  - ABI >= 4 and !allow_network: TCP bind and connect denied everywhere
 *    (no port rules). allow_network: TCP is not handled at all.
 *  - ABI >= 6: abstract unix sockets and signals are scoped: the sandbox
 *    cannot connect to abstract sockets or signal processes outside it.
 * Paths that do not exist (ENOENT, ENOTDIR) are skipped; a path that is a
 * file gets only the file rights of its set. Pass "/dev" in rw so that
 * /dev/null, /dev/tty and friends can be opened for writing and ioctl'd
 * (tty ioctls such as TCGETS need ioctl_dev on ABI 5+). File descriptors
 * opened before the call keep working as they are (Landlock checks at
 * open time), e.g. an inherited terminal.
 *
 * Preconditions, in the launcher's child: no_new_privs is set (-EPERM
 * otherwise, before anything is changed), the process is single-threaded
 * (Landlock restricts the calling thread only), and all mounts and
 * pivot_root are done: a Landlock domain forbids changing the mount
 * topology, and the paths are resolved now, as seen from the new root.
 * It must run before the seccomp filter if that filter denies the
 * landlock_* syscalls.
 *
 * Returns 0 (*abi_used = the ABI applied), -ENOSYS or -EOPNOTSUPP when
 * Landlock is unavailable (*abi_used = 0; carry on without it), or another
 * -errno (fatal: -EPERM, -EINVAL, -ENOMEM, -E2BIG, or the error opening a
 * path). abi_used may be NULL.
 */
VS_API int vs_landlock_apply(const char *const *ro, const char *const *rw, bool allow_network,
                             int *abi_used);

#endif
