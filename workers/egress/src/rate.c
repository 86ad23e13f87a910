/*
 * rate.c - per-agent rate limits for egress: a request bucket, a byte
 * bucket and a count of requests in flight, in a bounded table of agents.
 *
 * Why it is shaped like this:
 *  - Exact integer buckets. A bucket holds tokens in 1/60000ths (one
 *    token = 60000 units), and refills `per_min` units per millisecond, so
 *    refill is exact: after a bucket of N requests per minute runs dry,
 *    the next request is possible after exactly ceil(60000 / N) ms, and
 *    tests can say so. The byte bucket may go into debt when a response is
 *    charged after the fact (its size is known only as it arrives).
 *  - Time is an argument (now_ms), not a clock read: the daemon passes
 *    uv_now(), tests pass what they like. Time never runs backwards here.
 *  - A bounded table. Agent ids are keys of an open-addressing hash table
 *    (linear probing, backward-shift deletion) of a fixed size chosen at
 *    creation; the hash is SipHash (libsodium's crypto_shorthash) under a
 *    random key, so chosen ids cannot pile up in one probe chain. Agents
 *    with nothing in flight sit on an LRU list; a new agent in a full table
 *    evicts one of them - a fully refilled one among the eight least
 *    recently used if there is one (nothing is lost: a new entry starts
 *    full), else the least recently used. Agents with requests in flight
 *    are never evicted, so a release always finds its entry. Agent ids are
 *    stamped by sandboxd, not chosen by agents; even so, no sequence of ids
 *    grows the table past its size.
 */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "egress_internal.h"

#define UNIT 60000                /* bucket units per token: ms per minute */
#define NIL UINT32_MAX
#define DEBT_FLOOR (-(INT64_MAX / 2))
#define EVICT_LOOK 8              /* LRU entries looked at for a full one */

struct entry {
    char id[VS_EGRESS_AGENT_MAX + 1];
    uint64_t hash;
    int64_t req, bytes;           /* bucket levels, in units */
    uint64_t req_cap, bytes_cap;  /* capacities at the last refill, in units */
    uint64_t last_ms;
    uint32_t inflight;
    uint32_t prev, next;          /* LRU list of idle entries (head: most recent) */
    uint32_t slot;                /* where the hash table points at it */
    bool used, idle;
};

struct vs_egress_rate {
    struct entry *e;
    size_t max;                   /* entries */
    uint32_t *slots;              /* hash table: entry index or NIL */
    size_t mask;                  /* slots - 1 (a power of two >= 2 * max) */
    uint32_t *free_list;          /* unused entry indexes */
    size_t nfree;
    uint32_t lru_head, lru_tail;
    size_t count;
    uint64_t evictions;
    unsigned char key[crypto_shorthash_KEYBYTES];
};

int vs_egress_rate_new(size_t max_agents, vs_egress_rate **out)
{
    if (out == NULL || max_agents == 0 || max_agents > (1u << 20))
        return -EINVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return -EIO;
    vs_egress_rate *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    size_t nslots = 2;
    while (nslots < 2 * max_agents)
        nslots *= 2;
    r->e = calloc(max_agents, sizeof *r->e);
    r->slots = malloc(nslots * sizeof *r->slots);
    r->free_list = malloc(max_agents * sizeof *r->free_list);
    if (r->e == NULL || r->slots == NULL || r->free_list == NULL) {
        vs_egress_rate_free(r);
        return -ENOMEM;
    }
    memset(r->slots, 0xff, nslots * sizeof *r->slots);
    r->max = max_agents;
    r->mask = nslots - 1;
    for (size_t i = 0; i < max_agents; i++)
        r->free_list[i] = (uint32_t)(max_agents - 1 - i);
    r->nfree = max_agents;
    r->lru_head = r->lru_tail = NIL;
    crypto_shorthash_keygen(r->key);
    *out = r;
    return 0;
}

void vs_egress_rate_free(vs_egress_rate *r)
{
    if (r == NULL)
        return;
    free(r->e);
    free(r->slots);
    free(r->free_list);
    free(r);
}

size_t vs_egress_rate_size(const vs_egress_rate *r)
{
    return r != NULL ? r->count : 0;
}

uint64_t vs_egress_rate_evictions(const vs_egress_rate *r)
{
    return r != NULL ? r->evictions : 0;
}

/* ---- the LRU list of idle entries ---- */

static void lru_unlink(vs_egress_rate *r, uint32_t i)
{
    struct entry *e = &r->e[i];
    if (!e->idle)
        return;
    if (e->prev != NIL)
        r->e[e->prev].next = e->next;
    else
        r->lru_head = e->next;
    if (e->next != NIL)
        r->e[e->next].prev = e->prev;
    else
        r->lru_tail = e->prev;
    e->prev = e->next = NIL;
    e->idle = false;
}

static void lru_push(vs_egress_rate *r, uint32_t i)
{
    struct entry *e = &r->e[i];
    e->prev = NIL;
    e->next = r->lru_head;
    if (r->lru_head != NIL)
        r->e[r->lru_head].prev = i;
    r->lru_head = i;
    if (r->lru_tail == NIL)
        r->lru_tail = i;
    e->idle = true;
}

/* ---- the hash table ---- */

static uint64_t hash_id(const vs_egress_rate *r, const char *id, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)id, len, r->key);
    uint64_t x;
    memcpy(&x, h, sizeof x);
    return x;
}

static uint32_t lookup(const vs_egress_rate *r, const char *id, uint64_t h)
{
    for (size_t s = h & r->mask;; s = (s + 1) & r->mask) {
        uint32_t i = r->slots[s];
        if (i == NIL)
            return NIL;
        if (r->e[i].hash == h && strcmp(r->e[i].id, id) == 0)
            return i;
    }
}

/* Remove entry i from the table (backward-shift deletion keeps every
 * probe chain unbroken without tombstones). */
static void remove_entry(vs_egress_rate *r, uint32_t i)
{
    lru_unlink(r, i);
    size_t hole = r->e[i].slot;
    r->slots[hole] = NIL;
    for (size_t s = (hole + 1) & r->mask; r->slots[s] != NIL; s = (s + 1) & r->mask) {
        uint32_t j = r->slots[s];
        size_t home = r->e[j].hash & r->mask;
        /* j may move into the hole when its home is not in (hole, s] */
        bool stays = hole <= s ? (home > hole && home <= s) : (home > hole || home <= s);
        if (!stays) {
            r->slots[hole] = j;
            r->e[j].slot = (uint32_t)hole;
            r->slots[s] = NIL;
            hole = s;
        }
    }
    r->e[i].used = false;
    r->free_list[r->nfree++] = i;
    r->count--;
}

/* ---- buckets ---- */

static void bucket_refill(int64_t *level, uint64_t cap, uint64_t per_ms, uint64_t elapsed)
{
    if (*level > (int64_t)cap) {
        *level = (int64_t)cap; /* the limit was lowered */
        return;
    }
    uint64_t deficit = (uint64_t)((int64_t)cap - *level);
    if (elapsed >= deficit / per_ms + 1)
        *level = (int64_t)cap;
    else
        *level += (int64_t)(elapsed * per_ms);
}

static void refill(struct entry *e, const struct vs_egress_rate_limits *lim, uint64_t now_ms)
{
    uint64_t elapsed = now_ms > e->last_ms ? now_ms - e->last_ms : 0;
    if (now_ms > e->last_ms)
        e->last_ms = now_ms;
    e->req_cap = lim->requests_per_min * UNIT;
    e->bytes_cap = lim->bytes_per_min * UNIT;
    bucket_refill(&e->req, e->req_cap, lim->requests_per_min, elapsed);
    bucket_refill(&e->bytes, e->bytes_cap, lim->bytes_per_min, elapsed);
}

/* Whether entry i would be full at now_ms (evicting it loses nothing). */
static bool entry_full(const struct entry *e, uint64_t now_ms)
{
    uint64_t elapsed = now_ms > e->last_ms ? now_ms - e->last_ms : 0;
    int64_t rq = e->req, by = e->bytes;
    uint64_t rpm = e->req_cap / UNIT, bpm = e->bytes_cap / UNIT;
    if (rpm == 0 || bpm == 0)
        return true;
    bucket_refill(&rq, e->req_cap, rpm, elapsed);
    bucket_refill(&by, e->bytes_cap, bpm, elapsed);
    return rq == (int64_t)e->req_cap && by == (int64_t)e->bytes_cap;
}

static bool limits_ok(const struct vs_egress_rate_limits *lim)
{
    return lim != NULL && lim->requests_per_min >= 1 && lim->requests_per_min <= 1000000 &&
           lim->bytes_per_min >= 1 && lim->bytes_per_min <= (1ull << 40) &&
           lim->max_concurrent >= 1;
}

static bool id_ok(const char *agent, size_t *len)
{
    if (agent == NULL)
        return false;
    *len = strnlen(agent, VS_EGRESS_AGENT_MAX + 1);
    return *len > 0 && *len <= VS_EGRESS_AGENT_MAX;
}

static int64_t cost_of(uint64_t bytes)
{
    return bytes > (uint64_t)(-DEBT_FLOOR) / UNIT ? -DEBT_FLOOR : (int64_t)(bytes * UNIT);
}

/* Time until a bucket at level reaches need units, in ms (rounded up). */
static uint64_t wait_ms(int64_t level, int64_t need, uint64_t per_ms)
{
    uint64_t gap = (uint64_t)(need - level);
    return (gap + per_ms - 1) / per_ms;
}

/* Find or make agent's entry; NIL when the table is full of busy agents. */
static uint32_t find_or_add(vs_egress_rate *r, const char *agent, size_t len,
                            const struct vs_egress_rate_limits *lim, uint64_t now_ms)
{
    uint64_t h = hash_id(r, agent, len);
    uint32_t i = lookup(r, agent, h);
    if (i != NIL)
        return i;
    if (r->nfree == 0) {
        if (r->lru_tail == NIL)
            return NIL;
        uint32_t victim = r->lru_tail, look = r->lru_tail;
        for (int k = 0; k < EVICT_LOOK && look != NIL; k++, look = r->e[look].prev) {
            if (entry_full(&r->e[look], now_ms)) {
                victim = look;
                break;
            }
        }
        remove_entry(r, victim);
        r->evictions++;
    }
    i = r->free_list[--r->nfree];
    struct entry *e = &r->e[i];
    memset(e, 0, sizeof *e);
    memcpy(e->id, agent, len);
    e->id[len] = '\0';
    e->hash = h;
    e->used = true;
    e->last_ms = now_ms;
    e->req_cap = lim->requests_per_min * UNIT;
    e->bytes_cap = lim->bytes_per_min * UNIT;
    e->req = (int64_t)e->req_cap;
    e->bytes = (int64_t)e->bytes_cap;
    e->prev = e->next = NIL;
    size_t s = h & r->mask;
    while (r->slots[s] != NIL)
        s = (s + 1) & r->mask;
    r->slots[s] = i;
    e->slot = (uint32_t)s;
    r->count++;
    lru_push(r, i);
    return i;
}

int vs_egress_rate_acquire(vs_egress_rate *r, const char *agent,
                           const struct vs_egress_rate_limits *lim, uint64_t bytes,
                           uint64_t now_ms, const char **why, uint64_t *retry_ms)
{
    size_t len;
    if (r == NULL || !id_ok(agent, &len) || !limits_ok(lim))
        return -EINVAL;
    const char *reason = NULL;
    uint64_t retry = 0;
    uint32_t i = find_or_add(r, agent, len, lim, now_ms);
    if (i == NIL) {
        reason = VS_EGRESS_RATE_TABLE_FULL;
    } else {
        struct entry *e = &r->e[i];
        refill(e, lim, now_ms);
        if (e->idle) { /* most recently used */
            lru_unlink(r, i);
            lru_push(r, i);
        }
        int64_t bcost = cost_of(bytes);
        if (e->inflight >= lim->max_concurrent) {
            reason = VS_EGRESS_RATE_CONCURRENCY;
        } else if (e->req < UNIT) {
            reason = VS_EGRESS_RATE_REQUESTS;
            retry = wait_ms(e->req, UNIT, lim->requests_per_min);
        } else if (bytes > lim->bytes_per_min) {
            reason = VS_EGRESS_RATE_BYTES;
            retry = UINT64_MAX; /* more than the bucket holds: never */
        } else if (e->bytes < bcost) {
            reason = VS_EGRESS_RATE_BYTES;
            retry = wait_ms(e->bytes, bcost, lim->bytes_per_min);
        } else {
            e->req -= UNIT;
            e->bytes -= bcost;
            if (e->inflight++ == 0)
                lru_unlink(r, i);
        }
    }
    if (why != NULL)
        *why = reason;
    if (retry_ms != NULL)
        *retry_ms = retry;
    return reason != NULL ? -EAGAIN : 0;
}

int vs_egress_rate_charge(vs_egress_rate *r, const char *agent,
                          const struct vs_egress_rate_limits *lim, uint64_t bytes,
                          uint64_t now_ms)
{
    size_t len;
    if (r == NULL || !id_ok(agent, &len) || !limits_ok(lim))
        return -EINVAL;
    uint32_t i = lookup(r, agent, hash_id(r, agent, len));
    if (i == NIL)
        return -ENOENT;
    struct entry *e = &r->e[i];
    refill(e, lim, now_ms);
    int64_t c = cost_of(bytes);
    e->bytes = e->bytes - DEBT_FLOOR < c ? DEBT_FLOOR : e->bytes - c;
    return 0;
}

int vs_egress_rate_release(vs_egress_rate *r, const char *agent, uint64_t now_ms)
{
    size_t len;
    (void)now_ms;
    if (r == NULL || !id_ok(agent, &len))
        return -EINVAL;
    uint32_t i = lookup(r, agent, hash_id(r, agent, len));
    if (i == NIL || r->e[i].inflight == 0)
        return -ENOENT;
    if (--r->e[i].inflight == 0)
        lru_push(r, i);
    return 0;
}
