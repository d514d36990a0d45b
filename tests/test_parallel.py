"""The parallel mode (``backend.parallel``, ``invert(threads=N)``, ``--threads N``): its
process-wide settings and their restoration, concurrent and nested blocks, and ops that give
torch's float64 results (convolutions) or the serial results bit for bit (ReLU, max-pool)
when their work is split over worker threads."""
import sys
import threading
import time

import numpy as np
import pytest

import minigrad as mg
from minigrad import F, backend
from minigrad.inversion import InversionError
from minigrad.ops import conv, winograd

threadpoolctl = pytest.importorskip("threadpoolctl", reason="the parallel mode needs threadpoolctl")


def blas_threads():
    counts = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    assert len(counts) == 1, counts
    return counts.pop()


@pytest.fixture
def split_small(monkeypatch):
    """Split arrays of any size (tests use small ones), into pieces of ragged size."""
    monkeypatch.setattr(backend, "MIN_PARALLEL_ELEMENTS", 1)


@pytest.fixture
def blas_at_two():
    """BLAS at two threads (whatever the machine's default), so a block visibly changes it."""
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert blas_threads() == 2
        yield


def test_parallel_holds_blas_at_one_thread_and_restores_the_settings(blas_at_two):
    interval = sys.getswitchinterval()
    with backend.parallel(2):
        assert blas_threads() == 1
        assert sys.getswitchinterval() == pytest.approx(backend.SWITCH_INTERVAL)
        assert backend.parallel_threads(np.zeros(1)) == 2
    assert blas_threads() == 2 and sys.getswitchinterval() == interval
    assert backend.parallel_threads(np.zeros(1)) == 1


def test_an_interrupted_block_restores_the_settings(blas_at_two):
    interval = sys.getswitchinterval()
    with pytest.raises(KeyboardInterrupt):
        with backend.parallel(2):
            backend.parallel_map(lambda _: None, range(4), like=np.zeros(1))
            raise KeyboardInterrupt
    assert blas_threads() == 2 and sys.getswitchinterval() == interval
    assert backend.parallel_threads(np.zeros(1)) == 1


def test_concurrent_blocks_keep_the_settings_until_the_last_one_leaves(blas_at_two):
    entered, first_left, seen = threading.Event(), threading.Event(), {}

    def second():
        with backend.parallel(2):
            entered.set()
            first_left.wait(10)
            seen["inside after the first left"] = blas_threads()
            seen["own workers"] = backend.parallel_threads(np.zeros(1))

    thread = threading.Thread(target=second)
    with backend.parallel(3):
        thread.start()
        assert entered.wait(10)
        assert backend.parallel_threads(np.zeros(1)) == 3  # each thread has its own block
    first_left.set()
    thread.join(10)
    assert seen == {"inside after the first left": 1, "own workers": 2}
    assert blas_threads() == 2


def test_work_on_the_workers_and_in_nested_blocks_runs_serially():
    x = np.zeros(4)
    with backend.parallel(2):
        with backend.parallel(5):  # keeps the outer block's two workers
            assert backend.parallel_threads(x) == 2
        names = backend.parallel_map(lambda _: _slow(threading.current_thread).name, range(8),
                                     like=x)
        inner = backend.parallel_map(lambda _: _slow(backend.parallel_threads, x), range(8),
                                     like=x)
    # the calling thread and one pool worker take the items
    assert {n.split("_")[0] for n in names} == {threading.current_thread().name, "minigrad"}
    assert set(inner) == {1, 2}  # a worker has no block: what it calls runs serially, no deadlock
    assert backend.parallel_map(lambda i: i * i, range(4), like=x) == [0, 1, 4, 9]


def _slow(fn, *args):
    time.sleep(0.01)  # long enough for the worker to take items too
    return fn(*args)


def test_an_error_in_a_piece_reaches_the_caller_after_every_piece_in_flight(rng):
    done = []

    def piece(i):
        time.sleep(0.01)
        if i == 1:
            raise ValueError("piece 1")
        done.append(i)

    with backend.parallel(2):
        with pytest.raises(ValueError, match="piece 1"):
            backend.parallel_map(piece, range(6), like=np.zeros(1))
    assert len(done) < 6  # the pieces after the error were not all run


def test_split_range_covers_the_range_in_near_equal_pieces():
    assert backend.split_range(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert backend.split_range(2, 5) == [(0, 1), (1, 2)]
    assert backend.split_range(5, 1) == [(0, 5)]


def test_parallel_without_threadpoolctl_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    with pytest.raises(RuntimeError, match=r"needs threadpoolctl.*minigrad\[parallel\]"):
        with backend.parallel(2):
            pass
    with pytest.raises(RuntimeError, match="needs threadpoolctl"):
        backend.check_parallel(2)
    backend.check_parallel(1)  # one thread needs nothing
    with backend.parallel(None):
        assert backend.parallel_threads(np.zeros(1)) == 1


def test_cupy_work_runs_serially_in_a_block(cuda):
    y = backend.xp_for(cuda).zeros(4)
    with backend.parallel(2):
        assert backend.parallel_threads(y) == 1
        names = backend.parallel_map(lambda _: threading.current_thread().name, range(3), like=y)
    assert set(names) == {threading.current_thread().name}


def _grads(fn, x, g):
    xt = mg.Tensor(x, requires_grad=True)
    y = fn(xt)
    y.backward(g)
    return y.data, xt.grad


POOLS = [  # (x shape, kernel, stride, padding, ceil_mode): tiled, overlapping, padded, ceil
    ((1, 5, 8, 8), 2, 2, 0, False), ((3, 4, 13, 13), 3, 2, 0, True),
    ((1, 7, 11, 9), 3, 2, 1, False), ((2, 3, 9, 10), 3, 1, 1, False),
]


@pytest.mark.parametrize("xs, k, s, p, ceil", POOLS)
def test_split_max_pool_and_relu_are_bit_identical_to_serial(xs, k, s, p, ceil, split_small,
                                                             rng):
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64) - np.prod(xs) / 2  # no ties
    pool = lambda t: F.max_pool2d(F.relu(t), k, s, p, ceil_mode=ceil)  # noqa: E731
    g = rng.standard_normal(pool(mg.Tensor(x)).shape)
    serial = _grads(pool, x, g)
    with backend.parallel(3):
        split = _grads(pool, x, g)
    for a, b, what in zip(serial, split, ("forward", "input gradient")):
        np.testing.assert_array_equal(a, b, err_msg=what)


CONVS = [  # (x shape, w shape, padding, groups, algorithm)
    ((1, 4, 23, 17), (6, 4, 3, 3), 1, 1, "winograd"),  # F(4,3)
    ((1, 4, 13, 13), (6, 2, 3, 3), 1, 2, "winograd"),  # F(2,3), groups
    ((1, 4, 27, 27), (6, 2, 5, 5), 2, 2, "winograd"),  # F(3,5): its own backward U
    ((1, 6, 13, 13), (8, 3, 3, 3), 1, 2, "im2col"),
    ((2, 3, 12, 12), (5, 3, 5, 5), 2, 1, "im2col"),
    ((1, 96, 9, 8), (6, 48, 3, 3), 1, 2, "im2col"),  # dx split by input channel
]


# Winograd twice: bands of one tile row on the workers (MIN_GEMM_TILES 1), and one band whose
# input channels, then output channels, the workers share (too few rows for a band each)
SPLIT_CONVS = [case + (tiles,) for case in CONVS
               for tiles in ((1, 1 << 20) if case[4] == "winograd" else (1,))]


@pytest.mark.parametrize("xs, ws, padding, groups, algorithm, min_tiles", SPLIT_CONVS)
@pytest.mark.parametrize("threads", [2, 3])
def test_split_convolutions_match_torch_float64(xs, ws, padding, groups, algorithm, min_tiles,
                                                threads, monkeypatch, rng):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(winograd, "MIN_GEMM_TILES", min_tiles)
    monkeypatch.setattr(conv, "COLS_BUDGET", 4000)  # im2col in blocks of a few output rows
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    convolve = lambda t: F.conv2d(t, mg.Tensor(w), padding=padding,  # noqa: E731
                                  groups=groups, algorithm=algorithm)
    x_th = torch.tensor(x, requires_grad=True)
    y_th = torch.nn.functional.conv2d(x_th, torch.tensor(w), padding=padding, groups=groups)
    g = rng.standard_normal(tuple(y_th.shape))
    y_th.backward(torch.from_numpy(g))
    with backend.parallel(threads):
        y, gx = _grads(convolve, x, g)
    np.testing.assert_allclose(y, y_th.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, x_th.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_invert_with_threads_follows_the_serial_run_and_checks_the_option(rng):
    import models

    rep = models.get("alexnet", weights=None, seed=0)
    image = (rng.random((67, 67, 3)) * 255).astype(np.uint8)
    runs = [mg.invert(rep, image, "conv3", iters=4, threads=t) for t in (None, 2)]
    assert [r.status for r in runs] == ["completed", "completed"]
    assert runs[1].options["threads"] == 2
    # float32: the split GEMMs sum in another order, which can flip max-pool near-ties (measured
    # 1e-7 to 4e-5 here); a misplaced piece would be off by O(1)
    x0, x1 = runs[0].x, runs[1].x
    assert np.linalg.norm(x1 - x0) / np.linalg.norm(x0) < 1e-3
    with pytest.raises(InversionError, match="threads must be an integer >= 1"):
        mg.invert(rep, image, "conv3", iters=1, threads=0)


@pytest.mark.parametrize("xs", [(7,), (1, 7), (3, 7), (2, 3, 7)])
def test_split_linear_matches_torch_float64(xs, rng):
    torch = pytest.importorskip("torch")
    x, w, b = rng.standard_normal(xs), rng.standard_normal((5, 7)), rng.standard_normal(5)
    x_th = torch.tensor(x, requires_grad=True)
    y_th = torch.nn.functional.linear(x_th, torch.tensor(w), torch.tensor(b))
    g = rng.standard_normal(tuple(y_th.shape))
    y_th.backward(torch.from_numpy(g))
    with backend.parallel(2):
        y, gx = _grads(lambda t: F.linear(t, mg.Tensor(w), mg.Tensor(b)), x, g)
    np.testing.assert_allclose(y, y_th.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, x_th.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, widths", [
    ((1, 5, 4, 3), ((0, 0), (0, 0), (1, 2), (3, 0))),
    ((3, 2, 4, 4), ((0, 0), (1, 1), (2, 2), (0, 1))),  # split along the batch, pad channels
    ((1, 7, 3, 3), ((0, 1), (2, 0), (0, 0), (1, 1))),  # split along padded channels
])
def test_split_pad_equals_numpy_pad(shape, widths, split_small, rng):
    x = rng.standard_normal(shape)
    with backend.parallel(3):
        ours = backend.pad(x, widths, -np.inf)
    np.testing.assert_array_equal(ours, np.pad(x, widths, constant_values=-np.inf))


def test_threads_on_cuda_are_ignored_and_need_no_threadpoolctl(cuda, monkeypatch, rng):
    """On the GPU the loop never enters the parallel mode: the stand-in's run with threads=2
    equals the run without, bit for bit, even with threadpoolctl missing."""
    import models

    image = (rng.random((67, 67, 3)) * 255).astype(np.uint8)
    plain = mg.invert(models.get("alexnet", weights=None, seed=0), image, "conv2", iters=3,
                      device=cuda)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    threaded = mg.invert(models.get("alexnet", weights=None, seed=0), image, "conv2", iters=3,
                         device=cuda, threads=2)
    assert threaded.status == "completed" and threaded.options["threads"] == 2
    np.testing.assert_array_equal(threaded.x, plain.x)


def test_ctrl_c_in_a_threaded_run_returns_the_iterate_and_restores_blas(blas_at_two, rng):
    import models

    def interrupt(step, x, terms):
        if step == 2:
            raise KeyboardInterrupt

    image = (rng.random((67, 67, 3)) * 255).astype(np.uint8)
    r = mg.invert(models.get("alexnet", weights=None, seed=0), image, "conv2", iters=10,
                  threads=2, callback=interrupt, on_interrupt="return")
    assert r.status == "interrupted" and np.all(np.isfinite(r.x))
    assert blas_threads() == 2
