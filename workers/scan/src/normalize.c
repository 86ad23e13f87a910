/*
 * normalize.c - the first half of the text normalizer that runs before
 * prompt-injection matching (vs/normalize.h): vs_normalize, the folding of
 * Unicode tricks, leetspeak, spaced-out letters and spacing. decode.c has
 * the other half, vs_norm_decode.
 *
 * Why it is built this way: the injection scanner must keep >= 1 GB/s per
 * core with normalization and decoding included, so vs_normalize makes two
 * linear passes over the text:
 *   - folding (fold_more) turns the input into lowercase ASCII-leaning
 *     bytes: ASCII 64 bytes at a time (AVX-512), 16 (SSE2) or 8; only
 *     bytes >= 0x80 are decoded as UTF-8 and looked up, by binary search,
 *     in a sorted table of code point ranges;
 *   - refining rewrites that buffer in place (leetspeak, spaced-out
 *     letters, runs of spacing) and writes the flat copy Hyperscan reads.
 *     With AVX-512 a 64-byte block is decided from bit masks (refine_wide:
 *     leetspeak runs, hex literals, chains of single letters, kept bytes
 *     compressed to the output in one store); a block the masks cannot
 *     decide, and every block without AVX-512, goes through the 16-byte
 *     path, which decides with a class table and short look-behind and
 *     look-ahead, the only long look-ahead (spaced letters) taken only at a
 *     single letter followed by a separator, never rescanning bytes.
 * Folding runs one 16 KiB chunk ahead of refining instead of over the
 * whole text first, and refining asks for the next chunk's input while it
 * works: the first read of a text is from memory, and this way it overlaps
 * work on text already in the cache. The byte map is not made by these
 * passes: vs_normalize_map runs them again with it, for the few texts with
 * a finding.
 * All tables are const; the normalizer object holds the only buffers.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "normalizer.h"

/* ---- tables ------------------------------------------------------------------ */

/* ASCII fold: A-Z lowercased, \t \v \f \r become a space, the rest (\n too) unchanged. */
static const uint8_t fold_ascii[128] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x20, 0x0a, 0x20, 0x20, 0x20, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    0x40, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f,
};
/* Classes of folded bytes: N_LETTER 1, N_LEET 2, N_DIGIT 4, N_WORD 8, N_SEP 16, N_SPACE 32. */
static const uint8_t ncls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0, 48,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    48,  0,  0,  0, 10,  0,  0,  0,  0,  0,  0,  0,  0, 16, 16,  0,
    14, 14, 12, 14, 14, 14, 12, 14, 12, 12,  0,  0,  0,  0,  0,  0,
    10,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,
     9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  0,  0,  0,  0, 16,
     0,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,
     9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  0,  0,  0,  0,  0,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
     8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,
};
/* Hex digit values; 255: not a hex digit. */
const uint8_t vs__hexval[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      0,   1,   2,   3,   4,   5,   6,   7,   8,   9, 255, 255, 255, 255, 255, 255,
    255,  10,  11,  12,  13,  14,  15, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255,  10,  11,  12,  13,  14,  15, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

enum {
    N_LETTER = 1, /* a-z (A-Z never reaches refine) */
    N_LEET = 2,   /* 0 1 3 4 5 7 @ $ */
    N_DIGIT = 4,  /* 0-9 */
    N_WORD = 8,   /* letters, digits, leet candidates, bytes >= 0x80 */
    N_SEP = 16,   /* separators between spaced-out letters: space - . _ */
    N_SPACE = 32, /* whitespace: the space and '\n' (folding turned the rest into spaces) */
};

/* Base letters of U+00C0-U+017F ('.': not folded). */
static const char latin_fold[] = "aaaaaa.ceeeeiiiidnooooo.ouuuuy.." /* U+00C0 */
                                 "aaaaaa.ceeeeiiiidnooooo.ouuuuy.y" /* U+00E0 */
                                 "aaaaaaccccccccddddeeeeeeeeeegggg" /* U+0100 */
                                 "gggghhhhiiiiiiiiii..jjkkklllllll" /* U+0120 */
                                 "lllnnnnnnnnnoooooo..rrrrrrssssss" /* U+0140 */
                                 "ssttttttuuuuuuuuuuuuwwyyyzzzzzzs" /* U+0160 */;
_Static_assert(sizeof latin_fold == 0x180 - 0xC0 + 1, "latin_fold covers U+00C0-U+017F");

/* Look-alikes in one 58-letter block of the math Greek alphabets
 * (U+1D6A8...): capitals Alpha-Omega, nabla, small alpha-omega, partial,
 * then the symbol variants ('.': not folded). */
static const char math_greek[] = "ab..ezh.ik.mn.o.p..ty.x..." "a.y.e...ik..v.o.p..tu.x.w." "e.k.p.";
_Static_assert(sizeof math_greek == 58 + 1, "math_greek is one block");

enum fold_op {
    OP_CHAR,       /* arg, a look-alike */
    OP_SEQ,        /* arg + (cp - lo): a run of look-alikes in alphabetical order */
    OP_INVIS,      /* removed (VS_NORM_INVISIBLE) */
    OP_MARK,       /* combining mark: removed (VS_NORM_DIACRITIC) */
    OP_SPACE,      /* a Unicode space: ' ', no bit */
    OP_LATIN,      /* latin_fold (VS_NORM_DIACRITIC) */
    OP_FULLWIDTH,  /* U+FF01-FF5E: ASCII 0x21-0x7E */
    OP_MATH_LATIN, /* 13 styles of A-Z a-z */
    OP_MATH_GREEK, /* 5 styles of math_greek */
    OP_MATH_DIGIT, /* 5 styles of 0-9 */
};

struct fold_range {
    uint32_t lo, hi;
    uint8_t op;
    char arg;
};

#define C1(cp, ch) {cp, cp, OP_CHAR, ch}
#define RANGE(lo, hi, op) {lo, hi, op, 0}

/* Sorted by code point and not overlapping: fold_find is a binary search. */
static const struct fold_range fold_ranges[] = {
    RANGE(0x0085, 0x0085, OP_SPACE), RANGE(0x00A0, 0x00A0, OP_SPACE),
    RANGE(0x00AD, 0x00AD, OP_INVIS), RANGE(0x00C0, 0x017F, OP_LATIN),
    /* IPA and small capitals in Latin Extended-B / IPA Extensions */
    C1(0x0237, 'j'), C1(0x0251, 'a'), C1(0x0261, 'g'), C1(0x0262, 'g'), C1(0x0269, 'i'),
    C1(0x026A, 'i'), C1(0x0274, 'n'), C1(0x0280, 'r'), C1(0x028F, 'y'), C1(0x0299, 'b'),
    C1(0x029C, 'h'), C1(0x029F, 'l'),
    RANGE(0x0300, 0x034E, OP_MARK), RANGE(0x034F, 0x034F, OP_INVIS),
    RANGE(0x0350, 0x036F, OP_MARK),
    /* Greek */
    C1(0x0391, 'a'), C1(0x0392, 'b'), C1(0x0395, 'e'), C1(0x0396, 'z'), C1(0x0397, 'h'),
    C1(0x0399, 'i'), C1(0x039A, 'k'), C1(0x039C, 'm'), C1(0x039D, 'n'), C1(0x039F, 'o'),
    C1(0x03A1, 'p'), C1(0x03A4, 't'), C1(0x03A5, 'y'), C1(0x03A7, 'x'), C1(0x03B1, 'a'),
    C1(0x03B3, 'y'), C1(0x03B5, 'e'), C1(0x03B9, 'i'), C1(0x03BA, 'k'), C1(0x03BD, 'v'),
    C1(0x03BF, 'o'), C1(0x03C1, 'p'), C1(0x03C4, 't'), C1(0x03C5, 'u'), C1(0x03C7, 'x'),
    C1(0x03C9, 'w'), C1(0x03F2, 'c'), C1(0x03F3, 'j'), C1(0x03F9, 'c'),
    /* Cyrillic */
    C1(0x0401, 'e'), C1(0x0405, 's'), C1(0x0406, 'i'), C1(0x0407, 'i'), C1(0x0408, 'j'),
    C1(0x0410, 'a'), C1(0x0412, 'b'), C1(0x0415, 'e'), C1(0x041A, 'k'), C1(0x041C, 'm'),
    C1(0x041D, 'h'), C1(0x041E, 'o'), C1(0x0420, 'p'), C1(0x0421, 'c'), C1(0x0422, 't'),
    C1(0x0423, 'y'), C1(0x0425, 'x'), C1(0x0430, 'a'), C1(0x0435, 'e'), C1(0x043A, 'k'),
    C1(0x043E, 'o'), C1(0x0440, 'p'), C1(0x0441, 'c'), C1(0x0443, 'y'), C1(0x0445, 'x'),
    C1(0x0451, 'e'), C1(0x0455, 's'), C1(0x0456, 'i'), C1(0x0457, 'i'), C1(0x0458, 'j'),
    C1(0x04AE, 'y'), C1(0x04AF, 'y'), C1(0x04BA, 'h'), C1(0x04BB, 'h'), C1(0x04C0, 'i'),
    C1(0x04CF, 'i'), C1(0x0500, 'd'), C1(0x0501, 'd'), C1(0x051A, 'q'), C1(0x051B, 'q'),
    C1(0x051C, 'w'), C1(0x051D, 'w'),
    /* Armenian */
    C1(0x0570, 'h'), C1(0x0578, 'n'), C1(0x057D, 'u'), C1(0x0585, 'o'),
    RANGE(0x061C, 0x061C, OP_INVIS), RANGE(0x115F, 0x1160, OP_INVIS),
    RANGE(0x1680, 0x1680, OP_SPACE), RANGE(0x17B4, 0x17B5, OP_INVIS),
    RANGE(0x180B, 0x180F, OP_INVIS), RANGE(0x1AB0, 0x1AFF, OP_MARK),
    /* small capitals */
    C1(0x1D00, 'a'), C1(0x1D04, 'c'), C1(0x1D05, 'd'), C1(0x1D07, 'e'), C1(0x1D0A, 'j'),
    C1(0x1D0B, 'k'), C1(0x1D0D, 'm'), C1(0x1D0F, 'o'), C1(0x1D18, 'p'), C1(0x1D1B, 't'),
    C1(0x1D1C, 'u'), C1(0x1D20, 'v'), C1(0x1D21, 'w'), C1(0x1D22, 'z'),
    RANGE(0x1DC0, 0x1DFF, OP_MARK),
    RANGE(0x2000, 0x200A, OP_SPACE), RANGE(0x200B, 0x200F, OP_INVIS),
    RANGE(0x2028, 0x2029, OP_SPACE), RANGE(0x202A, 0x202E, OP_INVIS),
    RANGE(0x202F, 0x202F, OP_SPACE), RANGE(0x205F, 0x205F, OP_SPACE),
    RANGE(0x2060, 0x2064, OP_INVIS), RANGE(0x2066, 0x206F, OP_INVIS),
    RANGE(0x20D0, 0x20FF, OP_MARK),
    /* letterlike symbols */
    C1(0x2102, 'c'), C1(0x210A, 'g'), C1(0x210B, 'h'), C1(0x210C, 'h'), C1(0x210D, 'h'),
    C1(0x210E, 'h'), C1(0x2110, 'i'), C1(0x2111, 'i'), C1(0x2112, 'l'), C1(0x2113, 'l'),
    C1(0x2115, 'n'), C1(0x2119, 'p'), C1(0x211A, 'q'), C1(0x211B, 'r'), C1(0x211C, 'r'),
    C1(0x211D, 'r'), C1(0x2124, 'z'), C1(0x2128, 'z'), C1(0x212A, 'k'), C1(0x212B, 'a'),
    C1(0x212C, 'b'), C1(0x212D, 'c'), C1(0x212F, 'e'), C1(0x2130, 'e'), C1(0x2131, 'f'),
    C1(0x2133, 'm'), C1(0x2134, 'o'), C1(0x2139, 'i'),
    /* Roman numerals */
    C1(0x2160, 'i'), C1(0x2164, 'v'), C1(0x2169, 'x'), C1(0x216C, 'l'), C1(0x216D, 'c'),
    C1(0x216E, 'd'), C1(0x216F, 'm'), C1(0x2170, 'i'), C1(0x2174, 'v'), C1(0x2179, 'x'),
    C1(0x217C, 'l'), C1(0x217D, 'c'), C1(0x217E, 'd'), C1(0x217F, 'm'),
    /* parenthesized, circled capital, circled small letters */
    {0x249C, 0x24B5, OP_SEQ, 'a'}, {0x24B6, 0x24CF, OP_SEQ, 'a'}, {0x24D0, 0x24E9, OP_SEQ, 'a'},
    RANGE(0x3000, 0x3000, OP_SPACE), RANGE(0x3164, 0x3164, OP_INVIS),
    C1(0xA730, 'f'), C1(0xA731, 's'),
    RANGE(0xFE00, 0xFE0F, OP_INVIS), RANGE(0xFE20, 0xFE2F, OP_MARK),
    RANGE(0xFEFF, 0xFEFF, OP_INVIS), RANGE(0xFF01, 0xFF5E, OP_FULLWIDTH),
    RANGE(0xFFA0, 0xFFA0, OP_INVIS), RANGE(0xFFF9, 0xFFFB, OP_INVIS),
    RANGE(0x1BCA0, 0x1BCA3, OP_INVIS), RANGE(0x1D173, 0x1D17A, OP_INVIS),
    RANGE(0x1D400, 0x1D6A3, OP_MATH_LATIN), C1(0x1D6A4, 'i'), C1(0x1D6A5, 'j'),
    RANGE(0x1D6A8, 0x1D7C9, OP_MATH_GREEK), RANGE(0x1D7CE, 0x1D7FF, OP_MATH_DIGIT),
    /* squared, negative circled, negative squared capitals */
    {0x1F130, 0x1F149, OP_SEQ, 'a'}, {0x1F150, 0x1F169, OP_SEQ, 'a'},
    {0x1F170, 0x1F189, OP_SEQ, 'a'},
    RANGE(0xE0000, 0xE007F, OP_INVIS), RANGE(0xE0100, 0xE01EF, OP_INVIS),
};

#undef C1
#undef RANGE

/* ---- buffers and UTF-8 ----------------------------------------------------- */

/* p grown to hold at least need elements of elem bytes (*cap counts
 * elements); NULL on failure, p then still valid. */
void *vs__norm_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    size_t ncap = *cap > 0 ? *cap : 256;
    void *q;

    if (need <= *cap && p != NULL) {
        return p;
    }
    while (ncap < need) {
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    }
    if (ncap > SIZE_MAX / elem) {
        return NULL;
    }
    q = realloc(p, ncap * elem);
    if (q != NULL) {
        *cap = ncap;
    }
    return q;
}

/* The code point of the well-formed UTF-8 sequence at p[0..n) (p[0] >=
 * 0x80): its length, or 0 when ill-formed (overlong, surrogate, above
 * U+10FFFF, truncated, bad continuation). */
size_t vs__utf8_decode(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        lo = b == 0xE0 ? 0xA0 : 0x80;
        hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    *cp = b & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        *cp = (*cp << 6) | (p[i] & 0x3Fu);
    }
    return len;
}

/* cp (<= U+10FFFF, not a surrogate) as UTF-8 in out; its length. */
size_t vs__utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- the byte map --------------------------------------------------------------- */

/* Records that output byte at (written after every byte before it) came
 * from byte from: free when it continues the last segment; at the last
 * segment's start, it replaces that segment's origin (the kept byte of a
 * whitespace run taking its '\n'). Failure to grow is remembered in
 * map->oom and reported by vs_normalize. */
/* Room for extra more segments in sg; false (and map->oom) when there is
 * none. */
static bool seg_reserve(struct vs_norm_map *map, struct norm_segs *sg, size_t extra)
{
    size_t cap = sg->cap, cap2 = sg->cap;
    uint32_t *a, *f;

    if (sg->cap - sg->n >= extra) {
        return true;
    }
    a = vs__norm_grow(sg->at, &cap, sg->n + extra, sizeof *a);
    if (a != NULL) {
        sg->at = a;
        f = vs__norm_grow(sg->from, &cap2, sg->n + extra, sizeof *f);
        if (f != NULL) {
            sg->from = f;
            sg->cap = cap < cap2 ? cap : cap2;
            return true;
        }
    }
    map->oom = true;
    return false;
}

static void seg_note(struct vs_norm_map *map, struct norm_segs *sg, size_t at, size_t from)
{
    size_t k = sg->n;

    if (k > 0 && sg->at[k - 1] == at) {
        sg->from[k - 1] = (uint32_t)from;
        return;
    }
    if (k > 0 && from - sg->from[k - 1] == at - sg->at[k - 1]) {
        return;
    }
    if (!seg_reserve(map, sg, 1)) {
        return;
    }
    sg->at[k] = (uint32_t)at;
    sg->from[k] = (uint32_t)from;
    sg->n = k + 1;
}

/* Where output byte o came from, by the segments sg (o is covered). */
static size_t seg_lookup(const struct norm_segs *sg, size_t o)
{
    size_t lo = 0, hi = sg->n;

    while (hi - lo > 1) { /* the last segment starting at or before o */
        size_t mid = lo + (hi - lo) / 2;
        if (sg->at[mid] <= o) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return sg->from[lo] + (o - sg->at[lo]);
}

uint32_t vs_norm_map_at(const vs_norm_map *map, size_t i)
{
    return (uint32_t)seg_lookup(&map->folded, seg_lookup(&map->refined, i));
}

/* ---- folding (first pass) ------------------------------------------------------ */

enum fold_result { FOLD_PASS, FOLD_DROP, FOLD_CHAR };

static const struct fold_range *fold_find(uint32_t cp)
{
    size_t lo = 0, hi = sizeof fold_ranges / sizeof fold_ranges[0];

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < fold_ranges[mid].lo) {
            hi = mid;
        } else if (cp > fold_ranges[mid].hi) {
            lo = mid + 1;
        } else {
            return &fold_ranges[mid];
        }
    }
    return NULL;
}

/* A character removed when it hides something, kept when it belongs to the
 * non-ASCII character before it: ZWJ and variation selectors in emoji
 * sequences and after CJK ideographs, combining marks on other scripts. */
static bool joins_previous(uint32_t cp, enum fold_op op)
{
    return op == OP_MARK || cp == 0x200D || (cp >= 0xFE00 && cp <= 0xFE0F) || cp >= 0xE0100;
}

/* A one-letter result, ch. */
static enum fold_result fold_letter(char ch, unsigned bit, uint8_t *out, unsigned *tf)
{
    *out = (uint8_t)ch;
    *tf |= bit;
    return FOLD_CHAR;
}

/* The same from a table where '.' means "kept unchanged". */
static enum fold_result fold_table(char ch, unsigned bit, uint8_t *out, unsigned *tf)
{
    return ch == '.' ? FOLD_PASS : fold_letter(ch, bit, out, tf);
}

/* What the non-ASCII code point cp becomes: kept, dropped, or *out.
 * after_pass: the character before it was kept unchanged and non-ASCII. */
static enum fold_result fold_cp(uint32_t cp, bool after_pass, uint8_t *out, unsigned *tf)
{
    const struct fold_range *r = fold_find(cp);
    uint32_t k;

    if (r == NULL) {
        return FOLD_PASS;
    }
    k = cp - r->lo;
    switch ((enum fold_op)r->op) {
    case OP_CHAR:
        return fold_letter(r->arg, VS_NORM_HOMOGLYPH, out, tf);
    case OP_SEQ:
        return fold_letter((char)('a' + k), VS_NORM_HOMOGLYPH, out, tf);
    case OP_SPACE:
        *out = ' ';
        return FOLD_CHAR;
    case OP_INVIS:
    case OP_MARK:
        if (after_pass && joins_previous(cp, (enum fold_op)r->op)) {
            return FOLD_PASS;
        }
        *tf |= r->op == OP_MARK ? VS_NORM_DIACRITIC : VS_NORM_INVISIBLE;
        return FOLD_DROP;
    case OP_LATIN:
        return fold_table(latin_fold[k], VS_NORM_DIACRITIC, out, tf);
    case OP_FULLWIDTH:
        return fold_letter((char)fold_ascii[k + 0x21], VS_NORM_HOMOGLYPH, out, tf);
    case OP_MATH_LATIN:
        return fold_letter((char)('a' + k % 52 % 26), VS_NORM_HOMOGLYPH, out, tf);
    case OP_MATH_GREEK:
        return fold_table(math_greek[k % 58], VS_NORM_HOMOGLYPH, out, tf);
    case OP_MATH_DIGIT:
        return fold_letter((char)('0' + k % 10), VS_NORM_HOMOGLYPH, out, tf);
    }
    return FOLD_PASS;
}

#if VS_NORM_SSE2
/* Folds 16-byte blocks of ASCII like fold_ascii; returns where it stopped
 * (fewer than 16 bytes left, or a byte >= 0x80 in the next block). */
static size_t fold_ascii_sse2(const uint8_t *in, size_t i, size_t len, uint8_t *o, size_t j)
{
    while (len - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i)), ws;
        if (v_bits(v) != 0) {
            break;
        }
        v = _mm_add_epi8(v, _mm_and_si128(v_range(v, 'A', 'Z'), _mm_set1_epi8(0x20)));
        ws = _mm_andnot_si128(v_eq(v, '\n'), v_range(v, '\t', '\r'));
        v = _mm_or_si128(_mm_andnot_si128(ws, v), _mm_and_si128(ws, _mm_set1_epi8(' ')));
        _mm_storeu_si128((__m128i *)(void *)(o + j), v);
        i += 16;
        j += 16;
    }
    return i;
}
#endif

#if VS_NORM_WIDE
/* The same with AVX-512, 64 bytes at a time. */
WIDE static size_t fold_ascii_wide(const uint8_t *in, size_t i, size_t len, uint8_t *o, size_t j)
{
    const __m512i space = _mm512_set1_epi8(' ');

    while (len - i >= 64) {
        __m512i v = _mm512_loadu_si512((const void *)(in + i));
        __mmask64 upper, ws;
        __builtin_prefetch(in + i + 4096); /* more reads in flight than the hardware's own */
        if (_mm512_movepi8_mask(v) != 0) {
            break;
        }
        upper = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('A')), _mm512_set1_epi8(26));
        ws = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('\t')), _mm512_set1_epi8(5)) &
             ~_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\n'));
        v = _mm512_mask_add_epi8(v, upper, v, _mm512_set1_epi8(0x20));
        v = _mm512_mask_blend_epi8(ws, v, space);
        _mm512_storeu_si512((void *)(o + j), v);
        i += 64;
        j += 64;
    }
    return i;
}
#endif

/* Folds the ASCII bytes from in[i] on into o[j...]; returns the index of
 * the first byte >= 0x80 (or len). The output advances as much as i. */
static size_t fold_ascii_run(const uint8_t *in, size_t i, size_t len, uint8_t *o, size_t j,
                             bool wide)
{
#if VS_NORM_WIDE
    if (wide) {
        size_t i0 = i;
        i = fold_ascii_wide(in, i, len, o, j);
        j += i - i0;
    }
#else
    (void)wide;
#endif
#if VS_NORM_SSE2
    size_t i1 = i;
    i = fold_ascii_sse2(in, i, len, o, j);
    j += i - i1;
#endif
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
        if (w & 0x8080808080808080u) {
            break;
        }
        for (size_t k = 0; k < 8; k++) {
            o[j + k] = fold_ascii[in[i + k]];
        }
        i += 8;
        j += 8;
    }
    while (i < len && in[i] < 0x80) {
        o[j++] = fold_ascii[in[i++]];
    }
    return i;
}

/* The first pass, in steps: in[0..len) folded into o (its segments in
 * map->folded when map is not NULL), never longer. Whitespace other than
 * '\n' becomes spaces, one for one. */
struct fold {
    const uint8_t *in;
    size_t len, i, j; /* the input, its next byte, the next output byte */
    bool after_pass;  /* the last character was kept unchanged and non-ASCII */
    uint8_t *o;
    struct vs_norm_map *map;
    unsigned *tf;
    bool wide;
};

/* Folds on until at least until input bytes are done, or all of them. */
static void fold_more(struct fold *f, size_t until)
{
    const uint8_t *in = f->in;
    uint8_t *o = f->o;
    struct vs_norm_map *map = f->map;
    size_t len = f->len, i = f->i, j = f->j, stop = until < len ? until : len;
    bool after_pass = f->after_pass;
    unsigned *tf = f->tf;

    while (i < stop) {
        uint32_t cp = 0;
        uint8_t ch = '?';
        size_t n;

        if (in[i] < 0x80) {
            size_t e = fold_ascii_run(in, i, stop, o, j, f->wide);
            if (map != NULL) {
                seg_note(map, &map->folded, j, i);
            }
            j += e - i;
            i = e;
            after_pass = false;
            continue;
        }
        n = vs__utf8_decode(in + i, len - i, &cp);
        switch (n == 0 ? FOLD_CHAR : fold_cp(cp, after_pass, &ch, tf)) {
        case FOLD_PASS:
            if (map != NULL) {
                seg_note(map, &map->folded, j, i);
            }
            for (size_t k = 0; k < n; k++, j++) {
                o[j] = in[i + k];
            }
            after_pass = true;
            break;
        case FOLD_DROP:
            break;
        case FOLD_CHAR:
            if (map != NULL) {
                seg_note(map, &map->folded, j, i);
            }
            o[j] = ch;
            j++;
            after_pass = false;
            break;
        }
        i += n > 0 ? n : 1;
    }
    f->i = i;
    f->j = j;
    f->after_pass = after_pass;
}

/* ---- leetspeak, spaced letters, whitespace (second pass) ---------------------- */

/* The second pass rewrites the first pass's buffer in place: it reads at i
 * and writes at j <= i, so look-ahead reads are safe and look-behind uses
 * the class of the byte read before (prevk), never the buffer. */
struct refine {
    uint8_t *s;
    struct vs_norm_map *map; /* NULL: no map asked for */
    size_t len, j;           /* s[0..len) is folded; output so far */
    struct fold *fold;       /* the first pass, ahead of this one; done: f->i == f->len */
    unsigned tf;
    uint8_t *flat;    /* s[0..j) with line breaks as spaces, made up to flat_done */
    size_t flat_done;
};

/* flat[from..to) from s with '\n' as ' ', 8 bytes at a time: a byte of
 * x ^ 0x0A.. is zero exactly where s has a '\n', and gets ('\n' ^ ' ')
 * xored in there. Whitespace is the only thing a later step changes in s
 * (run_newline), so flat never needs redoing. */
static void flatten(const uint8_t *s, uint8_t *flat, size_t from, size_t to)
{
    const uint64_t ones = 0x0101010101010101u, low7 = 0x7F7F7F7F7F7F7F7Fu;
    size_t i = from;

    for (; to - i >= 8; i += 8) {
        uint64_t x, t;
        memcpy(&x, s + i, 8);
        t = x ^ (ones * '\n');
        t = ~(((t & low7) + low7) | t | low7); /* 0x80 in the zero bytes */
        x ^= (t >> 7) * (uint64_t)('\n' ^ ' ');
        memcpy(flat + i, &x, 8);
    }
    for (; i < to; i++) {
        flat[i] = s[i] == '\n' ? ' ' : s[i];
    }
}

/* Folding runs a chunk ahead of refining, so that refining the text in
 * the cache overlaps reading the next chunk from memory. */
#define FOLD_CHUNK (16u << 10)

/* Whether s[at] exists, folding on when at is past what is folded (a look
 * ahead that is not bounded: a hex literal, a spaced phrase, spacing). */
static inline bool have(struct refine *r, size_t at)
{
    while (at >= r->len && r->fold->i < r->fold->len) {
        fold_more(r->fold, r->fold->i + FOLD_CHUNK);
        r->len = r->fold->j;
    }
    return at < r->len;
}

/* Writes c, which came from position from. */
static inline void put(struct refine *r, uint8_t c, size_t from)
{
    r->s[r->j] = c;
    if (r->map != NULL) {
        seg_note(r->map, &r->map->refined, r->j, from);
    }
    r->j++;
}

static uint8_t leet_letter(uint8_t c)
{
    switch (c) {
    case '0':
        return 'o';
    case '1':
        return 'i';
    case '3':
        return 'e';
    case '4':
    case '@':
        return 'a';
    case '5':
    case '$':
        return 's';
    case '7':
        return 't';
    default:
        return c;
    }
}

/* Copies the hex literal (0x and hex digits) at s[i] unchanged; returns the
 * index after it. */
static size_t hex_literal(struct refine *r, size_t i, unsigned *lastk)
{
    size_t e = i + 2;

    while (have(r, e) && vs__hexval[r->s[e]] < 16) {
        e++;
    }
    *lastk = ncls[r->s[e - 1]];
    for (size_t p = i; p < e; p++) {
        put(r, r->s[p], p);
    }
    return e;
}

/* s[i] starts a run of leet candidates (the byte before is not one). The
 * run is converted when it is 1-3 long, touches a letter and touches no
 * other digit; otherwise its first byte is copied (the rest follow as plain
 * bytes). A hex literal (0x1f) is copied unchanged. Returns the next
 * index; *lastk gets the class of the last byte written. */
static size_t leet_run(struct refine *r, size_t i, unsigned prevk, unsigned *lastk)
{
    size_t e = i + 1;
    unsigned nextk;

    if (!(prevk & N_WORD) && r->s[i] == '0' && have(r, i + 2) && r->s[i + 1] == 'x' &&
        vs__hexval[r->s[i + 2]] < 16) {
        return hex_literal(r, i, lastk);
    }

    while (have(r, e) && e - i <= 3 && (ncls[r->s[e]] & N_LEET)) {
        e++;
    }
    nextk = have(r, e) ? ncls[r->s[e]] : 0;
    if (e - i <= 3 && !((prevk | nextk) & N_DIGIT) && ((prevk | nextk) & N_LETTER)) {
        for (size_t p = i; p < e; p++) {
            put(r, leet_letter(r->s[p]), p);
        }
        r->tf |= VS_NORM_LEET;
        *lastk = N_LETTER | N_WORD;
        return e;
    }
    put(r, r->s[i], i);
    *lastk = ncls[r->s[i]];
    return i + 1;
}

/* Whether a gap of gap separator bytes starting with sep, between two single
 * letters, is inside a run (the letters are joined) rather than between two
 * runs. *run_sep is the current run's separator (0: not known yet); a
 * newline is the same separator as a space (both whitespace). */
static bool gap_joins(uint8_t sep, size_t gap, uint8_t *run_sep)
{
    sep = sep == '\n' ? ' ' : sep;
    if (gap == 1 && (*run_sep == 0 || *run_sep == sep)) {
        *run_sep = sep;
        return true;
    }
    *run_sep = 0;
    return false;
}

/* Whether the single letters from s[i] on (s[i] is a letter with no word
 * byte before it and a separator after it) form a phrase to join (see
 * vs_normalize in the header). *end gets the index just past the phrase's
 * last single letter, either way; the scan stops at the first byte that
 * cannot continue the phrase, so it reads each byte once. */
static bool spaced_phrase(struct refine *r, size_t i, size_t *end)
{
    const uint8_t *s = r->s;
    size_t pos = i, letters = 0, joined = 0;
    uint8_t run_sep = 0;
    bool join_next = false;

    *end = i + 1;
    for (;;) {
        size_t g = pos + 1;
        if (have(r, g) && (ncls[s[g]] & N_WORD)) {
            break; /* s[pos] is not a single letter */
        }
        letters++;
        joined += join_next;
        *end = g;
        while (have(r, g) && (ncls[s[g]] & N_SEP)) {
            g++;
        }
        if (!have(r, g) || !(ncls[s[g]] & N_LETTER)) {
            break;
        }
        join_next = gap_joins(s[pos + 1], g - pos - 1, &run_sep);
        pos = g;
    }
    return letters >= 4 && joined > 0;
}

/* The byte a phrase gap s[from..to) becomes, and the folded byte it comes
 * from: its first '\n', else a space from its first byte. */
static uint8_t gap_byte(const uint8_t *s, size_t from, size_t to, size_t *at)
{
    const uint8_t *nl = memchr(s + from, '\n', to - from);

    *at = nl != NULL ? (size_t)(nl - s) : from;
    return nl != NULL ? '\n' : ' ';
}

/* Writes the phrase s[i..end) joined: runs become words, a gap between runs
 * one byte (gap_byte). */
static void spaced_emit(struct refine *r, size_t i, size_t end)
{
    uint8_t run_sep = 0;
    size_t pos = i;

    put(r, r->s[pos], pos);
    while (pos + 1 < end) {
        size_t g = pos + 1, at;
        while (ncls[r->s[g]] & N_SEP) {
            g++;
        }
        if (!gap_joins(r->s[pos + 1], g - pos - 1, &run_sep)) {
            uint8_t c = gap_byte(r->s, pos + 1, g, &at);
            put(r, c, at);
        }
        put(r, r->s[g], g);
        pos = g;
    }
    r->tf |= VS_NORM_SPACED;
}

/* A whitespace run is written as its first byte, the rest dropped; a '\n'
 * dropped from it at s[from] makes that byte, written at s[kept], a '\n'
 * from there, unless it is one already (the run then keeps the line break,
 * mapped to its first '\n'). The buffer is rewritten in place: kept <
 * from. */
static inline void run_newline(uint8_t *s, struct vs_norm_map *map, size_t kept, size_t from)
{
    if (s[kept] != '\n') {
        s[kept] = '\n';
        if (map != NULL) {
            seg_note(map, &map->refined, kept, from);
        }
    }
}

/* One byte (or a leet run, or a spaced phrase) at s[i] that may need a
 * decision; returns the next index. *prevk: class of the byte read before
 * s[i], updated. *sp_skip: no phrase starts before it. */
static size_t refine_step(struct refine *r, size_t i, unsigned *prevk, size_t *sp_skip)
{
    const uint8_t *s = r->s;
    uint8_t c = s[i];
    unsigned k = ncls[c];
    size_t end;

    if ((k & N_LEET) && !(*prevk & N_LEET)) {
        return leet_run(r, i, *prevk, prevk);
    }
    if ((k & N_LETTER) && !(*prevk & N_WORD) && i >= *sp_skip && have(r, i + 2) &&
        (ncls[s[i + 1]] & N_SEP)) {
        if (spaced_phrase(r, i, &end)) {
            spaced_emit(r, i, end);
            *prevk = N_LETTER | N_WORD;
            return end;
        }
        *sp_skip = end;
    }
    if (!(k & *prevk & N_SPACE)) {
        put(r, c, i);
    } else if (c == '\n') {
        run_newline(r->s, r->map, r->j - 1, i);
    }
    *prevk = k;
    return i + 1;
}

#if VS_NORM_SSE2
/* Bit i set when byte i of the 16 at p is a leet candidate, a letter, a
 * word byte, a separator, whitespace (a space or '\n'), a '\n'. */
struct blk_masks {
    unsigned leet, letter, word, sep, space, nl;
};

static inline struct blk_masks blk_classify(const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i digit = v_range(v, '0', '9'), at = _mm_or_si128(v_eq(v, '@'), v_eq(v, '$'));
    __m128i not_leet = _mm_or_si128(_mm_or_si128(v_eq(v, '2'), v_eq(v, '6')),
                                    _mm_or_si128(v_eq(v, '8'), v_eq(v, '9')));
    __m128i letter = v_range(v, 'a', 'z'), nl = v_eq(v, '\n');
    __m128i space = _mm_or_si128(v_eq(v, ' '), nl);
    __m128i sep = _mm_or_si128(_mm_or_si128(space, v_eq(v, '-')),
                               _mm_or_si128(v_eq(v, '.'), v_eq(v, '_')));
    struct blk_masks b;

    b.leet = v_bits(_mm_or_si128(_mm_andnot_si128(not_leet, digit), at));
    b.letter = v_bits(letter);
    b.word = v_bits(_mm_or_si128(_mm_or_si128(letter, digit), at)) | v_bits(v);
    b.sep = v_bits(sep);
    b.space = v_bits(space);
    b.nl = v_bits(nl);
    return b;
}

/* Copies count (<= 16) bytes from s[from] to the output. */
static inline void copy_span(struct refine *r, size_t from, size_t count)
{
    if (r->map != NULL) {
        seg_note(r->map, &r->map->refined, r->j, from);
    }
    if (r->j != from) { /* else nothing dropped yet: already in place */
        /* 16 bytes loaded before any is stored: those past count land
         * before from, not on bytes still to be read */
        if (from - r->j >= 16 && r->len - from >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(r->s + from));
            _mm_storeu_si128((__m128i *)(void *)(r->s + r->j), v);
        } else {
            memmove(r->s + r->j, r->s + from, count);
        }
    }
    r->j += count;
}

/* The block of 16 bytes at s[i] (17 readable: one of look-ahead): copies
 * the bytes that need no decision (see refine_text) and deals with the
 * others in order, dropping runs of spaces from the block's masks. Returns
 * the next index (past the block, or further when a leet run, a spaced
 * phrase or a run of spaces goes on past it). */
static size_t refine_block(struct refine *r, size_t i, unsigned *prevk, size_t *sp_skip)
{
    struct blk_masks b = blk_classify(r->s + i);
    unsigned next_sep = (b.sep >> 1) | ((unsigned)(ncls[r->s[i + 16]] & N_SEP) << 11);
    unsigned prev_word = (b.word << 1) | ((*prevk & N_WORD) != 0);
    unsigned prev_leet = (b.leet << 1) | ((*prevk & N_LEET) != 0);
    unsigned prev_space = (b.space << 1) | ((*prevk & N_SPACE) != 0);
    unsigned ev = ((b.leet & ~prev_leet) | (b.letter & ~prev_word & next_sep) | (b.space & prev_space)) &
                  0xFFFFu;
    size_t pos = 0, q;

    /* The masks stay right after an event is dealt with: a converted leet
     * run is followed by no leet byte and stays a word, and a dropped space
     * is still the space before the byte that follows it. */
    while (pos < 16) {
        unsigned rest = ev >> pos;
        size_t n = rest != 0 ? pos + (size_t)__builtin_ctz(rest) : 16;
        if (n > pos) {
            *prevk = ncls[r->s[i + n - 1]];
            copy_span(r, i + pos, n - pos);
        }
        if (n == 16) {
            break;
        }
        if ((b.space >> n) & 1) { /* whitespace after whitespace: drop the run */
            unsigned dropped_nl;
            pos = n + (size_t)__builtin_ctz(~(b.space >> n));
            dropped_nl = b.nl >> n & ((1u << (pos - n)) - 1);
            if (dropped_nl != 0) {
                run_newline(r->s, r->map, r->j - 1, i + n + (size_t)__builtin_ctz(dropped_nl));
            }
            *prevk = N_SPACE | N_SEP;
            if (pos >= 16) {
                for (q = i + 16; have(r, q) && (ncls[r->s[q]] & N_SPACE); q++) {
                    if (r->s[q] == '\n') {
                        run_newline(r->s, r->map, r->j - 1, q);
                    }
                }
                return q;
            }
            continue;
        }
        q = refine_step(r, i + n, prevk, sp_skip);
        if (q >= i + 16) {
            return q;
        }
        pos = q - i;
    }
    return i + 16;
}
#endif

#if VS_NORM_WIDE
/* Bit i set when byte i of a 64-byte block is a leetspeak candidate, a
 * letter, a digit, a word byte, a separator, whitespace, a '\n', a '0',
 * an 'x', a hex digit (the classes of ncls, and what hex literals need). */
struct wide_masks {
    uint64_t leet, letter, digit, word, sep, space, nl, zero, x, hex;
};

WIDE static struct wide_masks wide_classify(__m512i v)
{
#define EQ(c) _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c))
#define RANGE(lo, n) _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8(lo)), _mm512_set1_epi8(n))
    struct wide_masks b;
    uint64_t sym = EQ('@') | EQ('$');

    b.digit = RANGE('0', 10);
    b.letter = RANGE('a', 26);
    b.leet = (b.digit & ~(EQ('2') | EQ('6') | EQ('8') | EQ('9'))) | sym;
    b.word = b.letter | b.digit | sym | _mm512_movepi8_mask(v);
    b.nl = EQ('\n');
    b.space = EQ(' ') | b.nl;
    b.sep = b.space | EQ('-') | EQ('.') | EQ('_');
    b.zero = EQ('0');
    b.x = EQ('x');
    b.hex = b.digit | RANGE('a', 6);
#undef EQ
#undef RANGE
    return b;
}

/* The bytes of the block that leetspeak converts (*conv), decided as
 * leet_run and hex_literal decide them (pk: the class of the byte before
 * the block; next: the byte after it); false when the decision depends on
 * bytes past the next one: a short run or a hex literal that goes on past
 * the block. */
WIDE static bool wide_leet(const struct wide_masks *b, unsigned pk, uint8_t next, uint64_t *conv)
{
    const unsigned nk = ncls[next];
    const uint64_t prev_word = b->word << 1 | ((pk & N_WORD) != 0);
    const uint64_t prev_letter = b->letter << 1 | ((pk & N_LETTER) != 0);
    const uint64_t prev_digit = b->digit << 1 | ((pk & N_DIGIT) != 0);
    const uint64_t next_letter = (uint64_t)((nk & N_LETTER) != 0) << 63;
    const uint64_t next_digit = (uint64_t)((nk & N_DIGIT) != 0) << 63;
    const uint64_t lit = b->zero & ~prev_word & (b->x >> 1) & (b->hex >> 2);
    const uint64_t lit_digits = b->hex & ~(b->hex + (lit << 2)); /* the carry runs through them */
    uint64_t start = b->leet & ~(b->leet << 1 | ((pk & N_LEET) != 0));
    const uint64_t lone_zero = b->zero & ~prev_word; /* may start a hex literal */
    uint64_t end = b->leet & ~(b->leet >> 1), len1, len2, len3, c1, c2, c3;

    *conv = 0;
    if ((b->leet >> 63) && (nk & N_LEET)) {
        /* a run going on past the block: 3 of it here make it too long to
         * convert; shorter, its length is not known here */
        unsigned here = b->leet == ~(uint64_t)0 ? 64 : (unsigned)__builtin_clzll(~b->leet);
        if (here < 3) {
            return false;
        }
        start &= ~(~(uint64_t)0 << (64 - here));
    }
    if ((b->leet & (prev_letter | b->letter >> 1 | next_letter)) == 0) {
        return true; /* no candidate touches a letter (a hex literal's "0x" does) */
    }
    /* a hex literal whose "0x" or digits reach past the block */
    if (((lone_zero >> 62) & (b->x >> 63)) || ((lone_zero >> 63) && next == 'x') ||
        ((lit_digits >> 63) && vs__hexval[next] < 16)) {
        return false;
    }
    start &= ~(lit | lit_digits); /* a hex literal is copied as it is */
    len1 = start & end;
    len2 = start & ~end & (end >> 1);
    len3 = start & ~end & ~(end >> 1) & (end >> 2);
    /* a run is converted when a letter touches it and no digit does */
    c1 = len1 & ~(b->digit >> 1 | next_digit) & (prev_letter | b->letter >> 1 | next_letter);
    c2 = len2 & ~(b->digit >> 2 | next_digit >> 1) & (prev_letter | b->letter >> 2 | next_letter >> 1);
    c3 = len3 & ~(b->digit >> 3 | next_digit >> 2) & (prev_letter | b->letter >> 3 | next_letter >> 2);
    c1 &= ~prev_digit;
    c2 &= ~prev_digit;
    c3 &= ~prev_digit;
    *conv = c1 | c2 | c2 << 1 | c3 | c3 << 1 | c3 << 2;
    return true;
}

/* Whether no spaced phrase can start in the block: no chain of 4 single
 * letters, each followed by separators and the next (what spaced_phrase
 * needs; a chain whose separators reach past the block counts). */
WIDE static bool wide_no_spaced(const struct wide_masks *b, unsigned pk, unsigned nk)
{
    const uint64_t single = b->letter & ~(b->word << 1 | ((pk & N_WORD) != 0)) &
                            ~(b->word >> 1 | (uint64_t)((nk & N_WORD) != 0) << 63);
    const uint64_t starts = single & (b->sep >> 1 | (uint64_t)((nk & N_SEP) != 0) << 63);
    uint64_t landed;

    /* the carry from the separator after each start runs to the first
     * byte past its separators; one that leaves the block counts */
    uint64_t land, chain;

    if (starts >> 63 || __builtin_add_overflow(b->sep, starts << 1, &landed)) {
        return false;
    }
    /* one landing per start, in the same order: the starts whose landing
     * has a property are pdep(pext(property, land), starts) */
    land = landed & ~b->sep;
    chain = _pdep_u64(_pext_u64(single, land), starts); /* 2 single letters */
    chain = _pdep_u64(_pext_u64(chain, land), starts);  /* 3 */
    chain = _pdep_u64(_pext_u64(chain, land), starts);  /* 4 */
    return chain == 0;
}

/* The bytes of the block at s[i] that stay: all but whitespace after
 * whitespace, a run keeping its first '\n', or its first byte when it has
 * none - the byte refine_step keeps and run_newline maps. When the run
 * began before the block and its kept byte, already written, is a space,
 * a '\n' here makes it one (run_newline). */
WIDE static uint64_t wide_keep(struct refine *r, const struct wide_masks *b, size_t i, size_t j,
                               unsigned pk)
{
    const uint64_t sp = b->space, in_run = (pk & N_SPACE) != 0;
    const uint64_t start = sp & ~(sp << 1 | in_run);
    /* bits of a run after one of its '\n's: the carry of sp + x runs from
     * each bit of x to its run's end */
    const uint64_t x = (b->nl << 1 | (in_run && r->s[j - 1] == '\n')) & sp;
    const uint64_t after = (sp & ~(sp + x)) | x;
    uint64_t keep = ~sp | start;

    /* a run's first '\n' after its first byte (trailing spaces): rare */
    for (uint64_t late = b->nl & ~after & ~start; late != 0; late &= late - 1) {
        unsigned p = (unsigned)__builtin_ctzll(late);
        uint64_t starts_below = start & (((uint64_t)1 << p) - 1);
        if (starts_below != 0) { /* the run started at the highest start below p */
            keep &= ~((uint64_t)1 << (63 - __builtin_clzll(starts_below)));
            keep |= (uint64_t)1 << p;
        } else {
            run_newline(r->s, r->map, j - 1, i + p);
        }
    }
    return keep;
}

/* The map segments of the kept bytes of the block at s[i], written from
 * j on: one where a kept byte does not follow the one before it, found
 * for all of them at once by compressing the byte indexes. */
WIDE static void wide_map(struct refine *r, uint64_t keep, size_t i, size_t j)
{
    struct norm_segs *sg = &r->map->refined;
    const __m512i iota = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49,
                                         48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
                                         33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
                                         18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                         1, 0);
    const unsigned count = (unsigned)__builtin_popcountll(keep);
    __m512i from, before, at_k, from_k;
    uint64_t gaps;
    unsigned n;

    if (count == 0) {
        return;
    }
    seg_note(r->map, sg, j, i + (size_t)__builtin_ctzll(keep));
    if (keep == ~(uint64_t)0) {
        return; /* one segment */
    }
    from = _mm512_maskz_compress_epi8(keep, iota); /* kept byte k came from from[k] */
    before = _mm512_permutexvar_epi8(_mm512_sub_epi8(iota, _mm512_set1_epi8(1)), from);
    gaps = _mm512_cmpneq_epi8_mask(_mm512_sub_epi8(from, before), _mm512_set1_epi8(1)) &
           ~(uint64_t)1 & (count < 64 ? ((uint64_t)1 << count) - 1 : ~(uint64_t)0);
    n = (unsigned)__builtin_popcountll(gaps);
    if (n == 0 || !seg_reserve(r->map, sg, n)) {
        return;
    }
    at_k = _mm512_maskz_compress_epi8(gaps, iota);
    from_k = _mm512_maskz_compress_epi8(gaps, from);
    for (unsigned done = 0; done < n; done += 16) {
        __m512i shift = _mm512_add_epi8(iota, _mm512_set1_epi8((char)done));
        __m128i a16 = _mm512_castsi512_si128(_mm512_permutexvar_epi8(shift, at_k));
        __m128i f16 = _mm512_castsi512_si128(_mm512_permutexvar_epi8(shift, from_k));
        __mmask16 m = (__mmask16)(n - done >= 16 ? 0xFFFFu : (1u << (n - done)) - 1);
        _mm512_mask_storeu_epi32(sg->at + sg->n + done, m,
                                 _mm512_add_epi32(_mm512_cvtepu8_epi32(a16), _mm512_set1_epi32((int)j)));
        _mm512_mask_storeu_epi32(sg->from + sg->n + done, m,
                                 _mm512_add_epi32(_mm512_cvtepu8_epi32(f16), _mm512_set1_epi32((int)i)));
    }
    sg->n += n;
}

/* The blocks of 64 bytes from s[i] on (each with one byte after it) with
 * AVX-512, for as long as the masks decide everything in them: leetspeak
 * (wide_leet) is converted by a table lookup, and when no spaced phrase
 * can start there (wide_no_spaced) the kept bytes are compressed to the
 * output and to the flat text, and the map gets its segments (wide_map).
 * A block that needs more goes through refine_block, 16 bytes at a time.
 * Returns the index where fewer than 65 bytes are left. */
WIDE static size_t refine_wide(struct refine *r, size_t i, unsigned *prevk, size_t *sp_skip)
{
    /* leet_letter as a table on the low 6 bits: '$' 0x24, '0'-'7' 0x30-0x37, '@' 0x40 */
    static const uint8_t leet_table[64] = {['@' & 63] = 'a', ['$' & 63] = 's', ['0' & 63] = 'o',
                                           ['1' & 63] = 'i', ['3' & 63] = 'e', ['4' & 63] = 'a',
                                           ['5' & 63] = 's', ['7' & 63] = 't'};
    const __m512i leet_letters = _mm512_loadu_si512((const void *)leet_table);
    const __m512i space = _mm512_set1_epi8(' ');
    uint8_t *const s = r->s, *const flat = r->flat;
    size_t j = r->j;
    unsigned pk = *prevk, tf = 0;
    const size_t ahead = r->fold->i - i + 512; /* + i: what folding reads next, and a bit */

    /* r->len grows when the 16-byte path looks far ahead (have) */
    while (r->len - i >= 65) {
        const uint8_t next = s[i + 64], last = s[i + 63];
        if (ahead + i < r->fold->len) {
            __builtin_prefetch(r->fold->in + ahead + i);
        }
        __m512i v = _mm512_loadu_si512((const void *)(s + i));
        const struct wide_masks b = wide_classify(v);
        uint64_t conv, keep;

        if (!wide_leet(&b, pk, next, &conv) || !wide_no_spaced(&b, pk, ncls[next])) {
            size_t end = i + 64;
            r->j = j;
            while (i < end && r->len - i >= 17) {
                i = refine_block(r, i, &pk, sp_skip);
            }
            j = r->j;
            continue;
        }
        if (conv != 0) {
            v = _mm512_mask_permutexvar_epi8(v, conv, v, leet_letters);
            tf |= VS_NORM_LEET;
        }
        keep = wide_keep(r, &b, i, j, pk);
        if (r->map != NULL) {
            wide_map(r, keep, i, j);
        }
        if (r->flat_done < j) {
            flatten(s, flat, r->flat_done, j); /* what the 16-byte path wrote */
        }
        /* whole stores: the bytes past the kept ones land on this block's
         * own bytes (j <= i), already loaded, or are overwritten next */
        _mm512_storeu_si512((void *)(s + j), _mm512_maskz_compress_epi8(keep, v));
        _mm512_storeu_si512((void *)(flat + j),
                            _mm512_maskz_compress_epi8(keep, _mm512_mask_blend_epi8(b.nl, v, space)));
        j += (size_t)__builtin_popcountll(keep);
        r->flat_done = j;
        pk = (conv >> 63) ? N_LETTER | N_WORD : ncls[last];
        i += 64;
    }
    r->j = j;
    r->tf |= tf;
    *prevk = pk;
    return i;
}
#endif

/* From s[i]: copies, without branching on the class, the bytes that need
 * no decision, up to one that does (or the last byte), which refine_step
 * deals with. Returns the next index. */
static size_t refine_scalar(struct refine *r, size_t i, unsigned *prevk, size_t *sp_skip)
{
    const uint8_t *s = r->s;
    struct vs_norm_map *map = r->map;
    unsigned pk = *prevk;
    size_t j = r->j;

    for (; i + 1 < r->len; i++) {
        unsigned k = ncls[s[i]];
        unsigned word_start = k & ~(pk >> 3) & N_LETTER;
        if ((k & ~pk & N_LEET) | (word_start & (ncls[s[i + 1]] >> 4))) {
            break;
        }
        r->s[j] = s[i];
        if (map != NULL && !(k & pk & N_SPACE)) {
            seg_note(map, &map->refined, j, i);
        }
        if ((k & pk & N_SPACE) && s[i] == '\n') {
            run_newline(r->s, map, j - 1, i);
        }
        j += 1 - ((k & pk) >> 5 & 1);
        pk = k;
    }
    r->j = j;
    *prevk = pk;
    return i < r->len ? refine_step(r, i, prevk, sp_skip) : i;
}

/* Second pass over s[0..len) in place; returns the new length. A byte needs
 * a decision when it starts a run of leet candidates, is a letter that
 * starts a word and is followed by a separator (a possible spaced phrase),
 * or is whitespace after whitespace; every other byte is copied. */
static size_t refine_text(struct fold *f, uint8_t *flat, unsigned *tf)
{
    struct refine r = {f->o, f->map, 0, 0, f, 0, flat, 0};
    size_t i = 0, sp_skip = 0;
    unsigned prevk = 0; /* class of the byte read before s[i] */

    _Static_assert(N_LETTER == 1 && N_WORD == 8 && N_SEP == 16 && N_SPACE == 32,
                   "the shifts in refine_scalar");
    for (;;) {
        if (r.len - i < FOLD_CHUNK && f->i < f->len) { /* a chunk ahead: the look-aheads fit */
            fold_more(f, f->i + FOLD_CHUNK);
            r.len = f->j;
            continue;
        }
        if (i >= r.len) {
            break;
        }
#if VS_NORM_WIDE
        if (f->wide && r.len - i >= 65) {
            i = refine_wide(&r, i, &prevk, &sp_skip);
            continue;
        }
#endif
#if VS_NORM_SSE2
        if (r.len - i >= 17) {
            i = refine_block(&r, i, &prevk, &sp_skip);
            continue;
        }
#endif
        i = refine_scalar(&r, i, &prevk, &sp_skip);
    }
    flatten(r.s, flat, r.flat_done, r.j);
    *tf |= r.tf;
    return r.j;
}

/* ---- vs_normalize ----------------------------------------------------------- */

int vs_normalizer_new(vs_normalizer **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    *out = calloc(1, sizeof **out);
    if (*out == NULL) {
        return -ENOMEM;
    }
    vs_normalizer_use_avx512(*out, true);
    return 0;
}

bool vs_normalizer_use_avx512(vs_normalizer *n, bool on)
{
#if VS_NORM_WIDE
    n->wide = on && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("popcnt") &&
              __builtin_cpu_supports("bmi2");
#else
    (void)on;
    n->wide = false;
#endif
    return n->wide;
}

void vs_normalizer_free(vs_normalizer *n)
{
    if (n == NULL) {
        return;
    }
    free(n->text.p);
    free(n->flat.p);
    free(n->map_text.p);
    free(n->map_flat.p);
    free(n->map.refined.at);
    free(n->map.refined.from);
    free(n->map.folded.at);
    free(n->map.folded.from);
    for (size_t i = 0; i < VS_NORM_MAX_DEPTH; i++) {
        free(n->level[i].p);
    }
    free(n);
}

/* Both passes over in[0..len) into text and flat (grown to len), with
 * map's segments when map is not NULL. 0 or -ENOMEM. */
static int normalize_into(vs_normalizer *n, const uint8_t *in, size_t len, struct norm_buf *text,
                          struct norm_buf *flat, struct vs_norm_map *map, size_t *olen,
                          unsigned *tf)
{
    uint8_t *t = vs__norm_grow(text->p, &text->cap, len, 1);

    if (t == NULL) {
        return -ENOMEM;
    }
    text->p = t;
    t = vs__norm_grow(flat->p, &flat->cap, len, 1);
    if (t == NULL) {
        return -ENOMEM;
    }
    flat->p = t;
    struct fold f = {in, len, 0, 0, false, text->p, map, tf, n->wide};
    *tf = 0;
    *olen = refine_text(&f, flat->p, tf);
    return map != NULL && map->oom ? -ENOMEM : 0;
}

int vs_normalize(vs_normalizer *n, const uint8_t *in, size_t len, const uint8_t **out,
                 size_t *out_len, unsigned *transforms)
{
    unsigned tf;
    int rc;

    if (n == NULL) {
        return -EINVAL;
    }
    n->has_input = false;
    n->map_made = false;
    if (out == NULL || out_len == NULL || (in == NULL && len > 0)) {
        return -EINVAL;
    }
    rc = normalize_into(n, in, len, &n->text, &n->flat, NULL, out_len, &tf);
    if (rc != 0) {
        return rc;
    }
    n->in = in;
    n->in_len = len;
    n->has_input = true;
    *out = n->text.p;
    if (transforms != NULL) {
        *transforms = tf;
    }
    return 0;
}

int vs_normalize_map(vs_normalizer *n, const vs_norm_map **map)
{
    size_t olen;
    unsigned tf;
    int rc;

    if (n == NULL || map == NULL || !n->has_input || n->in_len > UINT32_MAX) {
        return -EINVAL;
    }
    if (!n->map_made) {
        n->map.refined.n = n->map.folded.n = 0;
        n->map.oom = false;
        rc = normalize_into(n, n->in, n->in_len, &n->map_text, &n->map_flat, &n->map, &olen, &tf);
        if (rc != 0) {
            return rc;
        }
        n->map_made = true;
    }
    *map = &n->map;
    return 0;
}

const uint8_t *vs_normalize_flat(const vs_normalizer *n)
{
    return n->flat.p;
}

