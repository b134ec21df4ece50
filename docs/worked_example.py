"""The numbers in docs/derivations.md that come from code, and the code they come from.

    python docs/worked_example.py          # rewrite the generated blocks of docs/derivations.md
    python docs/worked_example.py --check  # exit 1 if the doc differs from what this prints

Three blocks, each between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``:

- ``lstm-example``: an LSTM with H = 1, T = 2, B = 1, D = 1, every intermediate value of the
  forward and the backward pass, computed here line by line from the equations of section 4;
- ``shapes``: every array the sequence functions cache and every gradient, with its shape, read
  from real calls of ``bptt.cells.*.forward/backward``;
- ``saturation``: W = 1.5 [[1, 1], [-1, -1]] has spectral radius 0, yet with one tanh unit
  saturated the gradient grows by 1.5 per step, measured with ``bptt.cells.rnn.backward``.

``tests/test_docs.py`` re-runs these functions, checks the line-by-line values against
``bptt.cells.lstm`` (forward, backward and the step functions), and checks that the doc holds
exactly the blocks printed here, so the text cannot drift from the code.
"""

import os
import re
import sys

import numpy as np

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "derivations.md")


# ----------------------------------------------------------------------------- the LSTM example
def example_inputs():
    """The worked example's weights, inputs, targets and initial state (H = 1: one unit, so every
    "matrix" is a number and each gate block of W is one entry; gate order i, f, g, o)."""
    return {
        "x": np.array([0.5, -1.0]),  # x_1, x_2 (D = 1)
        "y": np.array([0.2, -0.1]),  # targets of h_1, h_2; L = 1/2 sum_t (h_t - y_t)^2
        "h0": 0.1,
        "c0": -0.3,
        "weight_ih": np.array([0.6, -0.4, 0.8, 0.3]),  # (4H, D) = (4, 1): W_ii, W_if, W_ig, W_io
        "weight_hh": np.array([-0.5, 0.7, 0.2, -0.9]),  # (4H, H) = (4, 1)
        "bias_ih": np.array([0.1, 1.0, -0.2, 0.05]),  # forget-gate bias 1 (section 4)
        "bias_hh": np.array([0.0, 0.0, 0.0, 0.0]),
    }


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm_example():
    """Forward and backward of the example, one equation per line, in scalars. Returns
    (steps, grads): steps[t] a dict of every intermediate of math step t+1, grads the totals."""
    p = example_inputs()
    Wx, Wh, b = p["weight_ih"], p["weight_hh"], p["bias_ih"] + p["bias_hh"]
    steps, h, c = [], p["h0"], p["c0"]
    for t in range(2):  # forward
        s = {"x": p["x"][t], "h_prev": h, "c_prev": c}
        s["a"] = p["x"][t] * Wx + h * Wh + b  # a = x W_ih^T + h_prev W_hh^T + b   (4,)
        s["i"], s["f"] = sigmoid(s["a"][0]), sigmoid(s["a"][1])
        s["g"], s["o"] = np.tanh(s["a"][2]), sigmoid(s["a"][3])
        c = s["f"] * c + s["i"] * s["g"]
        s["c"], s["tc"] = c, np.tanh(c)
        h = s["o"] * s["tc"]
        s["h"] = h
        steps.append(s)
    loss = sum(0.5 * (s["h"] - yt) ** 2 for s, yt in zip(steps, p["y"]))
    grads = {"loss": loss, "weight_ih": np.zeros(4), "weight_hh": np.zeros(4), "bias": np.zeros(4)}
    dh_next, dc_next = 0.0, 0.0  # dh_T = dc_T = 0 (None)
    for t in (1, 0):  # backward
        s = steps[t]
        s["dout"] = s["h"] - p["y"][t]
        s["dh_next"], s["dc_next"] = dh_next, dc_next
        s["dh"] = s["dout"] + dh_next
        s["do"] = s["dh"] * s["tc"]
        s["dc"] = dc_next + s["dh"] * s["o"] * (1 - s["tc"] ** 2)
        s["di"], s["df"], s["dg"] = s["dc"] * s["g"], s["dc"] * s["c_prev"], s["dc"] * s["i"]
        s["da"] = np.array([s["di"] * s["i"] * (1 - s["i"]), s["df"] * s["f"] * (1 - s["f"]),
                            s["dg"] * (1 - s["g"] ** 2), s["do"] * s["o"] * (1 - s["o"])])
        s["dx"] = s["da"] @ Wx
        dh_next, dc_next = s["da"] @ Wh, s["dc"] * s["f"]
        s["dh_prev"], s["dc_prev"] = dh_next, dc_next
        grads["weight_ih"] += s["da"] * s["x"]
        grads["weight_hh"] += s["da"] * s["h_prev"]
        grads["bias"] += s["da"]
    grads["dh0"], grads["dc0"] = dh_next, dc_next
    return steps, grads


def _f(v):
    return f"{v:+.6f}"


def _vec(v):
    return "[" + ", ".join(_f(e) for e in v) + "]"


def lstm_example_markdown():
    p = example_inputs()
    steps, grads = lstm_example()
    rows = [
        ("x_t", "`x[t]`", "x"), ("h_{t-1}", "`hs[t]`", "h_prev"), ("c_{t-1}", "`cs[t]`", "c_prev"),
        ("a = x_tW_{ih}^\\top + h_{t-1}W_{hh}^\\top + b", "`a`", "a"),
        ("i = \\sigma(a_i)", "`gates[t][0]`", "i"), ("f = \\sigma(a_f)", "`gates[t][1]`", "f"),
        ("g = \\tanh(a_g)", "`gates[t][2]`", "g"), ("o = \\sigma(a_o)", "`gates[t][3]`", "o"),
        ("c_t = f c_{t-1} + i g", "`cs[t+1]`", "c"), ("\\tanh c_t", "`tcs[t]`", "tc"),
        ("h_t = o\\tanh c_t", "`hs[t+1]`", "h"),
    ]
    back = [
        ("\\texttt{dout}_t = h_t - y_t", "`dout[t]`", "dout"),
        ("\\bar h^{\\,\\text{next}}_t", "`dh_next`", "dh_next"), ("\\bar c^{\\,\\text{next}}_t", "`dc_next`", "dc_next"),
        ("\\bar h_t = \\texttt{dout}_t + \\bar h^{\\,\\text{next}}_t", "`dh`", "dh"),
        ("\\bar o = \\bar h_t \\tanh c_t", "`do`", "do"),
        ("\\bar c_t = \\bar c^{\\,\\text{next}}_t + \\bar h_t\\, o\\,(1-\\tanh^2 c_t)", "`dc`", "dc"),
        ("\\bar i = \\bar c_t\\, g", "`di`", "di"), ("\\bar f = \\bar c_t\\, c_{t-1}", "`df`", "df"),
        ("\\bar g = \\bar c_t\\, i", "`dg`", "dg"),
        ("\\bar a = [\\bar i\\,i(1-i),\\ \\bar f f(1-f),\\ \\bar g(1-g^2),\\ \\bar o\\, o(1-o)]", "`da[t]`", "da"),
        ("\\bar x_t = \\bar a\\, W_{ih}", "`dx[t]`", "dx"),
        ("\\bar h^{\\,\\text{next}}_{t-1} = \\bar a\\, W_{hh}", "`dh_prev`", "dh_prev"),
        ("\\bar c^{\\,\\text{next}}_{t-1} = \\bar c_t f", "`dc_prev`", "dc_prev"),
    ]

    def cell(v):
        return _vec(v) if np.ndim(v) else _f(v)

    out = [
        "Weights (gate order i, f, g, o; H = D = 1, so each gate's block of a weight is one number):",
        "",
        f"$W_{{ih}}$ = `{_vec(p['weight_ih'])}`, $W_{{hh}}$ = `{_vec(p['weight_hh'])}`, "
        f"$b_{{ih}}$ = `{_vec(p['bias_ih'])}`, $b_{{hh}}$ = `{_vec(p['bias_hh'])}`; "
        f"$h_0$ = `{_f(p['h0'])}`, $c_0$ = `{_f(p['c0'])}`; inputs $x$ = `{_vec(p['x'])}`, "
        f"targets $y$ = `{_vec(p['y'])}`, loss $L = \\tfrac12\\sum_t (h_t-y_t)^2$ = `{_f(grads['loss'])}`.",
        "",
        "**Forward** (math step $t$ is loop index `t-1` in the code):",
        "",
        "| quantity | code | $t=1$ | $t=2$ |",
        "|---|---|---|---|",
    ]
    for math, code, key in rows:
        out.append(f"| ${math}$ | {code} | `{cell(steps[0][key])}` | `{cell(steps[1][key])}` |")
    out += ["", "**Backward**, from $t=2$ down to $t=1$, with $\\bar h_T = \\bar c_T = 0$:", "",
            "| quantity | code | $t=2$ | $t=1$ |", "|---|---|---|---|"]
    for math, code, key in back:
        out.append(f"| ${math}$ | {code} | `{cell(steps[1][key])}` | `{cell(steps[0][key])}` |")
    out += [
        "",
        "**Sums over the steps** (tied weights add up; section 2):",
        "",
        f"- $\\bar W_{{ih}} = \\sum_t \\bar a_t^\\top x_t$ = `{_vec(grads['weight_ih'])}`",
        f"- $\\bar W_{{hh}} = \\sum_t \\bar a_t^\\top h_{{t-1}}$ = `{_vec(grads['weight_hh'])}`",
        f"- $\\bar b_{{ih}} = \\bar b_{{hh}} = \\sum_t \\bar a_t$ = `{_vec(grads['bias'])}`",
        f"- $\\bar h_0$ = `{_f(grads['dh0'])}`, $\\bar c_0$ = `{_f(grads['dc0'])}` (what `backward` returns as `dh0`, `dc0`)",
    ]
    return "\n".join(out)


# ----------------------------------------------------------------------------- shapes
SIZES = {"T": 2, "B": 5, "D": 11, "H": 7}  # all distinct, and distinct from T+1 = 3, 3H, 4H


def cached_shapes():
    """cell -> [(role, name, shape as letters)] from real calls of forward and backward."""
    from bptt.cells import gru, lstm, rnn

    T, B, D, H = (SIZES[k] for k in "TBDH")
    letters = {T: "T", B: "B", D: "D", H: "H", T + 1: "T+1", 3 * H: "3H", 4 * H: "4H"}

    def sym(shape):
        return "(" + ", ".join(letters[n] for n in shape) + ("," if len(shape) == 1 else "") + ")"

    rng = np.random.default_rng(0)
    table = {}
    for name, mod, G, names in (
        ("rnn", rnn, 1, ("x", "hs", "params", "nonlinearity")),
        ("lstm", lstm, 4, ("x", "hs", "cs", "gates", "tcs", "params")),
        ("gru", gru, 3, ("x", "hs", "gates", "ghn", "params")),
    ):
        params = {"weight_ih": rng.standard_normal((G * H, D)), "weight_hh": rng.standard_normal((G * H, H)),
                  "bias_ih": rng.standard_normal(G * H), "bias_hh": rng.standard_normal(G * H)}
        x = rng.standard_normal((T, B, D))
        s0 = (np.zeros((B, H)), np.zeros((B, H))) if name == "lstm" else np.zeros((B, H))
        out, _, cache = mod.forward(x, s0, params)
        rows = [("cache", n, sym(a.shape)) for n, a in zip(names, cache) if isinstance(a, np.ndarray)]
        rows += [("param", k, sym(v.shape)) for k, v in params.items()]
        rows.append(("in", "dout", sym(out.shape)))
        dx, ds0, dparams = mod.backward(np.ones_like(out), None, cache)
        rows.append(("out", "dx", sym(dx.shape)))
        for n, s in zip(("dh0", "dc0"), ds0 if name == "lstm" else (ds0,)):
            rows.append(("out", n, sym(s.shape)))
        rows += [("out", "d" + k, sym(v.shape)) for k, v in dparams.items()]
        table[name] = rows
    return table


def shapes_markdown():
    meaning = {
        "x": "the layer input", "hs": "`hs[0]` = $h_0$, `hs[t+1]` = $h_{t+1}$: every state, the initial one first",
        "cs": "the cell states, `cs[0]` = $c_0$", "gates": "activated gates of every step (LSTM i, f, g, o; GRU r, z, n)",
        "tcs": "$\\tanh$ of `cs[1:]`", "ghn": "$h_{t-1}W_{hn}^\\top + b_{hn}$, the recurrent part the reset gate scales",
        "weight_ih": "", "weight_hh": "", "bias_ih": "", "bias_hh": "",
        "dout": "gradient on every output (from the head and loss)", "dx": "gradient on the input",
        "dh0": "gradient on the initial state", "dc0": "gradient on the initial cell state",
        "dweight_ih": "$\\sum_t$ of outer products: one matrix product after the loop",
        "dweight_hh": "", "dbias_ih": "", "dbias_hh": "GRU: differs from `dbias_ih` in the n block",
    }
    table = cached_shapes()
    order = ["x", "hs", "cs", "gates", "tcs", "ghn", "weight_ih", "weight_hh", "bias_ih", "bias_hh",
             "dout", "dx", "dh0", "dc0", "dweight_ih", "dweight_hh", "dbias_ih", "dbias_hh"]
    names = sorted({(role, n) for rows in table.values() for role, n, _ in rows}, key=lambda rn: order.index(rn[1]))
    out = ["| role | array | RNN | LSTM | GRU | what |", "|---|---|---|---|---|---|"]
    for role, n in names:
        cells = []
        for cell in ("rnn", "lstm", "gru"):
            shape = next((s for r, m, s in table[cell] if (r, m) == (role, n)), "—")
            cells.append(shape)
        out.append(f"| {role} | `{n}` | {' | '.join(cells)} | {meaning.get(n, '')} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- saturation
SAT_W = 1.5 * np.array([[1.0, 1.0], [-1.0, -1.0]])
SAT_STEPS = 20


def saturation_counterexample():
    """The numbers of the caveat in section 3 (row vectors, one step back is v -> v D W)."""
    from bptt.cells import rnn

    W, n = SAT_W, SAT_STEPS
    square = float(np.abs(W @ W).max())  # W^2 = 0: every eigenvalue is 0, rho(W) = 0
    sigma = float(np.linalg.norm(W, 2))
    D = np.diag([0.0, 1.0])  # unit 0 saturated (tanh' = 0), unit 1 linear (tanh' = 1)
    linear = float(np.linalg.norm(np.linalg.matrix_power(W, n), 2))
    saturated = float(np.linalg.norm(np.linalg.matrix_power(D @ W, n), 2))
    # the same through the code: a tanh RNN whose unit 0 sits at +1 and unit 1 at exactly 0
    params = {"weight_ih": np.zeros((2, 1)), "weight_hh": W, "bias_ih": np.array([30.0, 1.5]),
              "bias_hh": np.zeros(2)}
    x = np.zeros((n, 1, 1))
    hs_out, _, cache = rnn.forward(x, np.array([[1.0, 0.0]]), params)
    _, dh0, _ = rnn.backward(np.zeros((n, 1, 2)), np.array([[0.0, 1.0]]), cache)
    return {"square": square, "sigma_max": sigma, "linear": linear, "saturated": saturated,
            "rnn_dh0_norm": float(np.linalg.norm(dh0)), "rnn_states": hs_out[:, 0, :],
            "bound": sigma ** n}


def saturation_markdown():
    r = saturation_counterexample()
    return "\n".join([
        f"| $W_{{hh}} = 1.5\\begin{{bmatrix}}1&1\\\\-1&-1\\end{{bmatrix}}$ | value |",
        "|---|---|",
        f"| largest entry of $W_{{hh}}^2$ (so every eigenvalue is 0: spectral radius $\\rho(W_{{hh}}) = 0$) | `{r['square']:.3g}` |",
        f"| largest singular value $\\sigma_{{\\max}}(W_{{hh}})$ | `{r['sigma_max']:.6g}` |",
        f"| linear regime, $\\lVert W_{{hh}}^{{{SAT_STEPS}}}\\rVert_2$ | `{r['linear']:.3g}` |",
        f"| unit 1 saturated, $D = \\operatorname{{diag}}(0, 1)$: $\\lVert (DW_{{hh}})^{{{SAT_STEPS}}}\\rVert_2 = 1.5^{{{SAT_STEPS}}}\\sqrt2$ | `{r['saturated']:.4g}` |",
        f"| the same through `rnn.backward` (tanh, unit 1 held at $+1$, unit 2 at $0$), $\\lVert\\bar h_0\\rVert$ for $\\bar h_{{{SAT_STEPS}}} = (0, 1)$ | `{r['rnn_dh0_norm']:.4g}` |",
        f"| the bound $\\sigma_{{\\max}}^{{{SAT_STEPS}}}$ | `{r['bound']:.4g}` |",
    ])


# ----------------------------------------------------------------------------- the doc
BLOCKS = {"lstm-example": lstm_example_markdown, "shapes": shapes_markdown, "saturation": saturation_markdown}


def render(text):
    """The doc text with every generated block replaced by what this script prints."""
    for name, fn in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"docs/derivations.md has no block '{name}'")
        body = fn()
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv):
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print("docs/derivations.md differs from docs/worked_example.py: run it to regenerate", file=sys.stderr)
            return 1
        return 0
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
