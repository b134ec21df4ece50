"""Series: next-value forecasting of a numeric column of a CSV file, against the naive forecast
"the next value equals the last one".

The column is split in time: the first 1 - ``val_fraction`` of the values train, the rest test.
Mean and standard deviation come from the training part only and normalise everything. Training
samples are random windows of ``window`` + 1 consecutive training values: the model reads the
first ``window`` and predicts the next value at every step (MSE over all steps, normalised units).
Test: every test value is predicted from the ``window`` values before it (the last prediction of
the window); the error is the MSE in the column's own units, next to the naive last-value MSE.

Forecasting k values: the model reads the last ``window`` values, predicts the next one, then is
fed its own prediction, carrying its state, k - 1 more times.
"""

import csv
import math
import os

import numpy as np

from ..module import no_grad
from ..data import DataError
from ..loss import mse_backward, mse_forward
from ._common import (SeqModel, check_choice, check_positive, child_seeds, load_run, optimizer,
                      save_run, train)

REFERENCE = "naive last-value forecast"


# ----------------------------------------------------------------------------- data
def load_series(path, column=None):
    """The numeric column ``column`` of the CSV file ``path`` (header row first) -> float64 (N,).
    With no column, the file must have exactly one. Raises DataError with one line on bad input."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory, not a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text (CSV) file") from None
    except csv.Error as e:
        raise DataError(f"{path} is not a readable CSV file: {e}") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path} is empty (a CSV file with a header row is expected)")
    header = [h.strip() for h in rows[0][1]]
    if column is None:
        if len(header) != 1:
            raise DataError(f"{path} has {len(header)} columns ({', '.join(header)}); choose one with --column")
        column = header[0]
    if column not in header:
        raise DataError(f"{path} has no column {column!r}; its columns are: {', '.join(header)}")
    j = header.index(column)
    values = []
    for line, r in rows[1:]:
        cell = r[j].strip() if j < len(r) else ""
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"{path}, line {line}: column {column!r} holds {cell!r}, not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{path}, line {line}: column {column!r} holds {cell!r}, not a finite number")
        values.append(v)
    return np.array(values, dtype=np.float64)


def split(values, window, val_fraction, name="the series"):
    """-> (n_train, mean, std). Checks there is enough data for one window and one test value."""
    n = len(values)

    def n_train_of(m):
        return int(round(m * (1 - val_fraction)))

    def enough(m):
        return n_train_of(m) >= window + 1 and m - n_train_of(m) >= 1

    if not enough(n):
        need = next(m for m in range(window + 2, 10 * (window + 2) + 10**6) if enough(m))
        raise DataError(
            f"{name} has {n} values; a window of {window} with val-fraction {val_fraction:g} needs "
            f"at least {need} ({window + 1} to train on and 1 to test)")
    n_train = n_train_of(n)
    train_part = values[:n_train]
    mean, std = float(train_part.mean()), float(train_part.std())
    return n_train, mean, (std if std > 0 else 1.0)


# ----------------------------------------------------------------------------- model use
@no_grad()
def predict_next(model, z, window, targets_from):
    """Normalised values z (N,) -> the prediction of z[t] from z[t-window:t] for every t >= targets_from."""
    idx = np.arange(targets_from, len(z))
    win = z[idx[:, None] - window + np.arange(window)[None, :]]  # (M, window)
    preds = np.empty(len(idx))
    for i in range(0, len(idx), 4096):
        x = win[i:i + 4096].T[:, :, None].astype(model.dtype)  # (window, b, 1)
        y, _ = model.forward(x)
        preds[i:i + 4096] = y[-1, :, 0]
    return preds


@no_grad()
def forecast(model, history, mean, std, steps):
    """The next ``steps`` values after ``history`` (raw values, at least one), in raw units."""
    check_positive("steps", steps)
    z = (np.asarray(history, np.float64) - mean) / std
    y, state = model.forward(z[:, None, None].astype(model.dtype))
    out = [float(y[-1, 0, 0])]
    for _ in range(steps - 1):
        y, state = model.forward(np.array([[[out[-1]]]], model.dtype), state)
        out.append(float(y[-1, 0, 0]))
    return [v * std + mean for v in out]


# ----------------------------------------------------------------------------- the task
def run_series(data=None, column=None, values=None, window=32, cell="lstm", hidden=32,
               steps=1000, batch=32, lr=3e-3, optimizer_name="adam", clip=1.0, val_fraction=0.2,
               eval_every=200, dtype="float32", seed=0, progress=True):
    """Train on a CSV column (``data``, ``column``) or on ``values``; returns test MSE against the
    naive forecast, the model, and what forecasting needs (normalisation, the last window)."""
    check_positive("window", window)
    check_positive("hidden", hidden)
    check_positive("steps", steps)
    check_positive("batch", batch)
    check_choice("cell", cell, ("rnn", "lstm", "gru"))
    if not 0 < val_fraction < 1:
        raise DataError(f"val-fraction must be in (0, 1) for a series, got {val_fraction!r}")
    if values is None:
        if data is None:
            raise DataError("the series task needs --data FILE.csv (and --column NAME)")
        values = load_series(data, column)
        name = f"{data}, column {column!r}" if column else data
    else:
        values = np.asarray(values, dtype=np.float64)
        name = "the series"
    n_train, mean, std = split(values, window, val_fraction, name)
    z = (values - mean) / std
    s_model, s_train = child_seeds(seed, 2)
    model = SeqModel(cell, 1, hidden, 1, dtype=dtype, seed=s_model)
    opt = optimizer(optimizer_name, model, lr)
    rng = np.random.default_rng(s_train)
    n_windows = n_train - window  # windows of window + 1 values inside the training part

    def batch_fn(step):
        start = rng.integers(0, n_windows, batch)
        w = z[start[:, None] + np.arange(window + 1)[None, :]].T  # (window + 1, B)
        return w[:-1, :, None].astype(model.dtype), w[1:, :, None].astype(model.dtype), None

    def loss_fn(y, target, mask):
        loss, cache = mse_forward(y, target)
        return loss, mse_backward(cache)

    test_from = max(n_train, window)
    truth = values[test_from:]
    naive = values[test_from - 1:-1]

    def eval_fn(step):
        pred = predict_next(model, z, window, test_from) * std + mean
        return {"test_mse": float(np.mean((pred - truth) ** 2))}

    hist = train(model, opt, batch_fn, loss_fn, steps, clip=clip, eval_fn=eval_fn,
                 eval_every=eval_every, desc=f"series {cell}", progress=progress,
                 curve_every=max(1, steps // 500))
    test_mse = hist["evals"][-1][1]["test_mse"]
    naive_mse = float(np.mean((naive - truth) ** 2))
    return {
        "task": "series", "data": data, "column": column, "cell": cell, "hidden": hidden,
        "window": window, "steps": hist["steps"], "batch": batch, "lr": lr, "optimizer": optimizer_name,
        "values": int(len(values)), "train_values": int(n_train), "test_values": int(len(truth)),
        "test_mse": test_mse, "naive_mse": naive_mse, "ratio_to_naive": test_mse / naive_mse if naive_mse else float("inf"),
        "test_rmse": math.sqrt(test_mse), "naive_rmse": math.sqrt(naive_mse),
        "final_loss": hist["last_loss"], "seconds": hist["seconds"], "curve": hist["curve"],
        "evals": [(s, m["test_mse"]) for s, m in hist["evals"]],
        "mean": mean, "std": std, "tail": values[-window:].tolist(), "model": model,
    }


def series_meta(result):
    """What a saved series run needs to forecast: normalisation and the last window."""
    return {"series": {"mean": result["mean"], "std": result["std"], "window": result["window"],
                       "column": result["column"], "data": result["data"], "tail": result["tail"]}}


def forecast_run(path, steps, history=None):
    """Load a saved series run and forecast ``steps`` values after its data (or ``history``)."""
    from ..checkpoint import CheckpointError

    model, meta = load_run(path)
    if meta.get("task") != "series" or "series" not in meta:
        raise CheckpointError(f"{path} holds a {meta.get('task')!r} task run; forecasting needs a 'series' run")
    s = meta["series"]
    hist = s["tail"] if history is None else np.asarray(history, np.float64)[-s["window"]:]
    return forecast(model, hist, s["mean"], s["std"], steps), meta


def save_series_run(result, out, config=None):
    return save_run(out, "series", result["model"], config or {}, result, series_meta(result))
