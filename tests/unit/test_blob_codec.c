/*
 * test_blob_codec.c - unit tests of the blob codec (blob_codec.c): the
 * encoder and decoder of chunked secretstreams, without any transport.
 *
 * Each case encodes a payload into an in-memory list of chunks, then feeds
 * the decoder the chunks as a hostile transport might (altered, swapped,
 * dropped, extra) or with a doctored manifest, and asserts the exact errno
 * at the exact step where the damage must be noticed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "vs/blob.h"
#include "vs/ids.h"
#include "vs/keys.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* ---- fixtures ---------------------------------------------------------------- */

struct fixture {
    vs_boxkey *k;     /* the recipient */
    vs_boxkey *other; /* someone else */
};

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || vs_crypto_init() != 0 || vs_boxkey_new(&f->k) != 0 ||
        vs_boxkey_new(&f->other) != 0) {
        return -1;
    }
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    vs_boxkey_free(f->k);
    vs_boxkey_free(f->other);
    free(f);
    return 0;
}

/* An encoded blob: its manifest and its ciphertext chunks. */
struct blob {
    Vs__V1__BlobManifest m;
    uint8_t **chunk;
    size_t *len;
    uint32_t n;
};

static uint8_t *random_bytes(size_t len)
{
    uint8_t *p = malloc(len > 0 ? len : 1);
    assert_non_null(p);
    randombytes_buf(p, len);
    return p;
}

/* Encode data[0..size) for pk in chunks of chunk_size (0: default). */
static void encode(const uint8_t *pk, const uint8_t *data, size_t size, uint32_t chunk_size,
                   struct blob *b)
{
    vs_blob_encoder *e = NULL;

    assert_int_equal(vs_blob_encoder_new(pk, size, chunk_size, &b->m, &e), 0);
    b->n = b->m.chunks;
    b->chunk = calloc(b->n, sizeof *b->chunk);
    b->len = calloc(b->n, sizeof *b->len);
    assert_non_null(b->chunk);
    assert_non_null(b->len);
    size_t off = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        size_t plen = size - off < b->m.chunk_size ? size - off : b->m.chunk_size;
        b->chunk[i] = malloc(plen + VS_BLOB_CHUNK_OVERHEAD);
        assert_non_null(b->chunk[i]);
        assert_int_equal(vs_blob_encoder_chunk(e, data + off, plen, b->chunk[i], &b->len[i]), 0);
        assert_int_equal(b->len[i], plen + VS_BLOB_CHUNK_OVERHEAD);
        off += plen;
    }
    assert_int_equal(off, size);
    assert_int_equal(b->m.sha256.len, 0);
    assert_int_equal(vs_blob_encoder_finish(e, &b->m), 0);
    assert_int_equal(b->m.sha256.len, 32);
    vs_blob_encoder_free(e);
}

static void blob_free(struct blob *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        free(b->chunk[i]);
    }
    free(b->chunk);
    free(b->len);
    vs_blob_manifest_clear(&b->m);
}

/* Decode b with k in order; the plaintext is checked against want. */
static void decode_ok(const struct blob *b, const vs_boxkey *k, const uint8_t *want, size_t size)
{
    vs_blob_decoder *d = NULL;
    uint8_t *data = NULL;
    size_t len = 0;

    assert_int_equal(vs_blob_decoder_new(&b->m, k, size, &d), 0);
    for (uint32_t i = 0; i < b->n; i++) {
        assert_int_equal(vs_blob_decoder_chunk(d, i, b->chunk[i], b->len[i]), 0);
    }
    assert_int_equal(vs_blob_decoder_finish(d, &data, &len), 0);
    assert_int_equal(len, size);
    if (size > 0) {
        assert_memory_equal(data, want, size);
    }
    /* Handed over: the decoder no longer has it. */
    assert_int_equal(vs_blob_decoder_finish(d, &data, &len), -EINVAL);
    vs_blob_decoder_free(d);
    free(data);
}

/* A decoder for b with k that accepted chunks [0, upto). */
static vs_blob_decoder *decoder_upto(const struct blob *b, const vs_boxkey *k, uint32_t upto)
{
    vs_blob_decoder *d = NULL;
    assert_int_equal(vs_blob_decoder_new(&b->m, k, b->m.size, &d), 0);
    for (uint32_t i = 0; i < upto; i++) {
        assert_int_equal(vs_blob_decoder_chunk(d, i, b->chunk[i], b->len[i]), 0);
    }
    return d;
}

/* ---- round trips ------------------------------------------------------------- */

static void test_round_trip_5mib(void **state)
{
    struct fixture *f = *state;
    const size_t size = 5 * MIB;
    uint8_t *data = random_bytes(size);
    struct blob b = {0};

    encode(vs_boxkey_public(f->k), data, size, 512 * KIB, &b);
    assert_int_equal(b.m.chunks, 10);
    assert_int_equal(b.m.size, size);
    assert_int_equal(b.m.chunk_size, 512 * KIB);
    assert_int_equal(b.m.blob_id.len, VS_ID_LEN);
    assert_int_equal(b.m.stream_header.len, 24);
    assert_int_equal(b.m.sealed_key.len, 32 + VS_SEAL_OVERHEAD);
    uint8_t key_id[VS_KEY_ID_LEN];
    vs_key_id(vs_boxkey_public(f->k), VS_BOX_PUBLICKEY_LEN, key_id);
    assert_int_equal(b.m.recipient_key_id.len, VS_KEY_ID_LEN);
    assert_memory_equal(b.m.recipient_key_id.data, key_id, VS_KEY_ID_LEN);
    uint8_t digest[32];
    crypto_hash_sha256(digest, data, size);
    assert_memory_equal(b.m.sha256.data, digest, 32);

    decode_ok(&b, f->k, data, size);

    /* The manifest survives the wire. */
    size_t plen = vs__v1__blob_manifest__get_packed_size(&b.m);
    uint8_t *wire = malloc(plen);
    assert_non_null(wire);
    vs__v1__blob_manifest__pack(&b.m, wire);
    Vs__V1__BlobManifest *rx = vs__v1__blob_manifest__unpack(NULL, plen, wire);
    assert_non_null(rx);
    vs_blob_decoder *d = NULL;
    assert_int_equal(vs_blob_decoder_new(rx, f->k, size, &d), 0);
    vs__v1__blob_manifest__free_unpacked(rx, NULL);
    free(wire);
    for (uint32_t i = 0; i < b.n; i++) {
        assert_int_equal(vs_blob_decoder_chunk(d, i, b.chunk[i], b.len[i]), 0);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(vs_blob_decoder_finish(d, &out, &len), 0);
    assert_int_equal(len, size);
    assert_memory_equal(out, data, size);
    free(out);
    vs_blob_decoder_free(d);

    blob_free(&b);
    free(data);
}

static void test_round_trip_edge_sizes(void **state)
{
    struct fixture *f = *state;
    const struct {
        size_t size;
        uint32_t chunk_size;
        uint32_t chunks;
    } cases[] = {
        {0, 0, 1},
        {0, KIB, 1},
        {1, KIB, 1},
        {KIB - 1, KIB, 1},
        {KIB, KIB, 1},
        {KIB + 1, KIB, 2},
        {VS_BLOB_CHUNK_SIZE, 0, 1},
        {VS_BLOB_CHUNK_SIZE + 1, 0, 2},
        {2 * VS_BLOB_CHUNK_SIZE, 0, 2},
        {MIB, MIB, 1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *data = random_bytes(cases[i].size);
        struct blob b = {0};
        encode(vs_boxkey_public(f->k), data, cases[i].size, cases[i].chunk_size, &b);
        assert_int_equal(b.m.chunks, cases[i].chunks);
        assert_int_equal(b.m.chunk_size, cases[i].chunk_size ? cases[i].chunk_size
                                                              : VS_BLOB_CHUNK_SIZE);
        decode_ok(&b, f->k, data, cases[i].size);
        blob_free(&b);
        free(data);
    }
}

/* ---- encoder misuse ---------------------------------------------------------- */

static void test_encoder_misuse(void **state)
{
    struct fixture *f = *state;
    Vs__V1__BlobManifest m;
    vs_blob_encoder *e = NULL;
    uint8_t plain[KIB + 1] = {0};
    uint8_t out[KIB + 1 + VS_BLOB_CHUNK_OVERHEAD];
    size_t out_len = 0;

    assert_int_equal(vs_blob_encoder_new(vs_boxkey_public(f->k), 10, KIB - 1, &m, &e), -EINVAL);
    assert_int_equal(vs_blob_encoder_new(vs_boxkey_public(f->k), 10, MIB + 1, &m, &e), -EINVAL);
    assert_null(e);

    assert_int_equal(vs_blob_encoder_new(vs_boxkey_public(f->k), KIB + 1, KIB, &m, &e), 0);
    assert_int_equal(vs_blob_encoder_finish(e, &m), -EINPROGRESS);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, KIB - 1, out, &out_len), -ERANGE);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, KIB + 1, out, &out_len), -ERANGE);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, KIB, out, &out_len), 0);
    assert_int_equal(vs_blob_encoder_finish(e, &m), -EINPROGRESS);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, 2, out, &out_len), -ERANGE);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, 1, out, &out_len), 0);
    assert_int_equal(out_len, 1 + VS_BLOB_CHUNK_OVERHEAD);
    assert_int_equal(vs_blob_encoder_chunk(e, plain, 1, out, &out_len), -ERANGE);
    assert_int_equal(vs_blob_encoder_finish(e, &m), 0);
    assert_int_equal(vs_blob_encoder_finish(e, &m), -EALREADY);
    vs_blob_encoder_free(e);
    vs_blob_manifest_clear(&m);
}

/* ---- damaged streams ----------------------------------------------------------- */

/* 8 chunks of 1 KiB plus a short last one. */
static void small_blob(const struct fixture *f, uint8_t **data, struct blob *b)
{
    const size_t size = 8 * KIB + 100;
    *data = random_bytes(size);
    encode(vs_boxkey_public(f->k), *data, size, KIB, b);
    assert_int_equal(b->n, 9);
}

static void test_flipped_bit(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    uint8_t *out = NULL;
    size_t len = 0;

    small_blob(f, &data, &b);
    vs_blob_decoder *d = decoder_upto(&b, f->k, 3);
    b.chunk[3][100] ^= 0x08;
    assert_int_equal(vs_blob_decoder_chunk(d, 3, b.chunk[3], b.len[3]), -EBADMSG);
    /* Final: even the genuine chunk is refused now. */
    b.chunk[3][100] ^= 0x08;
    assert_int_equal(vs_blob_decoder_chunk(d, 3, b.chunk[3], b.len[3]), -EBADMSG);
    assert_int_equal(vs_blob_decoder_finish(d, &out, &len), -EBADMSG);
    assert_null(out);
    vs_blob_decoder_free(d);

    /* The tag at the end of a chunk is covered too. */
    d = decoder_upto(&b, f->k, 3);
    b.chunk[3][b.len[3] - 1] ^= 0x01;
    assert_int_equal(vs_blob_decoder_chunk(d, 3, b.chunk[3], b.len[3]), -EBADMSG);
    vs_blob_decoder_free(d);

    blob_free(&b);
    free(data);
}

static void test_chunks_swapped(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};

    small_blob(f, &data, &b);
    /* Chunk 3's bytes delivered as chunk 2. */
    vs_blob_decoder *d = decoder_upto(&b, f->k, 2);
    assert_int_equal(vs_blob_decoder_chunk(d, 2, b.chunk[3], b.len[3]), -EBADMSG);
    vs_blob_decoder_free(d);
    /* Chunk 3 announced before chunk 2. */
    d = decoder_upto(&b, f->k, 2);
    assert_int_equal(vs_blob_decoder_chunk(d, 3, b.chunk[3], b.len[3]), -EBADMSG);
    vs_blob_decoder_free(d);
    /* A chunk delivered twice. */
    d = decoder_upto(&b, f->k, 3);
    assert_int_equal(vs_blob_decoder_chunk(d, 3, b.chunk[2], b.len[2]), -EBADMSG);
    vs_blob_decoder_free(d);
    d = decoder_upto(&b, f->k, 3);
    assert_int_equal(vs_blob_decoder_chunk(d, 2, b.chunk[2], b.len[2]), -EBADMSG);
    vs_blob_decoder_free(d);

    blob_free(&b);
    free(data);
}

static void test_last_chunk_missing(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    uint8_t *out = NULL;
    size_t len = 0;

    small_blob(f, &data, &b);
    vs_blob_decoder *d = decoder_upto(&b, f->k, b.n - 1);
    assert_int_equal(vs_blob_decoder_finish(d, &out, &len), -EBADMSG);
    assert_null(out);
    vs_blob_decoder_free(d);

    /* Truncation can't be disguised: a full-size chunk in the last
     * position lacks TAG_FINAL (and is the wrong length). */
    d = decoder_upto(&b, f->k, b.n - 1);
    assert_int_equal(vs_blob_decoder_chunk(d, b.n - 1, b.chunk[b.n - 2], b.len[b.n - 2]),
                     -EBADMSG);
    vs_blob_decoder_free(d);

    blob_free(&b);
    free(data);
}

static void test_extra_chunk(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    uint8_t *out = NULL;
    size_t len = 0;

    small_blob(f, &data, &b);
    vs_blob_decoder *d = decoder_upto(&b, f->k, b.n);
    assert_int_equal(vs_blob_decoder_chunk(d, b.n, b.chunk[0], b.len[0]), -ERANGE);
    assert_int_equal(vs_blob_decoder_chunk(d, UINT32_MAX, b.chunk[0], b.len[0]), -ERANGE);
    /* Not fatal: the blob itself is complete and intact. */
    assert_int_equal(vs_blob_decoder_finish(d, &out, &len), 0);
    assert_int_equal(len, b.m.size);
    assert_memory_equal(out, data, len);
    free(out);
    vs_blob_decoder_free(d);

    blob_free(&b);
    free(data);
}

static void test_foreign_chunk(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL, *data2 = NULL;
    struct blob b = {0}, b2 = {0};

    small_blob(f, &data, &b);
    small_blob(f, &data2, &b2);
    /* Same position, same length, other blob's stream. */
    vs_blob_decoder *d = decoder_upto(&b, f->k, 4);
    assert_int_equal(vs_blob_decoder_chunk(d, 4, b2.chunk[4], b2.len[4]), -EBADMSG);
    vs_blob_decoder_free(d);
    blob_free(&b);
    blob_free(&b2);
    free(data);
    free(data2);
}

/* ---- doctored manifests ---------------------------------------------------------- */

static void test_wrong_recipient(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    vs_blob_decoder *d = NULL;

    small_blob(f, &data, &b);
    assert_int_equal(vs_blob_decoder_new(&b.m, f->other, b.m.size, &d), -EBADMSG);
    /* Even when the manifest names the other key, the stream key was not
     * sealed to it. */
    vs_key_id(vs_boxkey_public(f->other), VS_BOX_PUBLICKEY_LEN, b.m.recipient_key_id.data);
    assert_int_equal(vs_blob_decoder_new(&b.m, f->other, b.m.size, &d), -EBADMSG);
    /* And k no longer matches the id the manifest now names. */
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, b.m.size, &d), -EBADMSG);
    assert_null(d);
    blob_free(&b);
    free(data);
}

static void test_manifest_too_big(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    vs_blob_decoder *d = NULL;

    small_blob(f, &data, &b);
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, b.m.size - 1, &d), -EFBIG);
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, 0, &d), -EFBIG);
    assert_null(d);
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, b.m.size, &d), 0);
    vs_blob_decoder_free(d);
    blob_free(&b);
    free(data);
}

static void test_manifest_inconsistent(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    vs_blob_decoder *d = NULL;
    const uint64_t max = 1ull << 40;

    small_blob(f, &data, &b);
    b.m.chunks++;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.chunks -= 2;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.chunks = 0;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.chunks = b.n;
    b.m.size += KIB; /* one chunk's worth more, same chunk count: no */
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.size -= KIB;
    b.m.chunk_size = 512; /* below the minimum */
    b.m.chunks = 17;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.chunk_size = 2 * MIB; /* above the maximum */
    b.m.chunks = 1;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.chunk_size = KIB;
    b.m.chunks = b.n;
    b.m.stream_header.len--;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.stream_header.len++;
    b.m.sha256.len--;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.sha256.len++;
    b.m.sealed_key.data[40] ^= 0x01;
    assert_int_equal(vs_blob_decoder_new(&b.m, f->k, max, &d), -EBADMSG);
    b.m.sealed_key.data[40] ^= 0x01;
    assert_null(d);
    decode_ok(&b, f->k, data, b.m.size);
    blob_free(&b);
    free(data);
}

static void test_manifest_sha256_altered(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    struct blob b = {0};
    uint8_t *out = NULL;
    size_t len = 0;

    small_blob(f, &data, &b);
    b.m.sha256.data[31] ^= 0x01;
    vs_blob_decoder *d = decoder_upto(&b, f->k, b.n);
    assert_int_equal(vs_blob_decoder_finish(d, &out, &len), -EBADMSG);
    assert_null(out);
    vs_blob_decoder_free(d);
    blob_free(&b);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_5mib),
        cmocka_unit_test(test_round_trip_edge_sizes),
        cmocka_unit_test(test_encoder_misuse),
        cmocka_unit_test(test_flipped_bit),
        cmocka_unit_test(test_chunks_swapped),
        cmocka_unit_test(test_last_chunk_missing),
        cmocka_unit_test(test_extra_chunk),
        cmocka_unit_test(test_foreign_chunk),
        cmocka_unit_test(test_wrong_recipient),
        cmocka_unit_test(test_manifest_too_big),
        cmocka_unit_test(test_manifest_inconsistent),
        cmocka_unit_test(test_manifest_sha256_altered),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
