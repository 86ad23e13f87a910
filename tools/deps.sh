# tools/deps.sh - the Debian 12 packages VibeShield needs, installed when
# missing. Sourced by tools/quickstart.sh, tools/test.sh and .ci/run, so
# that the list lives in one place.
#
# As root it runs apt-get itself; otherwise it prints the exact command.

VS_DEBIAN_PACKAGES="build-essential cmake pkg-config libuv1-dev libnats-dev libprotobuf-c-dev
protobuf-c-compiler libseccomp-dev libsodium-dev liblmdb-dev libyaml-dev libjansson-dev
libcmocka-dev nats-server"

vs_deps_missing() {
    local missing="" p
    for p in $VS_DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

vs_deps_ensure() {
    local missing
    missing=$(vs_deps_missing)
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
