"""Small Pillow drawings for the report: error-vs-layer line plots and size-capped PNGs."""
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from minigrad.images import _font, atomic_open, grid

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]
MAX_PNG_BYTES = 300_000


def layer_plot(series, xlabels, title="", ylabel="relative error", size=(760, 420)):
    """Lines over categorical x (layer names), linear y from 0. ``series``: name -> values
    (None or non-finite values are skipped). Returns uint8 (H, W, 3)."""
    W, H = size
    left, right, top, bottom = 60, 170, 34, 70
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font(12)
    d.text((left, 8), title, fill=(0, 0, 0), font=_font(14))
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    ymax = max(vals) if vals else 1.0
    ymax = max(0.2, math.ceil(ymax * 5 + 1e-9) / 5)
    pw, ph = W - left - right, H - top - bottom
    n = len(xlabels)

    def px(i, y):
        return left + pw * (i + 0.5) / n, top + ph * (1 - y / ymax)

    for k in range(int(round(ymax / 0.2)) + 1):
        y = 0.2 * k
        _, yy = px(0, y)
        d.line([left, yy, W - right, yy], fill=(225, 225, 225))
        d.text((left - 34, yy - 7), f"{y:.1f}", fill=(0, 0, 0), font=font)
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for i, lab in enumerate(xlabels):  # vertical-ish labels: draw rotated text tiles
        xx, _ = px(i, 0)
        d.line([xx, H - bottom, xx, H - bottom + 4], fill=(0, 0, 0))
        tw = int(d.textlength(lab, font=font)) + 4
        tile = Image.new("RGB", (tw, 16), (255, 255, 255))
        ImageDraw.Draw(tile).text((2, 1), lab, fill=(0, 0, 0), font=font)
        tile = tile.rotate(60, expand=True, fillcolor=(255, 255, 255))
        img.paste(tile, (int(xx - tile.width + 6), H - bottom + 6))
    d.text((left + 6, top + 4), ylabel, fill=(90, 90, 90), font=font)
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = [px(i, y) for i, y in enumerate(ys) if y is not None and math.isfinite(y)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        ly = top + 6 + 18 * k
        d.line([W - right + 10, ly + 7, W - right + 30, ly + 7], fill=colour, width=3)
        d.text((W - right + 35, ly), name, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def save_png_capped(path, image, limit=MAX_PNG_BYTES):
    """Save a uint8 image as PNG, halving-ish its size until the file is under ``limit`` bytes.
    Returns the number of bytes written."""
    img = Image.fromarray(np.asarray(image))
    while True:
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        if buf.tell() <= limit or min(img.size) < 64:
            break
        img = img.resize((int(img.width * 0.8), int(img.height * 0.8)), Image.LANCZOS)
    with atomic_open(path) as f:
        f.write(buf.getvalue())
    return buf.tell()


def labelled_grid(images, labels, ncols, cell, title=None):
    return grid(images, labels, ncols=ncols, cell=cell, title=title)
