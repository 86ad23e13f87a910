/*
 * checkpoint.c - C2SP signed notes and tlog checkpoints (see checkpoint.h
 * for the formats and the error codes).
 *
 * The parser is written against the spec and against the behaviour of the
 * reference implementation (golang.org/x/mod/sumdb/note), because a note
 * that one verifier accepts and another rejects is a bug in both:
 *   - the whole note must be valid UTF-8 without control characters other
 *     than newline, end in a newline, and be at most VS_NOTE_MAX bytes;
 *   - the text ends at the last blank line; every line after it must be a
 *     well-formed signature line ("— name base64", decoding to at least 5
 *     bytes), or the note is malformed;
 *   - a line whose (name, key hash) matches a given key is verified, and a
 *     failure rejects the note; other lines are ignored;
 *   - base64 is the strict standard alphabet with padding (libsodium
 *     rejects non-canonical trailing bits, slightly stricter than Go).
 * Hashing and signatures come from libsodium and vs/keys.h; nothing here
 * keeps state, so every function is safe to call from any thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/checkpoint.h"

#define SIG_PREFIX "\xe2\x80\x94 " /* U+2014 EM DASH, space */
#define SIG_PREFIX_LEN 4
#define ALG_ED25519 0x01
#define KEY_HASH_LEN 4
#define SIG_LINE_MAX 8192          /* decoded signature bytes accepted per line */
#define ROOT_B64_LEN 44            /* base64 of 32 bytes */

/* ---- text rules ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (before end) and its code point;
 * 0 when invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    size_t n;
    uint32_t c;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        c = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        c = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        c = p[0] & 0x07u;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3fu);
    }
    if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
        (n == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    *cp = c;
    return n;
}

/* Go's unicode.IsSpace: the White_Space property. */
static bool unicode_space(uint32_t c)
{
    switch (c) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200a;
    }
}

/* Valid note bytes: UTF-8, no control character but newline. */
static bool valid_text(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    while (p < end) {
        uint32_t c;
        size_t n = utf8_next(p, end, &c);
        if (n == 0 || (c < 0x20 && c != '\n'))
            return false;
        p += n;
    }
    return true;
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > VS_NOTE_NAME_MAX)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    while (p < end) {
        uint32_t c;
        size_t n = utf8_next(p, end, &c);
        if (n == 0 || c < 0x20 || c == 0x7f || c == '+' || unicode_space(c))
            return false;
        p += n;
    }
    return true;
}

bool vs_note_name_valid(const char *name)
{
    return name != NULL && valid_name(name, strnlen(name, VS_NOTE_NAME_MAX + 1));
}

/* ---- keys ------------------------------------------------------------------------ */

static uint32_t key_hash(const char *name, size_t name_len, const uint8_t pk[VS_SIGN_PUBLICKEY_LEN])
{
    crypto_hash_sha256_state st;
    uint8_t h[crypto_hash_sha256_BYTES];
    const uint8_t sep[2] = {'\n', ALG_ED25519};
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, name_len);
    crypto_hash_sha256_update(&st, sep, sizeof(sep));
    crypto_hash_sha256_update(&st, pk, VS_SIGN_PUBLICKEY_LEN);
    crypto_hash_sha256_final(&st, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

uint32_t vs_note_key_hash(const char *name, const uint8_t pk[VS_SIGN_PUBLICKEY_LEN])
{
    return key_hash(name, strlen(name), pk);
}

int vs_vkey_format(const char *name, const uint8_t pk[VS_SIGN_PUBLICKEY_LEN], char *out,
                   size_t size)
{
    if (out == NULL || pk == NULL || !vs_note_name_valid(name))
        return -EINVAL;
    uint8_t key[1 + VS_SIGN_PUBLICKEY_LEN];
    key[0] = ALG_ED25519;
    memcpy(key + 1, pk, VS_SIGN_PUBLICKEY_LEN);
    char b64[64];
    sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, size, "%s+%08" PRIx32 "+%s", name, vs_note_key_hash(name, pk), b64);
    if (n < 0)
        return -EINVAL;
    return (size_t)n < size ? n : -ENOSPC;
}

int vs_vkey_parse(const char *s, struct vs_vkey *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    const char *plus1 = strchr(s, '+');
    const char *plus2 = plus1 != NULL ? strchr(plus1 + 1, '+') : NULL;
    if (plus1 == NULL || plus2 == NULL || plus2 - plus1 != 9)
        return -EBADMSG;
    size_t name_len = (size_t)(plus1 - s);
    if (!valid_name(s, name_len))
        return -EBADMSG;
    uint32_t hash = 0;
    for (const char *p = plus1 + 1; p < plus2; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            return -EBADMSG;
        hash = hash << 4 | (uint32_t)d;
    }
    uint8_t key[1 + VS_SIGN_PUBLICKEY_LEN];
    size_t key_len = 0;
    const char *b64 = plus2 + 1;
    if (sodium_base642bin(key, sizeof(key), b64, strlen(b64), NULL, &key_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        key_len != sizeof(key) || key[0] != ALG_ED25519)
        return -EBADMSG;
    if (key_hash(s, name_len, key + 1) != hash)
        return -EBADMSG;
    memcpy(out->name, s, name_len);
    out->name[name_len] = '\0';
    out->hash = hash;
    memcpy(out->pk, key + 1, VS_SIGN_PUBLICKEY_LEN);
    return 0;
}

int vs_vkey_of(const char *name, const vs_signkey *k, struct vs_vkey *out)
{
    if (k == NULL || out == NULL || !vs_note_name_valid(name))
        return -EINVAL;
    snprintf(out->name, sizeof(out->name), "%s", name);
    memcpy(out->pk, vs_signkey_public(k), VS_SIGN_PUBLICKEY_LEN);
    out->hash = vs_note_key_hash(name, out->pk);
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------ */

/* One parsed signature line; sig points into a buffer of the parser. */
struct sig_line {
    const char *name;
    size_t name_len;
    uint32_t hash;
    const uint8_t *sig;
    size_t sig_len;
};

typedef int (*sig_fn)(const struct sig_line *l, void *arg);

/* Check the note's framing, find its text and hand each signature line to
 * fn (stopping at its first non-zero return, which is returned). */
static int parse_note(const char *note, size_t len, size_t *text_len, sig_fn fn, void *arg)
{
    if (note == NULL)
        return -EINVAL;
    if (len == 0 || len > VS_NOTE_MAX || note[len - 1] != '\n' || !valid_text(note, len))
        return -EBADMSG;
    /* The text ends at the last blank line. */
    size_t sep = len;
    for (size_t i = len - 1; i > 0; i--) {
        if (note[i - 1] == '\n' && note[i] == '\n') {
            sep = i - 1;
            break;
        }
    }
    if (sep == len || sep + 2 >= len)
        return -EBADMSG; /* no blank line, or no signature after it */
    *text_len = sep + 1;

    uint8_t *buf = malloc(SIG_LINE_MAX);
    if (buf == NULL)
        return -ENOMEM;
    int rc = 0;
    size_t nsigs = 0;
    const char *p = note + sep + 2;
    const char *end = note + len;
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line_len = (size_t)(nl - p);
        if (++nsigs > VS_NOTE_MAX_SIGS || line_len < SIG_PREFIX_LEN ||
            memcmp(p, SIG_PREFIX, SIG_PREFIX_LEN) != 0) {
            rc = -EBADMSG;
            break;
        }
        const char *name = p + SIG_PREFIX_LEN;
        const char *space = memchr(name, ' ', (size_t)(nl - name));
        if (space == NULL || !valid_name(name, (size_t)(space - name)) || space + 1 == nl) {
            rc = -EBADMSG;
            break;
        }
        size_t sig_len = 0;
        if (sodium_base642bin(buf, SIG_LINE_MAX, space + 1, (size_t)(nl - space - 1), NULL,
                              &sig_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            sig_len < KEY_HASH_LEN + 1) {
            rc = -EBADMSG;
            break;
        }
        struct sig_line l = {
            .name = name,
            .name_len = (size_t)(space - name),
            .hash = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3],
            .sig = buf + KEY_HASH_LEN,
            .sig_len = sig_len - KEY_HASH_LEN,
        };
        rc = fn(&l, arg);
        p = nl + 1;
    }
    free(buf);
    return rc;
}

struct collect {
    struct vs_note_sig *sigs;
    size_t max, n;
};

static int collect_sig(const struct sig_line *l, void *arg)
{
    struct collect *c = arg;
    if (c->n < c->max) {
        memcpy(c->sigs[c->n].name, l->name, l->name_len);
        c->sigs[c->n].name[l->name_len] = '\0';
        c->sigs[c->n].hash = l->hash;
    }
    c->n++;
    return 0;
}

int vs_note_parse(const char *note, size_t len, size_t *text_len, struct vs_note_sig *sigs,
                  size_t max, size_t *n)
{
    struct collect c = {.sigs = sigs, .max = sigs != NULL ? max : 0};
    size_t tl = 0;
    int rc = parse_note(note, len, &tl, collect_sig, &c);
    if (rc < 0)
        return rc;
    if (text_len != NULL)
        *text_len = tl;
    if (n != NULL)
        *n = c.n;
    return 0;
}

struct verify {
    const char *text;
    size_t text_len;
    const struct vs_vkey *keys;
    size_t nkeys;
    uint64_t verified;
};

static int verify_sig(const struct sig_line *l, void *arg)
{
    struct verify *v = arg;
    for (size_t i = 0; i < v->nkeys; i++) {
        const struct vs_vkey *k = &v->keys[i];
        if (k->hash != l->hash || strlen(k->name) != l->name_len ||
            memcmp(k->name, l->name, l->name_len) != 0)
            continue;
        /* A known key: its signature must verify, or the note is rejected. */
        if (l->sig_len != VS_SIGNATURE_LEN ||
            vs_verify(k->pk, v->text, v->text_len, l->sig) != 0)
            return -EKEYREJECTED;
        v->verified |= UINT64_C(1) << i;
    }
    return 0;
}

int vs_note_open(const char *note, size_t len, const struct vs_vkey *keys, size_t nkeys,
                 size_t *text_len, uint64_t *verified)
{
    if (keys == NULL || nkeys == 0 || nkeys > VS_NOTE_MAX_KEYS)
        return -EINVAL;
    struct verify v = {.text = note, .keys = keys, .nkeys = nkeys};
    /* parse_note fills text_len before the first signature line. */
    int rc = parse_note(note, len, &v.text_len, verify_sig, &v);
    if (rc < 0)
        return rc;
    if (v.verified == 0)
        return -ENOKEY;
    if (text_len != NULL)
        *text_len = v.text_len;
    if (verified != NULL)
        *verified = v.verified;
    return 0;
}

/* ---- signing ------------------------------------------------------------------------ */

int vs_note_sign(const char *text, size_t len, const struct vs_note_signer *signers, size_t n,
                 char **out, size_t *out_len)
{
    if (text == NULL || signers == NULL || n == 0 || n > VS_NOTE_MAX_SIGS || out == NULL)
        return -EINVAL;
    if (len == 0 || text[len - 1] != '\n' || !valid_text(text, len))
        return -EINVAL;
    /* Each line: prefix, name, space, base64(68 bytes) = 92, newline. */
    size_t cap = len + 1;
    for (size_t i = 0; i < n; i++) {
        if (signers[i].key == NULL || !vs_note_name_valid(signers[i].name))
            return -EINVAL;
        cap += SIG_PREFIX_LEN + strlen(signers[i].name) + 1 + 92 + 1;
    }
    if (cap > VS_NOTE_MAX)
        return -EINVAL;
    char *note = malloc(cap + 1);
    if (note == NULL)
        return -ENOMEM;
    memcpy(note, text, len);
    size_t off = len;
    note[off++] = '\n';
    for (size_t i = 0; i < n; i++) {
        const uint8_t *pk = vs_signkey_public(signers[i].key);
        uint32_t h = vs_note_key_hash(signers[i].name, pk);
        uint8_t sig[KEY_HASH_LEN + VS_SIGNATURE_LEN] = {(uint8_t)(h >> 24), (uint8_t)(h >> 16),
                                                        (uint8_t)(h >> 8), (uint8_t)h};
        int rc = vs_sign(signers[i].key, text, len, sig + KEY_HASH_LEN);
        if (rc < 0) {
            free(note);
            return rc;
        }
        char b64[96];
        sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
        int w = snprintf(note + off, cap + 1 - off, SIG_PREFIX "%s %s\n", signers[i].name, b64);
        if (w < 0 || (size_t)w >= cap + 1 - off) {
            free(note);
            return -EINVAL;
        }
        off += (size_t)w;
    }
    note[off] = '\0';
    *out = note;
    if (out_len != NULL)
        *out_len = off;
    return 0;
}

/* ---- checkpoints ----------------------------------------------------------------- */

int vs_checkpoint_text(const struct vs_checkpoint *c, char *out, size_t size)
{
    if (c == NULL || out == NULL)
        return -EINVAL;
    size_t olen = strnlen(c->origin, sizeof(c->origin));
    if (olen == 0 || olen > VS_CHECKPOINT_ORIGIN_MAX || memchr(c->origin, '\n', olen) != NULL ||
        !valid_text(c->origin, olen))
        return -EINVAL;
    char b64[ROOT_B64_LEN + 1];
    sodium_bin2base64(b64, sizeof(b64), c->root, VS_CHECKPOINT_HASH_LEN,
                      sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, size, "%s\n%" PRIu64 "\n%s\n", c->origin, c->size, b64);
    if (n < 0)
        return -EINVAL;
    return (size_t)n < size ? n : -ENOSPC;
}

static int parse_size(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return -EBADMSG;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EBADMSG;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EBADMSG;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int vs_checkpoint_parse_text(const char *text, size_t len, struct vs_checkpoint *out)
{
    if (text == NULL || out == NULL)
        return -EINVAL;
    if (len == 0 || text[len - 1] != '\n' || !valid_text(text, len))
        return -EBADMSG;
    const char *lines[3];
    size_t lens[3];
    const char *p = text;
    const char *end = text + len;
    for (int i = 0; i < 3; i++) {
        if (p >= end)
            return -EBADMSG;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        lines[i] = p;
        lens[i] = (size_t)(nl - p);
        if (lens[i] == 0)
            return -EBADMSG;
        p = nl + 1;
    }
    /* Extension lines: allowed, ignored, but never empty. */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == p)
            return -EBADMSG;
        p = nl + 1;
    }
    struct vs_checkpoint c;
    if (lens[0] > VS_CHECKPOINT_ORIGIN_MAX || parse_size(lines[1], lens[1], &c.size) < 0)
        return -EBADMSG;
    memcpy(c.origin, lines[0], lens[0]);
    c.origin[lens[0]] = '\0';
    size_t root_len = 0;
    if (lens[2] != ROOT_B64_LEN ||
        sodium_base642bin(c.root, sizeof(c.root), lines[2], lens[2], NULL, &root_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        root_len != VS_CHECKPOINT_HASH_LEN)
        return -EBADMSG;
    *out = c;
    return 0;
}

int vs_checkpoint_sign(const struct vs_checkpoint *c, const struct vs_note_signer *signers,
                       size_t n, char **note, size_t *len)
{
    char text[VS_CHECKPOINT_ORIGIN_MAX + 96];
    int tl = vs_checkpoint_text(c, text, sizeof(text));
    if (tl < 0)
        return tl;
    return vs_note_sign(text, (size_t)tl, signers, n, note, len);
}

int vs_checkpoint_open(const char *note, size_t len, const char *origin,
                       const struct vs_vkey *keys, size_t nkeys, struct vs_checkpoint *out,
                       uint64_t *verified)
{
    size_t text_len = 0;
    uint64_t mask = 0;
    int rc = vs_note_open(note, len, keys, nkeys, &text_len, &mask);
    if (rc < 0)
        return rc;
    struct vs_checkpoint c;
    rc = vs_checkpoint_parse_text(note, text_len, &c);
    if (rc < 0)
        return rc;
    if (origin != NULL && strcmp(origin, c.origin) != 0)
        return -EXDEV;
    if (out != NULL)
        *out = c;
    if (verified != NULL)
        *verified = mask;
    return 0;
}

const char *vs_checkpoint_strerror(int rc)
{
    switch (rc) {
    case 0: return "ok";
    case -EBADMSG: return "malformed note or checkpoint";
    case -ENOKEY: return "not signed by any trusted key";
    case -EKEYREJECTED: return "bad signature by a trusted key (forged or modified)";
    case -EXDEV: return "checkpoint of another log (origin differs)";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -ENOSPC: return "buffer too small";
    default: return "unexpected error";
    }
}
