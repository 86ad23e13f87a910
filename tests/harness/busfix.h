/*
 * busfix.h - the fixture most integration tests share: a real nats-server,
 * a libuv loop and a bus connected to it with every stream declared, plus
 * small helpers that keep the loop running while a test (or a daemon
 * benchmark) waits: requests whose reply is kept, JetStream API calls,
 * a daemon's stats counters.
 *
 * Why here: each daemon's test asked "request, run the loop until the
 * callback, copy the reply out of it" with its own copy of the same
 * callback; one version lives here. The request helpers do not assert, so
 * the benchmarks use them too.
 */
#ifndef VS_TEST_BUSFIX_H
#define VS_TEST_BUSFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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

/* Run the loop for ms milliseconds (at least 1). */
void vs_test_idle(vs_bus *bus, uint64_t ms);
/* How many messages on subject the stream holds (read from its start). */
int vs_test_stream_count(vs_bus *bus, const char *stream, const char *subject);

/* ---- requests ------------------------------------------------------------------ */

/* A copy of m that outlives the callback it came in (free it with
 * protobuf_c_message_free_unpacked); NULL when out of memory. */
ProtobufCMessage *vs_test_copy(const ProtobufCMessage *m);

/* One reply awaited: pass vs_test_on_reply and a zeroed struct as the
 * callback and its argument of vs_bus_request / vs_js_request, then run the
 * loop until done. msg is a copy (the caller frees it). */
struct vs_test_reply {
    bool done;
    int status;
    ProtobufCMessage *msg;
};
void vs_test_on_reply(int status, const ProtobufCMessage *reply, void *arg);

/* A request on subject, the loop run until its reply or timeout_ms (plus a
 * guard of 5 s): the reply copied (caller frees), or NULL with *status
 * (-errno) set. status may be NULL. */
ProtobufCMessage *vs_test_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                                  const ProtobufCMessageDescriptor *desc, uint64_t timeout_ms,
                                  int *status);
/* The same through "JetStream + reply" with msg_id (NULL: none) as
 * Nats-Msg-Id. */
ProtobufCMessage *vs_test_js_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                                     const char *msg_id, const ProtobufCMessageDescriptor *desc,
                                     uint64_t timeout_ms, int *status);

/* Open a sealed payload with k: inline, or its blob fetched (up to
 * max_size bytes, within timeout_ms, the loop running meanwhile). 0 with
 * *data (malloc'd, the caller frees) and *len; -EBADMSG when it does not
 * open with k; the fetch's -errno; -ENOMEM. */
struct vs_boxkey;
int vs_test_open_payload(vs_bus *bus, const Vs__V1__SealedPayload *p, const struct vs_boxkey *k,
                         uint64_t max_size, uint64_t timeout_ms, uint8_t **data, size_t *len);

/* A JetStream API call (subject $JS.API..., body JSON or NULL): the JSON
 * answer (caller decrefs). Fails the test when there is none. */
json_t *vs_test_js_api(vs_bus *bus, const char *subject, const char *body);

/* The counters named in names from vs.sys.stats.<component> into values
 * (0 for one it does not report). Returns how many it reported, or -errno
 * when it did not answer. */
int vs_test_counters(vs_bus *bus, const char *component, const char *const *names,
                     uint64_t *values, size_t n, uint64_t timeout_ms);

/* A task as the injection stage admits it (vs_test_admit). */
struct vs_test_task {
    const char *agent, *requester;
    const void *payload;                   /* the agent's stdin, sealed to the launcher pool */
    size_t payload_len;
    const uint8_t *requester_box_key;      /* 32 bytes, or NULL */
    const char *image_digest;              /* "sha256:<hex>", or NULL: no image */
    const char *image_signature;           /* minisign text of "<digest>\n" */
};

/* Publish t on vs.task.admitted (JetStream, Nats-Msg-Id "<task hex>.adm"),
 * its payload sealed to launcher_pk, under a new id written to task_id.
 * 0 or -errno. */
int vs_test_admit(vs_bus *bus, const uint8_t *launcher_pk, const struct vs_test_task *t,
                  uint8_t *task_id);

/* The value of an audit event's detail key, "" when it has none. */
struct Vs__V1__AuditEvent;
const char *vs_test_audit_detail(const struct Vs__V1__AuditEvent *e, const char *key);

#endif
