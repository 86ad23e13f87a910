/*
 * bench_egress_policy.c - how many decisions per second one core of the
 * egress worker gets out of its policy engine (workers/egress,
 * vs/egress_policy.h).
 *
 * Why these figures: vs-egressd asks the engine, for every fetch, one URL
 * decision, one address check per resolved address, and one rate acquire
 * and release; a redirect hop asks again. Each is measured alone and then
 * as the fetcher asks them (URL + two addresses + acquire/release), on one
 * thread, in thread CPU time, best of the rounds. The baseline beside them
 * is libcurl's URL parse alone (curl_url, set, get host, cleanup) - the
 * floor of a URL decision, since the engine parses with libcurl on
 * purpose - and the ratio says what the policy adds on top of it.
 * The policy is a realistic large one: 1000 exact hosts, 200 "*." and 200
 * "**." entries; the URLs a mix of allowed and denied ones (wrong host,
 * port, scheme, userinfo, IP literal); the addresses a mix of public and
 * refused IPv4 and IPv6 (with embedded IPv4). The exit status says
 * whether the run completed, never what was measured. --quick (a fraction
 * of the work, one round) is the ctest smoke run.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "vs/egress_policy.h"

#define NURLS 64
#define NADDRS 32
#define NAGENTS 1000

static char *urls[NURLS];
static struct sockaddr_storage addrs[NADDRS];
static socklen_t addr_len[NADDRS];
static volatile unsigned long sink;

static char *policy_yaml(void)
{
    size_t cap = 1 << 20, n = 0;
    char *y = malloc(cap);
    if (y == NULL)
        return NULL;
    n += (size_t)snprintf(y + n, cap - n,
                          "policies:\n  - name: bench\n    agents: ['*']\n"
                          "    ports: [443, 8443]\n    methods: [GET, POST]\n    hosts:\n");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(y + n, cap - n, "      - host%d.example%d.com\n", i, i % 37);
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(y + n, cap - n, "      - '*.svc%d.example.org'\n", i);
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(y + n, cap - n, "      - '**.cdn%d.example.net'\n", i);
    return y;
}

static int make_inputs(void)
{
    for (int i = 0; i < NURLS; i++) {
        char buf[256];
        int j = i * 7 % 200, e = j % 37; /* host<j>.example<j % 37>.com is listed */
        switch (i % 8) {
        case 0: snprintf(buf, sizeof buf, "https://host%d.example%d.com/api/v1/items?id=%d", j, e, i); break; /* allowed */
        case 1: snprintf(buf, sizeof buf, "https://a%d.svc%d.example.org/p/%d", i, j, i); break;   /* allowed: "*." */
        case 2: snprintf(buf, sizeof buf, "https://x.y%d.cdn%d.example.net/a/%d.js", i, j, i); break; /* allowed: "**." */
        case 3: snprintf(buf, sizeof buf, "https://host%d.example%d.com:8443/x%d", j, e, i); break; /* allowed: port */
        case 4: snprintf(buf, sizeof buf, "https://evil%d.example%d.com/%d", j, e, i); break;      /* denied: host */
        case 5: snprintf(buf, sizeof buf, "http://host%d.example%d.com/%d", j, e, i); break;       /* denied: scheme */
        case 6: snprintf(buf, sizeof buf, "https://u%d@host%d.example%d.com/", i, j, e); break;   /* denied: userinfo */
        default: snprintf(buf, sizeof buf, "https://10.%d.%d.%d/", j, e, i); break;             /* denied: IP literal */
        }
        if ((urls[i] = strdup(buf)) == NULL)
            return -1;
    }
    static const char *const a[] = {
        "93.184.216.34", "8.8.8.8", "10.1.2.3", "169.254.169.254", "172.16.0.1", "100.64.1.1",
        "203.0.113.9", "1.1.1.1", "2606:4700:4700::1111", "::ffff:10.0.0.1", "64:ff9b::8.8.8.8",
        "2002:a00:1::1", "fe80::1", "fd00::1", "2a00:1450:4001:80b::200e", "2001:0:4136:e378::f7f7:f7f7",
    };
    for (int i = 0; i < NADDRS; i++) {
        const char *s = a[i % 16];
        memset(&addrs[i], 0, sizeof addrs[i]);
        if (strchr(s, ':') != NULL) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs[i];
            s6->sin6_family = AF_INET6;
            if (inet_pton(AF_INET6, s, &s6->sin6_addr) != 1)
                return -1;
            addr_len[i] = sizeof *s6;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&addrs[i];
            s4->sin_family = AF_INET;
            if (inet_pton(AF_INET, s, &s4->sin_addr) != 1)
                return -1;
            addr_len[i] = sizeof *s4;
        }
    }
    return 0;
}

struct ctx {
    const vs_egress_policy *p;
    vs_egress_rate *rate;
    const struct vs_egress_limits *lim;
    uint64_t now;
};

typedef int (*op_fn)(struct ctx *c, unsigned long i);

static int op_curl(struct ctx *c, unsigned long i)
{
    (void)c;
    CURLU *u = curl_url();
    char *host = NULL;
    int rc = u == NULL || curl_url_set(u, CURLUPART_URL, urls[i % NURLS], 0) != CURLUE_OK ||
                     curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
                 ? 0 : 1;
    sink += (unsigned long)rc + (host != NULL ? (unsigned char)host[0] : 0);
    curl_free(host);
    curl_url_cleanup(u);
    return 0;
}

static int op_url(struct ctx *c, unsigned long i)
{
    struct vs_egress_decision d;
    if (vs_egress_check_url(c->p, urls[i % NURLS], "GET", 0, &d) != 0)
        return -1;
    sink += d.allow;
    return 0;
}

static int op_addr(struct ctx *c, unsigned long i)
{
    const char *why;
    sink += vs_egress_addr_allowed(c->p, (const struct sockaddr *)&addrs[i % NADDRS],
                                   addr_len[i % NADDRS], &why);
    return 0;
}

static int op_rate(struct ctx *c, unsigned long i)
{
    char agent[32];
    snprintf(agent, sizeof agent, "agent-%lu", i % NAGENTS);
    c->now += (i & 7) == 0;
    const char *why;
    int rc = vs_egress_rate_acquire(c->rate, agent, &c->lim->rate, 512, c->now, &why, NULL);
    if (rc == 0)
        rc = vs_egress_rate_release(c->rate, agent, c->now);
    return rc == 0 || rc == -EAGAIN ? 0 : -1;
}

/* What the fetcher asks per fetch: URL, two resolved addresses, rate. */
static int op_fetch(struct ctx *c, unsigned long i)
{
    if (op_url(c, i) != 0 || op_addr(c, i) != 0 || op_addr(c, i + 1) != 0)
        return -1;
    return op_rate(c, i);
}

/* Operations per second of fn, best of rounds; 0 on failure. */
static double rate_of(op_fn fn, struct ctx *c, unsigned long n, unsigned rounds)
{
    double best = 0;
    for (unsigned r = 0; r < rounds; r++) {
        double t0 = bench_thread_cpu_s();
        for (unsigned long i = 0; i < n; i++)
            if (fn(c, i) != 0)
                return 0;
        double dt = bench_thread_cpu_s() - t0;
        double ops = dt > 0 ? (double)n / dt : 0;
        best = ops > best ? ops : best;
    }
    return best;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_egress_policy [--n N] [--rounds N] [--quick]\n"
                 "  --n N       operations per round (200000)\n"
                 "  --rounds N  rounds per figure, the best is kept (5)\n"
                 "  --quick     10000 operations, one round (the ctest smoke run)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"n", required_argument, NULL, 'n'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    unsigned long n = 200000, rounds = 5;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'n': n = strtoul(optarg, NULL, 10); break;
        case 'r': rounds = strtoul(optarg, NULL, 10); break;
        case 'q': n = 10000; rounds = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (n == 0 || n > 100000000 || rounds == 0 || rounds > 1000) {
        usage(stderr);
        return 2;
    }
    char *yaml = policy_yaml();
    vs_egress_policies *ps = NULL;
    char err[512];
    if (yaml == NULL || make_inputs() != 0 ||
        vs_egress_policies_parse(yaml, strlen(yaml), "bench.yaml", &ps, err, sizeof err) != 0) {
        fprintf(stderr, "bench_egress_policy: cannot set up: %s\n", yaml != NULL ? err : "memory");
        return 1;
    }
    free(yaml);
    struct ctx c = {.p = vs_egress_policies_at(ps, 0)};
    c.lim = vs_egress_policy_limits(c.p);
    if (vs_egress_rate_new(4096, &c.rate) != 0) {
        fprintf(stderr, "bench_egress_policy: cannot make the rate table\n");
        return 1;
    }
    /* a fair share for the rate figure: most acquires are granted */
    struct vs_egress_limits lim = *c.lim;
    lim.rate.requests_per_min = 1000000;
    lim.rate.bytes_per_min = 1ull << 40;
    c.lim = &lim;

    unsigned long allowed = 0;
    for (unsigned long i = 0; i < NURLS; i++) {
        struct vs_egress_decision d;
        if (vs_egress_check_url(c.p, urls[i], "GET", 0, &d) == 0 && d.allow)
            allowed++;
    }
    printf("bench_egress_policy: policy of 1400 hosts (1000 exact, 200 \"*.\", 200 \"**.\"), "
           "%d URLs (%lu allowed), %d addresses, %d agents; one thread, thread CPU time, "
           "%lu ops x best of %lu\n",
           NURLS, allowed, NADDRS, NAGENTS, n, rounds);
    double base = rate_of(op_curl, &c, n, (unsigned)rounds);
    double url = rate_of(op_url, &c, n, (unsigned)rounds);
    double addr = rate_of(op_addr, &c, n * 10, (unsigned)rounds);
    double rate = rate_of(op_rate, &c, n * 2, (unsigned)rounds);
    double fetch = rate_of(op_fetch, &c, n, (unsigned)rounds);
    int status = 0;
    if (base == 0 || url == 0 || addr == 0 || rate == 0 || fetch == 0) {
        fprintf(stderr, "bench_egress_policy: a measurement failed\n");
        status = 1;
    } else {
        printf("%-34s %10.0f /s per core\n", "curl_url parse (baseline)", base);
        printf("%-34s %10.0f /s per core (%.2fx the time of the baseline parse)\n",
               "url+policy decision", url, base / url);
        printf("%-34s %10.0f /s per core\n", "address check", addr);
        printf("%-34s %10.0f /s per core (%d agents)\n", "rate acquire+release", rate, NAGENTS);
        printf("%-34s %10.0f /s per core (%.2fx the time of the baseline parse)\n",
               "per fetch (url, 2 addresses, rate)", fetch, base / fetch);
    }
    vs_egress_rate_free(c.rate);
    vs_egress_policies_free(ps);
    for (int i = 0; i < NURLS; i++)
        free(urls[i]);
    return status;
}
