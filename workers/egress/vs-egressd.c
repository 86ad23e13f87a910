/*
 * vs-egressd.c - the egress worker (DESIGN.md §2): the only daemon that
 * reaches the network, on behalf of agents that have none.
 *
 * It answers REQUEST_DATA on vs.egress.fetch and WEB_SEARCH on
 * vs.egress.search (queue group "egressd", so any number of workers share
 * the load). A command's body arrives sealed to the egress pool key
 * (AgentCommand.sealed); the reply's data - an EgressResult with the
 * response or the search results - is sealed to the task's ephemeral key
 * (AgentCommand.reply_box_key), inline or, when large, as a blob. Each
 * request goes through, in order:
 *   1. the agent's policy (workers/egress/include/vs/egress_policy.h; no
 *      policy: denied), its rate limits and concurrency (token buckets per
 *      agent, charged the request's bytes before and the response's after);
 *   2. the exfil scanner over the URL (as sent and percent-decoded), the
 *      headers and the body: no secret leaves in a query string;
 *   3. per hop: the URL check (scheme, host, port, method, size), the name
 *      resolved within a deadline, every address checked and the checked
 *      ones pinned (CURLOPT_RESOLVE), one transfer with the policy's
 *      timeout and response limit counted after decoding; a redirect is
 *      refused, or followed as a new hop through the same checks, as the
 *      policy says;
 *   4. the injection scanner over the response (normalized and decoded,
 *      vs_scan_deep): at the block level it is denied; SUSPICIOUS is
 *      delivered flagged or denied, as the policy says. A search's results
 *      are scanned one by one: a blocked result is withheld (counted in
 *      the reply), so one poisoned page does not deny the whole search.
 * Every decision is one audit event (category "egress"): agent, task, host,
 * resolved address, port, method, bytes up and down, HTTP status, decision
 * and the rule that decided.
 *
 * Why it is shaped like this:
 *  - The bus only carries sealed task data, and what is opened here lives
 *    in wiped memory: the sealed body opens into a sodium_malloc'd buffer
 *    (one, reused and wiped after each request), its protobuf is unpacked
 *    with an allocator that wipes on free, and the response buffers are
 *    wiped when released (vs/egress_fetch.h).
 *  - Address rules differ only by allow_loopback (a test policy), so there
 *    are two fetchers, one per rule set: a pooled connection is reused only
 *    under the rules that opened it. Loopback policies are logged loudly
 *    at start.
 *  - A core request cannot be held past its handler, so a request copies
 *    what it needs (reply subject, ids, reply key) and answers later with a
 *    plain publish to the reply subject.
 *  - Hostile input is bounded before it costs anything: the bus caps the
 *    message size, the sealed body must fit the policy's request limit,
 *    headers are counted, sized and vetted, and a request that cannot be
 *    understood is answered INVALID.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>

#include <curl/curl.h>
#include <jansson.h>

#include "vs/audit.h"
#include "vs/blob.h"
#include "vs/daemon.h"
#include "vs/egress_fetch.h"
#include "vs/egress_policy.h"
#include "vs/egress_resolve.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/scan.h"
#include "vs/v1/agent.pb-c.h"

#define COMPONENT "egressd"
#define CATEGORY "egress"
#define MAX_HEADERS 32
#define MAX_HEADER_LINE 4096
#define MAX_GROUPS 16
#define REASON_MAX 160
#define SEARCH_QUERY_MAX 1024
#define CHECKED_KEYS 16 /* reply keys known to be usable: a task sends many commands */

static const struct vs_cfg_key egressd_keys[] = {
    {"egressd.pool_key", VS_CFG_STRING, true,
     "the egress pool's box key file (opens the sealed bodies of commands)"},
    {"egressd.policies", VS_CFG_STRING, true, "the egress policy file (YAML)"},
    {"egressd.injection_rules", VS_CFG_STRING, false,
     "the injection ruleset for responses (the built-in one)"},
    {"egressd.exfil_rules", VS_CFG_STRING, false,
     "the exfil ruleset for URLs and request bodies (the built-in one)"},
    {"egressd.block", VS_CFG_STRING, false,
     "the lowest finding severity that denies a request or a response (high)"},
    {"egressd.resolve_timeout", VS_CFG_DURATION, false, "how long a name lookup may take (2s)"},
    {"egressd.resolve", VS_CFG_LIST, false,
     "fixed answers \"host=addr[,addr...]\", consulted before DNS (none)"},
    {"egressd.groups", VS_CFG_LIST, false,
     "agent groups for policy matching, \"agent=group[,group...]\" (none)"},
    {"egressd.max_redirects", VS_CFG_INT, false,
     "redirect hops followed where a policy follows redirects (5)"},
    {"egressd.max_requests", VS_CFG_INT, false, "requests under way at once, all agents (256)"},
    {"egressd.rate_agents", VS_CFG_INT, false, "agents the rate limiter tracks at once (65536)"},
    {"egressd.search.url", VS_CFG_STRING, false,
     "the search backend's URL (SearXNG-style JSON), {query} for the escaped query (none)"},
    {"egressd.search.policy", VS_CFG_STRING, false,
     "the policy the backend is reached under (the agent's own)"},
    {"egressd.search.max_results", VS_CFG_INT, false, "results returned at most (10)"},
    {NULL, 0, false, NULL},
};

struct egressd {
    vs_daemon *d;
    vs_boxkey *pool;
    uint8_t pool_id[VS_KEY_ID_LEN];
    vs_egress_policies *policies;
    const vs_egress_policy *search_policy;   /* NULL: the agent's own */
    char *search_url;
    uint32_t search_max_results;
    char **group_agents, **group_lists;      /* "agent=g1,g2" split */
    size_t ngroups;
    vs_ruleset *injection_rules, *exfil_rules;
    vs_scan_scratch *injection_scratch, *exfil_scratch;
    enum vs_severity block;
    vs_resolver *resolver;
    uint32_t resolve_timeout_ms;
    vs_fetcher *fetchers[2];                 /* [allow_loopback] */
    vs_egress_rate *rate;
    uint32_t max_redirects;
    size_t max_requests, requests;
    vs_sub *fetch_sub, *search_sub;
    /* One guarded buffer for what a request opens and what its reply seals:
     * every request is handled on the loop thread, and locked pages made
     * and unmapped per request cost more than the sealing itself. */
    uint8_t *guarded;
    size_t guarded_len;
    uint8_t checked_keys[CHECKED_KEYS][VS_BOX_PUBLICKEY_LEN];
    size_t nchecked, next_checked;
    uint64_t allowed, denied, invalid, failed, flagged, withheld;
};

static struct egressd g_egressd;

/* ---- wiped protobuf allocations -------------------------------------------------- */

/* protobuf-c allocations that are wiped when freed: an unpacked request
 * body holds task data. */
static void *wiped_alloc(void *ctx, size_t size)
{
    (void)ctx;
    size_t *p = malloc(sizeof(size_t) + size);
    if (p == NULL)
        return NULL;
    *p = size;
    return p + 1;
}

static void wiped_free(void *ctx, void *ptr)
{
    (void)ctx;
    if (ptr == NULL)
        return;
    size_t *p = (size_t *)ptr - 1;
    sodium_memzero(ptr, *p);
    free(p);
}

static ProtobufCAllocator wiped_allocator = {wiped_alloc, wiped_free, NULL};

/* ---- one request ------------------------------------------------------------------ */

enum kind { KIND_FETCH, KIND_SEARCH };

struct request {
    struct egressd *g;
    enum kind kind;
    char reply_to[VS_SUBJECT_MAX];
    char agent[VS_EGRESS_AGENT_MAX + 1];
    uint8_t task[VS_ID_LEN];
    uint8_t command_id[32];
    size_t command_id_len;
    uint8_t reply_pk[VS_BOX_PUBLICKEY_LEN];
    const vs_egress_policy *policy;          /* the agent's: rate limits, scanning */
    const vs_egress_policy *target;          /* the hop's URL check and limits */
    const struct vs_egress_limits *limits;   /* the target's */
    bool rate_held;
    ProtobufCMessage *body;                  /* RequestData or WebSearch (wiped on free) */
    const char *method;
    const uint8_t *payload;                  /* request body bytes */
    size_t payload_len;
    char *headers[MAX_HEADERS];
    size_t nheaders;
    unsigned hops;
    struct vs_egress_decision decision;      /* the current hop's */
    char ip[48];                             /* the address of the last connection */
    long http_status;
    uint64_t bytes_up, bytes_down;
    bool flagged;
    uint32_t withheld;
};

static void request_free(struct request *r)
{
    struct egressd *g = r->g;
    if (r->rate_held)
        vs_egress_rate_release(g->rate, r->agent, uv_now(vs_daemon_loop(g->d)));
    if (r->body != NULL)
        protobuf_c_message_free_unpacked(r->body, &wiped_allocator);
    for (size_t i = 0; i < r->nheaders; i++) {
        sodium_memzero(r->headers[i], strlen(r->headers[i]));
        free(r->headers[i]);
    }
    sodium_memzero(r->decision.url, sizeof r->decision.url);
    g->requests--;
    free(r);
}

static const char *request_event(const struct request *r)
{
    return r->kind == KIND_FETCH ? "fetch" : "search";
}

/* The audit event of the request's decision. */
static void audit(struct request *r, bool allowed, const char *rule)
{
    char port[8] = "", up[24], down[24], status[8] = "";
    if (r->decision.port != 0)
        snprintf(port, sizeof port, "%u", (unsigned)r->decision.port);
    if (r->http_status != 0)
        snprintf(status, sizeof status, "%ld", r->http_status);
    snprintf(up, sizeof up, "%" PRIu64, r->bytes_up);
    snprintf(down, sizeof down, "%" PRIu64, r->bytes_down);
    const char *details[] = {
        "host", r->decision.host, "ip", r->ip, "port", port,
        "method", r->method != NULL ? r->method : "", "bytes_up", up, "bytes_down", down,
        "http_status", status, "decision", allowed ? "allowed" : "denied",
        "rule", rule, "policy", r->decision.policy != NULL ? r->decision.policy : "",
    };
    vs_audit_emitv(vs_daemon_bus(r->g->d), CATEGORY,
                   allowed ? (r->flagged ? VS__V1__SEVERITY__SEVERITY_NOTICE
                                         : VS__V1__SEVERITY__SEVERITY_INFO)
                           : VS__V1__SEVERITY__SEVERITY_WARNING,
                   r->agent, r->task, request_event(r), details,
                   sizeof details / sizeof details[0] / 2, NULL, NULL, NULL);
}

/* Publish reply to the request's reply subject. */
static void send_reply(struct request *r, Vs__V1__AgentReply *reply)
{
    reply->command_id = (ProtobufCBinaryData){r->command_id_len, r->command_id};
    reply->type = r->kind == KIND_FETCH ? VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA
                                        : VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH;
    int rc = vs_bus_publish(vs_daemon_bus(r->g->d), r->reply_to, &reply->base);
    if (rc < 0)
        log_warnx("reply to %s not sent: %s", r->agent, strerror(-rc));
}

/* End the request with a refusal (DENIED), an INVALID command or a
 * failure: code and a reason without internals. */
static void deny(struct request *r, Vs__V1__StatusCode code, const char *rule, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
static void deny(struct request *r, Vs__V1__StatusCode code, const char *rule, const char *fmt,
                 ...)
{
    char reason[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = code;
    st.reason = reason;
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = &st;
    send_reply(r, &reply);
    if (code == VS__V1__STATUS_CODE__STATUS_DENIED)
        r->g->denied++;
    else if (code == VS__V1__STATUS_CODE__STATUS_INVALID)
        r->g->invalid++;
    else
        r->g->failed++;
    audit(r, false, rule);
    request_free(r);
}

/* ---- scanning ------------------------------------------------------------------------ */

/* The most severe finding of a scan. */
struct worst {
    bool any;
    enum vs_severity severity;
    char rule[64];
};

static int note_worst(const struct vs_finding *f, void *arg)
{
    struct worst *w = arg;
    if (!w->any || f->severity > w->severity) {
        w->any = true;
        w->severity = f->severity;
        snprintf(w->rule, sizeof w->rule, "%s", f->rule_id);
    }
    return 0;
}

/* The exfil scan of what the request would send: *w gets the worst. */
static int scan_outgoing(struct request *r, const char *url, struct worst *w)
{
    struct egressd *g = r->g;
    int rc = vs_scan(g->exfil_rules, g->exfil_scratch, (const uint8_t *)url, strlen(url), 0,
                     note_worst, w);
    int decoded_len = 0;
    char *decoded = curl_easy_unescape(NULL, url, 0, &decoded_len);
    if (rc >= 0 && decoded != NULL)
        rc = vs_scan(g->exfil_rules, g->exfil_scratch, (const uint8_t *)decoded,
                     (size_t)decoded_len, 0, note_worst, w);
    if (decoded != NULL) {
        sodium_memzero(decoded, (size_t)decoded_len);
        curl_free(decoded);
    }
    for (size_t i = 0; rc >= 0 && i < r->nheaders; i++)
        rc = vs_scan(g->exfil_rules, g->exfil_scratch, (const uint8_t *)r->headers[i],
                     strlen(r->headers[i]), 0, note_worst, w);
    if (rc >= 0 && r->payload_len > 0)
        rc = vs_scan(g->exfil_rules, g->exfil_scratch, r->payload, r->payload_len, 0, note_worst,
                     w);
    return rc < 0 ? rc : 0;
}

/* Whether the request may send url; denies it (and ends it) if not. */
static bool outgoing_clean(struct request *r, const char *url)
{
    struct worst w = {.any = false};
    if (scan_outgoing(r, url, &w) < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "scan-failed", "the request could not be scanned");
        return false;
    }
    if (w.any && w.severity >= r->g->block) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, w.rule,
             "the request carries a secret or personal data (%s)", w.rule);
        return false;
    }
    return true;
}

enum inbound { INBOUND_CLEAN, INBOUND_FLAGGED, INBOUND_BLOCKED };

/* The injection scan of what came back. */
static int scan_inbound(struct request *r, const uint8_t *data, size_t len, struct worst *w,
                        enum inbound *out)
{
    struct egressd *g = r->g;
    int rc = vs_scan_deep(g->injection_rules, g->injection_scratch, data, len, note_worst, w);
    if (rc < 0)
        return rc;
    *out = !w->any || w->severity < VS_SEV_MEDIUM ? INBOUND_CLEAN
           : w->severity >= g->block              ? INBOUND_BLOCKED
           : r->limits->suspicious == VS_EGRESS_SUSPICIOUS_DENY ? INBOUND_BLOCKED
                                                                : INBOUND_FLAGGED;
    return 0;
}

/* ---- the reply --------------------------------------------------------------------- */

static void reply_ok(struct request *r, const Vs__V1__SealedPayload *data)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = &st;
    reply.body_case = VS__V1__AGENT_REPLY__BODY_DATA;
    reply.data = (Vs__V1__SealedPayload *)data;
    reply.flagged_suspicious = r->flagged;
    send_reply(r, &reply);
    r->g->allowed++;
    if (r->flagged)
        r->g->flagged++;
    audit(r, true, r->flagged ? "delivered-flagged" : VS_EGRESS_ALLOWED);
    request_free(r);
}

static void on_result_sealed(int status, const Vs__V1__SealedPayload *p, void *arg)
{
    struct request *r = arg;
    if (status < 0)
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "blob-failed", "the response could not be stored");
    else
        reply_ok(r, p);
}

/* Seal the result to the task's key and answer OK: inline, or as a blob
 * when it takes more than half a message. */
static void deliver(struct request *r, const Vs__V1__EgressResult *result)
{
    vs_bus *bus = vs_daemon_bus(r->g->d);
    size_t n = protobuf_c_message_get_packed_size(&result->base);
    bool own = n > r->g->guarded_len; /* a large result gets guarded pages of its own */
    uint8_t *plain = own ? sodium_malloc(n) : r->g->guarded;
    int rc = plain == NULL ? -ENOMEM : 0;
    if (rc == 0) {
        protobuf_c_message_pack(&result->base, plain);
        rc = vs_payload_seal(bus, plain, n, r->reply_pk, vs_bus_max_msg(bus) / 2, n,
                             on_result_sealed, r);
        if (own)
            sodium_free(plain); /* wipes it */
        else
            sodium_memzero(plain, n);
    }
    if (rc < 0)
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "seal-failed", "the response could not be sealed");
}

/* ---- the search backend's answer ---------------------------------------------------- */

/* A string member of a JSON object, or "". */
static const char *json_text(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* The backend's results, each scanned: a blocked one is withheld, a
 * suspicious one flags the reply (or is withheld, as the policy says). */
static void deliver_search(struct request *r, const struct vs_fetch_result *res)
{
    json_error_t err;
    json_t *root = json_loadb((const char *)res->body, res->body_len, 0, &err);
    json_t *results = json_object_get(root, "results");
    if (!json_is_array(results)) {
        json_decref(root);
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "search-backend",
             "the search backend's answer is not understood");
        return;
    }
    const Vs__V1__WebSearch *ws = (const Vs__V1__WebSearch *)r->body;
    size_t want = ws->max_results > 0 && ws->max_results < r->g->search_max_results
                      ? ws->max_results
                      : r->g->search_max_results;
    Vs__V1__SearchResult *kept = calloc(want + 1, sizeof *kept);
    Vs__V1__SearchResult **ptrs = calloc(want + 1, sizeof *ptrs);
    size_t n = 0, i;
    json_t *item;
    int rc = kept != NULL && ptrs != NULL ? 0 : -ENOMEM;
    json_array_foreach(results, i, item) {
        if (rc < 0 || n == want)
            break;
        Vs__V1__SearchResult *sr = &kept[n];
        *sr = (Vs__V1__SearchResult)VS__V1__SEARCH_RESULT__INIT;
        sr->title = (char *)json_text(item, "title");
        sr->url = (char *)json_text(item, "url");
        sr->snippet = (char *)json_text(item, "content");
        char *text = NULL;
        int len = asprintf(&text, "%s\n%s\n%s", sr->title, sr->snippet, sr->url);
        struct worst w = {.any = false};
        enum inbound verdict = INBOUND_CLEAN;
        rc = len < 0 ? -ENOMEM : scan_inbound(r, (const uint8_t *)text, (size_t)len, &w, &verdict);
        free(text);
        if (rc < 0 || verdict == INBOUND_BLOCKED) {
            r->withheld += rc < 0 ? 0 : 1;
            continue;
        }
        r->flagged |= verdict == INBOUND_FLAGGED;
        ptrs[n++] = sr;
    }
    if (rc < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "scan-failed", "the results could not be scanned");
    } else {
        r->g->withheld += r->withheld;
        Vs__V1__EgressResult out = VS__V1__EGRESS_RESULT__INIT;
        out.http_status = (uint32_t)res->http_status;
        out.content_type = "application/json";
        out.final_url = r->decision.url;
        out.n_results = n;
        out.results = ptrs;
        out.results_withheld = r->withheld;
        deliver(r, &out);
    }
    free(ptrs);
    free(kept);
    json_decref(root);
}

/* ---- hops --------------------------------------------------------------------------- */

static void hop(struct request *r, const char *url);

/* Whether a redirect keeps the method and body (307, 308) or becomes a GET. */
static bool redirect_keeps_method(long status)
{
    return status == 307 || status == 308;
}

static void on_fetched(const struct vs_fetch_result *res, void *arg)
{
    struct request *r = arg;
    struct egressd *g = r->g;
    uint64_t now = uv_now(vs_daemon_loop(g->d));
    r->http_status = res->http_status;
    r->bytes_up += res->bytes_up;
    r->bytes_down += res->bytes_down;
    if (res->primary_ip[0] != '\0')
        snprintf(r->ip, sizeof r->ip, "%s", res->primary_ip);
    vs_egress_rate_charge(g->rate, r->agent, &vs_egress_policy_limits(r->policy)->rate,
                          res->bytes_down, now);
    if (res->status == -ETIMEDOUT) {
        deny(r, VS__V1__STATUS_CODE__STATUS_TIMEOUT, res->error,
             "no complete response within %u ms", (unsigned)r->limits->timeout_ms);
        return;
    }
    if (res->status == -EFBIG) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, res->error,
             "the response exceeds the policy's %" PRIu64 " bytes", r->limits->max_response_bytes);
        return;
    }
    if (res->status < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, res->error, "the fetch failed (%s)", res->error);
        return;
    }
    if (res->location != NULL) {
        if (r->limits->redirects == VS_EGRESS_REDIRECTS_REFUSE) {
            deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "redirect-refused",
                 "the server redirects (HTTP %ld) and the policy refuses redirects", res->http_status);
            return;
        }
        if (r->hops >= g->max_redirects) {
            deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "too-many-redirects",
                 "more than %u redirects", (unsigned)g->max_redirects);
            return;
        }
        if (!redirect_keeps_method(res->http_status) && strcmp(r->method, "HEAD") != 0) {
            r->method = "GET";
            r->payload_len = 0;
        }
        char *next = strdup(res->location);
        if (next == NULL) {
            deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "out-of-memory", "the worker is overloaded");
            return;
        }
        r->hops++;
        hop(r, next);
        free(next);
        return;
    }
    if (r->kind == KIND_SEARCH) {
        deliver_search(r, res);
        return;
    }
    struct worst w = {.any = false};
    enum inbound verdict;
    if (scan_inbound(r, res->body, res->body_len, &w, &verdict) < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "scan-failed", "the response could not be scanned");
        return;
    }
    if (verdict == INBOUND_BLOCKED) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, w.rule,
             "the response holds a prompt injection (%s)", w.rule);
        return;
    }
    r->flagged = verdict == INBOUND_FLAGGED;
    Vs__V1__EgressResult out = VS__V1__EGRESS_RESULT__INIT;
    out.http_status = (uint32_t)res->http_status;
    out.content_type = (char *)(res->content_type != NULL ? res->content_type : "");
    out.final_url = r->decision.url;
    out.body = (ProtobufCBinaryData){res->body_len, (uint8_t *)res->body};
    deliver(r, &out);
}

static void on_resolved(int status, const struct addrinfo *addrs, void *arg)
{
    struct request *r = arg;
    struct egressd *g = r->g;
    const struct vs_egress_decision *d = &r->decision;
    if (status == -ETIMEDOUT) {
        deny(r, VS__V1__STATUS_CODE__STATUS_TIMEOUT, "resolve-timeout",
             "%s did not resolve within %u ms", d->host, (unsigned)g->resolve_timeout_ms);
        return;
    }
    if (status < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "resolve-failed", "%s does not resolve", d->host);
        return;
    }
    char pin[VS_EGRESS_HOST_MAX + 16 + VS_EGRESS_PIN_MAX * 48];
    const char *why = NULL;
    int rc = vs_egress_pin(r->target, d, addrs, pin, sizeof pin, &why);
    if (rc < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, rc == -EACCES ? why : "resolve-failed",
             "%s resolves to an address the policy refuses (%s)", d->host,
             rc == -EACCES ? why : "none usable");
        return;
    }
    const struct vs_egress_limits *lim = r->limits;
    struct vs_fetch_request fr = {
        .url = d->url,
        .pin = pin,
        .method = r->method,
        .body = r->payload,
        .body_len = r->payload_len,
        .headers = (const char *const *)r->headers,
        .nheaders = r->nheaders,
        .protocols = d->scheme,
        .max_body = lim->max_response_bytes,
        .timeout_ms = lim->timeout_ms,
    };
    rc = vs_fetch(g->fetchers[lim->allow_loopback], &fr, on_fetched, r);
    if (rc < 0)
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "fetch-failed", "the fetch could not start");
}

/* One hop to url: check, scan, resolve; the transfer follows. */
static void hop(struct request *r, const char *url)
{
    struct vs_egress_decision *d = &r->decision;
    if (vs_egress_check_url(r->target, url, r->method, r->payload_len, d) < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "check-failed", "the URL could not be checked");
        return;
    }
    if (!d->allow) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, d->reason, "%s%s: %s",
             r->hops > 0 ? "redirect to " : "", d->host[0] != '\0' ? d->host : "the URL", d->reason);
        return;
    }
    if (!outgoing_clean(r, d->url))
        return;
    int rc = vs_resolve(r->g->resolver, d->host, r->g->resolve_timeout_ms, on_resolved, r);
    if (rc < 0)
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "resolve-failed", "%s could not be resolved",
             d->host);
}

/* ---- commands ---------------------------------------------------------------------- */

/* A header an agent may not set: the transfer's framing, routing and
 * encoding are the worker's. */
static bool header_reserved(const char *name, size_t len)
{
    static const char *const reserved[] = {
        "host", "connection", "content-length", "transfer-encoding", "te", "upgrade",
        "proxy-authorization", "proxy-connection", "keep-alive", "accept-encoding", "expect",
        "trailer",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == len && strncasecmp(reserved[i], name, len) == 0)
            return true;
    return false;
}

/* A header name: an RFC 9110 token. */
static bool header_name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!(s[0] >= '!' && s[0] <= '~') || strchr("\"(),/:;<=>?@[\\]{}", s[0]) != NULL)
            return false;
    return true;
}

/* The request's headers as "Name: value" lines; false (reason set) for one
 * that is malformed, reserved or too long, or too many. */
static bool take_headers(struct request *r, const Vs__V1__RequestData *rd, const char **why)
{
    if (rd->n_headers > MAX_HEADERS) {
        *why = "too many headers";
        return false;
    }
    for (size_t i = 0; i < rd->n_headers; i++) {
        const Vs__V1__KeyValue *kv = rd->headers[i];
        const char *name = kv->key != NULL ? kv->key : "", *value = kv->value != NULL ? kv->value : "";
        if (!header_name_ok(name) || strpbrk(value, "\r\n") != NULL ||
            strlen(name) + strlen(value) + 2 > MAX_HEADER_LINE) {
            *why = "a malformed header";
            return false;
        }
        if (header_reserved(name, strlen(name)) || strncasecmp(name, "proxy-", 6) == 0) {
            *why = "a header the worker sets itself";
            return false;
        }
        if (asprintf(&r->headers[r->nheaders], "%s: %s", name, value) < 0) {
            *why = "out of memory";
            return false;
        }
        r->nheaders++;
    }
    return true;
}

/* A method as the policy and the wire spell it, "GET" when unset. */
static bool take_method(struct request *r, const char *method)
{
    r->method = method != NULL && method[0] != '\0' ? method : "GET";
    for (const char *p = r->method; *p != '\0'; p++)
        if (*p < 'A' || *p > 'Z')
            return false;
    return strlen(r->method) <= 16;
}

/* The groups listed for agent in egressd.groups, into groups. */
static size_t agent_groups(const struct egressd *g, const char *agent, const char **groups,
                           char *buf, size_t buflen)
{
    for (size_t i = 0; i < g->ngroups; i++) {
        if (strcmp(g->group_agents[i], agent) != 0)
            continue;
        snprintf(buf, buflen, "%s", g->group_lists[i]);
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t != NULL && n < MAX_GROUPS;
             t = strtok_r(NULL, ",", &save))
            groups[n++] = t;
        return n;
    }
    return 0;
}

/* Whether k can be sealed to, remembering the last CHECKED_KEYS keys
 * that could (a check costs a sealing). */
static bool reply_key_usable(struct egressd *g, const ProtobufCBinaryData *k)
{
    if (k->len != VS_BOX_PUBLICKEY_LEN)
        return false;
    for (size_t i = 0; i < g->nchecked; i++)
        if (memcmp(g->checked_keys[i], k->data, VS_BOX_PUBLICKEY_LEN) == 0)
            return true;
    if (!vs_box_key_usable(k->data, k->len))
        return false;
    memcpy(g->checked_keys[g->next_checked], k->data, VS_BOX_PUBLICKEY_LEN);
    g->next_checked = (g->next_checked + 1) % CHECKED_KEYS;
    if (g->nchecked < CHECKED_KEYS)
        g->nchecked++;
    return true;
}

/* The command's envelope: ids, reply key, the sealed body opened and
 * unpacked. NULL with *why set when it is unusable. */
static const char *take_command(struct request *r, const Vs__V1__AgentCommand *c,
                                Vs__V1__CommandType want,
                                const ProtobufCMessageDescriptor *body_desc)
{
    struct egressd *g = r->g;
    if (c->command_id.len > sizeof r->command_id)
        return "command id too long";
    if (c->command_id.len > 0) /* an empty id has no data pointer */
        memcpy(r->command_id, c->command_id.data, c->command_id.len);
    r->command_id_len = c->command_id.len;
    if (c->type != want)
        return "the command type does not match the subject";
    if (c->agent == NULL || c->agent[0] == '\0' || strlen(c->agent) > VS_EGRESS_AGENT_MAX)
        return "no agent id";
    snprintf(r->agent, sizeof r->agent, "%s", c->agent);
    if (c->task_id.len != VS_ID_LEN)
        return "no task id";
    memcpy(r->task, c->task_id.data, VS_ID_LEN);
    if (!reply_key_usable(g, &c->reply_box_key))
        return "no usable reply key";
    memcpy(r->reply_pk, c->reply_box_key.data, VS_BOX_PUBLICKEY_LEN);
    const Vs__V1__SealedPayload *s = c->body_case == VS__V1__AGENT_COMMAND__BODY_SEALED ? c->sealed : NULL;
    if (s == NULL || s->blob != NULL || s->ciphertext.len <= VS_SEAL_OVERHEAD)
        return "the body must be sealed inline to the egress key";
    if (s->recipient_key_id.len != VS_KEY_ID_LEN ||
        memcmp(s->recipient_key_id.data, g->pool_id, VS_KEY_ID_LEN) != 0)
        return "the body is not sealed to the egress key";
    size_t n = s->ciphertext.len - VS_SEAL_OVERHEAD;
    if (n > g->guarded_len)
        return "the body is larger than a message";
    if (vs_unseal(g->pool, s->ciphertext.data, s->ciphertext.len, g->guarded) == 0)
        r->body = protobuf_c_message_unpack(body_desc, &wiped_allocator, n, g->guarded);
    sodium_memzero(g->guarded, n);
    return r->body != NULL ? NULL : "the body does not open with the egress key";
}

/* Everything before the first hop that both commands share: the agent's
 * policy (target: the policy the hops are checked under, NULL for the
 * agent's own), the request size, the rate limits. false when the request
 * has been denied (and ended). */
static bool admit(struct request *r, const vs_egress_policy *target)
{
    struct egressd *g = r->g;
    const char *groups[MAX_GROUPS];
    char buf[1024];
    size_t ngroups = agent_groups(g, r->agent, groups, buf, sizeof buf);
    r->policy = vs_egress_policy_for(g->policies, r->agent, groups, ngroups);
    if (r->policy == NULL) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, VS_EGRESS_NO_POLICY,
             "no egress policy applies to this agent");
        return false;
    }
    r->target = target != NULL ? target : r->policy;
    r->decision.policy = vs_egress_policy_name(r->target);
    r->limits = vs_egress_policy_limits(r->target);
    if (r->payload_len > r->limits->max_request_bytes) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, VS_EGRESS_TOO_LARGE,
             "the request body exceeds the policy's %" PRIu64 " bytes", r->limits->max_request_bytes);
        return false;
    }
    const char *why = NULL;
    uint64_t retry_ms = 0;
    int rc = vs_egress_rate_acquire(g->rate, r->agent, &vs_egress_policy_limits(r->policy)->rate,
                                    r->payload_len, uv_now(vs_daemon_loop(g->d)), &why, &retry_ms);
    if (rc < 0) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, rc == -EAGAIN ? why : "rate-failed",
             "rate limit (%s); retry in %" PRIu64 " ms", rc == -EAGAIN ? why : "error", retry_ms);
        return false;
    }
    r->rate_held = true;
    return true;
}

/* A request for m (NULL when refused: answered here). */
static struct request *request_new(struct egressd *g, vs_msg *m, enum kind kind)
{
    const char *reply_to = vs_msg_reply_to(m);
    if (reply_to == NULL || strlen(reply_to) >= VS_SUBJECT_MAX) {
        g->invalid++;
        return NULL; /* nobody to answer */
    }
    if (g->requests >= g->max_requests) {
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_DENIED, "the egress worker is busy");
        g->denied++;
        return NULL;
    }
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the egress worker is overloaded");
        return NULL;
    }
    r->g = g;
    r->kind = kind;
    snprintf(r->reply_to, sizeof r->reply_to, "%s", reply_to);
    g->requests++;
    return r;
}

/* INVALID for a command that cannot be understood (audited, counted). */
static int refuse_invalid(struct request *r, const char *why)
{
    deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "invalid", "%s", why);
    return 0;
}

static int on_fetch(vs_msg *m, void *arg)
{
    struct egressd *g = arg;
    struct request *r = request_new(g, m, KIND_FETCH);
    if (r == NULL)
        return 0;
    const Vs__V1__AgentCommand *c = (const Vs__V1__AgentCommand *)vs_msg_body(m);
    const char *why = take_command(r, c, VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA,
                                   &vs__v1__request_data__descriptor);
    const Vs__V1__RequestData *rd = (const Vs__V1__RequestData *)r->body;
    if (why == NULL && (rd->url == NULL || rd->url[0] == '\0'))
        why = "no URL";
    if (why == NULL && !take_method(r, rd->method))
        why = "a malformed method";
    if (why == NULL)
        take_headers(r, rd, &why);
    if (why != NULL)
        return refuse_invalid(r, why);
    r->payload = rd->body.data;
    r->payload_len = rd->body.len;
    if (admit(r, NULL))
        hop(r, rd->url);
    return 0;
}

static int on_search(vs_msg *m, void *arg)
{
    struct egressd *g = arg;
    struct request *r = request_new(g, m, KIND_SEARCH);
    if (r == NULL)
        return 0;
    const Vs__V1__AgentCommand *c = (const Vs__V1__AgentCommand *)vs_msg_body(m);
    const char *why = take_command(r, c, VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH,
                                   &vs__v1__web_search__descriptor);
    const Vs__V1__WebSearch *ws = (const Vs__V1__WebSearch *)r->body;
    if (why == NULL && (ws->query == NULL || ws->query[0] == '\0'))
        why = "no query";
    if (why == NULL && strlen(ws->query) > SEARCH_QUERY_MAX)
        why = "the query is too long";
    if (why != NULL)
        return refuse_invalid(r, why);
    r->method = "GET";
    if (g->search_url == NULL) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "no-search-backend",
             "no search backend is configured");
        return 0;
    }
    if (!admit(r, g->search_policy))
        return 0;
    char *escaped = curl_easy_escape(NULL, ws->query, 0);
    const char *at = strstr(g->search_url, "{query}");
    char *url = NULL;
    if (escaped == NULL || asprintf(&url, "%.*s%s%s", (int)(at - g->search_url), g->search_url,
                                    escaped, at + strlen("{query}")) < 0) {
        curl_free(escaped);
        deny(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "out-of-memory", "the worker is overloaded");
        return 0;
    }
    curl_free(escaped);
    hop(r, url);
    sodium_memzero(url, strlen(url));
    free(url);
    return 0;
}

/* ---- the daemon ------------------------------------------------------------------ */

static int load_policies(struct egressd *g, const vs_config *cfg)
{
    const char *path = vs_config_string(cfg, "egressd.policies", NULL);
    char err[600];
    int rc = vs_egress_policies_load(path, &g->policies, err, sizeof err);
    if (rc < 0) {
        log_warnx("%s", rc == -EINVAL ? err : strerror(-rc));
        return rc;
    }
    for (size_t i = 0; i < vs_egress_policies_count(g->policies); i++) {
        const vs_egress_policy *p = vs_egress_policies_at(g->policies, i);
        if (vs_egress_policy_limits(p)->allow_loopback)
            log_warnx("!!! policy %s ALLOWS LOOPBACK (127.0.0.0/8, ::1): a test policy; "
                      "never use it in production !!!", vs_egress_policy_name(p));
    }
    return 0;
}

static int load_search(struct egressd *g, const vs_config *cfg)
{
    const char *url = vs_config_string(cfg, "egressd.search.url", NULL);
    const char *policy = vs_config_string(cfg, "egressd.search.policy", NULL);
    int64_t max = vs_config_int(cfg, "egressd.search.max_results", 10);
    if (max < 1 || max > 100) {
        log_warnx("egressd.search.max_results must be 1..100");
        return -EINVAL;
    }
    g->search_max_results = (uint32_t)max;
    if (url != NULL && strstr(url, "{query}") == NULL) {
        log_warnx("egressd.search.url must hold {query}");
        return -EINVAL;
    }
    if (url != NULL && (g->search_url = strdup(url)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; policy != NULL && i < vs_egress_policies_count(g->policies); i++)
        if (strcmp(vs_egress_policy_name(vs_egress_policies_at(g->policies, i)), policy) == 0)
            g->search_policy = vs_egress_policies_at(g->policies, i);
    if (policy != NULL && g->search_policy == NULL) {
        log_warnx("egressd.search.policy: no policy named %s", policy);
        return -EINVAL;
    }
    return 0;
}

/* egressd.groups: "agent=g1,g2" entries. */
static int load_groups(struct egressd *g, const vs_config *cfg)
{
    size_t n = vs_config_list_len(cfg, "egressd.groups");
    g->group_agents = calloc(n + 1, sizeof *g->group_agents);
    g->group_lists = calloc(n + 1, sizeof *g->group_lists);
    if (g->group_agents == NULL || g->group_lists == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *e = vs_config_list_get(cfg, "egressd.groups", i);
        const char *eq = strchr(e, '=');
        if (eq == NULL || eq == e || eq[1] == '\0') {
            log_warnx("egressd.groups: \"%s\" is not agent=group[,group...]", e);
            return -EINVAL;
        }
        g->group_agents[i] = strndup(e, (size_t)(eq - e));
        g->group_lists[i] = strdup(eq + 1);
        g->ngroups++;
        if (g->group_agents[i] == NULL || g->group_lists[i] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int load_resolver(struct egressd *g, const vs_config *cfg)
{
    g->resolve_timeout_ms = (uint32_t)vs_config_duration_ms(cfg, "egressd.resolve_timeout", 2000);
    if (g->resolve_timeout_ms == 0) {
        log_warnx("egressd.resolve_timeout must be above 0");
        return -EINVAL;
    }
    int rc = vs_resolver_new(vs_daemon_loop(g->d), &g->resolver);
    for (size_t i = 0; rc == 0 && i < vs_config_list_len(cfg, "egressd.resolve"); i++) {
        const char *e = vs_config_list_get(cfg, "egressd.resolve", i);
        if ((rc = vs_resolver_fix(g->resolver, e)) == -EINVAL)
            log_warnx("egressd.resolve: \"%s\" is not host=addr[,addr...]", e);
    }
    /* Load the resolver's NSS modules now, before the process is narrowed. */
    struct addrinfo *ai = NULL;
    if (rc == 0 && getaddrinfo("localhost", NULL, NULL, &ai) == 0)
        freeaddrinfo(ai);
    return rc;
}

static int load_limits(struct egressd *g, const vs_config *cfg)
{
    const char *block = vs_config_string(cfg, "egressd.block", "high");
    if (vs_scan_severity_parse(block, &g->block) != 0) {
        log_warnx("egressd.block: unknown level '%s'", block);
        return -EINVAL;
    }
    int64_t redirects = vs_config_int(cfg, "egressd.max_redirects", 5);
    int64_t requests = vs_config_int(cfg, "egressd.max_requests", 256);
    int64_t agents = vs_config_int(cfg, "egressd.rate_agents", 65536);
    if (redirects < 0 || redirects > 20 || requests < 1 || requests > 65536 || agents < 1 ||
        agents > 1048576) {
        log_warnx("egressd.max_redirects (0..20), max_requests (1..65536) or rate_agents "
                  "(1..1048576) out of range");
        return -EINVAL;
    }
    g->max_redirects = (uint32_t)redirects;
    g->max_requests = (size_t)requests;
    return vs_egress_rate_new((size_t)agents, &g->rate);
}

static int egressd_open(vs_daemon *d)
{
    struct egressd *g = &g_egressd;
    g->d = d;
    vs_daemon_set_data(d, g);
    const vs_config *cfg = vs_daemon_config(d);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    const char *key = vs_config_string(cfg, "egressd.pool_key", NULL);
    int rc = vs_boxkey_load(key, &g->pool);
    if (rc < 0) {
        log_warnx("cannot load the egress pool key %s: %s", key, strerror(-rc));
        return rc;
    }
    vs_key_id(vs_boxkey_public(g->pool), VS_BOX_PUBLICKEY_LEN, g->pool_id);
    if ((rc = load_policies(g, cfg)) < 0 || (rc = load_search(g, cfg)) < 0 ||
        (rc = load_groups(g, cfg)) < 0 || (rc = load_limits(g, cfg)) < 0 ||
        (rc = load_resolver(g, cfg)) < 0)
        return rc;
    const char *injection =
        vs_config_string(cfg, "egressd.injection_rules", VS_SCAN_RULES_DIR "/injection.yaml");
    const char *exfil = vs_config_string(cfg, "egressd.exfil_rules", VS_SCAN_RULES_DIR "/exfil.yaml");
    char err[600];
    if ((rc = vs_ruleset_load_with_scratch(injection, &g->injection_rules, &g->injection_scratch,
                                           err, sizeof err)) < 0 ||
        (rc = vs_ruleset_load_with_scratch(exfil, &g->exfil_rules, &g->exfil_scratch, err,
                                           sizeof err)) < 0) {
        log_warnx("%s", err);
        return rc;
    }
    for (size_t i = 0; i < 2; i++)
        if ((rc = vs_fetcher_new(vs_daemon_loop(d), &g->fetchers[i])) < 0)
            return rc;
    g->guarded_len = vs_bus_max_msg(vs_daemon_bus(d));
    g->guarded = sodium_malloc(g->guarded_len);
    return g->guarded != NULL ? 0 : -ENOMEM;
}

static int egressd_start(vs_daemon *d)
{
    struct egressd *g = vs_daemon_data(d);
    vs_bus *bus = vs_daemon_bus(d);
    int rc = vs_bus_subscribe(bus, "vs.egress.fetch", COMPONENT, &vs__v1__agent_command__descriptor,
                              on_fetch, g, &g->fetch_sub);
    if (rc < 0)
        return rc;
    return vs_bus_subscribe(bus, "vs.egress.search", COMPONENT,
                            &vs__v1__agent_command__descriptor, on_search, g, &g->search_sub);
}

static void egressd_stop(vs_daemon *d)
{
    struct egressd *g = vs_daemon_data(d);
    vs_sub_free(g->fetch_sub);
    vs_sub_free(g->search_sub);
    g->fetch_sub = g->search_sub = NULL;
}

static bool egressd_idle(vs_daemon *d)
{
    const struct egressd *g = vs_daemon_data(d);
    return g->requests == 0;
}

static void egressd_close(vs_daemon *d)
{
    struct egressd *g = vs_daemon_data(d);
    if (g == NULL)
        return;
    /* Requests still under way are answered (cancelled) before what they
     * use is freed. */
    vs_resolver_free(g->resolver);
    for (size_t i = 0; i < 2; i++)
        vs_fetcher_free(g->fetchers[i]);
    while (g->requests > 0 && uv_run(vs_daemon_loop(d), UV_RUN_ONCE) != 0)
        ;
    vs_egress_rate_free(g->rate);
    vs_scan_scratch_free(g->exfil_scratch);
    vs_ruleset_free(g->exfil_rules);
    vs_scan_scratch_free(g->injection_scratch);
    vs_ruleset_free(g->injection_rules);
    for (size_t i = 0; i < g->ngroups; i++) {
        free(g->group_agents[i]);
        free(g->group_lists[i]);
    }
    free(g->group_agents);
    free(g->group_lists);
    free(g->search_url);
    vs_egress_policies_free(g->policies);
    vs_boxkey_free(g->pool);
    if (g->guarded != NULL)
        sodium_free(g->guarded);
    curl_global_cleanup();
}

static void egressd_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct egressd *g = vs_daemon_data(d);
    add(ctx, "allowed", g->allowed);
    add(ctx, "denied", g->denied);
    add(ctx, "invalid", g->invalid);
    add(ctx, "failed", g->failed);
    add(ctx, "flagged", g->flagged);
    add(ctx, "results_withheld", g->withheld);
    add(ctx, "in_flight", g->requests);
    add(ctx, "rate_evictions", vs_egress_rate_evictions(g->rate));
}

int main(int argc, char **argv)
{
    /* libcurl's multi handle wakes itself through a socket pair. */
    static const int syscalls[] = {SYS_socketpair, -1};
    static const struct vs_daemon_def def = {
        .component = COMPONENT,
        .summary = "the egress worker: REQUEST_DATA (vs.egress.fetch) and WEB_SEARCH\n"
                   "(vs.egress.search) through policy, address, rate and scanner checks",
        .config = egressd_keys,
        .syscalls = syscalls,
        .open = egressd_open,
        .start = egressd_start,
        .stop = egressd_stop,
        .idle = egressd_idle,
        .close = egressd_close,
        .counters = egressd_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
