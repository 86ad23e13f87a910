/*
 * audit_codec.c - encode, decode and hash the canonical audit log entry
 * (see audit_codec.h and audit_store.h for the layout).
 *
 * Fixed-width big-endian fields and an explicit length make the encoding
 * unambiguous (one byte string per entry, and the decoder accepts nothing
 * else), which is what lets a hash of it stand for the entry. Hashing uses
 * the audit log's SHA-256 (sha256.h) like the store and the Merkle code.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "vs/audit_codec.h"
#include "vs/lmdb_util.h"
#include "sha256.h"



size_t vs_audit_codec_size(size_t len)
{
    return VS_AUDIT_ENTRY_HEADER + len;
}

int vs_audit_codec_encode(const struct vs_audit_fields *f, uint8_t *out, size_t size)
{
    if (f == NULL || out == NULL || f->prev_hash == NULL || (f->event == NULL && f->len > 0) ||
        f->len > UINT32_MAX)
        return -EINVAL;
    size_t n = vs_audit_codec_size(f->len);
    if (n > size || n > INT32_MAX)
        return -ENOSPC;
    memcpy(out, VS_AUDIT_ENTRY_MAGIC, sizeof(VS_AUDIT_ENTRY_MAGIC)); /* with its NUL */
    uint8_t *p = out + sizeof(VS_AUDIT_ENTRY_MAGIC);
    vs_put_be64(p, f->seq);
    vs_put_be64(p + 8, f->time_ns);
    vs_put_be64(p + 16, f->stream_seq);
    memcpy(p + 24, f->prev_hash, VS_AUDIT_CODEC_HASH);
    uint32_t len = (uint32_t)f->len;
    p[56] = (uint8_t)(len >> 24);
    p[57] = (uint8_t)(len >> 16);
    p[58] = (uint8_t)(len >> 8);
    p[59] = (uint8_t)len;
    if (f->len > 0)
        memcpy(p + 60, f->event, f->len);
    return (int)n;
}

int vs_audit_codec_decode(const uint8_t *entry, size_t len, struct vs_audit_fields *out)
{
    if (entry == NULL || out == NULL)
        return -EINVAL;
    if (len < VS_AUDIT_ENTRY_HEADER ||
        memcmp(entry, VS_AUDIT_ENTRY_MAGIC, sizeof(VS_AUDIT_ENTRY_MAGIC)) != 0)
        return -EBADMSG;
    const uint8_t *p = entry + sizeof(VS_AUDIT_ENTRY_MAGIC);
    uint32_t elen = (uint32_t)p[56] << 24 | (uint32_t)p[57] << 16 | (uint32_t)p[58] << 8 | p[59];
    if ((size_t)elen != len - VS_AUDIT_ENTRY_HEADER)
        return -EBADMSG;
    out->seq = vs_get_be64(p);
    out->time_ns = vs_get_be64(p + 8);
    out->stream_seq = vs_get_be64(p + 16);
    out->prev_hash = p + 24;
    out->event = p + 60;
    out->len = elen;
    return 0;
}

void vs_audit_codec_chain_hash(const uint8_t *entry, size_t len, uint8_t out[VS_AUDIT_CODEC_HASH])
{
    vs_sha256_prefixed(out, 0, 0, entry, len);
}

void vs_audit_codec_leaf_hash(const uint8_t *entry, size_t len, uint8_t out[VS_AUDIT_CODEC_HASH])
{
    vs_sha256_prefixed(out, 1, 0x00, entry, len);
}
