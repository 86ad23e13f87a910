/*
 * bench_bus.c - the bus benchmark: what the bus layer (libvsbus on a libuv
 * loop) costs compared with plain cnats, measured side by side in one run
 * against one nats-server.
 *
 * Three measurements, each done by raw cnats and by the bus, same sizes:
 *   core pub/sub   N messages (default 200000, 128 bytes) published and
 *                  consumed, msg/s; plus "core typed", the same with a small
 *                  protobuf (AgentCommand heartbeat) packed and unpacked on
 *                  both sides                                 (bench_core.c)
 *   request/reply  M sequential requests (default 5000) to one raw echo
 *                  responder, p50/p99 in us                   (bench_reqrep.c)
 *   jetstream ack  K prefilled stream messages (default 50000) consumed by a
 *                  durable push consumer with one ack each, msg/s (bench_js.c)
 * The output is one line per measurement, then a summary of the ratios
 * against the targets (core >= 0.80, JetStream >= 0.70 of raw cnats).
 *
 * Why it is shaped this way: the targets are ratios, so both sides run
 * under the same conditions in the same process on the same machine (the
 * reference machine has 2 cores, so nats-server, cnats' threads and the
 * loop compete, as they do in production); absolute numbers vary from
 * machine to machine and run to run, ratios much less. The throughput
 * phases last well under a second each at the default sizes, so they run
 * in interleaved rounds (--rounds, default 3: raw then bus, bus then raw,
 * raw then bus) and report each side's median round, which keeps a
 * scheduling hiccup or a warm cache from deciding the ratio; --verbose
 * prints every round. Request/reply needs no rounds: its percentiles come
 * from M samples. Every measured run has a deadline (--deadline, default
 * 60 s) after which it reports what it got and the run moves on, so a
 * stuck phase cannot hang CI. The exit status never depends on timings: 0
 * when every phase ran and moved at least one message, 1 for bad usage or
 * no server, 2 when a phase could not run or moved nothing (a functional
 * failure, not a slow one).
 *
 * Without --url it starts its own nats-server (JetStream on, temporary
 * store) through the test harness. With --url it uses that server: all
 * subjects, the stream and durables carry a per-process tag, the stream is
 * deleted afterwards, and only the typed line publishes under vs. (on
 * vs.agent.bench-<pid>.heartbeat, a heartbeat for an agent that does not
 * exist).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench.h"
#include "natsd.h"
#include "vs/log.h"

#define TARGET_CORE 0.80
#define TARGET_JS 0.70

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_bus [--quick] [-n N] [-m M] [-k K] [--url URL] [--deadline SECONDS]\n"
            "                 [--phase core,typed,rr,js] [--side raw|bus|both] [--rounds R] [-v]\n"
            "  -n N         core pub/sub messages (default 200000)\n"
            "  -m M         request/reply round trips (default 5000)\n"
            "  -k K         JetStream messages consumed and acked (default 50000)\n"
            "  --quick      tiny sizes (n=2000 m=200 k=1000), for CI\n"
            "  --url URL    use this nats-server (JetStream enabled) instead of starting one\n"
            "  --deadline S per measured run, then it reports what it got (default 60)\n"
            "  --phase LIST comma-separated subset of core,typed,rr,js (default all)\n"
            "  --side S     raw, bus or both (default both; one side is for profiling)\n"
            "  --rounds R   interleaved rounds of the throughput phases, median reported\n"
            "               (default 3, --quick 1, at most 9)\n"
            "  -v, --verbose  print every round\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static double ratio(double num, double den)
{
    return den > 0 ? num / den : 0.0;
}

static void side_rate(char *out, size_t size, const struct rate_result *r)
{
    if (r->skipped)
        snprintf(out, size, "skipped");
    else
        snprintf(out, size, "%.0f msg/s", rate_of(r));
}

static void print_notes(const char *raw, const char *bus)
{
    if (raw[0] != '\0')
        printf("    raw: %s\n", raw);
    if (bus[0] != '\0')
        printf("    bus: %s\n", bus);
}

static void print_rate_line(const char *label, const struct rate_result *raw,
                            const struct rate_result *bus, const char *target)
{
    char a[64], b[64];
    side_rate(a, sizeof(a), raw);
    side_rate(b, sizeof(b), bus);
    printf("%-14s raw cnats: %s   bus: %s   ratio %.2f%s\n", label, a, b,
           ratio(rate_of(bus), rate_of(raw)), target);
    print_notes(raw->note, bus->note);
}

static void side_lat(char *out, size_t size, const struct lat_result *r)
{
    if (r->skipped)
        snprintf(out, size, "skipped");
    else
        snprintf(out, size, "p50 %.0f us p99 %.0f us", r->p50_us, r->p99_us);
}

static void print_lat_line(const struct lat_result *raw, const struct lat_result *bus)
{
    char a[64], b[64];
    side_lat(a, sizeof(a), raw);
    side_lat(b, sizeof(b), bus);
    printf("request/reply  raw cnats: %s   bus: %s   ratio(p50) %.2f\n", a, b,
           ratio(raw->p50_us, bus->p50_us));
    print_notes(raw->note, bus->note);
}

static const char *verdict(double r, double target, bool complete)
{
    if (!complete)
        return "INCOMPLETE";
    return r >= target ? "ok" : "BELOW TARGET";
}

static bool rate_ok(const struct rate_result *r)
{
    return r->skipped || (r->ran && r->got > 0);
}

static bool lat_ok(const struct lat_result *r)
{
    return r->skipped || (r->ran && r->got > 0);
}

enum { PH_CORE = 1, PH_TYPED = 2, PH_RR = 4, PH_JS = 8, PH_ALL = 15 };

static bool parse_phases(const char *list, unsigned *out)
{
    static const char *const names[] = {"core", "typed", "rr", "js"};
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    *out = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        for (unsigned i = 0; i < 4; i++)
            if (strcmp(t, names[i]) == 0)
                bit = 1u << i;
        if (bit == 0)
            return false;
        *out |= bit;
    }
    return *out != 0;
}

static void skip_rate(struct rate_result *r)
{
    memset(r, 0, sizeof(*r));
    r->skipped = true;
}

/* The median round (the lower one of an even count); it is complete and
 * ran only if every round was, and it carries the other rounds' notes. */
static void median_of(const struct rate_result *rounds, unsigned n, struct rate_result *out)
{
    unsigned idx[BENCH_MAX_ROUNDS] = {0};
    if (n == 0 || n > BENCH_MAX_ROUNDS) {
        skip_rate(out);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        idx[i] = i;
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && rate_of(&rounds[idx[j - 1]]) > rate_of(&rounds[idx[j]]); j--) {
            unsigned t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    unsigned mid = idx[(n - 1) / 2];
    *out = rounds[mid];
    for (unsigned i = 0; i < n; i++) {
        out->complete = out->complete && rounds[i].complete;
        out->ran = out->ran && rounds[i].ran;
        if (i != mid && rounds[i].note[0] != '\0' && strstr(out->note, rounds[i].note) == NULL)
            bench_note(out->note, sizeof(out->note), "round %u: %s", i + 1, rounds[i].note);
    }
}

static void print_rounds(const char *label, const struct rate_result *raw,
                         const struct rate_result *bus, unsigned n)
{
    printf("    %s rounds (msg/s):", label);
    for (unsigned i = 0; i < n; i++)
        printf("  raw %.0f bus %.0f", rate_of(&raw[i]), rate_of(&bus[i]));
    printf("\n");
}

/* Core pub/sub, raw or typed payload: rounds alternating which side goes first. */
static void run_core(const struct bench_cfg *cfg, bool typed, bool verbose,
                     struct rate_result *raw_med, struct rate_result *bus_med)
{
    struct rate_result raw[BENCH_MAX_ROUNDS], bus[BENCH_MAX_ROUNDS];
    for (unsigned i = 0; i < cfg->rounds; i++) {
        for (int k = 0; k < 2; k++) {
            bool raw_turn = (k == 0) == (i % 2 == 0);
            if (raw_turn)
                cfg->raw_side ? bench_core_raw(cfg, typed, &raw[i]) : skip_rate(&raw[i]);
            else
                cfg->bus_side ? bench_core_bus(cfg, typed, &bus[i]) : skip_rate(&bus[i]);
        }
    }
    median_of(raw, cfg->rounds, raw_med);
    median_of(bus, cfg->rounds, bus_med);
    if (verbose)
        print_rounds(typed ? "core typed" : "core pub/sub", raw, bus, cfg->rounds);
}

int main(int argc, char **argv)
{
    struct bench_cfg cfg = {
        .n = 200000,
        .m = 5000,
        .k = 50000,
        .batch = BENCH_BATCH,
        .window = BENCH_BATCH,
        .deadline_ms = 60000,
        .rounds = 3,
        .raw_side = true,
        .bus_side = true,
    };
    bool verbose = false, rounds_set = false;
    unsigned phases = PH_ALL;
    bool quick = false, n_set = false, m_set = false, k_set = false;
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'},     {"url", required_argument, NULL, 'u'},
        {"deadline", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
        {"phase", required_argument, NULL, 'p'}, {"side", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'}, {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "n:m:k:hv", longopts, NULL)) != -1) {
        switch (ch) {
        case 'q': quick = true; break;
        case 'u': cfg.url = optarg; break;
        case 'n':
        case 'm':
        case 'k':
        case 'd':
        case 'r':
            if (!parse_u64(optarg, &v) || v == 0 || (ch == 'r' && v > BENCH_MAX_ROUNDS)) {
                fprintf(stderr, "bench_bus: %s needs a positive integer%s\n",
                        ch == 'd' ? "--deadline" : ch == 'r' ? "--rounds" : ch == 'n' ? "-n"
                                                             : ch == 'm' ? "-m" : "-k",
                        ch == 'r' ? " up to 9" : "");
                return 1;
            }
            if (ch == 'n') { cfg.n = v; n_set = true; }
            if (ch == 'm') { cfg.m = v; m_set = true; }
            if (ch == 'k') { cfg.k = v; k_set = true; }
            if (ch == 'd') cfg.deadline_ms = v * 1000u;
            if (ch == 'r') { cfg.rounds = (unsigned)v; rounds_set = true; }
            break;
        case 'p':
            if (!parse_phases(optarg, &phases)) {
                fprintf(stderr, "bench_bus: --phase takes core,typed,rr,js\n");
                return 1;
            }
            break;
        case 's':
            if (strcmp(optarg, "raw") != 0 && strcmp(optarg, "bus") != 0 &&
                strcmp(optarg, "both") != 0) {
                fprintf(stderr, "bench_bus: --side takes raw, bus or both\n");
                return 1;
            }
            cfg.raw_side = strcmp(optarg, "bus") != 0;
            cfg.bus_side = strcmp(optarg, "raw") != 0;
            break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    if (quick) {
        if (!n_set)
            cfg.n = 2000;
        if (!m_set)
            cfg.m = 200;
        if (!k_set)
            cfg.k = 1000;
        if (!rounds_set)
            cfg.rounds = 1;
    }
    snprintf(cfg.tag, sizeof(cfg.tag), "bench-%ld", (long)getpid());
    signal(SIGPIPE, SIG_IGN);
    log_init("bench_bus", VS_LOG_WARN);

    struct vs_natsd natsd;
    bool own_server = cfg.url == NULL;
    if (own_server) {
        int rc = vs_natsd_start(&natsd);
        if (rc < 0) {
            fprintf(stderr, "bench_bus: cannot start nats-server: %s\n", strerror(-rc));
            return 1;
        }
        cfg.url = natsd.url;
    }
    if (nats_Open(-1) != NATS_OK) {
        fprintf(stderr, "bench_bus: nats_Open failed\n");
        if (own_server)
            vs_natsd_destroy(&natsd);
        return 1;
    }

    /* Fail fast, once, when the server is not there. */
    natsConnection *probe = NULL;
    natsStatus pst = natsConnection_ConnectTo(&probe, cfg.url);
    natsConnection_Destroy(probe);
    if (pst != NATS_OK) {
        fprintf(stderr, "bench_bus: cannot connect to %s: %s\n", cfg.url, natsStatus_GetText(pst));
        nats_Close();
        if (own_server)
            vs_natsd_destroy(&natsd);
        return 1;
    }

    printf("bench_bus: n=%" PRIu64 " m=%" PRIu64 " k=%" PRIu64 " payload=%d rounds=%u server=%s%s\n",
           cfg.n, cfg.m, cfg.k, BENCH_PAYLOAD, cfg.rounds, cfg.url, own_server ? " (started)" : "");
    fflush(stdout);

    struct rate_result core_raw, core_bus, typed_raw, typed_bus, js_raw, js_bus;
    struct lat_result rr_raw, rr_bus;
    bool ran = true;

    for (int typed = 0; typed < 2; typed++) {
        struct rate_result *raw = typed ? &typed_raw : &core_raw;
        struct rate_result *bus = typed ? &typed_bus : &core_bus;
        if ((phases & (typed ? PH_TYPED : PH_CORE)) == 0)
            continue;
        run_core(&cfg, typed, verbose, raw, bus);
        print_rate_line(typed ? "core typed" : "core pub/sub", raw, bus,
                        typed ? "" : " (target >= 0.80)");
        fflush(stdout);
        ran = ran && rate_ok(raw) && rate_ok(bus);
    }
    if (phases & PH_RR) {
        bench_reqrep(&cfg, &rr_raw, &rr_bus);
        print_lat_line(&rr_raw, &rr_bus);
        fflush(stdout);
        ran = ran && lat_ok(&rr_raw) && lat_ok(&rr_bus);
    }
    if (phases & PH_JS) {
        struct rate_result jr[BENCH_MAX_ROUNDS], jb[BENCH_MAX_ROUNDS];
        bench_js(&cfg, jr, jb);
        median_of(jr, cfg.rounds, &js_raw);
        median_of(jb, cfg.rounds, &js_bus);
        if (verbose)
            print_rounds("jetstream ack", jr, jb, cfg.rounds);
        print_rate_line("jetstream ack", &js_raw, &js_bus, " (target >= 0.70)");
        ran = ran && rate_ok(&js_raw) && rate_ok(&js_bus);
    }

    if (phases == PH_ALL && cfg.raw_side && cfg.bus_side) {
        double r_core = ratio(rate_of(&core_bus), rate_of(&core_raw));
        double r_typed = ratio(rate_of(&typed_bus), rate_of(&typed_raw));
        double r_rr = ratio(rr_raw.p50_us, rr_bus.p50_us);
        double r_js = ratio(rate_of(&js_bus), rate_of(&js_raw));
        printf("summary: core pub/sub %.2f (target >= %.2f: %s), jetstream ack %.2f"
               " (target >= %.2f: %s), core typed %.2f, request/reply p50 %.2f (no targets)\n",
               r_core, TARGET_CORE,
               verdict(r_core, TARGET_CORE, core_raw.complete && core_bus.complete), r_js,
               TARGET_JS, verdict(r_js, TARGET_JS, js_raw.complete && js_bus.complete), r_typed,
               r_rr);
    }
    if (!ran)
        printf("bench_bus: a phase could not run or moved nothing (see the notes above)\n");

    nats_Close();
    if (own_server)
        vs_natsd_destroy(&natsd);
    return ran ? 0 : 2;
}
