#!/usr/bin/env bash
# bench/hosts.sh: poet on four network-namespace "hosts" with a chosen one-way link delay (issue 18).
#
#   bash bench/hosts.sh [--poet build/poet] [--delays "0 1 5"] [--hosts 4] [--out FILE]
#                       [--case 'LABEL|POET-TRAIN-ARGS' ...] [--repeats N] CONFIG
#
# Each host is a network namespace (nsb1..nsbN) with two links:
#   * a veth to the bridge br-nsb in the root namespace (10.88.33.0/24): mpirun's out-of-band
#     channel to the daemons it starts there, never delayed;
#   * a TAP device served by bench/delayswitch.py (10.88.34.0/24): every MPI byte (btl tcp,
#     btl_tcp_if_include), each frame held for the delay before it is forwarded (this kernel has no
#     sch_netem, ../shared/MULTIHOST.md).
# For every delay the switch is restarted and every case runs (REPEATS times, best run kept is up to
# the reader: every run is printed). A case is `poet train CONFIG --quiet`-less with its own args; the
# script reads the summary's "done:", "communication:" and "checkpoints:" lines and prints one TSV
# row per run: delay_ms case repeat seconds images_per_s bytes_per_iter checkpoint_s.
# Needs root, ip(8), /dev/net/tun and python3; otherwise says why and exits 77. Cleanup (trap)
# removes the namespaces, the bridge and the switch, also on failure or ^C.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
poet=$ROOT/build/poet delays="0 5" hosts=4 out="" repeats=1
cases=()
while [ $# -gt 1 ]; do
  case $1 in
  --poet) poet=$2; shift 2 ;;
  --delays) delays=$2; shift 2 ;;
  --hosts) hosts=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --case) cases+=("$2"); shift 2 ;;
  --repeats) repeats=$2; shift 2 ;;
  *) echo "bench/hosts.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
config=${1:?usage: bench/hosts.sh [options] CONFIG}
[ ${#cases[@]} = 0 ] && cases=("default|")
NS=nsb BR=br-nsb OOB=10.88.33 NET=10.88.34
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
[ -c /dev/net/tun ] || skip "no /dev/net/tun for the delay switch"
command -v python3 >/dev/null || skip "no python3 for the delay switch"
work=$(mktemp -d /tmp/poet-hosts.XXXXXX)
switch_pid=""

stop_switch() {
  [ -n "$switch_pid" ] && kill "$switch_pid" 2>/dev/null && wait "$switch_pid" 2>/dev/null
  switch_pid=""
}
cleanup() {
  stop_switch
  for i in $(seq 1 "$hosts"); do
    pids=$(ip netns pids $NS$i 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del $NS$i 2>/dev/null
    ip link del vh-$NS$i 2>/dev/null
  done
  ip link del $BR 2>/dev/null
  rm -rf "$work"
  return 0
}
trap 'status=$?; cleanup; exit $status' EXIT
trap 'exit 1' INT TERM
cleanup && mkdir -p "$work"

ip link add $BR type bridge 2>"$work/err" || skip "cannot create a bridge: $(cat "$work/err")"
ip addr add $OOB.254/24 dev $BR && ip link set $BR up || exit 1
for i in $(seq 1 "$hosts"); do
  ip netns add $NS$i 2>"$work/err" || skip "cannot create a network namespace: $(cat "$work/err")"
  ip link add vh-$NS$i type veth peer name ve-$NS$i && ip link set ve-$NS$i netns $NS$i &&
    ip link set vh-$NS$i master $BR && ip link set vh-$NS$i up &&
    ip netns exec $NS$i ip addr add $OOB.$i/24 dev ve-$NS$i &&
    ip netns exec $NS$i ip link set ve-$NS$i up && ip netns exec $NS$i ip link set lo up || exit 1
  # BBR paces these small bursts slowly (MULTIHOST.md); cubic where the kernel has it.
  ip netns exec $NS$i sysctl -qw net.ipv4.tcp_congestion_control=cubic 2>/dev/null
done

# The switch creates the TAP devices in the root namespace; each then moves into its host, where it
# gets the MPI address. Restarted per delay (the devices go with it).
start_switch() {
  rm -f "$work/ready"
  taps=()
  for i in $(seq 1 "$hosts"); do taps+=(tp-$NS$i); done
  python3 "$ROOT/bench/delayswitch.py" --delay-ms "$1" --ready "$work/ready" "${taps[@]}" \
    2>"$work/switch.err" &
  switch_pid=$!
  for _ in $(seq 1 100); do [ -e "$work/ready" ] && break; sleep 0.1; done
  [ -e "$work/ready" ] || { cat "$work/switch.err"; echo "FAIL: the delay switch did not start"; exit 1; }
  for i in $(seq 1 "$hosts"); do
    ip link set tp-$NS$i netns $NS$i && ip netns exec $NS$i ip addr add $NET.$i/24 dev tp-$NS$i &&
      ip netns exec $NS$i ip link set tp-$NS$i up || exit 1
  done
}

cat >"$work/launcher" <<LAUNCHER
#!/bin/sh
while [ \$# -gt 0 ]; do
  case \$1 in -o|-l|-p|-i|-F) shift 2 ;; -*) shift ;; *) break ;; esac
done
host=\$1; shift
exec ip netns exec $NS\${host##*.} /bin/sh -c "\$*"
LAUNCHER
chmod +x "$work/launcher"
for i in $(seq 1 "$hosts"); do echo "$OOB.$i slots=1"; done >"$work/hostfile"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MCA=(--hostfile "$work/hostfile" --mca plm_rsh_agent "$work/launcher" --mca plm_rsh_no_tree_spawn 1
     --mca btl tcp,self --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $OOB.0/24
     --mca mpi_yield_when_idle 1 --bind-to none)

row() { printf '%s\n' "$*"; [ -n "$out" ] && printf '%s\n' "$*" >>"$out"; }
row "delay_ms	case	repeat	seconds	images_per_s	bytes_per_iter	checkpoint_s"
for delay in $delays; do
  start_switch "$delay"
  echo "# one-way delay $delay ms" >&2
  for c in "${cases[@]}"; do
    label=${c%%|*}
    read -r -a args <<<"${c#*|}"
    for r in $(seq 1 "$repeats"); do
      run=$work/run-$delay-${label//\//_}-$r
      timeout 1800 mpiexec -np "$hosts" "${MCA[@]}" "$poet" train "$config" "${args[@]}" --overwrite \
        --set output.checkpoint_dir="\"$run\"" >"$run.out" 2>&1
      code=$?
      if [ $code != 0 ]; then
        tail -5 "$run.out" >&2
        row "$delay	$label	$r	failed($code)			"
        continue
      fi
      secs=$(sed -n 's/^done: .*loss [^,]*, \([0-9.]*\) s, \([0-9]*\) images.*/\1/p' "$run.out")
      ips=$(sed -n 's/^done: .* s, \([0-9]*\) images\/s.*/\1/p' "$run.out")
      bytes=$(sed -n 's/^communication: \([0-9]*\) bytes.*/\1/p' "$run.out")
      ck=$(sed -n 's/^checkpoints: .* the last in \([0-9.]*\) s.*/\1/p' "$run.out")
      row "$delay	$label	$r	$secs	$ips	$bytes	$ck"
      grep -h "^tree auto" "$run.out" | sed 's/^/# /' >&2 # the shape tree "auto" chose, and why
    done
  done
  stop_switch
done
