#!/usr/bin/env bash
# resume_checks.sh POET CASE WORKDIR CONFIG: --resume against what a user or a damaged disk leaves
# behind (issue 17). Every case first trains CONFIG to the end (checkpoints at 20 and 40, the final
# one at 50) and then:
#   finished      --resume of the finished run changes nothing (log and checkpoints byte for byte)
#                 and says so, twice in a row
#   bad_checkpoint  a checkpoint whose iteration attribute is -5 is refused by --resume-from with a
#                 checkpoint error (10) before anything is modified, and skipped by --resume (which
#                 continues from the previous one); `latest` naming a path outside the directory is
#                 ignored with a warning; a log that does not reach the checkpoint is warned about;
#                 a member's arch_index out of range is refused by inspect and --resume-from
#   damaged_log   a log.h5 that is not HDF5 any more is moved aside (kept, named in a warning) and
#                 a new log continues from the checkpoint
# Needs Debian's python3 with h5py to edit checkpoints; exits 77 (skipped) without it.
set -u
poet=$1 case=$2 work=$3 config=$4
py=/usr/bin/python3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
$py -c "import h5py" 2>/dev/null || { echo "skipped: $py lacks h5py"; exit 77; }
dir=$work/run
train() { # train ARGS...: one rank, output in $work/out, exit code in $code
  "$poet" train "$config" --set output.checkpoint_dir="\"$dir\"" --set output.checkpoint_every=20 \
    --set output.checkpoint_keep=5 --set output.log_flush_every=5 --set training.iterations=50 \
    "$@" >"$work/out" 2>&1
  code=$?
  cat "$work/out"
}
rows() { $py -c "import h5py,sys; print(len(h5py.File(sys.argv[1],'r')['iterations/iteration']))" "$1"; }
state() { (cd "$dir" && ls -1 && md5sum -- *) 2>/dev/null; }

train
[ $code = 0 ] || fail "the first run failed ($code)"
[ -f "$dir/ckpt-00000050.h5" ] && [ -f "$dir/ckpt-00000020.h5" ] || fail "checkpoints missing"

case $case in
finished)
  state >"$work/before"
  for round in 1 2; do
    train --resume
    [ $code = 0 ] || fail "--resume of a finished run exited $code (round $round)"
    grep -q "already finished" "$work/out" || fail "--resume of a finished run did not say so"
    ! grep -q "^done:" "$work/out" || fail "--resume of a finished run printed a training summary"
    state >"$work/after"
    cmp -s "$work/before" "$work/after" || { diff "$work/before" "$work/after";
      fail "--resume of a finished run changed the directory (round $round)"; }
  done
  ;;
bad_checkpoint)
  cp "$dir/log.h5" "$work/log.before"
  $py -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs.modify('iteration', -5)" \
    "$dir/ckpt-00000050.h5"
  state >"$work/before"
  train --resume-from "$dir/ckpt-00000050.h5"
  [ $code = 10 ] || fail "--resume-from a checkpoint with iteration -5 exited $code, expected 10"
  grep -q "attribute iteration is -5" "$work/out" || fail "the message does not name the attribute"
  state >"$work/after"
  cmp -s "$work/before" "$work/after" || { diff "$work/before" "$work/after";
    fail "a refused checkpoint modified the directory"; }
  # `latest` pointing outside the directory: ignored with a warning; the bad newest is skipped and
  # the run continues from iteration 40, its log cut back to 40 rows and rewritten to 50.
  cp "$dir/ckpt-00000040.h5" "$work/outside.h5"
  echo "../outside.h5" >"$dir/latest"
  train --resume
  [ $code = 0 ] || fail "--resume past a bad newest checkpoint exited $code"
  grep -q "latest names '../outside.h5', not a file name inside the checkpoint directory" \
    "$work/out" || fail "no warning about latest"
  grep -q "skipping .*ckpt-00000050.h5: attribute iteration is -5" "$work/out" ||
    fail "the bad checkpoint was not reported"
  grep -q "resuming from .*ckpt-00000040.h5 at iteration 40" "$work/out" ||
    fail "did not resume from ckpt-00000040.h5"
  [ "$(rows "$dir/log.h5")" = 50 ] || fail "log has $(rows "$dir/log.h5") rows, expected 50"
  # A log that ends before the checkpoint is reported.
  $py - "$dir/log.h5" <<'PY' || fail "cannot shorten the log"
import h5py, sys
with h5py.File(sys.argv[1], "r+") as f:
    for name in f["iterations"]:
        d = f["iterations"][name]
        d.resize(30, axis=0)
PY
  train --resume-from "$dir/ckpt-00000040.h5"
  [ $code = 0 ] || fail "resume with a short log exited $code"
  grep -q "the log's iterations end at 29 but the checkpoint resumes at iteration 40" "$work/out" ||
    fail "no warning about the log not matching the checkpoint"
  # A member attribute out of range: refused by read and by inspect.
  cp "$dir/ckpt-00000040.h5" "$work/arch.h5"
  $py -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f['members/0002'].attrs.modify('arch_index', 7)" \
    "$work/arch.h5"
  "$poet" inspect "$work/arch.h5" >"$work/out" 2>&1
  code=$?
  cat "$work/out"
  [ $code = 10 ] || fail "inspect of a bad arch_index exited $code, expected 10"
  grep -q "attribute arch_index of /members/0002 is 7, expected 0" "$work/out" ||
    fail "inspect does not name the bad arch_index"
  train --resume-from "$work/arch.h5"
  [ $code = 10 ] || fail "--resume-from a bad arch_index exited $code, expected 10"
  ;;
damaged_log)
  head -c 3000 "$dir/log.h5" >"$work/cut" && mv "$work/cut" "$dir/log.h5"
  md5=$(md5sum <"$dir/log.h5")
  $py -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs.modify('iteration', -5)" \
    "$dir/ckpt-00000050.h5"
  train --resume
  [ $code = 0 ] || fail "--resume with a damaged log exited $code"
  grep -q "warning: the loss log is damaged .*moved it aside to $dir/log.h5.damaged-1" "$work/out" ||
    fail "no warning naming the moved log"
  [ "$(md5sum <"$dir/log.h5.damaged-1")" = "$md5" ] || fail "the damaged log was not kept as it was"
  [ "$(rows "$dir/log.h5")" = 10 ] || fail "new log has $(rows "$dir/log.h5") rows, expected 10 (40..49)"
  ;;
*) fail "unknown case $case" ;;
esac
echo "ok: $case"
