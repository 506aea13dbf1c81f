#!/usr/bin/env bash
# check_learning.sh POET WORKDIR MAX_LOSS MIN_ACCURACY -- POET-TRAIN-ARGS...
#
# Trains (one rank) and passes only when the mean loss of the last 10 iterations is below MAX_LOSS
# and the final test-set ensemble accuracy is at least MIN_ACCURACY. Prints both figures.
set -u
poet=$1 work=$2 max_loss=$3 min_acc=$4
shift 4
[ "${1:-}" = "--" ] && shift
rm -rf "$work" && mkdir -p "$work"
"$poet" train "$@" --set output.checkpoint_dir="\"$work/ckpt\"" --trajectory "$work/trajectory" \
  >"$work/out" 2>&1
code=$?
cat "$work/out"
[ $code = 0 ] || { echo "FAIL: poet exited $code"; exit 1; }
last=$(tail -n 10 "$work/trajectory" | while read -r _ hex; do printf '%.9f\n' "$hex"; done |
       awk '{s += $1} END {printf "%.4f", s / NR}')
acc=$(sed -n 's/^test: ensemble accuracy \([0-9.]*\),.*/\1/p' "$work/out")
[ -n "$acc" ] || { echo "FAIL: no test accuracy in the output"; exit 1; }
echo "last-10 mean loss $last (must be < $max_loss; ln 10 = 2.3026), test accuracy $acc (must be >= $min_acc)"
awk -v l="$last" -v ml="$max_loss" -v a="$acc" -v ma="$min_acc" 'BEGIN {exit !(l < ml && a >= ma)}' ||
  { echo "FAIL"; exit 1; }
echo ok
