/*
 * natsd.h - a real nats-server for one test: free port on 127.0.0.1,
 * JetStream on, its own store directory; always stopped and reaped.
 *
 * The server is started with PR_SET_PDEATHSIG, so it dies with the test
 * process even when a test crashes or an assertion longjmps past teardown.
 */
#ifndef VS_TEST_NATSD_H
#define VS_TEST_NATSD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "proc.h" /* vs_rmtree, for the many users of this header */

struct vs_natsd {
    pid_t pid;
    int port;
    char dir[256];      /* mkdtemp'd: store/ and server.log inside */
    char url[64];
};

/* A TCP port on 127.0.0.1 that nobody listened on a moment ago, or -errno. */
int vs_free_port(void);

/* Start a server and wait (up to 10 s) until it accepts clients.
 * Returns 0 or -errno. */
int vs_natsd_start(struct vs_natsd *s);
/* Stop the server (SIGTERM, then SIGKILL after 5 s) and reap it; keeps
 * the store so that vs_natsd_restart brings the same data back. */
void vs_natsd_stop(struct vs_natsd *s);
/* Start again on the same port and store. */
int vs_natsd_restart(struct vs_natsd *s);
/* Stop and remove the store directory. Safe to call twice. */
void vs_natsd_destroy(struct vs_natsd *s);

/* Connect a bus to the server on loop (uv_loop_init'd by the caller) with
 * max_msg (0: default) and declare every stream. 0 or -errno. */
struct vs_bus;
struct uv_loop_s;
int vs_natsd_bus(const struct vs_natsd *s, struct uv_loop_s *loop, size_t max_msg,
                 struct vs_bus **out);

#endif
