/*
 * bench_common.h - what every benchmark under tools/bench needs around its
 * measurement: a monotonic clock, the scratch directory its durable work
 * goes into (and what file system that is, since that decides what an
 * fsync costs), the median of its rounds, and the "--quick --dir PARENT"
 * options of the store benchmarks.
 *
 * Why a library of its own (vs_bench_common, tools/bench/common): the
 * store benchmarks (bench_store, bench_ledger_store) are built without the
 * test harness, and the daemon benchmarks (bench_daemon.h) with it; both
 * kinds used to carry their own copy of these helpers. This one depends on
 * nothing but libc, so every benchmark can link it.
 */
#ifndef VS_BENCH_COMMON_H
#define VS_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>

/* Seconds on the monotonic clock. */
double bench_now_s(void);
/* Seconds of CPU the calling thread has used: a single-threaded "per core"
 * figure that other processes on the machine do not stretch. */
double bench_thread_cpu_s(void);
void bench_sleep_ms(long ms);

/* The file system path is on, for the report ("tmpfs (fsync is free: ...)",
 * "ext4", ...). */
const char *bench_fs_name(const char *path);
/* Whether path is on tmpfs, where a durable commit costs nothing. */
bool bench_on_tmpfs(const char *path);

/* The median of v[0..n) (sorts v). */
double bench_median(double *v, unsigned n);

/* A new directory PARENT/NAME.XXXXXX into dir. 0, or -errno with a
 * message prefixed by prog on stderr. */
int bench_scratch_dir(char *dir, size_t size, const char *parent, const char *name,
                      const char *prog);
/* Remove a scratch directory tree ("" or NULL: nothing). */
void bench_rmtree(const char *dir);

/* The options of the store benchmarks: --quick, --dir PARENT, --help.
 * Returns -1 to go on, else the exit status (usage() was called: 0 for
 * --help, 2 for anything it does not know). */
int bench_store_args(int argc, char **argv, void (*usage)(void), bool *quick, const char **parent);

#endif
