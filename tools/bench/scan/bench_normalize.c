/*
 * bench_normalize.c - throughput of the injection scanner's text
 * normalizer (workers/scan, vs/normalize.h) on its own, per core.
 *
 * Why apart from bench_scan: the injection scanner's budget (>= 1 GB/s per
 * core, normalization and decoding included) leaves the normalizer well
 * under a third of a nanosecond per byte, and bench_scan's figure mixes it
 * with the rule matching. This one measures the two entry points as
 * vs_scan_deep (workers/scan/src/pipeline.c) calls them:
 *   - normalize: vs_normalize with the byte map;
 *   - decode: vs_norm_decode, max_depth 3, a budget of twice the block
 *     (64 KiB to 64 MiB), with a callback that only counts the pieces;
 * on one thread, best of the rounds, over a mixed corpus of ordinary text
 * built from files every Debian machine with this project's build
 * dependencies has - C headers (the .h files under /usr/include), Python
 * source (the .py files under /usr/lib/python3.N) and prose (the files of
 * /usr/share/common-licenses), 3:3:2 by size, each read in sorted path order (repeated if short) - cut
 * into 1 MiB blocks as the scanner gets files. Targets: normalize >= 3000
 * MB/s, decode >= 6000 MB/s per core on this kind of text. The exit status
 * says whether the run completed, never whether a target was met.
 * --quick (8 MiB, one round) is the ctest smoke run.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_common.h"
#include "vs/normalize.h"

#define BLOCK (1u << 20)
#define DECODE_DEPTH 3              /* as pipeline.c */
#define DECODE_MIN_BUDGET (64u << 10)
#define DECODE_MAX_BUDGET (64u << 20)

struct buf {
    uint8_t *p;
    size_t n, cap;
};

/* One kind of text in the corpus: where its files are, which names, its
 * share of the corpus in eighths. */
struct kind {
    const char *label;
    const char *roots; /* a glob(3) pattern of directories */
    const char *suffix; /* "" for every regular file */
    unsigned eighths;
};

static const struct kind kinds[] = {
    {"C headers", "/usr/include", ".h", 3},
    {"Python", "/usr/lib/python3*", ".py", 3},
    {"prose", "/usr/share/common-licenses", "", 2},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static int reserve(struct buf *b, size_t n)
{
    if (b->n + n <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1u << 20;
    while (cap < b->n + n) {
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Appends up to want - b->n bytes of the file at path. */
static int add_file(const char *path, struct buf *b, size_t want)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0; /* unreadable: skipped */
    }
    int rc = 0;
    while (rc == 0 && b->n < want) {
        if ((rc = reserve(b, 65536)) != 0) {
            break;
        }
        size_t room = want - b->n < 65536 ? want - b->n : 65536;
        size_t got = fread(b->p + b->n, 1, room, f);
        if (got == 0) {
            break;
        }
        b->n += got;
    }
    fclose(f);
    return rc;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

/* The files of dir whose names end in suffix, depth first in sorted order
 * (symbolic links not followed), appended to b until it holds want bytes. */
static int add_tree(const char *dir, const char *suffix, struct buf *b, size_t want)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), rc = 0;
    if (n < 0) {
        return 0; /* unreadable: skipped */
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if (rc == 0 && b->n < want && list[i]->d_name[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name) < (int)sizeof path &&
            lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                rc = add_tree(path, suffix, b, want);
            } else if (S_ISREG(st.st_mode) && has_suffix(list[i]->d_name, suffix)) {
                rc = add_file(path, b, want);
            }
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

/* want bytes of kind k: its files in order, repeated if they are fewer. */
static int build_kind(const struct kind *k, struct buf *b, size_t want)
{
    glob_t g;
    int rc = 0;
    if (glob(k->roots, 0, NULL, &g) != 0) {
        return -ENOENT;
    }
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) {
        rc = add_tree(g.gl_pathv[i], k->suffix, b, want);
    }
    globfree(&g);
    if (rc == 0 && b->n == 0) {
        rc = -ENOENT;
    }
    for (size_t once = b->n; rc == 0 && b->n < want;) {
        size_t take = want - b->n < once ? want - b->n : once;
        if ((rc = reserve(b, take)) == 0) {
            memcpy(b->p + b->n, b->p, take);
            b->n += take;
        }
    }
    return rc;
}

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
        const uint32_t *map;
        unsigned tf;
        int rc = vs_normalize(n, text + off, blk, &out, &out_len, &tf, &map);
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
        double t0 = bench_now_s();
        if (fn(n, text, len, &c) != 0) {
            best = 0;
            break;
        }
        double rate = (double)len / 1e6 / (bench_now_s() - t0);
        best = rate > best ? rate : best;
        *count = c;
    }
    vs_normalizer_free(n);
    return best;
}

/* One line per function: the whole corpus, then each kind. */
static int report(const char *name, bench_fn fn, const struct buf *parts, size_t total,
                  const uint8_t *corpus, unsigned rounds, const char *unit)
{
    unsigned long count = 0, part_count;
    double all = throughput(fn, corpus, total, rounds, &count), rate[NKINDS];
    for (size_t k = 0; k < NKINDS; k++) {
        rate[k] = throughput(fn, parts[k].p, parts[k].n, rounds, &part_count);
        if (rate[k] == 0) {
            all = 0;
        }
    }
    if (all == 0) {
        fprintf(stderr, "bench_normalize: %s failed\n", name);
        return 1;
    }
    printf("%-9s %6.0f MB/s per core (mixed corpus %zu MiB: %s %.0f, %s %.0f, %s %.0f MB/s; %lu %s)\n",
           name, all, total >> 20, kinds[0].label, rate[0], kinds[1].label, rate[1],
           kinds[2].label, rate[2], count, unit);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_normalize [--mib N] [--rounds N] [--quick]\n"
                 "  --mib N     corpus size in MiB, a multiple of 8 (64)\n"
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
    if (mib == 0 || mib % 8 != 0 || mib > 4096 || rounds == 0 || rounds > 1000) {
        usage(stderr);
        return 2;
    }
    struct buf parts[NKINDS] = {{0}}, corpus = {0};
    for (size_t k = 0; k < NKINDS; k++) {
        size_t want = (size_t)(mib / 8 * kinds[k].eighths) << 20;
        if (build_kind(&kinds[k], &parts[k], want) != 0 || reserve(&corpus, want) != 0) {
            fprintf(stderr, "bench_normalize: no %s under %s\n", kinds[k].label, kinds[k].roots);
            return 1;
        }
        memcpy(corpus.p + corpus.n, parts[k].p, parts[k].n);
        corpus.n += parts[k].n;
    }
    printf("bench_normalize: corpus %lu MiB (C headers, Python, prose 3:3:2), 1 MiB blocks, one "
           "thread, best of %lu\n",
           mib, rounds);
    int status = report("normalize:", run_normalize, parts, corpus.n, corpus.p, (unsigned)rounds,
                        "output bytes") ||
                 report("decode:", run_decode, parts, corpus.n, corpus.p, (unsigned)rounds,
                        "pieces");
    for (size_t k = 0; k < NKINDS; k++) {
        free(parts[k].p);
    }
    free(corpus.p);
    return status;
}
