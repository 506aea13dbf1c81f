#!/usr/bin/env bash
# expect_error.sh CODE 'TEXT' CMD ARGS...: runs CMD and passes only when it exits with CODE (or any
# non-zero code when CODE is "nz") and its stderr contains TEXT on one line. Used for every bad-input
# case of the command line.
set -u
want_code=$1 want_text=$2
shift 2
err=$(mktemp)
"$@" >/dev/null 2>"$err"
code=$?
ok=1
if [ "$want_code" = nz ] && [ "$code" != 0 ]; then
  :
elif [ "$code" != "$want_code" ]; then
  echo "FAIL: exit code $code, expected $want_code: $*" >&2
  ok=0
fi
if ! grep -qF -- "$want_text" "$err"; then
  echo "FAIL: stderr lacks '$want_text': $*" >&2
  ok=0
fi
echo "--- stderr of: $*"
cat "$err"
rm -f "$err"
[ $ok = 1 ] && echo "ok" && exit 0
exit 1
