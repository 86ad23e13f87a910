/*
 * test_ledger_store.c - unit tests of the escrow ledger store
 * (workers/ledgerd: store.c) against the rules of its header.
 *
 * vs/ledger_store.h is the contract. Each rule it states is broken here by
 * a minimal case and the exact result code asserted; a rejected transfer
 * must leave every balance of every account as it was and must not be
 * found as a transfer. Accepted effects are checked on the four balances
 * of each account against hand-computed values. Two-phase transfers,
 * expiry by the transaction time, linked chains (and their rollback of
 * holds, posts and deadlines), idempotent retries (also across a reopen),
 * the queries, reads inside a write and after an aborted one, the
 * exactly-once bookkeeping (applied sequences, command replies, the
 * outbox), the key/value tables, growth from a tiny map, backups (quiet,
 * by another process while this one writes, and from a read-only handle
 * opened before the map grew) and read-only opens of a live store from
 * another process run on real LMDB files in a mkdtemp directory. After
 * every test the store's own invariant check must pass and its totals must
 * equal what the accounts, the open holds and each account's history add
 * up to, recomputed here. Times are passed explicitly (one check of the
 * clock aside); nothing depends on timing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "vs/ledger_store.h"

#define BASE_NS 1700000000000000000ull
#define MS 1000000ull
#define ID VS_LEDGER_ID_LEN

/* The first byte of an id says what it names; the last eight are a number. */
enum { K_ACCT = 0xac, K_XFER = 0x7f, K_TASK = 0x7a, K_GHOST = 0x55 };

/* ---- fixtures and helpers ---------------------------------------------------- */

static void mkid(uint8_t id[ID], uint8_t kind, uint64_t n)
{
    memset(id, 0, ID);
    id[0] = kind;
    for (int i = 0; i < 8; i++)
        id[8 + i] = (uint8_t)(n >> (56 - 8 * i));
}

static const char *xname(int r)
{
    if (r < 0)
        return "store failure";
    const char *s = vs_transfer_result_name(r);
    return s ? s : "?";
}

static const char *aname(int r)
{
    if (r < 0)
        return "store failure";
    const char *s = vs_account_result_name(r);
    return s ? s : "?";
}

#define assert_xfer(got, want)                                                                  \
    do {                                                                                        \
        int g_ = (got), w_ = (want);                                                            \
        if (g_ != w_)                                                                           \
            fail_msg("%s:%d: transfer result %s (%d), want %s (%d)", __FILE__, __LINE__,        \
                     xname(g_), g_, xname(w_), w_);                                             \
    } while (0)

#define assert_acct(got, want)                                                                  \
    do {                                                                                        \
        int g_ = (got), w_ = (want);                                                            \
        if (g_ != w_)                                                                           \
            fail_msg("%s:%d: account result %s (%d), want %s (%d)", __FILE__, __LINE__,         \
                     aname(g_), g_, aname(w_), w_);                                             \
    } while (0)

static struct vs_account mkacct(uint64_t n, uint32_t ledger, uint16_t flags, const char *name)
{
    struct vs_account a;
    memset(&a, 0, sizeof a);
    mkid(a.id, K_ACCT, n);
    a.ledger = ledger;
    a.code = 1;
    a.flags = flags;
    size_t len = strlen(name);
    assert_true(len < sizeof a.name);
    memcpy(a.name, name, len);
    return a;
}

/* A transfer id n from account dr to account cr (0: the zero id) on ledger 1. */
static struct vs_transfer xfer(uint64_t n, uint64_t dr, uint64_t cr, uint64_t amount,
                               uint16_t flags)
{
    struct vs_transfer x;
    memset(&x, 0, sizeof x);
    mkid(x.id, K_XFER, n);
    if (dr)
        mkid(x.debit_account_id, K_ACCT, dr);
    if (cr)
        mkid(x.credit_account_id, K_ACCT, cr);
    x.amount = amount;
    x.ledger = 1;
    x.code = 1;
    x.flags = flags;
    return x;
}

static struct vs_transfer pend(uint64_t n, uint64_t dr, uint64_t cr, uint64_t amount,
                               uint64_t timeout_ms)
{
    struct vs_transfer x = xfer(n, dr, cr, amount, VS_TRANSFER_PENDING);
    x.timeout_ms = timeout_ms;
    return x;
}

/* POST or VOID of pending transfer p, accounts, ledger and code left zero. */
static struct vs_transfer resolve(uint64_t n, uint64_t p, uint64_t amount, uint16_t flag)
{
    struct vs_transfer x = xfer(n, 0, 0, amount, flag);
    mkid(x.pending_id, K_XFER, p);
    x.ledger = 0;
    x.code = 0;
    return x;
}

static struct vs_transfer post(uint64_t n, uint64_t p, uint64_t amount)
{
    return resolve(n, p, amount, VS_TRANSFER_POST_PENDING);
}

static struct vs_transfer voidp(uint64_t n, uint64_t p)
{
    return resolve(n, p, 0, VS_TRANSFER_VOID_PENDING);
}

static vs_ledger *open_ledger(const char *path, uint64_t map_size, bool ro)
{
    struct vs_ledger_opts o = {.path = path, .map_size = map_size, .read_only = ro};
    vs_ledger *l = NULL;
    int rc = vs_ledger_open(&o, &l);
    if (rc)
        fail_msg("open %s: %s", path, strerror(-rc));
    assert_non_null(l);
    return l;
}

struct fx {
    char *dir;
    vs_ledger *l;
    uint64_t now; /* the time of the last write */
};

/* One write: accounts, then one create_transfers call. Restartable. */
struct job {
    const struct vs_account *accts;
    size_t na;
    int *ares;
    bool *arep;
    const struct vs_transfer *xs;
    size_t nx;
    int *xres;
    bool *xrep;
};

static int job_apply(vs_ledger_txn *t, void *arg)
{
    struct job *j = arg;
    for (size_t i = 0; i < j->na; i++) {
        bool rep = false;
        int rc = vs_ledger_create_account(t, &j->accts[i], &rep);
        if (rc < 0)
            return rc;
        j->ares[i] = rc;
        if (j->arep)
            j->arep[i] = rep;
    }
    if (j->nx) {
        for (size_t i = 0; i < j->nx; i++) {
            j->xres[i] = -1;
            if (j->xrep)
                j->xrep[i] = false;
        }
        int rc = vs_ledger_create_transfers(t, j->xs, j->nx, j->xres, j->xrep);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Run a job at time now (0: a millisecond after the last write). */
static void run_job(struct fx *f, uint64_t now, struct job *j)
{
    f->now = now ? now : f->now + MS;
    int rc = vs_ledger_write(f->l, f->now, job_apply, j);
    if (rc)
        fail_msg("write: %s", strerror(-rc));
}

static int new_acct(struct fx *f, const struct vs_account *a, bool *rep)
{
    int res = -1;
    bool r = false;
    struct job j = {.accts = a, .na = 1, .ares = &res, .arep = &r};
    run_job(f, 0, &j);
    if (rep)
        *rep = r;
    return res;
}

static void new_accts(struct fx *f, const struct vs_account *as, size_t n)
{
    int res[16];
    assert_true(n <= 16);
    struct job j = {.accts = as, .na = n, .ares = res};
    run_job(f, 0, &j);
    for (size_t i = 0; i < n; i++)
        assert_acct(res[i], VS_ACCT_OK);
}

static void many_at(struct fx *f, uint64_t now, const struct vs_transfer *xs, size_t n, int *res,
                    bool *rep)
{
    struct job j = {.xs = xs, .nx = n, .xres = res, .xrep = rep};
    run_job(f, now, &j);
}

static void many(struct fx *f, const struct vs_transfer *xs, size_t n, int *res, bool *rep)
{
    many_at(f, 0, xs, n, res, rep);
}

static int one_at(struct fx *f, uint64_t now, const struct vs_transfer *x, bool *rep)
{
    int res = -1;
    bool r = true;
    many_at(f, now, x, 1, &res, &r);
    if (rep)
        *rep = r;
    return res;
}

static int one(struct fx *f, const struct vs_transfer *x, bool *rep)
{
    return one_at(f, 0, x, rep);
}

/* A transfer that must be accepted as new. */
static void ok(struct fx *f, const struct vs_transfer *x)
{
    bool rep = true;
    assert_xfer(one(f, x, &rep), VS_XFER_OK);
    assert_false(rep);
}

/* An empty write at time now: only expires what is due. */
static void tick_at(struct fx *f, uint64_t now)
{
    struct job j = {0};
    run_job(f, now, &j);
}

/* ---- reads ------------------------------------------------------------------- */

struct acct_q {
    uint8_t id[ID];
    const char *name;
    struct vs_account out;
    int rc;
};

static int acct_q_apply(vs_ledger_txn *t, void *arg)
{
    struct acct_q *q = arg;
    memset(&q->out, 0, sizeof q->out);
    q->rc = q->name ? vs_ledger_account_by_name(t, q->name, &q->out)
                    : vs_ledger_account(t, q->id, &q->out);
    return 0;
}

static int get_acct_rc(struct fx *f, uint64_t n, struct vs_account *out)
{
    struct acct_q q = {.rc = 1};
    mkid(q.id, K_ACCT, n);
    assert_int_equal(vs_ledger_read(f->l, acct_q_apply, &q), 0);
    if (out)
        *out = q.out;
    return q.rc;
}

static struct vs_account get_acct(struct fx *f, uint64_t n)
{
    struct vs_account a;
    int rc = get_acct_rc(f, n, &a);
    if (rc)
        fail_msg("account %llu: %s", (unsigned long long)n, strerror(-rc));
    return a;
}

static int get_acct_by_name(struct fx *f, const char *name, struct vs_account *out)
{
    struct acct_q q = {.name = name, .rc = 1};
    assert_int_equal(vs_ledger_read(f->l, acct_q_apply, &q), 0);
    if (out)
        *out = q.out;
    return q.rc;
}

#define expect_bal(f, n, dp, dpo, cp, cpo) expect_bal_(f, n, dp, dpo, cp, cpo, __LINE__)
static void expect_bal_(struct fx *f, uint64_t n, uint64_t dp, uint64_t dpo, uint64_t cp,
                        uint64_t cpo, int line)
{
    struct vs_account a = get_acct(f, n);
    if (a.debits_pending != dp || a.debits_posted != dpo || a.credits_pending != cp ||
        a.credits_posted != cpo)
        fail_msg("line %d: account %llu has debits %llu pending %llu posted, credits %llu "
                 "pending %llu posted; want %llu %llu, %llu %llu",
                 line, (unsigned long long)n, (unsigned long long)a.debits_pending,
                 (unsigned long long)a.debits_posted, (unsigned long long)a.credits_pending,
                 (unsigned long long)a.credits_posted, (unsigned long long)dp,
                 (unsigned long long)dpo, (unsigned long long)cp, (unsigned long long)cpo);
}

struct xfer_q {
    uint8_t id[ID];
    struct vs_transfer out;
    enum vs_pending_state st;
    uint64_t dl;
    int rc;
};

static int xfer_q_apply(vs_ledger_txn *t, void *arg)
{
    struct xfer_q *q = arg;
    memset(&q->out, 0, sizeof q->out);
    q->st = (enum vs_pending_state)99;
    q->dl = 12345;
    q->rc = vs_ledger_transfer(t, q->id, &q->out, &q->st, &q->dl);
    return 0;
}

static int get_xfer_id(struct fx *f, const uint8_t id[ID], struct vs_transfer *out,
                       enum vs_pending_state *st, uint64_t *dl)
{
    struct xfer_q q = {.rc = 1};
    memcpy(q.id, id, ID);
    assert_int_equal(vs_ledger_read(f->l, xfer_q_apply, &q), 0);
    if (out)
        *out = q.out;
    if (st)
        *st = q.st;
    if (dl)
        *dl = q.dl;
    return q.rc;
}

static int get_xfer(struct fx *f, uint64_t n, struct vs_transfer *out, enum vs_pending_state *st,
                    uint64_t *dl)
{
    uint8_t id[ID];
    mkid(id, K_XFER, n);
    return get_xfer_id(f, id, out, st, dl);
}

#define expect_state(f, n, want) expect_state_(f, n, want, __LINE__)
static void expect_state_(struct fx *f, uint64_t n, enum vs_pending_state want, int line)
{
    enum vs_pending_state st;
    int rc = get_xfer(f, n, NULL, &st, NULL);
    if (rc)
        fail_msg("line %d: transfer %llu: %s", line, (unsigned long long)n, strerror(-rc));
    if (st != want)
        fail_msg("line %d: transfer %llu in state %d, want %d", line, (unsigned long long)n,
                 (int)st, (int)want);
}

#define expect_absent(f, n) expect_absent_(f, n, __LINE__)
static void expect_absent_(struct fx *f, uint64_t n, int line)
{
    int rc = get_xfer(f, n, NULL, NULL, NULL);
    if (rc != -ENOENT)
        fail_msg("line %d: transfer %llu: lookup returned %d, want -ENOENT", line,
                 (unsigned long long)n, rc);
}

/* All accounts, in the store's order. */
enum { SNAP_MAX = 2048 };
struct snap {
    size_t n;
    struct vs_account a[SNAP_MAX];
};

static int snap_cb(const struct vs_account *a, void *arg)
{
    struct snap *s = arg;
    if (s->n < SNAP_MAX)
        s->a[s->n] = *a;
    s->n++;
    return 0;
}

static int snap_apply(vs_ledger_txn *t, void *arg)
{
    struct snap *s = arg;
    s->n = 0;
    return vs_ledger_accounts(t, snap_cb, s);
}

static struct snap *snapshot(vs_ledger *l)
{
    struct snap *s = calloc(1, sizeof *s);
    assert_non_null(s);
    assert_int_equal(vs_ledger_read(l, snap_apply, s), 0);
    assert_true(s->n <= SNAP_MAX);
    return s;
}

static void assert_same_accounts(const struct snap *a, const struct snap *b, const char *what)
{
    if (a->n != b->n)
        fail_msg("%s: %zu accounts, then %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct vs_account *x = &a->a[i], *y = &b->a[i];
        if (memcmp(x->id, y->id, ID) || x->debits_pending != y->debits_pending ||
            x->debits_posted != y->debits_posted || x->credits_pending != y->credits_pending ||
            x->credits_posted != y->credits_posted)
            fail_msg("%s: account %zu (number %u) changed", what, i, (unsigned)x->id[15]);
    }
}

/* ---- the invariant, recomputed ---------------------------------------------------- */

struct idset {
    size_t n;
    uint8_t (*ids)[ID];
    uint64_t *amounts;
};

static bool idset_add(struct idset *s, const uint8_t id[ID], uint64_t amount)
{
    for (size_t i = 0; i < s->n; i++)
        if (!memcmp(s->ids[i], id, ID))
            return false;
    s->ids = realloc(s->ids, (s->n + 1) * ID);
    s->amounts = realloc(s->amounts, (s->n + 1) * sizeof *s->amounts);
    assert_non_null(s->ids);
    assert_non_null(s->amounts);
    memcpy(s->ids[s->n], id, ID);
    s->amounts[s->n++] = amount;
    return true;
}

static void idset_free(struct idset *s)
{
    free(s->ids);
    free(s->amounts);
    memset(s, 0, sizeof *s);
}

struct recompute {
    const uint8_t *acct;
    uint64_t dp, dpo, cp, cpo;
    uint64_t last_ts;
    bool order_ok, sides_ok;
    struct idset open;
};

static int hist_sum_cb(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    struct recompute *r = arg;
    if (x->timestamp <= r->last_ts)
        r->order_ok = false;
    r->last_ts = x->timestamp;
    bool dr = !memcmp(x->debit_account_id, r->acct, ID);
    bool cr = !memcmp(x->credit_account_id, r->acct, ID);
    if (dr == cr)
        r->sides_ok = false;
    uint64_t *posted = dr ? &r->dpo : &r->cpo, *pending = dr ? &r->dp : &r->cp;
    if (x->flags & VS_TRANSFER_PENDING) {
        if (st == VS_PENDING_OPEN)
            *pending += x->amount;
    } else if (x->flags & VS_TRANSFER_VOID_PENDING) {
        /* releases only */
    } else {
        *posted += x->amount; /* a plain transfer, or a POST: what it posted */
    }
    return 0;
}

static int pend_cb(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    struct recompute *r = arg;
    if (st != VS_PENDING_OPEN || !(x->flags & VS_TRANSFER_PENDING))
        r->order_ok = false;
    idset_add(&r->open, x->id, x->amount);
    return 0;
}

struct inv {
    struct vs_ledger_totals tot;
    int rc;
    struct snap *s;
    struct recompute *r; /* one per account */
    struct idset open;   /* open holds over all accounts */
    uint64_t next_deadline;
    int dl_rc;
};

static int inv_apply(vs_ledger_txn *t, void *arg)
{
    struct inv *v = arg;
    memset(&v->tot, 0, sizeof v->tot);
    v->rc = vs_ledger_check(t, &v->tot);
    v->s->n = 0;
    int rc = vs_ledger_accounts(t, snap_cb, v->s);
    if (rc)
        return rc;
    for (size_t i = 0; i < v->s->n && i < SNAP_MAX; i++) {
        struct recompute *r = &v->r[i];
        r->acct = v->s->a[i].id;
        r->order_ok = r->sides_ok = true;
        rc = vs_ledger_history(t, r->acct, 0, 0, hist_sum_cb, r);
        if (rc)
            return rc;
        rc = vs_ledger_pending(t, r->acct, NULL, pend_cb, r);
        if (rc)
            return rc;
        for (size_t k = 0; k < r->open.n; k++)
            idset_add(&v->open, r->open.ids[k], r->open.amounts[k]);
    }
    v->dl_rc = vs_ledger_next_deadline(t, &v->next_deadline);
    return 0;
}

/* vs_ledger_check passes and its totals are what the accounts add up to;
 * each account's balances are what its history adds up to; the open holds
 * by account are the pending balances. */
static void check_invariant(vs_ledger *l, struct vs_ledger_totals *out)
{
    struct inv v;
    memset(&v, 0, sizeof v);
    v.s = calloc(1, sizeof *v.s);
    v.r = calloc(SNAP_MAX, sizeof *v.r);
    assert_non_null(v.s);
    assert_non_null(v.r);
    int rc = vs_ledger_read(l, inv_apply, &v);
    if (rc)
        fail_msg("invariant read: %s", strerror(-rc));
    if (v.rc)
        fail_msg("vs_ledger_check: %d (%s): %s", v.rc, strerror(-v.rc), v.tot.problem);
    assert_string_equal(v.tot.problem, "");
    assert_true(v.s->n <= SNAP_MAX);
    assert_int_equal(v.tot.accounts, v.s->n);
    uint64_t dp = 0, dpo = 0, cp = 0, cpo = 0, open_sum = 0;
    for (size_t i = 0; i < v.s->n; i++) {
        const struct vs_account *a = &v.s->a[i];
        struct recompute *r = &v.r[i];
        if (i > 0 && memcmp(v.s->a[i - 1].id, a->id, ID) >= 0)
            fail_msg("accounts not in id order at %zu", i);
        dp += a->debits_pending;
        dpo += a->debits_posted;
        cp += a->credits_pending;
        cpo += a->credits_posted;
        if (!r->order_ok || !r->sides_ok)
            fail_msg("account %zu: history out of order, a transfer not touching it, or a "
                     "hold not open",
                     i);
        if (r->dp != a->debits_pending || r->dpo != a->debits_posted ||
            r->cp != a->credits_pending || r->cpo != a->credits_posted)
            fail_msg("account %zu: balances %llu %llu %llu %llu but its history adds up to "
                     "%llu %llu %llu %llu",
                     i, (unsigned long long)a->debits_pending,
                     (unsigned long long)a->debits_posted,
                     (unsigned long long)a->credits_pending,
                     (unsigned long long)a->credits_posted, (unsigned long long)r->dp,
                     (unsigned long long)r->dpo, (unsigned long long)r->cp,
                     (unsigned long long)r->cpo);
        idset_free(&r->open);
    }
    for (size_t k = 0; k < v.open.n; k++)
        open_sum += v.open.amounts[k];
    assert_int_equal(v.tot.debits_pending, dp);
    assert_int_equal(v.tot.debits_posted, dpo);
    assert_int_equal(v.tot.credits_pending, cp);
    assert_int_equal(v.tot.credits_posted, cpo);
    assert_int_equal(dp, cp);
    assert_int_equal(dpo, cpo);
    assert_int_equal(v.tot.pending_open, v.open.n);
    assert_int_equal(open_sum, dp);
    assert_int_equal(v.dl_rc, 0);
    if (v.open.n == 0)
        assert_int_equal(v.next_deadline, 0);
    if (out)
        *out = v.tot;
    idset_free(&v.open);
    free(v.r);
    free(v.s);
}

static void fx_open(struct fx *f, uint64_t map_size)
{
    memset(f, 0, sizeof *f);
    f->dir = vs_scratch_dir("vs_lstore");
    assert_non_null(f->dir);
    f->l = open_ledger(f->dir, map_size, false);
    f->now = BASE_NS;
}

static void fx_close(struct fx *f)
{
    check_invariant(f->l, NULL);
    vs_ledger_free(f->l);
    vs_scratch_free(f->dir);
}

/* ---- basics ---------------------------------------------------------------------- */

static void test_open_and_names(void **state)
{
    (void)state;
    vs_ledger *l = NULL;
    struct vs_ledger_opts o = {.path = NULL};
    assert_true(vs_ledger_open(&o, &l) < 0);
    assert_null(l);
    char *dir = vs_scratch_dir("vs_lstore");
    assert_non_null(dir);
    char *missing = vs_path(dir, "missing");
    o.path = missing;
    o.read_only = true;
    assert_true(vs_ledger_open(&o, &l) < 0);
    assert_null(l);
    vs_ledger_free(NULL);

    /* Every result code has its own name. */
    for (int i = 0; i < VS_XFER_RESULT_COUNT; i++) {
        const char *n = vs_transfer_result_name(i);
        assert_non_null(n);
        assert_true(n[0] != '\0');
        for (int k = 0; k < i; k++)
            assert_string_not_equal(n, vs_transfer_result_name(k));
    }
    for (int i = 0; i < VS_ACCT_RESULT_COUNT; i++) {
        const char *n = vs_account_result_name(i);
        assert_non_null(n);
        assert_true(n[0] != '\0');
        for (int k = 0; k < i; k++)
            assert_string_not_equal(n, vs_account_result_name(k));
    }

    /* A fresh store is empty and consistent. */
    l = open_ledger(dir, 0, false);
    struct vs_ledger_totals tot;
    check_invariant(l, &tot);
    assert_int_equal(tot.accounts, 0);
    assert_int_equal(tot.transfers, 0);
    assert_int_equal(tot.pending_open, 0);
    assert_true(vs_ledger_map_size(l) > 0);
    int dead = -1;
    assert_int_equal(vs_ledger_reader_check(l, &dead), 0);
    assert_true(dead >= 0);
    vs_ledger_free(l);
    free(missing);
    vs_scratch_free(dir);
}

struct now_q {
    uint64_t now;
};

static int now_apply(vs_ledger_txn *t, void *arg)
{
    ((struct now_q *)arg)->now = vs_ledger_txn_now(t);
    return 0;
}

static void test_txn_now(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    struct now_q q = {0};
    assert_int_equal(vs_ledger_write(f.l, BASE_NS + 5 * MS, now_apply, &q), 0);
    assert_int_equal(q.now, BASE_NS + 5 * MS);
    assert_int_equal(vs_ledger_write(f.l, BASE_NS + 9 * MS, now_apply, &q), 0);
    assert_int_equal(q.now, BASE_NS + 9 * MS);
    /* An earlier time is raised: the transaction time only increases. */
    assert_int_equal(vs_ledger_write(f.l, BASE_NS + 2 * MS, now_apply, &q), 0);
    assert_true(q.now > BASE_NS + 9 * MS);
    uint64_t prev = q.now;
    assert_int_equal(vs_ledger_write(f.l, prev, now_apply, &q), 0);
    assert_true(q.now > prev);
    /* Also across a reopen (the clock is stored). */
    prev = q.now;
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    assert_int_equal(vs_ledger_write(f.l, BASE_NS, now_apply, &q), 0);
    assert_true(q.now > prev);
    /* 0: the clock (CLOCK_REALTIME, which is later than BASE_NS). */
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    assert_int_equal(vs_ledger_write(f.l, 0, now_apply, &q), 0);
    clock_gettime(CLOCK_REALTIME, &b);
    uint64_t lo = (uint64_t)a.tv_sec * 1000000000ull + (uint64_t)a.tv_nsec;
    uint64_t hi = (uint64_t)b.tv_sec * 1000000000ull + (uint64_t)b.tv_nsec;
    assert_true(q.now >= lo && q.now <= hi);
    fx_close(&f);
}

/* ---- accounts ---------------------------------------------------------------------- */

static int count_cb(const struct vs_account *a, void *arg)
{
    struct snap *s = arg;
    (void)a;
    return ++s->n == 2 ? 7 : 0;
}

static int count_apply(vs_ledger_txn *t, void *arg)
{
    struct snap *s = arg;
    s->n = 0;
    return vs_ledger_accounts(t, count_cb, s);
}

static void test_accounts(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    bool rep = true;

    struct vs_account a = mkacct(1, 1, 0, "alice");
    a.code = 3;
    a.user_data_64 = 77;
    a.user_data_128[3] = 9;
    memcpy(a.owner, "op-1", 5);
    a.has_public_key = true;
    memset(a.public_key, 0x42, sizeof a.public_key);
    struct vs_account body = a; /* what is stored and compared */
    /* Balances and the timestamp are the store's: ignored on create. */
    a.debits_posted = 55;
    a.credits_pending = 3;
    a.timestamp = 12345;
    assert_acct(new_acct(&f, &a, &rep), VS_ACCT_OK);
    assert_false(rep);

    struct vs_account got = get_acct(&f, 1);
    assert_memory_equal(got.id, body.id, ID);
    assert_int_equal(got.ledger, 1);
    assert_int_equal(got.code, 3);
    assert_int_equal(got.flags, 0);
    assert_memory_equal(got.user_data_128, body.user_data_128, ID);
    assert_int_equal(got.user_data_64, 77);
    assert_string_equal(got.name, "alice");
    assert_string_equal(got.owner, "op-1");
    assert_true(got.has_public_key);
    assert_memory_equal(got.public_key, body.public_key, VS_LEDGER_KEY_LEN);
    assert_int_equal(got.debits_pending, 0);
    assert_int_equal(got.debits_posted, 0);
    assert_int_equal(got.credits_pending, 0);
    assert_int_equal(got.credits_posted, 0);
    assert_true(got.timestamp != 0 && got.timestamp != 12345);

    /* The same body again (balances ignored either way): OK, replayed. */
    rep = false;
    assert_acct(new_acct(&f, &a, &rep), VS_ACCT_OK);
    assert_true(rep);
    rep = false;
    assert_acct(new_acct(&f, &body, &rep), VS_ACCT_OK);
    assert_true(rep);

    /* A different body under the same id, field by field. */
    struct vs_account diff[9];
    for (size_t i = 0; i < 9; i++)
        diff[i] = body;
    diff[0].code = 4;
    diff[1].ledger = 2;
    diff[2].flags = VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    diff[3].user_data_64 = 78;
    diff[4].user_data_128[0] = 1;
    memcpy(diff[5].name, "alicf", 6);
    diff[6].owner[0] = 'O';
    diff[7].public_key[31] ^= 1;
    diff[8].has_public_key = false;
    memset(diff[8].public_key, 0, sizeof diff[8].public_key);
    for (size_t i = 0; i < 9; i++) {
        int r = new_acct(&f, &diff[i], NULL);
        if (r != VS_ACCT_EXISTS_WITH_DIFFERENT_BODY)
            fail_msg("account body change %zu: %s, want exists_with_different_body", i, aname(r));
    }
    got = get_acct(&f, 1);
    assert_int_equal(got.code, 3);
    assert_int_equal(got.ledger, 1);
    assert_string_equal(got.name, "alice");
    assert_int_equal(get_acct_by_name(&f, "alicf", NULL), -ENOENT);

    /* Each rule broken alone; nothing is created. */
    struct {
        struct vs_account a;
        int want;
    } cases[16];
    size_t nc = 0;
    cases[nc].a = mkacct(10, 1, 0, "");
    memset(cases[nc].a.id, 0, ID);
    cases[nc++].want = VS_ACCT_ID_MUST_NOT_BE_ZERO;
    cases[nc].a = mkacct(11, 0, 0, "");
    cases[nc++].want = VS_ACCT_LEDGER_MUST_NOT_BE_ZERO;
    cases[nc].a = mkacct(12, 1, 0, "");
    cases[nc].a.code = 0;
    cases[nc++].want = VS_ACCT_CODE_MUST_NOT_BE_ZERO;
    cases[nc].a = mkacct(13, 1,
                       VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                           VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS,
                       "");
    cases[nc++].want = VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
    cases[nc].a = mkacct(14, 1, 1u << 2, "");
    cases[nc++].want = VS_ACCT_FLAGS_UNKNOWN;
    cases[nc].a = mkacct(15, 1, 0x8000, "");
    cases[nc++].want = VS_ACCT_FLAGS_UNKNOWN;
    cases[nc].a = mkacct(16, 1, 0, "");
    memset(cases[nc].a.name, 'n', sizeof cases[nc].a.name); /* not NUL-terminated */
    cases[nc++].want = VS_ACCT_NAME_INVALID;
    cases[nc].a = mkacct(17, 1, 0, "bad\nname");
    cases[nc++].want = VS_ACCT_NAME_INVALID;
    cases[nc].a = mkacct(18, 1, 0, "x\x01y");
    cases[nc++].want = VS_ACCT_NAME_INVALID;
    cases[nc].a = mkacct(19, 1, 0, "alice");
    cases[nc++].want = VS_ACCT_NAME_TAKEN;
    for (size_t i = 0; i < nc; i++) {
        rep = true;
        int r = new_acct(&f, &cases[i].a, &rep);
        if (r != cases[i].want)
            fail_msg("account case %zu: %s, want %s", i, aname(r), aname(cases[i].want));
        assert_false(rep);
        struct acct_q q = {.rc = 1};
        memcpy(q.id, cases[i].a.id, ID);
        assert_int_equal(vs_ledger_read(f.l, acct_q_apply, &q), 0);
        assert_int_equal(q.rc, -ENOENT);
    }
    assert_int_equal(get_acct_by_name(&f, "alice", &got), 0);
    assert_memory_equal(got.id, body.id, ID);

    /* Empty names are allowed, twice, and are not in the name index. */
    struct vs_account e1 = mkacct(20, 1, 0, ""), e2 = mkacct(21, 1, 0, "");
    assert_acct(new_acct(&f, &e1, NULL), VS_ACCT_OK);
    assert_acct(new_acct(&f, &e2, NULL), VS_ACCT_OK);
    int rc = get_acct_by_name(&f, "", NULL);
    assert_true(rc == -ENOENT || rc == -EINVAL);
    /* Each balance flag alone is fine. */
    struct vs_account w = mkacct(22, 1, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, "wallet-22");
    struct vs_account r = mkacct(23, 2, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, "r23");
    assert_acct(new_acct(&f, &w, NULL), VS_ACCT_OK);
    assert_acct(new_acct(&f, &r, NULL), VS_ACCT_OK);
    assert_int_equal(get_acct(&f, 22).flags, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    assert_int_equal(get_acct(&f, 23).flags, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS);
    assert_int_equal(get_acct_by_name(&f, "r23", &got), 0);
    assert_int_equal(got.id[15], 23);
    /* Unknown ids and names. */
    assert_int_equal(get_acct_rc(&f, 999, NULL), -ENOENT);
    assert_int_equal(get_acct_by_name(&f, "bob", NULL), -ENOENT);

    /* Listing: only the five created, in id order. */
    struct snap *s = snapshot(f.l);
    assert_int_equal(s->n, 5);
    const uint64_t want[] = {1, 20, 21, 22, 23};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(s->a[i].id[15], want[i]);

    /* All of it survives a reopen, replays included. */
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    rep = false;
    assert_acct(new_acct(&f, &body, &rep), VS_ACCT_OK);
    assert_true(rep);
    assert_int_equal(get_acct_by_name(&f, "wallet-22", &got), 0);
    assert_int_equal(got.id[15], 22);
    /* "cb returns nonzero to stop (returned)". */
    rc = vs_ledger_read(f.l, count_apply, s);
    assert_int_equal(s->n, 2);
    if (rc != 7)
        fail_msg("vs_ledger_accounts stopped by a callback returning 7 returned %d", rc);
    free(s);
    fx_close(&f);
}

/* "An account id is bound once the account exists ...; a refused creation
 * binds nothing, since no account exists to hold it." */
static void test_account_refusal_binds_nothing(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    bool rep = true;
    struct vs_account a = mkacct(30, 0, 0, "carol");
    assert_acct(new_acct(&f, &a, &rep), VS_ACCT_LEDGER_MUST_NOT_BE_ZERO);
    assert_false(rep);
    rep = true;
    assert_acct(new_acct(&f, &a, &rep), VS_ACCT_LEDGER_MUST_NOT_BE_ZERO);
    assert_false(rep);
    assert_int_equal(get_acct_rc(&f, 30, NULL), -ENOENT);
    assert_int_equal(get_acct_by_name(&f, "carol", NULL), -ENOENT);
    a.ledger = 1; /* fixed, under the same id */
    rep = true;
    assert_acct(new_acct(&f, &a, &rep), VS_ACCT_OK);
    assert_false(rep);
    struct vs_account got;
    assert_int_equal(get_acct_by_name(&f, "carol", &got), 0);
    assert_int_equal(got.id[15], 30);
    /* A name refused as taken: the id stays free for another name. */
    struct vs_account d = mkacct(32, 1, 0, "carol");
    assert_acct(new_acct(&f, &d, &rep), VS_ACCT_NAME_TAKEN);
    assert_false(rep);
    assert_acct(new_acct(&f, &d, &rep), VS_ACCT_NAME_TAKEN);
    assert_false(rep);
    memcpy(d.name, "dave", 5);
    assert_acct(new_acct(&f, &d, &rep), VS_ACCT_OK);
    assert_false(rep);
    assert_acct(new_acct(&f, &d, &rep), VS_ACCT_OK);
    assert_true(rep);
    fx_close(&f);
}

/* ---- transfer rules ------------------------------------------------------------------ */

enum { A = 1, B, C, W, R, D, E };

/* A fresh store with the accounts a and b and, for n = 3, the wallet w
 * (debits must not exceed credits), all on ledger 1. */
static void fx_open_abw(struct fx *f, size_t n)
{
    const struct vs_account as[] = {mkacct(A, 1, 0, "a"), mkacct(B, 1, 0, "b"),
                                    mkacct(W, 1, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, "w")};
    fx_open(f, 0);
    new_accts(f, as, n);
}

struct xcase {
    struct vs_transfer x;
    int want;
    int line;
};

static void test_transfer_rules(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    const struct vs_account as[] = {
        mkacct(A, 1, 0, "a"),
        mkacct(B, 1, 0, "b"),
        mkacct(C, 2, 0, "c"),
        mkacct(W, 1, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, "w"),
        mkacct(R, 1, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, "r"),
        mkacct(D, 2, 0, "d"),
    };
    new_accts(&f, as, 6);

    /* 1 plain; 2 an open hold; 3 posted by 4; 5 voided by 6; 7 expired;
     * 8 funds W; 9 a hold on W's funds. */
    struct vs_transfer x = xfer(1, A, B, 1000, 0);
    ok(&f, &x);
    x = pend(2, A, B, 100, 0);
    ok(&f, &x);
    x = pend(3, A, B, 50, 0);
    ok(&f, &x);
    x = post(4, 3, 0);
    ok(&f, &x);
    x = pend(5, A, B, 40, 0);
    ok(&f, &x);
    x = voidp(6, 5);
    ok(&f, &x);
    x = pend(7, A, B, 30, 1);
    ok(&f, &x);
    uint64_t dl = 0;
    assert_int_equal(get_xfer(&f, 7, NULL, NULL, &dl), 0);
    assert_true(dl > f.now);
    tick_at(&f, dl);
    expect_state(&f, 7, VS_PENDING_EXPIRED);
    x = xfer(8, A, W, 100, 0);
    ok(&f, &x);
    x = pend(9, W, B, 60, 0);
    ok(&f, &x);
    expect_bal(&f, A, 100, 1150, 0, 0);
    expect_bal(&f, B, 0, 0, 160, 1050);
    expect_bal(&f, W, 60, 0, 0, 100);

    struct xcase cs[64];
    size_t n = 0;
    uint64_t id = 100;
#define CASE(expr, code)                                                                        \
    do {                                                                                        \
        assert_true(n < 64);                                                                    \
        cs[n].x = (expr);                                                                       \
        cs[n].want = (code);                                                                    \
        cs[n++].line = __LINE__;                                                                \
    } while (0)
#define LAST (cs[n - 1].x)

    CASE(xfer(id++, A, B, 1, 0), VS_XFER_ID_MUST_NOT_BE_ZERO);
    memset(LAST.id, 0, ID);
    CASE(xfer(id++, A, B, 1, VS_TRANSFER_PENDING | VS_TRANSFER_POST_PENDING),
         VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    mkid(LAST.pending_id, K_XFER, 2);
    CASE(resolve(id++, 2, 0, VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING),
         VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    CASE(resolve(id++, 2, 0, VS_TRANSFER_PENDING | VS_TRANSFER_VOID_PENDING),
         VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    CASE(xfer(id++, A, B, 1, 1u << 4), VS_XFER_FLAGS_UNKNOWN);
    CASE(xfer(id++, A, B, 1, 0x8000), VS_XFER_FLAGS_UNKNOWN);
    CASE(xfer(id++, A, B, 1, 0), VS_XFER_PENDING_ID_MUST_BE_ZERO);
    mkid(LAST.pending_id, K_XFER, 2);
    CASE(pend(id++, A, B, 1, 0), VS_XFER_PENDING_ID_MUST_BE_ZERO);
    mkid(LAST.pending_id, K_GHOST, 1);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO);
    memset(LAST.pending_id, 0, ID);
    CASE(voidp(id++, 2), VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO);
    memset(LAST.pending_id, 0, ID);
    CASE(post(id, id, 0), VS_XFER_PENDING_ID_MUST_BE_DIFFERENT);
    id++;
    CASE(voidp(id, id), VS_XFER_PENDING_ID_MUST_BE_DIFFERENT);
    id++;
    CASE(xfer(id++, A, B, 1, 0), VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    LAST.timeout_ms = 5;
    CASE(post(id++, 2, 0), VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    LAST.timeout_ms = 5;
    CASE(xfer(id++, 0, B, 1, 0), VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    CASE(pend(id++, 0, B, 1, 0), VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    CASE(xfer(id++, A, 0, 1, 0), VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
    CASE(xfer(id++, A, A, 1, 0), VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT);
    CASE(pend(id++, B, B, 1, 0), VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT);
    CASE(xfer(id++, A, B, 1, 0), VS_XFER_LEDGER_MUST_NOT_BE_ZERO);
    LAST.ledger = 0;
    CASE(xfer(id++, A, B, 1, 0), VS_XFER_CODE_MUST_NOT_BE_ZERO);
    LAST.code = 0;
    CASE(xfer(id++, A, B, 0, 0), VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    CASE(pend(id++, A, B, 0, 0), VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    CASE(xfer(id++, 99, B, 1, 0), VS_XFER_DEBIT_ACCOUNT_NOT_FOUND);
    CASE(xfer(id++, A, 99, 1, 0), VS_XFER_CREDIT_ACCOUNT_NOT_FOUND);
    CASE(pend(id++, A, 99, 1, 0), VS_XFER_CREDIT_ACCOUNT_NOT_FOUND);
    CASE(xfer(id++, A, C, 1, 0), VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
    CASE(xfer(id++, A, B, 1, 0), VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    LAST.ledger = 2;
    CASE(xfer(id++, C, D, 1, 0), VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_NOT_FOUND);
    mkid(LAST.pending_id, K_GHOST, 2);
    CASE(voidp(id++, 2), VS_XFER_PENDING_TRANSFER_NOT_FOUND);
    mkid(LAST.pending_id, K_XFER, 9999);
    CASE(post(id++, 1, 0), VS_XFER_PENDING_TRANSFER_NOT_PENDING);
    CASE(voidp(id++, 4), VS_XFER_PENDING_TRANSFER_NOT_PENDING);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS);
    mkid(LAST.debit_account_id, K_ACCT, W);
    mkid(LAST.credit_account_id, K_ACCT, B);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS);
    mkid(LAST.debit_account_id, K_ACCT, A);
    mkid(LAST.credit_account_id, K_ACCT, W);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS);
    mkid(LAST.debit_account_id, K_ACCT, B);
    mkid(LAST.credit_account_id, K_ACCT, A);
    CASE(voidp(id++, 2), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS);
    mkid(LAST.debit_account_id, K_ACCT, R);
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
    LAST.ledger = 2;
    CASE(voidp(id++, 2), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
    LAST.ledger = 2;
    CASE(post(id++, 2, 0), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    LAST.code = 2;
    CASE(voidp(id++, 2), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    LAST.code = 9;
    CASE(post(id++, 3, 0), VS_XFER_PENDING_TRANSFER_ALREADY_POSTED);
    CASE(voidp(id++, 3), VS_XFER_PENDING_TRANSFER_ALREADY_POSTED);
    CASE(post(id++, 5, 0), VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED);
    CASE(voidp(id++, 5), VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED);
    CASE(post(id++, 7, 0), VS_XFER_PENDING_TRANSFER_EXPIRED);
    CASE(voidp(id++, 7), VS_XFER_PENDING_TRANSFER_EXPIRED);
    CASE(post(id++, 2, 101), VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
    CASE(pend(id++, A, B, 1, UINT64_MAX), VS_XFER_OVERFLOWS_TIMEOUT);
    /* 1.8e19 ns fits in 64 bits, but not added to the time (1.7e18). */
    CASE(pend(id++, A, B, 1, 18000000000000ull), VS_XFER_OVERFLOWS_TIMEOUT);
    /* W has 100 in credits and 60 on hold: 50 more exceeds, as does a hold of 41. */
    CASE(xfer(id++, W, B, 50, 0), VS_XFER_EXCEEDS_CREDITS);
    CASE(pend(id++, W, B, 41, 0), VS_XFER_EXCEEDS_CREDITS);
    /* R has no debits: no credit fits, posted or on hold. */
    CASE(xfer(id++, A, R, 1, 0), VS_XFER_EXCEEDS_DEBITS);
    CASE(pend(id++, A, R, 1, 0), VS_XFER_EXCEEDS_DEBITS);
#undef CASE
#undef LAST

    for (size_t i = 0; i < n; i++) {
        struct snap *before = snapshot(f.l);
        bool rep = true;
        int r = one(&f, &cs[i].x, &rep);
        if (r != cs[i].want)
            fail_msg("case at line %d: %s (%d), want %s (%d)", cs[i].line, xname(r), r,
                     xname(cs[i].want), cs[i].want);
        if (rep)
            fail_msg("case at line %d: replayed on the first call", cs[i].line);
        struct snap *after = snapshot(f.l);
        char what[64];
        snprintf(what, sizeof what, "case at line %d", cs[i].line);
        assert_same_accounts(before, after, what);
        free(before);
        free(after);
        if (get_xfer_id(&f, cs[i].x.id, NULL, NULL, NULL) != -ENOENT)
            fail_msg("case at line %d: the rejected transfer is stored", cs[i].line);
    }
    expect_state(&f, 2, VS_PENDING_OPEN);
    expect_state(&f, 9, VS_PENDING_OPEN);
    check_invariant(f.l, NULL);

    /* The limits themselves are fine: W may spend exactly its credits. */
    x = xfer(id++, W, B, 40, 0);
    ok(&f, &x);
    expect_bal(&f, W, 60, 40, 0, 100);
    x = xfer(id++, W, B, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_EXCEEDS_CREDITS);
    x = voidp(id++, 9); /* the hold released: 60 to spend */
    ok(&f, &x);
    x = pend(id++, W, B, 61, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_EXCEEDS_CREDITS);
    x = pend(id++, W, B, 60, 0);
    ok(&f, &x);
    expect_bal(&f, W, 60, 40, 0, 100);
    /* R takes credits up to its debits, holds included. */
    x = xfer(id++, R, A, 10, 0);
    ok(&f, &x);
    x = pend(id++, A, R, 4, 0);
    ok(&f, &x);
    x = xfer(id++, A, R, 7, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_EXCEEDS_DEBITS);
    x = xfer(id++, A, R, 6, 0);
    ok(&f, &x);
    expect_bal(&f, R, 0, 10, 4, 6);
    /* Explicit accounts, ledger and code that match the pending transfer. */
    x = post(id, 2, 0);
    mkid(x.debit_account_id, K_ACCT, A);
    mkid(x.credit_account_id, K_ACCT, B);
    x.ledger = 1;
    x.code = 1;
    ok(&f, &x);
    expect_state(&f, 2, VS_PENDING_POSTED);
    fx_close(&f);
}

/* "For POST/VOID the debit and credit accounts, ledger and code may be zero
 * (taken from the pending transfer); when set they must match it." */
static void test_resolve_code_must_match(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 2);
    struct vs_transfer x = pend(1, A, B, 100, 0);
    x.code = 5;
    ok(&f, &x);
    x = post(2, 1, 0);
    x.code = 6;
    assert_xfer(one(&f, &x, NULL), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    x = voidp(3, 1);
    x.code = 6;
    assert_xfer(one(&f, &x, NULL), VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
    expect_state(&f, 1, VS_PENDING_OPEN);
    expect_bal(&f, A, 100, 0, 0, 0);
    x = post(4, 1, 0);
    x.code = 5;
    ok(&f, &x);
    struct vs_transfer got;
    assert_int_equal(get_xfer(&f, 4, &got, NULL, NULL), 0);
    assert_int_equal(got.code, 5);
    /* Left zero, the code is the hold's. */
    x = pend(5, A, B, 10, 0);
    x.code = 7;
    ok(&f, &x);
    x = voidp(6, 5);
    ok(&f, &x);
    assert_int_equal(get_xfer(&f, 6, &got, NULL, NULL), 0);
    assert_int_equal(got.code, 7);
    fx_close(&f);
}

static void test_overflows(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    enum { O1 = 1, O2, O3, O4, S, WW, X, Y, RR, S2, S3, S4 };
    const struct vs_account as[] = {
        mkacct(O1, 1, 0, ""), mkacct(O2, 1, 0, ""), mkacct(O3, 1, 0, ""), mkacct(O4, 1, 0, ""),
        mkacct(S, 1, 0, ""),  mkacct(WW, 1, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, ""),
        mkacct(X, 1, 0, ""),  mkacct(Y, 1, 0, ""),
        mkacct(RR, 1, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, ""),
        mkacct(S2, 1, 0, ""), mkacct(S3, 1, 0, ""), mkacct(S4, 1, 0, ""),
    };
    new_accts(&f, as, 12);
    struct vs_transfer x = xfer(1, O1, O2, UINT64_MAX, 0);
    ok(&f, &x);
    x = xfer(2, O1, O3, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_OVERFLOWS_DEBITS);
    x = xfer(3, O3, O2, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_OVERFLOWS_CREDITS);
    x = pend(4, O1, O3, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_OVERFLOWS_DEBITS);
    x = pend(5, O3, O2, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_OVERFLOWS_CREDITS);
    expect_bal(&f, O1, 0, UINT64_MAX, 0, 0);
    expect_bal(&f, O2, 0, 0, 0, UINT64_MAX);
    expect_bal(&f, O3, 0, 0, 0, 0);

    /* A hold and a posted amount together beyond 64 bits. */
    x = pend(6, O3, O4, UINT64_MAX, 0);
    ok(&f, &x);
    x = xfer(7, O3, O4, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_OVERFLOWS_DEBITS);
    x = xfer(8, O4, O3, 1, 0);
    int r = one(&f, &x, NULL);
    assert_xfer(r, VS_XFER_OK); /* O4: credits pending MAX, debits none */

    /* A limited wallet with MAX credits and a hold of MAX-1: 2 more must not
     * wrap around to pass the limit; 1 more fits exactly. */
    x = xfer(9, S, WW, UINT64_MAX, 0);
    ok(&f, &x);
    x = pend(10, WW, X, UINT64_MAX - 1, 0);
    ok(&f, &x);
    x = xfer(11, WW, Y, 2, 0);
    r = one(&f, &x, NULL);
    if (r != VS_XFER_OVERFLOWS_DEBITS && r != VS_XFER_EXCEEDS_CREDITS)
        fail_msg("wallet past its limit by wrap-around: %s", xname(r));
    x = xfer(12, WW, Y, 1, 0);
    ok(&f, &x);
    expect_bal(&f, WW, UINT64_MAX - 1, 1, 0, UINT64_MAX);
    /* The mirror: RR with MAX debits and MAX-1 credits on hold. */
    x = xfer(13, RR, S2, UINT64_MAX, 0);
    ok(&f, &x);
    x = pend(14, S3, RR, UINT64_MAX - 1, 0);
    ok(&f, &x);
    x = xfer(15, S4, RR, 2, 0);
    r = one(&f, &x, NULL);
    if (r != VS_XFER_OVERFLOWS_CREDITS && r != VS_XFER_EXCEEDS_DEBITS)
        fail_msg("mirror past its limit by wrap-around: %s", xname(r));
    x = xfer(16, S4, RR, 1, 0);
    ok(&f, &x);
    expect_bal(&f, RR, 0, UINT64_MAX, UINT64_MAX - 1, 1);
    /* Posting a hold of MAX-1 in full keeps every sum in range. */
    x = post(17, 10, 0);
    ok(&f, &x);
    expect_bal(&f, WW, 0, UINT64_MAX, 0, UINT64_MAX);
    fx_close(&f);
}

/* ---- two-phase and expiry ------------------------------------------------------------ */

static void test_two_phase(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 3);

    /* A hold reserves. */
    struct vs_transfer x = pend(1, A, B, 100, 0);
    ok(&f, &x);
    expect_bal(&f, A, 100, 0, 0, 0);
    expect_bal(&f, B, 0, 0, 100, 0);
    struct vs_transfer got;
    enum vs_pending_state st;
    uint64_t dl = 1;
    assert_int_equal(get_xfer(&f, 1, &got, &st, &dl), 0);
    assert_int_equal(st, VS_PENDING_OPEN);
    assert_int_equal(dl, 0);
    assert_int_equal(got.amount, 100);
    assert_int_equal(got.flags, VS_TRANSFER_PENDING);
    assert_true(got.timestamp > 0);

    /* A full post (amount 0). */
    x = post(2, 1, 0);
    ok(&f, &x);
    expect_bal(&f, A, 0, 100, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 100);
    expect_state(&f, 1, VS_PENDING_POSTED);
    assert_int_equal(get_xfer(&f, 2, &got, &st, &dl), 0);
    assert_int_equal(st, VS_PENDING_NONE);
    assert_int_equal(dl, 0);
    assert_int_equal(got.amount, 100); /* what it posted */
    uint8_t id[ID];
    mkid(id, K_ACCT, A);
    assert_memory_equal(got.debit_account_id, id, ID);
    mkid(id, K_ACCT, B);
    assert_memory_equal(got.credit_account_id, id, ID);
    mkid(id, K_XFER, 1);
    assert_memory_equal(got.pending_id, id, ID);
    assert_int_equal(got.ledger, 1);
    assert_int_equal(got.code, 1);
    assert_true(got.flags & VS_TRANSFER_POST_PENDING);

    /* A partial post: the rest is released. */
    x = pend(3, A, B, 100, 0);
    ok(&f, &x);
    x = post(4, 3, 30);
    ok(&f, &x);
    expect_bal(&f, A, 0, 130, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 130);
    expect_state(&f, 3, VS_PENDING_POSTED);
    assert_int_equal(get_xfer(&f, 4, &got, NULL, NULL), 0);
    assert_int_equal(got.amount, 30);
    /* It resolves once. */
    x = post(5, 3, 10);
    assert_xfer(one(&f, &x, NULL), VS_XFER_PENDING_TRANSFER_ALREADY_POSTED);
    expect_bal(&f, A, 0, 130, 0, 0);

    /* Posting exactly the pending amount. */
    x = pend(6, A, B, 25, 0);
    ok(&f, &x);
    x = post(7, 6, 25);
    ok(&f, &x);
    expect_bal(&f, A, 0, 155, 0, 0);

    /* A void releases everything. */
    x = pend(8, A, B, 70, 0);
    ok(&f, &x);
    expect_bal(&f, A, 70, 155, 0, 0);
    x = voidp(9, 8);
    ok(&f, &x);
    expect_bal(&f, A, 0, 155, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 155);
    expect_state(&f, 8, VS_PENDING_VOIDED);

    /* Holds count against a limited wallet until voided or posted in part. */
    x = xfer(10, A, W, 50, 0);
    ok(&f, &x);
    x = pend(11, W, B, 50, 0);
    ok(&f, &x);
    x = xfer(12, W, B, 1, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_EXCEEDS_CREDITS);
    x = post(13, 11, 20);
    ok(&f, &x);
    expect_bal(&f, W, 0, 20, 0, 50);
    x = xfer(14, W, B, 30, 0);
    ok(&f, &x);
    expect_bal(&f, W, 0, 50, 0, 50);

    /* A hold and its post in the same call. */
    struct vs_transfer xs[2] = {pend(15, A, B, 9, 0), post(16, 15, 4)};
    int res[2];
    many(&f, xs, 2, res, NULL);
    assert_xfer(res[0], VS_XFER_OK);
    assert_xfer(res[1], VS_XFER_OK);
    expect_state(&f, 15, VS_PENDING_POSTED);
    expect_bal(&f, A, 0, 209, 0, 0);
    fx_close(&f);
}

struct exp_log {
    int calls;
    uint8_t ids[8][ID];
    uint64_t txn_now[8];
};

static int on_expired(vs_ledger_txn *t, const struct vs_transfer *x, void *arg)
{
    struct exp_log *g = arg;
    if (g->calls < 8) {
        memcpy(g->ids[g->calls], x->id, ID);
        g->txn_now[g->calls] = vs_ledger_txn_now(t);
    }
    g->calls++;
    /* The callback runs inside the write transaction. */
    return vs_ledger_kv_put(t, VS_LTABLE_TIMERS, x->id, ID, "expired", 7);
}

struct dl_q {
    uint64_t dl;
    int rc;
};

static int dl_apply(vs_ledger_txn *t, void *arg)
{
    struct dl_q *q = arg;
    q->dl = 77;
    q->rc = vs_ledger_next_deadline(t, &q->dl);
    return 0;
}

static uint64_t next_deadline(struct fx *f)
{
    struct dl_q q = {0};
    assert_int_equal(vs_ledger_read(f->l, dl_apply, &q), 0);
    assert_int_equal(q.rc, 0);
    return q.dl;
}

struct kv_q {
    enum vs_ledger_table tb;
    const void *key;
    size_t klen;
    uint8_t val[256];
    size_t vlen;
    int rc;
};

static int kv_get_apply(vs_ledger_txn *t, void *arg)
{
    struct kv_q *q = arg;
    const uint8_t *v = NULL;
    q->vlen = 0;
    q->rc = vs_ledger_kv_get(t, q->tb, q->key, q->klen, &v, &q->vlen);
    if (q->rc == 0) {
        assert_true(q->vlen <= sizeof q->val);
        memcpy(q->val, v, q->vlen);
    }
    return 0;
}

static int kv_get(vs_ledger *l, enum vs_ledger_table tb, const void *key, size_t klen,
                  struct kv_q *q)
{
    memset(q, 0, sizeof *q);
    q->tb = tb;
    q->key = key;
    q->klen = klen;
    assert_int_equal(vs_ledger_read(l, kv_get_apply, q), 0);
    return q->rc;
}

static void test_expiry(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 3); /* creating accounts expires nothing */
    struct exp_log log = {0};
    vs_ledger_on_expired(f.l, on_expired, &log);
    struct vs_transfer x = xfer(1, A, W, 100, 0);
    ok(&f, &x);
    assert_int_equal(next_deadline(&f), 0);

    /* At T: E (10 ms), F (no timeout), G (1000 ms), all on W. */
    const uint64_t T = BASE_NS + 1000 * MS;
    struct vs_transfer xs[3] = {pend(2, W, B, 40, 10), pend(3, W, B, 10, 0),
                                pend(4, W, B, 20, 1000)};
    int res[3];
    bool rep[3];
    many_at(&f, T, xs, 3, res, rep);
    for (int i = 0; i < 3; i++)
        assert_xfer(res[i], VS_XFER_OK);
    expect_bal(&f, W, 70, 0, 0, 100);
    struct vs_transfer got;
    enum vs_pending_state st;
    uint64_t dE = 0, dF = 1, dG = 0;
    assert_int_equal(get_xfer(&f, 2, &got, &st, &dE), 0);
    assert_int_equal(st, VS_PENDING_OPEN);
    assert_int_equal(got.timeout_ms, 10);
    /* The deadline is the transaction time plus the timeout (at most the
     * transfer's own timestamp plus the timeout). */
    if (dE < T + 10 * MS || dE > got.timestamp + 10 * MS || got.timestamp < T)
        fail_msg("deadline %llu for a 10 ms hold created at %llu (timestamp %llu)",
                 (unsigned long long)dE, (unsigned long long)T,
                 (unsigned long long)got.timestamp);
    assert_int_equal(get_xfer(&f, 3, NULL, &st, &dF), 0);
    assert_int_equal(dF, 0);
    assert_int_equal(get_xfer(&f, 4, NULL, &st, &dG), 0);
    assert_true(dG >= T + 1000 * MS && dG < T + 1001 * MS);
    assert_int_equal(next_deadline(&f), dE);

    /* Just before the deadline nothing expires. */
    tick_at(&f, dE - 2);
    assert_int_equal(log.calls, 0);
    expect_state(&f, 2, VS_PENDING_OPEN);
    expect_bal(&f, W, 70, 0, 0, 100);
    /* W's limit still counts E: 30 is all it can spend. */
    x = xfer(5, W, B, 31, 0);
    assert_xfer(one_at(&f, dE - 1, &x, NULL), VS_XFER_EXCEEDS_CREDITS);

    /* The first write at the deadline expires it, once, before its batch. */
    tick_at(&f, dE);
    assert_int_equal(log.calls, 1);
    mkid(got.id, K_XFER, 2);
    assert_memory_equal(log.ids[0], got.id, ID);
    assert_true(log.txn_now[0] >= dE);
    expect_state(&f, 2, VS_PENDING_EXPIRED);
    expect_bal(&f, W, 30, 0, 0, 100);
    expect_bal(&f, B, 0, 0, 30, 0);
    assert_int_equal(next_deadline(&f), dG);
    struct kv_q q;
    assert_int_equal(kv_get(f.l, VS_LTABLE_TIMERS, got.id, ID, &q), 0);
    assert_int_equal(q.vlen, 7);
    assert_memory_equal(q.val, "expired", 7);
    /* A later post or void finds it expired; it is not expired again. */
    x = post(6, 2, 0);
    assert_xfer(one(&f, &x, NULL), VS_XFER_PENDING_TRANSFER_EXPIRED);
    x = voidp(7, 2);
    assert_xfer(one(&f, &x, NULL), VS_XFER_PENDING_TRANSFER_EXPIRED);
    x = xfer(8, W, B, 70, 0); /* the released 40 can be spent */
    ok(&f, &x);
    assert_int_equal(log.calls, 1);
    expect_bal(&f, W, 30, 70, 0, 100);

    /* Expiry runs before the batch: a post in the first write past G's
     * deadline finds G expired. */
    x = post(9, 4, 0);
    assert_xfer(one_at(&f, dG + 5 * MS, &x, NULL), VS_XFER_PENDING_TRANSFER_EXPIRED);
    assert_int_equal(log.calls, 2);
    mkid(got.id, K_XFER, 4);
    assert_memory_equal(log.ids[1], got.id, ID);
    expect_state(&f, 4, VS_PENDING_EXPIRED);
    expect_state(&f, 3, VS_PENDING_OPEN); /* no timeout: never expires */
    expect_bal(&f, W, 10, 70, 0, 100);
    assert_int_equal(next_deadline(&f), 0);

    /* A hold resolved before its deadline does not expire. */
    uint64_t t2 = f.now + 10 * MS;
    x = pend(10, A, B, 5, 3);
    assert_xfer(one_at(&f, t2, &x, NULL), VS_XFER_OK);
    x = voidp(11, 10);
    assert_xfer(one_at(&f, t2 + 1 * MS, &x, NULL), VS_XFER_OK);
    assert_int_equal(next_deadline(&f), 0);
    tick_at(&f, t2 + 100 * MS);
    assert_int_equal(log.calls, 2);
    expect_state(&f, 10, VS_PENDING_VOIDED);

    /* Several due at once: all expire in one write, each once; and a hold
     * whose deadline passes while the store is closed expires on reopen's
     * first write. */
    uint64_t t3 = f.now + 10 * MS;
    struct vs_transfer ys[3] = {pend(12, A, B, 1, 5), pend(13, A, B, 2, 6), pend(14, A, B, 4, 7)};
    many_at(&f, t3, ys, 3, res, NULL);
    for (int i = 0; i < 3; i++)
        assert_xfer(res[i], VS_XFER_OK);
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    vs_ledger_on_expired(f.l, on_expired, &log);
    tick_at(&f, t3 + 50 * MS);
    assert_int_equal(log.calls, 5);
    expect_state(&f, 12, VS_PENDING_EXPIRED);
    expect_state(&f, 13, VS_PENDING_EXPIRED);
    expect_state(&f, 14, VS_PENDING_EXPIRED);
    expect_bal(&f, A, 0, 100, 0, 0);
    tick_at(&f, t3 + 100 * MS);
    assert_int_equal(log.calls, 5);
    fx_close(&f);
}

/* ---- linked chains ----------------------------------------------------------------------- */

static void test_linked(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 3);
    const uint16_t L = VS_TRANSFER_LINKED;
    int res[8];
    bool rep[8];

    /* A chain of three whose third fails on what the first two did; the
     * transfer after it still applies. */
    struct vs_transfer c1[4] = {xfer(1, A, W, 10, L), xfer(2, W, B, 5, L), xfer(3, W, B, 6, 0),
                                xfer(4, A, B, 1, 0)};
    many(&f, c1, 4, res, rep);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[2], VS_XFER_EXCEEDS_CREDITS);
    assert_xfer(res[3], VS_XFER_OK);
    expect_bal(&f, A, 0, 1, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 1);
    expect_bal(&f, W, 0, 0, 0, 0);
    expect_absent(&f, 1);
    expect_absent(&f, 2);
    expect_absent(&f, 3);
    /* Each member's id is bound to its first outcome: the same chain again,
     * even once it could succeed, replays [failed, failed, own error]. */
    struct vs_transfer fund = xfer(30, A, W, 100, 0);
    ok(&f, &fund);
    many(&f, c1, 3, res, rep);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[2], VS_XFER_EXCEEDS_CREDITS);
    assert_true(rep[0] && rep[1] && rep[2]);
    expect_bal(&f, W, 0, 0, 0, 100);
    expect_absent(&f, 1);

    /* The first fails: [own error, failed, failed]. */
    struct vs_transfer c2[3] = {xfer(5, A, B, 0, L), xfer(6, A, B, 1, L), xfer(7, A, B, 1, 0)};
    many(&f, c2, 3, res, NULL);
    assert_xfer(res[0], VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    assert_xfer(res[1], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[2], VS_XFER_LINKED_EVENT_FAILED);
    expect_bal(&f, A, 0, 101, 0, 0);

    /* A chain still open at the end of the call. */
    struct vs_transfer c3[3] = {xfer(8, A, B, 2, 0), xfer(9, A, B, 3, L), xfer(10, A, B, 4, L)};
    many(&f, c3, 3, res, NULL);
    assert_xfer(res[0], VS_XFER_OK);
    assert_xfer(res[1], VS_XFER_LINKED_EVENT_CHAIN_OPEN);
    assert_xfer(res[2], VS_XFER_LINKED_EVENT_CHAIN_OPEN);
    expect_bal(&f, A, 0, 103, 0, 0);
    expect_absent(&f, 9);
    expect_absent(&f, 10);
    struct vs_transfer c4[1] = {xfer(11, A, B, 1, L)};
    many(&f, c4, 1, res, NULL);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_CHAIN_OPEN);
    expect_absent(&f, 11);

    /* A successful chain: W is funded and spends in the same chain. */
    struct vs_transfer c5[3] = {xfer(12, A, W, 10, L), xfer(13, W, B, 5, L), xfer(14, W, B, 5, 0)};
    many(&f, c5, 3, res, rep);
    for (int i = 0; i < 3; i++) {
        assert_xfer(res[i], VS_XFER_OK);
        assert_false(rep[i]);
    }
    expect_bal(&f, W, 0, 10, 0, 110);
    expect_bal(&f, A, 0, 113, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 13);

    /* A hold and its post in a chain that fails: neither exists after. */
    struct vs_transfer c6[3] = {pend(15, A, B, 7, 0), post(16, 15, 0), xfer(17, A, B, 0, 0)};
    c6[0].flags |= L;
    c6[1].flags |= L;
    many(&f, c6, 3, res, NULL);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[2], VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    expect_absent(&f, 15);
    expect_absent(&f, 16);
    expect_bal(&f, A, 0, 113, 0, 0);

    /* A post of an existing hold in a failing chain: the hold stays open. */
    struct vs_transfer h = pend(18, A, B, 9, 0);
    ok(&f, &h);
    struct vs_transfer c7[2] = {post(19, 18, 0), xfer(20, A, 99, 1, 0)};
    c7[0].flags |= L;
    many(&f, c7, 2, res, NULL);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_CREDIT_ACCOUNT_NOT_FOUND);
    expect_state(&f, 18, VS_PENDING_OPEN);
    expect_bal(&f, A, 9, 113, 0, 0);
    expect_bal(&f, B, 0, 0, 9, 13);

    /* Two chains in one call: the first fails, the second commits. */
    struct vs_transfer c8[4] = {xfer(21, A, B, 1, L), xfer(22, B, B, 1, 0), xfer(23, A, B, 1, L),
                                voidp(24, 18)};
    many(&f, c8, 4, res, NULL);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT);
    assert_xfer(res[2], VS_XFER_OK);
    assert_xfer(res[3], VS_XFER_OK);
    expect_state(&f, 18, VS_PENDING_VOIDED);
    expect_bal(&f, A, 0, 114, 0, 0);
    expect_bal(&f, B, 0, 0, 0, 14);

    /* A chain that ends with the retry of a committed transfer (c5[2]):
     * when the chain fails, the transfer and its effects stay (its own
     * result: its first outcome, or the chain's failure - the header gives
     * no precedence); when the chain commits, the retry is a replay. */
    struct vs_transfer c9[2] = {xfer(25, A, B, 0, L), c5[2]};
    many(&f, c9, 2, res, rep);
    assert_xfer(res[0], VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    if (res[1] != VS_XFER_LINKED_EVENT_FAILED && !(res[1] == VS_XFER_OK && rep[1]))
        fail_msg("a committed transfer retried at the end of a failed chain: %s", xname(res[1]));
    expect_state(&f, 14, VS_PENDING_NONE);
    expect_bal(&f, W, 0, 10, 0, 110);
    expect_bal(&f, A, 0, 114, 0, 0);
    struct vs_transfer c9b[2] = {xfer(26, A, B, 1, L), c5[2]};
    many(&f, c9b, 2, res, rep);
    assert_xfer(res[0], VS_XFER_OK);
    assert_xfer(res[1], VS_XFER_OK);
    assert_false(rep[0]);
    assert_true(rep[1]);
    expect_bal(&f, W, 0, 10, 0, 110);
    expect_bal(&f, A, 0, 115, 0, 0);

    /* A hold with a timeout, posted in a chain that fails: it stays open,
     * keeps its deadline and still expires. */
    uint64_t t0 = f.now + MS;
    struct vs_transfer hp = pend(28, A, B, 3, 9);
    assert_xfer(one_at(&f, t0, &hp, NULL), VS_XFER_OK);
    uint64_t dl = 0;
    assert_int_equal(get_xfer(&f, 28, NULL, NULL, &dl), 0);
    assert_int_equal(next_deadline(&f), dl);
    struct vs_transfer c10[2] = {post(31, 28, 1), xfer(32, A, 99, 1, 0)};
    c10[0].flags |= L;
    many_at(&f, t0 + MS, c10, 2, res, NULL);
    assert_xfer(res[0], VS_XFER_LINKED_EVENT_FAILED);
    assert_xfer(res[1], VS_XFER_CREDIT_ACCOUNT_NOT_FOUND);
    expect_state(&f, 28, VS_PENDING_OPEN);
    assert_int_equal(next_deadline(&f), dl);
    expect_bal(&f, A, 3, 115, 0, 0);
    tick_at(&f, dl);
    expect_state(&f, 28, VS_PENDING_EXPIRED);
    expect_bal(&f, A, 0, 115, 0, 0);
    assert_int_equal(next_deadline(&f), 0);
    fx_close(&f);
}

/* A chain long enough that the accounts it touches outgrow any small
 * per-transaction cache, failing at its very end and then committing. */
static void test_long_chain(void **state)
{
    (void)state;
    enum { N = 1500 };
    struct fx f;
    fx_open(&f, 0);
    struct vs_account *as = calloc(N, sizeof *as);
    struct vs_transfer *xs = calloc(N, sizeof *xs);
    int *ares = calloc(N, sizeof *ares), *res = calloc(N, sizeof *res);
    bool *rep = calloc(N, sizeof *rep);
    assert_true(as && xs && ares && res && rep);
    for (uint64_t a = 0; a < N; a++)
        as[a] = mkacct(a + 1, 1, 0, "");
    struct job j = {.accts = as, .na = N, .ares = ares};
    run_job(&f, 0, &j);
    for (size_t i = 0; i < N; i++)
        assert_acct(ares[i], VS_ACCT_OK);

    /* A fresh handle, so that whatever it caches grows during the chain. */
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    /* 1 -> 2 -> ... -> N, each linked to the next; the last one fails. */
    for (uint64_t i = 0; i + 1 < N; i++)
        xs[i] = xfer(1 + i, 1 + i, 2 + i, 7, VS_TRANSFER_LINKED);
    xs[N - 1] = xfer(N, N, 1, 0, 0);
    many(&f, xs, N, res, rep);
    for (size_t i = 0; i + 1 < N; i++)
        if (res[i] != VS_XFER_LINKED_EVENT_FAILED)
            fail_msg("member %zu: %s", i, xname(res[i]));
    assert_xfer(res[N - 1], VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    struct vs_ledger_totals t;
    check_invariant(f.l, &t);
    assert_int_equal(t.transfers, 0);
    assert_int_equal(t.debits_posted, 0);
    expect_bal(&f, 1, 0, 0, 0, 0);
    expect_bal(&f, N / 2, 0, 0, 0, 0);

    /* The same with new ids and a valid last member: all of it commits. */
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    for (uint64_t i = 0; i < N; i++)
        mkid(xs[i].id, K_XFER, 10000 + i);
    xs[N - 1].amount = 7;
    many(&f, xs, N, res, rep);
    for (size_t i = 0; i < N; i++)
        if (res[i] != VS_XFER_OK || rep[i])
            fail_msg("member %zu: %s", i, xname(res[i]));
    check_invariant(f.l, &t);
    assert_int_equal(t.transfers, N);
    assert_int_equal(t.debits_posted, 7 * N);
    for (uint64_t a = 1; a <= N; a += 149)
        expect_bal(&f, a, 0, 7, 0, 7);
    free(as);
    free(xs);
    free(ares);
    free(res);
    free(rep);
    fx_close(&f);
}

/* ---- idempotency -------------------------------------------------------------------------- */

static void test_idempotency(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 3);
    bool rep = true;

    /* Success, replayed. */
    struct vs_transfer x1 = xfer(1, A, B, 10, 0);
    x1.user_data_64 = 5;
    ok(&f, &x1);
    assert_xfer(one(&f, &x1, &rep), VS_XFER_OK);
    assert_true(rep);
    expect_bal(&f, A, 0, 10, 0, 0);
    struct vs_transfer diff[4] = {x1, x1, x1, x1};
    diff[0].amount = 11;
    diff[1].user_data_64 = 6;
    diff[2].flags = VS_TRANSFER_PENDING;
    mkid(diff[3].credit_account_id, K_ACCT, W);
    for (size_t i = 0; i < 4; i++) {
        int r = one(&f, &diff[i], NULL);
        if (r != VS_XFER_EXISTS_WITH_DIFFERENT_BODY)
            fail_msg("transfer body change %zu: %s, want exists_with_different_body", i, xname(r));
    }
    expect_bal(&f, A, 0, 10, 0, 0);
    expect_bal(&f, W, 0, 0, 0, 0);
    struct vs_transfer got;
    assert_int_equal(get_xfer(&f, 1, &got, NULL, NULL), 0);
    assert_int_equal(got.amount, 10);
    assert_int_equal(got.user_data_64, 5);

    /* Failure, replayed even once it would succeed. */
    struct vs_transfer x2 = xfer(2, W, B, 5, 0);
    assert_xfer(one(&f, &x2, &rep), VS_XFER_EXCEEDS_CREDITS);
    assert_false(rep);
    struct vs_transfer fund = xfer(3, A, W, 100, 0);
    ok(&f, &fund);
    assert_xfer(one(&f, &x2, &rep), VS_XFER_EXCEEDS_CREDITS);
    assert_true(rep);
    expect_bal(&f, W, 0, 0, 0, 100);
    struct vs_transfer y = x2;
    y.amount = 4;
    assert_xfer(one(&f, &y, NULL), VS_XFER_EXISTS_WITH_DIFFERENT_BODY);
    expect_bal(&f, W, 0, 0, 0, 100);
    expect_absent(&f, 2);

    /* NOT_FOUND stays the outcome once the hold it names exists. */
    struct vs_transfer x5 = post(5, 50, 0);
    assert_xfer(one(&f, &x5, &rep), VS_XFER_PENDING_TRANSFER_NOT_FOUND);
    struct vs_transfer p50 = pend(50, A, B, 3, 0);
    ok(&f, &p50);
    assert_xfer(one(&f, &x5, &rep), VS_XFER_PENDING_TRANSFER_NOT_FOUND);
    assert_true(rep);
    expect_state(&f, 50, VS_PENDING_OPEN);

    /* A hold and its post, each retried. */
    struct vs_transfer x6 = pend(6, A, B, 20, 0), x7 = post(7, 6, 0);
    ok(&f, &x6);
    ok(&f, &x7);
    expect_bal(&f, A, 3, 130, 0, 0);
    assert_xfer(one(&f, &x6, &rep), VS_XFER_OK);
    assert_true(rep);
    assert_xfer(one(&f, &x7, &rep), VS_XFER_OK);
    assert_true(rep);
    expect_bal(&f, A, 3, 130, 0, 0);
    expect_state(&f, 6, VS_PENDING_POSTED);

    /* Retries and new transfers in one call; replayed may be NULL. */
    struct vs_transfer mix[3] = {x1, xfer(8, A, B, 1, 0), x2};
    int res[3];
    bool reps[3];
    many(&f, mix, 3, res, reps);
    assert_xfer(res[0], VS_XFER_OK);
    assert_true(reps[0]);
    assert_xfer(res[1], VS_XFER_OK);
    assert_false(reps[1]);
    assert_xfer(res[2], VS_XFER_EXCEEDS_CREDITS);
    assert_true(reps[2]);
    assert_xfer(one(&f, &x1, NULL), VS_XFER_OK);
    struct vs_transfer x9 = xfer(9, A, B, 1, 0);
    many(&f, &x9, 1, res, NULL);
    assert_xfer(res[0], VS_XFER_OK);
    expect_bal(&f, A, 3, 132, 0, 0);

    /* Outcomes survive a reopen. */
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    assert_xfer(one(&f, &x1, &rep), VS_XFER_OK);
    assert_true(rep);
    assert_xfer(one(&f, &x2, &rep), VS_XFER_EXCEEDS_CREDITS);
    assert_true(rep);
    y = x1;
    y.amount = 1;
    assert_xfer(one(&f, &y, NULL), VS_XFER_EXISTS_WITH_DIFFERENT_BODY);
    expect_bal(&f, A, 3, 132, 0, 0);
    fx_close(&f);
}

/* "... bound forever to the first body submitted under it and to that first
 * outcome, success or failure": a failure found without looking anything
 * up (here a zero amount) included. */
static void test_validation_failure_is_bound(void **state)
{
    (void)state;
    struct fx f;
    fx_open_abw(&f, 2);
    bool rep = true;
    struct vs_transfer x = xfer(4, A, B, 0, 0);
    assert_xfer(one(&f, &x, &rep), VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    assert_false(rep);
    rep = false;
    assert_xfer(one(&f, &x, &rep), VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    if (!rep)
        fail_msg("the retry of a transfer rejected for its zero amount is not a replay");
    x.amount = 5; /* fixed, under the same id */
    int r = one(&f, &x, &rep);
    if (r != VS_XFER_EXISTS_WITH_DIFFERENT_BODY)
        fail_msg("a fixed body under the id of a rejected transfer: %s, want %s", xname(r),
                 xname(VS_XFER_EXISTS_WITH_DIFFERENT_BODY));
    expect_bal(&f, A, 0, 0, 0, 0);
    fx_close(&f);
}

/* ---- queries ----------------------------------------------------------------------------- */

struct hist {
    uint64_t after;
    size_t limit;
    const uint8_t *acct;
    const uint8_t *task;
    size_t n, stop_at;
    uint8_t ids[32];
    uint64_t ts[32];
    enum vs_pending_state st[32];
    int rc;
};

static int hist_cb(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    struct hist *h = arg;
    if (h->n < 32) {
        h->ids[h->n] = x->id[15];
        h->ts[h->n] = x->timestamp;
        h->st[h->n] = st;
    }
    h->n++;
    return h->stop_at && h->n == h->stop_at ? 1 : 0;
}

static int hist_apply(vs_ledger_txn *t, void *arg)
{
    struct hist *h = arg;
    h->n = 0;
    h->rc = vs_ledger_history(t, h->acct, h->after, h->limit, hist_cb, h);
    return 0;
}

static int holds_apply(vs_ledger_txn *t, void *arg)
{
    struct hist *h = arg;
    h->n = 0;
    h->rc = vs_ledger_pending(t, h->acct, h->task, hist_cb, h);
    return 0;
}

static void history(struct fx *f, uint64_t acct_n, uint64_t after, size_t limit, struct hist *h)
{
    static uint8_t id[ID];
    memset(h, 0, sizeof *h);
    mkid(id, K_ACCT, acct_n);
    h->acct = id;
    h->after = after;
    h->limit = limit;
    assert_int_equal(vs_ledger_read(f->l, hist_apply, h), 0);
    assert_true(h->rc >= 0);
}

#define expect_ids(h, ...) expect_ids_(h, (const int[]){__VA_ARGS__, -1}, __LINE__)
static void expect_ids_(const struct hist *h, const int *want, int line)
{
    size_t n = 0;
    while (want[n] >= 0)
        n++;
    char got[256] = "", tmp[16];
    for (size_t i = 0; i < h->n && i < 32; i++) {
        snprintf(tmp, sizeof tmp, " %d", h->ids[i]);
        strncat(got, tmp, sizeof got - strlen(got) - 1);
    }
    if (h->n != n)
        fail_msg("line %d: %zu transfers (%s), want %zu", line, h->n, got, n);
    for (size_t i = 0; i < n; i++)
        if (h->ids[i] != want[i])
            fail_msg("line %d: transfers%s, position %zu should be %d", line, got, i, want[i]);
}

/* Holds come in no stated order: sorted before comparing. */
static void holds(struct fx *f, uint64_t acct_n, uint64_t task_n, struct hist *h)
{
    static uint8_t id[ID];
    memset(h, 0, sizeof *h);
    if (acct_n) {
        mkid(id, K_ACCT, acct_n);
        h->acct = id;
    } else {
        mkid(id, K_TASK, task_n);
        h->task = id;
    }
    assert_int_equal(vs_ledger_read(f->l, holds_apply, h), 0);
    assert_int_equal(h->rc, 0);
    for (size_t i = 0; i < h->n && i < 32; i++) {
        assert_int_equal(h->st[i], VS_PENDING_OPEN);
        for (size_t k = i + 1; k < h->n && k < 32; k++)
            if (h->ids[k] < h->ids[i]) {
                uint8_t t = h->ids[i];
                h->ids[i] = h->ids[k];
                h->ids[k] = t;
            }
    }
}

static void test_queries(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    const struct vs_account as[] = {mkacct(A, 1, 0, "a"), mkacct(B, 1, 0, "b"),
                                    mkacct(C, 1, 0, "c")};
    new_accts(&f, as, 3);
    struct vs_transfer xs[12];
    xs[1] = xfer(1, A, B, 5, 0);
    xs[1].user_data_64 = 42;
    xs[1].code = 7;
    mkid(xs[1].user_data_128, K_TASK, 9);
    xs[2] = xfer(2, B, C, 3, 0);
    xs[3] = xfer(3, A, C, 7, 0);
    xs[4] = pend(4, A, B, 4, 0);
    mkid(xs[4].user_data_128, K_TASK, 1);
    xs[5] = pend(5, C, A, 2, 0);
    mkid(xs[5].user_data_128, K_TASK, 1);
    xs[6] = pend(6, A, C, 6, 0);
    mkid(xs[6].user_data_128, K_TASK, 2);
    xs[7] = post(7, 4, 0);
    xs[8] = voidp(8, 6);
    xs[9] = pend(9, B, C, 1, 0);
    mkid(xs[9].user_data_128, K_TASK, 2);
    xs[10] = xfer(10, A, C, 0, 0); /* fails: not in any history */
    for (int i = 1; i <= 9; i++)
        ok(&f, &xs[i]);
    assert_xfer(one(&f, &xs[10], NULL), VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    /* Two in one write keep their order too. */
    struct vs_transfer two[2] = {xfer(11, C, A, 1, 0), xfer(12, A, C, 1, 0)};
    int res[2];
    many(&f, two, 2, res, NULL);
    assert_xfer(res[0], VS_XFER_OK);
    assert_xfer(res[1], VS_XFER_OK);

    struct hist h;
    history(&f, A, 0, 0, &h);
    expect_ids(&h, 1, 3, 4, 5, 6, 7, 8, 11, 12);
    for (size_t i = 1; i < h.n; i++)
        assert_true(h.ts[i] > h.ts[i - 1]);
    const enum vs_pending_state sa[] = {VS_PENDING_NONE,   VS_PENDING_NONE,   VS_PENDING_POSTED,
                                        VS_PENDING_OPEN,   VS_PENDING_VOIDED, VS_PENDING_NONE,
                                        VS_PENDING_NONE,   VS_PENDING_NONE,   VS_PENDING_NONE};
    for (size_t i = 0; i < h.n; i++)
        assert_int_equal(h.st[i], sa[i]);
    uint64_t ts3 = h.ts[1], ts12 = h.ts[8];
    history(&f, A, ts3, 0, &h);
    expect_ids(&h, 4, 5, 6, 7, 8, 11, 12);
    history(&f, A, 0, 2, &h);
    expect_ids(&h, 1, 3);
    history(&f, A, ts3, 2, &h);
    expect_ids(&h, 4, 5);
    history(&f, A, ts12, 0, &h);
    assert_int_equal(h.n, 0);
    history(&f, B, 0, 0, &h);
    expect_ids(&h, 1, 2, 4, 7, 9);
    history(&f, C, 0, 0, &h);
    expect_ids(&h, 2, 3, 5, 6, 8, 9, 11, 12);
    history(&f, 99, 0, 0, &h);
    assert_int_equal(h.n, 0);
    /* A nonzero cb stops it. */
    memset(&h, 0, sizeof h);
    uint8_t aid[ID];
    mkid(aid, K_ACCT, A);
    h.acct = aid;
    h.stop_at = 3;
    assert_int_equal(vs_ledger_read(f.l, hist_apply, &h), 0);
    assert_int_equal(h.n, 3);

    /* Open holds only, by account and by task. */
    holds(&f, A, 0, &h);
    expect_ids(&h, 5);
    holds(&f, B, 0, &h);
    expect_ids(&h, 9);
    holds(&f, C, 0, &h);
    expect_ids(&h, 5, 9);
    holds(&f, 0, 1, &h);
    expect_ids(&h, 5);
    holds(&f, 0, 2, &h);
    expect_ids(&h, 9);
    holds(&f, 0, 3, &h);
    assert_int_equal(h.n, 0);
    holds(&f, 0, 9, &h); /* a plain transfer's task: not a hold */
    assert_int_equal(h.n, 0);
    /* Resolving a hold takes it off both lists. */
    struct vs_transfer v = voidp(13, 5);
    ok(&f, &v);
    holds(&f, A, 0, &h);
    assert_int_equal(h.n, 0);
    holds(&f, 0, 1, &h);
    assert_int_equal(h.n, 0);

    /* A transfer as stored. */
    struct vs_transfer got;
    enum vs_pending_state st;
    uint64_t dl = 9;
    assert_int_equal(get_xfer(&f, 1, &got, &st, &dl), 0);
    assert_memory_equal(got.id, xs[1].id, ID);
    assert_memory_equal(got.debit_account_id, xs[1].debit_account_id, ID);
    assert_memory_equal(got.credit_account_id, xs[1].credit_account_id, ID);
    assert_memory_equal(got.user_data_128, xs[1].user_data_128, ID);
    assert_int_equal(got.user_data_64, 42);
    assert_int_equal(got.amount, 5);
    assert_int_equal(got.ledger, 1);
    assert_int_equal(got.code, 7);
    assert_int_equal(got.flags, 0);
    assert_int_equal(st, VS_PENDING_NONE);
    assert_int_equal(dl, 0);
    assert_int_equal(get_xfer(&f, 4, NULL, &st, NULL), 0);
    assert_int_equal(st, VS_PENDING_POSTED);
    assert_int_equal(get_xfer(&f, 6, NULL, &st, NULL), 0);
    assert_int_equal(st, VS_PENDING_VOIDED);
    assert_int_equal(get_xfer(&f, 7, &got, &st, NULL), 0);
    assert_int_equal(got.amount, 4);
    assert_int_equal(st, VS_PENDING_NONE);
    assert_int_equal(get_xfer(&f, 10, NULL, NULL, NULL), -ENOENT);
    assert_int_equal(get_xfer(&f, 77, NULL, NULL, NULL), -ENOENT);
    uint64_t t = f.now + MS;
    struct vs_transfer p = pend(14, A, B, 1, 50);
    assert_xfer(one_at(&f, t, &p, NULL), VS_XFER_OK);
    assert_int_equal(get_xfer(&f, 14, &got, &st, &dl), 0);
    assert_int_equal(st, VS_PENDING_OPEN);
    assert_true(dl >= t + 50 * MS && dl <= got.timestamp + 50 * MS);
    assert_int_equal(next_deadline(&f), dl);
    fx_close(&f);
}

/* Reads inside a write see the write's own effects; an aborted write
 * leaves nothing behind, not even in what the next write reads. */
struct inwrite {
    bool abort_it;
    int rc[12];
    int res[3];
    struct vs_account a;
    struct snap s;
    struct vs_ledger_totals tot, tot2;
    size_t nhist, nhold;
};

static int count_xfer_cb(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    (void)x;
    (void)st;
    (*(size_t *)arg)++;
    return 0;
}

static int inwrite_apply(vs_ledger_txn *t, void *arg)
{
    struct inwrite *w = arg;
    struct vs_account as[2] = {mkacct(1, 1, 0, "in-a"), mkacct(2, 1, 0, "in-b")};
    bool rep;
    memset(w->rc, 0x7f, sizeof w->rc);
    w->rc[0] = vs_ledger_create_account(t, &as[0], &rep);
    w->rc[1] = vs_ledger_create_account(t, &as[1], &rep);
    struct vs_transfer xs[2] = {xfer(1, 1, 2, 10, 0), pend(2, 1, 2, 5, 0)};
    w->rc[2] = vs_ledger_create_transfers(t, xs, 2, w->res, NULL);
    w->rc[3] = vs_ledger_account(t, as[0].id, &w->a);
    w->s.n = 0;
    w->rc[4] = vs_ledger_accounts(t, snap_cb, &w->s);
    w->nhist = w->nhold = 0;
    w->rc[5] = vs_ledger_history(t, as[0].id, 0, 0, count_xfer_cb, &w->nhist);
    w->rc[6] = vs_ledger_pending(t, as[0].id, NULL, count_xfer_cb, &w->nhold);
    w->rc[7] = vs_ledger_check(t, &w->tot);
    struct vs_transfer p = post(3, 2, 0);
    w->rc[8] = vs_ledger_create_transfers(t, &p, 1, &w->res[2], NULL);
    w->rc[9] = vs_ledger_check(t, &w->tot2);
    return w->abort_it ? -EINTR : 0;
}

static void test_reads_inside_write(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    struct inwrite *w = calloc(1, sizeof *w);
    assert_non_null(w);
    for (int round = 0; round < 2; round++) {
        w->abort_it = round == 0;
        int rc = vs_ledger_write(f.l, f.now += MS, inwrite_apply, w);
        assert_int_equal(rc, round == 0 ? -EINTR : 0);
        for (int i = 0; i < 10; i++)
            if (w->rc[i] != 0)
                fail_msg("round %d: call %d inside the write returned %d", round, i, w->rc[i]);
        for (int i = 0; i < 3; i++)
            assert_xfer(w->res[i], VS_XFER_OK);
        assert_int_equal(w->a.debits_posted, 10);
        assert_int_equal(w->a.debits_pending, 5);
        assert_int_equal(w->s.n, 2);
        assert_int_equal(w->s.a[0].debits_posted, 10);
        assert_int_equal(w->s.a[1].credits_pending, 5);
        assert_int_equal(w->nhist, 2);
        assert_int_equal(w->nhold, 1);
        assert_int_equal(w->tot.transfers, 2);
        assert_int_equal(w->tot.pending_open, 1);
        assert_int_equal(w->tot.debits_posted, 10);
        assert_int_equal(w->tot2.transfers, 3);
        assert_int_equal(w->tot2.pending_open, 0);
        assert_int_equal(w->tot2.debits_posted, 15);
        if (round == 0) {
            /* Aborted: nothing of it is there, and the same write again is
             * new, not a replay. */
            assert_int_equal(get_acct_rc(&f, 1, NULL), -ENOENT);
            assert_int_equal(get_acct_by_name(&f, "in-a", NULL), -ENOENT);
            expect_absent(&f, 1);
            struct snap *s = snapshot(f.l);
            assert_int_equal(s->n, 0);
            free(s);
            check_invariant(f.l, NULL);
        }
    }
    expect_bal(&f, 1, 0, 15, 0, 0);
    expect_bal(&f, 2, 0, 0, 0, 15);
    expect_state(&f, 2, VS_PENDING_POSTED);
    free(w);
    fx_close(&f);
}

/* A mixed workload with totals computed by hand. */
static void test_totals(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    const struct vs_account as[] = {mkacct(A, 1, 0, "a"), mkacct(B, 1, 0, "b"),
                                    mkacct(W, 1, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, "w"),
                                    mkacct(R, 1, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, "r")};
    new_accts(&f, as, 4);
    struct vs_transfer xs[] = {
        xfer(1, A, W, 500, 0), xfer(2, A, B, 200, 0), pend(3, W, B, 100, 0), pend(4, A, B, 70, 0),
        post(5, 4, 20),        pend(6, B, A, 30, 0),  voidp(7, 6),           xfer(8, R, A, 40, 0),
        pend(9, A, R, 25, 0),  xfer(10, W, B, 1000, 0),
    };
    int res[10];
    many(&f, xs, 10, res, NULL);
    for (int i = 0; i < 9; i++)
        assert_xfer(res[i], VS_XFER_OK);
    assert_xfer(res[9], VS_XFER_EXCEEDS_CREDITS);
    expect_bal(&f, A, 25, 720, 0, 40);
    expect_bal(&f, B, 0, 0, 100, 220);
    expect_bal(&f, W, 100, 0, 0, 500);
    expect_bal(&f, R, 0, 40, 25, 0);
    struct vs_ledger_totals t;
    check_invariant(f.l, &t);
    assert_int_equal(t.accounts, 4);
    assert_int_equal(t.transfers, 9);
    assert_int_equal(t.pending_open, 2);
    assert_int_equal(t.debits_posted, 760);
    assert_int_equal(t.credits_posted, 760);
    assert_int_equal(t.debits_pending, 125);
    assert_int_equal(t.credits_pending, 125);
    fx_close(&f);
}

/* ---- exactly-once bookkeeping ------------------------------------------------------------- */

struct book {
    int step;
    int rc[16];
    uint64_t seq[4];
    uint8_t reply[64];
    size_t len;
};

static int book_apply(vs_ledger_txn *t, void *arg)
{
    struct book *b = arg;
    uint8_t id1[ID], id2[ID], h1[32], h2[32];
    mkid(id1, 0xc0, 1);
    mkid(id2, 0xc0, 2);
    memset(h1, 0x11, 32);
    memset(h2, 0x22, 32);
    const uint8_t *rp = NULL;
    size_t len = 0;
    memset(b->rc, 0x7f, sizeof b->rc);
    switch (b->step) {
    case 0:
        b->seq[0] = 99;
        b->rc[0] = vs_ledger_applied_get(t, "LEDGER", &b->seq[0]);
        b->rc[1] = vs_ledger_applied_set(t, "LEDGER", 5);
        b->rc[2] = vs_ledger_applied_set(t, "TASKS", 9);
        b->rc[3] = vs_ledger_applied_get(t, "LEDGER", &b->seq[1]); /* own writes visible */
        b->rc[4] = vs_ledger_command_get(t, id1, h1, &rp, &len);
        b->rc[5] = vs_ledger_command_put(t, id1, h1, "reply-one", 9);
        b->rc[6] = vs_ledger_command_put(t, id2, h2, "", 0);
        break;
    case 1:
        b->rc[0] = vs_ledger_applied_get(t, "LEDGER", &b->seq[0]);
        b->rc[1] = vs_ledger_applied_get(t, "TASKS", &b->seq[1]);
        b->rc[2] = vs_ledger_command_get(t, id1, h1, &rp, &len);
        if (b->rc[2] == 0 && len <= sizeof b->reply) {
            memcpy(b->reply, rp, len);
            b->len = len;
        }
        b->rc[3] = vs_ledger_command_get(t, id1, h2, &rp, &len);
        b->rc[4] = vs_ledger_command_get(t, id2, h2, &rp, &len);
        if (b->rc[4] == 0)
            b->seq[2] = len;
        b->rc[5] = vs_ledger_command_get(t, id2, h1, &rp, &len);
        break;
    case 2: /* a write that fails: nothing of it stays */
        vs_ledger_applied_set(t, "LEDGER", 6);
        vs_ledger_command_put(t, id1, h2, "x", 1);
        vs_ledger_outbox_put(t, "vs.x", "m", "x", 1);
        return -EINTR;
    default:
        break;
    }
    return 0;
}

static void test_stream_bookkeeping(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    struct book b = {.step = 0};
    assert_int_equal(vs_ledger_write(f.l, BASE_NS + MS, book_apply, &b), 0);
    /* An unknown stream: nothing applied yet (0), or -ENOENT. */
    assert_true((b.rc[0] == 0 && b.seq[0] == 0) || b.rc[0] == -ENOENT);
    assert_int_equal(b.rc[1], 0);
    assert_int_equal(b.rc[2], 0);
    assert_int_equal(b.rc[3], 0);
    assert_int_equal(b.seq[1], 5);
    assert_int_equal(b.rc[4], -ENOENT);
    assert_int_equal(b.rc[5], 0);
    assert_int_equal(b.rc[6], 0);

    for (int reopen = 0; reopen < 2; reopen++) {
        memset(&b, 0, sizeof b);
        b.step = 1;
        assert_int_equal(vs_ledger_read(f.l, book_apply, &b), 0);
        assert_int_equal(b.rc[0], 0);
        assert_int_equal(b.seq[0], 5);
        assert_int_equal(b.rc[1], 0);
        assert_int_equal(b.seq[1], 9);
        assert_int_equal(b.rc[2], 0);
        assert_int_equal(b.len, 9);
        assert_memory_equal(b.reply, "reply-one", 9);
        assert_int_equal(b.rc[3], -EEXIST);
        assert_int_equal(b.rc[4], 0);
        assert_int_equal(b.seq[2], 0);
        assert_int_equal(b.rc[5], -EEXIST);
        if (!reopen) {
            b.step = 2;
            assert_int_equal(vs_ledger_write(f.l, BASE_NS + 2 * MS, book_apply, &b), -EINTR);
            vs_ledger_free(f.l);
            f.l = open_ledger(f.dir, 0, false);
        }
    }
    fx_close(&f);
}

struct obox {
    int op;
    size_t n;
    uint64_t seq[8];
    char subj[8][32], mid[8][32];
    uint8_t data[8][32];
    size_t len[8];
    uint64_t del;
    int rc;
};

static int obox_cb(uint64_t seq, const char *subject, const char *msg_id, const uint8_t *data,
                   size_t len, void *arg)
{
    struct obox *o = arg;
    if (o->n < 8) {
        o->seq[o->n] = seq;
        snprintf(o->subj[o->n], 32, "%s", subject);
        snprintf(o->mid[o->n], 32, "%s", msg_id);
        o->len[o->n] = len;
        if (len <= 32)
            memcpy(o->data[o->n], data, len);
    }
    o->n++;
    return 0;
}

static int obox_apply(vs_ledger_txn *t, void *arg)
{
    struct obox *o = arg;
    o->n = 0;
    o->rc = 0;
    switch (o->op) {
    case 0:
        o->rc |= vs_ledger_outbox_put(t, "vs.task.settled", "m-1", "one", 3);
        o->rc |= vs_ledger_outbox_put(t, "vs.ledger.event", "m-2", "two!", 4);
        o->rc |= vs_ledger_outbox_put(t, "vs.task.settled", "m-3", "", 0);
        break;
    case 1:
        return vs_ledger_outbox_each(t, 0, obox_cb, o);
    case 2:
        o->rc = vs_ledger_outbox_del(t, o->del);
        break;
    case 3:
        o->rc = vs_ledger_outbox_put(t, "vs.late", "m-4", "four", 4);
        break;
    default:
        break;
    }
    return 0;
}

/* One outbox operation (obox_apply) in a write at at_ns. */
static void obox_write(struct fx *f, struct obox *o, int op, uint64_t at_ns)
{
    o->op = op;
    assert_int_equal(vs_ledger_write(f->l, at_ns, obox_apply, o), 0);
    assert_int_equal(o->rc, 0);
}

/* The outbox read into o: it holds n messages. */
static void obox_read(struct fx *f, struct obox *o, size_t n)
{
    o->op = 1;
    assert_int_equal(vs_ledger_read(f->l, obox_apply, o), 0);
    assert_int_equal(o->n, n);
}

static void test_outbox(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    struct obox o = {.op = 0};
    obox_write(&f, &o, 0, BASE_NS + MS);
    obox_read(&f, &o, 3);
    assert_string_equal(o.subj[0], "vs.task.settled");
    assert_string_equal(o.mid[0], "m-1");
    assert_int_equal(o.len[0], 3);
    assert_memory_equal(o.data[0], "one", 3);
    assert_string_equal(o.subj[1], "vs.ledger.event");
    assert_string_equal(o.mid[1], "m-2");
    assert_int_equal(o.len[1], 4);
    assert_memory_equal(o.data[1], "two!", 4);
    assert_string_equal(o.mid[2], "m-3");
    assert_int_equal(o.len[2], 0);
    assert_true(o.seq[0] < o.seq[1] && o.seq[1] < o.seq[2]);
    uint64_t s0 = o.seq[0], s2 = o.seq[2];
    o.del = o.seq[1];
    obox_write(&f, &o, 2, BASE_NS + 2 * MS);
    obox_read(&f, &o, 2);
    assert_int_equal(o.seq[0], s0);
    assert_int_equal(o.seq[1], s2);
    assert_string_equal(o.mid[1], "m-3");
    /* After a reopen it is all there, and a new message comes last. */
    vs_ledger_free(f.l);
    f.l = open_ledger(f.dir, 0, false);
    obox_write(&f, &o, 3, BASE_NS + 3 * MS);
    obox_read(&f, &o, 3);
    assert_int_equal(o.seq[0], s0);
    assert_int_equal(o.seq[1], s2);
    assert_true(o.seq[2] > s2);
    assert_string_equal(o.mid[2], "m-4");
    assert_memory_equal(o.data[2], "four", 4);
    /* Emptied in order. */
    for (int i = 0; i < 3; i++) {
        struct obox d = {.del = o.seq[i]};
        obox_write(&f, &d, 2, BASE_NS + (uint64_t)(4 + i) * MS);
    }
    obox_read(&f, &o, 0);
    fx_close(&f);
}

struct kvs {
    int op;
    enum vs_ledger_table tb;
    size_t n;
    char keys[16][16];
    char vals[16][16];
    const char *prefix;
    int rc;
};

static int kv_each_cb(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                      void *arg)
{
    struct kvs *k = arg;
    if (k->n < 16 && klen < 16 && vlen < 16) {
        memcpy(k->keys[k->n], key, klen);
        k->keys[k->n][klen] = 0;
        memcpy(k->vals[k->n], val, vlen);
        k->vals[k->n][vlen] = 0;
    }
    k->n++;
    return 0;
}

static int kv_apply(vs_ledger_txn *t, void *arg)
{
    struct kvs *k = arg;
    static const char *keys[] = {"b/2", "a/1", "b/1", "a/2", "c"};
    char val[16];
    k->rc = 0;
    k->n = 0;
    switch (k->op) {
    case 0:
        for (int i = 0; i < 5; i++) {
            int len = snprintf(val, sizeof val, "%s@%d", keys[i], (int)k->tb);
            k->rc |= vs_ledger_kv_put(t, k->tb, keys[i], strlen(keys[i]), val, (size_t)len);
        }
        /* Overwrite. */
        k->rc |= vs_ledger_kv_put(t, k->tb, "c", 1, "new", 3);
        break;
    case 1:
        k->rc = vs_ledger_kv_each(t, k->tb, k->prefix, k->prefix ? strlen(k->prefix) : 0,
                                  kv_each_cb, k);
        break;
    case 2:
        k->rc = vs_ledger_kv_del(t, k->tb, "a/1", 3);
        break;
    default:
        break;
    }
    return 0;
}

static void test_kv(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    struct kv_q q;
    for (int tb = 0; tb < VS_LTABLE_COUNT; tb++) {
        assert_int_equal(kv_get(f.l, (enum vs_ledger_table)tb, "a/1", 3, &q), -ENOENT);
        if (tb % 2) /* half of the tables filled */
            continue;
        struct kvs k = {.op = 0, .tb = (enum vs_ledger_table)tb};
        assert_int_equal(vs_ledger_write(f.l, BASE_NS + (uint64_t)(tb + 1) * MS, kv_apply, &k),
                         0);
        assert_int_equal(k.rc, 0);
    }
    for (int tb = 0; tb < VS_LTABLE_COUNT; tb++) {
        enum vs_ledger_table t = (enum vs_ledger_table)tb;
        struct kvs k = {.op = 1, .tb = t};
        assert_int_equal(vs_ledger_read(f.l, kv_apply, &k), 0);
        assert_int_equal(k.rc, 0);
        if (tb % 2) {
            assert_int_equal(k.n, 0);
            assert_int_equal(kv_get(f.l, t, "a/1", 3, &q), -ENOENT);
            continue;
        }
        assert_int_equal(k.n, 5);
        const char *order[] = {"a/1", "a/2", "b/1", "b/2", "c"};
        for (int i = 0; i < 5; i++)
            assert_string_equal(k.keys[i], order[i]);
        char want[16];
        snprintf(want, sizeof want, "a/2@%d", tb);
        assert_string_equal(k.vals[1], want);
        assert_string_equal(k.vals[4], "new");
        assert_int_equal(kv_get(f.l, t, "a/2", 3, &q), 0);
        assert_int_equal(q.vlen, strlen(want));
        assert_memory_equal(q.val, want, q.vlen);
        assert_int_equal(kv_get(f.l, t, "a/", 2, &q), -ENOENT);
        k.prefix = "b/";
        assert_int_equal(vs_ledger_read(f.l, kv_apply, &k), 0);
        assert_int_equal(k.n, 2);
        assert_string_equal(k.keys[0], "b/1");
        assert_string_equal(k.keys[1], "b/2");
        k.prefix = "a";
        assert_int_equal(vs_ledger_read(f.l, kv_apply, &k), 0);
        assert_int_equal(k.n, 2);
        k.prefix = "zz";
        assert_int_equal(vs_ledger_read(f.l, kv_apply, &k), 0);
        assert_int_equal(k.n, 0);
        k.op = 2;
        assert_int_equal(vs_ledger_write(f.l, f.now + (uint64_t)(10 + tb) * MS, kv_apply, &k), 0);
        assert_int_equal(k.rc, 0);
        assert_int_equal(kv_get(f.l, t, "a/1", 3, &q), -ENOENT);
        k.op = 1;
        k.prefix = "a/";
        assert_int_equal(vs_ledger_read(f.l, kv_apply, &k), 0);
        assert_int_equal(k.n, 1);
        assert_string_equal(k.keys[0], "a/2");
    }
    fx_close(&f);
}

/* ---- growth, backup, read-only ----------------------------------------------------------- */

enum { GROW_ACCTS = 20 };

/* Transfer i of the generated workload: i -> (i*7+3) mod GROW_ACCTS, amount i % 97 + 1. */
static struct vs_transfer grow_xfer(uint64_t i)
{
    uint64_t dr = 1 + i % GROW_ACCTS, cr = 1 + (i * 7 + 3) % GROW_ACCTS;
    if (cr == dr)
        cr = 1 + (cr % GROW_ACCTS);
    struct vs_transfer x = xfer(1000 + i, dr, cr, i % 97 + 1, 0);
    x.user_data_64 = i * 31;
    return x;
}

/* The workload's accounts 1..GROW_ACCTS, in two writes. */
static void grow_accounts(struct fx *f)
{
    struct vs_account as[GROW_ACCTS];
    for (uint64_t a = 1; a <= GROW_ACCTS; a++)
        as[a - 1] = mkacct(a, 1, 0, "");
    new_accts(f, as, 10);
    new_accts(f, as + 10, 10);
}

static void grow_write(struct fx *f, uint64_t first, size_t n)
{
    struct vs_transfer *xs = calloc(n, sizeof *xs);
    int *res = calloc(n, sizeof *res);
    assert_non_null(xs);
    assert_non_null(res);
    for (size_t k = 0; k < n; k++)
        xs[k] = grow_xfer(first + k);
    many(f, xs, n, res, NULL);
    for (size_t k = 0; k < n; k++)
        assert_xfer(res[k], VS_XFER_OK);
    free(xs);
    free(res);
}

struct grow_check {
    uint64_t n;
    uint64_t bad;
    uint64_t dpo[GROW_ACCTS + 1], cpo[GROW_ACCTS + 1];
};

static int grow_check_apply(vs_ledger_txn *t, void *arg)
{
    struct grow_check *g = arg;
    g->bad = 0;
    for (uint64_t i = 0; i < g->n; i++) {
        struct vs_transfer want = grow_xfer(i), got;
        enum vs_pending_state st;
        uint64_t dl;
        if (vs_ledger_transfer(t, want.id, &got, &st, &dl) || got.amount != want.amount ||
            got.user_data_64 != want.user_data_64 ||
            memcmp(got.debit_account_id, want.debit_account_id, ID))
            g->bad++;
    }
    for (uint64_t a = 1; a <= GROW_ACCTS; a++) {
        uint8_t id[ID];
        struct vs_account ac;
        mkid(id, K_ACCT, a);
        if (vs_ledger_account(t, id, &ac) || ac.debits_posted != g->dpo[a] ||
            ac.credits_posted != g->cpo[a])
            g->bad++;
    }
    return 0;
}

static void grow_verify(vs_ledger *l, uint64_t n)
{
    struct grow_check *g = calloc(1, sizeof *g);
    assert_non_null(g);
    g->n = n;
    for (uint64_t i = 0; i < n; i++) {
        struct vs_transfer x = grow_xfer(i);
        g->dpo[x.debit_account_id[15]] += x.amount;
        g->cpo[x.credit_account_id[15]] += x.amount;
    }
    assert_int_equal(vs_ledger_read(l, grow_check_apply, g), 0);
    assert_int_equal(g->bad, 0);
    free(g);
}

static void test_map_growth(void **state)
{
    (void)state;
    struct fx f;
    const uint64_t small = 256 * 1024;
    fx_open(&f, small);
    assert_int_equal(vs_ledger_map_size(f.l), small);
    grow_accounts(&f);
    /* 3000 in writes of 200, then 2000 in a single call. */
    uint64_t n = 0;
    for (; n < 3000; n += 200)
        grow_write(&f, n, 200);
    grow_write(&f, n, 2000);
    n += 2000;
    uint64_t grown = vs_ledger_map_size(f.l);
    print_message("map grew from %llu to %llu bytes\n", (unsigned long long)small,
                  (unsigned long long)grown);
    assert_true(grown > small);
    grow_verify(f.l, n);
    struct vs_ledger_totals t1, t2;
    check_invariant(f.l, &t1);
    assert_int_equal(t1.transfers, n);
    vs_ledger_free(f.l);

    /* Reopened (asking for the small map again), it keeps everything and
     * still grows. */
    f.l = open_ledger(f.dir, small, false);
    assert_true(vs_ledger_map_size(f.l) > small);
    grow_verify(f.l, n);
    check_invariant(f.l, &t2);
    assert_int_equal(t2.transfers, t1.transfers);
    assert_int_equal(t2.debits_posted, t1.debits_posted);
    for (int k = 0; k < 5; k++, n += 400)
        grow_write(&f, n, 400);
    grow_verify(f.l, n);
    fx_close(&f);
}

/* A child process that opens dir read-only (as vsctl does), says so
 * ('o' on its pipe), waits for a byte from the parent, backs the store up
 * into copy and exits: 0, or 1 + the errno of the failure. */
struct child {
    pid_t pid;
    int to, from;
};

static struct child backup_child(const char *dir, const char *copy)
{
    int down[2], up[2];
    assert_int_equal(pipe(down), 0);
    assert_int_equal(pipe(up), 0);
    struct child c = {.pid = fork()};
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        close(down[1]);
        close(up[0]);
        struct vs_ledger_opts o = {.path = dir, .read_only = true};
        vs_ledger *l = NULL;
        int rc = vs_ledger_open(&o, &l);
        if (rc)
            _exit(1 + (-rc & 0x7f));
        char b = 'o';
        if (write(up[1], &b, 1) != 1 || read(down[0], &b, 1) != 1)
            _exit(120);
        rc = vs_ledger_backup(l, copy);
        vs_ledger_free(l);
        _exit(rc ? 1 + (-rc & 0x7f) : 0);
    }
    close(down[0]);
    close(up[1]);
    c.to = down[1];
    c.from = up[0];
    char b = 0;
    assert_int_equal(read(c.from, &b, 1), 1);
    assert_int_equal(b, 'o');
    return c;
}

static void child_go(struct child *c)
{
    char b = 'g';
    assert_int_equal(write(c->to, &b, 1), 1);
}

static int child_wait(struct child *c)
{
    int status = 0;
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    close(c->to);
    close(c->from);
    assert_true(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    if (code)
        print_message("backup child: exit %d (%s)\n", code,
                      code < 120 ? strerror(code - 1) : "pipe");
    return code;
}

static void totals_equal(const struct vs_ledger_totals *a, const struct vs_ledger_totals *b)
{
    assert_int_equal(a->accounts, b->accounts);
    assert_int_equal(a->transfers, b->transfers);
    assert_int_equal(a->pending_open, b->pending_open);
    assert_int_equal(a->debits_posted, b->debits_posted);
    assert_int_equal(a->credits_posted, b->credits_posted);
    assert_int_equal(a->debits_pending, b->debits_pending);
    assert_int_equal(a->credits_pending, b->credits_pending);
}

/* A new empty directory dir/name for a backup (the caller frees the path). */
static char *copy_dir(const char *dir, const char *name)
{
    char *c = vs_path(dir, name);
    assert_int_equal(mkdir(c, 0700), 0);
    return c;
}

/* The copy in dir, read-only: its invariant holds and its totals are live's. */
static vs_ledger *open_copy(const char *dir, const struct vs_ledger_totals *live)
{
    struct vs_ledger_totals copy;
    vs_ledger *c = open_ledger(dir, 0, true);
    check_invariant(c, &copy);
    totals_equal(live, &copy);
    return c;
}

static void test_backup(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 256 * 1024);
    grow_accounts(&f);
    grow_write(&f, 100000, 300);
    struct vs_transfer xs[3] = {pend(1, 1, 2, 5, 0), pend(2, 3, 4, 6, 0), post(3, 1, 2)};
    int res[3];
    many(&f, xs, 3, res, NULL);
    for (int i = 0; i < 3; i++)
        assert_xfer(res[i], VS_XFER_OK);
    struct vs_ledger_totals live;
    check_invariant(f.l, &live);

    /* A quiet backup: the copy has the same totals. */
    char *c1 = copy_dir(f.dir, "copy1"), *lock = vs_path(c1, "lock.mdb");
    assert_int_equal(vs_ledger_backup(f.l, c1), 0);
    vs_ledger *c = open_copy(c1, &live);
    struct snap *sl = snapshot(f.l), *sc = snapshot(c);
    assert_same_accounts(sl, sc, "backup");
    free(sl);
    free(sc);
    /* Read-only, it refuses writes and left no lock file. */
    struct job j = {0};
    assert_true(vs_ledger_write(c, BASE_NS, job_apply, &j) < 0);
    vs_ledger_free(c);
    assert_int_not_equal(access(lock, F_OK), 0);
    /* Later writes to the live store do not reach the copy. */
    grow_write(&f, 200000, 10);
    vs_ledger_free(open_copy(c1, &live));

    free(lock);
    free(c1);
    fx_close(&f);
}

/* A backup by another process while this one writes: a consistent copy
 * of some commit, whole. */
static void test_backup_during_writes(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    grow_accounts(&f);
    grow_write(&f, 0, 100);
    struct vs_ledger_totals before, copy, end;
    check_invariant(f.l, &before);
    char *c2 = copy_dir(f.dir, "copy2");
    struct child ch = backup_child(f.dir, c2);
    for (uint64_t r = 1; r <= 40; r++) {
        grow_write(&f, r * 100, 100);
        if (r == 5)
            child_go(&ch);
    }
    assert_int_equal(child_wait(&ch), 0);
    check_invariant(f.l, &end);
    vs_ledger *c = open_ledger(c2, 0, true);
    check_invariant(c, &copy);
    print_message("backup taken at %llu transfers (from %llu to %llu)\n",
                  (unsigned long long)copy.transfers, (unsigned long long)before.transfers,
                  (unsigned long long)end.transfers);
    assert_true(copy.transfers >= before.transfers && copy.transfers <= end.transfers);
    assert_int_equal(copy.transfers % 100, 0); /* whole commits */
    grow_verify(c, copy.transfers);
    vs_ledger_free(c);
    free(c2);
    fx_close(&f);
}

/* A read-only handle opened while the map was small backs up after the
 * writer grew it (vsctl opening the store, then the daemon growing it). */
static void test_backup_after_growth(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 256 * 1024);
    grow_accounts(&f);
    grow_write(&f, 0, 100);
    uint64_t small = vs_ledger_map_size(f.l);
    char *c3 = copy_dir(f.dir, "copy3");
    struct child ch = backup_child(f.dir, c3);
    for (uint64_t r = 1; r < 30; r++)
        grow_write(&f, r * 100, 100);
    assert_true(vs_ledger_map_size(f.l) > small);
    struct vs_ledger_totals live;
    check_invariant(f.l, &live);
    child_go(&ch);
    int code = child_wait(&ch);
    if (code)
        fail_msg("backup from a read-only handle opened before the map grew failed: %s",
                 code < 120 ? strerror(code - 1) : "pipe");
    vs_ledger *c = open_copy(c3, &live);
    grow_verify(c, 3000);
    vs_ledger_free(c);
    free(c3);
    fx_close(&f);
}

/* In a child process, open the live store read-only and check that account
 * 2 has credits_posted want and transfer 1 exists. 0 when it does. */
static int child_reads(const char *dir, uint64_t want)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct vs_ledger_opts o = {.path = dir, .read_only = true};
        vs_ledger *l = NULL;
        if (vs_ledger_open(&o, &l))
            _exit(2);
        struct acct_q q = {.rc = 1};
        mkid(q.id, K_ACCT, 2);
        if (vs_ledger_read(l, acct_q_apply, &q) || q.rc)
            _exit(3);
        if (q.out.credits_posted != want)
            _exit(4);
        struct xfer_q x = {.rc = 1};
        mkid(x.id, K_XFER, 1);
        if (vs_ledger_read(l, xfer_q_apply, &x) || x.rc || x.out.amount != 10)
            _exit(5);
        struct job j = {0};
        if (vs_ledger_write(l, BASE_NS, job_apply, &j) >= 0)
            _exit(6);
        vs_ledger_free(l);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_read_only_live(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, 0);
    const struct vs_account as[] = {mkacct(1, 1, 0, "a"), mkacct(2, 1, 0, "b")};
    new_accts(&f, as, 2);
    struct vs_transfer x = xfer(1, 1, 2, 10, 0);
    ok(&f, &x);
    assert_int_equal(child_reads(f.dir, 10), 0);
    /* Committed later, seen by a later reader. */
    x = xfer(2, 1, 2, 5, 0);
    ok(&f, &x);
    assert_int_equal(child_reads(f.dir, 15), 0);
    /* The writer goes on after the readers left. */
    x = xfer(3, 1, 2, 1, 0);
    ok(&f, &x);
    assert_int_equal(child_reads(f.dir, 16), 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_names),
        cmocka_unit_test(test_txn_now),
        cmocka_unit_test(test_accounts),
        cmocka_unit_test(test_account_refusal_binds_nothing),
        cmocka_unit_test(test_transfer_rules),
        cmocka_unit_test(test_resolve_code_must_match),
        cmocka_unit_test(test_overflows),
        cmocka_unit_test(test_two_phase),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_linked),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_validation_failure_is_bound),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_reads_inside_write),
        cmocka_unit_test(test_totals),
        cmocka_unit_test(test_stream_bookkeeping),
        cmocka_unit_test(test_outbox),
        cmocka_unit_test(test_kv),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_backup),
        cmocka_unit_test(test_backup_during_writes),
        cmocka_unit_test(test_backup_after_growth),
        cmocka_unit_test(test_read_only_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
