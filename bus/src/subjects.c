/*
 * subjects.c - the subject and stream tables (subjects.def, streams.def)
 * and the functions that format, match and print them.
 *
 * Everything is derived from the .def files at compile time, so the code,
 * the JetStream configuration and the README table cannot drift apart.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "vs/subjects.h"
#include "vs/v1/agent.pb-c.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/v1/common.pb-c.h"
#include "vs/v1/ledger.pb-c.h"
#include "vs/v1/sys.pb-c.h"
#include "vs/v1/task.pb-c.h"

static const struct vs_subject_def subjects[VS_SUBJ_COUNT] = {
#define VS_SUBJECT(id, pat, msg, rep, del, stream, purpose) \
    {VS_SUBJ_##id, pat, msg, rep, del, stream, purpose},
#include "vs/subjects.def"
#undef VS_SUBJECT
};

static const struct vs_stream_def streams[VS_STREAM_COUNT] = {
#define VS_STREAM(id, name, age, bytes, msgsize, dup, deny, purpose) \
    {name, age, bytes, msgsize, dup, deny, purpose},
#include "vs/streams.def"
#undef VS_STREAM
};

static const struct vs_kv_def kvs[VS_KV_COUNT] = {
#define VS_KV(id, bucket, history, age, bytes, valsize, purpose) \
    {bucket, history, age, bytes, valsize, purpose},
#include "vs/streams.def"
#undef VS_KV
};

const struct vs_subject_def *vs_subject(enum vs_subject_id id)
{
    return (unsigned)id < VS_SUBJ_COUNT ? &subjects[id] : NULL;
}

const struct vs_stream_def *vs_stream(enum vs_stream_id id)
{
    return (unsigned)id < VS_STREAM_COUNT ? &streams[id] : NULL;
}

const struct vs_kv_def *vs_kv(enum vs_kv_id id)
{
    return (unsigned)id < VS_KV_COUNT ? &kvs[id] : NULL;
}

bool vs_token_valid(const char *tok)
{
    if (tok == NULL)
        return false;
    size_t n = strlen(tok);
    if (n == 0 || n > VS_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tok[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

int vs_subject_format(enum vs_subject_id id, char *out, size_t size, bool wildcards,
                      const char *const *tokens, size_t n)
{
    const struct vs_subject_def *def = vs_subject(id);
    if (def == NULL || out == NULL || size == 0)
        return -EINVAL;
    size_t used = 0, next = 0;
    for (const char *p = def->pattern; *p != '\0';) {
        const char *piece;
        size_t len;
        if (*p == '<') {
            const char *close = strchr(p, '>');
            if (close == NULL || next >= n)
                return -EINVAL;
            piece = tokens[next++];
            bool wild = wildcards && (strcmp(piece, "*") == 0 ||
                                      (strcmp(piece, ">") == 0 && close[1] == '\0'));
            if (!wild && !vs_token_valid(piece))
                return -EINVAL;
            len = strlen(piece);
            p = close + 1;
        } else {
            piece = p;
            len = 1;
            p++;
        }
        if (used + len >= size || used + len >= VS_SUBJECT_MAX)
            return -ENAMETOOLONG;
        memcpy(out + used, piece, len);
        used += len;
    }
    if (next != n)
        return -EINVAL;
    out[used] = '\0';
    return (int)used;
}

/* Wildcard forms and per-stream subject lists, built once (thread-safe). */
static char wildcards[VS_SUBJ_COUNT][VS_SUBJECT_MAX];
static const char *stream_lists[VS_STREAM_COUNT][VS_SUBJ_COUNT + 1];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (size_t id = 0; id < VS_SUBJ_COUNT; id++) {
        size_t o = 0;
        for (const char *p = subjects[id].pattern; *p != '\0' && o + 2 < VS_SUBJECT_MAX; p++) {
            if (*p == '<') {
                p = strchr(p, '>');
                wildcards[id][o++] = '*';
            } else {
                wildcards[id][o++] = *p;
            }
        }
        wildcards[id][o] = '\0';
    }
    for (size_t s = 0; s < VS_STREAM_COUNT; s++) {
        size_t n = 0;
        for (size_t i = 0; i < VS_SUBJ_COUNT; i++)
            if (strcmp(subjects[i].stream, streams[s].name) == 0)
                stream_lists[s][n++] = wildcards[i];
        stream_lists[s][n] = NULL;
    }
}

const char *vs_subject_wildcard(enum vs_subject_id id)
{
    if ((unsigned)id >= VS_SUBJ_COUNT)
        return NULL;
    pthread_once(&tables_once, build_tables);
    return wildcards[id];
}

/* Match a concrete subject against a pattern token by token. */
static bool pattern_matches(const char *pattern, const char *subject)
{
    const char *p = pattern, *s = subject;
    while (*p != '\0' && *s != '\0') {
        const char *pe = strchr(p, '.');
        const char *se = strchr(s, '.');
        size_t pl = pe != NULL ? (size_t)(pe - p) : strlen(p);
        size_t sl = se != NULL ? (size_t)(se - s) : strlen(s);
        if (p[0] == '<') {
            if (sl == 0)
                return false;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return false;
        }
        if ((pe == NULL) != (se == NULL))
            return false;
        if (pe == NULL)
            return true;
        p = pe + 1;
        s = se + 1;
    }
    return false;
}

const struct vs_subject_def *vs_subject_match(const char *subject)
{
    if (subject == NULL)
        return NULL;
    /* A consumer sees the same few subjects message after message, and
     * each is matched on delivery and again by its handler: each thread
     * remembers its last match instead of scanning the table again. */
    static _Thread_local char last[VS_SUBJECT_MAX + 1];
    static _Thread_local const struct vs_subject_def *last_def;
    if (last_def != NULL && strcmp(subject, last) == 0)
        return last_def;
    for (size_t i = 0; i < VS_SUBJ_COUNT; i++) {
        if (pattern_matches(subjects[i].pattern, subject)) {
            if (strlen(subject) < sizeof last) {
                memcpy(last, subject, strlen(subject) + 1);
                last_def = &subjects[i];
            }
            return &subjects[i];
        }
    }
    return NULL;
}

const char *const *vs_stream_subjects(enum vs_stream_id id)
{
    if ((unsigned)id >= VS_STREAM_COUNT)
        return NULL;
    pthread_once(&tables_once, build_tables);
    return stream_lists[id];
}

static const char *delivery_name(enum vs_delivery d)
{
    switch (d) {
    case VS_CORE: return "core";
    case VS_REQUEST: return "request/reply";
    case VS_JETSTREAM: return "JetStream";
    case VS_JS_REPLY: return "JetStream + reply";
    }
    return "?";
}

void vs_subjects_markdown(FILE *out)
{
    fprintf(out, "| subject | message | reply | delivery | stream | purpose |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < VS_SUBJ_COUNT; i++) {
        const struct vs_subject_def *d = &subjects[i];
        fprintf(out, "| `%s` | %s | %s | %s | %s | %s |\n", d->pattern,
                d->message != NULL ? d->message->name : "raw bytes",
                d->reply != NULL ? d->reply->name : "-", delivery_name(d->delivery),
                d->stream[0] != '\0' ? d->stream : "-", d->purpose);
    }
}
