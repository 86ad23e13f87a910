/*
 * test_ledger_fresh.c - unit tests of the ledger store's fresh-key set
 * (workers/ledgerd/src/fresh.h), the in-memory part of a write
 * transaction whose order decides what LMDB is handed with MDB_APPEND:
 * a wrong order there is an error at the commit, a lost or stale value a
 * wrong ledger.
 *
 * A random run of puts, reserves, overwrites and deletions over several
 * tables is checked against a plain list after every step (get) and at
 * the end (fresh_each must give exactly the live entries, by table and
 * then in LMDB's key order). Keys are built to defeat the sort's
 * shortcuts: shared prefixes of 0-20 bytes (runs that tie on the first 7
 * and 15 bytes), keys that are prefixes of each other, every length from
 * 1 to FRESH_KEY_MAX. Values must not move while others are added, and a
 * cleared set must be empty and reusable. VS_SEED picks the run.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fresh.h"

#define TABLES 3
#define MAX_ENTRIES 3000
#define MAX_VAL 300

struct model_entry {
    unsigned table;
    uint8_t key[FRESH_KEY_MAX];
    size_t klen;
    uint8_t val[MAX_VAL];
    size_t vlen;
    bool live;
};

struct model {
    struct model_entry e[MAX_ENTRIES];
    size_t n;
};

static unsigned long long seed_value;

static uint32_t rnd(void)
{
    seed_value = seed_value * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(seed_value >> 33);
}

static struct model_entry *model_find(struct model *m, unsigned table, const uint8_t *k, size_t kn)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].table == table && m->e[i].klen == kn && memcmp(m->e[i].key, k, kn) == 0)
            return &m->e[i];
    return NULL;
}

/* A key: one of a few shared prefixes, then random bytes; sometimes a
 * prefix of an earlier key. */
static size_t make_key(struct model *m, uint8_t *k)
{
    static const uint8_t prefixes[4][20] = {
        {0},
        {0, 0, 1, 0x9a, 0x44, 0x10, 0x7f},
        {0, 0, 1, 0x9a, 0x44, 0x10, 0x7f, 3, 3, 3, 3, 3, 3, 3, 3},
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff},
    };
    static const size_t plen[4] = {0, 7, 15, 20};
    if (m->n > 0 && rnd() % 8 == 0) { /* an existing key or a prefix of one */
        const struct model_entry *o = &m->e[rnd() % m->n];
        size_t n = 1 + rnd() % o->klen;
        memcpy(k, o->key, n);
        return n;
    }
    size_t p = rnd() % 4, n = 1 + rnd() % FRESH_KEY_MAX;
    for (size_t i = 0; i < n; i++)
        k[i] = i < plen[p] ? prefixes[p][i] : (uint8_t)(rnd() % 4 == 0 ? 0 : rnd());
    return n;
}

static int lmdb_order(const struct model_entry *a, const struct model_entry *b)
{
    if (a->table != b->table)
        return a->table < b->table ? -1 : 1;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    return c != 0 ? c : (int)a->klen - (int)b->klen;
}

static int model_cmp(const void *a, const void *b)
{
    return lmdb_order(a, b);
}

struct walk {
    struct model_entry *sorted;
    size_t n, at;
};

static int check_each(unsigned table, const uint8_t *key, size_t klen, const void *val, size_t vlen,
                      void *arg)
{
    struct walk *w = arg;
    assert_true(w->at < w->n);
    const struct model_entry *x = &w->sorted[w->at++];
    assert_int_equal(table, x->table);
    assert_int_equal(klen, x->klen);
    assert_memory_equal(key, x->key, klen);
    assert_int_equal(vlen, x->vlen);
    if (vlen > 0)
        assert_memory_equal(val, x->val, vlen);
    return 0;
}

static void check_all(fresh *f, struct model *m)
{
    struct walk w = {.sorted = malloc(sizeof(struct model_entry) * (m->n ? m->n : 1))};
    assert_non_null(w.sorted);
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].live)
            w.sorted[w.n++] = m->e[i];
    qsort(w.sorted, w.n, sizeof *w.sorted, model_cmp);
    for (size_t i = 1; i < w.n; i++)
        assert_true(lmdb_order(&w.sorted[i - 1], &w.sorted[i]) < 0);
    assert_int_equal(fresh_each(f, check_each, &w), 0);
    assert_int_equal(w.at, w.n);
    free(w.sorted);
}

static void test_random_against_a_list(void **state)
{
    (void)state;
    static struct model m;
    memset(&m, 0, sizeof m);
    fresh *f = NULL;
    assert_int_equal(fresh_new(&f), 0);
    for (int round = 0; round < 3; round++) {
        for (int step = 0; step < 4000; step++) {
            unsigned table = rnd() % TABLES;
            uint8_t k[FRESH_KEY_MAX];
            size_t kn = make_key(&m, k);
            struct model_entry *x = model_find(&m, table, k, kn);
            uint32_t op = rnd() % 10;
            if (op < 6 && (x != NULL || m.n < MAX_ENTRIES)) {
                uint8_t v[MAX_VAL];
                size_t vn = rnd() % 4 == 0 ? 0 : rnd() % MAX_VAL;
                for (size_t i = 0; i < vn; i++)
                    v[i] = (uint8_t)rnd();
                if (op < 3) {
                    assert_int_equal(fresh_put(f, table, k, kn, v, vn), 0);
                } else {
                    void *dst = NULL;
                    assert_int_equal(fresh_reserve(f, table, k, kn, vn, &dst), 0);
                    assert_non_null(dst);
                    memcpy(dst, v, vn);
                }
                if (x == NULL) {
                    x = &m.e[m.n++];
                    x->table = table;
                    memcpy(x->key, k, kn);
                    x->klen = kn;
                }
                memcpy(x->val, v, vn);
                x->vlen = vn;
                x->live = true;
            } else if (op < 8) {
                fresh_del(f, table, k, kn);
                if (x != NULL)
                    x->live = false;
            }
            const void *got;
            size_t gn;
            int rc = fresh_get(f, table, k, kn, &got, &gn);
            if (x != NULL && x->live) {
                assert_int_equal(rc, 0);
                assert_int_equal(gn, x->vlen);
                if (gn > 0)
                    assert_memory_equal(got, x->val, gn);
            } else {
                assert_int_equal(rc, -ENOENT);
            }
        }
        check_all(f, &m);
        for (unsigned t = 0; t < TABLES; t++) {
            bool any = false;
            for (size_t i = 0; i < m.n; i++)
                any = any || m.e[i].table == t;
            assert_int_equal(fresh_has(f, t), any);
        }
        /* Cleared: empty, and the next round starts from nothing. */
        fresh_clear(f);
        assert_true(fresh_empty(f));
        for (unsigned t = 0; t < TABLES; t++)
            assert_false(fresh_has(f, t));
        for (size_t i = 0; i < m.n; i++) {
            const void *got;
            size_t gn;
            assert_int_equal(fresh_get(f, m.e[i].table, m.e[i].key, m.e[i].klen, &got, &gn), -ENOENT);
        }
        check_all(f, &(struct model){.n = 0});
        m.n = 0;
    }
    fresh_free(f);
}

/* Keys added in order take the sort's shortcut; keys that only differ
 * after their 15th byte, added in reverse, must not. */
static void test_sorted_and_nearly_sorted_input(void **state)
{
    (void)state;
    static struct model m;
    memset(&m, 0, sizeof m);
    fresh *f = NULL;
    assert_int_equal(fresh_new(&f), 0);
    for (unsigned i = 0; i < 1000; i++) { /* table 0: ascending, sequential ids */
        struct model_entry *x = &m.e[m.n++];
        x->table = 0;
        x->klen = 16;
        for (int b = 0; b < 4; b++)
            x->key[12 + b] = (uint8_t)(i >> (24 - 8 * b));
        x->vlen = 1;
        x->val[0] = (uint8_t)i;
        x->live = true;
        assert_int_equal(fresh_put(f, 0, x->key, x->klen, x->val, 1), 0);
    }
    for (unsigned i = 0; i < 300; i++) { /* table 1: shared 20 bytes, tails descending */
        struct model_entry *x = &m.e[m.n++];
        x->table = 1;
        x->klen = 24;
        memset(x->key, 0x42, 20);
        x->key[22] = (uint8_t)(299 - i);
        x->key[23] = (uint8_t)(i % 3);
        x->live = true;
        assert_int_equal(fresh_put(f, 1, x->key, x->klen, "", 0), 0);
    }
    check_all(f, &m);
    fresh_free(f);
}

/* A value's address holds while thousands of others are added (the
 * arena and the entry array grow), as an LMDB pointer would within a
 * write; an overwrite with a longer value moves only that value. */
static void test_values_do_not_move(void **state)
{
    (void)state;
    fresh *f = NULL;
    assert_int_equal(fresh_new(&f), 0);
    static const char first[] = "the first value";
    assert_int_equal(fresh_put(f, 1, "k", 1, first, sizeof first), 0);
    const void *p;
    size_t n;
    assert_int_equal(fresh_get(f, 1, "k", 1, &p, &n), 0);
    for (uint32_t i = 0; i < 20000; i++) {
        uint8_t k[8], v[100];
        memcpy(k, &i, sizeof i);
        memset(v, (int)i, sizeof v);
        assert_int_equal(fresh_put(f, 2, k, 4 + i % 5, v, i % sizeof v), 0);
    }
    assert_string_equal(p, first);
    const void *again;
    assert_int_equal(fresh_get(f, 1, "k", 1, &again, &n), 0);
    assert_ptr_equal(again, p);
    /* A key above the limit is refused, not truncated. */
    uint8_t longkey[FRESH_KEY_MAX + 1] = {0};
    assert_int_equal(fresh_put(f, 1, longkey, sizeof longkey, "v", 1), -EINVAL);
    assert_int_equal(fresh_get(f, 1, longkey, sizeof longkey, &again, &n), -ENOENT);
    fresh_free(f);
}

int main(void)
{
    const char *s = getenv("VS_SEED");
    seed_value = s != NULL ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL);
    printf("test_ledger_fresh: VS_SEED=%llu\n", seed_value);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_a_list),
        cmocka_unit_test(test_sorted_and_nearly_sorted_input),
        cmocka_unit_test(test_values_do_not_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
