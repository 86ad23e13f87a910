/*
 * vs-auditd.c - the audit daemon: appends every event of the AUDIT stream
 * (vs.audit.>) to the audit store (hash chain + RFC 6962 Merkle tree in
 * LMDB), signs checkpoints in the C2SP tlog-checkpoint format, publishes
 * them on vs.checkpoint.audit, and answers proofs (vs.auditlog.prove) and
 * queries (vs.auditlog.query). DESIGN.md section 7; README "Audit log".
 *
 * Why it is shaped this way:
 *  - Group commit. Deliveries are held (vs_msg_hold) and appended on the
 *    next loop turn (a uv_idle handle: everything the bus drained in one
 *    wake-up), in LMDB transactions of at most auditd.batch events, then
 *    acked after the commit: one fsync per batch, not per event, and
 *    nothing is acked before it is durable.
 *  - Exactly once, in stream order. The store records the highest applied
 *    stream sequence and skips anything at or below it, so the daemon must
 *    hand it events in stream order with no hole that a later redelivery
 *    would fill: a push consumer redelivers an unacked message only after
 *    its ack wait, after newer ones (a crash, a lost ack). So events wait
 *    in a reorder queue until they are contiguous with what is stored. A
 *    hole that persists (GAP_WAIT_MS) is filled by reading the missing
 *    sequence straight from the stream ($JS.API.STREAM.MSG.GET); a
 *    sequence the stream no longer has (age or size limits) is skipped
 *    with a warning event, since waiting for it would stop the log.
 *    Consequence: size == the number of messages the stream delivered,
 *    even after kill -9 at any point. After a crash, the dead instance's
 *    unacked deliveries still count against MaxAckPending (4096) until
 *    their ack wait (auditd.ack_wait, 10s) expires, so new events may wait
 *    that long.
 *  - Raw consumption. Events are stored as received, byte for byte; the
 *    store indexes what decodes and keeps what does not (the log records
 *    what arrived), so the consumer does not unpack them.
 *  - Checkpoints every auditd.checkpoint_every entries or
 *    auditd.checkpoint_interval (when the log grew), at most one per
 *    CHECKPOINT_MIN_GAP_MS so that a flood cannot fill the CHECKPOINTS
 *    stream, and one more at shutdown. Each is stored with the log first
 *    (it survives a bus outage), then published (stream without delete or
 *    purge).
 *  - Key rotation (auditd.next_key): the next checkpoint is signed with
 *    both keys under the same name (the note spec allows it: verifiers
 *    ignore keys they do not know), and a "key_rotated" audit event names
 *    both key hashes; later checkpoints use only the new key. Whether the
 *    rotation is done is read from the store's last checkpoint, so a
 *    restart never rotates twice. See the README for the operator steps.
 *  - Narrowing: LMDB needs nothing beyond the base allowlist (pwrite64,
 *    fdatasync, msync, ftruncate, fallocate are in it); the integration
 *    test checks Seccomp: 2 on a working daemon.
 * One auditd per store: LMDB has one writer; the consumer's deliver group
 * would split events between two instances and each would see holes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "vs/audit.h"
#include "vs/audit_codec.h"
#include "vs/audit_store.h"
#include "vs/checkpoint.h"
#include "vs/daemon.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/subjects.h"
#include "vs/v1/audit.pb-c.h"

#define DEFAULT_ORIGIN "vibeshield/audit"
#define DURABLE "auditd"
/* The consumer's window: deliveries held while a commit runs. 4096 keeps
 * the server pushing during an fsync (bench_auditd: ~80k events/s against
 * ~48k with 1024 on the same host); each held event is its bus message. */
#define MAX_ACK_PENDING 4096
#define MAX_DELIVER 1000000          /* never drop an audit event for redeliveries */
#define GAP_WAIT_MS 300              /* a hole older than this is filled from the stream */
#define APPEND_RETRY_MS 1000
#define CHECKPOINT_MIN_GAP_MS 250
#define QUERY_MAX_LIMIT 1000
#define QUERY_DEFAULT_LIMIT 100
#define REPLY_SLACK 4096             /* room left in a reply for everything but records */
#define JS_ERR_NO_MESSAGE 10037

static const struct vs_cfg_key auditd_keys[] = {
    {"auditd.store", VS_CFG_STRING, true, "directory of the audit log (LMDB environment)"},
    {"auditd.key", VS_CFG_STRING, true,
     "Ed25519 checkpoint signing key file (`vsctl keys init-audit PATH`)"},
    {"auditd.next_key", VS_CFG_STRING, false,
     "key to rotate to: the next checkpoint is signed by both, later ones by it"},
    {"auditd.origin", VS_CFG_STRING, false,
     "checkpoint origin and key name (default vibeshield/audit)"},
    {"auditd.checkpoint_every", VS_CFG_INT, false, "checkpoint after this many entries (256)"},
    {"auditd.checkpoint_interval", VS_CFG_DURATION, false,
     "checkpoint at least this often while the log grows (5s)"},
    {"auditd.batch", VS_CFG_INT, false, "events per store transaction (256)"},
    {"auditd.map_size", VS_CFG_SIZE, false, "initial LMDB map size (256MiB; grown when full)"},
    {"auditd.ack_wait", VS_CFG_DURATION, false,
     "the consumer's ack wait (10s): after a crash, new events wait at most this long"},
    {NULL, VS_CFG_STRING, false, NULL},
};

/* One stream sequence waiting for its turn: a held delivery, a copy read
 * from the stream to fill a hole, or a placeholder for a sequence the
 * stream no longer has (skip: nothing is appended for it). */
struct pend {
    uint64_t seq;
    vs_msg *msg;
    uint8_t *copy;
    size_t len;
    bool skip;
};

struct counters {
    uint64_t appended, duplicates, batches, checkpoints, gaps_filled, gaps_skipped;
    uint64_t append_errors, checkpoint_errors, proofs, queries;
};

struct auditd {
    vs_daemon *d;
    vs_bus *bus;
    vs_audit_store *store;
    const char *origin;
    uint64_t every, interval_ms, batch, ack_wait_ms;

    vs_signkey *key, *next_key;
    struct vs_note_signer signers[2];
    size_t nsigners;
    char vkey_text[2][VS_VKEY_MAX];    /* of signers[i] */
    bool rotating;                      /* the next checkpoint is co-signed */

    vs_consumer *consumer;
    vs_sub *prove_sub, *query_sub;

    uint64_t next_seq;                  /* stream sequence expected next */
    struct pend *q;                     /* sorted by seq, all >= next_seq */
    size_t nq, capq;
    struct pend *dups;                  /* second deliveries of queued seqs */
    size_t ndups, capdups;
    struct vs_audit_append *items;      /* one batch for the store (batch long) */

    uv_idle_t flush_idle;
    uv_timer_t gap_timer, retry_timer, cp_timer;
    bool handles_init, flush_armed, gap_armed, retry_armed, fetching;
    uint64_t arrivals;                  /* deliveries since the flush idle last ran */

    uint64_t cp_size;                   /* size of the last checkpoint (0: none) */
    char *cp_note;                      /* its note */
    uint64_t last_cp_ms;
    bool closed;
    struct counters n;
};

/* The one instance: late callbacks (a stream read completing while the bus
 * shuts down) may still find it after close. */
static struct auditd g_auditd;

static void checkpoint_maybe(struct auditd *a, bool timer);
static void on_flush_idle(uv_idle_t *h);
static void on_retry(uv_timer_t *t);
static void on_cp_timer(uv_timer_t *t);

/* ---- reorder queue -------------------------------------------------------------- */

/* Index of the first entry with seq >= seq. */
static size_t q_find(const struct auditd *a, uint64_t seq)
{
    size_t lo = 0, hi = a->nq;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->q[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Insert p unless its seq is queued already (returns -EEXIST) . */
static int q_insert(struct auditd *a, const struct pend *p)
{
    size_t i = q_find(a, p->seq);
    if (i < a->nq && a->q[i].seq == p->seq)
        return -EEXIST;
    if (a->nq == a->capq) {
        size_t cap = a->capq > 0 ? 2 * a->capq : 1024;
        struct pend *v = realloc(a->q, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        a->q = v;
        a->capq = cap;
    }
    memmove(&a->q[i + 1], &a->q[i], (a->nq - i) * sizeof(*a->q));
    a->q[i] = *p;
    a->nq++;
    return 0;
}

/* Hold a second delivery of a queued sequence; it is acked once that
 * sequence is stored (acking it earlier would let a crash lose it). */
static int dup_push(struct auditd *a, vs_msg *m)
{
    if (a->ndups == a->capdups) {
        size_t cap = a->capdups > 0 ? 2 * a->capdups : 64;
        struct pend *v = realloc(a->dups, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        a->dups = v;
        a->capdups = cap;
    }
    a->dups[a->ndups++] = (struct pend){.seq = vs_msg_stream_seq(m), .msg = vs_msg_hold(m)};
    return 0;
}

/* Ack the held second deliveries whose sequence is now stored. */
static void dups_resolve(struct auditd *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->ndups; i++) {
        if (a->dups[i].seq < a->next_seq)
            vs_msg_ack(a->dups[i].msg);
        else
            a->dups[k++] = a->dups[i];
    }
    a->ndups = k;
}

/* How many queued events are contiguous with what is stored. */
static size_t q_ready(const struct auditd *a)
{
    size_t n = 0;
    while (n < a->nq && a->q[n].seq == a->next_seq + n)
        n++;
    return n;
}

static void arm_flush(struct auditd *a)
{
    if (!a->flush_armed && !a->closed) {
        uv_idle_start(&a->flush_idle, on_flush_idle);
        a->flush_armed = true;
    }
}

/* ---- filling holes from the stream ------------------------------------------------ */

static void check_gap(struct auditd *a);

struct fetch {
    struct auditd *a;
    uint64_t seq;
};

/* The first sequence from next_seq on that is not queued while a later one
 * is (a hole); 0 when the queue is contiguous. */
static uint64_t first_missing(const struct auditd *a)
{
    uint64_t want = a->next_seq;
    for (size_t i = 0; i < a->nq; i++, want++)
        if (a->q[i].seq != want)
            return want;
    return 0;
}

static void report_gap(struct auditd *a, uint64_t from, uint64_t to)
{
    char first[24], last[24];
    snprintf(first, sizeof(first), "%" PRIu64, from);
    snprintf(last, sizeof(last), "%" PRIu64, to);
    a->n.gaps_skipped += to - from + 1;
    log_warnx("stream sequences %s..%s are no longer in the AUDIT stream: not in the log", first,
              last);
    vs_audit_emit(a->bus, "auditd", VS__V1__SEVERITY__SEVERITY_WARNING, NULL, NULL,
                  "stream_gap", "first_seq", first, "last_seq", last, NULL);
}

/* Sequences [seq, first_seq) are gone from the stream (first_seq: where it
 * starts now; seq alone when it is an interior deletion). At the head of
 * the queue the next sequence simply moves on; inside it, placeholders
 * keep the order. */
static void skip_missing(struct auditd *a, uint64_t seq, uint64_t first_seq)
{
    size_t i = q_find(a, seq);
    uint64_t limit = i < a->nq ? a->q[i].seq : UINT64_MAX; /* next queued after the hole */
    uint64_t to = first_seq > seq ? first_seq : seq + 1;
    if (to > limit)
        to = limit;
    if (seq == a->next_seq) {
        a->next_seq = to;
    } else {
        if (to - seq > 4096)
            to = seq + 4096; /* the next round continues */
        for (uint64_t k = seq; k < to; k++) {
            struct pend p = {.seq = k, .skip = true};
            if (q_insert(a, &p) < 0) {
                to = k;
                break;
            }
        }
    }
    if (to > seq)
        report_gap(a, seq, to - 1);
}

static void fetch_missing(struct auditd *a, uint64_t seq);

/* After a hole was handled: go on with the next one at once. */
static void next_hole(struct auditd *a)
{
    if (a->closed)
        return;
    arm_flush(a);
    uint64_t m = first_missing(a);
    if (m != 0 && !a->fetching)
        fetch_missing(a, m);
    else
        check_gap(a);
}

static void on_stream_info(int status, vs_msg *reply, void *arg)
{
    struct fetch *f = arg;
    struct auditd *a = f->a;
    a->fetching = false;
    bool done = false;
    if (!a->closed && status == 0 && f->seq >= a->next_seq && f->seq == first_missing(a)) {
        size_t len;
        const uint8_t *data = vs_msg_data(reply, &len);
        json_t *j = json_loadb((const char *)data, len, 0, NULL);
        json_t *first = json_object_get(json_object_get(j, "state"), "first_seq");
        uint64_t first_seq = json_is_integer(first) ? (uint64_t)json_integer_value(first) : 0;
        json_decref(j);
        skip_missing(a, f->seq, first_seq);
        done = true;
    }
    free(f);
    if (done)
        next_hole(a);
    else
        check_gap(a);
}

static void on_fetched(int status, vs_msg *reply, void *arg)
{
    struct fetch *f = arg;
    struct auditd *a = f->a;
    a->fetching = false;
    if (a->closed || f->seq < a->next_seq || f->seq != first_missing(a)) {
        /* Meanwhile delivered by the consumer, or shutting down. */
        free(f);
        next_hole(a);
        return;
    }
    json_t *j = NULL;
    if (status == 0) {
        size_t len;
        const uint8_t *data = vs_msg_data(reply, &len);
        j = json_loadb((const char *)data, len, 0, NULL);
    }
    json_t *err = json_object_get(j, "error");
    json_t *msg = json_object_get(j, "message");
    const char *b64 = json_string_value(json_object_get(msg, "data"));
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(msg, "seq"));
    bool progress = false;
    if (err != NULL && json_integer_value(json_object_get(err, "err_code")) == JS_ERR_NO_MESSAGE) {
        /* Deleted: ask where the stream starts now. */
        char api[128];
        snprintf(api, sizeof(api), "$JS.API.STREAM.INFO.%s", vs_stream(VS_STREAM_AUDIT)->name);
        if (vs_bus_request_raw(a->bus, api, NULL, 0, NULL, 0, VS_JS_API_TIMEOUT_MS,
                               on_stream_info, f) == 0) {
            a->fetching = true;
            json_decref(j);
            return;
        }
    } else if (seq == f->seq) {
        /* "data" is absent for an empty message. */
        size_t blen = b64 != NULL ? strlen(b64) : 0;
        struct pend p = {.seq = seq, .copy = malloc(blen + 1)};
        if (p.copy != NULL &&
            (blen == 0 || sodium_base642bin(p.copy, blen + 1, b64, blen, NULL, &p.len, NULL,
                                            sodium_base64_VARIANT_ORIGINAL) == 0) &&
            q_insert(a, &p) == 0) {
            a->n.gaps_filled++;
            progress = true;
        } else {
            free(p.copy);
        }
    } else {
        log_warnx("cannot read stream sequence %" PRIu64 " (%s); retrying", f->seq,
                  status < 0 ? strerror(-status) : "unexpected answer");
    }
    json_decref(j);
    free(f);
    if (progress)
        next_hole(a);
    else
        check_gap(a);
}

static void fetch_missing(struct auditd *a, uint64_t seq)
{
    struct fetch *f = malloc(sizeof(*f));
    if (f == NULL)
        return;
    f->a = a;
    f->seq = seq;
    char api[128], body[64];
    snprintf(api, sizeof(api), "$JS.API.STREAM.MSG.GET.%s", vs_stream(VS_STREAM_AUDIT)->name);
    int n = snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 "}", seq);
    if (vs_bus_request_raw(a->bus, api, body, (size_t)n, NULL, 0, VS_JS_API_TIMEOUT_MS, on_fetched,
                           f) < 0) {
        free(f);
        return;
    }
    a->fetching = true;
}

static void on_gap_timer(uv_timer_t *t)
{
    struct auditd *a = t->data;
    a->gap_armed = false;
    uint64_t m = a->closed || a->fetching ? 0 : first_missing(a);
    if (m != 0)
        fetch_missing(a, m);
    check_gap(a);
}

/* Arm the gap timer while there is a hole: the consumer may still deliver
 * it (a redelivery) within GAP_WAIT_MS, else it is read from the stream. */
static void check_gap(struct auditd *a)
{
    if (a->closed)
        return;
    bool gap = first_missing(a) != 0;
    if (!gap && a->gap_armed) {
        uv_timer_stop(&a->gap_timer);
        a->gap_armed = false;
    } else if (gap && !a->gap_armed && !a->fetching) {
        uv_timer_start(&a->gap_timer, on_gap_timer, GAP_WAIT_MS, 0);
        a->gap_armed = true;
    }
}

/* ---- group commit --------------------------------------------------------------- */

static void resolve(struct pend *p)
{
    if (p->msg != NULL)
        vs_msg_ack(p->msg);
    free(p->copy);
}

/* Append what is contiguous, batch by batch; ack after each commit. */
static void flush(struct auditd *a)
{
    size_t ready;
    bool appended_any = false;
    while (!a->retry_armed && (ready = q_ready(a)) > 0) {
        size_t n = ready < a->batch ? ready : a->batch;
        size_t nitems = 0;
        for (size_t i = 0; i < n; i++) {
            const struct pend *p = &a->q[i];
            if (p->skip)
                continue;
            size_t len = p->len;
            const uint8_t *data = p->msg != NULL ? vs_msg_data(p->msg, &len) : p->copy;
            a->items[nitems++] = (struct vs_audit_append){
                .event = data, .len = len, .stream_seq = p->seq, .time_ns = 0};
        }
        size_t stored = 0;
        int rc = nitems > 0 ? vs_audit_store_append(a->store, a->items, nitems, &stored) : 0;
        if (rc < 0) {
            /* Keep everything held, in order, and try again: acking or
             * naking here would let later events overtake these. */
            if (a->n.append_errors++ == 0 || a->n.append_errors % 100 == 0)
                log_warnx("cannot append %zu events to the audit log: %s; retrying", n,
                          strerror(-rc));
            uv_timer_start(&a->retry_timer, on_retry, APPEND_RETRY_MS, 0);
            a->retry_armed = true;
            break;
        }
        a->next_seq = a->q[n - 1].seq + 1;
        for (size_t i = 0; i < n; i++)
            resolve(&a->q[i]);
        memmove(a->q, a->q + n, (a->nq - n) * sizeof(*a->q));
        a->nq -= n;
        dups_resolve(a);
        a->n.appended += stored;
        a->n.duplicates += nitems - stored;
        a->n.batches++;
        appended_any = true;
    }
    if (appended_any)
        checkpoint_maybe(a, false);
    check_gap(a);
}

/* Group commit: while deliveries keep coming (each loop turn reads one
 * socket buffer, about 32 KiB) and no full batch is ready, wait one more
 * turn - the idle handle makes that turn's poll non-blocking, so this
 * costs no latency once the input goes quiet. */
static void on_flush_idle(uv_idle_t *h)
{
    struct auditd *a = h->data;
    if (a->arrivals > 0 && q_ready(a) < a->batch) {
        a->arrivals = 0;
        return;
    }
    a->arrivals = 0;
    uv_idle_stop(h);
    a->flush_armed = false;
    flush(a);
}

static void on_retry(uv_timer_t *t)
{
    struct auditd *a = t->data;
    a->retry_armed = false;
    flush(a);
}

static int on_event(vs_msg *m, void *arg)
{
    struct auditd *a = arg;
    uint64_t seq = vs_msg_stream_seq(m);
    if (seq == 0)
        return -EINVAL;
    if (seq < a->next_seq) {
        a->n.duplicates++;
        return 0; /* stored before: the bus acks it */
    }
    struct pend p = {.seq = seq, .msg = m};
    int rc = q_insert(a, &p);
    if (rc == -EEXIST)
        return dup_push(a, m) == 0 ? 0 : VS_RETRY;
    if (rc < 0)
        return VS_RETRY;
    /* Appended (and acked) on the next loop turn, never inside this
     * handler: acking a message held during its own delivery would let
     * the bus release it twice. */
    vs_msg_hold(m);
    a->arrivals++;
    arm_flush(a);
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------- */

static void on_checkpoint_published(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    uint64_t size = (uint64_t)(uintptr_t)arg;
    if (status < 0)
        log_warnx("checkpoint at size %" PRIu64 " stored but not published: %s", size,
                  strerror(-status));
}

static int make_checkpoint(struct auditd *a, uint64_t size)
{
    struct vs_checkpoint c = {.size = size};
    snprintf(c.origin, sizeof(c.origin), "%s", a->origin);
    int rc = vs_audit_store_root(a->store, size, c.root);
    char *note = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = vs_checkpoint_sign(&c, a->signers, a->nsigners, &note, &len);
    if (rc == 0)
        rc = vs_audit_store_put_checkpoint(a->store, size, note, len);
    if (rc < 0) {
        a->n.checkpoint_errors++;
        log_warnx("cannot make the checkpoint at size %" PRIu64 ": %s", size, strerror(-rc));
        free(note);
        return rc;
    }
    free(a->cp_note);
    a->cp_note = note;
    a->cp_size = size;
    a->last_cp_ms = vs_mono_ms();
    a->n.checkpoints++;

    const struct vs_note_signer *newest = &a->signers[a->nsigners - 1];
    uint32_t h = vs_note_key_hash(newest->name, vs_signkey_public(newest->key));
    uint8_t key_id[4] = {(uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
    char *vkeys[2] = {a->vkey_text[0], a->vkey_text[1]};
    Vs__V1__Checkpoint cp = VS__V1__CHECKPOINT__INIT;
    cp.origin = (char *)a->origin;
    cp.tree_size = size;
    cp.root_hash = (ProtobufCBinaryData){VS_HASH_LEN, c.root};
    cp.key_name = (char *)newest->name;
    cp.key_id = (ProtobufCBinaryData){sizeof(key_id), key_id};
    cp.note = (ProtobufCBinaryData){len, (uint8_t *)note};
    cp.at_ns = vs_now_ns();
    cp.n_vkeys = a->nsigners;
    cp.vkeys = vkeys;
    /* The note's hash as message id: a re-publication is stored once. */
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const uint8_t *)note, len);
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(digest, VS_ID_LEN, msg_id);
    rc = vs_js_publish(a->bus, vs_subject(VS_SUBJ_CHECKPOINT)->pattern, &cp.base, msg_id,
                       on_checkpoint_published, (void *)(uintptr_t)size);
    if (rc < 0)
        log_warnx("checkpoint at size %" PRIu64 " stored but not published: %s", size,
                  strerror(-rc));
    log_debug("checkpoint at size %" PRIu64 " signed by %zu key(s)", size, a->nsigners);
    if (a->rotating) {
        /* Trust has been chained: from now on only the new key signs. */
        a->rotating = false;
        a->signers[0] = a->signers[1];
        memcpy(a->vkey_text[0], a->vkey_text[1], sizeof(a->vkey_text[0]));
        a->nsigners = 1;
        log_info("key rotation: checkpoint at size %" PRIu64 " signed by both keys; now "
                 "signing with %s only (set auditd.key to the new key file and remove "
                 "auditd.next_key)",
                 size, a->vkey_text[0]);
    }
    return 0;
}

/* Checkpoint when due: every `every` entries, or (timer) when the log grew
 * since the last one; never more often than CHECKPOINT_MIN_GAP_MS. */
static void checkpoint_maybe(struct auditd *a, bool timer)
{
    uint64_t size = vs_audit_store_size(a->store);
    if (size == 0 || size <= a->cp_size)
        return;
    if (!timer && size - a->cp_size < a->every)
        return;
    uint64_t since = vs_mono_ms() - a->last_cp_ms;
    if (a->last_cp_ms != 0 && since < CHECKPOINT_MIN_GAP_MS) {
        /* Too soon: the timer comes back for it. */
        uv_timer_start(&a->cp_timer, on_cp_timer, CHECKPOINT_MIN_GAP_MS - since, a->interval_ms);
        return;
    }
    make_checkpoint(a, size);
}

static void on_cp_timer(uv_timer_t *t)
{
    struct auditd *a = t->data;
    if (!a->closed)
        checkpoint_maybe(a, true);
}

/* ---- vs.auditlog.prove ----------------------------------------------------------- */

/* The size a request's 0 stands for: the latest checkpoint's, else the log's. */
static uint64_t default_size(struct auditd *a)
{
    return a->cp_note != NULL ? a->cp_size : vs_audit_store_size(a->store);
}

static int respond_error(vs_msg *m, int rc)
{
    if (rc == -EINVAL || rc == -ERANGE)
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID,
                              "index or size out of range of the log");
    else
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "internal error");
    return 0;
}

static int on_prove(vs_msg *m, void *arg)
{
    struct auditd *a = arg;
    const Vs__V1__AuditProofRequest *req = (const Vs__V1__AuditProofRequest *)vs_msg_body(m);
    a->n.proofs++;
    uint64_t size = vs_audit_store_size(a->store);
    uint8_t hashes[VS_AUDIT_MAX_PROOF][VS_HASH_LEN];
    ProtobufCBinaryData bins[VS_AUDIT_MAX_PROOF];
    uint8_t root[VS_HASH_LEN], leaf[VS_HASH_LEN];
    size_t nh = 0;
    uint8_t *entry = NULL;
    int rc = 0;

    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__AuditProofReply r = VS__V1__AUDIT_PROOF_REPLY__INIT;
    r.status = &st;

    switch (req->kind) {
    case VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD:
        r.tree_size = size;
        break;
    case VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_INCLUSION: {
        r.tree_size = req->size2 != 0 ? req->size2 : default_size(a);
        if (r.tree_size > size || req->index >= r.tree_size) {
            rc = -ERANGE;
            break;
        }
        struct vs_audit_entry e;
        rc = vs_audit_store_get(a->store, req->index, &e);
        if (rc < 0)
            break;
        struct vs_audit_fields f = {e.seq, e.time_ns, e.stream_seq, e.prev_hash, e.event, e.len};
        size_t elen = vs_audit_codec_size(e.len);
        entry = malloc(elen);
        if (entry == NULL || vs_audit_codec_encode(&f, entry, elen) < 0) {
            rc = -ENOMEM;
            break;
        }
        memcpy(leaf, e.leaf_hash, VS_HASH_LEN);
        r.entry = (ProtobufCBinaryData){elen, entry};
        r.leaf_hash = (ProtobufCBinaryData){VS_HASH_LEN, leaf};
        rc = vs_audit_store_inclusion(a->store, req->index, r.tree_size, hashes, &nh);
        break;
    }
    case VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_CONSISTENCY:
        r.tree_size = req->size2 != 0 ? req->size2 : default_size(a);
        if (req->size1 == 0 || req->size1 > r.tree_size || r.tree_size > size) {
            rc = -ERANGE;
            break;
        }
        rc = vs_audit_store_consistency(a->store, req->size1, r.tree_size, hashes, &nh);
        break;
    default:
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown proof kind");
        return 0;
    }
    if (rc == 0)
        rc = vs_audit_store_root(a->store, r.tree_size, root);
    if (rc < 0) {
        if (rc != -ERANGE && rc != -EINVAL)
            log_warnx("cannot answer a proof request: %s", strerror(-rc));
        free(entry);
        return respond_error(m, rc);
    }
    r.root = (ProtobufCBinaryData){VS_HASH_LEN, root};
    for (size_t i = 0; i < nh; i++)
        bins[i] = (ProtobufCBinaryData){VS_HASH_LEN, hashes[i]};
    r.n_hashes = nh;
    r.hashes = bins;
    if (a->cp_note != NULL &&
        (req->kind == VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD || r.tree_size == a->cp_size))
        r.note = a->cp_note;
    rc = vs_msg_respond(m, &r.base);
    free(entry);
    return rc == -ENOENT ? -EINVAL : 0;
}

/* ---- vs.auditlog.query ----------------------------------------------------------- */

struct query {
    Vs__V1__AuditRecord *recs;
    Vs__V1__AuditRecord **ptrs;
    size_t n, limit;
    size_t bytes, budget;
    bool more;
};

static int collect(const struct vs_audit_entry *e, void *arg)
{
    struct query *q = arg;
    size_t cost = e->len + 3 * VS_HASH_LEN + 64;
    if (q->n == q->limit || (q->n > 0 && q->bytes + cost > q->budget)) {
        q->more = true;
        return 1;
    }
    Vs__V1__AuditRecord *r = &q->recs[q->n];
    vs__v1__audit_record__init(r);
    uint8_t *buf = malloc(e->len + 2 * VS_HASH_LEN + 1);
    if (buf == NULL)
        return -ENOMEM;
    memcpy(buf, e->chain_hash, VS_HASH_LEN);
    memcpy(buf + VS_HASH_LEN, e->prev_hash, VS_HASH_LEN);
    if (e->len > 0)
        memcpy(buf + 2 * VS_HASH_LEN, e->event, e->len);
    r->seq = e->seq;
    r->time_ns = e->time_ns;
    r->stream_seq = e->stream_seq;
    r->chain_hash = (ProtobufCBinaryData){VS_HASH_LEN, buf};
    r->prev_hash = (ProtobufCBinaryData){VS_HASH_LEN, buf + VS_HASH_LEN};
    r->event = (ProtobufCBinaryData){e->len, buf + 2 * VS_HASH_LEN};
    q->ptrs[q->n++] = r;
    q->bytes += cost;
    return 0;
}

static int on_query(vs_msg *m, void *arg)
{
    struct auditd *a = arg;
    const Vs__V1__AuditQueryRequest *req = (const Vs__V1__AuditQueryRequest *)vs_msg_body(m);
    a->n.queries++;
    if ((req->task_id.len != 0 && req->task_id.len != VS_ID_LEN) ||
        (req->category[0] != '\0' && !vs_audit_category_valid(req->category)) ||
        req->limit > QUERY_MAX_LIMIT || req->min_severity < 0 ||
        req->min_severity > VS__V1__SEVERITY__SEVERITY_ALERT) {
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID,
                              "bad filter: task_id 16 bytes, category a token, limit <= 1000");
        return 0;
    }
    struct vs_audit_filter f = {
        .agent = req->agent[0] != '\0' ? req->agent : NULL,
        .task_id = req->task_id.len == VS_ID_LEN ? req->task_id.data : NULL,
        .category = req->category[0] != '\0' ? req->category : NULL,
        .min_severity = (int)req->min_severity,
        .since_ns = req->since_ns,
        .until_ns = req->until_ns,
        .after_seq = req->after_seq == 0 ? UINT64_MAX : req->after_seq - 1,
    };
    struct query q = {.limit = req->limit != 0 ? req->limit : QUERY_DEFAULT_LIMIT};
    size_t max = vs_bus_max_msg(a->bus);
    q.budget = max > 2 * REPLY_SLACK ? max - REPLY_SLACK : max / 2;
    f.limit = q.limit + 1; /* one more tells whether there is a next page */
    q.recs = calloc(q.limit, sizeof(*q.recs));
    q.ptrs = calloc(q.limit, sizeof(*q.ptrs));
    int rc = q.recs != NULL && q.ptrs != NULL ? vs_audit_store_query(a->store, &f, collect, &q)
                                               : -ENOMEM;
    if (rc < 0) {
        log_warnx("cannot answer a query: %s", strerror(-rc));
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "internal error");
    } else {
        Vs__V1__Status st = VS__V1__STATUS__INIT;
        st.code = VS__V1__STATUS_CODE__STATUS_OK;
        Vs__V1__AuditQueryReply r = VS__V1__AUDIT_QUERY_REPLY__INIT;
        r.status = &st;
        r.n_records = q.n;
        r.records = q.ptrs;
        r.next_after_seq = q.more && q.n > 0 ? q.recs[q.n - 1].seq + 1 : 0;
        rc = vs_msg_respond(m, &r.base);
        if (rc == -EMSGSIZE)
            vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID,
                                  "page too large: ask for fewer records");
    }
    for (size_t i = 0; i < q.n; i++)
        free(q.recs[i].chain_hash.data);
    free(q.recs);
    free(q.ptrs);
    return rc == -ENOENT ? -EINVAL : 0;
}

/* ---- keys and rotation ------------------------------------------------------------ */

static int load_key(const char *what, const char *path, vs_signkey **out)
{
    int rc = vs_signkey_load(path, out);
    if (rc < 0)
        log_warnx("cannot load %s %s: %s%s", what, path, strerror(-rc),
                  rc == -ENOENT ? " (create one with `vsctl keys init-audit PATH`)"
                  : rc == -EPERM ? " (the file must not be readable by others: chmod 600)"
                                 : "");
    return rc;
}

/* Which of the keys signed the store's last checkpoint (bit 0: key, bit 1:
 * next_key); 0 when there is none. */
static unsigned last_signers(struct auditd *a, const vs_signkey *key, const vs_signkey *next)
{
    char *note = NULL;
    uint64_t size = 0;
    if (vs_audit_store_last_checkpoint(a->store, &note, &size) < 0)
        return 0;
    struct vs_vkey v[2];
    size_t nv = 0;
    vs_vkey_of(a->origin, key, &v[nv++]);
    if (next != NULL)
        vs_vkey_of(a->origin, next, &v[nv++]);
    uint64_t mask = 0;
    struct vs_checkpoint c;
    int rc = vs_checkpoint_open(note, strlen(note), a->origin, v, nv, &c, &mask);
    if (rc == 0) {
        a->cp_size = size;
        a->cp_note = note;
        return (unsigned)mask;
    }
    log_warnx("the store's last checkpoint (size %" PRIu64 ") does not verify with the "
              "configured key(s): %s",
              size, vs_checkpoint_strerror(rc));
    a->cp_size = size;
    a->cp_note = note;
    return 0;
}

static int setup_keys(struct auditd *a, const vs_config *cfg)
{
    int rc = load_key("auditd.key", vs_config_string(cfg, "auditd.key", NULL), &a->key);
    const char *next_path = vs_config_string(cfg, "auditd.next_key", NULL);
    if (rc == 0 && next_path != NULL)
        rc = load_key("auditd.next_key", next_path, &a->next_key);
    if (rc < 0)
        return rc;
    if (a->next_key != NULL &&
        memcmp(vs_signkey_public(a->key), vs_signkey_public(a->next_key), 32) == 0) {
        log_warnx("auditd.next_key is the same key as auditd.key: no rotation");
        vs_signkey_free(a->next_key);
        a->next_key = NULL;
    }
    unsigned signed_by = last_signers(a, a->key, a->next_key);
    const vs_signkey *use[2];
    size_t n = 0;
    if (a->next_key == NULL) {
        use[n++] = a->key;
        if (a->cp_note != NULL && !(signed_by & 1u))
            log_warnx("the last checkpoint was not signed by auditd.key: verifiers trusting "
                      "the previous key will reject new checkpoints (rotate with "
                      "auditd.next_key instead of replacing the key)");
    } else if (signed_by & 2u) {
        use[n++] = a->next_key; /* rotated before this start */
        log_info("key rotation already done; set auditd.key to the next key's file");
    } else {
        use[n++] = a->key;
        use[n++] = a->next_key;
        a->rotating = true;
    }
    for (size_t i = 0; i < n; i++) {
        a->signers[i] = (struct vs_note_signer){a->origin, use[i]};
        if (vs_vkey_format(a->origin, vs_signkey_public(use[i]), a->vkey_text[i],
                           sizeof(a->vkey_text[i])) < 0)
            return -EINVAL;
    }
    a->nsigners = n;
    return 0;
}

/* ---- daemon callbacks -------------------------------------------------------------- */

static int auditd_open(vs_daemon *d)
{
    struct auditd *a = &g_auditd;
    memset(a, 0, sizeof(*a));
    a->d = d;
    a->bus = vs_daemon_bus(d);
    vs_daemon_set_data(d, a);
    const vs_config *cfg = vs_daemon_config(d);
    a->origin = vs_config_string(cfg, "auditd.origin", DEFAULT_ORIGIN);
    int64_t every = vs_config_int(cfg, "auditd.checkpoint_every", 256);
    int64_t batch = vs_config_int(cfg, "auditd.batch", 256);
    a->interval_ms = vs_config_duration_ms(cfg, "auditd.checkpoint_interval", 5000);
    a->ack_wait_ms = vs_config_duration_ms(cfg, "auditd.ack_wait", 10000);
    if (!vs_note_name_valid(a->origin) || strlen(a->origin) > VS_CHECKPOINT_ORIGIN_MAX) {
        log_warnx("auditd.origin must be a key name: no spaces, no '+', at most %d bytes",
                  VS_NOTE_NAME_MAX);
        return -EINVAL;
    }
    if (every < 1 || batch < 1 || batch > 65536 || a->interval_ms == 0 || a->ack_wait_ms < 1000) {
        log_warnx("auditd.checkpoint_every and auditd.batch (1..65536) must be positive, "
                  "checkpoint_interval > 0, ack_wait >= 1s");
        return -EINVAL;
    }
    a->every = (uint64_t)every;
    a->batch = (uint64_t)batch;
    a->items = calloc(a->batch, sizeof(*a->items));
    if (a->items == NULL)
        return -ENOMEM;

    struct vs_audit_store_opts o = {
        .path = vs_config_string(cfg, "auditd.store", NULL),
        .map_size = vs_config_size(cfg, "auditd.map_size", 0),
    };
    int rc = vs_audit_store_open(&o, &a->store);
    if (rc < 0) {
        log_warnx("cannot open the audit store %s: %s", o.path, strerror(-rc));
        return rc;
    }
    rc = setup_keys(a, cfg);
    if (rc < 0)
        return rc;
    a->next_seq = vs_audit_store_applied(a->store) + 1;

    uv_loop_t *loop = vs_daemon_loop(d);
    uv_idle_init(loop, &a->flush_idle);
    uv_timer_init(loop, &a->gap_timer);
    uv_timer_init(loop, &a->retry_timer);
    uv_timer_init(loop, &a->cp_timer);
    a->flush_idle.data = a->gap_timer.data = a->retry_timer.data = a->cp_timer.data = a;
    a->handles_init = true;
    log_info("audit log %s: %" PRIu64 " entries, stream sequence %" PRIu64
             " applied, last checkpoint at %" PRIu64 "; signing as %s",
             o.path, vs_audit_store_size(a->store), a->next_seq - 1, a->cp_size, a->vkey_text[0]);
    return 0;
}

static int auditd_start(vs_daemon *d)
{
    struct auditd *a = vs_daemon_data(d);
    if (a->rotating) {
        char old_hash[16], new_hash[16];
        snprintf(old_hash, sizeof(old_hash), "%08" PRIx32,
                 vs_note_key_hash(a->origin, vs_signkey_public(a->key)));
        snprintf(new_hash, sizeof(new_hash), "%08" PRIx32,
                 vs_note_key_hash(a->origin, vs_signkey_public(a->next_key)));
        log_info("key rotation: %s -> %s; the next checkpoint is signed by both", a->vkey_text[0],
                 a->vkey_text[1]);
        vs_audit_emit(a->bus, "auditd", VS__V1__SEVERITY__SEVERITY_NOTICE, NULL, NULL,
                      "key_rotated", "old_key_hash", old_hash, "new_key_hash", new_hash,
                      "old_vkey", a->vkey_text[0], "new_vkey", a->vkey_text[1], NULL);
    }
    uv_timer_start(&a->cp_timer, on_cp_timer, a->interval_ms, a->interval_ms);

    struct vs_consumer_def def = {
        .stream = vs_stream(VS_STREAM_AUDIT)->name,
        .durable = DURABLE,
        .ack_wait_ms = a->ack_wait_ms,
        .max_ack_pending = MAX_ACK_PENDING,
        .max_deliver = MAX_DELIVER,
    };
    int rc = vs_js_consume_sync(a->bus, &def, NULL, on_event, a, &a->consumer);
    if (rc == 0)
        rc = vs_bus_subscribe(a->bus, vs_subject(VS_SUBJ_AUDIT_PROVE)->pattern, DURABLE,
                              &vs__v1__audit_proof_request__descriptor, on_prove, a, &a->prove_sub);
    if (rc == 0)
        rc = vs_bus_subscribe(a->bus, vs_subject(VS_SUBJ_AUDIT_QUERY)->pattern, DURABLE,
                              &vs__v1__audit_query_request__descriptor, on_query, a, &a->query_sub);
    return rc;
}

static void auditd_stop(vs_daemon *d)
{
    struct auditd *a = vs_daemon_data(d);
    vs_consumer_free(a->consumer);
    a->consumer = NULL;
}

static bool auditd_idle(vs_daemon *d)
{
    struct auditd *a = vs_daemon_data(d);
    if (q_ready(a) > 0 && !a->retry_armed)
        flush(a);
    return a->nq == 0;
}

static void auditd_close(vs_daemon *d)
{
    struct auditd *a = vs_daemon_data(d);
    if (a == NULL)
        return;
    vs_consumer_free(a->consumer);
    vs_sub_free(a->prove_sub);
    vs_sub_free(a->query_sub);
    a->consumer = NULL;
    a->prove_sub = a->query_sub = NULL;
    if (a->store != NULL && a->nsigners > 0 && vs_audit_store_size(a->store) > a->cp_size)
        make_checkpoint(a, vs_audit_store_size(a->store)); /* nothing left exposed */
    a->closed = true;
    if (a->handles_init) {
        uv_close((uv_handle_t *)&a->flush_idle, NULL);
        uv_close((uv_handle_t *)&a->gap_timer, NULL);
        uv_close((uv_handle_t *)&a->retry_timer, NULL);
        uv_close((uv_handle_t *)&a->cp_timer, NULL);
    }
    /* Whatever is still queued was not stored: not acked, so redelivered. */
    for (size_t i = 0; i < a->nq; i++)
        free(a->q[i].copy);
    free(a->q);
    free(a->dups);
    free(a->items);
    a->q = NULL;
    a->dups = NULL;
    a->items = NULL;
    a->nq = a->ndups = 0;
    free(a->cp_note);
    a->cp_note = NULL;
    vs_audit_store_close(a->store);
    a->store = NULL;
    vs_signkey_free(a->key);
    vs_signkey_free(a->next_key);
    a->key = a->next_key = NULL;
}

static void auditd_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct auditd *a = vs_daemon_data(d);
    add(ctx, "entries", vs_audit_store_size(a->store));
    add(ctx, "applied_stream_seq", vs_audit_store_applied(a->store));
    add(ctx, "appended", a->n.appended);
    add(ctx, "duplicates", a->n.duplicates);
    add(ctx, "batches", a->n.batches);
    add(ctx, "queued", a->nq);
    add(ctx, "checkpoints", a->n.checkpoints);
    add(ctx, "checkpoint_size", a->cp_size);
    add(ctx, "gaps_filled", a->n.gaps_filled);
    add(ctx, "gaps_skipped", a->n.gaps_skipped);
    add(ctx, "append_errors", a->n.append_errors);
    add(ctx, "checkpoint_errors", a->n.checkpoint_errors);
    add(ctx, "proofs", a->n.proofs);
    add(ctx, "queries", a->n.queries);
}

int main(int argc, char **argv)
{
    static const struct vs_daemon_def def = {
        .component = "auditd",
        .summary = "the audit log: hash chain + Merkle tree in LMDB, signed checkpoints, proofs",
        .config = auditd_keys,
        .syscalls = NULL, /* LMDB's calls are in the base allowlist */
        .open = auditd_open,
        .start = auditd_start,
        .stop = auditd_stop,
        .idle = auditd_idle,
        .close = auditd_close,
        .counters = auditd_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
