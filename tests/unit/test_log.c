/*
 * test_log.c - the logfmt lines of vs/log.h.
 *
 * stderr is pointed at an unlinked temporary file while a test logs, then
 * put back and the file read; fatal/fatalx run in a forked child. Lines are
 * checked both as exact text and with a small logfmt tokenizer, so that an
 * escaping bug that lets a message forge a key=value pair (or a second
 * line) fails even if the text happens to look plausible.
 */
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vs/log.h"

#define LINE_MAX_BYTES 4096

static int cap_fd = -1, saved_stderr = -1;

/* Send stderr to a fresh unlinked temporary file. */
static void capture_start(void)
{
    char path[] = "/tmp/vs-test-log-XXXXXX";

    cap_fd = mkstemp(path);
    assert_true(cap_fd >= 0);
    unlink(path);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(cap_fd, STDERR_FILENO) >= 0);
}

/* Put stderr back and return what was written (malloc'd, NUL-ended). */
static char *capture_end(void)
{
    off_t size;
    char *buf;

    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    size = lseek(cap_fd, 0, SEEK_END);
    assert_true(size >= 0);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(cap_fd, buf, (size_t)size, 0), size);
    buf[size] = '\0';
    close(cap_fd);
    return buf;
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == c;
    return n;
}

struct field {
    char key[16];
    const char *val; /* raw: quotes and escapes kept */
    size_t len;
};

/* Tokenize one logfmt line (without its '\n'): key=bare or key="quoted"
 * separated by single spaces. Returns the number of fields, or -1 if the
 * line is not well-formed logfmt. */
static int logfmt(const char *line, struct field *f, int max)
{
    int n = 0;

    while (*line != '\0') {
        const char *eq = strchr(line, '='), *v;
        if (eq == NULL || eq == line || (size_t)(eq - line) >= sizeof f->key || n == max)
            return -1;
        memcpy(f[n].key, line, (size_t)(eq - line));
        f[n].key[eq - line] = '\0';
        if (strcspn(f[n].key, " \"\\") != strlen(f[n].key))
            return -1;
        v = eq + 1;
        if (*v == '"') {
            const char *p = v + 1;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    return -1;
                p += *p == '\\' ? 2 : 1;
            }
            line = p + 1;
        } else {
            line = v + strcspn(v, " \"");
        }
        f[n].val = v;
        f[n].len = (size_t)(line - v);
        n++;
        if (*line == ' ')
            line++;
        else if (*line != '\0')
            return -1;
    }
    return n;
}

/* The one line in out (it must end with '\n' and contain no other), split
 * into fields; checks that the first five are ts level comp pid msg. */
static int fields_of(char *out, struct field *f, int max)
{
    assert_int_equal(count_char(out, '\n'), 1);
    assert_int_equal(out[strlen(out) - 1], '\n');
    out[strlen(out) - 1] = '\0';
    int n = logfmt(out, f, max);
    assert_true(n >= 5);
    const char *keys[] = {"ts", "level", "comp", "pid", "msg"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(f[i].key, keys[i]);
    return n;
}

static void assert_field(const struct field *f, const char *want)
{
    if (f->len != strlen(want) || memcmp(f->val, want, f->len) != 0)
        fail_msg("%s=%.*s, want %s", f->key, (int)f->len, f->val, want);
}

static void test_default_component(void **state)
{
    (void)state;
    /* before any log_init: program name, level info */
    capture_start();
    log_debug("hidden");
    log_info("shown");
    char *out = capture_end();
    char want[128];
    snprintf(want, sizeof want, " comp=%s pid=%ld msg=\"shown\"\n", program_invocation_short_name,
             (long)getpid());
    assert_non_null(strstr(out, want));
    free(out);
}

static void test_line_format(void **state)
{
    (void)state;
    regex_t re;
    char pattern[256];

    log_init("auditd", VS_LOG_INFO);
    capture_start();
    log_info("hello %d %s", 42, "world");
    char *out = capture_end();

    snprintf(pattern, sizeof pattern,
             "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
             "level=info comp=auditd pid=%ld msg=\"hello 42 world\"\n$",
             (long)getpid());
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    if (regexec(&re, out, 0, NULL, 0) != 0)
        fail_msg("line does not match: %s", out);
    regfree(&re);
    free(out);
}

static void test_escaping_cannot_forge(void **state)
{
    (void)state;
    struct field f[8];

    log_init("auditd", VS_LOG_INFO);
    capture_start();
    log_info("%s", "x\"\n level=error comp=evil \\ \t\r\x01\x7f end");
    char *out = capture_end();
    assert_non_null(strstr(out, " msg=\"x\\\"\\n level=error comp=evil \\\\ \\t\\r\\x01\\x7f end\"\n"));
    int n = fields_of(out, f, 8);
    assert_int_equal(n, 5);
    assert_field(&f[1], "info");
    assert_field(&f[2], "auditd");
    free(out);

    /* bytes that are not text: invalid UTF-8, C1 controls (NEL), while
     * well-formed UTF-8 stays readable */
    capture_start();
    log_info("%s", "caf\xc3\xa9 \xff \xc2\x85 \xe2\x82 \xed\xa0\x80 \xf0\x9f\x99\x82");
    out = capture_end();
    assert_non_null(strstr(out, " msg=\"caf\xc3\xa9 \\xff \\xc2\\x85 \\xe2\\x82 "
                                "\\xed\\xa0\\x80 \xf0\x9f\x99\x82\"\n"));
    assert_int_equal(fields_of(out, f, 8), 5);
    free(out);

    /* the component is printed unquoted, so it is restricted too */
    log_init("bad name\n level=x\"", VS_LOG_INFO);
    capture_start();
    log_info("m");
    out = capture_end();
    assert_int_equal(fields_of(out, f, 8), 5);
    assert_field(&f[2], "bad_name__level_x_");
    free(out);

    log_init("a-very-long-component-name-that-goes-on", VS_LOG_INFO);
    capture_start();
    log_info("m");
    out = capture_end();
    assert_int_equal(fields_of(out, f, 8), 5);
    assert_field(&f[2], "a-very-long-component-name-that");
    free(out);
}

static void test_level_filtering(void **state)
{
    (void)state;
    struct field f[8];

    log_init("t", VS_LOG_WARN);
    capture_start();
    log_debug("d");
    log_info("i");
    log_warnx("w");
    char *out = capture_end();
    fields_of(out, f, 8);
    assert_field(&f[1], "warn");
    assert_field(&f[4], "\"w\"");
    free(out);

    log_init("t", VS_LOG_ERROR);
    capture_start();
    log_info("i");
    log_warn("w");
    log_warnx("w");
    out = capture_end();
    assert_string_equal(out, "");
    free(out);

    log_init("t", VS_LOG_DEBUG);
    capture_start();
    log_debug("d");
    log_info("i");
    out = capture_end();
    assert_int_equal(count_char(out, '\n'), 2);
    assert_non_null(strstr(out, " level=debug comp=t "));
    assert_non_null(strstr(out, " level=info comp=t "));
    free(out);
}

static void test_warn_appends_errno(void **state)
{
    (void)state;
    struct field f[8];

    log_init("t", VS_LOG_INFO);
    capture_start();
    errno = ENOENT;
    log_warn("open %s", "/x");
    int after = errno;
    char *out = capture_end();
    assert_int_equal(after, ENOENT); /* logging leaves errno alone */
    assert_int_equal(fields_of(out, f, 8), 6);
    assert_field(&f[1], "warn");
    assert_field(&f[4], "\"open /x\"");
    assert_string_equal(f[5].key, "err");
    assert_field(&f[5], "\"No such file or directory\"");
    free(out);

    /* errno is read at entry, before the message is formatted */
    capture_start();
    errno = EACCES;
    log_warn("%s", strerror(ENOENT));
    out = capture_end();
    assert_non_null(strstr(out, "msg=\"No such file or directory\" err=\"Permission denied\"\n"));
    free(out);

    capture_start();
    errno = ENOENT;
    log_warnx("no err");
    out = capture_end();
    assert_int_equal(fields_of(out, f, 8), 5);
    free(out);
}

static void test_truncation(void **state)
{
    (void)state;
    struct field f[8];
    char *big = malloc(10000);

    assert_non_null(big);
    log_init("t", VS_LOG_INFO);
    for (int quote = 0; quote < 2; quote++) {
        /* plain text, then text that doubles when escaped */
        memset(big, quote ? '"' : 'a', 9999);
        big[9999] = '\0';
        capture_start();
        errno = EIO;
        log_warn("%s", big);
        char *out = capture_end();
        assert_true(strlen(out) <= LINE_MAX_BYTES);
        assert_true(strlen(out) > LINE_MAX_BYTES - 64);
        assert_int_equal(fields_of(out, f, 8), 7);
        assert_field(&f[5], "\"Input/output error\"");
        assert_string_equal(f[6].key, "truncated");
        assert_field(&f[6], "true");
        /* never cut inside an escape: the value is whole \" pairs */
        if (quote)
            assert_int_equal((f[4].len - 2) % 2, 0);
        free(out);
    }
    /* a message that just fits is not marked */
    memset(big, 'a', 3000);
    big[3000] = '\0';
    capture_start();
    log_info("%s", big);
    char *out = capture_end();
    assert_int_equal(fields_of(out, f, 8), 5);
    free(out);
    free(big);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum vs_log_level l = VS_LOG_ERROR;

    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, VS_LOG_DEBUG);
    assert_int_equal(log_level_parse("info", &l), 0);
    assert_int_equal(l, VS_LOG_INFO);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, VS_LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, VS_LOG_ERROR);
    static const char *const bad[] = {"", "Info", "warning", "fatal", "debug ", "err"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(log_level_parse(bad[i], &l), -EINVAL);
    assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
    assert_int_equal(l, VS_LOG_ERROR);
}

/* Run fatal (with_errno) or fatalx in a child whose stderr is captured;
 * returns the child's wait status and its output. */
static char *run_fatal(bool with_errno, int *status)
{
    capture_start();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the threshold does not silence fatal */
        log_init("child", VS_LOG_ERROR);
        errno = EPIPE;
        if (with_errno)
            fatal("cannot go on: %d", 7);
        fatalx("cannot go on: %d", 7);
    }
    assert_int_equal(waitpid(pid, status, 0), pid);
    return capture_end();
}

static void test_fatal_exits_1(void **state)
{
    (void)state;
    struct field f[8];
    int status;

    char *out = run_fatal(false, &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_int_equal(fields_of(out, f, 8), 5);
    assert_field(&f[1], "fatal");
    assert_field(&f[2], "child");
    assert_field(&f[4], "\"cannot go on: 7\"");
    free(out);

    out = run_fatal(true, &status);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_int_equal(fields_of(out, f, 8), 6);
    assert_field(&f[5], "\"Broken pipe\"");
    free(out);
}

enum { THREADS = 4, LINES_PER_THREAD = 300 };

static void *log_lines(void *arg)
{
    char msg[2000];
    int id = (int)(intptr_t)arg;

    memset(msg, 'a' + id, sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        log_info("t%d %s", id, msg);
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    struct field f[8];

    log_init("t", VS_LOG_INFO);
    capture_start();
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_lines, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    char *out = capture_end();

    int lines = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char save = nl[1];
        nl[1] = '\0';
        fields_of(line, f, 8);
        nl[1] = save;
        /* msg="tN cccc...": one thread's characters only */
        int id = f[4].val[2] - '0';
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(f[4].len, 2 + 3 + 1999);
        for (size_t i = 4; i < f[4].len - 1; i++)
            if (f[4].val[i] != 'a' + id)
                fail_msg("line %d mixes output", lines);
        lines++;
    }
    assert_int_equal(lines, THREADS * LINES_PER_THREAD);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_component),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_escaping_cannot_forge),
        cmocka_unit_test(test_level_filtering),
        cmocka_unit_test(test_warn_appends_errno),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_fatal_exits_1),
        cmocka_unit_test(test_threads_do_not_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
