/*
 * url.c - the decision on one URL: parsed by libcurl's URL API, then
 * judged against a policy (userinfo, scheme, host, port, method, size).
 *
 * Why libcurl's parser and no other: the fetcher is libcurl, and the
 * classic SSRF bypasses are parser differentials - a checker that reads
 * "https://a.com\@b.com/" or "https:///b.com" one way and a fetcher that
 * reads it another. Here the check reads what curl reads, and hands the
 * fetcher curl's own normalized URL, host and port, so it fetches exactly
 * what was checked. Numeric IPv4 spellings ("127.1", "0x7f000001",
 * "2130706433") come out of curl as dotted quads and are then IP literals
 * like any other.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "egress_internal.h"

static int deny(struct vs_egress_decision *d, const char *reason)
{
    d->allow = false;
    d->reason = reason;
    return 0;
}

/* Whether the URL has a part (user, password, login options, zone id). */
static bool has_part(CURLU *u, CURLUPart part)
{
    char *s = NULL;
    CURLUcode rc = curl_url_get(u, part, &s, 0);
    curl_free(s);
    return rc == CURLUE_OK;
}

static int judge(const struct vs_egress_policy *p, CURLU *u, const char *method,
                 uint64_t request_bytes, struct vs_egress_decision *d)
{
    if (has_part(u, CURLUPART_USER) || has_part(u, CURLUPART_PASSWORD) ||
        has_part(u, CURLUPART_OPTIONS))
        return deny(d, VS_EGRESS_USERINFO);

    char *s = NULL;
    CURLUcode rc = curl_url_get(u, CURLUPART_SCHEME, &s, 0);
    if (rc == CURLUE_OUT_OF_MEMORY)
        return -ENOMEM;
    unsigned scheme = 0;
    if (rc == CURLUE_OK && strcmp(s, "https") == 0)
        scheme = SCHEME_HTTPS;
    else if (rc == CURLUE_OK && strcmp(s, "http") == 0)
        scheme = SCHEME_HTTP;
    if (scheme != 0)
        memcpy(d->scheme, s, strlen(s) + 1);
    curl_free(s);
    if (!(scheme & p->schemes))
        return deny(d, VS_EGRESS_SCHEME);

    if (has_part(u, CURLUPART_ZONEID))
        return deny(d, VS_EGRESS_BAD_HOST);
    if ((rc = curl_url_get(u, CURLUPART_HOST, &s, 0)) != CURLUE_OK)
        return rc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : deny(d, VS_EGRESS_BAD_HOST);
    enum host_kind kind;
    const char *why = vs_egress_host_normalize(s, strlen(s), d->host, &kind);
    curl_free(s);
    if (why != NULL) {
        d->host[0] = '\0';
        return deny(d, why);
    }
    d->host_is_ip = kind != HOST_NAME;
    if (!vs_egress_host_match(p, d->host, kind))
        return deny(d, VS_EGRESS_HOST);

    if ((rc = curl_url_get(u, CURLUPART_PORT, &s, CURLU_DEFAULT_PORT)) != CURLUE_OK)
        return rc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : deny(d, VS_EGRESS_PORT);
    char *end = NULL;
    unsigned long port = strtoul(s, &end, 10);
    bool port_ok = end != s && *end == '\0' && port <= 65535;
    curl_free(s);
    if (!port_ok)
        return deny(d, VS_EGRESS_BAD_URL);
    d->port = (uint16_t)port;
    bool listed = false;
    for (size_t i = 0; i < p->nports && !listed; i++)
        listed = p->ports[i] == d->port;
    if (!listed)
        return deny(d, VS_EGRESS_PORT);

    if (!(vs_egress_method_bit(method) & p->methods))
        return deny(d, VS_EGRESS_METHOD);
    if (request_bytes > p->lim.max_request_bytes)
        return deny(d, VS_EGRESS_TOO_LARGE);

    if ((rc = curl_url_get(u, CURLUPART_URL, &s, 0)) != CURLUE_OK)
        return rc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : deny(d, VS_EGRESS_BAD_URL);
    size_t n = strlen(s);
    if (n > VS_EGRESS_URL_MAX) {
        curl_free(s);
        return deny(d, VS_EGRESS_BAD_URL);
    }
    memcpy(d->url, s, n + 1);
    curl_free(s);
    d->allow = true;
    d->reason = VS_EGRESS_ALLOWED;
    return 0;
}

int vs_egress_check_url(const vs_egress_policy *p, const char *url, const char *method,
                        uint64_t request_bytes, struct vs_egress_decision *d)
{
    if (url == NULL || method == NULL || d == NULL)
        return -EINVAL;
    d->allow = false;
    d->reason = VS_EGRESS_BAD_URL;
    d->policy = p != NULL ? p->name : NULL;
    d->scheme[0] = '\0';
    d->host[0] = '\0';
    d->host_is_ip = false;
    d->port = 0;
    d->url[0] = '\0';
    if (p == NULL)
        return deny(d, VS_EGRESS_NO_POLICY);
    if (strnlen(url, VS_EGRESS_URL_MAX + 1) > VS_EGRESS_URL_MAX)
        return deny(d, VS_EGRESS_BAD_URL);
    CURLU *u = curl_url();
    if (u == NULL)
        return -ENOMEM;
    /* No flags: no guessed scheme, no schemes curl does not know, no
     * whitespace - each is a bad URL here rather than a guess. */
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    int ret;
    if (rc == CURLUE_OUT_OF_MEMORY)
        ret = -ENOMEM;
    else if (rc == CURLUE_UNSUPPORTED_SCHEME)
        ret = deny(d, VS_EGRESS_SCHEME);
    else if (rc != CURLUE_OK)
        ret = deny(d, VS_EGRESS_BAD_URL);
    else
        ret = judge(p, u, method, request_bytes, d);
    curl_url_cleanup(u);
    return ret;
}
