"""The array backend: the only module in minigrad that imports NumPy or CuPy.

Every op asks ``xp = get_array_module(x)`` and uses ``xp.<fn>`` so that one code path serves
both NumPy (CPU) and CuPy (GPU), as in Chainer and DeZero. CuPy is optional: without it the
library is CPU-only and nothing here fails.
"""
import contextlib
import itertools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy

try:  # CuPy is a `gpu-cuda*` extra; import errors (no package, no driver) mean CPU only
    import cupy
    import cupyx
    try:
        _gpu_ok = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - a driver error means there is no usable GPU
        _gpu_ok = False
except Exception:  # noqa: BLE001
    cupy = cupyx = None
    _gpu_ok = False

# The host module, for code that builds constants on the CPU before moving them (filter
# banks, random initialisations): they are made once with NumPy and sent with to_device.
np = numpy


def gpu_available():
    """True when CuPy imports and sees at least one GPU."""
    return _gpu_ok


class ArrayHolder:
    """Base of the types that hold one array in ``.data`` (minigrad's Tensor).

    ``unwrap`` asks for this type rather than for a ``.data`` attribute: a CuPy array's
    ``.data`` is a MemoryPointer and a NumPy array's a memoryview, neither of them an array.
    """

    __slots__ = ()


def unwrap(value):
    """The array inside a Tensor; arrays, numbers and anything else as they are."""
    return value.data if isinstance(value, ArrayHolder) else value


def get_array_module(*arrays):
    """NumPy or CuPy, whichever owns the arrays (Tensors are unwrapped)."""
    if cupy is not None:
        return cupy.get_array_module(*[unwrap(a) for a in arrays])
    return numpy


def xp_for(device):
    """The array module for a device name: 'cpu' -> NumPy, 'cuda' -> CuPy."""
    device = check_device(device)
    return cupy if device == "cuda" else numpy


def check_device(device):
    """'cpu' or 'cuda' for a device name: 'cpu', 'cuda', or 'cuda:N' naming the current GPU.

    minigrad runs on CuPy's current device; 'cuda:N' for another one is refused (select it
    with CUDA_VISIBLE_DEVICES) rather than silently running on the current one.
    """
    device = str(device)
    name, _, index = device.partition(":")
    if name == "cuda":
        if not _gpu_ok:
            raise RuntimeError(
                f"device {device!r} requested but CuPy with a GPU is not available "
                "(install a gpu extra, e.g. pip install 'minigrad[gpu-cuda12]')"
            )
        if index:
            _check_gpu_index(device, index)
        return "cuda"
    if device != "cpu":
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    return "cpu"


def _check_gpu_index(device, index):
    if not index.isdigit():
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    current, count = cupy.cuda.Device().id, cupy.cuda.runtime.getDeviceCount()
    if int(index) >= count:
        raise ValueError(f"device {device!r}: only {count} GPU(s) visible (cuda:0..{count - 1})")
    if int(index) != current:
        raise ValueError(
            f"device {device!r}: minigrad runs on the current GPU (cuda:{current}); select "
            f"GPU {index} with CUDA_VISIBLE_DEVICES={index} and pass 'cuda'"
        )


def device_of(array):
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return "cuda"
    return "cpu"


def to_device(array, device):
    """Move an array to 'cpu' (NumPy) or 'cuda' (CuPy); a no-op when it is already there."""
    device = check_device(device)
    if device == "cuda":
        return cupy.asarray(array)
    return asnumpy(array)


def asnumpy(array):
    """A NumPy array from a NumPy array, a CuPy array or a Python scalar."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return numpy.asarray(array)


def synchronize(device="cpu"):
    """Wait for queued GPU work (for timing); nothing to do on the CPU."""
    if device == "cuda" and cupy is not None:
        cupy.cuda.Device().synchronize()


def is_array(value):
    if isinstance(value, numpy.ndarray):
        return True
    return cupy is not None and isinstance(value, cupy.ndarray)


def as_strided(x, shape, strides):
    """A strided view of x (read-only use: windows for pooling and im2col)."""
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    return numpy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


def scatter_add(target, index, values):
    """target[index] += values, accumulating repeated indices (NumPy and CuPy spell it apart)."""
    if cupy is not None and isinstance(target, cupy.ndarray):
        cupyx.scatter_add(target, index, values)
    else:
        numpy.add.at(target, index, values)


def shares_memory(a, b):
    """Whether two arrays of the same backend may overlap in memory."""
    if device_of(a) != device_of(b):
        return False
    return bool(get_array_module(a).shares_memory(a, b))


def quiet_float_errors():
    """A context in which division by zero and 0/0 give ±inf and NaN without NumPy's
    RuntimeWarning, for code that means them (CuPy never warns; this is harmless there)."""
    return numpy.errstate(divide="ignore", invalid="ignore")


def freeze(array):
    """Make a NumPy array read-only, so in-place writes raise (CuPy has no such flag)."""
    if isinstance(array, numpy.ndarray):
        array.flags.writeable = False
    return array


def pad(x, widths, value=0.0):
    """Constant padding, ``widths`` as in numpy.pad: ((before, after), ...) per axis.

    An allocation plus one copy of the interior; numpy.pad's general machinery costs about
    four times as much on the small arrays of a network.
    """
    xp = get_array_module(x)
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths))
    out = xp.full(shape, value, dtype=x.dtype) if value else xp.zeros(shape, dtype=x.dtype)
    interior = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, widths))

    def piece(index):  # x[index] -> its place in out (pieces of one axis: parallel_for)
        axis, part = len(index) - 1, index[-1]
        if part is not Ellipsis:
            lo = widths[axis][0]
            out[interior[:axis] + (slice(lo + part.start, lo + part.stop),)
                + interior[axis + 1:]] = x[index]
        else:
            out[interior] = x
    parallel_for(piece, x)
    return out


# --- parallel execution on the CPU (``parallel``) ---------------------------------------------
# Python's GIL hand-over interval inside a parallel block: a worker returning from a NumPy call
# waits up to this long for the GIL, instead of the default 5 ms
SWITCH_INTERVAL = 2e-4
_local = threading.local()  # .pool, .threads: the workers of this thread's parallel block
# the settings every parallel block shares: the count of open blocks, and what to restore
_process = {"lock": threading.Lock(), "blocks": 0, "blas": None, "switch": None}


@contextlib.contextmanager
def parallel(threads):
    """Within the block, the calling thread's ops split their large array work over
    ``threads`` worker threads (``parallel_map``), with BLAS held at one thread.

    Why: NumPy's element-wise work (Winograd's tile transforms, im2col's gathers) runs on one
    core, and a multi-threaded BLAS spins its idle workers for ~0.1 s after each GEMM, taking
    the core another thread would use. With BLAS at one thread and every large op split, both
    cores do all of the work. Process-wide settings (the BLAS thread count, the GIL switch
    interval) are changed by the first block to enter and restored by the last to leave, so
    concurrent blocks in several threads are safe. A nested block keeps the outer one's
    workers; ``threads`` of None or 1 run serially. Needs threadpoolctl (the ``parallel``
    extra).
    """
    if threads is None or threads <= 1 or getattr(_local, "pool", None) is not None:
        yield
        return
    _enter_process_settings()
    _local.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="minigrad")
    _local.threads = threads
    try:
        yield
    finally:
        pool, _local.pool, _local.threads = _local.pool, None, 1
        pool.shutdown(cancel_futures=True)  # on Ctrl-C: drop the pieces not started
        _leave_process_settings()


def check_parallel(threads):
    """Raise, before a run starts, the error that ``parallel(threads)`` would."""
    if threads is not None and threads > 1:
        _threadpool_controller()


def _threadpool_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        raise RuntimeError("threads > 1 needs threadpoolctl, to hold BLAS at one thread: "
                           "pip install 'minigrad[parallel]'") from None
    return ThreadpoolController


def _enter_process_settings():
    ThreadpoolController = _threadpool_controller()
    with _process["lock"]:
        if _process["blocks"] == 0:
            controller = ThreadpoolController().select(user_api="blas")
            _take_blas_control(controller)
            _process["blas"] = (controller, controller.limit(limits=1))
            _process["switch"] = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)
        _process["blocks"] += 1


def _leave_process_settings():
    with _process["lock"]:
        _process["blocks"] -= 1
        if _process["blocks"] == 0:
            controller, limiter = _process["blas"]
            _take_blas_control(controller)
            limiter.restore_original_limits()
            sys.setswitchinterval(_process["switch"])


def _take_blas_control(controller):
    """Let this thread set the BLAS thread count. threadpoolctl lets only one thread (the
    first to set it) change a process-wide OpenBLAS pool and silently ignores the others; the
    last block to leave may run in another thread than the first, and must restore."""
    for lib in controller.lib_controllers:
        clear = getattr(type(lib), "clear_controlling_thread", None)  # threadpoolctl >= 3.6
        if clear is not None:
            clear(force=True)


def parallel_threads(like):
    """How many worker threads ``parallel_map`` would use for work on the array ``like``:
    those of the calling thread's parallel block; 1 outside one, and for CuPy arrays."""
    return 1 if device_of(like) == "cuda" else getattr(_local, "threads", 1)


def parallel_map(fn, items, like):
    """[fn(item) for item in items], spread over the parallel block's threads when there is
    one; serially otherwise, and when ``like`` (an array of the work) is a CuPy array.

    The calling thread works too: it and threads - 1 pool workers take the next item in turn
    until none is left, so no item waits for a worker to wake while one is idle."""
    items = list(items)
    threads = parallel_threads(like)
    if threads == 1 or len(items) < 2:
        return [fn(item) for item in items]
    results, taken, stop = [None] * len(items), itertools.count(), []

    def drain():
        while not stop and (k := next(taken)) < len(items):  # next() is atomic under the GIL
            results[k] = fn(items[k])

    helpers = [_local.pool.submit(drain) for _ in range(min(threads, len(items)) - 1)]
    try:
        drain()
    finally:
        stop.append(True)  # after an error here (or Ctrl-C), the helpers take no new item
        for helper in helpers:
            helper.result()  # waits; raises a helper's error
    return results


# element-wise work on fewer elements than this is not split: a hand-over to a worker costs
# tens of microseconds, what a pass over ~64k float32 values takes
MIN_PARALLEL_ELEMENTS = 2 ** 16


def parallel_for(fn, array):
    """fn(index) for index tuples that cut ``array``'s batch axis (or, for a batch of one, its
    channel axis) into one piece per worker: for element-wise work whose pieces are
    independent. Outside a parallel block, or for a small array, one call: fn((...,))."""
    threads = parallel_threads(array)
    if threads == 1 or array.ndim < 2 or array.size < MIN_PARALLEL_ELEMENTS:
        fn((Ellipsis,))
        return
    axis = 0 if array.shape[0] >= threads else 1
    pieces = [(slice(None),) * axis + (slice(a, b),)
              for a, b in split_range(array.shape[axis], threads)]
    parallel_map(fn, pieces, like=array)


def split_range(n, parts):
    """[start, stop) ranges cutting range(n) into at most ``parts`` near-equal pieces."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
KEEP_FREED_BYTES = 256 * 2 ** 20
MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's largest: arrays above it are still mapped per call
_malloc_state = {"tuned": None}


def keep_freed_memory(nbytes=KEEP_FREED_BYTES):
    """Ask glibc to keep up to ``nbytes`` of freed heap memory instead of returning it to the
    OS; returns whether it could (False off glibc, or when MINIGRAD_KEEP_FREED=0).

    An optimisation step allocates and frees the same few-MB temporaries every iteration.
    With glibc's defaults those go back to the OS at each free and are page-faulted in again
    at the next allocation: measured on a HOG inversion at 160 px, 1,100 page faults and a
    third of the CPU time in the kernel per iteration, 9.4 -> 4.8 ms with the memory kept.
    Process-wide and permanent (as is glibc's own tuning); the peak RSS does not grow, the
    RSS simply stays near its peak. Done once per process, by ``invert``
    (``python -m benchmarks.bench_malloc`` measures both settings).
    """
    import ctypes
    import os

    if _malloc_state["tuned"] is not None:
        return _malloc_state["tuned"]
    ok = False
    if os.environ.get("MINIGRAD_KEEP_FREED", "1") != "0":
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without it)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            # setting any of these fixes glibc's (otherwise adaptive) mmap threshold: set it
            # too, at its maximum, so that arrays up to 32 MB come from the kept heap
            ok = all(mallopt(param, value) for param, value in (
                (_M_TOP_PAD, int(nbytes)), (_M_TRIM_THRESHOLD, int(nbytes)),
                (_M_MMAP_THRESHOLD, MMAP_THRESHOLD)))
    _malloc_state["tuned"] = ok
    return ok
