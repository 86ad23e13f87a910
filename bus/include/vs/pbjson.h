/*
 * pbjson.h - JSON <-> protobuf by walking protobuf-c descriptors (protobuf-c
 * has no JSON mapping). Used by vsctl pub/sub and the audit export.
 *
 * Mapping (close to proto3 JSON): field names as in the .proto; enums by
 * name (numbers accepted on input); bytes as standard base64, except the
 * fields named "nonce", "*_id" and "*_ids", which are lowercase hex in both
 * directions (upper case accepted on input); 64-bit integers as JSON
 * numbers (strings accepted on input); repeated fields as arrays; nested
 * messages as objects; only the set member of a oneof. Unknown JSON keys
 * are an error, so a typo is never silently ignored.
 */
#ifndef VS_PBJSON_H
#define VS_PBJSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "vs/api.h"

/* A new JSON object for m (fields at their default are omitted). NULL on
 * allocation failure. */
VS_API json_t *vs_pb_to_json(const ProtobufCMessage *m);

/* Build a message of type d from j. *out is freed with
 * protobuf_c_message_free_unpacked(*out, NULL). -EINVAL with a message in
 * err naming the field on a type error or unknown key. */
VS_API int vs_pb_from_json(const ProtobufCMessageDescriptor *d, const json_t *j,
                           ProtobufCMessage **out, char *err, size_t errlen);

/* Every message type of package vs.v1, for tools and tests. */
VS_API const ProtobufCMessageDescriptor *const *vs_pb_all(size_t *n);
/* Look a type up by full ("vs.v1.TaskSubmit") or short ("TaskSubmit") name. */
VS_API const ProtobufCMessageDescriptor *vs_pb_find(const char *name);

#endif
