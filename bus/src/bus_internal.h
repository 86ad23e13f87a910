/*
 * bus_internal.h - what the bus modules (bus.c, js.c, blob.c, audit.c,
 * daemon.c) share behind the public headers: the subscription and message
 * structures and the pending-request registry.
 */
#ifndef VS_BUS_INTERNAL_H
#define VS_BUS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "vs/bus.h"

#define VS_INBOX_PREFIX "_INBOX."
#define VS_JS_STREAM_NAME_MAX 64

struct vs_sub {
    atomic_int refs;             /* owner + cnats (until on-complete) + queued msgs */
    vs_bus *bus;
    natsSubscription *ns;
    const ProtobufCMessageDescriptor *desc;
    vs_msg_handler cb;
    void *arg;
    bool jetstream;              /* messages carry $JS.ACK reply subjects */
    atomic_bool dead;            /* unsubscribed: queued messages are dropped */
    bool internal;               /* bus machinery: not counted in the stats */
    uint64_t ack_wait_ms;
    uint64_t nak_delay_ms;
    uint64_t delivered;
    bool sync;                   /* synchronous cnats subscription, drained by the loop */
    struct vs_sub *sync_next, *sync_prev;
};

#define VS_MSG_ARENA 512

struct vs_msg {
    vs_bus *bus;
    vs_sub *sub;                 /* holds a reference */
    natsMsg *nm;
    ProtobufCMessage *body;
    bool resolved;               /* JetStream: acked, nak'ed or termed */
    bool responded;
    bool held;
    bool in_handler;             /* deliver() frees it when the handler returns */
    uint64_t last_progress_ms;
    struct vs_msg *held_prev, *held_next;
    /* JetStream metadata from the ack subject */
    char stream[VS_JS_STREAM_NAME_MAX + 1];
    uint64_t stream_seq;
    uint64_t delivered;
    /* The unpacked body's memory: protobuf-c allocates from arena first
     * (most bodies fit), then from the heap - one allocation per message
     * instead of one per field and string. Not cleared between uses. */
    ProtobufCAllocator body_alloc;
    size_t arena_used;
    _Alignas(16) uint8_t arena[VS_MSG_ARENA];
};

/* Subscribe with the bus's delivery machinery; jetstream marks messages
 * whose NATS reply subject is a $JS.ACK subject. */
int vs__subscribe(vs_bus *bus, const char *subject, const char *queue,
                  const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                  bool jetstream, bool internal, uint64_t ack_wait_ms, uint64_t nak_delay_ms,
                  vs_sub **out);

/* Register a pending reply: writes the inbox subject that routes to it into
 * inbox (size bytes) and its token into *token. cb runs exactly once. */
int vs__pending_add(vs_bus *bus, uint64_t timeout_ms, vs_raw_reply_cb cb, void *arg,
                    char *inbox, size_t size, uint64_t *token);
/* Same, for a reply unpacked with desc before cb (vs_bus_request's path). */
int vs__pending_add_typed(vs_bus *bus, const ProtobufCMessageDescriptor *desc, uint64_t timeout_ms,
                          vs_reply_cb cb, void *arg, char *inbox, size_t size, uint64_t *token);
int vs__bus_replicas(vs_bus *bus);
/* Complete a pending reply early with an error (no-op if already done). */
void vs__pending_fail(vs_bus *bus, uint64_t token, int status);

/* Publish bytes with optional reply and headers (shared by the public
 * publish calls). */
int vs__publish(vs_bus *bus, const char *subject, const char *reply, const void *data, size_t len,
                const char *const *hdrs, size_t nhdr);

/* Pack a message into a malloc'd buffer, checking the bus limit.
 * -EMSGSIZE, -ENOMEM. */
int vs__pack(vs_bus *bus, const ProtobufCMessage *msg, uint8_t **out, size_t *len);

/* True when s is a safe reply subject: "_INBOX." + [A-Za-z0-9._-]. */
bool vs__reply_subject_ok(const char *s);

/* Count an invalid message and audit it (rate-limited). */
void vs__bus_count_invalid(vs_bus *bus, const char *subject, const char *why);

#endif
