/*
 * vs-scand.c - the scanner stage that admits tasks (DESIGN.md §1): it
 * consumes vs.task.gated, opens the task's payload with the intake pool
 * key, scans it for prompt injection (vs_scan_deep: as it is, normalized,
 * and inside encoded runs), and either re-seals it to the launcher pool
 * key and publishes vs.task.admitted, or publishes vs.task.rejected with
 * the finding and audits the block.
 *
 * Why it is shaped like this:
 *  - Plaintext never crosses the bus: it exists only in guarded memory
 *    (sodium_malloc) while it is scanned and re-sealed, and is wiped then.
 *  - The output is stored in JetStream before the input is acked
 *    (vs_js_publish_then_ack), with a Nats-Msg-Id derived from the task:
 *    a crash in between redelivers the task, the scan runs again and
 *    JetStream drops the repeated output - the task is decided once.
 *  - A task that cannot be opened (no payload, not sealed to the intake
 *    key, tampered) is rejected as INVALID rather than dropped, so that
 *    the ledger refunds its hold; the message itself is hostile input.
 *  - Payloads that travel as blobs (DESIGN.md §3) are not handled yet and
 *    are rejected as INVALID with that reason.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/audit.h"
#include "vs/daemon.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/normalize.h"
#include "vs/scan.h"
#include "vs/v1/task.pb-c.h"

#define STAGE "scanner"
#define RETRY_MS 1000

static const struct vs_cfg_key scand_keys[] = {
    {"scand.intake_key", VS_CFG_STRING, true, "the intake pool's box key file (opens payloads)"},
    {"scand.launcher_key", VS_CFG_STRING, true,
     "the launcher pool's public box key, hex (admitted payloads are sealed to it)"},
    {"scand.rules", VS_CFG_STRING, false, "the injection ruleset file (the built-in one)"},
    {"scand.block", VS_CFG_STRING, false, "the lowest severity that rejects a task (high)"},
    {NULL, 0, false, NULL},
};

struct scand {
    vs_daemon *d;
    vs_boxkey *intake;
    uint8_t intake_id[VS_KEY_ID_LEN];
    uint8_t launcher_pk[VS_BOX_PUBLICKEY_LEN];
    uint8_t launcher_id[VS_KEY_ID_LEN];
    vs_ruleset *rules;
    vs_scan_scratch *scratch;
    enum vs_severity block;
    vs_consumer *gated;
    uint64_t admitted, rejected, invalid;
};

static struct scand g_scand;

/* The first finding at or above the block level (the scan goes on). */
struct verdict {
    enum vs_severity block;
    bool blocked;
    char reason[256];
    const char *rule, *family;
};

static int on_finding(const struct vs_finding *f, void *arg)
{
    struct verdict *v = arg;
    if (v->blocked || f->severity < v->block)
        return 0;
    v->blocked = true;
    v->rule = f->rule_id;
    v->family = f->family;
    snprintf(v->reason, sizeof v->reason, "prompt injection: %s (%s) at line %zu%s", f->rule_id,
             f->family, f->line, f->transforms ? ", after normalizing or decoding" : "");
    return 0;
}

static void msg_id(const uint8_t *task, const char *what, char out[64])
{
    char hex[VS_ID_HEX_LEN];
    vs_hex(task, VS_ID_LEN, hex);
    snprintf(out, 64, "%s.%s", hex, what);
}

/* vs.task.rejected for the task, then ack. */
static int reject(vs_msg *m, const uint8_t *task, Vs__V1__StatusCode code, const char *reason)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = code;
    st.reason = (char *)reason;
    Vs__V1__TaskRejected r = VS__V1__TASK_REJECTED__INIT;
    r.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)task};
    r.stage = STAGE;
    r.status = &st;
    r.rejected_at_ns = vs_now_ns();
    char id[64];
    msg_id(task, "scan", id);
    return vs_js_publish_then_ack(m, "vs.task.rejected", &r.base, id, RETRY_MS);
}

/* Re-seal plain to the launcher pool and publish vs.task.admitted. */
static int admit(struct scand *g, vs_msg *m, const Vs__V1__TaskGated *tg, const uint8_t *plain,
                 size_t n)
{
    uint8_t *sealed = malloc(n + VS_SEAL_OVERHEAD);
    if (sealed == NULL || vs_seal(g->launcher_pk, plain, n, sealed) != 0) {
        free(sealed);
        return VS_RETRY;
    }
    Vs__V1__SealedPayload payload = VS__V1__SEALED_PAYLOAD__INIT;
    payload.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, g->launcher_id};
    payload.ciphertext = (ProtobufCBinaryData){n + VS_SEAL_OVERHEAD, sealed};
    Vs__V1__TaskSubmit task = *tg->task; /* the same task, its payload re-sealed */
    task.payload = &payload;
    Vs__V1__TaskAdmitted a = VS__V1__TASK_ADMITTED__INIT;
    a.task = &task;
    a.hold_transfer_id = tg->hold_transfer_id;
    a.admitted_at_ns = vs_now_ns();
    char id[64];
    msg_id(tg->task->task_id.data, "scan", id);
    int rc = vs_js_publish_then_ack(m, "vs.task.admitted", &a.base, id, RETRY_MS);
    free(sealed);
    return rc;
}

static int on_gated(vs_msg *m, void *arg)
{
    struct scand *g = arg;
    const Vs__V1__TaskGated *tg = (const Vs__V1__TaskGated *)vs_msg_body(m);
    if (tg->task == NULL || tg->task->task_id.len != VS_ID_LEN)
        return -EBADMSG; /* no task to answer for: poison (terminated, counted) */
    const uint8_t *task = tg->task->task_id.data;
    const Vs__V1__SealedPayload *p = tg->task->payload;
    const char *why = p == NULL                                   ? "no payload"
                      : p->blob != NULL                           ? "payload blobs are not handled yet"
                      : p->ciphertext.len <= VS_SEAL_OVERHEAD     ? "empty payload"
                      : p->recipient_key_id.len != VS_KEY_ID_LEN ||
                              memcmp(p->recipient_key_id.data,
                                     g->intake_id, VS_KEY_ID_LEN) != 0
                          ? "payload not sealed to the intake key"
                          : NULL;
    if (why != NULL) {
        g->invalid++;
        return reject(m, task, VS__V1__STATUS_CODE__STATUS_INVALID, why);
    }
    size_t n = p->ciphertext.len - VS_SEAL_OVERHEAD;
    uint8_t *plain = sodium_malloc(n > 0 ? n : 1);
    if (plain == NULL)
        return VS_RETRY;
    if (vs_unseal(g->intake, p->ciphertext.data, p->ciphertext.len, plain) != 0) {
        sodium_free(plain);
        g->invalid++;
        return reject(m, task, VS__V1__STATUS_CODE__STATUS_INVALID,
                      "payload does not open with the intake key");
    }
    struct verdict v = {.block = g->block};
    int rc = vs_scan_deep(g->rules, g->scratch, plain, n, on_finding, &v);
    if (rc != 0) {
        sodium_free(plain);
        return VS_RETRY;
    }
    if (v.blocked) {
        sodium_free(plain);
        g->rejected++;
        vs_audit_emit(vs_daemon_bus(g->d), STAGE, VS__V1__SEVERITY__SEVERITY_WARNING,
                      tg->task->agent, task, "injection_blocked", "rule", v.rule, "family", v.family,
                      NULL);
        return reject(m, task, VS__V1__STATUS_CODE__STATUS_DENIED, v.reason);
    }
    rc = admit(g, m, tg, plain, n);
    sodium_free(plain); /* wipes it */
    if (rc == 0)
        g->admitted++;
    return rc;
}

static int scand_open(vs_daemon *d)
{
    struct scand *g = &g_scand;
    g->d = d;
    vs_daemon_set_data(d, g);
    const vs_config *cfg = vs_daemon_config(d);
    const char *intake = vs_config_string(cfg, "scand.intake_key", NULL);
    const char *launcher = vs_config_string(cfg, "scand.launcher_key", NULL);
    const char *rules = vs_config_string(cfg, "scand.rules", VS_SCAN_RULES_DIR "/injection.yaml");
    const char *block = vs_config_string(cfg, "scand.block", "high");
    int rc = vs_boxkey_load(intake, &g->intake);
    if (rc < 0) {
        log_warnx("cannot load the intake key %s: %s", intake, strerror(-rc));
        return rc;
    }
    vs_key_id(vs_boxkey_public(g->intake), VS_BOX_PUBLICKEY_LEN, g->intake_id);
    size_t got = 0;
    if (sodium_hex2bin(g->launcher_pk, sizeof g->launcher_pk, launcher, strlen(launcher), NULL, &got,
                       NULL) != 0 ||
        got != sizeof g->launcher_pk) {
        log_warnx("scand.launcher_key must be %d hex digits", 2 * VS_BOX_PUBLICKEY_LEN);
        return -EINVAL;
    }
    vs_key_id(g->launcher_pk, sizeof g->launcher_pk, g->launcher_id);
    if (vs_scan_severity_parse(block, &g->block) != 0) {
        log_warnx("scand.block: unknown level '%s'", block);
        return -EINVAL;
    }
    char err[600];
    if ((rc = vs_ruleset_load(rules, &g->rules, err, sizeof err)) < 0) {
        log_warnx("%s", err);
        return rc;
    }
    return vs_scan_scratch_new(g->rules, &g->scratch);
}

static int scand_start(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    const struct vs_consumer_def def = {
        .stream = "TASKS", .durable = "scand-injection", .filter_subject = "vs.task.gated",
        .ack_wait_ms = 30000, .max_ack_pending = 64, .nak_delay_ms = RETRY_MS};
    return vs_js_consume(vs_daemon_bus(d), &def, &vs__v1__task_gated__descriptor, on_gated, g,
                         &g->gated);
}

static void scand_stop(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    vs_consumer_free(g->gated);
    g->gated = NULL;
}

static void scand_close(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    vs_scan_scratch_free(g->scratch);
    vs_ruleset_free(g->rules);
    vs_boxkey_free(g->intake);
}

static void scand_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct scand *g = vs_daemon_data(d);
    add(ctx, "admitted", g->admitted);
    add(ctx, "rejected", g->rejected);
    add(ctx, "invalid", g->invalid);
}

int main(int argc, char **argv)
{
    static const struct vs_daemon_def def = {
        .component = "scand",
        .summary = "the injection scanner stage: vs.task.gated -> vs.task.admitted | rejected",
        .config = scand_keys,
        .open = scand_open,
        .start = scand_start,
        .stop = scand_stop,
        .close = scand_close,
        .counters = scand_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
