#!/bin/bash
# tools/quickstart.sh - set everything up and run the main job on this
# machine: install the Debian packages (as root; otherwise print the
# apt-get line), build, start a local stack (its own nats-server with
# JetStream and a state directory), show what runs, publish an audit event
# and watch it come back through the AUDIT stream, run a program in the
# native sandbox (and see a denied call named), then stop the stack.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/deps.sh
. "$root/tools/deps.sh"

vs_deps_ensure
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j2 >/dev/null
vsctl="$root/build/tools/vsctl/vsctl"

export VS_STATE_DIR="${VS_STATE_DIR:-$root/.vs-state}"
trap '"$vsctl" down >/dev/null 2>&1 || true' EXIT

echo "== vsctl up (state in $VS_STATE_DIR)"
"$vsctl" up --port 0
echo "== vsctl status"
"$vsctl" status || true
echo "== vsctl audit emit"
"$vsctl" audit emit --category demo --severity notice --event quickstart_hello \
    --agent demo-agent step=quickstart
echo "== vsctl audit tail (the event, read back from JetStream)"
"$vsctl" audit tail --last 1 --count 1 --timeout 10
echo "== vs-sandbox: a program in a throw-away sandbox, and an escape attempt it stops"
"$root/build/sandboxd/vs-sandbox" run --time-limit 10 -- /bin/sh -c \
    'echo "hello from $(id -un) (uid $(id -u)) on $(hostname)"; ls /; echo result > /workspace/out/r.txt'
"$root/build/sandboxd/vs-sandbox" run --json --time-limit 10 -- /bin/sh -c \
    'unshare -U true || echo "unshare refused, as it should be"' || true
echo "== vsctl down"
"$vsctl" down
trap - EXIT
