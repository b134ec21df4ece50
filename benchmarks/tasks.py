"""The classic BPTT experiments at full size, bptt's results next to the reference results.

    python benchmarks/tasks.py            # print the tables (about 5 minutes on 2 busy cores)
    python benchmarks/tasks.py --write    # ... and write them into BENCHMARKS.md (section "tasks")
    python benchmarks/tasks.py --quick    # a smaller look (lags 10 and 30, fewer steps)

Each task runs with the reference's setup first (what it reproduces), then, where a small change
of setup does better, with that too. The long-lag table runs the adding and copy problems at lags
10, 50, 100 and 200 for a plain RNN, an LSTM and a GRU with the same budget of steps each. Runs
use one thread by default (--threads): on a shared 2-core machine the small matrices of these
tasks train faster single-threaded (with more threads the matrix products may round differently).
"""

import argparse
import os
import sys
import tempfile
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _report, next to this file
from _report import threads_from_argv  # noqa: E402

threads_from_argv()  # before NumPy and numba are imported

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from bptt.tasks import (run_adding, run_binary_add, run_copy, run_echo, run_next_prime,  # noqa: E402
                        run_series)

# the long-lag setups: the same for the three cells
LONG_LAG = {
    "adding": dict(hidden=32, batch=32, lr=1e-2),
    "copy": dict(hidden=32, batch=32, lr=1e-2, length=2, alphabet=8),
}


def fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def row(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


# ----------------------------------------------------------------------------- the tasks
def bench_binary_add(quick):
    r = run_binary_add(seed=0, progress=True)  # Trask: RNN 16, SGD 0.1, one pair per step, 10,000 samples
    setup = ("8-bit a, b < 256 (9 output bits), RNN H=16, SGD lr 0.1, 1 pair/step, clip 1; "
             f"{r['held_out_pairs']:,} of 65,536 pairs held out")
    bptt = (f"held-out sums exact {r['held_out_exact']:.2%} (all exact from {fmt(r['samples_to_exact'], ',')} "
            f"samples on); same model on 16-bit: {r['exact_16bit']:.2%}, 32-bit: {r['exact_32bit']:.2%} exact "
            f"({r['test_pairs']:,} random pairs each)")
    return [row("binary-add", setup, "exact sums on its training pairs (a, b < 128) after 10,000 samples",
                bptt, f"{r['samples']:,} samples", f"{r['seconds']:.0f}")]


def bench_echo(quick):
    seeds = range(8)
    rows, curves = [], []
    for label, kw in (("reference setup: LSTM H=100, SGD lr 0.1, readout h[0]", {}),
                      ("Linear head, SGD lr 0.1 momentum 0.5", dict(readout="linear", momentum=0.5))):
        rs = [run_echo(seed=s, progress=False, **kw) for s in seeds]
        losses = [r["loss_at_last_step"] for r in rs]
        secs = sum(r["seconds"] for r in rs) / len(rs)
        rows.append(row("echo", label, "loss 2.6e-6 at step 100",
                        f"loss at step 100: seed 0 {losses[0]:.2g}; median of {len(rs)} seeds "
                        f"{np.median(losses):.2g}, worst {max(losses):.2g}; {sum(l < 2.6e-6 for l in losses)}/{len(rs)} seeds below 2.6e-6",
                        "100", f"{secs:.2f}"))
        c = rs[0]["curve"]
        curves.append(f"- {label} (seed 0), loss at steps 1, 10, 20, ..., 100: "
                      + ", ".join(f"{l:.2g}" for s, l in c if s == 1 or s % 10 == 0))
    return rows, curves


def bench_next_prime(quick):
    steps = 2000 if quick else 10_000
    out, preds = [], []
    for label, kw in (("reference setup: LSTM H=100, SGD lr 0.01, readout h[0]", {}),
                      ("Linear head, SGD lr 0.01 momentum 0.9", dict(readout="linear", momentum=0.9))):
        r = run_next_prime(steps=steps, seed=0, progress=True, **kw)
        ok = "all 10 correct" if r["all_correct"] else "NOT all correct"
        out.append(row("next-prime", label, "loss 1.05e-6 after 10,000 steps",
                       f"loss {r['loss_at_last_step']:.3g}; predictions x100 rounded: {ok}",
                       f"{r['steps']:,}", f"{r['seconds']:.0f}"))
        preds.append(f"- {label}: predicted x100 " + ", ".join(f"{p:.3f}" for p in r["predictions_x100"])
                     + f" -> rounded {r['predicted_primes']}, true {r['true_primes']}")
    return out, preds


def bench_long_lag(quick):
    lags = (10, 30) if quick else (10, 50, 100, 200)
    budget = {"adding": 1500 if quick else 3000, "copy": 1500 if quick else 3000}
    table = [row("problem", "lag", "cell", "solved", "steps to solve", "held-out at the end", "seconds"),
             row(*["---"] * 7)]
    for task, fn in (("adding", run_adding), ("copy", run_copy)):
        for lag in lags:
            for cell in ("rnn", "lstm", "gru"):
                kw = dict(LONG_LAG[task])
                r = fn(lag=lag, cell=cell, steps=budget[task], seed=0, progress=True, **kw)
                metric = (f"MSE {r['held_out_mse']:.4f}" if task == "adding"
                          else f"accuracy {r['held_out_accuracy']:.1%}")
                table.append(row(task, lag, cell.upper(), "yes" if r["solved"] else "**no**",
                                 fmt(r["steps_to_solve"], ",") if r["solved"] else f"> {r['steps']:,}",
                                 metric, f"{r['seconds']:.0f}"))
                print(table[-1], file=sys.stderr, flush=True)
    return table, budget


def mackey_glass(n, tau=17, beta=0.2, gamma=0.1, power=10, dt=0.1, seed=0):
    """The Mackey-Glass delay equation sampled once per time unit (Euler steps of dt)."""
    per = int(round(1 / dt))
    lag = int(round(tau / dt))
    rng = np.random.default_rng(seed)
    x = list(1.2 + 0.01 * rng.standard_normal(lag + 1))
    out = []
    for i in range((n + 300) * per):
        xt, xd = x[-1], x[-lag - 1]
        x.append(xt + dt * (beta * xd / (1 + xd**power) - gamma * xt))
        if len(x) > lag + 2:
            x.pop(0)
        if i % per == 0:
            out.append(x[-1])
    return np.array(out[300:300 + n])


def bench_series(quick):
    steps = 500 if quick else 2000
    tmp = tempfile.mkdtemp(prefix="bptt-series-")
    t = np.arange(3000)
    signals = {
        "noisy sine (period 50, noise sd 0.1), 3,000 values": np.sin(2 * np.pi * t / 50)
        + 0.1 * np.random.default_rng(0).standard_normal(t.size),
        "Mackey-Glass (tau 17), 3,000 values": mackey_glass(3000),
    }
    rows = []
    for name, values in signals.items():
        path = os.path.join(tmp, "series.csv")
        with open(path, "w") as f:
            f.write("t,value\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(values)))
        r = run_series(data=path, column="value", window=32, steps=steps, seed=0, progress=True)
        rows.append(row("series", f"{name}; LSTM H=32, window 32, Adam 3e-3, last 20% for test",
                        f"naive last-value MSE {r['naive_mse']:.3g}",
                        f"test MSE {r['test_mse']:.3g} ({r['ratio_to_naive']:.2g} x naive)",
                        f"{r['steps']:,}", f"{r['seconds']:.0f}"))
    return rows


# ----------------------------------------------------------------------------- report
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the section 'tasks' of BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="smaller lags and fewer steps")
    ap.add_argument("--threads", type=int, default=1, help="threads for BLAS and numba (default 1)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    main_rows = [row("task", "setup", "reference", "bptt", "steps", "seconds"), row(*["---"] * 6)]
    main_rows += bench_binary_add(args.quick)
    echo_rows, echo_curves = bench_echo(args.quick)
    main_rows += echo_rows
    prime_rows, prime_preds = bench_next_prime(args.quick)
    main_rows += prime_rows
    main_rows += bench_series(args.quick)
    print("\n".join(main_rows), file=sys.stderr, flush=True)
    lag_rows, budget = bench_long_lag(args.quick)
    total = time.perf_counter() - t0
    from _report import machine_line

    a, c = LONG_LAG["adding"], LONG_LAG["copy"]
    md = "\n".join([
        "## Classic BPTT tasks: reproduced and beaten",
        "",
        f"`python benchmarks/tasks.py{' --quick' if args.quick else ''}` ({total / 60:.1f} min, "
        f"{args.threads} thread{'s' if args.threads != 1 else ''}); {machine_line()}. "
        "Seed 0 unless stated; float64 for binary-add, echo and next-prime, float32 for the rest. "
        "Each task is `bptt train --task NAME` and `bptt.tasks.run_*`.",
        "",
        *main_rows,
        "",
        "Echo loss curves:",
        "",
        *echo_curves,
        "",
        "Next-prime predictions:",
        "",
        *prime_preds,
        "",
        "### Long lags: adding and copy problems (Hochreiter & Schmidhuber 1997)",
        "",
        f"Adding: sequence length = lag, two marked values (one in each half), MSE at the last step; "
        f"solved = held-out MSE < 0.01 (predicting 1 gives 0.167). Copy: {c['length']} symbols of "
        f"{c['alphabet']}, `lag` blanks, a marker, reproduce the symbols; solved = held-out per-symbol "
        f"accuracy >= 99% (chance {1 / c['alphabet']:.1%}). Hidden {a['hidden']}, batch {a['batch']}, "
        f"Adam lr {a['lr']:g}, clip 1; LSTM: chrono initialisation for the sequence length T "
        "(forget-gate biases log U(1, T-1), input-gate biases their negatives; Tallec & Ollivier 2018), "
        "GRU: update-gate bias +2, RNN: PyTorch's initialisation; budget "
        f"{budget['adding']:,} steps (adding), {budget['copy']:,} (copy); held-out 1,000 sequences, "
        "checked every 100 steps; training stops when solved.",
        "",
        *lag_rows,
    ])
    print(md)
    if args.write:
        from _report import write_section

        print(f"written to {write_section('tasks', md)}", file=sys.stderr)


if __name__ == "__main__":
    main()
