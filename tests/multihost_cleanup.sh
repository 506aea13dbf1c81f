#!/usr/bin/env bash
# multihost_cleanup.sh MULTIHOST.SH MPIEXEC CONFIG WORKDIR: the namespace harness must fail cleanly
# and leave nothing behind when a run fails (here: a "poet" that is /bin/false).
set -u
"$1" /bin/false "$2" "$3" "$4"
code=$?
[ $code = 77 ] && exit 77
left=$({ ip netns list; ip link show; } 2>/dev/null | grep -c "^psc[0-9]\|vh-psc\|br-psc")
if [ $code = 0 ]; then echo "FAIL: the harness passed with a failing poet"; exit 1; fi
if [ "$left" != 0 ]; then echo "FAIL: $left namespace(s)/interface(s) left behind"; exit 1; fi
echo "ok: the failing run exited $code and left no namespace or interface behind"
