#!/usr/bin/python3
"""check_member_losses.py LOG_A MEMBER_A LOG_B MEMBER_B — passes only when member MEMBER_A's loss
column in loss log LOG_A equals member MEMBER_B's in LOG_B bit for bit, at every iteration (e.g. a
member of an independently trained ensemble against a one-member run). Debian's python3 (h5py)."""
import sys

import h5py


def column(path, member):
    with h5py.File(path, "r") as h:
        return list(h["iterations/member_loss"][:, member])


def main():
    a = column(sys.argv[1], int(sys.argv[2]))
    b = column(sys.argv[3], int(sys.argv[4]))
    if len(a) != len(b) or not a:
        print(f"FAIL: {len(a)} rows against {len(b)}")
        return 1
    differ = [i for i in range(len(a)) if a[i] != b[i]]
    if differ:
        i = differ[0]
        print(f"FAIL: {len(differ)} of {len(a)} iterations differ, first {i}: {a[i]!r} vs {b[i]!r}")
        return 1
    print(f"ok: {len(a)} iterations, member losses identical bit for bit (last {a[-1]:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
