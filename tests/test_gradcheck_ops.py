"""Float64 gradient checks (central differences) of every op in ``minigrad.functional``.

Every case runs on every backend (the ``device`` fixture). Inputs for max, max-pool, ReLU,
abs, maximum/minimum and clamp stay away from ties and kinks. Each case also checks that
forward + backward leave the inputs unmodified.
"""
import numpy as np
import pytest
from conftest import K, N, P, T, on, tie_free

import minigrad as mg
import minigrad.functional as F
from minigrad import backend


def pair_distinct(shape):
    """Two arrays with no equal elements anywhere (maximum/minimum have no ties)."""
    def build(rng):
        both = tie_free(rng, (2,) + shape)
        return both[0], both[1]
    return build


def const(value):
    return lambda rng: value


def C(fn, *builders, id, **tol):  # noqa: A002 - pytest's name
    return pytest.param(fn, builders, tol, id=id)


IDX = np.array([2, 0, 2, 1])  # repeated index: the gradient must accumulate
MASK = np.array([True, False, True, True])

CASES = [
    # --- elementwise ---------------------------------------------------------------------
    C(F.add, N(3, 4), N(3, 4), id="add"),
    C(F.add, N(2, 3, 4), N(4), id="add-broadcast-trailing"),
    C(F.add, N(3, 1), N(1, 4), id="add-broadcast-both"),
    C(lambda a: F.add(a, 1.5), N(3, 4), id="add-scalar"),
    C(F.sub, N(3, 4), N(3, 4), id="sub"),
    C(F.sub, N(2, 1, 4), N(3, 1), id="sub-broadcast"),
    C(lambda a: 2.0 - a, N(3, 4), id="rsub-scalar"),
    C(F.mul, N(3, 4), N(3, 4), id="mul"),
    C(F.mul, N(2, 3, 4), N(3, 1), id="mul-broadcast"),
    C(F.div, N(3, 4), P(3, 4), id="div"),
    C(F.div, N(2, 3), P(3), id="div-broadcast"),
    C(lambda b: 1.0 / b, P(3, 4), id="rdiv-scalar"),
    C(F.neg, N(3, 4), id="neg"),
    C(lambda a: F.pow(a, 3), N(3, 4), id="pow-int-exponent"),
    C(lambda a: F.pow(a, 2.5), P(3, 4), id="pow-float-exponent"),
    C(F.pow, P(3, 4), N(3, 4), id="pow-tensor-exponent"),
    C(F.pow, P(2, 3), N(3), id="pow-broadcast"),
    C(lambda b: 2.0 ** b, N(3, 4), id="rpow-scalar-base"),
    C(F.exp, N(3, 4), id="exp"),
    C(F.log, P(3, 4), id="log"),
    C(F.sqrt, P(3, 4), id="sqrt"),
    C(F.abs, K(3, 4), id="abs"),
    C(F.maximum, pair_distinct((3, 4)), id="maximum"),
    C(F.minimum, pair_distinct((3, 4)), id="minimum"),
    C(F.maximum, K(3, 4), const(0.0), id="maximum-scalar"),
    C(F.minimum, T(2, 3, 4), lambda rng: tie_free(rng, (4,)) + 1e-3, id="minimum-broadcast"),
    C(lambda a: F.clamp(a, -0.5, 0.7), K(4, 5, kinks=(-0.5, 0.7)), id="clamp"),
    C(lambda a: F.clamp(a, min=0.2), K(4, 5, kinks=(0.2,)), id="clamp-min"),
    C(lambda a: F.clamp(a, max=0.2), K(4, 5, kinks=(0.2,)), id="clamp-max"),
    C(F.where, lambda rng: rng.random((3, 4)) > 0.5, N(3, 4), N(3, 4), id="where"),
    C(F.where, lambda rng: rng.random((3, 4)) > 0.5, N(4), N(3, 1), id="where-broadcast"),
    C(F.relu, K(3, 4, 5), id="relu"),
    C(lambda a: F.leaky_relu(a, 0.2), K(3, 4, 5), id="leaky_relu"),
    C(F.leaky_relu, K(2, 6), id="leaky_relu-default-slope"),
    # --- reductions ----------------------------------------------------------------------
    C(F.sum, N(3, 4, 5), id="sum-all"),
    C(lambda a: F.sum(a, 1), N(3, 4, 5), id="sum-axis"),
    C(lambda a: F.sum(a, (0, 2), keepdims=True), N(3, 4, 5), id="sum-axes-keepdims"),
    C(lambda a: F.sum(a, dim=-1, keepdim=True), N(3, 4, 5), id="sum-dim-negative"),
    C(F.mean, N(3, 4, 5), id="mean-all"),
    C(lambda a: F.mean(a, 2), N(3, 4, 5), id="mean-axis"),
    C(lambda a: F.mean(a, (0, 1), keepdims=True), N(3, 4, 5), id="mean-axes-keepdims"),
    C(F.max, T(3, 4, 5), id="max-all"),
    C(lambda a: F.max(a, 1), T(3, 4, 5), id="max-axis"),
    C(lambda a: F.max(a, -1, keepdims=True), T(3, 4, 5), id="max-axis-keepdims"),
    C(lambda a: F.max(a, (0, 2)), T(3, 4, 5), id="max-axes"),
    # --- shape ---------------------------------------------------------------------------
    C(lambda a: F.reshape(a, (4, 6)), N(2, 3, 4), id="reshape"),
    C(lambda a: F.reshape(a, 3, -1), N(2, 3, 4), id="reshape-infer"),
    C(lambda a: a.view(6, 4), N(2, 3, 4), id="view"),
    C(lambda a: F.transpose(a, 0, 2), N(2, 3, 4), id="transpose"),
    C(lambda a: a.T, N(3, 4), id="T"),
    C(lambda a: F.permute(a, 2, 0, 1), N(2, 3, 4), id="permute"),
    C(lambda a: F.permute(a, (1, -1, 0)), N(2, 3, 4), id="permute-negative"),
    C(F.flatten, N(2, 3, 4), id="flatten"),
    C(lambda a: F.flatten(a, 1), N(2, 3, 4), id="flatten-start"),
    C(lambda a: F.flatten(a, 0, 1), N(2, 3, 4), id="flatten-end"),
    C(lambda a: F.pad(a, (1, 2)), N(2, 3, 4), id="pad-last"),
    C(lambda a: F.pad(a, (0, 1, 2, 0), value=0.5), N(2, 3, 4), id="pad-two-axes"),
    C(lambda a, b, c: F.concat([a, b, c]), N(2, 3), N(1, 3), N(3, 3), id="concat-0"),
    C(lambda a, b: F.concat([a, b], dim=1), N(2, 3, 2), N(2, 1, 2), id="concat-1"),
    C(lambda a, b: F.cat([a, b], dim=-1), N(2, 3), N(2, 4), id="concat-negative"),
    C(lambda a, b, c: F.stack([a, b, c]), N(2, 3), N(2, 3), N(2, 3), id="stack-0"),
    C(lambda a, b: F.stack([a, b], dim=1), N(2, 3), N(2, 3), id="stack-1"),
    C(lambda a, b: F.stack([a, b], dim=-1), N(2, 3), N(2, 3), id="stack-negative"),
    C(lambda a: a[1:, ::2], N(3, 5), id="getitem-slices"),
    C(lambda a: a[..., 1], N(2, 3, 4), id="getitem-ellipsis-int"),
    C(lambda a: a[None, 0, ::-1], N(3, 4), id="getitem-none-negative-step"),
    C(lambda a: a[-1], N(3, 4), id="getitem-negative-int"),
    C(lambda a: a[IDX], N(3, 4), id="getitem-repeated-rows"),
    C(lambda a: a[IDX, :, [1, 0, 1, 1]], N(3, 2, 4), id="getitem-advanced-mixed"),
    C(lambda a: a[[0, 0, 1], [2, 2, 3]], N(3, 4), id="getitem-repeated-pairs"),
    C(lambda a: a[MASK], N(4, 3), id="getitem-bool-mask"),
    C(lambda a: a[1:, IDX], N(3, 4), id="getitem-slice-then-advanced"),
    C(lambda a: F.getitem(a, mg.tensor(IDX, dtype=None)), N(3, 4), id="getitem-tensor-index"),
    # --- linear algebra ------------------------------------------------------------------
    C(F.matmul, N(4), N(4), id="matmul-1d-1d"),
    C(F.matmul, N(4), N(4, 3), id="matmul-1d-2d"),
    C(F.matmul, N(3, 4), N(4), id="matmul-2d-1d"),
    C(F.matmul, N(3, 4), N(4, 5), id="matmul-2d"),
    C(F.matmul, N(2, 3, 4), N(2, 4, 5), id="matmul-batched"),
    C(F.matmul, N(2, 1, 3, 4), N(3, 4, 2), id="matmul-batch-broadcast"),
    C(F.matmul, N(2, 3, 4), N(4), id="matmul-batched-1d"),
    C(F.matmul, N(4), N(2, 4, 3), id="matmul-1d-batched"),
    C(F.linear, N(3, 5), N(4, 5), N(4), id="linear"),
    C(F.linear, N(3, 5), N(4, 5), id="linear-no-bias"),
    C(F.linear, N(2, 3, 5), N(4, 5), N(4), id="linear-3d-input"),
    C(F.linear, N(5), N(4, 5), N(4), id="linear-1d-input"),
    # --- activations ---------------------------------------------------------------------
    C(F.softmax, N(3, 5), id="softmax"),
    C(lambda a: F.softmax(a, dim=1), N(2, 4, 3), id="softmax-dim1"),
    C(F.log_softmax, N(3, 5), id="log_softmax"),
    C(lambda a: F.log_softmax(a, 0), N(4, 3), id="log_softmax-dim0"),
    C(lambda a: F.dropout(a, 0.5), N(3, 4), id="dropout-eval"),
    C(lambda a: F.dropout(a, 0.3, training=True, seed=7), N(4, 5), id="dropout-train"),
    # --- convolution ---------------------------------------------------------------------
    C(F.conv2d, N(2, 3, 6, 6), N(4, 3, 3, 3), N(4), id="conv-bias"),
    C(lambda x, w: F.conv2d(x, w, stride=4, padding=2), N(1, 2, 11, 13), N(3, 2, 5, 5),
      id="conv-stride4-pad2"),
    C(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2), N(2, 4, 5, 5), N(6, 2, 3, 3), N(6),
      id="conv-groups2"),
    C(lambda x, w: F.conv2d(x, w, dilation=2, padding=1), N(1, 2, 7, 8), N(3, 2, 3, 3),
      id="conv-dilation2"),
    C(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0)), N(2, 2, 7, 9),
      N(3, 2, 2, 3), N(3), id="conv-nonsquare"),
    C(lambda x, w, b: F.conv2d(x, w, b, padding=1, algorithm="winograd"), N(2, 3, 9, 7),
      N(4, 3, 3, 3), N(4), id="conv-winograd-F(2,3)"),
    C(lambda x, w: F.conv2d(x, w, padding=1, groups=2, algorithm="winograd"), N(1, 4, 16, 17),
      N(4, 2, 3, 3), id="conv-winograd-F(4,3)-groups2"),
    C(lambda x, w, b: F.conv2d(x, w, b, padding=2, algorithm="winograd"), N(1, 2, 9, 9),
      N(3, 2, 5, 5), N(3), id="conv-winograd-F(3,5)"),
    C(lambda x, w, b: F.conv2d(x, w, b, stride=4, padding=2, algorithm="space-to-depth"),
      N(1, 2, 19, 18), N(3, 2, 11, 11), N(3), id="conv-space-to-depth"),
    C(lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=3),
      N(1, 3, 6, 7), N(6, 1, 2, 3), id="conv-mixed"),
    C(F.conv2d, N(1, 2, 3, 4), N(2, 2, 3, 4), id="conv-kernel-equals-input"),
    # --- pooling -------------------------------------------------------------------------
    C(lambda x: F.max_pool2d(x, 2), T(2, 3, 6, 6), id="maxpool-2"),
    C(lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True), T(1, 2, 7, 9), id="maxpool-ceil-odd"),
    C(lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True), T(1, 2, 6, 8), id="maxpool-ceil-even"),
    C(lambda x: F.max_pool2d(x, 3, 2, padding=1), T(1, 2, 7, 7), id="maxpool-padding"),
    C(lambda x: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True), T(1, 2, 6, 7),
      id="maxpool-padding-ceil"),
    C(lambda x: F.max_pool2d(x, (2, 3), (1, 2)), T(1, 2, 5, 7), id="maxpool-nonsquare"),
    C(lambda x: F.max_pool2d(x, 3, 1), T(1, 2, 5, 5), id="maxpool-overlap"),
    C(lambda x: F.avg_pool2d(x, 2), N(2, 2, 6, 6), id="avgpool-2"),
    C(lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True), N(1, 2, 7, 8), id="avgpool-ceil"),
    C(lambda x: F.avg_pool2d(x, 3, 2, padding=1), N(1, 2, 7, 7), id="avgpool-pad-include"),
    C(lambda x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False), N(1, 2, 7, 7),
      id="avgpool-pad-exclude"),
    C(lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
      N(1, 2, 6, 8), id="avgpool-pad-ceil-exclude"),
    C(lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True), N(1, 2, 6, 8),
      id="avgpool-pad-ceil-include"),
    C(lambda x: F.avg_pool2d(x, (3, 2), (2, 1)), N(1, 2, 7, 5), id="avgpool-nonsquare"),
    C(lambda x: F.adaptive_avg_pool2d(x, (3, 2)), N(2, 2, 7, 5), id="adaptive-nondivisible"),
    C(lambda x: F.adaptive_avg_pool2d(x, 4), N(1, 2, 6, 6), id="adaptive-overlapping"),
    C(lambda x: F.adaptive_avg_pool2d(x, 1), N(1, 3, 5, 4), id="adaptive-global"),
    C(lambda x: F.adaptive_avg_pool2d(x, (5, 6)), N(1, 1, 3, 4), id="adaptive-upsample"),
    # --- normalisation -------------------------------------------------------------------
    # alpha is large so that the cross-channel term is well above the tolerance
    C(lambda x: F.local_response_norm(x, 3, alpha=0.6, beta=0.75, k=2.0), N(2, 6, 3, 3),
      id="lrn-3"),
    C(lambda x: F.local_response_norm(x, 5, alpha=0.6, beta=0.75, k=1.0), N(1, 7, 3, 4),
      id="lrn-5"),
    C(lambda x: F.local_response_norm(x, 2, alpha=0.5, beta=0.5, k=1.5), N(1, 5, 2, 3),
      id="lrn-2-even"),
    C(lambda x: F.local_response_norm(x, 5), N(1, 3, 2, 2), id="lrn-5-defaults-few-channels"),
]


@pytest.mark.parametrize("fn, builders, tol", CASES)
def test_gradcheck(fn, builders, tol, device, rng):
    inputs = []
    for build in builders:
        built = build(rng)
        inputs.extend(built if isinstance(built, tuple) else (built,))
    inputs = [on(device, a) if isinstance(a, np.ndarray) else a for a in inputs]
    copies = [backend.asnumpy(a).copy() if backend.is_array(a) else a for a in inputs]

    # forward + backward through tensors must not modify the inputs (the += into saved bug)
    tensors = [
        mg.Tensor(a, requires_grad=a.dtype.kind == "f") if backend.is_array(a) else a
        for a in inputs
    ]
    out = fn(*tensors)
    out.backward(on(device, rng.standard_normal(out.shape)))
    for a, c in zip(inputs, copies):
        if backend.is_array(a):
            np.testing.assert_array_equal(backend.asnumpy(a), c)
    for t in tensors:
        if isinstance(t, mg.Tensor) and t.requires_grad:
            assert t.grad is not None and t.grad.shape == t.shape
            assert backend.device_of(t.grad) == device

    errors = mg.gradcheck(fn, *inputs, **tol)
    assert len(errors) == sum(1 for a in inputs if backend.is_array(a) and a.dtype.kind == "f")


def test_every_functional_op_is_checked():
    """A new public function in minigrad.functional must get a gradient check here."""
    checked = {
        "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "maximum",
        "minimum", "clamp", "where", "relu", "leaky_relu", "sum", "mean", "max", "reshape",
        "permute",
        "transpose", "flatten", "pad", "concat", "cat", "stack", "getitem", "matmul", "linear",
        "softmax", "log_softmax", "dropout", "conv2d", "max_pool2d", "avg_pool2d",
        "adaptive_avg_pool2d", "local_response_norm",
    }
    public = {
        name for name, value in vars(F).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", "")
        == F.__name__
    }
    assert public - checked == set(), f"ops without a gradient check: {sorted(public - checked)}"


def test_gradcheck_catches_a_wrong_rule():
    """The checker itself can fail: a deliberately wrong backward is reported with its index."""

    class WrongExp(mg.Function):
        def forward(self, a):
            self.y = mg.get_array_module(a).exp(a)
            return self.y

        def backward(self, gy):
            return gy * self.y * 1.01

    with pytest.raises(mg.GradcheckError, match=r"input 0 \(shape \(2, 3\)\) at element"):
        mg.gradcheck(lambda a: WrongExp.apply(a), np.ones((2, 3)))


def test_gradcheck_does_not_modify_float64_inputs():
    x = np.arange(6.0).reshape(2, 3).T  # float64 and not contiguous
    before = x.copy()
    mg.gradcheck(lambda a: a * a, x)
    np.testing.assert_array_equal(x, before)


# --- the `minigrad gradcheck` table ------------------------------------------------------------
def test_gradcheck_all_passes_and_covers_every_op(capsys):
    from minigrad import gradcheck_all

    rows, ok = gradcheck_all.run_all()
    assert ok, gradcheck_all.format_table([r for r in rows if not r.ok])
    covered = {r.op.split("(")[0] for r in rows}
    public = {
        name for name, value in vars(F).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", "")
        == F.__name__ and name != "cat"  # an alias of concat
    }
    assert public <= covered, f"missing from gradcheck_all: {sorted(public - covered)}"
    assert all(0 <= r.max_abs < 1e-5 for r in rows)
    assert gradcheck_all.main() == 0
    out = capsys.readouterr().out
    assert "max abs err" in out and f"{len(rows)}/{len(rows)} ops pass" in out


def test_gradcheck_all_reports_a_broken_op(monkeypatch, capsys):
    from minigrad import gradcheck_all
    from minigrad.ops import elementwise

    monkeypatch.setattr(elementwise.Exp, "backward", lambda self, gy: gy * self.y * 1.5)
    rows, ok = gradcheck_all.run_all(only="exp")
    assert not ok and len(rows) == 1 and not rows[0].ok
    assert "GradcheckError" in rows[0].error and "analytic" in rows[0].error
    assert "FAIL" in gradcheck_all.format_table(rows)
    assert gradcheck_all.main(only="exp") == 1
    assert "FAILED: exp" in capsys.readouterr().out
    assert gradcheck_all.main(only="no-such-op") == 2


# --- ties: exact known values (no finite differences at a tie) ---------------------------------
@pytest.mark.parametrize("kernel, stride, ceil_mode", [(2, 2, False), (3, 2, True), (3, 1, False)])
def test_max_pool_tie_sends_gradient_to_one_element(kernel, stride, ceil_mode, device):
    x = mg.Tensor(on(device, np.zeros((1, 2, 7, 7))), requires_grad=True)  # every window tied
    y = F.max_pool2d(x, kernel, stride, ceil_mode=ceil_mode)
    y.backward(on(device, np.ones(y.shape)))
    g = backend.asnumpy(x.grad)
    assert g.sum() == y.size  # each window routes its whole gradient ...
    assert set(np.unique(g)) <= set(range(kernel * kernel + 1))  # ... to whole elements


def test_reduce_max_tie_splits_evenly(device):
    x = mg.Tensor(on(device, np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])), requires_grad=True)
    F.max(x, 1).backward(on(device, np.array([1.0, 6.0])))
    np.testing.assert_allclose(backend.asnumpy(x.grad), [[0, 0.5, 0.5], [2, 2, 2]])


def test_relu_and_clamp_at_the_kink(device):
    x = mg.Tensor(on(device, np.array([-1.0, 0.0, 0.5, 1.0, 2.0])), requires_grad=True)
    (F.relu(x) + F.clamp(x, 0.5, 1.0)).sum().backward()
    # relu'(0) = 0; clamp passes the gradient on the closed interval [min, max], as PyTorch
    np.testing.assert_array_equal(backend.asnumpy(x.grad), [0.0, 0.0, 2.0, 2.0, 1.0])
