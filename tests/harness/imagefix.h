/*
 * imagefix.h - signed images for the tests of the sandbox's image module
 * (sandboxd/include/vs/image.h) and of the programs that use it: minisign
 * key pairs and signatures made with the real minisign tool, and OCI image
 * layouts (oci-layout, index.json, a manifest, a config and one tarball per
 * layer, each blob stored under its SHA-256) written with libarchive from a
 * list of members, which may be literal text or a host file such as a
 * static binary.
 *
 * Why here: the image module's unit test and the launcher daemon's
 * integration test both sign digests and build layouts, and a copy of the
 * layer writer per test would drift from the other (the unpacker's attack
 * cases - lying digests, "..", absolute names, links through a symlink -
 * are written with this one). Signing with the tool itself, not with a
 * reimplementation, checks the verifier against what operators really
 * produce. Every function here fails the test (cmocka) on error.
 */
#ifndef VS_TEST_IMAGEFIX_H
#define VS_TEST_IMAGEFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- minisign ------------------------------------------------------------------ */

#define VS_TEST_MINISIGN "/usr/bin/minisign"

/* Whether the minisign tool is installed; when it is not, says so (the
 * caller then skips the cases that sign). */
bool vs_test_minisign_present(void);

/* A key pair without a password: dir/<name>.pub and dir/<name>.key. */
struct vs_test_keypair {
    char *pub, *sec;
};

/* Make the pair with `minisign -G -W` (the files must not exist yet). */
void vs_test_keypair_make(const char *dir, const char *name, struct vs_test_keypair *kp);
void vs_test_keypair_free(struct vs_test_keypair *kp);

/* Sign file with `minisign -S` into sig_path, comment as the trusted
 * comment; legacy: a legacy ("Ed", not prehashed) signature (-l). Returns
 * the signature text, malloc'd. */
char *vs_test_sign_file(const struct vs_test_keypair *kp, const char *file, const char *sig_path,
                        bool legacy, const char *comment);

/* The signature vs_image_verify expects of an image digest
 * ("sha256:<64 hex>"): the text "<digest>\n" signed (prehashed) with
 * comment as the trusted comment. Its temporary files are made in dir and
 * removed again. Returns the signature text, malloc'd. */
char *vs_test_sign_digest(const struct vs_test_keypair *kp, const char *dir, const char *digest,
                          const char *comment);

/* ---- OCI layouts --------------------------------------------------------------- */

enum vs_test_member_kind {
    VS_MEMBER_FILE,      /* a regular file; data: its content */
    VS_MEMBER_DIR,       /* data: unused */
    VS_MEMBER_SYMLINK,   /* data: the link's target */
    VS_MEMBER_HARDLINK,  /* data: the name of the member it links to */
    VS_MEMBER_FIFO,      /* data: unused */
    VS_MEMBER_HOST_FILE, /* a regular file; data: the path of a host file whose content is
                            streamed into the layer (any size) */
};

/* One entry of a layer tarball, owned by 0:0 with a fixed mtime and the
 * mode as given (setuid and setgid bits too). */
struct vs_test_member {
    const char *name;
    enum vs_test_member_kind kind;
    mode_t mode;
    const char *data;
};

/* A layer: its members, gzip'd or plain tar; lie_digest: its descriptor
 * names another (well-formed) digest than the blob's, and the blob is
 * stored under that name. */
struct vs_test_layer {
    const struct vs_test_member *m;
    size_t n;
    bool gzip;
    bool lie_digest;
};

/* A layer of the members of an array (not a pointer), honest digest. */
#define VS_TEST_LAYER(members, gz)                                                                 \
    {                                                                                              \
        (members), sizeof(members) / sizeof((members)[0]), (gz), false                             \
    }

/* Write a layer tarball (pax, gzip'd when asked) of the n members to path. */
void vs_test_write_layer(const char *path, bool gzip, const struct vs_test_member *m, size_t n);

/* Move file into layout/blobs/sha256/<its sha256> and write its JSON
 * descriptor (media type media) into desc; lie_digest as in
 * struct vs_test_layer. */
void vs_test_add_blob(const char *layout, const char *file, const char *media, bool lie_digest,
                      char *desc, size_t desc_size);

/* A new OCI layout root/name (which must not exist) of one image with the
 * given layers, bottom first, and an amd64/linux config. Returns its path,
 * malloc'd. */
char *vs_test_make_layout(const char *root, const char *name, const struct vs_test_layer *layers,
                          size_t n);

#endif
