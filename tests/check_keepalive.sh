#!/bin/sh
# check_keepalive.sh JOBS_DIR: every job template shortens Open MPI's out-of-band keepalive
# (jobs/README.md, "A node that drops off the network").
status=0
for f in "$1"/*.sbatch; do
  for k in time:5 intvl:2 probes:3; do
    name=${k%%:*} value=${k#*:}
    if ! grep -q "OMPI_MCA_oob_tcp_keepalive_$name=\${OMPI_MCA_oob_tcp_keepalive_$name:-$value}" "$f"; then
      echo "FAIL: $f does not export OMPI_MCA_oob_tcp_keepalive_$name (default $value)"
      status=1
    fi
  done
done
[ $status = 0 ] && echo ok
exit $status
