/*
 * cmd_egress.c - `vsctl egress fetch|search`: one REQUEST_DATA or
 * WEB_SEARCH through the live egress worker, made the way sandboxd makes
 * it for a task, so an operator can see what a policy allows before an
 * agent tries.
 *
 * It plays sandboxd's part for one command: a fresh task key pair (guarded
 * memory, freed at exit), the command's body sealed to the egress pool's
 * public key, the request on vs.egress.fetch / vs.egress.search, and the
 * reply's EgressResult opened with the task key (inline, or a blob fetched
 * from the BLOBS stream). A refusal is printed as the worker gave it
 * (status and reason) and exits 1.
 */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/blob.h"
#include "vs/ids.h"
#include "vs/keys.h"
#include "vs/v1/agent.pb-c.h"
#include "vsctl.h"

#define MAX_HEADERS 32
#define MAX_RESULT (64u << 20)

static void egress_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl egress fetch --to POOL_KEY_HEX [--agent ID] [--method M] [--data TEXT]\n"
            "                          [--header 'Name: value']... URL\n"
            "       vsctl egress search --to POOL_KEY_HEX [--agent ID] [--max N] QUERY\n"
            "One REQUEST_DATA or WEB_SEARCH through the egress worker, as sandboxd sends it for\n"
            "a task: the body sealed to the egress pool's public key (--to, hex), the answer\n"
            "sealed to a fresh task key and opened here. fetch writes the response body to\n"
            "stdout and a summary to stderr; search prints one result per line. A refusal\n"
            "prints the worker's status and reason and exits 1.\n"
            "  --agent ID     the agent the worker decides for (vsctl-probe)\n"
            "  --method M     HTTP method (GET)\n"
            "  --data TEXT    request body\n"
            "  --header H     a request header, 'Name: value' (repeatable)\n"
            "  --max N        search results at most (10)\n\n" VSCTL_COMMON_HELP);
}

struct egress_opts {
    uint8_t pool_pk[VS_BOX_PUBLICKEY_LEN];
    bool have_pool;
    const char *agent, *method, *data;
    const char *headers[MAX_HEADERS];
    size_t nheaders;
    uint64_t max_results;
};

struct blob_wait {
    bool done;
    int status;
    uint8_t *data;
    size_t len;
};

static void on_blob(int status, const uint8_t *data, size_t len, void *arg)
{
    struct blob_wait *w = arg;
    w->done = true;
    w->status = status;
    if (status == 0 && (w->data = malloc(len > 0 ? len : 1)) != NULL) {
        memcpy(w->data, data, len);
        w->len = len;
    } else if (status == 0) {
        w->status = -ENOMEM;
    }
}

/* The reply's EgressResult, opened with the task key; NULL (error printed)
 * when it does not open. */
static Vs__V1__EgressResult *open_result(vs_bus *bus, const Vs__V1__AgentReply *reply,
                                         const vs_boxkey *task_key)
{
    const Vs__V1__SealedPayload *p = reply->data;
    struct blob_wait w = {0};
    if (p == NULL) {
        vsctl_err("the worker's answer holds no data");
        return NULL;
    }
    if (p->blob != NULL) {
        int rc = vs_blob_fetch(bus, p->blob, task_key, MAX_RESULT, VSCTL_REQUEST_TIMEOUT_MS,
                               on_blob, &w);
        if (rc == 0 && vs_bus_run_until(bus, &w.done, VSCTL_REQUEST_TIMEOUT_MS + 1000) < 0)
            rc = -ETIMEDOUT;
        w.status = rc < 0 ? rc : w.status;
    } else if (p->ciphertext.len > VS_SEAL_OVERHEAD &&
               (w.data = malloc(p->ciphertext.len - VS_SEAL_OVERHEAD)) != NULL) {
        w.len = p->ciphertext.len - VS_SEAL_OVERHEAD;
        w.status = vs_unseal(task_key, p->ciphertext.data, p->ciphertext.len, w.data);
    } else {
        w.status = -EBADMSG;
    }
    Vs__V1__EgressResult *result =
        w.status == 0 ? vs__v1__egress_result__unpack(NULL, w.len, w.data) : NULL;
    if (result == NULL)
        vsctl_err("the worker's answer does not open with the task key: %s",
                  strerror(w.status < 0 ? -w.status : EBADMSG));
    free(w.data);
    return result;
}

/* Send one command with body sealed to the pool; print the outcome. */
static int send_command(struct vsctl *ctx, const struct egress_opts *o, enum vs_subject_id subject,
                        Vs__V1__CommandType type, const ProtobufCMessage *body, bool search)
{
    if (vs_crypto_init() != 0)
        return VSCTL_FAIL;
    vs_boxkey *task_key = NULL;
    if (vs_boxkey_new(&task_key) != 0)
        return VSCTL_FAIL;
    size_t n = protobuf_c_message_get_packed_size(body);
    uint8_t *plain = sodium_malloc(n + 1), *sealed = malloc(n + VS_SEAL_OVERHEAD);
    uint8_t task[VS_ID_LEN], cid[16], kid[VS_KEY_ID_LEN];
    int status = VSCTL_FAIL;
    uv_loop_t loop;
    vs_bus *bus = NULL;
    if (plain == NULL || sealed == NULL || uv_loop_init(&loop) != 0)
        goto out;
    protobuf_c_message_pack(body, plain);
    if (vs_seal(o->pool_pk, plain, n, sealed) != 0) {
        vsctl_err("--to is not a public key that can be sealed to");
        goto out_loop;
    }
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out_loop;
    vs_id_new(task);
    randombytes_buf(cid, sizeof cid);
    vs_key_id(o->pool_pk, VS_BOX_PUBLICKEY_LEN, kid);
    Vs__V1__SealedPayload sp = VS__V1__SEALED_PAYLOAD__INIT;
    sp.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
    sp.ciphertext = (ProtobufCBinaryData){n + VS_SEAL_OVERHEAD, sealed};
    Vs__V1__AgentCommand c = VS__V1__AGENT_COMMAND__INIT;
    c.type = type;
    c.command_id = (ProtobufCBinaryData){sizeof cid, cid};
    c.agent = (char *)o->agent;
    c.task_id = (ProtobufCBinaryData){VS_ID_LEN, task};
    c.sent_at_ns = vs_now_ns();
    c.reply_box_key = (ProtobufCBinaryData){VS_BOX_PUBLICKEY_LEN, (uint8_t *)vs_boxkey_public(task_key)};
    c.body_case = VS__V1__AGENT_COMMAND__BODY_SEALED;
    c.sealed = &sp;
    ProtobufCMessage *reply = NULL;
    if (vsctl_request(bus, subject, &c.base, NULL, "egress worker", &reply) < 0)
        goto out_bus;
    const Vs__V1__AgentReply *r = (const Vs__V1__AgentReply *)reply;
    Vs__V1__EgressResult *result = open_result(bus, r, task_key);
    if (result != NULL && search) {
        for (size_t i = 0; i < result->n_results; i++)
            printf("%s\n  %s\n  %s\n", result->results[i]->title, result->results[i]->url,
                   result->results[i]->snippet);
        fprintf(stderr, "%zu results, %u withheld by the injection scan%s\n", result->n_results,
                (unsigned)result->results_withheld,
                r->flagged_suspicious ? ", flagged suspicious" : "");
    } else if (result != NULL) {
        fwrite(result->body.data, 1, result->body.len, stdout);
        fprintf(stderr, "HTTP %u, %s, %zu bytes from %s%s\n", (unsigned)result->http_status,
                result->content_type[0] != '\0' ? result->content_type : "no content type",
                result->body.len, result->final_url,
                r->flagged_suspicious ? " (flagged suspicious by the injection scan)" : "");
    }
    status = result != NULL ? VSCTL_OK : VSCTL_FAIL;
    if (result != NULL)
        vs__v1__egress_result__free_unpacked(result, NULL);
    protobuf_c_message_free_unpacked(reply, NULL);
out_bus:
    vs_bus_free(bus);
out_loop:
    uv_loop_close(&loop);
out:
    sodium_free(plain);
    free(sealed);
    vs_boxkey_free(task_key);
    return status;
}

static int parse_opts(struct vsctl *ctx, int argc, char **argv, struct egress_opts *o)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, 't'},     {"agent", required_argument, NULL, 'a'},
        {"method", required_argument, NULL, 'm'}, {"data", required_argument, NULL, 'd'},
        {"header", required_argument, NULL, 'H'}, {"max", required_argument, NULL, 'n'},
        VSCTL_COMMON_LONGOPTS,                    {NULL, 0, NULL, 0},
    };
    *o = (struct egress_opts){.agent = "vsctl-probe", .method = "GET", .max_results = 10};
    vsctl_getopt_reset();
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 't':
            if (vs_box_public_parse(optarg, o->pool_pk) != 0) {
                vsctl_err("--to: expected %d hex digits", 2 * VS_BOX_PUBLICKEY_LEN);
                return VSCTL_USAGE;
            }
            o->have_pool = true;
            break;
        case 'a': o->agent = optarg; break;
        case 'm': o->method = optarg; break;
        case 'd': o->data = optarg; break;
        case 'H':
            if (o->nheaders == MAX_HEADERS || strchr(optarg, ':') == NULL) {
                vsctl_err("--header: 'Name: value', at most %d", MAX_HEADERS);
                return VSCTL_USAGE;
            }
            o->headers[o->nheaders++] = optarg;
            break;
        case 'n':
            if (!vsctl_opt_uint("--max", optarg, 1, 100, &o->max_results))
                return VSCTL_USAGE;
            break;
        case 'h': egress_usage(stdout); return VSCTL_OK;
        default: egress_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (!o->have_pool || optind + 1 != argc) {
        egress_usage(stderr);
        return VSCTL_USAGE;
    }
    return -1; /* go on */
}

static int egress_fetch(struct vsctl *ctx, int argc, char **argv)
{
    struct egress_opts o;
    int rc = parse_opts(ctx, argc, argv, &o);
    if (rc >= 0)
        return rc;
    Vs__V1__KeyValue kv[MAX_HEADERS], *kvp[MAX_HEADERS];
    char names[MAX_HEADERS][128];
    for (size_t i = 0; i < o.nheaders; i++) {
        const char *colon = strchr(o.headers[i], ':');
        snprintf(names[i], sizeof names[i], "%.*s", (int)(colon - o.headers[i]), o.headers[i]);
        kv[i] = (Vs__V1__KeyValue)VS__V1__KEY_VALUE__INIT;
        kv[i].key = names[i];
        kv[i].value = (char *)colon + 1 + strspn(colon + 1, " \t");
        kvp[i] = &kv[i];
    }
    Vs__V1__RequestData rd = VS__V1__REQUEST_DATA__INIT;
    rd.url = argv[optind];
    rd.method = (char *)o.method;
    if (o.data != NULL)
        rd.body = (ProtobufCBinaryData){strlen(o.data), (uint8_t *)o.data};
    rd.n_headers = o.nheaders;
    rd.headers = kvp;
    return send_command(ctx, &o, VS_SUBJ_EGRESS_FETCH, VS__V1__COMMAND_TYPE__COMMAND_REQUEST_DATA,
                        &rd.base, false);
}

static int egress_search(struct vsctl *ctx, int argc, char **argv)
{
    struct egress_opts o;
    int rc = parse_opts(ctx, argc, argv, &o);
    if (rc >= 0)
        return rc;
    Vs__V1__WebSearch ws = VS__V1__WEB_SEARCH__INIT;
    ws.query = argv[optind];
    ws.max_results = (uint32_t)o.max_results;
    return send_command(ctx, &o, VS_SUBJ_EGRESS_SEARCH, VS__V1__COMMAND_TYPE__COMMAND_WEB_SEARCH,
                        &ws.base, true);
}

int cmd_egress(struct vsctl *ctx, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "fetch") == 0)
        return egress_fetch(ctx, argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "search") == 0)
        return egress_search(ctx, argc - 1, argv + 1);
    bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
    egress_usage(help ? stdout : stderr);
    return help ? VSCTL_OK : VSCTL_USAGE;
}
