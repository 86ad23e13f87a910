/*
 * bench_daemon.h - the frame of a daemon benchmark (bench_auditd,
 * bench_ledgerd): the daemon as a real process against a nats-server from
 * the test harness, messages published with cnats' asynchronous JetStream
 * publisher, and the baseline the daemon is compared with - a plain cnats
 * durable push consumer with explicit acks that receives and acks as many
 * messages - in rounds that alternate which phase goes first, reported as
 * the ratio of the medians. Each benchmark brings only what is its own:
 * its messages, its daemon's configuration lines, and how it times the
 * daemon (until a counter, a log size, ...).
 *
 * Why here (tools/bench/common, library vs_bench_daemon) and not in
 * tests/harness: the raw consumer and the rounds are benchmark logic that
 * the tests never use; the harness (natsd, proc, daemon, busfix) is what
 * this builds on, exactly as the tests do. The library exists only when
 * the harness does (tests built), like the benchmarks that use it.
 */
#ifndef VS_BENCH_DAEMON_H
#define VS_BENCH_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>
#include <uv.h>

#include "daemon.h"
#include "natsd.h"
#include "vs/bus.h"

#define BENCH_MAX_ROUNDS 9

struct bench_daemon_cfg {
    uint64_t n;             /* messages per phase */
    unsigned rounds;        /* alternating daemon/raw rounds */
    uint64_t deadline_ms;   /* bound of each phase */
    const char *parent;     /* where the scratch directory goes */
    uint64_t batch;         /* <component>.batch; 0: the daemon's default */
};

struct bench_daemon {
    const char *prog;               /* "bench_ledgerd": prefix of messages */
    const char *component;          /* "ledgerd": its config section, stats subject, files */
    struct bench_daemon_cfg cfg;
    char dir[256];                  /* scratch: the daemon's store, configuration and log */
    struct vs_natsd nats;
    uv_loop_t loop;
    bool loop_init;
    vs_bus *bus;                    /* requests to the daemon */
    natsConnection *pub_nc;         /* the asynchronous publisher */
    jsCtx *pub_js;
    atomic_uint_fast64_t pub_errors; /* publishes the stream refused */
    struct vs_daemon daemon;
};

/* With prog and component set: the options into cfg (--n, --rounds, --dir,
 * --deadline, --batch, --quick, --help). what names the messages
 * ("events"), batch_what what the daemon's batch counts. Returns -1 to go
 * on, else the exit status. */
int bench_daemon_args(struct bench_daemon *b, int argc, char **argv, const char *what,
                      const char *batch_what);
/* The scratch directory, nats-server, a loop and bus, the publisher, and
 * the daemon bin (not started; configuration and log in the scratch
 * directory). 0 or -EIO (said on stderr). */
int bench_daemon_setup(struct bench_daemon *b, const char *bin);
/* Stop and remove everything setup made. */
void bench_daemon_teardown(struct bench_daemon *b);
/* The daemon's configuration: the bus, log level warn, a 10 s shutdown,
 * and its section: the store in the scratch directory, the lines `extra`
 * ("  key: value\n" each), and the batch when one was asked for. 0 or -EIO. */
int bench_daemon_config(struct bench_daemon *b, const char *extra);
/* Stop the daemon (SIGTERM, SIGKILL after 15 s) when it runs. */
void bench_daemon_stop(struct bench_daemon *b);

/* ---- publishing ---------------------------------------------------------------- */

/* The next message: its bytes into buf (at most size), its Nats-Msg-Id
 * into msg_id (64 bytes; "" for none). Returns its length, 0 on error. */
typedef size_t (*bench_make_fn)(void *arg, uint8_t *buf, size_t size, char *msg_id);
/* Publish n messages on subject, as fast as the publisher takes them (its
 * acks not awaited). 0 or -EIO. */
int bench_publish(struct bench_daemon *b, const char *subject, uint64_t n, bench_make_fn make,
                  void *arg);
/* Wait for the stream's acks of everything published (bounded by the
 * deadline). 0, -ETIMEDOUT, or -EIO when it refused some. */
int bench_publish_complete(struct bench_daemon *b);

/* ---- the raw baseline ------------------------------------------------------------- */

struct bench_raw {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    atomic_uint_fast64_t n;         /* received and acked */
    atomic_bool complete;           /* cnats will not call back any more */
    const char *stream;
    char durable[64];
};

/* A new durable push consumer on stream (subjects filter) with explicit
 * acks and max_ack_pending, from the stream's start (only_new: from now),
 * acking each message as it arrives. 0, or -EIO with note set. */
int bench_raw_start(struct bench_daemon *b, struct bench_raw *r, const char *stream,
                    const char *filter, bool only_new, int max_ack_pending, unsigned round,
                    char *note, size_t nsize);
/* Wait until n messages are received and their acks flushed, or the
 * deadline counted from t0 passes: the time then, or 0 with note set. */
double bench_raw_wait(struct bench_daemon *b, struct bench_raw *r, uint64_t n, double t0,
                      char *note, size_t nsize);
/* Delete the consumer and close its connection (close first: cnats 3.4.1
 * must not deliver into a destroyed subscription; see
 * tools/bench/bus/bench_util.c). */
void bench_raw_stop(struct bench_raw *r);

/* ---- rounds ------------------------------------------------------------------------- */

/* What a benchmark brings; arg is passed to each. */
struct bench_phases {
    const char *unit;               /* what the daemon phase counts: "events" */
    const char *raw_unit;           /* and the raw one: "events", "msg" */
    /* bench_daemon_setup and the benchmark's own; 0 or < 0. */
    int (*setup)(void *arg);
    /* Optional: more about the run, printed after the first line. */
    void (*describe)(void *arg);
    /* One phase each: the rate, or 0 with note set. */
    double (*daemon)(void *arg, char *note, size_t nsize);
    double (*raw)(void *arg, unsigned round, char *note, size_t nsize);
    void *arg;
};

/* The run after bench_daemon_args: setup, a line about the run, cfg.rounds
 * rounds alternating which phase goes first (a line each), the medians and
 * their ratio (target >= 0.5), teardown. The exit status: 0 when every
 * round completed. */
int bench_daemon_main(struct bench_daemon *b, const struct bench_phases *p);

#endif
