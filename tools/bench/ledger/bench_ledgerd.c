/*
 * bench_ledgerd.c - the escrow ledger daemon end to end beside the JetStream
 * work it cannot avoid, in the same run against the same nats-server:
 *   ledgerd - N HOLD commands (distinct tasks, one well-funded requester
 *             whose funds came from a signed DEPOSIT at setup) are published
 *             into the LEDGER stream (Nats-Msg-Id = hex(command id), no reply
 *             inbox) while vs-ledgerd is not running; then vs-ledgerd (a real
 *             process, durable LMDB store in a scratch directory) is started
 *             and timed from its spawn until its "commands" counter
 *             (vs.sys.stats.ledgerd, asked every 5 ms: each question is
 *             work for the daemon's loop) reaches N: start-up, consume, group
 *             commit with fsync (exactly-once bookkeeping: stored replies,
 *             applied sequence, outbox), ack, and the outbox's audit events
 *             published back into JetStream.
 *   raw     - the same number of identical-size messages pre-published to a
 *             stream of its own (BENCHRAW, file storage like LEDGER), consumed
 *             by a plain cnats durable push consumer with explicit acks and
 *             the daemon's MaxAckPending, timed from the consumer's creation
 *             until the last message is received and acked (flushed).
 * The ratio ledgerd/raw says what the ledger costs on top of merely
 * consuming the stream (target >= 0.5). Afterwards the requester's held
 * amount (BALANCE) must be exactly what the holds add up to: the run checks
 * it applied every command once. The daemon's "batches" counter shows the
 * group commit. With --rounds the phases alternate which goes first. Tests
 * never judge timings; the ctest bench.ledgerd_smoke runs --quick to prove
 * this runs. The frame (options, nats-server, publisher, the raw consumer,
 * the rounds) is tools/bench/common/bench_daemon.c, shared with
 * bench_auditd; what is here is the ledger's own part.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bench_common.h"
#include "bench_daemon.h"
#include "busfix.h"
#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/v1/ledger.pb-c.h"

#define MAX_ACK_PENDING 8192 /* vs-ledgerd's */
#define BOUNTY 100
#define FUNDS 1000000000000ULL
#define REQUESTER "bench-requester"
#define AGENT "bench-agent"
#define RAW_STREAM "BENCHRAW"
#define RAW_SUBJECT "bench.raw.hold"

struct env {
    struct bench_daemon b;
    uint64_t holds;         /* applied so far (all rounds) */
    double startup_s;       /* an idle daemon's start-up, for context */
};

/* ---- commands ------------------------------------------------------------------------ */

/* A HOLD for a new task (~100 bytes packed); msg_id gets hex(command id). */
static size_t make_hold(void *arg, uint8_t *buf, size_t size, char *msg_id)
{
    (void)arg;
    uint8_t id[VS_ID_LEN], task[VS_ID_LEN];
    vs_id_new(id);
    vs_id_new(task);
    Vs__V1__LedgerCommand m = VS__V1__LEDGER_COMMAND__INIT;
    m.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    m.op = VS__V1__LEDGER_OP__LEDGER_OP_HOLD;
    m.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    m.account = REQUESTER;
    m.counterparty = AGENT;
    m.amount = BOUNTY;
    m.issued_at_ns = vs_now_ns();
    size_t n = vs__v1__ledger_command__get_packed_size(&m);
    if (n > size)
        return 0;
    vs_hex(id, VS_ID_LEN, msg_id);
    return vs__v1__ledger_command__pack(&m, buf);
}

/* Publish n HOLDs to subject and wait for every ack. */
static int publish(struct env *e, const char *subject, uint64_t n)
{
    if (bench_publish(&e->b, subject, n, make_hold, NULL) < 0)
        return -EIO;
    return bench_publish_complete(&e->b);
}

/* ---- the daemon ------------------------------------------------------------------------ */

struct stats {
    uint64_t commands, batches, replayed, poison;
};

/* The daemon's counters; 0 when it answered. */
static int daemon_stats(struct env *e, struct stats *s, uint64_t timeout_ms)
{
    static const char *const names[] = {"commands", "batches", "replayed", "poison"};
    uint64_t v[4];
    if (vs_test_counters(e->b.bus, "ledgerd", names, v, 4, timeout_ms) < 0)
        return -ETIMEDOUT;
    *s = (struct stats){v[0], v[1], v[2], v[3]};
    return 0;
}

/* VS_BENCH_LEDGERD names another vs-ledgerd (absolute path) to measure,
 * e.g. a candidate change against this build's; default: this build's. */
static const char *daemon_bin(void)
{
    const char *bin = getenv("VS_BENCH_LEDGERD");
    return bin != NULL && bin[0] == '/' ? bin : VS_LEDGERD_BIN;
}

static const char *reason_of(const Vs__V1__LedgerReply *r)
{
    return r != NULL && r->status != NULL && r->status->reason != NULL ? r->status->reason : "";
}

static bool ok(const Vs__V1__LedgerReply *r)
{
    return r != NULL && r->status != NULL && r->status->code == VS__V1__STATUS_CODE__STATUS_OK;
}

/* A write through "JetStream + reply"; 0 when the ledger said OK. */
static int command(struct env *e, Vs__V1__LedgerCommand *cmd, const char *what)
{
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(cmd->command_id.data, VS_ID_LEN, msg_id);
    int status;
    Vs__V1__LedgerReply *r = (Vs__V1__LedgerReply *)vs_test_js_request(
        e->b.bus, "vs.ledger.command", &cmd->base, msg_id, &vs__v1__ledger_reply__descriptor,
        10000, &status);
    int rc = ok(r) ? 0 : -EIO;
    if (rc < 0)
        fprintf(stderr, "bench_ledgerd: %s: %s\n", what,
                r == NULL ? strerror(-status) : reason_of(r));
    if (r != NULL)
        vs__v1__ledger_reply__free_unpacked(r, NULL);
    return rc;
}

static int balance(struct env *e, const char *account, int64_t *bal, uint64_t *pending)
{
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    cmd.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_BALANCE;
    cmd.account = (char *)account;
    Vs__V1__LedgerReply *r = (Vs__V1__LedgerReply *)vs_test_request(
        e->b.bus, "vs.ledger.query", &cmd.base, &vs__v1__ledger_reply__descriptor, 5000, NULL);
    int rc = ok(r) ? 0 : -EIO;
    if (rc == 0) {
        *bal = r->balance;
        *pending = r->pending;
    }
    if (r != NULL)
        vs__v1__ledger_reply__free_unpacked(r, NULL);
    return rc;
}

/* Ready: it answers its stats subject. */
static bool answers(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct stats s;
    return daemon_stats(arg, &s, 300) == 0;
}

/* Accounts and the requester's funds: a signed DEPOSIT, as `vsctl ledger
 * deposit` sends it. */
static int fund(struct env *e, vs_signkey *gov)
{
    const char *names[] = {REQUESTER, AGENT};
    for (int i = 0; i < 2; i++) {
        uint8_t id[VS_ID_LEN];
        vs_id_new(id);
        Vs__V1__LedgerCommand m = VS__V1__LEDGER_COMMAND__INIT;
        m.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
        m.op = VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT;
        m.account = (char *)names[i];
        m.owner = (char *)names[i];
        m.issued_at_ns = vs_now_ns();
        if (command(e, &m, "create account") < 0)
            return -EIO;
    }
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    Vs__V1__LedgerCommand body = VS__V1__LEDGER_COMMAND__INIT, outer;
    body.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    body.op = VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    body.account = REQUESTER;
    body.amount = FUNDS;
    body.issued_at_ns = vs_now_ns();
    vs_signkey *keys[] = {gov};
    if (vs_escrow_sign(&body, keys, 1, 600000, &outer) < 0)
        return -EIO;
    int rc = command(e, &outer, "deposit");
    vs_escrow_signed_clear(&outer);
    return rc;
}

/* Done: the daemon has applied every command of the phase. */
struct applied {
    struct env *e;
    struct stats s;
};

static bool all_applied(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct applied *a = arg;
    return daemon_stats(a->e, &a->s, 1000) == 0 && a->s.commands >= a->e->b.cfg.n;
}

/* One ledgerd phase; commands/s or 0. */
static double run_ledgerd(void *arg, char *note, size_t nsize)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    if (publish(e, "vs.ledger.command", b->cfg.n) < 0) {
        snprintf(note, nsize, "publish failed");
        return 0;
    }
    double t0 = bench_now_s();
    if (vs_daemon_spawn(&b->daemon) < 0) {
        snprintf(note, nsize, "cannot start vs-ledgerd");
        return 0;
    }
    struct applied a = {.e = e};
    int rc = vs_daemon_wait(&b->daemon, NULL, all_applied, &a, (int)b->cfg.deadline_ms, 5);
    double t1 = bench_now_s();
    if (rc == -ECHILD) {
        fprintf(stderr, "bench_ledgerd: vs-ledgerd exited (see %s)\n", b->daemon.log);
        snprintf(note, nsize, "vs-ledgerd exited");
        return 0;
    }
    if (rc < 0) {
        snprintf(note, nsize, "deadline: %" PRIu64 " of %" PRIu64 " applied", a.s.commands, b->cfg.n);
        bench_daemon_stop(b);
        return 0;
    }
    /* Each hold applied once: the requester holds exactly their sum. */
    e->holds += b->cfg.n;
    int64_t bal = 0;
    uint64_t held = 0;
    rc = balance(e, REQUESTER, &bal, &held);
    bench_daemon_stop(b);
    if (rc < 0 || held != e->holds * BOUNTY || bal != (int64_t)FUNDS || a.s.poison != 0) {
        snprintf(note, nsize, "WRONG: held %" PRIu64 " (expected %" PRIu64 "), balance %" PRId64
                 ", poison %" PRIu64,
                 held, e->holds * BOUNTY, bal, a.s.poison);
        return 0;
    }
    snprintf(note, nsize,
             "%" PRIu64 " batches, %.0f commands per commit, %" PRIu64 " replayed; held amount verified",
             a.s.batches, a.s.batches > 0 ? (double)a.s.commands / (double)a.s.batches : 0.0,
             a.s.replayed);
    return (double)b->cfg.n / (t1 - t0);
}

/* ---- the raw consumer ------------------------------------------------------------------ */

static double run_raw(void *arg, unsigned round, char *note, size_t nsize)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    jsErrCode jerr = 0;
    if (js_PurgeStream(b->pub_js, RAW_STREAM, NULL, &jerr) != NATS_OK) {
        snprintf(note, nsize, "cannot purge %s (%d)", RAW_STREAM, (int)jerr);
        return 0;
    }
    if (publish(e, RAW_SUBJECT, b->cfg.n) < 0) {
        snprintf(note, nsize, "publish failed");
        return 0;
    }
    struct bench_raw r;
    double t0 = bench_now_s(), t1 = 0;
    if (bench_raw_start(b, &r, RAW_STREAM, RAW_SUBJECT, false, MAX_ACK_PENDING, round, note,
                        nsize) == 0)
        t1 = bench_raw_wait(b, &r, b->cfg.n, t0, note, nsize);
    bench_raw_stop(&r);
    return t1 > 0 ? (double)b->cfg.n / (t1 - t0) : 0;
}

/* ---- setup ------------------------------------------------------------------------------ */

/* Accounts and funds with an idle daemon (its start-up timed, for
 * context), and the raw phase's stream. */
static int setup(void *arg)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    if (bench_daemon_setup(b, daemon_bin()) < 0)
        return -EIO;
    vs_signkey *gov = NULL;
    if (vs_signkey_new(&gov) < 0)
        return -EIO;
    char hex[2 * VS_SIGN_PUBLICKEY_LEN + 1], extra[256];
    vs_hex(vs_signkey_public(gov), VS_SIGN_PUBLICKEY_LEN, hex);
    snprintf(extra, sizeof(extra), "  dispute_window: 0s\n  governance_keys:\n    - %s\n", hex);
    int rc = bench_daemon_config(b, extra);
    double t0 = bench_now_s();
    if (rc == 0)
        rc = vs_daemon_spawn(&b->daemon);
    if (rc == 0 && vs_daemon_wait(&b->daemon, NULL, answers, e, 20000, 5) < 0) {
        fprintf(stderr, "bench_ledgerd: vs-ledgerd did not come up (see %s)\n", b->daemon.log);
        rc = -EIO;
    }
    e->startup_s = bench_now_s() - t0;
    if (rc == 0)
        rc = fund(e, gov);
    vs_signkey_free(gov);
    bench_daemon_stop(b);
    if (rc < 0)
        return -EIO;

    /* The raw phase's stream: file storage and a dedup window like LEDGER. */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {RAW_SUBJECT};
    sc.Name = RAW_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 3600LL * 1000000000LL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_AddStream(&si, b->pub_js, &sc, NULL, &jerr) != NATS_OK) {
        fprintf(stderr, "bench_ledgerd: cannot create %s (%d)\n", RAW_STREAM, (int)jerr);
        return -EIO;
    }
    jsStreamInfo_Destroy(si);
    return 0;
}

static void describe(void *arg)
{
    struct env *e = arg;
    printf("  an idle vs-ledgerd starts in %.0f ms (included in its phase)\n", e->startup_s * 1000);
    if (strcmp(daemon_bin(), VS_LEDGERD_BIN) != 0)
        printf("  daemon: %s (VS_BENCH_LEDGERD)\n", daemon_bin());
}

int main(int argc, char **argv)
{
    struct env e = {.b = {.prog = "bench_ledgerd", .component = "ledgerd"}};
    int rc = bench_daemon_args(&e.b, argc, argv, "commands", "messages per write transaction");
    if (rc >= 0)
        return rc;
    if (e.b.cfg.n * (uint64_t)e.b.cfg.rounds * BOUNTY > FUNDS) {
        fprintf(stderr, "bench_ledgerd: --n times --rounds holds exceed the requester's funds\n");
        return 2;
    }
    const struct bench_phases phases = {.unit = "commands", .raw_unit = "msg", .setup = setup,
                                        .describe = describe, .daemon = run_ledgerd,
                                        .raw = run_raw, .arg = &e};
    return bench_daemon_main(&e.b, &phases);
}
