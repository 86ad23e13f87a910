/*
 * cmd_ledger.c - `vsctl ledger`: the escrow ledger from the operator's seat.
 *
 * Reads (balance, history, holds, check) ask vs-ledgerd on vs.ledger.query;
 * `check --store` and `backup` open the LMDB environment themselves (read
 * only: a live store through its lock file, or a copy), so they work while
 * the daemon runs and when it does not. Writes go through JetStream with
 * the command id as Nats-Msg-Id ("JetStream + reply"): deposits carry the
 * governors' signatures (M of N), agent commands (release, dispute, vote)
 * the acting account's. Amounts are integers in minor units.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/escrow.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/ledger_store.h"
#include "vs/pbjson.h"
#include "vsctl.h"

#define MAX_KEYS VS_ESCROW_MAX_GOVERNORS
#define SIGNATURE_TTL_MS (10ULL * 60 * 1000)

static void ledger_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl ledger COMMAND [ARGS] [--json]\n"
            "The escrow ledger (vs-ledgerd). Amounts are integers in minor units.\n\n"
            "reads\n"
            "  balance ACCOUNT               balance, held amount and reputation\n"
            "  history ACCOUNT [--limit N]   transfers of an account, oldest first\n"
            "  holds ACCOUNT | --task HEX    open holds of an account or of a task\n"
            "  check [--store DIR]           the ledger invariant (sum of debits = sum of\n"
            "                                credits, pending and posted; no wallet below\n"
            "                                zero): asks ledgerd, or checks DIR directly\n"
            "  backup --store DIR --to OUT   consistent compacted copy while ledgerd runs,\n"
            "                                then the copy is checked\n"
            "writes\n"
            "  account NAME [--owner O] [--key FILE]   create a wallet; --key registers the\n"
            "                                agent's Ed25519 key (its signing key file)\n"
            "  hold TASK --requester R --agent A --amount N [--timeout DUR]\n"
            "  deposit ACCOUNT AMOUNT --key FILE...    mint from the operator account,\n"
            "                                signed by M of the N governance keys\n"
            "  adjust FROM TO AMOUNT --key FILE...     move money outside escrow (M of N)\n"
            "  release TASK --key FILE                 the requester pays a cleared task now\n"
            "  dispute TASK --key FILE [--rationale T] the requester or agent disputes\n"
            "  vote TASK --as NAME --decision agent|requester|split --rationale T --key FILE\n"
            "  init-governor PATH            create a governance key; prints its public key\n"
            "                                for ledgerd.governance_keys\n\n"
            "  --json       print the reply as JSON\n\n" VSCTL_COMMON_HELP);
}

struct ledger_args {
    const char *owner, *task, *requester, *agent, *store, *to, *as, *decision, *rationale;
    const char *keys[MAX_KEYS];
    size_t nkeys;
    uint64_t amount, limit, timeout_ms;
    bool json;
};

/* ---- printing -------------------------------------------------------------------------- */

static void print_entry(const Vs__V1__LedgerEntry *e)
{
    char id[VS_ID_HEX_LEN] = "", task[VS_ID_HEX_LEN] = "";
    if (e->transfer_id.len == VS_ID_LEN)
        vs_hex(e->transfer_id.data, VS_ID_LEN, id);
    if (e->task_id.len == VS_ID_LEN)
        vs_hex(e->task_id.data, VS_ID_LEN, task);
    printf("%-8s %s %s -> %s %" PRIu64 "%s%s%s%s\n", e->kind, id, e->debit_account,
           e->credit_account, e->amount, e->state[0] ? " " : "", e->state, task[0] ? " task " : "",
           task);
}

static int print_reply(const Vs__V1__LedgerReply *r, bool json, const char *what)
{
    if (json) {
        json_t *j = vs_pb_to_json(&r->base);
        bool ok = j != NULL && vsctl_print_json(stdout, j);
        json_decref(j);
        return ok ? VSCTL_OK : VSCTL_FAIL;
    }
    if (what != NULL)
        printf("%s", what);
    if (r->transfer_id.len == VS_ID_LEN) {
        char hex[VS_ID_HEX_LEN];
        vs_hex(r->transfer_id.data, VS_ID_LEN, hex);
        printf(" transfer %s", hex);
    }
    if (r->n_panel > 0)
        printf(" panel %s %s %s", r->panel[0], r->n_panel > 1 ? r->panel[1] : "",
               r->n_panel > 2 ? r->panel[2] : "");
    if (r->replayed)
        printf(" (replayed: the first outcome of this command)");
    if (what != NULL)
        printf("\n");
    for (size_t i = 0; i < r->n_entries; i++)
        print_entry(r->entries[i]);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}

/* ---- sending -------------------------------------------------------------------------------- */

static int ledger_send(struct vsctl *ctx, enum vs_subject_id id, Vs__V1__LedgerCommand *cmd,
                Vs__V1__LedgerReply **out)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int rc = vsctl_connect(ctx, &loop, &bus);
    char msg_id[VS_ID_HEX_LEN];
    vs_hex(cmd->command_id.data, VS_ID_LEN, msg_id);
    if (rc == 0)
        rc = vsctl_request(bus, id, &cmd->base, msg_id, "ledgerd", (ProtobufCMessage **)out);
    vs_bus_free(bus);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return rc;
}

static int load_keys(const struct ledger_args *a, vs_signkey **keys)
{
    for (size_t i = 0; i < a->nkeys; i++) {
        if ((keys[i] = vsctl_load_signkey(a->keys[i])) == NULL) {
            while (i-- > 0)
                vs_signkey_free(keys[i]);
            return -EINVAL;
        }
    }
    return 0;
}

/* Sign cmd with every --key and send it; print the reply. */
static int send_signed(struct vsctl *ctx, enum vs_subject_id id, Vs__V1__LedgerCommand *cmd,
                       const struct ledger_args *a, const char *what)
{
    if (a->nkeys == 0) {
        vsctl_err("this command is signed: give --key FILE");
        return VSCTL_USAGE;
    }
    vs_signkey *keys[MAX_KEYS];
    if (load_keys(a, keys) < 0)
        return VSCTL_FAIL;
    Vs__V1__LedgerCommand outer;
    int rc = vs_escrow_sign(cmd, keys, a->nkeys, SIGNATURE_TTL_MS, &outer);
    for (size_t i = 0; i < a->nkeys; i++)
        vs_signkey_free(keys[i]);
    if (rc < 0) {
        vsctl_err("cannot sign the command: %s", strerror(-rc));
        return VSCTL_FAIL;
    }
    Vs__V1__LedgerReply *r = NULL;
    rc = ledger_send(ctx, id, &outer, &r);
    vs_escrow_signed_clear(&outer);
    if (rc < 0)
        return VSCTL_FAIL;
    int st = print_reply(r, a->json, what);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return st;
}

static int send_plain(struct vsctl *ctx, enum vs_subject_id id, Vs__V1__LedgerCommand *cmd,
                      const struct ledger_args *a, const char *what)
{
    Vs__V1__LedgerReply *r = NULL;
    if (ledger_send(ctx, id, cmd, &r) < 0)
        return VSCTL_FAIL;
    int st = print_reply(r, a->json, what);
    vs__v1__ledger_reply__free_unpacked(r, NULL);
    return st;
}

/* ---- the offline commands ------------------------------------------------------------------------ */

static int check_txn(vs_ledger_txn *t, void *arg)
{
    return vs_ledger_check(t, arg);
}

static int check_store(const char *dir, bool quiet)
{
    struct vs_ledger_opts o = {.path = dir, .read_only = true};
    vs_ledger *l = NULL;
    int rc = vs_ledger_open(&o, &l);
    if (rc < 0) {
        vsctl_err("cannot open the ledger %s: %s", dir, strerror(-rc));
        return VSCTL_FAIL;
    }
    struct vs_ledger_totals tot;
    rc = vs_ledger_read(l, check_txn, &tot);
    vs_ledger_free(l);
    if (rc == -EUCLEAN) {
        printf("%s: the invariant does NOT hold: %s\n", dir, tot.problem);
        return VSCTL_FAIL;
    }
    if (rc < 0) {
        vsctl_err("cannot check %s: %s", dir, strerror(-rc));
        return VSCTL_FAIL;
    }
    if (!quiet)
        printf("%s: the invariant holds: %" PRIu64 " accounts, %" PRIu64 " transfers, %" PRIu64
               " open holds, posted %" PRIu64 " = %" PRIu64 ", pending %" PRIu64 " = %" PRIu64 "\n",
               dir, tot.accounts, tot.transfers, tot.pending_open, tot.debits_posted,
               tot.credits_posted, tot.debits_pending, tot.credits_pending);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}

static int backup(const struct ledger_args *a)
{
    if (a->store == NULL || a->to == NULL) {
        vsctl_err("ledger backup needs --store DIR and --to OUT");
        return VSCTL_USAGE;
    }
    struct vs_ledger_opts o = {.path = a->store, .read_only = true};
    vs_ledger *l = NULL;
    int rc = vs_ledger_open(&o, &l);
    if (rc < 0) {
        vsctl_err("cannot open the ledger %s: %s", a->store, strerror(-rc));
        return VSCTL_FAIL;
    }
    if (vsctl_mkdirs(a->to, 0700) < 0) {
        vsctl_err("cannot create %s: %s", a->to, strerror(errno));
        vs_ledger_free(l);
        return VSCTL_FAIL;
    }
    rc = vs_ledger_backup(l, a->to);
    vs_ledger_free(l);
    if (rc < 0) {
        vsctl_err("cannot back up to %s: %s", a->to,
                  rc == -EEXIST ? "it already holds a ledger" : strerror(-rc));
        return VSCTL_FAIL;
    }
    printf("backup written to %s\n", a->to);
    return check_store(a->to, false);
}

static int init_governor(const char *path)
{
    vs_signkey *k = vsctl_create_signkey(path);
    if (k == NULL)
        return VSCTL_FAIL;
    char hex[2 * VS_SIGN_PUBLICKEY_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, vs_signkey_public(k), VS_SIGN_PUBLICKEY_LEN);
    vs_signkey_free(k);
    printf("%s\n", hex);
    fprintf(stderr, "created %s: add the public key above to ledgerd.governance_keys\n", path);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}

/* ---- argument helpers --------------------------------------------------------------------------- */

static int parse_task(const char *hex, uint8_t task[VS_ID_LEN])
{
    if (hex == NULL || strlen(hex) != 2 * VS_ID_LEN || vs_unhex(hex, task, VS_ID_LEN) < 0) {
        vsctl_err("a task id is 32 hex digits");
        return -EINVAL;
    }
    return 0;
}

static int parse_amount(const char *s, uint64_t *out)
{
    if (vsctl_parse_uint(s, INT64_MAX, out) < 0 || *out == 0) {
        vsctl_err("'%s' is not a positive amount", s);
        return -EINVAL;
    }
    return 0;
}

static Vs__V1__DisputeDecision parse_decision(const char *s)
{
    if (s == NULL)
        return VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_UNSPECIFIED;
    if (strcmp(s, "agent") == 0)
        return VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_AGENT;
    if (strcmp(s, "requester") == 0)
        return VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_REQUESTER;
    if (strcmp(s, "split") == 0)
        return VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_SPLIT;
    return VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_UNSPECIFIED;
}

static int parse_args(struct vsctl *ctx, int argc, char **argv, struct ledger_args *a)
{
    static const struct option longopts[] = {
        {"owner", required_argument, NULL, 'o'},     {"key", required_argument, NULL, 'k'},
        {"task", required_argument, NULL, 't'},      {"requester", required_argument, NULL, 'r'},
        {"agent", required_argument, NULL, 'a'},     {"amount", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 'T'},   {"limit", required_argument, NULL, 'l'},
        {"store", required_argument, NULL, 's'},     {"to", required_argument, NULL, 'O'},
        {"as", required_argument, NULL, 'A'},        {"decision", required_argument, NULL, 'd'},
        {"rationale", required_argument, NULL, 'R'}, {"json", no_argument, NULL, 'j'},
        VSCTL_COMMON_LONGOPTS,                       {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'o': a->owner = optarg; break;
        case 'k':
            if (a->nkeys == MAX_KEYS) {
                vsctl_err("at most %d --key options", MAX_KEYS);
                return VSCTL_USAGE;
            }
            a->keys[a->nkeys++] = optarg;
            break;
        case 't': a->task = optarg; break;
        case 'r': a->requester = optarg; break;
        case 'a': a->agent = optarg; break;
        case 'm':
            if (parse_amount(optarg, &a->amount) < 0)
                return VSCTL_USAGE;
            break;
        case 'T':
            if (!vsctl_opt_duration("timeout", optarg, &a->timeout_ms))
                return VSCTL_USAGE;
            break;
        case 'l':
            if (!vsctl_opt_uint("limit", optarg, 0, 1000, &a->limit))
                return VSCTL_USAGE;
            break;
        case 's': a->store = optarg; break;
        case 'O': a->to = optarg; break;
        case 'A': a->as = optarg; break;
        case 'd': a->decision = optarg; break;
        case 'R': a->rationale = optarg; break;
        case 'j': a->json = true; break;
        case 'h': ledger_usage(stdout); return -1;
        default: ledger_usage(stderr); return VSCTL_USAGE;
        }
    }
    return VSCTL_OK;
}

/* ---- dispatch ----------------------------------------------------------------------------------- */

static bool argn(int have, int want, const char *usage)
{
    if (have == want)
        return true;
    vsctl_err("usage: vsctl ledger %s", usage);
    return false;
}

int cmd_ledger(struct vsctl *ctx, int argc, char **argv)
{
    struct ledger_args a = {0};
    int st = parse_args(ctx, argc, argv, &a);
    if (st != VSCTL_OK)
        return st < 0 ? VSCTL_OK : st;
    char **pos = argv + optind;
    int npos = argc - optind;
    if (npos == 0) {
        ledger_usage(stderr);
        return VSCTL_USAGE;
    }
    const char *sub = pos[0];
    uint8_t command_id[VS_ID_LEN], task[VS_ID_LEN];
    vs_id_new(command_id);
    Vs__V1__LedgerCommand cmd = VS__V1__LEDGER_COMMAND__INIT;
    cmd.command_id = (ProtobufCBinaryData){VS_ID_LEN, command_id};
    cmd.issued_at_ns = vs_now_ns();
    cmd.limit = (uint32_t)a.limit;

    if (strcmp(sub, "check") == 0) {
        if (a.store != NULL)
            return argn(npos, 1, "check [--store DIR]") ? check_store(a.store, false) : VSCTL_USAGE;
        cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_CHECK;
        Vs__V1__LedgerReply *r = NULL;
        if (ledger_send(ctx, VS_SUBJ_LEDGER_QUERY, &cmd, &r) < 0)
            return VSCTL_FAIL;
        st = a.json ? print_reply(r, true, NULL) : (printf("the invariant %s\n", r->detail), VSCTL_OK);
        vs__v1__ledger_reply__free_unpacked(r, NULL);
        return st;
    }
    if (strcmp(sub, "backup") == 0)
        return argn(npos, 1, "backup --store DIR --to OUT") ? backup(&a) : VSCTL_USAGE;
    if (strcmp(sub, "init-governor") == 0)
        return argn(npos, 2, "init-governor PATH") ? init_governor(pos[1]) : VSCTL_USAGE;
    if (strcmp(sub, "balance") == 0) {
        if (!argn(npos, 2, "balance ACCOUNT"))
            return VSCTL_USAGE;
        cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_BALANCE;
        cmd.account = pos[1];
        Vs__V1__LedgerReply *r = NULL;
        if (ledger_send(ctx, VS_SUBJ_LEDGER_QUERY, &cmd, &r) < 0)
            return VSCTL_FAIL;
        if (a.json)
            st = print_reply(r, true, NULL);
        else
            printf("%s balance %" PRId64 " held %" PRIu64 " reputation %.3f\n", pos[1], r->balance,
                   r->pending, r->reputation);
        vs__v1__ledger_reply__free_unpacked(r, NULL);
        return a.json ? st : fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
    }
    if (strcmp(sub, "history") == 0 || strcmp(sub, "holds") == 0) {
        bool holds = sub[1] == 'o';
        if (holds && a.task != NULL) {
            if (!argn(npos, 1, "holds --task HEX") || parse_task(a.task, task) < 0)
                return VSCTL_USAGE;
            cmd.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
        } else if (!argn(npos, 2, holds ? "holds ACCOUNT | --task HEX" : "history ACCOUNT [--limit N]")) {
            return VSCTL_USAGE;
        } else {
            cmd.account = pos[1];
        }
        cmd.op = holds ? VS__V1__LEDGER_OP__LEDGER_OP_HOLDS : VS__V1__LEDGER_OP__LEDGER_OP_HISTORY;
        return send_plain(ctx, VS_SUBJ_LEDGER_QUERY, &cmd, &a, NULL);
    }
    if (strcmp(sub, "account") == 0) {
        if (!argn(npos, 2, "account NAME [--owner O] [--key FILE]") || a.nkeys > 1)
            return VSCTL_USAGE;
        cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_CREATE_ACCOUNT;
        cmd.account = pos[1];
        cmd.owner = (char *)(a.owner != NULL ? a.owner : "");
        vs_signkey *k = NULL;
        if (a.nkeys == 1) {
            if (load_keys(&a, &k) < 0)
                return VSCTL_FAIL;
            cmd.public_key = (ProtobufCBinaryData){VS_SIGN_PUBLICKEY_LEN, (uint8_t *)vs_signkey_public(k)};
        }
        st = send_plain(ctx, VS_SUBJ_LEDGER_COMMAND, &cmd, &a, "account created");
        vs_signkey_free(k);
        return st;
    }
    if (strcmp(sub, "hold") == 0) {
        if (!argn(npos, 2, "hold TASK --requester R --agent A --amount N") ||
            parse_task(pos[1], task) < 0 || a.requester == NULL || a.agent == NULL || a.amount == 0) {
            vsctl_err("hold needs TASK, --requester, --agent and --amount");
            return VSCTL_USAGE;
        }
        cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_HOLD;
        cmd.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
        cmd.account = (char *)a.requester;
        cmd.counterparty = (char *)a.agent;
        cmd.amount = a.amount;
        cmd.timeout_ms = a.timeout_ms;
        return send_plain(ctx, VS_SUBJ_LEDGER_COMMAND, &cmd, &a, "held");
    }
    if (strcmp(sub, "deposit") == 0 || strcmp(sub, "adjust") == 0) {
        bool deposit = sub[0] == 'd';
        if (!argn(npos, deposit ? 3 : 4, deposit ? "deposit ACCOUNT AMOUNT --key FILE..."
                                                 : "adjust FROM TO AMOUNT --key FILE...") ||
            parse_amount(pos[npos - 1], &cmd.amount) < 0)
            return VSCTL_USAGE;
        cmd.op = deposit ? VS__V1__LEDGER_OP__LEDGER_OP_DEPOSIT : VS__V1__LEDGER_OP__LEDGER_OP_ADJUST;
        cmd.account = pos[1];
        if (!deposit)
            cmd.counterparty = pos[2];
        return send_signed(ctx, VS_SUBJ_LEDGER_COMMAND, &cmd, &a, deposit ? "deposited" : "moved");
    }
    if (strcmp(sub, "release") == 0 || strcmp(sub, "dispute") == 0 || strcmp(sub, "vote") == 0) {
        if (!argn(npos, 2, "release|dispute|vote TASK --key FILE ...") || parse_task(pos[1], task) < 0)
            return VSCTL_USAGE;
        cmd.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
        cmd.rationale = (char *)(a.rationale != NULL ? a.rationale : "");
        enum vs_subject_id subj = VS_SUBJ_ESCROW_DISPUTE;
        if (sub[0] == 'r') {
            cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_RELEASE;
            subj = VS_SUBJ_ESCROW_RELEASE;
        } else if (sub[0] == 'd') {
            cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_OPEN;
        } else {
            cmd.op = VS__V1__LEDGER_OP__LEDGER_OP_DISPUTE_VOTE;
            cmd.decision = parse_decision(a.decision);
            cmd.account = (char *)a.as;
            if (a.as == NULL || cmd.decision == VS__V1__DISPUTE_DECISION__DISPUTE_DECISION_UNSPECIFIED) {
                vsctl_err("vote needs --as NAME and --decision agent|requester|split");
                return VSCTL_USAGE;
            }
        }
        return send_signed(ctx, subj, &cmd, &a,
                           sub[0] == 'r' ? "released" : sub[0] == 'd' ? "dispute opened" : "voted");
    }
    vsctl_err("unknown ledger command '%s' (see --help)", sub);
    return VSCTL_USAGE;
}
