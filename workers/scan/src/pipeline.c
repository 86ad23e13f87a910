/*
 * pipeline.c - vs_scan_deep (vs/scan.h): the injection stage's scan of a
 * text through its normalized form and through every encoded run it
 * holds.
 *
 * Why one pass over the normalized text and not one more over the text
 * as it is: normalizing (vs/normalize.h) only lowercases, collapses
 * spacing (keeping line breaks, which fake dialogue turns and headings
 * are about) and undoes obfuscations (zero-width characters, look-alike
 * letters, leetspeak, spaced letters), so the phrase rules, written in
 * lowercase, see in it everything the original shows them and what it
 * hides - a second pass would cost as much again and find nothing new.
 * Decoded runs (base64, hex, percent, HTML or backslash escapes) are
 * normalized and scanned the same way. Findings are mapped back to the
 * original through the normalizer's byte map and say which
 * transformations revealed them: none when the matched text is the
 * original's up to case and spacing. One finding per rule and original
 * range is reported, from the pass with the fewest transformations.
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
    const uint8_t *text;    /* the text being normalized: the original or a decoded piece */
    const uint8_t *norm;    /* its normalized form */
    vs_normalizer *n;       /* what normalized it */
    const vs_norm_map *map; /* normalized byte -> offset in text; NULL: not made yet */
    size_t norm_len;
    unsigned norm_transforms; /* what normalizing changed anywhere in text */
    size_t run_at;          /* decoded pass: where the run starts in the original */
    bool decoded;
};

/* Whether the normalized bytes [from, to) are the text's own up to case
 * and spacing (nothing removed between them, nothing folded). */
static bool as_is(const struct deep *d, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        uint32_t at = vs_norm_map_at(d->map, i);
        uint8_t o = d->text[at], c = d->norm[i];
        if (c == ' ' || c == '\n') {
            if (o != ' ' && o != '\n' && o != '\t' && o != '\r' && o != '\f' && o != '\v')
                return false;
            continue;
        }
        if ((o >= 'A' && o <= 'Z' ? o + 32 : o) != c)
            return false;
        if (i + 1 < to && d->norm[i + 1] != ' ' && d->norm[i + 1] != '\n' &&
            vs_norm_map_at(d->map, i + 1) != at + 1)
            return false;
    }
    return true;
}

/* Keep a finding, its offset and length in the original text. */
static int keep(const struct vs_finding *f, void *arg)
{
    struct deep *d = arg;
    vs_scan_scratch *s = d->s;
    struct vs_finding g = *f;
    size_t last = f->offset + (f->length > 0 ? f->length - 1 : 0);
    if (f->offset >= d->norm_len || last >= d->norm_len)
        return -EINVAL;
    if (d->map == NULL) { /* the first finding in this text */
        int rc = vs_normalize_map(d->n, &d->map);
        if (rc != 0)
            return rc;
    }
    if (!as_is(d, f->offset, last + 1))
        g.transforms |= d->norm_transforms;
    if (d->decoded) {
        g.offset = d->run_at;
        g.length = 1; /* the run's start: the decoded text has no bytes of its own here */
    } else {
        g.offset = vs_norm_map_at(d->map, f->offset);
        g.length = vs_norm_map_at(d->map, last) + 1 - g.offset;
    }
    struct vs_finding *slot = vs__finding_slot(&s->deep);
    if (slot == NULL)
        return -ENOMEM;
    *slot = g;
    return 0;
}

/* Normalize text and scan that. transforms: what produced text (decoding). */
static int scan_normalized(const vs_ruleset *rs, struct deep *d, vs_normalizer *n,
                           const uint8_t *text, size_t len, unsigned transforms)
{
    int rc = vs_normalize(n, text, len, &d->norm, &d->norm_len, &d->norm_transforms);
    if (rc < 0)
        return rc;
    d->text = text;
    d->n = n;
    d->map = NULL;
    /* Hyperscan reads the text with line breaks as spaces: the phrase
     * lattices are literals with one space between words, and a phrase
     * wrapped onto the next line must still be found; the confirmation
     * runs on the normalized text, where line-anchored rules see the
     * breaks */
    return vs__scan_block(rs, d->s, d->norm, vs_normalize_flat(n), d->norm_len, transforms, false,
                          keep, d);
}

static int on_decoded(const uint8_t *data, size_t len, unsigned transforms, size_t offset, void *arg)
{
    struct deep *d = arg;
    d->run_at = offset;
    return scan_normalized(d->s->rs, d, d->s->norm_decoded, data, len, transforms);
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
    s->deep.n = 0;
    struct deep d = {.s = s};
    int rc = scan_normalized(rs, &d, s->norm, data, len, 0);
    if (rc == 0) {
        size_t budget = len * 2 < DECODE_MIN_BUDGET   ? DECODE_MIN_BUDGET
                        : len * 2 > DECODE_MAX_BUDGET ? DECODE_MAX_BUDGET
                                                      : len * 2;
        d.decoded = true;
        rc = vs_norm_decode(s->norm, data, len, DECODE_DEPTH, budget, on_decoded, &d);
    }
    if (rc)
        return rc;
    if (s->deep.n > 1)
        qsort(s->deep.v, s->deep.n, sizeof *s->deep.v, by_position);
    size_t longest = 0;
    struct line_cursor lines = {0, 0};
    for (size_t i = 0; i < s->deep.n; i++) {
        struct vs_finding *f = &s->deep.v[i];
        bool repeat = false;
        /* sorted by offset: only findings within the longest length seen can overlap */
        for (size_t j = i; j-- > 0 && !repeat && s->deep.v[j].offset + longest > f->offset;) {
            const struct vs_finding *p = &s->deep.v[j];
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
