"""The local weights cache and file checksums, shared by the registry and the converters.

The cache is ``$MINIGRAD_HOME/weights`` when ``MINIGRAD_HOME`` is set, else
``~/.cache/minigrad/weights``.
"""
import hashlib
import os
from pathlib import Path

from . import arch
from .errors import ChecksumError


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


# --- the recorded sha256 of each written .npz --------------------------------------------------
FETCH_NAMES = ("alexnet", "vgg16")  # registry.FETCHABLE (tests check they agree)
_VERIFIED = {}  # (real path, size, mtime_ns, inode) -> sha256: each file is hashed once


def record_path(path):
    """``<file>.sha256``: the sha256 of ``<file>`` as it was written (sha256sum format)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_record(path, sha):
    """Write ``record_path(path)`` atomically."""
    rec = record_path(path)
    tmp = rec.with_name(f".{rec.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{sha}  {Path(path).name}\n")
    os.replace(tmp, rec)


def rebuild_command(path):
    """The command that rebuilds the file at ``path`` (cache names know their source)."""
    name = Path(path).name
    for variant in FETCH_NAMES:
        if name == f"{variant}-lpips.npz":
            return f"`minigrad weights fetch {variant} --force`"
        if name == f"{variant}-torchvision.npz":
            return f"`minigrad weights fetch {variant} --full --force`"
    return "`minigrad weights convert` on the file it was converted from"


def verify_record(path):
    """The file's sha256 if a record exists and matches, None when none was recorded.

    Raises ChecksumError naming the rebuild command when the file differs from its record.
    Each (path, size, mtime, inode) is hashed once per process."""
    path = Path(path)
    rec = record_path(path)
    if not rec.is_file():
        return None
    st = path.stat()
    ident = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    recorded = rec.read_text(errors="replace").split(maxsplit=1)[:1] or [""]
    if _VERIFIED.get(ident) == recorded[0]:
        return recorded[0]
    actual = sha256_file(path)
    if actual != recorded[0]:
        raise ChecksumError(
            f"{path} is corrupt: its sha256 {actual[:16]}... differs from the "
            f"{recorded[0][:16]}... recorded when it was written; rebuild it with "
            f"{rebuild_command(path)}")
    _VERIFIED[ident] = actual
    return actual
