/*
 * stream.c - the streaming scan (vs/scan.h): input that arrives in pieces
 * of any size (a file read in chunks, a blob as its chunks open) is
 * scanned in bounded memory, with the findings a block scan of the whole
 * input would give.
 *
 * How: the pieces fill a segment of VS_SCAN_SEGMENT bytes, which is
 * scanned as one block (vs_scan or vs_scan_deep). The last 2R bytes of a
 * segment (R: the ruleset's longest match, its largest max_len) start the
 * next one. A segment reports the findings that end before its last R
 * bytes - their matches, at most R long, lie whole inside it - and the
 * next one those that end from there on, whose matches start inside it.
 * Every finding is reported once, by the segment that saw all of it.
 *
 * Why not Hyperscan's stream mode: a hit is only a candidate until PCRE2
 * has confirmed it on the bytes around it, and validators and allowlists
 * need the secret itself, so the recent input has to be kept anyway; the
 * overlap rescans 2R bytes per segment (16 KiB of 1 MiB with the exfil
 * rules), and the block database serves both modes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ruleset.h"

struct vs_scan_stream {
    const vs_ruleset *rs;
    vs_scan_scratch *s;
    bool deep;
    vs_finding_fn fn;
    void *arg;
    uint8_t *buf;           /* the segment: stream bytes [base, base + len) */
    size_t len, cap, keep;  /* keep: the 2R bytes carried into the next segment */
    uint64_t base;
    uint64_t reported_to;   /* findings ending before this were reported */
    uint64_t limit;         /* this segment reports findings ending before this */
    size_t line;            /* the line of buf[0], 1-based */
    size_t col;             /* the column of buf[0], 1-based */
    struct line_cursor lines;
};

int vs_scan_stream_new(const vs_ruleset *rs, vs_scan_scratch *s, bool deep, vs_finding_fn fn,
                       void *arg, vs_scan_stream **out)
{
    if (rs == NULL || s == NULL || s->rs != rs || fn == NULL || out == NULL)
        return -EINVAL;
    size_t keep = 2 * rs->longest;
    size_t cap = VS_SCAN_SEGMENT > 2 * keep ? VS_SCAN_SEGMENT : 2 * keep;
    vs_scan_stream *st = calloc(1, sizeof *st);
    uint8_t *buf = malloc(cap);
    if (st == NULL || buf == NULL) {
        free(st);
        free(buf);
        return -ENOMEM;
    }
    *st = (vs_scan_stream){.rs = rs, .s = s, .deep = deep, .fn = fn, .arg = arg, .buf = buf,
                           .cap = cap, .keep = keep, .line = 1, .col = 1};
    *out = st;
    return 0;
}

void vs_scan_stream_free(vs_scan_stream *st)
{
    if (st == NULL)
        return;
    free(st->buf);
    free(st);
}

/* A finding of the segment: passed on, in stream offsets and positions,
 * when this segment is the one to report it. */
static int report(const struct vs_finding *f, void *arg)
{
    vs_scan_stream *st = arg;
    uint64_t end = st->base + f->offset + f->length;
    if (end < st->reported_to || end >= st->limit)
        return 0;
    struct vs_finding g = *f;
    g.offset = (size_t)(st->base + f->offset);
    size_t line, col;
    vs__line_advance(st->buf, &st->lines, f->offset, &line, &col);
    g.line = st->line + line - 1;
    g.column = line == 1 ? st->col + col - 1 : col;
    return st->fn(&g, st->arg);
}

/* Scan the segment; unless it is the last, carry its tail into the next. */
static int scan_segment(vs_scan_stream *st, bool last)
{
    st->limit = last ? UINT64_MAX : st->base + st->len - st->keep / 2;
    st->lines = (struct line_cursor){0};
    int rc = st->deep ? vs_scan_deep(st->rs, st->s, st->buf, st->len, report, st)
                      : vs__scan_block(st->rs, st->s, st->buf, NULL, st->len, 0, false, report, st);
    if (rc != 0 || last)
        return rc;
    st->reported_to = st->limit;
    size_t drop = st->len - st->keep;
    for (const uint8_t *p = st->buf, *e = st->buf + drop; p < e; p++) {
        if (*p == '\n') {
            st->line++;
            st->col = 1;
        } else {
            st->col++;
        }
    }
    memmove(st->buf, st->buf + drop, st->keep);
    st->base += drop;
    st->len = st->keep;
    return 0;
}

int vs_scan_stream_write(vs_scan_stream *st, const uint8_t *data, size_t len)
{
    if (st == NULL || (data == NULL && len > 0))
        return -EINVAL;
    while (len > 0) {
        size_t n = st->cap - st->len < len ? st->cap - st->len : len;
        memcpy(st->buf + st->len, data, n);
        st->len += n;
        data += n;
        len -= n;
        if (st->len == st->cap) {
            int rc = scan_segment(st, false);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int vs_scan_stream_finish(vs_scan_stream *st)
{
    return st == NULL ? -EINVAL : scan_segment(st, true);
}
