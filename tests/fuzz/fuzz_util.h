/*
 * fuzz_util.h - what more than one fuzz target needs: packing a message
 * while checking protobuf-c's own size arithmetic (a mismatch aborts, so
 * libFuzzer reports it as a crash).
 */
#ifndef VS_FUZZ_UTIL_H
#define VS_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include <protobuf-c/protobuf-c.h>

/* m packed into a fresh buffer (never NULL; *len may be 0); target names
 * the fuzz target in the abort message. */
static inline uint8_t *fuzz_pack(const char *target, const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n > 0 ? n : 1);

    if (buf == NULL) {
        abort();
    }
    *len = protobuf_c_message_pack(m, buf);
    if (*len != n) {
        fprintf(stderr, "%s: %s: packed %zu bytes, get_packed_size said %zu\n", target,
                m->descriptor->name, *len, n);
        abort();
    }
    return buf;
}

#endif
