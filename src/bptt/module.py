"""``Module``: what every layer and model shares, PyTorch's habits without autograd.

A module holds its own parameters in ``params`` and their gradients in ``grads`` (two dicts with
the same keys, PyTorch's names), and its sub-modules as attributes, as ``torch.nn.Module`` does:

    class Tagger(bptt.Module):
        def __init__(self):
            super().__init__()
            self.embedding = bptt.Embedding(100, 16)     # registered as a sub-module
            self.rnn = bptt.GRU(16, 32)
            self.head = bptt.Linear(32, 5)

        def forward(self, ids):                         # the data flow ...
            out, _ = self.rnn(self.embedding(ids))
            return self.head(out)

        def backward(self, dlogits):                    # ... read in reverse, one call a line
            dx, _ = self.rnn.backward(self.head.backward(dlogits))
            self.embedding.backward(dx)

``model.params`` / ``model.grads`` then span every sub-module under dotted names
(``rnn.weight_ih_l0``, ...), the very arrays the parts hold, so an optimizer updates them in
place; ``parameters()``, ``named_parameters()``, ``state_dict()``, ``load_state_dict()``,
``train()``, ``eval()``, ``zero_grad()``, ``double()`` walk the sub-modules.

The cache between forward and backward is a tape. Each forward in training mode, outside
``no_grad()``, pushes what its backward needs; each backward pops the latest entry, so a module
used several times in one step (a step cell in a decoder loop, one ``Linear`` shared by two
branches) gets one backward per forward, in reverse order, and its gradients add up. A backward
with nothing on the tape is an error, never a silent reuse. A forward in eval mode or inside
``no_grad()`` records nothing. An optimizer's ``step()`` empties the tapes of the modules it
updates: a cache from before the step belongs to weights that are gone.

Plus the input checks the layers share.
"""

import contextlib
import threading
from collections import OrderedDict

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}

_state = threading.local()  # per thread: grad_enabled, cast_inputs


def grad_enabled():
    """False inside ``no_grad()``: forwards record nothing for backward."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Forwards inside record no cache (validation, sampling), like ``torch.no_grad()``."""
    before = grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = before


@contextlib.contextmanager
def cast_inputs():
    """Inside, a float input whose dtype differs from the layer's is cast to it silently;
    outside, such an input is a TypeError (as in PyTorch)."""
    before = getattr(_state, "cast_inputs", False)
    _state.cast_inputs = True
    try:
        yield
    finally:
        _state.cast_inputs = before


def resolve_dtype(dtype):
    """'float32' | 'float64' | np.float32 | np.float64 -> the NumPy scalar type."""
    try:
        key = np.dtype(dtype).name if dtype is not None else None  # np.dtype(None) is float64
    except TypeError:
        key = None
    if key not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return DTYPES[key]


def as_float_array(x, dtype, name, strict=True):
    """Return x as an array of ``dtype``. Integer, boolean or complex input is a TypeError; so is
    an array of the other float type (float64 into a float32 layer), unless inside
    ``cast_inputs()`` or not ``strict`` (gradients arriving at a backward are cast). Lists and
    scalars take the layer's dtype."""
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if strict and arr.dtype != dtype and isinstance(x, np.ndarray) and not getattr(_state, "cast_inputs", False):
        want = np.dtype(dtype).name
        raise TypeError(
            f"{name} is {arr.dtype} but the layer's weights are {want}: pass "
            f"x.astype(np.{want}), convert the model with .{'double' if want == 'float64' else 'float'}(), "
            f"or call inside bptt.cast_inputs()"
        )
    return arr.astype(dtype, copy=False)


def check_sizes(**sizes):
    """Raise ValueError unless every size is a positive integer (bools are not sizes)."""
    for name, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def check_device(device):
    """PyTorch's ``device`` argument: bptt runs on the CPU, so None or 'cpu'."""
    if device is not None and str(device) != "cpu":
        raise ValueError(f"bptt runs on the CPU only; device must be None or 'cpu', got {device!r}")


def check_shape(arr, expected, name):
    """Raise ValueError naming the expected and the actual shape (None in expected = any)."""
    ok = arr.ndim == len(expected) and all(e is None or e == a for e, a in zip(expected, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(arr.shape)}")


class ParamDict(dict):
    """name -> array, as ``module.params`` returns it; knows its module, so that
    ``Adam(model.params, lr=...)`` finds the gradients (``.grads``)."""

    def __init__(self, owner, items=()):
        super().__init__(items)
        self.owner = owner

    @property
    def grads(self):
        return self.owner.grads


class Parameters(list):
    """What ``module.parameters()`` returns: the parameter arrays (a list, iterable as in torch),
    with ``params`` and ``grads`` dicts under their names so an optimizer can take it."""

    def __init__(self, owner):
        self.owner = owner
        self.params, self.grads = owner.params, owner.grads
        super().__init__(self.params.values())


class IncompatibleKeys(tuple):
    """(missing_keys, unexpected_keys), as ``load_state_dict(strict=False)`` returns them."""

    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (missing, unexpected))

    missing_keys = property(lambda self: self[0])
    unexpected_keys = property(lambda self: self[1])


class Module:
    """Base of every layer and model. Subclasses call ``super().__init__()``, set ``self.params``
    (a dict of arrays under PyTorch's names; ``self._init_grads()`` makes ``grads`` to match) and
    assign sub-modules as attributes, and define ``forward`` and ``backward``."""

    dtype = np.float32

    def __init__(self):
        d = self.__dict__
        d.setdefault("_modules", OrderedDict())
        d.setdefault("_params", ParamDict(self))
        d.setdefault("_grads", {})
        d.setdefault("_tape", [])
        d.setdefault("training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        Module.__init__(self)  # a subclass that set attributes before super().__init__()
        if name == "params":
            self.__dict__["_params"] = ParamDict(self, value)
            return
        if name == "grads":
            self.__dict__["_grads"] = dict(value)
            return
        if isinstance(value, Module):
            self._modules[name] = value
        elif name in self._modules:
            del self._modules[name]  # e.g. ``self.head = None``
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    @property
    def params(self):
        """name -> array: the module's own, then each sub-module's as ``child.name``."""
        Module.__init__(self)
        if not self._modules:
            return self._params
        out = ParamDict(self, self._params)
        for child, m in self._modules.items():
            out.update((f"{child}.{k}", v) for k, v in m.params.items())
        return out

    @property
    def grads(self):
        """name -> gradient array, the same keys as ``params``."""
        Module.__init__(self)
        if not self._modules:
            return self._grads
        out = dict(self._grads)
        for child, m in self._modules.items():
            out.update((f"{child}.{k}", v) for k, v in m.grads.items())
        return out

    def _init_grads(self):
        self.grads = {k: np.zeros_like(v) for k, v in self._params.items()}

    def named_modules(self, prefix=""):
        """(name, module) for this module ('' ) and every sub-module, depth first."""
        yield prefix, self
        for child, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{child}" if prefix else child)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self):
        """(name, array) pairs, as ``torch.nn.Module.named_parameters``."""
        return iter(self.params.items())

    def parameters(self):
        """The parameter arrays; an optimizer takes this (``Adam(model.parameters(), lr=...)``)."""
        return Parameters(self)

    def num_parameters(self):
        return sum(p.size for p in self.params.values())

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode=True):
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0.0)

    # ------------------------------------------------------------------ the tape
    @property
    def recording(self):
        """Whether a forward now records its cache for backward."""
        return self.training and grad_enabled()

    def _save_for_backward(self, cache):
        if self.recording:
            self._tape.append(cache)

    def _saved_for_backward(self, peek=False):
        """Pop the latest forward's cache (only look at it with ``peek``, so that a backward whose
        arguments are refused leaves it for the corrected call); an error if there is none."""
        Module.__init__(self)
        if not self._tape:
            raise RuntimeError(
                f"{type(self).__name__}.backward has no forward to go with: each train-mode "
                f"forward is used by one backward (a forward in eval mode or inside "
                f"bptt.no_grad() records nothing, and an optimizer step drops older ones)"
            )
        return self._tape[-1] if peek else self._tape.pop()

    def clear_tape(self):
        """Drop every recorded forward of this module and its sub-modules."""
        for m in self.modules():
            m._tape.clear()

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no backward")

    # ------------------------------------------------------------------ dtype
    def to(self, dtype):
        """Convert every parameter and gradient to ``dtype`` (in place of the arrays; build
        optimizers afterwards). Returns the module."""
        dt = resolve_dtype(dtype)
        for m in self.modules():
            m.__dict__["_params"] = ParamDict(m, {k: v.astype(dt) for k, v in m._params.items()})
            m.__dict__["_grads"] = {k: v.astype(dt) for k, v in m._grads.items()}
            m._tape.clear()
            m.__dict__["dtype"] = dt
        return self

    def double(self):
        return self.to("float64")

    def float(self):
        return self.to("float32")

    # ------------------------------------------------------------------ weights in and out
    def state_dict(self):
        """A copy of the parameters as plain NumPy arrays under PyTorch's keys."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load arrays (e.g. a torch state dict converted with ``.numpy()``). With ``strict`` the
        keys must match exactly; without, missing and unexpected keys are returned. Shapes must
        match; all are checked before any is loaded. Values are copied into the existing arrays
        (which a composite model shares with its parts), cast to their dtype."""
        params = self.params
        missing = sorted(set(params) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(params))
        if strict and (missing or unexpected):
            raise ValueError(
                f"weights do not match the model: missing {missing}, unexpected {unexpected}"
            )
        arrays = {}
        for k, v in state_dict.items():
            if k not in params:
                continue
            v = np.asarray(v)
            if v.shape != params[k].shape:
                raise ValueError(f"{k} must have shape {params[k].shape}, got {v.shape}")
            if v.dtype.kind not in "fiu":
                raise TypeError(f"{k} must be numeric, got dtype {v.dtype}")
            arrays[k] = v
        for k, v in arrays.items():
            params[k][...] = v
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for child, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({child}): {sub}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another, like ``torch.nn.Sequential``; the backward calls their
    backwards in reverse. A recurrent layer in the chain passes on its output and drops its final
    state (its backward gets zeros for it); parameters are named ``0.weight``, ``1.weight_ih_l0``,
    ... as in torch."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes modules, got {type(m).__name__} at position {i}")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
            if isinstance(x, tuple):  # a recurrent layer: (output, final state)
                x = x[0]
        return x

    def backward(self, dy):
        for m in reversed(self._modules.values()):
            dy = m.backward(dy)
            if isinstance(dy, tuple):  # (dx, dstate0)
                dy = dy[0]
        return dy
