#!/usr/bin/env bash
# tools/quickstart.sh — installs what poet needs, builds it, and trains the default config
# (configs/fashion-mnist.json: 10 reference networks, batch 200, one epoch of Fashion-MNIST).
#
#   POET_RANKS=2 bash tools/quickstart.sh      # more MPI ranks (default 1: one rank, all cores)
#   bash tools/quickstart.sh --set training.epochs=2   # extra arguments go to `poet train`
#   bash tools/quickstart.sh --resume                   # continue the last quick start instead
#
# Running it again trains from scratch again, as the first time: it passes --overwrite, which
# replaces the checkpoints and log of an earlier quick start in checkpoints/fashion-mnist/ (poet
# refuses a fresh run into another run's files otherwise). With --resume or --resume-from among the
# arguments it continues instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks=${POET_RANKS:-1}
# --bind-to none: let each rank's OpenMP threads use every core it is given (Open MPI binds ranks to
# single cores by default for small runs).
start=--overwrite
for arg in "$@"; do
  case $arg in --resume | --resume-from | --overwrite) start="" ;; esac
done
exec mpirun -np "$ranks" --oversubscribe --bind-to none build/poet train configs/fashion-mnist.json \
  ${start} "$@"
