/*
 * test_scan_corpus.c - the scanners against their labelled corpora
 * (tests/data/scan/<ruleset>/manifest.tsv: path, expected, family), with
 * the shipped rulesets (workers/scan/rules/<ruleset>.yaml).
 *
 * A positive counts as found when the scan reports its expected rule
 * (exfil: secrets are named by rule) or any rule of its family
 * (injection: phrasings overlap); injection text goes through the
 * normalizing, decoding scan as the injection stage runs it. A hard
 * negative counts as a false positive when anything at or above the block
 * level (high) is reported. Floors, per the scanners' acceptance: recall
 * >= 0.95 in every family, false positives <= 1% of the negatives. The
 * per-family table is printed (the README's precision/recall table comes
 * from this output).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vs/scan.h"

#define MAX_FAMILIES 32

struct family {
    char name[32];
    unsigned positives, found, flagged_negatives;
};

struct tally {
    struct family fam[MAX_FAMILIES];
    size_t nfam;
    unsigned negatives, false_positives, flagged;
};

struct file_hits {
    const char *expected, *family;
    bool by_family;
    bool hit;
    enum vs_severity worst;
};

static int on_finding(const struct vs_finding *f, void *arg)
{
    struct file_hits *h = arg;
    if (f->severity > h->worst)
        h->worst = f->severity;
    if (strcmp(h->by_family ? f->family : f->rule_id, h->by_family ? h->family : h->expected) == 0)
        h->hit = true;
    return 0;
}

static struct family *family_of(struct tally *t, const char *name)
{
    for (size_t i = 0; i < t->nfam; i++)
        if (strcmp(t->fam[i].name, name) == 0)
            return &t->fam[i];
    assert_true(t->nfam < MAX_FAMILIES);
    struct family *f = &t->fam[t->nfam++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void run_corpus(const char *ruleset, bool deep, bool by_family)
{
    char path[4096], err[600];
    snprintf(path, sizeof path, "%s/workers/scan/rules/%s.yaml", VS_SOURCE_DIR, ruleset);
    vs_ruleset *rs = NULL;
    if (vs_ruleset_load(path, &rs, err, sizeof err) != 0)
        fail_msg("%s", err);
    vs_scan_scratch *s = NULL;
    assert_int_equal(vs_scan_scratch_new(rs, &s), 0);
    snprintf(path, sizeof path, "%s/scan/%s/manifest.tsv", VS_TEST_DATA, ruleset);
    FILE *m = fopen(path, "r");
    assert_non_null(m);
    static struct tally t;
    memset(&t, 0, sizeof t);
    char line[1024];
    while (fgets(line, sizeof line, m) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\r\n")] = '\0';
        char *file = strtok(line, "\t"), *expected = strtok(NULL, "\t"), *fam = strtok(NULL, "\t");
        assert_non_null(file);
        assert_non_null(expected);
        assert_non_null(fam);
        char fpath[4096];
        snprintf(fpath, sizeof fpath, "%s/scan/%s/%s", VS_TEST_DATA, ruleset, file);
        size_t len;
        uint8_t *data = slurp(fpath, &len);
        struct file_hits h = {.expected = expected, .family = fam, .by_family = by_family,
                              .worst = VS_SEV_INFO};
        int rc = deep ? vs_scan_deep(rs, s, data, len, on_finding, &h)
                      : vs_scan(rs, s, data, len, 0, on_finding, &h);
        assert_int_equal(rc, 0);
        free(data);
        if (strcmp(expected, "none") == 0) {
            t.negatives++;
            if (h.worst >= VS_SEV_HIGH) {
                t.false_positives++;
                printf("  false positive: %s\n", file);
            } else if (h.worst >= VS_SEV_MEDIUM) {
                t.flagged++;
            }
            continue;
        }
        struct family *f = family_of(&t, fam);
        f->positives++;
        if (h.hit)
            f->found++;
        else
            printf("  missed: %s (expected %s)\n", file, expected);
    }
    fclose(m);
    printf("%s: | family | positives | found | recall |\n", ruleset);
    bool ok = true;
    for (size_t i = 0; i < t.nfam; i++) {
        const struct family *f = &t.fam[i];
        double recall = (double)f->found / (double)f->positives;
        printf("%s: | %s | %u | %u | %.3f |\n", ruleset, f->name, f->positives, f->found, recall);
        ok = ok && recall >= 0.95;
    }
    double fp = t.negatives ? (double)t.false_positives / (double)t.negatives : 0;
    printf("%s: hard negatives %u, blocked %u (%.1f%%), flagged only %u\n", ruleset, t.negatives,
           t.false_positives, 100 * fp, t.flagged);
    assert_true(t.negatives > 0);
    assert_true(ok);
    assert_true(fp <= 0.01);
    vs_scan_scratch_free(s);
    vs_ruleset_free(rs);
}

static void test_injection_corpus(void **state)
{
    (void)state;
    run_corpus("injection", true, true);
}

static void test_exfil_corpus(void **state)
{
    (void)state;
    run_corpus("exfil", false, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_injection_corpus),
        cmocka_unit_test(test_exfil_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
