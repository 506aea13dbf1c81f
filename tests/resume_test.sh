#!/usr/bin/env bash
# resume_test.sh POET MPIEXEC HOW RANKS RESUME_RANKS WORKDIR CONFIG [POET-ARGS...]
#
# Interrupts a training run and resumes it; passes only when the resumed run's losses and final
# weights equal, bit for bit, those of a run that was never interrupted.
#   HOW = term   SIGTERM to every rank (what Slurm does): poet checkpoints and exits 75
#         usr1   SIGUSR1 to mpirun, which forwards it to the ranks: likewise
#         kill9  kill -9 of one rank after a periodic checkpoint: the job dies; --resume replays
#                from that checkpoint (replayed iterations must repeat exactly)
#   RESUME_RANKS may differ from RANKS (elastic restart).
set -u
poet=$1 mpiexec=$2 how=$3 ranks=$4 resume_ranks=$5 work=$6 config=$7
shift 7
rm -rf "$work" && mkdir -p "$work"
common=("$config" --quiet "$@")
fail() { echo "FAIL: $*"; exit 1; }

run() { # run NAME RANKS ARGS... (foreground)
  local name=$1 np=$2; shift 2
  "$mpiexec" -np "$np" --oversubscribe "$poet" train "${common[@]}" \
    --set output.checkpoint_dir="\"$work/$name\"" --trajectory "$work/$name.traj" "$@" \
    >>"$work/$name.out" 2>&1
}

# 1. The uninterrupted reference.
run ref "$ranks" || { cat "$work/ref.out"; fail "reference run failed"; }
total=$(wc -l <"$work/ref.traj")

# 2. The interrupted run: wait until a quarter of it is done (past a periodic checkpoint), then
#    interrupt it, leaving most of the run for the signal to arrive in.
"$mpiexec" -np "$ranks" --oversubscribe "$poet" train "${common[@]}" \
  --set output.checkpoint_dir="\"$work/cut\"" --trajectory "$work/cut.traj" >"$work/cut.out" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do
  [ -f "$work/cut.traj" ] && [ "$(wc -l <"$work/cut.traj")" -ge $((total / 4)) ] && break
  kill -0 $launcher 2>/dev/null || break
  sleep 0.1
done
ranks_pids=$(pgrep -f -- "output.checkpoint_dir=\"$work/cut\"" | grep -v "^$launcher\$" |
             while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = poet ] && echo "$p"; done)
[ -n "$ranks_pids" ] || { cat "$work/cut.out"; fail "could not find the running ranks"; }
case $how in
  term)  kill -TERM $ranks_pids ;;
  usr1)  kill -USR1 $launcher ;;
  kill9) kill -9 "$(echo "$ranks_pids" | tail -n 1)" ;;
  *) fail "unknown HOW $how" ;;
esac
wait $launcher
code=$?
# After kill -9 of one rank, mpirun may exit while the other ranks are still being taken down;
# they hold the checkpoint directory's lock until they are gone, so wait for them (as a user or a
# requeued job would find them gone) before resuming.
for _ in $(seq 1 300); do
  alive=$(for p in $ranks_pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done)
  [ -z "$alive" ] && break
  sleep 0.1
done
cat "$work/cut.out"
stopped_at=$(wc -l <"$work/cut.traj")
echo "interrupted ($how) after $stopped_at of $total iterations, exit code $code"
if [ "$how" = kill9 ]; then
  [ $code != 0 ] || fail "the job survived kill -9 of a rank"
else
  [ $code = 75 ] || fail "expected exit 75 after $how, got $code"
  [ "$stopped_at" -lt "$total" ] || fail "the run finished before the signal arrived; nothing tested"
fi

# 3. Resume, possibly on another number of ranks.
"$mpiexec" -np "$resume_ranks" --oversubscribe "$poet" train "${common[@]}" --resume \
  --set output.checkpoint_dir="\"$work/cut\"" --trajectory "$work/cut.traj" >"$work/resume.out" 2>&1 ||
  { cat "$work/resume.out"; fail "resume failed"; }
grep -h "resuming from" "$work/resume.out" "$work/cut.out" || true

# 4. Every iteration the resumed job logged twice (replayed after kill -9) must repeat exactly, and
#    the trajectory, once each, must equal the reference.
dups=$(sort "$work/cut.traj" | uniq | cut -d' ' -f1 | uniq -d)
[ -z "$dups" ] || fail "replayed iterations differ: $(echo $dups | head -c 200)"
sort -n -u "$work/cut.traj" >"$work/cut.dedup"
sort -n "$work/ref.traj" >"$work/ref.sorted"
cmp -s "$work/ref.sorted" "$work/cut.dedup" || {
  diff "$work/ref.sorted" "$work/cut.dedup" | head -5; fail "trajectory differs from the reference"; }

# 5. The loss log holds every iteration exactly once, with the printed losses (issue 5).
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import h5py" 2>/dev/null; then
  /usr/bin/python3 "$(dirname "$0")/check_log.py" "$work/cut/log.h5" "$work/cut.traj" ||
    fail "the resumed run's loss log is inconsistent"
else
  echo "note: no python3-h5py, loss-log check skipped"
fi

# 6. Final weights: the last checkpoints' per-member checksums must be equal.
last() { ls "$1"/ckpt-*.h5 | sort | tail -n 1; }
"$poet" inspect "$(last "$work/ref")" | grep -E "^[0-9]{4} " >"$work/ref.sums" || true
"$poet" inspect "$(last "$work/cut")" | grep -E "^[0-9]{4} " >"$work/cut.sums" || true
[ -s "$work/ref.sums" ] || fail "no member lines from poet inspect"
cmp -s "$work/ref.sums" "$work/cut.sums" || { diff "$work/ref.sums" "$work/cut.sums"; fail "final weights differ"; }
echo "ok: $total iterations and the final weights of $(wc -l <"$work/ref.sums") members identical after $how on $ranks rank(s), resumed on $resume_ranks"
