"""What ``minigrad visualize`` and ``minigrad caricature`` write.

visualize: ``grid.png`` (every channel, labelled with its activation relative to the
natural-image maximum), ``channels/<layer>_c<NNN>.png``, ``loss.png``, ``history.csv``,
``metrics.json``. caricature: ``<layer>.png`` per layer, ``caricatures.png`` (the image and
every caricature), ``loss_<layer>.png`` and ``history_<layer>.csv`` per layer, ``metrics.json``.
With ``--frames N`` each run also writes its movie (``movie.FrameRecorder``).
"""
import os

from .outputs import out_dir, versions

HISTORY_COLUMNS = ["step", "lr", "loss", "alpha", "tv", "energy"]


def _curves(result, title):
    """loss.png's curves: the inner product (−loss, positive), the two priors, on a log axis."""
    from .. import images as im

    h = result.history
    curves = {"inner product (-loss)": [-v for v in h["loss"]], "tv": h["tv"],
              "alpha": h["alpha"]}
    return im.plot_curves(curves, title=title)


def write_history(path, result):
    from .. import images as im

    h = result.history
    im.save_csv(path, HISTORY_COLUMNS,
                [[h[c][i] for c in HISTORY_COLUMNS] for i in range(len(h["step"]))])


def _weights_meta(rep):
    return {k: str(v) for k, v in (getattr(rep, "meta", None) or {}).items()
            if k in ("source", "path", "pretrained", "variant", "sha256")}


def write_visualize_outputs(out, rep, layer, result, restarts=1, extra=None):
    """grid.png, channels/*.png, loss.png, history.csv, metrics.json; returns the paths."""
    from .. import images as im

    m = result.metrics
    imgs = result.image if isinstance(result.image, list) else [result.image]
    chans = [c for c in m["channels"] for _ in range(restarts)]
    maxima = [v for v in m["max_activation"] for _ in range(restarts)]
    acts = m["activation_per_restart"]
    os.makedirs(os.path.join(out, "channels"), exist_ok=True)
    paths, labels = [], []
    for i, (img, c) in enumerate(zip(imgs, chans)):
        suffix = f"_r{i % restarts}" if restarts > 1 else ""
        p = os.path.join(out, "channels", f"{layer}_c{c:03d}{suffix}.png")
        im.save_png(p, img)
        paths.append(p)
        labels.append(f"c{c} {acts[i] / maxima[i]:.1f}x max")
    cols = min(len(imgs), 8)
    grid = os.path.join(out, "grid.png")
    im.save_png(grid, im.grid(imgs, labels, ncols=cols, cell=128,
                              title=f"{rep.name} {layer}: activation maximisation (label: "
                                    "activation / natural-image maximum)"))
    im.save_png(os.path.join(out, "loss.png"),
                _curves(result, f"energy terms, {rep.name} {layer} (log scale)"))
    write_history(os.path.join(out, "history.csv"), result)
    meta = {"command": "visualize", "status": result.status, "message": result.message,
            "net": rep.name, "layer": layer, "metrics": m, "options": result.options,
            "wall_time_s": result.wall_time, "weights": _weights_meta(rep),
            "versions": versions(), **(extra or {})}
    im.save_json(os.path.join(out, "metrics.json"), meta)
    return [grid, *paths, os.path.join(out, "loss.png"), os.path.join(out, "history.csv"),
            os.path.join(out, "metrics.json")]


def write_caricature_layer(out, rep, layer, result):
    """<layer>.png, loss_<layer>.png, history_<layer>.csv; returns the metrics row."""
    from .. import images as im

    out_dir(out)  # created once there is something to write
    img = result.image if not isinstance(result.image, list) else result.image[0]
    im.save_png(os.path.join(out, f"{layer}.png"), img)
    im.save_png(os.path.join(out, f"loss_{layer}.png"),
                _curves(result, f"energy terms, caricature {rep.name} {layer} (log scale)"))
    write_history(os.path.join(out, f"history_{layer}.csv"), result)
    return {"layer": layer, "status": result.status, "message": result.message,
            "wall_time_s": result.wall_time, "metrics": result.metrics,
            "options": result.options}


def write_caricature_summary(out, rep, original, layers, images, rows, image_path, notes,
                             interrupted=False):
    """caricatures.png (the image, then every layer's caricature) and metrics.json."""
    from .. import images as im

    labels = ["original"] + [f"{r['layer']} x{r['metrics']['enhancement']:.1f}" for r in rows]
    im.save_png(os.path.join(out, "caricatures.png"),
                im.grid([original] + list(images), labels, cell=192,
                        title=f"{rep.name}: caricatures (label: <w, phi(x)>, 1 for the image)"
                              + (" INTERRUPTED" if interrupted else "")))
    im.save_json(os.path.join(out, "metrics.json"), {
        "command": "caricature", "net": rep.name, "image": os.fspath(image_path),
        "input_notes": list(notes), "layers": rows, "interrupted": interrupted,
        "weights": _weights_meta(rep), "versions": versions()})
