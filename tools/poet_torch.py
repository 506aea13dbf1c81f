#!/usr/bin/python3
"""poet_torch — poet checkpoints to PyTorch and back (docs/pytorch.md).

    tools/poet_torch.py to-torch CKPT [-o OUT.pt]
    tools/poet_torch.py from-torch IN.pt -o CKPT [--iteration N] [--config CONFIG.json]
    tools/poet_torch.py eval CKPT [--config CONFIG.json] [--limit N]

As a module (tools/ on sys.path):

    import poet_torch
    members, config = poet_torch.load_ensemble("checkpoints/run/ckpt-00000300.h5")
    logits = poet_torch.ensemble_logits(members, x)        # x: [B, C, H, W] float32, normalised
    probs = logits.softmax(1)                              # the ensemble's prediction q̄

Legend: M = members, B = batch, C/H/W = channels/height/width, K = classes.

A poet checkpoint (docs/checkpoint-format.md) already stores every tensor under its PyTorch name and
shape (conv<i>.weight OIHW, fc<i>.weight [out, in], ...), so a member is an nn.Sequential of the
matching torch layers whose state_dict keys are exactly the dataset names, and the weights are the
float32 arrays copied bit for bit. The architecture comes from the config JSON stored in the
checkpoint, read the way src/config.c and src/arch.c read it (tools/poet_torch_arch.py).

Uses only Debian's python3-torch, python3-h5py and python3-numpy.
"""
import argparse
import collections
import gzip
import math
import os
import re
import sys
import zlib

import numpy as np

import h5py

from poet_torch_arch import (DEFAULTS, DESCRIBE_MAX, Layer, PoetTorchError,  # noqa: F401
                             _builtin_arch, config_get, describe, member_archs, parse_config,
                             plan, reference_arch)

FORMAT_VERSION = 1  # POET_CHECKPOINT_FORMAT_VERSION, the checkpoint layout this tool reads/writes
TORCH_FORMAT = "poet-torch"  # the "format" key of the dicts to-torch saves
TORCH_FORMAT_VERSION = 1
RNG_DESCRIPTION = "counter-based SplitMix64; batch order = f(seed, epoch)"
KINDS = ("params", "momentum")  # the order in the file, in member layout and in the checksum
BUFFERS = "buffers"  # batchnorm's running statistics, after KINDS (only members with batchnorm)
# The root attributes, in the order src/checkpoint.c writes them, with their HDF5 types.
ROOT_ATTRS = (("format_version", "<i4"), ("poet_version", "str"), ("iteration", "<i8"),
              ("epoch", "<i8"), ("position", "<i8"), ("total_iterations", "<i8"),
              ("seed", "<u8"), ("rng", "str"), ("members", "<i4"), ("ranks_written", "<i4"),
              ("input_shape", "<i4"), ("config", "str"))


def _torch():
    # Imported on first use, so the checkpoint-only parts (and --help) work without torch.
    import torch
    return torch


# ---------------------------------------------------------------------------------------------
# Members as torch modules (the architectures themselves: tools/poet_torch_arch.py)
# ---------------------------------------------------------------------------------------------

def _is_chain(arch):
    """A plain chain of conv/relu/pool/linear without ids: an nn.Sequential member."""
    return all(s.kind in ("conv", "relu", "avg_pool", "max_pool", "linear") and not s.inputs
               and not s.id for s in arch)


def build_member(arch, input_shape, classes):
    """An nn.Module computing exactly what poet's member computes, its parameters and buffers
    named as in the checkpoint. A plain chain is an nn.Sequential (conv1, conv2, ..., fc1, ...;
    layers without parameters are relu<i>, avg_pool<i>, max_pool<i>, flatten<i>, i = the poet
    layer index); a graph (add, batchnorm, ids, inputs) a PoetGraph, whose modules sit at their
    tensors' dotted names (layer1.0.conv1). Parameters get PyTorch's default initialisation, which
    has poet's distribution U(±1/sqrt(fan_in)); batchnorm starts at weight 1, bias 0, running
    mean 0 and variance 1 as in poet. member.poet_tensor_names lists the parameter names in member
    layout (the optimizer's and the checkpoint's order)."""
    torch = _torch()
    nn = torch.nn
    layers, tensors, _ = plan(arch, input_shape, classes)
    if not _is_chain(arch):
        member = _graph_class()(layers)
    else:
        modules = collections.OrderedDict()
        n_conv = n_fc = 0
        flat = False  # the activation is [B, features] (after a linear), not [B, C, H, W]
        for i, (s, _inputs, (c, h, w), _out) in enumerate(layers):
            kind = s.kind
            if kind != "linear" and kind != "relu" and flat:
                # A conv or pool after a linear sees its C x 1 x 1 output, as in poet.
                modules["unflatten%d" % i] = nn.Unflatten(1, (c, h, w))
                flat = False
            if kind == "conv":
                n_conv += 1
                out, k, stride, pad, bias = s.args
                modules["conv%d" % n_conv] = nn.Conv2d(c, out, k, stride=stride, padding=pad,
                                                       bias=bias)
            elif kind == "relu":
                modules["relu%d" % i] = nn.ReLU()
            elif kind == "linear":
                if not flat:  # PyTorch's flatten of NCHW: the C·H·W order poet's fc weights use
                    modules["flatten%d" % i] = nn.Flatten(1)
                    flat = True
                n_fc += 1
                modules["fc%d" % n_fc] = nn.Linear(c * h * w, s.args[0], bias=s.args[1])
            elif s.args[0] == "global":
                pool = nn.AvgPool2d if kind == "avg_pool" else nn.MaxPool2d
                modules["%s%d" % (kind, i)] = pool((h, w))
            elif kind == "avg_pool":
                # count_include_pad=True and floor mode: poet's dnnl_pooling_avg_include_padding.
                modules["avg_pool%d" % i] = nn.AvgPool2d(*s.args, count_include_pad=True)
            else:
                modules["max_pool%d" % i] = nn.MaxPool2d(*s.args)
        if not flat:  # the network ended in K x 1 x 1 (a conv or pool): logits are [B, K]
            modules["flatten%d" % len(layers)] = nn.Flatten(1)
        member = nn.Sequential(modules)
    member.poet_architecture = describe(arch)
    member.poet_tensor_names = [name for name, _ in tensors]
    return member


_GRAPH = []


def _graph_class():
    """PoetGraph, defined on first use (torch is imported lazily)."""
    if _GRAPH:
        return _GRAPH[0]
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class PoetGraph(nn.Module):
        """A poet member network with named inputs (add) and batch normalisation. Each layer with
        parameters is a torch module at its tensors' dotted name (a "layer1.0.conv1" id gives
        self.layer1[0].conv1: nested plain containers), so state_dict() has the checkpoint's
        names, running_mean/running_var/num_batches_tracked included. forward runs the layers in
        poet's order; every activation is [B, C, H, W] (a linear layer's output is [B, out, 1,
        1], as poet sees it) and the logits [B, K]. BatchNorm2d has poet's semantics: eps 1e-5,
        momentum 0.1, batch statistics in train(), running statistics in eval()."""

        def __init__(self, layers):
            super().__init__()
            self.poet_ops = []  # (kind, module path or None, inputs, args, input shape)
            count = {"conv": 0, "linear": 0, "batchnorm": 0}
            for s, inputs, (c, h, w), _out in layers:
                path = None
                if s.kind in count:
                    count[s.kind] += 1
                    path = s.id or "%s%d" % ({"conv": "conv", "linear": "fc",
                                              "batchnorm": "bn"}[s.kind], count[s.kind])
                if s.kind == "conv":
                    out, k, stride, pad, bias = s.args
                    self._attach(path, nn.Conv2d(c, out, k, stride=stride, padding=pad,
                                                 bias=bias))
                elif s.kind == "linear":
                    self._attach(path, nn.Linear(c * h * w, s.args[0], bias=s.args[1]))
                elif s.kind == "batchnorm":
                    self._attach(path, nn.BatchNorm2d(c, eps=1e-5, momentum=0.1))
                self.poet_ops.append((s.kind, path, inputs, s.args, (c, h, w)))

        def _attach(self, path, module):
            parent, parts = self, path.split(".")
            for part in parts[:-1]:
                child = parent._modules.get(part)
                if child is None:
                    child = nn.Module()
                    parent.add_module(part, child)
                elif type(child) is not nn.Module:
                    raise PoetTorchError("tensor name %s: %s is a layer and a container"
                                         % (path, part))
                parent = child
            if parts[-1] in parent._modules:
                raise PoetTorchError("two layers are named %s" % path)
            parent.add_module(parts[-1], module)

        def forward(self, x):
            outs = []
            for kind, path, inputs, args, (c, h, w) in self.poet_ops:
                y = x if inputs[0] < 0 else outs[inputs[0]]
                if kind == "add":
                    for j in inputs[1:]:
                        y = y + (x if j < 0 else outs[j])
                elif kind == "relu":
                    y = F.relu(y)
                elif kind in ("conv", "batchnorm"):
                    y = self.get_submodule(path)(y)
                elif kind == "linear":
                    y = self.get_submodule(path)(y.flatten(1))[:, :, None, None]
                elif args[0] == "global":
                    y = (F.avg_pool2d if kind == "avg_pool" else F.max_pool2d)(y, (h, w))
                elif kind == "avg_pool":
                    y = F.avg_pool2d(y, *args, count_include_pad=True)
                else:
                    y = F.max_pool2d(y, *args)
                outs.append(y)
            return outs[-1].flatten(1)

    _GRAPH.append(PoetGraph)
    return PoetGraph


def member_parameters(member):
    """A member's parameters in member layout (the checkpoint's and poet's optimizer order)."""
    names = getattr(member, "poet_tensor_names", None)
    if names is None:
        return list(member.parameters())
    params = dict(member.named_parameters())
    return [params[n] for n in names]


def build_ensemble(config, input_shape):
    """Fresh PyTorch-initialised members for a config (a dict or JSON text)."""
    if isinstance(config, str):
        config = parse_config(config, "config")
    archs, member_arch = member_archs(config)
    classes = int(config_get(config, "data.classes"))
    return [build_member(archs[a], input_shape, classes) for a in member_arch]


def ensemble_logits(members, x):
    """mean_j f_j(x): softmax of it is the product-of-experts prediction q̄ poet trains."""
    torch = _torch()
    return torch.stack([m(x) for m in members]).mean(0)


# ---------------------------------------------------------------------------------------------
# Training state: learning rate, optimizer, data order (src/optim.c, src/rng.c, src/data.c)
# ---------------------------------------------------------------------------------------------

def lr_at(config, iteration, total):
    """poet_lr_at: the learning rate of the step at `iteration` (0-based) of `total`."""
    lr = float(config_get(config, "training.lr"))
    schedule = config_get(config, "training.schedule")
    if schedule == "step":
        step = int(config_get(config, "training.step_size"))
        return lr if step <= 0 else lr * math.pow(float(config_get(config, "training.gamma")),
                                                  float(iteration // step))
    if schedule == "cosine":
        if total <= 0:
            return lr
        lo = float(config_get(config, "training.min_lr"))
        t = float(min(iteration, total))
        return lo + (lr - lo) * (1 + math.cos(math.pi * t / float(total))) / 2
    return lr


def make_optimizer(members, config, iteration=0, total=0, state=None, exact=False):
    """torch.optim.SGD over every member's parameters (member 0's first, each member's in
    parameters() order = checkpoint layer order), with poet's hyperparameters and the learning
    rate of the step at `iteration`; `state` (an optimizer.state_dict()) is loaded when given.
    exact=True gives PoetSGD instead, whose steps round as poet's do (bitwise)."""
    torch = _torch()
    params = [p for m in members for p in member_parameters(m)]
    kind = poet_sgd if exact else torch.optim.SGD
    extra = {} if exact else {"dampening": 0}
    opt = kind(params, lr=lr_at(config, iteration, total),
               momentum=float(config_get(config, "training.momentum")),
               weight_decay=float(config_get(config, "training.weight_decay")),
               nesterov=bool(config_get(config, "training.nesterov")), **extra)
    if state is not None:
        opt.load_state_dict(state)
    return opt


def poet_sgd(params, lr, momentum=0.9, weight_decay=0.0, nesterov=False):
    """PoetSGD: torch.optim.SGD with poet's rounding (see make_optimizer(exact=True))."""
    torch = _torch()

    class PoetSGD(torch.optim.SGD):
        """torch.optim.SGD (same hyperparameters, same state_dict with "momentum_buffer") whose
        step does src/optim.c's float operations in its order, each rounded on its own:
            g = grad + wd·p;  v = μ·v + g;  p = p − lr·(nesterov ? g + μ·v : v)
        torch.optim.SGD computes the same formulas but fuses p + (−lr)·v (and grad + wd·p, and
        g + μ·v for Nesterov) into one multiply-add with a single rounding, so its steps differ
        from poet's by an ulp in a few percent of the elements; this one's are poet's bit for
        bit. A missing momentum buffer is zero, as in poet (v = μ·0 + g)."""

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    v = state["momentum_buffer"]
                    g = p.grad + p * wd  # two roundings, as poet's grads[i] + wd * params[i]
                    v.mul_(mu).add_(g)   # add_ of alpha 1 is a plain add: mu*v rounded, then + g
                    d = g + v * mu if group["nesterov"] else v
                    p.sub_(d * lr)
            return loss

    return PoetSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                   dampening=0)


_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
STREAM_SHUFFLE = 1


def _mix(z):
    z = np.asarray(z, dtype=np.uint64)
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_u64(seed, stream, counters):
    """poet_rng_u64 for an array of counters (uint64 arithmetic wraps as in C)."""
    with np.errstate(over="ignore"):
        z = _mix(np.asarray(counters, dtype=np.uint64) + np.uint64(_GAMMA))
        z = _mix(z ^ np.uint64((stream + 2 * _GAMMA) & _MASK))
        return _mix(z ^ np.uint64((seed + 3 * _GAMMA) & _MASK))


def permutation(seed, epoch, n):
    """poet_rng_permutation: epoch `epoch`'s order of n training images."""
    base = (int(epoch) << 40) & _MASK
    sizes = np.arange(n, 1, -1, dtype=np.uint64)  # Fisher-Yates draws below(i) for i = n .. 2
    draws = rng_u64(seed, STREAM_SHUFFLE, base + np.arange(n - 1, dtype=np.uint64))
    rem = (np.uint64(0) - sizes) % sizes  # values below 2^64 mod i are drawn again
    if np.any(draws < rem):  # a rejection (probability < n^2 / 2^64): replay one draw at a time
        picks, counter = [], base
        for i in range(n, 1, -1):
            while True:
                r = int(rng_u64(seed, STREAM_SHUFFLE, [counter])[0])
                counter += 1
                if r >= (2 ** 64 - i) % i:
                    break
            picks.append(r % i)
    else:
        picks = (draws % sizes).tolist()
    perm = list(range(n))
    for i, j in zip(range(n, 1, -1), picks):
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return np.array(perm, dtype=np.int64)


def batch_indices(config, iteration, train_count):
    """The training-set indices of the batch poet trains on at `iteration` (poet_batcher_fill)."""
    batch = int(config_get(config, "training.batch_size"))
    per_epoch = train_count // batch
    epoch, first = iteration // per_epoch, (iteration % per_epoch) * batch
    if config_get(config, "data.shuffle"):
        order = permutation(int(config_get(config, "training.seed")), epoch, train_count)
    else:
        order = np.arange(train_count)
    return order[first:first + batch]


def _idx_open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def idx_header(path):
    """The dimensions of an IDX file (raw or gzip), e.g. [N, H, W] for images."""
    try:
        with _idx_open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] != 0x08:
                raise PoetTorchError("%s: not an IDX unsigned-byte file (bad magic)" % path)
            return [int.from_bytes(f.read(4), "big") for _ in range(head[3])]
    except OSError as e:
        raise PoetTorchError("%s: cannot read: %s" % (path, e.strerror or e))


def load_idx(path):
    """An IDX file as a uint8 array of its dimensions."""
    dims = idx_header(path)
    with _idx_open(path) as f:
        f.seek(4 + 4 * len(dims))
        count = int(np.prod(dims))
        data = np.frombuffer(f.read(count), dtype=np.uint8)
    if data.size != count:
        raise PoetTorchError("%s: truncated: expected %d bytes, got %d" % (path, count, data.size))
    return data.reshape(dims)


def normalise(images, config):
    """uint8 [N, H, W] images as poet feeds them: float32 [N, 1, H, W] of (x/255 - mean)/std,
    each byte value computed once in double and rounded to float (src/data.c)."""
    mean, std = config_get(config, "data.mean"), config_get(config, "data.std")
    if not isinstance(mean, (int, float)) or not isinstance(std, (int, float)):
        raise PoetTorchError("data.mean/data.std are %r/%r: give numbers" % (mean, std))
    table = ((np.arange(256, dtype=np.float64) / 255.0 - mean) / std).astype(np.float32)
    return table[images][:, None, :, :]


# ---------------------------------------------------------------------------------------------
# Reading a checkpoint
# ---------------------------------------------------------------------------------------------

def _attrs(obj):
    """Every attribute of an HDF5 object: str for strings, numpy values (dtype kept) otherwise."""
    out = collections.OrderedDict()
    for name in obj.attrs:
        value = obj.attrs[name]
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        out[name] = value
    return out


def _order_flags(group):
    """(link, attribute) creation-order flags of a group. The root group is opened as a group:
    the file's own creation plist does not report them."""
    plist = h5py.h5g.open(group.id, b".").get_create_plist()
    return (plist.get_link_creation_order(), plist.get_attr_creation_order())


def checksum(params, momentum, tensors, buffers=None, states=()):
    """/checksums[j]: zlib CRC-32 of the member's params, momentum and (with batchnorm) buffers,
    each tensor in layer order, float32 little-endian C order (checksum_floats in
    src/checkpoint.c)."""
    crc = 0
    for group, names in ((params, tensors), (momentum, tensors), (buffers, states)):
        for name, _shape in names:
            crc = zlib.crc32(np.ascontiguousarray(group[name], dtype="<f4").tobytes(), crc)
    return crc


def _tracked_names(states):
    """The state_dict keys of PyTorch's num_batches_tracked, one per batchnorm layer."""
    return [n[:-len("running_mean")] + "num_batches_tracked" for n, _ in states
            if n.endswith(".running_mean")]


def read_checkpoint(path, verify=True):
    """Everything in a poet checkpoint: {"attrs": {hdf5 path: attributes}, "config": text,
    "input_shape", "members": [{"params", "momentum", "buffers": OrderedDict name -> float32
    array, "tracked": num_batches_tracked}], "archs", "member_arch", "checksums"}. Checks what poet checks (format version, shapes,
    checksums) and raises PoetTorchError naming the file."""
    if not os.path.isfile(path):
        raise PoetTorchError("%s: cannot open checkpoint: %s" % (
            path, "No such file or directory" if not os.path.exists(path) else "not a file"))
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise PoetTorchError("%s: cannot open as HDF5 (truncated or not a checkpoint): %s"
                             % (path, e))
    with f:
        if "format_version" not in f.attrs:
            raise PoetTorchError("%s: not a poet checkpoint (no format_version attribute)" % path)
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            raise PoetTorchError("%s: format_version is %d, this tool reads version %d"
                                 % (path, int(f.attrs["format_version"]), FORMAT_VERSION))
        for name, _ in ROOT_ATTRS:
            if name not in f.attrs:
                raise PoetTorchError("%s: attribute %s of / is missing" % (path, name))
        attrs = collections.OrderedDict()
        attrs["/"] = _attrs(f)
        layout = {"/": _order_flags(f)}
        config_text = attrs["/"]["config"]
        config = parse_config(config_text, path)
        try:
            archs, member_arch = member_archs(config)
        except PoetTorchError as e:
            raise PoetTorchError("%s: stored config: %s" % (path, e))
        classes = int(config_get(config, "data.classes"))
        input_shape = [int(v) for v in f.attrs["input_shape"]]
        M = int(f.attrs["members"])
        if M != len(member_arch):
            raise PoetTorchError("%s: attribute members is %d but the stored config has %d"
                                 % (path, M, len(member_arch)))
        if "checksums" not in f or f["checksums"].shape != (M,):
            raise PoetTorchError("%s: dataset /checksums is missing or has not %d entries"
                                 % (path, M))
        stored = [int(v) for v in f["checksums"][()]]
        members = []
        for j in range(M):
            arch = archs[member_arch[j]]
            _, tensors, states = plan(arch, input_shape, classes)
            gname = "members/%04d" % j
            if gname not in f:
                raise PoetTorchError("%s: group /%s is missing" % (path, gname))
            group = f[gname]
            for obj_path in ["members", gname] + ["%s/%s" % (gname, k)
                                                  for k in KINDS + (BUFFERS,)]:
                if obj_path in f:
                    layout["/" + obj_path] = _order_flags(f[obj_path])
                    if len(f[obj_path].attrs):
                        attrs["/" + obj_path] = _attrs(f[obj_path])
            described = group.attrs.get("architecture")
            if described is not None and described != describe(arch):
                raise PoetTorchError("%s: member %d architecture attribute %r differs from its "
                                     "config's %r" % (path, j, described, describe(arch)))
            member = {"arch": arch, "tensors": tensors, "states": states, "tracked": 0}
            if states:
                if "num_batches_tracked" not in group.attrs:
                    raise PoetTorchError("%s: attribute num_batches_tracked of /%s is missing"
                                         % (path, gname))
                member["tracked"] = int(group.attrs["num_batches_tracked"])
            for kind, names in ((KINDS[0], tensors), (KINDS[1], tensors), (BUFFERS, states)):
                data = collections.OrderedDict()
                for name, shape in names:
                    dpath = "%s/%s/%s" % (gname, kind, name)
                    if dpath not in f:
                        raise PoetTorchError("%s: dataset /%s is missing" % (path, dpath))
                    dset = f[dpath]
                    if dset.shape != shape:
                        raise PoetTorchError("%s: dataset /%s has shape %s, expected %s"
                                             % (path, dpath, dset.shape, shape))
                    data[name] = dset.astype("<f4")[()]  # float32 as stored: no conversion
                member[kind] = data
            if verify:
                crc = checksum(member["params"], member["momentum"], tensors, member[BUFFERS],
                               states)
                if crc != stored[j]:
                    raise PoetTorchError("%s: member %d checksum mismatch: stored 0x%08x, computed "
                                         "0x%08x (corrupt data)" % (path, j, stored[j], crc))
            members.append(member)
    return {"attrs": attrs, "layout": layout, "config": config_text, "config_dict": config,
            "input_shape": input_shape,
            "classes": classes, "members": members, "archs": archs, "member_arch": member_arch,
            "checksums": stored}


def _load_state(member, m):
    """Copies a checkpoint member's float32 parameters and running statistics into a member bit
    for bit, and its num_batches_tracked into every batchnorm layer."""
    torch = _torch()
    arrays = list(m["params"].items()) + list(m[BUFFERS].items())
    state = collections.OrderedDict((name, torch.from_numpy(np.array(a, dtype="<f4", copy=True)))
                                    for name, a in arrays)
    for name in _tracked_names(m["states"]):
        state[name] = torch.tensor(m["tracked"], dtype=torch.int64)
    member.load_state_dict(state, strict=True)


def load_ensemble(path, verify=True):
    """(members, config): one nn.Module per member with the checkpoint's weights (bitwise), in
    eval mode, and the stored config as a dict."""
    ck = read_checkpoint(path, verify)
    members = []
    for m in ck["members"]:
        member = build_member(m["arch"], ck["input_shape"], ck["classes"])
        _load_state(member, m)
        members.append(member.eval())
    return members, ck["config_dict"]


def to_torch(path, verify=True):
    """The dict `to-torch` saves: members' state_dicts, the config, the iteration, the optimizer
    state in optimizer.state_dict() form, and every checkpoint attribute (for a bitwise way
    back)."""
    torch = _torch()
    ck = read_checkpoint(path, verify)
    root = ck["attrs"]["/"]
    config = ck["config_dict"]
    iteration, total = int(root["iteration"]), int(root["total_iterations"])
    members = []
    for m in ck["members"]:
        member = build_member(m["arch"], ck["input_shape"], ck["classes"])
        _load_state(member, m)
        members.append(member)
    opt = make_optimizer(members, config, iteration, total)
    params = [p for member in members for p in member_parameters(member)]
    buffers = [torch.from_numpy(np.array(a, dtype="<f4", copy=True))
               for m in ck["members"] for a in m["momentum"].values()]
    for p, buf in zip(params, buffers):
        opt.state[p]["momentum_buffer"] = buf
    return {"format": TORCH_FORMAT, "format_version": TORCH_FORMAT_VERSION,
            "config": ck["config"], "iteration": iteration, "total_iterations": total,
            "input_shape": ck["input_shape"], "classes": ck["classes"],
            "architectures": [describe(m["arch"]) for m in ck["members"]],
            "members": [member.state_dict() for member in members],
            "optimizer": opt.state_dict(), "poet_attrs": ck["attrs"], "poet_layout": ck["layout"]}


# ---------------------------------------------------------------------------------------------
# Writing a checkpoint
# ---------------------------------------------------------------------------------------------

def _poet_version():
    """The version of the poet next to this tool (CMakeLists.txt), else 0.1.0."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                               "CMakeLists.txt")) as f:
            found = re.search(r"project\(poet VERSION ([0-9.]+)", f.read())
        return found.group(1) if found else "0.1.0"
    except OSError:
        return "0.1.0"


def _put_attr(obj, name, value, dtype=None):
    """A string as a variable-length UTF-8 scalar (what poet reads), numbers with their dtype."""
    if isinstance(value, str):
        obj.attrs.create(name, value, dtype=h5py.string_dtype("utf-8"))
        return
    value = np.asarray(value, dtype=dtype if dtype else None)
    obj.attrs.create(name, value, dtype=value.dtype.newbyteorder("<"))


# Creation-order flags (link order, attribute order) of each group as src/checkpoint.c makes them:
# the tensor groups track and index link creation order, so h5py and h5dump --sort_by=creation_order
# list tensors in layer order. A checkpoint read here records its own flags, which win.
TRACKED = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED


def _default_layout(path):
    return (TRACKED, 0) if path.rsplit("/", 1)[-1] in KINDS + (BUFFERS,) else (0, 0)


def _group(parent, name, layout):
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_link_creation_order(layout[0])
    gcpl.set_attr_creation_order(layout[1])
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def _put_attrs(obj, computed, stored):
    """Writes `computed` (name -> (value, dtype or None)) and the other `stored` attributes; in
    the stored order where there is one (it is the creation order when the group tracks it)."""
    names = list(stored) + [n for n in computed if n not in stored]
    for name in names:
        if name in computed:
            _put_attr(obj, name, *computed[name])
        else:
            _put_attr(obj, name, stored[name])


def _write_tensor(group, name, array):
    data = np.ascontiguousarray(array, dtype="<f4")
    space = h5py.h5s.create_simple(data.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # every element is written
    dset = h5py.h5d.create(group.id, name.encode(), h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def write_checkpoint(path, config_text, members, root_attrs, extra_attrs=None, layout=None):
    """Writes a checkpoint poet reads: `members` is [(params, momentum[, buffers,
    num_batches_tracked])], params, momentum and buffers (batchnorm's running statistics, for
    members with batchnorm) each a mapping name -> float32 array; `root_attrs` has every ROOT_ATTRS entry; `extra_attrs` maps an HDF5
    object path to its other attributes (and their order) to restore; `layout` maps a group path
    to its (link, attribute) creation-order flags (default: checkpoint.c's)."""
    config = parse_config(config_text, path)
    archs, member_arch = member_archs(config)
    classes = int(config_get(config, "data.classes"))
    if len(members) != len(member_arch):
        raise PoetTorchError("%d members given, the config has %d" % (len(members),
                                                                      len(member_arch)))
    tmp = path + ".tmp"
    try:
        _write_file(tmp, members, root_attrs, extra_attrs or {}, layout or {}, archs, member_arch,
                    classes)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def _write_file(tmp, members, root_attrs, extra_attrs, layout, archs, member_arch, classes):
    def flags(path):
        return tuple(layout.get(path, _default_layout(path)))

    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_link_creation_order(flags("/")[0])
    fcpl.set_attr_creation_order(flags("/")[1])
    try:
        f = h5py.File(h5py.h5f.create(tmp.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl))
    except (OSError, ValueError) as e:
        raise PoetTorchError("%s: cannot create: %s" % (tmp, e))
    with f:
        types = dict(ROOT_ATTRS)
        _put_attrs(f, {name: (root_attrs[name], None if types[name] == "str" else types[name])
                       for name, _ in ROOT_ATTRS}, extra_attrs.get("/", {}))
        group_members = _group(f, "members", flags("/members"))
        _put_attrs(group_members, {}, extra_attrs.get("/members", {}))
        crcs = []
        for j, member in enumerate(members):
            params, momentum, buffers, tracked = (tuple(member) + ({}, 0))[:4]
            arch = archs[member_arch[j]]
            _, tensors, states = plan(arch, root_attrs["input_shape"], classes)
            gpath = "/members/%04d" % j
            g = _group(group_members, "%04d" % j, flags(gpath))
            computed = {"architecture": (describe(arch), None),
                        "arch_index": (member_arch[j], "<i4")}
            stored = dict(extra_attrs.get(gpath, {}))
            if states:  # src/checkpoint.c: only members with batchnorm
                computed["num_batches_tracked"] = (int(tracked), "<i8")
            else:
                stored.pop("num_batches_tracked", None)
            _put_attrs(g, computed, stored)
            for kind, data, names in ((KINDS[0], params, tensors), (KINDS[1], momentum, tensors),
                                      (BUFFERS, buffers, states)):
                if not names and kind == BUFFERS:
                    continue
                kpath = "%s/%s" % (gpath, kind)
                kg = _group(g, kind, flags(kpath))
                _put_attrs(kg, {}, extra_attrs.get(kpath, {}))
                for name, shape in names:
                    if name not in data:
                        raise PoetTorchError("member %d: no tensor %s (%s)" % (j, name, kind))
                    if tuple(data[name].shape) != shape:
                        raise PoetTorchError("member %d: %s %s has shape %s, expected %s"
                                             % (j, kind, name, tuple(data[name].shape), shape))
                    _write_tensor(kg, name, data[name])
            crcs.append(checksum(params, momentum, tensors, buffers, states))
        f.create_dataset("checksums", data=np.array(crcs, dtype="<u4"), dtype="<u4")


def _as_float32(tensor, what):
    """A torch tensor (or numpy array) as float32 numpy, refusing other dtypes: poet stores float32
    and a silent conversion would not be bitwise."""
    a = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    if a.dtype != np.float32:
        raise PoetTorchError("%s has dtype %s: poet stores float32 (convert with .float())"
                             % (what, a.dtype))
    return a


def from_torch(saved, path, iteration=None, config_text=None):
    """Writes a poet checkpoint from a dict as to-torch saves it ("members" and "config" are
    required; "optimizer", "iteration", "input_shape", "poet_attrs" optional). Momentum absent
    from the optimizer state is zero (what poet starts with). Returns the root attributes."""
    if not isinstance(saved, dict) or "members" not in saved:
        raise PoetTorchError("expected a dict with \"members\" (a list of state_dicts) and "
                             "\"config\", as to-torch saves")
    config_text = config_text if config_text is not None else saved.get("config")
    if not isinstance(config_text, str):
        raise PoetTorchError("no config: give --config CONFIG.json or save \"config\" (JSON text)")
    config = parse_config(config_text, "config")
    archs, member_arch = member_archs(config)
    classes = int(config_get(config, "data.classes"))
    poet_attrs = saved.get("poet_attrs") or {}
    stored = dict(poet_attrs.get("/", {}))
    input_shape = saved.get("input_shape") or stored.get("input_shape")
    if input_shape is None:  # images are C = 1: the IDX file gives H and W
        input_shape = [1] + idx_header(config_get(config, "data.train_images"))[1:3]
    input_shape = [int(v) for v in input_shape]
    states = saved["members"]
    if len(states) != len(member_arch):
        raise PoetTorchError("%d members given, the config has %d"
                             % (len(states), len(member_arch)))

    # Momentum: the optimizer's parameters are the members' parameters in order.
    opt = saved.get("optimizer")
    buffers, group = {}, None
    if opt is not None:
        groups = opt.get("param_groups", [])
        group = groups[0] if groups else None
        for g in groups:
            if g.get("dampening", 0) != 0:
                raise PoetTorchError("optimizer dampening %g: poet's SGD has none" % g["dampening"])
        for index, st in opt.get("state", {}).items():
            if st.get("momentum_buffer") is not None:
                buffers[int(index)] = st["momentum_buffer"]
    members, index = [], 0
    for j, state in enumerate(states):
        if hasattr(state, "state_dict"):  # an nn.Module saved whole
            state = state.state_dict()
        _, tensors, states = plan(archs[member_arch[j]], input_shape, classes)
        params, momentum = collections.OrderedDict(), collections.OrderedDict()
        for name, shape in tensors:
            if name not in state:
                raise PoetTorchError("member %d: state_dict has no %s (has %s)"
                                     % (j, name, ", ".join(state)))
            params[name] = _as_float32(state[name], "member %d %s" % (j, name))
            if index in buffers:
                momentum[name] = _as_float32(buffers[index], "momentum buffer %d (member %d %s)"
                                             % (index, j, name))
                if momentum[name].shape != shape:
                    raise PoetTorchError("momentum buffer %d has shape %s, member %d %s has %s: "
                                         "the optimizer's parameters must be the members' in order"
                                         % (index, momentum[name].shape, j, name, shape))
            else:
                momentum[name] = np.zeros(shape, dtype=np.float32)
            index += 1
        running = collections.OrderedDict()
        for name, shape in states:
            if name not in state:
                raise PoetTorchError("member %d: state_dict has no %s (batchnorm's running "
                                     "statistics)" % (j, name))
            running[name] = _as_float32(state[name], "member %d %s" % (j, name))
        # poet keeps one num_batches_tracked per member (every batchnorm counts the same
        # forwards); a state_dict without any keeps the file's, else 0.
        counts = {n: int(state[n]) for n in _tracked_names(states) if n in state}
        if len(set(counts.values())) > 1:
            raise PoetTorchError("member %d: num_batches_tracked differs between batchnorm "
                                 "layers (%s): poet keeps one count per member"
                                 % (j, ", ".join("%s %d" % kv for kv in counts.items())))
        stored_member = poet_attrs.get("/members/%04d" % j, {})
        tracked = next(iter(counts.values()), int(stored_member.get("num_batches_tracked", 0)))
        members.append((params, momentum, running, tracked))
    if buffers and max(buffers) >= index:
        raise PoetTorchError("the optimizer state has a buffer for parameter %d, the members "
                             "have %d" % (max(buffers), index))
    if group is not None:
        for key, ours in (("momentum", "training.momentum"), ("weight_decay",
                                                               "training.weight_decay"),
                          ("nesterov", "training.nesterov")):
            if key in group and float(group[key]) != float(config_get(config, ours)):
                print("poet_torch: warning: optimizer %s %s differs from the config's %s %s; "
                      "poet trains with the config's" % (key, group[key], ours,
                                                        config_get(config, ours)), file=sys.stderr)

    # Where training stands: kept from a to-torch file unless --iteration or the config changes it.
    given = iteration is not None
    if iteration is None:
        iteration = int(saved.get("iteration", stored.get("iteration", 0)))
    same_config = stored.get("config") == config_text
    root = collections.OrderedDict()
    if same_config and not given and all(n in stored for n, _ in ROOT_ATTRS):
        root.update((n, stored[n]) for n, _ in ROOT_ATTRS)
    else:
        batch = int(config_get(config, "training.batch_size"))
        count = idx_header(config_get(config, "data.train_images"))[0]
        per_epoch = count // batch
        if per_epoch < 1:
            raise PoetTorchError("training.batch_size %d is larger than the %d training images"
                                 % (batch, count))
        total = int(config_get(config, "training.iterations"))
        if total <= 0:
            total = int(config_get(config, "training.epochs")) * per_epoch
        if iteration > total:
            # poet refuses a checkpoint whose iteration lies past its own total: the run this file
            # starts is at least that long (the resuming run's config sets how much longer).
            print("poet_torch: --iteration %d is past the config's %d iterations; the checkpoint "
                  "records %d as its total" % (iteration, total, iteration), file=sys.stderr)
            total = iteration
        root.update([("format_version", FORMAT_VERSION),
                     ("poet_version", stored.get("poet_version", _poet_version())),
                     ("iteration", iteration), ("epoch", iteration // per_epoch),
                     ("position", iteration % per_epoch), ("total_iterations", total),
                     ("seed", int(config_get(config, "training.seed"))), ("rng", RNG_DESCRIPTION),
                     ("members", len(member_arch)),
                     ("ranks_written", stored.get("ranks_written", 1)),
                     ("input_shape", input_shape), ("config", config_text)])
    write_checkpoint(path, config_text, members, root, poet_attrs, saved.get("poet_layout"))
    return root


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def evaluate(members, config, limit=None, batch=1000):
    """Test-set metrics as `poet eval` computes them: (ensemble accuracy, ensemble NLL, per-member
    [(accuracy, nll)], images). The mean of the logits and the losses are taken in double."""
    torch = _torch()
    images = load_idx(config_get(config, "data.test_images"))
    labels = load_idx(config_get(config, "data.test_labels")).astype(np.int64)
    if limit:
        images, labels = images[:limit], labels[:limit]
    x_all = normalise(images, config)
    M, N = len(members), len(labels)
    nll, correct = 0.0, 0
    member_nll, member_correct = np.zeros(M), np.zeros(M, dtype=np.int64)
    with torch.no_grad():
        for first in range(0, N, batch):
            x = torch.from_numpy(x_all[first:first + batch])
            y = torch.from_numpy(labels[first:first + batch])
            logits = torch.stack([m(x) for m in members]).double()  # [M, B, K]
            mean = logits.mean(0)
            nll += torch.nn.functional.cross_entropy(mean, y, reduction="sum").item()
            correct += int((mean.argmax(1) == y).sum())
            for j in range(M):
                member_nll[j] += torch.nn.functional.cross_entropy(logits[j], y,
                                                                   reduction="sum").item()
                member_correct[j] += int((logits[j].argmax(1) == y).sum())
    return (correct / N, nll / N, [(member_correct[j] / N, member_nll[j] / N) for j in range(M)],
            N)


def _cmd_to_torch(args):
    torch = _torch()
    saved = to_torch(args.checkpoint)
    out = args.output or re.sub(r"\.h5$", "", args.checkpoint) + ".pt"
    torch.save(saved, out)
    print("%s: %d members at iteration %d -> %s" % (args.checkpoint, len(saved["members"]),
                                                   saved["iteration"], out))


def _cmd_from_torch(args):
    torch = _torch()
    try:
        saved = torch.load(args.input, map_location="cpu")
    except Exception as e:  # torch.load raises whatever unpickling the bytes raises
        raise PoetTorchError("%s: cannot load as a PyTorch file: %s" % (args.input, e))
    config_text = None
    if args.config:
        try:
            with open(args.config) as f:
                config_text = f.read()
        except OSError as e:
            raise PoetTorchError("%s: cannot read config: %s" % (args.config, e.strerror))
        parse_config(config_text, args.config)
    root = from_torch(saved, args.output, args.iteration, config_text)
    print("%s: %d members at iteration %d -> %s" % (args.input, int(root["members"]),
                                                   int(root["iteration"]), args.output))


def _cmd_eval(args):
    members, config = load_ensemble(args.checkpoint)
    if args.config:
        try:
            with open(args.config) as f:
                config = parse_config(f.read(), args.config)
        except OSError as e:
            raise PoetTorchError("%s: cannot read config: %s" % (args.config, e.strerror))
    acc, nll, per_member, n = evaluate(members, config, args.limit)
    print("%d test images" % n)
    print("ensemble: accuracy %.4f  nll %.4f" % (acc, nll))
    for j, (a, l) in enumerate(per_member):
        print("  member %4d: accuracy %.4f  nll %.4f" % (j, a, l))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="poet_torch.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("to-torch", help="checkpoint -> PyTorch file (torch.save of a dict)")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", help="default: CKPT with .pt instead of .h5")
    p.set_defaults(run=_cmd_to_torch)
    p = sub.add_parser("from-torch", help="PyTorch file -> checkpoint")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--iteration", type=int, help="iteration to resume at (default: the file's, "
                   "else 0)")
    p.add_argument("--config", help="config JSON to store (default: the file's \"config\")")
    p.set_defaults(run=_cmd_from_torch)
    p = sub.add_parser("eval", help="test-set metrics of a checkpoint, computed by PyTorch")
    p.add_argument("checkpoint")
    p.add_argument("--config", help="take data paths and normalisation from this config")
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.set_defaults(run=_cmd_eval)
    args = parser.parse_args(argv)
    if getattr(args, "iteration", None) is not None and args.iteration < 0:
        parser.error("--iteration: expected an integer >= 0, got %d" % args.iteration)
    try:
        args.run(args)
    except PoetTorchError as e:
        print("poet_torch: %s" % e, file=sys.stderr)
        return 1
    except ImportError as e:
        print("poet_torch: %s (Debian: apt-get install python3-torch)" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
