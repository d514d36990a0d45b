"""The CuPy stand-in (tests/fakecupy.py) behaves as CuPy where NumPy is lenient, and the backend
treats raw device arrays right (issue 11's failures, reproduced on the stand-in)."""
import numpy as np
import pytest
from fakecupy import NAMES, cupy, cupyx

import minigrad as mg
from minigrad import backend


@pytest.fixture
def dev(standin):
    return lambda a: cupy.asarray(np.asarray(a, dtype=np.float32))


def test_device_arrays_refuse_the_host_implicitly(dev):
    a = dev([[1.0, 2.0], [3.0, 4.0]])
    assert not isinstance(a, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    host = np.zeros((2, 2), np.float32)
    with pytest.raises(TypeError):
        host[...] = a  # a device array written into a host buffer
    for mixed in (lambda: a + host, lambda: host * a, lambda: cupy.maximum(a, host)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    with pytest.raises(TypeError):
        np.ascontiguousarray(a) + 0  # NumPy's function dispatches to CuPy's, which refuses
    assert a.data.__class__.__name__ == "MemoryPointer" and not hasattr(a, "setflags")
    assert not hasattr(a.flags, "writeable")


def test_numpy_functions_dispatch_and_results_stay_on_the_device(dev, standin):
    a = dev([[1.0, -2.0], [3.0, 4.0]])
    for r in (np.exp(a), np.sum(a), a.sum(), a[0, 1], a.max(axis=0), np.where(a > 0, a, 0)):
        assert isinstance(r, cupy.ndarray)
    assert a.sum().shape == () and a[1, 1].shape == ()
    with pytest.raises(TypeError):
        np.add.at(a, [0], 1.0)  # CuPy's ufuncs have no .at here: cupyx.scatter_add
    standin.reset()  # NumPy's error message above printed the array (a repr waits)
    cupyx.scatter_add(a, (np.array([0, 0]), np.array([1, 1])), 1.0)
    assert standin.count == 0
    np.testing.assert_array_equal(a.get(), [[1, 0], [3, 4]])
    assert float(a.sum()) == 8.0 and standin.count == 2  # .get() and float() both wait
    a.nonzero()
    a[a > 2] = 0
    assert standin.count == 4  # data-dependent sizes read the device


def test_the_namespace_holds_only_names_cupy_exports():
    names = {n for n in dir(cupy) if not n.startswith("__")}
    assert names - {"is_standin"} <= set(NAMES["cupy"])
    assert {"asarray", "asnumpy", "ndarray", "get_array_module", "cuda", "lib"} <= names
    assert not hasattr(cupy, "errstate") and not hasattr(cupy, "add_docstring")


def test_get_array_module_sees_raw_device_arrays_and_tensors(dev):
    a = dev([1.0, 2.0])
    assert backend.get_array_module(a) is cupy  # getattr(a, "data", a) gave NumPy here
    assert backend.get_array_module(mg.Tensor(a)) is cupy
    assert backend.get_array_module(np.ones(2)) is np
    assert backend.unwrap(a) is a and backend.unwrap(mg.Tensor(a)).__class__ is cupy.ndarray


def test_padding_and_im2col_of_raw_device_arrays(dev):
    x = dev(np.arange(16.0).reshape(1, 1, 4, 4))
    padded = backend.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert isinstance(padded, cupy.ndarray)
    np.testing.assert_array_equal(backend.asnumpy(padded), np.pad(np.arange(16.0).reshape(
        1, 1, 4, 4), ((0, 0), (0, 0), (1, 1), (1, 1))))


def test_cuda_index_is_checked(standin):
    assert backend.check_device("cuda:0") == "cuda"
    with pytest.raises(ValueError, match="only 1 GPU"):
        backend.check_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        backend.check_device("cuda:x")
    with pytest.raises(ValueError, match="unknown device"):
        mg.tensor([1.0]).to("gpu")
