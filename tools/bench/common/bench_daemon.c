/*
 * bench_daemon.c - see bench_daemon.h.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_daemon.h"
#include "proc.h"
#include "vs/keys.h"

#define STOP_TIMEOUT_MS 15000

/* ---- set-up -------------------------------------------------------------------------- */

static void usage(const struct bench_daemon *b, FILE *out, const char *what,
                  const char *batch_what)
{
    fprintf(out,
            "usage: %s [--n N] [--rounds R] [--dir PARENT] [--deadline S] [--batch N] [--quick]\n"
            "  --n N          %s per phase (100000)\n"
            "  --rounds R     alternating %s/raw rounds, at most %d (3; the medians are compared)\n"
            "  --dir PARENT   where the scratch store lives (/tmp): its file system decides\n"
            "                 what an fsync costs\n"
            "  --deadline S   bound of each phase in seconds (120)\n"
            "  --batch N      %s.batch, %s (daemon default)\n"
            "  --quick        5000 %s, one round (the ctest smoke run)\n",
            b->prog, what, b->component, BENCH_MAX_ROUNDS, b->component, batch_what, what);
}

int bench_daemon_args(struct bench_daemon *b, int argc, char **argv, const char *what,
                      const char *batch_what)
{
    static const struct option longopts[] = {
        {"n", required_argument, NULL, 'n'},     {"rounds", required_argument, NULL, 'r'},
        {"dir", required_argument, NULL, 'd'},   {"deadline", required_argument, NULL, 't'},
        {"quick", no_argument, NULL, 'q'},       {"help", no_argument, NULL, 'h'},
        {"batch", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0},
    };
    b->cfg = (struct bench_daemon_cfg){
        .n = 100000, .rounds = 3, .deadline_ms = 120000, .parent = "/tmp"};
    atomic_init(&b->pub_errors, 0);
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n': b->cfg.n = strtoull(optarg, NULL, 10); break;
        case 'r': b->cfg.rounds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': b->cfg.parent = optarg; break;
        case 'b': b->cfg.batch = strtoull(optarg, NULL, 10); break;
        case 't': b->cfg.deadline_ms = strtoull(optarg, NULL, 10) * 1000; break;
        case 'q':
            b->cfg.n = 5000;
            b->cfg.rounds = 1;
            b->cfg.deadline_ms = 30000;
            break;
        case 'h': usage(b, stdout, what, batch_what); return 0;
        default: usage(b, stderr, what, batch_what); return 2;
        }
    }
    if (b->cfg.n == 0 || b->cfg.rounds == 0 || b->cfg.rounds > BENCH_MAX_ROUNDS ||
        b->cfg.deadline_ms == 0) {
        usage(b, stderr, what, batch_what);
        return 2;
    }
    return -1;
}

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    struct bench_daemon *b = closure;
    atomic_fetch_add(&b->pub_errors, 1);
}

int bench_daemon_setup(struct bench_daemon *b, const char *bin)
{
    char name[64];
    snprintf(name, sizeof(name), "vs-bench-%s", b->component);
    if (bench_scratch_dir(b->dir, sizeof(b->dir), b->cfg.parent, name, b->prog) < 0)
        return -EIO;
    vs_daemon_init(&b->daemon, bin, b->dir, b->component);
    if (vs_natsd_start(&b->nats) < 0) {
        fprintf(stderr, "%s: cannot start nats-server\n", b->prog);
        return -EIO;
    }
    if (uv_loop_init(&b->loop) != 0)
        return -EIO;
    b->loop_init = true;
    if (vs_natsd_bus(&b->nats, &b->loop, 0, &b->bus) < 0) {
        fprintf(stderr, "%s: cannot connect the bus\n", b->prog);
        return -EIO;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = b;
    if (natsConnection_ConnectTo(&b->pub_nc, b->nats.url) != NATS_OK ||
        natsConnection_JetStream(&b->pub_js, b->pub_nc, &jo) != NATS_OK) {
        fprintf(stderr, "%s: cannot connect the publisher\n", b->prog);
        return -EIO;
    }
    return 0;
}

void bench_daemon_teardown(struct bench_daemon *b)
{
    bench_daemon_stop(b);
    jsCtx_Destroy(b->pub_js);
    if (b->pub_nc != NULL) {
        natsConnection_Close(b->pub_nc);
        natsConnection_Destroy(b->pub_nc);
    }
    vs_bus_free(b->bus);
    if (b->loop_init) {
        uv_run(&b->loop, UV_RUN_NOWAIT);
        uv_loop_close(&b->loop);
    }
    vs_natsd_destroy(&b->nats);
    bench_rmtree(b->dir);
}

int bench_daemon_config(struct bench_daemon *b, const char *extra)
{
    char batch[48] = "";
    if (b->cfg.batch > 0)
        snprintf(batch, sizeof(batch), "  batch: %" PRIu64 "\n", b->cfg.batch);
    int rc = vs_write_file(b->daemon.cfg,
                           "nats:\n  url: %s\nlog:\n  level: warn\nshutdown_timeout: 10s\n"
                           "%s:\n  store: %s/store\n%s%s",
                           b->nats.url, b->component, b->dir, extra, batch);
    return rc < 0 ? -EIO : 0;
}

void bench_daemon_stop(struct bench_daemon *b)
{
    vs_daemon_stop(&b->daemon, STOP_TIMEOUT_MS);
}

/* ---- publishing ---------------------------------------------------------------- */

int bench_publish(struct bench_daemon *b, const char *subject, uint64_t n, bench_make_fn make,
                  void *arg)
{
    uint8_t buf[512];
    char msg_id[64];
    double deadline = bench_now_s() + (double)b->cfg.deadline_ms / 1000.0;
    for (uint64_t i = 0; i < n; i++) {
        msg_id[0] = '\0';
        size_t len = make(arg, buf, sizeof(buf), msg_id);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id[0] != '\0' ? msg_id : NULL;
        natsStatus st;
        do {
            st = len > 0 ? js_PublishAsync(b->pub_js, subject, buf, (int)len, &po) : NATS_ERR;
        } while (st == NATS_TIMEOUT && bench_now_s() < deadline);
        if (st != NATS_OK) {
            fprintf(stderr, "%s: publish: %s\n", b->prog, natsStatus_GetText(st));
            return -EIO;
        }
    }
    return 0;
}

int bench_publish_complete(struct bench_daemon *b)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = (int64_t)b->cfg.deadline_ms;
    if (js_PublishAsyncComplete(b->pub_js, &po) != NATS_OK) {
        fprintf(stderr, "%s: the stream did not acknowledge every publish\n", b->prog);
        return -ETIMEDOUT;
    }
    uint64_t errors = atomic_exchange(&b->pub_errors, 0);
    if (errors > 0) {
        fprintf(stderr, "%s: %" PRIu64 " publishes failed\n", b->prog, errors);
        return -EIO;
    }
    return 0;
}

/* ---- the raw baseline ------------------------------------------------------------- */

static void raw_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct bench_raw *r = closure;
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
    atomic_fetch_add(&r->n, 1);
}

static void raw_on_complete(void *closure)
{
    struct bench_raw *r = closure;
    atomic_store(&r->complete, true);
}

int bench_raw_start(struct bench_daemon *b, struct bench_raw *r, const char *stream,
                    const char *filter, bool only_new, int max_ack_pending, unsigned round,
                    char *note, size_t nsize)
{
    memset(r, 0, sizeof(*r));
    atomic_init(&r->n, 0);
    atomic_init(&r->complete, false);
    r->stream = stream;
    snprintf(r->durable, sizeof(r->durable), "bench_raw_%u_%d", round, (int)getpid());
    natsStatus st = natsConnection_ConnectTo(&r->nc, b->nats.url);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&r->js, r->nc, NULL);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.ManualAck = true;
    so.Config.Durable = r->durable;
    so.Config.DeliverPolicy = only_new ? js_DeliverNew : js_DeliverAll;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = 30LL * 1000000000LL;
    so.Config.MaxAckPending = max_ack_pending;
    jsErrCode jerr = 0;
    if (st == NATS_OK)
        st = js_Subscribe(&r->sub, r->js, filter, raw_on_msg, r, NULL, &so, &jerr);
    if (st == NATS_OK) {
        natsSubscription_SetOnCompleteCB(r->sub, raw_on_complete, r);
        natsSubscription_SetPendingLimits(r->sub, 1024 * 1024, 512 * 1024 * 1024);
        return 0;
    }
    snprintf(note, nsize, "raw consumer: %s (%d)", natsStatus_GetText(st), (int)jerr);
    return -EIO;
}

double bench_raw_wait(struct bench_daemon *b, struct bench_raw *r, uint64_t n, double t0,
                      char *note, size_t nsize)
{
    double deadline = t0 + (double)b->cfg.deadline_ms / 1000.0;
    while (atomic_load(&r->n) < n && bench_now_s() < deadline)
        bench_sleep_ms(1);
    bool all = atomic_load(&r->n) >= n;
    bool flushed = all && natsConnection_FlushTimeout(r->nc, 5000) == NATS_OK;
    double t1 = bench_now_s();
    if (all && flushed)
        return t1;
    snprintf(note, nsize, "deadline: %" PRIu64 " of %" PRIu64 " received",
             (uint64_t)atomic_load(&r->n), n);
    return 0;
}

void bench_raw_stop(struct bench_raw *r)
{
    if (r->js != NULL) {
        jsErrCode jerr = 0;
        js_DeleteConsumer(r->js, r->stream, r->durable, NULL, &jerr);
        jsCtx_Destroy(r->js);
    }
    if (r->nc != NULL)
        natsConnection_Close(r->nc);
    if (r->sub != NULL) {
        for (int i = 0; i < 5000 && !atomic_load(&r->complete); i++)
            bench_sleep_ms(1);
        natsSubscription_Destroy(r->sub);
    }
    natsConnection_Destroy(r->nc);
    r->js = NULL;
    r->nc = NULL;
    r->sub = NULL;
}

/* ---- rounds ------------------------------------------------------------------------- */

static int rounds(struct bench_daemon *b, const struct bench_phases *p)
{
    double daemon[BENCH_MAX_ROUNDS], raw[BENCH_MAX_ROUNDS];
    unsigned got = 0;
    for (unsigned i = 0; i < b->cfg.rounds; i++) {
        char nd[256] = "", nr[128] = "";
        if (i % 2 == 0) {
            daemon[i] = p->daemon(p->arg, nd, sizeof(nd));
            raw[i] = p->raw(p->arg, i, nr, sizeof(nr));
        } else {
            raw[i] = p->raw(p->arg, i, nr, sizeof(nr));
            daemon[i] = p->daemon(p->arg, nd, sizeof(nd));
        }
        printf("  round %u: %s %.0f %s/s (%s)   raw %.0f %s/s%s%s\n", i + 1, b->component,
               daemon[i], p->unit, nd, raw[i], p->raw_unit, nr[0] ? " " : "", nr);
        fflush(stdout);
        if (daemon[i] > 0 && raw[i] > 0)
            got++;
    }
    if (got != b->cfg.rounds) {
        printf("%s: incomplete run (see the notes above)\n", b->prog);
        return 1;
    }
    double d = bench_median(daemon, got), r = bench_median(raw, got);
    printf("%s end to end: %.0f %s/s   raw JetStream consume+ack: %.0f %s/s   "
           "ratio %.2f (target >= 0.5)\n",
           b->component, d, p->unit, r, p->raw_unit, d / r);
    return 0;
}

int bench_daemon_main(struct bench_daemon *b, const struct bench_phases *p)
{
    int status = 1;
    if (vs_crypto_init() == 0 && p->setup(p->arg) == 0) {
        printf("%s: %" PRIu64 " %s per phase, %u round(s), store on %s (%s)%s\n", b->prog, b->cfg.n,
               p->unit, b->cfg.rounds, b->dir, bench_fs_name(b->dir),
               b->cfg.batch > 0 ? ", batch set" : "");
        if (p->describe != NULL)
            p->describe(p->arg);
        status = rounds(b, p);
    } else {
        printf("%s: incomplete run (see the notes above)\n", b->prog);
    }
    fflush(stdout);
    bench_daemon_teardown(b);
    return status;
}
