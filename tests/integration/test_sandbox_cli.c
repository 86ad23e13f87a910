/*
 * test_sandbox_cli.c - the vs-sandbox command-line contract other tools rely
 * on (DESIGN.md section 10): exit codes (the program's own, 128+signal,
 * >= 200 for setup failures and policy kills), the --json result, the
 * environment and descriptors a program gets, --help, the seccomp export,
 * and the message when user namespaces are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <seccomp.h>

#include "natsd.h"
#include "proc.h"

#ifndef VS_SANDBOX_BIN
#error "vs-sandbox is not built (sandboxd/vs-sandbox.c)"
#endif

struct run {
    int status;      /* exit status of vs-sandbox */
    char out[262144]; /* stdout */
    char err[8192];  /* stderr */
    json_t *json;    /* the last line of stderr, when --json */
};

static void slurp(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f != NULL)
        fclose(f);
}

/* Run vs-sandbox with argv (NULL-terminated, without argv[0]); before the
 * exec, the child may install a seccomp filter (deny_userns). */
static void run(struct run *r, bool deny_userns, const char *const *args)
{
    char dir[] = "/tmp/vs-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char outp[64], errp[64];
    snprintf(outp, sizeof(outp), "%s/out", dir);
    snprintf(errp, sizeof(errp), "%s/err", dir);
    const char *argv[64] = {VS_SANDBOX_BIN};
    size_t n = 1;
    for (; args[n - 1] != NULL && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT, 0600), e = open(errp, O_WRONLY | O_CREAT, 0600);
        dup2(o, 1);
        dup2(e, 2);
        setenv("SECRET_TOKEN", "must-not-leak", 1);
        if (deny_userns) {
            /* What an AppArmor userns restriction looks like to a program. */
            scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
            if (seccomp_load(ctx) < 0)
                _exit(99);
        }
        execv(argv[0], (char *const *)argv);
        _exit(98);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    r->status = WEXITSTATUS(st);
    slurp(outp, r->out, sizeof(r->out));
    slurp(errp, r->err, sizeof(r->err));
    vs_rmtree(dir);
    r->json = NULL;
    const char *last = strrchr(r->err, '{');
    while (last != NULL && last > r->err && last[-1] != '\n')
        last = memrchr(r->err, '{', (size_t)(last - r->err));
    if (last != NULL)
        r->json = json_loads(last, JSON_DISABLE_EOF_CHECK, NULL);
}

static const char *jstr(const struct run *r, const char *key)
{
    assert_non_null(r->json);
    return json_string_value(json_object_get(r->json, key));
}

static json_int_t jint(const struct run *r, const char *key)
{
    assert_non_null(r->json);
    return json_integer_value(json_object_get(r->json, key));
}

static void test_exit_status_and_json(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--json", "--", "/bin/sh", "-c", "exit 7", NULL});
    assert_int_equal(r.status, 7);
    assert_int_equal(jint(&r, "exit_code"), 7);
    assert_string_equal(jstr(&r, "kill_reason"), "none");
    json_t *limits = json_object_get(r.json, "limits");
    assert_non_null(json_object_get(limits, "mode"));
    assert_non_null(json_object_get(r.json, "wall_ms"));
    assert_non_null(json_object_get(r.json, "cpu_ms"));
    assert_non_null(json_object_get(r.json, "peak_memory_bytes"));
    assert_true(jint(&r, "host_uid") != 0);
    json_decref(r.json);
}

static void test_signal_is_128_plus(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--json", "--", "/bin/sh", "-c", "kill -TERM $$", NULL});
    assert_int_equal(r.status, 128 + 15);
    assert_int_equal(jint(&r, "signal"), 15);
    json_decref(r.json);
}

static void test_time_limit(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--json", "--time-limit", "1", "--", "/bin/sh", "-c",
                                    "while :; do :; done", NULL});
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(&r, "kill_reason"), "time");
    json_decref(r.json);
}

static void test_setup_failure_is_200(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--json", "--rootfs", "/nonexistent-root", "--",
                                    "/bin/true", NULL});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.err, "/nonexistent-root"));
    json_decref(r.json);
    run(&r, false, (const char *[]){"run", "--", "no-such-program", NULL});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.err, "no-such-program"));
}

static void test_userns_refused_says_what_to_change(void **state)
{
    (void)state;
    struct run r;
    run(&r, true, (const char *[]){"run", "--", "/bin/true", NULL});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.err, "User namespaces are refused"));
    assert_non_null(strstr(r.err, "max_user_namespaces"));
}

static void test_environment_and_descriptors(void **state)
{
    (void)state;
    struct run r;
    /* Only --setenv reaches the program (vs-sandbox itself has SECRET_TOKEN),
     * and only stdio is open. */
    run(&r, false, (const char *[]){"run", "--setenv", "GREETING", "hello", "--", "/bin/sh", "-c",
                                    "env; ls /proc/self/fd", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "GREETING=hello"));
    assert_null(strstr(r.out, "SECRET_TOKEN"));
    assert_null(strstr(r.out, "PATH="));
    /* sh adds PWD itself; ls shows 0 1 2 and its own directory fd (3) */
    assert_null(strstr(r.out, "\n4\n"));
}

static void test_usage_errors(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--pids", "many", "--", "/bin/true", NULL});
    assert_int_equal(r.status, 210);
    run(&r, false, (const char *[]){"run", NULL});
    assert_int_equal(r.status, 210);
    run(&r, false, (const char *[]){"fly", NULL});
    assert_int_equal(r.status, 210);
    run(&r, false, (const char *[]){"--help", NULL});
    assert_int_equal(r.status, 0);
    static const char *const documented[] = {"--rootfs", "--ro-bind", "--preset", "--seccomp-log",
                                             "--time-limit", "--mem", "--pids", "--workspace-size",
                                             "--json", "--setenv", "200", "201", "202", "203",
                                             "204", "205", "128+S", "rlimits only"};
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        if (strstr(r.out, documented[i]) == NULL)
            fail_msg("--help does not document %s", documented[i]);
}

static void test_seccomp_export(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"seccomp-export", "--preset", "network", NULL});
    assert_int_equal(r.status, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "defaultAction")), "SCMP_ACT_ERRNO");
    assert_non_null(strstr(r.out, "\"socket\""));
    json_decref(j);
    run(&r, false, (const char *[]){"seccomp-export", "--preset", "huge", NULL});
    assert_int_equal(r.status, 210);
}

static void test_workspace_limits_and_output_dir(void **state)
{
    (void)state;
    struct run r;
    run(&r, false, (const char *[]){"run", "--workspace-size", "2", "--", "/bin/sh", "-c",
                                    "echo result > /workspace/out/r.txt && cat /workspace/out/r.txt && "
                                    "dd if=/dev/zero of=/workspace/big bs=1M count=8 2>&1; stat -c %a /workspace",
                                    NULL});
    assert_non_null(strstr(r.out, "result"));
    assert_non_null(strstr(r.out, "No space left on device"));
    assert_non_null(strstr(r.out, "700"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status_and_json),
        cmocka_unit_test(test_signal_is_128_plus),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_setup_failure_is_200),
        cmocka_unit_test(test_userns_refused_says_what_to_change),
        cmocka_unit_test(test_environment_and_descriptors),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_seccomp_export),
        cmocka_unit_test(test_workspace_limits_and_output_dir),
    };
    return cmocka_run_group_tests_name("sandbox_cli", tests, NULL, NULL);
}
