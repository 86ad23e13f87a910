/*
 * test_auditd.c - vs-auditd as a real process against a real nats-server,
 * with vsctl as the operator runs it:
 *  - every event is stored exactly once although the daemon is killed
 *    with SIGKILL while events stream in, and restarted (size == the
 *    AUDIT stream's message count, no event id twice); Seccomp: 2;
 *  - a message deleted from the stream before auditd read it is skipped
 *    with a "stream_gap" event instead of stopping the log;
 *  - checkpoints published on vs.checkpoint.audit verify with the vkey;
 *    inclusion and consistency proofs served over the bus verify against
 *    signed roots (here and through `vsctl audit prove`);
 *  - `vsctl audit backup` of the live store verifies offline, a copy
 *    modified with raw bytes in LMDB's file fails naming the sequence, and
 *    a checkpoint signed by a wrong key is rejected;
 *  - query by agent with pagination (bus and vsctl);
 *  - export -> import-check round trip, a modified or deleted line named;
 *  - key rotation: one co-signed checkpoint chains trust, then the new key.
 * Each test has its own server and scratch directory; every wait is
 * bounded, every process reaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "busfix.h"
#include "daemon.h"
#include "vs/audit.h"
#include "vs/audit_codec.h"
#include "vs/audit_store.h"
#include "vs/checkpoint.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/sys.pb-c.h"

#define MAX_CPS 256

struct fixture {
    struct vs_busfix base;
    char *dir;
    char store[256], key[256], key2[256];
    char vkey[VS_VKEY_MAX], vkey2[VS_VKEY_MAX];
    struct vs_daemon auditd;
    struct vs_vsctl vsctl;
    vs_sub *cp_sub;
    char *cps[MAX_CPS];           /* notes seen on vs.checkpoint.audit */
    uint64_t cp_sizes[MAX_CPS];
    size_t ncps;
};

/* ---- fixture ------------------------------------------------------------------------ */

static void make_key(const char *path, char *vkey)
{
    vs_signkey *k = NULL;
    assert_int_equal(vs_signkey_new(&k), 0);
    assert_int_equal(vs_signkey_save(k, path), 0);
    assert_true(vs_vkey_format("vibeshield/audit", vs_signkey_public(k), vkey, VS_VKEY_MAX) > 0);
    vs_signkey_free(k);
}

static int on_checkpoint(vs_msg *m, void *arg)
{
    struct fixture *f = arg;
    const Vs__V1__Checkpoint *cp = (const Vs__V1__Checkpoint *)vs_msg_body(m);
    if (f->ncps < MAX_CPS) {
        f->cps[f->ncps] = strndup((const char *)cp->note.data, cp->note.len);
        f->cp_sizes[f->ncps++] = cp->tree_size;
    }
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vs_busfix_init(&f->base, 0);
    f->dir = vs_scratch_dir("vs-auditd");
    assert_non_null(f->dir);
    snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/audit.key", f->dir);
    snprintf(f->key2, sizeof(f->key2), "%s/audit2.key", f->dir);
    vs_daemon_init(&f->auditd, VS_AUDITD_BIN, f->dir, "auditd");
    f->vsctl = (struct vs_vsctl){.bin = VS_VSCTL_BIN, .state = f->dir, .url = f->base.nats.url,
                                 .scratch = f->dir, .bus = f->base.bus};
    make_key(f->key, f->vkey);
    make_key(f->key2, f->vkey2);
    assert_int_equal(vs_bus_subscribe(f->base.bus, "vs.checkpoint.audit", NULL,
                                      &vs__v1__checkpoint__descriptor, on_checkpoint, f,
                                      &f->cp_sub),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    vs_daemon_kill(&f->auditd);
    vs_sub_free(f->cp_sub);
    vs_busfix_fini(&f->base);
    for (size_t i = 0; i < f->ncps; i++)
        free(f->cps[i]);
    vs_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void idle(struct fixture *f, uint64_t ms)
{
    vs_test_idle(f->base.bus, ms);
}

/* The daemon's configuration with the auditd lines of `extra` (each
 * indented by two spaces, newline-terminated). */
static void config(struct fixture *f, const char *extra)
{
    assert_int_equal(vs_write_file(f->auditd.cfg,
                                   "nats:\n  url: %s\nlog:\n  level: debug\nshutdown_timeout: 5s\n"
                                   "auditd:\n  store: %s\n  key: %s\n  ack_wait: 2s\n%s",
                                   f->base.nats.url, f->store, f->key, extra != NULL ? extra : ""),
                     0);
}

/* ---- requests ------------------------------------------------------------------------- */

/* A request; the reply (owned by the caller) or NULL on error/timeout. */
static ProtobufCMessage *ask(struct fixture *f, const char *subject, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *desc)
{
    return vs_test_request(f->base.bus, subject, req, desc, 2000, NULL);
}

static Vs__V1__AuditProofReply *prove(struct fixture *f, Vs__V1__AuditProofKind kind,
                                      uint64_t index, uint64_t size1, uint64_t size2)
{
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = kind;
    req.index = index;
    req.size1 = size1;
    req.size2 = size2;
    return (Vs__V1__AuditProofReply *)ask(f, "vs.auditlog.prove", &req.base,
                                          &vs__v1__audit_proof_reply__descriptor);
}

/* The log's current size, or -1 when auditd does not answer. */
static int64_t log_size(struct fixture *f)
{
    Vs__V1__AuditProofReply *r = prove(f, VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD, 0, 0, 0);
    if (r == NULL)
        return -1;
    int64_t n = r->status != NULL && r->status->code == VS__V1__STATUS_CODE__STATUS_OK
                    ? (int64_t)r->tree_size
                    : -1;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return n;
}

static uint64_t counter(struct fixture *f, const char *name)
{
    uint64_t v;
    assert_int_equal(vs_test_counters(f->base.bus, "auditd", &name, &v, 1, 2000), 1);
    return v;
}

/* Messages in the AUDIT stream. */
static uint64_t stream_msgs(struct fixture *f)
{
    return (uint64_t)vs_test_stream_count(f->base.bus, "AUDIT", NULL);
}

/* ---- processes -------------------------------------------------------------------------- */

/* Ready: it answers the log's HEAD. */
static bool auditd_ready(struct vs_daemon *d, void *arg)
{
    (void)d;
    return log_size(arg) >= 0;
}

/* Write the configuration (with extra) and start vs-auditd. */
static pid_t start_auditd(struct fixture *f, const char *extra)
{
    config(f, extra);
    vs_daemon_start(&f->auditd, f->base.bus, auditd_ready, f, 10000, 100);
    return f->auditd.pid;
}

static void stop_auditd(struct fixture *f)
{
    vs_daemon_stop_clean(&f->auditd, 8000);
}

#define VSCTL_TIMEOUT_MS 30000
/* Run vsctl (with the fixture's --url and --state) on the arguments. */
#define VSCTL(f, r, ...)                                                                           \
    vs_vsctl_run(&(f)->vsctl, (r), VSCTL_TIMEOUT_MS, NULL, VS_ARGS(__VA_ARGS__))
/* The same with its stdout into out_path. */
#define VSCTL_TO(f, r, out_path, ...)                                                              \
    vs_vsctl_run(&(f)->vsctl, (r), VSCTL_TIMEOUT_MS, (out_path), VS_ARGS(__VA_ARGS__))
/* Expecting exit status `status` and (when not NULL) `needle` in its stdout. */
#define VSCTL_EXPECT(f, status, needle, ...)                                                       \
    vs_vsctl_check(&(f)->vsctl, VSCTL_TIMEOUT_MS, (status), (needle), VS_ARGS(__VA_ARGS__))

/* ---- events --------------------------------------------------------------------------- */

struct acks {
    uint64_t ok, failed;
};

static void on_ack(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct acks *a = arg;
    if (status == 0)
        a->ok++;
    else
        a->failed++;
}

/* Emit n events (agent, category, detail i=<k>) without waiting. */
static void emit_async(struct fixture *f, uint64_t n, const char *agent, const char *category,
                       const char *detail_value, struct acks *a)
{
    for (uint64_t i = 0; i < n; i++) {
        char num[24];
        snprintf(num, sizeof(num), "%" PRIu64, i);
        const char *details[] = {"i", num, "note", detail_value != NULL ? detail_value : "-"};
        assert_int_equal(vs_audit_emitv(f->base.bus, category, VS__V1__SEVERITY__SEVERITY_INFO,
                                        agent, NULL, "test_event", details, 2, on_ack, a, NULL),
                         0);
    }
}

static void wait_acks(struct fixture *f, struct acks *a, uint64_t n)
{
    for (int w = 0; w < 1000 && a->ok + a->failed < n; w++)
        idle(f, 10);
    assert_int_equal(a->failed, 0);
    assert_int_equal(a->ok, n);
}

/* Emit n events and wait for the stream's acks. */
static void emit(struct fixture *f, uint64_t n, const char *agent, const char *category,
                 const char *detail_value)
{
    struct acks a = {0};
    emit_async(f, n, agent, category, detail_value, &a);
    wait_acks(f, &a, n);
}

/* Wait until the log has want entries (and stays there). */
static void wait_size(struct fixture *f, int64_t want, int timeout_ms)
{
    int64_t n = -1;
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        n = log_size(f);
        if (n == want)
            break;
        idle(f, 100);
    }
    if (n != want) {
        vs_daemon_dump_log(&f->auditd);
        fail_msg("the log has %" PRId64 " entries, expected %" PRId64, n, want);
    }
}

/* Wait for a checkpoint at least this large on vs.checkpoint.audit. */
static const char *wait_checkpoint(struct fixture *f, uint64_t at_least, uint64_t *size)
{
    for (int waited = 0; waited < 15000; waited += 50) {
        for (size_t i = f->ncps; i-- > 0;)
            if (f->cp_sizes[i] >= at_least) {
                *size = f->cp_sizes[i];
                return f->cps[i];
            }
        idle(f, 50);
    }
    fail_msg("no checkpoint of size >= %" PRIu64, at_least);
    return NULL;
}

/* All entries of one agent through vs.auditlog.query, page by page. */
static size_t query_agent(struct fixture *f, const char *agent, uint32_t page, char ***ids_out)
{
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.agent = (char *)agent;
    req.limit = page;
    size_t n = 0, cap = 0;
    char **ids = NULL;
    uint64_t last_seq = 0;
    for (int pages = 0; pages < 100000; pages++) {
        Vs__V1__AuditQueryReply *r = (Vs__V1__AuditQueryReply *)ask(
            f, "vs.auditlog.query", &req.base, &vs__v1__audit_query_reply__descriptor);
        assert_non_null(r);
        assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_OK);
        assert_true(r->n_records <= page);
        for (size_t i = 0; i < r->n_records; i++) {
            Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, r->records[i]->event.len,
                                                                 r->records[i]->event.data);
            assert_non_null(ev);
            assert_string_equal(ev->agent, agent);
            if (n > 0)
                assert_true(r->records[i]->seq > last_seq); /* log order */
            last_seq = r->records[i]->seq;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                ids = realloc(ids, cap * sizeof(*ids));
            }
            char hex[VS_ID_HEX_LEN];
            vs_hex(ev->event_id.data, VS_ID_LEN, hex);
            ids[n++] = strdup(hex);
            vs__v1__audit_event__free_unpacked(ev, NULL);
        }
        uint64_t next = r->next_after_seq;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (next == 0)
            break;
        req.after_seq = next;
    }
    *ids_out = ids;
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_exactly_once_across_sigkill(void **state)
{
    struct fixture *f = *state;
    pid_t pid = start_auditd(f, NULL);
    char v[64];
    assert_int_equal(vs_proc_status_field(pid, "Seccomp", v, sizeof(v)), 0);
    assert_string_equal(v, "2");
    assert_int_equal(vs_proc_status_field(pid, "NoNewPrivs", v, sizeof(v)), 0);
    assert_string_equal(v, "1");

    /* Events keep coming; auditd dies with SIGKILL while it consumes them
     * (deliveries in flight, held, unacked), more arrive while it is down. */
    const uint64_t chunk = 100, chunks = 40;
    struct acks a = {0};
    bool killed = false;
    for (uint64_t c = 0; c < chunks; c++) {
        emit_async(f, chunk, "load", "test", NULL, &a);
        idle(f, 2);
        if (!killed && c >= 5 && log_size(f) > 100) {
            vs_daemon_kill(&f->auditd);
            killed = true;
        }
    }
    wait_acks(f, &a, chunk * chunks);
    assert_true(killed);
    start_auditd(f, NULL);
    uint64_t in_stream = stream_msgs(f);
    /* The stream holds our 4000 events plus the daemon's own (started...). */
    assert_true(in_stream >= chunk * chunks);
    wait_size(f, (int64_t)in_stream, 30000);
    idle(f, 2500); /* redeliveries after the ack wait must change nothing */
    /* How the kill landed (timing, so informative only): deliveries that
     * were in flight are read from the stream, their redeliveries ignored. */
    print_message("[ INFO     ] after the restart: %" PRIu64 " holes filled from the stream, %" PRIu64
                  " redeliveries ignored\n",
                  counter(f, "gaps_filled"), counter(f, "duplicates"));
    assert_int_equal(log_size(f), (int64_t)stream_msgs(f));

    char **ids = NULL;
    size_t n = query_agent(f, "load", 1000, &ids);
    assert_int_equal(n, chunk * chunks);
    qsort(ids, n, sizeof(*ids), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("event %s stored twice", ids[i]);
    free_ids(ids, n);
}

static void test_deleted_stream_message_is_skipped(void **state)
{
    struct fixture *f = *state;
    /* Events stored in the stream before auditd ever runs; one of them is
     * deleted (AUDIT allows it): auditd must not wait for it forever. */
    emit(f, 10, "gap", "test", NULL);
    json_t *j = vs_test_js_api(f->base.bus, "$JS.API.STREAM.MSG.DELETE.AUDIT", "{\"seq\":5}");
    assert_true(json_is_true(json_object_get(j, "success")));
    json_decref(j);
    start_auditd(f, NULL);
    /* 9 events, auditd's "started", and its "stream_gap" warning. */
    wait_size(f, 11, 15000);
    assert_int_equal(counter(f, "gaps_skipped"), 1);
    char **ids = NULL;
    size_t n = query_agent(f, "gap", 100, &ids);
    assert_int_equal(n, 9);
    free_ids(ids, n);
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.category = "auditd";
    Vs__V1__AuditQueryReply *r = (Vs__V1__AuditQueryReply *)ask(
        f, "vs.auditlog.query", &req.base, &vs__v1__audit_query_reply__descriptor);
    assert_non_null(r);
    assert_int_equal(r->n_records, 1);
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, r->records[0]->event.len,
                                                         r->records[0]->event.data);
    assert_string_equal(ev->event, "stream_gap");
    assert_int_equal(ev->severity, VS__V1__SEVERITY__SEVERITY_WARNING);
    vs__v1__audit_event__free_unpacked(ev, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void parse_vkey(const char *text, struct vs_vkey *v)
{
    assert_int_equal(vs_vkey_parse(text, v), 0);
}

static void copy_hashes(const Vs__V1__AuditProofReply *r, uint8_t out[][VS_HASH_LEN])
{
    assert_true(r->n_hashes <= VS_AUDIT_MAX_PROOF);
    for (size_t i = 0; i < r->n_hashes; i++) {
        assert_int_equal(r->hashes[i].len, VS_HASH_LEN);
        memcpy(out[i], r->hashes[i].data, VS_HASH_LEN);
    }
}

static void test_checkpoints_and_proofs(void **state)
{
    struct fixture *f = *state;
    start_auditd(f, "  checkpoint_every: 10\n  checkpoint_interval: 1s\n");
    struct vs_vkey v, wrong;
    parse_vkey(f->vkey, &v);
    parse_vkey(f->vkey2, &wrong);

    emit(f, 12, "prover", "test", NULL);
    uint64_t s1 = 0, s2 = 0;
    const char *n1 = wait_checkpoint(f, 10, &s1);
    struct vs_checkpoint c1, c2;
    assert_int_equal(vs_checkpoint_open(n1, strlen(n1), "vibeshield/audit", &v, 1, &c1, NULL), 0);
    assert_int_equal(c1.size, s1);
    /* Someone else's key does not vouch for it. */
    assert_int_equal(vs_checkpoint_open(n1, strlen(n1), NULL, &wrong, 1, NULL, NULL), -ENOKEY);

    emit(f, 20, "prover", "test", NULL);
    const char *n2 = wait_checkpoint(f, s1 + 20, &s2);
    assert_int_equal(vs_checkpoint_open(n2, strlen(n2), "vibeshield/audit", &v, 1, &c2, NULL), 0);
    assert_true(s2 > s1);

    /* Consistency between the two signed roots, proof from the bus. */
    Vs__V1__AuditProofReply *r =
        prove(f, VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_CONSISTENCY, 0, s1, s2);
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_OK);
    uint8_t hashes[VS_AUDIT_MAX_PROOF][VS_HASH_LEN];
    copy_hashes(r, hashes);
    assert_int_equal(vs_merkle_verify_consistency(s1, s2, c1.root, c2.root,
                                                  (const uint8_t(*)[VS_HASH_LEN])hashes,
                                                  r->n_hashes),
                     0);
    /* The same proof does not connect the old root to a different one. */
    uint8_t other[VS_HASH_LEN];
    memcpy(other, c2.root, VS_HASH_LEN);
    other[0] ^= 1;
    assert_int_not_equal(vs_merkle_verify_consistency(s1, s2, c1.root, other,
                                                      (const uint8_t(*)[VS_HASH_LEN])hashes,
                                                      r->n_hashes),
                         0);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* Inclusion of entry 3 in the signed tree of size s2; the leaf is
     * recomputed from the entry bytes the reply carries. */
    r = prove(f, VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_INCLUSION, 3, 0, s2);
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_OK);
    assert_int_equal(r->tree_size, s2);
    uint8_t leaf[VS_HASH_LEN];
    vs_audit_codec_leaf_hash(r->entry.data, r->entry.len, leaf);
    assert_memory_equal(leaf, r->leaf_hash.data, VS_HASH_LEN);
    copy_hashes(r, hashes);
    assert_int_equal(vs_merkle_verify_inclusion(leaf, 3, s2, (const uint8_t(*)[VS_HASH_LEN])hashes,
                                                r->n_hashes, c2.root),
                     0);
    assert_int_not_equal(vs_merkle_verify_inclusion(leaf, 4, s2,
                                                    (const uint8_t(*)[VS_HASH_LEN])hashes,
                                                    r->n_hashes, c2.root),
                         0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* Out of range: INVALID, and auditd keeps serving. */
    r = prove(f, VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_INCLUSION, 1000000, 0, 0);
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_INVALID);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* The same through vsctl, which verifies locally. */
    char size1[24], size2[24];
    snprintf(size1, sizeof(size1), "%" PRIu64, s1);
    snprintf(size2, sizeof(size2), "%" PRIu64, s2);
    VSCTL_EXPECT(f, 0, "ok: entry 3", "audit", "prove", "--index", "3", "--size", size2, "--vkey",
                 f->vkey);
    VSCTL_EXPECT(f, 0, "is a prefix of", "audit", "prove", "--consistency", size1, size2, "--vkey",
                 f->vkey);
    /* Trusting the wrong key: refused. */
    VSCTL_EXPECT(f, 1, NULL, "audit", "prove", "--index", "3", "--vkey", f->vkey2);
    /* Online verify twice: the second proves consistency with the first. */
    VSCTL_EXPECT(f, 0, "first one seen", "audit", "verify", "--vkey", f->vkey);
    emit(f, 15, "prover", "test", NULL);
    uint64_t s3;
    wait_checkpoint(f, s2 + 15, &s3);
    VSCTL_EXPECT(f, 0, "consistent with the one at size", "audit", "verify", "--vkey", f->vkey);
    VSCTL_EXPECT(f, 1, "not signed by any trusted key", "audit", "verify", "--vkey", f->vkey2);
    /* `vsctl keys` shows what auditd published, and the key file's vkey. */
    VSCTL_EXPECT(f, 0, f->vkey, "keys");
    VSCTL_EXPECT(f, 0, f->vkey, "keys", "--key", f->key);
}

/* Find needle in the file and change its first byte in place. */
static void patch_file(const char *path, const char *needle)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    uint8_t *hit = memmem(p, (size_t)st.st_size, needle, strlen(needle));
    assert_non_null(hit);
    assert_null(memmem(hit + 1, (size_t)st.st_size - (size_t)(hit + 1 - p), needle,
                       strlen(needle))); /* only one copy: the entry itself */
    hit[0] ^= 0x01;
    assert_int_equal(msync(p, (size_t)st.st_size, MS_SYNC), 0);
    munmap(p, (size_t)st.st_size);
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "cp -a '%s' '%s'", from, to) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_backup_verify_tamper_wrong_key(void **state)
{
    struct fixture *f = *state;
    start_auditd(f, "  checkpoint_interval: 1s\n");
    emit(f, 20, "bk", "test", NULL);
    emit(f, 1, "bk", "test", "tamper-me-7f3a9c");
    emit(f, 20, "bk", "test", NULL);
    int64_t size = log_size(f);
    uint64_t cps;
    wait_checkpoint(f, (uint64_t)size, &cps);

    /* Backup while auditd runs (read-only handle), verify it offline. */
    char bk[300], tampered[300], wrongkey[300], data[320];
    snprintf(bk, sizeof(bk), "%s/backup", f->dir);
    snprintf(tampered, sizeof(tampered), "%s/tampered", f->dir);
    snprintf(wrongkey, sizeof(wrongkey), "%s/wrongkey", f->dir);
    struct vs_run run;
    VSCTL_EXPECT(f, 0, NULL, "audit", "backup", "--store", f->store, "--to", bk);
    VSCTL_EXPECT(f, 0, "ok: ", "audit", "verify", "--store", bk, "--vkey", f->vkey);

    /* Which sequence holds the event to be tampered with. */
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.agent = "bk";
    req.limit = 100;
    Vs__V1__AuditQueryReply *q = (Vs__V1__AuditQueryReply *)ask(
        f, "vs.auditlog.query", &req.base, &vs__v1__audit_query_reply__descriptor);
    assert_non_null(q);
    uint64_t target = UINT64_MAX;
    for (size_t i = 0; i < q->n_records; i++)
        if (memmem(q->records[i]->event.data, q->records[i]->event.len, "tamper-me-7f3a9c", 16))
            target = q->records[i]->seq;
    protobuf_c_message_free_unpacked(&q->base, NULL);
    assert_true(target != UINT64_MAX);

    /* Raw bytes changed inside LMDB's file: verify names that entry. */
    assert_int_equal(mkdir(tampered, 0700), 0);
    snprintf(data, sizeof(data), "%s/data.mdb", bk);
    char to[340];
    snprintf(to, sizeof(to), "%s/data.mdb", tampered);
    copy_file(data, to);
    patch_file(to, "tamper-me-7f3a9c");
    VSCTL(f, &run, "audit", "verify", "--store", tampered, "--vkey", f->vkey);
    assert_int_equal(run.status, 1);
    char want[64];
    snprintf(want, sizeof(want), "entry %" PRIu64 " does not check out", target);
    if (strstr(run.out, want) == NULL)
        fail_msg("expected '%s', got: %s%s", want, run.out, run.err);
    vs_run_free(&run);

    /* A copy whose last checkpoint is replaced by one signed with another
     * key (same size, same root: only the signature is wrong). */
    assert_int_equal(mkdir(wrongkey, 0700), 0);
    snprintf(to, sizeof(to), "%s/data.mdb", wrongkey);
    copy_file(data, to);
    struct vs_audit_store_opts o = {.path = wrongkey};
    vs_audit_store *s = NULL;
    assert_int_equal(vs_audit_store_open(&o, &s), 0);
    char *note = NULL;
    uint64_t at = 0;
    assert_int_equal(vs_audit_store_last_checkpoint(s, &note, &at), 0);
    struct vs_checkpoint c;
    size_t text_len = 0;
    assert_int_equal(vs_note_parse(note, strlen(note), &text_len, NULL, 0, NULL), 0);
    assert_int_equal(vs_checkpoint_parse_text(note, text_len, &c), 0);
    free(note);
    vs_signkey *k2 = NULL;
    assert_int_equal(vs_signkey_load(f->key2, &k2), 0);
    struct vs_note_signer signer = {"vibeshield/audit", k2};
    size_t len = 0;
    assert_int_equal(vs_checkpoint_sign(&c, &signer, 1, &note, &len), 0);
    assert_int_equal(vs_audit_store_put_checkpoint(s, at, note, len), 0);
    free(note);
    vs_signkey_free(k2);
    vs_audit_store_close(s);
    VSCTL_EXPECT(f, 1, "not signed by any trusted key", "audit", "verify", "--store", wrongkey,
                 "--vkey", f->vkey);
    /* The live store still verifies. */
    VSCTL_EXPECT(f, 0, NULL, "audit", "verify", "--store", f->store, "--vkey", f->vkey);
}

static void test_query_pagination(void **state)
{
    struct fixture *f = *state;
    start_auditd(f, NULL);
    emit(f, 30, "pager", "test", NULL);
    emit(f, 10, "other", "misc", NULL);
    emit(f, 5, "pager", "misc", NULL);
    wait_size(f, 46, 10000); /* + auditd's "started" */
    char **ids = NULL;
    size_t n = query_agent(f, "pager", 7, &ids); /* 7 pages of at most 7 */
    assert_int_equal(n, 35);
    free_ids(ids, n);
    n = query_agent(f, "nobody", 7, &ids);
    assert_int_equal(n, 0);
    free(ids);

    /* Category and agent together. */
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.agent = "pager";
    req.category = "misc";
    Vs__V1__AuditQueryReply *r = (Vs__V1__AuditQueryReply *)ask(
        f, "vs.auditlog.query", &req.base, &vs__v1__audit_query_reply__descriptor);
    assert_non_null(r);
    assert_int_equal(r->n_records, 5);
    assert_int_equal(r->next_after_seq, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* A bad filter is INVALID. */
    uint8_t short_id[3] = {1, 2, 3};
    req.task_id = (ProtobufCBinaryData){sizeof(short_id), short_id};
    r = (Vs__V1__AuditQueryReply *)ask(f, "vs.auditlog.query", &req.base,
                                       &vs__v1__audit_query_reply__descriptor);
    assert_non_null(r);
    assert_int_equal(r->status->code, VS__V1__STATUS_CODE__STATUS_INVALID);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* vsctl: a limit, and where to continue. */
    struct vs_run run;
    VSCTL(f, &run, "audit", "query", "--agent", "pager", "--limit", "12");
    assert_int_equal(run.status, 0);
    int lines = 0;
    for (const char *p = run.out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 12);
    assert_non_null(strstr(run.err, "--after"));
    vs_run_free(&run);
    VSCTL_EXPECT(f, 0, "\"agent\":\"pager\"", "audit", "query", "--agent", "pager", "--category",
                 "misc", "--json");
}

/* Replace the first occurrence of from with to (same length) in a file. */
static void edit_text(const char *path, const char *from, const char *to)
{
    char *text = vs_slurp(path);
    char *hit = strstr(text, from);
    assert_non_null(hit);
    memcpy(hit, to, strlen(to));
    assert_int_equal(vs_write_file(path, "%s", text), 0);
    free(text);
}

static void test_export_import_check(void **state)
{
    struct fixture *f = *state;
    start_auditd(f, "  checkpoint_interval: 1s\n");
    emit(f, 25, "exp", "test", "value-to-edit");
    int64_t size = log_size(f);
    uint64_t cps;
    const char *note = wait_checkpoint(f, (uint64_t)size, &cps);
    struct vs_vkey v;
    parse_vkey(f->vkey, &v);
    struct vs_checkpoint c;
    assert_int_equal(vs_checkpoint_open(note, strlen(note), NULL, &v, 1, &c, NULL), 0);

    char path[300], online[300];
    snprintf(path, sizeof(path), "%s/export.jsonl", f->dir);
    snprintf(online, sizeof(online), "%s/online.jsonl", f->dir);
    struct vs_run run;
    VSCTL_TO(f, &run, path, "audit", "export", "--jsonl", "--store", f->store);
    assert_int_equal(run.status, 0);
    vs_run_free(&run);
    VSCTL_TO(f, &run, online, "audit", "export", "--jsonl");
    assert_int_equal(run.status, 0);
    vs_run_free(&run);
    /* Online (over the bus) and offline exports agree up to the checkpoint. */
    char *a = vs_slurp(path), *b = vs_slurp(online);
    assert_true(strlen(a) > 0);
    assert_int_equal(strncmp(a, b, strlen(a) < strlen(b) ? strlen(a) : strlen(b)), 0);
    free(a);
    free(b);

    VSCTL(f, &run, "audit", "import-check", path);
    if (run.status != 0)
        fail_msg("import-check: %s%s", run.out, run.err);
    /* The root recomputed from the export is the signed one (when the
     * export ends at the checkpoint). */
    char b64[64], want[128];
    sodium_bin2base64(b64, sizeof(b64), c.root, VS_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
    snprintf(want, sizeof(want), "Merkle root at size %" PRIu64 ": %s", c.size, b64);
    if ((int64_t)c.size == size && strstr(run.out, want) == NULL)
        fail_msg("expected '%s' in: %s", want, run.out);
    vs_run_free(&run);

    /* A modified event (the JSON rendering) is named by line. */
    char edited[300];
    snprintf(edited, sizeof(edited), "%s/edited.jsonl", f->dir);
    copy_file(path, edited);
    edit_text(edited, "value-to-edit", "value-TO-edit");
    VSCTL_EXPECT(f, 1, "FAIL: line 2 (seq 1)", "audit", "import-check", edited);

    /* A deleted line breaks the sequence. */
    char cut[300];
    snprintf(cut, sizeof(cut), "%s/cut.jsonl", f->dir);
    char *text = vs_slurp(path);
    char *l3 = strchr(strchr(strchr(text, '\n') + 1, '\n') + 1, '\n') + 1; /* line 4 */
    char *l4end = strchr(l3, '\n') + 1;
    memmove(l3, l4end, strlen(l4end) + 1);
    assert_int_equal(vs_write_file(cut, "%s", text), 0);
    free(text);
    VSCTL_EXPECT(f, 1, "FAIL: line 4", "audit", "import-check", cut);

    /* Entry bytes changed (base64 still valid): the chain hash catches it. */
    char bytes[300];
    snprintf(bytes, sizeof(bytes), "%s/bytes.jsonl", f->dir);
    copy_file(path, bytes);
    text = vs_slurp(bytes);
    char *entry = strstr(strstr(strchr(text, '\n') + 1, "\"entry\":\"") + 9, "\"") - 8;
    *entry = *entry == 'A' ? 'B' : 'A';
    assert_int_equal(vs_write_file(bytes, "%s", text), 0);
    free(text);
    VSCTL_EXPECT(f, 1, "FAIL: line 2", "audit", "import-check", bytes);
}

static void test_key_rotation(void **state)
{
    struct fixture *f = *state;
    struct vs_vkey old_key, new_key;
    parse_vkey(f->vkey, &old_key);
    parse_vkey(f->vkey2, &new_key);
    start_auditd(f, "  checkpoint_interval: 1s\n");
    emit(f, 5, "rot", "test", NULL);
    uint64_t s0;
    wait_checkpoint(f, 6, &s0);
    stop_auditd(f);

    char extra[400];
    snprintf(extra, sizeof(extra), "  checkpoint_interval: 1s\n  next_key: %s\n", f->key2);
    start_auditd(f, extra);
    /* The rotation is an audited event naming both key hashes. */
    uint64_t s1;
    const char *co = wait_checkpoint(f, s0 + 2, &s1); /* "stopped", "started", "key_rotated" */
    uint64_t mask = 0;
    struct vs_vkey both[2] = {old_key, new_key};
    assert_int_equal(vs_checkpoint_open(co, strlen(co), NULL, both, 2, NULL, &mask), 0);
    assert_int_equal(mask, 3); /* co-signed: old verifiers accept it, new ones too */

    emit(f, 5, "rot", "test", NULL);
    uint64_t s2;
    const char *later = wait_checkpoint(f, s1 + 5, &s2);
    assert_int_equal(vs_checkpoint_open(later, strlen(later), NULL, &new_key, 1, NULL, NULL), 0);
    assert_int_equal(vs_checkpoint_open(later, strlen(later), NULL, &old_key, 1, NULL, NULL),
                     -ENOKEY);

    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.category = "auditd";
    Vs__V1__AuditQueryReply *r = (Vs__V1__AuditQueryReply *)ask(
        f, "vs.auditlog.query", &req.base, &vs__v1__audit_query_reply__descriptor);
    assert_non_null(r);
    assert_int_equal(r->n_records, 1);
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, r->records[0]->event.len,
                                                         r->records[0]->event.data);
    assert_string_equal(ev->event, "key_rotated");
    char hash[16];
    snprintf(hash, sizeof(hash), "%08" PRIx32, new_key.hash);
    bool named = false;
    for (size_t i = 0; i < ev->n_details; i++)
        named |= strcmp(ev->details[i]->value, hash) == 0;
    assert_true(named);
    vs__v1__audit_event__free_unpacked(ev, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* A restart with the same configuration does not rotate again. */
    stop_auditd(f);
    start_auditd(f, extra);
    emit(f, 3, "rot", "test", NULL);
    uint64_t s3;
    wait_checkpoint(f, s2 + 3, &s3);
    r = (Vs__V1__AuditQueryReply *)ask(f, "vs.auditlog.query", &req.base,
                                       &vs__v1__audit_query_reply__descriptor);
    assert_non_null(r);
    assert_int_equal(r->n_records, 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* Offline verification with the new key only: the chain of trust is
     * in the log's co-signed checkpoint. */
    VSCTL_EXPECT(f, 0, NULL, "audit", "verify", "--store", f->store, "--vkey", f->vkey2);
}

static void test_refuses_to_start_without_key(void **state)
{
    struct fixture *f = *state;
    const char *cfg = f->auditd.cfg, *log = f->auditd.log;
    assert_int_equal(vs_write_file(cfg,
                                   "nats:\n  url: %s\nauditd:\n  store: %s\n  key: %s/absent.key\n",
                                   f->base.nats.url, f->store, f->dir),
                     0);
    const char *argv[] = {VS_AUDITD_BIN, "-c", cfg, NULL};
    pid_t pid = vs_proc_spawn(argv, NULL, log);
    int st = vs_proc_wait(pid, 10000);
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_true(vs_file_count(log, "init-audit") >= 1);
    /* And the configuration check names the missing key. */
    assert_int_equal(vs_write_file(cfg, "auditd:\n  store: %s\n", f->store), 0);
    const char *check[] = {VS_AUDITD_BIN, "-n", "-c", cfg, NULL};
    pid = vs_proc_spawn(check, NULL, log);
    st = vs_proc_wait(pid, 10000);
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_true(vs_file_count(log, "auditd.key") >= 1);
}

static int group_setup(void **state)
{
    (void)state;
    return vs_crypto_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exactly_once_across_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_stream_message_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_and_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_verify_tamper_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_to_start_without_key, setup, teardown),
    };
    return cmocka_run_group_tests_name("auditd", tests, group_setup, NULL);
}
