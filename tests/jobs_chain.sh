#!/usr/bin/env bash
# jobs_chain.sh REPO WORK: jobs/train-chain.sh with a stand-in sbatch that records its arguments and
# the POET_ARGS each job would get: N jobs, each after the previous one with afternotok, the sbatch
# options passed to every job, --deadline slurm added to POET_ARGS.
set -u
repo=$1 work=$2
rm -rf "$work" && mkdir -p "$work/bin"
fail() { echo "FAIL: $*"; exit 1; }
cat >"$work/bin/sbatch" <<'STUB'
#!/bin/sh
n=$(($(cat "$SBATCH_LOG.n" 2>/dev/null || echo 100) + 1))
echo $n >"$SBATCH_LOG.n"
echo "$* | POET_ARGS=$POET_ARGS" >>"$SBATCH_LOG"
echo $n
STUB
chmod +x "$work/bin/sbatch"
export SBATCH_LOG=$work/sbatch.log
PATH="$work/bin:$PATH" POET_ARGS="--quiet" bash "$repo/jobs/train-chain.sh" 3 --time=01:00:00 \
  >"$work/out" || fail "train-chain.sh exited $?"
cat "$work/out" "$SBATCH_LOG"
[ "$(tr '\n' ' ' <"$work/out")" = "101 102 103 " ] || fail "expected job ids 101 102 103"
want="--parsable --time=01:00:00 $repo/jobs/train.sbatch | POET_ARGS=--quiet --deadline slurm
--parsable --dependency=afternotok:101 --kill-on-invalid-dep=yes --time=01:00:00 $repo/jobs/train.sbatch | POET_ARGS=--quiet --deadline slurm
--parsable --dependency=afternotok:102 --kill-on-invalid-dep=yes --time=01:00:00 $repo/jobs/train.sbatch | POET_ARGS=--quiet --deadline slurm"
[ "$(cat "$SBATCH_LOG")" = "$want" ] || fail "sbatch calls differ from: $want"
echo ok
