/*
 * proc.c - see proc.h: one fork/exec path for every program the tests and
 * benchmarks start, one wait-with-deadline, and the scratch-file helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

/* ---- starting ------------------------------------------------------------------ */

/* In the child: fd onto target, or exit. */
static void child_dup(int fd, int target)
{
    if (fd < 0 || dup2(fd, target) < 0)
        _exit(127);
}

static int child_open(const char *path, bool append)
{
    return open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
}

static _Noreturn void child_exec(const struct vs_spawn *s, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    child_dup(open("/dev/null", O_RDONLY), 0);
    if (s->out != NULL)
        child_dup(child_open(s->out, s->append), 1);
    if (s->err != NULL && s->out != NULL && strcmp(s->err, s->out) == 0)
        child_dup(1, 2);
    else if (s->err != NULL)
        child_dup(child_open(s->err, s->append), 2);
    if (s->child != NULL && s->child(s->arg) < 0)
        _exit(127);
    /* Only stdio (and keep_fd) cross into the program. */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != s->keep_fd)
            close(fd);
    if (s->env != NULL)
        execve(s->argv[0], (char *const *)s->argv, (char *const *)s->env);
    else
        execv(s->argv[0], (char *const *)s->argv);
    dprintf(2, "exec %s: %s\n", s->argv[0], strerror(errno));
    _exit(127);
}

pid_t vs_proc_start(const struct vs_spawn *s)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        child_exec(s, parent);
    return pid;
}

pid_t vs_proc_spawn(const char *const *argv, const char *const *env, const char *stderr_path)
{
    struct vs_spawn s = {
        .argv = argv, .env = env, .out = stderr_path, .err = stderr_path, .append = true};
    return vs_proc_start(&s);
}

/* ---- waiting and stopping ------------------------------------------------------ */

bool vs_proc_alive(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

int vs_proc_wait(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -errno;
        if (waited >= timeout_ms)
            return -ETIMEDOUT;
        usleep(10 * 1000);
    }
}

int vs_proc_stop(pid_t pid, int timeout_ms)
{
    kill(pid, SIGTERM);
    int status = vs_proc_wait(pid, timeout_ms);
    if (status >= 0)
        return status;
    vs_proc_kill(pid);
    return -1;
}

void vs_proc_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

int vs_proc_status_field(pid_t pid, const char *name, char *out, size_t size)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    size_t n = strlen(name);
    int rc = -ENOENT;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, size, "%.*s", (int)strcspn(v, "\n"), v);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

void vs_run_finish(pid_t pid, int timeout_ms, void (*idle)(void *arg, int ms), void *arg,
                   const char *out, const char *err, struct vs_run *r)
{
    int status = -1;
    pid_t w = 0;
    for (int waited = 0; pid > 0 && w == 0; waited += idle != NULL ? 20 : 10) {
        w = waitpid(pid, &status, WNOHANG);
        if (w != 0 || waited >= timeout_ms)
            break;
        if (idle != NULL)
            idle(arg, 20);
        else
            usleep(10 * 1000);
    }
    if (w == pid) {
        r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
        if (pid > 0)
            vs_proc_kill(pid);
        r->status = -1;
    }
    r->out = vs_slurp(out);
    r->err = vs_slurp(err);
}

void vs_run_free(struct vs_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ---- files --------------------------------------------------------------------- */

int vs_file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL)
            n++;
    fclose(f);
    return n;
}

int vs_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (vs_file_count(path, needle) > 0)
            return 0;
        usleep(20 * 1000);
    }
    return -ETIMEDOUT;
}

char *vs_slurp(const char *path)
{
    FILE *fp = path != NULL ? fopen(path, "r") : NULL;
    size_t len = 0, cap = 4096;
    char *buf = fp != NULL ? malloc(cap) : NULL;
    while (buf != NULL) {
        if (len + 1 == cap) {
            char *bigger = realloc(buf, 2 * cap);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        if (got == 0)
            break;
        len += got;
    }
    if (fp != NULL)
        fclose(fp);
    if (buf == NULL)
        return strdup("");
    buf[len] = '\0';
    return buf;
}

int vs_write_file(const char *path, const char *fmt, ...)
{
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
        return -errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(fp, fmt, ap);
    va_end(ap);
    int rc = fclose(fp);
    return n < 0 || rc != 0 ? -EIO : 0;
}

char *vs_scratch_dir(const char *name)
{
    const char *tmp = getenv("TMPDIR");
    char *dir = NULL;
    if (asprintf(&dir, "%s/%s.XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", name) < 0)
        return NULL;
    if (mkdtemp(dir) == NULL) {
        int e = errno;
        free(dir);
        errno = e;
        return NULL;
    }
    return dir;
}

void vs_scratch_free(char *dir)
{
    vs_rmtree(dir);
    free(dir);
}

char *vs_path(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        abort();
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void vs_rmtree(const char *dir)
{
    if (dir != NULL && dir[0] != '\0')
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool vs_find_program(const char *name, char *out, size_t size)
{
    const char *env = getenv("PATH");
    char path[4096];
    snprintf(path, sizeof(path), "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             env != NULL ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(path, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if (d[0] != '/')
            continue;
        snprintf(out, size, "%s/%s", d, name);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

int vs_copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    char buf[65536];
    ssize_t n = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    int rc = in >= 0 && out >= 0 && n == 0 ? 0 : -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        rc = -1;
    return rc < 0 ? rc : chmod(dst, mode);
}
