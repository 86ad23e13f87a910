/*
 * vs-scand.c - the two scanner stages of a task (DESIGN.md §1), in one
 * daemon because they hold the same pool key: DESIGN.md §3 names the pool
 * "intake/scanner", so requesters seal payloads and sandboxd seals
 * snapshots to one X25519 key (scand.intake_key).
 *
 *  - Injection (durable consumer "scand-injection" on vs.task.gated): open
 *    the task's payload, scan it for prompt injection (vs_scan_deep: as it
 *    is, normalized, and inside encoded runs), then either re-seal it to
 *    the launcher pool key and publish vs.task.admitted, or publish
 *    vs.task.rejected with the finding (DENIED, audited "injection_blocked")
 *    or, for a payload that cannot be opened, INVALID with the reason.
 *  - Exfil (durable consumer "scand-exfil" on vs.task.output): open the
 *    output snapshot, scan it with the exfil ruleset (secrets, PII, covert
 *    encodings; vs_scan) and judge its size against the task's expected
 *    output (vs_scan_size_anomaly). Nothing at the block level: publish
 *    vs.task.cleared (verdict CLEAN, or SUSPICIOUS with the findings below
 *    the block level) with the deliverable re-sealed to the requester's key
 *    that sandboxd copied into the TaskOutput. Otherwise vs.task.quarantined
 *    (MALICIOUS, the findings, no deliverable), audited "exfil_blocked". A
 *    snapshot that is missing, cannot be opened or is too large, or a
 *    requester key that is missing or unusable, is quarantined too, with a
 *    finding "unverifiable-output" saying why (audited
 *    "exfil_unverifiable"): the ledger then voids the hold, and nothing
 *    unverified is delivered. The snapshot is scanned as bytes, whatever
 *    archive format sandboxd wraps /workspace/out in.
 *
 * Why it is shaped like this:
 *  - Plaintext never crosses the bus. An inline payload is opened into
 *    guarded memory (sodium_malloc) and wiped when the stage is done with
 *    it. A payload too large for one message travels as a blob (vs/blob.h):
 *    vs_blob_fetch opens it with the pool key into the bus's buffer, which
 *    the bus wipes when the callback returns; the scan and the re-seal
 *    happen inside that callback, so no copy of it is kept.
 *  - Each message becomes a job that holds it (vs_msg_hold: the bus sends
 *    InProgress while a blob is fetched or sent, so a long transfer is not
 *    redelivered meanwhile) until the stage's output is stored. Both stages
 *    run the same steps: open (inline, or a blob fetch), the stage's scan
 *    and decision, re-seal to the next reader (inline when it fits easily
 *    in one message, else a blob sent with vs_blob_send), publish. A step
 *    that waits for the bus returns JOB_PENDING and its callback goes on.
 *  - The output is stored in JetStream before the input is acked
 *    (vs_js_publish_then_ack), with a Nats-Msg-Id derived from the task
 *    and the stage: a crash in between redelivers the message, the scan
 *    runs again and JetStream drops the repeated output - each stage
 *    decides a task once. (A re-sent deliverable blob is then orphaned
 *    until the BLOBS stream's age limit removes it.)
 *  - A message is hostile input: sizes are bounded (scand.max_payload,
 *    scand.max_snapshot) before anything is opened or fetched; a message
 *    without a task id is poison (terminated, counted by the bus).
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/audit.h"
#include "vs/blob.h"
#include "vs/daemon.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/log.h"
#include "vs/scan.h"
#include "vs/subjects.h"
#include "vs/v1/task.pb-c.h"

#define STAGE "scanner"
#define RETRY_MS 1000
#define MAX_FINDINGS 32        /* reported per output; the most severe are kept */
#define FETCH_ATTEMPTS 3       /* deliveries whose blob fetch may fail before it counts */
#define JOB_PENDING 1          /* a step goes on in a bus callback */
#define UNVERIFIABLE_RULE "unverifiable-output"

static const struct vs_cfg_key scand_keys[] = {
    {"scand.intake_key", VS_CFG_STRING, true,
     "the intake/scanner pool's box key file (opens task payloads and output snapshots)"},
    {"scand.launcher_key", VS_CFG_STRING, true,
     "the launcher pool's public box key, hex (admitted payloads are sealed to it)"},
    {"scand.rules", VS_CFG_STRING, false, "the injection ruleset file (the built-in one)"},
    {"scand.exfil_rules", VS_CFG_STRING, false, "the exfil ruleset file (the built-in one)"},
    {"scand.block", VS_CFG_STRING, false,
     "the lowest severity that rejects a task or quarantines an output (high)"},
    {"scand.max_payload", VS_CFG_SIZE, false,
     "largest task payload accepted, inline or as a blob (64MiB); larger is INVALID"},
    {"scand.max_snapshot", VS_CFG_SIZE, false,
     "largest output snapshot accepted (64MiB); larger is quarantined"},
    {"scand.size_flag_factor", VS_CFG_INT, false,
     "an output above this many times its expected size is a medium finding (4)"},
    {"scand.size_block_factor", VS_CFG_INT, false,
     "an output above this many times its expected size is a high finding (16)"},
    {"scand.fetch_timeout", VS_CFG_DURATION, false, "how long fetching a blob may take (60s)"},
    {NULL, 0, false, NULL},
};

struct scand {
    vs_daemon *d;
    vs_boxkey *intake;          /* the intake/scanner pool key */
    uint8_t intake_id[VS_KEY_ID_LEN];
    uint8_t launcher_pk[VS_BOX_PUBLICKEY_LEN];
    vs_ruleset *injection_rules, *exfil_rules;
    vs_scan_scratch *injection_scratch, *exfil_scratch;
    enum vs_severity block;
    uint64_t max_payload, max_snapshot, fetch_timeout_ms;
    double size_flag, size_block;
    vs_consumer *gated, *output;
    size_t jobs;                /* messages held by a job */
    uint64_t admitted, rejected, invalid, cleared, quarantined;
};

static struct scand g_scand;

/* ---- jobs: one held message, its payload opened, scanned, re-sealed ------- */

struct job;

/* What a stage does at each step of a job. Each returns 0 (the output is
 * published; the bus acks the message once it is stored), JOB_PENDING or
 * VS_RETRY. */
struct stage {
    const char *payload;        /* "payload", "snapshot": in reasons */
    const char *key_name;       /* the pool key's name in reasons */
    const char *msg_id_suffix;  /* of the output's Nats-Msg-Id */
    /* The payload opened: scan it and decide (re-seal, or refuse). */
    int (*opened)(struct job *j, const uint8_t *plain, size_t n);
    /* It cannot be opened (or used): refuse the task, saying why. */
    int (*unopenable)(struct job *j, const char *reason);
    /* It is re-sealed to the next reader: publish the stage's output. */
    int (*resealed)(struct job *j, const Vs__V1__SealedPayload *p);
};

struct job {
    struct scand *g;
    const struct stage *stage;
    vs_msg *m;                                  /* held until its output is stored */
    const uint8_t *task;                        /* the task id, in m's body */
    const Vs__V1__TaskGated *gated;             /* m's body (injection) */
    const Vs__V1__TaskOutput *output;           /* m's body (exfil) */
    uint64_t max;                               /* largest payload accepted */
    struct vs_finding findings[MAX_FINDINGS];   /* exfil: what the scan found */
    size_t nfindings;
};

static struct job *job_new(struct scand *g, vs_msg *m, const struct stage *stage,
                           const uint8_t *task, uint64_t max)
{
    struct job *j = malloc(sizeof *j);
    if (j == NULL)
        return NULL;
    *j = (struct job){.g = g, .stage = stage, .m = vs_msg_hold(m), .task = task, .max = max};
    g->jobs++;
    return j;
}

/* The end of a job that is not JOB_PENDING: on failure the message is
 * redelivered later (the consumer's max_deliver bounds the retries). */
static void job_end(struct job *j, int rc)
{
    if (rc == JOB_PENDING)
        return;
    if (rc < 0)
        vs_msg_nak(j->m, RETRY_MS);
    j->g->jobs--;
    free(j);
}

/* The stage's refusal with a formatted reason. */
static int refuse(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct job *j, const char *fmt, ...)
{
    char reason[VS_SCAN_SAMPLE_MAX]; /* short: it travels as a finding's excerpt too */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return j->stage->unopenable(j, reason);
}

/* Publish the stage's output for the job's task, then ack its message. */
static int publish_output(struct job *j, const char *subject, const ProtobufCMessage *out)
{
    char hex[VS_ID_HEX_LEN], id[64];
    vs_hex(j->task, VS_ID_LEN, hex);
    snprintf(id, sizeof id, "%s.%s", hex, j->stage->msg_id_suffix);
    return vs_js_publish_then_ack(j->m, subject, out, id, RETRY_MS) == 0 ? 0 : VS_RETRY;
}

/* ---- opening ------------------------------------------------------------------ */

/* The payload's plaintext size as it declares it. */
static uint64_t declared_size(const Vs__V1__SealedPayload *p)
{
    return p->blob != NULL ? p->blob->size : p->ciphertext.len - VS_SEAL_OVERHEAD;
}

/* What makes p unfit to open, into why; false when nothing does. */
static bool payload_problem(const struct job *j, const Vs__V1__SealedPayload *p, char *why,
                            size_t size)
{
    const struct stage *st = j->stage;
    if (p == NULL)
        snprintf(why, size, "no %s", st->payload);
    else if (p->blob != NULL && p->ciphertext.len > 0)
        snprintf(why, size, "%s both inline and a blob", st->payload);
    else if (p->blob == NULL && p->ciphertext.len <= VS_SEAL_OVERHEAD)
        snprintf(why, size, "empty %s", st->payload);
    else if (p->recipient_key_id.len != VS_KEY_ID_LEN ||
             memcmp(p->recipient_key_id.data, j->g->intake_id, VS_KEY_ID_LEN) != 0)
        snprintf(why, size, "%s not sealed to the %s key", st->payload, st->key_name);
    else if (declared_size(p) > j->max)
        snprintf(why, size, "%s larger than %" PRIu64 " bytes", st->payload, j->max);
    else
        return false;
    return true;
}

/* A failed fetch: refused when the blob is not for us or too large, or
 * has not arrived after FETCH_ATTEMPTS deliveries; otherwise retried. */
static int fetch_failed(struct job *j, int status)
{
    const struct stage *st = j->stage;
    if (status == -EBADMSG)
        return refuse(j, "%s does not open with the %s key", st->payload, st->key_name);
    if (status == -EFBIG)
        return refuse(j, "%s larger than %" PRIu64 " bytes", st->payload, j->max);
    if (status == -ENOMEM || vs_msg_delivery_count(j->m) < FETCH_ATTEMPTS) {
        log_warnx("%s blob not fetched (%s); will retry", st->payload, strerror(-status));
        return VS_RETRY;
    }
    return refuse(j, "%s blob could not be fetched", st->payload);
}

static void on_payload_fetched(int status, const uint8_t *data, size_t len, void *arg)
{
    struct job *j = arg;
    job_end(j, status == 0 ? j->stage->opened(j, data, len) : fetch_failed(j, status));
}

static int open_inline(struct job *j, const ProtobufCBinaryData *sealed)
{
    size_t n = sealed->len - VS_SEAL_OVERHEAD;
    uint8_t *plain = sodium_malloc(n > 0 ? n : 1);
    if (plain == NULL)
        return VS_RETRY;
    int rc = vs_unseal(j->g->intake, sealed->data, sealed->len, plain) == 0
                 ? j->stage->opened(j, plain, n)
                 : refuse(j, "%s does not open with the %s key", j->stage->payload,
                          j->stage->key_name);
    sodium_free(plain); /* wipes it */
    return rc;
}

/* Open the job's sealed payload with the pool key and hand it to the
 * stage, now (inline) or when its blob has been fetched. */
static int open_payload(struct job *j, const Vs__V1__SealedPayload *p)
{
    char why[VS_SCAN_SAMPLE_MAX];
    if (payload_problem(j, p, why, sizeof why))
        return j->stage->unopenable(j, why);
    if (p->blob == NULL)
        return open_inline(j, &p->ciphertext);
    int rc = vs_blob_fetch(vs_daemon_bus(j->g->d), p->blob, j->g->intake, j->max,
                           j->g->fetch_timeout_ms, on_payload_fetched, j);
    return rc == 0 ? JOB_PENDING : fetch_failed(j, rc);
}

/* ---- re-sealing ----------------------------------------------------------------- */

/* Inline when the sealed payload takes at most half a message of the TASKS
 * stream: the rest of the message (a whole TaskSubmit, findings) fits. */
static size_t inline_max(vs_bus *bus)
{
    size_t stream_max = (size_t)vs_stream(VS_STREAM_TASKS)->max_msg_size;
    size_t bus_max = vs_bus_max_msg(bus);
    return (bus_max < stream_max ? bus_max : stream_max) / 2;
}

static void on_resealed(int status, const Vs__V1__SealedPayload *p, void *arg)
{
    struct job *j = arg;
    if (status < 0) {
        log_warnx("re-sealed %s not stored (%s); will retry", j->stage->payload,
                  strerror(-status));
        job_end(j, VS_RETRY);
        return;
    }
    job_end(j, j->stage->resealed(j, p));
}

/* Seal plain to recipient_pk - inline, or as a blob when large - and hand
 * the sealed payload to the stage (on_resealed ends the job, before this
 * returns for an inline payload). */
static int reseal(struct job *j, const uint8_t *plain, size_t n,
                  const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN])
{
    vs_bus *bus = vs_daemon_bus(j->g->d);
    int rc = vs_payload_seal(bus, plain, n, recipient_pk, inline_max(bus), j->max, on_resealed, j);
    return rc == 0 ? JOB_PENDING : VS_RETRY;
}

/* ---- the injection stage: vs.task.gated -> admitted | rejected ------------------ */

/* The first finding at or above the block level (the scan goes on). */
struct injection_verdict {
    enum vs_severity block;
    bool blocked;
    char reason[256];
    const char *rule, *family;
};

static int on_injection_finding(const struct vs_finding *f, void *arg)
{
    struct injection_verdict *v = arg;
    if (v->blocked || f->severity < v->block)
        return 0;
    v->blocked = true;
    v->rule = f->rule_id;
    v->family = f->family;
    snprintf(v->reason, sizeof v->reason, "prompt injection: %s (%s) at line %zu%s", f->rule_id,
             f->family, f->line, f->transforms ? ", after normalizing or decoding" : "");
    return 0;
}

/* vs.task.rejected for the job's task. */
static int reject(struct job *j, Vs__V1__StatusCode code, const char *reason)
{
    Vs__V1__Status st = VS__V1__STATUS__INIT;
    st.code = code;
    st.reason = (char *)reason;
    Vs__V1__TaskRejected r = VS__V1__TASK_REJECTED__INIT;
    r.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)j->task};
    r.stage = STAGE;
    r.status = &st;
    r.rejected_at_ns = vs_now_ns();
    return publish_output(j, "vs.task.rejected", &r.base);
}

static int injection_opened(struct job *j, const uint8_t *plain, size_t n)
{
    struct scand *g = j->g;
    struct injection_verdict v = {.block = g->block};
    if (vs_scan_deep(g->injection_rules, g->injection_scratch, plain, n, on_injection_finding,
                     &v) != 0)
        return VS_RETRY;
    if (!v.blocked)
        return reseal(j, plain, n, g->launcher_pk);
    g->rejected++;
    vs_audit_emit(vs_daemon_bus(g->d), STAGE, VS__V1__SEVERITY__SEVERITY_WARNING,
                  j->gated->task->agent, j->task, "injection_blocked", "rule", v.rule, "family",
                  v.family, NULL);
    return reject(j, VS__V1__STATUS_CODE__STATUS_DENIED, v.reason);
}

static int injection_unopenable(struct job *j, const char *reason)
{
    j->g->invalid++;
    return reject(j, VS__V1__STATUS_CODE__STATUS_INVALID, reason);
}

/* vs.task.admitted: the same task, its payload re-sealed to the launchers. */
static int injection_resealed(struct job *j, const Vs__V1__SealedPayload *p)
{
    Vs__V1__TaskSubmit task = *j->gated->task;
    task.payload = (Vs__V1__SealedPayload *)p;
    Vs__V1__TaskAdmitted a = VS__V1__TASK_ADMITTED__INIT;
    a.task = &task;
    a.hold_transfer_id = j->gated->hold_transfer_id;
    a.admitted_at_ns = vs_now_ns();
    int rc = publish_output(j, "vs.task.admitted", &a.base);
    if (rc == 0)
        j->g->admitted++;
    return rc;
}

static const struct stage injection_stage = {
    .payload = "payload",
    .key_name = "intake",
    .msg_id_suffix = "scan",
    .opened = injection_opened,
    .unopenable = injection_unopenable,
    .resealed = injection_resealed,
};

static int on_gated(vs_msg *m, void *arg)
{
    struct scand *g = arg;
    const Vs__V1__TaskGated *tg = (const Vs__V1__TaskGated *)vs_msg_body(m);
    if (tg->task == NULL || tg->task->task_id.len != VS_ID_LEN)
        return -EBADMSG; /* no task to answer for: poison (terminated, counted) */
    struct job *j = job_new(g, m, &injection_stage, tg->task->task_id.data, g->max_payload);
    if (j == NULL)
        return VS_RETRY;
    j->gated = tg;
    job_end(j, open_payload(j, tg->task->payload));
    return 0;
}

/* ---- the exfil stage: vs.task.output -> cleared | quarantined -------------------- */

/* Keep a finding: while there is room, or in place of a less severe one. */
static int collect_finding(const struct vs_finding *f, void *arg)
{
    struct job *j = arg;
    if (j->nfindings < MAX_FINDINGS) {
        j->findings[j->nfindings++] = *f;
        return 0;
    }
    struct vs_finding *least = &j->findings[0];
    for (size_t i = 1; i < MAX_FINDINGS; i++)
        if (j->findings[i].severity < least->severity)
            least = &j->findings[i];
    if (least->severity < f->severity)
        *least = *f;
    return 0;
}

/* The first kept finding at or above the block level, or NULL. */
static const struct vs_finding *first_blocking(const struct job *j)
{
    for (size_t i = 0; i < j->nfindings; i++)
        if (j->findings[i].severity >= j->g->block)
            return &j->findings[i];
    return NULL;
}

static Vs__V1__Verdict verdict_of(const struct scand *g, enum vs_severity s)
{
    return s >= g->block         ? VS__V1__VERDICT__VERDICT_MALICIOUS
           : s >= VS_SEV_MEDIUM ? VS__V1__VERDICT__VERDICT_SUSPICIOUS
                                : VS__V1__VERDICT__VERDICT_CLEAN;
}

static uint32_t confidence_percent(enum vs_confidence c)
{
    return c == VS_CONF_HIGH ? 90 : c == VS_CONF_MEDIUM ? 60 : 30;
}

/* A ScanVerdict of the exfil stage with the job's findings: the worst of
 * their verdicts (CLEAN when there are none). Excerpts are the findings'
 * redacted samples; transform stays empty, as the snapshot is scanned as
 * it is. */
static int publish_verdict(struct job *j, const char *subject,
                           const Vs__V1__SealedPayload *deliverable)
{
    Vs__V1__Finding pb[MAX_FINDINGS], *ptrs[MAX_FINDINGS];
    Vs__V1__ScanVerdict v = VS__V1__SCAN_VERDICT__INIT;
    v.verdict = VS__V1__VERDICT__VERDICT_CLEAN;
    for (size_t i = 0; i < j->nfindings; i++) {
        const struct vs_finding *f = &j->findings[i];
        pb[i] = (Vs__V1__Finding)VS__V1__FINDING__INIT;
        pb[i].rule_id = (char *)f->rule_id;
        pb[i].severity = verdict_of(j->g, f->severity);
        pb[i].confidence = confidence_percent(f->confidence);
        pb[i].offset = f->offset;
        pb[i].length = f->length;
        pb[i].excerpt = (char *)f->sample;
        ptrs[i] = &pb[i];
        if (pb[i].severity > v.verdict)
            v.verdict = pb[i].severity;
    }
    v.task_id = (ProtobufCBinaryData){VS_ID_LEN, (uint8_t *)j->task};
    v.stage = VS__V1__SCAN_STAGE__SCAN_STAGE_EXFIL;
    v.n_findings = j->nfindings;
    v.findings = ptrs;
    v.deliverable = (Vs__V1__SealedPayload *)deliverable;
    v.at_ns = vs_now_ns();
    return publish_output(j, subject, &v.base);
}

static int exfil_opened(struct job *j, const uint8_t *plain, size_t n)
{
    struct scand *g = j->g;
    if (vs_scan(g->exfil_rules, g->exfil_scratch, plain, n, 0, collect_finding, j) != 0)
        return VS_RETRY;
    struct vs_finding size;
    if (vs_scan_size_anomaly(n, j->output->expected_output_bytes, g->size_flag, g->size_block,
                             &size) == 1)
        collect_finding(&size, j);
    const struct vs_finding *b = first_blocking(j);
    if (b == NULL)
        return reseal(j, plain, n, j->output->requester_box_key.data);
    g->quarantined++;
    vs_audit_emit(vs_daemon_bus(g->d), STAGE, VS__V1__SEVERITY__SEVERITY_WARNING, j->output->agent,
                  j->task, "exfil_blocked", "rule", b->rule_id, "family", b->family, NULL);
    return publish_verdict(j, "vs.task.quarantined", NULL);
}

/* Quarantined with one finding that says why the output is unverifiable. */
static int exfil_unopenable(struct job *j, const char *reason)
{
    struct vs_finding *f = &j->findings[0];
    *f = (struct vs_finding){.rule_id = UNVERIFIABLE_RULE, .family = "integrity",
                             .severity = VS_SEV_CRITICAL, .confidence = VS_CONF_HIGH};
    snprintf(f->sample, sizeof f->sample, "%s", reason);
    j->nfindings = 1;
    j->g->quarantined++;
    vs_audit_emit(vs_daemon_bus(j->g->d), STAGE, VS__V1__SEVERITY__SEVERITY_WARNING,
                  j->output->agent, j->task, "exfil_unverifiable", "reason", reason, NULL);
    return publish_verdict(j, "vs.task.quarantined", NULL);
}

static int exfil_resealed(struct job *j, const Vs__V1__SealedPayload *p)
{
    int rc = publish_verdict(j, "vs.task.cleared", p);
    if (rc == 0)
        j->g->cleared++;
    return rc;
}

static const struct stage exfil_stage = {
    .payload = "snapshot",
    .key_name = "scanner",
    .msg_id_suffix = "exfil",
    .opened = exfil_opened,
    .unopenable = exfil_unopenable,
    .resealed = exfil_resealed,
};

static int on_output(vs_msg *m, void *arg)
{
    struct scand *g = arg;
    const Vs__V1__TaskOutput *out = (const Vs__V1__TaskOutput *)vs_msg_body(m);
    if (out->task_id.len != VS_ID_LEN)
        return -EBADMSG; /* no task to answer for: poison (terminated, counted) */
    struct job *j = job_new(g, m, &exfil_stage, out->task_id.data, g->max_snapshot);
    if (j == NULL)
        return VS_RETRY;
    j->output = out;
    job_end(j, vs_box_key_usable(out->requester_box_key.data, out->requester_box_key.len)
                   ? open_payload(j, out->snapshot)
                   : refuse(j, "requester key missing or malformed"));
    return 0;
}

/* ---- the daemon ------------------------------------------------------------------ */

static int load_keys(struct scand *g, const vs_config *cfg)
{
    const char *intake = vs_config_string(cfg, "scand.intake_key", NULL);
    const char *launcher = vs_config_string(cfg, "scand.launcher_key", NULL);
    int rc = vs_boxkey_load(intake, &g->intake);
    if (rc < 0) {
        log_warnx("cannot load the intake key %s: %s", intake, strerror(-rc));
        return rc;
    }
    vs_key_id(vs_boxkey_public(g->intake), VS_BOX_PUBLICKEY_LEN, g->intake_id);
    if (vs_box_public_parse(launcher, g->launcher_pk) != 0) {
        log_warnx("scand.launcher_key must be %d hex digits", 2 * VS_BOX_PUBLICKEY_LEN);
        return -EINVAL;
    }
    return 0;
}

static int load_limits(struct scand *g, const vs_config *cfg)
{
    const char *block = vs_config_string(cfg, "scand.block", "high");
    if (vs_scan_severity_parse(block, &g->block) != 0) {
        log_warnx("scand.block: unknown level '%s'", block);
        return -EINVAL;
    }
    g->max_payload = vs_config_size(cfg, "scand.max_payload", 64u << 20);
    g->max_snapshot = vs_config_size(cfg, "scand.max_snapshot", 64u << 20);
    g->fetch_timeout_ms = vs_config_duration_ms(cfg, "scand.fetch_timeout", 60000);
    g->size_flag = (double)vs_config_int(cfg, "scand.size_flag_factor", VS_SCAN_SIZE_FLAG_FACTOR);
    g->size_block =
        (double)vs_config_int(cfg, "scand.size_block_factor", VS_SCAN_SIZE_BLOCK_FACTOR);
    struct vs_finding probe;
    if (vs_scan_size_anomaly(0, 0, g->size_flag, g->size_block, &probe) != 0) {
        log_warnx("scand.size_flag_factor and size_block_factor must be 1 <= flag <= block");
        return -EINVAL;
    }
    return 0;
}

static int scand_open(vs_daemon *d)
{
    struct scand *g = &g_scand;
    g->d = d;
    vs_daemon_set_data(d, g);
    const vs_config *cfg = vs_daemon_config(d);
    int rc;
    if ((rc = load_keys(g, cfg)) < 0 || (rc = load_limits(g, cfg)) < 0)
        return rc;
    const char *injection =
        vs_config_string(cfg, "scand.rules", VS_SCAN_RULES_DIR "/injection.yaml");
    const char *exfil = vs_config_string(cfg, "scand.exfil_rules", VS_SCAN_RULES_DIR "/exfil.yaml");
    char err[600];
    if ((rc = vs_ruleset_load_with_scratch(injection, &g->injection_rules, &g->injection_scratch,
                                           err, sizeof err)) < 0 ||
        (rc = vs_ruleset_load_with_scratch(exfil, &g->exfil_rules, &g->exfil_scratch, err,
                                           sizeof err)) < 0)
        log_warnx("%s", err);
    return rc;
}

static int scand_start(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    vs_bus *bus = vs_daemon_bus(d);
    const struct vs_consumer_def gated = {
        .stream = "TASKS", .durable = "scand-injection", .filter_subject = "vs.task.gated",
        .ack_wait_ms = 30000, .max_ack_pending = 64, .nak_delay_ms = RETRY_MS};
    /* Few in flight: each may hold a snapshot of up to scand.max_snapshot. */
    const struct vs_consumer_def output = {
        .stream = "TASKS", .durable = "scand-exfil", .filter_subject = "vs.task.output",
        .ack_wait_ms = 30000, .max_ack_pending = 8, .nak_delay_ms = RETRY_MS};
    int rc = vs_js_consume(bus, &gated, &vs__v1__task_gated__descriptor, on_gated, g, &g->gated);
    if (rc < 0)
        return rc;
    return vs_js_consume(bus, &output, &vs__v1__task_output__descriptor, on_output, g, &g->output);
}

static void scand_stop(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    vs_consumer_free(g->gated);
    vs_consumer_free(g->output);
    g->gated = g->output = NULL;
}

static bool scand_idle(vs_daemon *d)
{
    const struct scand *g = vs_daemon_data(d);
    return g->jobs == 0;
}

static void scand_close(vs_daemon *d)
{
    struct scand *g = vs_daemon_data(d);
    /* Past shutdown_timeout, blob transfers may still be under way: their
     * callbacks use the keys and rules, so let them end (each is bounded by
     * its own deadline) before those are freed. */
    while (g->jobs > 0 && uv_run(vs_daemon_loop(d), UV_RUN_ONCE) != 0)
        ;
    vs_scan_scratch_free(g->exfil_scratch);
    vs_ruleset_free(g->exfil_rules);
    vs_scan_scratch_free(g->injection_scratch);
    vs_ruleset_free(g->injection_rules);
    vs_boxkey_free(g->intake);
}

static void scand_counters(vs_daemon *d, vs_counter_add_fn add, void *ctx)
{
    struct scand *g = vs_daemon_data(d);
    add(ctx, "admitted", g->admitted);
    add(ctx, "rejected", g->rejected);
    add(ctx, "invalid", g->invalid);
    add(ctx, "cleared", g->cleared);
    add(ctx, "quarantined", g->quarantined);
}

int main(int argc, char **argv)
{
    static const struct vs_daemon_def def = {
        .component = "scand",
        .summary = "the scanner stages: vs.task.gated -> vs.task.admitted | rejected (injection),\n"
                   "vs.task.output -> vs.task.cleared | quarantined (exfil)",
        .config = scand_keys,
        .open = scand_open,
        .start = scand_start,
        .stop = scand_stop,
        .idle = scand_idle,
        .close = scand_close,
        .counters = scand_counters,
    };
    return vs_daemon_main(&def, argc, argv);
}
