#!/usr/bin/env bash
# run_train.sh POET MPIEXEC RANKS WORKDIR [--ref TRAJECTORY] [--falls MARGIN] -- POET-TRAIN-ARGS...
#
# Trains in WORKDIR (fresh) on RANKS ranks, recording the loss trajectory (hex floats, one line per
# iteration) in WORKDIR/trajectory. With --ref, passes only when the trajectory equals the reference
# bit for bit; prints the first differing iteration otherwise. With --falls, passes only when the mean
# loss of the last 10 iterations is below that of the first 10 by at least MARGIN.
set -u
poet=$1 mpiexec=$2 ranks=$3 work=$4
shift 4
ref=""
falls=""
if [ "${1:-}" = "--ref" ]; then ref=$2; shift 2; fi
if [ "${1:-}" = "--falls" ]; then falls=$2; shift 2; fi
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
if [ -n "$falls" ]; then
  # Loss values are hex floats; awk's strtonum is GNU-only, so let printf convert them.
  losses=$(while read -r _ hex; do printf '%.9f\n' "$hex"; done <"$work/trajectory")
  verdict=$(echo "$losses" | awk -v m="$falls" '{v[NR]=$1} END {
      for (i = 1; i <= 10; i++) { a += v[i]; b += v[NR - i + 1] }
      a /= 10; b /= 10;
      printf "first-10 mean %.4f, last-10 mean %.4f: ", a, b;
      print (a - b >= m) ? "ok" : "FAIL" }')
  echo "$verdict"
  case "$verdict" in *FAIL) exit 1;; esac
fi
exit 0
