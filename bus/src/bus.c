/*
 * bus.c - the NATS connection on a libuv loop: delivery to the loop thread,
 * typed publish/subscribe, and asynchronous request/reply.
 *
 * cnats reads the socket from the loop (libuv adapter) but runs message
 * callbacks on its delivery thread. Those callbacks only append to a locked
 * queue and uv_async_send; the loop drains the whole queue per wake-up, so a
 * burst costs one wake-up. Subscriptions are reference counted (owner, cnats
 * until its on-complete callback, each queued message) so that freeing one
 * while cnats still delivers is safe.
 *
 * Requests use one wildcard inbox subscription "<inbox>.*"; each request is
 * a numbered token in a hash table with its own timer. That one mechanism
 * also carries JetStream publish acks and the JetStream API (js.c), so no
 * call ever blocks the loop waiting for the server.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/adapters/libuv.h>

#include "bus_internal.h"
#include "vs/audit.h"
#include "vs/ids.h"
#include "vs/log.h"
#include "vs/subjects.h"

#define PENDING_BUCKETS 1024
#define PROGRESS_TICK_MS 200
#define INVALID_AUDIT_PER_SEC 10
#define SUB_PENDING_MSGS (1024 * 1024)
#define SUB_PENDING_BYTES (512 * 1024 * 1024)

enum event_kind { EV_MSG, EV_DISCONNECTED, EV_RECONNECTED, EV_CLOSED };

struct event {
    enum event_kind kind;
    vs_sub *sub;
    natsMsg *nm;
};

struct pending {
    struct pending *next;
    uint64_t token;
    vs_raw_reply_cb cb;
    void *arg;
    uv_timer_t timer;
    vs_bus *bus;
};

struct vs_bus {
    uv_loop_t *loop;
    natsConnection *nc;
    natsOptions *opts;
    char *component;
    size_t max_msg;

    uv_async_t wake;
    uv_mutex_t lock;
    struct event *inq;              /* guarded by lock */
    size_t inq_n, inq_cap;
    struct event *spare;            /* loop thread: the other buffer */
    size_t spare_cap;
    vs_msg *msg_cache;              /* loop thread: free vs_msg structs */
    unsigned msg_cached;
    uv_check_t drain;               /* delivers synchronous subscriptions */
    vs_sub *sync_subs;
    char checked_subject[256];      /* vs_bus_publish's last passed check */
    const ProtobufCMessageDescriptor *checked_desc;
    vs_sub *drain_next;             /* on_drain's cursor, kept valid by vs_sub_free */

    char inbox[64];
    vs_sub *inbox_sub;
    uint64_t next_token;
    struct pending *pending[PENDING_BUCKETS];
    size_t npending;

    uv_timer_t progress_timer;
    vs_msg *held;                   /* held JetStream messages */
    struct conn_watch *watch;
    atomic_int subs_live;           /* subscriptions cnats may still call into */

    atomic_bool connected;
    bool closing;
    int handles_open;
    int replicas;

    uint64_t invalid_window_s;
    unsigned invalid_audited;
    struct vs_bus_stats stats;
};

static void sub_release(vs_sub *s);
static void on_drain(uv_check_t *h);
static void deliver(vs_bus *bus, vs_sub *sub, natsMsg *nm);

/* ---- cross-thread queue ---------------------------------------------------- */

static void enqueue(vs_bus *bus, enum event_kind kind, vs_sub *sub, natsMsg *nm)
{
    uv_mutex_lock(&bus->lock);
    if (bus->inq_n == bus->inq_cap) {
        size_t cap = bus->inq_cap > 0 ? bus->inq_cap * 2 : 256;
        struct event *v = realloc(bus->inq, cap * sizeof(*v));
        if (v == NULL) {
            uv_mutex_unlock(&bus->lock);
            /* Out of memory on a cnats thread: drop, as a slow consumer would. */
            if (nm != NULL)
                natsMsg_Destroy(nm);
            if (sub != NULL)
                sub_release(sub);
            return;
        }
        bus->inq = v;
        bus->inq_cap = cap;
    }
    bus->inq[bus->inq_n++] = (struct event){.kind = kind, .sub = sub, .nm = nm};
    bool first = bus->inq_n == 1;
    uv_mutex_unlock(&bus->lock);
    if (first) /* otherwise a wake-up is already due */
        uv_async_send(&bus->wake);
}

/* Take the whole queue (one lock round per wake-up) by swapping buffers. */
static struct event *take_events(vs_bus *bus, size_t *n, size_t *cap)
{
    uv_mutex_lock(&bus->lock);
    struct event *batch = bus->inq;
    *n = bus->inq_n;
    *cap = bus->inq_cap;
    bus->inq = bus->spare;
    bus->inq_cap = bus->spare_cap;
    bus->inq_n = 0;
    uv_mutex_unlock(&bus->lock);
    bus->spare = NULL; /* a nested on_wake finds none and enqueue allocates */
    bus->spare_cap = 0;
    return batch;
}

static void give_back(vs_bus *bus, struct event *batch, size_t cap)
{
    if (bus->spare == NULL) {
        bus->spare = batch;
        bus->spare_cap = cap;
    } else {
        free(batch);
    }
}

static void on_wake(uv_async_t *h)
{
    vs_bus *bus = h->data;
    size_t n, cap;
    struct event *batch = take_events(bus, &n, &cap);
    for (size_t i = 0; i < n; i++) {
        struct event *ev = &batch[i];
        switch (ev->kind) {
        case EV_MSG:
            if (atomic_load(&ev->sub->dead) || bus->closing) {
                natsMsg_Destroy(ev->nm);
                sub_release(ev->sub);
            } else {
                deliver(bus, ev->sub, ev->nm); /* takes the message and the ref */
            }
            break;
        case EV_DISCONNECTED:
            bus->stats.disconnects++;
            if (!bus->closing)
                log_warnx("bus disconnected; cnats is reconnecting");
            break;
        case EV_RECONNECTED:
            bus->stats.reconnects++;
            log_info("bus reconnected");
            break;
        case EV_CLOSED:
            log_info("bus connection closed");
            break;
        }
    }
    give_back(bus, batch, cap);
}

/* ---- connection callbacks (cnats threads) ----------------------------------- */

/* cnats posts connection events from its own thread, possibly after the
 * bus is gone. They go through this watch, which the bus detaches from at
 * free time and which the closed callback - always the last one - frees. */
struct conn_watch {
    uv_mutex_t lock;
    vs_bus *bus;            /* NULL once the bus is freed */
};

static void watch_event(struct conn_watch *w, enum event_kind kind, bool connected)
{
    uv_mutex_lock(&w->lock);
    if (w->bus != NULL) {
        atomic_store(&w->bus->connected, connected);
        enqueue(w->bus, kind, NULL, NULL);
    }
    uv_mutex_unlock(&w->lock);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    watch_event(closure, EV_DISCONNECTED, false);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    watch_event(closure, EV_RECONNECTED, true);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    struct conn_watch *w = closure;
    watch_event(w, EV_CLOSED, false);
    uv_mutex_destroy(&w->lock);
    free(w);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    /* Slow consumer and similar; logging is thread-safe. */
    log_warnx("bus asynchronous error: %s", natsStatus_GetText(err));
}

/* ---- subscriptions ---------------------------------------------------------- */

static void sub_release(vs_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        free(s);
}

static void on_nats_msg(natsConnection *nc, natsSubscription *ns, natsMsg *nm, void *closure)
{
    (void)nc;
    (void)ns;
    vs_sub *sub = closure;
    atomic_fetch_add(&sub->refs, 1);
    enqueue(sub->bus, EV_MSG, sub, nm);
}

/* cnats is done with the subscription: no callback of it will follow.
 * The last statement is the last access to the bus from this thread. */
static void on_sub_complete(void *closure)
{
    vs_sub *sub = closure;
    vs_bus *bus = sub->bus;
    sub_release(sub);
    atomic_fetch_sub(&bus->subs_live, 1);
}

static int status_to_errno(natsStatus s)
{
    switch (s) {
    case NATS_OK: return 0;
    case NATS_NO_MEMORY: return -ENOMEM;
    case NATS_TIMEOUT: return -ETIMEDOUT;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER: return -ENOTCONN;
    case NATS_MAX_PAYLOAD: return -EMSGSIZE;
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG: return -EINVAL;
    case NATS_NOT_PERMITTED: return -EPERM;
    default: return -EIO;
    }
}

int vs__subscribe(vs_bus *bus, const char *subject, const char *queue,
                  const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                  bool jetstream, bool internal, uint64_t ack_wait_ms, uint64_t nak_delay_ms,
                  vs_sub **out)
{
    if (bus == NULL || subject == NULL || cb == NULL)
        return -EINVAL;
    vs_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    atomic_init(&s->refs, 2); /* the owner and cnats */
    atomic_init(&s->dead, false);
    s->bus = bus;
    s->desc = desc;
    s->cb = cb;
    s->arg = arg;
    s->jetstream = jetstream;
    s->internal = internal;
    s->ack_wait_ms = ack_wait_ms;
    s->nak_delay_ms = nak_delay_ms;

    natsStatus st;
    if (!internal) {
        /* Synchronous cnats subscription: the loop's own socket reads fill
         * it and the drain check handle delivers from it, on this thread,
         * with no delivery thread and no hand-off. (The internal inbox
         * stays asynchronous: natsSubscription_NextMsg swallows
         * no-responders replies, which requests need to see.) */
        if (queue != NULL)
            st = natsConnection_QueueSubscribeSync(&s->ns, bus->nc, subject, queue);
        else
            st = natsConnection_SubscribeSync(&s->ns, bus->nc, subject);
        if (st != NATS_OK) {
            free(s);
            return status_to_errno(st);
        }
        natsSubscription_SetPendingLimits(s->ns, SUB_PENDING_MSGS, SUB_PENDING_BYTES);
        atomic_store(&s->refs, 1); /* the owner only: cnats never calls back */
        s->sync = true;
        s->sync_next = bus->sync_subs;
        if (bus->sync_subs != NULL)
            bus->sync_subs->sync_prev = s;
        bus->sync_subs = s;
        *out = s;
        return 0;
    }
    if (queue != NULL)
        st = natsConnection_QueueSubscribe(&s->ns, bus->nc, subject, queue, on_nats_msg, s);
    else
        st = natsConnection_Subscribe(&s->ns, bus->nc, subject, on_nats_msg, s);
    if (st != NATS_OK) {
        free(s);
        return status_to_errno(st);
    }
    natsSubscription_SetPendingLimits(s->ns, SUB_PENDING_MSGS, SUB_PENDING_BYTES);
    atomic_fetch_add(&bus->subs_live, 1);
    if (natsSubscription_SetOnCompleteCB(s->ns, on_sub_complete, s) != NATS_OK) {
        /* Without the completion callback cnats holds no reference. */
        atomic_fetch_sub(&s->refs, 1);
        atomic_fetch_sub(&bus->subs_live, 1);
    }
    *out = s;
    return 0;
}

int vs_bus_subscribe(vs_bus *bus, const char *subject, const char *queue,
                     const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                     vs_sub **out)
{
    return vs__subscribe(bus, subject, queue, desc, cb, arg, false, false, 0, 0, out);
}

void vs_sub_free(vs_sub *sub)
{
    if (sub == NULL)
        return;
    atomic_store(&sub->dead, true);
    if (sub->sync) {
        if (sub->sync_prev != NULL)
            sub->sync_prev->sync_next = sub->sync_next;
        else
            sub->bus->sync_subs = sub->sync_next;
        if (sub->sync_next != NULL)
            sub->sync_next->sync_prev = sub->sync_prev;
        if (sub->bus->drain_next == sub)
            sub->bus->drain_next = sub->sync_next;
    }
    natsSubscription_Unsubscribe(sub->ns);
    natsSubscription_Destroy(sub->ns);
    sub->ns = NULL;
    sub_release(sub);
}

uint64_t vs_sub_delivered(const vs_sub *sub)
{
    return sub->delivered;
}

/* ---- messages ----------------------------------------------------------------- */

/* Parse "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>"
 * (also the 2.9 form with domain and account hash tokens). */
static bool parse_ack_subject(const char *reply, vs_msg *m)
{
    if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
        return false;
    const char *tok[12];
    size_t lens[12];
    size_t n = 0;
    const char *p = reply + 8;
    while (*p != '\0' && n < 12) {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        tok[n] = p;
        lens[n] = len;
        n++;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    size_t base;
    if (n == 7)
        base = 0;       /* stream consumer delivered sseq cseq ts pending */
    else if (n >= 9)
        base = 2;       /* domain accounthash stream consumer ... */
    else
        return false;
    if (lens[base] == 0 || lens[base] > VS_JS_STREAM_NAME_MAX)
        return false;
    memcpy(m->stream, tok[base], lens[base]);
    m->stream[lens[base]] = '\0';
    m->delivered = strtoull(tok[base + 2], NULL, 10);
    m->stream_seq = strtoull(tok[base + 3], NULL, 10);
    return true;
}

#define MSG_CACHE_MAX 64

static void *body_alloc(void *data, size_t size)
{
    vs_msg *m = data;
    size_t at = (m->arena_used + 15) & ~(size_t)15;
    if (size <= VS_MSG_ARENA && at <= VS_MSG_ARENA - size) {
        m->arena_used = at + size;
        return m->arena + at;
    }
    return malloc(size);
}

static void body_free(void *data, void *p)
{
    vs_msg *m = data;
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)m->arena;
    if (a < lo || a >= lo + VS_MSG_ARENA)
        free(p);
}

static void msg_free(vs_msg *m)
{
    if (m->body != NULL)
        protobuf_c_message_free_unpacked(m->body, &m->body_alloc);
    natsMsg_Destroy(m->nm);
    sub_release(m->sub);
    vs_bus *bus = m->bus;
    if (bus->msg_cached < MSG_CACHE_MAX) {
        m->held_next = bus->msg_cache;
        bus->msg_cache = m;
        bus->msg_cached++;
    } else {
        free(m);
    }
}

static vs_msg *msg_alloc(vs_bus *bus)
{
    vs_msg *m = bus->msg_cache;
    if (m == NULL) {
        if ((m = malloc(sizeof(*m))) == NULL)
            return NULL;
    } else {
        bus->msg_cache = m->held_next;
        bus->msg_cached--;
    }
    memset(m, 0, offsetof(vs_msg, arena));
    m->body_alloc = (ProtobufCAllocator){body_alloc, body_free, m};
    return m;
}

static void held_unlink(vs_msg *m)
{
    if (!m->held)
        return;
    if (m->held_prev != NULL)
        m->held_prev->held_next = m->held_next;
    else
        m->bus->held = m->held_next;
    if (m->held_next != NULL)
        m->held_next->held_prev = m->held_prev;
    m->held = false;
}

/* Send an ack-protocol token for a JetStream message and release it when
 * the token resolves it. */
static int js_reply(vs_msg *m, const char *token, bool resolves)
{
    if (!m->sub->jetstream)
        return -EINVAL;
    if (m->resolved)
        return -EALREADY;
    const char *ack = natsMsg_GetReply(m->nm);
    if (ack == NULL)
        return -EINVAL;
    natsStatus st = natsConnection_Publish(m->bus->nc, ack, token, (int)strlen(token));
    if (!resolves)
        return status_to_errno(st);
    m->resolved = true;
    if (m->held) {
        held_unlink(m);
        if (!m->in_handler) /* otherwise deliver() frees it on return */
            msg_free(m);
    }
    return status_to_errno(st);
}

int vs_msg_ack(vs_msg *m)
{
    return js_reply(m, "+ACK", true);
}

int vs_msg_nak(vs_msg *m, uint64_t delay_ms)
{
    char buf[64];
    if (delay_ms == 0)
        snprintf(buf, sizeof(buf), "-NAK");
    else
        snprintf(buf, sizeof(buf), "-NAK {\"delay\": %" PRIu64 "}", delay_ms * 1000000u);
    return js_reply(m, buf, true);
}

int vs_msg_term(vs_msg *m)
{
    return js_reply(m, "+TERM", true);
}

int vs_msg_in_progress(vs_msg *m)
{
    m->last_progress_ms = vs_mono_ms();
    return js_reply(m, "+WPI", false);
}

vs_msg *vs_msg_hold(vs_msg *m)
{
    if (m->held || m->resolved)
        return m;
    m->held = true;
    m->last_progress_ms = vs_mono_ms();
    m->held_prev = NULL;
    m->held_next = m->bus->held;
    if (m->bus->held != NULL)
        m->bus->held->held_prev = m;
    m->bus->held = m;
    return m;
}

/* Release a core message held by its handler (it cannot be acked). */
static void release_if_core(vs_msg *m)
{
    if (!m->sub->jetstream && m->held) {
        held_unlink(m);
        msg_free(m);
    }
}

const char *vs_msg_subject(const vs_msg *m)
{
    return natsMsg_GetSubject(m->nm);
}

const char *vs_msg_header(const vs_msg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m->nm, name, &v) != NATS_OK)
        return NULL;
    return v;
}

const char *vs_msg_reply_to(const vs_msg *m)
{
    const char *r = m->sub->jetstream ? vs_msg_header(m, VS_HDR_REPLY_TO) : natsMsg_GetReply(m->nm);
    return vs__reply_subject_ok(r) ? r : NULL;
}

const uint8_t *vs_msg_data(const vs_msg *m, size_t *len)
{
    *len = (size_t)natsMsg_GetDataLength(m->nm);
    return (const uint8_t *)natsMsg_GetData(m->nm);
}

const ProtobufCMessage *vs_msg_body(const vs_msg *m)
{
    return m->body;
}

bool vs_msg_is_jetstream(const vs_msg *m)
{
    return m->sub->jetstream;
}

uint64_t vs_msg_stream_seq(const vs_msg *m)
{
    return m->stream_seq;
}

uint64_t vs_msg_delivery_count(const vs_msg *m)
{
    return m->delivered;
}

const char *vs_msg_stream(const vs_msg *m)
{
    return m->stream[0] != '\0' ? m->stream : NULL;
}

vs_bus *vs_msg_bus(const vs_msg *m)
{
    return m->bus;
}

bool vs__reply_subject_ok(const char *s)
{
    if (s == NULL || strncmp(s, VS_INBOX_PREFIX, strlen(VS_INBOX_PREFIX)) != 0)
        return false;
    size_t n = strlen(s);
    if (n > VS_SUBJECT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return s[n - 1] != '.' && strstr(s, "..") == NULL;
}

int vs_msg_respond(vs_msg *m, const ProtobufCMessage *reply)
{
    const char *to = vs_msg_reply_to(m);
    if (to == NULL)
        return -ENOENT;
    if (m->responded)
        return -EALREADY;
    uint8_t *buf;
    size_t len;
    int rc = vs__pack(m->bus, reply, &buf, &len);
    if (rc < 0)
        return rc;
    rc = vs__publish(m->bus, to, NULL, buf, len, NULL, 0);
    free(buf);
    if (rc == 0)
        m->responded = true;
    return rc;
}

int vs_msg_respond_status(vs_msg *m, Vs__V1__StatusCode code, const char *reason)
{
    /* Every reply type has Status as field 1, so a message holding only
     * that field decodes as any of them. */
    Vs__V1__Status status = VS__V1__STATUS__INIT;
    status.code = code;
    status.reason = (char *)(reason != NULL ? reason : "");
    size_t inner = vs__v1__status__get_packed_size(&status);
    uint8_t buf[512];
    if (inner + 8 > sizeof(buf))
        return -EMSGSIZE;
    size_t off = 0;
    buf[off++] = 0x0a; /* field 1, wire type 2 */
    size_t v = inner;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        buf[off++] = (uint8_t)(b | (v != 0 ? 0x80 : 0));
    } while (v != 0);
    off += vs__v1__status__pack(&status, buf + off);

    const char *to = vs_msg_reply_to(m);
    if (to == NULL)
        return -ENOENT;
    if (m->responded)
        return -EALREADY;
    int rc = vs__publish(m->bus, to, NULL, buf, off, NULL, 0);
    if (rc == 0)
        m->responded = true;
    return rc;
}

void vs__bus_count_invalid(vs_bus *bus, const char *subject, const char *why)
{
    bus->stats.invalid++;
    /* An attacker can send garbage as fast as the network allows; every
     * message is counted, but only a few per second are audited. */
    uint64_t now_s = vs_mono_ms() / 1000;
    if (now_s != bus->invalid_window_s) {
        bus->invalid_window_s = now_s;
        bus->invalid_audited = 0;
    }
    if (bus->invalid_audited++ >= INVALID_AUDIT_PER_SEC)
        return;
    log_warnx("dropped invalid message on %s: %s", subject, why);
    vs_audit_emit(bus, "bus", VS__V1__SEVERITY__SEVERITY_WARNING, NULL, NULL, "invalid_message",
                  "subject", subject, "reason", why, NULL);
}

/* Hand one message to its subscription's handler and apply the result. */
static void deliver(vs_bus *bus, vs_sub *sub, natsMsg *nm)
{
    vs_msg *m = msg_alloc(bus);
    if (m == NULL) {
        natsMsg_Destroy(nm);
        sub_release(sub);
        return;
    }
    m->bus = bus;
    m->sub = sub;
    m->nm = nm;
    sub->delivered++;
    if (!sub->internal)
        bus->stats.received++;

    if (!sub->internal && natsMsg_IsNoResponders(nm)) {
        /* A server status for a request someone else sent on this
         * subject, not a message. */
        msg_free(m);
        return;
    }
    if (sub->jetstream && !parse_ack_subject(natsMsg_GetReply(nm), m)) {
        /* Flow-control or heartbeat messages, or a forged delivery. */
        msg_free(m);
        return;
    }

    size_t len = (size_t)natsMsg_GetDataLength(nm);
    const char *why = NULL;
    if (len > bus->max_msg) {
        why = "oversized";
    } else if (sub->desc != NULL) {
        m->body = protobuf_c_message_unpack(sub->desc, &m->body_alloc, len,
                                            (const uint8_t *)natsMsg_GetData(nm));
        if (m->body == NULL)
            why = "undecodable";
    }
    if (why != NULL) {
        vs__bus_count_invalid(bus, natsMsg_GetSubject(nm), why);
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID, "malformed message");
        if (sub->jetstream)
            vs_msg_term(m);
        msg_free(m);
        return;
    }

    m->in_handler = true;
    int rc = sub->cb(m, sub->arg);
    m->in_handler = false;
    if (!sub->internal) {
        if (rc == 0)
            bus->stats.handled++;
        else
            bus->stats.errors++;
    }
    if (m->held) {
        release_if_core(m);
        return; /* the handler resolves it later */
    }
    if (sub->jetstream && !m->resolved) {
        if (rc == 0)
            vs_msg_ack(m);
        else if (rc == VS_RETRY)
            vs_msg_nak(m, sub->nak_delay_ms);
        else
            vs_msg_term(m);
    }
    msg_free(m);
}

/* Keep held JetStream messages alive on the server. */
static void on_progress_tick(uv_timer_t *t)
{
    vs_bus *bus = t->data;
    uint64_t now = vs_mono_ms();
    for (vs_msg *m = bus->held; m != NULL; m = m->held_next) {
        uint64_t every = m->sub->ack_wait_ms / 3;
        if (every < PROGRESS_TICK_MS)
            every = PROGRESS_TICK_MS;
        if (now - m->last_progress_ms >= every)
            vs_msg_in_progress(m);
    }
}

/* ---- publishing -------------------------------------------------------------- */

int vs__pack(vs_bus *bus, const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > bus->max_msg)
        return -EMSGSIZE;
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL)
        return -ENOMEM;
    protobuf_c_message_pack(msg, buf);
    *out = buf;
    *len = n;
    return 0;
}

int vs__publish(vs_bus *bus, const char *subject, const char *reply, const void *data, size_t len,
                const char *const *hdrs, size_t nhdr)
{
    if (bus == NULL || subject == NULL)
        return -EINVAL;
    if (len > bus->max_msg)
        return -EMSGSIZE;
    natsStatus st;
    if (nhdr == 0) {
        st = reply != NULL ? natsConnection_PublishRequest(bus->nc, subject, reply, data, (int)len)
                           : natsConnection_Publish(bus->nc, subject, data, (int)len);
    } else {
        natsMsg *nm = NULL;
        st = natsMsg_Create(&nm, subject, reply, data, (int)len);
        for (size_t i = 0; st == NATS_OK && i < nhdr; i++)
            st = natsMsgHeader_Set(nm, hdrs[2 * i], hdrs[2 * i + 1]);
        if (st == NATS_OK)
            st = natsConnection_PublishMsg(bus->nc, nm);
        natsMsg_Destroy(nm);
    }
    if (st == NATS_OK)
        bus->stats.published++;
    return status_to_errno(st);
}

/* A message type may only go to subjects whose table row names it. */
static int check_subject_type(const char *subject, const ProtobufCMessage *msg)
{
    if (strncmp(subject, "vs.", 3) != 0)
        return 0;
    const struct vs_subject_def *def = vs_subject_match(subject);
    if (def == NULL)
        return -EINVAL;
    if (def->message != msg->descriptor)
        return -EPROTOTYPE;
    return 0;
}

int vs_bus_publish(vs_bus *bus, const char *subject, const ProtobufCMessage *msg)
{
    if (bus == NULL || subject == NULL || msg == NULL)
        return -EINVAL;
    /* The subject table scan costs more than the publish: remember the last
     * subject that passed for this message type. */
    int rc = 0;
    if (bus->checked_desc != msg->descriptor || strcmp(bus->checked_subject, subject) != 0) {
        rc = check_subject_type(subject, msg);
        if (rc < 0)
            return rc;
        if (strlen(subject) < sizeof(bus->checked_subject)) {
            strcpy(bus->checked_subject, subject);
            bus->checked_desc = msg->descriptor;
        }
    }
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > bus->max_msg)
        return -EMSGSIZE;
    uint8_t small[512];
    uint8_t *buf = len <= sizeof(small) ? small : malloc(len);
    if (buf == NULL)
        return -ENOMEM;
    protobuf_c_message_pack(msg, buf);
    rc = vs__publish(bus, subject, NULL, buf, len, NULL, 0);
    if (buf != small)
        free(buf);
    return rc;
}

int vs_bus_publish_raw(vs_bus *bus, const char *subject, const char *reply, const void *data,
                       size_t len, const char *const *hdrs, size_t nhdr)
{
    return vs__publish(bus, subject, reply, data, len, hdrs, nhdr);
}

/* ---- pending requests ------------------------------------------------------------ */

static struct pending **pending_slot(vs_bus *bus, uint64_t token)
{
    struct pending **pp = &bus->pending[token % PENDING_BUCKETS];
    while (*pp != NULL && (*pp)->token != token)
        pp = &(*pp)->next;
    return pp;
}

static void on_pending_timer_closed(uv_handle_t *h)
{
    struct pending *p = h->data;
    p->bus->handles_open--;
    free(p);
}

/* Remove p from the table and run its callback once. */
static void pending_complete(struct pending *p, int status, vs_msg *reply)
{
    vs_bus *bus = p->bus;
    struct pending **pp = pending_slot(bus, p->token);
    if (*pp == p) {
        *pp = p->next;
        bus->npending--;
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_pending_timer_closed);
    p->cb(status, reply, p->arg);
}

static void on_pending_timeout(uv_timer_t *t)
{
    pending_complete(t->data, -ETIMEDOUT, NULL);
}

int vs__pending_add(vs_bus *bus, uint64_t timeout_ms, vs_raw_reply_cb cb, void *arg,
                    char *inbox, size_t size, uint64_t *token)
{
    if (bus->closing)
        return -ECANCELED;
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->token = ++bus->next_token;
    p->cb = cb;
    p->arg = arg;
    p->bus = bus;
    int n = snprintf(inbox, size, "%s.%" PRIu64, bus->inbox, p->token);
    if (n < 0 || (size_t)n >= size) {
        free(p);
        return -ENAMETOOLONG;
    }
    uv_timer_init(bus->loop, &p->timer);
    bus->handles_open++;
    p->timer.data = p;
    uv_timer_start(&p->timer, on_pending_timeout, timeout_ms, 0);
    struct pending **pp = &bus->pending[p->token % PENDING_BUCKETS];
    p->next = *pp;
    *pp = p;
    bus->npending++;
    if (token != NULL)
        *token = p->token;
    return 0;
}

void vs__pending_fail(vs_bus *bus, uint64_t token, int status)
{
    struct pending *p = *pending_slot(bus, token);
    if (p != NULL)
        pending_complete(p, status, NULL);
}

/* Withdraw a request that could not be sent, without calling back; returns
 * its callback argument for the caller to release. */
static void *pending_take_back(vs_bus *bus, uint64_t token)
{
    struct pending **pp = pending_slot(bus, token);
    struct pending *p = *pp;
    if (p == NULL)
        return NULL;
    *pp = p->next;
    bus->npending--;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_pending_timer_closed);
    return p->arg;
}

static int on_inbox_msg(vs_msg *m, void *arg)
{
    vs_bus *bus = arg;
    const char *subj = vs_msg_subject(m);
    const char *last = strrchr(subj, '.');
    if (last == NULL)
        return 0;
    char *end;
    uint64_t token = strtoull(last + 1, &end, 10);
    if (*end != '\0')
        return 0;
    struct pending *p = *pending_slot(bus, token);
    if (p == NULL)
        return 0; /* late or duplicate reply: the first one won */
    if (natsMsg_IsNoResponders(m->nm))
        pending_complete(p, -EHOSTUNREACH, NULL);
    else
        pending_complete(p, 0, m);
    return 0;
}

int vs_bus_new_inbox(vs_bus *bus, char *out, size_t size)
{
    /* Two tokens below the inbox: not routed to the request inbox "<inbox>.*". */
    int n = snprintf(out, size, "%s.u.%" PRIu64, bus->inbox, ++bus->next_token);
    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

int vs_bus_request_raw(vs_bus *bus, const char *subject, const void *data, size_t len,
                       const char *const *hdrs, size_t nhdr, uint64_t timeout_ms,
                       vs_raw_reply_cb cb, void *arg)
{
    if (bus == NULL || subject == NULL || cb == NULL)
        return -EINVAL;
    if (len > bus->max_msg)
        return -EMSGSIZE;
    char inbox[128];
    uint64_t token;
    int rc = vs__pending_add(bus, timeout_ms, cb, arg, inbox, sizeof(inbox), &token);
    if (rc < 0)
        return rc;
    rc = vs__publish(bus, subject, inbox, data, len, hdrs, nhdr);
    if (rc < 0)
        pending_take_back(bus, token);
    return rc;
}

struct typed_request {
    const ProtobufCMessageDescriptor *desc;
    vs_reply_cb cb;
    void *arg;
};

static void on_typed_reply(int status, vs_msg *reply, void *arg)
{
    struct typed_request *tr = arg;
    if (status < 0) {
        tr->cb(status, NULL, tr->arg);
        free(tr);
        return;
    }
    size_t len;
    const uint8_t *data = vs_msg_data(reply, &len);
    ProtobufCMessage *body = NULL;
    if (len <= reply->bus->max_msg)
        body = protobuf_c_message_unpack(tr->desc, NULL, len, data);
    if (body == NULL) {
        tr->cb(-EBADMSG, NULL, tr->arg);
    } else {
        tr->cb(0, body, tr->arg);
        protobuf_c_message_free_unpacked(body, NULL);
    }
    free(tr);
}

int vs__pending_add_typed(vs_bus *bus, const ProtobufCMessageDescriptor *desc, uint64_t timeout_ms,
                          vs_reply_cb cb, void *arg, char *inbox, size_t size, uint64_t *token)
{
    struct typed_request *tr = malloc(sizeof(*tr));
    if (tr == NULL)
        return -ENOMEM;
    tr->desc = desc;
    tr->cb = cb;
    tr->arg = arg;
    int rc = vs__pending_add(bus, timeout_ms, on_typed_reply, tr, inbox, size, token);
    if (rc < 0)
        free(tr);
    return rc;
}

int vs_bus_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *reply_desc, uint64_t timeout_ms,
                   vs_reply_cb cb, void *arg)
{
    if (bus == NULL || subject == NULL || req == NULL || reply_desc == NULL || cb == NULL)
        return -EINVAL;
    int rc = check_subject_type(subject, req);
    uint8_t *buf = NULL;
    size_t len;
    if (rc == 0)
        rc = vs__pack(bus, req, &buf, &len);
    char inbox[128];
    uint64_t token;
    if (rc == 0)
        rc = vs__pending_add_typed(bus, reply_desc, timeout_ms, cb, arg, inbox, sizeof(inbox),
                                   &token);
    if (rc == 0 && (rc = vs__publish(bus, subject, inbox, buf, len, NULL, 0)) < 0)
        free(pending_take_back(bus, token));
    free(buf);
    return rc;
}

/* ---- flush --------------------------------------------------------------------- */

struct flush_ctx {
    vs_bus_done_cb cb;
    void *arg;
};

static void on_flush_reply(int status, vs_msg *reply, void *arg)
{
    (void)reply;
    struct flush_ctx *f = arg;
    f->cb(status, f->arg);
    free(f);
}

int vs_bus_flush(vs_bus *bus, uint64_t timeout_ms, vs_bus_done_cb cb, void *arg)
{
    /* The server handles a connection's messages in order: once a message
     * to our own inbox comes back, everything before it was processed. */
    struct flush_ctx *f = malloc(sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->cb = cb;
    f->arg = arg;
    char inbox[128];
    uint64_t token;
    int rc = vs__pending_add(bus, timeout_ms, on_flush_reply, f, inbox, sizeof(inbox), &token);
    if (rc == 0 && (rc = vs__publish(bus, inbox, NULL, "", 0, NULL, 0)) < 0)
        pending_take_back(bus, token);
    if (rc < 0)
        free(f);
    return rc;
}

/* ---- life cycle --------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    vs_bus *bus = h->data;
    bus->handles_open--;
}

static int set_options(vs_bus *bus, const struct vs_bus_opts *o)
{
    natsOptions *opts = NULL;
    natsStatus st = natsOptions_Create(&opts);
    if (st != NATS_OK)
        return -ENOMEM;
    bus->opts = opts;
    const char *url = o->url != NULL ? o->url : VS_BUS_DEFAULT_URL;
    st = natsOptions_SetURL(opts, url);
    if (st == NATS_OK && o->name != NULL)
        st = natsOptions_SetName(opts, o->name);
    if (st == NATS_OK && o->user != NULL)
        st = natsOptions_SetUserInfo(opts, o->user, o->password);
    if (st == NATS_OK && o->creds_file != NULL)
        st = natsOptions_SetUserCredentialsFromFiles(opts, o->creds_file, NULL);
    if (st == NATS_OK)
        st = natsOptions_SetTimeout(opts, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000);
    if (st == NATS_OK)
        st = natsOptions_SetMaxReconnect(opts, -1);
    if (st == NATS_OK)
        st = natsOptions_SetReconnectWait(opts, 250);
    if (st == NATS_OK)
        st = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
    if (st == NATS_OK)
        st = natsOptions_UseGlobalMessageDelivery(opts, true);
    /* Every publish happens on the loop thread: arm the adapter's write
     * event at once instead of kicking cnats' flusher thread, which waits
     * 1 ms "to accumulate more" before it asks the loop to write. */
    if (st == NATS_OK)
        st = natsOptions_SetSendAsap(opts, true);
    if (st == NATS_OK)
        st = natsOptions_SetDisconnectedCB(opts, on_disconnected, bus->watch);
    if (st == NATS_OK)
        st = natsOptions_SetReconnectedCB(opts, on_reconnected, bus->watch);
    if (st == NATS_OK)
        st = natsOptions_SetClosedCB(opts, on_closed, bus->watch);
    if (st == NATS_OK)
        st = natsOptions_SetErrorHandler(opts, on_async_error, bus);
    if (st == NATS_OK)
        st = natsOptions_SetEventLoop(opts, bus->loop, natsLibuv_Attach, natsLibuv_Read,
                                      natsLibuv_Write, natsLibuv_Detach);
    return st == NATS_OK ? 0 : -EINVAL;
}

int vs_bus_new(uv_loop_t *loop, const struct vs_bus_opts *o, vs_bus **out)
{
    static uv_once_t once = UV_ONCE_INIT;
    if (loop == NULL || o == NULL || out == NULL)
        return -EINVAL;
    uv_once(&once, natsLibuv_Init);
    natsLibuv_SetThreadLocalLoop(loop);

    vs_bus *bus = calloc(1, sizeof(*bus));
    if (bus == NULL)
        return -ENOMEM;
    bus->loop = loop;
    bus->max_msg = o->max_msg > 0 ? o->max_msg : VS_BUS_DEFAULT_MAX_MSG;
    bus->replicas = o->replicas > 0 ? o->replicas : 1;
    bus->component = strdup(o->component != NULL ? o->component
                            : o->name != NULL     ? o->name
                                                  : "vs");
    atomic_init(&bus->connected, false);
    atomic_init(&bus->subs_live, 0);
    bus->watch = calloc(1, sizeof(*bus->watch));
    if (bus->component == NULL || bus->watch == NULL || uv_mutex_init(&bus->lock) != 0 ||
        uv_mutex_init(&bus->watch->lock) != 0) {
        free(bus->watch);
        free(bus->component);
        free(bus);
        return -ENOMEM;
    }
    bus->watch->bus = bus;
    uv_async_init(loop, &bus->wake, on_wake);
    uv_check_init(loop, &bus->drain);
    bus->drain.data = bus;
    uv_check_start(&bus->drain, on_drain);
    uv_unref((uv_handle_t *)&bus->drain); /* does not keep the loop alive */
    bus->wake.data = bus;
    uv_timer_init(loop, &bus->progress_timer);
    bus->progress_timer.data = bus;
    bus->handles_open = 3;

    int rc = set_options(bus, o);
    int attempts = o->connect_attempts > 0 ? o->connect_attempts : 20;
    natsStatus st = NATS_ERR;
    for (int i = 0; rc == 0 && i < attempts; i++) {
        st = natsConnection_Connect(&bus->nc, bus->opts);
        if (st == NATS_OK || st == NATS_NOT_PERMITTED || st == NATS_INVALID_ARG)
            break;
        uv_sleep(250);
    }
    if (rc == 0 && st != NATS_OK) {
        log_warnx("cannot connect to %s: %s", o->url != NULL ? o->url : VS_BUS_DEFAULT_URL,
                  natsStatus_GetText(st));
        rc = st == NATS_NO_SERVER ? -ECONNREFUSED : status_to_errno(st);
    }
    if (rc == 0) {
        atomic_store(&bus->connected, true);
        int64_t server_max = natsConnection_GetMaxPayload(bus->nc);
        if (server_max > 0 && (size_t)server_max < bus->max_msg)
            bus->max_msg = (size_t)server_max;
        natsInbox *ib = NULL;
        if (natsInbox_Create(&ib) == NATS_OK) {
            snprintf(bus->inbox, sizeof(bus->inbox), "%s", (const char *)ib);
            natsInbox_Destroy(ib);
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        char wild[80];
        snprintf(wild, sizeof(wild), "%s.*", bus->inbox);
        rc = vs__subscribe(bus, wild, NULL, NULL, on_inbox_msg, bus, false, true, 0, 0,
                           &bus->inbox_sub);
    }
    if (rc < 0) {
        vs_bus_free(bus);
        return rc;
    }
    uv_timer_start(&bus->progress_timer, on_progress_tick, PROGRESS_TICK_MS, PROGRESS_TICK_MS);
    *out = bus;
    return 0;
}

static void on_final_flush(int status, void *arg)
{
    (void)status;
    *(bool *)arg = true;
}

void vs_bus_free(vs_bus *bus)
{
    if (bus == NULL)
        return;
    if (bus->nc != NULL && atomic_load(&bus->connected) && !bus->closing) {
        /* Let outstanding requests (publish acks of audit events, ...)
         * complete, within a bound. */
        uint64_t deadline = vs_mono_ms() + 2000;
        while (bus->npending > 0 && vs_mono_ms() < deadline)
            uv_run(bus->loop, UV_RUN_ONCE);
        /* Make sure the server has everything we published. */
        bool flushed = false;
        if (vs_bus_flush(bus, 2000, on_final_flush, &flushed) == 0)
            vs_bus_run_until(bus, &flushed, 3000);
    }
    bus->closing = true;
    /* No UNSUB for the inbox: it would sit in the write buffer and make
     * natsConnection_Close wait 500 ms for a PONG that only this thread
     * could read. Closing drops the subscription on both sides anyway. */
    vs_sub *inbox = bus->inbox_sub;
    bus->inbox_sub = NULL;
    if (inbox != NULL)
        atomic_store(&inbox->dead, true);
    for (size_t i = 0; i < PENDING_BUCKETS; i++)
        while (bus->pending[i] != NULL)
            pending_complete(bus->pending[i], -ECANCELED, NULL);
    while (bus->held != NULL) {
        vs_msg *m = bus->held;
        held_unlink(m);
        msg_free(m); /* unacked: the server redelivers it to another instance */
    }
    uv_mutex_lock(&bus->watch->lock);
    bus->watch->bus = NULL;
    uv_mutex_unlock(&bus->watch->lock);
    if (bus->nc != NULL) {
        natsConnection_Close(bus->nc); /* its closed callback frees the watch */
        if (inbox != NULL) {
            natsSubscription_Destroy(inbox->ns);
            inbox->ns = NULL;
            sub_release(inbox);
            inbox = NULL;
        }
        natsConnection_Destroy(bus->nc);
        bus->nc = NULL;
    } else {
        uv_mutex_destroy(&bus->watch->lock);
        free(bus->watch);
    }
    if (inbox != NULL)
        vs_sub_free(inbox);
    natsOptions_Destroy(bus->opts);
    /* Closing removed every subscription; wait (bounded) until cnats has
     * finished calling into them, so that none can reach a freed bus. */
    for (int i = 0; i < 5000 && atomic_load(&bus->subs_live) > 0; i++)
        uv_sleep(1);
    uv_timer_stop(&bus->progress_timer);
    uv_close((uv_handle_t *)&bus->progress_timer, on_handle_closed);
    uv_close((uv_handle_t *)&bus->wake, on_handle_closed);
    uv_check_stop(&bus->drain);
    uv_close((uv_handle_t *)&bus->drain, on_handle_closed);
    for (int i = 0; i < 1000 && bus->handles_open > 0; i++)
        uv_run(bus->loop, UV_RUN_NOWAIT);
    /* Run the adapter's detach close callbacks too. */
    for (int i = 0; i < 4; i++)
        uv_run(bus->loop, UV_RUN_NOWAIT);
    size_t n, cap;
    struct event *batch = take_events(bus, &n, &cap);
    for (size_t i = 0; i < n; i++) {
        if (batch[i].nm != NULL)
            natsMsg_Destroy(batch[i].nm);
        if (batch[i].sub != NULL)
            sub_release(batch[i].sub);
    }
    free(batch);
    free(bus->inq);
    free(bus->spare);
    while (bus->msg_cache != NULL) {
        vs_msg *m = bus->msg_cache;
        bus->msg_cache = m->held_next;
        free(m);
    }
    uv_mutex_destroy(&bus->lock);
    free(bus->component);
    free(bus);
}

uv_loop_t *vs_bus_loop(vs_bus *bus)
{
    return bus->loop;
}

bool vs_bus_connected(vs_bus *bus)
{
    return atomic_load(&bus->connected);
}

size_t vs_bus_max_msg(vs_bus *bus)
{
    return bus->max_msg;
}

void vs_bus_stats_get(vs_bus *bus, struct vs_bus_stats *out)
{
    *out = bus->stats;
}

int vs__bus_replicas(vs_bus *bus)
{
    return bus->replicas;
}

const char *vs_bus_component(vs_bus *bus)
{
    return bus->component;
}

static void on_run_timeout(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void on_local_closed(uv_handle_t *h)
{
    *(bool *)h->data = true;
}

int vs_bus_run_until(vs_bus *bus, const bool *done, uint64_t timeout_ms)
{
    bool timed_out = false, closed = false;
    uv_timer_t timer;
    uv_timer_init(bus->loop, &timer);
    timer.data = &timed_out;
    if (timeout_ms > 0)
        uv_timer_start(&timer, on_run_timeout, timeout_ms, 0);
    while (!*done && !timed_out)
        uv_run(bus->loop, UV_RUN_ONCE);
    timer.data = &closed;
    uv_close((uv_handle_t *)&timer, on_local_closed);
    while (!closed)
        uv_run(bus->loop, UV_RUN_NOWAIT);
    return *done ? 0 : -ETIMEDOUT;
}

/* Deliver what the loop's own socket reads queued on synchronous
 * subscriptions (runs after every poll phase). */
static void on_drain(uv_check_t *h)
{
    vs_bus *bus = h->data;
    for (vs_sub *s = bus->sync_subs; s != NULL && !bus->closing; s = bus->drain_next) {
        bus->drain_next = s->sync_next;
        int n = 0;
        if (natsSubscription_GetPending(s->ns, &n, NULL) != NATS_OK)
            continue;
        atomic_fetch_add(&s->refs, 1); /* s may be freed by its handler */
        for (int i = 0; i < n && !atomic_load(&s->dead) && !bus->closing; i++) {
            natsMsg *nm = NULL;
            natsStatus st = natsSubscription_NextMsg(&nm, s->ns, 0);
            if (st == NATS_SLOW_CONSUMER)
                continue; /* reported once; the messages after it are there */
            if (st != NATS_OK)
                break;
            atomic_fetch_add(&s->refs, 1);
            deliver(bus, s, nm);
        }
        sub_release(s);
    }
    bus->drain_next = NULL;
}
