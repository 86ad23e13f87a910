/*
 * ruleset.h - the scanner's compiled rules as rules.c builds them from a
 * YAML file and scan.c runs them (private to workers/scan).
 */
#ifndef VS_SCAN_RULESET_H
#define VS_SCAN_RULESET_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <hs/hs.h>
#include <pcre2.h>

#include "validators.h"
#include "vs/normalize.h"
#include "vs/scan.h"

#define RULE_CASELESS 1u
#define RULE_DOTALL 2u
#define RULE_MULTILINE 4u
#define RULE_DEFAULT_MAX_LEN 512
#define DOWNGRADE_REACH 200
/* PCRE2's backtracking budget per match (its default is 10 million): far
 * above what any rule needs on a window, and a crafted input that makes
 * every hit's confirmation backtrack costs 50 times less per hit. */
#define MATCH_LIMIT 200000

/* Values a secret must not be (literals), must not match (regexes) or
 * must not contain, case-insensitively (stopwords). */
struct allowlist {
    char **literals;
    size_t nliterals;
    pcre2_code **regexes;
    size_t nregexes;
    char **stopwords;   /* lowercase */
    size_t nstopwords;
};

/* A rule found by a linear pass instead of Hyperscan (detect.c): maximal
 * runs of the hex or the base64 alphabet, at least min_len long, whose
 * Shannon entropy over a sliding window averages min_entropy or more; or
 * runs of at least min_len directly followed by a dot, in a stretch of
 * the alphabet and dots at least min_span long (a DNS label long enough
 * to carry data, a token's dotted parts), which the rule's pattern then
 * confirms. Open
 * character classes like these would match almost everywhere and slow
 * the whole Hyperscan database down. */
enum detector { DETECT_NONE, DETECT_HEX_RUN, DETECT_BASE64_RUN, DETECT_DOTTED_RUN };

struct rule {
    char *id, *family, *description, *pattern;
    /* What Hyperscan looks for instead of the pattern, for patterns made
     * of open character classes that would slow the whole database down
     * (an e-mail address: its '@' and domain). Every match of the pattern
     * must hold a prefilter match whose last byte lies inside it; a hit is
     * then confirmed by searching the pattern around it. */
    char *prefilter;
    enum detector detector;     /* instead of pattern */
    size_t min_len, window, min_span;
    unsigned flags;             /* RULE_* */
    enum vs_severity severity;
    enum vs_confidence confidence;
    char **keywords;            /* lowercase; documentation and reports */
    size_t nkeywords;
    unsigned secret_group;      /* capture group of the secret; 0: the match */
    enum vs_validator validator;
    double min_entropy;
    size_t max_len;             /* the longest match: the confirmation window */
    size_t lead;                /* how far before a prefilter hit's end a match may
                                   start (<= max_len) */
    struct allowlist allow;
    /* A match whose line, up to it (at most DOWNGRADE_REACH bytes), matches
     * one of these is reported at medium at most: a flag, not a block
     * (writing about an attack rather than the attack). */
    pcre2_code **downgrade;
    size_t ndowngrade;
    pcre2_code *re;             /* the confirmation, JIT-compiled */
    int line;                   /* in the YAML file, for messages */
};

struct vs_ruleset {
    char *name;
    struct rule *rules;
    size_t n;
    struct allowlist allow;     /* global */
    hs_database_t *db;          /* every pattern rule, id = its index; NULL: none */
    size_t *detectors;          /* the detector rules' indices */
    size_t ndetectors;
    size_t detect_min_len;      /* the shortest span a detector rule takes; 0: no detectors */
    size_t longest;             /* the largest max_len: the longest match a rule confirms */
    uint32_t max_groups;        /* the most capture groups of a rule, for match data */
};

/* A growing list of findings (one scan's, or the deep scan's). */
struct finding_list {
    struct vs_finding *v;
    size_t n, cap;
};
/* Room for one more: its slot, or NULL when out of memory. */
struct vs_finding *vs__finding_slot(struct finding_list *l);

/* Per-thread state of scans (scan.c; pipeline.c uses the normalizers and
 * the deep scan's findings). */
struct vs_scan_scratch {
    const vs_ruleset *rs;
    hs_scratch_t *hs;
    pcre2_match_data *md;
    pcre2_match_context *mctx;  /* the match limit: no regex runs away on hostile input */
    size_t *last_end;           /* per rule: the end of its last confirmed match */
    struct finding_list found;  /* one scan's findings before overlaps are settled */
    vs_normalizer *norm, *norm_decoded; /* the text's, and a decoded piece's */
    struct finding_list deep;   /* vs_scan_deep's findings, in original offsets */
};

/* 1-based line and column of offset in data, counting newlines on from
 * the cursor's last offset (from the start when offset is before it). */
struct line_cursor {
    size_t at, line;        /* line: the line of at; 0 before the first use */
};
void vs__line_advance(const uint8_t *data, struct line_cursor *lc, size_t offset, size_t *line,
                      size_t *col);

/* vs_scan without the argument checks; positions false leaves findings'
 * line and column 0 (vs_scan_deep maps findings back and positions them
 * in the original text itself). Hyperscan reads search when it is not
 * NULL - a copy of data with the same length and offsets, e.g. with line
 * breaks as spaces for the phrase lattices - and PCRE2 confirms on data. */
int vs__scan_block(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data,
                   const uint8_t *search, size_t len, unsigned transforms, bool positions,
                   vs_finding_fn fn, void *arg);

/* The detector rules' pass over data: each run that qualifies as
 * (start, end, rule index) to fn; fn's nonzero value stops it. */
typedef int (*detect_fn)(size_t start, size_t end, size_t rule, void *arg);
int vs__detect_runs(const vs_ruleset *rs, const uint8_t *data, size_t len, detect_fn fn, void *arg);
/* The shortest stretch of text detector rule r can take. */
size_t vs__detect_min_span(const struct rule *r);

/* Compile pattern with PCRE2 (JIT when available) under RULE_* flags;
 * NULL with err set on failure. */
pcre2_code *vs_rule_pcre(const char *pattern, unsigned flags, char *err, size_t errlen);
void vs_allowlist_clear(struct allowlist *a);

#endif
