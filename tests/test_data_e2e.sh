#!/usr/bin/env bash
# test_data_e2e.sh POET MPIEXEC WORKDIR FMNIST_DIR: the data formats end to end through `poet`.
#  1. Fashion-MNIST converted to HDF5 (`poet convert`) trains to the same trajectory, bit for bit,
#     as from its IDX files, on 1 and 3 ranks, and evaluates to the same test numbers.
#  2. A small CIFAR-10 set (written here record by record) trains 3x32x32 images through the
#     reference network, and its HDF5 conversion gives the same trajectory bit for bit.
#  3. Bad data through the command line: one line naming the file, exit 4.
set -u
poet=$1 mpiexec=$2 work=$3 fmnist=$4
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
train() { # NAME RANKS ARGS...: trains tiny.json in $work/NAME, trajectory $work/NAME.traj
  local name=$1 ranks=$2
  shift 2
  "$mpiexec" -np "$ranks" --oversubscribe "$poet" train "$here/configs/tiny.json" \
    --set training.iterations=12 --set training.eval_every=6 \
    --set output.checkpoint_dir="\"$work/$name\"" --trajectory "$work/$name.traj" "$@" \
    >"$work/$name.out" 2>"$work/$name.err" ||
    fail "$name: poet exited $? ($(tail -1 "$work/$name.err"))"
  # stdout alone: under mpirun a warning on stderr (e.g. members at chance level) can land in the
  # middle of a stdout line
  grep -E '^(eval|test:|      members:)' "$work/$name.out" >"$work/$name.evals"
}
same() { # A B: trajectories and evaluations equal
  cmp -s "$work/$1.traj" "$work/$2.traj" && [ -s "$work/$1.traj" ] ||
    fail "trajectories of $1 and $2 differ"
  cmp -s "$work/$1.evals" "$work/$2.evals" && [ -s "$work/$1.evals" ] ||
    fail "evaluations of $1 and $2 differ"
  [ $fails = 0 ] && echo "ok: $1 and $2 identical ($(wc -l <"$work/$1.traj") iterations)"
}

# 1. Fashion-MNIST, IDX vs HDF5.
"$poet" convert "$fmnist/train-images-idx3-ubyte.gz" "$fmnist/train-labels-idx1-ubyte.gz" \
  "$work/fm-train.h5" || fail "convert train"
"$poet" convert "$fmnist/t10k-images-idx3-ubyte.gz" "$fmnist/t10k-labels-idx1-ubyte.gz" \
  "$work/fm-test.h5" || fail "convert test"
h5=(--set data.train_images="\"$work/fm-train.h5\"" --set data.test_images="\"$work/fm-test.h5\"")
train fm-idx 1
train fm-h5 1 "${h5[@]}"
train fm-h5-p3 3 "${h5[@]}" --set data.format='"hdf5"'
train fm-stream 2 "${h5[@]}" --set data.in_memory=false
same fm-idx fm-h5
same fm-idx fm-h5-p3
same fm-idx fm-stream
grep -q "^data: 60000 training, 0 validation and 10000 test images of 1x28x28 (CxHxW) read per batch" \
  "$work/fm-stream.out" || fail "the streamed run's summary does not say so"

# 2. CIFAR-10 binary: 2 training files of 60 and 40 images, a test file of 50.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
def write(name, first, n):
    with open(f"{work}/{name}", "wb") as f:
        for i in range(first, first + n):
            f.write(bytes([i % 10]) + bytes((i * 7 + j * 13 + (j // 1024) * 50) % 256
                                            for j in range(3072)))
write("data_batch_1.bin", 0, 60)
write("data_batch_2.bin", 60, 40)
write("test_batch.bin", 100, 50)
write("bad_size.bin", 0, 2)
with open(f"{work}/bad_size.bin", "ab") as f:
    f.write(b"x")
PY
cifar=(--set data.train_images="\"$work/data_batch_*.bin\"" --set data.test_images="\"$work/test_batch.bin\""
       --set data.mean='[0.49,0.48,0.45]' --set data.std='[0.25,0.24,0.26]'
       --set training.batch_size=20)
train cifar 1 "${cifar[@]}"
grep -q "^data: 100 training, 0 validation and 50 test images of 3x32x32 (CxHxW) held as uint8" "$work/cifar.out" ||
  fail "the CIFAR run's summary does not state its data"
"$poet" convert "$work/data_batch_*.bin" "$work/cifar-train.h5" || fail "convert CIFAR train"
"$poet" convert --format cifar "$work/test_batch.bin" "$work/cifar-test.h5" || fail "convert CIFAR test"
train cifar-h5 2 "${cifar[@]}" --set data.train_images="\"$work/cifar-train.h5\"" \
  --set data.test_images="\"$work/cifar-test.h5\""
same cifar cifar-h5

# 3. Errors from the command line: exit 4, one line naming the file.
ee="$here/expect_error.sh"
"$ee" 4 "bad_size.bin: 6147 bytes is not a whole number of 3073-byte CIFAR-10 records" \
  "$poet" train "$here/configs/tiny.json" "${cifar[@]}" --set data.train_images="\"$work/bad_size.bin\"" \
  --set output.checkpoint_dir="\"$work/e1\"" || fail "bad CIFAR size"
"$ee" 4 "data_batch_1.bin: label 2 at index 2 is >= classes (2)" \
  "$poet" train "$here/configs/tiny.json" "${cifar[@]}" --set data.classes=2 \
  --set output.checkpoint_dir="\"$work/e2\"" || fail "label >= classes"
"$ee" 4 "data_batch_*.bin: images have 3 channel(s) but data.mean/data.std give 2 values" \
  "$poet" train "$here/configs/tiny.json" "${cifar[@]}" --set data.mean='[0.5,0.5]' \
  --set data.std=0.25 --set output.checkpoint_dir="\"$work/e3\"" || fail "mean count"
"$ee" 4 "fm-train.h5: no dataset \"pixels\" (set data.images_dataset" \
  "$poet" train "$here/configs/tiny.json" "${h5[@]}" --set data.images_dataset='"pixels"' \
  --set output.checkpoint_dir="\"$work/e4\"" || fail "missing dataset"
"$ee" 4 "test_batch.bin: images are 3x32x32 (CxHxW) but the network's input is 1x28x28" \
  "$poet" train "$here/configs/tiny.json" --set data.test_images="\"$work/test_batch.bin\"" \
  --set output.checkpoint_dir="\"$work/e5\"" || fail "shape mismatch"
"$ee" 3 "data.format: expected one of \"auto\", \"idx\", \"cifar\", \"hdf5\"" \
  "$poet" train "$here/configs/tiny.json" --set data.format='"png"' || fail "bad format"
"$ee" 2 "convert: expected IMAGES [LABELS] OUT.h5" "$poet" convert x.h5 || fail "convert usage"
"$ee" 4 "data.in_memory false reads images from an HDF5 file, this is idx" \
  "$poet" train "$here/configs/tiny.json" --set data.in_memory=false \
  --set output.checkpoint_dir="\"$work/e6\"" || fail "streamed IDX"
"$ee" 3 "data.in_memory: false needs data.prefetch 0" \
  "$poet" train "$here/configs/tiny.json" --set data.in_memory=false --set data.prefetch=1 ||
  fail "streamed with prefetch"

[ $fails = 0 ] && echo "data_e2e: all passed" && exit 0
echo "data_e2e: $fails failure(s)"
exit 1
