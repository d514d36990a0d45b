"""The main job, ``minigrad demo``: HOG, DSIFT and AlexNet conv1…pool5 (real weights) inverted
from a bundled sample image, with an index.html page, a contact sheet and metrics.json."""
import html
import os
import time

from ..backend import np
from . import CLIError
from .outputs import format_table, load_rep, out_dir, run_sweep, say, versions

DEMO_LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4",
               "relu4", "conv5", "relu5", "pool5"]
QUICK_LAYERS = ["conv1", "pool2", "relu4", "pool5"]


def settings_for(quick, iters=None):
    """The demo's budget: the cvpr15 schedule stretched to fewer iterations on the CPU."""
    return {"cnn_iters": iters or (50 if quick else 200), "feature_iters": iters or
            (200 if quick else 400), "feature_size": 128 if quick else 192, "quick": quick}


def run_demo(out, sample="astronaut", quick=False, iters=None, device="cpu", quiet=False):
    """Run the demo into ``out``; returns (sections, interrupted, settings, total seconds)."""
    from .. import images as im

    try:
        from .. import samples
    except ImportError:
        raise CLIError("the bundled sample images (minigrad.samples) are not installed") from None
    image = np.asarray(samples.load(sample))
    settings, t0, sections = settings_for(quick, iters), time.perf_counter(), []
    small = im.resize_longest(image, settings["feature_size"])
    for net in ("hog", "dsift"):
        try:
            rep = load_rep(net, None, device)
        except Exception as e:  # noqa: BLE001 - a missing representation is reported, not fatal
            say(f"skipping {net}: {' '.join(str(e).split())}")
            continue
        sub = out_dir(os.path.join(out, net))
        rows, stop = run_sweep(rep, small, [rep.layers[-1]], sub, "cvpr15",
                               {"iters": settings["feature_iters"]}, quiet, f"sample:{sample}")
        sections.append((net, sub, rows))
        if stop:
            return sections, True, None, None
    rep = load_rep("alexnet", None, device)
    sub = out_dir(os.path.join(out, "alexnet"))
    rows, stop = run_sweep(rep, image, QUICK_LAYERS if quick else DEMO_LAYERS, sub, "cvpr15",
                           {"iters": settings["cnn_iters"]}, quiet, f"sample:{sample}")
    sections.append(("alexnet", sub, rows))
    return sections, stop, settings, time.perf_counter() - t0


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


def _contact_sheet(out, sections):
    from PIL import Image

    from .. import images as im

    sheets = [np.asarray(Image.open(p).convert("RGB")) for p in
              (os.path.join(sub, "sweep.png") for _, sub, _ in sections) if os.path.exists(p)]
    if sheets:
        width = max(s.shape[1] for s in sheets)
        padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                  for s in sheets]
        im.save_png(os.path.join(out, "contact_sheet.png"), np.concatenate(padded, axis=0))


def _page(out, sections, interrupted, total, settings):
    parts = ["<!doctype html><meta charset='utf-8'><title>minigrad demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "td,th{padding:2px 10px;text-align:right}img{max-width:100%}</style>",
             "<h1>minigrad feature inversion demo</h1>",
             "<p>Reconstructions of the bundled sample image from HOG, DSIFT and AlexNet "
             "(torchvision weights) conv1…pool5, preset <code>cvpr15</code> "
             f"(Mahendran &amp; Vedaldi, CVPR15). Settings: {html.escape(str(settings or {}))}."
             + (f" Total time {total:.0f} s." if total else "")
             + (" <b>Interrupted.</b>" if interrupted else "") + "</p>"]
    for net, sub, rows in sections:
        rel = os.path.relpath(sub, out)
        parts.append(f"<h2>{html.escape(net)}</h2><img src='{rel}/sweep.png'>")
        parts.append("<table><tr><th>layer</th><th>relative error</th><th>PSNR dB</th>"
                     "<th>iterations</th><th>time s</th></tr>")
        for r in rows:
            psnr = "" if r.get("psnr") is None else f"{r['psnr']:.2f}"
            parts.append(f"<tr><td>{html.escape(r['layer'])}</td>"
                         f"<td>{r['relative_error']:.4f}</td><td>{psnr}</td>"
                         f"<td>{r['iterations']}</td><td>{r['time_s']:.1f}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts) + "\n"
