/*
 * detect.c - the detector rules (ruleset.h): encoded blobs found by one
 * linear pass instead of a pattern.
 *
 * Why not a regular expression: "a long run of base64 characters" is an
 * open character class that matches almost everywhere, so Hyperscan
 * reports an end after every character of every run (tens of thousands
 * per MiB of ordinary text) and each is confirmed; and what makes a run
 * suspicious is not its shape but its randomness. Here a run is the
 * maximal stretch of the base64 alphabet (standard and URL-safe, with its
 * '=' padding); a run of hex digits only is a hex run. A run at least the
 * rule's min_len long is reported when the Shannon entropy of its
 * characters, over a window of the rule's size sliding along it, averages
 * min_entropy or more: thresholds per alphabet, since 64 random hex
 * digits carry at most 4 bits each and base64 characters 6.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "ruleset.h"

/* C_SPAN: the characters of a hostname made of such runs (the alphabet
 * and the dot); the pass looks for long spans and judges the runs in them. */
enum { C_B64 = 1, C_HEX = 2, C_PAD = 4, C_SPAN = 8 };

static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        bool b64 = alnum || c == '+' || c == '/' || c == '-' || c == '_';
        cls[c] = (unsigned char)((b64 ? C_B64 : 0) | (hex ? C_HEX : 0) | (c == '=' ? C_PAD : 0) |
                                 (b64 || c == '.' ? C_SPAN : 0));
    }
}

/* x log2 x, 0 for 0 and 1 */
static double xlogx(unsigned x)
{
    return x > 1 ? x * log2((double)x) : 0;
}

/* The mean Shannon entropy (bits per character) of the windows of w
 * characters at every step through s[0..n), n >= w. With c_b the count of
 * byte b in a window, its entropy is log2 w - (sum of c_b log2 c_b) / w,
 * and sliding changes two counts by one. */
static double window_entropy(const uint8_t *s, size_t n, size_t w)
{
    unsigned count[256] = {0};
    for (size_t i = 0; i < w; i++)
        count[s[i]]++;
    double sum = 0;
    for (size_t b = 0; b < 256; b++)
        sum += xlogx(count[b]);
    double total = 0, lw = log2((double)w);
    size_t windows = 0;
    for (size_t i = 0;; i++) {
        total += lw - sum / (double)w;
        windows++;
        if (i + w >= n)
            break;
        uint8_t out = s[i], in = s[i + w];
        sum += xlogx(count[out] - 1) - xlogx(count[out]);
        count[out]--;
        sum += xlogx(count[in] + 1) - xlogx(count[in]);
        count[in]++;
    }
    return total / (double)windows;
}

/* The detector rules that take the run [start, end) (pads up to stop). */
static int judge_run(const vs_ruleset *rs, const uint8_t *data, size_t len, size_t start,
                     size_t end, size_t stop, detect_fn fn, void *arg)
{
    unsigned all = C_HEX;
    for (size_t k = start; k < end; k++)
        all &= cls[data[k]];
    enum detector kind = all & C_HEX ? DETECT_HEX_RUN : DETECT_BASE64_RUN;
    for (size_t d = 0; d < rs->ndetectors; d++) {
        size_t r = rs->detectors[d];
        const struct rule *rule = &rs->rules[r];
        int rc = 0;
        if (rule->detector == DETECT_DOTTED_RUN) {
            if (end - start >= rule->min_len && end < len && data[end] == '.')
                rc = fn(start, end, r, arg);
        } else if (rule->detector == kind && end - start >= rule->min_len &&
                   end - start >= rule->window &&
                   window_entropy(data + start, end - start, rule->window) >= rule->min_entropy) {
            rc = fn(start, stop, r, arg);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The runs of the alphabet in the span [start, end), with their pads. */
static int judge_span(const vs_ruleset *rs, const uint8_t *data, size_t len, size_t start,
                      size_t end, detect_fn fn, void *arg)
{
    size_t i = start;
    while (i < end) {
        if (!(cls[data[i]] & C_B64)) {
            i++;
            continue;
        }
        size_t run = i;
        while (i < end && (cls[data[i]] & C_B64))
            i++;
        size_t stop = i;
        while (stop < len && (cls[data[stop]] & C_PAD) && stop - i < 2)
            stop++;
        int rc = judge_run(rs, data, len, run, i, stop, fn, arg);
        if (rc)
            return rc;
    }
    return 0;
}

/* The shortest span a detector rule can take: its run length, or for a
 * dotted run the rule's min_span (at least the run and its dot). */
size_t vs__detect_min_span(const struct rule *r)
{
    if (r->detector == DETECT_DOTTED_RUN)
        return r->min_span > r->min_len + 1 ? r->min_span : r->min_len + 1;
    return r->min_len > r->window ? r->min_len : r->window;
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Bytes of v in [lo, hi], as unsigned values. */
static inline __m128i in_range(__m128i v, char lo, char hi)
{
    __m128i off = _mm_sub_epi8(v, _mm_set1_epi8(lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(off, _mm_set1_epi8((char)(hi - lo))), off);
}

/* Bit i set when p[i] is a span character (the C_SPAN class), 64 bytes. */
static inline uint64_t span_bits(const uint8_t *p)
{
    uint64_t bits = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        __m128i m = _mm_or_si128(in_range(v, '0', '9'),
                                 in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z'));
        m = _mm_or_si128(m, in_range(v, '-', '/'));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('+')));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));
        bits |= (uint64_t)(unsigned)_mm_movemask_epi8(m) << (16 * k);
    }
    return bits;
}
#else
static inline uint64_t span_bits(const uint8_t *p)
{
    uint64_t bits = 0;
    for (int k = 0; k < 64; k++)
        bits |= (uint64_t)((cls[p[k]] & C_SPAN) != 0) << k;
    return bits;
}
#endif

/* The starts of the runs of L or more ones inside m (L <= 64). */
static uint64_t long_runs(uint64_t m, size_t L)
{
    for (size_t have = 1; have < L && m != 0;) {
        size_t shift = have < L - have ? have : L - have;
        m &= m >> shift;
        have += shift;
    }
    return m;
}

/* Every span of L or more bytes, 64 bytes at a time: a span still open
 * at a block's end is carried as run into the next; one closed by the
 * block's first other byte is judged then; a span between two other
 * bytes of one block (only possible when L < 63) is found by long_runs.
 * Ordinary text has no such spans, so the cost is classifying bytes. */
static int spans(const vs_ruleset *rs, const uint8_t *data, size_t len, size_t L, detect_fn fn,
                 void *arg)
{
    size_t pos = 0, run = 0;
    for (; len - pos >= 64; pos += 64) {
        uint64_t m = span_bits(data + pos);
        if (m == UINT64_MAX) {
            run += 64;
            continue;
        }
        size_t lead = (size_t)__builtin_ctzll(~m);
        if (run + lead >= L) {
            int rc = judge_span(rs, data, len, pos - run, pos + lead, fn, arg);
            if (rc)
                return rc;
        }
        size_t tail = (size_t)__builtin_clzll(~m);
        /* the ones strictly between the first and the last other byte */
        uint64_t inner = m & ~((UINT64_C(1) << lead) - 1) & (UINT64_MAX >> tail);
        if (L <= 64 && (size_t)__builtin_popcountll(inner) >= L) {
            for (uint64_t starts = long_runs(inner, L); starts != 0;) {
                size_t from = (size_t)__builtin_ctzll(starts);
                size_t to = from + (size_t)__builtin_ctzll(~(inner >> from));
                int rc = judge_span(rs, data, len, pos + from, pos + to, fn, arg);
                if (rc)
                    return rc;
                starts &= to < 64 ? ~((UINT64_C(1) << to) - 1) : 0;
            }
        }
        run = tail;
    }
    for (; pos < len; pos++) {
        if (cls[data[pos]] & C_SPAN) {
            run++;
            continue;
        }
        if (run >= L) {
            int rc = judge_span(rs, data, len, pos - run, pos, fn, arg);
            if (rc)
                return rc;
        }
        run = 0;
    }
    return run >= L ? judge_span(rs, data, len, len - run, len, fn, arg) : 0;
}

int vs__detect_runs(const vs_ruleset *rs, const uint8_t *data, size_t len, detect_fn fn, void *arg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_classes);
    return rs->detect_min_len == 0 ? 0 : spans(rs, data, len, rs->detect_min_len, fn, arg);
}
