/*
 * test_agent_frame.c - unit tests of the command channel's frame codec
 * (sdk/src/agent_frame.c): the header, and the incremental decoder fed the
 * way a socket delivers bytes.
 *
 * The decoder is checked against the simplest possible reference, the
 * list of payloads that were framed: every chunking of the stream (a split
 * at every byte, byte by byte, random chunk sizes) must give back exactly
 * that list. The hostile cases check what a peer must not be able to do:
 * make the decoder allocate what a header announces, or make it go on
 * after a length above its maximum.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vs/agent_frame.h"

#define MAX_FRAMES 256

/* ---- a stream and what the decoder gave back ----------------------------- */

struct stream {
    uint8_t *bytes;
    size_t len;
};

/* Append one frame of len bytes whose payload is a pattern seeded by tag. */
static void put_frame(struct stream *s, size_t len, unsigned tag)
{
    s->bytes = realloc(s->bytes, s->len + VS_FRAME_HEADER + len);
    assert_non_null(s->bytes);
    assert_int_equal(vs_frame_header(s->bytes + s->len, len), 0);
    for (size_t i = 0; i < len; i++)
        s->bytes[s->len + VS_FRAME_HEADER + i] = (uint8_t)(tag * 31u + i * 7u);
    s->len += VS_FRAME_HEADER + len;
}

struct got {
    size_t n;
    size_t len[MAX_FRAMES];
    uint8_t *payload[MAX_FRAMES];
    size_t stop_at;   /* return stop_rc for this frame (1-based); 0: never */
    int stop_rc;
};

static int collect(const uint8_t *payload, size_t len, void *arg)
{
    struct got *g = arg;
    assert_non_null(payload); /* also for an empty frame */
    assert_true(g->n < MAX_FRAMES);
    g->len[g->n] = len;
    g->payload[g->n] = malloc(len + 1);
    memcpy(g->payload[g->n], payload, len);
    g->n++;
    return g->n == g->stop_at ? g->stop_rc : 0;
}

static void got_clear(struct got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->payload[i]);
    memset(g, 0, sizeof *g);
}

/* The frames of s, parsed directly: what every chunking must reproduce. */
static void reference(const struct stream *s, struct got *ref)
{
    size_t off = 0;
    while (off < s->len) {
        const uint8_t *h = s->bytes + off;
        size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        collect(h + VS_FRAME_HEADER, len, ref);
        off += VS_FRAME_HEADER + len;
    }
}

static void assert_same(const struct got *a, const struct got *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->len[i], b->len[i]);
        assert_memory_equal(a->payload[i], b->payload[i], a->len[i]);
    }
}

/* The capacity bound of agent_frame.h, checked after every feed. */
static void assert_capacity_bounded(const vs_frame_decoder *d)
{
    size_t received = vs_frame_decoder_pending(d);
    size_t bound = 2 * received > VS_FRAME_RETAIN ? 2 * received : VS_FRAME_RETAIN;
    assert_true(vs_frame_decoder_capacity(d) <= bound);
}

/* Feed s in the given chunk lengths (summing to s->len) into a new decoder. */
static void feed_chunks(const struct stream *s, const size_t *chunks, size_t n_chunks,
                        struct got *g)
{
    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX, &d), 0);
    size_t off = 0;
    for (size_t i = 0; i < n_chunks; i++) {
        assert_int_equal(vs_frame_decoder_feed(d, s->bytes + off, chunks[i], collect, g), 0);
        assert_capacity_bounded(d);
        off += chunks[i];
    }
    assert_int_equal(off, s->len);
    assert_int_equal(vs_frame_decoder_pending(d), 0);
    vs_frame_decoder_free(d);
}

/* A deterministic generator (xorshift64*), so a failure repeats. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

/* ---- the header ---------------------------------------------------------------- */

static void test_header_is_little_endian(void **state)
{
    (void)state;
    uint8_t h[VS_FRAME_HEADER] = {9, 9, 9, 9};
    assert_int_equal(vs_frame_header(h, 0), 0);
    assert_memory_equal(h, ((uint8_t[]){0, 0, 0, 0}), 4);
    assert_int_equal(vs_frame_header(h, 0xabcdef), 0);
    assert_memory_equal(h, ((uint8_t[]){0xef, 0xcd, 0xab, 0x00}), 4);
    assert_int_equal(vs_frame_header(h, VS_FRAME_MAX), 0);
    assert_memory_equal(h, ((uint8_t[]){0, 0, 0, 1}), 4);
    /* Above the maximum: refused, out untouched. */
    assert_int_equal(vs_frame_header(h, VS_FRAME_MAX + 1), -EMSGSIZE);
    assert_memory_equal(h, ((uint8_t[]){0, 0, 0, 1}), 4);
}

static void test_decoder_max_must_be_sane(void **state)
{
    (void)state;
    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(0, &d), -EINVAL);
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX + 1, &d), -EINVAL);
    assert_null(d);
    assert_int_equal(vs_frame_decoder_new(1, &d), 0);
    assert_int_equal(vs_frame_decoder_capacity(d), 0);
    vs_frame_decoder_free(d);
    vs_frame_decoder_free(NULL);
}

/* ---- chunkings ------------------------------------------------------------------- */

/* Sizes around the edges: empty, tiny, around the first allocation (4096).
 * Larger frames are in test_random_chunking: every cut of them would take
 * long under the sanitizers. */
static void mixed_stream(struct stream *s)
{
    const size_t sizes[] = {0, 1, 5, 0, 300, 4095, 4096, 4097, 0, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        put_frame(s, sizes[i], (unsigned)i);
}

static void test_split_at_every_byte(void **state)
{
    (void)state;
    struct stream s = {0};
    mixed_stream(&s);
    struct got ref = {0}, g = {0};
    reference(&s, &ref);
    assert_int_equal(ref.n, 10);
    for (size_t cut = 0; cut <= s.len; cut++) {
        size_t chunks[2] = {cut, s.len - cut};
        feed_chunks(&s, chunks, 2, &g);
        assert_same(&g, &ref);
        got_clear(&g);
    }
    got_clear(&ref);
    free(s.bytes);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    struct stream s = {0};
    mixed_stream(&s);
    struct got ref = {0}, g = {0};
    reference(&s, &ref);
    size_t *ones = malloc(s.len * sizeof *ones);
    for (size_t i = 0; i < s.len; i++)
        ones[i] = 1;
    feed_chunks(&s, ones, s.len, &g);
    assert_same(&g, &ref);
    free(ones);
    got_clear(&g);
    got_clear(&ref);
    free(s.bytes);
}

static void test_random_chunking(void **state)
{
    (void)state;
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 40; round++) {
        struct stream s = {0};
        size_t frames = 1 + next_random(&rnd) % 40;
        for (size_t i = 0; i < frames; i++) {
            uint64_t r = next_random(&rnd);
            /* mostly small, some empty, some that outgrow the buffer */
            size_t len = r % 8 == 0 ? 0 : r % 8 == 1 ? (size_t)(r >> 8) % 200000
                                                     : (size_t)(r >> 8) % 600;
            put_frame(&s, len, (unsigned)i);
        }
        size_t chunks[4096];
        size_t n = 0, off = 0;
        while (off < s.len) {
            uint64_t r = next_random(&rnd);
            size_t c = 1 + (size_t)(r % 4 == 0 ? r >> 8 : (r >> 8) % 64) % (s.len - off);
            chunks[n++] = c;
            off += c;
            assert_true(n < sizeof chunks / sizeof chunks[0] || off == s.len);
        }
        struct got ref = {0}, g = {0};
        reference(&s, &ref);
        feed_chunks(&s, chunks, n, &g);
        assert_same(&g, &ref);
        got_clear(&g);
        got_clear(&ref);
        free(s.bytes);
    }
}

static void test_zero_length_frames(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame(&s, 0, 0);
    put_frame(&s, 0, 0);
    put_frame(&s, 0, 0);
    struct got g = {0};
    size_t whole[1] = {s.len};
    feed_chunks(&s, whole, 1, &g);
    assert_int_equal(g.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(g.len[i], 0);
    got_clear(&g);
    free(s.bytes);
}

/* The largest frame, whole and in 1 MiB pieces; a big buffer is released
 * once its frame is out. */
static void test_max_size_frame(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame(&s, VS_FRAME_MAX, 1);
    put_frame(&s, 2, 2);
    struct got ref = {0}, g = {0};
    reference(&s, &ref);

    size_t whole[1] = {s.len};
    feed_chunks(&s, whole, 1, &g);
    assert_same(&g, &ref);
    got_clear(&g);

    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX, &d), 0);
    size_t off = 0;
    while (off < s.len) {
        size_t c = s.len - off < (1u << 20) ? s.len - off : (1u << 20);
        assert_int_equal(vs_frame_decoder_feed(d, s.bytes + off, c, collect, &g), 0);
        assert_capacity_bounded(d);
        off += c;
    }
    assert_same(&g, &ref);
    assert_int_equal(vs_frame_decoder_capacity(d), 0);
    vs_frame_decoder_free(d);
    got_clear(&g);
    got_clear(&ref);
    free(s.bytes);
}

/* ---- hostile input ------------------------------------------------------------------ */

static void test_oversized_header_poisons(void **state)
{
    (void)state;
    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(100, &d), 0);
    struct stream s = {0};
    put_frame(&s, 100, 1); /* exactly max: fine */
    put_frame(&s, 101, 2); /* one above */
    put_frame(&s, 1, 3);
    struct got g = {0};
    /* The bad header arrives split, as it may off a socket. */
    size_t first = VS_FRAME_HEADER + 100 + 2;
    assert_int_equal(vs_frame_decoder_feed(d, s.bytes, first, collect, &g), 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(vs_frame_decoder_feed(d, s.bytes + first, s.len - first, collect, &g),
                     -EMSGSIZE);
    /* Poisoned: nothing more is parsed, whatever comes. */
    struct stream good = {0};
    put_frame(&good, 1, 4);
    assert_int_equal(vs_frame_decoder_feed(d, good.bytes, good.len, collect, &g), -EMSGSIZE);
    assert_int_equal(vs_frame_decoder_feed(d, NULL, 0, collect, &g), -EMSGSIZE);
    assert_int_equal(g.n, 1);
    vs_frame_decoder_free(d);
    got_clear(&g);
    free(good.bytes);
    free(s.bytes);

    /* 0xffffffff against the largest decoder. */
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX, &d), 0);
    const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(vs_frame_decoder_feed(d, huge, 4, collect, &g), -EMSGSIZE);
    assert_int_equal(vs_frame_decoder_capacity(d), 0);
    vs_frame_decoder_free(d);
}

/* A header announcing 16 MiB costs nothing; the buffer follows the bytes
 * that really arrive. */
static void test_hostile_header_does_not_allocate(void **state)
{
    (void)state;
    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX, &d), 0);
    uint8_t h[VS_FRAME_HEADER];
    assert_int_equal(vs_frame_header(h, VS_FRAME_MAX), 0);
    struct got g = {0};
    assert_int_equal(vs_frame_decoder_feed(d, h, sizeof h, collect, &g), 0);
    assert_int_equal(vs_frame_decoder_capacity(d), 0);
    assert_int_equal(vs_frame_decoder_pending(d), 4);

    uint8_t byte = 0x42;
    assert_int_equal(vs_frame_decoder_feed(d, &byte, 1, collect, &g), 0);
    assert_true(vs_frame_decoder_capacity(d) <= 4096);

    static uint8_t chunk[10000];
    assert_int_equal(vs_frame_decoder_feed(d, chunk, sizeof chunk, collect, &g), 0);
    assert_true(vs_frame_decoder_capacity(d) <= 2 * (1 + sizeof chunk));
    assert_int_equal(vs_frame_decoder_pending(d), 4 + 1 + sizeof chunk);
    assert_int_equal(g.n, 0);
    vs_frame_decoder_free(d);
}

/* A callback's nonzero value stops the feed and sticks. */
static void test_callback_stops_the_stream(void **state)
{
    (void)state;
    struct stream s = {0};
    put_frame(&s, 3, 1);
    put_frame(&s, 0, 2);
    put_frame(&s, 3, 3);
    vs_frame_decoder *d = NULL;
    assert_int_equal(vs_frame_decoder_new(VS_FRAME_MAX, &d), 0);
    struct got g = {.stop_at = 2, .stop_rc = -EBADMSG};
    assert_int_equal(vs_frame_decoder_feed(d, s.bytes, s.len, collect, &g), -EBADMSG);
    assert_int_equal(g.n, 2);
    assert_int_equal(vs_frame_decoder_feed(d, s.bytes, s.len, collect, &g), -EBADMSG);
    assert_int_equal(g.n, 2);
    vs_frame_decoder_free(d);
    got_clear(&g);
    free(s.bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_is_little_endian),
        cmocka_unit_test(test_decoder_max_must_be_sane),
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_random_chunking),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_max_size_frame),
        cmocka_unit_test(test_oversized_header_poisons),
        cmocka_unit_test(test_hostile_header_does_not_allocate),
        cmocka_unit_test(test_callback_stops_the_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
