/*
 * outcome.c - see outcome.h.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>

#include "outcome.h"

void vs_outcome_status(int status, struct vs_sandbox_result *r)
{
    if (WIFEXITED(status))
        r->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r->signal = WTERMSIG(status);
}

enum vs_kill_reason vs_outcome_signal_reason(const struct vs_sandbox_policy *p,
                                             const struct vs_sandbox_result *r, uint64_t oom_kills)
{
    if (r->signal == SIGKILL && oom_kills > 0)
        return VS_KILL_MEMORY;
    if (r->signal == SIGSYS)
        return VS_KILL_SECCOMP;
    if (r->signal == SIGXCPU ||
        (r->signal == SIGKILL && p->cpu_limit_ms > 0 && r->cpu_ms + 50 >= p->cpu_limit_ms))
        return VS_KILL_CPU;
    return VS_KILL_NONE;
}

int vs_why(char *why, size_t why_len, int rc, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}
