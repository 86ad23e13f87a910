/*
 * httpd.c - the test HTTP/1.1 server (see httpd.h): forked from the test,
 * an accept loop with one detached thread per connection, each reading
 * requests off its connection until the client closes or asks to. Bodies
 * that can be huge (/bytes, /gzip-bomb) are produced in 64 KiB pieces as
 * they are sent, so a 1 GiB answer costs no 1 GiB of memory.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#define ZLIB_CONST
#include <zlib.h>

#include "httpd.h"
#include "proc.h"

#define HEAD_MAX (16 * 1024)          /* request line and headers */
#define BODY_MAX (1024 * 1024)        /* request body */
#define HEADERS_MAX 64
#define PIECE (64 * 1024)             /* what a big body is produced and sent in */
#define GENERATED_MAX (1ULL << 30)    /* /bytes and /gzip-bomb */
#define SLOW_MS_MAX 600000
#define START_TIMEOUT_MS 10000

/* In the shared page: written by the server, read by the test. */
struct vs_httpd_counters {
    uint64_t connections;
    uint64_t requests;
};

/* One client connection, owned by its thread. */
struct conn {
    int fd;
    struct vs_httpd_counters *counters;
    size_t len;                       /* bytes received into buf and not yet consumed */
    char buf[HEAD_MAX];
};

struct header {
    const char *name;                 /* lowercased */
    const char *value;                /* without surrounding blanks */
};

/* A parsed request; the strings point into its connection's buffer. */
struct request {
    const char *method;
    const char *target;               /* as received */
    size_t path_len;                  /* of target, up to '?' */
    const char *query;                /* after '?'; "" when none */
    struct header headers[HEADERS_MAX];
    size_t nheaders;
    char *body;                       /* malloc'd, NUL-terminated; NULL when empty */
    size_t body_len;
    bool close;                       /* close the connection after the response */
};

/* Routes (and the responders) return 0 when the connection may serve
 * another request, -1 when it must close: the request asked for that, a
 * send failed or the response could not be completed. */
typedef int (*route_fn)(struct conn *c, struct request *r);

static char a_bytes[PIECE];            /* /bytes' body, filled at server start */
static const unsigned char zeros[PIECE];

/* ---- sending ------------------------------------------------------------------- */

/* All of buf, or -1. flags: MSG_MORE when more follows at once. */
static int send_all(int fd, const void *buf, size_t len, int flags)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, flags | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
        {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"}, {304, "Not Modified"},
        {307, "Temporary Redirect"}, {308, "Permanent Redirect"}, {400, "Bad Request"},
        {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
        {405, "Method Not Allowed"}, {408, "Request Timeout"}, {413, "Content Too Large"},
        {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
        {503, "Service Unavailable"}, {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Status";
}

static bool status_has_body(int status)
{
    return status != 204 && status != 304;
}

/* The status line and headers, counting the request answered.
 * content_length < 0: the body is chunked. extra: more header lines, each
 * ending in CRLF (NULL: none). flags: MSG_MORE when the body follows. */
static int send_head(struct conn *c, const struct request *r, int status, const char *type,
                     long long content_length, const char *extra, int flags)
{
    __atomic_fetch_add(&c->counters->requests, 1, __ATOMIC_RELAXED);
    char head[HEAD_MAX + 512];
    char framing[64] = ""; /* how the client finds the body's end */
    if (content_length < 0)
        strcpy(framing, "Transfer-Encoding: chunked\r\n");
    else if (status_has_body(status))
        snprintf(framing, sizeof(framing), "Content-Length: %lld\r\n", content_length);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%s\r\n", status, reason(status),
                     type, framing, extra != NULL ? extra : "",
                     r->close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    return send_all(c->fd, head, (size_t)n, flags);
}

/* A whole response with a body of len bytes. */
static int respond(struct conn *c, const struct request *r, int status, const char *type,
                   const char *extra, const void *body, size_t len)
{
    if (!status_has_body(status))
        len = 0;
    if (send_head(c, r, status, type, (long long)len, extra, len > 0 ? MSG_MORE : 0) < 0 ||
        send_all(c->fd, body, len, 0) < 0)
        return -1;
    return r->close ? -1 : 0;
}

static int respond_text(struct conn *c, const struct request *r, int status, const char *text)
{
    return respond(c, r, status, "text/plain", NULL, text, strlen(text));
}

/* A JSON document (taken over, NULL: out of memory) as the response. */
static int respond_json(struct conn *c, const struct request *r, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, 0) : NULL;
    json_decref(doc);
    if (text == NULL)
        return respond_text(c, r, 500, "out of memory\n");
    int rc = respond(c, r, 200, "application/json", NULL, text, strlen(text));
    free(text);
    return rc;
}

/* An error that ends the connection. */
static int refuse(struct conn *c, struct request *r, int status, const char *text)
{
    r->close = true;
    respond_text(c, r, status, text);
    return -1;
}

/* ---- query parameters ---------------------------------------------------------- */

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Form-decode len bytes of in (%XX, '+' for a space) into out, NUL-
 * terminated. The decoded length, or -EINVAL: a bad or NUL escape, or
 * more than fits in size. */
static int form_decode(const char *in, size_t len, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++, n++) {
        if (n + 1 >= size)
            return -EINVAL;
        if (in[i] == '+') {
            out[n] = ' ';
        } else if (in[i] != '%') {
            out[n] = in[i];
        } else {
            int hi = i + 2 < len ? hex_digit(in[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            out[n] = (char)(hi * 16 + lo);
            i += 2;
        }
    }
    out[n] = '\0';
    return (int)n;
}

/* The decoded value of the query parameter name into out (size bytes).
 * Its length; -ENOENT when absent; -EINVAL when it does not decode. */
static int query_param(const struct request *r, const char *name, char *out, size_t size)
{
    size_t name_len = strlen(name);
    for (const char *p = r->query; *p != '\0';) {
        size_t pair_len = strcspn(p, "&");
        size_t key_len = strcspn(p, "=&");
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            const char *value = key_len < pair_len ? p + key_len + 1 : p + key_len;
            return form_decode(value, (size_t)(p + pair_len - value), out, size);
        }
        p += pair_len + (p[pair_len] == '&');
    }
    return -ENOENT;
}

/* A decimal number of at most max. */
static bool parse_number(const char *s, unsigned long long max, unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9' || strlen(s) > 19)
        return false;
    char *end;
    *out = strtoull(s, &end, 10);
    return *end == '\0' && *out <= max;
}

/* The numeric parameter name into *out: 0; -ENOENT when absent; -EINVAL
 * when not a number up to max. */
static int number_param(const struct request *r, const char *name, unsigned long long max,
                        unsigned long long *out)
{
    char text[32];
    int rc = query_param(r, name, text, sizeof(text));
    if (rc < 0)
        return rc;
    return parse_number(text, max, out) ? 0 : -EINVAL;
}

/* ---- routes -------------------------------------------------------------------- */

static int route_ok(struct conn *c, struct request *r)
{
    return respond_text(c, r, 200, VS_HTTPD_OK_BODY);
}

static int route_bytes(struct conn *c, struct request *r)
{
    unsigned long long n;
    if (number_param(r, "n", GENERATED_MAX, &n) < 0)
        return respond_text(c, r, 400, "n: a number of bytes up to 1 GiB\n");
    if (send_head(c, r, 200, "application/octet-stream", (long long)n, NULL, MSG_MORE) < 0)
        return -1;
    for (unsigned long long left = n; left > 0;) {
        size_t piece = left < PIECE ? (size_t)left : PIECE;
        if (send_all(c->fd, a_bytes, piece, 0) < 0)
            return -1;
        left -= piece;
    }
    return r->close ? -1 : 0;
}

/* One chunk of a chunked body. */
static int send_chunk(int fd, const void *data, size_t len)
{
    char size_line[32];
    int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    if (send_all(fd, size_line, (size_t)n, MSG_MORE) < 0 || send_all(fd, data, len, MSG_MORE) < 0)
        return -1;
    return send_all(fd, "\r\n", 2, 0);
}

/* Deflate n zero bytes into gzip, sending each piece of output as a chunk. */
static int send_gzip_zeros(int fd, unsigned long long n)
{
    z_stream z = {0};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    unsigned char out[PIECE];
    unsigned long long left = n;
    int zrc = Z_OK, rc = 0;
    while (rc == 0 && zrc != Z_STREAM_END) {
        if (z.avail_in == 0 && left > 0) {
            z.next_in = zeros;
            z.avail_in = left < PIECE ? (uInt)left : PIECE;
            left -= z.avail_in;
        }
        z.next_out = out;
        z.avail_out = sizeof(out);
        zrc = deflate(&z, left == 0 ? Z_FINISH : Z_NO_FLUSH);
        size_t produced = sizeof(out) - z.avail_out;
        if ((zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) ||
            (produced > 0 && send_chunk(fd, out, produced) < 0))
            rc = -1;
    }
    deflateEnd(&z);
    return rc < 0 ? -1 : send_all(fd, "0\r\n\r\n", 5, 0);
}

static int route_gzip_bomb(struct conn *c, struct request *r)
{
    unsigned long long n;
    if (number_param(r, "n", GENERATED_MAX, &n) < 0)
        return respond_text(c, r, 400, "n: a number of bytes up to 1 GiB\n");
    if (send_head(c, r, 200, "text/plain", -1, "Content-Encoding: gzip\r\n", 0) < 0 ||
        send_gzip_zeros(c->fd, n) < 0)
        return -1;
    return r->close ? -1 : 0;
}

static void sleep_ms(unsigned long long ms)
{
    struct timespec left = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

static int route_slow(struct conn *c, struct request *r)
{
    unsigned long long ms = 500;
    int rc = number_param(r, "ms", SLOW_MS_MAX, &ms);
    if (rc < 0 && rc != -ENOENT)
        return respond_text(c, r, 400, "ms: milliseconds up to 600000\n");
    if (send_head(c, r, 200, "text/plain", VS_HTTPD_SLOW_LENGTH, NULL, 0) < 0)
        return -1;
    for (int i = 0; i < VS_HTTPD_SLOW_LENGTH; i++) {
        sleep_ms(ms);
        if (send_all(c->fd, "a", 1, 0) < 0)
            return -1;
    }
    return r->close ? -1 : 0;
}

static int route_redirect(struct conn *c, struct request *r)
{
    char to[HEAD_MAX], location[HEAD_MAX + 16];
    if (query_param(r, "to", to, sizeof(to)) <= 0 || strpbrk(to, "\r\n") != NULL)
        return respond_text(c, r, 400, "to: the URL to redirect to\n");
    snprintf(location, sizeof(location), "Location: %s\r\n", to);
    return respond(c, r, 302, "text/plain", location, "", 0);
}

static int route_injection(struct conn *c, struct request *r)
{
    static const char page[] =
        "<!DOCTYPE html>\n"
        "<html lang=\"en\">\n"
        "<head><meta charset=\"utf-8\"><title>Growing tomatoes on a balcony</title></head>\n"
        "<body>\n"
        "<h1>Growing tomatoes on a balcony</h1>\n"
        "<p>Tomatoes need six to eight hours of sun a day. Choose a pot of at least "
        "twenty litres and water it in the morning. " VS_HTTPD_INJECTION ". Cherry "
        "varieties ripen first and suit small spaces.</p>\n"
        "<p>Feed the plants every two weeks once the first flowers open.</p>\n"
        "</body>\n"
        "</html>\n";
    return respond(c, r, 200, "text/html; charset=utf-8", NULL, page, sizeof(page) - 1);
}

static json_t *search_results(const char *q)
{
    static const struct {
        const char *title_suffix, *url, *content;
    } results[] = {
        {" - Wikipedia", "https://en.wikipedia.org/wiki/Search",
         "An encyclopedia article with an overview, the history and further references."},
        {": a practical guide", "https://guide.example.org/articles/practical-guide",
         "A step-by-step guide with worked examples for beginners."},
        {" explained | Example Docs", "https://docs.example.com/explained",
         "Frequently asked questions and a short explanation of the basics."},
    };
    bool poisoned = strcasestr(q, "poison") != NULL;
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < sizeof(results) / sizeof(results[0]); i++) {
        const char *content = i == 1 && poisoned ? VS_HTTPD_POISONED_CONTENT : results[i].content;
        json_t *result = json_pack("{s:o, s:s, s:s}", "title",
                                   json_sprintf("%s%s", q, results[i].title_suffix), "url",
                                   results[i].url, "content", content);
        if (json_array_append_new(list, result) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    return list;
}

static int route_search(struct conn *c, struct request *r)
{
    char q[HEAD_MAX], format[16];
    if (query_param(r, "format", format, sizeof(format)) < 0 || strcmp(format, "json") != 0)
        return respond_text(c, r, 400, "format: json is the only one\n");
    if (query_param(r, "q", q, sizeof(q)) < 0)
        return respond_text(c, r, 400, "q: the query\n");
    json_t *query = json_string(q);
    if (query == NULL)
        return respond_text(c, r, 400, "q: not UTF-8\n");
    return respond_json(c, r, json_pack("{s:o, s:i, s:o}", "query", query,
                                        "number_of_results", 3, "results", search_results(q)));
}

static int route_echo(struct conn *c, struct request *r)
{
    json_t *headers = json_object();
    for (size_t i = 0; headers != NULL && i < r->nheaders; i++) {
        const char *name = r->headers[i].name, *value = r->headers[i].value;
        json_t *seen = json_object_get(headers, name);
        json_t *joined = seen != NULL ? json_sprintf("%s, %s", json_string_value(seen), value)
                                      : json_string(value);
        if (joined == NULL) {
            json_decref(headers);
            return respond_text(c, r, 400, "a header is not UTF-8\n");
        }
        json_object_set_new(headers, name, joined);
    }
    json_t *target = json_string(r->target);
    json_t *body = json_stringn(r->body != NULL ? r->body : "", r->body_len);
    if (headers == NULL || target == NULL || body == NULL) {
        json_decref(headers);
        json_decref(target);
        json_decref(body);
        return respond_text(c, r, 400, "the target or the body is not UTF-8\n");
    }
    return respond_json(c, r, json_pack("{s:s, s:o, s:o, s:o}", "method", r->method, "target",
                                        target, "body", body, "headers", headers));
}

static int route_status(struct conn *c, struct request *r)
{
    unsigned long long code;
    if (number_param(r, "code", 599, &code) < 0 || code < 200)
        return respond_text(c, r, 400, "code: a status from 200 to 599\n");
    char text[64];
    snprintf(text, sizeof(text), "status %llu %s\n", code, reason((int)code));
    return respond_text(c, r, (int)code, text);
}

static const struct {
    const char *path;
    route_fn fn;
} routes[] = {
    {"/ok", route_ok},
    {"/bytes", route_bytes},
    {"/gzip-bomb", route_gzip_bomb},
    {"/slow", route_slow},
    {"/redirect", route_redirect},
    {"/injection", route_injection},
    {"/search", route_search},
    {"/echo", route_echo},
    {"/status", route_status},
};

static int dispatch(struct conn *c, struct request *r)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strlen(routes[i].path) == r->path_len &&
            memcmp(routes[i].path, r->target, r->path_len) == 0)
            return routes[i].fn(c, r);
    return respond_text(c, r, 404, "not found\n");
}

/* ---- reading requests ---------------------------------------------------------- */

enum { HEAD_GONE = -1, HEAD_TOO_LARGE = -2 };

/* Receive until buf holds a whole request head. Its length (through the
 * blank line); HEAD_GONE when the client closed or failed first;
 * HEAD_TOO_LARGE when buf fills up without one. */
static long read_head(struct conn *c)
{
    for (;;) {
        const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL)
            return end + 4 - c->buf;
        if (c->len == sizeof(c->buf))
            return HEAD_TOO_LARGE;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return HEAD_GONE;
        c->len += (size_t)n;
    }
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", s[i]) != NULL)
            return false;
    return true;
}

/* Whether the comma-separated list contains token (any case). */
static bool list_has(const char *list, const char *token)
{
    size_t len = strlen(token);
    for (const char *p = list; *p != '\0';) {
        p += strspn(p, " \t,");
        size_t item = strcspn(p, ",");
        while (item > 0 && (p[item - 1] == ' ' || p[item - 1] == '\t'))
            item--;
        if (item == len && strncasecmp(p, token, len) == 0)
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

static const char *header(const struct request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* The request line: METHOD SP TARGET SP HTTP/1.x, NUL-terminated in place. */
static bool parse_request_line(char *line, struct request *r, bool *http10)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp2 == NULL || !is_token(line, (size_t)(sp1 - line)) || sp1[1] != '/')
        return false;
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return false;
    *sp1 = *sp2 = '\0';
    for (const char *t = sp1 + 1; *t != '\0'; t++)
        if (*t <= ' ' || *t == 0x7f)
            return false;
    r->method = line;
    r->target = sp1 + 1;
    r->path_len = strcspn(r->target, "?");
    r->query = r->target[r->path_len] == '?' ? r->target + r->path_len + 1 : "";
    *http10 = strcmp(version, "HTTP/1.0") == 0;
    return true;
}

/* Parse the head's headers (lines after the request line, each NUL-
 * terminated in place; names lowercased). false: malformed or too many. */
static bool parse_headers(char *lines, struct request *r)
{
    for (char *line = lines; *line != '\0';) {
        char *eol = strstr(line, "\r\n");
        *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon == NULL || !is_token(line, (size_t)(colon - line)) ||
            r->nheaders == HEADERS_MAX)
            return false;
        *colon = '\0';
        for (char *ch = line; *ch != '\0'; ch++)
            *ch = (char)tolower((unsigned char)*ch);
        char *value = colon + 1 + strspn(colon + 1, " \t");
        for (char *end = eol; end > value && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = '\0';
        r->headers[r->nheaders++] = (struct header){.name = line, .value = value};
        line = eol + 2;
    }
    return true;
}

/* The body (length bytes) into r: what buf already holds after the head,
 * then the rest from the socket (after a 100 Continue when the client
 * waits for one). The number of its bytes taken from buf, or -1 when the
 * client went away. */
static int read_body(struct conn *c, struct request *r, size_t head_len, size_t length)
{
    size_t buffered = c->len - head_len < length ? c->len - head_len : length;
    r->body = malloc(length + 1);
    if (r->body == NULL)
        return -1;
    memcpy(r->body, c->buf + head_len, buffered);
    const char *expect = header(r, "expect");
    if (buffered < length && expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
        send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0) < 0)
        return -1;
    for (size_t got = buffered; got < length;) {
        ssize_t n = recv(c->fd, r->body + got, length - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    r->body[length] = '\0';
    r->body_len = length;
    return (int)buffered;
}

/* Read, parse and answer one request. 0: the connection goes on; -1: close. */
static int serve_request(struct conn *c)
{
    struct request r = {.close = false};
    long head_len = read_head(c);
    if (head_len == HEAD_GONE)
        return -1;
    if (head_len == HEAD_TOO_LARGE)
        return refuse(c, &r, 431, "request head over 16 KiB\n");
    if (memchr(c->buf, '\0', (size_t)head_len) != NULL)
        return refuse(c, &r, 400, "NUL in the request head\n");
    char *lines = memmem(c->buf, (size_t)head_len, "\r\n", 2);
    *lines = '\0';
    bool http10;
    if (!parse_request_line(c->buf, &r, &http10))
        return refuse(c, &r, 400, "malformed request line\n");
    c->buf[head_len - 2] = '\0'; /* the blank line ends the header lines */
    if (!parse_headers(lines + 2, &r))
        return refuse(c, &r, 400, "malformed header\n");
    const char *connection = header(&r, "connection");
    r.close = connection != NULL && list_has(connection, "close");
    if (http10 && (connection == NULL || !list_has(connection, "keep-alive")))
        r.close = true;
    if (header(&r, "transfer-encoding") != NULL)
        return refuse(c, &r, 501, "chunked request bodies are not supported\n");
    const char *content_length = header(&r, "content-length");
    unsigned long long length = 0;
    if (content_length != NULL && !parse_number(content_length, ULLONG_MAX, &length))
        return refuse(c, &r, 400, "malformed Content-Length\n");
    if (length > BODY_MAX)
        return refuse(c, &r, 413, "request body over 1 MiB\n");
    int from_buffer = length > 0 ? read_body(c, &r, (size_t)head_len, (size_t)length) : 0;
    int rc = -1;
    if (from_buffer >= 0) {
        size_t consumed = (size_t)head_len + (size_t)from_buffer;
        rc = dispatch(c, &r);
        memmove(c->buf, c->buf + consumed, c->len - consumed);
        c->len -= consumed;
    }
    free(r.body);
    return rc;
}

/* Close after the last response: FIN first, then what the client still
 * sends is read and dropped (up to 1 MiB, 1 s of silence), so that unread
 * input does not turn the close into a reset that destroys the response
 * in flight. */
static void close_lingering(int fd)
{
    shutdown(fd, SHUT_WR);
    struct timeval patience = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    char sink[4096];
    ssize_t n;
    for (size_t dropped = 0; dropped < BODY_MAX && (n = recv(fd, sink, sizeof(sink), 0)) > 0;)
        dropped += (size_t)n;
    close(fd);
}

static void *serve_connection(void *arg)
{
    struct conn *c = arg;
    while (serve_request(c) == 0)
        ;
    close_lingering(c->fd);
    free(c);
    return NULL;
}

/* ---- the server process -------------------------------------------------------- */

/* A socket listening on 127.0.0.1 on an ephemeral port: the descriptor,
 * with the port in *port; or -errno. */
static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 512) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void start_connection(int fd, struct vs_httpd_counters *counters,
                             const pthread_attr_t *attr)
{
    __atomic_fetch_add(&counters->connections, 1, __ATOMIC_RELAXED);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = malloc(sizeof(*c));
    pthread_t thread;
    if (c != NULL) {
        *c = (struct conn){.fd = fd, .counters = counters};
        if (pthread_create(&thread, attr, serve_connection, c) == 0)
            return;
    }
    free(c);
    close(fd);
}

/* The child: listen, tell the parent the port (or -errno) through
 * report_fd, then accept until killed. */
static _Noreturn void serve(int report_fd, struct vs_httpd_counters *counters, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    /* Only stdio, the report pipe (as 3) and the listening socket stay open. */
    if (dup2(report_fd, 3) < 0 || close_range(4, ~0U, 0) < 0)
        _exit(1);
    signal(SIGPIPE, SIG_IGN);
    memset(a_bytes, 'a', sizeof(a_bytes));
    int port = 0;
    int fd = listen_loopback(&port);
    int report = fd < 0 ? fd : port;
    ssize_t sent = write(3, &report, sizeof(report));
    close(3);
    if (fd < 0 || sent != (ssize_t)sizeof(report))
        _exit(1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    for (;;) {
        int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (client >= 0)
            start_connection(client, counters, &attr);
        else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            usleep(10 * 1000);
        else if (errno != EINTR && errno != ECONNABORTED)
            _exit(1);
    }
}

/* ---- the test's side ----------------------------------------------------------- */

/* The child's report: its port, or -errno. */
static int read_report(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready;
    while ((ready = poll(&p, 1, START_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (ready <= 0)
        return ready == 0 ? -ETIMEDOUT : -errno;
    int report;
    ssize_t n = read(fd, &report, sizeof(report));
    if (n != (ssize_t)sizeof(report))
        return n < 0 ? -errno : -ECHILD; /* it died before listening */
    return report;
}

int vs_httpd_start(struct vs_httpd *h)
{
    memset(h, 0, sizeof(*h));
    void *page = mmap(NULL, sizeof(*h->counters), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return -errno;
    h->counters = page;
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        int e = errno;
        vs_httpd_stop(h);
        return -e;
    }
    pid_t parent = getpid();
    h->pid = fork();
    if (h->pid == 0)
        serve(pipe_fds[1], h->counters, parent);
    int rc = h->pid < 0 ? -errno : 0;
    close(pipe_fds[1]);
    if (rc == 0)
        rc = read_report(pipe_fds[0]);
    close(pipe_fds[0]);
    if (rc <= 0) {
        if (h->pid < 0)
            h->pid = 0;
        vs_httpd_stop(h);
        return rc < 0 ? rc : -EPROTO;
    }
    h->port = rc;
    snprintf(h->base, sizeof(h->base), "http://127.0.0.1:%d", h->port);
    return 0;
}

void vs_httpd_stop(struct vs_httpd *h)
{
    if (h->pid > 0)
        vs_proc_kill(h->pid);
    h->pid = 0;
    if (h->counters != NULL)
        munmap(h->counters, sizeof(*h->counters));
    h->counters = NULL;
}

uint64_t vs_httpd_connections(const struct vs_httpd *h)
{
    return h->counters != NULL ? __atomic_load_n(&h->counters->connections, __ATOMIC_RELAXED) : 0;
}

uint64_t vs_httpd_requests(const struct vs_httpd *h)
{
    return h->counters != NULL ? __atomic_load_n(&h->counters->requests, __ATOMIC_RELAXED) : 0;
}
