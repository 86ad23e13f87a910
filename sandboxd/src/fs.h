/*
 * fs.h - the sandbox's file system view, built by the sandbox's init
 * process inside its fresh mount namespace (see fs.c).
 */
#ifndef VS_SANDBOX_FS_H
#define VS_SANDBOX_FS_H

#include <stddef.h>

#include "vs/sandbox.h"

/* Build the new root and pivot into it: read-only root (the host's /usr,
 * /bin, /lib* or p->rootfs), read-only binds, tmpfs /workspace (0700, owned
 * by the agent, with out/), /tmp and /dev/shm, a minimal /dev, a fresh
 * /proc with sensitive paths masked, no /sys. Every mount is nosuid and
 * all but /dev are nodev. Returns 0, or -errno with a message in err. */
int vs_fs_build(const struct vs_sandbox_policy *p, char *err, size_t errlen);

#endif
