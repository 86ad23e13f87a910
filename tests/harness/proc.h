/*
 * proc.h - child processes for integration tests: daemons and servers
 * started with PR_SET_PDEATHSIG (they die with the test), stopped and
 * reaped with a deadline, and their /proc status read back.
 */
#ifndef VS_TEST_PROC_H
#define VS_TEST_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* Start argv[0] (absolute path) with argv; env NULL inherits. stderr_path,
 * when set, receives the child's stderr (and stdout). Returns the pid or
 * -errno. */
pid_t vs_proc_spawn(const char *const *argv, const char *const *env, const char *stderr_path);
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
/* Poll until the file contains needle (up to timeout_ms). 0 or -ETIMEDOUT. */
int vs_wait_file_contains(const char *path, const char *needle, int timeout_ms);
/* Count the lines of path that contain needle. */
int vs_file_count(const char *path, const char *needle);

#endif
