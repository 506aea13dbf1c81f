#!/usr/bin/env bash
# run_train.sh POET MPIEXEC RANKS WORKDIR [--ref TRAJECTORY] -- POET-TRAIN-ARGS...
#
# Trains in WORKDIR (fresh) on RANKS ranks, recording the loss trajectory (hex floats, one line per
# iteration) in WORKDIR/trajectory. With --ref, passes only when the trajectory equals the reference
# bit for bit; prints the first differing iteration otherwise.
set -u
poet=$1 mpiexec=$2 ranks=$3 work=$4
shift 4
ref=""
if [ "${1:-}" = "--ref" ]; then ref=$2; shift 2; fi
[ "${1:-}" = "--" ] && shift
rm -rf "$work" && mkdir -p "$work"
"$mpiexec" -np "$ranks" --oversubscribe "$poet" train "$@" --quiet \
  --set output.checkpoint_dir="\"$work/ckpt\"" --trajectory "$work/trajectory" >"$work/out" 2>&1
code=$?
cat "$work/out"
if [ $code != 0 ]; then echo "FAIL: poet exited $code"; exit 1; fi
lines=$(wc -l <"$work/trajectory")
if [ "$lines" -lt 1 ]; then echo "FAIL: empty trajectory"; exit 1; fi
if [ -n "$ref" ]; then
  if ! cmp -s "$ref" "$work/trajectory"; then
    echo "FAIL: trajectory differs from $ref; first difference:"
    diff "$ref" "$work/trajectory" | head -4
    exit 1
  fi
  echo "ok: $lines iterations identical to $ref, bit for bit"
fi
exit 0
