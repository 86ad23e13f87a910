/*
 * narrow.h - how a daemon gives up what it no longer needs before its
 * event loop: no_new_privs and a default-deny seccomp allowlist.
 *
 * The base allowlist covers what glibc, libuv, cnats, libsodium and LMDB
 * use in steady state; a daemon adds its own calls. Calls that only an
 * attacker would make (exec, ptrace, mount, namespaces, bpf, keys, module
 * loading, ...) kill the process; anything else not allowed fails with
 * EPERM, so an unexpected library path degrades instead of crashing.
 */
#ifndef VS_NARROW_H
#define VS_NARROW_H

#include <stdbool.h>

#include "vs/api.h"

/* Apply no_new_privs and the filter: base allowlist plus extra (syscall
 * numbers terminated by -1, may be NULL). log_only: allowed-but-logged
 * instead of denied (diagnosis). Returns 0 or -errno. Irreversible. */
VS_API int vs_narrow(const int *extra, bool log_only);

#endif
