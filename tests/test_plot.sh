#!/usr/bin/env bash
# test_plot.sh TEST_LOSSLOG PLOT_SCRIPT: writes a sample loss log, plots one log and two overlaid,
# and checks each output is a PNG (signature) of more than 1 KB; a foreign HDF5 file must fail with
# the one-line message. Exits 77 (skipped) when no python3 has h5py and matplotlib.
set -u
writer=$1 script=$2
py=""
for candidate in /usr/bin/python3 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import h5py, matplotlib' 2>/dev/null; then
    py=$candidate
    break
  fi
done
if [ -z "$py" ]; then
  echo "SKIP: no python3 with h5py and matplotlib (Debian: python3-h5py python3-matplotlib)"
  exit 77
fi
fail=0
check_png() {
  local file=$1 size signature
  size=$(stat -c %s "$file" 2>/dev/null || echo 0)
  signature=$(head -c 8 "$file" 2>/dev/null | od -An -tx1 | tr -d ' \n')
  if [ "$signature" != "89504e470d0a1a0a" ] || [ "$size" -le 1024 ]; then
    echo "FAIL: $file is not a PNG over 1 KB (signature '$signature', $size bytes)"
    fail=1
  else
    echo "ok: $file is a PNG of $size bytes"
  fi
}

rm -f plot_sample.h5 plot_one.png plot_two.png plot_foreign.h5
"$writer" sample plot_sample.h5 >/dev/null || { echo "FAIL: cannot write the sample log"; exit 1; }
"$py" "$script" plot_sample.h5 -o plot_one.png >plot_one.out || fail=1
cat plot_one.out
check_png plot_one.png
# The sample log has the decomposition columns (format 2): the train/held-out panels are drawn.
if ! grep -qF "with the decomposition: train and held-out" plot_one.out; then
  echo "FAIL: the decomposition panels were not drawn"
  fail=1
fi
"$py" "$script" plot_sample.h5 plot_sample.h5 --window 5 --log-y -o plot_two.png || fail=1
check_png plot_two.png

"$py" -c 'import h5py; h5py.File("plot_foreign.h5", "w")["data"] = [1.0, 2.0]'
err=$("$py" "$script" plot_foreign.h5 -o plot_foreign.png 2>&1 >/dev/null)
code=$?
if [ $code = 0 ] || ! grep -qF "plot_foreign.h5: not a poet loss log: missing /iterations/loss" <<<"$err"; then
  echo "FAIL: foreign file: exit $code, stderr '$err'"
  fail=1
else
  echo "ok: foreign file refused: $err"
fi
[ $fail = 0 ] && echo "plot: all checks passed" && exit 0
echo "plot: checks failed"
exit 1
