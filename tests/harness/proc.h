/*
 * proc.h - child processes for integration tests and benchmarks: daemons,
 * servers and one-shot programs started with PR_SET_PDEATHSIG (they die
 * with the test), their output captured in files, stopped and reaped with a
 * deadline, and their /proc status read back; plus the scratch files and
 * directories they work in.
 *
 * Why one place: every integration test and daemon benchmark forks
 * programs the same way (clean stdio, no inherited descriptors, die with
 * the parent) and reads back what they wrote; a copy per test drifted.
 * Nothing here asserts, so the benchmarks can use it too; the functions
 * return 0 or -errno (or NULL) and the tests assert on that.
 */
#ifndef VS_TEST_PROC_H
#define VS_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- starting ------------------------------------------------------------------ */

/* How to start a program. */
struct vs_spawn {
    const char *const *argv;   /* argv[0]: absolute path */
    const char *const *env;    /* NULL: inherit */
    const char *out, *err;     /* stdout / stderr into these files, created 0600 (NULL:
                                  inherited); the same path for both: one file */
    bool append;               /* append to them (default: truncate) */
    /* Runs in the child once stdio is in place, before the other descriptors
     * are closed and argv[0] is executed; < 0: the child exits 127. */
    int (*child)(void *arg);
    void *arg;
    int keep_fd;               /* a descriptor above 2 that `child` set up for the program */
};

/* Start a program as described. Returns the pid or -errno. */
pid_t vs_proc_start(const struct vs_spawn *s);
/* Start argv[0] (absolute path) with argv; env NULL inherits. stderr_path,
 * when set, receives the child's stderr (and stdout), appended. Returns the
 * pid or -errno. */
pid_t vs_proc_spawn(const char *const *argv, const char *const *env, const char *stderr_path);

/* ---- waiting and stopping ------------------------------------------------------ */

bool vs_proc_alive(pid_t pid);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; reaps. Returns the wait
 * status, or -1 when it had to be killed. */
int vs_proc_stop(pid_t pid, int timeout_ms);
/* SIGKILL and reap. */
void vs_proc_kill(pid_t pid);
/* Wait for exit up to timeout_ms; returns the wait status or -ETIMEDOUT. */
int vs_proc_wait(pid_t pid, int timeout_ms);
/* The value of a "Name:\tvalue" line of /proc/PID/status into out. */
int vs_proc_status_field(pid_t pid, const char *name, char *out, size_t size);

/* A finished one-shot run: its exit status and what it wrote. */
struct vs_run {
    int status;                /* exit status; 128 + N when killed by signal N; -1:
                                  killed at the deadline */
    char *out, *err;           /* stdout and stderr as read back (never NULL) */
};

/* Wait up to timeout_ms for pid (started with out and err as its stdout and
 * stderr), calling idle(arg, 20) between looks (idle NULL: sleeping 10 ms
 * instead); SIGKILL at the deadline. Then reads both files into r. */
void vs_run_finish(pid_t pid, int timeout_ms, void (*idle)(void *arg, int ms), void *arg,
                   const char *out, const char *err, struct vs_run *r);
void vs_run_free(struct vs_run *r);

/* ---- files --------------------------------------------------------------------- */

/* Poll until the file contains needle (up to timeout_ms). 0 or -ETIMEDOUT. */
int vs_wait_file_contains(const char *path, const char *needle, int timeout_ms);
/* Count the lines of path that contain needle. */
int vs_file_count(const char *path, const char *needle);
/* The whole file, NUL-terminated, malloc'd; "" when it cannot be read. */
char *vs_slurp(const char *path);
/* Write (create or truncate) path with the formatted text. 0 or -errno. */
int vs_write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A new directory $TMPDIR/<name>.XXXXXX (/tmp when TMPDIR is unset or
 * empty), malloc'd; NULL with errno set when it cannot be made. */
char *vs_scratch_dir(const char *name);
/* vs_rmtree, then free: the end of a vs_scratch_dir (NULL: nothing). */
void vs_scratch_free(char *dir);
/* dir/name, malloc'd (aborts when out of memory). */
char *vs_path(const char *dir, const char *name);
/* name in $PATH or the usual system directories (ctest may run with a PATH
 * without sbin, where Debian puts runc) into out; false when absent. */
bool vs_find_program(const char *name, char *out, size_t size);
/* Copy src to dst (created or truncated) with mode. 0 or -1. */
int vs_copy_file(const char *src, const char *dst, mode_t mode);
/* Remove a directory tree (test scratch directories); NULL or "": nothing. */
void vs_rmtree(const char *dir);

#endif
