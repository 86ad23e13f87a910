/*
 * blob.h - payloads larger than one NATS message (snapshots, fetched
 * documents), DESIGN.md section 3.
 *
 * The sender encrypts the payload as a crypto_secretstream_xchacha20poly1305
 * under a fresh random key, in chunks published on vs.blob.<id> (stream
 * BLOBS, Nats-Msg-Id "<id>.<n>"), and seals the stream key to the
 * recipient's X25519 key inside the manifest that travels in the referring
 * message. The secretstream's implicit counter and final tag make a
 * modified, dropped, reordered, duplicated or truncated chunk fail, and the
 * manifest's SHA-256 and size are checked at the end.
 */
#ifndef VS_BLOB_H
#define VS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/bus.h"
#include "vs/keys.h"
#include "vs/v1/common.pb-c.h"

#define VS_BLOB_CHUNK_SIZE (512u * 1024u)
#define VS_BLOB_CHUNK_OVERHEAD 17u /* crypto_secretstream_xchacha20poly1305_ABYTES */

/* ---- the codec (no I/O) --------------------------------------------------- */

typedef struct vs_blob_encoder vs_blob_encoder;
typedef struct vs_blob_decoder vs_blob_decoder;

/* Start encrypting size bytes for recipient_pk in chunks of chunk_size
 * (0: VS_BLOB_CHUNK_SIZE). Fills manifest (fields malloc'd; release with
 * vs_blob_manifest_clear) except sha256, which vs_blob_encoder_finish sets. */
VS_API int vs_blob_encoder_new(const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], uint64_t size,
                               uint32_t chunk_size, Vs__V1__BlobManifest *manifest,
                               vs_blob_encoder **out);
/* Encrypt the next chunk (exactly chunk_size bytes, or the rest for the
 * last one). out needs len + VS_BLOB_CHUNK_OVERHEAD bytes. -ERANGE when the
 * chunk sizes do not add up to the declared size. */
VS_API int vs_blob_encoder_chunk(vs_blob_encoder *e, const void *plain, size_t len, uint8_t *out,
                                 size_t *out_len);
/* After the last chunk: set manifest->sha256. -EINPROGRESS if chunks remain. */
VS_API int vs_blob_encoder_finish(vs_blob_encoder *e, Vs__V1__BlobManifest *manifest);
VS_API void vs_blob_encoder_free(vs_blob_encoder *e);
VS_API void vs_blob_manifest_clear(Vs__V1__BlobManifest *manifest);

/* Check the manifest (sizes within max_size, chunk arithmetic, recipient
 * key id) and open its stream key with k. -EFBIG above max_size, -EBADMSG
 * for a manifest that is inconsistent or not sealed to k. */
VS_API int vs_blob_decoder_new(const Vs__V1__BlobManifest *manifest, const vs_boxkey *k,
                               uint64_t max_size, vs_blob_decoder **out);
/* Decrypt chunk number index (must be the next one). -EBADMSG for a
 * corrupted, reordered or foreign chunk; -ERANGE for a chunk beyond the
 * manifest. */
VS_API int vs_blob_decoder_chunk(vs_blob_decoder *d, uint32_t index, const uint8_t *cipher,
                                 size_t len);
/* After the last chunk: check the final tag, size and SHA-256 and hand the
 * plaintext over (*data malloc'd, caller frees). -EBADMSG on mismatch. */
VS_API int vs_blob_decoder_finish(vs_blob_decoder *d, uint8_t **data, size_t *len);
/* Wipes the stream key and any partial plaintext. */
VS_API void vs_blob_decoder_free(vs_blob_decoder *d);

/* ---- transport over the bus -------------------------------------------- */

/* cb gets 0 and the manifest (valid during the callback) once every chunk
 * is stored in JetStream, or a negative errno. */
typedef void (*vs_blob_sent_cb)(int status, const Vs__V1__BlobManifest *manifest, void *arg);
VS_API int vs_blob_send(vs_bus *bus, const void *data, size_t len,
                        const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], uint64_t max_size,
                        vs_blob_sent_cb cb, void *arg);

/* A SealedPayload of len bytes for recipient_pk: sealed inline
 * (crypto_box_seal) when the sealed bytes take at most inline_max, else
 * sent as a blob (vs_blob_send, refused above max_size). cb gets 0 and the
 * payload (valid during the callback), or a negative errno from the blob's
 * transport. Returns 0 when cb has run or will run exactly once - for an
 * inline payload before this returns - or -errno (-EINVAL, -EFBIG,
 * -ENOMEM) without calling it. */
typedef void (*vs_payload_sealed_cb)(int status, const Vs__V1__SealedPayload *payload, void *arg);
VS_API int vs_payload_seal(vs_bus *bus, const void *data, size_t len,
                           const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], size_t inline_max,
                           uint64_t max_size, vs_payload_sealed_cb cb, void *arg);

/* cb gets 0 and the plaintext (owned by the bus, valid during the callback,
 * wiped after), or -EBADMSG / -EFBIG / -ETIMEDOUT / -ENOENT. */
typedef void (*vs_blob_fetched_cb)(int status, const uint8_t *data, size_t len, void *arg);
VS_API int vs_blob_fetch(vs_bus *bus, const Vs__V1__BlobManifest *manifest, const vs_boxkey *k,
                         uint64_t max_size, uint64_t timeout_ms, vs_blob_fetched_cb cb, void *arg);

#endif
