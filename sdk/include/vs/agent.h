/*
 * agent.h - the agent SDK (libvsagent): what a program running inside a
 * VibeShield sandbox uses to talk to sandboxd over its command channel,
 * fd 3. The wire protocol is in sdk/PROTOCOL.md.
 *
 * Why it is shaped this way:
 * - No thread of its own for reading. The thread waiting for a reply
 *   reads the channel itself; when several threads wait, one of them
 *   reads at a time and hands every reply it decodes to the waiter with
 *   the matching command_id (replies may come in any order; one nobody
 *   waits for any more is dropped). So an agent that never starts the
 *   heartbeat runs without creating a thread, which the sandbox's
 *   `minimal` seccomp preset forbids; vs_agent_heartbeat_start needs a
 *   preset that allows threads (`compute`).
 * - Every frame is written whole under one mutex (frames never
 *   interleave), with MSG_NOSIGNAL: a closed channel is -EPIPE, never a
 *   SIGPIPE that kills the agent.
 * - Once the channel is closed by sandboxd (-EPIPE) or carries something
 *   that is not a reply frame (-EBADMSG), that error is sticky: every
 *   waiting and later call returns it.
 * - The agent never sees sealed data and holds no keys: sandboxd stamps
 *   the agent and task ids and the reply key, seals what leaves, and opens
 *   what comes back (AgentReply.result). The SDK sends those fields empty.
 * - Functions return 0 or a negative errno, never exit and never print.
 *   The helpers turn a reply's status into an errno (OK 0, DENIED -EACCES,
 *   TIMEOUT -ETIMEDOUT, INVALID -EINVAL, UNKNOWN -EPROTO) and keep the
 *   reply's reason for vs_agent_last_reason().
 */
#ifndef VS_AGENT_H
#define VS_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "vs/v1/agent.pb-c.h"

/* The descriptor sandboxd passes the command channel on. */
#define VS_AGENT_FD 3
/* Where outputs go unless the environment variable VS_AGENT_OUT_DIR names
 * another directory (read once, by vs_agent_open). sandboxd snapshots this
 * directory at SIGNAL_COMPLETE. */
#define VS_AGENT_OUT_DIR "/workspace/out"
/* How long the helpers wait for a reply unless vs_agent_set_timeout says
 * otherwise: two minutes holds a fetch under the egress policy's default
 * timeout (10 s) several times over, redirects and scans included; a task
 * whose policy allows slower fetches (up to 600 s) raises it. */
#define VS_AGENT_DEFAULT_TIMEOUT_MS 120000u

typedef struct vs_agent vs_agent;

/* Open the command channel on fd (-1: VS_AGENT_FD), which must be an open
 * stream socket (sandboxd hands over one end of a socketpair). The handle
 * does not own fd: vs_agent_close leaves it open (an agent that exits
 * lets the kernel close it; sandboxd takes the end of the process, not the
 * end of the socket, as the end of the agent). Returns 0 and *out,
 * -EBADF when fd is not open, -ENOTSOCK when it is not a socket,
 * -EPROTOTYPE when it is not a stream socket, -ENOMEM. */
int vs_agent_open(int fd, vs_agent **out);

/* Stop the heartbeat thread (waits for it) and free the handle; fd stays
 * open. No other call on a may be in progress or follow. NULL is allowed. */
void vs_agent_close(vs_agent *a);

/* The reply timeout of the helpers below (vs_agent_fetch, vs_agent_search,
 * vs_agent_request_memory, vs_agent_complete); 0 restores the default. */
void vs_agent_set_timeout(vs_agent *a, uint32_t timeout_ms);

/* Send cmd and wait up to timeout_ms for its reply. cmd is not modified:
 * the frame carries a copy with a fresh command_id (16 bytes from
 * getrandom), sent_at_ns set to now, and agent, task_id and reply_box_key
 * empty (sandboxd stamps them). Safe to call from several threads at once.
 * Returns 0 and *reply whatever the reply's status (free it with
 * vs__v1__agent_reply__free_unpacked), or
 *   -EINVAL     cmd is a HEARTBEAT (never answered: vs_agent_heartbeat_start)
 *               or has no type;
 *   -EMSGSIZE   the packed command exceeds VS_FRAME_MAX;
 *   -ETIMEDOUT  no reply within timeout_ms (a late reply is dropped);
 *   -EPIPE      sandboxd closed the channel (sticky);
 *   -EBADMSG    the channel carried an undecodable frame (sticky);
 *   -ENOMEM, or the -errno of a failed read or write. */
int vs_agent_request(vs_agent *a, Vs__V1__AgentCommand *cmd, uint32_t timeout_ms,
                     Vs__V1__AgentReply **reply);

/* REQUEST_DATA: fetch url through the egress worker. method NULL means
 * GET; body (len bytes) may be NULL when len is 0. On 0, *reply is the OK
 * reply and (*reply)->result the EgressResult (HTTP status, content type,
 * final URL, body); check (*reply)->flagged_suspicious before trusting
 * the content. Free with vs__v1__agent_reply__free_unpacked. A non-OK
 * status is returned as an errno (see the top of this file) with no
 * reply; its reason is in vs_agent_last_reason(). -EBADMSG: an OK reply
 * without a result. Other errors as vs_agent_request. */
int vs_agent_fetch(vs_agent *a, const char *url, const char *method, const void *body, size_t len,
                   Vs__V1__AgentReply **reply);

/* WEB_SEARCH: up to max_results results for query (0: the service's
 * default). On 0, (*reply)->result->results / n_results hold them and
 * results_withheld counts those the injection scan removed. Errors and
 * ownership as vs_agent_fetch. */
int vs_agent_search(vs_agent *a, const char *query, uint32_t max_results,
                    Vs__V1__AgentReply **reply);

/* REQUEST_MEMORY: ask for a memory limit of bytes (the new limit, not an
 * increment). 0 with *granted set to the limit now in force when sandboxd
 * agreed; -EACCES when it refused, the reason in vs_agent_last_reason();
 * -EBADMSG when an OK reply does not say the limit; other errors as
 * vs_agent_fetch. */
int vs_agent_request_memory(vs_agent *a, uint64_t bytes, uint64_t *granted);

/* STATE_SYNC: the task's own key-value state, which sandboxd keeps in a
 * store that outlives the sandbox (a task run again after a launcher
 * crash finds it). Keys are tokens of at most 64 bytes (letters, digits,
 * '-', '_'); values at most 128 KiB. Every value has a revision; 0 means
 * none.
 *   get     0 with *value (malloc'd, the caller frees; NULL and *len 0 when
 *           the key has no value) and *revision (may be NULL).
 *   put     expected_revision > 0 makes it a compare-and-set: -EACCES when
 *           the key's revision is another; *revision (may be NULL) gets
 *           the new one.
 *   delete  0, also when the key had no value.
 * -EINVAL for a refused key or value; other errors as vs_agent_fetch. */
int vs_agent_state_get(vs_agent *a, const char *key, void **value, size_t *len,
                       uint64_t *revision);
int vs_agent_state_put(vs_agent *a, const char *key, const void *value, size_t len,
                       uint64_t expected_revision, uint64_t *revision);
int vs_agent_state_delete(vs_agent *a, const char *key);

/* Send HEARTBEAT now, then start a background thread that sends one every
 * interval_ms, with sequence 1, 2, 3, ... sandboxd does not answer
 * heartbeats; its watchdog ends an agent whose beats stop. The thread ends
 * at vs_agent_close or when the channel fails. Returns 0, -EINVAL for an
 * interval of 0, -EALREADY when already started, the first beat's error
 * (as vs_agent_request), or pthread_create's (-EPERM under a seccomp
 * preset without threads: then only the first beat went out). */
int vs_agent_heartbeat_start(vs_agent *a, uint32_t interval_ms);

/* Write len bytes of data to <out dir>/relpath atomically: into a
 * temporary file in the same directory, then renamed over relpath, so
 * the snapshot never sees half a file. Missing directories are created
 * (0755), the output directory itself included; below it no symbolic
 * link is followed (a link to a directory is -ENOTDIR). relpath must be
 * relative, made of non-empty components other than "." and "..", and
 * shorter than PATH_MAX. Returns 0, -EINVAL for a refused path, or the
 * -errno of the failed file operation (the temporary file is removed). */
int vs_agent_write_output(vs_agent *a, const char *relpath, const void *data, size_t len);

/* SIGNAL_COMPLETE with summary (may be NULL): tell sandboxd the task is
 * done and wait for its reply, which comes once the output directory has
 * been snapshotted. After 0 the agent should exit: later outputs are not
 * delivered. Errors as vs_agent_fetch. */
int vs_agent_complete(vs_agent *a, const char *summary);

/* The reason of the last non-OK reply a helper above (fetch, search,
 * request_memory, state, complete) received in the calling thread, any handle;
 * "" when the thread's last helper call did not end in a non-OK reply.
 * Per thread like errno, so concurrent helpers never see each other's.
 * Valid until the thread's next helper call. */
const char *vs_agent_last_reason(void);

#endif
