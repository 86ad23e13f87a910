/*
 * bench_egressd.c - fetches per second through the egress worker against a
 * local HTTP server, beside plain curl fetching the same page from the same
 * server in the same run:
 *   vs-egressd - the real daemon (a process, log level warn) answering N
 *                REQUEST_DATA commands of one task (a task fetches many
 *                pages with one reply key), C in flight, each made the way
 *                sandboxd makes it: a RequestData sealed afresh to the
 *                egress pool key inside an AgentCommand, sent with
 *                vs_bus_request, the reply's EgressResult opened with the
 *                task's key and its body compared with the page. Per fetch
 *                the daemon unseals, checks policy and rate, scans the URL,
 *                resolves (a fixed answer) and pins the address, fetches
 *                through its pooled libcurl connections, scans the
 *                response, seals the result and emits an audit event into
 *                JetStream. The client's sealing and opening run in this
 *                process, on the same cores, as sandboxd's would.
 *   libcurl    - a libcurl multi handle with C easy handles reused (their
 *                connections kept alive), driven by curl_multi_poll, the
 *                body compared the same way: the floor of the transfer
 *                alone, no policy, no bus.
 *   curl CLI   - C curl processes at once, each given its share of the N
 *                URLs in a -K config file, so each reuses one connection:
 *                what a script fetching in parallel gets (process start-up
 *                included). Skipped, saying so, when /usr/bin/curl is absent.
 * All three fetch /ok of tests/harness/httpd.h on 127.0.0.1 (the daemon as
 * http://bench.test:<port>/ok, the name a fixed answer to 127.0.0.1, the
 * policy allowing loopback and rate limits that never deny); rates are the
 * fetches that succeeded over wall-clock time, latencies the p50 and p99
 * of single fetches, and the connections the server accepted show whether
 * each subject kept its connections alive (C of them at most). The
 * daemon is stopped (its counters and peak RSS read first) before the
 * baselines run, so they do not share the cores with an idle worker; the
 * bench process itself, nats-server and the HTTP server share them with
 * every subject. Every fetch is checked: a run with any error or a daemon
 * that does not stop cleanly exits 1; timings are never judged (the ctest
 * bench.egressd_smoke runs --quick to prove this runs).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bench_common.h"
#include "bench_daemon.h"
#include "busfix.h"
#include "httpd.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/v1/agent.pb-c.h"

#define PROG "bench_egressd"
#define AGENT "bench-agent"
#define HOST "bench.test"
#define CURL_BIN "/usr/bin/curl"
#define MAX_IN_FLIGHT 1024        /* a policy's max_concurrent at most */
#define REQUEST_TIMEOUT_MS 20000  /* one fetch through the daemon */
#define START_TIMEOUT_MS 120000   /* the built-in rulesets compile slowly under ASan */
#define STOP_TIMEOUT_MS 15000
#define ERRORS_SHOWN 10           /* per subject; the rest are only counted */

static const char OK_BODY[] = VS_HTTPD_OK_BODY;
#define OK_LEN (sizeof OK_BODY - 1)

/* What one subject's fetches came to. */
struct tally {
    const char *subject;
    uint64_t ok, errors;
    double *latency_ms;           /* of the ok fetches; NULL: not measured */
    double seconds;               /* wall clock of the whole run */
    uint64_t connections;         /* that the HTTP server accepted during the run */
};

struct env {
    struct bench_daemon b;
    struct vs_httpd http;
    uint64_t n;
    unsigned in_flight;
    vs_boxkey *pool, *task_key;
    uint8_t pool_id[VS_KEY_ID_LEN];
    uint8_t task[VS_ID_LEN];      /* one task makes every fetch */
    uint8_t *request, *sealed;    /* the packed RequestData, and room for it sealed */
    size_t request_len;
    /* the daemon phase, driven by reply callbacks */
    struct tally daemon;
    uint64_t sent, answered;
    bool done, over;              /* all answered; phase abandoned at its deadline */
    double finished;
};

/* One fetch in flight through the daemon. */
struct slot {
    struct env *e;
    uint8_t command_id[VS_ID_LEN];
    double sent;
};

/* Count fetches failed, for the reason given (shown for the first few). */
static void tally_errors(struct tally *t, uint64_t count, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tally_errors(struct tally *t, uint64_t count, const char *fmt, ...)
{
    bool shown = t->errors < ERRORS_SHOWN;
    t->errors += count;
    if (!shown)
        return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (count == 1)
        fprintf(stderr, PROG ": %s: %s\n", t->subject, why);
    else
        fprintf(stderr, PROG ": %s: %" PRIu64 " fetches: %s\n", t->subject, count, why);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The percentile (nearest rank) of v[0..n), n > 0, sorted. */
static double percentile(const double *v, uint64_t n, unsigned pct)
{
    uint64_t rank = (n * pct + 99) / 100;
    return v[rank > 0 ? rank - 1 : 0];
}

static double rate(const struct tally *t)
{
    return t->seconds > 0 ? (double)t->ok / t->seconds : 0;
}

/* "NNNN fetches/s  p50 X.X ms  p99 X.X ms" under the subject's label. */
static void report(const char *label, struct tally *t)
{
    printf("%-47s %6.0f fetches/s", label, rate(t));
    if (t->latency_ms != NULL && t->ok > 0) {
        qsort(t->latency_ms, t->ok, sizeof *t->latency_ms, compare_double);
        printf("  p50 %.1f ms  p99 %.1f ms", percentile(t->latency_ms, t->ok, 50),
               percentile(t->latency_ms, t->ok, 99));
    }
    printf("  %" PRIu64 " connection%s", t->connections, t->connections == 1 ? "" : "s");
    if (t->errors > 0)
        printf("  (%" PRIu64 " ERRORS)", t->errors);
    printf("\n");
}

/* ---- the daemon -------------------------------------------------------------------- */

static bool answers(struct vs_daemon *d, void *arg)
{
    (void)d;
    struct env *e = arg;
    static const char *const names[] = {"allowed"};
    uint64_t v;
    return vs_test_counters(e->b.bus, "egressd", names, &v, 1, 300) >= 0;
}

/* Pool key, policy and configuration in the scratch directory; the daemon
 * started and answering. */
static int start_daemon(struct env *e)
{
    struct bench_daemon *b = &e->b;
    char key[300], policies[300];
    snprintf(key, sizeof key, "%s/pool.key", b->dir);
    snprintf(policies, sizeof policies, "%s/policies.yaml", b->dir);
    if (vs_boxkey_save(e->pool, key) < 0 ||
        vs_write_file(policies,
                      "policies:\n"
                      "  - name: bench\n"
                      "    agents: [" AGENT "]\n"
                      "    hosts: [" HOST "]\n"
                      "    ports: [%d]\n"
                      "    schemes: [http]\n"
                      "    allow_loopback: true\n"
                      "    rate: {requests_per_min: 1000000, bytes_per_min: 1099511627776,"
                      " max_concurrent: %d}\n",
                      e->http.port, MAX_IN_FLIGHT) < 0 ||
        vs_write_file(b->daemon.cfg,
                      "nats:\n  url: %s\nlog:\n  level: warn\nshutdown_timeout: 10s\n"
                      "egressd:\n  pool_key: %s\n  policies: %s\n"
                      "  max_requests: %d\n  resolve:\n    - " HOST "=127.0.0.1\n",
                      b->nats.url, key, policies, MAX_IN_FLIGHT) < 0) {
        fprintf(stderr, PROG ": cannot write the daemon's files in %s\n", b->dir);
        return -EIO;
    }
    if (vs_daemon_spawn(&b->daemon) < 0 ||
        vs_daemon_wait(&b->daemon, NULL, answers, e, START_TIMEOUT_MS, 20) < 0) {
        fprintf(stderr, PROG ": vs-egressd did not come up (see %s)\n", b->daemon.log);
        vs_daemon_dump_log(&b->daemon);
        return -EIO;
    }
    return 0;
}

/* 0 when the reply is OK and its sealed EgressResult is the page; else
 * why not into why. */
static int check_reply(struct env *e, const struct slot *s, int status,
                       const Vs__V1__AgentReply *reply, char *why, size_t size)
{
    if (status < 0) {
        snprintf(why, size, "no reply: %s", strerror(-status));
        return -1;
    }
    if (reply->status == NULL) {
        snprintf(why, size, "a reply without a status");
        return -1;
    }
    if (reply->status->code != VS__V1__STATUS_CODE__STATUS_OK) {
        const ProtobufCEnumValue *code = protobuf_c_enum_descriptor_get_value(
            &vs__v1__status_code__descriptor, (int)reply->status->code);
        snprintf(why, size, "%s: %s", code != NULL ? code->name : "unknown status",
                 reply->status->reason != NULL ? reply->status->reason : "");
        return -1;
    }
    if (reply->command_id.len != VS_ID_LEN ||
        memcmp(reply->command_id.data, s->command_id, VS_ID_LEN) != 0) {
        snprintf(why, size, "the reply is for another command");
        return -1;
    }
    const Vs__V1__SealedPayload *p = reply->body_case == VS__V1__AGENT_REPLY__BODY_DATA
                                         ? reply->data
                                         : NULL;
    if (p == NULL || p->blob != NULL || p->ciphertext.len < VS_SEAL_OVERHEAD) {
        snprintf(why, size, "no inline sealed data in the reply");
        return -1;
    }
    size_t n = p->ciphertext.len - VS_SEAL_OVERHEAD;
    uint8_t *plain = malloc(n > 0 ? n : 1);
    Vs__V1__EgressResult *r = NULL;
    if (plain != NULL && vs_unseal(e->task_key, p->ciphertext.data, p->ciphertext.len, plain) == 0)
        r = vs__v1__egress_result__unpack(NULL, n, plain);
    free(plain);
    int rc = 0;
    if (r == NULL) {
        snprintf(why, size, "the reply's data does not open with the task key");
        rc = -1;
    } else if (r->http_status != 200 || r->body.len != OK_LEN ||
               memcmp(r->body.data, OK_BODY, OK_LEN) != 0) {
        snprintf(why, size, "HTTP %u, %zu bytes that are not the page", (unsigned)r->http_status,
                 r->body.len);
        rc = -1;
    }
    if (r != NULL)
        vs__v1__egress_result__free_unpacked(r, NULL);
    return rc;
}

static void on_reply(int status, const ProtobufCMessage *msg, void *arg);

/* One fetch as sandboxd sends it: the request sealed afresh to the pool
 * key, a new command id, the task's id and reply key. */
static int send_fetch(struct env *e, struct slot *s)
{
    if (vs_seal(vs_boxkey_public(e->pool), e->request, e->request_len, e->sealed) < 0)
        return -EINVAL;
    vs_id_new(s->command_id);
    Vs__V1__SealedPayload sp = VS__V1__SEALED_PAYLOAD__INIT;
    sp.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, e->pool_id};
    sp.ciphertext = (ProtobufCBinaryData){e->request_len + VS_SEAL_OVERHEAD, e->sealed};
    Vs__V1__AgentCommand c = VS__V1__AGENT_COMMAND__INIT;
    c.type = VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA;
    c.command_id = (ProtobufCBinaryData){VS_ID_LEN, s->command_id};
    c.agent = AGENT;
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, e->task};
    c.reply_box_key = (ProtobufCBinaryData){VS_BOX_PUBLICKEY_LEN,
                                            (uint8_t *)vs_boxkey_public(e->task_key)};
    c.body_case = VS__V1__AGENT_COMMAND__BODY_SEALED;
    c.sealed = &sp;
    s->sent = bench_now_s();
    return vs_bus_request(e->b.bus, "vs.egress.fetch", &c.base, &vs__v1__agent_reply__descriptor,
                          REQUEST_TIMEOUT_MS, on_reply, s);
}

/* The slot's next fetch, while any are left to send. */
static void next_fetch(struct env *e, struct slot *s)
{
    while (e->sent < e->n) {
        e->sent++;
        int rc = send_fetch(e, s);
        if (rc == 0)
            return;
        tally_errors(&e->daemon, 1, "cannot send: %s", strerror(-rc));
        e->answered++;
    }
    if (e->answered == e->n && !e->done) {
        e->done = true;
        e->finished = bench_now_s();
    }
}

static void on_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct slot *s = arg;
    struct env *e = s->e;
    if (e->over)
        return;
    double ms = (bench_now_s() - s->sent) * 1000.0;
    char why[256];
    if (check_reply(e, s, status, (const Vs__V1__AgentReply *)msg, why, sizeof why) == 0)
        e->daemon.latency_ms[e->daemon.ok++] = ms;
    else
        tally_errors(&e->daemon, 1, "%s", why);
    e->answered++;
    next_fetch(e, s);
}

/* N fetches through the daemon, in_flight at a time. The slots stay
 * allocated until the bus is freed: a reply abandoned at the deadline may
 * still call back (and is ignored). */
static void run_daemon(struct env *e, struct slot *slots)
{
    double t0 = bench_now_s();
    for (unsigned i = 0; i < e->in_flight && e->sent < e->n; i++) {
        slots[i].e = e;
        next_fetch(e, &slots[i]);
    }
    if (vs_bus_run_until(e->b.bus, &e->done, e->b.cfg.deadline_ms) < 0) {
        e->over = true;
        tally_errors(&e->daemon, e->n - e->answered, "no answer within the deadline");
        e->finished = bench_now_s();
    }
    e->daemon.seconds = e->finished - t0;
}

/* The daemon's counters and peak memory into its line of the report, then
 * a clean stop; 0, or -1 when it did not exit with status 0. */
static int finish_daemon(struct env *e, char *line, size_t size)
{
    static const char *const names[] = {"allowed", "denied", "failed", "invalid", "flagged"};
    uint64_t v[5] = {0};
    char hwm[64] = "?";
    if (vs_test_counters(e->b.bus, "egressd", names, v, 5, 5000) < 0)
        fprintf(stderr, PROG ": vs-egressd did not report its counters\n");
    vs_proc_status_field(e->b.daemon.pid, "VmHWM", hwm, sizeof hwm);
    snprintf(line, size,
             "vs-egressd counters: allowed %" PRIu64 ", denied %" PRIu64 ", failed %" PRIu64
             ", invalid %" PRIu64 ", flagged %" PRIu64 "; peak RSS (VmHWM) %s",
             v[0], v[1], v[2], v[3], v[4], hwm);
    int status = vs_daemon_stop(&e->b.daemon, STOP_TIMEOUT_MS);
    if (status != 0) {
        fprintf(stderr, PROG ": vs-egressd did not stop cleanly (wait status %d)\n", status);
        vs_daemon_dump_log(&e->b.daemon);
        return -1;
    }
    return 0;
}

/* ---- libcurl ----------------------------------------------------------------------- */

struct transfer {
    CURL *easy;
    char body[OK_LEN];
    size_t len;                   /* received, possibly more than body holds */
    double sent;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb;
    if (t->len < sizeof t->body)
        memcpy(t->body + t->len, data, n < sizeof t->body - t->len ? n : sizeof t->body - t->len);
    t->len += n;
    return n;
}

static int start_transfer(CURLM *multi, struct transfer *t)
{
    t->len = 0;
    t->sent = bench_now_s();
    return curl_multi_add_handle(multi, t->easy) == CURLM_OK ? 0 : -EIO;
}

/* A finished transfer into the tally. */
static void check_transfer(struct tally *tally, struct transfer *t, CURLcode result)
{
    double ms = (bench_now_s() - t->sent) * 1000.0;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (result != CURLE_OK)
        tally_errors(tally, 1, "%s", curl_easy_strerror(result));
    else if (code != 200 || t->len != OK_LEN || memcmp(t->body, OK_BODY, OK_LEN) != 0)
        tally_errors(tally, 1, "HTTP %ld, %zu bytes that are not the page", code, t->len);
    else
        tally->latency_ms[tally->ok++] = ms;
}

/* N fetches of url with in_flight easy handles on one multi handle. */
static void run_libcurl(const struct env *e, const char *url, struct tally *tally)
{
    CURLM *multi = curl_multi_init();
    struct transfer *ts = calloc(e->in_flight, sizeof *ts);
    int rc = multi != NULL && ts != NULL ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < e->in_flight; i++) {
        ts[i].easy = curl_easy_init();
        if (ts[i].easy == NULL) {
            rc = -ENOMEM;
            break;
        }
        curl_easy_setopt(ts[i].easy, CURLOPT_URL, url);
        curl_easy_setopt(ts[i].easy, CURLOPT_PROXY, "");
        curl_easy_setopt(ts[i].easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(ts[i].easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(ts[i].easy, CURLOPT_WRITEDATA, &ts[i]);
        curl_easy_setopt(ts[i].easy, CURLOPT_PRIVATE, &ts[i]);
    }
    uint64_t started = 0, finished = 0;
    double t0 = bench_now_s(), deadline = t0 + (double)e->b.cfg.deadline_ms / 1000.0;
    for (unsigned i = 0; rc == 0 && i < e->in_flight && started < e->n; i++, started++)
        rc = start_transfer(multi, &ts[i]);
    while (rc == 0 && finished < e->n && bench_now_s() < deadline) {
        int running, left;
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            rc = -EIO;
        CURLMsg *m;
        while (rc == 0 && (m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *priv;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            struct transfer *t = (struct transfer *)priv;
            CURLcode result = m->data.result;
            curl_multi_remove_handle(multi, t->easy);
            check_transfer(tally, t, result);
            finished++;
            if (started < e->n) {
                started++;
                rc = start_transfer(multi, t);
            }
        }
        if (rc == 0 && finished < e->n && curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK)
            rc = -EIO;
    }
    tally->seconds = bench_now_s() - t0;
    if (finished < e->n)
        tally_errors(tally, e->n - finished, "%s",
                     rc < 0 ? strerror(-rc) : "not done within the deadline");
    for (unsigned i = 0; ts != NULL && i < e->in_flight; i++) {
        if (ts[i].easy != NULL) {
            curl_multi_remove_handle(multi, ts[i].easy);
            curl_easy_cleanup(ts[i].easy);
        }
    }
    free(ts);
    curl_multi_cleanup(multi);
}

/* ---- the curl command line ----------------------------------------------------------- */

struct curl_proc {
    uint64_t share;               /* URLs it is given */
    pid_t pid;
    int status;                   /* its wait status, or -errno: not started, or killed at
                                     the deadline */
    char conf[320], out[320], err[320];
};

/* p's config file: share URLs, each to /dev/null, each transfer's HTTP
 * status on a line of stdout. 0 or -EIO. */
static int write_curl_config(const struct curl_proc *p, const char *url)
{
    FILE *f = fopen(p->conf, "w");
    if (f == NULL)
        return -EIO;
    fprintf(f, "silent\nnoproxy = \"*\"\nwrite-out = \"%%{http_code}\\n\"\n");
    for (uint64_t k = 0; k < p->share; k++)
        fprintf(f, "url = \"%s\"\noutput = \"/dev/null\"\n", url);
    return fclose(f) == 0 ? 0 : -EIO;
}

/* The lines of a curl process's stdout that say 200. */
static uint64_t count_200(const char *path)
{
    char *text = vs_slurp(path);
    uint64_t n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
        n += strcmp(line, "200") == 0;
    free(text);
    return n;
}

/* What p's fetches came to. */
static void check_curl_proc(struct tally *tally, unsigned i, const struct curl_proc *p)
{
    uint64_t got = count_200(p->out);
    tally->ok += got;
    if (got == p->share && p->status == 0)
        return;
    char how[64];
    if (p->status == -ETIMEDOUT)
        snprintf(how, sizeof how, "killed at the deadline");
    else if (p->status < 0)
        snprintf(how, sizeof how, "%s", strerror(-p->status));
    else if (WIFEXITED(p->status))
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(p->status));
    else
        snprintf(how, sizeof how, "signal %d", WTERMSIG(p->status));
    char *err = vs_slurp(p->err);
    tally_errors(tally, got < p->share ? p->share - got : 1,
                 "process %u fetched %" PRIu64 " of %" PRIu64 " (%s) %.200s", i, got, p->share,
                 how, err);
    free(err);
}

/* in_flight curl processes at once (fewer when N is smaller), N URLs
 * between them; timed from the first start to the last exit. */
static void run_curl_cli(const struct env *e, const char *url, struct tally *tally)
{
    unsigned np = e->in_flight < e->n ? e->in_flight : (unsigned)e->n;
    struct curl_proc *ps = calloc(np, sizeof *ps);
    if (ps == NULL) {
        tally_errors(tally, e->n, "out of memory");
        return;
    }
    for (unsigned i = 0; i < np; i++) {
        struct curl_proc *p = &ps[i];
        p->share = e->n / np + (i < e->n % np ? 1 : 0);
        snprintf(p->conf, sizeof p->conf, "%s/curl-%u.conf", e->b.dir, i);
        snprintf(p->out, sizeof p->out, "%s/curl-%u.out", e->b.dir, i);
        snprintf(p->err, sizeof p->err, "%s/curl-%u.err", e->b.dir, i);
        p->status = write_curl_config(p, url);
    }
    double t0 = bench_now_s(), deadline = t0 + (double)e->b.cfg.deadline_ms / 1000.0;
    for (unsigned i = 0; i < np; i++) {
        struct curl_proc *p = &ps[i];
        const char *const argv[] = {CURL_BIN, "-q", "-K", p->conf, NULL};
        struct vs_spawn sp = {.argv = argv, .out = p->out, .err = p->err};
        if (p->status == 0 && (p->pid = vs_proc_start(&sp)) < 0)
            p->status = p->pid;
    }
    for (unsigned i = 0; i < np; i++) {
        struct curl_proc *p = &ps[i];
        if (p->pid <= 0)
            continue;
        double left_ms = (deadline - bench_now_s()) * 1000.0;
        p->status = vs_proc_wait(p->pid, left_ms > 0 ? (int)left_ms : 0);
        if (p->status == -ETIMEDOUT)
            vs_proc_kill(p->pid);
    }
    tally->seconds = bench_now_s() - t0;
    for (unsigned i = 0; i < np; i++)
        check_curl_proc(tally, i, &ps[i]);
    free(ps);
}

/* ---- the run ------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " [--n N] [-c C] [--quick]\n"
            "  --n N             fetches per subject (5000)\n"
            "  -c, --concurrency C\n"
            "                    fetches in flight, curl processes for the CLI (32, at most %d)\n"
            "  --quick           200 fetches (the ctest smoke run)\n"
            "Fetches a page of a local HTTP server through vs-egressd (a real process on a\n"
            "nats-server of its own), with libcurl and with the curl command line, in\n"
            "the same run; prints each rate, the daemon's latencies, and the ratio.\n",
            MAX_IN_FLIGHT);
}

/* The options into e; -1 to go on, else the exit status. */
static int parse_args(struct env *e, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"n", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"quick", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    e->n = 5000;
    e->in_flight = 32;
    e->b.cfg.deadline_ms = 120000;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n': e->n = strtoull(optarg, NULL, 10); break;
        case 'c': e->in_flight = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'q':
            e->n = 200;
            e->b.cfg.deadline_ms = 30000;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || e->n == 0 || e->n > 100000000 || e->in_flight == 0 ||
        e->in_flight > MAX_IN_FLIGHT) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Keys, the request every fetch seals, the latency arrays, the HTTP server,
 * the frame (scratch directory, nats-server, bus) and the daemon. */
static int setup(struct env *e)
{
    struct bench_daemon *b = &e->b;
    if (vs_crypto_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        vs_boxkey_new(&e->pool) < 0 || vs_boxkey_new(&e->task_key) < 0)
        return -EIO;
    vs_key_id(vs_boxkey_public(e->pool), VS_BOX_PUBLICKEY_LEN, e->pool_id);
    vs_id_new(e->task);
    if (vs_httpd_start(&e->http) < 0) {
        fprintf(stderr, PROG ": cannot start the HTTP server\n");
        return -EIO;
    }
    char url[96];
    snprintf(url, sizeof url, "http://" HOST ":%d/ok", e->http.port);
    Vs__V1__RequestData rd = VS__V1__REQUEST_DATA__INIT;
    rd.url = url;
    rd.method = "GET";
    e->request_len = vs__v1__request_data__get_packed_size(&rd);
    e->request = malloc(e->request_len);
    e->sealed = malloc(e->request_len + VS_SEAL_OVERHEAD);
    e->daemon.latency_ms = calloc(e->n, sizeof(double));
    if (e->request == NULL || e->sealed == NULL || e->daemon.latency_ms == NULL)
        return -ENOMEM;
    vs__v1__request_data__pack(&rd, e->request);
    if (bench_daemon_setup(b, VS_EGRESSD_BIN) < 0)
        return -EIO;
    return start_daemon(e);
}

int main(int argc, char **argv)
{
    struct env e = {.b = {.prog = PROG, .component = "egressd", .cfg = {.parent = "/tmp"}},
                    .daemon = {.subject = "vs-egressd"}};
    atomic_init(&e.b.pub_errors, 0);
    int status = parse_args(&e, argc, argv);
    if (status >= 0)
        return status;
    char direct_url[96];
    struct tally libcurl = {.subject = "libcurl"}, cli = {.subject = "curl CLI"};
    struct slot *slots = calloc(e.in_flight, sizeof *slots);
    libcurl.latency_ms = calloc(e.n, sizeof(double));
    status = 1;
    if (slots == NULL || libcurl.latency_ms == NULL ||
        setup(&e) < 0) {
        printf(PROG ": incomplete run (see the notes above)\n");
        goto out;
    }
    snprintf(direct_url, sizeof direct_url, "%s/ok", e.http.base);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf(PROG ": %" PRIu64 " fetches of a %zu-byte page on 127.0.0.1, %u in flight, %ld cores\n",
           e.n, OK_LEN, e.in_flight, cores);
    fflush(stdout);

    uint64_t accepted = vs_httpd_connections(&e.http);
    run_daemon(&e, slots);
    e.daemon.connections = vs_httpd_connections(&e.http) - accepted;
    char counters[256];
    int daemon_stop = finish_daemon(&e, counters, sizeof counters);
    accepted = vs_httpd_connections(&e.http);
    run_libcurl(&e, direct_url, &libcurl);
    libcurl.connections = vs_httpd_connections(&e.http) - accepted;
    bool have_cli = access(CURL_BIN, X_OK) == 0;
    if (have_cli) {
        accepted = vs_httpd_connections(&e.http);
        run_curl_cli(&e, direct_url, &cli);
        cli.connections = vs_httpd_connections(&e.http) - accepted;
    }

    report("vs-egressd (bus, sealed, policy, pin, scans):", &e.daemon);
    report("libcurl multi (no policy, no bus):", &libcurl);
    if (have_cli) {
        char label[64];
        snprintf(label, sizeof label, "curl CLI (%u processes):",
                 e.in_flight < e.n ? e.in_flight : (unsigned)e.n);
        report(label, &cli);
    } else {
        printf("curl CLI: skipped (%s is missing)\n", CURL_BIN);
    }
    if (rate(&libcurl) > 0)
        printf("vs-egressd / libcurl: %.2f\n", rate(&e.daemon) / rate(&libcurl));
    printf("%s\n", counters);
    uint64_t errors = e.daemon.errors + libcurl.errors + cli.errors;
    if (errors > 0 || daemon_stop < 0)
        printf(PROG ": %" PRIu64 " fetches failed%s (see above)\n", errors,
               daemon_stop < 0 ? ", vs-egressd did not stop cleanly" : "");
    else
        status = 0;
out:
    fflush(stdout);
    bench_daemon_teardown(&e.b);
    vs_httpd_stop(&e.http);
    free(slots);
    free(libcurl.latency_ms);
    free(e.daemon.latency_ms);
    free(e.request);
    free(e.sealed);
    vs_boxkey_free(e.pool);
    vs_boxkey_free(e.task_key);
    curl_global_cleanup();
    return status;
}
