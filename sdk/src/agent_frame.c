/*
 * agent_frame.c - the command channel's frame codec (vs/agent_frame.h).
 *
 * The decoder is a two-state machine: collecting the 4 header bytes, then
 * collecting `want` payload bytes. A payload that lies whole inside the
 * fed chunk is passed to the callback in place; otherwise its bytes are
 * appended to `buf`, which grows only as bytes arrive (to twice what the
 * frame holds so far, never beyond `want`), so the announced length alone
 * never allocates anything. Any error is stored in `err` and returned by
 * every later feed: after it the stream position is unknown.
 */
#include "vs/agent_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation for a split payload: small frames need one. */
#define VS_FRAME_FIRST_ALLOC 4096u

struct vs_frame_decoder {
    size_t max;                    /* largest payload accepted */
    uint8_t header[VS_FRAME_HEADER];
    size_t header_have;            /* header bytes collected (0..4) */
    size_t want;                   /* payload length, once the header is complete */
    uint8_t *buf;                  /* a payload split across feeds */
    size_t have;                   /* payload bytes in buf */
    size_t cap;                    /* allocated bytes of buf */
    int err;                       /* sticky: 0 or the error every feed returns */
};

int vs_frame_header(uint8_t out[VS_FRAME_HEADER], size_t len)
{
    if (len > VS_FRAME_MAX)
        return -EMSGSIZE;
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
    return 0;
}

int vs_frame_decoder_new(size_t max, vs_frame_decoder **out)
{
    if (max == 0 || max > VS_FRAME_MAX)
        return -EINVAL;
    vs_frame_decoder *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    d->max = max;
    *out = d;
    return 0;
}

/* Make room for `more` payload bytes after the `have` already buffered. */
static int reserve(vs_frame_decoder *d, size_t more)
{
    size_t need = d->have + more;
    if (need <= d->cap)
        return 0;
    size_t cap = 2 * need;
    if (cap < VS_FRAME_FIRST_ALLOC)
        cap = VS_FRAME_FIRST_ALLOC;
    if (cap > d->want)
        cap = d->want;
    uint8_t *buf = realloc(d->buf, cap);
    if (buf == NULL)
        return -ENOMEM;
    d->buf = buf;
    d->cap = cap;
    return 0;
}

/* A frame was delivered: back to collecting a header, dropping a buffer
 * that a large frame left behind. */
static void next_frame(vs_frame_decoder *d)
{
    d->header_have = 0;
    d->want = 0;
    d->have = 0;
    if (d->cap > VS_FRAME_RETAIN) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
}

static int fail(vs_frame_decoder *d, int err)
{
    d->err = err;
    return err;
}

int vs_frame_decoder_feed(vs_frame_decoder *d, const uint8_t *data, size_t len, vs_frame_fn fn,
                          void *arg)
{
    if (d->err != 0)
        return d->err;
    while (len > 0) {
        if (d->header_have < VS_FRAME_HEADER) {
            size_t take = VS_FRAME_HEADER - d->header_have;
            if (take > len)
                take = len;
            memcpy(d->header + d->header_have, data, take);
            d->header_have += take;
            data += take;
            len -= take;
            if (d->header_have < VS_FRAME_HEADER)
                return 0;
            d->want = (size_t)d->header[0] | (size_t)d->header[1] << 8 |
                      (size_t)d->header[2] << 16 | (size_t)d->header[3] << 24;
            if (d->want > d->max)
                return fail(d, -EMSGSIZE);
            if (d->want > 0)
                continue;
            /* An empty payload: the header alone is the frame. */
            int rc = fn(d->header, 0, arg);
            next_frame(d);
            if (rc != 0)
                return fail(d, rc);
            continue;
        }
        size_t missing = d->want - d->have;
        const uint8_t *payload;
        if (d->have == 0 && len >= missing) {
            payload = data; /* whole in this chunk: no copy */
        } else {
            size_t take = missing < len ? missing : len;
            int rc = reserve(d, take);
            if (rc != 0)
                return fail(d, rc);
            memcpy(d->buf + d->have, data, take);
            d->have += take;
            data += take;
            len -= take;
            if (d->have < d->want)
                return 0;
            payload = d->buf;
            missing = 0;
        }
        int rc = fn(payload, d->want, arg);
        data += missing;
        len -= missing;
        next_frame(d);
        if (rc != 0)
            return fail(d, rc);
    }
    return 0;
}

size_t vs_frame_decoder_pending(const vs_frame_decoder *d)
{
    return d->header_have + d->have;
}

size_t vs_frame_decoder_capacity(const vs_frame_decoder *d)
{
    return d->cap;
}

void vs_frame_decoder_free(vs_frame_decoder *d)
{
    if (d == NULL)
        return;
    free(d->buf);
    free(d);
}
