/*
 * sqlite_baseline.h - the ledger store's account and transfer rules
 * (vs/ledger_store.h) on SQLite: the baseline bench_ledger_store measures
 * the store against. Same inputs and result codes as the store, so one
 * workload drives both; see sqlite_baseline.c for what it keeps and checks.
 */
#ifndef VS_BENCH_SQLITE_BASELINE_H
#define VS_BENCH_SQLITE_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/ledger_store.h"

typedef struct sqlb sqlb;

/* Create the database file (WAL, synchronous=FULL) with its tables and
 * indexes. 0, or -1 with the reason on stderr. */
int sqlb_open(const char *file, sqlb **out);
void sqlb_close(sqlb *db);

/* One durable transaction (BEGIN IMMEDIATE ... COMMIT), as vs_ledger_write:
 * expire due pending transfers, create the accounts, then the transfers
 * (linked chains all or nothing). Results and replayed flags as
 * vs_ledger_create_account / vs_ledger_create_transfers. 0, or -EIO with
 * the reason on stderr (then nothing is applied). */
int sqlb_write(sqlb *db, const struct vs_account *as, size_t na, int *ares, bool *arep,
               const struct vs_transfer *xs, size_t nx, int *xres, bool *xrep);

/* What the database holds: accounts, successful transfers, open holds. */
int sqlb_counts(sqlb *db, uint64_t *accounts, uint64_t *transfers, uint64_t *pending_open);

#endif
