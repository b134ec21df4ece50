"""The head: a ``Linear`` layer applied at every time step.

Dimensions: (...) any leading dimensions (e.g. T, B), I in_features, O out_features.
"""

import numpy as np

from .cells._kernels import matmul  # a @ b, on bptt's threads when the fast path is in use
from .module import Module, as_float_array, check_device, check_sizes, resolve_dtype


def linear_forward(x, weight, bias):
    """x (..., I), weight (O, I), bias (O,) or None -> y (..., O)."""
    I, O = weight.shape[1], weight.shape[0]
    y = matmul(x.reshape(-1, I), weight.T).reshape(x.shape[:-1] + (O,))
    return y + bias if bias is not None else y


def linear_backward(dy, x, weight, with_bias):
    """dy (..., O) -> dx (..., I), dparams {'weight' (O, I), 'bias' (O,)}."""
    I, O = weight.shape[1], weight.shape[0]
    dy2 = dy.reshape(-1, O)
    dparams = {"weight": matmul(dy2.T, x.reshape(-1, I))}
    if with_bias:
        dparams["bias"] = dy2.sum(axis=0)
    return matmul(dy2, weight).reshape(dy.shape[:-1] + (I,)), dparams


class Linear(Module):
    """y = x W^T + b like ``torch.nn.Linear``, initialised U(-1/sqrt(I), 1/sqrt(I))."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32", seed=None):
        super().__init__()
        check_sizes(in_features=in_features, out_features=out_features)
        check_device(device)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        params = {"weight": rng.uniform(-k, k, (self.out_features, self.in_features))}
        if bias:
            params["bias"] = rng.uniform(-k, k, self.out_features)
        self.params = {n: p.astype(self.dtype) for n, p in params.items()}
        self._init_grads()

    def forward(self, x):
        """x (..., I) -> (..., O)."""
        shape = np.shape(x)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(
                f"Linear input must have last dimension {self.in_features}, got shape {shape}"
            )
        x = as_float_array(x, self.dtype, "Linear input")
        self._save_for_backward(x)
        return linear_forward(x, self.params["weight"], self.params.get("bias"))

    def backward(self, dy):
        """dy (..., O) -> dx (..., I); adds into grads."""
        x = self._saved_for_backward(peek=True)
        expected = x.shape[:-1] + (self.out_features,)
        if np.shape(dy) != expected:
            raise ValueError(f"Linear.backward: dy must have shape {expected}, got {np.shape(dy)}")
        dy = as_float_array(dy, self.dtype, "Linear.backward dy", strict=False)
        self._saved_for_backward()
        dx, dparams = linear_backward(dy, x, self.params["weight"], "bias" in self.params)
        for k, g in dparams.items():
            self.grads[k] += g
        return dx

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={'bias' in self.params}, dtype={np.dtype(self.dtype).name}")
