/*
 * bench_scan.c - throughput and recall of the scanners (workers/scan) on
 * a mixed corpus, beside secretlint on the same corpus in the same run.
 *
 * The corpus (corpus.h) is ordinary text from the machine - C headers,
 * Python source, licence prose, 3:3:2 by size - with tests/data/scan
 * (secrets, injections, their obfuscations and the hard negatives) in it
 * once: --mib MiB (64 by default) with secrets sprinkled through it, cut
 * into 1 MiB blocks as files would be.
 * Measured on one thread in thread CPU time (a per-core figure that other
 * load on the machine does not stretch), best of ROUNDS:
 *   - exfil: vs_scan with the exfil ruleset;
 *   - injection: vs_scan_deep with the injection ruleset - the text
 *     normalized, and every encoded run decoded and normalized;
 *   - both again on tests/data/scan alone, where nearly every line is a
 *     candidate: the worst case rather than the usual one;
 *   - secretlint (npm `secretlint` with `@secretlint/secretlint-rule-
 *     preset-recommend`, installed into the scratch directory from the
 *     npm registry) on the same blocks written as files, timed as the CPU
 *     time of its whole command line;
 *   - recall of both on the corpus's secrets: each exfil positive file of
 *     tests/data/scan on its own; vs-scan must name the expected rule,
 *     secretlint must report anything in that file.
 * Targets (the scanners' issue): exfil >= 500 MB/s and injection >= 1000
 * MB/s per core, >= 10x secretlint's throughput, recall above secretlint's.
 * The exit status says whether the run completed, never whether a target
 * was met. --quick (8 MiB, no secretlint) is the ctest smoke run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"
#include "corpus.h"
#include "vs/scan.h"

#define BLOCK (1u << 20)
#define ROUNDS 3

/* snprintf that reports truncation: 0, or -ENAMETOOLONG. */
static int fmt(char *out, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *out, size_t size, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, size, f, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int count_finding(const struct vs_finding *f, void *arg)
{
    (void)f;
    ++*(unsigned long *)arg;
    return 0;
}

/* MB/s per core of one ruleset over data in blocks (best of ROUNDS). */
static double throughput(const vs_ruleset *rs, bool deep, const uint8_t *data, size_t len,
                         unsigned long *findings)
{
    vs_scan_scratch *s = NULL;
    if (vs_scan_scratch_new(rs, &s) != 0)
        return 0;
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        unsigned long n = 0;
        double t0 = bench_thread_cpu_s();
        for (size_t off = 0; off < len; off += BLOCK) {
            size_t blk = len - off < BLOCK ? len - off : BLOCK;
            int rc = deep ? vs_scan_deep(rs, s, data + off, blk, count_finding, &n)
                          : vs_scan(rs, s, data + off, blk, 0, count_finding, &n);
            if (rc != 0) {
                vs_scan_scratch_free(s);
                return 0;
            }
        }
        double rate = (double)len / 1e6 / (bench_thread_cpu_s() - t0);
        if (rate > best)
            best = rate;
        *findings = n;
    }
    vs_scan_scratch_free(s);
    return best;
}

struct expect {
    const char *rule;
    bool hit;
};

static int expect_rule(const struct vs_finding *f, void *arg)
{
    struct expect *e = arg;
    if (strcmp(f->rule_id, e->rule) == 0)
        e->hit = true;
    return 0;
}

/* The exfil positives (manifest lines with a rule): how many vs-scan names. */
static int our_recall(const vs_ruleset *rs, const char *data, unsigned *found, unsigned *total)
{
    char path[4096];
    FILE *m = fmt(path, sizeof path, "%s/scan/exfil/manifest.tsv", data) == 0 ? fopen(path, "r") : NULL;
    if (m == NULL)
        return -errno;
    vs_scan_scratch *s = NULL;
    int rc = vs_scan_scratch_new(rs, &s);
    char line[1024];
    while (rc == 0 && fgets(line, sizeof line, m) != NULL) {
        if (line[0] == '#')
            continue;
        line[strcspn(line, "\r\n")] = '\0';
        char *file = strtok(line, "\t"), *rule = strtok(NULL, "\t");
        if (file == NULL || rule == NULL || strcmp(rule, "none") == 0)
            continue;
        struct corpus positive = {0};
        struct expect e = {.rule = rule};
        if ((rc = fmt(path, sizeof path, "%s/scan/exfil/%s", data, file)) == 0 &&
            (rc = corpus_file(path, &positive)) == 0)
            rc = vs_scan(rs, s, positive.data, positive.len, 0, expect_rule, &e);
        corpus_free(&positive);
        ++*total;
        *found += e.hit;
    }
    fclose(m);
    vs_scan_scratch_free(s);
    return rc;
}

struct severities {
    unsigned long all, blocking;
};

static int count_severity(const struct vs_finding *f, void *arg)
{
    struct severities *n = arg;
    n->all++;
    n->blocking += f->severity >= VS_SEV_HIGH;
    return 0;
}

/* The injection stage's findings on text nobody wrote for the rules (the
 * machine's headers, Python and prose, without tests/data/scan): every
 * one is a false alarm, and one at the block level would stop a task. */
static int ordinary_text_findings(const vs_ruleset *rs, const struct corpus *plain,
                                  struct severities *n)
{
    vs_scan_scratch *s = NULL;
    int rc = vs_scan_scratch_new(rs, &s);
    for (size_t off = 0; rc == 0 && off < plain->len; off += BLOCK) {
        size_t blk = plain->len - off < BLOCK ? plain->len - off : BLOCK;
        rc = vs_scan_deep(rs, s, plain->data + off, blk, count_severity, n);
    }
    vs_scan_scratch_free(s);
    return rc;
}

/* Run a shell command; its exit status, or -1. */
static int run(const char *cmd)
{
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -errno;
    int rc = fwrite(p, 1, n, f) == n ? 0 : -EIO;
    return fclose(f) == 0 ? rc : -EIO;
}

/* CPU seconds (user and system) of the finished children so far. */
static double children_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* secretlint in dir (installed there when missing): its MB/s on the
 * corpus blocks, and its recall on the exfil positives. 0 when it could
 * not run (said on stderr). */
static int secretlint(const char *dir, const char *data, const struct corpus *corpus,
                      double *rate, unsigned *found, unsigned *total)
{
    char cmd[16384], path[4096];
    if (fmt(path, sizeof path, "%s/node_modules/.bin/secretlint", dir) != 0)
        return -1;
    if (access(path, X_OK) != 0) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && npm install --no-audit --no-fund --silent secretlint "
                 "@secretlint/secretlint-rule-preset-recommend > npm.log 2>&1",
                 dir);
        if (run(cmd) != 0) {
            fprintf(stderr, "bench_scan: npm install secretlint failed (see %s/npm.log)\n", dir);
            return -1;
        }
    }
    static const char rc_json[] =
        "{\"rules\": [{\"id\": \"@secretlint/secretlint-rule-preset-recommend\"}]}\n";
    if (fmt(path, sizeof path, "%s/.secretlintrc.json", dir) != 0 ||
        fmt(cmd, sizeof cmd, "mkdir -p '%s/corpus' '%s/pos'", dir, dir) != 0 ||
        write_file(path, rc_json, sizeof rc_json - 1) != 0 || run(cmd) != 0)
        return -1;
    for (size_t off = 0, i = 0; off < corpus->len; off += BLOCK, i++) {
        if (fmt(path, sizeof path, "%s/corpus/block-%04zu.txt", dir, i) != 0 ||
            write_file(path, corpus->data + off,
                       corpus->len - off < BLOCK ? corpus->len - off : BLOCK))
            return -1;
    }
    if (fmt(cmd, sizeof cmd,
            "cd '%s' && ./node_modules/.bin/secretlint --secretlintrc .secretlintrc.json "
            "'corpus/*.txt' > corpus.out 2>&1",
            dir) != 0)
        return -1;
    double t0 = children_cpu_s();
    int st = run(cmd);
    double secs = children_cpu_s() - t0;
    if (st != 0 && st != 1) {
        fprintf(stderr, "bench_scan: secretlint exited %d (see %s/corpus.out)\n", st, dir);
        return -1;
    }
    *rate = (double)corpus->len / 1e6 / secs;
    /* Recall: the exfil positives as files of their own, one JSON report. */
    if (fmt(cmd, sizeof cmd,
            "cp '%s/scan/exfil/pos/'*.txt '%s/pos/' && cd '%s' && "
            "./node_modules/.bin/secretlint --secretlintrc .secretlintrc.json --format json "
            "'pos/*.txt' > pos.json 2> pos.err",
            data, dir, dir) != 0 ||
        fmt(path, sizeof path, "%s/pos.json", dir) != 0)
        return -1;
    st = run(cmd);
    json_error_t jerr;
    json_t *report = json_load_file(path, 0, &jerr);
    if ((st != 0 && st != 1) || !json_is_array(report)) {
        fprintf(stderr, "bench_scan: secretlint's JSON report is unreadable (%s)\n", path);
        json_decref(report);
        return -1;
    }
    size_t i;
    json_t *file;
    json_array_foreach(report, i, file) {
        ++*total;
        *found += json_array_size(json_object_get(file, "messages")) > 0;
    }
    json_decref(report);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_scan [--mib N] [--dir PARENT] [--no-secretlint] [--quick]\n"
                 "  --mib N          corpus size in MiB (64)\n"
                 "  --dir PARENT     where secretlint is installed and its files go (/tmp)\n"
                 "  --no-secretlint  measure the scanners only\n"
                 "  --quick          8 MiB, no secretlint (the ctest smoke run)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"mib", required_argument, NULL, 'm'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"no-secretlint", no_argument, NULL, 'n'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    unsigned long mib = 64;
    const char *parent = "/tmp";
    bool with_secretlint = true;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mib = strtoul(optarg, NULL, 10); break;
        case 'd': parent = optarg; break;
        case 'n': with_secretlint = false; break;
        case 'q': mib = 8; with_secretlint = false; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (mib == 0 || mib > 4096) {
        usage(stderr);
        return 2;
    }
    const char *data = VS_SOURCE_DIR "/tests/data";
    vs_ruleset *exfil = NULL, *injection = NULL;
    char err[600];
    if (vs_ruleset_load(VS_SOURCE_DIR "/workers/scan/rules/exfil.yaml", &exfil, err, sizeof err) ||
        vs_ruleset_load(VS_SOURCE_DIR "/workers/scan/rules/injection.yaml", &injection, err,
                        sizeof err)) {
        fprintf(stderr, "bench_scan: %s\n", err);
        return 1;
    }
    const struct corpus_kind kinds[] = {
        {"C headers", "/usr/include", ".h", 3},
        {"Python", "/usr/lib/python3*", ".py", 3},
        {"prose", "/usr/share/common-licenses", "", 2},
        {"tests/data/scan", VS_SOURCE_DIR "/tests/data/scan", "", 0},
    };
    const struct corpus_kind labelled_kind = {kinds[3].label, kinds[3].roots, "", 1};
    struct corpus corpus, labelled, plain;
    const char *missing = NULL;
    if (corpus_build(kinds, 4, (size_t)mib << 20, &corpus, &missing) != 0 ||
        corpus_build(&labelled_kind, 1, (size_t)mib << 20, &labelled, &missing) != 0 ||
        corpus_build(kinds, 3, (size_t)mib << 20, &plain, &missing) != 0) {
        fprintf(stderr, "bench_scan: cannot build the corpus (no %s?)\n",
                missing != NULL ? missing : "memory");
        return 1;
    }
    printf("bench_scan: corpus %lu MiB (C headers, Python, prose 3:3:2, and tests/data/scan once: "
           "%zu KiB of secrets, injections and near misses), 1 MiB blocks, one thread, thread CPU "
           "time, best of %d\n",
           mib, corpus.size[3] >> 10, ROUNDS);
    unsigned long nx = 0, ni = 0, lx = 0, li = 0;
    double ex = throughput(exfil, false, corpus.data, corpus.len, &nx);
    double in = throughput(injection, true, corpus.data, corpus.len, &ni);
    double lex = throughput(exfil, false, labelled.data, labelled.len, &lx);
    double lin = throughput(injection, true, labelled.data, labelled.len, &li);
    if (ex == 0 || in == 0 || lex == 0 || lin == 0) {
        fprintf(stderr, "bench_scan: a scan failed\n");
        return 1;
    }
    printf("exfil:     %6.0f MB/s per core (%zu rules, %lu findings)   (target >= 500)\n", ex,
           vs_ruleset_size(exfil), nx);
    printf("injection: %6.0f MB/s per core (%zu rules, normalized and decoded, %lu findings)   "
           "(target >= 1000)\n",
           in, vs_ruleset_size(injection), ni);
    printf("tests/data/scan alone (a candidate on nearly every line): exfil %.0f MB/s (%lu "
           "findings), injection %.0f MB/s (%lu findings)\n",
           lex, lx, lin, li);
    struct severities alarms = {0, 0};
    if (ordinary_text_findings(injection, &plain, &alarms) != 0) {
        fprintf(stderr, "bench_scan: the scan of ordinary text failed\n");
        return 1;
    }
    printf("injection on the machine's own text (%lu MiB without tests/data/scan): %lu findings, "
           "%lu at the block level\n",
           (unsigned long)(plain.len >> 20), alarms.all, alarms.blocking);
    unsigned ours = 0, total = 0;
    if (our_recall(exfil, data, &ours, &total) != 0 || total == 0) {
        fprintf(stderr, "bench_scan: cannot read the exfil positives\n");
        return 1;
    }
    int status = 0;
    if (with_secretlint) {
        char dir[4096];
        double rate = 0;
        unsigned theirs = 0, their_total = 0;
        if (bench_scratch_dir(dir, sizeof dir, parent, "vs-bench-scan", "bench_scan") != 0)
            return 1;
        if (secretlint(dir, data, &corpus, &rate, &theirs, &their_total) == 0 && rate > 0) {
            printf("secretlint: %6.0f MB/s per core (preset-recommend, CPU time of its command "
                   "line)   exfil/secretlint %.1fx (target >= 10)\n",
                   rate, ex / rate);
            printf("recall on the corpus's %u secrets: vs-scan %.3f, secretlint %.3f (%u of %u "
                   "files)\n",
                   total, (double)ours / total, their_total ? (double)theirs / their_total : 0.0,
                   theirs, their_total);
        } else {
            status = 1;
        }
        bench_rmtree(dir);
    } else {
        printf("recall on the corpus's %u secrets: vs-scan %.3f (secretlint not run)\n", total,
               (double)ours / total);
    }
    corpus_free(&corpus);
    corpus_free(&labelled);
    corpus_free(&plain);
    vs_ruleset_free(exfil);
    vs_ruleset_free(injection);
    return status;
}
