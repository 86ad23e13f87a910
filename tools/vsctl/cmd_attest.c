/*
 * cmd_attest.c - `vsctl attest verify`: check the signed attestation of a
 * task's run (vs/attestation.h), as `vsctl sub --json vs.task.output`
 * prints it or on its own, and say what it attests.
 *
 * The signature is checked over the canonical text rebuilt from the
 * fields received; --node-key says which launcher key to trust (without
 * it any key's valid signature is reported with that key, so a caller can
 * pin it), and --task and --image check the attested values.
 */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "vs/attestation.h"
#include "vs/ids.h"
#include "vs/pbjson.h"
#include "vsctl.h"

static void attest_usage(FILE *out)
{
    fprintf(out,
            "usage: vsctl attest verify [--node-key HEX] [--task HEX] [--image DIGEST] [JSON_FILE|-]\n"
            "Check the attestation of a TaskOutput (JSON, as `vsctl sub --json vs.task.output`\n"
            "prints it) or of an Attestation: the launcher's Ed25519 signature over the\n"
            "canonical text of its fields; with --node-key, that it is this launcher's key;\n"
            "with --task and --image, that it attests that task and image. Exits 0 when\n"
            "everything holds, 1 otherwise.\n\n" VSCTL_COMMON_HELP);
}

/* The attestation in j: j itself, j's "attestation" member (a TaskOutput),
 * or that of j's "message" (a TaskOutput as `vsctl sub --json` prints it,
 * with its subject and headers). */
static const json_t *find_attestation(const json_t *j)
{
    const json_t *message = json_object_get(j, "message");
    if (json_is_object(message))
        j = message;
    const json_t *a = json_object_get(j, "attestation");
    return a != NULL ? a : j;
}

static int check(const Vs__V1__Attestation *a, const char *node_hex, const char *task_hex,
                 const char *image)
{
    char task[VS_ID_HEX_LEN] = "", node[2 * VS_SIGN_PUBLICKEY_LEN + 1] = "";
    int rc = vs_attestation_verify(a);
    if (rc == -EINVAL) {
        vsctl_err("the attestation is malformed or unsigned");
        return VSCTL_FAIL;
    }
    if (rc != 0) {
        vsctl_err("the signature does not verify: the attestation was changed or forged");
        return VSCTL_FAIL;
    }
    vs_hex(a->task_id.data, VS_ID_LEN, task);
    sodium_bin2hex(node, sizeof node, a->node_key.data, VS_SIGN_PUBLICKEY_LEN);
    if (node_hex != NULL && strcmp(node_hex, node) != 0) {
        vsctl_err("signed by launcher key %s, not the one given", node);
        return VSCTL_FAIL;
    }
    if (task_hex != NULL && strcmp(task_hex, task) != 0) {
        vsctl_err("it attests task %s, not %s", task, task_hex);
        return VSCTL_FAIL;
    }
    if (image != NULL && strcmp(image, a->image_digest) != 0) {
        vsctl_err("it attests image %s, not %s", a->image_digest, image);
        return VSCTL_FAIL;
    }
    char hex[65];
    printf("signature: valid, launcher key %s%s\n", node, node_hex != NULL ? " (the one given)" : "");
    printf("task:      %s\nimage:     %s\n", task, a->image_digest);
    sodium_bin2hex(hex, sizeof hex, a->policy_hash.data, 32);
    printf("policy:    %s\n", hex);
    sodium_bin2hex(hex, sizeof hex, a->seccomp_filter_hash.data, 32);
    printf("seccomp:   %s\n", hex);
    sodium_bin2hex(hex, sizeof hex, a->launcher_hash.data, 32);
    printf("launcher:  %s\n", hex);
    return VSCTL_OK;
}

int cmd_attest(struct vsctl *ctx, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
        attest_usage(help ? stdout : stderr);
        return help ? VSCTL_OK : VSCTL_USAGE;
    }
    argc--;
    argv++;
    static const struct option longopts[] = {
        {"node-key", required_argument, NULL, 'n'}, {"task", required_argument, NULL, 't'},
        {"image", required_argument, NULL, 'i'},    VSCTL_COMMON_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *node = NULL, *task = NULL, *image = NULL;
    vsctl_getopt_reset();
    int opt;
    while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        if (vsctl_common_opt(ctx, opt, optarg))
            continue;
        switch (opt) {
        case 'n': node = optarg; break;
        case 't': task = optarg; break;
        case 'i': image = optarg; break;
        case 'h': attest_usage(stdout); return VSCTL_OK;
        default: attest_usage(stderr); return VSCTL_USAGE;
        }
    }
    const char *path = optind < argc ? argv[optind] : "-";
    if (vs_crypto_init() != 0)
        return VSCTL_FAIL;
    json_error_t e;
    json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &e) : json_load_file(path, 0, &e);
    if (j == NULL) {
        vsctl_err("%s is not JSON: %s", path, e.text);
        return VSCTL_FAIL;
    }
    ProtobufCMessage *m = NULL;
    char err[256] = "";
    int rc = vs_pb_from_json(&vs__v1__attestation__descriptor, find_attestation(j), &m, err,
                             sizeof err);
    json_decref(j);
    if (rc < 0) {
        vsctl_err("not an attestation: %s", err[0] != '\0' ? err : strerror(-rc));
        return VSCTL_FAIL;
    }
    rc = check((const Vs__V1__Attestation *)m, node, task, image);
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}
