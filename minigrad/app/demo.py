"""The main job, ``minigrad demo``: HOG, DSIFT and AlexNet conv1…pool5 (real weights) inverted
from a bundled sample image, with an index.html page, a contact sheet and metrics.json.

**The budget.** The demo must take about two minutes on two cores and still look like the full
runs: each layer's relative error within 1.15× of the full schedules of
``benchmarks/bench_layers`` (same image, same sizes: AlexNet at 224 px, HOG/DSIFT at 256 px).
The full schedules of all 13 layers conv1…pool5 cost ~190 s alone. Two choices fit it:

- *The conv and pool layers only.* A ReLU layer's reconstruction looks like its convolution's
  (the bench's pictures), so the demo shows conv1, pool1, conv2, pool2, conv3, conv4, conv5,
  pool5 and leaves relu1…relu5 to ``minigrad sweep``.
- *Iterations where they are needed* (``DEMO_SCHEDULE``). Stretching the 100/200/100 schedule
  (lr × 1, 0.1, 0.01) proportionally to 200 iterations stops the large-rate phase too early:
  that phase removes the initial noise, and at relu2 it left a coloured checkerboard (error 0.51
  against 0.26). Keeping that phase whole and shortening the polishing phases to 70/30 costs
  under 6% of error on conv1…conv3 (measured: ratios 1.02–1.12 to the full schedule), but
  1.14–1.8× from conv4 on, where λTV = 100 needs the long lr/10 phase. So the cheap early
  layers run 100/70/30 (conv1 100/140/60), conv4 100/140/60; HOG 150/100/50/20 and DSIFT
  200/200/100/50 instead of 200×4 (DSIFT at 150/100/50/20 stayed 1.23× above).
- *Longer where the full schedule has not converged.* At conv5 the full 100/200/100 ends
  wherever float32 rounding sends it: on the demo's image, over three seeds and the two conv
  algorithms, its error ranged 0.257–0.435 (a run stuck at twice the final energy shows a
  washed-out face); 200/300/100 gave 0.253–0.278 (``python -m benchmarks.demo_schedules``), for
  6 s more, so conv5 runs it. pool5's full schedule was stable (0.302–0.325; 200/300/100:
  0.296–0.310) and stays.
"""
import html
import os
import time

from ..backend import np
from . import CLIError
from .outputs import (
    SWEEP_COLUMNS,
    _invert_layer,
    describe,
    format_table,
    hog_glyphs,
    load_rep,
    out_dir,
    say,
    shown_error,
    versions,
)

DEMO_LAYERS = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
QUICK_LAYERS = ["conv1", "pool2", "conv4", "pool5"]
CNN_SIZE = 224  # AlexNet's input (longer side), as in benchmarks/bench_layers
# iterations per phase of the cvpr15 schedule (lr × 1, 0.1, 0.01[, 0.001]); see the docstring
SHORT, MEDIUM, FULL, LONG = (100, 70, 30), (100, 140, 60), (100, 200, 100), (200, 300, 100)
DEMO_SCHEDULE = {"conv1": MEDIUM, "pool1": SHORT, "conv2": SHORT, "pool2": SHORT, "conv3": SHORT,
                 "conv4": MEDIUM, "conv5": LONG, "pool5": FULL, "hog": (150, 100, 50, 20),
                 "dsift": (200, 200, 100, 50)}
QUICK_SCHEDULE = {"cnn": (30, 15, 5), "features": (80, 60, 40, 20)}
TILE = 224  # px: the size the page shows each picture at (at least 192)


def settings_for(quick, iters=None):
    """The demo's budget: its cvpr15 schedules per layer (``DEMO_SCHEDULE``), or ``iters``
    iterations per inversion (the preset's schedule stretched)."""
    layers = QUICK_LAYERS if quick else DEMO_LAYERS
    sched = ({k: QUICK_SCHEDULE["cnn"] for k in layers}
             | {k: QUICK_SCHEDULE["features"] for k in ("hog", "dsift")}
             if quick else DEMO_SCHEDULE)
    return {"preset": "cvpr15", "quick": quick, "iters": iters, "layers": layers,
            "schedules": None if iters else {k: list(v) for k, v in sched.items()},
            "cnn_size": CNN_SIZE, "feature_size": 128 if quick else 256}


def _overrides(settings, layer):
    """The options of one layer's inversion (``layer``: a CNN layer, "hog" or "dsift")."""
    if settings["iters"]:
        return {"iters": settings["iters"]}
    return {"lr_lengths": tuple(settings["schedules"][layer])}


def run_demo(out, sample="astronaut", quick=False, iters=None, device="cpu", quiet=False):
    """Run the demo into ``out``; returns (sections, interrupted, settings, total seconds)."""
    from .. import images as im

    try:
        from .. import samples
    except ImportError:
        raise CLIError("the bundled sample images (minigrad.samples) are not installed") from None
    image = np.asarray(samples.load(sample))
    settings, t0, sections = settings_for(quick, iters), time.perf_counter(), []
    plan = [(net, im.resize_longest(image, settings["feature_size"]), None)
            for net in ("hog", "dsift")]
    plan.append(("alexnet", im.resize_longest(image, CNN_SIZE), settings["layers"]))
    for net, img, layers in plan:
        try:
            rep = load_rep(net, None, device)
        except Exception as e:  # noqa: BLE001 - a missing representation is reported, not fatal
            if net == "alexnet":
                raise
            say(f"skipping {net}: {' '.join(str(e).split())}")
            continue
        sub = out_dir(os.path.join(out, net))
        rows, stop = _sweep(rep, img, layers, sub, settings, quiet, sample)
        _save_extras(rep, img, sub, rows)
        sections.append((net, sub, rows))
        if stop:
            return sections, True, settings, time.perf_counter() - t0
    return sections, False, settings, time.perf_counter() - t0


def _sweep(rep, image, layers, sub, settings, quiet, sample):
    """Invert ``image`` at each layer (None: the representation's one layer), each with its own
    schedule; writes layers/<layer>.png, sweep.png, sweep.csv and metrics.json in ``sub``.
    Returns (rows, interrupted)."""
    from .. import images as im

    rows, tiles, labels, stop = [], [], [], False
    os.makedirs(os.path.join(sub, "layers"), exist_ok=True)
    for layer in layers or [rep.layers[-1]]:
        overrides = _overrides(settings, rep.name if layers is None else layer)
        result, row = _invert_layer(rep, image, layer, "cvpr15", overrides, quiet)
        rec = result.image if not isinstance(result.image, list) else result.image[0]
        im.save_png(os.path.join(sub, "layers", f"{layer}.png"), rec)
        rows.append(dict(row, schedule=list(overrides.get("lr_lengths", ()))))
        tiles.append(rec)
        labels.append(f"{layer} {shown_error(row['relative_error'], row['status'], 2)}")
        say(f"{describe(rep, layer)}: relative error "
            f"{shown_error(row['relative_error'], row['status'])}, {result.wall_time:.1f} s", quiet)
        if result.status == "interrupted":
            stop = True
            break
    im.save_png(os.path.join(sub, "sweep.png"), im.grid(tiles, labels, cell=TILE))
    im.save_csv(os.path.join(sub, "sweep.csv"), SWEEP_COLUMNS,
                [[r[c] for c in SWEEP_COLUMNS] for r in rows])
    im.save_json(os.path.join(sub, "metrics.json"), {
        "net": rep.name, "preset": "cvpr15", "image": f"sample:{sample}", "interrupted": stop,
        "layers": rows, "versions": versions()})
    return rows, stop


def _save_extras(rep, image, sub, rows):
    """original.png (what the representation sees) and, for HOG, the glyph pictures of the
    original and of the reconstruction, beside the per-layer images."""
    from PIL import Image

    from .. import images as im

    x0 = rep.preprocess(image).numpy()
    im.save_png(os.path.join(sub, "original.png"), rep.deprocess(x0))
    if rep.kind != "hog" or not rows:
        return
    rec = np.asarray(Image.open(os.path.join(sub, "layers", f"{rows[-1]['layer']}.png")))
    for name, x in (("original", x0), ("reconstruction", rep.preprocess(rec).numpy())):
        glyphs = hog_glyphs(rep, x)
        if glyphs is not None:
            im.save_png(os.path.join(sub, f"glyphs_{name}.png"), glyphs)


def write_index(out, sections, interrupted=False, total=None, settings=None):
    """contact_sheet.png, index.html and metrics.json of the demo; prints the tables."""
    from .. import images as im

    _contact_sheet(out, sections)
    im.save_text(os.path.join(out, "index.html"),
                 _page(out, sections, interrupted, total, settings))
    im.save_json(os.path.join(out, "metrics.json"), {
        "interrupted": interrupted, "total_time_s": total, "settings": settings,
        "sections": {net: rows for net, _, rows in sections}, "versions": versions()})
    for net, _, rows in sections:
        print(f"== {net}")
        print(format_table(rows))
    print(f"wrote {os.path.join(out, 'index.html')}")


def _tiles(sub, rows):
    """(relative path inside ``sub``, caption, status line) of a section's pictures."""
    tiles = [("original.png", "original", ""),
             ("glyphs_original.png", "HOG glyphs of the original", "")]
    for r in rows:
        tiles.append((f"layers/{r['layer']}.png", r["layer"],
                      f"error {shown_error(r['relative_error'], r['status'], 3)} · "
                      f"{r['status']}" + (f" · {r['lr_backoffs']} back-off(s)"
                                          if r.get("lr_backoffs") else "")))
    tiles.append(("glyphs_reconstruction.png", "HOG glyphs of the reconstruction", ""))
    return [t for t in tiles if os.path.exists(os.path.join(sub, t[0]))]


def _contact_sheet(out, sections):
    """Every picture of the page in one grid (8 per row, no half-empty strips)."""
    from PIL import Image

    from .. import images as im

    pics, labels = [], []
    for net, sub, rows in sections:
        for path, caption, _ in _tiles(sub, rows):
            pics.append(np.asarray(Image.open(os.path.join(sub, path)).convert("RGB")))
            labels.append(f"{net} {caption}" if caption != net else net)
    if pics:
        im.save_png(os.path.join(out, "contact_sheet.png"),
                    im.grid(pics, labels, ncols=min(len(pics), 8), cell=160))


STYLE = ("body{font-family:sans-serif;max-width:1320px;margin:2em auto;padding:0 1em}"
         ".tiles{display:flex;flex-wrap:wrap;gap:14px}"
         "figure{margin:0;width:" + str(TILE) + "px}"
         "figure img{width:" + str(TILE) + "px;height:" + str(TILE) + "px;object-fit:contain;"
         "image-rendering:pixelated;background:#eee;display:block}"
         "figcaption{font-size:13px;line-height:1.35}.st{color:#555}"
         "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;"
         "text-align:left}")


def _settings_table(settings, total, interrupted):
    s = settings or {}
    rows = [("preset", "cvpr15 (Mahendran &amp; Vedaldi, CVPR15)")]
    if s.get("iters"):
        rows.append(("iterations per inversion", f"{s['iters']} (the schedule stretched)"))
    else:
        groups = {}
        for k, v in (s.get("schedules") or {}).items():
            groups.setdefault(tuple(v), []).append(k.upper() if k in ("hog", "dsift") else k)
        rows += [(f"schedule: {', '.join(names)}", _phases(v)) for v, names in groups.items()]
    rows += [("AlexNet input", f"{s.get('cnn_size')} px, RGB, torchvision ImageNet weights"),
             ("HOG / DSIFT input", f"{s.get('feature_size')} px, grey"),
             ("quick", "yes" if s.get("quick") else "no")]
    if total:
        rows.append(("total time", f"{total:.0f} s"))
    if interrupted:
        rows.append(("status", "<b>interrupted</b>"))
    return ("<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
            + "</table>")


def _phases(lengths):
    if not lengths:
        return ""
    rates = ["lr", "lr/10", "lr/100", "lr/1000"]
    return ", ".join(f"{n} at {rates[i]}" for i, n in enumerate(lengths)) + " (lr = 0.004)"


def _page(out, sections, interrupted, total, settings):
    parts = ["<!doctype html><meta charset='utf-8'><title>minigrad demo</title>",
             f"<style>{STYLE}</style>", "<h1>minigrad feature inversion demo</h1>",
             "<p>Reconstructions of the bundled sample image from HOG, DSIFT and AlexNet's "
             "conv and pool layers conv1…pool5: each picture is the image whose code at that "
             "layer matches the original's. Click a picture for the file. All pictures: "
             "<a href='contact_sheet.png'>contact_sheet.png</a>; numbers: "
             "<a href='metrics.json'>metrics.json</a>.</p>",
             _settings_table(settings, total, interrupted)]
    for net, sub, rows in sections:
        rel = os.path.relpath(sub, out)
        parts.append(f"<h2>{html.escape(net)}</h2><div class='tiles'>")
        for path, caption, status in _tiles(sub, rows):
            href = html.escape(f"{rel}/{path}")
            parts.append(f"<figure><a href='{href}'><img src='{href}' alt='{html.escape(caption)}'>"
                         f"</a><figcaption><b>{html.escape(caption)}</b>"
                         + (f"<br><span class='st'>{html.escape(status)}</span>" if status else "")
                         + "</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts) + "\n"
