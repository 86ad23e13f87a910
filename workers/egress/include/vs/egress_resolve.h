/*
 * vs/egress_resolve.h - name resolution for the egress worker, on its
 * libuv loop, with a deadline and a table of fixed answers.
 *
 * Why it is shaped like this:
 *  - getaddrinfo blocks, for as long as resolv.conf's timeouts and retries
 *    add up to. It runs on libuv's thread pool (uv_getaddrinfo) and a timer
 *    bounds the wait: past the deadline the caller gets -ETIMEDOUT at once,
 *    and the lookup's late answer is dropped when it comes.
 *  - The fixed answers ("host=addr[,addr...]", curl's --resolve in spirit)
 *    are consulted before DNS. They let an operator pin internal names,
 *    and let a test make a name resolve to any address range without a
 *    DNS server: every answer, fixed or looked up, then goes through the
 *    same address rules (vs_egress_pin).
 *  - An IP literal is answered without a lookup (AI_NUMERICHOST).
 * Every callback runs on the loop thread, never before vs_resolve returns.
 */
#ifndef VS_EGRESS_RESOLVE_H
#define VS_EGRESS_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define VS_RESOLVE_ADDRS_MAX 16 /* fixed addresses per name */

struct addrinfo;
typedef struct vs_resolver vs_resolver;

/* A resolver on loop. 0, -ENOMEM. */
int vs_resolver_new(uv_loop_t *loop, vs_resolver **out);
/* Cancel what is pending (callbacks get -ECANCELED), run the loop until
 * the lookups still on the thread pool have returned, free. NULL: no-op. */
void vs_resolver_free(vs_resolver *r);

/* Add a fixed answer from "host=addr[,addr...]" (IPv4 or IPv6 literals,
 * IPv6 with or without brackets; host case-insensitive, one trailing dot
 * tolerated). A later entry for the same host replaces the earlier one.
 * 0, -EINVAL (malformed; nothing added), -ENOMEM. */
int vs_resolver_fix(vs_resolver *r, const char *entry);

/* status 0: addrs is the answer (IPv4 and IPv6, stream sockets), valid
 * during the callback only. Otherwise addrs is NULL and status is
 * -ETIMEDOUT (no answer within the deadline), -ENOENT (the name has no
 * address), -EAGAIN (a temporary DNS failure), -ECANCELED, -EIO. */
typedef void (*vs_resolved_cb)(int status, const struct addrinfo *addrs, void *arg);

/* Resolve host (a name or an IP literal, IPv6 without brackets) within
 * timeout_ms (at least 1). The callback runs exactly once, later. 0,
 * -EINVAL, -ENOMEM. */
int vs_resolve(vs_resolver *r, const char *host, uint32_t timeout_ms, vs_resolved_cb cb,
               void *arg);

/* Lookups waiting for an answer (for idle checks). */
size_t vs_resolver_pending(const vs_resolver *r);

#endif
