"""Images in and out: careful reading, atomic writes, labelled grids and loss plots (Pillow only).

``read_image`` always returns an RGB uint8 array (H, W, 3) plus a list of notes saying what it
converted: grey, palette, RGBA/LA (composited on white), 16-bit and 32-bit integer or float
images (scaled to 8 bits), CMYK and other modes, EXIF orientation. Sizes are checked from the
file header before any pixel is decoded.
"""
import contextlib
import csv
import io
import json
import math
import os
import tempfile
import warnings

from .backend import np

MAX_PIXELS = 50_000_000  # refuse larger images unless resize= is given
HARD_MAX_PIXELS = 1_000_000_000  # never decode beyond this, even with resize


class ImageReadError(ValueError):
    """An image that cannot be read, or is too large; the message names the file."""


def _pil():
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    return Image, ImageDraw, ImageFont, ImageOps


def read_image(path, max_pixels=MAX_PIXELS, resize=None):
    """Read ``path`` as RGB uint8 (H, W, 3); returns ``(array, notes)``.

    ``resize=N`` scales the image so its longer side is N pixels (and allows images above
    ``max_pixels``, up to a hard limit of 1e9 pixels: JPEGs are decoded at reduced size).
    Without it, images over ``max_pixels`` are refused before decoding, naming the limit.
    """
    path = os.fspath(path)
    if resize is not None and (isinstance(resize, bool) or int(resize) != resize
                               or int(resize) < 8):
        raise ImageReadError(f"resize must be an integer of at least 8 pixels, got {resize!r}")
    if not os.path.exists(path):
        raise ImageReadError(f"cannot read image {path}: no such file")
    if os.path.isdir(path):
        raise ImageReadError(f"cannot read image {path}: it is a directory")
    img, notes = _open_checked(path, max_pixels, int(resize) if resize else None)
    img, converted = _upright_rgb(img)
    notes += converted
    if resize:
        img, resized = _resize_longest_side(img, int(resize))
        notes += resized
    return np.asarray(img, dtype=np.uint8).copy(), notes


def _open_checked(path, max_pixels, resize):
    """The decoded Pillow image, its size checked from the header first; (image, notes)."""
    Image = _pil()[0]
    limit = HARD_MAX_PIXELS if resize else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we check ourselves
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
            w, h = img.size
            if w * h > limit or w <= 0 or h <= 0:
                hint = "" if resize else "; pass --resize N (resize=N) to scale it down"
                raise ImageReadError(
                    f"image {path} is {w}x{h} ({w * h / 1e6:.1f} megapixels), above the limit of "
                    f"{limit / 1e6:.0f} megapixels{hint}"
                )
            if resize:
                _check_resized(path, w, h, resize, max_pixels)
                img.draft("RGB", (resize, resize))  # JPEG: decode at reduced scale
            notes = _header_notes(img)
            img.load()
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    return img, notes


def _upright_rgb(img):
    """EXIF orientation applied and the pixels as 8-bit RGB; (image, notes)."""
    Image, _, _, ImageOps = _pil()
    notes = []
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if mode == "F":
            top = 1.0 if a.max() <= 1.0 else 255.0
        a = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        notes.append(f"{'16-bit' if top == 65535 else mode + '-mode'} grey image scaled to 8 bits"
                     " and converted to RGB")
        return Image.fromarray(a, "L").convert("RGB"), notes
    if mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "P" and "transparency" in img.info):
        from .inversion.image_input import as_image  # the same rule as invert(rep, image)

        notes.append(f"{mode} image: alpha channel dropped (composited on white)")
        return Image.fromarray(as_image(np.asarray(img.convert("RGBA"))), "RGB"), notes
    if mode != "RGB":
        notes.append({"L": "grey image converted to RGB (equal channels)",
                      "1": "grey image converted to RGB (equal channels)",
                      "P": "palette image converted to RGB"}.get(mode,
                                                                 f"{mode} image converted to RGB"))
        img = img.convert("RGB")
    return img, notes


def _resize_longest_side(img, n):
    """Lanczos-resized so that the longer side is n px; (image, notes)."""
    w, h = img.size
    if max(w, h) == n:
        return img, []
    s = n / max(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), _pil()[0].LANCZOS)
    return img, [f"resized from {w}x{h} to {img.size[0]}x{img.size[1]}"]


def _resized_size(w, h, n):
    s = n / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _check_resized(path, w, h, n, max_pixels):
    """Refuse, from the header size, a resize whose result would exceed ``max_pixels``."""
    rw, rh = _resized_size(w, h, n)
    if rw * rh > max_pixels:
        largest = int(math.sqrt(max_pixels * max(w, h) / min(w, h)))
        raise ImageReadError(
            f"resize {n} would make image {path} {rw}x{rh} ({rw * rh / 1e6:.1f} megapixels), "
            f"above the limit of {max_pixels / 1e6:.0f} megapixels; use a resize of at most "
            f"{largest}")


def _header_notes(img):
    """Notes on what decoding will lose, read before decoding: extra frames, 16-bit colour."""
    notes = []
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated image with {frames} frames: only the first frame is used")
    rawmode = img.tile[0][3] if getattr(img, "tile", None) else ""
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    if img.mode in ("RGB", "RGBA") and isinstance(rawmode, str) and ";16" in rawmode:
        notes.append(f"16-bit {img.mode} image reduced to 8 bits per channel")
    return notes


def resize_longest(image, n):
    """uint8 image resized (Lanczos) so its longer side is n; unchanged when it already is."""
    Image = _pil()[0]
    a = np.asarray(image)
    h, w = a.shape[:2]
    if max(h, w) == n:
        return a
    s = n / max(h, w)
    return np.asarray(Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                Image.LANCZOS))


# --- atomic writes -----------------------------------------------------------------------------
def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # the mode open() would give, not mkstemp's 0600
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) \
                as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def to_pil(image):
    Image = _pil()[0]
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(a, "L" if a.ndim == 2 else "RGB")


def save_png(path, image):
    """Write a uint8 (H, W) or (H, W, 3) array (or a PIL image) as PNG, atomically."""
    img = image if hasattr(image, "save") else to_pil(image)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with atomic_open(path) as f:
        f.write(buf.getvalue())


def save_json(path, obj):
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=True)
    with atomic_open(path, "w") as f:
        f.write(text + "\n")


def _json_default(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def save_csv(path, header, rows):
    with atomic_open(path, "w") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def save_text(path, text):
    with atomic_open(path, "w") as f:
        f.write(text)


# --- drawing -------------------------------------------------------------------------------------
def _font(size=13):
    ImageFont = _pil()[2]
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _rgb(image):
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return np.stack([a] * 3, axis=-1) if a.ndim == 2 else a


def grid(images, labels=None, ncols=None, cell=160, title=None, pad=6):
    """A labelled contact sheet: uint8 (H, W, 3).

    Each image is scaled (nearest neighbour when enlarging, so pixels stay visible) to fit a
    ``cell``×``cell`` box; its label is written under it. ``ncols`` defaults to all in a row
    up to 8.
    """
    Image, ImageDraw, _, _ = _pil()
    images = [_rgb(im) for im in images]
    labels = list(labels) if labels is not None else [""] * len(images)
    if not images:
        raise ValueError("grid needs at least one image")
    n = len(images)
    ncols = ncols or min(n, 8)
    nrows = math.ceil(n / ncols)
    font = _font(13)
    label_h = 18 if any(labels) else 0
    title_h = 24 if title else 0
    W = ncols * (cell + pad) + pad
    H = title_h + nrows * (cell + label_h + pad) + pad
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 5), title, fill=(0, 0, 0), font=_font(15))
    for i, (im, lab) in enumerate(zip(images, labels)):
        r, c = divmod(i, ncols)
        h, w = im.shape[:2]
        s = cell / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        tile = Image.fromarray(im).resize((nw, nh), Image.NEAREST if s >= 1 else Image.LANCZOS)
        x0 = pad + c * (cell + pad) + (cell - nw) // 2
        y0 = title_h + pad + r * (cell + label_h + pad) + (cell - nh) // 2
        sheet.paste(tile, (x0, y0))
        if lab:
            ty = title_h + pad + r * (cell + label_h + pad) + cell + 2
            draw.text((pad + c * (cell + pad), ty), _fit(draw, lab, font, cell), fill=(0, 0, 0),
                      font=font)
    return np.asarray(sheet)


def _fit(draw, text, font, width):
    while len(text) > 3 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if not text.endswith("…") else text[:-2] + "…"
    return text


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def nice_ticks(last, target=6):
    """Round tick positions 0, s, 2s, … ≤ ``last`` with s in 1, 2, 5 × 10^k, about ``target`` of
    them (399 -> 0 100 200 300; 299 -> 0 50 100 … 250)."""
    if last <= 0:
        return [0]
    raw = last / target
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return list(range(0, int(last) + 1, int(step)))


def plot_curves(curves, title="", xlabel="iteration", size=(640, 400)):
    """Line plot on a log-scale y axis: ``curves`` maps a name to a list of values.

    Non-positive and non-finite values are left out (log scale). Returns uint8 (H, W, 3).
    """
    Image, ImageDraw, _, _ = _pil()
    W, H = size
    left, right, top, bottom = 70, 130, 30, 40
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font(12)
    series = {}
    for name, vals in curves.items():
        v = np.asarray(vals, dtype=np.float64)
        ok = np.isfinite(v) & (v > 0)
        if ok.any():
            series[name] = (np.nonzero(ok)[0], np.log10(v[ok]))
    if title:
        d.text((left, 8), title, fill=(0, 0, 0), font=_font(14))
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    if not series:
        d.text((left + 10, top + 10), "no positive values to plot", fill=(0, 0, 0), font=font)
        return np.asarray(img)
    n = max(int(i.max()) for i, _ in series.values()) + 1
    lo = math.floor(min(float(y.min()) for _, y in series.values()))
    hi = math.ceil(max(float(y.max()) for _, y in series.values()))
    hi = hi if hi > lo else lo + 1
    pw, ph = W - left - right, H - top - bottom

    def px(i, y):
        return left + pw * i / max(n - 1, 1), top + ph * (1 - (y - lo) / (hi - lo))

    step = max(1, math.ceil((hi - lo) / 8))
    for e in range(lo, hi + 1, step):  # decades
        _, yy = px(0, e)
        d.line([left, yy, W - right, yy], fill=(225, 225, 225))
        d.text((8, yy - 7), f"1e{e}", fill=(0, 0, 0), font=font)
    for i in nice_ticks(n - 1):
        xx, _ = px(i, lo)
        d.line([xx, H - bottom, xx, H - bottom + 4], fill=(0, 0, 0))
        d.text((xx - 4 * len(str(i)), H - bottom + 6), str(i), fill=(0, 0, 0), font=font)
    d.text((left + pw // 2 - 25, H - 18), xlabel, fill=(0, 0, 0), font=font)
    for k, (name, (idx, y)) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = [px(int(i), float(v)) for i, v in zip(idx, y)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        else:
            d.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        ly = top + 5 + 18 * k
        d.line([W - right + 8, ly + 7, W - right + 28, ly + 7], fill=colour, width=3)
        d.text((W - right + 32, ly), name, fill=(0, 0, 0), font=font)
    return np.asarray(img)
