#!/bin/sh
# check.sh BUILD_DIR [CFLAGS] - `cmake --install` into a scratch prefix, then build
# and run a program against the installed libvsbus using only its
# pkg-config file: the headers, the generated protobuf headers and the
# library must all be there and agree.
set -eu
build=$1
extra=${2:-}
prefix=$(mktemp -d /tmp/vs-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/vsctl bin/vs-sandbox include/vs/bus.h include/vs/v1/task.pb-c.h lib/pkgconfig/vsbus.pc; do
    [ -e "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
cat > "$prefix/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "vs/subjects.h"
#include "vs/v1/task.pb-c.h"
int main(void)
{
    Vs__V1__TaskSubmit t = VS__V1__TASK_SUBMIT__INIT;
    t.agent = "agent-1";
    const struct vs_subject_def *d = vs_subject_match("vs.task.submit");
    return d != NULL && d->message == t.base.descriptor &&
           strcmp(vs_subject(VS_SUBJ_TASK_SUBMIT)->pattern, "vs.task.submit") == 0 ? 0 : 1;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Werror $extra "$prefix/use.c" $(pkg-config --cflags --libs vsbus) -o "$prefix/use"
LD_LIBRARY_PATH="$prefix/lib" "$prefix/use"
echo "installed tree and pkg-config file work"
