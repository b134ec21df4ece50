"""Draw the two figures of docs/derivations.md with matplotlib:

    python docs/make_figures.py    # writes docs/images/unrolled.png and docs/images/lstm-cell.png

- unrolled.png: a recurrent cell unrolled over T = 4 steps with tied weights, the forward pass
  and the two paths a gradient takes back (from each step's output, and from the step after);
- lstm-cell.png: one LSTM step, gate order i, f, g, o, with the additive cell path.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "images")

FWD = "#222222"
OUT_PATH = "#e07b00"  # gradient from the output at the same step
REC_PATH = "#c0143c"  # gradient from the step after
CELL_PATH = "#1a7f37"  # LSTM additive cell path


def _box(ax, x, y, w, h, text, fc="#eef3fb", ec="#345", fs=13, **kw):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=fc, ec=ec, lw=1.4, **kw))
    ax.text(x, y, text, ha="center", va="center", fontsize=fs)


def _arrow(ax, p, q, color=FWD, lw=1.6, rad=0.0, style="-|>", ls="-", ms=14):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=ms, color=color, lw=lw,
                                 linestyle=ls, connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))


def unrolled(path):
    T = 4
    fig, ax = plt.subplots(figsize=(12, 6.2), dpi=110)
    ax.set_xlim(-0.6, 2.6 * T + 1.2)
    ax.set_ylim(-0.6, 6.4)
    ax.axis("off")
    xs = [1.6 + 2.6 * k for k in range(T)]
    y_x, y_cell, y_L = 0.5, 2.6, 5.0
    _box(ax, -0.0, y_cell, 0.9, 0.7, "$h_0$", fc="#ffffff")
    for k, x in enumerate(xs, start=1):
        _box(ax, x, y_x, 1.0, 0.6, f"$x_{k}$", fc="#ffffff")
        _box(ax, x, y_cell, 1.3, 1.1, "$F(\\cdot;\\,\\theta)$", fs=14)
        _box(ax, x, y_L, 1.2, 0.6, f"loss $L_{k}$", fc="#fff7e6", ec="#a65f00", fs=12)
        _arrow(ax, (x, y_x + 0.3), (x, y_cell - 0.55))
        _arrow(ax, (x - 0.25, y_cell + 0.55), (x - 0.25, y_L - 0.3))  # forward: h_t to the head
        ax.text(x - 0.35, 3.8, f"$h_{k}$", ha="right", va="center", fontsize=13)
        # gradient from the output of the same step
        _arrow(ax, (x + 0.25, y_L - 0.3), (x + 0.25, y_cell + 0.55), color=OUT_PATH, lw=2.4)
        ax.text(x + 0.35, 3.8, f"dout[{k - 1}]", ha="left", va="center", fontsize=10.5, color=OUT_PATH)
        x_prev = xs[k - 2] + 0.65 if k > 1 else 0.45
        _arrow(ax, (x_prev, y_cell + 0.15), (x - 0.65, y_cell + 0.15))  # forward h_{k-1} -> step k
        if k > 1:
            _arrow(ax, (x - 0.65, y_cell - 0.2), (x_prev, y_cell - 0.2), color=REC_PATH, lw=2.4)
            ax.text((x + x_prev) / 2, y_cell - 0.5, f"dh_next\n$\\bar h_{{{k - 1}}}^{{\\,next}}$", ha="center",
                    va="top", fontsize=10, color=REC_PATH)
        else:
            _arrow(ax, (x - 0.65, y_cell - 0.2), (x_prev, y_cell - 0.2), color=REC_PATH, lw=2.4)
            ax.text((x + x_prev) / 2 + 0.1, y_cell - 0.5, "dh0", ha="center", va="top", fontsize=10, color=REC_PATH)
    # final state
    xe = xs[-1] + 1.6
    _arrow(ax, (xs[-1] + 0.65, y_cell + 0.15), (xe, y_cell + 0.15))
    ax.text(xe + 0.05, y_cell + 0.15, "$h_T$", va="center", fontsize=13)
    _arrow(ax, (xe, y_cell - 0.2), (xs[-1] + 0.65, y_cell - 0.2), color=REC_PATH, lw=2.4)
    ax.text(xe + 0.05, y_cell - 0.25, "dh_T\n(None = 0)", va="top", fontsize=10, color=REC_PATH)
    # tied weights
    ax.text(xs[0] - 0.9, 6.05, "same $\\theta$ ($W_{ih}, W_{hh}, b$) at every step:   "
            "$\\bar\\theta = \\sum_t \\bar\\theta^{(t)}$", fontsize=12.5, va="center")
    ax.plot([], [], color=FWD, lw=1.6, label="forward")
    ax.plot([], [], color=OUT_PATH, lw=2.4, label="gradient from the output at step $t$ (dout[t-1])")
    ax.plot([], [], color=REC_PATH, lw=2.4, label="gradient from step $t+1$ (dh_next)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False, fontsize=10.5)
    ax.text(xs[0] - 0.9, 5.65, "$\\bar h_t$ = dout[t-1] + dh_next: the two paths add at every $h_t$ "
            "(loop index t-1 in the code)", fontsize=11, va="center", color="#333")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _op(ax, x, y, text, r=0.28, fc="#ffffff"):
    ax.add_patch(Circle((x, y), r, fc=fc, ec="#345", lw=1.4))
    ax.text(x, y, text, ha="center", va="center", fontsize=14)


def lstm_cell(path):
    fig, ax = plt.subplots(figsize=(11, 6.6), dpi=110)
    ax.set_xlim(-0.5, 11.5)
    ax.set_ylim(-0.9, 6.6)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((1.0, 0.3), 8.6, 5.2, boxstyle="round,pad=0.05,rounding_size=0.2",
                                fc="#f7f9fc", ec="#99a", lw=1.2))
    y_c, y_g, y_in = 4.6, 2.2, 0.6
    # inputs
    _box(ax, 2.0, -0.45, 2.6, 0.55, "$x_t$ (B, D),  $h_{t-1}$ (B, H)", fc="#ffffff", fs=11.5)
    _box(ax, 5.2, y_in + 0.2, 5.6, 0.6,
         "$a = x_tW_{ih}^\\top + h_{t-1}W_{hh}^\\top + b$   (B, 4H) = $[a_i\\,|\\,a_f\\,|\\,a_g\\,|\\,a_o]$",
         fc="#eef3fb", fs=11.5)
    _arrow(ax, (2.0, -0.17), (2.9, y_in - 0.1))
    gates = [("$f=\\sigma(a_f)$", 2.6), ("$i=\\sigma(a_i)$", 4.3), ("$g=\\tanh(a_g)$", 5.9), ("$o=\\sigma(a_o)$", 7.7)]
    for text, x in gates:
        _box(ax, x, y_g, 1.45, 0.55, text, fs=11.5)
        _arrow(ax, (x, y_in + 0.5), (x, y_g - 0.28))
    # cell path
    ax.text(0.0, y_c, "$c_{t-1}$", fontsize=14, va="center")
    _op(ax, 2.6, y_c, "×")
    _op(ax, 5.1, y_c, "+")
    ax.text(10.0, y_c, "$c_t$", fontsize=14, va="center")
    _arrow(ax, (0.7, y_c), (2.32, y_c), color=CELL_PATH, lw=3)
    _arrow(ax, (2.88, y_c), (4.82, y_c), color=CELL_PATH, lw=3)
    _arrow(ax, (5.38, y_c), (9.9, y_c), color=CELL_PATH, lw=3)
    _arrow(ax, (2.6, y_g + 0.28), (2.6, y_c - 0.28))  # f into the product
    _op(ax, 5.1, 3.4, "×")
    _arrow(ax, (4.3, y_g + 0.28), (4.95, 3.17))
    _arrow(ax, (5.9, y_g + 0.28), (5.25, 3.17))
    _arrow(ax, (5.1, 3.68), (5.1, y_c - 0.28))
    # output
    _box(ax, 7.7, 3.75, 1.2, 0.5, "$\\tanh c_t$", fs=11.5)
    _arrow(ax, (7.7, y_c), (7.7, 4.0))
    _op(ax, 8.7, 3.0, "×")
    _arrow(ax, (7.7, 3.5), (8.45, 3.12))
    _arrow(ax, (7.7, y_g + 0.28), (8.45, 2.88))
    _arrow(ax, (8.98, 3.0), (9.9, 3.0))
    ax.text(10.0, 3.0, "$h_t = o\\odot\\tanh c_t$\n(to the output and step $t+1$)", fontsize=11.5, va="center")
    # gradient notes
    ax.text(0.0, 5.95, "backward along the cell path:  $\\bar c_{t-1} = \\bar c_t\\odot f$  "
            "(element-wise: no matrix, no squashing derivative)", fontsize=12, color=CELL_PATH)
    ax.text(5.3, 5.0, "$\\bar c_t = \\bar c^{\\,next}_t + \\bar h_t\\odot o\\odot(1-\\tanh^2c_t)$",
            fontsize=11, color=REC_PATH, ha="left")
    ax.text(2.75, 3.4, "$\\bar f = \\bar c_t\\odot c_{t-1}$", fontsize=10.5, color=REC_PATH, ha="left")
    ax.text(5.3, 3.85, "$\\bar i = \\bar c_t\\odot g$\n$\\bar g = \\bar c_t\\odot i$", fontsize=10.5,
            color=REC_PATH, ha="left", va="center")
    ax.text(8.95, 2.45, "$\\bar o = \\bar h_t\\odot\\tanh c_t$", fontsize=10.5, color=REC_PATH, ha="left")
    ax.text(3.9, -0.45, "$\\bar a = [\\bar i\\,i(1-i) \\,|\\, \\bar f f(1-f) \\,|\\, \\bar g(1-g^2) \\,|\\, "
            "\\bar o\\,o(1-o)]$,   $\\bar h_{t-1} = \\bar a\\,W_{hh}$,   $\\bar x_t = \\bar a\\,W_{ih}$",
            fontsize=10.5, color=REC_PATH, ha="left", va="center")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main():
    os.makedirs(OUT, exist_ok=True)
    unrolled(os.path.join(OUT, "unrolled.png"))
    lstm_cell(os.path.join(OUT, "lstm-cell.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
