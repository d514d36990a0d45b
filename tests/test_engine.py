"""The engine: graph recording, topological backward, accumulation, hooks, no_grad, memory,
and the Tensor conveniences (devices, detach, numpy, operators, graph view)."""
import gc
import re
import tracemalloc
import weakref

import numpy as np
import pytest
from conftest import normal, on

import minigrad as mg
import minigrad.functional as F
from minigrad import backend


def leaf(device, array):
    return mg.Tensor(on(device, np.asarray(array, dtype="float64")), requires_grad=True)


def grad(t):
    return backend.asnumpy(t.grad)


# --- the topological backward ------------------------------------------------------------
def test_deep_chain_has_no_recursion_limit(device):
    x = leaf(device, [1.0, 2.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.5
    y.sum().backward()
    np.testing.assert_allclose(grad(x), [1.0001 ** 10_000] * 2, rtol=1e-9)


def test_deep_chain_graph_view(device):
    x = leaf(device, [1.0])
    y = x
    for _ in range(10_000):
        y = y + 1.0
    g = mg.graph(y)
    y.backward()
    assert len(str(g).splitlines()) == 10_001 + 1  # header + every node
    assert grad(x).tolist() == [1.0]


def test_reused_tensor_accumulates(device):
    a = leaf(device, [1.0, -2.0, 3.0])
    b = a + a
    c = b + b
    c.sum().backward()
    assert grad(a).tolist() == [4.0, 4.0, 4.0]


def test_diamond_with_products(device):
    a = leaf(device, [1.5, -2.0])
    b = a * a  # a²
    c = b * a + b  # a³ + a²
    c.sum().backward()
    x = np.array([1.5, -2.0])
    np.testing.assert_allclose(grad(a), 3 * x ** 2 + 2 * x, rtol=1e-12)


def test_gradient_accumulates_across_backward_calls(device):
    x = leaf(device, [1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(grad(x), [2.0, 4.0, 6.0])
    (x * x).sum().backward()  # a fresh graph over the same leaf
    np.testing.assert_allclose(grad(x), [4.0, 8.0, 12.0])
    x.grad = None
    (3 * x).sum().backward()
    np.testing.assert_allclose(grad(x), [3.0, 3.0, 3.0])


def test_intermediate_gradients_are_not_kept_without_retain_grad(device):
    x = leaf(device, [1.0, 2.0])
    y = x * 3.0
    z = y.retain_grad() * y
    w = z * 1.0
    w.sum().backward()
    np.testing.assert_allclose(grad(y), [6.0, 12.0])  # dz/dy = 2y
    assert w.grad is None and z.grad is None
    np.testing.assert_allclose(grad(x), [18.0, 36.0])


def test_hooks_see_and_replace_gradients(device):
    x = leaf(device, [1.0, 2.0])
    y = x * 2.0
    seen = []
    y.register_hook(lambda g: seen.append(backend.asnumpy(g).copy()))  # returns None: kept
    y.register_hook(lambda g: g * 10)  # replaces what flows on to x
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], [4.0, 8.0])  # 2y
    np.testing.assert_allclose(grad(x), [80.0, 160.0])  # 10 · 2y · 2


def test_hook_on_leaf_changes_stored_grad(device):
    x = leaf(device, [1.0, 2.0])
    x.register_hook(lambda g: -g)
    (x * 5.0).sum().backward()
    assert grad(x).tolist() == [-5.0, -5.0]


def test_hook_needs_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).register_hook(lambda g: g)


def test_backward_with_explicit_gradient(device):
    x = leaf(device, [[1.0, 2.0], [3.0, 4.0]])
    y = x * x
    y.backward(on(device, np.array([[1.0, 0.0], [2.0, -1.0]])))
    np.testing.assert_allclose(grad(x), [[2.0, 0.0], [12.0, -8.0]])


# --- broadcasting is reduced once, by the engine --------------------------------------------
def test_engine_reduces_broadcast_gradients(device):
    a = leaf(device, np.ones((3, 1)))
    b = leaf(device, np.ones((1, 4)))
    c = leaf(device, np.ones(4))
    (a * b + c).sum().backward()
    assert grad(a).shape == (3, 1) and grad(a).ravel().tolist() == [4.0] * 3
    assert grad(b).shape == (1, 4) and grad(b).ravel().tolist() == [3.0] * 4
    assert grad(c).shape == (4,) and grad(c).tolist() == [3.0] * 4


def test_engine_reduces_a_custom_ops_broadcast_gradient(device):
    class AddRow(mg.Function):
        """Returns the full broadcast-shaped gradient for both inputs; the engine sums."""

        def forward(self, a, row):
            return a + row

        def backward(self, gy):
            return gy, gy

    a = leaf(device, np.zeros((2, 3, 4)))
    row = leaf(device, np.zeros((1, 4)))
    y = AddRow.apply(a, row)
    y.backward(on(device, np.arange(24.0).reshape(2, 3, 4)))
    np.testing.assert_allclose(grad(row), np.arange(24.0).reshape(6, 4).sum(0, keepdims=True))
    assert grad(a).shape == (2, 3, 4)


def test_only_needed_input_gradients_are_computed(device):
    seen = {}

    class Probe(mg.Function):
        def forward(self, a, b):
            seen["needs"] = self.needs_input_grad
            return a * b

        def backward(self, gy):
            return gy, None

    x = leaf(device, [1.0])
    Probe.apply(x, mg.tensor([2.0], device=device)).sum().backward()
    assert seen["needs"] == (True, False)


# --- no_grad and memory ------------------------------------------------------------------
def test_no_grad_records_nothing(device):
    x = leaf(device, [1.0, 2.0])
    w = leaf(device, np.ones((2, 1, 1, 1)))
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (x * 2.0).exp().sum()
        z = F.conv2d(mg.Tensor(on(device, np.ones((1, 1, 3, 3)))), w)
    assert mg.is_grad_enabled()
    for t in (y, z):
        assert t._ctx is None and not t.requires_grad
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("boom")
    assert mg.is_grad_enabled()


def test_no_grad_nests():
    with mg.no_grad():
        with mg.no_grad():
            pass
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


def test_saved_arrays_are_released_after_backward(device, rng):
    x = leaf(device, normal(rng, (1, 2, 6, 6)))
    w = leaf(device, normal(rng, (3, 2, 3, 3)))
    y = F.conv2d(x, w, padding=1)
    z = F.relu(y).sum()
    op = y._ctx
    saved = [op.cols, z._ctx.inputs[0]._ctx.positive]  # arrays only the ops hold
    try:
        refs = [weakref.ref(a) for a in saved]
    except TypeError:  # an array type without weak references: vars(op) below still checks
        refs = []
    del saved
    z.backward()
    gc.collect()
    assert all(r() is None for r in refs)
    assert y._ctx is None and z._ctx is None
    assert vars(op) == {}  # the op dropped its inputs and everything it saved


def test_retain_graph_keeps_the_graph(device):
    x = leaf(device, [1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    assert y._ctx is not None
    y.backward()
    np.testing.assert_allclose(grad(x), [4.0, 8.0])
    assert y._ctx is None


def test_second_backward_through_a_freed_graph_is_refused(device):
    x = leaf(device, [1.0, 2.0])
    y = x * x
    z1, z2 = y.sum(), (y * 2.0).sum()
    z1.backward()
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        z2.backward()  # would otherwise treat y as a leaf and give x nothing
    with pytest.raises(RuntimeError, match="already freed"):
        z1.backward()
    np.testing.assert_allclose(grad(x), [2.0, 4.0])  # untouched by the refused calls


def test_memory_stays_flat_over_iterations(rng):
    """A small inversion-like step (conv, relu, pool, loss, update) must not leak."""
    x = mg.Tensor(normal(rng, (1, 3, 16, 16)).astype("float32"), requires_grad=True)
    w = mg.tensor(normal(rng, (4, 3, 3, 3)))
    target = mg.tensor(normal(rng, (1, 4, 8, 8)))

    def step():
        y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
        loss = ((y - target) ** 2).mean()
        loss.backward()
        x.data -= 0.01 * x.grad
        x.grad = None

    for _ in range(5):  # warm-up: caches, lazily created objects
        step()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(5):
            step()
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            step()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a kept graph costs ~20 KB per iteration (1 MB over 50); a freed one measures ~0
    assert after - before < 20_000, f"memory grew by {after - before} bytes over 50 iterations"


# --- Tensor conveniences -------------------------------------------------------------------
def test_to_same_device_is_identity(device):
    x = leaf(device, [1.0])
    assert x.to(device) is x
    assert x.device == device


@pytest.mark.skipif(backend.gpu_available(), reason="checks the error without a GPU")
def test_to_cuda_without_gpu_says_so():
    with pytest.raises(RuntimeError, match="CuPy"):
        mg.tensor([1.0]).to("cuda")


def test_to_unknown_device():
    with pytest.raises(ValueError, match="unknown device"):
        mg.tensor([1.0]).to("tpu")


@pytest.mark.parametrize("device", ["cuda"], indirect=True)
def test_to_moves_and_gradient_flows_back(device):
    x = mg.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    y = x.to("cuda")
    assert y.device == "cuda"
    (y * y).sum().backward()
    assert x.grad.__class__ is np.ndarray  # a CPU leaf's gradient stays on the CPU
    assert backend.device_of(y.data) == "cuda"
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_detach_shares_data_and_cuts_the_graph(device):
    x = leaf(device, [1.0, 2.0])
    d = (x * 2.0).detach()
    assert not d.requires_grad and d._ctx is None
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(grad(x), [2.0, 4.0])  # d treated as a constant
    e = x.detach()
    e.data[0] = 7.0
    assert backend.asnumpy(x.data)[0] == 7.0  # same memory, as torch.detach


def test_numpy_and_item(device):
    x = mg.tensor([[1.0, 2.0]], device=device)
    a = x.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.tolist() == [[1.0, 2.0]]
    assert mg.tensor(3.5, device=device).item() == 3.5


def test_defaults_and_dtype(device):
    assert mg.tensor([1, 2]).dtype == np.float32
    assert mg.tensor(np.arange(3)).dtype == np.float32
    assert mg.tensor(np.arange(3), dtype=None).dtype == np.arange(3).dtype
    assert mg.Tensor(np.zeros(2)).dtype == np.float64  # an array keeps its dtype
    assert mg.tensor([1.0], device=device).device == device


def test_gradients_keep_the_leaf_dtype(device):
    x = mg.tensor([1.0, 2.0], requires_grad=True, device=device)  # float32
    assert (x * np.float64(2.0)).dtype == np.float32  # a NumPy scalar is a weak scalar
    y = x * on(device, np.array([3.0, 4.0]))  # a float64 constant promotes the value ...
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32  # ... but not the leaf's gradient
    np.testing.assert_array_equal(grad(x), [3.0, 4.0])


def test_indexing_and_len(device):
    x = leaf(device, np.arange(12.0).reshape(3, 4))
    assert len(x) == 3
    assert x[1].shape == (4,) and x[:, 1:3].shape == (3, 2) and x[None].shape == (1, 3, 4)
    assert x[1, 2].numpy() == 6.0
    y = x[1:, [0, 0]]
    y.sum().backward()
    expected = np.zeros((3, 4))
    expected[1:, 0] = 2.0
    np.testing.assert_array_equal(grad(x), expected)


def test_python_operators_and_reflected_forms(device):
    a = leaf(device, [1.0, 2.0])
    b = leaf(device, [3.0, 4.0])
    host = np.array([2.0, 5.0])
    cases = {
        "a+b": (a + b, [4.0, 6.0]),
        "1+a": (1 + a, [2.0, 3.0]),
        "a-b": (a - b, [-2.0, -2.0]),
        "1-a": (1 - a, [0.0, -1.0]),
        "a*b": (a * b, [3.0, 8.0]),
        "2*a": (2 * a, [2.0, 4.0]),
        "a/b": (a / b, [1 / 3, 0.5]),
        "6/a": (6 / a, [6.0, 3.0]),
        "a**2": (a ** 2, [1.0, 4.0]),
        "2**a": (2 ** a, [2.0, 4.0]),
        "-a": (-a, [-1.0, -2.0]),
        "abs(-a)": (abs(-a), [1.0, 2.0]),
    }
    if device == "cpu":  # a NumPy array on the left defers to the Tensor
        cases["host+a"] = (host + a, [3.0, 7.0])
        cases["host*a"] = (host * a, [2.0, 10.0])
        cases["host-a"] = (host - a, [1.0, 3.0])
    for name, (t, expected) in cases.items():
        assert isinstance(t, mg.Tensor), name
        np.testing.assert_allclose(t.numpy(), expected, rtol=1e-12, err_msg=name)
    m = leaf(device, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose((m @ a).numpy(), [5.0, 11.0])
    np.testing.assert_allclose((a @ m).numpy(), [7.0, 10.0])
    if device == "cpu":
        np.testing.assert_allclose((host @ m).numpy(), [17.0, 24.0])
    # reflected ops differentiate with respect to the right operand
    (6 / a + 2 ** a - 1 - a).sum().backward()
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(grad(a), -6 / x ** 2 + 2 ** x * np.log(2) - 1, rtol=1e-12)


def test_comparisons_give_boolean_tensors(device):
    a = mg.tensor([1.0, 2.0, 3.0], device=device)
    assert (a > 1.5).numpy().tolist() == [False, True, True]
    assert (a <= mg.tensor([1.0, 0.0, 5.0], device=device)).numpy().tolist() == [True, False, True]


def test_methods_mirror_functional(device):
    x = leaf(device, np.arange(6.0).reshape(2, 3) - 2.0)
    assert x.sum().item() == 3.0
    assert x.mean(axis=1).numpy().tolist() == [-1.0, 2.0]
    assert x.max().item() == 3.0
    assert x.reshape(3, 2).shape == (3, 2) and x.view(-1).shape == (6,)
    assert x.T.shape == (3, 2) and x.transpose(0, 1).shape == (3, 2)
    assert x.permute(1, 0).shape == (3, 2) and x.flatten().shape == (6,)
    assert x.relu().numpy().min() == 0.0
    assert x.clamp(-1, 1).numpy().max() == 1.0


def test_repr_mentions_grad_fn(device):
    x = leaf(device, [1.0])
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=Mul" in repr(x * 2)


# --- the graph view ----------------------------------------------------------------------
def test_graph_text_and_dot(device, rng):
    x = leaf(device, normal(rng, (1, 2, 5, 5)))
    x.name = "image"
    w = mg.Tensor(on(device, normal(rng, (3, 2, 3, 3))))
    y = F.relu(F.conv2d(x, w, padding=1))
    loss = (y * y).mean()
    g = mg.graph(loss)
    before = str(g)
    assert "Conv2d" in before and "ReLU" in before and "Mean" in before
    assert "(1, 3, 5, 5)" in before and "(1, 2, 5, 5)" in before
    assert "image" in before
    loss.backward()
    text = str(g)
    lines = text.splitlines()
    assert len(lines) == 1 + 6  # header; Mean, Mul, ReLU, Conv2d, input x, constant w
    by_op = {line.split()[1]: line for line in lines[1:]}
    assert set(by_op) == {"Mean", "Mul", "ReLU", "Conv2d", "input", "constant"}
    norm = float(np.linalg.norm(grad(x)))
    reported = float(by_op["input"].split()[-1])
    assert reported == pytest.approx(norm, rel=1e-4)
    assert float(by_op["Mean"].split()[-2]) == pytest.approx(1.0)  # d loss / d loss
    assert by_op["constant"].split()[-1] == "-"  # no gradient for a constant

    dot = g.to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = set(re.findall(r"^\s*(n\d+) \[label=\"[^\"]*\"\];$", dot, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+);$", dot, re.M)
    assert len(nodes) == 6 and len(edges) == 6  # y * y: two edges from ReLU to Mul
    assert all(a in nodes and b in nodes for a, b in edges)
    assert "|grad|" in dot
