"""ONNX in PyTorch, for the tests and benchmarks of ``models.from_onnx``: networks to export,
the export call, and an independent reference that runs an ONNX file in PyTorch.

    net = resnet((2, 2, 2, 2))                      # torchvision's ResNet-18 layout
    export(net, "resnet18.onnx", (1, 3, 224, 224))  # the legacy (TorchScript) exporter
    ref = TorchOnnx("resnet18.onnx")                # reads with the onnx package, runs in torch
    ref.run(x, ["layer3"])                          # {"layer3": tensor}

``TorchOnnx`` shares nothing with minigrad's reader or ops: the file is parsed by the ``onnx``
package and every operator is written from the ONNX specification on torch.nn.functional (it
folds nothing, so BatchNormalization runs as torch's batch_norm). Needs torch and onnx.
"""
import math
import os
import warnings
from collections import OrderedDict

import torch
from torch import nn

TF = nn.functional


# --- networks (torchvision's layouts, written out: torchvision is not a dependency) ----------
class Features(nn.Module):
    """Runs ``body`` and returns the outputs of the named children listed in ``taps`` (each
    becomes a named graph output of the export), in order."""

    def __init__(self, body, taps):
        super().__init__()
        self.body, self.taps = body, list(taps)

    def forward(self, x):
        out = []
        for name, child in self.body.named_children():
            x = child(x)
            if name in self.taps:
                out.append(x)
        return tuple(out) if len(out) > 1 else out[0]


def alexnet(width=1.0, classes=1000):
    """torchvision's AlexNet (``features``, adaptive pool to 6×6, ``classifier``) as a flat
    Sequential whose children are named as the paper's layers, channels scaled by ``width``."""
    c = [max(1, round(n * width)) for n in (64, 192, 384, 256, 256, 4096)]
    layers = [
        ("conv1", nn.Conv2d(3, c[0], 11, 4, 2)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(c[0], c[1], 5, padding=2)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(c[1], c[2], 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(c[2], c[3], 3, padding=1)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(c[3], c[4], 3, padding=1)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(3, 2)), ("avgpool", nn.AdaptiveAvgPool2d((6, 6))),
        ("flatten", nn.Flatten()), ("drop6", nn.Dropout()),
        ("fc6", nn.Linear(c[4] * 36, c[5])), ("relu6", nn.ReLU()), ("drop7", nn.Dropout()),
        ("fc7", nn.Linear(c[5], c[5])), ("relu7", nn.ReLU()), ("fc8", nn.Linear(c[5], classes)),
    ]
    return nn.Sequential(OrderedDict(layers))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3×3 conv+BN, a 1×1 conv+BN shortcut when the
    shape changes, the residual Add, then ReLU."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = TF.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return TF.relu(y + (x if self.downsample is None else self.downsample(x)))


def resnet(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), classes=1000):
    """torchvision's ResNet with BasicBlocks ((2, 2, 2, 2): ResNet-18), children stem, layer1..,
    pool, fc; BatchNorm statistics randomised so that folding them is tested."""
    stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                         nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers, cin = [("stem", stem)], widths[0]
    for i, (n, cout) in enumerate(zip(blocks, widths)):
        stages = [BasicBlock(cin if j == 0 else cout, cout, 1 if i == 0 or j else 2)
                  for j in range(n)]
        layers.append((f"layer{i + 1}", nn.Sequential(*stages)))
        cin = cout
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(cin, classes))]
    net = nn.Sequential(OrderedDict(layers))
    randomise_batch_norm(net)
    return net


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze 1×1, then 1×1 and 3×3 expands concatenated."""

    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        x = TF.relu(self.squeeze(x))
        return torch.cat([TF.relu(self.expand1(x)), TF.relu(self.expand3(x))], 1)


def squeezenet(width=1.0, classes=1000):
    """torchvision's SqueezeNet 1.1 (ceil-mode max pools, Fire modules, a conv classifier and a
    global average pool), channels scaled by ``width``."""
    w = lambda n: max(1, round(n * width))  # noqa: E731
    fire = lambda cin, s, e: Fire(w(cin), w(s), w(e), w(e))  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, w(64), 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(64, 16, 64), fire(128, 16, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(128, 32, 128), fire(256, 32, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256),
        nn.Dropout(), nn.Conv2d(w(512), classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten())


class Inception(nn.Module):
    """A GoogLeNet inception block: 1×1; 1×1→3×3; 1×1→5×5; 3×3 max pool (stride 1)→1×1;
    concatenated over channels."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = nn.Conv2d(cin, c1, 1)
        self.b3 = nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.ReLU(), nn.Conv2d(c3r, c3, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.ReLU(), nn.Conv2d(c5r, c5, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(cin, cp, 1))

    def forward(self, x):
        return TF.relu(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1))


class InceptionNet(nn.Module):
    """A GoogLeNet-style stem and inception block, with the remaining operators of the issue
    around them: normalisation by Sub/Div, LeakyReLU, ReLU6 (Clip), a BatchNorm after a pool
    (not foldable), an average pool with ceil_mode and count_include_pad=False, a dilated and
    grouped conv, Gemm, MatMul, Reshape and Softmax."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        w = width
        self.register_buffer("mean", torch.tensor([0.1, -0.2, 0.3]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([1.1, 0.9, 1.3]).reshape(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 2 * w, 7, 2, 3)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(2 * w)
        self.grouped = nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2, groups=2)
        self.block = Inception(2 * w, w, w, 2 * w, w // 2, w, w)
        self.avg = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc = nn.Linear(5 * w * 5 * 5, 2 * w)  # for 32×32 inputs
        self.proj = nn.Parameter(torch.randn(2 * w, classes) / math.sqrt(2 * w))
        randomise_batch_norm(self)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = TF.leaky_relu(self.stem(x), 0.1)
        x = self.bn(self.pool(x))
        x = TF.relu6(self.grouped(x))
        x = self.avg(self.block(x))
        x = TF.relu(self.fc(x.reshape(x.shape[0], -1)))
        return torch.softmax(x @ self.proj, 1)


def randomise_batch_norm(net, seed=0):
    """Non-trivial BN parameters and statistics (fresh BNs are the identity up to ε)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def export(net, path, shape, output_names=None, opset=17, fold=True):
    """``net`` in evaluation mode to an ONNX file, with the legacy (TorchScript) exporter.

    ``fold=False`` keeps BatchNormalization nodes (the exporter's constant folding would fuse
    them into the convs itself)."""
    net.eval()
    with warnings.catch_warnings():  # the legacy exporter announces its deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(shape),), os.fspath(path), dynamo=False,
                          opset_version=opset, input_names=["image"],
                          output_names=output_names, do_constant_folding=fold)
    return path


# --- an ONNX file run in PyTorch --------------------------------------------------------------
class TorchOnnx:
    """Runs an ONNX file in PyTorch, op by op from the ONNX specification (no folding).

    Initializers and the input are cast to ``dtype``; ``run(x, names)`` returns the values of
    the named tensors, differentiable with respect to ``x``.
    """

    def __init__(self, path, dtype=torch.float64, device="cpu"):
        import onnx
        from onnx import numpy_helper

        model = onnx.load(os.fspath(path))
        self.opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        self.dtype, self.device = dtype, device
        graph = model.graph
        self.consts = {t.name: self._tensor(numpy_helper.to_array(t)) for t in graph.initializer}
        self.input = next(i.name for i in graph.input if i.name not in self.consts)
        self.nodes = list(graph.node)
        self._attr = onnx.helper.get_attribute_value
        self._to_array = numpy_helper.to_array

    def _tensor(self, a):
        t = torch.from_numpy(a.copy()).to(self.device)
        return t.to(self.dtype) if t.is_floating_point() else t

    def run(self, x, names):
        values = dict(self.consts)
        values[self.input] = x
        for node in self.nodes:
            attrs = {a.name: self._attr(a) for a in node.attribute}
            args = [values[n] if n else None for n in node.input]
            if node.op_type == "Constant":
                out = self._tensor(self._to_array(attrs["value"]))
            else:
                out = getattr(self, "op_" + node.op_type)(attrs, *args)
            values[node.output[0]] = out
            if all(n in values for n in names):
                break
        return {n: values[n] for n in names}

    # each op_X(attrs, *inputs) follows the ONNX operator X
    @staticmethod
    def _pad4(attrs, x, value=0.0):
        t, l, b, r = attrs.get("pads", [0, 0, 0, 0])
        return TF.pad(x, (l, r, t, b), value=value) if any((t, l, b, r)) else x

    def op_Conv(self, a, x, w, b=None):
        t, l, bottom, r = a.get("pads", [0, 0, 0, 0])
        pad = (t, l) if (t, l) == (bottom, r) else 0  # symmetric: torch's own (faster) padding
        x = x if pad else self._pad4(a, x)
        return TF.conv2d(x, w, b, a.get("strides", 1), pad, a.get("dilations", 1),
                         a.get("group", 1))

    def op_MaxPool(self, a, x):
        t, l, b, r = a.get("pads", [0, 0, 0, 0])
        k, s, ceil = a["kernel_shape"], a.get("strides", [1, 1]), bool(a.get("ceil_mode", 0))
        if (t, l) == (b, r):
            return TF.max_pool2d(x, k, s, (t, l), ceil_mode=ceil)
        return TF.max_pool2d(self._pad4(a, x, -math.inf), k, s)

    def op_AveragePool(self, a, x):
        t, l, b, r = a.get("pads", [0, 0, 0, 0])
        k, s, ceil = a["kernel_shape"], a.get("strides", [1, 1]), bool(a.get("ceil_mode", 0))
        include = bool(a.get("count_include_pad", 0))
        if (t, l) == (b, r):
            return TF.avg_pool2d(x, k, s, (t, l), ceil, include)
        total = TF.avg_pool2d(self._pad4(a, x), k, s, divisor_override=1)
        ones = self._pad4(a, torch.ones_like(x[:1, :1])) if not include else None
        count = math.prod(k) if include else TF.avg_pool2d(ones, k, s, divisor_override=1)
        return total / count

    def op_GlobalAveragePool(self, a, x):
        return x.mean((2, 3), keepdim=True)

    def op_LRN(self, a, x):
        n, alpha = a["size"], a.get("alpha", 1e-4)
        beta, bias = a.get("beta", 0.75), a.get("bias", 1.0)
        if n % 2:
            return TF.local_response_norm(x, n, alpha, beta, bias)
        N, C, H, W = x.shape  # the window sum as a conv over channels: [c-⌊(n-1)/2⌋, c+⌈(n-1)/2⌉]
        sq = TF.pad((x * x).reshape(N, 1, C, H * W), (0, 0, (n - 1) // 2, n // 2))
        s = TF.conv2d(sq, torch.ones(1, 1, n, 1, dtype=x.dtype)).reshape(N, C, H, W)
        return x / (bias + alpha / n * s) ** beta

    def op_BatchNormalization(self, a, x, scale, b, mean, var):
        return TF.batch_norm(x, mean, var, scale, b, False, 0.0, a.get("epsilon", 1e-5))

    def op_Gemm(self, a, x, w, c=None):
        x = x.T if a.get("transA", 0) else x
        y = a.get("alpha", 1.0) * (x @ (w.T if a.get("transB", 0) else w))
        return y if c is None else y + a.get("beta", 1.0) * c

    def op_MatMul(self, a, x, w):
        return x @ w

    def op_Flatten(self, a, x):
        k = a.get("axis", 1) % x.ndim
        return x.reshape(math.prod(x.shape[:k]), -1)

    def op_Reshape(self, a, x, shape):
        dims = [x.shape[i] if d == 0 and not a.get("allowzero", 0) else d
                for i, d in enumerate(shape.tolist())]
        return x.reshape(dims)

    def op_Concat(self, a, *xs):
        return torch.cat(xs, a["axis"])

    def op_Softmax(self, a, x):
        if self.opset >= 13:
            return torch.softmax(x, a.get("axis", -1))
        k = a.get("axis", 1) % x.ndim
        return torch.softmax(x.reshape(math.prod(x.shape[:k]), -1), 1).reshape(x.shape)

    def op_Clip(self, a, x, lo=None, hi=None):
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        return torch.clamp(x, None if lo is None else float(lo), None if hi is None else float(hi))

    def op_Relu(self, a, x):
        return torch.relu(x)

    def op_LeakyRelu(self, a, x):
        return TF.leaky_relu(x, a.get("alpha", 0.01))

    def op_Dropout(self, a, x, *rest):
        return x

    def op_Identity(self, a, x):
        return x

    def op_Add(self, a, x, y):
        return x + y

    def op_Sub(self, a, x, y):
        return x - y

    def op_Mul(self, a, x, y):
        return x * y

    def op_Div(self, a, x, y):
        return x / y


# --- the benchmark's exported networks (random weights, cached) ------------------------------
BENCH_NETS = {  # name -> (network factory, input shape, graph output names)
    "resnet18": (lambda: Features(resnet((2, 2, 2, 2)), ["layer1", "layer2", "layer3", "layer4",
                                                          "fc"]),
                 (1, 3, 224, 224), ["layer1", "layer2", "layer3", "layer4", "fc"]),
    "alexnet": (lambda: alexnet(), (1, 3, 224, 224), ["fc8"]),
}


def exported(name, directory=None):
    """The path of benchmark network ``name`` exported with seeded random weights (made once,
    then reused from ``directory``, default the weights cache's ``onnx-bench/``)."""
    if directory is None:
        from weights import cache_dir

        directory = os.path.join(cache_dir(), "onnx-bench")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}-random.onnx")
    if not os.path.exists(path):
        factory, shape, names = BENCH_NETS[name]
        torch.manual_seed(0)
        tmp = path + ".part"
        export(factory(), tmp, shape, names)
        os.replace(tmp, path)  # never a half-written file under the final name
    return path
