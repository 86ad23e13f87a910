/*
 * reference-agent.c - vs-reference-agent, the smallest complete agent: it
 * uses every part of the SDK once, and is the program to copy when writing
 * an agent in C. Built on libvsagent alone.
 *
 *   vs-reference-agent URL [QUERY]    fetch URL (and search for QUERY)
 *   vs-reference-agent --task FILE    the same, URL on the file's first
 *                                     line, QUERY on its second (optional);
 *                                     FILE "-" is stdin (the task's payload)
 *   vs-reference-agent --trivial      write result.txt "ok", complete: the
 *                                     least a task can do (benchmarks)
 *
 * A full run: heartbeat every 500 ms; REQUEST_DATA for URL; WEB_SEARCH
 * when asked; REQUEST_MEMORY for a limit 64 MiB above its peak use so far
 * (it cannot see its current limit inside the sandbox, and sandboxd never
 * lowers a limit, so this asks for room to grow by 64 MiB), reporting
 * whether that was granted; result.txt (one "key value" line per fact) and
 * page.bin (the body) in the output directory; SIGNAL_COMPLETE. Exit 0, or
 * 1 with the failed step on stderr. The trivial mode starts no thread, so
 * it also runs under the `minimal` seccomp preset.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vs/agent.h"

#define HEARTBEAT_MS 500u
#define MEMORY_HEADROOM (64u << 20)
#define SEARCH_RESULTS 10u

struct task {
    char *url;
    char *query; /* NULL: no search */
};

/* Report a failed step (with sandboxd's reason when it refused) and
 * return the exit status 1. */
static int failed(const char *step, int rc)
{
    const char *reason = vs_agent_last_reason();
    fprintf(stderr, "vs-reference-agent: %s: %s%s%s\n", step, strerror(-rc),
            reason[0] != '\0' ? ": " : "", reason);
    return 1;
}

/* The first line of f without its newline, malloc'd; NULL at end of file or
 * for an empty line. */
static char *read_line(FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n <= 0) {
        free(line);
        return NULL;
    }
    return line;
}

/* The task from a file, or from stdin ("-": where sandboxd puts the task's
 * payload). */
static int read_task_file(const char *path, struct task *t)
{
    bool from_stdin = strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "r");
    if (f == NULL)
        return -errno;
    t->url = read_line(f);
    t->query = t->url != NULL ? read_line(f) : NULL;
    if (!from_stdin)
        fclose(f);
    return t->url != NULL ? 0 : -EINVAL;
}

static int run_trivial(vs_agent *a)
{
    int rc = vs_agent_write_output(a, "result.txt", "ok\n", 3);
    if (rc != 0)
        return failed("write result.txt", rc);
    rc = vs_agent_complete(a, "ok");
    return rc != 0 ? failed("complete", rc) : 0;
}

/* REQUEST_MEMORY for 64 MiB above the peak resident size; a refusal is an
 * answer, not a failure. */
static int ask_for_memory(vs_agent *a)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ask = (uint64_t)ru.ru_maxrss * 1024u + MEMORY_HEADROOM;
    uint64_t granted = 0;
    int rc = vs_agent_request_memory(a, ask, &granted);
    if (rc == -EACCES) {
        printf("memory: %" PRIu64 " bytes denied: %s\n", ask, vs_agent_last_reason());
        return 0;
    }
    if (rc != 0)
        return failed("request memory", rc);
    printf("memory: %" PRIu64 " bytes asked, limit now %" PRIu64 "\n", ask, granted);
    return 0;
}

static int run_task(vs_agent *a, const struct task *t)
{
    int rc = vs_agent_heartbeat_start(a, HEARTBEAT_MS);
    if (rc != 0)
        return failed("start heartbeat (threads need the compute preset)", rc);

    Vs__V1__AgentReply *page = NULL;
    rc = vs_agent_fetch(a, t->url, "GET", NULL, 0, &page);
    if (rc != 0)
        return failed("fetch", rc);
    const Vs__V1__EgressResult *got = page->result;

    size_t n_results = 0;
    if (t->query != NULL) {
        Vs__V1__AgentReply *found = NULL;
        rc = vs_agent_search(a, t->query, SEARCH_RESULTS, &found);
        if (rc != 0) {
            vs__v1__agent_reply__free_unpacked(page, NULL);
            return failed("search", rc);
        }
        n_results = found->result->n_results;
        vs__v1__agent_reply__free_unpacked(found, NULL);
    }

    int status = ask_for_memory(a);
    char summary[256];
    int len = snprintf(summary, sizeof summary, "http_status %" PRIu32 "\nbytes %zu\n",
                       got->http_status, got->body.len);
    if (t->query != NULL)
        len += snprintf(summary + len, sizeof summary - (size_t)len, "search_results %zu\n",
                        n_results);
    if (status == 0 && (rc = vs_agent_write_output(a, "result.txt", summary, (size_t)len)) != 0)
        status = failed("write result.txt", rc);
    if (status == 0 &&
        (rc = vs_agent_write_output(a, "page.bin", got->body.data, got->body.len)) != 0)
        status = failed("write page.bin", rc);
    vs__v1__agent_reply__free_unpacked(page, NULL);
    if (status == 0 && (rc = vs_agent_complete(a, summary)) != 0)
        status = failed("complete", rc);
    return status;
}

int main(int argc, char **argv)
{
    struct task t = {0};
    int trivial = argc == 2 && strcmp(argv[1], "--trivial") == 0;
    if (!trivial && argc == 3 && strcmp(argv[1], "--task") == 0) {
        int rc = read_task_file(argv[2], &t);
        if (rc != 0) {
            fprintf(stderr, "vs-reference-agent: task file %s: %s\n", argv[2], strerror(-rc));
            return 1;
        }
    } else if (!trivial && (argc == 2 || argc == 3) && argv[1][0] != '-') {
        t.url = strdup(argv[1]);
        t.query = argc == 3 ? strdup(argv[2]) : NULL;
    } else if (!trivial) {
        fprintf(stderr, "usage: vs-reference-agent URL [QUERY] | --task FILE|- | --trivial\n");
        return 1;
    }

    vs_agent *a = NULL;
    int rc = vs_agent_open(-1, &a);
    int status = rc != 0 ? failed("open the command channel (fd 3)", rc)
                 : trivial ? run_trivial(a)
                           : run_task(a, &t);
    vs_agent_close(a);
    free(t.url);
    free(t.query);
    return status;
}
