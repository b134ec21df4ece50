"""The long-lag problems of Hochreiter & Schmidhuber (1997): information must be kept over
``lag`` steps of distraction, where a plain RNN's gradient vanishes and LSTM's (and GRU's) does not.

**adding** (H&S experiment 4, in the now usual form of Le et al. 2015 and Arjovsky et al. 2016).
A sequence of T = ``lag`` steps; each input is (a random value in [0, 1), a marker bit); exactly
two steps are marked, one in the first half and one in the second; at the last step the model
outputs the sum of the two marked values (Linear head, MSE on the last step only). The first
marked value is thus between T/2 and T steps back. Predicting 1 whatever the input gives MSE
1/6 ~= 0.167 (the variance of the sum); *solved* = MSE < 0.01 on 1,000 held-out sequences.

**copy** (the copy-memory problem of Arjovsky et al. 2016, after H&S experiment 2). ``length``
symbols drawn from ``alphabet`` letters, then ``lag`` blanks, then a marker, then ``length`` - 1
blanks (T = 2 * length + lag); from the marker step on the model outputs the symbols in order.
Inputs one-hot over letters + blank + marker; softmax over the letters; cross-entropy on the
``length`` output steps only (a mask). Guessing gives log(alphabet) nats; *solved* = per-symbol
accuracy >= 99% on 1,000 held-out sequences.

Both, for the three cells alike: hidden 32, batch 32, Adam lr 1e-2, gradient-norm clipping at 1,
at most 3,000 steps. The gated cells start with the usual long-lag initialisation of the gate that
keeps the state: the LSTM the chrono initialisation of Tallec & Ollivier (2018) for the sequence
length T (forget-gate biases log U(1, T - 1), input-gate biases their negatives), the GRU an
update-gate bias of +2 (z = sigmoid(2) ~ 0.88 at the start); a plain RNN has no gate. The held-out
sequences come from their own seed, never trained on; they are checked every 100 steps and
training stops at the first check that is solved.
"""

import math

import numpy as np

from ..module import no_grad
from ..loss import cross_entropy_backward, cross_entropy_forward, mse_backward, mse_forward
from ._common import SeqModel, check_choice, check_positive, child_seeds, optimizer, train

SOLVED_MSE = 0.01
SOLVED_ACCURACY = 0.99
REFERENCE = "Hochreiter & Schmidhuber 1997: plain RNN fails at long lags, LSTM succeeds"


# ----------------------------------------------------------------------------- data
def adding_batch(rng, lag, batch, dtype=np.float32):
    """-> x (T, B, 2), target (T, B, 1) (the sum at the last step, 0 elsewhere), mask (T, B, 1)."""
    T = lag
    x = np.zeros((T, batch, 2), dtype)
    x[:, :, 0] = rng.random((T, batch))
    half = T // 2
    i = rng.integers(0, half, batch)
    j = rng.integers(half, T, batch)
    cols = np.arange(batch)
    x[i, cols, 1] = 1.0
    x[j, cols, 1] = 1.0
    target = np.zeros((T, batch, 1), dtype)
    target[-1, :, 0] = x[i, cols, 0] + x[j, cols, 0]
    mask = np.zeros((T, batch, 1), dtype)
    mask[-1] = 1.0
    return x, target, mask


def copy_batch(rng, lag, batch, length=5, alphabet=8, dtype=np.float32):
    """-> x (T, B, alphabet+2) one-hot, target (T, B) letter indices, mask (T, B) (1 on the
    ``length`` output steps), T = 2 * length + lag."""
    L, K = length, alphabet
    T = 2 * L + lag
    symbols = rng.integers(0, K, (L, batch))
    codes = np.full((T, batch), K)  # blank
    codes[:L] = symbols
    codes[L + lag] = K + 1  # the marker
    x = np.eye(K + 2, dtype=dtype)[codes]  # (T, B, K+2)
    target = np.zeros((T, batch), np.int64)
    target[L + lag:] = symbols
    mask = np.zeros((T, batch), dtype)
    mask[L + lag:] = 1.0
    return x, target, mask


# ----------------------------------------------------------------------------- training
def _check(lag, cell, hidden, steps, batch):
    check_positive("lag", lag)
    check_choice("cell", cell, ("rnn", "lstm", "gru"))
    check_positive("hidden", hidden)
    check_positive("steps", steps)
    check_positive("batch", batch)


def run_adding(lag=100, cell="lstm", hidden=32, steps=3000, batch=32, lr=1e-2,
               optimizer_name="adam", clip=1.0, eval_every=100, eval_size=1000, forget_bias=2.0,
               chrono=True, dtype="float32", seed=0, progress=True):
    """The adding problem over ``lag`` steps; stops at the first evaluation with held-out
    MSE < 0.01. ``forget_bias``: GRU update-gate bias (and LSTM forget-gate bias when ``chrono`` is
    off); ``chrono``: the LSTM's chrono initialisation for the sequence length."""
    _check(lag, cell, hidden, steps, batch)
    if lag < 2:
        raise ValueError(f"lag must be >= 2 for the adding problem, got {lag}")
    s_model, s_train, s_eval = child_seeds(seed, 3)
    model = SeqModel(cell, 2, hidden, 1, forget_bias=forget_bias, chrono=lag if chrono else None,
                     dtype=dtype, seed=s_model)
    opt = optimizer(optimizer_name, model, lr)
    rng = np.random.default_rng(s_train)
    ex, et, em = adding_batch(np.random.default_rng(s_eval), lag, eval_size, model.dtype)

    def loss_fn(y, target, mask):
        loss, cache = mse_forward(y, target, mask)
        return loss, mse_backward(cache)

    @no_grad()
    def eval_fn(step):
        y, _ = model.forward(ex)
        return {"mse": float(np.mean((y[-1, :, 0].astype(np.float64) - et[-1, :, 0]) ** 2))}

    hist = train(model, opt, lambda s: adding_batch(rng, lag, batch, model.dtype), loss_fn, steps,
                 clip=clip, eval_fn=eval_fn, eval_every=eval_every,
                 solved_fn=lambda m: m["mse"] < SOLVED_MSE, desc=f"adding {cell} lag {lag}",
                 progress=progress, curve_every=10)
    return _result("adding", hist, model, lag, cell, hidden, batch, lr, optimizer_name,
                   metric="mse", baseline=1 / 6, threshold=SOLVED_MSE)


def run_copy(lag=100, cell="lstm", hidden=32, steps=3000, batch=32, lr=1e-2, length=2,
             alphabet=8, optimizer_name="adam", clip=1.0, eval_every=100, eval_size=1000,
             forget_bias=2.0, chrono=True, dtype="float32", seed=0, progress=True):
    """The copy problem over ``lag`` blanks; stops at the first evaluation with held-out
    per-symbol accuracy >= 99%. Gate initialisation as ``run_adding``."""
    _check(lag, cell, hidden, steps, batch)
    check_positive("length", length)
    check_positive("alphabet", alphabet)
    s_model, s_train, s_eval = child_seeds(seed, 3)
    model = SeqModel(cell, alphabet + 2, hidden, alphabet, forget_bias=forget_bias,
                     chrono=2 * length + lag if chrono else None, dtype=dtype, seed=s_model)
    opt = optimizer(optimizer_name, model, lr)
    rng = np.random.default_rng(s_train)
    ex, et, em = copy_batch(np.random.default_rng(s_eval), lag, eval_size, length, alphabet, model.dtype)

    def loss_fn(y, target, mask):
        loss, cache = cross_entropy_forward(y, target, mask)
        return loss, cross_entropy_backward(cache)

    @no_grad()
    def eval_fn(step):
        y, _ = model.forward(ex)
        out = slice(length + lag, None)
        acc = float(np.mean(y[out].argmax(-1) == et[out]))
        return {"accuracy": acc, "loss": cross_entropy_forward(y, et, em)[0]}

    hist = train(model, opt, lambda s: copy_batch(rng, lag, batch, length, alphabet, model.dtype),
                 loss_fn, steps, clip=clip, eval_fn=eval_fn, eval_every=eval_every,
                 solved_fn=lambda m: m["accuracy"] >= SOLVED_ACCURACY,
                 desc=f"copy {cell} lag {lag}", progress=progress, curve_every=10)
    r = _result("copy", hist, model, lag, cell, hidden, batch, lr, optimizer_name,
                metric="accuracy", baseline=1 / alphabet, threshold=SOLVED_ACCURACY)
    r.update(length=length, alphabet=alphabet, baseline_loss=math.log(alphabet),
             held_out_loss=hist["evals"][-1][1]["loss"])
    return r


def _result(task, hist, model, lag, cell, hidden, batch, lr, opt_name, metric, baseline, threshold):
    last = hist["evals"][-1][1][metric]
    return {
        "task": task, "cell": cell, "lag": lag, "hidden": hidden, "batch": batch, "lr": lr,
        "optimizer": opt_name, "steps": hist["steps"], "solved": hist["solved_at"] is not None,
        "steps_to_solve": hist["solved_at"], f"held_out_{metric}": last,
        f"best_held_out_{metric}": (min if metric == "mse" else max)(m[metric] for _, m in hist["evals"]),
        "baseline": baseline, "threshold": threshold, "final_loss": hist["last_loss"],
        "seconds": hist["seconds"], "curve": hist["curve"],
        "evals": [(s, m[metric]) for s, m in hist["evals"]], "model": model,
    }
