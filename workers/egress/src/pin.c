/*
 * pin.c - where the fetcher may connect for one allowed URL: every address
 * the resolver gave for its host must pass the address rules, and then
 * libcurl is told those addresses (CURLOPT_RESOLVE) so that it connects
 * to exactly them and never asks DNS itself.
 *
 * Why all of them and why pinned: a name that resolves to one public and
 * one private address lets whoever controls its DNS choose the target
 * (DNS rebinding); checking every address, then pinning the checked list,
 * leaves no second lookup to win.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "egress_internal.h"

/* The address of ai as text, IPv6 in brackets; false for another family. */
static bool address_text(const struct addrinfo *ai, char *out, size_t outlen)
{
    char text[INET6_ADDRSTRLEN];

    if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ai->ai_addr;
        return inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)outlen) != NULL;
    }
    if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
        return inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text) != NULL &&
               (size_t)snprintf(out, outlen, "[%s]", text) < outlen;
    }
    return false;
}

int vs_egress_pin(const vs_egress_policy *p, const struct vs_egress_decision *d,
                  const struct addrinfo *addrs, char *out, size_t outlen, const char **reason)
{
    size_t used, count = 0;

    if (p == NULL || d == NULL || out == NULL || outlen == 0 || !d->allow) {
        return -EINVAL;
    }
    out[0] = '\0';
    used = (size_t)snprintf(out, outlen, "%s:%u:", d->host, (unsigned)d->port);
    if (used >= outlen) {
        return -ENOSPC;
    }
    for (const struct addrinfo *ai = addrs; ai != NULL; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN + 2];
        const char *why = NULL;
        if (!vs_egress_addr_allowed(p, ai->ai_addr, ai->ai_addrlen, &why)) {
            out[0] = '\0';
            if (reason != NULL) {
                *reason = why;
            }
            return -EACCES;
        }
        if (count == VS_EGRESS_PIN_MAX || !address_text(ai, text, sizeof text)) {
            continue; /* allowed, but not one to connect to: a pin holds a few */
        }
        int n = snprintf(out + used, outlen - used, "%s%s", count > 0 ? "," : "", text);
        if (n < 0 || (size_t)n >= outlen - used) {
            out[0] = '\0';
            return -ENOSPC;
        }
        used += (size_t)n;
        count++;
    }
    if (count == 0) {
        out[0] = '\0';
        return -ENOENT;
    }
    if (reason != NULL) {
        *reason = VS_EGRESS_ALLOWED;
    }
    return 0;
}
