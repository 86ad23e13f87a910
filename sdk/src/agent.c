/*
 * agent.c - the agent SDK (vs/agent.h): requests and replies over the
 * command channel, the heartbeat thread, outputs.
 *
 * How replies find their callers: each request puts a waiter (its
 * command_id and a slot for the reply) on a list, writes its frame, then
 * waits. Whichever waiter finds nobody reading becomes the reader: it
 * polls the socket up to its own deadline, feeds what it reads to the
 * frame decoder, and the decoder's callback unpacks each AgentReply and
 * puts it in the slot of the waiter with that command_id (or frees it
 * when nobody waits for it any more). After each read the reader looks at
 * its own slot; once its reply is there (or its deadline passed) it gives
 * up reading and wakes the others, one of whom takes over. So replies are
 * routed in any order without a thread of the SDK's own, and the decoder
 * and the read buffer are only ever used by the one current reader.
 *
 * Locks: `mu` guards the waiter list, the reader flag, the sticky error
 * and the heartbeat's stop flag; `write_mu` serializes whole frames on
 * the socket. They are never held together, and no lock is held while
 * blocking in poll or read.
 */
#include "vs/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vs/agent_frame.h"

#define VS_AGENT_ID_LEN 16
/* One read(2) takes at most this much; a large reply takes several. */
#define VS_AGENT_READ_CHUNK (64u << 10)
#define VS_AGENT_REASON_MAX 512

/* A request waiting for its reply; lives on the requesting thread's stack. */
struct waiter {
    struct waiter *next;
    uint8_t id[VS_AGENT_ID_LEN];
    Vs__V1__AgentReply *reply; /* set by the reader; owned by the waiter then */
};

struct vs_agent {
    int fd;                    /* not owned */
    char *out_dir;
    _Atomic uint32_t timeout_ms;

    pthread_mutex_t write_mu;

    pthread_mutex_t mu;
    pthread_cond_t replied;    /* CLOCK_MONOTONIC: a reply, a reader leaving, an error */
    struct waiter *waiters;
    bool reading;              /* a waiter is reading; it alone uses dec and rbuf */
    int err;                   /* sticky channel error, 0 while usable */
    vs_frame_decoder *dec;
    uint8_t *rbuf;

    pthread_cond_t hb_wake;    /* CLOCK_MONOTONIC: stop the heartbeat */
    pthread_t hb_thread;
    bool hb_started;
    bool hb_stop;
    uint32_t hb_interval_ms;
    uint64_t hb_sequence;      /* of the last beat sent */
};

static _Thread_local char last_reason[VS_AGENT_REASON_MAX];

/* ---- time, randomness ------------------------------------------------------------ */

static struct timespec mono_after(uint32_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Milliseconds until deadline, rounded up; 0 once it has passed. */
static int ms_until(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 +
                 (deadline->tv_nsec - now.tv_nsec);
    if (ns <= 0)
        return 0;
    int64_t ms = (ns + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int random_bytes(uint8_t *out, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the channel ------------------------------------------------------------------- */

/* Record the channel's first fatal error and wake every waiter. */
static void channel_failed(vs_agent *a, int err)
{
    pthread_mutex_lock(&a->mu);
    if (a->err == 0)
        a->err = err;
    pthread_cond_broadcast(&a->replied);
    pthread_mutex_unlock(&a->mu);
}

/* Write a whole frame. A failure leaves part of a frame on the socket at
 * best, so it ends the channel. */
static int write_all(vs_agent *a, const uint8_t *buf, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&a->write_mu);
    while (len > 0) {
        ssize_t n = send(a->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) { /* an O_NONBLOCK socket */
            struct pollfd p = {.fd = a->fd, .events = POLLOUT};
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                rc = -errno;
                break;
            }
            continue;
        }
        rc = errno == ECONNRESET ? -EPIPE : -errno;
        break;
    }
    pthread_mutex_unlock(&a->write_mu);
    if (rc != 0)
        channel_failed(a, rc);
    return rc;
}

/* Frame and write cmd with the given id, stamped with the time and
 * stripped of what sandboxd stamps. */
static int send_command(vs_agent *a, const Vs__V1__AgentCommand *cmd,
                        const uint8_t id[VS_AGENT_ID_LEN])
{
    Vs__V1__AgentCommand c = *cmd;
    c.command_id.data = (uint8_t *)id;
    c.command_id.len = VS_AGENT_ID_LEN;
    c.sent_at_ns = now_ns();
    c.agent = (char *)protobuf_c_empty_string;
    c.task_id.len = 0;
    c.task_id.data = NULL;
    c.reply_box_key.len = 0;
    c.reply_box_key.data = NULL;

    size_t len = vs__v1__agent_command__get_packed_size(&c);
    if (len > VS_FRAME_MAX)
        return -EMSGSIZE;
    uint8_t *frame = malloc(VS_FRAME_HEADER + len);
    if (frame == NULL)
        return -ENOMEM;
    (void)vs_frame_header(frame, len); /* len was checked */
    vs__v1__agent_command__pack(&c, frame + VS_FRAME_HEADER);
    int rc = write_all(a, frame, VS_FRAME_HEADER + len);
    free(frame);
    return rc;
}

/* The decoder's callback: hand one reply to its waiter. */
static int route_reply(const uint8_t *payload, size_t len, void *arg)
{
    vs_agent *a = arg;
    Vs__V1__AgentReply *r = vs__v1__agent_reply__unpack(NULL, len, payload);
    if (r == NULL)
        return -EBADMSG;
    pthread_mutex_lock(&a->mu);
    if (r->command_id.len == VS_AGENT_ID_LEN) {
        for (struct waiter *w = a->waiters; w != NULL; w = w->next) {
            if (w->reply == NULL && memcmp(w->id, r->command_id.data, VS_AGENT_ID_LEN) == 0) {
                w->reply = r;
                r = NULL;
                pthread_cond_broadcast(&a->replied);
                break;
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (r != NULL) /* nobody waits for it (any more) */
        vs__v1__agent_reply__free_unpacked(r, NULL);
    return 0;
}

/* As the reader: wait for bytes until deadline and route the replies they
 * complete. 0 also when nothing arrived; otherwise the channel's error. */
static int read_once(vs_agent *a, const struct timespec *deadline)
{
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    int ready = poll(&p, 1, ms_until(deadline));
    if (ready < 0)
        return errno == EINTR ? 0 : -errno;
    if (ready == 0)
        return 0;
    ssize_t n = read(a->fd, a->rbuf, VS_AGENT_READ_CHUNK);
    if (n == 0)
        return -EPIPE;
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
    int rc = vs_frame_decoder_feed(a->dec, a->rbuf, (size_t)n, route_reply, a);
    return rc == -EMSGSIZE ? -EBADMSG : rc;
}

/* Take w off the waiter list (mu held). */
static void forget_waiter(vs_agent *a, struct waiter *w)
{
    for (struct waiter **p = &a->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

/* Wait for w's reply until deadline, reading the channel whenever nobody
 * else is. Takes w off the list. */
static int await_reply(vs_agent *a, struct waiter *w, const struct timespec *deadline)
{
    int rc;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        if (w->reply != NULL) {
            rc = 0;
            break;
        }
        if (a->err != 0) {
            rc = a->err;
            break;
        }
        if (ms_until(deadline) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        if (a->reading) {
            pthread_cond_timedwait(&a->replied, &a->mu, deadline);
            continue;
        }
        a->reading = true;
        pthread_mutex_unlock(&a->mu);
        int read_rc = read_once(a, deadline);
        pthread_mutex_lock(&a->mu);
        a->reading = false;
        if (read_rc != 0 && a->err == 0)
            a->err = read_rc;
        pthread_cond_broadcast(&a->replied); /* someone else may read now */
    }
    forget_waiter(a, w);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int vs_agent_request(vs_agent *a, Vs__V1__AgentCommand *cmd, uint32_t timeout_ms,
                     Vs__V1__AgentReply **reply)
{
    if (cmd->type == VS__V1__COMMAND_TYPE__COMMAND_UNSPECIFIED ||
        cmd->type == VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT)
        return -EINVAL;
    struct timespec deadline = mono_after(timeout_ms);
    struct waiter w = {0};
    int rc = random_bytes(w.id, sizeof w.id);
    if (rc != 0)
        return rc;

    pthread_mutex_lock(&a->mu);
    rc = a->err;
    if (rc == 0) {
        w.next = a->waiters;
        a->waiters = &w;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc != 0)
        return rc;

    rc = send_command(a, cmd, w.id);
    if (rc != 0) { /* not (wholly) sent: no reply can come */
        pthread_mutex_lock(&a->mu);
        forget_waiter(a, &w);
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    rc = await_reply(a, &w, &deadline);
    if (rc == 0)
        *reply = w.reply;
    return rc;
}

/* ---- opening and closing ---------------------------------------------------------- */

int vs_agent_open(int fd, vs_agent **out)
{
    if (fd == -1)
        fd = VS_AGENT_FD;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -EBADF;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    int type = 0;
    socklen_t type_len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0)
        return -errno;
    if (type != SOCK_STREAM)
        return -EPROTOTYPE;

    vs_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    a->fd = fd;
    atomic_init(&a->timeout_ms, VS_AGENT_DEFAULT_TIMEOUT_MS);
    const char *dir = getenv("VS_AGENT_OUT_DIR");
    a->out_dir = strdup(dir != NULL && dir[0] != '\0' ? dir : VS_AGENT_OUT_DIR);
    a->rbuf = malloc(VS_AGENT_READ_CHUNK);
    if (a->out_dir == NULL || a->rbuf == NULL || vs_frame_decoder_new(VS_FRAME_MAX, &a->dec) != 0) {
        free(a->out_dir);
        free(a->rbuf);
        free(a);
        return -ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->replied, &ca);
    pthread_cond_init(&a->hb_wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->write_mu, NULL);
    *out = a;
    return 0;
}

void vs_agent_close(vs_agent *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->hb_stop = true;
    pthread_cond_signal(&a->hb_wake);
    pthread_mutex_unlock(&a->mu);
    if (a->hb_started)
        pthread_join(a->hb_thread, NULL);
    pthread_cond_destroy(&a->replied);
    pthread_cond_destroy(&a->hb_wake);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->write_mu);
    vs_frame_decoder_free(a->dec);
    free(a->rbuf);
    free(a->out_dir);
    free(a);
}

void vs_agent_set_timeout(vs_agent *a, uint32_t timeout_ms)
{
    atomic_store(&a->timeout_ms, timeout_ms != 0 ? timeout_ms : VS_AGENT_DEFAULT_TIMEOUT_MS);
}

/* A command of type with its body case set; the caller points the body at
 * its message. */
static Vs__V1__AgentCommand command(Vs__V1__CommandType type, Vs__V1__AgentCommand__BodyCase body)
{
    Vs__V1__AgentCommand cmd = VS__V1__AGENT_COMMAND__INIT;
    cmd.type = type;
    cmd.body_case = body;
    return cmd;
}

/* ---- the heartbeat ---------------------------------------------------------------- */

/* Send the next HEARTBEAT (only one thread at a time sends them). */
static int send_heartbeat(vs_agent *a)
{
    uint8_t id[VS_AGENT_ID_LEN];
    int rc = random_bytes(id, sizeof id);
    if (rc != 0)
        return rc;
    Vs__V1__Heartbeat beat = VS__V1__HEARTBEAT__INIT;
    beat.sequence = ++a->hb_sequence;
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT,
                                       VS__V1__AGENT_COMMAND__BODY_HEARTBEAT);
    cmd.heartbeat = &beat;
    return send_command(a, &cmd, id);
}

/* Every interval, a beat, until vs_agent_close or a failed channel. */
static void *heartbeat_main(void *arg)
{
    vs_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        struct timespec next = mono_after(a->hb_interval_ms);
        int waited = 0;
        while (!a->hb_stop && waited != ETIMEDOUT)
            waited = pthread_cond_timedwait(&a->hb_wake, &a->mu, &next);
        if (a->hb_stop || a->err != 0)
            break;
        pthread_mutex_unlock(&a->mu);
        int rc = send_heartbeat(a);
        pthread_mutex_lock(&a->mu);
        if (rc != 0)
            break; /* the channel is gone: its error is recorded */
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int vs_agent_heartbeat_start(vs_agent *a, uint32_t interval_ms)
{
    if (interval_ms == 0)
        return -EINVAL;
    if (a->hb_started)
        return -EALREADY;
    /* The first beat goes out now, from the caller: sandboxd hears from
     * the agent before this returns, however soon the agent ends. */
    int rc = send_heartbeat(a);
    if (rc != 0)
        return rc;
    a->hb_interval_ms = interval_ms;
    /* The agent's signals go to its own threads, never to this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&a->hb_thread, NULL, heartbeat_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    a->hb_started = true;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

const char *vs_agent_last_reason(void)
{
    return last_reason;
}

/* The errno of a reply's status; keeps the reason of a non-OK one. */
static int status_errno(const Vs__V1__AgentReply *r)
{
    Vs__V1__StatusCode code =
        r->status != NULL ? r->status->code : VS__V1__STATUS_CODE__STATUS_UNKNOWN;
    if (code == VS__V1__STATUS_CODE__STATUS_OK)
        return 0;
    const char *reason = r->status != NULL && r->status->reason != NULL ? r->status->reason : "";
    snprintf(last_reason, sizeof last_reason, "%s", reason);
    switch (code) {
    case VS__V1__STATUS_CODE__STATUS_DENIED:
        return -EACCES;
    case VS__V1__STATUS_CODE__STATUS_TIMEOUT:
        return -ETIMEDOUT;
    case VS__V1__STATUS_CODE__STATUS_INVALID:
        return -EINVAL;
    default:
        return -EPROTO;
    }
}

/* Send cmd with the handle's timeout; 0 and *out only for an OK reply with
 * the body `want` (NOT_SET: any). */
static int ask(vs_agent *a, Vs__V1__AgentCommand *cmd, Vs__V1__AgentReply__BodyCase want,
               Vs__V1__AgentReply **out)
{
    last_reason[0] = '\0';
    Vs__V1__AgentReply *r = NULL;
    int rc = vs_agent_request(a, cmd, atomic_load(&a->timeout_ms), &r);
    if (rc != 0)
        return rc;
    rc = status_errno(r);
    if (rc == 0 && want != VS__V1__AGENT_REPLY__BODY__NOT_SET && r->body_case != want)
        rc = -EBADMSG;
    if (rc != 0) {
        vs__v1__agent_reply__free_unpacked(r, NULL);
        return rc;
    }
    *out = r;
    return 0;
}

int vs_agent_fetch(vs_agent *a, const char *url, const char *method, const void *body, size_t len,
                   Vs__V1__AgentReply **reply)
{
    if (url == NULL || (body == NULL && len > 0))
        return -EINVAL;
    Vs__V1__RequestData data = VS__V1__REQUEST_DATA__INIT;
    data.url = (char *)url;
    data.method = (char *)(method != NULL ? method : "GET");
    data.body.data = (uint8_t *)body;
    data.body.len = len;
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA,
                                       VS__V1__AGENT_COMMAND__BODY_REQUEST_DATA);
    cmd.request_data = &data;
    return ask(a, &cmd, VS__V1__AGENT_REPLY__BODY_RESULT, reply);
}

int vs_agent_search(vs_agent *a, const char *query, uint32_t max_results,
                    Vs__V1__AgentReply **reply)
{
    if (query == NULL)
        return -EINVAL;
    Vs__V1__WebSearch search = VS__V1__WEB_SEARCH__INIT;
    search.query = (char *)query;
    search.max_results = max_results;
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH,
                                       VS__V1__AGENT_COMMAND__BODY_WEB_SEARCH);
    cmd.web_search = &search;
    return ask(a, &cmd, VS__V1__AGENT_REPLY__BODY_RESULT, reply);
}

/* One STATE_SYNC: 0 and *out for an OK reply that says a revision. */
static int state_sync(vs_agent *a, Vs__V1__StateOp op, const char *key, const void *value,
                      size_t len, uint64_t expected_revision, Vs__V1__AgentReply **out)
{
    if (key == NULL || key[0] == '\0' || (value == NULL && len > 0))
        return -EINVAL;
    Vs__V1__StateSync sync = VS__V1__STATE_SYNC__INIT;
    sync.op = op;
    sync.key = (char *)key;
    sync.value = (ProtobufCBinaryData){len, (uint8_t *)value};
    sync.expected_revision = expected_revision;
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_STATE_SYNC,
                                       VS__V1__AGENT_COMMAND__BODY_STATE_SYNC);
    cmd.state_sync = &sync;
    return ask(a, &cmd, VS__V1__AGENT_REPLY__BODY_STATE_REVISION, out);
}

int vs_agent_state_get(vs_agent *a, const char *key, void **value, size_t *len,
                       uint64_t *revision)
{
    if (value == NULL || len == NULL)
        return -EINVAL;
    *value = NULL;
    *len = 0;
    Vs__V1__AgentReply *r = NULL;
    int rc = state_sync(a, VS__V1__STATE_OP__STATE_OP_GET, key, NULL, 0, 0, &r);
    if (rc != 0)
        return rc;
    if (r->state_value.len > 0 && (*value = malloc(r->state_value.len)) == NULL) {
        rc = -ENOMEM;
    } else if (r->state_value.len > 0) {
        memcpy(*value, r->state_value.data, r->state_value.len);
        *len = r->state_value.len;
    }
    if (rc == 0 && revision != NULL)
        *revision = r->state_revision;
    vs__v1__agent_reply__free_unpacked(r, NULL);
    return rc;
}

int vs_agent_state_put(vs_agent *a, const char *key, const void *value, size_t len,
                       uint64_t expected_revision, uint64_t *revision)
{
    Vs__V1__AgentReply *r = NULL;
    int rc = state_sync(a, VS__V1__STATE_OP__STATE_OP_PUT, key, value, len, expected_revision, &r);
    if (rc != 0)
        return rc;
    if (revision != NULL)
        *revision = r->state_revision;
    vs__v1__agent_reply__free_unpacked(r, NULL);
    return 0;
}

int vs_agent_state_delete(vs_agent *a, const char *key)
{
    Vs__V1__AgentReply *r = NULL;
    int rc = state_sync(a, VS__V1__STATE_OP__STATE_OP_DELETE, key, NULL, 0, 0, &r);
    if (rc == 0)
        vs__v1__agent_reply__free_unpacked(r, NULL);
    return rc;
}

int vs_agent_request_memory(vs_agent *a, uint64_t bytes, uint64_t *granted)
{
    Vs__V1__RequestMemory mem = VS__V1__REQUEST_MEMORY__INIT;
    mem.memory_bytes = bytes;
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_REQUEST_MEMORY,
                                       VS__V1__AGENT_COMMAND__BODY_REQUEST_MEMORY);
    cmd.request_memory = &mem;
    Vs__V1__AgentReply *r = NULL;
    int rc = ask(a, &cmd, VS__V1__AGENT_REPLY__BODY_MEMORY_BYTES, &r);
    if (rc != 0)
        return rc;
    *granted = r->memory_bytes;
    vs__v1__agent_reply__free_unpacked(r, NULL);
    return 0;
}

int vs_agent_complete(vs_agent *a, const char *summary)
{
    Vs__V1__SignalComplete done = VS__V1__SIGNAL_COMPLETE__INIT;
    done.summary = (char *)(summary != NULL ? summary : "");
    Vs__V1__AgentCommand cmd = command(VS__V1__COMMAND_TYPE__COMMAND_SIGNAL_COMPLETE,
                                       VS__V1__AGENT_COMMAND__BODY_SIGNAL_COMPLETE);
    cmd.signal_complete = &done;
    Vs__V1__AgentReply *r = NULL;
    int rc = ask(a, &cmd, VS__V1__AGENT_REPLY__BODY__NOT_SET, &r);
    if (rc == 0)
        vs__v1__agent_reply__free_unpacked(r, NULL);
    return rc;
}

/* ---- outputs ------------------------------------------------------------------------ */

/* relpath is relative, shorter than PATH_MAX, and every component is
 * non-empty and neither "." nor "..". */
static bool output_path_ok(const char *relpath)
{
    size_t len = strnlen(relpath, PATH_MAX);
    if (len == 0 || len == PATH_MAX || relpath[0] == '/')
        return false;
    const char *c = relpath;
    for (;;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (c[n] == '\0')
            return true;
        c += n + 1;
    }
}

/* Open directory name under dir, creating it when missing; extra_flags
 * O_NOFOLLOW refuses a symbolic link. Returns the descriptor or -errno. */
static int open_dir(int dir, const char *name, int extra_flags)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | extra_flags);
        if (fd >= 0)
            return fd;
        if (errno != ENOENT || attempt > 0)
            break;
        if (mkdirat(dir, name, 0755) != 0 && errno != EEXIST)
            break;
    }
    return -errno;
}

static int write_file(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int vs_agent_write_output(vs_agent *a, const char *relpath, const void *data, size_t len)
{
    if (relpath == NULL || (data == NULL && len > 0) || !output_path_ok(relpath))
        return -EINVAL;
    char path[PATH_MAX];
    memcpy(path, relpath, strlen(relpath) + 1);

    /* The output directory is the sandbox's (or the test's) to choose and
     * may be a link; below it, the agent's own tree, none is followed. */
    int dir = open_dir(AT_FDCWD, a->out_dir, 0);
    if (dir < 0)
        return dir;
    char *name = path;
    for (char *slash; (slash = strchr(name, '/')) != NULL; name = slash + 1) {
        *slash = '\0';
        int sub = open_dir(dir, name, O_NOFOLLOW);
        close(dir);
        if (sub < 0)
            return sub;
        dir = sub;
    }

    /* A fixed-length temporary name: `name` may already be NAME_MAX long. */
    uint8_t rnd[8];
    int rc = random_bytes(rnd, sizeof rnd);
    if (rc != 0) {
        close(dir);
        return rc;
    }
    char tmp[40];
    snprintf(tmp, sizeof tmp, ".vs-out-%02x%02x%02x%02x%02x%02x%02x%02x.tmp", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        close(dir);
        return rc;
    }
    rc = write_file(fd, data, len);
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && renameat(dir, tmp, dir, name) != 0)
        rc = -errno;
    if (rc != 0)
        unlinkat(dir, tmp, 0);
    close(dir);
    return rc;
}
