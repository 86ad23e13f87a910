/*
 * sqlite_baseline.c - the ledger store's rules on SQLite, for
 * bench_ledger_store: what the escrow ledger would cost on the usual
 * embedded database, measured in the same run as the store.
 *
 * Why it is built this way: the comparison is only fair if SQLite does the
 * same work as the store, no less. So it keeps the same content (accounts
 * with their balances; every transfer with its outcome and body hash;
 * pending transfers with state and deadline) and the same indexes (history
 * by debit and by credit account in timestamp order, transfers by task,
 * pending by deadline), and makes the same checks per transfer in the same
 * order: static validation, the id looked up first (idempotency: a stored
 * id returns its first outcome when the body hash matches), both accounts
 * looked up (exist, same ledger), for POST/VOID the pending transfer (open,
 * not expired, amount), overflow and balance-flag checks on the new
 * balances, then the writes. A linked chain runs in a SAVEPOINT rolled back
 * when one of its transfers fails. Each write transaction first expires
 * what is due, as vs_ledger_write does. It is tuned as one would tune it
 * for this job: WAL with synchronous=FULL (durable commits), prepared
 * statements, WITHOUT ROWID tables keyed by the 16-byte ids (one B-tree per
 * table, as the store's LMDB tables), a page cache large enough to hold the
 * run (the store reads through the OS page cache).
 *
 * Not modelled (the bench does not use them): account names, owners and
 * keys, the command/outbox/stream tables.
 */
#include "sqlite_baseline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#define ID VS_LEDGER_ID_LEN

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA cache_size=-262144;" /* 256 MiB */
    "PRAGMA temp_store=MEMORY;"
    "CREATE TABLE accounts (id BLOB PRIMARY KEY, ledger INTEGER NOT NULL, code INTEGER NOT NULL,"
    " flags INTEGER NOT NULL, user_data_128 BLOB NOT NULL, debits_pending INTEGER NOT NULL,"
    " debits_posted INTEGER NOT NULL, credits_pending INTEGER NOT NULL,"
    " credits_posted INTEGER NOT NULL, ts INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE transfers (id BLOB PRIMARY KEY, debit BLOB NOT NULL, credit BLOB NOT NULL,"
    " amount INTEGER NOT NULL, pending_id BLOB NOT NULL, user_data_128 BLOB NOT NULL,"
    " ledger INTEGER NOT NULL, code INTEGER NOT NULL, flags INTEGER NOT NULL,"
    " ts INTEGER NOT NULL, result INTEGER NOT NULL, body_hash BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE pending (id BLOB PRIMARY KEY, state INTEGER NOT NULL, deadline INTEGER)"
    " WITHOUT ROWID;"
    "CREATE INDEX transfers_debit ON transfers(debit, ts);"
    "CREATE INDEX transfers_credit ON transfers(credit, ts);"
    "CREATE INDEX transfers_task ON transfers(user_data_128);"
    "CREATE INDEX pending_deadline ON pending(deadline);";

/* The prepared statements, in the order of SQL[] below. */
enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
    Q_ACCT_GET, Q_ACCT_INS, Q_ACCT_UPD,
    Q_XFER_GET, Q_XFER_INS,
    Q_PEND_GET, Q_PEND_INS, Q_PEND_UPD, Q_PEND_DUE,
    Q_COUNT
};

static const char *const SQL[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_SAVEPOINT] = "SAVEPOINT chain",
    [Q_RELEASE] = "RELEASE chain",
    [Q_ROLLBACK_TO] = "ROLLBACK TO chain",
    [Q_ACCT_GET] = "SELECT ledger, code, flags, user_data_128, debits_pending, debits_posted,"
                   " credits_pending, credits_posted FROM accounts WHERE id = ?1",
    [Q_ACCT_INS] = "INSERT INTO accounts VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, 0, 0, ?6)",
    [Q_ACCT_UPD] = "UPDATE accounts SET debits_pending = ?2, debits_posted = ?3,"
                   " credits_pending = ?4, credits_posted = ?5 WHERE id = ?1",
    [Q_XFER_GET] = "SELECT result, body_hash FROM transfers WHERE id = ?1",
    [Q_XFER_INS] = "INSERT INTO transfers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [Q_PEND_GET] = "SELECT t.debit, t.credit, t.amount, t.ledger, t.code, t.result, p.state,"
                   " p.deadline FROM transfers t LEFT JOIN pending p ON p.id = t.id WHERE t.id = ?1",
    [Q_PEND_INS] = "INSERT INTO pending VALUES (?1, ?2, ?3)",
    [Q_PEND_UPD] = "UPDATE pending SET state = ?2, deadline = NULL WHERE id = ?1",
    [Q_PEND_DUE] = "SELECT id FROM pending WHERE deadline <= ?1 ORDER BY deadline LIMIT 1",
};

struct sqlb {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    uint64_t now;     /* the transaction's time (ns), as vs_ledger_txn_now */
    uint64_t last_ts; /* the last timestamp given (unique, increasing) */
};

struct acct {
    uint8_t id[ID];
    uint32_t ledger;
    uint16_t code, flags;
    uint8_t user_data_128[ID];
    uint64_t dp, dpo, cp, cpo; /* debits/credits pending/posted */
};

/* A transfer as stored, with its pending state (when it is one). */
struct stored {
    uint8_t debit[ID], credit[ID];
    uint64_t amount;
    uint32_t ledger;
    uint16_t code;
    int result;
    int state; /* vs_pending_state */
    uint64_t deadline;
};

static const uint8_t ZERO[ID];

static bool is_zero(const uint8_t id[ID])
{
    return memcmp(id, ZERO, ID) == 0;
}

static int fail(sqlb *s, const char *what)
{
    fprintf(stderr, "sqlite baseline: %s: %s\n", what, sqlite3_errmsg(s->db));
    return -EIO;
}

/* Reset a statement for its next use; SQLITE_ROW/DONE of the last step are fine. */
static sqlite3_stmt *q(sqlb *s, int which)
{
    sqlite3_stmt *st = s->q[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static void bind_id(sqlite3_stmt *st, int i, const uint8_t id[ID])
{
    sqlite3_bind_blob(st, i, id, ID, SQLITE_STATIC);
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    return (uint64_t)sqlite3_column_int64(st, i);
}

static void col_id(sqlite3_stmt *st, int i, uint8_t id[ID])
{
    const void *b = sqlite3_column_blob(st, i);
    if (b != NULL && sqlite3_column_bytes(st, i) == ID)
        memcpy(id, b, ID);
    else
        memset(id, 0, ID);
}

static int exec_q(sqlb *s, int which)
{
    return sqlite3_step(q(s, which)) == SQLITE_DONE ? 0 : fail(s, SQL[which]);
}

/* 1 found, 0 not, -EIO. */
static int acct_load(sqlb *s, const uint8_t id[ID], struct acct *a)
{
    sqlite3_stmt *st = q(s, Q_ACCT_GET);
    bind_id(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return fail(s, "account lookup");
    memcpy(a->id, id, ID);
    a->ledger = (uint32_t)sqlite3_column_int64(st, 0);
    a->code = (uint16_t)sqlite3_column_int(st, 1);
    a->flags = (uint16_t)sqlite3_column_int(st, 2);
    col_id(st, 3, a->user_data_128);
    a->dp = col_u64(st, 4);
    a->dpo = col_u64(st, 5);
    a->cp = col_u64(st, 6);
    a->cpo = col_u64(st, 7);
    sqlite3_reset(st);
    return 1;
}

static int acct_save(sqlb *s, const struct acct *a)
{
    sqlite3_stmt *st = q(s, Q_ACCT_UPD);
    bind_id(st, 1, a->id);
    bind_u64(st, 2, a->dp);
    bind_u64(st, 3, a->dpo);
    bind_u64(st, 4, a->cp);
    bind_u64(st, 5, a->cpo);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(s, "account update");
}

/* The transfer stored under id (1), none (0), -EIO. */
static int stored_load(sqlb *s, const uint8_t id[ID], struct stored *x)
{
    sqlite3_stmt *st = q(s, Q_PEND_GET);
    bind_id(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return fail(s, "pending lookup");
    col_id(st, 0, x->debit);
    col_id(st, 1, x->credit);
    x->amount = col_u64(st, 2);
    x->ledger = (uint32_t)sqlite3_column_int64(st, 3);
    x->code = (uint16_t)sqlite3_column_int(st, 4);
    x->result = sqlite3_column_int(st, 5);
    x->state = sqlite3_column_type(st, 6) == SQLITE_NULL ? VS_PENDING_NONE : sqlite3_column_int(st, 6);
    x->deadline = col_u64(st, 7);
    sqlite3_reset(st);
    return 1;
}

static uint64_t next_ts(sqlb *s)
{
    return ++s->last_ts;
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* BLAKE2b-256 of everything the caller submitted (not the timestamp). */
static void body_hash(const struct vs_transfer *x, uint8_t h[32])
{
    uint8_t b[5 * ID + 3 * 8 + 4 + 2 + 2], *p = b;
    memcpy(p, x->id, ID), p += ID;
    memcpy(p, x->debit_account_id, ID), p += ID;
    memcpy(p, x->credit_account_id, ID), p += ID;
    memcpy(p, x->pending_id, ID), p += ID;
    memcpy(p, x->user_data_128, ID), p += ID;
    put_be(p, x->amount, 8), p += 8;
    put_be(p, x->user_data_64, 8), p += 8;
    put_be(p, x->timeout_ms, 8), p += 8;
    put_be(p, x->ledger, 4), p += 4;
    put_be(p, x->code, 2), p += 2;
    put_be(p, x->flags, 2);
    crypto_generichash(h, 32, b, sizeof b, NULL, 0);
}

/* Insert the transfer row: x as submitted, with the accounts, amount,
 * ledger and code it took effect with (those of a POST/VOID come from its
 * pending transfer). */
static int xfer_insert(sqlb *s, const struct vs_transfer *x, const uint8_t debit[ID],
                       const uint8_t credit[ID], uint64_t amount, uint32_t ledger, uint16_t code,
                       int result, const uint8_t hash[32])
{
    sqlite3_stmt *st = q(s, Q_XFER_INS);
    bind_id(st, 1, x->id);
    bind_id(st, 2, debit);
    bind_id(st, 3, credit);
    bind_u64(st, 4, amount);
    bind_id(st, 5, x->pending_id);
    bind_id(st, 6, x->user_data_128);
    sqlite3_bind_int64(st, 7, ledger);
    sqlite3_bind_int(st, 8, code);
    sqlite3_bind_int(st, 9, x->flags);
    bind_u64(st, 10, next_ts(s));
    sqlite3_bind_int(st, 11, result);
    sqlite3_bind_blob(st, 12, hash, 32, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(s, "transfer insert");
}

static int pend_update(sqlb *s, const uint8_t id[ID], int state)
{
    sqlite3_stmt *st = q(s, Q_PEND_UPD);
    bind_id(st, 1, id);
    sqlite3_bind_int(st, 2, state);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(s, "pending update");
}

/* The balance flags on new balances: 0 or the result code. */
static int flags_check(const struct acct *dr, const struct acct *cr)
{
    if ((dr->flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) && dr->dp + dr->dpo > dr->cpo)
        return VS_XFER_EXCEEDS_CREDITS;
    if ((cr->flags & VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) && cr->cp + cr->cpo > cr->dpo)
        return VS_XFER_EXCEEDS_DEBITS;
    return VS_XFER_OK;
}

/* Add amount to the pending or posted side of both accounts; overflow of
 * either side (alone or pending + posted) is refused. */
static int balances_add(struct acct *dr, struct acct *cr, uint64_t amount, bool pending)
{
    uint64_t *d = pending ? &dr->dp : &dr->dpo, *c = pending ? &cr->cp : &cr->cpo, sum;
    if (__builtin_add_overflow(*d, amount, d) || __builtin_add_overflow(dr->dp, dr->dpo, &sum))
        return VS_XFER_OVERFLOWS_DEBITS;
    if (__builtin_add_overflow(*c, amount, c) || __builtin_add_overflow(cr->cp, cr->cpo, &sum))
        return VS_XFER_OVERFLOWS_CREDITS;
    return VS_XFER_OK;
}

/* Both accounts of a transfer, loaded: 0, a result code, or -EIO. */
static int accounts_load(sqlb *s, const uint8_t debit[ID], const uint8_t credit[ID],
                         struct acct *dr, struct acct *cr)
{
    int rc = acct_load(s, debit, dr);
    if (rc <= 0)
        return rc < 0 ? rc : VS_XFER_DEBIT_ACCOUNT_NOT_FOUND;
    rc = acct_load(s, credit, cr);
    if (rc <= 0)
        return rc < 0 ? rc : VS_XFER_CREDIT_ACCOUNT_NOT_FOUND;
    return dr->ledger == cr->ledger ? VS_XFER_OK : VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER;
}

/* Resolve the pending transfer p (id pid): post amount (VS_PENDING_POSTED)
 * or release all (VOIDED, EXPIRED). The accounts dr, cr are loaded and get
 * their new balances; nothing is written when a result code is returned. */
static int settle(sqlb *s, const uint8_t pid[ID], const struct stored *p, uint64_t amount,
                  int state, struct acct *dr, struct acct *cr)
{
    dr->dp -= p->amount;
    cr->cp -= p->amount;
    int rc = balances_add(dr, cr, amount, false);
    if (rc == VS_XFER_OK && state == VS_PENDING_POSTED)
        rc = flags_check(dr, cr);
    if (rc != VS_XFER_OK)
        return rc;
    if ((rc = acct_save(s, dr)) < 0 || (rc = acct_save(s, cr)) < 0)
        return rc;
    return pend_update(s, pid, state);
}

static int xfer_validate(const struct vs_transfer *x)
{
    uint16_t kinds = VS_TRANSFER_PENDING | VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING;
    if (is_zero(x->id))
        return VS_XFER_ID_MUST_NOT_BE_ZERO;
    if (x->flags & ~(uint16_t)(kinds | VS_TRANSFER_LINKED))
        return VS_XFER_FLAGS_UNKNOWN;
    if (__builtin_popcount(x->flags & kinds) > 1)
        return VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    if (x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)) {
        if (is_zero(x->pending_id))
            return VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO;
        if (memcmp(x->pending_id, x->id, ID) == 0)
            return VS_XFER_PENDING_ID_MUST_BE_DIFFERENT;
        return x->timeout_ms ? VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER : VS_XFER_OK;
    }
    if (!is_zero(x->pending_id))
        return VS_XFER_PENDING_ID_MUST_BE_ZERO;
    if (!(x->flags & VS_TRANSFER_PENDING) && x->timeout_ms)
        return VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
    if (is_zero(x->debit_account_id))
        return VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (is_zero(x->credit_account_id))
        return VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
    if (memcmp(x->debit_account_id, x->credit_account_id, ID) == 0)
        return VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT;
    if (x->ledger == 0)
        return VS_XFER_LEDGER_MUST_NOT_BE_ZERO;
    if (x->code == 0)
        return VS_XFER_CODE_MUST_NOT_BE_ZERO;
    return x->amount ? VS_XFER_OK : VS_XFER_AMOUNT_MUST_NOT_BE_ZERO;
}

/* POST_PENDING / VOID_PENDING of x->pending_id. */
static int xfer_resolve(sqlb *s, const struct vs_transfer *x, const uint8_t hash[32])
{
    struct stored p;
    int rc = stored_load(s, x->pending_id, &p);
    if (rc < 0)
        return rc;
    if (rc == 0 || p.result != VS_XFER_OK)
        return VS_XFER_PENDING_TRANSFER_NOT_FOUND;
    switch (p.state) {
    case VS_PENDING_NONE: return VS_XFER_PENDING_TRANSFER_NOT_PENDING;
    case VS_PENDING_POSTED: return VS_XFER_PENDING_TRANSFER_ALREADY_POSTED;
    case VS_PENDING_VOIDED: return VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED;
    case VS_PENDING_EXPIRED: return VS_XFER_PENDING_TRANSFER_EXPIRED;
    default: break;
    }
    if (p.deadline != 0 && p.deadline <= s->now)
        return VS_XFER_PENDING_TRANSFER_EXPIRED;
    if ((!is_zero(x->debit_account_id) && memcmp(x->debit_account_id, p.debit, ID) != 0) ||
        (!is_zero(x->credit_account_id) && memcmp(x->credit_account_id, p.credit, ID) != 0))
        return VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS;
    if (x->ledger != 0 && x->ledger != p.ledger)
        return VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER;
    if (x->amount > p.amount)
        return VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    bool post = x->flags & VS_TRANSFER_POST_PENDING;
    uint64_t amount = post ? (x->amount ? x->amount : p.amount) : 0;
    struct acct dr, cr;
    if ((rc = accounts_load(s, p.debit, p.credit, &dr, &cr)) != VS_XFER_OK)
        return rc;
    rc = settle(s, x->pending_id, &p, amount, post ? VS_PENDING_POSTED : VS_PENDING_VOIDED, &dr, &cr);
    if (rc != VS_XFER_OK)
        return rc;
    return xfer_insert(s, x, p.debit, p.credit, amount, p.ledger, p.code, VS_XFER_OK, hash);
}

/* A plain or PENDING transfer. */
static int xfer_move(sqlb *s, const struct vs_transfer *x, const uint8_t hash[32])
{
    struct acct dr, cr;
    int rc = accounts_load(s, x->debit_account_id, x->credit_account_id, &dr, &cr);
    if (rc != VS_XFER_OK)
        return rc;
    if (x->ledger != dr.ledger)
        return VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
    bool pending = x->flags & VS_TRANSFER_PENDING;
    uint64_t deadline = 0;
    if (pending && x->timeout_ms &&
        (__builtin_mul_overflow(x->timeout_ms, (uint64_t)1000000, &deadline) ||
         __builtin_add_overflow(deadline, s->now, &deadline) || deadline > (uint64_t)INT64_MAX))
        return VS_XFER_OVERFLOWS_TIMEOUT;
    if ((rc = balances_add(&dr, &cr, x->amount, pending)) != VS_XFER_OK ||
        (rc = flags_check(&dr, &cr)) != VS_XFER_OK)
        return rc;
    if ((rc = acct_save(s, &dr)) < 0 || (rc = acct_save(s, &cr)) < 0)
        return rc;
    rc = xfer_insert(s, x, x->debit_account_id, x->credit_account_id, x->amount, x->ledger, x->code,
                     VS_XFER_OK, hash);
    if (rc < 0 || !pending)
        return rc;
    sqlite3_stmt *st = q(s, Q_PEND_INS);
    bind_id(st, 1, x->id);
    sqlite3_bind_int(st, 2, VS_PENDING_OPEN);
    if (deadline)
        bind_u64(st, 3, deadline);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(s, "pending insert");
}

/* The outcome stored under x's id: 1 (*result, *replayed set when the body
 * is the same, else *result = EXISTS_WITH_DIFFERENT_BODY), 0 none, -EIO. */
static int xfer_lookup(sqlb *s, const struct vs_transfer *x, const uint8_t hash[32], int *result,
                       bool *replayed)
{
    sqlite3_stmt *st = q(s, Q_XFER_GET);
    bind_id(st, 1, x->id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return fail(s, "transfer lookup");
    const void *h = sqlite3_column_blob(st, 1);
    *replayed = h != NULL && sqlite3_column_bytes(st, 1) == 32 && memcmp(h, hash, 32) == 0;
    *result = *replayed ? sqlite3_column_int(st, 0) : VS_XFER_EXISTS_WITH_DIFFERENT_BODY;
    sqlite3_reset(st);
    return 1;
}

/* Bind x's id to a failure, unless it is zero or already bound. */
static int record_failure(sqlb *s, const struct vs_transfer *x, const uint8_t hash[32], int result)
{
    return is_zero(x->id) || result == VS_XFER_EXISTS_WITH_DIFFERENT_BODY
               ? 0
               : xfer_insert(s, x, x->debit_account_id, x->credit_account_id, x->amount, x->ledger,
                             x->code, result, hash);
}

/* One transfer: its result code (everything written when VS_XFER_OK,
 * nothing otherwise; a failure outside a chain is recorded under its id,
 * as the store binds an id to its first outcome) or -EIO. */
static int xfer_one(sqlb *s, const struct vs_transfer *x, bool in_chain, bool *replayed)
{
    *replayed = false;
    int rc = xfer_validate(x);
    if (rc != VS_XFER_OK)
        return rc;
    uint8_t hash[32];
    body_hash(x, hash);
    int first;
    if ((rc = xfer_lookup(s, x, hash, &first, replayed)) != 0)
        return rc < 0 ? rc : first;
    bool resolve = x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING);
    rc = resolve ? xfer_resolve(s, x, hash) : xfer_move(s, x, hash);
    if (rc <= 0 || in_chain)
        return rc;
    int w = record_failure(s, x, hash, rc);
    return w < 0 ? w : rc;
}

/* After a failed chain was rolled back: each member keeps an outcome of an
 * earlier call, or is bound to its failure (the failing one's own code, the
 * others LINKED_EVENT_FAILED, or CHAIN_OPEN for all of an open chain). */
static int chain_failed(sqlb *s, const struct vs_transfer *xs, size_t n, size_t failed,
                        int failure, int *res, bool *rep)
{
    for (size_t j = 0; j < n; j++) {
        uint8_t hash[32];
        body_hash(&xs[j], hash);
        int rc = is_zero(xs[j].id) ? 0 : xfer_lookup(s, &xs[j], hash, &res[j], &rep[j]);
        if (rc < 0)
            return rc;
        if (rc > 0 && rep[j])
            continue;
        rep[j] = false;
        res[j] = failure == VS_XFER_LINKED_EVENT_CHAIN_OPEN || j == failed
                     ? failure
                     : VS_XFER_LINKED_EVENT_FAILED;
        if (rc == 0 && (rc = record_failure(s, &xs[j], hash, res[j])) < 0)
            return rc;
    }
    return 0;
}

static int xfers_create(sqlb *s, const struct vs_transfer *xs, size_t n, int *res, bool *rep)
{
    for (size_t i = 0; i < n;) {
        size_t end = i; /* the chain is i..end */
        while (end < n && (xs[end].flags & VS_TRANSFER_LINKED))
            end++;
        bool open_end = end == n;
        size_t len = (open_end ? n : end + 1) - i;
        int rc;
        if (len == 1 && !open_end) {
            if ((rc = xfer_one(s, &xs[i], false, &rep[i])) < 0)
                return rc;
            res[i++] = rc;
            continue;
        }
        if ((rc = exec_q(s, Q_SAVEPOINT)) < 0)
            return rc;
        size_t failed = len;
        int failure = VS_XFER_OK;
        for (size_t j = 0; j < len && failed == len; j++) {
            if ((rc = xfer_one(s, &xs[i + j], true, &rep[i + j])) < 0)
                return rc;
            res[i + j] = rc;
            if (rc != VS_XFER_OK) {
                failed = j;
                failure = rc;
            }
        }
        if (failed == len && open_end) {
            failed = len - 1;
            failure = VS_XFER_LINKED_EVENT_CHAIN_OPEN;
        }
        if (failed < len && ((rc = exec_q(s, Q_ROLLBACK_TO)) < 0 ||
                             (rc = chain_failed(s, xs + i, len, failed, failure, res + i, rep + i)) < 0))
            return rc;
        if ((rc = exec_q(s, Q_RELEASE)) < 0)
            return rc;
        i += len;
    }
    return 0;
}

static int acct_create(sqlb *s, const struct vs_account *a, bool *replayed)
{
    *replayed = false;
    uint16_t both = VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS | VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    if (is_zero(a->id))
        return VS_ACCT_ID_MUST_NOT_BE_ZERO;
    if (a->ledger == 0)
        return VS_ACCT_LEDGER_MUST_NOT_BE_ZERO;
    if (a->code == 0)
        return VS_ACCT_CODE_MUST_NOT_BE_ZERO;
    if (a->flags & ~both)
        return VS_ACCT_FLAGS_UNKNOWN;
    if ((a->flags & both) == both)
        return VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    struct acct old;
    int rc = acct_load(s, a->id, &old);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        if (old.ledger != a->ledger || old.code != a->code || old.flags != a->flags ||
            memcmp(old.user_data_128, a->user_data_128, ID) != 0)
            return VS_ACCT_EXISTS_WITH_DIFFERENT_BODY;
        *replayed = true;
        return VS_ACCT_OK;
    }
    sqlite3_stmt *st = q(s, Q_ACCT_INS);
    bind_id(st, 1, a->id);
    sqlite3_bind_int64(st, 2, a->ledger);
    sqlite3_bind_int(st, 3, a->code);
    sqlite3_bind_int(st, 4, a->flags);
    bind_id(st, 5, a->user_data_128);
    bind_u64(st, 6, next_ts(s));
    return sqlite3_step(st) == SQLITE_DONE ? VS_ACCT_OK : fail(s, "account insert");
}

/* Void every open pending transfer whose deadline has passed. */
static int expire_due(sqlb *s)
{
    for (;;) {
        sqlite3_stmt *st = q(s, Q_PEND_DUE);
        bind_u64(st, 1, s->now);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            return 0;
        if (rc != SQLITE_ROW)
            return fail(s, "expiry scan");
        uint8_t id[ID];
        col_id(st, 0, id);
        sqlite3_reset(st);
        struct stored p;
        struct acct dr, cr;
        if ((rc = stored_load(s, id, &p)) <= 0)
            return rc < 0 ? rc : fail(s, "expiry: pending without its transfer");
        if ((rc = accounts_load(s, p.debit, p.credit, &dr, &cr)) != VS_XFER_OK)
            return rc < 0 ? rc : fail(s, "expiry: accounts of a pending transfer");
        if ((rc = settle(s, id, &p, 0, VS_PENDING_EXPIRED, &dr, &cr)) != 0)
            return rc < 0 ? rc : fail(s, "expiry: balances");
    }
}

int sqlb_write(sqlb *s, const struct vs_account *as, size_t na, int *ares, bool *arep,
               const struct vs_transfer *xs, size_t nx, int *xres, bool *xrep)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    s->now = now > s->last_ts ? now : s->last_ts + 1;
    s->last_ts = s->now;
    int rc = exec_q(s, Q_BEGIN);
    if (rc < 0)
        return rc;
    rc = expire_due(s);
    for (size_t i = 0; rc >= 0 && i < na; i++) {
        rc = acct_create(s, &as[i], &arep[i]);
        ares[i] = rc;
    }
    if (rc >= 0)
        rc = xfers_create(s, xs, nx, xres, xrep);
    if (rc >= 0)
        rc = exec_q(s, Q_COMMIT);
    if (rc < 0)
        sqlite3_step(q(s, Q_ROLLBACK));
    return rc < 0 ? rc : 0;
}

int sqlb_counts(sqlb *s, uint64_t *accounts, uint64_t *transfers, uint64_t *pending_open)
{
    static const char *const count[3] = {
        "SELECT count(*) FROM accounts",
        "SELECT count(*) FROM transfers WHERE result = 0",
        "SELECT count(*) FROM pending WHERE state = 1",
    };
    uint64_t *out[3] = {accounts, transfers, pending_open};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, count[i], -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_finalize(st);
            return fail(s, count[i]);
        }
        *out[i] = col_u64(st, 0);
        sqlite3_finalize(st);
    }
    return 0;
}

int sqlb_open(const char *file, sqlb **out)
{
    sqlb *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    char *err = NULL;
    if (sqlite3_open(file, &s->db) != SQLITE_OK) {
        fprintf(stderr, "sqlite baseline: open %s: %s\n", file, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqlite3_exec(s->db, SCHEMA, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite baseline: schema: %s\n", err);
        sqlite3_free(err);
        goto fail;
    }
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) !=
            SQLITE_OK) {
            fprintf(stderr, "sqlite baseline: prepare %s: %s\n", SQL[i], sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    sqlb_close(s);
    return -1;
}

void sqlb_close(sqlb *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    free(s);
}
