"""poet_torch_arch — poet's config and member architectures in Python, for tools/poet_torch.py.

Reads a run config (JSON) the way src/config.c does for what the tools need: each member's network
as a tuple of Layer objects (the built-ins resnet-N and wrn-N-k included, as src/arch.c builds
them), its description (poet_arch_describe) and its shapes and tensor names (poet_arch_plan_build).
Needs nothing but the standard library; poet_torch re-exports everything here.
"""
import json
import re

# Defaults of the config keys this tool needs (src/config.c, poet_config_defaults).
DEFAULTS = {"data.classes": 10, "data.mean": 0.1307, "data.std": 0.3081, "data.shuffle": True,
            "data.train_images": "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
            "data.train_labels": "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
            "data.test_images": "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
            "data.test_labels": "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
            "model.members": 10, "training.batch_size": 200, "training.epochs": 1,
            "training.iterations": 0, "training.lr": 0.5, "training.momentum": 0.9,
            "training.weight_decay": 0.0, "training.nesterov": False,
            "training.schedule": "constant", "training.step_size": 1000, "training.gamma": 0.1,
            "training.min_lr": 0.0, "training.seed": 42}


class PoetTorchError(Exception):
    """A bad input file or argument: the CLI prints it as one line and exits 1."""


# ---------------------------------------------------------------------------------------------
# Config and architectures (src/config.c, src/arch.c)
# ---------------------------------------------------------------------------------------------

def config_get(config, key):
    """config["a"]["b"] for key "a.b", else poet's default."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return DEFAULTS[key]
        node = node[part]
    return node


def reference_arch(classes):
    """poet_config_reference_arch: conv(20,k3,s2) relu conv(40,k3,s2) relu avg_pool(k6,s6)
    linear(20) relu linear(K)."""
    return (Layer("conv", (20, 3, 2, 0, True)), Layer("relu"), Layer("conv", (40, 3, 2, 0, True)),
            Layer("relu"), Layer("avg_pool", (6, 6, 0)), Layer("linear", (20, True)),
            Layer("relu"), Layer("linear", (classes, True)))


class Layer:
    """One layer of a member network (poet_layer_spec): `kind` ("conv", "relu", "avg_pool",
    "max_pool", "linear", "add", "batchnorm"), `args` (conv: out, kernel, stride, padding, bias;
    pool: kernel, stride, padding or ("global",); linear: out, bias), `id` ("" or the layer's id,
    which names its tensors) and `inputs` (the layers it reads, () for the previous one, -1 for
    the images). Two layers are equal when poet_arch_equal says so: ids aside."""
    __slots__ = ("kind", "args", "id", "inputs")

    def __init__(self, kind, args=(), id="", inputs=()):
        self.kind, self.args, self.id, self.inputs = kind, tuple(args), id, tuple(inputs)

    def key(self):
        return (self.kind, self.args, self.inputs)

    def __eq__(self, other):
        return isinstance(other, Layer) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "Layer(%r, %r, %r, %r)" % (self.kind, self.args, self.id, self.inputs)

    def has_bias(self):
        return self.kind == "batchnorm" or (self.kind in ("conv", "linear") and self.args[-1])


def _builtin_arch(name, classes):
    """poet_arch_builtin (src/arch.c): resnet-N and wrn-N-k with their PyTorch-style ids and
    bias-free convolutions, or None when `name` is not one of them."""
    found = re.fullmatch(r"resnet-(\d+)", name)
    wrn = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    layers = []

    def put(kind, out=0, kernel=0, stride=0, input=-2, id=""):
        index = len(layers)
        reads = () if input in (-2, index - 1) else (input,)
        args = {"conv": (out, kernel, stride, kernel // 2, False), "linear": (out, True),
                "avg_pool": ("global",)}.get(kind, ())
        layers.append(Layer(kind, args, id, reads))
        return index

    def add(x, y):
        layers.append(Layer("add", (), "", (x, y)))
        return len(layers) - 1

    if found and int(found.group(1)) >= 8 and (int(found.group(1)) - 2) % 6 == 0 \
            and 9 + 21 * ((int(found.group(1)) - 2) // 6) <= 256:
        n = (int(found.group(1)) - 2) // 6
        put("conv", 16, 3, 1, id="conv1")
        put("batchnorm", id="bn1")
        x, channels = put("relu"), 16
        for s in range(1, 4):
            for b in range(n):
                width, stride = 16 << (s - 1), 2 if s > 1 and b == 0 else 1
                p = "layer%d.%d." % (s, b)
                put("conv", width, 3, stride, x, p + "conv1")
                put("batchnorm", id=p + "bn1")
                put("relu")
                put("conv", width, 3, 1, id=p + "conv2")
                y, shortcut = put("batchnorm", id=p + "bn2"), x
                if stride != 1 or channels != width:
                    put("conv", width, 1, stride, x, p + "downsample.0")
                    shortcut = put("batchnorm", id=p + "downsample.1")
                add(y, shortcut)
                x, channels = put("relu"), width
    elif wrn and int(wrn.group(1)) >= 10 and (int(wrn.group(1)) - 4) % 6 == 0 \
            and 1 <= int(wrn.group(2)) <= 64 and 7 + 24 * ((int(wrn.group(1)) - 4) // 6) <= 256:
        n, k = (int(wrn.group(1)) - 4) // 6, int(wrn.group(2))
        x, channels = put("conv", 16, 3, 1, id="conv1"), 16
        for s in range(1, 4):
            for b in range(n):
                width, stride = (16 * k) << (s - 1), 2 if s > 1 and b == 0 else 1
                p = "block%d.layer.%d." % (s, b)
                put("batchnorm", input=x, id=p + "bn1")
                o = put("relu")
                put("conv", width, 3, stride, id=p + "conv1")
                put("batchnorm", id=p + "bn2")
                put("relu")
                y, shortcut = put("conv", width, 3, 1, id=p + "conv2"), x
                if stride != 1 or channels != width:
                    shortcut = put("conv", width, 1, stride, o, p + "convShortcut")
                x, channels = add(y, shortcut), width
        put("batchnorm", id="bn1")
        put("relu")
    else:
        return None
    put("avg_pool")
    put("linear", classes, id="fc")
    return tuple(layers)


def _layer_spec(layer, where):
    """One layer object of the config as a Layer whose inputs are still ids (resolved by
    _arch); raises PoetTorchError for what poet's parser refuses that matters here."""
    if not isinstance(layer, dict) or "type" not in layer:
        raise PoetTorchError("%s: expected a layer object with a \"type\"" % where)

    def num(key, default=None):
        value = layer.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PoetTorchError("%s.%s: expected an integer, got %s"
                                 % (where, key, json.dumps(value)))
        return value

    def bias():
        value = layer.get("bias", True)
        if not isinstance(value, bool):
            raise PoetTorchError("%s.bias: expected true or false, got %s"
                                 % (where, json.dumps(value)))
        return value

    kind = layer["type"]
    if "bias" in layer and kind not in ("conv", "linear"):
        raise PoetTorchError("%s.bias: expected no \"bias\" on a %s layer" % (where, kind))
    if kind == "conv":
        args = (num("out_channels"), num("kernel"), num("stride", 1), num("padding", 0), bias())
    elif kind in ("relu", "batchnorm", "add"):
        args = ()
    elif kind in ("avg_pool", "max_pool"):
        if layer.get("global", False):
            args = ("global",)
        else:
            kernel = num("kernel")
            args = (kernel, num("stride", kernel), num("padding", 0))
    elif kind == "linear":
        args = (num("out_features"), bias())
    else:
        raise PoetTorchError("%s.type: unknown layer type %s" % (where, json.dumps(kind)))
    names = layer.get("inputs", []) if kind == "add" else (
        [layer["input"]] if "input" in layer else [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PoetTorchError("%s.inputs: expected an array of layer ids" % where)
    return Layer(kind, args, layer.get("id", ""), names)


def _arch(item, classes, where):
    if item is None or item == "reference":
        return reference_arch(classes)
    if isinstance(item, str):
        arch = _builtin_arch(item, classes)
        if arch is None:
            raise PoetTorchError("%s: unknown architecture %s" % (where, json.dumps(item)))
        return arch
    if not isinstance(item, list) or not item:
        raise PoetTorchError("%s: expected \"reference\", a built-in name or a non-empty array "
                             "of layers" % where)
    layers = [_layer_spec(layer, "%s[%d]" % (where, i)) for i, layer in enumerate(item)]
    ids = {}
    for i, layer in enumerate(layers):
        inputs = []
        for name in layer.inputs:  # ids of earlier layers, as src/config.c resolves them
            if name not in ids:
                raise PoetTorchError("%s[%d]: input %s is not the id of an earlier layer"
                                     % (where, i, json.dumps(name)))
            inputs.append(ids[name])
        if layer.kind != "add" and inputs == [i - 1]:
            inputs = []  # the previous layer: the default, stored as such
        layer.inputs = tuple(inputs)
        if layer.id:
            ids[layer.id] = i
    return tuple(layers)


def parse_config(text, source):
    """Config JSON text as a dict; `source` names it in the message of a PoetTorchError."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise PoetTorchError("%s: config does not parse as JSON: %s" % (source, e))
    if not isinstance(config, dict):
        raise PoetTorchError("%s: config is not a JSON object" % source)
    return config


def member_archs(config):
    """(archs, member_arch): the distinct architectures in first-seen order (their index is the
    checkpoint's arch_index) and each member's index into them, as src/config.c interns them."""
    classes = int(config_get(config, "data.classes"))
    model = config.get("model", {}) or {}
    members = model.get("members", DEFAULTS["model.members"])
    archs, member_arch = [], []

    def intern(arch):
        if arch not in archs:
            archs.append(arch)
        return archs.index(arch)

    if isinstance(members, list) and members:
        for g, group in enumerate(members):
            where = "model.members[%d]" % g
            if not isinstance(group, dict) or not isinstance(group.get("count"), int):
                raise PoetTorchError("%s: expected {\"count\": N, \"architecture\": ...}" % where)
            a = intern(_arch(group.get("architecture"), classes, where + ".architecture"))
            member_arch += [a] * group["count"]
    elif isinstance(members, int) and not isinstance(members, bool) and members > 0:
        a = intern(_arch(model.get("architecture"), classes, "model.architecture"))
        member_arch = [a] * members
    else:
        raise PoetTorchError("model.members: expected an integer >= 1 or an array of groups, got %s"
                             % json.dumps(members))
    return archs, member_arch


DESCRIBE_MAX = 512  # src/checkpoint.c: the architecture attribute is cut to 511 bytes


def describe(arch):
    """poet_arch_describe: the member's `architecture` attribute in the checkpoint."""
    words = []
    for s in arch:
        nobias = ",nobias" if s.kind in ("conv", "linear") and not s.args[-1] else ""
        if s.kind == "conv":
            pad = ",p%d" % s.args[3] if s.args[3] else ""
            word = "conv(%d,k%d,s%d%s%s)" % (s.args[0], s.args[1], s.args[2], pad, nobias)
        elif s.kind == "linear":
            word = "linear(%d%s)" % (s.args[0], nobias)
        elif s.kind in ("relu", "batchnorm"):
            word = s.kind
        elif s.kind == "add":
            word = "add(%s)" % ",".join("%d" % i for i in s.inputs)
        elif s.args[0] == "global":
            word = "%s(global)" % s.kind
        else:
            pad = ",p%d" % s.args[2] if s.args[2] else ""
            word = "%s(k%d,s%d%s)" % (s.kind, s.args[0], s.args[1], pad)
        if s.kind != "add" and len(s.inputs) == 1:
            word += "<%d" % s.inputs[0]
        words.append(word)
    return " ".join(words)[:DESCRIBE_MAX - 1]


def _window(i, s, k, stride, pad, c, h, w):
    if h + 2 * pad < k or w + 2 * pad < k:
        raise PoetTorchError("layer %d (%s): kernel %d does not fit input %dx%d"
                             % (i, describe([s]), k, h, w))
    return c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1


def plan(arch, input_shape, classes):
    """Shape inference (poet_arch_plan_build): ([(layer, inputs, in CHW, out CHW)], the parameter
    tensors [(name, shape)] in member layout (layer order, weight before bias), the state tensors
    [(name, shape)] (batchnorm's running_mean, running_var) in member state layout)."""
    shape0 = tuple(int(v) for v in input_shape)
    layers, tensors, states, count = [], [], [], {"conv": 0, "linear": 0, "batchnorm": 0}
    outs = []
    for i, s in enumerate(arch):
        inputs = s.inputs or (i - 1,)
        shapes = [shape0 if j < 0 else outs[j] for j in inputs]
        if any(sh != shapes[0] for sh in shapes):
            raise PoetTorchError("layer %d (add): inputs of different shapes %s" % (i, shapes))
        c, h, w = shapes[0]
        prefix = None
        if s.kind in count:
            count[s.kind] += 1
            prefix = s.id or "%s%d" % ({"conv": "conv", "linear": "fc", "batchnorm": "bn"}[s.kind],
                                       count[s.kind])
        if s.kind == "conv":
            out, k, stride, pad, _ = s.args
            tensors.append((prefix + ".weight", (out, c, k, k)))
            _, h2, w2 = _window(i, s, k, stride, pad, c, h, w)
            shape = (out, h2, w2)
        elif s.kind == "linear":
            tensors.append((prefix + ".weight", (s.args[0], c * h * w)))
            shape = (s.args[0], 1, 1)
        elif s.kind == "batchnorm":
            tensors += [(prefix + ".weight", (c,)), (prefix + ".bias", (c,))]
            states += [(prefix + ".running_mean", (c,)), (prefix + ".running_var", (c,))]
            shape = (c, h, w)
        elif s.kind in ("avg_pool", "max_pool"):
            shape = (c, 1, 1) if s.args[0] == "global" else _window(i, s, *s.args, c, h, w)
        else:
            shape = (c, h, w)
        if s.kind in ("conv", "linear") and s.args[-1]:
            tensors.append((prefix + ".bias", (shape[0],)))
        layers.append((s, inputs, (c, h, w), shape))
        outs.append(shape)
    if outs[-1] != (classes, 1, 1):
        raise PoetTorchError("network ends with %dx%dx%d outputs, expected %d logits"
                             % (outs[-1] + (classes,)))
    return layers, tensors, states
