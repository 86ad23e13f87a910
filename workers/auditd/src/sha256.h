/*
 * sha256.h - the audit log's SHA-256, from OpenSSL's libcrypto.
 *
 * The log hashes every entry twice (chain and Merkle leaf) plus the tree
 * nodes; libsodium 1.0.18's portable SHA-256 made hashing half of the
 * append cost. libcrypto uses the CPU's SHA extensions. The result is the
 * same function, so stored logs and checkpoints do not change.
 */
#ifndef VS_AUDIT_SHA256_H
#define VS_AUDIT_SHA256_H

#define OPENSSL_API_COMPAT 0x10100000L
#include <openssl/sha.h>

/* out = SHA-256(prefix byte (when with_prefix) | data). */
static inline void vs_sha256_prefixed(unsigned char out[32], int with_prefix, unsigned char prefix,
                                      const void *data, size_t len)
{
    SHA256_CTX c;
    SHA256_Init(&c);
    if (with_prefix)
        SHA256_Update(&c, &prefix, 1);
    if (len > 0)
        SHA256_Update(&c, data, len);
    SHA256_Final(out, &c);
}

#endif
