/*
 * bench.h - what the parts of bench_bus share: the run configuration, the
 * result records each phase fills in, a cross-thread message counter for
 * the raw cnats baselines, and small bus helpers.
 *
 * Every phase measures the same work twice, once with plain cnats and once
 * through the bus (bus/include/vs/bus.h, js.h), against the same
 * nats-server, so that the ratio bus/raw says what the bus layer costs.
 * Phases never fail on timings: each one has a deadline after which it
 * reports what it got (complete=false) and the run moves on.
 */
#ifndef VS_BENCH_H
#define VS_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>
#include <uv.h>

#include "vs/bus.h"

#define BENCH_PAYLOAD 128          /* bytes of every raw message */
#define BENCH_BATCH 10000          /* publishes between two catch-up waits */
#define BENCH_REQ_TIMEOUT_MS 5000  /* one request/reply */
#define BENCH_MAX_ACK_PENDING 1024 /* both JetStream consumers */
#define BENCH_MAX_ROUNDS 9

struct bench_cfg {
    const char *url;
    uint64_t n;            /* core messages */
    uint64_t m;            /* requests */
    uint64_t k;            /* JetStream messages */
    uint64_t batch;        /* core publish batch */
    uint64_t window;       /* core: published minus received never exceeds this
                              (plus one batch) before the publisher waits */
    uint64_t deadline_ms;  /* per measured run */
    unsigned rounds;       /* throughput phases: interleaved raw/bus rounds */
    bool raw_side;         /* run the raw cnats side of each phase */
    bool bus_side;         /* run the bus side */
    char tag[32];          /* unique per process: subjects, stream, durables */
};

/* A throughput measurement. */
struct rate_result {
    uint64_t want;
    uint64_t got;
    double secs;           /* first publish (or consumer start) to last receipt */
    bool complete;
    bool ran;              /* false: could not even start (see note) */
    bool skipped;          /* not asked for (--side) */
    char note[160];        /* why incomplete, dropped messages, leftovers */
};

/* A latency measurement. */
struct lat_result {
    uint64_t want;
    uint64_t got;          /* answered requests (after warm-up) */
    uint64_t errors;
    double p50_us, p99_us, mean_us;
    bool complete;
    bool ran;
    bool skipped;
    char note[160];
};

/* ---- util (bench_util.c) ------------------------------------------------ */

uint64_t bench_now_ns(void);
/* Milliseconds left before deadline_ns (0 when passed). */
uint64_t bench_ms_left(uint64_t deadline_ns);
double rate_of(const struct rate_result *r);
/* Nearest-rank percentile of sorted ns samples, in microseconds. */
double bench_percentile_us(const uint64_t *sorted, size_t n, double pct);
void bench_sort_u64(uint64_t *v, size_t n);
void bench_note(char *note, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Counts messages delivered on cnats threads and lets the main thread
 * sleep until a count is reached, without a lock per message: the
 * callback only takes the mutex once the count passes wake_at. */
struct bench_counter {
    atomic_uint_fast64_t n;
    atomic_uint_fast64_t wake_at;
    atomic_uint_fast64_t t_last_ns;  /* when n reached total */
    uint64_t total;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};
void counter_init(struct bench_counter *c, uint64_t total);
void counter_destroy(struct bench_counter *c);
void counter_hit(struct bench_counter *c);
/* true when n >= target before deadline_ns. */
bool counter_wait(struct bench_counter *c, uint64_t target, uint64_t deadline_ns);

/* Tear down a raw cnats subscription whose callback may still be running
 * or about to run: close the connection first (cnats 3.4.1 looks a
 * subscription up and then locks it without holding a reference, so
 * destroying one while its connection still reads messages for it is a
 * use-after-free), wait (bounded) until cnats reports that no callback will
 * run any more, then destroy both. Requires raw_sub_watch() right after
 * subscribing. */
struct raw_sub_done {
    atomic_bool done;
};
void raw_sub_watch(natsSubscription *sub, struct raw_sub_done *d);
void raw_sub_teardown(natsConnection *nc, natsSubscription *sub, struct raw_sub_done *d);

/* Bus on loop (the calling thread runs it). 0 or -errno. */
int bench_bus_open(const struct bench_cfg *cfg, uv_loop_t *loop, const char *name, vs_bus **out);
/* Flush round trip, running the loop. 0, -ETIMEDOUT or -errno. */
int bench_bus_flush_sync(vs_bus *bus, uint64_t timeout_ms);
/* Free the bus and close the loop. */
void bench_loop_close(uv_loop_t *loop);

/* ---- phases --------------------------------------------------------------- */

/* bench_core.c: core pub/sub, raw payload and typed AgentCommand heartbeat. */
void bench_core_raw(const struct bench_cfg *cfg, bool typed, struct rate_result *out);
void bench_core_bus(const struct bench_cfg *cfg, bool typed, struct rate_result *out);

/* bench_reqrep.c: sequential request/reply against one raw echo responder. */
void bench_reqrep(const struct bench_cfg *cfg, struct lat_result *raw, struct lat_result *bus);

/* bench_js.c: prefill a stream, then consume-and-ack it with each client,
 * cfg->rounds times each (a fresh durable per round), alternating which
 * side goes first; raw[] and bus[] get one result per round. */
void bench_js(const struct bench_cfg *cfg, struct rate_result *raw, struct rate_result *bus);

#endif
