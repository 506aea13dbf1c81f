#!/usr/bin/env bash
# test_rundir.sh POET MPIEXEC WORKDIR CONFIG: one run per checkpoint directory (issue 17, item 7).
#  - a second run into a directory in use is refused (exit 5) naming the holder, on 1 and 3 ranks,
#    whether fresh, --resume or --overwrite, and the first run is unharmed (it stops cleanly and
#    resumes); every exit path (finished, stopped by a signal, failed) removes the lock;
#  - a fresh run into a directory holding another run's checkpoints or log is refused (exit 5);
#    --overwrite removes them (only then) and trains; --resume continues them;
#  - a stale lock (a dead process on this host) is taken over with a warning; a live one on
#    another host is not;
#  - --resume with --resume-from, and --overwrite with either, are usage errors (exit 2).
set -u
poet=$1 mpiexec=$2 work=$3 config=$4
rm -rf "$work" && mkdir -p "$work"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
train() { # train NAME RANKS DIR ARGS...: runs poet train (60 s at most), output in WORK/NAME.*
  local name=$1 ranks=$2 dir=$3; shift 3
  timeout 60 "$mpiexec" -np "$ranks" --oversubscribe "$poet" train "$config" --quiet \
    --set output.checkpoint_dir="\"$dir\"" "$@" >"$work/$name.out" 2>"$work/$name.err"
}
# expect NAME CODE TEXT: the last train NAME exited CODE with TEXT on stderr.
expect() {
  local code; code=$(cat "$work/$1.code")
  if [ "$code" = "$2" ] && { [ -z "$3" ] || grep -qF -- "$3" "$work/$1.err"; }; then ok "$1: exit $code: $(grep -F -- "$3" "$work/$1.err" | head -1)"
  else bad "$1: exit $code (expected $2), stderr:"; cat "$work/$1.err"; fi
}
run() { local name=$1; train "$@"; echo $? >"$work/$name.code"; }
host=$(hostname)
lock=$work/busy/poet.lock

# 1. A long run holds the directory; others are refused while it runs.
train busy 1 "$work/busy" --set training.iterations=100000 --set output.checkpoint_every=0 \
  --trajectory "$work/busy.traj" &
busy=$!
for _ in $(seq 1 300); do [ -s "$work/busy.traj" ] && break; sleep 0.1; done
[ -f "$lock" ] && ok "the running job holds $lock: $(cat "$lock")" || bad "no lock file while running"
run second_fresh 1 "$work/busy" --set training.iterations=5
expect second_fresh 5 "the checkpoint directory is in use by another run (host $host, pid"
run second_resume_p3 3 "$work/busy" --set training.iterations=5 --resume
expect second_resume_p3 5 "the checkpoint directory is in use by another run (host $host, pid"
run second_overwrite 1 "$work/busy" --set training.iterations=5 --overwrite
expect second_overwrite 5 "in use by another run"
# The first run is unharmed: SIGTERM stops it with a checkpoint (exit 75) and it lets go.
pids=$(pgrep -f -- "output.checkpoint_dir=\"$work/busy\"" | while read -r p; do
       [ "$(cat /proc/$p/comm 2>/dev/null)" = poet ] && echo "$p"; done)
kill -TERM $pids
wait $busy; code=$?
[ $code = 75 ] && ok "the first run stopped cleanly (75)" || { bad "first run exit $code"; cat "$work/busy.err"; }
[ ! -e "$lock" ] && ok "lock removed after a signal stop" || bad "lock left after a signal stop"
ls "$work/busy" | grep -q '^ckpt-' && ok "its checkpoint is there" || bad "no checkpoint after the stop"

# 2. Another run's files: refused when fresh, continued with --resume, removed with --overwrite.
run fresh_into_old 3 "$work/busy" --set training.iterations=5
expect fresh_into_old 5 "holds another run's files ("
ls "$work/busy" | grep -q '^ckpt-' && ok "nothing removed by the refused run" || bad "refused run removed files"
before=$(ls "$work/busy" | grep '^ckpt-')
run overwrite 1 "$work/busy" --set training.iterations=5 --overwrite
expect overwrite 0 ""
after=$(ls "$work/busy" | grep '^ckpt-' | tr '\n' ' ')
[ "$after" = "ckpt-00000005.h5 " ] && ok "--overwrite left only the new run's checkpoint ($before gone)" ||
  bad "after --overwrite: '$after'"
[ ! -e "$lock" ] && ok "lock removed after a finished run" || bad "lock left after a finished run"
run resume 1 "$work/busy" --set training.iterations=8 --resume
expect resume 0 ""

# 3. A failed run lets go of the lock too.
run failing 3 "$work/busy" --set training.iterations=10 --resume --set data.test_images=\"/nonexistent\"
expect failing 4 "/nonexistent"
[ ! -e "$lock" ] && ok "lock removed after a failure" || bad "lock left after a failure"

# 4. Stale locks: a dead process on this host is taken over; a process on another host is not.
sleep 0.01 & dead=$!; wait $dead
echo "host=$host pid=$dead slurm_job=- restart=-" >"$lock"
run stale 1 "$work/busy" --set training.iterations=10 --resume
expect stale 0 "warning: $lock: taking over the lock of a run that is gone (host $host, pid $dead)"
echo "host=elsewhere-$host pid=$$ slurm_job=4242 restart=-" >"$lock"
run foreign_p3 3 "$work/busy" --set training.iterations=12 --resume
expect foreign_p3 5 "in use by another run (host elsewhere-$host, pid $$, Slurm job 4242)"
[ -f "$lock" ] && ok "the foreign lock is left alone" || bad "the foreign lock was removed"
# An earlier run of this same Slurm job (requeued: another SLURM_RESTART_COUNT) is gone, wherever
# it ran; a lock of this job with the same restart count (a concurrent step) is not.
echo "host=elsewhere-$host pid=$$ slurm_job=777 restart=0" >"$lock"
SLURM_JOB_ID=777 SLURM_RESTART_COUNT=1 run requeued 1 "$work/busy" --set training.iterations=12 --resume
expect requeued 0 "taking over the lock of a run that is gone (host elsewhere-$host, pid $$, Slurm job 777)"
echo "host=elsewhere-$host pid=$$ slurm_job=777 restart=1" >"$lock"
SLURM_JOB_ID=777 SLURM_RESTART_COUNT=1 run same_step 1 "$work/busy" --set training.iterations=14 --resume
expect same_step 5 "in use by another run (host elsewhere-$host, pid $$, Slurm job 777)"
rm -f "$lock"

# 5. Contradicting options.
run both_resumes 1 "$work/busy" --resume --resume-from "$work/busy/latest"
expect both_resumes 2 "--resume and --resume-from"
run overwrite_resume 1 "$work/busy" --overwrite --resume
expect overwrite_resume 2 "--overwrite starts over, --resume continues"

[ $fails = 0 ] && echo "all checkpoint-directory checks passed" && exit 0
echo "$fails check(s) failed"; exit 1
