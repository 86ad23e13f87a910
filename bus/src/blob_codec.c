/*
 * blob_codec.c - the I/O-free half of blobs (contract: the codec section of
 * vs/blob.h): chunked crypto_secretstream_xchacha20poly1305 encryption
 * under a fresh key sealed to the recipient, and the matching decoder.
 * The transport (vs_blob_send / vs_blob_fetch) lives in blob.c.
 *
 * Why this shape:
 *  - Keeping the codec free of I/O lets the transport, tools and tests
 *    share one implementation whose every failure can be tested directly.
 *  - The secretstream's implicit counter and its TAG_FINAL make any
 *    modified, dropped, duplicated, reordered or truncated chunk fail to
 *    authenticate; the decoder additionally insists on the chunk index the
 *    transport saw, exact chunk lengths, TAG_MESSAGE on every chunk but the
 *    last, and at the end on the manifest's size and SHA-256.
 *  - The manifest is validated in full (field lengths, chunk arithmetic,
 *    size bound, recipient key id) before any memory is committed to it or
 *    any key is opened, so a hostile manifest costs nothing.
 *  - Encoder and decoder state hold the stream key, so both live in
 *    sodium_malloc'd memory and are wiped by sodium_free. The stream key
 *    itself is wiped right after the stream is initialized. The decoder's
 *    plaintext is plain malloc'd memory (it is handed to the caller, who
 *    frees it) and is wiped whenever the decoder drops it.
 *  - Every -EBADMSG from the decoder is final: the stream state may have
 *    advanced, so the decoder refuses everything afterwards.
 *  - Nothing here logs; results are 0 or -errno.
 */
#include "vs/blob.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/ids.h"

#define CHUNK_MIN 1024u
#define CHUNK_MAX (1024u * 1024u)
#define STREAM_KEY_LEN crypto_secretstream_xchacha20poly1305_KEYBYTES
#define STREAM_HEADER_LEN crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SEALED_KEY_LEN (STREAM_KEY_LEN + VS_SEAL_OVERHEAD)
#define SHA256_LEN crypto_hash_sha256_BYTES

_Static_assert(VS_BLOB_CHUNK_OVERHEAD == crypto_secretstream_xchacha20poly1305_ABYTES,
               "chunk overhead");
_Static_assert(VS_BLOB_CHUNK_SIZE >= CHUNK_MIN && VS_BLOB_CHUNK_SIZE <= CHUNK_MAX,
               "default chunk size");

/* sodium_malloc aligns the end of an allocation to a page, so the start
 * is only aligned when the size is a multiple of the alignment. */
#define GUARDED_SIZE(t) ((sizeof(t) + 63u) & ~(size_t)63u)

struct vs_blob_encoder {
    crypto_secretstream_xchacha20poly1305_state stream;
    crypto_hash_sha256_state sha;
    unsigned char key[STREAM_KEY_LEN]; /* only until the stream is set up */
    uint64_t size;
    uint32_t chunk_size;
    uint32_t chunks;
    uint32_t next; /* index of the next chunk */
    bool finished;
};

struct vs_blob_decoder {
    crypto_secretstream_xchacha20poly1305_state stream;
    unsigned char key[STREAM_KEY_LEN]; /* only until the stream is set up */
    uint8_t sha256[SHA256_LEN];        /* expected, from the manifest */
    uint8_t *plain;                    /* malloc'd, size bytes (at least 1) */
    uint64_t size;
    uint64_t filled;
    uint32_t chunk_size;
    uint32_t chunks;
    uint32_t next;
    bool failed; /* an -EBADMSG was returned: nothing more is accepted */
};

/* Number of chunks for size bytes: max(1, ceil(size / chunk_size)). */
static uint64_t chunk_count(uint64_t size, uint32_t chunk_size)
{
    return size == 0 ? 1 : (size - 1) / chunk_size + 1;
}

/* Plaintext length of chunk index (all full but the last). */
static uint64_t chunk_len(uint64_t size, uint32_t chunk_size, uint32_t chunks, uint32_t index)
{
    return index + 1 < chunks ? chunk_size : size - (uint64_t)(chunks - 1) * chunk_size;
}

/* Copy len bytes into a fresh malloc'd field; false when out of memory. */
static bool set_bytes(ProtobufCBinaryData *field, const void *data, size_t len)
{
    field->data = malloc(len);
    if (field->data == NULL) {
        return false;
    }
    memcpy(field->data, data, len);
    field->len = len;
    return true;
}

/* ---- encoder ----------------------------------------------------------------- */

/* Contract details: chunk_size must be in [1 KiB, 1 MiB] (or 0); -EINVAL
 * for that, NULL pointers or a recipient key libsodium refuses; -EFBIG when
 * size needs more than 2^32 - 1 chunks; -ENOMEM. On failure the manifest is
 * left empty and *out untouched. */
VS_API int vs_blob_encoder_new(const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], uint64_t size,
                               uint32_t chunk_size, Vs__V1__BlobManifest *manifest,
                               vs_blob_encoder **out)
{
    if (chunk_size == 0) {
        chunk_size = VS_BLOB_CHUNK_SIZE;
    }
    if (recipient_pk == NULL || manifest == NULL || out == NULL || chunk_size < CHUNK_MIN ||
        chunk_size > CHUNK_MAX) {
        return -EINVAL;
    }
    uint64_t chunks = chunk_count(size, chunk_size);
    if (chunks > UINT32_MAX) {
        return -EFBIG;
    }
    vs__v1__blob_manifest__init(manifest);

    vs_blob_encoder *e = sodium_malloc(GUARDED_SIZE(vs_blob_encoder));
    if (e == NULL) {
        return -ENOMEM;
    }
    memset(e, 0, sizeof *e);
    e->size = size;
    e->chunk_size = chunk_size;
    e->chunks = (uint32_t)chunks;

    uint8_t blob_id[VS_ID_LEN];
    uint8_t header[STREAM_HEADER_LEN];
    uint8_t sealed[SEALED_KEY_LEN];
    uint8_t key_id[VS_KEY_ID_LEN];
    int rc = 0;

    crypto_secretstream_xchacha20poly1305_keygen(e->key);
    if (crypto_secretstream_xchacha20poly1305_init_push(&e->stream, header, e->key) != 0) {
        rc = -EINVAL;
    } else {
        rc = vs_seal(recipient_pk, e->key, sizeof e->key, sealed);
    }
    sodium_memzero(e->key, sizeof e->key);
    if (rc != 0) {
        goto fail;
    }
    crypto_hash_sha256_init(&e->sha);
    vs_id_new(blob_id);
    vs_key_id(recipient_pk, VS_BOX_PUBLICKEY_LEN, key_id);

    manifest->size = size;
    manifest->chunk_size = chunk_size;
    manifest->chunks = e->chunks;
    if (!set_bytes(&manifest->blob_id, blob_id, sizeof blob_id) ||
        !set_bytes(&manifest->stream_header, header, sizeof header) ||
        !set_bytes(&manifest->sealed_key, sealed, sizeof sealed) ||
        !set_bytes(&manifest->recipient_key_id, key_id, sizeof key_id)) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = e;
    return 0;
fail:
    vs_blob_manifest_clear(manifest);
    sodium_free(e);
    return rc;
}

/* Contract details: -EINVAL for NULL pointers (plain only when len > 0);
 * -ERANGE leaves the encoder unchanged, so a correct chunk may follow. */
VS_API int vs_blob_encoder_chunk(vs_blob_encoder *e, const void *plain, size_t len, uint8_t *out,
                                 size_t *out_len)
{
    if (e == NULL || out == NULL || out_len == NULL || (plain == NULL && len > 0)) {
        return -EINVAL;
    }
    if (e->next >= e->chunks || len != chunk_len(e->size, e->chunk_size, e->chunks, e->next)) {
        return -ERANGE;
    }
    bool last = e->next + 1 == e->chunks;
    const unsigned char *m = plain != NULL ? plain : (const void *)"";
    unsigned long long clen = 0;

    if (crypto_secretstream_xchacha20poly1305_push(
            &e->stream, out, &clen, m, len, NULL, 0,
            last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                 : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) != 0) {
        return -EINVAL;
    }
    crypto_hash_sha256_update(&e->sha, m, len);
    e->next++;
    *out_len = (size_t)clen;
    return 0;
}

/* Contract details: -EINVAL for NULL pointers, -EALREADY when called a
 * second time, -ENOMEM. Replaces any sha256 the manifest held. */
VS_API int vs_blob_encoder_finish(vs_blob_encoder *e, Vs__V1__BlobManifest *manifest)
{
    if (e == NULL || manifest == NULL) {
        return -EINVAL;
    }
    if (e->finished) {
        return -EALREADY;
    }
    if (e->next < e->chunks) {
        return -EINPROGRESS;
    }
    uint8_t digest[SHA256_LEN];
    ProtobufCBinaryData field = {0};

    crypto_hash_sha256_final(&e->sha, digest);
    e->finished = true;
    if (!set_bytes(&field, digest, sizeof digest)) {
        return -ENOMEM;
    }
    free(manifest->sha256.data);
    manifest->sha256 = field;
    return 0;
}

/* Wipes the stream state. NULL is a no-op. */
VS_API void vs_blob_encoder_free(vs_blob_encoder *e)
{
    if (e != NULL) {
        sodium_free(e);
    }
}

/* Frees the fields vs_blob_encoder_new / _finish allocated and
 * re-initializes the manifest. Not for manifests from
 * vs__v1__blob_manifest__unpack (use its free). NULL is a no-op. */
VS_API void vs_blob_manifest_clear(Vs__V1__BlobManifest *manifest)
{
    if (manifest == NULL) {
        return;
    }
    free(manifest->blob_id.data);
    free(manifest->sha256.data);
    free(manifest->stream_header.data);
    free(manifest->sealed_key.data);
    free(manifest->recipient_key_id.data);
    vs__v1__blob_manifest__init(manifest);
}

/* ---- decoder ----------------------------------------------------------------- */

/* Every field of m has its fixed length and the chunk arithmetic holds.
 * (The size bound is checked separately: it has its own errno.) */
static bool manifest_well_formed(const Vs__V1__BlobManifest *m)
{
    return m->blob_id.len == VS_ID_LEN && m->sha256.len == SHA256_LEN &&
           m->sha256.data != NULL && m->stream_header.len == STREAM_HEADER_LEN &&
           m->stream_header.data != NULL && m->sealed_key.len == SEALED_KEY_LEN &&
           m->sealed_key.data != NULL && m->recipient_key_id.len == VS_KEY_ID_LEN &&
           m->recipient_key_id.data != NULL && m->chunk_size >= CHUNK_MIN &&
           m->chunk_size <= CHUNK_MAX && m->chunks == chunk_count(m->size, m->chunk_size);
}

/* Contract details: -EINVAL for NULL pointers, -ENOMEM. */
VS_API int vs_blob_decoder_new(const Vs__V1__BlobManifest *manifest, const vs_boxkey *k,
                               uint64_t max_size, vs_blob_decoder **out)
{
    if (manifest == NULL || k == NULL || out == NULL) {
        return -EINVAL;
    }
    if (manifest->size > max_size || manifest->size >= SIZE_MAX) {
        return -EFBIG;
    }
    if (!manifest_well_formed(manifest)) {
        return -EBADMSG;
    }
    uint8_t key_id[VS_KEY_ID_LEN];
    vs_key_id(vs_boxkey_public(k), VS_BOX_PUBLICKEY_LEN, key_id);
    if (memcmp(key_id, manifest->recipient_key_id.data, VS_KEY_ID_LEN) != 0) {
        return -EBADMSG;
    }

    vs_blob_decoder *d = sodium_malloc(GUARDED_SIZE(vs_blob_decoder));
    if (d == NULL) {
        return -ENOMEM;
    }
    memset(d, 0, sizeof *d);
    int rc = 0;
    if (vs_unseal(k, manifest->sealed_key.data, manifest->sealed_key.len, d->key) != 0 ||
        crypto_secretstream_xchacha20poly1305_init_pull(&d->stream, manifest->stream_header.data,
                                                        d->key) != 0) {
        rc = -EBADMSG;
    }
    sodium_memzero(d->key, sizeof d->key);
    if (rc == 0) {
        d->plain = malloc(manifest->size > 0 ? (size_t)manifest->size : 1);
        if (d->plain == NULL) {
            rc = -ENOMEM;
        }
    }
    if (rc != 0) {
        sodium_free(d);
        return rc;
    }
    memcpy(d->sha256, manifest->sha256.data, SHA256_LEN);
    d->size = manifest->size;
    d->chunk_size = manifest->chunk_size;
    d->chunks = manifest->chunks;
    *out = d;
    return 0;
}

/* Contract details: -EINVAL for NULL pointers (cipher only when len is
 * 0) or after vs_blob_decoder_finish handed the plaintext over. Checks run
 * index, length, authentication, tag; any -EBADMSG is final. */
VS_API int vs_blob_decoder_chunk(vs_blob_decoder *d, uint32_t index, const uint8_t *cipher,
                                 size_t len)
{
    if (d == NULL || (cipher == NULL && len > 0) || d->plain == NULL) {
        return -EINVAL;
    }
    if (d->failed) {
        return -EBADMSG;
    }
    if (index >= d->chunks) {
        return -ERANGE;
    }
    bool last = index + 1 == d->chunks;
    uint64_t expect = chunk_len(d->size, d->chunk_size, d->chunks, index);
    unsigned long long mlen = 0;
    unsigned char tag = 0;

    if (index != d->next || len != expect + VS_BLOB_CHUNK_OVERHEAD ||
        crypto_secretstream_xchacha20poly1305_pull(&d->stream, d->plain + d->filled, &mlen, &tag,
                                                   cipher, len, NULL, 0) != 0 ||
        mlen != expect ||
        tag != (last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                     : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)) {
        d->failed = true;
        return -EBADMSG;
    }
    d->filled += expect;
    d->next++;
    return 0;
}

/* Contract details: -EINVAL for NULL pointers or when the plaintext was
 * already handed over. After -EBADMSG the plaintext stays inside the
 * decoder and is wiped by vs_blob_decoder_free. */
VS_API int vs_blob_decoder_finish(vs_blob_decoder *d, uint8_t **data, size_t *len)
{
    if (d == NULL || data == NULL || len == NULL || d->plain == NULL) {
        return -EINVAL;
    }
    uint8_t digest[SHA256_LEN];

    if (d->failed || d->next != d->chunks || d->filled != d->size) {
        return -EBADMSG;
    }
    crypto_hash_sha256(digest, d->plain, d->size);
    if (sodium_memcmp(digest, d->sha256, SHA256_LEN) != 0) {
        d->failed = true;
        return -EBADMSG;
    }
    *data = d->plain;
    *len = (size_t)d->size;
    d->plain = NULL;
    return 0;
}

/* NULL is a no-op. */
VS_API void vs_blob_decoder_free(vs_blob_decoder *d)
{
    if (d == NULL) {
        return;
    }
    if (d->plain != NULL) {
        sodium_memzero(d->plain, d->size > 0 ? (size_t)d->size : 1);
        free(d->plain);
    }
    sodium_free(d);
}
