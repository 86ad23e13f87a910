/*
 * corpus.h - the text the scanner benchmarks measure on (bench_scan,
 * bench_normalize): ordinary text from files every Debian machine with
 * this project's build dependencies has, plus this repository's labelled
 * scanner corpus, mixed in fixed shares and cut into 1 MiB blocks by the
 * benchmarks as the scanners get files.
 *
 * Why files from the machine: a throughput figure on the labelled corpus
 * alone (secrets, injections and near misses packed together) says how the
 * scanners behave when almost every line is a candidate, not how fast they
 * go through what agents and tasks mostly produce - code, prose, data.
 * Both figures are reported; the targets are about the mixed one.
 */
#ifndef VS_BENCH_SCAN_CORPUS_H
#define VS_BENCH_SCAN_CORPUS_H

#include <stddef.h>
#include <stdint.h>

/* One kind of text: the files under the directories matching roots (a
 * glob(3) pattern), depth first in sorted order, whose names end in suffix
 * ("" for every file), repeated when they are fewer than its share. */
struct corpus_kind {
    const char *label;
    const char *roots;
    const char *suffix;
    unsigned share;        /* parts of the corpus; 0: its files once, as they are */
};

#define CORPUS_MAX_KINDS 8

struct corpus {
    uint8_t *data;         /* every kind, one after the other */
    size_t len;
    size_t start[CORPUS_MAX_KINDS], size[CORPUS_MAX_KINDS]; /* where each kind is */
};

/* Build bytes of text from n kinds: those of share 0 once, the others
 * share / (sum of shares) of what is left each.
 * 0, -ENOENT (a kind has no readable file; *missing names it) or -ENOMEM. */
int corpus_build(const struct corpus_kind *kinds, size_t n, size_t bytes, struct corpus *c,
                 const char **missing);
/* The bytes of one file, as a corpus of one kind. 0 or -errno. */
int corpus_file(const char *path, struct corpus *c);
void corpus_free(struct corpus *c);

#endif
