/*
 * fetch.c - see vs/egress_fetch.h: libcurl's multi interface on a libuv
 * loop (the "multi_socket" pattern of curl's multi-uv example).
 *
 * libcurl tells us, through CURLMOPT_SOCKETFUNCTION, which sockets to watch
 * for what, and through CURLMOPT_TIMERFUNCTION when to call it back; a
 * uv_poll_t per socket and one uv_timer_t do the watching, and every event
 * goes to curl_multi_socket_action, after which finished transfers are
 * collected from curl_multi_info_read. A transfer's body is gathered in a
 * buffer that is wiped when it is released.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "vs/egress_fetch.h"

#define BODY_INITIAL (16u * 1024u)
#define POOLED_CONNECTIONS 256

struct transfer {
    vs_fetcher *f;
    struct transfer *prev, *next;   /* in f->transfers */
    CURL *easy;
    struct curl_slist *resolve, *headers;
    uint8_t *body;
    size_t len, cap;
    uint64_t max_body;
    bool too_large;
    vs_fetch_cb cb;
    void *arg;
};

/* A socket libcurl asked us to watch. */
struct watched {
    uv_poll_t poll;
    curl_socket_t fd;
    vs_fetcher *f;
};

struct vs_fetcher {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct transfer *transfers;
    size_t active;
    size_t open_handles;            /* the timer and the watched sockets, until closed */
};

/* ---- the transfer's body --------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    size_t add = size * n;
    if (add > t->max_body - t->len) {
        t->too_large = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (t->len + add > t->cap) {
        size_t cap = t->cap > 0 ? t->cap : BODY_INITIAL;
        while (cap < t->len + add)
            cap *= 2;
        if (cap > t->max_body)
            cap = (size_t)t->max_body;
        uint8_t *grown = malloc(cap);
        if (grown == NULL)
            return 0;
        if (t->body != NULL) {
            memcpy(grown, t->body, t->len);
            sodium_memzero(t->body, t->len);
            free(t->body);
        }
        t->body = grown;
        t->cap = cap;
    }
    memcpy(t->body + t->len, data, add);
    t->len += add;
    return add;
}

static void transfer_free(struct transfer *t)
{
    vs_fetcher *f = t->f;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        f->transfers = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    f->active--;
    curl_multi_remove_handle(f->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->resolve);
    curl_slist_free_all(t->headers);
    if (t->body != NULL) {
        sodium_memzero(t->body, t->len);
        free(t->body);
    }
    free(t);
}

/* ---- finishing --------------------------------------------------------------------- */

static void classify(CURLcode code, const struct transfer *t, struct vs_fetch_result *r)
{
    switch (code) {
    case CURLE_OK:
        r->status = 0;
        return;
    case CURLE_WRITE_ERROR:
        if (!t->too_large)
            break;
        /* fall through */
    case CURLE_FILESIZE_EXCEEDED:
        r->status = -EFBIG;
        r->error = VS_FETCH_TOO_LARGE;
        return;
    case CURLE_OPERATION_TIMEDOUT:
        r->status = -ETIMEDOUT;
        r->error = VS_FETCH_TIMEOUT;
        return;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        r->status = -ECONNREFUSED;
        r->error = VS_FETCH_CONNECT;
        return;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        r->status = -EPROTO;
        r->error = VS_FETCH_TLS;
        return;
    case CURLE_ABORTED_BY_CALLBACK: /* vs_fetcher_free */
        r->status = -ECANCELED;
        r->error = VS_FETCH_FAILED;
        return;
    case CURLE_BAD_CONTENT_ENCODING:
        r->status = -EBADMSG;
        r->error = VS_FETCH_ENCODING;
        return;
    case CURLE_UNSUPPORTED_PROTOCOL:
        r->status = -EPROTONOSUPPORT;
        r->error = VS_FETCH_PROTOCOL;
        return;
    default:
        break;
    }
    r->status = -EIO;
    r->error = VS_FETCH_FAILED;
}

static void finish(struct transfer *t, CURLcode code)
{
    struct vs_fetch_result r = {.status = 0};
    classify(code, t, &r);
    char *ct = NULL, *location = NULL, *ip = NULL;
    curl_off_t up_body = 0;
    long up_headers = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.http_status);
    curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
    curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location);
    curl_easy_getinfo(t->easy, CURLINFO_PRIMARY_IP, &ip);
    curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &up_headers);
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &up_body);
    r.content_type = ct;
    r.location = r.http_status >= 300 && r.http_status < 400 ? location : NULL;
    if (ip != NULL)
        snprintf(r.primary_ip, sizeof r.primary_ip, "%s", ip);
    r.bytes_up = (uint64_t)(up_headers > 0 ? up_headers : 0) + (uint64_t)(up_body > 0 ? up_body : 0);
    r.bytes_down = t->len;
    if (r.status == 0) {
        r.body = t->body != NULL ? t->body : (const uint8_t *)"";
        r.body_len = t->len;
    }
    t->cb(&r, t->arg);
    transfer_free(t);
}

static void collect_finished(vs_fetcher *f)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct transfer *t = NULL;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        finish(t, code);
    }
}

/* ---- libcurl on libuv ----------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct watched *w = h->data;
    w->f->open_handles--;
    free(w);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct watched *w = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    vs_fetcher *f = w->f; /* w may be freed during the action */
    curl_multi_socket_action(f->multi, w->fd, flags, &running);
    collect_finished(f);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    vs_fetcher *f = userp;
    struct watched *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            uv_poll_stop(&w->poll);
            curl_multi_assign(f->multi, fd, NULL);
            uv_close((uv_handle_t *)&w->poll, on_handle_closed);
        }
        return 0;
    }
    if (w == NULL) {
        w = calloc(1, sizeof *w);
        if (w == NULL || uv_poll_init_socket(f->loop, &w->poll, fd) != 0) {
            free(w);
            return -1;
        }
        w->fd = fd;
        w->f = f;
        w->poll.data = w;
        f->open_handles++;
        curl_multi_assign(f->multi, fd, w);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *timer)
{
    vs_fetcher *f = timer->data;
    int running;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_finished(f);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    vs_fetcher *f = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&f->timer);
    else
        uv_timer_start(&f->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the fetcher ------------------------------------------------------------------ */

int vs_fetcher_new(uv_loop_t *loop, vs_fetcher **out)
{
    if (loop == NULL || out == NULL)
        return -EINVAL;
    vs_fetcher *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -ENOMEM;
    f->loop = loop;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        free(f);
        return -ENOMEM;
    }
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    f->open_handles = 1;
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    /* libcurl keeps 4 connections per easy handle present by default; ours
     * come and go with the transfers, so the pool would shrink whenever
     * fewer are under way and connections be made again. */
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)POOLED_CONNECTIONS);
    *out = f;
    return 0;
}

size_t vs_fetcher_active(const vs_fetcher *f)
{
    return f != NULL ? f->active : 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    vs_fetcher *f = h->data;
    f->open_handles--;
}

void vs_fetcher_free(vs_fetcher *f)
{
    if (f == NULL)
        return;
    while (f->transfers != NULL)
        finish(f->transfers, CURLE_ABORTED_BY_CALLBACK);
    curl_multi_cleanup(f->multi); /* closes the pooled connections: CURL_POLL_REMOVE */
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
    while (f->open_handles > 0 && uv_run(f->loop, UV_RUN_ONCE) != 0)
        ;
    free(f);
}

/* ---- one transfer ------------------------------------------------------------------- */

static bool set_method(CURL *e, const struct vs_fetch_request *req)
{
    bool ok = true;
    if (strcmp(req->method, "HEAD") == 0)
        ok = curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
    else if (strcmp(req->method, "GET") != 0)
        ok = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
    if (ok && (req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
               strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0)) {
        ok = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) ==
                 CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body_len > 0 ? req->body : "") ==
                 CURLE_OK;
    }
    return ok;
}

static bool configure(struct transfer *t, const struct vs_fetch_request *req)
{
    CURL *e = t->easy;
    t->resolve = curl_slist_append(NULL, req->pin);
    if (t->resolve == NULL)
        return false;
    for (size_t i = 0; i < req->nheaders; i++) {
        struct curl_slist *h = curl_slist_append(t->headers, req->headers[i]);
        if (h == NULL)
            return false;
        t->headers = h;
    }
    /* "Expect: 100-continue" would stall a POST on a server that ignores it. */
    struct curl_slist *h = curl_slist_append(t->headers, "Expect:");
    if (h == NULL)
        return false;
    t->headers = h;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) (rc = rc != CURLE_OK ? rc : curl_easy_setopt(e, opt, val))
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_RESOLVE, t->resolve);
    SET(CURLOPT_PROXY, "");                  /* never a proxy from the environment */
    SET(CURLOPT_PROTOCOLS_STR, req->protocols);
    SET(CURLOPT_FOLLOWLOCATION, 0L);         /* the caller judges every hop */
    SET(CURLOPT_ACCEPT_ENCODING, "");        /* decoded here, counted after decoding */
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
    SET(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)req->timeout_ms);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTPHEADER, t->headers);
    SET(CURLOPT_USERAGENT, "vs-egressd");
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_PRIVATE, t);
#undef SET
    return rc == CURLE_OK && set_method(e, req);
}

int vs_fetch(vs_fetcher *f, const struct vs_fetch_request *req, vs_fetch_cb cb, void *arg)
{
    if (f == NULL || req == NULL || cb == NULL || req->url == NULL || req->pin == NULL ||
        req->method == NULL || req->protocols == NULL || req->max_body == 0 ||
        req->timeout_ms == 0 || (req->body_len > 0 && req->body == NULL) ||
        (req->nheaders > 0 && req->headers == NULL))
        return -EINVAL;
    struct transfer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->f = f;
    t->cb = cb;
    t->arg = arg;
    t->max_body = req->max_body;
    t->easy = curl_easy_init();
    int rc = t->easy == NULL ? -ENOMEM : !configure(t, req) ? -EINVAL : 0;
    if (rc == 0 && curl_multi_add_handle(f->multi, t->easy) != CURLM_OK)
        rc = -ENOMEM;
    if (rc < 0) {
        curl_easy_cleanup(t->easy);
        curl_slist_free_all(t->resolve);
        curl_slist_free_all(t->headers);
        free(t);
        return rc;
    }
    t->next = f->transfers;
    if (f->transfers != NULL)
        f->transfers->prev = t;
    f->transfers = t;
    f->active++;
    return 0;
}
