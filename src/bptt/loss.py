"""Losses with forward and backward, averaged over the counted positions.

Each loss is a pair of pure functions ``*_forward(...) -> (loss, cache)`` and
``*_backward(cache, dloss=1.0) -> dinput``, and a small class with PyTorch's name holding the cache.
A ``mask`` (1 = count, 0 = skip) removes positions from both the sum and the count; when nothing
is counted the loss is 0 and so is its gradient.

Dimensions: (...) leading positions (e.g. T, B), V classes.
"""

import numpy as np

from .module import check_shape


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


# ----------------------------------------------------------------------------- cross-entropy
def cross_entropy_forward(logits, targets, mask=None, ignore_index=None):
    """Softmax cross-entropy. logits (..., V) float, targets (...) integer class indices."""
    logits = _check_float(logits, "logits")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last axis of at least one class, got shape {logits.shape}")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
    check_shape(targets, logits.shape[:-1], "targets")
    V = logits.shape[-1]
    w = _mask_weights(mask, targets.shape, logits.dtype)  # (...)
    if ignore_index is not None:
        w = w * (targets != ignore_index)
    counted = w != 0
    if np.any((targets[counted] < 0) | (targets[counted] >= V)):
        raise ValueError(f"targets must lie in [0, {V}) where counted")
    safe = np.where(counted, targets, 0)
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (..., V), max entry 0: no overflow
    log_z = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., 1)
    logp = shifted - log_z  # (..., V) log-softmax
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (...)
    n = w.sum()
    loss = float((nll * w).sum() / n) if n > 0 else 0.0
    return loss, (logp, safe, w, n)


def cross_entropy_backward(cache, dloss=1.0):
    """-> dlogits (..., V) = (softmax - onehot(target)) * weight / count."""
    logp, safe, w, n = cache
    if n == 0:
        return np.zeros_like(logp)
    dlogits = np.exp(logp)
    np.put_along_axis(
        dlogits, safe[..., None], np.take_along_axis(dlogits, safe[..., None], axis=-1) - 1.0, axis=-1
    )
    return dlogits * (w * (dloss / n))[..., None]


# ----------------------------------------------------------------------------- mean squared error
def mse_forward(pred, target, mask=None):
    """mean((pred - target)^2) over counted elements; pred and target of the same shape."""
    pred = _check_float(pred, "prediction")
    target = _check_float(target, "target")
    check_shape(target, pred.shape, "target")
    w = _mask_weights(mask, pred.shape, pred.dtype)
    diff = pred - target
    n = w.sum()
    loss = float((diff * diff * w).sum() / n) if n > 0 else 0.0
    return loss, (diff, w, n)


def mse_backward(cache, dloss=1.0):
    diff, w, n = cache
    return diff * w * (2.0 * dloss / n) if n > 0 else np.zeros_like(diff)


# ----------------------------------------------------------------------------- BCE with logits
def bce_with_logits_forward(logits, target, mask=None):
    """Binary cross-entropy on logits, stable for any magnitude:
    max(x, 0) - x*y + log(1 + exp(-|x|))."""
    logits = _check_float(logits, "logits")
    target = _check_float(target, "target")
    check_shape(target, logits.shape, "target")
    w = _mask_weights(mask, logits.shape, logits.dtype)
    per = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    n = w.sum()
    loss = float((per * w).sum() / n) if n > 0 else 0.0
    return loss, (logits, target, w, n)


def bce_with_logits_backward(cache, dloss=1.0):
    logits, target, w, n = cache
    if n == 0:
        return np.zeros_like(logits)
    p = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid
    return (p - target) * w * (dloss / n)


# ----------------------------------------------------------------------------- classes
class _Loss:
    _forward = _backward = None

    def __init__(self):
        self._cache = None

    def forward(self, input, target, mask=None):
        loss, self._cache = type(self)._forward(input, target, mask, **self._options())
        return loss

    __call__ = forward

    def backward(self, dloss=1.0):
        """-> the gradient on the input of the latest forward."""
        if self._cache is None:
            raise ValueError(f"{type(self).__name__}.backward called before forward")
        return type(self)._backward(self._cache, dloss)

    def _options(self):
        return {}


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over the last axis, mean over counted positions."""

    _forward, _backward = staticmethod(cross_entropy_forward), staticmethod(cross_entropy_backward)

    def __init__(self, ignore_index=None):
        super().__init__()
        self.ignore_index = ignore_index

    def _options(self):
        return {"ignore_index": self.ignore_index}


class MSELoss(_Loss):
    _forward, _backward = staticmethod(mse_forward), staticmethod(mse_backward)


class BCEWithLogitsLoss(_Loss):
    _forward, _backward = staticmethod(bce_with_logits_forward), staticmethod(
        bce_with_logits_backward
    )
