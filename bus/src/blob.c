/*
 * blob.c - moving sealed blobs over the bus (the codec is blob_codec.c).
 *
 * Sending publishes every encrypted chunk to vs.blob.<id> with the
 * deduplicating id "<id>.<n>" and reports the manifest once the server has
 * stored them all. Fetching reads the subject with an ephemeral ordered
 * consumer and feeds the decoder chunk by chunk; the first error, or the
 * deadline, ends the fetch and wipes what was decrypted so far.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vs/blob.h"
#include "vs/ids.h"
#include "vs/js.h"
#include "vs/log.h"

static int blob_subject(const uint8_t *id, size_t len, char *out, size_t size)
{
    if (len != VS_ID_LEN)
        return -EBADMSG;
    char hex[VS_ID_HEX_LEN];
    vs_hex(id, VS_ID_LEN, hex);
    const char *tokens[] = {hex};
    int rc = vs_subject_format(VS_SUBJ_BLOB, out, size, false, tokens, 1);
    return rc < 0 ? rc : 0;
}

/* ---- sending ---------------------------------------------------------------- */

struct blob_send {
    Vs__V1__BlobManifest manifest;
    uint32_t outstanding;
    int status;
    vs_blob_sent_cb cb;
    void *arg;
};

static void on_chunk_stored(int status, const struct vs_puback *ack, void *arg)
{
    (void)ack;
    struct blob_send *s = arg;
    if (status < 0 && s->status == 0)
        s->status = status;
    if (--s->outstanding > 0)
        return;
    s->cb(s->status, s->status == 0 ? &s->manifest : NULL, s->arg);
    vs_blob_manifest_clear(&s->manifest);
    free(s);
}

int vs_blob_send(vs_bus *bus, const void *data, size_t len,
                 const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], uint64_t max_size,
                 vs_blob_sent_cb cb, void *arg)
{
    if (bus == NULL || (data == NULL && len > 0) || recipient_pk == NULL || cb == NULL)
        return -EINVAL;
    if (len > max_size)
        return -EFBIG;
    struct blob_send *s = calloc(1, sizeof(*s));
    uint8_t *cipher = malloc(VS_BLOB_CHUNK_SIZE + VS_BLOB_CHUNK_OVERHEAD);
    vs_blob_encoder *enc = NULL;
    if (s == NULL || cipher == NULL) {
        free(s);
        free(cipher);
        return -ENOMEM;
    }
    s->cb = cb;
    s->arg = arg;
    int rc = vs_blob_encoder_new(recipient_pk, len, VS_BLOB_CHUNK_SIZE, &s->manifest, &enc);
    char subject[VS_SUBJECT_MAX], hex[VS_ID_HEX_LEN], msg_id[VS_ID_HEX_LEN + 16];
    if (rc == 0)
        rc = blob_subject(s->manifest.blob_id.data, s->manifest.blob_id.len, subject,
                          sizeof(subject));
    if (rc == 0)
        vs_hex(s->manifest.blob_id.data, VS_ID_LEN, hex);
    /* One extra count keeps the callback from running before the loop ends. */
    s->outstanding = 1;
    const uint8_t *p = data;
    for (uint32_t i = 0; rc == 0 && i < s->manifest.chunks; i++) {
        size_t off = (size_t)i * VS_BLOB_CHUNK_SIZE;
        size_t n = len - off < VS_BLOB_CHUNK_SIZE ? len - off : VS_BLOB_CHUNK_SIZE;
        size_t clen;
        rc = vs_blob_encoder_chunk(enc, p != NULL ? p + off : (const uint8_t *)"", n, cipher, &clen);
        if (rc < 0)
            break;
        snprintf(msg_id, sizeof(msg_id), "%s.%" PRIu32, hex, i);
        const char *hdrs[] = {VS_HDR_MSG_ID, msg_id};
        rc = vs_js_publish_raw(bus, subject, cipher, clen, hdrs, 1, on_chunk_stored, s);
        if (rc == 0)
            s->outstanding++;
    }
    if (rc == 0)
        rc = vs_blob_encoder_finish(enc, &s->manifest);
    vs_blob_encoder_free(enc);
    free(cipher);
    if (rc < 0)
        s->status = rc; /* chunks already in flight still call back */
    /* Drop the extra count: completes now if nothing is in flight. */
    if (s->outstanding == 1 && rc < 0) {
        vs_blob_manifest_clear(&s->manifest);
        free(s);
        return rc;
    }
    on_chunk_stored(0, NULL, s);
    return 0;
}

/* ---- sealed payloads: inline or a blob ------------------------------------------ */

struct payload_seal {
    vs_payload_sealed_cb cb;
    void *arg;
};

static void on_payload_blob(int status, const Vs__V1__BlobManifest *manifest, void *arg)
{
    struct payload_seal *ps = arg;
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    if (status == 0) {
        p.recipient_key_id = manifest->recipient_key_id;
        p.blob = (Vs__V1__BlobManifest *)manifest;
    }
    ps->cb(status, status == 0 ? &p : NULL, ps->arg);
    free(ps);
}

int vs_payload_seal(vs_bus *bus, const void *data, size_t len,
                    const uint8_t recipient_pk[VS_BOX_PUBLICKEY_LEN], size_t inline_max,
                    uint64_t max_size, vs_payload_sealed_cb cb, void *arg)
{
    if (bus == NULL || (data == NULL && len > 0) || recipient_pk == NULL || cb == NULL)
        return -EINVAL;
    if (len > max_size)
        return -EFBIG;
    if (len + VS_SEAL_OVERHEAD > inline_max) {
        struct payload_seal *ps = malloc(sizeof *ps);
        if (ps == NULL)
            return -ENOMEM;
        *ps = (struct payload_seal){cb, arg};
        int rc = vs_blob_send(bus, data, len, recipient_pk, max_size, on_payload_blob, ps);
        if (rc < 0)
            free(ps);
        return rc;
    }
    uint8_t *sealed = malloc(len + VS_SEAL_OVERHEAD);
    if (sealed == NULL)
        return -ENOMEM;
    int rc = vs_seal(recipient_pk, data != NULL ? data : "", len, sealed);
    if (rc < 0) {
        free(sealed);
        return rc;
    }
    uint8_t kid[VS_KEY_ID_LEN];
    vs_key_id(recipient_pk, VS_BOX_PUBLICKEY_LEN, kid);
    Vs__V1__SealedPayload p = VS__V1__SEALED_PAYLOAD__INIT;
    p.recipient_key_id = (ProtobufCBinaryData){VS_KEY_ID_LEN, kid};
    p.ciphertext = (ProtobufCBinaryData){len + VS_SEAL_OVERHEAD, sealed};
    cb(0, &p, arg);
    free(sealed);
    return 0;
}

/* ---- fetching ---------------------------------------------------------------- */

struct blob_fetch {
    vs_blob_decoder *dec;
    vs_consumer *reader;
    uv_timer_t timer;
    uint32_t next;
    uint32_t chunks;
    bool finished;
    vs_blob_fetched_cb cb;
    void *arg;
};

static void on_fetch_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Report once, then release everything (the consumer from inside its own
 * handler is fine: the bus keeps the subscription alive until it returns). */
static void fetch_finish(struct blob_fetch *f, int status, const uint8_t *data, size_t len)
{
    if (f->finished)
        return;
    f->finished = true;
    f->cb(status, data, len, f->arg);
    vs_consumer_free(f->reader);
    f->reader = NULL;
    vs_blob_decoder_free(f->dec);
    f->dec = NULL;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_fetch_timer_closed);
}

static int on_blob_chunk(vs_msg *m, void *arg)
{
    struct blob_fetch *f = arg;
    if (f->finished)
        return 0;
    size_t len;
    const uint8_t *cipher = vs_msg_data(m, &len);
    int rc = vs_blob_decoder_chunk(f->dec, f->next, cipher, len);
    if (rc < 0) {
        fetch_finish(f, rc, NULL, 0);
        return 0;
    }
    if (++f->next < f->chunks)
        return 0;
    uint8_t *plain = NULL;
    size_t plen = 0;
    rc = vs_blob_decoder_finish(f->dec, &plain, &plen);
    fetch_finish(f, rc, plain, plen);
    if (plain != NULL) {
        sodium_memzero(plain, plen);
        free(plain);
    }
    return 0;
}

static void on_fetch_timeout(uv_timer_t *t)
{
    fetch_finish(t->data, -ETIMEDOUT, NULL, 0);
}

int vs_blob_fetch(vs_bus *bus, const Vs__V1__BlobManifest *manifest, const vs_boxkey *k,
                  uint64_t max_size, uint64_t timeout_ms, vs_blob_fetched_cb cb, void *arg)
{
    if (bus == NULL || manifest == NULL || k == NULL || cb == NULL)
        return -EINVAL;
    char subject[VS_SUBJECT_MAX];
    int rc = blob_subject(manifest->blob_id.data, manifest->blob_id.len, subject, sizeof(subject));
    if (rc < 0)
        return rc;
    struct blob_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    rc = vs_blob_decoder_new(manifest, k, max_size, &f->dec);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->chunks = manifest->chunks;
    f->cb = cb;
    f->arg = arg;
    rc = vs_js_read(bus, vs_stream(VS_STREAM_BLOBS)->name, subject, 0, 0, NULL, on_blob_chunk, f,
                    &f->reader);
    if (rc < 0) {
        vs_blob_decoder_free(f->dec);
        free(f);
        return rc;
    }
    uv_timer_init(vs_bus_loop(bus), &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, on_fetch_timeout, timeout_ms, 0);
    return 0;
}
