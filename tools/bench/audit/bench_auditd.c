/*
 * bench_auditd.c - end-to-end throughput of the audit daemon beside the
 * JetStream work it cannot avoid, in the same run against the same
 * nats-server:
 *   auditd - vs-auditd (a real process, durable store in a scratch
 *            directory) consumes AUDIT; N events (~200-byte AuditEvents)
 *            are published as fast as cnats' async publisher goes, timed
 *            from the first publish until the log's size (vs.auditlog.prove
 *            HEAD) has grown by N: consume, group commit with fsync, hash
 *            chain + Merkle nodes + indexes, ack.
 *   raw    - a plain cnats durable push consumer on AUDIT (explicit acks,
 *            MaxAckPending 1024 like auditd's), the same N-event publish,
 *            timed until the last one is received and acked (flush).
 * The ratio auditd/raw says what the audit log costs on top of merely
 * consuming the stream (target >= 0.5). The daemon is stopped during the
 * raw phase (its consumer would otherwise take the same events); with
 * --rounds the phases alternate which goes first. Start-up and catching up
 * on the other phase's events are never timed. Tests never judge timings;
 * the ctest bench.auditd_smoke runs --quick to prove this runs.
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
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/sys.pb-c.h"

#define MAX_ROUNDS 9
#define MAX_ACK_PENDING 1024
#define SUBJECT "vs.audit.bench.info"

struct cfg {
    uint64_t n;
    unsigned rounds;
    uint64_t deadline_ms;
    const char *parent;
    uint64_t batch;        /* auditd.batch; 0: the daemon's default */
};

struct env {
    struct cfg cfg;
    struct vs_natsd nats;
    uv_loop_t loop;
    vs_bus *bus;
    natsConnection *pub_nc;
    jsCtx *pub_js;
    char dir[256], config[300], log[300];
    pid_t daemon;
    uint64_t next_id;       /* unique events across phases */
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

/* ---- publishing -------------------------------------------------------------------- */

/* A realistic serialized AuditEvent (~200 bytes) with a unique id. */
static size_t make_event(uint64_t i, uint8_t *buf, size_t size)
{
    Vs__V1__AuditEvent ev = VS__V1__AUDIT_EVENT__INIT;
    uint8_t id[VS_ID_LEN], task[VS_ID_LEN];
    vs_id_new(id);
    memcpy(id + 8, &i, sizeof(i));
    for (int b = 0; b < VS_ID_LEN; b++)
        task[b] = (uint8_t)((i / 7) >> (8 * (b % 8))) ^ (uint8_t)(b * 3);
    char agent[32], detail[64];
    snprintf(agent, sizeof(agent), "agent-%05u", (unsigned)(i % 1000));
    snprintf(detail, sizeof(detail), "sha256:%016" PRIx64 "%016" PRIx64, i * 2654435761u, ~i);
    Vs__V1__KeyValue kv1 = VS__V1__KEY_VALUE__INIT, kv2 = VS__V1__KEY_VALUE__INIT;
    kv1.key = "tool";
    kv1.value = "web_search";
    kv2.key = "digest";
    kv2.value = detail;
    Vs__V1__KeyValue *kvs[] = {&kv1, &kv2};
    ev.event_id = (ProtobufCBinaryData){VS_ID_LEN, id};
    ev.time_ns = vs_now_ns();
    ev.component = "sandboxd";
    ev.category = "bench";
    ev.severity = VS__V1__SEVERITY__SEVERITY_INFO;
    ev.agent = agent;
    ev.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    ev.event = "agent_command";
    ev.n_details = 2;
    ev.details = kvs;
    size_t n = vs__v1__audit_event__get_packed_size(&ev);
    if (n > size)
        return 0;
    return vs__v1__audit_event__pack(&ev, buf);
}

/* Publish n events with cnats' asynchronous JetStream publisher. */
static int publish(struct env *e, uint64_t n)
{
    uint8_t buf[512];
    double deadline = now_s() + (double)e->cfg.deadline_ms / 1000.0;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = make_event(e->next_id++, buf, sizeof(buf));
        natsStatus st;
        do {
            st = js_PublishAsync(e->pub_js, SUBJECT, buf, (int)len, NULL);
        } while (st == NATS_TIMEOUT && now_s() < deadline);
        if (st != NATS_OK) {
            fprintf(stderr, "bench_auditd: publish: %s\n", natsStatus_GetText(st));
            return -EIO;
        }
    }
    return 0;
}

static int publish_complete(struct env *e)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = (int64_t)e->cfg.deadline_ms;
    return js_PublishAsyncComplete(e->pub_js, &po) == NATS_OK ? 0 : -ETIMEDOUT;
}

/* ---- the daemon ------------------------------------------------------------------------ */

struct reply {
    bool done;
    int status;
    uint64_t value;
    const char *counter;
};

static void on_head(int status, const ProtobufCMessage *msg, void *arg)
{
    struct reply *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0) {
        const Vs__V1__AuditProofReply *p = (const Vs__V1__AuditProofReply *)msg;
        r->status = p->status != NULL && p->status->code == VS__V1__STATUS_CODE__STATUS_OK ? 0 : -EIO;
        r->value = p->tree_size;
    }
}

/* The log's size, or -1 when auditd does not answer. */
static int64_t log_size(struct env *e)
{
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD;
    struct reply r = {0};
    if (vs_bus_request(e->bus, "vs.auditlog.prove", &req.base,
                       &vs__v1__audit_proof_reply__descriptor, 1000, on_head, &r) < 0)
        return -1;
    vs_bus_run_until(e->bus, &r.done, 2000);
    return r.done && r.status == 0 ? (int64_t)r.value : -1;
}

static void on_stats(int status, const ProtobufCMessage *msg, void *arg)
{
    struct reply *r = arg;
    r->done = true;
    r->status = status;
    if (status != 0)
        return;
    const Vs__V1__StatsReply *s = (const Vs__V1__StatsReply *)msg;
    for (size_t i = 0; i < s->n_counters; i++)
        if (strcmp(s->counters[i]->name, r->counter) == 0)
            r->value = s->counters[i]->value;
}

static uint64_t daemon_counter(struct env *e, const char *name)
{
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    struct reply r = {.counter = name};
    if (vs_bus_request(e->bus, "vs.sys.stats.auditd", &req.base, &vs__v1__stats_reply__descriptor,
                       1000, on_stats, &r) < 0)
        return 0;
    vs_bus_run_until(e->bus, &r.done, 2000);
    return r.value;
}

/* Messages in the AUDIT stream (its last sequence). */
static void on_info(int status, vs_msg *m, void *arg)
{
    struct reply *r = arg;
    r->done = true;
    r->status = status;
    if (status != 0)
        return;
    size_t len;
    const char *data = (const char *)vs_msg_data(m, &len);
    const char *p = memmem(data, len, "\"last_seq\":", 11);
    r->value = p != NULL ? strtoull(p + 11, NULL, 10) : 0;
}

static uint64_t stream_last_seq(struct env *e)
{
    struct reply r = {0};
    if (vs_bus_request_raw(e->bus, "$JS.API.STREAM.INFO.AUDIT", NULL, 0, NULL, 0, 2000, on_info,
                           &r) < 0)
        return 0;
    vs_bus_run_until(e->bus, &r.done, 3000);
    return r.value;
}

/* Start vs-auditd and wait until it has caught up with the stream. */
static int start_daemon(struct env *e)
{
    const char *argv[] = {VS_AUDITD_BIN, "-c", e->config, NULL};
    e->daemon = vs_proc_spawn(argv, NULL, e->log);
    if (e->daemon < 0)
        return -EIO;
    double deadline = now_s() + (double)e->cfg.deadline_ms / 1000.0;
    while (now_s() < deadline) {
        int64_t size = log_size(e);
        /* The stream's end includes the daemon's own "started" event. */
        if (size >= 0 && (uint64_t)size == stream_last_seq(e) && size > 0)
            return 0;
        if (!vs_proc_alive(e->daemon))
            break;
        sleep_ms(20);
    }
    fprintf(stderr, "bench_auditd: vs-auditd did not come up or catch up (see %s)\n", e->log);
    return -ETIMEDOUT;
}

static void stop_daemon(struct env *e)
{
    if (e->daemon > 0)
        vs_proc_stop(e->daemon, 10000);
    e->daemon = 0;
}

/* One auditd phase; events/s or 0. */
static double run_auditd(struct env *e, char *note, size_t nsize)
{
    if (start_daemon(e) < 0) {
        snprintf(note, nsize, "vs-auditd did not start");
        return 0;
    }
    uint64_t batches0 = daemon_counter(e, "batches");
    int64_t base = log_size(e);
    double t0 = now_s();
    if (publish(e, e->cfg.n) < 0) {
        stop_daemon(e);
        return 0;
    }
    double deadline = t0 + (double)e->cfg.deadline_ms / 1000.0;
    int64_t size = base;
    while (now_s() < deadline && size < base + (int64_t)e->cfg.n) {
        size = log_size(e);
        if (size < base + (int64_t)e->cfg.n)
            sleep_ms(1);
    }
    double t1 = now_s();
    publish_complete(e);
    uint64_t batches = daemon_counter(e, "batches") - batches0;
    stop_daemon(e);
    if (size < base + (int64_t)e->cfg.n) {
        snprintf(note, nsize, "deadline: %" PRId64 " of %" PRIu64 " stored", size - base, e->cfg.n);
        return 0;
    }
    snprintf(note, nsize, "%.0f events per commit", batches > 0 ? (double)e->cfg.n / (double)batches : 0.0);
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
    so.Stream = "AUDIT";
    so.ManualAck = true;
    so.Config.Durable = durable;
    so.Config.DeliverPolicy = js_DeliverNew;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = 30LL * 1000000000LL;
    so.Config.MaxAckPending = MAX_ACK_PENDING;
    jsErrCode jerr = 0;
    if (st == NATS_OK)
        st = js_Subscribe(&sub, js, "vs.audit.>", raw_on_msg, &r, NULL, &so, &jerr);
    if (st == NATS_OK) {
        natsSubscription_SetOnCompleteCB(sub, raw_on_complete, &r);
        natsSubscription_SetPendingLimits(sub, 1024 * 1024, 512 * 1024 * 1024);
    }
    if (st != NATS_OK) {
        snprintf(note, nsize, "raw consumer: %s (%d)", natsStatus_GetText(st), (int)jerr);
        goto out;
    }
    double t0 = now_s();
    if (publish(e, e->cfg.n) < 0)
        goto out;
    double deadline = t0 + (double)e->cfg.deadline_ms / 1000.0;
    while (atomic_load(&r.n) < e->cfg.n && now_s() < deadline)
        sleep_ms(1);
    bool all = atomic_load(&r.n) >= e->cfg.n;
    bool flushed = all && natsConnection_FlushTimeout(nc, 5000) == NATS_OK;
    double t1 = now_s();
    publish_complete(e);
    if (all && flushed)
        rate = (double)e->cfg.n / (t1 - t0);
    else
        snprintf(note, nsize, "deadline: %" PRIu64 " of %" PRIu64 " received",
                 (uint64_t)atomic_load(&r.n), e->cfg.n);
out:
    if (js != NULL) {
        js_DeleteConsumer(js, "AUDIT", durable, NULL, &jerr);
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
            "usage: bench_auditd [--n N] [--rounds R] [--dir PARENT] [--deadline S] [--quick]\n"
            "  --n N          events per phase (100000)\n"
            "  --rounds R     alternating auditd/raw rounds, at most %d (1)\n"
            "  --dir PARENT   where the scratch store lives (/tmp): its file system decides\n"
            "                 what an fsync costs\n"
            "  --deadline S   bound of each phase in seconds (120)\n"
            "  --batch N      auditd.batch, events per store transaction (daemon default)\n"
            "  --quick        5000 events, one round (the ctest smoke run)\n",
            MAX_ROUNDS);
}

static int setup_env(struct env *e)
{
    snprintf(e->dir, sizeof(e->dir), "%s/vs-bench-auditd-XXXXXX", e->cfg.parent);
    if (mkdtemp(e->dir) == NULL) {
        fprintf(stderr, "bench_auditd: mkdtemp in %s: %s\n", e->cfg.parent, strerror(errno));
        return -errno;
    }
    if (vs_natsd_start(&e->nats) < 0) {
        fprintf(stderr, "bench_auditd: cannot start nats-server\n");
        return -EIO;
    }
    if (uv_loop_init(&e->loop) != 0 || vs_natsd_bus(&e->nats, &e->loop, 0, &e->bus) < 0) {
        fprintf(stderr, "bench_auditd: cannot connect the bus\n");
        return -EIO;
    }
    char key[300];
    snprintf(key, sizeof(key), "%s/audit.key", e->dir);
    vs_signkey *k = NULL;
    if (vs_signkey_new(&k) < 0 || vs_signkey_save(k, key) < 0) {
        vs_signkey_free(k);
        return -EIO;
    }
    vs_signkey_free(k);
    snprintf(e->config, sizeof(e->config), "%s/auditd.yaml", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/auditd.log", e->dir);
    FILE *f = fopen(e->config, "w");
    if (f == NULL)
        return -errno;
    fprintf(f, "nats:\n  url: %s\nlog:\n  level: warn\nauditd:\n  store: %s/store\n  key: %s\n",
            e->nats.url, e->dir, key);
    if (e->cfg.batch > 0)
        fprintf(f, "  batch: %" PRIu64 "\n", e->cfg.batch);
    fclose(f);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_ConnectTo(&e->pub_nc, e->nats.url) != NATS_OK ||
        natsConnection_JetStream(&e->pub_js, e->pub_nc, &jo) != NATS_OK) {
        fprintf(stderr, "bench_auditd: cannot connect the publisher\n");
        return -EIO;
    }
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
    if (e->bus != NULL || e->loop.data != NULL)
        uv_loop_close(&e->loop);
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
        {"batch", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    struct env e = {.cfg = {.n = 100000, .rounds = 1, .deadline_ms = 120000, .parent = "/tmp"}};
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
    if (e.cfg.n == 0 || e.cfg.rounds == 0 || e.cfg.rounds > MAX_ROUNDS || e.cfg.deadline_ms == 0) {
        usage(stderr);
        return 2;
    }
    if (vs_crypto_init() < 0)
        return 1;
    int rc = setup_env(&e);
    double auditd[MAX_ROUNDS], raw[MAX_ROUNDS];
    unsigned got = 0;
    if (rc == 0) {
        printf("bench_auditd: %" PRIu64 " events per phase, %u round(s), store on %s (%s)%s\n",
               e.cfg.n, e.cfg.rounds, e.dir, fs_name(e.dir),
               e.cfg.batch > 0 ? ", auditd.batch set" : "");
        for (unsigned i = 0; i < e.cfg.rounds; i++) {
            char na[128] = "", nr[128] = "";
            if (i % 2 == 0) {
                auditd[i] = run_auditd(&e, na, sizeof(na));
                raw[i] = run_raw(&e, i, nr, sizeof(nr));
            } else {
                raw[i] = run_raw(&e, i, nr, sizeof(nr));
                auditd[i] = run_auditd(&e, na, sizeof(na));
            }
            printf("  round %u: auditd %.0f events/s (%s)   raw %.0f events/s %s\n", i + 1,
                   auditd[i], na, raw[i], nr);
            if (auditd[i] > 0 && raw[i] > 0)
                got++;
        }
    }
    int status = 1;
    if (got == e.cfg.rounds) {
        double a = median(auditd, got), r = median(raw, got);
        printf("auditd end to end: %.0f events/s   raw JetStream consume+ack: %.0f events/s   "
               "ratio %.2f (target >= 0.5)\n",
               a, r, a / r);
        status = 0;
    } else {
        printf("bench_auditd: incomplete run (see the notes above)\n");
    }
    fflush(stdout);
    teardown_env(&e);
    return status;
}
