"""Read MatConvNet simplenn ``.mat`` models (``imagenet-caffe-ref.mat``,
``imagenet-caffe-alex.mat``, ``imagenet-vgg-verydeep-16.mat``) with ``scipy.io.loadmat``.

Filters are HWIO (H, W, Cin/groups, Cout), biases (Cout, 1) or (Cout,); fully connected layers
are stored as convolutions (fc6 of AlexNet is a 6x6x256x4096 filter). conv1 takes **RGB** input
(the importer flipped Caffe's BGR channels). Both the current structure (``layers{i}.weights``,
``meta.normalization``, type 'lrn') and the old one (``filters``/``biases``, top-level
``normalization``, type 'normalize') are accepted. v7.3 (HDF5) files are refused.
"""
import numpy as np

from .errors import WeightsError


def is_mat(path):
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"


def _field(obj, name, default=None):
    return getattr(obj, name, default) if hasattr(obj, "_fieldnames") else default


def _str(x):
    if isinstance(x, np.ndarray):
        x = x.item() if x.size == 1 else "".join(str(c) for c in x.ravel())
    return str(x)


def read_mat(path):
    """(layers, normalization): layers = list of dicts name/type/weights/lrn/... in order."""
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
    try:
        d = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises several types on corrupt/truncated input
        raise WeightsError(f"{path}: cannot read MAT file (truncated or corrupt?): {exc}") from None
    if "layers" not in d:
        if "params" in d or "vars" in d:
            raise WeightsError(f"{path}: DagNN MatConvNet models are not supported, only simplenn")
        raise WeightsError(f"{path}: no 'layers' variable (not a MatConvNet simplenn model)")
    raw_layers = np.atleast_1d(d["layers"])
    layers = []
    for i, L in enumerate(raw_layers):
        ltype = _str(_field(L, "type", ""))
        name = _str(_field(L, "name", f"layer{i + 1}"))
        entry = {"name": name, "type": ltype}
        if ltype == "conv":
            w = _field(L, "weights")
            if w is not None and np.size(w) >= 1:
                w = np.atleast_1d(w)
                filters = np.asarray(w[0])
                biases = np.asarray(w[1]) if len(w) > 1 else None
            else:
                filters = np.asarray(_field(L, "filters"))
                biases = _field(L, "biases")
                biases = None if biases is None else np.asarray(biases)
            if filters.ndim < 2:
                raise WeightsError(f"{path}: layer {name} has no filters")
            filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))
            entry["filters"] = filters.astype(np.float32)
            entry["biases"] = None if biases is None else biases.astype(np.float32).ravel()
        elif ltype in ("lrn", "normalize"):
            param = np.asarray(_field(L, "param"), dtype=np.float64).ravel()
            if param.size == 4:
                n, kappa, alpha_over_n, beta = param
                entry["lrn"] = {"local_size": int(n), "k": float(kappa),
                                "alpha": float(alpha_over_n * n), "beta": float(beta)}
            entry["type"] = "lrn"
        layers.append(entry)
    meta = d.get("meta")
    norm = _field(meta, "normalization") if meta is not None else None
    if norm is None:
        norm = d.get("normalization")
    normalization = {}
    if norm is not None:
        avg = _field(norm, "averageImage")
        size = _field(norm, "imageSize")
        if avg is not None:
            normalization["average"] = np.asarray(avg, dtype=np.float32)
        if size is not None:
            normalization["image_size"] = [int(s) for s in np.ravel(size)[:2]]
    return layers, normalization
