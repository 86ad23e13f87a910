/*
 * merkle_int.h - the RFC 6962 algorithms of merkle.c that need more than
 * hashes: building proofs and roots from a source of complete subtree
 * hashes, and the "frontier" (compact range) that appends leaves.
 *
 * They are written against a fetch callback rather than LMDB so that the
 * store (stored subtree hashes), the verifier (recomputed ones) and the
 * tests (an array of leaves) share one implementation of RFC 6962's
 * PATH and SUBPROOF. Internal to libvsauditstore; not part of its API.
 */
#ifndef VS_MERKLE_INT_H
#define VS_MERKLE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "vs/audit_store.h"

/* Hash of the complete subtree of 2^level leaves starting at leaf
 * index << level (level 0: the leaf hash). 0 or -errno (stops the caller). */
typedef int (*vs_merkle_fetch_fn)(void *ctx, unsigned level, uint64_t index,
                                  uint8_t out[VS_HASH_LEN]);

/* SHA-256 of the empty string: the root of the empty tree. */
void vs_merkle_empty_root(uint8_t out[VS_HASH_LEN]);

/* MTH(D[a:b]) for a < b, split as RFC 6962 does; O(log(b - a)) fetches
 * when a is aligned as in PATH/SUBPROOF (always true for a == 0). */
int vs_merkle_range_hash(vs_merkle_fetch_fn fetch, void *ctx, uint64_t a, uint64_t b,
                         uint8_t out[VS_HASH_LEN]);

/* RFC 6962 PATH(index, D[0:size]): 0 < size, index < size. -EINVAL
 * otherwise, -E2BIG past VS_AUDIT_MAX_PROOF, or the fetch error. */
int vs_merkle_path(vs_merkle_fetch_fn fetch, void *ctx, uint64_t index, uint64_t size,
                   uint8_t path[][VS_HASH_LEN], size_t *n);

/* RFC 6962 PROOF(size1, D[0:size2]); empty when size1 is 0 or size2. */
int vs_merkle_proof(vs_merkle_fetch_fn fetch, void *ctx, uint64_t size1, uint64_t size2,
                    uint8_t proof[][VS_HASH_LEN], size_t *n);

/* The right edge of a tree: h[l] is the complete subtree of 2^l leaves
 * for each bit l set in size. Appending a leaf merges equal subtrees. */
struct vs_merkle_frontier {
    uint64_t size;
    uint8_t h[64][VS_HASH_LEN];
};

/* Called for each subtree completed by a push (level >= 1). */
typedef int (*vs_merkle_emit_fn)(void *ctx, unsigned level, uint64_t index,
                                 const uint8_t hash[VS_HASH_LEN]);

/* Load the frontier of a tree of size leaves through fetch. */
int vs_merkle_frontier_load(struct vs_merkle_frontier *fr, uint64_t size,
                            vs_merkle_fetch_fn fetch, void *ctx);
/* Append one leaf hash; emit (may be NULL) sees every completed node and
 * its error stops the push (the frontier is then unusable). */
int vs_merkle_frontier_push(struct vs_merkle_frontier *fr, const uint8_t leaf[VS_HASH_LEN],
                            vs_merkle_emit_fn emit, void *ctx);
/* MTH of the frontier's tree (the empty root when size is 0). */
void vs_merkle_frontier_root(const struct vs_merkle_frontier *fr, uint8_t out[VS_HASH_LEN]);

#endif
