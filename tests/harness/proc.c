/*
 * proc.c - see proc.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

pid_t vs_proc_spawn(const char *const *argv, const char *const *env, const char *stderr_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (stderr_path != NULL) {
            int fd = open(stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        /* Only stdio crosses into the child. */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        if (env != NULL)
            execve(argv[0], (char *const *)argv, (char *const *)env);
        else
            execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

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
