"""Any CNN exported to ONNX, as a representation: ``models.from_onnx(path)``.

The file is read by ``weights.onnx_file`` (the project's own protobuf reader: no framework at
run time); each node becomes a step on minigrad's ops (``models.onnx_ops``). The layers are
the named outputs of the nodes, in the graph's (topological) order. At load time, nodes whose
inputs are all constants are evaluated once (Constant, Identity of an initializer, ...),
BatchNormalization is folded into the Conv before it where it can be, and an unsupported
operator is refused with the node's name and type and the list of supported ones.

Preprocessing is torchvision's convention: RGB pixels scaled to [0, 1], then
``(pixel − mean) / std`` per channel, ImageNet's mean and std unless given.
"""
import os

from minigrad import backend
from minigrad.tensor import Tensor, no_grad
from weights.onnx_file import OnnxError, read_onnx

from . import onnx_ops
from .base import Representation
from .cnn import IMAGENET_MEAN, IMAGENET_STD, resize_and_crop


class Step:
    """One node to run: ``run(*values of inputs) -> value of output``."""

    def __init__(self, node, run, window, inputs):
        self.node, self.run, self.window = node, run, window
        self.inputs, self.output = list(inputs), node.outputs[0]


class _Loader:
    """The loading context the op builders see (constants, folding, the opset)."""

    def __init__(self, graph):
        self.graph, self.opset = graph, graph.opset
        self.consts = dict(graph.initializers)  # name -> host array
        self.steps, self.producer = [], {}  # producer: output name -> Step
        self.uses = {}
        for node in graph.nodes:
            for name in node.inputs:
                self.uses[name] = self.uses.get(name, 0) + 1
        for info in graph.outputs:
            self.uses[info.name] = self.uses.get(info.name, 0) + 1

    def constant(self, node, index, what):
        name = node.inputs[index] if index < len(node.inputs) else ""
        if name not in self.consts:
            raise OnnxError(f"node {node.name!r} ({node.op_type}): {what} (input {index}, "
                            f"{name!r}) must be a constant in the file")
        return self.consts[name]

    def add_constant(self, node, what, array):
        name = f"{node.outputs[0]}::{what}"
        self.consts[name] = array
        return name

    def _float_copy(self, name):
        """``name``, or for an integer constant the name of a float copy of it."""
        array = self.consts.get(name)
        if array is None or array.dtype.kind == "f":
            return name
        self.consts[name + "::float"] = array.astype(backend.np.float64)
        return name + "::float"

    def fold_into_conv(self, bn, a, c):
        """Fold y = a·conv(x) + c into the conv's weights when the conv feeds only this BN."""
        step = self.producer.get(bn.inputs[0])
        if step is None or step.node.op_type != "Conv" or self.uses.get(step.output) != 1:
            return False
        if not all(n in self.consts for n in step.inputs[1:] if n):
            return False
        np = backend.np
        w = self.consts[step.inputs[1]].astype(np.float64)
        b = self.consts[step.inputs[2]].astype(np.float64) if len(step.inputs) > 2 and \
            step.inputs[2] else np.zeros(w.shape[0])
        del self.producer[step.output]
        step.output = bn.outputs[0]
        step.inputs = [step.inputs[0], self.add_constant(bn, "weight", w * a[:, None, None, None]),
                       self.add_constant(bn, "bias", b * a + c)]
        step.node = step.node._replace(name=f"{step.node.name}+{bn.name}")
        self.producer[step.output] = step
        return True

    def build(self, node, known):
        supported = node.op_type in onnx_ops.OPS or node.op_type == "Constant"
        if node.domain not in ("", "ai.onnx") or not supported:
            raise OnnxError(
                f"node {node.name!r} has operator {node.op_type!r}"
                f"{f' (domain {node.domain!r})' if node.domain else ''}, which is not supported; "
                f"supported: {', '.join(sorted(onnx_ops.OPS) + ['Constant'])}")
        for extra in node.outputs[1:]:
            if extra and self.uses.get(extra):
                raise OnnxError(f"node {node.name!r} ({node.op_type}): its output {extra!r} "
                                f"(beyond the first) is used, which is not supported")
        for name in node.inputs:
            if name and name not in known and name not in self.consts:
                raise OnnxError(f"node {node.name!r} reads {name!r}, which nothing before it "
                                f"produces (graph not topologically sorted?)")
        if node.op_type == "Constant":
            self.consts[node.outputs[0]] = onnx_ops.constant_value(node)
            return
        built = onnx_ops.OPS[node.op_type](node, self)
        if built is None:  # folded into an earlier step
            return
        run, window, inputs = built if len(built) == 3 else (*built, node.inputs)
        if all(n in self.consts for n in inputs if n):
            self.consts[node.outputs[0]] = _evaluate(node, run, [self.consts.get(n) for n in
                                                                 inputs])
            return
        if node.op_type in ("Add", "Sub", "Mul", "Div"):  # integer constants would promote
            inputs = [self._float_copy(n) for n in inputs]
        step = Step(node, run, window, inputs)
        self.steps.append(step)
        self.producer[step.output] = step


def _evaluate(node, run, arrays):
    """A node of constants, evaluated once on the host (float constants as Tensors)."""
    with no_grad():
        args = [None if a is None else Tensor(a, dtype=a.dtype) if a.dtype.kind == "f" else a
                for a in arrays]
        try:
            out = run(*args)
        except (ValueError, TypeError, IndexError) as e:
            raise OnnxError(f"node {node.name!r} ({node.op_type}) on constants: {e}") from None
    return out.data if isinstance(out, Tensor) else backend.np.asarray(out)


class OnnxNet(Representation):
    """A CNN read from an ONNX file (see the module docstring and ``from_onnx``)."""

    kind = "cnn"
    channels = 3

    def __init__(self, path, input_size=None, mean=None, std=None, device="cpu",
                 dtype="float32"):
        self.path = os.fspath(path)
        graph = read_onnx(self.path)
        self.name = os.path.basename(self.path)
        self.dtype = dtype
        self.device = backend.check_device(device)
        self._input, self.input_size = _image_input(self.path, graph, input_size)
        self.mean, self.std, default = _normalization(mean, std)
        loader = _Loader(graph)
        known = {self._input}
        try:
            for node in graph.nodes:
                loader.build(node, known)
                known.update(node.outputs)
        except OnnxError as e:
            raise OnnxError(f"{self.path}: {e}") from None
        if not loader.steps:
            raise OnnxError(f"{self.path}: no node depends on the input {self._input!r}")
        self._steps = loader.steps
        self.layers = tuple(s.output for s in self._steps)
        if len(set(self.layers)) != len(self.layers):
            raise OnnxError(f"{self.path}: two nodes write the same output name")
        self._index = {name: i for i, name in enumerate(self.layers)}
        read = {name for step in self._steps for name in step.inputs}  # not folded-away ones
        self._host = {name: a for name, a in loader.consts.items() if name in read}
        self._plans, self._shapes, self._fields = {}, {}, None
        self.meta = {"path": self.path, "source": f"ONNX opset {graph.opset}" + (
            f", from {graph.producer}" if graph.producer else ""), "pretrained": None,
            "normalization": ("ImageNet mean/std (the default; pass mean=, std= for a network "
                              "trained otherwise)" if default else "mean/std as given")}
        self.to(self.device)

    # --- running ---------------------------------------------------------------------------
    def forward(self, x, layer):
        """x (N, 3, H, W) in the input space -> Tensor at ``layer``; only its ancestors run."""
        return self.forward_layers(x, [layer])[layer]

    def forward_layers(self, x, layers):
        """One pass computing every one of ``layers``; a dict name -> Tensor."""
        wanted = tuple(self.check_layer(name) for name in layers)
        if not isinstance(x, Tensor):
            x = Tensor(backend.to_device(x, self.device), dtype=self.dtype)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects an input of shape (N, 3, H, W), got {x.shape}")
        values = {self._input: x}
        for step in self._steps_for(wanted):
            args = [None if not n else values[n] if n in values else self._values[n]
                    for n in step.inputs]
            values[step.output] = step.run(*args)
        return {name: values[name] for name in wanted}

    def _steps_for(self, wanted):
        """The steps ``wanted`` depend on, in graph order (cached)."""
        plan = self._plans.get(wanted)
        if plan is None:
            needed, todo = set(), [self._index[name] for name in wanted]
            while todo:
                i = todo.pop()
                if i not in needed:
                    needed.add(i)
                    todo += [self._index[n] for n in self._steps[i].inputs if n in self._index]
            plan = self._plans[wanted] = [self._steps[i] for i in sorted(needed)]
        return plan

    # has_weights / require_weights: the base class's (an ONNX file carries all its weights)

    # --- geometry --------------------------------------------------------------------------
    def _all_shapes(self, hw):
        """Shape of every layer's output for one image of size hw: one pass on zeros (cached)."""
        hw = tuple(int(n) for n in hw)
        if hw not in self._shapes:
            x = Tensor(backend.xp_for(self.device).zeros((1, 3) + hw, dtype=self.dtype))
            with no_grad():
                values = self.forward_layers(x, self.layers)
            self._shapes[hw] = {name: tuple(v.shape) for name, v in values.items()}
        return self._shapes[hw]

    def output_shape(self, layer, hw=None):
        """The shape at ``layer`` for one image of size ``hw`` (default: the input size),
        batch axis dropped: (C, H, W) for maps, (features,) after flattening."""
        self.check_layer(layer)
        hw = tuple(self.input_size if hw is None else hw)
        if hw == tuple(self.input_size):
            return self._all_shapes(hw)[layer][1:]
        x = Tensor(backend.xp_for(self.device).zeros((1, 3) + hw, dtype=self.dtype))
        with no_grad():  # only this layer's ancestors: a graph fixed to one size may fail later
            return tuple(self.forward(x, layer).shape[1:])

    def receptive_field(self, layer):
        """(size, stride) in input pixels of one unit at ``layer``, at the input size.

        Composed over the graph: size += (k − 1)·stride, stride *= s per step; where branches
        meet (Add, Concat) the larger of each. Steps that mix every position (Flatten, Gemm
        on a map, global pooling) see their whole input, as the fc layers of ``models.cnn``.
        Non-square geometry reports the larger axis.
        """
        self.check_layer(layer)
        if self._fields is None:
            shapes, fields = self._all_shapes(self.input_size), {self._input: (1, 1, 1, 1)}
            shapes[self._input] = (1, 3) + tuple(self.input_size)
            for step in self._steps:
                ins = [n for n in step.inputs if n in fields]
                sh, sw, th, tw = (max(fields[n][i] for n in ins) for i in range(4))
                kh, kw, s1, s2 = step.window(shapes[ins[0]])
                fields[step.output] = (sh + (kh - 1) * th, sw + (kw - 1) * tw, th * s1, tw * s2)
            self._fields = fields
        sh, sw, th, tw = self._fields[layer]
        return max(sh, sw), max(th, tw)

    # --- pixels <-> input space ------------------------------------------------------------
    def input_scale(self):
        """The slope of ``preprocess`` per pixel unit (0–255), per channel: 1 / (255·std)."""
        np = backend.np
        return 1.0 / (255.0 * np.asarray(self.std, dtype=np.float64))

    def preprocess(self, image):
        """uint8 HxW[x3|x4] image -> Tensor (1, 3, H, W): shorter side to the input size, centre
        crop, then ``(pixel/255 − mean) / std`` per RGB channel."""
        np = backend.np
        a = resize_and_crop(image, self.input_size).astype(np.float64) / 255.0  # (H, W, 3)
        a = (a - np.asarray(self.mean)) / np.asarray(self.std)
        a = np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=self.dtype)
        return Tensor(backend.to_device(a, self.device), dtype=self.dtype)

    def deprocess(self, x):
        """Tensor or array (1, 3, H, W) or (3, H, W) in the input space -> uint8 HxWx3 RGB."""
        np = backend.np
        a = backend.asnumpy(x.data if isinstance(x, Tensor) else x).astype(np.float64)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"deprocess expects (1, 3, H, W) or (3, H, W), got {a.shape}")
        a = a.transpose(1, 2, 0) * np.asarray(self.std) + np.asarray(self.mean)
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)

    def to(self, device):
        """Move the constants to ``device`` ('cpu' or 'cuda'); returns self. Float constants
        take the network's dtype; integer ones (shapes) stay host arrays."""
        self.device = backend.check_device(device)
        self._values = {name: Tensor(backend.to_device(a, self.device), dtype=self.dtype)
                        if a.dtype.kind == "f" else a for name, a in self._host.items()}
        return self

    def __repr__(self):
        return (f"<OnnxNet {self.name}: {len(self.layers)} layers, input {self.input_size[0]}x"
                f"{self.input_size[1]}, {self.device}, {self.meta['source']}; "
                f"{self.meta['normalization']}>")


def _image_input(path, graph, input_size):
    """The graph's one image input and the (H, W) to use: the graph's static size, else
    ``input_size`` (which, when given, wins)."""
    if len(graph.inputs) != 1:
        names = ", ".join(repr(i.name) for i in graph.inputs) or "none"
        raise OnnxError(f"{path}: the graph must take one image input, it takes {names}")
    info = graph.inputs[0]
    if info.elem_type not in (1, 11, 0):
        raise OnnxError(f"{path}: input {info.name!r} has element type {info.elem_type}; "
                        f"only float and double inputs are supported")
    if info.dims and (len(info.dims) != 4 or info.dims[1] not in (3, None)):
        raise OnnxError(f"{path}: input {info.name!r} has shape {info.dims}; an (N, 3, H, W) "
                        f"RGB image input is needed")
    static = tuple(info.dims[2:]) if len(info.dims) == 4 else ()
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2 or not all(isinstance(n, int) and n > 0 for n in size):
            raise ValueError(f"input_size must be (H, W) positive integers, got {input_size!r}")
        return info.name, size
    if len(static) == 2 and None not in static:
        return info.name, static
    raise OnnxError(f"{path}: the graph's input size is not fixed ({info.dims}); pass "
                    f"input_size=(H, W)")


def _normalization(mean, std):
    """(mean, std, defaulted): three floats each, for pixels scaled to [0, 1]."""
    defaulted = mean is None and std is None
    mean = IMAGENET_MEAN if mean is None else tuple(float(m) for m in mean)
    std = IMAGENET_STD if std is None else tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each (RGB, pixels in [0, 1]) and std > 0, "
                         f"got mean={mean}, std={std}")
    return mean, std, defaulted


def from_onnx(path, input_size=None, mean=None, std=None, device="cpu", dtype="float32"):
    """The CNN in ONNX file ``path`` as a representation.

    Args:
        input_size: (H, W), needed when the graph's input size is not fixed.
        mean, std: per RGB channel, for pixels in [0, 1] (default ImageNet's, as torchvision).
        device: "cpu" or "cuda"; dtype: "float32" (or "float64" for gradient checks).
    """
    return OnnxNet(path, input_size=input_size, mean=mean, std=std, device=device, dtype=dtype)
