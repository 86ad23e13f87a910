/*
 * test_ledgerd.c - vs-ledgerd as a real process against a real nats-server,
 * driven the way the platform and agents drive it (JetStream + reply on
 * vs.ledger.command and vs.escrow.*, task outcomes published on the TASKS
 * stream, reads on vs.ledger.query) and through `vsctl ledger`:
 *  - the happy path without a dispute window: deposit, hold, cleared ->
 *    agent paid the bounty minus the fee, a POSTED Settlement on
 *    vs.task.settled, reputation 1.0, audit events in the AUDIT stream;
 *  - refunds: quarantined, rejected, failed output, cancel (REFUND) and a
 *    hold that times out by itself; a late outcome changes nothing;
 *  - idempotency: a repeated command is replayed with the first outcome
 *    (also across a SIGKILL), a reused command id with another body is
 *    INVALID;
 *  - denials (funds, unknown accounts, wrong subjects, unsigned agent
 *    commands) and garbage on the command subject do not stop the daemon;
 *  - governance M-of-N for DEPOSIT and ADJUST;
 *  - disputes inside the window: panel selection and its exclusions,
 *    2-of-3 decisions, a tie split, refused votes, the vote deadline, a
 *    closed window, ESCROW_RELEASE by the requester only; a vote that
 *    arrives after the deadline (the daemon was down) does not count;
 *  - escrow, operator and fee accounts are not wallets: a HOLD cannot draw
 *    on or pay them, governors cannot empty a task's escrow account;
 *  - the claim check and the reputation formula (decay, Live Verified);
 *  - vsctl ledger balance/history/holds/check/deposit/backup.
 * Each test has its own nats-server, store and daemon; every wait is
 * bounded (generous deadlines, never a timing assertion); the daemon must
 * exit cleanly at the end of each test.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define WAIT_MS 20000          /* any single wait: generous, never asserted on */
#define REQUEST_TIMEOUT_MS 10000
#define SIG_TTL_MS 600000
#define NGOV 3

#define OK VS__V1__STATUS_CODE__STATUS_OK
#define DENIED VS__V1__STATUS_CODE__STATUS_DENIED
#define INVALID VS__V1__STATUS_CODE__STATUS_INVALID

#define POSTED VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED
#define VOIDED VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED
#define SPLIT VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_SPLIT

#define D_AGENT VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_AGENT
#define D_REQUESTER VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_REQUESTER
#define D_SPLIT VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT

#define SUBJ_COMMAND "vs.ledger.command"
#define SUBJ_RELEASE "vs.escrow.release"
#define SUBJ_DISPUTE "vs.escrow.dispute"
#define SUBJ_QUERY "vs.ledger.query"
#define GARBAGE_REPLY "_INBOX.vstest.ledgerd-garbage" /* replies go to inboxes only */

struct msgs {
    ProtobufCMessage **v;
    size_t n, cap;
};

struct fixture {
    struct vs_busfix base;
    char *dir;
    char store[256];
    struct vs_daemon ledgerd;
    struct vs_vsctl vsctl;
    vs_signkey *gov[NGOV];
    vs_signkey *outsider;
    vs_signkey *keys[32];   /* agents' keys, freed at teardown */
    size_t nkeys;
    vs_consumer *settled_reader, *audit_reader;
    vs_sub *garbage_sub;
    struct msgs settled, audits, garbage;
    bool marker_live;
};

/* ---- small helpers ------------------------------------------------------------------- */

static bool near(double a, double b)
{
    double d = a - b;
    return d < 1e-9 && d > -1e-9;
}

static void msgs_add(struct msgs *s, ProtobufCMessage *m)
{
    if (m == NULL)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        ProtobufCMessage **v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL) {
            protobuf_c_message_free_unpacked(m, NULL);
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = m;
}

static void msgs_free(struct msgs *s)
{
    for (size_t i = 0; i < s->n; i++)
        protobuf_c_message_free_unpacked(s->v[i], NULL);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static bool same_id(const ProtobufCBinaryData *b, const uint8_t id[VS_ID_LEN])
{
    return b->len == VS_ID_LEN && memcmp(b->data, id, VS_ID_LEN) == 0;
}

static void dump_log(struct fixture *f)
{
    vs_daemon_dump_log(&f->ledgerd);
}

static void idle(struct fixture *f, uint64_t ms)
{
    vs_test_idle(f->base.bus, ms);
}

/* ---- fixture --------------------------------------------------------------------------- */

/* A fresh agent key, freed by the teardown. */
static vs_signkey *new_key(struct fixture *f)
{
    assert_true(f->nkeys < sizeof(f->keys) / sizeof(f->keys[0]));
    assert_int_equal(vs_signkey_new(&f->keys[f->nkeys]), 0);
    return f->keys[f->nkeys++];
}

static int on_settled(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    if (vs_msg_body(m) != NULL)
        msgs_add(&f->settled, vs_test_copy(vs_msg_body(m)));
    return 0;
}

static int on_audit(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    if (vs_msg_body(m) != NULL)
        msgs_add(&f->audits, vs_test_copy(vs_msg_body(m)));
    return 0;
}

static int on_garbage_reply(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    size_t len;
    const uint8_t *data = vs_msg_data(m, &len);
    Vs__V1__LedgerReply *r = vs__v1__ledger_reply__unpack(NULL, len, data);
    if (r != NULL)
        msgs_add(&f->garbage, &r->base);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(&f->base, 0);
    f->dir = vs_scratch_dir("vs-ledgerd");
    assert_non_null(f->dir);
    snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
    vs_daemon_init(&f->ledgerd, VS_LEDGERD_BIN, f->dir, "ledgerd");
    f->vsctl = (struct vs_vsctl){.bin = VS_VSCTL_BIN, .state = f->dir, .url = f->base.nats.url,
                                 .scratch = f->dir, .bus = f->base.bus};
    for (int i = 0; i < NGOV; i++)
        assert_int_equal(vs_signkey_new(&f->gov[i]), 0);
    assert_int_equal(vs_signkey_new(&f->outsider), 0);
    /* Everything the ledger publishes, as the streams store it. */
    assert_int_equal(vs_js_read(f->base.bus, "TASKS", "vs.task.settled", 0, 0,
                                &vs__v1__settlement__descriptor, on_settled, f, &f->settled_reader),
                     0);
    assert_int_equal(vs_js_read(f->base.bus, "AUDIT", NULL, 0, 0, &vs__v1__audit_event__descriptor,
                                on_audit, f, &f->audit_reader),
                     0);
    assert_int_equal(vs_bus_subscribe(f->base.bus, GARBAGE_REPLY, NULL, NULL, on_garbage_reply, f,
                                      &f->garbage_sub),
                     0);
    idle(f, 50);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    vs_daemon_kill(&f->ledgerd);
    vs_consumer_free(f->settled_reader);
    vs_consumer_free(f->audit_reader);
    vs_sub_free(f->garbage_sub);
    vs_busfix_fini(&f->base);
    for (int i = 0; i < NGOV; i++)
        vs_signkey_free(f->gov[i]);
    vs_signkey_free(f->outsider);
    for (size_t i = 0; i < f->nkeys; i++)
        vs_signkey_free(f->keys[i]);
    msgs_free(&f->settled);
    msgs_free(&f->audits);
    msgs_free(&f->garbage);
    vs_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* The daemon's configuration: ngov governance keys (the fixture's first
 * ones), threshold M, and the ledgerd lines of `extra` (each indented by
 * two spaces, newline-terminated). */
static void config(struct fixture *f, size_t ngov, int threshold, const char *extra)
{
    char keys[1024] = "";
    if (ngov > 0) {
        size_t off = (size_t)snprintf(keys, sizeof(keys), "  governance_keys:\n");
        for (size_t i = 0; i < ngov; i++) {
            char hex[65];
            sodium_bin2hex(hex, sizeof(hex), vs_signkey_public(f->gov[i]), 32);
            off += (size_t)snprintf(keys + off, sizeof(keys) - off, "    - \"%s\"\n", hex);
        }
    }
    assert_int_equal(vs_write_file(f->ledgerd.cfg,
                                   "nats:\n  url: %s\nlog:\n  level: debug\nshutdown_timeout: 5s\n"
                                   "ledgerd:\n  store: %s\n  governance_threshold: %d\n%s%s",
                                   f->base.nats.url, f->store, threshold, keys,
                                   extra != NULL ? extra : ""),
                     0);
}

/* ---- requests ------------------------------------------------------------------------- */

/* A command through JetStream + reply; returns the reply or NULL, and the
 * request's status in *status. msg_id NULL: no Nats-Msg-Id. */
static Vs__V1__LedgerReply *send_raw(struct fixture *f, const char *subject,
                                     const Vs__V1__LedgerCommand *cmd, const char *msg_id,
                                     int *status)
{
    return (Vs__V1__LedgerReply *)vs_test_js_request(f->base.bus, subject, &cmd->base, msg_id,
                                                     &vs__v1__ledger_reply__descriptor,
                                                     REQUEST_TIMEOUT_MS, status);
}

/* A command with its command id as Nats-Msg-Id (as vsctl sends them). */
static Vs__V1__LedgerReply *send_cmd(struct fixture *f, const char *subject,
                                     const Vs__V1__LedgerCommand *cmd)
{
    char msg_id[VS_ID_HEX_LEN];
    assert_int_equal(cmd->command_id.len, VS_ID_LEN);
    vs_hex(cmd->command_id.data, VS_ID_LEN, msg_id);
    int status;
    Vs__V1__LedgerReply *r = send_raw(f, subject, cmd, msg_id, &status);
    if (r == NULL) {
        dump_log(f);
        fail_msg("no reply on %s: %s", subject, strerror(-status));
    }
    return r;
}

static Vs__V1__LedgerReply *send_signed(struct fixture *f, const char *subject,
                                        const Vs__V1__LedgerCommand *cmd, vs_signkey *const *keys,
                                        size_t n)
{
    Vs__V1__LedgerCommand outer;
    assert_int_equal(vs_escrow_sign(cmd, keys, n, SIG_TTL_MS, &outer), 0);
    Vs__V1__LedgerReply *r = send_cmd(f, subject, &outer);
    vs_escrow_signed_clear(&outer);
    return r;
}

static Vs__V1__LedgerReply *query_raw(struct fixture *f, const Vs__V1__LedgerCommand *cmd,
                                      uint64_t timeout_ms)
{
    return (Vs__V1__LedgerReply *)vs_test_request(f->base.bus, SUBJ_QUERY, &cmd->base,
                                                  &vs__v1__ledger_reply__descriptor, timeout_ms,
                                                  NULL);
}

static void cmd_init(Vs__V1__LedgerCommand *c, uint8_t id[VS_ID_LEN], Vs__V1__LedgerOp op)
{
    vs__v1__ledger_command__init(c);
    vs_id_new(id);
    c->command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    c->op = op;
    c->issued_at_ns = vs_now_ns();
}

/* CREATE_ACCOUNT of a wallet (key NULL: without a public key). */
static void account_init(Vs__V1__LedgerCommand *c, uint8_t id[VS_ID_LEN], const char *name,
                         const char *owner, vs_signkey *key)
{
    cmd_init(c, id, VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT);
    c->account = (char *)name;
    c->owner = (char *)(owner != NULL ? owner : "");
    if (key != NULL)
        c->public_key = (ProtobufCBinaryData){32, (uint8_t *)vs_signkey_public(key)};
}

/* A HOLD of amount from requester's wallet for the task, to be paid to agent. */
static void hold_init(Vs__V1__LedgerCommand *c, uint8_t id[VS_ID_LEN],
                      const uint8_t task[VS_ID_LEN], const char *requester, const char *agent,
                      uint64_t amount)
{
    cmd_init(c, id, VS__V1__LEDGER_OP__LEDGER_OP_HOLD);
    c->task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    c->account = (char *)requester;
    c->counterparty = (char *)agent;
    c->amount = amount;
}

/* An agent's command about a task (release, dispute, vote), to be signed. */
static void agent_init(Vs__V1__LedgerCommand *c, uint8_t id[VS_ID_LEN], Vs__V1__LedgerOp op,
                       const uint8_t task[VS_ID_LEN], const char *account,
                       Vs__V1__DisputeDecision decision, const char *rationale)
{
    cmd_init(c, id, op);
    c->task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    if (account != NULL)
        c->account = (char *)account;
    c->decision = decision;
    if (rationale != NULL)
        c->rationale = (char *)rationale;
}

static Vs__V1__LedgerReply *query(struct fixture *f, Vs__V1__LedgerOp op, const char *account,
                                  const uint8_t *task)
{
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    cmd_init(&c, id, op);
    if (account != NULL)
        c.account = (char *)account;
    if (task != NULL)
        c.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    Vs__V1__LedgerReply *r = query_raw(f, &c, REQUEST_TIMEOUT_MS);
    if (r == NULL) {
        dump_log(f);
        fail_msg("no answer on %s", SUBJ_QUERY);
    }
    return r;
}

static Vs__V1__StatusCode code_of(const Vs__V1__LedgerReply *r)
{
    return r->status != NULL ? r->status->code : VS__V1__STATUS_CODE__STATUS_UNKNOWN;
}

static const char *reason_of(const Vs__V1__LedgerReply *r)
{
    return r->status != NULL && r->status->reason != NULL ? r->status->reason : "";
}

/* Assert the reply's status (and that its reason contains `part`). */
#define EXPECT(r, code, part) expect_status((r), (code), (part), __LINE__)
static void expect_status(const Vs__V1__LedgerReply *r, Vs__V1__StatusCode code, const char *part,
                          int line)
{
    assert_non_null(r);
    if (code_of(r) != code)
        fail_msg("line %d: status %d (\"%s\"), expected %d", line, code_of(r), reason_of(r), code);
    if (part != NULL && strstr(reason_of(r), part) == NULL)
        fail_msg("line %d: reason \"%s\" does not mention \"%s\"", line, reason_of(r), part);
}

/* The same, then free the reply. */
#define EXPECT_FREE(r, code, part)                                                                 \
    do {                                                                                           \
        Vs__V1__LedgerReply *r_ = (r);                                                             \
        expect_status(r_, (code), (part), __LINE__);                                               \
        vs__v1__ledger_reply__free_unpacked(r_, NULL);                                             \
    } while (0)

/* ---- the daemon ------------------------------------------------------------------------- */

/* Ready: CHECK answered OK. */
static bool ledgerd_ready(struct vs_daemon *d, void *arg)
{
    (void)d;
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_CHECK);
    Vs__V1__LedgerReply *r = query_raw(arg, &c, 1000);
    bool ok = r != NULL && code_of(r) == OK;
    if (r != NULL)
        vs__v1__ledger_reply__free_unpacked(r, NULL);
    return ok;
}

static void start_ledgerd(struct fixture *f)
{
    vs_daemon_start(&f->ledgerd, f->base.bus, ledgerd_ready, f, WAIT_MS, 100);
}

/* A clean stop: exit status 0 (under ASan: no leak, no error report). */
static void stop_ledgerd(struct fixture *f)
{
    vs_daemon_stop_clean(&f->ledgerd, 10000);
}

/* ---- ledger operations ------------------------------------------------------------------ */

static void create_account(struct fixture *f, const char *name, const char *owner, vs_signkey *key)
{
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    account_init(&c, id, name, owner, key);
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), OK, NULL);
}

static Vs__V1__LedgerReply *governed(struct fixture *f, Vs__V1__LedgerOp op, const char *account,
                                     const char *counterparty, uint64_t amount,
                                     vs_signkey *const *keys, size_t n)
{
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    cmd_init(&c, id, op);
    c.account = (char *)account;
    if (counterparty != NULL)
        c.counterparty = (char *)counterparty;
    c.amount = amount;
    return send_signed(f, SUBJ_COMMAND, &c, keys, n);
}

static void deposit(struct fixture *f, const char *account, uint64_t amount)
{
    EXPECT_FREE(governed(f, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT, account, NULL, amount, f->gov, 1),
                OK, NULL);
}

static Vs__V1__LedgerReply *hold(struct fixture *f, const uint8_t task[VS_ID_LEN],
                                 const char *requester, const char *agent, uint64_t amount,
                                 uint64_t timeout_ms)
{
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    hold_init(&c, id, task, requester, agent, amount);
    c.timeout_ms = timeout_ms;
    return send_cmd(f, SUBJ_COMMAND, &c);
}

static void hold_ok(struct fixture *f, uint8_t task[VS_ID_LEN], const char *requester,
                    const char *agent, uint64_t amount)
{
    vs_id_new(task);
    Vs__V1__LedgerReply *r = hold(f, task, requester, agent, amount, 0);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->transfer_id.len, VS_ID_LEN);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
}

/* A signed agent command on vs.escrow.release / vs.escrow.dispute. */
static Vs__V1__LedgerReply *agent_cmd(struct fixture *f, const char *subject, Vs__V1__LedgerOp op,
                                      const uint8_t task[VS_ID_LEN], const char *account,
                                      Vs__V1__DisputeDecision decision, const char *rationale,
                                      vs_signkey *key)
{
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    agent_init(&c, id, op, task, account, decision, rationale);
    return send_signed(f, subject, &c, &key, 1);
}

static Vs__V1__LedgerReply *release(struct fixture *f, const uint8_t task[VS_ID_LEN], vs_signkey *key)
{
    return agent_cmd(f, SUBJ_RELEASE, VS__V1__LEDGER_OP__LEDGER_OP_RELEASE, task, NULL, 0, NULL, key);
}

static Vs__V1__LedgerReply *dispute(struct fixture *f, const uint8_t task[VS_ID_LEN], vs_signkey *key)
{
    return agent_cmd(f, SUBJ_DISPUTE, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_OPEN, task, NULL, 0,
                     "the output is not what was asked", key);
}

static Vs__V1__LedgerReply *vote(struct fixture *f, const uint8_t task[VS_ID_LEN], const char *voter,
                                 Vs__V1__DisputeDecision decision, const char *rationale,
                                 vs_signkey *key)
{
    return agent_cmd(f, SUBJ_DISPUTE, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE, task, voter,
                     decision, rationale, key);
}

struct bal {
    int64_t balance;
    uint64_t pending;
    double rep;
};

static struct bal balance(struct fixture *f, const char *account)
{
    Vs__V1__LedgerReply *r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_BALANCE, account, NULL);
    EXPECT(r, OK, NULL);
    struct bal b = {r->balance, r->pending, r->reputation};
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return b;
}

#define ASSERT_BALANCE(f, account, bal_, pending_)                                                 \
    do {                                                                                           \
        struct bal b_ = balance((f), (account));                                                   \
        if (b_.balance != (int64_t)(bal_) || b_.pending != (uint64_t)(pending_))                   \
            fail_msg("%s: balance %" PRId64 " held %" PRIu64 ", expected %" PRId64 " held %" PRIu64, \
                     (account), b_.balance, b_.pending, (int64_t)(bal_), (uint64_t)(pending_));    \
    } while (0)

#define ASSERT_REP(f, account, want)                                                               \
    do {                                                                                           \
        double r_ = balance((f), (account)).rep;                                                   \
        if (!near(r_, (want)))                                                                     \
            fail_msg("%s: reputation %.6f, expected %.6f", (account), r_, (double)(want));         \
    } while (0)

static void escrow_account(const uint8_t task[VS_ID_LEN], char out[VS_LEDGER_NAME_MAX])
{
    char hex[VS_ID_HEX_LEN];
    vs_hex(task, VS_ID_LEN, hex);
    snprintf(out, VS_LEDGER_NAME_MAX, "escrow:%s", hex);
}

/* Wait until a task's outcome has been applied inside a dispute window:
 * its hold is posted into the task's escrow account. */
static void wait_in_escrow(struct fixture *f, const uint8_t task[VS_ID_LEN], int64_t amount)
{
    char escrow[VS_LEDGER_NAME_MAX];
    escrow_account(task, escrow);
    for (int w = 0; w < WAIT_MS / 20; w++) {
        Vs__V1__LedgerReply *r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_BALANCE, escrow, NULL);
        bool in = code_of(r) == OK && r->balance == amount;
        vs__v1__ledger_reply__free_unpacked(r, NULL);
        if (in)
            return;
        idle(f, 20);
    }
    dump_log(f);
    fail_msg("the outcome of the task was not applied (%s does not hold %" PRId64 ")", escrow,
             amount);
}

static void check_invariant(struct fixture *f)
{
    Vs__V1__LedgerReply *r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_CHECK, NULL, NULL);
    EXPECT(r, OK, NULL);
    assert_non_null(strstr(r->detail, "holds"));
    vs__v1__ledger_reply__free_unpacked(r, NULL);
}

#define ANY_REP -1.0
/* CLAIM_CHECK of account: the status (reason containing `part`), allowed
 * exactly when the status is OK, and the reputation (ANY_REP: not looked
 * at). */
#define EXPECT_CLAIM(f, account, code, part, rep)                                                  \
    expect_claim((f), (account), (code), (part), (rep), __LINE__)
static void expect_claim(struct fixture *f, const char *account, Vs__V1__StatusCode code,
                         const char *part, double rep, int line)
{
    Vs__V1__LedgerReply *r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_CLAIM_CHECK, account, NULL);
    expect_status(r, code, part, line);
    if (r->allowed != (code == OK))
        fail_msg("line %d: %s: allowed %d", line, account, r->allowed);
    if (rep != ANY_REP && !near(r->reputation, rep))
        fail_msg("line %d: %s: reputation %.9f, expected %.9f", line, account, r->reputation, rep);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
}

static size_t open_holds(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    Vs__V1__LedgerReply *r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_HOLDS, NULL, task);
    EXPECT(r, OK, NULL);
    size_t n = r->n_entries;
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return n;
}

/* ---- task events ------------------------------------------------------------------------ */

static void on_puback(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    int *st = arg;
    *st = status;
}

static void publish(struct fixture *f, const char *subject, const ProtobufCMessage *m)
{
    int st = 1;
    assert_int_equal(vs_js_publish(f->base.bus, subject, m, NULL, on_puback, &st), 0);
    for (int w = 0; w < WAIT_MS / 10 && st == 1; w++)
        idle(f, 10);
    assert_int_equal(st, 0);
}

static void publish_verdict(struct fixture *f, const uint8_t task[VS_ID_LEN], bool clean)
{
    Vs__V1__ScanVerdict v = VS__V1__SCAN_VERDICT__INIT;
    v.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    v.stage = VS__V1__SCAN_STAGE__SCAN_STAGE_EXFIL;
    v.verdict = clean ? VS__V1__VERDICT__VERDICT_CLEAN : VS__V1__VERDICT__VERDICT_MALICIOUS;
    v.at_ns = vs_now_ns();
    publish(f, clean ? "vs.task.cleared" : "vs.task.quarantined", &v.base);
}

static void cleared(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    publish_verdict(f, task, true);
}

static void quarantined(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    publish_verdict(f, task, false);
}

/* A new task held and cleared inside a dispute window: its bounty now sits
 * in the task's escrow account. */
static void hold_cleared(struct fixture *f, uint8_t task[VS_ID_LEN], const char *requester,
                         const char *agent, uint64_t amount)
{
    hold_ok(f, task, requester, agent, amount);
    cleared(f, task);
    wait_in_escrow(f, task, (int64_t)amount);
}

static void rejected(struct fixture *f, const uint8_t task[VS_ID_LEN], const char *stage)
{
    Vs__V1__TaskRejected m = VS__V1__TASK_REJECTED__INIT;
    m.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    m.stage = (char *)stage;
    m.rejected_at_ns = vs_now_ns();
    publish(f, "vs.task.rejected", &m.base);
}

static void output(struct fixture *f, const uint8_t task[VS_ID_LEN], const char *agent,
                   bool completed)
{
    Vs__V1__TaskOutput m = VS__V1__TASK_OUTPUT__INIT;
    m.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    m.agent = (char *)agent;
    m.completed = completed;
    m.exit_code = completed ? 0 : 1;
    publish(f, "vs.task.output", &m.base);
}

static void verify_result(struct fixture *f, const char *agent, bool live)
{
    Vs__V1__VerifyResult m = VS__V1__VERIFY_RESULT__INIT;
    m.agent = (char *)agent;
    m.verified = true;
    m.live_verified = live;
    m.at_ns = vs_now_ns();
    char subject[128];
    snprintf(subject, sizeof(subject), "vs.verify.result.%s", agent);
    publish(f, subject, &m.base);
}

/* ---- what the ledger published ------------------------------------------------------------- */

static const Vs__V1__Settlement *settlement_at(struct fixture *f, size_t i)
{
    return (const Vs__V1__Settlement *)f->settled.v[i];
}

static size_t settlements_of(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    size_t n = 0;
    for (size_t i = 0; i < f->settled.n; i++)
        n += same_id(&settlement_at(f, i)->task_id, task);
    return n;
}

static const Vs__V1__Settlement *find_settlement(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    for (size_t i = 0; i < f->settled.n; i++)
        if (same_id(&settlement_at(f, i)->task_id, task))
            return settlement_at(f, i);
    return NULL;
}

static const Vs__V1__Settlement *wait_settlement(struct fixture *f, const uint8_t task[VS_ID_LEN])
{
    for (int w = 0; w < WAIT_MS / 20; w++) {
        const Vs__V1__Settlement *s = find_settlement(f, task);
        if (s != NULL)
            return s;
        idle(f, 20);
    }
    dump_log(f);
    fail_msg("no Settlement on vs.task.settled for the task");
    return NULL;
}

#define ASSERT_SETTLEMENT(s, outcome_, paid_, fee_, refunded_)                                     \
    do {                                                                                           \
        const Vs__V1__Settlement *s_ = (s);                                                        \
        if (s_->outcome != (outcome_) || s_->paid_to_agent != (paid_) || s_->fee != (fee_) ||     \
            s_->refunded != (refunded_))                                                           \
            fail_msg("settlement outcome %d paid %" PRIu64 " fee %" PRIu64 " refunded %" PRIu64    \
                     ", expected %d %" PRIu64 " %" PRIu64 " %" PRIu64,                             \
                     s_->outcome, s_->paid_to_agent, s_->fee, s_->refunded, (outcome_),            \
                     (uint64_t)(paid_), (uint64_t)(fee_), (uint64_t)(refunded_));                  \
    } while (0)

static const Vs__V1__AuditEvent *audit_at(struct fixture *f, size_t i)
{
    return (const Vs__V1__AuditEvent *)f->audits.v[i];
}

static bool audit_match(const Vs__V1__AuditEvent *e, const char *category, const char *event,
                        const uint8_t *task, const char *agent)
{
    return strcmp(e->category, category) == 0 && strcmp(e->event, event) == 0 &&
           (task == NULL || same_id(&e->task_id, task)) &&
           (agent == NULL || strcmp(e->agent, agent) == 0);
}

static size_t audits_of(struct fixture *f, const char *category, const char *event,
                        const uint8_t *task, const char *agent)
{
    size_t n = 0;
    for (size_t i = 0; i < f->audits.n; i++)
        n += audit_match(audit_at(f, i), category, event, task, agent);
    return n;
}

/* The first (after > 0: the after-th) matching event, waited for. */
static const Vs__V1__AuditEvent *wait_audit_n(struct fixture *f, const char *category,
                                              const char *event, const uint8_t *task,
                                              const char *agent, size_t nth)
{
    for (int w = 0; w < WAIT_MS / 20; w++) {
        size_t seen = 0;
        for (size_t i = 0; i < f->audits.n; i++)
            if (audit_match(audit_at(f, i), category, event, task, agent) && ++seen == nth)
                return audit_at(f, i);
        idle(f, 20);
    }
    dump_log(f);
    fail_msg("no audit event %s/%s (#%zu) in the AUDIT stream", category, event, nth);
    return NULL;
}

static const Vs__V1__AuditEvent *wait_audit(struct fixture *f, const char *category,
                                            const char *event, const uint8_t *task,
                                            const char *agent)
{
    return wait_audit_n(f, category, event, task, agent, 1);
}

/* Everything published on TASKS before this call has been applied: a
 * VerifyResult that flips the Live Verified flag of a marker agent comes
 * after it in the stream, and its audit event shows it was applied. */
static void tasks_barrier(struct fixture *f)
{
    size_t before = audits_of(f, "reputation", "live_verified", NULL, "marker");
    f->marker_live = !f->marker_live;
    verify_result(f, "marker", f->marker_live);
    wait_audit_n(f, "reputation", "live_verified", NULL, "marker", before + 1);
}

/* ---- vsctl ------------------------------------------------------------------------------ */

#define VSCTL_TIMEOUT_MS 30000

/* Run vsctl (with the fixture's --url and --state) on the arguments. */
#define VSCTL(f, r, ...)                                                                           \
    vs_vsctl_run(&(f)->vsctl, (r), VSCTL_TIMEOUT_MS, NULL, VS_ARGS(__VA_ARGS__))

/* The same, expecting exit status `status` and (when not NULL) `needle` in
 * its stdout, and nothing else of its output. */
#define VSCTL_EXPECT(f, status, needle, ...)                                                       \
    vs_vsctl_check(&(f)->vsctl, VSCTL_TIMEOUT_MS, (status), (needle), VS_ARGS(__VA_ARGS__))

/* ---- configurations ---------------------------------------------------------------------- */

/* No dispute window: outcomes settle at once. One governance key. */
static void start_plain(struct fixture *f)
{
    config(f, 1, 1,
           "  fee_bps: 500\n  dispute_window: 0\n  min_reputation: 0.3\n  ack_wait: 5s\n");
    start_ledgerd(f);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_escrow_happy_path(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    vs_signkey *bob_key = new_key(f);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "bob", "bob-co", bob_key);
    const Vs__V1__AuditEvent *ev = wait_audit(f, "ledger", "account_created", NULL, NULL);
    assert_string_equal(ev->component, "ledgerd");

    /* A deposit mints from the operator account. */
    Vs__V1__LedgerReply *r =
        governed(f, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT, "alice", NULL, 10000, f->gov, 1);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->transfer_id.len, VS_ID_LEN);
    assert_int_equal(r->command_id.len, VS_ID_LEN);
    assert_false(r->replayed);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    ASSERT_BALANCE(f, "alice", 10000, 0);
    ASSERT_BALANCE(f, "operator", -10000, 0);
    ev = wait_audit(f, "governance", "deposit", NULL, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "to"), "alice");
    assert_string_equal(vs_test_audit_detail(ev, "amount"), "10000");
    assert_int_equal(ev->severity, VS__V1__SEVERITY__SEVERITY_NOTICE);

    /* The hold: money reserved, not moved. */
    uint8_t task[VS_ID_LEN], hold_id[VS_ID_LEN];
    vs_id_new(task);
    r = hold(f, task, "alice", "bob", 1000, 0);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->transfer_id.len, VS_ID_LEN);
    memcpy(hold_id, r->transfer_id.data, VS_ID_LEN);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    ASSERT_BALANCE(f, "alice", 10000, 1000);
    ASSERT_BALANCE(f, "bob", 0, 0);
    char escrow[VS_LEDGER_NAME_MAX];
    escrow_account(task, escrow);
    r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_HOLDS, NULL, task);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->n_entries, 1);
    assert_true(same_id(&r->entries[0]->transfer_id, hold_id));
    assert_string_equal(r->entries[0]->kind, "hold");
    assert_string_equal(r->entries[0]->state, "open");
    assert_string_equal(r->entries[0]->debit_account, "alice");
    assert_string_equal(r->entries[0]->credit_account, escrow);
    assert_int_equal(r->entries[0]->amount, 1000);
    assert_true(same_id(&r->entries[0]->task_id, task));
    /* default hold timeout: 24 h */
    assert_true(r->entries[0]->expires_at_ns > vs_now_ns() + 23ULL * 3600 * 1000000000ULL);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_HOLDS, "alice", NULL);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->n_entries, 1);
    vs__v1__ledger_reply__free_unpacked(r, NULL);

    /* Cleared: the agent is paid the bounty minus 5 %. */
    cleared(f, task);
    const Vs__V1__Settlement *s = wait_settlement(f, task);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    assert_string_equal(s->agent, "bob");
    assert_string_equal(s->requester, "alice");
    assert_true(same_id(&s->hold_transfer_id, hold_id));
    assert_true(near(s->agent_reputation, 1.0));
    assert_true(s->at_ns > 0);
    ASSERT_BALANCE(f, "alice", 9000, 0);
    ASSERT_BALANCE(f, "bob", 950, 0);
    ASSERT_BALANCE(f, "fee", 50, 0);
    ASSERT_BALANCE(f, escrow, 0, 0);
    ASSERT_REP(f, "bob", 1.0);
    assert_int_equal(open_holds(f, task), 0);

    ev = wait_audit(f, "escrow", "released", task, "bob");
    assert_string_equal(vs_test_audit_detail(ev, "requester"), "alice");
    assert_string_equal(vs_test_audit_detail(ev, "paid"), "950");
    assert_string_equal(vs_test_audit_detail(ev, "fee"), "50");
    assert_string_equal(vs_test_audit_detail(ev, "refunded"), "0");
    assert_int_equal(ev->severity, VS__V1__SEVERITY__SEVERITY_NOTICE);
    assert_string_equal(ev->component, "ledgerd");

    /* The transfers as history reports them. */
    r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_HISTORY, "bob", NULL);
    EXPECT(r, OK, NULL);
    bool paid_seen = false;
    for (size_t i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i]->kind, "transfer") == 0 &&
            strcmp(r->entries[i]->debit_account, escrow) == 0 &&
            strcmp(r->entries[i]->credit_account, "bob") == 0 && r->entries[i]->amount == 950)
            paid_seen = true;
    assert_true(paid_seen);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    r = query(f, VS__V1__LEDGER_OP__LEDGER_OP_HISTORY, "alice", NULL);
    EXPECT(r, OK, NULL);
    bool deposit_seen = false, hold_seen = false;
    for (size_t i = 0; i < r->n_entries; i++) {
        const Vs__V1__LedgerEntry *e = r->entries[i];
        if (strcmp(e->kind, "transfer") == 0 && strcmp(e->debit_account, "operator") == 0 &&
            e->amount == 10000)
            deposit_seen = true;
        if (strcmp(e->kind, "hold") == 0 && same_id(&e->transfer_id, hold_id)) {
            hold_seen = true;
            assert_string_equal(e->state, "posted");
        }
    }
    assert_true(deposit_seen && hold_seen);
    vs__v1__ledger_reply__free_unpacked(r, NULL);

    EXPECT_CLAIM(f, "bob", OK, NULL, 1.0);

    /* Without a dispute window there is nothing left to dispute or release. */
    EXPECT_FREE(dispute(f, task, bob_key), DENIED, "window is closed");

    /* The same outcome again (a redelivery, a second scanner) is ignored. */
    cleared(f, task);
    tasks_barrier(f);
    idle(f, 300); /* an extra Settlement would have had time to show up */
    assert_int_equal(settlements_of(f, task), 1);
    assert_int_equal(audits_of(f, "escrow", "released", task, NULL), 1);
    ASSERT_BALANCE(f, "bob", 950, 0);
    ASSERT_BALANCE(f, "alice", 9000, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

static void test_refunds_and_expiry(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    create_account(f, "alice", "alice-co", NULL);
    const char *agents[] = {"bq", "bj", "bf", "bc", "be", "bo"};
    for (size_t i = 0; i < sizeof(agents) / sizeof(agents[0]); i++)
        create_account(f, agents[i], agents[i], NULL);
    deposit(f, "alice", 10000);

    uint8_t tq[VS_ID_LEN], tj[VS_ID_LEN], tf[VS_ID_LEN], tc[VS_ID_LEN], te[VS_ID_LEN],
        to[VS_ID_LEN];
    hold_ok(f, tq, "alice", "bq", 1000);
    hold_ok(f, tj, "alice", "bj", 1000);
    hold_ok(f, tf, "alice", "bf", 1000);
    hold_ok(f, tc, "alice", "bc", 1000);
    hold_ok(f, to, "alice", "bo", 1000);
    ASSERT_BALANCE(f, "alice", 10000, 5000);

    /* Quarantined, rejected, failed: refunded in full at once. */
    quarantined(f, tq);
    rejected(f, tj, "scanner");
    output(f, tf, "bf", false);
    /* A completed, successful output is not an outcome: the hold stays. */
    output(f, to, "bo", true);
    const Vs__V1__Settlement *s = wait_settlement(f, tq);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    assert_string_equal(s->agent, "bq");
    assert_string_equal(s->requester, "alice");
    s = wait_settlement(f, tj);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    s = wait_settlement(f, tf);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    tasks_barrier(f);
    assert_int_equal(settlements_of(f, to), 0);
    assert_int_equal(open_holds(f, to), 1);
    assert_int_equal(open_holds(f, tq) + open_holds(f, tj) + open_holds(f, tf), 0);
    ASSERT_BALANCE(f, "alice", 10000, 2000); /* tc and to still held */

    /* Cancel (REFUND from the platform) before an outcome. */
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_REFUND);
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, tc};
    Vs__V1__LedgerReply *r = send_cmd(f, SUBJ_COMMAND, &c);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->transfer_id.len, VS_ID_LEN);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    s = wait_settlement(f, tc);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    /* Cancelling again, or after an outcome, is refused; an unknown task is invalid. */
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_REFUND);
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, tc};
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), DENIED, "already has an outcome");
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_REFUND);
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, tq};
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), DENIED, "already has an outcome");
    uint8_t unknown[VS_ID_LEN];
    vs_id_new(unknown);
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_REFUND);
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, unknown};
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), INVALID, "unknown task");

    /* A hold that gets no outcome expires by itself. */
    vs_id_new(te);
    r = hold(f, te, "alice", "be", 1000, 300);
    EXPECT(r, OK, NULL);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    s = wait_settlement(f, te);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    assert_string_equal(s->agent, "be");
    const Vs__V1__AuditEvent *ev = wait_audit(f, "escrow", "refunded", te, "be");
    assert_string_equal(vs_test_audit_detail(ev, "why"), "hold timed out");
    assert_int_equal(open_holds(f, te), 0);

    /* Reputation: a refund after a failure (quarantine, failed run, no
     * outcome in time) scores 0; a rejection before the run or a cancel by
     * the requester does not count against the agent. The Settlement
     * reports the agent's reputation after the settlement. */
    ASSERT_REP(f, "bq", 0.0);
    ASSERT_REP(f, "bf", 0.0);
    ASSERT_REP(f, "be", 0.0);
    ASSERT_REP(f, "bj", 0.5);
    ASSERT_REP(f, "bc", 0.5);
    assert_true(near(find_settlement(f, tj)->agent_reputation, 0.5));
    assert_true(near(find_settlement(f, tc)->agent_reputation, 0.5));
    assert_true(near(find_settlement(f, te)->agent_reputation, 0.0));
    double rq = find_settlement(f, tq)->agent_reputation;
    double rf = find_settlement(f, tf)->agent_reputation;

    /* Late outcomes change nothing. */
    cleared(f, te);
    cleared(f, tq);
    cleared(f, tj);
    cleared(f, tc);
    tasks_barrier(f);
    idle(f, 300);
    assert_int_equal(settlements_of(f, te), 1);
    assert_int_equal(settlements_of(f, tq), 1);
    assert_int_equal(settlements_of(f, tj), 1);
    assert_int_equal(settlements_of(f, tc), 1);
    const char *paid[] = {"bq", "bj", "bf", "bc", "be"};
    for (size_t i = 0; i < 5; i++)
        ASSERT_BALANCE(f, paid[i], 0, 0);
    ASSERT_BALANCE(f, "alice", 10000, 1000); /* only `to` is still held */
    ASSERT_BALANCE(f, "fee", 0, 0);
    check_invariant(f);
    stop_ledgerd(f);
    if (!near(rq, 0.0) || !near(rf, 0.0))
        fail_msg("the Settlement of a quarantined / failed task reports the agent's reputation "
                 "before the refund was scored: %.3f / %.3f, the agent's reputation is 0.000",
                 rq, rf);
}

/* The same command sent twice without a Nats-Msg-Id (the stream keeps
 * both): both answered `code` (reason containing `part`), the first
 * applied, the second a replay of it; with_transfer: both name the same
 * transfer (VS_ID_LEN bytes). Returns the second reply (the caller frees
 * it). */
static Vs__V1__LedgerReply *send_twice(struct fixture *f, const Vs__V1__LedgerCommand *cmd,
                                       Vs__V1__StatusCode code, const char *part,
                                       bool with_transfer)
{
    int st;
    Vs__V1__LedgerReply *r1 = send_raw(f, SUBJ_COMMAND, cmd, NULL, &st);
    assert_non_null(r1);
    Vs__V1__LedgerReply *r2 = send_raw(f, SUBJ_COMMAND, cmd, NULL, &st);
    assert_non_null(r2);
    EXPECT(r1, code, part);
    EXPECT(r2, code, part);
    assert_false(r1->replayed);
    assert_true(r2->replayed);
    if (with_transfer) {
        assert_int_equal(r2->transfer_id.len, VS_ID_LEN);
        assert_memory_equal(r1->transfer_id.data, r2->transfer_id.data, VS_ID_LEN);
    }
    vs__v1__ledger_reply__free_unpacked(r1, NULL);
    return r2;
}

static void test_idempotency(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "bob", "bob-co", NULL);

    /* A signed deposit sent twice (no Nats-Msg-Id, so the stream keeps both). */
    uint8_t did[VS_ID_LEN];
    Vs__V1__LedgerCommand d, outer;
    cmd_init(&d, did, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT);
    d.account = "alice";
    d.amount = 5000;
    assert_int_equal(vs_escrow_sign(&d, f->gov, 1, SIG_TTL_MS, &outer), 0);
    Vs__V1__LedgerReply *r2 = send_twice(f, &outer, OK, NULL, true);
    assert_true(same_id(&r2->command_id, did));
    vs__v1__ledger_reply__free_unpacked(r2, NULL);
    ASSERT_BALANCE(f, "alice", 5000, 0);

    /* With the command id as Nats-Msg-Id, JetStream itself drops the copy:
     * the second caller learns the command was accepted before. */
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(did, VS_ID_LEN, msg_id);
    int st;
    Vs__V1__LedgerReply *r1 = send_raw(f, SUBJ_COMMAND, &outer, msg_id, &st);
    assert_non_null(r1);
    EXPECT(r1, OK, NULL);
    assert_true(r1->replayed);
    vs__v1__ledger_reply__free_unpacked(r1, NULL);
    r2 = send_raw(f, SUBJ_COMMAND, &outer, msg_id, &st);
    assert_null(r2);
    assert_int_equal(st, -EALREADY);
    vs_escrow_signed_clear(&outer);
    ASSERT_BALANCE(f, "alice", 5000, 0);

    /* A hold twice: one hold. */
    uint8_t hid[VS_ID_LEN], task[VS_ID_LEN];
    Vs__V1__LedgerCommand h;
    vs_id_new(task);
    hold_init(&h, hid, task, "alice", "bob", 1000);
    vs__v1__ledger_reply__free_unpacked(send_twice(f, &h, OK, NULL, true), NULL);
    ASSERT_BALANCE(f, "alice", 5000, 1000);
    assert_int_equal(open_holds(f, task), 1);

    /* The same command id with another body: INVALID, nothing happens. */
    h.amount = 2000;
    r1 = send_raw(f, SUBJ_COMMAND, &h, NULL, &st);
    assert_non_null(r1);
    EXPECT(r1, INVALID, "already used");
    vs__v1__ledger_reply__free_unpacked(r1, NULL);
    ASSERT_BALANCE(f, "alice", 5000, 1000);

    /* A refused command is replayed as refused. */
    uint8_t nid[VS_ID_LEN], task2[VS_ID_LEN];
    Vs__V1__LedgerCommand n;
    vs_id_new(task2);
    hold_init(&n, nid, task2, "alice", "bob", 1000000);
    vs__v1__ledger_reply__free_unpacked(send_twice(f, &n, DENIED, "insufficient funds", false),
                                        NULL);

    /* Across a SIGKILL: the stored outcome is still the answer. */
    vs_daemon_kill(&f->ledgerd);
    start_ledgerd(f);
    h.amount = 1000;
    r1 = send_raw(f, SUBJ_COMMAND, &h, NULL, &st);
    assert_non_null(r1);
    EXPECT(r1, OK, NULL);
    assert_true(r1->replayed);
    vs__v1__ledger_reply__free_unpacked(r1, NULL);
    ASSERT_BALANCE(f, "alice", 5000, 1000);
    cleared(f, task);
    const Vs__V1__Settlement *s = wait_settlement(f, task);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    ASSERT_BALANCE(f, "alice", 4000, 0);
    ASSERT_BALANCE(f, "bob", 950, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

static void publish_garbage(struct fixture *f, const void *data, size_t len)
{
    const char *hdrs[] = {"Vs-Reply-To", GARBAGE_REPLY};
    int st = 1;
    assert_int_equal(vs_js_publish_raw(f->base.bus, SUBJ_COMMAND, data, len, hdrs, 1, on_puback, &st),
                     0);
    for (int w = 0; w < WAIT_MS / 10 && st == 1; w++)
        idle(f, 10);
    assert_int_equal(st, 0);
}

static void test_denials_and_garbage(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    vs_signkey *alice_key = new_key(f);
    create_account(f, "alice", "alice-co", alice_key);
    create_account(f, "bob", "bob-co", NULL);
    deposit(f, "alice", 500);

    uint8_t task[VS_ID_LEN];
    vs_id_new(task);
    EXPECT_FREE(hold(f, task, "alice", "bob", 1000, 0), DENIED, "insufficient funds");
    ASSERT_BALANCE(f, "alice", 500, 0);
    const Vs__V1__AuditEvent *ev = wait_audit(f, "ledger", "command_refused", task, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "op"), "LEDGER_OP_HOLD");
    assert_string_equal(vs_test_audit_detail(ev, "reason"), "insufficient funds");
    vs_id_new(task);
    EXPECT_FREE(hold(f, task, "alice", "nobody", 100, 0), DENIED, "unknown agent");
    vs_id_new(task);
    EXPECT_FREE(hold(f, task, "nobody", "bob", 100, 0), DENIED, "unknown requester");
    vs_id_new(task);
    EXPECT_FREE(hold(f, task, "alice", "bob", 0, 0), INVALID, NULL);
    ASSERT_BALANCE(f, "alice", 500, 0);
    /* One hold per task. */
    vs_id_new(task);
    EXPECT_FREE(hold(f, task, "alice", "bob", 100, 0), OK, NULL);
    EXPECT_FREE(hold(f, task, "alice", "bob", 100, 0), DENIED, "already has a hold");
    ASSERT_BALANCE(f, "alice", 500, 100);

    /* Reserved and duplicate account names. */
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    const char *reserved[] = {"fee", "operator", "escrow:x", ""};
    for (size_t i = 0; i < 4; i++) {
        cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT);
        c.account = (char *)reserved[i];
        EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), INVALID, NULL);
    }
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT);
    c.account = "bob";
    c.owner = "someone-else";
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), INVALID, NULL);

    /* Operations on the wrong subject. */
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_BALANCE);
    c.account = "alice";
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), INVALID, "not a ledger write operation");
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_RELEASE);
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), INVALID, NULL);
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_HOLD);
    c.account = "alice";
    Vs__V1__LedgerReply *r = query_raw(f, &c, REQUEST_TIMEOUT_MS);
    assert_non_null(r);
    EXPECT(r, INVALID, "not a query operation");
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    /* The agent subjects take only signed agent operations: not a hold
     * (even signed by a registered key), not an unsigned command. */
    uint8_t t2[VS_ID_LEN];
    vs_id_new(t2);
    hold_init(&c, id, t2, "alice", "bob", 100);
    EXPECT_FREE(send_cmd(f, SUBJ_RELEASE, &c), DENIED, "signature");
    vs_id_new(id); /* a new command (and Nats-Msg-Id) */
    EXPECT_FREE(send_signed(f, SUBJ_RELEASE, &c, &alice_key, 1), INVALID, "not an agent operation");
    assert_int_equal(open_holds(f, t2), 0);
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT);
    c.account = "alice";
    c.amount = 100;
    EXPECT_FREE(send_signed(f, SUBJ_DISPUTE, &c, f->gov, 1), INVALID, "not an agent operation");
    /* A command id of the wrong size. */
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT);
    c.command_id.len = 8;
    c.account = "carol";
    int st;
    r = send_raw(f, SUBJ_COMMAND, &c, NULL, &st);
    assert_non_null(r);
    EXPECT(r, INVALID, "command_id");
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    ASSERT_BALANCE(f, "alice", 500, 100);

    /* Garbage and a message of another type on the command subject: each
     * is answered INVALID (by the bus or the ledger) and the daemon goes on. */
    uint8_t junk[97];
    randombytes_buf(junk, sizeof(junk));
    junk[0] = 0xff; /* field 31, wire type 7: never valid protobuf */
    publish_garbage(f, junk, sizeof(junk));
    Vs__V1__TaskOutput o = VS__V1__TASK_OUTPUT__INIT;
    o.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    o.agent = "bob";
    o.exit_code = 3;
    uint8_t buf[256];
    size_t len = vs__v1__task_output__pack(&o, buf);
    publish_garbage(f, buf, len);
    publish_garbage(f, "", 0);
    for (int w = 0; w < WAIT_MS / 20 && f->garbage.n < 3; w++)
        idle(f, 20);
    assert_int_equal(f->garbage.n, 3);
    for (size_t i = 0; i < f->garbage.n; i++)
        EXPECT((const Vs__V1__LedgerReply *)f->garbage.v[i], INVALID, NULL);
    assert_true(vs_proc_alive(f->ledgerd.pid));
    check_invariant(f);
    vs_id_new(t2);
    EXPECT_FREE(hold(f, t2, "alice", "bob", 100, 0), OK, NULL);
    ASSERT_BALANCE(f, "alice", 500, 200);
    stop_ledgerd(f);
}

static void test_governance_m_of_n(void **state)
{
    struct fixture *f = *state;
    config(f, NGOV, 2, "  dispute_window: 0\n");
    start_ledgerd(f);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "bob", "bob-co", NULL);
    const Vs__V1__LedgerOp DEP = VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    const Vs__V1__LedgerOp ADJ = VS__V1__LEDGER_OP__LEDGER_OP_ADJUST;

    /* One approval of two. */
    EXPECT_FREE(governed(f, DEP, "alice", NULL, 1000, &f->gov[0], 1), DENIED,
                "1 of 2 required approvals");
    const Vs__V1__AuditEvent *ev = wait_audit(f, "governance", "approval_refused", NULL, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "approvals"), "1");
    assert_string_equal(vs_test_audit_detail(ev, "required"), "2");
    assert_string_equal(vs_test_audit_detail(ev, "account"), "alice");
    assert_int_equal(ev->severity, VS__V1__SEVERITY__SEVERITY_WARNING);
    /* The same governor twice is one approval. */
    vs_signkey *twice[] = {f->gov[1], f->gov[1]};
    EXPECT_FREE(governed(f, DEP, "alice", NULL, 1000, twice, 2), DENIED, "1 of 2");
    /* A key that is not a governor's does not count. */
    vs_signkey *with_outsider[] = {f->outsider, f->gov[2]};
    EXPECT_FREE(governed(f, DEP, "alice", NULL, 1000, with_outsider, 2), DENIED, "1 of 2");
    EXPECT_FREE(governed(f, DEP, "alice", NULL, 1000, &f->outsider, 1), DENIED, "0 of 2");
    /* Unsigned. */
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    cmd_init(&c, id, DEP);
    c.account = "alice";
    c.amount = 1000;
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), DENIED, "signature");
    ASSERT_BALANCE(f, "alice", 0, 0);
    assert_true(audits_of(f, "governance", "approval_refused", NULL, NULL) >= 1);

    /* A tampered signature is refused; signatures over different bodies too. */
    Vs__V1__LedgerCommand outer;
    vs_signkey *two[] = {f->gov[0], f->gov[2]};
    cmd_init(&c, id, DEP);
    c.account = "alice";
    c.amount = 1000;
    assert_int_equal(vs_escrow_sign(&c, two, 2, SIG_TTL_MS, &outer), 0);
    outer.signatures[1]->signature.data[5] ^= 0x01;
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &outer), DENIED, "refused");
    vs_escrow_signed_clear(&outer);
    /* The outer op must be the signed one. */
    cmd_init(&c, id, DEP);
    c.account = "alice";
    c.amount = 1000;
    assert_int_equal(vs_escrow_sign(&c, two, 2, SIG_TTL_MS, &outer), 0);
    outer.op = ADJ;
    EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &outer), INVALID, "another operation");
    vs_escrow_signed_clear(&outer);
    ASSERT_BALANCE(f, "alice", 0, 0);

    /* Two distinct governors: done. */
    Vs__V1__LedgerReply *r = governed(f, DEP, "alice", NULL, 1000, two, 2);
    EXPECT(r, OK, NULL);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    ASSERT_BALANCE(f, "alice", 1000, 0);
    ASSERT_BALANCE(f, "operator", -1000, 0);
    ev = wait_audit(f, "governance", "deposit", NULL, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "approvals"), "2");
    assert_string_equal(vs_test_audit_detail(ev, "required"), "2");
    /* Three of three is fine too. */
    EXPECT_FREE(governed(f, DEP, "alice", NULL, 500, f->gov, NGOV), OK, NULL);
    ASSERT_BALANCE(f, "alice", 1500, 0);

    /* ADJUST moves money between wallets with 2 approvals only. */
    EXPECT_FREE(governed(f, ADJ, "alice", "bob", 300, &f->gov[1], 1), DENIED, "1 of 2");
    EXPECT_FREE(governed(f, ADJ, "alice", "bob", 300, with_outsider, 2), DENIED, "1 of 2");
    ASSERT_BALANCE(f, "alice", 1500, 0);
    ASSERT_BALANCE(f, "bob", 0, 0);
    vs_signkey *other_two[] = {f->gov[1], f->gov[2]};
    EXPECT_FREE(governed(f, ADJ, "alice", "bob", 300, other_two, 2), OK, NULL);
    ASSERT_BALANCE(f, "alice", 1200, 0);
    ASSERT_BALANCE(f, "bob", 300, 0);
    ev = wait_audit(f, "governance", "adjust", NULL, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "from"), "alice");
    assert_string_equal(vs_test_audit_detail(ev, "to"), "bob");
    assert_string_equal(vs_test_audit_detail(ev, "amount"), "300");
    /* Not more than the wallet holds, and not without a counterparty. */
    EXPECT_FREE(governed(f, ADJ, "alice", "bob", 5000, other_two, 2), DENIED, "transfer refused");
    EXPECT_FREE(governed(f, ADJ, "alice", NULL, 100, other_two, 2), INVALID, NULL);
    ASSERT_BALANCE(f, "alice", 1200, 0);
    ASSERT_BALANCE(f, "bob", 300, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

/* An agent wallet with its own key. */
struct agent {
    const char *name, *owner;
    vs_signkey *key;
};

static struct agent *find_agent(struct agent *as, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(as[i].name, name) == 0)
            return &as[i];
    fail_msg("no agent named %s", name);
    return NULL;
}

static void test_disputes(void **state)
{
    struct fixture *f = *state;
    config(f, 1, 1,
           "  fee_bps: 500\n  dispute_window: 4s\n  vote_timeout: 3s\n  ack_wait: 5s\n");
    start_ledgerd(f);
    /* Names of the parties and of agents that must never sit on the panel
     * sort before the eligible ones, so the name order of equal
     * reputations cannot hide a missing exclusion. */
    struct agent as[] = {
        {"a-req", "acme", NULL},     /* the requester */
        {"a-worker", "wco", NULL},   /* the agent of the disputed tasks */
        {"a-sib", "wco", NULL},      /* same owner as the worker */
        {"a-peer", "acme", NULL},    /* same owner as the requester */
        {"a-nokey", "nk", NULL},     /* no key: cannot vote */
        {"r2", "r2co", NULL},        /* a second requester */
        {"p1", "o1", NULL}, {"p2", "o2", NULL}, {"p2b", "o2", NULL}, {"p3", "o3", NULL},
        {"p4", "o4", NULL}, {"p5", "o5", NULL},
    };
    const size_t nas = sizeof(as) / sizeof(as[0]);
    for (size_t i = 0; i < nas; i++)
        if (strcmp(as[i].name, "a-nokey") != 0)
            as[i].key = new_key(f);
    vs_signkey *req = as[0].key, *worker = as[1].key;
    for (size_t i = 0; i < 5; i++)
        create_account(f, as[i].name, as[i].owner, as[i].key);
    deposit(f, "a-req", 100000);

    /* T0: too few independent agents (the others share an owner with a
     * party or have no key): the dispute is refused and the original
     * outcome stands at the end of the window. */
    uint8_t t0[VS_ID_LEN];
    hold_cleared(f, t0, "a-req", "a-worker", 1000);
    EXPECT_FREE(dispute(f, t0, req), DENIED, "fewer than 3");
    const Vs__V1__AuditEvent *ev = wait_audit(f, "dispute", "refused", t0, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "opener"), "a-req");

    for (size_t i = 5; i < nas; i++)
        create_account(f, as[i].name, as[i].owner, as[i].key);
    deposit(f, "r2", 1000);

    /* Reputations: every agent that must not sit on the panel gets 1.0,
     * as do p1, p2, p2b, p3; p4 stays fresh (0.5), p5 fails a task.
     * The requester pays at once with ESCROW_RELEASE. */
    struct {
        const char *requester, *agent;
        uint8_t task[VS_ID_LEN];
    } rt[] = {
        {"r2", "a-req", {0}},   {"r2", "a-worker", {0}}, {"a-req", "a-sib", {0}},
        {"a-req", "a-peer", {0}}, {"a-req", "a-nokey", {0}}, {"a-req", "p1", {0}},
        {"a-req", "p2", {0}},   {"a-req", "p2b", {0}},   {"a-req", "p3", {0}},
    };
    const size_t nrt = sizeof(rt) / sizeof(rt[0]);
    for (size_t i = 0; i < nrt; i++) {
        hold_ok(f, rt[i].task, rt[i].requester, rt[i].agent, 100);
        cleared(f, rt[i].task);
    }
    uint8_t t5f[VS_ID_LEN];
    hold_ok(f, t5f, "a-req", "p5", 100);
    output(f, t5f, "p5", false);
    for (size_t i = 0; i < nrt; i++)
        wait_in_escrow(f, rt[i].task, 100);
    /* Only the requester may release: not the agent, not a stranger. */
    EXPECT_FREE(release(f, rt[5].task, find_agent(as, nas, "p1")->key), DENIED, "requester");
    EXPECT_FREE(release(f, rt[5].task, worker), DENIED, "requester");
    assert_int_equal(settlements_of(f, rt[5].task), 0);
    /* A failed task is not released. */
    wait_in_escrow(f, t5f, 100);
    EXPECT_FREE(release(f, t5f, req), DENIED, "not cleared");
    for (size_t i = 0; i < nrt; i++) {
        vs_signkey *k = find_agent(as, nas, rt[i].requester)->key;
        Vs__V1__LedgerReply *r = release(f, rt[i].task, k);
        EXPECT(r, OK, NULL);
        assert_int_equal(r->transfer_id.len, VS_ID_LEN);
        vs__v1__ledger_reply__free_unpacked(r, NULL);
        const Vs__V1__Settlement *s = find_settlement(f, rt[i].task);
        if (s == NULL)
            s = wait_settlement(f, rt[i].task);
        ASSERT_SETTLEMENT(s, POSTED, 95, 5, 0);
    }
    /* A second release changes nothing. */
    EXPECT_FREE(release(f, rt[5].task, req), OK, NULL);
    ASSERT_BALANCE(f, "p1", 95, 0);
    for (size_t i = 0; i < nrt; i++)
        ASSERT_REP(f, rt[i].agent, 1.0);
    ASSERT_REP(f, "p4", 0.5);

    /* The disputed tasks: all a-req -> a-worker, 1000 each. */
    uint8_t t1[VS_ID_LEN], t2[VS_ID_LEN], t3[VS_ID_LEN], t4[VS_ID_LEN], t5[VS_ID_LEN];
    hold_ok(f, t1, "a-req", "a-worker", 1000);
    hold_ok(f, t2, "a-req", "a-worker", 1000);
    hold_ok(f, t3, "a-req", "a-worker", 1000);
    hold_ok(f, t4, "a-req", "a-worker", 1000);
    hold_ok(f, t5, "a-req", "a-worker", 1000);
    int64_t worker_before = balance(f, "a-worker").balance;
    cleared(f, t1);
    cleared(f, t2);
    cleared(f, t3);
    cleared(f, t4);
    quarantined(f, t5);
    wait_in_escrow(f, t1, 1000);
    wait_in_escrow(f, t2, 1000);
    wait_in_escrow(f, t3, 1000);
    wait_in_escrow(f, t4, 1000);
    wait_in_escrow(f, t5, 1000);

    /* During the window the bounty sits in the task's escrow account. */
    char escrow1[VS_LEDGER_NAME_MAX];
    escrow_account(t1, escrow1);
    ASSERT_BALANCE(f, escrow1, 1000, 0);
    assert_int_equal(balance(f, "a-worker").balance, worker_before);
    assert_int_equal(balance(f, "a-req").pending, 0);
    assert_int_equal(settlements_of(f, t1), 0);

    /* Only the parties may dispute; a quarantined task is not released. */
    EXPECT_FREE(dispute(f, t4, find_agent(as, nas, "p4")->key), DENIED, "requester or the agent");
    EXPECT_FREE(release(f, t5, req), DENIED, "not cleared");

    /* T1, opened by the requester: the panel is the 3 best independent
     * agents, one per owner. */
    Vs__V1__LedgerReply *r = dispute(f, t1, req);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->n_panel, 3);
    char panel[3][VS_LEDGER_NAME_MAX];
    for (int i = 0; i < 3; i++)
        snprintf(panel[i], sizeof(panel[i]), "%s", r->panel[i]);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    print_message("[ INFO     ] panel: %s %s %s\n", panel[0], panel[1], panel[2]);
    assert_string_equal(panel[0], "p1");
    assert_true(strcmp(panel[1], "p2") == 0 || strcmp(panel[1], "p2b") == 0);
    assert_string_equal(panel[2], "p3");
    ev = wait_audit(f, "dispute", "opened", t1, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "opener"), "a-req");
    assert_string_equal(vs_test_audit_detail(ev, "panel_1"), panel[0]);
    assert_string_equal(vs_test_audit_detail(ev, "panel_2"), panel[1]);
    assert_string_equal(vs_test_audit_detail(ev, "panel_3"), panel[2]);
    vs_signkey *pk[3];
    for (int i = 0; i < 3; i++)
        pk[i] = find_agent(as, nas, panel[i])->key;

    /* T2, opened by the agent, and T3: the same panel (deterministic). */
    r = dispute(f, t2, worker);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->n_panel, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(r->panel[i], panel[i]);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    ev = wait_audit(f, "dispute", "opened", t2, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "opener"), "a-worker");
    r = dispute(f, t3, req);
    EXPECT(r, OK, NULL);
    for (int i = 0; i < 3; i++)
        assert_string_equal(r->panel[i], panel[i]);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    EXPECT_FREE(dispute(f, t3, worker), DENIED, "already open");

    /* T1: two votes for the requester -> refund. */
    EXPECT_FREE(vote(f, t1, panel[0], D_REQUESTER, "the output is empty", pk[0]), OK, NULL);
    assert_int_equal(settlements_of(f, t1), 0);
    EXPECT_FREE(vote(f, t1, panel[1], D_REQUESTER, "agreed, nothing delivered", pk[1]), OK, NULL);
    const Vs__V1__Settlement *s = wait_settlement(f, t1);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    assert_string_equal(s->agent, "a-worker");
    ev = wait_audit(f, "dispute", "decided", t1, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "decision"), "requester");
    assert_string_equal(vs_test_audit_detail(ev, "how"), "2 of 3");
    ev = wait_audit(f, "dispute", "vote", t1, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "voter"), panel[0]);
    assert_string_equal(vs_test_audit_detail(ev, "decision"), "requester");
    assert_string_equal(vs_test_audit_detail(ev, "rationale"), "the output is empty");
    EXPECT_FREE(vote(f, t1, panel[2], D_AGENT, "too late", pk[2]), DENIED, "no dispute");
    ASSERT_BALANCE(f, escrow1, 0, 0);

    /* T2: agent, requester, split -> a tie -> split; the fee on the agent's half. */
    EXPECT_FREE(vote(f, t2, panel[0], D_AGENT, "looks complete", pk[0]), OK, NULL);
    EXPECT_FREE(vote(f, t2, panel[1], D_REQUESTER, "half missing", pk[1]), OK, NULL);
    EXPECT_FREE(vote(f, t2, panel[2], D_SPLIT, "partly done", pk[2]), OK, NULL);
    s = wait_settlement(f, t2);
    ASSERT_SETTLEMENT(s, SPLIT, 475, 25, 500);
    ev = wait_audit(f, "dispute", "decided", t2, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "decision"), "split");
    assert_string_equal(vs_test_audit_detail(ev, "how"), "tie");

    /* T3: refused votes, one valid vote, then the deadline passes: the
     * original outcome (cleared) stands. */
    EXPECT_FREE(vote(f, t3, "p4", D_REQUESTER, "I was not asked", find_agent(as, nas, "p4")->key),
                DENIED, "panel member");
    EXPECT_FREE(vote(f, t3, panel[0], D_REQUESTER, NULL, pk[0]), INVALID, "rationale");
    EXPECT_FREE(vote(f, t3, panel[0], D_REQUESTER, "", pk[0]), INVALID, "rationale");
    EXPECT_FREE(vote(f, t3, panel[0], 0, "undecided", pk[0]), INVALID, "decision");
    EXPECT_FREE(vote(f, t3, panel[0], D_REQUESTER, "impostor", find_agent(as, nas, "p4")->key),
                DENIED, "panel member");
    EXPECT_FREE(vote(f, t3, panel[1], D_AGENT, "unsigned by me", pk[0]), DENIED, "panel member");
    EXPECT_FREE(vote(f, t3, panel[0], D_REQUESTER, "refund", pk[0]), OK, NULL);
    EXPECT_FREE(vote(f, t3, panel[0], D_AGENT, "changed my mind", pk[0]), DENIED, "has voted");
    s = wait_settlement(f, t3);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    ev = wait_audit(f, "dispute", "decided", t3, NULL);
    assert_string_equal(vs_test_audit_detail(ev, "how"), "vote deadline passed");
    assert_string_equal(vs_test_audit_detail(ev, "decision"), "none");

    /* T4: no dispute; paid when the window closes; a dispute after that is refused. */
    s = wait_settlement(f, t4);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    EXPECT_FREE(dispute(f, t4, req), DENIED, "window is closed");
    /* T5 (quarantined): refunded when the window closes. T0 paid. p5 refunded. */
    s = wait_settlement(f, t5);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 1000);
    s = wait_settlement(f, t0);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    s = wait_settlement(f, t5f);
    ASSERT_SETTLEMENT(s, VOIDED, 0, 0, 100);
    ASSERT_REP(f, "p5", 0.0);
    assert_true(near(s->agent_reputation, 0.0)); /* scored before the Settlement */
    EXPECT_FREE(release(f, t5, req), DENIED, NULL);

    /* Every task settled exactly once; the money adds up. */
    uint8_t *all[] = {t0, t1, t2, t3, t4, t5, t5f};
    tasks_barrier(f);
    idle(f, 300);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_int_equal(settlements_of(f, all[i]), 1);
    for (size_t i = 0; i < nrt; i++)
        assert_int_equal(settlements_of(f, rt[i].task), 1);
    /* a-req: 100000 - T0 1000 - 9 releases... of which 7 its own (700)
     * - T2 500 - T3 1000 - T4 1000, + 95 as the agent of r2's task. */
    ASSERT_BALANCE(f, "a-req", 100000 - 1000 - 700 - 500 - 1000 - 1000 + 95, 0);
    ASSERT_BALANCE(f, "a-worker", 950 + 95 + 475 + 950 + 950, 0);
    ASSERT_BALANCE(f, "r2", 800, 0);
    ASSERT_BALANCE(f, "fee", 50 + 9 * 5 + 25 + 50 + 50, 0);
    ASSERT_BALANCE(f, "p5", 0, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

/* A vote that reaches the ledger after the panel's deadline does not count,
 * even when the daemon had no chance to close the dispute in time (it was
 * down): no decision by the deadline means the original outcome stands. */
static void test_late_vote_after_deadline(void **state)
{
    struct fixture *f = *state;
    config(f, 1, 1, "  fee_bps: 500\n  dispute_window: 5s\n  vote_timeout: 1s\n  ack_wait: 5s\n");
    start_ledgerd(f);
    struct agent as[] = {
        {"req", "acme", NULL}, {"worker", "wco", NULL}, {"p1", "o1", NULL},
        {"p2", "o2", NULL},    {"p3", "o3", NULL},
    };
    for (size_t i = 0; i < 5; i++) {
        as[i].key = new_key(f);
        create_account(f, as[i].name, as[i].owner, as[i].key);
    }
    deposit(f, "req", 10000);
    uint8_t task[VS_ID_LEN];
    hold_cleared(f, task, "req", "worker", 1000);
    Vs__V1__LedgerReply *r = dispute(f, task, as[0].key);
    EXPECT(r, OK, NULL);
    assert_int_equal(r->n_panel, 3);
    /* all at 0.5: name order */
    assert_string_equal(r->panel[0], "p1");
    assert_string_equal(r->panel[1], "p2");
    assert_string_equal(r->panel[2], "p3");
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    EXPECT_FREE(vote(f, task, "p1", D_REQUESTER, "nothing delivered", as[2].key), OK, NULL);

    /* The daemon dies; the deadline passes; the second vote is queued. */
    vs_daemon_kill(&f->ledgerd);
    idle(f, 2000);
    uint8_t id[VS_ID_LEN];
    Vs__V1__LedgerCommand c, outer;
    agent_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE, task, "p2", D_REQUESTER,
               "agreed, but late");
    assert_int_equal(vs_escrow_sign(&c, &as[3].key, 1, SIG_TTL_MS, &outer), 0);
    struct vs_test_reply late = {0};
    assert_int_equal(vs_js_request(f->base.bus, SUBJ_DISPUTE, &outer.base, NULL,
                                   &vs__v1__ledger_reply__descriptor, 30000, vs_test_on_reply,
                                   &late),
                     0);
    vs_escrow_signed_clear(&outer);
    idle(f, 200); /* stored in the LEDGER stream */
    start_ledgerd(f);
    vs_bus_run_until(f->base.bus, &late.done, WAIT_MS);
    assert_true(late.done);
    assert_int_equal(late.status, 0);
    assert_non_null(late.msg);
    Vs__V1__LedgerReply *late_reply = (Vs__V1__LedgerReply *)late.msg;
    Vs__V1__StatusCode late_code = code_of(late_reply);
    char late_reason[200];
    snprintf(late_reason, sizeof(late_reason), "%s", reason_of(late_reply));
    vs__v1__ledger_reply__free_unpacked(late_reply, NULL);
    const Vs__V1__Settlement *s = wait_settlement(f, task);
    if (s->outcome != POSTED)
        fail_msg("a vote cast after the deadline decided the dispute (settlement outcome %d, "
                 "the late vote was answered %d \"%s\")",
                 s->outcome, late_code, late_reason);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    assert_int_not_equal(late_code, OK);
    ASSERT_BALANCE(f, "worker", 950, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

/* The same rule without the race: the escrow rules driven in-process with
 * explicit transaction times, as vs-ledgerd's batch does it (the commands
 * of a batch, then vs_escrow_tick): a vote applied after the panel's
 * deadline, in the batch that also reaches the deadline, must not decide. */
struct step {
    vs_escrow *e;
    enum vs_escrow_origin origin;
    const Vs__V1__LedgerCommand *cmd;
    const uint8_t *outcome_task;
    bool tick;
    struct vs_escrow_reply r;
};

static int run_step(vs_ledger_txn *t, void *arg)
{
    struct step *st = arg;
    vs_escrow_reply_clear(&st->r);
    vs_escrow_reply_init(&st->r);
    int rc = 0;
    if (st->cmd != NULL)
        rc = vs_escrow_command(st->e, t, st->origin, st->cmd, &st->r);
    else if (st->outcome_task != NULL)
        rc = vs_escrow_task_outcome(st->e, t, st->outcome_task, VS_OUTCOME_CLEARED, "cleared");
    if (rc == 0 && st->tick)
        rc = vs_escrow_tick(st->e, t);
    return rc;
}

static Vs__V1__StatusCode step_at(vs_ledger *l, vs_escrow *e, uint64_t at_ns,
                                  enum vs_escrow_origin origin, const Vs__V1__LedgerCommand *cmd,
                                  const uint8_t *outcome_task, bool tick)
{
    struct step st = {.e = e, .origin = origin, .cmd = cmd, .outcome_task = outcome_task,
                      .tick = tick};
    vs_escrow_reply_init(&st.r);
    assert_int_equal(vs_ledger_write(l, at_ns, run_step, &st), 0);
    Vs__V1__StatusCode code = st.r.status.code;
    vs_escrow_reply_clear(&st.r);
    return code;
}

/* The same with cmd signed by key. */
static Vs__V1__StatusCode signed_step_at(vs_ledger *l, vs_escrow *e, uint64_t at_ns,
                                         enum vs_escrow_origin origin,
                                         const Vs__V1__LedgerCommand *cmd, vs_signkey *key,
                                         bool tick)
{
    Vs__V1__LedgerCommand outer;
    assert_int_equal(vs_escrow_sign(cmd, &key, 1, SIG_TTL_MS, &outer), 0);
    Vs__V1__StatusCode code = step_at(l, e, at_ns, origin, &outer, NULL, tick);
    vs_escrow_signed_clear(&outer);
    return code;
}

static int read_balance(vs_ledger_txn *t, void *arg)
{
    struct vs_account a;
    int rc = vs_ledger_account_by_name(t, "worker", &a);
    if (rc == 0)
        *(int64_t *)arg = (int64_t)(a.credits_posted - a.debits_posted);
    return rc;
}

static void test_late_vote_in_process(void **state)
{
    struct fixture *f = *state;
    struct vs_ledger_opts o = {.path = f->store};
    vs_ledger *l = NULL;
    assert_int_equal(vs_ledger_open(&o, &l), 0);
    struct vs_escrow_config cfg = {
        .fee_bps = 500,
        .dispute_window_ms = 60000,
        .vote_timeout_ms = 10000,
        .hold_timeout_ms = 3600000,
        .min_reputation = 0.3,
        .governance_threshold = 1,
        .n_governors = 1,
        .component = "ledgerd",
    };
    memcpy(cfg.governors[0], vs_signkey_public(f->gov[0]), 32);
    vs_escrow *e = NULL;
    assert_int_equal(vs_escrow_new(l, &cfg, &e), 0);
    const uint64_t ms = 1000000, t0 = vs_now_ns() + 1000 * ms;
    const enum vs_escrow_origin P = VS_ORIGIN_PLATFORM;
    const char *names[] = {"req", "worker", "p1", "p2", "p3"};
    vs_signkey *k[5];
    uint8_t id[VS_ID_LEN], task[VS_ID_LEN];
    Vs__V1__LedgerCommand c;
    for (int i = 0; i < 5; i++) {
        k[i] = new_key(f);
        account_init(&c, id, names[i], names[i], k[i]);
        assert_int_equal(step_at(l, e, t0, P, &c, NULL, false), OK);
    }
    cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT);
    c.account = "req";
    c.amount = 10000;
    assert_int_equal(signed_step_at(l, e, t0 + ms, P, &c, f->gov[0], false), OK);
    vs_id_new(task);
    hold_init(&c, id, task, "req", "worker", 1000);
    assert_int_equal(step_at(l, e, t0 + 2 * ms, P, &c, NULL, false), OK);
    step_at(l, e, t0 + 3 * ms, P, NULL, task, true); /* cleared: the window opens */
    /* dispute at +1 s: vote deadline at +11 s */
    agent_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_OPEN, task, NULL, 0, "wrong output");
    assert_int_equal(signed_step_at(l, e, t0 + 1000 * ms, VS_ORIGIN_AGENT, &c, k[0], true), OK);
    /* p1 votes in time */
    agent_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE, task, "p1", D_REQUESTER,
               "refund");
    assert_int_equal(signed_step_at(l, e, t0 + 2000 * ms, VS_ORIGIN_AGENT, &c, k[2], true), OK);
    /* p2's vote is applied at +20 s, in the batch that also runs the tick */
    agent_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE, task, "p2", D_REQUESTER,
               "refund, but late");
    Vs__V1__StatusCode late =
        signed_step_at(l, e, t0 + 20000 * ms, VS_ORIGIN_AGENT, &c, k[3], true);
    int64_t worker = -1;
    assert_int_equal(vs_ledger_read(l, read_balance, &worker), 0);
    vs_escrow_free(e);
    vs_ledger_free(l);
    if (late == OK || worker != 950)
        fail_msg("a vote applied 9 s after the panel's deadline was answered %d and the worker "
                 "got %" PRId64 " (the original outcome, cleared, pays 950)",
                 late, worker);
}

static void test_claim_check_and_reputation(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "fresh", "o1", NULL);
    create_account(f, "bad", "o2", NULL);
    create_account(f, "mixed", "o3", NULL);
    create_account(f, "good", "o4", NULL);
    deposit(f, "alice", 10000);

    uint8_t t[4][VS_ID_LEN];
    hold_ok(f, t[0], "alice", "bad", 100);
    hold_ok(f, t[1], "alice", "mixed", 100);
    hold_ok(f, t[2], "alice", "good", 100);
    output(f, t[0], "bad", false);
    cleared(f, t[1]);
    cleared(f, t[2]);
    wait_settlement(f, t[0]);
    wait_settlement(f, t[1]);
    wait_settlement(f, t[2]);
    /* mixed: a payout, then a failure: (0.95 * 1 + 0) / (0.95 + 1). */
    hold_ok(f, t[3], "alice", "mixed", 100);
    quarantined(f, t[3]);
    wait_settlement(f, t[3]);

    EXPECT_CLAIM(f, "fresh", OK, NULL, 0.5);
    EXPECT_CLAIM(f, "bad", DENIED, "below the minimum", 0.0);
    EXPECT_CLAIM(f, "mixed", OK, NULL, 0.95 / 1.95);
    EXPECT_CLAIM(f, "nobody", INVALID, "unknown account", ANY_REP);

    /* Live Verified: x1.05, capped at 1; cleared again by a later result. */
    verify_result(f, "fresh", true);
    verify_result(f, "good", true);
    verify_result(f, "bad", true);
    tasks_barrier(f);
    ASSERT_REP(f, "fresh", 0.525);
    ASSERT_REP(f, "good", 1.0);
    ASSERT_REP(f, "bad", 0.0);
    EXPECT_CLAIM(f, "fresh", OK, NULL, 0.525);
    EXPECT_CLAIM(f, "bad", DENIED, NULL, ANY_REP);
    const Vs__V1__AuditEvent *ev = wait_audit(f, "reputation", "live_verified", NULL, "fresh");
    assert_string_equal(vs_test_audit_detail(ev, "live_verified"), "true");
    /* verified but not live: the flag is cleared. */
    verify_result(f, "fresh", false);
    tasks_barrier(f);
    ASSERT_REP(f, "fresh", 0.5);
    check_invariant(f);
    stop_ledgerd(f);
}

/* Money in escrow moves only by the escrow rules: the platform's HOLD
 * draws from wallets only (not the operator account, which would mint money
 * without the governors, nor the fee account, nor another task's escrow)
 * and pays wallets only; governors' ADJUST cannot empty a task's escrow
 * account during its window. The window then closes normally. */
static void test_escrow_accounts_are_not_wallets(void **state)
{
    struct fixture *f = *state;
    config(f, 1, 1, "  fee_bps: 500\n  dispute_window: 2s\n  ack_wait: 5s\n");
    start_ledgerd(f);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "bob", "bob-co", NULL);
    deposit(f, "alice", 10000);
    uint8_t task[VS_ID_LEN];
    hold_cleared(f, task, "alice", "bob", 1000);
    char escrow[VS_LEDGER_NAME_MAX];
    escrow_account(task, escrow);
    ASSERT_BALANCE(f, escrow, 1000, 0);

    char problems[1024] = "";
    size_t np = 0;
    const char *others[] = {"operator", "fee", escrow};
    for (size_t i = 0; i < 6; i++) {
        uint8_t t[VS_ID_LEN];
        vs_id_new(t);
        bool as_requester = i < 3;
        Vs__V1__LedgerReply *r = hold(f, t, as_requester ? others[i] : "alice",
                                      as_requester ? "bob" : others[i - 3], 500, 0);
        bool accepted = code_of(r) == OK;
        vs__v1__ledger_reply__free_unpacked(r, NULL);
        if (accepted)
            np += (size_t)snprintf(problems + np, sizeof(problems) - np,
                                   "a HOLD %s the %s account was accepted; ",
                                   as_requester ? "drawing on" : "paying",
                                   others[as_requester ? i : i - 3]);
        if (accepted && as_requester) {
            /* void it so that the escrow account keeps its 1000 */
            uint8_t id[VS_ID_LEN];
            Vs__V1__LedgerCommand c;
            cmd_init(&c, id, VS__V1__LEDGER_OP__LEDGER_OP_REFUND);
            c.task_id = (ProtobufCBinaryData){VS_ID_LEN, t};
            EXPECT_FREE(send_cmd(f, SUBJ_COMMAND, &c), OK, NULL);
        }
    }
    Vs__V1__LedgerReply *r =
        governed(f, VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT, escrow, NULL, 100, f->gov, 1);
    bool minted = code_of(r) == OK;
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    if (minted)
        np += (size_t)snprintf(problems + np, sizeof(problems) - np,
                               "a DEPOSIT into %s was accepted (stranded there after the "
                               "payout); ", escrow);
    r = governed(f, VS__V1__LEDGER_OP__LEDGER_OP_ADJUST, escrow, "alice", minted ? 1100 : 1000,
                 f->gov, 1);
    bool drained = code_of(r) == OK;
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    if (drained)
        np += (size_t)snprintf(problems + np, sizeof(problems) - np,
                               "an ADJUST emptied %s during its window; ", escrow);
    /* (With the escrow account emptied, the payout at the window's end
     * fails on every attempt: fail now rather than wait for that.) */
    if (np > 0)
        fail_msg("%s", problems);
    /* The window closes: the agent is paid, and the daemon still works. */
    const Vs__V1__Settlement *s = wait_settlement(f, task);
    ASSERT_SETTLEMENT(s, POSTED, 950, 50, 0);
    ASSERT_BALANCE(f, "bob", 950, 0);
    ASSERT_BALANCE(f, escrow, 0, 0);
    create_account(f, "carol", "carol-co", NULL);
    check_invariant(f);
    stop_ledgerd(f);
}

static void test_vsctl_ledger(void **state)
{
    struct fixture *f = *state;
    start_plain(f);
    char govkey[300];
    snprintf(govkey, sizeof(govkey), "%s/gov0.key", f->dir);
    assert_int_equal(vs_signkey_save(f->gov[0], govkey), 0);
    create_account(f, "alice", "alice-co", NULL);
    create_account(f, "bob", "bob-co", NULL);

    struct vs_run r;
    VSCTL_EXPECT(f, 0, "deposited transfer ", "ledger", "deposit", "alice", "10000", "--key",
                 govkey);
    ASSERT_BALANCE(f, "alice", 10000, 0);
    uint8_t task[VS_ID_LEN];
    hold_ok(f, task, "alice", "bob", 1000);
    char hex[VS_ID_HEX_LEN], escrow[VS_LEDGER_NAME_MAX];
    vs_hex(task, VS_ID_LEN, hex);
    escrow_account(task, escrow);

    VSCTL_EXPECT(f, 0, "alice balance 10000 held 1000 reputation 0.500", "ledger", "balance",
                 "alice");
    VSCTL(f, &r, "ledger", "holds", "alice");
    vs_vsctl_expect(&r, 0, "open task ");
    assert_non_null(strstr(r.out, escrow));
    assert_non_null(strstr(r.out, " 1000 open"));
    vs_run_free(&r);
    VSCTL_EXPECT(f, 0, hex, "ledger", "holds", "--task", hex);

    cleared(f, task);
    wait_settlement(f, task);
    VSCTL_EXPECT(f, 0, "bob balance 950 held 0 reputation 1.000", "ledger", "balance", "bob");
    VSCTL_EXPECT(f, 0, "-> bob 950", "ledger", "history", "bob");
    VSCTL(f, &r, "ledger", "history", "alice", "--limit", "1");
    vs_vsctl_expect(&r, 0, "operator -> alice 10000");
    assert_null(strstr(r.out, "hold "));
    vs_run_free(&r);
    VSCTL(f, &r, "ledger", "holds", "alice");
    vs_vsctl_expect(&r, 0, NULL);
    assert_null(strstr(r.out, "open"));
    vs_run_free(&r);
    VSCTL_EXPECT(f, 0, "the invariant holds", "ledger", "check");
    VSCTL(f, &r, "ledger", "balance", "alice", "--json");
    vs_vsctl_expect(&r, 0, "\"balance\"");
    assert_non_null(strstr(r.out, "9000"));
    vs_run_free(&r);

    /* A deposit with a key that is not a governor's is refused. */
    char badkey[300];
    snprintf(badkey, sizeof(badkey), "%s/outsider.key", f->dir);
    assert_int_equal(vs_signkey_save(f->outsider, badkey), 0);
    VSCTL(f, &r, "ledger", "deposit", "alice", "5", "--key", badkey);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "approvals"));
    vs_run_free(&r);
    VSCTL(f, &r, "ledger", "balance", "nobody");
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "unknown account"));
    vs_run_free(&r);

    /* A backup of the live store, checked. */
    char to[300];
    snprintf(to, sizeof(to), "%s/backup", f->dir);
    VSCTL(f, &r, "ledger", "backup", "--store", f->store, "--to", to);
    vs_vsctl_expect(&r, 0, "the invariant holds");
    assert_non_null(strstr(r.out, "backup written to"));
    vs_run_free(&r);
    VSCTL_EXPECT(f, 0, "the invariant holds", "ledger", "check", "--store", to);
    VSCTL_EXPECT(f, 0, "the invariant holds", "ledger", "check", "--store", f->store);
    /* The daemon is untouched by all this. */
    ASSERT_BALANCE(f, "alice", 9000, 0);
    check_invariant(f);
    stop_ledgerd(f);
}

static int group_setup(void **state)
{
    (void)state;
    return vs_crypto_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_escrow_happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refunds_and_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denials_and_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_governance_m_of_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disputes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_vote_after_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_vote_in_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_check_and_reputation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escrow_accounts_are_not_wallets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vsctl_ledger, setup, teardown),
    };
    return cmocka_run_group_tests_name("ledgerd", tests, group_setup, NULL);
}
