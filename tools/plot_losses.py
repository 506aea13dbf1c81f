#!/usr/bin/python3
"""plot_losses.py — plot poet loss logs (docs/log-format.md) to a PNG.

    tools/plot_losses.py LOG.h5 [LOG2.h5 ...] -o losses.png [--window W] [--log-y] [--no-members]

Top panel: each run's ensemble loss per iteration (faint) and smoothed (bold), and each member's
own smoothed loss (thin, same colour). The gap between the thin lines and the bold one is what
joint training buys. Middle panels (logs of format 2, docs/objectives.md): the decomposition
ensemble CE = mean member CE − diversity, training (smoothed, left) and held-out (at each
evaluation, right) side by side, so a held-out diversity that keeps growing (learner collusion)
shows. Bottom panel (when a log has evaluations): test-set ensemble accuracy (solid) and mean
member accuracy (dashed).

Smoothing is the trailing window mean that `poet report` uses: the mean of the last w values
ending at each iteration, w = T/10 clamped to [1, 100] for a log of T iterations (--window sets
it). Needs h5py and matplotlib (Debian: python3-h5py, python3-matplotlib); draws off-screen.
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import h5py  # noqa: E402

REQUIRED = ["iterations/loss", "iterations/iteration", "iterations/member_loss"]


class LogError(Exception):
    pass


def report_window(rows):
    return max(1, min(100, rows // 10))


def trailing_mean(values, w):
    """Mean of the last w values ending at each index (fewer at the start), along axis 0."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return values
    csum = np.cumsum(values, axis=0)
    out = csum.copy()
    out[w:] = csum[w:] - csum[:-w]
    counts = np.minimum(np.arange(1, len(values) + 1), w)
    return out / counts.reshape((-1,) + (1,) * (values.ndim - 1))


def load(path):
    """One log as a dict of numpy arrays (rows common to every iteration column)."""
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise LogError(f"{path}: cannot open: no such file")
    except OSError:
        raise LogError(f"{path}: cannot open as HDF5 (truncated or not HDF5)")
    with f:
        for name in REQUIRED:
            if name not in f:
                raise LogError(f"{path}: not a poet loss log: missing /{name}")
        rows = min(f[n].shape[0] for n in REQUIRED)
        run = f.attrs.get("run_name", "")
        if isinstance(run, bytes):
            run = run.decode()
        log = {
            "label": run or os.path.basename(path),
            "iteration": f["iterations/iteration"][:rows],
            "loss": f["iterations/loss"][:rows],
            "member_loss": f["iterations/member_loss"][:rows, :],
            "eval_iteration": np.zeros(0),
        }
        if "eval/iteration" in f and f["eval/iteration"].shape[0] > 0:
            e = min(f[n].shape[0] for n in ("eval/iteration", "eval/ensemble_accuracy",
                                            "eval/mean_member_accuracy"))
            log["eval_iteration"] = f["eval/iteration"][:e]
            log["eval_accuracy"] = f["eval/ensemble_accuracy"][:e]
            log["eval_member_accuracy"] = f["eval/mean_member_accuracy"][:e]
            if "eval/mean_member_nll" in f and "eval/ensemble_nll" in f:
                e2 = min(e, f["eval/mean_member_nll"].shape[0], f["eval/ensemble_nll"].shape[0])
                log["eval_decomposition"] = (f["eval/iteration"][:e2], f["eval/ensemble_nll"][:e2],
                                             f["eval/mean_member_nll"][:e2])
        if "iterations/mean_member_loss" in f:
            r2 = min(rows, f["iterations/mean_member_loss"].shape[0])
            log["mean_member_loss"] = f["iterations/mean_member_loss"][:r2]
    return log


def plot_decomposition(ax_train, ax_eval, logs, window, colours):
    """Ensemble CE (solid), mean member CE (dashed), diversity (dotted): train | held-out."""
    for k, log in enumerate(logs):
        colour = colours[k % len(colours)]
        if "mean_member_loss" in log:
            n = len(log["mean_member_loss"])
            it = log["iteration"][:n]
            w = window or report_window(len(log["iteration"]))
            ens = trailing_mean(log["loss"][:n], w)
            mem = trailing_mean(log["mean_member_loss"], w)
            ax_train.plot(it, ens, "-", color=colour, label=f"{log['label']}: ensemble CE")
            ax_train.plot(it, mem, "--", color=colour, label=f"{log['label']}: mean member CE")
            ax_train.plot(it, mem - ens, ":", color=colour, label=f"{log['label']}: diversity")
        if "eval_decomposition" in log:
            it, ens, mem = log["eval_decomposition"]
            ax_eval.plot(it, ens, "o-", color=colour, label=f"{log['label']}: ensemble NLL")
            ax_eval.plot(it, mem, "s--", color=colour, label=f"{log['label']}: mean member NLL")
            ax_eval.plot(it, mem - ens, "^:", color=colour, label=f"{log['label']}: diversity")
    ax_train.set_title("train (smoothed)")
    ax_eval.set_title("held-out (each evaluation)")
    ax_train.set_ylabel("nats")
    for a in (ax_train, ax_eval):
        a.grid(True, alpha=0.3)
        a.legend(fontsize="x-small")


def plot(logs, out, window, log_y, members):
    with_eval = any(len(log["eval_iteration"]) for log in logs)
    decomposed = any("mean_member_loss" in log for log in logs)
    n_rows = 1 + decomposed + with_eval
    fig = plt.figure(figsize=(9, 3.5 * n_rows + 1))
    grid = fig.add_gridspec(n_rows, 2)
    ax = fig.add_subplot(grid[0, :])
    axes = [[ax]]
    if decomposed:
        ax_train = fig.add_subplot(grid[1, 0], sharex=ax)
        ax_eval = fig.add_subplot(grid[1, 1], sharex=ax, sharey=ax_train)
    if with_eval:
        axes.append([fig.add_subplot(grid[n_rows - 1, :], sharex=ax)])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, log in enumerate(logs):
        colour = colours[k % len(colours)]
        it = log["iteration"]
        w = window or report_window(len(it))
        ax.plot(it, log["loss"], color=colour, alpha=0.2, linewidth=0.8)
        ax.plot(it, trailing_mean(log["loss"], w), color=colour, linewidth=2.0,
                label=f"{log['label']}: ensemble (mean of {w})")
        if members and log["member_loss"].shape[1] > 0:
            smoothed = trailing_mean(log["member_loss"], w)
            for j in range(smoothed.shape[1]):
                ax.plot(it, smoothed[:, j], color=colour, linewidth=0.6, alpha=0.6,
                        label=f"{log['label']}: members" if j == 0 else None)
    ax.set_ylabel("cross-entropy loss (batch mean)")
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("poet training loss: ensemble (bold) vs members (thin)")
    if decomposed:
        plot_decomposition(ax_train, ax_eval, logs, window, colours)
    if with_eval:
        ax2 = axes[1][0]
        for k, log in enumerate(logs):
            if not len(log["eval_iteration"]):
                continue
            colour = colours[k % len(colours)]
            ax2.plot(log["eval_iteration"], log["eval_accuracy"], "o-", color=colour,
                     label=f"{log['label']}: ensemble")
            ax2.plot(log["eval_iteration"], log["eval_member_accuracy"], "s--", color=colour,
                     alpha=0.7, label=f"{log['label']}: mean member")
        ax2.set_ylabel("test accuracy")
        ax2.grid(True, alpha=0.3)
        ax2.legend(fontsize="small")
    axes[-1][0].set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv):
    parser = argparse.ArgumentParser(description="Plot poet loss logs to a PNG.")
    parser.add_argument("logs", nargs="+", metavar="LOG.h5")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.png")
    parser.add_argument("--window", type=int, default=0,
                        help="smoothing window (default: rows/10 in [1, 100], as poet report)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    parser.add_argument("--no-members", action="store_true", help="leave out member losses")
    args = parser.parse_args(argv)
    if args.window < 0:
        parser.error("--window must be >= 1")
    try:
        logs = [load(path) for path in args.logs]
    except LogError as e:
        print(f"plot_losses: {e}", file=sys.stderr)
        return 1
    plot(logs, args.output, args.window, args.log_y, not args.no_members)
    decomposed = any("mean_member_loss" in log for log in logs)
    print(f"plot_losses: wrote {args.output}" +
          (" (with the decomposition: train and held-out)" if decomposed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
