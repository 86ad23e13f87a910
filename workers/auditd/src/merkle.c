/*
 * merkle.c - RFC 6962 / RFC 9162 Merkle tree hashing for the audit log:
 * leaf and node hashes, proof generation (PATH and SUBPROOF) over any
 * source of complete subtree hashes, the frontier used to append leaves,
 * and the proof verifiers of RFC 9162 2.1.3.2 and 2.1.4.2.
 *
 * Why this shape: the store keeps the hash of every complete power-of-two
 * subtree, and every range RFC 6962's recursions visit is a complete
 * aligned subtree followed by a smaller range that decomposes the same
 * way, so roots and proofs cost O(log n) lookups. The generators take a
 * fetch callback so that one implementation serves the LMDB store, the
 * verifier and the tests. The verifiers use hashes alone (a client holding
 * a signed checkpoint needs nothing else) and follow RFC 9162's iterative
 * algorithms step by step, which is what the tests compare against a naive
 * recursive MTH. SHA-256 is libcrypto's (sha256.h).
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "merkle_int.h"
#include "sha256.h"

/* ---- hashes ------------------------------------------------------------------ */

void vs_merkle_leaf(const uint8_t *data, size_t len, uint8_t out[VS_HASH_LEN])
{
    vs_sha256_prefixed(out, 1, 0x00, data, len);
}

void vs_merkle_node(const uint8_t l[VS_HASH_LEN], const uint8_t r[VS_HASH_LEN],
                    uint8_t out[VS_HASH_LEN])
{
    uint8_t buf[1 + 2 * VS_HASH_LEN];
    buf[0] = 0x01;
    memcpy(buf + 1, l, VS_HASH_LEN);
    memcpy(buf + 1 + VS_HASH_LEN, r, VS_HASH_LEN);
    vs_sha256_prefixed(out, 0, 0, buf, sizeof buf); /* out may alias l or r: buf is a copy */
}

void vs_merkle_empty_root(uint8_t out[VS_HASH_LEN])
{
    vs_sha256_prefixed(out, 0, 0, "", 0);
}

/* The largest power of two strictly below n (n >= 2): RFC 6962's k. */
static uint64_t split_point(uint64_t n)
{
    return UINT64_C(1) << (63 - __builtin_clzll(n - 1));
}

static bool is_pow2(uint64_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

/* ---- generation ---------------------------------------------------------------- */

int vs_merkle_range_hash(vs_merkle_fetch_fn fetch, void *ctx, uint64_t a, uint64_t b,
                         uint8_t out[VS_HASH_LEN])
{
    if (a >= b)
        return -EINVAL;
    uint64_t n = b - a;
    if (is_pow2(n) && a % n == 0) {
        unsigned level = (unsigned)__builtin_ctzll(n);
        return fetch(ctx, level, a >> level, out);
    }
    uint64_t k = split_point(n);
    uint8_t l[VS_HASH_LEN], r[VS_HASH_LEN];
    int rc = vs_merkle_range_hash(fetch, ctx, a, a + k, l);
    if (rc == 0)
        rc = vs_merkle_range_hash(fetch, ctx, a + k, b, r);
    if (rc == 0)
        vs_merkle_node(l, r, out);
    return rc;
}

struct proof_out {
    uint8_t (*h)[VS_HASH_LEN];
    size_t n;
};

static int push_range(vs_merkle_fetch_fn fetch, void *ctx, uint64_t a, uint64_t b,
                      struct proof_out *o)
{
    if (o->n >= VS_AUDIT_MAX_PROOF)
        return -E2BIG;
    int rc = vs_merkle_range_hash(fetch, ctx, a, b, o->h[o->n]);
    if (rc == 0)
        o->n++;
    return rc;
}

/* PATH(m, D[a:b]) with m relative to a: the deepest sibling first. */
static int path_rec(vs_merkle_fetch_fn fetch, void *ctx, uint64_t m, uint64_t a, uint64_t b,
                    struct proof_out *o)
{
    if (b - a == 1)
        return 0;
    uint64_t k = split_point(b - a);
    int rc;
    if (m < k) {
        rc = path_rec(fetch, ctx, m, a, a + k, o);
        return rc ? rc : push_range(fetch, ctx, a + k, b, o);
    }
    rc = path_rec(fetch, ctx, m - k, a + k, b, o);
    return rc ? rc : push_range(fetch, ctx, a, a + k, o);
}

int vs_merkle_path(vs_merkle_fetch_fn fetch, void *ctx, uint64_t index, uint64_t size,
                   uint8_t path[][VS_HASH_LEN], size_t *n)
{
    if (fetch == NULL || path == NULL || n == NULL || index >= size)
        return -EINVAL;
    struct proof_out o = {path, 0};
    int rc = path_rec(fetch, ctx, index, 0, size, &o);
    *n = rc == 0 ? o.n : 0;
    return rc;
}

/* SUBPROOF(m, D[a:b], complete) with m relative to a. */
static int subproof_rec(vs_merkle_fetch_fn fetch, void *ctx, uint64_t m, uint64_t a, uint64_t b,
                        bool complete, struct proof_out *o)
{
    uint64_t n = b - a;
    if (m == n)
        return complete ? 0 : push_range(fetch, ctx, a, b, o);
    uint64_t k = split_point(n);
    int rc;
    if (m <= k) {
        rc = subproof_rec(fetch, ctx, m, a, a + k, complete, o);
        return rc ? rc : push_range(fetch, ctx, a + k, b, o);
    }
    rc = subproof_rec(fetch, ctx, m - k, a + k, b, false, o);
    return rc ? rc : push_range(fetch, ctx, a, a + k, o);
}

int vs_merkle_proof(vs_merkle_fetch_fn fetch, void *ctx, uint64_t size1, uint64_t size2,
                    uint8_t proof[][VS_HASH_LEN], size_t *n)
{
    if (fetch == NULL || proof == NULL || n == NULL || size1 > size2)
        return -EINVAL;
    *n = 0;
    if (size1 == 0 || size1 == size2)
        return 0;
    struct proof_out o = {proof, 0};
    int rc = subproof_rec(fetch, ctx, size1, 0, size2, true, &o);
    *n = rc == 0 ? o.n : 0;
    return rc;
}

/* ---- frontier ------------------------------------------------------------------ */

int vs_merkle_frontier_load(struct vs_merkle_frontier *fr, uint64_t size,
                            vs_merkle_fetch_fn fetch, void *ctx)
{
    fr->size = size;
    for (unsigned l = 0; l < 64; l++) {
        if (!((size >> l) & 1))
            continue;
        int rc = fetch(ctx, l, (size >> l) - 1, fr->h[l]);
        if (rc)
            return rc;
    }
    return 0;
}

int vs_merkle_frontier_push(struct vs_merkle_frontier *fr, const uint8_t leaf[VS_HASH_LEN],
                            vs_merkle_emit_fn emit, void *ctx)
{
    if (fr->size == UINT64_MAX)
        return -EOVERFLOW;
    uint8_t h[VS_HASH_LEN];
    memcpy(h, leaf, VS_HASH_LEN);
    uint64_t next = fr->size + 1;
    unsigned l = 0;
    while ((fr->size >> l) & 1) {
        vs_merkle_node(fr->h[l], h, h);
        l++;
        if (emit) {
            int rc = emit(ctx, l, (next >> l) - 1, h);
            if (rc)
                return rc;
        }
    }
    memcpy(fr->h[l], h, VS_HASH_LEN);
    fr->size = next;
    return 0;
}

void vs_merkle_frontier_root(const struct vs_merkle_frontier *fr, uint8_t out[VS_HASH_LEN])
{
    if (fr->size == 0) {
        vs_merkle_empty_root(out);
        return;
    }
    unsigned l = (unsigned)__builtin_ctzll(fr->size);
    uint8_t h[VS_HASH_LEN];
    memcpy(h, fr->h[l], VS_HASH_LEN);
    for (l++; l < 64; l++)
        if ((fr->size >> l) & 1)
            vs_merkle_node(fr->h[l], h, h);
    memcpy(out, h, VS_HASH_LEN);
}

/* ---- verification (RFC 9162) ------------------------------------------------- */

int vs_merkle_verify_inclusion(const uint8_t leaf[VS_HASH_LEN], uint64_t index, uint64_t size,
                               const uint8_t path[][VS_HASH_LEN], size_t n,
                               const uint8_t root[VS_HASH_LEN])
{
    if (leaf == NULL || root == NULL || (n > 0 && path == NULL))
        return -EINVAL;
    /* 1. leaf_index must be below tree_size. */
    if (index >= size || n > VS_AUDIT_MAX_PROOF)
        return -EINVAL;
    /* 2.-3. */
    uint64_t fn = index, sn = size - 1;
    uint8_t r[VS_HASH_LEN];
    memcpy(r, leaf, VS_HASH_LEN);
    /* 4. */
    for (size_t i = 0; i < n; i++) {
        if (sn == 0)
            return -EBADMSG;
        if ((fn & 1) || fn == sn) {
            vs_merkle_node(path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            vs_merkle_node(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    if (sn != 0 || sodium_memcmp(r, root, VS_HASH_LEN) != 0)
        return -EBADMSG;
    return 0;
}

int vs_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[VS_HASH_LEN],
                                 const uint8_t root2[VS_HASH_LEN],
                                 const uint8_t proof[][VS_HASH_LEN], size_t n)
{
    if (root1 == NULL || root2 == NULL || (n > 0 && proof == NULL))
        return -EINVAL;
    if (size1 > size2 || n > VS_AUDIT_MAX_PROOF)
        return -EINVAL;
    if (size1 == size2) {
        if (n != 0)
            return -EBADMSG;
        return sodium_memcmp(root1, root2, VS_HASH_LEN) == 0 ? 0 : -EBADMSG;
    }
    if (size1 == 0) {
        /* Every tree extends the empty one. */
        uint8_t empty[VS_HASH_LEN];
        vs_merkle_empty_root(empty);
        return n == 0 && sodium_memcmp(root1, empty, VS_HASH_LEN) == 0 ? 0 : -EBADMSG;
    }
    /* 1. An empty path cannot prove anything here. */
    if (n == 0)
        return -EBADMSG;
    /* 2. When size1 is a power of two, root1 is the first node of the path. */
    size_t i = 0;
    const uint8_t *first;
    if (is_pow2(size1)) {
        first = root1;
    } else {
        first = proof[0];
        i = 1;
    }
    /* 3.-4. */
    uint64_t fn = size1 - 1, sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    uint8_t fr[VS_HASH_LEN], sr[VS_HASH_LEN];
    memcpy(fr, first, VS_HASH_LEN);
    memcpy(sr, first, VS_HASH_LEN);
    /* 6. */
    for (; i < n; i++) {
        const uint8_t *c = proof[i];
        if (sn == 0)
            return -EBADMSG;
        if ((fn & 1) || fn == sn) {
            vs_merkle_node(c, fr, fr);
            vs_merkle_node(c, sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            vs_merkle_node(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 7. */
    if (sn != 0 || sodium_memcmp(fr, root1, VS_HASH_LEN) != 0 ||
        sodium_memcmp(sr, root2, VS_HASH_LEN) != 0)
        return -EBADMSG;
    return 0;
}
