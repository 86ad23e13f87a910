/*
 * cmd_pubsub.c - `vsctl pub` and `vsctl sub`: typed messages written and
 * read as JSON.
 *
 * The subject table decides everything: the message type of a subject, and
 * how it travels (core publish, request/reply, JetStream with a server
 * ack). So pub looks the subject up with vs_subject_match and refuses what
 * the table does not know rather than guessing, and sub decodes each
 * received message with the type of its own subject (one wildcard
 * subscription can carry several types). The JSON mapping is pbjson's, so
 * an unknown field is an error that names the field.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/js.h"
#include "vs/pbjson.h"
#include "vs/subjects.h"
#include "vs/v1/common.pb-c.h"
#include "vsctl.h"

#define REQUEST_TIMEOUT_MS 5000
#define PUBLISH_TIMEOUT_MS (VS_JS_API_TIMEOUT_MS + 1000)

/* ---- shared: JSON of a received message ------------------------------------------ */

static json_t *raw_json(const uint8_t *data, size_t len)
{
    size_t b64len = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64len);
    if (b64 == NULL)
        return NULL;
    sodium_bin2base64(b64, b64len, data, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_pack("{s:I, s:s}", "len", (json_int_t)len, "base64", b64);
    free(b64);
    return j;
}

/* The message as JSON: decoded with desc when there is one; raw bytes
 * (length and base64) otherwise or when it does not decode. *decoded
 * tells which. */
static json_t *message_json(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                            size_t len, bool *decoded)
{
    *decoded = false;
    if (desc != NULL) {
        ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
        if (m != NULL) {
            json_t *j = vs_pb_to_json(m);
            protobuf_c_message_free_unpacked(m, NULL);
            *decoded = j != NULL;
            if (j != NULL)
                return j;
        }
    }
    return raw_json(data, len);
}

/* The "status" (field 1) of a reply, by the convention of bus.h. */
static const Vs__V1__Status *reply_status(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(m->descriptor, 1);
    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        f->descriptor != &vs__v1__status__descriptor || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(const Vs__V1__Status *const *)((const char *)m + f->offset);
}

/* ---- pub ---------------------------------------------------------------------------- */

static void pub_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl pub SUBJECT [JSON|-] [--msg-id ID] [--timeout S]\n"
            "Publish one message. Its type comes from the subject table (`vsctl subjects`);\n"
            "the body is JSON in the proto3 style of pbjson (field names as in the .proto,\n"
            "enums by name, bytes as base64 or hex for ids), given as an argument or on\n"
            "stdin (`-` or no argument). Unknown fields are an error.\n"
            "By the subject's delivery:\n"
            "  jetstream, js+reply  stored through JetStream; prints\n"
            "                       \"stored in STREAM seq N\" (+ \" (duplicate)\")\n"
            "  core                 published; prints \"published on SUBJECT\"\n"
            "  request              sent as a request; prints the reply as JSON\n"
            "                       (exit 1 when its status is not STATUS_OK)\n\n"
            "  --msg-id ID    Nats-Msg-Id of a JetStream publish (the stream deduplicates)\n"
            "  --timeout S    how long to wait for the reply or the server's ack (5)\n\n"
            VSCTL_COMMON_HELP);
}

/* A subject to publish on: concrete, every token a safe token. */
static bool concrete_subject(const char *s)
{
    char buf[VS_SUBJECT_MAX];
    if (strlen(s) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", s);
    if (buf[0] == '\0' || buf[strlen(buf) - 1] == '.')
        return false;
    char *save = NULL;
    for (char *t = strtok_r(buf, ".", &save); t != NULL; t = strtok_r(NULL, ".", &save))
        if (!vs_token_valid(t))
            return false;
    return strstr(s, "..") == NULL;
}

static json_t *read_json_input(const char *arg)
{
    json_error_t err;
    json_t *j;
    if (arg == NULL || strcmp(arg, "-") == 0) {
        j = json_loadf(stdin, JSON_REJECT_DUPLICATES, &err);
        if (j == NULL)
            vsctl_err("invalid JSON on stdin (line %d, column %d): %s", err.line, err.column,
                      err.text);
    } else {
        j = json_loads(arg, JSON_REJECT_DUPLICATES, &err);
        if (j == NULL)
            vsctl_err("invalid JSON (column %d): %s", err.column, err.text);
    }
    if (j != NULL && !json_is_object(j)) {
        vsctl_err("the message must be a JSON object");
        json_decref(j);
        j = NULL;
    }
    return j;
}

struct pub_wait {
    bool done;
    int status;
    char stream[64];
    uint64_t seq;
    bool duplicate;
    json_t *reply;
    bool reply_ok;
};

static void on_puback(int status, const struct vs_puback *ack, void *arg)
{
    struct pub_wait *w = arg;
    w->status = status;
    if (status == 0) {
        snprintf(w->stream, sizeof(w->stream), "%s", ack->stream);
        w->seq = ack->seq;
        w->duplicate = ack->duplicate;
    }
    w->done = true;
}

static void on_reply(int status, const ProtobufCMessage *reply, void *arg)
{
    struct pub_wait *w = arg;
    w->status = status;
    if (status == 0) {
        w->reply = vs_pb_to_json(reply);
        const Vs__V1__Status *st = reply_status(reply);
        w->reply_ok = st == NULL || st->code == VS__V1__STATUS_CODE__STATUS_OK;
    }
    w->done = true;
}

static void on_flushed(int status, void *arg)
{
    struct pub_wait *w = arg;
    w->status = status;
    w->done = true;
}

static const char *send_error(int rc, enum vs_delivery delivery)
{
    switch (rc) {
    case -EHOSTUNREACH:
        return delivery == VS_REQUEST ? "no service answers on this subject"
                                      : "no JetStream stream captures this subject (streams are "
                                        "declared by `vsctl up` and by the daemons)";
    case -ETIMEDOUT: return "timed out";
    case -EIO: return "JetStream refused the message";
    case -EMSGSIZE: return "message too large for the bus";
    case -ENOTCONN: return "not connected";
    case -EBADMSG: return "the reply does not decode";
    default: return strerror(-rc);
    }
}

static int publish(vs_bus *bus, const struct vs_subject_def *row, const char *subject,
                   const ProtobufCMessage *msg, const char *msg_id, uint64_t timeout_ms)
{
    struct pub_wait w = {0};
    int rc;
    switch (row->delivery) {
    case VS_JETSTREAM:
    case VS_JS_REPLY:
        rc = vs_js_publish(bus, subject, msg, msg_id, on_puback, &w);
        break;
    case VS_REQUEST:
        rc = vs_bus_request(bus, subject, msg, row->reply, timeout_ms, on_reply, &w);
        break;
    case VS_CORE:
    default:
        rc = vs_bus_publish(bus, subject, msg);
        if (rc == 0)
            rc = vs_bus_flush(bus, timeout_ms, on_flushed, &w);
        break;
    }
    if (rc == 0 && vs_bus_run_until(bus, &w.done, timeout_ms + 1000) < 0)
        rc = -ETIMEDOUT;
    if (rc == 0)
        rc = w.status;
    if (rc < 0) {
        vsctl_err("%s: %s", subject, send_error(rc, row->delivery));
        json_decref(w.reply);
        return VSCTL_FAIL;
    }
    int result = VSCTL_OK;
    switch (row->delivery) {
    case VS_JETSTREAM:
    case VS_JS_REPLY:
        printf("stored in %s seq %llu%s\n", w.stream, (unsigned long long)w.seq,
               w.duplicate ? " (duplicate)" : "");
        break;
    case VS_REQUEST:
        if (!vsctl_print_json(stdout, w.reply))
            result = VSCTL_FAIL;
        if (!w.reply_ok) {
            vsctl_err("%s: the service answered with an error status", subject);
            result = VSCTL_FAIL;
        }
        break;
    case VS_CORE:
    default:
        printf("published on %s\n", subject);
        break;
    }
    json_decref(w.reply);
    return fflush(stdout) == 0 ? result : VSCTL_FAIL;
}

int cmd_pub(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"msg-id", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 't'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *msg_id = NULL;
    uint64_t timeout_ms = REQUEST_TIMEOUT_MS;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'i': msg_id = optarg; break;
        case 't':
            if (!vsctl_opt_duration("timeout", optarg, &timeout_ms))
                return VSCTL_USAGE;
            break;
        case 'h': pub_usage(stdout); return VSCTL_OK;
        default: pub_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (optind >= argc || argc - optind > 2) {
        vsctl_err("usage: vsctl pub SUBJECT [JSON|-] (see --help)");
        return VSCTL_USAGE;
    }
    const char *subject = argv[optind];
    const char *body = optind + 1 < argc ? argv[optind + 1] : NULL;
    const struct vs_subject_def *row = vs_subject_match(subject);
    if (row == NULL || !concrete_subject(subject)) {
        vsctl_err("'%s' is not a subject of the table (concrete tokens [A-Za-z0-9_-], no "
                  "wildcards); `vsctl subjects` lists them",
                  subject);
        return VSCTL_FAIL;
    }
    if (row->message == NULL) {
        vsctl_err("%s carries raw bytes (%s); vsctl pub sends typed messages only", subject,
                  row->pattern);
        return VSCTL_FAIL;
    }
    if (msg_id != NULL && row->delivery != VS_JETSTREAM && row->delivery != VS_JS_REPLY) {
        vsctl_err("--msg-id applies to JetStream subjects only; %s is %s", subject,
                  row->delivery == VS_CORE ? "core" : "request/reply");
        return VSCTL_USAGE;
    }
    if (msg_id != NULL && (msg_id[0] == '\0' || strlen(msg_id) > 128 ||
                           strpbrk(msg_id, " \t\r\n:") != NULL)) {
        vsctl_err("--msg-id: 1 to 128 characters without spaces or ':'");
        return VSCTL_USAGE;
    }

    json_t *j = read_json_input(body);
    if (j == NULL)
        return VSCTL_FAIL;
    ProtobufCMessage *msg = NULL;
    char err[256] = "";
    int rc = vs_pb_from_json(row->message, j, &msg, err, sizeof(err));
    json_decref(j);
    if (rc < 0) {
        vsctl_err("not a valid %s: %s", row->message->name, err[0] != '\0' ? err : strerror(-rc));
        return VSCTL_FAIL;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) == 0)
        result = publish(bus, row, subject, msg, msg_id, timeout_ms);
    protobuf_c_message_free_unpacked(msg, NULL);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}

/* ---- sub ------------------------------------------------------------------------------ */

static void sub_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl sub SUBJECT [--count N] [--timeout S] [--json]\n"
            "Print the messages published on SUBJECT (NATS wildcards * and > allowed), one\n"
            "line each: the subject and the message as compact JSON, decoded with the type\n"
            "the subject table gives its subject; raw bytes (no type, or not decodable) as\n"
            "{\"len\":N,\"base64\":...}. Stops after N messages, after the timeout, or on\n"
            "SIGINT. \"listening on SUBJECT\" goes to stderr once the subscription is live.\n\n"
            "  --count N      stop after N messages (exit 1 if the timeout comes first)\n"
            "  --timeout S    stop after S seconds (default: run until SIGINT)\n"
            "  --json         one JSON object per line: {\"subject\",\"type\",\"message\"}\n\n"
            VSCTL_COMMON_HELP);
}

/* A subscription subject: tokens non-empty, wildcards whole tokens, '>' last. */
static bool subscription_subject(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= VS_SUBJECT_MAX)
        return false;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ".");
        if (len == 0)
            return false;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
                return false;
        bool wild = memchr(p, '*', len) != NULL || memchr(p, '>', len) != NULL;
        if (wild && len != 1)
            return false;
        if (p[len] == '\0')
            return true;
        if (p[0] == '>')
            return false; /* '>' must be the last token */
        p += len + 1;
    }
}

struct sub_state {
    bool json;
    uint64_t count, seen;
    bool done, broken;
};

static int on_message(vs_msg *m, void *arg)
{
    struct sub_state *s = arg;
    if (s->done)
        return 0;
    const char *subject = vs_msg_subject(m);
    const struct vs_subject_def *row = vs_subject_match(subject);
    size_t len;
    const uint8_t *data = vs_msg_data(m, &len);
    bool decoded;
    json_t *body = message_json(row != NULL ? row->message : NULL, data, len, &decoded);
    if (body == NULL)
        return 0;
    bool ok;
    if (s->json) {
        json_t *line = json_pack("{s:s, s:s, s:O}", "subject", subject, "type",
                                 decoded ? row->message->name : "raw", "message", body);
        ok = line != NULL && vsctl_print_json(stdout, line);
        json_decref(line);
    } else {
        /* The subject came through the server's syntax check: no spaces or
         * control characters. */
        ok = fprintf(stdout, "%s ", subject) >= 0 && vsctl_print_json(stdout, body);
    }
    json_decref(body);
    if (!ok) {
        s->broken = true; /* stdout closed (a pipe's reader went away) */
        s->done = true;
    }
    if (s->count > 0 && ++s->seen >= s->count)
        s->done = true;
    return 0;
}

int cmd_sub(struct vsctl *ctx, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct sub_state s = {0};
    uint64_t timeout_ms = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'n':
            if (!vsctl_opt_uint("count", optarg, 1, UINT32_MAX, &s.count))
                return VSCTL_USAGE;
            break;
        case 't':
            if (!vsctl_opt_duration("timeout", optarg, &timeout_ms))
                return VSCTL_USAGE;
            break;
        case 'j': s.json = true; break;
        case 'h': sub_usage(stdout); return VSCTL_OK;
        default: sub_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (argc - optind != 1) {
        vsctl_err("usage: vsctl sub SUBJECT [--count N] [--timeout S] [--json]");
        return VSCTL_USAGE;
    }
    const char *subject = argv[optind];
    if (!subscription_subject(subject)) {
        vsctl_err("'%s' is not a valid subject (see `vsctl subjects`)", subject);
        return VSCTL_USAGE;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    vs_bus *bus = NULL;
    vs_sub *sub = NULL;
    int result = VSCTL_FAIL;
    if (vsctl_connect(ctx, &loop, &bus) < 0)
        goto out;
    int rc = vs_bus_subscribe(bus, subject, NULL, NULL, on_message, &s, &sub);
    if (rc < 0) {
        vsctl_err("cannot subscribe to %s: %s", subject, strerror(-rc));
        goto out;
    }
    /* Once the flush returns, the server has the subscription. */
    struct pub_wait flushed = {.status = -ETIMEDOUT};
    if (vs_bus_flush(bus, 5000, on_flushed, &flushed) == 0)
        vs_bus_run_until(bus, &flushed.done, 6000);
    if (!flushed.done || flushed.status < 0) {
        vsctl_err("the server did not confirm the subscription to %s", subject);
        goto out;
    }
    fprintf(stderr, "vsctl: listening on %s\n", subject);
    fflush(stderr);

    /* Stop on any of: enough messages, the timeout, a signal. */
    bool interrupted = vsctl_run_until_signal(bus, &s.done, timeout_ms);
    if (s.broken)
        result = VSCTL_OK;
    else if (s.count > 0 && s.seen < s.count && !interrupted) {
        vsctl_err("timed out after %llu of %llu messages", (unsigned long long)s.seen,
                  (unsigned long long)s.count);
        result = VSCTL_FAIL;
    } else {
        result = VSCTL_OK;
    }
out:
    vs_sub_free(sub);
    vs_bus_free(bus);
    uv_loop_close(&loop);
    return result;
}
