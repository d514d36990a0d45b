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

**No shared state.** Every unpickler builds its own table of stand-ins (:func:`make_globals`),
and every stand-in is frozen (``_Frozen``: no ``__dict__``, no attribute can be set), so a
pickle's BUILD opcode can neither change how a later load decodes nor alter a checked
placeholder. **Bounded memory.** Every array and tensor a pickle declares is charged to the
load's :class:`~weights.limits.ElementBudget` before anything is allocated; a tensor must fit
its storage (no stride-0 expansion beyond it).
"""
import collections
import io
import pickle

import numpy as np

from .errors import UnsafePickleError, WeightsError
from .limits import MAX_ELEMENTS, ElementBudget, element_count

_MAX_DIMS = 32


class _Frozen:
    """Base of every stand-in a pickle can reach: attributes are set once, at construction."""

    __slots__ = ()

    def _init(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise UnsafePickleError(f"pickle tries to set attribute {name!r} of {self!r}")

    def __delattr__(self, name):
        raise UnsafePickleError(f"pickle tries to delete attribute {name!r} of {self!r}")


class Admitted(_Frozen):
    """One admitted global function, bound to this load's budget; the pickle cannot alter it."""

    __slots__ = ("fn", "label")

    def __init__(self, fn, label):
        self._init(fn=fn, label=label)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return self.label


class Marker(_Frozen):
    """A class the pickle may name but never call (``numpy.ndarray``, ``torch.Tensor``)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self._init(name=name)

    def __repr__(self):
        return self.name


# ---------------------------------------------------------------------------- numpy
class DtypeStandIn(_Frozen):
    """What ``numpy.dtype(...)`` gives a pickle: BUILD's state is checked here, never passed
    to NumPy's own ``dtype.__setstate__``, which trusts it (a malformed state crashes the
    process: found by tests/test_weights_fuzz.py). Only plain, unstructured dtypes."""

    __slots__ = ("dtype", "built")

    def __init__(self, dtype):
        self._init(dtype=dtype, built=False)

    def __setstate__(self, state):
        if self.built or not isinstance(state, tuple) or len(state) not in (8, 9):
            raise WeightsError("pickle holds a malformed dtype state")
        _version, order, subdescr, names, fields, elsize, alignment, _flags = state[:8]
        if order not in ("<", ">", "|", "=") or (subdescr, names, fields) != (None,) * 3 or \
                not all(isinstance(v, int) for v in (elsize, alignment)):
            raise WeightsError("pickle holds a structured or malformed dtype; only plain "
                               "numeric dtypes are read")
        if elsize not in (-1, self.dtype.itemsize):
            raise WeightsError(f"pickle holds a dtype {self.dtype} of {elsize} bytes")
        dtype = self.dtype if order in ("|", "=") or self.dtype.itemsize == 1 \
            else self.dtype.newbyteorder(order)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "built", True)

    def __repr__(self):
        return f"dtype({self.dtype})"


def _safe_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str) or len(spec) > 16:
        raise WeightsError(f"pickle holds an invalid dtype {spec!r}")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"pickle holds an invalid dtype {spec!r}: {exc}") from None
    if dtype.fields is not None or dtype.subdtype is not None:
        raise WeightsError(f"pickle holds a structured dtype {spec!r}")
    return DtypeStandIn(dtype)


def _as_dtype(dtype, what):
    if not isinstance(dtype, DtypeStandIn):
        raise WeightsError(f"pickle holds a malformed {what} dtype")
    return dtype.dtype


def _check_shape(shape):
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS:
        raise WeightsError(f"pickle holds an invalid array shape {shape!r}")
    for s in shape:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise WeightsError(f"pickle holds an invalid array shape {shape!r}")
        if s > MAX_ELEMENTS:
            raise WeightsError(f"pickle declares an array of shape {shape}, above the limit of "
                               f"{MAX_ELEMENTS:,} elements; refused before allocating")
    return shape


def _as_bytes(raw):
    if isinstance(raw, str):  # Python 2 pickles read with encoding="latin1"
        return raw.encode("latin1")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    raise WeightsError(f"pickle holds array data of type {type(raw).__name__}, expected bytes")


class ArrayPlaceholder:
    """What ``_reconstruct`` returns; ``BUILD`` fills it once via ``__setstate__``."""

    __slots__ = ("array", "budget")

    def __init__(self, budget):
        self.array, self.budget = None, budget

    def __setstate__(self, state):
        if self.array is not None:
            raise WeightsError("pickle sets the state of one ndarray twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise WeightsError("pickle holds a malformed ndarray state")
        shape, dtype, fortran, raw = state[-4:]
        shape = _check_shape(tuple(shape) if isinstance(shape, (tuple, list)) else shape)
        dtype = _as_dtype(dtype, "ndarray")
        count = self.budget.charge(element_count(shape), "pickle")
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
                f"pickle holds an array of shape {shape} and dtype {dtype} with "
                f"{len(data)} bytes of data, expected {count * dtype.itemsize}"
            )
        self.array = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order)


def _numpy_functions(budget, ndarray):
    def reconstruct(cls, shape, typecode):
        if cls is not ndarray:
            raise UnsafePickleError("pickle asks _reconstruct for a class other than "
                                    "numpy.ndarray")
        return ArrayPlaceholder(budget)

    def scalar(dtype, raw=None):
        dtype = _as_dtype(dtype, "scalar")
        if dtype.hasobject:
            raise WeightsError("pickle holds a numpy scalar of an unsupported dtype")
        data = _as_bytes(raw)
        if len(data) != dtype.itemsize:
            raise WeightsError(f"pickle holds a {dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype, count=1)[0]

    def frombuffer(buf, dtype, shape, order):
        dtype = _as_dtype(dtype, "buffer array")
        if dtype.hasobject:
            raise WeightsError("pickle holds a buffer array of an unsupported dtype")
        shape = _check_shape(tuple(shape))
        count = budget.charge(element_count(shape), "pickle")
        data = _as_bytes(buf)
        if len(data) != count * dtype.itemsize:
            raise WeightsError(f"pickle holds a buffer array of shape {shape} with "
                               f"{len(data)} bytes, expected {count * dtype.itemsize}")
        if order not in ("C", "F"):
            raise WeightsError(f"pickle holds a buffer array of order {order!r}")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()

    return reconstruct, scalar, frombuffer


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str):
        raise WeightsError("pickle asks _codecs.encode for a non-string")
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"pickle asks _codecs.encode for encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    # protocol-2 pickles written by Python 3 spell b"" as __builtin__.bytes()
    if args:
        raise UnsafePickleError("pickle calls bytes() with arguments")
    return b""


def _ordered_dict(*args):
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
        raise WeightsError("pickle calls OrderedDict with unexpected arguments")
    try:
        return collections.OrderedDict(*args)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"pickle calls OrderedDict with malformed items: {exc}") from None


def numpy_globals(budget):
    """A fresh {(module, name): stand-in} table for NumPy pickles, bound to ``budget``."""
    ndarray = Marker("numpy.ndarray")
    reconstruct, scalar, frombuffer = _numpy_functions(budget, ndarray)
    table = {("numpy", "ndarray"): ndarray}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = Admitted(reconstruct, f"{mod}._reconstruct")
        table[(mod, "scalar")] = Admitted(scalar, f"{mod}.scalar")
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = Admitted(frombuffer, f"{mod}._frombuffer")
    table[("numpy", "dtype")] = Admitted(_safe_dtype, "numpy.dtype")
    table[("_codecs", "encode")] = Admitted(_codecs_encode, "_codecs.encode")
    for mod in ("__builtin__", "builtins"):
        table[(mod, "bytes")] = Admitted(_empty_bytes, f"{mod}.bytes")
    table[("collections", "OrderedDict")] = Admitted(_ordered_dict, "collections.OrderedDict")
    return table


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


class StorageType(_Frozen):
    """Stands in for a ``torch.*Storage`` class: only its element type matters."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self._init(name=name, dtype=_TORCH_DTYPES[name])

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def __repr__(self):
        return f"torch.{self.name}"


class StorageRef(_Frozen):
    """A torch storage named by a persistent id; its bytes are supplied by the caller."""

    __slots__ = ("type", "key", "numel", "loader", "offset")

    def __init__(self, storage_type, key, numel, loader, offset=0):
        if not isinstance(storage_type, StorageType):
            raise WeightsError(f"torch pickle names an unsupported storage type {storage_type!r}")
        if not isinstance(numel, int) or not isinstance(offset, int) or numel < 0 or offset < 0:
            raise WeightsError(f"torch pickle declares storage {key!r} with a bad size "
                               f"{numel!r} or offset {offset!r}")
        # loader: callable(key) -> bytes-like with the storage's raw bytes; offset: element
        # offset into the root storage (legacy views)
        self._init(type=storage_type, key=str(key), numel=numel, loader=loader, offset=offset)


class TensorPlaceholder(_Frozen):
    """A tensor to rebuild from a storage once the storage bytes are available.

    Checked when the pickle declares it, before any storage is read: the size, the strides
    and the offset must address only elements of the storage (``storage.numel``), and the
    tensor may not hold more elements than its storage (no stride-0 expansion)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride, budget):
        if not isinstance(storage, StorageRef):
            raise WeightsError("torch pickle rebuilds a tensor from a non-storage object")
        if not all(isinstance(v, (tuple, list)) for v in (size, stride)) or \
                not isinstance(offset, int) or \
                not all(isinstance(s, int) and not isinstance(s, bool) for s in stride):
            raise WeightsError("torch pickle rebuilds a tensor with a malformed size or stride")
        size = _check_shape(tuple(size))
        stride = tuple(stride)
        offset = offset + storage.offset
        if len(stride) != len(size):
            raise WeightsError(f"torch tensor has size {size} but stride {stride}")
        count = budget.charge(element_count(size), "torch pickle")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if count and (offset < 0 or min(stride, default=0) < 0 or count > storage.numel
                      or last >= storage.numel + storage.offset):
            raise WeightsError(
                f"torch tensor of size {size} at offset {offset} with stride {stride} does "
                f"not fit its storage {storage.key!r} ({storage.numel} elements declared)")
        self._init(storage=storage, offset=offset, size=size, stride=stride)

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
            if (last + 1) * itemsize > nbytes:
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


def _torch_functions(budget):
    def rebuild_tensor(storage, storage_offset, size, stride):
        return TensorPlaceholder(storage, storage_offset, size, stride, budget)

    def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                          backward_hooks=None, metadata=None):
        return TensorPlaceholder(storage, storage_offset, size, stride, budget)

    def rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
        return data

    rebuilders = (rebuild_tensor, rebuild_tensor_v2, rebuild_parameter)

    def rebuild_from_type_v2(func, new_type, args, state):
        if not isinstance(func, Admitted) or func.fn not in rebuilders or \
                not isinstance(args, tuple):
            raise UnsafePickleError("torch pickle asks _rebuild_from_type_v2 for an unknown "
                                    "function")
        return func(*args)

    return rebuild_tensor, rebuild_tensor_v2, rebuild_parameter, rebuild_from_type_v2


def torch_globals(budget):
    """A fresh table of the torch stand-ins (storage types, rebuild functions) of one load."""
    tensor, tensor_v2, parameter, from_type = _torch_functions(budget)
    table = {
        ("torch._utils", "_rebuild_tensor"): Admitted(tensor, "torch._utils._rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"):
            Admitted(tensor_v2, "torch._utils._rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"):
            Admitted(parameter, "torch._utils._rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"):
            Admitted(parameter, "torch._utils._rebuild_parameter_with_state"),
    }
    for mod in ("torch._tensor", "torch.tensor"):
        table[(mod, "_rebuild_from_type_v2")] = Admitted(from_type, f"{mod}._rebuild_from_type_v2")
    for mod, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                      ("torch.nn.parameter", "Parameter")):
        table[(mod, name)] = Marker(f"{mod}.{name}")
    for name in _TORCH_DTYPES:
        storage = StorageType(name)
        table[("torch", name)] = storage
        table[("torch.storage", name)] = storage
    return table


# ---------------------------------------------------------------------------- unpickler


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only a fixed table of globals.

    The table is built afresh for each unpickler, bound to its own element ``budget``."""

    def __init__(self, file, *, torch=False, persistent_load=None, encoding="ASCII",
                 budget=None):
        super().__init__(file, encoding=encoding)
        self.budget = budget if budget is not None else ElementBudget()
        self._globals = numpy_globals(self.budget)
        if torch:
            self._globals.update(torch_globals(self.budget))
        self._persistent = persistent_load

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
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


def _unpickle(file, encoding):
    try:
        obj = RestrictedUnpickler(file, encoding=encoding).load()
    except WeightsError:
        raise
    except RecursionError:
        raise WeightsError("cannot unpickle data: it nests too deeply (corrupt?)") from None
    except Exception as exc:  # truncated or corrupt stream
        raise WeightsError(f"cannot unpickle data (truncated or corrupt?): {exc}") from None
    return resolve(obj)


def loads(data, *, encoding="ASCII"):
    """Unpickle ``data`` (bytes) admitting only NumPy-array globals; arrays are resolved."""
    return _unpickle(io.BytesIO(data), encoding)


def load(file, *, encoding="ASCII"):
    """Like :func:`loads` for an open binary file."""
    return _unpickle(file, encoding)
