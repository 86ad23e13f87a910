/*
 * decode.c - the second half of the text normalizer (vs/normalize.h):
 * vs_norm_decode, which finds encoded runs (base64, hex, percent, HTML
 * entities, backslash escapes) in a text and hands each decoded piece to a
 * callback, searching the pieces again up to a depth and a size budget.
 *
 * Why it is built this way: it runs on every text the injection scanner
 * sees (>= 1 GB/s per core with normalization included), and nearly all
 * text holds nothing encoded, so it walks its input once, skipping 16-byte
 * blocks that cannot start a run, splitting the rest into runs by
 * character class, and decodes only runs that pass the length and count
 * thresholds; a base64 candidate is first judged from the bit planes of
 * its characters (probe_bad_bound: a lower bound on the bad bytes its
 * probe would decode to, which rejects nearly every identifier and word
 * without decoding it), and base64 and hex runs are then checked on a
 * decoded prefix of at most 48 bytes, so long identifiers, paths, hashes
 * and keys are rejected cheaply.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "normalizer.h"

/* ---- tables ------------------------------------------------------------------ */

/* Classes for run detection: D_B64 1 (base64 and base64url alphabet), D_HEX 2, D_DIGIT 4. */
static const uint8_t dcls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0,
    0, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
    0, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* Base64 digit values (standard and URL alphabets); 255: not a digit. */
static const uint8_t b64val[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255,  62, 255,  63,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255, 255, 255, 255,
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255,  63,
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

enum { D_B64 = 1, D_HEX = 2, D_DIGIT = 4 };

/* ---- vs_norm_decode: shared state, budget, pieces ------------------------------ */

#define B64_MIN 16u    /* base64 run length */
#define HEX_MIN 16u    /* hex digits */
#define PROBE_CHARS 64 /* encoded characters decoded to judge a run cheaply */
#define ESC_GAP 16u    /* bytes allowed between two escapes of a run */
#define ESC_WIDEN 64u  /* how far a run of escapes is widened to its word */

struct dctx {
    vs_normalizer *n;
    unsigned max_depth;
    size_t max_total, total; /* budget of decoded bytes, and used */
    bool stopped;            /* the budget is spent */
    vs_norm_decoded_fn fn;
    void *arg;
};

static int scan_text(struct dctx *c, const uint8_t *s, size_t len, unsigned depth, unsigned tf,
                     size_t top_off);

/* The buffer for a piece of this depth, with room for want bytes or what
 * is left of the budget if less (*room). Returns 0 or -ENOMEM. */
static int piece_buf(struct dctx *c, unsigned depth, size_t want, uint8_t **buf, size_t *room)
{
    struct norm_buf *b = &c->n->level[depth - 1];
    size_t left = c->max_total - c->total;
    uint8_t *p;

    if (want > left) {
        want = left;
    }
    p = vs__norm_grow(b->p, &b->cap, want, 1);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->p = p;
    *buf = p;
    *room = want;
    return 0;
}

/* Counts used decoded bytes against the budget. */
static void charge(struct dctx *c, size_t used)
{
    c->total += used;
    if (c->total >= c->max_total) {
        c->stopped = true;
    }
}

/* Whether >= 90% of p[0..n) is printable ASCII, tab, CR, LF or part of a
 * well-formed UTF-8 sequence; below 24 bytes, all must be printable ASCII
 * (a few random bytes too easily look like 2-byte UTF-8). Stops at the
 * first bad byte too many, so binary is rejected after a few bytes. */
static bool mostly_printable(const uint8_t *p, size_t n)
{
    size_t bad = 0, max_bad = n >= 24 ? n / 10 : 0, i = 0;

    while (i < n && bad <= max_bad) {
        uint32_t cp;
        size_t k;
        if (p[i] < 0x80) {
            bad += !((p[i] >= 0x20 && p[i] < 0x7F) || p[i] == '\t' || p[i] == '\n' || p[i] == '\r');
            i++;
            continue;
        }
        k = n >= 24 ? vs__utf8_decode(p + i, n - i, &cp) : 0;
        bad += k == 0;
        i += k > 0 ? k : 1;
    }
    return n > 0 && bad <= max_bad;
}

/* Reports a piece, then searches it while below the depth limit. */
static int emit_piece(struct dctx *c, const uint8_t *p, size_t n, unsigned tf, size_t off,
                      unsigned depth)
{
    int rc;

    if (n == 0) {
        return 0;
    }
    rc = c->fn(p, n, tf, off, c->arg);
    if (rc != 0 || depth >= c->max_depth || c->stopped) {
        return rc;
    }
    return scan_text(c, p, n, depth + 1, tf, off);
}

/* ---- base64 and hex ------------------------------------------------------------ */

/* Decodes base64 / base64url digits s[0..n) (no padding) into at most room
 * bytes; returns the count. */
static size_t b64_decode(const uint8_t *s, size_t n, uint8_t *out, size_t room)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t k = 0;

    for (size_t i = 0; i < n && k < room; i++) {
        acc = ((acc << 6) | b64val[s[i]]) & 0xFFFFu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    return k;
}

/* Decodes pairs of hex digits s[0..n) into at most room bytes. */
static size_t hex_decode(const uint8_t *s, size_t n, uint8_t *out, size_t room)
{
    size_t k = 0;

    for (size_t i = 0; i + 1 < n && k < room; i += 2) {
        out[k++] = (uint8_t)((vs__hexval[s[i]] << 4) | vs__hexval[s[i + 1]]);
    }
    return k;
}

typedef size_t (*run_decoder)(const uint8_t *s, size_t n, uint8_t *out, size_t room);

/* Decodes the run s[0..n) with dec when its first PROBE_CHARS characters,
 * then all of it, decode to mostly printable text; reports it with bit.
 * *found tells whether it was reported. Returns 0 or fn's / -ENOMEM. */
static int try_run(struct dctx *c, const uint8_t *s, size_t n, run_decoder dec, unsigned bit,
                   unsigned depth, unsigned tf, size_t off, bool *found)
{
    uint8_t probe[PROBE_CHARS], *buf;
    size_t got = dec(s, n < PROBE_CHARS ? n : PROBE_CHARS, probe, sizeof probe), room;
    int rc;

    *found = false;
    if (c->stopped || !mostly_printable(probe, got)) {
        return 0;
    }
    rc = piece_buf(c, depth, n, &buf, &room);
    if (rc != 0) {
        return rc;
    }
    got = dec(s, n, buf, room);
    charge(c, got);
    if (!mostly_printable(buf, got)) {
        return 0;
    }
    *found = true;
    return emit_piece(c, buf, got, tf | bit, off, depth);
}

/* AND of the run classes of s[0..n). */
static unsigned run_class(const uint8_t *s, size_t n)
{
    unsigned all = D_B64 | D_HEX | D_DIGIT;

    for (size_t i = 0; i < n; i++) {
        all &= dcls[s[i]];
    }
    return all;
}

/* Byte vectors for the base64 probe bound, with GCC vector extensions
 * (SSE2 on x86-64, scalar code where there is no SIMD); the one operation
 * they lack, the sign bits as a mask, is SSE2's movemask or a loop. */
typedef signed char v16 __attribute__((vector_size(16)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

static inline uint32_t movemask16(const v16 *m)
{
#if VS_NORM_SSE2
    __m128i v;

    memcpy(&v, m, 16);
    return (uint32_t)_mm_movemask_epi8(v);
#else
    uint32_t bits = 0;

    for (unsigned k = 0; k < 16; k++) {
        bits |= (uint32_t)((*m)[k] < 0) << k;
    }
    return bits;
#endif
}

/* Byte mask of the vector v: lo <= byte <= hi (an ASCII range; signed
 * elements, so bytes >= 0x80 are never in it). */
#define IN_RANGE(v, lo, hi) (((v) >= (lo)) & ((v) <= (hi)))

/* The bits below n (n < 64). */
static inline uint64_t below(unsigned n)
{
    return ((uint64_t)1 << n) - 1;
}

/* Bit planes of the values of the first 96 base64 characters from s (fewer
 * readable: len, the rest read as zeros): bit p of plane[k] is bit k of
 * character p's value, p < 64 in lo and the rest in hi. */
struct sextets {
    uint64_t lo[6];
    uint32_t hi[6];
};

static void sextet_planes(const uint8_t *s, size_t len, struct sextets *sx)
{
    uint8_t copy[96];
    const uint8_t *p = s;

    if (len < sizeof copy) {
        memset(copy, 0, sizeof copy);
        memcpy(copy, s, len);
        p = copy;
    }
    memset(sx, 0, sizeof *sx);
    for (unsigned blk = 0; blk < 6; blk++) {
        v16 v;
        u8x16 u, val;
        memcpy(&v, p + 16 * blk, 16);
        memcpy(&u, p + 16 * blk, 16); /* unsigned: wrapping arithmetic */
        val = ((u8x16)IN_RANGE(v, 'A', 'Z') & (u - 'A')) |
              ((u8x16)IN_RANGE(v, 'a', 'z') & (u - ('a' - 26))) |
              ((u8x16)IN_RANGE(v, '0', '9') & (u + (52 - '0'))) |
              ((u8x16)((v == '+') | (v == '-')) & 62) | ((u8x16)((v == '/') | (v == '_')) & 63);
        for (unsigned k = 0; k < 6; k++) {
            v16 plane = (v16)((val & (uint8_t)(1u << k)) != 0); /* x86 has no byte shifts */
            uint64_t m = movemask16(&plane);
            if (blk < 4) {
                sx->lo[k] |= m << (16 * blk);
            } else {
                sx->hi[k] |= (uint32_t)m << (16 * (blk - 4));
            }
        }
    }
}

/* A lower bound on the bad bytes that mostly_printable finds in the probe
 * decoded from the first n (16..64) characters from alignment a (< 4) -
 * without decoding. Decoded byte t's bits 7 and 6 are two bits of one
 * character (bits 5-4, 3-2, 1-0 of characters 0, 1, 2 of each group of 4),
 * and so are its bits 5 and 4 for t % 3 < 2. Bad for certain are: a byte
 * 0x00-0x07, 0x10-0x1F or (slot 0 only) 0x08-0x0F but tab, LF or CR, seen in
 * the top bits; in a probe under 24 bytes any byte >= 0x80; otherwise a
 * UTF-8 continuation byte (10xxxxxx) not after a byte >= 0x80 and a lead
 * byte (11xxxxxx) not before a continuation byte, since a well-formed
 * sequence has neither. */
static unsigned probe_bad_bound(const struct sextets *sx, unsigned a, unsigned n)
{
    const uint64_t slot0 = 0x1111111111111111u, slot1 = slot0 << 1, slot2 = slot0 << 2;
    uint64_t b[6], bytes = (slot0 | slot1 | slot2) & below(n - 1), top, second, bad;

    for (unsigned k = 0; k < 6; k++) {
        b[k] = sx->lo[k] >> a | (a > 0 ? (uint64_t)sx->hi[k] << (64 - a) : 0);
    }
    top = ((b[5] & slot0) | (b[3] & slot1) | (b[1] & slot2)) & bytes;
    second = (b[4] & slot0) | (b[2] & slot1) | (b[0] & slot2);
    bad = (~b[5] & ~b[4] & ~b[3] & ~(~b[2] & b[1]) & slot0) | (~b[3] & ~b[2] & ~b[1] & b[0] & slot1);
    if (n * 6 / 8 < 24) {
        bad |= top;
    } else {
        uint64_t cont = top & ~second, lead = top & second;
        uint64_t after_high = (top << 1 & (slot1 | slot2)) | (top << 2 & slot0);
        uint64_t before_cont = (cont >> 1 & (slot0 | slot1)) | (cont >> 2 & slot2);
        bad |= (cont & ~after_high) | (lead & ~before_cont);
    }
    return (unsigned)__builtin_popcountll(bad & bytes);
}

/* A maximal run s[i..e) of base64-alphabet characters (len: readable from
 * s[i]), all its characters' classes ANDed in all, at least B64_MIN long:
 * tried as hex (after an optional 0x), then as base64 at its 4 alignments,
 * each only when probe_bad_bound leaves its probe a chance: identifiers and
 * words are that long too, and almost all are rejected there. */

static int try_alnum_run(struct dctx *c, const uint8_t *s, size_t len, size_t i, size_t e,
                         unsigned all, unsigned depth, unsigned tf, size_t top_off)
{
    bool ox = s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X');
    size_t h = ox ? i + 2 : i;
    bool found = false;
    struct sextets sx;
    int rc;

    if (ox) {
        all = run_class(s + h, e - h);
    }
    if ((all & D_HEX) && !(all & D_DIGIT) && e - h >= HEX_MIN && (e - h) % 2 == 0) {
        rc = try_run(c, s + h, e - h, hex_decode, VS_NORM_HEX, depth, tf,
                     depth == 1 ? h : top_off, &found);
        if (rc != 0 || found) {
            return rc;
        }
    }
    if (ox || (all & D_DIGIT)) {
        return 0;
    }
    sextet_planes(s + i, len - i, &sx);
    for (size_t a = 0; a < 4 && e - i - a >= B64_MIN && !found; a++) {
        unsigned chars = e - i - a < PROBE_CHARS ? (unsigned)(e - i - a) : PROBE_CHARS;
        unsigned bytes = chars * 6 / 8;
        if (probe_bad_bound(&sx, (unsigned)a, chars) > (bytes >= 24 ? bytes / 10 : 0)) {
            continue;
        }
        rc = try_run(c, s + i + a, e - i - a, b64_decode, VS_NORM_BASE64, depth, tf,
                     depth == 1 ? i + a : top_off, &found);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- escapes: percent, HTML entities, backslash --------------------------------- */

enum esc_kind { ESC_PCT, ESC_HTML, ESC_BSL };

static const struct {
    uint8_t lead;
    unsigned bit, min;
} esc_info[] = {
    [ESC_PCT] = {'%', VS_NORM_PERCENT, 3},
    [ESC_HTML] = {'&', VS_NORM_HTML, 2},
    [ESC_BSL] = {'\\', VS_NORM_UESCAPE, 3},
};

static const struct {
    const char *name;
    uint32_t cp;
} html_names[] = {
    {"amp", '&'},     {"lt", '<'},      {"gt", '>'},       {"quot", '"'},    {"apos", '\''},
    {"nbsp", 0xA0},   {"colon", ':'},   {"semi", ';'},     {"sol", '/'},     {"bsol", '\\'},
    {"lpar", '('},    {"rpar", ')'},    {"period", '.'},   {"comma", ','},   {"excl", '!'},
    {"quest", '?'},   {"num", '#'},     {"dollar", '$'},   {"percnt", '%'},  {"ast", '*'},
    {"plus", '+'},    {"equals", '='},  {"commat", '@'},   {"lsqb", '['},    {"rsqb", ']'},
    {"lcub", '{'},    {"rcub", '}'},    {"verbar", '|'},   {"lowbar", '_'},  {"grave", '`'},
    {"Tab", '\t'},    {"NewLine", '\n'}, {"hyphen", 0x2010}, {"shy", 0xAD},  {"zwj", 0x200D},
    {"zwnj", 0x200C},
};

/* The value of up to max hex (base 16) or decimal digits at s[0..n), at
 * least one; *len gets their count (0: none). */
static uint32_t digits(const uint8_t *s, size_t n, unsigned base, size_t max, size_t *len)
{
    uint32_t v = 0;
    size_t i = 0;

    while (i < n && i < max && vs__hexval[s[i]] < base) {
        v = v * base + vs__hexval[s[i]];
        i++;
    }
    *len = i;
    return v;
}

/* Whether cp can be encoded (a Unicode scalar value other than NUL). */
static bool scalar_ok(uint32_t cp)
{
    return cp > 0 && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
}

/* &name; &#N; &#xN; at s[0..n) (s[0] == '&'): its length (0: none). */
static size_t esc_html(const uint8_t *s, size_t n, uint8_t out[4], size_t *olen)
{
    size_t p = 2, d;
    unsigned base = 10;
    uint32_t v;

    if (n < 4) {
        return 0;
    }
    if (s[1] != '#') {
        for (size_t k = 0; k < sizeof html_names / sizeof html_names[0]; k++) {
            size_t l = strlen(html_names[k].name);
            if (l + 2 <= n && memcmp(s + 1, html_names[k].name, l) == 0 && s[l + 1] == ';') {
                *olen = vs__utf8_encode(html_names[k].cp, out);
                return l + 2;
            }
        }
        return 0;
    }
    if (s[2] == 'x' || s[2] == 'X') {
        base = 16;
        p = 3;
    }
    v = digits(s + p, n - p, base, base == 16 ? 6 : 7, &d);
    p += d;
    if (d == 0 || p >= n || s[p] != ';' || !scalar_ok(v)) {
        return 0;
    }
    *olen = vs__utf8_encode(v, out);
    return p + 1;
}

/* \xXX \uXXXX (surrogate pairs joined) \u{X..X} \UXXXXXXXX at s[0..n)
 * (s[0] == '\\'): its length (0: none). \x gives the raw byte; a lone
 * surrogate gives '?'. */
static size_t esc_backslash(const uint8_t *s, size_t n, uint8_t out[4], size_t *olen)
{
    size_t d;
    uint32_t v, lo;

    if (n < 4) {
        return 0;
    }
    if (s[1] == 'x') {
        v = digits(s + 2, 2, 16, 2, &d);
        out[0] = (uint8_t)v;
        *olen = 1;
        return d == 2 ? 4 : 0;
    }
    if (s[1] == 'U' || (s[1] == 'u' && s[2] == '{')) {
        bool brace = s[1] == 'u';
        v = digits(s + 2 + brace, n - 2 - brace, 16, brace ? 6 : 8, &d);
        if (d == 0 || (brace && (2 + 1 + d >= n || s[3 + d] != '}')) || (!brace && d != 8) ||
            !scalar_ok(v)) {
            return 0;
        }
        *olen = vs__utf8_encode(v, out);
        return 2 + d + 2 * brace;
    }
    if (s[1] != 'u' || n < 6 || (v = digits(s + 2, 4, 16, 4, &d), d != 4)) {
        return 0;
    }
    if (v >= 0xD800 && v <= 0xDBFF && n >= 12 && s[6] == '\\' && s[7] == 'u' &&
        (lo = digits(s + 8, 4, 16, 4, &d), d == 4) && lo >= 0xDC00 && lo <= 0xDFFF) {
        *olen = vs__utf8_encode(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00), out);
        return 12;
    }
    if (!scalar_ok(v)) {
        out[0] = '?';
        *olen = 1;
        return 6;
    }
    *olen = vs__utf8_encode(v, out);
    return 6;
}

/* The escape of kind k at s[0..n): its length (0: none) and its decoded
 * bytes out[0..*olen), never more than its length. */
static size_t esc_at(enum esc_kind k, const uint8_t *s, size_t n, uint8_t out[4], size_t *olen)
{
    if (n == 0 || s[0] != esc_info[k].lead) {
        return 0;
    }
    switch (k) {
    case ESC_PCT:
        if (n < 3 || vs__hexval[s[1]] > 15 || vs__hexval[s[2]] > 15) {
            return 0;
        }
        out[0] = (uint8_t)((vs__hexval[s[1]] << 4) | vs__hexval[s[2]]);
        *olen = 1;
        return 3;
    case ESC_HTML:
        return esc_html(s, n, out, olen);
    case ESC_BSL:
        return esc_backslash(s, n, out, olen);
    }
    return 0;
}

/* From the escape at s[i], the escapes of kind k that each follow the one
 * before within ESC_GAP bytes on the same line: their count, and *end just
 * past the last one. */
static size_t esc_run(enum esc_kind k, const uint8_t *s, size_t len, size_t i, size_t *end)
{
    uint8_t tmp[4];
    size_t count = 0, p = i, tl, el;

    *end = i;
    while ((el = esc_at(k, s + p, len - p, tmp, &tl)) > 0) {
        count++;
        p += el;
        *end = p;
        while (p < len && p - *end <= ESC_GAP && s[p] != '\n' &&
               (s[p] != esc_info[k].lead || esc_at(k, s + p, len - p, tmp, &tl) == 0)) {
            p++;
        }
        if (p >= len || p - *end > ESC_GAP || s[p] == '\n') {
            break;
        }
    }
    return count;
}

/* Whether a run of escapes is widened over c (part of the same word). */
static bool word_byte(uint8_t c)
{
    return c > 0x20 && c != 0x7F && c != '"' && c != '\'' && c != '<' && c != '>' && c != '`';
}

/* s[0..n) with the escapes of kind k decoded, into at most room bytes. */
static size_t esc_decode(enum esc_kind k, const uint8_t *s, size_t n, uint8_t *out, size_t room)
{
    size_t i = 0, o = 0;

    while (i < n) {
        uint8_t tmp[4];
        size_t tl = 1, el = esc_at(k, s + i, n - i, tmp, &tl);
        if (el == 0) {
            tmp[0] = s[i];
            tl = 1;
            el = 1;
        }
        if (room - o < tl) {
            break;
        }
        memcpy(out + o, tmp, tl);
        o += tl;
        i += el;
    }
    return o;
}

/* At s[i] (a lead byte): a run of escapes of kind k, if long enough,
 * widened to its word and decoded. *next: where the scan goes on (after the
 * run's last escape). */
static int try_escapes(struct dctx *c, const uint8_t *s, size_t len, size_t i, enum esc_kind k,
                       unsigned depth, unsigned tf, size_t top_off, size_t *next)
{
    size_t end, lo = i, hi, room, got;
    size_t count = esc_run(k, s, len, i, &end);
    uint8_t *buf;
    int rc;

    *next = end > i ? end : i + 1;
    if (count < esc_info[k].min) {
        return 0;
    }
    while (lo > 0 && i - lo < ESC_WIDEN && word_byte(s[lo - 1])) {
        lo--;
    }
    for (hi = end; hi < len && hi - end < ESC_WIDEN && word_byte(s[hi]);) {
        hi++;
    }
    rc = piece_buf(c, depth, hi - lo, &buf, &room);
    if (rc != 0) {
        return rc;
    }
    got = esc_decode(k, s + lo, hi - lo, buf, room);
    charge(c, got);
    return emit_piece(c, buf, got, tf | esc_info[k].bit, depth == 1 ? lo : top_off, depth);
}

/* ---- the scan ------------------------------------------------------------------- */

#if VS_NORM_SSE2
/* From s[i], skips 16-byte blocks holding nothing to decode: returns the
 * first index that may matter, the start of a base64-alphabet run that
 * reaches B64_MIN bytes or a '%', '&' or '\\' (or, near the end, the start
 * of the run in progress). s[i] is taken as the start of a run. */
static size_t skip_plain(const uint8_t *s, size_t i, size_t len)
{
    size_t run = 0; /* base64-alphabet bytes just before s[i] */

    _Static_assert(B64_MIN == 16, "one block completes a run");
    while (len - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i alpha = v_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
        __m128i sym = _mm_or_si128(_mm_or_si128(v_eq(v, '+'), v_eq(v, '/')),
                                   _mm_or_si128(v_eq(v, '-'), v_eq(v, '_')));
        unsigned nb = ~v_bits(_mm_or_si128(_mm_or_si128(alpha, v_range(v, '0', '9')), sym)) & 0xFFFFu;
        unsigned lead = v_bits(_mm_or_si128(_mm_or_si128(v_eq(v, '%'), v_eq(v, '&')), v_eq(v, '\\')));
        if (nb == 0 || run + (size_t)__builtin_ctz(nb) >= B64_MIN) {
            return i - run; /* a long run starts there */
        }
        if (lead != 0) {
            return i + (size_t)__builtin_ctz(lead);
        }
        run = 15 - (size_t)(31 - __builtin_clz(nb)); /* the ones above the last zero */
        i += 16;
    }
    return i - run;
}
#endif

/* Searches s[0..len) for runs; pieces found are of depth depth, carry tf
 * plus their own bit, and report top_off (or, at depth 1, their own
 * position). */
static int scan_text(struct dctx *c, const uint8_t *s, size_t len, unsigned depth, unsigned tf,
                     size_t top_off)
{
    size_t i = 0;
    int rc = 0;

    while (i < len && rc == 0 && !c->stopped) {
        uint8_t b;
#if VS_NORM_SSE2
        i = skip_plain(s, i, len);
        if (i >= len) {
            break;
        }
#endif
        b = s[i];
        if (dcls[b] & D_B64) {
            size_t e = i;
            unsigned all = D_B64 | D_HEX | D_DIGIT;
            while (e < len && (dcls[s[e]] & D_B64)) {
                all &= dcls[s[e++]];
            }
            if (e - i >= B64_MIN) {
                rc = try_alnum_run(c, s, len, i, e, all, depth, tf, top_off);
            }
            i = e;
        } else if (b == '%' || b == '&' || b == '\\') {
            enum esc_kind k = b == '%' ? ESC_PCT : b == '&' ? ESC_HTML : ESC_BSL;
            rc = try_escapes(c, s, len, i, k, depth, tf, top_off, &i);
        } else {
            i++;
        }
    }
    return rc;
}

int vs_norm_decode(vs_normalizer *n, const uint8_t *in, size_t len, unsigned max_depth,
                   size_t max_total, vs_norm_decoded_fn fn, void *arg)
{
    struct dctx c = {n, max_depth < VS_NORM_MAX_DEPTH ? max_depth : VS_NORM_MAX_DEPTH,
                     max_total, 0, max_total == 0, fn, arg};

    if (n == NULL || fn == NULL || (in == NULL && len > 0)) {
        return -EINVAL;
    }
    if (c.max_depth == 0 || len == 0) {
        return 0;
    }
    return scan_text(&c, in, len, 1, 0, SIZE_MAX);
}

