#!/usr/bin/env bash
# bench/resnet20.sh — the ResNet-20 ensemble against PyTorch in one run (issue 13; bench/README.md).
#
#   bash bench/resnet20.sh [--build DIR] [--repeats N] [--iterations N] [--warmup N] [--threads T]
#                          [--wait SECONDS] [--no-pytorch] [--no-build] [--out FILE] [--smoke]
#
# M = 4 ResNet-20 members (bench/resnet20-ensemble.json), B = 128 random 3x32x32 images, fp32,
# forward + backward of every member, T threads (default: every core). Each round runs, one process
# each and in an order rotated every round: poet's stack with the gemm path, poet's stack with
# oneDNN's convolution primitives (bench/stack_time), PyTorch NCHW and PyTorch channels_last
# (bench/pytorch_resnet.py, torch.set_num_threads(T)). Every run times --iterations steps (5) after
# --warmup untimed ones (3). Before the first round it waits up to --wait seconds (300) for the
# 1-minute load average to fall below 1.5. Reported per variant: the median over the rounds (and the range) of member-images/s,
# GFLOP/s from bench/train_flops against the sgemm peak on T threads (bench/gemm_peak), and memory
# per member (the growth of the process's resident high-water mark over the members; poet's
# estimate beside it); then median(poet's faster path) / median(fastest PyTorch variant) and the
# same ratio within each round. Everything goes to bench/results/resnet20-<date>.txt too. --smoke:
# seconds-long check that the pieces still fit together (numbers meaningless). Nothing is asserted.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${POET_BUILD:-$ROOT/build}
CONFIG=$ROOT/bench/resnet20-ensemble.json
REPEATS=3
ITERS=5
THREADS=$(nproc)
WARMUP=3
GEMM_N=2048 GEMM_REPEATS=5
MAX_LOAD=1.5 LOAD_WAIT=300
PYTORCH=1 BUILD_FIRST=1 SMOKE=0 OUT=""

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$(cd "$2" 2>/dev/null && pwd || echo "$2"); shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --iterations) ITERS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --wait) LOAD_WAIT=$2; shift 2 ;;
    --no-pytorch) PYTORCH=0; shift ;;
    --no-build) BUILD_FIRST=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench/resnet20.sh: unknown option '$1'" >&2; usage ;;
  esac
done
M=$(awk '/"members"/ {sub(/.*"members": */, ""); sub(/[^0-9].*/, ""); print; exit}' "$CONFIG")
B=$(awk '/"batch_size"/ {sub(/.*"batch_size": */, ""); sub(/[^0-9].*/, ""); print; exit}' "$CONFIG")
if [ $SMOKE = 1 ]; then
  # Same network, 2 members of 8 images, one step: the pieces, not the speed.
  REPEATS=1 ITERS=1 WARMUP=1 GEMM_N=128 GEMM_REPEATS=1 LOAD_WAIT=0 M=2 B=8
fi
if [ -z "$OUT" ]; then
  mkdir -p "$ROOT/bench/results"
  OUT=$ROOT/bench/results/resnet20-$(date +%Y-%m-%d-%H%M%S).txt
fi
mkdir -p "$(dirname "$OUT")"
exec > >(tee "$OUT") 2>&1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/poet-resnet20.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
die() { echo "bench/resnet20.sh: $*" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# cpu_busy: percent of all cores busy over one second (between our runs: everyone else's share).
cpu_busy() {
  local a b
  a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
  echo "$a $b" | awk '{ n = (NF - 2) / 2; busy = 0; all = 0
    for (i = 2; i <= 9; i++) { d = $(i + n + 1) - $i; all += d; if (i != 5 && i != 6) busy += d }
    printf "%.0f", (all > 0 ? 100 * busy / all : 0) }'
}

# ---- build and tools ---------------------------------------------------------------------------
if [ $BUILD_FIRST = 1 ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 ||
      { cat "$WORK/cmake.log"; die "cmake configure failed in $BUILD"; }
  fi
  cmake --build "$BUILD" -j"$(nproc)" --target gemm_peak train_flops stack_time >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log"; die "build failed in $BUILD"; }
fi
GEMM=$BUILD/bench/gemm_peak FLOPS=$BUILD/bench/train_flops STACK=$BUILD/bench/stack_time
for exe in "$GEMM" "$FLOPS" "$STACK"; do
  [ -x "$exe" ] || die "$exe not found: build first (cmake --build $BUILD) or pass --build DIR"
done
# stack_time reads the members and the batch from a config: the bench config, or its smoke size.
RUNCFG=$WORK/resnet20.json
sed -e "s/\"members\": *[0-9]*/\"members\": $M/" -e "s/\"batch_size\": *[0-9]*/\"batch_size\": $B/" \
  "$CONFIG" >"$RUNCFG"
PY=""
if [ $PYTORCH = 1 ]; then
  # Debian's python3-torch lives in /usr/bin; a pyenv or venv python3 may not import it.
  for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    if "$candidate" -c 'import torch' >/dev/null 2>&1; then PY=$candidate; break; fi
  done
  [ -z "$PY" ] && echo "no python3 here imports torch: PyTorch variants skipped"
fi

# ---- machine -----------------------------------------------------------------------------------
echo "poet ResNet-20 ensemble benchmark $(date -Is) on $(hostname)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores," \
     "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "$(git -C "$ROOT" diff --quiet HEAD -- src include bench 2>/dev/null || echo '(modified)')"
[ -n "$PY" ] && "$PY" -c 'import torch; print("torch", torch.__version__)'
echo "M = $M ResNet-20 members, B = $B, 3x32x32, fp32, $THREADS thread(s), $REPEATS round(s) of" \
     "$ITERS step(s) per variant after $WARMUP untimed"
waited=0
while [ $SMOKE = 0 ] && awk -v l="$(load1)" -v m=$MAX_LOAD 'BEGIN { exit !(l > m) }' &&
      [ $waited -lt $LOAD_WAIT ]; do
  [ $waited = 0 ] && echo "load average $(load1) > $MAX_LOAD: waiting up to ${LOAD_WAIT}s"
  sleep 15; waited=$((waited + 15))
done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
"$GEMM" $GEMM_N $GEMM_REPEATS "$THREADS" >"$WORK/gemm" || die "gemm_peak failed"
cat "$WORK/gemm"
PEAK=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "GFLOP/s") print $i}' "$WORK/gemm" | tail -1)
"$FLOPS" "$RUNCFG" 3 32 32 >"$WORK/flops" || die "train_flops failed"
FPI=$(awk '/^train_flops_per_member_image/ {print $2}' "$WORK/flops")
grep '^  per image' "$WORK/flops"
[ -n "$PEAK" ] && [ -n "$FPI" ] || die "could not read the sgemm peak or the flops per image"

# ---- rounds ------------------------------------------------------------------------------------
VARIANTS=("poet-gemm" "poet-onednn")
[ -n "$PY" ] && VARIANTS+=("pytorch-nchw" "pytorch-cl")
NV=${#VARIANTS[@]}
declare -A RATES MEMS EST
ROUND_RATIOS=()
# run VARIANT: one process, one measurement; prints "rate MiB-per-member [estimate]".
run() {
  local log=$WORK/run.out
  case $1 in
    poet-*)
      POET_BENCH_INPUT=3x32x32 POET_BENCH_WARMUP=$WARMUP OMP_NUM_THREADS=$THREADS "$STACK" "$RUNCFG" "$ITERS" 1 "${1#poet-}" \
        >"$log" 2>&1 || { cat "$log"; die "stack_time failed ($1)"; }
      echo "$(awk '/^stack_time / {print $5}' "$log") $(awk '/^stack_time_memory / {print $3, $4}' "$log")"
      ;;
    pytorch-*)
      local layout=nchw
      [ "$1" = pytorch-cl ] && layout=channels_last
      OMP_NUM_THREADS=$THREADS "$PY" "$ROOT/bench/pytorch_resnet.py" --layout $layout \
        --threads "$THREADS" --members "$M" --batch "$B" --iterations "$ITERS" --rounds 1 \
        --warmup "$WARMUP" >"$log" 2>&1 || { cat "$log"; die "pytorch_resnet.py failed ($1)"; }
      awk '/^pytorch_resnet / {print $4, $5}' "$log"
      ;;
  esac
}
for r in $(seq 1 "$REPEATS"); do
  echo "round $r: $(cpu_busy)% of the CPU busy before it, load $(load1)"
  best_poet=0 best_torch=0
  for k in $(seq 0 $((NV - 1))); do
    v=${VARIANTS[$(((k + r - 1) % NV))]}
    read -r rate mem est <<<"$(run "$v")"
    [ -n "$rate" ] && [ -n "$mem" ] || die "no rate or memory read from variant $v"
    printf '  %-13s %9.1f member-images/s  %7.1f MiB per member\n' "$v" "$rate" "$mem"
    RATES[$v]="${RATES[$v]:-} $rate" MEMS[$v]="${MEMS[$v]:-} $mem"
    [ -n "${est:-}" ] && EST[$v]=$est
    case $v in
      poet-*) best_poet=$(awk -v a="$rate" -v b="$best_poet" 'BEGIN { print (a > b ? a : b) }') ;;
      *) best_torch=$(awk -v a="$rate" -v b="$best_torch" 'BEGIN { print (a > b ? a : b) }') ;;
    esac
  done
  [ -n "$PY" ] && ROUND_RATIOS+=("$(awk -v a="$best_poet" -v b="$best_torch" 'BEGIN { printf "%.2f", a / b }')")
done

# ---- table -------------------------------------------------------------------------------------
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR] = $1} END {
  if (NR == 0) exit; print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
range() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'; }
echo
echo "sgemm peak on $THREADS thread(s): $PEAK GFLOP/s; training work $FPI flops per member-image"
echo
echo "| variant | member-images/s (median) | range | GFLOP/s | % sgemm peak | MiB per member (measured) | MiB per member (poet's estimate) |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: |"
declare -A MED
for v in "${VARIANTS[@]}"; do
  MED[$v]=$(echo "${RATES[$v]}" | median)
  awk -v v="$v" -v r="${MED[$v]}" -v rg="$(echo "${RATES[$v]}" | range)" -v f="$FPI" -v p="$PEAK" \
      -v m="$(echo "${MEMS[$v]}" | median)" -v e="${EST[$v]:-}" 'BEGIN {
    printf "| %s | %.0f | %s | %.1f | %.0f%% | %.1f | %s |\n", v, r, rg, r * f / 1e9,
           100 * r * f / 1e9 / p, m, (e == "" ? "" : sprintf("%.1f", e)) }'
done
fastest() { local best="" v; for v in "$@"; do
  if [ -z "$best" ] || awk -v a="${MED[$v]}" -v b="${MED[$best]}" 'BEGIN { exit !(a > b) }'; then best=$v; fi
  done; echo "$best"; }
P=$(fastest poet-gemm poet-onednn)
echo
echo "poet's faster path: $P ($(awk -v a="${MED[poet-gemm]}" -v b="${MED[poet-onednn]}" \
     'BEGIN { printf "gemm / onednn %.2f", a / b }'))"
if [ -n "$PY" ]; then
  T=$(fastest pytorch-nchw pytorch-cl)
  awk -v p="$P" -v t="$T" -v a="${MED[$P]}" -v b="${MED[$T]}" 'BEGIN {
    printf "poet (%s) / fastest PyTorch (%s), medians: %.2f\n", p, t, a / b }'
  echo "within each round (faster poet path / faster PyTorch variant): ${ROUND_RATIOS[*]}" \
       "(median $(echo "${ROUND_RATIOS[*]}" | median))"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
