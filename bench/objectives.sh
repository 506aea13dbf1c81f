#!/usr/bin/env bash
# objectives.sh — the comparison in docs/objectives.md: the reference ensemble
# (configs/fashion-mnist.json: M = 10 reference networks, B = 200, SGD lr 0.5 momentum 0.9) trained
# for the same budget (training.epochs, default 1) with the joint objective (beta 1), a blend
# (beta 0.5), the independent objective (beta 0) and the joint objective with member dropout 0.3.
# Prints a markdown table of the final test-set evaluation (ensemble and mean member accuracy, NLL
# and ECE, and the probability-mean ensemble) with the command that made each row.
#
#   bash bench/objectives.sh [--build DIR] [--epochs N] [--ranks P] [--out DIR]
#
# Reads each run's loss log with Debian's python3-h5py (/usr/bin/python3).
set -eu
build=build epochs=1 ranks=1 out=/tmp/poet-objectives
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "objectives.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
poet=$build/poet
[ -x "$poet" ] || { echo "objectives.sh: $poet not built" >&2; exit 2; }
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
rows=(
  "joint|"
  "blend-0.5|--set training.objective=blend --set training.beta=0.5"
  "independent|--set training.objective=independent"
  "joint-dropout-0.3|--set training.member_dropout=0.3"
)
table="$out/table.md"
printf '| run | ensemble acc | ensemble NLL | ensemble ECE | p-mean acc | p-mean NLL | p-mean ECE | mean member acc | mean member NLL | mean member ECE | held-out diversity | seconds | command |\n' >"$table"
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n' >>"$table"
for row in "${rows[@]}"; do
  name=${row%%|*} sets=${row#*|}
  dir=$out/$name
  # shellcheck disable=SC2086  # $sets is a list of options
  cmd="mpirun -np $ranks $poet train configs/fashion-mnist.json --set training.epochs=$epochs --set training.eval_every=0 --set output.checkpoint_every=0 $sets --set output.checkpoint_dir=\"$dir\" --overwrite --quiet"
  echo "== $name: $cmd"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  mpirun -np "$ranks" --oversubscribe "$poet" train configs/fashion-mnist.json \
    --set training.epochs="$epochs" --set training.eval_every=0 --set output.checkpoint_every=0 \
    $sets --set output.checkpoint_dir="\"$dir\"" --overwrite --quiet >"$out/$name.out" 2>&1 ||
    { cat "$out/$name.out"; echo "objectives.sh: $name failed" >&2; exit 1; }
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  /usr/bin/python3 - "$dir/log.h5" "$name" "$seconds" "$cmd" >>"$table" <<'PY'
import sys, h5py
log, name, seconds, cmd = sys.argv[1:]
with h5py.File(log, "r") as h:
    e = {k: h["eval/" + k][-1] for k in h["eval"] if h["eval/" + k].ndim == 1}
print(f"| {name} | {e['ensemble_accuracy']:.4f} | {e['ensemble_nll']:.4f} | {e['ensemble_ece']:.4f} "
      f"| {e['probmean_accuracy']:.4f} | {e['probmean_nll']:.4f} | {e['probmean_ece']:.4f} "
      f"| {e['mean_member_accuracy']:.4f} | {e['mean_member_nll']:.4f} | {e['mean_member_ece']:.4f} "
      f"| {e['diversity']:.4f} | {float(seconds):.0f} | `{cmd}` |")
PY
done
cat "$table"
