#!/usr/bin/env bash
# tools/setup.sh — installs poet's Debian packages (when missing) and builds poet into build/.
#
#   bash tools/setup.sh            # packages + Release build in ./build
#   POET_BUILD_DIR=/tmp/b bash tools/setup.sh
#
# Needs root (or sudo) only when a package is missing. Safe to run again: it only does what is left.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${POET_BUILD_DIR:-build}
# Build tools, the five libraries, the default data set, and what the optional tests use
# (h5dump for the checkpoint docs, h5py + matplotlib for the loss plot, torch for the PyTorch
# interop of tools/poet_torch.py, Slurm + munge for jobs/).
PACKAGES=(build-essential cmake pkg-config clang-format
          libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools libdnnl-dev libcjson-dev zlib1g-dev
          dataset-fashion-mnist
          python3 python3-h5py python3-matplotlib python3-numpy python3-torch
          munge slurmctld slurmd slurm-client)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${POET_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "setup: built $BUILD_DIR/poet"
