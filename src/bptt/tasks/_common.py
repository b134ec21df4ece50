"""What the classic tasks share: a sequence model (recurrent stack -> Linear head at every step),
the training loop (forward, loss, backward, clip, optimizer step, evaluate, stop when solved),
run directories and results.

Dimensions: T time, B batch, D input features, H hidden, O outputs.
"""

import json
import math
import os
import sys
import time

import numpy as np

from ..head import Linear
from ..module import Module, resolve_dtype
from ..optim import clip_grad_norm, make_optimizer
from ..recurrent import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class TaskError(ValueError):
    """A bad task setting; the message is one line meant for the user."""


def check_choice(name, value, choices):
    if value not in choices:
        raise TaskError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def check_positive(name, value, allow_zero=False, integer=True):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < 0 if allow_zero else value <= 0):
        what = "an integer" if integer else "a number"
        raise TaskError(f"{name} must be {what} {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def child_seeds(seed, n):
    """n independent integer seeds from one seed (weights, head, data, held-out data...)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


class SeqModel(Module):
    """x (T, B, D) -> recurrent stack (RNN | LSTM | GRU) -> y (T, B, O) at every step.

    ``readout="linear"``: a ``Linear(H, O)`` head on the top layer's output (the default).
    ``readout="hidden"``: no head; y is the first O hidden units of the top layer, the readout of
    nicodjimenez's LSTM (its loss reads ``h[0]``).
    ``forget_bias``: added to the input bias of the gate that keeps the state, the LSTM forget
    gate f (gate order i, f, g, o) and the GRU update gate z (order r, z, n; h = (1-z) n + z h_prev),
    the usual trick for long lags (Gers et al. 2000); 0 or None leaves PyTorch's initialisation.
    A plain RNN has no such gate.
    ``chrono`` (LSTM only; it replaces ``forget_bias`` there): the chrono initialisation of Tallec
    & Ollivier (2018) for dependencies up to ``chrono`` steps: forget-gate biases
    log(U(1, chrono - 1)) per unit and input-gate biases the negative of those, so that the
    initial memory spans 1 to ``chrono`` steps.

    ``params``/``grads`` are the parts' own arrays under the names a PyTorch module with
    attributes ``rnn`` and ``head`` would use, so an optimizer updates the layers in place.
    """

    def __init__(self, cell, input_size, hidden_size, output_size, num_layers=1,
                 readout="linear", forget_bias=None, chrono=None, dtype="float64", seed=0):
        check_choice("cell", cell, tuple(CELLS))
        check_choice("readout", readout, ("linear", "hidden"))
        if readout == "hidden" and output_size > hidden_size:
            raise TaskError(f"readout 'hidden' needs output_size <= hidden size, got {output_size} > {hidden_size}")
        super().__init__()
        self.cell, self.readout, self.output_size = cell, readout, int(output_size)
        self.dtype = resolve_dtype(dtype)
        s_rnn, s_head = child_seeds(seed, 2)
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, dtype=dtype, seed=s_rnn)
        self.head = None
        if readout == "linear":
            self.head = Linear(hidden_size, output_size, dtype=dtype, seed=s_head)
        H = hidden_size  # the keeping gate is the 2nd block in both: LSTM i,f,g,o; GRU r,z,n
        if forget_bias and cell in ("lstm", "gru"):
            for k in range(num_layers):
                self.rnn.params[f"bias_ih_l{k}"][H:2 * H] += forget_bias
        if chrono and cell == "lstm":
            rng = np.random.default_rng(s_head + 1)
            for k in range(num_layers):
                b_keep = np.log(rng.uniform(1.0, max(chrono - 1.0, 1.0 + 1e-9), H))
                bias_ih, bias_hh = self.rnn.params[f"bias_ih_l{k}"], self.rnn.params[f"bias_hh_l{k}"]
                bias_ih[H:2 * H], bias_hh[H:2 * H] = b_keep, 0.0
                if cell == "lstm":  # the input gate opens as little as the forget gate closes
                    bias_ih[:H], bias_hh[:H] = -b_keep, 0.0

    def forward(self, x, state=None):
        """x (T, B, D), state None or the recurrent layer's -> y (T, B, O), final state."""
        out, state = self.rnn(x, state)  # (T, B, H)
        if self.head is None:
            self._save_for_backward(out.shape)
        y = self.head(out) if self.head is not None else out[..., : self.output_size]
        return y, state

    def backward(self, dy):
        """dy (T, B, O) -> adds into ``grads``."""
        if self.head is not None:
            dout = self.head.backward(dy)
        else:
            dout = np.zeros(self._saved_for_backward(), self.dtype)
            dout[..., : self.output_size] = dy
        self.rnn.backward(dout, input_grad=False)  # x is data: no dx

    def config(self):
        return {"cell": self.cell, "input_size": self.rnn.input_size,
                "hidden_size": self.rnn.hidden_size, "output_size": self.output_size,
                "num_layers": self.rnn.num_layers, "readout": self.readout,
                "dtype": np.dtype(self.dtype).name}

    @classmethod
    def from_config(cls, config):
        return cls(config["cell"], config["input_size"], config["hidden_size"],
                   config["output_size"], config.get("num_layers", 1), config.get("readout", "linear"),
                   dtype=config.get("dtype", "float64"), seed=0)


class Progress:
    """A tqdm bar over the training steps (stderr), or nothing."""

    def __init__(self, total, desc, enabled=True):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True,
                            file=sys.stderr, mininterval=0.5, leave=False)

    def update(self, n, **post):
        if self.bar is not None:
            if post:
                self.bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v)
                                      for k, v in post.items()}, refresh=False)
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(model, opt, batch_fn, loss_fn, steps, *, clip=0.0, eval_fn=None, eval_every=0,
          solved_fn=None, desc="train", progress=True, curve_every=1):
    """The loop every task runs.

    batch_fn(step) -> (x, target, mask); loss_fn(y, target, mask) -> (loss, dy);
    eval_fn(step) -> dict of metrics, every ``eval_every`` steps and after the last one;
    solved_fn(metrics) -> bool stops training early (the step is then recorded as solved).
    ``loss`` recorded at step k is the loss of the k-th forward pass, before its update (as the
    reference scripts print it). Returns a dict: curve [(step, loss)], evals [(step, metrics)],
    steps, seconds, solved_at (or None), last_loss.
    """
    from ..train import TrainingError

    curve, evals, solved_at, loss = [], [], None, float("nan")
    bar = Progress(steps, desc, progress)
    t0 = time.perf_counter()
    step = 0
    try:
        for step in range(1, steps + 1):
            x, target, mask = batch_fn(step)
            y, _ = model.forward(x)
            loss, dy = loss_fn(y, target, mask)
            model.zero_grad()
            model.backward(dy)
            norm = clip_grad_norm(model.grads, clip) if clip else 0.0
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise TrainingError(f"{desc}: the loss or the gradient became {loss if not math.isfinite(loss) else norm} at step {step}; training stopped")
            opt.step()
            if step % curve_every == 0 or step == 1:
                curve.append((step, loss))
            post = {}
            if eval_fn is not None and eval_every and (step % eval_every == 0 or step == steps):
                metrics = eval_fn(step)
                evals.append((step, metrics))
                post = {f"eval_{k}": v for k, v in metrics.items() if isinstance(v, float)}
                if solved_fn is not None and solved_at is None and solved_fn(metrics):
                    solved_at = step
                    bar.update(1, loss=loss, **post)
                    break
            if step % 20 == 0 or post:
                bar.update(1, loss=loss, **post)
            else:
                bar.update(1)
    finally:
        bar.close()
    if curve and curve[-1][0] != step:
        curve.append((step, loss))
    return {"curve": curve, "evals": evals, "steps": step, "seconds": time.perf_counter() - t0,
            "solved_at": solved_at, "last_loss": loss}


def optimizer(name, model, lr, momentum=0.0):
    """An optimizer of bptt.optim over the model's parameters; ``momentum`` applies to SGD and
    RMSprop only."""
    kw = {"momentum": momentum} if momentum and name in ("sgd", "rmsprop") else {}
    if momentum and not kw:
        raise TaskError(f"momentum applies to the sgd and rmsprop optimizers, not {name}")
    return make_optimizer(name, model.params, model.grads, lr, **kw)


# ----------------------------------------------------------------------------- run directories
def save_run(out, task, model, config, result, extra_meta=None):
    """Write ``out``/ckpt-<steps> (weights as safetensors, task config and results in the JSON
    meta) and ``out``/result.json. Returns the checkpoint directory."""
    from ..checkpoint import save_checkpoint

    meta = {"task": task, "model": model.config(), "config": config,
            "result": summary(result), **(extra_meta or {})}
    path = save_checkpoint(out, int(result.get("steps", 0)), model.state_dict(), {}, meta)
    with open(os.path.join(out, "result.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(result), f, indent=1)
    return path


def load_run(path):
    """A task run directory or checkpoint -> (model, meta)."""
    from ..checkpoint import CheckpointError, load_checkpoint

    ckpt_dir, meta, weights, _ = load_checkpoint(path)
    if "task" not in meta:
        raise CheckpointError(f"{ckpt_dir} is a character-model run, not a task run")
    try:
        model = SeqModel.from_config(meta["model"])
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_dir}: the weights do not fit the task model: {e}") from None
    return model, meta


def summary(result):
    """The result without its long lists (curve, evals, predictions), for JSON meta and tables."""
    return {k: v for k, v in _jsonable(result).items() if not isinstance(v, list) or len(v) <= 40}


def _jsonable(obj):
    if isinstance(obj, dict):  # the trained model stays out of JSON
        return {str(k): _jsonable(v) for k, v in obj.items() if not isinstance(v, SeqModel)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
