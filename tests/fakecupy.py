"""A CuPy stand-in for the tests: the ``cuda`` device on a machine without a GPU.

It is test support code, never imported by minigrad: ``install(backend)`` puts it in place of
``minigrad.backend.cupy`` (tests/conftest.py does so for every ``[cuda]`` test when no real GPU
is present; tests/standin_cli.py does so for a CLI subprocess). Its arrays hold a NumPy array
("device memory") and compute with NumPy, so CPU and stand-in results are bit-identical, but
they behave as CuPy's do where NumPy would be lenient:

* ``ndarray`` is not a ``numpy.ndarray`` subclass, and ``__array__`` raises TypeError (CuPy
  refuses implicit device -> host conversion): ``numpy.asarray(a)`` and writing a device array
  into a host array fail;
* NumPy functions called on it dispatch (``__array_function__``/``__array_ufunc__``) to the
  stand-in function of the same name, or raise TypeError where CuPy has none;
* mixing it with ``numpy.ndarray`` operands raises TypeError, as CuPy's kernels do (NumPy
  scalars and Python numbers are fine; ``cupy.asarray`` is the way from host to device);
* reductions and integer indexing return 0-d device arrays, not NumPy scalars;
* ``.data`` is a pointer-like ``MemoryPointer``, not a buffer; there is no ``setflags`` and
  no ``flags.writeable``;
* ``.get()`` and ``cupy.asnumpy`` are the explicit ways to the host; they and every implicit
  device -> host wait of CuPy (``float``/``int``/``bool``/``item``/``tolist``/``repr``, data-
  dependent output sizes: ``nonzero``, boolean-mask indexing, ``unique``, and
  ``Device.synchronize``) count one host sync in ``SYNCS.count``;
* the namespaces hold only names that real CuPy exports (tests/data/cupy_namespace.json, the
  ``dir()`` of the cupy-cuda12x 14.2.0 wheel), and of those only the ones NumPy can serve.
"""
import json
import operator
import types
from pathlib import Path

import numpy

NAMES = json.loads((Path(__file__).parent / "data" / "cupy_namespace.json").read_text())
_HOST_TYPE_ERROR = "Unsupported type <class 'numpy.ndarray'>"  # CuPy's kernels' message
_DATA_DEPENDENT = {"nonzero", "flatnonzero", "argwhere", "extract", "compress", "unique"}


class SyncCounter:
    """How many times the host waited for the "device" (reset it before a measured block)."""

    count = 0

    def reset(self):
        self.count = 0


SYNCS = SyncCounter()


def _sync():
    SYNCS.count += 1


# --- moving values across the stand-in's boundary ---------------------------------------------
def _in(value):
    """Arguments -> NumPy for the computation; a host ndarray operand is refused as by CuPy."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, numpy.ndarray):
        raise TypeError(_HOST_TYPE_ERROR)
    if isinstance(value, (list, tuple)):
        return type(value)(_in(v) for v in value)
    return value


def _out(value):
    """NumPy results -> device arrays (NumPy scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(value, numpy.ndarray):
        return ndarray._wrap(value)
    if isinstance(value, numpy.generic):
        return ndarray._wrap(numpy.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_out(v) for v in value)
    return value


def _index(key):
    """An index: device arrays -> NumPy; host index arrays are allowed (CuPy copies them)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    return key


def _is_mask(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (numpy.ndarray, ndarray)) and k.dtype == bool for k in keys)


def _call(fn, args, kwargs, name=""):
    if name in _DATA_DEPENDENT:
        _sync()  # CuPy must read the data back to size the result
    out = kwargs.get("out")
    result = fn(*_in(args), **{k: _in(v) for k, v in kwargs.items()})
    if isinstance(out, ndarray):
        return out
    return _out(result)


class MemoryPointer:
    """What CuPy's ``ndarray.data`` is: an address on a device, not a buffer."""

    def __init__(self, array):
        self.ptr = array.__array_interface__["data"][0]
        self.device_id = 0

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} on device {self.device_id}>"


class Flags:
    """CuPy's flags: contiguity and ownership only (device memory cannot be made read-only)."""

    def __init__(self, array):
        self.c_contiguous = bool(array.flags.c_contiguous)
        self.f_contiguous = bool(array.flags.f_contiguous)
        self.owndata = bool(array.flags.owndata)


# --- the array -------------------------------------------------------------------------------
def _binary(op):
    def method(self, other):
        if isinstance(other, numpy.ndarray):
            raise TypeError(_HOST_TYPE_ERROR)
        if not isinstance(other, (ndarray, numpy.generic, int, float, complex, bool)):
            return NotImplemented  # e.g. a Tensor (higher __array_priority__): its reflected op
        return _out(op(self._a, _in(other)))
    return method


def _reflected(op):
    def method(self, other):
        if isinstance(other, numpy.ndarray):
            raise TypeError(_HOST_TYPE_ERROR)
        if not isinstance(other, (numpy.generic, int, float, complex, bool)):
            return NotImplemented
        return _out(op(other, self._a))
    return method


def _inplace(op):
    def method(self, other):
        if isinstance(other, numpy.ndarray):
            raise TypeError(_HOST_TYPE_ERROR)
        op(self._a, _in(other))
        return self
    return method


def _to_host_scalar(convert):
    def method(self):
        _sync()
        return convert(self._a)
    return method


_PLAIN_ATTRIBUTES = {"shape", "dtype", "ndim", "size", "strides", "itemsize", "nbytes"}
_WRAPPED_ATTRIBUTES = {"T", "mT", "real", "imag"}
_METHODS = {n for n in NAMES["cupy.ndarray"] if not n.startswith("__")
            and callable(getattr(numpy.ndarray, n, None))} - {"get", "item", "tolist", "set"}


class ndarray:  # noqa: N801 - CuPy's name
    """A device array of the stand-in (see the module docstring for how it behaves)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100  # CuPy's: a Tensor (1000) gets the reflected operator
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _wrap(cls, array):
        out = cls.__new__(cls)
        out._a = array
        return out

    # host <-> device: explicit only
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync()
        return numpy.array(self._a, order=order)

    def set(self, arr, stream=None):
        self._a[...] = numpy.asarray(arr)

    item = _to_host_scalar(lambda a: a.item())
    tolist = _to_host_scalar(lambda a: a.tolist())
    __float__ = _to_host_scalar(float)
    __int__ = _to_host_scalar(int)
    __bool__ = _to_host_scalar(bool)
    __complex__ = _to_host_scalar(complex)

    def __repr__(self):
        _sync()
        return repr(self._a)

    __str__ = __repr__

    # dispatch of NumPy's functions and ufuncs, as CuPy's ndarray does
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        target = getattr(cupy, ufunc.__name__, None)
        if method != "__call__" or not isinstance(target, _UFunc):
            return NotImplemented
        return target(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        target = cupy
        for part in func.__module__.split(".")[1:]:
            target = getattr(target, part, None)
            if target is None:
                return NotImplemented
        target = getattr(target, func.__name__, None)
        if target is None or target is func:
            return NotImplemented  # NumPy then raises TypeError: no implementation found
        return target(*args, **kwargs)

    # attributes
    def __getattr__(self, name):
        a = object.__getattribute__(self, "_a")
        if name in _PLAIN_ATTRIBUTES:
            return getattr(a, name)
        if name in _WRAPPED_ATTRIBUTES:
            return _out(getattr(a, name))
        if name in _METHODS:
            method = getattr(a, name)
            return lambda *args, **kwargs: _call(method, args, kwargs, name)
        raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")

    data = property(lambda self: MemoryPointer(self._a))
    flags = property(lambda self: Flags(self._a))
    base = property(lambda self: None if self._a.base is None else _out(self._a.base)
                    if isinstance(self._a.base, numpy.ndarray) else None)
    device = property(lambda self: cuda.Device(0))

    # indexing
    def __getitem__(self, key):
        if _is_mask(key):
            _sync()  # the output size depends on the mask's contents
        return _out(self._a[_index(key)])

    def __setitem__(self, key, value):
        if _is_mask(key):
            _sync()
        if isinstance(value, numpy.ndarray):
            raise TypeError(_HOST_TYPE_ERROR + " (move host data with cupy.asarray first)")
        self._a[_index(key)] = _in(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_out(row) for row in self._a)

    # operators
    __add__, __radd__, __iadd__ = _binary(operator.add), _reflected(operator.add), _inplace(
        operator.iadd)
    __sub__, __rsub__, __isub__ = _binary(operator.sub), _reflected(operator.sub), _inplace(
        operator.isub)
    __mul__, __rmul__, __imul__ = _binary(operator.mul), _reflected(operator.mul), _inplace(
        operator.imul)
    __truediv__, __rtruediv__, __itruediv__ = (_binary(operator.truediv),
                                               _reflected(operator.truediv),
                                               _inplace(operator.itruediv))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_binary(operator.floordiv),
                                                  _reflected(operator.floordiv),
                                                  _inplace(operator.ifloordiv))
    __mod__, __rmod__, __imod__ = _binary(operator.mod), _reflected(operator.mod), _inplace(
        operator.imod)
    __pow__, __rpow__, __ipow__ = _binary(operator.pow), _reflected(operator.pow), _inplace(
        operator.ipow)
    __matmul__, __rmatmul__ = _binary(operator.matmul), _reflected(operator.matmul)
    __and__, __rand__, __iand__ = _binary(operator.and_), _reflected(operator.and_), _inplace(
        operator.iand)
    __or__, __ror__, __ior__ = _binary(operator.or_), _reflected(operator.or_), _inplace(
        operator.ior)
    __xor__, __rxor__, __ixor__ = _binary(operator.xor), _reflected(operator.xor), _inplace(
        operator.ixor)
    __lt__, __le__ = _binary(operator.lt), _binary(operator.le)
    __gt__, __ge__ = _binary(operator.gt), _binary(operator.ge)
    __eq__, __ne__ = _binary(operator.eq), _binary(operator.ne)

    def __neg__(self):
        return _out(-self._a)

    def __pos__(self):
        return _out(+self._a)

    def __abs__(self):
        return _out(abs(self._a))

    def __invert__(self):
        return _out(~self._a)


# --- the namespaces --------------------------------------------------------------------------
class _UFunc:
    """A stand-in ufunc: called like NumPy's (``out=`` included); no ``.at``/``.reduce``."""

    def __init__(self, numpy_ufunc):
        self._f = numpy_ufunc
        self.__name__ = numpy_ufunc.__name__
        self.nin, self.nout = numpy_ufunc.nin, numpy_ufunc.nout

    def __call__(self, *args, **kwargs):
        return _call(self._f, args, kwargs)

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"


def _function(name, numpy_fn):
    def fn(*args, **kwargs):
        return _call(numpy_fn, args, kwargs, name)
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = "cupy"
    return fn


def _namespace(name, names, numpy_module, special=()):
    """A module of the stand-in: CuPy's ``names`` that NumPy's ``numpy_module`` can serve."""
    module = types.ModuleType(name)
    for n in names:
        value = getattr(numpy_module, n, None)
        if n in special or value is None or n == "ndarray":
            continue
        if isinstance(value, numpy.ufunc):
            setattr(module, n, _UFunc(value))
        elif isinstance(value, (type, types.ModuleType)) or not callable(value):
            if not isinstance(value, types.ModuleType):
                setattr(module, n, value)  # dtypes, finfo, constants: CuPy re-exports NumPy's
        else:
            setattr(module, n, _function(n, value))
    return module


def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host -> device (a copy: device memory is never the host's), or a device no-op."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return ndarray._wrap(numpy.array(_in_sequence(a), dtype=dtype, order=order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        return _out(numpy.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray._wrap(numpy.array(_in_sequence(obj), dtype=dtype, order=order, ndmin=ndmin))


def _in_sequence(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_in_sequence(v) for v in a)
    return a._a if isinstance(a, ndarray) else a


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return numpy.asarray(a, order=order)


def get_array_module(*args):
    return cupy if any(isinstance(a, ndarray) for a in args) else numpy


class Device:
    """cupy.cuda.Device: one device, id 0; ``synchronize`` is a host wait."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def synchronize(self):
        _sync()

    def use(self):
        if self.id != 0:
            raise RuntimeError("the CuPy stand-in has one device (0)")

    compute_capability = "90"


class CUDARuntimeError(RuntimeError):
    pass


runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1, getDevice=lambda: 0, deviceSynchronize=_sync,
    CUDARuntimeError=CUDARuntimeError,
    getDeviceProperties=lambda i: {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": 0})
cuda = types.ModuleType("cupy.cuda")
cuda.Device, cuda.runtime = Device, runtime

_SPECIAL = {"asarray", "array", "asnumpy", "get_array_module", "cuda", "lib", "linalg",
            "random", "testing", "fft"}
cupy = _namespace("cupy", NAMES["cupy"], numpy, _SPECIAL)
cupy.ndarray, cupy.asarray, cupy.array, cupy.asnumpy = ndarray, asarray, array, asnumpy
cupy.get_array_module, cupy.cuda = get_array_module, cuda
cupy.linalg = _namespace("cupy.linalg", NAMES["cupy.linalg"], numpy.linalg)
cupy.lib = types.ModuleType("cupy.lib")
cupy.lib.stride_tricks = _namespace("cupy.lib.stride_tricks", NAMES["cupy.lib.stride_tricks"],
                                    numpy.lib.stride_tricks, {"np", "annotations"})
cupy.__version__ = NAMES["version"] + "-standin"
cupy.is_standin = True


def _scatter(numpy_ufunc):
    def scatter(a, slices, value):
        numpy_ufunc.at(a._a, _index(slices), _in(value))
    return scatter


cupyx = types.ModuleType("cupyx")
cupyx.scatter_add = _scatter(numpy.add)
cupyx.scatter_max = _scatter(numpy.maximum)
cupyx.scatter_min = _scatter(numpy.minimum)
assert set(dir(cupyx)) - {"__doc__", "__loader__", "__name__", "__package__", "__spec__"} \
    <= set(NAMES["cupyx"])


def install(backend, setattr_=setattr):
    """Make ``minigrad.backend`` use the stand-in as CuPy with one GPU; ``setattr_`` may be
    pytest's ``monkeypatch.setattr`` so that it is undone after the test."""
    setattr_(backend, "cupy", cupy)
    setattr_(backend, "cupyx", cupyx)
    setattr_(backend, "_gpu_ok", True)
