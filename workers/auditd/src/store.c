/*
 * store.c - the audit log's LMDB store (vs/audit_store.h): appends events
 * as links of a SHA-256 hash chain and leaves of an RFC 6962 Merkle tree,
 * indexes them, serves roots and proofs, and verifies a log from its raw
 * entries.
 *
 * Why it is shaped this way:
 * - One LMDB environment with named DBs, so that an entry, its hashes, the
 *   subtree hashes it completes, its index keys and the applied stream
 *   sequence are committed in one transaction: after a crash the store is
 *   exactly some prefix of the appends, and the JetStream redelivery of
 *   anything after the applied sequence fills the rest in once.
 * - Group commit: a batch is one write transaction and one durable commit
 *   (no MDB_NOSYNC), which is what makes the log fast and crash-safe.
 * - Keys are big-endian sequence numbers, so entries, hashes and the time
 *   index are appended at the right edge of their B-trees (MDB_APPEND).
 * - Leaf and chain hashes are derivable but stored (hashes DB: leaf | chain
 *   per seq), as are the hashes of complete power-of-two subtrees, so roots
 *   and proofs are O(log n) lookups. A subtree is keyed by its last leaf
 *   and its level (nodes DB: last_seq BE | level), the order in which
 *   appends complete them, so they too go at the right edge.
 * - The attribute index (agent, task, category, severity: one DB, a kind
 *   byte each) is keyed epoch-major: seq >> 8 | kind | len | value | seq.
 *   A value-major key (or a dupsort DB per value) puts every distinct
 *   value of a batch on its own B-tree page - with a thousand agents a
 *   batch of 256 dirtied and fsync'd some 150 pages; epoch-major, a batch
 *   touches only the newest few, and a batch's keys are inserted sorted so
 *   that those past the last key are plain appends. A query walks the
 *   chosen kind epoch by epoch (one seek per 256 entries), picks it by
 *   sampling up to 16 epochs of each candidate, and filters the other
 *   criteria by decoding the event. Times are made non-decreasing on
 *   append, so a time range is a sequence range (idx_time: time | seq).
 * - The map grows on MDB_MAP_FULL: the batch is aborted, the map doubled
 *   (mdb_env_set_mapsize needs no transaction active in this process: a
 *   rwlock holds growth back while readers run) and the batch replayed.
 * - A read-only open never writes the data file (MDB_RDONLY). On a copy
 *   (no lock.mdb) it writes nothing at all: MDB_NOLOCK, no lock file is
 *   created. On a live store (lock.mdb present, auditd appending) it uses
 *   the lock file and registers as a reader, because a MDB_NOLOCK reader
 *   is invisible to the writer, which would recycle the pages it reads.
 * - verify trusts nothing stored: it recomputes every hash from the raw
 *   entries and checks the stored leaf, chain and subtree hashes against
 *   them (roots and proofs are served from those), so a forged subtree
 *   hash is found as well as a forged entry. The indexes are not evidence
 *   and verify does not read them: a query re-checks every entry it
 *   returns against the filter, so a forged index key can hide an entry
 *   from a query but never make a wrong one match.
 *
 * All functions return 0 or -errno and never exit. LMDB's own codes are
 * mapped by vs_lmdb_err() (lmdb_util.h); MDB_MAP_FULL makes the writer grow
 * the map and replay the batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "merkle_int.h"
#include "vs/audit_codec.h"
#include "vs/lmdb_util.h"
#include "vs/v1/audit.pb-c.h"

/* Entry encoding (see the header): offsets of each field. */

#define HASHES_LEN (2 * VS_HASH_LEN) /* leaf | chain */
#define NODE_KEY_LEN 9               /* last leaf seq BE | level */
#define IDX_MAXKEY 255               /* longer index values are cut; queries re-check */
#define IDX_EPOCH_BITS 8             /* index epoch: 256 sequence numbers */
#define IDX_EPOCH_LEN (UINT64_C(1) << IDX_EPOCH_BITS)
#define IDX_KEY_MAX (8 + 1 + 1 + IDX_MAXKEY + 8)
/* Kinds of the attribute index. */
#define KIND_AGENT 'a'
#define KIND_CATEGORY 'c'
#define KIND_SEVERITY 's'
#define KIND_TASK 't'
#define IDX_SAMPLES 16               /* epochs sampled to estimate an index's selectivity */
#define DEFAULT_MAP_SIZE (UINT64_C(256) << 20)
#define STORE_VERSION 1
#define DEFAULT_LIMIT 100

struct vs_audit_store {
    MDB_env *env;
    MDB_dbi entries, hashes, nodes, meta, checkpoints;
    MDB_dbi idx_attr, idx_time;
    bool read_only;
    bool nolock; /* MDB_NOLOCK: a read-only copy without a lock file */
    /* Read-held by every transaction, write-held to resize the map. */
    pthread_rwlock_t maplock;
    /* Serializes our write transactions (and the encoding buffer). */
    pthread_mutex_t writer;
    uint8_t *enc;
    size_t enc_cap;
    uint8_t *getbuf;
    size_t get_cap;
    /* The attribute index keys of the batch being appended: bytes in
     * ikeys, one irec per key, sorted and inserted at the end. */
    uint8_t *ikeys;
    size_t ikeys_len, ikeys_cap;
    struct irec {
        uint32_t off, len;
    } *irecs;
    size_t nirecs, irecs_cap;
    /* Decoding arena (arena_alloc), reset for each event. */
    _Alignas(16) uint8_t arena[16384];
    size_t arena_used;
};

static const struct {
    const char *name;
    unsigned flags;
    size_t off;
} db_specs[] = {
    {"entries", 0, offsetof(struct vs_audit_store, entries)},
    {"hashes", 0, offsetof(struct vs_audit_store, hashes)},
    {"nodes", 0, offsetof(struct vs_audit_store, nodes)},
    {"meta", 0, offsetof(struct vs_audit_store, meta)},
    {"checkpoints", 0, offsetof(struct vs_audit_store, checkpoints)},
    {"idx_attr", 0, offsetof(struct vs_audit_store, idx_attr)},
    {"idx_time", 0, offsetof(struct vs_audit_store, idx_time)},
};

/* ---- small helpers --------------------------------------------------------- */



static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}



/* A parsed entry: pointers into the value it came from. */
/* The entry encoding and its hashes are the codec's (audit_codec.c), the
 * one definition shared with vs-auditd's export and import checks. */
static bool parse_entry(const MDB_val *v, struct vs_audit_fields *p)
{
    return vs_audit_codec_decode(v->mv_data, v->mv_size, p) == 0;
}

/* leaf = SHA-256(0x00 | entry), chain = SHA-256(entry). */
static void entry_hashes(const uint8_t *b, size_t n, uint8_t leaf[VS_HASH_LEN],
                         uint8_t chain[VS_HASH_LEN])
{
    vs_audit_codec_chain_hash(b, n, chain);
    vs_audit_codec_leaf_hash(b, n, leaf);
}

/* ---- transactions --------------------------------------------------------------- */

/* Adopt a map grown by another process (MDB_MAP_RESIZED): needs every
 * transaction of this process ended. One still open - a read call nested
 * in a query callback - makes it give up with -EAGAIN after about 200 ms
 * instead of deadlocking. */
static int adopt_map(vs_audit_store *s)
{
    for (int i = 0; i < 200; i++) {
        if (pthread_rwlock_trywrlock(&s->maplock) == 0) {
            int rc = mdb_env_set_mapsize(s->env, 0);
            pthread_rwlock_unlock(&s->maplock);
            return vs_lmdb_err(rc);
        }
        usleep(1000);
    }
    return -EAGAIN;
}

/* Begin a read transaction holding the map lock; read_end releases both.
 * Retries once after clearing stale readers (MDB_READERS_FULL) or
 * adopting a map grown by another process (MDB_MAP_RESIZED). */
static int read_begin(vs_audit_store *s, MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&s->maplock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&s->maplock);
        if (tries >= 2)
            return vs_lmdb_err(rc);
        if (rc == MDB_READERS_FULL && !s->nolock) {
            int dead = 0;
            mdb_reader_check(s->env, &dead);
        } else if (rc == MDB_MAP_RESIZED) {
            int arc = adopt_map(s);
            if (arc)
                return arc;
        } else {
            return vs_lmdb_err(rc);
        }
    }
}

static void read_end(vs_audit_store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->maplock);
}

/* Double the map. Called with no transaction of ours open; waits for the
 * in-process readers (maplock) as mdb_env_set_mapsize requires. */
static int grow_map(vs_audit_store *s)
{
    pthread_rwlock_wrlock(&s->maplock);
    MDB_envinfo info;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0) {
        if (info.me_mapsize > SIZE_MAX / 2)
            rc = ENOSPC;
        else
            rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
    }
    pthread_rwlock_unlock(&s->maplock);
    return rc == ENOSPC ? -ENOSPC : vs_lmdb_err(rc);
}

typedef int (*write_fn)(vs_audit_store *s, MDB_txn *txn, void *arg);

/* Run fn in a write transaction and commit it durably. fn returns 0 /
 * -errno (or VS_LMDB_MAP_FULL via vs_lmdb_err) and must start from scratch
 * on every call: on a full map the transaction is aborted, the map
 * doubled and fn run again. */
static int run_write(vs_audit_store *s, write_fn fn, void *arg)
{
    if (s->read_only)
        return -EROFS;
    pthread_mutex_lock(&s->writer);
    int rc;
    int resized = 0;
    for (;;) {
        pthread_rwlock_rdlock(&s->maplock);
        MDB_txn *txn = NULL;
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED && resized++ < 2) {
            pthread_rwlock_unlock(&s->maplock);
            rc = adopt_map(s);
            if (rc)
                break;
            continue;
        }
        if (rc) {
            pthread_rwlock_unlock(&s->maplock);
            rc = vs_lmdb_err(rc);
            break;
        }
        rc = fn(s, txn, arg);
        if (rc == 0)
            rc = vs_lmdb_err(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&s->maplock);
        if (rc != VS_LMDB_MAP_FULL)
            break;
        rc = grow_map(s);
        if (rc)
            break;
    }
    pthread_mutex_unlock(&s->writer);
    return rc;
}

static int meta_get(vs_audit_store *s, MDB_txn *txn, const char *name, uint64_t *v)
{
    MDB_val k = vs_mval(name, strlen(name)), d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc)
        return vs_lmdb_err(rc);
    if (d.mv_size != 8)
        return -EBADMSG;
    *v = vs_get_be64(d.mv_data);
    return 0;
}

static int meta_has(vs_audit_store *s, MDB_txn *txn, const char *name)
{
    MDB_val k = vs_mval(name, strlen(name)), d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    return rc == MDB_NOTFOUND ? 0 : rc == 0 ? 1 : vs_lmdb_err(rc);
}

static int meta_put(vs_audit_store *s, MDB_txn *txn, const char *name, uint64_t v)
{
    uint8_t b[8];
    vs_put_be64(b, v);
    MDB_val k = vs_mval(name, strlen(name)), d = vs_mval(b, 8);
    return vs_lmdb_err(mdb_put(txn, s->meta, &k, &d, 0));
}

/* ---- stored Merkle hashes --------------------------------------------------- */

struct txn_ref {
    vs_audit_store *s;
    MDB_txn *txn;
    MDB_cursor *nodes; /* appending: a cursor at the right edge of nodes */
};

/* Subtree (level, index) covers leaves index << level .. ((index + 1) <<
 * level) - 1 and is keyed by that last leaf, then its level: the order in
 * which appends complete subtrees. */
static void node_key(uint8_t k[NODE_KEY_LEN], unsigned level, uint64_t index)
{
    vs_put_be64(k, ((index + 1) << level) - 1);
    k[8] = (uint8_t)level;
}

/* vs_merkle_fetch_fn over the hashes (level 0) and nodes DBs. A missing
 * hash means a damaged store: -EBADMSG. */
static int fetch_stored(void *ctx, unsigned level, uint64_t index, uint8_t out[VS_HASH_LEN])
{
    struct txn_ref *t = ctx;
    uint8_t kb[NODE_KEY_LEN];
    MDB_val k, d;
    int rc;
    if (level == 0) {
        vs_put_be64(kb, index);
        k = vs_mval(kb, 8);
        rc = mdb_get(t->txn, t->s->hashes, &k, &d);
        if (rc == 0 && d.mv_size != HASHES_LEN)
            return -EBADMSG;
    } else {
        node_key(kb, level, index);
        k = vs_mval(kb, NODE_KEY_LEN);
        rc = mdb_get(t->txn, t->s->nodes, &k, &d);
        if (rc == 0 && d.mv_size != VS_HASH_LEN)
            return -EBADMSG;
    }
    if (rc == MDB_NOTFOUND)
        return -EBADMSG;
    if (rc)
        return vs_lmdb_err(rc);
    memcpy(out, d.mv_data, VS_HASH_LEN);
    return 0;
}

/* vs_merkle_emit_fn storing each completed subtree. */
static int emit_stored(void *ctx, unsigned level, uint64_t index, const uint8_t hash[VS_HASH_LEN])
{
    struct txn_ref *t = ctx;
    uint8_t kb[NODE_KEY_LEN];
    node_key(kb, level, index);
    MDB_val k = vs_mval(kb, NODE_KEY_LEN), d = vs_mval(hash, VS_HASH_LEN);
    return vs_lmdb_err(mdb_cursor_put(t->nodes, &k, &d, MDB_APPEND));
}

/* ---- open / close ------------------------------------------------------------ */

struct open_job {
    uint64_t saved_map;
};

/* Open (create when writable) every named DB; check or write the version. */
static int open_dbs(vs_audit_store *s, MDB_txn *txn, bool create)
{
    for (size_t i = 0; i < sizeof db_specs / sizeof db_specs[0]; i++) {
        MDB_dbi *dbi = (MDB_dbi *)((char *)s + db_specs[i].off);
        int rc = mdb_dbi_open(txn, db_specs[i].name, db_specs[i].flags | (create ? MDB_CREATE : 0),
                              dbi);
        if (rc == MDB_NOTFOUND)
            return -EBADMSG; /* not an audit store, or a damaged one */
        if (rc)
            return vs_lmdb_err(rc);
    }
    uint64_t version = 0;
    int has = meta_has(s, txn, "version");
    if (has < 0)
        return has;
    if (has) {
        int rc = meta_get(s, txn, "version", &version);
        if (rc)
            return rc;
        return version == STORE_VERSION ? 0 : -ENOTSUP;
    }
    return create ? meta_put(s, txn, "version", STORE_VERSION) : -EBADMSG;
}

static int open_txn(vs_audit_store *s, MDB_txn *txn, void *arg)
{
    struct open_job *j = arg;
    int rc = open_dbs(s, txn, true);
    return rc ? rc : meta_get(s, txn, "map_size", &j->saved_map);
}


/* Open the environment. MDB_NOTLS: read transactions are not tied to
 * threads (backup and queries may run beside the appending thread).
 * Read-only: with the lock file when there is one (a live store), else -
 * or when the lock file cannot be opened (read-only media) - MDB_NOLOCK. */
static int env_open(vs_audit_store *s, const char *path)
{
    if (!s->read_only)
        return vs_lmdb_err(mdb_env_open(s->env, path, MDB_NOTLS, 0600));
    char lock[PATH_MAX];
    if (snprintf(lock, sizeof lock, "%s/lock.mdb", path) >= (int)sizeof lock)
        return -ENAMETOOLONG;
    if (access(lock, F_OK) == 0) {
        int rc = mdb_env_open(s->env, path, MDB_NOTLS | MDB_RDONLY, 0600);
        if (rc != EACCES && rc != EROFS && rc != EPERM)
            return vs_lmdb_err(rc);
        /* A failed mdb_env_open leaves a handle only fit for closing. */
        mdb_env_close(s->env);
        s->env = NULL;
        rc = mdb_env_create(&s->env);
        if (rc == 0)
            rc = mdb_env_set_maxdbs(s->env, 16);
        if (rc)
            return vs_lmdb_err(rc);
    }
    s->nolock = true;
    return vs_lmdb_err(mdb_env_open(s->env, path, MDB_NOTLS | MDB_RDONLY | MDB_NOLOCK, 0600));
}

int vs_audit_store_open(const struct vs_audit_store_opts *o, vs_audit_store **out)
{
    if (o == NULL || o->path == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    vs_audit_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->read_only = o->read_only;
    pthread_rwlock_init(&s->maplock, NULL);
    pthread_mutex_init(&s->writer, NULL);

    int rc;
    if (!s->read_only && mkdir(o->path, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        goto fail;
    }
    rc = vs_lmdb_err(mdb_env_create(&s->env));
    if (rc)
        goto fail;
    rc = vs_lmdb_err(mdb_env_set_maxdbs(s->env, 16));
    if (rc == 0 && !s->read_only)
        rc = vs_lmdb_err(
            mdb_env_set_mapsize(s->env, vs_lmdb_page_round(o->map_size ? o->map_size : DEFAULT_MAP_SIZE)));
    if (rc)
        goto fail;
    rc = env_open(s, o->path);
    if (rc)
        goto fail;

    if (s->read_only) {
        MDB_txn *txn;
        rc = read_begin(s, &txn);
        if (rc)
            goto fail;
        rc = open_dbs(s, txn, false);
        /* Committing (not aborting) keeps the DBI handles open. */
        if (rc == 0)
            rc = vs_lmdb_err(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&s->maplock);
        if (rc)
            goto fail;
    } else {
        int dead = 0;
        mdb_reader_check(s->env, &dead); /* readers of a killed process */
        struct open_job j = {0};
        rc = run_write(s, open_txn, &j);
        if (rc)
            goto fail;
        MDB_envinfo info;
        /* Start at the size the map had grown to, not the small default. */
        if (mdb_env_info(s->env, &info) == 0 && j.saved_map > info.me_mapsize) {
            rc = vs_lmdb_err(mdb_env_set_mapsize(s->env, vs_lmdb_page_round(j.saved_map)));
            if (rc)
                goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    vs_audit_store_close(s);
    return rc;
}

void vs_audit_store_close(vs_audit_store *s)
{
    if (s == NULL)
        return;
    if (s->env)
        mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->maplock);
    pthread_mutex_destroy(&s->writer);
    free(s->enc);
    free(s->getbuf);
    free(s->ikeys);
    free(s->irecs);
    free(s);
}

/* ---- append ----------------------------------------------------------------- */

struct append_job {
    const struct vs_audit_append *items;
    size_t n;
    size_t appended;
};

/* An attribute index key: epoch BE | kind | len | value | seq BE; returns
 * its length. len <= IDX_MAXKEY. */
static size_t idx_key(uint8_t k[IDX_KEY_MAX], uint64_t epoch, uint8_t kind, const void *val,
                      size_t len, uint64_t seq)
{
    vs_put_be64(k, epoch);
    k[8] = kind;
    k[9] = (uint8_t)len;
    memcpy(k + 10, val, len);
    vs_put_be64(k + 10 + len, seq);
    return 18 + len;
}

/* Queue the index key of seq under (kind, value) for this batch (values
 * over IDX_MAXKEY are cut: queries re-check the decoded event). Empty
 * values are not indexed. */
static int index_add(vs_audit_store *s, uint8_t kind, const void *val, size_t len, uint64_t seq)
{
    if (len == 0)
        return 0;
    if (len > IDX_MAXKEY)
        len = IDX_MAXKEY;
    if (s->ikeys_cap - s->ikeys_len < IDX_KEY_MAX) {
        size_t cap = s->ikeys_cap ? s->ikeys_cap * 2 : 64 * 1024;
        uint8_t *nb = cap > UINT32_MAX ? NULL : realloc(s->ikeys, cap);
        if (nb == NULL)
            return -ENOMEM;
        s->ikeys = nb;
        s->ikeys_cap = cap;
    }
    if (s->nirecs == s->irecs_cap) {
        size_t cap = s->irecs_cap ? s->irecs_cap * 2 : 1024;
        struct irec *nr = realloc(s->irecs, cap * sizeof *nr);
        if (nr == NULL)
            return -ENOMEM;
        s->irecs = nr;
        s->irecs_cap = cap;
    }
    size_t n = idx_key(s->ikeys + s->ikeys_len, seq >> IDX_EPOCH_BITS, kind, val, len, seq);
    s->irecs[s->nirecs++] = (struct irec){(uint32_t)s->ikeys_len, (uint32_t)n};
    s->ikeys_len += n;
    return 0;
}

/* LMDB's default key order: memcmp, then the shorter first. */
static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int d = memcmp(a, b, alen < blen ? alen : blen);
    return d ? d : alen < blen ? -1 : alen > blen;
}

static int irec_cmp(const void *a, const void *b, void *arg)
{
    const struct irec *x = a, *y = b;
    const uint8_t *base = arg;
    return key_cmp(base + x->off, x->len, base + y->off, y->len);
}

/* Insert the batch's index keys in order: those past the last key of the
 * DB are appended at the right edge (MDB_APPEND), the rest inserted. */
static int index_flush(vs_audit_store *s, MDB_txn *txn)
{
    if (s->nirecs == 0)
        return 0;
    qsort_r(s->irecs, s->nirecs, sizeof s->irecs[0], irec_cmp, s->ikeys);
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->idx_attr, &c);
    if (rc)
        return vs_lmdb_err(rc);
    uint8_t last[IDX_KEY_MAX];
    size_t last_len = 0;
    MDB_val k, d;
    rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
    if (rc == 0 && k.mv_size <= IDX_KEY_MAX) {
        memcpy(last, k.mv_data, k.mv_size);
        last_len = k.mv_size;
    } else if (rc == 0) {
        memset(last, 0xff, IDX_KEY_MAX); /* a foreign key: never append */
        last_len = IDX_KEY_MAX;
    } else if (rc != MDB_NOTFOUND) {
        mdb_cursor_close(c);
        return vs_lmdb_err(rc);
    }
    rc = 0;
    for (size_t i = 0; i < s->nirecs && rc == 0; i++) {
        const uint8_t *key = s->ikeys + s->irecs[i].off;
        size_t len = s->irecs[i].len;
        bool append = last_len == 0 || key_cmp(key, len, last, last_len) > 0;
        k = vs_mval(key, len);
        d = vs_mval(NULL, 0);
        rc = mdb_cursor_put(c, &k, &d, append ? MDB_APPEND : 0);
        if (rc == 0 && append) {
            memcpy(last, key, len);
            last_len = len;
        }
    }
    mdb_cursor_close(c);
    return vs_lmdb_err(rc);
}

static uint8_t severity_key(int sev)
{
    return sev < 0 ? 0 : sev > 255 ? 255 : (uint8_t)sev;
}

/* protobuf-c allocator for decoding one event at a time: a bump arena
 * that is reset before each event, with malloc for what does not fit. It
 * spares the append path a dozen malloc/free pairs per event. */
static void *arena_alloc(void *data, size_t n)
{
    vs_audit_store *s = data;
    n = (n + 15) & ~(size_t)15;
    if (n <= sizeof s->arena - s->arena_used) {
        void *p = s->arena + s->arena_used;
        s->arena_used += n;
        return p;
    }
    return malloc(n);
}

static void arena_free(void *data, void *p)
{
    vs_audit_store *s = data;
    uintptr_t a = (uintptr_t)s->arena, q = (uintptr_t)p;
    if (q < a || q >= a + sizeof s->arena)
        free(p);
}

/* Queue the index keys of what decodes of one event; an undecodable
 * event is not indexed. */
static int index_event(vs_audit_store *s, uint64_t seq, const uint8_t *event, size_t len)
{
    static const uint8_t empty[1];
    ProtobufCAllocator pa = {arena_alloc, arena_free, s};
    s->arena_used = 0;
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(&pa, len, len ? event : empty);
    if (ev == NULL)
        return 0;
    int rc = 0;
    if (ev->agent)
        rc = index_add(s, KIND_AGENT, ev->agent, strlen(ev->agent), seq);
    if (rc == 0 && ev->category)
        rc = index_add(s, KIND_CATEGORY, ev->category, strlen(ev->category), seq);
    if (rc == 0)
        rc = index_add(s, KIND_TASK, ev->task_id.data, ev->task_id.len, seq);
    if (rc == 0) {
        uint8_t sev = severity_key((int)ev->severity);
        rc = index_add(s, KIND_SEVERITY, &sev, 1, seq);
    }
    vs__v1__audit_event__free_unpacked(ev, &pa);
    return rc;
}

static int append_rows(vs_audit_store *s, MDB_txn *txn, struct append_job *j,
                       MDB_cursor *cur[4]);

/* One batch in txn: the cursors of the right-edge DBs are opened here
 * and closed whatever happens. */
static int append_txn(vs_audit_store *s, MDB_txn *txn, void *arg)
{
    MDB_cursor *cur[4] = {NULL, NULL, NULL, NULL};
    const MDB_dbi dbis[4] = {s->entries, s->hashes, s->nodes, s->idx_time};
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = vs_lmdb_err(mdb_cursor_open(txn, dbis[i], &cur[i]));
    if (rc == 0)
        rc = append_rows(s, txn, arg, cur);
    for (int i = 0; i < 4; i++)
        if (cur[i])
            mdb_cursor_close(cur[i]);
    return rc;
}

/* The rows of a batch: entries, hashes, subtree hashes and the time index
 * go at the right edge of their DBs (cursors cur[0..3], MDB_APPEND); the
 * attribute index keys are queued and inserted sorted at the end. */
static int append_rows(vs_audit_store *s, MDB_txn *txn, struct append_job *j,
                       MDB_cursor *cur[4])
{
    struct txn_ref tr = {s, txn, cur[2]};
    j->appended = 0;
    s->ikeys_len = 0;
    s->nirecs = 0;

    uint64_t size = 0, applied = 0;
    int rc = meta_get(s, txn, "size", &size);
    if (rc == 0)
        rc = meta_get(s, txn, "applied", &applied);
    if (rc)
        return rc;
    uint64_t applied0 = applied;

    /* The chain's last link and the last time. */
    uint8_t prev[VS_HASH_LEN] = {0};
    uint64_t last_time = 0;
    if (size > 0) {
        uint8_t kb[8];
        vs_put_be64(kb, size - 1);
        MDB_val k = vs_mval(kb, 8), d;
        rc = mdb_get(txn, s->hashes, &k, &d);
        if (rc)
            return rc == MDB_NOTFOUND ? -EBADMSG : vs_lmdb_err(rc);
        if (d.mv_size != HASHES_LEN)
            return -EBADMSG;
        memcpy(prev, (uint8_t *)d.mv_data + VS_HASH_LEN, VS_HASH_LEN);
        rc = mdb_get(txn, s->entries, &k, &d);
        struct vs_audit_fields p;
        if (rc)
            return rc == MDB_NOTFOUND ? -EBADMSG : vs_lmdb_err(rc);
        if (!parse_entry(&d, &p))
            return -EBADMSG;
        last_time = p.time_ns;
    }
    struct vs_merkle_frontier fr;
    rc = vs_merkle_frontier_load(&fr, size, fetch_stored, &tr);
    if (rc)
        return rc;

    uint64_t clock = 0;
    for (size_t i = 0; i < j->n; i++) {
        const struct vs_audit_append *it = &j->items[i];
        if (it->stream_seq != 0 && it->stream_seq <= applied)
            continue; /* already applied: a redelivery */
        uint64_t t = it->time_ns;
        if (t == 0)
            t = clock ? clock : (clock = now_ns());
        if (t < last_time)
            t = last_time;

        size_t elen = vs_audit_codec_size(it->len);
        if (elen > s->enc_cap) {
            size_t cap = elen < 4096 ? 4096 : elen;
            uint8_t *nb = realloc(s->enc, cap);
            if (nb == NULL)
                return -ENOMEM;
            s->enc = nb;
            s->enc_cap = cap;
        }
        uint64_t seq = size;
        struct vs_audit_fields f = {.seq = seq, .time_ns = t, .stream_seq = it->stream_seq,
                                    .prev_hash = prev, .event = it->event, .len = it->len};
        rc = vs_audit_codec_encode(&f, s->enc, s->enc_cap);
        if (rc < 0)
            return rc;

        uint8_t kb[8];
        vs_put_be64(kb, seq);
        MDB_val k = vs_mval(kb, 8), d = vs_mval(s->enc, elen);
        rc = vs_lmdb_err(mdb_cursor_put(cur[0], &k, &d, MDB_APPEND));
        if (rc)
            return rc;

        uint8_t h[HASHES_LEN]; /* leaf | chain */
        entry_hashes(s->enc, elen, h, h + VS_HASH_LEN);
        d = vs_mval(h, HASHES_LEN);
        rc = vs_lmdb_err(mdb_cursor_put(cur[1], &k, &d, MDB_APPEND));
        if (rc == 0)
            rc = vs_merkle_frontier_push(&fr, h, emit_stored, &tr);
        if (rc == 0)
            rc = index_event(s, seq, it->event, it->len);
        if (rc)
            return rc;
        uint8_t tk[16];
        vs_put_be64(tk, t);
        vs_put_be64(tk + 8, seq);
        MDB_val tkey = vs_mval(tk, 16), none = vs_mval(NULL, 0);
        rc = vs_lmdb_err(mdb_cursor_put(cur[3], &tkey, &none, MDB_APPEND));
        if (rc)
            return rc;

        memcpy(prev, h + VS_HASH_LEN, VS_HASH_LEN);
        last_time = t;
        size++;
        if (it->stream_seq != 0)
            applied = it->stream_seq;
        j->appended++;
    }
    if (j->appended == 0 && applied == applied0)
        return 0; /* an empty commit writes nothing */
    rc = index_flush(s, txn);
    if (rc == 0)
        rc = meta_put(s, txn, "size", size);
    if (rc == 0)
        rc = meta_put(s, txn, "applied", applied);
    MDB_envinfo info;
    if (rc == 0 && mdb_env_info(s->env, &info) == 0)
        rc = meta_put(s, txn, "map_size", info.me_mapsize);
    return rc;
}

int vs_audit_store_append(vs_audit_store *s, const struct vs_audit_append *items, size_t n,
                          size_t *appended)
{
    if (appended)
        *appended = 0;
    if (s == NULL || (n > 0 && items == NULL))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (items[i].event == NULL && items[i].len > 0)
            return -EINVAL;
        if (items[i].len > VS_AUDIT_MAX_EVENT)
            return -EMSGSIZE;
    }
    if (n == 0)
        return 0;
    struct append_job j = {items, n, 0};
    int rc = run_write(s, append_txn, &j);
    if (rc == 0 && appended)
        *appended = j.appended;
    return rc;
}

/* ---- reads ------------------------------------------------------------------- */

static uint64_t meta_read(vs_audit_store *s, const char *name)
{
    if (s == NULL)
        return 0;
    MDB_txn *txn;
    uint64_t v = 0;
    if (read_begin(s, &txn) != 0)
        return 0;
    if (meta_get(s, txn, name, &v) != 0)
        v = 0;
    read_end(s, txn);
    return v;
}

uint64_t vs_audit_store_size(vs_audit_store *s)
{
    return meta_read(s, "size");
}

uint64_t vs_audit_store_applied(vs_audit_store *s)
{
    return meta_read(s, "applied");
}

/* Fill e from an entry value and its stored hashes (computed when the
 * stored ones are missing). e->event points into v. */
static int fill_entry(vs_audit_store *s, MDB_txn *txn, uint64_t seq, const MDB_val *v,
                      struct vs_audit_entry *e)
{
    struct vs_audit_fields p;
    if (!parse_entry(v, &p) || p.seq != seq)
        return -EBADMSG;
    e->seq = seq;
    e->time_ns = p.time_ns;
    e->stream_seq = p.stream_seq;
    memcpy(e->prev_hash, p.prev_hash, VS_HASH_LEN);
    e->event = p.event;
    e->len = p.len;
    uint8_t kb[8];
    vs_put_be64(kb, seq);
    MDB_val k = vs_mval(kb, 8), d;
    int rc = mdb_get(txn, s->hashes, &k, &d);
    if (rc == 0 && d.mv_size == HASHES_LEN) {
        memcpy(e->leaf_hash, d.mv_data, VS_HASH_LEN);
        memcpy(e->chain_hash, (uint8_t *)d.mv_data + VS_HASH_LEN, VS_HASH_LEN);
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        entry_hashes(v->mv_data, v->mv_size, e->leaf_hash, e->chain_hash);
    } else {
        return vs_lmdb_err(rc);
    }
    return 0;
}

int vs_audit_store_get(vs_audit_store *s, uint64_t seq, struct vs_audit_entry *e)
{
    if (s == NULL || e == NULL)
        return -EINVAL;
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    uint8_t kb[8];
    vs_put_be64(kb, seq);
    MDB_val k = vs_mval(kb, 8), v;
    rc = vs_lmdb_err(mdb_get(txn, s->entries, &k, &v));
    if (rc == 0)
        rc = fill_entry(s, txn, seq, &v, e);
    if (rc == 0) {
        /* Copy the event out of the map: the transaction ends here. */
        size_t need = e->len ? e->len : 1;
        if (need > s->get_cap) {
            uint8_t *nb = realloc(s->getbuf, need);
            if (nb == NULL) {
                rc = -ENOMEM;
            } else {
                s->getbuf = nb;
                s->get_cap = need;
            }
        }
        if (rc == 0) {
            if (e->len)
                memcpy(s->getbuf, e->event, e->len);
            e->event = s->getbuf;
        }
    }
    read_end(s, txn);
    return rc;
}

/* What a tree question needs: the tree of the first `size` leaves, read in
 * one transaction. */
struct tree_query {
    int (*ask)(struct txn_ref *tr, const struct tree_query *q);
    uint64_t a, b;           /* index and size, or size1 and size2 */
    uint8_t (*out)[VS_HASH_LEN];
    size_t *n;
};

/* Run q on the tree in a read transaction; -ERANGE when the log holds
 * fewer than size entries. */
static int tree_ask(vs_audit_store *s, uint64_t size, const struct tree_query *q)
{
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    uint64_t have = 0;
    rc = meta_get(s, txn, "size", &have);
    if (rc == 0 && size > have)
        rc = -ERANGE;
    if (rc == 0) {
        struct txn_ref tr = {s, txn, NULL};
        rc = q->ask(&tr, q);
    }
    read_end(s, txn);
    return rc;
}

static int ask_root(struct txn_ref *tr, const struct tree_query *q)
{
    if (q->a == 0) {
        vs_merkle_empty_root(q->out[0]);
        return 0;
    }
    return vs_merkle_range_hash(fetch_stored, tr, 0, q->a, q->out[0]);
}

static int ask_inclusion(struct txn_ref *tr, const struct tree_query *q)
{
    return vs_merkle_path(fetch_stored, tr, q->a, q->b, q->out, q->n);
}

static int ask_consistency(struct txn_ref *tr, const struct tree_query *q)
{
    return vs_merkle_proof(fetch_stored, tr, q->a, q->b, q->out, q->n);
}

int vs_audit_store_root(vs_audit_store *s, uint64_t size, uint8_t root[VS_HASH_LEN])
{
    if (s == NULL || root == NULL)
        return -EINVAL;
    struct tree_query q = {.ask = ask_root, .a = size, .out = (uint8_t(*)[VS_HASH_LEN])root};
    return tree_ask(s, size, &q);
}

int vs_audit_store_inclusion(vs_audit_store *s, uint64_t index, uint64_t size,
                             uint8_t path[][VS_HASH_LEN], size_t *n)
{
    if (s == NULL || path == NULL || n == NULL)
        return -EINVAL;
    *n = 0;
    if (index >= size)
        return -EINVAL;
    struct tree_query q = {.ask = ask_inclusion, .a = index, .b = size, .out = path, .n = n};
    return tree_ask(s, size, &q);
}

int vs_audit_store_consistency(vs_audit_store *s, uint64_t size1, uint64_t size2,
                               uint8_t proof[][VS_HASH_LEN], size_t *n)
{
    if (s == NULL || proof == NULL || n == NULL)
        return -EINVAL;
    *n = 0;
    if (size1 > size2)
        return -EINVAL;
    struct tree_query q = {.ask = ask_consistency, .a = size1, .b = size2, .out = proof, .n = n};
    return tree_ask(s, size2, &q);
}

/* ---- verify ------------------------------------------------------------------- */

struct verify_ctx {
    MDB_cursor *c;   /* on the nodes DB */
    bool positioned; /* c is on the previous subtree */
    uint64_t bad;    /* first leaf of a mismatching subtree */
};

/* vs_merkle_emit_fn comparing a recomputed subtree with the stored one.
 * Subtrees complete in key order, so the cursor steps forward instead of
 * searching the tree (and searches when a key is out of place). */
static int verify_node(void *ctx, unsigned level, uint64_t index, const uint8_t hash[VS_HASH_LEN])
{
    struct verify_ctx *vc = ctx;
    uint8_t kb[NODE_KEY_LEN];
    node_key(kb, level, index);
    MDB_val k = vs_mval(kb, NODE_KEY_LEN), d;
    int rc = MDB_NOTFOUND;
    if (vc->positioned) {
        MDB_val nk;
        rc = mdb_cursor_get(vc->c, &nk, &d, MDB_NEXT);
        if (rc == 0 && (nk.mv_size != NODE_KEY_LEN || memcmp(nk.mv_data, kb, NODE_KEY_LEN) != 0))
            rc = MDB_NOTFOUND;
    }
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(vc->c, &k, &d, MDB_SET_KEY);
    vc->positioned = rc == 0;
    if (rc == 0 && d.mv_size == VS_HASH_LEN && memcmp(d.mv_data, hash, VS_HASH_LEN) == 0)
        return 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return vs_lmdb_err(rc);
    vc->bad = index << level;
    return -EBADMSG;
}

int vs_audit_store_verify(vs_audit_store *s, uint64_t want_size,
                          const uint8_t want_root[VS_HASH_LEN], uint64_t *first_bad)
{
    if (s == NULL)
        return -EINVAL;
    uint64_t ignored;
    if (first_bad == NULL)
        first_bad = &ignored;
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    struct verify_ctx *vc = calloc(1, sizeof *vc);
    struct vs_merkle_frontier *fr = calloc(1, sizeof *fr);
    MDB_cursor *ec = NULL, *hc = NULL;
    uint64_t meta_size = 0;
    if (vc == NULL || fr == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    vc->bad = UINT64_MAX;
    rc = meta_get(s, txn, "size", &meta_size);
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(txn, s->nodes, &vc->c));
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(txn, s->entries, &ec));
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(txn, s->hashes, &hc));
    if (rc)
        goto out;

    uint8_t prev[VS_HASH_LEN] = {0};
    uint8_t root_at[VS_HASH_LEN] = {0};
    if (want_size == 0)
        vs_merkle_empty_root(root_at);
    uint64_t seq = 0, bad = UINT64_MAX;
    MDB_val k, v, hk, hv;
    int erc = mdb_cursor_get(ec, &k, &v, MDB_FIRST);
    int hrc = mdb_cursor_get(hc, &hk, &hv, MDB_FIRST);
    for (; erc == 0; erc = mdb_cursor_get(ec, &k, &v, MDB_NEXT)) {
        struct vs_audit_fields p;
        /* Key: the next sequence; a larger one is a gap (deleted entry). */
        if (k.mv_size != 8 || vs_get_be64(k.mv_data) != seq || !parse_entry(&v, &p) ||
            p.seq != seq || sodium_memcmp(p.prev_hash, prev, VS_HASH_LEN) != 0) {
            bad = seq;
            break;
        }
        uint8_t leaf[VS_HASH_LEN], chain[VS_HASH_LEN];
        entry_hashes(v.mv_data, v.mv_size, leaf, chain);
        /* The stored hashes must be those of the bytes stored. */
        if (hrc != 0 || hk.mv_size != 8 || vs_get_be64(hk.mv_data) != seq ||
            hv.mv_size != HASHES_LEN || memcmp(hv.mv_data, leaf, VS_HASH_LEN) != 0 ||
            memcmp((uint8_t *)hv.mv_data + VS_HASH_LEN, chain, VS_HASH_LEN) != 0) {
            bad = seq;
            break;
        }
        rc = vs_merkle_frontier_push(fr, leaf, verify_node, vc);
        if (rc) {
            if (vc->bad == UINT64_MAX)
                goto out; /* an LMDB error, not a finding */
            bad = vc->bad;
            rc = 0;
            break;
        }
        memcpy(prev, chain, VS_HASH_LEN);
        seq++;
        if (seq == want_size)
            vs_merkle_frontier_root(fr, root_at);
        hrc = mdb_cursor_get(hc, &hk, &hv, MDB_NEXT);
    }
    if (bad == UINT64_MAX && erc != 0 && erc != MDB_NOTFOUND)
        bad = seq; /* a page LMDB cannot read: damage at this point */

    if (bad != UINT64_MAX) {
        *first_bad = bad;
        rc = -EBADMSG;
    } else if (seq < want_size) {
        *first_bad = seq;
        rc = -ENODATA;
    } else if (seq != meta_size) {
        *first_bad = seq < meta_size ? seq : meta_size;
        rc = -EBADMSG;
    } else if (want_root != NULL && sodium_memcmp(root_at, want_root, VS_HASH_LEN) != 0) {
        *first_bad = 0; /* self-consistent but not the log the checkpoint saw */
        rc = -EBADMSG;
    } else {
        rc = 0;
    }
out:
    if (vc && vc->c)
        mdb_cursor_close(vc->c);
    if (ec)
        mdb_cursor_close(ec);
    if (hc)
        mdb_cursor_close(hc);
    free(vc);
    free(fr);
    read_end(s, txn);
    return rc;
}

/* ---- checkpoints -------------------------------------------------------------- */

struct ckpt_job {
    uint64_t size;
    const char *note;
    size_t len;
};

static int ckpt_txn(vs_audit_store *s, MDB_txn *txn, void *arg)
{
    struct ckpt_job *j = arg;
    uint64_t size = 0;
    int rc = meta_get(s, txn, "size", &size);
    if (rc)
        return rc;
    if (j->size > size)
        return -ERANGE;
    uint8_t kb[8];
    vs_put_be64(kb, j->size);
    MDB_val k = vs_mval(kb, 8), d = vs_mval(j->note, j->len);
    return vs_lmdb_err(mdb_put(txn, s->checkpoints, &k, &d, 0));
}

int vs_audit_store_put_checkpoint(vs_audit_store *s, uint64_t size, const char *note, size_t len)
{
    if (s == NULL || (note == NULL && len > 0))
        return -EINVAL;
    struct ckpt_job j = {size, note ? note : "", len};
    return run_write(s, ckpt_txn, &j);
}

int vs_audit_store_last_checkpoint(vs_audit_store *s, char **note, uint64_t *size)
{
    if (s == NULL || note == NULL)
        return -EINVAL;
    *note = NULL;
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    rc = vs_lmdb_err(mdb_cursor_open(txn, s->checkpoints, &c));
    if (rc == 0) {
        MDB_val k, d;
        rc = vs_lmdb_err(mdb_cursor_get(c, &k, &d, MDB_LAST));
        if (rc == 0 && k.mv_size != 8)
            rc = -EBADMSG;
        if (rc == 0) {
            char *buf = malloc(d.mv_size + 1);
            if (buf == NULL) {
                rc = -ENOMEM;
            } else {
                memcpy(buf, d.mv_data, d.mv_size);
                buf[d.mv_size] = '\0';
                *note = buf;
                if (size)
                    *size = vs_get_be64(k.mv_data);
            }
        }
        mdb_cursor_close(c);
    }
    read_end(s, txn);
    return rc;
}

/* ---- query --------------------------------------------------------------------- */

/* An attribute index walked epoch by epoch: the matching seqs of one
 * epoch (at most IDX_EPOCH_LEN) are gathered in order, then handed out.
 * For the severity index with a minimum (at_least), every value >= the
 * minimum in the epoch is gathered and the seqs sorted. */
struct isrc {
    MDB_cursor *c;
    uint8_t kind;
    const void *val; /* the value; severity: the one-byte minimum */
    size_t vlen;
    bool at_least;
    uint64_t lo, hi;       /* seq bounds */
    uint64_t epoch, last;  /* next epoch to read, last epoch */
    uint64_t est;          /* estimated matches in [lo, hi] */
    uint64_t buf[IDX_EPOCH_LEN];
    size_t n, pos;
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Gather the seqs in [lo, hi] of one epoch. A malformed key ends it. */
static int isrc_fill(struct isrc *src, uint64_t epoch)
{
    src->n = src->pos = 0;
    uint64_t from = epoch << IDX_EPOCH_BITS;
    if (from < src->lo)
        from = src->lo;
    uint8_t kb[IDX_KEY_MAX];
    MDB_val k = vs_mval(kb, idx_key(kb, epoch, src->kind, src->val, src->vlen,
                                 src->at_least ? 0 : from)),
            d;
    int rc = mdb_cursor_get(src->c, &k, &d, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(src->c, &k, &d, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < 18 || vs_get_be64(p) != epoch || p[8] != src->kind ||
            k.mv_size != 18u + p[9])
            break;
        size_t len = p[9];
        if (src->at_least ? len != 1
                          : len != src->vlen || memcmp(p + 10, src->val, len) != 0)
            break;
        uint64_t seq = vs_get_be64(p + 10 + len);
        if (seq > src->hi && !src->at_least)
            break;
        if (seq >= src->lo && seq <= src->hi && src->n < IDX_EPOCH_LEN)
            src->buf[src->n++] = seq;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return vs_lmdb_err(rc);
    if (src->at_least && src->n > 1)
        qsort(src->buf, src->n, sizeof src->buf[0], cmp_u64);
    return 0;
}

/* Next seq in increasing order: 0, -ENOENT when exhausted, or -errno. */
static int isrc_next(struct isrc *src, uint64_t *seq)
{
    while (src->pos == src->n) {
        if (src->epoch > src->last)
            return -ENOENT;
        int rc = isrc_fill(src, src->epoch++);
        if (rc)
            return rc;
    }
    *seq = src->buf[src->pos++];
    return 0;
}

/* Estimate the matches in [lo, hi]: exact over at most IDX_SAMPLES
 * epochs, else scaled from IDX_SAMPLES epochs spread evenly. */
static int isrc_estimate(struct isrc *src)
{
    uint64_t e0 = src->lo >> IDX_EPOCH_BITS, e1 = src->hi >> IDX_EPOCH_BITS;
    uint64_t ne = e1 - e0 + 1, hits = 0, seen = 0;
    for (uint64_t i = 0; i < (ne < IDX_SAMPLES ? ne : IDX_SAMPLES); i++) {
        uint64_t e = ne <= IDX_SAMPLES ? e0 + i : e0 + i * (ne - 1) / (IDX_SAMPLES - 1);
        int rc = isrc_fill(src, e);
        if (rc)
            return rc;
        uint64_t a = e << IDX_EPOCH_BITS, b = a + IDX_EPOCH_LEN - 1;
        seen += (b < src->hi ? b : src->hi) - (a > src->lo ? a : src->lo) + 1;
        hits += src->n;
    }
    double range = (double)(src->hi - src->lo) + 1.0;
    src->est = ne <= IDX_SAMPLES ? hits : (uint64_t)((double)hits / (double)seen * range);
    return 0;
}

static int isrc_open(MDB_txn *txn, MDB_dbi dbi, uint8_t kind, const void *val, size_t vlen,
                     bool at_least, uint64_t lo, uint64_t hi, struct isrc **out)
{
    struct isrc *src = calloc(1, sizeof *src);
    if (src == NULL)
        return -ENOMEM;
    *out = src;
    src->kind = kind;
    src->val = val;
    src->vlen = vlen > IDX_MAXKEY ? IDX_MAXKEY : vlen;
    src->at_least = at_least;
    src->lo = lo;
    src->hi = hi;
    src->epoch = lo >> IDX_EPOCH_BITS;
    src->last = hi >> IDX_EPOCH_BITS;
    int rc = vs_lmdb_err(mdb_cursor_open(txn, dbi, &src->c));
    return rc ? rc : isrc_estimate(src);
}

static bool event_matches(const struct vs_audit_filter *f, const Vs__V1__AuditEvent *ev)
{
    if (f->agent && f->agent[0] && (ev->agent == NULL || strcmp(ev->agent, f->agent) != 0))
        return false;
    if (f->category && f->category[0] &&
        (ev->category == NULL || strcmp(ev->category, f->category) != 0))
        return false;
    if (f->task_id && (ev->task_id.len != 16 || memcmp(ev->task_id.data, f->task_id, 16) != 0))
        return false;
    if (f->min_severity > 0 && (int)ev->severity < f->min_severity)
        return false;
    return true;
}

/* Narrow [lo, hi] to the time range through idx_time (times are
 * non-decreasing in seq). false when nothing can match. */
static int time_bounds(vs_audit_store *s, MDB_txn *txn, const struct vs_audit_filter *f,
                       uint64_t *lo, uint64_t *hi)
{
    if (f->since_ns == 0 && (f->until_ns == 0 || f->until_ns == UINT64_MAX))
        return 1;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->idx_time, &c);
    if (rc)
        return vs_lmdb_err(rc);
    uint8_t kb[16];
    MDB_val k, d;
    int ok = 1;
    if (f->since_ns) {
        vs_put_be64(kb, f->since_ns);
        vs_put_be64(kb + 8, 0);
        k = vs_mval(kb, 16);
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND)
            ok = 0;
        else if (rc)
            ok = vs_lmdb_err(rc);
        else if (k.mv_size == 16 && vs_get_be64((uint8_t *)k.mv_data + 8) > *lo)
            *lo = vs_get_be64((uint8_t *)k.mv_data + 8);
    }
    if (ok == 1 && f->until_ns && f->until_ns != UINT64_MAX) {
        vs_put_be64(kb, f->until_ns + 1);
        vs_put_be64(kb + 8, 0);
        k = vs_mval(kb, 16);
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == 16) {
            uint64_t first_after = vs_get_be64((uint8_t *)k.mv_data + 8);
            if (first_after == 0)
                ok = 0;
            else if (first_after - 1 < *hi)
                *hi = first_after - 1;
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            ok = vs_lmdb_err(rc);
        }
    }
    mdb_cursor_close(c);
    return ok;
}

int vs_audit_store_query(vs_audit_store *s, const struct vs_audit_filter *f, vs_audit_entry_cb cb,
                         void *arg)
{
    if (s == NULL || cb == NULL)
        return -EINVAL;
    static const struct vs_audit_filter all = {.after_seq = UINT64_MAX};
    if (f == NULL)
        f = &all;
    size_t limit = f->limit ? f->limit : DEFAULT_LIMIT;
    if (limit > INT_MAX)
        limit = INT_MAX;
    bool by_agent = f->agent && f->agent[0];
    bool by_category = f->category && f->category[0];
    bool by_task = f->task_id != NULL;
    bool by_severity = f->min_severity > 0;
    bool decode = by_agent || by_category || by_task || by_severity;
    if (f->min_severity > 255 || (f->until_ns && f->since_ns > f->until_ns))
        return 0;

    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return rc;
    struct isrc *srcs[4] = {NULL, NULL, NULL, NULL}, *use = NULL;
    int delivered = 0;
    uint64_t size = 0;
    rc = meta_get(s, txn, "size", &size);
    if (rc || size == 0)
        goto out;
    uint64_t lo = f->after_seq == UINT64_MAX ? 0 : f->after_seq + 1, hi = size - 1;
    int tb = time_bounds(s, txn, f, &lo, &hi);
    if (tb <= 0) {
        rc = tb;
        goto out;
    }
    if (lo > hi)
        goto out;

    /* The cheapest source: a sequential scan of the range counts half
     * (it reads in order), an index its estimated matches. */
    uint8_t sev = (uint8_t)(by_severity ? f->min_severity : 0);
    if (by_agent)
        rc = isrc_open(txn, s->idx_attr, KIND_AGENT, f->agent, strlen(f->agent), false, lo, hi,
                       &srcs[0]);
    if (rc == 0 && by_category)
        rc = isrc_open(txn, s->idx_attr, KIND_CATEGORY, f->category, strlen(f->category), false,
                       lo, hi, &srcs[1]);
    if (rc == 0 && by_task)
        rc = isrc_open(txn, s->idx_attr, KIND_TASK, f->task_id, 16, false, lo, hi, &srcs[2]);
    if (rc == 0 && by_severity)
        rc = isrc_open(txn, s->idx_attr, KIND_SEVERITY, &sev, 1, true, lo, hi, &srcs[3]);
    if (rc)
        goto out;
    uint64_t best = (hi - lo) / 2 + 1;
    for (int i = 0; i < 4; i++) {
        if (srcs[i] && srcs[i]->est < best) {
            best = srcs[i]->est;
            use = srcs[i];
        }
    }
    if (use) {
        use->epoch = lo >> IDX_EPOCH_BITS;
        use->n = use->pos = 0;
    }

    uint64_t next = lo;
    while ((size_t)delivered < limit) {
        uint64_t seq;
        if (use) {
            rc = isrc_next(use, &seq);
            if (rc == -ENOENT) {
                rc = 0;
                break;
            }
            if (rc)
                goto out;
        } else {
            seq = next++;
        }
        if (seq > hi)
            break;
        uint8_t kb[8];
        vs_put_be64(kb, seq);
        MDB_val k = vs_mval(kb, 8), v;
        int grc = mdb_get(txn, s->entries, &k, &v);
        if (grc == MDB_NOTFOUND)
            continue;
        if (grc) {
            rc = vs_lmdb_err(grc);
            goto out;
        }
        struct vs_audit_fields p;
        if (!parse_entry(&v, &p))
            continue;
        if (p.time_ns < f->since_ns || (f->until_ns && p.time_ns > f->until_ns))
            continue;
        if (decode) {
            static const uint8_t empty[1];
            Vs__V1__AuditEvent *ev =
                vs__v1__audit_event__unpack(NULL, p.len, p.len ? p.event : empty);
            bool ok = ev != NULL && event_matches(f, ev);
            if (ev)
                vs__v1__audit_event__free_unpacked(ev, NULL);
            if (!ok)
                continue;
        }
        struct vs_audit_entry e;
        rc = fill_entry(s, txn, seq, &v, &e);
        if (rc == -EBADMSG) {
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        delivered++;
        if (cb(&e, arg) != 0)
            break;
    }
out:
    for (int i = 0; i < 4; i++) {
        if (srcs[i] && srcs[i]->c)
            mdb_cursor_close(srcs[i]->c);
        free(srcs[i]);
    }
    read_end(s, txn);
    return rc ? rc : delivered;
}

/* ---- backup ----------------------------------------------------------------- */

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int vs_audit_store_backup(vs_audit_store *s, const char *dir)
{
    if (s == NULL || dir == NULL)
        return -EINVAL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    char data[PATH_MAX];
    if (snprintf(data, sizeof data, "%s/data.mdb", dir) >= (int)sizeof data)
        return -ENAMETOOLONG;
    if (access(data, F_OK) == 0)
        return -EEXIST;
    int rc;
    for (int tries = 0;; tries++) {
        /* The copy runs in a read transaction: hold the map lock like one. */
        pthread_rwlock_rdlock(&s->maplock);
        rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
        pthread_rwlock_unlock(&s->maplock);
        if (rc == 0 || tries >= 3 || (rc != MDB_MAP_RESIZED && rc != MDB_READERS_FULL))
            break;
        /* The live writer grew the map, or readers died: adopt, retry. */
        unlink(data); /* mdb_env_copy2 creates it before it fails */
        if (rc == MDB_MAP_RESIZED)
            adopt_map(s);
        else if (!s->nolock)
            mdb_reader_check(s->env, NULL);
    }
    if (rc != 0 && access(data, F_OK) == 0)
        unlink(data); /* no half copy left behind */
    rc = vs_lmdb_err(rc);
    if (rc == 0)
        rc = fsync_path(data, O_RDONLY);
    if (rc == 0)
        rc = fsync_path(dir, O_RDONLY | O_DIRECTORY);
    return rc;
}
