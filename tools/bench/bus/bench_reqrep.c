/*
 * bench_reqrep.c - request/reply latency, raw cnats against the bus.
 *
 * What is measured: M sequential requests (128-byte payload, one in flight
 * at a time), each timed from just before the request call to the moment
 * its reply is in the caller's hands:
 *   raw - natsConnection_Request on a plain connection (blocks the caller);
 *   bus - vs_bus_request_raw on a bus; the reply callback records the time
 *         and issues the next request itself, so no harness code (timers,
 *         vs_bus_run_until) sits between two requests.
 * Both talk to the SAME responder: a raw cnats connection of its own with
 * natsOptions_SetSendAsap, whose callback echoes the payload with
 * natsConnection_Publish. A raw responder keeps the responder's cost equal
 * for both and out of the comparison; SendAsap writes the reply to the
 * socket at once, so the responder does not add cnats' flusher-thread
 * delay to every sample. A short warm-up (min(100, M/10) requests) is
 * excluded from the samples.
 *
 * Reported: p50 and p99 (nearest rank) in microseconds, and
 * ratio(p50) = raw p50 / bus p50 (1.0 means the bus adds nothing).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bench.h"

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL)
        natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

struct responder {
    natsConnection *nc;
    natsSubscription *sub;
    struct raw_sub_done done;
};

static natsStatus responder_start(const struct bench_cfg *cfg, const char *subject,
                                  struct responder *r)
{
    natsOptions *o = NULL;
    natsStatus st = natsOptions_Create(&o);
    if (st == NATS_OK)
        st = natsOptions_SetURL(o, cfg->url);
    if (st == NATS_OK)
        st = natsOptions_SetSendAsap(o, true);
    if (st == NATS_OK)
        st = natsConnection_Connect(&r->nc, o);
    if (st == NATS_OK)
        st = natsConnection_Subscribe(&r->sub, r->nc, subject, on_echo, NULL);
    if (st == NATS_OK)
        raw_sub_watch(r->sub, &r->done);
    if (st == NATS_OK)
        st = natsConnection_FlushTimeout(r->nc, 5000);
    natsOptions_Destroy(o);
    return st;
}

static void responder_stop(struct responder *r)
{
    raw_sub_teardown(r->nc, r->sub, &r->done);
}

static void summarize(struct lat_result *out, uint64_t *lat, size_t n)
{
    out->got = n;
    bench_sort_u64(lat, n);
    out->p50_us = bench_percentile_us(lat, n, 50.0);
    out->p99_us = bench_percentile_us(lat, n, 99.0);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)lat[i];
    out->mean_us = n > 0 ? sum / (double)n / 1000.0 : 0.0;
    out->complete = n == out->want;
    if (!out->complete)
        bench_note(out->note, sizeof(out->note), "%zu of %llu requests answered", n,
                   (unsigned long long)out->want);
    if (out->errors > 0)
        bench_note(out->note, sizeof(out->note), "%llu failed", (unsigned long long)out->errors);
}

/* ---- raw --------------------------------------------------------------------- */

static void run_raw(const struct bench_cfg *cfg, const char *subject, uint64_t warm,
                    struct lat_result *out, uint64_t *lat)
{
    uint8_t payload[BENCH_PAYLOAD];
    memset(payload, 'r', sizeof(payload));
    natsConnection *nc = NULL;
    natsStatus st = natsConnection_ConnectTo(&nc, cfg->url);
    if (st != NATS_OK) {
        bench_note(out->note, sizeof(out->note), "connect: %s", natsStatus_GetText(st));
        return;
    }
    out->ran = true;
    uint64_t deadline = bench_now_ns() + cfg->deadline_ms * 1000000u;
    size_t n = 0;
    for (uint64_t i = 0; i < warm + cfg->m && bench_now_ns() < deadline; i++) {
        natsMsg *reply = NULL;
        uint64_t t = bench_now_ns();
        st = natsConnection_Request(&reply, nc, subject, payload, (int)sizeof(payload),
                                    BENCH_REQ_TIMEOUT_MS);
        uint64_t d = bench_now_ns() - t;
        if (st != NATS_OK) {
            out->errors++;
            continue;
        }
        natsMsg_Destroy(reply);
        if (i >= warm)
            lat[n++] = d;
    }
    summarize(out, lat, n);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

/* ---- bus ---------------------------------------------------------------------- */

struct bus_rr {
    vs_bus *bus;
    const char *subject;
    uint8_t payload[BENCH_PAYLOAD];
    uint64_t i, total, warm;
    uint64_t *lat;
    size_t n;
    uint64_t t0;
    uint64_t deadline;
    uint64_t errors;
    bool done;
};

static void on_bus_reply(int status, vs_msg *reply, void *arg);

static void issue(struct bus_rr *r)
{
    r->t0 = bench_now_ns();
    int rc = vs_bus_request_raw(r->bus, r->subject, r->payload, sizeof(r->payload), NULL, 0,
                                BENCH_REQ_TIMEOUT_MS, on_bus_reply, r);
    if (rc < 0) {
        r->errors++;
        r->done = true;
    }
}

static void on_bus_reply(int status, vs_msg *reply, void *arg)
{
    (void)reply;
    struct bus_rr *r = arg;
    uint64_t d = bench_now_ns() - r->t0;
    if (status == 0) {
        if (r->i >= r->warm)
            r->lat[r->n++] = d;
    } else if (status != -ECANCELED) {
        r->errors++;
    }
    r->i++;
    if (status == -ECANCELED || r->i >= r->total || bench_now_ns() >= r->deadline)
        r->done = true;
    else
        issue(r);
}

static void run_bus(const struct bench_cfg *cfg, const char *subject, uint64_t warm,
                    struct lat_result *out, uint64_t *lat)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        bench_note(out->note, sizeof(out->note), "uv_loop_init failed");
        return;
    }
    vs_bus *bus = NULL;
    int rc = bench_bus_open(cfg, &loop, "bench-req", &bus);
    if (rc < 0) {
        bench_note(out->note, sizeof(out->note), "connect: %s", strerror(-rc));
        bench_loop_close(&loop);
        return;
    }
    out->ran = true;
    struct bus_rr *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        bench_note(out->note, sizeof(out->note), "out of memory");
        goto done;
    }
    r->bus = bus;
    r->subject = subject;
    memset(r->payload, 'r', sizeof(r->payload));
    r->total = warm + cfg->m;
    r->warm = warm;
    r->lat = lat;
    r->deadline = bench_now_ns() + cfg->deadline_ms * 1000000u;
    issue(r);
    /* The last request may start just before the deadline and take its timeout. */
    vs_bus_run_until(bus, &r->done, cfg->deadline_ms + BENCH_REQ_TIMEOUT_MS + 1000);
    out->errors = r->errors;
    summarize(out, lat, r->n);
done:
    vs_bus_free(bus); /* completes a request still pending with -ECANCELED */
    free(r);
    bench_loop_close(&loop);
}

void bench_reqrep(const struct bench_cfg *cfg, struct lat_result *raw, struct lat_result *bus)
{
    memset(raw, 0, sizeof(*raw));
    memset(bus, 0, sizeof(*bus));
    raw->want = bus->want = cfg->m;
    raw->skipped = !cfg->raw_side;
    bus->skipped = !cfg->bus_side;
    char subject[128];
    snprintf(subject, sizeof(subject), "bench.%s.echo", cfg->tag);
    uint64_t warm = cfg->m / 10 < 100 ? cfg->m / 10 : 100;
    uint64_t *lat = calloc(cfg->m > 0 ? cfg->m : 1, sizeof(*lat));
    struct responder resp = {0};
    natsStatus st = lat != NULL ? responder_start(cfg, subject, &resp) : NATS_NO_MEMORY;
    if (st != NATS_OK) {
        bench_note(raw->note, sizeof(raw->note), "responder: %s", natsStatus_GetText(st));
        bench_note(bus->note, sizeof(bus->note), "responder: %s", natsStatus_GetText(st));
    } else {
        if (cfg->raw_side)
            run_raw(cfg, subject, warm, raw, lat);
        if (cfg->bus_side)
            run_bus(cfg, subject, warm, bus, lat);
    }
    responder_stop(&resp);
    free(lat);
}
