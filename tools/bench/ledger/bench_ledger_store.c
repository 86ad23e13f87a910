/*
 * bench_ledger_store.c - throughput of the escrow ledger store
 * (workers/ledgerd, vs/ledger_store.h): durable escrow pairs per second at
 * batch sizes 1, 100 and 1000, fsync on. A pair is the escrow of one task:
 * HOLD (create the task's escrow account, and a pending transfer of the
 * bounty from a requester's wallet to it) and, in the next transaction,
 * RELEASE (a linked chain: post the hold, pay the agent, pay the fee). A
 * transaction of batch k holds k new tasks and releases the k held by the
 * transaction before, so it completes k pairs.
 *
 * Why the baselines: absolute rates depend on the machine and its disk, so
 * the same run measures the disk's own fdatasync rate (a durable commit at
 * batch 1 cannot beat it) and the same escrow logic on SQLite (WAL,
 * synchronous=FULL, one transaction per batch, the same indexes and checks:
 * sqlite_baseline.c), and prints the store's rate as a ratio of SQLite's.
 * One function generates the workload and one driver per side applies it,
 * so both sides run the identical transfers (same ids, same order). Every
 * result must be OK (the bench aborts loudly otherwise) and the store's
 * invariant must hold after the run (vs_ledger_check): the exit code says
 * that, never whether a target was met. --quick shrinks the run to a few
 * seconds for the ctest smoke run bench.ledger_store_smoke. The clock, the
 * scratch directory and the options come from tools/bench/common.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bench_common.h"
#include "sqlite_baseline.h"
#include "vs/ledger_store.h"

#define ID VS_LEDGER_ID_LEN
#define NREQ 64                     /* requester wallets */
#define LEDGER 1
#define BOUNTY 1000
#define FEE (BOUNTY * 5 / 100)
#define FUNDING 1000000000000ull    /* per requester: 10^9 bounties */
#define HOLD_TIMEOUT_MS 3600000ull  /* one hour */

enum { ACODE_WALLET = 1, ACODE_ESCROW = 2, ACODE_FEE = 3, ACODE_OPERATOR = 4 };
enum { XCODE_FUND = 1, XCODE_HOLD = 2, XCODE_PAYOUT = 3, XCODE_FEE = 4 };

/* The batch sizes, and how much each phase runs: up to pairs (or secs,
 * whichever comes first; the time bound is a safety net except at batch 1). */
static const struct phase {
    size_t batch;
    uint64_t pairs, quick_pairs;
    double secs, quick_secs;
} PHASES[] = {
    {1, UINT64_MAX, UINT64_MAX, 2.5, 0.3},
    {100, 50000, 2000, 60, 10},
    {1000, 200000, 10000, 90, 10},
};
#define NPHASES (sizeof PHASES / sizeof PHASES[0])
#define MAX_BATCH 1000
#define MAX_ACCTS (MAX_BATCH > NREQ + 3 ? MAX_BATCH : NREQ + 3)

static char g_top[4096]; /* the temporary directory, removed at exit */

static void cleanup(void)
{
    bench_rmtree(g_top);
    g_top[0] = '\0';
}

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_ledger_store: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1); /* cleanup() runs at exit */
}

/* ---- ids: time-ordered, cheap ------------------------------------------- *
 * A big-endian 64-bit counter started at (ms since the epoch) << 16, so the
 * first 48 bits read as a millisecond time, then a fixed random tail. */
struct idgen {
    uint64_t next;
    uint8_t tail[8];
};

static void id_next(struct idgen *g, uint8_t id[ID])
{
    uint64_t v = g->next++;
    for (int i = 0; i < 8; i++)
        id[i] = (uint8_t)(v >> (56 - 8 * i));
    memcpy(id + 8, g->tail, 8);
}

/* ---- the workload ------------------------------------------------------- */

struct task {
    uint8_t task[ID], escrow[ID], hold[ID];
    const uint8_t *requester;
};

/* One side's workload state: its ids and its setup accounts. */
struct gen {
    struct idgen ids;
    uint64_t ntasks;
    uint8_t operator_[ID], fee[ID], agent[ID], requester[NREQ][ID];
};

/* One write transaction's input and outputs. */
struct batch {
    struct vs_account accts[MAX_ACCTS];
    struct vs_transfer xs[4 * MAX_BATCH];
    int ares[MAX_ACCTS], xres[4 * MAX_BATCH];
    bool arep[MAX_ACCTS], xrep[4 * MAX_BATCH];
    size_t na, nx;
};

static struct vs_account *add_account(struct batch *b, const uint8_t id[ID], uint16_t code,
                                      uint16_t flags)
{
    struct vs_account *a = &b->accts[b->na++];
    memset(a, 0, sizeof *a);
    memcpy(a->id, id, ID);
    a->ledger = LEDGER;
    a->code = code;
    a->flags = flags;
    return a;
}

static struct vs_transfer *add_transfer(struct batch *b, struct idgen *ids, const uint8_t *debit,
                                        const uint8_t *credit, uint64_t amount, uint16_t code,
                                        uint16_t flags)
{
    struct vs_transfer *x = &b->xs[b->nx++];
    memset(x, 0, sizeof *x);
    id_next(ids, x->id);
    if (debit)
        memcpy(x->debit_account_id, debit, ID);
    if (credit)
        memcpy(x->credit_account_id, credit, ID);
    x->amount = amount;
    x->ledger = code ? LEDGER : 0; /* a POST takes ledger and code from its hold */
    x->code = code;
    x->flags = flags;
    return x;
}

/* The setup: operator, fee wallet, agent wallet, requester wallets funded
 * by the operator. */
static void gen_setup(struct gen *g, struct batch *b, uint64_t id_start, const uint8_t tail[8])
{
    memset(g, 0, sizeof *g);
    g->ids.next = id_start;
    memcpy(g->ids.tail, tail, 8);
    b->na = b->nx = 0;
    id_next(&g->ids, g->operator_);
    id_next(&g->ids, g->fee);
    id_next(&g->ids, g->agent);
    add_account(b, g->operator_, ACODE_OPERATOR, 0);
    add_account(b, g->fee, ACODE_FEE, 0);
    add_account(b, g->agent, ACODE_WALLET, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    for (int i = 0; i < NREQ; i++) {
        id_next(&g->ids, g->requester[i]);
        add_account(b, g->requester[i], ACODE_WALLET, VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
        add_transfer(b, &g->ids, g->operator_, g->requester[i], FUNDING, XCODE_FUND, 0);
    }
}

/* A batch: release the nrel tasks in rel (held by the previous batch), then
 * hold nhold new tasks into hold[]. */
static void gen_batch(struct gen *g, struct batch *b, const struct task *rel, size_t nrel,
                      struct task *hold, size_t nhold)
{
    b->na = b->nx = 0;
    for (size_t i = 0; i < nrel; i++) {
        const struct task *t = &rel[i];
        struct vs_transfer *x = add_transfer(b, &g->ids, NULL, NULL, 0, 0,
                                             VS_TRANSFER_POST_PENDING | VS_TRANSFER_LINKED);
        memcpy(x->pending_id, t->hold, ID);
        memcpy(x->user_data_128, t->task, ID);
        x = add_transfer(b, &g->ids, t->escrow, g->agent, BOUNTY - FEE, XCODE_PAYOUT,
                         VS_TRANSFER_LINKED);
        memcpy(x->user_data_128, t->task, ID);
        x = add_transfer(b, &g->ids, t->escrow, g->fee, FEE, XCODE_FEE, 0);
        memcpy(x->user_data_128, t->task, ID);
    }
    for (size_t i = 0; i < nhold; i++) {
        struct task *t = &hold[i];
        id_next(&g->ids, t->task);
        id_next(&g->ids, t->escrow);
        t->requester = g->requester[g->ntasks++ % NREQ];
        struct vs_account *a = add_account(b, t->escrow, ACODE_ESCROW,
                                           VS_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
        memcpy(a->user_data_128, t->task, ID);
        struct vs_transfer *x = add_transfer(b, &g->ids, t->requester, t->escrow, BOUNTY,
                                             XCODE_HOLD, VS_TRANSFER_PENDING);
        x->timeout_ms = HOLD_TIMEOUT_MS;
        memcpy(x->user_data_128, t->task, ID);
        memcpy(t->hold, x->id, ID);
    }
}

/* Abort loudly unless every account and transfer of b was created now. */
static void check_batch(const char *side, const struct batch *b)
{
    for (size_t i = 0; i < b->na; i++) {
        if (b->ares[i] != VS_ACCT_OK || b->arep[i])
            die("%s: account create: %s", side,
                b->arep[i] ? "replayed (duplicate id)" : vs_account_result_name(b->ares[i]));
    }
    for (size_t i = 0; i < b->nx; i++) {
        if (b->xres[i] != VS_XFER_OK || b->xrep[i])
            die("%s: transfer create: %s", side,
                b->xrep[i] ? "replayed (duplicate id)" : vs_transfer_result_name(b->xres[i]));
    }
}

/* ---- the two sides ------------------------------------------------------ */

struct driver {
    const char *name;
    int (*write)(void *h, struct batch *b); /* one durable transaction: 0 or -errno */
    void *h;
    struct gen gen;
};

static int store_apply(vs_ledger_txn *t, void *arg)
{
    struct batch *b = arg;
    for (size_t i = 0; i < b->na; i++) {
        int rc = vs_ledger_create_account(t, &b->accts[i], &b->arep[i]);
        if (rc < 0)
            return rc;
        b->ares[i] = rc;
    }
    return b->nx ? vs_ledger_create_transfers(t, b->xs, b->nx, b->xres, b->xrep) : 0;
}

static int store_write(void *h, struct batch *b)
{
    return vs_ledger_write(h, 0, store_apply, b);
}

static int sqlite_write(void *h, struct batch *b)
{
    return sqlb_write(h, b->accts, b->na, b->ares, b->arep, b->xs, b->nx, b->xres, b->xrep);
}

static void write_checked(struct driver *d, struct batch *b)
{
    int rc = d->write(d->h, b);
    if (rc < 0)
        die("%s: write transaction: %s", d->name, strerror(-rc));
    check_batch(d->name, b);
}

struct result {
    uint64_t pairs, commits;
    double secs;
};

/* Pairs at batch k until max_pairs are held or max_secs have passed, then
 * the last holds released: every transaction is timed, the first (holds
 * only) and the last (releases only) included. */
static struct result run_phase(struct driver *d, struct batch *b, size_t k, uint64_t max_pairs,
                               double max_secs)
{
    static struct task tasks[2][MAX_BATCH];
    struct result r = {0};
    uint64_t held = 0;
    size_t nprev = 0, cur = 0;
    double t0 = bench_now_s();
    for (;;) {
        size_t nnew = held < max_pairs && bench_now_s() - t0 < max_secs ? k : 0;
        if (nnew == 0 && nprev == 0)
            break;
        gen_batch(&d->gen, b, tasks[cur ^ 1], nprev, tasks[cur], nnew);
        write_checked(d, b);
        r.commits++;
        r.pairs += nprev;
        held += nnew;
        nprev = nnew;
        cur ^= 1;
    }
    r.secs = bench_now_s() - t0;
    return r;
}

/* ---- the disk ----------------------------------------------------------- */

/* fdatasync/s of a 4 KiB overwrite at offset 0 of a file in dir. */
static double fsync_rate(const char *dir, double secs)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/fsync.probe", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    static uint8_t page[4096];
    uint64_t n = 0;
    double t0 = 0, dt = 0;
    for (uint64_t i = 0;; i++) { /* the first round allocates the block: not timed */
        memset(page, (int)(i & 0xff), sizeof page);
        if (pwrite(fd, page, sizeof page, 0) != (ssize_t)sizeof page || fdatasync(fd) != 0)
            die("fsync probe %s: %s", path, strerror(errno));
        if (i == 0) {
            t0 = bench_now_s();
            continue;
        }
        n++;
        if ((dt = bench_now_s() - t0) >= secs)
            break;
    }
    close(fd);
    unlink(path);
    return (double)n / dt;
}

/* ---- the run ------------------------------------------------------------ */

static int check_apply(vs_ledger_txn *t, void *arg)
{
    return vs_ledger_check(t, arg);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ledger_store [--quick] [--dir PARENT]\n"
                    "  --quick      a few seconds in all, for the ctest smoke run\n"
                    "  --dir PARENT where the temporary store and SQLite file are made\n"
                    "               (default /var/tmp); commits are durable, so this\n"
                    "               measures that file system (not tmpfs)\n");
}

int main(int argc, char **argv)
{
    bool quick = false;
    const char *parent = "/var/tmp";
    int rc = bench_store_args(argc, argv, usage, &quick, &parent);
    if (rc >= 0)
        return rc;
    if (sodium_init() < 0)
        die("sodium_init failed");

    if (bench_scratch_dir(g_top, sizeof g_top, parent, "bench_ledger", "bench_ledger_store") < 0)
        return 1;
    atexit(cleanup);
    char store_dir[4200], sqlite_dir[4200], sqlite_file[4300];
    snprintf(store_dir, sizeof store_dir, "%s/store", g_top);
    snprintf(sqlite_dir, sizeof sqlite_dir, "%s/sqlite", g_top);
    snprintf(sqlite_file, sizeof sqlite_file, "%s/ledger.db", sqlite_dir);
    if (mkdir(store_dir, 0700) != 0 || mkdir(sqlite_dir, 0700) != 0)
        die("mkdir in %s: %s", g_top, strerror(errno));
    bool tmpfs = bench_on_tmpfs(g_top);
    printf("# ledger store bench in %s%s; pair = hold + release (1 account, 4 transfers),"
           " bounty %d, fee %d, %d requesters\n",
           g_top, tmpfs ? " (tmpfs: commits are not really durable)" : "", BOUNTY, FEE, NREQ);

    double fsyncs = fsync_rate(g_top, quick ? 0.2 : 1.0);
    printf("fsync: %.0f fdatasync/s (4 KiB, same filesystem)\n", fsyncs);
    fflush(stdout);

    vs_ledger *l = NULL;
    struct vs_ledger_opts o = {.path = store_dir};
    rc = vs_ledger_open(&o, &l);
    if (rc < 0)
        die("open store %s: %s", store_dir, strerror(-rc));
    sqlb *sq = NULL;
    if (sqlb_open(sqlite_file, &sq) != 0)
        die("open sqlite %s", sqlite_file);

    static struct driver store = {.name = "store", .write = store_write};
    static struct driver sqlite = {.name = "sqlite", .write = sqlite_write};
    struct driver *sides[2] = {&store, &sqlite};
    store.h = l;
    sqlite.h = sq;
    static struct batch b;
    uint8_t tail[8];
    randombytes_buf(tail, sizeof tail);
    uint64_t id_start = (uint64_t)(time(NULL)) * 1000u << 16;
    for (int s = 0; s < 2; s++) { /* identical ids on both sides */
        gen_setup(&sides[s]->gen, &b, id_start, tail);
        write_checked(sides[s], &b);
    }

    uint64_t pairs[2] = {0, 0};
    for (size_t p = 0; p < NPHASES; p++) {
        const struct phase *ph = &PHASES[p];
        struct result r[2];
        double rate[2];
        for (int s = 0; s < 2; s++) {
            r[s] = run_phase(sides[s], &b, ph->batch, quick ? ph->quick_pairs : ph->pairs,
                             quick ? ph->quick_secs : ph->secs);
            rate[s] = (double)r[s].pairs / r[s].secs;
            pairs[s] += r[s].pairs;
        }
        char label[32];
        snprintf(label, sizeof label, "%zu:", ph->batch);
        double ratio = rate[0] / rate[1];
        if (ph->batch == 1) {
            printf("store  batch %-5s %8.0f pairs/s (%.0f commits/s; fsync rate %.0f/s)\n", label,
                   rate[0], (double)r[0].commits / r[0].secs, fsyncs);
            printf("sqlite batch %-5s %8.0f pairs/s (%.0f commits/s)   store/sqlite %.2f\n", label,
                   rate[1], (double)r[1].commits / r[1].secs, ratio);
        } else {
            printf("store  batch %-5s %8.0f pairs/s%s\n", label, rate[0],
                   ph->batch == 1000 ? " (target >= 150000)" : "");
            printf("sqlite batch %-5s %8.0f pairs/s   store/sqlite %.2f (target >= 2)\n", label,
                   rate[1], ratio);
        }
        fflush(stdout);
    }

    /* The invariant, and what each side must hold after its pairs: the
     * setup's accounts and fundings, one account and four transfers a pair. */
    struct vs_ledger_totals tot;
    memset(&tot, 0, sizeof tot);
    rc = vs_ledger_read(l, check_apply, &tot);
    int status = 0;
    if (rc == 0) {
        printf("invariant: holds (accounts %llu, transfers %llu, open holds %llu; map %llu MiB)\n",
               (unsigned long long)tot.accounts, (unsigned long long)tot.transfers,
               (unsigned long long)tot.pending_open,
               (unsigned long long)(vs_ledger_map_size(l) >> 20));
    } else {
        printf("invariant: VIOLATED: %s\n", rc == -EUCLEAN ? tot.problem : strerror(-rc));
        status = 1;
    }
    uint64_t got[2][3] = {{tot.accounts, tot.transfers, tot.pending_open}};
    if (sqlb_counts(sq, &got[1][0], &got[1][1], &got[1][2]) != 0)
        die("sqlite: counts failed");
    for (int s = 0; s < 2; s++) {
        uint64_t want[3] = {NREQ + 3 + pairs[s], NREQ + 4 * pairs[s], 0};
        if (memcmp(got[s], want, sizeof want) != 0) {
            printf("%s: holds accounts %llu, transfers %llu, open holds %llu; expected %llu, %llu, 0"
                   " after %llu pairs\n",
                   sides[s]->name, (unsigned long long)got[s][0], (unsigned long long)got[s][1],
                   (unsigned long long)got[s][2], (unsigned long long)want[0],
                   (unsigned long long)want[1], (unsigned long long)pairs[s]);
            status = 1;
        }
    }
    vs_ledger_free(l);
    sqlb_close(sq);
    return status;
}
