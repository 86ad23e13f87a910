/*
 * test_audit_tamper.c - the audit store against an attacker and a crash.
 *
 * Tamper cases: a real 200-entry log is built through the store API and
 * its root at size 200 kept as the "checkpoint". Each case copies the
 * closed log's data.mdb and edits the copy with raw LMDB calls, as an
 * attacker with write access to the files would - not through the store
 * - using only the layout documented in vs/audit_store.h. The copy is then
 * opened read-only and vs_audit_store_verify must name the exact first bad
 * sequence the header documents:
 *   modified byte at 57 -> 57; inserted entry at 100 -> 100 (101 when the
 *   attacker also forges the stored hashes, see that case); deleted 120
 *   (shifted down, or a gap) -> 120; swapped 30/31 -> 30; tail cut to 150
 *   -> -ENODATA at 150; the whole log rewritten with every hash recomputed
 *   -> only the checkpoint's root tells, first_bad 0; a forged subtree
 *   hash -> the first leaf under it.
 *
 * Crash case: a child process appends batches (stream seqs 1, 2, ...) and
 * reports each acknowledged batch on a pipe; the parent SIGKILLs it at a
 * random point, reopens, and checks that every acknowledged event is there,
 * that seqs are contiguous with stream_seq == seq + 1 (no gap, no
 * duplicate) and size == applied, three times over; then it resumes from
 * applied + 1 and verifies the whole log.
 *
 * Live read-only case: while a writer process appends (and grows its
 * map), the test opens the same directory read-only - as `vsctl audit
 * backup` does - verifies it repeatedly and takes backups from that handle;
 * every backup must verify against the writer's own roots.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <sodium.h>

#include "proc.h"
#include "vs/audit_store.h"
#include "vs/v1/audit.pb-c.h"

#define H VS_HASH_LEN
#define N 200
#define BASE_NS 1700000000000000000ull

static char *g_dir;       /* the test's temporary directory */
static char *g_orig;      /* the untouched log */
static uint8_t g_root[H]; /* the "checkpoint": root at size N */

/* ---- helpers -------------------------------------------------------------------- */

static uint8_t *make_event(uint64_t i, size_t *len)
{
    Vs__V1__AuditEvent ev = VS__V1__AUDIT_EVENT__INIT;
    char agent[32], text[48];
    snprintf(agent, sizeof agent, "agent-%llu", (unsigned long long)(i % 4));
    snprintf(text, sizeof text, "task step %llu done", (unsigned long long)i);
    ev.time_ns = BASE_NS + i;
    ev.component = "test";
    ev.category = "task";
    ev.severity = VS__V1__SEVERITY__SEVERITY_INFO;
    ev.agent = agent;
    ev.event = text;
    *len = vs__v1__audit_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    vs__v1__audit_event__pack(&ev, buf);
    return buf;
}

static vs_audit_store *open_store(const char *path, bool ro)
{
    struct vs_audit_store_opts o = {.path = path, .read_only = ro};
    vs_audit_store *s = NULL;
    int rc = vs_audit_store_open(&o, &s);
    if (rc)
        fail_msg("open %s: %s", path, strerror(-rc));
    return s;
}

/* Append events first.. in batches; stream seq i + 1. */
static int append_events(vs_audit_store *s, uint64_t first, uint64_t n, size_t batch)
{
    struct vs_audit_append items[256];
    if (batch > 256)
        batch = 256;
    for (uint64_t i = first; i < first + n;) {
        size_t k = 0;
        for (; k < batch && i < first + n; k++, i++) {
            items[k].event = make_event(i, &items[k].len);
            items[k].stream_seq = i + 1;
            items[k].time_ns = BASE_NS + i * 1000;
        }
        size_t got = 0;
        int rc = vs_audit_store_append(s, items, k, &got);
        for (size_t j = 0; j < k; j++)
            free((void *)items[j].event);
        if (rc)
            return rc;
    }
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            return -1;
    close(in);
    close(out);
    return n == 0 ? 0 : -1;
}

/* A fresh copy of the original log's files in g_dir/name. */
static char *copy_log(const char *name)
{
    char *dir = vs_path(g_dir, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    char *from = vs_path(g_orig, "data.mdb"), *to = vs_path(dir, "data.mdb");
    assert_int_equal(copy_file(from, to), 0);
    free(from);
    free(to);
    return dir;
}

/* ---- the attacker's raw LMDB access (layout from vs/audit_store.h) ------------ */

struct raw {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi entries, hashes, nodes, meta;
};

static void raw_open(struct raw *r, const char *dir)
{
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(r->env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(r->env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "entries", 0, &r->entries), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "hashes", 0, &r->hashes), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "nodes", 0, &r->nodes), 0);
    assert_int_equal(mdb_dbi_open(r->txn, "meta", 0, &r->meta), 0);
}

static void raw_close(struct raw *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Value at seq (malloc'd copy); *len its size. NULL when absent. */
static uint8_t *raw_get(struct raw *r, MDB_dbi dbi, uint64_t seq, size_t *len)
{
    uint8_t kb[8];
    be64(kb, seq);
    MDB_val k = {8, kb}, v;
    if (mdb_get(r->txn, dbi, &k, &v) != 0)
        return NULL;
    uint8_t *out = malloc(v.mv_size);
    memcpy(out, v.mv_data, v.mv_size);
    if (len)
        *len = v.mv_size;
    return out;
}

static void raw_put(struct raw *r, MDB_dbi dbi, uint64_t seq, const void *val, size_t len)
{
    uint8_t kb[8];
    be64(kb, seq);
    MDB_val k = {8, kb}, v = {len, (void *)(uintptr_t)val};
    assert_int_equal(mdb_put(r->txn, dbi, &k, &v, 0), 0);
}

static void raw_del(struct raw *r, MDB_dbi dbi, uint64_t seq)
{
    uint8_t kb[8];
    be64(kb, seq);
    MDB_val k = {8, kb};
    assert_int_equal(mdb_del(r->txn, dbi, &k, NULL), 0);
}

/* Move the value at from to to (to is overwritten, from deleted). */
static void raw_move(struct raw *r, MDB_dbi dbi, uint64_t from, uint64_t to)
{
    size_t len;
    uint8_t *v = raw_get(r, dbi, from, &len);
    assert_non_null(v);
    raw_put(r, dbi, to, v, len);
    raw_del(r, dbi, from);
    free(v);
}

static void raw_set_size(struct raw *r, uint64_t size)
{
    uint8_t b[8];
    be64(b, size);
    MDB_val k = {4, "size"}, v = {8, b};
    assert_int_equal(mdb_put(r->txn, r->meta, &k, &v, 0), 0);
}

/* An entry encoded as the header documents. Returns its length. */
static size_t encode(uint8_t *out, uint64_t seq, uint64_t time_ns, uint64_t stream,
                     const uint8_t prev[H], const uint8_t *ev, size_t len)
{
    memcpy(out, "vs.audit.v1", 12);
    be64(out + 12, seq);
    be64(out + 20, time_ns);
    be64(out + 28, stream);
    memcpy(out + 36, prev, H);
    for (int k = 0; k < 4; k++)
        out[68 + k] = (uint8_t)((uint32_t)len >> (24 - 8 * k));
    memcpy(out + 72, ev, len);
    return 72 + len;
}

static void hashes_of(const uint8_t *entry, size_t len, uint8_t out[2 * H])
{
    vs_merkle_leaf(entry, len, out);
    crypto_hash_sha256(out + H, entry, len);
}

/* Verify the copy read-only against the checkpoint. */
static int verify_copy(const char *dir, uint64_t want_size, const uint8_t *root, uint64_t *bad)
{
    vs_audit_store *s = open_store(dir, true);
    *bad = UINT64_MAX;
    int rc = vs_audit_store_verify(s, want_size, root, bad);
    vs_audit_store_close(s);
    return rc;
}

#define EXPECT_BAD(dir, rc_want, bad_want)                                                   \
    do {                                                                                     \
        uint64_t bad_;                                                                       \
        int rc_ = verify_copy((dir), N, g_root, &bad_);                                      \
        if (rc_ != (rc_want) || bad_ != (uint64_t)(bad_want))                                \
            fail_msg("verify: rc %d first_bad %llu, want rc %d first_bad %llu", rc_,          \
                     (unsigned long long)bad_, (rc_want), (unsigned long long)(bad_want));   \
    } while (0)

/* ---- fixture -------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    g_dir = vs_scratch_dir("vs_atamper");
    if (g_dir == NULL)
        return -1;
    g_orig = vs_path(g_dir, "orig");
    struct vs_audit_store_opts o = {.path = g_orig};
    vs_audit_store *s = NULL;
    if (vs_audit_store_open(&o, &s) != 0)
        return -1;
    int rc = append_events(s, 0, N, 16);
    if (rc == 0)
        rc = vs_audit_store_root(s, N, g_root);
    vs_audit_store_close(s);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    vs_scratch_free(g_dir);
    free(g_orig);
    return 0;
}

/* ---- tamper cases -------------------------------------------------------------- */

static void test_intact_copy_verifies(void **state)
{
    (void)state;
    char *dir = copy_log("intact");
    EXPECT_BAD(dir, 0, UINT64_MAX);
    free(dir);
}

static void test_modified_byte(void **state)
{
    (void)state;
    char *dir = copy_log("modified");
    struct raw r;
    raw_open(&r, dir);
    size_t len;
    uint8_t *v = raw_get(&r, r.entries, 57, &len);
    v[72 + 3] ^= 0x20; /* one byte of the event */
    raw_put(&r, r.entries, 57, v, len);
    free(v);
    raw_close(&r);
    /* Entry 57's bytes no longer hash to its stored hashes. */
    EXPECT_BAD(dir, -EBADMSG, 57);
    free(dir);
}

static void test_modified_last_entry(void **state)
{
    (void)state;
    char *dir = copy_log("modified_last");
    struct raw r;
    raw_open(&r, dir);
    size_t len;
    uint8_t *v = raw_get(&r, r.entries, N - 1, &len);
    v[len - 1] ^= 0x01;
    raw_put(&r, r.entries, N - 1, v, len);
    free(v);
    raw_close(&r);
    EXPECT_BAD(dir, -EBADMSG, N - 1); /* no successor links to it: the stored hash tells */
    free(dir);
}

/* Shift entries (and hashes when also_hashes) from..N-1 up by one and
 * write a forged entry at from that links correctly to from - 1. */
static void insert_forged(const char *dir, uint64_t from, bool also_hashes)
{
    struct raw r;
    raw_open(&r, dir);
    for (uint64_t i = N; i-- > from;) {
        raw_move(&r, r.entries, i, i + 1);
        if (also_hashes)
            raw_move(&r, r.hashes, i, i + 1);
    }
    uint8_t *h = raw_get(&r, r.hashes, from - 1, NULL); /* leaf | chain of from - 1 */
    size_t elen;
    uint8_t *ev = make_event(9999, &elen), entry[1024], hv[2 * H];
    size_t len = encode(entry, from, BASE_NS + from * 1000, 0, h + H, ev, elen);
    raw_put(&r, r.entries, from, entry, len);
    if (also_hashes) {
        hashes_of(entry, len, hv);
        raw_put(&r, r.hashes, from, hv, sizeof hv);
    }
    raw_set_size(&r, N + 1);
    raw_close(&r);
    free(h);
    free(ev);
}

static void test_inserted_entry(void **state)
{
    (void)state;
    /* The forged entry at 100 has the right seq field and prev_hash, but
     * the stored hashes at 100 are still the displaced original's. */
    char *dir = copy_log("inserted");
    insert_forged(dir, 100, false);
    EXPECT_BAD(dir, -EBADMSG, 100);
    free(dir);
}

static void test_inserted_entry_with_forged_hashes(void **state)
{
    (void)state;
    /* When the attacker also shifts the hashes DB and stores the forged
     * entry's true hashes, entry 100 is indistinguishable from a real one:
     * its seq field, its link to 99 and its stored hashes all check out.
     * The break is the next key: 101 holds the displaced original entry
     * 100, whose seq field says 100 and whose prev_hash is 99's chain hash,
     * not the forged entry's. So the first bad sequence is 101 (and the
     * root at 200 differs from the checkpoint's as well). */
    char *dir = copy_log("inserted_hashed");
    insert_forged(dir, 100, true);
    EXPECT_BAD(dir, -EBADMSG, 101);
    free(dir);
}

static void test_deleted_entry_shifted(void **state)
{
    (void)state;
    char *dir = copy_log("deleted");
    struct raw r;
    raw_open(&r, dir);
    for (uint64_t i = 121; i < N; i++) {
        raw_move(&r, r.entries, i, i - 1);
        raw_move(&r, r.hashes, i, i - 1);
    }
    raw_set_size(&r, N - 1);
    raw_close(&r);
    /* Key 120 now holds entry 121: its seq field and prev_hash (chain of
     * the deleted 120) are wrong there. */
    EXPECT_BAD(dir, -EBADMSG, 120);
    free(dir);
}

static void test_deleted_entry_gap(void **state)
{
    (void)state;
    char *dir = copy_log("gap");
    struct raw r;
    raw_open(&r, dir);
    raw_del(&r, r.entries, 120);
    raw_close(&r);
    EXPECT_BAD(dir, -EBADMSG, 120); /* the missing key */
    free(dir);
}

static void test_reordered_entries(void **state)
{
    (void)state;
    char *dir = copy_log("reordered");
    struct raw r;
    raw_open(&r, dir);
    size_t l30, l31, h30, h31;
    uint8_t *e30 = raw_get(&r, r.entries, 30, &l30), *e31 = raw_get(&r, r.entries, 31, &l31);
    uint8_t *x30 = raw_get(&r, r.hashes, 30, &h30), *x31 = raw_get(&r, r.hashes, 31, &h31);
    raw_put(&r, r.entries, 30, e31, l31);
    raw_put(&r, r.entries, 31, e30, l30);
    raw_put(&r, r.hashes, 30, x31, h31);
    raw_put(&r, r.hashes, 31, x30, h30);
    raw_close(&r);
    free(e30);
    free(e31);
    free(x30);
    free(x31);
    EXPECT_BAD(dir, -EBADMSG, 30);
    free(dir);
}

static void test_truncated_tail(void **state)
{
    (void)state;
    char *dir = copy_log("truncated");
    struct raw r;
    raw_open(&r, dir);
    for (uint64_t i = 150; i < N; i++) {
        raw_del(&r, r.entries, i);
        raw_del(&r, r.hashes, i);
    }
    raw_set_size(&r, 150);
    raw_close(&r);
    EXPECT_BAD(dir, -ENODATA, 150);
    /* What is left is the honest prefix: it verifies at its own size. */
    vs_audit_store *orig = open_store(g_orig, true);
    uint8_t root150[H];
    assert_int_equal(vs_audit_store_root(orig, 150, root150), 0);
    vs_audit_store_close(orig);
    uint64_t bad;
    assert_int_equal(verify_copy(dir, 150, root150, &bad), 0);

    /* Cutting the tail without fixing the size is found the same way. */
    char *dir2 = copy_log("truncated_nometa");
    raw_open(&r, dir2);
    for (uint64_t i = 150; i < N; i++)
        raw_del(&r, r.entries, i);
    raw_close(&r);
    EXPECT_BAD(dir2, -ENODATA, 150);
    free(dir2);
    free(dir);
}

/* Recompute the nodes DB from the hashes DB as the store lays it out. */
static void rebuild_nodes(struct raw *r, uint64_t n)
{
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(r->txn, r->nodes, &c), 0);
    MDB_val k, v;
    while (mdb_cursor_get(c, &k, &v, MDB_FIRST) == 0)
        assert_int_equal(mdb_cursor_del(c, 0), 0);
    mdb_cursor_close(c);
    uint8_t(*level)[H] = calloc(n, H);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *h = raw_get(r, r->hashes, i, NULL);
        memcpy(level[i], h, H);
        free(h);
    }
    for (unsigned l = 1; (UINT64_C(1) << l) <= n; l++) {
        uint64_t count = n >> l;
        for (uint64_t i = 0; i < count; i++) {
            vs_merkle_node(level[2 * i], level[2 * i + 1], level[i]);
            uint8_t kb[9];
            be64(kb, ((i + 1) << l) - 1);
            kb[8] = (uint8_t)l;
            MDB_val nk = {9, kb}, nv = {H, level[i]};
            assert_int_equal(mdb_put(r->txn, r->nodes, &nk, &nv, 0), 0);
        }
    }
    free(level);
}

static void test_rewritten_log(void **state)
{
    (void)state;
    char *dir = copy_log("rewritten");
    struct raw r;
    raw_open(&r, dir);
    /* Change entry 57's event, then re-link and re-hash everything after
     * it and rebuild every subtree hash: a self-consistent forgery. */
    uint8_t *h56 = raw_get(&r, r.hashes, 56, NULL), prev[H], entry[2048], hv[2 * H];
    memcpy(prev, h56 + H, H);
    free(h56);
    for (uint64_t i = 57; i < N; i++) {
        size_t len;
        uint8_t *v = raw_get(&r, r.entries, i, &len);
        memcpy(entry, v, len);
        free(v);
        if (i == 57)
            entry[72 + 3] ^= 0x20;
        memcpy(entry + 36, prev, H);
        raw_put(&r, r.entries, i, entry, len);
        hashes_of(entry, len, hv);
        raw_put(&r, r.hashes, i, hv, sizeof hv);
        memcpy(prev, hv + H, H);
    }
    rebuild_nodes(&r, N);
    raw_close(&r);

    /* Every entry, link and stored hash checks out on its own ... */
    uint64_t bad = 7;
    assert_int_equal(verify_copy(dir, N, NULL, &bad), 0);
    /* ... but the root is not the checkpoint's: no single entry can be
     * named, nothing below the checkpoint is proven, first_bad is 0. */
    EXPECT_BAD(dir, -EBADMSG, 0);
    vs_audit_store *s = open_store(dir, true);
    uint8_t forged_root[H];
    assert_int_equal(vs_audit_store_root(s, N, forged_root), 0);
    assert_memory_not_equal(forged_root, g_root, H);
    vs_audit_store_close(s);
    free(dir);
}

static void test_forged_subtree_hash(void **state)
{
    (void)state;
    char *dir = copy_log("subtree");
    struct raw r;
    raw_open(&r, dir);
    /* Subtree (level 3, index 5) covers leaves 40..47: key 47 | 3. */
    uint8_t kb[9];
    be64(kb, 47);
    kb[8] = 3;
    MDB_val k = {9, kb}, v;
    assert_int_equal(mdb_get(r.txn, r.nodes, &k, &v), 0);
    uint8_t h[H];
    memcpy(h, v.mv_data, H);
    h[0] ^= 0x80;
    v.mv_data = h;
    assert_int_equal(mdb_put(r.txn, r.nodes, &k, &v, 0), 0);
    raw_close(&r);

    /* Proofs through that subtree are wrong now ... */
    vs_audit_store *s = open_store(dir, true);
    uint8_t path[VS_AUDIT_MAX_PROOF][H];
    size_t n = 0;
    struct vs_audit_entry e;
    assert_int_equal(vs_audit_store_get(s, 32, &e), 0);
    assert_int_equal(vs_audit_store_inclusion(s, 32, N, path, &n), 0);
    assert_int_equal(vs_merkle_verify_inclusion(e.leaf_hash, 32, N, path, n, g_root), -EBADMSG);
    vs_audit_store_close(s);
    /* ... and verify names the first leaf under the forged subtree. */
    EXPECT_BAD(dir, -EBADMSG, 40);
    free(dir);
}

/* ---- crash ------------------------------------------------------------------------ */

/* Child: append batches of 50 from applied + 1 on, writing the applied
 * sequence to fd after each acknowledged (committed) batch. Never returns. */
static void crash_child(const char *dir, int fd, uint64_t map_size)
{
    struct vs_audit_store_opts o = {.path = dir, .map_size = map_size};
    vs_audit_store *s = NULL;
    if (vs_audit_store_open(&o, &s) != 0)
        _exit(2);
    for (;;) {
        uint64_t next = vs_audit_store_applied(s); /* stream seq next + 1 is event next */
        if (append_events(s, next, 50, 50) != 0)
            _exit(3);
        uint64_t acked = vs_audit_store_applied(s);
        if (write(fd, &acked, sizeof acked) != (ssize_t)sizeof acked)
            _exit(4);
    }
}

/* Every event 0..size-1 in place: seq i holds stream seq i + 1 and event i. */
static void check_contiguous(vs_audit_store *s)
{
    uint64_t size = vs_audit_store_size(s);
    assert_int_equal(vs_audit_store_applied(s), size);
    for (uint64_t i = 0; i < size; i++) {
        struct vs_audit_entry e;
        assert_int_equal(vs_audit_store_get(s, i, &e), 0);
        assert_int_equal(e.seq, i);
        assert_int_equal(e.stream_seq, i + 1);
        size_t len;
        uint8_t *want = make_event(i, &len);
        assert_int_equal(e.len, len);
        assert_memory_equal(e.event, want, len);
        free(want);
    }
    struct vs_audit_entry e;
    assert_int_equal(vs_audit_store_get(s, size, &e), -ENOENT);
}

static void test_crash_mid_append(void **state)
{
    (void)state;
    char *dir = vs_path(g_dir, "crash");
    srand((unsigned)time(NULL));
    uint64_t last_acked = 0;
    for (int round = 0; round < 3; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(dir, p[1], 0);
        }
        close(p[1]);
        /* Let it commit a random number of batches, then kill it at a
         * random moment, most likely inside a transaction or a commit. */
        int batches = 5 + rand() % 40;
        for (int b = 0; b < batches; b++) {
            uint64_t acked;
            assert_int_equal(read(p[0], &acked, sizeof acked), (ssize_t)sizeof acked);
            assert_true(acked > last_acked);
            last_acked = acked;
        }
        usleep((useconds_t)(rand() % 3000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Acks that were in the pipe when it died still count. */
        uint64_t acked;
        while (read(p[0], &acked, sizeof acked) == (ssize_t)sizeof acked)
            last_acked = acked;
        close(p[0]);

        vs_audit_store *s = open_store(dir, false);
        uint64_t size = vs_audit_store_size(s);
        print_message("round %d: killed after ack %llu, log holds %llu\n", round,
                      (unsigned long long)last_acked, (unsigned long long)size);
        assert_true(size >= last_acked); /* nothing acknowledged is lost */
        assert_true(size <= last_acked + 50); /* at most the batch in flight */
        check_contiguous(s);
        last_acked = size;
        vs_audit_store_close(s);
    }
    /* Resume from applied + 1 and verify everything. */
    vs_audit_store *s = open_store(dir, false);
    uint64_t applied = vs_audit_store_applied(s);
    assert_int_equal(append_events(s, applied, 500, 64), 0);
    assert_int_equal(vs_audit_store_size(s), applied + 500);
    check_contiguous(s);
    uint8_t root[H];
    uint64_t bad;
    assert_int_equal(vs_audit_store_root(s, applied + 500, root), 0);
    assert_int_equal(vs_audit_store_verify(s, applied + 500, root, &bad), 0);
    vs_audit_store_close(s);
    free(dir);
}

static void test_live_read_only_backup(void **state)
{
    (void)state;
    char *dir = vs_path(g_dir, "live");
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        crash_child(dir, p[1], 128 * 1024); /* a small map: it grows meanwhile */
    }
    close(p[1]);
    uint64_t acked = 0;
    while (acked < 2000)
        assert_int_equal(read(p[0], &acked, sizeof acked), (ssize_t)sizeof acked);

    vs_audit_store *ro = open_store(dir, true);
    char lockpath[4096];
    snprintf(lockpath, sizeof lockpath, "%s/lock.mdb", dir);
    uint64_t sizes[3];
    char *copies[3];
    for (int i = 0; i < 3; i++) {
        uint64_t size = vs_audit_store_size(ro), bad = 0;
        uint8_t root[H];
        assert_true(size >= 2000);
        assert_int_equal(vs_audit_store_root(ro, size, root), 0);
        assert_int_equal(vs_audit_store_verify(ro, size, root, &bad), 0);
        char name[32];
        snprintf(name, sizeof name, "live_copy%d", i);
        copies[i] = vs_path(g_dir, name);
        assert_int_equal(vs_audit_store_backup(ro, copies[i]), 0);
        vs_audit_store *c = open_store(copies[i], true);
        sizes[i] = vs_audit_store_size(c);
        assert_true(sizes[i] >= size);
        vs_audit_store_close(c);
        /* Let the writer go on (and grow its map) between backups. */
        uint64_t until = acked + 3000;
        while (acked < until)
            assert_int_equal(read(p[0], &acked, sizeof acked), (ssize_t)sizeof acked);
    }
    vs_audit_store_close(ro);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(p[0]);

    /* Each backup is a prefix of the writer's log and verifies against it. */
    vs_audit_store *w = open_store(dir, false);
    for (int i = 0; i < 3; i++) {
        uint8_t root[H];
        uint64_t bad = 0;
        assert_int_equal(vs_audit_store_root(w, sizes[i], root), 0);
        assert_int_equal(verify_copy(copies[i], sizes[i], root, &bad), 0);
        print_message("live backup %d: %llu entries, verified\n", i,
                      (unsigned long long)sizes[i]);
        free(copies[i]);
    }
    vs_audit_store_close(w);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intact_copy_verifies),
        cmocka_unit_test(test_modified_byte),
        cmocka_unit_test(test_modified_last_entry),
        cmocka_unit_test(test_inserted_entry),
        cmocka_unit_test(test_inserted_entry_with_forged_hashes),
        cmocka_unit_test(test_deleted_entry_shifted),
        cmocka_unit_test(test_deleted_entry_gap),
        cmocka_unit_test(test_reordered_entries),
        cmocka_unit_test(test_truncated_tail),
        cmocka_unit_test(test_rewritten_log),
        cmocka_unit_test(test_forged_subtree_hash),
        cmocka_unit_test(test_crash_mid_append),
        cmocka_unit_test(test_live_read_only_backup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
