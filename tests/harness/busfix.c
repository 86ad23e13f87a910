/*
 * busfix.c - see busfix.h.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "busfix.h"
#include "vs/blob.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

void vs_busfix_init(struct vs_busfix *f, size_t max_msg)
{
    assert_int_equal(vs_natsd_start(&f->nats), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(vs_natsd_bus(&f->nats, &f->loop, max_msg, &f->bus), 0);
}

void vs_busfix_fini(struct vs_busfix *f)
{
    vs_bus_free(f->bus);
    f->bus = NULL;
    uv_loop_close(&f->loop);
    vs_natsd_destroy(&f->nats);
}

void vs_test_idle(vs_bus *bus, uint64_t ms)
{
    bool never = false;
    vs_bus_run_until(bus, &never, ms > 0 ? ms : 1); /* 0 would mean forever */
}

static int count_one(vs_msg *m, void *arg)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

int vs_test_stream_count(vs_bus *bus, const char *stream, const char *subject)
{
    int n = 0;
    vs_consumer *r;
    assert_int_equal(vs_js_read(bus, stream, subject, 0, 0, NULL, count_one, &n, &r), 0);
    vs_test_idle(bus, 700);
    vs_consumer_free(r);
    return n;
}

/* ---- requests ------------------------------------------------------------------ */

ProtobufCMessage *vs_test_copy(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return c;
}

void vs_test_on_reply(int status, const ProtobufCMessage *reply, void *arg)
{
    struct vs_test_reply *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0 && reply != NULL) {
        r->msg = vs_test_copy(reply);
        if (r->msg == NULL)
            r->status = -ENOMEM;
    }
}

/* ---- sealed payloads ------------------------------------------------------------- */

struct opened {
    bool done;
    int status;
    uint8_t *data;
    size_t len;
};

static void on_blob_opened(int status, const uint8_t *data, size_t len, void *arg)
{
    struct opened *o = arg;
    o->done = true;
    o->status = status;
    if (status == 0 && (o->data = malloc(len > 0 ? len : 1)) == NULL)
        o->status = -ENOMEM;
    if (o->status == 0) {
        memcpy(o->data, data, len);
        o->len = len;
    }
}

int vs_test_open_payload(vs_bus *bus, const Vs__V1__SealedPayload *p, const struct vs_boxkey *k,
                         uint64_t max_size, uint64_t timeout_ms, uint8_t **data, size_t *len)
{
    struct opened o = {0};
    if (p->blob != NULL) {
        int rc = vs_blob_fetch(bus, p->blob, k, max_size, timeout_ms, on_blob_opened, &o);
        if (rc < 0)
            return rc;
        if (vs_bus_run_until(bus, &o.done, timeout_ms + 5000) < 0)
            return -ETIMEDOUT;
    } else {
        o.len = p->ciphertext.len > VS_SEAL_OVERHEAD ? p->ciphertext.len - VS_SEAL_OVERHEAD : 0;
        o.data = malloc(o.len + 1);
        if (o.data == NULL)
            return -ENOMEM;
        o.status = vs_unseal(k, p->ciphertext.data, p->ciphertext.len, o.data);
    }
    if (o.status < 0) {
        free(o.data);
        return o.status;
    }
    *data = o.data;
    *len = o.len;
    return 0;
}

/* Run the loop until r is answered; the copy or NULL with *status. */
static ProtobufCMessage *await(vs_bus *bus, int rc, struct vs_test_reply *r, uint64_t timeout_ms,
                              int *status)
{
    if (rc == 0 && vs_bus_run_until(bus, &r->done, timeout_ms + 5000) < 0)
        rc = -ETIMEDOUT;
    if (rc == 0)
        rc = r->status;
    if (status != NULL)
        *status = rc;
    return rc == 0 ? r->msg : NULL;
}

ProtobufCMessage *vs_test_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                                  const ProtobufCMessageDescriptor *desc, uint64_t timeout_ms,
                                  int *status)
{
    struct vs_test_reply r = {0};
    int rc = vs_bus_request(bus, subject, req, desc, timeout_ms, vs_test_on_reply, &r);
    return await(bus, rc, &r, timeout_ms, status);
}

ProtobufCMessage *vs_test_js_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                                     const char *msg_id, const ProtobufCMessageDescriptor *desc,
                                     uint64_t timeout_ms, int *status)
{
    struct vs_test_reply r = {0};
    int rc = vs_js_request(bus, subject, req, msg_id, desc, timeout_ms, vs_test_on_reply, &r);
    return await(bus, rc, &r, timeout_ms, status);
}

struct json_reply {
    bool done;
    int status;
    json_t *j;
};

static void on_json(int status, vs_msg *m, void *arg)
{
    struct json_reply *w = arg;
    w->done = true;
    w->status = status;
    if (status == 0) {
        size_t len;
        const uint8_t *data = vs_msg_data(m, &len);
        w->j = json_loadb((const char *)data, len, 0, NULL);
    }
}

json_t *vs_test_js_api(vs_bus *bus, const char *subject, const char *body)
{
    struct json_reply w = {0};
    size_t len = body != NULL ? strlen(body) : 0;
    assert_int_equal(vs_bus_request_raw(bus, subject, body, len, NULL, 0, 3000, on_json, &w), 0);
    assert_int_equal(vs_bus_run_until(bus, &w.done, 5000), 0);
    assert_int_equal(w.status, 0);
    assert_non_null(w.j);
    return w.j;
}

int vs_test_counters(vs_bus *bus, const char *component, const char *const *names,
                     uint64_t *values, size_t n, uint64_t timeout_ms)
{
    char subject[128];
    snprintf(subject, sizeof(subject), "vs.sys.stats.%s", component);
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    int rc;
    Vs__V1__StatsReply *r = (Vs__V1__StatsReply *)vs_test_request(
        bus, subject, &req.base, &vs__v1__stats_reply__descriptor, timeout_ms, &rc);
    if (r == NULL)
        return rc;
    int found = 0;
    for (size_t k = 0; k < n; k++) {
        values[k] = 0;
        for (size_t i = 0; i < r->n_counters; i++)
            if (strcmp(r->counters[i]->name, names[k]) == 0) {
                values[k] = r->counters[i]->value;
                found++;
                break;
            }
    }
    vs__v1__stats_reply__free_unpacked(r, NULL);
    return found;
}

const char *vs_test_audit_detail(const Vs__V1__AuditEvent *e, const char *key)
{
    for (size_t i = 0; i < e->n_details; i++)
        if (strcmp(e->details[i]->key, key) == 0)
            return e->details[i]->value;
    return "";
}

int vs_test_admit(vs_bus *bus, const uint8_t *launcher_pk, const struct vs_test_task *t,
                  uint8_t *task_id)
{
    vs_id_new(task_id);
    uint8_t *sealed = malloc(t->payload_len + VS_SEAL_OVERHEAD), kid[VS_KEY_ID_LEN];
    if (sealed == NULL)
        return -ENOMEM;
    int rc = vs_seal(launcher_pk, t->payload, t->payload_len, sealed);
    vs_key_id(launcher_pk, VS_BOX_PUBLICKEY_LEN, kid);
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    p.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
    p.ciphertext = (ProtobufCBinaryData){t->payload_len + VS_SEAL_OVERHEAD, sealed};
    Vs__V1__TaskSubmit s = VS__V1__TASK_SUBMIT__INIT;
    s.task_id = (ProtobufCBinaryData){VS_ID_LEN, task_id};
    s.requester = (char *)t->requester;
    s.agent = (char *)t->agent;
    s.payload = &p;
    if (t->requester_box_key != NULL)
        s.requester_box_key = (ProtobufCBinaryData){VS_BOX_PUBLICKEY_LEN,
                                                    (uint8_t *)t->requester_box_key};
    Vs__V1__ImageRef ref = VS__V1__IMAGE_REF__INIT;
    if (t->image_digest != NULL) {
        ref.digest = (char *)t->image_digest;
        ref.minisign_signature = (ProtobufCBinaryData){strlen(t->image_signature),
                                                       (uint8_t *)t->image_signature};
        s.image = &ref;
    }
    Vs__V1__TaskAdmitted a = VS__V1__TASK_ADMITTED__INIT;
    a.task = &s;
    char hex[VS_ID_HEX_LEN], id[VS_ID_HEX_LEN + 8];
    vs_hex(task_id, VS_ID_LEN, hex);
    snprintf(id, sizeof id, "%s.adm", hex);
    if (rc == 0)
        rc = vs_js_publish(bus, "vs.task.admitted", &a.base, id, NULL, NULL);
    free(sealed);
    return rc;
}
