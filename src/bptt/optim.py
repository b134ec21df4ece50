"""Optimizers, gradient clipping and learning-rate schedules, matching ``torch.optim``.

An optimizer works on two dicts with the same keys, ``params`` and ``grads`` (name -> array), the
very arrays the layers own. It takes them as PyTorch users write it, ``Adam(model, lr=...)``,
``Adam(model.parameters(), lr=...)`` or ``Adam(model.params, lr=...)``, or spelled out as
``Adam(params, grads, lr=...)``. ``step()`` updates the parameter arrays *in place* and never replaces
them, and never modifies the gradients. Each ``_update`` reads like the algorithm in the torch
docs for one parameter tensor; ``self.t`` is the number of steps taken, counting the current one
(torch's ``state["step"]``). The per-parameter state (torch's ``self.state[p]``) lives in
``self.buffers[buffer_name][param_name]``.

    opt = Adam(model, lr=2e-3)              # or make_optimizer("adam", model, lr=2e-3)
    schedule = make_schedule("cosine", 2e-3, total_steps=10_000, warmup_steps=100)
    for step in range(10_000):
        opt.zero_grad(); ...forward, backward...
        norm = clip_grad_norm_(model, 5.0)
        opt.lr = schedule(step)
        opt.step()
"""

import math

import numpy as np

from .cells._kernels import fused


def _require(ok, message):
    if not ok:
        raise ValueError(message)


def _check_nonneg(value, name):
    """A finite number >= 0 (NaN and inf fail too)."""
    _require(
        isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number >= 0, got {value!r}",
    )


def _resolve(params, grads):
    """The forms an optimizer takes -> (params dict, grads dict, the modules they belong to)."""
    from .module import Module, ParamDict, Parameters

    owners = []
    if grads is None:
        if isinstance(params, Module):
            owners.append(params)
            params, grads = params.params, params.grads
        elif isinstance(params, (Parameters, ParamDict)):
            owners.append(params.owner)
            params, grads = params.params if isinstance(params, Parameters) else params, params.grads
        else:
            raise ValueError(
                "give the optimizer a model, model.parameters(), model.params, or the two dicts "
                f"(params, grads); got {type(params).__name__} without gradients"
            )
    elif isinstance(params, ParamDict):
        owners.append(params.owner)
    return params, grads, owners


def _lr_first(grads, lr):
    """``Adam(model.params, 1e-3)``: torch's second positional argument is the learning rate."""
    if isinstance(grads, (int, float, np.number)) and not isinstance(grads, bool):
        return None, grads
    return grads, lr


class _ParamGroup(dict):
    """``opt.param_groups[0]``: the hyperparameters as a dict; writing one sets the optimizer's."""

    def __init__(self, opt):
        super().__init__(params=list(opt.params.values()), **opt.hyper())
        self._opt = opt

    def __setitem__(self, key, value):
        if key not in self._opt.HYPER:
            raise KeyError(f"{type(self._opt).__name__} has no hyperparameter {key!r}")
        setattr(self._opt, key, value)
        super().__setitem__(key, value)


def _check_fraction(value, name, closed=False):
    """0 <= value < 1, or <= 1 with ``closed``."""
    _check_nonneg(value, name)
    _require(value <= 1 if closed else value < 1,
             f"{name} must be in [0, {'1]' if closed else '1)'}, got {value!r}")


class Optimizer:
    """Shared plumbing: params/grads checks, ``lr``, ``zero_grad``, ``state_dict``.

    Subclasses set ``name`` and ``HYPER`` (hyperparameter names, stored as attributes), create
    their buffers in ``__init__`` with ``_add_buffer`` and define ``_update(p, g, state)``.
    """

    name = ""
    HYPER = ()

    def __init__(self, params, grads=None):
        params, grads, self._owners = _resolve(params, grads)
        _require(isinstance(params, dict) and isinstance(grads, dict),
                 "params and grads must be dicts of name -> np.ndarray")
        missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
        _require(not missing and not extra,
                 f"grads keys must match params keys: missing {missing}, unexpected {extra}")
        for k, p in params.items():
            _require(isinstance(p, np.ndarray) and p.dtype.kind == "f",
                     f"params[{k!r}] must be a floating-point np.ndarray")
            g = grads[k]
            _require(isinstance(g, np.ndarray) and g.shape == p.shape,
                     f"grads[{k!r}] must be an np.ndarray of shape {p.shape}, "
                     f"got {getattr(g, 'shape', type(g).__name__)}")
        self.params, self.grads = params, grads
        self.buffers = {}  # buffer name -> {param name -> array like the param}
        self.t = 0  # steps taken

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        _check_nonneg(value, "lr")
        self._lr = float(value)

    def _add_buffer(self, buffer_name, fill=0.0):
        self.buffers[buffer_name] = {k: np.full_like(p, fill) for k, p in self.params.items()}

    def step(self):
        """One update of every parameter, in place."""
        self.t += 1
        for k, p in self.params.items():
            state = {b: arrays[k] for b, arrays in self.buffers.items()}
            self._update(p, self.grads[k], state)
        for m in self._owners:  # caches recorded before the step belong to the old weights
            m.clear_tape()

    @property
    def param_groups(self):
        """One group, as in torch: ``opt.param_groups[0]["lr"] = 1e-4`` sets the rate."""
        return [_ParamGroup(self)]
    def _update(self, p, g, state):
        raise NotImplementedError

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0.0)

    def hyper(self):
        return {h: getattr(self, h) for h in self.HYPER}

    def state_dict(self, copy=True):
        """Plain data for a checkpoint; the arrays are copies (copy=False: the buffers themselves,
        to be written out at once, not kept)."""
        return {
            "type": self.name,
            "hyper": self.hyper(),
            "step": self.t,
            "buffers": {b: {k: a.copy() if copy else a for k, a in arrays.items()}
                        for b, arrays in self.buffers.items()},
        }

    def load_state_dict(self, sd):
        """Restore hyperparameters, step and buffers exactly (buffers are copied, cast to the
        parameters' dtype). Raises ValueError naming what does not match."""
        _require(isinstance(sd, dict) and set(sd) == {"type", "hyper", "step", "buffers"},
                 "optimizer state must be a dict with keys type, hyper, step, buffers")
        _require(sd["type"] == self.name,
                 f"optimizer state is for {sd['type']!r}, cannot load into {self.name!r}")
        hyper = sd["hyper"]
        _require(isinstance(hyper, dict) and set(hyper) == set(self.HYPER),
                 f"{self.name} hyperparameters must be {sorted(self.HYPER)}, "
                 f"got {sorted(hyper) if isinstance(hyper, dict) else hyper!r}")
        step = sd["step"]
        _require(isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step >= 0,
                 f"optimizer step must be an integer >= 0, got {step!r}")
        # A fresh optimizer validates the hyperparameters and says which buffers they need.
        fresh = type(self)(self.params, self.grads, **hyper)
        buffers = sd["buffers"]
        _require(isinstance(buffers, dict) and set(buffers) == set(fresh.buffers),
                 f"{self.name} buffers must be {sorted(fresh.buffers)}, "
                 f"got {sorted(buffers) if isinstance(buffers, dict) else buffers!r}")
        for b, arrays in fresh.buffers.items():
            given = buffers[b]
            _require(isinstance(given, dict) and set(given) == set(arrays),
                     f"buffer {b!r} must have the parameter names {sorted(arrays)}")
            for k, a in arrays.items():
                v = np.asarray(given[k])
                _require(v.shape == a.shape and v.dtype.kind in "fiu",
                         f"buffer {b}[{k!r}] must be a numeric array of shape {a.shape}, "
                         f"got {v.dtype} {v.shape}")
                a[...] = v
        for h in self.HYPER:
            setattr(self, h, getattr(fresh, h))
        self.buffers, self.t = fresh.buffers, int(step)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """torch.optim.SGD. With momentum the buffer starts as the first gradient:
    b_1 = g_1, b_t = momentum·b_{t-1} + (1 − dampening)·g_t."""

    name = "sgd"
    HYPER = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, grads=None, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False):
        grads, lr = _lr_first(grads, lr)
        super().__init__(params, grads)
        self.lr = lr
        _check_nonneg(momentum, "momentum")
        _check_nonneg(dampening, "dampening")
        _check_nonneg(weight_decay, "weight_decay")
        _require(not nesterov or (momentum > 0 and dampening == 0),
                 "nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, bool(nesterov)
        if momentum != 0:
            self._add_buffer("momentum_buffer")

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            b = state["momentum_buffer"]
            if self.t == 1:
                b[...] = g
            else:
                b *= self.momentum
                b += (1 - self.dampening) * g
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g


class Adagrad(Optimizer):
    """torch.optim.Adagrad: sum += g², p −= clr · g / (√sum + eps),
    clr = lr / (1 + (t − 1)·lr_decay)."""

    name = "adagrad"
    HYPER = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, grads=None, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10):
        grads, lr = _lr_first(grads, lr)
        super().__init__(params, grads)
        self.lr = lr
        _check_nonneg(lr_decay, "lr_decay")
        _check_nonneg(weight_decay, "weight_decay")
        _check_nonneg(initial_accumulator_value, "initial_accumulator_value")
        _check_nonneg(eps, "eps")
        self.lr_decay, self.weight_decay, self.eps = lr_decay, weight_decay, eps
        self.initial_accumulator_value = initial_accumulator_value
        self._add_buffer("sum", fill=initial_accumulator_value)

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        clr = self.lr / (1 + (self.t - 1) * self.lr_decay)
        s = state["sum"]
        s += g * g
        p -= clr * (g / (np.sqrt(s) + self.eps))


class RMSprop(Optimizer):
    """torch.optim.RMSprop: v = α·v + (1 − α)·g²; centered: v̄ = v − ḡ², ḡ = α·ḡ + (1 − α)·g;
    with momentum b = momentum·b + g / (√v̄ + eps), p −= lr·b; else p −= lr · g / (√v̄ + eps)."""

    name = "rmsprop"
    HYPER = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, params, grads=None, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False):
        grads, lr = _lr_first(grads, lr)
        super().__init__(params, grads)
        self.lr = lr
        _check_fraction(alpha, "alpha", closed=True)
        _check_nonneg(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        _check_nonneg(momentum, "momentum")
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, bool(centered)
        self._add_buffer("square_avg")
        if momentum > 0:
            self._add_buffer("momentum_buffer")
        if centered:
            self._add_buffer("grad_avg")

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v = state["square_avg"]
        v *= self.alpha
        v += (1 - self.alpha) * (g * g)
        if self.centered:
            g_avg = state["grad_avg"]
            g_avg += (1 - self.alpha) * (g - g_avg)  # torch's lerp
            avg = np.sqrt(v - g_avg * g_avg) + self.eps
        else:
            avg = np.sqrt(v) + self.eps
        if self.momentum > 0:
            b = state["momentum_buffer"]
            b *= self.momentum
            b += g / avg
            p -= self.lr * b
        else:
            p -= self.lr * (g / avg)


class Adam(Optimizer):
    """torch.optim.Adam: m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g²,
    p −= (lr / (1 − β1^t)) · m / (√v̂ / √(1 − β2^t) + eps), v̂ = v (amsgrad: running max of v).
    weight_decay adds wd·p to g (L2); AdamW instead decays p *= 1 − lr·wd first."""

    name = "adam"
    HYPER = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    decoupled_weight_decay = False

    def __init__(self, params, grads=None, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False):
        grads, lr = _lr_first(grads, lr)
        super().__init__(params, grads)
        self.lr = lr
        _require(isinstance(betas, (tuple, list)) and len(betas) == 2,
                 f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_fraction(betas[0], "beta1")
        _check_fraction(betas[1], "beta2")
        _check_nonneg(eps, "eps")
        _check_nonneg(weight_decay, "weight_decay")
        self.betas, self.eps = (betas[0], betas[1]), eps
        self.weight_decay, self.amsgrad = weight_decay, bool(amsgrad)
        self._add_buffer("exp_avg")
        self._add_buffer("exp_avg_sq")
        if amsgrad:
            self._add_buffer("max_exp_avg_sq")

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        fast = fused()
        if fast is not None and _one_layout(p, g, *state.values()):  # the same steps below, in one pass
            decoupled = self.weight_decay != 0 and self.decoupled_weight_decay
            fast.adam_update(p, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                             1 - self.lr * self.weight_decay if decoupled else 1,
                             0 if decoupled else self.weight_decay, beta1, beta2,
                             (1 - beta2**self.t) ** 0.5, self.eps, self.lr / (1 - beta1**self.t))
            return
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                p *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # torch's lerp: m = β1·m + (1 − β1)·g
        v *= beta2
        v += (1 - beta2) * (g * g)
        bias_correction1 = 1 - beta1**self.t
        bias_correction2 = 1 - beta2**self.t
        step_size = self.lr / bias_correction1
        if self.amsgrad:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = np.sqrt(v) / bias_correction2**0.5 + self.eps
        p -= step_size * (m / denom)


def _one_layout(*arrays):
    """Arrays a compiled update can run on flat: C-contiguous, of one dtype."""
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay p *= 1 − lr·wd before the step."""

    name = "adamw"
    decoupled_weight_decay = True

    def __init__(self, params, grads=None, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        grads, lr = _lr_first(grads, lr)
        super().__init__(params, grads, lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, params, grads=None, lr=None, **kw):
    """``OPTIMIZERS[name](params, grads, lr=lr, **kw)``; ValueError on an unknown name.
    ``params`` may be a model (then ``grads`` is left out)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    grads, lr = _lr_first(grads, lr)
    if lr is None:
        raise ValueError("make_optimizer needs lr")
    return OPTIMIZERS[name](params, grads, lr=lr, **kw)


# --- gradient clipping -----------------------------------------------------------------------

def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``, like
    ``torch.nn.utils.clip_grad_norm_``: norm = ‖(‖g_1‖, ‖g_2‖, …)‖, and if norm > max_norm every
    g *= max_norm / (norm + 1e-6). Returns the norm before clipping as a float.

    If the norm is NaN or inf it is returned and the gradients are left untouched (torch would
    fill them with NaN or zeros); the caller decides what to do, e.g. skip the step."""
    _require(isinstance(max_norm, (int, float, np.number)) and max_norm > 0,
             f"max_norm must be a number > 0, got {max_norm!r}")
    if not grads:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        norms = [np.linalg.norm(g.ravel()) for g in grads.values()]
        total_norm = float(np.linalg.norm(np.array(norms)))
    if math.isfinite(total_norm) and total_norm > max_norm:
        clip_coef = max_norm / (total_norm + 1e-6)
        for g in grads.values():
            g *= clip_coef
    return total_norm


def _grads_of(x):
    """A model, its parameters(), its params, or a grads dict -> the grads dict."""
    from .module import Module, ParamDict, Parameters

    if isinstance(x, (Module, Parameters, ParamDict)):
        return x.grads
    _require(isinstance(x, dict), f"expected a model, its parameters or a dict of gradients, got {type(x).__name__}")
    return x


def clip_grad_norm_(parameters, max_norm):
    """torch's spelling: ``clip_grad_norm_(model.parameters(), 5.0)`` (or a model, or a grads
    dict); clips the gradients in place and returns their norm before clipping."""
    return clip_grad_norm(_grads_of(parameters), max_norm)


def clip_grad_value_(parameters, clip_value):
    """torch's spelling of ``clip_grad_value`` for a model, its parameters or a grads dict."""
    clip_grad_value(_grads_of(parameters), clip_value)


def clip_grad_value(grads, clip_value):
    """Clamp every gradient element to [−clip_value, clip_value] in place, like
    ``torch.nn.utils.clip_grad_value_``. ±inf are clamped, NaN stays NaN."""
    _check_nonneg(clip_value, "clip_value")
    for g in grads.values():
        np.clip(g, -clip_value, clip_value, out=g)


# --- learning-rate schedules -----------------------------------------------------------------
#
# Each factory returns a pure function ``lr_at(step) -> float`` where ``step`` is the number of
# optimizer steps already taken: ``lr_at(0)`` is the rate of the first update.

def _check_step(step):
    _require(isinstance(step, (int, np.integer)) and step >= 0,
             f"step must be an integer >= 0, got {step!r}")


def constant(base_lr):
    """lr(step) = base_lr."""
    _check_nonneg(base_lr, "base_lr")

    def lr_at(step):
        _check_step(step)
        return float(base_lr)
    return lr_at


def step_decay(base_lr, step_size, gamma):
    """lr(step) = base_lr · gamma^(step // step_size), like torch's StepLR."""
    _check_nonneg(base_lr, "base_lr")
    _require(isinstance(step_size, (int, np.integer)) and step_size >= 1,
             f"step_size must be an integer >= 1, got {step_size!r}")
    _check_nonneg(gamma, "gamma")
    _require(0 < gamma <= 1, f"gamma must be in (0, 1], got {gamma!r}")

    def lr_at(step):
        _check_step(step)
        return float(base_lr * gamma ** (step // step_size))
    return lr_at


def cosine_with_warmup(base_lr, warmup_steps, total_steps, min_lr=0):
    """Linear warm-up, then cosine decay to ``min_lr``:

    - step < warmup_steps:  lr = base_lr · (step + 1) / warmup_steps  (base_lr/warmup_steps for the
      first update, base_lr for update number warmup_steps);
    - warmup_steps <= step < total_steps:  with q = (step − warmup_steps) / (total_steps −
      warmup_steps), lr = min_lr + (base_lr − min_lr) · (1 + cos(π·q)) / 2, so base_lr at the end of
      the warm-up;
    - step >= total_steps:  lr = min_lr.
    """
    _check_nonneg(base_lr, "base_lr")
    _check_nonneg(min_lr, "min_lr")
    _require(min_lr <= base_lr, f"min_lr ({min_lr}) must be <= base_lr ({base_lr})")
    _require(isinstance(total_steps, (int, np.integer)) and total_steps >= 1,
             f"total_steps must be an integer >= 1, got {total_steps!r}")
    _require(isinstance(warmup_steps, (int, np.integer)) and 0 <= warmup_steps <= total_steps,
             f"warmup_steps must be an integer in [0, total_steps={total_steps}], "
             f"got {warmup_steps!r}")

    def lr_at(step):
        _check_step(step)
        if step < warmup_steps:
            return float(base_lr * (step + 1) / warmup_steps)
        if step >= total_steps:
            return float(min_lr)
        q = (step - warmup_steps) / (total_steps - warmup_steps)
        return float(min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * q)))
    return lr_at


def cosine_to_budget(base_lr, warmup_steps=0, min_lr=0.0):
    """Warm-up, then cosine decay over a budget counted in anything — seconds of a time budget
    (``bptt train --minutes M --schedule cosine``) or steps: ``lr_at(step, progress)`` with
    ``progress`` the fraction of the budget used before this update, in [0, 1] (clamped):

        lr = min(1, (step + 1) / warmup_steps) · (min_lr + (base_lr − min_lr) · (1 + cos(π·progress)) / 2)

    so the first update gets base_lr/warmup_steps, the rate reaches the cosine at update number
    warmup_steps and falls to min_lr as the budget runs out, however many steps that is.
    """
    _check_nonneg(base_lr, "base_lr")
    _check_nonneg(min_lr, "min_lr")
    _require(min_lr <= base_lr, f"min_lr ({min_lr}) must be <= base_lr ({base_lr})")
    _require(isinstance(warmup_steps, (int, np.integer)) and warmup_steps >= 0,
             f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")

    def lr_at(step, progress):
        _check_step(step)
        _require(math.isfinite(progress), f"progress must be a finite number, got {progress!r}")
        q = min(max(float(progress), 0.0), 1.0)
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return float(warm * (min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * q))))
    return lr_at


def make_schedule(name, base_lr, total_steps, **kw):
    """A callable step -> lr by name:

    - "constant": ``constant(base_lr)``; no options;
    - "step": ``step_decay(base_lr, step_size, gamma)``; options step_size (default
      max(1, total_steps // 3)) and gamma (default 0.1);
    - "cosine": ``cosine_with_warmup(base_lr, warmup_steps, total_steps, min_lr)``; options
      warmup_steps (default 0) and min_lr (default 0).
    """
    options = {
        "constant": {},
        "step": {"step_size": max(1, int(total_steps) // 3), "gamma": 0.1},
        "cosine": {"warmup_steps": 0, "min_lr": 0.0},
    }
    if name not in options:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(options)}")
    unknown = sorted(set(kw) - set(options[name]))
    _require(not unknown, f"schedule {name!r} takes options {sorted(options[name])}, "
                          f"got unexpected {unknown}")
    args = {**options[name], **kw}
    if name == "constant":
        return constant(base_lr)
    if name == "step":
        return step_decay(base_lr, args["step_size"], args["gamma"])
    return cosine_with_warmup(base_lr, args["warmup_steps"], total_steps, args["min_lr"])
