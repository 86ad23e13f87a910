#!/bin/bash
# tools/test.sh - build VibeShield and run the whole test suite (unit and
# integration tests against real nats-servers) with ctest, two at a time.
#
#   tools/test.sh              normal build in build/
#   tools/test.sh --sanitize   ASan + UBSan build in build-asan/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$root/tools/deps.sh"

sanitize=OFF
build="$root/build"
case "${1:-}" in
    --sanitize) sanitize=ON; build="$root/build-asan" ;;
    "") ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "usage: tools/test.sh [--sanitize]" >&2; exit 2 ;;
esac

vs_deps_ensure test
cmake -S "$root" -B "$build" -DVS_SANITIZE=$sanitize >/dev/null
cmake --build "$build" -j2
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" -j2 --output-on-failure
