"""One step at a time: ``RNNCell``, ``LSTMCell``, ``GRUCell`` like ``torch.nn.RNNCell`` etc., for
loops the user writes (decoders, sampling, teacher forcing).

Each is one direction of one layer: parameters ``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H),
``bias_ih``, ``bias_hh`` (G*H,), the cells' pure ``step_forward`` / ``step_backward``
(``bptt.cells``) wrapped. Every forward in training mode records its cache on a stack; every
backward takes the latest one off it (``bptt.Module``'s tape), so the backward calls of a loop run in the reverse order of
its forward calls, each adding its weight gradients into ``grads``::

    h = None
    for t in range(T):                      # forward, e.g. a decoder fed its own outputs
        h = cell.forward(x[t], h)
        ...
    dh = zeros
    for t in reversed(range(T)):            # backward: one call per forward call
        dx_t, dh = cell.backward(dh + dout[t])

``eval()`` and ``bptt.no_grad()`` record nothing (then backward is not available). Dimensions: B batch, D input,
H hidden, G gates (1 RNN, 4 LSTM, 3 GRU).
"""

import numpy as np

from .cells import gru, lstm, rnn
from .module import Module, as_float_array, check_device, check_shape, check_sizes, resolve_dtype


class _StepCell(Module):
    cell = None
    n_states = 1

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32", seed=None,
                 **cell_kwargs):
        super().__init__()
        check_device(device)
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        self.dtype = resolve_dtype(dtype)
        self.cell_kwargs = cell_kwargs
        G, H = self.cell.GATES, self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update({"bias_ih": (G * H,), "bias_hh": (G * H,)})
        rng, bound = np.random.default_rng(seed), 1.0 / np.sqrt(H)  # torch's U(-1/sqrt(H), 1/sqrt(H))
        self.params = {k: rng.uniform(-bound, bound, s).astype(self.dtype) for k, s in shapes.items()}
        self._init_grads()

    def _name(self):
        return type(self).__name__

    def _check_x(self, x_t):
        x_t = as_float_array(x_t, self.dtype, f"{self._name()} input")
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != self.input_size:
            raise ValueError(f"{self._name()} input must have shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {x_t.shape}")
        return (x_t, True) if x_t.ndim == 2 else (x_t[None], False)

    def _check_state(self, state, B, batched, what, strict=True):
        """None | array | (h, c) -> a tuple of n_states arrays (B, H)."""
        zeros = np.zeros((B, self.hidden_size), self.dtype)
        if state is None:
            return (zeros,) * self.n_states
        if self.n_states == 2:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{self._name()} {what} must be a tuple (h, c) or None")
        else:
            state = (state,)
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for i, s in enumerate(state):
            label = f"{self._name()} {what}" + (f"[{i}]" if self.n_states == 2 else "")
            if s is None:
                out.append(zeros)
                continue
            s = as_float_array(s, self.dtype, label, strict=strict)
            check_shape(s, shape, label)
            out.append(s if batched else s[None])
        return tuple(out)

    def _unpack(self, states, batched):
        states = tuple(s if batched else s[0] for s in states)
        return states if self.n_states == 2 else states[0]

    def forward(self, x_t, state=None):
        """x_t (B, D) or (D,), state like the result (None = zeros) -> the next state:
        h (B, H) for RNNCell / GRUCell, (h, c) for LSTMCell."""
        x_t, batched = self._check_x(x_t)
        prev = self._check_state(state, x_t.shape[0], batched, "state")
        new, cache = self.cell.step_forward(x_t, prev if self.n_states == 2 else prev[0], self.params,
                                            **self.cell_kwargs)
        self._save_for_backward((cache, batched))
        return self._unpack(new if self.n_states == 2 else (new,), batched)

    def backward(self, dstate):
        """dstate: the gradient on the state the latest unmatched forward returned
        -> dx_t like its input, the gradient on the state it was given. Adds into ``grads``."""
        cache, batched = self._saved_for_backward(peek=True)
        B = cache[0].shape[0]
        dnew = self._check_state(dstate, B, batched, "state gradient", strict=False)
        self._saved_for_backward()  # the arguments fit: this backward consumes its forward
        dx_t, dprev, dparams = self.cell.step_backward(dnew if self.n_states == 2 else dnew[0], cache)
        for k, g in dparams.items():
            self.grads[k] += g
        return (dx_t if batched else dx_t[0]), self._unpack(dprev if self.n_states == 2 else (dprev,), batched)

    def extra_repr(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.cell_kwargs.items())
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, dtype={np.dtype(self.dtype).name}{extra}"


class RNNCell(_StepCell):
    """One step of an Elman RNN like ``torch.nn.RNNCell``; ``nonlinearity`` 'tanh' or 'relu'."""

    cell = rnn

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype="float32",
                 seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device, dtype, seed, nonlinearity=nonlinearity)


class LSTMCell(_StepCell):
    """One LSTM step like ``torch.nn.LSTMCell``: state (h, c)."""

    cell = lstm
    n_states = 2


class GRUCell(_StepCell):
    """One GRU step like ``torch.nn.GRUCell``."""

    cell = gru
