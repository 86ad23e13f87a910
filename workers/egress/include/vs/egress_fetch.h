/*
 * vs/egress_fetch.h - the egress worker's HTTP transfers: libcurl's multi
 * interface driven by a libuv loop, one hop at a time, to an address the
 * caller has already vetted.
 *
 * Why it is shaped like this:
 *  - One hop: redirects are never followed here. A 3xx comes back with its
 *    Location, and the caller decides (policy check, resolve, pin) whether
 *    to make the next hop - every hop passes the same rules.
 *  - Pinned: the caller passes the CURLOPT_RESOLVE entry that
 *    vs_egress_pin built, so libcurl connects to exactly the vetted
 *    addresses and never resolves a name itself. Proxy settings in the
 *    environment are ignored (CURLOPT_PROXY ""): only the policy decides
 *    where traffic goes.
 *  - Bounded: the response body is counted as libcurl delivers it, after
 *    content decoding, so a compressed bomb is cut off at max_body like
 *    any other oversized response; a declared Content-Length above the
 *    limit stops the transfer before the body. The whole transfer has one
 *    deadline.
 *  - A fetcher's connections are reused only by its own transfers: a
 *    caller that applies different address rules (a test policy that
 *    allows loopback) uses a fetcher of its own, so no transfer rides on a
 *    connection that its own rules would not have opened.
 * All callbacks run on the loop thread, never before vs_fetch returns.
 */
#ifndef VS_EGRESS_FETCH_H
#define VS_EGRESS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct vs_fetcher vs_fetcher;

/* libcurl must be initialized (curl_global_init) before the first fetcher. */
int vs_fetcher_new(uv_loop_t *loop, vs_fetcher **out);
/* Abort every transfer (its callback gets -ECANCELED), close the sockets
 * (running the loop until their handles are closed), free. NULL: no-op. */
void vs_fetcher_free(vs_fetcher *f);
/* Transfers under way. */
size_t vs_fetcher_active(const vs_fetcher *f);

struct vs_fetch_request {
    const char *url;              /* absolute, normalized (the policy decision's url) */
    const char *pin;              /* CURLOPT_RESOLVE entry "host:port:addr[,addr]" */
    const char *method;           /* "GET", "HEAD", "POST", ... */
    const void *body;             /* request body (copied), may be NULL */
    size_t body_len;
    const char *const *headers;   /* "Name: value" lines, already vetted */
    size_t nheaders;
    const char *protocols;        /* CURLOPT_PROTOCOLS_STR, e.g. "https" or "http,https" */
    uint64_t max_body;            /* response bytes after decoding, at least 1 */
    uint32_t timeout_ms;          /* the whole transfer, at least 1 */
};

/* Why a transfer failed, as short stable strings for replies and audit. */
#define VS_FETCH_TOO_LARGE "response-too-large"
#define VS_FETCH_TIMEOUT "timeout"
#define VS_FETCH_CONNECT "connect-failed"
#define VS_FETCH_TLS "tls-failed"
#define VS_FETCH_ENCODING "bad-content-encoding"
#define VS_FETCH_PROTOCOL "protocol-refused"
#define VS_FETCH_FAILED "transfer-failed"

struct vs_fetch_result {
    int status;                   /* 0, or -EFBIG, -ETIMEDOUT, -ECONNREFUSED, -EPROTO,
                                     -EBADMSG, -EPROTONOSUPPORT, -EIO, -ECANCELED */
    const char *error;            /* NULL when status is 0, else VS_FETCH_* */
    long http_status;             /* 0 when no response came */
    const char *content_type;     /* or NULL */
    const char *location;         /* a 3xx's target, absolute; or NULL */
    char primary_ip[48];          /* the address connected to ("" when none) */
    uint64_t bytes_up;            /* request headers and body sent */
    uint64_t bytes_down;          /* response body bytes received, after decoding */
    const uint8_t *body;          /* the response body (status 0) */
    size_t body_len;
};

/* Valid during the callback only; the body buffer is wiped afterwards. */
typedef void (*vs_fetch_cb)(const struct vs_fetch_result *r, void *arg);

/* Start one transfer. 0 (the callback runs exactly once, later), -EINVAL
 * (a missing field, or an option libcurl refuses, such as an unknown
 * protocol name), -ENOMEM. */
int vs_fetch(vs_fetcher *f, const struct vs_fetch_request *req, vs_fetch_cb cb, void *arg);

#endif
