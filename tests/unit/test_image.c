/*
 * test_image.c - sandboxd/src/image.c: the content digest, minisign
 * verification and OCI layouts unpacked into a cache.
 *
 * The digest is checked against its documented record format twice over:
 * the example in vs/image.h hashed from a literal stream, and a second
 * implementation in a few lines of Python run on a larger tree. Signatures
 * come from the real minisign tool (key pairs, prehashed and legacy
 * signatures); two signatures made with it once are also kept here as
 * fixed vectors, so the parser and verifier are tested where the tool is
 * missing. OCI layouts are written with the harness's imagefix (libarchive),
 * with the attacks on the unpacker (bad blob digests, "..", absolute names,
 * writes and hard links through a symlink) as layers of their own; each
 * refusal must leave the cache empty and nothing outside. A layer member
 * streamed from a host file of a few MiB must arrive unchanged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "imagefix.h"
#include "proc.h"
#include "vs/image.h"

#define PYTHON "/usr/bin/python3"

/* ---- files -------------------------------------------------------------------- */

static void put(const char *root, const char *rel, const char *content, mode_t mode)
{
    char *p = vs_path(root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    free(p);
}

static void dir(const char *root, const char *rel, mode_t mode)
{
    char *p = vs_path(root, rel);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

static void link_to(const char *root, const char *rel, const char *target)
{
    char *p = vs_path(root, rel);
    assert_int_equal(symlink(target, p), 0);
    free(p);
}

static bool exists(const char *root, const char *rel)
{
    struct stat st;
    char *p = vs_path(root, rel);
    bool r = lstat(p, &st) == 0;
    free(p);
    return r;
}

static mode_t mode_of(const char *root, const char *rel)
{
    struct stat st;
    char *p = vs_path(root, rel);
    assert_int_equal(lstat(p, &st), 0);
    free(p);
    return st.st_mode & 07777;
}

/* The number of entries in a directory (the cache must stay empty). */
static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

static void digest(const char *root, char out[VS_IMAGE_DIGEST_LEN])
{
    assert_int_equal(vs_image_digest_dir(root, out), 0);
}

/* Run argv (argv[0] absolute) to completion; its stdout into out_path
 * (NULL: discarded). Returns the exit code. */
static int run(const char *const *argv, const char *out_path)
{
    struct vs_spawn s = {
        .argv = argv, .out = out_path != NULL ? out_path : "/dev/null", .keep_fd = -1};
    pid_t pid = vs_proc_start(&s);
    assert_true(pid > 0);
    int status = vs_proc_wait(pid, 30000);
    assert_true(status >= 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The tree of the header's example plus a bit more. */
static void sample_tree(const char *root)
{
    dir(root, "bin", 0755);
    put(root, "bin/sh", "hi\n", 0755);
    link_to(root, "bin/busybox", "sh");
    dir(root, "etc", 0755);
    put(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644);
    put(root, "etc.conf", "a name sorting between etc and etc/...\n", 0600);
    dir(root, "var", 0755);
    dir(root, "var/empty", 0700);
    dir(root, "tmp", 01777);
    link_to(root, "etc/escape", "/etc"); /* recorded, never followed */
    put(root, "empty", "", 0444);
}

/* ---- the digest ------------------------------------------------------------------ */

/* The example of vs/image.h, hashed from the documented stream. */
static void test_digest_documented_example(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-doc");
    dir(root, "bin", 0755);
    put(root, "bin/sh", "hi\n", 0755);
    link_to(root, "bin/busybox", "sh");

    unsigned char sum[crypto_hash_sha256_BYTES];
    char sh_hex[65], want[VS_IMAGE_DIGEST_LEN], got[VS_IMAGE_DIGEST_LEN];
    crypto_hash_sha256(sum, (const unsigned char *)"hi\n", 3);
    sodium_bin2hex(sh_hex, sizeof sh_hex, sum, sizeof sum);
    char stream[512];
    size_t n = 0;
    const char *parts[] = {"vibeshield-rootfs-v1\n", "d 0755 bin", "",
                           "l 0777 bin/busybox",     "sh",         "f 0755 bin/sh"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strlen(parts[i]) + (i > 0); /* every field but the magic ends in NUL */
        memcpy(stream + n, parts[i], len);
        n += len;
    }
    n += (size_t)snprintf(stream + n, sizeof stream - n, "3 %s", sh_hex) + 1;
    crypto_hash_sha256(sum, (const unsigned char *)stream, n);
    memcpy(want, "sha256:", 7);
    sodium_bin2hex(want + 7, 65, sum, sizeof sum);

    digest(root, got);
    assert_string_equal(got, want);
    vs_scratch_free(root);
}

/* The format again, from its description, in Python: byte-wise order of
 * nested paths (etc < etc.conf < etc/passwd), modes, empty files. */
static void test_digest_python_equivalent(void **state)
{
    (void)state;
    if (access(PYTHON, X_OK) != 0) {
        print_message("python3 is not installed: the second implementation is not run\n");
        skip();
    }
    static const char script[] =
        "import hashlib, os, stat, sys\n"
        "root = os.fsencode(sys.argv[1])\n"
        "paths = [os.path.relpath(os.path.join(d, n), root)\n"
        "         for d, ds, fs in os.walk(root) for n in ds + fs]\n"
        "h = hashlib.sha256(b'vibeshield-rootfs-v1\\n')\n"
        "for p in sorted(paths):\n"
        "    full = os.path.join(root, p)\n"
        "    st = os.lstat(full)\n"
        "    mode = b'%04o' % (st.st_mode & 0o7777)\n"
        "    if stat.S_ISLNK(st.st_mode):\n"
        "        h.update(b'l 0777 ' + p + b'\\0' + os.readlink(full) + b'\\0')\n"
        "    elif stat.S_ISDIR(st.st_mode):\n"
        "        h.update(b'd ' + mode + b' ' + p + b'\\0\\0')\n"
        "    else:\n"
        "        data = open(full, 'rb').read()\n"
        "        sha = hashlib.sha256(data).hexdigest().encode()\n"
        "        h.update(b'f ' + mode + b' ' + p + b'\\0' + b'%d ' % len(data) + sha + b'\\0')\n"
        "print('sha256:' + h.hexdigest(), end='')\n";
    char *root = vs_scratch_dir("image-py");
    char *tree = vs_path(root, "tree");
    char *out = vs_path(root, "out");
    assert_int_equal(mkdir(tree, 0755), 0);
    sample_tree(tree);

    const char *argv[] = {PYTHON, "-c", script, tree, NULL};
    assert_int_equal(run(argv, out), 0);
    char got[VS_IMAGE_DIGEST_LEN];
    digest(tree, got);
    char *py = vs_slurp(out);
    assert_string_equal(py, got);
    free(py);
    free(out);
    free(tree);
    vs_scratch_free(root);
}

/* Stable across runs and copies (other creation order, owners, times);
 * changed by every change of content, mode, link target, name or set of
 * entries. */
static void test_digest_stable_and_sensitive(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-digest");
    char *a = vs_path(root, "a"), *b = vs_path(root, "b");
    char da[VS_IMAGE_DIGEST_LEN], db[VS_IMAGE_DIGEST_LEN], d[VS_IMAGE_DIGEST_LEN];

    assert_int_equal(mkdir(a, 0755), 0);
    sample_tree(a);
    digest(a, da);
    assert_int_equal(strncmp(da, "sha256:", 7), 0);
    assert_int_equal(strlen(da), 71);
    digest(a, d);
    assert_string_equal(d, da);

    /* b: the same tree made in another order, then other owners and times. */
    assert_int_equal(mkdir(b, 0700), 0);
    put(b, "empty", "", 0444);
    dir(b, "tmp", 01777);
    dir(b, "var", 0755);
    dir(b, "var/empty", 0700);
    put(b, "etc.conf", "a name sorting between etc and etc/...\n", 0600);
    dir(b, "etc", 0755);
    link_to(b, "etc/escape", "/etc");
    put(b, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644);
    dir(b, "bin", 0755);
    link_to(b, "bin/busybox", "sh");
    put(b, "bin/sh", "hi\n", 0755);
    const char *all[] = {"empty",      "tmp",        "var", "var/empty",   "etc.conf", "etc",
                         "etc/escape", "etc/passwd", "bin", "bin/busybox", "bin/sh"};
    struct timespec old[2] = {{.tv_sec = 1000000}, {.tv_sec = 2000000}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        char *p = vs_path(b, all[i]);
        if (geteuid() == 0) {
            assert_int_equal(lchown(p, 1234, 5678), 0);
        }
        assert_int_equal(utimensat(AT_FDCWD, p, old, AT_SYMLINK_NOFOLLOW), 0);
        free(p);
    }
    digest(b, db);
    assert_string_equal(db, da);

    /* Each change, then back. */
    char *sh = vs_path(b, "bin/sh");
    put(b, "bin/sh", "ho\n", 0755); /* same size */
    digest(b, d);
    assert_string_not_equal(d, da);
    put(b, "bin/sh", "hi\n", 0755);
    digest(b, d);
    assert_string_equal(d, da);

    assert_int_equal(chmod(sh, 0750), 0);
    digest(b, d);
    assert_string_not_equal(d, da);
    assert_int_equal(chmod(sh, 0755), 0);

    char *bb = vs_path(b, "bin/busybox");
    assert_int_equal(unlink(bb), 0);
    link_to(b, "bin/busybox", "sh2");
    digest(b, d);
    assert_string_not_equal(d, da);
    assert_int_equal(unlink(bb), 0);
    link_to(b, "bin/busybox", "sh");

    char *sh3 = vs_path(b, "bin/sh3");
    assert_int_equal(rename(sh, sh3), 0);
    digest(b, d);
    assert_string_not_equal(d, da);
    assert_int_equal(rename(sh3, sh), 0);

    put(b, "bin/new", "", 0644);
    digest(b, d);
    assert_string_not_equal(d, da);
    char *nw = vs_path(b, "bin/new");
    assert_int_equal(unlink(nw), 0);

    dir(b, "var/empty/sub", 0755);
    digest(b, d);
    assert_string_not_equal(d, da);
    char *sub = vs_path(b, "var/empty/sub");
    assert_int_equal(rmdir(sub), 0);

    char *pw = vs_path(b, "etc/passwd");
    assert_int_equal(unlink(pw), 0);
    digest(b, d);
    assert_string_not_equal(d, da);
    put(b, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644);

    digest(b, d);
    assert_string_equal(d, da);

    /* The root may be given through a symlink; its own mode is not recorded. */
    char *via = vs_path(root, "via");
    assert_int_equal(symlink(b, via), 0);
    assert_int_equal(chmod(b, 0711), 0);
    digest(via, d);
    assert_string_equal(d, da);

    free(sh), free(bb), free(sh3), free(nw), free(sub), free(pw), free(via);
    free(a), free(b);
    vs_scratch_free(root);
}

static void test_digest_refusals(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-refuse");
    char d[VS_IMAGE_DIGEST_LEN];
    sample_tree(root);
    digest(root, d);

    char *fifo = vs_path(root, "var/fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(vs_image_digest_dir(root, d), -EPERM);
    assert_int_equal(unlink(fifo), 0);

    char *sh = vs_path(root, "bin/sh");
    assert_int_equal(chmod(sh, 04755), 0);
    assert_int_equal(vs_image_digest_dir(root, d), -EPERM);
    assert_int_equal(chmod(sh, 02755), 0);
    assert_int_equal(vs_image_digest_dir(root, d), -EPERM);
    assert_int_equal(chmod(sh, 0755), 0);

    /* A setgid directory is recorded, not refused. */
    char *var = vs_path(root, "var");
    assert_int_equal(chmod(var, 02755), 0);
    assert_int_equal(vs_image_digest_dir(root, d), 0);
    assert_int_equal(chmod(var, 0755), 0);

    char *null = vs_path(root, "var/null");
    if (mknod(null, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        assert_int_equal(vs_image_digest_dir(root, d), -EPERM);
        assert_int_equal(unlink(null), 0);
    } else {
        print_message("mknod not permitted here: the device node case is covered by the fifo\n");
    }
    assert_int_equal(vs_image_digest_dir(root, d), 0);

    char *missing = vs_path(root, "missing");
    assert_int_equal(vs_image_digest_dir(missing, d), -ENOENT);
    assert_int_equal(vs_image_digest_dir(sh, d), -ENOTDIR);

    free(fifo), free(sh), free(var), free(null), free(missing);
    vs_scratch_free(root);
}

/* ---- minisign ---------------------------------------------------------------------- */

/* Made once with minisign 0.11: `minisign -G -W`, then `minisign -S -t "hello tc"`
 * and `minisign -S -l -t x` of a file holding "sha256:abc\n". */
#define VEC_KEY "RWQZHuWVC3tHbUHbOz+hqCZLZP80/7A2egqhnKpWt8eE4kgGzKvijUk0"
static const char VEC_PUB[] =
    "untrusted comment: minisign public key 6D477B0B95E51E19\n" VEC_KEY "\n";
static const char VEC_MSG[] = "sha256:abc\n";
static const char VEC_SIG[] =
    "untrusted comment: signature from minisign secret key\n"
    "RUQZHuWVC3tHbcKk6dEwiPNmQ4d8j1VXkgrPcO2qrVpwMG2YUs54kQ8kWKHDrEpZiGcyjPiE2B2IfX5YnPg8TRKwMgA0Nx"
    "MAwQY=\n"
    "trusted comment: hello tc\n"
    "b04RO6rGlWHYLEE2lKzLYcZ8/OHzrn6MtY9s0Asj6uf0Mth2bETFdNS/hFWoyNEYH68Y6cnJpdr1D7o4RPMpCg==\n";
static const char VEC_LEGACY[] =
    "untrusted comment: signature from minisign secret key\n"
    "RWQZHuWVC3tHbfqoEmgl0MgSf29NvOPXk9cJSiFC7Plb9zt9nThmaHeWDJVSQAleisj8Sasm4vMZF5BhH4eZYRFiiAkAUT"
    "j8CwI=\n"
    "trusted comment: x\n"
    "v4Ajt5wgV6IWR4dhVT0v5MT9Hd7fDauhtdETik2+fV2HRFqAMBIRLBa5qdLbhxcA+HO0xZ98QmlNAgd6gsGRDg==\n";

/* sig with one bit of the base64 line `line` (0-based) flipped in the
 * decoded byte `byte`, re-encoded so the text stays well formed. */
static char *flip_b64(const char *sig, int line, size_t byte)
{
    char *out = strdup(sig);
    char *l = out;
    for (int i = 0; i < line; i++) {
        l = strchr(l, '\n') + 1;
    }
    char *e = strchr(l, '\n');
    unsigned char bin[128];
    size_t len;
    assert_int_equal(sodium_base642bin(bin, sizeof bin, l, (size_t)(e - l), NULL, &len, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_true(byte < len);
    bin[byte] ^= 0x10;
    char b64[200];
    sodium_bin2base64(b64, sizeof b64, bin, len, sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(strlen(b64), (size_t)(e - l));
    memcpy(l, b64, strlen(b64));
    return out;
}

static int verify_text(const struct vs_minisign_key *k, const char *msg, const char *sig)
{
    return vs_minisign_verify(k, msg, strlen(msg), sig, strlen(sig), NULL, 0);
}

static void test_minisign_vectors(void **state)
{
    (void)state;
    struct vs_minisign_key k, k2;
    static const uint8_t id[8] = {0x19, 0x1e, 0xe5, 0x95, 0x0b, 0x7b, 0x47, 0x6d};

    assert_int_equal(vs_minisign_key_parse(VEC_PUB, &k), 0);
    assert_memory_equal(k.id, id, 8);
    /* The bare key line, as `minisign -P` takes it, with or without newline. */
    assert_int_equal(vs_minisign_key_parse(VEC_KEY, &k2), 0);
    assert_memory_equal(&k, &k2, sizeof k);
    assert_int_equal(vs_minisign_key_parse("  " VEC_KEY "\n", &k2), 0);
    assert_memory_equal(&k, &k2, sizeof k);
    /* Malformed keys. */
    assert_int_equal(vs_minisign_key_parse("", &k2), -EINVAL);
    assert_int_equal(vs_minisign_key_parse("untrusted comment: x\n", &k2), -EINVAL);
    assert_int_equal(vs_minisign_key_parse(VEC_KEY "\njunk\n", &k2), -EINVAL);
    char cut[] = VEC_KEY;
    cut[strlen(cut) - 2] = '\0';
    assert_int_equal(vs_minisign_key_parse(cut, &k2), -EINVAL);
    char other_alg[] = VEC_KEY;
    other_alg[1] = 'U'; /* "RUQ..." is "ED" + ...: not a public key's algorithm */
    assert_int_equal(vs_minisign_key_parse(other_alg, &k2), -EINVAL);

    char tc[64];
    const size_t msg_len = strlen(VEC_MSG), sig_len = strlen(VEC_SIG);
    assert_int_equal(vs_minisign_verify(&k, VEC_MSG, msg_len, VEC_SIG, sig_len, tc, sizeof tc), 0);
    assert_string_equal(tc, "hello tc");
    assert_int_equal(vs_minisign_verify(&k, VEC_MSG, msg_len, VEC_SIG, sig_len, tc, 8), -ERANGE);
    assert_int_equal(
        vs_minisign_verify(&k, VEC_MSG, msg_len, VEC_LEGACY, strlen(VEC_LEGACY), tc, sizeof tc), 0);
    assert_string_equal(tc, "x");
    assert_int_equal(verify_text(&k, "sha256:abd\n", VEC_SIG), -EBADMSG);
    assert_int_equal(verify_text(&k, "sha256:abd\n", VEC_LEGACY), -EBADMSG);

    /* A text without its final newline, or with CRLF, is the same signature. */
    assert_int_equal(vs_minisign_verify(&k, VEC_MSG, msg_len, VEC_SIG, sig_len - 1, NULL, 0), 0);
    char crlf[512];
    size_t o = 0;
    for (const char *p = VEC_SIG; *p != '\0'; p++) {
        if (*p == '\n') {
            crlf[o++] = '\r';
        }
        crlf[o++] = *p;
    }
    crlf[o] = '\0';
    assert_int_equal(verify_text(&k, VEC_MSG, crlf), 0);

    /* Malformed signature texts. */
    assert_int_equal(vs_minisign_verify(&k, VEC_MSG, msg_len, VEC_SIG, 60, NULL, 0), -EINVAL);
    assert_int_equal(verify_text(&k, VEC_MSG, VEC_SIG + 1), -EINVAL);
    char *bad_alg = flip_b64(VEC_SIG, 1, 1); /* "ED" -> "EF"... */
    assert_int_equal(verify_text(&k, VEC_MSG, bad_alg), -EINVAL);
    char extra[512];
    snprintf(extra, sizeof extra, "%sjunk\n", VEC_SIG);
    assert_int_equal(verify_text(&k, VEC_MSG, extra), -EINVAL);
    free(bad_alg);
}

/* The algorithm of a signature text ("ED" or "Ed"), in a static buffer. */
static const char *sig_alg(const char *sig)
{
    static char alg[3];
    const char *l = strchr(sig, '\n') + 1;
    unsigned char bin[128];
    size_t len;
    assert_int_equal(sodium_base642bin(bin, sizeof bin, l, (size_t)(strchr(l, '\n') - l), NULL,
                                       &len, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    memcpy(alg, bin, 2);
    return alg;
}

static void test_minisign_tool(void **state)
{
    (void)state;
    if (!vs_test_minisign_present()) {
        skip();
    }
    char *root = vs_scratch_dir("image-minisign");
    struct vs_test_keypair kp, other;
    vs_test_keypair_make(root, "op", &kp);
    vs_test_keypair_make(root, "other", &other);
    char *file = vs_path(root, "digest.txt"), *sig_path = vs_path(root, "digest.txt.minisig");
    char *legacy_path = vs_path(root, "digest.txt.legacy");
    const char *msg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    assert_int_equal(vs_write_file(file, "%s", msg), 0);
    char *sig = vs_test_sign_file(&kp, file, sig_path, false, "trusted comment");
    char *legacy = vs_test_sign_file(&kp, file, legacy_path, true, "legacy");
    assert_string_equal(sig_alg(sig), "ED"); /* prehashed */
    assert_string_equal(sig_alg(legacy), "Ed");

    struct vs_minisign_key k, ko;
    assert_int_equal(vs_minisign_key_load(kp.pub, &k), 0);
    assert_int_equal(vs_minisign_key_load(other.pub, &ko), 0);
    char *missing = vs_path(root, "nope.pub");
    assert_int_equal(vs_minisign_key_load(missing, &ko), -ENOENT);

    char tc[VS_MINISIGN_COMMENT_MAX + 1];
    assert_int_equal(vs_minisign_verify(&k, msg, strlen(msg), sig, strlen(sig), tc, sizeof tc), 0);
    assert_string_equal(tc, "trusted comment");
    assert_int_equal(verify_text(&k, msg, legacy), 0);

    /* A flipped bit in the message. */
    char *msg2 = strdup(msg);
    msg2[20] ^= 0x01;
    assert_int_equal(verify_text(&k, msg2, sig), -EBADMSG);
    assert_int_equal(verify_text(&k, msg2, legacy), -EBADMSG);
    /* In the signature, and in the global signature. */
    char *bad = flip_b64(sig, 1, 10 + 5);
    assert_int_equal(verify_text(&k, msg, bad), -EBADMSG);
    free(bad);
    bad = flip_b64(sig, 3, 7);
    assert_int_equal(verify_text(&k, msg, bad), -EBADMSG);
    free(bad);
    /* In the trusted comment. */
    bad = strdup(sig);
    char *t = strstr(bad, "trusted comment: trusted");
    assert_non_null(t);
    t[strlen("trusted comment: ")] = 'T';
    assert_int_equal(verify_text(&k, msg, bad), -EBADMSG);
    free(bad);
    /* Another key: its id does not match; the right id with the wrong key
     * does not verify either. */
    assert_int_equal(verify_text(&ko, msg, sig), -EBADMSG);
    struct vs_minisign_key forged = ko;
    memcpy(forged.id, k.id, sizeof k.id);
    assert_int_equal(verify_text(&forged, msg, sig), -EBADMSG);
    assert_int_equal(verify_text(&forged, msg, legacy), -EBADMSG);

    free(msg2), free(sig), free(legacy), free(missing);
    free(file), free(sig_path), free(legacy_path);
    vs_test_keypair_free(&kp), vs_test_keypair_free(&other);
    vs_scratch_free(root);
}

/* The key id as minisign prints it in the .pub file's comment. */
static void pub_id(const char *pub, char out[17])
{
    char *text = vs_slurp(pub);
    const char *p = strstr(text, "public key ");
    assert_non_null(p);
    /* the comment writes the id without leading zeros */
    unsigned long long id = strtoull(p + strlen("public key "), NULL, 16);
    snprintf(out, 17, "%016llX", id);
    free(text);
}

static void test_image_verify(void **state)
{
    (void)state;
    if (!vs_test_minisign_present()) {
        skip();
    }
    char *root = vs_scratch_dir("image-verify");
    char *tree = vs_path(root, "rootfs");
    assert_int_equal(mkdir(tree, 0755), 0);
    sample_tree(tree);
    char d[VS_IMAGE_DIGEST_LEN], why[256];
    digest(tree, d);

    struct vs_test_keypair kp, other;
    vs_test_keypair_make(root, "op", &kp);
    vs_test_keypair_make(root, "other", &other);
    char *sig = vs_test_sign_digest(&kp, root, d, "image sample");
    struct vs_minisign_key keys[2];
    assert_int_equal(vs_minisign_key_load(other.pub, &keys[0]), 0);
    assert_int_equal(vs_minisign_key_load(kp.pub, &keys[1]), 0);

    int rc = vs_image_verify(tree, d, sig, strlen(sig), keys, 2, why, sizeof why);
    if (rc != 0) {
        print_message("verify: %s\n", why);
    }
    assert_int_equal(rc, 0);

    /* Only the other key is trusted. */
    char id[17], want[256];
    pub_id(kp.pub, id);
    snprintf(want, sizeof want, "signed by an untrusted key (id %s)", id);
    assert_int_equal(vs_image_verify(tree, d, sig, strlen(sig), keys, 1, why, sizeof why),
                     -EBADMSG);
    assert_string_equal(why, want);
    assert_int_equal(vs_image_verify(tree, d, sig, strlen(sig), NULL, 0, why, sizeof why),
                     -EBADMSG);

    /* The signature is of another digest than the one expected. */
    char other_d[VS_IMAGE_DIGEST_LEN];
    snprintf(other_d, sizeof other_d, "%s", d);
    other_d[10] = other_d[10] == '0' ? '1' : '0';
    assert_int_equal(vs_image_verify(tree, other_d, sig, strlen(sig), keys, 2, why, sizeof why),
                     -EBADMSG);
    assert_string_equal(why, "signature does not verify");

    /* The tree changed after signing. */
    put(tree, "etc/passwd", "root::0:0::/root:/bin/sh\n", 0644);
    char now[VS_IMAGE_DIGEST_LEN];
    digest(tree, now);
    snprintf(want, sizeof want, "digest mismatch: expected %s, found %s", d, now);
    assert_int_equal(vs_image_verify(tree, d, sig, strlen(sig), keys, 2, why, sizeof why),
                     -EBADMSG);
    assert_string_equal(why, want);

    /* Malformed input. */
    assert_int_equal(
        vs_image_verify(tree, "sha256:abc", sig, strlen(sig), keys, 2, why, sizeof why), -EINVAL);
    assert_int_equal(vs_image_verify(tree, d, "garbage", 7, keys, 2, why, sizeof why), -EINVAL);

    free(sig), free(tree);
    vs_test_keypair_free(&kp), vs_test_keypair_free(&other);
    vs_scratch_free(root);
}

/* ---- OCI layouts ------------------------------------------------------------------- */

static const struct vs_test_member BASE[] = {
    {"./", VS_MEMBER_DIR, 0700, NULL}, /* the root entry: skipped */
    {"bin/", VS_MEMBER_DIR, 0755, NULL},
    {"bin/sh", VS_MEMBER_FILE, 0755, "hi\n"},
    {"bin/busybox", VS_MEMBER_SYMLINK, 0777, "sh"},
    {"bin/sh2", VS_MEMBER_HARDLINK, 0755, "bin/sh"},
    {"bin/su", VS_MEMBER_FILE, 04755, "su\n"}, /* setuid: stripped */
    {"bin/fifo", VS_MEMBER_FIFO, 0644, NULL},  /* skipped */
    {"etc/", VS_MEMBER_DIR, 0755, NULL},
    {"etc/passwd", VS_MEMBER_FILE, 0644, "root:x:0:0::/root:/bin/sh\n"},
    {"etc/gone", VS_MEMBER_FILE, 0644, "deleted by the next layer\n"},
    {"etc/subdir/", VS_MEMBER_DIR, 0755, NULL},
    {"etc/subdir/file", VS_MEMBER_FILE, 0644, "a directory the next layer replaces by a file\n"},
    {"opq/", VS_MEMBER_DIR, 0755, NULL},
    {"opq/old1", VS_MEMBER_FILE, 0644, "hidden by the opaque whiteout\n"},
    {"opq/olddir/", VS_MEMBER_DIR, 0555, NULL},
    {"opq/olddir/old2", VS_MEMBER_FILE, 0644, "hidden too\n"},
};

static const struct vs_test_member TOP[] = {
    {"bin/sh2", VS_MEMBER_FILE, 0755, "sh2 now\n"}, /* replaces the hard link, not bin/sh */
    {"etc/", VS_MEMBER_DIR, 0750, NULL},            /* the directory's mode changes */
    {"etc/.wh.gone", VS_MEMBER_FILE, 0644, ""},
    {"etc/new", VS_MEMBER_FILE, 0600, "new\n"},
    {"etc/subdir", VS_MEMBER_FILE, 0644, "now a file\n"},
    {"opq/", VS_MEMBER_DIR, 0755, NULL},
    {"opq/kept", VS_MEMBER_FILE, 0644, "of this layer: stays\n"}, /* before the marker */
    {"opq/.wh..wh..opq", VS_MEMBER_FILE, 0644, ""},
};

/* The tree BASE + TOP must give, made directly. */
static void expected_tree(const char *root)
{
    dir(root, "bin", 0755);
    put(root, "bin/sh", "hi\n", 0755);
    link_to(root, "bin/busybox", "sh");
    put(root, "bin/sh2", "sh2 now\n", 0755);
    put(root, "bin/su", "su\n", 0755);
    dir(root, "etc", 0750);
    put(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644);
    put(root, "etc/new", "new\n", 0600);
    put(root, "etc/subdir", "now a file\n", 0644);
    dir(root, "opq", 0755);
    put(root, "opq/kept", "of this layer: stays\n", 0644);
}

static void test_oci_unpack(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-oci");
    const struct vs_test_layer layers[] = {VS_TEST_LAYER(BASE, true), VS_TEST_LAYER(TOP, false)};
    char *layout = vs_test_make_layout(root, "layout", layers, 2);
    char *cache = vs_path(root, "cache"), *want = vs_path(root, "want");
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(mkdir(want, 0755), 0);
    expected_tree(want);

    char rootfs[PATH_MAX], d[VS_IMAGE_DIGEST_LEN], dw[VS_IMAGE_DIGEST_LEN], why[512] = "";
    int rc = vs_image_unpack_oci(layout, cache, rootfs, d, why, sizeof why);
    if (rc != 0) {
        print_message("unpack: %s\n", why);
    }
    assert_int_equal(rc, 0);

    char real[PATH_MAX];
    assert_non_null(realpath(cache, real));
    assert_int_equal(strncmp(rootfs, real, strlen(real)), 0);
    assert_string_equal(rootfs + strlen(rootfs) - strlen("/rootfs"), "/rootfs");
    assert_int_equal(count_entries(cache), 1); /* <hex> only: no temporary left */
    assert_int_equal(mode_of(rootfs, ""), 0755);

    assert_false(exists(rootfs, "etc/gone"));
    assert_false(exists(rootfs, "opq/old1"));
    assert_false(exists(rootfs, "opq/olddir"));
    assert_false(exists(rootfs, "bin/fifo"));
    assert_false(exists(rootfs, "etc/.wh.gone"));
    assert_false(exists(rootfs, "opq/.wh..wh..opq"));
    assert_true(exists(rootfs, "opq/kept"));
    assert_int_equal(mode_of(rootfs, "bin/su"), 0755);
    assert_int_equal(mode_of(rootfs, "etc"), 0750);
    assert_int_equal(mode_of(rootfs, "etc/new"), 0600);

    digest(want, dw);
    assert_string_equal(d, dw);

    /* A cache hit: the same tree, untouched; the digest is optional. */
    struct stat before, after;
    char *sh = vs_path(rootfs, "bin/sh");
    assert_int_equal(stat(sh, &before), 0);
    char rootfs2[PATH_MAX], d2[VS_IMAGE_DIGEST_LEN];
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs2, d2, why, sizeof why), 0);
    assert_string_equal(rootfs2, rootfs);
    assert_string_equal(d2, d);
    assert_int_equal(stat(sh, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs2, NULL, why, sizeof why), 0);
    assert_int_equal(count_entries(cache), 1);

    free(sh), free(layout), free(cache), free(want);
    vs_scratch_free(root);
}

/* Unpack a layout that must be refused with rc; the cache stays empty. */
static void refused(const char *root, const char *name, const struct vs_test_layer *layers,
                    size_t n, int want_rc, const char *why_has)
{
    char *layout = vs_test_make_layout(root, name, layers, n);
    char cache_name[64];
    snprintf(cache_name, sizeof cache_name, "cache-%s", name);
    char *cache = vs_path(root, cache_name);
    assert_int_equal(mkdir(cache, 0700), 0);
    char rootfs[PATH_MAX], d[VS_IMAGE_DIGEST_LEN], why[512] = "";
    int rc = vs_image_unpack_oci(layout, cache, rootfs, d, why, sizeof why);
    if (rc != want_rc || strstr(why, why_has) == NULL) {
        print_message("%s: %d %s\n", name, rc, why);
    }
    assert_int_equal(rc, want_rc);
    assert_non_null(strstr(why, why_has));
    assert_int_equal(count_entries(cache), 0);
    free(layout);
    free(cache);
}

static void test_oci_refusals(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-oci-bad");
    char *outside = vs_path(root, "outside");
    assert_int_equal(mkdir(outside, 0755), 0);
    put(outside, "target", "host file\n", 0644);

    /* A layer whose blob is not what its descriptor says. */
    struct vs_test_layer lie = VS_TEST_LAYER(BASE, true);
    lie.lie_digest = true;
    const struct vs_test_layer bad_digest[] = {VS_TEST_LAYER(TOP, false), lie};
    refused(root, "digest", bad_digest, 2, -EBADMSG, "its descriptor says");

    /* "..", however spelled. */
    const struct vs_test_member dotdot[] = {{"a/", VS_MEMBER_DIR, 0755, NULL},
                                            {"a/../../escape", VS_MEMBER_FILE, 0644, "out\n"}};
    const struct vs_test_layer l_dotdot[] = {VS_TEST_LAYER(dotdot, false)};
    refused(root, "dotdot", l_dotdot, 1, -EPERM, "outside the image");
    assert_false(exists(root, "escape"));

    /* An absolute name, pointing where a missing check would write. */
    char abs_name[PATH_MAX];
    snprintf(abs_name, sizeof abs_name, "%s/abs-escape", outside);
    const struct vs_test_member absolute[] = {{abs_name, VS_MEMBER_FILE, 0644, "out\n"}};
    const struct vs_test_layer l_abs[] = {VS_TEST_LAYER(absolute, true)};
    refused(root, "absolute", l_abs, 1, -EPERM, "outside the image");
    assert_false(exists(outside, "abs-escape"));

    /* A symlink to outside, then a write through it in the next layer. */
    const struct vs_test_member sym[] = {{"evil", VS_MEMBER_SYMLINK, 0777, outside}};
    const struct vs_test_member through[] = {{"evil/pwned", VS_MEMBER_FILE, 0644, "out\n"}};
    const struct vs_test_layer l_through[] = {VS_TEST_LAYER(sym, false),
                                              VS_TEST_LAYER(through, false)};
    refused(root, "through", l_through, 2, -EPERM, "evil/pwned");
    assert_false(exists(outside, "pwned"));

    /* The same in one layer, and a hard link through the symlink. */
    const struct vs_test_member both[] = {{"evil", VS_MEMBER_SYMLINK, 0777, outside},
                                          {"evil/pwned", VS_MEMBER_FILE, 0644, "out\n"}};
    const struct vs_test_layer l_both[] = {VS_TEST_LAYER(both, true)};
    refused(root, "both", l_both, 1, -EPERM, "evil/pwned");
    assert_false(exists(outside, "pwned"));
    const struct vs_test_member hard[] = {{"evil", VS_MEMBER_SYMLINK, 0777, outside},
                                          {"hl", VS_MEMBER_HARDLINK, 0644, "evil/target"}};
    const struct vs_test_layer l_hard[] = {VS_TEST_LAYER(hard, false)};
    refused(root, "hard", l_hard, 1, -EPERM, "hl");
    const struct vs_test_member hard_up[] = {{"hl", VS_MEMBER_HARDLINK, 0644, "../outside/target"}};
    const struct vs_test_layer l_hard_up[] = {VS_TEST_LAYER(hard_up, false)};
    refused(root, "hardup", l_hard_up, 1, -EPERM, "outside the image");
    struct stat st;
    char *target = vs_path(outside, "target");
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(count_entries(outside), 1);

    free(target), free(outside);
    vs_scratch_free(root);
}

/* A member streamed from a host file (as a test puts a real binary into an
 * image): a few MiB of bytes of every value, gzip'd, arrive unchanged. */
static void test_oci_host_file(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-oci-host");
    char *src = vs_path(root, "prog");
    const size_t size = 3 * 1024 * 1024 + 17;
    unsigned char *bytes = malloc(size);
    assert_non_null(bytes);
    randombytes_buf(bytes, size);
    int fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, size), (ssize_t)size);
    close(fd);
    free(bytes);

    const struct vs_test_member prog[] = {{"bin/", VS_MEMBER_DIR, 0755, NULL},
                                          {"bin/prog", VS_MEMBER_HOST_FILE, 0755, src}};
    const struct vs_test_layer layers[] = {VS_TEST_LAYER(prog, true)};
    char *layout = vs_test_make_layout(root, "layout", layers, 1);
    char *cache = vs_path(root, "cache"), *want = vs_path(root, "want");
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(mkdir(want, 0755), 0);
    dir(want, "bin", 0755);
    char *want_prog = vs_path(want, "bin/prog");
    assert_int_equal(vs_copy_file(src, want_prog, 0755), 0);

    char rootfs[PATH_MAX], d[VS_IMAGE_DIGEST_LEN], dw[VS_IMAGE_DIGEST_LEN], why[512] = "";
    int rc = vs_image_unpack_oci(layout, cache, rootfs, d, why, sizeof why);
    if (rc != 0) {
        print_message("unpack: %s\n", why);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(mode_of(rootfs, "bin/prog"), 0755);
    digest(want, dw);
    assert_string_equal(d, dw);

    free(want_prog), free(want), free(cache), free(layout), free(src);
    vs_scratch_free(root);
}

/* What the layout itself may get wrong. */
static void test_oci_layout_errors(void **state)
{
    (void)state;
    char *root = vs_scratch_dir("image-oci-layout");
    const struct vs_test_layer layers[] = {VS_TEST_LAYER(TOP, false)};
    char *layout = vs_test_make_layout(root, "layout", layers, 1);
    char *cache = vs_path(root, "cache");
    assert_int_equal(mkdir(cache, 0700), 0);
    char rootfs[PATH_MAX], why[512], path[PATH_MAX];

    /* Two manifests. */
    snprintf(path, sizeof path, "%s/index.json", layout);
    char *index = vs_slurp(path);
    char *m = strstr(index, "[") + 1;
    char *end = strrchr(index, ']');
    *end = '\0';
    assert_int_equal(vs_write_file(path, "{\"schemaVersion\":2,\"manifests\":[%s,%s]}", m, m), 0);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs, NULL, why, sizeof why), -ENOTSUP);
    assert_non_null(strstr(why, "2 manifests"));
    /* Not JSON. */
    assert_int_equal(vs_write_file(path, "{\"manifests\":"), 0);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs, NULL, why, sizeof why), -EINVAL);
    /* Another layout version. */
    assert_int_equal(vs_write_file(path, "{\"schemaVersion\":2,\"manifests\":[%s]}", m), 0);
    snprintf(path, sizeof path, "%s/oci-layout", layout);
    assert_int_equal(vs_write_file(path, "{\"imageLayoutVersion\":\"2.0.0\"}"), 0);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs, NULL, why, sizeof why), -ENOTSUP);
    assert_int_equal(vs_write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}"), 0);
    assert_int_equal(vs_image_unpack_oci(layout, cache, rootfs, NULL, why, sizeof why), 0);
    /* No cache directory. */
    char *nocache = vs_path(root, "nocache");
    assert_int_equal(vs_image_unpack_oci(layout, nocache, rootfs, NULL, why, sizeof why), -ENOENT);

    free(index), free(layout), free(cache), free(nocache);
    vs_scratch_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_documented_example),
        cmocka_unit_test(test_digest_python_equivalent),
        cmocka_unit_test(test_digest_stable_and_sensitive),
        cmocka_unit_test(test_digest_refusals),
        cmocka_unit_test(test_minisign_vectors),
        cmocka_unit_test(test_minisign_tool),
        cmocka_unit_test(test_image_verify),
        cmocka_unit_test(test_oci_unpack),
        cmocka_unit_test(test_oci_refusals),
        cmocka_unit_test(test_oci_host_file),
        cmocka_unit_test(test_oci_layout_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
