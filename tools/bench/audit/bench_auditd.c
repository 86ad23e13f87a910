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
 * the ctest bench.auditd_smoke runs --quick to prove this runs. The frame
 * (options, nats-server, publisher, the raw consumer, the rounds) is
 * tools/bench/common/bench_daemon.c, shared with bench_ledgerd; what is
 * here is the audit log's own part.
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
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"

#define MAX_ACK_PENDING 1024
#define SUBJECT "vs.audit.bench.info"

struct env {
    struct bench_daemon b;
    uint64_t next_id;       /* unique events across phases */
};

/* ---- publishing -------------------------------------------------------------------- */

/* A realistic serialized AuditEvent (~200 bytes) with a unique id. */
static size_t make_event(void *arg, uint8_t *buf, size_t size, char *msg_id)
{
    (void)msg_id; /* none: the audit log takes every event */
    struct env *e = arg;
    uint64_t i = e->next_id++;
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

/* ---- the daemon ------------------------------------------------------------------------ */

/* The log's size, or -1 when auditd does not answer. */
static int64_t log_size(struct env *e)
{
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD;
    Vs__V1__AuditProofReply *r = (Vs__V1__AuditProofReply *)vs_test_request(
        e->b.bus, "vs.auditlog.prove", &req.base, &vs__v1__audit_proof_reply__descriptor, 1000,
        NULL);
    int64_t size = -1;
    if (r != NULL && r->status != NULL && r->status->code == VS__V1__STATUS_CODE__STATUS_OK)
        size = (int64_t)r->tree_size;
    if (r != NULL)
        vs__v1__audit_proof_reply__free_unpacked(r, NULL);
    return size;
}

static uint64_t batches(struct env *e)
{
    static const char *const names[] = {"batches"};
    uint64_t v = 0;
    vs_test_counters(e->b.bus, "auditd", names, &v, 1, 1000);
    return v;
}

/* Ready: it answers, and its log has caught up with the stream (whose end
 * includes the daemon's own "started" event). */
static bool caught_up(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct env *e = arg;
    int64_t size = log_size(e);
    uint64_t last = 0;
    return size > 0 && vs_js_stream_last_seq_sync(e->b.bus, "AUDIT", &last) == 0 &&
           (uint64_t)size == last;
}

/* Start vs-auditd and wait until it has caught up with the stream. */
static int start_daemon(struct env *e)
{
    struct bench_daemon *b = &e->b;
    if (vs_daemon_spawn(&b->daemon) < 0 ||
        vs_daemon_wait(&b->daemon, NULL, caught_up, e, (int)b->cfg.deadline_ms, 20) < 0) {
        fprintf(stderr, "bench_auditd: vs-auditd did not come up or catch up (see %s)\n",
                b->daemon.log);
        return -ETIMEDOUT;
    }
    return 0;
}

/* One auditd phase; events/s or 0. */
static double run_auditd(void *arg, char *note, size_t nsize)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    if (start_daemon(e) < 0) {
        snprintf(note, nsize, "vs-auditd did not start");
        bench_daemon_stop(b);
        return 0;
    }
    uint64_t batches0 = batches(e);
    int64_t base = log_size(e), want = base + (int64_t)b->cfg.n;
    double t0 = bench_now_s();
    if (bench_publish(b, SUBJECT, b->cfg.n, make_event, e) < 0) {
        bench_daemon_stop(b);
        return 0;
    }
    double deadline = t0 + (double)b->cfg.deadline_ms / 1000.0;
    int64_t size = base;
    while (bench_now_s() < deadline && size < want) {
        size = log_size(e);
        if (size < want)
            bench_sleep_ms(1);
    }
    double t1 = bench_now_s();
    bench_publish_complete(b);
    uint64_t n_batches = batches(e) - batches0;
    bench_daemon_stop(b);
    if (size < want) {
        snprintf(note, nsize, "deadline: %" PRId64 " of %" PRIu64 " stored", size - base, b->cfg.n);
        return 0;
    }
    snprintf(note, nsize, "%.0f events per commit",
             n_batches > 0 ? (double)b->cfg.n / (double)n_batches : 0.0);
    return (double)b->cfg.n / (t1 - t0);
}

/* ---- the raw consumer ------------------------------------------------------------------ */

static double run_raw(void *arg, unsigned round, char *note, size_t nsize)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    struct bench_raw r;
    double t0 = 0, t1 = 0;
    if (bench_raw_start(b, &r, "AUDIT", "vs.audit.>", true, MAX_ACK_PENDING, round, note,
                        nsize) == 0) {
        t0 = bench_now_s();
        if (bench_publish(b, SUBJECT, b->cfg.n, make_event, e) == 0)
            t1 = bench_raw_wait(b, &r, b->cfg.n, t0, note, nsize);
        bench_publish_complete(b);
    }
    bench_raw_stop(&r);
    return t1 > 0 ? (double)b->cfg.n / (t1 - t0) : 0;
}

/* ---- setup ------------------------------------------------------------------------------ */

static int setup(void *arg)
{
    struct env *e = arg;
    struct bench_daemon *b = &e->b;
    if (bench_daemon_setup(b, VS_AUDITD_BIN) < 0)
        return -EIO;
    char key[300], extra[340];
    snprintf(key, sizeof(key), "%s/audit.key", b->dir);
    vs_signkey *k = NULL;
    int rc = vs_signkey_new(&k) < 0 || vs_signkey_save(k, key) < 0 ? -EIO : 0;
    vs_signkey_free(k);
    snprintf(extra, sizeof(extra), "  key: %s\n", key);
    return rc == 0 ? bench_daemon_config(b, extra) : rc;
}

int main(int argc, char **argv)
{
    struct env e = {.b = {.prog = "bench_auditd", .component = "auditd"}};
    int rc = bench_daemon_args(&e.b, argc, argv, "events", "events per store transaction");
    if (rc >= 0)
        return rc;
    const struct bench_phases phases = {.unit = "events", .raw_unit = "events", .setup = setup,
                                        .daemon = run_auditd, .raw = run_raw, .arg = &e};
    return bench_daemon_main(&e.b, &phases);
}
