/*
 * test_egress_policy.c - unit tests of the egress policy engine
 * (workers/egress, vs/egress_policy.h), with policy files written to a
 * private mkdtemp directory and loaded from there: defaults and every key
 * read back, the choice of an agent's policy, files refused with their
 * line and reason, host matching (exact, "*." one label, "**." any depth,
 * case, trailing dot, empty labels, look-alike suffixes, IP literals,
 * non-ASCII), URL decisions and their reasons (scheme, userinfo, port,
 * method, size, parser tricks), every refused address range with the
 * addresses on both sides of its boundaries, IPv4 embedded in IPv6
 * (mapped, compatible, SIIT, NAT64, 6to4, Teredo), allow_loopback, and
 * the rate limits to the millisecond with the clock passed in: request
 * and byte buckets, debt from charged responses, concurrency, the bounded
 * agent table under hostile ids. And the pin: a URL on a name no DNS
 * knows, pinned to the resolver's answer, is fetched by libcurl from a
 * real server on 127.0.0.1 - the address the pin names - and an answer
 * holding one refused address refuses the pin.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netdb.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "vs/egress_policy.h"

/* ---- fixture: a private directory for policy files ---- */

static const char dir_template[] = "/tmp/vs-test-egress-XXXXXX";
static char dir[sizeof dir_template];
static char file[sizeof dir + 32];

static int setup(void **state)
{
    (void)state;
    memcpy(dir, dir_template, sizeof dir);
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(file, sizeof file, "%s/egress.yaml", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(file);
    return rmdir(dir);
}

static void write_file(const char *text)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static vs_egress_policies *load_ok(const char *yaml)
{
    vs_egress_policies *ps = NULL;
    char err[600] = "";
    write_file(yaml);
    int rc = vs_egress_policies_load(file, &ps, err, sizeof err);
    if (rc != 0)
        fail_msg("policy refused: %s", err);
    assert_non_null(ps);
    return ps;
}

/* The file must be refused with "egress.yaml:LINE: " and a reason holding want. */
static void expect_refused(const char *yaml, int line, const char *want)
{
    vs_egress_policies *ps = (vs_egress_policies *)1;
    char err[600] = "", prefix[64];
    write_file(yaml);
    int rc = vs_egress_policies_load(file, &ps, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("accepted (rc %d), expected line %d '%s':\n%s", rc, line, want, yaml);
    assert_null(ps);
    snprintf(prefix, sizeof prefix, "egress.yaml:%d: ", line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, want) == NULL)
        fail_msg("error '%s', expected '%s...%s'", err, prefix, want);
}

/* ---- loading ---- */

static void test_defaults(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok("policies:\n"
                                     "  - name: default\n"
                                     "    agents: ['*']\n"
                                     "    hosts: [example.com]\n");
    assert_int_equal(vs_egress_policies_count(ps), 1);
    const vs_egress_policy *p = vs_egress_policies_at(ps, 0);
    assert_non_null(p);
    assert_null(vs_egress_policies_at(ps, 1));
    assert_string_equal(vs_egress_policy_name(p), "default");
    const struct vs_egress_limits *l = vs_egress_policy_limits(p);
    assert_int_equal(l->max_request_bytes, 65536);
    assert_int_equal(l->max_response_bytes, 8388608);
    assert_int_equal(l->timeout_ms, 10000);
    assert_int_equal(l->rate.requests_per_min, 60);
    assert_int_equal(l->rate.bytes_per_min, 10485760);
    assert_int_equal(l->rate.max_concurrent, 4);
    assert_int_equal(l->redirects, VS_EGRESS_REDIRECTS_REFUSE);
    assert_int_equal(l->suspicious, VS_EGRESS_SUSPICIOUS_DELIVER);
    assert_false(l->allow_loopback);

    /* default ports [443], schemes [https], methods [GET] */
    struct vs_egress_decision d;
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "GET", 0, &d), 0);
    assert_true(d.allow);
    assert_int_equal(vs_egress_check_url(p, "https://example.com:8443/", "GET", 0, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_PORT);
    assert_int_equal(vs_egress_check_url(p, "http://example.com:443/", "GET", 0, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_SCHEME);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "HEAD", 0, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_METHOD);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "GET", 65537, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_TOO_LARGE);
    vs_egress_policies_free(ps);
}

static const char FULL[] =
    "policies:\n"
    "  - name: research\n"
    "    agents: [agent-7, group:research]\n"
    "    hosts: [example.com, '*.example.org', '**.deep.example.net', api.github.com,\n"
    "            203.0.113.7, '[2001:DB8::1]', xn--bcher-kva.example]\n"
    "    ports: [443, 8443, 80]\n"
    "    schemes: [https, http]\n"
    "    methods: [GET, HEAD, POST]\n"
    "    max_request_bytes: 100\n"
    "    max_response_bytes: 1048576\n"
    "    timeout_ms: 2500\n"
    "    rate: {requests_per_min: 30, bytes_per_min: 60000, max_concurrent: 2}\n"
    "    redirects: follow\n"
    "    suspicious: deny\n"
    "  - name: tests\n"
    "    agents: [group:ci]\n"
    "    hosts: [localhost]\n"
    "    allow_loopback: true\n"
    "  - name: default\n"
    "    agents: ['*']\n"
    "    hosts: []\n"
    "  - name: research-too\n"
    "    agents: [agent-7, agent-8]\n"
    "    hosts: [example.com]\n";

static void test_every_key(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok(FULL);
    assert_int_equal(vs_egress_policies_count(ps), 4);
    const vs_egress_policy *p = vs_egress_policies_at(ps, 0);
    const struct vs_egress_limits *l = vs_egress_policy_limits(p);
    assert_int_equal(l->max_request_bytes, 100);
    assert_int_equal(l->max_response_bytes, 1048576);
    assert_int_equal(l->timeout_ms, 2500);
    assert_int_equal(l->rate.requests_per_min, 30);
    assert_int_equal(l->rate.bytes_per_min, 60000);
    assert_int_equal(l->rate.max_concurrent, 2);
    assert_int_equal(l->redirects, VS_EGRESS_REDIRECTS_FOLLOW);
    assert_int_equal(l->suspicious, VS_EGRESS_SUSPICIOUS_DENY);
    assert_false(l->allow_loopback);
    assert_true(vs_egress_policy_limits(vs_egress_policies_at(ps, 1))->allow_loopback);

    struct vs_egress_decision d;
    assert_int_equal(vs_egress_check_url(p, "http://example.com/x", "POST", 100, &d), 0);
    assert_true(d.allow);
    assert_string_equal(d.scheme, "http");
    assert_int_equal(d.port, 80);
    assert_string_equal(d.policy, "research");
    assert_int_equal(vs_egress_check_url(p, "https://example.com:8443/", "HEAD", 0, &d), 0);
    assert_true(d.allow);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "POST", 101, &d), 0);
    assert_false(d.allow);
    assert_string_equal(d.reason, VS_EGRESS_TOO_LARGE);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "PUT", 0, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_METHOD);
    vs_egress_policies_free(ps);
}

static void test_policy_for(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok(FULL);
    const char *research[] = {"group:research"};
    const char *ci[] = {"group:nothing", "group:ci"};
    /* first match in file order: agent-7 is in research and research-too */
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-7", NULL, 0)),
                        "research");
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-8", NULL, 0)),
                        "research-too");
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-9", research, 1)),
                        "research");
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-9", ci, 2)), "tests");
    /* "*" is the last resort even though research-too comes after it */
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-9", NULL, 0)),
                        "default");
    vs_egress_policies_free(ps);

    /* "*" listed first still loses to a named match later in the file */
    ps = load_ok("policies:\n"
                 "  - {name: all, agents: ['*'], hosts: [a.example]}\n"
                 "  - {name: one, agents: [agent-1], hosts: [b.example]}\n");
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-1", NULL, 0)), "one");
    assert_string_equal(vs_egress_policy_name(vs_egress_policy_for(ps, "agent-2", NULL, 0)), "all");
    vs_egress_policies_free(ps);

    /* no "*": an unknown agent has no policy, and is denied */
    ps = load_ok("policies:\n  - {name: one, agents: [agent-1], hosts: [b.example]}\n");
    const vs_egress_policy *none = vs_egress_policy_for(ps, "agent-2", NULL, 0);
    assert_null(none);
    struct vs_egress_decision d;
    assert_int_equal(vs_egress_check_url(none, "https://b.example/", "GET", 0, &d), 0);
    assert_false(d.allow);
    assert_string_equal(d.reason, VS_EGRESS_NO_POLICY);
    vs_egress_policies_free(ps);
}

static void test_refused_files(void **state)
{
    (void)state;
#define P(rest) "policies:\n  - name: p\n    agents: [a]\n" rest
    expect_refused("", 0, "empty policy file");
    expect_refused("version: 1\npolicies: []\n", 1, "unknown key 'version'");
    expect_refused("policies: []\n", 1, "non-empty list");
    expect_refused("policies:\n  - name: p\n    agents: [a]\n    hosts: [x.example]\n"
                   "    colour: red\n", 5, "unknown policy key 'colour'");
    expect_refused(P("    hosts: [x.example]\n    name: q\n"), 5, "duplicate key 'name'");
    expect_refused("policies:\n  - agents: [a]\n    hosts: [x.example]\n", 2,
                   "needs name, agents and hosts");
    expect_refused("policies:\n  - name: p\n    hosts: [x.example]\n", 2,
                   "needs name, agents and hosts");
    expect_refused(P("    ports: [443]\n"), 2, "needs name, agents and hosts");
    expect_refused(P("    hosts: [x.example]\n    ports: [0]\n"), 5, "ports: expected an integer from 1 to 65535");
    expect_refused(P("    hosts: [x.example]\n    ports: [65536]\n"), 5, "from 1 to 65535");
    expect_refused(P("    hosts: [x.example]\n    ports: [-1]\n"), 5, "from 1 to 65535");
    expect_refused(P("    hosts: [x.example]\n    ports: ['443']\n"), 5, "from 1 to 65535");
    expect_refused(P("    hosts: [x.example]\n    ports: [0x1bb]\n"), 5, "from 1 to 65535");
    expect_refused(P("    hosts: [x.example]\n    ports: []\n"), 5, "non-empty list of port");
    expect_refused(P("    hosts: [x.example]\n    ports: 443\n"), 5, "non-empty list of port");
    expect_refused(P("    hosts: [x.example]\n    max_request_bytes: 0\n"), 5,
                   "max_request_bytes: expected an integer from 1");
    expect_refused(P("    hosts: [x.example]\n    max_response_bytes: 1.5\n"), 5,
                   "max_response_bytes: expected an integer");
    expect_refused(P("    hosts: [x.example]\n    max_response_bytes: 99999999999999999999999\n"),
                   5, "max_response_bytes: expected an integer");
    expect_refused(P("    hosts: [x.example]\n    max_request_bytes: 18446744073709551716\n"),
                   5, "max_request_bytes: expected an integer"); /* 2^64 + 100 must not wrap */
    expect_refused(P("    hosts: [x.example]\n    timeout_ms: 600001\n"), 5, "timeout_ms");
    expect_refused(P("    hosts: [x.example]\n    rate: {requests_per_min: 0}\n"), 5,
                   "rate.requests_per_min: expected an integer from 1");
    expect_refused(P("    hosts: [x.example]\n    rate: {bytes_per_min: 1099511627777}\n"), 5,
                   "rate.bytes_per_min");
    expect_refused(P("    hosts: [x.example]\n    rate: {max_concurrent: 0}\n"), 5,
                   "rate.max_concurrent");
    expect_refused(P("    hosts: [x.example]\n    rate: {burst: 5}\n"), 5, "rate: unknown key 'burst'");
    expect_refused(P("    hosts: [x.example]\n    rate: 60\n"), 5, "rate: expected a mapping");
    expect_refused(P("    hosts: [x.example]\n    schemes: [ftp]\n"), 5, "schemes: 'ftp'");
    expect_refused(P("    hosts: [x.example]\n    schemes: []\n"), 5, "schemes: expected a non-empty");
    expect_refused(P("    hosts: [x.example]\n    methods: [get]\n"), 5, "methods: 'get'");
    expect_refused(P("    hosts: [x.example]\n    methods: [CONNECT]\n"), 5, "methods: 'CONNECT'");
    expect_refused(P("    hosts: [x.example]\n    redirects: sometimes\n"), 5,
                   "redirects: expected refuse or follow");
    expect_refused(P("    hosts: [x.example]\n    suspicious: maybe\n"), 5,
                   "suspicious: expected deliver or deny");
    expect_refused(P("    hosts: [x.example]\n    allow_loopback: yes\n"), 5,
                   "allow_loopback: expected true or false");
    expect_refused(P("    hosts: x.example\n"), 4, "hosts: expected a list");
    expect_refused(P("    hosts: [[x.example]]\n"), 4, "hosts: expected a string");
    expect_refused(P("    hosts: ['*.com']\n"), 4, "at least two labels");
    expect_refused(P("    hosts: ['**.com']\n"), 4, "at least two labels");
    expect_refused(P("    hosts: ['*']\n"), 4, "wildcard is the whole leftmost label");
    expect_refused(P("    hosts: ['a*.example.com']\n"), 4, "wildcard is the whole leftmost label");
    expect_refused(P("    hosts: ['foo.*.example.com']\n"), 4, "wildcard is the whole leftmost");
    expect_refused(P("    hosts: ['*.*.example.com']\n"), 4, "wildcard is the whole leftmost");
    expect_refused(P("    hosts: ['*.10.0.0.1']\n"), 4, "wildcard cannot cover IP");
    expect_refused(P("    hosts: ['**.0.0.1']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['exämple.com']\n"), 4, "not ASCII");
    expect_refused(P("    hosts: [ok.example, 'a..example.com']\n"), 4, "'a..example.com': not a host");
    expect_refused(P("    hosts: ['under_score.example']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['-lead.example']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['1.2.3.4.5']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['127.1']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['[fe80::1%eth0]']\n"), 4, "not a host");
    expect_refused(P("    hosts: ['https://x.example/']\n"), 4, "not a host");
    expect_refused("policies:\n  - name: p\n    agents: []\n    hosts: []\n", 3,
                   "agents: expected at least one");
    expect_refused("policies:\n  - name: p\n    agents: ['a b']\n    hosts: []\n", 3,
                   "agents: 'a b' is not an agent id");
    expect_refused("policies:\n  - name: '*'\n    agents: [a]\n    hosts: []\n", 2, "name: expected");
    expect_refused("policies:\n"
                   "  - {name: a, agents: ['*'], hosts: []}\n"
                   "  - {name: b, agents: [x, '*'], hosts: []}\n",
                   3, "only one policy may apply to \"*\"");
    expect_refused("policies:\n"
                   "  - {name: a, agents: [x], hosts: []}\n"
                   "  - {name: a, agents: [y], hosts: []}\n",
                   3, "policy 'a' is defined twice");
    expect_refused("policies:\n  - name: p\n    agents: [a\n", 4, "YAML:");
    expect_refused("policies:\n  - just a string\n", 2, "expected a mapping per policy");
#undef P

    /* a file that cannot be read, and one over the size limit */
    vs_egress_policies *ps = NULL;
    char err[300] = "";
    char missing[sizeof dir + 32];
    snprintf(missing, sizeof missing, "%s/none.yaml", dir);
    assert_int_equal(vs_egress_policies_load(missing, &ps, err, sizeof err), -ENOENT);
    assert_null(ps);
    assert_non_null(strstr(err, "none.yaml"));
    size_t big = VS_EGRESS_POLICY_FILE_MAX + 10;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    write_file(text);
    free(text);
    assert_int_equal(vs_egress_policies_load(file, &ps, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "larger than"));
    assert_int_equal(vs_egress_policies_load(NULL, &ps, err, sizeof err), -EINVAL);
    assert_int_equal(vs_egress_policies_parse(NULL, 0, "x", &ps, err, sizeof err), -EINVAL);
}

/* ---- hosts ---- */

static void expect_host(const vs_egress_policy *p, const char *host, const char *reason)
{
    const char *why = NULL;
    bool ok = vs_egress_host_allowed(p, host, &why);
    if (strcmp(why, reason) != 0 || ok != (strcmp(reason, VS_EGRESS_ALLOWED) == 0))
        fail_msg("host '%s': %s (%d), expected %s", host, why, ok, reason);
}

static void test_host_matching(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok(FULL);
    const vs_egress_policy *p = vs_egress_policies_at(ps, 0);
    const char *A = VS_EGRESS_ALLOWED, *N = VS_EGRESS_HOST, *B = VS_EGRESS_BAD_HOST;
    /* exact entries match exactly */
    expect_host(p, "example.com", A);
    expect_host(p, "EXAMPLE.COM", A);
    expect_host(p, "Example.Com.", A);          /* one trailing dot tolerated */
    expect_host(p, "example.com..", B);         /* two are an empty label */
    expect_host(p, "a.example.com", N);         /* exact does not cover subdomains */
    expect_host(p, "example.co", N);
    expect_host(p, "example.comm", N);
    expect_host(p, "xexample.com", N);
    expect_host(p, "example.com.evil.net", N);
    expect_host(p, "api.github.com", A);
    expect_host(p, "github.com", N);
    /* "*.example.org": exactly one label */
    expect_host(p, "a.example.org", A);
    expect_host(p, "WWW.EXAMPLE.ORG.", A);
    expect_host(p, "xn--bcher-kva.example.org", A);
    expect_host(p, "a.b.example.org", N);
    expect_host(p, "example.org", N);
    expect_host(p, "badexample.org", N);
    expect_host(p, "a.badexample.org", N);
    expect_host(p, "a.example.org.evil.net", N);
    expect_host(p, "example.org.a", N);
    expect_host(p, ".example.org", B);
    expect_host(p, "a..example.org", B);
    expect_host(p, "*.example.org", B);         /* a wildcard is not a host */
    /* "**.deep.example.net": one or more labels */
    expect_host(p, "a.deep.example.net", A);
    expect_host(p, "a.b.c.deep.example.net", A);
    expect_host(p, "deep.example.net", N);
    expect_host(p, "adeep.example.net", N);
    expect_host(p, "a.deep.example.net.evil", N);
    expect_host(p, "deep.example.net.a", N);
    /* IP literals: only when listed, in any spelling of the same address */
    expect_host(p, "203.0.113.7", A);
    expect_host(p, "203.0.113.8", N);
    expect_host(p, "[2001:db8::1]", A);
    expect_host(p, "2001:0DB8:0:0::1", A);
    expect_host(p, "[2001:db8::2]", N);
    expect_host(p, "203.0.113.07", B);          /* not canonical */
    expect_host(p, "203.0.113", B);
    expect_host(p, "1.2.3.4.5", B);
    expect_host(p, "example.123", B);           /* a numeric last label is an address */
    expect_host(p, "0x7f.example", N);          /* only the last label decides */
    expect_host(p, "[fe80::1%25eth0]", B);
    expect_host(p, "[::1", B);
    /* IDN: punycode only */
    expect_host(p, "xn--bcher-kva.example", A);
    expect_host(p, "bücher.example", VS_EGRESS_HOST_NOT_ASCII);
    expect_host(p, "b\xc3\xbc" "cher.example.org", VS_EGRESS_HOST_NOT_ASCII);
    /* label rules */
    expect_host(p, "under_score.example.org", B);
    expect_host(p, "-a.example.org", B);
    expect_host(p, "a-.example.org", B);
    expect_host(p, "a-b.example.org", A);
    expect_host(p, "", B);
    expect_host(p, ".", B);
    expect_host(p, "a b.example.org", B);
    expect_host(NULL, "example.com", VS_EGRESS_NO_POLICY);
    expect_host(p, NULL, B);

    char host[400];
    memset(host, 'a', 63);
    strcpy(host + 63, ".example.org");
    expect_host(p, host, A);                    /* a 63-character label */
    memset(host, 'a', 64);
    strcpy(host + 64, ".example.org");
    expect_host(p, host, B);                    /* 64 */
    /* 253 characters in all, not 254: "xx." + 117 x "x." + "deep.example.net" */
    strcpy(host, "xx.");
    for (int i = 0; i < 117; i++)
        strcat(host, "x.");
    strcat(host, "deep.example.net");
    assert_int_equal(strlen(host), 253);
    expect_host(p, host, A);
    expect_host(p, strcat(host, "."), A);       /* the trailing dot does not count */
    host[strlen(host) - 1] = '\0';
    memmove(host + 1, host, strlen(host) + 1);
    host[0] = 'z';
    expect_host(p, host, B);
    vs_egress_policies_free(ps);
}

/* ---- URL decisions ---- */

static void expect_url(const vs_egress_policy *p, const char *url, const char *method,
                       uint64_t bytes, const char *reason)
{
    struct vs_egress_decision d;
    assert_int_equal(vs_egress_check_url(p, url, method, bytes, &d), 0);
    if (strcmp(d.reason, reason) != 0 || d.allow != (strcmp(reason, VS_EGRESS_ALLOWED) == 0))
        fail_msg("%s %s: %s, expected %s", method, url, d.reason, reason);
}

static void test_url_decisions(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok("policies:\n"
                                     "  - name: web\n"
                                     "    agents: ['*']\n"
                                     "    hosts: [example.com, '*.example.org', 198.51.100.1]\n"
                                     "    methods: [GET, POST]\n"
                                     "    max_request_bytes: 1000\n");
    const vs_egress_policy *p = vs_egress_policies_at(ps, 0);
    const char *A = VS_EGRESS_ALLOWED;
    expect_url(p, "https://example.com/", "GET", 0, A);
    expect_url(p, "HTTPS://EXAMPLE.COM./a?b=c#d", "GET", 0, A);
    expect_url(p, "https://a.example.org/path", "POST", 1000, A);
    expect_url(p, "https://example.com:443/", "GET", 0, A);
    expect_url(p, "https://example.com:/", "GET", 0, A);
    /* scheme */
    expect_url(p, "http://example.com/", "GET", 0, VS_EGRESS_SCHEME);
    expect_url(p, "ftp://example.com/", "GET", 0, VS_EGRESS_SCHEME);
    expect_url(p, "file:///etc/passwd", "GET", 0, VS_EGRESS_SCHEME);
    expect_url(p, "gopher://example.com/", "GET", 0, VS_EGRESS_SCHEME);
    expect_url(p, "javascript:alert(1)", "GET", 0, VS_EGRESS_SCHEME);
    expect_url(p, "wss://example.com/", "GET", 0, VS_EGRESS_SCHEME);
    /* userinfo, also empty, also the backslash trick */
    expect_url(p, "https://user@example.com/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://user:pw@example.com/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://:@example.com/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://@example.com/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://example.com@evil.net/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://example.com\\@evil.net/", "GET", 0, VS_EGRESS_USERINFO);
    expect_url(p, "https://u;opt@example.com/", "GET", 0, VS_EGRESS_USERINFO);
    /* host */
    expect_url(p, "https://evil.net/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://example.com.evil.net/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://a.b.example.org/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://example.org/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://evil.net#@example.com", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://evil.net?@example.com", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://a..example.org/", "GET", 0, VS_EGRESS_BAD_HOST);
    expect_url(p, "https://b\xc3\xbc" "cher.example.org/", "GET", 0, VS_EGRESS_HOST_NOT_ASCII);
    expect_url(p, "https://[fe80::1%25eth0]/", "GET", 0, VS_EGRESS_BAD_HOST);
    expect_url(p, "https://1.2.3.4.5/", "GET", 0, VS_EGRESS_BAD_HOST);
    expect_url(p, "https://198.51.100.1/", "GET", 0, A);
    expect_url(p, "https://3325256705/", "GET", 0, A); /* the same address, as one number */
    expect_url(p, "https://127.0.0.1/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://127.1/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://0x7f000001/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://[::1]/", "GET", 0, VS_EGRESS_HOST);
    expect_url(p, "https://[::ffff:198.51.100.1]/", "GET", 0, VS_EGRESS_HOST);
    /* port */
    expect_url(p, "https://example.com:8443/", "GET", 0, VS_EGRESS_PORT);
    expect_url(p, "https://example.com:0/", "GET", 0, VS_EGRESS_PORT);
    expect_url(p, "https://example.com:00443/", "GET", 0, A);
    expect_url(p, "https://example.com:65536/", "GET", 0, VS_EGRESS_BAD_URL);
    /* method and size */
    expect_url(p, "https://example.com/", "PUT", 0, VS_EGRESS_METHOD);
    expect_url(p, "https://example.com/", "get", 0, VS_EGRESS_METHOD);
    expect_url(p, "https://example.com/", "CONNECT", 0, VS_EGRESS_METHOD);
    expect_url(p, "https://example.com/", "", 0, VS_EGRESS_METHOD);
    expect_url(p, "https://example.com/", "POST", 1001, VS_EGRESS_TOO_LARGE);
    expect_url(p, "https://example.com/", "POST", UINT64_MAX, VS_EGRESS_TOO_LARGE);
    /* not URLs */
    expect_url(p, "", "GET", 0, VS_EGRESS_BAD_URL);
    expect_url(p, "example.com", "GET", 0, VS_EGRESS_BAD_URL);
    expect_url(p, "//example.com/", "GET", 0, VS_EGRESS_BAD_URL);
    expect_url(p, "https://exa mple.com/", "GET", 0, VS_EGRESS_BAD_URL);
    expect_url(p, "https://example.com/\r\nHost: evil", "GET", 0, VS_EGRESS_BAD_URL);

    /* what the fetcher gets: curl's reading, normalized */
    struct vs_egress_decision d;
    assert_int_equal(vs_egress_check_url(p, "https:///example.com/a b", "GET", 0, &d), 0);
    assert_string_equal(d.reason, VS_EGRESS_BAD_URL);
    assert_int_equal(vs_egress_check_url(p, "HTTPS://A.Example.ORG.:443/x?y#z", "GET", 0, &d), 0);
    assert_true(d.allow);
    assert_string_equal(d.scheme, "https");
    assert_string_equal(d.host, "a.example.org");
    assert_false(d.host_is_ip);
    assert_int_equal(d.port, 443);
    assert_string_equal(d.policy, "web");
    assert_non_null(strstr(d.url, "https://"));
    assert_non_null(strstr(d.url, "/x?y"));
    assert_int_equal(vs_egress_check_url(p, "https://0x7f000001/", "GET", 0, &d), 0);
    assert_string_equal(d.host, "127.0.0.1");
    assert_true(d.host_is_ip);
    assert_int_equal(vs_egress_check_url(p, "https://[::FFFF:127.0.0.1]/", "GET", 0, &d), 0);
    assert_string_equal(d.host, "::ffff:127.0.0.1");
    assert_true(d.host_is_ip);

    /* longest URL accepted, one more refused */
    char *url = malloc(VS_EGRESS_URL_MAX + 2);
    assert_non_null(url);
    strcpy(url, "https://example.com/");
    size_t n = strlen(url);
    memset(url + n, 'a', VS_EGRESS_URL_MAX - n);
    url[VS_EGRESS_URL_MAX] = '\0';
    expect_url(p, url, "GET", 0, A);
    url[VS_EGRESS_URL_MAX] = 'a';
    url[VS_EGRESS_URL_MAX + 1] = '\0';
    expect_url(p, url, "GET", 0, VS_EGRESS_BAD_URL);
    free(url);

    assert_int_equal(vs_egress_check_url(p, NULL, "GET", 0, &d), -EINVAL);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", NULL, 0, &d), -EINVAL);
    assert_int_equal(vs_egress_check_url(p, "https://example.com/", "GET", 0, NULL), -EINVAL);
    vs_egress_policies_free(ps);

    /* http must be listed, and its default port 80 too */
    ps = load_ok("policies:\n"
                 "  - {name: plain, agents: ['*'], hosts: [example.com], schemes: [http]}\n");
    p = vs_egress_policies_at(ps, 0);
    expect_url(p, "http://example.com/", "GET", 0, VS_EGRESS_PORT);
    expect_url(p, "http://example.com:443/", "GET", 0, A);
    expect_url(p, "https://example.com/", "GET", 0, VS_EGRESS_SCHEME);
    vs_egress_policies_free(ps);

    /* an empty host list denies every host */
    ps = load_ok("policies:\n  - {name: none, agents: ['*'], hosts: []}\n");
    expect_url(vs_egress_policies_at(ps, 0), "https://example.com/", "GET", 0, VS_EGRESS_HOST);
    vs_egress_policies_free(ps);
}

/* ---- addresses ---- */

struct addr_case {
    const char *addr;
    enum vs_egress_addr_class cls;
};

/* Classify through the raw and the sockaddr entry points, and check
 * vs_egress_addr_allowed agrees (no policy: allow_loopback off). */
static void expect_addr(const struct addr_case *c)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    enum vs_egress_addr_class raw;
    if (strchr(c->addr, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, c->addr, &s6->sin6_addr) != 1)
            fail_msg("bad test address %s", c->addr);
        raw = vs_egress_classify_ipv6(s6->sin6_addr.s6_addr);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, c->addr, &s4->sin_addr) != 1)
            fail_msg("bad test address %s", c->addr);
        raw = vs_egress_classify_ipv4((const uint8_t *)&s4->sin_addr);
        len = sizeof *s4;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    enum vs_egress_addr_class via = vs_egress_classify_sockaddr(sa, len);
    const char *why = NULL;
    bool ok = vs_egress_addr_allowed(NULL, sa, len, &why);
    if (raw != c->cls || via != c->cls || ok != (c->cls == VS_ADDR_PUBLIC) ||
        strcmp(why, c->cls == VS_ADDR_PUBLIC ? VS_EGRESS_ALLOWED : vs_egress_addr_class_name(c->cls)) != 0)
        fail_msg("%s: %s / %s / %s, expected %s", c->addr, vs_egress_addr_class_name(raw),
                 vs_egress_addr_class_name(via), why, vs_egress_addr_class_name(c->cls));
}

#define PUB VS_ADDR_PUBLIC

static void test_ipv4_ranges(void **state)
{
    (void)state;
    static const struct addr_case cases[] = {
        {"0.0.0.0", VS_ADDR_UNSPECIFIED}, {"0.255.255.255", VS_ADDR_UNSPECIFIED}, {"1.0.0.0", PUB},
        {"9.255.255.255", PUB}, {"10.0.0.0", VS_ADDR_PRIVATE}, {"10.255.255.255", VS_ADDR_PRIVATE},
        {"11.0.0.0", PUB},
        {"100.63.255.255", PUB}, {"100.64.0.0", VS_ADDR_CGNAT}, {"100.127.255.255", VS_ADDR_CGNAT},
        {"100.128.0.0", PUB},
        {"126.255.255.255", PUB}, {"127.0.0.0", VS_ADDR_LOOPBACK}, {"127.0.0.1", VS_ADDR_LOOPBACK},
        {"127.255.255.255", VS_ADDR_LOOPBACK}, {"128.0.0.0", PUB},
        {"169.253.255.255", PUB}, {"169.254.0.0", VS_ADDR_LINK_LOCAL},
        {"169.254.169.254", VS_ADDR_LINK_LOCAL}, {"169.254.255.255", VS_ADDR_LINK_LOCAL},
        {"169.255.0.0", PUB},
        {"172.15.255.255", PUB}, {"172.16.0.0", VS_ADDR_PRIVATE}, {"172.31.255.255", VS_ADDR_PRIVATE},
        {"172.32.0.0", PUB},
        {"191.255.255.255", PUB}, {"192.0.0.0", VS_ADDR_RESERVED}, {"192.0.0.255", VS_ADDR_RESERVED},
        {"192.0.1.0", PUB}, {"192.0.1.255", PUB}, {"192.0.2.0", VS_ADDR_DOCUMENTATION},
        {"192.0.2.255", VS_ADDR_DOCUMENTATION}, {"192.0.3.0", PUB},
        {"192.88.98.255", PUB}, {"192.88.99.0", VS_ADDR_RESERVED}, {"192.88.99.255", VS_ADDR_RESERVED},
        {"192.88.100.0", PUB},
        {"192.167.255.255", PUB}, {"192.168.0.0", VS_ADDR_PRIVATE},
        {"192.168.255.255", VS_ADDR_PRIVATE}, {"192.169.0.0", PUB},
        {"198.17.255.255", PUB}, {"198.18.0.0", VS_ADDR_BENCHMARKING},
        {"198.19.255.255", VS_ADDR_BENCHMARKING}, {"198.20.0.0", PUB},
        {"198.51.99.255", PUB}, {"198.51.100.0", VS_ADDR_DOCUMENTATION},
        {"198.51.100.255", VS_ADDR_DOCUMENTATION}, {"198.51.101.0", PUB},
        {"203.0.112.255", PUB}, {"203.0.113.0", VS_ADDR_DOCUMENTATION},
        {"203.0.113.255", VS_ADDR_DOCUMENTATION}, {"203.0.114.0", PUB},
        {"223.255.255.255", PUB}, {"224.0.0.0", VS_ADDR_MULTICAST},
        {"239.255.255.255", VS_ADDR_MULTICAST}, {"240.0.0.0", VS_ADDR_RESERVED},
        {"255.255.255.254", VS_ADDR_RESERVED}, {"255.255.255.255", VS_ADDR_BROADCAST},
        {"8.8.8.8", PUB}, {"1.1.1.1", PUB}, {"93.184.216.34", PUB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_addr(&cases[i]);
}

static void test_ipv6_ranges(void **state)
{
    (void)state;
    static const struct addr_case cases[] = {
        {"::", VS_ADDR_UNSPECIFIED}, {"::1", VS_ADDR_LOOPBACK},
        {"2606:4700:4700::1111", PUB}, {"2a00:1450:4001::1", PUB},
        {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_RESERVED}, {"2000::", PUB},
        {"3ffe:ffff::1", PUB}, {"4000::", VS_ADDR_RESERVED},
        {"100::1", VS_ADDR_RESERVED}, {"5f00::1", VS_ADDR_RESERVED},
        {"fbff:ffff::1", VS_ADDR_RESERVED}, {"fc00::", VS_ADDR_ULA}, {"fd12:3456::1", VS_ADDR_ULA},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_ULA}, {"fe00::", VS_ADDR_RESERVED},
        {"fe7f:ffff::1", VS_ADDR_RESERVED}, {"fe80::", VS_ADDR_LINK_LOCAL},
        {"fe80::1", VS_ADDR_LINK_LOCAL}, {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_LINK_LOCAL},
        {"fec0::1", VS_ADDR_PRIVATE}, {"feff:ffff::1", VS_ADDR_PRIVATE},
        {"ff00::", VS_ADDR_MULTICAST}, {"ff02::1", VS_ADDR_MULTICAST},
        {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PUB}, {"2001:db8::", VS_ADDR_DOCUMENTATION},
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_DOCUMENTATION}, {"2001:db9::", PUB},
        {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB}, {"3fff::", VS_ADDR_DOCUMENTATION},
        {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_DOCUMENTATION}, {"3fff:1000::", PUB},
        {"2001:1:ffff:ffff:ffff:ffff:ffff:ffff", PUB}, {"2001:2::", VS_ADDR_BENCHMARKING},
        {"2001:2:0:ffff:ffff:ffff:ffff:ffff", VS_ADDR_BENCHMARKING}, {"2001:2:1::", PUB},
        {"2001:f:ffff:ffff:ffff:ffff:ffff:ffff", PUB}, {"2001:10::", VS_ADDR_RESERVED},
        {"2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_RESERVED}, {"2001:20::", VS_ADDR_RESERVED},
        {"2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_RESERVED}, {"2001:30::", PUB},
        /* IPv4-mapped */
        {"::ffff:10.0.0.1", VS_ADDR_PRIVATE}, {"::ffff:127.0.0.1", VS_ADDR_LOOPBACK},
        {"::ffff:169.254.169.254", VS_ADDR_LINK_LOCAL}, {"::ffff:100.64.0.0", VS_ADDR_CGNAT},
        {"::ffff:100.63.255.255", PUB}, {"::ffff:0.0.0.0", VS_ADDR_UNSPECIFIED},
        {"::ffff:255.255.255.255", VS_ADDR_BROADCAST}, {"::ffff:8.8.8.8", PUB},
        /* IPv4-compatible (deprecated) */
        {"::10.0.0.1", VS_ADDR_PRIVATE}, {"::127.0.0.2", VS_ADDR_LOOPBACK},
        {"::0.0.0.2", VS_ADDR_UNSPECIFIED}, {"::8.8.8.8", PUB},
        /* SIIT ::ffff:0:a.b.c.d */
        {"::ffff:0:192.168.1.1", VS_ADDR_PRIVATE}, {"::ffff:0:8.8.8.8", PUB},
        /* NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 */
        {"64:ff9b::10.0.0.1", VS_ADDR_PRIVATE}, {"64:ff9b::127.0.0.1", VS_ADDR_LOOPBACK},
        {"64:ff9b::169.254.169.254", VS_ADDR_LINK_LOCAL}, {"64:ff9b::172.16.0.0", VS_ADDR_PRIVATE},
        {"64:ff9b::172.15.255.255", PUB}, {"64:ff9b::8.8.8.8", PUB},
        {"64:ff9b:0:0:0:1::", VS_ADDR_RESERVED}, /* in /64 but not the /96 */
        {"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", VS_ADDR_RESERVED},
        {"64:ff9b:1::8.8.8.8", VS_ADDR_RESERVED}, {"64:ff9b:1:ffff::1", VS_ADDR_RESERVED},
        /* 6to4 2002:AABB:CCDD:: */
        {"2002:a00:1::1", VS_ADDR_PRIVATE}, {"2002:7f00:1::", VS_ADDR_LOOPBACK},
        {"2002:a9fe:a9fe::1", VS_ADDR_LINK_LOCAL}, {"2002:c0a8:101::1", VS_ADDR_PRIVATE},
        {"2002:6440::", VS_ADDR_CGNAT}, {"2002:643f:ffff::", PUB}, {"2002:808:808::1", PUB},
        {"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PUB}, {"2003::1", PUB},
        /* Teredo 2001:0:server:flags:port:~client (RFC 4380's example: the
         * client is 192.0.2.45, a documentation address) */
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", VS_ADDR_DOCUMENTATION},
        {"2001:0:4136:e378:0:0:f7f7:f7f7", PUB},               /* 65.54.227.120 / 8.8.8.8 */
        {"2001:0:a00:1:0:0:f7f7:f7f7", VS_ADDR_PRIVATE},       /* server 10.0.0.1 */
        {"2001:0:4136:e378:0:0:f5ff:fffe", VS_ADDR_PRIVATE},   /* client 10.0.0.1 */
        {"2001:0:4136:e378:0:0:80ff:fffe", VS_ADDR_LOOPBACK},  /* client 127.0.0.1 */
        {"2001:0:a9fe:a9fe::f7f7:f7f7", VS_ADDR_LINK_LOCAL},   /* server 169.254.169.254 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_addr(&cases[i]);

    /* not an IP socket address, or a short one */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const char *why = NULL;
    assert_false(vs_egress_addr_allowed(NULL, (const struct sockaddr *)&un, sizeof un, &why));
    assert_string_equal(why, "address-bad-family");
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "8.8.8.8", &s4.sin_addr);
    assert_true(vs_egress_addr_allowed(NULL, (const struct sockaddr *)&s4, sizeof s4, &why));
    assert_false(vs_egress_addr_allowed(NULL, (const struct sockaddr *)&s4, sizeof s4 - 1, &why));
    assert_string_equal(why, "address-bad-family");
    assert_false(vs_egress_addr_allowed(NULL, NULL, 0, &why));
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2606:4700:4700::1111", &s6.sin6_addr);
    assert_true(vs_egress_addr_allowed(NULL, (const struct sockaddr *)&s6, sizeof s6, &why));
    assert_false(vs_egress_addr_allowed(NULL, (const struct sockaddr *)&s6, sizeof s4, &why));
}

static bool allowed_in(const vs_egress_policy *p, const char *addr, const char **why)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(addr, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
        return vs_egress_addr_allowed(p, (const struct sockaddr *)&ss, sizeof *s6, why);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
    return vs_egress_addr_allowed(p, (const struct sockaddr *)&ss, sizeof *s4, why);
}

static void test_allow_loopback(void **state)
{
    (void)state;
    vs_egress_policies *ps = load_ok(FULL);
    const vs_egress_policy *normal = vs_egress_policies_at(ps, 0);
    const vs_egress_policy *test = vs_egress_policies_at(ps, 1);
    const char *why = NULL;
    assert_true(vs_egress_policy_limits(test)->allow_loopback);
    /* the test policy: 127.0.0.0/8 and ::1 ... */
    assert_true(allowed_in(test, "127.0.0.1", &why));
    assert_string_equal(why, VS_EGRESS_ALLOWED);
    assert_true(allowed_in(test, "127.0.0.0", &why));
    assert_true(allowed_in(test, "127.255.255.255", &why));
    assert_true(allowed_in(test, "::1", &why));
    assert_true(allowed_in(test, "8.8.8.8", &why));
    /* ... and nothing else that is not public, nor loopback in disguise */
    assert_false(allowed_in(test, "10.0.0.1", &why));
    assert_string_equal(why, "address-private");
    assert_false(allowed_in(test, "169.254.169.254", &why));
    assert_string_equal(why, "address-link-local");
    assert_false(allowed_in(test, "0.0.0.0", &why));
    assert_string_equal(why, "address-unspecified");
    assert_false(allowed_in(test, "::", &why));
    assert_false(allowed_in(test, "::2", &why));
    assert_false(allowed_in(test, "::ffff:127.0.0.1", &why));
    assert_string_equal(why, "address-loopback");
    assert_false(allowed_in(test, "64:ff9b::127.0.0.1", &why));
    assert_false(allowed_in(test, "2002:7f00:1::", &why));
    assert_false(allowed_in(test, "::127.0.0.1", &why));
    assert_false(allowed_in(test, "fe80::1", &why));
    /* any other policy refuses loopback */
    assert_false(allowed_in(normal, "127.0.0.1", &why));
    assert_string_equal(why, "address-loopback");
    assert_false(allowed_in(normal, "::1", &why));
    assert_false(allowed_in(NULL, "127.0.0.1", &why));
    vs_egress_policies_free(ps);
}

/* ---- rate limits ---- */

static const struct vs_egress_rate_limits BIG = {1000000, 1ull << 40, 1024};

static int acq(vs_egress_rate *r, const char *agent, const struct vs_egress_rate_limits *l,
               uint64_t bytes, uint64_t now, const char **why, uint64_t *retry)
{
    return vs_egress_rate_acquire(r, agent, l, bytes, now, why, retry);
}

/* acquire then release at once: one request that takes no time */
static int once(vs_egress_rate *r, const char *agent, const struct vs_egress_rate_limits *l,
                uint64_t bytes, uint64_t now, const char **why, uint64_t *retry)
{
    int rc = acq(r, agent, l, bytes, now, why, retry);
    if (rc == 0)
        assert_int_equal(vs_egress_rate_release(r, agent, now), 0);
    return rc;
}

static void test_rate_requests_exact(void **state)
{
    (void)state;
    vs_egress_rate *r = NULL;
    assert_int_equal(vs_egress_rate_new(16, &r), 0);
    struct vs_egress_rate_limits l = {60, 1ull << 30, 1024};
    const char *why = NULL;
    uint64_t retry = 0, t0 = 1000000;
    for (int i = 0; i < 60; i++)
        assert_int_equal(once(r, "a", &l, 0, t0, &why, &retry), 0);
    assert_null(why);
    assert_int_equal(once(r, "a", &l, 0, t0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_REQUESTS);
    assert_int_equal(retry, 1000);
    assert_int_equal(once(r, "a", &l, 0, t0 + 999, &why, &retry), -EAGAIN);
    assert_int_equal(retry, 1);
    /* another agent has its own bucket */
    assert_int_equal(once(r, "b", &l, 0, t0 + 999, &why, &retry), 0);
    /* exactly the refill time: one more, then none */
    assert_int_equal(once(r, "a", &l, 0, t0 + 1000, &why, &retry), 0);
    assert_int_equal(once(r, "a", &l, 0, t0 + 1000, &why, &retry), -EAGAIN);
    assert_int_equal(retry, 1000);
    /* time running backwards refills nothing */
    assert_int_equal(once(r, "a", &l, 0, t0, &why, &retry), -EAGAIN);
    assert_int_equal(once(r, "a", &l, 0, t0 + 1999, &why, &retry), -EAGAIN);
    assert_int_equal(once(r, "a", &l, 0, t0 + 2000, &why, &retry), 0);
    /* a full minute later the bucket is full again - and no fuller */
    uint64_t t1 = t0 + 2000 + 60000;
    for (int i = 0; i < 60; i++)
        assert_int_equal(once(r, "a", &l, 0, t1, &why, &retry), 0);
    assert_int_equal(once(r, "a", &l, 0, t1, &why, &retry), -EAGAIN);
    /* an hour idle does not bank more than a minute's worth */
    uint64_t t2 = t1 + 3600000;
    for (int i = 0; i < 60; i++)
        assert_int_equal(once(r, "a", &l, 0, t2, &why, &retry), 0);
    assert_int_equal(once(r, "a", &l, 0, t2, &why, &retry), -EAGAIN);

    /* a rate that does not divide a minute: 7/min, one per 8571.43 ms */
    struct vs_egress_rate_limits seven = {7, 1ull << 30, 1024};
    for (int i = 0; i < 7; i++)
        assert_int_equal(once(r, "s", &seven, 0, t0, &why, &retry), 0);
    assert_int_equal(once(r, "s", &seven, 0, t0, &why, &retry), -EAGAIN);
    assert_int_equal(retry, 8572);
    assert_int_equal(once(r, "s", &seven, 0, t0 + 8571, &why, &retry), -EAGAIN);
    assert_int_equal(retry, 1);
    assert_int_equal(once(r, "s", &seven, 0, t0 + 8572, &why, &retry), 0);
    /* the fraction carries over: the next one after 2 * 60000 / 7 = 17142.86 */
    assert_int_equal(once(r, "s", &seven, 0, t0 + 17142, &why, &retry), -EAGAIN);
    assert_int_equal(once(r, "s", &seven, 0, t0 + 17143, &why, &retry), 0);
    /* refill never rounds a nearly full bucket up to full: one token used,
     * 8571 ms later the bucket is 3 units (of 60000 per token) short, so
     * only 6 of 7 pass */
    assert_int_equal(once(r, "t", &seven, 0, t0, &why, &retry), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(once(r, "t", &seven, 0, t0 + 8571, &why, &retry), 0);
    assert_int_equal(once(r, "t", &seven, 0, t0 + 8571, &why, &retry), -EAGAIN);
    assert_int_equal(retry, 1);
    vs_egress_rate_free(r);
}

static void test_rate_bytes(void **state)
{
    (void)state;
    vs_egress_rate *r = NULL;
    assert_int_equal(vs_egress_rate_new(4, &r), 0);
    /* 6000 bytes a minute: one byte per 10 ms */
    struct vs_egress_rate_limits l = {1000, 6000, 8};
    const char *why = NULL;
    uint64_t retry = 0, t0 = 50;
    assert_int_equal(once(r, "a", &l, 6000, t0, &why, &retry), 0);
    assert_int_equal(once(r, "a", &l, 1, t0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_BYTES);
    assert_int_equal(retry, 10);
    assert_int_equal(once(r, "a", &l, 1, t0 + 9, &why, &retry), -EAGAIN);
    assert_int_equal(once(r, "a", &l, 1, t0 + 10, &why, &retry), 0);
    /* a zero-byte request only needs a request token */
    assert_int_equal(once(r, "a", &l, 0, t0 + 10, &why, &retry), 0);
    /* more than a minute's bytes can never pass */
    assert_int_equal(once(r, "b", &l, 6001, t0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_BYTES);
    assert_int_equal(retry, UINT64_MAX);
    assert_int_equal(once(r, "b", &l, 6000, t0, &why, &retry), 0);

    /* a response charged after the fact puts the bucket in debt */
    uint64_t t1 = 1000000;
    assert_int_equal(acq(r, "c", &l, 0, t1, &why, &retry), 0);
    assert_int_equal(vs_egress_rate_charge(r, "c", &l, 9000, t1), 0); /* 3000 bytes of debt */
    assert_int_equal(vs_egress_rate_release(r, "c", t1), 0);
    assert_int_equal(once(r, "c", &l, 0, t1, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_BYTES);
    assert_int_equal(retry, 30000);      /* 3000 bytes at one per 10 ms */
    assert_int_equal(once(r, "c", &l, 0, t1 + 29999, &why, &retry), -EAGAIN);
    assert_int_equal(once(r, "c", &l, 0, t1 + 30000, &why, &retry), 0);
    assert_int_equal(once(r, "c", &l, 1, t1 + 30000, &why, &retry), -EAGAIN);
    /* a hostile size is clamped, not wrapped */
    assert_int_equal(acq(r, "d", &l, 0, t1, &why, &retry), 0);
    assert_int_equal(vs_egress_rate_charge(r, "d", &l, UINT64_MAX, t1), 0);
    assert_int_equal(vs_egress_rate_charge(r, "d", &l, UINT64_MAX, t1), 0);
    assert_int_equal(vs_egress_rate_release(r, "d", t1), 0);
    assert_int_equal(once(r, "d", &l, 0, t1 + 86400000, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_BYTES);
    assert_int_equal(vs_egress_rate_charge(r, "nobody", &l, 1, t1), -ENOENT);
    vs_egress_rate_free(r);
}

static void test_rate_concurrency(void **state)
{
    (void)state;
    vs_egress_rate *r = NULL;
    assert_int_equal(vs_egress_rate_new(4, &r), 0);
    struct vs_egress_rate_limits l = {1000, 1ull << 20, 2};
    const char *why = NULL;
    uint64_t retry = 7;
    assert_int_equal(acq(r, "a", &l, 0, 0, &why, &retry), 0);
    assert_int_equal(acq(r, "a", &l, 0, 0, &why, &retry), 0);
    assert_int_equal(acq(r, "a", &l, 0, 0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_CONCURRENCY);
    assert_int_equal(retry, 0);          /* depends on a release, not on time */
    assert_int_equal(acq(r, "a", &l, 0, 100000, &why, &retry), -EAGAIN);
    assert_int_equal(acq(r, "b", &l, 0, 0, &why, &retry), 0); /* per agent */
    assert_int_equal(vs_egress_rate_release(r, "a", 1), 0);
    assert_int_equal(acq(r, "a", &l, 0, 1, &why, &retry), 0);
    assert_int_equal(acq(r, "a", &l, 0, 1, &why, &retry), -EAGAIN);
    assert_int_equal(vs_egress_rate_release(r, "a", 2), 0);
    assert_int_equal(vs_egress_rate_release(r, "a", 2), 0);
    assert_int_equal(vs_egress_rate_release(r, "a", 2), -ENOENT); /* nothing in flight */
    assert_int_equal(vs_egress_rate_release(r, "zz", 2), -ENOENT);
    /* a denied request took no tokens */
    struct vs_egress_rate_limits one = {2, 1ull << 20, 1};
    assert_int_equal(acq(r, "c", &one, 0, 0, &why, &retry), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(acq(r, "c", &one, 0, 0, &why, &retry), -EAGAIN);
    assert_int_equal(vs_egress_rate_release(r, "c", 0), 0);
    assert_int_equal(acq(r, "c", &one, 0, 0, &why, &retry), 0);
    assert_int_equal(vs_egress_rate_release(r, "c", 0), 0);
    assert_int_equal(acq(r, "c", &one, 0, 0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_REQUESTS);
    vs_egress_rate_free(r);
}

static void test_rate_hostile(void **state)
{
    (void)state;
    vs_egress_rate *r = NULL;
    const char *why = NULL;
    uint64_t retry = 0;
    assert_int_equal(vs_egress_rate_new(0, &r), -EINVAL);
    assert_int_equal(vs_egress_rate_new((1u << 20) + 1, &r), -EINVAL);
    assert_int_equal(vs_egress_rate_new(64, NULL), -EINVAL);
    assert_int_equal(vs_egress_rate_new(64, &r), 0);

    /* ids: empty, too long (also a megabyte), NULL, bad limits */
    char *huge = malloc(1u << 20);
    assert_non_null(huge);
    memset(huge, 'x', (1u << 20) - 1);
    huge[(1u << 20) - 1] = '\0';
    assert_int_equal(acq(r, huge, &BIG, 0, 0, &why, &retry), -EINVAL);
    huge[VS_EGRESS_AGENT_MAX + 1] = '\0';
    assert_int_equal(acq(r, huge, &BIG, 0, 0, &why, &retry), -EINVAL);
    huge[VS_EGRESS_AGENT_MAX] = '\0';
    assert_int_equal(once(r, huge, &BIG, 0, 0, &why, &retry), 0);
    free(huge);
    assert_int_equal(acq(r, "", &BIG, 0, 0, &why, &retry), -EINVAL);
    assert_int_equal(acq(r, NULL, &BIG, 0, 0, &why, &retry), -EINVAL);
    assert_int_equal(acq(NULL, "a", &BIG, 0, 0, &why, &retry), -EINVAL);
    assert_int_equal(acq(r, "a", NULL, 0, 0, &why, &retry), -EINVAL);
    struct vs_egress_rate_limits zero = {0, 1, 1};
    assert_int_equal(acq(r, "a", &zero, 0, 0, &why, &retry), -EINVAL);
    assert_int_equal(vs_egress_rate_release(r, NULL, 0), -EINVAL);
    assert_int_equal(vs_egress_rate_size(r), 1);

    /* many distinct agents: the table stays at its size */
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "agent-%d", i);
        assert_int_equal(once(r, id, &BIG, 0, (uint64_t)i, &why, &retry), 0);
        assert_true(vs_egress_rate_size(r) <= 64);
    }
    assert_int_equal(vs_egress_rate_size(r), 64);
    assert_int_equal(vs_egress_rate_evictions(r), 10001 - 64);
    /* the most recent 64 are the ones kept: their releases still work */
    assert_int_equal(acq(r, "agent-9999", &BIG, 0, 10000, &why, &retry), 0);
    assert_int_equal(vs_egress_rate_release(r, "agent-9999", 10000), 0);
    assert_int_equal(vs_egress_rate_size(r), 64);
    vs_egress_rate_free(r);

    /* a table full of agents in flight denies a newcomer and evicts no one */
    assert_int_equal(vs_egress_rate_new(8, &r), 0);
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "busy-%d", i);
        assert_int_equal(acq(r, id, &BIG, 0, 0, &why, &retry), 0);
    }
    assert_int_equal(acq(r, "new", &BIG, 0, 0, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_TABLE_FULL);
    assert_int_equal(vs_egress_rate_evictions(r), 0);
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "busy-%d", i);
        assert_int_equal(acq(r, id, &BIG, 0, 0, &why, &retry), 0); /* still known: in flight 2 */
    }
    assert_int_equal(vs_egress_rate_release(r, "busy-3", 0), 0);
    assert_int_equal(acq(r, "new", &BIG, 0, 0, &why, &retry), -EAGAIN); /* busy-3 has one more */
    assert_int_equal(vs_egress_rate_release(r, "busy-3", 0), 0);
    assert_int_equal(acq(r, "new", &BIG, 0, 0, &why, &retry), 0);      /* evicts busy-3 */
    assert_int_equal(vs_egress_rate_evictions(r), 1);
    assert_int_equal(vs_egress_rate_release(r, "busy-3", 0), -ENOENT);
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "busy-%d", i);
        if (i != 3)
            assert_int_equal(vs_egress_rate_release(r, id, 0), 0);
    }
    vs_egress_rate_free(r);

    /* eviction prefers agents with full buckets: a throttled agent is not
     * forgotten (and so refilled) because others come and go */
    assert_int_equal(vs_egress_rate_new(4, &r), 0);
    struct vs_egress_rate_limits l = {5, 1ull << 20, 4};
    for (int i = 0; i < 5; i++)
        assert_int_equal(once(r, "hot", &l, 0, 0, &why, &retry), 0);
    assert_int_equal(once(r, "hot", &l, 0, 0, &why, &retry), -EAGAIN);
    /* passers refill within a millisecond (a million a minute) */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "passer-%d", i);
        assert_int_equal(once(r, id, &BIG, 0, 1 + (uint64_t)i, &why, &retry), 0);
    }
    assert_int_equal(vs_egress_rate_evictions(r), 17);
    assert_int_equal(once(r, "hot", &l, 0, 30, &why, &retry), -EAGAIN);
    assert_string_equal(why, VS_EGRESS_RATE_REQUESTS);
    vs_egress_rate_free(r);
    vs_egress_rate_free(NULL);
}

/* ---- pinning ---- */

/* A one-shot HTTP server on 127.0.0.1 in a child process: it accepts one
 * connection, answers 200 "pinned" and exits (within 10 s in any case).
 * *port gets its port. */
static pid_t serve_once(uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static const char reply[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\npinned";
        char req[2048];
        alarm(10);
        int c = accept(fd, NULL, NULL);
        if (c >= 0 && read(c, req, sizeof req) > 0 && write(c, reply, sizeof reply - 1) > 0) {
            _exit(0);
        }
        _exit(1);
    }
    close(fd);
    return pid;
}

static size_t keep_body(char *data, size_t size, size_t n, void *arg)
{
    char *body = arg;
    size_t have = strlen(body), add = size * n;
    if (have + add >= 64)
        return 0;
    memcpy(body + have, data, add);
    body[have + add] = '\0';
    return add;
}

static void test_pin(void **state)
{
    (void)state;
    uint16_t port;
    pid_t pid = serve_once(&port);
    char yaml[400], url[96], pin[128], want[96], body[64] = "";
    const char *why = NULL;
    int status;

    snprintf(yaml, sizeof yaml,
             "policies:\n"
             "  - name: test\n    agents: ['*']\n    hosts: [pinned.vs.test]\n"
             "    ports: [%u]\n    schemes: [http]\n    allow_loopback: true\n"
             "  - name: strict\n    agents: [strict]\n    hosts: [pinned.vs.test]\n"
             "    ports: [%u]\n    schemes: [http]\n",
             port, port);
    vs_egress_policies *ps = load_ok(yaml);
    const vs_egress_policy *test = vs_egress_policies_at(ps, 0), *strict = vs_egress_policies_at(ps, 1);
    struct vs_egress_decision d;
    snprintf(url, sizeof url, "http://pinned.vs.test:%u/page", port);
    assert_int_equal(vs_egress_check_url(test, url, "GET", 0, &d), 0);
    assert_true(d.allow);

    /* what a resolver answered: 127.0.0.1, and in a second answer 10.0.0.1 too */
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in ten = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0A000001)};
    struct addrinfo second = {.ai_family = AF_INET, .ai_addrlen = sizeof ten,
                              .ai_addr = (struct sockaddr *)&ten};
    struct addrinfo first = {.ai_family = AF_INET, .ai_addrlen = sizeof lo,
                             .ai_addr = (struct sockaddr *)&lo, .ai_next = &second};
    assert_int_equal(vs_egress_pin(test, &d, &first, pin, sizeof pin, &why), -EACCES);
    assert_string_equal(why, "address-private");
    assert_string_equal(pin, "");
    first.ai_next = NULL;
    assert_int_equal(vs_egress_pin(strict, &d, &first, pin, sizeof pin, &why), -EACCES);
    assert_string_equal(why, "address-loopback");
    assert_int_equal(vs_egress_pin(test, &d, NULL, pin, sizeof pin, &why), -ENOENT);
    assert_int_equal(vs_egress_pin(test, &d, &first, pin, 10, &why), -ENOSPC);
    assert_int_equal(vs_egress_pin(test, &d, &first, pin, sizeof pin, &why), 0);
    snprintf(want, sizeof want, "pinned.vs.test:%u:127.0.0.1", port);
    assert_string_equal(pin, want);
    assert_string_equal(why, "allowed");

    /* libcurl connects where the pin says, with no lookup of a name that
     * has none (.test is reserved) */
    CURL *c = curl_easy_init();
    struct curl_slist *resolve = curl_slist_append(NULL, pin);
    assert_non_null(c);
    assert_non_null(resolve);
    curl_easy_setopt(c, CURLOPT_URL, d.url);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    assert_string_equal(body, "pinned");
    curl_slist_free_all(resolve);
    curl_easy_cleanup(c);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    vs_egress_policies_free(ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_matching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_decisions, setup, teardown),
        cmocka_unit_test(test_ipv4_ranges),
        cmocka_unit_test(test_ipv6_ranges),
        cmocka_unit_test_setup_teardown(test_allow_loopback, setup, teardown),
        cmocka_unit_test(test_rate_requests_exact),
        cmocka_unit_test(test_rate_bytes),
        cmocka_unit_test(test_rate_concurrency),
        cmocka_unit_test(test_rate_hostile),
        cmocka_unit_test_setup_teardown(test_pin, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
