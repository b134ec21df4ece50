"""``bptt train --task NAME`` and ``bptt forecast``: the command-line side of ``bptt.tasks``.

    bptt train --task binary-add                      Trask's setup: RNN 16, SGD 0.1, 10,000 samples
    bptt train --task echo [--readout linear --momentum 0.5]
    bptt train --task next-prime [--steps 2000]
    bptt train --task adding --lag 100 --cell gru
    bptt train --task copy --lag 50 --cell lstm
    bptt train --task series --data FILE.csv --column NAME --window 32 --out runs/s1
    bptt forecast runs/s1 --steps 10                  the next 10 values after the data

The options of ``bptt train`` that make sense for a task apply to it (``--cell``, ``--hidden``,
``--steps``, ``--lr``, ``--optimizer``, ``--clip``, ``--batch``, ``--seed``, ``--dtype``,
``--out``, ...); every default is the task's reference setup. An option that does not apply is an
error. Each run writes a run directory (weights in safetensors, task config and results in the
checkpoint's JSON, result.json with the loss curve).
"""

import argparse
import inspect
import os
import sys
import time

from .argtypes import fraction as _fraction
from .argtypes import positive_int as _positive_int

TASK_NAMES = ("charlm", "binary-add", "echo", "next-prime", "copy", "adding", "series", "classify")

# CLI option (argparse dest) -> keyword of the task function, per task
_COMMON = {"cell": "cell", "hidden_size": "hidden", "steps": "steps", "optimizer": "optimizer_name",
           "lr": "lr", "seed": "seed", "dtype": "dtype"}
_LONG = {**_COMMON, "batch_size": "batch", "clip": "clip", "eval_every": "eval_every", "lag": "lag"}
OPTIONS = {
    "binary-add": {**_COMMON, "batch_size": "batch", "clip": "clip", "eval_every": "eval_every",
                   "bits": "bits"},
    "echo": {**_COMMON, "readout": "readout", "momentum": "momentum"},
    "next-prime": {**_COMMON, "readout": "readout", "momentum": "momentum"},
    "copy": {**_LONG, "symbols": "length", "alphabet": "alphabet"},
    "adding": dict(_LONG),
    "series": {**_COMMON, "batch_size": "batch", "clip": "clip", "eval_every": "eval_every",
               "data": "data", "column": "column", "window": "window", "val_fraction": "val_fraction"},
}
# options that are not the task's own function arguments but are fine with every task
_ALWAYS = {"out", "quiet", "task"}
TASK_ONLY = ("lag", "bits", "column", "window", "readout", "momentum", "symbols", "alphabet")


def add_train_options(p):
    """The task options of ``bptt train``."""
    g = p.add_argument_group("tasks (see bptt.tasks; defaults are each task's reference setup)")
    a = g.add_argument
    a("--task", choices=TASK_NAMES, help="what to train: charlm (the character model, default) or a classic BPTT task")
    a("--lag", type=_positive_int, help="copy: blanks between the symbols and the marker; adding: sequence length (default 100)")
    a("--bits", type=_positive_int, help="binary-add: bits of the numbers trained on (default 8)")
    a("--column", help="series: the CSV column to forecast (default: the only column)")
    a("--window", type=_positive_int, help="series: values the model reads before each forecast (default 32)")
    a("--readout", choices=["hidden", "linear"], help="echo, next-prime: output read from the first hidden unit (the reference, default) or a Linear head")
    a("--momentum", type=_fraction, help="echo, next-prime: SGD momentum (default 0, the reference)")
    a("--symbols", type=_positive_int, help="copy: symbols to remember (default 2)")
    a("--alphabet", type=_positive_int, help="copy: letters the symbols are drawn from (default 8)")


def wants_task(args):
    """True when ``bptt train`` should run a task rather than the character model."""
    return getattr(args, "task", None) not in (None, "charlm") or any(
        getattr(args, k, None) is not None for k in TASK_ONLY)


def _flag(name):
    return "--" + {"hidden_size": "hidden", "batch_size": "batch", "num_layers": "layers",
                   "optimizer": "optimizer"}.get(name, name).replace("_", "-")


def task_kwargs(args):
    """The keyword arguments of the task function from the given options; errors on options that
    do not apply to the task."""
    task = args.task
    given = {k: v for k, v in vars(args).items()
             if k not in ("func", "option_names", "command") and v is not None and v is not False}
    if task in (None, "charlm"):
        extra = sorted(k for k in given if k in TASK_ONLY)
        raise ValueError(f"{', '.join(_flag(k) for k in extra)} needs a --task "
                         f"({', '.join(t for t in TASK_NAMES if t != 'charlm')})")
    allowed = OPTIONS[task]
    wrong = sorted(k for k in given if k not in allowed and k not in _ALWAYS)
    if wrong:
        raise ValueError(f"{', '.join(_flag(k) for k in wrong)} does not apply to --task {task}")
    kw = {allowed[k]: v for k, v in given.items() if k in allowed}
    if task == "binary-add" and "steps" in kw:
        kw["samples"] = kw.pop("steps") * kw.get("batch", 1)
    return kw


def run(args):
    """``bptt train --task NAME ...``: train, print the result, save the run directory."""
    from . import tasks
    from .checkpoint import holds_checkpoints

    kw = task_kwargs(args)
    task = args.task
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + "-" + task)
    if holds_checkpoints(out):
        raise ValueError(f"{out} already holds a run; choose another --out")
    fn = tasks.TASKS[task]
    result = fn(progress=not args.quiet, **kw)
    print(report(result))
    config = {n: p.default for n, p in inspect.signature(fn).parameters.items() if n != "progress"}
    config.update(kw)
    if task == "series":
        path = tasks.save_series_run(result, out, config=config)
    else:
        path = tasks.save_run(out, task, result["model"], config, result)
    print(f"run saved: {path}")
    if task == "series":
        print(f"forecast with: bptt forecast {out} --steps 10")
    return 0


# ----------------------------------------------------------------------------- reports
def _g(v):
    return "-" if v is None else f"{v:.3g}"


def report(r):
    """A few lines that say what was trained and how well, next to the reference."""
    from .tasks import binary_add, echo, long_lag, next_prime

    t = r["task"]
    head = f"{t}: {r['cell'].upper()} {r['hidden']} hidden, {r['optimizer']} lr {r['lr']:g}"
    if t == "binary-add":
        m = r["model"]
        ex = [(200, 99), (255, 255), (2**16 - 1, 1), (123456789, 987654321)]
        shown = []
        for a, b in ex:
            n = max(8, max(a, b).bit_length())
            got = binary_add.add(m, [a], [b], n)[0]
            shown.append(f"{a} + {b} = {got}{'' if got == a + b else ' (wrong)'}")
        longer = ", ".join(f"{k[6:]} {v:.2%}" for k, v in r.items() if k.startswith("exact_"))
        return "\n".join([
            f"{head}, batch {r['batch']}: {r['samples']:,} samples in {r['seconds']:.1f} s",
            f"held-out {r['bits']}-bit sums exact: {r['held_out_exact']:.2%} of {r['held_out_pairs']:,} pairs never trained on"
            + (f" (all exact from {r['samples_to_exact']:,} samples on)" if r["samples_to_exact"] else ""),
            f"longer numbers, same model, exact sums: {longer} (of {r['test_pairs']:,} random pairs each)",
            "  " + "; ".join(shown),
            f"reference: {binary_add.REFERENCE}"])
    if t in ("echo", "next-prime"):
        ref = echo if t == "echo" else next_prime
        mom = f", momentum {r['momentum']:g}" if r.get("momentum") else ""
        lines = [f"{head}{mom}, readout {r['readout']}, {r['steps']:,} steps in {r['seconds']:.1f} s",
                 f"loss at step {r['steps']:,}: {_g(r['loss_at_last_step'])} (reference {ref.REFERENCE_LOSS:.3g}); "
                 f"after training: {_g(r['final_loss'])}"]
        if t == "echo":
            lines.append("outputs: " + ", ".join(f"{p:+.4f}" for p in r["predictions"])
                         + "  targets: " + ", ".join(f"{v:+.1f}" for v in r["targets"]))
        else:
            lines.append("predicted x100, rounded: " + " ".join(map(str, r["predicted_primes"])))
            lines.append("true next primes:        " + " ".join(map(str, r["true_primes"]))
                         + ("   all correct" if r["all_correct"] else "   NOT all correct"))
        lines.append(f"reference: {ref.REFERENCE}")
        return "\n".join(lines)
    if t in ("copy", "adding"):
        metric = "mse" if t == "adding" else "accuracy"
        v = r[f"held_out_{metric}"]
        shown = f"held-out MSE {v:.4f} (predict-1 baseline {r['baseline']:.3f}, solved < {r['threshold']})" \
            if t == "adding" else f"held-out per-symbol accuracy {v:.2%} (chance {r['baseline']:.1%}, solved >= {r['threshold']:.0%})"
        status = f"SOLVED after {r['steps_to_solve']:,} steps" if r["solved"] else f"not solved in {r['steps']:,} steps"
        return "\n".join([f"{head}, lag {r['lag']}, batch {r['batch']}: {status} ({r['seconds']:.1f} s)",
                          shown, f"reference: {long_lag.REFERENCE}"])
    if t == "series":
        better = "better than" if r["test_mse"] < r["naive_mse"] else "NOT better than"
        return "\n".join([
            f"{head}, window {r['window']}, {r['steps']:,} steps in {r['seconds']:.1f} s",
            f"{r['values']:,} values: {r['train_values']:,} train, {r['test_values']:,} test",
            f"test MSE {r['test_mse']:.6g} (RMSE {r['test_rmse']:.4g}) vs naive last-value MSE "
            f"{r['naive_mse']:.6g} (RMSE {r['naive_rmse']:.4g}): {r['ratio_to_naive']:.3f}x, {better} naive"])
    return str(r)


# ----------------------------------------------------------------------------- forecast
def add_forecast(sub):
    p = sub.add_parser("forecast", help="forecast the next values from a trained series run",
                       description="Load a run of `bptt train --task series` and forecast the next "
                       "values after its data (or after the end of another CSV file's column).",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--steps", type=_positive_int, default=10, help="values to forecast")
    p.add_argument("--data", metavar="FILE", help="forecast after the end of this CSV file's column (the run's column) instead of the run's data")
    p.set_defaults(func=cmd_forecast)


def cmd_forecast(args):
    from .tasks import forecast_run, load_series, load_run

    history = None
    if args.data:
        _, meta = load_run(args.run)
        history = load_series(args.data, (meta.get("series") or {}).get("column"))
        window = (meta.get("series") or {}).get("window", 1)
        if len(history) < window:
            raise ValueError(f"{args.data} has {len(history)} values; the model reads a window of {window}")
    values, _ = forecast_run(args.run, args.steps, history)
    sys.stdout.write("".join(f"{v:.6g}\n" for v in values))
    return 0
