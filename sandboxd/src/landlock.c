/*
 * landlock.c - the Landlock ruleset of a sandbox, through raw syscalls.
 *
 * There is no libc wrapper for Landlock and Debian 12's <linux/landlock.h>
 * knows ABI 2 only, so the syscall numbers, the newer access bits and the
 * full struct landlock_ruleset_attr (with the ABI 4 net and ABI 6 scope
 * fields) are defined here; they are fixed kernel ABI. The struct is always
 * passed at its full size: the kernel accepts a larger struct as long as
 * the fields it does not know are zero, and we only fill the fields the
 * running kernel's ABI has. One function builds the whole policy so that
 * the handled set and the granted sets cannot drift apart.
 */
#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/landlock.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
/* ABI 2 */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
/* ABI 3 */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
/* ABI 5 */
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
/* ABI 4: TCP. Rules of type LANDLOCK_RULE_NET_PORT (2) would grant ports;
 * we never add any (the network is either all TCP denied or not handled). */
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
/* ABI 6: scopes */
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* ABI 1's thirteen rights, EXECUTE (bit 0) to MAKE_SYM (bit 12). */
#define VS_LL_FS_ABI1 ((1ULL << 13) - 1)
/* The rights that make sense on a file (rather than a directory) rule. */
#define VS_LL_FS_FILE                                                                        \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | \
     LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define VS_LL_FS_RO (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

/* struct landlock_ruleset_attr as of ABI 6. */
struct vs_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

/* 0 and the ABI, or -errno of the version query. */
static int ll_probe(int *abi)
{
    long r = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

    *abi = 0;
    if (r < 0)
        return -errno;
    *abi = (int)r;
    return 0;
}

int vs_landlock_abi(void)
{
    int abi;

    return ll_probe(&abi) == 0 ? abi : 0;
}

/* Every filesystem right the ABI knows. */
static uint64_t fs_rights(int abi)
{
    uint64_t fs = VS_LL_FS_ABI1;

    if (abi >= 2)
        fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return fs;
}

/* Grant access (within handled) under each path of list. */
static int add_paths(int ruleset, const char *const *list, uint64_t access, uint64_t handled)
{
    for (; list && *list; list++) {
        struct landlock_path_beneath_attr pb;
        struct stat st;
        int fd = open(*list, O_PATH | O_CLOEXEC), rc = 0;

        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue;
            return -errno;
        }
        if (fstat(fd, &st) < 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        pb.allowed_access = access & handled;
        if (!S_ISDIR(st.st_mode))
            pb.allowed_access &= VS_LL_FS_FILE; /* directory rights on a file: EINVAL */
        pb.parent_fd = fd;
        if (pb.allowed_access &&
            syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
            rc = -errno;
        close(fd);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int vs_landlock_apply(const char *const *ro, const char *const *rw, bool allow_network,
                      int *abi_used)
{
    struct vs_ll_ruleset_attr attr = { 0 };
    int abi, rc, ruleset;
    long fd;

    if (abi_used)
        *abi_used = 0;
    if ((rc = ll_probe(&abi)) < 0)
        return rc; /* -ENOSYS, -EOPNOTSUPP: no Landlock here */
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        return -EPERM;

    attr.handled_access_fs = fs_rights(abi);
    if (abi >= 4 && !allow_network)
        attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
    if (abi >= 6)
        attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;

    fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (fd < 0)
        return -errno;
    ruleset = (int)fd;
    rc = add_paths(ruleset, ro, VS_LL_FS_RO, attr.handled_access_fs);
    if (rc == 0)
        rc = add_paths(ruleset, rw, attr.handled_access_fs, attr.handled_access_fs);
    if (rc == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
        rc = -errno;
    close(ruleset);
    if (rc == 0 && abi_used)
        *abi_used = abi;
    return rc;
}
