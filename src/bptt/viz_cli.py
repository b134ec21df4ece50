"""The commands that look inside a network, added to ``bptt`` by ``add_commands``:

    bptt gradflow  [--cells rnn,lstm,gru] [--scale 1,4] [--checkpoint RUN]   gradient norm against lag
    bptt plot      RUN_DIR [RUN_DIR ...]                                     training curves
    bptt gates     RUN_DIR [--text ...] [--units 0,5,7]                      gate heatmap + HTML page
    bptt gradcheck [--cell lstm] [--layers 2] [--bidirectional]              finite differences

Numbers come from ``bptt.inspect``, pictures from ``bptt.plots`` (imported only when a command
runs, so ``bptt train`` never loads matplotlib for these).
"""

import argparse
import os
import sys

from .argtypes import nonneg_float as _nonneg_float
from .argtypes import positive_int as _positive_int

GRADFLOW_LAGS = (0, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" only for options that have a default worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False) or isinstance(action.default, list):
            return action.help
        return super()._get_help_string(action)


def add_commands(sub):
    _add_gradflow(sub)
    _add_plot(sub)
    _add_gates(sub)
    _add_gradcheck(sub)


def _float_list(text):
    vals = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected numbers like 1,3.5, got {text!r}") from None
        if not 0 <= v < float("inf"):
            raise argparse.ArgumentTypeError(f"expected finite numbers >= 0, got {part}")
        vals.append(v)
    return vals


def _cell_list(text):
    from .inspect import CELL_KINDS

    if text.strip() == "none":
        return []
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELL_KINDS]
    if bad or not cells:
        raise argparse.ArgumentTypeError(f"cells must be among {','.join(CELL_KINDS)}, got {text!r}")
    return cells


# ----------------------------------------------------------------------------- gradflow
def _add_gradflow(sub):
    p = sub.add_parser(
        "gradflow", help="gradient norm against the lag, per cell, as a picture and a table",
        description="How far back a gradient reaches: the norm of dL_T/dh_t (and dL_T/dc_t for "
        "the LSTM) against the lag T - t, where L_T = v . h_T is a loss on the last step only. "
        "For freshly initialised layers of each cell (inputs x ~ N(0, 1)), and for a trained "
        "checkpoint when --checkpoint is given.",
        formatter_class=_Help)
    a = p.add_argument
    a("--cells", type=_cell_list, default=["rnn", "lstm", "gru"], metavar="LIST",
      help="cells at initialisation, comma-separated among rnn,rnn_relu,lstm,gru, or 'none' "
      "(default: rnn,lstm,gru)")
    a("--seq-len", type=_positive_int, default=100, help="time steps T")
    a("--hidden", type=_positive_int, default=64, help="hidden units of the initialised layers")
    a("--scale", type=_float_list, default=[1.0], metavar="S[,S...]",
      help="multiply the recurrent weights W_hh at initialisation by S (several: one curve each); "
      "about 3-4 makes a plain RNN's gradient explode (default: 1)")
    a("--batch", type=_positive_int, default=1, help="sequences averaged over")
    a("--checkpoint", metavar="RUN", help="also show a trained run (run or checkpoint directory)")
    a("--layer", type=int, default=0, help="layer of the checkpoint's model to look inside")
    a("--text", help="input for the checkpoint (default: a piece of its training text, else a sample of its own)")
    a("--out", default="gradflow.png", metavar="FILE.png", help="picture to write")
    a("--seed", type=int, default=0, help="random seed for weights, inputs and the vector v")
    p.set_defaults(func=cmd_gradflow)


def _checkpoint_ids(model, vocab, meta, T, text, seed):
    """The token ids (T,) the checkpoint is driven with, and where they came from."""
    import numpy as np

    if text is not None:
        if not text:
            raise ValueError("--text is empty")
        return vocab.encode(text), "the given text"
    data_path = meta.get("train", {}).get("data")
    if data_path and os.path.isfile(data_path):
        from .data import load_text

        try:
            body = load_text(data_path)
            ids = vocab.encode(body)
        except ValueError:
            ids = None
        if ids is not None and len(ids) > T:
            start = int(np.random.default_rng(seed).integers(0, len(ids) - T))
            return ids[start:start + T], f"{T} characters of {data_path}"
    from .sample import sample

    prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
    sampled = sample(model, vocab, T - 1, temperature=1.0, prime=prime, seed=seed)
    return vocab.encode(sampled), "a sample of the model's own"


def cmd_gradflow(args):
    from . import inspect, plots

    curves = []
    many = len(args.scale) > 1
    for s in args.scale:
        for kind in args.cells:
            norms = inspect.init_gradient_norms(kind, args.hidden, args.seq_len, s, args.seed, args.batch)
            tag = f" ×{s:g}" if many or s != 1 else ""
            colour = plots.cell_colour(kind, args.scale.index(s), len(args.scale))
            for state, n in norms.items():
                curves.append({"label": f"{kind} {state}{tag}", "norms": n, "color": colour,
                               "linestyle": "--" if state == "c" else "-"})
    source = ""
    if args.checkpoint:
        from .sample import load_model

        model, vocab, meta = load_model(args.checkpoint)
        ids, source = _checkpoint_ids(model, vocab, meta, args.seq_len, args.text, args.seed)
        norms = inspect.model_gradient_norms(model, ids, args.layer, args.seed)
        name = os.path.basename(os.path.normpath(args.checkpoint))
        for state, n in norms.items():
            curves.append({"label": f"{name}: {model.config.cell} {state} (trained)",
                           "norms": n, "color": "k", "linestyle": "--" if state == "c" else "-",
                           "linewidth": 2.2})
    if not curves:
        raise ValueError("nothing to show: give --cells or --checkpoint")
    T = max(len(c["norms"]) for c in curves) - 1
    title = f"Gradient flow through time (initialised layers H={args.hidden}; T={args.seq_len}; L_T = v·h_T)"
    plots.gradflow_figure(curves, args.out, title)
    print("‖∂L_T/∂h_t‖ (and ‖∂L_T/∂c_t‖ for LSTM) against the lag T − t"
          + (f"; {args.checkpoint} layer {args.layer} on {source}" if source else ""))
    print(plots.lag_table(curves, [k for k in GRADFLOW_LAGS if k <= T]))
    print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- plot
def _add_plot(sub):
    p = sub.add_parser(
        "plot", help="training curves of one or more runs in one figure",
        description="Training loss (raw and smoothed) and validation loss against steps and "
        "against wall time, the learning rate, and the gradient norm before clipping, read from "
        "each run's metrics.jsonl; one colour per run.",
        formatter_class=_Help)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="training.png", metavar="FILE.png", help="picture to write")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args):
    from . import plots

    plots.plot_runs(args.runs, args.out)
    print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- gates
def _add_gates(sub):
    p = sub.add_parser(
        "gates", help="gate activations over a text: heatmap PNG and an HTML page",
        description="Run a trained model over a text and show the gates (LSTM i, f, o, also g, "
        "c, h; GRU r, z, also n, h; plain RNN the hidden units) of one layer: OUT_DIR/gates.png, a "
        "heatmap of the chosen units with the characters along the x axis, and OUT_DIR/gates.html, "
        "a self-contained page colouring the text by any unit (red positive, blue negative).",
        formatter_class=_Help)
    a = p.add_argument
    a("run", metavar="RUN_DIR")
    a("--text", help="text to run the model over (default: a 200-character sample of the model's own)")
    a("--units", default="0-7", help="hidden units in the heatmap, e.g. 0,5,7 or 0-7")
    a("--layer", type=int, default=0, help="recurrent layer, 0 = nearest the input")
    a("--max-chars", type=_positive_int, default=160, help="characters shown in the heatmap (the page shows all)")
    a("--out-dir", default=".", metavar="DIR", help="where gates.png and gates.html go")
    a("--seed", type=int, default=0, help="seed of the default sample")
    p.set_defaults(func=cmd_gates)


def cmd_gates(args):
    from . import inspect, plots
    from .sample import load_model, sample

    model, vocab, _ = load_model(args.run)
    text = args.text
    if text is None:
        text = sample(model, vocab, 200, temperature=0.8, prime=None, seed=args.seed).lstrip("\n") or "\n"
    if not text:
        raise ValueError("--text is empty")
    ids = vocab.encode(text)
    units = inspect.parse_units(args.units, model.config.hidden_size)
    acts = inspect.gate_activations(model, ids, args.layer)
    name = os.path.basename(os.path.normpath(args.run))
    cell = model.config.cell.upper()
    png = os.path.join(args.out_dir, "gates.png")
    page = os.path.join(args.out_dir, "gates.html")
    shown = text[: args.max_chars]
    plots.gates_heatmap(shown, {n: a[: len(shown)] for n, a in acts.items()}, units, png,
                        title=f"{name}: {cell} layer {args.layer}, units {args.units}")
    plots.write_text(page, plots.gates_html(text, acts, units, title=f"{name}: {cell} layer {args.layer}"))
    print(f"{cell} layer {args.layer}, {len(text)} characters, activations {', '.join(acts)}")
    print(f"wrote {png}" + (f" (first {len(shown)} characters)" if len(shown) < len(text) else ""))
    print(f"wrote {page}")
    return 0


# ----------------------------------------------------------------------------- gradcheck
def _add_gradcheck(sub):
    p = sub.add_parser(
        "gradcheck", help="check a layer's gradients by finite differences",
        description="Build a small float64 layer with random nonzero biases, random initial "
        "states and a random gradient on every output and the final state, and compare the "
        "hand-written BPTT gradients of every parameter, the input and the initial states with "
        "centered finite differences. Exit status 0 when every relative error is below 1e-6.",
        formatter_class=_Help)
    a = p.add_argument
    a("--cell", choices=["lstm", "gru", "rnn", "rnn_relu"], default="lstm", help="cell")
    a("--layers", type=_positive_int, default=2, help="stacked layers")
    a("--bidirectional", action="store_true", help="both directions")
    a("--seq-len", type=_positive_int, default=5, help="time steps")
    a("--batch", type=_positive_int, default=3, help="sequences")
    a("--input", type=_positive_int, default=4, help="input features")
    a("--hidden", type=_positive_int, default=5, help="hidden units")
    a("--eps", type=_nonneg_float, default=1e-5, help="finite-difference step")
    a("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=cmd_gradcheck)


def build_gradcheck(cell, layers, bidirectional, T, B, D, H, seed=0):
    """The layer, its loss function and the arrays to check, all float64.
    L = sum(out * R) + sum(state_T * S) with R, S random: a gradient on every output and state."""
    import numpy as np

    from .recurrent import GRU, LSTM, RNN

    rng = np.random.default_rng(seed)
    kw = dict(num_layers=layers, bidirectional=bidirectional, dtype="float64", seed=seed)
    if cell in ("rnn", "rnn_relu"):
        layer = RNN(D, H, nonlinearity="relu" if cell == "rnn_relu" else "tanh", **kw)
    else:
        layer = {"lstm": LSTM, "gru": GRU}[cell](D, H, **kw)
    for name, p in layer.params.items():
        if name.startswith("bias"):
            p[...] = rng.uniform(0.1, 0.5, p.shape) * rng.choice([-1.0, 1.0], p.shape)  # nonzero
    n_states = 2 if cell == "lstm" else 1
    shape = (layers * layer.num_directions, B, H)
    states0 = [rng.standard_normal(shape) * 0.5 for _ in range(n_states)]
    x = rng.standard_normal((T, B, D))
    R = rng.standard_normal((T, B, layer.num_directions * H))
    S = [rng.standard_normal(shape) for _ in range(n_states)]
    pack = (lambda s: tuple(s)) if n_states == 2 else (lambda s: s[0])

    def fn():
        out, sT = layer.forward(x, pack(states0))
        sT = list(sT) if n_states == 2 else [sT]
        loss = float((out * R).sum() + sum((s * w).sum() for s, w in zip(sT, S)))
        layer.zero_grad()
        dx, ds0 = layer.backward(R, pack(S))
        ds0 = list(ds0) if n_states == 2 else [ds0]
        grads = {"x": dx, **{k: v.copy() for k, v in layer.grads.items()}}
        grads.update(zip(("h0", "c0"), ds0))
        return loss, grads

    wrt = {"x": x, **layer.params, **dict(zip(("h0", "c0"), states0))}
    return layer, fn, wrt


def cmd_gradcheck(args):
    from .gradcheck import gradcheck

    if args.eps <= 0:
        raise ValueError(f"--eps must be > 0, got {args.eps}")
    layer, fn, wrt = build_gradcheck(args.cell, args.layers, args.bidirectional, args.seq_len,
                                     args.batch, args.input, args.hidden, args.seed)
    result = gradcheck(fn, wrt, eps=args.eps)
    print(f"{layer!r}\nT={args.seq_len} B={args.batch}, float64, centered differences eps={args.eps:g}\n")
    print(result.table())
    ok = result.passed(1e-6)
    print(f"\nmax relative error {result.max_rel_error:.2e}: " + ("passed (< 1e-6)" if ok else "FAILED (>= 1e-6)"))
    sys.stdout.flush()
    return 0 if ok else 1
