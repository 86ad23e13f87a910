/*
 * audit_store.h - the audit log's store: an append-only LMDB log where every
 * entry is both a link of a SHA-256 hash chain and a leaf of an RFC 6962
 * Merkle tree, with indexes by agent, task, category, severity and time.
 * vs-auditd is its only writer; vsctl opens copies read-only to verify.
 *
 * Entry encoding (canonical, documented in the README, hashed as is):
 *   entry = "vs.audit.v1" 0x00 | seq (8, BE) | time_ns (8, BE) |
 *           stream_seq (8, BE) | prev_hash (32) | len (4, BE) | event
 * where event is the serialized vs.v1.AuditEvent exactly as received from
 * the bus, prev_hash the chain hash of entry seq-1 (32 zero bytes for seq
 * 0), and
 *   chain_hash(seq) = SHA-256(entry)
 *   leaf_hash(seq)  = SHA-256(0x00 | entry)          (RFC 6962 leaf)
 *   node(l, r)      = SHA-256(0x01 | l | r)          (RFC 6962 node)
 * Sequence numbers start at 0 and are the Merkle leaf indexes.
 *
 * Exactly once: an append carries the JetStream stream sequence of each
 * event; the store keeps the highest applied one in the same transaction
 * and skips anything at or below it, so a redelivery stores nothing twice
 * and a crash loses nothing that was acked.
 *
 * Threads: one thread appends (append, put_checkpoint) while others may
 * read (root, proofs, verify, query, backup, size): LMDB readers never
 * block the writer, and a map growth waits for in-process readers. get's
 * event buffer belongs to the handle: use get from one thread at a time.
 * A query callback must not append or put a checkpoint on the same store.
 *
 * LMDB layout (store.c; all integers big-endian): named DBs entries
 * (seq -> entry), hashes (seq -> leaf_hash | chain_hash), nodes (last leaf
 * seq (8) | level (1) -> hash of the complete subtree of 2^level leaves
 * ending at that leaf, level >= 1), meta ("version", "size", "applied",
 * "map_size" -> u64), checkpoints (size -> note), idx_attr (seq >> 8 (8) |
 * kind 'a'gent 'c'ategory 's'everity 't'ask (1) | len (1) | value | seq
 * (8) -> empty) and idx_time (time_ns | seq -> empty).
 */
#ifndef VS_AUDIT_STORE_H
#define VS_AUDIT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

#define VS_HASH_LEN 32
#define VS_AUDIT_MAX_PROOF 64
#define VS_AUDIT_MAX_EVENT (64u << 20) /* NATS's largest possible payload */

typedef struct vs_audit_store vs_audit_store;

struct vs_audit_store_opts {
    const char *path;        /* directory of the LMDB environment */
    uint64_t map_size;       /* initial map size; default 256 MiB, grown when full */
    bool read_only;          /* never writes the data file. On a copy (no
                                lock.mdb) nothing at all is written
                                (MDB_NOLOCK); on a live store (lock.mdb
                                present) the handle registers as a reader in
                                the lock file, so it reads consistently while
                                auditd appends. */
};

/* Open (creating when writable and absent). -errno on failure. */
VS_API int vs_audit_store_open(const struct vs_audit_store_opts *o, vs_audit_store **out);
VS_API void vs_audit_store_close(vs_audit_store *s);

struct vs_audit_append {
    const uint8_t *event;    /* serialized AuditEvent, as received */
    size_t len;
    uint64_t stream_seq;     /* JetStream sequence; 0 when not from a stream */
    uint64_t time_ns;        /* time of the append (the store's clock); 0: the
                                store reads CLOCK_REALTIME. Times are made
                                non-decreasing: one earlier than the previous
                                entry's is raised to it (hashed as stored), so
                                time order is sequence order. */
};

/* Append n events in one write transaction (group commit). Items whose
 * stream_seq is at or below the applied sequence are skipped. *appended
 * gets how many were stored. Undecodable events are stored too (the log
 * records what was received); indexes use what decodes. -ENOSPC never
 * escapes: a full map is grown and the batch replayed (-ENOSPC then means
 * the disk is full). An item stream_seq 0 is always appended and leaves
 * the applied sequence alone. -EINVAL (NULL event with len > 0), -EMSGSIZE
 * (an event over VS_AUDIT_MAX_EVENT), -E2BIG (a batch too large for one
 * LMDB transaction, some hundred MB): nothing of the batch is stored. */
VS_API int vs_audit_store_append(vs_audit_store *s, const struct vs_audit_append *items, size_t n,
                                 size_t *appended);

/* Number of entries (the Merkle tree size) and the applied stream sequence. */
VS_API uint64_t vs_audit_store_size(vs_audit_store *s);
VS_API uint64_t vs_audit_store_applied(vs_audit_store *s);

struct vs_audit_entry {
    uint64_t seq;
    uint64_t time_ns;
    uint64_t stream_seq;
    uint8_t prev_hash[VS_HASH_LEN];
    uint8_t chain_hash[VS_HASH_LEN];
    uint8_t leaf_hash[VS_HASH_LEN];
    const uint8_t *event;    /* valid until the next call on the store */
    size_t len;
};

/* Read entry seq. -ENOENT beyond the end, -EBADMSG when the stored entry
 * is not a valid encoding. */
VS_API int vs_audit_store_get(vs_audit_store *s, uint64_t seq, struct vs_audit_entry *e);

/* Merkle tree hash of the first size entries (RFC 6962 MTH); size 0 gives
 * SHA-256 of the empty string. O(log n) using stored subtree hashes.
 * -ERANGE when size is beyond the log, -EBADMSG when a stored hash is
 * missing (a damaged store: verify names where). */
VS_API int vs_audit_store_root(vs_audit_store *s, uint64_t size, uint8_t root[VS_HASH_LEN]);

/* RFC 6962 audit path of leaf index in the tree of size entries, and the
 * consistency proof between size1 and size2. *n gets the number of hashes;
 * arrays of VS_AUDIT_MAX_PROOF hashes always suffice. -EINVAL when index
 * >= size or size1 > size2, -ERANGE when a size is beyond the log. A
 * consistency proof from size1 0 or to size2 == size1 is empty. */
VS_API int vs_audit_store_inclusion(vs_audit_store *s, uint64_t index, uint64_t size,
                                    uint8_t path[][VS_HASH_LEN], size_t *n);
VS_API int vs_audit_store_consistency(vs_audit_store *s, uint64_t size1, uint64_t size2,
                                      uint8_t proof[][VS_HASH_LEN], size_t *n);

/* Recompute everything from the raw entries: each entry's encoding, its
 * chain link to the previous one, and the Merkle root at want_size (when
 * want_root is not NULL). Returns 0, or -EBADMSG with *first_bad = the
 * first sequence that does not check out (a modified, inserted, deleted or
 * reordered entry), or -ENODATA with *first_bad = size when the log is
 * shorter than want_size (a truncated tail).
 *
 * What first_bad names: an entry whose key, encoding (prefix, seq field,
 * length), prev_hash link or stored leaf/chain hash is wrong names its own
 * seq; a missing key (a gap) names the missing seq; a stored subtree hash
 * that differs from the recomputed one names the first leaf under it; a
 * meta size that disagrees with the entries names the smaller of the two.
 * When every entry checks out (the chain is self-consistent) but the root
 * at want_size differs from want_root - a log rewritten with every hash
 * recomputed - no single entry can be named and nothing below want_size is
 * proven: *first_bad = 0. want_size 0 with want_root checks the empty
 * root. Other errors are -errno from LMDB (first_bad untouched). */
VS_API int vs_audit_store_verify(vs_audit_store *s, uint64_t want_size,
                                 const uint8_t want_root[VS_HASH_LEN], uint64_t *first_bad);

/* Checkpoints (signed notes) kept beside the log, newest last: keyed by
 * size, the last is the one with the largest size; a second put at the
 * same size replaces its note. -ERANGE when size is beyond the log. */
VS_API int vs_audit_store_put_checkpoint(vs_audit_store *s, uint64_t size, const char *note,
                                         size_t len);
/* The newest checkpoint's note (malloc'd, caller frees) and its size; -ENOENT. */
VS_API int vs_audit_store_last_checkpoint(vs_audit_store *s, char **note, uint64_t *size);

struct vs_audit_filter {
    const char *agent;       /* NULL or "": any */
    const uint8_t *task_id;  /* 16 bytes or NULL */
    const char *category;    /* NULL or "": any */
    int min_severity;        /* 0: any */
    uint64_t since_ns, until_ns; /* inclusive; 0: open */
    uint64_t after_seq;      /* pagination: entries with seq > after_seq (use UINT64_MAX for none) */
    size_t limit;            /* 0: 100 */
};
/* Call cb for each matching entry in sequence order (stop early when cb
 * returns non-zero). Uses the indexes; returns the number delivered or
 * -errno. f NULL: everything. e->event points into the map and is valid
 * during the callback only. Undecodable events match only filters without
 * agent, task, category and severity. */
typedef int (*vs_audit_entry_cb)(const struct vs_audit_entry *e, void *arg);
VS_API int vs_audit_store_query(vs_audit_store *s, const struct vs_audit_filter *f,
                                vs_audit_entry_cb cb, void *arg);

/* A consistent, compacted copy to dir (mdb_env_copy2) while appends go on.
 * dir is created when absent; -EEXIST when it already holds a data.mdb.
 * The copy is fsync'd; open it with read_only to verify it. */
VS_API int vs_audit_store_backup(vs_audit_store *s, const char *dir);

/* ---- Merkle helpers on hashes alone (used by verifiers without a store) -- */

VS_API void vs_merkle_leaf(const uint8_t *data, size_t len, uint8_t out[VS_HASH_LEN]);
VS_API void vs_merkle_node(const uint8_t l[VS_HASH_LEN], const uint8_t r[VS_HASH_LEN],
                           uint8_t out[VS_HASH_LEN]);
/* RFC 9162 2.1.3.2: 0 when path proves leaf at index in a tree of size with
 * root; -EBADMSG when it does not, -EINVAL when index >= size or n is over
 * VS_AUDIT_MAX_PROOF. */
VS_API int vs_merkle_verify_inclusion(const uint8_t leaf[VS_HASH_LEN], uint64_t index,
                                      uint64_t size, const uint8_t path[][VS_HASH_LEN], size_t n,
                                      const uint8_t root[VS_HASH_LEN]);
/* RFC 9162 2.1.4.2: 0 when proof shows root1 (size1) is a prefix of root2
 * (size2); -EBADMSG when it does not, -EINVAL when size1 > size2 or n is
 * over VS_AUDIT_MAX_PROOF. size1 == size2 needs an empty proof and equal
 * roots; size1 0 needs an empty proof and root1 the empty root. */
VS_API int vs_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                        const uint8_t root1[VS_HASH_LEN],
                                        const uint8_t root2[VS_HASH_LEN],
                                        const uint8_t proof[][VS_HASH_LEN], size_t n);

#endif
