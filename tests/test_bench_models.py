"""benchmarks/bench_models.py: its timing takes each library in blocks (never call by call), and
its accuracy columns measure float32 minigrad against float64 torch on the right windows."""
import pytest

torch = pytest.importorskip("torch", reason="bench_models compares with PyTorch")

import models  # noqa: E402
from benchmarks import bench_models  # noqa: E402


def test_block_times_run_each_function_as_a_block_in_turn():
    """OpenBLAS's threads spin after a NumPy GEMM and slow whatever runs next: alternating
    call by call would charge that to torch. Each round must be one block per function."""
    log = []
    times = bench_models.block_times([lambda: log.append("a"), lambda: log.append("b")],
                                     repeat=4, rounds=3)
    runs = [name for k, name in enumerate(log) if k == 0 or log[k - 1] != name]
    assert runs == ["a", "b"] * 3
    assert min(log.count("a"), log.count("b")) >= 3 * (2 + 4)  # >= 2 untimed + 4 timed a block
    assert len(times) == 2 and all(t >= 0 for t in times)


def test_accuracy_compares_float32_with_float64_over_every_pool_window():
    model = models.get("caffenet", weights=None)
    y_err, dx_err, flipped, windows = bench_models.accuracy(model, "conv2")
    c, h, w = model.output_shape("pool1")
    assert windows == c * h * w  # pool1's windows, the one max-pool before conv2
    assert flipped == 0
    assert 1e-9 < y_err < 1e-5 and 1e-9 < dx_err < 1e-5  # float32 rounding, not zero, not more
