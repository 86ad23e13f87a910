/*
 * busfix.c - see busfix.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "busfix.h"
#include "vs/js.h"

void vs_busfix_init(struct vs_busfix *f, size_t max_msg)
{
    assert_int_equal(vs_natsd_start(&f->nats), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(vs_natsd_bus(&f->nats, &f->loop, max_msg, &f->bus), 0);
}

void vs_busfix_fini(struct vs_busfix *f)
{
    vs_bus_free(f->bus);
    f->bus = NULL;
    uv_loop_close(&f->loop);
    vs_natsd_destroy(&f->nats);
}

void vs_test_idle(vs_bus *bus, uint64_t ms)
{
    bool never = false;
    vs_bus_run_until(bus, &never, ms);
}

static int count_one(vs_msg *m, void *arg)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

int vs_test_stream_count(vs_bus *bus, const char *stream, const char *subject)
{
    int n = 0;
    vs_consumer *r;
    assert_int_equal(vs_js_read(bus, stream, subject, 0, 0, NULL, count_one, &n, &r), 0);
    vs_test_idle(bus, 700);
    vs_consumer_free(r);
    return n;
}
