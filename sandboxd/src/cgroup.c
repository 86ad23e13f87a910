/*
 * cgroup.c - per-sandbox cgroups on v2 (delegated) or v1 hierarchies.
 *
 * Everything is plain file I/O on cgroupfs; there is no library that does
 * hybrid v1/v2 well, and the few files we touch are stable kernel ABI. The
 * shape follows what the hosts force on us (see cgroup.h): v2 is tried
 * first because one directory does everything and cgroup.kill is atomic;
 * v1 is a set of independent hierarchies ("nodes" below), each created
 * when writable, so a partly writable host still gets the limits it can.
 *
 * Every directory we create is recorded in a node and removed again on
 * error and in vs_cgroup_free, so a failed or finished sandbox leaves no
 * cgroup behind. The shared "vibeshield" directories are removed when the
 * last sandbox in them goes (rmdir of a non-empty one simply fails).
 */
#include "cgroup.h"

#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define CG_FS_ROOT "/sys/fs/cgroup"
#define CG_DIR "vibeshield"               /* parent of the sandboxes' cgroups */
#define CG_LAUNCHER_LEAF "vibeshield-launcher" /* v2: where the launcher moves itself */
#define CG_DEFAULT_PERIOD_US 100000
#define CG_NAME_MAX 64
#define CG_WAIT_ROUNDS 200                /* x 10 ms: the ~2 s bound of kill/free */

/* Controllers a node holds. */
enum { C_MEMORY = 1u, C_PIDS = 2u, C_CPU = 4u, C_CPUACCT = 8u };

/* One cgroup directory of the sandbox: the v2 one, or one per v1
 * hierarchy (cpu and cpuacct share a node when co-mounted). */
struct cg_node {
    char *path;    /* absolute path of the sandbox's cgroup directory */
    char *rel;     /* the same path as /proc/<pid>/cgroup shows it */
    char *parent;  /* its CG_DIR directory, removed when empty */
    int hier;      /* hierarchy id from /proc/self/cgroup (0 for v2) */
    unsigned ctrl; /* C_* */
    bool has_memsw;
};

struct vs_cgroup {
    enum vs_limit_mode mode;
    struct cg_node node[4];
    size_t n;
};

/* ---- small file helpers ---- */

static void msleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Read a whole (small, size-less) cgroupfs or procfs file into a malloc'd
 * NUL-terminated buffer. 0 or -errno. */
static int read_all(const char *path, char **out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int fd, err;

    *out = NULL;
    if (!buf)
        return -ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        free(buf);
        return err;
    }
    for (;;) {
        ssize_t r;

        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);

            if (!nb) {
                close(fd);
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            close(fd);
            free(buf);
            return err;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static int file_path(char *buf, size_t size, const char *dir, const char *file)
{
    int n = snprintf(buf, size, "%s/%s", dir, file);

    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Read dir/file. */
static int cg_read(const char *dir, const char *file, char **out)
{
    char p[PATH_MAX];
    int rc = file_path(p, sizeof(p), dir, file);

    if (rc < 0) {
        *out = NULL;
        return rc;
    }
    return read_all(p, out);
}

/* Write val to dir/file in one write(2), as cgroupfs wants. 0 or -errno. */
static int cg_write(const char *dir, const char *file, const char *val)
{
    char p[PATH_MAX];
    size_t len = strlen(val);
    ssize_t w;
    int fd, rc = file_path(p, sizeof(p), dir, file);

    if (rc < 0)
        return rc;
    fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    do {
        w = write(fd, val, len);
    } while (w < 0 && errno == EINTR);
    rc = w < 0 ? -errno : (size_t)w != len ? -EIO : 0;
    close(fd);
    return rc;
}

static int cg_write_u64(const char *dir, const char *file, uint64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cg_write(dir, file, buf);
}

static bool cg_exists(const char *dir, const char *file)
{
    char p[PATH_MAX];

    return file_path(p, sizeof(p), dir, file) == 0 && access(p, F_OK) == 0;
}

/* The value of the line "key N" in text (cgroup's flat-keyed files). */
static bool kv_get(const char *text, const char *key, uint64_t *v)
{
    size_t klen = strlen(key);
    const char *p = text;

    while (p && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            *v = strtoull(p + klen + 1, NULL, 10);
            return true;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Is word one of the space/comma separated words of list? */
static bool has_word(const char *list, const char *word)
{
    size_t wlen = strlen(word);
    const char *p = list;

    while (*p) {
        size_t n;

        while (*p == ' ' || *p == ',' || *p == '\n')
            p++;
        n = strcspn(p, " ,\n");
        if (n == wlen && strncmp(p, word, wlen) == 0)
            return true;
        p += n;
    }
    return false;
}

static bool valid_name(const char *name)
{
    size_t n = 0;

    if (!name)
        return false;
    for (; name[n]; n++) {
        unsigned char c = (unsigned char)name[n];

        if (n >= CG_NAME_MAX || !(isalnum(c) || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

/* Our own cgroup in the hierarchy that holds controller ctrl (v1), or the
 * v2 one (ctrl NULL): the path part of its /proc/self/cgroup line, and the
 * hierarchy id. 0, -ENOENT when there is no such line, or -errno. */
static int self_cgroup(const char *ctrl, char *rel, size_t relsz, int *hier)
{
    char *text, *line, *save = NULL;
    int rc = read_all("/proc/self/cgroup", &text);

    if (rc < 0)
        return rc;
    rc = -ENOENT;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        bool match;

        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        if (ctrl)
            match = strcmp(line, "0") != 0 && has_word(c1 + 1, ctrl);
        else
            match = strcmp(line, "0") == 0 && c1[1] == '\0';
        if (!match)
            continue;
        if (c2[1] != '/' || strlen(c2 + 1) >= relsz) {
            rc = -ENAMETOOLONG;
            break;
        }
        strcpy(rel, c2 + 1);
        *hier = atoi(line);
        rc = 0;
        break;
    }
    free(text);
    return rc;
}

static bool is_fs(const char *path, long magic)
{
    struct statfs sf;

    return statfs(path, &sf) == 0 && (long)sf.f_type == magic;
}

/* a + rel (+ "/" c): rel is a "/..." cgroup path, and the root cgroup "/"
 * adds nothing, so join("/m", "/", "d") is "/m/d" and join("/m", "/x", NULL)
 * is "/m/x". malloc'd, NULL when out of memory. */
static char *join(const char *a, const char *b, const char *c)
{
    char *s;

    if (strcmp(b, "/") == 0)
        b = "";
    if (asprintf(&s, "%s%s%s%s", a, b, c ? "/" : "", c ? c : "") < 0)
        return NULL;
    return s;
}

/* Enable the controllers in want (space-separated names) in dir's
 * subtree_control, those not already on. */
static int v2_enable(const char *dir, const char *const *want, size_t nwant)
{
    char *cur, buf[128] = "";
    size_t i;
    int rc = cg_read(dir, "cgroup.subtree_control", &cur);

    if (rc < 0)
        return rc;
    for (i = 0; i < nwant; i++) {
        if (!has_word(cur, want[i])) {
            strcat(buf, buf[0] ? " +" : "+");
            strcat(buf, want[i]);
        }
    }
    free(cur);
    return buf[0] ? cg_write(dir, "cgroup.subtree_control", buf) : 0;
}

/* mkdir leaf for a fresh sandbox cgroup. A leftover of the same name
 * without processes (a crashed launcher) is replaced; with processes it is
 * -EEXIST. */
static int make_leaf(const char *leaf)
{
    if (mkdir(leaf, 0755) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    if (rmdir(leaf) < 0)
        return -EEXIST;
    return mkdir(leaf, 0755) < 0 ? -errno : 0;
}

/* Remove sandbox cgroups left behind by launchers that were killed before
 * they could clean up: empty ones (the kernel refuses to rmdir a cgroup
 * with processes in it) older than a minute, so that a sibling that was
 * just made and is about to be joined is never touched. */
#define STALE_AFTER_S 60

static void sweep_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (d == NULL)
        return;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || e->d_type != DT_DIR || !valid_name(e->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now - st.st_mtime > STALE_AFTER_S)
            unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR); /* EBUSY when in use */
    }
    closedir(d);
}

/* mkdir the shared parent (v2: and enable want in it), then the leaf. A
 * concurrent vs_cgroup_free of the last other sandbox may rmdir the
 * parent between the two steps (ENOENT): start over, a few times. */
static int make_dirs(const char *parent, const char *leaf, const char *const *want, size_t nwant)
{
    int i, rc = -ENOENT;

    for (i = 0; i < 3 && rc == -ENOENT; i++) {
        if (mkdir(parent, 0755) < 0 && errno != EEXIST)
            return -errno;
        if (i == 0)
            sweep_stale(parent);
        if (want && (rc = v2_enable(parent, want, nwant)) < 0)
            continue;
        rc = make_leaf(leaf);
    }
    return rc;
}

static void node_clear(struct cg_node *n)
{
    free(n->path);
    free(n->rel);
    free(n->parent);
    memset(n, 0, sizeof(*n));
}

/* Remove a node's directory (retrying while dying processes leave it) and
 * its parent when empty. */
static void node_remove(struct cg_node *n)
{
    int i;

    if (n->path) {
        for (i = 0; i < CG_WAIT_ROUNDS / 2; i++) {
            if (rmdir(n->path) == 0 || errno != EBUSY)
                break;
            msleep(10);
        }
    }
    if (n->parent)
        (void)rmdir(n->parent);
    node_clear(n);
}

static void cg_destroy_dirs(vs_cgroup *cg)
{
    size_t i;

    for (i = 0; i < cg->n; i++)
        node_remove(&cg->node[i]);
    cg->n = 0;
}

/* ---- killing ---- */

/* Is pid in the cgroup whose /proc/<pid>/cgroup path is rel? */
static bool pid_in(pid_t pid, const char *rel)
{
    char p[64], *text, *line, *save = NULL;
    bool in = false;

    snprintf(p, sizeof(p), "/proc/%d/cgroup", (int)pid);
    if (read_all(p, &text) < 0)
        return false;
    for (line = strtok_r(text, "\n", &save); line && !in; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

        in = c2 && strcmp(c2 + 1, rel) == 0;
    }
    free(text);
    return in;
}

/* SIGKILL pid if it is (still) in the node. The pidfd pins the process,
 * so the membership check and the signal are about the same process even
 * if pid is recycled in between. */
static void kill_member(const struct cg_node *n, pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);

    if (fd < 0) {
        if (errno == ENOSYS && pid_in(pid, n->rel))
            (void)kill(pid, SIGKILL); /* pre-5.3 kernel: small recycle race */
        return;
    }
    if (pid_in(pid, n->rel))
        (void)syscall(SYS_pidfd_send_signal, (int)fd, SIGKILL, NULL, 0);
    close((int)fd);
}

/* One round over every node: kill each listed process. Returns how many
 * were listed (dying ones included), or -errno if a list is unreadable. */
static int kill_round(vs_cgroup *cg)
{
    int count = 0;
    size_t i;

    for (i = 0; i < cg->n; i++) {
        char *text, *p;
        int rc;

        if (!cg->node[i].path) /* already removed (vs_cgroup_free) */
            continue;
        rc = cg_read(cg->node[i].path, "cgroup.procs", &text);

        if (rc == -ENOENT)
            continue;
        if (rc < 0)
            return rc;
        for (p = text; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);

            if (end == p)
                break;
            if (pid > 0) {
                count++;
                kill_member(&cg->node[i], (pid_t)pid);
            }
            p = end;
            while (*p == '\n')
                p++;
        }
        free(text);
    }
    return count;
}

int vs_cgroup_kill(vs_cgroup *cg)
{
    int round;

    if (!cg)
        return -EINVAL;
    /* v2: cgroup.kill takes the whole subtree at once, new forks included. */
    if (cg->mode == VS_LIMITS_CGROUP_V2 && cg->n == 1 && cg->node[0].path &&
        cg_exists(cg->node[0].path, "cgroup.kill"))
        (void)cg_write(cg->node[0].path, "cgroup.kill", "1");
    for (round = 0; round < CG_WAIT_ROUNDS; round++) {
        int n = kill_round(cg);

        if (n < 0)
            return n;
        if (n == 0)
            return 0;
        msleep(10);
    }
    return -EBUSY;
}

/* ---- v1 ---- */

/* Set memory.limit_in_bytes and memory.memsw.limit_in_bytes to bytes (0:
 * unlimited). The kernel insists on limit <= memsw at every moment, so a
 * raise writes memsw first and a cut writes the limit first; we try the
 * cut order and switch when the kernel says EINVAL. */
static int v1_set_memory(const struct cg_node *n, uint64_t bytes)
{
    char val[32];
    int rc;

    if (bytes)
        snprintf(val, sizeof(val), "%" PRIu64, bytes);
    else
        strcpy(val, "-1");
    rc = cg_write(n->path, "memory.limit_in_bytes", val);
    if (!n->has_memsw)
        return rc;
    if (rc == 0)
        return cg_write(n->path, "memory.memsw.limit_in_bytes", val);
    if (rc != -EINVAL)
        return rc;
    rc = cg_write(n->path, "memory.memsw.limit_in_bytes", val);
    return rc < 0 ? rc : cg_write(n->path, "memory.limit_in_bytes", val);
}

/* The file whose presence shows the controller really is in a new cgroup. */
static const char *v1_probe_file(unsigned ctrl)
{
    switch (ctrl) {
    case C_MEMORY: return "memory.limit_in_bytes";
    case C_PIDS: return "pids.max";
    case C_CPU: return "cpu.shares";
    default: return "cpuacct.usage";
    }
}

/* Create the sandbox's cgroup in every v1 hierarchy where we may.
 * 0 (possibly no node at all), or a fatal -errno. */
static int v1_create(vs_cgroup *cg, const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } ctrls[] = { { "memory", C_MEMORY }, { "pids", C_PIDS }, { "cpu", C_CPU }, { "cpuacct", C_CPUACCT } };
    size_t i, j;

    for (i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
        char rel[PATH_MAX], root[64];
        struct cg_node *n = &cg->node[cg->n];
        int hier, rc;
        bool shared = false;

        if (self_cgroup(ctrls[i].name, rel, sizeof(rel), &hier) < 0)
            continue;
        for (j = 0; j < cg->n; j++) {
            if (cg->node[j].hier == hier) { /* co-mounted, e.g. cpu,cpuacct */
                cg->node[j].ctrl |= ctrls[i].bit;
                shared = true;
            }
        }
        if (shared)
            continue;
        snprintf(root, sizeof(root), CG_FS_ROOT "/%s", ctrls[i].name);
        if (!is_fs(root, CGROUP_SUPER_MAGIC))
            continue;
        n->hier = hier;
        n->ctrl = ctrls[i].bit;
        n->parent = join(root, rel, CG_DIR);
        if (!n->parent || asprintf(&n->rel, "%s/%s/%s", strcmp(rel, "/") == 0 ? "" : rel, CG_DIR, name) < 0) {
            n->rel = NULL;
            node_clear(n);
            return -ENOMEM;
        }
        if (asprintf(&n->path, "%s/%s", n->parent, name) < 0) {
            n->path = NULL;
            node_clear(n);
            return -ENOMEM;
        }
        rc = make_dirs(n->parent, n->path, NULL, 0);
        if (rc < 0) {
            free(n->path); /* not ours (EEXIST) or never made */
            n->path = NULL;
            node_remove(n); /* the parent, if we left it empty */
            if (rc == -EEXIST)
                return rc;
            continue; /* not writable for us: skip this hierarchy */
        }
        if (!cg_exists(n->path, v1_probe_file(n->ctrl))) {
            node_remove(n);
            continue;
        }
        n->has_memsw = n->ctrl == C_MEMORY && cg_exists(n->path, "memory.memsw.limit_in_bytes");
        cg->n++;
    }
    return 0;
}

static struct cg_node *node_with(vs_cgroup *cg, unsigned ctrl)
{
    size_t i;

    for (i = 0; i < cg->n; i++)
        if (cg->node[i].ctrl & ctrl)
            return &cg->node[i];
    return NULL;
}

/* Apply the limits to the v1 nodes; *enforced gets what took. */
static int v1_limits(vs_cgroup *cg, const struct vs_cgroup_limits *l, unsigned *enforced)
{
    struct cg_node *n;
    int rc;

    if ((n = node_with(cg, C_MEMORY))) {
        char *oc = NULL;
        uint64_t disabled = 1;

        /* The OOM killer must be on: a new memcg inherits oom_kill_disable
         * from its parent, and with it off a sandbox at its limit would
         * hang in the fault path instead of dying. */
        rc = cg_write(n->path, "memory.oom_control", "0");
        if (rc < 0 && (cg_read(n->path, "memory.oom_control", &oc) < 0 ||
                       !kv_get(oc, "oom_kill_disable", &disabled) || disabled)) {
            free(oc);
            return rc;
        }
        free(oc);
        if (l->memory_bytes) {
            if ((rc = v1_set_memory(n, l->memory_bytes)) < 0)
                return rc;
            *enforced |= VS_CG_MEMORY;
        }
    }
    if ((n = node_with(cg, C_PIDS)) && l->pids) {
        if ((rc = cg_write_u64(n->path, "pids.max", l->pids)) < 0)
            return rc;
        *enforced |= VS_CG_PIDS;
    }
    if ((n = node_with(cg, C_CPU)) && l->cpu_quota_us && cg_exists(n->path, "cpu.cfs_quota_us")) {
        uint64_t period = l->cpu_period_us ? l->cpu_period_us : CG_DEFAULT_PERIOD_US;

        if ((rc = cg_write_u64(n->path, "cpu.cfs_period_us", period)) < 0 ||
            (rc = cg_write_u64(n->path, "cpu.cfs_quota_us", l->cpu_quota_us)) < 0)
            return rc;
        *enforced |= VS_CG_CPU;
    }
    return 0;
}

/* ---- v2 ---- */

/* v2's no-internal-process rule refuses controllers in a cgroup that holds
 * processes (EBUSY). If the only process is the launcher, move it into a
 * leaf beside the sandboxes (what Podman and systemd-run do) and retry.
 * Anything else: give up on v2. */
static int v2_enable_moving_self(const char *dir, const char *const *want, size_t nwant)
{
    char *procs, *leaf = NULL, *p, *end, me[24];
    bool alone = true;
    int rc = v2_enable(dir, want, nwant);

    if (rc != -EBUSY)
        return rc;
    if (cg_read(dir, "cgroup.procs", &procs) < 0)
        return rc;
    for (p = procs; *p; p = end) {
        long pid = strtol(p, &end, 10);

        if (end == p)
            break;
        if (pid != (long)getpid())
            alone = false;
        while (*end == '\n')
            end++;
    }
    free(procs);
    if (!alone || asprintf(&leaf, "%s/%s", dir, CG_LAUNCHER_LEAF) < 0)
        return rc;
    snprintf(me, sizeof(me), "%d", (int)getpid());
    if ((mkdir(leaf, 0755) == 0 || errno == EEXIST) && cg_write(leaf, "cgroup.procs", me) == 0) {
        rc = v2_enable(dir, want, nwant);
        if (rc < 0) { /* put ourselves back as we were */
            (void)cg_write(dir, "cgroup.procs", me);
            (void)rmdir(leaf);
        }
    }
    free(leaf);
    return rc;
}

/* Try the delegated v2 route. 0 with one node, or -ENOTSUP when v2 is not
 * usable here (then v1 is tried), or a fatal -errno (-EEXIST, -ENOMEM). */
static int v2_create(vs_cgroup *cg, const char *name)
{
    const char *root, *want[3] = { "memory", "pids", NULL };
    char rel[PATH_MAX], *own = NULL, *ctl = NULL;
    struct cg_node *n = &cg->node[0];
    size_t nwant = 2;
    int hier, rc;

    if (is_fs(CG_FS_ROOT, CGROUP2_SUPER_MAGIC))
        root = CG_FS_ROOT;
    else if (is_fs(CG_FS_ROOT "/unified", CGROUP2_SUPER_MAGIC))
        root = CG_FS_ROOT "/unified";
    else
        return -ENOTSUP;
    if (self_cgroup(NULL, rel, sizeof(rel), &hier) < 0)
        return -ENOTSUP;
    if (!(own = join(root, rel, NULL)))
        return -ENOMEM;
    if (cg_read(own, "cgroup.controllers", &ctl) < 0 || !has_word(ctl, "memory") ||
        !has_word(ctl, "pids")) {
        free(ctl);
        free(own);
        return -ENOTSUP;
    }
    if (has_word(ctl, "cpu"))
        want[nwant++] = "cpu";
    free(ctl);

    n->hier = 0;
    n->ctrl = C_MEMORY | C_PIDS | (nwant == 3 ? C_CPU | C_CPUACCT : 0);
    if (asprintf(&n->parent, "%s/%s", own, CG_DIR) < 0) {
        n->parent = NULL;
        free(own);
        return -ENOMEM;
    }
    if (asprintf(&n->rel, "%s/%s/%s", strcmp(rel, "/") == 0 ? "" : rel, CG_DIR, name) < 0)
        n->rel = NULL;
    if (!n->rel || asprintf(&n->path, "%s/%s", n->parent, name) < 0) {
        n->path = NULL;
        free(own);
        node_clear(n);
        return -ENOMEM;
    }
    rc = v2_enable_moving_self(own, want, nwant);
    free(own);
    if (rc == 0)
        rc = make_dirs(n->parent, n->path, want, nwant);
    if (rc < 0) {
        free(n->path); /* not ours (EEXIST) or never made */
        n->path = NULL;
        node_remove(n); /* the parent, if we left it empty */
        return rc == -EEXIST ? rc : -ENOTSUP;
    }
    if (!cg_exists(n->path, "memory.max") || !cg_exists(n->path, "pids.max")) {
        node_remove(n);
        return -ENOTSUP;
    }
    cg->n = 1;
    return 0;
}

static int v2_limits(vs_cgroup *cg, const struct vs_cgroup_limits *l, unsigned *enforced)
{
    const struct cg_node *n = &cg->node[0];
    int rc;

    if (l->memory_bytes) {
        if ((rc = cg_write_u64(n->path, "memory.max", l->memory_bytes)) < 0)
            return rc;
        /* memory.max is RAM only; without this, swap would extend it. */
        if (cg_exists(n->path, "memory.swap.max") && (rc = cg_write(n->path, "memory.swap.max", "0")) < 0)
            return rc;
        *enforced |= VS_CG_MEMORY;
    }
    /* An OOM kills the whole sandbox, not one arbitrary process of it. */
    if (cg_exists(n->path, "memory.oom.group") && (rc = cg_write(n->path, "memory.oom.group", "1")) < 0)
        return rc;
    if (l->pids) {
        if ((rc = cg_write_u64(n->path, "pids.max", l->pids)) < 0)
            return rc;
        *enforced |= VS_CG_PIDS;
    }
    if (l->cpu_quota_us && (n->ctrl & C_CPU) && cg_exists(n->path, "cpu.max")) {
        char val[48];

        snprintf(val, sizeof(val), "%" PRIu64 " %" PRIu64, l->cpu_quota_us,
                 l->cpu_period_us ? l->cpu_period_us : (uint64_t)CG_DEFAULT_PERIOD_US);
        if ((rc = cg_write(n->path, "cpu.max", val)) < 0)
            return rc;
        *enforced |= VS_CG_CPU;
    }
    return 0;
}

/* ---- public ---- */

int vs_cgroup_new(const char *name, const struct vs_cgroup_limits *l, vs_cgroup **out,
                  enum vs_limit_mode *mode, unsigned *enforced)
{
    vs_cgroup *cg;
    int rc;

    if (out)
        *out = NULL;
    if (mode)
        *mode = VS_LIMITS_RLIMIT;
    if (enforced)
        *enforced = 0;
    if (!valid_name(name) || !l || !out || !mode || !enforced)
        return -EINVAL;
    if (l->cpu_quota_us && l->cpu_period_us && (l->cpu_period_us < 1000 || l->cpu_period_us > 1000000))
        return -EINVAL;
    if (!(cg = calloc(1, sizeof(*cg))))
        return -ENOMEM;

    rc = v2_create(cg, name);
    if (rc == 0) {
        cg->mode = VS_LIMITS_CGROUP_V2;
        rc = v2_limits(cg, l, enforced);
    } else if (rc == -ENOTSUP) {
        rc = v1_create(cg, name);
        if (rc == 0 && !node_with(cg, C_MEMORY | C_PIDS | C_CPU))
            rc = -ENOTSUP; /* nothing that limits anything (cpuacct alone) */
        cg->mode = VS_LIMITS_CGROUP_V1;
        if (rc == 0)
            rc = v1_limits(cg, l, enforced);
    }
    if (rc < 0) {
        cg_destroy_dirs(cg);
        free(cg);
        *enforced = 0;
        return rc;
    }
    *mode = cg->mode;
    *out = cg;
    return 0;
}

int vs_cgroup_attach(vs_cgroup *cg, pid_t pid)
{
    char val[24];
    size_t i;

    if (!cg || pid <= 0)
        return -EINVAL;
    snprintf(val, sizeof(val), "%d", (int)pid);
    for (i = 0; i < cg->n; i++) {
        int rc = cg_write(cg->node[i].path, "cgroup.procs", val);

        if (rc < 0)
            return rc;
    }
    return 0;
}

int vs_cgroup_self_attach_open(vs_cgroup *cg, int *fds, size_t max)
{
    size_t i;

    if (!cg || !fds || max < cg->n)
        return -EINVAL;
    if (cg->mode != VS_LIMITS_CGROUP_V1 || cg->n == 0)
        return -ENOTSUP;
    for (i = 0; i < cg->n; i++) {
        char p[PATH_MAX];
        int rc = file_path(p, sizeof(p), cg->node[i].path, "tasks");

        if (rc == 0 && (fds[i] = open(p, O_WRONLY | O_CLOEXEC)) < 0)
            rc = -errno;
        if (rc < 0) {
            while (i-- > 0)
                close(fds[i]);
            return rc;
        }
    }
    return (int)cg->n;
}

int vs_cgroup_self_attach(const int *fds, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        ssize_t w;

        do {
            w = write(fds[i], "0", 1);
        } while (w < 0 && errno == EINTR);
        if (w != 1)
            return w < 0 ? -errno : -EIO;
    }
    return 0;
}

int vs_cgroup_set_memory(vs_cgroup *cg, uint64_t bytes)
{
    struct cg_node *n;

    if (!cg)
        return -EINVAL;
    if (!(n = node_with(cg, C_MEMORY)))
        return -ENOTSUP;
    if (cg->mode == VS_LIMITS_CGROUP_V2)
        return bytes ? cg_write_u64(n->path, "memory.max", bytes) : cg_write(n->path, "memory.max", "max");
    return v1_set_memory(n, bytes);
}

/* The value of key in dir/file, or 0. */
static uint64_t stat_kv(const char *dir, const char *file, const char *key)
{
    char *text;
    uint64_t v = 0;

    if (cg_read(dir, file, &text) == 0) {
        if (!kv_get(text, key, &v))
            v = 0;
        free(text);
    }
    return v;
}

/* The single number in dir/file, or 0. */
static uint64_t stat_u64(const char *dir, const char *file)
{
    char *text;
    uint64_t v = 0;

    if (cg_read(dir, file, &text) == 0) {
        v = strtoull(text, NULL, 10);
        free(text);
    }
    return v;
}

int vs_cgroup_stats(vs_cgroup *cg, struct vs_cgroup_stats *s)
{
    const struct cg_node *n;

    if (!cg || !s)
        return -EINVAL;
    memset(s, 0, sizeof(*s));
    if (cg->mode == VS_LIMITS_CGROUP_V2) {
        const char *d = cg->node[0].path;

        s->oom_kills = stat_kv(d, "memory.events", "oom_kill");
        s->memory_max_hits = stat_kv(d, "memory.events", "max");
        s->peak_memory_bytes = stat_u64(d, "memory.peak");
        s->pids_max_hits = stat_kv(d, "pids.events", "max");
        s->cpu_usage_us = stat_kv(d, "cpu.stat", "usage_usec");
        return 0;
    }
    if ((n = node_with(cg, C_MEMORY))) {
        /* "oom_kill" is there since 4.13; the failcnts count limit hits,
         * which are not kills (reclaim may have succeeded), so they never
         * stand in for oom_kills. With swap accounting the kernel charges
         * memsw first, so a hit lands in memsw.failcnt, not in failcnt. */
        s->oom_kills = stat_kv(n->path, "memory.oom_control", "oom_kill");
        s->memory_max_hits = stat_u64(n->path, "memory.failcnt");
        if (n->has_memsw)
            s->memory_max_hits += stat_u64(n->path, "memory.memsw.failcnt");
        s->peak_memory_bytes = stat_u64(n->path, "memory.max_usage_in_bytes");
    }
    if ((n = node_with(cg, C_PIDS)))
        s->pids_max_hits = stat_kv(n->path, "pids.events", "max");
    if ((n = node_with(cg, C_CPUACCT)))
        s->cpu_usage_us = stat_u64(n->path, "cpuacct.usage") / 1000; /* ns */
    return 0;
}

void vs_cgroup_free(vs_cgroup *cg)
{
    bool busy = false;
    size_t i;

    if (!cg)
        return;
    /* The usual case: every process of the sandbox is reaped already, so
     * each directory goes at the first rmdir and there is nothing to kill
     * (a kill round reads cgroup.procs in every hierarchy: ~50 us). Only
     * a directory that is still busy takes the kill-and-wait path. */
    for (i = 0; i < cg->n; i++) {
        struct cg_node *n = &cg->node[i];

        if (!n->path)
            continue;
        if (rmdir(n->path) == 0 || errno == ENOENT) {
            free(n->path);
            n->path = NULL;
        } else {
            busy = true;
        }
    }
    if (busy)
        (void)vs_cgroup_kill(cg);
    cg_destroy_dirs(cg);
    free(cg);
}
