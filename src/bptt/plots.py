"""Pictures of what a recurrent network does: gradient norms through time, training curves, gate
activations as a heatmap, and a self-contained HTML page that colours a text by one unit.

matplotlib runs with the Agg backend (set here, explicitly), so nothing needs a display. Every
figure has a fixed size in pixels (``figsize`` x ``DPI``) so that the pictures are reproducible.
The numbers come from ``bptt.inspect``; this module only draws.
"""

import html
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .data import DataError  # noqa: E402

DPI = 100
GRADFLOW_SIZE = (8.0, 5.0)  # inches: 800 x 500 pixels
RUNS_SIZE = (12.0, 8.0)  # 1200 x 800
LOSS_SIZE = (10.0, 4.0)  # the loss.png written at the end of training: 1000 x 400
COLOURS = {"rnn": "C0", "rnn_relu": "C4", "lstm": "C1", "gru": "C2"}
SHADES = {"rnn": "Blues", "rnn_relu": "Purples", "lstm": "Oranges", "gru": "Greens"}


def _save(fig, out):
    """Write the figure as a PNG with a 256-colour palette (a third of the size, the same look)."""
    import io

    from PIL import Image

    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(out, format="PNG", optimize=True)
    return out


# ----------------------------------------------------------------------------- gradient flow
def cell_colour(kind, k=0, n=1):
    """The colour of a cell's curves; with n variants (e.g. scales) the k-th of n shades."""
    if n <= 1:
        return COLOURS.get(kind, "k")
    return matplotlib.colormaps[SHADES.get(kind, "Greys")](0.45 + 0.5 * k / (n - 1))


def gradflow_figure(curves, out, title=None):
    """curves: list of dicts with 'label', 'norms' ((T+1,) by lag) and optionally 'color',
    'linestyle', 'linewidth'. Draws every curve against the lag on a log scale -> ``out``."""
    fig, ax = plt.subplots(figsize=GRADFLOW_SIZE, layout="constrained")
    drawn = 0
    for c in curves:
        n = np.asarray(c["norms"], dtype=np.float64)
        y = np.where(n > 0, n, np.nan)  # a zero has no place on a log scale
        if np.isfinite(y).any():
            drawn += 1
        ax.plot(np.arange(n.size), y, label=c["label"], color=c.get("color"),
                linestyle=c.get("linestyle", "-"), linewidth=c.get("linewidth", 1.6))
    if drawn:
        ax.set_yscale("log")
    ax.set_xlabel("lag T − t (steps back from the loss)")
    ax.set_ylabel(r"$\|\partial L_T / \partial h_t\|$  (dashed: $\|\partial L_T / \partial c_t\|$)")
    ax.set_title(title or "Gradient flow through time")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)


def lag_table(curves, lags):
    """The norms at chosen lags as a text table: one row per lag, one column per curve."""
    widths = [max(11, len(c["label"])) + 2 for c in curves]
    lines = ["lag".rjust(5) + "".join(c["label"].rjust(w) for c, w in zip(curves, widths))]
    for k in lags:
        cells = []
        for c, w in zip(curves, widths):
            n = c["norms"]
            cells.append((f"{n[k]:.3e}" if k < len(n) else "-").rjust(w))
        lines.append(str(k).rjust(5) + "".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- training curves
def read_metrics(run_dir):
    """RUN_DIR/metrics.jsonl -> list of records. A last line cut short (a kill while writing)
    is ignored; any other bad line is an error naming the file and line."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isdir(run_dir):
        raise DataError(f"{run_dir} is not a directory (expected a run directory)")
    if not os.path.isfile(path):
        raise DataError(f"{run_dir} has no metrics.jsonl; is it a run directory?")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}); is it a metrics log?") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "step" not in rec or "loss" not in rec:
                raise ValueError("no step or loss")
        except ValueError:
            if i == len(lines):
                break
            raise DataError(f"{path}, line {i}: not a metrics record") from None
        records.append(rec)
    return records


def smooth(values, beta=None):
    """Bias-corrected exponential moving average. The default beta follows the length: a window
    of 1/20 of the points, between 1 and 50 (beta 0.98, as the progress bar shows it, for long
    runs), so that a short run's curve does not lag behind its points."""
    if beta is None:
        beta = 1.0 - 1.0 / min(50.0, max(1.0, len(values) / 20))
    out, ema = np.empty(len(values)), 0.0
    for k, v in enumerate(values):
        ema = beta * ema + (1 - beta) * v
        out[k] = ema / (1 - beta ** (k + 1))
    return out


def _run_names(run_dirs):
    names = [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
    if len(set(names)) < len(names):  # the same name in different places: show more of the path
        names = [os.path.normpath(d) for d in run_dirs]
    return names


def _series(records, key):
    pts = [(r["step"], r.get("time", math.nan), r[key]) for r in records
           if r.get(key) is not None and isinstance(r[key], (int, float))]
    if not pts:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    a = np.array(pts, dtype=np.float64)
    return a[:, 0], a[:, 1], a[:, 2]


def plot_runs(run_dirs, out, size=RUNS_SIZE, panels=("step", "time", "lr", "grad_norm"), title=None):
    """Training loss (raw and smoothed) and validation loss against steps and wall time, the
    learning rate, and the gradient norm before clipping, for one or more run directories."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [(name, read_metrics(d)) for name, d in zip(_run_names(run_dirs), run_dirs)]
    empty = [name for name, recs in runs if not recs]
    if empty:
        raise DataError(f"run {empty[0]} has no metrics yet (metrics.jsonl is empty)")
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    W, H = size  # fixed margins in inches (a layout engine would double the drawing time)
    fig.subplots_adjust(left=0.8 / W, right=1 - 0.2 / W, bottom=0.6 / H, top=1 - (0.75 if title else 0.4) / H,
                        wspace=0.22, hspace=0.35)
    axes = axes.ravel()
    max_time = max(float(np.nanmax(_series(r, "loss")[1])) for _, r in runs)
    minutes = max_time > 120
    for k, (name, recs) in enumerate(runs):
        colour = f"C{k % 10}"
        steps, times, loss = _series(recs, "loss")
        vsteps, vtimes, vloss = _series(recs, "val_loss")
        t, vt = (times / 60, vtimes / 60) if minutes else (times, vtimes)
        for ax, panel in zip(axes, panels):
            if panel in ("step", "time"):
                xs, vxs = (steps, vsteps) if panel == "step" else (t, vt)
                ax.plot(xs, loss, color=colour, alpha=0.25, linewidth=0.8)
                ax.plot(xs, smooth(loss), color=colour, linewidth=1.8, label=name)
                if vloss.size:
                    ax.plot(vxs, vloss, color=colour, linestyle="--", marker="o", markersize=3)
            elif panel == "lr":
                s, _, lr = _series(recs, "lr")
                ax.plot(s, lr, color=colour, label=name)
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            elif panel == "grad_norm":
                s, _, g = _series(recs, "grad_norm")
                ax.plot(s, g, color=colour, alpha=0.25, linewidth=0.8)
                ax.plot(s, smooth(g), color=colour, linewidth=1.6, label=name)
    labels = {
        "step": ("step", "loss (nats/char)", "Loss against steps"),
        "time": (f"training time ({'min' if minutes else 's'})", "loss (nats/char)", "Loss against wall time"),
        "lr": ("step", "learning rate", "Learning rate"),
        "grad_norm": ("step", "global norm", "Gradient norm before clipping"),
    }
    for ax, panel in zip(axes, panels):
        xl, yl, tl = labels[panel]
        ax.set(xlabel=xl, ylabel=yl, title=tl)
        ax.grid(True, alpha=0.3)
        if panel == "grad_norm" and all(np.all(_series(r, "grad_norm")[2] > 0) for _, r in runs):
            ax.set_yscale("log")
    for ax in axes[len(panels):]:
        ax.axis("off")
    axes[0].legend(fontsize=8, title="run" if len(runs) > 1 else None, loc="upper right")
    key = [Line2D([], [], color="0.3", alpha=0.35, linewidth=0.8, label="train (raw)"),
           Line2D([], [], color="0.3", linewidth=1.8, label="train (smoothed)"),
           Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=3, label="validation")]
    axes[1 if len(panels) > 1 else 0].legend(handles=key, fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def write_loss_plot(run_dir):
    """RUN_DIR/loss.png: the loss against steps and wall time, the run's own picture (None and
    nothing written while the run has no metrics)."""
    if not read_metrics(run_dir):
        return None
    return plot_runs([run_dir], os.path.join(run_dir, "loss.png"), size=LOSS_SIZE,
                     panels=("step", "time"))


# ----------------------------------------------------------------------------- gates
def show_char(ch):
    """A visible stand-in for characters that print as nothing."""
    return {"\n": "↵", " ": "␣", "\t": "→", "\r": "←"}.get(ch, ch if ch.isprintable() else "·")


def gate_limits(name, values):
    """Colour limits of an activation: (lo, hi) for bounded ones, +-max|x| for the LSTM cell."""
    from .inspect import GATE_RANGES

    r = GATE_RANGES.get(name)
    if r is not None:
        return r
    m = float(np.abs(values).max()) if np.size(values) else 1.0
    return (-m, m) if m > 0 else (-1.0, 1.0)


# heatmap layout, in inches: a fixed frame around one band of rows per activation
_ROW, _GAP, _TOP, _LEFT, _RIGHT = 0.22, 0.35, 0.4, 0.6, 0.8  # the bottom keeps 0.85 in


def heatmap_figsize(n_chars, rows_per_gate):
    """Inches of the heatmap: 0.14 in per character (6 to 40 in wide), 0.22 in per row."""
    width = min(40.0, max(6.0, 0.14 * n_chars + 2.5))
    height = 0.9 + sum(_ROW * r + _GAP for r in rows_per_gate)
    return width, round(height, 2)


def gates_heatmap(text, acts, units, out, title=None):
    """One heatmap per activation (rows: the chosen units, columns: the characters of ``text``),
    the characters along the x axis, a colour bar each. acts: name -> (T, H) from
    ``inspect.gate_activations``. Laid out by hand (no layout engine: it is slow with a tick
    per character)."""
    names = list(acts)
    T, U = len(text), len(units)
    W, Hh = heatmap_figsize(T, [U] * len(names))
    fig = plt.figure(figsize=(W, Hh))
    top = Hh - _TOP
    axes = []
    for name in names:
        h = _ROW * U
        rect = [_LEFT / W, (top - h) / Hh, (W - _LEFT - _RIGHT) / W, h / Hh]
        ax = fig.add_axes(rect)
        cax = fig.add_axes([(W - _RIGHT + 0.08) / W, rect[1], 0.1 / W, rect[3]])
        vals = np.asarray(acts[name])[:T, units].T  # (U, T)
        lo, hi = gate_limits(name, vals)
        im = ax.imshow(vals, aspect="auto", cmap="RdBu_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_yticks(range(U), [f"{name} {u}" for u in units], fontsize=7)
        ax.set_xticks([])
        cb = fig.colorbar(im, cax=cax)
        cb.set_ticks([lo, (lo + hi) / 2, hi], labels=[f"{t:.3g}" for t in (lo, (lo + hi) / 2, hi)])
        cb.ax.tick_params(labelsize=6)
        axes.append(ax)
        top -= h + _GAP
    ax = axes[-1]
    ax.set_xticks(range(T), [show_char(c).replace("$", r"\$") for c in text], fontsize=7,
                  fontfamily="DejaVu Sans Mono")
    ax.tick_params(axis="x", length=0)
    fig.text(0.5, 1 - 0.22 / Hh, title or "Gate activations", ha="center", va="center", fontsize=10)
    return _save(fig, out)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }}
h1 {{ font-size: 18px; margin: 0 0 8px; }}
#controls {{ display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin-bottom: 10px; font-size: 14px; }}
#controls button {{ font: inherit; padding: 1px 6px; }}
#controls button.on {{ font-weight: bold; border: 2px solid #222; }}
#text {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 20px; line-height: 1.5;
        white-space: pre-wrap; word-break: break-all; border: 1px solid #ccc; padding: 8px; }}
#text span.ch.nl {{ opacity: 0.75; }}
#key {{ display: inline-block; width: 160px; height: 14px; vertical-align: middle;
       background: linear-gradient(to right, rgb(31,119,180), #fff, rgb(214,39,40)); border: 1px solid #999; }}
#info {{ font-family: monospace; min-width: 16em; }}
</style></head>
<body>
<h1>{title}</h1>
<div id="controls">
  <label>activation <select id="gate"></select></label>
  <label>unit <input type="range" id="unit" min="0" value="0"> <input type="number" id="unitnum" min="0" value="0" style="width:5em"></label>
  <span id="picks"></span>
  <span><span id="lo"></span> <span id="key"></span> <span id="hi"></span></span>
  <span id="info"></span>
</div>
<div id="text"></div>
<script id="data" type="application/json">{data}</script>
<script>
(function () {{
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var gateSel = document.getElementById("gate"), unit = document.getElementById("unit"),
      unitNum = document.getElementById("unitnum"), textEl = document.getElementById("text"),
      info = document.getElementById("info"), picks = document.getElementById("picks");
  var spans = [], shown = {{"\\n": "\\u21b5", "\\t": "\\u2192", "\\r": "\\u2190"}};
  D.chars.forEach(function (ch, t) {{
    var s = document.createElement("span");
    s.className = "ch" + (ch === "\\n" ? " nl" : "");
    s.textContent = shown[ch] || ch;
    s.dataset.t = t;
    textEl.appendChild(s);
    spans.push(s);
    if (ch === "\\n") textEl.appendChild(document.createTextNode("\\n"));
  }});
  D.gates.forEach(function (g) {{
    var o = document.createElement("option"); o.value = g; o.textContent = D.labels[g]; gateSel.appendChild(o);
  }});
  unit.max = unitNum.max = D.hidden - 1;
  D.units.forEach(function (u) {{
    var b = document.createElement("button"); b.textContent = u; b.dataset.u = u;
    b.onclick = function () {{ setUnit(u); }}; picks.appendChild(b);
  }});
  function colour(x) {{
    var a = Math.min(1, Math.abs(x)).toFixed(3);
    return x >= 0 ? "rgba(214,39,40," + a + ")" : "rgba(31,119,180," + a + ")";
  }}
  function limits(g, vals) {{
    if (D.ranges[g]) return D.ranges[g];
    var m = 0; vals.forEach(function (v) {{ m = Math.max(m, Math.abs(v)); }});
    return m > 0 ? [-m, m] : [-1, 1];
  }}
  function paint() {{
    var g = gateSel.value, u = Math.max(0, Math.min(D.hidden - 1, parseInt(unit.value, 10) || 0));
    var vals = D.values[g][u], lim = limits(g, vals);
    unitNum.value = u;
    spans.forEach(function (s, t) {{
      var v = vals[t], x = (2 * v - lim[0] - lim[1]) / (lim[1] - lim[0]);
      s.style.backgroundColor = colour(x);
      s.style.color = Math.abs(x) > 0.65 ? "#fff" : "#000";
      s.title = g + "[" + u + "] = " + v;
      s.dataset.v = v;
    }});
    document.getElementById("lo").textContent = (+lim[0].toFixed(3));
    document.getElementById("hi").textContent = (+lim[1].toFixed(3));
    Array.prototype.forEach.call(picks.children, function (b) {{ b.className = +b.dataset.u === u ? "on" : ""; }});
    try {{ history.replaceState(null, "", "#gate=" + g + "&unit=" + u); }} catch (e) {{}}
  }}
  function setUnit(u) {{ unit.value = u; paint(); }}
  unit.oninput = paint;
  unitNum.onchange = function () {{ setUnit(unitNum.value); }};
  gateSel.onchange = paint;
  textEl.onmouseover = function (e) {{
    var t = e.target.dataset && e.target.dataset.t;
    if (t !== undefined) info.textContent = "t=" + t + " " + JSON.stringify(D.chars[t]) + " " + e.target.title;
  }};
  var q = {{}};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {{
    var p = kv.split("="); if (p.length === 2) q[p[0]] = decodeURIComponent(p[1]);
  }});
  gateSel.value = D.gates.indexOf(q.gate) >= 0 ? q.gate : D.gates[0];
  unit.value = q.unit !== undefined ? q.unit : D.units[0];
  paint();
  document.body.dataset.ready = "1";
}})();
</script>
</body></html>
"""


def _json_for_script(obj):
    """JSON that is safe inside a <script> element (no '<', '>' or '&' left as they are)."""
    s = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


GATE_LABELS = {"i": "i  input gate", "f": "f  forget gate", "o": "o  output gate", "g": "g  candidate",
               "c": "c  cell state", "h": "h  hidden state", "r": "r  reset gate", "z": "z  update gate",
               "n": "n  candidate"}


def gates_html(text, acts, units=None, title="Activations", decimals=3):
    """A self-contained HTML page (inline CSS and JS, no external resources) that colours
    ``text`` by the activation of one unit -- red positive, blue negative, white the middle of
    the range (0.5 for gates) -- with a selector for the activation and a slider for the unit.
    acts: name -> (T, H). The page's address may choose the view: ``page.html#gate=f&unit=3``."""
    from .inspect import GATE_RANGES

    names = list(acts)
    if not names:
        raise ValueError("no activations to show")
    T, H = np.asarray(acts[names[0]]).shape
    if len(text) != T:
        raise ValueError(f"the text has {len(text)} characters but the activations {T} steps")
    units = list(range(min(H, 8))) if units is None else [int(u) for u in units]
    values = {}
    for n in names:
        a = np.asarray(acts[n], dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"activation {n} has NaN or Inf values")
        values[n] = np.round(a.T, decimals).tolist()  # (H, T)
    data = {"chars": list(text), "gates": names, "hidden": int(H), "units": units,
            "labels": {n: GATE_LABELS.get(n, n) for n in names},
            "ranges": {n: GATE_RANGES.get(n) for n in names}, "values": values}
    return _HTML.format(title=html.escape(title), data=_json_for_script(data))


def write_text(path, text):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
