/*
 * subjects.h - typed access to the subject table (subjects.def) and to the
 * stream table (streams.def).
 *
 * Code never spells a subject string: it names a table row and formats the
 * placeholders, which are validated as single safe tokens so that hostile
 * input (an agent name with '.' or '>') can never widen a subject.
 */
#ifndef VS_SUBJECTS_H
#define VS_SUBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "vs/api.h"

enum vs_delivery { VS_CORE, VS_REQUEST, VS_JETSTREAM, VS_JS_REPLY };

enum vs_subject_id {
#define VS_SUBJECT(id, ...) VS_SUBJ_##id,
#include "vs/subjects.def"
#undef VS_SUBJECT
    VS_SUBJ_COUNT
};

struct vs_subject_def {
    enum vs_subject_id id;
    const char *pattern;
    const ProtobufCMessageDescriptor *message;
    const ProtobufCMessageDescriptor *reply;
    enum vs_delivery delivery;
    const char *stream;
    const char *purpose;
};

enum vs_stream_id {
#define VS_STREAM(id, ...) VS_STREAM_##id,
#include "vs/streams.def"
#undef VS_STREAM
    VS_STREAM_COUNT
};

struct vs_stream_def {
    const char *name;
    int64_t max_age_s;       /* 0 = unlimited */
    int64_t max_bytes;
    int32_t max_msg_size;
    int64_t dup_window_s;
    bool deny_delete_and_purge;
    const char *purpose;
};

enum vs_kv_id {
#define VS_KV(id, ...) VS_KV_##id,
#include "vs/streams.def"
#undef VS_KV
    VS_KV_COUNT
};

struct vs_kv_def {
    const char *bucket;
    int32_t history;
    int64_t max_age_s;
    int64_t max_bytes;
    int32_t max_value_size;
    const char *purpose;
};

#define VS_TOKEN_MAX 64
#define VS_SUBJECT_MAX 256

VS_API const struct vs_subject_def *vs_subject(enum vs_subject_id id);
VS_API const struct vs_stream_def *vs_stream(enum vs_stream_id id);
VS_API const struct vs_kv_def *vs_kv(enum vs_kv_id id);

/* True when tok is a safe subject token: 1..64 of [A-Za-z0-9_-]. */
VS_API bool vs_token_valid(const char *tok);

/* Format a subject from its pattern, replacing each <placeholder> in order
 * with the next argument of tokens (n of them). A literal "*" or ">" is
 * accepted as a token only when wildcards is true (for subscriptions).
 * Returns the length, -EINVAL for a bad or missing token, -ENAMETOOLONG if
 * it does not fit in out (size bytes). */
VS_API int vs_subject_format(enum vs_subject_id id, char *out, size_t size, bool wildcards,
                             const char *const *tokens, size_t n);
/* The subject with every placeholder as '*' (stream subjects, subscriptions). */
VS_API const char *vs_subject_wildcard(enum vs_subject_id id);

/* The table row whose pattern matches a concrete subject, or NULL. */
VS_API const struct vs_subject_def *vs_subject_match(const char *subject);

/* Subjects captured by a stream (wildcard form), NULL-terminated; static. */
VS_API const char *const *vs_stream_subjects(enum vs_stream_id id);

/* Print the subject table as a Markdown table (the README's copy). */
VS_API void vs_subjects_markdown(FILE *out);

#endif
