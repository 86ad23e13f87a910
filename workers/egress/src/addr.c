/*
 * addr.c - which addresses the egress fetcher may connect to: every
 * address a host name resolves to is classified here, and anything but a
 * public unicast address is refused (DNS rebinding and "internal" names
 * are stopped at the address, whatever the name was).
 *
 * Why these tables: IPv4 follows the IANA IPv4 special-purpose address
 * registry as a list of refused ranges. IPv6 is the other way round - only
 * global unicast 2000::/3 can be public, so everything outside it is
 * refused, and inside it the special ranges (documentation, benchmarking,
 * ORCHID) are. IPv6 forms that carry an IPv4 address are decoded and the
 * IPv4 address is classified, because a connect() to them reaches (or is
 * translated to) that IPv4 host: IPv4-mapped ::ffff:0:0/96, the deprecated
 * IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, NAT64 64:ff9b::/96 (RFC
 * 6052), 6to4 2002::/16 and Teredo 2001::/32 (server bits 32-63, client
 * the inverted last 32 bits; refused when either is). The local-use NAT64
 * prefix 64:ff9b:1::/48 (RFC 8215) is refused whole, as everything outside
 * 2000::/3 is: where its IPv4 address sits depends on the operator's
 * prefix length, so it cannot be decoded reliably - and it is local by
 * definition.
 */
#include <netinet/in.h>
#include <string.h>

#include "egress_internal.h"

static const char *const class_names[] = {
    [VS_ADDR_PUBLIC] = "address-public",
    [VS_ADDR_LOOPBACK] = "address-loopback",
    [VS_ADDR_PRIVATE] = "address-private",
    [VS_ADDR_LINK_LOCAL] = "address-link-local",
    [VS_ADDR_CGNAT] = "address-cgnat",
    [VS_ADDR_MULTICAST] = "address-multicast",
    [VS_ADDR_UNSPECIFIED] = "address-unspecified",
    [VS_ADDR_BROADCAST] = "address-broadcast",
    [VS_ADDR_RESERVED] = "address-reserved",
    [VS_ADDR_ULA] = "address-ula",
    [VS_ADDR_DOCUMENTATION] = "address-documentation",
    [VS_ADDR_BENCHMARKING] = "address-benchmarking",
    [VS_ADDR_BAD_FAMILY] = "address-bad-family",
};

const char *vs_egress_addr_class_name(enum vs_egress_addr_class c)
{
    return (unsigned)c < sizeof class_names / sizeof class_names[0] ? class_names[c]
                                                                    : "address-unknown";
}

/* Whether x lies in net/bits (bits 1..32). */
static bool in4(uint32_t x, uint32_t net, unsigned bits)
{
    return ((x ^ net) >> (32 - bits)) == 0;
}

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

enum vs_egress_addr_class vs_egress_classify_ipv4(const uint8_t a[4])
{
    uint32_t x = IP4(a[0], a[1], a[2], a[3]);
    static const struct {
        uint32_t net;
        unsigned bits;
        enum vs_egress_addr_class cls;
    } refused[] = {
        {IP4(255, 255, 255, 255), 32, VS_ADDR_BROADCAST}, /* before 240/4 */
        {IP4(0, 0, 0, 0), 8, VS_ADDR_UNSPECIFIED},        /* "this network" */
        {IP4(10, 0, 0, 0), 8, VS_ADDR_PRIVATE},
        {IP4(100, 64, 0, 0), 10, VS_ADDR_CGNAT},
        {IP4(127, 0, 0, 0), 8, VS_ADDR_LOOPBACK},
        {IP4(169, 254, 0, 0), 16, VS_ADDR_LINK_LOCAL},    /* 169.254.169.254: cloud metadata */
        {IP4(172, 16, 0, 0), 12, VS_ADDR_PRIVATE},
        {IP4(192, 0, 0, 0), 24, VS_ADDR_RESERVED},        /* IETF protocol assignments */
        {IP4(192, 0, 2, 0), 24, VS_ADDR_DOCUMENTATION},   /* TEST-NET-1 */
        {IP4(192, 88, 99, 0), 24, VS_ADDR_RESERVED},      /* 6to4 relay anycast (deprecated) */
        {IP4(192, 168, 0, 0), 16, VS_ADDR_PRIVATE},
        {IP4(198, 18, 0, 0), 15, VS_ADDR_BENCHMARKING},
        {IP4(198, 51, 100, 0), 24, VS_ADDR_DOCUMENTATION}, /* TEST-NET-2 */
        {IP4(203, 0, 113, 0), 24, VS_ADDR_DOCUMENTATION}, /* TEST-NET-3 */
        {IP4(224, 0, 0, 0), 4, VS_ADDR_MULTICAST},
        {IP4(240, 0, 0, 0), 4, VS_ADDR_RESERVED},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (in4(x, refused[i].net, refused[i].bits))
            return refused[i].cls;
    return VS_ADDR_PUBLIC;
}

static bool zeros(const uint8_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != 0)
            return false;
    return true;
}

/* Whether a lies in the prefix p (bits long). */
static bool in6(const uint8_t a[16], const uint8_t p[16], unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, p, whole) != 0)
        return false;
    return rest == 0 || ((a[whole] ^ p[whole]) >> (8 - rest)) == 0;
}

enum vs_egress_addr_class vs_egress_classify_ipv6(const uint8_t a[16])
{
    static const uint8_t nat64[16] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t sixto4[16] = {0x20, 0x02};
    static const uint8_t teredo[16] = {0x20, 0x01, 0x00, 0x00};
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    static const uint8_t doc2[16] = {0x3f, 0xff};            /* 3fff::/20 (RFC 9637) */
    static const uint8_t bench[16] = {0x20, 0x01, 0x00, 0x02}; /* 2001:2::/48 */
    static const uint8_t orchid[16] = {0x20, 0x01, 0x00, 0x10}; /* 2001:10::/28 */
    static const uint8_t orchid2[16] = {0x20, 0x01, 0x00, 0x20}; /* 2001:20::/28 */

    if (zeros(a, 16))
        return VS_ADDR_UNSPECIFIED;
    if (zeros(a, 15) && a[15] == 1)
        return VS_ADDR_LOOPBACK;
    if (zeros(a, 12))
        return vs_egress_classify_ipv4(a + 12); /* IPv4-compatible ::a.b.c.d */
    if (zeros(a, 10) && a[10] == 0xff && a[11] == 0xff)
        return vs_egress_classify_ipv4(a + 12); /* IPv4-mapped ::ffff:a.b.c.d */
    if (zeros(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0)
        return vs_egress_classify_ipv4(a + 12); /* SIIT ::ffff:0:a.b.c.d */
    if (in6(a, nat64, 96))
        return vs_egress_classify_ipv4(a + 12);
    if (in6(a, sixto4, 16))
        return vs_egress_classify_ipv4(a + 2);
    if (in6(a, teredo, 32)) {
        uint8_t client[4] = {(uint8_t)~a[12], (uint8_t)~a[13], (uint8_t)~a[14], (uint8_t)~a[15]};
        enum vs_egress_addr_class c = vs_egress_classify_ipv4(a + 4);
        return c != VS_ADDR_PUBLIC ? c : vs_egress_classify_ipv4(client);
    }
    if (a[0] == 0xff)
        return VS_ADDR_MULTICAST;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return VS_ADDR_LINK_LOCAL;                 /* fe80::/10 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        return VS_ADDR_PRIVATE;                    /* fec0::/10, deprecated site-local */
    if ((a[0] & 0xfe) == 0xfc)
        return VS_ADDR_ULA;                        /* fc00::/7 */
    if ((a[0] & 0xe0) != 0x20)
        return VS_ADDR_RESERVED;                   /* outside global unicast 2000::/3
                                                      (also 64:ff9b:1::/48, 100::/64, 5f00::/16) */
    if (in6(a, doc, 32) || in6(a, doc2, 20))
        return VS_ADDR_DOCUMENTATION;
    if (in6(a, bench, 48))
        return VS_ADDR_BENCHMARKING;
    if (in6(a, orchid, 28) || in6(a, orchid2, 28))
        return VS_ADDR_RESERVED;
    return VS_ADDR_PUBLIC;
}

enum vs_egress_addr_class vs_egress_classify_sockaddr(const struct sockaddr *sa, socklen_t len)
{
    if (sa == NULL)
        return VS_ADDR_BAD_FAMILY;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        uint8_t a[4];
        memcpy(a, &in->sin_addr, 4);
        return vs_egress_classify_ipv4(a);
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6a = (const struct sockaddr_in6 *)(const void *)sa;
        uint8_t a[16];
        memcpy(a, &in6a->sin6_addr, 16);
        return vs_egress_classify_ipv6(a);
    }
    return VS_ADDR_BAD_FAMILY;
}

/* Loopback in its native form: 127.0.0.0/8 or ::1 (not ::ffff:127.0.0.1). */
static bool native_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        uint8_t a[4];
        memcpy(a, &in->sin_addr, 4);
        return a[0] == 127;
    }
    const struct sockaddr_in6 *in6a = (const struct sockaddr_in6 *)(const void *)sa;
    uint8_t a[16];
    memcpy(a, &in6a->sin6_addr, 16);
    return zeros(a, 15) && a[15] == 1;
}

bool vs_egress_addr_allowed(const vs_egress_policy *p, const struct sockaddr *sa, socklen_t len,
                            const char **reason)
{
    enum vs_egress_addr_class c = vs_egress_classify_sockaddr(sa, len);
    bool ok = c == VS_ADDR_PUBLIC ||
              (c == VS_ADDR_LOOPBACK && p != NULL && p->lim.allow_loopback && native_loopback(sa));
    if (reason != NULL)
        *reason = ok ? VS_EGRESS_ALLOWED : vs_egress_addr_class_name(c);
    return ok;
}
