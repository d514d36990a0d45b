"""The local weights cache and file checksums, shared by the registry and the converters.

The cache is ``$MINIGRAD_HOME/weights`` when ``MINIGRAD_HOME`` is set, else
``~/.cache/minigrad/weights``.
"""
import hashlib
import os
from pathlib import Path

from . import arch


def cache_dir():
    """``$MINIGRAD_HOME/weights`` or ``~/.cache/minigrad/weights`` (not created here)."""
    home = os.environ.get("MINIGRAD_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    return Path("~/.cache/minigrad/weights").expanduser()


def cache_names(name):
    """Cache file names for ``name``, most preferred first."""
    return [f"{name}.npz", f"{name}-torchvision.npz", f"{name}-lpips.npz"]


def cached_path(name):
    """The preferred cached ``.npz`` for ``name``, or None."""
    arch._family(name)
    for fname in cache_names(name):
        p = cache_dir() / fname
        if p.is_file():
            return p
    return None


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of the file at ``path``, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
