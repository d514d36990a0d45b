"""Read MatConvNet simplenn ``.mat`` models (``imagenet-caffe-ref.mat``,
``imagenet-caffe-alex.mat``, ``imagenet-vgg-verydeep-16.mat``) with ``scipy.io.loadmat``.

Filters are HWIO (H, W, Cin/groups, Cout), biases (Cout, 1) or (Cout,); fully connected layers
are stored as convolutions (fc6 of AlexNet is a 6x6x256x4096 filter). conv1 takes **RGB** input
(the importer flipped Caffe's BGR channels). Both the current structure (``layers{i}.weights``,
``meta.normalization``, type 'lrn') and the old one (``filters``/``biases``, top-level
``normalization``, type 'normalize') are accepted. v7.3 (HDF5) files are refused.
"""
import io

import numpy as np

from .errors import WeightsError
from .limits import check_file_size
from .matcheck import check_mat5


def is_mat(path):
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"


def _unwrap(x):
    """Strip the (1, 1) object/cell wrappers loadmat puts around every value."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _field(obj, name, default=None):
    obj = _unwrap(obj)
    if not hasattr(obj, "_fieldnames"):
        return default
    return _unwrap(getattr(obj, name, default))


def _str(x):
    x = _unwrap(x)
    if isinstance(x, np.ndarray):
        x = "".join(str(c) for c in x.ravel())
    return str(x)


def _cell(x):
    """A MATLAB cell array as a flat list of its (unwrapped) elements."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return [_unwrap(e) for e in x.ravel(order="F")]
    return [x]


def _numeric(x):
    """A numeric MATLAB array with its full shape (trailing singleton dims are restored by
    the caller); squeeze_me is off so (1, 1, C, O) filters keep their shape."""
    return np.asarray(_unwrap(x))


def read_mat(path):
    """(layers, normalization): layers = list of dicts name/type/weights/lrn/... in order."""
    d = _load_mat(path)
    if "layers" not in d:
        if "params" in d or "vars" in d:
            raise WeightsError(f"{path}: DagNN MatConvNet models are not supported, only simplenn")
        raise WeightsError(f"{path}: no 'layers' variable (not a MatConvNet simplenn model)")
    layers = [_layer(path, i, L) for i, L in enumerate(_cell(d["layers"]))]
    return layers, _normalization(d)


def _load_mat(path):
    """The MAT-file's variables, after the checks that keep scipy's reader from crashing."""
    import scipy.io

    with open(path, "rb") as f:
        header = f.read(128)
    if header[:6] != b"MATLAB":
        raise WeightsError(f"{path}: not a MAT file")
    if b"MATLAB 7.3" in header:
        raise WeightsError(
            f"{path}: MAT v7.3 (HDF5) files are not supported; re-save it in MATLAB/Octave "
            "with save(..., '-v7')"
        )
    check_file_size(path)
    with open(path, "rb") as f:
        raw = f.read()
    check_mat5(raw, str(path))  # scipy's reader crashes the process on some malformed files
    try:
        return scipy.io.loadmat(io.BytesIO(raw), squeeze_me=False, struct_as_record=False)
    except Exception as exc:  # scipy raises several types on corrupt/truncated input
        raise WeightsError(f"{path}: cannot read MAT file (truncated or corrupt?): {exc}") from None


def _layer(path, i, L):
    """One simplenn layer struct as {"name", "type", and "filters"/"biases" or "lrn"}."""
    ltype = _str(_field(L, "type", ""))
    name = _str(_field(L, "name", f"layer{i + 1}"))
    entry = {"name": name, "type": ltype}
    if ltype == "conv":
        w = _field(L, "weights")
        if w is not None and np.size(w) >= 1:
            w = _cell(w)
            filters = _numeric(w[0])
            biases = _numeric(w[1]) if len(w) > 1 and np.size(w[1]) else None
        else:
            filters = _numeric(_field(L, "filters"))
            biases = _field(L, "biases")
            biases = None if biases is None or not np.size(biases) else _numeric(biases)
        if filters.ndim < 2:
            raise WeightsError(f"{path}: layer {name} has no filters")
        filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))
        entry["filters"] = filters.astype(np.float32)
        entry["biases"] = None if biases is None else biases.astype(np.float32).ravel()
    elif ltype in ("lrn", "normalize"):
        param = np.asarray(_numeric(_field(L, "param")), dtype=np.float64).ravel()
        if param.size == 4:
            n, kappa, alpha_over_n, beta = param
            entry["lrn"] = {"local_size": int(n), "k": float(kappa),
                            "alpha": float(alpha_over_n * n), "beta": float(beta)}
        entry["type"] = "lrn"
    return entry


def _normalization(d):
    """{"average", "image_size"} from meta.normalization (or a top-level normalization)."""
    meta = _unwrap(d.get("meta"))
    norm = _field(meta, "normalization") if meta is not None else None
    if norm is None:
        norm = _unwrap(d.get("normalization"))
    normalization = {}
    if norm is not None:
        avg = _field(norm, "averageImage")
        size = _field(norm, "imageSize")
        if avg is not None:
            normalization["average"] = np.asarray(_numeric(avg), dtype=np.float32)
        if size is not None:
            normalization["image_size"] = [int(s) for s in np.ravel(_numeric(size))[:2]]
    return normalization
