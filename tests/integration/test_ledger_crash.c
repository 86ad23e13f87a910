/*
 * test_ledger_crash.c - vs-ledgerd killed with SIGKILL mid-batch, many times
 * in one run, while a burst of a few thousand ledger commands and task
 * outcomes streams in; after the last restart every command's outcome is as
 * if it had been applied exactly once and the ledger invariant holds.
 *
 * The burst (LEDGER, "JetStream + reply", Nats-Msg-Id = hex(command id)):
 *  - HOLDs for distinct tasks, each within what its requester was given at
 *    setup, so every one succeeds whatever order the commands land in;
 *  - HOLDs asking for more than any requester could ever have (failing:
 *    DENIED, insufficient funds, whatever the order);
 *  - signed DEPOSITs (one governance key) to the requesters;
 * and on TASKS, published once a hold's reply says it committed: cleared or
 * quarantined outcomes (dispute window 0: settled at once), some holds left
 * open, plus outcomes for tasks whose hold failed (no effect). The daemon is
 * killed at varied small delays with work in flight, restarted each time
 * (ack_wait 1s, so what the dead process held is redelivered quickly).
 *
 * Then, once both consumers have drained: every reply is the expected one,
 * every account's balance and held amount is the expected one (BALANCE),
 * CHECK reports the invariant, one Settlement per settled task (deduplicated
 * by "settled-<task>") with the expected outcome, a resent sample of the
 * original commands (same bytes, a new Nats-Msg-Id so that JetStream does not
 * drop them) is answered replayed with the same outcome and moves nothing,
 * and the LMDB store opened read-only after a clean stop checks out too
 * (invariant, balances, applied stream sequences = the streams' ends).
 * Every wait is bounded, every process reaped; no timing is asserted.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/ledger_store.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define REQUESTERS 8
#define AGENTS 4
#define HOLDS 2400
#define FAILING 200
#define DEPOSITS 200
#define STRAY_OUTCOMES 50      /* outcomes of tasks whose hold failed */
#define NCMDS (HOLDS + FAILING + DEPOSITS)
#define INITIAL 10000000ULL    /* each requester's setup deposit */
#define MAX_BOUNTY 1000ULL     /* HOLDS / REQUESTERS * MAX_BOUNTY < INITIAL */
#define HUGE_AMOUNT 1000000000000ULL
#define FEE_BPS 500
#define KILLS 20
#define REPLY_TIMEOUT_MS 60000
#define RESEND_EVERY 10
#define SIGN_TTL_MS (10ULL * 60 * 1000)

enum kind { K_HOLD, K_FAIL, K_DEPOSIT };
enum fate { F_CLEARED, F_QUARANTINED, F_OPEN };

struct fixture;

struct cmd {
    struct fixture *f;
    enum kind kind;
    enum fate fate;            /* K_HOLD */
    uint8_t id[VS_ID_LEN];
    uint8_t task[VS_ID_LEN];   /* K_HOLD, K_FAIL */
    unsigned requester, agent;
    uint64_t amount;
    uint8_t *bytes;            /* the command as first sent */
    size_t len;
    bool sent;
    /* the first reply */
    bool replied;
    int status;
    int code;
    bool replayed;
    bool has_transfer;
    uint8_t transfer[VS_ID_LEN];
    char reason[64];
};

struct resend {
    struct cmd *c;
    bool done;
    int status, code;
    bool replayed, has_transfer;
    uint8_t transfer[VS_ID_LEN];
    char reason[64];
};

struct fixture {
    struct vs_busfix base;
    char *dir, store[256];
    vs_signkey *gov;
    struct vs_daemon ledgerd;
    struct cmd *cmds;          /* the burst, in publication order */
    size_t sent, replies, reply_errors;
    size_t outcomes_sent, outcome_acks, outcome_errors;
    uint64_t rng;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t rnd(struct fixture *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}

static void idle(struct fixture *f, uint64_t ms)
{
    vs_test_idle(f->base.bus, ms);
}

static uint64_t fee_of(uint64_t amount)
{
    return amount * FEE_BPS / 10000u;
}

static void requester_name(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "req-%u", i);
}

static void agent_name(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "agent-%u", i);
}

static void dump_log(struct fixture *f)
{
    vs_daemon_dump_log(&f->ledgerd);
}

/* ---- fixture ------------------------------------------------------------------------------ */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(&f->base, 0);
    f->dir = vs_scratch_dir("vs-ledger-crash");
    assert_non_null(f->dir);
    snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
    /* VS_TEST_LEDGERD names another build's vs-ledgerd (e.g. this test built
     * with sanitizers against an optimized daemon); default: this build's. */
    const char *bin = getenv("VS_TEST_LEDGERD");
    vs_daemon_init(&f->ledgerd, bin != NULL && bin[0] == '/' ? bin : VS_LEDGERD_BIN, f->dir,
                   "ledgerd");
    assert_int_equal(vs_signkey_new(&f->gov), 0);
    char hex[2 * VS_SIGN_PUBLICKEY_LEN + 1];
    vs_hex(vs_signkey_public(f->gov), VS_SIGN_PUBLICKEY_LEN, hex);
    /* ack_wait 1s: what a killed daemon held comes back quickly; a small
     * batch makes many commits, so kills land inside them. */
    assert_int_equal(
        vs_write_file(f->ledgerd.cfg,
                      "nats:\n  url: %s\nlog:\n  level: info\nshutdown_timeout: 5s\n"
                      "ledgerd:\n  store: %s\n  batch: 50\n  ack_wait: 1s\n  fee_bps: %d\n"
                      "  dispute_window: 0s\n  governance_threshold: 1\n  governance_keys:\n"
                      "    - %s\n",
                      f->base.nats.url, f->store, FEE_BPS, hex),
        0);
    const char *seed = getenv("VS_TEST_SEED");
    f->rng = seed != NULL ? strtoull(seed, NULL, 0) : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
    if (f->rng == 0)
        f->rng = 88172645463325252ULL;
    print_message("[ INFO     ] seed %" PRIu64 " (VS_TEST_SEED to repeat)\n", f->rng);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    vs_daemon_kill(&f->ledgerd);
    /* Pending requests hold pointers into cmds: the bus goes first. */
    vs_busfix_fini(&f->base);
    if (f->cmds != NULL)
        for (size_t i = 0; i < NCMDS; i++)
            free(f->cmds[i].bytes);
    free(f->cmds);
    vs_signkey_free(f->gov);
    if (getenv("VS_TEST_KEEP") != NULL)
        fprintf(stderr, "kept %s (VS_TEST_KEEP)\n", f->dir);
    else
        vs_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* A read on vs.ledger.query; the reply (caller frees) or NULL. */
static Vs__V1__LedgerReply *query(struct fixture *f, Vs__V1__LedgerCommand *cmd, uint64_t timeout_ms)
{
    return (Vs__V1__LedgerReply *)vs_test_request(f->base.bus, "vs.ledger.query", &cmd->base,
                                                  &vs__v1__ledger_reply__descriptor, timeout_ms,
                                                  NULL);
}

/* A write through JetStream, waiting for its reply; Nats-Msg-Id is
 * prefix + hex(command id). */
static Vs__V1__LedgerReply *command_sync(struct fixture *f, Vs__V1__LedgerCommand *cmd,
                                         const char *prefix)
{
    char hex[VS_ID_HEX_LEN], msg_id[64];
    vs_hex(cmd->command_id.data, VS_ID_LEN, hex);
    snprintf(msg_id, sizeof(msg_id), "%s%s", prefix, hex);
    int status;
    Vs__V1__LedgerReply *r = (Vs__V1__LedgerReply *)vs_test_js_request(
        f->base.bus, "vs.ledger.command", &cmd->base, msg_id, &vs__v1__ledger_reply__descriptor,
        10000, &status);
    if (r == NULL) {
        dump_log(f);
        fail_msg("ledger command: no reply (%s)", strerror(-status));
    }
    return r;
}

static bool balance(struct fixture *f, const char *account, int64_t *bal, uint64_t *pending)
{
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    cmd.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_BALANCE;
    cmd.account = (char *)account;
    Vs__V1__LedgerReply *r = query(f, &cmd, 3000);
    if (r == NULL)
        return false;
    bool ok = r->status != NULL && r->status->code == VS__V1__STATUS_CODE__STATUS_OK;
    *bal = r->balance;
    *pending = r->pending;
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return ok;
}

/* CHECK through the daemon: the reply's detail, "" when it did not answer. */
static bool check_daemon(struct fixture *f, char *detail, size_t size, uint64_t timeout_ms)
{
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    cmd.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_CHECK;
    Vs__V1__LedgerReply *r = query(f, &cmd, timeout_ms);
    detail[0] = '\0';
    if (r == NULL)
        return false;
    bool ok = r->status != NULL && r->status->code == VS__V1__STATUS_CODE__STATUS_OK;
    snprintf(detail, size, "%s", r->detail != NULL ? r->detail : "");
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return ok;
}

static uint64_t json_u64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : UINT64_MAX;
}

/* Whether the durable consumer has nothing left to deliver or to be acked. */
static bool consumer_drained(struct fixture *f, const char *stream, const char *durable)
{
    char api[128];
    snprintf(api, sizeof(api), "$JS.API.CONSUMER.INFO.%s.%s", stream, durable);
    json_t *j = vs_test_js_api(f->base.bus, api, NULL);
    bool drained = json_u64(j, "num_pending") == 0 && json_u64(j, "num_ack_pending") == 0;
    json_decref(j);
    return drained;
}

/* Messages the TASKS stream holds on vs.task.settled. */
static uint64_t settled_in_stream(struct fixture *f)
{
    json_t *j = vs_test_js_api(f->base.bus, "$JS.API.STREAM.INFO.TASKS",
                               "{\"subjects_filter\":\"vs.task.settled\"}");
    json_t *subjects = json_object_get(json_object_get(j, "state"), "subjects");
    uint64_t n = json_u64(subjects, "vs.task.settled");
    json_decref(j);
    return n == UINT64_MAX ? 0 : n;
}

/* ---- the daemon ------------------------------------------------------------------------- */

static void spawn_ledgerd(struct fixture *f)
{
    assert_int_equal(vs_daemon_spawn(&f->ledgerd), 0);
}

/* Ready: it answers queries (its consumers are live). */
static bool ledgerd_ready(struct vs_daemon *d, void *arg)
{
    (void)d;
    char detail[320];
    return check_daemon(arg, detail, sizeof(detail), 500);
}

static void wait_ledgerd(struct fixture *f)
{
    vs_daemon_ready(&f->ledgerd, f->base.bus, ledgerd_ready, f, 15000, 50);
}

static void kill_ledgerd(struct fixture *f)
{
    if (!vs_proc_alive(f->ledgerd.pid)) {
        f->ledgerd.pid = 0;
        dump_log(f);
        fail_msg("vs-ledgerd exited by itself (start %u)", f->ledgerd.starts);
    }
    vs_daemon_kill(&f->ledgerd);
}

/* ---- commands -------------------------------------------------------------------------------- */

static void pack_cmd(struct cmd *c, const Vs__V1__LedgerCommand *m)
{
    c->len = vs__v1__ledger_command__get_packed_size(m);
    c->bytes = malloc(c->len);
    assert_non_null(c->bytes);
    vs__v1__ledger_command__pack(m, c->bytes);
}

static void make_hold(struct cmd *c, uint64_t amount)
{
    char req[32], agent[32];
    requester_name(c->requester, req, sizeof(req));
    agent_name(c->agent, agent, sizeof(agent));
    vs_id_new(c->id);
    vs_id_new(c->task);
    c->amount = amount;
    Vs__V1__LedgerCommand m = VS__V1__LEDGER_COMMAND__INIT;
    m.command_id = (ProtobufCBinaryData){VS_ID_LEN, c->id};
    m.op = VS__V1__LEDGER_OP__LEDGER_OP_HOLD;
    m.task_id = (ProtobufCBinaryData){VS_ID_LEN, c->task};
    m.account = req;
    m.counterparty = agent;
    m.amount = amount;
    m.issued_at_ns = vs_now_ns();
    pack_cmd(c, &m);
}

/* A DEPOSIT signed by the governance key, as `vsctl ledger deposit` sends it. */
static void make_deposit(struct fixture *f, struct cmd *c, const char *account, uint64_t amount)
{
    vs_id_new(c->id);
    c->amount = amount;
    Vs__V1__LedgerCommand body = VS__V1__LEDGER_COMMAND__INIT, outer;
    body.command_id = (ProtobufCBinaryData){VS_ID_LEN, c->id};
    body.op = VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    body.account = (char *)account;
    body.amount = amount;
    body.issued_at_ns = vs_now_ns();
    vs_signkey *keys[] = {f->gov};
    assert_int_equal(vs_escrow_sign(&body, keys, 1, SIGN_TTL_MS, &outer), 0);
    pack_cmd(c, &outer);
    vs_escrow_signed_clear(&outer);
}

static void on_outcome_stored(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct fixture *f = arg;
    if (status == 0)
        f->outcome_acks++;
    else
        f->outcome_errors++;
}

/* The task's fate on TASKS, as the exfil scanner publishes it. */
static void publish_outcome(struct fixture *f, const uint8_t task[VS_ID_LEN], bool cleared)
{
    Vs__V1__ScanVerdict v = VS__V1__SCAN_VERDICT__INIT;
    v.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    v.at_ns = vs_now_ns();
    char hex[VS_ID_HEX_LEN], msg_id[64];
    vs_hex(task, VS_ID_LEN, hex);
    snprintf(msg_id, sizeof(msg_id), "outcome-%s", hex);
    int rc = vs_js_publish(f->base.bus, cleared ? "vs.task.cleared" : "vs.task.quarantined",
                           &v.base, msg_id, on_outcome_stored, f);
    f->outcomes_sent++;
    if (rc < 0)
        f->outcome_errors++;
}

static void read_reply(const Vs__V1__LedgerReply *r, int *code, bool *replayed, bool *has_transfer,
                       uint8_t transfer[VS_ID_LEN], char *reason, size_t size)
{
    *code = r->status != NULL ? (int)r->status->code : -1;
    snprintf(reason, size, "%s", r->status != NULL && r->status->reason != NULL ? r->status->reason : "");
    *replayed = r->replayed;
    *has_transfer = r->transfer_id.len == VS_ID_LEN;
    if (*has_transfer)
        memcpy(transfer, r->transfer_id.data, VS_ID_LEN);
}

static void on_cmd_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct cmd *c = arg;
    struct fixture *f = c->f;
    f->replies++;
    c->replied = true;
    c->status = status;
    if (status != 0) {
        f->reply_errors++;
        return;
    }
    read_reply((const Vs__V1__LedgerReply *)msg, &c->code, &c->replayed, &c->has_transfer,
               c->transfer, c->reason, sizeof(c->reason));
    /* The hold is committed: its task may now reach an outcome. */
    if (c->kind == K_HOLD && c->code == VS__V1__STATUS_CODE__STATUS_OK && c->fate != F_OPEN)
        publish_outcome(f, c->task, c->fate == F_CLEARED);
}

/* Send a command's stored bytes through "JetStream + reply". */
static void send_bytes(struct fixture *f, const struct cmd *c, const char *msg_id, vs_reply_cb cb,
                       void *arg)
{
    Vs__V1__LedgerCommand *m = vs__v1__ledger_command__unpack(NULL, c->len, c->bytes);
    assert_non_null(m);
    /* What goes on the wire is exactly the first bytes. */
    assert_int_equal(vs__v1__ledger_command__get_packed_size(m), c->len);
    uint8_t *again = malloc(c->len);
    assert_non_null(again);
    vs__v1__ledger_command__pack(m, again);
    assert_memory_equal(again, c->bytes, c->len);
    free(again);
    assert_int_equal(vs_js_request(f->base.bus, "vs.ledger.command", &m->base, msg_id,
                                   &vs__v1__ledger_reply__descriptor, REPLY_TIMEOUT_MS, cb, arg),
                     0);
    vs__v1__ledger_command__free_unpacked(m, NULL);
}

static void send_cmd(struct fixture *f, struct cmd *c)
{
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(c->id, VS_ID_LEN, msg_id);
    c->sent = true;
    f->sent++;
    send_bytes(f, c, msg_id, on_cmd_reply, c);
}

/* ---- setup of the accounts ---------------------------------------------------------------------- */

static void expect_ok(Vs__V1__LedgerReply *r, const char *what)
{
    assert_non_null(r);
    if (r->status == NULL || r->status->code != VS__V1__STATUS_CODE__STATUS_OK)
        fail_msg("%s: %s", what, r->status != NULL ? r->status->reason : "no status");
    vs__v1__ledger_reply__free_unpacked(r, NULL);
}

static void create_accounts(struct fixture *f)
{
    for (unsigned i = 0; i < REQUESTERS + AGENTS; i++) {
        char name[32], owner[40];
        if (i < REQUESTERS)
            requester_name(i, name, sizeof(name));
        else
            agent_name(i - REQUESTERS, name, sizeof(name));
        snprintf(owner, sizeof(owner), "owner-%s", name);
        uint8_t id[VS_ID_LEN];
        vs_id_new(id);
        Vs__V1__LedgerCommand m = VS__V1__LEDGER_COMMAND__INIT;
        m.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
        m.op = VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT;
        m.account = name;
        m.owner = owner;
        m.issued_at_ns = vs_now_ns();
        expect_ok(command_sync(f, &m, ""), "create account");
    }
    for (unsigned i = 0; i < REQUESTERS; i++) {
        char name[32];
        requester_name(i, name, sizeof(name));
        struct cmd c = {0};
        make_deposit(f, &c, name, INITIAL);
        Vs__V1__LedgerCommand *m = vs__v1__ledger_command__unpack(NULL, c.len, c.bytes);
        assert_non_null(m);
        expect_ok(command_sync(f, m, ""), "initial deposit");
        vs__v1__ledger_command__free_unpacked(m, NULL);
        free(c.bytes);
    }
}

/* The burst: holds, failing holds and deposits, shuffled. */
static void make_burst(struct fixture *f)
{
    f->cmds = calloc(NCMDS, sizeof(*f->cmds));
    assert_non_null(f->cmds);
    size_t n = 0;
    for (unsigned i = 0; i < HOLDS; i++) {
        struct cmd *c = &f->cmds[n++];
        c->f = f;
        c->kind = K_HOLD;
        c->requester = i % REQUESTERS;
        c->agent = (i / REQUESTERS) % AGENTS;
        c->fate = i % 5 == 4 ? F_OPEN : i % 5 == 3 ? F_QUARANTINED : F_CLEARED;
        make_hold(c, 100 + (i * 7919u) % (MAX_BOUNTY - 99));
    }
    for (unsigned i = 0; i < FAILING; i++) {
        struct cmd *c = &f->cmds[n++];
        c->f = f;
        c->kind = K_FAIL;
        c->requester = i % REQUESTERS;
        c->agent = i % AGENTS;
        make_hold(c, HUGE_AMOUNT + i);
    }
    for (unsigned i = 0; i < DEPOSITS; i++) {
        struct cmd *c = &f->cmds[n++];
        char name[32];
        c->f = f;
        c->kind = K_DEPOSIT;
        c->requester = (i * 3u) % REQUESTERS;
        requester_name(c->requester, name, sizeof(name));
        make_deposit(f, c, name, 1000 + i);
    }
    assert_int_equal(n, NCMDS);
    for (size_t i = NCMDS - 1; i > 0; i--) {
        size_t j = (size_t)(rnd(f) % (i + 1));
        struct cmd t = f->cmds[i];
        f->cmds[i] = f->cmds[j];
        f->cmds[j] = t;
    }
}

/* ---- expectations ------------------------------------------------------------------------------ */

struct expected {
    int64_t requester[REQUESTERS];
    uint64_t requester_held[REQUESTERS];
    int64_t agent[AGENTS];
    int64_t fee, operator_;
    uint64_t open_holds, settled;
};

static void expect(const struct fixture *f, struct expected *e)
{
    memset(e, 0, sizeof(*e));
    for (unsigned r = 0; r < REQUESTERS; r++)
        e->requester[r] = (int64_t)INITIAL;
    e->operator_ = -(int64_t)(REQUESTERS * INITIAL);
    for (size_t i = 0; i < NCMDS; i++) {
        const struct cmd *c = &f->cmds[i];
        if (c->kind == K_DEPOSIT) {
            e->requester[c->requester] += (int64_t)c->amount;
            e->operator_ -= (int64_t)c->amount;
        } else if (c->kind == K_HOLD && c->fate == F_CLEARED) {
            e->requester[c->requester] -= (int64_t)c->amount;
            e->agent[c->agent] += (int64_t)(c->amount - fee_of(c->amount));
            e->fee += (int64_t)fee_of(c->amount);
            e->settled++;
        } else if (c->kind == K_HOLD && c->fate == F_QUARANTINED) {
            e->settled++;
        } else if (c->kind == K_HOLD) {
            e->requester_held[c->requester] += c->amount;
            e->open_holds++;
        }
    }
}

static void expect_balance(struct fixture *f, const char *name, int64_t bal, uint64_t held)
{
    int64_t got = 0;
    uint64_t got_held = 0;
    if (!balance(f, name, &got, &got_held))
        fail_msg("BALANCE %s: no answer", name);
    if (got != bal || got_held != held)
        fail_msg("%s: balance %" PRId64 " held %" PRIu64 ", expected %" PRId64 " held %" PRIu64, name,
                 got, got_held, bal, held);
}

static void check_balances(struct fixture *f, const struct expected *e)
{
    char name[32];
    for (unsigned r = 0; r < REQUESTERS; r++) {
        requester_name(r, name, sizeof(name));
        expect_balance(f, name, e->requester[r], e->requester_held[r]);
    }
    for (unsigned a = 0; a < AGENTS; a++) {
        agent_name(a, name, sizeof(name));
        expect_balance(f, name, e->agent[a], 0);
    }
    expect_balance(f, VS_ESCROW_FEE, e->fee, 0);
    expect_balance(f, VS_ESCROW_OPERATOR, e->operator_, 0);
    /* Escrow accounts of a sample of tasks end empty (paid out, voided, or
     * the hold still pending on the requester's side). */
    for (size_t i = 0; i < NCMDS; i += 7) {
        const struct cmd *c = &f->cmds[i];
        if (c->kind != K_HOLD)
            continue;
        char hex[VS_ID_HEX_LEN], escrow[64];
        vs_hex(c->task, VS_ID_LEN, hex);
        snprintf(escrow, sizeof(escrow), "escrow:%s", hex);
        expect_balance(f, escrow, 0, 0);
    }
}

static void check_invariant_online(struct fixture *f, const struct expected *e)
{
    char detail[320], want[64];
    if (!check_daemon(f, detail, sizeof(detail), 5000))
        fail_msg("CHECK: the invariant does not hold: %s", detail);
    assert_int_equal(strncmp(detail, "holds:", 6), 0);
    snprintf(want, sizeof(want), "open holds %" PRIu64 " ", e->open_holds);
    if (strstr(detail, want) == NULL)
        fail_msg("CHECK: expected '%s' in '%s'", want, detail);
}

/* ---- settlements ---------------------------------------------------------------------------------- */

struct settled {
    uint8_t task[VS_ID_LEN];
    int outcome;
    uint64_t paid, fee, refunded;
    char agent[32], requester[32];
};

struct settled_set {
    struct settled *v;
    size_t n, cap;
};

static int on_settlement(vs_msg *m, void *arg)
{
    struct settled_set *s = arg;
    const Vs__V1__Settlement *st = (const Vs__V1__Settlement *)vs_msg_body(m);
    if (st == NULL || st->task_id.len != VS_ID_LEN)
        return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (s->v == NULL)
            abort();
    }
    struct settled *x = &s->v[s->n++];
    memcpy(x->task, st->task_id.data, VS_ID_LEN);
    x->outcome = (int)st->outcome;
    x->paid = st->paid_to_agent;
    x->fee = st->fee;
    x->refunded = st->refunded;
    snprintf(x->agent, sizeof(x->agent), "%s", st->agent);
    snprintf(x->requester, sizeof(x->requester), "%s", st->requester);
    return 0;
}

static int cmp_settled(const void *a, const void *b)
{
    return memcmp(((const struct settled *)a)->task, ((const struct settled *)b)->task, VS_ID_LEN);
}

static void check_settlements(struct fixture *f, const struct expected *e)
{
    uint64_t in_stream = settled_in_stream(f);
    struct settled_set s = {0};
    vs_consumer *rd = NULL;
    assert_int_equal(vs_js_read(f->base.bus, "TASKS", "vs.task.settled", 0, 0,
                                &vs__v1__settlement__descriptor, on_settlement, &s, &rd),
                     0);
    for (int waited = 0; waited < 15000 && s.n < in_stream; waited += 20)
        idle(f, 20);
    vs_consumer_free(rd);
    assert_int_equal(s.n, in_stream);
    qsort(s.v, s.n, sizeof(*s.v), cmp_settled);
    size_t distinct = 0, twice = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (i > 0 && memcmp(s.v[i].task, s.v[i - 1].task, VS_ID_LEN) == 0) {
            twice++;
            if (s.v[i].outcome != s.v[i - 1].outcome)
                fail_msg("a task settled twice with different outcomes (%d, %d)", s.v[i - 1].outcome,
                         s.v[i].outcome);
            continue;
        }
        distinct++;
    }
    /* One Settlement per task: the outbox republished after crashes, and
     * JetStream dropped the copies ("settled-<task>"). */
    assert_int_equal(twice, 0);
    assert_int_equal(distinct, e->settled);
    size_t matched = 0;
    for (size_t i = 0; i < NCMDS; i++) {
        const struct cmd *c = &f->cmds[i];
        if (c->kind == K_DEPOSIT)
            continue;
        struct settled key;
        memcpy(key.task, c->task, VS_ID_LEN);
        const struct settled *x = bsearch(&key, s.v, s.n, sizeof(*s.v), cmp_settled);
        bool should = c->kind == K_HOLD && c->fate != F_OPEN;
        if (!should) {
            if (x != NULL)
                fail_msg("a task that must not settle did (%s)", c->kind == K_FAIL ? "failed hold" : "open hold");
            continue;
        }
        if (x == NULL)
            fail_msg("a settled task has no Settlement");
        char req[32], agent[32];
        requester_name(c->requester, req, sizeof(req));
        agent_name(c->agent, agent, sizeof(agent));
        assert_string_equal(x->requester, req);
        assert_string_equal(x->agent, agent);
        if (c->fate == F_CLEARED) {
            assert_int_equal(x->outcome, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_POSTED);
            assert_int_equal(x->paid, c->amount - fee_of(c->amount));
            assert_int_equal(x->fee, fee_of(c->amount));
            assert_int_equal(x->refunded, 0);
        } else {
            assert_int_equal(x->outcome, VS__V1__SETTLEMENT_OUTCOME__SETTLEMENT_VOIDED);
            assert_int_equal(x->paid, 0);
            assert_int_equal(x->refunded, c->amount);
        }
        matched++;
    }
    assert_int_equal(matched, e->settled);
    free(s.v);
}

/* ---- waiting for the end of the work ------------------------------------------------------------ */

static void wait_replies(struct fixture *f)
{
    for (int waited = 0; waited < 70000; waited += 50) {
        if (f->replies == f->sent && f->outcome_acks + f->outcome_errors == f->outcomes_sent)
            return;
        idle(f, 50);
    }
    dump_log(f);
    fail_msg("%zu of %zu replies, %zu of %zu outcomes stored", f->replies, f->sent, f->outcome_acks,
             f->outcomes_sent);
}

static void wait_drained(struct fixture *f, uint64_t settled)
{
    int waited = 0;
    for (; waited < 30000 && settled_in_stream(f) < settled; waited += 100)
        idle(f, 100);
    for (; waited < 30000; waited += 100) {
        if (consumer_drained(f, "LEDGER", "ledgerd") && consumer_drained(f, "TASKS", "ledgerd-tasks"))
            return;
        idle(f, 100);
    }
    dump_log(f);
    fail_msg("the daemon's consumers did not drain (settlements in the stream %" PRIu64 " of %" PRIu64 ")",
             settled_in_stream(f), settled);
}

/* ---- resending ---------------------------------------------------------------------------------- */

static void on_resend_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct resend *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0)
        read_reply((const Vs__V1__LedgerReply *)msg, &r->code, &r->replayed, &r->has_transfer,
                   r->transfer, r->reason, sizeof(r->reason));
}

static void resend_sample(struct fixture *f)
{
    size_t n = 0;
    struct resend *rs = calloc(NCMDS / RESEND_EVERY + 1, sizeof(*rs));
    assert_non_null(rs);
    for (size_t i = 0; i < NCMDS; i += RESEND_EVERY) {
        struct resend *r = &rs[n++];
        r->c = &f->cmds[i];
        char hex[VS_ID_HEX_LEN], msg_id[64];
        vs_hex(r->c->id, VS_ID_LEN, hex);
        snprintf(msg_id, sizeof(msg_id), "resend-%s", hex);
        send_bytes(f, r->c, msg_id, on_resend_reply, r);
    }
    size_t done = 0;
    for (int waited = 0; waited < 30000; waited += 20) {
        done = 0;
        for (size_t i = 0; i < n; i++)
            done += rs[i].done;
        if (done == n)
            break;
        idle(f, 20);
    }
    assert_int_equal(done, n);
    size_t kinds[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        const struct resend *r = &rs[i];
        if (r->status != 0)
            fail_msg("resent command: no reply (%s)", strerror(-r->status));
        if (!r->replayed)
            fail_msg("a resent command (kind %d) was applied again instead of replayed", r->c->kind);
        assert_int_equal(r->code, r->c->code);
        assert_string_equal(r->reason, r->c->reason);
        assert_int_equal(r->has_transfer, r->c->has_transfer);
        if (r->has_transfer)
            assert_memory_equal(r->transfer, r->c->transfer, VS_ID_LEN);
        kinds[r->c->kind]++;
    }
    assert_true(kinds[K_HOLD] > 0 && kinds[K_FAIL] > 0 && kinds[K_DEPOSIT] > 0);
    free(rs);
}

/* Another body under a used command id is refused and changes nothing. */
static void reuse_id_other_body(struct fixture *f)
{
    struct cmd *c = NULL;
    for (size_t i = 0; i < NCMDS && c == NULL; i++)
        if (f->cmds[i].kind == K_HOLD && f->cmds[i].fate == F_OPEN)
            c = &f->cmds[i];
    assert_non_null(c);
    Vs__V1__LedgerCommand *m = vs__v1__ledger_command__unpack(NULL, c->len, c->bytes);
    assert_non_null(m);
    m->amount += 1;
    Vs__V1__LedgerReply *r = command_sync(f, m, "other-body-");
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_INVALID);
    assert_false(r->replayed);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    vs__v1__ledger_command__free_unpacked(m, NULL);
}

/* ---- the store, offline ---------------------------------------------------------------------------- */

struct offline {
    const struct expected *e;
    struct vs_ledger_totals tot;
    uint64_t applied_ledger, applied_tasks;
    char problem[256];
};

static void offline_problem(struct offline *o, const char *name, int64_t bal, uint64_t held,
                            int64_t want_bal, uint64_t want_held)
{
    if (o->problem[0] == '\0' && (bal != want_bal || held != want_held))
        snprintf(o->problem, sizeof(o->problem),
                 "%s: balance %" PRId64 " held %" PRIu64 ", expected %" PRId64 " held %" PRIu64, name,
                 bal, held, want_bal, want_held);
}

static int offline_account(vs_ledger_txn *t, struct offline *o, const char *name, int64_t want_bal,
                           uint64_t want_held)
{
    struct vs_account a;
    int rc = vs_ledger_account_by_name(t, name, &a);
    if (rc)
        return rc;
    offline_problem(o, name, (int64_t)(a.credits_posted - a.debits_posted), a.debits_pending, want_bal,
                    want_held);
    return 0;
}

static int offline_read(vs_ledger_txn *t, void *arg)
{
    struct offline *o = arg;
    int rc = vs_ledger_check(t, &o->tot);
    if (rc)
        return rc;
    char name[32];
    for (unsigned r = 0; r < REQUESTERS && rc == 0; r++) {
        requester_name(r, name, sizeof(name));
        rc = offline_account(t, o, name, o->e->requester[r], o->e->requester_held[r]);
    }
    for (unsigned a = 0; a < AGENTS && rc == 0; a++) {
        agent_name(a, name, sizeof(name));
        rc = offline_account(t, o, name, o->e->agent[a], 0);
    }
    if (rc == 0)
        rc = offline_account(t, o, VS_ESCROW_FEE, o->e->fee, 0);
    if (rc == 0)
        rc = offline_account(t, o, VS_ESCROW_OPERATOR, o->e->operator_, 0);
    if (rc == 0)
        rc = vs_ledger_applied_get(t, "LEDGER", &o->applied_ledger);
    if (rc == 0)
        rc = vs_ledger_applied_get(t, "TASKS", &o->applied_tasks);
    return rc;
}

static void check_store_offline(struct fixture *f, const struct expected *e)
{
    uint64_t ledger_last = 0, tasks_last = 0;
    assert_int_equal(vs_js_stream_last_seq_sync(f->base.bus, "LEDGER", &ledger_last), 0);
    assert_int_equal(vs_js_stream_last_seq_sync(f->base.bus, "TASKS", &tasks_last), 0);
    struct vs_ledger_opts lo = {.path = f->store, .read_only = true};
    vs_ledger *l = NULL;
    assert_int_equal(vs_ledger_open(&lo, &l), 0);
    struct offline o = {.e = e};
    int rc = vs_ledger_read(l, offline_read, &o);
    vs_ledger_free(l);
    if (rc == -EUCLEAN)
        fail_msg("the store's invariant does not hold: %s", o.tot.problem);
    assert_int_equal(rc, 0);
    if (o.problem[0] != '\0')
        fail_msg("the store: %s", o.problem);
    assert_int_equal(o.tot.pending_open, e->open_holds);
    assert_int_equal(o.tot.debits_posted, o.tot.credits_posted);
    assert_int_equal(o.tot.debits_pending, o.tot.credits_pending);
    /* Everything in both streams was applied (and the stored position says so). */
    assert_int_equal(o.applied_ledger, ledger_last);
    assert_int_equal(o.applied_tasks, tasks_last);
}

/* ---- the test ----------------------------------------------------------------------------------- */

static void test_exactly_once_across_many_sigkills(void **state)
{
    struct fixture *f = *state;
    spawn_ledgerd(f);
    wait_ledgerd(f);
    create_accounts(f);
    make_burst(f);

    /* Outcomes of tasks whose hold will fail: no hold, nothing settles,
     * whenever they land. */
    for (size_t i = 0, stray = 0; i < NCMDS && stray < STRAY_OUTCOMES; i++)
        if (f->cmds[i].kind == K_FAIL) {
            publish_outcome(f, f->cmds[i].task, stray % 2 == 0);
            stray++;
        }

    /* The burst, in chunks, with a SIGKILL after each at a varied small
     * delay: some land while a batch is being applied or committed, some
     * while the outbox is published, some during start-up. */
    const size_t chunk = (NCMDS + KILLS - 1) / KILLS;
    unsigned kills = 0, kills_in_flight = 0, quick_restarts = 0;
    size_t next = 0;
    for (unsigned k = 0; k < KILLS; k++) {
        size_t end = next + chunk < NCMDS ? next + chunk : NCMDS;
        for (; next < end; next++)
            send_cmd(f, &f->cmds[next]);
        /* Mostly within a few milliseconds, while the chunk is being
         * applied; sometimes later, when it may be idle or publishing. */
        idle(f, rnd(f) % 4 == 0 ? 50 + rnd(f) % 400 : 1 + rnd(f) % 40);
        kills_in_flight += f->replies < f->sent;
        kill_ledgerd(f);
        kills++;
        idle(f, rnd(f) % 250); /* commands and outcomes land while it is down */
        spawn_ledgerd(f);
        if (rnd(f) % 3 == 0) {
            wait_ledgerd(f);
        } else {
            quick_restarts++; /* the next kill may come during start-up */
        }
    }
    assert_int_equal(next, NCMDS);
    wait_ledgerd(f);
    print_message("[ INFO     ] %u kills (%u with commands in flight, %u soon after a restart), "
                  "%zu of %zu replies before the last restart\n",
                  kills, kills_in_flight, quick_restarts, f->replies, f->sent);

    struct expected e;
    expect(f, &e);
    wait_replies(f);
    assert_int_equal(f->reply_errors, 0);
    assert_int_equal(f->outcome_errors, 0);
    wait_drained(f, e.settled);

    /* Each command's one outcome. */
    size_t replayed = 0;
    for (size_t i = 0; i < NCMDS; i++) {
        const struct cmd *c = &f->cmds[i];
        assert_true(c->replied);
        replayed += c->replayed;
        int want = c->kind == K_FAIL ? VS__V1__STATUS_CODE__STATUS_DENIED : VS__V1__STATUS_CODE__STATUS_OK;
        if (c->code != want)
            fail_msg("command %zu (kind %d): status %d (%s), expected %d", i, c->kind, c->code,
                     c->reason, want);
        if (c->kind == K_FAIL)
            assert_string_equal(c->reason, "insufficient funds");
        else
            assert_true(c->has_transfer);
    }
    print_message("[ INFO     ] %u daemon starts; %zu first replies were replays of an earlier "
                  "commit (the reply was lost with the process)\n",
                  f->ledgerd.starts, replayed);

    check_balances(f, &e);
    check_invariant_online(f, &e);
    check_settlements(f, &e);

    /* Sent again (same bytes, same command id, a new Nats-Msg-Id): the
     * stored outcome, nothing moves. */
    resend_sample(f);
    reuse_id_other_body(f);
    wait_drained(f, e.settled);
    check_balances(f, &e);
    check_invariant_online(f, &e);
    assert_int_equal(settled_in_stream(f), e.settled);

    /* Nothing was terminated as poison, no batch refused by the store. */
    assert_int_equal(vs_file_count(f->ledgerd.log, "cannot be applied"), 0);
    assert_int_equal(vs_file_count(f->ledgerd.log, "refused by the store"), 0);

    /* A clean stop, then the store itself, read-only. */
    vs_daemon_stop_clean(&f->ledgerd, 10000);
    /* Sanitizer builds of the daemon: nothing reported by any of its runs. */
    const char *log = f->ledgerd.log;
    if (vs_file_count(log, "runtime error") > 0 || vs_file_count(log, "Sanitizer") > 0) {
        dump_log(f);
        fail_msg("a sanitizer reported an error in vs-ledgerd (see the log above)");
    }
    check_store_offline(f, &e);
}

static int group_setup(void **state)
{
    (void)state;
    return vs_crypto_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exactly_once_across_many_sigkills, setup, teardown),
    };
    return cmocka_run_group_tests_name("ledger_crash", tests, group_setup, NULL);
}
