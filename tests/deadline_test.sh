#!/usr/bin/env bash
# deadline_test.sh POET MPIEXEC CASE RANKS WORK CONFIG [ARGS...]: deadline-aware stopping
# (issue 16).
# The clock is the test clock (POET_TEST_SECONDS_PER_STEP=100: every iteration, evaluation and
# checkpoint takes 100 s of it and is estimated so), so where the run stops does not depend on the
# machine's speed. The deadline is 1000 s away.
#   stop   --deadline TIME: exit 75 with a checkpoint before the deadline; --resume then gives the
#          trajectory and final weights of an uninterrupted run, bit for bit
#   slurm  --deadline slurm with a stand-in squeue printing the job's end time: the same
#   every  output.checkpoint_every_seconds=250: a checkpoint every 4 iterations of the test clock,
#          at the same iterations on any rank count (rank 0 decides; the decision rides the header)
set -u
poet=$1 mpiexec=$2 case=$3 ranks=$4 work=$5 config=$6
shift 6
rm -rf "$work" && mkdir -p "$work"
common=("$config" --quiet "$@")
fail() { echo "FAIL: $*"; exit 1; }
export POET_TEST_SECONDS_PER_STEP=100
deadline=$(date -d '+1000 seconds' +%Y-%m-%dT%H:%M:%S)

run() { # run NAME ARGS...
  local name=$1; shift
  "$mpiexec" -np "$ranks" --oversubscribe "$poet" train "${common[@]}" \
    --set output.checkpoint_dir="\"$work/$name\"" --trajectory "$work/$name.traj" "$@" \
    >>"$work/$name.out" 2>&1
}

case $case in
stop | slurm)
  run ref || { cat "$work/ref.out"; fail "reference run failed"; }
  total=$(wc -l <"$work/ref.traj")
  if [ "$case" = slurm ]; then
    mkdir -p "$work/bin"
    printf '#!/bin/sh\n[ "$*" = "-h -j 4242 -o %%e" ] && echo %s\n' "$deadline" >"$work/bin/squeue"
    chmod +x "$work/bin/squeue"
    # mpiexec started by its full path acts as --prefix and puts its bin directory (where a real
    # squeue may be) first in the ranks' PATH: start it by name so the stand-in comes first.
    mpiexec_dir=$(dirname "$mpiexec")
    mpiexec=$(basename "$mpiexec")
    PATH="$work/bin:$mpiexec_dir:$PATH" SLURM_JOB_ID=4242 run cut --deadline slurm
  else
    run cut --deadline "$deadline"
  fi
  code=$?
  cat "$work/cut.out"
  stopped_at=$(wc -l <"$work/cut.traj")
  echo "stopped after $stopped_at of $total iterations, exit code $code"
  [ $code = 75 ] || fail "expected exit 75, got $code"
  grep -q "to finish before the deadline" "$work/cut.out" || fail "no deadline message"
  # Test clock: iterations 0..s-1 took s*100 s, the checkpoint 100 s more; it must end before the
  # deadline (1000 s) and not absurdly early (estimates are 100 s each, the margin 10 s).
  [ "$stopped_at" -ge 5 ] && [ $(( stopped_at * 100 + 100 )) -le 1000 ] ||
    fail "stopped after $stopped_at iterations: the checkpoint would not end before the deadline"
  [ -f "$work/cut/ckpt-$(printf %08d "$stopped_at").h5" ] || fail "no checkpoint at $stopped_at"
  unset POET_TEST_SECONDS_PER_STEP
  "$mpiexec" -np "$ranks" --oversubscribe "$poet" train "${common[@]}" --resume \
    --set output.checkpoint_dir="\"$work/cut\"" --trajectory "$work/cut.traj" >"$work/resume.out" \
    2>&1 || { cat "$work/resume.out"; fail "resume failed"; }
  cmp -s "$work/ref.traj" "$work/cut.traj" ||
    { diff "$work/ref.traj" "$work/cut.traj" | head -5; fail "trajectory differs"; }
  last() { ls "$1"/ckpt-*.h5 | sort | tail -n 1; }
  "$poet" inspect "$(last "$work/ref")" | grep -E "^[0-9]{4} " >"$work/ref.sums"
  "$poet" inspect "$(last "$work/cut")" | grep -E "^[0-9]{4} " >"$work/cut.sums"
  [ -s "$work/ref.sums" ] || fail "no member lines from poet inspect"
  cmp -s "$work/ref.sums" "$work/cut.sums" || fail "final weights differ"
  echo "ok: stopped before the deadline after $stopped_at iterations, resumed bit for bit"
  ;;
every)
  run every --set output.checkpoint_every_seconds=250 --set output.checkpoint_keep=100 ||
    { cat "$work/every.out"; fail "run failed"; }
  got=$(cd "$work/every" && ls ckpt-*.h5 | tr '\n' ' ')
  echo "checkpoints: $got"
  # 100 s per iteration and per checkpoint. Rank 0 decides before an iteration, and the checkpoint
  # follows that iteration: 300 s have passed before iteration 3 (0-based), so the first comes after
  # 4 iterations; the checkpoint's own 100 s count, so the next is due before iteration 7: after 8.
  case "$got" in
    "ckpt-00000004.h5 ckpt-00000008.h5 ckpt-00000012.h5 "*) ;;
    *) fail "expected checkpoints after iterations 4, 8, 12, ..." ;;
  esac
  echo "ok: checkpoints after iterations 4, 8, 12, ... on $ranks rank(s)"
  ;;
*) fail "unknown case $case" ;;
esac
