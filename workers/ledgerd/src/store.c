/*
 * store.c - the escrow ledger's LMDB store (ledger_store.h): accounts,
 * transfers, two-phase holds, linked chains, idempotency, queries, the
 * invariant check, and the bookkeeping that makes vs-ledgerd's effects
 * exactly-once (applied stream sequences, command replies, an outbox).
 *
 * Why it is shaped like this:
 *  - One write transaction per batch (group commit): vs_ledger_write runs
 *    the caller's batch between the expiry pass and the commit, and replays
 *    it after doubling the map when LMDB reports MDB_MAP_FULL.
 *  - A transfer is validated completely before anything is written, so a
 *    lone transfer needs no rollback. A linked chain keeps an undo log of
 *    what its members wrote and replays it backwards when one fails (LMDB's
 *    nested transactions copy and merge dirty page lists: measured, they
 *    halved the throughput of escrow releases, which are chains).
 *  - Accounts touched by a write transaction live in a small hash table
 *    until the commit: the agent and fee accounts of a batch of releases
 *    are read and written once per batch instead of once per transfer.
 *    Their history entries wait there too and are stored as one record per
 *    account and commit: an index entry per transfer made busy accounts
 *    (requesters, the agent, the fee account) rewrite several B-tree pages
 *    each per commit, two thirds of the bytes a batch wrote.
 *  - New keys above a table's last (time-ordered ids make that nearly every
 *    record a batch writes) wait in memory until the commit (fresh.h) and
 *    are then appended in key order: no B-tree searches for them, and
 *    full pages instead of pages split in half. MDB_WRITEMAP was measured
 *    and left off: its commits were slower here.
 *  - Every transfer id is recorded with the body first submitted and its
 *    outcome (failures included), which gives "a retry returns the first
 *    outcome" and "a different body is an error" with one lookup.
 *  - Transfers are the public struct stored as it is (zeroed first, so
 *    padding is deterministic): the store is read only by this code on the
 *    machine that wrote it, and backups are LMDB copies. Accounts have a
 *    compact encoding (account_encode): escrow accounts, one per task,
 *    would otherwise be mostly empty name fields.
 *  - One writing thread (vs_ledger_write) and any number of reading ones
 *    (vs_ledger_read): the daemon commits on a worker thread while its loop
 *    answers queries. A map growth needs every transaction of the process
 *    ended, so reads and writes hold a read lock that growth takes for
 *    writing. A read-only handle in another process reads consistently
 *    through LMDB's lock file.
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fresh.h"
#include "vs/ledger_store.h"
#include "vs/lmdb_util.h"

#define DEFAULT_MAP_SIZE (UINT64_C(64) << 20)
#define MAX_MAP_SIZE (UINT64_C(1) << 40)
#define MAX_DBS 16
#define CHECK_MAX_ACCOUNTS (UINT64_C(1) << 26)

/* An account as the write transaction sees it (cache slot). */
struct acct_slot {
    struct vs_account a;
    bool used;
    bool dirty;       /* written back at the commit */
    /* this write's history entries of the account (timestamp | transfer
     * id, in timestamp order), stored as one chunk at the commit */
    uint8_t *hist;
    size_t nhist, hist_cap;
};

#define HIST_LEN (8 + VS_LEDGER_ID_LEN)

/* One step to undo when a linked chain fails: an LMDB key's previous
 * value (or its absence), or a cached account's previous state. */
struct undo {
    MDB_dbi db;
    bool is_account;
    bool is_hist;     /* a history entry added to slot's buffer */
    bool dup;         /* an added duplicate (val): rollback deletes just it */
    bool had;         /* the key had a value / the account was dirty */
    size_t slot;
    size_t koff, klen, voff, vlen; /* in the ledger's undo_bytes */
    struct vs_account old;
};

struct vs_ledger {
    MDB_env *env;
    MDB_dbi accounts, names, transfers, expiry, by_account, by_task;
    MDB_dbi commands, meta, outbox;
    MDB_dbi tables[VS_LTABLE_COUNT];
    bool read_only;
    pthread_rwlock_t maplock; /* read: any transaction; write: map growth */
    vs_ledger_expired_fn on_expired;
    void *on_expired_arg;
    /* the write transaction's account cache: open addressing, used[] lists
     * the occupied slots so that clearing costs what was used */
    struct acct_slot *slots;
    uint64_t *tags;   /* per slot: its id's hash (never 0), 0 when free - a
                       * probe reads these, not the large slots */
    size_t slot_cap;
    size_t *used;
    size_t nused;
    /* the undo log of the linked chain being applied */
    struct undo *undo;
    size_t nundo, undo_cap;
    uint8_t *undo_bytes;  /* the keys and old values the log refers to */
    size_t undo_len, undo_bytes_cap;
    bool in_chain;
    /* the write transaction's new keys of the tracked tables (fresh.h),
     * appended in key order at the commit */
    fresh *fresh;
    int8_t fresh_table[MAX_DBS + 2]; /* by dbi: its tracked table, or -1 */
};

struct vs_ledger_txn {
    vs_ledger *l;
    MDB_txn *txn;
    uint64_t now;     /* the transaction's time */
    uint64_t clock;   /* the last timestamp given out */
    bool write;
    /* The greatest stored key of each tracked table as far as this write
     * knows. Accounts and history chunks above it are appended at once
     * (MDB_APPEND fills pages instead of splitting them in half); the other
     * tables' keys above it are fresh keys (l->fresh), appended at the
     * flush. Time-ordered ids make that the usual case. */
    struct last_key {
        uint8_t k[8 + VS_LEDGER_ID_LEN];
        size_t n;
        bool known;
    } last[6 + VS_LTABLE_COUNT];
    /* The greatest key this write added to each table's fresh keys (n 0:
     * none yet): a key above it is not among them, without a lookup. */
    struct fresh_max {
        uint8_t k[FRESH_KEY_MAX];
        size_t n;
    } fresh_max[6 + VS_LTABLE_COUNT];
};

enum { LAST_TRANSFERS, LAST_BY_ACCOUNT, LAST_BY_TASK, LAST_EXPIRY, LAST_COMMANDS, LAST_ACCOUNTS,
       LAST_TABLES };

/* A transfer id's record: the transfer as applied (OK) or as submitted
 * (a failure), what the submission left zero for a POST/VOID to fill in
 * from the pending transfer, the first outcome, and a pending transfer's
 * state and deadline. */
struct xfer_rec {
    struct vs_transfer x;
    uint64_t submitted_amount;
    uint64_t deadline;            /* ns; 0: none */
    int32_t result;
    uint16_t state;               /* vs_pending_state */
    uint8_t submitted_zero;       /* ZERO_* bits */
    uint8_t reserved;
};

#define ZERO_DEBIT 1u
#define ZERO_CREDIT 2u
#define ZERO_LEDGER 4u
#define ZERO_CODE 8u

static const struct {
    const char *name;
    size_t off;
    unsigned flags;
} db_specs[] = {
    {"accounts", offsetof(struct vs_ledger, accounts), 0},
    {"names", offsetof(struct vs_ledger, names), 0},
    {"transfers", offsetof(struct vs_ledger, transfers), 0},
    {"expiry", offsetof(struct vs_ledger, expiry), 0},
    /* The task index holds sorted fixed-size duplicates of one key:
     * appended (MDB_APPENDDUP) they fill their pages. */
    {"by_account", offsetof(struct vs_ledger, by_account), 0},
    {"by_task", offsetof(struct vs_ledger, by_task), MDB_DUPSORT | MDB_DUPFIXED},
    {"commands", offsetof(struct vs_ledger, commands), 0},
    {"meta", offsetof(struct vs_ledger, meta), 0},
    {"outbox", offsetof(struct vs_ledger, outbox), 0},
    {"esc_tasks", offsetof(struct vs_ledger, tables[VS_LTABLE_TASKS]), 0},
    {"esc_reputation", offsetof(struct vs_ledger, tables[VS_LTABLE_REPUTATION]), 0},
    {"esc_disputes", offsetof(struct vs_ledger, tables[VS_LTABLE_DISPUTES]), 0},
    {"esc_timers", offsetof(struct vs_ledger, tables[VS_LTABLE_TIMERS]), 0},
};

static const uint8_t zero_id[VS_LEDGER_ID_LEN];

static bool id_zero(const uint8_t *id)
{
    return memcmp(id, zero_id, VS_LEDGER_ID_LEN) == 0;
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- open / close ------------------------------------------------------------ */

static MDB_dbi *dbi_at(vs_ledger *l, size_t i)
{
    return (MDB_dbi *)(void *)((char *)l + db_specs[i].off);
}

static int open_dbs(vs_ledger *l)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, l->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return vs_lmdb_err(rc);
    for (size_t i = 0; i < sizeof db_specs / sizeof db_specs[0] && rc == 0; i++)
        rc = mdb_dbi_open(txn, db_specs[i].name, db_specs[i].flags | (l->read_only ? 0 : MDB_CREATE),
                          dbi_at(l, i));
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? -ENOENT : vs_lmdb_err(rc);
    }
    return vs_lmdb_err(mdb_txn_commit(txn));
}

/* The tables whose new keys wait in l->fresh: the dbi -> tracked table map. */
static int fresh_tables_map(vs_ledger *l)
{
    memset(l->fresh_table, -1, sizeof l->fresh_table);
    MDB_dbi dbs[4 + VS_LTABLE_COUNT] = {l->transfers, l->expiry, l->by_task, l->commands};
    int which[4 + VS_LTABLE_COUNT] = {LAST_TRANSFERS, LAST_EXPIRY, LAST_BY_TASK, LAST_COMMANDS};
    for (int tb = 0; tb < VS_LTABLE_COUNT; tb++) {
        dbs[4 + tb] = l->tables[tb];
        which[4 + tb] = LAST_TABLES + tb;
    }
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if (dbs[i] >= sizeof l->fresh_table)
            return -EOVERFLOW;
        l->fresh_table[dbs[i]] = (int8_t)which[i];
    }
    return fresh_new(&l->fresh);
}

int vs_ledger_open(const struct vs_ledger_opts *o, vs_ledger **out)
{
    if (o == NULL || o->path == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    vs_ledger *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    pthread_rwlock_init(&l->maplock, NULL);
    l->read_only = o->read_only;
    unsigned flags = MDB_NOTLS;
    if (o->read_only) {
        flags |= MDB_RDONLY;
        char lock[4096];
        struct stat st;
        snprintf(lock, sizeof lock, "%s/lock.mdb", o->path);
        if (stat(lock, &st) != 0)
            flags |= MDB_NOLOCK;
    } else {
        if (mkdir(o->path, 0700) != 0 && errno != EEXIST) {
            int e = -errno;
            free(l);
            return e;
        }
        if (o->no_sync)
            flags |= MDB_NOSYNC;
        if (o->sync_root_later)
            flags |= MDB_NOMETASYNC;
    }
    int rc = vs_lmdb_err(mdb_env_create(&l->env));
    if (rc == 0)
        rc = vs_lmdb_err(mdb_env_set_maxdbs(l->env, MAX_DBS));
    if (rc == 0)
        rc = vs_lmdb_err(mdb_env_set_mapsize(
            l->env, vs_lmdb_page_round(o->map_size ? o->map_size : DEFAULT_MAP_SIZE)));
    if (rc == 0)
        rc = vs_lmdb_err(mdb_env_open(l->env, o->path, flags, 0600));
    if (rc == 0 && !(flags & MDB_NOLOCK)) {
        int dead = 0;
        mdb_reader_check(l->env, &dead); /* readers of a killed process */
    }
    if (rc == 0)
        rc = open_dbs(l);
    if (rc == 0 && !o->read_only)
        rc = fresh_tables_map(l);
    if (rc) {
        vs_ledger_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static void undo_clear(vs_ledger *l);

void vs_ledger_free(vs_ledger *l)
{
    if (l == NULL)
        return;
    if (l->env != NULL)
        mdb_env_close(l->env);
    undo_clear(l);
    free(l->undo);
    free(l->undo_bytes);
    for (size_t i = 0; i < l->slot_cap; i++)
        free(l->slots[i].hist);
    free(l->slots);
    free(l->tags);
    free(l->used);
    fresh_free(l->fresh);
    pthread_rwlock_destroy(&l->maplock);
    free(l);
}

void vs_ledger_on_expired(vs_ledger *l, vs_ledger_expired_fn cb, void *arg)
{
    l->on_expired = cb;
    l->on_expired_arg = arg;
}

static uint64_t map_size(vs_ledger *l)
{
    MDB_envinfo info;
    if (mdb_env_info(l->env, &info) != 0)
        return 0;
    return (uint64_t)info.me_mapsize;
}

/* mdb_env_info reads the meta pages in the map: not while it moves. */
uint64_t vs_ledger_map_size(vs_ledger *l)
{
    pthread_rwlock_rdlock(&l->maplock);
    uint64_t size = map_size(l);
    pthread_rwlock_unlock(&l->maplock);
    return size;
}

int vs_ledger_reader_check(vs_ledger *l, int *dead)
{
    int n = 0;
    int rc = mdb_reader_check(l->env, &n);
    if (dead != NULL)
        *dead = n;
    return vs_lmdb_err(rc);
}

int vs_ledger_backup(vs_ledger *l, const char *dir)
{
    if (l == NULL || dir == NULL)
        return -EINVAL;
    return vs_lmdb_err(mdb_env_copy2(l->env, dir, MDB_CP_COMPACT));
}

/* ---- raw access ------------------------------------------------------------ */

/* The last key of db as this write knows it, read once per write
 * transaction: for accounts and by_account, kept current by append_flag;
 * for the fresh-key tables, advanced when fresh_flush appends. A deletion
 * can only leave it too high, which is safe. */
static int last_key_of(vs_ledger_txn *t, int which, MDB_dbi db, struct last_key **out)
{
    struct last_key *lk = &t->last[which];
    *out = lk;
    if (!lk->known) {
        MDB_cursor *c;
        MDB_val key, val;
        int rc = vs_lmdb_err(mdb_cursor_open(t->txn, db, &c));
        if (rc)
            return rc;
        rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        lk->n = 0;
        if (rc == 0 && key.mv_size <= sizeof lk->k) {
            memcpy(lk->k, key.mv_data, key.mv_size);
            lk->n = key.mv_size;
        }
        mdb_cursor_close(c);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return vs_lmdb_err(rc);
        lk->known = true;
    }
    return 0;
}

/* Whether key k sorts after key a in LMDB's default order. */
static bool key_after(const uint8_t *a, size_t an, const void *k, size_t kn)
{
    size_t n = kn < an ? kn : an;
    int cmp = memcmp(k, a, n);
    return cmp > 0 || (cmp == 0 && kn > an);
}

static bool sorts_after(const struct last_key *lk, const void *k, size_t kn)
{
    return key_after(lk->k, lk->n, k, kn);
}

/* MDB_APPEND when key k sorts after every key of db (as tracked in
 * t->last[which]), else 0. */
static int append_flag(vs_ledger_txn *t, int which, MDB_dbi db, const void *k, size_t kn,
                       unsigned *flag)
{
    struct last_key *lk;
    *flag = 0;
    if (kn > sizeof lk->k)
        return 0;
    int rc = last_key_of(t, which, db, &lk);
    if (rc == 0 && sorts_after(lk, k, kn)) {
        *flag = MDB_APPEND;
        memcpy(lk->k, k, kn);
        lk->n = kn;
    }
    return rc;
}

/* ---- reads and writes: LMDB, or the write's fresh keys --------------------------- */

/* Where key k of db lives in a write: *which gets its tracked table when
 * db keeps fresh keys and k sorts after the table's last stored key (it
 * is then in l->fresh or nowhere), else -1 (LMDB). */
static int fresh_route(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, int *which)
{
    vs_ledger *l = t->l;
    struct last_key *lk;
    *which = -1;
    if (!t->write || db >= sizeof l->fresh_table || l->fresh_table[db] < 0 || kn > sizeof lk->k)
        return 0;
    int rc = last_key_of(t, l->fresh_table[db], db, &lk);
    if (rc == 0 && sorts_after(lk, k, kn))
        *which = l->fresh_table[db];
    return rc;
}

static void fresh_max_update(vs_ledger_txn *t, int which, const void *k, size_t kn)
{
    struct fresh_max *max = &t->fresh_max[which];
    if (kn <= sizeof max->k && key_after(max->k, max->n, k, kn)) {
        memcpy(max->k, k, kn);
        max->n = kn;
    }
}

static int get(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, MDB_val *v)
{
    int which;
    int rc = fresh_route(t, db, k, kn, &which);
    if (rc)
        return rc;
    if (which >= 0) {
        const struct fresh_max *max = &t->fresh_max[which];
        if (key_after(max->k, max->n, k, kn))
            return -ENOENT; /* above every fresh key too: a new id */
        const void *p;
        size_t n;
        rc = fresh_get(t->l->fresh, (unsigned)which, k, kn, &p, &n);
        if (rc == 0)
            *v = vs_mval(p, n);
        return rc;
    }
    MDB_val key = vs_mval(k, kn);
    return vs_lmdb_err(mdb_get(t->txn, db, &key, v));
}

/* Room for a vn-byte value under k (the caller fills *dst), unlogged. */
static int reserve_raw(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, size_t vn, void **dst)
{
    int which;
    int rc = fresh_route(t, db, k, kn, &which);
    if (rc)
        return rc;
    if (which >= 0) {
        fresh_max_update(t, which, k, kn);
        return fresh_reserve(t->l->fresh, (unsigned)which, k, kn, vn, dst);
    }
    MDB_val key = vs_mval(k, kn), val = {vn, NULL};
    rc = vs_lmdb_err(mdb_put(t->txn, db, &key, &val, MDB_RESERVE));
    *dst = val.mv_data;
    return rc;
}

static int put_raw(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v, size_t vn)
{
    void *dst;
    int rc = reserve_raw(t, db, k, kn, vn, &dst);
    if (rc == 0 && vn > 0)
        memcpy(dst, v, vn);
    return rc;
}

static int del_raw(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn)
{
    int which;
    int rc = fresh_route(t, db, k, kn, &which);
    if (rc)
        return rc;
    if (which >= 0) {
        fresh_del(t->l->fresh, (unsigned)which, k, kn);
        return 0;
    }
    MDB_val key = vs_mval(k, kn);
    rc = vs_lmdb_err(mdb_del(t->txn, db, &key, NULL));
    return rc == -ENOENT ? 0 : rc;
}

/* A duplicate-sorted index (by_task): a fresh key's duplicates are kept
 * as key | value entries with no value of their own. Where duplicate v of
 * key k lives: *which as fresh_route; when fresh, dk gets its entry key. */
static int dup_route(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v,
                     size_t vn, uint8_t dk[FRESH_KEY_MAX], int *which)
{
    int rc = fresh_route(t, db, k, kn, which);
    if (rc || *which < 0)
        return rc;
    if (kn + vn > FRESH_KEY_MAX)
        return -EINVAL;
    memcpy(dk, k, kn);
    memcpy(dk + kn, v, vn);
    return 0;
}

static int dup_put_raw(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v,
                       size_t vn)
{
    uint8_t dk[FRESH_KEY_MAX];
    int which;
    int rc = dup_route(t, db, k, kn, v, vn, dk, &which);
    if (rc || which >= 0)
        return rc ? rc : fresh_put(t->l->fresh, (unsigned)which, dk, kn + vn, "", 0);
    MDB_val key = vs_mval(k, kn), val = vs_mval(v, vn);
    rc = mdb_put(t->txn, db, &key, &val, MDB_APPENDDUP);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put(t->txn, db, &key, &val, 0);
    return vs_lmdb_err(rc);
}

static int dup_del_raw(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v,
                       size_t vn)
{
    uint8_t dk[FRESH_KEY_MAX];
    int which;
    int rc = dup_route(t, db, k, kn, v, vn, dk, &which);
    if (rc || which >= 0) {
        if (rc == 0)
            fresh_del(t->l->fresh, (unsigned)which, dk, kn + vn);
        return rc;
    }
    MDB_val key = vs_mval(k, kn), val = vs_mval(v, vn);
    rc = vs_lmdb_err(mdb_del(t->txn, db, &key, &val));
    return rc == -ENOENT ? 0 : rc;
}

/* ---- the undo log of a linked chain ------------------------------------------ */

static struct undo *undo_push(vs_ledger *l)
{
    if (l->nundo == l->undo_cap) {
        size_t cap = l->undo_cap ? l->undo_cap * 2 : 64;
        struct undo *u = realloc(l->undo, cap * sizeof *u);
        if (u == NULL)
            return NULL;
        l->undo = u;
        l->undo_cap = cap;
    }
    struct undo *u = &l->undo[l->nundo++];
    memset(u, 0, sizeof *u);
    return u;
}

static void undo_clear(vs_ledger *l)
{
    l->nundo = 0;
    l->undo_len = 0;
}

/* Copy n bytes into the log's arena; *off gets where. */
static int undo_save(vs_ledger *l, const void *p, size_t n, size_t *off)
{
    if (l->undo_len + n > l->undo_bytes_cap) {
        size_t cap = l->undo_bytes_cap ? l->undo_bytes_cap : 4096;
        while (cap < l->undo_len + n)
            cap *= 2;
        uint8_t *b = realloc(l->undo_bytes, cap);
        if (b == NULL)
            return -ENOMEM;
        l->undo_bytes = b;
        l->undo_bytes_cap = cap;
    }
    *off = l->undo_len;
    if (n > 0)
        memcpy(l->undo_bytes + l->undo_len, p, n);
    l->undo_len += n;
    return 0;
}

/* Undo everything the chain wrote, newest first. */
static int undo_rollback(vs_ledger_txn *t)
{
    vs_ledger *l = t->l;
    int rc = 0;
    for (size_t i = l->nundo; i-- > 0 && rc == 0;) {
        struct undo *u = &l->undo[i];
        MDB_val k = vs_mval(l->undo_bytes + u->koff, u->klen);
        MDB_val v = vs_mval(l->undo_bytes + u->voff, u->vlen);
        if (u->is_hist) {
            l->slots[u->slot].nhist--;
        } else if (u->is_account) {
            l->slots[u->slot].a = u->old;
            l->slots[u->slot].dirty = u->had;
        } else if (u->dup) {
            rc = dup_del_raw(t, u->db, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        } else if (u->had) {
            rc = put_raw(t, u->db, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        } else {
            rc = del_raw(t, u->db, k.mv_data, k.mv_size);
        }
    }
    undo_clear(l);
    return rc;
}

/* put's flag for a key known to be absent: the undo log records that
 * without looking the key up. */
#define PUT_NEW (1u << 31)

/* Remember key's current value in db before it changes. */
static int undo_kv(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, bool known_absent)
{
    vs_ledger *l = t->l;
    MDB_val old;
    int rc = known_absent ? -ENOENT : get(t, db, k, kn, &old);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    struct undo *u = undo_push(l);
    if (u == NULL)
        return -ENOMEM;
    u->db = db;
    u->klen = kn;
    u->had = rc == 0;
    u->vlen = u->had ? old.mv_size : 0;
    if ((rc = undo_save(l, k, kn, &u->koff)) == 0 && u->had)
        rc = undo_save(l, old.mv_data, old.mv_size, &u->voff);
    return rc;
}

static int put(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v, size_t vn,
               unsigned flags)
{
    if (!t->write)
        return -EROFS;
    if (t->l->in_chain) {
        int rc = undo_kv(t, db, k, kn, flags & PUT_NEW);
        if (rc)
            return rc;
    }
    return put_raw(t, db, k, kn, v, vn);
}

static int del(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn)
{
    if (!t->write)
        return -EROFS;
    if (t->l->in_chain) {
        int rc = undo_kv(t, db, k, kn, false);
        if (rc)
            return rc;
    }
    return del_raw(t, db, k, kn);
}

/* Add the duplicate val under key in a DUPSORT index. */
static int put_dup(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, const void *v, size_t vn)
{
    vs_ledger *l = t->l;
    if (l->in_chain) {
        struct undo *u = undo_push(l);
        if (u == NULL)
            return -ENOMEM;
        u->db = db;
        u->dup = true;
        u->klen = kn;
        u->vlen = vn;
        int rc = undo_save(l, k, kn, &u->koff);
        if (rc == 0)
            rc = undo_save(l, v, vn, &u->voff);
        if (rc)
            return rc;
    }
    return dup_put_raw(t, db, k, kn, v, vn);
}

/* Copy a fixed-size record out of LMDB; -EBADMSG when the size differs. */
static int get_rec(vs_ledger_txn *t, MDB_dbi db, const void *k, size_t kn, void *out, size_t n)
{
    MDB_val v;
    int rc = get(t, db, k, kn, &v);
    if (rc)
        return rc;
    if (v.mv_size != n)
        return -EBADMSG;
    memcpy(out, v.mv_data, n);
    return 0;
}

static uint64_t next_timestamp(vs_ledger_txn *t)
{
    return ++t->clock;
}

/* ---- meta --------------------------------------------------------------------- */

static int meta_get(vs_ledger_txn *t, const char *name, uint64_t *v)
{
    uint8_t b[8];
    int rc = get_rec(t, t->l->meta, name, strlen(name), b, sizeof b);
    if (rc == -ENOENT) {
        *v = 0;
        return 0;
    }
    if (rc == 0)
        *v = vs_get_be64(b);
    return rc;
}

static int meta_put(vs_ledger_txn *t, const char *name, uint64_t v)
{
    uint8_t b[8];
    vs_put_be64(b, v);
    return put(t, t->l->meta, name, strlen(name), b, sizeof b, 0);
}

int vs_ledger_applied_get(vs_ledger_txn *t, const char *stream, uint64_t *seq)
{
    char k[96];
    if (stream == NULL || seq == NULL || snprintf(k, sizeof k, "applied:%s", stream) >= (int)sizeof k)
        return -EINVAL;
    return meta_get(t, k, seq);
}

int vs_ledger_applied_set(vs_ledger_txn *t, const char *stream, uint64_t seq)
{
    char k[96];
    if (stream == NULL || snprintf(k, sizeof k, "applied:%s", stream) >= (int)sizeof k)
        return -EINVAL;
    return meta_put(t, k, seq);
}

uint64_t vs_ledger_txn_now(const vs_ledger_txn *t)
{
    return t->now;
}

/* ---- accounts ------------------------------------------------------------------ */

static bool name_valid(const char *s)
{
    size_t n = strnlen(s, VS_LEDGER_NAME_MAX);
    if (n == VS_LEDGER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':' || c == '@'))
            return false;
    }
    return true;
}

/* The fields a client chooses, compared for idempotency. */
static bool account_same_body(const struct vs_account *a, const struct vs_account *b)
{
    return memcmp(a->id, b->id, VS_LEDGER_ID_LEN) == 0 && a->ledger == b->ledger &&
           a->code == b->code && a->flags == b->flags &&
           memcmp(a->user_data_128, b->user_data_128, VS_LEDGER_ID_LEN) == 0 &&
           a->user_data_64 == b->user_data_64 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->owner, b->owner) == 0 && a->has_public_key == b->has_public_key &&
           (!a->has_public_key || memcmp(a->public_key, b->public_key, VS_LEDGER_KEY_LEN) == 0);
}

/* ---- the account record --------------------------------------------------------- */

/* An account as stored: the fixed fields (96 bytes, big-endian), then the
 * lengths of its name and owner and whether it has a key, then those. An
 * escrow account (no name, owner or key) takes 91 bytes instead of the
 * struct's 256, and accounts are most of what a hold writes. */
#define ACCOUNT_FIXED 88
#define ACCOUNT_MAX (ACCOUNT_FIXED + 3 + 2 * VS_LEDGER_NAME_MAX + VS_LEDGER_KEY_LEN)

static size_t account_encode(const struct vs_account *a, uint8_t out[ACCOUNT_MAX])
{
    uint8_t *p = out;
    memcpy(p, a->id, VS_LEDGER_ID_LEN);
    p += VS_LEDGER_ID_LEN;
    vs_put_be64(p, (uint64_t)a->ledger << 32 | (uint64_t)a->code << 16 | a->flags);
    p += 8;
    memcpy(p, a->user_data_128, VS_LEDGER_ID_LEN);
    p += VS_LEDGER_ID_LEN;
    const uint64_t nums[] = {a->user_data_64, a->debits_pending, a->debits_posted,
                             a->credits_pending, a->credits_posted, a->timestamp};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++, p += 8)
        vs_put_be64(p, nums[i]);
    size_t nl = strnlen(a->name, VS_LEDGER_NAME_MAX - 1), ol = strnlen(a->owner, VS_LEDGER_NAME_MAX - 1);
    *p++ = (uint8_t)nl;
    *p++ = (uint8_t)ol;
    *p++ = a->has_public_key;
    memcpy(p, a->name, nl);
    p += nl;
    memcpy(p, a->owner, ol);
    p += ol;
    if (a->has_public_key) {
        memcpy(p, a->public_key, VS_LEDGER_KEY_LEN);
        p += VS_LEDGER_KEY_LEN;
    }
    return (size_t)(p - out);
}

static int account_decode(const MDB_val *v, struct vs_account *a)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < ACCOUNT_FIXED + 3)
        return -EBADMSG;
    size_t nl = p[ACCOUNT_FIXED], ol = p[ACCOUNT_FIXED + 1];
    bool key = p[ACCOUNT_FIXED + 2] != 0;
    if (nl >= VS_LEDGER_NAME_MAX || ol >= VS_LEDGER_NAME_MAX ||
        v->mv_size != ACCOUNT_FIXED + 3 + nl + ol + (key ? VS_LEDGER_KEY_LEN : 0))
        return -EBADMSG;
    memset(a, 0, sizeof *a);
    memcpy(a->id, p, VS_LEDGER_ID_LEN);
    p += VS_LEDGER_ID_LEN;
    uint64_t kind = vs_get_be64(p);
    a->ledger = (uint32_t)(kind >> 32);
    a->code = (uint16_t)(kind >> 16);
    a->flags = (uint16_t)kind;
    p += 8;
    memcpy(a->user_data_128, p, VS_LEDGER_ID_LEN);
    p += VS_LEDGER_ID_LEN;
    uint64_t *nums[] = {&a->user_data_64, &a->debits_pending, &a->debits_posted,
                        &a->credits_pending, &a->credits_posted, &a->timestamp};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++, p += 8)
        *nums[i] = vs_get_be64(p);
    p += 3;
    memcpy(a->name, p, nl);
    p += nl;
    memcpy(a->owner, p, ol);
    p += ol;
    a->has_public_key = key;
    if (key)
        memcpy(a->public_key, p, VS_LEDGER_KEY_LEN);
    return 0;
}

/* The stored account id, decoded (read transactions: straight from LMDB). */
static int account_load(vs_ledger_txn *t, const uint8_t *id, struct vs_account *a)
{
    MDB_val v;
    int rc = get(t, t->l->accounts, id, VS_LEDGER_ID_LEN, &v);
    return rc ? rc : account_decode(&v, a);
}

/* ---- accounts in a write transaction: the cache ---------------------------------- */

static size_t slot_hash(const uint8_t *id)
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    /* MurmurHash3's finalizer: every input bit reaches the low bits, which
     * matters for counter-like ids. */
    uint64_t h = a ^ (b << 32 | b >> 32);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return (size_t)h;
}

static uint64_t slot_tag(const uint8_t *id)
{
    return (uint64_t)slot_hash(id) | 1;
}

static struct acct_slot *slot_find(vs_ledger *l, const uint8_t *id, bool *found)
{
    size_t mask = l->slot_cap - 1;
    uint64_t tag = slot_tag(id);
    for (size_t i = (size_t)tag & mask;; i = (i + 1) & mask) {
        if (l->tags[i] == 0 ||
            (l->tags[i] == tag && memcmp(l->slots[i].a.id, id, VS_LEDGER_ID_LEN) == 0)) {
            *found = l->tags[i] != 0;
            return &l->slots[i];
        }
    }
}

/* A free slot (from slot_find) takes account a's place in the cache. */
static void slot_claim(vs_ledger *l, struct acct_slot *sl, const struct vs_account *a)
{
    size_t i = (size_t)(sl - l->slots);
    sl->a = *a;
    sl->used = true;
    sl->dirty = false;
    l->tags[i] = slot_tag(a->id);
    l->used[l->nused++] = i;
}

static void cache_clear(vs_ledger *l)
{
    for (size_t i = 0; i < l->nused; i++) {
        l->slots[l->used[i]].used = false;
        l->slots[l->used[i]].nhist = 0;
        l->tags[l->used[i]] = 0;
    }
    l->nused = 0;
}

/* Room for one more account at a load factor of at most 1/2. */
static int cache_reserve(vs_ledger *l)
{
    if (2 * (l->nused + 1) <= l->slot_cap)
        return 0;
    size_t old_cap = l->slot_cap, cap = old_cap ? old_cap * 2 : 1024;
    struct acct_slot *old = l->slots;
    size_t *old_used = l->used, n = l->nused;
    struct acct_slot *slots = calloc(cap, sizeof *slots);
    uint64_t *tags = calloc(cap, sizeof *tags);
    size_t *used = malloc(cap / 2 * sizeof *used);
    if (slots == NULL || tags == NULL || used == NULL) {
        free(slots);
        free(tags);
        free(used);
        return -ENOMEM;
    }
    free(l->tags);
    l->slots = slots;
    l->tags = tags;
    l->used = used;
    l->slot_cap = cap;
    l->nused = 0;
    for (size_t i = 0; i < n; i++) {
        bool found;
        const struct acct_slot *o = &old[old_used[i]];
        struct acct_slot *sl = slot_find(l, o->a.id, &found);
        *sl = *o; /* with its history buffer */
        l->tags[sl - l->slots] = slot_tag(o->a.id);
        l->used[l->nused++] = (size_t)(sl - l->slots);
    }
    /* Slot indexes in the undo log refer to the old table: remap them. */
    for (size_t i = 0; i < l->nundo; i++) {
        if (l->undo[i].is_account || l->undo[i].is_hist) {
            bool found;
            l->undo[i].slot = (size_t)(slot_find(l, old[l->undo[i].slot].a.id, &found) - l->slots);
        }
    }
    for (size_t i = 0; i < old_cap; i++) /* buffers of slots not carried over */
        if (!old[i].used)
            free(old[i].hist);
    free(old);
    free(old_used);
    return 0;
}

/* The cache slot of account id, loaded from LMDB on first use. */
static int cache_get(vs_ledger_txn *t, const uint8_t *id, struct acct_slot **out)
{
    vs_ledger *l = t->l;
    int rc = cache_reserve(l);
    if (rc)
        return rc;
    bool found;
    struct acct_slot *sl = slot_find(l, id, &found);
    if (!found) {
        struct vs_account a;
        struct last_key *last;
        if ((rc = last_key_of(t, LAST_ACCOUNTS, l->accounts, &last)))
            return rc;
        if (sorts_after(last, id, VS_LEDGER_ID_LEN))
            return -ENOENT; /* a new time-ordered id, e.g. a task's escrow account */
        if ((rc = account_load(t, id, &a)))
            return rc;
        slot_claim(l, sl, &a);
    }
    *out = sl;
    return 0;
}

static int slot_cmp(const void *a, const void *b, void *arg)
{
    const struct acct_slot *slots = arg;
    return memcmp(slots[*(const size_t *)a].a.id, slots[*(const size_t *)b].a.id, VS_LEDGER_ID_LEN);
}

/* Write the changed accounts back (before a commit or a scan of accounts),
 * in id order: new accounts with time-ordered ids are then appended
 * (MDB_APPEND), which fills pages instead of splitting them. */
static int cache_flush(vs_ledger_txn *t)
{
    vs_ledger *l = t->l;
    if (l->nused > 1)
        qsort_r(l->used, l->nused, sizeof *l->used, slot_cmp, l->slots);
    struct last_key *last;
    int rc = last_key_of(t, LAST_ACCOUNTS, l->accounts, &last);
    if (rc)
        return rc;
    MDB_cursor *c, *hc;
    if ((rc = vs_lmdb_err(mdb_cursor_open(t->txn, l->accounts, &c))))
        return rc;
    if ((rc = vs_lmdb_err(mdb_cursor_open(t->txn, l->by_account, &hc)))) {
        mdb_cursor_close(c);
        return rc;
    }
    for (size_t i = 0; i < l->nused && rc == 0; i++) {
        struct acct_slot *sl = &l->slots[l->used[i]];
        if (sl->nhist > 0) { /* the history chunk: account | first timestamp */
            uint8_t hk[VS_LEDGER_ID_LEN + 8];
            memcpy(hk, sl->a.id, VS_LEDGER_ID_LEN);
            memcpy(hk + VS_LEDGER_ID_LEN, sl->hist, 8);
            MDB_val key = vs_mval(hk, sizeof hk), val = vs_mval(sl->hist, sl->nhist * HIST_LEN);
            unsigned append;
            if ((rc = append_flag(t, LAST_BY_ACCOUNT, l->by_account, hk, sizeof hk, &append)))
                break;
            int pr = mdb_cursor_put(hc, &key, &val, append);
            if (pr == MDB_KEYEXIST && append) /* the tracked last key was stale */
                pr = mdb_cursor_put(hc, &key, &val, 0);
            rc = vs_lmdb_err(pr);
            sl->nhist = 0;
            if (rc)
                break;
        }
        if (!sl->dirty)
            continue;
        bool append = sorts_after(last, sl->a.id, VS_LEDGER_ID_LEN);
        uint8_t rec[ACCOUNT_MAX];
        MDB_val key = vs_mval(sl->a.id, VS_LEDGER_ID_LEN);
        MDB_val val = vs_mval(rec, account_encode(&sl->a, rec));
        rc = vs_lmdb_err(mdb_cursor_put(c, &key, &val, append ? MDB_APPEND : 0));
        if (append) {
            memcpy(last->k, sl->a.id, VS_LEDGER_ID_LEN);
            last->n = VS_LEDGER_ID_LEN;
        }
        sl->dirty = false;
    }
    mdb_cursor_close(c);
    mdb_cursor_close(hc);
    return rc;
}

/* fresh_flush's walk: the table being appended to, through one cursor. */
struct fresh_flush {
    vs_ledger_txn *t;
    int which;
    MDB_cursor *c;
    bool dup;
};

static int flush_entry(unsigned table, const uint8_t *k, size_t kn, const void *v, size_t vn,
                       void *arg)
{
    struct fresh_flush *ff = arg;
    vs_ledger *l = ff->t->l;
    if ((int)table != ff->which) {
        if (ff->c != NULL)
            mdb_cursor_close(ff->c);
        ff->c = NULL;
        ff->which = (int)table;
        MDB_dbi db = 0;
        while (db < sizeof l->fresh_table && l->fresh_table[db] != ff->which)
            db++;
        if (db == sizeof l->fresh_table)
            return -EUCLEAN;
        ff->dup = db == l->by_task;
        int rc = vs_lmdb_err(mdb_cursor_open(ff->t->txn, db, &ff->c));
        if (rc)
            return rc;
    }
    struct last_key *lk = &ff->t->last[table];
    size_t keylen = ff->dup ? VS_LEDGER_ID_LEN : kn; /* by_task: task | transfer id */
    MDB_val key = vs_mval(k, keylen);
    MDB_val val = ff->dup ? vs_mval(k + keylen, kn - keylen) : vs_mval(v, vn);
    bool same_key = ff->dup && lk->n == keylen && memcmp(lk->k, k, keylen) == 0; /* a further duplicate */
    int rc = vs_lmdb_err(mdb_cursor_put(ff->c, &key, &val, same_key ? MDB_APPENDDUP : MDB_APPEND));
    if (rc == 0) {
        memcpy(lk->k, k, keylen);
        lk->n = keylen;
    }
    return rc;
}

/* The write's fresh keys into LMDB, appended in key order (before the
 * commit, and before a cursor reads a tracked table that has some). Each
 * table's last key moves up to the last one appended. */
static int fresh_flush(vs_ledger_txn *t)
{
    vs_ledger *l = t->l;
    if (!t->write || fresh_empty(l->fresh))
        return 0;
    struct fresh_flush ff = {.t = t, .which = -1};
    int rc = fresh_each(l->fresh, flush_entry, &ff);
    if (ff.c != NULL)
        mdb_cursor_close(ff.c);
    fresh_clear(l->fresh);
    memset(t->fresh_max, 0, sizeof t->fresh_max);
    return rc;
}

/* Before a cursor reads db in a write: its fresh keys into LMDB. */
static int fresh_flush_for(vs_ledger_txn *t, MDB_dbi db)
{
    vs_ledger *l = t->l;
    bool has = t->write && db < sizeof l->fresh_table && l->fresh_table[db] >= 0 &&
               fresh_has(l->fresh, (unsigned)l->fresh_table[db]);
    return has ? fresh_flush(t) : 0;
}

int vs_ledger_account(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN], struct vs_account *out)
{
    if (!t->write)
        return account_load(t, id, out);
    struct acct_slot *sl;
    int rc = cache_get(t, id, &sl);
    if (rc == 0)
        *out = sl->a;
    return rc;
}

int vs_ledger_account_by_name(vs_ledger_txn *t, const char *name, struct vs_account *out)
{
    if (name == NULL || name[0] == '\0' || !name_valid(name))
        return -EINVAL;
    uint8_t id[VS_LEDGER_ID_LEN];
    int rc = get_rec(t, t->l->names, name, strlen(name), id, sizeof id);
    return rc ? rc : vs_ledger_account(t, id, out);
}

/* Store a (new or changed) account in the cache; a chain remembers the
 * slot's previous state once. */
static int account_put(vs_ledger_txn *t, const struct vs_account *a)
{
    vs_ledger *l = t->l;
    int rc = cache_reserve(l);
    if (rc)
        return rc;
    bool found;
    struct acct_slot *sl = slot_find(l, a->id, &found);
    if (l->in_chain) {
        size_t idx = (size_t)(sl - l->slots);
        bool logged = false;
        for (size_t i = 0; i < l->nundo && !logged; i++)
            logged = l->undo[i].is_account && l->undo[i].slot == idx;
        if (!logged) {
            struct undo *u = undo_push(l);
            if (u == NULL)
                return -ENOMEM;
            u->is_account = true;
            u->slot = idx;
            if (!found)
                return -EINVAL; /* chains only change accounts they have read */
            u->had = sl->dirty;
            u->old = sl->a;
        }
    }
    if (!found)
        slot_claim(l, sl, a);
    sl->a = *a;
    sl->dirty = true;
    return 0;
}

int vs_ledger_create_account(vs_ledger_txn *t, const struct vs_account *in, bool *replayed)
{
    if (t == NULL || in == NULL)
        return -EINVAL;
    if (replayed != NULL)
        *replayed = false;
    if (!t->write)
        return -EROFS;
    if (id_zero(in->id))
        return VS_ACCT_ID_MUST_NOT_BE_ZERO;
    if (in->flags & ~(VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                      VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS))
        return VS_ACCT_FLAGS_UNKNOWN;
    if ((in->flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        (in->flags & VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS))
        return VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (in->ledger == 0)
        return VS_ACCT_LEDGER_MUST_NOT_BE_ZERO;
    if (in->code == 0)
        return VS_ACCT_CODE_MUST_NOT_BE_ZERO;
    if (!name_valid(in->name) || !name_valid(in->owner))
        return VS_ACCT_NAME_INVALID;

    struct vs_account a;
    memset(&a, 0, sizeof a);
    memcpy(a.id, in->id, VS_LEDGER_ID_LEN);
    a.ledger = in->ledger;
    a.code = in->code;
    a.flags = in->flags;
    memcpy(a.user_data_128, in->user_data_128, VS_LEDGER_ID_LEN);
    a.user_data_64 = in->user_data_64;
    memcpy(a.name, in->name, strlen(in->name));
    memcpy(a.owner, in->owner, strlen(in->owner));
    a.has_public_key = in->has_public_key;
    if (a.has_public_key)
        memcpy(a.public_key, in->public_key, VS_LEDGER_KEY_LEN);

    struct vs_account old;
    int rc = vs_ledger_account(t, a.id, &old);
    if (rc == 0) {
        if (!account_same_body(&old, &a))
            return VS_ACCT_EXISTS_WITH_DIFFERENT_BODY;
        if (replayed != NULL)
            *replayed = true;
        return VS_ACCT_OK;
    }
    if (rc != -ENOENT)
        return rc;
    size_t nlen = strlen(a.name);
    if (nlen > 0) {
        MDB_val v;
        rc = get(t, t->l->names, a.name, nlen, &v);
        if (rc == 0)
            return VS_ACCT_NAME_TAKEN;
        if (rc != -ENOENT)
            return rc;
        rc = put(t, t->l->names, a.name, nlen, a.id, VS_LEDGER_ID_LEN, 0);
        if (rc)
            return rc;
    }
    a.timestamp = next_timestamp(t);
    return account_put(t, &a);
}

int vs_ledger_accounts(vs_ledger_txn *t, int (*cb)(const struct vs_account *a, void *arg), void *arg)
{
    MDB_cursor *c;
    int rc = t->write ? cache_flush(t) : 0; /* the scan reads LMDB */
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->accounts, &c));
    if (rc)
        return rc;
    MDB_val k, v;
    for (int op = MDB_FIRST; (rc = mdb_cursor_get(c, &k, &v, (MDB_cursor_op)op)) == 0; op = MDB_NEXT) {
        struct vs_account a;
        if (account_decode(&v, &a) != 0) {
            rc = -EBADMSG;
            break;
        }
        if ((rc = cb(&a, arg)) != 0) {
            mdb_cursor_close(c);
            return rc; /* the callback's own value */
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc > 0 ? vs_lmdb_err(rc) : rc;
}

/* ---- transfers: records and indexes ------------------------------------------------ */

static int xfer_get(vs_ledger_txn *t, const uint8_t *id, struct xfer_rec *r)
{
    return get_rec(t, t->l->transfers, id, VS_LEDGER_ID_LEN, r, sizeof *r);
}

static int xfer_put(vs_ledger_txn *t, const struct xfer_rec *r, bool is_new)
{
    return put(t, t->l->transfers, r->x.id, VS_LEDGER_ID_LEN, r, sizeof *r, is_new ? PUT_NEW : 0);
}

/* The body a record was created from (for idempotency). */
static void rec_body(const struct xfer_rec *r, struct vs_transfer *b)
{
    *b = r->x;
    b->timestamp = 0;
    if (r->result != VS_XFER_OK)
        return;
    if (r->x.flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)) {
        b->amount = r->submitted_amount;
        if (r->submitted_zero & ZERO_DEBIT)
            memset(b->debit_account_id, 0, VS_LEDGER_ID_LEN);
        if (r->submitted_zero & ZERO_CREDIT)
            memset(b->credit_account_id, 0, VS_LEDGER_ID_LEN);
        if (r->submitted_zero & ZERO_LEDGER)
            b->ledger = 0;
        if (r->submitted_zero & ZERO_CODE)
            b->code = 0;
    }
}

static void expiry_key(uint8_t k[8 + VS_LEDGER_ID_LEN], uint64_t deadline, const uint8_t *id)
{
    vs_put_be64(k, deadline);
    memcpy(k + 8, id, VS_LEDGER_ID_LEN);
}

/* Add timestamp | id to the history buffer of a cached account (stored as
 * one chunk per account and commit by cache_flush). */
static int hist_add(vs_ledger_txn *t, const uint8_t *account, const uint8_t entry[HIST_LEN])
{
    vs_ledger *l = t->l;
    struct acct_slot *sl;
    int rc = cache_get(t, account, &sl);
    if (rc)
        return rc == -ENOENT ? -EUCLEAN : rc;
    if (sl->nhist == sl->hist_cap) {
        size_t cap = sl->hist_cap ? sl->hist_cap * 2 : 16;
        uint8_t *h = realloc(sl->hist, cap * HIST_LEN);
        if (h == NULL)
            return -ENOMEM;
        sl->hist = h;
        sl->hist_cap = cap;
    }
    if (l->in_chain) {
        struct undo *u = undo_push(l);
        if (u == NULL)
            return -ENOMEM;
        u->is_hist = true;
        u->slot = (size_t)(sl - l->slots);
    }
    memcpy(sl->hist + sl->nhist++ * HIST_LEN, entry, HIST_LEN);
    return 0;
}

/* by_account: account | first timestamp -> the chunk of one commit's
 * entries (timestamp | id); by_task: task -> id (pending transfers). */
static int index_transfer(vs_ledger_txn *t, const struct vs_transfer *x)
{
    uint8_t v[HIST_LEN];
    vs_put_be64(v, x->timestamp);
    memcpy(v + 8, x->id, VS_LEDGER_ID_LEN);
    int rc = hist_add(t, x->debit_account_id, v);
    if (rc == 0)
        rc = hist_add(t, x->credit_account_id, v);
    if (rc == 0 && (x->flags & VS_TRANSFER_PENDING) && !id_zero(x->user_data_128))
        rc = put_dup(t, t->l->by_task, x->user_data_128, VS_LEDGER_ID_LEN, x->id, VS_LEDGER_ID_LEN);
    return rc;
}

static bool transfer_same_body(const struct vs_transfer *a, const struct vs_transfer *b)
{
    return memcmp(a->id, b->id, VS_LEDGER_ID_LEN) == 0 &&
           memcmp(a->debit_account_id, b->debit_account_id, VS_LEDGER_ID_LEN) == 0 &&
           memcmp(a->credit_account_id, b->credit_account_id, VS_LEDGER_ID_LEN) == 0 &&
           memcmp(a->pending_id, b->pending_id, VS_LEDGER_ID_LEN) == 0 &&
           memcmp(a->user_data_128, b->user_data_128, VS_LEDGER_ID_LEN) == 0 &&
           a->amount == b->amount && a->user_data_64 == b->user_data_64 &&
           a->timeout_ms == b->timeout_ms && a->ledger == b->ledger && a->code == b->code &&
           a->flags == b->flags;
}

/* The client-chosen fields of x, zero elsewhere (padding included). */
static void transfer_body(const struct vs_transfer *x, struct vs_transfer *b)
{
    memset(b, 0, sizeof *b);
    memcpy(b->id, x->id, VS_LEDGER_ID_LEN);
    memcpy(b->debit_account_id, x->debit_account_id, VS_LEDGER_ID_LEN);
    memcpy(b->credit_account_id, x->credit_account_id, VS_LEDGER_ID_LEN);
    memcpy(b->pending_id, x->pending_id, VS_LEDGER_ID_LEN);
    memcpy(b->user_data_128, x->user_data_128, VS_LEDGER_ID_LEN);
    b->amount = x->amount;
    b->user_data_64 = x->user_data_64;
    b->timeout_ms = x->timeout_ms;
    b->ledger = x->ledger;
    b->code = x->code;
    b->flags = x->flags;
}

/* ---- transfers: the rules ------------------------------------------------------------ */

#define MODE_FLAGS (VS_TRANSFER_PENDING | VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)

/* Checks that need no lookup. */
static int validate_static(const struct vs_transfer *x)
{
    if (id_zero(x->id))
        return VS_XFER_ID_MUST_NOT_BE_ZERO;
    if (x->flags & ~(VS_TRANSFER_LINKED | MODE_FLAGS))
        return VS_XFER_FLAGS_UNKNOWN;
    unsigned mode = x->flags & MODE_FLAGS;
    if (mode & (mode - 1))
        return VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (mode & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)) {
        if (id_zero(x->pending_id))
            return VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO;
        if (memcmp(x->pending_id, x->id, VS_LEDGER_ID_LEN) == 0)
            return VS_XFER_PENDING_ID_MUST_BE_DIFFERENT;
        if (x->timeout_ms != 0)
            return VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
        return VS_XFER_OK;
    }
    if (!id_zero(x->pending_id))
        return VS_XFER_PENDING_ID_MUST_BE_ZERO;
    if (x->timeout_ms != 0 && !(mode & VS_TRANSFER_PENDING))
        return VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
    if (id_zero(x->debit_account_id))
        return VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (id_zero(x->credit_account_id))
        return VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (memcmp(x->debit_account_id, x->credit_account_id, VS_LEDGER_ID_LEN) == 0)
        return VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT;
    if (x->ledger == 0)
        return VS_XFER_LEDGER_MUST_NOT_BE_ZERO;
    if (x->code == 0)
        return VS_XFER_CODE_MUST_NOT_BE_ZERO;
    if (x->amount == 0)
        return VS_XFER_AMOUNT_MUST_NOT_BE_ZERO;
    return VS_XFER_OK;
}

static bool add_overflows(uint64_t a, uint64_t b, uint64_t c)
{
    return a > UINT64_MAX - b || a + b > UINT64_MAX - c;
}

/* A plain or pending transfer: check against the accounts, then apply. */
static int apply_new(vs_ledger_txn *t, const struct vs_transfer *x, struct xfer_rec *rec)
{
    struct vs_transfer *applied = &rec->x;
    struct vs_account dr, cr;
    int rc = vs_ledger_account(t, x->debit_account_id, &dr);
    if (rc == -ENOENT)
        return VS_XFER_DEBIT_ACCOUNT_NOT_FOUND;
    if (rc)
        return rc;
    rc = vs_ledger_account(t, x->credit_account_id, &cr);
    if (rc == -ENOENT)
        return VS_XFER_CREDIT_ACCOUNT_NOT_FOUND;
    if (rc)
        return rc;
    if (dr.ledger != cr.ledger)
        return VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER;
    if (x->ledger != dr.ledger)
        return VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
    bool pending = x->flags & VS_TRANSFER_PENDING;
    uint64_t deadline = 0;
    if (pending && x->timeout_ms != 0) {
        if (x->timeout_ms > (UINT64_MAX - t->now) / 1000000u)
            return VS_XFER_OVERFLOWS_TIMEOUT;
        deadline = t->now + x->timeout_ms * 1000000u;
    }
    uint64_t amt = x->amount;
    if (add_overflows(dr.debits_pending, dr.debits_posted, amt))
        return VS_XFER_OVERFLOWS_DEBITS;
    if (add_overflows(cr.credits_pending, cr.credits_posted, amt))
        return VS_XFER_OVERFLOWS_CREDITS;
    if ((dr.flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        dr.debits_pending + dr.debits_posted + amt > dr.credits_posted)
        return VS_XFER_EXCEEDS_CREDITS;
    if ((cr.flags & VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
        cr.credits_pending + cr.credits_posted + amt > cr.debits_posted)
        return VS_XFER_EXCEEDS_DEBITS;

    if (pending) {
        dr.debits_pending += amt;
        cr.credits_pending += amt;
    } else {
        dr.debits_posted += amt;
        cr.credits_posted += amt;
    }
    transfer_body(x, applied);
    applied->timestamp = next_timestamp(t);
    if ((rc = account_put(t, &dr)) || (rc = account_put(t, &cr)) || (rc = index_transfer(t, applied)))
        return rc;
    if (pending) {
        rec->state = VS_PENDING_OPEN;
        rec->deadline = deadline;
        if (deadline != 0) {
            uint8_t k[8 + VS_LEDGER_ID_LEN];
            expiry_key(k, deadline, x->id);
            rc = put(t, t->l->expiry, k, sizeof k, "", 0, PUT_NEW);
        }
    }
    return rc;
}

/* Release a pending transfer's reservation (post, void or expiry); posted
 * is the amount that becomes posted (0 for void/expiry). */
static int resolve_pending(vs_ledger_txn *t, const struct xfer_rec *hold, uint64_t posted,
                           enum vs_pending_state state)
{
    const struct vs_transfer *p = &hold->x;
    struct vs_account dr, cr;
    int rc = vs_ledger_account(t, p->debit_account_id, &dr);
    if (rc == 0)
        rc = vs_ledger_account(t, p->credit_account_id, &cr);
    if (rc)
        return rc == -ENOENT ? -EUCLEAN : rc;
    if (dr.debits_pending < p->amount || cr.credits_pending < p->amount)
        return -EUCLEAN;
    if (dr.debits_posted > UINT64_MAX - posted)
        return VS_XFER_OVERFLOWS_DEBITS;
    if (cr.credits_posted > UINT64_MAX - posted)
        return VS_XFER_OVERFLOWS_CREDITS;
    dr.debits_pending -= p->amount;
    cr.credits_pending -= p->amount;
    dr.debits_posted += posted;
    cr.credits_posted += posted;
    if ((rc = account_put(t, &dr)) || (rc = account_put(t, &cr)))
        return rc;
    struct xfer_rec updated = *hold;
    updated.state = (uint16_t)state;
    if ((rc = xfer_put(t, &updated, false)))
        return rc;
    if (hold->deadline != 0) {
        uint8_t k[8 + VS_LEDGER_ID_LEN];
        expiry_key(k, hold->deadline, p->id);
        rc = del(t, t->l->expiry, k, sizeof k);
    }
    return rc;
}

/* POST_PENDING / VOID_PENDING. */
static int apply_resolve(vs_ledger_txn *t, const struct vs_transfer *x, struct xfer_rec *rec)
{
    struct vs_transfer *applied = &rec->x;
    struct xfer_rec pr;
    int rc = xfer_get(t, x->pending_id, &pr);
    if (rc == -ENOENT || (rc == 0 && pr.result != VS_XFER_OK))
        return VS_XFER_PENDING_TRANSFER_NOT_FOUND;
    if (rc)
        return rc;
    const struct vs_transfer *p = &pr.x;
    if (!(p->flags & VS_TRANSFER_PENDING))
        return VS_XFER_PENDING_TRANSFER_NOT_PENDING;
    if ((!id_zero(x->debit_account_id) &&
         memcmp(x->debit_account_id, p->debit_account_id, VS_LEDGER_ID_LEN) != 0) ||
        (!id_zero(x->credit_account_id) &&
         memcmp(x->credit_account_id, p->credit_account_id, VS_LEDGER_ID_LEN) != 0))
        return VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS;
    if (x->ledger != 0 && x->ledger != p->ledger)
        return VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER;
    if (x->code != 0 && x->code != p->code)
        return VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
    switch (pr.state) {
    case VS_PENDING_OPEN:
        break;
    case VS_PENDING_POSTED:
        return VS_XFER_PENDING_TRANSFER_ALREADY_POSTED;
    case VS_PENDING_VOIDED:
        return VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED;
    default:
        return VS_XFER_PENDING_TRANSFER_EXPIRED;
    }
    if (pr.deadline != 0 && pr.deadline <= t->now)
        return VS_XFER_PENDING_TRANSFER_EXPIRED;
    if (x->amount > p->amount)
        return VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    bool post = x->flags & VS_TRANSFER_POST_PENDING;
    uint64_t amount = post && x->amount != 0 ? x->amount : p->amount;
    rc = resolve_pending(t, &pr, post ? amount : 0, post ? VS_PENDING_POSTED : VS_PENDING_VOIDED);
    if (rc)
        return rc;
    transfer_body(x, applied);
    memcpy(applied->debit_account_id, p->debit_account_id, VS_LEDGER_ID_LEN);
    memcpy(applied->credit_account_id, p->credit_account_id, VS_LEDGER_ID_LEN);
    applied->ledger = p->ledger;
    applied->code = p->code;
    applied->amount = amount;
    applied->timestamp = next_timestamp(t);
    rec->submitted_amount = x->amount;
    rec->submitted_zero = (uint8_t)((id_zero(x->debit_account_id) ? ZERO_DEBIT : 0) |
                                    (id_zero(x->credit_account_id) ? ZERO_CREDIT : 0) |
                                    (x->ledger == 0 ? ZERO_LEDGER : 0) | (x->code == 0 ? ZERO_CODE : 0));
    return index_transfer(t, applied);
}

/* One transfer: its first outcome when the id is known, else the rules.
 * Returns a result (>= 0) or -errno. */
static int create_one(vs_ledger_txn *t, const struct vs_transfer *x, bool *replayed)
{
    *replayed = false;
    int r = validate_static(x);
    if (r == VS_XFER_ID_MUST_NOT_BE_ZERO)
        return r;
    struct xfer_rec rec;
    int rc = xfer_get(t, x->id, &rec);
    if (rc == 0) {
        struct vs_transfer b, stored;
        transfer_body(x, &b);
        rec_body(&rec, &stored);
        if (!transfer_same_body(&stored, &b))
            return VS_XFER_EXISTS_WITH_DIFFERENT_BODY;
        *replayed = true;
        return rec.result;
    }
    if (rc != -ENOENT)
        return rc;
    memset(&rec, 0, sizeof rec);
    if (r == VS_XFER_OK)
        r = (x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)) ? apply_resolve(t, x, &rec)
                                                                               : apply_new(t, x, &rec);
    if (r < 0)
        return r;
    if (r != VS_XFER_OK) {
        memset(&rec, 0, sizeof rec);
        transfer_body(x, &rec.x);
    }
    rec.result = r;
    rc = xfer_put(t, &rec, true);
    return rc ? rc : r;
}

/* Record the outcome of a transfer that did not apply (a failed chain's
 * members), unless its id is zero or already bound. */
static int record_failure(vs_ledger_txn *t, const struct vs_transfer *x, int result)
{
    if (id_zero(x->id) || result == VS_XFER_EXISTS_WITH_DIFFERENT_BODY)
        return 0;
    struct xfer_rec rec;
    int rc = xfer_get(t, x->id, &rec);
    if (rc != -ENOENT)
        return rc;
    memset(&rec, 0, sizeof rec);
    transfer_body(x, &rec.x);
    rec.result = result;
    return xfer_put(t, &rec, true);
}

/* *replayed: x's id is bound to the same body, with *result its first
 * outcome. */
static int stored_outcome(vs_ledger_txn *t, const struct vs_transfer *x, int *result, bool *replayed)
{
    *replayed = false;
    if (id_zero(x->id))
        return 0;
    struct xfer_rec rec;
    int rc = xfer_get(t, x->id, &rec);
    if (rc)
        return rc == -ENOENT ? 0 : rc;
    struct vs_transfer b, stored;
    transfer_body(x, &b);
    rec_body(&rec, &stored);
    if (transfer_same_body(&stored, &b)) {
        *replayed = true;
        *result = rec.result;
    }
    return 0;
}

/* A linked chain xs[0..n-1] (n >= 2): applied with an undo log, rolled
 * back when a member fails. */
static int create_chain(vs_ledger_txn *t, const struct vs_transfer *xs, size_t n, bool open_end,
                        int *results, bool *replayed)
{
    vs_ledger *l = t->l;
    uint64_t clock = t->clock;
    undo_clear(l);
    l->in_chain = true;
    size_t failed = n;
    int failure = VS_XFER_OK, rc = 0;
    for (size_t i = 0; i < n && failed == n && rc == 0; i++) {
        int r = create_one(t, &xs[i], &replayed[i]);
        if (r < 0) {
            rc = r;
        } else {
            results[i] = r;
            if (r != VS_XFER_OK) {
                failed = i;
                failure = r;
            }
        }
    }
    l->in_chain = false;
    if (rc < 0) {
        undo_clear(l);
        return rc; /* the whole write transaction is aborted */
    }
    if (failed == n && open_end) {
        failed = n - 1;
        failure = VS_XFER_LINKED_EVENT_CHAIN_OPEN;
    }
    if (failed == n) {
        undo_clear(l);
        return 0;
    }
    if ((rc = undo_rollback(t)))
        return rc;
    t->clock = clock;
    for (size_t i = 0; i < n; i++) {
        /* A member decided by an earlier call keeps that first outcome. */
        if ((rc = stored_outcome(t, &xs[i], &results[i], &replayed[i])))
            return rc;
        if (replayed[i])
            continue;
        results[i] = failure == VS_XFER_LINKED_EVENT_CHAIN_OPEN ? failure
                     : i == failed                             ? failure
                                                               : VS_XFER_LINKED_EVENT_FAILED;
        if ((rc = record_failure(t, &xs[i], results[i])))
            return rc;
    }
    return 0;
}

int vs_ledger_create_transfers(vs_ledger_txn *t, const struct vs_transfer *xs, size_t n,
                               int *results, bool *replayed)
{
    if (t == NULL || (n > 0 && (xs == NULL || results == NULL)))
        return -EINVAL;
    if (!t->write)
        return -EROFS;
    bool scratch[64];
    bool *rep = replayed;
    bool *heap = NULL;
    if (rep == NULL) {
        if (n > sizeof scratch / sizeof scratch[0]) {
            if ((heap = calloc(n, sizeof *heap)) == NULL)
                return -ENOMEM;
            rep = heap;
        } else {
            rep = scratch;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t end = i;
        while (end < n && (xs[end].flags & VS_TRANSFER_LINKED))
            end++;
        bool open_end = end == n;
        size_t len = (open_end ? n : end + 1) - i;
        if (len == 1 && !open_end) {
            int r = create_one(t, &xs[i], &rep[i]);
            if (r < 0)
                rc = r;
            else
                results[i] = r;
        } else {
            rc = create_chain(t, xs + i, len, open_end, results + i, rep + i);
        }
        i += len;
    }
    free(heap);
    return rc;
}

int vs_ledger_transfer(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN], struct vs_transfer *out,
                       enum vs_pending_state *state, uint64_t *deadline_ns)
{
    struct xfer_rec rec;
    int rc = xfer_get(t, id, &rec);
    if (rc)
        return rc;
    if (rec.result != VS_XFER_OK)
        return -ENOENT;
    if (out != NULL)
        *out = rec.x;
    if (state != NULL)
        *state = (enum vs_pending_state)rec.state;
    if (deadline_ns != NULL)
        *deadline_ns = rec.deadline;
    return 0;
}

/* ---- expiry ------------------------------------------------------------------------ */

/* The earliest expiry key (deadline | id); *found false when none. */
static int first_expiry(vs_ledger_txn *t, uint8_t key[8 + VS_LEDGER_ID_LEN], bool *found)
{
    MDB_cursor *c;
    int rc = fresh_flush_for(t, t->l->expiry);
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->expiry, &c));
    if (rc)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    *found = rc == 0;
    if (rc == 0 && k.mv_size != 8 + VS_LEDGER_ID_LEN)
        rc = EBADMSG;
    else if (rc == 0)
        memcpy(key, k.mv_data, 8 + VS_LEDGER_ID_LEN);
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc == EBADMSG ? -EBADMSG : vs_lmdb_err(rc);
}

static int expire_due(vs_ledger_txn *t)
{
    for (;;) {
        uint8_t key[8 + VS_LEDGER_ID_LEN];
        bool found;
        int rc = first_expiry(t, key, &found);
        if (rc || !found || vs_get_be64(key) > t->now)
            return rc;
        struct xfer_rec rec;
        if ((rc = xfer_get(t, key + 8, &rec)))
            return rc == -ENOENT ? -EUCLEAN : rc;
        if (rec.state != VS_PENDING_OPEN)
            return -EUCLEAN;
        rc = resolve_pending(t, &rec, 0, VS_PENDING_EXPIRED);
        if (rc > 0)
            return -EUCLEAN;
        if (rc == 0 && t->l->on_expired != NULL)
            rc = t->l->on_expired(t, &rec.x, t->l->on_expired_arg);
        if (rc)
            return rc;
    }
}

int vs_ledger_next_deadline(vs_ledger_txn *t, uint64_t *deadline_ns)
{
    uint8_t key[8 + VS_LEDGER_ID_LEN];
    bool found;
    int rc = first_expiry(t, key, &found);
    *deadline_ns = rc == 0 && found ? vs_get_be64(key) : 0;
    return rc;
}

/* ---- transactions ---------------------------------------------------------------------- */

static int begin(vs_ledger *l, bool write, MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        int rc = mdb_txn_begin(l->env, NULL, write ? 0 : MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED && tries < 2) {
            rc = mdb_env_set_mapsize(l->env, 0); /* grown by another process */
            if (rc == 0)
                continue;
        } else if (rc == MDB_READERS_FULL && tries < 2) {
            int dead;
            mdb_reader_check(l->env, &dead);
            continue;
        }
        return vs_lmdb_err(rc);
    }
}

/* Double the map once the process's readers are out (maplock). */
static int grow(vs_ledger *l)
{
    pthread_rwlock_wrlock(&l->maplock);
    uint64_t size = map_size(l);
    int rc = size == 0 || size >= MAX_MAP_SIZE
                 ? -ENOSPC
                 : vs_lmdb_err(mdb_env_set_mapsize(l->env, (size_t)(size * 2)));
    pthread_rwlock_unlock(&l->maplock);
    return rc;
}

int vs_ledger_write(vs_ledger *l, uint64_t now_ns, vs_ledger_apply_fn apply, void *arg)
{
    if (l == NULL || apply == NULL)
        return -EINVAL;
    if (l->read_only)
        return -EROFS;
    for (;;) {
        vs_ledger_txn t = {.l = l, .write = true};
        pthread_rwlock_rdlock(&l->maplock);
        int rc = begin(l, true, &t.txn);
        if (rc) {
            pthread_rwlock_unlock(&l->maplock);
            return rc;
        }
        cache_clear(l);
        rc = meta_get(&t, "clock", &t.clock);
        if (rc == 0) {
            uint64_t now = now_ns != 0 ? now_ns : clock_ns();
            t.now = now > t.clock ? now : t.clock + 1;
            t.clock = t.now;
            rc = expire_due(&t);
        }
        if (rc == 0)
            rc = apply(&t, arg);
        if (rc == 0)
            rc = cache_flush(&t);
        if (rc == 0)
            rc = fresh_flush(&t);
        if (rc == 0)
            rc = meta_put(&t, "clock", t.clock);
        if (rc == 0)
            rc = vs_lmdb_err(mdb_txn_commit(t.txn));
        else
            mdb_txn_abort(t.txn);
        cache_clear(l);
        fresh_clear(l->fresh);
        undo_clear(l);
        pthread_rwlock_unlock(&l->maplock);
        if (rc != VS_LMDB_MAP_FULL)
            return rc;
        if ((rc = grow(l)))
            return rc;
    }
}

int vs_ledger_sync(vs_ledger *l)
{
    if (l == NULL)
        return -EINVAL;
    if (l->read_only)
        return 0;
    pthread_rwlock_rdlock(&l->maplock);
    int rc = vs_lmdb_err(mdb_env_sync(l->env, 1));
    pthread_rwlock_unlock(&l->maplock);
    return rc;
}

int vs_ledger_read(vs_ledger *l, vs_ledger_apply_fn apply, void *arg)
{
    if (l == NULL || apply == NULL)
        return -EINVAL;
    vs_ledger_txn t = {.l = l, .write = false};
    pthread_rwlock_rdlock(&l->maplock);
    int rc = begin(l, false, &t.txn);
    if (rc == 0) {
        rc = meta_get(&t, "clock", &t.clock);
        t.now = clock_ns();
        if (rc == 0)
            rc = apply(&t, arg);
        mdb_txn_abort(t.txn);
    }
    pthread_rwlock_unlock(&l->maplock);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------- */

static int emit_transfer(vs_ledger_txn *t, const uint8_t *id, bool open_only, vs_transfer_fn cb,
                         void *arg, int *stop)
{
    struct vs_transfer x;
    enum vs_pending_state st;
    int rc = vs_ledger_transfer(t, id, &x, &st, NULL);
    if (rc)
        return rc == -ENOENT ? -EUCLEAN : rc;
    if (open_only && st != VS_PENDING_OPEN)
        return 0;
    *stop = cb(&x, st, arg);
    return 0;
}

/* Each history entry of an account with a timestamp above after_ts, in
 * order, to fn until it returns nonzero (returned). Chunks are keyed by
 * their first timestamp, so the walk starts at the chunk before. */
typedef int (*hist_fn)(vs_ledger_txn *t, const uint8_t *entry, void *arg);

static int hist_each(vs_ledger_txn *t, const uint8_t *account, uint64_t after_ts, hist_fn fn, void *arg)
{
    int rc = t->write ? cache_flush(t) : 0; /* this write's chunks too */
    if (rc)
        return rc;
    uint8_t start[VS_LEDGER_ID_LEN + 8];
    memcpy(start, account, VS_LEDGER_ID_LEN);
    vs_put_be64(start + VS_LEDGER_ID_LEN, after_ts);
    MDB_cursor *c;
    if ((rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->by_account, &c))))
        return rc;
    MDB_val k = vs_mval(start, sizeof start), v;
    int r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (r == MDB_NOTFOUND) {
        r = mdb_cursor_get(c, &k, &v, MDB_LAST);
    } else if (r == 0) {
        /* The chunk before may start earlier and still hold later entries. */
        MDB_val pk, pv;
        if (mdb_cursor_get(c, &pk, &pv, MDB_PREV) == 0) {
            k = pk;
            v = pv;
        } else {
            k = vs_mval(start, sizeof start);
            r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        }
    }
    for (; r == 0 && rc == 0; r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        int order = k.mv_size == sizeof start ? memcmp(k.mv_data, account, VS_LEDGER_ID_LEN) : 1;
        if (order < 0)
            continue; /* the previous account's last chunk */
        if (order > 0)
            break;
        if (v.mv_size % HIST_LEN != 0) {
            rc = -EBADMSG;
            break;
        }
        const uint8_t *e = v.mv_data;
        for (size_t i = 0; i < v.mv_size / HIST_LEN && rc == 0; i++, e += HIST_LEN)
            if (vs_get_be64(e) > after_ts)
                rc = fn(t, e, arg);
    }
    mdb_cursor_close(c);
    return rc ? rc : (r == 0 || r == MDB_NOTFOUND) ? 0 : vs_lmdb_err(r);
}

struct hist_query {
    vs_transfer_fn cb;
    void *arg;
    size_t limit, n;
    bool open_only;
};

static int hist_emit(vs_ledger_txn *t, const uint8_t *entry, void *arg)
{
    struct hist_query *q = arg;
    if (q->limit != 0 && q->n == q->limit)
        return INT32_MAX; /* done */
    int stop = 0;
    if (q->open_only) {
        struct xfer_rec rec;
        int rc = xfer_get(t, entry + 8, &rec);
        if (rc)
            return rc == -ENOENT ? -EUCLEAN : rc;
        if (!(rec.x.flags & VS_TRANSFER_PENDING))
            return 0;
    }
    int rc = emit_transfer(t, entry + 8, q->open_only, q->cb, q->arg, &stop);
    q->n++;
    return rc ? rc : stop;
}

int vs_ledger_history(vs_ledger_txn *t, const uint8_t account_id[VS_LEDGER_ID_LEN], uint64_t after_ts,
                      size_t limit, vs_transfer_fn cb, void *arg)
{
    if (t == NULL || account_id == NULL || cb == NULL)
        return -EINVAL;
    if (after_ts == UINT64_MAX)
        return 0;
    struct hist_query q = {.cb = cb, .arg = arg, .limit = limit};
    int rc = hist_each(t, account_id, after_ts, hist_emit, &q);
    return rc == INT32_MAX ? 0 : rc;
}

int vs_ledger_pending(vs_ledger_txn *t, const uint8_t *account_id, const uint8_t *task_id,
                      vs_transfer_fn cb, void *arg)
{
    if (t == NULL || cb == NULL || (account_id == NULL) == (task_id == NULL))
        return -EINVAL;
    if (account_id != NULL) {
        struct hist_query q = {.cb = cb, .arg = arg, .open_only = true};
        int rc = hist_each(t, account_id, 0, hist_emit, &q);
        return rc == INT32_MAX ? 0 : rc;
    }
    MDB_cursor *c;
    int rc = fresh_flush_for(t, t->l->by_task);
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->by_task, &c));
    if (rc)
        return rc;
    MDB_val k = vs_mval(task_id, VS_LEDGER_ID_LEN), v;
    int stop = 0;
    for (int r = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); r == 0 && stop == 0 && rc == 0;
         r = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
        if (v.mv_size != VS_LEDGER_ID_LEN)
            break;
        const uint8_t *id = v.mv_data;
        struct xfer_rec rec;
        if ((rc = xfer_get(t, id, &rec)))
            break;
        if (rec.x.flags & VS_TRANSFER_PENDING)
            rc = emit_transfer(t, id, true, cb, arg, &stop);
    }
    mdb_cursor_close(c);
    return rc ? rc : stop;
}

/* ---- commands, outbox, tables -------------------------------------------------------------- */

int vs_ledger_command_get(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                          const uint8_t body_hash[32], const uint8_t **reply, size_t *len)
{
    MDB_val v;
    int rc = get(t, t->l->commands, id, VS_LEDGER_ID_LEN, &v);
    if (rc)
        return rc;
    if (v.mv_size < 32)
        return -EBADMSG;
    if (memcmp(v.mv_data, body_hash, 32) != 0)
        return -EEXIST;
    *reply = (const uint8_t *)v.mv_data + 32;
    *len = v.mv_size - 32;
    return 0;
}

int vs_ledger_command_put(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                          const uint8_t body_hash[32], const void *reply, size_t len)
{
    if (!t->write)
        return -EROFS;
    void *dst;
    int rc = reserve_raw(t, t->l->commands, id, VS_LEDGER_ID_LEN, 32 + len, &dst);
    if (rc == 0) {
        memcpy(dst, body_hash, 32);
        if (len > 0)
            memcpy((uint8_t *)dst + 32, reply, len);
    }
    return rc;
}

int vs_ledger_outbox_put(vs_ledger_txn *t, const char *subject, const char *msg_id, const void *data,
                         size_t len)
{
    if (subject == NULL || msg_id == NULL || (len > 0 && data == NULL))
        return -EINVAL;
    size_t sl = strlen(subject), il = strlen(msg_id);
    if (sl > UINT16_MAX || il > UINT16_MAX)
        return -EINVAL;
    uint64_t seq;
    int rc = meta_get(t, "outbox", &seq);
    if (rc == 0)
        rc = meta_put(t, "outbox", ++seq);
    if (rc)
        return rc;
    uint8_t k[8];
    vs_put_be64(k, seq);
    MDB_val key = vs_mval(k, sizeof k), val = {4 + sl + il + len, NULL};
    rc = vs_lmdb_err(mdb_put(t->txn, t->l->outbox, &key, &val, MDB_RESERVE));
    if (rc == 0) {
        uint8_t *p = val.mv_data;
        p[0] = (uint8_t)(sl >> 8);
        p[1] = (uint8_t)sl;
        memcpy(p + 2, subject, sl);
        p[2 + sl] = (uint8_t)(il >> 8);
        p[3 + sl] = (uint8_t)il;
        memcpy(p + 4 + sl, msg_id, il);
        if (len > 0)
            memcpy(p + 4 + sl + il, data, len);
    }
    return rc;
}

int vs_ledger_outbox_last(vs_ledger_txn *t, uint64_t *seq)
{
    return t == NULL || seq == NULL ? -EINVAL : meta_get(t, "outbox", seq);
}

int vs_ledger_outbox_each(vs_ledger_txn *t, uint64_t after_seq, vs_outbox_fn cb, void *arg)
{
    if (after_seq == UINT64_MAX)
        return 0;
    MDB_cursor *c;
    int rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->outbox, &c));
    if (rc)
        return rc;
    uint8_t start[8];
    vs_put_be64(start, after_seq + 1);
    MDB_val k = vs_mval(start, sizeof start), v;
    int r;
    for (r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); r == 0 && rc == 0;
         r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        size_t n = v.mv_size;
        if (k.mv_size != 8 || n < 4) {
            rc = -EBADMSG;
            break;
        }
        size_t sl = (size_t)p[0] << 8 | p[1];
        if (n < 4 + sl) {
            rc = -EBADMSG;
            break;
        }
        size_t il = (size_t)p[2 + sl] << 8 | p[3 + sl];
        if (n < 4 + sl + il || sl >= 256 || il >= 128) {
            rc = -EBADMSG;
            break;
        }
        char subject[256], msg_id[128];
        memcpy(subject, p + 2, sl);
        subject[sl] = '\0';
        memcpy(msg_id, p + 4 + sl, il);
        msg_id[il] = '\0';
        rc = cb(vs_get_be64(k.mv_data), subject, msg_id, p + 4 + sl + il, n - 4 - sl - il, arg);
    }
    mdb_cursor_close(c);
    return rc ? rc : (r == 0 || r == MDB_NOTFOUND) ? 0 : vs_lmdb_err(r);
}

int vs_ledger_outbox_del(vs_ledger_txn *t, uint64_t seq)
{
    uint8_t k[8];
    vs_put_be64(k, seq);
    return del(t, t->l->outbox, k, sizeof k);
}

static bool table_ok(enum vs_ledger_table tb)
{
    return (unsigned)tb < VS_LTABLE_COUNT;
}

int vs_ledger_kv_get(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen,
                     const uint8_t **val, size_t *vlen)
{
    if (!table_ok(tb) || key == NULL || klen == 0)
        return -EINVAL;
    MDB_val v;
    int rc = get(t, t->l->tables[tb], key, klen, &v);
    if (rc == 0) {
        *val = v.mv_data;
        *vlen = v.mv_size;
    }
    return rc;
}

int vs_ledger_kv_put(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
    if (!table_ok(tb) || key == NULL || klen == 0)
        return -EINVAL;
    return put(t, t->l->tables[tb], key, klen, val, vlen, 0);
}

int vs_ledger_kv_del(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen)
{
    if (!table_ok(tb) || key == NULL || klen == 0)
        return -EINVAL;
    return del(t, t->l->tables[tb], key, klen);
}

int vs_ledger_kv_each(vs_ledger_txn *t, enum vs_ledger_table tb, const void *prefix, size_t plen,
                      vs_kv_each_fn cb, void *arg)
{
    if (!table_ok(tb) || cb == NULL)
        return -EINVAL;
    MDB_cursor *c;
    int rc = fresh_flush_for(t, t->l->tables[tb]);
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->tables[tb], &c));
    if (rc)
        return rc;
    MDB_val k = vs_mval(prefix, plen), v;
    int r;
    for (r = mdb_cursor_get(c, &k, &v, plen > 0 ? MDB_SET_RANGE : MDB_FIRST); r == 0 && rc == 0;
         r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || (plen > 0 && memcmp(k.mv_data, prefix, plen) != 0))
            break;
        rc = cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg);
    }
    mdb_cursor_close(c);
    return rc ? rc : (r == 0 || r == MDB_NOTFOUND) ? 0 : vs_lmdb_err(r);
}

/* ---- the invariant ------------------------------------------------------------------------ */

struct recount {
    uint8_t id[VS_LEDGER_ID_LEN];
    uint64_t dp, dpo, cp, cpo; /* debits pending/posted, credits pending/posted */
};

struct check_ctx {
    struct recount *r;
    size_t n, cap;
    struct vs_ledger_totals *tot;
};

/* An account's name, or its id in hex when it has none. */
static const char *account_label(const struct vs_account *a, char out[2 * VS_LEDGER_ID_LEN + 1])
{
    if (a->name[0] != '\0')
        return a->name;
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < VS_LEDGER_ID_LEN; i++) {
        out[2 * i] = digits[a->id[i] >> 4];
        out[2 * i + 1] = digits[a->id[i] & 15];
    }
    out[2 * VS_LEDGER_ID_LEN] = '\0';
    return out;
}

static int collect_account(const struct vs_account *a, void *arg)
{
    char label[2 * VS_LEDGER_ID_LEN + 1];
    struct check_ctx *c = arg;
    struct vs_ledger_totals *tot = c->tot;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        if (cap > CHECK_MAX_ACCOUNTS)
            return -E2BIG;
        struct recount *r = realloc(c->r, cap * sizeof *r);
        if (r == NULL)
            return -ENOMEM;
        c->r = r;
        c->cap = cap;
    }
    struct recount *r = &c->r[c->n++];
    memset(r, 0, sizeof *r);
    memcpy(r->id, a->id, VS_LEDGER_ID_LEN);
    tot->accounts++;
    tot->debits_posted += a->debits_posted;
    tot->credits_posted += a->credits_posted;
    tot->debits_pending += a->debits_pending;
    tot->credits_pending += a->credits_pending;
    if ((a->flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
        a->debits_pending + a->debits_posted > a->credits_posted)
        snprintf(tot->problem, sizeof tot->problem, "account %s: debits exceed credits", account_label(a, label));
    if ((a->flags & VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
        a->credits_pending + a->credits_posted > a->debits_posted)
        snprintf(tot->problem, sizeof tot->problem, "account %s: credits exceed debits", account_label(a, label));
    return 0;
}

static struct recount *find_recount(struct check_ctx *c, const uint8_t *id)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = memcmp(c->r[mid].id, id, VS_LEDGER_ID_LEN);
        if (d == 0)
            return &c->r[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int recount_transfers(vs_ledger_txn *t, struct check_ctx *c)
{
    MDB_cursor *cur;
    int rc = fresh_flush_for(t, t->l->transfers);
    if (rc == 0)
        rc = vs_lmdb_err(mdb_cursor_open(t->txn, t->l->transfers, &cur));
    if (rc)
        return rc;
    MDB_val k, v;
    int r;
    for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && rc == 0;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct xfer_rec rec;
        if (v.mv_size != sizeof rec) {
            rc = -EBADMSG;
            break;
        }
        memcpy(&rec, v.mv_data, sizeof rec);
        if (rec.result != VS_XFER_OK)
            continue;
        const struct vs_transfer *x = &rec.x;
        c->tot->transfers++;
        struct recount *dr = find_recount(c, x->debit_account_id);
        struct recount *cr = find_recount(c, x->credit_account_id);
        if (dr == NULL || cr == NULL) {
            snprintf(c->tot->problem, sizeof c->tot->problem, "a transfer names a missing account");
            continue;
        }
        if (x->flags & VS_TRANSFER_VOID_PENDING)
            continue;
        if (x->flags & VS_TRANSFER_PENDING) {
            if (rec.state == VS_PENDING_OPEN) {
                c->tot->pending_open++;
                dr->dp += x->amount;
                cr->cp += x->amount;
            }
            continue;
        }
        dr->dpo += x->amount;
        cr->cpo += x->amount;
    }
    mdb_cursor_close(cur);
    if (rc == -ENOENT)
        rc = -EUCLEAN;
    return rc ? rc : (r == 0 || r == MDB_NOTFOUND) ? 0 : vs_lmdb_err(r);
}

static int compare_recount(const struct vs_account *a, void *arg)
{
    struct check_ctx *c = arg;
    char label[2 * VS_LEDGER_ID_LEN + 1];
    struct recount *r = find_recount(c, a->id);
    if (r == NULL || r->dp != a->debits_pending || r->dpo != a->debits_posted ||
        r->cp != a->credits_pending || r->cpo != a->credits_posted)
        snprintf(c->tot->problem, sizeof c->tot->problem,
                 "account %s: balances differ from its transfers", account_label(a, label));
    return 0;
}

int vs_ledger_check(vs_ledger_txn *t, struct vs_ledger_totals *tot)
{
    if (t == NULL || tot == NULL)
        return -EINVAL;
    memset(tot, 0, sizeof *tot);
    struct check_ctx c = {.tot = tot};
    int rc = vs_ledger_accounts(t, collect_account, &c);
    if (rc == 0)
        rc = recount_transfers(t, &c);
    if (rc == 0)
        rc = vs_ledger_accounts(t, compare_recount, &c);
    free(c.r);
    if (rc)
        return rc;
    if (tot->problem[0] == '\0' && tot->debits_posted != tot->credits_posted)
        snprintf(tot->problem, sizeof tot->problem, "posted debits %" PRIu64 " != credits %" PRIu64,
                 tot->debits_posted, tot->credits_posted);
    if (tot->problem[0] == '\0' && tot->debits_pending != tot->credits_pending)
        snprintf(tot->problem, sizeof tot->problem, "pending debits %" PRIu64 " != credits %" PRIu64,
                 tot->debits_pending, tot->credits_pending);
    return tot->problem[0] != '\0' ? -EUCLEAN : 0;
}

/* ---- names of results ----------------------------------------------------------------------- */

static const char *const account_results[VS_ACCT_RESULT_COUNT] = {
    [VS_ACCT_OK] = "ok",
    [VS_ACCT_ID_MUST_NOT_BE_ZERO] = "id_must_not_be_zero",
    [VS_ACCT_LEDGER_MUST_NOT_BE_ZERO] = "ledger_must_not_be_zero",
    [VS_ACCT_CODE_MUST_NOT_BE_ZERO] = "code_must_not_be_zero",
    [VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE] = "flags_are_mutually_exclusive",
    [VS_ACCT_FLAGS_UNKNOWN] = "flags_unknown",
    [VS_ACCT_NAME_INVALID] = "name_invalid",
    [VS_ACCT_NAME_TAKEN] = "name_taken",
    [VS_ACCT_EXISTS_WITH_DIFFERENT_BODY] = "exists_with_different_body",
};

static const char *const transfer_results[VS_XFER_RESULT_COUNT] = {
    [VS_XFER_OK] = "ok",
    [VS_XFER_LINKED_EVENT_FAILED] = "linked_event_failed",
    [VS_XFER_LINKED_EVENT_CHAIN_OPEN] = "linked_event_chain_open",
    [VS_XFER_ID_MUST_NOT_BE_ZERO] = "id_must_not_be_zero",
    [VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE] = "flags_are_mutually_exclusive",
    [VS_XFER_FLAGS_UNKNOWN] = "flags_unknown",
    [VS_XFER_PENDING_ID_MUST_BE_ZERO] = "pending_id_must_be_zero",
    [VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO] = "pending_id_must_not_be_zero",
    [VS_XFER_PENDING_ID_MUST_BE_DIFFERENT] = "pending_id_must_be_different",
    [VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER] = "timeout_reserved_for_pending_transfer",
    [VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO] = "debit_account_id_must_not_be_zero",
    [VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO] = "credit_account_id_must_not_be_zero",
    [VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT] = "accounts_must_be_different",
    [VS_XFER_LEDGER_MUST_NOT_BE_ZERO] = "ledger_must_not_be_zero",
    [VS_XFER_CODE_MUST_NOT_BE_ZERO] = "code_must_not_be_zero",
    [VS_XFER_AMOUNT_MUST_NOT_BE_ZERO] = "amount_must_not_be_zero",
    [VS_XFER_EXISTS_WITH_DIFFERENT_BODY] = "exists_with_different_body",
    [VS_XFER_DEBIT_ACCOUNT_NOT_FOUND] = "debit_account_not_found",
    [VS_XFER_CREDIT_ACCOUNT_NOT_FOUND] = "credit_account_not_found",
    [VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER] = "accounts_must_have_the_same_ledger",
    [VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS] =
        "transfer_must_have_the_same_ledger_as_accounts",
    [VS_XFER_PENDING_TRANSFER_NOT_FOUND] = "pending_transfer_not_found",
    [VS_XFER_PENDING_TRANSFER_NOT_PENDING] = "pending_transfer_not_pending",
    [VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS] = "pending_transfer_has_different_accounts",
    [VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER] = "pending_transfer_has_different_ledger",
    [VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE] = "pending_transfer_has_different_code",
    [VS_XFER_PENDING_TRANSFER_ALREADY_POSTED] = "pending_transfer_already_posted",
    [VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED] = "pending_transfer_already_voided",
    [VS_XFER_PENDING_TRANSFER_EXPIRED] = "pending_transfer_expired",
    [VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT] = "exceeds_pending_transfer_amount",
    [VS_XFER_OVERFLOWS_DEBITS] = "overflows_debits",
    [VS_XFER_OVERFLOWS_CREDITS] = "overflows_credits",
    [VS_XFER_OVERFLOWS_TIMEOUT] = "overflows_timeout",
    [VS_XFER_EXCEEDS_CREDITS] = "exceeds_credits",
    [VS_XFER_EXCEEDS_DEBITS] = "exceeds_debits",
};

const char *vs_account_result_name(int result)
{
    return result >= 0 && result < VS_ACCT_RESULT_COUNT ? account_results[result] : "store_error";
}

const char *vs_transfer_result_name(int result)
{
    return result >= 0 && result < VS_XFER_RESULT_COUNT ? transfer_results[result] : "store_error";
}
