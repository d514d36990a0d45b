"""A restricted unpickler: rebuilds arrays, never runs pickled code.

``pickle`` can call any importable function while loading (``__reduce__``). Weight files
from the internet are therefore read with :class:`RestrictedUnpickler`, whose
``find_class`` admits only a fixed table of globals, each mapped to one of *our* functions:

* NumPy array pickles (``numpy.core.multiarray._reconstruct`` / ``numpy._core...``,
  ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray.scalar``,
  ``numpy.core.numeric._frombuffer``) and ``_codecs.encode`` / ``bytes()`` (how Python 3
  writes bytes in protocol-2 pickles; only latin-1 and no-argument calls are admitted);
* ``collections.OrderedDict``;
* with ``torch=True``: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` /
  ``_rebuild_parameter``, ``torch._tensor._rebuild_from_type_v2`` and the ``torch.*Storage``
  types. Torch is never imported: tensors are rebuilt as NumPy arrays from the storages.

Anything else raises :class:`~weights.errors.UnsafePickleError` naming the global.
Arrays come back as placeholders while the pickle is read and are resolved into real
``np.ndarray`` objects afterwards (:func:`resolve`).
"""
import collections
import io
import pickle

import numpy as np

from .errors import UnsafePickleError, WeightsError

# ---------------------------------------------------------------------------- numpy

_MAX_DIMS = 32


def _safe_dtype(spec, align=False, copy=False):
    # copy=True: BUILD then calls __setstate__ (byte order, ...) on this dtype, which must be
    # a fresh object, never numpy's shared builtin instance
    try:
        return np.dtype(spec, align=bool(align), copy=True)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"pickle holds an invalid dtype {spec!r}: {exc}") from None


def _check_shape(shape):
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS:
        raise WeightsError(f"pickle holds an invalid array shape {shape!r}")
    for s in shape:
        if not isinstance(s, int) or s < 0:
            raise WeightsError(f"pickle holds an invalid array shape {shape!r}")
    return shape


def _as_bytes(raw):
    if isinstance(raw, str):  # Python 2 pickles read with encoding="latin1"
        return raw.encode("latin1")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    raise WeightsError(f"pickle holds array data of type {type(raw).__name__}, expected bytes")


class ArrayPlaceholder:
    """What ``_reconstruct`` returns; ``BUILD`` fills it via ``__setstate__``."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise WeightsError("pickle holds a malformed ndarray state")
        if len(state) == 5:
            state = state[1:]
        shape, dtype, fortran, raw = state
        _check_shape(tuple(shape))
        if not isinstance(dtype, np.dtype):
            raise WeightsError("pickle holds a malformed ndarray dtype")
        count = int(np.prod(shape, dtype=np.int64))
        order = "F" if fortran else "C"
        if dtype.hasobject:
            # Object arrays (e.g. the dict inside bvlc_alexnet.npy) carry a list of items
            # that the restricted unpickler has already built; nothing else is possible.
            if not isinstance(raw, list) or len(raw) != count:
                raise WeightsError("pickle holds a malformed object array")
            arr = np.empty(count, dtype=object)
            for i, item in enumerate(raw):
                arr[i] = item
            self.array = arr.reshape(shape, order=order)
            return
        data = _as_bytes(raw)
        if len(data) != count * dtype.itemsize:
            raise WeightsError(
                f"pickle holds an array of shape {tuple(shape)} and dtype {dtype} with "
                f"{len(data)} bytes of data, expected {count * dtype.itemsize}"
            )
        self.array = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order)


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise UnsafePickleError("pickle asks _reconstruct for a class other than numpy.ndarray")
    return ArrayPlaceholder()


def _scalar(dtype, raw=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise WeightsError("pickle holds a numpy scalar of an unsupported dtype")
    return np.frombuffer(_as_bytes(raw), dtype=dtype, count=1)[0]


def _frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise WeightsError("pickle holds a buffer array of an unsupported dtype")
    arr = np.frombuffer(_as_bytes(buf), dtype=dtype)
    return arr.reshape(_check_shape(tuple(shape)), order=order).copy()


def _codecs_encode(text, encoding="utf-8"):
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"pickle asks _codecs.encode for encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    # protocol-2 pickles written by Python 3 spell b"" as __builtin__.bytes()
    if args:
        raise UnsafePickleError("pickle calls bytes() with arguments")
    return b""


class _NdarrayMarker:
    """Stands in for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


_NDARRAY = _NdarrayMarker()

NUMPY_GLOBALS = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_mod, "_reconstruct")] = _reconstruct
    NUMPY_GLOBALS[(_mod, "scalar")] = _scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    NUMPY_GLOBALS[(_mod, "_frombuffer")] = _frombuffer
NUMPY_GLOBALS[("numpy", "ndarray")] = _NDARRAY
NUMPY_GLOBALS[("numpy", "dtype")] = _safe_dtype
NUMPY_GLOBALS[("_codecs", "encode")] = _codecs_encode
NUMPY_GLOBALS[("__builtin__", "bytes")] = _empty_bytes
NUMPY_GLOBALS[("builtins", "bytes")] = _empty_bytes
NUMPY_GLOBALS[("collections", "OrderedDict")] = collections.OrderedDict

# ---------------------------------------------------------------------------- torch

_TORCH_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}


class StorageType:
    """Stands in for a ``torch.*Storage`` class: only its element type matters."""

    def __init__(self, name):
        self.name = name
        self.dtype = _TORCH_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def __repr__(self):
        return f"torch.{self.name}"


class StorageRef:
    """A torch storage named by a persistent id; its bytes are supplied by the caller."""

    def __init__(self, storage_type, key, numel, loader, offset=0):
        if not isinstance(storage_type, StorageType):
            raise WeightsError(f"torch pickle names an unsupported storage type {storage_type!r}")
        self.type = storage_type
        self.key = str(key)
        self.numel = int(numel)
        self.loader = loader  # callable(key) -> bytes-like with the storage's raw bytes
        self.offset = int(offset)  # element offset into the root storage (legacy views)


class TensorPlaceholder:
    """A tensor to rebuild from a storage once the storage bytes are available."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, StorageRef):
            raise WeightsError("torch pickle rebuilds a tensor from a non-storage object")
        self.storage = storage
        self.offset = int(offset) + storage.offset
        self.size = _check_shape(tuple(int(s) for s in size))
        self.stride = tuple(int(s) for s in stride)
        if len(self.stride) != len(self.size):
            raise WeightsError(f"torch tensor has size {self.size} but stride {self.stride}")

    def build(self, byteorder="little"):
        st = self.storage.type
        raw = self.storage.loader(self.storage.key)
        itemsize = st.itemsize
        if st.dtype == "bfloat16":
            base_dtype = np.dtype("<u2" if byteorder == "little" else ">u2")
        else:
            base_dtype = np.dtype(st.dtype)
            if base_dtype.itemsize > 1:
                base_dtype = base_dtype.newbyteorder("<" if byteorder == "little" else ">")
        nbytes = len(raw)
        if any(s == 0 for s in self.size):
            arr = np.zeros(self.size, dtype=base_dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if self.offset < 0 or min(self.stride, default=0) < 0 or (last + 1) * itemsize > nbytes:
                raise WeightsError(
                    f"torch tensor of size {self.size} at offset {self.offset} with stride "
                    f"{self.stride} does not fit its storage {self.storage.key!r} "
                    f"({nbytes} bytes; truncated file?)"
                )
            arr = np.ndarray(
                shape=self.size,
                dtype=base_dtype,
                buffer=raw,
                offset=self.offset * itemsize,
                strides=tuple(s * itemsize for s in self.stride),
            )
        arr = np.array(arr, dtype=base_dtype.newbyteorder("="), order="C")
        if st.dtype == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorPlaceholder(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorPlaceholder(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


class _TensorClassMarker:
    def __init__(self, name):
        self.name = name


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter):
        raise UnsafePickleError("torch pickle asks _rebuild_from_type_v2 for an unknown function")
    return func(*args)


TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TensorClassMarker("Tensor"),
    ("torch._tensor", "Tensor"): _TensorClassMarker("Tensor"),
    ("torch.nn.parameter", "Parameter"): _TensorClassMarker("Parameter"),
}
for _name in _TORCH_DTYPES:
    TORCH_GLOBALS[("torch", _name)] = StorageType(_name)
    TORCH_GLOBALS[("torch.storage", _name)] = StorageType(_name)

# ---------------------------------------------------------------------------- unpickler


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only a fixed table of globals."""

    def __init__(self, file, *, torch=False, persistent_load=None, encoding="ASCII"):
        super().__init__(file, encoding=encoding)
        self._globals = dict(NUMPY_GLOBALS)
        if torch:
            self._globals.update(TORCH_GLOBALS)
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only the globals that rebuild "
                "arrays are allowed (this file may be malicious, or in an unsupported format)"
            ) from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafePickleError(f"refusing pickle persistent id {pid!r}: none expected here")
        return self._persistent(pid)


def resolve(obj, build_tensor=None, _depth=0):
    """Replace array/tensor placeholders inside dicts, lists and tuples by ndarrays."""
    if _depth > 100:
        raise WeightsError("pickle nests containers more than 100 levels deep")
    if isinstance(obj, ArrayPlaceholder):
        if obj.array is None:
            raise WeightsError("pickle holds an ndarray whose state was never set")
        arr = obj.array
        if arr.dtype.hasobject:
            flat = [resolve(x, build_tensor, _depth + 1) for x in arr.ravel()]
            out = np.empty(len(flat), dtype=object)
            for i, x in enumerate(flat):
                out[i] = x
            return out.reshape(arr.shape)
        return arr
    if isinstance(obj, TensorPlaceholder):
        if build_tensor is None:
            raise WeightsError("pickle holds torch tensors but was not read as a torch file")
        return build_tensor(obj)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = resolve(v, build_tensor, _depth + 1)
        return out
    if isinstance(obj, list):
        return [resolve(v, build_tensor, _depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(resolve(v, build_tensor, _depth + 1) for v in obj)
    return obj


def loads(data, *, encoding="ASCII"):
    """Unpickle ``data`` (bytes) admitting only NumPy-array globals; arrays are resolved."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except WeightsError:
        raise
    except Exception as exc:  # truncated or corrupt stream
        raise WeightsError(f"cannot unpickle data (truncated or corrupt?): {exc}") from None
    return resolve(obj)


def load(file, *, encoding="ASCII"):
    """Like :func:`loads` for an open binary file."""
    try:
        obj = RestrictedUnpickler(file, encoding=encoding).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot unpickle data (truncated or corrupt?): {exc}") from None
    return resolve(obj)
