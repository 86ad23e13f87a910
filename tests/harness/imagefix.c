/*
 * imagefix.c - see imagefix.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <sodium.h>

#include "imagefix.h"
#include "proc.h"

/* ---- minisign ------------------------------------------------------------------ */

bool vs_test_minisign_present(void)
{
    if (access(VS_TEST_MINISIGN, X_OK) == 0) {
        return true;
    }
    print_message("minisign is not installed (apt-get install -y minisign): "
                  "the cases that sign with the real tool are skipped\n");
    return false;
}

/* Run minisign with argv to completion, its output into log (removed
 * afterwards, shown when it fails); it must exit 0. */
static void run_minisign(const char *const *argv, const char *log)
{
    const struct vs_spawn s = {.argv = argv, .out = log, .err = log, .keep_fd = -1};
    pid_t pid = vs_proc_start(&s);
    assert_true(pid > 0);
    struct vs_run r;
    vs_run_finish(pid, 30000, NULL, NULL, log, log, &r);
    unlink(log);
    if (r.status != 0) {
        print_message("%s exited with %d: %s\n", VS_TEST_MINISIGN, r.status, r.out);
    }
    assert_int_equal(r.status, 0);
    vs_run_free(&r);
}

void vs_test_keypair_make(const char *dir, const char *name, struct vs_test_keypair *kp)
{
    char n[NAME_MAX + 1];
    assert_true((size_t)snprintf(n, sizeof n, "%s.pub", name) < sizeof n);
    kp->pub = vs_path(dir, n);
    snprintf(n, sizeof n, "%s.key", name);
    kp->sec = vs_path(dir, n);
    snprintf(n, sizeof n, "%s.minisign.log", name);
    char *log = vs_path(dir, n);
    const char *argv[] = {VS_TEST_MINISIGN, "-G", "-W", "-p", kp->pub, "-s", kp->sec, NULL};
    run_minisign(argv, log);
    free(log);
}

void vs_test_keypair_free(struct vs_test_keypair *kp)
{
    free(kp->pub);
    free(kp->sec);
    kp->pub = kp->sec = NULL;
}

char *vs_test_sign_file(const struct vs_test_keypair *kp, const char *file, const char *sig_path,
                        bool legacy, const char *comment)
{
    const char *argv[] = {
        VS_TEST_MINISIGN,     "-S", "-s", kp->sec, "-m", file, "-x", sig_path, "-t", comment,
        legacy ? "-l" : NULL, NULL};
    char log[PATH_MAX];
    assert_true((size_t)snprintf(log, sizeof log, "%s.log", sig_path) < sizeof log);
    run_minisign(argv, log);
    char *text = vs_slurp(sig_path);
    assert_true(strlen(text) > 0);
    return text;
}

char *vs_test_sign_digest(const struct vs_test_keypair *kp, const char *dir, const char *digest,
                          const char *comment)
{
    char file[PATH_MAX], sig_path[PATH_MAX];
    assert_true((size_t)snprintf(file, sizeof file, "%s/digest.XXXXXX", dir) < sizeof file);
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(vs_write_file(file, "%s\n", digest), 0);
    assert_true((size_t)snprintf(sig_path, sizeof sig_path, "%s.minisig", file) < sizeof sig_path);
    char *sig = vs_test_sign_file(kp, file, sig_path, false, comment);
    unlink(sig_path);
    unlink(file);
    return sig;
}

/* ---- OCI layouts --------------------------------------------------------------- */

/* Stream the host file path into the entry just written to a. */
static void write_host_file(struct archive *a, const char *path, int fd, off_t size)
{
    char buf[64 * 1024];
    off_t done = 0;
    for (ssize_t got; (got = read(fd, buf, sizeof buf)) != 0;) {
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            print_message("%s: %s\n", path, strerror(errno));
        }
        assert_true(got > 0);
        assert_int_equal(archive_write_data(a, buf, (size_t)got), got);
        done += got;
    }
    assert_int_equal(done, size); /* the file did not change while it was read */
}

void vs_test_write_layer(const char *path, bool gzip, const struct vs_test_member *m, size_t n)
{
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (gzip) {
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    }
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_perm(e, m[i].mode);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        int host_fd = -1;
        struct stat st = {0};
        switch (m[i].kind) {
        case VS_MEMBER_FILE:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(m[i].data));
            break;
        case VS_MEMBER_HOST_FILE:
            host_fd = open(m[i].data, O_RDONLY | O_CLOEXEC);
            if (host_fd < 0) {
                print_message("%s: %s\n", m[i].data, strerror(errno));
            }
            assert_true(host_fd >= 0);
            assert_int_equal(fstat(host_fd, &st), 0);
            assert_true(S_ISREG(st.st_mode));
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)st.st_size);
            break;
        case VS_MEMBER_DIR:
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case VS_MEMBER_SYMLINK:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, m[i].data);
            break;
        case VS_MEMBER_HARDLINK:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, m[i].data);
            break;
        case VS_MEMBER_FIFO:
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        }
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (m[i].kind == VS_MEMBER_FILE && strlen(m[i].data) > 0) {
            assert_int_equal(archive_write_data(a, m[i].data, strlen(m[i].data)),
                             (la_ssize_t)strlen(m[i].data));
        } else if (host_fd >= 0) {
            write_host_file(a, m[i].data, host_fd, st.st_size);
            close(host_fd);
        }
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

void vs_test_add_blob(const char *layout, const char *file, const char *media, bool lie_digest,
                      char *desc, size_t desc_size)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    unsigned char buf[64 * 1024];
    long long size = 0;
    for (ssize_t got; (got = read(fd, buf, sizeof buf)) != 0;) {
        assert_true(got > 0);
        crypto_hash_sha256_update(&h, buf, (unsigned long long)got);
        size += got;
    }
    close(fd);
    unsigned char sum[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&h, sum);
    if (lie_digest) {
        sum[0] ^= 1;
    }
    char hex[65], blob[PATH_MAX];
    sodium_bin2hex(hex, sizeof hex, sum, sizeof sum);
    assert_true((size_t)snprintf(blob, sizeof blob, "%s/blobs/sha256/%s", layout, hex) <
                sizeof blob);
    assert_int_equal(rename(file, blob), 0);
    assert_true((size_t)snprintf(desc, desc_size,
                                 "{\"mediaType\":\"%s\",\"digest\":\"sha256:%s\",\"size\":%lld}",
                                 media, hex, size) < desc_size);
}

char *vs_test_make_layout(const char *root, const char *name, const struct vs_test_layer *layers,
                          size_t n)
{
    char *layout = vs_path(root, name);
    char path[PATH_MAX], descs[8192] = "", desc[512], json[16384];
    size_t used = 0;
    assert_int_equal(mkdir(layout, 0755), 0);
    snprintf(path, sizeof path, "%s/blobs", layout);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/blobs/sha256", layout);
    assert_int_equal(mkdir(path, 0755), 0);

    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/layer.tmp", layout);
        vs_test_write_layer(path, layers[i].gzip, layers[i].m, layers[i].n);
        vs_test_add_blob(layout, path,
                         layers[i].gzip ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                        : "application/vnd.oci.image.layer.v1.tar",
                         layers[i].lie_digest, desc, sizeof desc);
        used += (size_t)snprintf(descs + used, sizeof descs - used, "%s%s", i > 0 ? "," : "", desc);
        assert_true(used < sizeof descs);
    }
    snprintf(path, sizeof path, "%s/config.tmp", layout);
    assert_int_equal(vs_write_file(path, "{\"architecture\":\"amd64\",\"os\":\"linux\","
                                         "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}"),
                     0);
    char config[512];
    vs_test_add_blob(layout, path, "application/vnd.oci.image.config.v1+json", false, config,
                     sizeof config);
    assert_true((size_t)snprintf(json, sizeof json,
                                 "{\"schemaVersion\":2,\"mediaType\":"
                                 "\"application/vnd.oci.image.manifest.v1+json\","
                                 "\"config\":%s,\"layers\":[%s]}",
                                 config, descs) < sizeof json);
    snprintf(path, sizeof path, "%s/manifest.tmp", layout);
    assert_int_equal(vs_write_file(path, "%s", json), 0);
    vs_test_add_blob(layout, path, "application/vnd.oci.image.manifest.v1+json", false, desc,
                     sizeof desc);
    snprintf(path, sizeof path, "%s/index.json", layout);
    assert_int_equal(vs_write_file(path, "{\"schemaVersion\":2,\"manifests\":[%s]}", desc), 0);
    snprintf(path, sizeof path, "%s/oci-layout", layout);
    assert_int_equal(vs_write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}"), 0);
    return layout;
}
