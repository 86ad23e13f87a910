/*
 * netns.c - see netns.h.
 */
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netns.h"
#include "proc.h"

/* Map the caller's ids to root in a new user namespace. */
static int own_user_namespace(int flags)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | flags) != 0)
        return -errno;
    int rc = vs_write_file("/proc/self/setgroups", "deny");
    if (rc == 0)
        rc = vs_write_file("/proc/self/uid_map", "0 %u 1", (unsigned)uid);
    if (rc == 0)
        rc = vs_write_file("/proc/self/gid_map", "0 %u 1", (unsigned)gid);
    return rc;
}

int vs_enter_loopback_netns(bool mount_ns)
{
    int flags = CLONE_NEWNET | (mount_ns ? CLONE_NEWNS : 0);
    int rc = unshare(flags) == 0 ? 0 : own_user_namespace(flags);
    if (rc < 0)
        return rc;
    if (mount_ns && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -errno;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    rc = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 ? 0 : -errno;
    ifr.ifr_flags |= IFF_UP;
    if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
        rc = -errno;
    close(fd);
    return rc;
}
