"""The project's weight format: an uncompressed ``.npz`` plus a JSON metadata entry.

Layout of a file written by :func:`save_npz`:

* one array per parameter, named by the fixed key convention (``conv1.weight`` OIHW float32,
  ``conv1.bias``, ..., ``fc6.weight`` as (out, in) with the input flattened from NCHW as
  ``c*H*W + h*W + w``, i.e. PyTorch order);
* ``__meta__``: a 0-d unicode array holding a JSON object (variant, source, sha256 of the
  original file, preprocessing, flatten order, ...);
* optionally ``__mean_image__``: an HxWx3 float32 mean image (RGB), for sources that
  subtract a full mean image (MatConvNet) rather than a per-channel mean.

Reading never unpickles anything and checks every declared size before reading data
(:func:`load_npz`). ``<file>.sha256`` records the file's own sha256 when it is written.
"""
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from . import limits
from .cache import rebuild_command, record_path, sha256_file, verify_record, write_record
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
    with ``os.replace``, so a crash or error never leaves a partial file at ``path``; its
    sha256 is then recorded in ``<path>.sha256`` for :func:`load_npz` to verify.
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        sha = sha256_file(tmp)
        record_path(path).unlink(missing_ok=True)  # never a stale record beside a new file
        os.replace(tmp, path)
        write_record(path, sha)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _sniff(head):
    """What a file that is not a zip looks like, for the error message."""
    if head.startswith(b"MATLAB"):
        return "a MATLAB .mat file"
    if head[:1] == b"\x80":
        return "a pickle (a legacy torch file, an lpips checkpoint, ...)"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "a tar archive"
    return "not a zip archive"


def _member_header(f, key, expected, path):
    """(shape, fortran, dtype, header length) of one .npy member, checked before its data."""
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises many types
        raise WeightsError(f"{path}: member {key} has a bad .npy header: "
                           f"{type(exc).__name__}: {exc}") from None
    if dtype.hasobject:
        raise WeightsError(f"{path}: member {key} holds pickled objects, which a minigrad "
                           "weights file never does; convert the source with `minigrad "
                           "weights convert FILE`")
    if key == META_KEY:
        if shape != () or dtype.kind != "U" or dtype.itemsize > limits.MAX_META_BYTES:
            raise WeightsError(f"{path}: {META_KEY} is not a JSON string of sane size")
    elif expected is not None and key in expected and tuple(shape) != tuple(expected[key]):
        raise WeightsError(f"{path}: parameter {key} has shape {_shape_str(shape)}, "
                           f"expected {_shape_str(expected[key])}")
    return shape, fortran, dtype, f.tell()


def _read_member(zf, info, expected, budget, path):
    """One array of the archive: header checked, size checked, then read into place."""
    key = info.filename[:-4]
    with zf.open(info) as f:
        shape, fortran, dtype, offset = _member_header(f, key, expected, path)
        count = budget.charge(limits.element_count(shape), path)
        if info.file_size != offset + count * dtype.itemsize:
            raise WeightsError(
                f"{path}: member {key} declares shape {_shape_str(shape)} of {dtype} but holds "
                f"{info.file_size - offset:,} bytes of data (truncated or corrupt file?)")
        arr = np.empty(count, dtype=dtype)
        view = memoryview(arr.view(np.uint8) if count else bytearray())
        done = 0
        while done < len(view):
            n = f.readinto(view[done:])
            if not n:
                raise WeightsError(f"{path}: member {key} ends early (truncated file?)")
            done += n
        if f.read(1):
            raise WeightsError(f"{path}: member {key} holds more data than declared")
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def _read_arrays(path, expected):
    """{name: array} of a minigrad .npz without unpickling, every size checked before reading."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] != b"PK\x03\x04":
        raise WeightsError(f"{path} is not a minigrad weights file ({_sniff(head)}); convert "
                           "it with `minigrad weights convert FILE`")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if META_KEY + ".npy" not in [i.filename for i in infos]:
            raise WeightsError(
                f"{path} is not a minigrad weights file (no {META_KEY} entry); "
                "convert it with `minigrad weights convert FILE`")
        budget = limits.ElementBudget()
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise WeightsError(f"{path}: unexpected member {info.filename}")
            arrays[info.filename[:-4]] = _read_member(zf, info, expected, budget, path)
    return arrays


def _provenance(path, meta, sha):
    """Mark ``meta`` verified (the file matches the sha256 recorded when it was written) or
    not; an unverified file's claimed source is kept aside, never reported as its source."""
    meta["verified"] = sha is not None
    if sha is not None:
        meta["file_sha256"] = sha
    else:
        meta["claimed_source"] = meta.pop("source", None)
        meta["source"] = (f"unverified: no sha256 was recorded for {path.name} when it was "
                          f"written; rebuild it with {rebuild_command(path)}")
    return meta


def load_npz(path, expected_shapes=None, optional=()):
    """Read a file written by :func:`save_npz`; returns ``(params, meta)``.

    ``meta`` is the JSON metadata dict; if the file has a mean image, it is in
    ``meta["mean_image"]`` as an array. With ``expected_shapes`` ({key: shape}) every key
    must be present (except those in ``optional``), no other key may be, and every shape
    must match; errors name the key, the expected and the actual shape.

    Nothing is unpickled and nothing is allocated before it is checked: each member's
    ``.npy`` header is read first and its shape compared with ``expected_shapes`` and the
    element bound of ``weights.limits``. A file with a recorded sha256 (``<file>.sha256``,
    written by :func:`save_npz`) is verified against it, once per process.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        sha = verify_record(path)  # before reading: a corrupt cache gets the one hint
        arrays = _read_arrays(path, expected_shapes)
        meta = json.loads(str(arrays.pop(META_KEY)[()]))
    except WeightsError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError, zlib.error,
            NotImplementedError, RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise WeightsError(f"cannot read {path} (truncated or corrupt file?): {exc}; rebuild "
                           f"it with {rebuild_command(path)}") from None
    mean_image = arrays.pop(MEAN_IMAGE_KEY, None)
    params = arrays
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise WeightsError(f"{path}: metadata is not a {FORMAT_NAME} header")
    meta = _provenance(path, meta, sha)
    if mean_image is not None:
        meta["mean_image"] = mean_image
    if expected_shapes is not None:
        check_params(params, expected_shapes, optional, where=str(path))
    return params, meta
