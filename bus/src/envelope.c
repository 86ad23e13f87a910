/*
 * envelope.c - Ed25519-signed envelopes and the replay cache that goes
 * with them (contract: vs/envelope.h).
 *
 * Why this shape:
 *  - The signature covers a domain-separated encoding (see envelope.h) of
 *    the type, validity window, nonce and the body bytes exactly as they
 *    travel, so a verifier never re-serializes anything and a signature
 *    made for one message type or protocol can never be taken for another.
 *    The type is NUL-terminated inside the encoding, and every other field
 *    has a fixed length, so the encoding is unambiguous.
 *  - Verification runs from the cheapest and least stateful check to the
 *    most: structure, type, window, signature, signer policy, and only then
 *    the replay cache, so that nothing unauthenticated can occupy or probe
 *    the cache. Each step has its own errno so callers can audit precisely.
 *  - The replay cache remembers (signer, nonce) until the envelope's expiry
 *    plus the skew the verifier allowed, i.e. for as long as the envelope
 *    itself could still be accepted; after that the time checks reject it
 *    anyway. It is an open-addressing table (linear probing, load factor at
 *    most 1/2, backward-shift deletion so there are no tombstones) keyed
 *    with SipHash under a random per-cache key, so senders cannot craft
 *    colliding nonces; plus a binary min-heap on expiry so expired entries
 *    are dropped oldest first in O(log n) each. Capacity is fixed at
 *    creation: when it is full of live entries, verification fails closed
 *    with -ENOSPC rather than forgetting a nonce that could be replayed.
 *  - A cache is not thread-safe; each loop thread owns its own.
 *  - Nothing here logs; results are -errno codes.
 */
#include "vs/envelope.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/ids.h"

#define NS_PER_MS 1000000ULL
#define REPLAY_KEY_LEN (VS_SIGN_PUBLICKEY_LEN + VS_ENVELOPE_NONCE_LEN)
#define REPLAY_MAX_CAPACITY (1u << 24)

/* "vs.v1.envelope" and its terminating NUL start every signed encoding. */
static const char envelope_domain[] = "vs.v1.envelope";

/* ---- the signed encoding ---------------------------------------------------- */

static uint8_t *put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

/* Build the bytes the signature covers into a malloc'd buffer (*out,
 * *out_len). 0 or -ENOMEM (also when the length would overflow). */
static int signed_bytes(const char *body_type, uint64_t issued_ns, uint64_t expires_ns,
                        const uint8_t nonce[VS_ENVELOPE_NONCE_LEN], const uint8_t *body,
                        size_t body_len, uint8_t **out, size_t *out_len)
{
    size_t type_len = strlen(body_type);
    size_t fixed = sizeof envelope_domain + 1 + 8 + 8 + VS_ENVELOPE_NONCE_LEN;

    if (type_len > SIZE_MAX - fixed || body_len > SIZE_MAX - fixed - type_len) {
        return -ENOMEM;
    }
    size_t len = fixed + type_len + body_len;
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        return -ENOMEM;
    }
    uint8_t *p = buf;
    memcpy(p, envelope_domain, sizeof envelope_domain);
    p += sizeof envelope_domain;
    memcpy(p, body_type, type_len + 1);
    p += type_len + 1;
    p = put_be64(p, issued_ns);
    p = put_be64(p, expires_ns);
    memcpy(p, nonce, VS_ENVELOPE_NONCE_LEN);
    p += VS_ENVELOPE_NONCE_LEN;
    if (body_len > 0) {
        memcpy(p, body, body_len);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* ---- signing ---------------------------------------------------------------- */

/* Contract details: env is overwritten (not freed) and left empty on
 * failure. -EINVAL for NULL pointers, an empty body_type, or ttl_ms of 0 or
 * above VS_ENVELOPE_MAX_TTL_MS; -ENOMEM. */
VS_API int vs_envelope_sign(const vs_signkey *k, const char *body_type, const void *body,
                            size_t len, uint64_t ttl_ms, Vs__V1__SignedEnvelope *env)
{
    if (k == NULL || body_type == NULL || body_type[0] == '\0' || (body == NULL && len > 0) ||
        env == NULL || ttl_ms == 0 || ttl_ms > VS_ENVELOPE_MAX_TTL_MS) {
        return -EINVAL;
    }
    vs__v1__signed_envelope__init(env);
    env->issued_at_ns = vs_now_ns();
    env->expires_at_ns = env->issued_at_ns + ttl_ms * NS_PER_MS;
    env->body_type = strdup(body_type);
    env->body.data = len > 0 ? malloc(len) : NULL;
    env->signer.data = malloc(VS_SIGN_PUBLICKEY_LEN);
    env->nonce.data = malloc(VS_ENVELOPE_NONCE_LEN);
    env->signature.data = malloc(VS_SIGNATURE_LEN);
    if (env->body_type == NULL || (len > 0 && env->body.data == NULL) || env->signer.data == NULL ||
        env->nonce.data == NULL || env->signature.data == NULL) {
        vs_envelope_clear(env);
        return -ENOMEM;
    }
    env->body.len = len;
    env->signer.len = VS_SIGN_PUBLICKEY_LEN;
    env->nonce.len = VS_ENVELOPE_NONCE_LEN;
    env->signature.len = VS_SIGNATURE_LEN;
    if (len > 0) {
        memcpy(env->body.data, body, len);
    }
    memcpy(env->signer.data, vs_signkey_public(k), VS_SIGN_PUBLICKEY_LEN);
    randombytes_buf(env->nonce.data, VS_ENVELOPE_NONCE_LEN);

    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = signed_bytes(env->body_type, env->issued_at_ns, env->expires_at_ns, env->nonce.data,
                          env->body.data, len, &msg, &msg_len);
    if (rc == 0) {
        rc = vs_sign(k, msg, msg_len, env->signature.data);
        free(msg);
    }
    if (rc != 0) {
        vs_envelope_clear(env);
    }
    return rc;
}

/* Frees the fields vs_envelope_sign allocated and re-initializes env. Not
 * for envelopes from vs__v1__signed_envelope__unpack (use its free). NULL
 * is a no-op. */
VS_API void vs_envelope_clear(Vs__V1__SignedEnvelope *env)
{
    if (env == NULL) {
        return;
    }
    if (env->body_type != protobuf_c_empty_string) {
        free(env->body_type);
    }
    free(env->body.data);
    free(env->signer.data);
    free(env->nonce.data);
    free(env->signature.data);
    vs__v1__signed_envelope__init(env);
}

/* ---- the replay cache ------------------------------------------------------- */

struct replay_slot {
    uint8_t key[REPLAY_KEY_LEN]; /* signer || nonce */
    uint64_t hash;               /* SipHash of key; its low bits are the home slot */
    uint64_t until_ns;           /* forget the entry once now is past this */
    uint32_t heap_pos;           /* index of this slot in the heap */
    bool used;
};

struct vs_replay_cache {
    struct replay_slot *slots; /* mask + 1 of them, a power of two >= 2 * capacity */
    size_t mask;
    uint32_t *heap; /* slot indices, min-heap on slots[].until_ns */
    size_t count;
    size_t capacity;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
};

/* Contract details: capacity must be in [1, 2^24]; -EINVAL, -ENOMEM. */
VS_API int vs_replay_cache_new(size_t capacity, vs_replay_cache **out)
{
    if (out == NULL || capacity == 0 || capacity > REPLAY_MAX_CAPACITY) {
        return -EINVAL;
    }
    size_t table = 2;
    while (table < 2 * capacity) {
        table *= 2;
    }
    vs_replay_cache *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->slots = calloc(table, sizeof *c->slots);
    c->heap = calloc(capacity, sizeof *c->heap);
    if (c->slots == NULL || c->heap == NULL) {
        vs_replay_cache_free(c);
        return -ENOMEM;
    }
    c->mask = table - 1;
    c->capacity = capacity;
    crypto_shorthash_keygen(c->hash_key);
    *out = c;
    return 0;
}

/* NULL is a no-op. */
VS_API void vs_replay_cache_free(vs_replay_cache *c)
{
    if (c == NULL) {
        return;
    }
    free(c->slots);
    free(c->heap);
    free(c);
}

static uint64_t slot_until(const vs_replay_cache *c, size_t heap_pos)
{
    return c->slots[c->heap[heap_pos]].until_ns;
}

/* Exchange heap positions i and j, keeping the slots' back-pointers. */
static void heap_swap(vs_replay_cache *c, size_t i, size_t j)
{
    uint32_t t = c->heap[i];
    c->heap[i] = c->heap[j];
    c->heap[j] = t;
    c->slots[c->heap[i]].heap_pos = (uint32_t)i;
    c->slots[c->heap[j]].heap_pos = (uint32_t)j;
}

static void heap_up(vs_replay_cache *c, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (slot_until(c, parent) <= slot_until(c, i)) {
            break;
        }
        heap_swap(c, i, parent);
        i = parent;
    }
}

static void heap_down(vs_replay_cache *c, size_t i)
{
    for (;;) {
        size_t least = i;
        size_t left = 2 * i + 1;
        size_t right = left + 1;
        if (left < c->count && slot_until(c, left) < slot_until(c, least)) {
            least = left;
        }
        if (right < c->count && slot_until(c, right) < slot_until(c, least)) {
            least = right;
        }
        if (least == i) {
            return;
        }
        heap_swap(c, i, least);
        i = least;
    }
}

/* Remove the entry in slot s from the heap and the table. Backward-shift
 * deletion: later members of the probe run move up into the hole when
 * their home slot allows it, so lookups never need tombstones. */
static void replay_remove(vs_replay_cache *c, size_t s)
{
    size_t pos = c->slots[s].heap_pos;
    size_t last = --c->count;
    if (pos != last) {
        heap_swap(c, pos, last);
        heap_down(c, pos);
        heap_up(c, pos);
    }

    size_t hole = s;
    for (size_t j = (s + 1) & c->mask; c->slots[j].used; j = (j + 1) & c->mask) {
        size_t home = c->slots[j].hash & c->mask;
        /* Movable iff the hole lies cyclically within [home, j). */
        if (((j - home) & c->mask) >= ((j - hole) & c->mask)) {
            c->slots[hole] = c->slots[j];
            c->heap[c->slots[hole].heap_pos] = (uint32_t)hole;
            hole = j;
        }
    }
    memset(&c->slots[hole], 0, sizeof c->slots[hole]);
}

/* Record (signer, nonce) until until_ns after dropping entries expired at
 * now_ns. 0, -EALREADY (already recorded) or -ENOSPC (full of live ones). */
static int replay_admit(vs_replay_cache *c, const uint8_t *signer, const uint8_t *nonce,
                        uint64_t until_ns, uint64_t now_ns)
{
    while (c->count > 0 && slot_until(c, 0) < now_ns) {
        replay_remove(c, c->heap[0]);
    }

    uint8_t key[REPLAY_KEY_LEN];
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t hash = 0;
    memcpy(key, signer, VS_SIGN_PUBLICKEY_LEN);
    memcpy(key + VS_SIGN_PUBLICKEY_LEN, nonce, VS_ENVELOPE_NONCE_LEN);
    crypto_shorthash(h, key, sizeof key, c->hash_key);
    memcpy(&hash, h, sizeof hash);

    size_t i = hash & c->mask;
    for (; c->slots[i].used; i = (i + 1) & c->mask) {
        if (c->slots[i].hash == hash && memcmp(c->slots[i].key, key, sizeof key) == 0) {
            return -EALREADY;
        }
    }
    if (c->count == c->capacity) {
        return -ENOSPC;
    }
    struct replay_slot *s = &c->slots[i];
    memcpy(s->key, key, sizeof key);
    s->hash = hash;
    s->until_ns = until_ns;
    s->used = true;
    s->heap_pos = (uint32_t)c->count;
    c->heap[c->count++] = (uint32_t)i;
    heap_up(c, s->heap_pos);
    return 0;
}

/* ---- verification ------------------------------------------------------------ */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Contract details: -EINVAL when env or expected_type is NULL. replay may
 * be NULL (no replay protection: only for checks that are idempotent). A
 * verifier must use the same skew_ms for every call on one cache, since an
 * accepted nonce is remembered until expires_at + skew_ms. */
VS_API int vs_envelope_verify(const Vs__V1__SignedEnvelope *env, const char *expected_type,
                              uint64_t now_ns, uint64_t skew_ms, vs_replay_cache *replay,
                              vs_signer_ok_fn signer_ok, void *arg)
{
    if (env == NULL || expected_type == NULL) {
        return -EINVAL;
    }
    if (env->signer.len != VS_SIGN_PUBLICKEY_LEN || env->signer.data == NULL ||
        env->signature.len != VS_SIGNATURE_LEN || env->signature.data == NULL ||
        env->nonce.len != VS_ENVELOPE_NONCE_LEN || env->nonce.data == NULL ||
        env->body_type == NULL || env->body_type[0] == '\0' ||
        (env->body.len > 0 && env->body.data == NULL)) {
        return -EBADMSG;
    }
    if (strcmp(env->body_type, expected_type) != 0) {
        return -EPROTOTYPE;
    }

    uint64_t issued = env->issued_at_ns;
    uint64_t expires = env->expires_at_ns;
    uint64_t skew_ns = skew_ms > UINT64_MAX / NS_PER_MS ? UINT64_MAX : skew_ms * NS_PER_MS;
    if (expires <= issued || expires - issued > VS_ENVELOPE_MAX_TTL_MS * NS_PER_MS) {
        return -ETIME;
    }
    if (issued > sat_add(now_ns, skew_ns) || sat_add(expires, skew_ns) < now_ns) {
        return -ETIME;
    }

    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = signed_bytes(env->body_type, issued, expires, env->nonce.data, env->body.data,
                          env->body.len, &msg, &msg_len);
    if (rc != 0) {
        return rc;
    }
    rc = vs_verify(env->signer.data, msg, msg_len, env->signature.data);
    free(msg);
    if (rc != 0) {
        return -EBADMSG;
    }
    if (signer_ok != NULL && !signer_ok(env->signer.data, env->signer.len, arg)) {
        return -EKEYREJECTED;
    }
    if (replay != NULL) {
        return replay_admit(replay, env->signer.data, env->nonce.data, sat_add(expires, skew_ns),
                            now_ns);
    }
    return 0;
}
