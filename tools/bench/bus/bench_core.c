/*
 * bench_core.c - core NATS publish/subscribe throughput, raw cnats against
 * the bus.
 *
 * What is measured: N messages published by one connection and received by
 * another in the same process, timed from the first publish to the last
 * receipt. Two payload kinds:
 *   raw   - 128 opaque bytes; raw cnats publishes with natsConnection_Publish,
 *           the bus with vs_bus_publish_raw to a raw (desc NULL) subscription.
 *   typed - a vs.v1.AgentCommand heartbeat on vs.agent.<tag>.heartbeat; the
 *           bus packs it (vs_bus_publish, with its subject/type check) and
 *           unpacks it (typed vs_bus_subscribe); the raw baseline does the
 *           same protobuf pack and unpack by hand, so the ratio is the bus's
 *           own cost, not protobuf's.
 *
 * Why it is shaped this way:
 * - Raw cnats runs as its documentation intends with no event loop: the
 *   main thread publishes, cnats' own reader/flusher/delivery threads do the
 *   rest, and the subscriber callback only counts (an atomic increment).
 * - The bus runs as a daemon does: both buses on one uv loop (the libuv
 *   adapter allows one loop per thread), everything on that thread.
 * - Bursts are bounded so nothing is dropped as a slow consumer: the
 *   publisher sends batches of 10k and, once more than a window (one batch)
 *   is unreceived, waits - raw on a condition variable, the bus by running
 *   the loop - until the receiver catches up. Pending limits are raised to
 *   the bus's own (1M messages) on the raw subscription too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bench.h"
#include "vs/v1/agent.pb-c.h"

#define SUB_PENDING_MSGS (1024 * 1024)
#define SUB_PENDING_BYTES (512 * 1024 * 1024)

static void subjects(const struct bench_cfg *cfg, bool typed, char *out, size_t size)
{
    if (typed)
        snprintf(out, size, "vs.agent.%s.heartbeat", cfg->tag);
    else
        snprintf(out, size, "bench.%s.core", cfg->tag);
}

static void make_heartbeat(Vs__V1__AgentCommand *cmd, Vs__V1__Heartbeat *hb, uint64_t seq)
{
    vs__v1__agent_command__init(cmd);
    vs__v1__heartbeat__init(hb);
    cmd->type = VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT;
    cmd->agent = (char *)"bench-agent";
    cmd->body_case = VS__V1__AGENT_COMMAND__BODY_HEARTBEAT;
    cmd->sent_at_ns = seq;
    hb->sequence = seq;
    cmd->heartbeat = hb;
}

static void finish(struct rate_result *out, uint64_t t0, uint64_t t_last, uint64_t got,
                   bool complete)
{
    out->got = got;
    out->complete = complete;
    uint64_t end = complete && t_last > t0 ? t_last : bench_now_ns();
    out->secs = (double)(end - t0) / 1e9;
    if (!complete)
        bench_note(out->note, sizeof(out->note), "deadline: received %llu of %llu",
                   (unsigned long long)got, (unsigned long long)out->want);
}

/* ---- raw cnats ----------------------------------------------------------- */

struct raw_sub_ctx {
    struct bench_counter ctr;
    bool typed;
    atomic_uint_fast64_t bad;
};

static void raw_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct raw_sub_ctx *x = closure;
    if (x->typed) {
        Vs__V1__AgentCommand *cmd = vs__v1__agent_command__unpack(
            NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
        if (cmd == NULL)
            atomic_fetch_add(&x->bad, 1);
        else
            vs__v1__agent_command__free_unpacked(cmd, NULL);
    }
    natsMsg_Destroy(msg);
    counter_hit(&x->ctr);
}

void bench_core_raw(const struct bench_cfg *cfg, bool typed, struct rate_result *out)
{
    memset(out, 0, sizeof(*out));
    out->want = cfg->n;
    char subject[128];
    subjects(cfg, typed, subject, sizeof(subject));
    uint8_t payload[BENCH_PAYLOAD];
    memset(payload, 'x', sizeof(payload));

    natsConnection *pc = NULL, *sc = NULL;
    natsSubscription *sub = NULL;
    struct raw_sub_ctx x = {.typed = typed};
    struct raw_sub_done sub_done = {0};
    atomic_init(&x.bad, 0);
    counter_init(&x.ctr, cfg->n);

    natsStatus st = natsConnection_ConnectTo(&pc, cfg->url);
    if (st == NATS_OK)
        st = natsConnection_ConnectTo(&sc, cfg->url);
    if (st == NATS_OK)
        st = natsConnection_Subscribe(&sub, sc, subject, raw_on_msg, &x);
    if (st == NATS_OK) {
        raw_sub_watch(sub, &sub_done);
        st = natsSubscription_SetPendingLimits(sub, SUB_PENDING_MSGS, SUB_PENDING_BYTES);
    }
    if (st == NATS_OK)
        st = natsConnection_FlushTimeout(sc, 5000); /* the server has the subscription */
    if (st != NATS_OK) {
        bench_note(out->note, sizeof(out->note), "setup: %s", natsStatus_GetText(st));
        goto done;
    }
    out->ran = true;

    uint64_t t0 = bench_now_ns();
    uint64_t deadline = t0 + cfg->deadline_ms * 1000000u;
    uint64_t sent = 0;
    bool ok = true;
    while (ok && sent < cfg->n) {
        uint64_t b = cfg->n - sent < cfg->batch ? cfg->n - sent : cfg->batch;
        for (uint64_t i = 0; i < b; i++) {
            if (typed) {
                Vs__V1__AgentCommand cmd;
                Vs__V1__Heartbeat hb;
                make_heartbeat(&cmd, &hb, sent + i);
                uint8_t buf[BENCH_PAYLOAD];
                size_t len = vs__v1__agent_command__pack(&cmd, buf);
                st = natsConnection_Publish(pc, subject, buf, (int)len);
            } else {
                st = natsConnection_Publish(pc, subject, payload, (int)sizeof(payload));
            }
            if (st != NATS_OK)
                break;
        }
        if (st == NATS_OK) {
            uint64_t left = bench_ms_left(deadline);
            st = left > 0 ? natsConnection_FlushTimeout(pc, (int64_t)left) : NATS_TIMEOUT;
        }
        if (st != NATS_OK) {
            if (st != NATS_TIMEOUT) /* a timeout is the deadline, noted below */
                bench_note(out->note, sizeof(out->note), "publish: %s", natsStatus_GetText(st));
            ok = false;
            break;
        }
        sent += b;
        if (sent > cfg->window && !counter_wait(&x.ctr, sent - cfg->window, deadline))
            ok = false;
    }
    bool complete = ok && counter_wait(&x.ctr, cfg->n, deadline);
    finish(out, t0, atomic_load(&x.ctr.t_last_ns), atomic_load(&x.ctr.n), complete);

    int64_t dropped = 0;
    if (natsSubscription_GetDropped(sub, &dropped) == NATS_OK && dropped > 0)
        bench_note(out->note, sizeof(out->note), "%lld dropped as slow consumer", (long long)dropped);
    if (atomic_load(&x.bad) > 0)
        bench_note(out->note, sizeof(out->note), "%llu undecodable",
                   (unsigned long long)atomic_load(&x.bad));

done:
    /* Messages may still be arriving when the deadline cut the run short. */
    raw_sub_teardown(sc, sub, &sub_done);
    if (pc != NULL) {
        natsConnection_Close(pc);
        natsConnection_Destroy(pc);
    }
    counter_destroy(&x.ctr);
}

/* ---- bus ------------------------------------------------------------------- */

struct bus_sub_ctx {
    uint64_t received;
    uint64_t total;
    uint64_t target;
    uint64_t t_last_ns;
    uint64_t bad;
    bool typed;
    bool done;
};

static int bus_on_msg(vs_msg *m, void *arg)
{
    struct bus_sub_ctx *x = arg;
    if (x->typed && vs_msg_body(m) == NULL)
        x->bad++;
    if (++x->received == x->total)
        x->t_last_ns = bench_now_ns();
    if (x->received >= x->target)
        x->done = true;
    return 0;
}

/* Run the loop until the subscriber has target messages. */
static bool bus_wait(vs_bus *bus, struct bus_sub_ctx *x, uint64_t target, uint64_t deadline)
{
    if (x->received >= target)
        return true;
    x->target = target;
    x->done = false;
    uint64_t left = bench_ms_left(deadline);
    if (left == 0)
        return false;
    return vs_bus_run_until(bus, &x->done, left) == 0;
}

void bench_core_bus(const struct bench_cfg *cfg, bool typed, struct rate_result *out)
{
    memset(out, 0, sizeof(*out));
    out->want = cfg->n;
    char subject[128];
    subjects(cfg, typed, subject, sizeof(subject));
    uint8_t payload[BENCH_PAYLOAD];
    memset(payload, 'x', sizeof(payload));

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        bench_note(out->note, sizeof(out->note), "uv_loop_init failed");
        return;
    }
    vs_bus *pub = NULL, *sb = NULL;
    vs_sub *sub = NULL;
    struct bus_sub_ctx x = {.total = cfg->n, .typed = typed};
    int rc = bench_bus_open(cfg, &loop, "bench-pub", &pub);
    if (rc == 0)
        rc = bench_bus_open(cfg, &loop, "bench-sub", &sb);
    if (rc == 0)
        rc = vs_bus_subscribe(sb, subject, NULL, typed ? &vs__v1__agent_command__descriptor : NULL,
                              bus_on_msg, &x, &sub);
    if (rc == 0)
        rc = bench_bus_flush_sync(sb, 5000);
    if (rc < 0) {
        bench_note(out->note, sizeof(out->note), "setup: %s", strerror(-rc));
        goto done;
    }
    out->ran = true;

    uint64_t t0 = bench_now_ns();
    uint64_t deadline = t0 + cfg->deadline_ms * 1000000u;
    uint64_t sent = 0;
    bool ok = true;
    while (ok && sent < cfg->n) {
        uint64_t b = cfg->n - sent < cfg->batch ? cfg->n - sent : cfg->batch;
        for (uint64_t i = 0; i < b; i++) {
            if (typed) {
                Vs__V1__AgentCommand cmd;
                Vs__V1__Heartbeat hb;
                make_heartbeat(&cmd, &hb, sent + i);
                rc = vs_bus_publish(pub, subject, &cmd.base);
            } else {
                rc = vs_bus_publish_raw(pub, subject, NULL, payload, sizeof(payload), NULL, 0);
            }
            if (rc < 0) {
                bench_note(out->note, sizeof(out->note), "publish: %s", strerror(-rc));
                ok = false;
                break;
            }
        }
        if (!ok)
            break;
        sent += b;
        if (sent > cfg->window && !bus_wait(sb, &x, sent - cfg->window, deadline))
            ok = false;
    }
    bool complete = ok && bus_wait(sb, &x, cfg->n, deadline);
    finish(out, t0, x.t_last_ns, x.received, complete);
    if (x.bad > 0)
        bench_note(out->note, sizeof(out->note), "%llu without a body", (unsigned long long)x.bad);
    struct vs_bus_stats s;
    vs_bus_stats_get(sb, &s);
    if (s.invalid > 0)
        bench_note(out->note, sizeof(out->note), "%llu invalid", (unsigned long long)s.invalid);

done:
    vs_sub_free(sub);
    vs_bus_free(sb);
    vs_bus_free(pub);
    bench_loop_close(&loop);
}
