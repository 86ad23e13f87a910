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
    for (size_t r = 0; r < rs->n; r++) {
        const struct rule *rule = &rs->rules[r];
        int rc = 0;
        if (rule->detector == DETECT_DNS_LABELS) {
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

/* The shortest span a detector rule can take: its run length, or for DNS
 * labels three labels with their dots. */
size_t vs__detect_min_span(const struct rule *r)
{
    if (r->detector == DETECT_DNS_LABELS)
        return 3 * (r->min_len + 1);
    return r->min_len > r->window ? r->min_len : r->window;
}

/* Spans shorter than the shortest a rule takes (L) are never looked at
 * whole: a span of L or more that starts in [i, i + L) covers i + L - 1,
 * so when that byte is outside the span's characters the search moves on
 * by L bytes. Otherwise the span through it is found by scanning back (to
 * i at most: i is always at a span's border) and forward. On text made of
 * words, code and numbers this reads a fraction of the bytes. */
int vs__detect_runs(const vs_ruleset *rs, const uint8_t *data, size_t len, detect_fn fn, void *arg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_classes);
    const size_t L = rs->detect_min_len;
    size_t i = 0;
    while (L > 0 && len - i >= L) {
        size_t probe = i + L - 1;
        if (!(cls[data[probe]] & C_SPAN)) {
            i = probe + 1;
            continue;
        }
        size_t start = probe, end = probe + 1;
        while (start > i && (cls[data[start - 1]] & C_SPAN))
            start--;
        while (end < len && (cls[data[end]] & C_SPAN))
            end++;
        if (end - start >= L) {
            int rc = judge_span(rs, data, len, start, end, fn, arg);
            if (rc)
                return rc;
        }
        i = end;
    }
    return 0;
}
