/*
 * decode.c - the second half of the text normalizer (vs/normalize.h):
 * vs_norm_decode, which finds encoded runs (base64, hex, percent, HTML
 * entities, backslash escapes) in a text and hands each decoded piece to a
 * callback, searching the pieces again up to a depth and a size budget.
 *
 * Why it is built this way: it runs on every text the injection scanner
 * sees (whose whole budget is about 1 ms per MB), and nearly all text holds
 * nothing encoded, so the scan only stops where it may have something to
 * do and finds those stops without looking at bytes one by one:
 *   - 64-byte chunks become bit masks (one bit per byte: base64 alphabet,
 *     escape lead byte '%', '&' or '\\'), and a run of B64_MIN alphabet
 *     bytes is four shift-ANDs of the alphabet mask;
 *   - at a candidate, the search itself decides whether it certainly
 *     decodes to nothing and then goes on (most candidates: "&&", "\\n",
 *     "%s", and identifiers - C headers have a 16-character one every 130
 *     bytes): a lead byte that starts no escape or too few in a row
 *     (escapes_pass_over), a run that is neither hex nor a base64 candidate
 *     (alnum_run_is_noop). A base64 candidate is judged from the bit planes
 *     of its characters (probe_bad: a lower bound on the bad bytes its
 *     probe would decode to, which rejects nearly every identifier and word
 *     without decoding it);
 *   - only what is left stops the search, and scan_text decodes it: runs
 *     that pass the length and count thresholds, base64 and hex checked on a
 *     decoded prefix of at most 48 bytes first, so long paths, hashes and
 *     keys are rejected cheaply.
 * The search has one implementation per instruction set (struct
 * scan_steps), all with the same stops: AVX-512 when the normalizer uses
 * its AVX-512 paths (masks from two nibble-table lookups per chunk, each
 * chunk's with the next one's so that runs and their ends are read from
 * masks, lead bytes sifted in bulk, the four base64 probes of a run judged
 * at once, one per 64-bit lane), SSE2 otherwise, and a byte loop where
 * there is no SSE2. The search asks for the text PREFETCH bytes ahead:
 * it reads faster than the hardware prefetcher brings text in.
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
#define PLANE_CHARS 96 /* characters of a run in its bit planes (PROBE_CHARS + 3 needed) */
#define ESC_GAP 16u    /* bytes allowed between two escapes of a run */
#define ESC_WIDEN 64u  /* how far a run of escapes is widened to its word */
#define PREFETCH 4096u /* bytes ahead of the scan asked for: it outruns the hardware prefetcher */

/* Bit planes of the values of the first PLANE_CHARS characters of a
 * base64 run (fewer when the run is shorter, the rest zeros): bit p of
 * plane[k] is bit k of character p's value, p < 64 in lo and the rest in
 * hi. */
struct sextets {
    uint64_t lo[6];
    uint32_t hi[6];
};

/* The steps of the scan that look at many bytes, for one instruction set
 * (scalar, SSE2, AVX-512); every set gives the same results. */
struct scan_steps {
    /* The first index from i (< len) where the scan may have something to
     * do: an escape's lead byte, or the start of a run of base64-alphabet
     * bytes at least B64_MIN long (a run holding s[i] counts from s[i]),
     * passing over those that certainly decode to nothing
     * (escapes_pass_over, alnum_run_is_noop); len when there is none. */
    size_t (*next_stop)(const uint8_t *s, size_t i, size_t len);
    /* The end of the base64-alphabet run that starts at s[i] (i < len),
     * and in *all the AND of its characters' classes. */
    size_t (*alnum_run)(const uint8_t *s, size_t i, size_t len, unsigned *all);
    /* The bit planes of the run s[0..n) (n >= B64_MIN). */
    void (*planes)(const uint8_t *s, size_t n, struct sextets *sx);
};

struct dctx {
    vs_normalizer *n;
    const struct scan_steps *steps;
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

/* Byte vectors for the bit planes, with GCC vector extensions (SSE2 on
 * x86-64, scalar code where there is no SIMD); the one operation they
 * lack, the sign bits as a mask, is SSE2's movemask or a loop. */
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

/* The bit planes of the run s[0..n), 16 characters at a time (the scalar
 * and SSE2 steps). */
static void sextet_planes(const uint8_t *s, size_t n, struct sextets *sx)
{
    size_t chars = n < PLANE_CHARS ? n : PLANE_CHARS;

    memset(sx, 0, sizeof *sx);
    for (unsigned blk = 0; 16 * blk < chars; blk++) {
        uint8_t part[16] = {0};
        const uint8_t *p = s + 16 * blk;
        v16 v;
        u8x16 u, val;
        if (chars - 16 * blk < 16) {
            memcpy(part, p, chars - 16 * blk);
            p = part;
        }
        memcpy(&v, p, 16);
        memcpy(&u, p, 16); /* unsigned: wrapping arithmetic */
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

/* The bytes (bit t: byte t) of the probe decoded from the first n
 * (13..64) characters from alignment a (< 4) that mostly_printable finds
 * bad for certain - judged without decoding, so a lower bound. Decoded
 * byte t's bits 7 and 6 are two bits of one character (bits 5-4, 3-2, 1-0
 * of characters 0, 1, 2 of each group of 4), and so are its bits 5 and 4
 * for t % 3 < 2. Bad for certain are: a byte 0x00-0x07, 0x10-0x1F or (slot
 * 0 only) 0x08-0x0F but tab, LF or CR, seen in the top bits; in a probe
 * under 24 bytes any byte >= 0x80; otherwise a UTF-8 continuation byte
 * (10xxxxxx) not after a byte >= 0x80 and a lead byte (11xxxxxx) not before
 * a continuation byte, since a well-formed sequence has neither. */
static inline uint64_t probe_bad(const struct sextets *sx, unsigned a, unsigned n)
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
    return bad & bytes;
}

/* The bad bytes mostly_printable allows in the probe of n characters. */
static inline unsigned probe_max_bad(unsigned n)
{
    unsigned bytes = n * 6 / 8;

    return bytes >= 24 ? bytes / 10 : 0;
}

/* Whether the base64 probe of the n (>= B64_MIN) run characters from
 * alignment a may be mostly printable: probe_bad does not rule it out. */
static bool b64_may_decode(const struct sextets *sx, size_t a, size_t n)
{
    unsigned chars = n < PROBE_CHARS ? (unsigned)n : PROBE_CHARS;
    uint64_t bad = probe_bad(sx, (unsigned)a, chars);

    for (unsigned k = probe_max_bad(chars); k > 0 && bad != 0; k--) {
        bad &= bad - 1; /* counts up to the allowance, without a popcount call */
    }
    return bad == 0;
}

/* A maximal run s[i..e) of base64-alphabet characters, all its
 * characters' classes ANDed in all, at least B64_MIN long:
 * tried as hex (after an optional 0x), then as base64 at its 4 alignments,
 * each only when probe_bad leaves its probe a chance: identifiers and
 * words are that long too, and almost all are rejected there. */
static int try_alnum_run(struct dctx *c, const uint8_t *s, size_t i, size_t e, unsigned all,
                         unsigned depth, unsigned tf, size_t top_off)
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
    c->steps->planes(s + i, e - i, &sx);
    for (size_t a = 0; a < 4 && e - i - a >= B64_MIN && !found; a++) {
        if (!b64_may_decode(&sx, a, e - i - a)) {
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

/* The entity names, with their lengths (an entity is "&" name ";"). */
#define HTML_NAME(name, cp) {name, sizeof name - 1, cp}
static const struct {
    const char *name;
    size_t len;
    uint32_t cp;
} html_names[] = {
    HTML_NAME("amp", '&'),      HTML_NAME("lt", '<'),        HTML_NAME("gt", '>'),
    HTML_NAME("quot", '"'),     HTML_NAME("apos", '\''),     HTML_NAME("nbsp", 0xA0),
    HTML_NAME("colon", ':'),    HTML_NAME("semi", ';'),      HTML_NAME("sol", '/'),
    HTML_NAME("bsol", '\\'),    HTML_NAME("lpar", '('),      HTML_NAME("rpar", ')'),
    HTML_NAME("period", '.'),   HTML_NAME("comma", ','),     HTML_NAME("excl", '!'),
    HTML_NAME("quest", '?'),    HTML_NAME("num", '#'),       HTML_NAME("dollar", '$'),
    HTML_NAME("percnt", '%'),   HTML_NAME("ast", '*'),       HTML_NAME("plus", '+'),
    HTML_NAME("equals", '='),   HTML_NAME("commat", '@'),    HTML_NAME("lsqb", '['),
    HTML_NAME("rsqb", ']'),     HTML_NAME("lcub", '{'),      HTML_NAME("rcub", '}'),
    HTML_NAME("verbar", '|'),   HTML_NAME("lowbar", '_'),    HTML_NAME("grave", '`'),
    HTML_NAME("Tab", '\t'),     HTML_NAME("NewLine", '\n'),  HTML_NAME("hyphen", 0x2010),
    HTML_NAME("shy", 0xAD),     HTML_NAME("zwj", 0x200D),    HTML_NAME("zwnj", 0x200C),
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
        /* '&' is mostly C's and shell's "&&" or "&x": no name, no lookup */
        if (!((s[1] | 0x20) >= 'a' && (s[1] | 0x20) <= 'z')) {
            return 0;
        }
        for (size_t k = 0; k < sizeof html_names / sizeof html_names[0]; k++) {
            size_t l = html_names[k].len;
            if (l + 2 <= n && s[1] == html_names[k].name[0] && s[l + 1] == ';' &&
                memcmp(s + 1, html_names[k].name, l) == 0) {
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
 * past the last one; counting stops at max (*end then past the max-th). */
static size_t esc_run(enum esc_kind k, const uint8_t *s, size_t len, size_t i, size_t max,
                      size_t *end)
{
    uint8_t tmp[4];
    size_t count = 0, p = i, tl, el;

    *end = i;
    while (count < max && (el = esc_at(k, s + p, len - p, tmp, &tl)) > 0) {
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
    size_t count = esc_run(k, s, len, i, SIZE_MAX, &end);
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

/* Whether b is an escape's lead byte. */
static inline bool is_lead(uint8_t b)
{
    return b == '%' || b == '&' || b == '\\';
}

/* The kind of escape the lead byte b starts. */
static inline enum esc_kind esc_kind_of(uint8_t b)
{
    return b == '%' ? ESC_PCT : b == '&' ? ESC_HTML : ESC_BSL;
}

/* Whether s[0..n) (s[0] the lead byte of kind k) may start an escape: a
 * quick necessary condition for esc_at (enough bytes, and what follows the
 * lead of any escape of that kind). */
static inline bool may_start_escape(enum esc_kind k, const uint8_t *s, size_t n)
{
    switch (k) {
    case ESC_PCT:
        return n >= 3 && vs__hexval[s[1]] < 16 && vs__hexval[s[2]] < 16;
    case ESC_HTML:
        return n >= 4 && (s[1] == '#' || ((s[1] | 0x20) >= 'a' && (s[1] | 0x20) <= 'z'));
    case ESC_BSL:
        return n >= 4 && (s[1] == 'x' || s[1] == 'u' || s[1] == 'U');
    }
    return false;
}

/* Where the scan goes on after the lead byte s[i] when try_escapes would
 * do nothing there (no escape: "&&", "\\n", "%s"; or too few in a row):
 * where try_escapes would send it; i itself when it would decode. */
static inline size_t escapes_pass_over(const uint8_t *s, size_t i, size_t len)
{
    enum esc_kind k = esc_kind_of(s[i]);
    size_t end;

    if (!may_start_escape(k, s + i, len - i)) {
        return i + 1;
    }
    if (esc_run(k, s, len, i, esc_info[k].min, &end) == esc_info[k].min) {
        return i; /* enough escapes: no need to find the run's end */
    }
    return end > i ? end : i + 1;
}

/* What try_alnum_run does with a run before any base64 probe. */
enum run_fate {
    RUN_IGNORED, /* nothing: all decimal digits */
    RUN_TRIED,   /* tried as hex, or starts "0x" (left to try_alnum_run) */
    RUN_PROBED,  /* its base64 probes decide */
};

/* The fate of the base64-alphabet run s[q..q + n) (n >= B64_MIN, classes
 * all). */
static inline enum run_fate run_fate(const uint8_t *s, size_t q, size_t n, unsigned all)
{
    if (s[q] == '0' && (s[q + 1] == 'x' || s[q + 1] == 'X')) {
        return RUN_TRIED;
    }
    if (all & D_DIGIT) {
        return RUN_IGNORED;
    }
    return (all & D_HEX) && n % 2 == 0 ? RUN_TRIED : RUN_PROBED;
}

/* Whether the base64-alphabet run s[q..e) (e - q >= B64_MIN, classes all)
 * certainly decodes to nothing, so that try_alnum_run would do nothing and
 * the scan go on at e: it is ignored, or probed and b64_may_decode gives no
 * alignment a chance (the scalar and SSE2 steps). */
static inline bool alnum_run_is_noop(const uint8_t *s, size_t q, size_t e, unsigned all)
{
    enum run_fate fate = run_fate(s, q, e - q, all);
    struct sextets sx;

    if (fate != RUN_PROBED) {
        return fate == RUN_IGNORED;
    }
    sextet_planes(s + q, e - q, &sx);
    for (size_t a = 0; a < 4 && e - q - a >= B64_MIN; a++) {
        if (b64_may_decode(&sx, a, e - q - a)) {
            return false;
        }
    }
    return true;
}

/* The end of the base64-alphabet run from s[i], and the AND of its
 * classes, through the class table (the scalar and SSE2 steps). */
static size_t alnum_run_scalar(const uint8_t *s, size_t i, size_t len, unsigned *all)
{
    size_t e = i;

    *all = D_B64 | D_HEX | D_DIGIT;
    while (e < len && (dcls[s[e]] & D_B64)) {
        *all &= dcls[s[e++]];
    }
    return e;
}

#if !VS_NORM_SSE2
/* The next stop, byte by byte (the scalar steps). */
static size_t next_stop_scalar(const uint8_t *s, size_t i, size_t len)
{
    while (i < len) {
        unsigned all;
        size_t e;
        if (is_lead(s[i])) {
            size_t next = escapes_pass_over(s, i, len);
            if (next == i) {
                return i;
            }
            i = next;
            continue;
        }
        e = alnum_run_scalar(s, i, len, &all);
        if (e - i >= B64_MIN && !alnum_run_is_noop(s, i, e, all)) {
            return i;
        }
        i = e > i ? e : i + 1;
    }
    return len;
}

static const struct scan_steps scalar_steps = {next_stop_scalar, alnum_run_scalar, sextet_planes};
#endif

#if VS_NORM_SSE2
/* Where a search for the next stop goes on after finding s[q] (a lead
 * byte, or the start of a long run): past it when it certainly decodes to
 * nothing, else q itself (the stop). */
static inline size_t pass_over(const uint8_t *s, size_t q, size_t len)
{
    unsigned all;
    size_t e;

    if (is_lead(s[q])) {
        return escapes_pass_over(s, q, len);
    }
    e = alnum_run_scalar(s, q, len, &all);
    return alnum_run_is_noop(s, q, e, all) ? e : q;
}

/* One 64-byte chunk at p of a search for the next stop, as masks (bit k:
 * byte p + k; bits past the text clear): b64 the base64-alphabet bytes,
 * lead the escapes' lead bytes, *run the base64-alphabet bytes just before
 * p since the search began. Whether the chunk holds a lead byte or the
 * start of a long run, *at being the first (before p for a run begun in an
 * earlier chunk); if not, *run is updated for the next chunk. */
static inline __attribute__((always_inline)) bool chunk_stop(uint64_t b64, uint64_t lead,
                                                             size_t p, size_t *run, size_t *at)
{
    unsigned prefix = ~b64 == 0 ? 64 : (unsigned)__builtin_ctzll(~b64);
    uint64_t long_run = b64; /* becomes: bit k set when bytes k .. k + 15 all are */

    _Static_assert(B64_MIN == 16, "four shift-ANDs find a run of 16");
    if (*run > 0 && *run + prefix >= B64_MIN) {
        *at = p - *run;
        return true;
    }
    long_run &= long_run >> 1;
    long_run &= long_run >> 2;
    long_run &= long_run >> 4;
    long_run &= long_run >> 8;
    if ((long_run | lead) != 0) {
        *at = p + (size_t)__builtin_ctzll(long_run | lead);
        return true;
    }
    *run = (size_t)__builtin_clzll(~b64); /* not all set: that is a long run */
    return false;
}

/* The masks of the 64-byte chunk at p (avail bytes readable, the rest
 * taken as zeros), 16 bytes at a time. */
static inline void chunk_masks_sse2(const uint8_t *p, size_t avail, uint64_t *b64, uint64_t *lead)
{
    uint8_t tail[64];

    if (avail < sizeof tail) {
        memset(tail, 0, sizeof tail);
        memcpy(tail, p, avail);
        p = tail;
    }
    *b64 = 0;
    *lead = 0;
    for (unsigned k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        __m128i alpha = v_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
        /* + - / and the digits: '+' to '9' but ',' and '.' */
        __m128i digit_sym = _mm_andnot_si128(v_eq(_mm_or_si128(v, _mm_set1_epi8(2)), '.'),
                                             v_range(v, '+', '9'));
        __m128i alphabet = _mm_or_si128(_mm_or_si128(alpha, digit_sym), v_eq(v, '_'));
        __m128i leads = _mm_or_si128(_mm_or_si128(v_eq(v, '%'), v_eq(v, '&')), v_eq(v, '\\'));
        *b64 |= (uint64_t)v_bits(alphabet) << (16 * k);
        *lead |= (uint64_t)v_bits(leads) << (16 * k);
    }
}

/* The next stop, 64 bytes at a time (the SSE2 steps). */
static size_t next_stop_sse2(const uint8_t *s, size_t i, size_t len)
{
    size_t p = i, run = 0, at;

    while (p < len) {
        uint64_t b64, lead;
        if (len - p > PREFETCH) {
            __builtin_prefetch(s + p + PREFETCH);
        }
        chunk_masks_sse2(s + p, len - p, &b64, &lead);
        if (!chunk_stop(b64, lead, p, &run, &at)) {
            p += 64;
            continue;
        }
        p = pass_over(s, at, len);
        if (p == at) {
            return at;
        }
        run = 0;
    }
    return len;
}

static const struct scan_steps sse2_steps = {next_stop_sse2, alnum_run_scalar, sextet_planes};
#endif

#if VS_NORM_WIDE
/* The 64 bytes at p, or the avail (< 64) readable ones and zeros. */
WIDE static inline __m512i load_wide(const uint8_t *p, size_t avail)
{
    return avail >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(below((unsigned)avail), p);
}

/* The masks of the 64 bytes v: a byte's classes are the bits shared by
 * the table entries of its low and its high nibble, bits 0-4 the base64
 * alphabet (A-O a-o, P-Z p-z, '_', 0-9, + - /) and bits 5-6 the lead bytes
 * (% &, \); bytes >= 0x80 have none. */
WIDE static inline void chunk_masks_wide(__m512i v, uint64_t *b64, uint64_t *lead)
{
    const __m512i lo_nibble = _mm512_broadcast_i32x4(_mm_setr_epi8(
        0x0A, 0x0B, 0x0B, 0x0B, 0x0B, 0x2B, 0x2B, 0x0B, 0x0B, 0x0B, 0x03, 0x11, 0x41, 0x11, 0x01,
        0x15));
    const __m512i hi_nibble = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 0, 0x30, 0x08, 0x01, 0x46, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0));
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
    __m512i cls = _mm512_and_si512(_mm512_shuffle_epi8(lo_nibble, v),
                                   _mm512_shuffle_epi8(hi_nibble, hi));

    *b64 = _mm512_test_epi8_mask(cls, _mm512_set1_epi8(0x1F));
    *lead = _mm512_test_epi8_mask(cls, _mm512_set1_epi8(0x60));
}

/* Mask of the bytes of v in lo..hi (unsigned). */
WIDE static inline uint64_t range_wide(__m512i v, uint8_t lo, uint8_t hi)
{
    return _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8((char)lo)),
                                  _mm512_set1_epi8((char)(hi - lo)));
}

/* The end of the base64-alphabet run from s[i], and the AND of its
 * classes, 64 bytes at a time. */
WIDE static size_t alnum_run_wide(const uint8_t *s, size_t i, size_t len, unsigned *all)
{
    uint64_t not_hex = 0, not_digit = 0; /* seen in the run */
    size_t p = i;

    for (;;) {
        __m512i v = load_wide(s + p, len - p);
        uint64_t b64, lead, digit = range_wide(v, '0', '9'), in_run;
        uint64_t hex = digit | range_wide(_mm512_or_si512(v, _mm512_set1_epi8(0x20)), 'a', 'f');
        chunk_masks_wide(v, &b64, &lead);
        in_run = ~b64 == 0 ? ~(uint64_t)0 : below((unsigned)__builtin_ctzll(~b64));
        not_hex |= in_run & ~hex;
        not_digit |= in_run & ~digit;
        if (~b64 != 0) { /* bytes past the text are zeros: the run ends by len */
            p += (size_t)__builtin_ctzll(~b64);
            break;
        }
        p += 64;
        if (p == len) {
            break;
        }
    }
    *all = D_B64 | (not_hex == 0 ? D_HEX : 0) | (not_digit == 0 ? D_DIGIT : 0);
    return p;
}

/* The bit planes of the 64 characters v, base64-alphabet characters or
 * zeros (zeros count as value 0): a character's value is itself plus an
 * offset looked up by its high nibble, corrected for '+', '-' and '_'. */
WIDE static inline void planes_wide(__m512i v, uint64_t plane[6])
{
    const __m512i offset = _mm512_broadcast_i32x4(_mm_setr_epi8(
        0, 0, 63 - '/', 52 - '0', -'A', -'A', 26 - 'a', 26 - 'a', 0, 0, 0, 0, 0, 0, 0, 0));
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
    __m512i val = _mm512_add_epi8(v, _mm512_shuffle_epi8(offset, hi));

    /* '/' got 63 from its nibble's offset; '+' and '-' share it, '_' shares 'P'-'Z's */
    val = _mm512_mask_add_epi8(val, _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('+')), val,
                               _mm512_set1_epi8(62 - ('+' + 16)));
    val = _mm512_mask_add_epi8(val, _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('-')), val,
                               _mm512_set1_epi8(62 - ('-' + 16)));
    val = _mm512_mask_add_epi8(val, _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('_')), val,
                               _mm512_set1_epi8(63 - ('_' - 'A')));
    plane[0] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(1)); /* unrolled: -O2 keeps loops */
    plane[1] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(2));
    plane[2] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(4));
    plane[3] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(8));
    plane[4] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(16));
    plane[5] = _mm512_test_epi8_mask(val, _mm512_set1_epi8(32));
}

/* The bit planes of the run s[0..n), 64 characters at a time. */
WIDE static void sextet_planes_wide(const uint8_t *s, size_t n, struct sextets *sx)
{
    uint64_t plane[6];

    memset(sx, 0, sizeof *sx);
    planes_wide(load_wide(s, n), sx->lo);
    if (n > 64) {
        planes_wide(load_wide(s + 64, n - 64), plane);
        for (unsigned k = 0; k < 6; k++) {
            sx->hi[k] = (uint32_t)plane[k];
        }
    }
}

/* The bit plane p shifted right by 0, 1, 2 and 3 bits, one per lane. */
WIDE static inline __m256i plane_lanes(uint64_t p)
{
    return _mm256_srlv_epi64(_mm256_set1_epi64x((long long)p), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* Bit by bit, mask ? if_set : if_clear. */
WIDE static inline __m256i pick(__m256i mask, __m256i if_set, __m256i if_clear)
{
    return _mm256_ternarylogic_epi64(if_clear, if_set, mask, 0xD8);
}

/* ~(a | b | c). */
WIDE static inline __m256i nor3(__m256i a, __m256i b, __m256i c)
{
    return _mm256_ternarylogic_epi64(a, b, c, 0x01);
}

/* The number of set bits of each 64-bit lane of v, by nibble table. */
WIDE static inline __m256i popcount_lanes(__m256i v)
{
    const __m256i nibble_bits = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m256i low_counts = _mm256_shuffle_epi8(nibble_bits, _mm256_and_si256(v, low));
    __m256i high_counts =
        _mm256_shuffle_epi8(nibble_bits, _mm256_and_si256(_mm256_srli_epi64(v, 4), low));

    return _mm256_sad_epu8(_mm256_add_epi8(low_counts, high_counts), _mm256_setzero_si256());
}

/* Whether b64_may_decode gives the run of the n (16..64) characters with
 * bit planes plane a chance at any alignment: probe_bad and probe_max_bad
 * for the four alignments at once, one per 64-bit lane (lane a: the
 * characters from a), with AVX-512's three-input logic. When every probe
 * is under 24 bytes (no bad byte allowed) a test for zero does. */
WIDE static bool b64_chance_wide(const uint64_t plane[6], unsigned n)
{
    const __m256i one = _mm256_set1_epi64x(1), slot0 = _mm256_set1_epi64x(0x1111111111111111);
    const __m256i slot1 = _mm256_slli_epi64(slot0, 1), slot2 = _mm256_slli_epi64(slot0, 2);
    __m256i b0 = plane_lanes(plane[0]), b1 = plane_lanes(plane[1]), b2 = plane_lanes(plane[2]);
    __m256i b3 = plane_lanes(plane[3]), b4 = plane_lanes(plane[4]), b5 = plane_lanes(plane[5]);
    __m256i chars = _mm256_sub_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    __mmask8 valid = _mm256_cmpge_epi64_mask(chars, _mm256_set1_epi64x(B64_MIN));
    __mmask8 long_probe = _mm256_cmpge_epi64_mask(chars, _mm256_set1_epi64x(32)); /* 24 bytes */
    __m256i below_last = _mm256_sub_epi64(_mm256_sllv_epi64(one, _mm256_sub_epi64(chars, one)), one);
    __m256i bytes = _mm256_andnot_si256(_mm256_slli_epi64(slot0, 3), below_last);
    __m256i top = _mm256_and_si256(pick(slot0, b5, pick(slot1, b3, b1)), bytes);
    __m256i second = pick(slot0, b4, pick(slot1, b2, b0));
    __m256i bad = _mm256_or_si256(
        _mm256_and_si256(_mm256_andnot_si256(_mm256_andnot_si256(b2, b1), nor3(b5, b4, b3)), slot0),
        _mm256_and_si256(nor3(b3, b2, b1), _mm256_and_si256(b0, slot1)));
    __m256i cont, lead, after_high, before_cont, max_bad;

    if (n < 32) {
        return _mm256_mask_testn_epi64_mask(valid, _mm256_or_si256(bad, top), bytes) != 0;
    }
    cont = _mm256_andnot_si256(second, top);
    lead = _mm256_and_si256(second, top);
    after_high = pick(slot0, _mm256_slli_epi64(top, 2), _mm256_slli_epi64(top, 1));
    before_cont = pick(slot2, _mm256_srli_epi64(cont, 2), _mm256_srli_epi64(cont, 1));
    bad = _mm256_mask_or_epi64(_mm256_or_si256(bad, top), long_probe, bad,
                               _mm256_or_si256(_mm256_andnot_si256(after_high, cont),
                                               _mm256_andnot_si256(before_cont, lead)));
    /* probe_max_bad: 2 from 32 characters (24 bytes), 3 from 40, 4 from 54 */
    max_bad = _mm256_maskz_mov_epi64(long_probe, _mm256_set1_epi64x(2));
    max_bad = _mm256_mask_add_epi64(max_bad, _mm256_cmpge_epi64_mask(chars, _mm256_set1_epi64x(40)),
                                    max_bad, one);
    max_bad = _mm256_mask_add_epi64(max_bad, _mm256_cmpge_epi64_mask(chars, _mm256_set1_epi64x(54)),
                                    max_bad, one);
    return _mm256_mask_cmple_epi64_mask(valid, popcount_lanes(_mm256_and_si256(bad, bytes)),
                                        max_bad) != 0;
}

/* alnum_run_is_noop for a run s[q..e) of at most 64 bytes, from one load. */
WIDE static bool short_run_is_noop_wide(const uint8_t *s, size_t q, size_t e)
{
    size_t n = e - q;
    __m512i v = load_wide(s + q, n);
    uint64_t in_run = n < 64 ? below((unsigned)n) : ~(uint64_t)0;
    uint64_t digit = range_wide(v, '0', '9');
    uint64_t hex = digit | range_wide(_mm512_or_si512(v, _mm512_set1_epi8(0x20)), 'a', 'f');
    unsigned all = D_B64 | ((hex & in_run) == in_run ? D_HEX : 0) |
                   ((digit & in_run) == in_run ? D_DIGIT : 0);
    enum run_fate fate = run_fate(s, q, n, all);
    uint64_t plane[6];

    if (fate != RUN_PROBED) {
        return fate == RUN_IGNORED;
    }
    planes_wide(v, plane);
    return !b64_chance_wide(plane, (unsigned)n);
}

/* A 64-byte chunk's masks (bits past the text clear). */
struct chunk {
    uint64_t b64, lead;
};

/* The masks of the chunk at s[p] (none past len). */
WIDE static inline struct chunk chunk_at_wide(const uint8_t *s, size_t p, size_t len)
{
    struct chunk ch = {0, 0};

    if (p < len) {
        chunk_masks_wide(load_wide(s + p, len - p), &ch.b64, &ch.lead);
    }
    return ch;
}

/* The lead bytes of the chunk at s[p] that may start an escape: those
 * may_start_escape lets through, judged on the byte or two after each in
 * bulk, without its length test (a lead at the chunk's end passes). */
WIDE static uint64_t live_leads_wide(const uint8_t *s, size_t p, size_t len)
{
    __m512i v = load_wide(s + p, len - p), after = load_wide(s + p + 1, len - p - 1);
    __m512i folded = _mm512_or_si512(after, _mm512_set1_epi8(0x20));
    uint64_t hex1 = range_wide(after, '0', '9') | range_wide(folded, 'a', 'f');
    uint64_t hex2 = hex1 >> 1 | (uint64_t)1 << 63;
    uint64_t name1 =
        _mm512_cmpeq_epi8_mask(after, _mm512_set1_epi8('#')) | range_wide(folded, 'a', 'z');
    uint64_t code1 = _mm512_cmpeq_epi8_mask(after, _mm512_set1_epi8('x')) |
                     _mm512_cmpeq_epi8_mask(after, _mm512_set1_epi8('u')) |
                     _mm512_cmpeq_epi8_mask(after, _mm512_set1_epi8('U'));

    return (_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('%')) & hex1 & hex2) |
           (_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('&')) & name1) |
           (_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\\')) & code1);
}

/* The bits of a chunk at p for the bytes from `from` on. */
static inline uint64_t bits_from(size_t from, size_t p)
{
    return from <= p ? ~(uint64_t)0 : from - p >= 64 ? 0 : ~below((unsigned)(from - p));
}

/* The next stop, 64 bytes at a time (the AVX-512 steps): each chunk's
 * masks with the next chunk's, so that a run of B64_MIN across their
 * border and the end of a run up to 64 bytes long are read from the masks;
 * lead bytes are sifted in bulk (live_leads_wide), runs one by one. After
 * a lead byte or a run that certainly decodes to nothing the search goes
 * on in the same masks from where scan_text would (from): a run is passed
 * over whole, so the first long-run bit from there is a run's start, or
 * `from` itself inside a run that counts from there. */
WIDE static size_t next_stop_wide(const uint8_t *s, size_t i, size_t len)
{
    struct chunk cur = chunk_at_wide(s, i, len), next;
    size_t from = i;

    for (size_t p = i; p < len; p += 64, cur = next) {
        uint64_t long_run = cur.b64, ahead, stops;
        next = chunk_at_wide(s, p + 64, len);
        if (len - p > PREFETCH) {
            __builtin_prefetch(s + p + PREFETCH);
        }
        ahead = next.b64;
        _Static_assert(B64_MIN == 16, "four shift-ANDs find a run of 16");
        long_run &= long_run >> 1 | ahead << 63; /* bit k: bytes k .. k + 15 all are */
        ahead &= ahead >> 1;
        long_run &= long_run >> 2 | ahead << 62;
        ahead &= ahead >> 2;
        long_run &= long_run >> 4 | ahead << 60;
        ahead &= ahead >> 4;
        long_run &= long_run >> 8 | ahead << 56;
        if (cur.lead != 0) {
            cur.lead = live_leads_wide(s, p, len);
        }
        stops = (long_run | cur.lead) & bits_from(from, p);
        while (stops != 0) {
            size_t at = p + (size_t)__builtin_ctzll(stops);
            if (cur.lead >> (at - p) & 1) {
                from = escapes_pass_over(s, at, len);
                if (from == at) {
                    return at;
                }
            } else {
                uint64_t end_here = ~cur.b64 & ~below((unsigned)(at - p));
                size_t e = end_here != 0 ? p + (size_t)__builtin_ctzll(end_here)
                           : ~next.b64 != 0 ? p + 64 + (size_t)__builtin_ctzll(~next.b64)
                                            : SIZE_MAX;
                if (e - at > 64 || !short_run_is_noop_wide(s, at, e)) {
                    return at; /* longer runs are left to scan_text */
                }
                from = e;
            }
            stops &= bits_from(from, p);
        }
    }
    return len;
}

static const struct scan_steps wide_steps = {next_stop_wide, alnum_run_wide, sextet_planes_wide};
#endif

/* The scan steps n uses. */
static const struct scan_steps *scan_steps_of(const vs_normalizer *n)
{
#if VS_NORM_WIDE
    if (n->wide) {
        return &wide_steps;
    }
#endif
    (void)n;
#if VS_NORM_SSE2
    return &sse2_steps;
#else
    return &scalar_steps;
#endif
}

/* Searches s[0..len) for runs; pieces found are of depth depth, carry tf
 * plus their own bit, and report top_off (or, at depth 1, their own
 * position). */
static int scan_text(struct dctx *c, const uint8_t *s, size_t len, unsigned depth, unsigned tf,
                     size_t top_off)
{
    size_t i = 0;
    int rc = 0;

    while (rc == 0 && !c->stopped && i < len && (i = c->steps->next_stop(s, i, len)) < len) {
        uint8_t b = s[i];
        if (is_lead(b)) {
            rc = try_escapes(c, s, len, i, esc_kind_of(b), depth, tf, top_off, &i);
        } else {
            unsigned all;
            size_t e = c->steps->alnum_run(s, i, len, &all);
            rc = try_alnum_run(c, s, i, e, all, depth, tf, top_off);
            i = e;
        }
    }
    return rc;
}

int vs_norm_decode(vs_normalizer *n, const uint8_t *in, size_t len, unsigned max_depth,
                   size_t max_total, vs_norm_decoded_fn fn, void *arg)
{
    struct dctx c = {n, NULL, max_depth < VS_NORM_MAX_DEPTH ? max_depth : VS_NORM_MAX_DEPTH,
                     max_total, 0, max_total == 0, fn, arg};

    if (n == NULL || fn == NULL || (in == NULL && len > 0)) {
        return -EINVAL;
    }
    if (c.max_depth == 0 || len == 0) {
        return 0;
    }
    c.steps = scan_steps_of(n);
    return scan_text(&c, in, len, 1, 0, SIZE_MAX);
}
