/*
 * test_sandbox_steer.c - a sandbox steered while it runs, as vs-sandboxd
 * does it (vs_sandbox_start / _wait on a thread / _finish / _kill /
 * _set_memory), with the snapshot read from a pipe as it is written.
 *
 * Checked: finish ends a program that would run a minute, and the
 * snapshot written afterwards holds what it wrote; kill ends the sandbox
 * at once with kill reason "watchdog" and no snapshot; a memory limit can
 * be raised while the sandbox runs where a cgroup enforces it, and the
 * call says -ENOTSUP where only rlimits do; a second sandbox started while
 * the first runs does not hold the first one's snapshot pipe open (the
 * first reader sees its end when its own sandbox is done).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vs/sandbox.h"

#define READ_MAX (1u << 20)

struct steered {
    struct vs_sandbox_policy p;
    struct vs_sandbox_result r;
    vs_sandbox *sb;
    pthread_t waiter, reader;
    int snap[2];
    int wait_rc;
    char *snapshot;       /* what the pipe carried */
    size_t snapshot_len;
};

static void *wait_thread(void *arg)
{
    struct steered *s = arg;
    s->wait_rc = vs_sandbox_wait(s->sb);
    return NULL;
}

static void *read_thread(void *arg)
{
    struct steered *s = arg;
    s->snapshot = malloc(READ_MAX);
    for (ssize_t n; s->snapshot != NULL && s->snapshot_len < READ_MAX &&
                    (n = read(s->snap[0], s->snapshot + s->snapshot_len,
                              READ_MAX - s->snapshot_len)) > 0;)
        s->snapshot_len += (size_t)n;
    return NULL;
}

/* Start sh -c script with a snapshot pipe, its supervisor and a reader.
 * The caller closes s->snap[1] (init holds its own copy): until then the
 * launcher holds it, as a daemon does while another thread starts a
 * sandbox. */
static void start(struct steered *s, const char *script, uint64_t memory)
{
    memset(s, 0, sizeof *s);
    vs_sandbox_policy_init(&s->p);
    s->p.time_limit_ms = 60000;
    s->p.memory_bytes = memory;
    s->p.pids = 64;
    s->p.snapshot_max_bytes = 1 << 20;
    assert_int_equal(pipe2(s->snap, O_CLOEXEC), 0);
    s->p.snapshot_fd = s->snap[1];
    static char *argv[4];
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = (char *)script;
    argv[3] = NULL;
    int rc = vs_sandbox_start(&s->p, argv, &s->r, &s->sb);
    if (rc < 0)
        fail_msg("start: %s", s->r.setup_error);
    assert_int_equal(pthread_create(&s->waiter, NULL, wait_thread, s), 0);
    assert_int_equal(pthread_create(&s->reader, NULL, read_thread, s), 0);
}

/* Wait for the sandbox and its snapshot's reader. */
static void join(struct steered *s)
{
    assert_int_equal(pthread_join(s->waiter, NULL), 0);
    assert_int_equal(pthread_join(s->reader, NULL), 0);
}

static void release(struct steered *s)
{
    close(s->snap[0]);
    vs_sandbox_free(s->sb);
    free(s->snapshot);
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_finish_takes_the_snapshot(void **state)
{
    (void)state;
    struct steered s;
    start(&s, "echo 'the answer' > /workspace/out/answer.txt; sleep 60", 0);
    close(s.snap[1]);
    pause_ms(500);
    assert_int_equal(vs_sandbox_finish(s.sb), 0);
    join(&s);
    assert_int_equal(s.wait_rc, 0);
    assert_true(s.r.wall_ms < 30000);
    assert_int_equal(s.r.kill_reason, VS_KILL_NONE);
    assert_int_equal(s.r.signal, 9); /* init ended it */
    assert_non_null(memmem(s.snapshot, s.snapshot_len, "answer.txt", 10));
    assert_non_null(memmem(s.snapshot, s.snapshot_len, "the answer\n", 11));
    assert_int_equal(vs_sandbox_finish(s.sb), -EALREADY);
    release(&s);
}

static void test_kill(void **state)
{
    (void)state;
    struct steered s;
    start(&s, "echo partial > /workspace/out/p.txt; sleep 60", 0);
    close(s.snap[1]);
    pause_ms(300);
    assert_int_equal(vs_sandbox_kill(s.sb), 0);
    join(&s);
    assert_true(s.r.wall_ms < 30000);
    assert_int_equal(s.r.kill_reason, VS_KILL_WATCHDOG);
    assert_int_equal(vs_sandbox_exit_status(&s.r), VS_SANDBOX_EXIT_STOPPED);
    assert_string_equal(vs_kill_reason_name(s.r.kill_reason), "watchdog");
    assert_int_equal(s.snapshot_len, 0); /* killed: no snapshot */
    release(&s);
}

static void test_set_memory(void **state)
{
    (void)state;
    struct steered s;
    start(&s, "sleep 60", 64u << 20);
    close(s.snap[1]);
    pause_ms(200);
    int rc = vs_sandbox_set_memory(s.sb, 128u << 20);
    if (s.r.limit_mode == VS_LIMITS_RLIMIT)
        assert_int_equal(rc, -ENOTSUP);
    else
        assert_int_equal(rc, 0);
    assert_int_equal(vs_sandbox_kill(s.sb), 0);
    join(&s);
    assert_int_equal(vs_sandbox_set_memory(s.sb, 256u << 20), -EALREADY);
    release(&s);
}

static void test_sandboxes_do_not_share_descriptors(void **state)
{
    (void)state;
    struct steered a, b;
    start(&a, "echo a > /workspace/out/a.txt", 0);
    start(&b, "sleep 60", 0); /* started while the launcher holds a's pipe */
    close(a.snap[1]);
    close(b.snap[1]);
    /* a's reader sees the end of a's snapshot once a is done, although b
     * still runs (b's init must not hold a's pipe open) */
    assert_int_equal(pthread_join(a.waiter, NULL), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    assert_int_equal(pthread_timedjoin_np(a.reader, NULL, &deadline), 0);
    assert_int_equal(a.r.exit_code, 0);
    assert_non_null(memmem(a.snapshot, a.snapshot_len, "a.txt", 5));
    assert_int_equal(vs_sandbox_kill(b.sb), 0);
    join(&b);
    release(&a);
    release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finish_takes_the_snapshot),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_set_memory),
        cmocka_unit_test(test_sandboxes_do_not_share_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
