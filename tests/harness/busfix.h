/*
 * busfix.h - the fixture most integration tests share: a real nats-server,
 * a libuv loop and a bus connected to it with every stream declared, plus
 * small helpers that keep the loop running while a test waits.
 */
#ifndef VS_TEST_BUSFIX_H
#define VS_TEST_BUSFIX_H

#include <stddef.h>
#include <stdint.h>

#include "natsd.h"
#include "vs/bus.h"

struct vs_busfix {
    struct vs_natsd nats;
    uv_loop_t loop;
    vs_bus *bus;
};

/* Start the server, the loop and the bus (max_msg 0: default). Fails the
 * test on error. */
void vs_busfix_init(struct vs_busfix *f, size_t max_msg);
void vs_busfix_fini(struct vs_busfix *f);

/* Run the loop for ms milliseconds. */
void vs_test_idle(vs_bus *bus, uint64_t ms);
/* How many messages on subject the stream holds (read from its start). */
int vs_test_stream_count(vs_bus *bus, const char *stream, const char *subject);

#endif
