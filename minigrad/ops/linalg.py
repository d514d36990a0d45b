"""Matrix products: matmul (with NumPy's batching rules) and the fused linear layer."""
from .. import backend
from ..backend import get_array_module
from ..tensor import Function


def split_matmul(A, B):
    """A (..., M, K) @ B (..., K, L), its M rows spread over the workers of a parallel block
    (``backend.parallel``): each worker writes its own rows of the one result."""
    threads = backend.parallel_threads(B)
    if threads == 1:
        return A @ B
    xp = get_array_module(B)
    batch = xp.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    out = xp.empty(batch + (A.shape[-2], B.shape[-1]), dtype=xp.result_type(A, B))

    def rows(bounds):
        xp.matmul(A[..., bounds[0]:bounds[1], :], B, out=out[..., bounds[0]:bounds[1], :])

    backend.parallel_map(rows, backend.split_range(A.shape[-2], threads), like=B)
    return out


class MatMul(Function):
    """a @ b for 1-D, 2-D and batched operands, as numpy.matmul."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = get_array_module(gy)
        # Promote 1-D operands to matrices so that one formula serves every case.
        a = self.a[None, :] if self.a.ndim == 1 else self.a  # (..., M, K)
        b = self.b[:, None] if self.b.ndim == 1 else self.b  # (..., K, N)
        g = gy
        if self.b.ndim == 1:
            g = g[..., None]  # (..., M) -> (..., M, 1); a 0-d result (1-D @ 1-D) -> (1,)
        if self.a.ndim == 1:
            g = g[..., None, :]  # (..., N) -> (..., 1, N)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g @ xp.swapaxes(b, -1, -2)  # (..., M, K)
            ga = ga.reshape(ga.shape[:-2] + (ga.shape[-1],)) if self.a.ndim == 1 else ga
        if self.needs_input_grad[1]:
            gb = xp.swapaxes(a, -1, -2) @ g  # (..., K, N)
            gb = gb[..., 0] if self.b.ndim == 1 else gb
        return ga, gb


class Linear(Function):
    """y = x Wᵀ + b, with W of shape (out, in) as in PyTorch. Skips gW/gb when not needed."""

    def forward(self, x, W, b=None):
        if x.shape[-1] != W.shape[1]:
            raise ValueError(
                f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the weight "
                f"of shape {W.shape} expects {W.shape[1]}"
            )
        self.x, self.W = x, W
        y = _rows_times(W, x)  # (..., out) = x Wᵀ
        return y + b if b is not None else y

    def backward(self, gy):
        gx = _rows_times(self.W.T, gy) if self.needs_input_grad[0] else None  # (..., in) = gy W
        gW = gb = None
        if self.needs_input_grad[1]:
            gW = gy.reshape(-1, gy.shape[-1]).T @ self.x.reshape(-1, self.x.shape[-1])  # (out, in)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.reshape(-1, gy.shape[-1]).sum(axis=0)
        return gx, gW, gb


def _rows_times(M, x):
    """x Mᵀ for x (..., k) and M (n, k), as (M xᵀ)ᵀ: the rows of M, contiguous in memory
    for M = W, are what ``split_matmul`` spreads over the workers (an fc layer at batch 1 is a
    matrix-vector product bound by reading W)."""
    if backend.parallel_threads(x) == 1:
        return x @ M.T
    return split_matmul(M, x.reshape(-1, x.shape[-1]).T).T.reshape(x.shape[:-1] + (M.shape[0],))
