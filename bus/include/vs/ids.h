/*
 * ids.h - 128-bit time-ordered identifiers and subject-safe hex.
 *
 * Layout: 48-bit big-endian Unix milliseconds, then 80 random bits. Ids made
 * later sort later, so B-tree inserts stay near the right edge and JetStream
 * dedup windows line up with time. The hex form (32 lowercase characters)
 * is a valid NATS subject token and a valid Nats-Msg-Id.
 */
#ifndef VS_IDS_H
#define VS_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "vs/api.h"

#define VS_ID_LEN 16
#define VS_ID_HEX_LEN 33 /* 32 hex digits + NUL */

/* Fill out with a fresh id. Never fails (libsodium's randombytes). */
VS_API void vs_id_new(uint8_t out[VS_ID_LEN]);
/* Milliseconds encoded in an id. */
VS_API uint64_t vs_id_time_ms(const uint8_t id[VS_ID_LEN]);
/* Lowercase hex of len bytes into out (2*len+1 bytes). */
VS_API void vs_hex(const uint8_t *in, size_t len, char *out);
/* Parse exactly 2*len hex digits; -EINVAL otherwise. */
VS_API int vs_unhex(const char *hex, uint8_t *out, size_t len);
/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
VS_API uint64_t vs_now_ns(void);
/* Milliseconds of CLOCK_MONOTONIC. */
VS_API uint64_t vs_mono_ms(void);

#endif
