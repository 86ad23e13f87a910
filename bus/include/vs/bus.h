/*
 * bus.h - the NATS connection every daemon and tool uses, driven by a libuv
 * loop.
 *
 * Threading model (DESIGN.md section 9): the socket is serviced by the
 * loop through cnats' libuv adapter; cnats hands messages to its delivery
 * threads, which only push them onto a locked queue and wake the loop with
 * uv_async_send. Every callback of this API therefore runs on the loop
 * thread, and no function here blocks: request/reply, JetStream publishes
 * (see js.h) and the JetStream management API are all asynchronous requests
 * on one wildcard inbox, with libuv timers for their deadlines.
 *
 * Every message is treated as hostile: it is size-checked and unpacked with
 * its protobuf descriptor before a handler sees it. A message that fails is
 * counted as invalid, answered with STATUS_INVALID when it has a reply
 * address, terminated when it came from JetStream, audited, and dropped.
 *
 * Reply messages follow one convention: field 1 is `vs.v1.Status status`,
 * so an INVALID answer decodes as any reply type.
 */
#ifndef VS_BUS_H
#define VS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "vs/api.h"
#include "vs/v1/common.pb-c.h"

typedef struct vs_bus vs_bus;
typedef struct vs_msg vs_msg;
typedef struct vs_sub vs_sub;

#define VS_BUS_DEFAULT_URL "nats://127.0.0.1:4222"
#define VS_BUS_DEFAULT_MAX_MSG (1024 * 1024)

/* Header carrying the caller's reply subject for "JetStream + reply". */
#define VS_HDR_REPLY_TO "Vs-Reply-To"
#define VS_HDR_MSG_ID "Nats-Msg-Id"

struct vs_bus_opts {
    const char *url;          /* default VS_BUS_DEFAULT_URL; comma-separated list ok */
    const char *name;         /* connection name shown by the server */
    const char *user;         /* user/password authentication, optional */
    const char *password;
    const char *creds_file;   /* nkeys/JWT credentials file, optional */
    size_t max_msg;           /* largest payload accepted or sent; default 1 MiB */
    int connect_timeout_ms;   /* default 2000 */
    int connect_attempts;     /* retries at start-up, 250 ms apart; default 20 */
    const char *component;    /* for audit events about bus input; default name */
    int replicas;             /* JetStream replicas of declared streams; default 1 */
};

/* Counters kept by the bus for vs.sys.stats. */
struct vs_bus_stats {
    uint64_t received;  /* messages delivered to the bus */
    uint64_t handled;   /* handler returned 0 */
    uint64_t invalid;   /* oversized or undecodable: dropped */
    uint64_t errors;    /* handler returned an error */
    uint64_t published;
    uint64_t reconnects;
    uint64_t disconnects;
};

/* Connect (retrying as the options say) and attach the connection to loop.
 * Must be called on the thread that runs loop, before or during uv_run.
 * One loop per thread: the cnats adapter remembers the thread's loop, so
 * several buses on one thread must share that loop.
 * Returns 0 and *out, or -ECONNREFUSED / -ETIMEDOUT / -ENOMEM / -EINVAL. */
VS_API int vs_bus_new(uv_loop_t *loop, const struct vs_bus_opts *opts, vs_bus **out);
/* Unsubscribe everything, flush what was published, close the connection
 * and release all handles; runs the loop until they are closed. Pending
 * requests complete with -ECANCELED. NULL is a no-op. */
VS_API void vs_bus_free(vs_bus *bus);
VS_API uv_loop_t *vs_bus_loop(vs_bus *bus);
VS_API bool vs_bus_connected(vs_bus *bus);
VS_API size_t vs_bus_max_msg(vs_bus *bus);
VS_API void vs_bus_stats_get(vs_bus *bus, struct vs_bus_stats *out);
VS_API const char *vs_bus_component(vs_bus *bus);

/* Run the loop until *done becomes true or timeout_ms passes (0: forever).
 * For start-up code and command-line tools that want a synchronous step.
 * Returns 0, or -ETIMEDOUT. */
VS_API int vs_bus_run_until(vs_bus *bus, const bool *done, uint64_t timeout_ms);

/* A flush round trip to the server: cb(0) once everything published so far
 * has been processed by it; -ETIMEDOUT otherwise. */
typedef void (*vs_bus_done_cb)(int status, void *arg);
VS_API int vs_bus_flush(vs_bus *bus, uint64_t timeout_ms, vs_bus_done_cb cb, void *arg);

/* ---- publishing ------------------------------------------------------- */

/* Pack msg and publish it on subject (core NATS). A subject under "vs."
 * must match a row of the subject table whose message type is msg's.
 * Returns 0, -EMSGSIZE, -EPROTOTYPE (wrong type for the subject), -EINVAL,
 * -ENOTCONN. */
VS_API int vs_bus_publish(vs_bus *bus, const char *subject, const ProtobufCMessage *msg);
/* Raw bytes with an optional reply subject and optional headers (pairs of
 * name, value; nhdr pairs). */
VS_API int vs_bus_publish_raw(vs_bus *bus, const char *subject, const char *reply,
                              const void *data, size_t len, const char *const *hdrs, size_t nhdr);

/* ---- receiving -------------------------------------------------------- */

/* Handler result. 0: handled (a JetStream message is acked unless the
 * handler already resolved or held it). VS_RETRY: transient failure (nak
 * with the consumer's back-off). Any other negative errno: the message is
 * poison (terminated) and counted as an error. */
#define VS_RETRY (-11) /* -EAGAIN */
typedef int (*vs_msg_handler)(vs_msg *m, void *arg);

/* Subscribe to subject (wildcards allowed) on the core bus, optionally in a
 * queue group. desc, when not NULL, is used to unpack every message; when
 * NULL the handler gets raw bytes. */
VS_API int vs_bus_subscribe(vs_bus *bus, const char *subject, const char *queue,
                            const ProtobufCMessageDescriptor *desc, vs_msg_handler cb,
                            void *arg, vs_sub **out);
/* Unsubscribe and free. Queued messages of this subscription are dropped. */
VS_API void vs_sub_free(vs_sub *sub);
VS_API uint64_t vs_sub_delivered(const vs_sub *sub);

/* ---- the message handed to a handler ----------------------------------- */

VS_API const char *vs_msg_subject(const vs_msg *m);
/* Where an answer goes: the NATS reply subject of a core request, or the
 * Vs-Reply-To header of a JetStream message; NULL when none. */
VS_API const char *vs_msg_reply_to(const vs_msg *m);
VS_API const uint8_t *vs_msg_data(const vs_msg *m, size_t *len);
/* The unpacked body (owned by the message), or NULL for raw subscriptions. */
VS_API const ProtobufCMessage *vs_msg_body(const vs_msg *m);
/* A header value (owned by the message), or NULL. */
VS_API const char *vs_msg_header(const vs_msg *m, const char *name);
VS_API bool vs_msg_is_jetstream(const vs_msg *m);
/* JetStream metadata parsed from the ack subject; 0 for core messages. */
VS_API uint64_t vs_msg_stream_seq(const vs_msg *m);
VS_API uint64_t vs_msg_delivery_count(const vs_msg *m);
VS_API const char *vs_msg_stream(const vs_msg *m);
VS_API vs_bus *vs_msg_bus(const vs_msg *m);

/* Answer the message (see vs_msg_reply_to). -ENOENT when it has no reply
 * address; at most one answer is sent per message (-EALREADY after). */
VS_API int vs_msg_respond(vs_msg *m, const ProtobufCMessage *reply);
/* Answer with only a status (decodes as any reply type). */
VS_API int vs_msg_respond_status(vs_msg *m, Vs__V1__StatusCode code, const char *reason);

/* JetStream acknowledgements. Each returns -EALREADY once the message has
 * been resolved, -EINVAL for a core message. */
VS_API int vs_msg_ack(vs_msg *m);
VS_API int vs_msg_nak(vs_msg *m, uint64_t delay_ms);
VS_API int vs_msg_term(vs_msg *m);
/* Tell the server the work goes on (resets its ack timer). */
VS_API int vs_msg_in_progress(vs_msg *m);

/* Keep a message beyond its handler (asynchronous work). The bus then sends
 * InProgress for it periodically until it is acked, nak'ed or termed, which
 * releases it. Returns m. */
VS_API vs_msg *vs_msg_hold(vs_msg *m);

/* ---- request / reply ---------------------------------------------------- */

/* status: 0 with reply set (owned by the bus, valid during the callback),
 * -ETIMEDOUT, -EHOSTUNREACH (no responders), -EBADMSG (undecodable or
 * oversized reply), -ECANCELED (bus closing). */
typedef void (*vs_reply_cb)(int status, const ProtobufCMessage *reply, void *arg);

/* Send req on subject and wait asynchronously for one reply of type
 * reply_desc. The callback runs exactly once. */
VS_API int vs_bus_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *reply_desc, uint64_t timeout_ms,
                          vs_reply_cb cb, void *arg);

/* Raw request used by the JetStream layer: headers as in publish_raw;
 * the callback gets the raw reply message (data, headers) or an error. */
typedef void (*vs_raw_reply_cb)(int status, vs_msg *reply, void *arg);
VS_API int vs_bus_request_raw(vs_bus *bus, const char *subject, const void *data, size_t len,
                              const char *const *hdrs, size_t nhdr, uint64_t timeout_ms,
                              vs_raw_reply_cb cb, void *arg);
/* A fresh unique inbox subject routed to this bus (for callers that want
 * replies to arrive later, as in "JetStream + reply"). */
VS_API int vs_bus_new_inbox(vs_bus *bus, char *out, size_t size);

#endif
