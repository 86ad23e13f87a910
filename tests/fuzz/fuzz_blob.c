/*
 * fuzz_blob.c - libFuzzer target: the blob decoder (vs/blob.h) fed a
 * modified manifest or a modified chunk, as vs_blob_fetch would be by a
 * hostile sender or a tampered stream.
 *
 * At init a PLAIN_LEN-byte plaintext is encrypted for a box key in
 * NCHUNKS chunks of CHUNK_SIZE bytes (the last one shorter). Input: byte 0
 * modulo NCHUNKS + 1 selects what the rest replaces: 0 the serialized
 * BlobManifest, k the ciphertext of chunk k - 1; everything else is the
 * original. The decoder must then fail with -EBADMSG, -EFBIG or -ERANGE,
 * or hand back exactly the original plaintext; anything else aborts.
 *
 * libsodium's randombytes is replaced by a deterministic generator (a
 * fixed-seed ChaCha20 stream) before sodium_init, so the key, stream key,
 * header and sealed key, and with them the seeds, are the same in every
 * run: a reproducer stays a reproducer. The blob id (time-ordered, so
 * different in every run) is replaced by a fixed one; the decoder only
 * checks its length.
 *
 * VS_FUZZ_WRITE_SEEDS=<dir> writes the original manifest and chunks (each
 * with its selector byte) to dir and exits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/blob.h"
#include "vs/keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHUNK_SIZE 1024u /* the smallest the codec allows */
#define NCHUNKS 3u
#define PLAIN_LEN (2u * CHUNK_SIZE + 600u)
#define MAX_SIZE (64u * 1024u)

static vs_boxkey *key;
static uint8_t plain[PLAIN_LEN];
static uint8_t *manifest_wire;
static size_t manifest_len;
static uint8_t chunk[NCHUNKS][CHUNK_SIZE + VS_BLOB_CHUNK_OVERHEAD];
static size_t chunk_len[NCHUNKS];

static void die(const char *what, int rc)
{
    fprintf(stderr, "fuzz_blob: %s (rc %d)\n", what, rc);
    abort();
}

/* Decode the blob described by the manifest in mwire from the chunks cw:
 * 0 and the plaintext, or the error. */
static int decode(const uint8_t *mwire, size_t mlen, const uint8_t *const cw[NCHUNKS],
                  const size_t cl[NCHUNKS], uint8_t **out, size_t *out_len)
{
    Vs__V1__BlobManifest *m = vs__v1__blob_manifest__unpack(NULL, mlen, mwire);
    vs_blob_decoder *d = NULL;
    int rc;

    if (m == NULL) {
        return -EBADMSG; /* as vs_blob_fetch treats it */
    }
    rc = vs_blob_decoder_new(m, key, MAX_SIZE, &d);
    if (rc == 0) {
        for (uint32_t i = 0; i < NCHUNKS && rc == 0; i++) {
            rc = vs_blob_decoder_chunk(d, i, cw[i], cl[i]);
            if (rc != 0 && rc != -EBADMSG && rc != -ERANGE) {
                die("vs_blob_decoder_chunk: unexpected error", rc);
            }
        }
        if (rc == 0) {
            rc = vs_blob_decoder_finish(d, out, out_len);
            if (rc != 0 && rc != -EBADMSG) {
                die("vs_blob_decoder_finish: unexpected error", rc);
            }
        }
        vs_blob_decoder_free(d);
    } else if (rc != -EBADMSG && rc != -EFBIG) {
        die("vs_blob_decoder_new: unexpected error", rc);
    }
    vs__v1__blob_manifest__free_unpacked(m, NULL);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *mwire = manifest_wire;
    size_t mlen = manifest_len;
    const uint8_t *cw[NCHUNKS];
    size_t cl[NCHUNKS];
    uint8_t *out = NULL;
    size_t out_len = 0;
    unsigned sel;

    if (size < 1) {
        return 0;
    }
    for (unsigned i = 0; i < NCHUNKS; i++) {
        cw[i] = chunk[i];
        cl[i] = chunk_len[i];
    }
    sel = data[0] % (NCHUNKS + 1);
    if (sel == 0) {
        mwire = data + 1;
        mlen = size - 1;
    } else {
        cw[sel - 1] = data + 1;
        cl[sel - 1] = size - 1;
    }
    if (decode(mwire, mlen, cw, cl, &out, &out_len) == 0) {
        if (out == NULL || out_len != PLAIN_LEN || memcmp(out, plain, PLAIN_LEN) != 0) {
            die(sel == 0 ? "a modified manifest decoded to other data"
                         : "a modified chunk decoded to other data",
                0);
        }
        free(out);
    }
    return 0;
}

/* ---- deterministic randomness ------------------------------------------------ */

static uint64_t rng_calls;

/* Each call: ChaCha20 under a fixed seed whose first 8 bytes are the call
 * number. */
static void rng_buf(void *buf, size_t size)
{
    unsigned char seed[randombytes_SEEDBYTES] = "vibeshield fuzz_blob fixed seed";

    for (unsigned i = 0; i < 8; i++) {
        seed[i] ^= (unsigned char)(rng_calls >> (8 * i));
    }
    rng_calls++;
    randombytes_buf_deterministic(buf, size, seed);
}

static uint32_t rng_random(void)
{
    uint32_t r;

    rng_buf(&r, sizeof r);
    return r;
}

static const char *rng_name(void)
{
    return "vs-fuzz-deterministic";
}

static randombytes_implementation rng_impl = {
    .implementation_name = rng_name,
    .random = rng_random,
    .stir = NULL,
    .uniform = NULL,
    .buf = rng_buf,
    .close = NULL,
};

/* ---- init and seeds -------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, uint8_t sel, const uint8_t *body,
                       size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || fwrite(body, 1, len, f) != len ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("VS_FUZZ_WRITE_SEEDS");
    Vs__V1__BlobManifest manifest;
    vs_blob_encoder *e = NULL;
    const uint8_t *cw[NCHUNKS];
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc;

    (void)argc;
    (void)argv;
    if (randombytes_set_implementation(&rng_impl) != 0 || vs_crypto_init() != 0 ||
        vs_boxkey_new(&key) != 0) {
        die("init", 0);
    }
    for (size_t i = 0; i < PLAIN_LEN; i++) {
        plain[i] = (uint8_t)(i * 131u + (i >> 8));
    }
    rc = vs_blob_encoder_new(vs_boxkey_public(key), PLAIN_LEN, CHUNK_SIZE, &manifest, &e);
    if (rc != 0 || manifest.chunks != NCHUNKS) {
        die("vs_blob_encoder_new", rc);
    }
    for (unsigned i = 0; i < NCHUNKS; i++) {
        size_t off = (size_t)i * CHUNK_SIZE;
        size_t n = PLAIN_LEN - off < CHUNK_SIZE ? PLAIN_LEN - off : CHUNK_SIZE;
        if ((rc = vs_blob_encoder_chunk(e, plain + off, n, chunk[i], &chunk_len[i])) != 0) {
            die("vs_blob_encoder_chunk", rc);
        }
        cw[i] = chunk[i];
    }
    if ((rc = vs_blob_encoder_finish(e, &manifest)) != 0) {
        die("vs_blob_encoder_finish", rc);
    }
    vs_blob_encoder_free(e);
    if (manifest.blob_id.len != 16) {
        die("blob id length", (int)manifest.blob_id.len);
    }
    memset(manifest.blob_id.data, 0x42, manifest.blob_id.len);
    manifest_len = vs__v1__blob_manifest__get_packed_size(&manifest);
    manifest_wire = malloc(manifest_len);
    if (manifest_wire == NULL) {
        abort();
    }
    vs__v1__blob_manifest__pack(&manifest, manifest_wire);
    vs_blob_manifest_clear(&manifest);

    /* The original decodes, or the property checked above is void. */
    rc = decode(manifest_wire, manifest_len, cw, chunk_len, &out, &out_len);
    if (rc != 0 || out_len != PLAIN_LEN || memcmp(out, plain, PLAIN_LEN) != 0) {
        die("the original blob does not decode", rc);
    }
    free(out);

    if (seeds != NULL && seeds[0] != '\0') {
        write_seed(seeds, "manifest", 0, manifest_wire, manifest_len);
        for (unsigned i = 0; i < NCHUNKS; i++) {
            char name[32];
            snprintf(name, sizeof name, "chunk-%u", i);
            write_seed(seeds, name, (uint8_t)(i + 1), chunk[i], chunk_len[i]);
        }
        free(manifest_wire);
        vs_boxkey_free(key);
        exit(0);
    }
    return 0;
}
