"""What every layer shares: a ``params`` dict, a ``grads`` dict under the same keys, and
PyTorch-style ``zero_grad`` / ``state_dict`` / ``load_state_dict``. Plus the input checks."""

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def resolve_dtype(dtype):
    """'float32' | 'float64' | np.float32 | np.float64 -> the NumPy scalar type."""
    try:
        key = np.dtype(dtype).name if dtype is not None else None  # np.dtype(None) is float64
    except TypeError:
        key = None
    if key not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return DTYPES[key]


def as_float_array(x, dtype, name):
    """Return x as an array of ``dtype``; integer, boolean or complex input is a TypeError."""
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def check_sizes(**sizes):
    """Raise ValueError unless every size is a positive integer (bools are not sizes)."""
    for name, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def check_shape(arr, expected, name):
    """Raise ValueError naming the expected and the actual shape (None in expected = any)."""
    ok = arr.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(arr.shape)}")


class Module:
    """Base of the layers: ``params`` and ``grads`` are dicts of arrays under PyTorch's names."""

    params: dict
    grads: dict
    dtype: type

    def _init_grads(self):
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0.0)

    def num_parameters(self):
        return sum(p.size for p in self.params.values())

    def state_dict(self):
        """A copy of the parameters as plain NumPy arrays under PyTorch's keys."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load arrays (e.g. a torch state dict converted with ``.numpy()``); keys and shapes must
        match exactly, and all are checked before any is loaded. Values are copied into the
        existing arrays (which a composite model shares with its parts), cast to its dtype."""
        missing = sorted(set(self.params) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(self.params))
        if missing or unexpected:
            raise ValueError(
                f"weights do not match the model: missing {missing}, unexpected {unexpected}"
            )
        arrays = {}
        for k, v in state_dict.items():
            v = np.asarray(v)
            if v.shape != self.params[k].shape:
                raise ValueError(
                    f"{k} must have shape {self.params[k].shape}, got {v.shape}"
                )
            if v.dtype.kind not in "fiu":
                raise TypeError(f"{k} must be numeric, got dtype {v.dtype}")
            arrays[k] = v
        for k, v in arrays.items():
            self.params[k][...] = v
