#!/usr/bin/python3
"""check_log.py LOG TRAJECTORY [MEMBERS] — the loss log against what the run printed.

Passes only when the log holds every iteration of the trajectory exactly once, in order, with the
very same ensemble loss (bit for bit: the trajectory has the loss as a hex float), and, when MEMBERS
is given, a finite member-loss column for each member. Run with Debian's python3 (it has h5py)."""
import math
import sys

import h5py


def main():
    log, trajectory = sys.argv[1], sys.argv[2]
    members = int(sys.argv[3]) if len(sys.argv) > 3 else None
    printed = {}
    with open(trajectory) as f:
        for line in f:
            it, hexloss = line.split()
            printed[int(it)] = float.fromhex(hexloss)  # replays repeat identical lines
    with h5py.File(log, "r") as h:
        iterations = list(h["iterations/iteration"][:])
        losses = list(h["iterations/loss"][:])
        member_loss = h["iterations/member_loss"][:]
    failures = []
    expected = sorted(printed)
    if iterations != expected:
        dup = len(iterations) - len(set(iterations))
        missing = sorted(set(expected) - set(iterations))[:5]
        failures.append(f"log has {len(iterations)} rows ({dup} duplicated), expected iterations "
                        f"{expected[0]}..{expected[-1]}; missing e.g. {missing}")
    else:
        wrong = [i for i, v in zip(iterations, losses) if v != printed[i]]
        if wrong:
            i = wrong[0]
            failures.append(f"{len(wrong)} losses differ from the printed ones, first at iteration "
                            f"{i}: log {losses[iterations.index(i)]!r} printed {printed[i]!r}")
    if members is not None:
        if member_loss.shape != (len(iterations), members):
            failures.append(f"member_loss has shape {member_loss.shape}, expected "
                            f"({len(iterations)}, {members})")
        elif not all(math.isfinite(v) and v > 0 for v in member_loss.flat):
            failures.append("member_loss holds non-positive or non-finite values")
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(f"ok: {len(iterations)} iterations in {log}, each once, losses equal to the printed ones")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
