/*
 * vs-sandboxd.c - the launcher daemon (DESIGN.md §1-§4): runs each admitted
 * task's agent in a sandbox - the native launcher's, or a Podman container
 * under the same policy (sandboxd.backend) - and relays its commands to the
 * bus.
 *
 * For each message of vs.task.admitted (JetStream, durable consumer
 * "sandboxd" shared by every launcher; at most sandboxd.max_tasks held at
 * once, the rest wait in the stream):
 *   1. the payload is opened with the launcher pool key into guarded memory
 *      and will be the agent's stdin; the task gets an ephemeral X25519 key;
 *   2. on a thread of the task's own, the image is resolved: none (the
 *      host's read-only /usr view; native only), or sandboxd.images/<the
 *      digest's hex>, a root file system or an OCI image layout (unpacked
 *      into sandboxd.image_cache), whose minisign signature over
 *      "<digest>\n" must verify with a trusted key and whose contents must
 *      hash to the digest - else the task is refused (TaskOutput without a
 *      run, audit alert); Podman gets it imported under its digest;
 *   3. on the same thread the sandbox starts (vs_sandbox_start or
 *      vs_podman_start) and is waited for, with fd 3 a socketpair to this
 *      daemon, its stdout and stderr discarded, the task's limits capped by
 *      the daemon's;
 *   4. frames on the command channel (sdk/PROTOCOL.md) are decoded on the
 *      loop; agent and task ids are stamped here, never taken from the
 *      agent: HEARTBEAT re-arms the watchdog and is published on
 *      vs.agent.<agent>.heartbeat; REQUEST_MEMORY raises the cgroup limit
 *      up to sandboxd.max_memory (DENIED on rlimits; under Podman `podman
 *      update`, on libuv's thread pool); REQUEST_DATA and
 *      WEB_SEARCH go to the egress worker with the body sealed to the
 *      egress pool key and come back opened with the task key; SIGNAL_COMPLETE
 *      is answered, published on vs.agent.<agent>.complete, and the program
 *      is given sandboxd.complete_grace to exit before it is ended;
 *      STATE_SYNC reads and writes the task's keys in the agent_state
 *      bucket, values sealed to the launcher pool; anything else is DENIED
 *      (ESCROW_RELEASE needs the requester's signature, which no sandbox
 *      can make); a malformed frame is answered INVALID, an oversized one
 *      ends the channel and the sandbox;
 *   5. a missed heartbeat (none for sandboxd.heartbeat_timeout) kills the
 *      sandbox; the task's wall-clock limit is the launcher's;
 *   6. when the program has ended, init has written the ustar snapshot of
 *      /workspace/out (from inside the sandbox) to a pipe read here, and
 *      the last 16 KiB of the program's stdout and stderr (a pipe read
 *      here too) are appended to it as .vs-agent-output; it is
 *      sealed to the scanner pool key (a blob when large) and published in
 *      a TaskOutput with a signed attestation (image digest, policy hash,
 *      seccomp filter hash, launcher binary hash, task id) on
 *      vs.task.output, Nats-Msg-Id "<task>.output", and only then is the
 *      admitted message acked. The task key is wiped.
 * Every launch, relayed command, denial, exit and kill is an audit event
 * (category "sandbox"); heartbeats are not (they are counted).
 *
 * Why it is shaped like this:
 *  - A running task holds its message: the bus sends InProgress every
 *    third of the ack wait, so a task longer than the ack wait is not
 *    redelivered while it runs. After a launcher crash the message is
 *    redelivered and the task runs again, but its output has the same
 *    Nats-Msg-Id: JetStream keeps the first, and the task ends once.
 *  - vs_sandbox_wait blocks, and so do hashing, unpacking and importing an
 *    image, so each sandbox has a small thread; everything else happens on
 *    the loop thread, which the thread wakes with uv_async. The loop steers
 *    a sandbox (kill, finish, memory) only once it has seen it started.
 *  - The attestation signs a canonical text built from its fields
 *    (vs_attestation_text), so a verifier rebuilds the same bytes from the
 *    message it received without re-packing protobuf.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vs/agent_frame.h"
#include "vs/attestation.h"
#include "vs/audit.h"
#include "vs/blob.h"
#include "vs/daemon.h"
#include "vs/ids.h"
#include "vs/image.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/podman.h"
#include "vs/sandbox.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/task.pb-c.h"
#include "outcome.h"
#include "seccomp_policy.h"
#include "snapshot.h"

#define COMPONENT "sandboxd"
#define CATEGORY "sandbox"
#define RETRY_MS 1000
#define EGRESS_TIMEOUT_MS 60000
#define MAX_ARGS 16
#define MAX_BINDS 8
#define THREAD_STACK (256u << 10)
#define OUTPUT_TAIL (16u << 10) /* the agent's stdout and stderr kept for its snapshot */

static const struct vs_cfg_key sandboxd_keys[] = {
    {"sandboxd.launcher_key", VS_CFG_STRING, true,
     "the launcher pool's box key file (opens admitted payloads)"},
    {"sandboxd.scanner_key", VS_CFG_STRING, true,
     "the scanner pool's public box key, hex (snapshots are sealed to it)"},
    {"sandboxd.egress_key", VS_CFG_STRING, false,
     "the egress pool's public box key, hex (none: REQUEST_DATA and WEB_SEARCH are denied)"},
    {"sandboxd.node_key", VS_CFG_STRING, true, "this node's Ed25519 key file (signs attestations)"},
    {"sandboxd.command", VS_CFG_LIST, true, "the agent program and its arguments, inside the sandbox"},
    {"sandboxd.binds", VS_CFG_LIST, false, "read-only binds \"SRC:DST\" into every sandbox"},
    {"sandboxd.backend", VS_CFG_STRING, false,
     "native (the launcher's own sandbox, default) or podman (images only)"},
    {"sandboxd.images", VS_CFG_STRING, false,
     "directory of images, each named by its content digest's hex: a root file system, or an"
     " OCI image layout unpacked into sandboxd.image_cache"},
    {"sandboxd.image_cache", VS_CFG_STRING, false,
     "where OCI image layouts are unpacked (<images>/.cache)"},
    {"sandboxd.trusted_keys", VS_CFG_LIST, false, "minisign public key files images are signed with"},
    {"sandboxd.max_tasks", VS_CFG_INT, false, "tasks running at once (4)"},
    {"sandboxd.ack_wait", VS_CFG_DURATION, false, "the consumer's ack wait (30s)"},
    {"sandboxd.heartbeat_timeout", VS_CFG_DURATION, false,
     "a sandbox without a heartbeat for this long is killed (10s)"},
    {"sandboxd.complete_grace", VS_CFG_DURATION, false,
     "how long a program may take to exit after SIGNAL_COMPLETE (2s)"},
    {"sandboxd.max_wall_time", VS_CFG_DURATION, false, "wall-clock limit of a task at most (10m)"},
    {"sandboxd.max_memory", VS_CFG_SIZE, false, "memory a task may have, REQUEST_MEMORY included (1GiB)"},
    {"sandboxd.default_memory", VS_CFG_SIZE, false, "memory limit of a task that names none (256MiB)"},
    {"sandboxd.max_snapshot", VS_CFG_SIZE, false, "content of an output snapshot at most (64MiB)"},
    {NULL, 0, false, NULL},
};

struct sandboxd {
    vs_daemon *d;
    vs_boxkey *launcher;
    uint8_t launcher_id[VS_KEY_ID_LEN];
    uint8_t scanner_pk[VS_BOX_PUBLICKEY_LEN], egress_pk[VS_BOX_PUBLICKEY_LEN];
    bool have_egress;
    vs_signkey *node;
    uint8_t launcher_hash[32];
    char *argv[MAX_ARGS + 1];
    struct vs_bind binds[MAX_BINDS];
    char *bind_store[MAX_BINDS];
    size_t nbinds;
    const char *images;
    char image_cache[PATH_MAX];
    bool podman;                            /* the backend: podman, else native */
    struct vs_minisign_key *trusted;
    size_t ntrusted;
    uint64_t heartbeat_ms, grace_ms, max_wall_ms, max_memory, default_memory, max_snapshot,
        ack_wait_ms;
    size_t max_tasks, tasks;
    vs_consumer *admitted;
    uint64_t launched, completed, killed, refused, commands, heartbeats, invalid_frames;
};

static struct sandboxd g_sandboxd;

/* ---- one task ------------------------------------------------------------------- */

struct task {
    struct sandboxd *g;
    vs_msg *m;                              /* the held vs.task.admitted message */
    const Vs__V1__TaskSubmit *submit;       /* in m's body */
    char agent[65];
    uint8_t id[VS_ID_LEN];
    char hex[VS_ID_HEX_LEN];
    vs_boxkey *key;                         /* the task's ephemeral key */
    uint8_t *payload;                       /* sodium_malloc'd; the agent's stdin */
    size_t payload_len;
    char image_digest[VS_IMAGE_DIGEST_LEN];
    char rootfs[PATH_MAX];
    char image_id[VS_PODMAN_IMAGE_ID_LEN];  /* podman: the image imported from rootfs */
    char why[300];                          /* why the image was refused */
    struct vs_sandbox_policy policy;
    struct vs_sandbox_result result;
    vs_sandbox *sb;                         /* native, or */
    vs_podman *pm;                          /* podman: set by the thread before PHASE_STARTED */
    int start_rc;
    bool refused, kill_pending;
    uv_thread_t thread;
    bool thread_started;
    uv_async_t wake;                        /* the thread: started, ended */
    _Atomic int phase;                      /* PHASE_* as the thread sees it */
    int seen_phase;                         /* as the loop has handled it */
    int fds[2][2];                          /* channel, snapshot: [0] ours, [1] inside */
    int stdin_pipe[2], output_pipe[2];
    uv_pipe_t channel, snapshot_in, stdin_out, output_in;
    bool channel_open, snapshot_open, stdin_open, output_open;
    uint8_t output[OUTPUT_TAIL];            /* the last bytes of the agent's stdout and stderr */
    size_t output_len;
    uint64_t output_total;
    bool output_done;
    vs_frame_decoder *decoder;
    uv_timer_t watchdog, grace;
    uint8_t *snapshot;
    size_t snapshot_len, snapshot_cap;
    bool snapshot_done, snapshot_over;
    bool completed, ended, finishing, watchdog_fired;
    size_t in_flight;                       /* egress requests awaiting a reply */
    size_t handles;                         /* libuv handles not yet closed */
};

enum { PHASE_NONE, PHASE_STARTED, PHASE_ENDED };

/* ---- small helpers --------------------------------------------------------------- */

static void audit(struct task *t, Vs__V1__Severity sev, const char *event, const char *k1,
                  const char *v1, const char *k2, const char *v2)
{
    const char *details[] = {k1, v1, k2, v2};
    size_t n = k1 == NULL ? 0 : k2 == NULL ? 1 : 2;
    vs_audit_emitv(vs_daemon_bus(t->g->d), CATEGORY, sev, t->agent, t->id, event, details, n,
                   NULL, NULL, NULL);
}

static int parse_hex_key(const char *hex, uint8_t out[VS_BOX_PUBLICKEY_LEN], const char *name)
{
    if (vs_box_public_parse(hex, out) != 0) {
        log_warnx("%s must be %d hex digits", name, 2 * VS_BOX_PUBLICKEY_LEN);
        return -EINVAL;
    }
    return 0;
}

/* ---- the command channel: replies ------------------------------------------------ */

struct frame_write {
    uv_write_t req;
    uint8_t *data;
    size_t len;
};

static void on_frame_written(uv_write_t *req, int status)
{
    (void)status;
    struct frame_write *w = (struct frame_write *)req;
    sodium_memzero(w->data, w->len); /* a reply may carry the task's data */
    free(w->data);
    free(w);
}

/* Send reply (with the command's id and type) to the agent. */
static void reply_to_agent(struct task *t, const ProtobufCBinaryData *command_id,
                           Vs__V1__CommandType type, Vs__V1__AgentReply *reply)
{
    if (!t->channel_open)
        return;
    reply->command_id = *command_id;
    reply->type = type;
    size_t n = protobuf_c_message_get_packed_size(&reply->base);
    struct frame_write *w = malloc(sizeof *w);
    uint8_t *data = w != NULL ? malloc(VS_FRAME_HEADER + n) : NULL;
    if (data == NULL || vs_frame_header(data, n) != 0) {
        free(data);
        free(w);
        return;
    }
    protobuf_c_message_pack(&reply->base, data + VS_FRAME_HEADER);
    w->data = data;
    w->len = VS_FRAME_HEADER + n;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)(VS_FRAME_HEADER + n));
    if (uv_write(&w->req, (uv_stream_t *)&t->channel, &buf, 1, on_frame_written) != 0) {
        free(data);
        free(w);
    }
}

static void reply_status(struct task *t, const Vs__V1__AgentCommand *c, Vs__V1__StatusCode code,
                         const char *reason)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = code;
    st.reason = (char *)reason;
    Vs__V1__AgentReply r = VS__V1__AGENT_REPLY__INIT;
    r.status = &st;
    reply_to_agent(t, &c->command_id, c->type, &r);
}

/* ---- commands answered later ------------------------------------------------------ */

#define COMMAND_ID_MAX 32

/* A command whose reply comes later (a relay to the bus, a change made on
 * another thread): the task concludes only when none is outstanding. */
struct relay {
    struct task *t;
    uint8_t command_id[COMMAND_ID_MAX];
    size_t command_id_len;
    Vs__V1__CommandType type;
};

static void maybe_conclude(struct task *t);

/* The relay of command c; NULL when out of memory, c then answered
 * UNKNOWN with unavailable (what could not be done). */
static struct relay *relay_new(struct task *t, const Vs__V1__AgentCommand *c,
                               const char *unavailable)
{
    struct relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_UNKNOWN, unavailable);
        return NULL;
    }
    r->t = t;
    r->type = c->type;
    r->command_id_len = c->command_id.len; /* on_frame: at most COMMAND_ID_MAX */
    if (c->command_id.len > 0)
        memcpy(r->command_id, c->command_id.data, c->command_id.len);
    t->in_flight++;
    return r;
}

static void relay_done(struct relay *r, Vs__V1__AgentReply *reply)
{
    struct task *t = r->t;
    ProtobufCBinaryData cid = {r->command_id_len, r->command_id};
    reply_to_agent(t, &cid, r->type, reply);
    t->in_flight--;
    free(r);
    maybe_conclude(t); /* the sandbox may have ended meanwhile */
}

static void relay_failed(struct relay *r, Vs__V1__StatusCode code, const char *reason)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = code;
    st.reason = (char *)reason;
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = &st;
    relay_done(r, &reply);
}

/* ---- relaying: egress ----------------------------------------------------------- */

/* The egress worker's OK answer opened: hand the agent the EgressResult. */
static void relay_opened(struct relay *r, const Vs__V1__AgentReply *from, const uint8_t *plain,
                         size_t n)
{
    Vs__V1__EgressResult *result = vs__v1__egress_result__unpack(NULL, n, plain);
    if (result == NULL) {
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the answer could not be read");
        return;
    }
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = from->status;
    reply.body_case = VS__V1__AGENT_REPLY__BODY_RESULT;
    reply.result = result;
    reply.flagged_suspicious = from->flagged_suspicious;
    relay_done(r, &reply);
    vs__v1__egress_result__free_unpacked(result, NULL);
}

struct relay_blob {
    struct relay *r;
    Vs__V1__AgentReply *from;
};

static void on_result_blob(int status, const uint8_t *data, size_t len, void *arg)
{
    struct relay_blob *b = arg;
    if (status == 0)
        relay_opened(b->r, b->from, data, len);
    else
        relay_failed(b->r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the answer could not be fetched");
    vs__v1__agent_reply__free_unpacked(b->from, NULL);
    free(b);
}

static void on_egress_reply(int status, const ProtobufCMessage *msg, void *arg)
{
    struct relay *r = arg;
    struct task *t = r->t;
    const Vs__V1__AgentReply *from = (const Vs__V1__AgentReply *)msg;
    if (status < 0) {
        relay_failed(r, status == -ETIMEDOUT ? VS__V1__STATUS_CODE__STATUS_TIMEOUT
                                             : VS__V1__STATUS_CODE__STATUS_UNKNOWN,
                     status == -EHOSTUNREACH ? "no egress worker answers" : "the egress worker did not answer");
        return;
    }
    if (from->status == NULL || from->status->code != VS__V1__STATUS_CODE__STATUS_OK ||
        from->data == NULL) {
        Vs__V1__AgentReply copy = *from; /* a refusal passes through as it is */
        copy.body_case = VS__V1__AGENT_REPLY__BODY__NOT_SET;
        relay_done(r, &copy);
        return;
    }
    const Vs__V1__SealedPayload *p = from->data;
    if (p->blob != NULL) {
        /* the reply is the bus's until this returns: keep a copy for the fetch */
        struct relay_blob *b = malloc(sizeof *b);
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *packed = b != NULL ? malloc(n > 0 ? n : 1) : NULL;
        if (packed != NULL) {
            protobuf_c_message_pack(msg, packed);
            b->from = vs__v1__agent_reply__unpack(NULL, n, packed);
            b->r = r;
        }
        free(packed);
        if (packed == NULL || b->from == NULL ||
            vs_blob_fetch(vs_daemon_bus(t->g->d), b->from->data->blob, t->key, VS_FRAME_MAX,
                          EGRESS_TIMEOUT_MS, on_result_blob, b) < 0) {
            if (packed != NULL && b->from != NULL)
                vs__v1__agent_reply__free_unpacked(b->from, NULL);
            free(b);
            relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the answer could not be fetched");
        }
        return;
    }
    size_t n = p->ciphertext.len > VS_SEAL_OVERHEAD ? p->ciphertext.len - VS_SEAL_OVERHEAD : 0;
    uint8_t *plain = sodium_malloc(n > 0 ? n : 1);
    if (plain != NULL && n > 0 && vs_unseal(t->key, p->ciphertext.data, p->ciphertext.len, plain) == 0)
        relay_opened(r, from, plain, n);
    else
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the answer does not open");
    if (plain != NULL)
        sodium_free(plain);
}

/* REQUEST_DATA / WEB_SEARCH: the body sealed to the egress pool, the ids
 * and the task's key stamped, the request sent. */
static void relay_egress(struct task *t, Vs__V1__AgentCommand *c, const char *subject,
                         const ProtobufCMessage *body)
{
    struct sandboxd *g = t->g;
    if (!g->have_egress) {
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_DENIED, "no egress for this launcher");
        return;
    }
    struct relay *r = relay_new(t, c, "the request could not be relayed");
    if (r == NULL)
        return;
    size_t n = protobuf_c_message_get_packed_size(body);
    uint8_t *plain = sodium_malloc(n > 0 ? n : 1);
    uint8_t *sealed = malloc(n + VS_SEAL_OVERHEAD);
    int rc = plain != NULL && sealed != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        protobuf_c_message_pack(body, plain);
        rc = vs_seal(g->egress_pk, plain, n, sealed);
    }
    if (rc == 0) {
        uint8_t kid[VS_KEY_ID_LEN];
        vs_key_id(g->egress_pk, VS_BOX_PUBLICKEY_LEN, kid);
        Vs__V1__SealedPayload sp = VS__V1__SEALED_PAYLOAD__INIT;
        sp.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
        sp.ciphertext = (ProtobufCBinaryData){n + VS_SEAL_OVERHEAD, sealed};
        Vs__V1__AgentCommand out = *c;
        out.agent = t->agent;
        out.task_id = (ProtobufCBinaryData){VS_ID_LEN, t->id};
        out.reply_box_key = (ProtobufCBinaryData){VS_BOX_PUBLICKEY_LEN,
                                                  (uint8_t *)vs_boxkey_public(t->key)};
        out.body_case = VS__V1__AGENT_COMMAND__BODY_SEALED;
        out.sealed = &sp;
        rc = vs_bus_request(vs_daemon_bus(g->d), subject, &out.base,
                            &vs__v1__agent_reply__descriptor, EGRESS_TIMEOUT_MS, on_egress_reply, r);
    }
    if (plain != NULL)
        sodium_free(plain);
    free(sealed);
    if (rc < 0)
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the request could not be relayed");
}

/* ---- commands -------------------------------------------------------------------- */

static void arm_watchdog(struct task *t);
static void on_grace(uv_timer_t *timer);

/* ---- the sandbox, whichever backend runs it -------------------------------------- */

/* The thread's handle (sb or pm) is the loop's to use once the loop has seen
 * PHASE_STARTED, and until it has seen the end. */
static bool running(const struct task *t)
{
    return t->seen_phase == PHASE_STARTED && t->start_rc == 0;
}

/* End the whole sandbox at once, no snapshot (missed heartbeats, a hostile
 * frame); before the start is seen, as soon as it is. */
static void sandbox_kill(struct task *t)
{
    if (!running(t))
        t->kill_pending = true;
    else if (t->pm != NULL)
        vs_podman_kill(t->pm);
    else
        vs_sandbox_kill(t->sb);
}

/* The program's work is done: end it, take the snapshot. */
static void sandbox_finish(struct task *t)
{
    if (running(t) && t->pm != NULL)
        vs_podman_finish(t->pm);
    else if (running(t))
        vs_sandbox_finish(t->sb);
}

static void memory_granted(struct relay *r, uint64_t limit)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, limit);
    audit(r->t, VS__V1__SEVERITY__SEVERITY_INFO, "memory_raised", "limit", v, NULL, NULL);
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = &st;
    reply.body_case = VS__V1__AGENT_REPLY__BODY_MEMORY_BYTES;
    reply.memory_bytes = limit;
    relay_done(r, &reply);
}

/* podman update blocks: it runs on libuv's thread pool. */
struct memory_change {
    uv_work_t work;
    struct relay *r;
    uint64_t bytes;
    int rc;
};

static void memory_change_run(uv_work_t *w)
{
    struct memory_change *mc = w->data;
    mc->rc = vs_podman_set_memory(mc->r->t->pm, mc->bytes);
}

static void memory_change_done(uv_work_t *w, int status)
{
    struct memory_change *mc = w->data;
    struct task *t = mc->r->t;
    if (status == 0 && mc->rc == 0) {
        if (mc->bytes > t->policy.memory_bytes)
            t->policy.memory_bytes = mc->bytes;
        memory_granted(mc->r, t->policy.memory_bytes);
    } else {
        relay_failed(mc->r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the limit could not be changed");
    }
    free(mc);
}

/* REQUEST_MEMORY: the limit raised up to sandboxd.max_memory, never
 * lowered; DENIED beyond it, or where the sandbox has no memory cgroup. */
static void on_memory(struct task *t, Vs__V1__AgentCommand *c)
{
    struct sandboxd *g = t->g;
    uint64_t want = c->body_case == VS__V1__AGENT_COMMAND__BODY_REQUEST_MEMORY
                        ? c->request_memory->memory_bytes
                        : 0;
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, want);
    if (want == 0 || want > g->max_memory) {
        audit(t, VS__V1__SEVERITY__SEVERITY_NOTICE, "memory_denied", "requested", v, "reason",
              "above the policy's maximum");
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_DENIED, "above the policy's maximum");
        return;
    }
    struct relay *r = relay_new(t, c, "the limit could not be changed");
    if (r == NULL)
        return;
    if (want <= t->policy.memory_bytes) {
        memory_granted(r, t->policy.memory_bytes); /* never lowered */
        return;
    }
    if (!running(t)) {
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the sandbox is not running");
        return;
    }
    if (t->pm != NULL) {
        struct memory_change *mc = calloc(1, sizeof *mc);
        if (mc != NULL) {
            mc->r = r;
            mc->bytes = want;
            mc->work.data = mc;
        }
        if (mc == NULL || uv_queue_work(vs_daemon_loop(g->d), &mc->work, memory_change_run,
                                        memory_change_done) != 0) {
            free(mc);
            relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the limit could not be changed");
        }
        return;
    }
    int rc = vs_sandbox_set_memory(t->sb, want);
    if (rc == -ENOTSUP) {
        audit(t, VS__V1__SEVERITY__SEVERITY_NOTICE, "memory_denied", "requested", v, "reason",
              "rlimits only");
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_DENIED,
                     "the task runs on rlimits alone: its memory limit cannot change");
    } else if (rc < 0) {
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the limit could not be changed");
    } else {
        t->policy.memory_bytes = want;
        memory_granted(r, want);
    }
}

/* ---- STATE_SYNC ------------------------------------------------------------------ */

#define STATE_KEY_MAX 64
#define STATE_VALUE_MAX (128u << 10)

/* The bucket's answer: GET's value opened with the launcher pool key. */
static void on_state_done(int status, const struct vs_kv_entry *e, void *arg)
{
    struct relay *r = arg;
    struct task *t = r->t;
    if (status == -ECONNRESET) {
        relay_failed(r, VS__V1__STATUS_CODE__STATUS_DENIED, "the key's revision is not the expected one");
        return;
    }
    if (status < 0 && status != -ENOENT) {
        relay_failed(r, status == -ETIMEDOUT ? VS__V1__STATUS_CODE__STATUS_TIMEOUT
                                             : VS__V1__STATUS_CODE__STATUS_UNKNOWN,
                     "the state store did not answer");
        return;
    }
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = VS__V1__STATUS_CODE__STATUS_OK;
    Vs__V1__AgentReply reply = VS__V1__AGENT_REPLY__INIT;
    reply.status = &st;
    reply.body_case = VS__V1__AGENT_REPLY__BODY_STATE_REVISION;
    uint8_t *plain = NULL;
    if (status == 0 && e != NULL) {
        reply.state_revision = e->deleted ? 0 : e->revision;
        size_t n = e->len > VS_SEAL_OVERHEAD ? e->len - VS_SEAL_OVERHEAD : 0;
        if (!e->deleted && e->value != NULL && n > 0) {
            plain = sodium_malloc(n);
            if (plain == NULL || vs_unseal(t->g->launcher, e->value, e->len, plain) != 0) {
                if (plain != NULL)
                    sodium_free(plain);
                relay_failed(r, VS__V1__STATUS_CODE__STATUS_UNKNOWN, "the value does not open");
                return;
            }
            reply.state_value = (ProtobufCBinaryData){n, plain};
        }
    }
    relay_done(r, &reply);
    if (plain != NULL)
        sodium_free(plain);
}

/* STATE_SYNC: the task's own keys ("<task hex>.<key>") in the agent_state
 * bucket, values sealed to the launcher pool (any launcher that runs the
 * task again opens them; the bus never holds them in clear). */
static void on_state(struct task *t, Vs__V1__AgentCommand *c)
{
    const Vs__V1__StateSync *s = c->body_case == VS__V1__AGENT_COMMAND__BODY_STATE_SYNC
                                     ? c->state_sync : NULL;
    if (s == NULL || s->key == NULL || strlen(s->key) > STATE_KEY_MAX || !vs_token_valid(s->key) ||
        s->value.len > STATE_VALUE_MAX) {
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_INVALID,
                     "STATE_SYNC needs a key (a token of at most 64 bytes) and a value of at most 128 KiB");
        return;
    }
    struct relay *r = relay_new(t, c, "the state store cannot be reached");
    if (r == NULL)
        return;
    char key[VS_ID_HEX_LEN + STATE_KEY_MAX + 2];
    snprintf(key, sizeof key, "%s.%s", t->hex, s->key);
    vs_bus *bus = vs_daemon_bus(t->g->d);
    int rc = -EINVAL;
    if (s->op == VS__V1__STATE_OP__STATE_OP_GET) {
        rc = vs_kv_get(bus, VS_KV_AGENT_STATE, key, on_state_done, r);
    } else if (s->op == VS__V1__STATE_OP__STATE_OP_DELETE) {
        rc = vs_kv_delete(bus, VS_KV_AGENT_STATE, key, on_state_done, r);
    } else if (s->op == VS__V1__STATE_OP__STATE_OP_PUT) {
        uint8_t *sealed = malloc(s->value.len + VS_SEAL_OVERHEAD);
        rc = sealed == NULL ? -ENOMEM
                            : vs_seal(vs_boxkey_public(t->g->launcher), s->value.data,
                                      s->value.len, sealed);
        if (rc == 0)
            rc = vs_kv_put(bus, VS_KV_AGENT_STATE, key, sealed, s->value.len + VS_SEAL_OVERHEAD,
                           s->expected_revision, false, on_state_done, r);
        free(sealed);
    }
    if (rc < 0)
        relay_failed(r, s->op == VS__V1__STATE_OP__STATE_OP_UNSPECIFIED
                            ? VS__V1__STATUS_CODE__STATUS_INVALID
                            : VS__V1__STATUS_CODE__STATUS_UNKNOWN,
                     s->op == VS__V1__STATE_OP__STATE_OP_UNSPECIFIED ? "STATE_SYNC without an op"
                                                                     : "the state store cannot be reached");
}

static void publish_agent_event(struct task *t, const char *what, Vs__V1__AgentCommand *c,
                                bool durable)
{
    char subject[VS_SUBJECT_MAX], msg_id[VS_ID_HEX_LEN + 16];
    snprintf(subject, sizeof subject, "vs.agent.%s.%s", t->agent, what);
    if (durable) {
        snprintf(msg_id, sizeof msg_id, "%s.%s", t->hex, what);
        vs_js_publish(vs_daemon_bus(t->g->d), subject, &c->base, msg_id, NULL, NULL);
    } else {
        vs_bus_publish(vs_daemon_bus(t->g->d), subject, &c->base);
    }
}

static void on_complete(struct task *t, Vs__V1__AgentCommand *c)
{
    if (!t->completed) {
        t->completed = true;
        audit(t, VS__V1__SEVERITY__SEVERITY_INFO, "complete", NULL, NULL, NULL, NULL);
        publish_agent_event(t, "complete", c, true);
        uv_timer_start(&t->grace, on_grace, t->g->grace_ms, 0);
    }
    reply_status(t, c, VS__V1__STATUS_CODE__STATUS_OK, NULL);
}

/* One decoded frame from the agent. */
static int on_frame(const uint8_t *payload, size_t len, void *arg)
{
    struct task *t = arg;
    struct sandboxd *g = t->g;
    Vs__V1__AgentCommand *c = vs__v1__agent_command__unpack(NULL, len, payload);
    if (c == NULL) {
        g->invalid_frames++;
        audit(t, VS__V1__SEVERITY__SEVERITY_WARNING, "invalid_frame", "reason", "not an AgentCommand",
              NULL, NULL);
        Vs__V1__AgentCommand empty = VS__V1__AGENT_COMMAND__INIT;
        reply_status(t, &empty, VS__V1__STATUS_CODE__STATUS_INVALID, "not an AgentCommand");
        return 0;
    }
    if (c->command_id.len > COMMAND_ID_MAX) {
        g->invalid_frames++;
        audit(t, VS__V1__SEVERITY__SEVERITY_WARNING, "invalid_frame", "reason",
              "a command id above 32 bytes", NULL, NULL);
        Vs__V1__AgentCommand empty = VS__V1__AGENT_COMMAND__INIT;
        reply_status(t, &empty, VS__V1__STATUS_CODE__STATUS_INVALID, "a command id above 32 bytes");
        vs__v1__agent_command__free_unpacked(c, NULL);
        return 0;
    }
    /* The agent speaks for itself only: its ids are the task's (the
     * unpacked ones are put back before the message is freed). */
    char *agent_sent = c->agent;
    ProtobufCBinaryData task_sent = c->task_id;
    c->agent = t->agent;
    c->task_id = (ProtobufCBinaryData){VS_ID_LEN, t->id};
    g->commands++;
    const char *name = "other";
    switch (c->type) {
    case VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT:
        g->heartbeats++;
        arm_watchdog(t);
        publish_agent_event(t, "heartbeat", c, false);
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_REQUEST_MEMORY:
        name = "request_memory";
        on_memory(t, c);
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_SIGNAL_COMPLETE:
        name = "signal_complete";
        on_complete(t, c);
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA:
        name = "request_data";
        if (c->body_case == VS__V1__AGENT_COMMAND__BODY_REQUEST_DATA)
            relay_egress(t, c, "vs.egress.fetch", &c->request_data->base);
        else
            reply_status(t, c, VS__V1__STATUS_CODE__STATUS_INVALID, "REQUEST_DATA without a body");
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH:
        name = "web_search";
        if (c->body_case == VS__V1__AGENT_COMMAND__BODY_WEB_SEARCH)
            relay_egress(t, c, "vs.egress.search", &c->web_search->base);
        else
            reply_status(t, c, VS__V1__STATUS_CODE__STATUS_INVALID, "WEB_SEARCH without a body");
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_STATE_SYNC:
        name = "state_sync";
        on_state(t, c);
        break;
    case VS__V1__COMMAND_TYPE__COMMAND_ESCROW_RELEASE:
        name = "denied";
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_DENIED,
                     "ESCROW_RELEASE must be signed by the requester's key: send it from outside the sandbox");
        break;
    default:
        name = "denied";
        reply_status(t, c, VS__V1__STATUS_CODE__STATUS_DENIED,
                     "this command is not available inside a sandbox");
        break;
    }
    if (c->type != VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT)
        audit(t, VS__V1__SEVERITY__SEVERITY_INFO, "command", "command", name, NULL, NULL);
    c->agent = agent_sent;
    c->task_id = task_sent;
    vs__v1__agent_command__free_unpacked(c, NULL);
    return 0;
}

/* ---- handles ------------------------------------------------------------------- */

static void task_release(struct task *t);

static void on_handle_closed(uv_handle_t *h)
{
    struct task *t = h->data;
    if (--t->handles == 0)
        task_release(t);
}

static void close_handle(struct task *t, uv_handle_t *h, bool *open)
{
    if (open != NULL) {
        if (!*open)
            return;
        *open = false;
    }
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
    (void)t;
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char chunk[64 * 1024]; /* the loop thread reads into it, one read at a time */
    *buf = uv_buf_init(chunk, sizeof chunk);
}

static void sync_started(struct task *t);

static void on_channel_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct task *t = s->data;
    if (n > 0) {
        sync_started(t);
        int rc = vs_frame_decoder_feed(t->decoder, (const uint8_t *)buf->base, (size_t)n, on_frame, t);
        if (rc == -EMSGSIZE) {
            t->g->invalid_frames++;
            audit(t, VS__V1__SEVERITY__SEVERITY_WARNING, "invalid_frame", "reason",
                  "a frame above the maximum size", NULL, NULL);
            close_handle(t, (uv_handle_t *)&t->channel, &t->channel_open);
            sandbox_kill(t);
        }
    } else if (n < 0) {
        close_handle(t, (uv_handle_t *)&t->channel, &t->channel_open);
    }
}

static void on_snapshot_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct task *t = s->data;
    if (n > 0) {
        size_t want = t->snapshot_len + (size_t)n;
        if (want > t->g->max_snapshot + (1u << 20)) { /* content limit + headers */
            t->snapshot_over = true;
        } else {
            if (want > t->snapshot_cap) {
                size_t cap = t->snapshot_cap > 0 ? t->snapshot_cap * 2 : 64 * 1024;
                while (cap < want)
                    cap *= 2;
                uint8_t *grown = realloc(t->snapshot, cap);
                if (grown == NULL) {
                    t->snapshot_over = true;
                    return;
                }
                t->snapshot = grown;
                t->snapshot_cap = cap;
            }
            memcpy(t->snapshot + t->snapshot_len, buf->base, (size_t)n);
            t->snapshot_len = want;
        }
    } else if (n < 0) {
        t->snapshot_done = true;
        close_handle(t, (uv_handle_t *)&t->snapshot_in, &t->snapshot_open);
        maybe_conclude(t);
    }
}

/* The agent's stdout and stderr: the last OUTPUT_TAIL bytes are kept. */
static void on_output_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct task *t = s->data;
    if (n > 0) {
        size_t len = (size_t)n;
        const uint8_t *data = (const uint8_t *)buf->base;
        t->output_total += len;
        if (len >= OUTPUT_TAIL) {
            memcpy(t->output, data + len - OUTPUT_TAIL, OUTPUT_TAIL);
            t->output_len = OUTPUT_TAIL;
            return;
        }
        if (t->output_len + len > OUTPUT_TAIL) {
            size_t drop = t->output_len + len - OUTPUT_TAIL;
            memmove(t->output, t->output + drop, t->output_len - drop);
            t->output_len -= drop;
        }
        memcpy(t->output + t->output_len, data, len);
        t->output_len += len;
    } else if (n < 0) {
        t->output_done = true;
        close_handle(t, (uv_handle_t *)&t->output_in, &t->output_open);
        maybe_conclude(t);
    }
}

/* The agent's output appended to its snapshot (snapshot.h), with a first
 * line saying how much came before the part kept. */
static void append_output(struct task *t)
{
    if (t->output_total == 0 || t->snapshot_len == 0 || t->snapshot_over)
        return;
    uint8_t text[OUTPUT_TAIL + 96];
    int head = t->output_total > t->output_len
                   ? snprintf((char *)text, 96, "[the first %" PRIu64 " bytes are not kept]\n",
                              t->output_total - t->output_len)
                   : 0;
    memcpy(text + head, t->output, t->output_len);
    size_t len = (size_t)head + t->output_len, need = t->snapshot_len + 2048 + len;
    if (need > t->snapshot_cap) {
        uint8_t *grown = realloc(t->snapshot, need);
        if (grown == NULL)
            return;
        t->snapshot = grown;
        t->snapshot_cap = need;
    }
    if (vs_snapshot_append(t->snapshot, &t->snapshot_len, t->snapshot_cap,
                           VS_SNAPSHOT_AGENT_OUTPUT, text, len) < 0)
        log_warnx("task %s: the agent's output could not join its snapshot", t->hex);
    sodium_memzero(text, sizeof text);
}

static void on_watchdog(uv_timer_t *timer)
{
    struct task *t = timer->data;
    if (t->ended)
        return;
    t->watchdog_fired = true;
    audit(t, VS__V1__SEVERITY__SEVERITY_WARNING, "killed", "reason", "missed heartbeats", NULL, NULL);
    sandbox_kill(t);
}

static void arm_watchdog(struct task *t)
{
    uv_timer_start(&t->watchdog, on_watchdog, t->g->heartbeat_ms, 0);
}

/* The grace after SIGNAL_COMPLETE is over: end the program if it has not. */
static void on_grace(uv_timer_t *timer)
{
    struct task *t = timer->data;
    if (!t->ended)
        sandbox_finish(t);
}

/* ---- the end of a task -------------------------------------------------------- */

static Vs__V1__KillReason kill_reason_of(enum vs_kill_reason k)
{
    switch (k) {
    case VS_KILL_TIME: return VS__V1__KILL_REASON__KILL_REASON_WALL_TIME;
    case VS_KILL_CPU: return VS__V1__KILL_REASON__KILL_REASON_CPU_TIME;
    case VS_KILL_MEMORY: return VS__V1__KILL_REASON__KILL_REASON_MEMORY;
    case VS_KILL_PIDS: return VS__V1__KILL_REASON__KILL_REASON_PIDS;
    case VS_KILL_SECCOMP: return VS__V1__KILL_REASON__KILL_REASON_SECCOMP;
    case VS_KILL_WATCHDOG: return VS__V1__KILL_REASON__KILL_REASON_WATCHDOG;
    case VS_KILL_NONE: break;
    }
    return VS__V1__KILL_REASON__KILL_REASON_NONE;
}

static void policy_hash(const struct task *t, uint8_t out[32]);

/* The task's TaskOutput, its snapshot sealed as p, published; the
 * admitted message is acked once it is stored. */
static void publish_output(struct task *t, const Vs__V1__SealedPayload *p)
{
    struct sandboxd *g = t->g;
    const struct vs_sandbox_result *r = &t->result;
    Vs__V1__Attestation a = VS__V1__ATTESTATION__INIT;
    uint8_t policy_digest[32], seccomp_hash[32], sig[VS_SIGNATURE_LEN];
    policy_hash(t, policy_digest);
    vs_seccomp_program_hash(t->policy.preset, seccomp_hash);
    a.task_id = (ProtobufCBinaryData){VS_ID_LEN, t->id};
    a.image_digest = t->image_digest;
    a.policy_hash = (ProtobufCBinaryData){32, policy_digest};
    a.seccomp_filter_hash = (ProtobufCBinaryData){32, seccomp_hash};
    a.launcher_hash = (ProtobufCBinaryData){32, g->launcher_hash};
    a.at_ns = vs_now_ns();
    a.node_key = (ProtobufCBinaryData){VS_SIGN_PUBLICKEY_LEN, (uint8_t *)vs_signkey_public(g->node)};
    if (vs_attestation_sign(&a, g->node, sig) == 0)
        a.signature = (ProtobufCBinaryData){VS_SIGNATURE_LEN, sig};

    Vs__V1__TaskOutput out = VS__V1__TASK_OUTPUT__INIT;
    out.task_id = (ProtobufCBinaryData){VS_ID_LEN, t->id};
    out.agent = t->agent;
    out.exit_code = r->exit_code;
    out.signal = r->signal;
    out.kill_reason = kill_reason_of(r->kill_reason);
    out.denied_syscall = (char *)(r->n_denied > 0 ? r->denied[0] : "");
    out.snapshot = (Vs__V1__SealedPayload *)p;
    out.attestation = &a;
    out.wall_time_ms = r->wall_ms;
    out.cpu_time_ms = r->cpu_ms;
    out.peak_memory_bytes = r->peak_memory_bytes;
    out.completed = t->completed;
    out.requester = t->submit->requester;
    out.requester_box_key = t->submit->requester_box_key;
    out.expected_output_bytes = t->submit->limits != NULL ? t->submit->limits->expected_output_bytes : 0;
    char msg_id[VS_ID_HEX_LEN + 16];
    snprintf(msg_id, sizeof msg_id, "%s.output", t->hex);
    if (vs_js_publish_then_ack(t->m, "vs.task.output", &out.base, msg_id, RETRY_MS) != 0)
        vs_msg_nak(t->m, RETRY_MS);
    t->m = NULL;
}

static void on_snapshot_sealed(int status, const Vs__V1__SealedPayload *p, void *arg)
{
    struct task *t = arg;
    if (status < 0) {
        log_warnx("task %s: snapshot not stored (%s); will retry", t->hex, strerror(-status));
        vs_msg_nak(t->m, RETRY_MS);
        t->m = NULL;
    } else {
        publish_output(t, p);
    }
    t->finishing = false;
    maybe_conclude(t);
}

/* Free what is left once the output is out and every handle is closed. */
static void task_release(struct task *t)
{
    struct sandboxd *g = t->g;
    if (t->thread_started)
        uv_thread_join(&t->thread);
    vs_sandbox_free(t->sb);
    vs_podman_free(t->pm);
    vs_frame_decoder_free(t->decoder);
    int *fds[] = {t->fds[0], t->fds[1], t->stdin_pipe, t->output_pipe};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        for (size_t j = 0; j < 2; j++)
            if (fds[i][j] >= 0)
                close(fds[i][j]);
    if (t->payload != NULL)
        sodium_free(t->payload);
    if (t->snapshot != NULL) {
        sodium_memzero(t->snapshot, t->snapshot_len);
        free(t->snapshot);
    }
    vs_boxkey_free(t->key); /* crypto-shredding: the task's replies no longer open */
    if (t->m != NULL)
        vs_msg_nak(t->m, RETRY_MS);
    g->tasks--;
    free(t);
}

/* When the sandbox has ended, its snapshot has been read and no relay is
 * outstanding: seal the snapshot, publish the output, close everything. */
static void maybe_conclude(struct task *t)
{
    if (!t->ended || !t->snapshot_done || !t->output_done || t->finishing || t->in_flight > 0)
        return;
    if (t->m != NULL && t->refused) {
        Vs__V1__SealedPayload none = VS__V1__SEALED_PAYLOAD__INIT;
        publish_output(t, &none);
    } else if (t->m != NULL) {
        t->finishing = true;
        bool killed = t->result.kill_reason != VS_KILL_NONE;
        char code[16];
        snprintf(code, sizeof code, "%d", t->result.signal > 0 ? 128 + t->result.signal
                                                               : t->result.exit_code);
        audit(t, killed ? VS__V1__SEVERITY__SEVERITY_WARNING : VS__V1__SEVERITY__SEVERITY_INFO,
              killed ? "killed" : "exit", "status", code, "reason",
              vs_kill_reason_name(t->result.kill_reason));
        if (killed)
            t->g->killed++;
        else
            t->g->completed++;
        append_output(t);
        int rc = t->snapshot_over
                     ? -EFBIG
                     : vs_payload_seal(vs_daemon_bus(t->g->d), t->snapshot, t->snapshot_len,
                                       t->g->scanner_pk, vs_bus_max_msg(vs_daemon_bus(t->g->d)) / 2,
                                       t->g->max_snapshot + (1u << 20), on_snapshot_sealed, t);
        if (rc < 0) {
            Vs__V1__SealedPayload none = VS__V1__SEALED_PAYLOAD__INIT; /* quarantined downstream */
            publish_output(t, &none);
            t->finishing = false;
        }
        if (t->finishing)
            return;
    }
    uv_timer_stop(&t->watchdog);
    uv_timer_stop(&t->grace);
    close_handle(t, (uv_handle_t *)&t->channel, &t->channel_open);
    close_handle(t, (uv_handle_t *)&t->snapshot_in, &t->snapshot_open);
    close_handle(t, (uv_handle_t *)&t->stdin_out, &t->stdin_open);
    close_handle(t, (uv_handle_t *)&t->output_in, &t->output_open);
    close_handle(t, (uv_handle_t *)&t->watchdog, NULL);
    close_handle(t, (uv_handle_t *)&t->grace, NULL);
    close_handle(t, (uv_handle_t *)&t->wake, NULL);
}

/* ---- the sandbox's thread and the loop's side of it ---------------------------- */

static int prepare_image(struct task *t);

/* The image made ready (hashing a tree, unpacking a layout and importing
 * into Podman take long, so they happen here), the sandbox started, then
 * waited for. */
static void sandbox_thread(void *arg)
{
    struct task *t = arg;
    struct sandboxd *g = t->g;
    t->start_rc = prepare_image(t);
    if (t->start_rc < 0) {
        t->refused = true;
        if (t->why[0] == '\0')
            snprintf(t->why, sizeof t->why, "the image cannot be used (%s)", strerror(-t->start_rc));
    } else if (g->podman) {
        t->start_rc = vs_podman_start(&t->policy, t->image_id, g->argv, t->policy.snapshot_fd,
                                      g->max_snapshot, &t->result, &t->pm);
    } else {
        t->policy.rootfs = t->rootfs[0] != '\0' ? t->rootfs : NULL;
        t->start_rc = vs_sandbox_start(&t->policy, g->argv, &t->result, &t->sb);
    }
    atomic_store(&t->phase, PHASE_STARTED);
    uv_async_send(&t->wake);
    if (t->start_rc == 0 && t->pm != NULL)
        vs_podman_wait(t->pm);
    else if (t->start_rc == 0)
        vs_sandbox_wait(t->sb);
    atomic_store(&t->phase, PHASE_ENDED);
    uv_async_send(&t->wake);
}

static void on_stdin_written(uv_write_t *req, int status)
{
    (void)status;
    struct task *t = req->data;
    free(req);
    close_handle(t, (uv_handle_t *)&t->stdin_out, &t->stdin_open);
}

static void refuse(struct task *t, const char *why);

static void on_started(struct task *t)
{
    /* the inside ends now live in init (or in nothing, when the start
     * failed): ours see the end of file when the sandbox is gone */
    for (size_t i = 0; i < 2; i++) {
        close(t->fds[i][1]);
        t->fds[i][1] = -1;
    }
    close(t->stdin_pipe[0]);
    close(t->output_pipe[1]);
    t->stdin_pipe[0] = t->output_pipe[1] = -1;
    if (t->refused) {
        refuse(t, t->why);
        t->snapshot_done = true; /* nothing to read */
        return;
    }
    if (t->start_rc < 0) {
        audit(t, VS__V1__SEVERITY__SEVERITY_ERROR, "launch_failed", "reason", t->result.setup_error,
              NULL, NULL);
        log_warnx("task %s: the sandbox could not be set up: %s", t->hex, t->result.setup_error);
        t->snapshot_done = true; /* nothing to read */
        return;
    }
    t->g->launched++;
    audit(t, VS__V1__SEVERITY__SEVERITY_INFO, "launch", "image", t->image_digest, "limits",
          vs_limit_mode_name(t->result.limit_mode));
    arm_watchdog(t);
    if (t->kill_pending)
        sandbox_kill(t); /* a hostile frame came before the start was seen */
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t buf = uv_buf_init((char *)t->payload, (unsigned)t->payload_len);
    if (req != NULL) {
        req->data = t;
        if (uv_write(req, (uv_stream_t *)&t->stdin_out, &buf, 1, on_stdin_written) != 0) {
            free(req);
            close_handle(t, (uv_handle_t *)&t->stdin_out, &t->stdin_open);
        }
    }
}

/* The thread has started the sandbox (its wake-up may still be queued
 * behind the agent's first frame). */
static void sync_started(struct task *t)
{
    if (t->seen_phase < PHASE_STARTED && atomic_load(&t->phase) >= PHASE_STARTED) {
        t->seen_phase = PHASE_STARTED;
        on_started(t);
    }
}

static void on_wake(uv_async_t *a)
{
    struct task *t = a->data;
    sync_started(t);
    if (t->seen_phase < PHASE_ENDED && atomic_load(&t->phase) == PHASE_ENDED) {
        t->seen_phase = PHASE_ENDED;
        t->ended = true;
        uv_timer_stop(&t->watchdog);
        maybe_conclude(t);
    }
}

/* ---- a new task ---------------------------------------------------------------- */

/* SHA-256 of the effective policy as text: what the launcher enforced. */
static void policy_hash(const struct task *t, uint8_t out[32])
{
    const struct vs_sandbox_policy *p = &t->policy;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    char line[PATH_MAX + 64];
    int n = snprintf(line, sizeof line,
                     "vibeshield-policy-v1\nbackend %s\npreset %s\nwall_ms %" PRIu64 "\ncpu_ms %" PRIu64
                     "\nmemory %" PRIu64 "\npids %u\nworkspace %" PRIu64 "\ntmp %" PRIu64
                     "\nnofile %u\nrootfs %s\n",
                     t->g->podman ? "podman" : "native", vs_preset_name(p->preset),
                     p->time_limit_ms, p->cpu_limit_ms, p->memory_bytes,
                     (unsigned)p->pids, p->workspace_bytes, p->tmp_bytes, (unsigned)p->nofile,
                     t->image_digest);
    crypto_hash_sha256_update(&st, (const uint8_t *)line, (size_t)n);
    for (size_t i = 0; i < p->n_ro_binds; i++) {
        n = snprintf(line, sizeof line, "bind %s %s\n", p->ro_binds[i].src, p->ro_binds[i].dst);
        crypto_hash_sha256_update(&st, (const uint8_t *)line, (size_t)n);
    }
    for (char *const *a = t->g->argv; *a != NULL; a++) {
        n = snprintf(line, sizeof line, "arg %s\n", *a);
        crypto_hash_sha256_update(&st, (const uint8_t *)line, (size_t)n);
    }
    crypto_hash_sha256_final(&st, out);
}

/* The image the task names, ready for the backend: "host" (native only), or
 * sandboxd.images/<digest hex> - a root file system, or an OCI image layout
 * unpacked into sandboxd.image_cache - whose signature and contents match
 * the digest, and for Podman imported under it. 0, or -errno and t->why.
 * On the sandbox's thread. */
static int prepare_image(struct task *t)
{
    struct sandboxd *g = t->g;
    const Vs__V1__ImageRef *img = t->submit->image;
    char *why = t->why;
    size_t why_len = sizeof t->why;
    if (img == NULL || img->digest == NULL || img->digest[0] == '\0') {
        snprintf(t->image_digest, sizeof t->image_digest, "host");
        return g->podman ? vs_why(why, why_len, -EINVAL,
                                  "the podman backend runs images only, and the task names none")
                         : 0;
    }
    const char *hex = strncmp(img->digest, "sha256:", 7) == 0 ? img->digest + 7 : "";
    if (strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64)
        return vs_why(why, why_len, -EINVAL, "malformed image digest");
    snprintf(t->image_digest, sizeof t->image_digest, "%s", img->digest);
    if (g->images == NULL || g->ntrusted == 0)
        return vs_why(why, why_len, -ENOENT, "this launcher runs no images");
    char entry[PATH_MAX], marker[PATH_MAX];
    if (snprintf(entry, sizeof entry, "%s/%s", g->images, hex) >= (int)sizeof entry - 16)
        return vs_why(why, why_len, -ENAMETOOLONG, "sandboxd.images is too long a path");
    snprintf(marker, sizeof marker, "%.*s/oci-layout", (int)(sizeof entry - 16), entry);
    int rc = 0;
    if (access(marker, F_OK) == 0)
        rc = vs_image_unpack_oci(entry, g->image_cache, t->rootfs, NULL, why, why_len);
    else
        snprintf(t->rootfs, sizeof t->rootfs, "%s", entry);
    if (rc == 0)
        rc = vs_image_verify(t->rootfs, img->digest, (const char *)img->minisign_signature.data,
                             img->minisign_signature.len, g->trusted, g->ntrusted, why, why_len);
    if (rc == 0 && g->podman)
        rc = vs_podman_image_import(t->rootfs, img->digest, t->image_id, sizeof t->image_id, why,
                                    why_len);
    return rc;
}

static uint64_t capped(uint64_t asked, uint64_t dflt, uint64_t max)
{
    uint64_t v = asked > 0 ? asked : dflt;
    return v < max ? v : max;
}

static void set_policy(struct task *t)
{
    struct sandboxd *g = t->g;
    struct vs_sandbox_policy *p = &t->policy;
    const Vs__V1__TaskLimits *l = t->submit->limits;
    vs_sandbox_policy_init(p);
    for (size_t i = 0; i < g->nbinds; i++)
        p->ro_binds[i] = g->binds[i];
    p->n_ro_binds = g->nbinds;
    p->preset = VS_PRESET_COMPUTE; /* threads: the SDK's heartbeat */
    if (l != NULL && l->seccomp_preset == VS__V1__SECCOMP_PRESET__SECCOMP_PRESET_MINIMAL)
        p->preset = VS_PRESET_MINIMAL;
    else if (l != NULL && l->seccomp_preset == VS__V1__SECCOMP_PRESET__SECCOMP_PRESET_NETWORK)
        p->preset = VS_PRESET_NETWORK;
    p->time_limit_ms = capped(l != NULL ? l->wall_time_ms : 0, g->max_wall_ms, g->max_wall_ms);
    p->cpu_limit_ms = l != NULL ? l->cpu_time_ms : 0;
    p->memory_bytes = capped(l != NULL ? l->memory_bytes : 0, g->default_memory, g->max_memory);
    p->pids = l != NULL && l->pids > 0 && l->pids < 256 ? l->pids : 256;
    if (l != NULL && l->workspace_bytes > 0)
        p->workspace_bytes = capped(l->workspace_bytes, l->workspace_bytes, 1ull << 30);
    p->command_fd = t->fds[0][1];
    p->snapshot_fd = t->fds[1][1];
    p->snapshot_max_bytes = g->max_snapshot;
    p->stdin_fd = t->stdin_pipe[0];
    p->stdout_fd = t->output_pipe[1];
}

/* A task refused before its run, with an audit alert; its TaskOutput has no
 * snapshot (the exfil stage quarantines it, the ledger voids the hold). */
static void refuse(struct task *t, const char *why)
{
    t->g->refused++;
    t->refused = true;
    audit(t, VS__V1__SEVERITY__SEVERITY_ALERT, "refused", "reason", why, "image",
          t->image_digest[0] != '\0' ? t->image_digest : "none");
    log_warnx("task %s refused: %s", t->hex, why);
    t->result.exit_code = -1;
    if (t->image_digest[0] == '\0')
        snprintf(t->image_digest, sizeof t->image_digest, "none");
}

/* A task this launcher cannot take now (no resources): its message goes
 * back to the stream for a later try, here or elsewhere. */
static void abandon(struct task *t)
{
    if (t->handles == 0) {
        task_release(t); /* naks the message */
        return;
    }
    vs_msg_nak(t->m, RETRY_MS);
    t->m = NULL;
    t->snapshot_done = t->output_done = t->ended = true;
    maybe_conclude(t); /* closes the handles, then releases */
}

static int init_handles(struct task *t)
{
    uv_loop_t *loop = vs_daemon_loop(t->g->d);
    if (uv_async_init(loop, &t->wake, on_wake) != 0)
        return -ENOMEM;
    t->wake.data = t;
    t->handles++;
    uv_timer_init(loop, &t->watchdog);
    uv_timer_init(loop, &t->grace);
    t->watchdog.data = t->grace.data = t;
    t->handles += 2;
    uv_pipe_init(loop, &t->channel, 0);
    uv_pipe_init(loop, &t->snapshot_in, 0);
    uv_pipe_init(loop, &t->stdin_out, 0);
    uv_pipe_init(loop, &t->output_in, 0);
    t->channel.data = t->snapshot_in.data = t->stdin_out.data = t->output_in.data = t;
    t->handles += 4;
    t->channel_open = t->snapshot_open = t->stdin_open = t->output_open = true;
    if (uv_pipe_open(&t->channel, t->fds[0][0]) != 0 ||
        uv_pipe_open(&t->snapshot_in, t->fds[1][0]) != 0 ||
        uv_pipe_open(&t->stdin_out, t->stdin_pipe[1]) != 0 ||
        uv_pipe_open(&t->output_in, t->output_pipe[0]) != 0)
        return -EIO;
    /* libuv owns them now */
    t->fds[0][0] = t->fds[1][0] = t->stdin_pipe[1] = t->output_pipe[0] = -1;
    uv_read_start((uv_stream_t *)&t->channel, alloc_buf, on_channel_read);
    uv_read_start((uv_stream_t *)&t->snapshot_in, alloc_buf, on_snapshot_read);
    uv_read_start((uv_stream_t *)&t->output_in, alloc_buf, on_output_read);
    return 0;
}

static int open_payload(struct task *t)
{
    const Vs__V1__SealedPayload *p = t->submit->payload;
    if (p == NULL || p->blob != NULL || p->ciphertext.len < VS_SEAL_OVERHEAD ||
        p->recipient_key_id.len != VS_KEY_ID_LEN ||
        memcmp(p->recipient_key_id.data, t->g->launcher_id, VS_KEY_ID_LEN) != 0)
        return -EINVAL;
    t->payload_len = p->ciphertext.len - VS_SEAL_OVERHEAD;
    t->payload = sodium_malloc(t->payload_len > 0 ? t->payload_len : 1);
    if (t->payload == NULL)
        return -ENOMEM;
    return vs_unseal(t->g->launcher, p->ciphertext.data, p->ciphertext.len, t->payload) == 0
               ? 0 : -EBADMSG;
}

static int on_admitted(vs_msg *m, void *arg)
{
    struct sandboxd *g = arg;
    const Vs__V1__TaskAdmitted *ad = (const Vs__V1__TaskAdmitted *)vs_msg_body(m);
    const Vs__V1__TaskSubmit *s = ad->task;
    if (s == NULL || s->task_id.len != VS_ID_LEN || s->agent == NULL || s->agent[0] == '\0' ||
        !vs_token_valid(s->agent))
        return -EBADMSG; /* no task to answer for: poison */
    struct task *t = calloc(1, sizeof *t);
    if (t == NULL)
        return VS_RETRY;
    t->g = g;
    t->m = vs_msg_hold(m);
    t->submit = s;
    memcpy(t->id, s->task_id.data, VS_ID_LEN);
    vs_hex(t->id, VS_ID_LEN, t->hex);
    snprintf(t->agent, sizeof t->agent, "%s", s->agent);
    t->fds[0][0] = t->fds[0][1] = t->fds[1][0] = t->fds[1][1] = -1;
    t->stdin_pipe[0] = t->stdin_pipe[1] = t->output_pipe[0] = t->output_pipe[1] = -1;
    g->tasks++;
    if (vs_boxkey_new(&t->key) < 0) {
        abandon(t);
        return 0;
    }
    if (open_payload(t) < 0) {
        refuse(t, "the payload does not open with the launcher key");
        Vs__V1__SealedPayload none = VS__V1__SEALED_PAYLOAD__INIT;
        publish_output(t, &none);
        task_release(t);
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t->fds[0]) != 0 ||
        pipe2(t->fds[1], O_CLOEXEC) != 0 || pipe2(t->stdin_pipe, O_CLOEXEC) != 0 ||
        pipe2(t->output_pipe, O_CLOEXEC) != 0 ||
        vs_frame_decoder_new(VS_FRAME_MAX, &t->decoder) != 0 || init_handles(t) != 0) {
        log_warnx("task %s: no resources for a sandbox; will retry", t->hex);
        abandon(t);
        return 0;
    }
    set_policy(t);
    uv_thread_options_t opts = {.flags = UV_THREAD_HAS_STACK_SIZE, .stack_size = THREAD_STACK};
    if (uv_thread_create_ex(&t->thread, &opts, sandbox_thread, t) != 0) {
        log_warnx("task %s: no thread for a sandbox; will retry", t->hex);
        abandon(t);
        return 0;
    }
    t->thread_started = true;
    return 0;
}

/* ---- the daemon ---------------------------------------------------------------- */

static int load_command(struct sandboxd *g, const vs_config *cfg)
{
    size_t n = vs_config_list_len(cfg, "sandboxd.command");
    if (n == 0 || n > MAX_ARGS) {
        log_warnx("sandboxd.command: 1 to %d strings", MAX_ARGS);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if ((g->argv[i] = strdup(vs_config_list_get(cfg, "sandboxd.command", i))) == NULL)
            return -ENOMEM;
    n = vs_config_list_len(cfg, "sandboxd.binds");
    if (n > MAX_BINDS) {
        log_warnx("sandboxd.binds: at most %d", MAX_BINDS);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char *b = strdup(vs_config_list_get(cfg, "sandboxd.binds", i));
        char *colon = b != NULL ? strchr(b, ':') : NULL;
        if (b == NULL || colon == NULL || b[0] != '/' || colon[1] != '/') {
            free(b);
            log_warnx("sandboxd.binds: \"SRC:DST\", both absolute");
            return -EINVAL;
        }
        *colon = '\0';
        g->bind_store[i] = b;
        g->binds[i] = (struct vs_bind){b, colon + 1};
        g->nbinds++;
    }
    return 0;
}

static int load_keys(struct sandboxd *g, const vs_config *cfg)
{
    const char *launcher = vs_config_string(cfg, "sandboxd.launcher_key", NULL);
    int rc = vs_boxkey_load(launcher, &g->launcher);
    if (rc < 0) {
        log_warnx("cannot load the launcher key %s: %s", launcher, strerror(-rc));
        return rc;
    }
    vs_key_id(vs_boxkey_public(g->launcher), VS_BOX_PUBLICKEY_LEN, g->launcher_id);
    const char *node = vs_config_string(cfg, "sandboxd.node_key", NULL);
    if ((rc = vs_signkey_load(node, &g->node)) < 0) {
        log_warnx("cannot load the node key %s: %s", node, strerror(-rc));
        return rc;
    }
    if ((rc = parse_hex_key(vs_config_string(cfg, "sandboxd.scanner_key", NULL), g->scanner_pk,
                            "sandboxd.scanner_key")) < 0)
        return rc;
    const char *egress = vs_config_string(cfg, "sandboxd.egress_key", NULL);
    g->have_egress = egress != NULL;
    if (egress != NULL && (rc = parse_hex_key(egress, g->egress_pk, "sandboxd.egress_key")) < 0)
        return rc;
    size_t n = vs_config_list_len(cfg, "sandboxd.trusted_keys");
    g->trusted = calloc(n + 1, sizeof *g->trusted);
    if (g->trusted == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *path = vs_config_list_get(cfg, "sandboxd.trusted_keys", i);
        if ((rc = vs_minisign_key_load(path, &g->trusted[i])) < 0) {
            log_warnx("sandboxd.trusted_keys: %s: %s", path, strerror(-rc));
            return rc;
        }
        g->ntrusted++;
    }
    g->images = vs_config_string(cfg, "sandboxd.images", NULL);
    const char *cache = vs_config_string(cfg, "sandboxd.image_cache", NULL);
    if (cache != NULL)
        snprintf(g->image_cache, sizeof g->image_cache, "%s", cache);
    else if (g->images != NULL)
        snprintf(g->image_cache, sizeof g->image_cache, "%s/.cache", g->images);
    if (g->image_cache[0] != '\0') {
        /* 0755 whatever our umask: the sandboxes' uids read the trees in it */
        int made = mkdir(g->image_cache, 0755);
        if ((made == 0 && chmod(g->image_cache, 0755) < 0) || (made < 0 && errno != EEXIST)) {
            log_warnx("cannot make the image cache %s: %s", g->image_cache, strerror(errno));
            return -errno;
        }
    }
    const char *backend = vs_config_string(cfg, "sandboxd.backend", "native");
    if (strcmp(backend, "podman") == 0) {
        g->podman = true;
    } else if (strcmp(backend, "native") != 0) {
        log_warnx("sandboxd.backend: native or podman, not %s", backend);
        return -EINVAL;
    }
    return 0;
}

/* SHA-256 of this program's binary, for attestations. */
static int hash_self(uint8_t out[32])
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint8_t buf[64 * 1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        crypto_hash_sha256_update(&st, buf, (size_t)n);
    close(fd);
    crypto_hash_sha256_final(&st, out);
    return n < 0 ? -EIO : 0;
}

static int sandboxd_open(vs_daemon *d)
{
    struct sandboxd *g = &g_sandboxd;
    g->d = d;
    vs_daemon_set_data(d, g);
    const vs_config *cfg = vs_daemon_config(d);
    int rc;
    if ((rc = load_keys(g, cfg)) < 0 || (rc = load_command(g, cfg)) < 0 ||
        (rc = hash_self(g->launcher_hash)) < 0)
        return rc;
    int64_t max_tasks = vs_config_int(cfg, "sandboxd.max_tasks", 4);
    if (max_tasks < 1 || max_tasks > 1024) {
        log_warnx("sandboxd.max_tasks must be 1..1024");
        return -EINVAL;
    }
    g->max_tasks = (size_t)max_tasks;
    g->ack_wait_ms = vs_config_duration_ms(cfg, "sandboxd.ack_wait", 30000);
    g->heartbeat_ms = vs_config_duration_ms(cfg, "sandboxd.heartbeat_timeout", 10000);
    g->grace_ms = vs_config_duration_ms(cfg, "sandboxd.complete_grace", 2000);
    g->max_wall_ms = vs_config_duration_ms(cfg, "sandboxd.max_wall_time", 600000);
    g->max_memory = vs_config_size(cfg, "sandboxd.max_memory", 1ull << 30);
    g->default_memory = vs_config_size(cfg, "sandboxd.default_memory", 256ull << 20);
    g->max_snapshot = vs_config_size(cfg, "sandboxd.max_snapshot", 64ull << 20);
    return 0;
}

static int sandboxd_start(vs_daemon *d)
{
    struct sandboxd *g = vs_daemon_data(d);
    const struct vs_consumer_def def = {
        .stream = "TASKS", .durable = "sandboxd", .filter_subject = "vs.task.admitted",
        .ack_wait_ms = g->ack_wait_ms, .max_ack_pending = (int64_t)g->max_tasks,
        .nak_delay_ms = RETRY_MS};
    return vs_js_consume(vs_daemon_bus(d), &def, &vs__v1__task_admitted__descriptor, on_admitted,
                         g, &g->admitted);
}

static void sandboxd_stop(vs_daemon *d)
{
    struct sandboxd *g = vs_daemon_data(d);
    vs_consumer_free(g->admitted);
    g->admitted = NULL;
}

static bool sandboxd_idle(vs_daemon *d)
{
    const struct sandboxd *g = vs_daemon_data(d);
    return g->tasks == 0;
}

static void sandboxd_close(vs_daemon *d)
{
    struct sandboxd *g = vs_daemon_data(d);
    if (g == NULL)
        return;
    /* Past shutdown_timeout the running tasks are not finished here: their
     * messages are redelivered to another launcher. The sandboxes die with
     * this process (PR_SET_PDEATHSIG of their init). */
    for (size_t i = 0; g->argv[i] != NULL; i++)
        free(g->argv[i]);
    for (size_t i = 0; i < g->nbinds; i++)
        free(g->bind_store[i]);
    free(g->trusted);
    vs_signkey_free(g->node);
    vs_boxkey_free(g->launcher);
}

static void sandboxd_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct sandboxd *g = vs_daemon_data(d);
    add(ctx, "running", g->tasks);
    add(ctx, "launched", g->launched);
    add(ctx, "completed", g->completed);
    add(ctx, "killed", g->killed);
    add(ctx, "refused", g->refused);
    add(ctx, "commands", g->commands);
    add(ctx, "heartbeats", g->heartbeats);
    add(ctx, "invalid_frames", g->invalid_frames);
}

int main(int argc, char **argv)
{
    static const struct vs_daemon_def def = {
        .component = COMPONENT,
        .summary = "the launcher: vs.task.admitted -> a sandboxed agent -> vs.task.output",
        .config = sandboxd_keys,
        .no_filter_reason = "sandboxes inherit a launcher's filter, and each gets its own preset;"
                            " a filter that let the launcher clone, mount and exec would not"
                            " narrow it (privilege separation into a filtered bus process and"
                            " an unfiltered launcher process is the way to one)",
        .open = sandboxd_open,
        .start = sandboxd_start,
        .stop = sandboxd_stop,
        .idle = sandboxd_idle,
        .close = sandboxd_close,
        .counters = sandboxd_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
