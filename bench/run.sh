#!/usr/bin/env bash
# bench/run.sh — poet's throughput benchmark in one command (see bench/README.md).
#
#   bash bench/run.sh [--build DIR] [--iterations N] [--repeats N] [--no-pytorch] [--no-build]
#                     [--out FILE] [--smoke]
#
# Builds poet, gemm_peak and train_flops if needed, measures the fp32 sgemm peak, trains the default
# config (configs/fashion-mnist.json) for a fixed number of iterations in several rank × thread
# layouts, tree shapes, overlap modes and with/without fusion, runs our PyTorch reference loop
# (bench/pytorch_reference.py, when torch imports), measures peak memory against members and ranks,
# and prints one table of ratios measured in this run. Everything goes to bench/results/<date>.txt
# too. Each throughput configuration runs --repeats times, interleaved, and its best run counts (a
# shared machine only makes runs slower). --smoke: a few seconds' check that the script and poet's
# summary format still fit together (what tests/bench.cmake runs); its numbers mean nothing.
# Timings are never asserted: a slow run is reported, not failed.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${POET_BUILD:-$ROOT/build}
CONFIG=$ROOT/configs/fashion-mnist.json
ITERS=100        # poet iterations per throughput run
REPEATS=5        # interleaved rounds of every throughput configuration (best counts)
MEM_ITERS=10     # iterations per memory run (peak RSS is reached in the first iteration)
PT_ITERS=40      # PyTorch: timed iterations per repeat
PT_WARMUP=5
POET_WARMUP=5    # poet: iterations left out of the rate, as PyTorch's warm-up (oneDNN's first calls)
GEMM_N=2048
GEMM_REPEATS=5
MAX_LOAD=1.5     # wait (up to LOAD_WAIT s) for the 1-minute load average to drop below this
LOAD_WAIT=300
PYTORCH=1
BUILD_FIRST=1
SMOKE=0
OUT=""

usage() { sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$(cd "$2" 2>/dev/null && pwd || echo "$2"); shift 2 ;;
    --iterations) ITERS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --no-pytorch) PYTORCH=0; shift ;;
    --no-build) BUILD_FIRST=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench/run.sh: unknown option '$1'" >&2; usage ;;
  esac
done
if [ $SMOKE = 1 ]; then
  ITERS=3 REPEATS=1 MEM_ITERS=1 PT_ITERS=1 PT_WARMUP=0 POET_WARMUP=1 GEMM_N=128 GEMM_REPEATS=1 LOAD_WAIT=0
fi
# Open MPI refuses root without these; --bind-to none lets a rank's OpenMP threads use every core.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=${MPIEXEC:-mpirun}
CORES=$(nproc)

if [ -z "$OUT" ]; then
  mkdir -p "$ROOT/bench/results"
  OUT=$ROOT/bench/results/$(date +%Y-%m-%d-%H%M%S).txt
fi
mkdir -p "$(dirname "$OUT")"
exec > >(tee "$OUT") 2>&1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/poet-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

die() { echo "bench/run.sh: $*" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# cpu_busy: percent of all cores busy over one second. Called between our own runs, so it measures
# everyone else (the load average cannot tell: our own runs keep it near the core count).
cpu_busy() {
  local a b
  a=$(head -1 /proc/stat)
  sleep 1
  b=$(head -1 /proc/stat)
  echo "$a $b" | awk '{ n = (NF - 2) / 2; busy = 0; all = 0
    for (i = 2; i <= 9; i++) { d = $(i + n + 1) - $i; all += d; if (i != 5 && i != 6) busy += d }
    printf "%.0f", (all > 0 ? 100 * busy / all : 0) }'
}
# quiet_round: waits (up to 60 s) for other processes to leave the cores, prints what it found.
quiet_round() {
  local busy waited=0
  busy=$(cpu_busy)
  while [ "$busy" -gt 25 ] && [ $waited -lt 60 ] && [ $SMOKE = 0 ]; do
    sleep 5; waited=$((waited + 6)); busy=$(cpu_busy)
  done
  BUSY_MAX=$((busy > BUSY_MAX ? busy : BUSY_MAX))
  echo "$busy% of the CPU busy with other processes before the round$([ $waited -gt 0 ] &&
        echo " (waited ${waited}s)")"
}
BUSY_MAX=0

# ---- build -------------------------------------------------------------------------------------
if [ $BUILD_FIRST = 1 ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 ||
      { cat "$WORK/cmake.log"; die "cmake configure failed in $BUILD"; }
  fi
  cmake --build "$BUILD" -j"$CORES" --target poet gemm_peak train_flops stack_time >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log"; die "build failed in $BUILD"; }
fi
POET=$BUILD/poet GEMM=$BUILD/bench/gemm_peak FLOPS=$BUILD/bench/train_flops
STACK=$BUILD/bench/stack_time
for exe in "$POET" "$GEMM" "$FLOPS" "$STACK"; do
  [ -x "$exe" ] || die "$exe not found: build first (cmake --build $BUILD) or pass --build DIR"
done

# ---- machine -----------------------------------------------------------------------------------
echo "poet benchmark $(date -Is) on $(hostname)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $CORES cores," \
     "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "$(git -C "$ROOT" diff --quiet HEAD -- src include 2>/dev/null || echo '(src/include modified)')"
waited=0
while awk -v l="$(load1)" -v m=$MAX_LOAD 'BEGIN { exit !(l > m) }' && [ $waited -lt $LOAD_WAIT ]; do
  [ $waited = 0 ] && echo "load average $(load1) > $MAX_LOAD: waiting up to ${LOAD_WAIT}s"
  sleep 15; waited=$((waited + 15))
done
LOAD_START=$(load1)
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- sgemm peak and the work per member-image --------------------------------------------------
threads_list=1; [ "$CORES" -gt 1 ] && threads_list="1 $CORES"
# shellcheck disable=SC2086
"$GEMM" $GEMM_N $GEMM_REPEATS $threads_list >"$WORK/gemm" || die "gemm_peak failed"
cat "$WORK/gemm"
declare -A PEAK
while read -r _ _ t _ _ _ rate _; do PEAK[${t#threads=}]=$rate; done <"$WORK/gemm"
"$FLOPS" "$CONFIG" >"$WORK/flops" || die "train_flops failed"
cat "$WORK/flops"
FPI=$(awk '/^train_flops_per_member_image/ {print $2}' "$WORK/flops")
M=$(awk '/"members"/ {gsub(/[^0-9]/, ""); print; exit}' "$CONFIG")
B=$(awk '/"batch_size"/ {gsub(/[^0-9]/, ""); print; exit}' "$CONFIG")

# ---- runs --------------------------------------------------------------------------------------
declare -A RATE WORST LAST PROF BYTES DPBYTES RSS0 RSSMAX LAYOUT
NAMES=() PT_NAMES=() ROUND_RATIOS=()

# keep NAME RATE: records a run's member-images/s; returns 0 when it is NAME's best so far.
keep() {
  local name=$1 rate=$2
  LAST[$name]=$rate
  if [ -z "${RATE[$name]:-}" ]; then
    RATE[$name]=$rate WORST[$name]=$rate
    return 0
  fi
  awk -v a="$rate" -v b="${WORST[$name]}" 'BEGIN { exit !(a < b) }' && WORST[$name]=$rate
  awk -v a="$rate" -v b="${RATE[$name]}" 'BEGIN { exit !(a > b) }' && RATE[$name]=$rate
}

# run_poet NAME RANKS THREADS ITERATIONS [--set KEY=VALUE ...]: one training run; keeps its
# member-images/s under NAME, with the profile, traffic and memory of NAME's best run.
run_poet() {
  local name=$1 ranks=$2 threads=$3 iters=$4
  shift 4
  local dir=$WORK/run log=$WORK/run.out
  rm -rf "$dir"
  OMP_NUM_THREADS=$threads "$MPIRUN" -np "$ranks" --bind-to none --oversubscribe -x OMP_NUM_THREADS \
    "$POET" train "$CONFIG" --set training.iterations="$iters" --set training.eval_every=0 \
    --set output.checkpoint_every=0 --set training.log_every=0 --set training.threads="$threads" \
    --set output.checkpoint_dir="\"$dir\"" "$@" >"$log" 2>&1 ||
    { cat "$log"; die "poet failed in configuration '$name'"; }
  local rate ips prof bytes dp rss0 rssmax steady=""
  rate=$(sed -n 's/^done: .*(\([0-9.]*\) member-images\/s).*/\1/p' "$log")
  ips=$(sed -n 's/^done: .*, \([0-9.]*\) images\/s (.*/\1/p' "$log")
  # The most any rank moved (older poet printed rank 0's count only).
  bytes=$(sed -n 's/^communication: .*, [0-9]*\.\.\([0-9]*\) over .*/\1/p' "$log")
  [ -z "$bytes" ] && bytes=$(sed -n 's/^communication: \([0-9]*\) bytes\/iteration.*/\1/p' "$log")
  dp=$(sed -n 's/^communication: .* would move ~\([0-9]*\).*/\1/p' "$log")
  rss0=$(sed -n 's/^memory: peak resident \([0-9.]*\) MiB on rank 0.*/\1/p' "$log")
  rssmax=$(sed -n 's/^memory: .*, \([0-9.]*\) MiB on the largest rank.*/\1/p' "$log")
  prof=$(sed -n 's/^profile (rank 0): //p' "$log" |
         awk '{for (i = 2; i <= NF; i += 2) printf "%s%5.1f", (i > 2 ? " " : ""), $i + 0}')
  if [ -z "$rate" ] || [ -z "$ips" ] || [ -z "$bytes" ] || [ -z "$dp" ] || [ -z "$rss0" ] ||
     [ -z "$rssmax" ] || [ -z "$prof" ]; then
    cat "$log"
    die "cannot read poet's summary lines for '$name' (did their format change? see" \
        "print_summary in src/main.c)"
  fi
  # Steady rate: the loop's time (iterations·B / images/s) less the first POET_WARMUP iterations'
  # own times from the loss log, like PyTorch's timing after its warm-up.
  if [ "$iters" -gt "$POET_WARMUP" ] && command -v h5dump >/dev/null; then
    steady=$(h5dump -d /iterations/seconds -y -w 0 "$dir/log.h5" 2>/dev/null |
      awk -v w="$POET_WARMUP" -v n="$iters" -v b="$B" -v ips="$ips" -v r="$rate" '
        /DATA \{/ { getline; gsub(/[ ,]+/, " "); if (split($0, s, " ") < n) exit
                    for (i = 1; i <= w; i++) warm += s[i]
                    loop = n * b / ips
                    if (loop > warm) printf "%.0f", (n - w) * b * (r / ips) / (loop - warm) }')
  fi
  [ -n "$steady" ] && rate=$steady
  [ -z "${RATE[$name]:-}" ] && NAMES+=("$name") && LAYOUT[$name]="${ranks}x${threads}"
  if keep "$name" "$rate"; then
    PROF[$name]=$prof BYTES[$name]=$bytes DPBYTES[$name]=$dp RSS0[$name]=$rss0
    RSSMAX[$name]=$rssmax
  fi
  printf '  %-24s %8.0f member-images/s (%6.0f with warm-up)  %s\n' "$name" "$rate" \
    "$(sed -n 's/^done: .*(\([0-9.]*\) member-images\/s).*/\1/p' "$log")" "$*"
}

# The PyTorch reference wants a python3 that imports torch (Debian's lives in /usr/bin).
PY=""
if [ $PYTORCH = 1 ]; then
  for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import torch' 2>/dev/null; then
      PY=$candidate
      break
    fi
  done
fi
PT_DATA=/usr/share/datasets/fashion-mnist PT_VARIANTS=graph,grouped,per-member,graph-cl,per-member-cl
[ $SMOKE = 1 ] && PT_DATA=random PT_VARIANTS=graph

# run_pytorch: one timing of each PyTorch variant, kept like poet's runs.
run_pytorch() {
  "$PY" "$ROOT/bench/pytorch_reference.py" --iterations "$PT_ITERS" --warmup "$PT_WARMUP" \
    --threads "$CORES" --members "$M" --data "$PT_DATA" --variants "$PT_VARIANTS" \
    >"$WORK/pytorch" 2>&1 || { cat "$WORK/pytorch"; die "pytorch_reference.py failed"; }
  local variant rate
  while read -r _ variant _ _ _ _ _ _ _ rate _; do
    [ -z "${RATE["pytorch $variant"]:-}" ] && PT_NAMES+=("pytorch $variant")
    keep "pytorch $variant" "$rate"
    printf '  %-24s %8.0f member-images/s\n' "pytorch $variant" "$rate"
  done < <(grep '^pytorch .* member_images_per_s ' "$WORK/pytorch")
}

echo
echo "poet: $ITERS iterations of $(basename "$CONFIG") (M=$M, B=$B) per run, the first $POET_WARMUP left out of"
echo "the rate$(command -v h5dump >/dev/null || echo ' (h5dump missing: they are counted)'), no" \
     "evaluation or checkpoints inside the timed loop;"
echo "PyTorch: $PT_ITERS iterations after $PT_WARMUP warm-up, $CORES threads."
echo "$REPEATS interleaved rounds, the best of each configuration counts."
if [ -z "$PY" ]; then
  echo "pytorch: skipped ($([ $PYTORCH = 0 ] && echo '--no-pytorch' ||
       echo 'no python3 here imports torch; Debian: apt-get install python3-torch'))"
fi
for rep in $(seq "$REPEATS"); do
  printf 'round %s/%s: ' "$rep" "$REPEATS"
  quiet_round
  if [ $SMOKE = 1 ]; then # one 2-rank run reads every summary line poet prints
    run_poet "2r x 1t fused binary" 2 1 "$ITERS"
  else
    run_poet "1r x 2t fused binary" 1 2 "$ITERS"
    run_poet "2r x 1t fused binary" 2 1 "$ITERS"
    run_poet "1r x 1t fused" 1 1 "$ITERS"
    run_poet "2r x 1t kary k=3" 2 1 "$ITERS" --set distributed.tree=kary --set distributed.arity=3
    run_poet "2r x 1t mpi" 2 1 "$ITERS" --set distributed.tree=mpi
    run_poet "2r x 1t exact chunks=2" 2 1 "$ITERS" --set distributed.overlap=exact \
      --set distributed.chunks=2
    run_poet "2r x 1t stale" 2 1 "$ITERS" --set distributed.overlap=stale
    run_poet "1r x 2t unfused" 1 2 "$ITERS" --set model.fused=false
    run_poet "1r x 2t onednn conv" 1 2 "$ITERS" --set model.convolution=onednn
  fi
  [ -n "$PY" ] && run_pytorch
  # Runs in one round share the machine's state, so their ratio is steadier than the best-of ratio.
  if [ -n "$PY" ] && [ $SMOKE = 0 ]; then
    poet_best=0 pt_best=0
    for name in "${NAMES[@]}"; do
      case $name in *stale*) ;; *) poet_best=$(awk -v a="${LAST[$name]}" -v b="$poet_best" \
                                              'BEGIN { print (a > b ? a : b) }') ;; esac
    done
    for name in "${PT_NAMES[@]}"; do
      pt_best=$(awk -v a="${LAST[$name]}" -v b="$pt_best" 'BEGIN { print (a > b ? a : b) }')
    done
    ROUND_RATIOS+=("$(awk -v a="$poet_best" -v b="$pt_best" 'BEGIN { printf "%.2f", a / b }')")
    echo "  this round: fastest exact poet / fastest PyTorch = ${ROUND_RATIOS[-1]}"
  fi
done

# ---- the network alone: convolution algorithms -----------------------------------------------
# bench/stack_time times one stack's forward + backward for both model.convolution settings,
# alternating them within one process (no data, loss, communication or optimiser).
echo
echo "network alone (bench/stack_time): forward + backward of one stack of M=$M, B=$B"
STACK_ARGS=(20 "$REPEATS")
[ $SMOKE = 1 ] && STACK_ARGS=(2 1)
for t in 1 "$CORES"; do
  out=$(OMP_NUM_THREADS=$t "$STACK" "$CONFIG" "${STACK_ARGS[@]}") ||
    die "stack_time failed on $t thread(s): $out"
  grep -q '^stack_time gemm ' <<<"$out" || die "cannot read stack_time's output: $out"
  sed -n 's/^  /  /p' <<<"$out" | sed "s/^/  $t thread(s): /"
  [ "$CORES" = 1 ] && break
done

# ---- memory scaling ----------------------------------------------------------------------------
echo
echo "memory: peak resident set after $MEM_ITERS iterations, 1 thread per rank"
declare -A MEM
for m in 2 4 8 16; do
  [ $SMOKE = 1 ] && break
  run_poet "mem M=$m 1r" 1 1 "$MEM_ITERS" --set model.members=$m >/dev/null
  MEM[m$m]="${RSS0["mem M=$m 1r"]} ${RSSMAX["mem M=$m 1r"]}"
done
MEM[p1]=${MEM[m8]:-}
for p in 2 4; do # 8 members per rank; 1 rank is the M=8 run above
  [ $SMOKE = 1 ] && break
  m=$((8 * p))
  run_poet "mem M=$m ${p}r" "$p" 1 "$MEM_ITERS" --set model.members=$m >/dev/null
  MEM[p$p]="${RSS0["mem M=$m ${p}r"]} ${RSSMAX["mem M=$m ${p}r"]}"
done

# ---- the table ---------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
# best_of NAMES...: the fastest of the named configurations that were run.
best_of() {
  local best="" n
  for n in "$@"; do
    [ -n "${RATE[$n]:-}" ] || continue
    if [ -z "$best" ] || awk -v a="${RATE[$n]}" -v b="${RATE[$best]}" 'BEGIN { exit !(a > b) }'; then
      best=$n
    fi
  done
  echo "$best"
}
PT_BEST_NAME=$(best_of "${PT_NAMES[@]}")
PT_BEST=${RATE[$PT_BEST_NAME]:-0}
BASE_NAME=$(best_of "1r x 2t fused binary")
[ -z "$BASE_NAME" ] && BASE_NAME=${NAMES[0]} # smoke: its only run
BASE=${RATE[$BASE_NAME]}
echo
echo "== results (load average at start $LOAD_START; other processes used up to $BUSY_MAX% of the" \
     "CPU just before a round) =="
echo "sgemm peak: ${PEAK[1]} GFLOP/s on 1 thread, ${PEAK[$CORES]:-${PEAK[1]}} on $CORES;" \
     "training work $FPI flops per member-image (bench/train_flops)"
[ -n "$PT_BEST_NAME" ] && echo "xTorch: ratio to the fastest PyTorch variant, '$PT_BEST_NAME';" \
                               "x1r2t: ratio to poet's 1-rank baseline, '$BASE_NAME'"
echo "spread: slowest/fastest run of the configuration (1.00 = no noise between rounds)"
echo "bytes/it: the most any rank sent + received in the last iteration; DP-bytes/it: what"
echo "all-reducing every gradient (data parallelism) would move per rank; RSS: largest rank's peak"
printf '\n%-24s %6s %11s %6s %6s %6s %7s %6s  %-34s %9s %11s %7s\n' config layout member-im/s \
  spread xTorch x1r2t GFLOP/s %peak "profile % (data fwd comm bwd opt other)" bytes/it DP-bytes/it \
  RSS-MiB
# row NAME RANKS THREADS: one line of the table (poet's columns left empty for PyTorch).
row() {
  local name=$1 r=$2 t=$3 rate=${RATE[$1]}
  local cores=$((r * t)); [ $cores -gt "$CORES" ] && cores=$CORES
  local peak=${PEAK[$cores]:-${PEAK[1]}}
  local gflops bytes=${BYTES[$name]:-}
  gflops=$(awk -v x="$rate" -v f="$FPI" 'BEGIN { printf "%.1f", x * f / 1e9 }')
  # MPI collectives do not say what they move at the root; 0 on several ranks means unknown.
  [ "$bytes" = 0 ] && [ "$r" -gt 1 ] && bytes=n/a
  printf '%-24s %6s %11.0f %6s %6s %6s %7s %6s  %-34s %9s %11s %7s\n' "$name" "${r}x$t" "$rate" \
    "$(ratio "${WORST[$name]}" "$rate")" "$(ratio "$rate" "$PT_BEST")" "$(ratio "$rate" "$BASE")" \
    "$gflops" "$(awk -v g="$gflops" -v p="$peak" 'BEGIN { printf "%.0f%%", 100 * g / p }')" \
    "${PROF[$name]:-}" "$bytes" "${DPBYTES[$name]:-}" "${RSSMAX[$name]:-}"
}
for name in "${NAMES[@]}"; do
  case $name in mem*) continue ;; esac
  layout=${LAYOUT[$name]}
  row "$name" "${layout%x*}" "${layout#*x}"
done
for name in "${PT_NAMES[@]}"; do row "$name" 1 "$CORES"; done
echo
best=$(best_of "1r x 2t fused binary" "2r x 1t fused binary" "1r x 1t fused")
echo "best rank x thread layout on this node (default settings): $best, ${RATE[$best]} member-images/s"
timed=()
for name in "${NAMES[@]}"; do case $name in mem*) ;; *) timed+=("$name") ;; esac; done
best=$(best_of "${timed[@]}")
echo "fastest configuration: $best, ${RATE[$best]} member-images/s" \
     "$([ -n "$PT_BEST_NAME" ] && echo "= $(ratio "${RATE[$best]}" "$PT_BEST") x PyTorch '$PT_BEST_NAME'")"
exact=()
for name in "${NAMES[@]}"; do case $name in *stale*|mem*) ;; *) exact+=("$name") ;; esac; done
best=$(best_of "${exact[@]}")
echo "fastest exact configuration (stale excluded: it trains with one-step-old gradients): $best," \
     "${RATE[$best]} member-images/s" \
     "$([ -n "$PT_BEST_NAME" ] && echo "= $(ratio "${RATE[$best]}" "$PT_BEST") x PyTorch '$PT_BEST_NAME'")"
if [ ${#ROUND_RATIOS[@]} -gt 0 ]; then
  echo "fastest exact poet / fastest PyTorch within each round: ${ROUND_RATIOS[*]} (median" \
       "$(printf '%s\n' "${ROUND_RATIOS[@]}" | sort -n |
          awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'))"
fi
echo
echo "peak RSS (MiB, rank 0 / largest rank), 1 thread per rank:"
for m in 2 4 8 16; do [ -n "${MEM[m$m]:-}" ] && echo "  M=$m on 1 rank: ${MEM[m$m]// / / }"; done
for p in 1 2 4; do [ -n "${MEM[p$p]:-}" ] && echo "  M=$((8 * p)) on $p rank(s) (8 per rank): ${MEM[p$p]// / / }"; done
if [ -n "${MEM[m2]:-}" ] && [ -n "${MEM[m16]:-}" ]; then
  awk -v a="${MEM[m2]%% *}" -v b="${MEM[m16]%% *}" \
    'BEGIN { printf "  growth: %.2f MiB per member on one rank (M=2 -> 16)\n", (b - a) / 14 }'
fi
echo "results written to $OUT"
