/*
 * daemon.h - the skeleton every VibeShield daemon is built on.
 *
 * vs_daemon_main does, in order: parse the command line (-c FILE, -n,
 * -v, --help), load and check the config (common keys plus the daemon's),
 * connect to the bus, declare the JetStream streams, call def->open (files,
 * keys, anything that needs privileges), narrow the process (no_new_privs +
 * seccomp allowlist), answer vs.sys.health.<component> and
 * vs.sys.stats.<component> (and the ".all" broadcast), call def->start
 * (subscriptions, consumers), and run the loop. SIGINT/SIGTERM stop
 * consumption, wait until def->idle says in-flight work is done (bounded by
 * shutdown_timeout), flush the bus, call def->close and exit 0.
 */
#ifndef VS_DAEMON_H
#define VS_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "vs/api.h"
#include "vs/bus.h"
#include "vs/config.h"

typedef struct vs_daemon vs_daemon;

/* Adds one named counter to a stats reply. */
typedef void (*vs_counter_add_fn)(void *ctx, const char *name, uint64_t value);

struct vs_daemon_def {
    const char *component;              /* "auditd": vs.sys.*.auditd */
    const char *summary;                /* one line for --help */
    const struct vs_cfg_key *config;    /* the daemon's own keys, or NULL */
    const int *syscalls;                /* extra allowed syscalls, -1 ended */
    /* Set only by a daemon whose children must not inherit its filter (the
     * launcher: its sandboxes get their own): it is narrowed with
     * no_new_privs alone, and this reason is logged at start. */
    const char *no_filter_reason;
    int (*open)(vs_daemon *d);          /* before narrowing; 0 or -errno */
    int (*start)(vs_daemon *d);         /* after narrowing; 0 or -errno */
    void (*stop)(vs_daemon *d);         /* stop taking new work */
    bool (*idle)(vs_daemon *d);         /* in-flight work finished? */
    void (*close)(vs_daemon *d);        /* after the loop */
    void (*counters)(vs_daemon *d, vs_counter_add_fn add, void *ctx);
};

/* Run the daemon; returns the process exit status (0, 1 for a start-up
 * failure, 2 for usage). */
VS_API int vs_daemon_main(const struct vs_daemon_def *def, int argc, char **argv);

VS_API vs_bus *vs_daemon_bus(vs_daemon *d);
VS_API uv_loop_t *vs_daemon_loop(vs_daemon *d);
VS_API const vs_config *vs_daemon_config(vs_daemon *d);
VS_API void vs_daemon_set_data(vs_daemon *d, void *data);
VS_API void *vs_daemon_data(vs_daemon *d);
/* Ask the daemon to shut down as if it got SIGTERM. */
VS_API void vs_daemon_shutdown(vs_daemon *d);

#endif
