/*
 * image.c - image content digests, minisign verification and OCI image
 * layouts unpacked into a cache (contract and the digest's record format:
 * vs/image.h).
 *
 * Why this shape:
 *  - The digest walks the tree with directory descriptors only (openat,
 *    fstatat with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW), so a symlink below the
 *    root is a record and never a way out, and each file's mode and size
 *    come from fstat of the descriptor that is hashed: what is recorded is
 *    what was read. Entries are collected, then sorted by path and hashed,
 *    so the order is the documented one whatever readdir returns.
 *  - minisign needs no library: its formats are base64 around Ed25519 and
 *    BLAKE2b-512, both in libsodium (crypto_sign_verify_detached, and
 *    crypto_generichash with a 64-byte output).
 *  - An image is built in a private temporary directory and renamed into
 *    place whole: the final name only ever holds a complete tree.
 *  - Each layer is read from one descriptor, hashed first, then twice more:
 *    pass 1 removes what the layer hides or replaces in the layers below
 *    (whiteouts, and directories it replaces by something else), pass 2
 *    extracts the rest with an archive_write_disk of its own, closed before
 *    the next layer, so that libarchive's deferred directory modes and
 *    times are applied before a later layer could put a symlink on a path
 *    they name.
 *  - libarchive writes relative to the process's working directory, which
 *    a library in a threaded daemon must not change, so members are handed
 *    to it below the canonical absolute path of the build directory, after
 *    this file has refused absolute names and ".." itself; libarchive's
 *    SECURE_NODOTDOT and SECURE_SYMLINKS checks then cover the rest. The
 *    removals of pass 1 walk from the root's descriptor, one O_NOFOLLOW
 *    component at a time.
 */
#include "outcome.h"
#include "vs/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <sodium.h>

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN 7
#define HEX_LEN 64 /* SHA-256 in hex */
#define STREAM_MAGIC "vibeshield-rootfs-v1\n"
#define IO_CHUNK 65536
#define JSON_MAX (4u << 20) /* index.json, oci-layout, a manifest */
#define KEYFILE_MAX 4096
#define MS_SIG_LEN 64     /* Ed25519 */
#define MS_PREHASH_LEN 64 /* BLAKE2b-512 */
#define MS_SIGLINE_LEN (2 + VS_MINISIGN_KEYID_LEN + MS_SIG_LEN)
#define MS_KEYLINE_LEN (2 + VS_MINISIGN_KEYID_LEN + VS_MINISIGN_PK_LEN)
#define MS_UNTRUSTED "untrusted comment:"
#define MS_TRUSTED "trusted comment: "

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

_Static_assert(VS_IMAGE_DIGEST_LEN == DIGEST_PREFIX_LEN + HEX_LEN + 1, "digest text size");
_Static_assert(VS_MINISIGN_PK_LEN == crypto_sign_PUBLICKEYBYTES, "minisign key size");
_Static_assert(MS_SIG_LEN == crypto_sign_BYTES, "minisign signature size");
_Static_assert(MS_PREHASH_LEN == crypto_generichash_BYTES_MAX, "BLAKE2b-512");


static int init_sodium(void)
{
    return sodium_init() < 0 ? -EIO : 0;
}

/* Read all of fd into a SHA-256, giving the byte count. 0 or -errno. Not
 * inlined: its buffer must not sit in every frame of the recursive walk. */
__attribute__((noinline)) static int hash_fd(int fd, uint64_t *size,
                                             unsigned char out[crypto_hash_sha256_BYTES])
{
    crypto_hash_sha256_state st;
    unsigned char buf[IO_CHUNK];
    uint64_t total = 0;

    crypto_hash_sha256_init(&st);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
        total += (uint64_t)n;
    }
    crypto_hash_sha256_final(&st, out);
    *size = total;
    return 0;
}

/* "sha256:" + 64 lowercase hex digits, exactly. */
static bool digest_text_ok(const char *d)
{
    if (d == NULL || strncmp(d, DIGEST_PREFIX, DIGEST_PREFIX_LEN) != 0 ||
        strlen(d) != DIGEST_PREFIX_LEN + HEX_LEN) {
        return false;
    }
    for (const char *p = d + DIGEST_PREFIX_LEN; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* ---- the content digest -------------------------------------------------------- */

struct entry {
    char *path; /* relative to the root, malloc'd */
    char type;  /* 'd', 'f', 'l' */
    unsigned mode;
    uint64_t size;                               /* files */
    unsigned char sha[crypto_hash_sha256_BYTES]; /* files */
    char *target;                                /* links, malloc'd */
};

struct walk {
    struct entry *v;
    size_t n, cap;
};

static void walk_free(struct walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->v[i].path);
        free(w->v[i].target);
    }
    free(w->v);
}

/* Append *e (the walk takes its strings). 0, -E2BIG or -ENOMEM; on error
 * e's strings are freed. */
static int walk_push(struct walk *w, struct entry *e)
{
    if (w->n >= VS_IMAGE_MAX_ENTRIES) {
        free(e->path);
        free(e->target);
        return -E2BIG;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap == 0 ? 256 : w->cap * 2;
        struct entry *v = realloc(w->v, cap * sizeof *v);
        if (v == NULL) {
            free(e->path);
            free(e->target);
            return -ENOMEM;
        }
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = *e;
    return 0;
}

/* rel/name (name alone at the root), malloc'd; NULL with errno set. */
static char *join(const char *rel, const char *name)
{
    char buf[PATH_MAX];
    int n = rel[0] == '\0' ? snprintf(buf, sizeof buf, "%s", name)
                           : snprintf(buf, sizeof buf, "%s/%s", rel, name);
    if (n < 0 || (size_t)n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return strdup(buf);
}

/* The target of the link dfd/name, malloc'd into *out. Not inlined, like
 * hash_fd. */
__attribute__((noinline)) static int read_link(int dfd, const char *name, char **out)
{
    char target[PATH_MAX];
    ssize_t n = readlinkat(dfd, name, target, sizeof target);
    if (n < 0) {
        return -errno;
    }
    if ((size_t)n >= sizeof target) {
        return -ENAMETOOLONG;
    }
    target[n] = '\0';
    *out = strdup(target);
    return *out == NULL ? -ENOMEM : 0;
}

/* Call fn(dirfd, name, arg) for every entry of the directory fd but "."
 * and "..", until one returns nonzero (returned); takes fd. 0 or -errno. */
typedef int (*entry_fn)(int dirfd, const char *name, void *arg);
static int each_entry(int fd, entry_fn fn, void *arg)
{
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            rc = errno != 0 ? -errno : 0;
            break;
        }
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            (rc = fn(dirfd(d), de->d_name, arg)) != 0) {
            break;
        }
    }
    closedir(d);
    return rc;
}

static int walk_dir(int dfd, const char *rel, unsigned depth, struct walk *w);

/* Record dfd/name (path rel/name) and, for a directory, what it holds. */
static int walk_entry(int dfd, const char *rel, const char *name, unsigned depth, struct walk *w)
{
    struct stat st, fst;
    struct entry e = {0};

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return -errno;
    }
    if (!S_ISLNK(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        return -EPERM; /* device node, fifo or socket */
    }
    if (S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)) != 0) {
        return -EPERM;
    }
    e.path = join(rel, name);
    if (e.path == NULL) {
        return -errno;
    }

    if (S_ISLNK(st.st_mode)) {
        int rc = read_link(dfd, name, &e.target);
        if (rc != 0) {
            free(e.path);
            return rc;
        }
        e.type = 'l';
        e.mode = 0777;
        return walk_push(w, &e);
    }

    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                (S_ISDIR(st.st_mode) ? O_DIRECTORY : O_NOCTTY | O_NONBLOCK);
    int fd = openat(dfd, name, flags);
    if (fd < 0 || fstat(fd, &fst) != 0) {
        int rc = -errno;
        if (fd >= 0) {
            close(fd);
        }
        free(e.path);
        return rc;
    }
    if (fst.st_ino != st.st_ino || fst.st_dev != st.st_dev ||
        (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT) ||
        (S_ISREG(fst.st_mode) && (fst.st_mode & (S_ISUID | S_ISGID)) != 0)) {
        close(fd);
        free(e.path);
        return -EAGAIN; /* replaced since fstatat */
    }
    e.mode = (unsigned)(fst.st_mode & 07777);

    if (S_ISDIR(fst.st_mode)) {
        e.type = 'd';
        const char *path = e.path; /* stays valid: the walk owns the string now */
        int rc = walk_push(w, &e);
        if (rc != 0) {
            close(fd);
            return rc;
        }
        return walk_dir(fd, path, depth + 1, w);
    }

    e.type = 'f';
    int rc = hash_fd(fd, &e.size, e.sha);
    close(fd);
    if (rc == 0 && e.size != (uint64_t)fst.st_size) {
        rc = -EAGAIN; /* written to while it was read */
    }
    if (rc != 0) {
        free(e.path);
        return rc;
    }
    return walk_push(w, &e);
}

/* Where walk_dir is: the directory's path and depth, the walk. */
struct walk_at {
    const char *rel;
    unsigned depth;
    struct walk *w;
};

static int walk_one(int dfd, const char *name, void *arg)
{
    const struct walk_at *at = arg;
    return walk_entry(dfd, at->rel, name, at->depth, at->w);
}

/* Record everything below the directory dfd (path rel); takes dfd. */
static int walk_dir(int dfd, const char *rel, unsigned depth, struct walk *w)
{
    if (depth > VS_IMAGE_MAX_DEPTH) {
        close(dfd);
        return -ELOOP;
    }
    struct walk_at at = {rel, depth, w};
    return each_entry(dfd, walk_one, &at);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static void hash_str(crypto_hash_sha256_state *st, const char *s, bool with_nul)
{
    crypto_hash_sha256_update(st, (const unsigned char *)s, strlen(s) + (with_nul ? 1 : 0));
}

VS_API int vs_image_digest_dir(const char *dir, char out[VS_IMAGE_DIGEST_LEN])
{
    struct walk w = {0};
    int rc = init_sodium();
    if (rc != 0) {
        return rc;
    }
    if (dir == NULL || out == NULL) {
        return -EINVAL;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    rc = walk_dir(fd, "", 0, &w);
    if (rc == 0) {
        if (w.n > 1) {
            qsort(w.v, w.n, sizeof *w.v, entry_cmp);
        }
        crypto_hash_sha256_state st;
        unsigned char sum[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_init(&st);
        hash_str(&st, STREAM_MAGIC, false);
        for (size_t i = 0; i < w.n; i++) {
            const struct entry *e = &w.v[i];
            char head[16], hex[HEX_LEN + 1], payload[48 + HEX_LEN];
            snprintf(head, sizeof head, "%c %04o ", e->type, e->mode);
            hash_str(&st, head, false);
            hash_str(&st, e->path, true);
            if (e->type == 'l') {
                hash_str(&st, e->target, true);
            } else if (e->type == 'f') {
                sodium_bin2hex(hex, sizeof hex, e->sha, sizeof e->sha);
                snprintf(payload, sizeof payload, "%" PRIu64 " %s", e->size, hex);
                hash_str(&st, payload, true);
            } else {
                hash_str(&st, "", true);
            }
        }
        crypto_hash_sha256_final(&st, sum);
        memcpy(out, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
        sodium_bin2hex(out + DIGEST_PREFIX_LEN, HEX_LEN + 1, sum, sizeof sum);
    }
    walk_free(&w);
    return rc;
}

/* ---- minisign -------------------------------------------------------------------- */

/* The next line of [*p, end) into [*line, *line_end), without its "\n" or
 * "\r\n"; advances *p. false at the end of the text. */
static bool next_line(const char **p, const char *end, const char **line, const char **line_end)
{
    if (*p >= end) {
        return false;
    }
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *le = nl != NULL ? nl : end;
    *line = *p;
    *p = nl != NULL ? nl + 1 : end;
    if (le > *line && le[-1] == '\r') {
        le--;
    }
    *line_end = le;
    return true;
}

/* Decode the base64 [b, e) into exactly len bytes. */
static bool b64_exact(const char *b, const char *e, unsigned char *out, size_t len)
{
    size_t got = 0;
    const char *stop = NULL;
    return sodium_base642bin(out, len, b, (size_t)(e - b), NULL, &got, &stop,
                             sodium_base64_VARIANT_ORIGINAL) == 0 &&
           stop == e && got == len;
}

static bool only_space(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            return false;
        }
    }
    return true;
}

VS_API int vs_minisign_key_parse(const char *text, struct vs_minisign_key *out)
{
    if (text == NULL || out == NULL) {
        return -EINVAL;
    }
    const char *p = text;
    const char *end = text + strlen(text);
    while (p < end && only_space(p, p + 1)) {
        p++;
    }
    const char *line, *line_end;
    if (!next_line(&p, end, &line, &line_end)) {
        return -EINVAL;
    }
    if ((size_t)(line_end - line) >= strlen(MS_UNTRUSTED) &&
        memcmp(line, MS_UNTRUSTED, strlen(MS_UNTRUSTED)) == 0 &&
        !next_line(&p, end, &line, &line_end)) {
        return -EINVAL;
    }
    while (line_end > line && (line_end[-1] == ' ' || line_end[-1] == '\t')) {
        line_end--;
    }
    unsigned char bin[MS_KEYLINE_LEN];
    if (!only_space(p, end) || !b64_exact(line, line_end, bin, sizeof bin) || bin[0] != 'E' ||
        bin[1] != 'd') {
        return -EINVAL;
    }
    memcpy(out->id, bin + 2, VS_MINISIGN_KEYID_LEN);
    memcpy(out->pk, bin + 2 + VS_MINISIGN_KEYID_LEN, VS_MINISIGN_PK_LEN);
    return 0;
}

VS_API int vs_minisign_key_load(const char *path, struct vs_minisign_key *out)
{
    char text[KEYFILE_MAX + 1]; /* one byte more tells a file that is too long */
    size_t len = 0;

    if (path == NULL) {
        return -EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return -errno;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        len += (size_t)n;
        if (n == 0 || len == sizeof text) {
            break;
        }
    }
    close(fd);
    if (len > KEYFILE_MAX) {
        return -EFBIG;
    }
    if (memchr(text, '\0', len) != NULL) {
        return -EINVAL;
    }
    text[len] = '\0';
    return vs_minisign_key_parse(text, out);
}

/* A parsed .minisig; tc points into the text it was parsed from. */
struct msig {
    unsigned char alg[2];
    unsigned char id[VS_MINISIGN_KEYID_LEN];
    unsigned char sig[MS_SIG_LEN];
    const char *tc;
    size_t tc_len;
    unsigned char global[MS_SIG_LEN];
};

static int msig_parse(const char *text, size_t len, struct msig *s)
{
    const char *p = text, *end = text + len;
    const char *l, *le;
    unsigned char bin[MS_SIGLINE_LEN];

    if (text == NULL) {
        return -EINVAL;
    }
    if (!next_line(&p, end, &l, &le) || (size_t)(le - l) < strlen(MS_UNTRUSTED) ||
        memcmp(l, MS_UNTRUSTED, strlen(MS_UNTRUSTED)) != 0) {
        return -EINVAL;
    }
    if (!next_line(&p, end, &l, &le) || !b64_exact(l, le, bin, sizeof bin) || bin[0] != 'E' ||
        (bin[1] != 'D' && bin[1] != 'd')) {
        return -EINVAL;
    }
    memcpy(s->alg, bin, 2);
    memcpy(s->id, bin + 2, VS_MINISIGN_KEYID_LEN);
    memcpy(s->sig, bin + 2 + VS_MINISIGN_KEYID_LEN, MS_SIG_LEN);
    if (!next_line(&p, end, &l, &le) || (size_t)(le - l) < strlen(MS_TRUSTED) ||
        memcmp(l, MS_TRUSTED, strlen(MS_TRUSTED)) != 0) {
        return -EINVAL;
    }
    s->tc = l + strlen(MS_TRUSTED);
    s->tc_len = (size_t)(le - s->tc);
    if (s->tc_len > VS_MINISIGN_COMMENT_MAX || memchr(s->tc, '\0', s->tc_len) != NULL) {
        return -EINVAL;
    }
    if (!next_line(&p, end, &l, &le) || !b64_exact(l, le, s->global, sizeof s->global) ||
        !only_space(p, end)) {
        return -EINVAL;
    }
    return 0;
}

/* 0 when s is k's signature of msg and of its trusted comment, else -EBADMSG. */
static int msig_check(const struct vs_minisign_key *k, const struct msig *s, const void *msg,
                      size_t len)
{
    unsigned char prehash[MS_PREHASH_LEN];
    unsigned char global_msg[MS_SIG_LEN + VS_MINISIGN_COMMENT_MAX];
    int bad;

    if (memcmp(k->id, s->id, VS_MINISIGN_KEYID_LEN) != 0) {
        return -EBADMSG;
    }
    if (s->alg[1] == 'D') {
        crypto_generichash(prehash, sizeof prehash, msg, len, NULL, 0);
        bad = crypto_sign_verify_detached(s->sig, prehash, sizeof prehash, k->pk);
    } else {
        bad = crypto_sign_verify_detached(s->sig, msg, len, k->pk);
    }
    if (bad != 0) {
        return -EBADMSG;
    }
    memcpy(global_msg, s->sig, MS_SIG_LEN);
    memcpy(global_msg + MS_SIG_LEN, s->tc, s->tc_len);
    return crypto_sign_verify_detached(s->global, global_msg, MS_SIG_LEN + s->tc_len, k->pk) == 0
               ? 0
               : -EBADMSG;
}

VS_API int vs_minisign_verify(const struct vs_minisign_key *k, const void *msg, size_t len,
                              const char *sig_text, size_t sig_len, char *trusted_comment,
                              size_t tc_size)
{
    struct msig s;
    int rc = init_sodium();
    if (rc != 0) {
        return rc;
    }
    if (k == NULL || (msg == NULL && len > 0)) {
        return -EINVAL;
    }
    if ((rc = msig_parse(sig_text, sig_len, &s)) != 0 || (rc = msig_check(k, &s, msg, len)) != 0) {
        return rc;
    }
    if (trusted_comment != NULL) {
        if (s.tc_len >= tc_size) {
            return -ERANGE;
        }
        memcpy(trusted_comment, s.tc, s.tc_len);
        trusted_comment[s.tc_len] = '\0';
    }
    return 0;
}

/* ---- the launcher's check --------------------------------------------------------- */

VS_API int vs_image_verify(const char *rootfs_dir, const char *expected_digest,
                           const char *sig_text, size_t sig_len,
                           const struct vs_minisign_key *trusted, size_t ntrusted, char *why,
                           size_t why_len)
{
    struct msig s;
    int rc = init_sodium();
    if (rc != 0) {
        return vs_why(why, why_len, rc, "libsodium cannot be initialised");
    }
    if (rootfs_dir == NULL || (trusted == NULL && ntrusted > 0)) {
        return vs_why(why, why_len, -EINVAL, "no rootfs or trusted keys given");
    }
    if (!digest_text_ok(expected_digest)) {
        return vs_why(why, why_len, -EINVAL, "malformed image digest (want sha256:<64 hex>)");
    }
    if (msig_parse(sig_text, sig_len, &s) != 0) {
        return vs_why(why, why_len, -EINVAL, "malformed minisign signature");
    }

    char signed_text[VS_IMAGE_DIGEST_LEN + 1]; /* the digest, "\n", NUL */
    snprintf(signed_text, sizeof signed_text, "%s\n", expected_digest);
    bool known = false, verified = false;
    for (size_t i = 0; i < ntrusted && !verified; i++) {
        if (memcmp(trusted[i].id, s.id, VS_MINISIGN_KEYID_LEN) == 0) {
            known = true;
            verified = msig_check(&trusted[i], &s, signed_text, strlen(signed_text)) == 0;
        }
    }
    if (!known) {
        uint64_t id = 0;
        for (int i = VS_MINISIGN_KEYID_LEN - 1; i >= 0; i--) {
            id = id << 8 | s.id[i];
        }
        return vs_why(why, why_len, -EBADMSG, "signed by an untrusted key (id %016" PRIX64 ")", id);
    }
    if (!verified) {
        return vs_why(why, why_len, -EBADMSG, "signature does not verify");
    }

    char found[VS_IMAGE_DIGEST_LEN];
    rc = vs_image_digest_dir(rootfs_dir, found);
    if (rc != 0) {
        return vs_why(why, why_len, rc, "cannot hash %s: %s", rootfs_dir, strerror(-rc));
    }
    if (strcmp(found, expected_digest) != 0) {
        return vs_why(why, why_len, -EBADMSG, "digest mismatch: expected %s, found %s",
                    expected_digest, found);
    }
    return 0;
}

/* ---- removing what a layer hides ------------------------------------------------- */

static int empty_dir(int fd, unsigned depth);

/* Remove dfd/name and, for a directory, all below it (made 0700 first, so
 * that read-only directories can be emptied). A missing name is not an
 * error. */
static int remove_at(int dfd, const char *name, unsigned depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        return unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    }
    if (depth > VS_IMAGE_MAX_DEPTH) {
        return -ELOOP;
    }
    /* The tree is private to this process (see unpack_new), so nothing
     * replaces name between fstatat and fchmodat. */
    if ((st.st_mode & 0700) != 0700 && fchmodat(dfd, name, 0700, 0) != 0) {
        return -errno;
    }
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = empty_dir(fd, depth + 1);
    if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
        rc = -errno;
    }
    return rc;
}

static int remove_one(int dfd, const char *name, void *arg)
{
    return remove_at(dfd, name, *(const unsigned *)arg);
}

/* Remove everything in the directory fd; takes fd. */
static int empty_dir(int fd, unsigned depth)
{
    return each_entry(fd, remove_one, &depth);
}

/* The directory at rel (a clean relative path, "" for the root) below
 * rootfd, reached without following any symlink: an O_PATH descriptor (for
 * the *at calls; only search permission is needed on the way), or -ENOENT,
 * -ENOTDIR or -ELOOP when some component is missing, not a directory or a
 * symlink. */
static int open_beneath(int rootfd, const char *rel)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", rel);
    int fd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    char *save = NULL;
    for (char *c = strtok_r(buf, "/", &save); c != NULL && fd >= 0;
         c = strtok_r(NULL, "/", &save)) {
        int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = next;
    }
    return fd >= 0 ? fd : -errno;
}

/* Remove dir/name below rootfd (name NULL: everything in dir). What cannot
 * be reached without following a symlink was never in the layers below at
 * that path, so there is nothing to remove. */
static int remove_beneath(int rootfd, const char *dir, const char *name)
{
    int fd = open_beneath(rootfd, dir);
    if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP) {
        return 0;
    }
    if (fd < 0) {
        return fd;
    }
    int rc;
    if (name == NULL) {
        int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = rfd < 0 ? -errno : empty_dir(rfd, 0);
    } else {
        rc = remove_at(fd, name, 0);
    }
    close(fd);
    return rc;
}

/* ---- OCI layouts ------------------------------------------------------------------ */

/* The member name as a clean relative path ("." and empty components
 * dropped; "" is the root): 0, -EPERM for an absolute path or a ".."
 * component, -EINVAL for no name, -ENAMETOOLONG. */
static int clean_member(const char *name, char *out, size_t size)
{
    if (name == NULL) {
        return -EINVAL;
    }
    if (name[0] == '/') {
        return -EPERM;
    }
    size_t o = 0;
    const char *p = name;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            return -EPERM;
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o + (o > 0) + n >= size) {
                return -ENAMETOOLONG;
            }
            if (o > 0) {
                out[o++] = '/';
            }
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/') {
            p++;
        }
    }
    out[o] = '\0';
    return 0;
}

/* The path of archive member e, cleaned into out, or an error in why. */
static int member_path(struct archive_entry *e, const char *what, char out[PATH_MAX], char *why,
                       size_t why_len)
{
    const char *name = archive_entry_pathname(e);
    int rc = clean_member(name, out, PATH_MAX);
    if (rc == -EPERM) {
        return vs_why(why, why_len, rc, "%s: member \"%s\" is outside the image", what, name);
    }
    if (rc != 0) {
        return vs_why(why, why_len, rc, "%s: a member's name is %s", what,
                    rc == -EINVAL ? "missing or unreadable" : "too long");
    }
    return 0;
}

/* A descriptor of the image: which blob, its size and media type. */
struct desc {
    const char *media; /* owned by the JSON it came from */
    char hex[HEX_LEN + 1];
    uint64_t size;
};

static int parse_desc(const json_t *j, const char *what, struct desc *d, char *why, size_t why_len)
{
    const json_t *media = json_object_get(j, "mediaType");
    const json_t *digest = json_object_get(j, "digest");
    const json_t *size = json_object_get(j, "size");
    if (!json_is_object(j) || !json_is_string(media) || !json_is_string(digest) ||
        !json_is_integer(size) || json_integer_value(size) < 0) {
        return vs_why(why, why_len, -EINVAL, "%s: malformed descriptor", what);
    }
    const char *dt = json_string_value(digest);
    if (strncmp(dt, DIGEST_PREFIX, DIGEST_PREFIX_LEN) != 0) {
        return vs_why(why, why_len, -ENOTSUP, "%s: digest %s: only sha256 is supported", what, dt);
    }
    if (!digest_text_ok(dt)) {
        return vs_why(why, why_len, -EINVAL, "%s: malformed digest %s", what, dt);
    }
    d->media = json_string_value(media);
    memcpy(d->hex, dt + DIGEST_PREFIX_LEN, HEX_LEN + 1);
    d->size = (uint64_t)json_integer_value(size);
    return 0;
}

/* Open the blob of d in the layout and check that it is a regular file of
 * d's size and digest: a descriptor at offset 0, or an error in why. */
static int open_blob(int lfd, const struct desc *d, const char *what, char *why, size_t why_len)
{
    char path[32 + HEX_LEN];
    struct stat st;
    unsigned char sum[crypto_hash_sha256_BYTES];
    char hex[HEX_LEN + 1];
    uint64_t got = 0;

    snprintf(path, sizeof path, "blobs/sha256/%s", d->hex);
    int fd = openat(lfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int rc = -errno;
        return vs_why(why, why_len, rc, "%s: blob %s: %s", what, path, strerror(-rc));
    }
    int rc = fstat(fd, &st) != 0 ? -errno : 0;
    if (rc != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vs_why(why, why_len, rc != 0 ? rc : -EINVAL, "%s: blob %s is not a regular file", what,
                    path);
    }
    if ((uint64_t)st.st_size != d->size) {
        close(fd);
        return vs_why(why, why_len, -EBADMSG,
                    "%s: blob sha256:%s has %lld bytes, its descriptor says %" PRIu64, what, d->hex,
                    (long long)st.st_size, d->size);
    }
    if ((rc = hash_fd(fd, &got, sum)) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        rc = rc != 0 ? rc : -errno;
        close(fd);
        return vs_why(why, why_len, rc, "%s: reading blob %s: %s", what, path, strerror(-rc));
    }
    sodium_bin2hex(hex, sizeof hex, sum, sizeof sum);
    if (got != d->size || strcmp(hex, d->hex) != 0) {
        close(fd);
        return vs_why(why, why_len, -EBADMSG,
                    "%s: blob content is sha256:%s, its descriptor says sha256:%s", what, hex,
                    d->hex);
    }
    return fd;
}

/* Parse the JSON in fd (at most JSON_MAX bytes). */
static int load_json_fd(int fd, const char *what, json_t **out, char *why, size_t why_len)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > JSON_MAX) {
        return vs_why(why, why_len, -EINVAL, "%s: not a regular file of at most %u bytes", what,
                    JSON_MAX);
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        return vs_why(why, why_len, -ENOMEM, "%s: out of memory", what);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int rc = n < 0 ? -errno : -EIO;
            free(buf);
            return vs_why(why, why_len, rc, "%s: %s", what, strerror(-rc));
        }
        got += (size_t)n;
    }
    json_error_t err;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    free(buf);
    if (*out == NULL) {
        return vs_why(why, why_len, -EINVAL, "%s: %s (line %d)", what, err.text, err.line);
    }
    return 0;
}

static int load_json_at(int lfd, const char *name, json_t **out, char *why, size_t why_len)
{
    int fd = openat(lfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int rc = -errno;
        return vs_why(why, why_len, rc, "%s: %s", name, strerror(-rc));
    }
    int rc = load_json_fd(fd, name, out, why, why_len);
    close(fd);
    return rc;
}

/* An image being built. */
struct unpack {
    int rootfd;          /* the rootfs being built */
    char root[PATH_MAX]; /* its canonical absolute path */
    size_t entries;      /* members written so far, all layers */
};

/* libarchive's message about a's last error. */
static const char *arc_error(struct archive *a)
{
    const char *s = archive_error_string(a);
    return s != NULL ? s : "unknown libarchive error";
}

static struct archive *layer_open(int fd, bool gzip, const char *what, char *why, size_t why_len,
                                  int *rc)
{
    struct archive *a = archive_read_new();
    if (a == NULL) {
        *rc = vs_why(why, why_len, -ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    if (lseek(fd, 0, SEEK_SET) != 0 || archive_read_support_format_tar(a) != ARCHIVE_OK ||
        (gzip && archive_read_support_filter_gzip(a) != ARCHIVE_OK) ||
        archive_read_open_fd(a, fd, IO_CHUNK) != ARCHIVE_OK) {
        *rc = vs_why(why, why_len, -EINVAL, "%s: %s", what, arc_error(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Pass 1: remove from the tree what the layer hides (its whiteouts) or
 * replaces (a directory where it puts something else). */
static int layer_remove(struct unpack *u, int fd, bool gzip, const char *what, char *why,
                        size_t why_len)
{
    int rc = 0;
    struct archive *a = layer_open(fd, gzip, what, why, why_len, &rc);
    struct archive_entry *e;
    char path[PATH_MAX];
    int r;

    if (a == NULL) {
        return rc;
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(e);
        if ((rc = member_path(e, what, path, why, why_len)) != 0) {
            break;
        }
        char dir[PATH_MAX];
        const char *slash = strrchr(path, '/');
        const char *base = slash != NULL ? slash + 1 : path;
        snprintf(dir, sizeof dir, "%.*s", slash != NULL ? (int)(slash - path) : 0, path);
        struct stat st;
        if (strcmp(base, WH_OPAQUE) == 0) {
            rc = remove_beneath(u->rootfd, dir, NULL);
        } else if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
            const char *hidden = base + strlen(WH_PREFIX);
            if (hidden[0] == '\0' || strcmp(hidden, ".") == 0 || strcmp(hidden, "..") == 0) {
                rc = vs_why(why, why_len, -EPERM, "%s: bad whiteout \"%s\"", what, name);
                break;
            }
            rc = remove_beneath(u->rootfd, dir, hidden);
        } else if (path[0] != '\0' && archive_entry_filetype(e) != AE_IFDIR &&
                   fstatat(u->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            /* That stat may follow a symlink; the removal never does. */
            rc = remove_beneath(u->rootfd, dir, base);
        }
        if (rc != 0) {
            rc = vs_why(why, why_len, rc, "%s: applying \"%s\": %s", what, name, strerror(-rc));
            break;
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF) {
        rc = vs_why(why, why_len, -EINVAL, "%s: %s", what, arc_error(a));
    }
    archive_read_free(a);
    return rc;
}

/* The libarchive writer's failure as -errno (its own refusals, which carry
 * no errno, are -EPERM) with its message in why. */
static int write_failed(struct archive *w, const char *what, const char *name, char *why,
                        size_t why_len)
{
    int e = archive_errno(w);
    return vs_why(why, why_len, e > 0 ? -e : -EPERM, "%s: \"%s\": %s", what, name, arc_error(w));
}

/* Copy one member's data from a to w. */
static int copy_data(struct archive *a, struct archive *w, const char *what, const char *name,
                     char *why, size_t why_len)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
        if (archive_write_data_block(w, buf, len, off) < ARCHIVE_OK) {
            return write_failed(w, what, name, why, why_len);
        }
    }
    if (r != ARCHIVE_EOF) {
        return vs_why(why, why_len, -EINVAL, "%s: \"%s\": %s", what, name, arc_error(a));
    }
    return 0;
}

/* Pass 2: extract every member but whiteouts, the root entry, device
 * nodes, fifos and sockets. */
static int layer_extract(struct unpack *u, int fd, bool gzip, const char *what, char *why,
                         size_t why_len)
{
    int rc = 0;
    struct archive *a = layer_open(fd, gzip, what, why, why_len, &rc);
    struct archive *w = NULL;
    struct archive_entry *e;
    char path[PATH_MAX], abs[PATH_MAX];
    int r = ARCHIVE_OK;

    if (a == NULL) {
        return rc;
    }
    w = archive_write_disk_new();
    if (w == NULL ||
        archive_write_disk_set_options(w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                              ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                              ARCHIVE_EXTRACT_SECURE_SYMLINKS) != ARCHIVE_OK) {
        rc = vs_why(why, why_len, -ENOMEM, "%s: cannot make a libarchive writer", what);
        goto out;
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(e);
        const char *link = archive_entry_hardlink(e);
        unsigned type = archive_entry_filetype(e);
        if ((rc = member_path(e, what, path, why, why_len)) != 0) {
            break;
        }
        const char *base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
        if (path[0] == '\0' || strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0 ||
            (link == NULL && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
            continue;
        }
        if (++u->entries > VS_IMAGE_MAX_ENTRIES) {
            rc = vs_why(why, why_len, -E2BIG, "%s: more than %u entries", what, VS_IMAGE_MAX_ENTRIES);
            break;
        }
        if (snprintf(abs, sizeof abs, "%s/%s", u->root, path) >= (int)sizeof abs) {
            rc = vs_why(why, why_len, -ENAMETOOLONG, "%s: \"%s\": path too long", what, name);
            break;
        }
        if (link != NULL) {
            char target[PATH_MAX], abs_target[PATH_MAX];
            rc = clean_member(link, target, sizeof target);
            if (rc != 0 || target[0] == '\0') {
                rc = vs_why(why, why_len, rc != 0 ? rc : -EPERM,
                          "%s: hard link \"%s\" -> \"%s\" points outside the image", what, name,
                          link);
                break;
            }
            if (snprintf(abs_target, sizeof abs_target, "%s/%s", u->root, target) >=
                (int)sizeof abs_target) {
                rc = vs_why(why, why_len, -ENAMETOOLONG, "%s: \"%s\": path too long", what, link);
                break;
            }
            archive_entry_copy_hardlink(e, abs_target);
        }
        archive_entry_copy_pathname(e, abs);
        archive_entry_set_perm(e, archive_entry_perm(e) & ~(mode_t)(S_ISUID | S_ISGID));
        if (archive_write_header(w, e) != ARCHIVE_OK) {
            rc = write_failed(w, what, path, why, why_len);
            break;
        }
        if ((rc = copy_data(a, w, what, path, why, why_len)) != 0) {
            break;
        }
        if (archive_write_finish_entry(w) != ARCHIVE_OK) {
            rc = write_failed(w, what, path, why, why_len);
            break;
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF) {
        rc = vs_why(why, why_len, -EINVAL, "%s: %s", what, arc_error(a));
    }
    /* Applies the deferred directory modes and times of this layer. */
    if (rc == 0 && archive_write_close(w) != ARCHIVE_OK) {
        rc = write_failed(w, what, "(directory modes)", why, why_len);
    }
out:
    if (w != NULL) {
        archive_write_free(w);
    }
    archive_read_free(a);
    return rc;
}

/* Build the image of manifest m into <cache>/<hex>: in a private
 * temporary directory, then renamed. 0 also when another unpack won. */
static int unpack_new(int lfd, const json_t *m, const char *cache, int cfd, const char *hex,
                      char *why, size_t why_len)
{
    struct unpack u = {.rootfd = -1};
    char tmp[PATH_MAX];
    struct desc cfg;
    const json_t *layers = json_object_get(m, "layers");
    const json_t *media = json_object_get(m, "mediaType");
    int rc;

    if (!json_is_integer(json_object_get(m, "schemaVersion")) ||
        json_integer_value(json_object_get(m, "schemaVersion")) != 2 ||
        (media != NULL &&
         (!json_is_string(media) || strcmp(json_string_value(media), OCI_MANIFEST) != 0)) ||
        !json_is_array(layers)) {
        return vs_why(why, why_len, -EINVAL, "manifest sha256:%s: not an OCI image manifest", hex);
    }
    if ((rc = parse_desc(json_object_get(m, "config"), "config", &cfg, why, why_len)) != 0 ||
        (rc = open_blob(lfd, &cfg, "config", why, why_len)) < 0) {
        return rc;
    }
    close(rc);

    if (snprintf(tmp, sizeof tmp, "%s/.tmp-%s-XXXXXX", cache, hex) >= (int)sizeof tmp) {
        return vs_why(why, why_len, -ENAMETOOLONG, "cache path %s is too long", cache);
    }
    if (mkdtemp(tmp) == NULL) {
        rc = -errno;
        return vs_why(why, why_len, rc, "mkdtemp in %s: %s", cache, strerror(-rc));
    }
    const char *tmp_name = strrchr(tmp, '/') + 1;
    if (snprintf(u.root, sizeof u.root, "%s/rootfs", tmp) >= (int)sizeof u.root) {
        rc = vs_why(why, why_len, -ENAMETOOLONG, "cache path %s is too long", cache);
        goto out;
    }
    if (mkdir(u.root, 0700) != 0 ||
        (u.rootfd = open(u.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        rc = -errno;
        rc = vs_why(why, why_len, rc, "%s: %s", u.root, strerror(-rc));
        goto out;
    }

    for (size_t i = 0; i < json_array_size(layers); i++) {
        char what[40];
        struct desc d;
        snprintf(what, sizeof what, "layer %zu", i + 1);
        if ((rc = parse_desc(json_array_get(layers, i), what, &d, why, why_len)) != 0) {
            goto out;
        }
        bool gzip = strcmp(d.media, OCI_LAYER_GZIP) == 0;
        if (!gzip && strcmp(d.media, OCI_LAYER_TAR) != 0) {
            rc = vs_why(why, why_len, -ENOTSUP, "%s: media type %s is not supported (only %s and %s)",
                      what, d.media, OCI_LAYER_TAR, OCI_LAYER_GZIP);
            goto out;
        }
        int fd = open_blob(lfd, &d, what, why, why_len);
        if (fd < 0) {
            rc = fd;
            goto out;
        }
        rc = layer_remove(&u, fd, gzip, what, why, why_len);
        if (rc == 0) {
            rc = layer_extract(&u, fd, gzip, what, why, why_len);
        }
        close(fd);
        if (rc != 0) {
            goto out;
        }
    }

    if (fchmod(u.rootfd, 0755) != 0 || chmod(tmp, 0755) != 0) {
        rc = -errno;
        rc = vs_why(why, why_len, rc, "chmod %s: %s", tmp, strerror(-rc));
        goto out;
    }
    if (renameat(cfd, tmp_name, cfd, hex) != 0) {
        rc = -errno;
        if (rc == -EEXIST || rc == -ENOTEMPTY) {
            rc = 0; /* a concurrent unpack of the same manifest finished first */
        } else {
            rc = vs_why(why, why_len, rc, "rename %s: %s", tmp, strerror(-rc));
        }
        goto out;
    }
    close(u.rootfd);
    return 0;
out:
    if (u.rootfd >= 0) {
        close(u.rootfd);
    }
    (void)remove_at(cfd, tmp_name, 0);
    return rc;
}

VS_API int vs_image_unpack_oci(const char *layout_dir, const char *cache_dir,
                               char rootfs_out[PATH_MAX], char digest_out[VS_IMAGE_DIGEST_LEN],
                               char *why, size_t why_len)
{
    char cache[PATH_MAX];
    json_t *layout = NULL, *index = NULL, *manifest = NULL;
    struct desc md;
    int lfd = -1, cfd = -1, hfd = -1;
    int rc = init_sodium();

    if (rc != 0) {
        return vs_why(why, why_len, rc, "libsodium cannot be initialised");
    }
    if (layout_dir == NULL || cache_dir == NULL || rootfs_out == NULL) {
        return vs_why(why, why_len, -EINVAL, "no layout, cache or rootfs buffer given");
    }
    if (realpath(cache_dir, cache) == NULL) {
        rc = -errno;
        return vs_why(why, why_len, rc, "cache directory %s: %s", cache_dir, strerror(-rc));
    }
    if ((lfd = open(layout_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (cfd = open(cache, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        rc = vs_why(why, why_len, rc, "%s: %s", lfd < 0 ? layout_dir : cache, strerror(-rc));
        goto out;
    }

    if ((rc = load_json_at(lfd, "oci-layout", &layout, why, why_len)) != 0) {
        goto out;
    }
    const json_t *version = json_object_get(layout, "imageLayoutVersion");
    if (!json_is_string(version) || strcmp(json_string_value(version), "1.0.0") != 0) {
        rc = vs_why(why, why_len, -ENOTSUP, "oci-layout: not an image layout of version 1.0.0");
        goto out;
    }
    if ((rc = load_json_at(lfd, "index.json", &index, why, why_len)) != 0) {
        goto out;
    }
    const json_t *manifests = json_object_get(index, "manifests");
    if (!json_is_array(manifests) || json_array_size(manifests) == 0) {
        rc = vs_why(why, why_len, -EINVAL, "index.json lists no manifest");
        goto out;
    }
    if (json_array_size(manifests) > 1) {
        rc = vs_why(why, why_len, -ENOTSUP, "index.json lists %zu manifests; one is supported",
                  json_array_size(manifests));
        goto out;
    }
    if ((rc = parse_desc(json_array_get(manifests, 0), "index.json", &md, why, why_len)) != 0) {
        goto out;
    }
    if (strcmp(md.media, OCI_MANIFEST) != 0) {
        rc = vs_why(why, why_len, -ENOTSUP, "index.json: %s is not supported%s", md.media,
                  strcmp(md.media, OCI_INDEX) == 0 ? " (a multi-platform image: copy one platform)"
                                                   : "");
        goto out;
    }
    if (snprintf(rootfs_out, PATH_MAX, "%s/%s/rootfs", cache, md.hex) >= PATH_MAX) {
        rc = vs_why(why, why_len, -ENAMETOOLONG, "cache path %s is too long", cache);
        goto out;
    }

    hfd = openat(cfd, md.hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (hfd < 0 && errno != ENOENT) {
        rc = -errno;
        rc = vs_why(why, why_len, rc, "cache entry %s/%s: %s", cache, md.hex, strerror(-rc));
        goto out;
    }
    if (hfd >= 0) {
        struct stat st;
        if (fstatat(hfd, "rootfs", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
            rc = vs_why(why, why_len, -EEXIST, "cache entry %s/%s holds no rootfs directory", cache,
                      md.hex);
            goto out;
        }
    } else {
        int fd = open_blob(lfd, &md, "manifest", why, why_len);
        if (fd < 0) {
            rc = fd;
            goto out;
        }
        rc = load_json_fd(fd, "manifest", &manifest, why, why_len);
        close(fd);
        if (rc != 0 || (rc = unpack_new(lfd, manifest, cache, cfd, md.hex, why, why_len)) != 0) {
            goto out;
        }
    }

    if (digest_out != NULL && (rc = vs_image_digest_dir(rootfs_out, digest_out)) != 0) {
        rc = vs_why(why, why_len, rc, "cannot hash %s: %s", rootfs_out, strerror(-rc));
    }
out:
    json_decref(layout);
    json_decref(index);
    json_decref(manifest);
    if (hfd >= 0) {
        close(hfd);
    }
    if (cfd >= 0) {
        close(cfd);
    }
    if (lfd >= 0) {
        close(lfd);
    }
    return rc;
}
