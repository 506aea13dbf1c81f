#!/usr/bin/env bash
# check_creation_order.sh CHECKPOINT: h5dump --sort_by=creation_order lists both tensor groups of
# member 0 in layer order (conv1.weight, conv1.bias, conv2.weight, ...), as checkpoint-format.md
# promises: the groups track link creation order. Without it h5dump sorts by name (bias first).
set -u
ckpt=$1
fail=0
for kind in params momentum; do
  got=$(h5dump -H --sort_by=creation_order -g "/members/0000/$kind" "$ckpt" |
        awk -F'"' '/DATASET "/ { printf "%s ", $2 }')
  want="conv1.weight conv1.bias conv2.weight conv2.bias fc1.weight fc1.bias fc2.weight fc2.bias "
  echo "$kind: $got"
  if [ "$got" != "$want" ]; then
    echo "FAIL: /members/0000/$kind in creation order is '$got', expected '$want'"
    fail=1
  fi
done
[ $fail = 0 ] && echo ok
exit $fail
