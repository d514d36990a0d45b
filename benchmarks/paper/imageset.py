"""The evaluation image set: minigrad's 4 bundled photographs plus scikit-image sample photographs.

The extra photographs are read from the scikit-image wheel on PyPI (``pip download --no-deps
scikit-image==0.26.0``, then ``skimage/data/<file>`` with zipfile); scikit-image is not
installed or imported. The wheel and the extracted files are cached in
``$MINIGRAD_HOME/paper`` (or ``~/.cache/minigrad/paper``). Licences are the ones scikit-image
documents for each image in ``skimage/data/_fetchers.py`` of that wheel.

Every method sees the same geometry: shorter side resized to the method's input size S
(bilinear, antialiased), then the central S×S crop (``models.cnn.resize_and_crop``).
"""
import glob
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

SKIMAGE_VERSION = "0.26.0"

BUNDLED = {  # name -> (description, licence); the files are minigrad/data/<name>.png
    "astronaut": ("Eileen Collins, NASA Great Images database (crop)", "public domain"),
    "chelsea": ("Chelsea the cat, photograph by Stefan van der Walt (crop)", "CC0"),
    "coffee": ("Coffee cup, photograph by Rachel Michetti, Pikolo Espresso Bar (crop)", "CC0"),
    "rocket": ("Falcon 9 launching DSCOVR, SpaceX Photos (resized)", "public domain"),
}

EXTRA = {  # name -> (file in skimage/data/, description, licence)
    "camera": ("camera.png", "man with a camera, photograph by Lav Varshney (grey)", "CC0"),
    "coins": ("coins.png", "Greek coins from Pompeii, Brooklyn Museum Collection (grey)",
              "no known copyright restrictions"),
    "grass": ("grass.png", "grass, DeviantArt user linolafett (grey crop)", "CC0"),
    "hubble": ("hubble_deep_field.jpg", "Hubble eXtreme Deep Field, NASA", "public domain"),
}
MORE = {  # further photographs of the same wheel, used by benchmarks/robustness.py
    "brick": ("brick.png", "brick wall, CC0Textures Bricks25 (grey)", "CC0"),
    "gravel": ("gravel.png", "gravel, CC0Textures Gravel04 (grey)", "CC0"),
    "moon": ("moon.png", "surface of the moon, photograph by Stefan van der Walt (grey)",
             "public domain"),
    "retina": ("retina.jpg", "fundus photograph of a normal left eye, Wikimedia Commons",
               "CC0"),
}


def cache_dir():
    home = os.environ.get("MINIGRAD_HOME")
    base = Path(home).expanduser() if home else Path("~/.cache/minigrad").expanduser()
    return base / "paper"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _wheel(log):
    wheels = cache_dir() / "wheels"
    found = sorted(glob.glob(str(wheels / f"scikit_image-{SKIMAGE_VERSION}-*.whl")))
    if found:
        return Path(found[0])
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"fetching scikit-image=={SKIMAGE_VERSION} (wheel, for its sample photographs) "
        f"with pip into {wheels}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", f"scikit-image=={SKIMAGE_VERSION}", "-d", str(wheels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    found = sorted(glob.glob(str(wheels / f"scikit_image-{SKIMAGE_VERSION}-*.whl")))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"pip download of scikit-image=={SKIMAGE_VERSION} failed: {last}")
    return Path(found[0])


def extra_bytes(name, log=print):
    """The original file of extra image ``name`` (bytes), from the cache or the wheel."""
    fname = {**EXTRA, **MORE}[name][0]
    cached = cache_dir() / "images" / fname
    if cached.is_file():
        return cached.read_bytes()
    with zipfile.ZipFile(_wheel(log)) as z:
        data = z.read(f"skimage/data/{fname}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(cached.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return data


def load(name, log=print):
    """(uint8 RGB array (H, W, 3), info dict) for a bundled or extra image."""
    from PIL import Image

    if name in BUNDLED:
        from minigrad import samples

        data = Path(samples.path(name)).read_bytes()
        desc, lic = BUNDLED[name]
        src = f"minigrad/data/{name}.png"
    else:
        data = extra_bytes(name, log)
        fname, desc, lic = {**EXTRA, **MORE}[name]
        src = f"scikit-image {SKIMAGE_VERSION} wheel, skimage/data/{fname}"
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    info = {"name": name, "source": src, "description": desc, "licence": lic,
            "size": f"{a.shape[1]}x{a.shape[0]}", "sha256": _sha256(data)[:16]}
    return a, info


def load_set(names, log=print):
    """Load ``names``; extra images that cannot be fetched are left out with a note.

    Returns (images dict name -> array, infos list, notes list)."""
    images, infos, notes = {}, [], []
    for n in names:
        try:
            a, info = load(n, log)
        except Exception as exc:  # noqa: BLE001 - no network: go on with what we have
            notes.append(f"{n}: not available ({exc}); left out")
            log(f"image {n} left out: {exc}")
            continue
        images[n] = a
        infos.append(info)
    return images, infos, notes


def square(image, size):
    """Shorter side to ``size``, central size×size crop (the same for every method)."""
    from models.cnn import resize_and_crop

    return resize_and_crop(image, (size, size))
