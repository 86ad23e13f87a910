/*
 * pipeline.c - vs_scan_deep (vs/scan.h): the injection stage's scan of a
 * text as it is, normalized, and through every encoded run it holds.
 *
 * Why three passes and not one: the original keeps its line structure
 * (fake dialogue turns and headings are about lines) and its offsets;
 * the normalized copy undoes the obfuscations a phrase rule cannot spell
 * out (zero-width characters, look-alike letters, leetspeak, spaced
 * letters); decoded runs catch instructions hidden in base64, hex,
 * percent or HTML escapes. Each pass's findings are mapped back to the
 * original and merged: one finding per rule and original range, from the
 * pass with the fewest transformations.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ruleset.h"

#define DECODE_DEPTH 3
#define DECODE_MIN_BUDGET (64u << 10)
#define DECODE_MAX_BUDGET (64u << 20)

struct deep {
    vs_scan_scratch *s;
    const uint8_t *orig;
    size_t orig_len;
    const uint32_t *map;    /* normalized pass: output byte -> original offset */
    size_t map_len;
    size_t run_at;          /* decoded pass: where the run starts in the original */
    bool decoded;
};

/* Keep a finding, its offset and length in the original text. */
static int keep(const struct vs_finding *f, void *arg)
{
    struct deep *d = arg;
    vs_scan_scratch *s = d->s;
    struct vs_finding g = *f;
    if (d->decoded) {
        g.offset = d->run_at;
        g.length = 1; /* the run's start: the decoded text has no bytes of its own here */
    } else if (d->map != NULL) {
        size_t last = f->offset + (f->length > 0 ? f->length - 1 : 0);
        if (f->offset >= d->map_len || last >= d->map_len)
            return -EINVAL;
        g.offset = d->map[f->offset];
        g.length = d->map[last] + 1 - g.offset;
    }
    if (s->ndeep == s->deep_cap) {
        size_t cap = s->deep_cap ? s->deep_cap * 2 : 32;
        struct vs_finding *nd = realloc(s->deep, cap * sizeof *nd);
        if (nd == NULL)
            return -ENOMEM;
        s->deep = nd;
        s->deep_cap = cap;
    }
    s->deep[s->ndeep++] = g;
    return 0;
}

/* Scan text, and its normalized form when normalizing changed more than
 * case and spacing. transforms: what produced text (decoding). */
static int scan_both(const vs_ruleset *rs, struct deep *d, vs_normalizer *n, const uint8_t *text,
                     size_t len, unsigned transforms)
{
    int rc = vs__scan_block(rs, d->s, text, len, transforms, false, keep, d);
    if (rc)
        return rc;
    const uint8_t *norm;
    size_t nlen;
    unsigned t = 0;
    const uint32_t *map = NULL;
    if ((rc = vs_normalize(n, text, len, &norm, &nlen, &t, d->decoded ? NULL : &map)) < 0)
        return rc;
    if (t == 0)
        return 0;
    const uint32_t *saved_map = d->map;
    size_t saved_len = d->map_len;
    d->map = map;
    d->map_len = nlen;
    rc = vs__scan_block(rs, d->s, norm, nlen, transforms | t, false, keep, d);
    d->map = saved_map;
    d->map_len = saved_len;
    return rc;
}

static int on_decoded(const uint8_t *data, size_t len, unsigned transforms, size_t offset, void *arg)
{
    struct deep *d = arg;
    d->run_at = offset;
    return scan_both(d->s->rs, d, d->s->norm_decoded, data, len, transforms);
}

static int by_position(const void *a, const void *b)
{
    const struct vs_finding *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    int c = strcmp(x->rule_id, y->rule_id);
    if (c != 0)
        return c;
    /* the fewest transformations first */
    return __builtin_popcount(x->transforms) - __builtin_popcount(y->transforms);
}

int vs_scan_deep(const vs_ruleset *rs, vs_scan_scratch *s, const uint8_t *data, size_t len,
                 vs_finding_fn fn, void *arg)
{
    if (rs == NULL || s == NULL || s->rs != rs || (data == NULL && len > 0) || fn == NULL)
        return -EINVAL;
    s->ndeep = 0;
    struct deep d = {.s = s, .orig = data, .orig_len = len};
    int rc = scan_both(rs, &d, s->norm, data, len, 0);
    if (rc == 0) {
        size_t budget = len * 2 < DECODE_MIN_BUDGET   ? DECODE_MIN_BUDGET
                        : len * 2 > DECODE_MAX_BUDGET ? DECODE_MAX_BUDGET
                                                      : len * 2;
        d.decoded = true;
        rc = vs_norm_decode(s->norm, data, len, DECODE_DEPTH, budget, on_decoded, &d);
    }
    if (rc)
        return rc;
    if (s->ndeep > 1)
        qsort(s->deep, s->ndeep, sizeof *s->deep, by_position);
    size_t longest = 0;
    struct line_cursor lines = {0, 0};
    for (size_t i = 0; i < s->ndeep; i++) {
        struct vs_finding *f = &s->deep[i];
        bool repeat = false;
        /* sorted by offset: only findings within the longest length seen can overlap */
        for (size_t j = i; j-- > 0 && !repeat && s->deep[j].offset + longest > f->offset;) {
            const struct vs_finding *p = &s->deep[j];
            repeat = p->rule_id == f->rule_id && p->offset + p->length > f->offset;
        }
        if (f->length > longest)
            longest = f->length;
        if (repeat)
            continue;
        vs__line_advance(data, &lines, f->offset, &f->line, &f->column);
        if ((rc = fn(f, arg)) != 0)
            return rc;
    }
    return 0;
}
