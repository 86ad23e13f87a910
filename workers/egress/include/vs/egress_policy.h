/*
 * vs/egress_policy.h - the egress worker's policy engine (workers/egress,
 * libvsegress): which agent may fetch which URL, to which addresses, how
 * often and how much. It does no network I/O at all; vs-egressd's fetcher
 * asks it before a request, for every address a name resolves to, and for
 * every redirect hop.
 *
 * Why it is shaped like this:
 *  - Policies are data (a YAML file of named policies, each for a list of
 *    agent ids or groups); a loaded policy set is immutable and may be read
 *    by any number of threads. Unknown keys, wrong types and values out of
 *    range are refused with "file:line: reason".
 *  - URLs are parsed by libcurl's URL API (curl_url), the parser the
 *    fetcher's libcurl uses too, so the check and the fetch cannot read one
 *    URL two ways. The decision carries curl's normalized URL, host and
 *    port: the fetcher fetches exactly that.
 *  - Host entries match label by label, case-insensitively, one trailing
 *    dot tolerated:
 *      example.com       exactly example.com (not a.example.com)
 *      *.example.com     exactly ONE label before example.com
 *                        (a.example.com; not a.b.example.com, not example.com)
 *      **.example.com    one or MORE labels before example.com
 *                        (a.example.com, a.b.example.com; not example.com)
 *      203.0.113.7, ::1  an IP literal, matched only by the same literal
 *    A single "*" matching one label is the rule of TLS certificates
 *    (RFC 6125), so a policy author's intuition carries over; "**" says
 *    "any depth" in so many words. A wildcard is the whole leftmost label
 *    only, needs at least two labels after it ("*.com" and "**.co" are
 *    refused at load; public suffixes of two labels such as "*.co.uk" are
 *    not detected), and never matches an IP literal. Hosts are ASCII:
 *    letters, digits and '-' per label (no '_', no leading or trailing
 *    '-'), labels of 1-63 characters, 253 characters in all; IDNs are
 *    written in punycode (xn--...). A URL whose host has other bytes is
 *    refused ("host-not-ascii", "bad-host").
 *  - Address classes are the IANA special-purpose registries turned into
 *    a refusal list for IPv4, and for IPv6 an allowlist of global unicast
 *    (2000::/3) minus its special ranges; IPv4 embedded in IPv6 (mapped,
 *    compatible, SIIT, NAT64 64:ff9b::/96, 6to4, Teredo) is decoded and
 *    classified as IPv4. allow_loopback (a test policy) allows 127.0.0.0/8
 *    and ::1 in their native forms only.
 *  - Rate limits are token buckets in exact integer arithmetic with the
 *    time passed in (now_ms), so tests can say "N allowed, N+1 denied,
 *    allowed again after exactly 60000/N ms". The table of agents is
 *    bounded; idle entries are evicted least recently used first.
 * Functions return 0 or -errno and never exit or print. Reason strings are
 * static, stable and short (they go into replies and audit events).
 */
#ifndef VS_EGRESS_POLICY_H
#define VS_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- limits of the engine ------------------------------------------------ */

#define VS_EGRESS_URL_MAX 8192   /* longer URLs are "bad-url" */
#define VS_EGRESS_HOST_MAX 253   /* a DNS name without its trailing dot */
#define VS_EGRESS_AGENT_MAX 128  /* longer agent ids are refused (-EINVAL) */
#define VS_EGRESS_POLICY_FILE_MAX (1u << 20)

/* ---- policies ------------------------------------------------------------ */

enum vs_egress_redirects { VS_EGRESS_REDIRECTS_REFUSE, VS_EGRESS_REDIRECTS_FOLLOW };
enum vs_egress_suspicious { VS_EGRESS_SUSPICIOUS_DELIVER, VS_EGRESS_SUSPICIOUS_DENY };

struct vs_egress_rate_limits {
    uint64_t requests_per_min;   /* 1..1000000, default 60 */
    uint64_t bytes_per_min;      /* 1..2^40, default 10 MiB */
    uint32_t max_concurrent;     /* 1..1024, default 4 */
};

/* What a policy sets besides what it allows; the daemon reads it. */
struct vs_egress_limits {
    uint64_t max_request_bytes;  /* 1..1 GiB, default 65536 */
    uint64_t max_response_bytes; /* 1..1 GiB, default 8 MiB; counted after decompression */
    uint32_t timeout_ms;         /* 1..600000, default 10000 */
    struct vs_egress_rate_limits rate;
    enum vs_egress_redirects redirects;   /* default refuse; follow: every hop re-checked */
    enum vs_egress_suspicious suspicious; /* injection scanner SUSPICIOUS; default deliver (flagged) */
    bool allow_loopback;         /* TEST ONLY: 127.0.0.0/8 and ::1; the daemon must log it loudly */
};

typedef struct vs_egress_policies vs_egress_policies; /* a loaded policy file */
typedef struct vs_egress_policy vs_egress_policy;     /* one named policy in it */

/* Load a policy file (at most VS_EGRESS_POLICY_FILE_MAX bytes). On success
 * *out is the caller's (vs_egress_policies_free). On failure *out is NULL,
 * the return is -EINVAL for a refused file (err, errlen bytes, says
 * "file:line: reason"), -errno when it could not be read, -ENOMEM. */
int vs_egress_policies_load(const char *path, vs_egress_policies **out, char *err, size_t errlen);
/* The same from YAML text; name is the file name used in messages. */
int vs_egress_policies_parse(const char *yaml, size_t len, const char *name,
                             vs_egress_policies **out, char *err, size_t errlen);
void vs_egress_policies_free(vs_egress_policies *ps);

size_t vs_egress_policies_count(const vs_egress_policies *ps);
/* Policy i in file order (NULL when out of range); valid while ps is. */
const vs_egress_policy *vs_egress_policies_at(const vs_egress_policies *ps, size_t i);
/* The policy for an agent: the first policy, in file order, whose agents
 * list names the agent id or one of its groups (ngroups strings, may be
 * 0); failing that, the policy that lists "*" (at most one may); failing
 * that NULL, and the caller denies ("no-policy"). */
const vs_egress_policy *vs_egress_policy_for(const vs_egress_policies *ps, const char *agent,
                                             const char *const *groups, size_t ngroups);
const char *vs_egress_policy_name(const vs_egress_policy *p);
const struct vs_egress_limits *vs_egress_policy_limits(const vs_egress_policy *p);

/* ---- URL decisions ------------------------------------------------------- */

/* Reasons (static strings). */
#define VS_EGRESS_ALLOWED "allowed"
#define VS_EGRESS_NO_POLICY "no-policy"
#define VS_EGRESS_BAD_URL "bad-url"
#define VS_EGRESS_BAD_HOST "bad-host"
#define VS_EGRESS_HOST_NOT_ASCII "host-not-ascii"
#define VS_EGRESS_USERINFO "userinfo-in-url"
#define VS_EGRESS_SCHEME "scheme-not-allowed"
#define VS_EGRESS_HOST "host-not-allowed"
#define VS_EGRESS_PORT "port-not-allowed"
#define VS_EGRESS_METHOD "method-not-allowed"
#define VS_EGRESS_TOO_LARGE "request-too-large"

struct vs_egress_decision {
    bool allow;
    const char *reason;          /* VS_EGRESS_* above: "allowed" or why not */
    const char *policy;          /* the deciding policy's name (NULL: none) */
    /* Filled when the URL parsed (also on most denials, for the audit): */
    char scheme[8];              /* "http" / "https" (lowercase) */
    char host[VS_EGRESS_HOST_MAX + 1]; /* normalized: lowercase, no trailing dot,
                                          IPv6 without brackets in inet_ntop form */
    bool host_is_ip;             /* host is an IP literal */
    uint16_t port;               /* explicit or the scheme's default */
    char url[VS_EGRESS_URL_MAX + 1]; /* curl's normalized URL: what to fetch */
};

/* Decide whether an agent under policy p may send `method` (case-sensitive,
 * as HTTP methods are) with a body of request_bytes to url. Checks, in
 * this order: the URL parses (bad-url), no user/password/options
 * (userinfo-in-url), scheme, host (bad-host, host-not-ascii,
 * host-not-allowed), port, method, size. Returns 0 with *d filled whether
 * allowed or not; -EINVAL for NULL arguments; -ENOMEM. p NULL is a
 * decision too: denied, "no-policy". */
int vs_egress_check_url(const vs_egress_policy *p, const char *url, const char *method,
                        uint64_t request_bytes, struct vs_egress_decision *d);

/* Whether host (as a URL or a resolver has it: any case, one trailing dot,
 * IPv6 with or without brackets) is allowed by p's hosts. *reason (may be
 * NULL) is VS_EGRESS_ALLOWED, _HOST, _BAD_HOST or _HOST_NOT_ASCII. */
bool vs_egress_host_allowed(const vs_egress_policy *p, const char *host, const char **reason);

/* ---- addresses ----------------------------------------------------------- */

enum vs_egress_addr_class {
    VS_ADDR_PUBLIC = 0,
    VS_ADDR_LOOPBACK,       /* 127/8, ::1 */
    VS_ADDR_PRIVATE,        /* 10/8, 172.16/12, 192.168/16, fec0::/10 (site-local) */
    VS_ADDR_LINK_LOCAL,     /* 169.254/16 (cloud metadata), fe80::/10 */
    VS_ADDR_CGNAT,          /* 100.64/10 */
    VS_ADDR_MULTICAST,      /* 224/4, ff00::/8 */
    VS_ADDR_UNSPECIFIED,    /* 0/8, :: */
    VS_ADDR_BROADCAST,      /* 255.255.255.255 */
    VS_ADDR_RESERVED,       /* 240/4, 192.0.0/24, 192.88.99/24, IPv6 outside 2000::/3,
                               100::/64, ORCHID, SRv6 5f00::/16, 64:ff9b:1::/48, ... */
    VS_ADDR_ULA,            /* fc00::/7 */
    VS_ADDR_DOCUMENTATION,  /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20 */
    VS_ADDR_BENCHMARKING,   /* 198.18/15, 2001:2::/48 */
    VS_ADDR_BAD_FAMILY,     /* not AF_INET / AF_INET6, or a short sockaddr */
};

/* "address-public", "address-loopback", "address-private", ... */
const char *vs_egress_addr_class_name(enum vs_egress_addr_class c);
/* Classify raw addresses (network byte order). IPv6 forms that carry an
 * IPv4 address (::ffff:a.b.c.d, ::a.b.c.d, ::ffff:0:a.b.c.d,
 * 64:ff9b::a.b.c.d, 2002:AABB:CCDD::, Teredo 2001:0:SSSS:SSSS::~CCCC:~CCCC)
 * get the class of that IPv4 address (Teredo: of the server or the client,
 * whichever is refused). */
enum vs_egress_addr_class vs_egress_classify_ipv4(const uint8_t a[4]);
enum vs_egress_addr_class vs_egress_classify_ipv6(const uint8_t a[16]);
enum vs_egress_addr_class vs_egress_classify_sockaddr(const struct sockaddr *sa, socklen_t len);

/* Whether the fetcher may connect to sa under policy p (NULL: as a policy
 * with allow_loopback false). Every address a name resolves to must pass.
 * *reason (may be NULL): "allowed" or the class name of the refusal. */
bool vs_egress_addr_allowed(const vs_egress_policy *p, const struct sockaddr *sa, socklen_t len,
                            const char **reason);

/* ---- pinning ------------------------------------------------------------- */

#define VS_EGRESS_PIN_MAX 8 /* addresses a pin holds */

struct addrinfo;

/* The CURLOPT_RESOLVE entry "host:port:addr[,addr...]" (IPv6 in brackets)
 * for an allowed decision d and the addresses its host resolved to: every
 * one of them must pass vs_egress_addr_allowed under p, and the first
 * VS_EGRESS_PIN_MAX go into the entry, so that libcurl connects to exactly
 * those and does not resolve the name again. Returns 0 (*reason
 * "allowed"), -EACCES when any address is refused (*reason: its class;
 * out is empty), -ENOENT without an address to connect to, -ENOSPC when
 * out is too small, -EINVAL (NULL arguments, a decision that is not
 * allowed). reason may be NULL. */
int vs_egress_pin(const vs_egress_policy *p, const struct vs_egress_decision *d,
                  const struct addrinfo *addrs, char *out, size_t outlen, const char **reason);

/* ---- rate limits --------------------------------------------------------- */

#define VS_EGRESS_RATE_REQUESTS "rate-requests"
#define VS_EGRESS_RATE_BYTES "rate-bytes"
#define VS_EGRESS_RATE_CONCURRENCY "rate-concurrency"
#define VS_EGRESS_RATE_TABLE_FULL "rate-table-full"

/* A table of per-agent buckets. Not thread-safe: one thread (the daemon's
 * loop) uses it. Times are milliseconds on any monotonic clock the caller
 * chooses; a time earlier than one already seen refills nothing. */
typedef struct vs_egress_rate vs_egress_rate;

/* A table for at most max_agents agents (1..1048576). 0, -EINVAL, -ENOMEM. */
int vs_egress_rate_new(size_t max_agents, vs_egress_rate **out);
void vs_egress_rate_free(vs_egress_rate *r);

/* Start one request of `bytes` request bytes for agent under lim: takes a
 * concurrency slot, one request token and `bytes` byte tokens, all or
 * nothing. Returns 0 (granted: call vs_egress_rate_release when the
 * request ends), -EAGAIN when denied (*why, may be NULL: VS_EGRESS_RATE_*,
 * *retry_ms, may be NULL: how long until a retry could succeed; 0 when
 * that depends on a release), -EINVAL (NULL, an empty agent id or one
 * longer than VS_EGRESS_AGENT_MAX). A new agent evicts the least recently
 * used agent that has nothing in flight when the table is full; when every
 * agent has something in flight the new one is denied (rate-table-full).
 * Buckets start full: requests_per_min requests and bytes_per_min bytes
 * at once, then refill continuously (requests_per_min per 60000 ms). */
int vs_egress_rate_acquire(vs_egress_rate *r, const char *agent,
                           const struct vs_egress_rate_limits *lim, uint64_t bytes,
                           uint64_t now_ms, const char **why, uint64_t *retry_ms);
/* Charge bytes after the fact (the response, counted as it arrives): the
 * byte bucket may go into debt, which denies the agent's next requests
 * until it is paid back. 0, -ENOENT (agent not in the table: it has no
 * request in flight), -EINVAL. */
int vs_egress_rate_charge(vs_egress_rate *r, const char *agent,
                          const struct vs_egress_rate_limits *lim, uint64_t bytes,
                          uint64_t now_ms);
/* End a request granted by vs_egress_rate_acquire. 0, -ENOENT (unknown
 * agent or nothing in flight), -EINVAL. */
int vs_egress_rate_release(vs_egress_rate *r, const char *agent, uint64_t now_ms);

/* Agents in the table, and how many were evicted so far. */
size_t vs_egress_rate_size(const vs_egress_rate *r);
uint64_t vs_egress_rate_evictions(const vs_egress_rate *r);

#endif
