/*
 * test_audit_store.c - unit tests of the audit log store
 * (workers/auditd: store.c, merkle.c) against independent references.
 *
 * The references are deliberately naive: the entry encoding is rebuilt
 * here from the header's documentation, roots come from a recursive RFC
 * 6962 MTH over leaf hashes, and proofs from a literal transcription of
 * RFC 6962's PATH and SUBPROOF. Store output must equal them byte for
 * byte, and the RFC 9162 verifiers must accept them and reject any
 * altered proof, for every size 1..64 and every index/size pair. The
 * indexes are checked against the generator's ground truth, including
 * pagination. Each test works in its own mkdtemp directory.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "proc.h"
#include "vs/audit_store.h"
#include "vs/v1/audit.pb-c.h"

#define H VS_HASH_LEN
#define BASE_NS 1700000000000000000ull

/* ---- fixtures and helpers ---------------------------------------------------- */

static vs_audit_store *open_store(const char *path, uint64_t map_size, bool ro)
{
    struct vs_audit_store_opts o = {.path = path, .map_size = map_size, .read_only = ro};
    vs_audit_store *s = NULL;
    int rc = vs_audit_store_open(&o, &s);
    if (rc)
        fail_msg("open %s: %s", path, strerror(-rc));
    return s;
}

/* The generator's ground truth for event i. */
static const char *agent_of(uint64_t i)
{
    static const char *agents[] = {"agent-a", "agent-b", "agent-c", "agent-d", "agent-e"};
    return agents[i % 5];
}
static const char *category_of(uint64_t i)
{
    static const char *cats[] = {"task", "exfil", "gate"};
    return cats[i % 3];
}
static int severity_of(uint64_t i)
{
    return (int)(1 + i % 7);
}
static void task_of(uint64_t i, uint8_t t[16])
{
    uint64_t k = i / 10; /* ten events per task */
    memset(t, 0, 16);
    for (int b = 0; b < 8; b++)
        t[b] = (uint8_t)(k >> (56 - 8 * b));
    t[15] = 0x7a;
}

/* A serialized AuditEvent for i; *len its size. Caller frees. */
static uint8_t *make_event(uint64_t i, size_t *len)
{
    Vs__V1__AuditEvent ev = VS__V1__AUDIT_EVENT__INIT;
    uint8_t task[16], id[16];
    task_of(i, task);
    memset(id, 0, 16);
    memcpy(id, &i, sizeof i);
    char note[64];
    snprintf(note, sizeof note, "event number %llu", (unsigned long long)i);
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.time_ns = BASE_NS + i;
    ev.component = "test";
    ev.category = (char *)category_of(i);
    ev.severity = (Vs__V1__Severity)severity_of(i);
    ev.agent = (char *)agent_of(i);
    ev.task_id.data = task;
    ev.task_id.len = 16;
    ev.event = note;
    *len = vs__v1__audit_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    vs__v1__audit_event__pack(&ev, buf);
    return buf;
}

/* Append events first..first+n-1 in batches of batch, stream seq i+1 and
 * time BASE_NS + i * 1000. */
static void append_range(vs_audit_store *s, uint64_t first, uint64_t n, size_t batch)
{
    struct vs_audit_append *items = calloc(batch, sizeof *items);
    assert_non_null(items);
    for (uint64_t i = first; i < first + n;) {
        size_t k = 0;
        for (; k < batch && i < first + n; k++, i++) {
            items[k].event = make_event(i, &items[k].len);
            items[k].stream_seq = i + 1;
            items[k].time_ns = BASE_NS + i * 1000;
        }
        size_t got = 0;
        int rc = vs_audit_store_append(s, items, k, &got);
        if (rc)
            fail_msg("append: %s", strerror(-rc));
        assert_int_equal(got, k);
        for (size_t j = 0; j < k; j++)
            free((void *)items[j].event);
    }
    free(items);
}

/* The entry encoding, rebuilt from the header's documentation. */
static size_t encode(const struct vs_audit_entry *e, uint8_t *out)
{
    memcpy(out, "vs.audit.v1", 12);
    for (int k = 0; k < 8; k++) {
        out[12 + k] = (uint8_t)(e->seq >> (56 - 8 * k));
        out[20 + k] = (uint8_t)(e->time_ns >> (56 - 8 * k));
        out[28 + k] = (uint8_t)(e->stream_seq >> (56 - 8 * k));
    }
    memcpy(out + 36, e->prev_hash, H);
    for (int k = 0; k < 4; k++)
        out[68 + k] = (uint8_t)((uint32_t)e->len >> (24 - 8 * k));
    memcpy(out + 72, e->event, e->len);
    return 72 + e->len;
}

/* Leaf hashes of entries 0..n-1, checked against the rebuilt encoding. */
static uint8_t (*leaves_of(vs_audit_store *s, uint64_t n))[H]
{
    uint8_t (*leaves)[H] = calloc(n ? n : 1, H);
    uint8_t *buf = malloc(1 << 16);
    assert_non_null(leaves);
    for (uint64_t i = 0; i < n; i++) {
        struct vs_audit_entry e;
        assert_int_equal(vs_audit_store_get(s, i, &e), 0);
        size_t len = encode(&e, buf);
        uint8_t want[H];
        vs_merkle_leaf(buf, len, want);
        assert_memory_equal(e.leaf_hash, want, H);
        memcpy(leaves[i], e.leaf_hash, H);
    }
    free(buf);
    return leaves;
}

/* ---- naive RFC 6962 reference -------------------------------------------------- */

static uint64_t k_of(uint64_t n)
{
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

static void mth(uint8_t (*d)[H], uint64_t n, uint8_t out[H])
{
    if (n == 0) {
        crypto_hash_sha256(out, (const unsigned char *)"", 0);
        return;
    }
    if (n == 1) {
        memcpy(out, d[0], H);
        return;
    }
    uint64_t k = k_of(n);
    uint8_t l[H], r[H];
    mth(d, k, l);
    mth(d + k, n - k, r);
    vs_merkle_node(l, r, out);
}

/* PATH(m, D[n]) */
static void naive_path(uint8_t (*d)[H], uint64_t m, uint64_t n, uint8_t (*out)[H], size_t *len)
{
    if (n <= 1)
        return;
    uint64_t k = k_of(n);
    if (m < k) {
        naive_path(d, m, k, out, len);
        mth(d + k, n - k, out[(*len)++]);
    } else {
        naive_path(d + k, m - k, n - k, out, len);
        mth(d, k, out[(*len)++]);
    }
}

/* SUBPROOF(m, D[n], b) */
static void naive_subproof(uint8_t (*d)[H], uint64_t m, uint64_t n, bool b, uint8_t (*out)[H],
                           size_t *len)
{
    if (m == n) {
        if (!b)
            mth(d, n, out[(*len)++]);
        return;
    }
    uint64_t k = k_of(n);
    if (m <= k) {
        naive_subproof(d, m, k, b, out, len);
        mth(d + k, n - k, out[(*len)++]);
    } else {
        naive_subproof(d + k, m - k, n - k, false, out, len);
        mth(d, k, out[(*len)++]);
    }
}

static void naive_proof(uint8_t (*d)[H], uint64_t m, uint64_t n, uint8_t (*out)[H], size_t *len)
{
    *len = 0;
    if (m > 0 && m < n)
        naive_subproof(d, m, n, true, out, len);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- Merkle verifiers against the naive reference -------------------------- */

static void test_merkle_verifiers_all_sizes(void **state)
{
    (void)state;
    enum { N = 64 };
    uint8_t d[N][H], root[N + 1][H], p[VS_AUDIT_MAX_PROOF][H];
    for (int i = 0; i < N; i++) {
        uint8_t data[8];
        memcpy(data, &i, sizeof i);
        vs_merkle_leaf(data, sizeof data, d[i]);
    }
    for (uint64_t n = 0; n <= N; n++)
        mth(d, n, root[n]);

    for (uint64_t n = 1; n <= N; n++) {
        for (uint64_t m = 0; m < n; m++) {
            size_t len = 0;
            naive_path(d, m, n, p, &len);
            assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len, root[n]), 0);
            /* The wrong leaf, index, size or root, or any flipped bit. */
            assert_int_equal(vs_merkle_verify_inclusion(d[(m + 1) % N], m, n, p, len, root[n]),
                             -EBADMSG);
            if (n > 1)
                assert_int_equal(vs_merkle_verify_inclusion(d[m], (m + 1) % n, n, p, len, root[n]),
                                 -EBADMSG);
            if (n < N)
                assert_int_not_equal(vs_merkle_verify_inclusion(d[m], m, n + 1, p, len, root[n + 1]),
                                     0);
            assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len, root[n - 1]), -EBADMSG);
            for (size_t i = 0; i < len; i++) {
                p[i][i % H] ^= 0x40;
                assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len, root[n]), -EBADMSG);
                p[i][i % H] ^= 0x40;
            }
            if (len > 0)
                assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len - 1, root[n]),
                                 -EBADMSG);
            assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len + 1, root[n]), -EBADMSG);
        }
        assert_int_equal(vs_merkle_verify_inclusion(d[0], n, n, p, 0, root[n]), -EINVAL);
    }

    for (uint64_t n = 1; n <= N; n++) {
        for (uint64_t m = 1; m <= n; m++) {
            size_t len = 0;
            naive_proof(d, m, n, p, &len);
            assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n], p, len), 0);
            if (m < n) {
                assert_int_equal(vs_merkle_verify_consistency(m, n, root[m - 1], root[n], p, len),
                                 -EBADMSG);
                assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n - 1], p, len),
                                 -EBADMSG);
                for (size_t i = 0; i < len; i++) {
                    p[i][(i * 7) % H] ^= 0x01;
                    assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n], p, len),
                                     -EBADMSG);
                    p[i][(i * 7) % H] ^= 0x01;
                }
                assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n], p, len - 1),
                                 -EBADMSG);
                if (m + 1 < n)
                    assert_int_not_equal(
                        vs_merkle_verify_consistency(m + 1, n, root[m + 1], root[n], p, len), 0);
            } else {
                assert_int_equal(len, 0);
                assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n - 1], p, 0),
                                 -EBADMSG);
            }
        }
        /* From the empty tree: an empty proof and the empty root. */
        assert_int_equal(vs_merkle_verify_consistency(0, n, root[0], root[n], p, 0), 0);
        assert_int_equal(vs_merkle_verify_consistency(0, n, root[1], root[n], p, 0), -EBADMSG);
        assert_int_equal(vs_merkle_verify_consistency(n, n - 1, root[n], root[n - 1], p, 0),
                         -EINVAL);
    }
}

/* ---- store basics -------------------------------------------------------------- */

static void test_open_errors(void **state)
{
    (void)state;
    vs_audit_store *s = NULL;
    struct vs_audit_store_opts o = {.path = NULL};
    assert_int_equal(vs_audit_store_open(&o, &s), -EINVAL);
    assert_int_equal(vs_audit_store_open(NULL, &s), -EINVAL);
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    char *missing = vs_path(dir, "missing");
    o.path = missing;
    o.read_only = true;
    assert_int_equal(vs_audit_store_open(&o, &s), -ENOENT);
    assert_null(s);
    vs_audit_store_close(NULL);

    /* A fresh store: empty, verifies, empty root. */
    s = open_store(dir, 0, false);
    uint8_t root[H], empty[H];
    crypto_hash_sha256(empty, (const unsigned char *)"", 0);
    assert_int_equal(vs_audit_store_size(s), 0);
    assert_int_equal(vs_audit_store_root(s, 0, root), 0);
    assert_memory_equal(root, empty, H);
    assert_int_equal(vs_audit_store_root(s, 1, root), -ERANGE);
    uint64_t bad = 99;
    assert_int_equal(vs_audit_store_verify(s, 0, empty, &bad), 0);
    assert_int_equal(vs_audit_store_verify(s, 1, NULL, &bad), -ENODATA);
    assert_int_equal(bad, 0);
    struct vs_audit_append bad_item = {.event = NULL, .len = 3, .stream_seq = 1};
    assert_int_equal(vs_audit_store_append(s, &bad_item, 1, NULL), -EINVAL);
    bad_item.event = (const uint8_t *)"x";
    bad_item.len = (size_t)VS_AUDIT_MAX_EVENT + 1;
    assert_int_equal(vs_audit_store_append(s, &bad_item, 1, NULL), -EMSGSIZE);
    assert_int_equal(vs_audit_store_size(s), 0);
    vs_audit_store_close(s);

    /* Read-only refuses writes. */
    s = open_store(dir, 0, true);
    bad_item.len = 1;
    assert_int_equal(vs_audit_store_append(s, &bad_item, 1, NULL), -EROFS);
    assert_int_equal(vs_audit_store_put_checkpoint(s, 0, "n", 1), -EROFS);
    vs_audit_store_close(s);
    free(missing);
    vs_scratch_free(dir);
}

static void test_append_get_round_trip(void **state)
{
    (void)state;
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    append_range(s, 0, 10, 4);
    /* An undecodable event is stored and chained too, and an item from
     * outside a stream (stream_seq 0) with time 0 gets the store's clock. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    struct vs_audit_append it = {.event = junk, .len = sizeof junk, .stream_seq = 0, .time_ns = 0};
    size_t got = 0;
    assert_int_equal(vs_audit_store_append(s, &it, 1, &got), 0);
    assert_int_equal(got, 1);
    /* An earlier time is raised to the previous entry's. */
    it.time_ns = 5;
    assert_int_equal(vs_audit_store_append(s, &it, 1, &got), 0);
    assert_int_equal(vs_audit_store_size(s), 12);
    assert_int_equal(vs_audit_store_applied(s), 10);

    uint8_t prev[H] = {0}, buf[4096];
    uint64_t prev_time = 0;
    for (uint64_t i = 0; i < 12; i++) {
        struct vs_audit_entry e;
        assert_int_equal(vs_audit_store_get(s, i, &e), 0);
        assert_int_equal(e.seq, i);
        assert_memory_equal(e.prev_hash, prev, H);
        size_t len = encode(&e, buf);
        uint8_t chain[H], leaf[H];
        crypto_hash_sha256(chain, buf, len);
        uint8_t zbuf[4097];
        zbuf[0] = 0;
        memcpy(zbuf + 1, buf, len);
        crypto_hash_sha256(leaf, zbuf, len + 1);
        assert_memory_equal(e.chain_hash, chain, H);
        assert_memory_equal(e.leaf_hash, leaf, H);
        if (i < 10) {
            size_t elen;
            uint8_t *want = make_event(i, &elen);
            assert_int_equal(e.len, elen);
            assert_memory_equal(e.event, want, elen);
            free(want);
            assert_int_equal(e.stream_seq, i + 1);
            assert_int_equal(e.time_ns, BASE_NS + i * 1000);
        } else {
            assert_int_equal(e.len, sizeof junk);
            assert_memory_equal(e.event, junk, sizeof junk);
            assert_int_equal(e.stream_seq, 0);
            assert_true(e.time_ns > BASE_NS); /* the store's clock, now */
        }
        assert_true(e.time_ns >= prev_time);
        prev_time = e.time_ns;
        memcpy(prev, e.chain_hash, H);
    }
    struct vs_audit_entry e11;
    assert_int_equal(vs_audit_store_get(s, 10, &e11), 0);
    uint64_t t10 = e11.time_ns;
    assert_int_equal(vs_audit_store_get(s, 11, &e11), 0);
    assert_int_equal(e11.time_ns, t10);
    assert_int_equal(vs_audit_store_get(s, 12, &e11), -ENOENT);

    uint64_t bad = 0;
    uint8_t root[H];
    assert_int_equal(vs_audit_store_root(s, 12, root), 0);
    assert_int_equal(vs_audit_store_verify(s, 12, root, &bad), 0);
    vs_audit_store_close(s);

    /* Everything survives a reopen. */
    s = open_store(dir, 0, false);
    assert_int_equal(vs_audit_store_size(s), 12);
    assert_int_equal(vs_audit_store_applied(s), 10);
    assert_int_equal(vs_audit_store_verify(s, 12, root, &bad), 0);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

static void test_exactly_once(void **state)
{
    (void)state;
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    append_range(s, 0, 10, 10);
    assert_int_equal(vs_audit_store_size(s), 10);
    assert_int_equal(vs_audit_store_applied(s), 10);

    /* A redelivery of stream seqs 1..10 stores nothing. */
    struct vs_audit_append items[15];
    uint8_t *evs[15];
    for (int i = 0; i < 15; i++) {
        evs[i] = make_event((uint64_t)i, &items[i].len);
        items[i].event = evs[i];
        items[i].stream_seq = (uint64_t)i + 1;
        items[i].time_ns = BASE_NS + (uint64_t)i * 1000;
    }
    size_t got = 99;
    assert_int_equal(vs_audit_store_append(s, items, 10, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(vs_audit_store_size(s), 10);
    /* An overlapping batch 5..15 stores only 11..15, in order. */
    assert_int_equal(vs_audit_store_append(s, items + 4, 11, &got), 0);
    assert_int_equal(got, 5);
    assert_int_equal(vs_audit_store_size(s), 15);
    assert_int_equal(vs_audit_store_applied(s), 15);
    /* A duplicate within one batch is stored once. */
    struct vs_audit_append dup[3] = {items[0], items[0], items[1]};
    dup[0].stream_seq = 16;
    dup[1].stream_seq = 16;
    dup[2].stream_seq = 17;
    assert_int_equal(vs_audit_store_append(s, dup, 3, &got), 0);
    assert_int_equal(got, 2);
    /* Items from outside a stream are always stored and leave applied alone. */
    struct vs_audit_append local = items[0];
    local.stream_seq = 0;
    assert_int_equal(vs_audit_store_append(s, &local, 1, &got), 0);
    assert_int_equal(got, 1);
    assert_int_equal(vs_audit_store_applied(s), 17);
    assert_int_equal(vs_audit_store_size(s), 18);
    for (uint64_t i = 0; i < 17; i++) {
        struct vs_audit_entry e;
        assert_int_equal(vs_audit_store_get(s, i, &e), 0);
        assert_int_equal(e.stream_seq, i + 1);
    }
    vs_audit_store_close(s);
    s = open_store(dir, 0, false);
    assert_int_equal(vs_audit_store_append(s, items, 15, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(vs_audit_store_applied(s), 17);
    uint64_t bad;
    assert_int_equal(vs_audit_store_verify(s, 18, NULL, &bad), 0);
    vs_audit_store_close(s);
    for (int i = 0; i < 15; i++)
        free(evs[i]);
    vs_scratch_free(dir);
}

/* ---- roots and proofs ------------------------------------------------------------ */

static void test_roots_vs_naive(void **state)
{
    (void)state;
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    uint8_t root[H], want[H];
    for (uint64_t n = 1; n <= 100; n++) {
        append_range(s, n - 1, 1, 1);
        uint8_t (*d)[H] = leaves_of(s, n);
        assert_int_equal(vs_audit_store_root(s, n, root), 0);
        mth(d, n, want);
        assert_memory_equal(root, want, H);
        free(d);
    }
    uint8_t (*d)[H] = leaves_of(s, 100);
    for (uint64_t n = 0; n <= 100; n++) {
        assert_int_equal(vs_audit_store_root(s, n, root), 0);
        mth(d, n, want);
        assert_memory_equal(root, want, H);
    }
    assert_int_equal(vs_audit_store_root(s, 101, root), -ERANGE);
    free(d);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

static void test_store_proofs_all_pairs(void **state)
{
    (void)state;
    enum { N = 64 };
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    append_range(s, 0, N, 7);
    uint8_t (*d)[H] = leaves_of(s, N);
    uint8_t root[N + 1][H], p[VS_AUDIT_MAX_PROOF][H], want[VS_AUDIT_MAX_PROOF][H];
    for (uint64_t n = 0; n <= N; n++)
        assert_int_equal(vs_audit_store_root(s, n, root[n]), 0);
    for (uint64_t n = 1; n <= N; n++) {
        for (uint64_t m = 0; m < n; m++) {
            size_t len = 0, wlen = 0;
            assert_int_equal(vs_audit_store_inclusion(s, m, n, p, &len), 0);
            naive_path(d, m, n, want, &wlen);
            assert_int_equal(len, wlen);
            assert_memory_equal(p, want, len * H);
            assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len, root[n]), 0);
        }
        for (uint64_t m = 0; m <= n; m++) {
            size_t len = 0, wlen = 0;
            assert_int_equal(vs_audit_store_consistency(s, m, n, p, &len), 0);
            naive_proof(d, m, n, want, &wlen);
            assert_int_equal(len, wlen);
            assert_memory_equal(p, want, len * H);
            assert_int_equal(vs_merkle_verify_consistency(m, n, root[m], root[n], p, len), 0);
        }
    }
    size_t len;
    assert_int_equal(vs_audit_store_inclusion(s, 3, 3, p, &len), -EINVAL);
    assert_int_equal(vs_audit_store_inclusion(s, 3, N + 1, p, &len), -ERANGE);
    assert_int_equal(vs_audit_store_consistency(s, 5, 4, p, &len), -EINVAL);
    assert_int_equal(vs_audit_store_consistency(s, 5, N + 1, p, &len), -ERANGE);
    free(d);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

static void test_proofs_10k(void **state)
{
    (void)state;
    enum { N = 10000 };
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    append_range(s, 0, N, 500);
    uint8_t (*d)[H] = leaves_of(s, N);
    uint8_t r1[H], r2[H], want[H], p[VS_AUDIT_MAX_PROOF][H];
    static const uint64_t sizes[] = {1, 2, 3, 4095, 4096, 4097, 8191, 8192, 9999, N};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(vs_audit_store_root(s, sizes[i], r1), 0);
        mth(d, sizes[i], want);
        assert_memory_equal(r1, want, H);
    }
    for (int t = 0; t < 300; t++) {
        uint64_t n = 1 + rnd() % N, m = rnd() % n;
        size_t len = 0;
        assert_int_equal(vs_audit_store_root(s, n, r2), 0);
        assert_int_equal(vs_audit_store_inclusion(s, m, n, p, &len), 0);
        assert_int_equal(vs_merkle_verify_inclusion(d[m], m, n, p, len, r2), 0);
        assert_int_equal(vs_merkle_verify_inclusion(d[(m + 1) % N], m, n, p, len, r2), -EBADMSG);
        uint64_t m1 = 1 + rnd() % n;
        assert_int_equal(vs_audit_store_root(s, m1, r1), 0);
        assert_int_equal(vs_audit_store_consistency(s, m1, n, p, &len), 0);
        assert_int_equal(vs_merkle_verify_consistency(m1, n, r1, r2, p, len), 0);
        if (len > 0) {
            p[len - 1][0] ^= 1;
            assert_int_equal(vs_merkle_verify_consistency(m1, n, r1, r2, p, len), -EBADMSG);
        }
    }
    uint64_t bad;
    assert_int_equal(vs_audit_store_root(s, N, r1), 0);
    assert_int_equal(vs_audit_store_verify(s, N, r1, &bad), 0);
    assert_int_equal(vs_audit_store_verify(s, 4097, want, &bad), -EBADMSG); /* want: MTH(N) */
    assert_int_equal(bad, 0);
    free(d);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

/* ---- queries --------------------------------------------------------------------- */

struct collect {
    uint64_t *seqs;
    size_t n, cap;
    int stop_after; /* cb returns 1 after this many; 0: never */
};

static int collect_cb(const struct vs_audit_entry *e, void *arg)
{
    struct collect *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->seqs = realloc(c->seqs, c->cap * sizeof *c->seqs);
        assert_non_null(c->seqs);
    }
    c->seqs[c->n++] = e->seq;
    /* The entry handed out is the stored one. */
    assert_true(e->len > 0);
    return c->stop_after && (int)c->n >= c->stop_after;
}

struct want {
    const char *agent, *category;
    int task; /* -1: any */
    int min_sev;
    uint64_t lo, hi; /* seq range from time; inclusive */
};

static bool matches(const struct want *w, uint64_t i)
{
    uint8_t t[16], wt[16];
    if (w->agent && strcmp(agent_of(i), w->agent) != 0)
        return false;
    if (w->category && strcmp(category_of(i), w->category) != 0)
        return false;
    if (w->task >= 0) {
        task_of(i, t);
        task_of((uint64_t)w->task * 10, wt);
        if (memcmp(t, wt, 16) != 0)
            return false;
    }
    if (severity_of(i) < w->min_sev)
        return false;
    return i >= w->lo && i <= w->hi;
}

/* Query page by page (limit) and compare with the ground truth. */
static void check_query(vs_audit_store *s, uint64_t n, const struct want *w, size_t limit)
{
    struct vs_audit_filter f = {.agent = w->agent,
                                .category = w->category,
                                .min_severity = w->min_sev,
                                .after_seq = UINT64_MAX,
                                .limit = limit};
    uint8_t task[16];
    if (w->task >= 0) {
        task_of((uint64_t)w->task * 10, task);
        f.task_id = task;
    }
    if (w->lo > 0)
        f.since_ns = BASE_NS + w->lo * 1000;
    if (w->hi < n - 1)
        f.until_ns = BASE_NS + w->hi * 1000 + 999;
    struct collect all = {0};
    for (int pages = 0;; pages++) {
        struct collect page = {0};
        int got = vs_audit_store_query(s, &f, collect_cb, &page);
        assert_true(got >= 0);
        assert_int_equal((size_t)got, page.n);
        assert_true((size_t)got <= limit);
        for (size_t i = 0; i < page.n; i++) {
            collect_cb(&(struct vs_audit_entry){.seq = page.seqs[i], .len = 1}, &all);
        }
        free(page.seqs);
        if ((size_t)got < limit)
            break;
        f.after_seq = all.seqs[all.n - 1];
        assert_true(pages < 100000);
    }
    size_t k = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!matches(w, i))
            continue;
        if (k >= all.n)
            fail_msg("query missed seq %llu", (unsigned long long)i);
        assert_int_equal(all.seqs[k], i);
        k++;
    }
    assert_int_equal(k, all.n);
    free(all.seqs);
}

static void test_query(void **state)
{
    (void)state;
    enum { N = 5000 }; /* 20 index epochs: estimates are sampled */
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    append_range(s, 0, N, 37);
    const uint64_t all = N - 1;
    struct want cases[] = {
        {"agent-c", NULL, -1, 0, 0, all},
        {NULL, "exfil", -1, 0, 0, all},
        {NULL, NULL, 123, 0, 0, all},
        {NULL, NULL, -1, 6, 0, all},
        {NULL, NULL, -1, 1, 0, all},
        {NULL, NULL, -1, 0, 100, 199},
        {NULL, NULL, -1, 0, 0, all},
        {"agent-b", "gate", -1, 4, 0, all},
        {"agent-a", NULL, -1, 0, 1000, 3333},
        {"agent-e", "task", 77, 0, 0, all},
        {"agent-d", NULL, 200, 0, 0, all}, /* task 200's events are agents a..e; d has two */
        {NULL, "gate", -1, 7, 4000, all},
        {NULL, NULL, 499, 0, 4995, all},
    };
    static const size_t limits[] = {1, 7, 100, 1000};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
            if (limits[l] > 1 || c % 4 == 0) /* limit 1 pages slowly: a few cases */
                check_query(s, N, &cases[c], limits[l]);

    /* The default limit, NULL filter, no match, early stop. */
    struct collect got = {0};
    assert_int_equal(vs_audit_store_query(s, NULL, collect_cb, &got), 100);
    assert_int_equal(got.seqs[0], 0);
    assert_int_equal(got.seqs[99], 99);
    free(got.seqs);
    memset(&got, 0, sizeof got);
    struct vs_audit_filter f = {.agent = "nobody", .after_seq = UINT64_MAX};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 0);
    f = (struct vs_audit_filter){.agent = "agent-a", .after_seq = UINT64_MAX};
    got.stop_after = 3;
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 3);
    free(got.seqs);
    memset(&got, 0, sizeof got);
    f = (struct vs_audit_filter){.after_seq = N - 1};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 0);
    f = (struct vs_audit_filter){.since_ns = BASE_NS + (uint64_t)N * 1000, .after_seq = UINT64_MAX};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 0);
    f = (struct vs_audit_filter){.since_ns = 10, .until_ns = 5, .after_seq = UINT64_MAX};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 0);
    assert_int_equal(vs_audit_store_query(s, &f, NULL, NULL), -EINVAL);

    /* An undecodable event is found by sequence and time, never by attribute. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    struct vs_audit_append it = {.event = junk, .len = 3, .stream_seq = N + 1,
                                 .time_ns = BASE_NS + (uint64_t)N * 1000};
    assert_int_equal(vs_audit_store_append(s, &it, 1, NULL), 0);
    f = (struct vs_audit_filter){.after_seq = N - 1};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 1);
    assert_int_equal(got.seqs[0], N);
    f = (struct vs_audit_filter){.min_severity = 1, .after_seq = N - 1};
    assert_int_equal(vs_audit_store_query(s, &f, collect_cb, &got), 0);
    free(got.seqs);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

/* ---- map growth, checkpoints, backup ------------------------------------------ */

static void test_map_full_growth(void **state)
{
    (void)state;
    enum { N = 50000 };
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 64 * 1024, false); /* 16 pages */
    append_range(s, 0, N, 1000);
    assert_int_equal(vs_audit_store_size(s), N);
    assert_int_equal(vs_audit_store_applied(s), N);
    uint8_t root[H];
    uint64_t bad;
    assert_int_equal(vs_audit_store_root(s, N, root), 0);
    assert_int_equal(vs_audit_store_verify(s, N, root, &bad), 0);
    vs_audit_store_close(s);
    /* Reopened with the tiny size again: the map starts where it grew to. */
    s = open_store(dir, 64 * 1024, false);
    append_range(s, N, 100, 100);
    assert_int_equal(vs_audit_store_size(s), N + 100);
    assert_int_equal(vs_audit_store_verify(s, N, root, &bad), 0);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

static void test_checkpoints(void **state)
{
    (void)state;
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    vs_audit_store *s = open_store(dir, 0, false);
    char *note = (char *)1;
    uint64_t size = 99;
    assert_int_equal(vs_audit_store_last_checkpoint(s, &note, &size), -ENOENT);
    assert_null(note);
    append_range(s, 0, 20, 20);
    assert_int_equal(vs_audit_store_put_checkpoint(s, 21, "x", 1), -ERANGE);
    assert_int_equal(vs_audit_store_put_checkpoint(s, 5, "five", 4), 0);
    assert_int_equal(vs_audit_store_put_checkpoint(s, 20, "twenty", 6), 0);
    assert_int_equal(vs_audit_store_put_checkpoint(s, 10, "ten", 3), 0);
    assert_int_equal(vs_audit_store_last_checkpoint(s, &note, &size), 0);
    assert_string_equal(note, "twenty");
    assert_int_equal(size, 20);
    free(note);
    /* The same size again replaces its note (a re-signed checkpoint). */
    const char text[] = "origin\n20\nroot\n\n\xe2\x80\x94 key sig\n";
    assert_int_equal(vs_audit_store_put_checkpoint(s, 20, text, sizeof text - 1), 0);
    vs_audit_store_close(s);
    s = open_store(dir, 0, true);
    assert_int_equal(vs_audit_store_last_checkpoint(s, &note, &size), 0);
    assert_string_equal(note, text);
    assert_int_equal(size, 20);
    free(note);
    vs_audit_store_close(s);
    vs_scratch_free(dir);
}

struct appender {
    vs_audit_store *s;
    uint64_t n;
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;
    append_range(a->s, 0, a->n, 100);
    return NULL;
}

static void test_backup_while_appending(void **state)
{
    (void)state;
    enum { N = 30000 };
    char *dir = vs_scratch_dir("vs_astore");
    assert_non_null(dir);
    char *live = vs_path(dir, "live"), *copy = vs_path(dir, "copy");
    char *lock = vs_path(copy, "lock.mdb");
    /* A small map, so that it grows while the backup reads. */
    vs_audit_store *s = open_store(live, 256 * 1024, false);
    struct appender a = {s, N};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_thread, &a), 0);
    while (vs_audit_store_size(s) < 3000)
        usleep(1000);
    assert_int_equal(vs_audit_store_backup(s, copy), 0);
    uint64_t at_backup_end = vs_audit_store_size(s);
    assert_int_equal(vs_audit_store_backup(s, copy), -EEXIST);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(vs_audit_store_size(s), N);

    vs_audit_store *c = open_store(copy, 0, true);
    uint64_t k = vs_audit_store_size(c), bad = 0;
    print_message("backup taken at size %llu (live reached %llu by its end)\n",
                  (unsigned long long)k, (unsigned long long)at_backup_end);
    assert_true(k >= 3000 && k <= at_backup_end);
    assert_int_equal(vs_audit_store_applied(c), k);
    uint8_t live_root[H], copy_root[H];
    assert_int_equal(vs_audit_store_root(s, k, live_root), 0);
    assert_int_equal(vs_audit_store_root(c, k, copy_root), 0);
    assert_memory_equal(live_root, copy_root, H);
    assert_int_equal(vs_audit_store_verify(c, k, live_root, &bad), 0);
    /* Verifying the copy read-only wrote nothing, not even a lock file. */
    assert_int_not_equal(access(lock, F_OK), 0);
    /* The copy's proofs match the live log's. */
    uint8_t p[VS_AUDIT_MAX_PROOF][H];
    size_t len = 0;
    uint8_t root_n[H];
    assert_int_equal(vs_audit_store_consistency(c, k / 2, k, p, &len), 0);
    assert_int_equal(vs_audit_store_root(s, k / 2, root_n), 0);
    assert_int_equal(vs_merkle_verify_consistency(k / 2, k, root_n, copy_root, p, len), 0);
    struct collect got = {0};
    struct vs_audit_filter f = {.agent = "agent-b", .after_seq = UINT64_MAX, .limit = 5};
    assert_int_equal(vs_audit_store_query(c, &f, collect_cb, &got), 5);
    assert_int_equal(got.seqs[4], 21);
    free(got.seqs);
    vs_audit_store_close(c);

    assert_int_equal(vs_audit_store_root(s, N, live_root), 0);
    assert_int_equal(vs_audit_store_verify(s, N, live_root, &bad), 0);
    vs_audit_store_close(s);
    free(lock);
    free(live);
    free(copy);
    vs_scratch_free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merkle_verifiers_all_sizes),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_append_get_round_trip),
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_roots_vs_naive),
        cmocka_unit_test(test_store_proofs_all_pairs),
        cmocka_unit_test(test_proofs_10k),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_map_full_growth),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_backup_while_appending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
