#!/usr/bin/env bash
# disk_full.sh POET MPIEXEC RANKS WORKDIR CONFIG WHERE: training runs out of disk space (issue 17).
# Mounts a small tmpfs (needs root: otherwise exits 77, skipped) and trains on RANKS ranks until it
# is full. Passes only when poet exits 5 within the test's time with one line naming the file and
# "No space left on device", leaves no *.tmp behind, every earlier checkpoint verifies with
# `poet inspect`, and the loss log still holds every row up to the last checkpoint.
#   WHERE = checkpoints  checkpoints and log on the tmpfs; the free-space check before a checkpoint
#                        refuses the one that does not fit
#           midwrite     the same without that check (POET_SKIP_SPACE_CHECK=1): the disk fills in
#                        the middle of a collective checkpoint write
#           log          only the log on the tmpfs, filled by another file while training runs
set -u
poet=$1 mpiexec=$2 ranks=$3 work=$4 config=$5 where=$6
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skipped: mounting a tmpfs needs root"; exit 77; }
mnt=$work/mnt
umount "$mnt" 2>/dev/null
rm -rf "$work" && mkdir -p "$mnt" "$work/ckpt"
mount -t tmpfs -o size=1700k tmpfs "$mnt" || { echo "skipped: cannot mount a tmpfs here"; exit 77; }
trap 'umount "$mnt" 2>/dev/null' EXIT
trap 'exit 1' INT TERM

export POET_IO_TIMEOUT=20 POET_SKIP_SPACE_CHECK=0
[ "$where" = midwrite ] && POET_SKIP_SPACE_CHECK=1
ckpt=$mnt/run log=$mnt/run/log.h5
if [ "$where" = log ]; then ckpt=$work/ckpt; log=$mnt/log.h5; fi
"$mpiexec" -np "$ranks" --oversubscribe -x POET_IO_TIMEOUT -x POET_SKIP_SPACE_CHECK "$poet" train \
  "$config" --quiet --set training.iterations=400 --set output.checkpoint_every=10 \
  --set output.checkpoint_keep=100 --set output.log_flush_every=5 \
  --set output.checkpoint_dir="\"$ckpt\"" --set output.log_file="\"$log\"" \
  --trajectory "$work/traj" >"$work/out" 2>&1 &
launcher=$!
if [ "$where" = log ]; then # fill the disk once some rows are in the log
  for _ in $(seq 1 600); do
    [ -f "$work/traj" ] && [ "$(wc -l <"$work/traj")" -ge 12 ] && break
    kill -0 $launcher 2>/dev/null || break
    sleep 0.1
  done
  dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
fi
wait $launcher
code=$?
grep -v "pwritev\|vulcan_write_all" "$work/out"
[ $code = 5 ] || fail "exit code $code, expected 5"
grep -q "^poet: .*$mnt/.*No space left on device" "$work/out" ||
  fail "no one-line message naming the file and 'No space left on device'"
left=$(find "$mnt" "$work/ckpt" -name '*.tmp')
[ -z "$left" ] || fail "temporary files left behind: $left"
last=0
for f in "$ckpt"/ckpt-*.h5; do
  [ -f "$f" ] || continue
  "$poet" inspect "$f" >"$work/inspect" 2>&1 || { cat "$work/inspect"; fail "$f does not verify"; }
  it=$(basename "$f" .h5); it=$((10#${it#ckpt-}))
  [ $it -gt $last ] && last=$it
done
[ $last -gt 0 ] || fail "no checkpoint was written before the disk filled"
"$poet" report "$log" >"$work/report" 2>&1 || { cat "$work/report"; fail "the log does not read"; }
rows=$(sed -n 's/^  iterations  \([0-9]*\) logged.*/\1/p' "$work/report")
[ "${rows:-0}" -ge $last ] || fail "the log holds ${rows:-0} rows, the last checkpoint is at $last"
echo "ok: exit 5 on $ranks rank(s) ($where), checkpoints up to $last verify, $rows log rows"
