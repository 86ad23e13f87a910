/*
 * test_jetstream.c - JetStream through the bus against a real nats-server:
 * streams declared from the table, deduplication by Nats-Msg-Id, durable
 * consumers (ack after the output is stored, nak on transient failure,
 * term on poison), "JetStream + reply", KV buckets, ordered reads, and the
 * sealed blob transport (5 MiB round trip, corrupted chunk refused).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "busfix.h"
#include "vs/audit.h"
#include "vs/blob.h"
#include "vs/bus.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/task.pb-c.h"

static int setup(void **state)
{
    struct vs_busfix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(f, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    vs_busfix_fini(*state);
    free(*state);
    return 0;
}

static void idle(struct vs_busfix *f, uint64_t ms)
{
    vs_test_idle(f->bus, ms);
}

struct acked {
    bool done;
    int status;
    uint64_t seq;
    bool duplicate;
    char stream[32];
};

static void on_ack(int status, const struct vs_puback *ack, void *arg)
{
    struct acked *a = arg;
    a->done = true;
    a->status = status;
    if (status == 0) {
        a->seq = ack->seq;
        a->duplicate = ack->duplicate;
        snprintf(a->stream, sizeof(a->stream), "%s", ack->stream);
    }
}

static void make_task(Vs__V1__TaskSubmit *t, uint8_t id[VS_ID_LEN])
{
    vs__v1__task_submit__init(t);
    vs_id_new(id);
    t->task_id.data = id;
    t->task_id.len = VS_ID_LEN;
    t->requester = "req-1";
    t->agent = "agent-1";
    t->bounty = 100;
}

static struct acked publish_task(struct vs_busfix *f, const Vs__V1__TaskSubmit *t, const char *msg_id)
{
    struct acked a = {0};
    assert_int_equal(vs_js_publish(f->bus, "vs.task.submit", &t->base, msg_id, on_ack, &a), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &a.done, 10000), 0);
    return a;
}

static void test_publish_dedup_by_msg_id(void **state)
{
    struct vs_busfix *f = *state;
    Vs__V1__TaskSubmit t;
    uint8_t id[VS_ID_LEN];
    make_task(&t, id);
    char hex[VS_ID_HEX_LEN];
    vs_hex(id, VS_ID_LEN, hex);
    struct acked first = publish_task(f, &t, hex);
    assert_int_equal(first.status, 0);
    assert_string_equal(first.stream, "TASKS");
    assert_false(first.duplicate);
    struct acked again = publish_task(f, &t, hex);
    assert_int_equal(again.status, 0);
    assert_true(again.duplicate);
    assert_int_equal(again.seq, first.seq);
    /* Without an id the server cannot tell: a new message. */
    struct acked other = publish_task(f, &t, NULL);
    assert_int_equal(other.seq, first.seq + 1);
}

static void test_publish_without_stream(void **state)
{
    struct vs_busfix *f = *state;
    struct acked a = {0};
    assert_int_equal(vs_js_publish_raw(f->bus, "not.in.any.stream", "x", 1, NULL, 0, on_ack, &a), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &a.done, 10000), 0);
    assert_int_equal(a.status, -EHOSTUNREACH);
}

struct worker {
    int calls;
    int fail_first;      /* VS_RETRY this many times */
    bool poison;
    int outputs;
    uint64_t last_delivery;
};

static int on_task(vs_msg *m, void *arg)
{
    struct worker *w = arg;
    w->calls++;
    w->last_delivery = vs_msg_delivery_count(m);
    assert_true(vs_msg_is_jetstream(m));
    assert_string_equal(vs_msg_stream(m), "TASKS");
    if (w->poison)
        return -EINVAL;
    if (w->fail_first > 0) {
        w->fail_first--;
        return VS_RETRY;
    }
    const Vs__V1__TaskSubmit *t = (const Vs__V1__TaskSubmit *)vs_msg_body(m);
    Vs__V1__TaskRejected out = VS__V1__TASK_REJECTED__INIT;
    out.task_id = t->task_id;
    out.stage = "test";
    char hex[VS_ID_HEX_LEN];
    vs_hex(t->task_id.data, VS_ID_LEN, hex);
    assert_int_equal(vs_js_publish_then_ack(m, "vs.task.rejected", &out.base, hex, 100), 0);
    w->outputs++;
    return 0;
}

struct counter {
    int n;
    bool done;
    int want;
};

static int count_msg(vs_msg *m, void *arg)
{
    (void)m;
    struct counter *c = arg;
    if (++c->n >= c->want)
        c->done = true;
    return 0;
}

static void test_consumer_acks_after_output_and_retries(void **state)
{
    struct vs_busfix *f = *state;
    struct worker w = {.fail_first = 2};
    struct vs_consumer_def def = {.stream = "TASKS", .durable = "unit", .filter_subject = "vs.task.submit",
                                  .ack_wait_ms = 2000, .nak_delay_ms = 100};
    vs_consumer *c;
    assert_int_equal(vs_js_consume_sync(f->bus, &def, &vs__v1__task_submit__descriptor, on_task, &w, &c), 0);
    Vs__V1__TaskSubmit t;
    uint8_t id[VS_ID_LEN];
    make_task(&t, id);
    publish_task(f, &t, NULL);
    for (int i = 0; i < 100 && w.outputs == 0; i++)
        idle(f, 50);
    assert_int_equal(w.outputs, 1);
    assert_int_equal(w.calls, 3);          /* two naks, then handled */
    assert_int_equal(w.last_delivery, 3);
    idle(f, 2500);                         /* past ack_wait: acked, so no redelivery */
    assert_int_equal(w.calls, 3);
    assert_int_equal(vs_test_stream_count(f->bus, "TASKS", "vs.task.rejected"), 1);
    vs_consumer_free(c);
}

static void test_poison_message_terminated(void **state)
{
    struct vs_busfix *f = *state;
    struct worker w = {.poison = true};
    struct vs_consumer_def def = {.stream = "TASKS", .durable = "poison", .filter_subject = "vs.task.submit",
                                  .ack_wait_ms = 1000};
    vs_consumer *c;
    assert_int_equal(vs_js_consume_sync(f->bus, &def, &vs__v1__task_submit__descriptor, on_task, &w, &c), 0);
    Vs__V1__TaskSubmit t;
    uint8_t id[VS_ID_LEN];
    make_task(&t, id);
    publish_task(f, &t, NULL);
    /* Undecodable bytes on the same subject are terminated before the handler. */
    struct acked a = {0};
    assert_int_equal(vs_js_publish_raw(f->bus, "vs.task.submit", "\xff\xff\xff", 3, NULL, 0, on_ack, &a), 0);
    struct vs_bus_stats before;
    vs_bus_stats_get(f->bus, &before);
    idle(f, 2500);
    assert_int_equal(w.calls, 1);          /* terminated: never redelivered */
    struct vs_bus_stats after;
    vs_bus_stats_get(f->bus, &after);
    assert_true(after.invalid >= 1);
    vs_consumer_free(c);
}

static int hold_then_ack(vs_msg *m, void *arg)
{
    (*(int *)arg)++;
    /* A handler may hold a message and resolve it before returning. */
    vs_msg *held = vs_msg_hold(m);
    assert_int_equal(vs_msg_ack(held), 0);
    assert_int_equal(vs_msg_ack(held), -EALREADY);
    return 0;
}

static void test_hold_and_ack_within_the_handler(void **state)
{
    struct vs_busfix *f = *state;
    int calls = 0;
    struct vs_consumer_def def = {.stream = "TASKS", .durable = "holdack", .filter_subject = "vs.task.submit",
                                  .ack_wait_ms = 1000};
    vs_consumer *c;
    assert_int_equal(vs_js_consume_sync(f->bus, &def, &vs__v1__task_submit__descriptor, hold_then_ack, &calls, &c), 0);
    for (int i = 0; i < 5; i++) {
        Vs__V1__TaskSubmit t;
        uint8_t id[VS_ID_LEN];
        make_task(&t, id);
        publish_task(f, &t, NULL);
    }
    idle(f, 2000); /* past ack_wait: acked, so each was delivered once */
    assert_int_equal(calls, 5);
    vs_consumer_free(c);
}

/* A ledger-like service for "JetStream + reply". */
static int on_command(vs_msg *m, void *arg)
{
    int *applied = arg;
    (*applied)++;
    const Vs__V1__LedgerCommand *cmd = (const Vs__V1__LedgerCommand *)vs_msg_body(m);
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__LedgerReply r = VS__V1__LEDGER_REPLY__INIT;
    r.status = &st;
    r.command_id = cmd->command_id;
    r.balance = 42;
    assert_int_equal(vs_msg_respond(m, &r.base), 0);
    return 0;
}

struct answer {
    int calls;
    int status;
    int64_t balance;
    bool done;
};

static void on_answer(int status, const ProtobufCMessage *msg, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->done = true;
    a->status = status;
    if (status == 0)
        a->balance = ((const Vs__V1__LedgerReply *)msg)->balance;
}

static void test_js_request_reply(void **state)
{
    struct vs_busfix *f = *state;
    int applied = 0;
    struct vs_consumer_def def = {.stream = "LEDGER", .durable = "ledger", .filter_subject = "vs.ledger.command"};
    vs_consumer *c;
    assert_int_equal(vs_js_consume_sync(f->bus, &def, &vs__v1__ledger_command__descriptor, on_command, &applied, &c), 0);
    uint8_t id[VS_ID_LEN];
    vs_id_new(id);
    char hex[VS_ID_HEX_LEN];
    vs_hex(id, VS_ID_LEN, hex);
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    cmd.command_id.data = id;
    cmd.command_id.len = VS_ID_LEN;
    cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT;
    struct answer a = {0};
    assert_int_equal(vs_js_request(f->bus, "vs.ledger.command", &cmd.base, hex,
                                   &vs__v1__ledger_reply__descriptor, 5000, on_answer, &a), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &a.done, 10000), 0);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.balance, 42);
    /* The same command id again: the stream already has it. */
    struct answer again = {0};
    assert_int_equal(vs_js_request(f->bus, "vs.ledger.command", &cmd.base, hex,
                                   &vs__v1__ledger_reply__descriptor, 5000, on_answer, &again), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &again.done, 10000), 0);
    assert_int_equal(again.status, -EALREADY);
    idle(f, 300);
    assert_int_equal(applied, 1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(again.calls, 1);
    vs_consumer_free(c);
}

static void test_js_request_without_service_times_out(void **state)
{
    struct vs_busfix *f = *state;
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    struct answer a = {0};
    assert_int_equal(vs_js_request(f->bus, "vs.ledger.command", &cmd.base, NULL,
                                   &vs__v1__ledger_reply__descriptor, 400, on_answer, &a), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &a.done, 10000), 0);
    assert_int_equal(a.status, -ETIMEDOUT);
}

struct kv_result {
    bool done;
    int status;
    uint64_t revision;
    char value[64];
};

static void on_kv(int status, const struct vs_kv_entry *e, void *arg)
{
    struct kv_result *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0) {
        r->revision = e->revision;
        snprintf(r->value, sizeof(r->value), "%.*s", (int)e->len, e->value != NULL ? (const char *)e->value : "");
    }
}

#define KV_SYNC(f, call, r)                                      \
    do {                                                         \
        memset(&(r), 0, sizeof(r));                              \
        assert_int_equal((call), 0);                             \
        assert_int_equal(vs_bus_run_until((f)->bus, &(r).done, 10000), 0); \
    } while (0)

static void test_kv_bucket(void **state)
{
    struct vs_busfix *f = *state;
    struct kv_result r;
    KV_SYNC(f, vs_kv_get(f->bus, VS_KV_TASK_STATE, "t1", on_kv, &r), r);
    assert_int_equal(r.status, -ENOENT);
    KV_SYNC(f, vs_kv_put(f->bus, VS_KV_TASK_STATE, "t1", "gated", 5, 0, true, on_kv, &r), r);
    assert_int_equal(r.status, 0);
    uint64_t rev = r.revision;
    /* create_only on an existing key loses */
    KV_SYNC(f, vs_kv_put(f->bus, VS_KV_TASK_STATE, "t1", "again", 5, 0, true, on_kv, &r), r);
    assert_int_equal(r.status, -ECONNRESET);
    /* compare-and-set with the right revision wins, with a stale one loses */
    KV_SYNC(f, vs_kv_put(f->bus, VS_KV_TASK_STATE, "t1", "admitted", 8, rev, false, on_kv, &r), r);
    assert_int_equal(r.status, 0);
    KV_SYNC(f, vs_kv_put(f->bus, VS_KV_TASK_STATE, "t1", "stale", 5, rev, false, on_kv, &r), r);
    assert_int_equal(r.status, -ECONNRESET);
    KV_SYNC(f, vs_kv_get(f->bus, VS_KV_TASK_STATE, "t1", on_kv, &r), r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.value, "admitted");
    KV_SYNC(f, vs_kv_delete(f->bus, VS_KV_TASK_STATE, "t1", on_kv, &r), r);
    assert_int_equal(r.status, 0);
    KV_SYNC(f, vs_kv_get(f->bus, VS_KV_TASK_STATE, "t1", on_kv, &r), r);
    assert_int_equal(r.status, -ENOENT);
    /* keys are validated tokens: no wildcards, no empty tokens */
    assert_int_equal(vs_kv_get(f->bus, VS_KV_TASK_STATE, "a.>", on_kv, &r), -EINVAL);
    assert_int_equal(vs_kv_get(f->bus, VS_KV_TASK_STATE, "a..b", on_kv, &r), -EINVAL);
}

static void test_read_last_n(void **state)
{
    struct vs_busfix *f = *state;
    for (int i = 0; i < 10; i++) {
        Vs__V1__TaskSubmit t;
        uint8_t id[VS_ID_LEN];
        make_task(&t, id);
        publish_task(f, &t, NULL);
    }
    struct counter c = {.want = 1000};
    vs_consumer *r;
    assert_int_equal(vs_js_read(f->bus, "TASKS", "vs.task.submit", 0, 4, NULL, count_msg, &c, &r), 0);
    idle(f, 700);
    assert_int_equal(c.n, 4);
    vs_consumer_free(r);
}

struct blob_result {
    bool done;
    int status;
    uint8_t *data;
    size_t len;
    Vs__V1__BlobManifest *manifest;
};

static void on_sent(int status, const Vs__V1__BlobManifest *m, void *arg)
{
    struct blob_result *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0) {
        /* keep a copy of the manifest beyond the callback */
        size_t n = vs__v1__blob_manifest__get_packed_size(m);
        uint8_t *buf = malloc(n);
        vs__v1__blob_manifest__pack(m, buf);
        r->manifest = vs__v1__blob_manifest__unpack(NULL, n, buf);
        free(buf);
    }
}

static void on_fetched(int status, const uint8_t *data, size_t len, void *arg)
{
    struct blob_result *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0) {
        r->data = malloc(len + 1);
        memcpy(r->data, data, len);
        r->len = len;
    }
}

static void test_blob_5mib_round_trip(void **state)
{
    struct vs_busfix *f = *state;
    vs_boxkey *scanner, *other;
    assert_int_equal(vs_boxkey_new(&scanner), 0);
    assert_int_equal(vs_boxkey_new(&other), 0);
    size_t len = 5 * 1024 * 1024 + 123;
    uint8_t *data = malloc(len);
    randombytes_buf(data, len);
    struct blob_result sent = {0};
    assert_int_equal(vs_blob_send(f->bus, data, len, vs_boxkey_public(scanner), 64u << 20, on_sent, &sent), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &sent.done, 30000), 0);
    assert_int_equal(sent.status, 0);
    assert_int_equal(sent.manifest->size, len);
    assert_true(sent.manifest->chunks > 10);

    struct blob_result got = {0};
    assert_int_equal(vs_blob_fetch(f->bus, sent.manifest, scanner, 64u << 20, 20000, on_fetched, &got), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &got.done, 30000), 0);
    assert_int_equal(got.status, 0);
    assert_int_equal(got.len, len);
    assert_memory_equal(got.data, data, len);

    /* Only the recipient pool can open it; and not above the policy limit. */
    assert_int_equal(vs_blob_fetch(f->bus, sent.manifest, other, 64u << 20, 20000, on_fetched, &got), -EBADMSG);
    assert_int_equal(vs_blob_fetch(f->bus, sent.manifest, scanner, 1u << 20, 20000, on_fetched, &got), -EFBIG);
    assert_int_equal(vs_blob_send(f->bus, data, len, vs_boxkey_public(scanner), 1u << 20, on_sent, &sent), -EFBIG);

    vs__v1__blob_manifest__free_unpacked(sent.manifest, NULL);
    free(got.data);
    free(data);
    vs_boxkey_free(scanner);
    vs_boxkey_free(other);
}

static void test_blob_corrupted_chunk_refused(void **state)
{
    struct vs_busfix *f = *state;
    vs_boxkey *scanner;
    assert_int_equal(vs_boxkey_new(&scanner), 0);
    size_t len = 3 * VS_BLOB_CHUNK_SIZE + 10;
    uint8_t *data = malloc(len);
    randombytes_buf(data, len);
    /* Encode by hand and put the chunks on the real bus with one bit
     * flipped in the second chunk, as a tampering relay would. */
    Vs__V1__BlobManifest manifest = VS__V1__BLOB_MANIFEST__INIT;
    vs_blob_encoder *enc;
    assert_int_equal(vs_blob_encoder_new(vs_boxkey_public(scanner), len, 0, &manifest, &enc), 0);
    char hex[VS_ID_HEX_LEN], subject[VS_SUBJECT_MAX];
    vs_hex(manifest.blob_id.data, VS_ID_LEN, hex);
    snprintf(subject, sizeof(subject), "vs.blob.%s", hex);
    uint8_t *cipher = malloc(VS_BLOB_CHUNK_SIZE + VS_BLOB_CHUNK_OVERHEAD);
    for (uint32_t i = 0; i < manifest.chunks; i++) {
        size_t off = (size_t)i * VS_BLOB_CHUNK_SIZE;
        size_t n = len - off < VS_BLOB_CHUNK_SIZE ? len - off : VS_BLOB_CHUNK_SIZE;
        size_t clen;
        assert_int_equal(vs_blob_encoder_chunk(enc, data + off, n, cipher, &clen), 0);
        if (i == 1)
            cipher[clen / 2] ^= 0x01;
        struct acked a = {0};
        assert_int_equal(vs_js_publish_raw(f->bus, subject, cipher, clen, NULL, 0, on_ack, &a), 0);
        assert_int_equal(vs_bus_run_until(f->bus, &a.done, 10000), 0);
        assert_int_equal(a.status, 0);
    }
    assert_int_equal(vs_blob_encoder_finish(enc, &manifest), 0);
    vs_blob_encoder_free(enc);

    struct blob_result got = {0};
    assert_int_equal(vs_blob_fetch(f->bus, &manifest, scanner, 64u << 20, 20000, on_fetched, &got), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &got.done, 30000), 0);
    assert_int_equal(got.status, -EBADMSG);
    assert_null(got.data);

    vs_blob_manifest_clear(&manifest);
    free(cipher);
    free(data);
    vs_boxkey_free(scanner);
}

static void test_blob_missing_times_out(void **state)
{
    struct vs_busfix *f = *state;
    vs_boxkey *k;
    assert_int_equal(vs_boxkey_new(&k), 0);
    Vs__V1__BlobManifest m = VS__V1__BLOB_MANIFEST__INIT;
    vs_blob_encoder *enc;
    assert_int_equal(vs_blob_encoder_new(vs_boxkey_public(k), 10, 0, &m, &enc), 0);
    uint8_t cipher[10 + VS_BLOB_CHUNK_OVERHEAD];
    size_t clen;
    assert_int_equal(vs_blob_encoder_chunk(enc, "0123456789", 10, cipher, &clen), 0);
    assert_int_equal(vs_blob_encoder_finish(enc, &m), 0);
    vs_blob_encoder_free(enc); /* the chunk is never sent */
    struct blob_result got = {0};
    assert_int_equal(vs_blob_fetch(f->bus, &m, k, 1024, 500, on_fetched, &got), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &got.done, 10000), 0);
    assert_int_equal(got.status, -ETIMEDOUT);
    vs_blob_manifest_clear(&m);
    vs_boxkey_free(k);
}

struct audit_seen {
    int n;
    char subject[128];
    char event[64];
    char detail[64];
    char component[32];
    Vs__V1__Severity severity;
};

static int on_audit(vs_msg *m, void *arg)
{
    struct audit_seen *a = arg;
    const Vs__V1__AuditEvent *ev = (const Vs__V1__AuditEvent *)vs_msg_body(m);
    a->n++;
    snprintf(a->subject, sizeof(a->subject), "%s", vs_msg_subject(m));
    snprintf(a->event, sizeof(a->event), "%s", ev->event);
    snprintf(a->component, sizeof(a->component), "%s", ev->component);
    a->severity = ev->severity;
    if (ev->n_details == 1)
        snprintf(a->detail, sizeof(a->detail), "%s=%s", ev->details[0]->key, ev->details[0]->value);
    return 0;
}

static void test_audit_emit(void **state)
{
    struct vs_busfix *f = *state;
    uint8_t task[VS_ID_LEN];
    vs_id_new(task);
    assert_int_equal(vs_audit_emit(f->bus, "escrow", VS__V1__SEVERITY__SEVERITY_NOTICE, "agent-7", task,
                                   "hold_created", "amount", "100", NULL), 0);
    /* Bad categories and unterminated details are refused. */
    assert_int_equal(vs_audit_emit(f->bus, "Escrow", VS__V1__SEVERITY__SEVERITY_NOTICE, NULL, NULL, "x", NULL), -EINVAL);
    assert_int_equal(vs_audit_emit(f->bus, "a.b", VS__V1__SEVERITY__SEVERITY_NOTICE, NULL, NULL, "x", NULL), -EINVAL);
    assert_int_equal(vs_audit_emit(f->bus, "ok", VS__V1__SEVERITY__SEVERITY_UNSPECIFIED, NULL, NULL, "x", NULL), -EINVAL);
    assert_int_equal(vs_audit_emit(f->bus, "ok", VS__V1__SEVERITY__SEVERITY_INFO, NULL, NULL, "x", "key", NULL, NULL), -EINVAL);
    idle(f, 300);
    struct audit_seen a = {0};
    vs_consumer *r;
    assert_int_equal(vs_js_read(f->bus, "AUDIT", "vs.audit.>", 0, 0, &vs__v1__audit_event__descriptor,
                                on_audit, &a, &r), 0);
    idle(f, 700);
    vs_consumer_free(r);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.subject, "vs.audit.escrow.notice");
    assert_string_equal(a.event, "hold_created");
    assert_string_equal(a.detail, "amount=100");
    assert_string_equal(a.component, "test");
    assert_int_equal(a.severity, VS__V1__SEVERITY__SEVERITY_NOTICE);
    assert_int_equal(vs_audit_failed(), 0);
}

int main(void)
{
    log_init("test", VS_LOG_WARN);
    assert_int_equal(vs_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_dedup_by_msg_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_without_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_acks_after_output_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_message_terminated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_and_ack_within_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_js_request_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_js_request_without_service_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_last_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_5mib_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_corrupted_chunk_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_missing_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_emit, setup, teardown),
    };
    return cmocka_run_group_tests_name("jetstream", tests, NULL, NULL);
}
