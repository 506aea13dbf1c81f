#!/usr/bin/env python3
"""pytorch_resnet.py — PyTorch's side of the ResNet ensemble benchmark (issue 13, bench/resnet20.sh).

The same work as `POET_BENCH_INPUT=3x32x32 stack_time bench/resnet20-ensemble.json`: M ResNet-N
members (He et al.'s CIFAR ResNet, option-B projections, convolutions without bias, as poet's built-in resnet-N since the
interop work and as torchvision's), one
batch of B random 3x32x32 images, forward and backward of every member (the joint loss's gradient
(q̄ − p)/(M·B) through the mean of the logits), fp32 on the CPU, in NCHW and/or channels_last.
Prints member-images/s per layout, best of ROUNDS rounds of ITERATIONS steps after WARMUP steps,
and the memory per member: the growth of the resident set's high-water mark (VmHWM, reset through
/proc/self/clear_refs before each layout) from before the members are built to the end, over M
(parameters, gradients, autograd's saved activations, oneDNN's buffers; no optimiser state).
Machine-readable lines:
  pytorch_resnet <layout> <ms/step> <member-images/s> <MiB per member>

usage: pytorch_resnet.py [--depth 20] [--members 4] [--batch 128] [--iterations 10] [--rounds 3]
                         [--warmup 2] [--layout nchw|channels_last|both] [--threads T]
"""
import argparse
import gc
import time

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for s, width in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                blocks.append(Block(cin, width, 2 if s > 0 and b == 0 else 1))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def status_mib(field):
    """A field of /proc/self/status in MiB (0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak():
    """Resets VmHWM to the current resident set (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the rounds")
    p.add_argument("--layout", choices=("nchw", "channels_last", "both"), default="both")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    print("torch %s, %d threads, ResNet-%d x %d members, batch %d, 3x32x32"
          % (torch.__version__, torch.get_num_threads(), a.depth, a.members, a.batch))
    layouts = {"nchw": [torch.contiguous_format], "channels_last": [torch.channels_last],
               "both": [torch.contiguous_format, torch.channels_last]}[a.layout]
    for layout in layouts:
        gc.collect()
        exact = reset_peak()
        baseline = status_mib("VmRSS")
        members = [ResNet(a.depth).to(memory_format=layout) for _ in range(a.members)]
        xin = x.contiguous(memory_format=layout)

        def step():
            logits = torch.stack([m(xin) for m in members])  # [M, B, K]
            loss = nn.functional.cross_entropy(logits.mean(0), y)
            for m in members:
                m.zero_grad(set_to_none=False)
            loss.backward()

        for _ in range(a.warmup):
            step()
        best = float("inf")
        for _ in range(a.rounds):
            t = time.perf_counter()
            for _ in range(a.iterations):
                step()
            best = min(best, (time.perf_counter() - t) / a.iterations)
        per_member = (status_mib("VmHWM") - baseline) / a.members
        name = "channels_last" if layout == torch.channels_last else "NCHW"
        print("  %s %.2f ms/step %.0f member-images/s, %.1f MiB per member%s"
              % (name, 1e3 * best, a.members * a.batch / best, per_member,
                 "" if exact and layout is layouts[0] else
                 " (not alone in this process: run one --layout per process for memory)"))
        print("pytorch_resnet %s %.3f %.1f %.2f"
              % (name, 1e3 * best, a.members * a.batch / best, per_member))
        del members, xin


if __name__ == "__main__":
    main()
