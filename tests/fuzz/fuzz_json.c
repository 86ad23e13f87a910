/*
 * fuzz_json.c - libFuzzer target: JSON text through vs_pb_from_json
 * (vs/pbjson.h), the path vsctl pub takes with what a user typed.
 *
 * Input: byte 0 selects the message type (index into vs_pb_all(), modulo
 * their number), the rest is JSON text, parsed by jansson with NULs in
 * strings allowed (so that pbjson's own NUL checks are reached) and any
 * value accepted at the top. Then:
 *   - a refusal must be -EINVAL with a message, and leave *out NULL;
 *   - an accepted message packs, the bytes unpack again and re-pack to the
 *     same bytes;
 *   - the message maps to JSON that vs_pb_from_json accepts again and that
 *     packs to the same bytes (JSON -> message -> JSON is stable).
 * Any violation aborts after a line on stderr.
 *
 * VS_FUZZ_WRITE_SEEDS=<dir> writes seeds (a filled instance of every type
 * and a few refused documents) to dir and exits.
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

#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER)
#define SEED_DEPTH 3

static void die(const ProtobufCMessageDescriptor *d, const char *what, const json_t *j)
{
    char *text = j != NULL ? json_dumps(j, DUMP_FLAGS | JSON_ENCODE_ANY) : NULL;

    fprintf(stderr, "fuzz_json: %s: %s%s%s\n", d->name, what, text != NULL ? ": " : "",
            text != NULL ? text : "");
    free(text);
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
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data + 1, size - 1, LOAD_FLAGS, &jerr);
    if (j == NULL) {
        return 0;
    }

    ProtobufCMessage *m = (ProtobufCMessage *)&jerr; /* must be overwritten */
    char err[256] = "untouched";
    int rc = vs_pb_from_json(d, j, &m, err, sizeof err);
    if (rc != 0) {
        if (rc != -EINVAL || m != NULL || err[0] == '\0' || strcmp(err, "untouched") == 0) {
            fprintf(stderr, "fuzz_json: rc %d, out %p, err \"%s\"\n", rc, (void *)m, err);
            die(d, "a refusal must be -EINVAL with a message and no output", j);
        }
        json_decref(j);
        return 0;
    }
    if (m == NULL || m->descriptor != d) {
        die(d, "accepted, but no message of the type", j);
    }

    /* -> wire -> message -> wire */
    size_t len1 = 0;
    uint8_t *p1 = fuzz_pack("fuzz_json", m, &len1);
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, len1, p1);
    if (m2 == NULL) {
        die(d, "the packed message does not unpack", j);
    }
    size_t len2 = 0;
    uint8_t *p2 = fuzz_pack("fuzz_json", m2, &len2);
    if (len2 != len1 || memcmp(p1, p2, len1) != 0) {
        die(d, "pack(unpack(pack(m))) differs from pack(m)", j);
    }

    /* -> JSON -> message -> wire: the same bytes */
    json_t *back = vs_pb_to_json(m);
    if (back == NULL) {
        die(d, "vs_pb_to_json failed", j);
    }
    ProtobufCMessage *m3 = NULL;
    rc = vs_pb_from_json(d, back, &m3, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "fuzz_json: vs_pb_from_json: %d: %s\n", rc, err);
        die(d, "vs_pb_from_json refused the output of vs_pb_to_json", back);
    }
    size_t len3 = 0;
    uint8_t *p3 = fuzz_pack("fuzz_json", m3, &len3);
    if (len3 != len1 || memcmp(p1, p3, len1) != 0) {
        fprintf(stderr, "fuzz_json: input:\n");
        die(d, "JSON -> message -> JSON -> message packs differently", back);
    }

    free(p3);
    protobuf_c_message_free_unpacked(m3, NULL);
    json_decref(back);
    free(p2);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(p1);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(j);
    return 0;
}

/* ---- seeds --------------------------------------------------------------- */

static bool hex_field(const char *name)
{
    size_t n = strlen(name);

    return strcmp(name, "nonce") == 0 || (n >= 3 && strcmp(name + n - 3, "_id") == 0) ||
           (n >= 4 && strcmp(name + n - 4, "_ids") == 0);
}

static json_t *seed_message(const ProtobufCMessageDescriptor *d, unsigned depth, unsigned set);

/* Set 0: plain values; set 1: edge values in their string forms. */
static json_t *seed_value(const ProtobufCFieldDescriptor *f, unsigned depth, unsigned set)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return set ? json_string("-2147483648") : json_integer(-7);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return set ? json_string("9223372036854775807") : json_integer(-1234567890123);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return set ? json_string("4294967295") : json_integer(42);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return set ? json_string("18446744073709551615") : json_integer(1700000000000000000);
    case PROTOBUF_C_TYPE_FLOAT:
        return set ? json_string("Infinity") : json_real(-2.5);
    case PROTOBUF_C_TYPE_DOUBLE:
        return set ? json_string("NaN") : json_real(1e300);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(set);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        return set ? json_integer(ed->values[ed->n_values - 1].value)
                   : json_string(ed->values[ed->n_values > 1 ? 1 : 0].name);
    }
    case PROTOBUF_C_TYPE_STRING:
        return json_string(set ? "\xe2\x82\xac \\ \"x\"" : f->name);
    case PROTOBUF_C_TYPE_BYTES:
        if (hex_field(f->name)) {
            return json_string(set ? "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
                                   : "000102030405060708090a0b0c0d0e0f");
        }
        return json_string(set ? "" : "aGVsbG8gd29ybGQ=");
    case PROTOBUF_C_TYPE_MESSAGE:
        return seed_message(f->descriptor, depth + 1, set);
    }
    return json_null();
}

/* Every field set, except that of each oneof only its first member (set 0)
 * or its last (set 1). */
static json_t *seed_message(const ProtobufCMessageDescriptor *d, unsigned depth, unsigned set)
{
    json_t *o = json_object();

    if (o == NULL || depth > SEED_DEPTH) {
        return o;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            bool skip = false;
            for (unsigned k = 0; k < d->n_fields; k++) {
                if (k != i && (d->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    d->fields[k].quantifier_offset == f->quantifier_offset &&
                    (set ? k > i : k < i)) {
                    skip = true;
                }
            }
            if (skip) {
                continue;
            }
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            v = json_array();
            json_array_append_new(v, seed_value(f, depth, set));
            json_array_append_new(v, seed_value(f, depth, !set));
        } else {
            v = seed_value(f, depth, set);
        }
        json_object_set_new(o, f->name, v);
    }
    return o;
}

static void write_seed(const char *dir, const char *name, uint8_t sel, const char *text)
{
    char path[4096];
    size_t len = strlen(text);
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(&sel, 1, 1, f) != 1 || fwrite(text, 1, len, f) != len ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Index of the type named name in vs_pb_all(). */
static uint8_t type_index(const char *name)
{
    size_t ntypes = 0;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&ntypes);

    for (size_t i = 0; i < ntypes; i++) {
        if (strcmp(all[i]->short_name, name) == 0) {
            return (uint8_t)i;
        }
    }
    fprintf(stderr, "fuzz_json: no type %s\n", name);
    exit(1);
}

static void write_seeds(const char *dir)
{
    /* Refused (or borderline) documents, each for a named type. */
    static const struct {
        const char *name, *type, *text;
    } manual[] = {
        {"unknown-field", "Status", "{\"code\":\"STATUS_OK\",\"reasn\":\"typo\"}"},
        {"enum-unknown", "Status", "{\"code\":\"STATUS_NOPE\",\"reason\":null}"},
        {"enum-number", "Status", "{\"code\":-5}"},
        {"oneof-twice", "AgentCommand", "{\"ping\":{\"nonce\":\"AA==\"},\"echo\":{}}"},
        {"nul-string", "KeyValue", "{\"key\":\"a\\u0000b\",\"value\":\"\"}"},
        {"wrong-type", "TaskLimits", "[1,2,3]"},
        {"int-range", "Heartbeat", "{\"sequence\":\"-1\",\"progress\":\"x\"}"},
        {"bad-base64", "BlobManifest", "{\"blob_id\":\"not base64!\",\"size\":1e3}"},
        {"nested-array", "RequestData", "{\"headers\":[{\"key\":\"a\",\"value\":\"b\"},{\"k\":1}]}"},
    };
    size_t ntypes = 0;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&ntypes);

    if (ntypes > 256) {
        fprintf(stderr, "fuzz_json: more than 256 types, byte 0 cannot select them all\n");
        exit(1);
    }
    for (size_t t = 0; t < ntypes; t++) {
        for (unsigned set = 0; set < 2; set++) {
            json_t *j = seed_message(all[t], 1, set);
            char *text = j != NULL ? json_dumps(j, DUMP_FLAGS) : NULL;
            char name[256];

            if (text == NULL) {
                exit(1);
            }
            snprintf(name, sizeof name, "%s-%u", all[t]->short_name, set);
            write_seed(dir, name, (uint8_t)t, text);
            free(text);
            json_decref(j);
        }
    }
    for (size_t i = 0; i < sizeof manual / sizeof manual[0]; i++) {
        write_seed(dir, manual[i].name, type_index(manual[i].type), manual[i].text);
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
