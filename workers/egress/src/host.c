/*
 * host.c - host names for the egress policy: one canonical form for a
 * policy's host entries and a URL's host, and the label-by-label match of
 * a host against a policy's exact, "*." and "**." entries.
 *
 * Why a canonical form instead of a clever comparison: every comparison is
 * then a byte comparison (binary search in sorted arrays), and the rules
 * of what a host may look like live in one function. The form: ASCII
 * only, lowercase, no trailing dot, labels of [a-z0-9-] (1-63 characters,
 * no leading or trailing '-'), 253 characters at most; IP literals in the
 * form inet_ntop writes. A name whose last label is numeric is read as an
 * IPv4 literal (as browsers do) and must be a canonical dotted quad -
 * libcurl already turns "127.1" or "0x7f000001" into "127.0.0.1".
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "egress_internal.h"

static bool numeric_label(const char *s, size_t len)
{
    if (len == 0)
        return false;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return true; /* hex, as in 0x7f */
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static const char *normalize_ipv6(const char *in, size_t len, char *out, enum host_kind *kind)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char a[16];
    if (len == 0 || len >= sizeof buf || memchr(in, '%', len) != NULL)
        return VS_EGRESS_BAD_HOST; /* zone ids are never egress targets */
    memcpy(buf, in, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, a) != 1 || inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN) == NULL)
        return VS_EGRESS_BAD_HOST;
    *kind = HOST_IPV6;
    return NULL;
}

const char *vs_egress_host_normalize(const char *in, size_t len, char *out, enum host_kind *kind)
{
    if (in == NULL || out == NULL || kind == NULL)
        return VS_EGRESS_BAD_HOST;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)in[i] >= 0x80)
            return VS_EGRESS_HOST_NOT_ASCII;
    if (len >= 2 && in[0] == '[' && in[len - 1] == ']')
        return normalize_ipv6(in + 1, len - 2, out, kind);
    if (memchr(in, ':', len) != NULL)
        return normalize_ipv6(in, len, out, kind);
    if (len > 0 && in[len - 1] == '.')
        len--; /* the root label: "example.com." is example.com */
    if (len == 0 || len > VS_EGRESS_HOST_MAX)
        return VS_EGRESS_BAD_HOST;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c == '.') {
            if (label == 0 || out[i - 1] == '-')
                return VS_EGRESS_BAD_HOST; /* empty label, or one ending in '-' */
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if ((c == '-' && label == 0) || ++label > 63)
                return VS_EGRESS_BAD_HOST;
        } else {
            return VS_EGRESS_BAD_HOST;
        }
        out[i] = c;
    }
    if (label == 0 || out[len - 1] == '-')
        return VS_EGRESS_BAD_HOST;
    out[len] = '\0';
    const char *last = strrchr(out, '.');
    last = last != NULL ? last + 1 : out;
    if (numeric_label(last, strlen(last))) {
        unsigned char a[4];
        char canon[INET_ADDRSTRLEN];
        /* glibc's inet_pton takes only canonical dotted quads (no leading
         * zeros, no short forms); the comparison keeps that true on a libc
         * that is more lenient */
        if (inet_pton(AF_INET, out, a) != 1 || inet_ntop(AF_INET, a, canon, sizeof canon) == NULL ||
            strcmp(canon, out) != 0)
            return VS_EGRESS_BAD_HOST;
        *kind = HOST_IPV4;
        return NULL;
    }
    *kind = HOST_NAME;
    return NULL;
}

static int cmp_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(char *const *)elem);
}

static bool in_sorted(char *const *v, size_t n, const char *s)
{
    return n > 0 && bsearch(s, v, n, sizeof *v, cmp_key) != NULL;
}

bool vs_egress_host_match(const struct vs_egress_policy *p, const char *host, enum host_kind kind)
{
    if (in_sorted(p->exact, p->nexact, host))
        return true;
    if (kind != HOST_NAME)
        return false; /* wildcards never match IP literals (the loader refuses a
                         wildcard over a numeric label, so this only keeps the
                         matcher safe on its own) */
    const char *dot = strchr(host, '.');
    if (dot == NULL)
        return false;
    if (in_sorted(p->one, p->none, dot + 1))
        return true; /* "*.sfx": exactly one label before sfx */
    for (; dot != NULL && p->ndeep > 0; dot = strchr(dot + 1, '.'))
        if (in_sorted(p->deep, p->ndeep, dot + 1))
            return true; /* "**.sfx": one or more labels before sfx */
    return false;
}

bool vs_egress_host_allowed(const vs_egress_policy *p, const char *host, const char **reason)
{
    char norm[VS_EGRESS_HOST_MAX + 1];
    enum host_kind kind;
    const char *why = p == NULL ? VS_EGRESS_NO_POLICY
                      : host == NULL
                          ? VS_EGRESS_BAD_HOST
                          : vs_egress_host_normalize(host, strnlen(host, VS_EGRESS_HOST_MAX + 3),
                                                     norm, &kind);
    if (why == NULL && !vs_egress_host_match(p, norm, kind))
        why = VS_EGRESS_HOST;
    if (reason != NULL)
        *reason = why != NULL ? why : VS_EGRESS_ALLOWED;
    return why == NULL;
}
