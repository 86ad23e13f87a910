/*
 * attestation.h - the launcher's signed statement about one task's run
 * (DESIGN.md §3): which image, policy, seccomp filter and launcher binary
 * ran the task, signed with the node's Ed25519 key.
 *
 * Why a canonical text: the signature must be checked on bytes a verifier
 * can rebuild exactly from the message it received, never on a re-packed
 * protobuf (two encoders may pack the same fields differently). So the
 * signature covers a domain-separated text of the fields, one per line:
 *
 *   vibeshield-attestation-v1
 *   task <32 hex>
 *   image <image digest, or "host">
 *   policy <64 hex>
 *   seccomp <64 hex>
 *   launcher <64 hex>
 *   at <decimal nanoseconds>
 *   node <64 hex of the Ed25519 public key>
 *
 * each line ending in "\n". A field with bytes of the wrong length, or an
 * image digest with a control character or a space, has no text: it
 * cannot be signed or verified.
 */
#ifndef VS_ATTESTATION_H
#define VS_ATTESTATION_H

#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"
#include "vs/keys.h"
#include "vs/v1/task.pb-c.h"

#define VS_ATTESTATION_TEXT_MAX 768

/* The canonical text of a into out (size bytes): its length, -EINVAL for a
 * field of the wrong shape, -ENOSPC. */
VS_API int vs_attestation_text(const Vs__V1__Attestation *a, char *out, size_t size);
/* Sign a's text with k (whose public key must be a->node_key). 0, -EINVAL. */
VS_API int vs_attestation_sign(const Vs__V1__Attestation *a, const vs_signkey *k,
                               uint8_t sig[VS_SIGNATURE_LEN]);
/* Whether a->signature is a->node_key's signature over a's text: 0,
 * -EBADMSG (it is not), -EINVAL (a field of the wrong shape). Whether the
 * node key is one to trust is the caller's question. */
VS_API int vs_attestation_verify(const Vs__V1__Attestation *a);

#endif
