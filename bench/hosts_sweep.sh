#!/usr/bin/env bash
# bench/hosts_sweep.sh [CONFIG] [DELAYS]: tree shapes × overlap modes × one-way link delay on four
# namespace hosts (bench/hosts.sh, bench/README.md "Across hosts"). Training time only: no
# evaluation, one final checkpoint. Default: configs/fashion-mnist.json (M = 10, B = 200), delays
# "0 1 5" ms, 60 iterations, 2 runs per cell (interference only slows a run: read the faster).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
config=${1:-$ROOT/configs/fashion-mnist.json}
delays=${2:-0 1 5}
A="--set training.iterations=${ITERATIONS:-60} --set training.eval_every=0 --set training.log_every=0 --set output.checkpoint_every=0"
exec bash "$ROOT/bench/hosts.sh" --poet "${POET:-$ROOT/build/poet}" --out "${OUT:-/dev/null}" --delays "$delays" --repeats "${REPEATS:-2}" \
  --case "binary/none|$A --set distributed.tree=binary --set distributed.overlap=none" \
  --case "kary3/none|$A --set distributed.tree=kary --set distributed.arity=3 --set distributed.overlap=none" \
  --case "mpi/none|$A --set distributed.tree=mpi --set distributed.overlap=none" \
  --case "auto/none|$A --set distributed.tree=auto --set distributed.overlap=none" \
  --case "binary/exact4|$A --set distributed.tree=binary --set distributed.overlap=exact --set distributed.chunks=4" \
  --case "kary3/exact4|$A --set distributed.tree=kary --set distributed.arity=3 --set distributed.overlap=exact --set distributed.chunks=4" \
  --case "binary/stale|$A --set distributed.tree=binary --set distributed.overlap=stale" \
  --case "kary3/stale|$A --set distributed.tree=kary --set distributed.arity=3 --set distributed.overlap=stale" \
  "$config"
