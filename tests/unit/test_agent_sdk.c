/*
 * test_agent_sdk.c - unit tests of the agent SDK (sdk/src/agent.c) against
 * a fake sandboxd: a thread on the other end of a socketpair that reads
 * frames with the same codec, decodes each AgentCommand and answers with
 * AgentReply frames the way the test tells it to (at once, in reversed
 * batches, late, never, with garbage, or by hanging up).
 *
 * Run without arguments it tests the library. Run with the path of
 * vs-reference-agent (ctest's agent.reference_agent does that) it tests
 * that program instead: the reference agent runs as a child with the
 * socket on fd 3 and the fake on the other end, as under sandboxd.
 *
 * The fake thread never asserts (cmocka's asserts must stay on the main
 * thread); it records what it saw, and the tests assert on that.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "vs/agent.h"
#include "vs/agent_frame.h"

#define MAX_BEATS 1024
#define MAX_HELD 8
#define MIB (1024u * 1024u)

static const char *reference_agent; /* argv[1]: the program under test, if any */

/* ---- the fake sandboxd ------------------------------------------------------------- */

enum answer {
    ANSWER,  /* reply to every command but HEARTBEAT */
    MUTE,    /* read, never reply */
    HANG_UP, /* shut the socket down at the first request */
    GARBAGE, /* reply with a frame that is no AgentReply */
    OVERSIZE /* reply with a header above VS_FRAME_MAX */
};

struct fake {
    int fd; /* sandboxd's end */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    /* behaviour: set before fake_start */
    enum answer answer;
    size_t batch;          /* hold requests until this many, answer the last first */
    int delay_first_ms;    /* sleep before answering the first request */
    bool stray;            /* a reply with an id nobody used before each answer */
    bool deny_fetch;
    const char *body;      /* REQUEST_DATA's body; NULL: the URL */
    uint64_t memory_max;   /* REQUEST_MEMORY above it is DENIED */
    size_t n_search;       /* WEB_SEARCH results available */
    /* what it saw (under mu) */
    uint64_t beats[MAX_BEATS];
    size_t n_beats;
    size_t n_requests;
    size_t unclean;        /* commands with stamps set, or a bad id or time */
    size_t undecodable;
    bool completed;
    char summary[256];
    /* the fake thread's own */
    Vs__V1__AgentCommand *held[MAX_HELD];
    size_t n_held;
};

static void send_frame(int fd, const uint8_t *payload, size_t len)
{
    uint8_t *frame = malloc(VS_FRAME_HEADER + len);
    vs_frame_header(frame, len);
    memcpy(frame + VS_FRAME_HEADER, payload, len);
    size_t off = 0;
    while (off < VS_FRAME_HEADER + len) {
        ssize_t n = send(fd, frame + off, VS_FRAME_HEADER + len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    free(frame);
}

static void send_reply(int fd, const Vs__V1__AgentReply *r)
{
    size_t len = vs__v1__agent_reply__get_packed_size(r);
    uint8_t *buf = malloc(len + 1);
    vs__v1__agent_reply__pack(r, buf);
    send_frame(fd, buf, len);
    free(buf);
}

static void answer_command(struct fake *f, const Vs__V1__AgentCommand *c)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__AgentReply r = VS__V1__AGENT_REPLY__INIT;
    r.status = &st;
    r.command_id = c->command_id;
    r.type = c->type;
    Vs__V1__EgressResult res = VS__V1__EGRESS_RESULT__INIT;
    Vs__V1__SearchResult items[MAX_HELD], *ptrs[MAX_HELD];
    char urls[MAX_HELD][64];

    switch (c->type) {
    case VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA:
        if (f->deny_fetch) {
            st.code = VS__V1__STATUS_CODE__STATUS_DENIED;
            st.reason = "host not allowed";
            break;
        }
        res.http_status = 200;
        res.content_type = "text/plain";
        res.final_url = c->request_data->url;
        res.body.data = (uint8_t *)(f->body != NULL ? f->body : c->request_data->url);
        res.body.len = strlen((const char *)res.body.data);
        r.body_case = VS__V1__AGENT_REPLY__BODY_RESULT;
        r.result = &res;
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH: {
        size_t n = f->n_search < MAX_HELD ? f->n_search : MAX_HELD;
        if (c->web_search->max_results != 0 && c->web_search->max_results < n)
            n = c->web_search->max_results;
        for (size_t i = 0; i < n; i++) {
            vs__v1__search_result__init(&items[i]);
            snprintf(urls[i], sizeof urls[i], "https://r%zu.example/", i);
            items[i].title = "a result";
            items[i].url = urls[i];
            ptrs[i] = &items[i];
        }
        res.http_status = 200;
        res.results = ptrs;
        res.n_results = n;
        r.body_case = VS__V1__AGENT_REPLY__BODY_RESULT;
        r.result = &res;
        break;
    }
    case VS__V1__COMMAND_TYPE__COMMAND_REQUEST_MEMORY:
        if (c->request_memory->memory_bytes > f->memory_max) {
            st.code = VS__V1__STATUS_CODE__STATUS_DENIED;
            st.reason = "above the policy maximum";
            break;
        }
        r.body_case = VS__V1__AGENT_REPLY__BODY_MEMORY_BYTES;
        r.memory_bytes = c->request_memory->memory_bytes;
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_SIGNAL_COMPLETE:
        pthread_mutex_lock(&f->mu);
        f->completed = true;
        snprintf(f->summary, sizeof f->summary, "%s", c->signal_complete->summary);
        pthread_cond_broadcast(&f->changed);
        pthread_mutex_unlock(&f->mu);
        break;
    default:
        st.code = VS__V1__STATUS_CODE__STATUS_DENIED;
        st.reason = "not available in this sandbox";
        break;
    }
    if (f->stray) {
        uint8_t nobody[16];
        memset(nobody, 0xee, sizeof nobody);
        Vs__V1__AgentReply s = r;
        s.command_id.data = nobody;
        s.command_id.len = sizeof nobody;
        send_reply(f->fd, &s);
    }
    send_reply(f->fd, &r);
}

static bool stamps_clean(const Vs__V1__AgentCommand *c)
{
    return c->agent != NULL && c->agent[0] == '\0' && c->task_id.len == 0 &&
           c->reply_box_key.len == 0 && c->command_id.len == 16 && c->sent_at_ns > 0;
}

/* The decoder's callback: one command from the agent. */
static int on_command(const uint8_t *payload, size_t len, void *arg)
{
    struct fake *f = arg;
    Vs__V1__AgentCommand *c = vs__v1__agent_command__unpack(NULL, len, payload);
    pthread_mutex_lock(&f->mu);
    if (c == NULL) {
        f->undecodable++;
        pthread_mutex_unlock(&f->mu);
        return 0;
    }
    if (!stamps_clean(c))
        f->unclean++;
    bool beat = c->type == VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT;
    if (beat && c->body_case == VS__V1__AGENT_COMMAND__BODY_HEARTBEAT && f->n_beats < MAX_BEATS)
        f->beats[f->n_beats++] = c->heartbeat->sequence;
    else if (!beat)
        f->n_requests++;
    size_t nth = f->n_requests;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);

    if (beat || f->answer == MUTE) {
        vs__v1__agent_command__free_unpacked(c, NULL);
        return 0;
    }
    int stop = 0;
    if (f->answer == HANG_UP) {
        shutdown(f->fd, SHUT_RDWR);
        stop = 1;
    } else if (f->answer == GARBAGE) {
        const uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff}; /* an unterminated varint tag */
        send_frame(f->fd, junk, sizeof junk);
    } else if (f->answer == OVERSIZE) {
        const uint8_t header[4] = {0xff, 0xff, 0xff, 0xff};
        send(f->fd, header, sizeof header, MSG_NOSIGNAL);
    } else if (f->batch > 1) {
        f->held[f->n_held++] = c;
        if (f->n_held < f->batch)
            return 0;
        while (f->n_held > 0) {
            Vs__V1__AgentCommand *h = f->held[--f->n_held];
            answer_command(f, h);
            vs__v1__agent_command__free_unpacked(h, NULL);
        }
        return 0;
    } else {
        if (nth == 1 && f->delay_first_ms > 0)
            usleep((useconds_t)f->delay_first_ms * 1000u);
        answer_command(f, c);
    }
    vs__v1__agent_command__free_unpacked(c, NULL);
    return stop;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    vs_frame_decoder *d = NULL;
    if (vs_frame_decoder_new(VS_FRAME_MAX, &d) != 0)
        return NULL;
    uint8_t *buf = malloc(65536);
    for (;;) {
        ssize_t n = read(f->fd, buf, 65536);
        if (n <= 0 || vs_frame_decoder_feed(d, buf, (size_t)n, on_command, f) != 0)
            break;
    }
    free(buf);
    vs_frame_decoder_free(d);
    while (f->n_held > 0)
        vs__v1__agent_command__free_unpacked(f->held[--f->n_held], NULL);
    return NULL;
}

/* Start the fake; returns the agent's end of the socketpair. */
static int fake_start(struct fake *f)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->fd = sv[0];
    if (f->memory_max == 0)
        f->memory_max = UINT64_MAX;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->changed, NULL);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return sv[1];
}

/* The agent's end is closed (by the test or by its child's exit): the fake
 * reads end of stream and stops. */
static void fake_join(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->changed);
}

/* Wait until the fake has seen at least n heartbeats; false after 10 s. */
static bool wait_beats(struct fake *f, size_t n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (f->n_beats < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->changed, &f->mu, &deadline);
    bool ok = f->n_beats >= n;
    pthread_mutex_unlock(&f->mu);
    return ok;
}

/* An agent on a fresh fake. */
static vs_agent *agent_on(struct fake *f, int *agent_fd)
{
    *agent_fd = fake_start(f);
    vs_agent *a = NULL;
    assert_int_equal(vs_agent_open(*agent_fd, &a), 0);
    vs_agent_set_timeout(a, 10000);
    return a;
}

static void agent_done(struct fake *f, vs_agent *a, int agent_fd)
{
    vs_agent_close(a);
    close(agent_fd);
    fake_join(f);
}

static Vs__V1__AgentCommand memory_command(Vs__V1__RequestMemory *m, uint64_t bytes)
{
    vs__v1__request_memory__init(m);
    m->memory_bytes = bytes;
    Vs__V1__AgentCommand c = VS__V1__AGENT_COMMAND__INIT;
    c.type = VS__V1__COMMAND_TYPE__COMMAND_REQUEST_MEMORY;
    c.body_case = VS__V1__AGENT_COMMAND__BODY_REQUEST_MEMORY;
    c.request_memory = m;
    return c;
}

/* ---- opening ------------------------------------------------------------------------ */

static void test_open_checks_the_descriptor(void **state)
{
    (void)state;
    vs_agent *a = NULL;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(vs_agent_open(p[0], &a), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    assert_int_equal(vs_agent_open(p[0], &a), -EBADF);
    int dg[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg), 0);
    assert_int_equal(vs_agent_open(dg[0], &a), -EPROTOTYPE);
    close(dg[0]);
    close(dg[1]);
    assert_null(a);

    /* -1 is fd 3, where sandboxd puts the channel. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (fcntl(VS_AGENT_FD, F_GETFD) < 0) {
        assert_int_equal(vs_agent_open(-1, &a), -EBADF);
        assert_int_equal(dup2(sv[1], VS_AGENT_FD), VS_AGENT_FD);
        assert_int_equal(vs_agent_open(-1, &a), 0);
        vs_agent_close(a);
        /* the handle did not own it: still open */
        assert_true(fcntl(VS_AGENT_FD, F_GETFD) >= 0);
        close(VS_AGENT_FD);
    }
    close(sv[0]);
    close(sv[1]);
    vs_agent_close(NULL);
}

/* ---- requests and replies ------------------------------------------------------------ */

static void test_request_stamps_and_reply(void **state)
{
    (void)state;
    struct fake f = {0};
    int fd;
    vs_agent *a = agent_on(&f, &fd);

    /* What sandboxd stamps is sent empty, whatever the caller put there;
     * the caller's command is left as it was. */
    Vs__V1__RequestMemory m;
    Vs__V1__AgentCommand c = memory_command(&m, 96 * MIB);
    uint8_t mine[3] = {1, 2, 3}, task[16] = {7};
    c.agent = "someone-else";
    c.task_id.data = task;
    c.task_id.len = sizeof task;
    c.command_id.data = mine;
    c.command_id.len = sizeof mine;
    Vs__V1__AgentReply *r = NULL;
    assert_int_equal(vs_agent_request(a, &c, 5000, &r), 0);
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_OK);
    assert_int_equal(r->command_id.len, 16);
    assert_int_equal(r->memory_bytes, 96 * MIB);
    vs__v1__agent_reply__free_unpacked(r, NULL);
    assert_string_equal(c.agent, "someone-else");
    assert_ptr_equal(c.command_id.data, mine);
    assert_int_equal(c.command_id.len, 3);
    assert_int_equal(c.sent_at_ns, 0);

    /* Never answered, or no command at all: refused before sending. */
    c.type = VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT;
    assert_int_equal(vs_agent_request(a, &c, 100, &r), -EINVAL);
    c.type = VS__V1__COMMAND_TYPE__COMMAND_UNSPECIFIED;
    assert_int_equal(vs_agent_request(a, &c, 100, &r), -EINVAL);

    agent_done(&f, a, fd);
    assert_int_equal(f.n_requests, 1);
    assert_int_equal(f.unclean, 0);
    assert_int_equal(f.undecodable, 0);
}

struct worker {
    vs_agent *a;
    int index;
    int rounds;
    int errors;      /* failed fetches */
    int mismatches;  /* a reply that was someone else's */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->rounds; i++) {
        char url[64];
        snprintf(url, sizeof url, "https://w%d.example/%d", w->index, i);
        Vs__V1__AgentReply *r = NULL;
        if (vs_agent_fetch(w->a, url, NULL, NULL, 0, &r) != 0) {
            w->errors++;
            continue;
        }
        const ProtobufCBinaryData *body = &r->result->body;
        if (body->len != strlen(url) || memcmp(body->data, url, body->len) != 0)
            w->mismatches++;
        vs__v1__agent_reply__free_unpacked(r, NULL);
    }
    return NULL;
}

/* Four threads fetch at once while the heartbeat runs; the fake answers
 * each group of four last-first, each after a reply for nobody. Every
 * thread must get its own reply, every time. */
static void test_concurrent_requests_out_of_order(void **state)
{
    (void)state;
    struct fake f = {.batch = 4, .stray = true};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    assert_int_equal(vs_agent_heartbeat_start(a, 5), 0);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.a = a, .index = i, .rounds = 25};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        assert_int_equal(w[i].mismatches, 0);
    }
    agent_done(&f, a, fd);
    assert_int_equal(f.n_requests, 100);
    assert_int_equal(f.unclean, 0);
    assert_true(f.n_beats >= 1);
}

static void test_heartbeat_sequence(void **state)
{
    (void)state;
    struct fake f = {0};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    assert_int_equal(vs_agent_heartbeat_start(a, 0), -EINVAL);
    assert_int_equal(vs_agent_heartbeat_start(a, 10), 0);
    assert_int_equal(vs_agent_heartbeat_start(a, 10), -EALREADY);
    assert_true(wait_beats(&f, 5));
    agent_done(&f, a, fd); /* stops the thread */
    assert_true(f.n_beats >= 5);
    for (size_t i = 0; i < f.n_beats; i++)
        assert_int_equal(f.beats[i], i + 1);
    assert_int_equal(f.n_requests, 0);
    assert_int_equal(f.unclean, 0);
}

/* A reply after the deadline is -ETIMEDOUT, and is not mistaken later for
 * the reply of the next request. */
static void test_timeout_and_late_reply(void **state)
{
    (void)state;
    struct fake f = {.delay_first_ms = 300};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    Vs__V1__RequestMemory m;
    Vs__V1__AgentCommand c = memory_command(&m, 1 * MIB);
    Vs__V1__AgentReply *r = NULL;
    assert_int_equal(vs_agent_request(a, &c, 50, &r), -ETIMEDOUT);
    assert_null(r);
    uint64_t granted = 0;
    assert_int_equal(vs_agent_request_memory(a, 2 * MIB, &granted), 0);
    assert_int_equal(granted, 2 * MIB);
    agent_done(&f, a, fd);

    struct fake mute = {.answer = MUTE};
    a = agent_on(&mute, &fd);
    assert_int_equal(vs_agent_request(a, &c, 100, &r), -ETIMEDOUT);
    agent_done(&mute, a, fd);
    assert_int_equal(mute.n_requests, 1);
}

static void test_peer_closes(void **state)
{
    (void)state;
    struct fake f = {.answer = HANG_UP};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    assert_int_equal(vs_agent_heartbeat_start(a, 5), 0);
    Vs__V1__AgentReply *r = NULL;
    assert_int_equal(vs_agent_fetch(a, "https://example.com/", NULL, NULL, 0, &r), -EPIPE);
    /* sticky, for every later call */
    assert_int_equal(vs_agent_search(a, "anything", 0, &r), -EPIPE);
    assert_int_equal(vs_agent_complete(a, NULL), -EPIPE);
    agent_done(&f, a, fd);
    assert_null(r);

    /* Closed before the agent says anything. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(vs_agent_open(sv[1], &a), 0);
    close(sv[0]);
    assert_int_equal(vs_agent_complete(a, "done"), -EPIPE);
    vs_agent_close(a);
    close(sv[1]);
}

static void test_undecodable_reply(void **state)
{
    (void)state;
    const enum answer bad[] = {GARBAGE, OVERSIZE};
    for (size_t i = 0; i < 2; i++) {
        struct fake f = {.answer = bad[i]};
        int fd;
        vs_agent *a = agent_on(&f, &fd);
        uint64_t granted = 0;
        assert_int_equal(vs_agent_request_memory(a, MIB, &granted), -EBADMSG);
        assert_int_equal(vs_agent_request_memory(a, MIB, &granted), -EBADMSG);
        agent_done(&f, a, fd);
        assert_int_equal(f.n_requests, 1); /* the second never left */
    }
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void test_status_becomes_errno(void **state)
{
    (void)state;
    struct fake f = {.deny_fetch = true, .memory_max = 1024 * MIB, .n_search = 5};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    Vs__V1__AgentReply *r = NULL;
    assert_int_equal(vs_agent_fetch(a, "https://example.com/", "GET", NULL, 0, &r), -EACCES);
    assert_null(r);
    assert_string_equal(vs_agent_last_reason(), "host not allowed");

    uint64_t granted = 0;
    assert_int_equal(vs_agent_request_memory(a, 2048 * MIB, &granted), -EACCES);
    assert_string_equal(vs_agent_last_reason(), "above the policy maximum");
    assert_int_equal(vs_agent_request_memory(a, 512 * MIB, &granted), 0);
    assert_int_equal(granted, 512 * MIB);
    assert_string_equal(vs_agent_last_reason(), "");

    assert_int_equal(vs_agent_search(a, "cats", 2, &r), 0);
    assert_int_equal(r->result->n_results, 2);
    assert_string_equal(r->result->results[1]->url, "https://r1.example/");
    vs__v1__agent_reply__free_unpacked(r, NULL);

    /* What the fake does not serve is DENIED by it, -EACCES here. */
    Vs__V1__StateSync sync = VS__V1__STATE_SYNC__INIT;
    Vs__V1__AgentCommand c = VS__V1__AGENT_COMMAND__INIT;
    c.type = VS__V1__COMMAND_TYPE__COMMAND_STATE_SYNC;
    c.body_case = VS__V1__AGENT_COMMAND__BODY_STATE_SYNC;
    c.state_sync = &sync;
    assert_int_equal(vs_agent_request(a, &c, 5000, &r), 0);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_DENIED);
    vs__v1__agent_reply__free_unpacked(r, NULL);
    agent_done(&f, a, fd);
}

static void test_complete(void **state)
{
    (void)state;
    struct fake f = {0};
    int fd;
    vs_agent *a = agent_on(&f, &fd);
    assert_int_equal(vs_agent_complete(a, "done: 3 files"), 0);
    agent_done(&f, a, fd);
    assert_true(f.completed);
    assert_string_equal(f.summary, "done: 3 files");
}

/* ---- outputs ------------------------------------------------------------------------------ */

/* An agent whose output directory is dir (its channel is never used). */
static vs_agent *agent_writing_to(const char *dir, int sv[2])
{
    assert_int_equal(setenv("VS_AGENT_OUT_DIR", dir, 1), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    vs_agent *a = NULL;
    assert_int_equal(vs_agent_open(sv[1], &a), 0);
    unsetenv("VS_AGENT_OUT_DIR");
    return a;
}

static size_t count_entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find '%s' -mindepth 1 | wc -l", dir);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_int_equal(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

static bool temp_left(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find '%s' -name '.vs-out-*' | grep -q .", dir);
    return system(cmd) == 0;
}

static void test_write_output_refuses_bad_paths(void **state)
{
    (void)state;
    char *dir = vs_scratch_dir("vs-agent-out");
    int sv[2];
    vs_agent *a = agent_writing_to(dir, sv);
    static char too_long[PATH_MAX + 8];
    memset(too_long, 'a', sizeof too_long - 1);
    const char *bad[] = {"", "/etc/passwd", "..", "../x", "a/../b", "a/..", "a//b", "a/",
                         "/", ".", "./a", "a/./b", too_long};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (vs_agent_write_output(a, bad[i], "x", 1) != -EINVAL)
            fail_msg("path \"%.40s\" was not refused", bad[i]);
    }
    assert_int_equal(vs_agent_write_output(a, NULL, "x", 1), -EINVAL);
    assert_int_equal(vs_agent_write_output(a, "ok.txt", NULL, 1), -EINVAL);
    assert_int_equal(count_entries(dir), 0);
    vs_agent_close(a);
    close(sv[0]);
    close(sv[1]);
    vs_scratch_free(dir);
}

static void test_write_output_is_atomic(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-agent-out");
    char *dir = vs_path(scratch, "out"); /* made by the first write */
    int sv[2];
    vs_agent *a = agent_writing_to(dir, sv);

    assert_int_equal(vs_agent_write_output(a, "a.txt", "first", 5), 0);
    char *path = vs_path(dir, "a.txt");
    int old = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(old >= 0);
    struct stat before, after;
    assert_int_equal(fstat(old, &before), 0);
    /* Replaced by a rename: a reader of the old file sees all of it. */
    assert_int_equal(vs_agent_write_output(a, "a.txt", "second!", 7), 0);
    char buf[16] = {0};
    assert_int_equal(read(old, buf, sizeof buf), 5);
    assert_memory_equal(buf, "first", 5);
    close(old);
    assert_int_equal(stat(path, &after), 0);
    assert_true(after.st_ino != before.st_ino);
    char *text = vs_slurp(path);
    assert_string_equal(text, "second!");
    free(text);
    free(path);

    /* Subdirectories are made; an empty file is a file. */
    assert_int_equal(vs_agent_write_output(a, "deep/er/x.bin", "\0\1\2", 3), 0);
    assert_int_equal(vs_agent_write_output(a, "deep/empty", NULL, 0), 0);
    path = vs_path(dir, "deep/er/x.bin");
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_size, 3);
    free(path);

    /* A failed rename (a directory is in the way) leaves no temporary. */
    assert_int_equal(vs_agent_write_output(a, "deep/er", "x", 1), -EISDIR);

    /* No symbolic link is followed below the output directory. */
    char *elsewhere = vs_path(scratch, "elsewhere");
    char *link = vs_path(dir, "link");
    assert_int_equal(mkdir(elsewhere, 0755), 0);
    assert_int_equal(symlink(elsewhere, link), 0);
    assert_int_equal(vs_agent_write_output(a, "link/x", "x", 1), -ENOTDIR);
    assert_int_equal(count_entries(elsewhere), 0);

    assert_false(temp_left(dir));
    free(elsewhere);
    free(link);
    vs_agent_close(a);
    close(sv[0]);
    close(sv[1]);
    free(dir);
    vs_scratch_free(scratch);
}

/* ---- the reference agent (argv[1]) ------------------------------------------------- */

static int channel_on_fd3(void *arg)
{
    int fd = *(const int *)arg;
    if (fd == VS_AGENT_FD)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, VS_AGENT_FD) < 0 ? -1 : 0;
}

/* Run the reference agent with args against f; out dir scratch/out. */
static void run_reference(struct fake *f, const char *scratch, const char *const *args,
                          struct vs_run *r)
{
    int fd = fake_start(f);
    char *out_dir = vs_path(scratch, "out");
    char *out = vs_path(scratch, "stdout"), *err = vs_path(scratch, "stderr");
    const char *argv[6] = {reference_agent};
    for (size_t i = 0; args[i] != NULL && i < 4; i++)
        argv[i + 1] = args[i];
    assert_int_equal(setenv("VS_AGENT_OUT_DIR", out_dir, 1), 0);
    struct vs_spawn s = {.argv = argv, .out = out, .err = err, .child = channel_on_fd3,
                         .arg = &fd, .keep_fd = VS_AGENT_FD};
    pid_t pid = vs_proc_start(&s);
    unsetenv("VS_AGENT_OUT_DIR");
    assert_true(pid > 0);
    close(fd); /* the child's exit ends the fake */
    vs_run_finish(pid, 30000, NULL, NULL, out, err, r);
    fake_join(f);
    free(out_dir);
    free(out);
    free(err);
}

static char *output(const char *scratch, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out/%s", scratch, name);
    return vs_slurp(path);
}

static void test_reference_agent_full(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-reference-agent");
    struct fake f = {.body = "<html>hello</html>", .n_search = 3, .memory_max = 1}; /* deny */
    struct vs_run r;
    run_reference(&f, scratch, (const char *[]){"https://example.com/", "cats", NULL}, &r);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "denied: above the policy maximum"));
    char *result = output(scratch, "result.txt");
    assert_string_equal(result, "http_status 200\nbytes 18\nsearch_results 3\n");
    char *page = output(scratch, "page.bin");
    assert_string_equal(page, "<html>hello</html>");
    assert_true(f.completed);
    assert_string_equal(f.summary, result);
    assert_true(f.n_beats >= 1);
    assert_int_equal(f.n_requests, 4); /* fetch, search, memory, complete */
    assert_int_equal(f.unclean, 0);
    free(result);
    free(page);
    vs_run_free(&r);
    vs_scratch_free(scratch);
}

static void test_reference_agent_task_file(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-reference-agent");
    char *task = vs_path(scratch, "task");
    assert_int_equal(vs_write_file(task, "https://example.org/doc\n"), 0);
    struct fake f = {0}; /* grants the memory; the body is the URL */
    struct vs_run r;
    run_reference(&f, scratch, (const char *[]){"--task", task, NULL}, &r);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "limit now"));
    char *result = output(scratch, "result.txt");
    assert_string_equal(result, "http_status 200\nbytes 23\n");
    assert_int_equal(f.n_requests, 3);
    free(result);
    free(task);
    vs_run_free(&r);
    vs_scratch_free(scratch);
}

static void test_reference_agent_trivial(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-reference-agent");
    struct fake f = {0};
    struct vs_run r;
    run_reference(&f, scratch, (const char *[]){"--trivial", NULL}, &r);
    assert_int_equal(r.status, 0);
    char *result = output(scratch, "result.txt");
    assert_string_equal(result, "ok\n");
    assert_true(f.completed);
    assert_int_equal(f.n_requests, 1);
    assert_int_equal(f.n_beats, 0);
    free(result);
    vs_run_free(&r);
    vs_scratch_free(scratch);
}

static void test_reference_agent_refused(void **state)
{
    (void)state;
    char *scratch = vs_scratch_dir("vs-reference-agent");
    struct fake f = {.deny_fetch = true};
    struct vs_run r;
    run_reference(&f, scratch, (const char *[]){"https://example.com/", NULL}, &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "fetch: Permission denied: host not allowed"));
    assert_false(f.completed);
    vs_run_free(&r);
    vs_scratch_free(scratch);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        reference_agent = argv[1];
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_reference_agent_full),
            cmocka_unit_test(test_reference_agent_task_file),
            cmocka_unit_test(test_reference_agent_trivial),
            cmocka_unit_test(test_reference_agent_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_checks_the_descriptor),
        cmocka_unit_test(test_request_stamps_and_reply),
        cmocka_unit_test(test_concurrent_requests_out_of_order),
        cmocka_unit_test(test_heartbeat_sequence),
        cmocka_unit_test(test_timeout_and_late_reply),
        cmocka_unit_test(test_peer_closes),
        cmocka_unit_test(test_undecodable_reply),
        cmocka_unit_test(test_status_becomes_errno),
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_write_output_refuses_bad_paths),
        cmocka_unit_test(test_write_output_is_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
