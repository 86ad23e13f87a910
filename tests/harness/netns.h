/*
 * netns.h - a network namespace of the test's own that has nothing but a
 * loopback interface, for tests whose programs must not reach any address
 * outside 127.0.0.0/8 (the egress worker's): whatever the test starts
 * afterwards inherits it, so a packet to any other address has no route.
 *
 * Why here: both egress tests need the same few steps (unshare, a user
 * namespace when not root, bring "lo" up), and a mount namespace too when
 * a test replaces a system file such as /etc/resolv.conf by a bind mount.
 */
#ifndef VS_TEST_NETNS_H
#define VS_TEST_NETNS_H

#include <stdbool.h>

/* Move the calling process (before it starts threads) into new network
 * (and, with mount_ns, mount: / made private) namespaces - in a user
 * namespace of its own when it is not allowed otherwise - and bring "lo"
 * up. 0 or -errno. */
int vs_enter_loopback_netns(bool mount_ns);

#endif
