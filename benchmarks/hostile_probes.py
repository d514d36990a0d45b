"""The memory-bomb probes of issue 13, each run once: what happens, how long, peak memory.

    python -m benchmarks.hostile_probes

Prints one line per probe: the outcome (the exception type and message), the wall time and
the traced peak memory (tracemalloc). Every file is small and built here, in a temporary
directory; nothing large is ever allocated when the readers behave.
"""
import io
import struct
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

from numpy.lib import format as npformat


def _pickle(numel, size, stride):
    """A torch data.pkl: {"w": _rebuild_tensor_v2(storage(numel), 0, size, stride)}."""
    def s(x):
        return b"X" + struct.pack("<I", len(x)) + x.encode()

    def tup(items):
        return b"(" + b"".join(items) + b"t"

    ints = [b"J" + struct.pack("<i", v) for v in (numel, 0)]
    pid = tup([s("storage"), b"ctorch\nFloatStorage\n", s("0"), s("cpu"), ints[0]]) + b"Q"
    args = tup([pid, ints[1], tup([b"J" + struct.pack("<i", v) for v in size]),
                tup([b"J" + struct.pack("<i", v) for v in stride]), b"\x89", b"}"])
    return (b"\x80\x02}" + s("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args
            + b"Rs.")


def _zip(path, members, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def probes(d):
    import weights
    from minigrad import images

    stride0 = d / "stride0.pth"  # 6 GiB of float32 declared by a 4-byte storage
    _zip(stride0, {"a/data.pkl": _pickle(1, (1 << 28, 6), (0, 0)), "a/data/0": b"\0" * 4})
    bomb = d / "bomb.pth"  # a 1 GB member, 1 MB deflated: pickle and zip header agree
    _zip(bomb, {"a/data.pkl": _pickle(1 << 28, (1 << 28,), (1,)), "a/data/0": bytes(1 << 30)},
         zipfile.ZIP_DEFLATED)
    head = io.BytesIO()
    npformat.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                           "shape": (1 << 28, 6)})
    meta = io.BytesIO()
    import numpy

    numpy.save(meta, numpy.array('{"format": "minigrad-weights"}'))
    npz = d / "bomb.npz"
    _zip(npz, {"__meta__.npy": meta.getvalue(), "conv1.weight.npy": head.getvalue()})
    png = d / "small.png"
    images.save_png(png, numpy.zeros((64, 80, 3), numpy.uint8))
    return [
        ("torch stride-0 size bomb (weights convert)", lambda: weights.read_source(stride0)),
        ("torch 1 GB deflated member (weights convert)", lambda: weights.read_source(bomb)),
        (".npz header declaring 6 GiB (--weights)", lambda: weights.load_npz(npz)),
        ("--resize 100000 on an 80x64 image", lambda: images.read_image(png, resize=100000)),
    ]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in probes(Path(tmp)):
            tracemalloc.start()
            t0 = time.perf_counter()
            try:
                fn()
                outcome = "read (no error)"
            except Exception as e:  # noqa: BLE001 - the outcome is what is reported
                outcome = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{name}: {dt:.3f} s, peak {peak / 2**20:.1f} MB -> {outcome[:160]}")


if __name__ == "__main__":
    main()
