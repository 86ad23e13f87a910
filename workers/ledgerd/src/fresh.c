/*
 * fresh.c - a write transaction's fresh keys (fresh.h): entries in one
 * array, found through an open-addressing hash index, values in an arena
 * of chunks that never move. Cleared, not freed, between transactions: a
 * daemon's batches reuse the same memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fresh.h"

#define CHUNK_SIZE (64u * 1024u)

struct entry {
    uint8_t key[FRESH_KEY_MAX];
    uint8_t klen;
    uint8_t table;
    bool live;
    uint32_t vlen, vcap;
    uint8_t *val;           /* in the arena */
};

struct chunk {
    struct chunk *next;
    size_t used, size;
    uint8_t data[];
};

/* An entry in fresh_each's sort: its table and the key's first 15 bytes
 * as two numbers, which order nearly every pair without touching the
 * entries. */
struct sort_item {
    uint64_t hi;            /* table, key bytes 0-6 */
    uint64_t lo;            /* key bytes 7-14 */
    uint32_t idx;
};

struct fresh {
    struct entry *e;
    size_t n, cap;
    uint32_t *index;        /* entry number + 1; 0: empty */
    size_t index_cap;       /* a power of two, at least twice n */
    struct chunk *chunks;   /* the newest first */
    struct chunk *spare;    /* cleared chunks, reused */
    struct sort_item *order, *spare_order; /* fresh_each's sort buffers */
    size_t order_cap;
    uint32_t per_table[UINT8_MAX + 1]; /* entries stored (deleted ones too) */
};

int fresh_new(fresh **out)
{
    *out = calloc(1, sizeof **out);
    return *out == NULL ? -ENOMEM : 0;
}

static void chunks_free(struct chunk *c)
{
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

void fresh_free(fresh *f)
{
    if (f == NULL)
        return;
    chunks_free(f->chunks);
    chunks_free(f->spare);
    free(f->e);
    free(f->index);
    free(f->order);
    free(f->spare_order);
    free(f);
}

void fresh_clear(fresh *f)
{
    if (f->n > 0) {
        memset(f->index, 0, f->index_cap * sizeof *f->index);
        memset(f->per_table, 0, sizeof f->per_table);
    }
    f->n = 0;
    while (f->chunks != NULL) { /* standard-size chunks are kept */
        struct chunk *c = f->chunks;
        f->chunks = c->next;
        if (c->size == CHUNK_SIZE) {
            c->used = 0;
            c->next = f->spare;
            f->spare = c;
        } else {
            free(c);
        }
    }
}

bool fresh_empty(const fresh *f)
{
    return f->n == 0;
}

bool fresh_has(const fresh *f, unsigned table)
{
    return table <= UINT8_MAX && f->per_table[table] > 0;
}

/* The key eight bytes at a time, each word mixed in by a multiply, then
 * MurmurHash3's finalizer: time-ordered ids share their leading bytes. */
static size_t hash(unsigned table, const uint8_t *k, size_t kn)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ ((uint64_t)table << 8 | kn);
    for (size_t i = 0; i < kn; i += 8) {
        uint64_t w = 0;
        memcpy(&w, k + i, kn - i < 8 ? kn - i : 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return (size_t)h;
}

/* The index slot of (table, key): its entry's, or the empty one where it
 * would go. */
static uint32_t *slot_of(fresh *f, unsigned table, const uint8_t *k, size_t kn)
{
    size_t mask = f->index_cap - 1;
    for (size_t i = hash(table, k, kn) & mask;; i = (i + 1) & mask) {
        uint32_t *s = &f->index[i];
        if (*s == 0)
            return s;
        const struct entry *e = &f->e[*s - 1];
        if (e->table == table && e->klen == kn && memcmp(e->key, k, kn) == 0)
            return s;
    }
}

static struct entry *find(fresh *f, unsigned table, const void *key, size_t klen)
{
    if (f->n == 0 || klen > FRESH_KEY_MAX)
        return NULL;
    uint32_t *s = slot_of(f, table, key, klen);
    return *s == 0 ? NULL : &f->e[*s - 1];
}

int fresh_get(fresh *f, unsigned table, const void *key, size_t klen, const void **val,
              size_t *vlen)
{
    const struct entry *e = find(f, table, key, klen);
    if (e == NULL || !e->live)
        return -ENOENT;
    *val = e->val;
    *vlen = e->vlen;
    return 0;
}

/* Room for one more entry: the array and an index at most half full. */
static int reserve_entry(fresh *f)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 1024;
        struct entry *e = realloc(f->e, cap * sizeof *e);
        if (e == NULL)
            return -ENOMEM;
        f->e = e;
        f->cap = cap;
    }
    if (2 * (f->n + 1) <= f->index_cap)
        return 0;
    size_t cap = f->index_cap ? f->index_cap * 2 : 2048;
    uint32_t *index = calloc(cap, sizeof *index);
    if (index == NULL)
        return -ENOMEM;
    free(f->index);
    f->index = index;
    f->index_cap = cap;
    for (size_t i = 0; i < f->n; i++)
        *slot_of(f, f->e[i].table, f->e[i].key, f->e[i].klen) = (uint32_t)(i + 1);
    return 0;
}

static uint8_t *arena_alloc(fresh *f, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct chunk *c = f->chunks;
    if (c == NULL || c->size - c->used < n) {
        if (n <= CHUNK_SIZE && f->spare != NULL) {
            c = f->spare;
            f->spare = c->next;
        } else {
            size_t size = n > CHUNK_SIZE ? n : CHUNK_SIZE;
            if ((c = malloc(sizeof *c + size)) == NULL)
                return NULL;
            c->size = size;
            c->used = 0;
        }
        c->next = f->chunks;
        f->chunks = c;
    }
    uint8_t *p = c->data + c->used;
    c->used += n;
    return p;
}

int fresh_reserve(fresh *f, unsigned table, const void *key, size_t klen, size_t vlen, void **dst)
{
    if (klen > FRESH_KEY_MAX || table > UINT8_MAX || vlen > UINT32_MAX)
        return -EINVAL;
    int rc = reserve_entry(f);
    if (rc)
        return rc;
    uint32_t *slot = slot_of(f, table, key, klen);
    struct entry *e = *slot != 0 ? &f->e[*slot - 1] : &f->e[f->n];
    if (*slot == 0) {
        memcpy(e->key, key, klen);
        e->klen = (uint8_t)klen;
        e->table = (uint8_t)table;
        e->vcap = 0;
        e->val = NULL;
        *slot = (uint32_t)++f->n;
        f->per_table[table]++;
    }
    if (e->vcap < vlen || e->val == NULL) {
        uint8_t *p = arena_alloc(f, vlen > 0 ? vlen : 1);
        if (p == NULL)
            return -ENOMEM;
        e->val = p;
        e->vcap = (uint32_t)vlen;
    }
    e->vlen = (uint32_t)vlen;
    e->live = true;
    *dst = e->val;
    return 0;
}

int fresh_put(fresh *f, unsigned table, const void *key, size_t klen, const void *val, size_t vlen)
{
    void *dst;
    int rc = fresh_reserve(f, table, key, klen, vlen, &dst);
    if (rc == 0 && vlen > 0)
        memcpy(dst, val, vlen);
    return rc;
}

void fresh_del(fresh *f, unsigned table, const void *key, size_t klen)
{
    struct entry *e = find(f, table, key, klen);
    if (e != NULL)
        e->live = false;
}

static int entry_cmp(const struct entry *x, const struct entry *y)
{
    if (x->table != y->table)
        return (int)x->table - (int)y->table;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c != 0 ? c : (int)x->klen - (int)y->klen;
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

static void sort_key(const struct entry *e, uint32_t idx, struct sort_item *out)
{
    uint8_t k[16] = {0};
    memcpy(k, e->key, e->klen < 15 ? e->klen : 15);
    *out = (struct sort_item){(uint64_t)e->table << 56 | load_be64(k) >> 8, load_be64(k + 7), idx};
}

static int item_cmp(const void *a, const void *b, void *arg)
{
    const struct entry *e = arg;
    return entry_cmp(&e[((const struct sort_item *)a)->idx], &e[((const struct sort_item *)b)->idx]);
}

/* LSD radix sort of a[n] by hi (lo when by_lo), on its bytes from
 * first_shift up; a byte every item shares costs one counting pass. */
static void radix_sort(struct sort_item *a, struct sort_item *tmp, size_t n, bool by_lo,
                       unsigned first_shift)
{
    struct sort_item *src = a, *dst = tmp;
    for (unsigned shift = first_shift; shift < 64; shift += 8) {
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++)
            count[((by_lo ? src[i].lo : src[i].hi) >> shift) & 0xff]++;
        if (count[((by_lo ? src[0].lo : src[0].hi) >> shift) & 0xff] == n)
            continue;
        for (size_t b = 0, sum = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[((by_lo ? src[i].lo : src[i].hi) >> shift) & 0xff]++] = src[i];
        struct sort_item *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

static bool ascending(const struct sort_item *a, size_t n, const struct entry *e)
{
    for (size_t i = 1; i < n; i++) {
        const struct sort_item *x = &a[i - 1], *y = &a[i];
        if (y->hi < x->hi || (y->hi == x->hi && y->lo < x->lo))
            return false;
        if (y->hi == x->hi && y->lo == x->lo && entry_cmp(&e[x->idx], &e[y->idx]) >= 0)
            return false;
    }
    return true;
}

/* Items that share hi: by lo, then by the whole key. */
static int item_cmp_lo(const struct sort_item *x, const struct sort_item *y, const struct entry *e)
{
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return entry_cmp(&e[x->idx], &e[y->idx]);
}

/* One table's items: by hi; runs of equal hi (keys that share their
 * first 7 bytes) by lo and then the whole key - a few items (ids of one
 * millisecond) by insertion, long runs (one commit's expiry deadlines)
 * by radix on lo, what still ties (keys that share 15 bytes) by qsort. */
static void sort_table(struct sort_item *a, struct sort_item *tmp, size_t n, struct entry *e)
{
    radix_sort(a, tmp, n, false, 0);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && a[j].hi == a[i].hi; j++)
            ;
        if (j - i <= 16) {
            for (size_t k = i + 1; k < j; k++) {
                struct sort_item x = a[k];
                size_t m = k;
                for (; m > i && item_cmp_lo(&a[m - 1], &x, e) > 0; m--)
                    a[m] = a[m - 1];
                a[m] = x;
            }
            continue;
        }
        radix_sort(a + i, tmp, j - i, true, 0);
        for (size_t k = i, m; k < j; k = m) {
            for (m = k + 1; m < j && a[m].lo == a[k].lo; m++)
                ;
            if (m - k > 1)
                qsort_r(a + k, m - k, sizeof *a, item_cmp, e);
        }
    }
}

/* By table (stable), then each table's items unless they were added in
 * order already (sequential ids are). */
static void sort_items(struct sort_item *a, struct sort_item *tmp, size_t n, struct entry *e)
{
    radix_sort(a, tmp, n, false, 56);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && a[j].hi >> 56 == a[i].hi >> 56; j++)
            ;
        if (!ascending(a + i, j - i, e))
            sort_table(a + i, tmp, j - i, e);
    }
}

int fresh_each(fresh *f, fresh_each_fn fn, void *arg)
{
    if (f->order_cap < f->n) {
        free(f->order);
        free(f->spare_order);
        f->order = malloc(f->cap * sizeof *f->order);
        f->spare_order = malloc(f->cap * sizeof *f->spare_order);
        f->order_cap = f->order != NULL && f->spare_order != NULL ? f->cap : 0;
        if (f->order_cap == 0)
            return -ENOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->e[i].live)
            sort_key(&f->e[i], (uint32_t)i, &f->order[m++]);
    if (m > 1)
        sort_items(f->order, f->spare_order, m, f->e);
    for (size_t i = 0; i < m; i++) {
        const struct entry *e = &f->e[f->order[i].idx];
        int rc = fn(e->table, e->key, e->klen, e->val, e->vlen, arg);
        if (rc)
            return rc;
    }
    return 0;
}
