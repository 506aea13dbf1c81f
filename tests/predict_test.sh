#!/usr/bin/env bash
# predict_test.sh POET MPIEXEC WORK CONFIG CASE: `poet predict` (issue 16).
#   setup        trains CONFIG into WORK/ckpt (50 iterations), the fixture of the other cases, and
#                writes WORK/small.idx: 3 images of 20x20 (IDX3), a shape the networks do not take
#   consistency  predicts the test set on 1, 2 and 3 ranks into HDF5 and CSV: the outputs are
#                identical on every rank count, every probability row sums to 1 (ensemble and
#                members), and the accuracy equals `poet eval`'s on the same checkpoint and images;
#                on 5 ranks (more than the 4 members) the CSV is the same too
set -u
poet=$1 mpiexec=$2 work=$3 config=$4 case=$5
data=/usr/share/datasets/fashion-mnist
images=$data/t10k-images-idx3-ubyte.gz labels=$data/t10k-labels-idx1-ubyte.gz
run() { "$mpiexec" -np "$1" --oversubscribe "${@:2}"; }
fail() { echo "FAIL: $*"; exit 1; }

case $case in
setup)
  rm -rf "$work" && mkdir -p "$work"
  run 1 "$poet" train "$config" --quiet --set output.checkpoint_dir="\"$work/ckpt\"" ||
    fail "training exited $?"
  { printf '\x00\x00\x08\x03\x00\x00\x00\x03\x00\x00\x00\x14\x00\x00\x00\x14'
    head -c 1200 /dev/zero; } >"$work/small.idx"
  ;;
consistency)
  ckpt=$work/ckpt/$(cat "$work/ckpt/latest")
  out=$work/consistency && rm -rf "$out" && mkdir -p "$out"
  for p in 1 2 3; do
    run $p "$poet" predict "$ckpt" --input "$images" --labels "$labels" -o "$out/p$p.h5" \
      >"$out/p$p.out" || fail "predict on $p ranks (HDF5) exited $?"
    run $p "$poet" predict "$ckpt" --input "$images" --labels "$labels" -o "$out/p$p.csv" \
      --quiet >/dev/null || fail "predict on $p ranks (CSV) exited $?"
  done
  for p in 2 3; do
    cmp "$out/p1.csv" "$out/p$p.csv" || fail "CSV on $p ranks differs from 1 rank"
    h5diff "$out/p1.h5" "$out/p$p.h5" || fail "HDF5 on $p ranks differs from 1 rank"
  done
  echo "ok: identical output on 1, 2 and 3 ranks"
  # More ranks than the checkpoint's 4 members (a P > M training allocation): the first 4 predict.
  run 5 "$poet" predict "$ckpt" --input "$images" --labels "$labels" -o "$out/p5.csv" --quiet \
    >/dev/null || fail "predict on 5 ranks (4 members) exited $?"
  cmp "$out/p1.csv" "$out/p5.csv" || fail "CSV on 5 ranks (4 members) differs from 1 rank"
  echo "ok: 5 ranks for 4 members: the same output"
  # Columns: image, prediction, disagreement, K ensemble probabilities, M x K member ones, label.
  awk -F, 'NR == 1 { for (i = 4; i <= NF; i++) if ($i ~ /^p/) K++; M = (NF - 4 - K) / K; next }
    { s = 0; for (k = 0; k < K; k++) s += $(4 + k); if (s < 1 - 1e-5 || s > 1 + 1e-5) bad++
      for (j = 0; j < M; j++) { s = 0; for (k = 0; k < K; k++) s += $(4 + K + j * K + k)
        if (s < 1 - 1e-5 || s > 1 + 1e-5) bad++ }
      rows++; hit += ($2 == $NF) }
    END { printf "%d rows, %d members, %d classes, %d rows not summing to 1, accuracy %.4f\n",
                 rows, M, K, bad, hit / rows; exit (bad > 0 || rows != 10000 || M < 2) }' \
    "$out/p1.csv" | tee "$out/csv-check" || fail "probabilities do not sum to 1"
  "$poet" eval "$config" --set output.checkpoint_dir="\"$work/ckpt\"" --checkpoint "$ckpt" \
    >"$out/eval.out" || fail "eval exited $?"
  want=$(sed -n 's/^ensemble: accuracy \([0-9.]*\).*/\1/p' "$out/eval.out")
  got=$(sed -n 's/^ensemble: accuracy \([0-9.]*\).*/\1/p' "$out/p1.out")
  csv=$(sed -n 's/.*accuracy \([0-9.]*\)$/\1/p' "$out/csv-check")
  echo "eval accuracy $want, predict's $got, from the CSV's predictions and labels $csv"
  [ -n "$want" ] && [ "$want" = "$got" ] && [ "$want" = "$csv" ] || fail "accuracies differ"
  grep -q "^predict: 10000 of 10000 images (100%)" "$out/p1.out" || fail "no progress lines"
  ;;
*) fail "unknown case $case" ;;
esac
echo ok
