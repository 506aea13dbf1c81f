#!/usr/bin/env bash
# test_shapes.sh POET MPIEXEC WORKDIR: images whose shape differs from the network's input are a
# data error (exit 4) naming the file and both shapes, before any work, for `train` and `eval` on 1
# and 3 ranks (issue 17, item 1: a smaller test set crashed, a larger one was used silently).
# The IDX files are written here in the real format (big-endian header, one byte per pixel).
set -u
poet=$1 mpiexec=$2 work=$3
tiny=$(cd "$(dirname "$0")" && pwd)/configs/tiny.json
rm -rf "$work" && mkdir -p "$work"
cd "$work" || exit 1

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))"
         printf "\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
# images NAME N H W: N random H×W images; labels NAME N: N labels, all 0.
images() { { printf '\x00\x00\x08\x03'; be32 "$2"; be32 "$3"; be32 "$4"
             head -c $(($2 * $3 * $4)) /dev/urandom; } >"$1"; }
labels() { { printf '\x00\x00\x08\x01'; be32 "$2"; head -c "$2" /dev/zero; } >"$1"; }

images train28.idx 80 28 28; labels train.lbl 80
images train27.idx 80 27 28
images test28.idx 40 28 28; labels test.lbl 40
images test27.idx 40 27 28
images test29.idx 40 29 28
images tiny4.idx 80 4 4

fails=0
# expect NAME TEXT POET-ARGS...: exit 4 (or $want) and TEXT on stderr, within 60 s.
want=4
expect() {
  local name=$1 text=$2; shift 2
  "$@" >"$name.out" 2>"$name.err"
  local code=$?
  if [ $code = "$want" ] && grep -qF -- "$text" "$name.err"; then
    echo "ok   $name: $(head -1 "$name.err")"
  else
    echo "FAIL $name: exit $code, stderr:"; cat "$name.err"; fails=$((fails + 1))
  fi
}
data() { echo --set data.train_images=\"$1\" --set data.train_labels=\"train.lbl\" \
              --set data.test_images=\"$2\" --set data.test_labels=\"test.lbl\"; }
run() { local ranks=$1; shift; timeout 60 "$mpiexec" -np "$ranks" --oversubscribe "$poet" "$@"; }
common="--set training.iterations=2 --set training.batch_size=40 --set model.members=3"
common="$common --set output.checkpoint_dir=\"ckpt\" --quiet"

small="test27.idx: images are 1x27x28 (CxHxW) but the network's input is 1x28x28 (the training images, train28.idx)"
large="test29.idx: images are 1x29x28 (CxHxW) but the network's input is 1x28x28 (the training images, train28.idx)"
narrow="test28.idx: images are 1x28x28 (CxHxW) but the network's input is 1x27x28 (the training images, train27.idx)"
for ranks in 1 3; do
  # shellcheck disable=SC2046
  expect "train_small_test_p$ranks" "$small" run $ranks train "$tiny" $common $(data train28.idx test27.idx)
  # shellcheck disable=SC2046
  expect "train_large_test_p$ranks" "$large" run $ranks train "$tiny" $common $(data train28.idx test29.idx)
  # shellcheck disable=SC2046
  expect "train_narrow_train_p$ranks" "$narrow" run $ranks train "$tiny" $common $(data train27.idx test28.idx)
done
# eval: a good run's checkpoint, then a test set of another size.
# shellcheck disable=SC2046
if run 1 train "$tiny" $common $(data train28.idx test28.idx) >good.out 2>&1; then
  for ranks in 1 3; do
    # shellcheck disable=SC2046
    expect "eval_small_test_p$ranks" "$small" run $ranks eval "$tiny" \
      $(echo "$common" | sed 's/--quiet//') $(data train28.idx test27.idx)
  done
else
  echo "FAIL: the matching run failed:"; cat good.out; fails=$((fails + 1))
fi
# Images the network cannot take at all (4x4 through the reference network's two stride-2
# convolutions): a config error naming the key, the network's input and the file that fixed it.
want=3
# shellcheck disable=SC2046
expect "train_too_small_for_network" "model.architecture[2]: kernel 3 does not fit input 1x1 (padding 0) of this conv layer: use a smaller kernel or more padding (the network's input is 1x4x4, the training images tiny4.idx)" \
  run 1 train "$tiny" $common --set output.checkpoint_dir=\"ckpt4\" --set model.architecture=reference $(data tiny4.idx tiny4.idx | sed 's/test.lbl/train.lbl/')
[ $fails = 0 ] && echo "all shape checks passed" && exit 0
exit 1
