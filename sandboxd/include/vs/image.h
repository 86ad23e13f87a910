/*
 * image.h - the images a sandbox runs in: a root file system pinned by the
 * digest of its contents, signed by the operator with minisign, and
 * unpacked from an OCI image layout into a cache.
 *
 * A task names its image by content digest (ImageRef.digest in
 * proto/vs/v1/task.proto, with ImageRef.minisign_signature). The launcher
 * runs a task only in a tree whose contents hash to that digest, and only
 * when the digest is signed by a trusted key. The digest is of the tree
 * itself, not of a tarball or a manifest, so the same rootfs has one digest
 * however it was delivered (a directory copied over, or an OCI layout
 * unpacked here), and it is what an operator signs with the standard tool:
 *
 *     echo "sha256:<hex>" > digest.txt          # the digest and a newline
 *     minisign -S -s op.key -m digest.txt -t "image agents-py 2024-06"
 *
 * (minisign's default prehashed "ED" signatures; the legacy "Ed" format that
 * `minisign -S -l` still writes is verified too, but should not be used.)
 *
 * The content digest, precisely (so that it can be recomputed elsewhere):
 *
 *   digest  = "sha256:" || lowercase hex of SHA-256(stream)
 *   stream  = "vibeshield-rootfs-v1\n" || record(e) for every entry e of the
 *             tree below the root, in ascending byte-wise (strcmp, unsigned)
 *             order of path(e)
 *   record  = type || " " || mode || " " || path || "\0" || payload || "\0"
 *   type    = "d" directory | "f" regular file | "l" symbolic link
 *   mode    = st_mode & 07777 as exactly four octal digits ("%04o");
 *             always "0777" for a link (Linux links have no permissions)
 *   path    = the entry's path relative to the root: names joined by "/",
 *             no leading "/" or "./" (e.g. "usr/bin/env")
 *   payload = empty for a directory;
 *             for a file, its size in decimal (no leading zeros) || " " ||
 *             lowercase hex of SHA-256(contents);
 *             for a link, its target exactly as readlink(2) returns it
 *
 * For example, a tree holding only a directory "bin" (0755) with a file
 * "sh" (0755, the 3 bytes "hi\n") and a link "busybox" -> "sh" in it is the
 * stream
 *   "vibeshield-rootfs-v1\n"
 *   "d 0755 bin\0\0"
 *   "l 0777 bin/busybox\0sh\0"
 *   "f 0755 bin/sh\0" "3 " <64 hex digits of SHA-256("hi\n")> "\0"
 *
 * What is deliberately left out: the root directory's own mode (whoever
 * unpacks the image sets it), owners and groups (images are unpacked by
 * different users; the sandbox maps its own uid), times, extended
 * attributes and ACLs, and hard links (each name is recorded as a file of
 * its own). What is refused rather than recorded (-EPERM): device nodes,
 * fifos and sockets (the sandbox builds its own /dev; an image has no use
 * for them) and regular files with the setuid or setgid bit (nothing in a
 * sandbox may gain privileges; directories may carry setgid and sticky
 * bits, which are recorded). Symbolic links are recorded, never followed.
 *
 * All functions return 0 or a negative errno; none prints or exits. They
 * may be called from any thread (each initialises libsodium itself).
 */
#ifndef VS_IMAGE_H
#define VS_IMAGE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

/* "sha256:" + 64 hex digits + NUL. */
#define VS_IMAGE_DIGEST_LEN 72

/* Bounds of a tree the digest walks (beyond them: -E2BIG, -ELOOP). */
#define VS_IMAGE_MAX_ENTRIES (1u << 20)
#define VS_IMAGE_MAX_DEPTH 128

/* A minisign public key: its 8-byte key id (as stored, little-endian; shown
 * by minisign as 16 uppercase hex digits of the 64-bit number) and its
 * Ed25519 key. */
#define VS_MINISIGN_KEYID_LEN 8
#define VS_MINISIGN_PK_LEN 32
/* Longest trusted comment accepted (minisign's own limit), without NUL. */
#define VS_MINISIGN_COMMENT_MAX 1024

struct vs_minisign_key {
    uint8_t id[VS_MINISIGN_KEYID_LEN];
    uint8_t pk[VS_MINISIGN_PK_LEN];
};

/*
 * The content digest of the tree at dir (see the top of this file) into
 * out, e.g. "sha256:3a7b...". dir itself may be a symlink to the tree;
 * nothing below it is followed. -EPERM for a device node, fifo, socket or
 * setuid/setgid file anywhere in the tree, -E2BIG beyond
 * VS_IMAGE_MAX_ENTRIES entries, -ELOOP beyond VS_IMAGE_MAX_DEPTH levels,
 * -ENAMETOOLONG for a path or link target of PATH_MAX bytes or more,
 * -EAGAIN when a file changed while it was read, else the errno of the
 * failing open/read/stat. The result describes the tree as read: verify a
 * tree that nobody but the launcher can write to.
 */
VS_API int vs_image_digest_dir(const char *dir, char out[VS_IMAGE_DIGEST_LEN]);

/*
 * Parse a minisign public key from the NUL-terminated text: either the
 * .pub file (an "untrusted comment: ..." line, then the key line) or the
 * key line alone, as `minisign -P` takes it. The key line is base64 of
 * "Ed" || key id (8) || Ed25519 key (32); surrounding blank space and a
 * final newline are allowed, anything else is not. 0 or -EINVAL.
 */
VS_API int vs_minisign_key_parse(const char *text, struct vs_minisign_key *out);

/* The same from a file (at most 4 KiB). 0, -EINVAL, -EFBIG or -errno. */
VS_API int vs_minisign_key_load(const char *path, struct vs_minisign_key *out);

/*
 * Verify the minisign signature sig_text[0..sig_len) (a .minisig file:
 * "untrusted comment: ..." line, signature line, "trusted comment: ..."
 * line, global signature line; LF or CRLF) over msg[0..len) with key k.
 * The signature line is base64 of algorithm (2) || key id (8) || Ed25519
 * signature (64): algorithm "ED" signs BLAKE2b-512(msg) (minisign's
 * default), "Ed" signs msg itself (legacy, `minisign -l`). The global
 * signature signs signature (64) || the trusted comment's text.
 *
 * 0 when the key ids match and both signatures verify; -EBADMSG when they
 * do not (a different key included); -EINVAL when the text is malformed or
 * names another algorithm. On 0, when trusted_comment is not NULL, it
 * receives the trusted comment's text (NUL-terminated; -ERANGE, and no
 * copy, when it needs more than tc_size bytes).
 */
VS_API int vs_minisign_verify(const struct vs_minisign_key *k, const void *msg, size_t len,
                              const char *sig_text, size_t sig_len, char *trusted_comment,
                              size_t tc_size);

/*
 * The launcher's check before it runs anything in rootfs_dir: the minisign
 * signature sig_text[0..sig_len) must be by one of trusted[0..ntrusted)
 * (matched by key id) over the text expected_digest || "\n", and the tree's
 * content digest must equal expected_digest ("sha256:" + 64 lowercase hex).
 * The signature is checked first, so an unsigned request costs no hashing.
 *
 * 0 when both hold. Otherwise why (NUL-terminated, truncated to why_len;
 * may be NULL when why_len is 0) says what failed and the return is:
 *   -EBADMSG "signed by an untrusted key (id 6D477B0B95E51E19)"
 *   -EBADMSG "signature does not verify"
 *   -EBADMSG "digest mismatch: expected sha256:..., found sha256:..."
 *   -EINVAL  a malformed expected_digest or signature text
 *   any error of vs_image_digest_dir ("cannot hash <dir>: ...").
 */
VS_API int vs_image_verify(const char *rootfs_dir, const char *expected_digest,
                           const char *sig_text, size_t sig_len,
                           const struct vs_minisign_key *trusted, size_t ntrusted, char *why,
                           size_t why_len);

/*
 * Unpack the OCI image layout at layout_dir (oci-layout, index.json,
 * blobs/sha256/...) into the cache: the tree lands at
 *   <cache_dir>/<manifest digest hex>/rootfs
 * (cache_dir must exist) and its path goes to rootfs_out, made from the
 * canonical (realpath) form of cache_dir. When that directory already
 * exists it is reused untouched (a cache hit). Otherwise the image is built
 * in <cache_dir>/.tmp-<hex>-XXXXXX (mode 0700 while it is built) and
 * renamed to <hex> once complete, so a crash never leaves a half-unpacked
 * rootfs under the final name (stale .tmp-* directories may be removed
 * while no unpack runs); when a concurrent unpack of the same manifest wins
 * the rename, its tree is used. The <hex> and rootfs directories are made
 * 0755 so that the sandbox's unprivileged uid can reach the tree.
 *
 * The image: index.json must list exactly one manifest (an index with
 * several, or a nested index - a multi-platform image - is refused:
 * -ENOTSUP; copy a single platform, e.g. `skopeo copy --override-arch`).
 * Every blob (manifest, config, layers) must be a regular file whose size
 * and SHA-256 match its descriptor (-EBADMSG otherwise); only sha256
 * digests are accepted. Layers are media types
 * application/vnd.oci.image.layer.v1.tar and ...tar+gzip (others:
 * -ENOTSUP), applied in order with OCI whiteouts: before a layer is
 * extracted, each "<dir>/.wh.<name>" in it removes <dir>/<name> of the
 * layers below and each "<dir>/.wh..wh..opq" empties <dir>; whiteout
 * entries are never extracted.
 *
 * Refused (-EPERM, nothing left under the final name): a member with an
 * absolute path or a ".." component (hard-link targets included), or one
 * that would be written or linked through a symbolic link, wherever that
 * link points (libarchive's ARCHIVE_EXTRACT_SECURE_NODOTDOT and
 * _SECURE_SYMLINKS; the check of _SECURE_NOABSOLUTEPATHS is made here,
 * because libarchive writes relative to the process's working directory,
 * which a library may not change, so names are given to it below the
 * absolute path of the build directory). Docker would follow a lower
 * layer's symlink that stays inside the image; layers made by image
 * builders never need that, as they record resolved paths. A member
 * replaces what a lower layer had at its path (a file, a link, a whole
 * directory for a non-directory; hard links to a replaced file keep the
 * old contents); a directory listed again takes its new mode. Owners,
 * ACLs, extended attributes and file flags are not restored; setuid and
 * setgid bits are stripped; device nodes, fifos and sockets are skipped;
 * the root entry ("./") is skipped. Modes and times are restored. A
 * malformed layer gives -EINVAL; errors say what in why.
 *
 * digest_out, when not NULL, receives vs_image_digest_dir of the rootfs
 * (also on a cache hit, by hashing the cached tree again): that digest is
 * what is pinned and signed. A launcher that calls vs_image_verify on
 * rootfs_out next may pass NULL and hash the tree once.
 *
 * A layer that writes into a directory made read-only (e.g. 0555) by a
 * lower layer can only be unpacked by root (or with CAP_DAC_OVERRIDE).
 * libarchive reads the umask by setting it (to 0, then back) once per
 * layer: a file another thread creates at that instant escapes the umask.
 */
VS_API int vs_image_unpack_oci(const char *layout_dir, const char *cache_dir,
                               char rootfs_out[PATH_MAX], char digest_out[VS_IMAGE_DIGEST_LEN],
                               char *why, size_t why_len);

#endif
