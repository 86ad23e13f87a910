/*
 * cgroup.h - one throw-away cgroup per sandbox: memory, pids and cpu limits,
 * the counters that say which limit stopped the program, and a way to kill
 * everything the program started.
 *
 * The hosts we run on differ: pure cgroup v2 with a delegated subtree
 * (systemd Delegate=yes, rootless Podman-style), hybrid hosts where the
 * useful controllers sit in v1 hierarchies and v2 holds nothing (our CI
 * machines), and hosts where we may write nowhere at all (an unprivileged
 * launcher without delegation). So vs_cgroup_new picks the first thing that
 * works - v2 delegated, else whatever v1 hierarchies are writable - and says
 * exactly which limits the kernel now enforces (the `enforced` bitmask).
 * The launcher falls back to rlimits for every limit whose bit is missing;
 * -ENOTSUP means "rlimits only" and is not an error for the launcher.
 *
 * Where the cgroups go: under the launcher's own cgroup of each hierarchy
 * (its path from /proc/self/cgroup), in a "vibeshield" directory:
 *   v2: <v2 mount><own path>/vibeshield/<name>
 *   v1: /sys/fs/cgroup/<ctrl><own path>/vibeshield/<name>
 * Nesting below our own cgroup (rather than at the hierarchy root) keeps
 * the sandbox inside whatever limits the operator put on the launcher, and
 * is the only place a delegated subtree is writable; when the launcher sits
 * in the root cgroup both are the same path.
 *
 * Internal to vssandbox; the functions are exported (VS_API) only so that
 * the unit tests can link against the shared library.
 */
#ifndef VS_SANDBOX_CGROUP_H
#define VS_SANDBOX_CGROUP_H

#include <stdint.h>
#include <sys/types.h>

#include "vs/api.h"
#include "vs/sandbox.h"

/* Bits of *enforced: which limits a cgroup enforces. */
#define VS_CG_MEMORY 1u
#define VS_CG_PIDS 2u
#define VS_CG_CPU 4u

/* 0 means "no limit" for each field. cpu: the group may run cpu_quota_us
 * of cpu time every cpu_period_us (0 period: 100000 us, the kernel's
 * default); 50% of one cpu is 50000/100000. */
struct vs_cgroup_limits {
    uint64_t memory_bytes;
    uint32_t pids;
    uint64_t cpu_quota_us, cpu_period_us;
};

/* Counters since the cgroup was created; 0 when the kernel does not
 * provide one. */
struct vs_cgroup_stats {
    uint64_t oom_kills;         /* processes killed by the cgroup's OOM killer */
    uint64_t pids_max_hits;     /* forks refused by pids.max */
    uint64_t peak_memory_bytes; /* high-water mark of memory use */
    uint64_t cpu_usage_us;      /* cpu time used by all its processes */
    uint64_t memory_max_hits;   /* times the memory limit was hit (v1
                                   memory.failcnt + memory.memsw.failcnt,
                                   v2 memory.events max):
                                   reclaim or OOM followed, not always a
                                   kill - an extra to oom_kills, which is
                                   only ever the kernel's kill counter.
                                   Informational: v1 failcnt stays 0 on
                                   some kernels (6.18 here) even after an
                                   OOM kill; decide on oom_kills. */
};

typedef struct vs_cgroup vs_cgroup;

/*
 * Create a fresh cgroup called `name` ([A-Za-z0-9_-]{1,64}, unique per
 * live sandbox; otherwise -EINVAL) with the limits in *l:
 *  - v2 when the launcher's own v2 cgroup (the "0::/path" line of
 *    /proc/self/cgroup, under /sys/fs/cgroup or /sys/fs/cgroup/unified)
 *    offers memory and pids in cgroup.controllers and lets us enable them
 *    in cgroup.subtree_control. If that fails only because our own
 *    cgroup holds a process (v2's no-internal-process rule) and that
 *    process is the launcher alone, the launcher moves itself into a leaf
 *    "vibeshield-launcher" next to "vibeshield" and tries again.
 *  - else v1: a cgroup in each of the memory, pids, cpu (and cpuacct, for
 *    cpu_usage_us only) hierarchies where we may create one. Partial is
 *    fine: what could not be created is simply not in *enforced.
 *  - else -ENOTSUP (*out NULL, *mode VS_LIMITS_RLIMIT, *enforced 0).
 * *mode says which; *enforced has VS_CG_MEMORY/PIDS/CPU for each non-zero
 * limit the kernel now enforces. v1 memory: memory.limit_in_bytes, the same
 * value in memory.memsw.limit_in_bytes when it exists (swap cannot be used
 * to exceed the limit), the OOM killer on (memory.oom_control 0). v2 memory:
 * memory.max, memory.swap.max 0, memory.oom.group 1 (an OOM kills the whole
 * sandbox). A stale cgroup of the same name without processes is replaced;
 * one with processes gives -EEXIST. Other errors: -EINVAL (bad name or
 * limits, e.g. a cpu quota the kernel refuses), -ENOMEM, or the -errno of a
 * failed write; nothing is left behind on error. Free with vs_cgroup_free.
 */
VS_API int vs_cgroup_new(const char *name, const struct vs_cgroup_limits *l, vs_cgroup **out,
                         enum vs_limit_mode *mode, unsigned *enforced);

/* Move process pid (all its threads) into every hierarchy of cg. Call it
 * while the child is still the launcher's code, before it execs and before
 * it unshares CLONE_NEWCGROUP (a cgroup namespace is rooted where the
 * process was when it was created). Returns 0 or the -errno of the first
 * failed write (-ESRCH: pid is gone); a failure leaves pid in the
 * hierarchies already written, so treat it as fatal for that sandbox. */
VS_API int vs_cgroup_attach(vs_cgroup *cg, pid_t pid);

/* The cheap way in on v1, for a child that is still single-threaded and
 * still runs the launcher's code: open (as the launcher, before the child
 * exists) the "tasks" file of every hierarchy of cg into fds[0..n), and let
 * the child call vs_cgroup_self_attach on the inherited descriptors.
 * Writing a pid to cgroup.procs (vs_cgroup_attach) takes the kernel's global
 * cgroup_threadgroup_rwsem for writing, and that waits for an RCU grace
 * period whenever the lock went idle since its last writer: 0.05 ms when
 * sandboxes start back to back, 6 ms (p90) when other programs start in
 * between, 13 ms (p50) for a launch on an idle machine (measured on a
 * 2-cpu VM, kernel 6.18). A task moving itself ("0") to "tasks" takes no
 * such lock (kernel/cgroup: pid 0 without threadgroup); the
 * kernel checks permission against the credentials the file was opened
 * with, so the child needs no privilege. A single-threaded process moving
 * its only thread is the whole process. Returns n (= the number of
 * hierarchies, at most max; -EINVAL when max is smaller), -ENOTSUP on v2
 * (threads cannot be moved alone there: use vs_cgroup_attach), or the
 * -errno of a failed open (nothing left open). The descriptors are
 * close-on-exec; close them once used, before anything untrusted runs. */
VS_API int vs_cgroup_self_attach_open(vs_cgroup *cg, int *fds, size_t max);

/* In the child: move the calling thread into each cgroup of fds (see
 * vs_cgroup_self_attach_open). Only write(2): safe after fork/clone.
 * 0, or the -errno of the first failed write. */
VS_API int vs_cgroup_self_attach(const int *fds, size_t n);

/* Change the memory limit of a live cgroup (REQUEST_MEMORY). v1 writes
 * memory.limit_in_bytes and memory.memsw.limit_in_bytes in the order the
 * kernel accepts (memsw >= limit at every moment). Lowering below current
 * use makes the kernel reclaim and, failing that, -EBUSY (v1) or an OOM
 * kill (v2). -ENOTSUP when cg has no memory controller; bytes 0 removes
 * the limit. */
VS_API int vs_cgroup_set_memory(vs_cgroup *cg, uint64_t bytes);

/* Read the counters (see struct vs_cgroup_stats). v1: memory.oom_control
 * "oom_kill", memory(.memsw).failcnt, memory.max_usage_in_bytes, pids.events "max",
 * cpuacct.usage; v2: memory.events "oom_kill" and "max", memory.peak (5.19+),
 * pids.events "max", cpu.stat "usage_usec". Missing files give 0. Returns
 * 0, or -EINVAL for NULL arguments. */
VS_API int vs_cgroup_stats(vs_cgroup *cg, struct vs_cgroup_stats *s);

/* SIGKILL every process in cg. v2 with cgroup.kill (5.14+): one write,
 * atomic against forks. Otherwise rounds of "read cgroup.procs, kill each
 * pid" until every hierarchy lists no process (at most ~2 s; a process
 * that was killed cannot fork any more, so this converges). Each pid is
 * pinned with a pidfd and checked to still be in cg before the signal, so
 * a recycled pid of an unrelated process is never hit. Returns 0 when cg
 * is empty, -EBUSY when processes remained after the bound. */
VS_API int vs_cgroup_kill(vs_cgroup *cg);

/* Kill what remains, wait (bounded, ~2 s) until the cgroups are empty,
 * rmdir them (and the shared "vibeshield" directories when they are empty
 * too), free cg. Reap the sandbox's processes before calling it: a killed
 * process that is still a zombie can keep rmdir failing with EBUSY, and
 * then the directory is left behind (a later vs_cgroup_new of the same name
 * replaces it). NULL is fine. */
VS_API void vs_cgroup_free(vs_cgroup *cg);

#endif
