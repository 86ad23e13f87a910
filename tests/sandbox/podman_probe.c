/*
 * podman_probe.c - what tests/integration/test_podman.c runs inside a
 * Podman (runc) container that was given a vs-sandbox seccomp profile
 * (vs-sandbox seccomp-export): it reports what the container's filter does,
 * one "KEY VALUE" line each, so the test can assert on exact values.
 *
 *   podman_probe socket    SECCOMP <mode>   the Seccomp: field of /proc/self/status
 *                                           (2 = a filter is on; "?" unreadable)
 *                          SOCKET OK        socket(AF_INET, SOCK_STREAM) worked
 *                          SOCKET <ERRNO>   it failed with that errno (EPERM, ...)
 *   podman_probe seccomp   only the SECCOMP line
 *
 * Exit status 0 when it could report (whatever the answers), 2 for a usage
 * error. It is linked statically (tests/sandbox/podman/CMakeLists.txt): the
 * container's root file system holds this one file and nothing else.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *errno_name(int e)
{
    const char *name = strerrorname_np(e); /* glibc >= 2.32 */
    static char buf[32];
    if (name != NULL)
        return name;
    snprintf(buf, sizeof(buf), "errno_%d", e);
    return buf;
}

static void report_seccomp(void)
{
    char line[256], mode[32] = "?";
    FILE *f = fopen("/proc/self/status", "re");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Seccomp:", 8) == 0) {
            if (sscanf(line + 8, "%31s", mode) != 1)
                snprintf(mode, sizeof(mode), "?");
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    printf("SECCOMP %s\n", mode);
}

static void report_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
        printf("SOCKET OK\n");
        close(fd);
    } else {
        printf("SOCKET %s\n", errno_name(errno));
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "socket") == 0) {
        report_seccomp();
        report_socket();
    } else if (argc == 2 && strcmp(argv[1], "seccomp") == 0) {
        report_seccomp();
    } else {
        fprintf(stderr, "usage: podman_probe socket|seccomp\n");
        return 2;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
