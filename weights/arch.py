"""Parameter keys and shapes of the four network variants, and their default preprocessing.

Key convention (the model code relies on it): ``<layer>.weight`` / ``<layer>.bias``; conv
weights OIHW float32 (grouped convs store (out, in/groups, kh, kw) as Caffe does); fc weights
(out, in) whose input is the NCHW tensor flattened as ``c*H*W + h*W + w`` (PyTorch order).
"""
from .errors import WeightsError

VARIANTS = ("alexnet", "caffenet", "caffe-alexnet", "vgg16")

# (name, out, in_per_group, kernel)
_CONV = {
    "alexnet": [("conv1", 64, 3, 11), ("conv2", 192, 64, 5), ("conv3", 384, 192, 3),
                ("conv4", 256, 384, 3), ("conv5", 256, 256, 3)],
    "caffe": [("conv1", 96, 3, 11), ("conv2", 256, 48, 5), ("conv3", 384, 256, 3),
              ("conv4", 384, 192, 3), ("conv5", 256, 192, 3)],
    "vgg16": [(f"conv{b}_{i}", o, c, 3) for b, i, o, c in [
        (1, 1, 64, 3), (1, 2, 64, 64), (2, 1, 128, 64), (2, 2, 128, 128),
        (3, 1, 256, 128), (3, 2, 256, 256), (3, 3, 256, 256),
        (4, 1, 512, 256), (4, 2, 512, 512), (4, 3, 512, 512),
        (5, 1, 512, 512), (5, 2, 512, 512), (5, 3, 512, 512)]],
}
_FC = {
    "alexnet": [("fc6", 4096, 256 * 6 * 6), ("fc7", 4096, 4096), ("fc8", 1000, 4096)],
    "vgg16": [("fc6", 4096, 512 * 7 * 7), ("fc7", 4096, 4096), ("fc8", 1000, 4096)],
}
CAFFE_GROUPS = {"conv2": 2, "conv4": 2, "conv5": 2}
CAFFE_LRN = {"local_size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0,
             "convention": "Caffe/PyTorch: x / (k + alpha/local_size * sum(x^2))^beta"}
FC_FLATTEN_ORDER = "CHW: fc6 input index = c*H*W + h*W + w (NCHW flatten, PyTorch/Caffe order)"


def _family(variant):
    if variant not in VARIANTS:
        raise WeightsError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    return "caffe" if variant.startswith("caffe") else variant


def conv_names(variant):
    return [c[0] for c in _CONV[_family(variant)]]


def fc_names(variant):
    _family(variant)
    return ["fc6", "fc7", "fc8"]


def layer_names(variant):
    return conv_names(variant) + fc_names(variant)


def expected_shapes(variant, fc=True):
    """{key: shape} of ``variant`` (fc6-fc8 included unless ``fc=False``)."""
    fam = _family(variant)
    shapes = {}
    for name, out, cin, k in _CONV[fam]:
        shapes[f"{name}.weight"] = (out, cin, k, k)
        shapes[f"{name}.bias"] = (out,)
    if fc:
        for name, out, cin in _FC["vgg16" if fam == "vgg16" else "alexnet"]:
            shapes[f"{name}.weight"] = (out, cin)
            shapes[f"{name}.bias"] = (out,)
    return shapes


def fc_keys(variant):
    return [f"{n}.{p}" for n in fc_names(variant) for p in ("weight", "bias")]


def groups(variant):
    return dict(CAFFE_GROUPS) if _family(variant) == "caffe" else {}


def input_size(variant):
    return [227, 227] if _family(variant) == "caffe" else [224, 224]


# Preprocessing: x = (pixel / 255 * pixel_range - mean) / std, channels in colour_order.
TORCHVISION_PREPROCESSING = {
    "colour_order": "RGB", "pixel_range": 1.0, "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "formula": "x = (image/255 * pixel_range - mean) / std, channels in colour_order, NCHW",
    "resize": "shorter side to 256, centre crop 224",
}
CAFFE_MEAN_BGR = [104.00698793, 116.66876762, 122.67891434]  # ilsvrc_2012_mean.npy
VGG_MEAN_BGR = [103.939, 116.779, 123.68]


def preprocessing(variant, colour_order, mean=None):
    """Preprocessing metadata for ``variant`` whose first conv takes ``colour_order`` input."""
    fam = _family(variant)
    size = input_size(variant)
    if colour_order == "RGB" and mean is None and fam in ("alexnet", "vgg16"):
        return dict(TORCHVISION_PREPROCESSING, input_size=size)
    if mean is None:
        mean = CAFFE_MEAN_BGR if fam != "vgg16" else VGG_MEAN_BGR
        if colour_order == "RGB":
            mean = mean[::-1]
    return {
        "colour_order": colour_order, "pixel_range": 255.0, "mean": [float(m) for m in mean],
        "std": [1.0, 1.0, 1.0], "input_size": size,
        "formula": "x = (image/255 * pixel_range - mean) / std, channels in colour_order, NCHW",
    }


def check_consistency(params, variant, where="weights"):
    """Layer-to-layer shape consistency (works for small synthetic nets too)."""
    grp = groups(variant)
    prev_out = None
    for name in conv_names(variant):
        w = params.get(f"{name}.weight")
        b = params.get(f"{name}.bias")
        if w is None or b is None:
            raise WeightsError(f"{where}: missing parameter {name}.weight or {name}.bias")
        if w.ndim != 4:
            raise WeightsError(f"{where}: {name}.weight has shape {tuple(w.shape)}, "
                               "expected 4-D OIHW")
        if b.shape != (w.shape[0],):
            raise WeightsError(f"{where}: {name}.bias has shape {tuple(b.shape)}, "
                               f"expected ({w.shape[0]},)")
        if prev_out is not None and w.shape[1] * grp.get(name, 1) != prev_out:
            raise WeightsError(f"{where}: {name}.weight takes {w.shape[1] * grp.get(name, 1)} "
                               f"input channels but the previous layer has {prev_out}")
        prev_out = w.shape[0]
    if "fc6.weight" not in params:
        return
    prev = None
    for name in fc_names(variant):
        w = params.get(f"{name}.weight")
        b = params.get(f"{name}.bias")
        if w is None or b is None:
            raise WeightsError(f"{where}: missing parameter {name}.weight or {name}.bias")
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise WeightsError(f"{where}: {name} has weight {tuple(w.shape)} and bias "
                               f"{tuple(b.shape)}, expected (out, in) and (out,)")
        if prev is None and w.shape[1] % prev_out:
            raise WeightsError(f"{where}: fc6.weight takes {w.shape[1]} inputs, not a multiple "
                               f"of the {prev_out} channels of the last conv layer")
        if prev is not None and w.shape[1] != prev:
            raise WeightsError(f"{where}: {name}.weight takes {w.shape[1]} inputs but the "
                               f"previous layer has {prev} outputs")
        prev = w.shape[0]
