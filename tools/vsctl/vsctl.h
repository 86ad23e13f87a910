/*
 * vsctl.h - what the pieces of vsctl share: the command context (common
 * options, resolved state directory and bus URL), the command entry points
 * and the small utilities in util.c.
 *
 * vsctl is split by concern (one file per command family, the supervisor
 * apart) so that each file can be read on its own; everything they have in
 * common goes through this header instead of being copied between them.
 * Conventions: every command returns its exit status (VSCTL_OK, VSCTL_FAIL,
 * VSCTL_USAGE) and reports an error as one line on stderr via vsctl_err.
 */
#ifndef VSCTL_H
#define VSCTL_H

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "vs/bus.h"
#include "vs/keys.h"
#include "vs/subjects.h"
#include "vs/v1/audit.pb-c.h"

#define VSCTL_OK 0
#define VSCTL_FAIL 1
#define VSCTL_USAGE 2

#define VSCTL_URL_MAX 1024
#define VSCTL_NAME_MAX 64       /* a daemon name is one subject token */
#define VSCTL_MAX_DAEMONS 32

/* Files and directories of a state directory (STATE/...). */
#define VSCTL_PID_FILE "supervisor.pid"
#define VSCTL_URL_FILE "nats.url"
#define VSCTL_STACK_FILE "stack.list"
#define VSCTL_NATS_CONF "nats-server.conf"
#define VSCTL_LOG_DIR "logs"
#define VSCTL_ETC_DIR "etc"
#define VSCTL_RUN_DIR "run"
#define VSCTL_JS_DIR "jetstream"

struct vsctl {
    const char *opt_url;    /* --url */
    const char *opt_state;  /* --state */
    bool verbose;           /* -v: the bus library's warnings on stderr */
    char state[PATH_MAX];   /* resolved by vsctl_state_dir */
    char url[VSCTL_URL_MAX];/* resolved by vsctl_url */
};

/* One daemon of the stack: STATE/stack.list holds "NAME PATH" lines. */
struct vsctl_daemon {
    char name[VSCTL_NAME_MAX + 1];
    char path[PATH_MAX];
};

/* ---- commands (each parses its own options with getopt_long) ---------------- */

int cmd_up(struct vsctl *ctx, int argc, char **argv);
int cmd_down(struct vsctl *ctx, int argc, char **argv);
int cmd_status(struct vsctl *ctx, int argc, char **argv);
int cmd_pub(struct vsctl *ctx, int argc, char **argv);
int cmd_sub(struct vsctl *ctx, int argc, char **argv);
int cmd_audit(struct vsctl *ctx, int argc, char **argv);
int cmd_subjects(struct vsctl *ctx, int argc, char **argv);
int cmd_keys(struct vsctl *ctx, int argc, char **argv);
int cmd_ledger(struct vsctl *ctx, int argc, char **argv);
int cmd_seal(struct vsctl *ctx, int argc, char **argv);
int cmd_unseal(struct vsctl *ctx, int argc, char **argv);
int cmd_egress(struct vsctl *ctx, int argc, char **argv);
int cmd_attest(struct vsctl *ctx, int argc, char **argv);
/* The audit log's commands (cmd_auditlog.c), dispatched by cmd_audit. */
int cmd_audit_query(struct vsctl *ctx, int argc, char **argv);
int cmd_audit_verify(struct vsctl *ctx, int argc, char **argv);
int cmd_audit_export(struct vsctl *ctx, int argc, char **argv);
int cmd_audit_import_check(struct vsctl *ctx, int argc, char **argv);
int cmd_audit_prove(struct vsctl *ctx, int argc, char **argv);
int cmd_audit_backup(struct vsctl *ctx, int argc, char **argv);

/* One event as a line of text (every string escaped: events are hostile
 * input) or, with json, as one JSON object; false when out is gone. */
bool vsctl_audit_print_event(FILE *out, const Vs__V1__AuditEvent *ev, bool json);
/* Hand every message of the CHECKPOINTS stream to fn, oldest first, until
 * fn returns non-zero or the stream's end (as of the call) is reached.
 * 0, -ENOENT (no such stream) or -errno. */
typedef int (*vsctl_checkpoint_fn)(const Vs__V1__Checkpoint *cp, void *arg);
int vsctl_read_checkpoints(vs_bus *bus, vsctl_checkpoint_fn fn, void *arg);

/* The supervisor (supervisor.c): runs the stack until SIGTERM/SIGINT and
 * returns the process exit status. The caller holds the lock on
 * STATE/supervisor.pid for the supervisor's lifetime. */
struct vsctl_stack {
    const char *state;                  /* absolute state directory */
    const char *nats_bin;               /* absolute path of nats-server */
    int port;
    const struct vsctl_daemon *daemons;
    size_t ndaemons;
};
int vsctl_supervise(const struct vsctl_stack *stack);
/* The nats-server config for state and port, from the template embedded at
 * build time (deploy/nats-server.conf.in). malloc'd into *out. */
int vsctl_nats_config_text(const char *state, int port, char **out);
/* A daemon's STATE/etc/NAME.yaml: the nats: section (url) that vsctl owns,
 * then STATE/etc/NAME.extra.yaml verbatim when it exists. -EINVAL (reason
 * in err) when the extra file has its own nats: section. */
int vsctl_daemon_config_text(const char *state, const char *name, const char *url, char **out,
                             char *err, size_t errlen);

/* ---- common options ----------------------------------------------------------- */

/* Long options every subcommand accepts; append to its own table. */
#define VSCTL_COMMON_LONGOPTS                                        \
    {"url", required_argument, NULL, 'U'},                           \
        {"state", required_argument, NULL, 'S'},                     \
        {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'}
/* The help lines of the common options. */
#define VSCTL_COMMON_HELP                                                               \
    "common options:\n"                                                                 \
    "  --url URL      NATS URL (else $VS_NATS_URL, else STATE/nats.url written by\n"    \
    "                 `vsctl up`, else nats://127.0.0.1:4222)\n"                        \
    "  --state DIR    state directory (else $VS_STATE_DIR, else\n"                      \
    "                 $XDG_STATE_HOME/vibeshield, else ~/.local/state/vibeshield)\n"    \
    "  -v, --verbose  show the bus library's warnings\n"                                \
    "  -h, --help     this help\n"

/* Handle --url/--state/--verbose (opt 'U', 'S', 'v'); true when it did. */
bool vsctl_common_opt(struct vsctl *ctx, int opt, const char *arg);
/* Reset getopt for a subcommand's argv (argv[0] is the command name). */
void vsctl_getopt_reset(void);

/* ---- resolution ------------------------------------------------------------------ */

/* The absolute state directory; NULL (error printed) when it cannot be
 * determined. Does not create it. */
const char *vsctl_state_dir(struct vsctl *ctx);
/* The bus URL by the precedence of --help; never NULL. */
const char *vsctl_url(struct vsctl *ctx);
/* url with any password replaced by "***" (for printing). */
void vsctl_url_redact(const char *url, char *out, size_t size);

/* Connect a bus on loop for a tool (one attempt, short timeout). Prints the
 * error line itself and returns -errno on failure. */
int vsctl_connect(struct vsctl *ctx, uv_loop_t *loop, vs_bus **out);
/* The same, quietly, for polling loops (up waits for the stack). */
int vsctl_connect_quiet(const char *url, uv_loop_t *loop, vs_bus **out);

/* ---- small utilities ------------------------------------------------------------- */

void vsctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* dir "/" name into out; -ENAMETOOLONG when it does not fit. */
int vsctl_path(char *out, size_t size, const char *dir, const char *name);
int vsctl_mkdirs(const char *path, mode_t mode);
/* The whole file, NUL-terminated (malloc'd), or NULL with errno set. */
char *vsctl_read_file(const char *path, size_t *len);
/* Write a file through a temporary name and rename (readers never see a
 * partial file). 0 or -errno. */
int vsctl_write_file(const char *path, const char *data, size_t len, mode_t mode);
/* The directory of the running executable (/proc/self/exe). */
int vsctl_exe_dir(char *out, size_t size);
/* Find an executable in $PATH, then in the extra NULL-ended directories. */
int vsctl_find_exe(const char *name, const char *const *extra, char *out, size_t size);

/* Parse a non-negative integer <= max. */
int vsctl_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* An option's value, checked: an integer in [min, max], or a duration
 * above zero. false (error line printed, naming --opt) when it is not. */
bool vsctl_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
bool vsctl_opt_duration(const char *opt, const char *arg, uint64_t *out_ms);
/* Seconds ("5", "0.5") or a duration with a unit ("500ms", "2m"). */
int vsctl_parse_seconds(const char *s, uint64_t *out_ms);

/* STATE/stack.list */
int vsctl_stack_read(const char *state, struct vsctl_daemon *out, size_t max, size_t *n);
int vsctl_stack_write(const char *state, const struct vsctl_daemon *d, size_t n);

/* A pid from a file with one number; 0 when absent or unreadable. */
pid_t vsctl_read_pid(const char *path);

/* Local TCP ports: a free one, whether one is free, whether a NATS server
 * answers on it (its INFO line arrives). */
int vsctl_free_port(void);
bool vsctl_port_free(int port);
bool vsctl_nats_accepts(int port, int timeout_ms);

/* Compact one-line JSON (non-ASCII escaped, so nothing reaches a terminal
 * raw) followed by a newline; flushes. false when stdout is gone. */
bool vsctl_print_json(FILE *out, const json_t *j);

/* Send req on a table subject (a core request, or "JetStream + reply" with
 * msg_id as Nats-Msg-Id when the subject is delivered so) and wait for the
 * reply (owned by the caller: protobuf_c_message_free_unpacked). The
 * reply's status must be OK (field 1 of every reply); otherwise the error
 * line names service and its reason, and -EPROTO is returned. */
#define VSCTL_REQUEST_TIMEOUT_MS 10000
int vsctl_request(vs_bus *bus, enum vs_subject_id id, const ProtobufCMessage *req,
                  const char *msg_id, const char *service, ProtobufCMessage **out);
/* A new Ed25519 key saved to path (0600, never overwritten), or NULL with
 * the error printed. */
vs_signkey *vsctl_create_signkey(const char *path);
/* Say why a new key file could not be saved to path (rc: -errno). */
void vsctl_key_not_created(const char *path, int rc);
/* The key file at path, or NULL with the error printed. */
vs_signkey *vsctl_load_signkey(const char *path);
/* Run the bus loop for ms (a pause that keeps the connection serviced). */
void vsctl_sleep_bus(vs_bus *bus, uint64_t ms);

/* Run bus's loop until *done, timeout_ms (0: no timeout) or SIGINT/SIGTERM.
 * Returns true when a signal ended the wait. */
bool vsctl_run_until_signal(vs_bus *bus, const bool *done, uint64_t timeout_ms);

#endif
