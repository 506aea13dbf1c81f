#!/usr/bin/env python3
"""pytorch_reference.py — our own PyTorch training loop equivalent to poet's default run, the
baseline that bench/run.sh compares poet's throughput with.

The ensemble: M reference networks conv(1->20,k3,s2) relu conv(20->40,k3,s2) relu avgpool(6)
linear(40->20) relu linear(20->10); loss = cross entropy of log_softmax(mean_j logits_j); SGD lr 0.5
momentum 0.9; batch 200; fp32; torch.set_num_threads(threads). Three ways to write it:

  graph       one autograd graph holding every member (an nn.ModuleList, logits stacked and
              averaged): the textbook PyTorch formulation.
  grouped     one graph with the members batched: the first conv has 20·M output channels, the
              later layers are grouped convolutions (groups=M; the linear layers as 1x1 grouped
              convs), so each layer is one kernel call for all members.
  per-member  one graph per member (what poet does): each member's forward is its own graph, the
              joint gradient (softmax(mean) - onehot)/(M·B) of the detached logits is computed once
              and fed to each member's backward.

All three compute the same training step. Each also exists with a "-cl" suffix (graph-cl, ...):
the same with channels_last (NHWC) activations and weights, which lets oneDNN (PyTorch's CPU
convolution backend) pick faster kernels; PyTorch's default is NCHW. grouped-cl is left out of the
default list: grouped convolutions stay slow either way and would only lengthen the run.

Each variant is timed over --iterations iterations after
--warmup iterations, best of --repeats; the output lines are machine-readable:
  pytorch <variant> iterations N seconds S images_per_s X member_images_per_s Y loss L
Exits 77 (skipped) when torch cannot be imported.
"""
import argparse
import gzip
import os
import struct
import sys
import time

SKIP = 77


def read_idx(path):
    """An IDX file (raw or .gz) as a uint8 torch tensor of its declared shape."""
    import torch

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: expected an IDX file of unsigned bytes")
    dims = struct.unpack(">" + "I" * ndims, data[4:4 + 4 * ndims])
    payload = bytearray(data[4 + 4 * ndims:])
    return torch.frombuffer(payload, dtype=torch.uint8).reshape(dims)


def load_data(data_dir, mean, std):
    """Normalised training images [N,1,28,28] float32 and labels [N] int64, or random ones."""
    import torch

    if data_dir == "random":
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(2000, 1, 28, 28, generator=gen)  # 10 batches: smoke tests
        labels = torch.randint(0, 10, (2000,), generator=gen)
        return images, labels
    images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    images = (images.float().div_(255.0).sub_(mean).div_(std)).unsqueeze(1).contiguous()
    return images, labels.long()


def reference_member(nn, classes):
    return nn.Sequential(
        nn.Conv2d(1, 20, 3, stride=2), nn.ReLU(),
        nn.Conv2d(20, 40, 3, stride=2), nn.ReLU(),
        nn.AvgPool2d(6), nn.Flatten(),
        nn.Linear(40, 20), nn.ReLU(),
        nn.Linear(20, classes))


def one_graph_step(torch, model, fmt, ensemble_logits):
    """step(x, y) -> loss for a model that is one autograd graph: ensemble_logits(x) gives the
    mean of the members' logits [B, K]; cross entropy of its softmax, SGD with momentum."""
    nn = torch.nn
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)

    def step(x, y):
        x = x.contiguous(memory_format=fmt)
        loss = nn.functional.nll_loss(nn.functional.log_softmax(ensemble_logits(x), 1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def make_graph(torch, members, classes, fmt):
    """One graph: ModuleList of members; returns step(x, y) -> loss."""
    nn = torch.nn
    model = nn.ModuleList(reference_member(nn, classes) for _ in range(members)).to(memory_format=fmt)
    return one_graph_step(torch, model, fmt,
                          lambda x: torch.stack([m(x) for m in model]).mean(0))


def make_grouped(torch, members, classes, fmt):
    """One graph, members batched as channel groups; the same network per member."""
    nn = torch.nn
    M = members
    model = nn.Sequential(
        nn.Conv2d(1, 20 * M, 3, stride=2), nn.ReLU(),
        nn.Conv2d(20 * M, 40 * M, 3, stride=2, groups=M), nn.ReLU(),
        nn.AvgPool2d(6),
        nn.Conv2d(40 * M, 20 * M, 1, groups=M), nn.ReLU(),  # linear(40->20) per member
        nn.Conv2d(20 * M, classes * M, 1, groups=M)).to(memory_format=fmt)  # linear(20->K)
    return one_graph_step(torch, model, fmt,
                          lambda x: model(x).reshape(x.shape[0], M, classes).mean(1))


def make_per_member(torch, members, classes, fmt):
    """One graph per member; the joint gradient computed once from the detached logits."""
    nn = torch.nn
    model = [reference_member(nn, classes).to(memory_format=fmt) for _ in range(members)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9) for m in model]

    def step(x, y):
        x = x.contiguous(memory_format=fmt)
        outs = [m(x) for m in model]  # M graphs, logits [B, K] each
        with torch.no_grad():
            mean = torch.stack(outs).mean(0)
            logp = nn.functional.log_softmax(mean, 1)
            loss = nn.functional.nll_loss(logp, y)
            grad = logp.exp()
            grad[torch.arange(x.shape[0]), y] -= 1
            grad /= members * x.shape[0]  # dL/df_j = (q - p)/(M·B), the same for every member
        for m, o, opt in zip(model, outs, opts):
            opt.zero_grad(set_to_none=True)
            o.backward(grad)
            opt.step()
        return loss.item()

    return step


VARIANTS = {"graph": make_graph, "grouped": make_grouped, "per-member": make_per_member}


def run_variant(torch, name, images, labels, args):
    torch.manual_seed(args.seed)
    base = name[:-3] if name.endswith("-cl") else name
    fmt = torch.channels_last if base != name else torch.contiguous_format
    step = VARIANTS[base](torch, args.members, 10, fmt)
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(images.shape[0], generator=gen)
    per_epoch = images.shape[0] // args.batch
    counter = [0]

    def batch():
        i = counter[0] % per_epoch
        counter[0] += 1
        idx = order[i * args.batch:(i + 1) * args.batch]
        return images[idx], labels[idx]  # gathered each iteration, like poet's batcher

    for _ in range(args.warmup):
        step(*batch())
    best, loss = None, float("nan")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            loss = step(*batch())
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    rate = args.iterations * args.batch / best
    print(f"pytorch {name} iterations {args.iterations} seconds {best:.3f} images_per_s {rate:.1f} "
          f"member_images_per_s {rate * args.members:.1f} loss {loss:.4f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="directory with the Fashion-MNIST IDX .gz files, or 'random'")
    p.add_argument("--variants", default="graph,grouped,per-member,graph-cl,per-member-cl")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"pytorch skipped: python3 cannot import torch ({e}); apt-get install python3-torch")
        return SKIP
    for v in args.variants.split(","):
        if (v[:-3] if v.endswith("-cl") else v) not in VARIANTS:
            print(f"pytorch_reference.py: --variants: unknown variant '{v}', expected one of "
                  f"{', '.join(VARIANTS)}, each optionally with -cl", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    print(f"pytorch {torch.__version__} threads {torch.get_num_threads()} "
          f"mkldnn {torch.backends.mkldnn.is_available()}", flush=True)
    images, labels = load_data(args.data, 0.1307, 0.3081)
    for v in args.variants.split(","):
        run_variant(torch, v, images, labels, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
