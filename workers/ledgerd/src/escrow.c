/*
 * escrow.c - the escrow rules on the ledger store (escrow.h): what each
 * LedgerCommand and each task outcome does to accounts and transfers, the
 * dispute panels, reputation and the M-of-N approvals of operator money.
 *
 * Everything happens inside the caller's ledger transaction and reports
 * through the outbox of that transaction, so the daemon's group commit
 * makes a command's transfers, its reply, its Settlement and its audit
 * events durable together. Records in the escrow tables are fixed-size
 * structs (the store's convention). Transfer ids are BLAKE2b(task or
 * command id, role): a replayed step finds its transfers already bound.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/audit.h"
#include "vs/envelope.h"
#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/lmdb_util.h"
#include "vs/subjects.h"

#define REPUTATION_DECAY 0.95
#define LIVE_BONUS 1.05
#define DEFAULT_FEE_BPS 500
#define DEFAULT_TIMEOUT_MS (24ULL * 3600 * 1000)
#define DEFAULT_MIN_REPUTATION 0.3
#define DEFAULT_HISTORY 100
#define MAX_HISTORY 1000
#define SIGNATURE_SKEW_MS 60000
#define MAX_SIGNATURES VS_ESCROW_MAX_GOVERNORS

enum task_state {
    TASK_HELD = 1,   /* hold pending, no outcome yet */
    TASK_DECIDED,    /* outcome known, hold posted into escrow, window open */
    TASK_DISPUTED,   /* a panel is voting */
    TASK_SETTLED,    /* paid out or refunded */
};

enum timer_kind { TIMER_WINDOW = 'w', TIMER_VOTE = 'v' };

struct task_rec {
    uint8_t hold_id[VS_LEDGER_ID_LEN];
    char requester[VS_LEDGER_NAME_MAX];
    char agent[VS_LEDGER_NAME_MAX];
    uint64_t bounty;
    uint64_t due_at;        /* window end or vote deadline */
    uint64_t paid, fee, refunded;
    uint32_t state;         /* task_state */
    uint32_t outcome;       /* vs_task_outcome, 0 before one */
    uint32_t settlement;    /* Vs__V1__SettlementOutcome */
    uint32_t reserved;
};

struct dispute_rec {
    char opener[VS_LEDGER_NAME_MAX];
    char panel[3][VS_LEDGER_NAME_MAX];
    uint32_t votes[3];      /* Vs__V1__DisputeDecision, 0: not yet */
    uint32_t decision;
    uint32_t reserved;
};

struct rep_rec {
    double weighted;        /* sum of w_i * s_i */
    double weights;         /* sum of w_i */
    uint64_t settlements;
    uint64_t updated_ns;
    uint32_t live_verified;
    uint32_t reserved;
};

struct vs_escrow {
    vs_ledger *l;
    struct vs_escrow_config cfg;
};

static const uint8_t zero_id[VS_LEDGER_ID_LEN];

/* ---- small helpers -------------------------------------------------------------------- */

void vs_escrow_account_id(const char *name, uint8_t id[VS_LEDGER_ID_LEN])
{
    /* An escrow account takes its task's (time-ordered) id: new ones are
     * appended to the accounts table instead of landing anywhere. A named
     * account's id is a zero byte and 15 bytes of BLAKE2b(name), so that
     * every named account sorts below every time-ordered id: otherwise
     * the wallet with the greatest hash is the table's last key, and new
     * escrow accounts (and their history) split pages in the middle. */
    if (strncmp(name, "escrow:", 7) == 0 && strlen(name) == 7 + 2 * VS_LEDGER_ID_LEN &&
        vs_unhex(name + 7, id, VS_LEDGER_ID_LEN) == 0)
        return;
    /* The same few names (a batch's requesters, agents, the fee account)
     * come back all the time: each thread remembers recent ones. */
    struct named_id {
        char name[VS_LEDGER_NAME_MAX];
        uint8_t id[VS_LEDGER_ID_LEN];
    };
    static _Thread_local struct named_id recent[64];
    size_t len = strlen(name);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    struct named_id *r = &recent[h % 64];
    if (len < sizeof r->name && strcmp(r->name, name) == 0 && name[0] != '\0') {
        memcpy(id, r->id, VS_LEDGER_ID_LEN);
        return;
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, VS_LEDGER_ID_LEN - 1);
    crypto_generichash_update(&st, (const uint8_t *)"vs.ledger.account", 18);
    crypto_generichash_update(&st, (const uint8_t *)name, len);
    id[0] = 0;
    crypto_generichash_final(&st, id + 1, VS_LEDGER_ID_LEN - 1);
    if (len < sizeof r->name) {
        memcpy(r->name, name, len + 1);
        memcpy(r->id, id, VS_LEDGER_ID_LEN);
    }
}

/* The id of a task's or command's transfer in a given role: the base id's
 * first 6 bytes (its millisecond time, for time-ordered ids) and 10 bytes
 * of BLAKE2b(base, role), so that new transfers land near the end of the
 * transfers table. */
static void derived_id(const uint8_t base[VS_LEDGER_ID_LEN], const char *role,
                       uint8_t id[VS_LEDGER_ID_LEN])
{
    uint8_t h[VS_LEDGER_ID_LEN], in[VS_LEDGER_ID_LEN + 32]; /* roles are short constants */
    size_t rl = strnlen(role, sizeof in - VS_LEDGER_ID_LEN - 1);
    memcpy(in, base, VS_LEDGER_ID_LEN);
    memcpy(in + VS_LEDGER_ID_LEN, role, rl);
    in[VS_LEDGER_ID_LEN + rl] = '\0';
    crypto_generichash(h, sizeof h, in, VS_LEDGER_ID_LEN + rl + 1, NULL, 0); /* one call: cheaper */
    memcpy(id, base, 6);
    memcpy(id + 6, h, VS_LEDGER_ID_LEN - 6);
}

static void escrow_name(const uint8_t task[VS_LEDGER_ID_LEN], char out[VS_LEDGER_NAME_MAX])
{
    char hex[VS_ID_HEX_LEN];
    vs_hex(task, VS_LEDGER_ID_LEN, hex);
    snprintf(out, VS_LEDGER_NAME_MAX, "escrow:%s", hex);
}

/* An account by name through its derived id (no name index lookup).
 * Escrow accounts are nameless in the store: their name is their task's. */
static int lookup(vs_ledger_txn *t, const char *name, struct vs_account *a)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= VS_LEDGER_NAME_MAX)
        return -ENOENT;
    uint8_t id[VS_LEDGER_ID_LEN];
    vs_escrow_account_id(name, id);
    int rc = vs_ledger_account(t, id, a);
    if (rc)
        return rc;
    bool same = a->name[0] != '\0' ? strcmp(a->name, name) == 0
                                   : a->code == VS_CODE_ESCROW && strncmp(name, "escrow:", 7) == 0;
    return same ? 0 : -ENOENT;
}

/* The name an account is shown with. */
static const char *display_name(const struct vs_account *a, char out[VS_LEDGER_NAME_MAX])
{
    if (a->name[0] != '\0' || a->code != VS_CODE_ESCROW)
        return a->name;
    escrow_name(a->user_data_128, out);
    return out;
}

static bool has_id(const ProtobufCBinaryData *b)
{
    return b->len == VS_LEDGER_ID_LEN && memcmp(b->data, zero_id, VS_LEDGER_ID_LEN) != 0;
}

static int deny(struct vs_escrow_reply *r, Vs__V1__StatusCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int deny(struct vs_escrow_reply *r, Vs__V1__StatusCode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->status.code = code;
    return 0;
}

static void reply_ok(struct vs_escrow_reply *r, const uint8_t *transfer_id)
{
    r->status.code = VS__V1__STATUS_CODE__STATUS_OK;
    if (transfer_id != NULL) {
        memcpy(r->transfer_id, transfer_id, VS_LEDGER_ID_LEN);
        r->msg.transfer_id.data = r->transfer_id;
        r->msg.transfer_id.len = VS_LEDGER_ID_LEN;
    }
}

void vs_escrow_reply_init(struct vs_escrow_reply *r)
{
    memset(r, 0, sizeof *r);
    vs__v1__ledger_reply__init(&r->msg);
    vs__v1__status__init(&r->status);
    r->msg.status = &r->status;
    r->status.reason = r->reason;
    r->msg.detail = r->detail;
    for (int i = 0; i < 3; i++)
        r->panel[i] = r->panel_names[i];
}

void vs_escrow_reply_clear(struct vs_escrow_reply *r)
{
    for (size_t i = 0; i < r->msg.n_entries; i++)
        free(r->entries[i]);
    free(r->entries);
    r->entries = NULL;
    r->msg.entries = NULL;
    r->msg.n_entries = 0;
    r->cap = 0;
}

/* ---- outbox: audit events and settlements ---------------------------------------------------- */

int vs_escrow_audit(vs_escrow *e, vs_ledger_txn *t, const char *category, Vs__V1__Severity sev,
                    const char *agent, const uint8_t *task, const char *event, const char *const *kv,
                    size_t n)
{
    struct vs_audit_packed p;
    int rc = vs_audit_pack(e->cfg.component, category, sev, vs_ledger_txn_now(t), agent, task,
                           event, kv, n, &p);
    if (rc == 0)
        rc = vs_ledger_outbox_put(t, p.subject, p.msg_id, p.data, p.len);
    vs_audit_packed_clear(&p);
    return rc;
}

/* The Settlement of a task, naming the n transfers that settled it. */
static int publish_settlement(vs_escrow *e, vs_ledger_txn *t, const uint8_t task[VS_LEDGER_ID_LEN],
                              const struct task_rec *tr, const struct vs_transfer *xs, size_t n)
{
    Vs__V1__Settlement s = VS__V1__SETTLEMENT__INIT;
    ProtobufCBinaryData ids[4];
    if (n > sizeof ids / sizeof ids[0])
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        ids[i] = (ProtobufCBinaryData){VS_LEDGER_ID_LEN, (uint8_t *)xs[i].id};
    s.transfer_ids = ids;
    s.n_transfer_ids = n;
    s.task_id.data = (uint8_t *)task;
    s.task_id.len = VS_LEDGER_ID_LEN;
    s.agent = (char *)tr->agent;
    s.requester = (char *)tr->requester;
    s.outcome = (Vs__V1__SettlementOutcome)tr->settlement;
    s.hold_transfer_id.data = (uint8_t *)tr->hold_id;
    s.hold_transfer_id.len = VS_LEDGER_ID_LEN;
    s.paid_to_agent = tr->paid;
    s.fee = tr->fee;
    s.refunded = tr->refunded;
    vs_escrow_reputation(e, t, tr->agent, &s.agent_reputation);
    s.at_ns = vs_ledger_txn_now(t);
    uint8_t buf[1024];
    size_t len = protobuf_c_message_get_packed_size(&s.base);
    if (len > sizeof buf)
        return -EMSGSIZE;
    protobuf_c_message_pack(&s.base, buf);
    char hex[VS_ID_HEX_LEN], msg_id[48];
    vs_hex(task, VS_LEDGER_ID_LEN, hex);
    snprintf(msg_id, sizeof msg_id, "settled-%s", hex);
    return vs_ledger_outbox_put(t, vs_subject(VS_SUBJ_TASK_SETTLED)->pattern, msg_id, buf, len);
}

/* ---- records ------------------------------------------------------------------------------- */

static int rec_get(vs_ledger_txn *t, enum vs_ledger_table tb, const void *k, size_t kn, void *out,
                   size_t n)
{
    const uint8_t *v;
    size_t vn;
    int rc = vs_ledger_kv_get(t, tb, k, kn, &v, &vn);
    if (rc)
        return rc;
    if (vn != n)
        return -EBADMSG;
    memcpy(out, v, n);
    return 0;
}

/* A task record as stored: the numbers, then the two names with their
 * lengths (one per task: a fixed-size record was mostly empty name
 * fields, and the bytes a batch writes decide its commit's time). */
#define TASK_FIXED (VS_LEDGER_ID_LEN + 5 * 8 + 4 * 4 + 2)
#define TASK_MAX (TASK_FIXED + 2 * (VS_LEDGER_NAME_MAX - 1))

static int task_get(vs_ledger_txn *t, const uint8_t *task, struct task_rec *tr)
{
    const uint8_t *p;
    size_t n;
    int rc = vs_ledger_kv_get(t, VS_LTABLE_TASKS, task, VS_LEDGER_ID_LEN, &p, &n);
    if (rc)
        return rc;
    if (n < TASK_FIXED || n != TASK_FIXED + (size_t)p[TASK_FIXED - 2] + p[TASK_FIXED - 1] ||
        p[TASK_FIXED - 2] >= VS_LEDGER_NAME_MAX || p[TASK_FIXED - 1] >= VS_LEDGER_NAME_MAX)
        return -EBADMSG;
    memset(tr, 0, sizeof *tr);
    memcpy(tr->hold_id, p, VS_LEDGER_ID_LEN);
    const uint8_t *q = p + VS_LEDGER_ID_LEN;
    uint64_t *nums[] = {&tr->bounty, &tr->due_at, &tr->paid, &tr->fee, &tr->refunded};
    for (size_t i = 0; i < 5; i++, q += 8)
        *nums[i] = vs_get_be64(q);
    uint32_t *small[] = {&tr->state, &tr->outcome, &tr->settlement, &tr->reserved};
    for (size_t i = 0; i < 4; i++, q += 4)
        *small[i] = vs_get_be32(q);
    size_t rl = *q++, al = *q++;
    memcpy(tr->requester, q, rl);
    memcpy(tr->agent, q + rl, al);
    return 0;
}

static int task_put(vs_ledger_txn *t, const uint8_t *task, const struct task_rec *tr)
{
    uint8_t rec[TASK_MAX], *q = rec;
    memcpy(q, tr->hold_id, VS_LEDGER_ID_LEN);
    q += VS_LEDGER_ID_LEN;
    const uint64_t nums[] = {tr->bounty, tr->due_at, tr->paid, tr->fee, tr->refunded};
    for (size_t i = 0; i < 5; i++, q += 8)
        vs_put_be64(q, nums[i]);
    const uint32_t small[] = {tr->state, tr->outcome, tr->settlement, tr->reserved};
    for (size_t i = 0; i < 4; i++, q += 4)
        vs_put_be32(q, small[i]);
    size_t rl = strnlen(tr->requester, VS_LEDGER_NAME_MAX - 1);
    size_t al = strnlen(tr->agent, VS_LEDGER_NAME_MAX - 1);
    *q++ = (uint8_t)rl;
    *q++ = (uint8_t)al;
    memcpy(q, tr->requester, rl);
    memcpy(q + rl, tr->agent, al);
    return vs_ledger_kv_put(t, VS_LTABLE_TASKS, task, VS_LEDGER_ID_LEN, rec, TASK_FIXED + rl + al);
}

static void timer_key(uint8_t k[8 + VS_LEDGER_ID_LEN], uint64_t at, const uint8_t *task)
{
    for (int i = 7; i >= 0; i--)
        k[7 - i] = (uint8_t)(at >> (8 * i));
    memcpy(k + 8, task, VS_LEDGER_ID_LEN);
}

static int timer_set(vs_ledger_txn *t, uint64_t at, const uint8_t *task)
{
    uint8_t k[8 + VS_LEDGER_ID_LEN];
    timer_key(k, at, task);
    return vs_ledger_kv_put(t, VS_LTABLE_TIMERS, k, sizeof k, "", 0);
}

static int timer_clear(vs_ledger_txn *t, uint64_t at, const uint8_t *task)
{
    uint8_t k[8 + VS_LEDGER_ID_LEN];
    timer_key(k, at, task);
    return vs_ledger_kv_del(t, VS_LTABLE_TIMERS, k, sizeof k);
}

/* ---- reputation ---------------------------------------------------------------------------- */

static int rep_get(vs_ledger_txn *t, const char *agent, struct rep_rec *r)
{
    int rc = rec_get(t, VS_LTABLE_REPUTATION, agent, strlen(agent), r, sizeof *r);
    if (rc == -ENOENT) {
        memset(r, 0, sizeof *r);
        return 0;
    }
    return rc;
}

static double rep_value(const struct rep_rec *r)
{
    double rs = r->settlements == 0 || r->weights <= 0 ? 0.5 : r->weighted / r->weights;
    if (r->live_verified)
        rs = rs * LIVE_BONUS > 1.0 ? 1.0 : rs * LIVE_BONUS;
    return rs;
}

int vs_escrow_reputation(vs_escrow *e, vs_ledger_txn *t, const char *agent, double *rs)
{
    (void)e;
    struct rep_rec r;
    int rc = agent != NULL && agent[0] != '\0' ? rep_get(t, agent, &r) : -EINVAL;
    if (rc == 0)
        *rs = rep_value(&r);
    return rc;
}

/* Add a settlement score: the newest weighs 1, each older one 0.95x more. */
static int rep_score(vs_ledger_txn *t, const char *agent, double score)
{
    struct rep_rec r;
    int rc = rep_get(t, agent, &r);
    if (rc)
        return rc;
    r.weighted = r.weighted * REPUTATION_DECAY + score;
    r.weights = r.weights * REPUTATION_DECAY + 1.0;
    r.settlements++;
    r.updated_ns = vs_ledger_txn_now(t);
    return vs_ledger_kv_put(t, VS_LTABLE_REPUTATION, agent, strlen(agent), &r, sizeof r);
}

int vs_escrow_verified(vs_escrow *e, vs_ledger_txn *t, const char *agent, bool live)
{
    struct rep_rec r;
    if (agent == NULL || agent[0] == '\0' || strlen(agent) >= VS_LEDGER_NAME_MAX)
        return 0; /* nothing to record for a nameless result */
    int rc = rep_get(t, agent, &r);
    if (rc)
        return rc;
    if ((r.live_verified != 0) == live)
        return 0;
    r.live_verified = live;
    rc = vs_ledger_kv_put(t, VS_LTABLE_REPUTATION, agent, strlen(agent), &r, sizeof r);
    if (rc == 0) {
        const char *kv[] = {"live_verified", live ? "true" : "false"};
        rc = vs_escrow_audit(e, t, "reputation", VS__V1__SEVERITY__SEVERITY_INFO, agent, NULL,
                   "live_verified", kv, 1);
    }
    return rc;
}

/* A name from a table indexed by value ("none" outside it or for gaps). */
static const char *name_in(const char *const *names, size_t n, uint32_t v)
{
    return v < n && names[v] != NULL ? names[v] : "none";
}

static const char *const outcome_names[] = {
    [VS_OUTCOME_CLEARED] = "cleared",
    [VS_OUTCOME_QUARANTINED] = "quarantined",
    [VS_OUTCOME_FAILED] = "failed",
    [VS_OUTCOME_REJECTED] = "rejected",
};

static const char *outcome_name(uint32_t o)
{
    return name_in(outcome_names, sizeof outcome_names / sizeof outcome_names[0], o);
}

/* ---- money movements ------------------------------------------------------------------------- */

static uint64_t fee_of(const vs_escrow *e, uint64_t amount)
{
    return (uint64_t)((unsigned __int128)amount * e->cfg.fee_bps / 10000u);
}

/* Run transfers; *failed gets the first failing result (VS_XFER_OK when
 * all applied). */
static int run_transfers(vs_ledger_txn *t, struct vs_transfer *xs, size_t n, int *failed)
{
    int results[8];
    if (n > sizeof results / sizeof results[0])
        return -E2BIG;
    int rc = vs_ledger_create_transfers(t, xs, n, results, NULL);
    *failed = VS_XFER_OK;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (results[i] != VS_XFER_OK && *failed == VS_XFER_OK)
            *failed = results[i];
    return rc;
}

/* A plain transfer between two accounts (ids; an escrow account's id is
 * its task's). Its id is the task's derived id for role; with role NULL
 * the caller sets it. */
static void plain(struct vs_transfer *x, const uint8_t *task, const char *role, const uint8_t *from,
                  const uint8_t *to, uint64_t amount)
{
    memset(x, 0, sizeof *x);
    if (role != NULL)
        derived_id(task, role, x->id);
    memcpy(x->debit_account_id, from, VS_LEDGER_ID_LEN);
    memcpy(x->credit_account_id, to, VS_LEDGER_ID_LEN);
    memcpy(x->user_data_128, task, VS_LEDGER_ID_LEN);
    x->amount = amount;
    x->ledger = VS_ESCROW_LEDGER;
    x->code = 1;
}

static void resolve(struct vs_transfer *x, const uint8_t *task, const char *role,
                    const uint8_t *hold_id, bool post)
{
    memset(x, 0, sizeof *x);
    derived_id(task, role, x->id);
    memcpy(x->pending_id, hold_id, VS_LEDGER_ID_LEN);
    memcpy(x->user_data_128, task, VS_LEDGER_ID_LEN);
    x->flags = post ? VS_TRANSFER_POST_PENDING : VS_TRANSFER_VOID_PENDING;
}

/* Pay out `to_agent` (fee taken from it) and refund `to_requester`, from
 * the hold (still pending: posted first, linked) or from the escrow
 * account it was posted into. */
static int pay_out(vs_escrow *e, vs_ledger_txn *t, const uint8_t *task, struct task_rec *tr,
                   uint64_t to_agent, uint64_t to_requester, Vs__V1__SettlementOutcome outcome)
{
    struct vs_transfer xs[4];
    size_t n = 0;
    uint64_t fee = fee_of(e, to_agent);
    uint8_t id[VS_LEDGER_ID_LEN];
    if (tr->state == TASK_HELD)
        resolve(&xs[n++], task, "post", tr->hold_id, true);
    if (to_agent - fee > 0) {
        vs_escrow_account_id(tr->agent, id);
        plain(&xs[n++], task, "pay", task, id, to_agent - fee);
    }
    if (fee > 0) {
        vs_escrow_account_id(VS_ESCROW_FEE, id);
        plain(&xs[n++], task, "fee", task, id, fee);
    }
    if (to_requester > 0) {
        vs_escrow_account_id(tr->requester, id);
        plain(&xs[n++], task, "refund", task, id, to_requester);
    }
    for (size_t i = 0; i + 1 < n; i++)
        xs[i].flags |= VS_TRANSFER_LINKED;
    int failed;
    int rc = run_transfers(t, xs, n, &failed);
    if (rc)
        return rc;
    if (failed != VS_XFER_OK)
        return -EUCLEAN; /* the hold covers every payout: a failure is a bug */
    tr->paid = to_agent - fee;
    tr->fee = fee;
    tr->refunded = to_requester;
    tr->state = TASK_SETTLED;
    tr->settlement = (uint32_t)outcome;
    if ((rc = task_put(t, task, tr)))
        return rc;
    double score = outcome == VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED  ? 1.0
                   : outcome == VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_SPLIT ? 0.5
                                                                             : 0.0;
    if ((rc = rep_score(t, tr->agent, score)))
        return rc;
    char paid[24], feestr[24], refunded[24];
    snprintf(paid, sizeof paid, "%" PRIu64, tr->paid);
    snprintf(feestr, sizeof feestr, "%" PRIu64, tr->fee);
    snprintf(refunded, sizeof refunded, "%" PRIu64, tr->refunded);
    const char *kv[] = {"requester", tr->requester, "paid",     paid,     "fee",
                        feestr,        "refunded",    refunded, "outcome", outcome_name(tr->outcome)};
    rc = vs_escrow_audit(e, t, "escrow", VS__V1__SEVERITY__SEVERITY_NOTICE, tr->agent, task,
               outcome == VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED ? "released"
               : outcome == VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_SPLIT ? "split"
                                                                         : "refunded",
               kv, 5);
    return rc ? rc : publish_settlement(e, t, task, tr, xs, n);
}

/* Void a hold: the task was rejected or cancelled (scored: false) or
 * failed (scored: a 0 for the agent, before the Settlement reports Rs). */
static int void_hold(vs_escrow *e, vs_ledger_txn *t, const uint8_t *task, struct task_rec *tr,
                     const char *why, bool scored)
{
    struct vs_transfer x;
    resolve(&x, task, "void", tr->hold_id, false);
    int failed;
    int rc = run_transfers(t, &x, 1, &failed);
    if (rc)
        return rc;
    if (failed != VS_XFER_OK && failed != VS_XFER_PENDING_TRANSFER_EXPIRED)
        return -EUCLEAN;
    tr->state = TASK_SETTLED;
    tr->settlement = VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED;
    tr->refunded = tr->bounty;
    if ((rc = task_put(t, task, tr)) || (scored && (rc = rep_score(t, tr->agent, 0.0))))
        return rc;
    const char *kv[] = {"requester", tr->requester, "why", why};
    rc = vs_escrow_audit(e, t, "escrow", VS__V1__SEVERITY__SEVERITY_NOTICE, tr->agent, task, "refunded", kv, 2);
    return rc ? rc : publish_settlement(e, t, task, tr, &x, failed == VS_XFER_OK);
}

/* Settle a decided task by its outcome (window closed, or no window). */
static int settle_by_outcome(vs_escrow *e, vs_ledger_txn *t, const uint8_t *task, struct task_rec *tr)
{
    if (tr->outcome == VS_OUTCOME_CLEARED)
        return pay_out(e, t, task, tr, tr->bounty, 0, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED);
    if (tr->state == TASK_HELD) {
        return void_hold(e, t, task, tr, outcome_name(tr->outcome), true);
    }
    return pay_out(e, t, task, tr, 0, tr->bounty, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED);
}

/* The store expired a pending transfer: a hold whose task got no outcome. */
static int on_expired(vs_ledger_txn *t, const struct vs_transfer *x, void *arg)
{
    vs_escrow *e = arg;
    struct task_rec tr;
    int rc = task_get(t, x->user_data_128, &tr);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    if (tr.state != TASK_HELD || memcmp(tr.hold_id, x->id, VS_LEDGER_ID_LEN) != 0)
        return 0;
    tr.state = TASK_SETTLED;
    tr.settlement = VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED;
    tr.refunded = tr.bounty;
    if ((rc = task_put(t, x->user_data_128, &tr)) || (rc = rep_score(t, tr.agent, 0.0)))
        return rc;
    const char *kv[] = {"requester", tr.requester, "why", "hold timed out"};
    rc = vs_escrow_audit(e, t, "escrow", VS__V1__SEVERITY__SEVERITY_WARNING, tr.agent, x->user_data_128,
               "refunded", kv, 2);
    return rc ? rc : publish_settlement(e, t, x->user_data_128, &tr, NULL, 0);
}

/* ---- accounts --------------------------------------------------------------------------------- */

static int ensure_account(vs_ledger_txn *t, const char *name, const char *owner, uint16_t code,
                          uint16_t flags, const uint8_t *task, const ProtobufCBinaryData *key,
                          int *result)
{
    struct vs_account a;
    memset(&a, 0, sizeof a);
    if (name[0] == '\0' && task != NULL)
        memcpy(a.id, task, VS_LEDGER_ID_LEN); /* an escrow account: its task's id */
    else
        vs_escrow_account_id(name, a.id);
    a.ledger = VS_ESCROW_LEDGER;
    a.code = code;
    a.flags = flags;
    if (task != NULL)
        memcpy(a.user_data_128, task, VS_LEDGER_ID_LEN);
    size_t nl = strnlen(name, sizeof a.name - 1), ol = owner != NULL ? strnlen(owner, sizeof a.owner - 1) : 0;
    memcpy(a.name, name, nl); /* a is zeroed: the strings stay terminated */
    if (ol > 0)
        memcpy(a.owner, owner, ol);
    if (key != NULL && key->len == VS_LEDGER_KEY_LEN) {
        memcpy(a.public_key, key->data, VS_LEDGER_KEY_LEN);
        a.has_public_key = true;
    }
    *result = vs_ledger_create_account(t, &a, NULL);
    return *result < 0 ? *result : 0;
}

static int init_accounts(vs_ledger_txn *t, void *arg)
{
    (void)arg;
    int result, rc = ensure_account(t, VS_ESCROW_OPERATOR, "", VS_CODE_OPERATOR, 0, NULL, NULL, &result);
    if (rc == 0 && result != VS_ACCT_OK)
        return -EUCLEAN;
    if (rc == 0)
        rc = ensure_account(t, VS_ESCROW_FEE, "", VS_CODE_FEE,
                            VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, NULL, NULL, &result);
    return rc == 0 && result != VS_ACCT_OK ? -EUCLEAN : rc;
}

int vs_escrow_new(vs_ledger *l, const struct vs_escrow_config *cfg, vs_escrow **out)
{
    if (l == NULL || cfg == NULL || out == NULL || cfg->n_governors > VS_ESCROW_MAX_GOVERNORS ||
        cfg->fee_bps > 10000)
        return -EINVAL;
    vs_escrow *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->l = l;
    e->cfg = *cfg;
    if (e->cfg.vote_timeout_ms == 0)
        e->cfg.vote_timeout_ms = DEFAULT_TIMEOUT_MS;
    if (e->cfg.hold_timeout_ms == 0)
        e->cfg.hold_timeout_ms = DEFAULT_TIMEOUT_MS;
    if (e->cfg.governance_threshold == 0)
        e->cfg.governance_threshold = 1;
    if (e->cfg.component == NULL)
        e->cfg.component = "ledgerd";
    vs_ledger_on_expired(l, on_expired, e);
    int rc = vs_ledger_write(l, 0, init_accounts, NULL);
    if (rc && rc != -EROFS) {
        vs_escrow_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void vs_escrow_free(vs_escrow *e)
{
    if (e != NULL)
        vs_ledger_on_expired(e->l, NULL, NULL);
    free(e);
}

/* ---- signatures ------------------------------------------------------------------------------- */

/* The command the signatures cover: every envelope must carry the same
 * body bytes, which decode to a LedgerCommand with the outer command id.
 * signers[] gets the distinct valid signer keys. */
struct signed_cmd {
    Vs__V1__LedgerCommand *body;
    uint8_t signers[MAX_SIGNATURES][32];
    size_t n_signers;
};

static int open_signed(vs_ledger_txn *t, const Vs__V1__LedgerCommand *cmd, struct signed_cmd *sc,
                       struct vs_escrow_reply *r)
{
    memset(sc, 0, sizeof *sc);
    if (cmd->n_signatures == 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "a signature is required");
    if (cmd->n_signatures > MAX_SIGNATURES)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "too many signatures");
    const ProtobufCBinaryData *body = &cmd->signatures[0]->body;
    for (size_t i = 0; i < cmd->n_signatures; i++) {
        const Vs__V1__SignedEnvelope *env = cmd->signatures[i];
        if (env->body.len != body->len || memcmp(env->body.data, body->data, body->len) != 0)
            return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "signatures cover different bodies");
        int rc = vs_envelope_verify(env, "vs.v1.LedgerCommand", vs_ledger_txn_now(t), SIGNATURE_SKEW_MS,
                                    NULL, NULL, NULL);
        if (rc < 0)
            return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "signature %zu refused: %s", i,
                        rc == -ETIME ? "expired or not yet valid" : "invalid");
        bool seen = false;
        for (size_t j = 0; j < sc->n_signers; j++)
            seen |= memcmp(sc->signers[j], env->signer.data, 32) == 0;
        if (!seen)
            memcpy(sc->signers[sc->n_signers++], env->signer.data, 32);
    }
    sc->body = vs__v1__ledger_command__unpack(NULL, body->len, body->data);
    if (sc->body == NULL)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "the signed body is not a LedgerCommand");
    if (sc->body->n_signatures != 0 || sc->body->command_id.len != cmd->command_id.len ||
        memcmp(sc->body->command_id.data, cmd->command_id.data, cmd->command_id.len) != 0) {
        vs__v1__ledger_command__free_unpacked(sc->body, NULL);
        sc->body = NULL;
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID,
                    "the signed body must carry the command id and no signatures");
    }
    return 0;
}

static bool signed_by(const struct signed_cmd *sc, const uint8_t key[32])
{
    for (size_t i = 0; i < sc->n_signers; i++)
        if (memcmp(sc->signers[i], key, 32) == 0)
            return true;
    return false;
}

/* The account `name` exists and one signer holds its key. */
static int check_actor(vs_ledger_txn *t, const struct signed_cmd *sc, const char *name,
                       struct vs_account *a, bool *ok)
{
    *ok = false;
    int rc = lookup(t, name, a);
    if (rc == -ENOENT || rc == -EINVAL)
        return 0;
    if (rc)
        return rc;
    *ok = a->has_public_key && signed_by(sc, a->public_key);
    return 0;
}

static unsigned governor_approvals(const vs_escrow *e, const struct signed_cmd *sc)
{
    unsigned n = 0;
    for (size_t i = 0; i < e->cfg.n_governors; i++)
        n += signed_by(sc, e->cfg.governors[i]);
    return n;
}

int vs_escrow_sign(const Vs__V1__LedgerCommand *cmd, vs_signkey *const *keys, size_t n,
                   uint64_t ttl_ms, Vs__V1__LedgerCommand *out)
{
    if (cmd == NULL || out == NULL || cmd->n_signatures != 0 || n == 0 || n > MAX_SIGNATURES ||
        (n > 0 && keys == NULL))
        return -EINVAL;
    vs__v1__ledger_command__init(out);
    size_t len = protobuf_c_message_get_packed_size(&cmd->base);
    uint8_t *body = malloc(len > 0 ? len : 1);
    out->signatures = calloc(n, sizeof *out->signatures);
    if (body == NULL || out->signatures == NULL) {
        free(body);
        free(out->signatures);
        out->signatures = NULL;
        return -ENOMEM;
    }
    protobuf_c_message_pack(&cmd->base, body);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Vs__V1__SignedEnvelope *env = malloc(sizeof *env);
        if (env == NULL) {
            rc = -ENOMEM;
            break;
        }
        vs__v1__signed_envelope__init(env);
        rc = vs_envelope_sign(keys[i], "vs.v1.LedgerCommand", body, len, ttl_ms, env);
        out->signatures[out->n_signatures++] = env;
    }
    free(body);
    out->command_id = cmd->command_id;
    out->op = cmd->op;
    if (rc)
        vs_escrow_signed_clear(out);
    return rc;
}

void vs_escrow_signed_clear(Vs__V1__LedgerCommand *out)
{
    for (size_t i = 0; i < out->n_signatures; i++) {
        vs_envelope_clear(out->signatures[i]);
        free(out->signatures[i]);
    }
    free(out->signatures);
    out->signatures = NULL;
    out->n_signatures = 0;
}

/* ---- commands ---------------------------------------------------------------------------------- */

static int cmd_create_account(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                              struct vs_escrow_reply *r)
{
    (void)e;
    if (c->account == NULL || c->account[0] == '\0' || strncmp(c->account, "escrow:", 7) == 0 ||
        strcmp(c->account, VS_ESCROW_OPERATOR) == 0 || strcmp(c->account, VS_ESCROW_FEE) == 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "account name missing or reserved");
    if (c->public_key.len != 0 && c->public_key.len != VS_LEDGER_KEY_LEN)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "public_key must be 32 bytes");
    if (strlen(c->account) >= VS_LEDGER_NAME_MAX ||
        (c->owner != NULL && strlen(c->owner) >= VS_LEDGER_NAME_MAX))
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "account and owner names: at most %d bytes",
                    VS_LEDGER_NAME_MAX - 1);
    int result;
    int rc = ensure_account(t, c->account, c->owner, VS_CODE_WALLET,
                            VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, NULL, &c->public_key, &result);
    if (rc)
        return rc;
    if (result != VS_ACCT_OK)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "account refused: %s",
                    vs_account_result_name(result));
    reply_ok(r, NULL);
    const char *kv[] = {"account", c->account, "owner", c->owner != NULL ? c->owner : ""};
    return vs_escrow_audit(e, t, "ledger", VS__V1__SEVERITY__SEVERITY_INFO, NULL, NULL, "account_created", kv, 2);
}

static int cmd_hold(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                    struct vs_escrow_reply *r)
{
    if (!has_id(&c->task_id) || c->amount == 0 || c->account == NULL || c->counterparty == NULL ||
        c->account[0] == '\0' || c->counterparty[0] == '\0')
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID,
                    "HOLD needs task_id, amount, account (requester) and counterparty (agent)");
    const uint8_t *task = c->task_id.data;
    struct task_rec tr;
    int rc = task_get(t, task, &tr);
    if (rc == 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the task already has a hold");
    if (rc != -ENOENT)
        return rc;
    struct vs_account agent;
    rc = lookup(t, c->counterparty, &agent);
    if (rc == -ENOENT || rc == -EINVAL || (rc == 0 && agent.code != VS_CODE_WALLET))
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "unknown agent");
    if (rc)
        return rc;
    struct vs_account requester;
    rc = lookup(t, c->account, &requester);
    if (rc == -ENOENT || rc == -EINVAL || (rc == 0 && requester.code != VS_CODE_WALLET))
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "unknown requester");
    if (rc)
        return rc;
    if ((requester.flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (requester.credits_posted < requester.debits_posted + requester.debits_pending ||
         requester.credits_posted - requester.debits_posted - requester.debits_pending < c->amount))
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "insufficient funds");
    int result;
    if ((rc = ensure_account(t, "", "", VS_CODE_ESCROW, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
                             task, NULL, &result)))
        return rc;
    if (result != VS_ACCT_OK)
        return -EUCLEAN;
    /* The hold's id: the one the command names, else the command's own
     * (unique, and time-ordered; a retry under it is answered from the
     * command table before it gets here), else the task's derived one. */
    struct vs_transfer x;
    plain(&x, task, NULL, requester.id, task, c->amount);
    if (has_id(&c->transfer_id))
        memcpy(x.id, c->transfer_id.data, VS_LEDGER_ID_LEN);
    else if (has_id(&c->command_id))
        memcpy(x.id, c->command_id.data, VS_LEDGER_ID_LEN);
    else
        derived_id(task, "hold", x.id);
    x.flags = VS_TRANSFER_PENDING;
    x.timeout_ms = c->timeout_ms != 0 ? c->timeout_ms : e->cfg.hold_timeout_ms;
    int failed;
    if ((rc = run_transfers(t, &x, 1, &failed)))
        return rc;
    if (failed == VS_XFER_DEBIT_ACCOUNT_NOT_FOUND)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "unknown requester");
    if (failed == VS_XFER_EXCEEDS_CREDITS)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "insufficient funds");
    if (failed != VS_XFER_OK)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "hold refused: %s",
                    vs_transfer_result_name(failed));
    memset(&tr, 0, sizeof tr);
    memcpy(tr.hold_id, x.id, VS_LEDGER_ID_LEN);
    memcpy(tr.requester, c->account, strnlen(c->account, sizeof tr.requester - 1)); /* tr zeroed */
    memcpy(tr.agent, c->counterparty, strnlen(c->counterparty, sizeof tr.agent - 1));
    tr.bounty = c->amount;
    tr.state = TASK_HELD;
    if ((rc = task_put(t, task, &tr)))
        return rc;
    reply_ok(r, x.id);
    return 0; /* recorded by the batch's audit digest (vs-ledgerd) */
}

/* REFUND from the platform: the requester cancelled before an outcome. */
static int cmd_cancel(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                      struct vs_escrow_reply *r)
{
    struct task_rec tr;
    int rc = has_id(&c->task_id) ? task_get(t, c->task_id.data, &tr) : -ENOENT;
    if (rc == -ENOENT)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown task");
    if (rc)
        return rc;
    if (tr.state != TASK_HELD)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the task already has an outcome");
    if ((rc = void_hold(e, t, c->task_id.data, &tr, "cancelled", false)))
        return rc;
    uint8_t void_id[VS_LEDGER_ID_LEN];
    derived_id(c->task_id.data, "void", void_id);
    reply_ok(r, void_id);
    return 0;
}

/* Money outside escrow never touches an escrow account: a deposit goes to
 * a wallet; an adjustment moves between wallets, the fee and the operator
 * accounts. */
static int check_governed_accounts(vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                                   struct vs_escrow_reply *r)
{
    bool deposit = c->op == VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    const char *names[2] = {c->account, deposit ? NULL : c->counterparty};
    for (int i = 0; i < 2; i++) {
        if (names[i] == NULL)
            continue;
        struct vs_account a;
        int rc = lookup(t, names[i], &a);
        if (rc == -ENOENT || rc == -EINVAL)
            return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "unknown account %s", names[i]);
        if (rc)
            return rc;
        if (deposit ? a.code != VS_CODE_WALLET : a.code == VS_CODE_ESCROW)
            return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED,
                        deposit ? "deposits go to wallets" : "escrow accounts move only by escrow rules");
    }
    return 0;
}

/* DEPOSIT (operator -> account) and ADJUST (account -> counterparty):
 * money outside the escrow flow, M-of-N approvals. */
static int cmd_governed(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *outer,
                        struct vs_escrow_reply *r)
{
    if (e->cfg.n_governors == 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "no governance keys are configured");
    struct signed_cmd sc;
    int rc = open_signed(t, outer, &sc, r);
    if (rc || sc.body == NULL)
        return rc;
    const Vs__V1__LedgerCommand *c = sc.body;
    unsigned approvals = governor_approvals(e, &sc);
    char have[16], need[16];
    snprintf(have, sizeof have, "%u", approvals);
    snprintf(need, sizeof need, "%u", e->cfg.governance_threshold);
    if (c->op != outer->op) {
        deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "the signed body is another operation");
    } else if (approvals < e->cfg.governance_threshold) {
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "%u of %u required approvals", approvals,
             e->cfg.governance_threshold);
        const char *kv[] = {"approvals", have, "required", need, "account",
                            c->account != NULL ? c->account : ""};
        rc = vs_escrow_audit(e, t, "governance", VS__V1__SEVERITY__SEVERITY_WARNING, NULL, NULL,
                   "approval_refused", kv, 3);
    } else if (c->amount == 0 || c->account == NULL || c->account[0] == '\0' ||
               (c->op == VS__V1__LEDGER_OP__LEDGER_OP_ADJUST &&
                (c->counterparty == NULL || c->counterparty[0] == '\0'))) {
        deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "amount and accounts are required");
    } else if ((rc = check_governed_accounts(t, c, r)) != 0 || r->status.code != 0) {
        /* refused (reason in r) or a store failure (rc) */
    } else {
        bool deposit = c->op == VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
        struct vs_transfer x;
        uint8_t from[VS_LEDGER_ID_LEN], to[VS_LEDGER_ID_LEN];
        vs_escrow_account_id(deposit ? VS_ESCROW_OPERATOR : c->account, from);
        vs_escrow_account_id(deposit ? c->account : c->counterparty, to);
        plain(&x, c->command_id.data, deposit ? "deposit" : "adjust", from, to, c->amount);
        memset(x.user_data_128, 0, sizeof x.user_data_128);
        int failed;
        if ((rc = run_transfers(t, &x, 1, &failed)) == 0) {
            if (failed != VS_XFER_OK) {
                deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "transfer refused: %s",
                     vs_transfer_result_name(failed));
            } else {
                reply_ok(r, x.id);
                char amount[24];
                snprintf(amount, sizeof amount, "%" PRIu64, c->amount);
                const char *kv[] = {"from", deposit ? VS_ESCROW_OPERATOR : c->account, "to",
                                    deposit ? c->account : c->counterparty, "amount", amount,
                                    "approvals", have, "required", need};
                rc = vs_escrow_audit(e, t, "governance", VS__V1__SEVERITY__SEVERITY_NOTICE, NULL, NULL,
                           deposit ? "deposit" : "adjust", kv, 5);
            }
        }
    }
    vs__v1__ledger_command__free_unpacked(sc.body, NULL);
    return rc;
}

/* ESCROW_RELEASE by the task's requester: pay a cleared task now. */
static int cmd_release(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                       const struct signed_cmd *sc, struct vs_escrow_reply *r)
{
    struct task_rec tr;
    int rc = has_id(&c->task_id) ? task_get(t, c->task_id.data, &tr) : -ENOENT;
    if (rc == -ENOENT)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown task");
    if (rc)
        return rc;
    struct vs_account who;
    bool ok;
    if ((rc = check_actor(t, sc, tr.requester, &who, &ok)))
        return rc;
    if (!ok)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "only the task's requester may release it");
    if (tr.state == TASK_SETTLED && tr.settlement == VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED) {
        uint8_t id[VS_LEDGER_ID_LEN];
        derived_id(c->task_id.data, "pay", id);
        reply_ok(r, id);
        return 0;
    }
    if (tr.outcome != VS_OUTCOME_CLEARED || (tr.state != TASK_DECIDED && tr.state != TASK_HELD))
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the task's output is not cleared");
    if (tr.state == TASK_DECIDED && (rc = timer_clear(t, tr.due_at, c->task_id.data)))
        return rc;
    if ((rc = pay_out(e, t, c->task_id.data, &tr, tr.bounty, 0,
                      VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED)))
        return rc;
    uint8_t id[VS_LEDGER_ID_LEN];
    derived_id(c->task_id.data, "pay", id);
    reply_ok(r, id);
    return 0;
}

/* ---- disputes ----------------------------------------------------------------------------------- */

struct panel_pick {
    vs_escrow *e;
    vs_ledger_txn *t;
    const char *exclude_names[2];
    const char *exclude_owners[2];
    struct {
        char name[VS_LEDGER_NAME_MAX];
        char owner[VS_LEDGER_NAME_MAX];
        double rs;
    } best[3];
    size_t n;
};

static bool owner_used(const struct panel_pick *p, const char *owner)
{
    if (owner[0] == '\0')
        return false;
    for (int i = 0; i < 2; i++)
        if (p->exclude_owners[i][0] != '\0' && strcmp(p->exclude_owners[i], owner) == 0)
            return true;
    return false;
}

/* Consider one account for the panel: a keyed agent wallet, not a party,
 * its owner not a party's; keep the 3 best (Rs, then name) with distinct
 * owners. */
static int consider(const struct vs_account *a, void *arg)
{
    struct panel_pick *p = arg;
    /* An agent without an owner cannot be shown independent: never chosen. */
    if (a->code != VS_CODE_WALLET || !a->has_public_key || a->owner[0] == '\0' ||
        owner_used(p, a->owner) ||
        strcmp(a->name, p->exclude_names[0]) == 0 || strcmp(a->name, p->exclude_names[1]) == 0)
        return 0;
    double rs;
    int rc = vs_escrow_reputation(p->e, p->t, a->name, &rs);
    if (rc)
        return rc;
    /* One seat per owner: the owner's best agent. */
    for (size_t i = 0; i < p->n; i++) {
        if (a->owner[0] != '\0' && strcmp(p->best[i].owner, a->owner) == 0) {
            if (rs <= p->best[i].rs)
                return 0;
            for (size_t j = i; j + 1 < p->n; j++)
                p->best[j] = p->best[j + 1];
            p->n--;
            break;
        }
    }
    size_t pos = p->n;
    while (pos > 0 && (rs > p->best[pos - 1].rs ||
                       (rs == p->best[pos - 1].rs && strcmp(a->name, p->best[pos - 1].name) < 0)))
        pos--;
    if (pos >= 3)
        return 0;
    size_t last = p->n < 3 ? p->n : 2;
    for (size_t j = last; j > pos; j--)
        p->best[j] = p->best[j - 1];
    snprintf(p->best[pos].name, VS_LEDGER_NAME_MAX, "%s", a->name);
    snprintf(p->best[pos].owner, VS_LEDGER_NAME_MAX, "%s", a->owner);
    p->best[pos].rs = rs;
    if (p->n < 3)
        p->n++;
    return 0;
}

static int owner_of(vs_ledger_txn *t, const char *name, char out[VS_LEDGER_NAME_MAX])
{
    struct vs_account a;
    int rc = lookup(t, name, &a);
    out[0] = '\0';
    if (rc == 0)
        memcpy(out, a.owner, VS_LEDGER_NAME_MAX);
    return rc == -ENOENT || rc == -EINVAL ? 0 : rc;
}

static int dispute_open(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                        const struct signed_cmd *sc, struct vs_escrow_reply *r)
{
    const uint8_t *task = c->task_id.data;
    struct task_rec tr;
    int rc = has_id(&c->task_id) ? task_get(t, task, &tr) : -ENOENT;
    if (rc == -ENOENT)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown task");
    if (rc)
        return rc;
    struct vs_account who;
    bool is_requester, is_agent;
    if ((rc = check_actor(t, sc, tr.requester, &who, &is_requester)) ||
        (rc = check_actor(t, sc, tr.agent, &who, &is_agent)))
        return rc;
    if (!is_requester && !is_agent)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "only the requester or the agent may dispute");
    if (tr.state == TASK_DISPUTED)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "a dispute is already open");
    if (tr.state != TASK_DECIDED || vs_ledger_txn_now(t) >= tr.due_at)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the dispute window is closed");
    char owners[2][VS_LEDGER_NAME_MAX];
    if ((rc = owner_of(t, tr.requester, owners[0])) || (rc = owner_of(t, tr.agent, owners[1])))
        return rc;
    struct panel_pick pick = {.e = e, .t = t, .exclude_names = {tr.requester, tr.agent},
                              .exclude_owners = {owners[0], owners[1]}};
    if ((rc = vs_ledger_accounts(t, consider, &pick)))
        return rc;
    const char *opener = is_requester ? tr.requester : tr.agent;
    if (pick.n < 3) {
        const char *kv[] = {"opener", opener, "why", "fewer than 3 independent agents"};
        deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "fewer than 3 independent agents to form a panel");
        return vs_escrow_audit(e, t, "dispute", VS__V1__SEVERITY__SEVERITY_WARNING, tr.agent, task, "refused",
                     kv, 2);
    }
    struct dispute_rec d;
    memset(&d, 0, sizeof d);
    snprintf(d.opener, sizeof d.opener, "%s", opener);
    for (int i = 0; i < 3; i++) {
        memcpy(d.panel[i], pick.best[i].name, VS_LEDGER_NAME_MAX);
        memcpy(r->panel_names[i], pick.best[i].name, VS_LEDGER_NAME_MAX);
    }
    r->msg.n_panel = 3;
    r->msg.panel = r->panel;
    if ((rc = timer_clear(t, tr.due_at, task)))
        return rc;
    tr.state = TASK_DISPUTED;
    tr.due_at = vs_ledger_txn_now(t) + e->cfg.vote_timeout_ms * 1000000u;
    if ((rc = timer_set(t, tr.due_at, task)) || (rc = task_put(t, task, &tr)) ||
        (rc = vs_ledger_kv_put(t, VS_LTABLE_DISPUTES, task, VS_LEDGER_ID_LEN, &d, sizeof d)))
        return rc;
    reply_ok(r, NULL);
    const char *kv[] = {"opener", opener, "panel_1", d.panel[0], "panel_2", d.panel[1],
                        "panel_3", d.panel[2], "rationale", c->rationale != NULL ? c->rationale : ""};
    return vs_escrow_audit(e, t, "dispute", VS__V1__SEVERITY__SEVERITY_NOTICE, tr.agent, task, "opened", kv, 5);
}

static const char *const decision_names[] = {
    [VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_AGENT] = "agent",
    [VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_REQUESTER] = "requester",
    [VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT] = "split",
};

static const char *decision_name(uint32_t d)
{
    return name_in(decision_names, sizeof decision_names / sizeof decision_names[0], d);
}

/* Settle a dispute by decision (0: the original outcome stands). */
static int dispute_settle(vs_escrow *e, vs_ledger_txn *t, const uint8_t *task, struct task_rec *tr,
                          struct dispute_rec *d, uint32_t decision, const char *how)
{
    int rc;
    d->decision = decision;
    if ((rc = vs_ledger_kv_put(t, VS_LTABLE_DISPUTES, task, VS_LEDGER_ID_LEN, d, sizeof *d)) ||
        (rc = timer_clear(t, tr->due_at, task)))
        return rc;
    const char *kv[] = {"decision", decision_name(decision), "how", how};
    if ((rc = vs_escrow_audit(e, t, "dispute", VS__V1__SEVERITY__SEVERITY_NOTICE, tr->agent, task, "decided",
                    kv, 2)))
        return rc;
    switch (decision) {
    case VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_AGENT:
        return pay_out(e, t, task, tr, tr->bounty, 0, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED);
    case VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_REQUESTER:
        return pay_out(e, t, task, tr, 0, tr->bounty, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED);
    case VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT:
        return pay_out(e, t, task, tr, tr->bounty / 2, tr->bounty - tr->bounty / 2,
                       VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_SPLIT);
    default:
        return settle_by_outcome(e, t, task, tr);
    }
}

static int dispute_vote(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                        const struct signed_cmd *sc, struct vs_escrow_reply *r)
{
    const uint8_t *task = c->task_id.data;
    struct task_rec tr;
    struct dispute_rec d;
    int rc = has_id(&c->task_id) ? task_get(t, task, &tr) : -ENOENT;
    if (rc == -ENOENT)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown task");
    if (rc)
        return rc;
    if (tr.state != TASK_DISPUTED)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "no dispute is open on this task");
    if (vs_ledger_txn_now(t) >= tr.due_at)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the vote deadline has passed");
    if ((rc = rec_get(t, VS_LTABLE_DISPUTES, task, VS_LEDGER_ID_LEN, &d, sizeof d)))
        return rc == -ENOENT ? -EUCLEAN : rc;
    if (c->decision < VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_AGENT ||
        c->decision > VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "decision must be agent, requester or split");
    if (c->rationale == NULL || c->rationale[0] == '\0')
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "a vote needs a rationale");
    int seat = -1;
    for (int i = 0; i < 3 && seat < 0; i++) {
        struct vs_account who;
        bool ok;
        if ((rc = check_actor(t, sc, d.panel[i], &who, &ok)))
            return rc;
        if (ok && c->account != NULL && strcmp(c->account, d.panel[i]) == 0)
            seat = i;
    }
    if (seat < 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "only a panel member may vote, as itself");
    if (d.votes[seat] != 0)
        return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "this panel member has voted");
    d.votes[seat] = (uint32_t)c->decision;
    char signer[65];
    sodium_bin2hex(signer, sizeof signer, sc->signers[0], 32);
    const char *kv[] = {"voter", d.panel[seat], "decision", decision_name(d.votes[seat]),
                        "rationale", c->rationale, "signer", signer};
    if ((rc = vs_escrow_audit(e, t, "dispute", VS__V1__SEVERITY__SEVERITY_INFO, tr.agent, task, "vote", kv, 4)))
        return rc;
    reply_ok(r, NULL);
    uint32_t counts[4] = {0};
    int cast = 0;
    for (int i = 0; i < 3; i++)
        if (d.votes[i] != 0) {
            counts[d.votes[i]]++;
            cast++;
        }
    for (uint32_t k = 1; k <= 3; k++)
        if (counts[k] >= 2)
            return dispute_settle(e, t, task, &tr, &d, k, "2 of 3");
    if (cast == 3)
        return dispute_settle(e, t, task, &tr, &d, VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT,
                              "tie");
    return vs_ledger_kv_put(t, VS_LTABLE_DISPUTES, task, VS_LEDGER_ID_LEN, &d, sizeof d);
}

/* Commands agents send on vs.escrow.*: signed by the acting account. */
static int cmd_agent(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *outer,
                     struct vs_escrow_reply *r)
{
    struct signed_cmd sc;
    int rc = open_signed(t, outer, &sc, r);
    if (rc || sc.body == NULL)
        return rc;
    const Vs__V1__LedgerCommand *c = sc.body;
    switch (c->op) {
    case VS__V1__LEDGER_OP__LEDGER_OP_RELEASE:
        rc = cmd_release(e, t, c, &sc, r);
        break;
    case VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_OPEN:
        rc = dispute_open(e, t, c, &sc, r);
        break;
    case VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE:
        rc = dispute_vote(e, t, c, &sc, r);
        break;
    default:
        rc = deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "not an agent operation");
    }
    vs__v1__ledger_command__free_unpacked(sc.body, NULL);
    return rc;
}

int vs_escrow_command(vs_escrow *e, vs_ledger_txn *t, enum vs_escrow_origin origin,
                      const Vs__V1__LedgerCommand *cmd, struct vs_escrow_reply *r)
{
    if (e == NULL || t == NULL || cmd == NULL || r == NULL)
        return -EINVAL;
    if (cmd->command_id.len == VS_LEDGER_ID_LEN) {
        memcpy(r->command_id, cmd->command_id.data, VS_LEDGER_ID_LEN);
        r->msg.command_id.data = r->command_id;
        r->msg.command_id.len = VS_LEDGER_ID_LEN;
    } else {
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "command_id must be 16 bytes");
    }
    int rc = 0;
    if (origin == VS_ORIGIN_AGENT) {
        rc = cmd_agent(e, t, cmd, r);
    } else {
        switch (cmd->op) {
        case VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT:
            rc = cmd_create_account(e, t, cmd, r);
            break;
        case VS__V1__LEDGER_OP__LEDGER_OP_HOLD:
            rc = cmd_hold(e, t, cmd, r);
            break;
        case VS__V1__LEDGER_OP__LEDGER_OP_REFUND:
            rc = cmd_cancel(e, t, cmd, r);
            break;
        case VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT:
        case VS__V1__LEDGER_OP__LEDGER_OP_ADJUST:
            rc = cmd_governed(e, t, cmd, r);
            break;
        default:
            rc = deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "not a ledger write operation");
        }
    }
    if (rc == 0 && r->status.code != VS__V1__STATUS_CODE__STATUS_OK) {
        const char *kv[] = {"op", protobuf_c_enum_descriptor_get_value(&vs__v1__ledger_op__descriptor,
                                                                       (int)cmd->op) != NULL
                                      ? protobuf_c_enum_descriptor_get_value(
                                            &vs__v1__ledger_op__descriptor, (int)cmd->op)->name
                                      : "unknown",
                            "reason", r->reason};
        rc = vs_escrow_audit(e, t, "ledger", VS__V1__SEVERITY__SEVERITY_WARNING, NULL,
                   has_id(&cmd->task_id) ? cmd->task_id.data : NULL, "command_refused", kv, 2);
    }
    return rc;
}

/* ---- task outcomes and timers ------------------------------------------------------------------- */

int vs_escrow_task_outcome(vs_escrow *e, vs_ledger_txn *t, const uint8_t task[16],
                           enum vs_task_outcome outcome, const char *why)
{
    struct task_rec tr;
    int rc = task_get(t, task, &tr);
    if (rc == -ENOENT)
        return 0; /* no hold: nothing to settle (audited by the stage) */
    if (rc)
        return rc;
    if (tr.state != TASK_HELD)
        return 0; /* the first outcome decides; later ones change nothing */
    tr.outcome = (uint32_t)outcome;
    if (outcome == VS_OUTCOME_REJECTED)
        return void_hold(e, t, task, &tr, why != NULL ? why : "rejected", false);
    if (e->cfg.dispute_window_ms == 0)
        return settle_by_outcome(e, t, task, &tr);
    const char *kv[] = {"outcome", outcome_name((uint32_t)outcome), "why", why != NULL ? why : ""};
    if ((rc = vs_escrow_audit(e, t, "escrow", VS__V1__SEVERITY__SEVERITY_INFO, tr.agent, task,
                              "outcome", kv, 2)))
        return rc;
    /* Lock the bounty in the escrow account for the window. */
    struct vs_transfer x;
    resolve(&x, task, "post", tr.hold_id, true);
    int failed;
    if ((rc = run_transfers(t, &x, 1, &failed)))
        return rc;
    if (failed == VS_XFER_PENDING_TRANSFER_EXPIRED)
        return 0; /* the expiry hook refunded it */
    if (failed != VS_XFER_OK)
        return -EUCLEAN;
    tr.state = TASK_DECIDED;
    tr.due_at = vs_ledger_txn_now(t) + e->cfg.dispute_window_ms * 1000000u;
    if ((rc = timer_set(t, tr.due_at, task)))
        return rc;
    return task_put(t, task, &tr);
}

struct due_timer {
    uint8_t task[VS_LEDGER_ID_LEN];
    bool found;
};

static int first_timer(const uint8_t *k, size_t kn, const uint8_t *v, size_t vn, void *arg)
{
    (void)v;
    (void)vn;
    struct due_timer *d = arg;
    if (kn != 8 + VS_LEDGER_ID_LEN)
        return -EBADMSG;
    d->found = true;
    memcpy(d->task, k + 8, VS_LEDGER_ID_LEN);
    return 1; /* stop after the first */
}

static int next_timer(vs_ledger_txn *t, uint64_t *at, uint8_t task[VS_LEDGER_ID_LEN])
{
    struct due_timer d = {.found = false};
    int rc = vs_ledger_kv_each(t, VS_LTABLE_TIMERS, NULL, 0, first_timer, &d);
    if (rc < 0)
        return rc;
    *at = 0;
    if (d.found) {
        struct task_rec tr;
        if ((rc = task_get(t, d.task, &tr)))
            return rc == -ENOENT ? -EUCLEAN : rc;
        *at = tr.due_at;
        memcpy(task, d.task, VS_LEDGER_ID_LEN);
    }
    return 0;
}

int vs_escrow_tick(vs_escrow *e, vs_ledger_txn *t)
{
    for (;;) {
        uint64_t at;
        uint8_t task[VS_LEDGER_ID_LEN];
        int rc = next_timer(t, &at, task);
        if (rc || at == 0 || at > vs_ledger_txn_now(t))
            return rc;
        struct task_rec tr;
        if ((rc = task_get(t, task, &tr)))
            return rc;
        if (tr.state == TASK_DECIDED) {
            if ((rc = timer_clear(t, tr.due_at, task)))
                return rc;
            rc = settle_by_outcome(e, t, task, &tr);
        } else if (tr.state == TASK_DISPUTED) {
            struct dispute_rec d;
            if ((rc = rec_get(t, VS_LTABLE_DISPUTES, task, VS_LEDGER_ID_LEN, &d, sizeof d)))
                return rc;
            rc = dispute_settle(e, t, task, &tr, &d, 0, "vote deadline passed");
        } else {
            rc = timer_clear(t, tr.due_at, task);
        }
        if (rc)
            return rc;
    }
}

int vs_escrow_next_due(vs_escrow *e, vs_ledger_txn *t, uint64_t *at_ns)
{
    (void)e;
    uint64_t timer, deadline;
    uint8_t task[VS_LEDGER_ID_LEN];
    int rc = next_timer(t, &timer, task);
    if (rc == 0)
        rc = vs_ledger_next_deadline(t, &deadline);
    if (rc == 0)
        *at_ns = timer == 0 ? deadline : deadline == 0 ? timer : timer < deadline ? timer : deadline;
    return rc;
}

/* ---- queries ------------------------------------------------------------------------------------- */

struct entry_ctx {
    vs_ledger_txn *t;
    struct vs_escrow_reply *r;
    int err;
};

static const char *state_name(enum vs_pending_state s)
{
    static const char *const names[] = {"", "open", "posted", "voided", "expired"};
    return (unsigned)s < 5 ? names[s] : "";
}

static int add_entry(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    struct entry_ctx *c = arg;
    struct vs_escrow_reply *r = c->r;
    if (r->msg.n_entries == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        Vs__V1__LedgerEntry **p = realloc(r->entries, cap * sizeof *p);
        if (p == NULL)
            return c->err = -ENOMEM;
        r->entries = p;
        r->msg.entries = p;
        r->cap = cap;
    }
    /* One allocation per entry: the message, then its strings and ids. */
    struct {
        Vs__V1__LedgerEntry m;
        char debit[VS_LEDGER_NAME_MAX], credit[VS_LEDGER_NAME_MAX];
        uint8_t id[VS_LEDGER_ID_LEN], pending[VS_LEDGER_ID_LEN], task[VS_LEDGER_ID_LEN];
    } *en = calloc(1, sizeof *en);
    if (en == NULL)
        return c->err = -ENOMEM;
    vs__v1__ledger_entry__init(&en->m);
    struct vs_account a;
    char shown[VS_LEDGER_NAME_MAX];
    if (vs_ledger_account(c->t, x->debit_account_id, &a) == 0)
        snprintf(en->debit, sizeof en->debit, "%s", display_name(&a, shown));
    if (vs_ledger_account(c->t, x->credit_account_id, &a) == 0)
        snprintf(en->credit, sizeof en->credit, "%s", display_name(&a, shown));
    memcpy(en->id, x->id, VS_LEDGER_ID_LEN);
    memcpy(en->pending, x->pending_id, VS_LEDGER_ID_LEN);
    memcpy(en->task, x->user_data_128, VS_LEDGER_ID_LEN);
    en->m.transfer_id = (ProtobufCBinaryData){VS_LEDGER_ID_LEN, en->id};
    if (x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING))
        en->m.pending_id = (ProtobufCBinaryData){VS_LEDGER_ID_LEN, en->pending};
    if (memcmp(x->user_data_128, zero_id, VS_LEDGER_ID_LEN) != 0)
        en->m.task_id = (ProtobufCBinaryData){VS_LEDGER_ID_LEN, en->task};
    en->m.debit_account = en->debit;
    en->m.credit_account = en->credit;
    en->m.amount = x->amount;
    en->m.kind = (char *)((x->flags & VS_TRANSFER_PENDING)        ? "hold"
                          : (x->flags & VS_TRANSFER_POST_PENDING) ? "post"
                          : (x->flags & VS_TRANSFER_VOID_PENDING) ? "void"
                                                                  : "transfer");
    en->m.state = (char *)state_name(st);
    en->m.timestamp_ns = x->timestamp;
    if (st != VS_PENDING_NONE) {
        uint64_t deadline = 0;
        vs_ledger_transfer(c->t, x->id, NULL, NULL, &deadline);
        en->m.expires_at_ns = deadline;
    }
    r->entries[r->msg.n_entries++] = &en->m;
    return 0;
}

static int query_account(vs_ledger_txn *t, const Vs__V1__LedgerCommand *c, struct vs_account *a,
                         struct vs_escrow_reply *r, bool *found)
{
    *found = false;
    int rc = c->account != NULL ? lookup(t, c->account, a) : -EINVAL;
    if (rc == -ENOENT || rc == -EINVAL)
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "unknown account");
    *found = rc == 0;
    return rc;
}

int vs_escrow_query(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *c,
                    struct vs_escrow_reply *r)
{
    if (e == NULL || t == NULL || c == NULL || r == NULL)
        return -EINVAL;
    struct vs_account a;
    bool found;
    int rc = 0;
    struct entry_ctx ctx = {.t = t, .r = r};
    switch (c->op) {
    case VS__V1__LEDGER_OP__LEDGER_OP_BALANCE:
        if ((rc = query_account(t, c, &a, r, &found)) || !found)
            return rc;
        r->msg.balance = (int64_t)(a.credits_posted - a.debits_posted);
        r->msg.pending = a.debits_pending;
        if (a.code == VS_CODE_WALLET && (rc = vs_escrow_reputation(e, t, a.name, &r->msg.reputation)))
            return rc;
        reply_ok(r, NULL);
        return 0;
    case VS__V1__LEDGER_OP__LEDGER_OP_CLAIM_CHECK:
        if ((rc = query_account(t, c, &a, r, &found)) || !found)
            return rc;
        if ((rc = vs_escrow_reputation(e, t, a.name, &r->msg.reputation)))
            return rc;
        r->msg.allowed = r->msg.reputation >= e->cfg.min_reputation;
        reply_ok(r, NULL);
        if (!r->msg.allowed)
            deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "reputation %.3f below the minimum %.3f",
                 r->msg.reputation, e->cfg.min_reputation);
        return 0;
    case VS__V1__LEDGER_OP__LEDGER_OP_HISTORY:
        if ((rc = query_account(t, c, &a, r, &found)) || !found)
            return rc;
        rc = vs_ledger_history(t, a.id, 0,
                               c->limit == 0 ? DEFAULT_HISTORY : c->limit > MAX_HISTORY ? MAX_HISTORY : c->limit,
                               add_entry, &ctx);
        break;
    case VS__V1__LEDGER_OP__LEDGER_OP_HOLDS:
        if (has_id(&c->task_id)) {
            rc = vs_ledger_pending(t, NULL, c->task_id.data, add_entry, &ctx);
        } else {
            if ((rc = query_account(t, c, &a, r, &found)) || !found)
                return rc;
            rc = vs_ledger_pending(t, a.id, NULL, add_entry, &ctx);
        }
        break;
    case VS__V1__LEDGER_OP__LEDGER_OP_CHECK: {
        struct vs_ledger_totals tot;
        rc = vs_ledger_check(t, &tot);
        if (rc == -EUCLEAN) {
            snprintf(r->detail, sizeof r->detail, "VIOLATED: %s", tot.problem);
            return deny(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the ledger invariant does not hold");
        }
        if (rc)
            return rc;
        snprintf(r->detail, sizeof r->detail,
                 "holds: accounts %" PRIu64 " transfers %" PRIu64 " open holds %" PRIu64
                 " posted %" PRIu64 " pending %" PRIu64,
                 tot.accounts, tot.transfers, tot.pending_open, tot.debits_posted, tot.debits_pending);
        reply_ok(r, NULL);
        return 0;
    }
    default:
        return deny(r, VS__V1__STATUS_CODE__STATUS_INVALID, "not a query operation");
    }
    if (rc < 0 || ctx.err < 0)
        return ctx.err < 0 ? ctx.err : rc;
    reply_ok(r, NULL);
    return 0;
}
