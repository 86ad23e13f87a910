/*
 * audit.c - vs_audit_emit: one AuditEvent per decision, published on
 * vs.audit.<category>.<severity> into the AUDIT stream.
 *
 * The event id is time-ordered and doubles as Nats-Msg-Id, so a retried
 * publish is stored once. Emitting is fire-and-forget with a server ack
 * checked in the background: a failure is logged and counted, never
 * returned to the work that triggered it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "vs/audit.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/log.h"

#define AUDIT_MAX_DETAILS 32
#define AUDIT_VALUE_MAX 1024

static atomic_uint_fast64_t audit_failures;

static const char *const severity_names[] = {
    [VS__V1__SEVERITY__SEVERITY_UNSPECIFIED] = "unspecified",
    [VS__V1__SEVERITY__SEVERITY_DEBUG] = "debug",
    [VS__V1__SEVERITY__SEVERITY_INFO] = "info",
    [VS__V1__SEVERITY__SEVERITY_NOTICE] = "notice",
    [VS__V1__SEVERITY__SEVERITY_WARNING] = "warning",
    [VS__V1__SEVERITY__SEVERITY_ERROR] = "error",
    [VS__V1__SEVERITY__SEVERITY_CRITICAL] = "critical",
    [VS__V1__SEVERITY__SEVERITY_ALERT] = "alert",
};

const char *vs_severity_name(Vs__V1__Severity s)
{
    if ((unsigned)s >= sizeof(severity_names) / sizeof(severity_names[0]))
        return "unspecified";
    return severity_names[s];
}

int vs_severity_parse(const char *name, Vs__V1__Severity *out)
{
    for (size_t i = 1; name != NULL && i < sizeof(severity_names) / sizeof(severity_names[0]); i++) {
        if (strcmp(name, severity_names[i]) == 0) {
            *out = (Vs__V1__Severity)i;
            return 0;
        }
    }
    return -EINVAL;
}

uint64_t vs_audit_failed(void)
{
    return atomic_load(&audit_failures);
}

/* Category tokens are lower case so that subscriptions by category work. */
bool vs_audit_category_valid(const char *c)
{
    if (!vs_token_valid(c))
        return false;
    for (; *c != '\0'; c++)
        if (*c >= 'A' && *c <= 'Z')
            return false;
    return true;
}

struct audit_done {
    vs_puback_cb cb;
    void *arg;
};

static void on_audit_stored(int status, const struct vs_puback *ack, void *arg)
{
    struct audit_done *done = arg;
    if (status < 0) {
        atomic_fetch_add(&audit_failures, 1);
        log_warnx("audit event not stored: %s", strerror(-status));
    }
    if (done != NULL) {
        done->cb(status, ack, done->arg);
        free(done);
    }
}

int vs_audit_pack(const char *component, const char *category, Vs__V1__Severity severity,
                  uint64_t time_ns, const char *agent, const uint8_t *task_id, const char *event,
                  const char *const *details, size_t n, struct vs_audit_packed *out)
{
    if (out == NULL || component == NULL || !vs_audit_category_valid(category) || event == NULL ||
        n > AUDIT_MAX_DETAILS || (n > 0 && details == NULL) ||
        severity <= VS__V1__SEVERITY__SEVERITY_UNSPECIFIED ||
        severity > VS__V1__SEVERITY__SEVERITY_ALERT)
        return -EINVAL;
    memset(out, 0, sizeof *out);

    Vs__V1__KeyValue kvs[AUDIT_MAX_DETAILS];
    Vs__V1__KeyValue *kvp[AUDIT_MAX_DETAILS];
    char *truncated[AUDIT_MAX_DETAILS] = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *v = details[2 * i + 1];
        if (details[2 * i] == NULL || v == NULL) {
            rc = -EINVAL;
            break;
        }
        vs__v1__key_value__init(&kvs[i]);
        kvs[i].key = (char *)details[2 * i];
        if (strlen(v) > AUDIT_VALUE_MAX) {
            truncated[i] = strndup(v, AUDIT_VALUE_MAX);
            v = truncated[i] != NULL ? truncated[i] : "";
        }
        kvs[i].value = (char *)v;
        kvp[i] = &kvs[i];
    }
    if (rc == 0) {
        vs_id_new(out->id);
        vs_hex(out->id, VS_ID_LEN, out->msg_id);
        Vs__V1__AuditEvent ev = VS__V1__AUDIT_EVENT__INIT;
        ev.event_id.data = out->id;
        ev.event_id.len = VS_ID_LEN;
        ev.time_ns = time_ns != 0 ? time_ns : vs_now_ns();
        ev.component = (char *)component;
        ev.category = (char *)category;
        ev.severity = severity;
        ev.agent = (char *)(agent != NULL ? agent : "");
        if (task_id != NULL) {
            ev.task_id.data = (uint8_t *)task_id;
            ev.task_id.len = VS_ID_LEN;
        }
        ev.event = (char *)event;
        ev.n_details = n;
        ev.details = kvp;
        const char *tokens[] = {category, vs_severity_name(severity)};
        rc = vs_subject_format(VS_SUBJ_AUDIT, out->subject, sizeof(out->subject), false, tokens, 2);
        if (rc >= 0) {
            rc = 0;
            out->len = protobuf_c_message_get_packed_size(&ev.base);
            out->data = malloc(out->len > 0 ? out->len : 1);
            if (out->data == NULL)
                rc = -ENOMEM;
            else
                protobuf_c_message_pack(&ev.base, out->data);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(truncated[i]);
    return rc;
}

void vs_audit_packed_clear(struct vs_audit_packed *p)
{
    if (p != NULL) {
        free(p->data);
        p->data = NULL;
    }
}

int vs_audit_emitv(vs_bus *bus, const char *category, Vs__V1__Severity severity,
                   const char *agent, const uint8_t *task_id, const char *event,
                   const char *const *details, size_t n, vs_puback_cb cb, void *arg,
                   uint8_t id_out[VS_ID_LEN])
{
    if (bus == NULL)
        return -EINVAL;
    struct vs_audit_packed p;
    int rc = vs_audit_pack(vs_bus_component(bus), category, severity, 0, agent, task_id, event,
                           details, n, &p);
    if (rc < 0)
        return rc;
    if (id_out != NULL)
        memcpy(id_out, p.id, VS_ID_LEN);
    struct audit_done *done = NULL;
    if (cb != NULL && (done = malloc(sizeof(*done))) == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        if (done != NULL) {
            done->cb = cb;
            done->arg = arg;
        }
        const char *hdrs[] = {VS_HDR_MSG_ID, p.msg_id};
        rc = vs_js_publish_raw(bus, p.subject, p.data, p.len, hdrs, 1, on_audit_stored, done);
    }
    if (rc < 0) {
        atomic_fetch_add(&audit_failures, 1);
        free(done);
    }
    vs_audit_packed_clear(&p);
    return rc < 0 ? rc : 0;
}

int vs_audit_emit(vs_bus *bus, const char *category, Vs__V1__Severity severity, const char *agent,
                  const uint8_t *task_id, const char *event, ...)
{
    const char *kv[2 * AUDIT_MAX_DETAILS];
    size_t n = 0;
    va_list ap;
    va_start(ap, event);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        if (v == NULL || n == AUDIT_MAX_DETAILS) {
            va_end(ap);
            return -EINVAL;
        }
        kv[2 * n] = k;
        kv[2 * n + 1] = v;
        n++;
    }
    va_end(ap);
    return vs_audit_emitv(bus, category, severity, agent, task_id, event, kv, n, NULL, NULL, NULL);
}
