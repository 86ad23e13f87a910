/*
 * envelope.h - Ed25519-signed envelopes for messages that must stay
 * verifiable later (agent commands from outside a sandbox, ESCROW_RELEASE,
 * dispute votes, attestations, checkpoints). Not for every bus message.
 *
 * The signature covers a domain-separated encoding of
 *   "vs.v1.envelope" 0x00 | body_type | 0x00 | issued_at (8, BE) |
 *   expires_at (8, BE) | nonce (16) | body
 * where body is the serialized message exactly as received: the verifier
 * never re-packs a struct. A verifier rejects a forged signature, an
 * unknown signer, an expired or not-yet-valid envelope, and a nonce it has
 * already accepted (replay) within the validity window.
 */
#ifndef VS_ENVELOPE_H
#define VS_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/keys.h"
#include "vs/v1/common.pb-c.h"

#define VS_ENVELOPE_NONCE_LEN 16
#define VS_ENVELOPE_MAX_TTL_MS (24ULL * 3600 * 1000)

/* Fill env (fields allocated with malloc; release with
 * vs_envelope_clear) with body signed by k, valid ttl_ms from now. */
VS_API int vs_envelope_sign(const vs_signkey *k, const char *body_type, const void *body,
                            size_t len, uint64_t ttl_ms, Vs__V1__SignedEnvelope *env);
VS_API void vs_envelope_clear(Vs__V1__SignedEnvelope *env);

typedef struct vs_replay_cache vs_replay_cache;
/* A bounded cache of accepted nonces (capacity entries; the oldest expired
 * entries are evicted first; when full of unexpired ones, verification
 * fails closed with -ENOSPC). */
VS_API int vs_replay_cache_new(size_t capacity, vs_replay_cache **out);
VS_API void vs_replay_cache_free(vs_replay_cache *c);

/* Decides whether a signer is acceptable (e.g. a registered agent key).
 * Return true to accept. NULL: any signer is accepted (the caller checks
 * env->signer itself). */
typedef bool (*vs_signer_ok_fn)(const uint8_t *signer, size_t len, void *arg);

/* Verify env at time now_ns (allowing skew_ms of clock skew) with
 * expected_type as body_type. Returns 0, or
 *   -EBADMSG  malformed fields or bad signature (forged / modified)
 *   -EPROTOTYPE body_type differs
 *   -EKEYREJECTED signer refused by signer_ok
 *   -ETIME    expired, not yet valid, or ttl above VS_ENVELOPE_MAX_TTL_MS
 *   -EALREADY nonce seen before (replay)
 *   -ENOSPC   replay cache full */
VS_API int vs_envelope_verify(const Vs__V1__SignedEnvelope *env, const char *expected_type,
                              uint64_t now_ns, uint64_t skew_ms, vs_replay_cache *replay,
                              vs_signer_ok_fn signer_ok, void *arg);

#endif
