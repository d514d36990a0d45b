"""The index of a batch run: results.csv, results.json, contact sheets and index.html.

Built from the task folders on disk (not from memory), so it is the same whether the tasks
ran now, in an earlier interrupted run, or on other machines. ``results.json`` keeps a record
of every start of the run ("runs": executed, skipped, failed, interrupted, executor).
"""
import html
import json
import os

from .batch import RunDir
from .outputs import shown_error

RESULT_COLUMNS = ["task", "image", "net", "layer", "preset", "options", "seed", "status",
                  "relative_error", "psnr", "iterations", "time_s", "cpu_s", "lambda_tv",
                  "jitter", "lr_backoffs", "worker", "error"]
CELL = 128


def result_row(run, task):
    """The task's row: its metrics when complete, else "failed" with the message or "pending"."""
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(task=task.name, image=task.image, net=task.net, layer=task.layer,
               preset=task.preset, options=task.label, seed=task.seed)
    meta = run.complete(task)
    if meta is None:
        error = run.failure(task)
        row.update(status="failed" if error else "pending", error=error)
        return row, None
    m, o, w = meta["metrics"], meta.get("options", {}), meta.get("worker") or {}
    row.update(status=meta["status"], relative_error=m["relative_error"], psnr=m.get("psnr"),
               iterations=m["iterations"], time_s=meta["wall_time_s"], cpu_s=meta.get("cpu_s"),
               lambda_tv=o.get("lambda_tv"), jitter=o.get("jitter"),
               lr_backoffs=m.get("lr_backoffs", 0),
               worker=f"{w.get('host')}:{w.get('pid')}" if w else None,
               error=meta.get("message") if meta["status"] not in ("completed", "converged")
               else None)
    return row, meta


def _previous_runs(path):
    try:
        with open(path, encoding="utf-8") as f:
            return list(json.load(f).get("runs", []))
    except (OSError, ValueError, AttributeError):
        return []


def write_index(out, tasks, record, title="minigrad sweep"):
    """results.csv, results.json (with ``record`` appended to "runs"), sheets, index.html.

    Returns the rows (one per task, in the tasks' order)."""
    from .. import images as im

    run = RunDir(out)
    rows = [result_row(run, t)[0] for t in tasks]
    im.save_csv(os.path.join(out, "results.csv"), RESULT_COLUMNS,
                [[r[c] for c in RESULT_COLUMNS] for r in rows])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("failed", "pending")}
    runs = _previous_runs(os.path.join(out, "results.json")) + [record]
    im.save_json(os.path.join(out, "results.json"), {
        "title": title, "total": len(rows), "complete": len(rows) - sum(counts.values()),
        **counts, "tasks": rows, "runs": runs})
    sheets = write_sheets(out, tasks, rows)
    im.save_text(os.path.join(out, "index.html"), page(title, rows, sheets, record))
    return rows


# --- contact sheets ----------------------------------------------------------------------------
def _tile(out, task, row, text):
    """(image, label) of one task in a sheet: its reconstruction, or a grey 'failed' square."""
    from .. import images as im
    from ..backend import np

    if row["relative_error"] is not None:
        try:
            rec, _ = im.read_image(os.path.join(out, "tasks", task.name, "reconstruction.png"))
            return rec, f"{text} {shown_error(row['relative_error'], row['status'], 2)}"
        except Exception:  # noqa: BLE001 - a missing file shows as a grey tile
            pass
    return np.full((CELL, CELL, 3), 200, dtype=np.uint8), f"{text} {row['status']}"


def _original(path, cache):
    from .. import images as im
    from ..backend import np

    if path not in cache:
        try:
            cache[path] = im.read_image(path, resize=2 * CELL)[0]
        except Exception:  # noqa: BLE001 - an unreadable input: a dark tile
            cache[path] = np.full((CELL, CELL, 3), 60, dtype=np.uint8)
    return cache[path]


def _sheet(out, name, title, groups, originals):
    """One sheet: a row per group (header image + the group's tasks); returns its file name."""
    from .. import images as im

    tiles, labels = [], []
    ncols = 1 + max(len(members) for _, _, members in groups)
    for head_path, head_label, members in groups:
        tiles.append(_original(head_path, originals))
        labels.append(head_label)
        for task, row, text in members:
            tile, lab = _tile(out, task, row, text)
            tiles.append(tile)
            labels.append(lab)
        tiles += [tiles[-1] * 0 + 255] * (ncols - 1 - len(members))
        labels += [""] * (ncols - 1 - len(members))
    file = f"sheets/{name}.png"
    im.save_png(os.path.join(out, file), im.grid(tiles, labels, ncols=ncols, cell=CELL,
                                                 title=title))
    return file


def write_sheets(out, tasks, rows):
    """A sheet per image (rows: option sets, columns: layers) and per layer (rows: images,
    columns: option sets), like the papers' figures. Returns {"image": [...], "layer": [...]}."""
    from .batch import slug

    os.makedirs(os.path.join(out, "sheets"), exist_ok=True)
    pairs = list(zip(tasks, rows))
    stems = list(dict.fromkeys(t.name.split(".")[0] for t in tasks))
    originals, sheets = {}, {"image": [], "layer": []}
    for stem in stems:
        mine = [(t, r) for t, r in pairs if t.name.split(".")[0] == stem]
        groups = [(mine[0][0].image, f"{stem} ({label})", [(t, r, t.layer) for t, r in mine
                                                           if (t.label, t.seed) == key])
                  for key in dict.fromkeys((t.label, t.seed) for t, _ in mine)
                  for label in [f"{key[0]} s{key[1]}"]]
        sheets["image"].append((stem, _sheet(out, f"image-{slug(stem)}", f"{stem}: "
                                             "reconstruction per layer (label: relative error)",
                                             groups, originals)))
    for net, layer in dict.fromkeys((t.net, t.layer) for t in tasks):
        mine = [(t, r) for t, r in pairs if (t.net, t.layer) == (net, layer)]
        groups = [(path, t0.name.split(".")[0], [(t, r, f"{t.label} s{t.seed}")
                                                  for t, r in mine if t.image == path])
                  for path in dict.fromkeys(t.image for t, _ in mine)
                  for t0 in [next(t for t, _ in mine if t.image == path)]]
        sheets["layer"].append((f"{net} {layer}", _sheet(
            out, f"layer-{slug(net)}-{slug(layer)}", f"{net} {layer}: one row per image "
            "(columns: option sets)", groups, originals)))
    return sheets


# --- the page ----------------------------------------------------------------------------------
def _cell(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else html.escape(str(v))


def page(title, rows, sheets, record):
    done = sum(r["relative_error"] is not None for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    h = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
         "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}"
         "td,th{padding:2px 8px;text-align:left}.failed{color:#b00}</style>",
         f"<h1>{html.escape(title)}</h1>",
         f"<p>{done} of {len(rows)} tasks complete, {failed} failed. Last start: "
         f"{len(record['executed'])} executed, {len(record['skipped'])} already complete, "
         f"{html.escape(record['executor'])}"
         + (" <b>(interrupted)</b>" if record["interrupted"] else "") + ".</p>",
         "<p>Files: <a href='results.csv'>results.csv</a>, "
         "<a href='results.json'>results.json</a>.</p>", "<h2>By image</h2>"]
    for name, file in sheets["image"]:
        h.append(f"<h3>{html.escape(name)}</h3><img src='{file}' alt='{html.escape(name)}'>")
    h.append("<h2>By layer</h2>")
    for name, file in sheets["layer"]:
        h.append(f"<h3>{html.escape(name)}</h3><img src='{file}' alt='{html.escape(name)}'>")
    cols = ["task", "status", "relative_error", "psnr", "iterations", "time_s", "error"]
    h.append("<h2>Tasks</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
    for r in rows:
        link = f"<a href='tasks/{html.escape(r['task'])}/comparison.png'>{_cell(r['task'])}</a>"
        cls = " class='failed'" if r["status"] == "failed" else ""
        h.append(f"<tr{cls}><td>{link}</td>" + "".join(f"<td>{_cell(r[c])}</td>"
                                                       for c in cols[1:]) + "</tr>")
    h.append("</table>")
    return "\n".join(h) + "\n"
