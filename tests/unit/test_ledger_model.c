/*
 * test_ledger_model.c - a randomized model test of the escrow ledger store
 * (workers/ledgerd: store.c).
 *
 * An independent in-memory model implements the rules of
 * vs/ledger_store.h from the header's text alone: accounts with balance
 * flags and four balances (bound by id once created; a refusal binds
 * nothing), transfers bound by id to their first body and first outcome
 * (failures included), two-phase holds that resolve once by
 * post (in part or in full), void or expiry by the transaction time,
 * linked chains that commit all or nothing, and the limits of the balance
 * flags counting holds. Random batches (1..50 transfers and a few account
 * creations per vs_ledger_write, at a time that advances so that holds
 * expire) go to the store and through the model; every result code must
 * be one the model allows (OK exactly when the model says OK, and the
 * precise code whenever only one rule is broken), every retry must replay
 * its first outcome, and after every batch all balances, holds, deadlines,
 * expiry callbacks and the store's own invariant check must agree with the
 * model. Histories and hold queries are compared periodically, and the
 * store is reopened half way.
 *
 * Times are multiples of 2 ms and timeouts odd numbers of milliseconds, so
 * no write falls on a deadline and the model does not depend on how the
 * store rounds it. The seed is printed; VS_SEED=<n> replays a run and
 * VS_MODEL_OPS=<n> changes its length (default 15000 transfers).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "vs/ledger_store.h"

#define BASE_NS 1700000000000000000ull
#define MS 1000000ull
#define ID VS_LEDGER_ID_LEN
#define BIT(c) (UINT64_C(1) << (c))

enum { K_ACCT = 0xac, K_XFER = 0x7f, K_TASK = 0x7a, K_GHOST = 0x55 };
enum { NA = 400, NX = 40000, NTASK = 8, MAXB = 64 };

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static uint64_t rn(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static bool chance(unsigned pct)
{
    return rn(100) < pct;
}

static void mkid(uint8_t id[ID], uint8_t kind, uint64_t n)
{
    memset(id, 0, ID);
    id[0] = kind;
    for (int i = 0; i < 8; i++)
        id[8 + i] = (uint8_t)(n >> (56 - 8 * i));
}

static bool zero(const uint8_t *id)
{
    for (int i = 0; i < ID; i++)
        if (id[i])
            return false;
    return true;
}

/* The number n of an id of kind (1..max), or 0. */
static size_t id_num(const uint8_t *id, uint8_t kind, size_t max)
{
    if (id[0] != kind)
        return 0;
    for (int i = 1; i < 8; i++)
        if (id[i])
            return 0;
    uint64_t n = 0;
    for (int i = 8; i < 16; i++)
        n = n << 8 | id[i];
    return n <= max ? (size_t)n : 0;
}

static const char *xname(int r)
{
    const char *s = r >= 0 ? vs_transfer_result_name(r) : NULL;
    return s ? s : "?";
}

static const char *aname(int r)
{
    const char *s = r >= 0 ? vs_account_result_name(r) : NULL;
    return s ? s : "?";
}

static void mask_str(uint64_t mask, bool acct, char *out, size_t n)
{
    out[0] = 0;
    for (int c = 0; c < 64; c++)
        if (mask & BIT(c)) {
            size_t len = strlen(out);
            snprintf(out + len, n - len, "%s%s", len ? "|" : "", acct ? aname(c) : xname(c));
        }
}

/* ---- the model ------------------------------------------------------------------ */

enum xkind { XK_PLAIN, XK_PENDING, XK_POST, XK_VOID };

struct macct {
    bool bound; /* the account exists (outcome OK): a refusal binds nothing */
    bool tried; /* a body was submitted (kept for retries) */
    int outcome;
    struct vs_account body;
    uint64_t dp, dpo, cp, cpo;
};

struct mxfer {
    bool bound;
    int outcome;
    uint32_t batch; /* when it was bound */
    struct vs_transfer body;
    /* outcome OK: */
    uint8_t kind;
    uint16_t dr, cr; /* account numbers */
    uint64_t amount; /* a POST: what it posted */
    uint32_t ledger;
    uint16_t code;
    uint8_t state;     /* pending: vs_pending_state */
    uint64_t deadline; /* pending: nominal (creation time + timeout), 0 none */
    uint64_t seq;      /* order of creation */
    uint32_t pnum;     /* post/void: the hold */
    bool touched;      /* since the last check */
};

struct undo {
    int type; /* 0 account, 1 transfer */
    size_t n;
    union {
        struct macct a;
        struct mxfer x;
    } old;
};

struct model {
    struct macct a[NA + 1];
    size_t na; /* account numbers 1..na used */
    struct mxfer *x;
    size_t nx; /* transfer numbers 1..nx used */
    uint64_t seq;
    uint64_t now;
    uint32_t batch;
    bool logging;
    size_t nlog;
    struct undo log[128];
    uint32_t *holds; /* numbers of successful pending transfers */
    size_t nholds;
    /* expired in the current batch */
    uint32_t expired[NX];
    size_t nexpired;
};

static void log_acct(struct model *m, size_t n)
{
    if (!m->logging)
        return;
    assert_true(m->nlog < 128);
    struct undo *u = &m->log[m->nlog++];
    u->type = 0;
    u->n = n;
    u->old.a = m->a[n];
}

static void log_xfer(struct model *m, size_t n)
{
    if (!m->logging)
        return;
    assert_true(m->nlog < 128);
    struct undo *u = &m->log[m->nlog++];
    u->type = 1;
    u->n = n;
    u->old.x = m->x[n];
}

static void rollback(struct model *m)
{
    while (m->nlog > 0) {
        struct undo *u = &m->log[--m->nlog];
        if (u->type == 0)
            m->a[u->n] = u->old.a;
        else
            m->x[u->n] = u->old.x;
    }
}

static struct macct *acct_of(struct model *m, const uint8_t *id)
{
    size_t n = id_num(id, K_ACCT, NA);
    return n && m->a[n].bound && m->a[n].outcome == VS_ACCT_OK ? &m->a[n] : NULL;
}

static size_t xnum(const uint8_t *id)
{
    return id_num(id, K_XFER, NX);
}

static bool name_ok(const char *s)
{
    size_t n = strnlen(s, VS_LEDGER_NAME_MAX);
    if (n == VS_LEDGER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool acct_same_body(const struct vs_account *a, const struct vs_account *b)
{
    return !memcmp(a->id, b->id, ID) && a->ledger == b->ledger && a->code == b->code &&
           a->flags == b->flags && !memcmp(a->user_data_128, b->user_data_128, ID) &&
           a->user_data_64 == b->user_data_64 && !strncmp(a->name, b->name, VS_LEDGER_NAME_MAX) &&
           !strncmp(a->owner, b->owner, VS_LEDGER_NAME_MAX) &&
           a->has_public_key == b->has_public_key &&
           !memcmp(a->public_key, b->public_key, VS_LEDGER_KEY_LEN);
}

static bool xfer_same_body(const struct vs_transfer *a, const struct vs_transfer *b)
{
    return !memcmp(a->id, b->id, ID) && !memcmp(a->debit_account_id, b->debit_account_id, ID) &&
           !memcmp(a->credit_account_id, b->credit_account_id, ID) &&
           !memcmp(a->pending_id, b->pending_id, ID) &&
           !memcmp(a->user_data_128, b->user_data_128, ID) && a->amount == b->amount &&
           a->user_data_64 == b->user_data_64 && a->timeout_ms == b->timeout_ms &&
           a->ledger == b->ledger && a->code == b->code && a->flags == b->flags;
}

/* Account creation: the allowed results; *replay the first outcome when the
 * same body is bound. */
static uint64_t acct_expect(struct model *m, const struct vs_account *a, int *replay)
{
    *replay = -1;
    uint64_t bad = 0;
    if (zero(a->id))
        bad |= BIT(VS_ACCT_ID_MUST_NOT_BE_ZERO);
    if (a->flags & ~3u)
        bad |= BIT(VS_ACCT_FLAGS_UNKNOWN);
    if ((a->flags & 3u) == 3u)
        bad |= BIT(VS_ACCT_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    if (a->ledger == 0)
        bad |= BIT(VS_ACCT_LEDGER_MUST_NOT_BE_ZERO);
    if (a->code == 0)
        bad |= BIT(VS_ACCT_CODE_MUST_NOT_BE_ZERO);
    if (!name_ok(a->name) || !name_ok(a->owner))
        bad |= BIT(VS_ACCT_NAME_INVALID);
    size_t n = id_num(a->id, K_ACCT, NA);
    if (n && m->a[n].bound) {
        if (acct_same_body(&m->a[n].body, a)) {
            *replay = m->a[n].outcome;
            return BIT(m->a[n].outcome);
        }
        return bad | BIT(VS_ACCT_EXISTS_WITH_DIFFERENT_BODY);
    }
    if (name_ok(a->name) && a->name[0])
        for (size_t k = 1; k <= m->na; k++)
            if (m->a[k].bound && m->a[k].outcome == VS_ACCT_OK &&
                !strcmp(m->a[k].body.name, a->name))
                bad |= BIT(VS_ACCT_NAME_TAKEN);
    return bad ? bad : BIT(VS_ACCT_OK);
}

static void acct_bind(struct model *m, const struct vs_account *a, int outcome)
{
    size_t n = id_num(a->id, K_ACCT, NA);
    if (!n || m->a[n].bound)
        return;
    struct macct *ma = &m->a[n];
    memset(ma, 0, sizeof *ma);
    ma->tried = true;
    ma->body = *a;
    ma->outcome = outcome;
    ma->bound = outcome == VS_ACCT_OK;
}

static bool add3_over(uint64_t a, uint64_t b, uint64_t c, uint64_t limit)
{
    unsigned __int128 s = (unsigned __int128)a + b + c;
    return s > limit;
}

/* The rules that need no lookup; *known: what the transfer is is known
 * (its flags are valid). */
static uint64_t xfer_static(const struct vs_transfer *x, bool *known)
{
    uint64_t bad = 0;
    if (zero(x->id))
        bad |= BIT(VS_XFER_ID_MUST_NOT_BE_ZERO);
    if (x->flags & ~0xfu)
        bad |= BIT(VS_XFER_FLAGS_UNKNOWN);
    unsigned mode = x->flags & (VS_TRANSFER_PENDING | VS_TRANSFER_POST_PENDING |
                                VS_TRANSFER_VOID_PENDING);
    if (mode & (mode - 1))
        bad |= BIT(VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE);
    *known = !(bad & (BIT(VS_XFER_FLAGS_UNKNOWN) | BIT(VS_XFER_FLAGS_ARE_MUTUALLY_EXCLUSIVE)));
    if (!*known)
        return bad; /* what it is depends on the flags */
    bool resolve = mode & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING);
    bool pending = mode & VS_TRANSFER_PENDING;
    if (resolve) {
        if (zero(x->pending_id))
            bad |= BIT(VS_XFER_PENDING_ID_MUST_NOT_BE_ZERO);
        else if (!memcmp(x->pending_id, x->id, ID))
            bad |= BIT(VS_XFER_PENDING_ID_MUST_BE_DIFFERENT);
        if (x->timeout_ms)
            bad |= BIT(VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
    } else {
        if (!zero(x->pending_id))
            bad |= BIT(VS_XFER_PENDING_ID_MUST_BE_ZERO);
        if (x->timeout_ms && !pending)
            bad |= BIT(VS_XFER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER);
        if (zero(x->debit_account_id))
            bad |= BIT(VS_XFER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
        if (zero(x->credit_account_id))
            bad |= BIT(VS_XFER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO);
        if (!zero(x->debit_account_id) && !memcmp(x->debit_account_id, x->credit_account_id, ID))
            bad |= BIT(VS_XFER_ACCOUNTS_MUST_BE_DIFFERENT);
        if (x->ledger == 0)
            bad |= BIT(VS_XFER_LEDGER_MUST_NOT_BE_ZERO);
        if (x->code == 0)
            bad |= BIT(VS_XFER_CODE_MUST_NOT_BE_ZERO);
        if (x->amount == 0)
            bad |= BIT(VS_XFER_AMOUNT_MUST_NOT_BE_ZERO);
    }
    return bad;
}

/* A transfer against the current model state: the set of allowed results.
 * *replay: the first outcome when the same body is bound, else -1. */
static uint64_t xfer_expect(struct model *m, const struct vs_transfer *x, int *replay)
{
    *replay = -1;
    bool known;
    uint64_t bad = xfer_static(x, &known);
    /* The id: the first outcome, or a different body. */
    size_t n = zero(x->id) ? 0 : xnum(x->id);
    if (n && m->x[n].bound) {
        if (xfer_same_body(&m->x[n].body, x)) {
            *replay = m->x[n].outcome;
            return BIT(m->x[n].outcome);
        }
        return bad | BIT(VS_XFER_EXISTS_WITH_DIFFERENT_BODY);
    }
    if (!known)
        return bad;
    unsigned mode = x->flags & (VS_TRANSFER_PENDING | VS_TRANSFER_POST_PENDING |
                                VS_TRANSFER_VOID_PENDING);
    bool resolve = mode & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING);
    bool pending = mode & VS_TRANSFER_PENDING;
    if (pending && x->timeout_ms &&
        (x->timeout_ms > UINT64_MAX / MS || x->timeout_ms * MS > UINT64_MAX - m->now))
        bad |= BIT(VS_XFER_OVERFLOWS_TIMEOUT);
    /* Rules that look things up (in no stated order relative to the rest). */
    if (!resolve) {
        struct macct *dr = zero(x->debit_account_id) ? NULL : acct_of(m, x->debit_account_id);
        struct macct *cr = zero(x->credit_account_id) ? NULL : acct_of(m, x->credit_account_id);
        if (!zero(x->debit_account_id) && !dr)
            bad |= BIT(VS_XFER_DEBIT_ACCOUNT_NOT_FOUND);
        if (!zero(x->credit_account_id) && !cr)
            bad |= BIT(VS_XFER_CREDIT_ACCOUNT_NOT_FOUND);
        if (dr && cr && dr != cr) {
            if (dr->body.ledger != cr->body.ledger)
                bad |= BIT(VS_XFER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER);
            else if (x->ledger != dr->body.ledger)
                bad |= BIT(VS_XFER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS);
            uint64_t amt = x->amount;
            if (add3_over(dr->dp, dr->dpo, amt, UINT64_MAX))
                bad |= BIT(VS_XFER_OVERFLOWS_DEBITS);
            if (add3_over(cr->cp, cr->cpo, amt, UINT64_MAX))
                bad |= BIT(VS_XFER_OVERFLOWS_CREDITS);
            if ((dr->body.flags & VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
                add3_over(dr->dp, dr->dpo, amt, dr->cpo))
                bad |= BIT(VS_XFER_EXCEEDS_CREDITS);
            if ((cr->body.flags & VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
                add3_over(cr->cp, cr->cpo, amt, cr->dpo))
                bad |= BIT(VS_XFER_EXCEEDS_DEBITS);
        }
    } else if (!zero(x->pending_id) && memcmp(x->pending_id, x->id, ID)) {
        size_t pn = xnum(x->pending_id);
        struct mxfer *p = pn && m->x[pn].bound ? &m->x[pn] : NULL;
        if (!p) {
            bad |= BIT(VS_XFER_PENDING_TRANSFER_NOT_FOUND);
        } else if (p->outcome != VS_XFER_OK) {
            /* an id bound to a failure: no transfer, but known */
            bad |= BIT(VS_XFER_PENDING_TRANSFER_NOT_FOUND) |
                   BIT(VS_XFER_PENDING_TRANSFER_NOT_PENDING);
        } else if (p->kind != XK_PENDING) {
            bad |= BIT(VS_XFER_PENDING_TRANSFER_NOT_PENDING);
        } else {
            uint8_t id[ID];
            mkid(id, K_ACCT, p->dr);
            bool dr_diff = !zero(x->debit_account_id) && memcmp(x->debit_account_id, id, ID);
            mkid(id, K_ACCT, p->cr);
            bool cr_diff = !zero(x->credit_account_id) && memcmp(x->credit_account_id, id, ID);
            if (dr_diff || cr_diff)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS);
            if (x->ledger && x->ledger != p->ledger)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER);
            if (x->code && x->code != p->code)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_HAS_DIFFERENT_CODE);
            if (p->state == VS_PENDING_POSTED)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_ALREADY_POSTED);
            else if (p->state == VS_PENDING_VOIDED)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_ALREADY_VOIDED);
            else if (p->state == VS_PENDING_EXPIRED)
                bad |= BIT(VS_XFER_PENDING_TRANSFER_EXPIRED);
            if (x->amount > p->amount)
                bad |= BIT(VS_XFER_EXCEEDS_PENDING_TRANSFER_AMOUNT);
        }
    }
    return bad ? bad : BIT(VS_XFER_OK);
}

/* Apply a transfer the model accepted. */
static void xfer_apply(struct model *m, const struct vs_transfer *x)
{
    size_t n = xnum(x->id);
    assert_true(n > 0);
    log_xfer(m, n);
    struct mxfer *r = &m->x[n];
    memset(r, 0, sizeof *r);
    r->bound = true;
    r->outcome = VS_XFER_OK;
    r->batch = m->batch;
    r->body = *x;
    r->seq = ++m->seq;
    r->touched = true;
    if (x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)) {
        size_t pn = xnum(x->pending_id);
        struct mxfer *p = &m->x[pn];
        log_xfer(m, pn);
        log_acct(m, p->dr);
        log_acct(m, p->cr);
        bool post = x->flags & VS_TRANSFER_POST_PENDING;
        uint64_t amt = post ? (x->amount ? x->amount : p->amount) : 0;
        m->a[p->dr].dp -= p->amount;
        m->a[p->cr].cp -= p->amount;
        m->a[p->dr].dpo += amt;
        m->a[p->cr].cpo += amt;
        p->state = post ? VS_PENDING_POSTED : VS_PENDING_VOIDED;
        p->touched = true;
        r->kind = post ? XK_POST : XK_VOID;
        r->dr = p->dr;
        r->cr = p->cr;
        r->amount = post ? amt : x->amount;
        r->ledger = p->ledger;
        r->code = p->code;
        r->pnum = (uint32_t)pn;
        return;
    }
    size_t dr = id_num(x->debit_account_id, K_ACCT, NA);
    size_t cr = id_num(x->credit_account_id, K_ACCT, NA);
    log_acct(m, dr);
    log_acct(m, cr);
    r->dr = (uint16_t)dr;
    r->cr = (uint16_t)cr;
    r->amount = x->amount;
    r->ledger = x->ledger;
    r->code = x->code;
    if (x->flags & VS_TRANSFER_PENDING) {
        r->kind = XK_PENDING;
        r->state = VS_PENDING_OPEN;
        r->deadline = x->timeout_ms ? m->now + x->timeout_ms * MS : 0;
        m->a[dr].dp += x->amount;
        m->a[cr].cp += x->amount;
        m->holds[m->nholds++] = (uint32_t)n; /* a rollback truncates it */
    } else {
        r->kind = XK_PLAIN;
        m->a[dr].dpo += x->amount;
        m->a[cr].cpo += x->amount;
    }
}

/* Bind an id to a failure (when it was free). */
static void xfer_bind_failure(struct model *m, const struct vs_transfer *x, int outcome)
{
    size_t n = zero(x->id) ? 0 : xnum(x->id);
    if (!n || m->x[n].bound)
        return;
    struct mxfer *r = &m->x[n];
    memset(r, 0, sizeof *r);
    r->bound = true;
    r->outcome = outcome;
    r->batch = m->batch;
    r->body = *x;
    r->touched = true;
}

/* Expire what is due at the model's time. */
static void model_expire(struct model *m)
{
    m->nexpired = 0;
    for (size_t i = 0; i < m->nholds; i++) {
        struct mxfer *p = &m->x[m->holds[i]];
        if (!p->bound || p->outcome != VS_XFER_OK || p->state != VS_PENDING_OPEN ||
            !p->deadline || p->deadline > m->now)
            continue;
        p->state = VS_PENDING_EXPIRED;
        p->touched = true;
        m->a[p->dr].dp -= p->amount;
        m->a[p->cr].cp -= p->amount;
        m->expired[m->nexpired++] = m->holds[i];
    }
}

/* ---- the generator --------------------------------------------------------------- */

struct gen {
    struct model *m;
    size_t created[NA]; /* account numbers created OK */
    size_t ncreated;
};

static void refresh_created(struct gen *g)
{
    g->ncreated = 0;
    for (size_t n = 1; n <= g->m->na; n++)
        if (g->m->a[n].bound && g->m->a[n].outcome == VS_ACCT_OK)
            g->created[g->ncreated++] = n;
}

/* A created account on ledger (0: any) with flags (-1: any), else 0. */
static size_t pick_acct(struct gen *g, uint32_t ledger, int flags, size_t not)
{
    if (g->ncreated == 0)
        return 0;
    size_t start = (size_t)rn(g->ncreated);
    for (size_t k = 0; k < g->ncreated; k++) {
        size_t n = g->created[(start + k) % g->ncreated];
        const struct vs_account *b = &g->m->a[n].body;
        if (n != not && (!ledger || b->ledger == ledger) && (flags < 0 || b->flags == flags))
            return n;
    }
    return 0;
}

static size_t ghost_acct(void)
{
    return NA + 1 + (size_t)rn(1000);
}

static void new_xfer_id(struct model *m, struct vs_transfer *x)
{
    memset(x, 0, sizeof *x);
    assert_true(m->nx < NX);
    mkid(x->id, K_XFER, ++m->nx);
}

static void gen_move(struct gen *g, struct vs_transfer *x, bool pending)
{
    new_xfer_id(g->m, x);
    uint32_t ledger = chance(85) ? 1 : 2;
    size_t dr = 0, cr = 0;
    unsigned r = (unsigned)rn(100);
    if (r < 30) { /* fund a limited wallet */
        dr = pick_acct(g, ledger, 0, 0);
        cr = pick_acct(g, ledger, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, dr);
    } else if (r < 55) { /* a wallet spends */
        dr = pick_acct(g, ledger, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, 0);
        cr = pick_acct(g, ledger, -1, dr);
    } else if (r < 62) { /* into a debits-first account */
        dr = pick_acct(g, ledger, -1, 0);
        cr = pick_acct(g, ledger, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, dr);
    } else if (r < 70) { /* out of one */
        dr = pick_acct(g, ledger, VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS, 0);
        cr = pick_acct(g, ledger, -1, dr);
    } else {
        dr = pick_acct(g, ledger, -1, 0);
        cr = pick_acct(g, ledger, -1, dr);
    }
    if (!dr)
        dr = pick_acct(g, ledger, -1, cr);
    if (!cr)
        cr = pick_acct(g, ledger, -1, dr);
    if (!dr || !cr || dr == cr) {
        dr = pick_acct(g, 0, -1, 0);
        cr = pick_acct(g, 0, -1, dr);
    }
    if (dr)
        mkid(x->debit_account_id, K_ACCT, dr);
    if (cr)
        mkid(x->credit_account_id, K_ACCT, cr);
    x->ledger = dr ? g->m->a[dr].body.ledger : ledger;
    x->code = (uint16_t)(1 + rn(3));
    x->amount = chance(80) ? 1 + rn(60) : 60 + rn(400);
    x->user_data_64 = rnd();
    if (chance(50))
        mkid(x->user_data_128, K_TASK, 1 + rn(NTASK));
    if (pending) {
        x->flags = VS_TRANSFER_PENDING;
        x->timeout_ms = chance(40) ? 0 : 1 + 2 * rn(100); /* odd milliseconds */
    }
}

/* A hold to post or void: open (mostly), any, not a hold, failed, unknown. */
static size_t pick_hold_ref(struct gen *g, bool *ghost)
{
    struct model *m = g->m;
    *ghost = false;
    unsigned r = (unsigned)rn(100);
    if (r < 80 && m->nholds) {
        size_t recent = m->nholds < 512 ? m->nholds : 512;
        for (size_t k = 0; k < 64; k++) {
            size_t n = m->holds[m->nholds - 1 - (size_t)rn(recent)];
            const struct mxfer *p = &m->x[n];
            if (p->bound && p->outcome == VS_XFER_OK && (r >= 62 || p->state == VS_PENDING_OPEN))
                return n;
        }
    }
    if (r < 92 && m->nx > 0) {
        for (int k = 0; k < 16; k++) {
            size_t n = 1 + (size_t)rn(m->nx);
            if (m->x[n].bound && (r >= 87 || m->x[n].outcome == VS_XFER_OK))
                return n;
        }
    }
    *ghost = true;
    return 0;
}

static void gen_resolve_of(struct gen *g, struct vs_transfer *x, bool post, size_t pn,
                           const struct vs_transfer *pb)
{
    new_xfer_id(g->m, x);
    x->flags = post ? VS_TRANSFER_POST_PENDING : VS_TRANSFER_VOID_PENDING;
    if (pn)
        mkid(x->pending_id, K_XFER, pn);
    else
        mkid(x->pending_id, K_GHOST, rnd());
    bool hold = pb && (pb->flags & VS_TRANSFER_PENDING);
    if (post) {
        unsigned r = (unsigned)rn(100);
        if (!hold)
            x->amount = rn(50);
        else if (r < 40)
            x->amount = 0;
        else if (r < 85)
            x->amount = 1 + rn(pb->amount);
        else if (r < 92)
            x->amount = pb->amount + 1 + rn(5);
        else
            x->amount = pb->amount;
    }
    if (hold && chance(20)) {
        memcpy(x->debit_account_id, pb->debit_account_id, ID);
        memcpy(x->credit_account_id, pb->credit_account_id, ID);
    } else if (hold && chance(5)) {
        mkid(x->debit_account_id, K_ACCT, pick_acct(g, 0, -1, 0));
    } else if (hold && chance(3)) {
        memcpy(x->credit_account_id, pb->debit_account_id, ID);
    }
    if (hold && chance(10))
        x->ledger = pb->ledger;
    else if (hold && chance(4))
        x->ledger = pb->ledger + 5;
    if (hold && chance(10))
        x->code = pb->code;
    else if (hold && chance(3))
        x->code = (uint16_t)(pb->code + 1);
    x->user_data_64 = rnd();
}

static void gen_resolve(struct gen *g, struct vs_transfer *x, bool post)
{
    bool ghost;
    size_t pn = pick_hold_ref(g, &ghost);
    const struct vs_transfer *pb = NULL;
    if (pn && g->m->x[pn].bound && g->m->x[pn].outcome == VS_XFER_OK)
        pb = &g->m->x[pn].body;
    gen_resolve_of(g, x, post, ghost ? 0 : pn, pb);
}

/* One rule broken on purpose (the model works out the codes). */
static void gen_invalid(struct gen *g, struct vs_transfer *x)
{
    unsigned r = (unsigned)rn(19);
    if (r >= 16) {
        gen_resolve(g, x, chance(50));
    } else {
        gen_move(g, x, chance(40));
    }
    switch (r) {
    case 0:
        memset(x->id, 0, ID);
        break;
    case 1:
        x->flags |= chance(50) ? 1u << 4 : 0x4000;
        break;
    case 2:
        x->flags |= VS_TRANSFER_PENDING | VS_TRANSFER_VOID_PENDING;
        break;
    case 3:
        mkid(x->pending_id, K_XFER, 1 + rn(g->m->nx));
        break;
    case 4:
        x->flags &= (uint16_t)~VS_TRANSFER_PENDING;
        x->timeout_ms = 1 + 2 * rn(10);
        break;
    case 5:
        memset(x->debit_account_id, 0, ID);
        break;
    case 6:
        memset(x->credit_account_id, 0, ID);
        break;
    case 7:
        memcpy(x->credit_account_id, x->debit_account_id, ID);
        break;
    case 8:
        x->ledger = 0;
        break;
    case 9:
        x->code = 0;
        break;
    case 10:
        x->amount = 0;
        break;
    case 11:
        mkid(x->debit_account_id, K_ACCT, ghost_acct());
        break;
    case 12:
        mkid(x->credit_account_id, K_ACCT, ghost_acct());
        break;
    case 13:
        x->ledger = x->ledger == 1 ? 2 : 1;
        break;
    case 14: { /* accounts on different ledgers */
        size_t a1 = pick_acct(g, 1, -1, 0), a2 = pick_acct(g, 2, -1, 0);
        if (a1 && a2) {
            mkid(x->debit_account_id, K_ACCT, a1);
            mkid(x->credit_account_id, K_ACCT, a2);
        }
        break;
    }
    case 15:
        x->flags = VS_TRANSFER_PENDING;
        x->timeout_ms = chance(50) ? UINT64_MAX : 18000000000000ull;
        break;
    case 16:
        memset(x->pending_id, 0, ID);
        break;
    case 17:
        memcpy(x->pending_id, x->id, ID);
        break;
    case 18:
        x->timeout_ms = 3;
        break;
    default:
        break;
    }
}

/* A retry of an id bound in an earlier batch: the same body or another. */
static bool gen_retry(struct gen *g, struct vs_transfer *x)
{
    struct model *m = g->m;
    for (int k = 0; k < 32 && m->nx; k++) {
        size_t n = 1 + (size_t)rn(m->nx);
        const struct mxfer *r = &m->x[n];
        if (!r->bound || r->batch >= m->batch || (r->body.flags & VS_TRANSFER_LINKED))
            continue;
        *x = r->body;
        if (chance(30)) {
            if (chance(50))
                x->amount += 1;
            else
                x->user_data_64 ^= 1;
        }
        return true;
    }
    return false;
}

/* A chain of 2..5 fresh transfers, some made to fail. Returns its length. */
static size_t gen_chain(struct gen *g, struct vs_transfer *xs, size_t room)
{
    size_t len = 2 + (size_t)rn(4);
    if (len > room)
        len = room;
    for (size_t i = 0; i < len; i++) {
        unsigned r = (unsigned)rn(100);
        if (r < 45) {
            gen_move(g, &xs[i], false);
        } else if (r < 70) {
            gen_move(g, &xs[i], true);
        } else if (r < 85 && i > 0 && (xs[i - 1].flags & VS_TRANSFER_PENDING)) {
            /* resolve the hold just before it in the chain */
            struct vs_transfer pb = xs[i - 1];
            gen_resolve_of(g, &xs[i], chance(70), xnum(pb.id), &pb);
        } else {
            gen_resolve(g, &xs[i], chance(60));
        }
    }
    if (chance(30)) { /* fail one on purpose */
        struct vs_transfer *x = &xs[rn(len)];
        switch (rn(3)) {
        case 0:
            if (!(x->flags & (VS_TRANSFER_POST_PENDING | VS_TRANSFER_VOID_PENDING)))
                x->amount = 0;
            else
                memset(x->pending_id, 0, ID);
            break;
        case 1:
            mkid(x->credit_account_id, K_ACCT, ghost_acct());
            break;
        default:
            x->amount += 1000000;
            break;
        }
    }
    for (size_t i = 0; i + 1 < len; i++)
        xs[i].flags |= VS_TRANSFER_LINKED;
    return len;
}

static void gen_account(struct gen *g, struct vs_account *a)
{
    struct model *m = g->m;
    memset(a, 0, sizeof *a);
    unsigned r = (unsigned)rn(100);
    if (r < 18 && m->na > 0) { /* a retry, same or changed */
        size_t n = 1 + (size_t)rn(m->na);
        if (m->a[n].tried) {
            *a = m->a[n].body;
            if (chance(50))
                a->code = (uint16_t)(a->code + 1);
            return;
        }
    }
    if (m->na >= NA) { /* no room: a retry of the first */
        *a = m->a[1].body;
        return;
    }
    size_t n = ++m->na;
    mkid(a->id, K_ACCT, n);
    a->ledger = chance(80) ? 1 : 2;
    a->code = (uint16_t)(1 + rn(4));
    unsigned f = (unsigned)rn(100);
    a->flags = f < 50 ? 0 : f < 80 ? VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
                                   : VS_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    if (chance(60))
        snprintf(a->name, sizeof a->name, "acct-%zu", n);
    if (chance(40))
        snprintf(a->owner, sizeof a->owner, "owner-%u", (unsigned)rn(5));
    a->user_data_64 = rnd();
    if (chance(30))
        mkid(a->user_data_128, K_TASK, rnd());
    if (chance(40)) {
        a->has_public_key = true;
        for (int i = 0; i < VS_LEDGER_KEY_LEN; i++)
            a->public_key[i] = (uint8_t)rnd();
    }
    if (r >= 18 && r < 45) { /* one rule broken */
        switch (rn(8)) {
        case 0:
            memset(a->id, 0, ID);
            break;
        case 1:
            a->ledger = 0;
            break;
        case 2:
            a->code = 0;
            break;
        case 3:
            a->flags = 3;
            break;
        case 4:
            a->flags = 1u << 3;
            break;
        case 5:
            if (chance(50))
                memset(a->name, 'x', sizeof a->name);
            else
                snprintf(a->name, sizeof a->name, "bad\x01name");
            break;
        default: { /* a taken name */
            size_t k = pick_acct(g, 0, -1, 0);
            if (k && g->m->a[k].body.name[0])
                memcpy(a->name, g->m->a[k].body.name, sizeof a->name);
            break;
        }
        }
    }
}

/* ---- the store side ------------------------------------------------------------------ */

struct batch {
    size_t na;
    struct vs_account accts[16];
    int ares[16];
    bool arep[16];
    size_t ncalls;
    size_t cstart[3], clen[3];
    size_t nx;
    struct vs_transfer xs[MAXB + 8];
    int xres[MAXB + 8];
    bool xrep[MAXB + 8];
    uint64_t txn_now;
    int applies;
    /* expiry callbacks seen */
    int exp_attempt;
    size_t nexp;
    uint8_t exp[512][ID];
};

static int batch_apply(vs_ledger_txn *t, void *arg)
{
    struct batch *b = arg;
    b->applies++;
    b->txn_now = vs_ledger_txn_now(t);
    for (size_t i = 0; i < b->na; i++) {
        b->arep[i] = false;
        int rc = vs_ledger_create_account(t, &b->accts[i], &b->arep[i]);
        if (rc < 0)
            return rc;
        b->ares[i] = rc;
    }
    for (size_t c = 0; c < b->ncalls; c++) {
        for (size_t i = b->cstart[c]; i < b->cstart[c] + b->clen[c]; i++) {
            b->xres[i] = -1;
            b->xrep[i] = false;
        }
        int rc = vs_ledger_create_transfers(t, b->xs + b->cstart[c], b->clen[c],
                                            b->xres + b->cstart[c], b->xrep + b->cstart[c]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int on_expired(vs_ledger_txn *t, const struct vs_transfer *x, void *arg)
{
    (void)t;
    struct batch *b = arg;
    if (b->applies != b->exp_attempt) { /* the write was restarted: start over */
        b->exp_attempt = b->applies;
        b->nexp = 0;
    }
    if (b->nexp < 512)
        memcpy(b->exp[b->nexp], x->id, ID);
    b->nexp++;
    return 0;
}

/* ---- comparing the store with the model ------------------------------------------------ */

struct cmp {
    struct model *m;
    bool full;
    char err[512];
    struct vs_ledger_totals tot;
    /* history / holds collection */
    size_t n;
    uint32_t got[NX];
    uint64_t last_ts;
    bool order_bad;
};

static int cmp_fail(struct cmp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cmp_fail(struct cmp *c, const char *fmt, ...)
{
    if (!c->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
    }
    return 1;
}

static int collect_cb(const struct vs_transfer *x, enum vs_pending_state st, void *arg)
{
    struct cmp *c = arg;
    (void)st;
    if (x->timestamp <= c->last_ts)
        c->order_bad = true;
    c->last_ts = x->timestamp;
    size_t n = xnum(x->id);
    if (c->n < NX)
        c->got[c->n] = (uint32_t)n;
    c->n++;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int check_xfer(vs_ledger_txn *t, struct cmp *c, size_t n)
{
    struct model *m = c->m;
    const struct mxfer *r = &m->x[n];
    uint8_t id[ID];
    mkid(id, K_XFER, n);
    struct vs_transfer got;
    enum vs_pending_state st = VS_PENDING_NONE;
    uint64_t dl = 0;
    int rc = vs_ledger_transfer(t, id, &got, &st, &dl);
    if (!r->bound || r->outcome != VS_XFER_OK) {
        if (rc != -ENOENT)
            return cmp_fail(c, "transfer %zu (%s): lookup %d, want -ENOENT", n,
                            r->bound ? xname(r->outcome) : "never bound", rc);
        return 0;
    }
    if (rc)
        return cmp_fail(c, "transfer %zu: lookup %d", n, rc);
    uint8_t dr[ID], cr[ID];
    mkid(dr, K_ACCT, r->dr);
    mkid(cr, K_ACCT, r->cr);
    if (memcmp(got.debit_account_id, dr, ID) || memcmp(got.credit_account_id, cr, ID))
        return cmp_fail(c, "transfer %zu: other accounts than the model's", n);
    if (r->kind != XK_VOID && got.amount != r->amount)
        return cmp_fail(c, "transfer %zu: amount %" PRIu64 ", model %" PRIu64, n, got.amount,
                        r->amount);
    if (got.ledger != r->ledger || got.code != r->code)
        return cmp_fail(c, "transfer %zu: ledger/code differ", n);
    if (got.user_data_64 != r->body.user_data_64 ||
        memcmp(got.user_data_128, r->body.user_data_128, ID))
        return cmp_fail(c, "transfer %zu: user data differ", n);
    if (memcmp(got.id, id, ID) || got.flags != r->body.flags ||
        got.timeout_ms != r->body.timeout_ms || memcmp(got.pending_id, r->body.pending_id, ID))
        return cmp_fail(c, "transfer %zu: id, flags, timeout or pending id differ", n);
    if (c->full) { /* timestamps: unique and increasing in creation order */
        if (got.timestamp <= c->last_ts)
            return cmp_fail(c, "transfer %zu: timestamp %" PRIu64 " not after the one before",
                            n, got.timestamp);
        c->last_ts = got.timestamp;
    }
    enum vs_pending_state want = r->kind == XK_PENDING ? (enum vs_pending_state)r->state
                                                       : VS_PENDING_NONE;
    if (st != want)
        return cmp_fail(c, "transfer %zu: state %d, model %d", n, (int)st, (int)want);
    if (r->kind == XK_PENDING) {
        if (!r->deadline ? dl != 0 : (dl < r->deadline || dl >= r->deadline + MS))
            return cmp_fail(c, "transfer %zu: deadline %" PRIu64 ", model %" PRIu64, n, dl,
                            r->deadline);
    } else if (dl != 0) {
        return cmp_fail(c, "transfer %zu: a deadline on a transfer that is not a hold", n);
    }
    return 0;
}

static int cmp_apply(vs_ledger_txn *t, void *arg)
{
    struct cmp *c = arg;
    struct model *m = c->m;
    memset(&c->tot, 0, sizeof c->tot);
    int rc = vs_ledger_check(t, &c->tot);
    if (rc)
        return cmp_fail(c, "vs_ledger_check: %d (%s)", rc, c->tot.problem);
    /* Totals. */
    uint64_t accounts = 0, transfers = 0, open = 0, dp = 0, dpo = 0, cp = 0, cpo = 0;
    uint64_t next = 0;
    for (size_t n = 1; n <= m->na; n++)
        if (m->a[n].bound && m->a[n].outcome == VS_ACCT_OK) {
            accounts++;
            dp += m->a[n].dp;
            dpo += m->a[n].dpo;
            cp += m->a[n].cp;
            cpo += m->a[n].cpo;
        }
    for (size_t n = 1; n <= m->nx; n++) {
        const struct mxfer *r = &m->x[n];
        if (!r->bound || r->outcome != VS_XFER_OK)
            continue;
        transfers++;
        if (r->kind == XK_PENDING && r->state == VS_PENDING_OPEN) {
            open++;
            if (r->deadline && (!next || r->deadline < next))
                next = r->deadline;
        }
    }
    if (c->tot.accounts != accounts || c->tot.transfers != transfers ||
        c->tot.pending_open != open || c->tot.debits_pending != dp ||
        c->tot.debits_posted != dpo || c->tot.credits_pending != cp ||
        c->tot.credits_posted != cpo)
        return cmp_fail(c,
                        "totals: store %" PRIu64 " accounts %" PRIu64 " transfers %" PRIu64
                        " open %" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64
                        ", model %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "/%" PRIu64
                        "/%" PRIu64 "/%" PRIu64,
                        c->tot.accounts, c->tot.transfers, c->tot.pending_open,
                        c->tot.debits_pending, c->tot.debits_posted, c->tot.credits_pending,
                        c->tot.credits_posted, accounts, transfers, open, dp, dpo, cp, cpo);
    uint64_t dl = 1;
    if ((rc = vs_ledger_next_deadline(t, &dl)))
        return cmp_fail(c, "next_deadline: %d", rc);
    if (!next ? dl != 0 : (dl < next || dl >= next + MS))
        return cmp_fail(c, "next deadline %" PRIu64 ", model %" PRIu64, dl, next);
    /* Accounts. */
    for (size_t n = 1; n <= m->na; n++) {
        const struct macct *a = &m->a[n];
        uint8_t id[ID];
        mkid(id, K_ACCT, n);
        struct vs_account got;
        rc = vs_ledger_account(t, id, &got);
        if (!a->bound || a->outcome != VS_ACCT_OK) {
            if (rc != -ENOENT)
                return cmp_fail(c, "account %zu (%s): lookup %d, want -ENOENT", n,
                                a->bound ? aname(a->outcome) : "never bound", rc);
            continue;
        }
        if (rc)
            return cmp_fail(c, "account %zu: lookup %d", n, rc);
        if (got.debits_pending != a->dp || got.debits_posted != a->dpo ||
            got.credits_pending != a->cp || got.credits_posted != a->cpo)
            return cmp_fail(c,
                            "account %zu: balances %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                            ", model %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
                            n, got.debits_pending, got.debits_posted, got.credits_pending,
                            got.credits_posted, a->dp, a->dpo, a->cp, a->cpo);
        if (got.flags != a->body.flags || got.ledger != a->body.ledger ||
            got.code != a->body.code || strcmp(got.name, a->body.name) ||
            strcmp(got.owner, a->body.owner) || got.user_data_64 != a->body.user_data_64 ||
            memcmp(got.user_data_128, a->body.user_data_128, ID) ||
            got.has_public_key != a->body.has_public_key ||
            (got.has_public_key && memcmp(got.public_key, a->body.public_key, VS_LEDGER_KEY_LEN)))
            return cmp_fail(c, "account %zu: fields differ", n);
        if (a->body.name[0]) {
            struct vs_account byname;
            if (vs_ledger_account_by_name(t, a->body.name, &byname) ||
                memcmp(byname.id, id, ID))
                return cmp_fail(c, "account %zu: not found by its name %s", n, a->body.name);
        }
    }
    /* Transfers: what changed (all of them on a full check) and every open hold. */
    c->last_ts = 0;
    for (size_t n = 1; n <= m->nx; n++) {
        const struct mxfer *r = &m->x[n];
        bool open_hold = r->bound && r->outcome == VS_XFER_OK && r->kind == XK_PENDING &&
                         r->state == VS_PENDING_OPEN;
        if (c->full || r->touched || open_hold)
            if (check_xfer(t, c, n))
                return 1;
    }
    if (!c->full)
        return 0;
    /* History and holds of each account, holds of each task. */
    for (size_t a = 1; a <= m->na; a++) {
        if (!m->a[a].bound || m->a[a].outcome != VS_ACCT_OK)
            continue;
        uint8_t id[ID];
        mkid(id, K_ACCT, a);
        c->n = 0;
        c->last_ts = 0;
        c->order_bad = false;
        if ((rc = vs_ledger_history(t, id, 0, 0, collect_cb, c)) < 0)
            return cmp_fail(c, "history: %d", rc);
        if (c->order_bad)
            return cmp_fail(c, "account %zu: history not in timestamp order", a);
        /* The model's, in creation order (the numbers of successful
         * transfers are in creation order too). */
        size_t k = 0;
        uint64_t last = 0;
        bool bad = false;
        for (size_t n = 1; n <= m->nx; n++) {
            const struct mxfer *r = &m->x[n];
            if (!r->bound || r->outcome != VS_XFER_OK || (r->dr != a && r->cr != a))
                continue;
            assert_true(r->seq > last);
            last = r->seq;
            if (k >= c->n || c->got[k] != n)
                bad = true;
            k++;
        }
        if (bad || k != c->n)
            return cmp_fail(c, "account %zu: history of %zu transfers, model %zu (or in "
                               "another order)",
                            a, c->n, k);
        /* Open holds. */
        c->n = 0;
        c->last_ts = 0;
        if ((rc = vs_ledger_pending(t, id, NULL, collect_cb, c)) < 0)
            return cmp_fail(c, "pending: %d", rc);
        qsort(c->got, c->n < NX ? c->n : NX, sizeof c->got[0], cmp_u32);
        k = 0;
        bad = false;
        for (size_t n = 1; n <= m->nx; n++) {
            const struct mxfer *r = &m->x[n];
            if (r->bound && r->outcome == VS_XFER_OK && r->kind == XK_PENDING &&
                r->state == VS_PENDING_OPEN && (r->dr == a || r->cr == a)) {
                if (k >= c->n || c->got[k] != n)
                    bad = true;
                k++;
            }
        }
        if (bad || k != c->n)
            return cmp_fail(c, "account %zu: %zu open holds, model %zu", a, c->n, k);
    }
    for (uint64_t task = 1; task <= NTASK; task++) {
        uint8_t id[ID];
        mkid(id, K_TASK, task);
        c->n = 0;
        c->last_ts = 0;
        if ((rc = vs_ledger_pending(t, NULL, id, collect_cb, c)) < 0)
            return cmp_fail(c, "pending by task: %d", rc);
        qsort(c->got, c->n < NX ? c->n : NX, sizeof c->got[0], cmp_u32);
        size_t k = 0;
        bool bad = false;
        for (size_t n = 1; n <= m->nx; n++) {
            const struct mxfer *r = &m->x[n];
            if (r->bound && r->outcome == VS_XFER_OK && r->kind == XK_PENDING &&
                r->state == VS_PENDING_OPEN && !memcmp(r->body.user_data_128, id, ID)) {
                if (k >= c->n || c->got[k] != n)
                    bad = true;
                k++;
            }
        }
        if (bad || k != c->n)
            return cmp_fail(c, "task %" PRIu64 ": %zu open holds, model %zu", task, c->n, k);
    }
    return 0;
}

/* ---- the run --------------------------------------------------------------------------- */

struct stats {
    uint64_t batches, accts, xfers, ok, exact, sets, replays, chains, chain_fail, open_chains,
        expired;
    uint64_t by_code[VS_XFER_RESULT_COUNT];
    uint64_t acct_code[VS_ACCT_RESULT_COUNT], acct_replays;
};

static char *g_dir;
static uint64_t g_seed;

#define MFAIL(fmt, ...)                                                                         \
    fail_msg("seed %" PRIu64 " batch %u: " fmt, g_seed, m->batch, __VA_ARGS__)

static void describe(const struct vs_transfer *x, char *out, size_t n)
{
    snprintf(out, n,
             "id %zu flags %#x dr %02x..%zu cr %02x..%zu pending %02x..%zu amount %" PRIu64
             " ledger %u code %u timeout %" PRIu64,
             xnum(x->id), x->flags, x->debit_account_id[0],
             id_num(x->debit_account_id, x->debit_account_id[0], SIZE_MAX), x->credit_account_id[0],
             id_num(x->credit_account_id, x->credit_account_id[0], SIZE_MAX), x->pending_id[0],
             id_num(x->pending_id, x->pending_id[0], SIZE_MAX), x->amount, x->ledger, x->code,
             x->timeout_ms);
}

/* One result against the allowed set. */
static void check_result(struct model *m, struct stats *s, const struct vs_transfer *x, int got,
                         bool rep, uint64_t mask, int replay)
{
    char want[512], what[256];
    if (!(mask & BIT(got)) || got < 0) {
        mask_str(mask, false, want, sizeof want);
        describe(x, what, sizeof what);
        MFAIL("transfer (%s): %s, model allows %s%s", what, xname(got), want,
              replay >= 0 ? " (a retry of the same body)" : "");
    }
    if (replay >= 0 && !rep) {
        describe(x, what, sizeof what);
        MFAIL("transfer (%s): the retry of its same body returned %s but not as replayed", what,
              xname(got));
    }
    if (replay < 0 && rep && !(mask & BIT(VS_XFER_EXISTS_WITH_DIFFERENT_BODY))) {
        describe(x, what, sizeof what);
        MFAIL("transfer (%s): replayed on its first submission", what);
    }
    if (replay >= 0)
        s->replays++;
    if ((mask & (mask - 1)) == 0)
        s->exact++;
    else
        s->sets++;
    if (got == VS_XFER_OK)
        s->ok++;
    s->by_code[got]++;
}

/* Run the transfers of one call through the model and compare. */
static void model_call(struct model *m, struct stats *s, struct batch *b, size_t start,
                       size_t len)
{
    const struct vs_transfer *xs = b->xs + start;
    const int *res = b->xres + start;
    const bool *rep = b->xrep + start;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && (xs[end].flags & VS_TRANSFER_LINKED))
            end++;
        bool open = end == len;
        size_t clen = (open ? len : end + 1) - i;
        if (clen == 1 && !open) {
            int replay;
            uint64_t mask = xfer_expect(m, &xs[i], &replay);
            check_result(m, s, &xs[i], res[i], rep[i], mask, replay);
            if (replay < 0) {
                if (res[i] == VS_XFER_OK)
                    xfer_apply(m, &xs[i]);
                else if (res[i] != VS_XFER_EXISTS_WITH_DIFFERENT_BODY)
                    xfer_bind_failure(m, &xs[i], res[i]);
            }
            i++;
            continue;
        }
        /* A chain xs[i .. i+clen-1]. */
        s->chains++;
        if (open)
            s->open_chains++;
        m->logging = true;
        m->nlog = 0;
        uint64_t seq = m->seq;
        size_t nholds = m->nholds;
        size_t failed = clen;
        uint64_t fmask = 0;
        for (size_t k = 0; k < clen; k++) {
            int replay;
            uint64_t mask = xfer_expect(m, &xs[i + k], &replay);
            assert_true(replay < 0); /* chains are fresh */
            if (mask != BIT(VS_XFER_OK)) {
                failed = k;
                fmask = mask;
                break;
            }
            xfer_apply(m, &xs[i + k]);
        }
        if (failed == clen && !open) {
            m->logging = false;
            m->nlog = 0;
            for (size_t k = 0; k < clen; k++)
                check_result(m, s, &xs[i + k], res[i + k], rep[i + k], BIT(VS_XFER_OK), -1);
            i += clen;
            continue;
        }
        rollback(m);
        m->logging = false;
        m->seq = seq;
        m->nholds = nholds;
        s->chain_fail++;
        for (size_t k = 0; k < clen; k++) {
            uint64_t mask;
            if (failed == clen)
                mask = BIT(VS_XFER_LINKED_EVENT_CHAIN_OPEN);
            else if (k == failed)
                mask = fmask | (open ? BIT(VS_XFER_LINKED_EVENT_CHAIN_OPEN) : 0);
            else
                mask = BIT(VS_XFER_LINKED_EVENT_FAILED) |
                       (open ? BIT(VS_XFER_LINKED_EVENT_CHAIN_OPEN) : 0);
            check_result(m, s, &xs[i + k], res[i + k], rep[i + k], mask, -1);
        }
        /* Each member's id is bound to its first outcome. */
        for (size_t k = 0; k < clen; k++)
            if (res[i + k] != VS_XFER_EXISTS_WITH_DIFFERENT_BODY)
                xfer_bind_failure(m, &xs[i + k], res[i + k]);
        i += clen;
    }
}

static void build_batch(struct gen *g, struct batch *b, bool first)
{
    struct model *m = g->m;
    memset(b, 0, offsetof(struct batch, exp));
    if (first) {
        /* banks, wallets and debits-first accounts on both ledgers */
        static const struct {
            uint32_t ledger;
            uint16_t flags;
        } seed[] = {{1, 0}, {1, 0}, {2, 0}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 2}, {1, 2}, {2, 1}};
        b->na = sizeof seed / sizeof seed[0];
        assert_true(b->na <= 16);
        for (size_t i = 0; i < b->na; i++) {
            struct vs_account *a = &b->accts[i];
            memset(a, 0, sizeof *a);
            size_t n = ++m->na;
            mkid(a->id, K_ACCT, n);
            a->ledger = seed[i].ledger;
            a->code = 1;
            a->flags = seed[i].flags;
            snprintf(a->name, sizeof a->name, "seed-%zu", n);
        }
    } else {
        size_t na = chance(35) ? 1 + (size_t)rn(3) : 0;
        for (size_t i = 0; i < na; i++)
            gen_account(g, &b->accts[b->na++]);
    }
    size_t want = 1 + (size_t)rn(50);
    b->ncalls = chance(30) ? 2 : 1;
    size_t split = b->ncalls == 2 ? 1 + (size_t)rn(want) : want;
    for (size_t c = 0; c < b->ncalls; c++) {
        size_t target = c == 0 ? split : want;
        if (c == 1 && target <= b->nx)
            target = b->nx + 1;
        b->cstart[c] = b->nx;
        while (b->nx < target && b->nx < MAXB) {
            struct vs_transfer *x = &b->xs[b->nx];
            unsigned r = (unsigned)rn(100);
            if (r < 10 && gen_retry(g, x)) {
                b->nx++;
            } else if (r < 22) {
                b->nx += gen_chain(g, x, MAXB + 8 - b->nx);
            } else if (r < 30) {
                gen_invalid(g, x);
                b->nx++;
            } else if (r < 62) {
                gen_move(g, x, false);
                b->nx++;
            } else if (r < 80) {
                gen_move(g, x, true);
                b->nx++;
            } else {
                gen_resolve(g, x, r < 92);
                b->nx++;
            }
        }
        b->clen[c] = b->nx - b->cstart[c];
        /* Sometimes a chain left open at the end of the call. */
        if (b->clen[c] && chance(4))
            b->xs[b->nx - 1].flags |= VS_TRANSFER_LINKED;
    }
}

static vs_ledger *open_ledger(const char *dir)
{
    /* Durability is not what this test is about: no fsync per batch. */
    struct vs_ledger_opts o = {.path = dir, .no_sync = true};
    vs_ledger *l = NULL;
    int rc = vs_ledger_open(&o, &l);
    if (rc)
        fail_msg("open %s: %s", dir, strerror(-rc));
    return l;
}

static void compare(struct model *m, vs_ledger *l, bool full)
{
    struct cmp *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->m = m;
    c->full = full;
    int rc = vs_ledger_read(l, cmp_apply, c);
    if (rc || c->err[0])
        MFAIL("%s%s", c->err, full ? " (full check)" : "");
    for (size_t n = 1; n <= m->nx; n++)
        m->x[n].touched = false;
    free(c);
}

static void test_model(void **state)
{
    (void)state;
    const char *e = getenv("VS_SEED");
    g_seed = e && *e ? strtoull(e, NULL, 0) : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
    e = getenv("VS_MODEL_OPS");
    uint64_t ops = e && *e ? strtoull(e, NULL, 0) : 15000;
    print_message("ledger model: VS_SEED=%" PRIu64 " VS_MODEL_OPS=%" PRIu64 "\n", g_seed, ops);
    rng = g_seed ? g_seed : 1;
    for (int i = 0; i < 4; i++)
        rnd();

    g_dir = vs_scratch_dir("vs_lmodel");
    assert_non_null(g_dir);
    vs_ledger *l = open_ledger(g_dir);
    struct model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->x = calloc(NX + 1, sizeof *m->x);
    m->holds = calloc(NX + 1, sizeof *m->holds);
    assert_non_null(m->x);
    assert_non_null(m->holds);
    struct gen g = {.m = m};
    struct batch *b = calloc(1, sizeof *b);
    assert_non_null(b);
    vs_ledger_on_expired(l, on_expired, b);
    struct stats s;
    memset(&s, 0, sizeof s);
    m->now = BASE_NS;
    bool reopened = false;

    while (s.xfers < ops && m->nx + 2 * MAXB < NX) {
        m->batch++;
        refresh_created(&g);
        /* Time: steps of 2 ms, now and then a long one. */
        m->now += 2 * MS * (chance(5) ? 40 + rn(100) : 1 + rn(12));
        build_batch(&g, b, m->batch == 1);
        b->applies = 0;
        b->exp_attempt = 0;
        b->nexp = 0;
        int rc = vs_ledger_write(l, m->now, batch_apply, b);
        if (rc)
            MFAIL("write: %s", strerror(-rc));
        if (b->txn_now != m->now)
            MFAIL("transaction time %" PRIu64 ", asked for %" PRIu64, b->txn_now, m->now);

        /* The model: expiry first, then the accounts, then each call. */
        model_expire(m);
        if (b->nexp != m->nexpired)
            MFAIL("%zu holds expired (callbacks), model %zu", b->nexp, m->nexpired);
        for (size_t i = 0; i < b->nexp && i < 512; i++) {
            bool found = false;
            for (size_t k = 0; k < m->nexpired; k++)
                if (xnum(b->exp[i]) == m->expired[k])
                    found = true;
            if (!found)
                MFAIL("transfer %zu expired, the model did not expire it", xnum(b->exp[i]));
        }
        s.expired += m->nexpired;
        for (size_t i = 0; i < b->na; i++) {
            int replay;
            uint64_t mask = acct_expect(m, &b->accts[i], &replay);
            int got = b->ares[i];
            char want[256];
            if (got < 0 || !(mask & BIT(got))) {
                mask_str(mask, true, want, sizeof want);
                MFAIL("account %zu: %s, model allows %s", id_num(b->accts[i].id, K_ACCT, NA),
                      aname(got), want);
            }
            if (replay >= 0 && !b->arep[i])
                MFAIL("account %zu: the retry of its same body (%s) is not a replay",
                      id_num(b->accts[i].id, K_ACCT, NA), aname(got));
            if (replay < 0 && b->arep[i])
                MFAIL("account %zu: replayed on its first submission",
                      id_num(b->accts[i].id, K_ACCT, NA));
            if (got != VS_ACCT_EXISTS_WITH_DIFFERENT_BODY)
                acct_bind(m, &b->accts[i], got);
            s.accts++;
            s.acct_code[got]++;
            if (replay >= 0)
                s.acct_replays++;
        }
        for (size_t c = 0; c < b->ncalls; c++)
            model_call(m, &s, b, b->cstart[c], b->clen[c]);
        s.xfers += b->nx;
        s.batches++;

        bool full = m->batch % 40 == 0;
        compare(m, l, full);
        if (!reopened && s.xfers >= ops / 2) {
            vs_ledger_free(l);
            l = open_ledger(g_dir);
            vs_ledger_on_expired(l, on_expired, b);
            reopened = true;
            compare(m, l, true);
        }
    }
    compare(m, l, true);
    print_message("ledger model: %" PRIu64 " batches, %" PRIu64 " account creations, %" PRIu64
                  " transfers (%" PRIu64 " ok, %" PRIu64 " replays, %" PRIu64
                  " chains of which %" PRIu64 " failed and %" PRIu64 " open, %" PRIu64
                  " holds expired); results checked exactly %" PRIu64 ", against a set %" PRIu64
                  "\n",
                  s.batches, s.accts, s.xfers, s.ok, s.replays, s.chains, s.chain_fail,
                  s.open_chains, s.expired, s.exact, s.sets);
    for (int c = 0; c < VS_XFER_RESULT_COUNT; c += 6) {
        char codes[512] = "";
        for (int k = c; k < c + 6 && k < VS_XFER_RESULT_COUNT; k++) {
            size_t len = strlen(codes);
            snprintf(codes + len, sizeof codes - len, " %s=%" PRIu64, xname(k), s.by_code[k]);
        }
        print_message("ledger model: results%s\n", codes);
    }
    /* A run that never reached a rule proves nothing about it. */
    const int needed[] = {
        VS_XFER_OK,
        VS_XFER_LINKED_EVENT_FAILED,
        VS_XFER_LINKED_EVENT_CHAIN_OPEN,
        VS_XFER_EXISTS_WITH_DIFFERENT_BODY,
        VS_XFER_PENDING_TRANSFER_NOT_FOUND,
        VS_XFER_PENDING_TRANSFER_ALREADY_POSTED,
        VS_XFER_PENDING_TRANSFER_EXPIRED,
        VS_XFER_EXCEEDS_CREDITS,
        VS_XFER_EXCEEDS_DEBITS,
        VS_XFER_AMOUNT_MUST_NOT_BE_ZERO,
    };
    if (ops >= 3000)
        for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
            if (s.by_code[needed[i]] == 0)
                fail_msg("seed %" PRIu64 ": the run never produced %s", g_seed,
                         xname(needed[i]));
    if (ops >= 3000 && (s.expired == 0 || s.replays == 0 || s.chains == 0))
        fail_msg("seed %" PRIu64 ": no expiry, replay or chain in the run", g_seed);
    char acodes[512] = "";
    for (int c = 0; c < VS_ACCT_RESULT_COUNT; c++) {
        size_t len = strlen(acodes);
        snprintf(acodes + len, sizeof acodes - len, " %s=%" PRIu64, aname(c), s.acct_code[c]);
    }
    print_message("ledger model: accounts%s (replays %" PRIu64 ")\n", acodes, s.acct_replays);
    /* A long run reaches every rule the generator aims at (all but the
     * 64-bit overflows of balances, which test_ledger_store covers). */
    if (ops >= 10000) {
        for (int c = 0; c < VS_ACCT_RESULT_COUNT; c++)
            if (s.acct_code[c] == 0)
                fail_msg("seed %" PRIu64 ": no account creation returned %s", g_seed, aname(c));
        if (s.acct_replays == 0)
            fail_msg("seed %" PRIu64 ": no account creation was replayed", g_seed);
    }
    if (ops >= 10000)
        for (int c = 0; c < VS_XFER_RESULT_COUNT; c++)
            if (s.by_code[c] == 0 && c != VS_XFER_OVERFLOWS_DEBITS &&
                c != VS_XFER_OVERFLOWS_CREDITS)
                fail_msg("seed %" PRIu64 ": the run never produced %s", g_seed, xname(c));
    vs_ledger_free(l);
    vs_scratch_free(g_dir);
    free(b);
    free(m->holds);
    free(m->x);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
