/*
 * snapshot.h - the output snapshot of a sandbox: the regular files below
 * /workspace/out as one uncompressed ustar stream, written from inside the
 * sandbox (by its init, or by the Podman backend's init), never from a host
 * path.
 *
 * Why ustar, uncompressed: the exfil scanner reads the snapshot as bytes,
 * so every byte a file holds must appear as written - no compression, no
 * encoding - and the standard format lets a requester unpack the
 * deliverable with `tar -x`. Why no allocation: the writer runs in a
 * process cloned from a multi-threaded daemon without exec, where malloc's
 * locks may be held by threads that no longer exist.
 *
 * What it takes: directories and regular files, found with openat and
 * O_NOFOLLOW from the snapshot's root, so a symlink - to a host file or
 * anywhere else - is never followed, and a path swapped for a symlink
 * while the walk runs fails instead of leading out. Symlinks, devices,
 * fifos and sockets are skipped and counted. Content beyond max_bytes is
 * not written: the file that would cross the limit and everything after
 * it are left out, and the stream says so (truncated). Names longer than
 * ustar can hold (a 155-byte prefix and a 100-byte name) are skipped.
 * The walk's last entry is VS_SNAPSHOT_TRAILER, a text file of
 * "files N\nbytes N\nskipped N\ntruncated 0|1\n"; a reader takes the
 * last entry of that name (an agent may write one of its own earlier).
 * vs-sandboxd then appends VS_SNAPSHOT_AGENT_OUTPUT (vs_snapshot_append):
 * the tail of the agent's stdout and stderr, which it reads from outside,
 * so that whoever opens the deliverable sees why an agent failed, and the
 * exfil scan reads that output too.
 */
#ifndef VS_SNAPSHOT_H
#define VS_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#define VS_SNAPSHOT_TRAILER ".vs-snapshot"
#define VS_SNAPSHOT_AGENT_OUTPUT ".vs-agent-output"

struct vs_snapshot_stats {
    uint64_t files;        /* regular files written */
    uint64_t bytes;        /* their content bytes */
    uint64_t skipped;      /* entries left out: not a directory or regular file, or a name too long */
    bool truncated;        /* the size limit left files out */
};

/* Write the tree below dir to fd (a pipe or file) as ustar, ending with
 * the two zero blocks. Paths in the stream are relative ("a/b.txt"), the
 * mode is the file's permission bits, owner 0 and mtime 0 (nothing of the
 * host leaks through headers). 0, or -errno when dir cannot be opened or
 * fd cannot be written (a write error ends the stream). */
int vs_snapshot_write(const char *dir, int fd, uint64_t max_bytes, struct vs_snapshot_stats *st);

/* Append a file (mode 0444, owner 0, mtime 0) named name holding
 * data[0..len) to the ustar stream in buf[0..*used), which must end with
 * the two zero blocks, as vs_snapshot_write ends it: the entry replaces
 * them and they follow it. buf holds cap bytes. 0; -EINVAL when the
 * stream does not end so or the name does not fit ustar; -ENOSPC when cap
 * is too small (buf is then unchanged). */
int vs_snapshot_append(uint8_t *buf, size_t *used, size_t cap, const char *name, const void *data,
                       size_t len);

#endif
