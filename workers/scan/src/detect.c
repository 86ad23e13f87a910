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

enum { C_B64 = 1, C_HEX = 2, C_PAD = 4 };

static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        cls[c] = (unsigned char)((alnum || c == '+' || c == '/' || c == '-' || c == '_' ? C_B64 : 0) |
                                 (hex ? C_HEX : 0) | (c == '=' ? C_PAD : 0));
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

int vs__detect_runs(const vs_ruleset *rs, const uint8_t *data, size_t len, detect_fn fn, void *arg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_classes);
    size_t i = 0;
    while (i < len) {
        if (!(cls[data[i]] & C_B64)) {
            i++;
            continue;
        }
        size_t start = i;
        unsigned all = C_HEX;
        while (i < len && (cls[data[i]] & C_B64))
            all &= cls[data[i++]];
        size_t end = i;
        while (i < len && (cls[data[i]] & C_PAD) && i - end < 2)
            i++;
        enum detector kind = all & C_HEX ? DETECT_HEX_RUN : DETECT_BASE64_RUN;
        for (size_t r = 0; r < rs->n; r++) {
            const struct rule *rule = &rs->rules[r];
            if (rule->detector != kind || end - start < rule->min_len || end - start < rule->window)
                continue;
            if (window_entropy(data + start, end - start, rule->window) < rule->min_entropy)
                continue;
            int rc = fn(start, i, r, arg);
            if (rc)
                return rc;
        }
    }
    return 0;
}
