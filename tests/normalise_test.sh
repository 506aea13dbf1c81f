#!/usr/bin/env bash
# normalise_test.sh POET WORK CONFIG: data.mean/std "auto" (issue 16). A run with "auto" computes
# the training set's mean and std, stores the numbers in its checkpoints, and trains exactly as a
# run given those numbers; stopped and resumed it reuses the stored values ("from <checkpoint>") and
# stays bitwise; eval and predict with the "auto" config use them too.
set -u
poet=$1 work=$2 config=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
auto=(--set data.mean=auto --set data.std=auto --set training.iterations=40)
train() { # NAME ARGS...
  local name=$1; shift
  "$poet" train "$config" --set output.checkpoint_dir="\"$work/$name\"" \
    --trajectory "$work/$name.traj" "$@" >>"$work/$name.out" 2>&1
}
train auto "${auto[@]}" || { cat "$work/auto.out"; fail "auto run exited $?"; }
grep -q 'data: mean 0\.[0-9]* std 0\.[0-9]* ("auto", from the training set)' "$work/auto.out" ||
  fail "no 'data: mean … (\"auto\", from the training set)' line"
ckpt=$work/auto/ckpt-00000040.h5
mean=$(h5dump -a /config "$ckpt" | sed -n 's/.*"mean":[[:space:]]*\([0-9.e-]*\),*/\1/p')
std=$(h5dump -a /config "$ckpt" | sed -n 's/.*"std":[[:space:]]*\([0-9.e-]*\),*/\1/p')
echo "stored: mean $mean std $std"
[ -n "$mean" ] && [ -n "$std" ] || fail "the checkpoint's config holds no numeric mean/std"
train explicit --set data.mean="$mean" --set data.std="$std" --set training.iterations=40 --quiet ||
  fail "explicit run exited $?"
cmp "$work/auto.traj" "$work/explicit.traj" || fail "auto and the stored numbers train differently"
train cut "${auto[@]}" --stop-after 15
[ $? = 75 ] || fail "--stop-after did not exit 75"
train cut "${auto[@]}" --resume || { cat "$work/cut.out"; fail "resume exited $?"; }
grep -q "(\"auto\", from $work/cut/ckpt-00000015.h5)" "$work/cut.out" ||
  fail "the resumed run did not take mean/std from its checkpoint"
cmp "$work/auto.traj" "$work/cut.traj" || fail "the resumed auto run differs"
want=$("$poet" eval "$config" --set output.checkpoint_dir="\"$work/auto\"" \
       --set data.mean="$mean" --set data.std="$std" | grep '^ensemble:')
got=$("$poet" eval "$config" --set output.checkpoint_dir="\"$work/auto\"" "${auto[@]}" |
      grep '^ensemble:')
echo "eval: explicit '$want', auto '$got'"
[ -n "$want" ] && [ "$want" = "$got" ] || fail "eval with auto differs"
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
"$poet" predict "$ckpt" --input "$images" -o "$work/a.csv" --quiet || fail "predict CKPT"
"$poet" predict "$config" --set output.checkpoint_dir="\"$work/auto\"" "${auto[@]}" \
  --input "$images" -o "$work/b.csv" --quiet || fail "predict CONFIG"
cmp "$work/a.csv" "$work/b.csv" || fail "predict with the auto config differs"
echo ok
