"""Echo a sequence (nicodjimenez's ``lstm`` example): four fixed random 50-dimensional inputs, one
per step, and the targets -0.5, 0.2, 0.1, -0.5 read from the model's output at each step.

Reference: LSTM with 100 memory cells, weights U(-0.1, 0.1), plain SGD lr 0.1, loss = the sum over
the 4 steps of the squared error of h[0] (the first hidden unit), 100 iterations -> loss 2.6e-6.
Its LSTM has no tanh on the cell output (h = o * c); bptt's LSTM is PyTorch's (h = o * tanh(c)).

Setup here: the same inputs (uniform [0, 1)), targets, loss (sum of squared errors over the 4
steps), optimizer (plain SGD, lr 0.1) and 100 steps. PyTorch's initialisation U(-1/sqrt(H),
1/sqrt(H)) is U(-0.1, 0.1) at H = 100, the reference's. The readout is either the first hidden
unit, as the reference (``readout="hidden"``, the default), or a Linear head to one output
(``readout="linear"``). The loss reported at step k is the loss of the k-th forward pass, before
its update, which is what the reference prints at iteration k-1.
"""

import numpy as np

from ..module import no_grad
from ..loss import mse_backward, mse_forward
from ._common import SeqModel, check_choice, check_positive, child_seeds, optimizer, train

TARGETS = (-0.5, 0.2, 0.1, -0.5)
REFERENCE_LOSS = 2.6e-6
REFERENCE = "nicodjimenez LSTM, H=100, 50-dim inputs, SGD lr 0.1, readout h[0]: loss 2.6e-6 at step 100"


def sum_squared_loss(y, target, mask=None):
    """Sum over steps (and outputs) of the squared error, averaged over the batch."""
    loss, cache = mse_forward(y, target, mask)
    scale = y.size // y.shape[1]  # elements per sequence
    return loss * scale, mse_backward(cache, dloss=scale)


def run_echo(cell="lstm", hidden=100, input_size=50, lr=0.1, steps=100, readout="hidden",
             optimizer_name="sgd", momentum=0.0, targets=TARGETS, dtype="float64", seed=0,
             progress=True):
    check_positive("hidden", hidden)
    check_positive("steps", steps)
    check_choice("cell", cell, ("rnn", "lstm", "gru"))
    s_model, s_data = child_seeds(seed, 2)
    T = len(targets)
    model = SeqModel(cell, input_size, hidden, 1, readout=readout, dtype=dtype, seed=s_model)
    x = np.random.default_rng(s_data).random((T, 1, input_size)).astype(model.dtype)  # (T, 1, D)
    y_true = np.asarray(targets, dtype=model.dtype).reshape(T, 1, 1)
    opt = optimizer(optimizer_name, model, lr, momentum=momentum)
    hist = train(model, opt, lambda step: (x, y_true, None), sum_squared_loss, steps,
                 desc=f"echo {cell}", progress=progress)
    with no_grad():
        y, _ = model.forward(x)
    final = sum_squared_loss(y, y_true)[0]
    return {
        "task": "echo", "cell": cell, "hidden": hidden, "readout": readout, "optimizer": optimizer_name,
        "momentum": momentum, "lr": lr, "steps": hist["steps"], "loss_at_last_step": hist["last_loss"],
        "final_loss": final, "reference_loss": REFERENCE_LOSS,
        "predictions": y[:, 0, 0].tolist(), "targets": list(targets),
        "seconds": hist["seconds"], "curve": hist["curve"], "model": model,
    }
