#!/usr/bin/env bash
# eval_ranks.sh POET MPIEXEC WORKDIR CONFIG: trains CONFIG on one rank, then evaluates its
# checkpoint with `poet eval` on 1 and on 3 ranks. Passes only when both print the same metrics,
# character for character (sums are exact, so the rank count must not matter), including the
# calibration lines: Brier, ECE, the probability-mean prediction and the diversity. Also checks the
# member-health warning of the training run and the log's marks.
set -u
poet=$1 mpiexec=$2 work=$3 config=$4
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
set_dir=(--set output.checkpoint_dir="\"$work/ckpt\"")
"$mpiexec" -np 1 "$poet" train "$config" --quiet "${set_dir[@]}" >"$work/train.out" 2>&1 ||
  { cat "$work/train.out"; fail "training failed"; }
# Member health: tiny's 50 iterations leave members at chance level; the warning names them and
# the log marks them (the count column agrees with the matrix).
warning="^poet: warning: evaluation after 50 iterations: [0-9]+ member\(s\) at chance level"
grep -E "$warning .*member [0-9]+ \(0\.[0-9]+\)" "$work/train.out" ||
  { cat "$work/train.out"; fail "no warning naming the members at chance"; }
/usr/bin/python3 - "$work/ckpt/log.h5" <<'PY' || fail "the log does not mark the members at chance"
import sys, h5py
with h5py.File(sys.argv[1], "r") as h:
    matrix, count = h["eval/member_at_chance"][:], h["eval/members_at_chance"][:]
    accuracy = h["eval/member_accuracy"][:]
ok = len(count) > 0 and count[-1] > 0 and all(matrix.sum(axis=1) == count)
print("members at chance:", list(count), "accuracies", [round(a, 4) for a in accuracy[-1]])
sys.exit(0 if ok else 1)
PY
for np in 1 3; do
  "$mpiexec" -np $np --oversubscribe "$poet" eval "$config" "${set_dir[@]}" >"$work/eval$np.out" \
    2>&1 || { cat "$work/eval$np.out"; fail "poet eval on $np rank(s) failed"; }
done
cat "$work/eval1.out"
for want in "(mean of logits)" "(mean of probabilities)" "brier" "ece" "diversity"; do
  grep -qF -- "$want" "$work/eval1.out" || fail "poet eval does not print '$want'"
done
cmp -s "$work/eval1.out" "$work/eval3.out" || { diff "$work/eval1.out" "$work/eval3.out";
  fail "1 and 3 ranks print different metrics"; }
echo "ok: poet eval prints the same metrics on 1 and 3 ranks"
