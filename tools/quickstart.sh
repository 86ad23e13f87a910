#!/bin/bash
# tools/quickstart.sh - set everything up and run the main job on this
# machine: install the Debian packages (as root; otherwise print the
# apt-get line), build, start a local stack (its own nats-server with
# JetStream and a state directory), show what runs, publish an audit event
# and watch it come back through the AUDIT stream, then stop the stack.
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
"$vsctl" audit tail --last 5 --count 1 --timeout 10
echo "== vsctl down"
"$vsctl" down
trap - EXIT
