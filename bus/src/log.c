/*
 * log.c - logfmt lines on stderr for every VibeShield program (vs/log.h).
 *
 * A line looks like
 *   ts=2026-12-04T16:06:37.123Z level=info comp=auditd pid=123 msg="text"
 * and log_warn/fatal append err="<strerror(errno)>".
 *
 * Why it is shaped this way:
 * - Each line is built in a stack buffer and handed to a single write(2),
 *   so lines from several threads or processes sharing stderr never
 *   interleave. A line is at most VS_LOG_LINE_MAX (4096) bytes, which is
 *   PIPE_BUF on Linux: a write of that size to a pipe is atomic. Longer
 *   messages are cut at a character boundary and the line gets
 *   " truncated=true" after the closing quote.
 * - msg and err are always quoted and escaped (\" \\ \n \r \t, \xNN for
 *   other control bytes, C1 controls and invalid UTF-8), because messages
 *   carry strings that came off the bus: a hostile value must not be able to
 *   end the line or add a key=value pair outside the quotes.
 * - No lock: the level is an atomic int and the component name an array of
 *   atomic chars, so log_init may run again (after the config file is read)
 *   while other threads log, and a child forked while another thread was
 *   logging cannot inherit a held lock. A line written during a concurrent
 *   log_init may show a mix of the old and new names, never garbage.
 * - Only write, clock_gettime and getpid are used per line, so logging keeps
 *   working after the daemon narrowed itself with seccomp.
 * Not async-signal-safe (vsnprintf): do not log from signal handlers.
 */
#include "vs/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VS_LOG_LINE_MAX 4096
#define VS_LOG_COMP_MAX 32
/* Written after the closing quote of a message that did not fit. */
#define TRUNC_MARK " truncated=true"

/* Lowest level printed, and the component name (NUL-terminated unless all
 * VS_LOG_COMP_MAX chars are used). Empty name: the program's name. */
static atomic_int min_level = VS_LOG_INFO;
static _Atomic char comp_name[VS_LOG_COMP_MAX];

/* Level names; the extra "fatal" is printed by fatal/fatalx. */
static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Set the component name and threshold. A name longer than 31 bytes is cut;
 * characters other than [A-Za-z0-9._-] are printed as '_'. NULL or "" means
 * the program's name. */
void log_init(const char *component, enum vs_log_level level)
{
    size_t i = 0;

    if (component != NULL)
        for (; i < VS_LOG_COMP_MAX - 1 && component[i] != '\0'; i++)
            atomic_store_explicit(&comp_name[i], component[i], memory_order_relaxed);
    atomic_store_explicit(&comp_name[i], '\0', memory_order_relaxed);
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

int log_level_parse(const char *name, enum vs_log_level *out)
{
    for (size_t i = 0; name != NULL && i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum vs_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes) that is
 * not a C1 control (U+0080..U+009F), or 0. Overlong forms, surrogates and
 * code points past U+10FFFF count as malformed. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        if (p[0] == 0xc2)
            lo = 0xa0; /* U+0080..U+009F are C1 controls */
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        else if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        else if (p[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Append s, escaped as the inside of a logfmt quoted value, to dst[*pos..cap).
 * Never splits an escape or a UTF-8 sequence. Returns false if s did not fit
 * (what fit is kept). */
static bool put_escaped(char *dst, size_t *pos, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    while (n > 0) {
        char tmp[4];
        const char *src = tmp;
        size_t len = 2, adv = 1;

        tmp[0] = '\\';
        switch (p[0]) {
        case '"': tmp[1] = '"'; break;
        case '\\': tmp[1] = '\\'; break;
        case '\n': tmp[1] = 'n'; break;
        case '\r': tmp[1] = 'r'; break;
        case '\t': tmp[1] = 't'; break;
        default:
            if (p[0] >= 0x20 && p[0] < 0x7f) {
                src = (const char *)p;
                len = 1;
            } else if (p[0] >= 0x80 && (adv = utf8_len(p, n)) != 0) {
                src = (const char *)p;
                len = adv;
            } else {
                tmp[1] = 'x';
                tmp[2] = hex[p[0] >> 4];
                tmp[3] = hex[p[0] & 0xf];
                len = 4;
                adv = 1;
            }
        }
        if (cap - *pos < len)
            return false;
        memcpy(dst + *pos, src, len);
        *pos += len;
        p += adv;
        n -= adv;
    }
    return true;
}

/* Append the component name, or the program's name before log_init, with
 * characters outside [A-Za-z0-9._-] shown as '_'. dst has room. */
static void put_component(char *dst, size_t *pos)
{
    char name[VS_LOG_COMP_MAX];
    size_t n = 0;

    for (; n < VS_LOG_COMP_MAX; n++) {
        name[n] = atomic_load_explicit(&comp_name[n], memory_order_relaxed);
        if (name[n] == '\0')
            break;
    }
    if (n == 0) {
        n = strnlen(program_invocation_short_name, VS_LOG_COMP_MAX - 1);
        memcpy(name, program_invocation_short_name, n);
    }
    if (n == 0)
        name[n++] = '-';
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        dst[(*pos)++] = ok ? c : '_';
    }
}

/* Build one line and write it to stderr with one write(2) (retried on EINTR
 * or a short write). level_name is "fatal" or a level_names entry; err is
 * the errno to show as err=..., or 0 for none. */
__attribute__((format(printf, 3, 0))) static void emit(const char *level_name, int err,
                                                     const char *fmt, va_list ap)
{
    char msg[VS_LOG_LINE_MAX];
    char line[VS_LOG_LINE_MAX];
    char errbuf[128];
    const char *errstr = NULL;
    struct timespec ts;
    struct tm tm;
    size_t pos, cap, tail;
    bool cut;
    int n;

    n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        msg[0] = '\0';
    cut = n >= (int)sizeof msg;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    pos = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + pos, sizeof line - pos, ".%03ldZ level=%s comp=", ts.tv_nsec / 1000000L,
                 level_name);
    pos += (size_t)n;
    put_component(line, &pos);
    n = snprintf(line + pos, sizeof line - pos, " pid=%ld msg=\"", (long)getpid());
    pos += (size_t)n;

    /* Room kept after msg: closing quote, err="..." (escaping can make
     * strerror's text at most 4 times longer), the marker and '\n'. */
    if (err != 0)
        errstr = strerror_r(err, errbuf, sizeof errbuf);
    tail = 1 + (errstr ? sizeof " err=\"\"" - 1 + 4 * strlen(errstr) : 0) +
           sizeof TRUNC_MARK - 1 + 1;
    cap = sizeof line - tail;
    if (!put_escaped(line, &pos, cap, msg))
        cut = true;
    line[pos++] = '"';
    if (errstr != NULL) {
        memcpy(line + pos, " err=\"", 6);
        pos += 6;
        put_escaped(line, &pos, sizeof line, errstr);
        line[pos++] = '"';
    }
    if (cut) {
        memcpy(line + pos, TRUNC_MARK, sizeof TRUNC_MARK - 1);
        pos += sizeof TRUNC_MARK - 1;
    }
    line[pos++] = '\n';

    for (size_t off = 0; off < pos;) {
        ssize_t w = write(STDERR_FILENO, line + off, pos - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

/* Log at level unless it is below the threshold; errno is left as it was.
 * with_err: append err= for the errno seen at entry. */
__attribute__((format(printf, 3, 0))) static void vlog(enum vs_log_level level, bool with_err,
                                                     const char *fmt, va_list ap)
{
    int saved = errno;

    if ((int)level >= atomic_load_explicit(&min_level, memory_order_relaxed))
        emit(level_names[level], with_err ? saved : 0, fmt, ap);
    errno = saved;
}

void log_debug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(VS_LOG_DEBUG, false, fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(VS_LOG_INFO, false, fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(VS_LOG_WARN, true, fmt, ap);
    va_end(ap);
}

void log_warnx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(VS_LOG_WARN, false, fmt, ap);
    va_end(ap);
}

/* fatal/fatalx print level=fatal whatever the threshold, then exit(1). */
void fatal(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    emit("fatal", saved, fmt, ap);
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("fatal", 0, fmt, ap);
    va_end(ap);
    exit(1);
}
