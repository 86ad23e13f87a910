/*
 * test_crypto.c - unit tests of ids (ids.c), keys, key files, sealed boxes
 * and signatures (keys.c), and signed envelopes with their replay cache
 * (envelope.c).
 *
 * Every rejection is asserted with its exact errno: callers audit by
 * errno, so a check that fails for the wrong reason is a bug even when it
 * fails. Time-dependent envelope cases pass an explicit now_ns instead of
 * sleeping, so the suite is fast and deterministic. Key-file cases work in
 * a private mkdtemp directory that the fixture teardown removes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "vs/envelope.h"
#include "vs/ids.h"
#include "vs/keys.h"

#define MS 1000000ULL /* nanoseconds */
#define TYPE "vs.v1.Test"

/* ---- fixtures ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    return vs_crypto_init();
}

/* A fresh private directory for key files; *state is its path. */
static int dir_setup(void **state)
{
    char *dir = strdup("/tmp/vs-test-crypto-XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

/* Remove everything the test left in its directory, then the directory. */
static int dir_teardown(void **state)
{
    char *dir = *state;
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                (void)unlinkat(dirfd(d), de->d_name, 0);
            }
        }
        closedir(d);
    }
    int rc = rmdir(dir);
    free(dir);
    return rc;
}

static void path_in(void **state, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", (const char *)*state, name);
    assert_true(n > 0 && (size_t)n < size);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* ---- ids --------------------------------------------------------------------- */

static void test_id_time_and_order(void **state)
{
    (void)state;
    uint8_t a[VS_ID_LEN], b[VS_ID_LEN], c[VS_ID_LEN];

    uint64_t before = vs_now_ns() / MS;
    vs_id_new(a);
    uint64_t after = vs_now_ns() / MS;
    assert_true(vs_id_time_ms(a) >= before && vs_id_time_ms(a) <= after);

    struct timespec pause = {.tv_sec = 0, .tv_nsec = 3 * 1000 * 1000};
    assert_int_equal(nanosleep(&pause, NULL), 0);
    vs_id_new(b);
    assert_true(vs_id_time_ms(b) > vs_id_time_ms(a));
    assert_true(memcmp(a, b, VS_ID_LEN) < 0);

    /* Same millisecond or not, the random part keeps ids distinct. */
    vs_id_new(c);
    assert_memory_not_equal(b, c, VS_ID_LEN);

    uint64_t m0 = vs_mono_ms();
    assert_int_equal(nanosleep(&pause, NULL), 0);
    assert_true(vs_mono_ms() >= m0 + 3);
}

static void test_hex_round_trip(void **state)
{
    (void)state;
    uint8_t id[VS_ID_LEN], back[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN];

    vs_id_new(id);
    vs_hex(id, sizeof id, hex);
    assert_int_equal(strlen(hex), 2 * VS_ID_LEN);
    for (size_t i = 0; i < 2 * VS_ID_LEN; i++) {
        assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    }
    assert_int_equal(vs_unhex(hex, back, sizeof back), 0);
    assert_memory_equal(id, back, VS_ID_LEN);

    const uint8_t known[3] = {0x00, 0xab, 0xff};
    char khex[7];
    vs_hex(known, sizeof known, khex);
    assert_string_equal(khex, "00abff");
    uint8_t kback[3];
    assert_int_equal(vs_unhex("00ABff", kback, sizeof kback), 0);
    assert_memory_equal(known, kback, sizeof known);
}

static void test_unhex_rejects(void **state)
{
    (void)state;
    uint8_t out[4];
    const uint8_t untouched[4] = {1, 2, 3, 4};

    memcpy(out, untouched, sizeof out);
    assert_int_equal(vs_unhex("0011223", out, 4), -EINVAL);    /* short (odd) */
    assert_int_equal(vs_unhex("001122", out, 4), -EINVAL);     /* short */
    assert_int_equal(vs_unhex("0011223344", out, 4), -EINVAL); /* long */
    assert_int_equal(vs_unhex("0011223g", out, 4), -EINVAL);   /* not hex */
    assert_int_equal(vs_unhex("00112 33", out, 4), -EINVAL);   /* space */
    assert_int_equal(vs_unhex("-0112233", out, 4), -EINVAL);   /* sign */
    assert_int_equal(vs_unhex("", out, 4), -EINVAL);
    assert_memory_equal(out, untouched, sizeof out); /* nothing half-written */
}

/* ---- sealed boxes -------------------------------------------------------------- */

static void test_seal_round_trip(void **state)
{
    (void)state;
    vs_boxkey *k = NULL;
    const char msg[] = "the stream key of a blob";
    uint8_t sealed[sizeof msg + VS_SEAL_OVERHEAD];
    char opened[sizeof msg];

    assert_int_equal(vs_boxkey_new(&k), 0);
    assert_int_equal(vs_seal(vs_boxkey_public(k), msg, sizeof msg, sealed), 0);
    assert_int_equal(vs_unseal(k, sealed, sizeof sealed, (uint8_t *)opened), 0);
    assert_memory_equal(msg, opened, sizeof msg);
    vs_boxkey_free(k);
}

static void test_unseal_wrong_key(void **state)
{
    (void)state;
    vs_boxkey *k = NULL, *other = NULL;
    const char msg[] = "for k only";
    uint8_t sealed[sizeof msg + VS_SEAL_OVERHEAD];
    uint8_t opened[sizeof msg];

    assert_int_equal(vs_boxkey_new(&k), 0);
    assert_int_equal(vs_boxkey_new(&other), 0);
    assert_int_equal(vs_seal(vs_boxkey_public(k), msg, sizeof msg, sealed), 0);
    assert_int_equal(vs_unseal(other, sealed, sizeof sealed, opened), -EBADMSG);
    vs_boxkey_free(k);
    vs_boxkey_free(other);
}

static void test_unseal_tampered(void **state)
{
    (void)state;
    vs_boxkey *k = NULL;
    const char msg[] = "integrity matters";
    uint8_t sealed[sizeof msg + VS_SEAL_OVERHEAD];
    uint8_t opened[sizeof msg];

    assert_int_equal(vs_boxkey_new(&k), 0);
    assert_int_equal(vs_seal(vs_boxkey_public(k), msg, sizeof msg, sealed), 0);
    /* A flipped bit in the ephemeral key, the tag, or the ciphertext. */
    const size_t at[] = {0, 31, 32, 47, 48, sizeof sealed - 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        sealed[at[i]] ^= 0x01;
        assert_int_equal(vs_unseal(k, sealed, sizeof sealed, opened), -EBADMSG);
        sealed[at[i]] ^= 0x01;
    }
    assert_int_equal(vs_unseal(k, sealed, sizeof sealed - 1, opened), -EBADMSG); /* truncated */
    assert_int_equal(vs_unseal(k, sealed, VS_SEAL_OVERHEAD - 1, opened), -EBADMSG);
    assert_int_equal(vs_unseal(k, sealed, sizeof sealed, opened), 0);
    vs_boxkey_free(k);
}

/* ---- key files ------------------------------------------------------------------ */

static void test_boxkey_file_round_trip(void **state)
{
    char path[512];
    vs_boxkey *k = NULL, *loaded = NULL;
    struct stat st;

    path_in(state, "pool.key", path, sizeof path);
    assert_int_equal(vs_boxkey_new(&k), 0);
    assert_int_equal(vs_boxkey_save(k, path), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    assert_int_equal(vs_boxkey_load(path, &loaded), 0);
    assert_memory_equal(vs_boxkey_public(k), vs_boxkey_public(loaded), VS_BOX_PUBLICKEY_LEN);
    /* The secret half came back too: the loaded key opens k's boxes. */
    uint8_t sealed[4 + VS_SEAL_OVERHEAD], opened[4];
    assert_int_equal(vs_seal(vs_boxkey_public(k), "abcd", 4, sealed), 0);
    assert_int_equal(vs_unseal(loaded, sealed, sizeof sealed, opened), 0);
    assert_memory_equal(opened, "abcd", 4);

    /* Never overwritten, by either kind of key. */
    assert_int_equal(vs_boxkey_save(loaded, path), -EEXIST);
    vs_signkey *sk = NULL;
    assert_int_equal(vs_signkey_new(&sk), 0);
    assert_int_equal(vs_signkey_save(sk, path), -EEXIST);
    vs_signkey_free(sk);

    vs_boxkey_free(k);
    vs_boxkey_free(loaded);
}

static void test_signkey_file_round_trip(void **state)
{
    char path[512];
    vs_signkey *k = NULL, *loaded = NULL;
    uint8_t sig[VS_SIGNATURE_LEN];

    path_in(state, "agent.key", path, sizeof path);
    assert_int_equal(vs_signkey_new(&k), 0);
    assert_int_equal(vs_signkey_save(k, path), 0);
    assert_int_equal(vs_signkey_load(path, &loaded), 0);
    assert_memory_equal(vs_signkey_public(k), vs_signkey_public(loaded), VS_SIGN_PUBLICKEY_LEN);
    assert_int_equal(vs_sign(loaded, "msg", 3, sig), 0);
    assert_int_equal(vs_verify(vs_signkey_public(k), "msg", 3, sig), 0);
    assert_int_equal(vs_signkey_save(k, path), -EEXIST);
    vs_signkey_free(k);
    vs_signkey_free(loaded);
}

static void test_keyfile_permissions(void **state)
{
    char path[512];
    vs_boxkey *k = NULL, *loaded = NULL;
    vs_signkey *sloaded = NULL;

    path_in(state, "shared.key", path, sizeof path);
    assert_int_equal(vs_boxkey_new(&k), 0);
    assert_int_equal(vs_boxkey_save(k, path), 0);

    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(vs_boxkey_load(path, &loaded), -EPERM);
    assert_int_equal(vs_signkey_load(path, &sloaded), -EPERM);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(vs_boxkey_load(path, &loaded), -EPERM);
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(vs_boxkey_load(path, &loaded), -EPERM);
    assert_null(loaded);
    assert_null(sloaded);

    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(vs_boxkey_load(path, &loaded), 0);
    vs_boxkey_free(loaded);

    /* Never followed through a symlink, not even to a good file. */
    char link[512];
    path_in(state, "link.key", link, sizeof link);
    assert_int_equal(symlink(path, link), 0);
    loaded = NULL;
    assert_int_equal(vs_boxkey_load(link, &loaded), -ELOOP);
    assert_int_equal(vs_boxkey_save(k, link), -EEXIST);
    assert_null(loaded);

    char missing[512];
    path_in(state, "missing.key", missing, sizeof missing);
    assert_int_equal(vs_boxkey_load(missing, &loaded), -ENOENT);
    vs_boxkey_free(k);
}

static void test_keyfile_malformed(void **state)
{
    /* 32 zero bytes are "AAAA...A=" (43 A's and '='). */
    static const char *const bad[] = {
        "",
        "\n",
        "# only a comment\n",
        "not base64 at all\n",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n",   /* 31 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", /* 34 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",     /* padding missing */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",  /* trailing line */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \n",   /* trailing space */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "# unterminated comment",
    };
    char path[512];
    vs_boxkey *k = NULL;
    vs_signkey *s = NULL;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        (void)snprintf(name, sizeof name, "bad%zu.key", i);
        path_in(state, name, path, sizeof path);
        write_file(path, bad[i], 0600);
        assert_int_equal(vs_boxkey_load(path, &k), -EINVAL);
        assert_int_equal(vs_signkey_load(path, &s), -EINVAL);
    }
    assert_null(k);
    assert_null(s);

    /* Oversized: a valid key after a long comment block. */
    char big[2048];
    memset(big, '#', sizeof big);
    for (size_t i = 63; i < sizeof big; i += 64) {
        big[i] = '\n';
    }
    strcpy(big + sizeof big - 46, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
    path_in(state, "big.key", path, sizeof path);
    write_file(path, big, 0600);
    assert_int_equal(vs_boxkey_load(path, &k), -EINVAL);

    /* A directory is not a key file. */
    assert_int_equal(vs_boxkey_load((const char *)*state, &k), -EINVAL);

    /* The minimal well-formed file: one line, no comment, no newline. */
    path_in(state, "good.key", path, sizeof path);
    write_file(path, "# any comment\n# another\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0600);
    assert_int_equal(vs_boxkey_load(path, &k), 0);
    assert_int_equal(vs_signkey_load(path, &s), 0);
    vs_boxkey_free(k);
    vs_signkey_free(s);
}

/* ---- signatures ------------------------------------------------------------------- */

static void test_sign_verify(void **state)
{
    (void)state;
    vs_signkey *k = NULL, *other = NULL;
    uint8_t sig[VS_SIGNATURE_LEN];
    char msg[] = "escrow release 42";

    assert_int_equal(vs_signkey_new(&k), 0);
    assert_int_equal(vs_signkey_new(&other), 0);
    assert_int_equal(vs_sign(k, msg, sizeof msg, sig), 0);
    assert_int_equal(vs_verify(vs_signkey_public(k), msg, sizeof msg, sig), 0);
    assert_int_equal(vs_verify(vs_signkey_public(other), msg, sizeof msg, sig), -EBADMSG);
    msg[0] ^= 0x20;
    assert_int_equal(vs_verify(vs_signkey_public(k), msg, sizeof msg, sig), -EBADMSG);
    msg[0] ^= 0x20;
    sig[10] ^= 0x01;
    assert_int_equal(vs_verify(vs_signkey_public(k), msg, sizeof msg, sig), -EBADMSG);

    /* The empty message is a message too. */
    assert_int_equal(vs_sign(k, NULL, 0, sig), 0);
    assert_int_equal(vs_verify(vs_signkey_public(k), NULL, 0, sig), 0);
    vs_signkey_free(k);
    vs_signkey_free(other);
}

/* ---- envelopes ---------------------------------------------------------------------- */

struct env_fixture {
    vs_signkey *k;
    vs_signkey *other;
    vs_replay_cache *cache;
};

static int env_setup(void **state)
{
    struct env_fixture *f = calloc(1, sizeof *f);
    if (f == NULL || vs_signkey_new(&f->k) != 0 || vs_signkey_new(&f->other) != 0 ||
        vs_replay_cache_new(16, &f->cache) != 0) {
        return -1;
    }
    *state = f;
    return 0;
}

static int env_teardown(void **state)
{
    struct env_fixture *f = *state;
    vs_signkey_free(f->k);
    vs_signkey_free(f->other);
    vs_replay_cache_free(f->cache);
    free(f);
    return 0;
}

/* The signed encoding exactly as documented in envelope.h, built
 * independently of envelope.c. Returns a malloc'd buffer of *len bytes. */
static uint8_t *documented_encoding(const Vs__V1__SignedEnvelope *env, size_t *len)
{
    static const char domain[] = "vs.v1.envelope";
    size_t type_len = strlen(env->body_type);
    *len = sizeof domain + type_len + 1 + 8 + 8 + VS_ENVELOPE_NONCE_LEN + env->body.len;
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    uint8_t *p = buf;
    memcpy(p, domain, sizeof domain);
    p += sizeof domain;
    memcpy(p, env->body_type, type_len + 1);
    p += type_len + 1;
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(env->issued_at_ns >> (8 * i));
    }
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(env->expires_at_ns >> (8 * i));
    }
    memcpy(p, env->nonce.data, VS_ENVELOPE_NONCE_LEN);
    p += VS_ENVELOPE_NONCE_LEN;
    memcpy(p, env->body.data, env->body.len);
    return buf;
}

/* Make env (from vs_envelope_sign) a genuine envelope of k for its current
 * fields: lets a test build envelopes vs_envelope_sign would never make. */
static void resign(const vs_signkey *k, Vs__V1__SignedEnvelope *env)
{
    size_t len = 0;
    uint8_t *msg = documented_encoding(env, &len);
    memcpy(env->signer.data, vs_signkey_public(k), VS_SIGN_PUBLICKEY_LEN);
    assert_int_equal(vs_sign(k, msg, len, env->signature.data), 0);
    free(msg);
}

/* Sign "body" of TYPE with k for ttl_ms. */
static void sign_env(const vs_signkey *k, uint64_t ttl_ms, Vs__V1__SignedEnvelope *env)
{
    assert_int_equal(vs_envelope_sign(k, TYPE, "body", 4, ttl_ms, env), 0);
}

static void test_envelope_valid(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    sign_env(f->k, 60000, &env);
    assert_int_equal(env.signer.len, VS_SIGN_PUBLICKEY_LEN);
    assert_memory_equal(env.signer.data, vs_signkey_public(f->k), VS_SIGN_PUBLICKEY_LEN);
    assert_int_equal(env.nonce.len, VS_ENVELOPE_NONCE_LEN);
    assert_int_equal(env.signature.len, VS_SIGNATURE_LEN);
    assert_int_equal(env.expires_at_ns - env.issued_at_ns, 60000 * MS);
    assert_int_equal(vs_envelope_verify(&env, TYPE, vs_now_ns(), 0, f->cache, NULL, NULL), 0);

    /* The signature covers exactly the documented encoding. */
    size_t enc_len = 0;
    uint8_t *enc = documented_encoding(&env, &enc_len);
    assert_int_equal(vs_verify(env.signer.data, enc, enc_len, env.signature.data), 0);
    free(enc);

    /* As received from the wire: the body is verified as packed. */
    size_t len = vs__v1__signed_envelope__get_packed_size(&env);
    uint8_t *wire = malloc(len);
    assert_non_null(wire);
    assert_int_equal(vs__v1__signed_envelope__pack(&env, wire), len);
    Vs__V1__SignedEnvelope *rx = vs__v1__signed_envelope__unpack(NULL, len, wire);
    assert_non_null(rx);
    assert_int_equal(vs_envelope_verify(rx, TYPE, vs_now_ns(), 0, NULL, NULL, NULL), 0);
    vs__v1__signed_envelope__free_unpacked(rx, NULL);
    free(wire);

    /* An empty body is fine; signing refuses an unusable ttl or type. */
    Vs__V1__SignedEnvelope empty;
    assert_int_equal(vs_envelope_sign(f->k, TYPE, NULL, 0, 1000, &empty), 0);
    assert_int_equal(vs_envelope_verify(&empty, TYPE, vs_now_ns(), 0, f->cache, NULL, NULL), 0);
    vs_envelope_clear(&empty);
    assert_int_equal(vs_envelope_sign(f->k, TYPE, "x", 1, 0, &empty), -EINVAL);
    assert_int_equal(vs_envelope_sign(f->k, TYPE, "x", 1, VS_ENVELOPE_MAX_TTL_MS + 1, &empty),
                     -EINVAL);
    assert_int_equal(vs_envelope_sign(f->k, "", "x", 1, 1000, &empty), -EINVAL);
    vs_envelope_clear(&env);
}

static void test_envelope_malformed(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    sign_env(f->k, 60000, &env);
    uint64_t now = env.issued_at_ns;
    env.nonce.len--;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.nonce.len++;
    env.signer.len--;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.signer.len++;
    env.signature.len--;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.signature.len++;
    char *type = env.body_type;
    env.body_type = (char *)"";
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.body_type = type;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), 0);
    vs_envelope_clear(&env);
}

static void test_envelope_forged(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    /* Signed by other, but claiming to come from k. */
    sign_env(f->other, 60000, &env);
    memcpy(env.signer.data, vs_signkey_public(f->k), VS_SIGN_PUBLICKEY_LEN);
    assert_int_equal(vs_envelope_verify(&env, TYPE, vs_now_ns(), 0, f->cache, NULL, NULL),
                     -EBADMSG);
    vs_envelope_clear(&env);
}

static void test_envelope_modified(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    sign_env(f->k, 60000, &env);
    uint64_t now = env.issued_at_ns;
    env.body.data[0] ^= 0x01;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.body.data[0] ^= 0x01;
    env.body.len--;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.body.len++;
    env.nonce.data[3] ^= 0x80;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.nonce.data[3] ^= 0x80;
    env.expires_at_ns -= MS; /* still a valid window, but not the signed one */
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.expires_at_ns += MS;
    env.signature.data[63] ^= 0x40;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), -EBADMSG);
    env.signature.data[63] ^= 0x40;
    /* None of the rejected attempts consumed the nonce. */
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), 0);
    vs_envelope_clear(&env);
}

static void test_envelope_wrong_type(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    sign_env(f->k, 60000, &env);
    assert_int_equal(
        vs_envelope_verify(&env, "vs.v1.Other", vs_now_ns(), 0, f->cache, NULL, NULL),
        -EPROTOTYPE);
    assert_int_equal(vs_envelope_verify(&env, "vs.v1.Tes", vs_now_ns(), 0, f->cache, NULL, NULL),
                     -EPROTOTYPE);
    vs_envelope_clear(&env);
}

static void test_envelope_time_window(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;
    const uint64_t skew = 2000;

    sign_env(f->k, 10000, &env);
    uint64_t issued = env.issued_at_ns, expires = env.expires_at_ns;

    /* Expired: just past expiry plus skew; the edge itself is accepted. */
    assert_int_equal(vs_envelope_verify(&env, TYPE, expires + skew * MS + 1, skew, f->cache, NULL,
                                        NULL),
                     -ETIME);
    /* Not yet valid: issued more than skew in the future. */
    assert_int_equal(vs_envelope_verify(&env, TYPE, issued - skew * MS - 1, skew, f->cache, NULL,
                                        NULL),
                     -ETIME);
    assert_int_equal(vs_envelope_verify(&env, TYPE, issued - skew * MS, skew, f->cache, NULL, NULL),
                     0);
    assert_int_equal(
        vs_envelope_verify(&env, TYPE, expires + skew * MS, skew, NULL, NULL, NULL), 0);
    vs_envelope_clear(&env);
}

static void test_envelope_ttl_above_max(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    /* Genuinely signed by k, but valid for longer than allowed. */
    sign_env(f->k, 60000, &env);
    env.expires_at_ns = env.issued_at_ns + VS_ENVELOPE_MAX_TTL_MS * MS + 1;
    resign(f->k, &env);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.issued_at_ns, 0, f->cache, NULL, NULL),
                     -ETIME);
    /* An empty or inverted window. */
    env.expires_at_ns = env.issued_at_ns;
    resign(f->k, &env);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.issued_at_ns, 0, f->cache, NULL, NULL),
                     -ETIME);
    env.expires_at_ns = env.issued_at_ns - 1;
    resign(f->k, &env);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.issued_at_ns, 0, f->cache, NULL, NULL),
                     -ETIME);
    vs_envelope_clear(&env);

    /* The maximum itself is allowed. */
    assert_int_equal(vs_envelope_sign(f->k, TYPE, "b", 1, VS_ENVELOPE_MAX_TTL_MS, &env), 0);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.issued_at_ns, 0, f->cache, NULL, NULL), 0);
    vs_envelope_clear(&env);
}

static void test_envelope_replay(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env, again;

    sign_env(f->k, 60000, &env);
    uint64_t now = env.issued_at_ns;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, NULL, NULL), 0);
    assert_int_equal(vs_envelope_verify(&env, TYPE, now + MS, 0, f->cache, NULL, NULL), -EALREADY);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.expires_at_ns, 0, f->cache, NULL, NULL),
                     -EALREADY);
    /* Same body, fresh nonce: a different envelope. */
    sign_env(f->k, 60000, &again);
    assert_int_equal(vs_envelope_verify(&again, TYPE, again.issued_at_ns, 0, f->cache, NULL, NULL), 0);
    vs_envelope_clear(&again);
    /* The same nonce from another signer is not a replay of k's. */
    sign_env(f->other, 60000, &again);
    memcpy(again.nonce.data, env.nonce.data, VS_ENVELOPE_NONCE_LEN);
    resign(f->other, &again);
    assert_int_equal(vs_envelope_verify(&again, TYPE, again.issued_at_ns, 0, f->cache, NULL, NULL), 0);
    assert_int_equal(vs_envelope_verify(&again, TYPE, again.issued_at_ns, 0, f->cache, NULL, NULL), -EALREADY);
    vs_envelope_clear(&again);
    vs_envelope_clear(&env);
}

static void test_envelope_replay_forgotten_after_expiry(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;

    /* Accepted with no skew, the nonce is remembered until expires_at.
     * A verifier that tolerates more skew still accepts the envelope a
     * little later, by which time the cache has dropped the entry. */
    sign_env(f->k, 1000, &env);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.issued_at_ns, 0, f->cache, NULL, NULL), 0);
    assert_int_equal(vs_envelope_verify(&env, TYPE, env.expires_at_ns, 0, f->cache, NULL, NULL),
                     -EALREADY);
    assert_int_equal(
        vs_envelope_verify(&env, TYPE, env.expires_at_ns + MS, 5000, f->cache, NULL, NULL), 0);
    /* ... and is now remembered until expires_at + 5 s. */
    assert_int_equal(
        vs_envelope_verify(&env, TYPE, env.expires_at_ns + 5000 * MS, 5000, f->cache, NULL, NULL),
        -EALREADY);
    vs_envelope_clear(&env);
}

static void test_envelope_cache_full(void **state)
{
    struct env_fixture *f = *state;
    vs_replay_cache *small = NULL;
    Vs__V1__SignedEnvelope a, b, c;

    assert_int_equal(vs_replay_cache_new(0, &small), -EINVAL);
    assert_int_equal(vs_replay_cache_new(2, &small), 0);
    sign_env(f->k, 1000, &a);
    sign_env(f->k, 1000, &b);
    sign_env(f->k, 60000, &c);
    uint64_t now = c.issued_at_ns;
    assert_int_equal(vs_envelope_verify(&a, TYPE, now, 0, small, NULL, NULL), 0);
    assert_int_equal(vs_envelope_verify(&b, TYPE, now, 0, small, NULL, NULL), 0);
    /* Full of live nonces: fail closed, and keep failing. */
    assert_int_equal(vs_envelope_verify(&c, TYPE, now, 0, small, NULL, NULL), -ENOSPC);
    assert_int_equal(vs_envelope_verify(&c, TYPE, now + MS, 0, small, NULL, NULL), -ENOSPC);
    /* A replay is still recognized as such. */
    assert_int_equal(vs_envelope_verify(&a, TYPE, now, 0, small, NULL, NULL), -EALREADY);
    /* Once a and b have expired, their room is reclaimed. */
    uint64_t later = (a.expires_at_ns > b.expires_at_ns ? a.expires_at_ns : b.expires_at_ns) + 1;
    assert_int_equal(vs_envelope_verify(&c, TYPE, later, 0, small, NULL, NULL), 0);
    assert_int_equal(vs_envelope_verify(&c, TYPE, later, 0, small, NULL, NULL), -EALREADY);
    vs_envelope_clear(&a);
    vs_envelope_clear(&b);
    vs_envelope_clear(&c);
    vs_replay_cache_free(small);
}

/* Many envelopes with staggered expiries through a cache that keeps
 * evicting: exercises the table's deletion and the heap's order. */
static void test_envelope_cache_churn(void **state)
{
    struct env_fixture *f = *state;
    enum { N = 300, CAP = 128, STEP_MS = 10, TTL_MS = 1000 };
    static Vs__V1__SignedEnvelope env[N];
    vs_replay_cache *c = NULL;

    assert_int_equal(vs_replay_cache_new(CAP, &c), 0);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(vs_envelope_sign(f->k, TYPE, "b", 1, TTL_MS + STEP_MS * i, &env[i]), 0);
    }
    uint64_t start = vs_now_ns(); /* after every issued_at */
    for (size_t i = 0; i < N; i++) {
        uint64_t now = start + i * STEP_MS * MS;
        assert_int_equal(vs_envelope_verify(&env[i], TYPE, now, 0, c, NULL, NULL), 0);
        /* Every envelope still valid now is still remembered. */
        for (size_t j = 0; j <= i; j++) {
            int want = env[j].expires_at_ns >= now ? -EALREADY : -ETIME;
            assert_int_equal(vs_envelope_verify(&env[j], TYPE, now, 0, c, NULL, NULL), want);
        }
    }
    for (size_t i = 0; i < N; i++) {
        vs_envelope_clear(&env[i]);
    }
    vs_replay_cache_free(c);
}

struct signer_policy {
    const uint8_t *allowed;
    int calls;
};

static bool allow_only(const uint8_t *signer, size_t len, void *arg)
{
    struct signer_policy *p = arg;
    p->calls++;
    return len == VS_SIGN_PUBLICKEY_LEN && memcmp(signer, p->allowed, len) == 0;
}

static void test_envelope_signer_refused(void **state)
{
    struct env_fixture *f = *state;
    Vs__V1__SignedEnvelope env;
    struct signer_policy policy = {.allowed = vs_signkey_public(f->k), .calls = 0};

    sign_env(f->other, 60000, &env);
    uint64_t now = env.issued_at_ns;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, allow_only, &policy),
                     -EKEYREJECTED);
    assert_int_equal(policy.calls, 1);
    /* A refused envelope did not consume its nonce. */
    policy.allowed = vs_signkey_public(f->other);
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, allow_only, &policy), 0);
    /* The policy is only asked about authentic envelopes. */
    env.body.data[1] ^= 0x01;
    assert_int_equal(vs_envelope_verify(&env, TYPE, now, 0, f->cache, allow_only, &policy),
                     -EBADMSG);
    assert_int_equal(policy.calls, 2);
    vs_envelope_clear(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_time_and_order),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_unhex_rejects),
        cmocka_unit_test(test_seal_round_trip),
        cmocka_unit_test(test_unseal_wrong_key),
        cmocka_unit_test(test_unseal_tampered),
        cmocka_unit_test_setup_teardown(test_boxkey_file_round_trip, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_signkey_file_round_trip, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_permissions, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_malformed, dir_setup, dir_teardown),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test_setup_teardown(test_envelope_valid, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_malformed, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_forged, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_modified, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_wrong_type, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_time_window, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_ttl_above_max, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_replay, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_replay_forgotten_after_expiry, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_cache_full, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_cache_churn, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_signer_refused, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
