/*
 * cmd_seal.c - `vsctl seal` and `vsctl unseal`: a payload sealed to a
 * pool's X25519 key as the SealedPayload JSON that `vsctl pub` embeds, and
 * back. They let an operator (and the quickstart) hand a stage a task by
 * hand and read what it passed on, while no plaintext crosses the bus
 * (DESIGN.md section 3).
 *
 * seal reads the plaintext from a file or stdin and prints
 * {"recipient_key_id": hex, "ciphertext": base64}; unseal reads JSON from
 * a file or stdin - a SealedPayload, or a message holding one in its payload,
 * snapshot or deliverable (also as `vsctl sub --json` prints it) - and writes
 * the plaintext, opened with a box key file. Inline payloads only: blobs
 * (above NATS' message limit) travel chunked and have their own path.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/keys.h"
#include "vs/pbjson.h"
#include "vs/v1/common.pb-c.h"
#include "vsctl.h"

#define MAX_INLINE (900u << 10) /* below the 1 MiB message limit with room for the rest */

static void seal_usage(FILE *out)
{
    fprintf(out, "usage: vsctl seal --to PUBLIC_KEY_HEX [FILE|-]\n"
                 "       vsctl unseal --key FILE [JSON_FILE|-]\n"
                 "seal: print FILE (stdin by default) sealed to an X25519 public key as the\n"
                 "SealedPayload JSON that `vsctl pub` embeds (inline, up to 900 KiB).\n"
                 "unseal: write the plaintext of the SealedPayload JSON (stdin by default) - alone, or\n"
                 "the payload/snapshot/deliverable of a message, also as `vsctl sub --json`\n"
                 "prints it - opened with a box key file (`vsctl keys init-box`).\n\n" VSCTL_COMMON_HELP);
}

static int read_stream(FILE *f, size_t max, uint8_t **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            uint8_t *nb = cap <= max ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f) || n > max)
                break;
            *out = buf;
            *len = n;
            return 0;
        }
    }
    free(buf);
    return n > max ? -EFBIG : -EIO;
}

static int parse_args(struct vsctl *ctx, int argc, char **argv, const char **value)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *want = strcmp(argv[0], "seal") == 0 ? "to" : "key";
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 't':
        case 'k':
            if (strcmp(opt == 't' ? "to" : "key", want) != 0) {
                vsctl_err("%s takes --%s (see --help)", argv[0], want);
                return VSCTL_USAGE;
            }
            *value = optarg;
            break;
        case 'h': seal_usage(stdout); return -1;
        default: seal_usage(stderr); return VSCTL_USAGE;
        }
    }
    if (*value == NULL) {
        vsctl_err("%s needs --%s (see --help)", argv[0], want);
        return VSCTL_USAGE;
    }
    return VSCTL_OK;
}

/* The one optional FILE argument after the options, opened into *f ("-"
 * or none: stdin). VSCTL_OK, or VSCTL_USAGE / VSCTL_FAIL after saying why. */
static int open_input(int argc, char **argv, const char *what, const char **path, FILE **f)
{
    if (argc - optind > 1) {
        vsctl_err("%s takes one %s (see --help)", argv[0], what);
        return VSCTL_USAGE;
    }
    *path = optind < argc ? argv[optind] : "-";
    *f = strcmp(*path, "-") == 0 ? stdin : fopen(*path, "rb");
    if (*f != NULL)
        return VSCTL_OK;
    vsctl_err("cannot open %s: %s", *path, strerror(errno));
    return VSCTL_FAIL;
}

int cmd_seal(struct vsctl *ctx, int argc, char **argv)
{
    const char *to = NULL;
    int rc = parse_args(ctx, argc, argv, &to);
    if (rc != VSCTL_OK)
        return rc < 0 ? VSCTL_OK : rc;
    uint8_t pk[VS_BOX_PUBLICKEY_LEN];
    if (vs_box_public_parse(to, pk) != 0) {
        vsctl_err("--to: expected %d hex digits (a box key's public half)", 2 * VS_BOX_PUBLICKEY_LEN);
        return VSCTL_USAGE;
    }
    const char *path;
    FILE *f;
    if ((rc = open_input(argc, argv, "FILE", &path, &f)) != VSCTL_OK)
        return rc;
    uint8_t *plain = NULL;
    size_t len = 0;
    rc = read_stream(f, MAX_INLINE, &plain, &len);
    if (f != stdin)
        fclose(f);
    if (rc < 0) {
        vsctl_err("cannot read %s: %s", path,
                  rc == -EFBIG ? "above 900 KiB (inline payloads only)" : strerror(-rc));
        return VSCTL_FAIL;
    }
    uint8_t *sealed = malloc(len + VS_SEAL_OVERHEAD);
    uint8_t kid[VS_KEY_ID_LEN];
    vs_key_id(pk, sizeof pk, kid);
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    json_t *j = NULL;
    if (sealed != NULL && vs_seal(pk, plain, len, sealed) == 0) {
        p.recipient_key_id = (ProtobufCBinaryData){sizeof kid, kid};
        p.ciphertext = (ProtobufCBinaryData){len + VS_SEAL_OVERHEAD, sealed};
        j = vs_pb_to_json(&p.base);
    }
    sodium_memzero(plain, len);
    free(plain);
    free(sealed);
    if (j == NULL) {
        vsctl_err("cannot seal: out of memory");
        return VSCTL_FAIL;
    }
    rc = json_dumpf(j, stdout, JSON_COMPACT) == 0 && fputc('\n', stdout) != EOF ? VSCTL_OK
                                                                               : VSCTL_FAIL;
    json_decref(j);
    return fflush(stdout) == 0 ? rc : VSCTL_FAIL;
}

/* The SealedPayload object in j: j itself, or one found through the
 * fields a message carries it in (`vsctl sub --json` nests the message). */
static json_t *find_sealed(json_t *j, int depth)
{
    if (!json_is_object(j) || depth > 3)
        return NULL;
    if (json_object_get(j, "ciphertext") != NULL)
        return j;
    static const char *const fields[] = {"payload", "snapshot", "deliverable", "task", "message"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *found = find_sealed(json_object_get(j, fields[i]), depth + 1);
        if (found != NULL)
            return found;
    }
    return NULL;
}

int cmd_unseal(struct vsctl *ctx, int argc, char **argv)
{
    const char *keyfile = NULL;
    int rc = parse_args(ctx, argc, argv, &keyfile);
    if (rc != VSCTL_OK)
        return rc < 0 ? VSCTL_OK : rc;
    const char *path;
    FILE *in;
    if ((rc = open_input(argc, argv, "JSON FILE", &path, &in)) != VSCTL_OK)
        return rc;
    vs_boxkey *k = NULL;
    if ((rc = vs_boxkey_load(keyfile, &k)) < 0) {
        vsctl_err("cannot load the box key %s: %s", keyfile, strerror(-rc));
        if (in != stdin)
            fclose(in);
        return VSCTL_FAIL;
    }
    json_error_t e;
    json_t *j = json_loadf(in, 0, &e);
    if (in != stdin)
        fclose(in);
    json_t *sp = j != NULL ? find_sealed(j, 0) : NULL;
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    if (j == NULL)
        snprintf(err, sizeof err, "%s is not JSON: %s", path, e.text);
    else if (sp == NULL)
        snprintf(err, sizeof err, "no sealed payload in the JSON (blobs are not opened here)");
    else if (vs_pb_from_json(&vs__v1__sealed_payload__descriptor, sp, &m, err, sizeof err) < 0 &&
             err[0] == '\0')
        snprintf(err, sizeof err, "not a SealedPayload");
    json_decref(j);
    const Vs__V1__SealedPayload *p = (const Vs__V1__SealedPayload *)m;
    uint8_t *plain = NULL;
    if (err[0] == '\0' && (p->ciphertext.len <= VS_SEAL_OVERHEAD ||
                           (plain = sodium_malloc(p->ciphertext.len - VS_SEAL_OVERHEAD)) == NULL ||
                           vs_unseal(k, p->ciphertext.data, p->ciphertext.len, plain) != 0))
        snprintf(err, sizeof err, "the payload does not open with %s", keyfile);
    rc = VSCTL_FAIL;
    if (err[0] != '\0')
        vsctl_err("%s", err);
    else if (fwrite(plain, 1, p->ciphertext.len - VS_SEAL_OVERHEAD, stdout) ==
                 p->ciphertext.len - VS_SEAL_OVERHEAD &&
             fflush(stdout) == 0)
        rc = VSCTL_OK;
    sodium_free(plain);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    vs_boxkey_free(k);
    return rc;
}
