/*
 * fuzz_messages.c - libFuzzer target: protobuf wire bytes of any vs.v1
 * message type through protobuf-c's unpack and pbjson's JSON mapping
 * (vs/pbjson.h).
 *
 * Input: byte 0 selects the type (index into vs_pb_all(), modulo their
 * number), the rest is the wire encoding. When it decodes, the message
 * must survive message -> JSON -> text -> JSON -> message -> wire:
 *   - vs_pb_to_json succeeds and its dumped text parses back to an equal
 *     JSON value;
 *   - vs_pb_from_json accepts that JSON, and the message it builds maps to
 *     the same JSON (the first JSON already lacks what the mapping cannot
 *     carry: unknown fields, ill-formed UTF-8, bytes after a NUL);
 *   - the re-packed bytes unpack, to the same JSON, and re-pack to the
 *     same bytes.
 * Any violation aborts (a crash for libFuzzer) after a line on stderr.
 *
 * Not checked: that protobuf-c re-packs what it unpacked into bytes it
 * accepts. It does not always: protobuf-c 1.4.1 keeps an unknown field of
 * number 0 whose tag varint is over-long (81 00), re-packs it as 01 and
 * then refuses that. The messages pbjson builds never carry unknown
 * fields, so the checks below are not affected.
 *
 * VS_FUZZ_WRITE_SEEDS=<dir> writes seeds (one or more filled instances of
 * every type, built by walking the descriptors) to dir and exits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "vs/keys.h"
#include "vs/pbjson.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How vsctl prints messages. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER)
#define SEED_DEPTH 3 /* sub-messages deeper than this are left empty in seeds */

/* Report an inconsistency with the JSON involved, then abort. */
static void die(const ProtobufCMessageDescriptor *d, const char *what, const json_t *a,
                const json_t *b)
{
    char *ta = a != NULL ? json_dumps(a, DUMP_FLAGS) : NULL;
    char *tb = b != NULL ? json_dumps(b, DUMP_FLAGS) : NULL;

    fprintf(stderr, "fuzz_messages: %s: %s\n", d->name, what);
    if (ta != NULL) {
        fprintf(stderr, "  first:  %s\n", ta);
    }
    if (tb != NULL) {
        fprintf(stderr, "  second: %s\n", tb);
    }
    free(ta);
    free(tb);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t ntypes = 0;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&ntypes);

    if (size < 1 || ntypes == 0) {
        return 0;
    }
    const ProtobufCMessageDescriptor *d = all[data[0] % ntypes];
    ProtobufCMessage *m1 = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (m1 == NULL) {
        return 0;
    }

    /* message -> JSON -> text -> JSON */
    json_t *j1 = vs_pb_to_json(m1);
    if (j1 == NULL) {
        die(d, "vs_pb_to_json failed", NULL, NULL);
    }
    char *text = json_dumps(j1, DUMP_FLAGS);
    if (text == NULL) {
        die(d, "json_dumps failed on the output of vs_pb_to_json", NULL, NULL);
    }
    json_error_t jerr;
    json_t *j2 = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (j2 == NULL) {
        fprintf(stderr, "fuzz_messages: json_loads: %s (text %s)\n", jerr.text, text);
        die(d, "the dumped JSON does not parse", j1, NULL);
    }
    if (!json_equal(j1, j2)) {
        die(d, "JSON changed through dump and load", j1, j2);
    }

    /* JSON -> message: the same JSON again */
    ProtobufCMessage *m2 = NULL;
    char err[256];
    int rc = vs_pb_from_json(d, j2, &m2, err, sizeof err);
    if (rc != 0 || m2 == NULL) {
        fprintf(stderr, "fuzz_messages: vs_pb_from_json: %d: %s\n", rc, err);
        die(d, "vs_pb_from_json refused the output of vs_pb_to_json", j2, NULL);
    }
    json_t *j3 = vs_pb_to_json(m2);
    if (j3 == NULL || !json_equal(j1, j3)) {
        die(d, "message -> JSON -> message is not the same message", j1, j3);
    }

    /* -> wire -> message: decodes, same JSON, canonical bytes */
    size_t len2 = 0;
    uint8_t *p2 = fuzz_pack("fuzz_messages", m2, &len2);
    ProtobufCMessage *m3 = protobuf_c_message_unpack(d, NULL, len2, p2);
    if (m3 == NULL) {
        die(d, "the re-packed message does not unpack", j3, NULL);
    }
    json_t *j4 = vs_pb_to_json(m3);
    if (j4 == NULL || !json_equal(j1, j4)) {
        die(d, "the re-packed message unpacks to something else", j1, j4);
    }
    size_t len3 = 0;
    uint8_t *p3 = fuzz_pack("fuzz_messages", m3, &len3);
    if (len3 != len2 || memcmp(p2, p3, len2) != 0) {
        die(d, "pack(unpack(pack(m))) differs from pack(m)", j1, j4);
    }

    free(p3);
    json_decref(j4);
    protobuf_c_message_free_unpacked(m3, NULL);
    free(p2);
    json_decref(j3);
    protobuf_c_message_free_unpacked(m2, NULL);
    json_decref(j2);
    free(text);
    json_decref(j1);
    protobuf_c_message_free_unpacked(m1, NULL);
    return 0;
}

/* ---- seeds --------------------------------------------------------------- */

/* Bytes fields that pbjson writes and reads as hex (takes_hex in pbjson.c). */
static bool hex_field(const char *name)
{
    size_t n = strlen(name);

    return strcmp(name, "nonce") == 0 || (n >= 3 && strcmp(name + n - 3, "_id") == 0) ||
           (n >= 4 && strcmp(name + n - 4, "_ids") == 0);
}

static json_t *seed_message(const ProtobufCMessageDescriptor *d, unsigned depth, unsigned variant);

/* A JSON value for one value of field f: set 0 plain values, set 1 edge
 * values (negative, extreme, non-finite, non-ASCII, hex ids). */
static json_t *seed_value(const ProtobufCFieldDescriptor *f, unsigned depth, unsigned set)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(set ? -2147483647 - 1 : 7);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return set ? json_string("-9223372036854775808") : json_integer(1234567890123);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(set ? 4294967295 : 42);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return set ? json_string("18446744073709551615") : json_integer(1700000000000000000);
    case PROTOBUF_C_TYPE_FLOAT:
        return set ? json_string("-Infinity") : json_real(1.5);
    case PROTOBUF_C_TYPE_DOUBLE:
        return set ? json_string("NaN") : json_real(0.25);
    case PROTOBUF_C_TYPE_BOOL:
        return json_true();
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        return json_string(ed->values[set ? ed->n_values - 1 : (ed->n_values > 1 ? 1 : 0)].name);
    }
    case PROTOBUF_C_TYPE_STRING:
        return json_string(set ? "h\xc3\xa9llo \xe2\x98\x83 \"quoted\"\n" : f->name);
    case PROTOBUF_C_TYPE_BYTES:
        if (hex_field(f->name)) {
            return json_string(set ? "00112233445566778899aabbccddeeff" : "68656c6c6f");
        }
        return json_string(set ? "AAECAwQFBgcICQoLDA0ODw==" : "aGVsbG8=");
    case PROTOBUF_C_TYPE_MESSAGE:
        return seed_message(f->descriptor, depth + 1, set);
    }
    return json_null();
}

/* An instance of d with every field set. Of each oneof, the member whose
 * rank within the oneof is variant modulo the oneof's size. */
static json_t *seed_message(const ProtobufCMessageDescriptor *d, unsigned depth, unsigned variant)
{
    json_t *o = json_object();

    if (o == NULL || depth > SEED_DEPTH) {
        return o;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            unsigned rank = 0, members = 0;
            for (unsigned k = 0; k < d->n_fields; k++) {
                if ((d->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    d->fields[k].quantifier_offset == f->quantifier_offset) {
                    rank += k < i;
                    members++;
                }
            }
            if (rank != variant % members) {
                continue;
            }
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            v = json_array();
            json_array_append_new(v, seed_value(f, depth, variant % 2));
            json_array_append_new(v, seed_value(f, depth, (variant + 1) % 2));
        } else {
            v = seed_value(f, depth, variant % 2);
        }
        json_object_set_new(o, f->name, v);
    }
    return o;
}

/* Largest oneof of d (1 when it has none). */
static unsigned max_oneof(const ProtobufCMessageDescriptor *d)
{
    unsigned best = 1;

    for (unsigned i = 0; i < d->n_fields; i++) {
        unsigned members = 0;
        if (!(d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
            continue;
        }
        for (unsigned k = 0; k < d->n_fields; k++) {
            members += (d->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                       d->fields[k].quantifier_offset == d->fields[i].quantifier_offset;
        }
        best = members > best ? members : best;
    }
    return best;
}

static void write_seed(const char *dir, const char *name, unsigned variant, uint8_t sel,
                       const uint8_t *body, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s-%u", dir, name, variant);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || (len > 0 && fwrite(body, 1, len, f) != len) ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* One seed per (type, variant): variants cover every oneof member and both
 * value sets. */
static void write_seeds(const char *dir)
{
    size_t ntypes = 0;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&ntypes);

    if (ntypes > 256) {
        fprintf(stderr, "fuzz_messages: more than 256 types, byte 0 cannot select them all\n");
        exit(1);
    }
    for (size_t t = 0; t < ntypes; t++) {
        unsigned variants = max_oneof(all[t]) > 2 ? max_oneof(all[t]) : 2;
        for (unsigned v = 0; v < variants; v++) {
            json_t *j = seed_message(all[t], 1, v);
            ProtobufCMessage *m = NULL;
            char err[256];
            size_t len = 0;
            uint8_t *wire;

            if (j == NULL || vs_pb_from_json(all[t], j, &m, err, sizeof err) != 0) {
                fprintf(stderr, "fuzz_messages: seed for %s: %s\n", all[t]->name, err);
                exit(1);
            }
            wire = fuzz_pack("fuzz_messages", m, &len);
            write_seed(dir, all[t]->short_name, v, (uint8_t)t, wire, len);
            free(wire);
            protobuf_c_message_free_unpacked(m, NULL);
            json_decref(j);
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("VS_FUZZ_WRITE_SEEDS");

    (void)argc;
    (void)argv;
    if (vs_crypto_init() != 0) {
        abort();
    }
    if (seeds != NULL && seeds[0] != '\0') {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}
