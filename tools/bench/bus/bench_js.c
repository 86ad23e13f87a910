/*
 * bench_js.c - JetStream consume-and-ack throughput, raw cnats against the
 * bus.
 *
 * What is measured: a stream is prefilled with K 128-byte messages, then
 * read in full twice, by two durable push consumers with explicit acks and
 * MaxAckPending 1024 each (separate durables, so each sees all K):
 *   raw - js_Subscribe (deliver group = durable, as the bus does), manual
 *         ack: the callback calls natsMsg_Ack (the asynchronous +ACK
 *         publish) and counts;
 *   bus - vs_js_consume with a raw (desc NULL) handler that returns 0, so the
 *         bus sends the +ACK when the handler returns.
 * With several rounds (--rounds) the stream is read again by fresh durables,
 * the side that goes first alternating, so that a warm store cache or the
 * order does not favour one side. Each is timed from the call that creates the consumer to the moment the
 * last message was received and its ack processed by the server: raw ends
 * with natsConnection_Flush, the bus with vs_bus_flush (a round trip on the
 * same connection, so every ack before it has been read by the server).
 * Afterwards, untimed, the consumer info must show nothing pending or
 * unacked; anything left is reported in the note.
 *
 * Why its own stream: the bench creates VSBENCH_<tag> on bench.<tag>.js
 * (file storage and limits like TASKS) and deletes it at the end, so that
 * running with --url against a live system never puts junk into TASKS,
 * where the gate would consume it. vs_js_consume works on any stream.
 * Prefill uses js_PublishAsync (acked, bounded in flight) and is not timed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "bench.h"
#include "vs/js.h"

struct js_names {
    char stream[64];
    char subject[128];
    char raw_durable[64];   /* of the current round */
    char bus_durable[64];
};

/* ---- prefill ------------------------------------------------------------------ */

static atomic_uint_fast64_t prefill_errors;

static void on_pub_err(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    (void)closure;
    atomic_fetch_add(&prefill_errors, 1);
}

static natsStatus create_stream(jsCtx *js, const struct js_names *nm)
{
    jsErrCode jerr = 0;
    js_DeleteStream(js, nm->stream, NULL, &jerr); /* a leftover of an aborted run */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {nm->subject};
    sc.Name = nm->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.MaxBytes = 1024LL << 20;
    sc.MaxMsgSize = 1 << 20;
    sc.MaxAge = 7LL * 86400 * 1000000000LL;
    sc.Duplicates = 600LL * 1000000000LL;
    jsStreamInfo *si = NULL;
    natsStatus st = js_AddStream(&si, js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    return st;
}

/* Publish K messages and wait for their acks; 0 or a note. */
static int prefill(jsCtx *js, const struct bench_cfg *cfg, const struct js_names *nm, char *note,
                   size_t size)
{
    uint8_t payload[BENCH_PAYLOAD];
    memset(payload, 'j', sizeof(payload));
    uint64_t deadline = bench_now_ns() + cfg->deadline_ms * 1000000u;
    natsStatus st = NATS_OK;
    for (uint64_t i = 0; i < cfg->k; i++) {
        do {
            st = js_PublishAsync(js, nm->subject, payload, (int)sizeof(payload), NULL);
        } while (st == NATS_TIMEOUT && bench_now_ns() < deadline); /* stalled at MaxPending */
        if (st != NATS_OK)
            break;
    }
    if (st == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = (int64_t)bench_ms_left(deadline);
        st = js_PublishAsyncComplete(js, &po);
    }
    if (st != NATS_OK) {
        bench_note(note, size, "prefill: %s", natsStatus_GetText(st));
        return -EIO;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    st = js_GetStreamInfo(&si, js, nm->stream, NULL, &jerr);
    uint64_t have = st == NATS_OK ? si->State.Msgs : 0;
    jsStreamInfo_Destroy(si);
    if (have != cfg->k) {
        bench_note(note, size, "prefill: stream has %llu of %llu (%llu publish errors)",
                   (unsigned long long)have, (unsigned long long)cfg->k,
                   (unsigned long long)atomic_load(&prefill_errors));
        return -EIO;
    }
    return 0;
}

/* Untimed check that the consumer has nothing left to deliver or ack. The
 * server applies acks asynchronously, so give it a moment. */
static void check_consumer(jsCtx *js, const char *stream, const char *durable,
                           struct rate_result *out)
{
    int64_t ack_pending = -1;
    uint64_t pending = 0;
    for (int i = 0; i < 40; i++) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        if (js_GetConsumerInfo(&ci, js, stream, durable, NULL, &jerr) == NATS_OK) {
            ack_pending = ci->NumAckPending;
            pending = ci->NumPending;
            jsConsumerInfo_Destroy(ci);
        }
        if (ack_pending == 0 && pending == 0)
            return;
        struct timespec ts = {.tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    bench_note(out->note, sizeof(out->note), "after the run: %lld unacked, %llu undelivered",
               (long long)ack_pending, (unsigned long long)pending);
}

static void finish(struct rate_result *out, uint64_t t0, uint64_t end, uint64_t got, bool all,
                   bool flushed)
{
    out->got = got;
    out->complete = all && flushed;
    out->secs = (double)(end - t0) / 1e9;
    if (!all)
        bench_note(out->note, sizeof(out->note), "deadline: received %llu of %llu",
                   (unsigned long long)got, (unsigned long long)out->want);
    else if (!flushed)
        bench_note(out->note, sizeof(out->note), "final flush failed");
}

/* ---- raw ------------------------------------------------------------------------ */

static void raw_on_js(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
    counter_hit(closure);
}

static void run_raw(const struct bench_cfg *cfg, jsCtx *admin, const struct js_names *nm,
                    struct rate_result *out)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    struct raw_sub_done sub_done = {0};
    struct bench_counter ctr;
    counter_init(&ctr, cfg->k);
    natsStatus st = natsConnection_ConnectTo(&nc, cfg->url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    if (st != NATS_OK) {
        bench_note(out->note, sizeof(out->note), "setup: %s", natsStatus_GetText(st));
        goto done;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = nm->stream;
    so.Queue = nm->raw_durable;
    so.ManualAck = true;
    so.Config.Durable = nm->raw_durable;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = 30LL * 1000000000LL;
    so.Config.MaxDeliver = 10;
    so.Config.MaxAckPending = BENCH_MAX_ACK_PENDING;

    uint64_t t0 = bench_now_ns();
    uint64_t deadline = t0 + cfg->deadline_ms * 1000000u;
    jsErrCode jerr = 0;
    st = js_Subscribe(&sub, js, nm->subject, raw_on_js, &ctr, NULL, &so, &jerr);
    if (st != NATS_OK) {
        bench_note(out->note, sizeof(out->note), "js_Subscribe: %s (%d)", natsStatus_GetText(st),
                   (int)jerr);
        goto done;
    }
    raw_sub_watch(sub, &sub_done);
    natsSubscription_SetPendingLimits(sub, 1024 * 1024, 512 * 1024 * 1024);
    out->ran = true;
    bool all = counter_wait(&ctr, cfg->k, deadline);
    bool flushed = all && natsConnection_FlushTimeout(nc, 5000) == NATS_OK;
    finish(out, t0, bench_now_ns(), atomic_load(&ctr.n), all, flushed);
    if (all)
        check_consumer(admin, nm->stream, nm->raw_durable, out);
done:
    /* The durable goes with the stream at the end. */
    jsCtx_Destroy(js);
    raw_sub_teardown(nc, sub, &sub_done);
    counter_destroy(&ctr);
}

/* ---- bus ------------------------------------------------------------------------- */

struct bus_js_ctx {
    uint64_t received;
    uint64_t total;
    bool done;
};

static int bus_on_js(vs_msg *m, void *arg)
{
    (void)m;
    struct bus_js_ctx *x = arg;
    if (++x->received >= x->total)
        x->done = true;
    return 0; /* the bus acks */
}

static void run_bus(const struct bench_cfg *cfg, jsCtx *admin, const struct js_names *nm,
                    struct rate_result *out)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        bench_note(out->note, sizeof(out->note), "uv_loop_init failed");
        return;
    }
    vs_bus *bus = NULL;
    vs_consumer *c = NULL;
    struct bus_js_ctx x = {.total = cfg->k};
    int rc = bench_bus_open(cfg, &loop, "bench-js", &bus);
    if (rc < 0) {
        bench_note(out->note, sizeof(out->note), "connect: %s", strerror(-rc));
        goto done;
    }
    struct vs_consumer_def def = {
        .stream = nm->stream,
        .durable = nm->bus_durable,
        .max_ack_pending = BENCH_MAX_ACK_PENDING,
    };
    uint64_t t0 = bench_now_ns();
    uint64_t deadline = t0 + cfg->deadline_ms * 1000000u;
    rc = vs_js_consume(bus, &def, NULL, bus_on_js, &x, &c);
    if (rc < 0) {
        bench_note(out->note, sizeof(out->note), "vs_js_consume: %s", strerror(-rc));
        goto done;
    }
    out->ran = true;
    bool all = x.done || vs_bus_run_until(bus, &x.done, bench_ms_left(deadline)) == 0;
    bool flushed = all && bench_bus_flush_sync(bus, 5000) == 0;
    finish(out, t0, bench_now_ns(), x.received, all, flushed);
    if (all)
        check_consumer(admin, nm->stream, nm->bus_durable, out);
done:
    vs_consumer_free(c);
    vs_bus_free(bus);
    bench_loop_close(&loop);
}

static void init_result(const struct bench_cfg *cfg, struct rate_result *r, bool side)
{
    memset(r, 0, sizeof(*r));
    r->want = cfg->k;
    r->skipped = !side;
}

void bench_js(const struct bench_cfg *cfg, struct rate_result *raw, struct rate_result *bus)
{
    for (unsigned i = 0; i < cfg->rounds; i++) {
        init_result(cfg, &raw[i], cfg->raw_side);
        init_result(cfg, &bus[i], cfg->bus_side);
    }
    struct js_names nm;
    snprintf(nm.stream, sizeof(nm.stream), "VSBENCH_%s", cfg->tag);
    snprintf(nm.subject, sizeof(nm.subject), "bench.%s.js", cfg->tag);
    atomic_init(&prefill_errors, 0);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.ErrHandler = on_pub_err;
    char note[160] = "";
    natsStatus st = natsConnection_ConnectTo(&nc, cfg->url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, &jo);
    if (st == NATS_OK)
        st = create_stream(js, &nm);
    if (st != NATS_OK)
        bench_note(note, sizeof(note), "stream: %s", natsStatus_GetText(st));
    if (st == NATS_OK && prefill(js, cfg, &nm, note, sizeof(note)) == 0) {
        for (unsigned i = 0; i < cfg->rounds; i++) {
            snprintf(nm.raw_durable, sizeof(nm.raw_durable), "raw_%s_%u", cfg->tag, i);
            snprintf(nm.bus_durable, sizeof(nm.bus_durable), "bus_%s_%u", cfg->tag, i);
            for (int k = 0; k < 2; k++) {
                bool raw_turn = (k == 0) == (i % 2 == 0);
                if (raw_turn && cfg->raw_side)
                    run_raw(cfg, js, &nm, &raw[i]);
                if (!raw_turn && cfg->bus_side)
                    run_bus(cfg, js, &nm, &bus[i]);
            }
        }
    } else {
        for (unsigned i = 0; i < cfg->rounds; i++) {
            snprintf(raw[i].note, sizeof(raw[i].note), "%s", note);
            snprintf(bus[i].note, sizeof(bus[i].note), "%s", note);
        }
    }
    if (js != NULL) {
        jsErrCode jerr = 0;
        js_DeleteStream(js, nm.stream, NULL, &jerr); /* and every durable with it */
        jsCtx_Destroy(js);
    }
    if (nc != NULL) {
        natsConnection_Close(nc);
        natsConnection_Destroy(nc);
    }
}
