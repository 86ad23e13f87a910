/*
 * bench_ledgerd.c - the escrow ledger daemon end to end beside the JetStream
 * work it cannot avoid, in the same run against the same nats-server:
 *   ledgerd - N HOLD commands (distinct tasks, one well-funded requester
 *             whose funds came from a signed DEPOSIT at setup) are published
 *             into the LEDGER stream (Nats-Msg-Id = hex(command id), no reply
 *             inbox) while vs-ledgerd is not running; then vs-ledgerd (a real
 *             process, durable LMDB store in a scratch directory) is started
 *             and timed from its spawn until its "commands" counter
 *             (vs.sys.stats.ledgerd) reaches N: start-up, consume, group
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
 * this runs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "natsd.h"
#include "proc.h"
#include "vs/bus.h"
#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"

#define MAX_ROUNDS 9
#define MAX_ACK_PENDING 8192 /* vs-ledgerd's */
#define BOUNTY 100
#define FUNDS 1000000000000ULL
#define REQUESTER "bench-requester"
#define AGENT "bench-agent"
#define RAW_STREAM "BENCHRAW"
#define RAW_SUBJECT "bench.raw.hold"

struct cfg {
    uint64_t n;
    unsigned rounds;
    uint64_t deadline_ms;
    const char *parent;
    uint64_t batch;        /* ledgerd.batch; 0: the daemon's default */
};

struct env {
    struct cfg cfg;
    struct vs_natsd nats;
    uv_loop_t loop;
    bool loop_init;
    vs_bus *bus;
    natsConnection *pub_nc;
    jsCtx *pub_js;
    char dir[256], config[300], log[300];
    pid_t daemon;
    atomic_uint_fast64_t pub_errors; /* publishes the stream refused */
    uint64_t holds;         /* applied so far (all rounds) */
    double startup_s;       /* an idle daemon's start-up, for context */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- commands ------------------------------------------------------------------------ */

/* A HOLD for a new task (~100 bytes packed); msg_id gets hex(command id). */
static size_t make_hold(uint8_t *buf, size_t size, char msg_id[VS_ID_HEX_LEN])
{
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

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    struct env *e = closure;
    atomic_fetch_add(&e->pub_errors, 1);
}

/* Publish n HOLDs to subject with cnats' asynchronous JetStream publisher
 * and wait for every ack. */
static int publish(struct env *e, const char *subject, uint64_t n)
{
    uint8_t buf[512];
    char msg_id[VS_ID_HEX_LEN];
    double deadline = now_s() + (double)e->cfg.deadline_ms / 1000.0;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = make_hold(buf, sizeof(buf), msg_id);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        natsStatus st;
        do {
            st = js_PublishAsync(e->pub_js, subject, buf, (int)len, &po);
        } while (st == NATS_TIMEOUT && now_s() < deadline);
        if (st != NATS_OK) {
            fprintf(stderr, "bench_ledgerd: publish: %s\n", natsStatus_GetText(st));
            return -EIO;
        }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = (int64_t)e->cfg.deadline_ms;
    if (js_PublishAsyncComplete(e->pub_js, &po) != NATS_OK) {
        fprintf(stderr, "bench_ledgerd: the stream did not acknowledge every publish\n");
        return -ETIMEDOUT;
    }
    uint64_t errors = atomic_exchange(&e->pub_errors, 0);
    if (errors > 0) {
        fprintf(stderr, "bench_ledgerd: %" PRIu64 " publishes failed\n", errors);
        return -EIO;
    }
    return 0;
}

/* ---- the daemon ------------------------------------------------------------------------ */

struct stats {
    bool done;
    int status;
    uint64_t commands, batches, replayed, poison;
};

static void on_stats(int status, const ProtobufCMessage *msg, void *arg)
{
    struct stats *s = arg;
    s->done = true;
    s->status = status;
    if (status != 0)
        return;
    const Vs__V1__StatsReply *r = (const Vs__V1__StatsReply *)msg;
    for (size_t i = 0; i < r->n_counters; i++) {
        const char *name = r->counters[i]->name;
        uint64_t v = r->counters[i]->value;
        if (strcmp(name, "commands") == 0)
            s->commands = v;
        else if (strcmp(name, "batches") == 0)
            s->batches = v;
        else if (strcmp(name, "replayed") == 0)
            s->replayed = v;
        else if (strcmp(name, "poison") == 0)
            s->poison = v;
    }
}

/* The daemon's counters; 0 when it answered. */
static int daemon_stats(struct env *e, struct stats *s, uint64_t timeout_ms)
{
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    memset(s, 0, sizeof(*s));
    if (vs_bus_request(e->bus, "vs.sys.stats.ledgerd", &req.base, &vs__v1__stats_reply__descriptor,
                       timeout_ms, on_stats, s) < 0)
        return -EIO;
    vs_bus_run_until(e->bus, &s->done, timeout_ms + 2000);
    return s->done && s->status == 0 ? 0 : -ETIMEDOUT;
}

/* VS_BENCH_LEDGERD names another vs-ledgerd (absolute path) to measure,
 * e.g. a candidate change against this build's; default: this build's. */
static const char *daemon_bin(void)
{
    const char *bin = getenv("VS_BENCH_LEDGERD");
    return bin != NULL && bin[0] == '/' ? bin : VS_LEDGERD_BIN;
}

static int spawn_daemon(struct env *e)
{
    const char *argv[] = {daemon_bin(), "-c", e->config, NULL};
    e->daemon = vs_proc_spawn(argv, NULL, e->log);
    return e->daemon > 0 ? 0 : -EIO;
}

static void stop_daemon(struct env *e)
{
    if (e->daemon > 0)
        vs_proc_stop(e->daemon, 15000);
    e->daemon = 0;
}

struct reply {
    bool done;
    int status;
    int code;
    int64_t balance;
    uint64_t pending;
    char reason[160];
};

static void on_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct reply *r = arg;
    r->done = true;
    r->status = status;
    if (status != 0)
        return;
    const Vs__V1__LedgerReply *l = (const Vs__V1__LedgerReply *)msg;
    r->code = l->status != NULL ? (int)l->status->code : -1;
    r->balance = l->balance;
    r->pending = l->pending;
    snprintf(r->reason, sizeof(r->reason), "%s",
             l->status != NULL && l->status->reason != NULL ? l->status->reason : "");
}

/* A write through "JetStream + reply"; 0 when the ledger said OK. */
static int command(struct env *e, Vs__V1__LedgerCommand *cmd, const char *what)
{
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(cmd->command_id.data, VS_ID_LEN, msg_id);
    struct reply r = {0};
    if (vs_js_request(e->bus, "vs.ledger.command", &cmd->base, msg_id,
                      &vs__v1__ledger_reply__descriptor, 10000, on_reply, &r) < 0)
        return -EIO;
    vs_bus_run_until(e->bus, &r.done, 13000);
    if (!r.done || r.status != 0 || r.code != VS__V1__STATUS_CODE__STATUS_OK) {
        fprintf(stderr, "bench_ledgerd: %s: %s\n", what,
                r.status != 0 ? strerror(-r.status) : r.reason);
        return -EIO;
    }
    return 0;
}

static int balance(struct env *e, const char *account, int64_t *bal, uint64_t *pending)
{
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    cmd.command_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_BALANCE;
    cmd.account = (char *)account;
    struct reply r = {0};
    if (vs_bus_request(e->bus, "vs.ledger.query", &cmd.base, &vs__v1__ledger_reply__descriptor, 5000,
                       on_reply, &r) < 0)
        return -EIO;
    vs_bus_run_until(e->bus, &r.done, 7000);
    if (!r.done || r.status != 0 || r.code != VS__V1__STATUS_CODE__STATUS_OK)
        return -EIO;
    *bal = r.balance;
    *pending = r.pending;
    return 0;
}

/* Wait until a freshly spawned daemon answers; seconds it took, or < 0. */
static double wait_up(struct env *e, double t0)
{
    double deadline = t0 + 20.0;
    struct stats s;
    while (now_s() < deadline) {
        if (daemon_stats(e, &s, 300) == 0)
            return now_s() - t0;
        if (!vs_proc_alive(e->daemon)) {
            e->daemon = 0;
            break;
        }
        sleep_ms(5);
    }
    fprintf(stderr, "bench_ledgerd: vs-ledgerd did not come up (see %s)\n", e->log);
    return -1;
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

/* One ledgerd phase; commands/s or 0. */
static double run_ledgerd(struct env *e, char *note, size_t nsize)
{
    if (publish(e, "vs.ledger.command", e->cfg.n) < 0) {
        snprintf(note, nsize, "publish failed");
        return 0;
    }
    double t0 = now_s();
    if (spawn_daemon(e) < 0) {
        snprintf(note, nsize, "cannot start vs-ledgerd");
        return 0;
    }
    double deadline = t0 + (double)e->cfg.deadline_ms / 1000.0;
    struct stats s = {0};
    double t1 = 0;
    while (now_s() < deadline) {
        if (daemon_stats(e, &s, 1000) == 0 && s.commands >= e->cfg.n) {
            t1 = now_s();
            break;
        }
        if (!vs_proc_alive(e->daemon)) {
            e->daemon = 0;
            fprintf(stderr, "bench_ledgerd: vs-ledgerd exited (see %s)\n", e->log);
            snprintf(note, nsize, "vs-ledgerd exited");
            return 0;
        }
        sleep_ms(1);
    }
    if (t1 == 0) {
        snprintf(note, nsize, "deadline: %" PRIu64 " of %" PRIu64 " applied", s.commands, e->cfg.n);
        stop_daemon(e);
        return 0;
    }
    /* Each hold applied once: the requester holds exactly their sum. */
    e->holds += e->cfg.n;
    int64_t bal = 0;
    uint64_t held = 0;
    int rc = balance(e, REQUESTER, &bal, &held);
    stop_daemon(e);
    if (rc < 0 || held != e->holds * BOUNTY || bal != (int64_t)FUNDS || s.poison != 0) {
        snprintf(note, nsize, "WRONG: held %" PRIu64 " (expected %" PRIu64 "), balance %" PRId64
                 ", poison %" PRIu64,
                 held, e->holds * BOUNTY, bal, s.poison);
        return 0;
    }
    snprintf(note, nsize,
             "%" PRIu64 " batches, %.0f commands per commit, %" PRIu64 " replayed; held amount verified",
             s.batches, s.batches > 0 ? (double)s.commands / (double)s.batches : 0.0, s.replayed);
    return (double)e->cfg.n / (t1 - t0);
}

/* ---- the raw consumer ------------------------------------------------------------------ */

struct raw {
    atomic_uint_fast64_t n;
    atomic_bool complete;
};

static void raw_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct raw *r = closure;
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
    atomic_fetch_add(&r->n, 1);
}

static void raw_on_complete(void *closure)
{
    struct raw *r = closure;
    atomic_store(&r->complete, true);
}

static double run_raw(struct env *e, unsigned round, char *note, size_t nsize)
{
    jsErrCode jerr = 0;
    if (js_PurgeStream(e->pub_js, RAW_STREAM, NULL, &jerr) != NATS_OK) {
        snprintf(note, nsize, "cannot purge %s (%d)", RAW_STREAM, (int)jerr);
        return 0;
    }
    if (publish(e, RAW_SUBJECT, e->cfg.n) < 0) {
        snprintf(note, nsize, "publish failed");
        return 0;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    struct raw r;
    atomic_init(&r.n, 0);
    atomic_init(&r.complete, false);
    char durable[64];
    snprintf(durable, sizeof(durable), "bench_raw_%u_%d", round, (int)getpid());
    double rate = 0;
    natsStatus st = natsConnection_ConnectTo(&nc, e->nats.url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = RAW_STREAM;
    so.ManualAck = true;
    so.Config.Durable = durable;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = 30LL * 1000000000LL;
    so.Config.MaxAckPending = MAX_ACK_PENDING;
    double t0 = now_s();
    if (st == NATS_OK)
        st = js_Subscribe(&sub, js, RAW_SUBJECT, raw_on_msg, &r, NULL, &so, &jerr);
    if (st == NATS_OK) {
        natsSubscription_SetOnCompleteCB(sub, raw_on_complete, &r);
        natsSubscription_SetPendingLimits(sub, 1024 * 1024, 512 * 1024 * 1024);
    }
    if (st != NATS_OK) {
        snprintf(note, nsize, "raw consumer: %s (%d)", natsStatus_GetText(st), (int)jerr);
        goto out;
    }
    double deadline = t0 + (double)e->cfg.deadline_ms / 1000.0;
    while (atomic_load(&r.n) < e->cfg.n && now_s() < deadline)
        sleep_ms(1);
    bool all = atomic_load(&r.n) >= e->cfg.n;
    bool flushed = all && natsConnection_FlushTimeout(nc, 5000) == NATS_OK;
    double t1 = now_s();
    if (all && flushed)
        rate = (double)e->cfg.n / (t1 - t0);
    else
        snprintf(note, nsize, "deadline: %" PRIu64 " of %" PRIu64 " received",
                 (uint64_t)atomic_load(&r.n), e->cfg.n);
out:
    if (js != NULL) {
        js_DeleteConsumer(js, RAW_STREAM, durable, NULL, &jerr);
        jsCtx_Destroy(js);
    }
    /* Close first: cnats 3.4.1 must not deliver into a destroyed
     * subscription (see tools/bench/bus/bench_util.c). */
    if (nc != NULL)
        natsConnection_Close(nc);
    if (sub != NULL) {
        for (int i = 0; i < 5000 && !atomic_load(&r.complete); i++)
            sleep_ms(1);
        natsSubscription_Destroy(sub);
    }
    natsConnection_Destroy(nc);
    return rate;
}

/* ---- setup ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_ledgerd [--n N] [--rounds R] [--dir PARENT] [--deadline S] [--batch N] "
            "[--quick]\n"
            "  --n N          commands per phase (100000)\n"
            "  --rounds R     alternating ledgerd/raw rounds, at most %d (1)\n"
            "  --dir PARENT   where the scratch store lives (/tmp): its file system decides\n"
            "                 what an fsync costs\n"
            "  --deadline S   bound of each phase in seconds (120)\n"
            "  --batch N      ledgerd.batch, messages per write transaction (daemon default)\n"
            "  --quick        5000 commands, one round (the ctest smoke run)\n",
            MAX_ROUNDS);
}

static int setup_env(struct env *e)
{
    snprintf(e->dir, sizeof(e->dir), "%s/vs-bench-ledgerd-XXXXXX", e->cfg.parent);
    if (mkdtemp(e->dir) == NULL) {
        fprintf(stderr, "bench_ledgerd: mkdtemp in %s: %s\n", e->cfg.parent, strerror(errno));
        e->dir[0] = '\0';
        return -EIO;
    }
    if (vs_natsd_start(&e->nats) < 0) {
        fprintf(stderr, "bench_ledgerd: cannot start nats-server\n");
        return -EIO;
    }
    if (uv_loop_init(&e->loop) != 0)
        return -EIO;
    e->loop_init = true;
    if (vs_natsd_bus(&e->nats, &e->loop, 0, &e->bus) < 0) {
        fprintf(stderr, "bench_ledgerd: cannot connect the bus\n");
        return -EIO;
    }
    vs_signkey *gov = NULL;
    if (vs_signkey_new(&gov) < 0)
        return -EIO;
    char hex[2 * VS_SIGN_PUBLICKEY_LEN + 1];
    vs_hex(vs_signkey_public(gov), VS_SIGN_PUBLICKEY_LEN, hex);
    snprintf(e->config, sizeof(e->config), "%s/ledgerd.yaml", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/ledgerd.log", e->dir);
    FILE *f = fopen(e->config, "w");
    if (f == NULL) {
        vs_signkey_free(gov);
        return -EIO;
    }
    fprintf(f,
            "nats:\n  url: %s\nlog:\n  level: warn\nshutdown_timeout: 10s\n"
            "ledgerd:\n  store: %s/store\n  dispute_window: 0s\n  governance_keys:\n    - %s\n",
            e->nats.url, e->dir, hex);
    if (e->cfg.batch > 0)
        fprintf(f, "  batch: %" PRIu64 "\n", e->cfg.batch);
    fclose(f);

    /* Set-up run: accounts and funds (not timed, except the start-up of an
     * idle daemon, printed for context). */
    double t0 = now_s();
    int rc = spawn_daemon(e);
    if (rc == 0)
        e->startup_s = wait_up(e, t0);
    if (rc < 0 || e->startup_s < 0 || fund(e, gov) < 0) {
        vs_signkey_free(gov);
        return -EIO;
    }
    vs_signkey_free(gov);
    stop_daemon(e);

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = e;
    if (natsConnection_ConnectTo(&e->pub_nc, e->nats.url) != NATS_OK ||
        natsConnection_JetStream(&e->pub_js, e->pub_nc, &jo) != NATS_OK) {
        fprintf(stderr, "bench_ledgerd: cannot connect the publisher\n");
        return -EIO;
    }
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
    if (js_AddStream(&si, e->pub_js, &sc, NULL, &jerr) != NATS_OK) {
        fprintf(stderr, "bench_ledgerd: cannot create %s (%d)\n", RAW_STREAM, (int)jerr);
        return -EIO;
    }
    jsStreamInfo_Destroy(si);
    return 0;
}

static void teardown_env(struct env *e)
{
    stop_daemon(e);
    jsCtx_Destroy(e->pub_js);
    if (e->pub_nc != NULL) {
        natsConnection_Close(e->pub_nc);
        natsConnection_Destroy(e->pub_nc);
    }
    vs_bus_free(e->bus);
    if (e->loop_init) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        uv_loop_close(&e->loop);
    }
    vs_natsd_destroy(&e->nats);
    if (e->dir[0] != '\0')
        vs_rmtree(e->dir);
}

static const char *fs_name(const char *path)
{
    struct statfs s;
    if (statfs(path, &s) != 0)
        return "unknown";
    switch ((unsigned long)s.f_type) {
    case 0x01021994UL: return "tmpfs (fsync is free: not representative of a disk)";
    case 0xEF53UL: return "ext4";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794c7630UL: return "overlayfs";
    default: return "other";
    }
}

static double median(double *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"n", required_argument, NULL, 'n'},     {"rounds", required_argument, NULL, 'r'},
        {"dir", required_argument, NULL, 'd'},   {"deadline", required_argument, NULL, 't'},
        {"quick", no_argument, NULL, 'q'},       {"help", no_argument, NULL, 'h'},
        {"batch", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0},
    };
    struct env e = {.cfg = {.n = 100000, .rounds = 1, .deadline_ms = 120000, .parent = "/tmp"}};
    atomic_init(&e.pub_errors, 0);
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n': e.cfg.n = strtoull(optarg, NULL, 10); break;
        case 'r': e.cfg.rounds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': e.cfg.parent = optarg; break;
        case 'b': e.cfg.batch = strtoull(optarg, NULL, 10); break;
        case 't': e.cfg.deadline_ms = strtoull(optarg, NULL, 10) * 1000; break;
        case 'q':
            e.cfg.n = 5000;
            e.cfg.rounds = 1;
            e.cfg.deadline_ms = 30000;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (e.cfg.n == 0 || e.cfg.n * (uint64_t)e.cfg.rounds * BOUNTY > FUNDS || e.cfg.rounds == 0 ||
        e.cfg.rounds > MAX_ROUNDS || e.cfg.deadline_ms == 0) {
        usage(stderr);
        return 2;
    }
    if (vs_crypto_init() < 0)
        return 1;
    int rc = setup_env(&e);
    double ledgerd[MAX_ROUNDS], raw[MAX_ROUNDS];
    unsigned got = 0;
    if (rc == 0) {
        printf("bench_ledgerd: %" PRIu64 " commands per phase, %u round(s), store on %s (%s)%s; "
               "an idle vs-ledgerd starts in %.0f ms (included in its phase)\n",
               e.cfg.n, e.cfg.rounds, e.dir, fs_name(e.dir),
               e.cfg.batch > 0 ? ", ledgerd.batch set" : "", e.startup_s * 1000);
        if (strcmp(daemon_bin(), VS_LEDGERD_BIN) != 0)
            printf("  daemon: %s (VS_BENCH_LEDGERD)\n", daemon_bin());
        for (unsigned i = 0; i < e.cfg.rounds; i++) {
            char nl[256] = "", nr[128] = "";
            if (i % 2 == 0) {
                ledgerd[i] = run_ledgerd(&e, nl, sizeof(nl));
                raw[i] = run_raw(&e, i, nr, sizeof(nr));
            } else {
                raw[i] = run_raw(&e, i, nr, sizeof(nr));
                ledgerd[i] = run_ledgerd(&e, nl, sizeof(nl));
            }
            printf("  round %u: ledgerd %.0f commands/s (%s)   raw %.0f msg/s%s%s\n", i + 1,
                   ledgerd[i], nl, raw[i], nr[0] ? " " : "", nr);
            fflush(stdout);
            if (ledgerd[i] > 0 && raw[i] > 0)
                got++;
        }
    }
    int status = 1;
    if (rc == 0 && got == e.cfg.rounds) {
        double l = median(ledgerd, got), r = median(raw, got);
        printf("ledgerd end to end: %.0f commands/s   raw JetStream consume+ack: %.0f msg/s   "
               "ratio %.2f (target >= 0.5)\n",
               l, r, l / r);
        status = 0;
    } else {
        printf("bench_ledgerd: incomplete run (see the notes above)\n");
    }
    fflush(stdout);
    teardown_env(&e);
    return status;
}
