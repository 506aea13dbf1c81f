#!/usr/bin/env bash
# slurm_cluster.sh start DIR [OWNER_PID] | stop DIR
#
# A private single-node Slurm for tests (see /work/shared/SLURM.md for what was verified): its own
# munged (own key and socket), slurmctld and slurmd on free ports, all state, logs and sockets under
# DIR, so it touches nothing system-wide and several can run side by side.
#
#   start  writes DIR/env (source it: SLURM_CONF), starts the daemons and waits until the node is
#          idle. Exit 0: ready. Exit 77: Slurm cannot run here (not root, a package missing, a daemon
#          that does not start); the reason is on stdout (with the daemons' log tails) and nothing
#          is left running. POET_REQUIRE_SLURM=1 turns that 77 into 1, for machines that must run it.
#          With OWNER_PID, a watchdog stops the cluster and removes DIR as soon as that process is
#          gone, so a test killed by a timeout leaves no daemons behind.
#   stop   cancels every job, then stops the daemons by their PIDs (TERM, then KILL after 10 s).
set -u
cmd=${1:-} dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: slurm_cluster.sh start DIR [OWNER_PID] | stop DIR" >&2
  exit 2
fi

skip() {
  echo "SKIP: $*"
  [ "${POET_REQUIRE_SLURM:-0}" = 1 ] && { echo "FAIL: POET_REQUIRE_SLURM=1"; exit 1; }
  exit 77
}

# port_free PORT: nobody listens on it (TCP, IPv4 or IPv6).
port_free() {
  local hex
  hex=$(printf '%04X' "$1")
  ! awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
                      END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port_pair: two consecutive free ports, picked at random in 20000-29998.
free_port_pair() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 9999))
    if port_free "$p" && port_free $((p + 1)); then echo "$p"; return 0; fi
  done
  return 1
}

# stop_pid PID NAME: TERM, wait up to 10 s, then KILL.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "slurm_cluster: $2 (pid $pid) ignored SIGTERM for 10 s; killing it"
  kill -KILL "$pid" 2>/dev/null
}

stop_cluster() {
  [ -f "$dir/env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/env"
  if [ -f "$dir/pids/slurmctld" ] && kill -0 "$(cat "$dir/pids/slurmctld")" 2>/dev/null; then
    # Jobs run under slurmstepd, which outlives slurmd: end them while slurmd can still do it.
    timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
      [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  local name
  for name in watchdog slurmd slurmctld munged; do
    if [ -f "$dir/pids/$name" ]; then
      [ "$name" = watchdog ] && [ "$(cat "$dir/pids/$name")" = "$$" ] && continue
      stop_pid "$(cat "$dir/pids/$name")" "$name"
      rm -f "$dir/pids/$name"
    fi
  done
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

node_idle() { sinfo -h -o %t 2>/dev/null | grep -qx idle; }

# cannot_start REASON: prints the reason and the log tails, stops what started, skips.
cannot_start() {
  local f
  for f in "$dir"/log/*; do
    [ -s "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
  done
  stop_cluster
  skip "$*"
}

start_cluster() {
  local owner=${1:-}
  [ "$(id -u)" = 0 ] || skip "slurmd must run as root to start jobs (running as $(id -un))"
  local prog
  for prog in munged munge slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$prog" >/dev/null 2>&1 ||
      skip "'$prog' is not installed (Debian packages: munge slurmctld slurmd slurm-client)"
  done
  local host ports cpus
  host=$(hostname -s)
  cpus=$(getconf _NPROCESSORS_ONLN) # not nproc: it obeys OMP_NUM_THREADS
  ports=$(free_port_pair) || skip "no two free TCP ports in 20000-29999"
  rm -rf "$dir"
  mkdir -p "$dir"/{etc,log,pids,state/ctld,state/d,munge-key} && chmod 755 "$dir" || skip "cannot create $dir"
  chmod 700 "$dir/munge-key"

  # munged wants its socket's directory (and every one above) searchable by all, its key private.
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$dir/munge-key/munge.key" >/dev/null 2>&1
  else
    dd if=/dev/urandom of="$dir/munge-key/munge.key" bs=128 count=1 2>/dev/null
  fi
  chmod 600 "$dir/munge-key/munge.key"
  local sock=$dir/munge.socket
  setsid munged --foreground --force --socket="$sock" --key-file="$dir/munge-key/munge.key" \
    --pid-file="$dir/pids/munged.pid" --seed-file="$dir/munge-key/seed" \
    --log-file="$dir/log/munged.log" >"$dir/log/munged.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/munged"
  if ! wait_until 10 sh -c "munge -n -S '$sock' | unmunge -S '$sock'"; then
    local why
    why=$(grep -h -m1 -i error "$dir/log/munged.out" "$dir/log/munged.log" 2>/dev/null | head -n 1)
    stop_cluster
    skip "munged does not start: ${why:-no error message (see $dir/log/munged.out)}"
  fi

  sed -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" -e "s|@SOCK@|$sock|g" -e "s|@CPUS@|$cpus|g" \
      -e "s|@CTLD_PORT@|$ports|g" -e "s|@D_PORT@|$((ports + 1))|g" >"$dir/etc/slurm.conf" <<'EOF'
ClusterName=poettest
SlurmctldHost=@HOST@(127.0.0.1)
SlurmctldPort=@CTLD_PORT@
SlurmdPort=@D_PORT@
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=@SOCK@,cred_expire=5
StateSaveLocation=@DIR@/state/ctld
SlurmdSpoolDir=@DIR@/state/d
SlurmctldPidFile=@DIR@/state/slurmctld.pid
SlurmdPidFile=@DIR@/state/slurmd.pid
SlurmctldLogFile=@DIR@/log/slurmctld.log
SlurmdLogFile=@DIR@/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
KillWait=10
MailProg=/bin/true
NodeName=@HOST@ NodeAddr=127.0.0.1 CPUs=@CPUS@ State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  printf 'export SLURM_CONF=%q\n' "$dir/etc/slurm.conf" >"$dir/env"
  export SLURM_CONF=$dir/etc/slurm.conf

  setsid slurmctld -D -c >"$dir/log/slurmctld.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/slurmctld"
  setsid slurmd -D >"$dir/log/slurmd.out" 2>&1 </dev/null &
  echo $! >"$dir/pids/slurmd"

  if [ -n "$owner" ]; then
    # The watchdog: its own session, so whatever kills the test's process group misses it.
    setsid bash "$0" _watch "$dir" "$owner" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/pids/watchdog"
  fi

  local name deadline=$((SECONDS + 30))
  until node_idle; do
    for name in slurmctld slurmd; do
      kill -0 "$(cat "$dir/pids/$name")" 2>/dev/null || cannot_start "$name exited (its log is above)"
    done
    [ "$SECONDS" -lt "$deadline" ] ||
      cannot_start "the node did not become idle within 30 s ($(sinfo -h -o '%t %E' 2>&1))"
    sleep 0.2
  done
  echo "slurm_cluster: ready in $dir (host $host, $cpus CPUs, ports $ports/$((ports + 1)))"
}

case $cmd in
  start) start_cluster "${3:-}" ;;
  stop) stop_cluster ;;
  _watch)
    owner=$3
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    stop_cluster
    rm -rf "$dir" # its owner, who would have read the logs, is gone
    ;;
  *) echo "slurm_cluster.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
