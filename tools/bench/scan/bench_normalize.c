/*
 * bench_normalize.c - throughput of the injection scanner's text
 * normalizer (workers/scan, vs/normalize.h) on its own, per core.
 *
 * Why apart from bench_scan: the injection scanner's budget (>= 1 GB/s per
 * core, normalization and decoding included) leaves the normalizer well
 * under a third of a nanosecond per byte, and bench_scan's figure mixes it
 * with the rule matching. This one measures the two entry points as
 * vs_scan_deep (workers/scan/src/pipeline.c) calls them:
 *   - normalize: vs_normalize (the byte map is made only for a finding);
 *   - decode: vs_norm_decode, max_depth 3, a budget of twice the block
 *     (64 KiB to 64 MiB), with a callback that only counts the pieces;
 * on one thread, in thread CPU time, best of the rounds, over the mixed
 * corpus of corpus.h without the labelled part - C headers, Python source
 * and prose, 3:3:2 - cut into 1 MiB blocks as the scanner gets files. The
 * figures are the normalizer's share of the injection scan's budget; the
 * exit status says whether the run completed, never what was measured.
 * --quick (8 MiB, one round) is the ctest smoke run.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "corpus.h"
#include "vs/normalize.h"

#define BLOCK (1u << 20)
#define DECODE_DEPTH 3              /* as pipeline.c */
#define DECODE_MIN_BUDGET (64u << 10)
#define DECODE_MAX_BUDGET (64u << 20)

static const struct corpus_kind kinds[] = {
    {"C headers", "/usr/include", ".h", 3},
    {"Python", "/usr/lib/python3*", ".py", 3},
    {"prose", "/usr/share/common-licenses", "", 2},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

struct decode_count {
    unsigned long pieces;
    size_t bytes;
};

static int count_piece(const uint8_t *data, size_t len, unsigned tf, size_t off, void *arg)
{
    struct decode_count *dc = arg;
    (void)data;
    (void)tf;
    (void)off;
    dc->pieces++;
    dc->bytes += len;
    return 0;
}

/* One function over text[0..len) in 1 MiB blocks. */
static int run_normalize(vs_normalizer *n, const uint8_t *text, size_t len, unsigned long *count)
{
    for (size_t off = 0; off < len; off += BLOCK) {
        size_t blk = len - off < BLOCK ? len - off : BLOCK, out_len;
        const uint8_t *out;
        unsigned tf;
        int rc = vs_normalize(n, text + off, blk, &out, &out_len, &tf);
        if (rc != 0) {
            return rc;
        }
        *count += out_len;
    }
    return 0;
}

static int run_decode(vs_normalizer *n, const uint8_t *text, size_t len, unsigned long *count)
{
    struct decode_count dc = {0, 0};
    for (size_t off = 0; off < len; off += BLOCK) {
        size_t blk = len - off < BLOCK ? len - off : BLOCK;
        size_t budget = blk * 2 < DECODE_MIN_BUDGET   ? DECODE_MIN_BUDGET
                        : blk * 2 > DECODE_MAX_BUDGET ? DECODE_MAX_BUDGET
                                                      : blk * 2;
        int rc = vs_norm_decode(n, text + off, blk, DECODE_DEPTH, budget, count_piece, &dc);
        if (rc != 0) {
            return rc;
        }
    }
    *count += dc.pieces;
    return 0;
}

typedef int (*bench_fn)(vs_normalizer *n, const uint8_t *text, size_t len, unsigned long *count);

/* MB/s of fn over text[0..len), best of rounds; *count: what one round
 * counted (output bytes, pieces). 0 on failure. */
static double throughput(bench_fn fn, const uint8_t *text, size_t len, unsigned rounds,
                         unsigned long *count)
{
    vs_normalizer *n = NULL;
    double best = 0;
    if (vs_normalizer_new(&n) != 0) {
        return 0;
    }
    for (unsigned r = 0; r < rounds; r++) {
        unsigned long c = 0;
        double t0 = bench_thread_cpu_s();
        if (fn(n, text, len, &c) != 0) {
            best = 0;
            break;
        }
        double rate = (double)len / 1e6 / (bench_thread_cpu_s() - t0);
        best = rate > best ? rate : best;
        *count = c;
    }
    vs_normalizer_free(n);
    return best;
}

/* One line per function: the whole corpus, then each kind. */
static int report(const char *name, bench_fn fn, const struct corpus *c, unsigned rounds,
                  const char *unit)
{
    unsigned long count = 0, part_count;
    double all = throughput(fn, c->data, c->len, rounds, &count), rate[NKINDS];
    for (size_t k = 0; k < NKINDS; k++) {
        rate[k] = throughput(fn, c->data + c->start[k], c->size[k], rounds, &part_count);
        if (rate[k] == 0)
            all = 0;
    }
    if (all == 0) {
        fprintf(stderr, "bench_normalize: %s failed\n", name);
        return 1;
    }
    printf("%-9s %6.0f MB/s per core (mixed corpus %zu MiB: %s %.0f, %s %.0f, %s %.0f MB/s; %lu %s)\n",
           name, all, c->len >> 20, kinds[0].label, rate[0], kinds[1].label, rate[1],
           kinds[2].label, rate[2], count, unit);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_normalize [--mib N] [--rounds N] [--quick]\n"
                 "  --mib N     corpus size in MiB (64)\n"
                 "  --rounds N  rounds per figure, the best is kept (5)\n"
                 "  --quick     8 MiB, one round (the ctest smoke run)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"mib", required_argument, NULL, 'm'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    unsigned long mib = 64, rounds = 5;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mib = strtoul(optarg, NULL, 10); break;
        case 'r': rounds = strtoul(optarg, NULL, 10); break;
        case 'q': mib = 8; rounds = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (mib == 0 || mib > 4096 || rounds == 0 || rounds > 1000) {
        usage(stderr);
        return 2;
    }
    struct corpus corpus;
    const char *missing = NULL;
    if (corpus_build(kinds, NKINDS, (size_t)mib << 20, &corpus, &missing) != 0) {
        fprintf(stderr, "bench_normalize: cannot build the corpus (no %s?)\n",
                missing != NULL ? missing : "memory");
        return 1;
    }
    printf("bench_normalize: corpus %lu MiB (C headers, Python, prose 3:3:2), 1 MiB blocks, one "
           "thread, thread CPU time, best of %lu\n",
           mib, rounds);
    int status = report("normalize:", run_normalize, &corpus, (unsigned)rounds, "output bytes") ||
                 report("decode:", run_decode, &corpus, (unsigned)rounds, "pieces");
    corpus_free(&corpus);
    return status;
}
