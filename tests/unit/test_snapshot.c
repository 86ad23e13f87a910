/*
 * test_snapshot.c - the output snapshot writer (sandboxd/src/snapshot.c):
 * a tree with files, subdirectories, symlinks (to a host file and to a
 * host directory), a fifo and over-long names is written as ustar and read
 * back with libarchive, the reader requesters use through `tar`.
 *
 * Checked: every regular file arrives with its bytes and permission bits,
 * directories as directories, no symlink is followed or stored, the fifo
 * is skipped without blocking, owners and times are zero, names of up to
 * 255 bytes survive (prefix + name) and longer ones are skipped, the size
 * limit leaves out whole files and says so, and the trailer counts all of
 * it.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "snapshot.h"

#define MAX_SEEN 64

struct seen {
    char path[300];
    char type;          /* 'f' file, 'd' directory, 'o' other */
    unsigned mode;
    char *data;
    size_t len;
    long long uid, mtime;
};

struct tarball {
    struct seen e[MAX_SEEN];
    size_t n;
};

static void tarball_free(struct tarball *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].data);
    t->n = 0;
}

/* Read the ustar file at path with libarchive. */
static void read_tar(const char *path, struct tarball *t)
{
    struct archive *a = archive_read_new();
    assert_non_null(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_filename(a, path, 10240), ARCHIVE_OK);
    struct archive_entry *ae;
    t->n = 0;
    while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
        assert_true(t->n < MAX_SEEN);
        struct seen *s = &t->e[t->n++];
        snprintf(s->path, sizeof s->path, "%s", archive_entry_pathname(ae));
        mode_t type = archive_entry_filetype(ae);
        s->type = type == AE_IFREG ? 'f' : type == AE_IFDIR ? 'd' : 'o';
        s->mode = (unsigned)(archive_entry_perm(ae) & 07777);
        s->uid = (long long)archive_entry_uid(ae);
        s->mtime = (long long)archive_entry_mtime(ae);
        s->len = (size_t)archive_entry_size(ae);
        s->data = malloc(s->len + 1);
        assert_non_null(s->data);
        assert_int_equal(archive_read_data(a, s->data, s->len), (la_ssize_t)s->len);
        s->data[s->len] = '\0';
    }
    archive_read_free(a);
}

static const struct seen *find(const struct tarball *t, const char *path)
{
    const struct seen *last = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].path, path) == 0)
            last = &t->e[i];
    return last;
}

static void put(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char *p = vs_path(dir, rel);
    assert_int_equal(vs_write_file(p, "%s", text), 0);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

/* Snapshot dir with max into a file in scratch, read it back. */
static void snapshot(const char *dir, const char *scratch, uint64_t max, struct tarball *t,
                     struct vs_snapshot_stats *st)
{
    char *out = vs_path(scratch, "snapshot.tar");
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(vs_snapshot_write(dir, fd, max, st), 0);
    close(fd);
    read_tar(out, t);
    free(out);
}

static void test_tree(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-snapshot");
    char *out = vs_path(scratch, "out");
    assert_int_equal(mkdir(out, 0755), 0);
    put(out, "result.txt", "forty-two\n", 0644);
    put(out, "run.sh", "#!/bin/sh\necho hi\n", 0755);
    char *sub = vs_path(out, "deep");
    assert_int_equal(mkdir(sub, 0700), 0);
    put(sub, "data.bin", "\x01\x02\x03 binary", 0600);
    char *link = vs_path(out, "passwd");
    assert_int_equal(symlink("/etc/passwd", link), 0);
    char *dlink = vs_path(out, "etc");
    assert_int_equal(symlink("/etc", dlink), 0);
    char *fifo = vs_path(out, "pipe");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* 150 + 1 + 99 bytes: needs ustar's prefix; 300 bytes: too long */
    char longdir[160], longname[120], path[400];
    memset(longdir, 'd', 150);
    longdir[150] = '\0';
    memset(longname, 'n', 99);
    longname[99] = '\0';
    snprintf(path, sizeof path, "%s/%s", out, longdir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/%s/%s", out, longdir, longname);
    assert_int_equal(vs_write_file(path, "long"), 0);
    snprintf(path, sizeof path, "%s/%s/%s%s", out, longdir, longname, longname);
    assert_int_equal(vs_write_file(path, "too long"), 0);

    struct tarball t;
    struct vs_snapshot_stats st;
    snapshot(out, scratch, 1 << 20, &t, &st);
    const struct seen *s = find(&t, "result.txt");
    assert_non_null(s);
    assert_int_equal(s->type, 'f');
    assert_string_equal(s->data, "forty-two\n");
    assert_int_equal(s->mode, 0644);
    assert_int_equal(s->uid, 0);
    assert_int_equal(s->mtime, 0);
    assert_int_equal(find(&t, "run.sh")->mode, 0755);
    assert_int_equal(find(&t, "deep")->type, 'd');
    s = find(&t, "deep/data.bin");
    assert_non_null(s);
    assert_int_equal(s->len, 10);
    assert_memory_equal(s->data, "\x01\x02\x03 binary", 10);
    snprintf(path, sizeof path, "%s/%s", longdir, longname);
    assert_string_equal(find(&t, path)->data, "long");
    /* never stored, never followed */
    assert_null(find(&t, "passwd"));
    assert_null(find(&t, "etc"));
    assert_null(find(&t, "pipe"));
    for (size_t i = 0; i < t.n; i++) {
        assert_null(strstr(t.e[i].data, "root:"));
        assert_true(strncmp(t.e[i].path, "etc/", 4) != 0);
        assert_int_equal(t.e[i].type == 'o', 0);
    }
    assert_int_equal(st.files, 4);
    assert_int_equal(st.skipped, 4); /* two symlinks, the fifo, the long name */
    assert_false(st.truncated);
    const struct seen *tr = find(&t, VS_SNAPSHOT_TRAILER);
    assert_non_null(tr);
    assert_string_equal(tr->data, "files 4\nbytes 42\nskipped 4\ntruncated 0\n");
    tarball_free(&t);

    /* the size limit: files are taken whole or not at all */
    snapshot(out, scratch, 20, &t, &st);
    assert_true(st.truncated);
    assert_true(st.bytes <= 20);
    for (size_t i = 0; i < t.n; i++)
        if (t.e[i].type == 'f' && strcmp(t.e[i].path, VS_SNAPSHOT_TRAILER) != 0)
            assert_non_null(find(&t, t.e[i].path));
    assert_non_null(strstr(find(&t, VS_SNAPSHOT_TRAILER)->data, "truncated 1"));
    tarball_free(&t);

    free(fifo);
    free(dlink);
    free(link);
    free(sub);
    free(out);
    vs_scratch_free(scratch);
}

static void test_refusals(void **state)
{
    (void)state;
    struct vs_snapshot_stats st;
    char *scratch = vs_scratch_dir("vs-snapshot");
    char *missing = vs_path(scratch, "nope");
    assert_int_equal(vs_snapshot_write(missing, 1, 100, &st), -ENOENT);
    /* the snapshot's root itself may not be a symlink */
    char *link = vs_path(scratch, "link");
    assert_int_equal(symlink("/etc", link), 0);
    assert_int_equal(vs_snapshot_write(link, 1, 100, &st), -ENOTDIR);
    /* a write error ends the stream */
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(vs_snapshot_write(scratch, p[1], 100, &st), -EPIPE);
    close(p[1]);
    free(link);
    free(missing);
    vs_scratch_free(scratch);
}

/* vs_snapshot_append: an entry after the walk's, read back by libarchive;
 * a stream without its end blocks, a name beyond ustar and too small a
 * buffer are refused and leave it as it was. */
static void test_append(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-snapshot-append");
    char *dir = vs_path(scratch, "out"), *path = vs_path(scratch, "appended.tar");
    assert_int_equal(mkdir(dir, 0755), 0);
    put(dir, "a.txt", "alpha\n", 0644);
    struct tarball t;
    struct vs_snapshot_stats st;
    snapshot(dir, scratch, 1 << 20, &t, &st);
    tarball_free(&t);
    char *tar_path = vs_path(scratch, "snapshot.tar");
    size_t used = 0, cap = 64 * 1024;
    uint8_t *buf = calloc(1, cap);
    int fd = open(tar_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    close(fd);
    assert_true(n > 1024);
    used = (size_t)n;

    const char text[] = "agent: 700 bytes of output would be longer, this is enough\n";
    assert_int_equal(vs_snapshot_append(buf, &used, used + 600, ".vs-agent-output", text,
                                        sizeof text - 1),
                     -ENOSPC); /* header + a block + the end blocks do not fit */
    assert_int_equal(used, (size_t)n);
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(vs_snapshot_append(buf, &used, cap, long_name, text, 3), -EINVAL);
    size_t cut = used - 512;
    assert_int_equal(vs_snapshot_append(buf, &cut, cap, "x", text, 3), -EINVAL);
    assert_int_equal(vs_snapshot_append(buf, &used, cap, ".vs-agent-output", text, sizeof text - 1),
                     0);
    assert_int_equal(used, (size_t)n + 512 + 512);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_int_equal(write(fd, buf, used), (ssize_t)used);
    close(fd);
    read_tar(path, &t);
    assert_string_equal(t.e[t.n - 1].path, ".vs-agent-output");
    assert_string_equal(t.e[t.n - 1].data, text);
    assert_int_equal(t.e[t.n - 1].mode, 0444);
    assert_string_equal(find(&t, "a.txt")->data, "alpha\n");
    assert_non_null(find(&t, VS_SNAPSHOT_TRAILER));
    tarball_free(&t);
    free(buf);
    free(tar_path);
    free(path);
    free(dir);
    vs_scratch_free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
