/*
 * test_egress_resolve.c - the egress worker's resolver (vs/egress_resolve.h)
 * on a real libuv loop and the real glibc resolver.
 *
 * The test runs in network and mount namespaces of its own: loopback only,
 * and /etc/resolv.conf replaced (bind mount) by one that names 127.0.0.1
 * as the DNS server, where a UDP socket of the test takes queries and
 * never answers. So a lookup that goes to DNS is seen arriving there and
 * must end at the resolver's deadline, without a packet leaving the
 * namespace. Also: fixed answers (case, trailing dot, IPv6 in brackets,
 * replacement), IP literals, names from /etc/hosts, malformed entries,
 * and cancellation by vs_resolver_free.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "netns.h"
#include "proc.h"
#include "vs/egress_resolve.h"

struct answer {
    bool done;
    int status;
    int families[VS_RESOLVE_ADDRS_MAX];
    char text[VS_RESOLVE_ADDRS_MAX][INET6_ADDRSTRLEN];
    size_t n;
};

static void on_resolved(int status, const struct addrinfo *addrs, void *arg)
{
    struct answer *a = arg;
    assert_false(a->done); /* exactly once */
    a->done = true;
    a->status = status;
    for (const struct addrinfo *ai = addrs; ai != NULL && a->n < VS_RESOLVE_ADDRS_MAX;
         ai = ai->ai_next, a->n++) {
        a->families[a->n] = ai->ai_family;
        const void *raw = ai->ai_family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
        inet_ntop(ai->ai_family, raw, a->text[a->n], sizeof a->text[a->n]);
    }
}

struct fixture {
    uv_loop_t loop;
    vs_resolver *r;
    int dns;          /* the silent DNS server's socket */
};

/* Loopback-only network namespace, and a resolv.conf naming 127.0.0.1. */
static void enter_namespaces(const char *dir)
{
    assert_int_equal(vs_enter_loopback_netns(true), 0);
    char *conf = vs_path(dir, "resolv.conf");
    assert_int_equal(vs_write_file(conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0);
    assert_int_equal(mount(conf, "/etc/resolv.conf", NULL, MS_BIND, NULL), 0);
    free(conf);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char *dir = vs_scratch_dir("vs-resolve");
    assert_non_null(dir);
    enter_namespaces(dir);
    vs_scratch_free(dir); /* the bind mount keeps the file */
    f->dns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->dns, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(vs_resolver_new(&f->loop, &f->r), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    vs_resolver_free(f->r);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->dns);
    free(f);
    return 0;
}

/* Resolve host and run the loop until the answer. */
static void resolve(struct fixture *f, const char *host, uint32_t timeout_ms, struct answer *a)
{
    *a = (struct answer){.done = false};
    assert_int_equal(vs_resolve(f->r, host, timeout_ms, on_resolved, a), 0);
    assert_false(a->done); /* never before vs_resolve returns */
    while (!a->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* Queries the silent DNS server has received since the last call. */
static int queries(struct fixture *f)
{
    char buf[512];
    int n = 0;
    while (recv(f->dns, buf, sizeof buf, MSG_DONTWAIT) > 0)
        n++;
    return n;
}

static void test_fixed_answers(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    assert_int_equal(vs_resolver_fix(f->r, "Fixed.Example.=10.0.0.1,[fd00::7],192.0.2.1"), 0);
    resolve(f, "fixed.example", 1000, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.families[0], AF_INET);
    assert_string_equal(a.text[0], "10.0.0.1");
    assert_int_equal(a.families[1], AF_INET6);
    assert_string_equal(a.text[1], "fd00::7");
    assert_string_equal(a.text[2], "192.0.2.1");
    resolve(f, "FIXED.example.", 1000, &a);
    assert_int_equal(a.n, 3);
    /* a later entry replaces the earlier one */
    assert_int_equal(vs_resolver_fix(f->r, "fixed.example=::ffff:127.0.0.1"), 0);
    resolve(f, "fixed.example", 1000, &a);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.text[0], "::ffff:127.0.0.1");
    assert_int_equal(queries(f), 0); /* no DNS asked */
}

static void test_malformed_entries(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "no-equals", "=10.0.0.1", "host=", "host=10.0.0", "host=10.0.0.1,", "host=,10.0.0.1",
        "host=[10.0.0.1", "host=name.example", "host=10.0.0.1 ",
        "host=1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9,1.1.1.10,"
        "1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vs_resolver_fix(f->r, bad[i]) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    struct answer a;
    assert_int_equal(vs_resolve(f->r, "", 100, on_resolved, &a), -EINVAL);
    assert_int_equal(vs_resolve(f->r, "x.example", 0, on_resolved, &a), -EINVAL);
}

static void test_literals_and_hosts_file(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    resolve(f, "::1", 1000, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.families[0], AF_INET6);
    resolve(f, "169.254.169.254", 1000, &a);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.text[0], "169.254.169.254");
    /* localhost comes from /etc/hosts through glibc, without DNS */
    resolve(f, "localhost", 3000, &a);
    assert_int_equal(a.status, 0);
    assert_true(a.n >= 1);
    assert_int_equal(queries(f), 0);
}

static void test_deadline(void **state)
{
    struct fixture *f = *state;
    struct answer a;
    /* the query reaches the DNS server, which never answers */
    resolve(f, "nobody-answers.example", 200, &a);
    assert_int_equal(a.status, -ETIMEDOUT);
    assert_int_equal(a.n, 0);
    assert_true(vs_resolver_pending(f->r) >= 1); /* getaddrinfo still waits */
    while (vs_resolver_pending(f->r) > 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(queries(f) >= 1);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    vs_resolver *r = NULL;
    assert_int_equal(vs_resolver_new(&f->loop, &r), 0);
    struct answer slow = {0}, fixed = {0};
    assert_int_equal(vs_resolver_fix(r, "fixed.example=10.0.0.1"), 0);
    assert_int_equal(vs_resolve(r, "cancelled.example", 10000, on_resolved, &slow), 0);
    assert_int_equal(vs_resolve(r, "fixed.example", 10000, on_resolved, &fixed), 0);
    vs_resolver_free(r);
    assert_true(slow.done);
    assert_int_equal(slow.status, -ECANCELED);
    assert_true(fixed.done);
    assert_int_equal(fixed.status, -ECANCELED);
    queries(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_answers),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_literals_and_hosts_file),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
