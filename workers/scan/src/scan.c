/*
 * scan.c - run a compiled ruleset over a block of data (vs/scan.h):
 * Hyperscan reports where a rule's match ends; PCRE2 confirms it on a
 * window ending there (max_len bytes back), which gives the start and the
 * secret; the rule's validator and the allowlists have the last word; a
 * line holding `vs:allow` is skipped. What survives goes to the caller
 * with a redacted sample, never the secret.
 *
 * Hyperscan reports every end a match could have (an open repeat ends
 * after each character); the confirmation takes the match PCRE2 finds from
 * that start over the whole data (greedy, as any regex search would), and
 * a rule's later hits inside it are skipped. Findings are collected, and
 * where two rules claim overlapping text the more severe (then the more
 * confident, then the longer) one is kept - a GitHub token on a "token:"
 * line is reported once, as a GitHub token - before they go out in order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "ruleset.h"

#define ALLOW_MARKER "vs:allow"
#define MARKER_REACH 4096 /* how far a line is searched for the marker */
#define STOPWORD_SPAN 256 /* the part of a secret checked for stopwords */


int vs_scan_scratch_new(const vs_ruleset *rs, vs_scan_scratch **out)
{
    if (rs == NULL || out == NULL)
        return -EINVAL;
    vs_scan_scratch *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->rs = rs;
    s->md = pcre2_match_data_create(rs->max_groups + 1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (s->mctx != NULL)
        pcre2_set_match_limit(s->mctx, MATCH_LIMIT);
    s->last_end = calloc(rs->n, sizeof *s->last_end);
    if (s->md == NULL || s->mctx == NULL || s->last_end == NULL ||
        (rs->db != NULL && hs_alloc_scratch(rs->db, &s->hs) != HS_SUCCESS) ||
        vs_normalizer_new(&s->norm) != 0 || vs_normalizer_new(&s->norm_decoded) != 0) {
        vs_scan_scratch_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

int vs_ruleset_load_with_scratch(const char *path, vs_ruleset **rules, vs_scan_scratch **scratch,
                                 char *err, size_t errlen)
{
    if (rules == NULL || scratch == NULL)
        return -EINVAL;
    *scratch = NULL;
    int rc = vs_ruleset_load(path, rules, err, errlen);
    if (rc == 0 && (rc = vs_scan_scratch_new(*rules, scratch)) < 0) {
        snprintf(err, errlen, "%s: no memory for a scratch", path);
        vs_ruleset_free(*rules);
        *rules = NULL;
    }
    return rc;
}

void vs_scan_scratch_free(vs_scan_scratch *s)
{
    if (s == NULL)
        return;
    if (s->hs != NULL)
        hs_free_scratch(s->hs);
    if (s->md != NULL)
        pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    free(s->last_end);
    free(s->found.v);
    free(s->deep.v);
    vs_normalizer_free(s->norm);
    vs_normalizer_free(s->norm_decoded);
    free(s);
}

struct scan_ctx {
    const vs_ruleset *rs;
    vs_scan_scratch *s;
    const uint8_t *data;
    size_t len;
    unsigned transforms;
    vs_finding_fn fn;
    void *arg;
    int stop;               /* fn's nonzero value, or an error */
    bool positions;         /* give findings their line and column */
    struct line_cursor lines;
};

/* The whole greedy match from start (the ovector then holds its groups). */
static bool rematch(struct scan_ctx *c, const struct rule *r, size_t start, size_t *ms, size_t *me)
{
    if (pcre2_match(r->re, c->data, c->len, start, PCRE2_ANCHORED, c->s->md, c->s->mctx) < 0)
        return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->s->md);
    *ms = ov[0];
    *me = ov[1];
    return true;
}

/* The match ending at end: its start from PCRE2 on the window before end,
 * then the whole match from there. */
static bool confirm_end(struct scan_ctx *c, const struct rule *r, size_t end, size_t *ms,
                        size_t *me)
{
    size_t from = end > r->max_len ? end - r->max_len : 0;
    while (from < end) {
        int rc = pcre2_match(r->re, c->data, end, from, 0, c->s->md, c->s->mctx);
        if (rc < 0)
            return false;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->s->md);
        if (ov[1] == end)
            return rematch(c, r, ov[0], ms, me);
        from = ov[0] + 1; /* a shorter match started here; one ending at end starts later */
    }
    return false;
}

/* A prefilter hit ending at end: the first match of the pattern that
 * starts at most lead bytes before end and holds the hit's last byte. */
static bool confirm_around(struct scan_ctx *c, const struct rule *r, size_t end, size_t *ms,
                           size_t *me)
{
    size_t from = end > r->lead ? end - r->lead : 0;
    size_t stop = c->len - end > r->max_len ? end + r->max_len : c->len;
    bool found = false;
    /* a match starting at or after end cannot hold the hit: PCRE2 does not
     * try those start positions */
    pcre2_set_offset_limit(c->s->mctx, end - 1);
    while (from < end) {
        if (pcre2_match(r->re, c->data, stop, from, 0, c->s->md, c->s->mctx) < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->s->md);
        if (ov[1] >= end) {
            found = true;
            break;
        }
        from = ov[0] + 1;
    }
    pcre2_set_offset_limit(c->s->mctx, PCRE2_UNSET);
    if (!found)
        return false;
    return rematch(c, r, pcre2_get_ovector_pointer(c->s->md)[0], ms, me);
}

static bool contains_ci(const uint8_t *s, size_t n, const char *word)
{
    char low[STOPWORD_SPAN + 1];
    size_t k = n < STOPWORD_SPAN ? n : STOPWORD_SPAN;
    for (size_t i = 0; i < k; i++)
        low[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : (char)(s[i] ? s[i] : ' ');
    low[k] = '\0';
    return strstr(low, word) != NULL;
}

static bool allowed_by(const struct allowlist *a, const vs_scan_scratch *sc, const uint8_t *s,
                       size_t n)
{
    for (size_t i = 0; i < a->nliterals; i++)
        if (strlen(a->literals[i]) == n && memcmp(a->literals[i], s, n) == 0)
            return true;
    for (size_t i = 0; i < a->nstopwords; i++)
        if (contains_ci(s, n, a->stopwords[i]))
            return true;
    for (size_t i = 0; i < a->nregexes; i++)
        if (pcre2_match(a->regexes[i], s, n, 0, 0, sc->md, sc->mctx) >= 0)
            return true;
    return false;
}

static bool valid(const struct rule *r, const uint8_t *s, size_t n)
{
    switch (r->validator) {
    case VS_VALID_NONE: return true;
    case VS_VALID_LUHN: return vs_valid_luhn(s, n);
    case VS_VALID_SSN: return vs_valid_ssn(s, n);
    case VS_VALID_IBAN: return vs_valid_iban(s, n);
    case VS_VALID_JWT: return vs_valid_jwt(s, n);
    case VS_VALID_ENTROPY: return vs_shannon_entropy(s, n) >= r->min_entropy;
    }
    return false;
}

/* Whether the line around [start, end) holds the allow marker. */
static bool marked_line(const struct scan_ctx *c, size_t start, size_t end)
{
    size_t lo = start, hi = end;
    while (lo > 0 && start - lo < MARKER_REACH && c->data[lo - 1] != '\n')
        lo--;
    while (hi < c->len && hi - end < MARKER_REACH && c->data[hi] != '\n')
        hi++;
    size_t m = sizeof ALLOW_MARKER - 1;
    for (size_t i = lo; i + m <= hi; i++)
        if (c->data[i] == 'v' && memcmp(c->data + i, ALLOW_MARKER, m) == 0)
            return true;
    return false;
}

/* The '\n' bytes in p[0..n). Findings are positioned by counting the
 * lines from the one before, so this reads all of a text that has
 * findings: 16 bytes at a time into byte counters (a match is -1), which
 * are summed before they can wrap - a memchr per line costs a call per
 * line instead. */
static size_t count_newlines(const uint8_t *p, size_t n)
{
    size_t count = 0, i = 0;
#ifdef __SSE2__
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (n - i >= 16) {
        __m128i acc = zero;
        for (unsigned k = 0; k < 255 && n - i >= 16; k++, i += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + i)), nl));
        __m128i sums = _mm_sad_epu8(acc, zero);
        count += (size_t)_mm_cvtsi128_si64(sums) + (size_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
    }
#endif
    for (; i < n; i++)
        count += p[i] == '\n';
    return count;
}

void vs__line_advance(const uint8_t *data, struct line_cursor *lc, size_t offset, size_t *line,
                      size_t *col)
{
    if (lc->line == 0 || offset < lc->at) {
        lc->at = 0;
        lc->line = 1;
    }
    lc->line += count_newlines(data + lc->at, offset - lc->at);
    lc->at = offset;
    const uint8_t *bol = offset > 0 ? memrchr(data, '\n', offset) : NULL;
    *line = lc->line;
    *col = offset - (bol != NULL ? (size_t)(bol - data) + 1 : 0) + 1;
}

/* A few leading characters (printable ASCII) and the length: enough to
 * find the secret again, never enough to use it. */
static void redact(const uint8_t *s, size_t n, char out[VS_SCAN_SAMPLE_MAX])
{
    size_t show = n >= 16 ? 4 : n >= 8 ? 2 : 0;
    char head[8];
    for (size_t i = 0; i < show; i++)
        head[i] = s[i] >= 0x21 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? (char)s[i] : '?';
    head[show] = '\0';
    snprintf(out, VS_SCAN_SAMPLE_MAX, "%s... (%zu chars)", head, n);
}

/* Whether the line before a match (at most DOWNGRADE_REACH bytes) says
 * it is written about the attack rather than an attack. */
static bool downgraded(struct scan_ctx *c, const struct rule *r, size_t ms)
{
    size_t lo = ms;
    while (lo > 0 && ms - lo < DOWNGRADE_REACH && c->data[lo - 1] != '\n')
        lo--;
    for (size_t i = 0; i < r->ndowngrade; i++)
        if (pcre2_match(r->downgrade[i], c->data + lo, ms - lo, 0, 0, c->s->md, c->s->mctx) >= 0)
            return true;
    return false;
}

struct vs_finding *vs__finding_slot(struct finding_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct vs_finding *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    return &l->v[l->n++];
}

static int add_finding(struct scan_ctx *c, const struct rule *r, size_t ms, size_t me, size_t ss,
                       size_t se);

/* Rule id may match around end (a Hyperscan hit, or a detector's
 * candidate): confirm it, once per match, and keep it. */
static int confirm_hit(struct scan_ctx *c, size_t id, size_t end)
{
    const struct rule *r = &c->rs->rules[id];
    size_t ms, me;
    if (c->s->last_end[id] > 0 && end <= c->s->last_end[id])
        return 0;
    bool around = r->prefilter != NULL || r->detector != DETECT_NONE;
    if (!(around ? confirm_around : confirm_end)(c, r, end, &ms, &me))
        return 0;
    c->s->last_end[id] = me;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->s->md);
    size_t ss = ms, se = me;
    if (r->secret_group > 0 && ov[2 * r->secret_group] != PCRE2_UNSET) {
        ss = ov[2 * r->secret_group];
        se = ov[2 * r->secret_group + 1];
    }
    return add_finding(c, r, ms, me, ss, se);
}

static int on_hit(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                  void *arg)
{
    (void)from;
    (void)flags;
    return confirm_hit(arg, id, (size_t)to);
}

/* A confirmed match [ms, me) with its secret [ss, se): kept unless the
 * validator, an allowlist or the line's marker says otherwise. 0, or 1
 * to stop (out of memory, in c->stop). */
static int add_finding(struct scan_ctx *c, const struct rule *r, size_t ms, size_t me, size_t ss,
                       size_t se)
{
    const uint8_t *secret = c->data + ss;
    size_t n = se - ss;
    if (n == 0 || !valid(r, secret, n) || allowed_by(&c->rs->allow, c->s, secret, n) ||
        allowed_by(&r->allow, c->s, secret, n) || marked_line(c, ms, me))
        return 0;
    struct vs_finding *f = vs__finding_slot(&c->s->found);
    if (f == NULL) {
        c->stop = -ENOMEM;
        return 1;
    }
    *f = (struct vs_finding){.rule_id = r->id, .family = r->family,
                             .description = r->description != NULL ? r->description : r->id,
                             .offset = ss, .length = n, .severity = r->severity,
                             .confidence = r->confidence, .transforms = c->transforms};
    if (f->severity > VS_SEV_MEDIUM && downgraded(c, r, ms))
        f->severity = VS_SEV_MEDIUM;
    redact(secret, n, f->sample);
    return 0;
}

static int on_run(size_t start, size_t end, size_t rule, void *arg)
{
    struct scan_ctx *c = arg;
    const struct rule *r = &c->rs->rules[rule];
    if (r->re != NULL)
        return confirm_hit(c, rule, end);
    return add_finding(c, r, start, end, start, end);
}

static int by_offset(const void *a, const void *b)
{
    const struct vs_finding *x = a, *y = b;
    return x->offset != y->offset ? (x->offset < y->offset ? -1 : 1)
                                  : (x->length > y->length) - (x->length < y->length);
}

/* Which of two overlapping findings of different rules stays: the more
 * severe (a credential over the e-mail address its URL contains), then
 * the more confident, then the longer. */
static bool outranks(const struct vs_finding *a, const struct vs_finding *b)
{
    if (a->severity != b->severity)
        return a->severity > b->severity;
    if (a->confidence != b->confidence)
        return a->confidence > b->confidence;
    return a->length >= b->length;
}

/* Settle overlaps, then hand the findings out in order of offset. */
static int emit(struct scan_ctx *c)
{
    vs_scan_scratch *s = c->s;
    if (s->found.n > 1)
        qsort(s->found.v, s->found.n, sizeof *s->found.v, by_offset);
    size_t kept = 0, longest = 0;
    for (size_t i = 0; i < s->found.n; i++) {
        struct vs_finding *f = &s->found.v[i];
        bool drop = false;
        /* Sorted by offset: only findings that start within the longest
         * length seen so far can reach this one. */
        for (size_t j = kept; j-- > 0 && !drop && s->found.v[j].offset + longest > f->offset;) {
            struct vs_finding *k = &s->found.v[j];
            if (k->offset + k->length <= f->offset)
                continue;
            if (k->rule_id == f->rule_id)
                continue;
            if (outranks(k, f))
                drop = true;
            else
                k->length = 0; /* marked: dropped below */
        }
        if (!drop) {
            if (f->length > longest)
                longest = f->length;
            s->found.v[kept++] = *f;
        }
    }
    for (size_t i = 0; i < kept; i++) {
        struct vs_finding *f = &s->found.v[i];
        if (f->length == 0)
            continue;
        if (c->positions)
            vs__line_advance(c->data, &c->lines, f->offset, &f->line, &f->column);
        int rc = c->fn(f, c->arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int vs_scan(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data, size_t len,
            unsigned transforms, vs_finding_fn fn, void *arg)
{
    if (rs == NULL || s == NULL || s->rs != rs || (data == NULL && len > 0) || fn == NULL)
        return -EINVAL;
    return vs__scan_block(rs, s, data, NULL, len, transforms, true, fn, arg);
}

int vs__scan_block(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data,
                   const uint8_t *search, size_t len, unsigned transforms, bool positions,
                   vs_finding_fn fn, void *arg)
{
    if (len > UINT32_MAX)
        return -EFBIG;
    memset(s->last_end, 0, rs->n * sizeof *s->last_end);
    s->found.n = 0;
    struct scan_ctx c = {.rs = rs, .s = s, .data = data, .len = len, .transforms = transforms,
                         .positions = positions, .fn = fn, .arg = arg};
    hs_error_t e = rs->db == NULL ? HS_SUCCESS
                                  : hs_scan(rs->db, len > 0 ? (const char *)(search ? search : data) : "", (unsigned)len,
                                            0, s->hs, on_hit, &c);
    if (e == HS_SCAN_TERMINATED)
        return c.stop;
    if (e != HS_SUCCESS)
        return -EIO;
    if (rs->detect_min_len > 0 && vs__detect_runs(rs, data, len, on_run, &c) != 0)
        return c.stop;
    return emit(&c);
}

const char *vs_scan_severity_name(enum vs_severity s)
{
    static const char *const names[] = {"info", "low", "medium", "high", "critical"};
    return (unsigned)s < 5 ? names[s] : "unknown";
}

int vs_scan_severity_parse(const char *name, enum vs_severity *out)
{
    for (int i = VS_SEV_INFO; name != NULL && i <= VS_SEV_CRITICAL; i++) {
        if (strcmp(name, vs_scan_severity_name((enum vs_severity)i)) == 0) {
            *out = (enum vs_severity)i;
            return 0;
        }
    }
    return -EINVAL;
}
