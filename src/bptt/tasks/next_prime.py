"""Next prime (a variant of nicodjimenez's ``lstm`` example): ten steps; the input at step t is a
window of 50 consecutive primes below 100, divided by 100, taken cyclically (there are 25 primes
below 100, so a window of 50 wraps around twice), the window starting one prime later at each
step; the target is the prime after the window, divided by 100.

Reference: LSTM with 100 cells, plain SGD lr 0.01, 10,000 iterations -> loss 1.05e-6 (sum over
the 10 steps of the squared error of h[0], as in the echo example).

Setup here: the same data, loss (sum of squared errors over the 10 steps), optimizer (plain SGD,
lr 0.01) and steps. Readout: the first hidden unit (``readout="hidden"``, the reference's) or a
Linear head (``readout="linear"``). Since the window spans the primes exactly twice, the prime
after the window starting at prime i is prime i again: the targets are 2, 3, 5, ..., 29 (/100).
"""

import numpy as np

from ..module import no_grad
from ._common import SeqModel, check_choice, check_positive, child_seeds, optimizer, train
from .echo import sum_squared_loss

REFERENCE_LOSS = 1.05e-6
REFERENCE = "LSTM H=100, SGD lr 0.01, 10 steps of 50-prime windows, readout h[0]: loss 1.05e-6 after 10,000 steps"


def primes_below(n):
    sieve = np.ones(n, bool)
    sieve[:2] = False
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = False
    return np.flatnonzero(sieve)


def prime_windows(steps=10, window=50, below=100):
    """-> x (steps, window) primes/below, target (steps,) the prime after each window / below,
    and the target primes as integers."""
    p = primes_below(below)
    idx = (np.arange(steps)[:, None] + np.arange(window)[None, :]) % p.size  # (steps, window)
    nxt = p[(np.arange(steps) + window) % p.size]
    return p[idx] / below, nxt / below, nxt


def run_next_prime(cell="lstm", hidden=100, lr=0.01, steps=10_000, seq_steps=10, window=50,
                   readout="hidden", optimizer_name="sgd", momentum=0.0, dtype="float64", seed=0,
                   progress=True):
    check_positive("hidden", hidden)
    check_positive("steps", steps)
    check_positive("window", window)
    check_choice("cell", cell, ("rnn", "lstm", "gru"))
    (s_model,) = child_seeds(seed, 1)
    xs, ys, primes = prime_windows(seq_steps, window)
    model = SeqModel(cell, window, hidden, 1, readout=readout, dtype=dtype, seed=s_model)
    x = xs[:, None, :].astype(model.dtype)  # (T, 1, window)
    y_true = ys.reshape(-1, 1, 1).astype(model.dtype)  # (T, 1, 1)
    opt = optimizer(optimizer_name, model, lr, momentum=momentum)
    hist = train(model, opt, lambda step: (x, y_true, None), sum_squared_loss, steps,
                 desc=f"next-prime {cell}", progress=progress,
                 curve_every=max(1, steps // 500))
    with no_grad():
        y, _ = model.forward(x)
    final = sum_squared_loss(y, y_true)[0]
    pred = np.rint(y[:, 0, 0] * 100).astype(int)
    return {
        "task": "next-prime", "cell": cell, "hidden": hidden, "readout": readout,
        "optimizer": optimizer_name, "momentum": momentum, "lr": lr, "steps": hist["steps"],
        "loss_at_last_step": hist["last_loss"], "final_loss": final, "reference_loss": REFERENCE_LOSS,
        "predictions_x100": (y[:, 0, 0] * 100).tolist(), "predicted_primes": pred.tolist(),
        "true_primes": primes.tolist(), "all_correct": bool(np.array_equal(pred, primes)),
        "seconds": hist["seconds"], "curve": hist["curve"], "model": model,
    }
