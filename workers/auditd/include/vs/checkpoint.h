/*
 * checkpoint.h - signed notes (https://c2sp.org/signed-note) and the
 * transparency-log checkpoints written in them
 * (https://c2sp.org/tlog-checkpoint), with Ed25519 keys from vs/keys.h.
 *
 * Why this format: a checkpoint is the one artifact of the audit log that
 * outsiders keep and compare, so it is written in the format the
 * transparency-log ecosystem already verifies (Go's sumdb/note, sigsum,
 * the transparency-dev witnesses): an operator can check our checkpoints
 * with standard tools, and our verifier checks theirs (the unit test
 * verifies a real sum.golang.org checkpoint).
 *
 *   note      = text "\n" signature-line...        (text ends in "\n")
 *   text      = origin "\n" size "\n" base64(root) "\n" [extension "\n"]...
 *   signature = "— " key-name " " base64(key-hash(4, BE) || Ed25519 sig(64)) "\n"
 *   key-hash  = SHA-256(key-name || "\n" || 0x01 || public key(32))[0:4]
 *   vkey      = key-name "+" hex(key-hash) "+" base64(0x01 || public key)
 *
 * Verification follows the note spec: signatures by keys the verifier does
 * not know (name and hash) are ignored; a signature by a known key that
 * does not verify rejects the whole note; a note with no verified signature
 * is rejected. The text is returned only through a successful open, so no
 * caller acts on unverified text by accident.
 *
 * Error codes (all functions return 0 or a negative errno):
 *   -EBADMSG       malformed note, signature line, vkey or checkpoint text
 *   -ENOKEY        no signature by any of the given keys
 *   -EKEYREJECTED  a signature by a given key does not verify (forged or
 *                  modified note)
 *   -EXDEV         a valid checkpoint, but of another log (origin differs)
 *   -EINVAL        bad arguments (NULL, invalid key name), -ENOMEM,
 *                  -ENOSPC (output buffer too small)
 * vs_checkpoint_strerror names them for people.
 */
#ifndef VS_CHECKPOINT_H
#define VS_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/keys.h"

#define VS_NOTE_MAX 16384           /* largest note accepted (the CHECKPOINTS stream's message limit) */
#define VS_NOTE_NAME_MAX 128        /* longest key name, in bytes */
#define VS_NOTE_MAX_SIGS 32         /* signature lines accepted in one note (the spec asks for >= 16) */
#define VS_NOTE_MAX_KEYS 64         /* verifier keys per open (the verified bit mask) */
#define VS_CHECKPOINT_ORIGIN_MAX 256
#define VS_CHECKPOINT_HASH_LEN 32
/* "name+xxxxxxxx+" base64(33 bytes) and a NUL */
#define VS_VKEY_MAX (VS_NOTE_NAME_MAX + 1 + 8 + 1 + 44 + 1)

/* A verifier key: who may sign (name, hash) and the public key. */
struct vs_vkey {
    char name[VS_NOTE_NAME_MAX + 1];
    uint32_t hash;
    uint8_t pk[VS_SIGN_PUBLICKEY_LEN];
};

/* A signing key with the name it signs under. */
struct vs_note_signer {
    const char *name;
    const vs_signkey *key;
};

/* One signature line as parsed (not verified). */
struct vs_note_sig {
    char name[VS_NOTE_NAME_MAX + 1];
    uint32_t hash;
};

/* A checkpoint's text fields. */
struct vs_checkpoint {
    char origin[VS_CHECKPOINT_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[VS_CHECKPOINT_HASH_LEN];
};

/* ---- keys ------------------------------------------------------------------------ */

/* True when name can name a key: 1..VS_NOTE_NAME_MAX bytes of valid UTF-8
 * without control characters, Unicode spaces or '+'. */
VS_API bool vs_note_name_valid(const char *name);
/* The 4-byte key hash of an Ed25519 key under name, as a big-endian number. */
VS_API uint32_t vs_note_key_hash(const char *name, const uint8_t pk[VS_SIGN_PUBLICKEY_LEN]);
/* Write the vkey of (name, pk) into out (VS_VKEY_MAX is enough). Returns
 * its length, -EINVAL (invalid name) or -ENOSPC. */
VS_API int vs_vkey_format(const char *name, const uint8_t pk[VS_SIGN_PUBLICKEY_LEN], char *out,
                          size_t size);
/* Parse a vkey (surrounding whitespace is not accepted). Rejects a hash
 * that does not match the name and key, and algorithms other than Ed25519
 * (0x01), with -EBADMSG. */
VS_API int vs_vkey_parse(const char *s, struct vs_vkey *out);
/* The vkey structure of a signing key (for a signer that also verifies). */
VS_API int vs_vkey_of(const char *name, const vs_signkey *k, struct vs_vkey *out);

/* ---- notes ----------------------------------------------------------------------- */

/* Sign text (len bytes: non-empty valid note text ending in "\n", no blank
 * last line) with each of the n signers, in order. *out gets the note,
 * malloc'd and NUL-terminated (caller frees), *out_len its length. */
VS_API int vs_note_sign(const char *text, size_t len, const struct vs_note_signer *signers,
                        size_t n, char **out, size_t *out_len);

/* Split a note without verifying anything: *text_len gets the length of
 * its text (a prefix of note), sigs (up to max) its signature lines and *n
 * their number. For displays and key discovery only: never act on the
 * text of a note that vs_note_open has not accepted. */
VS_API int vs_note_parse(const char *note, size_t len, size_t *text_len, struct vs_note_sig *sigs,
                         size_t max, size_t *n);

/* Verify a note against nkeys (<= VS_NOTE_MAX_KEYS) verifier keys. On
 * success *text_len (may be NULL) gets the length of the verified text and
 * *verified (may be NULL) has bit i set for each keys[i] whose signature
 * verified. Errors as described at the top. */
VS_API int vs_note_open(const char *note, size_t len, const struct vs_vkey *keys, size_t nkeys,
                        size_t *text_len, uint64_t *verified);

/* ---- checkpoints ----------------------------------------------------------------- */

/* The checkpoint text of c (no extension lines) into out. Returns its
 * length, -EINVAL (origin empty, too long or not a valid text line) or
 * -ENOSPC. */
VS_API int vs_checkpoint_text(const struct vs_checkpoint *c, char *out, size_t size);
/* Parse a checkpoint text (extension lines are allowed and ignored):
 * origin, decimal size without leading zeros, base64 of a 32-byte root. */
VS_API int vs_checkpoint_parse_text(const char *text, size_t len, struct vs_checkpoint *out);
/* Text of c signed by the signers (see vs_note_sign). */
VS_API int vs_checkpoint_sign(const struct vs_checkpoint *c, const struct vs_note_signer *signers,
                              size_t n, char **note, size_t *len);
/* vs_note_open, then parse the verified text into *out (may be NULL); when
 * origin is not NULL the checkpoint must be of that log (-EXDEV). */
VS_API int vs_checkpoint_open(const char *note, size_t len, const char *origin,
                              const struct vs_vkey *keys, size_t nkeys, struct vs_checkpoint *out,
                              uint64_t *verified);

/* A short explanation of an error code of this module. */
VS_API const char *vs_checkpoint_strerror(int rc);

#endif
