/*
 * ledger_store.h - the escrow ledger's store: a double-entry ledger on LMDB
 * after TigerBeetle's model (accounts, immutable transfers with client-chosen
 * 128-bit ids, two-phase pending transfers, linked chains, balance flags).
 * vs-ledgerd is its only writer; vsctl and the tests open it too. No other
 * code touches its LMDB environment.
 *
 * Rules (each broken rule has its own result code, below):
 *  - A transfer id (other than zero) is bound forever to the first body
 *    submitted under it and to that first outcome, success or failure: a
 *    retry with the same body returns the first outcome (with `replayed`
 *    set); a different body under the same id returns
 *    VS_XFER_EXISTS_WITH_DIFFERENT_BODY. An account id is bound once the
 *    account exists (same body: VS_ACCT_OK replayed; another body:
 *    VS_ACCT_EXISTS_WITH_DIFFERENT_BODY); a refused creation binds nothing,
 *    since no account exists to hold it.
 *  - A transfer moves `amount` from the debit account to the credit account
 *    (both on the same ledger). PENDING reserves it (debits_pending /
 *    credits_pending) until POST_PENDING (in part or in full: the rest is
 *    released), VOID_PENDING, or its timeout, whichever comes first; a
 *    pending transfer resolves once. Expired transfers are voided by the
 *    first write transaction at or after their deadline (vs_ledger_write),
 *    so expiry needs no timer to be correct, only to be prompt.
 *  - LINKED chains a transfer to the next one in the same call: all of the
 *    chain commits or none of it does. The failing transfer reports its own
 *    error and the others VS_XFER_LINKED_EVENT_FAILED; a chain still open at
 *    the end of the call fails with VS_XFER_LINKED_EVENT_CHAIN_OPEN.
 *  - DEBITS_MUST_NOT_EXCEED_CREDITS: debits_pending + debits_posted <=
 *    credits_posted after every transfer (a wallet never goes below zero,
 *    counting its holds); CREDITS_MUST_NOT_EXCEED_DEBITS is the mirror.
 *
 * Invariant, checked by vs_ledger_check and after every test: the sums of
 * debits and credits over all accounts are equal, pending and posted; each
 * account's balances equal what its transfers add up to; no balance flag is
 * violated.
 *
 * Exactly once: a write transaction may store the highest applied stream
 * sequence of a JetStream stream and the reply of each command (by command
 * id) in the same commit as the effects, and an outbox of messages to
 * publish after the commit.
 *
 * LMDB layout (store.c; integers big-endian): accounts (id -> record),
 * names (name -> id), transfers (id -> record | outcome | pending state and
 * deadline), expiry (deadline | id -> ""), by_account (account | first
 * timestamp -> one commit's history entries of the account, timestamp |
 * id each), by_task (user_data_128 -> sorted duplicates id, pending
 * transfers only),
 * commands (id -> body hash | reply), meta ("applied:<stream>", "clock",
 * "map_size"), outbox (seq -> subject | msg id | payload), plus the tables
 * the escrow layer keeps through vs_ledger_kv_* (escrow.h).
 */
#ifndef VS_LEDGER_STORE_H
#define VS_LEDGER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

#define VS_LEDGER_ID_LEN 16
#define VS_LEDGER_NAME_MAX 64 /* account names and owners, NUL included */
#define VS_LEDGER_KEY_LEN 32  /* an agent account's Ed25519 public key */

typedef struct vs_ledger vs_ledger;
typedef struct vs_ledger_txn vs_ledger_txn;

struct vs_ledger_opts {
    const char *path;       /* directory of the LMDB environment */
    uint64_t map_size;      /* initial map size; default 64 MiB, doubled when full */
    bool read_only;         /* a live store (readers registered in lock.mdb) or a
                               copy without lock.mdb (MDB_NOLOCK) */
    bool no_sync;           /* benchmarks of the CPU cost only: no fsync */
    /* A commit syncs its data but leaves the sync of its root (LMDB's
     * meta page) to vs_ledger_sync, which another thread can run while
     * the next write transaction is applied. Until then a crash of the
     * machine (not of the process) may undo that commit, whole: the
     * caller must not act on it (ack, reply) before vs_ledger_sync. */
    bool sync_root_later;
};

VS_API int vs_ledger_open(const struct vs_ledger_opts *o, vs_ledger **out);
VS_API void vs_ledger_free(vs_ledger *l);

/* ---- accounts ------------------------------------------------------------ */

enum vs_account_flags {
    VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1u << 0,
    VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS = 1u << 1,
};

struct vs_account {
    uint8_t id[VS_LEDGER_ID_LEN];
    uint32_t ledger;                  /* unit of value; accounts of one transfer share it */
    uint16_t code;                    /* kind, chosen by the caller (escrow.h) */
    uint16_t flags;                   /* vs_account_flags */
    uint8_t user_data_128[VS_LEDGER_ID_LEN];
    uint64_t user_data_64;
    char name[VS_LEDGER_NAME_MAX];    /* unique; "" allowed (then not in the name index) */
    char owner[VS_LEDGER_NAME_MAX];   /* who runs the agent behind it ("" for none) */
    uint8_t public_key[VS_LEDGER_KEY_LEN];
    bool has_public_key;
    /* balances: set by the store, ignored on create */
    uint64_t debits_pending, debits_posted, credits_pending, credits_posted;
    uint64_t timestamp;               /* set by the store */
};

enum vs_account_result {
    VS_ACCT_OK = 0,
    VS_ACCT_ID_MUST_NOT_BE_ZERO,
    VS_ACCT_LEDGER_MUST_NOT_BE_ZERO,
    VS_ACCT_CODE_MUST_NOT_BE_ZERO,
    VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE,
    VS_ACCT_FLAGS_UNKNOWN,
    VS_ACCT_NAME_INVALID,              /* not NUL-terminated, or bad characters */
    VS_ACCT_NAME_TAKEN,                /* another account has this name */
    VS_ACCT_EXISTS_WITH_DIFFERENT_BODY,
    VS_ACCT_RESULT_COUNT
};

/* Create one account. Returns a result code (>= 0; VS_ACCT_OK also when the
 * same account exists, with *replayed set) or -errno for a store failure. */
VS_API int vs_ledger_create_account(vs_ledger_txn *t, const struct vs_account *a, bool *replayed);
VS_API int vs_ledger_account(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                             struct vs_account *out);                 /* -ENOENT */
VS_API int vs_ledger_account_by_name(vs_ledger_txn *t, const char *name, struct vs_account *out);
/* Every account in id order; cb returns nonzero to stop (returned). */
VS_API int vs_ledger_accounts(vs_ledger_txn *t, int (*cb)(const struct vs_account *a, void *arg),
                              void *arg);
VS_API const char *vs_account_result_name(int result);

/* ---- transfers ----------------------------------------------------------- */

enum vs_transfer_flags {
    VS_TRANSFER_LINKED = 1u << 0,
    VS_TRANSFER_PENDING = 1u << 1,
    VS_TRANSFER_POST_PENDING = 1u << 2,
    VS_TRANSFER_VOID_PENDING = 1u << 3,
};

enum vs_pending_state {
    VS_PENDING_NONE = 0,  /* not a pending transfer */
    VS_PENDING_OPEN,
    VS_PENDING_POSTED,
    VS_PENDING_VOIDED,
    VS_PENDING_EXPIRED,
};

struct vs_transfer {
    uint8_t id[VS_LEDGER_ID_LEN];
    uint8_t debit_account_id[VS_LEDGER_ID_LEN];
    uint8_t credit_account_id[VS_LEDGER_ID_LEN];
    uint8_t pending_id[VS_LEDGER_ID_LEN];   /* POST/VOID: the pending transfer */
    uint8_t user_data_128[VS_LEDGER_ID_LEN]; /* the task, for escrow transfers */
    uint64_t amount;        /* POST: 0 posts the full pending amount */
    uint64_t user_data_64;
    uint64_t timeout_ms;    /* PENDING only: 0 = no timeout */
    uint32_t ledger;
    uint16_t code;
    uint16_t flags;         /* vs_transfer_flags */
    uint64_t timestamp;     /* set by the store (unique, increasing) */
};

enum vs_transfer_result {
    VS_XFER_OK = 0,
    VS_XFER_LINKED_EVENT_FAILED,
    VS_XFER_LINKED_EVENT_CHAIN_OPEN,
    VS_XFER_ID_MUST_NOT_BE_ZERO,
    VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE,
    VS_XFER_FLAGS_UNKNOWN,
    VS_XFER_PENDING_ID_MUST_BE_ZERO,
    VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO,
    VS_XFER_PENDING_ID_MUST_BE_DIFFERENT,
    VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
    VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
    VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
    VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT,
    VS_XFER_LEDGER_MUST_NOT_BE_ZERO,
    VS_XFER_CODE_MUST_NOT_BE_ZERO,
    VS_XFER_AMOUNT_MUST_NOT_BE_ZERO,
    VS_XFER_EXISTS_WITH_DIFFERENT_BODY,
    VS_XFER_DEBIT_ACCOUNT_NOT_FOUND,
    VS_XFER_CREDIT_ACCOUNT_NOT_FOUND,
    VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
    VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
    VS_XFER_PENDING_TRANSFER_NOT_FOUND,
    VS_XFER_PENDING_TRANSFER_NOT_PENDING,
    VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS,
    VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER,
    VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE,
    VS_XFER_PENDING_TRANSFER_ALREADY_POSTED,
    VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED,
    VS_XFER_PENDING_TRANSFER_EXPIRED,
    VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT,
    VS_XFER_OVERFLOWS_DEBITS,
    VS_XFER_OVERFLOWS_CREDITS,
    VS_XFER_OVERFLOWS_TIMEOUT,
    VS_XFER_EXCEEDS_CREDITS,
    VS_XFER_EXCEEDS_DEBITS,
    VS_XFER_RESULT_COUNT
};

/* Create n transfers in order (linked chains all or nothing). results[i]
 * gets each one's outcome; replayed[i] (may be NULL) whether it is the
 * stored first outcome of an earlier call. For POST/VOID the debit and
 * credit accounts, ledger and code may be zero (taken from the pending
 * transfer); when set they must match it. Returns 0, or -errno for a store
 * failure (then nothing of the call is applied). */
VS_API int vs_ledger_create_transfers(vs_ledger_txn *t, const struct vs_transfer *xs, size_t n,
                                      int *results, bool *replayed);
/* A transfer as stored (amount of a POST: what it posted), its pending
 * state (VS_PENDING_NONE for a plain one) and deadline (0: none). -ENOENT
 * when the id has no successful transfer. */
VS_API int vs_ledger_transfer(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                              struct vs_transfer *out, enum vs_pending_state *state,
                              uint64_t *deadline_ns);
VS_API const char *vs_transfer_result_name(int result);

typedef int (*vs_transfer_fn)(const struct vs_transfer *x, enum vs_pending_state state, void *arg);
/* Transfers touching an account in timestamp order, from after_ts (0: the
 * first), at most limit (0: all). cb returns nonzero to stop. */
VS_API int vs_ledger_history(vs_ledger_txn *t, const uint8_t account_id[VS_LEDGER_ID_LEN],
                             uint64_t after_ts, size_t limit, vs_transfer_fn cb, void *arg);
/* Open pending transfers whose debit or credit account is account_id, or
 * whose user_data_128 is task_id (exactly one of them non-NULL). */
VS_API int vs_ledger_pending(vs_ledger_txn *t, const uint8_t *account_id, const uint8_t *task_id,
                             vs_transfer_fn cb, void *arg);

/* ---- transactions -------------------------------------------------------- */

/* Called for each pending transfer the store expires in a write
 * transaction (before the batch runs), inside that transaction. */
typedef int (*vs_ledger_expired_fn)(vs_ledger_txn *t, const struct vs_transfer *x, void *arg);
VS_API void vs_ledger_on_expired(vs_ledger *l, vs_ledger_expired_fn cb, void *arg);

/* Run apply in one write transaction at time now_ns (0: the clock): expire
 * what is due, call apply, commit (durably unless no_sync). When the map is
 * full the transaction is aborted, the map doubled and apply called again
 * from scratch, so apply must be restartable (reset its outputs first).
 * apply returning < 0 aborts and is returned. */
typedef int (*vs_ledger_apply_fn)(vs_ledger_txn *t, void *arg);
VS_API int vs_ledger_write(vs_ledger *l, uint64_t now_ns, vs_ledger_apply_fn apply, void *arg);
/* The same read-only (queries). */
VS_API int vs_ledger_read(vs_ledger *l, vs_ledger_apply_fn apply, void *arg);
/* Make every commit so far durable (with sync_root_later; otherwise each
 * commit already is). Safe while another thread writes. */
VS_API int vs_ledger_sync(vs_ledger *l);
/* The transaction's time (a write's now_ns, raised to be increasing). */
VS_API uint64_t vs_ledger_txn_now(const vs_ledger_txn *t);
/* The earliest deadline of an open pending transfer (0: none). */
VS_API int vs_ledger_next_deadline(vs_ledger_txn *t, uint64_t *deadline_ns);

/* Stream bookkeeping: the highest applied sequence of a stream. */
VS_API int vs_ledger_applied_get(vs_ledger_txn *t, const char *stream, uint64_t *seq);
VS_API int vs_ledger_applied_set(vs_ledger_txn *t, const char *stream, uint64_t seq);

/* Command outcomes (exactly-once replies). get: -ENOENT when unknown,
 * -EEXIST when known under a different body hash; otherwise *reply points
 * into the transaction (valid until it ends). */
VS_API int vs_ledger_command_get(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                                 const uint8_t body_hash[32], const uint8_t **reply, size_t *len);
VS_API int vs_ledger_command_put(vs_ledger_txn *t, const uint8_t id[VS_LEDGER_ID_LEN],
                                 const uint8_t body_hash[32], const void *reply, size_t len);

/* The outbox: messages to publish after the commit (subject, Nats-Msg-Id,
 * payload), deleted once the broker has stored them. */
VS_API int vs_ledger_outbox_put(vs_ledger_txn *t, const char *subject, const char *msg_id,
                                const void *data, size_t len);
typedef int (*vs_outbox_fn)(uint64_t seq, const char *subject, const char *msg_id,
                            const uint8_t *data, size_t len, void *arg);
/* Entries after after_seq (0: all) in order; cb returns nonzero to stop. */
VS_API int vs_ledger_outbox_each(vs_ledger_txn *t, uint64_t after_seq, vs_outbox_fn cb, void *arg);
VS_API int vs_ledger_outbox_del(vs_ledger_txn *t, uint64_t seq);
/* The sequence of the newest entry ever put (0: none). */
VS_API int vs_ledger_outbox_last(vs_ledger_txn *t, uint64_t *seq);

/* A small key/value space for the layers above (escrow tasks, reputation,
 * disputes): table is one of the names given here. get: -ENOENT; *val points
 * into the transaction. each: keys with the prefix, in order. */
enum vs_ledger_table { VS_LTABLE_TASKS, VS_LTABLE_REPUTATION, VS_LTABLE_DISPUTES, VS_LTABLE_TIMERS,
                       VS_LTABLE_COUNT };
VS_API int vs_ledger_kv_get(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen,
                            const uint8_t **val, size_t *vlen);
VS_API int vs_ledger_kv_put(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen,
                            const void *val, size_t vlen);
VS_API int vs_ledger_kv_del(vs_ledger_txn *t, enum vs_ledger_table tb, const void *key, size_t klen);
typedef int (*vs_kv_each_fn)(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                             void *arg);
VS_API int vs_ledger_kv_each(vs_ledger_txn *t, enum vs_ledger_table tb, const void *prefix,
                             size_t plen, vs_kv_each_fn cb, void *arg);

/* ---- checks and copies --------------------------------------------------- */

struct vs_ledger_totals {
    uint64_t accounts, transfers, pending_open;
    uint64_t debits_posted, credits_posted, debits_pending, credits_pending;
    char problem[256];      /* the first violation found, "" when none */
};
/* Check the invariant (see above). 0 when it holds, -EUCLEAN with
 * totals->problem set when it does not, -errno for a store failure. */
VS_API int vs_ledger_check(vs_ledger_txn *t, struct vs_ledger_totals *totals);
/* A consistent, compacted copy into the empty directory dir while writes go
 * on (mdb_env_copy2 with MDB_CP_COMPACT). */
VS_API int vs_ledger_backup(vs_ledger *l, const char *dir);
/* Readers left by dead processes, cleared (mdb_reader_check). */
VS_API int vs_ledger_reader_check(vs_ledger *l, int *dead);
VS_API uint64_t vs_ledger_map_size(vs_ledger *l);

#endif
