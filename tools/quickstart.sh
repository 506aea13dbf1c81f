#!/usr/bin/env bash
# tools/quickstart.sh — installs what poet needs, builds it, and trains the default config
# (configs/fashion-mnist.json: 10 reference networks, batch 200, one epoch of Fashion-MNIST).
#
#   POET_RANKS=2 bash tools/quickstart.sh      # more MPI ranks (default 1: one rank, all cores)
#   bash tools/quickstart.sh --set training.epochs=2   # extra arguments go to `poet train`
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks=${POET_RANKS:-1}
# --bind-to none: let each rank's OpenMP threads use every core it is given (Open MPI binds ranks to
# single cores by default for small runs).
exec mpirun -np "$ranks" --oversubscribe --bind-to none build/poet train configs/fashion-mnist.json "$@"
