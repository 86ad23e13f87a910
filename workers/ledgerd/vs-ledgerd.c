/*
 * vs-ledgerd - the escrow ledger daemon: applies LedgerCommands and task
 * outcomes from JetStream to the LMDB ledger (escrow.h on ledger_store.h)
 * with exactly-once effects, answers read-only queries, and publishes the
 * Settlements and audit events its commits produce.
 *
 * How a message becomes an effect exactly once:
 *  - Group commit. Deliveries of both consumers (LEDGER: commands; TASKS:
 *    outcomes and verification results) are held and applied on the next
 *    loop turn, whatever is waiting (up to ledgerd.batch), in one write
 *    transaction that also stores each stream's highest applied sequence.
 *  - Each command's reply is stored under its command id with a hash of its
 *    body in that transaction; a redelivered or retried command gets the
 *    stored reply (marked replayed) and changes nothing. A different body
 *    under a used command id is INVALID.
 *  - Replies go out and messages are acked only after the commit is
 *    durable. A crash before that loses nothing (not acked: redelivered);
 *    a crash after it repeats nothing (the stored replies). The writer
 *    syncs a commit's data; the loop syncs its root (LMDB's meta page)
 *    while the writer applies the next batch, then acks: one fdatasync
 *    per batch off the writer's path.
 *  - Settlements and audit events are written to the store's outbox in the
 *    same transaction and published after it with stable Nats-Msg-Ids, then
 *    deleted; after a crash the outbox is published again and JetStream's
 *    deduplication drops what was already stored.
 *  - A batch the store refuses is retried one message at a time, so one
 *    poisonous message is terminated (and audited) instead of blocking the
 *    rest. A full map is grown and the batch replayed (vs_ledger_write).
 * Time-based work (hold expiry, dispute windows, vote deadlines) runs in a
 * write transaction when the earliest due time passes.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "vs/audit.h"
#include "vs/daemon.h"
#include "vs/escrow.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/ledger_store.h"
#include "vs/log.h"
#include "vs/subjects.h"

#define DURABLE_COMMANDS "ledgerd"
#define DURABLE_TASKS "ledgerd-tasks"
#define DEFAULT_BATCH 2000
#define MAX_ACK_PENDING 8192
#define MAX_DELIVER 1000
#define RETRY_MS 1000
#define READER_CHECK_MS 60000
#define OUTBOX_INFLIGHT 4096
#define COALESCE_MS 2
#define MAX_BACKOFF_MS 60000

static const struct vs_cfg_key ledgerd_keys[] = {
    {"ledgerd.store", VS_CFG_STRING, true, "directory of the ledger (LMDB environment)"},
    {"ledgerd.map_size", VS_CFG_SIZE, false, "initial LMDB map size (64MiB; grown when full)"},
    {"ledgerd.batch", VS_CFG_INT, false, "messages per write transaction at most (2000)"},
    {"ledgerd.ack_wait", VS_CFG_DURATION, false, "the consumers' ack wait (30s)"},
    {"ledgerd.fee_bps", VS_CFG_INT, false, "platform fee in basis points (500 = 5%)"},
    {"ledgerd.dispute_window", VS_CFG_DURATION, false,
     "how long after an outcome a dispute may be opened before payout (60s; 0: pay at once)"},
    {"ledgerd.vote_timeout", VS_CFG_DURATION, false, "a dispute panel's deadline (24h)"},
    {"ledgerd.hold_timeout", VS_CFG_DURATION, false, "a hold's timeout when the command sets none (24h)"},
    {"ledgerd.min_reputation", VS_CFG_STRING, false, "the claim check's floor, 0..1 (0.3)"},
    {"ledgerd.governance_threshold", VS_CFG_INT, false,
     "approvals (M) required to mint or move money outside escrow (1)"},
    {"ledgerd.governance_keys", VS_CFG_LIST, false,
     "the N governors' Ed25519 public keys (64 hex digits each)"},
    {NULL, VS_CFG_STRING, false, NULL},
};

enum item_kind { ITEM_COMMAND, ITEM_AGENT_COMMAND, ITEM_TASK_EVENT };

struct item {
    vs_msg *msg;
    enum item_kind kind;
    uint8_t body_hash[32]; /* a command's, taken on the loop (off the writer's path) */
    uint8_t *reply;        /* packed LedgerReply after apply (commands) */
    size_t reply_len;
    bool replayed;
    int status;            /* 0 applied; else the store's error when applied alone */
};

struct counters {
    uint64_t commands, replayed, task_events, batches, batch_errors, poison, outbox_published,
        queries;
};

struct ledgerd {
    vs_daemon *d;
    vs_bus *bus;
    vs_ledger *ledger;
    vs_escrow *escrow;
    vs_consumer *commands, *tasks;
    vs_sub *query_sub;
    struct item *items;    /* received, waiting for the writer: items[ihead..] */
    size_t ihead, nitems, cap, batch;
    /* The writer: one job at a time on libuv's thread pool applies `work`
     * (taken from items) while the loop keeps receiving the next batch. */
    uv_work_t job;
    bool busy;
    struct item *work, *spare; /* the job's items; the last job's, being answered */
    size_t nwork;
    uint64_t *deleting;    /* outbox entries the job deletes (a prefix of done) */
    size_t ndeleting;
    bool job_failed;       /* the batch failed and was applied one by one */
    bool job_ticks;        /* the job settles what is due (not while backing off) */
    bool tick_failed;      /* the timed work failed; the commands went without it */
    uint64_t tick_backoff_ms, tick_retry_at_ms; /* when to try timed work again */
    uint64_t ack_wait_ms;
    uv_idle_t flush_idle;
    uv_timer_t coalesce_timer, due_timer, retry_timer, reader_timer;
    bool handles_init, stopping, retry_armed;
    /* The outbox: entries up to `published` were handed to the broker,
     * `ninflight` of them await its ack; done[] were stored and are deleted
     * by the next write transaction. A failed publish starts the next
     * round again from the oldest entry (JetStream drops duplicates). */
    uint64_t published;
    uint64_t outbox_committed; /* writer: the newest entry of its last commit */
    uint64_t outbox_durable;   /* loop: entries up to here are synced, publishable */
    size_t ninflight;
    bool republish;
    uint64_t *done;
    size_t ndone, done_cap;
    struct counters n;
};

static struct ledgerd g_ledgerd;

static void schedule(struct ledgerd *g);
static void on_flush_idle(uv_idle_t *h);
static void on_retry(uv_timer_t *h);

/* ---- the outbox --------------------------------------------------------------------------- */

struct pub {
    struct ledgerd *g;
    uint64_t seq;
};

static void on_outbox_stored(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct pub *p = arg;
    struct ledgerd *g = p->g;
    g->ninflight--;
    if (status == 0) {
        if (g->ndone == g->done_cap) {
            size_t cap = g->done_cap ? g->done_cap * 2 : 256;
            uint64_t *d = realloc(g->done, cap * sizeof *d);
            if (d != NULL) {
                g->done = d;
                g->done_cap = cap;
            }
        }
        if (g->ndone < g->done_cap)
            g->done[g->ndone++] = p->seq;
        g->n.outbox_published++;
    } else {
        g->republish = true;
        if (!g->retry_armed && g->handles_init) {
            g->retry_armed = true;
            uv_timer_start(&g->retry_timer, on_retry, RETRY_MS, 0);
        }
    }
    free(p);
}

static int publish_one(uint64_t seq, const char *subject, const char *msg_id, const uint8_t *data,
                       size_t len, void *arg)
{
    struct ledgerd *g = arg;
    if (g->ninflight == OUTBOX_INFLIGHT || seq > g->outbox_durable)
        return 1; /* the rest on the next round (or once synced) */
    struct pub *p = malloc(sizeof *p);
    if (p == NULL)
        return 1;
    *p = (struct pub){g, seq};
    const char *hdrs[] = {VS_HDR_MSG_ID, msg_id};
    int rc = vs_js_publish_raw(g->bus, subject, data, len, hdrs, 1, on_outbox_stored, p);
    if (rc < 0) {
        free(p);
        return 1;
    }
    g->ninflight++;
    g->published = seq;
    return 0;
}

static int read_outbox(vs_ledger_txn *t, void *arg)
{
    struct ledgerd *g = arg;
    int rc = vs_ledger_outbox_each(t, g->published, publish_one, arg);
    return rc < 0 ? rc : 0;
}

static int read_outbox_last(vs_ledger_txn *t, void *arg)
{
    struct ledgerd *g = arg;
    return vs_ledger_outbox_last(t, &g->outbox_durable);
}

static void publish_outbox(struct ledgerd *g)
{
    if (g->republish) {
        if (g->ninflight > 0)
            return; /* after the round in flight */
        g->republish = false;
        g->published = 0;
    }
    int rc = vs_ledger_read(g->ledger, read_outbox, g);
    if (rc < 0)
        log_warnx("cannot read the outbox: %s", strerror(-rc));
}

/* ---- applying a batch ---------------------------------------------------------------------- */

static void body_hash(const uint8_t *data, size_t len, uint8_t out[32])
{
    crypto_generichash(out, 32, data, len, NULL, 0);
}

static void reset_outputs(struct item *it)
{
    free(it->reply);
    it->reply = NULL;
    it->reply_len = 0;
    it->replayed = false;
}

static int pack_reply(struct item *it, const Vs__V1__LedgerReply *r)
{
    it->reply_len = protobuf_c_message_get_packed_size(&r->base);
    it->reply = malloc(it->reply_len > 0 ? it->reply_len : 1);
    if (it->reply == NULL)
        return -ENOMEM;
    protobuf_c_message_pack(&r->base, it->reply);
    return 0;
}

static int apply_command(struct ledgerd *g, vs_ledger_txn *t, struct item *it)
{
    const Vs__V1__LedgerCommand *cmd = (const Vs__V1__LedgerCommand *)vs_msg_body(it->msg);
    struct vs_escrow_reply r;
    vs_escrow_reply_init(&r);
    int rc = 0;
    if (cmd->command_id.len != VS_LEDGER_ID_LEN) {
        r.status.code = VS__V1__STATUS_CODE__STATUS_INVALID;
        snprintf(r.reason, sizeof r.reason, "command_id must be 16 bytes");
        return pack_reply(it, &r.msg);
    }
    const uint8_t *stored;
    size_t stored_len;
    rc = vs_ledger_command_get(t, cmd->command_id.data, it->body_hash, &stored, &stored_len);
    if (rc == 0) {
        it->replayed = true;
        it->reply = malloc(stored_len > 0 ? stored_len : 1);
        if (it->reply == NULL)
            return -ENOMEM;
        memcpy(it->reply, stored, stored_len);
        it->reply_len = stored_len;
        return 0;
    }
    if (rc == -EEXIST) {
        r.status.code = VS__V1__STATUS_CODE__STATUS_INVALID;
        snprintf(r.reason, sizeof r.reason, "command id already used for another command");
        return pack_reply(it, &r.msg);
    }
    if (rc != -ENOENT)
        return rc;
    rc = vs_escrow_command(g->escrow, t, it->kind == ITEM_AGENT_COMMAND ? VS_ORIGIN_AGENT : VS_ORIGIN_PLATFORM,
                           cmd, &r);
    if (rc == 0)
        rc = pack_reply(it, &r.msg);
    if (rc == 0)
        rc = vs_ledger_command_put(t, cmd->command_id.data, it->body_hash, it->reply, it->reply_len);
    vs_escrow_reply_clear(&r);
    return rc;
}

/* A TASKS message: an outcome or a verification result; others are
 * ignored (the consumer sees the whole stream). */
static int apply_task_event(struct ledgerd *g, vs_ledger_txn *t, struct item *it)
{
    const struct vs_subject_def *def = vs_subject_match(vs_msg_subject(it->msg));
    size_t len;
    const uint8_t *data = vs_msg_data(it->msg, &len);
    if (def == NULL)
        return 0;
    int rc = 0;
    switch (def->id) {
    case VS_SUBJ_TASK_CLEARED:
    case VS_SUBJ_TASK_QUARANTINED: {
        Vs__V1__ScanVerdict *v = vs__v1__scan_verdict__unpack(NULL, len, data);
        if (v == NULL)
            return -EBADMSG;
        if (v->task_id.len == VS_LEDGER_ID_LEN)
            rc = vs_escrow_task_outcome(g->escrow, t, v->task_id.data,
                                        def->id == VS_SUBJ_TASK_CLEARED ? VS_OUTCOME_CLEARED
                                                                        : VS_OUTCOME_QUARANTINED,
                                        def->id == VS_SUBJ_TASK_CLEARED ? "output cleared"
                                                                        : "output quarantined");
        vs__v1__scan_verdict__free_unpacked(v, NULL);
        break;
    }
    case VS_SUBJ_TASK_REJECTED: {
        Vs__V1__TaskRejected *v = vs__v1__task_rejected__unpack(NULL, len, data);
        if (v == NULL)
            return -EBADMSG;
        if (v->task_id.len == VS_LEDGER_ID_LEN)
            rc = vs_escrow_task_outcome(g->escrow, t, v->task_id.data, VS_OUTCOME_REJECTED, v->stage);
        vs__v1__task_rejected__free_unpacked(v, NULL);
        break;
    }
    case VS_SUBJ_TASK_OUTPUT: {
        Vs__V1__TaskOutput *o = vs__v1__task_output__unpack(NULL, len, data);
        if (o == NULL)
            return -EBADMSG;
        bool failed = !o->completed || o->exit_code != 0 || o->signal != 0 ||
                      o->kill_reason != VS__V1__KILL_REASON__KILL_REASON_NONE;
        if (failed && o->task_id.len == VS_LEDGER_ID_LEN)
            rc = vs_escrow_task_outcome(g->escrow, t, o->task_id.data, VS_OUTCOME_FAILED,
                                        o->kill_reason != VS__V1__KILL_REASON__KILL_REASON_NONE
                                            ? "killed"
                                            : "did not complete");
        vs__v1__task_output__free_unpacked(o, NULL);
        break;
    }
    case VS_SUBJ_VERIFY_RESULT: {
        Vs__V1__VerifyResult *v = vs__v1__verify_result__unpack(NULL, len, data);
        if (v == NULL)
            return -EBADMSG;
        rc = vs_escrow_verified(g->escrow, t, v->agent, v->verified && v->live_verified);
        vs__v1__verify_result__free_unpacked(v, NULL);
        break;
    }
    default:
        break;
    }
    return rc;
}

struct batch {
    struct ledgerd *g;
    struct item *items;
    size_t n;
    const uint64_t *deleting; /* outbox entries the broker confirmed */
    size_t ndeleting;
    bool with_tick;           /* also settle what is due (vs_escrow_tick) */
    uint64_t outbox_last;     /* out: the outbox's newest entry */
};

/* One audit event per commit instead of one per routine command: the
 * stream ranges it applied and a BLAKE2b digest of what it did (each new
 * command's id and stored reply, each task event's stream sequence), which
 * ties the ledger's command table to the audit log. Decisions (settlements,
 * refusals, disputes, governance) have events of their own. */
static int audit_batch(struct ledgerd *g, vs_ledger_txn *t, const struct batch *b,
                       const uint64_t first[2], const uint64_t last[2])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    uint64_t commands = 0, events = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct item *it = &b->items[i];
        if (it->kind == ITEM_TASK_EVENT) {
            uint8_t seq[8];
            for (int k = 0; k < 8; k++)
                seq[k] = (uint8_t)(vs_msg_stream_seq(it->msg) >> (56 - 8 * k));
            crypto_generichash_update(&st, seq, sizeof seq);
            events++;
        } else if (!it->replayed) {
            const Vs__V1__LedgerCommand *cmd = (const Vs__V1__LedgerCommand *)vs_msg_body(it->msg);
            crypto_generichash_update(&st, cmd->command_id.data, cmd->command_id.len);
            crypto_generichash_update(&st, it->reply, it->reply_len);
            commands++;
        }
    }
    if (commands + events == 0)
        return 0;
    uint8_t digest[32];
    char hex[65], ncmd[24], nev[24], lseq[48], tseq[48];
    crypto_generichash_final(&st, digest, sizeof digest);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    snprintf(ncmd, sizeof ncmd, "%" PRIu64, commands);
    snprintf(nev, sizeof nev, "%" PRIu64, events);
    snprintf(lseq, sizeof lseq, "%" PRIu64 "-%" PRIu64, first[0], last[0]);
    snprintf(tseq, sizeof tseq, "%" PRIu64 "-%" PRIu64, first[1], last[1]);
    const char *kv[] = {"commands", ncmd, "task_events", nev, "ledger_seqs", lseq,
                        "tasks_seqs", tseq, "digest", hex};
    return vs_escrow_audit(g->escrow, t, "ledger", VS__V1__SEVERITY__SEVERITY_INFO, NULL, NULL,
                           "batch_committed", kv, 5);
}

static int apply_batch(vs_ledger_txn *t, void *arg)
{
    struct batch *b = arg;
    struct ledgerd *g = b->g;
    uint64_t first[2] = {0, 0}, applied[2] = {0, 0}; /* LEDGER, TASKS */
    /* What is due goes first: a vote or a dispute that arrives after its
     * deadline finds the deadline's effect already applied. */
    int rc = b->with_tick ? vs_escrow_tick(g->escrow, t) : 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        struct item *it = &b->items[i];
        reset_outputs(it);
        rc = it->kind == ITEM_TASK_EVENT ? apply_task_event(g, t, it) : apply_command(g, t, it);
        uint64_t seq = vs_msg_stream_seq(it->msg);
        size_t s = it->kind == ITEM_TASK_EVENT;
        if (seq > applied[s])
            applied[s] = seq;
        if (first[s] == 0 || seq < first[s])
            first[s] = seq;
    }
    if (rc == 0)
        rc = audit_batch(g, t, b, first, applied);
    for (size_t s = 0; s < 2 && rc == 0; s++) {
        const char *stream = vs_stream(s ? VS_STREAM_TASKS : VS_STREAM_LEDGER)->name;
        uint64_t prev;
        if (applied[s] == 0)
            continue;
        if ((rc = vs_ledger_applied_get(t, stream, &prev)) == 0 && applied[s] > prev)
            rc = vs_ledger_applied_set(t, stream, applied[s]);
    }
    if (rc == 0 && b->with_tick)
        rc = vs_escrow_tick(g->escrow, t);
    for (size_t i = 0; i < b->ndeleting && rc == 0; i++)
        rc = vs_ledger_outbox_del(t, b->deleting[i]);
    if (rc == 0)
        rc = vs_ledger_outbox_last(t, &b->outbox_last);
    return rc;
}

static void respond(struct item *it)
{
    if (it->reply == NULL || vs_msg_reply_to(it->msg) == NULL)
        return;
    Vs__V1__LedgerReply *r = vs__v1__ledger_reply__unpack(NULL, it->reply_len, it->reply);
    if (r == NULL)
        return;
    r->replayed = r->replayed || it->replayed;
    vs_msg_respond(it->msg, &r->base);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
}

static void finish(struct ledgerd *g, struct item *it)
{
    if (it->kind != ITEM_TASK_EVENT) {
        g->n.commands++;
        g->n.replayed += it->replayed;
    } else {
        g->n.task_events++;
    }
    respond(it);
    vs_msg_ack(it->msg);
    reset_outputs(it);
}

/* ---- the writer ---------------------------------------------------------------------------- */

/* On the pool thread: the batch in one transaction; when the store refuses
 * it, each message alone, so that one bad message cannot block the rest.
 * Touches only the job's items and the store. */
static void write_job(uv_work_t *req)
{
    struct ledgerd *g = req->data;
    struct batch b = {.g = g, .items = g->work, .n = g->nwork, .deleting = g->deleting,
                      .ndeleting = g->ndeleting, .with_tick = g->job_ticks};
    int rc = vs_ledger_write(g->ledger, 0, apply_batch, &b);
    g->tick_failed = false;
    if (rc != 0 && b.with_tick) { /* perhaps the timed work, not the commands */
        b.with_tick = false;
        if ((rc = vs_ledger_write(g->ledger, 0, apply_batch, &b)) == 0)
            g->tick_failed = true;
    }
    g->job_failed = rc != 0;
    if (rc == 0)
        g->outbox_committed = b.outbox_last;
    for (size_t i = 0; i < g->nwork; i++)
        g->work[i].status = rc;
    if (rc == 0 || g->nwork <= 1)
        return;
    for (size_t i = 0; i < g->nwork; i++) {
        struct batch one = {.g = g, .items = &g->work[i], .n = 1};
        g->work[i].status = vs_ledger_write(g->ledger, 0, apply_batch, &one);
        if (g->work[i].status == 0)
            g->outbox_committed = one.outbox_last;
    }
}

static void fail_item(struct ledgerd *g, struct item *it)
{
    int err = it->status;
    if (err == -EBADMSG || err == -EUCLEAN || err == -EINVAL) {
        g->n.poison++;
        log_warnx("message %" PRIu64 " on %s cannot be applied (%s): terminated",
                  vs_msg_stream_seq(it->msg), vs_msg_subject(it->msg), strerror(-err));
        vs_audit_emit(g->bus, "ledger", VS__V1__SEVERITY__SEVERITY_ERROR, NULL, NULL,
                      "message_terminated", "subject", vs_msg_subject(it->msg), "error",
                      strerror(-err), NULL);
        vs_msg_respond_status(it->msg, VS__V1__STATUS_CODE__STATUS_INVALID,
                              "the ledger cannot apply this command");
        vs_msg_term(it->msg);
    } else {
        vs_msg_nak(it->msg, RETRY_MS); /* the store's trouble: later */
    }
    reset_outputs(it);
}

static void start_job(struct ledgerd *g);

/* Back on the loop: answer and ack what was committed. */
static void job_done(uv_work_t *req, int status)
{
    struct ledgerd *g = req->data;
    g->busy = false;
    bool committed = status == 0 && !g->job_failed;
    if (status == 0 && g->job_failed) {
        g->n.batch_errors++;
        log_warnx("a batch of %zu was refused by the store; applied one by one", g->nwork);
    }
    if (status == 0 && (g->tick_failed || g->job_failed)) {
        /* Timed settlement (or the store) failed: try again later, backing
         * off, instead of at once and forever. */
        g->tick_backoff_ms = g->tick_backoff_ms ? g->tick_backoff_ms * 2 : RETRY_MS;
        if (g->tick_backoff_ms > MAX_BACKOFF_MS)
            g->tick_backoff_ms = MAX_BACKOFF_MS;
        g->tick_retry_at_ms = vs_mono_ms() + g->tick_backoff_ms;
        log_warnx("the store refused timed settlement; next attempt in %" PRIu64 " ms",
                  g->tick_backoff_ms);
    } else if (status == 0 && g->job_ticks) {
        g->tick_backoff_ms = 0;
    }
    if (committed && g->ndeleting > 0) {
        /* done[] only grew at its end meanwhile: the job deleted its prefix. */
        memmove(g->done, g->done + g->ndeleting, (g->ndone - g->ndeleting) * sizeof *g->done);
        g->ndone -= g->ndeleting;
    }
    g->n.batches += status == 0;
    uint64_t outbox_committed = g->outbox_committed; /* read before the writer runs again */
    /* Set the finished batch aside and give the writer the next one before
     * answering this one: the next commit overlaps this sync and these acks. */
    struct item *finished = g->work;
    size_t nfinished = g->nwork;
    g->work = g->spare;
    g->spare = finished;
    g->nwork = g->ndeleting = 0;
    if (g->nitems >= g->batch || (g->nitems > 0 && !uv_is_active((uv_handle_t *)&g->coalesce_timer)))
        start_job(g);
    /* What the job committed is durable once its root is synced; until
     * then nothing may say it happened (sync_root_later). */
    int synced = status == 0 ? vs_ledger_sync(g->ledger) : 0;
    if (synced < 0)
        log_warnx("cannot sync the ledger (%s): its last batch is not acknowledged", strerror(-synced));
    else if (status == 0)
        g->outbox_durable = outbox_committed;
    for (size_t i = 0; i < nfinished; i++) {
        struct item *it = &finished[i];
        if (synced < 0 && it->status == 0)
            it->status = -EIO; /* nak'ed: applied or not, it is answered when redelivered */
        if (status == 0 && it->status == 0)
            finish(g, it);
        else
            fail_item(g, it);
    }
    publish_outbox(g);
    if (!g->busy)
        schedule(g);
}

/* Hand what is waiting (up to a batch; possibly nothing, for timed work
 * and outbox trimming) to the writer, unless it is busy. */
static void start_job(struct ledgerd *g)
{
    if (g->busy || !g->handles_init || g->stopping)
        return;
    uv_timer_stop(&g->coalesce_timer);
    size_t n = g->nitems < g->batch ? g->nitems : g->batch;
    if (n > 0) {
        memcpy(g->work, g->items + g->ihead, n * sizeof *g->items);
        g->ihead = g->nitems == n ? 0 : g->ihead + n;
        g->nitems -= n;
    }
    g->nwork = n;
    g->ndeleting = g->ndone < g->batch ? g->ndone : g->batch;
    if (g->ndeleting > 0)
        memcpy(g->deleting, g->done, g->ndeleting * sizeof *g->done);
    g->job.data = g;
    g->job_ticks = g->tick_backoff_ms == 0 || vs_mono_ms() >= g->tick_retry_at_ms;
    if (uv_queue_work(vs_daemon_loop(g->d), &g->job, write_job, job_done) != 0) {
        log_warnx("cannot start the writer");
        if (n > 0) { /* give the items back, in front (still where they were) */
            if (g->nitems == 0)
                memcpy(g->items, g->work, n * sizeof *g->items);
            else
                g->ihead -= n;
            g->nitems += n;
        }
        g->nwork = g->ndeleting = 0;
        return;
    }
    g->busy = true;
}

static void on_flush_idle(uv_idle_t *h)
{
    struct ledgerd *g = h->data;
    uv_idle_stop(h);
    start_job(g);
}

static void on_coalesced(uv_timer_t *h)
{
    start_job(h->data);
}

/* ---- time-based work ------------------------------------------------------------------------ */

struct due {
    struct ledgerd *g;
    uint64_t at;
};

static int read_due(vs_ledger_txn *t, void *arg)
{
    struct due *due = arg;
    return vs_escrow_next_due(due->g->escrow, t, &due->at);
}

static void on_due(uv_timer_t *h)
{
    start_job(h->data); /* a busy writer ticks in its batch, then reschedules */
}

/* Arm the due timer for the earliest deadline (and retry soon on errors). */
static void schedule(struct ledgerd *g)
{
    if (!g->handles_init || g->stopping || g->busy)
        return;
    g->retry_armed = false;
    struct due due = {.g = g};
    int rc = vs_ledger_read(g->ledger, read_due, &due);
    uint64_t at = due.at;
    uint64_t now = vs_now_ns();
    uint64_t delay = rc != 0 ? RETRY_MS : at == 0 ? 0 : at <= now ? 0 : (at - now) / 1000000u + 1;
    uint64_t mono = vs_mono_ms();
    if (g->tick_backoff_ms > 0 && g->tick_retry_at_ms > mono + delay)
        delay = g->tick_retry_at_ms - mono;
    if (rc == 0 && at == 0) {
        uv_timer_stop(&g->due_timer);
        if (g->ndone > 0)
            uv_timer_start(&g->due_timer, on_due, RETRY_MS, 0); /* trim the outbox */
        return;
    }
    uv_timer_start(&g->due_timer, on_due, delay, 0);
}

static void on_retry(uv_timer_t *h)
{
    struct ledgerd *g = h->data;
    g->retry_armed = false;
    publish_outbox(g);
    schedule(g);
}

static void on_reader_check(uv_timer_t *h)
{
    struct ledgerd *g = h->data;
    int dead = 0;
    vs_ledger_reader_check(g->ledger, &dead);
    if (dead > 0)
        log_info("cleared %d stale LMDB readers", dead);
}

/* ---- the bus -------------------------------------------------------------------------------- */

static int enqueue(struct ledgerd *g, vs_msg *m, enum item_kind kind)
{
    if (g->stopping)
        return VS_RETRY;
    if (g->ihead + g->nitems == g->cap && g->ihead > 0) { /* taken from the front: move up */
        memmove(g->items, g->items + g->ihead, g->nitems * sizeof *g->items);
        g->ihead = 0;
    }
    if (g->nitems == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 1024;
        struct item *p = realloc(g->items, cap * sizeof *p);
        if (p == NULL)
            return VS_RETRY;
        g->items = p;
        g->cap = cap;
    }
    struct item *it = &g->items[g->ihead + g->nitems++];
    *it = (struct item){.msg = vs_msg_hold(m), .kind = kind};
    if (kind != ITEM_TASK_EVENT) {
        size_t len;
        const uint8_t *data = vs_msg_data(m, &len);
        body_hash(data, len, it->body_hash);
    }
    /* A full batch goes now; a smaller one waits COALESCE_MS for company,
     * so that one commit (two fsyncs) serves more commands. */
    if (g->nitems >= g->batch)
        uv_idle_start(&g->flush_idle, on_flush_idle);
    else if (!uv_is_active((uv_handle_t *)&g->coalesce_timer))
        uv_timer_start(&g->coalesce_timer, on_coalesced, COALESCE_MS, 0);
    return 0;
}

static int on_command(vs_msg *m, void *arg)
{
    const struct vs_subject_def *def = vs_subject_match(vs_msg_subject(m));
    bool agent = def != NULL && (def->id == VS_SUBJ_ESCROW_RELEASE || def->id == VS_SUBJ_ESCROW_DISPUTE);
    return enqueue(arg, m, agent ? ITEM_AGENT_COMMAND : ITEM_COMMAND);
}

static int on_task_event(vs_msg *m, void *arg)
{
    return enqueue(arg, m, ITEM_TASK_EVENT);
}

struct query {
    struct ledgerd *g;
    const Vs__V1__LedgerCommand *cmd;
    struct vs_escrow_reply r;
};

static int run_query(vs_ledger_txn *t, void *arg)
{
    struct query *q = arg;
    return vs_escrow_query(q->g->escrow, t, q->cmd, &q->r);
}

static int on_query(vs_msg *m, void *arg)
{
    struct ledgerd *g = arg;
    struct query q = {.g = g, .cmd = (const Vs__V1__LedgerCommand *)vs_msg_body(m)};
    vs_escrow_reply_init(&q.r);
    g->n.queries++;
    int rc = vs_ledger_read(g->ledger, run_query, &q);
    if (rc == 0)
        rc = vs_msg_respond(m, &q.r.msg.base);
    if (rc == -EMSGSIZE)
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_INVALID,
                              "the answer is too large: ask for fewer entries");
    else if (rc < 0 && rc != -ENOENT)
        vs_msg_respond_status(m, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "internal error");
    vs_escrow_reply_clear(&q.r);
    return 0;
}

/* ---- the daemon skeleton's hooks ------------------------------------------------------------------ */

static int parse_governors(const vs_config *cfg, struct vs_escrow_config *ec)
{
    size_t n = vs_config_list_len(cfg, "ledgerd.governance_keys");
    if (n > VS_ESCROW_MAX_GOVERNORS) {
        log_warnx("ledgerd.governance_keys: at most %d keys", VS_ESCROW_MAX_GOVERNORS);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *hex = vs_config_list_get(cfg, "ledgerd.governance_keys", i);
        size_t bin_len = 0;
        if (hex == NULL || strlen(hex) != 64 ||
            sodium_hex2bin(ec->governors[i], 32, hex, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32) {
            log_warnx("ledgerd.governance_keys[%zu]: not 64 hex digits", i);
            return -EINVAL;
        }
    }
    ec->n_governors = n;
    int64_t m = vs_config_int(cfg, "ledgerd.governance_threshold", 1);
    if (m < 1 || (n > 0 && (size_t)m > n)) {
        log_warnx("ledgerd.governance_threshold must be between 1 and the number of keys");
        return -EINVAL;
    }
    ec->governance_threshold = (unsigned)m;
    return 0;
}

static int ledgerd_open(vs_daemon *d)
{
    struct ledgerd *g = &g_ledgerd;
    memset(g, 0, sizeof *g);
    g->d = d;
    g->bus = vs_daemon_bus(d);
    vs_daemon_set_data(d, g);
    const vs_config *cfg = vs_daemon_config(d);
    int64_t batch = vs_config_int(cfg, "ledgerd.batch", DEFAULT_BATCH);
    int64_t fee = vs_config_int(cfg, "ledgerd.fee_bps", 500);
    g->ack_wait_ms = vs_config_duration_ms(cfg, "ledgerd.ack_wait", 30000);
    const char *minrep = vs_config_string(cfg, "ledgerd.min_reputation", "0.3");
    char *end = NULL;
    double min_reputation = strtod(minrep, &end);
    if (batch < 1 || batch > 65536 || fee < 0 || fee > 10000 || g->ack_wait_ms < 1000 ||
        end == minrep || *end != '\0' || !(min_reputation >= 0.0 && min_reputation <= 1.0)) {
        log_warnx("ledgerd.batch must be 1..65536, fee_bps 0..10000, ack_wait >= 1s, "
                  "min_reputation 0..1");
        return -EINVAL;
    }
    g->batch = (size_t)batch;
    g->work = calloc(g->batch, sizeof *g->work);
    g->spare = calloc(g->batch, sizeof *g->spare);
    g->deleting = calloc(g->batch, sizeof *g->deleting);
    if (g->work == NULL || g->spare == NULL || g->deleting == NULL)
        return -ENOMEM;
    struct vs_escrow_config ec = {
        .fee_bps = (uint32_t)fee,
        .dispute_window_ms = vs_config_duration_ms(cfg, "ledgerd.dispute_window", 60000),
        .vote_timeout_ms = vs_config_duration_ms(cfg, "ledgerd.vote_timeout", 24ULL * 3600 * 1000),
        .hold_timeout_ms = vs_config_duration_ms(cfg, "ledgerd.hold_timeout", 24ULL * 3600 * 1000),
        .min_reputation = min_reputation,
        .component = "ledgerd",
    };
    int rc = parse_governors(cfg, &ec);
    if (rc)
        return rc;
    struct vs_ledger_opts o = {
        .path = vs_config_string(cfg, "ledgerd.store", NULL),
        .map_size = vs_config_size(cfg, "ledgerd.map_size", 0),
        .sync_root_later = true, /* job_done syncs before acking */
    };
    if ((rc = vs_ledger_open(&o, &g->ledger)) < 0) {
        log_warnx("cannot open the ledger %s: %s", o.path, strerror(-rc));
        return rc;
    }
    /* What an earlier run committed is made durable before it is published. */
    if ((rc = vs_ledger_sync(g->ledger)) < 0 ||
        (rc = vs_ledger_read(g->ledger, read_outbox_last, g)) < 0) {
        log_warnx("cannot sync the ledger %s: %s", o.path, strerror(-rc));
        return rc;
    }
    if ((rc = vs_escrow_new(g->ledger, &ec, &g->escrow)) < 0) {
        log_warnx("cannot prepare the ledger's accounts: %s", strerror(-rc));
        return rc;
    }
    uv_loop_t *loop = vs_daemon_loop(d);
    uv_idle_init(loop, &g->flush_idle);
    uv_timer_init(loop, &g->coalesce_timer);
    uv_timer_init(loop, &g->due_timer);
    uv_timer_init(loop, &g->retry_timer);
    uv_timer_init(loop, &g->reader_timer);
    g->flush_idle.data = g->coalesce_timer.data = g->due_timer.data = g->retry_timer.data =
        g->reader_timer.data = g;
    g->handles_init = true;
    log_info("ledger %s: fee %" PRId64 " bps, dispute window %" PRIu64 " ms, %zu governance keys "
             "(%u required)",
             o.path, fee, ec.dispute_window_ms, ec.n_governors, ec.governance_threshold);
    return 0;
}

static int ledgerd_start(vs_daemon *d)
{
    struct ledgerd *g = vs_daemon_data(d);
    struct vs_consumer_def commands = {
        .stream = vs_stream(VS_STREAM_LEDGER)->name,
        .durable = DURABLE_COMMANDS,
        .ack_wait_ms = g->ack_wait_ms,
        .max_ack_pending = MAX_ACK_PENDING,
        .max_deliver = MAX_DELIVER,
    };
    struct vs_consumer_def tasks = {
        .stream = vs_stream(VS_STREAM_TASKS)->name,
        .durable = DURABLE_TASKS,
        .ack_wait_ms = g->ack_wait_ms,
        .max_ack_pending = MAX_ACK_PENDING,
        .max_deliver = MAX_DELIVER,
    };
    int rc = vs_js_consume_sync(g->bus, &commands, &vs__v1__ledger_command__descriptor, on_command, g,
                                &g->commands);
    if (rc == 0)
        rc = vs_js_consume_sync(g->bus, &tasks, NULL, on_task_event, g, &g->tasks);
    if (rc == 0)
        rc = vs_bus_subscribe(g->bus, vs_subject(VS_SUBJ_LEDGER_QUERY)->pattern, DURABLE_COMMANDS,
                              &vs__v1__ledger_command__descriptor, on_query, g, &g->query_sub);
    if (rc == 0) {
        uv_timer_start(&g->reader_timer, on_reader_check, READER_CHECK_MS, READER_CHECK_MS);
        uv_timer_start(&g->retry_timer, on_retry, 0, 0); /* publish what a crash left */
    }
    return rc;
}

static void ledgerd_stop(vs_daemon *d)
{
    struct ledgerd *g = vs_daemon_data(d);
    vs_consumer_free(g->commands);
    vs_consumer_free(g->tasks);
    g->commands = g->tasks = NULL;
}

static bool ledgerd_idle(vs_daemon *d)
{
    struct ledgerd *g = vs_daemon_data(d);
    if (g->nitems > 0)
        start_job(g);
    return !g->busy && g->nitems == 0 && g->ninflight == 0;
}

static void ledgerd_close(vs_daemon *d)
{
    struct ledgerd *g = vs_daemon_data(d);
    if (g == NULL)
        return;
    g->stopping = true;
    vs_consumer_free(g->commands);
    vs_consumer_free(g->tasks);
    vs_sub_free(g->query_sub);
    g->commands = g->tasks = NULL;
    g->query_sub = NULL;
    while (g->busy) /* the writer's commit ends, then its answers go out */
        uv_run(vs_daemon_loop(d), UV_RUN_ONCE);
    if (g->ndone > 0 && g->ledger != NULL) { /* forget what the broker confirmed */
        struct batch b = {.g = g, .deleting = g->done, .ndeleting = g->ndone};
        vs_ledger_write(g->ledger, 0, apply_batch, &b);
    }
    if (g->handles_init) {
        uv_close((uv_handle_t *)&g->flush_idle, NULL);
        uv_close((uv_handle_t *)&g->coalesce_timer, NULL);
        uv_close((uv_handle_t *)&g->due_timer, NULL);
        uv_close((uv_handle_t *)&g->retry_timer, NULL);
        uv_close((uv_handle_t *)&g->reader_timer, NULL);
        g->handles_init = false;
    }
    /* Held messages not applied were not acked: redelivered. */
    for (size_t i = 0; i < g->nitems; i++)
        reset_outputs(&g->items[g->ihead + i]);
    free(g->items);
    free(g->work);
    free(g->spare);
    free(g->deleting);
    free(g->done);
    g->items = g->work = g->spare = NULL;
    g->deleting = g->done = NULL;
    vs_escrow_free(g->escrow);
    vs_ledger_free(g->ledger);
    g->escrow = NULL;
    g->ledger = NULL;
}

static void ledgerd_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct ledgerd *g = vs_daemon_data(d);
    add(ctx, "commands", g->n.commands);
    add(ctx, "replayed", g->n.replayed);
    add(ctx, "task_events", g->n.task_events);
    add(ctx, "batches", g->n.batches);
    add(ctx, "batch_errors", g->n.batch_errors);
    add(ctx, "poison", g->n.poison);
    add(ctx, "outbox_published", g->n.outbox_published);
    add(ctx, "outbox_inflight", g->ninflight);
    add(ctx, "queries", g->n.queries);
    add(ctx, "queued", g->nitems);
    add(ctx, "map_size", vs_ledger_map_size(g->ledger));
}

int main(int argc, char **argv)
{
    static const struct vs_daemon_def def = {
        .component = "ledgerd",
        .summary = "the escrow ledger: LMDB double-entry store, holds, disputes, reputation",
        .config = ledgerd_keys,
        .syscalls = NULL, /* LMDB's calls are in the base allowlist */
        .open = ledgerd_open,
        .start = ledgerd_start,
        .stop = ledgerd_stop,
        .idle = ledgerd_idle,
        .close = ledgerd_close,
        .counters = ledgerd_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
