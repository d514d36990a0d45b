"""``minigrad.visualize``: activation maximisation with the natural-image statistics it needs.

IJCV16 weights the activation-maximisation term by 1/max_activation, each channel's largest
response over natural images (the authors: ImageNet training images, one in a thousand). We
have no ImageNet: the maxima here are over minigrad's 4 bundled photographs plus 4 freely
licensed scikit-image sample photographs (camera, coins, grass, hubble: read from the
scikit-image 0.26.0 wheel on PyPI, which is fetched once with pip; scikit-image is never
imported). Eight images give smaller and noisier maxima than ImageNet's: the term is
weighted somewhat more than in the paper. Without the network only the bundled four are used,
and the result says so (``maxima_images``, ``maxima_note``).

The maxima are cached per network and weights (the sha256 of the weights file, or the source
of seeded random weights) in ``<weights cache>/maxima/``, one array per layer.
"""
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from ..backend import np

SKIMAGE_VERSION = "0.26.0"
EXTRA_IMAGES = {  # name -> file in skimage/data/ (licences: minigrad/data/LICENSES.md's source)
    "camera": "camera.png", "coins": "coins.png", "grass": "grass.png",
    "hubble": "hubble_deep_field.jpg",
}
MAXIMA_VERSION = 1


def _home():
    home = os.environ.get("MINIGRAD_HOME")
    return Path(home).expanduser() if home else Path("~/.cache/minigrad").expanduser()


def _atomic_write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _skimage_wheel(log):
    wheels = _home() / "paper" / "wheels"  # shared with benchmarks/paper/imageset.py
    pattern = str(wheels / f"scikit_image-{SKIMAGE_VERSION}-*.whl")
    if not sorted(glob.glob(pattern)):
        log(f"fetching scikit-image=={SKIMAGE_VERSION} (wheel, for its sample photographs)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", f"scikit-image=={SKIMAGE_VERSION}",
               "-d", str(wheels)]
        subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    found = sorted(glob.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download of scikit-image=={SKIMAGE_VERSION} failed")
    return Path(found[0])


def _extra_image(name, log):
    from PIL import Image

    cached = _home() / "paper" / "images" / EXTRA_IMAGES[name]
    if not cached.is_file():
        with zipfile.ZipFile(_skimage_wheel(log)) as z:
            _atomic_write(cached, z.read(f"skimage/data/{EXTRA_IMAGES[name]}"))
    with Image.open(io.BytesIO(cached.read_bytes())) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def natural_images(log=print, extras=True):
    """({name: uint8 RGB image}, note): the bundled photographs, plus the scikit-image ones
    when they can be read (note says what was left out, else "")."""
    from .. import samples

    images = {n: samples.load(n) for n in samples.names()}
    if not extras:
        return images, "bundled photographs only (extras not requested)"
    try:
        for name in EXTRA_IMAGES:
            images[name] = _extra_image(name, log)
    except Exception as e:  # noqa: BLE001 - no network: the bundled four, and say so
        images = {n: images[n] for n in samples.names()}
        return images, (f"the scikit-image sample photographs are not available ({e}); the "
                        "maxima are over the 4 bundled photographs only")
    return images, ""


def weights_key(rep):
    """A key for ``rep``'s weights: the file's sha256, the seeded source, or None (arrays)."""
    from weights.cache import sha256_file

    meta = getattr(rep, "meta", None) or {}
    if meta.get("path") and os.path.isfile(meta["path"]):
        return sha256_file(meta["path"])[:16]
    if str(meta.get("source", "")).startswith("random"):  # seeded: the seed and the shapes
        shapes = getattr(rep, "param_shapes", dict)()
        return hashlib.sha256(f"{meta['source']} {shapes}".encode()).hexdigest()[:16]
    return None


def compute_maxima(rep, images, layers):
    """{layer: float64 (channels,)}: each channel's largest response over ``images`` and every
    position (the network's preprocessing: shorter side resized, central crop)."""
    from ..tensor import no_grad

    out = {}
    with no_grad():
        for image in images:
            codes = rep.forward_layers(rep.preprocess(image), layers)
            for name, t in codes.items():
                a = t.numpy().astype(np.float64)
                m = a.reshape(a.shape[0], a.shape[1], -1).max(axis=(0, 2)) if a.ndim > 2 \
                    else a.max(axis=0)
                out[name] = m if name not in out else np.maximum(out[name], m)
    return out


def channel_maxima(rep, layer, log=print, extras=True):
    """(float64 (channels,), info): natural-image maxima of ``layer``, from the cache when
    there; info records the images, the note and the cache file."""
    key = weights_key(rep)
    path = _cache_path(rep, key, extras)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if layer in z.files:
                return np.array(z[layer]), {**info, "cache": str(path)}
    layers = [n for n in rep.layers if rep.has_weights(n)]
    if layer not in layers:
        rep.require_weights(layer)
    images, note = natural_images(log, extras)
    log(f"computing the channel maxima of {rep.name} over {len(images)} natural images")
    maxima = compute_maxima(rep, list(images.values()), layers)
    info = {"images": list(images), "note": note, "weights_key": key,
            "version": MAXIMA_VERSION}
    if path is not None and not note.startswith("the scikit-image"):  # cache only full sets
        buf = io.BytesIO()
        np.savez(buf, info=np.array(json.dumps(info)), **maxima)
        _atomic_write(path, buf.getvalue())
    return maxima[layer], {**info, "cache": str(path) if path else None}


def _cache_path(rep, key, extras):
    from weights.cache import cache_dir

    if key is None:
        return None
    tag = "natural8" if extras else "bundled4"
    return cache_dir() / "maxima" / f"{rep.name}-{key}-{tag}-v{MAXIMA_VERSION}.npz"


def visualize(rep, layer, channel=0, preset="ijcv16", max_activation=None, log=None,
              extras=True, **overrides):
    """The image that maximally activates ``channel`` (an int or a list) of ``layer``.

    max_activation: None (the cached natural-image maxima, computed on first use), a number,
    or one value per channel. extras=False: the maxima over the 4 bundled photographs only
    (no download). Options as ``minigrad.inversion.visualize.maximise``
    (restarts, seed, jitter, iterations, positions, size, callback, ...). Returns an
    InversionResult; ``metrics`` records the maxima used and the images behind them.
    """
    from ..inversion.visualize import maximise

    if rep.kind != "cnn":
        raise ValueError(f"activation maximisation needs a CNN; {rep.name} is {rep.kind}")
    rep.require_weights(rep.check_layer(layer))  # fc8 with conv-only weights: refused here
    info = {"source": "given"}
    if max_activation is None:
        max_activation, info = channel_maxima(rep, layer, log or (lambda m: None), extras)
    result = maximise(rep, layer, channel, max_activation, preset=preset, **overrides)
    chans = [channel] if np.isscalar(channel) else list(channel)
    m = np.broadcast_to(np.asarray(max_activation, dtype=np.float64).reshape(-1),
                        (rep.output_shape(layer)[0],))
    result.metrics["channels"] = [int(c) for c in chans]
    result.metrics["max_activation"] = [float(m[c]) for c in chans]
    result.metrics["maxima_images"] = info.get("images", "given")
    result.metrics["maxima_note"] = info.get("note", "")
    return result

