#!/usr/bin/env bash
# multihost.sh POET MPIEXEC CONFIG WORKDIR: poet across four "hosts" on one machine (issue 18).
#
# Builds four network namespaces psc1..psc4 (own UTS namespace each: hosts psc-host1..4), joined by
# veth links to a bridge br-psc in the root namespace, subnet 10.88.18.0/24 (names and subnet of
# this test only; nothing else is touched), and launches one rank per host with mpirun through a
# launcher script (plm_rsh_agent) that enters the namespace. Checks:
#   1. trajectories on 4 hosts equal the one-host run bit for bit, for every tree shape (and auto),
#      and for P > M layouts (M = 2 in groups of 2; with synchronised batch normalisation too);
#   2. the tree's bytes really crossed the links (ip -s link counters of the bridge ports);
#   3. a host whose link is taken down mid-run is named (rank and host name) within
#      distributed.timeout plus a few seconds, and the ranks on the other hosts end.
# Cleanup (trap) removes every namespace and the bridge, also when a check fails. Needs root and
# network namespaces: otherwise exit 77 (CTest SKIP_RETURN_CODE) with the reason.
set -u
poet=$1 mpiexec=$2 config=$3 work=$4
NS=psc BR=br-psc NET=10.88.18 HOSTS=4
TIMEOUT=4 # distributed.timeout of the link-down case

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "no ip(8)"
command -v unshare >/dev/null || skip "no unshare(1)"

cleanup() {
  # Processes left in our namespaces (a daemon whose link went down) hold them alive: end them.
  for i in $(seq 1 $HOSTS); do
    pids=$(ip netns pids $NS$i 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del $NS$i 2>/dev/null
    # The kernel frees a namespace only when its last socket is gone; our veth pair goes now.
    ip link del vh-$NS$i 2>/dev/null
  done
  ip link del $BR 2>/dev/null
  return 0
}
leftovers() { { ip netns list; ip link show; } 2>/dev/null | grep -c "^$NS[0-9]\|vh-$NS\|$BR"; }
trap 'status=$?; cleanup; if [ "$(leftovers)" != 0 ]; then
  echo "FAIL: cleanup left $(leftovers) namespace(s)/interface(s) of this test"; exit 1; fi; exit $status' EXIT
trap 'exit 1' INT TERM
cleanup # leftovers of an earlier run of this test only (our own names)

rm -rf "$work" && mkdir -p "$work"
ip link add $BR type bridge 2>"$work/ip.err" || skip "cannot create a bridge: $(cat "$work/ip.err")"
ip addr add $NET.254/24 dev $BR && ip link set $BR up || { echo "FAIL: bridge setup"; exit 1; }
for i in $(seq 1 $HOSTS); do
  ip netns add $NS$i 2>"$work/ip.err" || skip "cannot create a network namespace: $(cat "$work/ip.err")"
  ip link add vh-$NS$i type veth peer name ve-$NS$i &&
    ip link set ve-$NS$i netns $NS$i &&
    ip link set vh-$NS$i master $BR &&
    ip link set vh-$NS$i up &&
    ip netns exec $NS$i ip addr add $NET.$i/24 dev ve-$NS$i &&
    ip netns exec $NS$i ip link set ve-$NS$i up &&
    ip netns exec $NS$i ip link set lo up || { echo "FAIL: setting up host $i"; exit 1; }
done

# Open MPI starts its daemons through this instead of ssh: skip ssh's options, map the address to
# its namespace, and give the daemon a host name of its own there.
cat >"$work/launcher" <<LAUNCHER
#!/bin/sh
while [ \$# -gt 0 ]; do
  case \$1 in -o|-l|-p|-i|-F) shift 2 ;; -*) shift ;; *) break ;; esac
done
host=\$1; shift
n=\${host##*.}
exec ip netns exec $NS\$n unshare --uts /bin/sh -c "hostname psc-host\$n; \$*"
LAUNCHER
chmod +x "$work/launcher"
for i in $(seq 1 $HOSTS); do echo "$NET.$i slots=1"; done >"$work/hostfile"

MCA=(--hostfile "$work/hostfile" --mca plm_rsh_agent "$work/launcher" --mca plm_rsh_no_tree_spawn 1
     --mca btl tcp,self --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24
     --mca mpi_yield_when_idle 1 --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2
     --mca oob_tcp_keepalive_probes 3)
ITER=(--set training.iterations=12 --set training.log_every=0)

link_bytes() {
  local sum=0
  for i in $(seq 1 $HOSTS); do
    sum=$((sum + $(cat /sys/class/net/vh-$NS$i/statistics/rx_bytes) +
                 $(cat /sys/class/net/vh-$NS$i/statistics/tx_bytes)))
  done
  echo $sum
}

# The one-host reference.
"$mpiexec" -np 1 "$poet" train "$config" "${ITER[@]}" --quiet \
  --set output.checkpoint_dir="\"$work/ref\"" --trajectory "$work/ref.traj" >"$work/ref.out" 2>&1 ||
  { cat "$work/ref.out"; echo "FAIL: the one-host reference run"; exit 1; }

fail=0
for tree in binary kary mpi auto; do
  before=$(link_bytes)
  timeout 300 "$mpiexec" -np $HOSTS "${MCA[@]}" "$poet" train "$config" "${ITER[@]}" \
    --set distributed.tree=$tree --set distributed.arity=3 \
    --set output.checkpoint_dir="\"$work/$tree\"" --trajectory "$work/$tree.traj" \
    >"$work/$tree.out" 2>&1
  code=$?
  moved=$(( $(link_bytes) - before ))
  # At least the tree's payload: every rank but the root sends 12 × (4 + 40·10)·8 bytes up.
  least=$(( (HOSTS - 1) * 12 * (4 + 400) * 8 ))
  if [ $code != 0 ]; then
    cat "$work/$tree.out"; echo "FAIL: tree $tree on $HOSTS hosts exited $code"; fail=1
  elif ! cmp -s "$work/ref.traj" "$work/$tree.traj"; then
    echo "FAIL: tree $tree on $HOSTS hosts: trajectory differs from one host"; fail=1
  elif [ $moved -lt $least ]; then
    echo "FAIL: tree $tree: only $moved bytes crossed the links, expected >= $least"; fail=1
  else
    echo "ok: tree $tree on $HOSTS hosts: trajectory identical to one host; $moved bytes on the links"
  fi
done
grep -h "^tree auto" "$work/auto.out"

# More ranks than members on the hosts: M = 2 in two groups of 2 (each host a shard of a group);
# and the batchnorm network with synchronised statistics across the group's two hosts. Each equals
# the same layout run on one host, bit for bit (a layout's bits do not depend on where it runs).
BN_CONFIG=$(dirname "$config")/tiny-bn.json
for layout in "groups:$config:" "syncbn:$BN_CONFIG:--set distributed.sync_batchnorm=true"; do
  IFS=: read -r name cfg extra <<<"$layout"
  # shellcheck disable=SC2086 # $extra is a list of arguments
  "$mpiexec" -np $HOSTS --oversubscribe "$poet" train "$cfg" "${ITER[@]}" --set model.members=2 \
    $extra --quiet --set output.checkpoint_dir="\"$work/$name-one\"" \
    --trajectory "$work/$name-one.traj" >"$work/$name-one.out" 2>&1 ||
    { cat "$work/$name-one.out"; echo "FAIL: $name: the one-host run"; fail=1; continue; }
  before=$(link_bytes)
  # shellcheck disable=SC2086
  timeout 300 "$mpiexec" -np $HOSTS "${MCA[@]}" "$poet" train "$cfg" "${ITER[@]}" \
    --set model.members=2 $extra --quiet --set output.checkpoint_dir="\"$work/$name\"" \
    --trajectory "$work/$name.traj" >"$work/$name.out" 2>&1
  code=$?
  moved=$(( $(link_bytes) - before ))
  if [ $code != 0 ]; then
    cat "$work/$name.out"; echo "FAIL: $name on $HOSTS hosts exited $code"; fail=1
  elif ! cmp -s "$work/$name-one.traj" "$work/$name.traj"; then
    echo "FAIL: $name on $HOSTS hosts: trajectory differs from the same layout on one host"; fail=1
  else
    echo "ok: $name (M = 2 on $HOSTS hosts, groups of 2): identical to one host; $moved bytes on the links"
  fi
done

# A host's link goes down mid-run: rank 2 (host psc-host3, a child of the root in the binary tree).
# Open MPI's own daemon connection can notice the lost host first (a send that fails at once) and
# end the job before poet's timeout: a race outside poet, so that outcome alone is tried once more.
# Every attempt must still show poet's line within the timeout plus a few seconds.
link_down_attempt() {
  rm -rf "$work/down.traj" "$work/down" # a fresh run each attempt
  start=$(date +%s)
  timeout 120 "$mpiexec" -np $HOSTS "${MCA[@]}" "$poet" train "$config" \
    --set training.iterations=100000 --set training.log_every=0 --set distributed.timeout=$TIMEOUT \
    --set output.log_flush_every=1000000 \
    --set output.checkpoint_dir="\"$work/down\"" --trajectory "$work/down.traj" --quiet \
    >"$work/down.out" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do
    [ -s "$work/down.traj" ] && [ "$(wc -l <"$work/down.traj")" -ge 3 ] && break
    sleep 0.2
  done
  down_at=$(date +%s)
  ip link set vh-${NS}3 down
  # The line must come within the timeout plus a few seconds. Open MPI's mpirun itself then still
  # waits to tell the lost host's daemon to end (TCP retransmissions, net.ipv4.tcp_retries2: minutes,
  # not the idle keepalive); the ranks on the hosts it can reach end at once, so the test ends it.
  said=""
  for _ in $(seq 1 $(( (TIMEOUT + 15) * 5 ))); do
    if grep -q "no answer from rank 2 on host psc-host3" "$work/down.out"; then
      said=$(( $(date +%s) - down_at )); break
    fi
    sleep 0.2
  done
  sleep 3
  alive=""
  for i in 1 2 4; do
    for pid in $(ip netns pids $NS$i 2>/dev/null); do
      case $(cat /proc/$pid/comm 2>/dev/null) in poet) alive="$alive $i" ;; esac
    done
  done
  kill $job 2>/dev/null
  wait $job 2>/dev/null
  cat "$work/down.out"
}
# Every outcome must name rank 2: a line naming any other rank is the blame defect issue 18 recorded
# (rank 0 sat in the loss log's collective write after the link went down, its children named it);
# a bounded tree sync before every collective step mends it (checked on one host, deterministically,
# by tree_timeout_before_*). A link lost *during* a collective step (HDF5's collective write, which
# has no deadline) stays beyond poet: Open MPI's keepalive names the host, or ranks that left the
# collective first may name the rank still stuck in it. This case checks the tree's waits, so it
# keeps the loss log's flush out of the way (log_flush_every): with the flush every 2 iterations the
# link falls inside a flush in most runs. POET_MULTIHOST_LINK_DOWN=0 skips it.
said=skipped
[ "${POET_MULTIHOST_LINK_DOWN:-1}" = 1 ] && for attempt in 1 2; do
  link_down_attempt
  [ -z "$said" ] && grep -q "ORTE has lost communication with a remote daemon" "$work/down.out" &&
    [ $attempt = 1 ] || break
  echo "note: Open MPI ended the job before poet's timeout (its daemon noticed the lost link first); trying once more"
  for pid in $(ip netns pids ${NS}3 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  ip link set vh-${NS}3 up
  sleep 2
done
if [ "$said" = skipped ]; then
  echo "note: link-down case not run (POET_MULTIHOST_LINK_DOWN=0)"
elif grep -q "no answer from rank [013] " "$work/down.out"; then
  echo "FAIL: link down: a rank blamed a rank other than rank 2 (psc-host3)"; fail=1
elif [ -z "$said" ]; then
  echo "FAIL: link down: no line naming rank 2 on host psc-host3 within $((TIMEOUT + 15)) s"; fail=1
elif [ -n "$alive" ]; then
  echo "FAIL: link down: ranks still running on reachable host(s)$alive"; fail=1
else
  echo "ok: link of psc-host3 down: rank 0 named rank 2 on psc-host3 after ${said} s (distributed.timeout $TIMEOUT s); the ranks on the other hosts ended"
fi
exit $fail
