/*
 * keys.h - key material kept in guarded memory: X25519 box key pairs (pool
 * keys, per-task ephemeral keys) and Ed25519 signing keys.
 *
 * Secret halves live in sodium_malloc'd pages (guard pages, mlock'd, never
 * swapped) and are wiped by sodium_free when the key is freed: once a task's
 * keys are freed, nothing a stream retained about it can be opened again
 * (crypto-shredding). Files hold keys as base64 text, 0600.
 */
#ifndef VS_KEYS_H
#define VS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

#define VS_BOX_PUBLICKEY_LEN 32
#define VS_SIGN_PUBLICKEY_LEN 32
#define VS_SIGNATURE_LEN 64
#define VS_KEY_ID_LEN 8
#define VS_SEAL_OVERHEAD 48 /* crypto_box_SEALBYTES */

typedef struct vs_boxkey vs_boxkey;
typedef struct vs_signkey vs_signkey;

/* Must be called once before any key operation (sodium_init). 0 or -EIO. */
VS_API int vs_crypto_init(void);

/* New random X25519 key pair; -ENOMEM. */
VS_API int vs_boxkey_new(vs_boxkey **out);
/* Load from / save to a file of base64 text (secret key); save creates the
 * file 0600 and refuses to overwrite (-EEXIST). Load refuses a file that
 * others can read (-EPERM) or a malformed one (-EINVAL). */
VS_API int vs_boxkey_load(const char *path, vs_boxkey **out);
VS_API int vs_boxkey_save(const vs_boxkey *k, const char *path);
VS_API const uint8_t *vs_boxkey_public(const vs_boxkey *k);
/* First 8 bytes of SHA-256(public key): names the recipient in messages. */
VS_API void vs_key_id(const uint8_t *public_key, size_t len, uint8_t out[VS_KEY_ID_LEN]);
/* Wipe and free. NULL is a no-op. */
VS_API void vs_boxkey_free(vs_boxkey *k);

/* Seal len bytes to recipient_pk (crypto_box_seal). out must have
 * len + VS_SEAL_OVERHEAD bytes. 0 or -EINVAL. */
VS_API int vs_seal(const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], const void *msg, size_t len,
                   uint8_t *out);
/* A box public key written as 64 hex digits (as configs and command lines
 * give it) into out. 0, or -EINVAL for anything else (NULL included). */
VS_API int vs_box_public_parse(const char *hex, uint8_t out[VS_BOX_PUBLICKEY_LEN]);
/* Whether k (len bytes) is a public key crypto_box_seal accepts: 32 bytes
 * and not a low-order point. */
VS_API bool vs_box_key_usable(const uint8_t *k, size_t len);
/* Open a sealed box with k; out gets len - VS_SEAL_OVERHEAD bytes.
 * -EBADMSG when it was not sealed to k or was modified. */
VS_API int vs_unseal(const vs_boxkey *k, const uint8_t *sealed, size_t len, uint8_t *out);

/* Ed25519 signing keys, same file conventions. */
VS_API int vs_signkey_new(vs_signkey **out);
VS_API int vs_signkey_load(const char *path, vs_signkey **out);
VS_API int vs_signkey_save(const vs_signkey *k, const char *path);
VS_API const uint8_t *vs_signkey_public(const vs_signkey *k);
VS_API void vs_signkey_free(vs_signkey *k);
/* Detached signature over msg. */
VS_API int vs_sign(const vs_signkey *k, const void *msg, size_t len, uint8_t sig[VS_SIGNATURE_LEN]);
/* 0 when sig is k's signature over msg, -EBADMSG otherwise. */
VS_API int vs_verify(const uint8_t pk[VS_SIGN_PUBLICKEY_LEN], const void *msg, size_t len,
                     const uint8_t sig[VS_SIGNATURE_LEN]);

#endif
