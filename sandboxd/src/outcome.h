/*
 * outcome.h - what the launcher's backends (native: launch.c, Podman:
 * podman.c) and its image checks share to report an outcome: the
 * program's end read from its wait status, the kill reason a signal
 * implies, and a refusal's reason written for the caller.
 */
#ifndef VS_SANDBOX_OUTCOME_H
#define VS_SANDBOX_OUTCOME_H

#include <stddef.h>
#include <stdint.h>

#include "vs/sandbox.h"

/* The program's wait status into r->exit_code or r->signal. */
void vs_outcome_status(int status, struct vs_sandbox_result *r);
/* The kill reason r's signal implies, when no limit of the launcher's own
 * ended the program: memory (SIGKILL after an OOM kill in its cgroup),
 * seccomp (SIGSYS) or cpu (SIGXCPU, or SIGKILL at the cpu limit); else
 * VS_KILL_NONE. */
enum vs_kill_reason vs_outcome_signal_reason(const struct vs_sandbox_policy *p,
                                             const struct vs_sandbox_result *r, uint64_t oom_kills);
/* Write the formatted reason into why (when there is room); return rc. */
int vs_why(char *why, size_t why_len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
