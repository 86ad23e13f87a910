/*
 * daemon.h - the platform's own programs under test: a worker daemon
 * (vs-ledgerd, vs-auditd, vs-testd, ...) started from its configuration
 * file with its output in a log, waited for until it answers, stopped
 * cleanly or killed, its log's tail shown when something goes wrong; and
 * the vsctl CLI run with a clean environment, its stdout and stderr
 * captured.
 *
 * Why one module: each daemon's integration test (and its benchmark) had
 * its own copy of "spawn with -c CONFIG, poll until it answers while the
 * bus runs, fail with the log, stop and insist on exit status 0", and each
 * vsctl-driving test its own fork/exec/capture. The plain functions return
 * 0 or -errno so the benchmarks can use them; the ones marked "fails the
 * test" assert (cmocka) with the daemon's log tail on stderr.
 */
#ifndef VS_TEST_DAEMON_H
#define VS_TEST_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "proc.h"
#include "vs/bus.h"

#define VS_TEST_PATH_MAX 320
/* The only environment vsctl (and programs like it) get in the tests. */
#define VS_TEST_CLEAN_PATH "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

/* A NULL-ended argument list in place: VS_ARGS("ledger", "check"). */
#define VS_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- a daemon -------------------------------------------------------------------- */

struct vs_daemon {
    const char *bin;                 /* absolute path */
    const char *name;                /* for messages: the program's file name */
    char cfg[VS_TEST_PATH_MAX];      /* its configuration file (-c) */
    char log[VS_TEST_PATH_MAX];      /* its stdout and stderr, appended across starts */
    pid_t pid;                       /* 0: not running */
    unsigned starts;
    unsigned run_as;                 /* 0: as the test; else this uid and gid, no groups */
};

/* bin, with cfg DIR/BASE.yaml and log DIR/BASE.log; not started. */
void vs_daemon_init(struct vs_daemon *d, const char *bin, const char *dir, const char *base);
/* Start it (bin -c cfg). 0 or -errno. */
int vs_daemon_spawn(struct vs_daemon *d);

/* Whether a started daemon is ready (e.g. answers a request). */
typedef bool (*vs_daemon_ready_fn)(struct vs_daemon *d, void *arg);
/* A ready function for every worker daemon: it answers its stats request,
 * vs.sys.stats.<component> (the program's name without "vs-"); arg is the
 * vs_bus to ask on. */
bool vs_daemon_answers_stats(struct vs_daemon *d, void *bus);
/* Ask ready(d, arg) until it says yes, running bus (NULL: sleeping) for
 * poll_ms between tries, for up to timeout_ms in all. 0; -ECHILD when the
 * daemon exited first (pid is then 0); -ETIMEDOUT. */
int vs_daemon_wait(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                   int timeout_ms, int poll_ms);
/* SIGTERM, up to timeout_ms, then SIGKILL; pid 0 afterwards. The wait
 * status, -1 when it had to be killed, -ECHILD when it was not running. */
int vs_daemon_stop(struct vs_daemon *d, int timeout_ms);
/* SIGKILL and reap (when running); pid 0 afterwards. */
void vs_daemon_kill(struct vs_daemon *d);
/* The last 8 KiB of its log on stderr. */
void vs_daemon_dump_log(const struct vs_daemon *d);

/* Spawn and vs_daemon_wait; fails the test (log tail shown) when it does
 * not start, exits, or is not ready in time. */
void vs_daemon_start(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                     int timeout_ms, int poll_ms);
/* vs_daemon_wait that fails the test the same way. */
void vs_daemon_ready(struct vs_daemon *d, vs_bus *bus, vs_daemon_ready_fn ready, void *arg,
                     int timeout_ms, int poll_ms);
/* A clean stop: fails the test (log tail shown) unless it exits with
 * status 0 within timeout_ms (under ASan: no leak, no error report). */
void vs_daemon_stop_clean(struct vs_daemon *d, int timeout_ms);

/* ---- vsctl ----------------------------------------------------------------------- */

struct vs_vsctl {
    const char *bin;                 /* VS_VSCTL_BIN */
    const char *state;               /* --state */
    const char *url;                 /* --url; NULL: not passed */
    const char *scratch;             /* where the captured outputs go */
    vs_bus *bus;                     /* kept running while vsctl runs; NULL: none */
    int runs;
};

/* Start vsctl with args (NULL-ended), stdout into out_path when given, else
 * a new file in scratch; the paths used into out and err
 * (VS_TEST_PATH_MAX each). The pid, or -errno. */
pid_t vs_vsctl_start(struct vs_vsctl *v, const char *const *args, const char *out_path,
                     char *out, char *err);
/* Wait for it (bounded by timeout_ms, the bus running) and read its output. */
void vs_vsctl_finish(struct vs_vsctl *v, pid_t pid, int timeout_ms, const char *out,
                     const char *err, struct vs_run *r);
/* Both; fails the test when vsctl cannot be started. */
void vs_vsctl_run(struct vs_vsctl *v, struct vs_run *r, int timeout_ms, const char *out_path,
                  const char *const *args);
/* Fails the test, showing both outputs, unless vsctl exited with status and
 * (needle not NULL) its stdout contains needle. */
void vs_vsctl_expect(const struct vs_run *r, int status, const char *needle);
/* Run, vs_vsctl_expect, and drop the output. */
void vs_vsctl_check(struct vs_vsctl *v, int timeout_ms, int status, const char *needle,
                    const char *const *args);

#endif
