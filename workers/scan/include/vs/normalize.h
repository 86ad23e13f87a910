/*
 * normalize.h - the text normalizer that runs before prompt-injection
 * matching, so that a phrase hidden by Unicode tricks, leetspeak, spaced-out
 * letters or an encoding is still seen by the phrase patterns.
 *
 * Two entry points, both on a normalizer object that owns the buffers (one
 * object per thread; the library keeps no global mutable state):
 *   - vs_normalize folds a text into a canonical lowercase ASCII-leaning
 *     form (never longer than the input), with a byte map back to the
 *     input made when asked for (vs_normalize_map);
 *   - vs_norm_decode finds encoded runs (base64, hex, percent, HTML
 *     entities, backslash escapes) and hands each decoded piece to a
 *     callback, recursively up to a depth and a total-size budget.
 * Both return 0 or -errno and never print.
 */
#ifndef VS_NORMALIZE_H
#define VS_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a transformation did; a finding reports the bits of the text it was
 * found in. Lowercasing, whitespace collapsing, Unicode spaces (U+00A0,
 * U+2000-200A, U+2028, U+3000, ...) becoming a space and invalid UTF-8
 * becoming '?' set no bit. */
enum vs_norm_transform {
    VS_NORM_INVISIBLE = 1u << 0, /* zero-width, bidi controls, Unicode tag chars U+E0000-E007F,
                                    soft hyphen, variation selectors, Hangul fillers removed */
    VS_NORM_HOMOGLYPH = 1u << 1, /* Cyrillic/Greek/Armenian look-alikes, small capitals, letterlike
                                    symbols, enclosed letters, fullwidth forms (U+FF01-FF5E), math
                                    alphanumerics (U+1D400-1D7FF) folded to ASCII */
    VS_NORM_LEET = 1u << 2,      /* 0->o 1->i 3->e 4->a 5->s 7->t @->a $->s inside a word */
    VS_NORM_SPACED = 1u << 3,    /* "i g n o r e" / "i-g-n-o-r-e" / "i.g.n.o.r.e" joined */
    VS_NORM_BASE64 = 1u << 4,    /* decoded runs (vs_norm_decode) */
    VS_NORM_HEX = 1u << 5,
    VS_NORM_PERCENT = 1u << 6,
    VS_NORM_HTML = 1u << 7,      /* &lt; &#105; &#x69; entities */
    VS_NORM_UESCAPE = 1u << 8,   /* \u0069, \u{69}, \U00000069 and \x69 escapes */
    VS_NORM_DIACRITIC = 1u << 9, /* addition: Latin-1 / Latin Extended-A accented letters folded
                                    to their base letter (U+00E9 -> e), combining marks (U+0300-036F,
                                    ...) on ASCII or folded letters removed. Kept apart from
                                    HOMOGLYPH because ordinary European text sets it. */
};

/* Pieces nested deeper than this are not searched again, whatever
 * vs_norm_decode's max_depth says (each level shrinks the text, so real
 * nesting is far shallower). */
#define VS_NORM_MAX_DEPTH 16u

typedef struct vs_normalizer vs_normalizer;

/* Where each byte of a vs_normalize result came from. It is kept as the
 * few places where the offset shifts (a dropped or folded byte), not as an
 * offset per byte, and made only when asked for: a scanner needs it for
 * its findings, which almost no text has, and making it costs a quarter
 * of the normalizer's time. */
typedef struct vs_norm_map vs_norm_map;

/* A normalizer with empty buffers. Returns 0 or -ENOMEM / -EINVAL. */
int vs_normalizer_new(vs_normalizer **out);

/* Whether vs_normalize and vs_norm_decode on n take their AVX-512 paths:
 * on by default where the CPU has AVX-512 BW, VL, VBMI and VBMI2. They give
 * exactly the results of the SSE2 and scalar paths, which on = false
 * selects (the tests compare the two). Returns whether the AVX-512 paths
 * are now in use. */
bool vs_normalizer_use_avx512(vs_normalizer *n, bool on);

/* Frees n and its buffers; NULL is ignored. */
void vs_normalizer_free(vs_normalizer *n);

/* Fold text for phrase matching: invalid UTF-8 bytes pass through as '?',
 * invisible characters are removed, homoglyphs/fullwidth/math letters map to
 * ASCII, everything is lowercased (ASCII and the folded letters), leetspeak
 * digits inside words become letters, spaced-out letters are joined, and a
 * run of whitespace (space, \t, \n, \v, \f, \r and the Unicode spaces,
 * after invisible characters are removed) becomes one '\n' when it holds a
 * '\n' and one space otherwise, so that the result keeps the text's lines
 * and rules anchored at a line start can run on it. The result lives in the
 * normalizer's buffer (valid until the next call on n) and is never longer
 * than the input. *transforms (may be NULL) gets the OR of the
 * transformations that changed something. vs_normalize_map gives the byte
 * map, vs_normalize_flat the same text with spaces for line breaks.
 *
 * Leetspeak: a maximal run of 1-3 of "013457@$" is converted when a letter
 * is directly before or after it and no other digit touches it ("1gn0r3",
 * "pr3v10us" convert; "1.0.3", "8080", "3 items", "x264", "1000a" stay);
 * a hex literal ("0x1f") is kept.
 * Spaced letters: a single letter is one with no letter, digit or non-ASCII
 * byte on either side. Single letters separated by exactly one separator
 * (space, '-', '.' or '_'), the same one throughout, form a run; two runs
 * are parts of one phrase when the gap between them is two or more
 * separator characters ("e  a", "e - a") or one separator different from
 * the run's ("i-g-n-o-r-e a-l-l"); all whitespace counts as the same
 * separator as a space ("i\tg\nn o" is one run). A phrase with at least 4
 * single letters in which at least one separator is removed is joined: runs
 * become words, a phrase gap one '\n' when it holds a '\n' and one space
 * otherwise ("i g n o r e  a l l" -> "ignore all", "i g n o r e\n\na l l"
 * -> "ignore\nall"; "a b" and "-a -b -c -d" stay).
 *
 * Returns 0, -EINVAL (NULL n, out or out_len; NULL in with len > 0) or
 * -ENOMEM. */
int vs_normalize(vs_normalizer *n, const uint8_t *in, size_t len, const uint8_t **out,
                 size_t *out_len, unsigned *transforms);

/* The byte map of n's last vs_normalize (see vs_norm_map_at), made on the
 * first call after it by normalizing its input again - which must still be
 * there, unchanged - into buffers of its own (the result stays valid).
 * The map lives until the next vs_normalize on n. Returns 0, -EINVAL (NULL
 * n or map; the last call failed; an input of 4 GiB or more) or -ENOMEM. */
int vs_normalize_map(vs_normalizer *n, const vs_norm_map **map);

/* The result of n's last vs_normalize with each '\n' a space: the same
 * length and lifetime, made in the same pass. What phrase matching reads,
 * so that a phrase wrapped onto the next line is still one. */
const uint8_t *vs_normalize_flat(const vs_normalizer *n);

/* The offset of the input byte that output byte i (< out_len) came from: a
 * non-ASCII character copied unchanged maps byte for byte, a folded one to
 * its first byte, a whitespace run's byte to the run's first '\n', or to
 * its first byte when it has none. O(log of the shifts). */
uint32_t vs_norm_map_at(const vs_norm_map *map, size_t i);

/* A decoded piece: data[0..len) is valid only during the call. transforms
 * has one bit per encoding layer peeled off; offset is where the outermost
 * run starts in the top-level input. Return 0 to continue, nonzero to stop
 * (vs_norm_decode then returns that value). */
typedef int (*vs_norm_decoded_fn)(const uint8_t *data, size_t len, unsigned transforms,
                                  size_t offset, void *arg);

/* Find encoded runs in `in` and call fn with each decoded piece, in order
 * of position:
 *   - base64 / base64url: a run of >= 16 alphabet characters (+ up to two
 *     '='), tried at the 4 alignments, reported when >= 90% of the decoded
 *     bytes are printable ASCII or valid UTF-8 (a run starting "0x" or made
 *     only of decimal digits is not tried as base64); a piece under 24
 *     bytes must be all printable ASCII;
 *   - hex: a run of >= 16 hex digits (after an optional "0x"), even length,
 *     with at least one digit a-f, decoding to printable text as for base64;
 *   - percent (%XX, >= 3), HTML entities (&name; &#N; &#xN;, >= 2), and
 *     backslash escapes (\xXX \uXXXX \u{X..} \UXXXXXXXX, >= 3): escapes of
 *     one kind are in a run when each follows the previous one within 16
 *     bytes on the same line; the piece is the run widened to the
 *     surrounding word (up to 64 non-space, non-quote bytes each side), with
 *     the escapes of that kind decoded and the rest copied.
 * Every decoded piece is no longer than its run. A piece is searched again
 * while its depth (1 for runs in `in`) is below max_depth (capped at
 * VS_NORM_MAX_DEPTH); transform bits accumulate, so base64 inside hex
 * reports VS_NORM_HEX, then VS_NORM_HEX | VS_NORM_BASE64. max_depth 0
 * decodes nothing. The decoded bytes of all levels (reported or not) total
 * at most max_total: a decode that would pass it is cut short and nothing
 * more is decoded (not an error).
 * Returns 0, fn's nonzero value, -EINVAL (NULL n or fn; NULL in with
 * len > 0) or -ENOMEM. */
int vs_norm_decode(vs_normalizer *n, const uint8_t *in, size_t len, unsigned max_depth,
                   size_t max_total, vs_norm_decoded_fn fn, void *arg);

#endif
