/*
 * snapshot.c - see snapshot.h: a bounded ustar stream of the regular files
 * below a directory, walked with openat/O_NOFOLLOW, with no allocation.
 *
 * The walk keeps one descriptor per directory level (bounded by
 * SNAPSHOT_MAX_DEPTH) and the path in a fixed buffer; getdents64 fills a
 * fixed buffer per level, so nothing here touches the heap.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snapshot.h"

#define BLOCK 512
#define NAME_MAX_USTAR 100
#define PREFIX_MAX_USTAR 155
#define PATH_MAX_USTAR (NAME_MAX_USTAR + 1 + PREFIX_MAX_USTAR)
#define SNAPSHOT_MAX_DEPTH 32
#define DENTS_BUF 4096

struct writer {
    int fd;
    uint64_t max;
    struct vs_snapshot_stats *st;
    char path[PATH_MAX_USTAR + 1];
    uint8_t io[16 * BLOCK];
};

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* An octal field of width w (w-1 digits and a NUL). */
static void octal(char *field, size_t w, uint64_t v)
{
    field[w - 1] = '\0';
    for (size_t i = w - 1; i > 0; i--) {
        field[i - 1] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

/* The header of path (type '0' file, '5' directory); false when the path
 * does not fit ustar's name and prefix. */
static bool header(uint8_t h[BLOCK], const char *path, char type, unsigned mode, uint64_t size)
{
    memset(h, 0, BLOCK);
    size_t len = strlen(path);
    const char *name = path;
    if (len > NAME_MAX_USTAR) {
        /* split at a '/' so that the prefix fits 155 and the name 100 */
        const char *cut = NULL;
        for (const char *s = strchr(path, '/'); s != NULL; s = strchr(s + 1, '/'))
            if ((size_t)(s - path) <= PREFIX_MAX_USTAR && len - (size_t)(s - path) - 1 <= NAME_MAX_USTAR)
                cut = s;
        if (cut == NULL)
            return false;
        memcpy(h + 345, path, (size_t)(cut - path));
        name = cut + 1;
    }
    memcpy(h, name, strlen(name));
    octal((char *)h + 100, 8, mode & 07777);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, size);
    octal((char *)h + 136, 12, 0);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += h[i];
    octal((char *)h + 148, 7, sum);
    h[155] = ' ';
    return true;
}

/* Copy exactly size bytes of fd into the stream, padded to a block. A
 * file that shrank while it was read is padded with zeros, one that grew
 * is cut: the header's size holds either way. */
static int copy_file(struct writer *w, int fd, uint64_t size)
{
    uint64_t left = size;
    while (left > 0) {
        size_t want = left < sizeof w->io ? (size_t)left : sizeof w->io;
        ssize_t n = read(fd, w->io, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            memset(w->io, 0, want);
            n = (ssize_t)want;
        }
        int rc = write_all(w->fd, w->io, (size_t)n);
        if (rc < 0)
            return rc;
        left -= (uint64_t)n;
    }
    size_t pad = (size_t)(BLOCK - size % BLOCK) % BLOCK;
    memset(w->io, 0, pad);
    return pad > 0 ? write_all(w->fd, w->io, pad) : 0;
}

static int walk(struct writer *w, int dfd, size_t plen, unsigned depth);

/* One entry of the directory dfd, its path in w->path[0..plen). */
static int entry(struct writer *w, int dfd, const char *name, size_t plen, unsigned depth)
{
    size_t nlen = strlen(name);
    size_t len = plen + (plen > 0 ? 1 : 0) + nlen;
    if (len > PATH_MAX_USTAR) {
        w->st->skipped++;
        return 0;
    }
    if (plen > 0)
        w->path[plen] = '/';
    memcpy(w->path + len - nlen, name, nlen + 1);
    /* Only directories and regular files are opened (a device or fifo is
     * never touched); O_NOFOLLOW makes a symlink swapped in meanwhile fail
     * (ELOOP) instead of being followed, and fstat checks what was opened. */
    struct stat st;
    int fd = -1;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        w->st->skipped++;
        return 0;
    }
    uint8_t h[BLOCK];
    int rc = 0;
    if (S_ISDIR(st.st_mode) && depth < SNAPSHOT_MAX_DEPTH) {
        if (header(h, w->path, '5', st.st_mode, 0))
            rc = write_all(w->fd, h, BLOCK);
        if (rc == 0)
            rc = walk(w, fd, len, depth + 1); /* takes fd */
        else
            close(fd);
    } else if (S_ISREG(st.st_mode) && !w->st->truncated) {
        uint64_t size = (uint64_t)st.st_size;
        if (size > w->max - w->st->bytes) {
            w->st->truncated = true;
        } else if (header(h, w->path, '0', st.st_mode, size)) {
            rc = write_all(w->fd, h, BLOCK);
            rc = rc == 0 ? copy_file(w, fd, size) : rc;
            w->st->files++;
            w->st->bytes += size;
        } else {
            w->st->skipped++;
        }
        close(fd);
    } else {
        if (!S_ISREG(st.st_mode))
            w->st->skipped++;
        close(fd);
    }
    w->path[plen] = '\0';
    return rc;
}

/* Every entry of the directory fd (path w->path[0..plen)); takes fd. */
static int walk(struct writer *w, int fd, size_t plen, unsigned depth)
{
    char buf[DENTS_BUF];
    int rc = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        for (long off = 0; off < n && rc == 0;) {
            const struct dirent64 *de = (const struct dirent64 *)(const void *)(buf + off);
            off += de->d_reclen;
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                rc = entry(w, fd, de->d_name, plen, depth);
        }
        if (rc < 0)
            break;
    }
    close(fd);
    return rc;
}

/* The last entry, VS_SNAPSHOT_TRAILER: what the walk took and left. */
static int trailer(struct writer *w)
{
    char text[160];
    int n = snprintf(text, sizeof text, "files %llu\nbytes %llu\nskipped %llu\ntruncated %d\n",
                     (unsigned long long)w->st->files, (unsigned long long)w->st->bytes,
                     (unsigned long long)w->st->skipped, w->st->truncated ? 1 : 0);
    uint8_t h[BLOCK];
    header(h, VS_SNAPSHOT_TRAILER, '0', 0444, (uint64_t)n);
    int rc = write_all(w->fd, h, BLOCK);
    memset(w->io, 0, BLOCK);
    memcpy(w->io, text, (size_t)n);
    return rc == 0 ? write_all(w->fd, w->io, BLOCK) : rc;
}

int vs_snapshot_write(const char *dir, int fd, uint64_t max_bytes, struct vs_snapshot_stats *st)
{
    static struct writer w; /* large (the I/O buffer); one snapshot per process */
    *st = (struct vs_snapshot_stats){.files = 0};
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    w.fd = fd;
    w.max = max_bytes;
    w.st = st;
    w.path[0] = '\0';
    int rc = walk(&w, dfd, 0, 0);
    if (rc == 0)
        rc = trailer(&w);
    if (rc == 0) {
        memset(w.io, 0, 2 * BLOCK);
        rc = write_all(fd, w.io, 2 * BLOCK);
    }
    return rc;
}

int vs_snapshot_append(uint8_t *buf, size_t *used, size_t cap, const char *name, const void *data,
                       size_t len)
{
    static const uint8_t zero[2 * BLOCK];
    if (*used < sizeof zero || *used % BLOCK != 0 ||
        memcmp(buf + *used - sizeof zero, zero, sizeof zero) != 0)
        return -EINVAL;
    size_t at = *used - sizeof zero, padded = (len + BLOCK - 1) / BLOCK * BLOCK;
    if (cap - at < BLOCK + padded + sizeof zero)
        return -ENOSPC;
    uint8_t h[BLOCK];
    if (!header(h, name, '0', 0444, len))
        return -EINVAL;
    memcpy(buf + at, h, BLOCK);
    memcpy(buf + at + BLOCK, data, len);
    memset(buf + at + BLOCK + len, 0, padded - len + sizeof zero);
    *used = at + BLOCK + padded + sizeof zero;
    return 0;
}
