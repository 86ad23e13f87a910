# escape.sh - a hostile "real program" for the sandbox battery: what an
# agent with a shell would try first, written with busybox applets under
# the minimal preset. Every attempt prints one "RESULT <what> <outcome>"
# line; the driver checks that each one was refused (and never sees the
# host's /etc/shadow or a host process). Nothing here can harm the host if
# a protection were missing: it only reads, and creates in /workspace.
cd /workspace
try() { # try WHAT COMMAND... : run it, report OK or REFUSED
    what=$1; shift
    if "$@" >/dev/null 2>&1; then echo "RESULT $what OK"; else echo "RESULT $what REFUSED"; fi
}
try shadow cat /etc/shadow
try write_etc sh -c 'echo x > /etc/passwd'
try write_usr sh -c 'echo x > /usr/pwned'
mkdir -p m
try mount mount -t tmpfs none /workspace/m
try chroot chroot / /bin/true
try wget wget -q -T 2 -O /workspace/x http://1.1.1.1/
try nc sh -c 'echo hi | nc -w 2 1.1.1.1 80'
try hostname hostname pwned
echo "RESULT hostname_now $(hostname)"
echo "RESULT procs $(ls /proc | grep -c '^[0-9]')"
echo "RESULT sys $(ls /sys 2>/dev/null | wc -l)"
echo "RESULT dev $(ls /dev | tr '\n' ' ')"
echo "RESULT escape DONE"
