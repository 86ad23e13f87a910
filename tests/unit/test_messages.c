/*
 * test_messages.c - every message type of vs.v1 survives the wire and the
 * JSON mapping (vs/pbjson.h), and pbjson turns bad or hostile JSON into
 * -EINVAL with an error naming the field, without crashing or leaking.
 *
 * Instances are built by walking the descriptors rather than by hand, so a
 * new field or message type is covered without editing this file, and the
 * count test fails when vs_pb_all() does not list a `message` of the .proto
 * files. The vs.v1 schema uses only part of what protobuf-c can express, so
 * a hand-written descriptor ("Kitchen": every scalar type, proto2 optional
 * and required labels, packed repeated fields, a oneof with a string member,
 * self-recursion) covers the rest of the walker, including the depth limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs/pbjson.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/common.pb-c.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define FILL_DEPTH 6 /* sub-messages this deep are left unset */
#define REPEATS 2    /* elements of every repeated field */
#define ERRLEN 256

/* ---- the Kitchen descriptor ------------------------------------------ */

typedef struct Kitchen Kitchen;
struct Kitchen {
    ProtobufCMessage base;
    int32_t i32;
    int32_t s32;
    int32_t sf32;
    int64_t i64;
    int64_t s64;
    int64_t sf64;
    uint32_t u32;
    uint32_t fx32;
    uint64_t u64;
    uint64_t fx64;
    float fl;
    double db;
    protobuf_c_boolean flag;
    int en;
    char *str;
    ProtobufCBinaryData blob;
    Kitchen *child;
    protobuf_c_boolean has_opt;
    int64_t opt;
    protobuf_c_boolean has_opt_bytes;
    ProtobufCBinaryData opt_bytes;
    char *req;
    size_t n_packed;
    int32_t *packed;
    size_t n_reals;
    float *reals;
    size_t n_children;
    Kitchen **children;
    size_t n_names;
    char **names;
    uint32_t pick_case;
    union {
        char *pick_str;
        int32_t pick_int;
    };
};

static const ProtobufCMessageDescriptor kitchen_descriptor;

#define KF(name, id, label, type, quant, member, desc, def, flags)                                 \
    {                                                                                              \
        name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, quant,                         \
            offsetof(Kitchen, member), desc, def, flags, 0, NULL, NULL                             \
    }
#define KNONE(name, id, type, member) KF(name, id, NONE, type, 0, member, NULL, NULL, 0)

static const ProtobufCFieldDescriptor kitchen_fields[] = {
    KNONE("i32", 1, INT32, i32),
    KNONE("s32", 2, SINT32, s32),
    KNONE("sf32", 3, SFIXED32, sf32),
    KNONE("i64", 4, INT64, i64),
    KNONE("s64", 5, SINT64, s64),
    KNONE("sf64", 6, SFIXED64, sf64),
    KNONE("u32", 7, UINT32, u32),
    KNONE("fx32", 8, FIXED32, fx32),
    KNONE("u64", 9, UINT64, u64),
    KNONE("fx64", 10, FIXED64, fx64),
    KNONE("fl", 11, FLOAT, fl),
    KNONE("db", 12, DOUBLE, db),
    KNONE("flag", 13, BOOL, flag),
    KF("en", 14, NONE, ENUM, 0, en, &vs__v1__status_code__descriptor, NULL, 0),
    KF("str", 15, NONE, STRING, 0, str, NULL, &protobuf_c_empty_string, 0),
    KNONE("blob", 16, BYTES, blob),
    KF("child", 17, NONE, MESSAGE, 0, child, &kitchen_descriptor, NULL, 0),
    KF("opt", 18, OPTIONAL, SINT64, offsetof(Kitchen, has_opt), opt, NULL, NULL, 0),
    KF("opt_bytes", 19, OPTIONAL, BYTES, offsetof(Kitchen, has_opt_bytes), opt_bytes, NULL, NULL,
       0),
    KF("req", 20, REQUIRED, STRING, 0, req, NULL, NULL, 0),
    KF("packed", 21, REPEATED, SINT32, offsetof(Kitchen, n_packed), packed, NULL, NULL,
       PROTOBUF_C_FIELD_FLAG_PACKED),
    KF("reals", 22, REPEATED, FLOAT, offsetof(Kitchen, n_reals), reals, NULL, NULL,
       PROTOBUF_C_FIELD_FLAG_PACKED),
    KF("children", 23, REPEATED, MESSAGE, offsetof(Kitchen, n_children), children,
       &kitchen_descriptor, NULL, 0),
    KF("names", 24, REPEATED, STRING, offsetof(Kitchen, n_names), names, NULL, NULL, 0),
    KF("pick_str", 25, NONE, STRING, offsetof(Kitchen, pick_case), pick_str, NULL,
       &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF),
    KF("pick_int", 26, NONE, INT32, offsetof(Kitchen, pick_case), pick_int, NULL, NULL,
       PROTOBUF_C_FIELD_FLAG_ONEOF),
};
/* Field indices in strcmp order of the names: get_field_by_name bisects this
 * (test_kitchen_specifics checks the order). */
static const unsigned kitchen_by_name[] = {15, 16, 22, 11, 13, 10, 12, 7, 9, 0, 3,  23, 17,
                                           18, 20, 25, 24, 21, 19, 1,  4, 2, 5, 14, 6,  8};
static const ProtobufCIntRange kitchen_ranges[] = {{1, 0}, {0, 26}};

static void kitchen_init(ProtobufCMessage *m)
{
    Kitchen *k = (Kitchen *)m;

    memset(k, 0, sizeof *k);
    k->base.descriptor = &kitchen_descriptor;
    k->str = (char *)protobuf_c_empty_string;
}

static const ProtobufCMessageDescriptor kitchen_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Kitchen",
    "Kitchen",
    "Test__Kitchen",
    "test",
    sizeof(Kitchen),
    sizeof kitchen_fields / sizeof kitchen_fields[0],
    kitchen_fields,
    kitchen_by_name,
    1,
    kitchen_ranges,
    kitchen_init,
    NULL,
    NULL,
    NULL,
};

/* ---- building instances from descriptors ----------------------------- */

static size_t elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* Position of oneof member f among the members of its oneof, and their
 * number. */
static void oneof_slot(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                       unsigned *pos, unsigned *size)
{
    *pos = 0;
    *size = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *g = &d->fields[i];

        if ((g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            g->quantifier_offset == f->quantifier_offset) {
            if (g == f) {
                *pos = *size;
            }
            (*size)++;
        }
    }
}

/* How many variants populate() needs so that every member of every oneof
 * reachable from d (within FILL_DEPTH) is set at least once. */
static unsigned oneof_width(const ProtobufCMessageDescriptor *d, unsigned depth)
{
    unsigned width = 1;

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        unsigned pos, size, sub;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            oneof_slot(d, f, &pos, &size);
            width = size > width ? size : width;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth + 1 < FILL_DEPTH && f->descriptor != d) {
            sub = oneof_width(f->descriptor, depth + 1);
            width = sub > width ? sub : width;
        }
    }
    return width;
}

/* JSON keys a populated d must have: every field, one per oneof. */
static size_t expected_keys(const ProtobufCMessageDescriptor *d)
{
    size_t n = 0;

    for (unsigned i = 0; i < d->n_fields; i++) {
        unsigned pos, size;

        if (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            oneof_slot(d, &d->fields[i], &pos, &size);
            n += pos == 0;
        } else {
            n++;
        }
    }
    return n;
}

static ProtobufCMessage *populate(const ProtobufCMessageDescriptor *d, unsigned depth,
                                  unsigned variant);

/* A non-default value for field f at dst; k is the element index, variant
 * alternates between ordinary and extreme values. */
static void fill_value(const ProtobufCFieldDescriptor *f, void *dst, unsigned depth,
                       unsigned variant, unsigned k)
{
    bool alt = (variant + k) % 2 == 1;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
        *(int32_t *)dst = alt ? INT32_MIN : -123456;
        break;
    case PROTOBUF_C_TYPE_SINT32:
        *(int32_t *)dst = alt ? INT32_MAX : -77;
        break;
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)dst = alt ? INT32_MIN : -9;
        break;
    case PROTOBUF_C_TYPE_INT64:
        *(int64_t *)dst = alt ? INT64_MIN : -1234567890123;
        break;
    case PROTOBUF_C_TYPE_SINT64:
        *(int64_t *)dst = alt ? INT64_MAX : -5000000000;
        break;
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)dst = alt ? INT64_MIN + 1 : -2;
        break;
    case PROTOBUF_C_TYPE_UINT32:
        *(uint32_t *)dst = alt ? UINT32_MAX : 4000000000u;
        break;
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)dst = alt ? 1u : 0x80000000u;
        break;
    case PROTOBUF_C_TYPE_UINT64:
        *(uint64_t *)dst = alt ? UINT64_MAX - k : 1234567890123u + k;
        break;
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)dst = alt ? (uint64_t)INT64_MAX + 1 : 1700000000123456789u + k;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)dst = alt ? -3.4e38f : 0.1f;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)dst = alt ? 4.9e-324 : 0.1 + k;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)dst = 1;
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        int v = ed->values[ed->n_values - 1 - (k % ed->n_values)].value;

        *(int *)dst = v != 0 ? v : ed->values[ed->n_values - 1].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char buf[128];

        snprintf(buf, sizeof buf, "%s \"q\" \\ \n\x01 \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 %u",
                 f->name, k);
        *(char **)dst = strdup(buf);
        assert_non_null(*(char **)dst);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = dst;
        size_t n = strlen(f->name);

        b->len = strcmp(f->name, "nonce") == 0                   ? 32
                 : n >= 3 && strcmp(f->name + n - 3, "_id") == 0 ? 16
                                                                 : 33 + k;
        b->data = malloc(b->len);
        assert_non_null(b->data);
        for (size_t i = 0; i < b->len; i++) {
            b->data[i] = (uint8_t)(0xff - i * 7 - k);
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)dst =
            depth + 1 < FILL_DEPTH ? populate(f->descriptor, depth + 1, variant) : NULL;
        break;
    }
}

/* A message of type d with every field set to a non-default value (one
 * member per oneof, chosen by variant), sub-messages filled down to
 * FILL_DEPTH, REPEATS elements per repeated field. Freed with
 * protobuf_c_message_free_unpacked(m, NULL). */
static ProtobufCMessage *populate(const ProtobufCMessageDescriptor *d, unsigned depth,
                                  unsigned variant)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);

    assert_non_null(m);
    protobuf_c_message_init(d, m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *member = (char *)m + f->offset;
        void *quantifier = (char *)m + f->quantifier_offset;
        unsigned pos, size;

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            char *arr;

            if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth + 1 >= FILL_DEPTH) {
                continue; /* elements may not be NULL */
            }
            arr = calloc(REPEATS, elt_size(f->type));
            assert_non_null(arr);
            *(void **)member = arr;
            *(size_t *)quantifier = REPEATS;
            for (unsigned k = 0; k < REPEATS; k++) {
                fill_value(f, arr + k * elt_size(f->type), depth, variant, k);
            }
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            oneof_slot(d, f, &pos, &size);
            if (pos != variant % size) {
                continue;
            }
            *(uint32_t *)quantifier = f->id;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE) {
            *(protobuf_c_boolean *)quantifier = 1;
        }
        fill_value(f, member, depth, variant, 0);
    }
    return m;
}

/* m packed into a fresh buffer (*len bytes). */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(m);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void assert_packs_to(const ProtobufCMessage *m, const uint8_t *want, size_t want_len)
{
    size_t len;
    uint8_t *got = pack(m, &len);

    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
    free(got);
}

/* JSON text -> message of type d, which must succeed. */
static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    ProtobufCMessage *m = NULL;
    char err[ERRLEN];
    int rc;

    assert_non_null(j);
    rc = vs_pb_from_json(d, j, &m, err, sizeof err);
    json_decref(j);
    if (rc != 0) {
        print_error("%s: %s -> %d \"%s\"\n", d->name, text, rc, err);
    }
    assert_int_equal(rc, 0);
    assert_non_null(m);
    return m;
}

/* from_json of j for type d fails with -EINVAL, *out NULL, and an error
 * containing needle. Takes the reference to j. */
static void expect_einval_json(const ProtobufCMessageDescriptor *d, json_t *j, const char *needle)
{
    ProtobufCMessage *m = (ProtobufCMessage *)&m;
    char err[ERRLEN];
    int rc;

    assert_non_null(j);
    rc = vs_pb_from_json(d, j, &m, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, needle)) {
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

        print_error("%s: %.200s -> %d \"%s\", wanted \"%s\"\n", d->name, text, rc, err, needle);
        free(text);
    }
    json_decref(j);
    assert_int_equal(rc, -EINVAL);
    assert_null(m);
    assert_non_null(strstr(err, needle));
}

static void expect_einval(const ProtobufCMessageDescriptor *d, const char *text, const char *needle)
{
    json_error_t je;

    expect_einval_json(d, json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je), needle);
}

/* ---- round trips ------------------------------------------------------ */

/* For the type in *state and each oneof variant: pack -> unpack -> pack
 * gives the same bytes, and to_json -> text -> from_json -> pack gives the
 * original bytes again. */
static void test_roundtrip(void **state)
{
    const ProtobufCMessageDescriptor *d = *state;
    unsigned variants = oneof_width(d, 0);

    variants = variants < 2 ? 2 : variants; /* also alternate the extreme values */
    for (unsigned v = 0; v < variants; v++) {
        ProtobufCMessage *m = populate(d, 0, v);
        ProtobufCMessage *wire_back, *json_back = NULL;
        json_t *j, *reparsed, *again;
        json_error_t je;
        char err[ERRLEN];
        size_t len;
        uint8_t *wire = pack(m, &len);
        char *text;
        int rc;

        wire_back = protobuf_c_message_unpack(d, NULL, len, wire);
        assert_non_null(wire_back);
        assert_packs_to(wire_back, wire, len);

        j = vs_pb_to_json(m);
        assert_non_null(j);
        assert_int_equal(json_object_size(j), expected_keys(d));
        text = json_dumps(j, JSON_COMPACT);
        assert_non_null(text);
        reparsed = json_loads(text, 0, &je);
        assert_non_null(reparsed);
        rc = vs_pb_from_json(d, reparsed, &json_back, err, sizeof err);
        if (rc != 0) {
            print_error("%s: %s\n", err, text);
        }
        assert_int_equal(rc, 0);
        assert_packs_to(json_back, wire, len);
        again = vs_pb_to_json(json_back);
        assert_true(json_equal(j, again));

        json_decref(again);
        json_decref(reparsed);
        json_decref(j);
        free(text);
        protobuf_c_message_free_unpacked(json_back, NULL);
        protobuf_c_message_free_unpacked(wire_back, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        free(wire);
    }
}

/* ---- the type list ---------------------------------------------------- */

/* vs_pb_all() has one descriptor per `message X {` of the .proto files,
 * each findable by its name. */
static void test_every_message_type_listed(void **state)
{
    const char *dir_path = VS_SOURCE_DIR "/proto/vs/v1";
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    regex_t re;
    regmatch_t match[2];
    size_t found = 0, files = 0, n;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&n);

    (void)state;
    assert_non_null(dir);
    assert_int_equal(
        regcomp(&re, "^[[:space:]]*message[[:space:]]+([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\\{",
                REG_EXTENDED),
        0);
    while ((de = readdir(dir)) != NULL) {
        size_t nl = strlen(de->d_name);
        char path[512], *line = NULL;
        size_t cap = 0;
        FILE *fp;

        if (nl < 6 || strcmp(de->d_name + nl - 6, ".proto") != 0) {
            continue;
        }
        files++;
        snprintf(path, sizeof path, "%s/%s", dir_path, de->d_name);
        fp = fopen(path, "r");
        assert_non_null(fp);
        while (getline(&line, &cap, fp) > 0) {
            char name[128];

            if (regexec(&re, line, 2, match, 0) != 0) {
                continue;
            }
            snprintf(name, sizeof name, "%.*s", (int)(match[1].rm_eo - match[1].rm_so),
                     line + match[1].rm_so);
            if (!vs_pb_find(name)) {
                print_error("message %s of %s is missing from vs_pb_all()\n", name, de->d_name);
            }
            assert_non_null(vs_pb_find(name));
            found++;
        }
        free(line);
        fclose(fp);
    }
    closedir(dir);
    regfree(&re);
    assert_int_equal(files, 6);
    assert_int_equal(n, found);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(all[i]->package_name, "vs.v1");
        assert_ptr_equal(vs_pb_find(all[i]->name), all[i]);
        for (size_t k = 0; k < i; k++) {
            assert_ptr_not_equal(all[i], all[k]);
        }
    }
}

static void test_find(void **state)
{
    (void)state;
    assert_ptr_equal(vs_pb_find("TaskSubmit"), &vs__v1__task_submit__descriptor);
    assert_ptr_equal(vs_pb_find("vs.v1.TaskSubmit"), &vs__v1__task_submit__descriptor);
    assert_ptr_equal(vs_pb_find("vs.v1.AgentCommand"), &vs__v1__agent_command__descriptor);
    assert_null(vs_pb_find("Nope"));
    assert_null(vs_pb_find("vs.v1.Nope"));
    assert_null(vs_pb_find("vs.v2.TaskSubmit"));
    assert_null(vs_pb_find(""));
    assert_null(vs_pb_find(NULL));
}

/* ---- to_json specifics ------------------------------------------------ */

static void test_defaults_omitted(void **state)
{
    Vs__V1__TaskSubmit ts = VS__V1__TASK_SUBMIT__INIT;
    Vs__V1__TaskLimits limits = VS__V1__TASK_LIMITS__INIT;
    json_t *j;

    (void)state;
    j = vs_pb_to_json(&ts.base);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 0);
    json_decref(j);

    ts.limits = &limits; /* set but empty: present, as on the wire */
    ts.bounty = 5;
    j = vs_pb_to_json(&ts.base);
    assert_int_equal(json_object_size(j), 2);
    assert_int_equal(json_object_size(json_object_get(j, "limits")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "bounty")), 5);
    json_decref(j);
    assert_null(vs_pb_to_json(NULL));
}

/* A oneof member is emitted when set even at its default value, and comes
 * back set. */
static void test_oneof_zero_member_emitted(void **state)
{
    Vs__V1__AgentReply r = VS__V1__AGENT_REPLY__INIT;
    Vs__V1__AgentReply *back;
    size_t len;
    uint8_t *wire;
    json_t *j;
    char err[ERRLEN];

    (void)state;
    r.body_case = VS__V1__AGENT_REPLY__BODY_MEMORY_BYTES;
    r.memory_bytes = 0;
    wire = pack(&r.base, &len);
    j = vs_pb_to_json(&r.base);
    assert_non_null(json_object_get(j, "memory_bytes"));
    assert_int_equal(json_integer_value(json_object_get(j, "memory_bytes")), 0);
    assert_int_equal(vs_pb_from_json(&vs__v1__agent_reply__descriptor, j,
                                     (ProtobufCMessage **)&back, err, sizeof err),
                     0);
    assert_int_equal(back->body_case, VS__V1__AGENT_REPLY__BODY_MEMORY_BYTES);
    assert_packs_to(&back->base, wire, len);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    json_decref(j);
    free(wire);
}

static void test_scalar_encodings(void **state)
{
    uint8_t nonce[3] = {0x00, 0x01, 0x02};
    Vs__V1__Ping ping = VS__V1__PING__INIT;
    Vs__V1__TaskSubmit ts = VS__V1__TASK_SUBMIT__INIT;
    Vs__V1__TaskLimits limits = VS__V1__TASK_LIMITS__INIT;
    Vs__V1__LedgerReply lr = VS__V1__LEDGER_REPLY__INIT;
    json_t *j;

    (void)state;
    ping.nonce.data = nonce;
    ping.nonce.len = sizeof nonce;
    j = vs_pb_to_json(&ping.base);
    assert_string_equal(json_string_value(json_object_get(j, "nonce")), "000102");
    json_decref(j);

    ts.bounty = UINT64_MAX;
    ts.submitted_at_ns = INT64_MAX;
    ts.limits = &limits;
    limits.seccomp_preset = VS__V1__SECCOMP_PRESET__SECCOMP_PRESET_NETWORK;
    j = vs_pb_to_json(&ts.base);
    assert_string_equal(json_string_value(json_object_get(j, "bounty")), "18446744073709551615");
    assert_true(json_is_integer(json_object_get(j, "submitted_at_ns")));
    assert_int_equal(json_integer_value(json_object_get(j, "submitted_at_ns")), INT64_MAX);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "limits"), "seccomp_preset")),
        "SECCOMP_PRESET_NETWORK");
    json_decref(j);

    limits.seccomp_preset = (Vs__V1__SeccompPreset)42; /* a number from a newer peer */
    j = vs_pb_to_json(&limits.base);
    assert_int_equal(json_integer_value(json_object_get(j, "seccomp_preset")), 42);
    json_decref(j);

    lr.balance = INT64_MIN;
    lr.reputation = INFINITY;
    j = vs_pb_to_json(&lr.base);
    assert_int_equal(json_integer_value(json_object_get(j, "balance")), INT64_MIN);
    assert_string_equal(json_string_value(json_object_get(j, "reputation")), "Infinity");
    json_decref(j);
    lr.reputation = -INFINITY;
    j = vs_pb_to_json(&lr.base);
    assert_string_equal(json_string_value(json_object_get(j, "reputation")), "-Infinity");
    json_decref(j);
    lr.reputation = NAN;
    j = vs_pb_to_json(&lr.base);
    assert_string_equal(json_string_value(json_object_get(j, "reputation")), "NaN");
    json_decref(j);
}

/* Strings that are not UTF-8 (protobuf-c does not check on unpack) become
 * U+FFFD per bad byte instead of failing the export. */
static void test_invalid_utf8_replaced(void **state)
{
    Vs__V1__KeyValue kv = VS__V1__KEY_VALUE__INIT;
    json_t *j;

    (void)state;
    kv.key = "a\xff"
             "b\xc3";
    kv.value = "\xed\xa0\x80z"; /* an encoded surrogate */
    j = vs_pb_to_json(&kv.base);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "key")), "a\xef\xbf\xbd"
                                                                      "b\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "value")),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    json_decref(j);
}

/* ---- from_json specifics ---------------------------------------------- */

static void test_hex_ids_accepted(void **state)
{
    static const uint8_t want16[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                       0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    Vs__V1__TaskSubmit *ts;
    Vs__V1__VerifyChallenge *vc;
    Vs__V1__Echo *echo;

    (void)state;
    ts = (Vs__V1__TaskSubmit *)parse_ok(&vs__v1__task_submit__descriptor,
                                        "{\"task_id\":\"00112233445566778899aabbccddeeff\","
                                        " \"parent_task_id\":\"00112233445566778899AABBCCDDEEFF\"}");
    assert_int_equal(ts->task_id.len, 16);
    assert_memory_equal(ts->task_id.data, want16, 16);
    assert_int_equal(ts->parent_task_id.len, 16);
    assert_memory_equal(ts->parent_task_id.data, want16, 16);
    protobuf_c_message_free_unpacked(&ts->base, NULL);

    vc = (Vs__V1__VerifyChallenge *)parse_ok(
        &vs__v1__verify_challenge__descriptor,
        "{\"nonce\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}");
    assert_int_equal(vc->nonce.len, 32);
    assert_memory_equal(vc->nonce.data + 16, want16, 16);
    protobuf_c_message_free_unpacked(&vc->base, NULL);

    /* hex is only for ids and nonces: elsewhere the same text is base64 */
    echo = (Vs__V1__Echo *)parse_ok(&vs__v1__echo__descriptor,
                                    "{\"signature\":\"00112233445566778899aabbccddeeff\"}");
    assert_int_equal(echo->signature.len, 24);
    protobuf_c_message_free_unpacked(&echo->base, NULL);

    /* ids are hex at any length: 24 bytes round-trip as 48 digits */
    ts = (Vs__V1__TaskSubmit *)parse_ok(
        &vs__v1__task_submit__descriptor,
        "{\"task_id\":\"00112233445566778899aabbccddeeff0011223344556677\"}");
    assert_int_equal(ts->task_id.len, 24);
    protobuf_c_message_free_unpacked(&ts->base, NULL);
    expect_einval(&vs__v1__task_submit__descriptor,
                  "{\"task_id\":\"00112233445566778899aabbccddeefg\"}", "task_id: invalid hex");

    /* an odd number of digits is not hex */
    expect_einval(&vs__v1__task_submit__descriptor,
                  "{\"task_id\":\"00112233445566778899aabbccddeef\"}", "task_id");
}

static void test_uint64_string_accepted(void **state)
{
    Vs__V1__TaskSubmit *ts;
    Vs__V1__LedgerReply *lr;

    (void)state;
    ts = (Vs__V1__TaskSubmit *)parse_ok(
        &vs__v1__task_submit__descriptor,
        "{\"bounty\":\"18446744073709551615\", \"submitted_at_ns\":\"0\"}");
    assert_true(ts->bounty == UINT64_MAX);
    protobuf_c_message_free_unpacked(&ts->base, NULL);
    ts = (Vs__V1__TaskSubmit *)parse_ok(&vs__v1__task_submit__descriptor,
                                        "{\"bounty\":9223372036854775807}");
    assert_true(ts->bounty == INT64_MAX);
    protobuf_c_message_free_unpacked(&ts->base, NULL);
    lr = (Vs__V1__LedgerReply *)parse_ok(
        &vs__v1__ledger_reply__descriptor,
        "{\"balance\":\"-9223372036854775808\", \"pending\":\"-0\"}");
    assert_true(lr->balance == INT64_MIN);
    assert_true(lr->pending == 0);
    protobuf_c_message_free_unpacked(&lr->base, NULL);

    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\"18446744073709551616\"}",
                  "bounty: out of range");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\"-1\"}", "bounty: out of range");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":-1}", "bounty: out of range");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\"12x\"}", "bounty");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\" 12\"}", "bounty");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\"\"}", "bounty");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":\"+1\"}", "bounty");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":1.5}", "bounty");
    expect_einval(&vs__v1__ledger_reply__descriptor, "{\"balance\":\"-9223372036854775809\"}",
                  "balance: out of range");
    expect_einval(&vs__v1__ledger_reply__descriptor, "{\"balance\":\"9223372036854775808\"}",
                  "balance: out of range");
}

static void test_int32_range(void **state)
{
    Vs__V1__HealthReply *hr;

    (void)state;
    hr = (Vs__V1__HealthReply *)parse_ok(&vs__v1__health_reply__descriptor, "{\"pid\":2147483647}");
    assert_int_equal(hr->pid, INT32_MAX);
    protobuf_c_message_free_unpacked(&hr->base, NULL);
    hr =
        (Vs__V1__HealthReply *)parse_ok(&vs__v1__health_reply__descriptor, "{\"pid\":-2147483648}");
    assert_int_equal(hr->pid, INT32_MIN);
    protobuf_c_message_free_unpacked(&hr->base, NULL);

    expect_einval(&vs__v1__health_reply__descriptor, "{\"pid\":2147483648}",
                  "pid: out of range for int32");
    expect_einval(&vs__v1__health_reply__descriptor, "{\"pid\":-2147483649}",
                  "pid: out of range for int32");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"limits\":{\"pids\":4294967296}}",
                  "limits.pids: out of range for uint32");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"limits\":{\"pids\":-1}}",
                  "limits.pids: out of range");
}

static void test_unknown_key_rejected(void **state)
{
    ProtobufCMessage *m = NULL;
    char err[ERRLEN];
    json_error_t je;
    json_t *j = json_loads("{\"limits\":{\"pids\":3,\"pidz\":1}}", 0, &je);

    (void)state;
    assert_int_equal(vs_pb_from_json(&vs__v1__task_submit__descriptor, j, &m, err, sizeof err),
                     -EINVAL);
    assert_string_equal(err, "limits.pidz: unknown field");
    assert_null(m);
    json_decref(j);

    expect_einval(&vs__v1__task_submit__descriptor, "{\"task_idx\":\"\"}",
                  "task_idx: unknown field");
    j = json_object();
    assert_int_equal(json_object_setn_new(j, "task_id\0x", 9, json_string("")), 0);
    expect_einval_json(&vs__v1__task_submit__descriptor, j, "task_id: unknown field");
    expect_einval(&vs__v1__stats_reply__descriptor,
                  "{\"counters\":[{\"name\":\"a\"},{\"nam\":\"b\"}]}",
                  "counters[1].nam: unknown field");
    expect_einval(&vs__v1__task_submit__descriptor, "[]", "vs.v1.TaskSubmit: expected an object");
    expect_einval(&vs__v1__task_submit__descriptor, "\"x\"", "expected an object");
}

static void test_wrong_type_rejected(void **state)
{
    (void)state;
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester\":5}",
                  "requester: expected a string");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester\":\"a\\u0000b\"}",
                  "requester: string holds a NUL");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"bounty\":true}", "bounty: expected uint64");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"limits\":\"x\"}",
                  "limits: expected an object");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"limits\":[]}",
                  "limits: expected an object");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"task_id\":5}",
                  "task_id: expected a hex string");
    expect_einval(&vs__v1__stats_reply__descriptor, "{\"counters\":{}}",
                  "counters: expected an array");
    expect_einval(&vs__v1__stats_reply__descriptor, "{\"counters\":[{},null]}",
                  "counters[1]: expected an object");
    expect_einval(&vs__v1__verify_result__descriptor, "{\"verified\":\"yes\"}",
                  "verified: expected true or false");
    expect_einval(&vs__v1__verify_result__descriptor, "{\"verified\":1}", "verified");
    expect_einval(&vs__v1__ledger_reply__descriptor, "{\"reputation\":\"1.5\"}",
                  "reputation: expected a number");
    expect_einval(&vs__v1__ledger_reply__descriptor, "{\"reputation\":{}}", "reputation");
    expect_einval(&vs__v1__task_limits__descriptor, "{\"seccomp_preset\":true}", "seccomp_preset");
    expect_einval(&vs__v1__agent_command__descriptor,
                  "{\"request_data\":{\"headers\":[{\"key\":1}]}}",
                  "request_data.headers[0].key: expected a string");
    expect_einval(&vs__v1__settlement__descriptor, "{\"transfer_ids\":[\"aaaa\",7]}",
                  "transfer_ids[1]");
}

static void test_bad_base64_rejected(void **state)
{
    (void)state;
    expect_einval(&vs__v1__task_submit__descriptor, "{\"task_id\":\"!!!!\"}",
                  "task_id: invalid hex");
    /* hex fields are never read as base64: no guessing between the two */
    expect_einval(&vs__v1__task_submit__descriptor, "{\"task_id\":\"ABEiM0RVZneImaq7zN3u/w==\"}",
                  "task_id: invalid hex");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"task_id\":\"abc\"}",
                  "task_id: invalid hex");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester_box_key\":\"AAA\"}",
                  "requester_box_key");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester_box_key\":\"QR==\"}",
                  "requester_box_key");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester_box_key\":\"AA-_\"}",
                  "requester_box_key");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester_box_key\":\"AAAA AAAA\"}",
                  "requester_box_key");
    expect_einval(&vs__v1__task_submit__descriptor, "{\"requester_box_key\":\"AAAA\\u0000AAA\"}",
                  "requester_box_key");
}

static void test_enum_by_name_or_number(void **state)
{
    Vs__V1__TaskLimits *tl;

    (void)state;
    tl = (Vs__V1__TaskLimits *)parse_ok(&vs__v1__task_limits__descriptor,
                                        "{\"seccomp_preset\":\"SECCOMP_PRESET_COMPUTE\"}");
    assert_int_equal(tl->seccomp_preset, VS__V1__SECCOMP_PRESET__SECCOMP_PRESET_COMPUTE);
    protobuf_c_message_free_unpacked(&tl->base, NULL);
    tl = (Vs__V1__TaskLimits *)parse_ok(&vs__v1__task_limits__descriptor, "{\"seccomp_preset\":3}");
    assert_int_equal(tl->seccomp_preset, VS__V1__SECCOMP_PRESET__SECCOMP_PRESET_NETWORK);
    protobuf_c_message_free_unpacked(&tl->base, NULL);
    tl =
        (Vs__V1__TaskLimits *)parse_ok(&vs__v1__task_limits__descriptor, "{\"seccomp_preset\":42}");
    assert_int_equal(tl->seccomp_preset, 42);
    protobuf_c_message_free_unpacked(&tl->base, NULL);

    expect_einval(&vs__v1__task_limits__descriptor, "{\"seccomp_preset\":\"SECCOMP_PRESET_BOGUS\"}",
                  "seccomp_preset: unknown vs.v1.SeccompPreset value \"SECCOMP_PRESET_BOGUS\"");
    expect_einval(&vs__v1__task_limits__descriptor,
                  "{\"seccomp_preset\":\"seccomp_preset_network\"}", "seccomp_preset");
    expect_einval(&vs__v1__task_limits__descriptor,
                  "{\"seccomp_preset\":\"SECCOMP_PRESET_NETWORK\\u0000x\"}", "seccomp_preset");
    expect_einval(&vs__v1__task_limits__descriptor, "{\"seccomp_preset\":2147483648}",
                  "seccomp_preset: out of range");
}

static void test_two_oneof_members_rejected(void **state)
{
    Vs__V1__AgentCommand *ac;

    (void)state;
    expect_einval(&vs__v1__agent_command__descriptor, "{\"ping\":{},\"echo\":{}}", "echo");
    expect_einval(&vs__v1__agent_command__descriptor, "{\"ping\":{},\"echo\":{}}",
                  "ping already is");
    expect_einval(&vs__v1__agent_reply__descriptor, "{\"memory_bytes\":0,\"transfer_id\":\"\"}",
                  "transfer_id: only one member of a oneof");
    /* a failure inside the second member must not leak the first */
    expect_einval(&vs__v1__agent_command__descriptor,
                  "{\"heartbeat\":{\"progress\":\"x\"},\"web_search\":{\"q\":1}}", "web_search");
    expect_einval(&vs__v1__agent_command__descriptor, "{\"web_search\":{\"query\":\"x\",\"q\":1}}",
                  "web_search.q: unknown field");

    /* null means absent, also for oneof members */
    ac = (Vs__V1__AgentCommand *)parse_ok(
        &vs__v1__agent_command__descriptor,
        "{\"ping\":null,\"echo\":{\"nonce\":\"000102\"},\"agent\":null}");
    assert_int_equal(ac->body_case, VS__V1__AGENT_COMMAND__BODY_ECHO);
    assert_int_equal(ac->echo->nonce.len, 3);
    assert_string_equal(ac->agent, "");
    protobuf_c_message_free_unpacked(&ac->base, NULL);
}

/* A chain of n objects {"<key>": {"<key>": ...}}. */
static json_t *chain(const char *key, unsigned n)
{
    json_t *j = json_object();

    for (unsigned i = 1; i < n; i++) {
        json_t *outer = json_object();

        assert_int_equal(json_object_set_new(outer, key, j), 0);
        j = outer;
    }
    return j;
}

static void test_depth_bomb_rejected(void **state)
{
    ProtobufCMessage *m = NULL;
    json_t *j = chain("child", 32);
    char err[ERRLEN];
    unsigned depth = 0;

    (void)state;
    assert_int_equal(vs_pb_from_json(&kitchen_descriptor, j, &m, err, sizeof err), 0);
    for (const Kitchen *k = (const Kitchen *)m; k; k = k->child) {
        depth++;
    }
    assert_int_equal(depth, 32);
    json_decref(j);
    protobuf_c_message_free_unpacked(m, NULL);

    expect_einval_json(&kitchen_descriptor, chain("child", 33), "messages nested deeper than 32");
    expect_einval_json(&kitchen_descriptor, chain("child", 33), "child.child.child");
    expect_einval_json(&kitchen_descriptor, chain("child", 5000), "nested deeper");
    /* in a schema without recursion the bomb hits an unknown field first */
    expect_einval_json(&vs__v1__task_gated__descriptor, chain("task", 5000),
                       "task.task: unknown field");
}

/* The parts of the walker the vs.v1 schema does not reach. */
static void test_kitchen_specifics(void **state)
{
    Kitchen *k;
    json_t *j;

    (void)state;
    for (unsigned i = 1; i < kitchen_descriptor.n_fields; i++) {
        assert_true(strcmp(kitchen_fields[kitchen_by_name[i - 1]].name,
                           kitchen_fields[kitchen_by_name[i]].name) < 0);
    }
    k = (Kitchen *)parse_ok(&kitchen_descriptor,
                            "{\"fl\":\"NaN\",\"db\":\"-Infinity\",\"opt\":\"-5\",\"req\":\"r\","
                            "\"reals\":[1,\"Infinity\",0.5],\"pick_str\":\"\"}");
    assert_true(isnan(k->fl));
    assert_true(isinf(k->db) && k->db < 0);
    assert_true(k->has_opt);
    assert_true(k->opt == -5);
    assert_false(k->has_opt_bytes);
    assert_int_equal(k->n_reals, 3);
    assert_true(isinf(k->reals[1]));
    assert_int_equal(k->pick_case, 25);
    j = vs_pb_to_json(&k->base);
    assert_string_equal(json_string_value(json_object_get(j, "pick_str")),
                        ""); /* a set oneof member */
    assert_string_equal(json_string_value(json_object_get(j, "fl")), "NaN");
    assert_null(json_object_get(j, "opt_bytes"));
    json_decref(j);
    protobuf_c_message_free_unpacked(&k->base, NULL);

    /* an optional field with has_ set is present at zero; required always */
    k = (Kitchen *)parse_ok(&kitchen_descriptor, "{\"opt\":0,\"opt_bytes\":\"\"}");
    j = vs_pb_to_json(&k->base);
    assert_int_equal(json_integer_value(json_object_get(j, "opt")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "opt_bytes")), "");
    assert_string_equal(json_string_value(json_object_get(j, "req")), "");
    assert_int_equal(json_object_size(j), 3);
    json_decref(j);
    protobuf_c_message_free_unpacked(&k->base, NULL);

    expect_einval(&kitchen_descriptor, "{\"fl\":1e39}", "fl: out of range");
    expect_einval(&kitchen_descriptor, "{\"reals\":[1,-1e39]}", "reals[1]: out of range");
    expect_einval(&kitchen_descriptor, "{\"packed\":[1,2147483648]}",
                  "packed[1]: out of range for sint32");
    expect_einval(&kitchen_descriptor, "{\"sf64\":\"x\"}",
                  "sf64: expected a decimal sfixed64 string");
    expect_einval(&kitchen_descriptor, "{\"pick_int\":1,\"pick_str\":\"a\"}", "pick_str");
    expect_einval(&kitchen_descriptor, "{\"names\":[\"a\",\"b\",3]}", "names[2]");
    expect_einval(&kitchen_descriptor, "{\"children\":[{},{\"children\":[{\"zz\":1}]}]}",
                  "children[1].children[0].zz: unknown field");
}

static void test_bad_arguments(void **state)
{
    ProtobufCMessage *m = (ProtobufCMessage *)&m;
    json_t *j = json_object();
    char err[ERRLEN];

    (void)state;
    assert_int_equal(vs_pb_from_json(NULL, j, &m, err, sizeof err), -EINVAL);
    assert_null(m);
    assert_int_equal(vs_pb_from_json(&vs__v1__ping__descriptor, NULL, &m, err, sizeof err),
                     -EINVAL);
    assert_int_equal(vs_pb_from_json(&vs__v1__ping__descriptor, j, NULL, err, sizeof err), -EINVAL);
    assert_true(err[0] != '\0');
    json_decref(j);

    /* no error buffer at all, and a tiny one */
    j = json_pack("{s:i}", "bogus", 1);
    assert_int_equal(vs_pb_from_json(&vs__v1__ping__descriptor, j, &m, NULL, 0), -EINVAL);
    assert_int_equal(vs_pb_from_json(&vs__v1__ping__descriptor, j, &m, err, 4), -EINVAL);
    assert_string_equal(err, "bog");
    json_decref(j);
}

/* ---- hostile input ---------------------------------------------------- */

/* Parse root as d: must either succeed or fail with -EINVAL and a message;
 * ASan/LSan catch any crash or leak on the way. */
static void parse_any(const ProtobufCMessageDescriptor *d, const json_t *root, unsigned *runs)
{
    ProtobufCMessage *m = NULL;
    char err[ERRLEN];
    int rc = vs_pb_from_json(d, root, &m, err, sizeof err);

    if (rc == 0) {
        protobuf_c_message_free_unpacked(m, NULL);
    } else {
        assert_int_equal(rc, -EINVAL);
        assert_null(m);
        assert_true(err[0] != '\0');
    }
    (*runs)++;
}

/* Replace each value under node (object members, array elements, at any
 * depth) in turn by each hostile value, parsing the whole document each
 * time; also add an extra key to every object. */
static void mutate_walk(const ProtobufCMessageDescriptor *d, json_t *root, json_t *node,
                        json_t *hostile, unsigned *runs)
{
    if (json_is_object(node)) {
        for (void *it = json_object_iter(node); it; it = json_object_iter_next(node, it)) {
            json_t *orig = json_incref(json_object_iter_value(it));

            for (size_t h = 0; h < json_array_size(hostile); h++) {
                assert_int_equal(json_object_iter_set(node, it, json_array_get(hostile, h)), 0);
                parse_any(d, root, runs);
            }
            assert_int_equal(json_object_iter_set_new(node, it, orig), 0);
            mutate_walk(d, root, orig, hostile, runs);
        }
        assert_int_equal(json_object_set_new(node, "zz_extra", json_integer(1)), 0);
        parse_any(d, root, runs);
        assert_int_equal(json_object_del(node, "zz_extra"), 0);
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *orig = json_incref(json_array_get(node, i));

            for (size_t h = 0; h < json_array_size(hostile); h++) {
                assert_int_equal(json_array_set(node, i, json_array_get(hostile, h)), 0);
                parse_any(d, root, runs);
            }
            assert_int_equal(json_array_set_new(node, i, orig), 0);
            mutate_walk(d, root, orig, hostile, runs);
        }
    }
}

static void test_hostile_json(void **state)
{
    json_error_t je;
    json_t *hostile =
        json_loads("[{}, [], [{}], [null], [[]], {\"zz\":1}, \"\", \"x\\u00e9\", \"AAAA\", \"-0\","
                   " \"18446744073709551616\", \"NaN\", -1, 9223372036854775807, 1e300, -0.5,"
                   " true, false, null, \"00112233445566778899aabbccddeeff\"]",
                   0, &je);
    size_t n;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&n);
    unsigned runs = 0;

    (void)state;
    assert_non_null(hostile);
    for (size_t i = 0; i <= n; i++) {
        const ProtobufCMessageDescriptor *d = i < n ? all[i] : &kitchen_descriptor;
        /* the Kitchen nests three sub-messages per level: keep it shallow */
        ProtobufCMessage *m = populate(d, i < n ? 0 : FILL_DEPTH - 2, 1);
        json_t *j = vs_pb_to_json(m);

        assert_non_null(j);
        mutate_walk(d, j, j, hostile, &runs);
        json_decref(j);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    json_decref(hostile);
    assert_true(runs > 1000);
}

/* Truncated and garbage buffers do not unpack. */
static void test_garbage_wire_rejected(void **state)
{
    static const uint8_t overlong_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                              0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t length_past_end[] = {0x12, 0x7f, 'a', 'b'};
    static const uint8_t huge_length[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'};
    static const uint8_t group_wire_type[] = {0x0b, 0x0c};
    static const uint8_t tag_only[] = {0x12};
    static const uint8_t overlong_tag[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00};
    static const struct {
        const uint8_t *buf;
        size_t len;
    } garbage[] = {
        {overlong_varint, sizeof overlong_varint},
        {length_past_end, sizeof length_past_end},
        {huge_length, sizeof huge_length},
        {group_wire_type, sizeof group_wire_type},
        {tag_only, sizeof tag_only},
        {overlong_tag, sizeof overlong_tag},
    };
    const ProtobufCMessageDescriptor *types[] = {
        &vs__v1__task_submit__descriptor,    &vs__v1__agent_command__descriptor,
        &vs__v1__ledger_command__descriptor, &vs__v1__audit_event__descriptor,
        &vs__v1__stats_reply__descriptor,    &vs__v1__signed_envelope__descriptor,
    };

    (void)state;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        ProtobufCMessage *m = populate(types[t], 0, 0);
        size_t len;
        uint8_t *wire = pack(m, &len);

        assert_true(len > 1);
        assert_null(protobuf_c_message_unpack(types[t], NULL, len - 1, wire));
        for (size_t g = 0; g < sizeof garbage / sizeof garbage[0]; g++) {
            assert_null(protobuf_c_message_unpack(types[t], NULL, garbage[g].len, garbage[g].buf));
        }
        protobuf_c_message_free_unpacked(m, NULL);
        free(wire);
    }
}

/* Whatever a corrupted buffer unpacks to converts to JSON and back. */
static void test_corrupted_wire_to_json(void **state)
{
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    size_t n;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&n);
    unsigned decoded = 0;

    (void)state;
    for (size_t i = 0; i < n; i++) {
        ProtobufCMessage *m = populate(all[i], 0, 0);
        size_t len;
        uint8_t *wire = pack(m, &len);

        for (size_t pos = 0; pos < len; pos++) {
            for (size_t f = 0; f < sizeof flips; f++) {
                ProtobufCMessage *u, *back = NULL;
                json_t *j, *again;
                char err[ERRLEN];

                wire[pos] ^= flips[f];
                u = protobuf_c_message_unpack(all[i], NULL, len, wire);
                wire[pos] ^= flips[f];
                if (!u) {
                    continue;
                }
                decoded++;
                j = vs_pb_to_json(u);
                assert_non_null(j);
                assert_int_equal(vs_pb_from_json(all[i], j, &back, err, sizeof err), 0);
                again = vs_pb_to_json(back);
                assert_true(json_equal(j, again));
                json_decref(again);
                json_decref(j);
                protobuf_c_message_free_unpacked(back, NULL);
                protobuf_c_message_free_unpacked(u, NULL);
            }
        }
        protobuf_c_message_free_unpacked(m, NULL);
        free(wire);
    }
    assert_true(decoded > 0);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_type_listed),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_defaults_omitted),
        cmocka_unit_test(test_oneof_zero_member_emitted),
        cmocka_unit_test(test_scalar_encodings),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_hex_ids_accepted),
        cmocka_unit_test(test_uint64_string_accepted),
        cmocka_unit_test(test_int32_range),
        cmocka_unit_test(test_unknown_key_rejected),
        cmocka_unit_test(test_wrong_type_rejected),
        cmocka_unit_test(test_bad_base64_rejected),
        cmocka_unit_test(test_enum_by_name_or_number),
        cmocka_unit_test(test_two_oneof_members_rejected),
        cmocka_unit_test(test_depth_bomb_rejected),
        cmocka_unit_test(test_kitchen_specifics),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_hostile_json),
        cmocka_unit_test(test_garbage_wire_rejected),
        cmocka_unit_test(test_corrupted_wire_to_json),
    };
    size_t n;
    const ProtobufCMessageDescriptor *const *all = vs_pb_all(&n);
    struct CMUnitTest *roundtrips = calloc(n + 1, sizeof *roundtrips);
    char(*names)[96] = calloc(n + 1, sizeof *names);
    int failed;

    if (!roundtrips || !names) {
        return 1;
    }
    /* one round-trip test per message type, plus the Kitchen */
    for (size_t i = 0; i <= n; i++) {
        const ProtobufCMessageDescriptor *d = i < n ? all[i] : &kitchen_descriptor;

        snprintf(names[i], sizeof names[i], "test_roundtrip(%s)", d->name);
        roundtrips[i] = (struct CMUnitTest){names[i], test_roundtrip, NULL, NULL, (void *)d};
    }
    failed = _cmocka_run_group_tests("roundtrip", roundtrips, n + 1, NULL, NULL);
    failed += cmocka_run_group_tests(tests, NULL, NULL);
    free(names);
    free(roundtrips);
    return failed;
}
