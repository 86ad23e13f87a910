/*
 * util.c - what every vsctl command needs: the state directory and bus URL
 * by their documented precedence, a fail-fast bus connection, file and
 * path helpers, number parsing, local port probes and JSON printing.
 *
 * These live together because they are policy shared by all commands
 * (where the state is, which URL wins, how a password is hidden); keeping
 * them in one place is what makes `vsctl up` and `vsctl status` agree.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "vs/config.h"
#include "vs/js.h"
#include "vs/keys.h"
#include "vs/v1/audit.pb-c.h"
#include "vs/log.h"
#include "vs/subjects.h"
#include "vsctl.h"

#define CONNECT_TIMEOUT_MS 1500

void vsctl_err(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "vsctl: %s\n", line);
}

bool vsctl_common_opt(struct vsctl *ctx, int opt, const char *arg)
{
    switch (opt) {
    case 'U': ctx->opt_url = arg; ctx->url[0] = '\0'; return true;
    case 'S': ctx->opt_state = arg; ctx->state[0] = '\0'; return true;
    case 'v':
        ctx->verbose = true;
        log_init("vsctl", VS_LOG_INFO);
        return true;
    default: return false;
    }
}

void vsctl_getopt_reset(void)
{
    optind = 0; /* GNU: full re-initialization, argv[0] is skipped */
    opterr = 1;
}

/* ---- paths and files ------------------------------------------------------------ */

int vsctl_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int vsctl_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

char *vsctl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f)) {
            free(buf);
            buf = NULL;
            errno = EIO;
            break;
        }
        if (feof(f))
            break;
        if (cap >= (64u << 20)) { /* state files are small; refuse absurd ones */
            free(buf);
            buf = NULL;
            errno = EFBIG;
            break;
        }
        char *more = realloc(buf, cap * 2);
        if (more == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = more;
        cap *= 2;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return buf;
}

int vsctl_write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return -e;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

int vsctl_exe_dir(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n < 0)
        return -errno;
    if ((size_t)n >= size - 1)
        return -ENAMETOOLONG;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        return -ENOENT;
    *slash = '\0';
    return 0;
}

static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int vsctl_find_exe(const char *name, const char *const *extra, char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (path != NULL) {
        const char *p = path;
        while (*p != '\0') {
            size_t n = strcspn(p, ":");
            if (n > 0 && p[0] == '/') {
                int w = snprintf(out, size, "%.*s/%s", (int)n, p, name);
                if (w > 0 && (size_t)w < size && executable(out))
                    return 0;
            }
            p += n;
            if (*p == ':')
                p++;
        }
    }
    for (; extra != NULL && *extra != NULL; extra++)
        if (vsctl_path(out, size, *extra, name) == 0 && executable(out))
            return 0;
    return -ENOENT;
}

/* ---- state directory and URL ---------------------------------------------------- */

const char *vsctl_state_dir(struct vsctl *ctx)
{
    if (ctx->state[0] != '\0')
        return ctx->state;
    char dir[PATH_MAX];
    const char *env;
    int n;
    if (ctx->opt_state != NULL && ctx->opt_state[0] != '\0')
        n = snprintf(dir, sizeof(dir), "%s", ctx->opt_state);
    else if ((env = getenv("VS_STATE_DIR")) != NULL && env[0] != '\0')
        n = snprintf(dir, sizeof(dir), "%s", env);
    else if ((env = getenv("XDG_STATE_HOME")) != NULL && env[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/vibeshield", env);
    else if ((env = getenv("HOME")) != NULL && env[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/.local/state/vibeshield", env);
    else {
        vsctl_err("no state directory: give --state DIR or set VS_STATE_DIR (HOME is not set)");
        return NULL;
    }
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        vsctl_err("state directory path too long");
        return NULL;
    }
    /* Absolute, so that it can be written into configuration files. */
    if (dir[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL ||
            snprintf(ctx->state, sizeof(ctx->state), "%s/%s", cwd, dir) >= (int)sizeof(ctx->state)) {
            vsctl_err("cannot make the state directory '%s' absolute", dir);
            ctx->state[0] = '\0';
            return NULL;
        }
    } else {
        snprintf(ctx->state, sizeof(ctx->state), "%s", dir);
    }
    size_t len = strlen(ctx->state);
    while (len > 1 && ctx->state[len - 1] == '/')
        ctx->state[--len] = '\0';
    return ctx->state;
}

const char *vsctl_url(struct vsctl *ctx)
{
    if (ctx->url[0] != '\0')
        return ctx->url;
    const char *env = getenv("VS_NATS_URL");
    if (ctx->opt_url != NULL && ctx->opt_url[0] != '\0') {
        snprintf(ctx->url, sizeof(ctx->url), "%s", ctx->opt_url);
    } else if (env != NULL && env[0] != '\0') {
        snprintf(ctx->url, sizeof(ctx->url), "%s", env);
    } else {
        char path[PATH_MAX];
        char *text = NULL;
        /* The state directory is optional here: without one, the default. */
        if ((ctx->opt_state != NULL || getenv("VS_STATE_DIR") != NULL ||
             getenv("XDG_STATE_HOME") != NULL || getenv("HOME") != NULL) &&
            vsctl_state_dir(ctx) != NULL &&
            vsctl_path(path, sizeof(path), ctx->state, VSCTL_URL_FILE) == 0)
            text = vsctl_read_file(path, NULL);
        if (text != NULL) {
            text[strcspn(text, "\r\n")] = '\0';
            snprintf(ctx->url, sizeof(ctx->url), "%s", text);
            free(text);
        }
        if (ctx->url[0] == '\0')
            snprintf(ctx->url, sizeof(ctx->url), "%s", VS_BUS_DEFAULT_URL);
    }
    return ctx->url;
}

void vsctl_url_redact(const char *url, char *out, size_t size)
{
    /* Each comma-separated URL: scheme://user:password@host -> user:***@host */
    size_t o = 0;
    const char *p = url;
    while (*p != '\0' && o + 1 < size) {
        size_t n = strcspn(p, ",");
        const char *scheme = strstr(p, "://");
        const char *start = scheme != NULL && scheme < p + n ? scheme + 3 : p;
        const char *at = memchr(start, '@', (size_t)(p + n - start));
        const char *colon = at != NULL ? memchr(start, ':', (size_t)(at - start)) : NULL;
        int w;
        if (colon != NULL)
            w = snprintf(out + o, size - o, "%.*s:***%.*s", (int)(colon - p), p,
                         (int)(p + n - at), at);
        else if (at != NULL && scheme != NULL && strncmp(p, "nats", 4) == 0)
            w = snprintf(out + o, size - o, "%.*s***%.*s", (int)(start - p), p,
                         (int)(p + n - at), at); /* a lone token is a secret too */
        else
            w = snprintf(out + o, size - o, "%.*s", (int)n, p);
        if (w < 0 || (size_t)w >= size - o)
            break;
        o += (size_t)w;
        p += n;
        if (*p == ',' && o + 1 < size) {
            out[o++] = ',';
            p++;
        }
    }
    out[o < size ? o : size - 1] = '\0';
}

static int connect_url(const char *url, uv_loop_t *loop, vs_bus **out)
{
    struct vs_bus_opts o = {
        .url = url,
        .name = "vsctl",
        .component = "vsctl",
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .connect_attempts = 1,
    };
    return vs_bus_new(loop, &o, out);
}

int vsctl_connect_quiet(const char *url, uv_loop_t *loop, vs_bus **out)
{
    return connect_url(url, loop, out);
}

int vsctl_connect(struct vsctl *ctx, uv_loop_t *loop, vs_bus **out)
{
    const char *url = vsctl_url(ctx);
    int rc = connect_url(url, loop, out);
    if (rc < 0) {
        char shown[VSCTL_URL_MAX];
        vsctl_url_redact(url, shown, sizeof(shown));
        vsctl_err("cannot reach the bus at %s: %s (is the stack up? see `vsctl up`, --url)",
                  shown, strerror(-rc));
    }
    return rc;
}

/* ---- numbers --------------------------------------------------------------------- */

int vsctl_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int vsctl_parse_seconds(const char *s, uint64_t *out_ms)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s && *end == '\0') {
        if (errno != 0 || !isfinite(v) || v < 0 || v > 1e9)
            return -EINVAL;
        *out_ms = (uint64_t)(v * 1000.0 + 0.5);
        return 0;
    }
    return vs_parse_duration_ms(s, out_ms);
}

/* ---- stack.list ------------------------------------------------------------------ */

int vsctl_stack_read(const char *state, struct vsctl_daemon *out, size_t max, size_t *n)
{
    char path[PATH_MAX];
    *n = 0;
    int rc = vsctl_path(path, sizeof(path), state, VSCTL_STACK_FILE);
    if (rc < 0)
        return rc;
    char *text = vsctl_read_file(path, NULL);
    if (text == NULL)
        return -errno;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *sp = strchr(line, ' ');
        if (sp != NULL)
            *sp = '\0';
        if (!vs_token_valid(line) || strlen(line) > VSCTL_NAME_MAX || *n == max)
            continue;
        snprintf(out[*n].name, sizeof(out[*n].name), "%s", line);
        snprintf(out[*n].path, sizeof(out[*n].path), "%s", sp != NULL ? sp + 1 : "");
        (*n)++;
    }
    free(text);
    return 0;
}

int vsctl_stack_write(const char *state, const struct vsctl_daemon *d, size_t n)
{
    char path[PATH_MAX];
    int rc = vsctl_path(path, sizeof(path), state, VSCTL_STACK_FILE);
    if (rc < 0)
        return rc;
    size_t cap = 128 + n * (VSCTL_NAME_MAX + PATH_MAX + 2), len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    len += (size_t)snprintf(buf, cap, "# daemons of this stack: NAME PATH (written by vsctl up)\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s %s\n", d[i].name, d[i].path);
    rc = vsctl_write_file(path, buf, len, 0644);
    free(buf);
    return rc;
}

pid_t vsctl_read_pid(const char *path)
{
    char *text = vsctl_read_file(path, NULL);
    if (text == NULL)
        return 0;
    char *end;
    long v = strtol(text, &end, 10);
    bool whole = end != text && (end[0] == '\n' || end[0] == '\0');
    free(text);
    return whole && v > 0 && v < (1L << 30) ? (pid_t)v : 0;
}

/* ---- local ports ----------------------------------------------------------------- */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

int vsctl_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);
    int port = -EADDRNOTAVAIL;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

bool vsctl_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = loopback(port);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

bool vsctl_nats_accepts(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = loopback(port);
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4];
        ok = recv(fd, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "INFO", 4) == 0;
    }
    close(fd);
    return ok;
}

/* ---- output and loop helpers ----------------------------------------------------- */

bool vsctl_print_json(FILE *out, const json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    if (text == NULL)
        return fputs("null\n", out) >= 0 && fflush(out) == 0;
    bool ok = fprintf(out, "%s\n", text) >= 0 && fflush(out) == 0;
    free(text);
    return ok;
}

void vsctl_sleep_bus(vs_bus *bus, uint64_t ms)
{
    bool never = false;
    vs_bus_run_until(bus, &never, ms);
}

/* SIGINT/SIGTERM end a long-running command (sub, audit tail). */
struct vsctl_signals {
    uv_signal_t sigint, sigterm;
    bool *flag;
};

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    struct vsctl_signals *s = h->data;
    *s->flag = true;
}

static void vsctl_signals_start(struct vsctl_signals *s, uv_loop_t *loop, bool *flag)
{
    s->flag = flag;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_stop_signal, SIGTERM);
    /* The handles must not keep uv_run alive on their own. */
    uv_unref((uv_handle_t *)&s->sigint);
    uv_unref((uv_handle_t *)&s->sigterm);
}

static void on_signal_closed(uv_handle_t *h)
{
    (*(int *)h->data)--;
}

/* Close the handles and wait until libuv is done with them (they live on
 * the caller's stack). */
static void vsctl_signals_stop(struct vsctl_signals *s, uv_loop_t *loop)
{
    int open = 2;
    s->sigint.data = s->sigterm.data = &open;
    uv_close((uv_handle_t *)&s->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&s->sigterm, on_signal_closed);
    while (open > 0)
        uv_run(loop, UV_RUN_NOWAIT);
}

bool vsctl_run_until_signal(vs_bus *bus, const bool *done, uint64_t timeout_ms)
{
    uv_loop_t *loop = vs_bus_loop(bus);
    struct vsctl_signals sig;
    bool interrupted = false;
    vsctl_signals_start(&sig, loop, &interrupted);
    uint64_t deadline = timeout_ms > 0 ? uv_now(loop) + timeout_ms : 0;
    while (!*done && !interrupted) {
        uint64_t step = 200;
        if (deadline > 0) {
            uv_update_time(loop);
            uint64_t now = uv_now(loop);
            if (now >= deadline)
                break;
            step = deadline - now < step ? deadline - now : step;
        }
        vs_bus_run_until(bus, done, step);
    }
    vsctl_signals_stop(&sig, loop);
    return interrupted;
}

/* ---- requests ------------------------------------------------------------------ */

struct sync_reply {
    bool done;
    int status;
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *msg;
};

static void on_sync_reply(int status, const ProtobufCMessage *reply, void *arg)
{
    struct sync_reply *r = arg;
    r->done = true;
    r->status = status;
    if (status != 0)
        return;
    /* Keep a copy: the reply is the bus's only during the callback. */
    size_t n = protobuf_c_message_get_packed_size(reply);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        r->status = -ENOMEM;
        return;
    }
    protobuf_c_message_pack(reply, buf);
    r->msg = protobuf_c_message_unpack(r->desc, NULL, n, buf);
    if (r->msg == NULL)
        r->status = -EBADMSG;
    free(buf);
}

int vsctl_request(vs_bus *bus, enum vs_subject_id id, const ProtobufCMessage *req,
                  const char *msg_id, const char *service, ProtobufCMessage **out)
{
    const struct vs_subject_def *sd = vs_subject(id);
    struct sync_reply r = {.desc = sd->reply};
    int rc = sd->delivery == VS_JS_REPLY
                 ? vs_js_request(bus, sd->pattern, req, msg_id, sd->reply, VSCTL_REQUEST_TIMEOUT_MS,
                                 on_sync_reply, &r)
                 : vs_bus_request(bus, sd->pattern, req, sd->reply, VSCTL_REQUEST_TIMEOUT_MS,
                                  on_sync_reply, &r);
    if (rc == 0 && vs_bus_run_until(bus, &r.done, VSCTL_REQUEST_TIMEOUT_MS + 1000) < 0)
        rc = -ETIMEDOUT;
    if (rc == 0)
        rc = r.status;
    if (rc == -EHOSTUNREACH)
        vsctl_err("no %s answers on %s (is it running? `vsctl status`)", service, sd->pattern);
    else if (rc == -ETIMEDOUT)
        vsctl_err("%s did not answer on %s in time (is it running? `vsctl status`)", service,
                  sd->pattern);
    else if (rc < 0)
        vsctl_err("request on %s failed: %s", sd->pattern, strerror(-rc));
    if (rc < 0)
        return rc;
    /* Field 1 of every reply type. */
    const Vs__V1__Status *st = ((const Vs__V1__AuditQueryReply *)r.msg)->status;
    if (st == NULL || st->code != VS__V1__STATUS_CODE__STATUS_OK) {
        vsctl_err("%s refused: %s", service,
                  st != NULL && st->reason[0] != '\0' ? st->reason : "no status");
        protobuf_c_message_free_unpacked(r.msg, NULL);
        return -EPROTO;
    }
    *out = r.msg;
    return 0;
}

/* ---- signing keys ------------------------------------------------------------ */

void vsctl_key_not_created(const char *path, int rc)
{
    vsctl_err("cannot create %s: %s", path,
              rc == -EEXIST ? "it exists (keys are never overwritten)" : strerror(-rc));
}

vs_signkey *vsctl_create_signkey(const char *path)
{
    vs_signkey *k = NULL;
    int rc = vs_signkey_new(&k);
    if (rc == 0)
        rc = vs_signkey_save(k, path);
    if (rc < 0) {
        vsctl_key_not_created(path, rc);
        vs_signkey_free(k);
        return NULL;
    }
    return k;
}

vs_signkey *vsctl_load_signkey(const char *path)
{
    vs_signkey *k = NULL;
    int rc = vs_signkey_load(path, &k);
    if (rc < 0) {
        vsctl_err("cannot load the key %s: %s%s", path, strerror(-rc),
                  rc == -EPERM ? " (it must not be readable by others)" : "");
        return NULL;
    }
    return k;
}

/* ---- option values --------------------------------------------------------- */

bool vsctl_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    if (vsctl_parse_uint(arg, max, out) == 0 && *out >= min)
        return true;
    vsctl_err("--%s: a number from %llu to %llu expected, not '%s'", opt, (unsigned long long)min,
              (unsigned long long)max, arg);
    return false;
}

bool vsctl_opt_duration(const char *opt, const char *arg, uint64_t *out_ms)
{
    if (vsctl_parse_seconds(arg, out_ms) == 0 && *out_ms > 0)
        return true;
    vsctl_err("--%s: a duration expected (\"5\", \"0.5\", \"500ms\", \"2m\"), not '%s'", opt, arg);
    return false;
}
