/*
 * audit.h - the one call every component uses to report what it did.
 *
 * An AuditEvent is published to vs.audit.<category>.<severity> (stream
 * AUDIT) with its time-ordered event id as Nats-Msg-Id, so a retried emit
 * is stored once. Emitting never blocks and never fails the caller's work:
 * a failed publish is logged and counted (the daemon's "audit_failed"
 * counter), because the audit path must not become a denial of service.
 */
#ifndef VS_AUDIT_H
#define VS_AUDIT_H

#include <stdint.h>

#include "vs/api.h"
#include "vs/bus.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/v1/audit.pb-c.h"

/* Publish one event. category is a subject token ([a-z0-9_-]); agent may be
 * NULL; task_id NULL or VS_ID_LEN bytes; then name/value string pairs of
 * details, terminated by NULL. Values are truncated at 1 KiB. Returns 0,
 * -EINVAL (bad category or odd details), -EMSGSIZE, -ENOTCONN. */
VS_API int vs_audit_emit(vs_bus *bus, const char *category, Vs__V1__Severity severity,
                         const char *agent, const uint8_t *task_id, const char *event, ...)
    __attribute__((sentinel));

/* The same with details as an array of n name/value pairs, an optional
 * completion callback (the server's ack of the event; NULL: failures are
 * only logged and counted) and the event id written to id_out when not
 * NULL. */
VS_API int vs_audit_emitv(vs_bus *bus, const char *category, Vs__V1__Severity severity,
                          const char *agent, const uint8_t *task_id, const char *event,
                          const char *const *details, size_t n, vs_puback_cb cb, void *arg,
                          uint8_t id_out[VS_ID_LEN]);

/* An event built and serialized without publishing it, for a store's
 * outbox (published later with msg_id as Nats-Msg-Id). */
struct vs_audit_packed {
    uint8_t id[VS_ID_LEN];
    char msg_id[VS_ID_HEX_LEN];
    char subject[VS_SUBJECT_MAX];
    uint8_t *data;          /* malloc'd; vs_audit_packed_clear */
    size_t len;
};
/* time_ns 0: now. Arguments as for vs_audit_emitv. */
VS_API int vs_audit_pack(const char *component, const char *category, Vs__V1__Severity severity,
                         uint64_t time_ns, const char *agent, const uint8_t *task_id,
                         const char *event, const char *const *details, size_t n,
                         struct vs_audit_packed *out);
VS_API void vs_audit_packed_clear(struct vs_audit_packed *p);
/* True when c can be a category: a subject token without upper case. */
VS_API bool vs_audit_category_valid(const char *c);

/* "info", "warning", ... for subjects and display; parse is the inverse
 * (-EINVAL for an unknown name). */
VS_API const char *vs_severity_name(Vs__V1__Severity s);
VS_API int vs_severity_parse(const char *name, Vs__V1__Severity *out);
/* Events whose publish failed since start. */
VS_API uint64_t vs_audit_failed(void);

#endif
