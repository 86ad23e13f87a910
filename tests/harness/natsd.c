/*
 * natsd.c - starts and reaps the real nats-server the integration tests
 * run against (see natsd.h). No mock broker anywhere in the suite.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "natsd.h"
#include "vs/bus.h"
#include "vs/js.h"
#include "proc.h"

int vs_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port > 0 ? port : -EADDRNOTAVAIL;
}

/* Ready when a TCP client gets the server's INFO line. */
static bool accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        struct timeval tv = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[8];
        ok = recv(fd, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "INFO", 4) == 0;
    }
    close(fd);
    return ok;
}

static int spawn(struct vs_natsd *s)
{
    char port[16], store[300], log[300];
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(store, sizeof(store), "%s/store", s->dir);
    snprintf(log, sizeof(log), "%s/server.log", s->dir);
    const char *argv[] = {NATS_SERVER_BIN, "-a", "127.0.0.1", "-p", port, "-js", "-sd", store,
                          "-l", log, NULL};
    s->pid = vs_proc_spawn(argv, NULL, NULL);
    if (s->pid < 0)
        return (int)s->pid;
    for (int i = 0; i < 200; i++) {
        if (accepts(s->port))
            return 0;
        if (!vs_proc_alive(s->pid))
            break;
        usleep(50 * 1000);
    }
    vs_natsd_stop(s);
    return -ETIMEDOUT;
}

int vs_natsd_start(struct vs_natsd *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/vs-natsd-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        return -errno;
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = vs_free_port();
        if (s->port < 0)
            return s->port;
        snprintf(s->url, sizeof(s->url), "nats://127.0.0.1:%d", s->port);
        if (spawn(s) == 0)
            return 0;
    }
    return -ETIMEDOUT;
}

void vs_natsd_stop(struct vs_natsd *s)
{
    if (s->pid > 0) {
        vs_proc_stop(s->pid, 5000);
        s->pid = 0;
    }
}

int vs_natsd_restart(struct vs_natsd *s)
{
    vs_natsd_stop(s);
    return spawn(s);
}

void vs_natsd_destroy(struct vs_natsd *s)
{
    vs_natsd_stop(s);
    vs_rmtree(s->dir);
    s->dir[0] = '\0';
}

int vs_natsd_bus(const struct vs_natsd *s, uv_loop_t *loop, size_t max_msg, vs_bus **out)
{
    struct vs_bus_opts o = {.url = s->url, .name = "test", .max_msg = max_msg};
    int rc = vs_bus_new(loop, &o, out);
    if (rc < 0)
        return rc;
    rc = vs_js_declare_all_sync(*out);
    if (rc < 0) {
        vs_bus_free(*out);
        *out = NULL;
    }
    return rc;
}
