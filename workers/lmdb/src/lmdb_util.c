/*
 * lmdb_util.c - LMDB return codes as -errno and page-rounded map sizes,
 * shared by the audit store and the ledger store (lmdb_util.h).
 */
#include <unistd.h>

#include "vs/lmdb_util.h"

int vs_lmdb_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_MAP_FULL:
        return VS_LMDB_MAP_FULL;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_KEYEXIST:
        return -EEXIST;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
    case MDB_TLS_FULL:
        return -EAGAIN;
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
        return -E2BIG;
    case MDB_DBS_FULL:
        return -EMFILE;
    case MDB_BAD_VALSIZE:
    case MDB_BAD_TXN:
    case MDB_BAD_DBI:
        return -EINVAL;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
        return -EBADMSG;
    case MDB_VERSION_MISMATCH:
        return -ENOTSUP;
    case MDB_PANIC:
    case MDB_BAD_RSLOT:
        return -EIO;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

size_t vs_lmdb_page_round(uint64_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t p = pg > 0 ? (uint64_t)pg : 4096;
    if (n > SIZE_MAX - p)
        n = SIZE_MAX - p;
    return (size_t)((n + p - 1) / p * p);
}
