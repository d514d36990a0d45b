"""Size limits for reading untrusted weight files: refuse before allocating.

A weight file can declare any size: a tensor of 2**40 elements with stride 0, a zip member
that inflates to 6 GiB, an ``.npz`` header promising a 6 GiB array. Every reader checks the
declared sizes against the bounds below *before* anything is allocated or decompressed.

``MAX_ELEMENTS`` is the number of parameters of the largest known architecture
(``weights.arch``: VGG-16, 138,357,544) with a margin of 2: no honest weight file of a
supported network declares more, in its storages or in its tensors.
"""
import math

from . import arch
from .errors import WeightsError

MARGIN = 2
MAX_ELEMENTS = MARGIN * max(
    sum(math.prod(s) for s in arch.expected_shapes(v).values()) for v in arch.VARIANTS)
MAX_ITEMSIZE = 8  # float64 / int64, the widest element type a reader accepts
MAX_BYTES = MAX_ELEMENTS * MAX_ITEMSIZE  # a whole file read into memory
MAX_STORAGE_BYTES = MAX_ELEMENTS * 4  # the storages of one torch file: float32 at the bound
MAX_PICKLE_BYTES = 64 << 20  # a torch zip's data.pkl (names and sizes only, no data)
MAX_META_BYTES = 1 << 20  # the JSON metadata of a minigrad .npz
CHUNK = 1 << 20


class ElementBudget:
    """The elements a file has declared so far; raises once they exceed ``limit``."""

    def __init__(self, limit=MAX_ELEMENTS, what="elements"):
        self.limit, self.used, self.what = int(limit), 0, what

    def charge(self, count, where="file"):
        count = int(count)
        if count < 0:
            raise WeightsError(f"{where}: declares a negative size ({count} {self.what})")
        self.used += count
        if self.used > self.limit:
            raise WeightsError(
                f"{where}: declares {self.used:,} {self.what} or more, above the limit of "
                f"{self.limit:,} ({MARGIN} x the largest supported network); refused before "
                "allocating (corrupt or hostile file?)")
        return count


def element_count(shape):
    """The exact number of elements of ``shape`` (Python ints: never overflows)."""
    return math.prod(int(s) for s in shape)


def check_file_size(path, limit=MAX_BYTES):
    """Refuse a file larger than ``limit`` before reading it into memory."""
    import os

    size = os.path.getsize(path)
    if size > limit:
        raise WeightsError(f"{path}: {size:,} bytes, above the limit of {limit:,} for a "
                           "weight file read into memory")
    return size


MAX_RATIO = 100  # weights barely compress (float noise): more than 100:1 is a bomb
RATIO_FREE = 1 << 20  # small members (metadata, byte order) may compress better


def read_zip_member(zf, info, cap, where):
    """The bytes of zip member ``info``, refusing a declared or actual size above ``cap``.

    The declared uncompressed size and the compression ratio are checked first (a zip bomb
    is refused without inflating anything), then the member is streamed into a buffer of
    the declared size and reading stops as soon as more comes out, whatever the header said.
    """
    if info.file_size > cap:
        raise WeightsError(
            f"{where}: zip member {info.filename} declares {info.file_size:,} bytes "
            f"uncompressed, above the limit of {cap:,}; refused before inflating (zip bomb?)")
    if info.file_size > RATIO_FREE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise WeightsError(
            f"{where}: zip member {info.filename} inflates {info.compress_size:,} bytes to "
            f"{info.file_size:,}, a ratio above {MAX_RATIO}:1; refused before inflating "
            "(zip bomb?)")
    buf = bytearray(info.file_size)
    view, done = memoryview(buf), 0
    with zf.open(info) as f:
        while done < len(buf):
            n = f.readinto(view[done:done + CHUNK])
            if not n:
                raise WeightsError(f"{where}: zip member {info.filename} ends after {done:,} "
                                   f"of {len(buf):,} bytes (truncated file?)")
            done += n
        if f.read(1):
            raise WeightsError(f"{where}: zip member {info.filename} inflates beyond "
                               f"{info.file_size:,} bytes; refused (zip bomb?)")
    return bytes(buf) if len(buf) <= RATIO_FREE else buf
