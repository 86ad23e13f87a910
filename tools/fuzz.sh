#!/usr/bin/env bash
# tools/fuzz.sh - coverage-guided fuzzing of the code that parses hostile
# input, for a bounded time (as CI runs it).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# 1. Makes sure clang and its libFuzzer runtime are there: installs clang
#    and libclang-rt-14-dev with apt-get when run as root, otherwise prints
#    the apt-get line and exits 1.
# 2. Configures <repo>/build-fuzz with clang, -DVS_FUZZ=ON -DVS_SANITIZE=ON
#    (libvsbus under ASan/UBSan with coverage instrumentation) and builds
#    the targets of tests/fuzz (cmake target "fuzz").
# 3. Replays tests/fuzz/regressions/<target>/* (reproducers of bugs found
#    earlier). A failing reproducer fails the run, except files named
#    open-*: bugs reported but not fixed yet, shown as "known open"; once
#    one passes, the script says so and it should be renamed.
# 4. Runs every target for SECONDS_PER_TARGET with -timeout=10
#    -rss_limit_mb=2048 -jobs=1 on a COPY of its seeds (tests/fuzz/corpus/
#    <target> plus the seeds the target writes itself with
#    VS_FUZZ_WRITE_SEEDS) under build-fuzz/fuzz-run/<target>/, so the repo
#    is never modified, and prints one line per target: executions,
#    exec/s, coverage (cov = instrumented edges reached, ft = features)
#    and corpus size.
#
# Exit status: 0 when nothing crashed, 1 when a target crashed, leaked,
# timed out or ran out of memory, or a reproducer failed; the reproducer
# path, the command that replays it and the report are printed. Logs:
# build-fuzz/fuzz-run/<target>/fuzz-0.log.
#
# To refresh the committed seeds after a schema change:
#   VS_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/fuzz_json build-fuzz/tests/fuzz/fuzz_json
# (likewise for every target).
set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs == 0)); then
    echo "usage: $0 [SECONDS_PER_TARGET]   (a positive integer, default 60)" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"
targets=(fuzz_messages fuzz_json fuzz_envelope fuzz_config fuzz_blob fuzz_scan fuzz_normalize)
start=$SECONDS

# ---- 1. toolchain -----------------------------------------------------------
have_toolchain() {
    command -v clang >/dev/null 2>&1 &&
        [[ -f $(clang -print-file-name="libclang_rt.fuzzer-$(uname -m).a") ]]
}
if ! have_toolchain; then
    if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz.sh: installing clang and libclang-rt-14-dev"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev
    fi
    if ! have_toolchain; then
        echo "fuzz.sh: clang with libFuzzer is missing; as root run:" >&2
        echo "  apt-get install -y clang libclang-rt-14-dev" >&2
        exit 1
    fi
fi

# ---- 2. build -----------------------------------------------------------------
# -O1 -g without -DNDEBUG: asserts stay on, stacks stay readable.
echo "fuzz.sh: configuring and building $build"
if ! cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DVS_FUZZ=ON -DVS_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g" \
    >"$build.configure.log" 2>&1; then
    cat "$build.configure.log" >&2
    echo "fuzz.sh: configure failed" >&2
    exit 1
fi
rm -f "$build.configure.log"
cmake --build "$build" --target fuzz -j "$(nproc)"

bin_of() { echo "$build/tests/fuzz/$1"; }
failed=0

# ---- 3. regressions -------------------------------------------------------------
for t in "${targets[@]}"; do
    dir="$root/tests/fuzz/regressions/$t"
    [[ -d $dir ]] || continue
    for f in "$dir"/*; do
        [[ -f $f ]] || continue
        name=$(basename "$f")
        log="$build/fuzz-run/regressions/$t.$name.log"
        mkdir -p "$(dirname "$log")"
        if "$(bin_of "$t")" "$f" >"$log" 2>&1; then
            if [[ $name == open-* ]]; then
                echo "REGRESSION $t/$name: passes now; rename it without open- so it stays fixed"
            else
                echo "REGRESSION $t/$name: ok"
            fi
        elif [[ $name == open-* ]]; then
            echo "REGRESSION $t/$name: still failing (known open bug, not counted)"
        else
            failed=1
            echo "REGRESSION $t/$name: FAILED  reproducer: $f"
            echo "  replay: $(bin_of "$t") $f"
            grep -v '^INFO:\|^Running:\|^Executed' "$log" | sed -n '1,40s/^/  | /p'
        fi
    done
done

# ---- 4. fuzz --------------------------------------------------------------------
# log_stat <log> <key>: the value of "stat::<key>:" in a libFuzzer log.
log_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }
summary=()
for t in "${targets[@]}"; do
    bin=$(bin_of "$t")
    run="$build/fuzz-run/$t"
    rm -rf "$run"
    mkdir -p "$run/corpus" "$run/artifacts"
    if [[ -d $root/tests/fuzz/corpus/$t ]]; then
        cp -R "$root/tests/fuzz/corpus/$t/." "$run/corpus/"
    fi
    VS_FUZZ_WRITE_SEEDS="$run/corpus" "$bin" >"$run/seeds.log" 2>&1 || {
        failed=1
        echo "fuzz.sh: $t could not write its seeds (see $run/seeds.log)" >&2
    }
    echo "fuzz.sh: $t for ${secs}s ($(find "$run/corpus" -type f | wc -l) seeds)"
    rc=0
    # -jobs=1: the fuzzing runs in a child whose output goes to ./fuzz-0.log.
    (cd "$run" && "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -jobs=1 \
        -artifact_prefix="$run/artifacts/" -print_final_stats=1 corpus >"$run/driver.log" 2>&1) ||
        rc=$?
    log="$run/fuzz-0.log"
    [[ -f $log ]] || log="$run/driver.log"
    execs=$(log_stat "$log" number_of_executed_units)
    speed=$(log_stat "$log" average_exec_per_sec)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' "$log" | tail -n 1 || true)
    artifacts=$(find "$run/artifacts" -type f | sort)
    if ((rc != 0)) || [[ -n $artifacts ]]; then
        failed=1
        line=$(printf '%-14s CRASH  execs=%s %s' "$t" "${execs:-?}" "${cov:-}")
        summary+=("$line")
        echo "fuzz.sh: $t FAILED (exit $rc); log: $log"
        while IFS= read -r a; do
            [[ -n $a ]] || continue
            echo "  reproducer: $a"
            echo "  replay:     $bin $a"
        done <<<"$artifacts"
        grep -v '^#[0-9]\|^INFO:' "$log" | grep -A 45 -m 1 'ERROR\|^fuzz_\|runtime error' |
            sed 's/^/  | /' || tail -n 40 "$log" | sed 's/^/  | /'
    else
        line=$(printf '%-14s ok     execs=%-10s exec/s=%-7s %s' "$t" "${execs:-?}" "${speed:-?}" \
            "${cov:-cov: ?}")
        summary+=("$line")
    fi
done

echo
echo "fuzz.sh: ${secs}s per target, $((SECONDS - start))s in all (build included)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "fuzz.sh: FAILED (see above)"
    exit 1
fi
echo "fuzz.sh: no crash"
