"""The recurrent layers ``RNN``, ``LSTM`` and ``GRU``: stacks of layers x directions, each one
cell (``bptt.cells``) unrolled over the sequence, with PyTorch's arguments, names and shapes.

Dimensions: T time, B batch, D input, H hidden, L layers, K directions (1 or 2), G gates.
Parameters per layer k and direction (suffix '' or '_reverse'):
    weight_ih_l{k}{sfx} (G*H, D or K*H)   weight_hh_l{k}{sfx} (G*H, H)
    bias_ih_l{k}{sfx}   (G*H,)            bias_hh_l{k}{sfx}   (G*H,)
States: (L*K, B, H), index k*K + direction, whatever ``batch_first`` says.
LSTM(..., proj_size=P) as PyTorch's: h (and the output) of size P through weight_hr_l{k}{sfx}
(P, H), weight_hh (4H, P), layer k > 0 reads K*P; h_n (L*K, B, P), c_n (L*K, B, H).

Variable lengths (``forward(x, state, lengths)``, lengths (B,) in 1..T in any order) mean exactly
PyTorch's ``pack_padded_sequence(x, lengths, enforce_sorted=False)`` -> layer ->
``pad_packed_sequence(total_length=T)``: each sequence runs its own steps only, its outputs past
its length are zero, the final state holds its state after its own last step, and the reverse
direction starts at its own last element (the input of each row is reversed within its length).
"""

import numpy as np

from . import memory as _memory
from .cells import gru, lstm, rnn
from .module import Module, as_float_array, check_device, check_shape, resolve_dtype


def dropout_mask(rng, shape, p, dtype):
    """The mask of inverted dropout with drop probability ``p``: 1/(1-p) where kept, 0 where
    dropped, in ``dtype``. The uniforms are drawn in the model's precision (float32 draws take
    half the time of float64 ones, and 2^-24 is fine enough for a probability)."""
    keep = 1.0 - p
    u = rng.random(shape, dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    return (u < keep).astype(dtype) / np.asarray(keep, dtype)


def reverse_index(lengths, T):
    """The time index of each row's reversal within its length: rev[t, b] = lengths[b] - 1 - t
    for t < lengths[b], t after (padding stays in place). (T, B), or None when lengths is None
    (then the reversal is the plain a[::-1]). Its own inverse."""
    if lengths is None:
        return None
    t = np.arange(T)[:, None]  # (T, 1)
    return np.where(t < lengths, lengths - 1 - t, t)


def reverse(a, rev):
    """a (T, B, ...) reversed in time, each row within its own length (``reverse_index``)."""
    if rev is None:
        return a[::-1]
    return a[rev, np.arange(a.shape[1])]


class _Recurrent(Module):
    cell = None  # the cell module
    n_states = 1  # 1: h; 2: (h, c)
    proj_size = 0  # LSTM only: the size of h when projected (0: none)

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype="float32",
        seed=None,
        cell_kwargs=None,
        memory="full",
    ):
        super().__init__()
        check_device(device)
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.dtype = resolve_dtype(dtype)
        self.cell_kwargs = dict(cell_kwargs or {})
        self.memory = memory  # "full" | "sqrt": see bptt.memory
        self.rng = np.random.default_rng(seed)  # dropout masks
        self.params = self._init_params(np.random.default_rng(seed))
        self._init_grads()

    @property
    def memory(self):
        """'full' keeps every step's cache for backward; 'sqrt' only a state every ceil(sqrt(T))
        steps, and recomputes each segment in backward (``bptt.memory``)."""
        return self._memory_mode

    @memory.setter
    def memory(self, mode):
        self.__dict__["_memory_mode"] = _memory.check_mode(mode)

    # ------------------------------------------------------------------ parameters
    def _suffix(self, k, d):
        return f"_l{k}" + ("_reverse" if d == 1 else "")

    @property
    def _h_size(self):
        """The size of h, of each direction's output: P when projected, else H."""
        return self.proj_size or self.hidden_size

    def _init_params(self, rng):
        """PyTorch's order and initialisation: every tensor U(-1/sqrt(H), 1/sqrt(H))."""
        G, H, K, R = self.cell.GATES, self.hidden_size, self.num_directions, self._h_size
        bound = 1.0 / np.sqrt(H)
        params = {}
        for k in range(self.num_layers):
            D = self.input_size if k == 0 else K * R
            for d in range(K):
                s = self._suffix(k, d)
                shapes = {f"weight_ih{s}": (G * H, D), f"weight_hh{s}": (G * H, R)}
                if self.bias:
                    shapes.update({f"bias_ih{s}": (G * H,), f"bias_hh{s}": (G * H,)})
                if self.proj_size:
                    shapes[f"weight_hr{s}"] = (self.proj_size, H)
                for name, shape in shapes.items():
                    params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        return params

    def _cell_params(self, k, d):
        """The parameters of layer k, direction d, under the cell's suffix-free names."""
        s = self._suffix(k, d)
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        names += ("weight_hr",) if self.proj_size else ()
        params = self.params  # (a property: looked up once)
        return {n: params[n + s] for n in names}

    # ------------------------------------------------------------------ checks
    def _name(self):
        return type(self).__name__

    def _check_input(self, x):
        shape = np.shape(x)  # the shape is checked first: it says more than the dtype
        if len(shape) in (2, 3) and shape[-1] == self.input_size:
            x = as_float_array(x, self.dtype, f"{self._name()} input")
        else:
            x = np.asarray(x)
        if x.ndim not in (2, 3):
            raise ValueError(
                f"{self._name()} input must be 3-D (sequence, batch, features) or 2-D unbatched, "
                f"got shape {x.shape}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{self._name()} input must have {self.input_size} features (input_size), "
                f"got shape {x.shape}"
            )
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{self._name()} input must have at least one step and one sequence, got shape {x.shape}")
        return x, batched

    def _check_states(self, states, B, batched, what):
        """None | array | tuple of arrays -> list of n_states arrays (L*K, B, H)."""
        LK = self.num_layers * self.num_directions
        shapes = [(LK, B, self._h_size), (LK, B, self.hidden_size)][: self.n_states]  # h, c
        zeros = [np.broadcast_to(np.zeros((), self.dtype), sh) for sh in shapes]  # read-only, no memory
        if states is None:
            return zeros
        if self.n_states == 2:
            if not isinstance(states, (tuple, list)) or len(states) != 2:
                raise TypeError(f"{self._name()} {what} must be a tuple (h, c) or None")
        else:
            states = (states,)
        out = []
        for i, s in enumerate(states):
            label = f"{what}[{i}]" if self.n_states == 2 else what
            shape = shapes[i]
            if s is None:
                out.append(zeros[i])
                continue
            expected = shape if batched else (shape[0], shape[2])
            if np.asarray(s).dtype.kind == "f":  # the shape first: it says more than the dtype
                check_shape(np.asarray(s), expected, f"{self._name()} {label}")
            s = as_float_array(s, self.dtype, f"{self._name()} {label}", strict=what == "initial state")
            check_shape(s, expected, f"{self._name()} {label}")
            out.append(s if batched else s[:, None, :])
        return out

    def _check_lengths(self, lengths, T, B, batched):
        """None | ints (B,) in 1..T -> None (every sequence all T steps) or an int64 array."""
        if lengths is None:
            return None
        if not batched:
            raise ValueError(f"{self._name()} lengths need batched input (3-D), got unbatched input")
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{self._name()} lengths must be integers, got dtype {arr.dtype}")
        check_shape(arr, (B,), f"{self._name()} lengths")
        bad = (arr < 1) | (arr > T)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{self._name()} lengths must be in 1..{T} (the sequence length), "
                             f"got {int(arr[i])} at index {i}")
        if (arr == T).all():
            return None  # the same computation as no lengths, on the faster path
        return arr.astype(np.int64)

    def _pack_states(self, states, batched):
        states = [s if batched else s[:, 0, :] for s in states]
        return tuple(states) if self.n_states == 2 else states[0]

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x, state=None, lengths=None, return_output=True):
        """x (T, B, D) [(B, T, D) if batch_first, (T, D) unbatched], state as PyTorch's,
        lengths (B,) or None -> out (T, B, K*H), final state (L*K, B, H) (h or (h, c)).

        ``return_output=False``: only the final state is wanted (a loss on h_n): out is None and
        the top layer's output sequence is not kept; ``backward`` then takes dout=None. With
        memory='sqrt' a training step then holds no (T, B, K*H) array of the top layer, only
        its states every ceil(sqrt(T)) steps (with 'full' the output is a view of the cache
        the backward needs anyway: nothing is saved)."""
        x, batched = self._check_input(x)  # (T, B, D) time-major
        T, B, _ = x.shape
        lengths = self._check_lengths(lengths, T, B, batched)
        rev = reverse_index(lengths, T)  # (T, B) or None
        states0 = self._check_states(state, B, batched, "initial state")
        output = bool(return_output)
        _memory.check_fits(self, T, B, keep=self.recording, output=output)  # before anything big is allocated
        K, L = self.num_directions, self.num_layers
        states_T = [np.empty_like(s) for s in states0]
        caches, masks = [], []
        inp = x
        for k in range(L):
            cell = _memory.cell_for(self.cell, self.memory, output=output or k < L - 1)
            outs = []
            for d in range(K):
                j = k * K + d
                s0 = tuple(s[j] for s in states0) if self.n_states == 2 else states0[0][j]
                xin = inp if d == 0 else reverse(inp, rev)
                out, sT, cache = cell.forward(xin, s0, self._cell_params(k, d), lengths=lengths,
                                                   **self.cell_kwargs)
                outs.append(out if d == 0 or out is None else reverse(out, rev))
                for dst, src in zip(states_T, sT if self.n_states == 2 else (sT,)):
                    dst[j] = src
                caches.append((cell, cache))
            if k == L - 1 and not output:
                inp = None
                del outs, out  # (full: views of the caches, which stay)
            else:
                inp = outs[0] if K == 1 else np.concatenate(outs, axis=-1)  # (T, B, K*H)
            mask = None
            if self.dropout > 0 and self.training and k < L - 1:
                mask = dropout_mask(self.rng, inp.shape, self.dropout, self.dtype)
                inp = inp * mask
            masks.append(mask)
        self._save_for_backward((caches, masks, x.shape, batched, rev, output))
        if not output:
            return None, self._pack_states(states_T, batched)
        out = inp if batched else inp[:, 0, :]
        if batched and self.batch_first:
            out = out.transpose(1, 0, 2)
        return out, self._pack_states(states_T, batched)

    def backward(self, dout, dstate=None, input_grad=True):
        """dout like the output, dstate like the final state (None = zeros)
        -> dx like the input, dstate0 like the initial state. Adds into ``grads``.
        dout None: zeros (required after a forward with ``return_output=False``).

        ``input_grad=False``: the input is data that takes no gradient (in PyTorch, an input
        without ``requires_grad``); the first layer's dx = da W_ih is not computed (one of the
        three matrix products of a one-layer backward) and dx is None."""
        caches, masks, (T, B, D), batched, rev, output = self._saved_for_backward(peek=True)
        K, L, H = self.num_directions, self.num_layers, self._h_size
        zero_dout = dout is None
        if zero_dout:  # zeros that take no memory (each cell copies only what it reads)
            dout = np.broadcast_to(np.zeros((), self.dtype), (T, B, K * H))
        elif not output:
            raise ValueError(f"{self._name()} forward ran with return_output=False: backward takes "
                             f"dout=None (there is no output to take a gradient)")
        else:
            dout = as_float_array(dout, self.dtype, f"{self._name()} dout", strict=False)
            expected = (T, B, K * H) if not batched else ((B, T, K * H) if self.batch_first else (T, B, K * H))
            if not batched:
                expected = (T, K * H)
            check_shape(dout, expected, f"{self._name()} dout")
            if not batched:
                dout = dout[:, None, :]
            elif self.batch_first:
                dout = dout.transpose(1, 0, 2)
        dstates_T = self._check_states(dstate, B, batched, "final-state gradient")
        self._saved_for_backward()  # the arguments fit: this backward consumes its forward
        ds0s = {}  # (layer, direction) -> the cell's initial-state gradient
        dinp = dout
        for k in range(L - 1, -1, -1):
            if masks[k] is not None:
                dinp = dinp * masks[k]
            dprev = None
            for d in range(K):
                j = k * K + d
                dsT = tuple(s[j] for s in dstates_T) if self.n_states == 2 else dstates_T[0][j]
                dout_d = dinp[:, :, d * H : (d + 1) * H]
                cell, cache = caches[j]
                dx_d, ds0, dparams = cell.backward(
                    dout_d if d == 0 or (zero_dout and k == L - 1) else reverse(dout_d, rev), dsT, cache,
                    input_grad or k > 0
                )
                caches[j] = None  # (its cache goes with the cell's temporaries)
                if dx_d is not None:
                    dx_d = dx_d if d == 0 else reverse(dx_d, rev)
                    dprev = dx_d if dprev is None else dprev + dx_d
                ds0s[j] = ds0 if self.n_states == 2 else (ds0,)
                s = self._suffix(k, d)
                for n, g in dparams.items():
                    self.grads[n + s] += g
                del dparams
            dinp = dprev
        # stacked only now, when the cells' temporaries are gone (a lower peak of memory)
        dstates0 = [np.stack([ds0s[j][i] for j in range(L * K)]) for i in range(self.n_states)]
        dx = dinp if batched or dinp is None else dinp[:, 0, :]
        if batched and self.batch_first and dx is not None:
            dx = dx.transpose(1, 0, 2)
        return dx, self._pack_states(dstates0, batched)

    def extra_repr(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.cell_kwargs.items())
        extra += f", proj_size={self.proj_size}" if self.proj_size else ""
        extra += f", memory={self.memory!r}" if self.memory != "full" else ""
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, batch_first={self.batch_first}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}, dtype={np.dtype(self.dtype).name}{extra}"
        )


class RNN(_Recurrent):
    """Elman RNN like ``torch.nn.RNN``; ``nonlinearity`` 'tanh' (default) or 'relu'."""

    cell = rnn

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None,
                 dtype="float32", seed=None, memory="full"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, seed, {"nonlinearity": nonlinearity}, memory)


class LSTM(_Recurrent):
    """LSTM like ``torch.nn.LSTM``; state (h, c). ``proj_size`` P (0 < P < hidden_size) projects h
    to P features through ``weight_hr_l{k}`` (P, H), as PyTorch does (a NumPy time loop then)."""

    cell = lstm
    n_states = 2

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype="float32",
                 seed=None, memory="full"):
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size and isinstance(hidden_size, (int, np.integer)) and proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        self.proj_size = int(proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, seed, memory=memory)


class GRU(_Recurrent):
    """GRU like ``torch.nn.GRU``: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""

    cell = gru

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype="float32", seed=None,
                 memory="full"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, seed, memory=memory)
