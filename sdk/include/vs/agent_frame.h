/*
 * agent_frame.h - the frame codec of the agent command channel: a 4-byte
 * little-endian length, then that many bytes of one protobuf message
 * (vs.v1.AgentCommand from the agent, vs.v1.AgentReply from sandboxd).
 *
 * Why it is shaped this way:
 * - Pure C, no I/O and no protobuf: the same code frames the agent SDK's
 *   blocking socket reads and sandboxd's non-blocking libuv reads, so both
 *   ends agree on every edge (zero-length frames, the maximum, a header
 *   split across reads) by construction.
 * - The decoder is incremental and push-driven: feed it whatever bytes
 *   arrived, in any chunking, and it calls back once per complete frame.
 *   A payload that arrived whole inside one chunk is handed over in place,
 *   without a copy; only a frame split across chunks is assembled in the
 *   decoder's buffer.
 * - The announced length is never trusted for allocation: the buffer grows
 *   with the bytes that actually arrived (at most doubling), so a hostile
 *   header announcing VS_FRAME_MAX costs nothing until the peer really
 *   sends that much. After a frame larger than VS_FRAME_RETAIN the buffer
 *   is released, so one big reply does not pin megabytes for the life of
 *   the channel.
 * - Errors are sticky: a length above the maximum, or a callback that
 *   stops the feed, leaves the stream at an unknown position, and there is
 *   no way to find the next frame boundary again, so every later feed
 *   returns the same error.
 */
#ifndef VS_AGENT_FRAME_H
#define VS_AGENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the length prefix (unsigned 32-bit, little-endian). */
#define VS_FRAME_HEADER 4

/* The largest payload either side sends or accepts: 16 MiB. A fetched
 * document travels to the agent in one AgentReply (EgressResult.body), so
 * the maximum must hold the egress policy's response limit (default
 * max_response_bytes 8 MiB) plus the reply's other fields; 16 MiB leaves
 * room for a policy of up to about 15 MiB. A policy allowing more than
 * fits cannot deliver over this channel: sandboxd must answer such a
 * result with a non-OK status rather than send an oversized frame. */
#define VS_FRAME_MAX (16u << 20)

/* A decoder keeps a buffer of up to this many bytes between frames; a larger
 * one is freed once its frame has been delivered. */
#define VS_FRAME_RETAIN (64u << 10)

/* Write the header of a frame carrying len payload bytes into out.
 * Returns 0, or -EMSGSIZE when len > VS_FRAME_MAX (out untouched). */
int vs_frame_header(uint8_t out[VS_FRAME_HEADER], size_t len);

typedef struct vs_frame_decoder vs_frame_decoder;

/* Called once per complete frame, in stream order. payload is valid only
 * during the call (it may point into the caller's data or into the
 * decoder) and is never NULL, also when len is 0 (an empty message is a
 * valid frame). Return 0 to go on; any other value stops the feed (see
 * vs_frame_decoder_feed). fn must not feed or free the decoder that
 * called it. */
typedef int (*vs_frame_fn)(const uint8_t *payload, size_t len, void *arg);

/* A decoder that accepts payloads of up to max bytes (1 .. VS_FRAME_MAX).
 * Allocates only the small decoder itself. Returns 0 and *out (free with
 * vs_frame_decoder_free), -EINVAL for a bad max, -ENOMEM. */
int vs_frame_decoder_new(size_t max, vs_frame_decoder **out);

/* Push len bytes of the stream (data may be NULL when len is 0) and call
 * fn for every frame they complete. Returns
 *   0          all bytes consumed; a partial frame stays buffered;
 *   -EMSGSIZE  a header announced more than max: the decoder is poisoned;
 *   fn's value when fn returned nonzero: the bytes after that frame in
 *              data are dropped, and the decoder is poisoned with it;
 *   -ENOMEM    the partial frame could not be buffered: poisoned too.
 * Once poisoned, every later feed returns the same error without calling
 * fn (the stream cannot be resynchronized: close it). */
int vs_frame_decoder_feed(vs_frame_decoder *d, const uint8_t *data, size_t len, vs_frame_fn fn,
                          void *arg);

/* Bytes of an incomplete frame held so far (header bytes included); 0 at
 * a frame boundary. At end of stream, nonzero means the peer stopped in
 * the middle of a frame. */
size_t vs_frame_decoder_pending(const vs_frame_decoder *d);

/* Bytes currently allocated for assembling payloads: what a header can make
 * the decoder hold. It never exceeds the larger of twice the frame's bytes
 * received so far and VS_FRAME_RETAIN, whatever length the header
 * announced. */
size_t vs_frame_decoder_capacity(const vs_frame_decoder *d);

/* Free the decoder and its buffer. NULL is allowed. */
void vs_frame_decoder_free(vs_frame_decoder *d);

#endif
