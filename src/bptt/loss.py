"""Losses with forward and backward, with PyTorch's options.

Each loss is a pair of pure functions ``*_forward(...) -> (loss, cache)`` and
``*_backward(cache, dloss=1.0) -> dinput``, and a small module with PyTorch's name and arguments
(``reduction``, ``weight``, ``ignore_index``, ``label_smoothing``, ``pos_weight``) that keeps the
cache between the two.

Reductions: 'mean' (the default) divides the sum of the per-position losses by the number of
counted positions — for cross-entropy with class indices by the sum of their class weights, as
PyTorch does; 'sum' sums them; 'none' returns them (an array of the positions' shape), and its
backward takes a gradient of that shape. A ``mask`` (1 = count, 0 = skip; bptt's addition)
removes positions from both the sum and the count; when nothing is counted the mean is 0 and so is
its gradient.

Class scores are on the *last* axis, logits (..., V), as a sequence model produces them (T, B, V);
PyTorch's CrossEntropyLoss wants the class axis second, (B, V, T).

Dimensions: (...) leading positions (e.g. T, B), V classes.
"""

import numpy as np

from .module import Module, check_shape

REDUCTIONS = ("mean", "sum", "none")


def _mask_weights(mask, shape, dtype):
    """mask broadcastable to ``shape`` -> float weights of exactly ``shape``."""
    if mask is None:
        return np.ones(shape, dtype=dtype)
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"mask must be numbers or booleans, got dtype {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape).astype(dtype)
    except ValueError:
        raise ValueError(f"mask of shape {mask.shape} does not fit the shape {shape}") from None


def _check_float(x, name):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _reduce(per, denom, reduction):
    """per (...) the weighted per-position losses -> the loss as ``reduction`` asks."""
    if reduction == "none":
        return per
    total = float(per.sum())
    if reduction == "sum":
        return total
    return total / denom if denom > 0 else 0.0


def _dscale(dloss, denom, reduction, shape, dtype):
    """The factor (...) each position's loss gradient is multiplied by."""
    if reduction == "none":
        d = np.asarray(dloss, dtype=dtype)
        if d.shape != shape:
            d = np.broadcast_to(d, shape) if d.ndim == 0 else d
            check_shape(d, shape, "gradient of the unreduced loss")
        return d
    if reduction == "sum":
        return np.full(shape, dloss, dtype=dtype)
    return np.full(shape, dloss / denom if denom > 0 else 0.0, dtype=dtype)


def _class_weight(weight, V, dtype):
    if weight is None:
        return None
    w = _check_float(weight, "weight")
    check_shape(w, (V,), "weight")
    return w.astype(dtype, copy=False)


# ----------------------------------------------------------------------------- cross-entropy
def cross_entropy_forward(logits, targets, mask=None, ignore_index=-100, weight=None,
                          reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy over the last axis. logits (..., V) float; targets (...) integer
    class indices, or (..., V) float class probabilities. ``weight`` (V,) per class;
    ``label_smoothing`` ε mixes the target with the uniform distribution, as in PyTorch:
    with indices, loss = (1 − ε)·w_y·(−log p_y) + ε/V·Σ_c w_c·(−log p_c)."""
    logits = _check_float(logits, "logits")
    _check_reduction(reduction)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last axis of at least one class, got shape {logits.shape}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    V = logits.shape[-1]
    cw = _class_weight(weight, V, logits.dtype)  # (V,) or None
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (..., V), max entry 0: no overflow
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., V) log-softmax
    targets = np.asarray(targets)
    if targets.dtype.kind == "f":
        if targets.shape == logits.shape[:-1] and targets.shape != logits.shape:
            raise TypeError(f"targets are floats of shape {targets.shape}: class indices must be integers, "
                            f"class probabilities of shape {logits.shape}")
        return _soft_cross_entropy(logp, targets, mask, cw, reduction, label_smoothing)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices or float probabilities, got dtype {targets.dtype}")
    check_shape(targets, logits.shape[:-1], "targets")
    w = _mask_weights(mask, targets.shape, logits.dtype)  # (...)
    if ignore_index is not None:
        w = w * (targets != ignore_index)
    counted = w != 0
    if np.any((targets[counted] < 0) | (targets[counted] >= V)):
        raise ValueError(f"targets must lie in [0, {V}) where counted")
    safe = np.where(counted, targets, 0)
    wy = w * cw[safe] if cw is not None else w  # (...) mask x the target's class weight
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (...)
    per = (1.0 - label_smoothing) * wy * nll
    if label_smoothing:
        smooth = -(logp * cw).sum(-1) if cw is not None else -logp.sum(-1)  # (...)
        per = per + (label_smoothing / V) * w * smooth
    denom = float(wy.sum())
    return _reduce(per, denom, reduction), ("index", logp, safe, w, wy, cw, label_smoothing, denom, reduction)


def _soft_cross_entropy(logp, probs, mask, cw, reduction, label_smoothing):
    """Class-probability targets (..., V): loss = −Σ_c w_c·t_c·log p_c, mean over positions."""
    check_shape(probs, logp.shape, "targets (probabilities)")
    V = logp.shape[-1]
    t = probs.astype(logp.dtype) * (1.0 - label_smoothing) + label_smoothing / V  # (..., V)
    wt = t * cw if cw is not None else t
    w = _mask_weights(mask, logp.shape[:-1], logp.dtype)  # (...)
    per = -(wt * logp).sum(-1) * w
    denom = float(w.sum())
    return _reduce(per, denom, reduction), ("prob", logp, wt, w, denom, reduction)


def cross_entropy_backward(cache, dloss=1.0):
    """-> dlogits (..., V). With indices: w·[(1 − ε)·w_y·(p − onehot(y)) + ε/V·(W·p − w_c)],
    W = Σ_c w_c; with probabilities: w·(Σ_c w_c t_c · p − w_c t_c); times the reduction's
    factor."""
    kind, logp = cache[0], cache[1]
    p = np.exp(logp)  # (..., V) softmax
    if kind == "prob":
        _, _, wt, w, denom, reduction = cache
        dlogits = wt.sum(-1, keepdims=True) * p - wt
    else:
        _, _, safe, w, wy, cw, eps, denom, reduction = cache
        V = logp.shape[-1]
        onehot_grad = p.copy()
        np.put_along_axis(onehot_grad, safe[..., None],
                          np.take_along_axis(p, safe[..., None], axis=-1) - 1.0, axis=-1)
        dlogits = ((1.0 - eps) * wy)[..., None] * onehot_grad
        if eps:
            W = cw.sum() if cw is not None else V
            smooth = W * p - (cw if cw is not None else 1.0)
            dlogits += (eps / V) * w[..., None] * smooth
        w = np.ones_like(w)  # already applied
    scale = _dscale(dloss, denom, reduction, w.shape, logp.dtype)
    return dlogits * (w * scale)[..., None]


# ----------------------------------------------------------------------------- mean squared error
def mse_forward(pred, target, mask=None, reduction="mean"):
    """(pred - target)^2 over counted elements, reduced; pred and target of the same shape."""
    pred = _check_float(pred, "prediction")
    target = _check_float(target, "target")
    _check_reduction(reduction)
    check_shape(target, pred.shape, "target")
    w = _mask_weights(mask, pred.shape, pred.dtype)
    diff = pred - target
    denom = float(w.sum())
    return _reduce(diff * diff * w, denom, reduction), (diff, w, denom, reduction)


def mse_backward(cache, dloss=1.0):
    diff, w, denom, reduction = cache
    return diff * w * 2.0 * _dscale(dloss, denom, reduction, diff.shape, diff.dtype)


# ----------------------------------------------------------------------------- BCE with logits
def _softplus(x):
    """log(1 + exp(x)), stable for any magnitude."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def bce_with_logits_forward(logits, target, mask=None, weight=None, pos_weight=None,
                            reduction="mean"):
    """Binary cross-entropy on logits x with targets y in [0, 1], stable for any magnitude:
    weight·[pos_weight·y·softplus(−x) + (1 − y)·softplus(x)]; ``weight`` broadcasts to x,
    ``pos_weight`` along the last axis (one per class)."""
    logits = _check_float(logits, "logits")
    target = _check_float(target, "target")
    _check_reduction(reduction)
    check_shape(target, logits.shape, "target")
    w = _mask_weights(mask, logits.shape, logits.dtype)
    if weight is not None:
        w = w * _mask_weights(_check_float(weight, "weight"), logits.shape, logits.dtype)
    pw = 1.0
    if pos_weight is not None:
        pw = _check_float(pos_weight, "pos_weight").astype(logits.dtype)
        try:
            np.broadcast_shapes(pw.shape, logits.shape)
        except ValueError:
            raise ValueError(f"pos_weight of shape {pw.shape} does not fit the logits {logits.shape}") from None
    per = (pw * target * _softplus(-logits) + (1.0 - target) * _softplus(logits)) * w
    denom = float(_mask_weights(mask, logits.shape, logits.dtype).sum())
    return _reduce(per, denom, reduction), (logits, target, w, pw, denom, reduction)


def bce_with_logits_backward(cache, dloss=1.0):
    logits, target, w, pw, denom, reduction = cache
    p = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid
    d = (pw * target * (p - 1.0) + (1.0 - target) * p) * w
    return d * _dscale(dloss, denom, reduction, logits.shape, logits.dtype)


# ----------------------------------------------------------------------------- modules
class _Loss(Module):
    """``loss(input, target, mask=None)`` -> the loss; ``backward(dloss=1.0)`` -> the gradient on
    the input of the matching forward (the tape of ``bptt.Module``)."""

    _forward = _backward = None

    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.params = {}
        self._init_grads()

    def forward(self, input, target, mask=None):
        loss, cache = type(self)._forward(input, target, mask, reduction=self.reduction, **self._options())
        self._save_for_backward(cache)
        return loss

    def backward(self, dloss=1.0):
        """-> the gradient on the input of the matching forward."""
        return type(self)._backward(self._saved_for_backward(), dloss)

    def _options(self):
        return {}

    def extra_repr(self):
        opts = {"reduction": self.reduction, **self._options()}
        return ", ".join(f"{k}={v!r}" for k, v in opts.items() if v is not None)


class CrossEntropyLoss(_Loss):
    """``torch.nn.CrossEntropyLoss`` over the last axis: class indices or probabilities,
    ``weight``, ``ignore_index`` (-100), ``reduction``, ``label_smoothing``."""

    _forward, _backward = staticmethod(cross_entropy_forward), staticmethod(cross_entropy_backward)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.weight = None if weight is None else _check_float(weight, "weight")
        self.ignore_index, self.label_smoothing = ignore_index, float(label_smoothing)

    def _options(self):
        return {"weight": self.weight, "ignore_index": self.ignore_index,
                "label_smoothing": self.label_smoothing}


class MSELoss(_Loss):
    """``torch.nn.MSELoss``: (input − target)², ``reduction``."""

    _forward, _backward = staticmethod(mse_forward), staticmethod(mse_backward)


class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``: ``weight``, ``pos_weight``, ``reduction``."""

    _forward, _backward = staticmethod(bce_with_logits_forward), staticmethod(bce_with_logits_backward)

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = None if weight is None else _check_float(weight, "weight")
        self.pos_weight = None if pos_weight is None else _check_float(pos_weight, "pos_weight")

    def _options(self):
        return {"weight": self.weight, "pos_weight": self.pos_weight}
