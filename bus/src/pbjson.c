/*
 * pbjson.c - JSON <-> protobuf-c messages by walking the descriptors (the
 * contract and the mapping are in vs/pbjson.h). vsctl pub/sub and the
 * audit export use it; nothing on the hot path does.
 *
 * Why this shape:
 *  - protobuf-c has no reflection API beyond its descriptors, but those carry
 *    every field's offset, label, type and quantifier, so one generic walker
 *    serves every message type and a new .proto needs only a line in
 *    all_types[].
 *  - to_json emits a field exactly when protobuf_c_message_pack puts it on
 *    the wire (field_present mirrors protobuf-c's pack rules), so
 *    message -> JSON -> message reproduces the packed bytes; the unit tests
 *    check that for every type.
 *  - from_json allocates with malloc, in the layout protobuf-c's own unpack
 *    produces, and keeps the message freeable by
 *    protobuf_c_message_free_unpacked(m, NULL) after every step: a
 *    sub-message or array is linked into its parent before it is filled, a
 *    repeated count grows with each element (arrays are zeroed, and
 *    free_unpacked accepts NULL elements), a oneof case is set before its
 *    member. An error therefore only frees the root; there is no second,
 *    hand-written cleanup path to get wrong on hostile input.
 *  - Errors name the JSON path ("limits.pidz: unknown field",
 *    "headers[1].key: expected string"), built in a fixed buffer as the
 *    walk descends.
 *  - Nesting is capped at VS_PB_MAX_DEPTH messages so a recursive schema
 *    cannot be turned into a stack overflow by deep JSON.
 */
#include "vs/pbjson.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/v1/agent.pb-c.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/common.pb-c.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

#define VS_PB_MAX_DEPTH 32 /* nested messages, the root counting as 1 */
#define VS_PB_PATH_MAX 256 /* longer error paths are truncated */

#define MEMBER(m, off) ((void *)((char *)(m) + (off)))
#define CMEMBER(m, off) ((const void *)((const char *)(m) + (off)))

static const ProtobufCMessageDescriptor *const all_types[] = {
    /* common.proto */
    &vs__v1__status__descriptor,
    &vs__v1__key_value__descriptor,
    &vs__v1__blob_manifest__descriptor,
    &vs__v1__sealed_payload__descriptor,
    &vs__v1__signed_envelope__descriptor,
    /* agent.proto */
    &vs__v1__heartbeat__descriptor,
    &vs__v1__signal_complete__descriptor,
    &vs__v1__request_memory__descriptor,
    &vs__v1__web_search__descriptor,
    &vs__v1__request_data__descriptor,
    &vs__v1__escrow_release__descriptor,
    &vs__v1__state_sync__descriptor,
    &vs__v1__ping__descriptor,
    &vs__v1__echo__descriptor,
    &vs__v1__agent_command__descriptor,
    &vs__v1__search_result__descriptor,
    &vs__v1__agent_reply__descriptor,
    &vs__v1__egress_result__descriptor,
    /* audit.proto */
    &vs__v1__audit_event__descriptor,
    &vs__v1__checkpoint__descriptor,
    &vs__v1__audit_proof_request__descriptor,
    &vs__v1__audit_proof_reply__descriptor,
    &vs__v1__audit_query_request__descriptor,
    &vs__v1__audit_record__descriptor,
    &vs__v1__audit_query_reply__descriptor,
    /* ledger.proto */
    &vs__v1__ledger_command__descriptor,
    &vs__v1__ledger_reply__descriptor,
    &vs__v1__ledger_entry__descriptor,
    /* sys.proto */
    &vs__v1__sys_request__descriptor,
    &vs__v1__health_reply__descriptor,
    &vs__v1__counter__descriptor,
    &vs__v1__stats_reply__descriptor,
    /* task.proto */
    &vs__v1__image_ref__descriptor,
    &vs__v1__task_limits__descriptor,
    &vs__v1__task_submit__descriptor,
    &vs__v1__task_gated__descriptor,
    &vs__v1__task_admitted__descriptor,
    &vs__v1__task_rejected__descriptor,
    &vs__v1__verify_challenge__descriptor,
    &vs__v1__verify_echo__descriptor,
    &vs__v1__verify_result__descriptor,
    &vs__v1__attestation__descriptor,
    &vs__v1__task_output__descriptor,
    &vs__v1__finding__descriptor,
    &vs__v1__scan_verdict__descriptor,
    &vs__v1__settlement__descriptor,
};

VS_API const ProtobufCMessageDescriptor *const *vs_pb_all(size_t *n)
{
    if (n) {
        *n = sizeof all_types / sizeof all_types[0];
    }
    return all_types;
}

VS_API const ProtobufCMessageDescriptor *vs_pb_find(const char *name)
{
    if (!name) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
        if (strcmp(all_types[i]->name, name) == 0 || strcmp(all_types[i]->short_name, name) == 0) {
            return all_types[i];
        }
    }
    return NULL;
}

/* ---- shared ---------------------------------------------------------- */

/* Bytes one element of a repeated field of type t occupies in its array
 * (the same table as protobuf-c's sizeof_elt_in_repeated_array). */
static size_t elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
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
    }
    return 0; /* not a ProtobufCType: a corrupt descriptor */
}

/* Strings and sub-messages are pointers whose presence protobuf-c judges
 * by the pointer rather than by a has_ flag. */
static bool is_pointer_type(ProtobufCType t)
{
    return t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_MESSAGE;
}

/* ---- message -> JSON ------------------------------------------------- */

/* Whether the value at v is the proto3 default (protobuf-c's
 * field_is_zeroish: unlabeled fields at their default are not packed). */
static bool is_zero(ProtobufCType t, const void *v)
{
    switch (t) {
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)v == 0;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)v == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)v == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)v;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(const void *const *)v == NULL;
    }
    return true; /* not a ProtobufCType: a corrupt descriptor */
}

/* Whether field f of m is on the wire, by the rules of protobuf-c's pack:
 * a oneof member when the case names it (strings and messages also need a
 * pointer other than NULL and the default), an optional field by its has_
 * flag (strings and messages: same pointer rule), a repeated field when it
 * has elements, an unlabeled (proto3) field when it is not zero, and a
 * required field always. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *quantifier = CMEMBER(m, f->quantifier_offset);
    const void *p;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        return *(const size_t *)quantifier > 0;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)quantifier != f->id) {
            return false;
        }
    } else if (f->label == PROTOBUF_C_LABEL_NONE) {
        return !is_zero(f->type, CMEMBER(m, f->offset));
    } else if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
        return true;
    } else if (!is_pointer_type(f->type)) { /* optional scalar or bytes */
        return *(const protobuf_c_boolean *)quantifier != 0;
    }
    /* a selected oneof member, or an optional string or message */
    if (!is_pointer_type(f->type)) {
        return true;
    }
    p = *(const void *const *)CMEMBER(m, f->offset);
    return p != NULL && p != f->default_value;
}

/* Length of the well-formed UTF-8 sequence at s (n > 0 bytes available),
 * or 0 when it is ill-formed (overlong, surrogate, above U+10FFFF,
 * truncated). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80) {
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return len;
}

/* A JSON string for s (NULL reads as ""). protobuf-c does not validate
 * UTF-8 on unpack and JSON cannot carry anything else, so each byte of an
 * ill-formed sequence becomes U+FFFD: the export stays readable and the
 * damage visible. NULL on allocation failure. */
static json_t *string_to_json(const char *s)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)u);
    size_t i = 0;
    size_t seq;
    size_t out_len;
    char *fixed;
    json_t *j;

    while (i < n && (seq = utf8_seq_len(u + i, n - i)) != 0) {
        i += seq;
    }
    if (i == n) {
        return json_stringn((const char *)u, n);
    }
    fixed = malloc(3 * n + 1); /* every byte may become a 3-byte U+FFFD */
    if (!fixed) {
        return NULL;
    }
    memcpy(fixed, u, i);
    out_len = i;
    while (i < n) {
        seq = utf8_seq_len(u + i, n - i);
        if (seq == 0) {
            memcpy(fixed + out_len, "\xef\xbf\xbd", 3);
            out_len += 3;
            i++;
        } else {
            memcpy(fixed + out_len, u + i, seq);
            out_len += seq;
            i += seq;
        }
    }
    j = json_stringn(fixed, out_len);
    free(fixed);
    return j;
}

/* Bytes fields that carry ids, nonces or lists of ids are hex in JSON
 * (the form ids have in subjects and logs), in both directions and at any
 * length: a field is either hex or base64, never a guess between them. */
static bool takes_hex(const char *name)
{
    size_t n = strlen(name);

    return strcmp(name, "nonce") == 0 || (n >= 3 && strcmp(name + n - 3, "_id") == 0) ||
           (n >= 4 && strcmp(name + n - 4, "_ids") == 0);
}

/* Lowercase hex of b as a JSON string; NULL on allocation failure. */
static json_t *hex_to_json(const ProtobufCBinaryData *b)
{
    char *hex = malloc(b->len * 2 + 1);
    json_t *j;

    if (!hex) {
        return NULL;
    }
    sodium_bin2hex(hex, b->len * 2 + 1, b->data, b->len);
    j = json_string(hex);
    free(hex);
    return j;
}

/* Standard padded base64 of b as a JSON string; NULL on allocation failure. */
static json_t *bytes_to_json(const ProtobufCBinaryData *b)
{
    size_t cap = sodium_base64_ENCODED_LEN(b->len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(cap);
    json_t *j;

    if (!b64) {
        return NULL;
    }
    sodium_bin2base64(b64, cap, b->data, b->len, sodium_base64_VARIANT_ORIGINAL);
    j = json_string(b64);
    free(b64);
    return j;
}

/* NaN and the infinities have no JSON number: they travel as the proto3
 * JSON strings "NaN", "Infinity", "-Infinity". */
static json_t *real_to_json(double x)
{
    if (isnan(x)) {
        return json_string("NaN");
    }
    if (isinf(x)) {
        return json_string(x > 0 ? "Infinity" : "-Infinity");
    }
    return json_real(x);
}

static json_t *message_to_json(const ProtobufCMessage *m);

/* The JSON for one value of field f stored at v; NULL on allocation
 * failure. uint64 above INT64_MAX becomes a decimal string (jansson's
 * integers are signed 64-bit); unknown enum numbers stay numbers. */
static json_t *value_to_json(const ProtobufCFieldDescriptor *f, const void *v)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)v);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)v);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)v);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t u = *(const uint64_t *)v;
        char dec[24];

        if (u <= INT64_MAX) {
            return json_integer((json_int_t)u);
        }
        snprintf(dec, sizeof dec, "%" PRIu64, u);
        return json_string(dec);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return real_to_json(*(const float *)v);
    case PROTOBUF_C_TYPE_DOUBLE:
        return real_to_json(*(const double *)v);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)v);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)v);
        return ev ? json_string(ev->name) : json_integer(*(const int *)v);
    }
    case PROTOBUF_C_TYPE_STRING:
        return string_to_json(*(const char *const *)v);
    case PROTOBUF_C_TYPE_BYTES:
        return takes_hex(f->name) ? hex_to_json(v) : bytes_to_json(v);
    case PROTOBUF_C_TYPE_MESSAGE:
        return message_to_json(*(const ProtobufCMessage *const *)v);
    }
    return NULL; /* not a ProtobufCType: a corrupt descriptor */
}

/* The JSON array of repeated field f of m; NULL on allocation failure. */
static json_t *repeated_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
    const char *arr = *(const char *const *)CMEMBER(m, f->offset);
    size_t elt = elt_size(f->type);
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, value_to_json(f, arr + i * elt)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* The JSON object of m, present fields only (a NULL m, possible only in
 * a required field, reads as the empty message); NULL on allocation
 * failure. */
static json_t *message_to_json(const ProtobufCMessage *m)
{
    json_t *o = json_object();

    for (unsigned i = 0; o && m && i < m->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
        json_t *v;

        if (!field_present(m, f)) {
            continue;
        }
        v = f->label == PROTOBUF_C_LABEL_REPEATED ? repeated_to_json(m, f)
                                                  : value_to_json(f, CMEMBER(m, f->offset));
        if (json_object_set_new(o, f->name, v) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

VS_API json_t *vs_pb_to_json(const ProtobufCMessage *m)
{
    return m ? message_to_json(m) : NULL;
}

/* ---- JSON -> message ------------------------------------------------- */

struct pb_ctx {
    char *err;
    size_t errlen;
    const char *root;          /* type name, names the error at the root */
    char path[VS_PB_PATH_MAX]; /* "limits.pidz", "headers[1].key" */
};

/* Names of the types read_integer handles, for its error messages. */
static const char *const type_names[] = {
    [PROTOBUF_C_TYPE_INT32] = "int32",       [PROTOBUF_C_TYPE_SINT32] = "sint32",
    [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
    [PROTOBUF_C_TYPE_SINT64] = "sint64",     [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
    [PROTOBUF_C_TYPE_UINT32] = "uint32",     [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
    [PROTOBUF_C_TYPE_UINT64] = "uint64",     [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
    [PROTOBUF_C_TYPE_ENUM] = "enum",
};

/* Write "<path>: <message>" into the caller's err buffer; returns
 * -EINVAL so that callers can `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static int fail(struct pb_ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!c->err || c->errlen == 0) {
        return -EINVAL;
    }
    n = snprintf(c->err, c->errlen, "%s: ", c->path[0] ? c->path : c->root);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Allocation failure: -ENOMEM, with the path in err like any error. */
static int fail_nomem(struct pb_ctx *c)
{
    fail(c, "out of memory");
    return -ENOMEM;
}

/* Append ".name" (just "name" at the root) to the error path; returns the
 * previous length for path_restore. Overlong paths are truncated. */
static size_t path_push_field(struct pb_ctx *c, const char *name)
{
    size_t len = strlen(c->path);

    snprintf(c->path + len, sizeof c->path - len, "%s%s", len ? "." : "", name);
    return len;
}

/* Append "[i]" to the error path; returns the previous length. */
static size_t path_push_index(struct pb_ctx *c, size_t i)
{
    size_t len = strlen(c->path);

    snprintf(c->path + len, sizeof c->path - len, "[%zu]", i);
    return len;
}

static void path_restore(struct pb_ctx *c, size_t len)
{
    c->path[len] = '\0';
}

/* The text of a JSON string, or NULL when v is not a string or holds a NUL
 * (a C string would silently cut it there). */
static const char *json_cstr(const json_t *v)
{
    const char *s = json_string_value(v);

    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* Parse an optional '-' and at least one decimal digit, nothing else, into
 * sign and magnitude. 0, -EINVAL on bad syntax, -ERANGE above UINT64_MAX. */
static int parse_decimal(const char *s, bool *neg, uint64_t *mag)
{
    uint64_t v = 0;

    *neg = *s == '-';
    s += *neg;
    if (*s == '\0') {
        return -EINVAL;
    }
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (d > 9) {
            return -EINVAL;
        }
        if (v > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    *mag = v;
    return 0;
}

/* Read an integer of field f (JSON integer or decimal string) and check it
 * lies in [-max_neg, max_pos]. On success *neg and *mag hold it, with -0
 * normalized to 0. */
static int read_integer(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                        uint64_t max_neg, uint64_t max_pos, bool *neg, uint64_t *mag)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);

        *neg = i < 0;
        *mag = *neg ? 0 - (uint64_t)i : (uint64_t)i;
    } else if (json_is_string(v)) {
        const char *s = json_cstr(v);
        int rc = s ? parse_decimal(s, neg, mag) : -EINVAL;

        if (rc == -EINVAL) {
            return fail(c, "expected a decimal %s string", type_names[f->type]);
        }
        if (rc == -ERANGE) {
            return fail(c, "out of range for %s", type_names[f->type]);
        }
    } else {
        return fail(c, "expected %s", type_names[f->type]);
    }
    *neg = *neg && *mag != 0;
    if (*neg ? *mag > max_neg : *mag > max_pos) {
        return fail(c, "out of range for %s", type_names[f->type]);
    }
    return 0;
}

/* A signed integer of f within [min, max] (min < 0 < max). */
static int read_signed(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                       int64_t min, int64_t max, int64_t *out)
{
    bool neg;
    uint64_t mag;
    int rc = read_integer(c, f, v, (uint64_t)(-(min + 1)) + 1, (uint64_t)max, &neg, &mag);

    if (rc == 0) {
        *out = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
    }
    return rc;
}

/* An unsigned integer of f within [0, max]. */
static int read_unsigned(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                         uint64_t max, uint64_t *out)
{
    bool neg;

    return read_integer(c, f, v, 0, max, &neg, out);
}

/* A float or double: any JSON number, or "NaN", "Infinity", "-Infinity".
 * Finite values beyond max (FLT_MAX for float) are rejected rather than
 * silently becoming infinite. */
static int read_real(struct pb_ctx *c, const json_t *v, double max, double *out)
{
    const char *s = json_cstr(v);

    if (json_is_number(v)) {
        *out = json_number_value(v);
        if (fabs(*out) > max) {
            return fail(c, "out of range");
        }
    } else if (s && strcmp(s, "NaN") == 0) {
        *out = NAN;
    } else if (s && strcmp(s, "Infinity") == 0) {
        *out = INFINITY;
    } else if (s && strcmp(s, "-Infinity") == 0) {
        *out = -INFINITY;
    } else {
        return fail(c, "expected a number");
    }
    return 0;
}

/* Enum by value name, or by number (protobuf enums are open, so any int32
 * number is kept as is). */
static int read_enum(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v, int *out)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    int64_t n;
    int rc;

    if (json_is_string(v)) {
        const char *s = json_cstr(v);
        const ProtobufCEnumValue *ev =
            s ? protobuf_c_enum_descriptor_get_value_by_name(ed, s) : NULL;

        if (!ev) {
            return fail(c, "unknown %s value \"%.64s\"", ed->name, json_string_value(v));
        }
        *out = ev->value;
        return 0;
    }
    if (!json_is_integer(v)) {
        return fail(c, "expected a %s name or number", ed->name);
    }
    rc = read_signed(c, f, v, INT32_MIN, INT32_MAX, &n);
    if (rc == 0) {
        *out = (int)n;
    }
    return rc;
}

/* Decode base64 (hex for the fields of takes_hex) into a fresh malloc'd
 * buffer. */
static int read_bytes(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                      ProtobufCBinaryData *out)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    size_t cap = n / 4 * 3 + 3;
    uint8_t *buf;
    size_t len;

    if (!s) {
        return fail(c, takes_hex(f->name) ? "expected a hex string" : "expected a base64 string");
    }
    if (takes_hex(f->name)) {
        cap = n / 2 + 1;
    }
    buf = malloc(cap);
    if (!buf) {
        return fail_nomem(c);
    }
    if (takes_hex(f->name)) {
        const char *end = NULL;
        if (n % 2 != 0 || sodium_hex2bin(buf, cap, s, n, NULL, &len, &end) != 0 || end != s + n) {
            free(buf);
            return fail(c, "invalid hex");
        }
    } else if (sodium_base642bin(buf, cap, s, n, NULL, &len, NULL,
                                 sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(buf);
        return fail(c, "invalid base64");
    }
    out->data = buf;
    out->len = len;
    return 0;
}

static int message_from_json(struct pb_ctx *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                             ProtobufCMessage **slot, unsigned depth);

/* Store one value of field f, read from v, at dst (a struct member or an
 * array element). Whatever is stored keeps the enclosing message freeable
 * even when an error follows. */
static int value_from_json(struct pb_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                           void *dst, unsigned depth)
{
    int64_t s;
    uint64_t u;
    double x;
    int rc;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        rc = read_signed(c, f, v, INT32_MIN, INT32_MAX, &s);
        if (rc == 0) {
            *(int32_t *)dst = (int32_t)s;
        }
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        rc = read_unsigned(c, f, v, UINT32_MAX, &u);
        if (rc == 0) {
            *(uint32_t *)dst = (uint32_t)u;
        }
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return read_signed(c, f, v, INT64_MIN, INT64_MAX, dst);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return read_unsigned(c, f, v, UINT64_MAX, dst);
    case PROTOBUF_C_TYPE_FLOAT:
        rc = read_real(c, v, FLT_MAX, &x);
        if (rc == 0) {
            *(float *)dst = (float)x;
        }
        return rc;
    case PROTOBUF_C_TYPE_DOUBLE:
        return read_real(c, v, DBL_MAX, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) {
            return fail(c, "expected true or false");
        }
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return read_enum(c, f, v, dst);
    case PROTOBUF_C_TYPE_STRING: {
        const char *str = json_cstr(v);

        if (!str) {
            return fail(c, json_is_string(v) ? "string holds a NUL" : "expected a string");
        }
        *(char **)dst = strdup(str);
        return *(char **)dst ? 0 : fail_nomem(c);
    }
    case PROTOBUF_C_TYPE_BYTES:
        return read_bytes(c, f, v, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return message_from_json(c, f->descriptor, v, dst, depth + 1);
    }
    return fail(c, "corrupt descriptor");
}

/* Fill repeated field f of m from the JSON array v. The zeroed array is
 * linked in first and the count raised before each element is read, so a
 * failing element leaves only freeable (possibly NULL) entries behind. */
static int repeated_from_json(struct pb_ctx *c, ProtobufCMessage *m,
                              const ProtobufCFieldDescriptor *f, const json_t *v, unsigned depth)
{
    size_t n = json_array_size(v);
    size_t elt = elt_size(f->type);
    size_t *count = MEMBER(m, f->quantifier_offset);
    char *arr;

    if (!json_is_array(v)) {
        return fail(c, "expected an array");
    }
    if (n == 0) {
        return 0;
    }
    arr = calloc(n, elt);
    if (!arr) {
        return fail_nomem(c);
    }
    *(void **)MEMBER(m, f->offset) = arr;
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push_index(c, i);
        int rc;

        *count = i + 1;
        rc = value_from_json(c, f, json_array_get(v, i), arr + i * elt, depth);
        if (rc != 0) {
            return rc;
        }
        path_restore(c, mark);
    }
    return 0;
}

/* Set field f of m from v: at most one member per oneof (its case is set
 * before the value is read), the has_ flag of an optional scalar. */
static int field_from_json(struct pb_ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                           const json_t *v, unsigned depth)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        return repeated_from_json(c, m, f, v, depth);
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = MEMBER(m, f->quantifier_offset);

        if (*which != 0) {
            return fail(c, "only one member of a oneof may be set, %s already is",
                        protobuf_c_message_descriptor_get_field(m->descriptor, *which)->name);
        }
        *which = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !is_pointer_type(f->type)) {
        *(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
    }
    return value_from_json(c, f, v, MEMBER(m, f->offset), depth);
}

/* Build a message of type d from the JSON object j into *slot (which is set
 * as soon as the message exists, so the caller frees it on any error).
 * JSON null for a field means "absent". */
static int message_from_json(struct pb_ctx *c, const ProtobufCMessageDescriptor *d, const json_t *j,
                             ProtobufCMessage **slot, unsigned depth)
{
    const char *key;
    size_t key_len;
    json_t *v;
    ProtobufCMessage *m;

    if (depth > VS_PB_MAX_DEPTH) {
        return fail(c, "messages nested deeper than %d", VS_PB_MAX_DEPTH);
    }
    if (!json_is_object(j)) {
        return fail(c, "expected an object (%s)", d->name);
    }
    m = malloc(d->sizeof_message);
    if (!m) {
        return fail_nomem(c);
    }
    protobuf_c_message_init(d, m);
    *slot = m;
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        const ProtobufCFieldDescriptor *f =
            strlen(key) == key_len ? protobuf_c_message_descriptor_get_field_by_name(d, key) : NULL;
        size_t mark = path_push_field(c, key);
        int rc;

        if (!f) {
            return fail(c, "unknown field");
        }
        if (!json_is_null(v)) {
            rc = field_from_json(c, m, f, v, depth);
            if (rc != 0) {
                return rc;
            }
        }
        path_restore(c, mark);
    }
    return 0;
}

VS_API int vs_pb_from_json(const ProtobufCMessageDescriptor *d, const json_t *j,
                           ProtobufCMessage **out, char *err, size_t errlen)
{
    struct pb_ctx c = {.err = err, .errlen = errlen, .root = d ? d->name : "pbjson"};
    ProtobufCMessage *m = NULL;
    int rc;

    if (err && errlen) {
        err[0] = '\0';
    }
    if (!out) {
        return fail(&c, "no output pointer");
    }
    *out = NULL;
    if (!d || !j) {
        return fail(&c, "no type or no JSON");
    }
    rc = message_from_json(&c, d, j, &m, 1);
    if (rc != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return 0;
}
