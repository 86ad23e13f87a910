/*
 * ids.c - time-ordered 128-bit identifiers, hex for subjects, and the two
 * clocks every component reads (see vs/ids.h for the contract).
 *
 * Why this shape:
 *  - An id is 48-bit big-endian Unix milliseconds followed by 80 random
 *    bits from libsodium's CSPRNG: ids sort by creation time (cheap B-tree
 *    appends, JetStream dedup windows aligned with time) while staying
 *    unguessable. Ids made within the same millisecond are ordered at
 *    random; nothing relies on a finer order.
 *  - Hex is lowercase so an id is a stable NATS subject token and
 *    Nats-Msg-Id. Parsing validates the whole input before writing any
 *    output, so a rejected string never leaves a half-decoded id behind.
 *  - The clocks are thin wrappers so that the rest of the code never mixes
 *    up wall-clock time (for timestamps that travel) and monotonic time
 *    (for local deadlines).
 */
#include "vs/ids.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define VS_ID_TIME_LEN 6 /* 48-bit milliseconds */

VS_API void vs_id_new(uint8_t out[VS_ID_LEN])
{
    uint64_t ms = vs_now_ns() / 1000000u;

    for (size_t i = 0; i < VS_ID_TIME_LEN; i++) {
        out[i] = (uint8_t)(ms >> (8 * (VS_ID_TIME_LEN - 1 - i)));
    }
    randombytes_buf(out + VS_ID_TIME_LEN, VS_ID_LEN - VS_ID_TIME_LEN);
}

VS_API uint64_t vs_id_time_ms(const uint8_t id[VS_ID_LEN])
{
    uint64_t ms = 0;

    for (size_t i = 0; i < VS_ID_TIME_LEN; i++) {
        ms = (ms << 8) | id[i];
    }
    return ms;
}

VS_API void vs_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

/* Value of one hex digit (either case), or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

VS_API int vs_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (hex == NULL || (out == NULL && len > 0) || len > SIZE_MAX / 2) {
        return -EINVAL;
    }
    /* Bounded scan: a longer string is rejected without reading it all. */
    if (strnlen(hex, 2 * len + 1) != 2 * len) {
        return -EINVAL;
    }
    for (size_t i = 0; i < 2 * len; i++) {
        if (hex_digit(hex[i]) < 0) {
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)((hex_digit(hex[2 * i]) << 4) | hex_digit(hex[2 * i + 1]));
    }
    return 0;
}

/* Nanoseconds of clock id. clock_gettime cannot fail for the two clocks
 * used here on Linux, so a failure is not reported (the value is 0). */
static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts = {0};

    (void)clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

VS_API uint64_t vs_now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

VS_API uint64_t vs_mono_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000u;
}
