/*
 * bench_util.c - clocks, percentiles, the cross-thread counter used by the
 * raw cnats baselines, and bus set-up helpers for bench_bus.
 *
 * The counter is shaped so that it adds as little as possible to what it
 * measures: the cnats delivery thread does one atomic increment per
 * message and touches the mutex only once the waiting main thread's target
 * is reached, so the raw baseline is not slowed by the harness.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_ms_left(uint64_t deadline_ns)
{
    uint64_t now = bench_now_ns();
    return now >= deadline_ns ? 0 : (deadline_ns - now) / 1000000u + 1;
}

double rate_of(const struct rate_result *r)
{
    return r->secs > 0 ? (double)r->got / r->secs : 0.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

void bench_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
}

double bench_percentile_us(const uint64_t *sorted, size_t n, double pct)
{
    if (n == 0)
        return 0.0;
    /* nearest rank: the smallest sample with at least pct% at or below it */
    size_t rank = (size_t)((pct / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

void bench_note(char *note, size_t size, const char *fmt, ...)
{
    size_t used = strlen(note);
    if (used + 3 >= size)
        return;
    if (used > 0) {
        note[used++] = ';';
        note[used++] = ' ';
        note[used] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + used, size - used, fmt, ap);
    va_end(ap);
}

/* ---- counter ------------------------------------------------------------- */

void counter_init(struct bench_counter *c, uint64_t total)
{
    atomic_init(&c->n, 0);
    atomic_init(&c->wake_at, UINT64_MAX);
    atomic_init(&c->t_last_ns, 0);
    c->total = total;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
}

void counter_destroy(struct bench_counter *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

void counter_hit(struct bench_counter *c)
{
    uint64_t v = atomic_fetch_add(&c->n, 1) + 1;
    if (v == c->total)
        atomic_store(&c->t_last_ns, bench_now_ns());
    if (v >= atomic_load(&c->wake_at)) {
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

bool counter_wait(struct bench_counter *c, uint64_t target, uint64_t deadline_ns)
{
    if (atomic_load(&c->n) >= target)
        return true;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->wake_at, target);
    /* Seq-cst store then load here, increment then load in counter_hit:
     * either we see the count or the callback sees wake_at and signals
     * after we are waiting (it needs the mutex we hold until then). */
    while (atomic_load(&c->n) < target) {
        uint64_t now = bench_now_ns();
        if (now >= deadline_ns)
            break;
        uint64_t until = now + 50000000u; /* re-check every 50 ms regardless */
        if (until > deadline_ns)
            until = deadline_ns;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    atomic_store(&c->wake_at, UINT64_MAX);
    pthread_mutex_unlock(&c->mu);
    return atomic_load(&c->n) >= target;
}

/* ---- raw subscription teardown -------------------------------------------- */

static void on_raw_sub_complete(void *closure)
{
    struct raw_sub_done *d = closure;
    atomic_store(&d->done, true);
}

void raw_sub_watch(natsSubscription *sub, struct raw_sub_done *d)
{
    atomic_init(&d->done, false);
    if (natsSubscription_SetOnCompleteCB(sub, on_raw_sub_complete, d) != NATS_OK)
        atomic_store(&d->done, true); /* nothing to wait for then */
}

void raw_sub_teardown(natsConnection *nc, natsSubscription *sub, struct raw_sub_done *d)
{
    if (nc != NULL)
        natsConnection_Close(nc);
    if (sub != NULL) {
        for (int i = 0; i < 5000 && !atomic_load(&d->done); i++) {
            struct timespec ts = {.tv_nsec = 1000000L};
            nanosleep(&ts, NULL);
        }
        natsSubscription_Destroy(sub);
    }
    if (nc != NULL)
        natsConnection_Destroy(nc);
}

/* ---- bus helpers ----------------------------------------------------------- */

int bench_bus_open(const struct bench_cfg *cfg, uv_loop_t *loop, const char *name, vs_bus **out)
{
    struct vs_bus_opts o = {.url = cfg->url, .name = name, .connect_attempts = 4};
    return vs_bus_new(loop, &o, out);
}

struct flush_wait {
    bool done;
    int status;
};

static void on_flushed(int status, void *arg)
{
    struct flush_wait *f = arg;
    f->status = status;
    f->done = true;
}

int bench_bus_flush_sync(vs_bus *bus, uint64_t timeout_ms)
{
    struct flush_wait f = {0};
    int rc = vs_bus_flush(bus, timeout_ms, on_flushed, &f);
    if (rc < 0)
        return rc;
    /* The flush has its own timer; the extra second only guards a lost callback. */
    rc = vs_bus_run_until(bus, &f.done, timeout_ms + 1000);
    return rc < 0 ? rc : f.status;
}

void bench_loop_close(uv_loop_t *loop)
{
    /* vs_bus_free has closed the bus's handles; let anything left finish. */
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    if (uv_loop_close(loop) != 0)
        fprintf(stderr, "bench_bus: a loop still had open handles at close\n");
}
