#!/usr/bin/python3
"""check_close.py REF_TRAJ TRAJ LOSS_RTOL [REF_CKPT CKPT ATOL RTOL] — two runs equal within fp32
rounding (member groups, issue 18: sharding a batch changes the order of the weight-gradient sums).

Passes only when both trajectories hold the same iterations and every loss satisfies
|loss − ref| <= LOSS_RTOL·|ref|, and, with two checkpoints, every member's parameters, momentum and
buffers satisfy |x − ref| <= ATOL + RTOL·|ref| (needs h5py: Debian's python3-h5py; exit 77 without
it when checkpoints are given). Prints the largest differences either way."""
import sys


def read(path):
    out = {}
    with open(path) as f:
        for line in f:
            it, hexloss = line.split()
            out[int(it)] = float.fromhex(hexloss)
    return out


def main():
    ref, run, rtol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
    failures = []
    if sorted(ref) != sorted(run):
        failures.append(f"iterations differ: {len(ref)} in the reference, {len(run)} here")
    worst, worst_it = 0.0, None
    for it in sorted(set(ref) & set(run)):
        rel = abs(run[it] - ref[it]) / abs(ref[it])
        if rel > worst:
            worst, worst_it = rel, it
        if rel > rtol and len(failures) < 5:
            failures.append(f"iteration {it}: loss {run[it]!r} vs {ref[it]!r} (relative {rel:.3g})")
    print(f"largest relative loss difference {worst:.3g} (iteration {worst_it}), allowed {rtol:g}")
    if len(sys.argv) > 4:
        try:
            import h5py
            import numpy as np
        except ImportError:
            print("skipped: no h5py for the weights")
            sys.exit(77)
        atol, wrtol = float(sys.argv[6]), float(sys.argv[7])
        largest = [0.0, ""]
        with h5py.File(sys.argv[4], "r") as a, h5py.File(sys.argv[5], "r") as b:
            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset) or not name.startswith("members/"):
                    return
                x, y = obj[...].astype(np.float64), b[name][...].astype(np.float64)
                excess = np.abs(y - x) - (atol + wrtol * np.abs(x))
                diff = float(np.max(np.abs(y - x))) if x.size else 0.0
                if diff > largest[0]:
                    largest[:] = [diff, name]
                if x.size and np.max(excess) > 0 and len(failures) < 5:
                    failures.append(f"{name}: largest difference {diff:.3g} beyond {atol:g} + "
                                    f"{wrtol:g}·|ref|")
            a.visititems(visit)
        print(f"largest weight difference {largest[0]:.3g} ({largest[1]}), allowed {atol:g} + "
              f"{wrtol:g}·|ref|")
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


main()
