/*
 * js.h - JetStream on top of bus.h: streams and consumers declared from
 * tables, deduplicated publishes with server acks, durable consumers with
 * explicit acks, "JetStream + reply", and KV buckets.
 *
 * Everything here speaks the JetStream wire API ($JS.API.*, PubAck JSON,
 * +ACK/-NAK/+WPI/+TERM) over the bus's asynchronous requests, so nothing
 * blocks the loop thread. Consumers are durable push consumers with a
 * deliver group: every instance of a daemon queue-subscribes to the same
 * deliver subject and MaxAckPending bounds the work in flight (flow control).
 */
#ifndef VS_JS_H
#define VS_JS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/bus.h"
#include "vs/subjects.h"

#define VS_JS_API_TIMEOUT_MS 5000

/* ---- streams ------------------------------------------------------------ */

/* Create every stream and KV bucket of streams.def, or update one whose
 * config differs. cb(0) when all exist. */
VS_API int vs_js_declare_all(vs_bus *bus, vs_bus_done_cb cb, void *arg);
/* Synchronous form for start-up and tools (runs the loop). */
VS_API int vs_js_declare_all_sync(vs_bus *bus);
/* The last sequence a stream holds (0 when empty), synchronously (runs the
 * loop; for tools). -ENOENT when the stream does not exist, -EHOSTUNREACH
 * when the server has no JetStream, -ETIMEDOUT, -EIO. */
VS_API int vs_js_stream_last_seq_sync(vs_bus *bus, const char *name, uint64_t *last_seq);
/* Delete a stream (tests, `vsctl` maintenance). */
VS_API int vs_js_delete_stream(vs_bus *bus, const char *name, vs_bus_done_cb cb, void *arg);

/* ---- publishing --------------------------------------------------------- */

struct vs_puback {
    const char *stream;
    uint64_t seq;
    bool duplicate;         /* the server had this msg id already */
};
/* status 0 with ack, or -ETIMEDOUT, -EHOSTUNREACH (no stream captures the
 * subject), -EIO (JetStream error; logged), -ECANCELED. */
typedef void (*vs_puback_cb)(int status, const struct vs_puback *ack, void *arg);

/* Publish msg to a stream-captured subject with Nats-Msg-Id msg_id (NULL:
 * none; the server deduplicates ids within the stream's window). cb may be
 * NULL (fire and forget, failures are logged). */
VS_API int vs_js_publish(vs_bus *bus, const char *subject, const ProtobufCMessage *msg,
                         const char *msg_id, vs_puback_cb cb, void *arg);
VS_API int vs_js_publish_raw(vs_bus *bus, const char *subject, const void *data, size_t len,
                             const char *const *hdrs, size_t nhdr, vs_puback_cb cb, void *arg);

/* Publish the handler's output, then ack the input message `in` once the
 * server has stored the output (nak it with delay_ms on failure). The
 * message is held until then; the handler returns 0. */
VS_API int vs_js_publish_then_ack(vs_msg *in, const char *subject, const ProtobufCMessage *out,
                                  const char *msg_id, uint64_t nak_delay_ms);

/* ---- consumers ---------------------------------------------------------- */

struct vs_consumer_def {
    const char *stream;
    const char *durable;          /* also the deliver group */
    const char *filter_subject;   /* NULL: the whole stream */
    uint64_t ack_wait_ms;         /* default 30000 */
    int64_t max_ack_pending;      /* default 256 */
    int64_t max_deliver;          /* default 10; then the message is dropped (audited) */
    uint64_t nak_delay_ms;        /* delay of VS_RETRY naks; default 1000 */
    bool deliver_new;             /* start with new messages instead of all */
};

typedef struct vs_consumer vs_consumer;

/* Create or update the durable consumer, then queue-subscribe to its
 * deliver subject. desc unpacks each message (NULL: raw). Messages are
 * handed to cb on the loop thread. cb(done) reports creation. */
VS_API int vs_js_consume(vs_bus *bus, const struct vs_consumer_def *def,
                         const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                         vs_consumer **out);
/* Synchronous creation (runs the loop until the consumer is live). */
VS_API int vs_js_consume_sync(vs_bus *bus, const struct vs_consumer_def *def,
                              const ProtobufCMessageDescriptor *desc, vs_msg_handler cb,
                              void *arg, vs_consumer **out);
/* Stop receiving; held messages stay valid until resolved. */
VS_API void vs_consumer_free(vs_consumer *c);

/* An ordered, ephemeral, ack-less read of a stream's messages on subject,
 * from the first one (tools: `vsctl audit tail`, blob fetch). start_seq 0:
 * from the start; UINT64_MAX: only new messages. last_n > 0 (and start_seq
 * 0): the last n messages. */
VS_API int vs_js_read(vs_bus *bus, const char *stream, const char *subject, uint64_t start_seq,
                      uint64_t last_n, const ProtobufCMessageDescriptor *desc, vs_msg_handler cb,
                      void *arg, vs_consumer **out);

/* ---- JetStream + reply (DESIGN.md section 2) --------------------------- */

/* Publish req into the stream behind subject with the caller's reply inbox
 * in the Vs-Reply-To header and msg_id as Nats-Msg-Id, then wait for the
 * service's reply (sent after its commit). cb runs exactly once: with the
 * first reply, -ETIMEDOUT, -EHOSTUNREACH (no stream), -EIO, or -EALREADY
 * when the stream already had msg_id (the command was accepted before and
 * its reply went to that first caller). */
VS_API int vs_js_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                         const char *msg_id, const ProtobufCMessageDescriptor *reply_desc,
                         uint64_t timeout_ms, vs_reply_cb cb, void *arg);

/* ---- KV buckets ---------------------------------------------------------- */

struct vs_kv_entry {
    const uint8_t *value;
    size_t len;
    uint64_t revision;
    bool deleted;
};
/* status 0 with entry; -ENOENT when the key has no value; -ETIMEDOUT;
 * -ECONNRESET (compare-and-set lost); -EIO. */
typedef void (*vs_kv_cb)(int status, const struct vs_kv_entry *entry, void *arg);

/* Put value; expected_revision > 0 makes it a compare-and-set (the key's
 * last revision must match; 0 with create_only: the key must not exist).
 * The callback's entry has the new revision. Keys are validated tokens
 * joined by '.'. */
VS_API int vs_kv_put(vs_bus *bus, enum vs_kv_id kv, const char *key, const void *value, size_t len,
                     uint64_t expected_revision, bool create_only, vs_kv_cb cb, void *arg);
VS_API int vs_kv_get(vs_bus *bus, enum vs_kv_id kv, const char *key, vs_kv_cb cb, void *arg);
VS_API int vs_kv_delete(vs_bus *bus, enum vs_kv_id kv, const char *key, vs_kv_cb cb, void *arg);

#endif
