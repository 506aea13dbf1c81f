#!/usr/bin/python3
"""test_torch.py CASE POET WORKDIR CONFIG — PyTorch interop tests (tools/poet_torch.py).

Cases (each trains its own small run of CONFIG, 50 iterations, in WORKDIR, fresh):
  round_trip  poet -> PyTorch -> poet is bitwise: every dataset and attribute of the two
              checkpoints, tensor order included; `poet inspect` verifies the new one and a run
              resumed from it continues bit for bit like one resumed from the original.
  eval        a PyTorch forward on poet's weights gives `poet eval`'s test-set accuracy (equal)
              and NLL (within NLL_TOL), ensemble and every member.
  scratch     PyTorch-initialised members -> from-torch -> `poet train --resume-from` trains (the
              loss falls) and its checkpoint verifies; --iteration N is where poet resumes.
  sgd         PoetSGD (POET is tests/torch_sgd_step here) steps bit for bit like poet_sgd_step.
  errors      bad input files and arguments: exit 1 and one line naming the problem.
  step        one torch.optim.SGD step with the exported optimizer state gives poet's next
              checkpoint (params, momentum and gradient within STEP_TOL), from a trained state
              (weight decay and Nesterov on) and from PyTorch-initialised members.
Exit 0 pass, 1 fail, 77 skip (python3-torch not installed).
"""
import json
import math
import os
import shutil
import subprocess
import sys

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not importable (Debian: apt-get install python3-torch)")
    sys.exit(77)

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import poet_torch  # noqa: E402

TOOL = os.path.join(HERE, "..", "tools", "poet_torch.py")
# Test-set NLL (nats, mean over 10000 images): both sides run different fp32 convolution kernels
# (and poet sums member logits in fixed point); measured |diff| 3e-9 (ensemble), 3e-8 (members).
NLL_TOL = 1e-6
# One SGD step, absolute: gradients agree to fp32 rounding of different summation orders (measured
# 1.5e-8 for |g| <= 2e-2), params after the step to an ulp (3e-8 at |p| ~0.3). See docs/pytorch.md.
STEP_TOL = 2e-7
# Batchnorm in train mode (compare_step): running statistics after a step, absolute (measured
# 2.3e-6 at |value| <= 1.1), and the whole gradient's relative L2 error (measured below 4e-3).
RUNNING_TOL = 1e-5
BN_GRAD_TOL = 2e-2
# Eval mode (running statistics), PyTorch vs `poet predict`: probabilities, absolute.
PROB_TOL = 1e-5
# The docs' hand-written ResNet vs poet_torch's module on the same weights: logits, absolute.
LOGIT_TOL = 1e-5

torch.set_num_threads(1)


class Failure(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Failure(what)


def run(cmd, expect=0):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != expect:
        print(p.stdout)
        raise Failure("%s exited %d, expected %d" % (" ".join(cmd), p.returncode, expect))
    return p.stdout


class Ctx:
    def __init__(self, poet, work, config):
        self.poet, self.work, self.config = poet, work, config

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def train(self, name, *sets, resume_from=None):
        """poet train CONFIG in WORK/name; returns (checkpoint dir, trajectory [(it, loss)])."""
        ckdir, traj = self.path(name), self.path(name + ".traj")
        cmd = [self.poet, "train", self.config, "--quiet", "--trajectory", traj,
               "--set", 'output.checkpoint_dir="%s"' % ckdir,
               "--set", "training.iterations=50"]  # every config's run length (sets override)
        for s in sets:
            cmd += ["--set", s]
        if resume_from:
            cmd += ["--resume-from", resume_from]
        run(cmd)
        with open(traj) as f:
            lines = [line.split() for line in f]
        return ckdir, [(int(it), float.fromhex(loss)) for it, loss in lines]

    def tool(self, *args):
        return run([sys.executable, TOOL] + list(args))


# ---------------------------------------------------------------------------------------------

def describe_attr(obj, name):
    """(dtype, shape, value bytes or str, string type) of one attribute."""
    aid = obj.attrs.get_id(name)
    value = obj.attrs[name]
    strinfo = h5py.check_string_dtype(aid.dtype)
    if strinfo is not None:
        return ("str", aid.shape, value, strinfo.encoding, strinfo.length)
    return (str(aid.dtype), aid.shape, np.asarray(value).tobytes(), None, None)


def hdf5_contents(path):
    """{object path: description}: every group (members in iteration order, creation-order
    flags, attributes in iteration order) and dataset (dtype, shape, bytes, attributes)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {a: describe_attr(obj, a) for a in obj.attrs}
            if isinstance(obj, h5py.Dataset):
                out[name] = ("dataset", str(obj.dtype), obj.shape, obj[()].tobytes(), attrs)
            else:
                plist = h5py.h5g.open(obj.id, b".").get_create_plist()  # the root too
                order = (plist.get_link_creation_order(), plist.get_attr_creation_order())
                out[name] = ("group", list(obj), order, list(obj.attrs), attrs)
        visit("/", f)
        f.visititems(visit)
    return out


def compare_files(a, b):
    ca, cb = hdf5_contents(a), hdf5_contents(b)
    diffs = ["only in %s: %s" % (a, k) for k in sorted(set(ca) - set(cb))]
    diffs += ["only in %s: %s" % (b, k) for k in sorted(set(cb) - set(ca))]
    for k in sorted(set(ca) & set(cb)):
        if ca[k] != cb[k]:
            what = [i for i, (x, y) in enumerate(zip(ca[k], cb[k])) if x != y]
            diffs.append("%s differs (fields %s)" % (k, what))
    return diffs, len(ca)


def case_round_trip(c):
    ckdir, _ = c.train("run")
    ckpt = os.path.join(ckdir, "ckpt-00000050.h5")
    pt, back = c.path("run.pt"), c.path("back.h5")
    c.tool("to-torch", ckpt, "-o", pt)
    c.tool("from-torch", pt, "-o", back)
    diffs, objects = compare_files(ckpt, back)
    for d in diffs:
        print("DIFF", d)
    check(not diffs, "%d of %d objects differ" % (len(diffs), objects))
    print("ok: all %d HDF5 groups and datasets, with their attributes, identical bit for bit"
          % objects)
    with h5py.File(ckpt, "r") as f:
        M = int(f.attrs["members"])
    out = run([c.poet, "inspect", back])
    check(out.count(" OK ") == M, "poet inspect does not show %d OK members:\n%s" % (M, out))

    # The PyTorch file itself: plain torch.load, state_dicts and momentum buffers bitwise.
    saved = torch.load(pt)
    buffers = saved["optimizer"]["state"]
    index = 0  # the optimizer's parameters: member 0's in layer order, then member 1's, ...
    running = 0
    with h5py.File(ckpt, "r") as f:
        for j, sd in enumerate(saved["members"]):
            group = f["members/%04d" % j]
            for name in group["params"]:  # creation order: layer order, the optimizer's
                t = sd[name]
                check(t.dtype == torch.float32 and
                      t.numpy().tobytes() == group["params/" + name][()].tobytes(),
                      "member %d %s differs from the checkpoint" % (j, name))
                check(buffers[index]["momentum_buffer"].numpy().tobytes() ==
                      group["momentum/" + name][()].tobytes(),
                      "momentum buffer %d (member %d %s) differs" % (index, j, name))
                index += 1
            for name in group.get("buffers", {}):  # batchnorm's running statistics
                check(sd[name].dtype == torch.float32 and
                      sd[name].numpy().tobytes() == group["buffers/" + name][()].tobytes(),
                      "member %d %s differs from the checkpoint" % (j, name))
                tracked = name.replace("running_mean", "num_batches_tracked")
                if tracked != name:
                    check(int(sd[tracked]) == int(group.attrs["num_batches_tracked"]),
                          "member %d %s differs" % (j, tracked))
                running += 1
            extra = set(sd) - set(group["params"]) - set(group.get("buffers", {}))
            check(all(k.endswith(".num_batches_tracked") for k in extra),
                  "member %d state_dict has keys the checkpoint lacks: %s" % (j, sorted(extra)))
    print("ok: torch.load gives the %d tensors and momentum buffers and %d running statistics "
          "bit for bit" % (index, running))

    # poet continues the converted checkpoint exactly as the original.
    _, t1 = c.train("resumed-orig", "training.iterations=60", resume_from=ckpt)
    _, t2 = c.train("resumed-back", "training.iterations=60", resume_from=back)
    check(len(t1) == 10 and t1[0][0] == 50, "resumed run did not train iterations 50..59: %s" % t1)
    check(t1 == t2, "resuming the converted checkpoint gives another trajectory")
    print("ok: poet resumes the converted checkpoint bit for bit like the original (10 iterations)")


def case_eval(c):
    ckdir, _ = c.train("run")
    ckpt = os.path.join(ckdir, "ckpt-00000050.h5")
    out = run([c.poet, "eval", c.config, "--checkpoint", ckpt,
               "--set", 'output.checkpoint_dir="%s"' % c.path("evaldir")])
    printed = [line.split() for line in out.splitlines() if "accuracy" in line]
    # The log's end-of-run evaluation has the same numbers in full precision.
    with h5py.File(os.path.join(ckdir, "log.h5"), "r") as f:
        row = list(f["eval/iteration"][()]).index(50)
        poet_acc = f["eval/ensemble_accuracy"][row]
        poet_nll = f["eval/ensemble_nll"][row]
        poet_member_acc = f["eval/member_accuracy"][row]
        poet_member_nll = f["eval/member_nll"][row]
    check(printed[0][2] == "%.4f" % poet_acc, "poet eval and the log disagree: %s" % printed[0])

    members, config = poet_torch.load_ensemble(ckpt)
    acc, nll, per_member, n = poet_torch.evaluate(members, config)
    check(n == 10000, "expected 10000 test images, got %d" % n)
    print("ensemble: poet accuracy %.4f nll %.9f | torch accuracy %.4f nll %.9f | |dNLL| %.2e"
          % (poet_acc, poet_nll, acc, nll, abs(nll - poet_nll)))
    check(round(acc * n) == round(poet_acc * n), "ensemble accuracy differs")
    check(abs(nll - poet_nll) <= NLL_TOL, "ensemble NLL differs by more than %g" % NLL_TOL)
    worst = 0.0
    for j, (a, l) in enumerate(per_member):
        check(round(a * n) == round(poet_member_acc[j] * n), "member %d accuracy differs" % j)
        worst = max(worst, abs(l - poet_member_nll[j]))
    check(worst <= NLL_TOL, "a member's NLL differs by %g > %g" % (worst, NLL_TOL))
    print("ok: accuracy equal for the ensemble and all %d members; max |dNLL| of members %.2e"
          % (len(per_member), worst))

    # The CLI prints the same figures as poet eval.
    out = c.tool("eval", ckpt)
    check("ensemble: accuracy %.4f" % poet_acc in out, "poet_torch.py eval printed:\n" + out)


def fresh_members(config_text, seed):
    torch.manual_seed(seed)
    return poet_torch.build_ensemble(config_text, [1, 28, 28])


def case_scratch(c):
    with open(c.config) as f:
        config_text = f.read()
    members = fresh_members(config_text, 1)
    pt, ckpt = c.path("fresh.pt"), c.path("fresh.h5")
    torch.save({"members": [m.state_dict() for m in members]}, pt)
    c.tool("from-torch", pt, "-o", ckpt, "--config", c.config)
    out = run([c.poet, "inspect", ckpt])
    check("iteration 0 of 50" in out and out.count(" OK ") == 4, "inspect:\n" + out)
    with h5py.File(ckpt, "r") as f:
        for j, m in enumerate(members):
            for name, t in m.state_dict().items():
                check(f["members/%04d/params/%s" % (j, name)][()].tobytes() == t.numpy().tobytes(),
                      "member %d %s not written bitwise" % (j, name))
                check(not f["members/%04d/momentum/%s" % (j, name)][()].any(),
                      "momentum of a fresh member is not zero")

    ckdir, traj = c.train("trained", "training.iterations=100", resume_from=ckpt)
    first = np.mean([l for _, l in traj[:10]])
    last = np.mean([l for _, l in traj[-10:]])
    print("PyTorch-initialised members under poet: first-10 mean loss %.4f, last-10 %.4f"
          % (first, last))
    check(traj[0][0] == 0 and len(traj) == 100, "expected iterations 0..99")
    check(first - last >= 0.1, "the loss did not fall by 0.1")
    out = run([c.poet, "inspect", os.path.join(ckdir, "ckpt-00000100.h5")])
    check(out.count(" OK ") == 4, "the trained checkpoint does not verify:\n" + out)

    # --iteration: poet resumes there (epoch/position follow from 60000 images / batch 40).
    at = c.path("at1520.h5")
    c.tool("from-torch", pt, "-o", at, "--config", c.config, "--iteration", "1520")
    with h5py.File(at, "r") as f:
        got = [int(f.attrs[k]) for k in ("iteration", "epoch", "position", "total_iterations")]
    check(got == [1520, 1, 20, 1520], "iteration/epoch/position/total are %s" % got)
    _, traj = c.train("at1520", "training.iterations=1530", resume_from=at)
    check([it for it, _ in traj] == list(range(1520, 1530)), "resumed at %s" % traj[:1])
    print("ok: --iteration 1520 is epoch 1, position 20, and poet trains iterations 1520..1529")


def joint_step(members, opt, x, y):
    """poet's objective: cross entropy of softmax(mean_j f_j), batch mean; the mean and the loss
    in double as poet's loss.c, the logits float32."""
    opt.zero_grad()
    logits = torch.stack([m(x) for m in members]).double()
    torch.nn.functional.cross_entropy(logits.mean(0), y).backward()
    grads = [p.grad.clone() for m in members for p in poet_torch.member_parameters(m)]
    opt.step()
    return grads


def train_batch(config, iteration):
    images = poet_torch.load_idx(poet_torch.config_get(config, "data.train_images"))
    labels = poet_torch.load_idx(poet_torch.config_get(config, "data.train_labels"))
    idx = poet_torch.batch_indices(config, iteration, len(labels))
    x = torch.from_numpy(poet_torch.normalise(images[idx], config))
    return x, torch.from_numpy(labels[idx].astype(np.int64))


def snapshot(members, opt):
    """Each parameter's (value, momentum buffer) before a step, as float32 arrays."""
    out = []
    for m in members:
        for p in poet_torch.member_parameters(m):
            buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
            v = buf.numpy().copy() if buf is not None else np.zeros(tuple(p.shape), np.float32)
            out.append((p.detach().numpy().copy(), v))
    return out


def compare_step(members, opt, grads, before, ckpt_after, mu, wd):
    """Largest |difference| of params, momentum buffers and gradients against poet's checkpoint
    after the step. poet's gradient is recovered from its momentum: v_after - mu·v_before -
    wd·p_before (float32; exact up to a rounding or two)."""
    ck = poet_torch.read_checkpoint(ckpt_after)
    after = [(pm["params"][n], pm["momentum"][n]) for pm in ck["members"] for n in pm["params"]]
    params = [p for m in members for p in poet_torch.member_parameters(m)]
    worst = {"params": 0.0, "momentum": 0.0, "gradient": 0.0, "running stats": 0.0}
    size = {"params": 0.0, "gradient": 0.0}
    err2 = norm2 = 0.0
    for p, g, (p0, v0), (p1, v1) in zip(params, grads, before, after):
        poet_g = v1 - np.float32(mu) * v0 - np.float32(wd) * p0
        err2 += float(((g.numpy().astype(np.float64) - poet_g) ** 2).sum())
        norm2 += float((poet_g.astype(np.float64) ** 2).sum())
        for key, ours, theirs in (("params", p.detach().numpy(), p1),
                                  ("momentum", opt.state[p]["momentum_buffer"].numpy(), v1),
                                  ("gradient", g.numpy(), poet_g)):
            worst[key] = max(worst[key], float(np.abs(ours - theirs).max()))
        size["params"] = max(size["params"], float(np.abs(p1).max()))
        size["gradient"] = max(size["gradient"], float(np.abs(poet_g).max()))
    # Batchnorm in train mode: PyTorch's running statistics after the step against poet's.
    for m, pm in zip(members, ck["members"]):
        sd = m.state_dict()
        for name, value in pm["buffers"].items():
            worst["running stats"] = max(worst["running stats"],
                                         float(np.abs(sd[name].numpy() - value).max()))
        for name in poet_torch._tracked_names(pm["states"]):
            check(int(sd[name]) == pm["tracked"], "%s is %d, poet's %d"
                  % (name, int(sd[name]), pm["tracked"]))
    relative = math.sqrt(err2 / norm2)
    print("  max |diff|: params %.2e (max |p| %.2f), momentum %.2e, gradient %.2e (max |g| %.2e, "
          "relative L2 error %.2e), running statistics %.2e"
          % (worst["params"], size["params"], worst["momentum"], worst["gradient"],
             size["gradient"], relative, worst["running stats"]))
    if not any(pm["states"] for pm in ck["members"]):
        for key, value in worst.items():
            check(value <= STEP_TOL, "%s differ by %.3g > %g" % (key, value, STEP_TOL))
        return
    # With batchnorm in train mode: poet's batch statistics (oneDNN's fp32 sums over B·H·W
    # values) are off by ~1e-5 relative where PyTorch's (and the double reference's) are exact
    # to ~1e-7, so a relu right after a batchnorm sees a few values within 1e-5 of 0 on the
    # other side and passes (or stops) their gradient: element-wise gradient differences then
    # reach a few percent of a tensor's largest (measured: 2.6e-4 of 1.3e-2), while the gradient
    # as a whole and the running statistics agree closely. See docs/pytorch.md.
    check(worst["running stats"] <= RUNNING_TOL, "running statistics differ by %.3g > %g"
          % (worst["running stats"], RUNNING_TOL))
    check(relative <= BN_GRAD_TOL, "gradient relative L2 error %.3g > %g"
          % (relative, BN_GRAD_TOL))


def case_step(c):
    # (a) A trained state with momentum, weight decay and Nesterov: poet's step 5 -> 6.
    sets = ["training.iterations=6", "output.checkpoint_every=1", "output.checkpoint_keep=10",
            "training.weight_decay=0.001", "training.nesterov=true"]
    ckdir, _ = c.train("run", *sets)
    pt = c.path("ckpt5.pt")
    c.tool("to-torch", os.path.join(ckdir, "ckpt-00000005.h5"), "-o", pt)
    saved = torch.load(pt)
    config = json.loads(saved["config"])
    members = poet_torch.build_ensemble(config, saved["input_shape"])
    for m, sd in zip(members, saved["members"]):
        m.load_state_dict(sd)
    opt = poet_torch.make_optimizer(members, config, state=saved["optimizer"])
    g = opt.param_groups[0]
    lr = poet_torch.config_get(config, "training.lr")
    check((g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (lr, 0.9, 0.001, True),
          "exported hyperparameters: %s" % {k: v for k, v in g.items() if k != "params"})
    before = snapshot(members, opt)
    check(any(v.any() for _, v in before), "the exported momentum is all zero")
    x, y = train_batch(config, 5)
    print("trained state, step 5 -> 6 (momentum 0.9, weight decay 0.001, Nesterov):")
    grads = joint_step(members, opt, x, y)
    compare_step(members, opt, grads, before, os.path.join(ckdir, "ckpt-00000006.h5"), 0.9, 0.001)

    # (b) PyTorch-initialised members: poet's first step (momentum from zero) vs PyTorch's.
    with open(c.config) as f:
        config_text = f.read()
    members = fresh_members(config_text, 2)
    pt, ckpt = c.path("fresh.pt"), c.path("fresh.h5")
    torch.save({"members": [m.state_dict() for m in members], "config": config_text}, pt)
    c.tool("from-torch", pt, "-o", ckpt)
    ckdir, _ = c.train("fresh-run", "training.iterations=1", resume_from=ckpt)
    config = json.loads(config_text)
    opt = poet_torch.make_optimizer(members, config)
    before = snapshot(members, opt)
    x, y = train_batch(config, 0)
    print("PyTorch-initialised members, first step:")
    grads = joint_step(members, opt, x, y)
    compare_step(members, opt, grads, before, os.path.join(ckdir, "ckpt-00000001.h5"), 0.9, 0.0)
    print("ok: one torch.optim.SGD step matches poet's within %s"
          % ("%g (running statistics %g, gradient relative L2 %g)" % (STEP_TOL, RUNNING_TOL,
                                                                      BN_GRAD_TOL)
             if "batchnorm" in config_text else "%g" % STEP_TOL))


def case_errors(c):
    """Bad input: exit status 1 and one line naming the file and what is wrong."""
    ckdir, _ = c.train("run", "training.iterations=2")
    ckpt = os.path.join(ckdir, "ckpt-00000002.h5")
    corrupt = c.path("corrupt.h5")
    shutil.copy(ckpt, corrupt)
    with h5py.File(corrupt, "r+") as f:
        f["members/0002/momentum/fc1.bias"][3] += 1.0
    with open(c.config) as f:
        config_text = f.read()
    good = [m.state_dict() for m in fresh_members(config_text, 3)]
    wrong_shape = [dict(sd) for sd in good]
    wrong_shape[1]["fc1.weight"] = torch.zeros(20, 41)
    doubled = [dict(sd) for sd in good]
    doubled[0]["conv2.bias"] = doubled[0]["conv2.bias"].double()
    files = {}
    for name, saved in (("no-config", {"members": good}), ("three", {"members": good[:3]}),
                        ("shape", {"members": wrong_shape, "config": config_text}),
                        ("double", {"members": doubled, "config": config_text}),
                        ("list", [1, 2])):
        files[name] = c.path(name + ".pt")
        torch.save(saved, files[name])
    out = c.path("out.h5")
    for args, message in (
            (["to-torch", c.path("missing.h5")],
             "missing.h5: cannot open checkpoint: No such file"),
            (["to-torch", c.config], "tiny.json: cannot open as HDF5"),
            (["to-torch", corrupt], "corrupt.h5: member 2 checksum mismatch"),
            (["from-torch", c.config, "-o", out], "tiny.json: cannot load as a PyTorch file"),
            (["from-torch", files["no-config"], "-o", out], "no config: give --config"),
            (["from-torch", files["three"], "-o", out, "--config", c.config],
             "3 members given, the config has 4"),
            (["from-torch", files["shape"], "-o", out],
             "member 1: params fc1.weight has shape (20, 41), expected (20, 40)"),
            (["from-torch", files["double"], "-o", out],
             "member 0 conv2.bias has dtype float64: poet stores float32"),
            (["from-torch", files["list"], "-o", out], "expected a dict with \"members\""),
            (["from-torch", files["shape"], "-o", out, "--config", c.path("nope.json")],
             "nope.json: cannot read config")):
        p = subprocess.run([sys.executable, TOOL] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        lines = p.stderr.strip().splitlines()
        check(p.returncode == 1 and len(lines) == 1 and message in lines[0],
              "%s: exit %d, stderr %r; expected exit 1 and one line with %r"
              % (" ".join(args), p.returncode, p.stderr, message))
        check(not os.path.exists(out) and not os.path.exists(out + ".tmp"),
              "a failed from-torch left %s behind" % out)
        print("ok: %s -> %s" % (args[0], lines[0]))


def case_sgd(c):
    """PoetSGD against poet's own poet_sgd_step (tests/torch_sgd_step.c, given as POET), bit for
    bit; torch.optim.SGD's difference measured and bounded by 2·eps·(|p| + lr·|d|)."""
    rng = np.random.default_rng(5)
    n = 100003
    p0 = (rng.standard_normal(n) * 0.3).astype(np.float32)
    g0 = (rng.standard_normal(n) * 0.01).astype(np.float32)
    v0 = (rng.standard_normal(n) * 0.02).astype(np.float32)
    g0[:100], g0[100:200], p0[200:300] = 0.0, -0.0, 0.0  # signed zeros take every path too
    path = c.path("sgd.bin")
    for lr, mu, wd, nesterov in ((0.2, 0.9, 0.0, False), (0.05, 0.9, 5e-4, True),
                                 (0.5, 0.0, 0.0, False), (0.1, 0.5, 1e-3, False)):
        for first in (True, False):  # the first step (no momentum yet) and a later one
            v_in = np.zeros(n, np.float32) if first else v0
            np.concatenate([p0, g0, v_in]).tofile(path)
            run([c.poet, repr(lr), repr(mu), repr(wd), str(int(nesterov)), path])
            out = np.fromfile(path, dtype=np.float32)
            poet_p, poet_v = out[:n], out[2 * n:]
            for kind in ("PoetSGD", "SGD"):
                t = torch.tensor(p0, requires_grad=True)
                t.grad = torch.tensor(g0)
                if kind == "PoetSGD":
                    opt = poet_torch.poet_sgd([t], lr, mu, wd, nesterov)
                else:
                    opt = torch.optim.SGD([t], lr=lr, momentum=mu, weight_decay=wd,
                                          nesterov=nesterov)
                if not first:
                    opt.state[t]["momentum_buffer"] = torch.tensor(v0)
                opt.step()
                tp = t.detach().numpy()
                tv = opt.state[t]["momentum_buffer"].numpy() if mu else poet_v
                differ = int((tp.view(np.int32) != poet_p.view(np.int32)).sum())
                vdiffer = int((tv.view(np.int32) != poet_v.view(np.int32)).sum())
                # PyTorch fuses p - lr·d (and g + wd·p, g + mu·v with Nesterov) into one
                # rounding each where poet rounds every product: a forward-error bound of a few
                # roundings of the magnitudes involved, eps·(|p| + lr·|d|) with |d| bounded by
                # its terms' magnitudes, holds both.
                eps = float(np.finfo(np.float32).eps)
                G = np.abs(g0) + wd * np.abs(p0)
                V = mu * np.abs(v_in) + G
                D = G + mu * V if nesterov else V
                bound = 2 * eps * (np.abs(p0) + lr * D) + 1e-45
                worst = float((np.abs(tp - poet_p) / bound).max())
                vworst = float((np.abs(tv - poet_v) / (2 * eps * V + 1e-45)).max())
                print("lr %g mu %g wd %g nesterov %d %-5s %-7s: params differ in %5d of %d (%.2f "
                      "of the bound), momentum in %5d (%.2f)"
                      % (lr, mu, wd, nesterov, "first" if first else "later", kind, differ, n,
                         worst, vdiffer, vworst))
                if kind == "PoetSGD":
                    check(differ == 0 and vdiffer == 0, "PoetSGD is not poet's step")
                else:
                    check(worst <= 1 and vworst <= 1, "torch.optim.SGD is further from poet's "
                          "step than 2·eps·(|p| + lr·|d|)")
    print("ok: PoetSGD steps are poet's bit for bit; torch.optim.SGD's within 2·eps·(|p| + lr·|d|)")


def write_idx(path, array):
    """A uint8 array as an IDX file (images [N, H, W] or labels [N])."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, array.ndim]))
        for d in array.shape:
            f.write(int(d).to_bytes(4, "big"))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_slice(c, config, n):
    """The first n test images and labels as IDX files in WORK: (images path, labels path,
    images uint8 [n, H, W])."""
    images = poet_torch.load_idx(poet_torch.config_get(config, "data.test_images"))[:n]
    labels = poet_torch.load_idx(poet_torch.config_get(config, "data.test_labels"))[:n]
    paths = c.path("test-images.idx"), c.path("test-labels.idx")
    write_idx(paths[0], images)
    write_idx(paths[1], labels)
    return paths[0], paths[1], images


def compare_predict(pred_path, member_logits, what):
    """poet predict's probabilities, prediction and member probabilities against PyTorch's
    member logits [M, N, K] (float64): returns the largest |difference| of probabilities."""
    torch_members = torch.softmax(member_logits, 2)  # [M, N, K]
    torch_probs = torch.softmax(member_logits.mean(0), 1)  # the product of experts q̄
    with h5py.File(pred_path, "r") as f:
        probs, pred = f["probabilities"][()], f["prediction"][()]
        members = f["member_probabilities"][()]  # [N, M, K]
    worst = float(np.abs(torch_probs.numpy() - probs).max())
    worst_m = float(np.abs(torch_members.numpy().transpose(1, 0, 2) - members).max())
    mean = member_logits.mean(0).numpy()
    top2 = np.sort(mean, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # argmax ties within rounding may go either way
    agree = (mean.argmax(1) == pred)[clear].all()
    print("%s: %d images, max |dp| ensemble %.2e, members %.2e; predictions equal on all %d "
          "images without a near tie" % (what, len(pred), worst, worst_m, int(clear.sum())))
    check(worst <= PROB_TOL and worst_m <= PROB_TOL,
          "probabilities differ by %.3g > %g" % (max(worst, worst_m), PROB_TOL))
    check(agree, "the ensemble's predictions differ")
    return max(worst, worst_m)


def case_predict(c):
    """A trained batchnorm residual ensemble, exported: PyTorch in eval mode (running
    statistics) gives `poet predict`'s probabilities and predictions."""
    ckdir, _ = c.train("run")
    ckpt = os.path.join(ckdir, "ckpt-00000050.h5")
    config = json.load(open(c.config))
    images_path, labels_path, images = test_slice(c, config, 500)
    pred = c.path("pred.h5")
    run([c.poet, "predict", ckpt, "--input", images_path, "--labels", labels_path, "-o", pred,
         "--quiet"])
    pt = c.path("run.pt")
    c.tool("to-torch", ckpt, "-o", pt)  # the exported file, as a user loads it
    saved = torch.load(pt)
    members = poet_torch.build_ensemble(saved["config"], saved["input_shape"])
    for m, sd in zip(members, saved["members"]):
        m.load_state_dict(sd)
        m.eval()
        check(any(k.endswith("running_var") for k in sd), "no running statistics exported")
    x = torch.from_numpy(poet_torch.normalise(images, json.loads(saved["config"])))
    with torch.no_grad():
        logits = torch.stack([m(x) for m in members]).double()
    compare_predict(pred, logits, "PyTorch (eval mode) vs poet predict")


def case_errors_bn(c):
    """Batchnorm members: missing running statistics, inconsistent num_batches_tracked, a
    corrupt running statistic, "bias" on a batchnorm: exit 1 and one line."""
    ckdir, _ = c.train("run", "training.iterations=2")
    ckpt = os.path.join(ckdir, "ckpt-00000002.h5")
    corrupt = c.path("corrupt.h5")
    shutil.copy(ckpt, corrupt)
    with h5py.File(corrupt, "r+") as f:
        f["members/0001/buffers/bn1.running_var"][0] += 1.0
    saved = poet_torch.to_torch(ckpt)
    missing = dict(saved, members=[dict(sd) for sd in saved["members"]])
    del missing["members"][0]["bn1.running_mean"]
    tracked = dict(saved, members=[dict(sd) for sd in saved["members"]])
    tracked["members"][2]["b.num_batches_tracked"] = torch.tensor(7)
    config = json.load(open(c.config))
    config["model"]["architecture"][1]["bias"] = False
    bad_config = c.path("bias-on-bn.json")
    with open(bad_config, "w") as f:
        json.dump(config, f)
    files = {}
    for name, content in (("missing", missing), ("tracked", tracked)):
        files[name] = c.path(name + ".pt")
        torch.save(content, files[name])
    out = c.path("out.h5")
    for args, message in (
            (["to-torch", corrupt], "corrupt.h5: member 1 checksum mismatch"),
            (["from-torch", files["missing"], "-o", out],
             "member 0: state_dict has no bn1.running_mean (batchnorm's running statistics)"),
            (["from-torch", files["tracked"], "-o", out],
             "member 2: num_batches_tracked differs between batchnorm layers"),
            (["from-torch", files["tracked"], "-o", out, "--config", bad_config],
             "model.architecture[1].bias: expected no \"bias\" on a batchnorm layer")):
        p = subprocess.run([sys.executable, TOOL] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        lines = p.stderr.strip().splitlines()
        check(p.returncode == 1 and len(lines) == 1 and message in lines[0],
              "%s: exit %d, stderr %r; expected exit 1 and one line with %r"
              % (" ".join(args), p.returncode, p.stderr, message))
        check(not os.path.exists(out) and not os.path.exists(out + ".tmp"),
              "a failed from-torch left %s behind" % out)
        print("ok: %s -> %s" % (args[0], lines[0]))


DOC = os.path.join(HERE, "..", "docs", "pytorch.md")
DOC_MARK = "<!-- tests/test_torch.py (case doc_resnet) runs the next block -->"


def doc_snippet():
    """The python block of docs/pytorch.md after DOC_MARK, as written there."""
    with open(DOC) as f:
        text = f.read()
    check(DOC_MARK in text, "%s has no %r" % (DOC, DOC_MARK))
    block = text.split(DOC_MARK, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    return block


def case_doc_resnet(c):
    """A poet-trained resnet-20 ensemble (2 members, 4 iterations) loaded by the docs' own
    snippet into a hand-written standard CIFAR ResNet (bias-free convolutions, torchvision's
    names): its logits are poet_torch's member's, its softmax `poet predict`'s; the state_dicts
    to-torch saves load into it strictly; to-torch -> from-torch is bitwise."""
    config = json.load(open(c.config))
    images_path, labels_path, images = test_slice(c, config, 100)
    ckdir, _ = c.train("run", 'model.architecture="resnet-20"', "model.members=2",
                       "training.batch_size=16", "training.iterations=4",
                       'data.test_images="%s"' % images_path,
                       'data.test_labels="%s"' % labels_path)
    ckpt = os.path.join(ckdir, "ckpt-00000004.h5")
    namespace = {}
    exec(compile(doc_snippet(), DOC + " (snippet)", "exec"), namespace)
    x = torch.from_numpy(poet_torch.normalise(images, config))
    ours, config_ck = poet_torch.load_ensemble(ckpt)
    snippet, logits = [], []
    with torch.no_grad():
        for j in range(2):
            model = namespace["load_member"](ckpt, j, 20)
            snippet.append(model)
            a, b = model(x), ours[j](x)
            logits.append(a.double())
            diff = float((a - b).abs().max())
            print("member %d: the docs' ResNet vs poet_torch's module: max |d logit| %.2e "
                  "(|logit| <= %.2f)" % (j, diff, float(b.abs().max())))
            check(diff <= LOGIT_TOL, "logits differ by %.3g > %g" % (diff, LOGIT_TOL))
    pred = c.path("pred.h5")
    run([c.poet, "predict", ckpt, "--input", images_path, "-o", pred, "--quiet"])
    compare_predict(pred, torch.stack(logits), "the docs' ResNet-20 vs poet predict")

    pt, back = c.path("run.pt"), c.path("back.h5")
    c.tool("to-torch", ckpt, "-o", pt)
    saved = torch.load(pt)
    for j, sd in enumerate(saved["members"]):
        check(list(sd) == list(snippet[j].state_dict()),
              "member %d: to-torch's keys are not a standard ResNet's:\n%s\n%s"
              % (j, list(sd), list(snippet[j].state_dict())))
        snippet[j].load_state_dict(sd, strict=True)
    print("ok: to-torch's state_dicts have a standard CIFAR ResNet-20's %d keys, in its order, "
          "and load into it strictly" % len(saved["members"][0]))
    c.tool("from-torch", pt, "-o", back)
    diffs, objects = compare_files(ckpt, back)
    for d in diffs:
        print("DIFF", d)
    check(not diffs, "%d of %d objects differ" % (len(diffs), objects))
    print("ok: resnet-20 poet -> PyTorch -> poet: all %d HDF5 objects identical bit for bit"
          % objects)


CASES = {"round_trip": case_round_trip, "eval": case_eval, "scratch": case_scratch,
         "step": case_step, "errors": case_errors, "sgd": case_sgd, "predict": case_predict,
         "errors_bn": case_errors_bn, "doc_resnet": case_doc_resnet}


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in CASES:
        print("usage: test_torch.py {%s} POET WORKDIR CONFIG" % ",".join(CASES))
        return 2
    case, poet, work, config = sys.argv[1:]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        CASES[case](Ctx(poet, work, config))
    except (Failure, poet_torch.PoetTorchError) as e:
        print("FAIL: %s" % e)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
