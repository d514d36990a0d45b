"""The project's weight format: an uncompressed ``.npz`` plus a JSON metadata entry.

Layout of a file written by :func:`save_npz`:

* one array per parameter, named by the fixed key convention (``conv1.weight`` OIHW float32,
  ``conv1.bias``, ..., ``fc6.weight`` as (out, in) with the input flattened from NCHW as
  ``c*H*W + h*W + w``, i.e. PyTorch order);
* ``__meta__``: a 0-d unicode array holding a JSON object (variant, source, sha256 of the
  original file, preprocessing, flatten order, ...);
* optionally ``__mean_image__``: an HxWx3 float32 mean image (RGB), for sources that
  subtract a full mean image (MatConvNet) rather than a per-channel mean.

Reading never unpickles anything (``np.load(allow_pickle=False)``).
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import WeightsError

META_KEY = "__meta__"
MEAN_IMAGE_KEY = "__mean_image__"
RESERVED = (META_KEY, MEAN_IMAGE_KEY)
FORMAT_NAME = "minigrad-weights"
FORMAT_VERSION = 1


def _shape_str(shape):
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def param_mismatches(params, expected_shapes, optional=()):
    """(missing, unexpected, wrong) keys of ``params`` against ``expected_shapes``: missing and
    wrong-shape keys in the expected order, ``optional`` keys allowed to be absent."""
    optional = set(optional)
    missing = [k for k in expected_shapes if k not in params and k not in optional]
    unexpected = [k for k in params if k not in expected_shapes]
    wrong = [k for k, shape in expected_shapes.items()
             if k in params and tuple(params[k].shape) != tuple(shape)]
    return missing, unexpected, wrong


def check_params(params, expected_shapes, optional=(), where="weights"):
    """Check ``params`` against ``expected_shapes`` ({key: shape}); raise WeightsError.

    Keys listed in ``optional`` may be absent (e.g. fc6-fc8 in conv-only weights), but if
    present their shape is checked like every other key.
    """
    missing, unexpected, wrong = param_mismatches(params, expected_shapes, optional)
    if missing:
        raise WeightsError(f"{where}: missing parameter(s) {', '.join(missing)}")
    if unexpected:
        raise WeightsError(
            f"{where}: unexpected parameter(s) {', '.join(unexpected)} "
            f"(expected keys: {', '.join(expected_shapes)})"
        )
    if wrong:
        key = wrong[0]
        raise WeightsError(
            f"{where}: parameter {key} has shape {_shape_str(params[key].shape)}, "
            f"expected {_shape_str(expected_shapes[key])}"
        )


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_npz(path, params, meta, mean_image=None):
    """Write ``params`` ({key: array}) and ``meta`` (JSON-able dict) to ``path`` atomically.

    The file is written to a temporary file in the same directory and moved into place
    with ``os.replace``, so a crash or error never leaves a partial file at ``path``.
    """
    path = Path(path)
    for key, value in params.items():
        if key in RESERVED or key.startswith("__"):
            raise WeightsError(f"parameter name {key!r} is reserved")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise WeightsError(f"parameter {key} is not a numeric array")
    meta = dict(meta)
    meta.setdefault("format", FORMAT_NAME)
    meta.setdefault("format_version", FORMAT_VERSION)
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise WeightsError(f"metadata is not JSON-serialisable: {exc}") from None
    arrays = {k: np.ascontiguousarray(v) for k, v in params.items()}
    arrays[META_KEY] = np.array(meta_json)
    if mean_image is not None:
        arrays[MEAN_IMAGE_KEY] = np.ascontiguousarray(mean_image, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_npz(path, expected_shapes=None, optional=()):
    """Read a file written by :func:`save_npz`; returns ``(params, meta)``.

    ``meta`` is the JSON metadata dict; if the file has a mean image, it is in
    ``meta["mean_image"]`` as an array. With ``expected_shapes`` ({key: shape}) every key
    must be present (except those in ``optional``), no other key may be, and every shape
    must match; errors name the key, the expected and the actual shape.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if META_KEY not in names:
                raise WeightsError(
                    f"{path} is not a minigrad weights file (no {META_KEY} entry); "
                    "convert it with `minigrad weights convert FILE`"
                )
            meta = json.loads(str(z[META_KEY][()]))
            params = {k: z[k] for k in names if k not in RESERVED}
            mean_image = z[MEAN_IMAGE_KEY] if MEAN_IMAGE_KEY in names else None
    except WeightsError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as exc:
        raise WeightsError(f"cannot read {path} (truncated or corrupt file?): {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise WeightsError(f"{path}: metadata is not a {FORMAT_NAME} header")
    if mean_image is not None:
        meta["mean_image"] = mean_image
    if expected_shapes is not None:
        check_params(params, expected_shapes, optional, where=str(path))
    return params, meta
