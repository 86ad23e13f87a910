/*
 * audit_codec.h - the canonical encoding of one audit log entry (defined in
 * audit_store.h), for the programs that rebuild or check entries outside
 * the store: auditd's proof replies, `vsctl audit export` (which writes the
 * entry bytes so that an export can be re-hashed exactly) and `vsctl audit
 * import-check` (which re-hashes them).
 *
 *   entry = "vs.audit.v1" 0x00 | seq (8, BE) | time_ns (8, BE) |
 *           stream_seq (8, BE) | prev_hash (32) | len (4, BE) | event
 *   chain_hash = SHA-256(entry), leaf_hash = SHA-256(0x00 | entry)
 *
 * Kept apart from the store so that a verifier needs neither LMDB nor a
 * store handle, and so that one encoder serves every tool: two encoders
 * that drift apart would make honest exports fail verification.
 */
#ifndef VS_AUDIT_CODEC_H
#define VS_AUDIT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

#define VS_AUDIT_ENTRY_MAGIC "vs.audit.v1"
#define VS_AUDIT_ENTRY_HEADER (12 + 8 + 8 + 8 + 32 + 4) /* bytes before the event */
#define VS_AUDIT_CODEC_HASH 32

/* The fields of an entry. In a decoded entry, prev_hash and event point
 * into the decoded buffer. */
struct vs_audit_fields {
    uint64_t seq;
    uint64_t time_ns;
    uint64_t stream_seq;
    const uint8_t *prev_hash;   /* VS_AUDIT_CODEC_HASH bytes */
    const uint8_t *event;
    size_t len;
};

/* Bytes of the entry holding an event of len bytes. */
VS_API size_t vs_audit_codec_size(size_t len);
/* Encode f into out (size bytes). Returns the length, -EINVAL (NULL
 * pointers, event over 4 GiB) or -ENOSPC. */
VS_API int vs_audit_codec_encode(const struct vs_audit_fields *f, uint8_t *out, size_t size);
/* Decode an entry; -EBADMSG unless it is exactly one valid encoding. */
VS_API int vs_audit_codec_decode(const uint8_t *entry, size_t len, struct vs_audit_fields *out);
/* SHA-256(entry) and SHA-256(0x00 | entry). */
VS_API void vs_audit_codec_chain_hash(const uint8_t *entry, size_t len,
                                      uint8_t out[VS_AUDIT_CODEC_HASH]);
VS_API void vs_audit_codec_leaf_hash(const uint8_t *entry, size_t len,
                                     uint8_t out[VS_AUDIT_CODEC_HASH]);

#endif
