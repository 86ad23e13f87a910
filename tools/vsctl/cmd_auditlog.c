/*
 * cmd_auditlog.c - the audit log's operator commands: `vsctl audit query`,
 * `verify`, `export`, `import-check`, `prove` and `backup` (dispatched from
 * cmd_audit.c, which keeps tail and emit), and the reader of the
 * CHECKPOINTS stream that `vsctl keys` shares.
 *
 * Trust model, which shapes every command: auditd's answers are hostile
 * input like any bus message. A root is believed only when a checkpoint
 * note signed by a key the operator gave (--vkey, --vkey-file) carries it;
 * proofs are recomputed here with the Merkle verifiers (RFC 9162), entries
 * are re-hashed here with the one canonical encoder (vs/audit_codec.h).
 * Offline commands (--store) open a store read-only (LMDB copies, or the
 * live directory: readers never block the writer) and need no bus at all.
 * Exit status: 0 verified, 1 a check failed (the first bad sequence or
 * line is named) or an error, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "vs/audit.h"
#include "vs/audit_codec.h"
#include "vs/audit_store.h"
#include "vs/checkpoint.h"
#include "vs/config.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/pbjson.h"
#include "vs/subjects.h"
#include "vsctl.h"

#define PAGE_MAX 1000
#define CHECKPOINT_STATE_FILE "audit-checkpoint.note"

/* ---- helpers ---------------------------------------------------------------------- */

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    vs_hex(p, n, out);
}

/* RFC 3339 UTC with nanoseconds. */
static void rfc3339(uint64_t ns, char *out, size_t size)
{
    time_t secs = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%09uZ", base, (unsigned)(ns % 1000000000ull));
}

/* A time for --since/--until: RFC 3339 UTC ("2026-12-04T17:00:00Z", with
 * optional fraction), @UNIX-SECONDS, or a duration ago ("10m", "2h"). */
static int parse_time(const char *s, uint64_t *out_ns)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    if (s[0] == '@') {
        uint64_t secs;
        if (vsctl_parse_uint(s + 1, UINT64_MAX / 1000000000ull, &secs) < 0)
            return -EINVAL;
        *out_ns = secs * 1000000000ull;
        return 0;
    }
    if (strchr(s, 'T') != NULL) {
        struct tm tm = {0};
        const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (rest == NULL)
            return -EINVAL;
        uint64_t frac = 0;
        if (*rest == '.') {
            uint64_t scale = 100000000ull;
            for (rest++; *rest >= '0' && *rest <= '9'; rest++) {
                frac += (uint64_t)(*rest - '0') * scale;
                scale /= 10;
            }
        }
        if (strcmp(rest, "Z") != 0)
            return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0)
            return -EINVAL;
        *out_ns = (uint64_t)t * 1000000000ull + frac;
        return 0;
    }
    uint64_t ago_ms;
    if (vs_parse_duration_ms(s, &ago_ms) < 0)
        return -EINVAL;
    uint64_t now = vs_now_ns();
    *out_ns = ago_ms * 1000000ull < now ? now - ago_ms * 1000000ull : 0;
    return 0;
}

/* ---- verifier keys ---------------------------------------------------------------- */

struct vkeys {
    struct vs_vkey k[VS_NOTE_MAX_KEYS];
    size_t n;
};

static int vkeys_add(struct vkeys *v, const char *text, const char *where)
{
    if (v->n == VS_NOTE_MAX_KEYS) {
        vsctl_err("at most %d verifier keys", VS_NOTE_MAX_KEYS);
        return -E2BIG;
    }
    if (vs_vkey_parse(text, &v->k[v->n]) < 0) {
        vsctl_err("%s: not a verifier key (NAME+HASH+BASE64, as printed by `vsctl keys`)", where);
        return -EINVAL;
    }
    v->n++;
    return 0;
}

/* One vkey per line; empty lines and '#' comments are skipped. */
static int vkeys_add_file(struct vkeys *v, const char *path)
{
    size_t len;
    char *text = vsctl_read_file(path, &len);
    if (text == NULL) {
        vsctl_err("cannot read %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = 0, line = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL && rc == 0;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        l[strcspn(l, "\r")] = '\0';
        while (*l == ' ' || *l == '\t')
            l++;
        size_t n = strlen(l);
        while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
            l[--n] = '\0';
        if (*l == '\0' || *l == '#')
            continue;
        char where[PATH_MAX + 16];
        snprintf(where, sizeof(where), "%s:%d", path, line);
        rc = vkeys_add(v, l, where);
    }
    free(text);
    return rc;
}

/* "name+hash, ..." of the keys in mask. */
static void signer_names(const struct vkeys *v, uint64_t mask, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < v->n && o < size; i++)
        if (mask & (UINT64_C(1) << i))
            o += (size_t)snprintf(out + o, size - o, "%s%s+%08" PRIx32, o > 0 ? ", " : "",
                                  v->k[i].name, v->k[i].hash);
}

/* ---- bus requests -------------------------------------------------------------------- */

static int request(vs_bus *bus, enum vs_subject_id id, const ProtobufCMessage *req,
                   ProtobufCMessage **out)
{
    return vsctl_request(bus, id, req, NULL, "auditd", out);
}

/* ---- the CHECKPOINTS stream ---------------------------------------------------------- */

struct cp_read {
    vsctl_checkpoint_fn fn;
    void *arg;
    uint64_t last_seq;
    bool done;
};

static int on_checkpoint_msg(vs_msg *m, void *arg)
{
    struct cp_read *r = arg;
    const Vs__V1__Checkpoint *cp = (const Vs__V1__Checkpoint *)vs_msg_body(m);
    if (r->done)
        return 0;
    if (cp != NULL && r->fn(cp, r->arg) != 0)
        r->done = true;
    if (vs_msg_stream_seq(m) >= r->last_seq)
        r->done = true;
    return 0;
}

int vsctl_read_checkpoints(vs_bus *bus, vsctl_checkpoint_fn fn, void *arg)
{
    const char *stream = vs_stream(VS_STREAM_CHECKPOINTS)->name;
    uint64_t last_seq = 0;
    int rc = vs_js_stream_last_seq_sync(bus, stream, &last_seq);
    if (rc < 0 || last_seq == 0)
        return rc;
    struct cp_read r = {.fn = fn, .arg = arg, .last_seq = last_seq};
    vs_consumer *c = NULL;
    rc = vs_js_read(bus, stream, NULL, 0, 0, &vs__v1__checkpoint__descriptor, on_checkpoint_msg,
                    &r, &c);
    if (rc == 0 && vs_bus_run_until(bus, &r.done, VSCTL_REQUEST_TIMEOUT_MS) < 0)
        rc = -ETIMEDOUT;
    vs_consumer_free(c);
    return rc;
}

/* Find the published checkpoint note of a tree size. */
struct cp_find {
    uint64_t size;
    char *note;
};

static int find_size(const Vs__V1__Checkpoint *cp, void *arg)
{
    struct cp_find *f = arg;
    if (cp->tree_size != f->size || f->note != NULL)
        return 0;
    f->note = strndup((const char *)cp->note.data, cp->note.len);
    return 1;
}

/* The signed checkpoint of size: from hint (a note auditd sent along) when
 * it is of that size, else from the CHECKPOINTS stream; verified with v.
 * Prints the error line. */
static int signed_checkpoint(vs_bus *bus, uint64_t size, const char *hint, const struct vkeys *v,
                             struct vs_checkpoint *out, uint64_t *mask)
{
    char *note = NULL;
    if (hint != NULL && hint[0] != '\0')
        note = strdup(hint);
    struct vs_checkpoint c;
    if (note != NULL && (vs_checkpoint_open(note, strlen(note), NULL, v->k, v->n, &c, NULL) < 0 ||
                         c.size != size)) {
        free(note);
        note = NULL;
    }
    if (note == NULL) {
        struct cp_find f = {.size = size};
        int rc = vsctl_read_checkpoints(bus, find_size, &f);
        if (rc < 0) {
            vsctl_err("cannot read the checkpoints stream: %s", strerror(-rc));
            return rc;
        }
        note = f.note;
    }
    if (note == NULL) {
        vsctl_err("no signed checkpoint at size %" PRIu64 " (proofs need a signed root: use "
                  "a checkpoint's size, or omit the size for the latest)",
                  size);
        return -ENOENT;
    }
    int rc = vs_checkpoint_open(note, strlen(note), NULL, v->k, v->n, out, mask);
    if (rc < 0)
        vsctl_err("FAIL: the checkpoint at size %" PRIu64 " does not verify: %s", size,
                  vs_checkpoint_strerror(rc));
    else if (out->size != size)
        rc = -EBADMSG;
    free(note);
    return rc;
}

/* ---- query ------------------------------------------------------------------------------- */

static void query_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit query [--agent A] [--task HEX] [--category C]\n"
            "                         [--min-severity S] [--since T] [--until T]\n"
            "                         [--after SEQ] [--limit N] [--json]\n"
            "Stored audit events (auditd's log, over the bus) matching every filter, in\n"
            "log order: SEQ TIME SEVERITY CATEGORY/EVENT comp=C [agent=A] [KEY=VALUE]...\n\n"
            "  --agent A          events about agent A\n"
            "  --task HEX         events about task HEX (32 hex digits)\n"
            "  --category C       events of category C\n"
            "  --min-severity S   debug, info, notice, warning, error, critical, alert\n"
            "  --since T, --until T  event time: 2026-12-04T17:00:00Z, @UNIX-SECONDS, or a\n"
            "                     duration ago (10m, 2h)\n"
            "  --after SEQ        only entries after log sequence SEQ (pagination)\n"
            "  --limit N          at most N events (100); when more match, the last line on\n"
            "                     stderr says which --after continues\n"
            "  --json             one object per line: seq, time_ns, chain_hash, event\n\n"
            VSCTL_COMMON_HELP);
}

static bool print_record(const Vs__V1__AuditRecord *r, bool json)
{
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, r->event.len, r->event.data);
    bool ok;
    if (json) {
        char hash[2 * VS_HASH_LEN + 1] = "";
        if (r->chain_hash.len == VS_HASH_LEN)
            hex_of(r->chain_hash.data, VS_HASH_LEN, hash);
        json_t *j = json_pack("{s:I, s:I, s:s}", "seq", (json_int_t)r->seq, "time_ns",
                              (json_int_t)r->time_ns, "chain_hash", hash);
        if (j != NULL)
            json_object_set_new(j, "event", ev != NULL ? vs_pb_to_json(&ev->base) : json_null());
        ok = j != NULL && vsctl_print_json(stdout, j);
        json_decref(j);
    } else {
        printf("%" PRIu64 " ", r->seq);
        if (ev != NULL) {
            ok = vsctl_audit_print_event(stdout, ev, false);
        } else {
            printf("(undecodable event, %zu bytes)\n", r->event.len);
            ok = fflush(stdout) == 0;
        }
    }
    if (ev != NULL)
        vs__v1__audit_event__free_unpacked(ev, NULL);
    return ok;
}

int cmd_audit_query(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"agent", required_argument, NULL, 'a'},
        {"task", required_argument, NULL, 'T'},
        {"category", required_argument, NULL, 'c'},
        {"min-severity", required_argument, NULL, 's'},
        {"since", required_argument, NULL, 'f'},
        {"until", required_argument, NULL, 'u'},
        {"after", required_argument, NULL, 'A'},
        {"limit", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    uint8_t task[VS_ID_LEN];
    uint64_t limit = 100, after;
    bool json = false;
    Vs__V1__Severity sev;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'a': req.agent = optarg; break;
        case 'T':
            if (vs_unhex(optarg, task, VS_ID_LEN) < 0) {
                vsctl_err("--task: 32 hex digits expected");
                return VSCTL_USAGE;
            }
            req.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
            break;
        case 'c':
            if (!vs_audit_category_valid(optarg)) {
                vsctl_err("--category: a lower-case token [a-z0-9_-], not '%s'", optarg);
                return VSCTL_USAGE;
            }
            req.category = optarg;
            break;
        case 's':
            if (vs_severity_parse(optarg, &sev) < 0) {
                vsctl_err("--min-severity: one of debug, info, notice, warning, error, "
                          "critical, alert");
                return VSCTL_USAGE;
            }
            req.min_severity = sev;
            break;
        case 'f':
        case 'u':
            if (parse_time(optarg, opt == 'f' ? &req.since_ns : &req.until_ns) < 0) {
                vsctl_err("--%s: not a time: '%s' (2026-12-04T17:00:00Z, @SECONDS or 10m)",
                          opt == 'f' ? "since" : "until", optarg);
                return VSCTL_USAGE;
            }
            break;
        case 'A':
            if (!vsctl_opt_uint("after", optarg, 0, UINT64_MAX - 2, &after))
                return VSCTL_USAGE;
            req.after_seq = after + 1; /* the cursor after entry `after` */
            break;
        case 'n':
            if (!vsctl_opt_uint("limit", optarg, 1, 10000000, &limit))
                return VSCTL_USAGE;
            break;
        case 'j': json = true; break;
        case 'h': query_usage(stdout); return VSCTL_OK;
        default: query_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("audit query takes no arguments (see --help)");
        return VSCTL_USAGE;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out;
    uint64_t printed = 0;
    for (;;) {
        uint64_t want = limit - printed;
        req.limit = (uint32_t)(want < PAGE_MAX ? want : PAGE_MAX);
        Vs__V1__AuditQueryReply *r = NULL;
        if (request(bus, VS_SUBJ_AUDIT_QUERY, &req.base, (ProtobufCMessage **)&r) < 0)
            goto out;
        bool ok = true;
        for (size_t i = 0; i < r->n_records && ok; i++)
            ok = print_record(r->records[i], json);
        printed += r->n_records;
        uint64_t next = r->next_after_seq;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (!ok)
            goto out;
        if (next == 0)
            break;
        if (printed >= limit) {
            fprintf(stderr, "(more entries match: continue with --after %" PRIu64 ")\n",
                    next - 1);
            break;
        }
        req.after_seq = next;
    }
    result = VSCTL_OK;
out:
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

/* ---- verify ------------------------------------------------------------------------------ */

static void verify_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit verify --vkey VKEY | --vkey-file FILE [--store DIR]\n"
            "                          [--origin O] [--state-file FILE]\n"
            "Verify the audit log against its signed checkpoints.\n\n"
            "  --store DIR    offline: open the store (a backup copy, or the live\n"
            "                 directory, read-only), verify its last checkpoint's signature,\n"
            "                 then recompute every entry, the hash chain and the Merkle root\n"
            "                 at the checkpoint's size. Names the first bad sequence.\n"
            "  (no --store)   online: ask auditd for its latest checkpoint, verify the\n"
            "                 signature, and prove it consistent with the checkpoint this\n"
            "                 command saw last time (kept in --state-file, default\n"
            "                 STATE/" CHECKPOINT_STATE_FILE "): a rewritten, forked or rolled\n"
            "                 back log fails.\n"
            "  --vkey VKEY    a trusted verifier key (NAME+HASH+BASE64); repeatable\n"
            "  --vkey-file F  trusted verifier keys, one per line; repeatable\n"
            "  --origin O     the log's origin must be O\n\n"
            "Exit status: 0 verified, 1 verification failed or error, 2 usage.\n\n"
            VSCTL_COMMON_HELP);
}

static int verify_offline(const char *dir, const struct vkeys *v, const char *origin)
{
    struct vs_audit_store_opts o = {.path = dir, .read_only = true};
    vs_audit_store *s = NULL;
    int rc = vs_audit_store_open(&o, &s);
    if (rc < 0) {
        vsctl_err("cannot open the store %s: %s", dir, strerror(-rc));
        return VSCTL_FAIL;
    }
    int result = VSCTL_FAIL;
    char *note = NULL;
    uint64_t cp_key = 0, bad = 0;
    uint64_t size = vs_audit_store_size(s);
    rc = vs_audit_store_last_checkpoint(s, &note, &cp_key);
    if (rc == -ENOENT) {
        rc = vs_audit_store_verify(s, size, NULL, &bad);
        if (rc == 0)
            printf("FAIL: no signed checkpoint in the store: the chain of %" PRIu64
                   " entries is self-consistent, but nothing is covered by a signature\n",
                   size);
        else
            printf("FAIL: entry %" PRIu64 " does not check out, and there is no signed "
                   "checkpoint\n",
                   bad);
        goto out;
    }
    if (rc < 0) {
        vsctl_err("cannot read the last checkpoint: %s", strerror(-rc));
        goto out;
    }
    struct vs_checkpoint c;
    uint64_t mask = 0;
    rc = vs_checkpoint_open(note, strlen(note), origin, v->k, v->n, &c, &mask);
    if (rc == 0 && c.size != cp_key)
        rc = -EBADMSG;
    if (rc < 0) {
        printf("FAIL: the last checkpoint (stored at size %" PRIu64 ") is not valid: %s\n",
               cp_key, vs_checkpoint_strerror(rc));
        goto out;
    }
    rc = vs_audit_store_verify(s, c.size, c.root, &bad);
    char names[512];
    signer_names(v, mask, names, sizeof(names));
    if (rc == 0) {
        printf("ok: %" PRIu64 " entries, checkpoint at size %" PRIu64 " signed by %s, %" PRIu64
               " entries after the last checkpoint are not yet covered\n",
               size, c.size, names, size > c.size ? size - c.size : 0);
        result = VSCTL_OK;
    } else if (rc == -ENODATA) {
        printf("FAIL: the log is truncated: %" PRIu64 " entries, but the checkpoint signed by "
               "%s covers %" PRIu64 "\n",
               bad, names, c.size);
    } else if (rc == -EBADMSG) {
        /* first_bad 0 is also the answer for "every entry checks out but
         * the root is not the signed one": tell the two apart. */
        uint64_t bad2 = 0;
        if (bad == 0 && vs_audit_store_verify(s, c.size, NULL, &bad2) == 0)
            printf("FAIL: the log does not match the checkpoint signed by %s at size %" PRIu64
                   " (rewritten: every entry was re-hashed)\n",
                   names, c.size);
        else
            printf("FAIL: entry %" PRIu64 " does not check out (modified, inserted, deleted or "
                   "reordered entries from there on)\n",
                   bad);
    } else {
        vsctl_err("cannot verify: %s", strerror(-rc));
    }
out:
    fflush(stdout);
    free(note);
    vs_audit_store_close(s);
    return result;
}

/* The checkpoint saved by the last online verify, read without a signature
 * check (it was verified when saved, perhaps with a key since rotated). */
static int load_seen(const char *path, struct vs_checkpoint *out, bool *have)
{
    size_t len;
    char *note = vsctl_read_file(path, &len);
    *have = false;
    if (note == NULL)
        return errno == ENOENT ? 0 : -errno;
    size_t text_len = 0;
    int rc = vs_note_parse(note, len, &text_len, NULL, 0, NULL);
    if (rc == 0)
        rc = vs_checkpoint_parse_text(note, text_len, out);
    free(note);
    if (rc < 0)
        return rc;
    *have = true;
    return 0;
}

static int verify_online(struct vsctl *ctx, const struct vkeys *v, const char *origin,
                         const char *state_file)
{
    char path[PATH_MAX];
    if (state_file != NULL) {
        snprintf(path, sizeof(path), "%s", state_file);
    } else {
        const char *state = vsctl_state_dir(ctx);
        if (state == NULL)
            return VSCTL_FAIL;
        if (vsctl_mkdirs(state, 0700) < 0 ||
            vsctl_path(path, sizeof(path), state, CHECKPOINT_STATE_FILE) < 0) {
            vsctl_err("cannot use the state directory %s", state);
            return VSCTL_FAIL;
        }
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    Vs__V1__AuditProofReply *head = NULL, *proof = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out;
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_HEAD;
    if (request(bus, VS_SUBJ_AUDIT_PROVE, &req.base, (ProtobufCMessage **)&head) < 0)
        goto out;
    if (head->note[0] == '\0') {
        printf("FAIL: auditd has no signed checkpoint yet (%" PRIu64 " entries)\n",
               head->tree_size);
        goto out;
    }
    struct vs_checkpoint c, seen;
    uint64_t mask = 0;
    int rc = vs_checkpoint_open(head->note, strlen(head->note), origin, v->k, v->n, &c, &mask);
    if (rc < 0) {
        printf("FAIL: auditd's latest checkpoint is not valid: %s\n", vs_checkpoint_strerror(rc));
        goto out;
    }
    char names[512];
    signer_names(v, mask, names, sizeof(names));
    bool have = false;
    rc = load_seen(path, &seen, &have);
    if (rc < 0) {
        vsctl_err("cannot read the checkpoint seen before (%s): %s", path, strerror(-rc));
        goto out;
    }
    if (have && strcmp(seen.origin, c.origin) != 0) {
        vsctl_err("%s holds a checkpoint of another log (%s): use --state-file", path,
                  seen.origin);
        goto out;
    }
    if (have && seen.size > c.size) {
        printf("FAIL: the log shrank: a checkpoint at size %" PRIu64 " was seen before, auditd "
               "now signs size %" PRIu64 " (rolled back)\n",
               seen.size, c.size);
        goto out;
    }
    if (have && seen.size == c.size && sodium_memcmp(seen.root, c.root, VS_HASH_LEN) != 0) {
        printf("FAIL: two different signed roots at size %" PRIu64 " (forked log)\n", c.size);
        goto out;
    }
    if (have && seen.size > 0 && seen.size < c.size) {
        req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_CONSISTENCY;
        req.size1 = seen.size;
        req.size2 = c.size;
        if (request(bus, VS_SUBJ_AUDIT_PROVE, &req.base, (ProtobufCMessage **)&proof) < 0)
            goto out;
        uint8_t hashes[VS_AUDIT_MAX_PROOF][VS_HASH_LEN];
        size_t n = proof->n_hashes;
        bool shaped = n <= VS_AUDIT_MAX_PROOF && proof->tree_size == c.size;
        for (size_t i = 0; shaped && i < n; i++) {
            shaped = proof->hashes[i].len == VS_HASH_LEN;
            if (shaped)
                memcpy(hashes[i], proof->hashes[i].data, VS_HASH_LEN);
        }
        if (!shaped || vs_merkle_verify_consistency(seen.size, c.size, seen.root, c.root,
                                                    (const uint8_t(*)[VS_HASH_LEN])hashes,
                                                    n) != 0) {
            printf("FAIL: the checkpoint at size %" PRIu64 " is not consistent with the one at "
                   "size %" PRIu64 " seen before (forked or rewritten log)\n",
                   c.size, seen.size);
            goto out;
        }
    }
    if (vsctl_write_file(path, head->note, strlen(head->note), 0600) < 0) {
        vsctl_err("cannot save the checkpoint to %s", path);
        goto out;
    }
    uint64_t uncovered = head->tree_size > c.size ? head->tree_size - c.size : 0;
    if (have)
        printf("ok: checkpoint at size %" PRIu64 " signed by %s, consistent with the one at "
               "size %" PRIu64 " seen before; %" PRIu64 " entries after it are not yet covered\n",
               c.size, names, seen.size, uncovered);
    else
        printf("ok: checkpoint at size %" PRIu64 " signed by %s (first one seen, saved to %s); "
               "%" PRIu64 " entries after it are not yet covered\n",
               c.size, names, path, uncovered);
    result = VSCTL_OK;
out:
    fflush(stdout);
    if (head != NULL)
        protobuf_c_message_free_unpacked(&head->base, NULL);
    if (proof != NULL)
        protobuf_c_message_free_unpacked(&proof->base, NULL);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

/* --vkey/--vkey-file options shared by verify and prove: 'k' and 'K'. */
static bool vkey_opt(struct vkeys *v, int opt, const char *arg, int *rc)
{
    if (opt == 'k')
        *rc = vkeys_add(v, arg, "--vkey");
    else if (opt == 'K')
        *rc = vkeys_add_file(v, arg);
    else
        return false;
    return true;
}

int cmd_audit_verify(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"vkey", required_argument, NULL, 'k'},
        {"vkey-file", required_argument, NULL, 'K'},
        {"origin", required_argument, NULL, 'o'},
        {"state-file", required_argument, NULL, 'F'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static struct vkeys v;
    v.n = 0;
    const char *store = NULL, *origin = NULL, *state_file = NULL;
    int opt, rc = 0;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        if (vkey_opt(&v, opt, optarg, &rc)) {
            if (rc < 0)
                return VSCTL_USAGE;
            continue;
        }
        switch (opt) {
        case 's': store = optarg; break;
        case 'o': origin = optarg; break;
        case 'F': state_file = optarg; break;
        case 'h': verify_usage(stdout); return VSCTL_OK;
        default: verify_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc || v.n == 0) {
        vsctl_err("audit verify needs --vkey or --vkey-file: a trust anchor (see --help)");
        return VSCTL_USAGE;
    }
    return store != NULL ? verify_offline(store, &v, origin)
                         : verify_online(ctx, &v, origin, state_file);
}

/* ---- export ------------------------------------------------------------------------------ */

static void export_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit export [--jsonl] [--from SEQ] [--store DIR]\n"
            "Write the audit log as JSON Lines, one entry per line, in log order:\n"
            "  {\"seq\", \"time\", \"time_ns\", \"stream_seq\", \"chain_hash\" (hex),\n"
            "   \"entry\" (base64 of the canonical entry bytes), \"event\" (the AuditEvent\n"
            "   as JSON, null when undecodable)}\n"
            "`vsctl audit import-check FILE` re-hashes such a file.\n\n"
            "  --from SEQ    start at log sequence SEQ (0)\n"
            "  --store DIR   read a store directly (read-only) instead of asking auditd\n\n"
            VSCTL_COMMON_HELP);
}

/* One export line for an entry. */
static bool export_line(uint64_t seq, uint64_t time_ns, uint64_t stream_seq,
                        const uint8_t *prev_hash, const uint8_t *chain_hash, const uint8_t *event,
                        size_t len)
{
    struct vs_audit_fields f = {seq, time_ns, stream_seq, prev_hash, event, len};
    size_t elen = vs_audit_codec_size(len);
    uint8_t *entry = malloc(elen);
    size_t b64len = sodium_base64_encoded_len(elen, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64len);
    bool ok = false;
    if (entry != NULL && b64 != NULL && vs_audit_codec_encode(&f, entry, elen) > 0) {
        sodium_bin2base64(b64, b64len, entry, elen, sodium_base64_VARIANT_ORIGINAL);
        char when[48], hash[2 * VS_HASH_LEN + 1];
        rfc3339(time_ns, when, sizeof(when));
        hex_of(chain_hash, VS_HASH_LEN, hash);
        json_t *j = json_pack("{s:I, s:s, s:I, s:I, s:s, s:s}", "seq", (json_int_t)seq, "time",
                              when, "time_ns", (json_int_t)time_ns, "stream_seq",
                              (json_int_t)stream_seq, "chain_hash", hash, "entry", b64);
        Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, len, event);
        if (j != NULL)
            json_object_set_new(j, "event", ev != NULL ? vs_pb_to_json(&ev->base) : json_null());
        if (ev != NULL)
            vs__v1__audit_event__free_unpacked(ev, NULL);
        ok = j != NULL && vsctl_print_json(stdout, j);
        json_decref(j);
    }
    free(entry);
    free(b64);
    return ok;
}

static int export_store(const char *dir, uint64_t from)
{
    struct vs_audit_store_opts o = {.path = dir, .read_only = true};
    vs_audit_store *s = NULL;
    int rc = vs_audit_store_open(&o, &s);
    if (rc < 0) {
        vsctl_err("cannot open the store %s: %s", dir, strerror(-rc));
        return VSCTL_FAIL;
    }
    uint64_t size = vs_audit_store_size(s);
    int result = VSCTL_OK;
    for (uint64_t seq = from; seq < size; seq++) {
        struct vs_audit_entry e;
        rc = vs_audit_store_get(s, seq, &e);
        if (rc < 0) {
            vsctl_err("cannot read entry %" PRIu64 ": %s", seq, strerror(-rc));
            result = VSCTL_FAIL;
            break;
        }
        if (!export_line(e.seq, e.time_ns, e.stream_seq, e.prev_hash, e.chain_hash, e.event,
                         e.len)) {
            result = VSCTL_FAIL;
            break;
        }
    }
    vs_audit_store_close(s);
    return result;
}

static int export_online(struct vsctl *ctx, uint64_t from)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out;
    Vs__V1__AuditQueryRequest req = VS__V1__AUDIT_QUERY_REQUEST__INIT;
    req.after_seq = from; /* cursor: entries with seq >= from */
    req.limit = PAGE_MAX;
    for (;;) {
        Vs__V1__AuditQueryReply *r = NULL;
        if (request(bus, VS_SUBJ_AUDIT_QUERY, &req.base, (ProtobufCMessage **)&r) < 0)
            goto out;
        bool ok = true;
        for (size_t i = 0; i < r->n_records && ok; i++) {
            const Vs__V1__AuditRecord *rec = r->records[i];
            if (rec->prev_hash.len != VS_HASH_LEN || rec->chain_hash.len != VS_HASH_LEN) {
                vsctl_err("auditd sent a malformed record (seq %" PRIu64 ")", rec->seq);
                ok = false;
                break;
            }
            ok = export_line(rec->seq, rec->time_ns, rec->stream_seq, rec->prev_hash.data,
                             rec->chain_hash.data, rec->event.data, rec->event.len);
        }
        uint64_t next = r->next_after_seq;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (!ok)
            goto out;
        if (next == 0)
            break;
        req.after_seq = next;
    }
    result = VSCTL_OK;
out:
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

int cmd_audit_export(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"jsonl", no_argument, NULL, 'J'},
        {"from", required_argument, NULL, 'f'},
        {"store", required_argument, NULL, 's'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *store = NULL;
    uint64_t from = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'J': break; /* the only format */
        case 'f':
            if (!vsctl_opt_uint("from", optarg, 0, UINT64_MAX - 1, &from))
                return VSCTL_USAGE;
            break;
        case 's': store = optarg; break;
        case 'h': export_usage(stdout); return VSCTL_OK;
        default: export_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind != argc) {
        vsctl_err("audit export takes no arguments (see --help)");
        return VSCTL_USAGE;
    }
    return store != NULL ? export_store(store, from) : export_online(ctx, from);
}

/* ---- import-check --------------------------------------------------------------------- */

static void import_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit import-check FILE|-\n"
            "Re-hash an export of `vsctl audit export`: every line's entry bytes must\n"
            "decode, hash to its chain_hash, link to the previous line's chain_hash, follow\n"
            "its sequence, and agree with the line's seq, time_ns, stream_seq and event.\n"
            "Reports the first bad line and exits 1; on success prints the Merkle root of\n"
            "the entries (when the export starts at sequence 0) to compare with a signed\n"
            "checkpoint of that size.\n\n" VSCTL_COMMON_HELP);
}

/* RFC 6962 root of a growing list of leaves: the stack of complete
 * subtrees (at most 64), folded right to left at the end. */
struct mth {
    uint8_t h[64][VS_HASH_LEN];
    uint64_t size;
};

static void mth_push(struct mth *t, const uint8_t leaf[VS_HASH_LEN])
{
    unsigned n = (unsigned)__builtin_popcountll(t->size);
    memcpy(t->h[n], leaf, VS_HASH_LEN);
    for (uint64_t s = t->size; s & 1; s >>= 1) {
        vs_merkle_node(t->h[n - 1], t->h[n], t->h[n - 1]);
        n--;
    }
    t->size++;
}

static void mth_root(const struct mth *t, uint8_t out[VS_HASH_LEN])
{
    int n = __builtin_popcountll(t->size);
    if (n == 0) {
        crypto_hash_sha256(out, (const uint8_t *)"", 0);
        return;
    }
    memcpy(out, t->h[n - 1], VS_HASH_LEN);
    for (int i = n - 2; i >= 0; i--)
        vs_merkle_node(t->h[i], out, out);
}

/* Check one line; writes the reason of a failure into why. */
static int check_line(json_t *j, bool first, uint64_t prev_seq, const uint8_t prev_chain[32],
                      uint8_t chain_out[32], uint64_t *seq_out, struct mth *tree, char *why,
                      size_t wsize)
{
    json_t *jseq = json_object_get(j, "seq");
    const char *b64 = json_string_value(json_object_get(j, "entry"));
    const char *hash_hex = json_string_value(json_object_get(j, "chain_hash"));
    json_t *jev = json_object_get(j, "event");
    if (!json_is_integer(jseq) || json_integer_value(jseq) < 0 || b64 == NULL ||
        hash_hex == NULL || jev == NULL) {
        snprintf(why, wsize, "not an export line (seq, entry, chain_hash, event)");
        return -EBADMSG;
    }
    uint64_t seq = (uint64_t)json_integer_value(jseq);
    *seq_out = seq;
    size_t b64len = strlen(b64), elen = 0;
    uint8_t *entry = malloc(b64len / 4 * 3 + 3);
    struct vs_audit_fields f;
    uint8_t chain[VS_HASH_LEN], want[VS_HASH_LEN], leaf[VS_HASH_LEN];
    int rc = -EBADMSG;
    if (entry == NULL || sodium_base642bin(entry, b64len / 4 * 3 + 3, b64, b64len, NULL, &elen,
                                           NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        vs_audit_codec_decode(entry, elen, &f) < 0) {
        snprintf(why, wsize, "the entry bytes are not a valid entry encoding");
        goto out;
    }
    if (f.seq != seq) {
        snprintf(why, wsize, "the entry is sequence %" PRIu64 ", the line says %" PRIu64, f.seq,
                 seq);
        goto out;
    }
    if (!first && seq != prev_seq + 1) {
        snprintf(why, wsize, "sequence %" PRIu64 " follows %" PRIu64
                 " (an entry was inserted, deleted or reordered)",
                 seq, prev_seq);
        goto out;
    }
    vs_audit_codec_chain_hash(entry, elen, chain);
    if (vs_unhex(hash_hex, want, VS_HASH_LEN) < 0 || sodium_memcmp(chain, want, VS_HASH_LEN) != 0) {
        snprintf(why, wsize, "the entry does not hash to its chain_hash (modified)");
        goto out;
    }
    static const uint8_t zero[VS_HASH_LEN];
    if ((!first && sodium_memcmp(f.prev_hash, prev_chain, VS_HASH_LEN) != 0) ||
        (seq == 0 && sodium_memcmp(f.prev_hash, zero, VS_HASH_LEN) != 0)) {
        snprintf(why, wsize, "the entry does not link to the previous one (prev_hash)");
        goto out;
    }
    json_t *jt = json_object_get(j, "time_ns"), *js = json_object_get(j, "stream_seq");
    if ((jt != NULL && (uint64_t)json_integer_value(jt) != f.time_ns) ||
        (js != NULL && (uint64_t)json_integer_value(js) != f.stream_seq)) {
        snprintf(why, wsize, "time_ns or stream_seq differ from the entry's (modified)");
        goto out;
    }
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, f.len, f.event);
    json_t *mine = ev != NULL ? vs_pb_to_json(&ev->base) : json_null();
    bool same = mine != NULL && json_equal(mine, jev);
    json_decref(mine);
    if (ev != NULL)
        vs__v1__audit_event__free_unpacked(ev, NULL);
    if (!same) {
        snprintf(why, wsize, "the event differs from the one in the entry bytes (modified)");
        goto out;
    }
    vs_audit_codec_leaf_hash(entry, elen, leaf);
    mth_push(tree, leaf);
    memcpy(chain_out, chain, VS_HASH_LEN);
    rc = 0;
out:
    free(entry);
    return rc;
}

int cmd_audit_import_check(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {VSCTL_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        if (opt == 'h') {
            import_usage(stdout);
            return VSCTL_OK;
        }
        import_usage(stderr);
        return VSCTL_USAGE;
    }
    if (optind + 1 != argc) {
        vsctl_err("audit import-check takes one FILE (or - for stdin)");
        return VSCTL_USAGE;
    }
    const char *path = argv[optind];
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        vsctl_err("cannot open %s: %s", path, strerror(errno));
        return VSCTL_FAIL;
    }
    static struct mth tree;
    memset(&tree, 0, sizeof(tree));
    char *line = NULL;
    size_t cap = 0;
    uint64_t lineno = 0, first_seq = 0, seq = 0, count = 0;
    uint8_t chain[VS_HASH_LEN] = {0};
    int result = VSCTL_OK;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        if (n == 1 && line[0] == '\n')
            continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        char why[256];
        uint64_t prev = seq, line_seq = UINT64_MAX;
        int rc = -EBADMSG;
        if (j == NULL)
            snprintf(why, sizeof(why), "not JSON: %s", je.text);
        else
            rc = check_line(j, count == 0, prev, chain, chain, &line_seq, &tree, why, sizeof(why));
        json_decref(j);
        if (rc < 0) {
            if (line_seq != UINT64_MAX)
                printf("FAIL: line %" PRIu64 " (seq %" PRIu64 "): %s\n", lineno, line_seq, why);
            else
                printf("FAIL: line %" PRIu64 ": %s\n", lineno, why);
            result = VSCTL_FAIL;
            break;
        }
        seq = line_seq;
        if (count++ == 0)
            first_seq = seq;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    if (result == VSCTL_OK && count == 0) {
        printf("FAIL: %s holds no entries\n", path);
        result = VSCTL_FAIL;
    } else if (result == VSCTL_OK) {
        printf("ok: %" PRIu64 " entries (seq %" PRIu64 "..%" PRIu64 "), chain intact", count,
               first_seq, seq);
        if (first_seq == 0) {
            uint8_t root[VS_HASH_LEN];
            char b64[64];
            mth_root(&tree, root);
            sodium_bin2base64(b64, sizeof(b64), root, VS_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
            printf("; Merkle root at size %" PRIu64 ": %s", count, b64);
        }
        printf("\n");
    }
    fflush(stdout);
    return result;
}

/* ---- prove -------------------------------------------------------------------------------- */

static void prove_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit prove --index I [--size N] (--vkey VKEY | --vkey-file F)\n"
            "       vsctl audit prove --consistency S1 S2 (--vkey VKEY | --vkey-file F)\n"
            "Ask auditd for a proof and verify it here against signed checkpoints.\n\n"
            "  --index I          entry I is in the log of size N (default: the latest\n"
            "                     checkpoint); prints the entry\n"
            "  --consistency S1 S2  the log at size S1 is a prefix of the log at size S2\n"
            "                     (0 for S2: the latest checkpoint)\n"
            "  --vkey, --vkey-file  trusted verifier keys, as for `audit verify`\n"
            "Sizes must be those of published checkpoints (a root is trusted only when\n"
            "signed); the notes come from auditd's reply or the CHECKPOINTS stream.\n\n"
            VSCTL_COMMON_HELP);
}

static int copy_hashes(const Vs__V1__AuditProofReply *r, uint8_t out[][VS_HASH_LEN], size_t *n)
{
    if (r->n_hashes > VS_AUDIT_MAX_PROOF)
        return -EBADMSG;
    for (size_t i = 0; i < r->n_hashes; i++) {
        if (r->hashes[i].len != VS_HASH_LEN)
            return -EBADMSG;
        memcpy(out[i], r->hashes[i].data, VS_HASH_LEN);
    }
    *n = r->n_hashes;
    return 0;
}

static int prove_inclusion(vs_bus *bus, const struct vkeys *v, uint64_t index, uint64_t size)
{
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_INCLUSION;
    req.index = index;
    req.size2 = size;
    Vs__V1__AuditProofReply *r = NULL;
    if (request(bus, VS_SUBJ_AUDIT_PROVE, &req.base, (ProtobufCMessage **)&r) < 0)
        return VSCTL_FAIL;
    int result = VSCTL_FAIL;
    struct vs_checkpoint c;
    uint64_t mask = 0;
    uint8_t path[VS_AUDIT_MAX_PROOF][VS_HASH_LEN], leaf[VS_HASH_LEN];
    size_t n = 0;
    struct vs_audit_fields f;
    if ((size != 0 && r->tree_size != size) || copy_hashes(r, path, &n) < 0 ||
        vs_audit_codec_decode(r->entry.data, r->entry.len, &f) < 0 || f.seq != index) {
        printf("FAIL: auditd's answer is malformed\n");
        goto out;
    }
    if (signed_checkpoint(bus, r->tree_size, r->note, v, &c, &mask) < 0)
        goto out;
    /* The leaf is recomputed from the entry: the event printed is the one proven. */
    vs_audit_codec_leaf_hash(r->entry.data, r->entry.len, leaf);
    if (vs_merkle_verify_inclusion(leaf, index, c.size, (const uint8_t(*)[VS_HASH_LEN])path, n,
                                   c.root) != 0) {
        printf("FAIL: entry %" PRIu64 " is not proven in the log of size %" PRIu64 "\n", index,
               c.size);
        goto out;
    }
    char names[512], hex[2 * VS_HASH_LEN + 1];
    signer_names(v, mask, names, sizeof(names));
    hex_of(leaf, VS_HASH_LEN, hex);
    printf("ok: entry %" PRIu64 " (leaf %s) is in the log of size %" PRIu64
           " signed by %s (%zu hashes)\n",
           index, hex, c.size, names, n);
    Vs__V1__AuditEvent *ev = vs__v1__audit_event__unpack(NULL, f.len, f.event);
    if (ev != NULL) {
        vsctl_audit_print_event(stdout, ev, false);
        vs__v1__audit_event__free_unpacked(ev, NULL);
    }
    result = VSCTL_OK;
out:
    fflush(stdout);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return result;
}

static int prove_consistency(vs_bus *bus, const struct vkeys *v, uint64_t size1, uint64_t size2)
{
    Vs__V1__AuditProofRequest req = VS__V1__AUDIT_PROOF_REQUEST__INIT;
    req.kind = VS__V1__AUDIT_PROOF_KIND__AUDIT_PROOF_CONSISTENCY;
    req.size1 = size1;
    req.size2 = size2;
    Vs__V1__AuditProofReply *r = NULL;
    if (request(bus, VS_SUBJ_AUDIT_PROVE, &req.base, (ProtobufCMessage **)&r) < 0)
        return VSCTL_FAIL;
    int result = VSCTL_FAIL;
    struct vs_checkpoint c1, c2;
    uint64_t m1 = 0, m2 = 0;
    uint8_t proof[VS_AUDIT_MAX_PROOF][VS_HASH_LEN];
    size_t n = 0;
    if ((size2 != 0 && r->tree_size != size2) || copy_hashes(r, proof, &n) < 0) {
        printf("FAIL: auditd's answer is malformed\n");
        goto out;
    }
    if (signed_checkpoint(bus, size1, NULL, v, &c1, &m1) < 0 ||
        signed_checkpoint(bus, r->tree_size, r->note, v, &c2, &m2) < 0)
        goto out;
    if (vs_merkle_verify_consistency(c1.size, c2.size, c1.root, c2.root,
                                     (const uint8_t(*)[VS_HASH_LEN])proof, n) != 0) {
        printf("FAIL: the log at size %" PRIu64 " is not a prefix of the log at size %" PRIu64
               " (forked or rewritten)\n",
               c1.size, c2.size);
        goto out;
    }
    char names[512];
    signer_names(v, m2, names, sizeof(names));
    printf("ok: the log at size %" PRIu64 " is a prefix of the log at size %" PRIu64
           " signed by %s (%zu hashes)\n",
           c1.size, c2.size, names, n);
    result = VSCTL_OK;
out:
    fflush(stdout);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return result;
}

int cmd_audit_prove(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"index", required_argument, NULL, 'i'},
        {"size", required_argument, NULL, 'n'},
        {"consistency", no_argument, NULL, 'C'},
        {"vkey", required_argument, NULL, 'k'},
        {"vkey-file", required_argument, NULL, 'K'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static struct vkeys v;
    v.n = 0;
    uint64_t index = 0, size = 0;
    bool have_index = false, consistency = false;
    int opt, rc = 0;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        if (vkey_opt(&v, opt, optarg, &rc)) {
            if (rc < 0)
                return VSCTL_USAGE;
            continue;
        }
        switch (opt) {
        case 'i':
            if (!vsctl_opt_uint("index", optarg, 0, UINT64_MAX - 1, &index))
                return VSCTL_USAGE;
            have_index = true;
            break;
        case 'n':
            if (!vsctl_opt_uint("size", optarg, 1, UINT64_MAX, &size))
                return VSCTL_USAGE;
            break;
        case 'C': consistency = true; break;
        case 'h': prove_usage(stdout); return VSCTL_OK;
        default: prove_usage(stderr); return VSCTL_USAGE;
        }
    }
    uint64_t s1 = 0, s2 = 0;
    if (v.n == 0 || have_index == consistency) {
        vsctl_err("audit prove needs --index or --consistency, and --vkey or --vkey-file");
        return VSCTL_USAGE;
    }
    if (consistency && (argc - optind != 2 || vsctl_parse_uint(argv[optind], UINT64_MAX, &s1) < 0 ||
                        vsctl_parse_uint(argv[optind + 1], UINT64_MAX, &s2) < 0 || s1 == 0 ||
                        (s2 != 0 && s2 < s1))) {
        vsctl_err("--consistency S1 S2: two tree sizes, 0 < S1 <= S2 (S2 0: the latest)");
        return VSCTL_USAGE;
    }
    if (!consistency && optind != argc) {
        vsctl_err("audit prove --index takes no arguments (see --help)");
        return VSCTL_USAGE;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) == 0)
        result = consistency ? prove_consistency(bus, &v, s1, s2)
                             : prove_inclusion(bus, &v, index, size);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

/* ---- backup ------------------------------------------------------------------------------- */

static void backup_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl audit backup --store DIR --to OUT\n"
            "Copy the audit store at DIR to the new directory OUT: a consistent, compacted\n"
            "LMDB copy taken from a read-only handle while auditd keeps appending. Verify\n"
            "it with `vsctl audit verify --store OUT`.\n\n" VSCTL_COMMON_HELP);
}

int cmd_audit_backup(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"to", required_argument, NULL, 't'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *store = NULL, *to = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 's': store = optarg; break;
        case 't': to = optarg; break;
        case 'h': backup_usage(stdout); return VSCTL_OK;
        default: backup_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (store == NULL || to == NULL || optind != argc) {
        vsctl_err("audit backup needs --store DIR and --to OUT");
        return VSCTL_USAGE;
    }
    struct vs_audit_store_opts o = {.path = store, .read_only = true};
    vs_audit_store *s = NULL;
    int rc = vs_audit_store_open(&o, &s);
    if (rc < 0) {
        vsctl_err("cannot open the store %s: %s", store, strerror(-rc));
        return VSCTL_FAIL;
    }
    uint64_t size = vs_audit_store_size(s);
    rc = vs_audit_store_backup(s, to);
    vs_audit_store_close(s);
    if (rc < 0) {
        vsctl_err("cannot back up to %s: %s", to,
                  rc == -EEXIST ? "it already holds a store" : strerror(-rc));
        return VSCTL_FAIL;
    }
    printf("backup of %" PRIu64 "+ entries written to %s\n", size, to);
    return fflush(stdout) == 0 ? VSCTL_OK : VSCTL_FAIL;
}
