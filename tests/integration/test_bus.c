/*
 * test_bus.c - core bus behaviour against a real nats-server: typed
 * publish/subscribe, queue groups, request/reply (answered, timed out, no
 * responders), the subject-type check, and hostile input (oversized and
 * malformed messages) rejected while the receiver keeps serving.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "busfix.h"
#include "vs/bus.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/subjects.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

static int setup(void **state)
{
    struct vs_busfix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(f, 64 * 1024);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    vs_busfix_fini(*state);
    free(*state);
    return 0;
}

struct received {
    int count;
    char agent[64];
    bool done;
    int want;
};

static int on_heartbeat(vs_msg *m, void *arg)
{
    struct received *r = arg;
    const Vs__V1__AgentCommand *cmd = (const Vs__V1__AgentCommand *)vs_msg_body(m);
    assert_non_null(cmd);
    assert_int_equal(cmd->type, VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT);
    snprintf(r->agent, sizeof(r->agent), "%s", cmd->agent);
    if (++r->count >= r->want)
        r->done = true;
    return 0;
}

static void make_heartbeat(Vs__V1__AgentCommand *cmd, Vs__V1__Heartbeat *hb, const char *agent)
{
    vs__v1__agent_command__init(cmd);
    vs__v1__heartbeat__init(hb);
    cmd->type = VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT;
    cmd->agent = (char *)agent;
    cmd->body_case = VS__V1__AGENT_COMMAND__BODY_HEARTBEAT;
    hb->sequence = 7;
    cmd->heartbeat = hb;
}

static void test_typed_pubsub(void **state)
{
    struct vs_busfix *f = *state;
    struct received r = {.want = 3};
    vs_sub *sub;
    char subject[VS_SUBJECT_MAX];
    const char *tok[] = {"agent-1"};
    assert_true(vs_subject_format(VS_SUBJ_AGENT_HEARTBEAT, subject, sizeof(subject), false, tok, 1) > 0);
    assert_int_equal(vs_bus_subscribe(f->bus, subject, NULL, &vs__v1__agent_command__descriptor,
                                      on_heartbeat, &r, &sub), 0);
    Vs__V1__AgentCommand cmd;
    Vs__V1__Heartbeat hb;
    make_heartbeat(&cmd, &hb, "agent-1");
    for (int i = 0; i < 3; i++)
        assert_int_equal(vs_bus_publish(f->bus, subject, &cmd.base), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &r.done, 5000), 0);
    assert_int_equal(r.count, 3);
    assert_string_equal(r.agent, "agent-1");
    assert_int_equal(vs_sub_delivered(sub), 3);
    vs_sub_free(sub);
}

static void test_wrong_type_for_subject_refused(void **state)
{
    struct vs_busfix *f = *state;
    Vs__V1__TaskRejected rej = VS__V1__TASK_REJECTED__INIT;
    /* A TaskRejected may not travel on a heartbeat subject... */
    assert_int_equal(vs_bus_publish(f->bus, "vs.agent.a1.heartbeat", &rej.base), -EPROTOTYPE);
    /* ...nor on a vs. subject that is not in the table. */
    assert_int_equal(vs_bus_publish(f->bus, "vs.nowhere", &rej.base), -EINVAL);
}

static void test_hostile_tokens_refused(void **state)
{
    (void)state;
    char subject[VS_SUBJECT_MAX];
    const char *dotted[] = {"evil.>"};
    const char *wild[] = {"*"};
    const char *empty[] = {""};
    assert_int_equal(vs_subject_format(VS_SUBJ_AGENT_HEARTBEAT, subject, sizeof(subject), false, dotted, 1), -EINVAL);
    assert_int_equal(vs_subject_format(VS_SUBJ_AGENT_HEARTBEAT, subject, sizeof(subject), false, wild, 1), -EINVAL);
    assert_int_equal(vs_subject_format(VS_SUBJ_AGENT_HEARTBEAT, subject, sizeof(subject), false, empty, 1), -EINVAL);
    assert_true(vs_subject_format(VS_SUBJ_AGENT_HEARTBEAT, subject, sizeof(subject), true, wild, 1) > 0);
    assert_string_equal(subject, "vs.agent.*.heartbeat");
}

static void test_queue_group_delivers_once(void **state)
{
    struct vs_busfix *f = *state;
    struct received a = {.want = 1000}, b = {.want = 1000};
    vs_sub *sa, *sb;
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.agent.q.heartbeat", "workers",
                                      &vs__v1__agent_command__descriptor, on_heartbeat, &a, &sa), 0);
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.agent.q.heartbeat", "workers",
                                      &vs__v1__agent_command__descriptor, on_heartbeat, &b, &sb), 0);
    Vs__V1__AgentCommand cmd;
    Vs__V1__Heartbeat hb;
    make_heartbeat(&cmd, &hb, "q");
    for (int i = 0; i < 20; i++)
        assert_int_equal(vs_bus_publish(f->bus, "vs.agent.q.heartbeat", &cmd.base), 0);
    bool never = false;
    vs_bus_run_until(f->bus, &never, 500);
    assert_int_equal(a.count + b.count, 20);
    vs_sub_free(sa);
    vs_sub_free(sb);
}

/* A health service answering like a daemon does. */
static int on_health(vs_msg *m, void *arg)
{
    int *served = arg;
    (*served)++;
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__HealthReply r = VS__V1__HEALTH_REPLY__INIT;
    r.status = &st;
    r.component = "unit";
    assert_int_equal(vs_msg_respond(m, &r.base), 0);
    assert_int_equal(vs_msg_respond(m, &r.base), -EALREADY);
    return 0;
}

struct reply {
    bool done;
    int status;
    Vs__V1__StatusCode code;
    char component[32];
};

static void on_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct reply *r = arg;
    assert_false(r->done); /* exactly once */
    r->done = true;
    r->status = status;
    if (status == 0) {
        const Vs__V1__HealthReply *h = (const Vs__V1__HealthReply *)msg;
        r->code = h->status != NULL ? h->status->code : VS__V1__STATUS_CODE__STATUS_UNKNOWN;
        snprintf(r->component, sizeof(r->component), "%s", h->component);
    }
}

static void request_health(struct vs_busfix *f, const char *subject, uint64_t timeout, struct reply *r)
{
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    req.sent_at_ns = vs_now_ns();
    memset(r, 0, sizeof(*r));
    assert_int_equal(vs_bus_request(f->bus, subject, &req.base, &vs__v1__health_reply__descriptor,
                                    timeout, on_reply, r), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &r->done, 10000), 0);
}

static void test_request_reply(void **state)
{
    struct vs_busfix *f = *state;
    int served = 0;
    vs_sub *sub;
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.sys.health.unit", NULL,
                                      &vs__v1__sys_request__descriptor, on_health, &served, &sub), 0);
    struct reply r;
    request_health(f, "vs.sys.health.unit", 2000, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, VS__V1__STATUS_CODE__STATUS_OK);
    assert_string_equal(r.component, "unit");
    assert_int_equal(served, 1);
    vs_sub_free(sub);
}

static void test_request_no_responders(void **state)
{
    struct vs_busfix *f = *state;
    struct reply r;
    request_health(f, "vs.sys.health.nobody", 5000, &r);
    assert_int_equal(r.status, -EHOSTUNREACH);
}

static int on_silent(vs_msg *m, void *arg)
{
    (void)m;
    (*(int *)arg)++;
    return 0; /* never answers */
}

static void test_request_timeout(void **state)
{
    struct vs_busfix *f = *state;
    int seen = 0;
    vs_sub *sub;
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.sys.health.silent", NULL,
                                      &vs__v1__sys_request__descriptor, on_silent, &seen, &sub), 0);
    struct reply r;
    request_health(f, "vs.sys.health.silent", 300, &r);
    assert_int_equal(r.status, -ETIMEDOUT);
    assert_int_equal(seen, 1);
    vs_sub_free(sub);
}

struct raw_reply {
    bool done;
    int status;
    Vs__V1__StatusCode code;
};

static void on_raw_status(int status, vs_msg *reply, void *arg)
{
    struct raw_reply *r = arg;
    r->done = true;
    r->status = status;
    if (status == 0) {
        size_t len;
        const uint8_t *d = vs_msg_data(reply, &len);
        /* The INVALID answer decodes as the service's reply type. */
        Vs__V1__HealthReply *h = vs__v1__health_reply__unpack(NULL, len, d);
        assert_non_null(h);
        assert_non_null(h->status);
        r->code = h->status->code;
        vs__v1__health_reply__free_unpacked(h, NULL);
    }
}

static void test_hostile_input_rejected_service_keeps_serving(void **state)
{
    struct vs_busfix *f = *state;
    int served = 0;
    vs_sub *sub;
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.sys.health.unit", NULL,
                                      &vs__v1__sys_request__descriptor, on_health, &served, &sub), 0);
    struct vs_bus_stats before, after;
    vs_bus_stats_get(f->bus, &before);

    /* Malformed: not a protobuf SysRequest (field 1 with a bad wire type). */
    static const uint8_t garbage[] = {0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    struct raw_reply r = {0};
    assert_int_equal(vs_bus_request_raw(f->bus, "vs.sys.health.unit", garbage, sizeof(garbage),
                                        NULL, 0, 2000, on_raw_status, &r), 0);
    assert_int_equal(vs_bus_run_until(f->bus, &r.done, 5000), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.code, VS__V1__STATUS_CODE__STATUS_INVALID);

    /* Oversized for this bus (64 KiB limit): the sender refuses it... */
    size_t big = 100 * 1024;
    uint8_t *blob = calloc(1, big);
    assert_int_equal(vs_bus_publish_raw(f->bus, "vs.sys.health.unit", NULL, blob, big, NULL, 0), -EMSGSIZE);
    /* ...and a receiver refuses it from a peer with a larger limit. */
    vs_bus *peer;
    struct vs_bus_opts o = {.url = f->nats.url, .name = "peer"};
    assert_int_equal(vs_bus_new(&f->loop, &o, &peer), 0);
    assert_int_equal(vs_bus_publish_raw(peer, "vs.sys.health.unit", NULL, blob, big, NULL, 0), 0);
    vs_bus_free(peer); /* flushes */
    free(blob);
    bool never = false;
    vs_bus_run_until(f->bus, &never, 300);

    /* The service still answers. */
    struct reply ok;
    request_health(f, "vs.sys.health.unit", 2000, &ok);
    assert_int_equal(ok.status, 0);
    assert_int_equal(ok.code, VS__V1__STATUS_CODE__STATUS_OK);
    vs_bus_stats_get(f->bus, &after);
    assert_int_equal(after.invalid - before.invalid, 2);
    assert_int_equal(served, 1);
    vs_sub_free(sub);
}

static int on_health_forged(vs_msg *m, void *arg)
{
    int *rc = arg;
    Vs__V1__HealthReply r = VS__V1__HEALTH_REPLY__INIT;
    *rc = vs_msg_respond(m, &r.base);
    return 0;
}

static void test_reply_to_must_be_an_inbox(void **state)
{
    struct vs_busfix *f = *state;
    /* A requester may not make a service publish its reply on a pipeline
     * subject: reply addresses must be inboxes. */
    int respond_rc = 1;
    vs_sub *sub, *victim;
    struct received r = {.want = 1};
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.sys.health.unit", NULL,
                                      &vs__v1__sys_request__descriptor, on_health_forged,
                                      &respond_rc, &sub), 0);
    assert_int_equal(vs_bus_subscribe(f->bus, "vs.agent.victim.heartbeat", NULL, NULL,
                                      on_silent, &r.count, &victim), 0);
    Vs__V1__SysRequest req = VS__V1__SYS_REQUEST__INIT;
    uint8_t buf[32];
    size_t len = vs__v1__sys_request__pack(&req, buf);
    assert_int_equal(vs_bus_publish_raw(f->bus, "vs.sys.health.unit", "vs.agent.victim.heartbeat",
                                        buf, len, NULL, 0), 0);
    bool never = false;
    vs_bus_run_until(f->bus, &never, 300);
    assert_int_equal(respond_rc, -ENOENT);
    assert_int_equal(r.count, 0);
    vs_sub_free(sub);
    vs_sub_free(victim);
}

int main(void)
{
    log_init("test", VS_LOG_WARN);
    assert_int_equal(vs_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_typed_pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type_for_subject_refused, setup, teardown),
        cmocka_unit_test(test_hostile_tokens_refused),
        cmocka_unit_test_setup_teardown(test_queue_group_delivers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_no_responders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_input_rejected_service_keeps_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_to_must_be_an_inbox, setup, teardown),
    };
    return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
