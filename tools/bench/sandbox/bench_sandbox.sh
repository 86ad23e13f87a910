#!/bin/sh
# bench_sandbox.sh - spawn->exit latency of /bin/true under vs-sandbox,
# bubblewrap and Podman (runc), measured the same way for each.
#
# usage: tools/bench/sandbox/bench_sandbox.sh [VS_SANDBOX_BINARY]
#
#   VS_SANDBOX_BINARY   default: build/sandboxd/vs-sandbox (under the
#                       source tree)
#   RUNS=300            runs of each vs-sandbox and bwrap configuration
#   PODMAN_RUNS=30      runs of podman (~250 ms each)
#   DEADLINE=150        seconds; the timing loop stops by itself after this
#                       and reports what it has (n= says how many runs)
#   NO_PODMAN=1         skip podman
#   GAP_MS=0            idle time before each run (not timed). Back-to-back
#                       runs keep some kernel state warm; GAP_MS=50 shows a
#                       launch on an otherwise idle machine (use RUNS=100)
#
# Run it as root (the rootless configurations drop to uid/gid 65534 in the
# timer's child before exec, which is what setpriv --reuid=65534
# --regid=65534 --clear-groups does, without timing setpriv's own exec).
# Needs cc (the timer is a small C program compiled into a temporary
# directory), bwrap, and podman + runc for the podman line.
#
# What is measured: one C timer (embedded below) does, for every run,
# clock_gettime -> vfork -> [setgroups/setresgid/setresuid] -> execve ...
# waitpid -> clock_gettime, stdout/stderr of the run to /dev/null. The
# configurations run interleaved (A B C D A B C D ..., podman spread evenly
# over the rounds), so drift of the machine (other jobs, page cache, kernel
# workers cleaning up earlier namespaces) hits all of them alike. A run
# that takes longer than 20 s is killed and counted as failed; a
# configuration with a failed run is reported as FAILED.
#
# The configurations (the same isolation, as far as each tool can say it):
#   vs-sandbox (root)      vs-sandbox run -- /bin/true (minimal preset, cgroup
#                          v1/v2 where writable, Landlock, seccomp + listener)
#   vs-sandbox (rootless)  the same binary copied to a 0755 temp dir, as nobody
#   bwrap                  --unshare-all --die-with-parent --new-session
#                          --clearenv --uid 1000 --gid 1000, ro /usr + the
#                          merged-/usr links, --proc /proc --dev /dev,
#                          --tmpfs /tmp --tmpfs /workspace --chdir /workspace,
#                          --seccomp with vs-sandbox's own prebuilt minimal
#                          program (exported from seccomp_programs.c next to the
#                          binary; without it bwrap runs without seccomp and
#                          the line says so)
#   bwrap (rootless)       the same, as nobody
#   podman (runc)          podman --runtime runc run --rm --network none
#                          --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
#                          --rootfs DIR /bin/true, DIR = static busybox
#
# Output: one line per configuration (p50, p99, mean, n) and the ratios
#   ratios: vs-sandbox/bwrap p50 X (target <= 1.0), podman/vs-sandbox p50 Yx (target >= 20x)
# Exit status: 0 when it measured, 1 when vs-sandbox or bwrap failed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
RUNS=${RUNS:-300}
PODMAN_RUNS=${PODMAN_RUNS:-30}
DEADLINE=${DEADLINE:-150}
GAP_MS=${GAP_MS:-0}

vs=${1:-}
if [ -z "$vs" ]; then
    for d in build; do
        if [ -x "$src/$d/sandboxd/vs-sandbox" ]; then vs=$src/$d/sandboxd/vs-sandbox; break; fi
    done
fi
if [ -z "$vs" ] || [ ! -x "$vs" ]; then
    echo "bench_sandbox: no vs-sandbox binary (build it: make -C build vs-sandbox, or pass its path)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench_sandbox: run it as root (the rootless configurations switch to nobody)" >&2
    exit 1
fi
command -v bwrap >/dev/null || { echo "bench_sandbox: bwrap is missing: apt-get install -y bubblewrap" >&2; exit 1; }
command -v cc >/dev/null || { echo "bench_sandbox: cc is missing" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vs-bench-sandbox.XXXXXX)
chmod 0755 "$tmp"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

# ---- the timer ----------------------------------------------------------------
cat >"$tmp/timer.c" <<'EOF'
/* timer DEADLINE_S GAP_MS -- LABEL UID RUNS [@fd=N:PATH] CMD... [--- LABEL UID RUNS ...]
 * Runs the configurations interleaved and prints, per configuration,
 * "LABEL<TAB>n<TAB>failed<TAB>p50_us<TAB>p99_us<TAB>mean_us<TAB>min_us<TAB>max_us". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXC 8
#define RUN_TIMEOUT_MS 20000

struct conf {
    const char *label;
    long uid, runs;
    int fd_no;            /* @fd=N:PATH: PATH opened at fd N for each run */
    const char *fd_path;
    char **argv;
    double *us;
    long n, failed;
    int last_status;
};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

extern char **environ;

static void run_one(struct conf *c)
{
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    double t0 = now_us();
    pid_t pid = vfork();
    if (pid == 0) {
        /* raw syscalls only: this is a vfork child */
        if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
            _exit(126);
        setpgid(0, 0);
        if (c->fd_path != NULL) {
            int fd = open(c->fd_path, O_RDONLY);
            if (fd < 0 || dup2(fd, c->fd_no) < 0)
                _exit(126);
        }
        if (c->uid >= 0 &&
            (syscall(SYS_setgroups, 0, NULL) < 0 ||
             syscall(SYS_setresgid, c->uid, c->uid, c->uid) < 0 ||
             syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0))
            _exit(126);
        execve(c->argv[0], c->argv, environ);
        _exit(127);
    }
    close(devnull);
    if (pid < 0) {
        c->failed++;
        return;
    }
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        if (poll(&p, 1, RUN_TIMEOUT_MS) == 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        close(pfd);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    double dt = now_us() - t0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        c->us[c->n++] = dt;
    } else {
        c->failed++;
        c->last_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
}

int main(int argc, char **argv)
{
    struct conf cs[MAXC];
    int nc = 0;
    if (argc < 4 || strcmp(argv[3], "--") != 0)
        return 2;
    double deadline = now_us() + atof(argv[1]) * 1e6;
    long gap_us = atol(argv[2]) * 1000;
    for (int i = 4; i < argc && nc < MAXC;) {
        struct conf *c = &cs[nc++];
        memset(c, 0, sizeof(*c));
        if (i + 3 >= argc)
            return 2;
        c->label = argv[i];
        c->uid = atol(argv[i + 1]);
        c->runs = atol(argv[i + 2]);
        i += 3;
        if (strncmp(argv[i], "@fd=", 4) == 0) {
            char *colon = strchr(argv[i], ':');
            if (colon == NULL)
                return 2;
            c->fd_no = atoi(argv[i] + 4);
            c->fd_path = colon + 1;
            i++;
        }
        c->argv = &argv[i];
        while (i < argc && strcmp(argv[i], "---") != 0)
            i++;
        if (i < argc)
            argv[i++] = NULL;
        c->us = calloc((size_t)c->runs + 1, sizeof(double));
        if (c->us == NULL || c->runs <= 0)
            return 2;
    }
    long rounds = 0;
    for (int k = 0; k < nc; k++)
        if (cs[k].runs > rounds)
            rounds = cs[k].runs;
    /* warm-up: two runs of each, not counted */
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < nc; k++) {
            struct conf tmp = cs[k];
            double d[1];
            tmp.us = d;
            tmp.n = 0;
            run_one(&tmp);
        }
    for (long r = 0; r < rounds && now_us() < deadline; r++)
        for (int k = 0; k < nc && now_us() < deadline; k++) {
            struct conf *c = &cs[k];
            /* c->runs spread evenly over the rounds */
            if ((r + 1) * c->runs / rounds > r * c->runs / rounds) {
                if (gap_us > 0)
                    usleep((useconds_t)gap_us);
                run_one(c);
            }
        }
    for (int k = 0; k < nc; k++) {
        struct conf *c = &cs[k];
        double sum = 0;
        qsort(c->us, (size_t)c->n, sizeof(double), cmp);
        for (long i = 0; i < c->n; i++)
            sum += c->us[i];
        if (c->n == 0) {
            printf("%s\t0\t%ld\t0\t0\t0\t0\t0\t%d\n", c->label, c->failed, c->last_status);
            continue;
        }
        long i50 = (c->n - 1) / 2, i99 = (long)((double)(c->n - 1) * 0.99 + 0.5);
        printf("%s\t%ld\t%ld\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\n", c->label, c->n, c->failed,
               c->us[i50], c->us[i99], sum / (double)c->n, c->us[0], c->us[c->n - 1],
               c->last_status);
    }
    return 0;
}
EOF
cc -O2 -o "$tmp/timer" "$tmp/timer.c"

# ---- the configurations ------------------------------------------------------------
cp "$vs" "$tmp/vs-sandbox"
chmod 0755 "$tmp/vs-sandbox"

# vs-sandbox's prebuilt minimal seccomp program, for bwrap --seccomp: the BPF
# bytes of seccomp_programs.c (generated next to the binary at build time).
seccomp_note=""
programs=$(dirname "$vs")/seccomp_programs.c
if [ -f "$programs" ]; then
    cat >"$tmp/export_bpf.c" <<'EOF'
#include <stdio.h>
#include "seccomp_policy.h"
int main(void)
{
    const struct vs_seccomp_prebuilt *p = &vs_seccomp_prebuilt[VS_PRESET_MINIMAL];
    return fwrite(p->filter, sizeof(p->filter[0]), p->len, stdout) == p->len ? 0 : 1;
}
EOF
    if cc -O2 -D_GNU_SOURCE -I"$src/sandboxd/src" -I"$src/sandboxd/include" -I"$src/bus/include" \
           -o "$tmp/export_bpf" "$tmp/export_bpf.c" "$programs" 2>"$tmp/export.err" &&
       "$tmp/export_bpf" >"$tmp/minimal.bpf"; then
        chmod 0644 "$tmp/minimal.bpf"
        seccomp_note="seccomp: vs-sandbox minimal, $(($(wc -c <"$tmp/minimal.bpf") / 8)) insns"
    else
        rm -f "$tmp/minimal.bpf"
        seccomp_note="WITHOUT seccomp (could not export the program: $(head -1 "$tmp/export.err"))"
    fi
else
    seccomp_note="WITHOUT seccomp (no $programs)"
fi
set -- bwrap --unshare-all --die-with-parent --new-session --clearenv --uid 1000 --gid 1000 \
    --ro-bind /usr /usr
for l in bin sbin lib lib64; do
    if [ -L "/$l" ]; then set -- "$@" --symlink "$(readlink "/$l")" "/$l"; fi
done
set -- "$@" --proc /proc --dev /dev --tmpfs /tmp --tmpfs /workspace --chdir /workspace
bwrap_fd=""
if [ -f "$tmp/minimal.bpf" ]; then
    set -- "$@" --seccomp 9
    bwrap_fd="@fd=9:$tmp/minimal.bpf"
fi
bwrap_cmd="$(command -v bwrap) $(printf '%s ' "$@" | cut -d' ' -f2-)/bin/true"

# podman: a rootfs with a static busybox, checked once before timing.
podman_ok=""
podman_note=""
if [ "${NO_PODMAN:-0}" = 1 ]; then
    podman_note="skipped (NO_PODMAN=1)"
elif ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    podman_note="skipped: podman/runc missing (apt-get install -y podman runc)"
else
    bb=$(command -v busybox || true)
    if [ -z "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q 'statically linked'; then
        podman_note="skipped: no static busybox (apt-get install -y busybox-static)"
    else
        mkdir -p "$tmp/rootfs/bin"
        cp "$bb" "$tmp/rootfs/bin/busybox"
        ln -s busybox "$tmp/rootfs/bin/true"
        ln -s busybox "$tmp/rootfs/bin/sh"
        podman_bin=$(command -v podman)
        if timeout 60 "$podman_bin" --runtime runc run --rm --network none \
               --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
               --rootfs "$tmp/rootfs" /bin/true >"$tmp/podman.out" 2>&1; then
            podman_ok=1
        else
            podman_note="skipped: podman failed: $(tail -1 "$tmp/podman.out")"
        fi
    fi
fi

# Each configuration once, so that a broken one says why instead of
# showing up as an empty line.
check() {
    label=$1; shift
    if ! "$@" >"$tmp/check.out" 2>&1; then
        echo "bench_sandbox: $label does not run: $(tail -3 "$tmp/check.out")" >&2
        exit 1
    fi
}
check "vs-sandbox (root)" "$vs" run -- /bin/true
check "vs-sandbox (rootless)" setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/vs-sandbox" run -- /bin/true
if [ -n "$bwrap_fd" ]; then
    check "bwrap" sh -c "exec $bwrap_cmd 9<$tmp/minimal.bpf"
else
    check "bwrap" sh -c "exec $bwrap_cmd"
fi

# ---- time them -----------------------------------------------------------------------
set -- "$tmp/timer" "$DEADLINE" "$GAP_MS" -- \
    "vs-sandbox (root)" -1 "$RUNS" "$vs" run -- /bin/true --- \
    "vs-sandbox (rootless)" 65534 "$RUNS" "$tmp/vs-sandbox" run -- /bin/true --- \
    "bwrap" -1 "$RUNS" ${bwrap_fd:+"$bwrap_fd"} $bwrap_cmd --- \
    "bwrap (rootless)" 65534 "$RUNS" ${bwrap_fd:+"$bwrap_fd"} $bwrap_cmd
if [ -n "$podman_ok" ]; then
    set -- "$@" --- "podman (runc)" -1 "$PODMAN_RUNS" "$podman_bin" --runtime runc run --rm \
        --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        --rootfs "$tmp/rootfs" /bin/true
fi
start=$(date +%s)
"$@" >"$tmp/results.tsv"
end=$(date +%s)

echo "vs-sandbox: $vs ($(uname -r), $(nproc) cpus); bwrap $(bwrap --version | cut -d' ' -f2), $seccomp_note"
awk -F'\t' -v podman_note="$podman_note" -v secs=$((end - start)) -v gap="$GAP_MS" '
function ms(us) { return sprintf("%.2f", us / 1000) }
{
    label[NR] = $1; n[NR] = $2; failed[NR] = $3; p50[$1] = $4
    if ($2 == 0 || $3 > 0)
        line = sprintf("%-22s FAILED (%d of %d runs failed, last exit status %d)", $1, $3, $2 + $3, $9)
    else
        line = sprintf("%-22s p50 %s ms  p99 %s ms  (mean %s, min %s, max %s ms, n=%d)",
                       $1, ms($4), ms($5), ms($6), ms($7), ms($8), $2)
    print line
    if ($2 == 0 || $3 > 0) bad[$1] = 1
}
END {
    if (podman_note != "") printf("%-22s %s\n", "podman (runc)", podman_note)
    vs = p50["vs-sandbox (root)"]; bw = p50["bwrap"]; pm = p50["podman (runc)"]
    r1 = (vs > 0 && bw > 0 && !bad["vs-sandbox (root)"] && !bad["bwrap"]) ? sprintf("%.2f", vs / bw) : "n/a"
    r2 = (vs > 0 && pm > 0 && !bad["podman (runc)"]) ? sprintf("%.0fx", pm / vs) : "n/a"
    vr = p50["vs-sandbox (rootless)"]; br = p50["bwrap (rootless)"]
    r3 = (vr > 0 && br > 0) ? sprintf("%.2f", vr / br) : "n/a"
    printf("ratios: vs-sandbox/bwrap p50 %s (target <= 1.0), podman/vs-sandbox p50 %s (target >= 20x); rootless vs-sandbox/bwrap p50 %s\n", r1, r2, r3)
    printf("(interleaved runs, %d s%s)\n", secs, gap > 0 ? sprintf(", %d ms idle before each run", gap) : "")
    exit (bad["vs-sandbox (root)"] || bad["vs-sandbox (rootless)"] || bad["bwrap"]) ? 1 : 0
}' "$tmp/results.tsv"
