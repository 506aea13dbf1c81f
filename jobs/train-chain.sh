#!/bin/bash
# jobs/train-chain.sh — for clusters that forbid requeueing (no --requeue, no `scontrol requeue`):
# submits a chain of N jobs of jobs/train.sbatch, each one starting only if the one before did not
# succeed (--dependency=afternotok). Every job passes --resume and --deadline slurm, so it writes a
# checkpoint and exits 75 shortly before its time limit; the next job then starts and continues bit
# for bit. When a job finishes the training (exit 0), the jobs after it can never start and Slurm
# removes them (--kill-on-invalid-dep=yes).
#
#   jobs/train-chain.sh 6                             # 6 jobs of train.sbatch's default 2 h
#   POET_CONFIG=configs/mnist.json jobs/train-chain.sh 10 --time=04:00:00 -n 4
#
# Arguments: N (default 4), then sbatch options applied to every job of the chain. The knobs of
# jobs/train.sbatch (POET_CONFIG, POET_BIN, POET_ARGS, POET_MPIRUN) apply; POET_ARGS gets
# `--deadline slurm` added. Run it from the repository root. Prints the job ids.
#
# A job that fails for another reason (a bad config, a crash) also satisfies afternotok: the next
# one resumes from the last checkpoint and most likely fails the same way, so look at the first
# failure's log (poet-<jobid>.out) and `scancel` the rest of the chain when a job fails with an
# exit code other than 75.
set -eu
n=${1:-4}
shift || true
case $n in '' | *[!0-9]*) echo "train-chain.sh: N must be a number, got '$n'" >&2; exit 2 ;; esac
here=$(dirname "$0")
export POET_ARGS="${POET_ARGS:-} --deadline slurm"
prev=$(sbatch --parsable "$@" "$here/train.sbatch")
echo "$prev"
for _ in $(seq 2 "$n"); do
  prev=$(sbatch --parsable --dependency="afternotok:$prev" --kill-on-invalid-dep=yes "$@" \
           "$here/train.sbatch")
  echo "$prev"
done
