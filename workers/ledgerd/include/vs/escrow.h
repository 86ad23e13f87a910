/*
 * escrow.h - the escrow rules on top of the ledger store (DESIGN.md
 * section 6): accounts by name, holds on admission, release / refund by a
 * task's fate, the dispute window and 3-agent panels, reputation, the claim
 * check, and M-of-N approvals for money moved outside escrow.
 *
 * Every call runs inside a ledger transaction (ledger_store.h) and writes
 * its messages (Settlement, AuditEvent) to the store's outbox in that same
 * transaction, so a crash can neither lose an effect nor repeat one.
 * Transfer ids are derived from the task or command id and a role (a
 * HOLD's is its command's id, or the one it names), so every money
 * movement is idempotent at the store as well.
 *
 * The money flow of a task (bounty B, fee f = B * fee_bps / 10000):
 *   HOLD      requester -> escrow:<task>, pending, with a timeout
 *   outcome   cleared, quarantined or failed (from the TASKS stream):
 *             window 0: cleared posts the hold and pays escrow -> agent
 *             (B - f) and escrow -> fee (f), linked; otherwise the hold is
 *             voided. With a dispute window the hold is posted into the
 *             escrow account at once and paid out when the window closes.
 *   rejected, cancelled (REFUND) or expired before an outcome: voided.
 *   DISPUTE   within the window, by the requester or the agent: a panel of
 *             the 3 highest-reputation agents that are neither party and
 *             whose owners differ from each other and from the parties'
 *             (an agent without an owner cannot be shown independent and
 *             is never chosen).
 *             2 of 3 votes decide (agent: pay; requester: refund; split:
 *             half each, the fee on the agent's half). Three different
 *             votes are a tie: split. No decision by the vote deadline:
 *             the original outcome stands. Too few eligible agents: the
 *             dispute is refused and the original outcome stands.
 *   ESCROW_RELEASE by the requester (e.g. a Lead agent that posted a
 *             subtask): pays a cleared task at once, closing the window.
 * Reputation: Rs = sum(w_i s_i) / sum(w_i), w_i = 0.95^(n-1-i), s = 1 for a
 * payout, 0 for a refund after a failure, 0.5 for a split; 0.5 with no
 * history; x1.05 (capped at 1) while Live Verified.
 */
#ifndef VS_ESCROW_H
#define VS_ESCROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/keys.h"
#include "vs/ledger_store.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define VS_ESCROW_LEDGER 1          /* the one currency ledger */
#define VS_ESCROW_OPERATOR "operator"
#define VS_ESCROW_FEE "fee"
#define VS_ESCROW_MAX_GOVERNORS 16

enum vs_account_code {
    VS_CODE_WALLET = 1,
    VS_CODE_ESCROW = 2,
    VS_CODE_FEE = 3,
    VS_CODE_OPERATOR = 4,
};

struct vs_escrow_config {
    uint32_t fee_bps;               /* default 500 (5 %) */
    uint64_t dispute_window_ms;     /* 0: settle at the outcome */
    uint64_t vote_timeout_ms;       /* a panel's deadline; default 24 h */
    uint64_t hold_timeout_ms;       /* a HOLD without timeout_ms; default 24 h */
    double min_reputation;          /* the claim check's floor; default 0.3 */
    unsigned governance_threshold;  /* M approvals needed (>= 1) */
    size_t n_governors;             /* N keys */
    uint8_t governors[VS_ESCROW_MAX_GOVERNORS][32];
    const char *component;          /* audit events' component, "ledgerd" */
};

typedef struct vs_escrow vs_escrow;

/* Bind the rules to a store (and its expiry hook). Creates the operator
 * and fee accounts on first use. */
VS_API int vs_escrow_new(vs_ledger *l, const struct vs_escrow_config *cfg, vs_escrow **out);
VS_API void vs_escrow_free(vs_escrow *e);

/* Where a command came from: the platform's own subject (vs.ledger.command,
 * writable only by platform components) or an agent-facing one
 * (vs.escrow.*: the acting account's signature is required). */
enum vs_escrow_origin { VS_ORIGIN_PLATFORM, VS_ORIGIN_AGENT };

/* A reply and the memory its fields point to. */
struct vs_escrow_reply {
    Vs__V1__LedgerReply msg;
    Vs__V1__Status status;
    uint8_t command_id[VS_LEDGER_ID_LEN];
    uint8_t transfer_id[VS_LEDGER_ID_LEN];
    char reason[160];
    char detail[320];
    char panel_names[3][VS_LEDGER_NAME_MAX];
    char *panel[3];
    Vs__V1__LedgerEntry **entries; /* heap, HISTORY/HOLDS */
    size_t cap;
};
VS_API void vs_escrow_reply_init(struct vs_escrow_reply *r);
VS_API void vs_escrow_reply_clear(struct vs_escrow_reply *r);

/* Apply one write command (raw: its bytes as received, for signatures)
 * inside write transaction t. The outcome is in r (status OK, DENIED or
 * INVALID with a reason); returns 0, or -errno when the store failed (the
 * batch must be aborted and retried). */
VS_API int vs_escrow_command(vs_escrow *e, vs_ledger_txn *t, enum vs_escrow_origin origin,
                             const Vs__V1__LedgerCommand *cmd, struct vs_escrow_reply *r);
/* Answer a read-only command (BALANCE, CLAIM_CHECK, HISTORY, HOLDS, CHECK)
 * inside a read transaction. */
VS_API int vs_escrow_query(vs_escrow *e, vs_ledger_txn *t, const Vs__V1__LedgerCommand *cmd,
                           struct vs_escrow_reply *r);

/* A task's fate from the TASKS stream. */
enum vs_task_outcome {
    VS_OUTCOME_CLEARED = 1,
    VS_OUTCOME_QUARANTINED,
    VS_OUTCOME_FAILED,
    VS_OUTCOME_REJECTED,
};
VS_API int vs_escrow_task_outcome(vs_escrow *e, vs_ledger_txn *t, const uint8_t task_id[16],
                                  enum vs_task_outcome outcome, const char *why);
/* A verification result: sets or clears the agent's Live Verified flag. */
VS_API int vs_escrow_verified(vs_escrow *e, vs_ledger_txn *t, const char *agent, bool live);
/* Settle what is due at the transaction's time (closed windows, vote
 * deadlines); expired holds are handled by the store's expiry hook. */
VS_API int vs_escrow_tick(vs_escrow *e, vs_ledger_txn *t);
/* The earliest time anything is due (a timer or a hold deadline), 0: none. */
VS_API int vs_escrow_next_due(vs_escrow *e, vs_ledger_txn *t, uint64_t *at_ns);

/* Build the signed form of cmd (whose signatures are empty): out gets
 * cmd's command_id and op and one envelope per key over cmd's bytes
 * (malloc'd; vs_escrow_signed_clear). ttl_ms: the envelopes' validity. */
VS_API int vs_escrow_sign(const Vs__V1__LedgerCommand *cmd, vs_signkey *const *keys, size_t n,
                          uint64_t ttl_ms, Vs__V1__LedgerCommand *out);
VS_API void vs_escrow_signed_clear(Vs__V1__LedgerCommand *out);

/* Write an audit event to the transaction's outbox (published after the
 * commit): details are n name/value pairs, as for vs_audit_emitv. */
VS_API int vs_escrow_audit(vs_escrow *e, vs_ledger_txn *t, const char *category, Vs__V1__Severity sev,
                           const char *agent, const uint8_t *task, const char *event,
                           const char *const *kv, size_t n);

/* An account's reputation Rs (0.5 without history). */
VS_API int vs_escrow_reputation(vs_escrow *e, vs_ledger_txn *t, const char *agent, double *rs);
/* The 16-byte account id of a name. */
VS_API void vs_escrow_account_id(const char *name, uint8_t id[VS_LEDGER_ID_LEN]);

#endif
