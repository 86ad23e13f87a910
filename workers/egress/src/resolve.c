/*
 * resolve.c - see vs/egress_resolve.h: lookups on libuv's thread pool with
 * a deadline, fixed answers, IP literals.
 *
 * One lookup is one allocation holding its timer, its getaddrinfo request
 * and room for a fixed answer. It is answered once (by the answer, the
 * deadline or a cancel) and freed when both the answer has been given and
 * the thread pool has let go of its request, so a lookup that outlives its
 * deadline costs nothing but its memory until getaddrinfo returns.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vs/egress_policy.h"
#include "vs/egress_resolve.h"

struct fixed_answer {
    char host[VS_EGRESS_HOST_MAX + 1];
    struct sockaddr_storage addrs[VS_RESOLVE_ADDRS_MAX];
    socklen_t lens[VS_RESOLVE_ADDRS_MAX];
    size_t naddrs;
};

struct lookup {
    vs_resolver *r;
    struct lookup *prev, *next;     /* in r->lookups */
    uv_timer_t timer;               /* the deadline, or 0 ms for a ready answer */
    uv_getaddrinfo_t gai;
    bool in_pool;                   /* gai is on the thread pool */
    bool answered;
    vs_resolved_cb cb;
    void *arg;
    struct addrinfo nodes[VS_RESOLVE_ADDRS_MAX]; /* a ready answer (fixed or literal) */
    struct sockaddr_storage addrs[VS_RESOLVE_ADDRS_MAX];
    size_t naddrs;
};

struct vs_resolver {
    uv_loop_t *loop;
    struct fixed_answer *fixed;
    size_t nfixed;
    struct lookup *lookups;
    size_t pending;
};

int vs_resolver_new(uv_loop_t *loop, vs_resolver **out)
{
    if (loop == NULL || out == NULL)
        return -EINVAL;
    vs_resolver *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->loop = loop;
    *out = r;
    return 0;
}

/* ---- fixed answers ---------------------------------------------------------- */

/* host lowercased, one trailing dot dropped, into out; false when it is
 * empty or too long. */
static bool canonical_host(const char *host, size_t len, char out[VS_EGRESS_HOST_MAX + 1])
{
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0 || len > VS_EGRESS_HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)host[i]);
    out[len] = '\0';
    return true;
}

/* An IP literal (IPv6 with or without brackets) into ss; false otherwise. */
static bool parse_literal(const char *text, size_t len, struct sockaddr_storage *ss,
                          socklen_t *sslen)
{
    char buf[INET6_ADDRSTRLEN + 2];
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        *sslen = sizeof *sin;
        return true;
    }
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        *sslen = sizeof *sin6;
        return true;
    }
    return false;
}

static struct fixed_answer *find_fixed(const vs_resolver *r, const char *host)
{
    for (size_t i = 0; i < r->nfixed; i++)
        if (strcmp(r->fixed[i].host, host) == 0)
            return &r->fixed[i];
    return NULL;
}

int vs_resolver_fix(vs_resolver *r, const char *entry)
{
    if (r == NULL || entry == NULL)
        return -EINVAL;
    const char *eq = strchr(entry, '=');
    struct fixed_answer a = {.naddrs = 0};
    if (eq == NULL || !canonical_host(entry, (size_t)(eq - entry), a.host))
        return -EINVAL;
    for (const char *p = eq + 1;; p++) {
        size_t len = strcspn(p, ",");
        if (a.naddrs == VS_RESOLVE_ADDRS_MAX ||
            !parse_literal(p, len, &a.addrs[a.naddrs], &a.lens[a.naddrs]))
            return -EINVAL;
        a.naddrs++;
        p += len;
        if (*p == '\0')
            break;
    }
    struct fixed_answer *slot = find_fixed(r, a.host);
    if (slot == NULL) {
        struct fixed_answer *grown = realloc(r->fixed, (r->nfixed + 1) * sizeof *grown);
        if (grown == NULL)
            return -ENOMEM;
        r->fixed = grown;
        slot = &r->fixed[r->nfixed++];
    }
    *slot = a;
    return 0;
}

/* ---- lookups ------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    struct lookup *l = h->data;
    l->r->pending--;
    free(l);
}

/* Free l once it is answered and the thread pool has let go of it. */
static void lookup_release(struct lookup *l)
{
    if (!l->answered || l->in_pool)
        return;
    vs_resolver *r = l->r;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        r->lookups = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}

static void answer(struct lookup *l, int status, const struct addrinfo *addrs)
{
    if (l->answered)
        return;
    l->answered = true;
    uv_timer_stop(&l->timer);
    l->cb(status, status == 0 ? addrs : NULL, l->arg);
}

static int gai_status(int status)
{
    switch (status) {
    case 0:
        return 0;
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
    case UV_EAI_FAMILY:
        return -ENOENT;
    case UV_EAI_AGAIN:
        return -EAGAIN;
    case UV_EAI_CANCELED:
        return -ECANCELED;
    case UV_EAI_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

static void on_looked_up(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *l = req->data;
    l->in_pool = false;
    int rc = gai_status(status);
    answer(l, rc == 0 && res == NULL ? -ENOENT : rc, res);
    uv_freeaddrinfo(res);
    lookup_release(l);
}

/* The deadline, or the turn of a ready answer. */
static void on_timer(uv_timer_t *t)
{
    struct lookup *l = t->data;
    answer(l, l->naddrs > 0 ? 0 : -ETIMEDOUT, l->naddrs > 0 ? l->nodes : NULL);
    if (l->in_pool)
        uv_cancel((uv_req_t *)&l->gai); /* if it has not started yet */
    lookup_release(l);
}

/* l's ready answer from n addresses. */
static void set_ready(struct lookup *l, const struct sockaddr_storage *addrs,
                      const socklen_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        l->addrs[i] = addrs[i];
        l->nodes[i] = (struct addrinfo){
            .ai_family = addrs[i].ss_family,
            .ai_socktype = SOCK_STREAM,
            .ai_protocol = IPPROTO_TCP,
            .ai_addrlen = lens[i],
            .ai_addr = (struct sockaddr *)&l->addrs[i],
            .ai_next = i + 1 < n ? &l->nodes[i + 1] : NULL,
        };
    }
    l->naddrs = n;
}

int vs_resolve(vs_resolver *r, const char *host, uint32_t timeout_ms, vs_resolved_cb cb,
               void *arg)
{
    char name[VS_EGRESS_HOST_MAX + 1];
    if (r == NULL || host == NULL || cb == NULL || timeout_ms == 0 ||
        !canonical_host(host, strlen(host), name))
        return -EINVAL;
    struct lookup *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    l->r = r;
    l->cb = cb;
    l->arg = arg;
    l->gai.data = l;
    uv_timer_init(r->loop, &l->timer);
    l->timer.data = l;

    l->next = r->lookups;
    if (r->lookups != NULL)
        r->lookups->prev = l;
    r->lookups = l;
    r->pending++;

    struct sockaddr_storage literal;
    socklen_t literal_len;
    const struct fixed_answer *fixed = find_fixed(r, name);
    uint64_t wait_ms = 0;
    if (fixed != NULL) {
        set_ready(l, fixed->addrs, fixed->lens, fixed->naddrs);
    } else if (parse_literal(name, strlen(name), &literal, &literal_len)) {
        set_ready(l, &literal, &literal_len, 1);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        int rc = uv_getaddrinfo(r->loop, &l->gai, on_looked_up, name, NULL, &hints);
        if (rc < 0) {
            l->answered = true; /* never to be: the caller hears it now */
            lookup_release(l);
            return rc == UV_ENOMEM ? -ENOMEM : -EIO;
        }
        l->in_pool = true;
        wait_ms = timeout_ms;
    }
    uv_timer_start(&l->timer, on_timer, wait_ms, 0);
    return 0;
}

size_t vs_resolver_pending(const vs_resolver *r)
{
    return r != NULL ? r->pending : 0;
}

void vs_resolver_free(vs_resolver *r)
{
    if (r == NULL)
        return;
    for (struct lookup *l = r->lookups, *next; l != NULL; l = next) {
        next = l->next;
        answer(l, -ECANCELED, NULL);
        if (l->in_pool)
            uv_cancel((uv_req_t *)&l->gai);
        lookup_release(l);
    }
    while (r->pending > 0 && uv_run(r->loop, UV_RUN_ONCE) != 0)
        ;
    free(r->fixed);
    free(r);
}
