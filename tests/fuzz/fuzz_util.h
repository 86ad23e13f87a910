/*
 * fuzz_util.h - what more than one fuzz target needs: packing a message
 * while checking protobuf-c's own size arithmetic (a mismatch aborts, so
 * libFuzzer reports it as a crash), and writing text seeds.
 */
#ifndef VS_FUZZ_UTIL_H
#define VS_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A text seed: its file name and contents. */
struct fuzz_seed {
    const char *name, *text;
};

/* Write each seed to dir/name (VS_FUZZ_WRITE_SEEDS); exits 1 on failure. */
static inline void fuzz_write_seeds(const char *dir, const struct fuzz_seed *seeds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        size_t len = strlen(seeds[i].text);
        FILE *f = NULL;
        if (snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name) < (int)sizeof path)
            f = fopen(path, "wb");
        if (f == NULL || fwrite(seeds[i].text, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            exit(1);
        }
    }
}

#endif
