"""Shared machinery of the CNN representations (AlexNet variants, VGG-16).

A network is an ordered list of layer objects (``Conv``, ``ReLU``, ``MaxPool``, ``LRN``,
``FC``), each with a name, a forward on minigrad Tensors, its parameter shapes and its
geometry (output shape, receptive field). ``CNN`` turns such a list plus a weights source into
a ``models.base.Representation``.

Conventions: NCHW input, OIHW conv weights, fc weights (out, in) taking the NCHW flatten order
``c*H*W + h*W + w`` (PyTorch's and Caffe's), float32 constants (no gradient) on the model's
device. Dropout is the identity (evaluation mode), so it does not appear at all.
"""
import contextlib
import math
import os
from collections.abc import Mapping

from minigrad import F, backend
from minigrad.ops.conv import conv_output_size
from minigrad.ops.pool import pool_output_size
from minigrad.tensor import Tensor
from weights.errors import WeightsError
from weights.npz import load_npz, param_mismatches

from .base import Representation


class MissingWeightsError(WeightsError):
    """A layer was asked for whose weights were not loaded (fc6-fc8 with conv-only weights), or
    a network with no embedded default was asked for its default weights."""


# --- layers ----------------------------------------------------------------------------------
class Conv:
    """Cross-correlation, zero padding ``pad``, ``groups`` contiguous channel groups."""

    def __init__(self, name, cin, cout, k, stride=1, pad=0, groups=1):
        self.name, self.cin, self.cout, self.k = name, cin, cout, k
        self.stride, self.pad, self.groups = stride, pad, groups

    def param_shapes(self):
        return {f"{self.name}.weight": (self.cout, self.cin // self.groups, self.k, self.k),
                f"{self.name}.bias": (self.cout,)}

    def fan_in(self):
        return self.cin // self.groups * self.k * self.k

    def __call__(self, x, p):
        return F.conv2d(x, p[f"{self.name}.weight"], p[f"{self.name}.bias"], stride=self.stride,
                        padding=self.pad, groups=self.groups)

    def out_shape(self, shape):
        _, h, w = shape
        return (self.cout,) + tuple(conv_output_size(n, self.k, self.stride, self.pad)
                                    for n in (h, w))

    def window(self, shape):
        return self.k, self.stride


class ReLU:
    def __init__(self, name):
        self.name = name

    def param_shapes(self):
        return {}

    def __call__(self, x, p):
        return F.relu(x)

    def out_shape(self, shape):
        return shape

    def window(self, shape):
        return 1, 1


class LRN(ReLU):
    """Across-channel LRN, x / (k + alpha/size · Σ x²)^beta (Caffe's and PyTorch's alpha)."""

    def __init__(self, name, size=5, alpha=1e-4, beta=0.75, k=1.0):
        self.name, self.size, self.alpha, self.beta, self.k = name, size, alpha, beta, k

    def __call__(self, x, p):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class MaxPool(ReLU):
    """Max pooling k×k, stride s; ``ceil_mode`` for the Caffe networks (Caffe rounds up)."""

    def __init__(self, name, k, stride, ceil_mode=False):
        self.name, self.k, self.stride, self.ceil_mode = name, k, stride, ceil_mode

    def __call__(self, x, p):
        return F.max_pool2d(x, self.k, self.stride, ceil_mode=self.ceil_mode)

    def out_shape(self, shape):
        c, h, w = shape
        return (c,) + tuple(pool_output_size(n, self.k, self.stride, ceil_mode=self.ceil_mode)
                            for n in (h, w))

    def window(self, shape):
        return self.k, self.stride


class FC:
    """Fully connected layer y = x Wᵀ + b, W (out, in).

    The first fc layer after the conv stack (``flatten=True``) flattens NCHW as
    ``c*H*W + h*W + w``, after an adaptive average pool to ``pool`` × ``pool`` when given
    (torchvision's AlexNet and VGG); without it the conv stack must end at exactly ``spatial``.
    """

    def __init__(self, name, cin, cout, flatten=False, pool=None, spatial=None):
        self.name, self.cin, self.cout = name, cin, cout
        self.flatten, self.pool, self.spatial = flatten, pool, spatial

    def param_shapes(self):
        return {f"{self.name}.weight": (self.cout, self.cin), f"{self.name}.bias": (self.cout,)}

    def fan_in(self):
        return self.cin

    def __call__(self, x, p):
        if self.flatten:
            if self.pool is not None:
                x = F.adaptive_avg_pool2d(x, self.pool)
            elif tuple(x.shape[1:]) != self.spatial:
                raise ValueError(
                    f"{self.name} expects its input of shape {self.spatial} (the network's input "
                    f"size), got {tuple(x.shape[1:])}; resize the image to the input size"
                )
            x = F.flatten(x, 1)  # (N, C, H, W) -> (N, C*H*W)
        return F.linear(x, p[f"{self.name}.weight"], p[f"{self.name}.bias"])

    def out_shape(self, shape):
        return (self.cout,)

    def window(self, shape):
        """An fc layer sees its whole input: a conv whose kernel is the input's spatial size
        (an adaptive pool in front changes nothing: its bins together cover the input)."""
        return (shape[1], 1) if self.flatten else (1, 1)


# --- preprocessing ---------------------------------------------------------------------------
class Normalization:
    """Pixel space <-> network input: ``x = (pixel · pixel_range/255 − mean) / std``.

    ``order`` is the input channel order ("RGB" or "BGR"); ``mean`` and ``std`` are given in
    that order and in units of ``pixel_range`` (255 for Caffe nets, 1 for torchvision).
    """

    def __init__(self, order="RGB", pixel_range=255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
        if order not in ("RGB", "BGR"):
            raise ValueError(f"channel order must be 'RGB' or 'BGR', got {order!r}")
        self.order, self.pixel_range = order, float(pixel_range)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __repr__(self):
        return (f"Normalization(order={self.order!r}, pixel_range={self.pixel_range}, "
                f"mean={self.mean}, std={self.std})")


CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # ilsvrc_2012_mean.npy, per channel
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalization_from_meta(meta, default):
    """The preprocessing a converted file records (weights/ metadata), else ``default``."""
    pre = dict(meta.get("preprocessing") or {}) if isinstance(meta, Mapping) else {}
    if not pre:
        return default
    order = pre.get("colour_order", pre.get("color_order", pre.get("channel_order", default.order)))
    order = str(order).upper()
    mean = pre.get("mean", default.mean)
    std = pre.get("std", default.std)
    pixel_range = pre.get("pixel_range", pre.get("range", None))
    if isinstance(pixel_range, (list, tuple)):  # e.g. [0, 255]
        pixel_range = pixel_range[-1]
    if pixel_range is None:  # infer: means above 1 are in 0-255 units
        pixel_range = 255.0 if max(abs(float(m)) for m in mean) > 1.5 else 1.0
    if len(mean) != 3 or len(std) != 3:
        raise WeightsError(f"preprocessing metadata needs 3 means and 3 stds, got {pre}")
    return Normalization(order, pixel_range, mean, std)


def resize_and_crop(image, size):
    """uint8 image (H, W), (H, W, 3) or (H, W, 4) -> (size, size, 3): shorter side to ``size``
    (bilinear, antialiased), then a centre crop."""
    from PIL import Image

    np = backend.np
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {a.dtype}")
    h, w = a.shape[:2]
    th, tw = size
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        a = np.asarray(Image.fromarray(a).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - th) // 2, (nw - tw) // 2
    return a[top:top + th, left:left + tw]


# --- the representation ----------------------------------------------------------------------
class CNN(Representation):
    """A feed-forward CNN with named layers, built from a layer list and a weights source.

    Args:
        name: registry name.
        layers: list of layer objects (see this module), in network order.
        input_size: (H, W) the network was trained at.
        normalization: default ``Normalization`` (a converted file's metadata overrides it).
        weights: "default", a path to a converted ``.npz``, a mapping key -> array, or None for
            seeded He-initialised random weights (NOT pretrained; for tests and benchmarks).
        default_weights: callable returning the default ``.npz`` path (it raises a
            WeightsError explaining how to get them when there are none).
        full_weights_hint: how to obtain fc weights (quoted when they are missing).
        seed: seed of the random weights (``weights=None``).
        device: "cpu" or "cuda". dtype: float32 (float64 for gradient checks).
    """

    kind = "cnn"
    leak = 0.0  # the slope of every ReLU below zero while ``leaky`` is active

    def __init__(self, name, layers, input_size, normalization, weights="default",
                 default_weights=None, full_weights_hint="", seed=0, device="cpu",
                 dtype="float32"):
        self.name = name
        self._modules = list(layers)
        self.layers = tuple(m.name for m in self._modules)
        self.input_size = tuple(input_size)
        self.normalization = normalization
        self.full_weights_hint = full_weights_hint
        self.dtype = dtype
        self.device = backend.check_device(device)
        self.meta = {}
        arrays, self.meta = self._resolve(weights, default_weights, seed)
        self.normalization = normalization_from_meta(self.meta, normalization)
        self.params = {k: Tensor(backend.to_device(v, self.device), dtype=dtype)
                       for k, v in arrays.items()}
        self._norm_arrays()

    # --- weights -------------------------------------------------------------------------
    def param_shapes(self):
        shapes = {}
        for m in self.modules():
            shapes.update(m.param_shapes())
        return shapes

    def _resolve(self, weights, default_weights, seed):
        if weights is None:
            return self.random_weights(seed), {"source": f"random He init, seed {seed}",
                                               "pretrained": False}
        if isinstance(weights, Mapping):
            return self.check_weights(dict(weights)), {"source": "arrays given"}
        if isinstance(weights, str) and weights == "default":
            if default_weights is None:
                raise MissingWeightsError(f"{self.name} has no default weights")
            weights = default_weights()
        if isinstance(weights, (str, os.PathLike)):  # np.load(allow_pickle=False), checked
            arrays, meta = load_npz(weights, expected_shapes=self.param_shapes(),
                                    optional=self.fc_keys())
            meta = dict(meta or {})
            variant = meta.get("variant")
            if variant is not None and variant != self.name:
                raise WeightsError(
                    f"{os.fspath(weights)} holds weights for {variant!r}, not {self.name!r}; "
                    f"load it with models.get({variant!r}, weights=...)"
                )
            meta.setdefault("path", os.fspath(weights))
            return arrays, meta  # load_npz has checked every key and shape
        raise TypeError(
            f"weights must be 'default', a path to a converted .npz, a dict of arrays or None "
            f"(random), got {type(weights).__name__}"
        )

    def fc_keys(self):
        """Parameter keys of the fully connected layers (absent from conv-only weights)."""
        return [k for m in self.modules() if isinstance(m, FC) for k in m.param_shapes()]

    def check_weights(self, arrays, source="the weights given"):
        """Every conv key present, fc keys all or some absent, nothing unknown, shapes exact
        (``weights.npz.param_mismatches``, with the messages of weights given as arrays; a
        file is checked by ``weights.npz.load_npz`` instead)."""
        expected = self.param_shapes()
        missing, unknown, wrong = param_mismatches(arrays, expected, optional=self.fc_keys())
        if unknown:
            raise WeightsError(
                f"{source}: unexpected keys for {self.name}: {', '.join(sorted(unknown))} "
                f"(expected {', '.join(expected)})"
            )
        order = list(expected)
        for key in sorted(missing + wrong, key=order.index)[:1]:
            if key in missing:
                raise WeightsError(f"{source}: missing key {key!r} (expected shape "
                                   f"{expected[key]})")
            raise WeightsError(f"{source}: {key!r} has shape {tuple(arrays[key].shape)}, "
                               f"expected {expected[key]} for {self.name}")
        return arrays

    def random_weights(self, seed=0):
        """Seeded He-initialised weights for every layer (NOT pretrained), float32 host arrays.

        Weights ~ U(−√(6/fan_in), √(6/fan_in)) (variance 2/fan_in, He/Kaiming uniform; uniform
        because drawing fc6's 38M normals takes 3× longer), biases ~ U(−0.01, 0.01).
        """
        np = backend.np
        rng = np.random.default_rng(seed)
        out = {}
        for m in self.modules():
            for key, shape in m.param_shapes().items():
                bound = math.sqrt(6.0 / m.fan_in()) if key.endswith(".weight") else 0.01
                a = rng.random(shape, dtype=np.float32)  # [0, 1)
                a -= 0.5
                a *= 2 * bound
                out[key] = a
        return out

    def params_numpy(self):
        """The loaded weights as host NumPy arrays, by key."""
        return {k: v.numpy() for k, v in self.params.items()}

    def has_weights(self, layer):
        """True when every parameter up to ``layer`` is loaded."""
        return all(k in self.params for m in self.modules(layer) for k in m.param_shapes())

    def require_weights(self, layer):
        """None when every parameter up to ``layer`` is loaded; else MissingWeightsError naming
        the missing keys, the weights' source and how to get the full weights."""
        for m in self.modules(layer):
            missing = [k for k in m.param_shapes() if k not in self.params]
            if missing:
                source = self.meta.get("path") or self.meta.get("source") or "the loaded weights"
                raise MissingWeightsError(
                    f"{self.name} layer {layer!r} needs {', '.join(missing)}, which "
                    f"{source} does not have (conv-only weights). Fully connected weights are "
                    f"never made up. {self.full_weights_hint}"
                )

    # --- layers --------------------------------------------------------------------------
    def modules(self, upto=None):
        """The layer objects in network order, up to and including layer ``upto`` (all when
        None); a new list."""
        if upto is None:
            return list(self._modules)
        return self._modules[:self.layer_index(upto) + 1]

    def layer_index(self, layer):
        """Position of ``layer`` in ``layers`` (0-based); UnknownNameError for unknown names."""
        return self.layers.index(self.check_layer(layer))

    def forward(self, x, layer):
        """x (N, 3, H, W) in the input space -> output at ``layer``; nothing beyond it is run."""
        return self.forward_layers(x, [layer])[layer]

    def forward_layers(self, x, layers):
        """One pass up to the deepest of ``layers``; a dict name -> Tensor."""
        wanted = set(self.check_layer(name) for name in layers)
        last = max(self.layers.index(name) for name in wanted)
        self.require_weights(self.layers[last])
        if not isinstance(x, Tensor):
            x = Tensor(backend.to_device(x, self.device), dtype=self.dtype)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects an input of shape (N, 3, H, W), got {x.shape}")
        out = {}
        for m in self.modules(self.layers[last]):
            if self.leak and type(m) is ReLU:  # max(x, 0) + leak·min(x, 0), from F's ops
                x = F.relu(x) * (1.0 - self.leak) + x * self.leak
            else:
                x = m(x, self.params)
            if m.name in wanted:
                out[m.name] = x
        return out

    @contextlib.contextmanager
    def leaky(self, slope):
        """Within the block every ReLU is leaky: y = x for x > 0, slope·x below (IJCV16's
        option for activation maximisation, slope 0.05)."""
        previous, self.leak = self.leak, float(slope)
        try:
            yield self
        finally:
            self.leak = previous

    def output_shape(self, layer, hw=None):
        """(C, H, W) for conv layers, (features,) for fc layers, for one image of size
        ``hw`` = (H, W) (default: the network's input size)."""
        modules = self.modules(layer)
        shape = (3,) + tuple(hw or self.input_size)
        for m in modules:
            shape = m.out_shape(shape)
        return shape

    def receptive_field(self, layer):
        """(size, stride) in input pixels of one unit of ``layer`` at the network's input size.

        Composed layer by layer: size += (k − 1)·stride, stride *= s. An fc layer counts as a
        conv whose kernel covers its whole input (so fc6 of CaffeNet sees 195 + 5·32 = 355
        pixels, including the padding beyond the 227-pixel image), later fc layers as 1×1.
        """
        size, stride, shape = 1, 1, (3,) + self.input_size
        for m in self.modules(layer):
            k, s = m.window(shape)
            size, stride = size + (k - 1) * stride, stride * s
            shape = m.out_shape(shape)
        return size, stride

    # --- pixels <-> input space ------------------------------------------------------------
    def input_scale(self):
        """Host float64 (3,): d(input)/d(pixel) = pixel_range/255/std per channel, in network
        order (``Normalization.std`` is given in that order; the mean does not change it)."""
        np = backend.np
        std = np.asarray(self.normalization.std, dtype=np.float64)
        return (self.normalization.pixel_range / 255.0) / std

    def _norm_arrays(self):
        """Host float64 mean/std, shaped (1, 1, 3) in network channel order; a converted file's
        full mean image (MatConvNet's averageImage, RGB) replaces the mean pixel when given."""
        np = backend.np
        n = self.normalization
        self._mean = np.asarray(n.mean, dtype=np.float64).reshape(1, 1, 3)
        self._std = np.asarray(n.std, dtype=np.float64).reshape(1, 1, 3)
        self._mean_image = None
        image = self.meta.get("mean_image")
        if image is not None:
            image = np.asarray(image, dtype=np.float64)
            if image.shape != self.input_size + (3,):
                raise WeightsError(f"mean image of shape {image.shape}, expected "
                                   f"{self.input_size + (3,)} for {self.name}")
            self._mean_image = image[:, :, ::-1] if n.order == "BGR" else image
            self._mean = self._mean_image.mean(axis=(0, 1)).reshape(1, 1, 3)

    def _mean_for(self, hw):
        if self._mean_image is not None and self._mean_image.shape[:2] == tuple(hw):
            return self._mean_image
        return self._mean

    def preprocess(self, image):
        """uint8 HxW[x3|x4] image -> Tensor (1, 3, H, W): shorter side resized to the input size,
        centre crop, channel order, then ``(pixel·range/255 − mean)/std`` (see normalization)."""
        np = backend.np
        a = resize_and_crop(image, self.input_size).astype(np.float64)  # (H, W, 3) RGB
        if self.normalization.order == "BGR":
            a = a[:, :, ::-1]
        a = (a * (self.normalization.pixel_range / 255.0) - self._mean_for(a.shape[:2])) / self._std
        a = np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=self.dtype)  # (1, 3, H, W)
        return Tensor(backend.to_device(a, self.device), dtype=self.dtype)

    def deprocess(self, x):
        """Tensor or array (1, 3, H, W) or (3, H, W) in the input space -> uint8 HxWx3 RGB."""
        np = backend.np
        a = backend.asnumpy(backend.unwrap(x)).astype(np.float64)
        if a.ndim == 4:
            if a.shape[0] != 1:
                raise ValueError(f"deprocess takes one image, got a batch of shape {a.shape}")
            a = a[0]
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"deprocess expects (1, 3, H, W) or (3, H, W), got {a.shape}")
        a = a.transpose(1, 2, 0)  # (H, W, 3)
        a = a * self._std + self._mean_for(a.shape[:2])
        a = a * (255.0 / self.normalization.pixel_range)
        if self.normalization.order == "BGR":
            a = a[:, :, ::-1]
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    def to(self, device):
        """Move every weight to ``device`` ('cpu' or 'cuda'); returns self."""
        self.device = backend.check_device(device)
        self.params = {k: Tensor(backend.to_device(v.data, self.device)) for k, v in
                       self.params.items()}
        return self

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name}: {len(self.layers)} layers, input "
                f"{self.input_size[0]}x{self.input_size[1]}, {self.device}, "
                f"weights: {self.meta.get('path') or self.meta.get('source', '?')}>")

