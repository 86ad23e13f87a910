/*
 * egress_internal.h - what the egress policy engine's source files share
 * (workers/egress/src): the layout of a loaded policy, and the host
 * normalizer that the loader (for host entries) and the URL check (for the
 * URL's host) both use, so that an entry and a host are compared in one
 * canonical form.
 *
 * Why the host lists are split in three sorted arrays: a policy may list
 * thousands of hosts, and a decision must stay cheap. An exact entry is
 * found by binary search; "*.sfx" entries are found by looking up the
 * host minus its first label; "**.sfx" entries by looking up each suffix
 * of the host (at most 127 lookups, one per label).
 */
#ifndef VS_EGRESS_INTERNAL_H
#define VS_EGRESS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/egress_policy.h"

/* The HTTP methods a policy may allow (CONNECT and TRACE are never). */
enum {
    M_GET = 1u << 0,
    M_HEAD = 1u << 1,
    M_POST = 1u << 2,
    M_PUT = 1u << 3,
    M_PATCH = 1u << 4,
    M_DELETE = 1u << 5,
    M_OPTIONS = 1u << 6,
};
/* A method name's bit, or 0 for anything else (case-sensitive). */
unsigned vs_egress_method_bit(const char *method);

enum { SCHEME_HTTP = 1u << 0, SCHEME_HTTPS = 1u << 1 };

struct vs_egress_policy {
    char *name;
    char **agents;       /* agent ids and groups, as written; "*" is any_agent */
    size_t nagents;
    bool any_agent;
    char **exact;        /* sorted: host names and IP literals, normalized */
    size_t nexact;
    char **one;          /* sorted: the "sfx" of each "*.sfx" */
    size_t none;
    char **deep;         /* sorted: the "sfx" of each "**.sfx" */
    size_t ndeep;
    uint16_t *ports;
    size_t nports;
    unsigned schemes;    /* SCHEME_* */
    unsigned methods;    /* M_* */
    struct vs_egress_limits lim;
};

struct vs_egress_policies {
    struct vs_egress_policy *v;
    size_t n;
    size_t any;          /* index of the "*" policy, or n */
};

enum host_kind { HOST_NAME, HOST_IPV4, HOST_IPV6 };

/* Normalize a host of len bytes (a URL's, or a policy entry): lowercase,
 * one trailing dot removed, IPv6 brackets removed and the address written
 * by inet_ntop, IPv4 only in canonical dotted-quad form (a name whose last
 * label is numeric must be one). out holds VS_EGRESS_HOST_MAX + 1 bytes.
 * Returns NULL with out and *kind filled, or the reason it is refused
 * (VS_EGRESS_BAD_HOST, VS_EGRESS_HOST_NOT_ASCII). */
const char *vs_egress_host_normalize(const char *in, size_t len, char *out, enum host_kind *kind);

/* Whether a normalized host of that kind matches p's host entries. */
bool vs_egress_host_match(const struct vs_egress_policy *p, const char *host, enum host_kind kind);

#endif
