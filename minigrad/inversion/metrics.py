"""Reconstruction errors of the papers (paper-spec §7) and pixel-space errors.

All functions accept Tensors, NumPy or CuPy arrays and return Python floats (or NumPy arrays
with ``per_image=True``); they are for reporting, outside the optimisation loop.
"""
from .. import backend
from ..backend import np


def _host(a, dtype="float64"):
    return backend.asnumpy(backend.unwrap(a)).astype(dtype, copy=False)


def _apply_mask(a, mask):
    return a if mask is None else a * _host(mask)


def relative_error(phi, phi0, mask=None, per_image=False):
    """IJCV16: sqrt(‖Φ(x*) − Φ0‖² / ‖Φ0‖²), over the masked entries when a mask is given.

    ``phi`` may hold a batch (restarts) against one ``phi0`` (batch 1); ``per_image=True``
    returns one error per image, otherwise their mean.
    """
    phi, phi0 = _apply_mask(_host(phi), mask), _apply_mask(_host(phi0), mask)
    num = ((phi - phi0) ** 2).reshape(phi.shape[0], -1).sum(axis=1)
    den = (phi0 ** 2).sum()
    if den == 0:
        raise ValueError("relative_error: the target code Φ0 is zero (on the mask)")
    err = np.sqrt(num / den)
    return err if per_image else float(err.mean())


def pairwise_normaliser(codes, squared=False):
    """N of CVPR15: the average pairwise (squared) Euclidean distance between codes.

    codes: (M, ...) array of M ≥ 2 representations of an image set.
    """
    c = _host(codes).reshape(len(codes), -1)
    if len(c) < 2:
        raise ValueError("pairwise_normaliser needs at least two codes")
    sq = (c * c).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * c @ c.T, 0)  # (M, M)
    iu = np.triu_indices(len(c), k=1)
    d = d2[iu] if squared else np.sqrt(d2[iu])
    return float(d.mean())


def normalised_error(phi, phi0, normaliser, squared=False):
    """CVPR15: ‖Φ(x*) − Φ0‖ / N, or ‖Φ(x*) − Φ0‖² / N with ``squared=True`` (the authors'
    code uses squared distances in both the numerator and N; report both)."""
    d2 = float(((_host(phi) - _host(phi0)) ** 2).sum())
    return (d2 if squared else float(np.sqrt(d2))) / float(normaliser)


def rmse(image, reference):
    """Root-mean-square pixel error between two images of the same shape (any units)."""
    a, b = _host(image), _host(reference)
    if a.shape != b.shape:
        raise ValueError(f"rmse: shapes differ, {a.shape} vs {b.shape}")
    return float(np.sqrt(((a - b) ** 2).mean()))


def psnr(image, reference, peak=255.0):
    """Peak signal-to-noise ratio in dB, 10·log10(peak² / MSE); inf for identical images."""
    e = rmse(image, reference)
    return float("inf") if e == 0 else float(20 * np.log10(peak / e))


def gradient_orientation_histogram(image, bins=18):
    """IJCV16's global gradient histogram: the magnitude-weighted histogram of gradient
    directions of the grey image, ``bins`` bins over [−180°, 180°], summing to 1.

    As the authors' ``exp_naturalness.m``: MATLAB's ``rgb2gray`` weights, Sobel derivatives
    with replicated borders (``imgradient``), direction atan2(−Gy, Gx) with y pointing down;
    the first bin is closed [−180, −160], the others half-open (a, b]. image: (H, W[, 3]).
    """
    a = _host(image)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    if a.ndim != 2 or min(a.shape) < 2:
        raise ValueError(f"naturalness needs an image (H, W) or (H, W, 3), got {a.shape}")
    p = np.pad(a, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.hypot(gx, gy)
    deg = np.degrees(np.arctan2(-gy, gx))  # (−180, 180]
    idx = np.clip(np.ceil((deg + 180.0) / (360.0 / bins)).astype(int) - 1, 0, bins - 1)
    hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=bins)
    total = hist.sum()
    return hist / total if total > 0 else np.full(bins, 1.0 / bins)


def naturalness(image, reference, bins=18):
    """IJCV16's naturalness of a reconstruction: the intersection Σ min(h, h0) of the gradient
    orientation histograms of ``image`` and the original ``reference`` (1 = the same
    statistics, 0 = disjoint). A flat image (no gradient) counts as a uniform histogram."""
    h = gradient_orientation_histogram(image, bins)
    h0 = gradient_orientation_histogram(reference, bins)
    return float(np.minimum(h, h0).sum())
