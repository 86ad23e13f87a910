/*
 * normalizer.h - what the two halves of the text normalizer (vs/normalize.h)
 * share: normalize.c (vs_normalize, the folding passes) and decode.c
 * (vs_norm_decode, encoded runs). The normalizer object's layout, buffer
 * growth, UTF-8, the hex digit table and the SSE2 byte-mask helpers.
 */
#ifndef VS_SCAN_NORMALIZER_H
#define VS_SCAN_NORMALIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/normalize.h"

/* SSE2 (every x86-64) handles 16 bytes at a time on the hot paths; other
 * targets use the scalar loops, which give the same results. */
/* SSE2 (every x86-64) handles 16 bytes at a time on the hot paths; other
 * targets use the scalar loops, which give the same results. */
#ifndef VS_NORM_SSE2 /* -DVS_NORM_SSE2=0 tests the scalar loops */
#if defined(__SSE2__) && defined(__GNUC__)
#define VS_NORM_SSE2 1
#else
#define VS_NORM_SSE2 0
#endif
#endif
#if VS_NORM_SSE2
#include <emmintrin.h>
#endif
/* AVX-512 (BW, VL, VBMI, VBMI2) paths, compiled for x86-64 with GCC or Clang and
 * chosen at run time when the CPU has them (vs_normalizer_use_avx512). */
#if VS_NORM_SSE2 && defined(__x86_64__)
#define VS_NORM_WIDE 1
#include <immintrin.h>
#define WIDE __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi,bmi2,popcnt")))
#else
#define VS_NORM_WIDE 0
#endif

/* A growable byte buffer (one per decoding depth). */
struct norm_buf {
    uint8_t *p;
    size_t cap;
};

/* Where output bytes came from, as segments: the output bytes from at[k]
 * up to at[k + 1] came from from[k], from[k] + 1, ... (at[] rises). */
struct norm_segs {
    uint32_t *at, *from;
    size_t n, cap;
};

/* vs_normalize's byte map: its two passes' segments, composed on lookup. */
struct vs_norm_map {
    struct norm_segs refined; /* output -> the first pass's text */
    struct norm_segs folded;  /* the first pass's text -> input */
    bool oom;                 /* a segment could not be stored */
};

struct vs_normalizer {
    struct norm_buf text, flat; /* vs_normalize's output, and with spaces for line breaks */
    const uint8_t *in;          /* its input, for vs_normalize_map */
    size_t in_len;
    bool has_input;             /* the last call succeeded: in is its input */
    bool map_made;              /* map is the map of that call */
    struct vs_norm_map map;
    struct norm_buf map_text, map_flat; /* the output again, made with the map */
    bool wide;                  /* AVX-512 paths in use */
    struct norm_buf level[VS_NORM_MAX_DEPTH]; /* vs_norm_decode: pieces of depth i + 1 */
};

/* Hex digit values; 255: not a hex digit. */
extern const uint8_t vs__hexval[256];

/* p grown to hold at least need elements of elem bytes (*cap counts
 * elements); NULL on failure, p then still valid. */
void *vs__norm_grow(void *p, size_t *cap, size_t need, size_t elem);

/* The code point of the well-formed UTF-8 sequence at p[0..n) (p[0] >=
 * 0x80): its length, or 0 when ill-formed (overlong, surrogate, above
 * U+10FFFF, truncated, bad continuation). */
size_t vs__utf8_decode(const uint8_t *p, size_t n, uint32_t *cp);

/* cp (<= U+10FFFF, not a surrogate) as UTF-8 in out; its length. */
size_t vs__utf8_encode(uint32_t cp, uint8_t out[4]);

#if VS_NORM_SSE2
/* Byte masks of v: lo <= byte <= hi (signed: for ASCII ranges), byte == c. */
static inline __m128i v_range(__m128i v, char lo, char hi)
{
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)(lo - 1))),
                         _mm_cmplt_epi8(v, _mm_set1_epi8((char)(hi + 1))));
}

static inline __m128i v_eq(__m128i v, char c)
{
    return _mm_cmpeq_epi8(v, _mm_set1_epi8(c));
}

static inline unsigned v_bits(__m128i m)
{
    return (unsigned)_mm_movemask_epi8(m);
}

#endif

#endif
