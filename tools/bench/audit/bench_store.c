/*
 * bench_store.c - throughput of the audit store (workers/auditd): durable
 * appends per second in batches of 256 and of 1 (~200-byte AuditEvents),
 * and entries verified per second by vs_audit_store_verify, reported as a
 * ratio of raw SHA-256 throughput over the same entry bytes measured in
 * the same run (verification hashes each entry twice - chain and leaf - so
 * the baseline is the store's own two SHA-256s per entry, chain and leaf,
 * with the same implementation as the store).
 *
 * Why a ratio: the absolute numbers depend on the machine and its disk;
 * how close verification comes to the hashing it cannot avoid says how
 * much the store adds. The appends are real durable commits (LMDB without
 * MDB_NOSYNC) on the file system of the chosen directory, which the bench
 * names. Every phase has a time bound; the whole run stays under a minute.
 * --quick shrinks everything for the ctest smoke run. The clock, the
 * scratch directory and the options come from tools/bench/common.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench_common.h"
#include "vs/audit_codec.h"
#include "vs/audit_store.h"
#include "vs/v1/audit.pb-c.h"

static volatile uint8_t g_sink; /* keeps the raw hashing from being optimized out */

struct cfg {
    bool quick;
    const char *parent;
    uint64_t n256;      /* entries to append in batches of 256 */
    uint64_t n1;        /* single appends */
    double phase_secs;  /* time bound of each append phase */
};

/* A realistic serialized AuditEvent of about 200 bytes. *len gets its size. */
static uint8_t *make_event(uint64_t i, size_t *len)
{
    Vs__V1__AuditEvent ev = VS__V1__AUDIT_EVENT__INIT;
    uint8_t id[16], task[16];
    for (int b = 0; b < 16; b++) {
        id[b] = (uint8_t)(i >> (8 * (b % 8))) ^ (uint8_t)b;
        task[b] = (uint8_t)((i / 7) >> (8 * (b % 8))) ^ (uint8_t)(b * 3);
    }
    char agent[32], detail[64];
    snprintf(agent, sizeof agent, "agent-%05u", (unsigned)(i % 1000));
    snprintf(detail, sizeof detail, "sha256:%016llx%016llx", (unsigned long long)i * 2654435761u,
             (unsigned long long)~i);
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.time_ns = 1700000000000000000ull + i * 1000u;
    ev.component = "scanner";
    ev.category = i % 3 ? "task" : "exfil";
    ev.severity = (Vs__V1__Severity)(1 + i % 7);
    ev.agent = agent;
    ev.task_id.data = task;
    ev.task_id.len = 16;
    ev.event = "task.cleared";
    Vs__V1__KeyValue kv[2] = {VS__V1__KEY_VALUE__INIT, VS__V1__KEY_VALUE__INIT};
    Vs__V1__KeyValue *kvp[2] = {&kv[0], &kv[1]};
    kv[0].key = "output_digest";
    kv[0].value = detail;
    kv[1].key = "note";
    kv[1].value = "scanned 3 files, 0 findings, entropy below threshold";
    ev.details = kvp;
    ev.n_details = 2;
    *len = vs__v1__audit_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    if (buf)
        vs__v1__audit_event__pack(&ev, buf);
    return buf;
}

/* Append up to total entries in batches of batch within secs; returns the
 * entries appended and *secs_used. */
static uint64_t run_appends(vs_audit_store *s, uint8_t **events, size_t *lens, size_t nev,
                            uint64_t *stream, uint64_t total, size_t batch, double secs,
                            double *secs_used)
{
    struct vs_audit_append *items = calloc(batch, sizeof *items);
    uint64_t done = 0;
    double t0 = bench_now_s(), t = t0;
    while (done < total && t - t0 < secs) {
        for (size_t i = 0; i < batch; i++) {
            size_t e = (size_t)((*stream) % nev);
            items[i].event = events[e];
            items[i].len = lens[e];
            items[i].stream_seq = ++*stream;
            items[i].time_ns = 0;
        }
        size_t got = 0;
        int rc = vs_audit_store_append(s, items, batch, &got);
        if (rc) {
            fprintf(stderr, "bench_store: append: %s\n", strerror(-rc));
            exit(1);
        }
        done += got;
        t = bench_now_s();
    }
    free(items);
    *secs_used = t - t0;
    return done;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_store [--quick] [--dir PARENT]\n"
                    "  --quick      small sizes, for the ctest smoke run\n"
                    "  --dir PARENT where the temporary store is made (default $TMPDIR or /tmp);\n"
                    "               appends are durable, so this measures that file system\n");
}

int main(int argc, char **argv)
{
    struct cfg c = {.parent = getenv("TMPDIR"), .n256 = 1000000, .n1 = 3000, .phase_secs = 12.0};
    int rc = bench_store_args(argc, argv, usage, &c.quick, &c.parent);
    if (rc >= 0)
        return rc;
    if (c.quick) {
        c.n256 = 20000;
        c.n1 = 100;
        c.phase_secs = 5.0;
    }
    if (c.parent == NULL || c.parent[0] == '\0')
        c.parent = "/tmp";
    if (sodium_init() < 0) {
        fprintf(stderr, "bench_store: sodium_init failed\n");
        return 1;
    }

    char dir[4096];
    if (bench_scratch_dir(dir, sizeof dir, c.parent, "bench_store", "bench_store") < 0)
        return 1;
    bool tmpfs = bench_on_tmpfs(dir);

    enum { NEV = 4096 };
    uint8_t *events[NEV];
    size_t lens[NEV], total_len = 0;
    for (size_t i = 0; i < NEV; i++) {
        events[i] = make_event(i, &lens[i]);
        if (events[i] == NULL)
            return 1;
        total_len += lens[i];
    }

    vs_audit_store *s = NULL;
    struct vs_audit_store_opts o = {.path = dir};
    rc = vs_audit_store_open(&o, &s);
    if (rc) {
        fprintf(stderr, "bench_store: open %s: %s\n", dir, strerror(-rc));
        return 1;
    }
    printf("# audit store bench: %s%s, events %zu bytes on average (+72 bytes of entry header)\n",
           dir, tmpfs ? " (tmpfs: commits are not really durable)" : "", total_len / NEV);

    uint64_t stream = 0;
    double secs256, secs1;
    uint64_t got256 = run_appends(s, events, lens, NEV, &stream, c.n256, 256, c.phase_secs, &secs256);
    double rate256 = (double)got256 / secs256;
    printf("store append (batch 256): %.0f entries/s   (target >= 200000)\n", rate256);
    fflush(stdout);
    uint64_t got1 = run_appends(s, events, lens, NEV, &stream, c.n1, 1, c.quick ? 2.0 : 4.0, &secs1);
    printf("store append (batch 1): %.0f entries/s   (%llu durable commits in %.2f s)\n",
           (double)got1 / secs1, (unsigned long long)got1, secs1);
    fflush(stdout);

    /* Verification of the whole log against its root, best of a few runs. */
    uint64_t size = vs_audit_store_size(s);
    uint8_t root[VS_HASH_LEN];
    rc = vs_audit_store_root(s, size, root);
    if (rc) {
        fprintf(stderr, "bench_store: root: %s\n", strerror(-rc));
        return 1;
    }
    double best_verify = 0;
    int rounds = c.quick ? 1 : 3;
    for (int r = 0; r < rounds; r++) {
        uint64_t bad = 0;
        double t0 = bench_now_s();
        rc = vs_audit_store_verify(s, size, root, &bad);
        double dt = bench_now_s() - t0;
        if (rc) {
            fprintf(stderr, "bench_store: verify: %s at %llu\n", strerror(-rc),
                    (unsigned long long)bad);
            return 1;
        }
        double rate = (double)size / dt;
        if (rate > best_verify)
            best_verify = rate;
    }

    /* Raw SHA-256 of the same bytes: rebuild a sample of the entries as
     * stored (header + event, from vs_audit_store_get) and hash each twice,
     * as verify does: SHA-256(entry) and SHA-256(0x00 | entry). */
    size_t nsample = size < 65536 ? (size_t)size : 65536;
    uint8_t **ent = calloc(nsample, sizeof *ent);
    size_t *elen = calloc(nsample, sizeof *elen);
    for (size_t i = 0; i < nsample; i++) {
        struct vs_audit_entry e;
        rc = vs_audit_store_get(s, i, &e);
        if (rc) {
            fprintf(stderr, "bench_store: get: %s\n", strerror(-rc));
            return 1;
        }
        elen[i] = 72 + e.len;
        ent[i] = malloc(elen[i]);
        uint8_t *b = ent[i];
        memcpy(b, "vs.audit.v1", 12);
        for (int k = 0; k < 8; k++) {
            b[12 + k] = (uint8_t)(e.seq >> (56 - 8 * k));
            b[20 + k] = (uint8_t)(e.time_ns >> (56 - 8 * k));
            b[28 + k] = (uint8_t)(e.stream_seq >> (56 - 8 * k));
        }
        memcpy(b + 36, e.prev_hash, 32);
        for (int k = 0; k < 4; k++)
            b[68 + k] = (uint8_t)((uint32_t)e.len >> (24 - 8 * k));
        memcpy(b + 72, e.event, e.len);
        uint8_t chain[32];
        vs_audit_codec_chain_hash(b, elen[i], chain);
        if (memcmp(chain, e.chain_hash, 32) != 0) {
            fprintf(stderr, "bench_store: rebuilt entry %zu does not hash as stored\n", i);
            return 1;
        }
    }
    double raw_secs = c.quick ? 0.3 : 2.0, t0 = bench_now_s(), dt = 0;
    uint64_t hashed = 0;
    uint8_t h1[32], h2[32];
    while ((dt = bench_now_s() - t0) < raw_secs) {
        for (size_t i = 0; i < nsample; i++) {
            vs_audit_codec_chain_hash(ent[i], elen[i], h1);
            vs_merkle_leaf(ent[i], elen[i], h2);
            g_sink = (uint8_t)(g_sink ^ h1[0] ^ h2[0]);
        }
        hashed += nsample;
    }
    double raw = (double)hashed / dt;
    printf("verify: %.0f entries/s = %.2f of raw SHA-256 for two hashes per entry (raw: %.0f "
           "entries/s)  (target >= 0.50)\n",
           best_verify, best_verify / raw, raw);

    for (size_t i = 0; i < nsample; i++)
        free(ent[i]);
    free(ent);
    free(elen);
    for (size_t i = 0; i < NEV; i++)
        free(events[i]);
    vs_audit_store_close(s);
    bench_rmtree(dir);
    return 0;
}
