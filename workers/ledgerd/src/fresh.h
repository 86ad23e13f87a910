/*
 * fresh.h - a write transaction's fresh keys: the records it stores under
 * keys above the last key each table had when the transaction began (the
 * store's private helper, store.c).
 *
 * Why: ledger ids are time-ordered, so nearly every record a batch writes
 * (transfers, command replies, task records, expiry and task index
 * entries) gets a key above everything stored. Put straight into LMDB in
 * arrival order, ids that are random within their millisecond land in the
 * middle of each table's last page and split it in half, and every lookup
 * and insert walks the B-tree. Held here until the commit instead, they
 * are looked up in a hash table and then appended in key order
 * (MDB_APPEND): no searches, and full pages.
 *
 * Entries belong to a numbered table (the store's tracked tables); keys
 * are at most FRESH_KEY_MAX bytes. Values never move once stored, so a
 * pointer from fresh_get stays valid until the entry is overwritten or the
 * set is cleared, like one into an LMDB page.
 */
#ifndef VS_LEDGER_FRESH_H
#define VS_LEDGER_FRESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRESH_KEY_MAX 40

typedef struct fresh fresh;

int fresh_new(fresh **out);
void fresh_free(fresh *f);
/* Forget every entry (keeps the memory for the next transaction). */
void fresh_clear(fresh *f);
/* Whether any entry exists, of any table or of this one. */
bool fresh_empty(const fresh *f);
bool fresh_has(const fresh *f, unsigned table);

/* The value under (table, key): 0 with *val and *vlen set, or -ENOENT when it
 * was never stored or was deleted. */
int fresh_get(fresh *f, unsigned table, const void *key, size_t klen, const void **val,
              size_t *vlen);
/* Room for a vlen-byte value under (table, key), replacing any earlier
 * one; the caller fills *dst. 0, -EINVAL (key too long) or -ENOMEM. */
int fresh_reserve(fresh *f, unsigned table, const void *key, size_t klen, size_t vlen, void **dst);
/* Store a copy of val under (table, key). */
int fresh_put(fresh *f, unsigned table, const void *key, size_t klen, const void *val, size_t vlen);
/* Delete (table, key); deleting an absent key does nothing. */
void fresh_del(fresh *f, unsigned table, const void *key, size_t klen);

typedef int (*fresh_each_fn)(unsigned table, const uint8_t *key, size_t klen, const void *val,
                             size_t vlen, void *arg);
/* Each live entry, ordered by table and then by key in LMDB's default
 * order (bytes, then the shorter first), to fn until it returns nonzero
 * (returned). */
int fresh_each(fresh *f, fresh_each_fn fn, void *arg);

#endif
