/*
 * keys.c - X25519 box keys and Ed25519 signing keys in guarded memory, their
 * files, sealed boxes and detached signatures (contract: vs/keys.h).
 *
 * Why this shape:
 *  - Secret halves live in sodium_malloc'd pages (guard pages, canary,
 *    mlock'd, wiped by sodium_free) and are made read-only as soon as they
 *    are filled, so a stray write cannot corrupt them. They are not toggled
 *    to no-access between uses: keys are shared by the loop and worker
 *    threads, and flipping page protection around each use would race.
 *    Public halves are plain memory inside the handle.
 *  - A key file holds only the 32-byte secret (the X25519 secret scalar or
 *    the Ed25519 seed) as one line of standard padded base64, after an
 *    optional block of "# ..." lines; the one this module writes names the
 *    kind and public key so an operator can tell files apart. The public
 *    key is always re-derived on load, never trusted from the file.
 *  - Files are created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (never
 *    overwritten, never through a symlink) and refused on load when group
 *    or other may access them. They are read through a fixed-size buffer
 *    that is wiped before returning, on every path.
 *  - Nothing here logs: errors are returned as -errno and there is no
 *    message that could carry key material.
 */
#include "vs/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define VS_SECRET_LEN 32 /* X25519 secret key, Ed25519 seed */
#define VS_B64_LEN sodium_base64_ENCODED_LEN(VS_SECRET_LEN, sodium_base64_VARIANT_ORIGINAL)
#define VS_KEYFILE_MAX 512 /* comments included; larger files are malformed */

_Static_assert(VS_BOX_PUBLICKEY_LEN == crypto_box_PUBLICKEYBYTES, "box public key size");
_Static_assert(VS_SECRET_LEN == crypto_box_SECRETKEYBYTES, "box secret key size");
_Static_assert(VS_SIGN_PUBLICKEY_LEN == crypto_sign_PUBLICKEYBYTES, "sign public key size");
_Static_assert(VS_SECRET_LEN == crypto_sign_SEEDBYTES, "sign seed size");
_Static_assert(VS_SIGNATURE_LEN == crypto_sign_BYTES, "signature size");
_Static_assert(VS_SEAL_OVERHEAD == crypto_box_SEALBYTES, "seal overhead");

struct vs_boxkey {
    uint8_t pk[VS_BOX_PUBLICKEY_LEN];
    unsigned char *sk; /* crypto_box_SECRETKEYBYTES, sodium_malloc, read-only */
};

struct vs_signkey {
    uint8_t pk[VS_SIGN_PUBLICKEY_LEN];
    unsigned char *sk; /* crypto_sign_SECRETKEYBYTES (seed || pk), sodium_malloc, read-only */
};

VS_API int vs_crypto_init(void)
{
    return sodium_init() < 0 ? -EIO : 0;
}

/* ---- key files ------------------------------------------------------------ */

/* Write all of buf to fd, retrying short writes and EINTR. 0 or -errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Create path (0600, exclusive, no symlink) holding secret as base64 after
 * a comment line naming kind and the base64 public key pk. 0 or -errno
 * (-EEXIST when path exists). A partially written file is removed. */
static int save_secret(const char *path, const char *kind, const uint8_t pk[VS_BOX_PUBLICKEY_LEN],
                       const unsigned char secret[VS_SECRET_LEN])
{
    char pk_b64[VS_B64_LEN];
    char sk_b64[VS_B64_LEN];
    char text[VS_KEYFILE_MAX];
    int rc = 0;

    if (path == NULL) {
        return -EINVAL;
    }
    sodium_bin2base64(pk_b64, sizeof pk_b64, pk, VS_BOX_PUBLICKEY_LEN, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(sk_b64, sizeof sk_b64, secret, VS_SECRET_LEN, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(text, sizeof text, "# vibeshield %s key, public %s\n%s\n", kind, pk_b64, sk_b64);
    sodium_memzero(sk_b64, sizeof sk_b64);

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = write_all(fd, text, (size_t)n);
    if (rc == 0 && fsync(fd) != 0) {
        rc = -errno;
    }
    if (close(fd) != 0 && rc == 0) {
        rc = -errno;
    }
    if (rc != 0) {
        (void)unlink(path);
    }
out:
    sodium_memzero(text, sizeof text);
    return rc;
}

/* Parse the key file text[0..len): any number of "#" lines, then one line
 * of base64 decoding to exactly VS_SECRET_LEN bytes, then an optional
 * newline and nothing else. Writes secret; 0 or -EINVAL. */
static int parse_secret(const char *text, size_t len, unsigned char secret[VS_SECRET_LEN])
{
    const char *p = text;
    const char *end = text + len;

    while (p < end && *p == '#') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            return -EINVAL;
        }
        p = nl + 1;
    }
    const char *line_end = memchr(p, '\n', (size_t)(end - p));
    if (line_end == NULL) {
        line_end = end;
    } else if (line_end + 1 != end) {
        return -EINVAL; /* something after the key line */
    }

    size_t bin_len = 0;
    const char *b64_end = NULL;
    if (sodium_base642bin(secret, VS_SECRET_LEN, p, (size_t)(line_end - p), NULL, &bin_len, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        b64_end != line_end || bin_len != VS_SECRET_LEN) {
        return -EINVAL;
    }
    return 0;
}

/* Read the secret stored in path into secret (guarded memory of the
 * caller). 0, -EPERM (group/other permission bits), -EINVAL (not a regular
 * file, too large, malformed) or -errno of open/read (-ELOOP: a symlink). */
static int load_secret(const char *path, unsigned char secret[VS_SECRET_LEN])
{
    char text[VS_KEYFILE_MAX + 1]; /* one extra byte detects an oversized file */
    size_t len = 0;
    struct stat st;
    int rc = 0;

    if (path == NULL) {
        return -EINVAL;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        rc = -EPERM;
        goto out;
    }
    while (len < sizeof text) {
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = -errno;
            goto out;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    rc = len > VS_KEYFILE_MAX ? -EINVAL : parse_secret(text, len, secret);
out:
    (void)close(fd);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* ---- box keys ------------------------------------------------------------- */

/* A handle with an unfilled, writable secret; NULL when out of memory. */
static vs_boxkey *boxkey_alloc(void)
{
    vs_boxkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        return NULL;
    }
    k->sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (k->sk == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

VS_API int vs_boxkey_new(vs_boxkey **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    vs_boxkey *k = boxkey_alloc();
    if (k == NULL) {
        return -ENOMEM;
    }
    if (crypto_box_keypair(k->pk, k->sk) != 0) {
        vs_boxkey_free(k);
        return -EINVAL;
    }
    (void)sodium_mprotect_readonly(k->sk);
    *out = k;
    return 0;
}

VS_API int vs_boxkey_load(const char *path, vs_boxkey **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    vs_boxkey *k = boxkey_alloc();
    if (k == NULL) {
        return -ENOMEM;
    }
    int rc = load_secret(path, k->sk);
    if (rc == 0 && crypto_scalarmult_base(k->pk, k->sk) != 0) {
        rc = -EINVAL;
    }
    if (rc != 0) {
        vs_boxkey_free(k);
        return rc;
    }
    (void)sodium_mprotect_readonly(k->sk);
    *out = k;
    return 0;
}

VS_API int vs_boxkey_save(const vs_boxkey *k, const char *path)
{
    if (k == NULL) {
        return -EINVAL;
    }
    return save_secret(path, "box", k->pk, k->sk);
}

VS_API const uint8_t *vs_boxkey_public(const vs_boxkey *k)
{
    return k->pk;
}

VS_API void vs_key_id(const uint8_t *public_key, size_t len, uint8_t out[VS_KEY_ID_LEN])
{
    uint8_t digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, public_key, len);
    memcpy(out, digest, VS_KEY_ID_LEN);
}

VS_API void vs_boxkey_free(vs_boxkey *k)
{
    if (k == NULL) {
        return;
    }
    sodium_free(k->sk);
    free(k);
}

/* Contract addition: NULL pointers (msg only when len > 0) give -EINVAL,
 * as does a public key libsodium refuses (a low-order point). */
VS_API int vs_seal(const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], const void *msg, size_t len,
                   uint8_t *out)
{
    if (recipient_pk == NULL || out == NULL || (msg == NULL && len > 0) ||
        len > SIZE_MAX - VS_SEAL_OVERHEAD) {
        return -EINVAL;
    }
    if (crypto_box_seal(out, msg != NULL ? msg : (const void *)"", len, recipient_pk) != 0) {
        return -EINVAL;
    }
    return 0;
}

VS_API int vs_box_public_parse(const char *hex, uint8_t out[VS_BOX_PUBLICKEY_LEN])
{
    size_t got = 0;
    if (hex == NULL || out == NULL || strlen(hex) != 2 * VS_BOX_PUBLICKEY_LEN ||
        sodium_hex2bin(out, VS_BOX_PUBLICKEY_LEN, hex, strlen(hex), NULL, &got, NULL) != 0 ||
        got != VS_BOX_PUBLICKEY_LEN)
        return -EINVAL;
    return 0;
}

VS_API bool vs_box_key_usable(const uint8_t *k, size_t len)
{
    uint8_t probe[VS_SEAL_OVERHEAD];
    return k != NULL && len == VS_BOX_PUBLICKEY_LEN && vs_seal(k, "", 0, probe) == 0;
}

/* Contract addition: NULL pointers give -EINVAL. */
VS_API int vs_unseal(const vs_boxkey *k, const uint8_t *sealed, size_t len, uint8_t *out)
{
    if (k == NULL || sealed == NULL || out == NULL) {
        return -EINVAL;
    }
    if (len < VS_SEAL_OVERHEAD || crypto_box_seal_open(out, sealed, len, k->pk, k->sk) != 0) {
        return -EBADMSG;
    }
    return 0;
}

/* ---- signing keys ----------------------------------------------------------- */

/* A handle with an unfilled, writable secret; NULL when out of memory. */
static vs_signkey *signkey_alloc(void)
{
    vs_signkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        return NULL;
    }
    k->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (k->sk == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

VS_API int vs_signkey_new(vs_signkey **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    vs_signkey *k = signkey_alloc();
    if (k == NULL) {
        return -ENOMEM;
    }
    if (crypto_sign_keypair(k->pk, k->sk) != 0) {
        vs_signkey_free(k);
        return -EINVAL;
    }
    (void)sodium_mprotect_readonly(k->sk);
    *out = k;
    return 0;
}

VS_API int vs_signkey_load(const char *path, vs_signkey **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    vs_signkey *k = signkey_alloc();
    unsigned char *seed = sodium_malloc(crypto_sign_SEEDBYTES);
    int rc = 0;

    if (k == NULL || seed == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = load_secret(path, seed);
    if (rc == 0 && crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0) {
        rc = -EINVAL;
    }
out:
    if (seed != NULL) {
        sodium_free(seed);
    }
    if (rc != 0) {
        vs_signkey_free(k);
        return rc;
    }
    (void)sodium_mprotect_readonly(k->sk);
    *out = k;
    return 0;
}

VS_API int vs_signkey_save(const vs_signkey *k, const char *path)
{
    if (k == NULL) {
        return -EINVAL;
    }
    /* libsodium's Ed25519 secret key is seed || public key: store the seed. */
    return save_secret(path, "sign", k->pk, k->sk);
}

VS_API const uint8_t *vs_signkey_public(const vs_signkey *k)
{
    return k->pk;
}

VS_API void vs_signkey_free(vs_signkey *k)
{
    if (k == NULL) {
        return;
    }
    sodium_free(k->sk);
    free(k);
}

/* 0, or -EINVAL for NULL pointers (msg only when len > 0). */
VS_API int vs_sign(const vs_signkey *k, const void *msg, size_t len, uint8_t sig[VS_SIGNATURE_LEN])
{
    if (k == NULL || sig == NULL || (msg == NULL && len > 0)) {
        return -EINVAL;
    }
    if (crypto_sign_detached(sig, NULL, msg != NULL ? msg : (const void *)"", len, k->sk) != 0) {
        return -EINVAL;
    }
    return 0;
}

/* Contract addition: NULL pointers give -EINVAL. */
VS_API int vs_verify(const uint8_t pk[VS_SIGN_PUBLICKEY_LEN], const void *msg, size_t len,
                     const uint8_t sig[VS_SIGNATURE_LEN])
{
    if (pk == NULL || sig == NULL || (msg == NULL && len > 0)) {
        return -EINVAL;
    }
    if (crypto_sign_verify_detached(sig, msg != NULL ? msg : (const void *)"", len, pk) != 0) {
        return -EBADMSG;
    }
    return 0;
}
