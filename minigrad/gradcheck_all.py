"""Gradient-check every op on small random inputs; print the worst errors (``minigrad gradcheck``).

    rows, ok = run_all()            # one Row per checked case
    print(format_table(rows))

Each case runs :func:`minigrad.gradcheck` in float64 (central differences, every element of
these small inputs). Inputs for max, max-pool, ReLU, abs and clamp are kept away from ties and
kinks, so a failure means a wrong backward rule, not a non-differentiable point.
"""
import math
import os
from typing import NamedTuple

from . import backend
from . import functional as F
from .gradcheck import compare_gradients, gradcheck

np = backend.np  # host arrays only: inputs are made on the CPU, then moved to the device


class Row(NamedTuple):
    op: str
    max_abs: float
    max_rel: float
    ok: bool
    error: str = ""


# --- input makers (host, float64) ------------------------------------------------------------
def _normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def _positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def _tie_free(*shape):
    """A shuffled linspace with jitter: distinct values, far apart compared with eps."""
    def make(rng):
        n = int(np.prod(shape))
        step = 4.0 / max(n - 1, 1)
        values = np.linspace(-2.0, 2.0, n) + rng.uniform(-0.2, 0.2, n) * step
        return rng.permutation(values).reshape(shape)
    return make


def _away_from(*shape, kinks=(0.0,), margin=0.1):
    def make(rng):
        x = rng.uniform(-2.0, 2.0, shape)
        for k in kinks:
            close = np.abs(x - k) < margin
            x[close] = k + np.where(x[close] >= k, margin, -margin) * 2
        return x
    return make


def _mask(*shape):
    return lambda rng: rng.random(shape) > 0.5


def _pair_distinct(*shape):
    def make(rng):
        both = _tie_free(2, *shape)(rng)
        return both[0], both[1]
    return make


_IDX = [2, 0, 2, 1]  # a repeated index: the gradient must accumulate

# (name, fn, input makers)
CASES = [
    ("add", F.add, [_normal(3, 4), _normal(4)]),
    ("sub", F.sub, [_normal(2, 1, 4), _normal(3, 4)]),
    ("mul", F.mul, [_normal(3, 4), _normal(3, 1)]),
    ("div", F.div, [_normal(3, 4), _positive(3, 4)]),
    ("neg", F.neg, [_normal(3, 4)]),
    ("pow", lambda a: F.pow(a, 2.5), [_positive(3, 4)]),
    ("pow(tensor exponent)", F.pow, [_positive(3, 4), _normal(4)]),
    ("exp", F.exp, [_normal(3, 4)]),
    ("log", F.log, [_positive(3, 4)]),
    ("sqrt", F.sqrt, [_positive(3, 4)]),
    ("abs", F.abs, [_away_from(3, 4)]),
    ("maximum", F.maximum, [_pair_distinct(3, 4)]),
    ("minimum", F.minimum, [_pair_distinct(3, 4)]),
    ("clamp", lambda a: F.clamp(a, -0.5, 0.7), [_away_from(4, 5, kinks=(-0.5, 0.7))]),
    ("where", F.where, [_mask(3, 4), _normal(3, 4), _normal(4)]),
    ("relu", F.relu, [_away_from(3, 4, 5)]),
    ("leaky_relu", lambda a: F.leaky_relu(a, 0.2), [_away_from(3, 4, 5)]),
    ("sum", lambda a: F.sum(a, (0, 2), keepdims=True), [_normal(3, 4, 5)]),
    ("mean", lambda a: F.mean(a, 1), [_normal(3, 4, 5)]),
    ("max", lambda a: F.max(a, -1), [_tie_free(3, 4, 5)]),
    ("reshape", lambda a: F.reshape(a, 4, 6), [_normal(2, 3, 4)]),
    ("transpose", lambda a: F.transpose(a, 0, 2), [_normal(2, 3, 4)]),
    ("permute", lambda a: F.permute(a, 2, 0, 1), [_normal(2, 3, 4)]),
    ("flatten", lambda a: F.flatten(a, 1), [_normal(2, 3, 4)]),
    ("pad", lambda a: F.pad(a, (1, 2, 0, 1)), [_normal(2, 3, 4)]),
    ("concat", lambda a, b: F.concat([a, b], 1), [_normal(2, 3), _normal(2, 2)]),
    ("stack", lambda a, b: F.stack([a, b], -1), [_normal(2, 3), _normal(2, 3)]),
    ("getitem(basic)", lambda a: a[1:, ::2], [_normal(3, 5)]),
    ("getitem(advanced)", lambda a: a[_IDX, :, [1, 0, 1, 1]], [_normal(3, 2, 4)]),
    ("matmul", F.matmul, [_normal(2, 3, 4), _normal(4, 5)]),
    ("matmul(1-D)", F.matmul, [_normal(4), _normal(4)]),
    ("linear", F.linear, [_normal(3, 5), _normal(4, 5), _normal(4)]),
    ("softmax", lambda a: F.softmax(a, 1), [_normal(2, 4, 3)]),
    ("log_softmax", F.log_softmax, [_normal(3, 5)]),
    ("dropout", lambda a: F.dropout(a, 0.3, training=True, seed=0), [_normal(4, 5)]),
    ("conv2d", F.conv2d, [_normal(2, 3, 6, 6), _normal(4, 3, 3, 3), _normal(4)]),
    ("conv2d(s4 p2)", lambda x, w: F.conv2d(x, w, stride=4, padding=2),
     [_normal(1, 2, 11, 13), _normal(3, 2, 5, 5)]),
    ("conv2d(groups 2)", lambda x, w: F.conv2d(x, w, padding=1, groups=2),
     [_normal(1, 4, 5, 5), _normal(6, 2, 3, 3)]),
    ("conv2d(dilation 2)", lambda x, w: F.conv2d(x, w, dilation=2, padding=1),
     [_normal(1, 2, 7, 8), _normal(3, 2, 3, 3)]),
    ("conv2d(2x3 kernel)", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0)),
     [_normal(1, 2, 7, 9), _normal(3, 2, 2, 3), _normal(3)]),
    ("conv2d(winograd F(4,3))", lambda x, w, b: F.conv2d(x, w, b, padding=1, algorithm="winograd"),
     [_normal(1, 3, 16, 16), _normal(4, 3, 3, 3), _normal(4)]),
    ("conv2d(winograd F(3,5))", lambda x, w: F.conv2d(x, w, padding=2, algorithm="winograd"),
     [_normal(1, 2, 8, 9), _normal(3, 2, 5, 5)]),
    ("conv2d(space-to-depth)",
     lambda x, w: F.conv2d(x, w, stride=4, padding=2, algorithm="space-to-depth"),
     [_normal(1, 2, 19, 18), _normal(3, 2, 11, 11)]),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), [_tie_free(1, 2, 6, 6)]),
    ("max_pool2d(ceil)", lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
     [_tie_free(1, 2, 7, 9)]),
    ("max_pool2d(pad)", lambda x: F.max_pool2d(x, 3, 2, padding=1), [_tie_free(1, 2, 7, 7)]),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True),
     [_normal(1, 2, 6, 8)]),
    ("avg_pool2d(exclude pad)",
     lambda x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False), [_normal(1, 2, 7, 7)]),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), [_normal(2, 2, 7, 5)]),
    ("local_response_norm(3)", lambda x: F.local_response_norm(x, 3, alpha=0.6, k=2.0),
     [_normal(2, 6, 3, 3)]),
    ("local_response_norm(5)", lambda x: F.local_response_norm(x, 5, alpha=0.6),
     [_normal(1, 7, 3, 4)]),
]


def _case_inputs(makers, seed, device="cpu"):
    rng = np.random.default_rng(seed)
    inputs = []
    for make in makers:
        made = make(rng)
        inputs.extend(made if isinstance(made, tuple) else (made,))
    return [backend.to_device(a, device) for a in inputs]


def run_all(verbose=False, device="cpu", only=None, seed=0):
    """Gradient-check every case; returns ``(rows, ok)``, ok True when every case passed.

    ``only`` keeps one op's cases (``"conv2d"``), or else those whose name contains it
    (``"pool"``).
    """
    rows = []
    exact = any(name.split("(")[0] == only for name, _, _ in CASES)
    for name, fn, makers in CASES:
        if only and (name.split("(")[0] != only if exact else only not in name):
            continue
        inputs = _case_inputs(makers, seed, device)
        try:
            errors = gradcheck(fn, *inputs)
            row = Row(name, max(e[0] for e in errors), max(e[1] for e in errors), True)
        except Exception as exc:  # noqa: BLE001 - a failing case is reported, not raised
            row = Row(name, math.nan, math.nan, False, f"{type(exc).__name__}: {exc}")
        rows.append(row)
        if verbose:
            print(format_table([row], header=False), flush=True)
    return rows, all(r.ok for r in rows) and bool(rows)


def format_table(rows, header=True):
    """A fixed-width table: op, max abs error, max rel error, ok/FAIL (and why)."""
    lines = [f"{'op':<26} {'max abs err':>12} {'max rel err':>12}  result"] if header else []
    for r in rows:
        status = "ok" if r.ok else f"FAIL  {r.error}"
        lines.append(f"{r.op:<26} {r.max_abs:>12.3g} {r.max_rel:>12.3g}  {status}")
    return "\n".join(lines)


# --- one op, element by element (``minigrad gradcheck OP --show``) ---------------------------
def op_classes(fn, *inputs):
    """The distinct Function classes in the graph of ``fn(*inputs)``, outputs first."""
    from .graph_view import graph
    from .tensor import Tensor

    out = fn(*[Tensor(a, requires_grad=True, dtype=None) if _is_float(a) else a
               for a in inputs])
    seen = []
    for node in graph(out).nodes:
        cls = type(node._ctx) if node._ctx is not None else None
        if cls is not None and cls not in seen:
            seen.append(cls)
    return seen


def _is_float(a):
    return backend.is_array(a) and a.dtype.kind == "f"


def format_comparison(comparisons, max_rows=12):
    """Analytic and numeric gradients side by side, the worst element of each input marked."""
    lines = []
    for c in comparisons:
        err = np.abs(c.analytic - c.numeric)
        lines.append(f"input {c.input}, shape {c.shape}: worst element {c.worst}, |analytic - "
                     f"numeric| = {err[c.worst]:.3g}  {'ok' if c.ok else 'FAIL'}")
        lines.append(f"  {'element':<16} {'analytic':>16} {'numeric':>16} {'abs err':>10}")
        order = list(np.ndindex(*c.shape)) if c.shape else [()]
        shown = order[:max_rows - 1] + ([c.worst] if c.worst not in order[:max_rows - 1] else [])
        for k, index in enumerate(shown):
            if k == max_rows - 1 and len(order) > max_rows - 1:
                lines.append(f"  ... {len(order) - len(shown)} more elements ...")
            mark = "  <- worst" if index == c.worst else ""
            lines.append(f"  {str(index):<16} {c.analytic[index]:>16.10g} "
                         f"{c.numeric[index]:>16.10g} {err[index]:>10.3g}{mark}")
    return "\n".join(lines)


def format_sources(classes):
    """Each class's forward and backward source, with file:line (``inspect.getsourcelines``)."""
    import inspect

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lines = []
    for cls in classes:
        for method in ("forward", "backward"):
            fn = getattr(cls, method)
            source, start = inspect.getsourcelines(fn)
            where = os.path.abspath(inspect.getsourcefile(fn))
            where = os.path.relpath(where, root) if where.startswith(root + os.sep) else where
            lines.append(f"--- {cls.__name__}.{method}  ({where}:{start})")
            lines.extend(line.rstrip("\n") for line in source)
    return "\n".join(lines)


def show(fn, *inputs, name="fn", max_rows=12):
    """Print the element-by-element comparison and the ops' sources; returns True when ok."""
    comparisons = compare_gradients(fn, *inputs)
    print(f"{name}: analytic (backprop) vs numeric (central differences, eps 1e-6) gradient of "
          "<v, f(x)> for a fixed random v, float64")
    print(format_comparison(comparisons, max_rows))
    print(format_sources(op_classes(fn, *inputs)))
    return all(c.ok for c in comparisons)


def main_show(only, device="cpu", seed=0):
    """``minigrad gradcheck OP --show``: one case (exact name first, else the first match)."""
    names = [name for name, _, _ in CASES]
    matches = [c for c in CASES if c[0] == only] or [
        c for c in CASES if c[0].split("(")[0] == only] or [c for c in CASES if only in c[0]]
    if not matches:
        print(f"no op matches {only!r}; ops: {', '.join(names)}")
        return 2
    name, fn, makers = matches[0]
    if len(matches) > 1:
        print(f"showing {name!r}; also matching: {', '.join(m[0] for m in matches[1:])}\n")
    ok = show(fn, *_case_inputs(makers, seed, device), name=name)
    return 0 if ok else 1


def main(only=None, device="cpu"):
    """Print the table; return 0 when every op passes, 1 otherwise (the CLI's exit code)."""
    rows, ok = run_all(device=device, only=only)
    if not rows:
        print(f"no op matches {only!r}; ops: {', '.join(name for name, _, _ in CASES)}")
        return 2
    print(format_table(rows))
    failed = [r.op for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} ops pass"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
