/*
 * attestation.c - see vs/attestation.h: the canonical text, its signature
 * and its check.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vs/attestation.h"
#include "vs/ids.h"

static bool digest_printable(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 128)
        return false;
    for (; *s != '\0'; s++)
        if (*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

VS_API int vs_attestation_text(const Vs__V1__Attestation *a, char *out, size_t size)
{
    if (a == NULL || out == NULL || a->task_id.len != VS_ID_LEN || a->policy_hash.len != 32 ||
        a->seccomp_filter_hash.len != 32 || a->launcher_hash.len != 32 ||
        a->node_key.len != VS_SIGN_PUBLICKEY_LEN || !digest_printable(a->image_digest))
        return -EINVAL;
    char task[2 * VS_ID_LEN + 1], policy[65], seccomp[65], launcher[65], node[65];
    vs_hex(a->task_id.data, VS_ID_LEN, task);
    vs_hex(a->policy_hash.data, 32, policy);
    vs_hex(a->seccomp_filter_hash.data, 32, seccomp);
    vs_hex(a->launcher_hash.data, 32, launcher);
    vs_hex(a->node_key.data, VS_SIGN_PUBLICKEY_LEN, node);
    int n = snprintf(out, size,
                     "vibeshield-attestation-v1\ntask %s\nimage %s\npolicy %s\nseccomp %s\n"
                     "launcher %s\nat %" PRIu64 "\nnode %s\n",
                     task, a->image_digest, policy, seccomp, launcher, (uint64_t)a->at_ns, node);
    return n < 0 ? -EINVAL : (size_t)n >= size ? -ENOSPC : n;
}

VS_API int vs_attestation_sign(const Vs__V1__Attestation *a, const vs_signkey *k,
                               uint8_t sig[VS_SIGNATURE_LEN])
{
    char text[VS_ATTESTATION_TEXT_MAX];
    int n = vs_attestation_text(a, text, sizeof text);
    if (n < 0 || k == NULL ||
        memcmp(vs_signkey_public(k), a->node_key.data, VS_SIGN_PUBLICKEY_LEN) != 0)
        return -EINVAL;
    return vs_sign(k, text, (size_t)n, sig);
}

VS_API int vs_attestation_verify(const Vs__V1__Attestation *a)
{
    char text[VS_ATTESTATION_TEXT_MAX];
    int n = vs_attestation_text(a, text, sizeof text);
    if (n < 0 || a->signature.len != VS_SIGNATURE_LEN)
        return -EINVAL;
    return vs_verify(a->node_key.data, text, (size_t)n, a->signature.data);
}
