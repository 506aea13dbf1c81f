#!/usr/bin/env bash
# test_job_signals.sh SRC_DIR POET MPIEXEC WORKDIR REFDIR ITERATIONS
#
# jobs/train-preemptible.sbatch without Slurm: runs the script with bash, SLURM_* faked and
# `scontrol` replaced by a stub that records its arguments. SIGUSR1 to the script mid-run must make
# poet checkpoint and exit 75 and the script requeue its job; SIGTERM to the second run
# (SLURM_RESTART_COUNT=1) must stop it the same way but without a requeue (exit 75); the third run
# must resume and finish. The joined trajectory must equal REFDIR/trajectory (an uninterrupted run of
# the same config) bit for bit, and the final checkpoint must carry the same per-member checksums.
set -u
src=$1 poet=$2 mpiexec=$3 work=$4 ref=$5 iterations=$6
script=$src/jobs/train-preemptible.sbatch
fail() { echo "FAIL: $*"; exit 1; }

# newest_checkpoint DIR: the checkpoint with the highest iteration.
newest_checkpoint() { ls "$1"/ckpt-*.h5 2>/dev/null | sort | tail -n 1; }
# weights_of FILE: `poet inspect`'s iteration line and per-member checksum rows.
weights_of() { "$poet" inspect "$1" | grep -E '^(iteration |[0-9]{4} )'; }

rm -rf "$work" && mkdir -p "$work/bin" || fail "cannot create $work"
cat >"$work/bin/scontrol" <<EOF
#!/bin/sh
echo "\$*" >>"$work/scontrol.calls"
EOF
chmod +x "$work/bin/scontrol"

# Nothing of a surrounding Slurm job may leak in (Open MPI would take it for an allocation).
for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done
export PATH="$work/bin:$PATH" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1
export SLURM_SUBMIT_DIR=$src POET_BIN=$poet POET_MPIRUN=$mpiexec POET_CONFIG=tests/configs/tiny.json
export POET_STOP_GRACE=2 # mpirun lingers ~2x this after a rank exits 75; the default 10 s is slow
POET_ARGS="--set training.iterations=$iterations --set training.log_every=1"
export POET_ARGS="$POET_ARGS --set output.checkpoint_dir=$work/ckpt --trajectory $work/trajectory"

# run_and_signal N SIGNAL FROM: run N of the script, sent SIGNAL once it has printed iteration
# FROM + 20 (outside Slurm only the script gets it; it must pass the stop on). Leaves the script's
# exit code in $code and the checkpoint's iteration in $stopped.
run_and_signal() {
  local n=$1 sig=$2 target=$(($3 + 20)) log=$work/run$1.log i
  SLURM_RESTART_COUNT=$((n - 1)) bash "$script" >"$log" 2>&1 &
  local job=$!
  for ((i = 0; i < 600; i++)); do
    grep -q "^iter  *$target/" "$log" 2>/dev/null && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "^iter  *$target/" "$log" || { cat "$log"; fail "run $n never reached iteration $target"; }
  kill -"$sig" "$job"
  wait "$job"
  code=$?
  cat "$log"
  grep -q 'poet exited 75' "$log" || fail "run $n: poet did not exit 75 (POET_STOPPED) after SIG$sig"
  stopped=$(basename "$(newest_checkpoint "$work/ckpt")" .h5)
  stopped=$((10#${stopped#ckpt-}))
  [ "$stopped" -ge "$target" ] && [ "$stopped" -lt "$iterations" ] ||
    fail "run $n: newest checkpoint at iteration $stopped, expected one in [$target, $iterations)"
}
scontrol_calls() { cat "$work/scontrol.calls" 2>/dev/null; }

# Run 1: SIGUSR1 (what --signal=B:USR1@N sends): checkpoint, exit 75, the script requeues its job.
run_and_signal 1 USR1 0
[ "$code" = 0 ] || fail "run 1: the script exited $code, expected 0 after requeueing"
[ "$(scontrol_calls)" = "requeue 4242" ] ||
  fail "run 1: scontrol calls were '$(scontrol_calls)', expected 'requeue 4242'"
stop1=$stopped
echo "ok: run 1 stopped by SIGUSR1 after iteration $stop1 and requeued job 4242"

# Run 2, the requeued job: SIGTERM (preemption): checkpoint, exit 75, no requeue (Slurm's job).
run_and_signal 2 TERM "$stop1"
grep -q "resuming from .* at iteration $stop1\$" "$work/run2.log" || fail "run 2 did not resume at iteration $stop1"
[ "$code" = 75 ] || fail "run 2: the script exited $code after SIGTERM, expected 75"
[ "$(scontrol_calls)" = "requeue 4242" ] || fail "run 2 called scontrol after SIGTERM: '$(scontrol_calls)'"
stop2=$stopped
echo "ok: run 2 resumed at $stop1, stopped by SIGTERM after iteration $stop2, exited 75, no requeue"

# Run 3 finishes.
SLURM_RESTART_COUNT=2 bash "$script" >"$work/run3.log" 2>&1
code=$?
cat "$work/run3.log"
[ "$code" = 0 ] || fail "run 3: the script exited $code, expected 0"
grep -q "resuming from .* at iteration $stop2\$" "$work/run3.log" || fail "run 3 did not resume at iteration $stop2"
[ "$(scontrol_calls)" = "requeue 4242" ] || fail "run 3 called scontrol although it finished"

# The joined trajectory: one line per iteration (repeats must agree), equal to the reference.
awk '{ if ($1 in loss && loss[$1] != $2) { print "iteration " $1 ": " loss[$1] " then " $2; bad = 1 }
       loss[$1] = $2 } END { exit bad }' "$work/trajectory" || fail "a repeated iteration changed its loss"
sort -n -k1,1 -u "$work/trajectory" >"$work/trajectory.joined"
if ! cmp -s "$ref/trajectory" "$work/trajectory.joined"; then
  diff "$ref/trajectory" "$work/trajectory.joined" | head -4
  fail "the interrupted trajectory differs from the uninterrupted $ref/trajectory"
fi
echo "ok: $(wc -l <"$work/trajectory.joined") iterations identical to the uninterrupted run, bit for bit"

final=$(newest_checkpoint "$work/ckpt") reference=$(newest_checkpoint "$ref/ckpt")
[ -n "$final" ] && [ -n "$reference" ] || fail "missing final checkpoint ($final / $reference)"
weights_of "$final" >"$work/weights" || fail "poet inspect $final failed"
weights_of "$reference" >"$work/weights.ref" || fail "poet inspect $reference failed"
grep -q "^iteration $iterations of" "$work/weights" || fail "$final is not at iteration $iterations"
if ! diff "$work/weights.ref" "$work/weights"; then
  fail "final weights differ from the uninterrupted run (checksums above)"
fi
echo "ok: final checkpoint $final has the uninterrupted run's checksums:"
cat "$work/weights"
