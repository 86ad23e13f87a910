# tools/deps.sh - the Debian 12 packages VibeShield needs, installed when
# missing. Sourced by tools/quickstart.sh, tools/test.sh and .ci/run, so
# that the list lives in one place.
#
# As root it runs apt-get itself; otherwise it prints the exact command.

VS_DEBIAN_PACKAGES="build-essential cmake pkg-config libuv1-dev libnats-dev libprotobuf-c-dev
protobuf-c-compiler libseccomp-dev libsodium-dev liblmdb-dev libyaml-dev libjansson-dev
libcmocka-dev libssl-dev libhyperscan-dev libpcre2-dev libcurl4-openssl-dev nats-server python3
libarchive-dev libacl1-dev"
# (python3 above serves the quickstart's demo web pages; libacl1-dev has the
# libacl.a that a static vs-sandbox needs besides libarchive.a.)
# What only the tests and benchmarks need: real programs to sandbox
# (busybox, python3), the launchers we compare with (bubblewrap, podman
# with runc), hyperfine, SQLite (the ledger benchmark's baseline),
# python3-jsonschema (vs-scan's SARIF log against the SARIF schema), zlib
# (the test HTTP server's gzip bomb), curl (the egress benchmark's
# baseline) and minisign (the image tests sign with the real tool).
VS_DEBIAN_TEST_PACKAGES="busybox-static python3 python3-jsonschema bubblewrap podman runc hyperfine
libsqlite3-dev zlib1g-dev curl minisign"

# vs_deps_missing [test]: the packages not installed (with "test", the test
# packages too).
vs_deps_missing() {
    local missing="" p list="$VS_DEBIAN_PACKAGES"
    [ "${1:-}" = test ] && list="$list $VS_DEBIAN_TEST_PACKAGES"
    for p in $list; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

# vs_deps_ensure [test]: install what is missing.
vs_deps_ensure() {
    local missing
    missing=$(vs_deps_missing "${1:-}")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages:$missing" >&2
        echo "install them with: sudo apt-get install -y$missing" >&2
        return 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q $missing >/dev/null
}
