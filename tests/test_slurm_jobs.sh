#!/usr/bin/env bash
# test_slurm_jobs.sh SRC_DIR POET WORKDIR REFDIR ITERATIONS
#
# The job templates under a real single-node Slurm (tests/slurm_cluster.sh, private daemons):
#   1. jobs/train.sbatch and jobs/train-multinode.sbatch (on one node) with the tiny config complete
#      and poet's output is in the job log;
#   2. jobs/train-preemptible.sbatch is stopped twice while it trains: first `scancel -b -s USR1`
#      (what --signal=B:USR1@N does before the time limit: the script checkpoints and requeues itself),
#      then `scontrol requeue` (SIGTERM to the whole job, as preemption does: Slurm requeues it). The
#      third run finishes; the joined trajectory must equal REFDIR/trajectory (an uninterrupted run)
#      bit for bit and the final checkpoint must carry its per-member checksums.
# Exit 77 (skip) when Slurm cannot run on this machine, with the reason.
set -u
src=$1 poet=$2 work=$3 ref=$4 iterations=$5
here=$(cd "$(dirname "$0")" && pwd)
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; grep -v '^iter' "$f" | tail -n 30; }; done
  [ -f "$cluster/log/slurmctld.log" ] && { echo "--- slurmctld.log"; tail -n 20 "$cluster/log/slurmctld.log"; }
  exit 1
}
newest_checkpoint() { ls "$1"/ckpt-*.h5 2>/dev/null | sort | tail -n 1; }
weights_of() { "$poet" inspect "$1" | grep -E '^(iteration |[0-9]{4} )'; }
job_state() { squeue -h -t all -j "$1" -o %T 2>/dev/null; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s; fails naming WHAT after SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after $limit s waiting for $what"
    sleep 0.2
  done
}
job_finished() { case $(job_state "$1") in PENDING | RUNNING | COMPLETING | CONFIGURING | REQUEUE* | "") return 1 ;; esac; }
# run_reached LOG RUN N: run RUN of the preemptible job has printed progress for iteration >= N.
run_reached() {
  awk -v run="$2" -v n="$3" '/train-preemptible.sbatch: job .* run [0-9]+ on/ { cur = $5 }
    cur == run && /^iter / { split($2, a, "/"); if (a[1] + 0 >= n) found = 1 }
    END { exit !found }' "$1" 2>/dev/null
}
# resumed_at LOG RUN: the iteration run RUN resumed at (empty: none yet).
resumed_at() {
  awk -v run="$2" '/train-preemptible.sbatch: job .* run [0-9]+ on/ { cur = $5 }
    cur == run && /^resuming from .* at iteration/ { print $NF }' "$1" 2>/dev/null
}
has_resumed() { [ -n "$(resumed_at "$1" "$2")" ]; }

rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
# Sockets live in the cluster directory: keep its path short, whatever the build tree's.
cluster=$(mktemp -d /tmp/poet-slurm.XXXXXX) || fail "mktemp failed"
trap 'bash "$here/slurm_cluster.sh" stop "$cluster"; rm -rf "$cluster"' EXIT
for v in $(compgen -e | grep '^SLURM_'); do unset "$v"; done
unset OMPI_MCA_rmaps_base_oversubscribe # the jobs must fit their allocation as they are
bash "$here/slurm_cluster.sh" start "$cluster" $$
code=$?
[ "$code" = 77 ] && exit 77
[ "$code" = 0 ] || fail "slurm_cluster.sh start exited $code"
. "$cluster/env"
ranks=$(($(getconf _NPROCESSORS_ONLN) >= 2 ? 2 : 1)) # not nproc: it obeys OMP_NUM_THREADS
export POET_BIN=$poet POET_CONFIG=$src/tests/configs/tiny.json

# 1. The plain templates (the multi-node one on the one node there is).
started=$SECONDS
submit_plain() { # NAME TEMPLATE SBATCH-OPTIONS...: submits, prints the job id
  local name=$1 template=$2
  shift 2
  POET_ARGS="--set output.checkpoint_dir=$work/$name" \
    sbatch --parsable "$@" -o "$work/$name.out" "$src/jobs/$template" ||
    fail "sbatch jobs/$template failed"
}
plain=$(submit_plain plain train.sbatch -n "$ranks") || exit 1
multi=$(submit_plain multi train-multinode.sbatch -N 1 --ntasks-per-node="$ranks") || exit 1
for j in "plain $plain train.sbatch" "multi $multi train-multinode.sbatch"; do
  set -- $j
  wait_for 120 "job $2 ($3) to finish" job_finished "$2"
  [ "$(job_state "$2")" = COMPLETED ] || fail "job $2 ($3) ended $(job_state "$2"), expected COMPLETED"
  grep -q '^done: 50 iterations' "$work/$1.out" || fail "job $2: poet's summary is not in the job log"
  grep -q "$3: poet exited 0" "$work/$1.out" || fail "job $2: $3 did not report exit 0"
  [ -f "$work/$1/ckpt-00000050.h5" ] || fail "job $2: no final checkpoint in $work/$1"
  echo "ok: job $2 ($3, $ranks ranks) completed, poet's output in its log"
done
echo "ok: both plain jobs done in $((SECONDS - started)) s"

# 2. The preemptible template, stopped by USR1 and then by a requeue (TERM).
started=$SECONDS
args="--set training.iterations=$iterations --set training.log_every=1"
args="$args --set output.checkpoint_dir=$work/preempt --trajectory $work/preempt.trajectory"
POET_STOP_GRACE=2 POET_ARGS=$args sbatch --parsable -n "$ranks" -o "$work/preempt.out" "$src/jobs/train-preemptible.sbatch" \
  >"$work/preempt.id" || fail "sbatch jobs/train-preemptible.sbatch failed"
job=$(cat "$work/preempt.id")
log=$work/preempt.out
wait_for 120 "run 1 of job $job to reach iteration 20" run_reached "$log" 1 20
scancel -b -s USR1 "$job" || fail "scancel -b -s USR1 $job failed"
wait_for 120 "run 2 of job $job to resume from a checkpoint" has_resumed "$log" 2
stop1=$(resumed_at "$log" 2)
wait_for 60 "run 2 of job $job to pass iteration $((stop1 + 10))" run_reached "$log" 2 $((stop1 + 10))
scontrol requeue "$job" || fail "scontrol requeue $job failed"
wait_for 180 "job $job to finish" job_finished "$job"
echo "job $job finished in $((SECONDS - started)) s; its log:"
grep -v '^iter' "$log"
[ "$(job_state "$job")" = COMPLETED ] || fail "job $job ended $(job_state "$job"), expected COMPLETED"
grep -q 'SIGUSR1 received' "$log" || fail "run 1: the script never saw SIGUSR1"
grep -q 'poet exited 75' "$log" || fail "run 1: poet did not exit 75 after SIGUSR1"
grep -q "requeueing job $job" "$log" || fail "run 1: the script did not requeue its job"
grep -q 'SIGTERM received' "$log" || fail "run 2: the script never saw SIGTERM"
stop2=$(resumed_at "$log" 3)
[ -n "$stop2" ] && [ "$stop2" -gt "$stop1" ] && [ "$stop2" -lt "$iterations" ] ||
  fail "run 3 resumed at '${stop2}', expected an iteration in ($stop1, $iterations)"
restarts=$(scontrol show job "$job" | grep -o 'Restarts=[0-9]*')
[ "$restarts" = Restarts=2 ] || fail "job $job: $restarts, expected Restarts=2"
echo "ok: job $job stopped by SIGUSR1 after iteration $stop1 (requeued itself), by scontrol requeue" \
     "after iteration $stop2, then finished ($restarts)"

awk '{ if ($1 in loss && loss[$1] != $2) { print "iteration " $1 ": " loss[$1] " then " $2; bad = 1 }
       loss[$1] = $2 } END { exit bad }' "$work/preempt.trajectory" || fail "a repeated iteration changed its loss"
sort -n -k1,1 -u "$work/preempt.trajectory" >"$work/preempt.joined"
if ! cmp -s "$ref/trajectory" "$work/preempt.joined"; then
  diff "$ref/trajectory" "$work/preempt.joined" | head -4
  fail "the preempted job's trajectory differs from the uninterrupted $ref/trajectory"
fi
echo "ok: $(wc -l <"$work/preempt.joined") iterations identical to the uninterrupted run, bit for bit"
final=$(newest_checkpoint "$work/preempt") reference=$(newest_checkpoint "$ref/ckpt")
[ -n "$final" ] && [ -n "$reference" ] || fail "missing final checkpoint ($final / $reference)"
weights_of "$final" >"$work/weights" || fail "poet inspect $final failed"
weights_of "$reference" >"$work/weights.ref" || fail "poet inspect $reference failed"
grep -q "^iteration $iterations of" "$work/weights" || fail "$final is not at iteration $iterations"
diff "$work/weights.ref" "$work/weights" || fail "final weights differ from the uninterrupted run"
echo "ok: final checkpoint $final has the uninterrupted run's checksums:"
cat "$work/weights"
