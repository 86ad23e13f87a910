#!/bin/sh
# check.sh BUILD_DIR [CFLAGS] - `cmake --install` into a scratch prefix, then build
# and run a program against the installed libvsbus using only its
# pkg-config file: the headers, the generated protobuf headers and the
# library must all be there and agree. Then the same for the agent SDK
# (vsagent.pc): an agent builds with libvsagent and libprotobuf-c alone.
set -eu
build=$1
extra=${2:-}
prefix=$(mktemp -d /tmp/vs-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/vsctl bin/vs-sandbox include/vs/bus.h include/vs/v1/task.pb-c.h lib/pkgconfig/vsbus.pc \
         bin/vs-reference-agent include/vs/agent.h include/vs/agent_frame.h \
         include/vs/v1/agent.pb-c.h lib/libvsagent.a lib/pkgconfig/vsagent.pc; do
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

# The agent SDK: frame a command, read it back through the decoder, and
# open the channel on one end of a socketpair. Linked without libvsbus.
cat > "$prefix/agent.c" <<'C'
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "vs/agent.h"
#include "vs/agent_frame.h"
static int seen(const uint8_t *p, size_t len, void *arg)
{
    Vs__V1__AgentCommand *c = vs__v1__agent_command__unpack(NULL, len, p);
    *(int *)arg = c != NULL && c->heartbeat != NULL && c->heartbeat->sequence == 7;
    vs__v1__agent_command__free_unpacked(c, NULL);
    return 0;
}
int main(void)
{
    Vs__V1__Heartbeat hb = VS__V1__HEARTBEAT__INIT;
    Vs__V1__AgentCommand c = VS__V1__AGENT_COMMAND__INIT;
    uint8_t frame[64];
    int ok = 0, sv[2];
    hb.sequence = 7;
    c.type = VS__V1__COMMAND_TYPE__COMMAND_HEARTBEAT;
    c.body_case = VS__V1__AGENT_COMMAND__BODY_HEARTBEAT;
    c.heartbeat = &hb;
    size_t len = vs__v1__agent_command__pack(&c, frame + VS_FRAME_HEADER);
    vs_frame_decoder *d = NULL;
    if (vs_frame_header(frame, len) != 0 || vs_frame_decoder_new(VS_FRAME_MAX, &d) != 0 ||
        vs_frame_decoder_feed(d, frame, VS_FRAME_HEADER + len, seen, &ok) != 0 || !ok)
        return 1;
    vs_frame_decoder_free(d);
    vs_agent *a = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || vs_agent_open(sv[1], &a) != 0)
        return 1;
    close(sv[0]);
    int rc = vs_agent_complete(a, "done");
    vs_agent_close(a);
    return rc == -EPIPE ? 0 : 1;
}
C
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Werror $extra "$prefix/agent.c" $(pkg-config --cflags --libs vsagent) -o "$prefix/agent"
"$prefix/agent"
echo "installed tree and pkg-config files work"
