/*
 * daemon.c - see daemon.h.
 */
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "busfix.h"
#include "daemon.h"

#define LOG_TAIL 8000
#define MAX_ARGS 40

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Run the bus for ms, or sleep when there is none. */
static void pause_ms(vs_bus *bus, int ms)
{
    if (bus != NULL) {
        vs_test_idle(bus, (uint64_t)ms);
    } else {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- a daemon -------------------------------------------------------------------- */

void vs_daemon_init(struct vs_daemon *d, const char *bin, const char *dir, const char *base)
{
    memset(d, 0, sizeof(*d));
    d->bin = bin;
    const char *slash = strrchr(bin, '/');
    d->name = slash != NULL ? slash + 1 : bin;
    snprintf(d->cfg, sizeof(d->cfg), "%s/%s.yaml", dir, base);
    snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, base);
}

/* In the child of a daemon with run_as: become that user. */
static int drop_to(void *arg)
{
    const struct vs_daemon *d = arg;
    return setgroups(0, NULL) == 0 && setresgid(d->run_as, d->run_as, d->run_as) == 0 &&
                   setresuid(d->run_as, d->run_as, d->run_as) == 0
               ? 0
               : -1;
}

int vs_daemon_spawn(struct vs_daemon *d)
{
    const char *argv[] = {d->bin, "-c", d->cfg, NULL};
    struct vs_spawn s = {.argv = argv, .out = d->log, .err = d->log, .append = true,
                         .child = d->run_as != 0 ? drop_to : NULL, .arg = d};
    pid_t pid = vs_proc_start(&s);
    if (pid < 0)
        return (int)pid;
    d->pid = pid;
    d->starts++;
    return 0;
}

bool vs_daemon_answers_stats(struct vs_daemon *d, void *bus)
{
    const char *component = strncmp(d->name, "vs-", 3) == 0 ? d->name + 3 : d->name;
    return vs_test_counters(bus, component, NULL, NULL, 0, 300) >= 0;
}

int vs_daemon_wait(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                   int timeout_ms, int poll_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        if (d->pid <= 0)
            return -ECHILD;
        if (ready(d, arg))
            return 0;
        if (!vs_proc_alive(d->pid)) {
            d->pid = 0;
            return -ECHILD;
        }
        if (now_ms() >= deadline)
            return -ETIMEDOUT;
        pause_ms(bus, poll_ms);
    }
}

int vs_daemon_stop(struct vs_daemon *d, int timeout_ms)
{
    if (d->pid <= 0)
        return -ECHILD;
    int st = vs_proc_stop(d->pid, timeout_ms);
    d->pid = 0;
    return st;
}

void vs_daemon_kill(struct vs_daemon *d)
{
    if (d->pid > 0)
        vs_proc_kill(d->pid);
    d->pid = 0;
}

void vs_daemon_dump_log(const struct vs_daemon *d)
{
    char *log = vs_slurp(d->log);
    size_t len = strlen(log);
    const char *tail = len > LOG_TAIL ? log + len - LOG_TAIL : log;
    fprintf(stderr, "--- %s log (tail) ---\n%s\n", d->name, tail);
    free(log);
}

void vs_daemon_start(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                     int timeout_ms, int poll_ms)
{
    int rc = vs_daemon_spawn(d);
    if (rc < 0)
        fail_msg("cannot start %s: %s", d->bin, strerror(-rc));
    vs_daemon_ready(d, bus, ready, arg, timeout_ms, poll_ms);
}

void vs_daemon_ready(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                     int timeout_ms, int poll_ms)
{
    int rc = vs_daemon_wait(d, bus, ready, arg, timeout_ms, poll_ms);
    if (rc == 0)
        return;
    vs_daemon_dump_log(d);
    if (rc == -ECHILD)
        fail_msg("%s exited at start (see %s)", d->name, d->log);
    fail_msg("%s did not answer (see %s)", d->name, d->log);
}

void vs_daemon_stop_clean(struct vs_daemon *d, int timeout_ms)
{
    int st = vs_daemon_stop(d, timeout_ms);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        vs_daemon_dump_log(d);
        fail_msg("%s did not exit cleanly (wait status %d)", d->name, st);
    }
}

/* ---- vsctl ----------------------------------------------------------------------- */

pid_t vs_vsctl_start(struct vs_vsctl *v, const char *const *args, const char *out_path,
                     char *out, char *err)
{
    const char *argv[MAX_ARGS + 1] = {v->bin, "--state", v->state};
    size_t n = 3;
    if (v->url != NULL) {
        argv[n++] = "--url";
        argv[n++] = v->url;
    }
    for (size_t i = 0; args[i] != NULL && n < MAX_ARGS; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int id = ++v->runs;
    if (out_path != NULL)
        snprintf(out, VS_TEST_PATH_MAX, "%s", out_path);
    else
        snprintf(out, VS_TEST_PATH_MAX, "%s/vsctl.%d.out", v->scratch, id);
    snprintf(err, VS_TEST_PATH_MAX, "%s/vsctl.%d.err", v->scratch, id);
    const char *env[] = {VS_TEST_CLEAN_PATH, NULL};
    struct vs_spawn s = {.argv = argv, .env = env, .out = out, .err = err};
    return vs_proc_start(&s);
}

static void idle_bus(void *arg, int ms)
{
    vs_test_idle(arg, (uint64_t)ms);
}

void vs_vsctl_finish(struct vs_vsctl *v, pid_t pid, int timeout_ms, const char *out,
                     const char *err, struct vs_run *r)
{
    vs_run_finish(pid, timeout_ms, v->bus != NULL ? idle_bus : NULL, v->bus, out, err, r);
}

void vs_vsctl_run(struct vs_vsctl *v, struct vs_run *r, int timeout_ms, const char *out_path,
                  const char *const *args)
{
    char out[VS_TEST_PATH_MAX], err[VS_TEST_PATH_MAX];
    pid_t pid = vs_vsctl_start(v, args, out_path, out, err);
    if (pid < 0)
        fail_msg("cannot start %s: %s", v->bin, strerror(-(int)pid));
    vs_vsctl_finish(v, pid, timeout_ms, out, err, r);
}

void vs_vsctl_expect(const struct vs_run *r, int status, const char *needle)
{
    if (r->status != status || (needle != NULL && strstr(r->out, needle) == NULL))
        fail_msg("vsctl exited %d (expected %d); stdout:\n%s\nstderr:\n%s\n(looked for \"%s\")",
                 r->status, status, r->out, r->err, needle != NULL ? needle : "");
}

void vs_vsctl_check(struct vs_vsctl *v, int timeout_ms, int status, const char *needle,
                    const char *const *args)
{
    struct vs_run r;
    vs_vsctl_run(v, &r, timeout_ms, NULL, args);
    vs_vsctl_expect(&r, status, needle);
    vs_run_free(&r);
}
