/*
 * fuzz_envelope.c - libFuzzer target: a serialized vs.v1.SignedEnvelope
 * through unpack and vs_envelope_verify (vs/envelope.h), as sandboxd
 * receives agent commands.
 *
 * Every input is unpacked and verified as a "vs.v1.AgentCommand" at a
 * fixed now (FUZZ_NOW_NS, so that a crash reproduces) against a fresh
 * replay cache. The result must be one of the documented errors, and an
 * accepted envelope must behave: a second verification is -EALREADY, one
 * without a cache is 0 again, a refusing signer_ok gives -EKEYREJECTED and
 * a now past the window -ETIME. Envelopes of another type are verified
 * against their own body_type too, so the signature check is reached for
 * any type.
 *
 * Forgery check: at init an envelope is signed with a fixed key (an
 * Ed25519 seed written to a temporary key file and loaded) over fixed
 * times, nonce and body, following the encoding in envelope.h; its
 * serialized form is a seed, so the fuzzer mutates it. Any input that
 * verifies with that key as signer must carry exactly the signed fields of
 * the original (body_type, body, issued_at_ns, expires_at_ns, nonce,
 * signer), and the same signature; anything else is a forgery and aborts.
 *
 * Replay cache: an input that starts with "RPLY" also runs a sequence of
 * verifications of envelopes the harness signs with a second key, with
 * nonces and times taken from the input, against one small cache, and
 * compares every result with a model of the cache (see replay_scenario):
 * a holder of a registered key picks nonces and validity windows freely.
 *
 * VS_FUZZ_WRITE_SEEDS=<dir> writes the seeds (the original, envelopes of
 * a second key that verify, that are expired, not yet valid, of another
 * type, with too long a ttl, with a bad signature; two replay scenarios)
 * to dir and exits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "vs/envelope.h"
#include "vs/keys.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/common.pb-c.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EXPECTED_TYPE "vs.v1.AgentCommand"
#define FUZZ_NOW_NS 1700000000000000000ULL /* 2023-11-14T22:13:20Z */
#define FUZZ_SKEW_MS 30000ULL
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL

/* The original: signed by key_fixed, valid around FUZZ_NOW_NS. */
#define BASE_ISSUED (FUZZ_NOW_NS - 10 * NS_PER_S)
#define BASE_EXPIRES (FUZZ_NOW_NS + 300 * NS_PER_S)
#define BASE_NONCE 0x5a

/* Inputs that start with this run a replay cache scenario (see
 * replay_scenario), and are still tried as an envelope as well. */
#define REPLAY_MAGIC "RPLY"
#define REPLAY_CAP_MAX 8
#define REPLAY_OPS_MAX 24

static vs_signkey *key_fixed; /* signs the original */
static vs_signkey *key_other; /* signs the other seeds */
static uint8_t *base_wire;
static size_t base_len;
static Vs__V1__SignedEnvelope *base; /* base_wire unpacked */
static uint8_t *body_wire;           /* a packed AgentCommand, the original's body */
static size_t body_len;

static void die(const char *what, const Vs__V1__SignedEnvelope *env, int rc)
{
    fprintf(stderr, "fuzz_envelope: %s (rc %d, body_type \"%s\", body %zu bytes, issued %llu, "
                    "expires %llu)\n",
            what, rc, env->body_type ? env->body_type : "(null)", env->body.len,
            (unsigned long long)env->issued_at_ns, (unsigned long long)env->expires_at_ns);
    abort();
}

static bool bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool refuse_signer(const uint8_t *signer, size_t len, void *arg)
{
    (void)signer;
    (void)len;
    (void)arg;
    return false;
}

/* env was accepted as type at FUZZ_NOW_NS (with a cache when checked_replay):
 * check what else must hold for it. */
static void check_accepted(const Vs__V1__SignedEnvelope *env, const char *type,
                           vs_replay_cache *cache)
{
    int rc;

    if (bytes_eq(&env->signer, &base->signer) &&
        (strcmp(env->body_type, base->body_type) != 0 || !bytes_eq(&env->body, &base->body) ||
         env->issued_at_ns != base->issued_at_ns || env->expires_at_ns != base->expires_at_ns ||
         !bytes_eq(&env->nonce, &base->nonce))) {
        die("FORGERY: verifies with the fixed key but its signed fields differ", env, 0);
    }
    if (bytes_eq(&env->signer, &base->signer) && !bytes_eq(&env->signature, &base->signature)) {
        die("signature malleability: another signature verifies for the same fields", env, 0);
    }
    if (cache != NULL &&
        (rc = vs_envelope_verify(env, type, FUZZ_NOW_NS, FUZZ_SKEW_MS, cache, NULL, NULL)) !=
            -EALREADY) {
        die("replay not detected", env, rc);
    }
    if ((rc = vs_envelope_verify(env, type, FUZZ_NOW_NS, FUZZ_SKEW_MS, NULL, NULL, NULL)) != 0) {
        die("verification without a cache is not idempotent", env, rc);
    }
    if ((rc = vs_envelope_verify(env, type, FUZZ_NOW_NS, FUZZ_SKEW_MS, NULL, refuse_signer,
                                 NULL)) != -EKEYREJECTED) {
        die("signer_ok refused, but not -EKEYREJECTED", env, rc);
    }
    uint64_t skew_ns = FUZZ_SKEW_MS * NS_PER_MS;
    if (env->expires_at_ns < UINT64_MAX - skew_ns - 1 &&
        (rc = vs_envelope_verify(env, type, env->expires_at_ns + skew_ns + 1, FUZZ_SKEW_MS, NULL,
                                 NULL, NULL)) != -ETIME) {
        die("accepted after expiry plus skew", env, rc);
    }
}

/* ---- replay cache scenarios ------------------------------------------------------ */

static void sign_fields(const vs_signkey *k, const char *type, const uint8_t *body, size_t len,
                        uint64_t issued, uint64_t expires,
                        const uint8_t nonce[VS_ENVELOPE_NONCE_LEN], uint8_t sig[VS_SIGNATURE_LEN]);
static void fill_envelope(Vs__V1__SignedEnvelope *env, const vs_signkey *k, const char *type,
                          const uint8_t *body, size_t len, uint64_t issued, uint64_t expires,
                          uint8_t nonce[VS_ENVELOPE_NONCE_LEN], uint8_t sig[VS_SIGNATURE_LEN]);

/* A sequence of verifications of validly signed envelopes (key_other)
 * against one small replay cache, compared with a model of the cache's
 * contract: an entry lives until expires_at + skew, expired entries go
 * before a lookup, a nonce seen again is -EALREADY, a full cache -ENOSPC.
 * p (after the magic): byte 0 gives the capacity (1 + p[0] % 8), then 4
 * bytes per verification: nonce, issued_at as signed seconds from now,
 * ttl - 1 in seconds, seconds by which now advances first. An agent that
 * holds a key chooses all of these, so this is hostile input too. */
static void replay_scenario(const uint8_t *p, size_t n)
{
    struct {
        uint8_t nonce;
        uint64_t until;
    } model[REPLAY_CAP_MAX];
    const uint64_t skew = FUZZ_SKEW_MS * NS_PER_MS;
    uint64_t now = FUZZ_NOW_NS;
    size_t cap, count = 0;
    vs_replay_cache *cache = NULL;

    if (n < 1) {
        return;
    }
    cap = 1 + p[0] % REPLAY_CAP_MAX;
    if (vs_replay_cache_new(cap, &cache) != 0) {
        abort();
    }
    p++;
    n--;
    for (size_t op = 0; op < REPLAY_OPS_MAX && n >= 4; op++, p += 4, n -= 4) {
        uint8_t nonce[VS_ENVELOPE_NONCE_LEN] = {p[0]};
        uint8_t sig[VS_SIGNATURE_LEN] = {0};
        Vs__V1__SignedEnvelope env;
        uint64_t issued, expires;
        int expect, rc;

        now += p[3] * NS_PER_S;
        issued = now + (uint64_t)((int64_t)(int8_t)p[1] * (int64_t)NS_PER_S);
        expires = issued + (p[2] + 1ULL) * NS_PER_S;
        if (issued > now + skew || expires + skew < now) {
            expect = -ETIME; /* checked before the signature: none needed */
        } else {
            bool seen = false;
            for (size_t i = 0; i < count;) {
                if (model[i].until < now) {
                    model[i] = model[--count];
                } else {
                    seen |= model[i].nonce == p[0];
                    i++;
                }
            }
            if (seen) {
                expect = -EALREADY;
            } else if (count == cap) {
                expect = -ENOSPC;
            } else {
                model[count].nonce = p[0];
                model[count].until = expires + skew;
                count++;
                expect = 0;
            }
            sign_fields(key_other, EXPECTED_TYPE, NULL, 0, issued, expires, nonce, sig);
        }
        fill_envelope(&env, key_other, EXPECTED_TYPE, NULL, 0, issued, expires, nonce, sig);
        rc = vs_envelope_verify(&env, EXPECTED_TYPE, now, FUZZ_SKEW_MS, cache, NULL, NULL);
        if (rc != expect) {
            fprintf(stderr, "fuzz_envelope: replay op %zu (nonce %u, capacity %zu, %zu live): "
                            "rc %d, expected %d\n",
                    op, p[0], cap, count, rc, expect);
            die("the replay cache disagrees with its contract", &env, rc);
        }
    }
    vs_replay_cache_free(cache);
}

/* ---- the entry point --------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Vs__V1__SignedEnvelope *env = vs__v1__signed_envelope__unpack(NULL, size, data);
    vs_replay_cache *cache = NULL;
    int rc;

    if (size >= 4 && memcmp(data, REPLAY_MAGIC, 4) == 0) {
        replay_scenario(data + 4, size - 4);
    }
    if (env == NULL) {
        return 0;
    }
    if (vs_replay_cache_new(4, &cache) != 0) {
        abort();
    }
    rc = vs_envelope_verify(env, EXPECTED_TYPE, FUZZ_NOW_NS, FUZZ_SKEW_MS, cache, NULL, NULL);
    switch (rc) {
    case 0:
        check_accepted(env, EXPECTED_TYPE, cache);
        break;
    case -EBADMSG:
    case -ETIME:
        break;
    case -EPROTOTYPE:
        /* Verify it as what it claims to be, to reach the signature. */
        if (env->body_type == NULL || env->body_type[0] == '\0') {
            die("-EPROTOTYPE for an envelope without a type", env, rc);
        }
        rc = vs_envelope_verify(env, env->body_type, FUZZ_NOW_NS, FUZZ_SKEW_MS, NULL, NULL, NULL);
        if (rc == 0) {
            check_accepted(env, env->body_type, NULL);
        } else if (rc != -EBADMSG && rc != -ETIME) {
            die("unexpected result for its own type", env, rc);
        }
        break;
    default:
        die("unexpected result", env, rc);
    }
    vs_replay_cache_free(cache);
    vs__v1__signed_envelope__free_unpacked(env, NULL);
    return 0;
}

/* ---- init: keys, the original, seeds ------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);

    if (p == NULL) {
        abort();
    }
    return p;
}

/* A signing key from a fixed 32-byte seed, through a temporary key file. */
static vs_signkey *fixed_key(uint8_t fill)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    char b64[64];
    uint8_t seed[32];
    vs_signkey *k = NULL;
    int fd;

    for (size_t i = 0; i < sizeof seed; i++) {
        seed[i] = (uint8_t)(fill + i);
    }
    sodium_bin2base64(b64, sizeof b64, seed, sizeof seed, sodium_base64_VARIANT_ORIGINAL);
    snprintf(path, sizeof path, "%s/vs-fuzz-key-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    fd = mkstemp(path); /* mode 0600, as vs_signkey_load insists */
    if (fd < 0 || dprintf(fd, "# fuzz_envelope fixed key\n%s\n", b64) < 0 || close(fd) != 0 ||
        vs_signkey_load(path, &k) != 0) {
        perror("fuzz_envelope: fixed key");
        abort();
    }
    unlink(path);
    return k;
}

static uint8_t *put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

/* Sign the encoding documented in envelope.h with k (built here
 * independently of envelope.c, so that the fuzzer also checks that the
 * two agree). */
static void sign_fields(const vs_signkey *k, const char *type, const uint8_t *body, size_t len,
                        uint64_t issued, uint64_t expires,
                        const uint8_t nonce[VS_ENVELOPE_NONCE_LEN], uint8_t sig[VS_SIGNATURE_LEN])
{
    static const char domain[] = "vs.v1.envelope";
    size_t tlen = strlen(type);
    size_t mlen = sizeof domain + tlen + 1 + 8 + 8 + VS_ENVELOPE_NONCE_LEN + len;
    uint8_t *msg = xmalloc(mlen), *p = msg;

    memcpy(p, domain, sizeof domain);
    p += sizeof domain;
    memcpy(p, type, tlen + 1);
    p += tlen + 1;
    p = put_be64(p, issued);
    p = put_be64(p, expires);
    memcpy(p, nonce, VS_ENVELOPE_NONCE_LEN);
    p += VS_ENVELOPE_NONCE_LEN;
    if (len > 0) {
        memcpy(p, body, len);
    }
    if (vs_sign(k, msg, mlen, sig) != 0) {
        abort();
    }
    free(msg);
}

/* An envelope (pointing into its arguments) signed by k. */
static void fill_envelope(Vs__V1__SignedEnvelope *env, const vs_signkey *k, const char *type,
                          const uint8_t *body, size_t len, uint64_t issued, uint64_t expires,
                          uint8_t nonce[VS_ENVELOPE_NONCE_LEN], uint8_t sig[VS_SIGNATURE_LEN])
{
    vs__v1__signed_envelope__init(env);
    env->body_type = (char *)type;
    env->body.data = (uint8_t *)body;
    env->body.len = len;
    env->signer.data = (uint8_t *)vs_signkey_public(k);
    env->signer.len = VS_SIGN_PUBLICKEY_LEN;
    env->issued_at_ns = issued;
    env->expires_at_ns = expires;
    env->nonce.data = nonce;
    env->nonce.len = VS_ENVELOPE_NONCE_LEN;
    env->signature.data = sig;
    env->signature.len = VS_SIGNATURE_LEN;
}

/* A serialized envelope signed by k; flip_sig corrupts the signature. */
static uint8_t *make_envelope(const vs_signkey *k, const char *type, const uint8_t *body,
                              size_t len, uint64_t issued, uint64_t expires, uint8_t nonce_fill,
                              bool flip_sig, size_t *wire_len)
{
    uint8_t nonce[VS_ENVELOPE_NONCE_LEN];
    uint8_t sig[VS_SIGNATURE_LEN];
    Vs__V1__SignedEnvelope env;
    uint8_t *wire;

    memset(nonce, nonce_fill, sizeof nonce);
    sign_fields(k, type, body, len, issued, expires, nonce, sig);
    sig[0] ^= flip_sig ? 1 : 0;
    fill_envelope(&env, k, type, body, len, issued, expires, nonce, sig);
    *wire_len = vs__v1__signed_envelope__get_packed_size(&env);
    wire = xmalloc(*wire_len);
    vs__v1__signed_envelope__pack(&env, wire);
    return wire;
}

/* A packed AgentCommand (ping) for bodies. */
static uint8_t *make_body(size_t *len)
{
    Vs__V1__AgentCommand cmd = VS__V1__AGENT_COMMAND__INIT;
    Vs__V1__Ping ping = VS__V1__PING__INIT;
    static uint8_t id[16] = {0x01, 0x8b, 0xd0, 0x00, 0x00, 0x00, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    static uint8_t nonce[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t *p;

    ping.nonce.data = nonce;
    ping.nonce.len = sizeof nonce;
    cmd.type = VS__V1__COMMAND_TYPE__COMMAND_PING;
    cmd.command_id.data = id;
    cmd.command_id.len = sizeof id;
    cmd.sent_at_ns = FUZZ_NOW_NS;
    cmd.body_case = VS__V1__AGENT_COMMAND__BODY_PING;
    cmd.ping = &ping;
    *len = vs__v1__agent_command__get_packed_size(&cmd);
    p = xmalloc(*len);
    vs__v1__agent_command__pack(&cmd, p);
    return p;
}

static void write_seed(const char *dir, const char *name, uint8_t *wire, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(wire, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(wire);
}

static void write_seeds(const char *dir)
{
    const uint64_t now = FUZZ_NOW_NS, s = NS_PER_S;
    size_t len;
    uint8_t *w;

    w = xmalloc(base_len);
    memcpy(w, base_wire, base_len);
    write_seed(dir, "original", w, base_len);
    w = make_envelope(key_other, EXPECTED_TYPE, body_wire, body_len, now - s, now + 60 * s, 1,
                      false, &len);
    write_seed(dir, "other-key-valid", w, len);
    w = make_envelope(key_other, EXPECTED_TYPE, NULL, 0, now - s, now + s, 2, false, &len);
    write_seed(dir, "other-key-empty-body", w, len);
    w = make_envelope(key_other, "vs.v1.EscrowRelease", body_wire, body_len, now - s, now + s, 3,
                      false, &len);
    write_seed(dir, "other-type-valid", w, len);
    w = make_envelope(key_other, EXPECTED_TYPE, body_wire, body_len, now - 600 * s, now - 300 * s,
                      4, false, &len);
    write_seed(dir, "expired", w, len);
    w = make_envelope(key_other, EXPECTED_TYPE, body_wire, body_len, now + 600 * s, now + 900 * s,
                      5, false, &len);
    write_seed(dir, "not-yet-valid", w, len);
    w = make_envelope(key_other, EXPECTED_TYPE, body_wire, body_len, now - s,
                      now - s + VS_ENVELOPE_MAX_TTL_MS * NS_PER_MS + 1, 6, false, &len);
    write_seed(dir, "ttl-too-long", w, len);
    w = make_envelope(key_fixed, EXPECTED_TYPE, body_wire, body_len, BASE_ISSUED, BASE_EXPIRES,
                      BASE_NONCE, true, &len);
    write_seed(dir, "bad-signature", w, len);

    /* capacity 2: admit 1 and 2, replay 1, 3 finds it full; 60 s later
     * 1 and 2 have expired (ttl 10 s + skew 30 s) and 3 is admitted. */
    static const uint8_t replay_full[] = {'R', 'P', 'L', 'Y', 1,
                                          1, 0, 9, 0,   2, 0, 9, 0,   1, 0, 9, 1,
                                          3, 0, 9, 0,   3, 0, 9, 60,  1, 0, 9, 0};
    w = xmalloc(sizeof replay_full);
    memcpy(w, replay_full, sizeof replay_full);
    write_seed(dir, "replay-full-then-expired", w, sizeof replay_full);
    /* capacity 8: colliding probes, staggered expiry, future and past. */
    static const uint8_t replay_mix[] = {'R', 'P', 'L', 'Y', 7,
                                         16, 0, 200, 0,   32, 0, 5, 1,   48, 0xf0, 100, 0,
                                         64, 20, 50, 2,   80, 100, 10, 0,  96, 0x80, 0, 0,
                                         32, 0, 5, 40,    16, 0, 5, 0,    112, 0, 255, 100,
                                         48, 0, 1, 0,     128, 0, 3, 3,   144, 0, 3, 250};
    w = xmalloc(sizeof replay_mix);
    memcpy(w, replay_mix, sizeof replay_mix);
    write_seed(dir, "replay-mix", w, sizeof replay_mix);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("VS_FUZZ_WRITE_SEEDS");
    int rc = 0;

    (void)argc;
    (void)argv;
    if (vs_crypto_init() != 0) {
        abort();
    }
    key_fixed = fixed_key(0x01);
    key_other = fixed_key(0xa0);
    body_wire = make_body(&body_len);
    base_wire = make_envelope(key_fixed, EXPECTED_TYPE, body_wire, body_len, BASE_ISSUED,
                              BASE_EXPIRES, BASE_NONCE, false, &base_len);
    base = vs__v1__signed_envelope__unpack(NULL, base_len, base_wire);
    if (base == NULL) {
        abort();
    }
    /* The original verifies, exactly once per cache: otherwise the
     * encoding above and envelope.c disagree and the forgery check is void. */
    vs_replay_cache *cache = NULL;
    if (vs_replay_cache_new(4, &cache) != 0 ||
        (rc = vs_envelope_verify(base, EXPECTED_TYPE, FUZZ_NOW_NS, FUZZ_SKEW_MS, cache, NULL,
                                 NULL)) != 0) {
        die("the original does not verify", base, rc);
    }
    check_accepted(base, EXPECTED_TYPE, cache);
    vs_replay_cache_free(cache);

    /* And an envelope made by vs_envelope_sign verifies at its own time. */
    Vs__V1__SignedEnvelope signed_env;
    if (vs_envelope_sign(key_fixed, EXPECTED_TYPE, body_wire, body_len, 60000, &signed_env) != 0 ||
        (rc = vs_envelope_verify(&signed_env, EXPECTED_TYPE, signed_env.issued_at_ns, FUZZ_SKEW_MS,
                                 NULL, NULL, NULL)) != 0) {
        die("vs_envelope_sign made an envelope that does not verify", &signed_env, rc);
    }
    vs_envelope_clear(&signed_env);

    if (seeds != NULL && seeds[0] != '\0') {
        write_seeds(seeds);
        vs__v1__signed_envelope__free_unpacked(base, NULL);
        free(base_wire);
        free(body_wire);
        vs_signkey_free(key_fixed);
        vs_signkey_free(key_other);
        exit(0);
    }
    return 0;
}
