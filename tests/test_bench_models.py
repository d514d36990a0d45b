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


def test_accuracy_compares_float32_with_float64_over_every_switch():
    model = models.get("caffenet", weights=None)
    acc = bench_models.accuracy(model, "conv2")
    c, h, w = model.output_shape("pool1")
    assert acc["max-pool"] == (0, c * h * w)  # pool1's windows, the one max-pool before conv2
    assert acc["ReLU"][1] == 96 * 55 * 55  # relu1's units (relu2 comes after conv2)
    assert 1e-9 < acc["output"] < 1e-5  # float32 rounding: not zero, and not more
    # on this machine no ReLU of relu1 flips; another BLAS's summation order might flip one
    if acc["ReLU"][0] == 0:
        assert 1e-9 < acc["input grad"] < 1e-5 and bench_models._verdict(acc) == "met"


def test_an_error_above_the_target_is_excused_only_by_a_flipped_switch():
    acc = {"output": 1e-6, "input grad": 3e-3, "max-pool": (0, 10), "ReLU": (1, 10)}
    assert bench_models._verdict(acc) == "– (a near-tie flipped)"
    assert bench_models._verdict(dict(acc, ReLU=(0, 10))) == "MISSED"
    assert bench_models._verdict(dict(acc, **{"input grad": 4e-6})) == "met"
