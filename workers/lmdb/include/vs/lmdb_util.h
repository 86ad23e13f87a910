/*
 * lmdb_util.h - what every LMDB-backed store here (the audit log, the
 * escrow ledger) shares: LMDB return codes as -errno, MDB_val construction,
 * page-rounded map sizes and the big-endian integers that keep LMDB's
 * byte-wise key order numeric.
 */
#ifndef VS_LMDB_UTIL_H
#define VS_LMDB_UTIL_H

#include <errno.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

/* MDB_MAP_FULL: the caller aborts, grows the map and replays its batch. */
#define VS_LMDB_MAP_FULL (-ENOSPC)

/* An LMDB return code as 0 / -errno (MDB_NOTFOUND: -ENOENT, MDB_KEYEXIST:
 * -EEXIST, MDB_MAP_FULL: VS_LMDB_MAP_FULL, corruption: -EBADMSG). */
int vs_lmdb_err(int rc);

/* n rounded up to whole pages (mdb_env_set_mapsize wants a page multiple). */
size_t vs_lmdb_page_round(uint64_t n);

static inline MDB_val vs_mval(const void *p, size_t n)
{
    MDB_val v = {n, (void *)(uintptr_t)p};
    return v;
}

static inline void vs_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t vs_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void vs_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint32_t vs_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
