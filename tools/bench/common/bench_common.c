/*
 * bench_common.c - see bench_common.h.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "bench_common.h"

#define TMPFS_MAGIC_ 0x01021994UL

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *bench_fs_name(const char *path)
{
    struct statfs s;
    if (statfs(path, &s) != 0)
        return "unknown";
    switch ((unsigned long)s.f_type) {
    case TMPFS_MAGIC_: return "tmpfs (fsync is free: not representative of a disk)";
    case 0xEF53UL: return "ext4";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794c7630UL: return "overlayfs";
    default: return "other";
    }
}

bool bench_on_tmpfs(const char *path)
{
    struct statfs s;
    return statfs(path, &s) == 0 && (unsigned long)s.f_type == TMPFS_MAGIC_;
}

double bench_median(double *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int bench_scratch_dir(char *dir, size_t size, const char *parent, const char *name,
                      const char *prog)
{
    snprintf(dir, size, "%s/%s.XXXXXX", parent, name);
    if (mkdtemp(dir) == NULL) {
        int e = errno;
        fprintf(stderr, "%s: mkdtemp in %s: %s\n", prog, parent, strerror(e));
        dir[0] = '\0';
        return -e;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0; /* go on with the rest */
}

void bench_rmtree(const char *dir)
{
    if (dir != NULL && dir[0] != '\0')
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int bench_store_args(int argc, char **argv, void (*usage)(void), bool *quick, const char **parent)
{
    static const struct option opts[] = {{"quick", no_argument, NULL, 'q'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'q': *quick = true; break;
        case 'd': *parent = optarg; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    return -1;
}
