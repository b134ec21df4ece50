"""The memory of backpropagation through time: the checkpointed schedule that needs O(sqrt(T))
of it, what a step needs, and whether that fits in the machine.

``memory="full"`` (the layers' default) keeps every step's cache from the forward to the
backward: per layer and direction O(T) arrays of gates and states (``bptt.cells``).
``memory="sqrt"`` (Chen et al. 2016, "Training deep nets with sublinear memory cost"; Gruslys et
al. 2016, "Memory-efficient backpropagation through time") cuts the sequence into S segments of
n = ceil(sqrt(T)) steps:

    forward:  each segment is the cell's ``forward`` from the state the previous one ended in;
              only the segments' starting states are kept (S states), each cache is dropped
    backward: from the last segment to the first: the segment's ``forward`` again, from its
              saved state (the same kernels on the same numbers give the same cache), then the
              cell's ``backward`` through it with the state gradient the later segment passed
              back; the weight gradients of the segments are added up

so one segment's cache is alive at a time, for one more forward pass (the last segment's cache
is kept from the forward, where the backward starts, so it is computed once). What stays O(T)
is what the layer takes and returns: the input, its gradient, and the output and its gradient,
unless the caller wants the final state alone (``forward(..., return_output=False)``: a loss on
h_n, as a classifier's over the last state); then a training step of one layer holds O(sqrt(T))
states beyond its input and dx.

Variable lengths: a row's steps inside segment [t0, t1) are clip(lengths - t0, 0, n); a row
with none there carries its state (and, backward, its state gradient) through unchanged, which
is what the cells do past a row's length.

Before a forward allocates, ``check_fits`` compares ``step_bytes`` (the estimated peak of the
forward and backward that follow) with the memory available (``available_bytes``: the
environment variable ``BPTT_MEMORY_LIMIT`` if set, else MemAvailable in /proc/meminfo and the
cgroup's limit) and raises ``MemoryLimitError``, one line suggesting ``memory='sqrt'``, instead of
letting the process be killed.

Dimensions: T time, B batch, D input, H hidden, R the size of h (H, or LSTM's proj_size),
G gates, L layers, K directions, n segment length, S segments.
"""

import math
import os
import time

import numpy as np

MODES = ("full", "sqrt")
LIMIT_ENV = "BPTT_MEMORY_LIMIT"


class MemoryLimitError(MemoryError, ValueError):
    """A step would need more memory than the machine has available; the message is one line."""


def check_mode(memory):
    if memory not in MODES:
        raise ValueError(f"memory must be one of {', '.join(repr(m) for m in MODES)}, got {memory!r}")
    return memory


# ----------------------------------------------------------------------------- segments
def segment_length(T):
    """n = ceil(sqrt(T)), exactly (integer arithmetic)."""
    return math.isqrt(T - 1) + 1 if T > 1 else 1


def segment_bounds(T):
    """[(t0, t1), ...]: the S segments of n = ceil(sqrt(T)) steps (the last may be shorter)."""
    n = segment_length(T)
    return [(t0, min(t0 + n, T)) for t0 in range(0, T, n)]


def segment_lengths(lengths, t0, t1):
    """Each row's steps inside [t0, t1): (B,) in 0..t1-t0, or None when every row runs them all."""
    if lengths is None:
        return None
    seg = np.clip(lengths - t0, 0, t1 - t0)
    return None if (seg == t1 - t0).all() else seg


def _own(state):
    """A state (array or (h, c)) as arrays of its own: not views that keep a cache alive."""
    return tuple(np.array(s) for s in state) if isinstance(state, tuple) else np.array(state)


def sqrt_forward(cell, x, state0, params, lengths=None, output=True, **cell_kwargs):
    """``cell.forward`` segment by segment: x (T, B, D), state0 -> out (T, B, R), state_T, cache
    (the segments' starting states, S of them, what their forwards read, and the last segment's
    cache: the backward starts there, so it is not computed twice). ``output=False``: out is
    None, no (T, B, R) array is allocated (the caller wants the final state alone)."""
    T = x.shape[0]
    bounds = segment_bounds(T)
    starts, out, state = [], None, _own(state0)  # (the caller's arrays may change before backward)
    for t0, t1 in bounds:
        starts.append(state)
        seg_out, state, seg_cache = cell.forward(x[t0:t1], state, params,
                                                 lengths=segment_lengths(lengths, t0, t1), **cell_kwargs)
        if output:
            if out is None:
                out = np.empty((T,) + seg_out.shape[1:], seg_out.dtype)
            out[t0:t1] = seg_out
        state = _own(state)
        del seg_out
        if t1 < T:
            del seg_cache  # the segment's cache goes now
    return out, state, (x, starts, bounds, params, lengths, cell_kwargs, [seg_cache])


def sqrt_backward(cell, dout, dstate_T, cache, input_grad=True):
    """``cell.backward`` over the segments from the last, each recomputed from its starting
    state (the last kept from the forward): dout (T, B, R), dstate_T -> dx (T, B, D) (None
    without ``input_grad``), dstate0, dparams (summed over segments)."""
    x, starts, bounds, params, lengths, cell_kwargs, last = cache
    dx, dparams, dstate = None, {}, dstate_T
    for (t0, t1), state in zip(reversed(bounds), reversed(starts)):
        seg = segment_lengths(lengths, t0, t1)
        if last:
            seg_cache = last.pop()  # (the list is emptied: a second backward recomputes it)
        else:
            _, _, seg_cache = cell.forward(x[t0:t1], state, params, lengths=seg, **cell_kwargs)
        seg_dx, dstate, seg_dparams = cell.backward(dout[t0:t1], dstate, seg_cache, input_grad)
        del seg_cache
        if input_grad:
            if dx is None:
                dx = np.empty((x.shape[0],) + seg_dx.shape[1:], seg_dx.dtype)
            dx[t0:t1] = seg_dx
        for name, g in seg_dparams.items():
            if name in dparams:
                dparams[name] += g
            else:  # a copy: a backend may hand out one array under two names (the biases)
                dparams[name] = np.array(g)
    return dx, dstate, dparams


class Checkpointed:
    """A cell module (``bptt.cells.lstm``, ...) whose ``forward``/``backward`` run in sqrt(T)
    segments: the same signatures and results, the memory of one segment. ``output=False``:
    ``forward`` returns None in place of the output (not allocated)."""

    def __init__(self, cell, output=True):
        self.cell, self.output = cell, bool(output)
        self.GATES = cell.GATES

    def forward(self, x, state0, params, lengths=None, **cell_kwargs):
        return sqrt_forward(self.cell, x, state0, params, lengths, self.output, **cell_kwargs)

    def backward(self, dout, dstate_T, cache, input_grad=True):
        return sqrt_backward(self.cell, dout, dstate_T, cache, input_grad)


def cell_for(cell, memory, output=True):
    """The cell functions a layer in this memory mode runs (``output``: whether the layer's
    output sequence is wanted; with 'full' it is a view of the cache, so it is always there)."""
    return cell if memory == "full" else Checkpointed(cell, output)


# ----------------------------------------------------------------------------- estimates
def _per_step(layer, k):
    """Floats per step and row for layer k, one direction: (cache, forward temporaries,
    backward temporaries)."""
    G, H, R = layer.cell.GATES, layer.hidden_size, layer._h_size
    D = layer.input_size if k == 0 else layer.num_directions * R
    cache = {1: R, 3: R + 4 * H, 4: R + 6 * H}[G]  # rnn hs; gru hs, gates, ghn; lstm hs, cs, gates, tanh(c)
    forward = G * H  # the input projection, alive while the loop runs
    backward = (G if G != 3 else 4) * H + D + R  # gate gradients, dx, a contiguous dout
    return cache, forward, backward, D


def step_bytes(layer, T, B, memory=None, keep=True, output=True):
    """Estimated peak bytes of the layer's forward over (T, B) and, when ``keep`` (a training
    forward), the backward after it, in ``memory`` mode (default: the layer's); ``output``
    False: the forward returns the final state alone (``return_output=False``)."""
    memory = check_mode(memory or layer.memory)
    K, L, R = layer.num_directions, layer.num_layers, layer._h_size
    n, S = segment_length(T), len(segment_bounds(T))
    held, peak = 0, 0  # floats: kept between forward and backward; the largest transient on top
    for k in range(L):
        cache, fwd, bwd, D = _per_step(layer, k)
        drop = 2 * T * B * K * R if layer.dropout > 0 and k < L - 1 else 0  # the mask, the masked output
        reversed_x = (K - 1) * T * B * D  # the reverse direction reads its input reversed
        out = T * B * R if output or k < L - 1 else 0  # a direction's output sequence
        if memory == "full":
            kept = K * cache * T * B  # a direction's output is a view of its cache
            joined = (K - 1) * K * out  # the directions' outputs side by side
            fwd_tmp = fwd * T * B
            bwd_tmp = (bwd + (K - 1) * (R + 2 * D)) * T * B  # with two: reversed copies, their sum
        else:
            last = K * cache * n * B  # each direction's last segment's cache, kept for the backward
            kept = K * S * B * (R + _c_size(layer))  # the segments' starting states
            joined = K * out  # the layer's output (each direction's own freed once joined)
            fwd_tmp = (cache + fwd) * n * B + out + last * (K - 1) // K  # a segment's work, the output
            bwd_tmp = (cache + fwd + bwd) * n * B + K * T * B * D  # a segment's work (the first's
            # cache the kept one), dx
        if keep:
            peak = max(peak, held + kept + fwd_tmp, held + kept + joined + drop + bwd_tmp)
            held += kept + joined + drop + reversed_x + (last if memory == "sqrt" else 0)
        else:  # nothing kept for backward: one layer's output and one direction's work at a time
            work = cache * T * B + fwd_tmp if memory == "full" else fwd_tmp
            peak = max(peak, T * B * D + joined + drop + reversed_x + work)
    if keep:
        peak = max(peak, held + T * B * K * R * 2 * output)  # the output's gradient arriving, and its copy
    return int(peak * np.dtype(layer.dtype).itemsize)


def _c_size(layer):
    """The size of the second state (LSTM's c) per row, 0 for RNN and GRU."""
    return layer.hidden_size if layer.n_states == 2 else 0


def _read_limit():
    """BPTT_MEMORY_LIMIT as bytes (a number with an optional K, M, G or T suffix), or None."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if not text:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    scale = 1
    if text[-1].upper() in units:
        scale, text = units[text[-1].upper()], text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise ValueError(f"{LIMIT_ENV} must be a number of bytes (e.g. 500M, 2G), got "
                         f"{os.environ[LIMIT_ENV]!r}") from None
    if not value > 0:
        raise ValueError(f"{LIMIT_ENV} must be positive, got {os.environ[LIMIT_ENV]!r}")
    return int(value)


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available():
    """The room left under a cgroup v2 or v1 memory limit, or None when there is none."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f:
                text = f.read().strip()
            if text == "max" or int(text) >= 1 << 60:
                return None
            with open(usage) as f:
                return max(0, int(text) - int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return None


def available_bytes():
    """(bytes, where from) this process may still allocate: BPTT_MEMORY_LIMIT when set, else
    the smaller of MemAvailable and the cgroup's room; (None, None) when unknown."""
    limit = _read_limit()
    if limit is not None:
        return limit, LIMIT_ENV
    found = [(b, w) for b, w in ((_meminfo_available(), "MemAvailable"), (_cgroup_available(), "the cgroup limit"))
             if b is not None]
    return min(found) if found else (None, None)


def _gib(n):
    if n >= 1 << 28:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / (1 << 10):.1f} KiB"


# The last reading of the machine's memory: (time.monotonic(), bytes). Reading /proc and the
# cgroup's files costs about half a millisecond, as much as a small layer's whole step; a step
# that needs at most 1/RECENT_SHARE of what was available less than RECENT_SECONDS ago fits
# without a new reading. BPTT_MEMORY_LIMIT, when set, is always read afresh (it is cheap).
RECENT_SECONDS = 1.0
RECENT_SHARE = 4
_recent = [-math.inf, 0]


def keep_freed_memory():
    """Ask the C library's malloc (glibc) to keep the memory a process frees for its next
    allocations: no trimming of the heap below 256 MiB free, and arrays up to 32 MiB from the
    heap rather than each from its own mmap. A training step's arrays then reuse the memory the
    step before freed instead of fresh pages, each of which the kernel must fault in and zero
    (a small classifier's epoch: about 10,000 page faults without it, 100 with it; up to a
    fifth of its time on a 2-core VM). Results do not change. Process-wide, so it is for bptt's
    own processes: the classify command and its --jobs workers call it. -> True when set (False
    where there is no glibc mallopt: nothing changes)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_TRIM_THRESHOLD, 256 << 20)) and bool(mallopt(M_MMAP_THRESHOLD, 32 << 20))


def _release_pool():
    """Give the buffers the compiled loops keep for reuse back to the system -> bytes freed
    (they count as used in the machine's reading, though the next step could reuse them)."""
    from .cells import release_buffers

    return release_buffers()


def check_fits(layer, T, B, keep=True, output=True):
    """Raise ``MemoryLimitError`` when the step the layer is about to run (``step_bytes``) needs
    more than ``available_bytes``; nothing when it fits or nothing is known."""
    need = step_bytes(layer, T, B, keep=keep, output=output)
    if (_read_limit() is None and time.monotonic() - _recent[0] < RECENT_SECONDS
            and need * RECENT_SHARE <= _recent[1]):
        return
    have, where = available_bytes()
    if have is None:
        return
    if need > have and _release_pool():  # the compiled loops' free buffers go back first
        have, where = available_bytes()
    if where != LIMIT_ENV:
        _recent[:] = [time.monotonic(), have]
    if need <= have:
        return
    what = "a training step" if keep else "a forward"
    head = (f"{type(layer).__name__}: {what} over T={T} steps, batch {B} needs about {_gib(need)} "
            f"(memory={layer.memory!r}), more than the {_gib(have)} available ({where})")
    if layer.memory == "full":
        sqrt = step_bytes(layer, T, B, "sqrt", keep, output)
        if sqrt <= have:
            raise MemoryLimitError(f"{head}; memory='sqrt' (bptt train --memory sqrt) needs about "
                                   f"{_gib(sqrt)}, for one more forward pass")
    raise MemoryLimitError(f"{head}; use shorter sequences or a smaller batch")
