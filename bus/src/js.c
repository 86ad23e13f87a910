/*
 * js.c - JetStream through its wire API, asynchronously, on the bus's
 * request machinery.
 *
 * Streams, KV buckets and consumers are declared from the tables in
 * streams.def (and vs_consumer_def), publishes carry Nats-Msg-Id and wait
 * for the server's PubAck, consumers are durable push consumers with a
 * deliver group and explicit acks. Speaking the JSON API directly instead
 * of cnats' blocking jsm calls keeps the loop thread free and lets every
 * daemon instance share one consumer (queue-subscribed deliver subject).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "bus_internal.h"
#include "vs/js.h"
#include "vs/log.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
#define JS_ERR_STREAM_NAME_IN_USE 10058
#define JS_ERR_WRONG_LAST_SEQUENCE 10071
#define JS_ERR_NO_MESSAGE_FOUND 10037
#define JS_ERR_STREAM_NOT_FOUND 10059
#define READ_INACTIVE_THRESHOLD_NS (30 * NS_PER_S)

/* ---- the JSON API ------------------------------------------------------------ */

/* status 0 with the parsed response, or a negative errno (err_code is the
 * JetStream error code when the server answered with an error). */
typedef void (*api_cb)(int status, int err_code, json_t *resp, void *arg);

struct api_call {
    api_cb cb;
    void *arg;
};

static void on_api_reply(int status, vs_msg *reply, void *arg)
{
    struct api_call *call = arg;
    json_t *resp = NULL;
    int err_code = 0;
    if (status == 0) {
        size_t len;
        const uint8_t *data = vs_msg_data(reply, &len);
        resp = json_loadb((const char *)data, len, 0, NULL);
        if (resp == NULL) {
            status = -EBADMSG;
        } else {
            json_t *err = json_object_get(resp, "error");
            if (err != NULL) {
                err_code = (int)json_integer_value(json_object_get(err, "err_code"));
                log_debug("jetstream error %d: %s", err_code,
                          json_string_value(json_object_get(err, "description")));
                status = -EIO;
            }
        }
    }
    call->cb(status, err_code, resp, call->arg);
    json_decref(resp);
    free(call);
}

/* Send body (stolen; may be NULL) to the API subject. */
static int api_request(vs_bus *bus, const char *subject, json_t *body, api_cb cb, void *arg)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body != NULL && text == NULL)
        return -ENOMEM;
    struct api_call *call = malloc(sizeof(*call));
    if (call == NULL) {
        free(text);
        return -ENOMEM;
    }
    call->cb = cb;
    call->arg = arg;
    int rc = vs_bus_request_raw(bus, subject, text, text != NULL ? strlen(text) : 0, NULL, 0,
                                VS_JS_API_TIMEOUT_MS, on_api_reply, call);
    free(text);
    if (rc < 0)
        free(call);
    return rc;
}

/* ---- declaring streams ------------------------------------------------------ */

static json_t *stream_config(enum vs_stream_id id, int replicas)
{
    const struct vs_stream_def *d = vs_stream(id);
    json_t *subjects = json_array();
    for (const char *const *s = vs_stream_subjects(id); *s != NULL; s++)
        json_array_append_new(subjects, json_string(*s));
    return json_pack("{s:s, s:o, s:s, s:i, s:i, s:I, s:I, s:i, s:s, s:s, s:i, s:I, s:b, s:b}",
                     "name", d->name, "subjects", subjects, "retention", "limits",
                     "max_consumers", -1, "max_msgs", -1, "max_bytes", (json_int_t)d->max_bytes,
                     "max_age", (json_int_t)(d->max_age_s * NS_PER_S), "max_msg_size",
                     (int)d->max_msg_size, "storage", "file", "discard", "old", "num_replicas",
                     replicas, "duplicate_window", (json_int_t)(d->dup_window_s * NS_PER_S),
                     "deny_delete", d->deny_delete_and_purge, "deny_purge",
                     d->deny_delete_and_purge);
}

static json_t *kv_config(enum vs_kv_id id, int replicas)
{
    const struct vs_kv_def *d = vs_kv(id);
    char name[96], subject[96];
    snprintf(name, sizeof(name), "KV_%s", d->bucket);
    snprintf(subject, sizeof(subject), "$KV.%s.>", d->bucket);
    int64_t dup = d->max_age_s > 0 && d->max_age_s < 120 ? d->max_age_s : 120;
    return json_pack("{s:s, s:[s], s:s, s:i, s:i, s:I, s:I, s:I, s:i, s:s, s:s, s:i, s:I, "
                     "s:b, s:b, s:b, s:b}",
                     "name", name, "subjects", subject, "retention", "limits", "max_consumers",
                     -1, "max_msgs", -1, "max_msgs_per_subject", (json_int_t)d->history,
                     "max_bytes", (json_int_t)d->max_bytes, "max_age",
                     (json_int_t)(d->max_age_s * NS_PER_S), "max_msg_size", (int)d->max_value_size,
                     "storage", "file", "discard", "new", "num_replicas", replicas,
                     "duplicate_window", (json_int_t)(dup * NS_PER_S), "deny_delete", 1,
                     "deny_purge", 0, "allow_rollup_hdrs", 1, "allow_direct", 1);
}

struct declare {
    vs_bus *bus;
    size_t next;          /* streams first, then KV buckets */
    bool updating;
    vs_bus_done_cb cb;
    void *arg;
};

static void declare_step(struct declare *d);

static json_t *declare_config(struct declare *d, char *name, size_t size)
{
    int replicas = vs__bus_replicas(d->bus);
    if (d->next < VS_STREAM_COUNT) {
        snprintf(name, size, "%s", vs_stream((enum vs_stream_id)d->next)->name);
        return stream_config((enum vs_stream_id)d->next, replicas);
    }
    snprintf(name, size, "KV_%s", vs_kv((enum vs_kv_id)(d->next - VS_STREAM_COUNT))->bucket);
    return kv_config((enum vs_kv_id)(d->next - VS_STREAM_COUNT), replicas);
}

static void on_declared(int status, int err_code, json_t *resp, void *arg)
{
    (void)resp;
    struct declare *d = arg;
    if (status < 0 && err_code == JS_ERR_STREAM_NAME_IN_USE && !d->updating) {
        d->updating = true; /* exists with another config: update it */
        declare_step(d);
        return;
    }
    if (status < 0) {
        char name[96];
        json_decref(declare_config(d, name, sizeof(name)));
        log_warnx("cannot declare stream %s (jetstream error %d)", name, err_code);
        d->cb(status, d->arg);
        free(d);
        return;
    }
    d->next++;
    d->updating = false;
    declare_step(d);
}

static void declare_step(struct declare *d)
{
    if (d->next >= VS_STREAM_COUNT + VS_KV_COUNT) {
        d->cb(0, d->arg);
        free(d);
        return;
    }
    char name[96], subject[160];
    json_t *config = declare_config(d, name, sizeof(name));
    snprintf(subject, sizeof(subject), "$JS.API.STREAM.%s.%s", d->updating ? "UPDATE" : "CREATE",
             name);
    int rc = api_request(d->bus, subject, config, on_declared, d);
    if (rc < 0) {
        d->cb(rc, d->arg);
        free(d);
    }
}

int vs_js_declare_all(vs_bus *bus, vs_bus_done_cb cb, void *arg)
{
    struct declare *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->bus = bus;
    d->cb = cb;
    d->arg = arg;
    declare_step(d);
    return 0;
}

struct sync_wait {
    bool done;
    int status;
};

static void on_sync_done(int status, void *arg)
{
    struct sync_wait *w = arg;
    w->status = status;
    w->done = true;
}

int vs_js_declare_all_sync(vs_bus *bus)
{
    struct sync_wait w = {false, 0};
    int rc = vs_js_declare_all(bus, on_sync_done, &w);
    if (rc < 0)
        return rc;
    rc = vs_bus_run_until(bus, &w.done, 4 * VS_JS_API_TIMEOUT_MS);
    return rc < 0 ? rc : w.status;
}

struct simple_call {
    vs_bus_done_cb cb;
    void *arg;
};

static void on_simple_done(int status, int err_code, json_t *resp, void *arg)
{
    (void)err_code;
    (void)resp;
    struct simple_call *c = arg;
    if (c->cb != NULL)
        c->cb(status, c->arg);
    free(c);
}

static int simple_api(vs_bus *bus, const char *subject, json_t *body, vs_bus_done_cb cb, void *arg)
{
    struct simple_call *c = malloc(sizeof(*c));
    if (c == NULL) {
        json_decref(body);
        return -ENOMEM;
    }
    c->cb = cb;
    c->arg = arg;
    int rc = api_request(bus, subject, body, on_simple_done, c);
    if (rc < 0)
        free(c);
    return rc;
}

static uint64_t stream_last_seq(const json_t *info)
{
    return (uint64_t)json_integer_value(json_object_get(json_object_get(info, "state"), "last_seq"));
}

struct last_seq_wait {
    bool done;
    int status;
    uint64_t last_seq;
};

static void on_last_seq(int status, int err_code, json_t *resp, void *arg)
{
    struct last_seq_wait *w = arg;
    w->status = status < 0 && err_code == JS_ERR_STREAM_NOT_FOUND ? -ENOENT : status;
    if (status == 0)
        w->last_seq = stream_last_seq(resp);
    w->done = true;
}

int vs_js_stream_last_seq_sync(vs_bus *bus, const char *name, uint64_t *last_seq)
{
    if (bus == NULL || !vs_token_valid(name) || last_seq == NULL)
        return -EINVAL;
    char subject[160];
    snprintf(subject, sizeof(subject), "$JS.API.STREAM.INFO.%s", name);
    struct last_seq_wait w = {0};
    int rc = api_request(bus, subject, NULL, on_last_seq, &w);
    if (rc == 0 && vs_bus_run_until(bus, &w.done, VS_JS_API_TIMEOUT_MS + 1000) < 0)
        rc = -ETIMEDOUT;
    if (rc == 0 && (rc = w.status) == 0)
        *last_seq = w.last_seq;
    return rc;
}

int vs_js_delete_stream(vs_bus *bus, const char *name, vs_bus_done_cb cb, void *arg)
{
    char subject[160];
    snprintf(subject, sizeof(subject), "$JS.API.STREAM.DELETE.%s", name);
    return simple_api(bus, subject, NULL, cb, arg);
}

/* ---- publishing ---------------------------------------------------------------- */

struct publish {
    vs_puback_cb cb;
    void *arg;
    char subject[VS_SUBJECT_MAX];
};

/* Parse a PubAck; fills ack and returns 0, or a negative errno. */
static int parse_puback(int status, vs_msg *reply, struct vs_puback *ack, json_t **keep,
                        int *err_code)
{
    *keep = NULL;
    *err_code = 0;
    if (status < 0)
        return status;
    size_t len;
    const uint8_t *data = vs_msg_data(reply, &len);
    json_t *j = json_loadb((const char *)data, len, 0, NULL);
    if (j == NULL)
        return -EBADMSG;
    *keep = j;
    json_t *err = json_object_get(j, "error");
    if (err != NULL) {
        *err_code = (int)json_integer_value(json_object_get(err, "err_code"));
        log_debug("publish refused: %s", json_string_value(json_object_get(err, "description")));
        return *err_code == JS_ERR_WRONG_LAST_SEQUENCE ? -ECONNRESET : -EIO;
    }
    ack->stream = json_string_value(json_object_get(j, "stream"));
    ack->seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    ack->duplicate = json_is_true(json_object_get(j, "duplicate"));
    return ack->stream != NULL && ack->seq > 0 ? 0 : -EBADMSG;
}

static void on_puback(int status, vs_msg *reply, void *arg)
{
    struct publish *p = arg;
    struct vs_puback ack = {0};
    json_t *keep;
    int err_code;
    status = parse_puback(status, reply, &ack, &keep, &err_code);
    if (p->cb != NULL)
        p->cb(status, status == 0 ? &ack : NULL, p->arg);
    else if (status < 0)
        log_warnx("jetstream publish to %s failed: %s", p->subject, strerror(-status));
    json_decref(keep);
    free(p);
}

int vs_js_publish_raw(vs_bus *bus, const char *subject, const void *data, size_t len,
                      const char *const *hdrs, size_t nhdr, vs_puback_cb cb, void *arg)
{
    struct publish *p = malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->cb = cb;
    p->arg = arg;
    snprintf(p->subject, sizeof(p->subject), "%s", subject);
    int rc = vs_bus_request_raw(bus, subject, data, len, hdrs, nhdr, VS_JS_API_TIMEOUT_MS,
                                on_puback, p);
    if (rc < 0)
        free(p);
    return rc;
}

/* The typed publish path: check the subject's row, pack, add the id. */
static int pack_for_stream(vs_bus *bus, const char *subject, const ProtobufCMessage *msg,
                           uint8_t **buf, size_t *len)
{
    const struct vs_subject_def *def = vs_subject_match(subject);
    if (def == NULL || (def->delivery != VS_JETSTREAM && def->delivery != VS_JS_REPLY))
        return -EINVAL;
    if (def->message != msg->descriptor)
        return -EPROTOTYPE;
    return vs__pack(bus, msg, buf, len);
}

int vs_js_publish(vs_bus *bus, const char *subject, const ProtobufCMessage *msg,
                  const char *msg_id, vs_puback_cb cb, void *arg)
{
    uint8_t *buf;
    size_t len;
    int rc = pack_for_stream(bus, subject, msg, &buf, &len);
    if (rc < 0)
        return rc;
    const char *hdrs[] = {VS_HDR_MSG_ID, msg_id};
    rc = vs_js_publish_raw(bus, subject, buf, len, hdrs, msg_id != NULL ? 1 : 0, cb, arg);
    free(buf);
    return rc;
}

struct then_ack {
    vs_msg *in;
    uint64_t nak_delay_ms;
};

static void on_output_stored(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct then_ack *t = arg;
    if (status == 0) {
        vs_msg_ack(t->in);
    } else {
        log_warnx("output not stored (%s); input will be redelivered", strerror(-status));
        vs_msg_nak(t->in, t->nak_delay_ms);
    }
    free(t);
}

int vs_js_publish_then_ack(vs_msg *in, const char *subject, const ProtobufCMessage *out,
                           const char *msg_id, uint64_t nak_delay_ms)
{
    if (!vs_msg_is_jetstream(in))
        return -EINVAL;
    struct then_ack *t = malloc(sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->in = in;
    t->nak_delay_ms = nak_delay_ms;
    int rc = vs_js_publish(vs_msg_bus(in), subject, out, msg_id, on_output_stored, t);
    if (rc < 0) {
        free(t);
        return rc;
    }
    vs_msg_hold(in);
    return 0;
}

/* ---- consumers ------------------------------------------------------------------ */

struct vs_consumer {
    vs_bus *bus;
    vs_sub *sub;
    char stream[VS_JS_STREAM_NAME_MAX + 1];
    char name[VS_TOKEN_MAX + 1];        /* server-side consumer name */
    char deliver[VS_SUBJECT_MAX];
    char *group;                         /* deliver group (durables) */
    bool ephemeral;
    bool creating;                       /* API call in flight */
    bool freed;                          /* vs_consumer_free came first */
    const ProtobufCMessageDescriptor *desc;
    vs_msg_handler cb;
    void *arg;
    uint64_t ack_wait_ms;
    uint64_t nak_delay_ms;
    /* reporting creation */
    int status;
    bool done;
};

static void consumer_destroy(vs_consumer *c)
{
    if (c->sub != NULL)
        vs_sub_free(c->sub);
    if (c->ephemeral && c->name[0] != '\0') {
        char subject[200];
        snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.DELETE.%s.%s", c->stream, c->name);
        simple_api(c->bus, subject, NULL, NULL, NULL);
    }
    free(c->group);
    free(c);
}

static void on_consumer_created(int status, int err_code, json_t *resp, void *arg)
{
    vs_consumer *c = arg;
    c->creating = false;
    if (c->freed) {
        if (status == 0)
            snprintf(c->name, sizeof(c->name), "%s",
                     json_string_value(json_object_get(resp, "name")) != NULL
                         ? json_string_value(json_object_get(resp, "name"))
                         : "");
        consumer_destroy(c);
        return;
    }
    if (status == 0) {
        const char *name = json_string_value(json_object_get(resp, "name"));
        snprintf(c->name, sizeof(c->name), "%s", name != NULL ? name : "");
        status = vs__subscribe(c->bus, c->deliver, c->group, c->desc, c->cb, c->arg, true,
                               false, c->ack_wait_ms, c->nak_delay_ms, &c->sub);
    } else {
        log_warnx("cannot create consumer on %s (jetstream error %d)", c->stream, err_code);
    }
    c->status = status;
    c->done = true;
}

static vs_consumer *consumer_alloc(vs_bus *bus, const char *stream,
                                   const ProtobufCMessageDescriptor *desc, vs_msg_handler cb,
                                   void *arg)
{
    vs_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->bus = bus;
    snprintf(c->stream, sizeof(c->stream), "%s", stream);
    c->desc = desc;
    c->cb = cb;
    c->arg = arg;
    return c;
}

int vs_js_consume(vs_bus *bus, const struct vs_consumer_def *def,
                  const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                  vs_consumer **out)
{
    if (bus == NULL || def == NULL || cb == NULL || !vs_token_valid(def->durable) ||
        !vs_token_valid(def->stream))
        return -EINVAL;
    vs_consumer *c = consumer_alloc(bus, def->stream, desc, cb, arg);
    if (c == NULL)
        return -ENOMEM;
    c->group = strdup(def->durable);
    c->ack_wait_ms = def->ack_wait_ms > 0 ? def->ack_wait_ms : 30000;
    c->nak_delay_ms = def->nak_delay_ms > 0 ? def->nak_delay_ms : 1000;
    snprintf(c->deliver, sizeof(c->deliver), "_VS.deliver.%s.%s", def->stream, def->durable);
    json_t *config = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "durable_name", def->durable,
        "deliver_subject", c->deliver, "deliver_group", def->durable, "ack_policy", "explicit",
        "deliver_policy", def->deliver_new ? "new" : "all", "ack_wait",
        (json_int_t)c->ack_wait_ms * NS_PER_MS, "max_deliver",
        (json_int_t)(def->max_deliver > 0 ? def->max_deliver : 10), "max_ack_pending",
        (json_int_t)(def->max_ack_pending > 0 ? def->max_ack_pending : 256), "replay_policy",
        "instant");
    if (config != NULL && def->filter_subject != NULL)
        json_object_set_new(config, "filter_subject", json_string(def->filter_subject));
    json_t *body = json_pack("{s:s, s:o}", "stream_name", def->stream, "config", config);
    if (c->group == NULL || body == NULL) {
        json_decref(body);
        free(c->group);
        free(c);
        return -ENOMEM;
    }
    char subject[200];
    snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", def->stream,
             def->durable);
    c->creating = true;
    int rc = api_request(bus, subject, body, on_consumer_created, c);
    if (rc < 0) {
        free(c->group);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Run the loop until c's creation finished; free it on failure. */
static int consumer_wait(vs_bus *bus, vs_consumer *c, vs_consumer **out)
{
    int rc = vs_bus_run_until(bus, &c->done, 2 * VS_JS_API_TIMEOUT_MS);
    if (rc == 0)
        rc = c->status;
    if (rc < 0) {
        vs_consumer_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int vs_js_consume_sync(vs_bus *bus, const struct vs_consumer_def *def,
                       const ProtobufCMessageDescriptor *desc, vs_msg_handler cb, void *arg,
                       vs_consumer **out)
{
    vs_consumer *c;
    int rc = vs_js_consume(bus, def, desc, cb, arg, &c);
    return rc < 0 ? rc : consumer_wait(bus, c, out);
}

void vs_consumer_free(vs_consumer *c)
{
    if (c == NULL)
        return;
    if (c->creating) {
        c->freed = true; /* on_consumer_created finishes the job */
        return;
    }
    consumer_destroy(c);
}

struct read_start {
    vs_consumer *c;
    char *filter;
    uint64_t start_seq;
    uint64_t last_n;
};

static int create_reader(struct read_start *rs, uint64_t from_seq)
{
    vs_consumer *c = rs->c;
    json_t *config = json_pack("{s:s, s:s, s:s, s:I}", "deliver_subject", c->deliver,
                               "ack_policy", "none", "replay_policy", "instant",
                               "inactive_threshold", (json_int_t)READ_INACTIVE_THRESHOLD_NS);
    if (config == NULL)
        return -ENOMEM;
    if (from_seq == UINT64_MAX) {
        json_object_set_new(config, "deliver_policy", json_string("new"));
    } else if (from_seq > 1) {
        json_object_set_new(config, "deliver_policy", json_string("by_start_sequence"));
        json_object_set_new(config, "opt_start_seq", json_integer((json_int_t)from_seq));
    } else {
        json_object_set_new(config, "deliver_policy", json_string("all"));
    }
    if (rs->filter != NULL)
        json_object_set_new(config, "filter_subject", json_string(rs->filter));
    json_t *body = json_pack("{s:s, s:o}", "stream_name", c->stream, "config", config);
    if (body == NULL)
        return -ENOMEM;
    char subject[200];
    snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.CREATE.%s", c->stream);
    c->creating = true;
    return api_request(c->bus, subject, body, on_consumer_created, c);
}

static void read_start_free(struct read_start *rs)
{
    free(rs->filter);
    free(rs);
}

static void on_stream_info(int status, int err_code, json_t *resp, void *arg)
{
    (void)err_code;
    struct read_start *rs = arg;
    vs_consumer *c = rs->c;
    c->creating = false;
    if (status == 0 && !c->freed) {
        uint64_t last = stream_last_seq(resp);
        uint64_t from = last >= rs->last_n ? last - rs->last_n + 1 : 1;
        status = create_reader(rs, from);
    }
    if (c->freed) {
        if (!c->creating)
            consumer_destroy(c);
    } else if (status < 0) {
        c->status = status;
        c->done = true;
    }
    read_start_free(rs);
}

int vs_js_read(vs_bus *bus, const char *stream, const char *subject, uint64_t start_seq,
               uint64_t last_n, const ProtobufCMessageDescriptor *desc, vs_msg_handler cb,
               void *arg, vs_consumer **out)
{
    if (bus == NULL || stream == NULL || cb == NULL || !vs_token_valid(stream))
        return -EINVAL;
    vs_consumer *c = consumer_alloc(bus, stream, desc, cb, arg);
    struct read_start *rs = calloc(1, sizeof(*rs));
    if (c == NULL || rs == NULL) {
        free(c);
        free(rs);
        return -ENOMEM;
    }
    c->ephemeral = true;
    rs->c = c;
    rs->start_seq = start_seq;
    rs->last_n = last_n;
    rs->filter = subject != NULL ? strdup(subject) : NULL;
    int rc = vs_bus_new_inbox(bus, c->deliver, sizeof(c->deliver));
    if (rc == 0 && last_n > 0 && start_seq == 0) {
        char api[200];
        snprintf(api, sizeof(api), "$JS.API.STREAM.INFO.%s", stream);
        c->creating = true;
        rc = api_request(bus, api, NULL, on_stream_info, rs);
        if (rc == 0) {
            *out = c;
            return 0;
        }
    } else if (rc == 0) {
        rc = create_reader(rs, start_seq);
    }
    read_start_free(rs);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- JetStream + reply ------------------------------------------------------------ */

struct js_request {
    vs_bus *bus;
    uint64_t reply_token;
};

static void on_request_stored(int status, const struct vs_puback *ack, void *arg)
{
    struct js_request *r = arg;
    if (status < 0)
        vs__pending_fail(r->bus, r->reply_token, status);
    else if (ack->duplicate)
        vs__pending_fail(r->bus, r->reply_token, -EALREADY);
    free(r);
}

int vs_js_request(vs_bus *bus, const char *subject, const ProtobufCMessage *req,
                  const char *msg_id, const ProtobufCMessageDescriptor *reply_desc,
                  uint64_t timeout_ms, vs_reply_cb cb, void *arg)
{
    if (bus == NULL || subject == NULL || req == NULL || reply_desc == NULL || cb == NULL)
        return -EINVAL;
    uint8_t *buf;
    size_t len;
    int rc = pack_for_stream(bus, subject, req, &buf, &len);
    if (rc < 0)
        return rc;
    struct js_request *r = malloc(sizeof(*r));
    if (r == NULL) {
        free(buf);
        return -ENOMEM;
    }
    r->bus = bus;
    char inbox[128];
    rc = vs__pending_add_typed(bus, reply_desc, timeout_ms, cb, arg, inbox, sizeof(inbox),
                               &r->reply_token);
    if (rc == 0) {
        const char *hdrs[] = {VS_HDR_REPLY_TO, inbox, VS_HDR_MSG_ID, msg_id};
        rc = vs_js_publish_raw(bus, subject, buf, len, hdrs, msg_id != NULL ? 2 : 1,
                               on_request_stored, r);
        if (rc < 0) {
            /* The callback reports the failure, exactly once. */
            vs__pending_fail(bus, r->reply_token, rc);
            free(r);
            rc = 0;
        }
    } else {
        free(r);
    }
    free(buf);
    return rc;
}

/* ---- KV buckets ------------------------------------------------------------------ */

static bool kv_key_valid(const char *key)
{
    if (key == NULL || *key == '\0' || strlen(key) > 200)
        return false;
    char tok[VS_TOKEN_MAX + 1];
    const char *p = key;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n > VS_TOKEN_MAX)
            return false;
        memcpy(tok, p, n);
        tok[n] = '\0';
        if (!vs_token_valid(tok))
            return false;
        if (dot == NULL)
            return true;
        p = dot + 1;
    }
}

struct kv_call {
    vs_kv_cb cb;
    void *arg;
};

static void on_kv_put(int status, const struct vs_puback *ack, void *arg)
{
    struct kv_call *k = arg;
    struct vs_kv_entry e = {0};
    if (status == 0)
        e.revision = ack->seq;
    k->cb(status, status == 0 ? &e : NULL, k->arg);
    free(k);
}

static int kv_write(vs_bus *bus, enum vs_kv_id kv, const char *key, const void *value, size_t len,
                    const char *const *hdrs, size_t nhdr, vs_kv_cb cb, void *arg)
{
    const struct vs_kv_def *d = vs_kv(kv);
    if (d == NULL || !kv_key_valid(key) || cb == NULL)
        return -EINVAL;
    if (len > (size_t)d->max_value_size)
        return -EMSGSIZE;
    char subject[VS_SUBJECT_MAX];
    int n = snprintf(subject, sizeof(subject), "$KV.%s.%s", d->bucket, key);
    if (n < 0 || (size_t)n >= sizeof(subject))
        return -ENAMETOOLONG;
    struct kv_call *k = malloc(sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    k->cb = cb;
    k->arg = arg;
    int rc = vs_js_publish_raw(bus, subject, value, len, hdrs, nhdr, on_kv_put, k);
    if (rc < 0)
        free(k);
    return rc;
}

int vs_kv_put(vs_bus *bus, enum vs_kv_id kv, const char *key, const void *value, size_t len,
              uint64_t expected_revision, bool create_only, vs_kv_cb cb, void *arg)
{
    char rev[24];
    snprintf(rev, sizeof(rev), "%" PRIu64, expected_revision);
    const char *hdrs[] = {"Nats-Expected-Last-Subject-Sequence", rev};
    bool cas = expected_revision > 0 || create_only;
    return kv_write(bus, kv, key, value, len, hdrs, cas ? 1 : 0, cb, arg);
}

int vs_kv_delete(vs_bus *bus, enum vs_kv_id kv, const char *key, vs_kv_cb cb, void *arg)
{
    const char *hdrs[] = {"KV-Operation", "DEL"};
    return kv_write(bus, kv, key, "", 0, hdrs, 1, cb, arg);
}

static void on_kv_get(int status, int err_code, json_t *resp, void *arg)
{
    struct kv_call *k = arg;
    struct vs_kv_entry e = {0};
    uint8_t *value = NULL;
    if (status < 0 && err_code == JS_ERR_NO_MESSAGE_FOUND)
        status = -ENOENT;
    if (status == 0) {
        json_t *m = json_object_get(resp, "message");
        const char *data = json_string_value(json_object_get(m, "data"));
        const char *hdrs = json_string_value(json_object_get(m, "hdrs"));
        e.revision = (uint64_t)json_integer_value(json_object_get(m, "seq"));
        size_t dlen = data != NULL ? strlen(data) : 0;
        value = malloc(dlen + 1);
        if (value == NULL) {
            status = -ENOMEM;
        } else if (dlen > 0 && sodium_base642bin(value, dlen + 1, data, dlen, NULL, &e.len, NULL,
                                                 sodium_base64_VARIANT_ORIGINAL) != 0) {
            status = -EBADMSG;
        }
        e.value = value;
        if (status == 0 && hdrs != NULL) {
            /* Deletes and purges are markers with a KV-Operation header. */
            size_t hlen = strlen(hdrs), blen = 0;
            char *h = malloc(hlen + 1);
            if (h != NULL && sodium_base642bin((unsigned char *)h, hlen, hdrs, hlen, NULL, &blen,
                                               NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
                h[blen] = '\0';
                if (strstr(h, "KV-Operation: DEL") != NULL || strstr(h, "KV-Operation: PURGE"))
                    e.deleted = true;
            }
            free(h);
        }
        if (status == 0 && e.deleted)
            status = -ENOENT;
    }
    k->cb(status, status == 0 ? &e : NULL, k->arg);
    if (value != NULL)
        sodium_memzero(value, e.len);
    free(value);
    free(k);
}

int vs_kv_get(vs_bus *bus, enum vs_kv_id kv, const char *key, vs_kv_cb cb, void *arg)
{
    const struct vs_kv_def *d = vs_kv(kv);
    if (d == NULL || !kv_key_valid(key) || cb == NULL)
        return -EINVAL;
    char subject[VS_SUBJECT_MAX], api[VS_SUBJECT_MAX];
    snprintf(subject, sizeof(subject), "$KV.%s.%s", d->bucket, key);
    snprintf(api, sizeof(api), "$JS.API.STREAM.MSG.GET.KV_%s", d->bucket);
    struct kv_call *k = malloc(sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    k->cb = cb;
    k->arg = arg;
    int rc = api_request(bus, api, json_pack("{s:s}", "last_by_subj", subject), on_kv_get, k);
    if (rc < 0)
        free(k);
    return rc;
}
