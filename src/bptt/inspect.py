"""Looking inside a recurrent network: how the gradient travels back through time, and what the
gates and hidden units do on a text. Pure functions over the step functions of ``bptt.cells``
(the reference math), in float64; drawing is in ``bptt.plots``.

Gradient flow. With the loss on the last step only, L_T = sum_b v . h_T[b] for a fixed vector v,
the gradient on every earlier state is what one backward step after another returns:

    dL/dh_T = v,     (dL/dh_{t-1}, dL/dc_{t-1}) = step_backward((dL/dh_t, dL/dc_t), cache_t)

so its size against the lag T - t shows how far back a learning signal reaches. For the LSTM the
c-path is reported as the *total* gradient on the cell c_t, the part that arrives through the
cell of step t+1 (dc * f) plus the part through h_t = o * tanh(c_t) -- the ``dc`` of the
derivation in ``bptt.cells.lstm``.

Dimensions: T time, B batch, D input, H hidden, V vocabulary.
"""

import numpy as np

from .cells import CELLS

CELL_KINDS = ("rnn", "rnn_relu", "lstm", "gru")  # rnn_relu: the RNN cell with relu
STATE_NAMES = {"rnn": ("h",), "rnn_relu": ("h",), "lstm": ("h", "c"), "gru": ("h",)}
# what gate_activations returns for each cell, in display order
GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "o", "g", "c", "h"), "gru": ("r", "z", "n", "h")}
# the range of each activation (None: unbounded, like the LSTM cell)
GATE_RANGES = {"i": (0.0, 1.0), "f": (0.0, 1.0), "o": (0.0, 1.0), "r": (0.0, 1.0), "z": (0.0, 1.0),
               "g": (-1.0, 1.0), "n": (-1.0, 1.0), "h": (-1.0, 1.0), "c": None}


def _f64(params):
    return {k: np.array(v, dtype=np.float64) for k, v in params.items()}


def _cell_and_kwargs(kind, nonlinearity=None):
    """'rnn' | 'rnn_relu' | 'lstm' | 'gru' (+ an RNN nonlinearity) -> (cell module, step kwargs)."""
    if kind not in CELL_KINDS:
        raise ValueError(f"cell must be one of {', '.join(CELL_KINDS)}, got {kind!r}")
    if kind in ("rnn", "rnn_relu"):
        nl = nonlinearity or ("relu" if kind == "rnn_relu" else "tanh")
        if nl not in ("tanh", "relu", "linear"):
            raise ValueError(f"nonlinearity must be 'tanh', 'relu' or 'linear', got {nl!r}")
        return CELLS["rnn"], {"nonlinearity": nl}
    return CELLS[kind], {}


# ----------------------------------------------------------------------------- linear RNN
# h_t = W_ih x_t + b + W_hh h_{t-1}: only here, so that gradient norms have an exact closed form.
def _linear_step_forward(x_t, h_prev, params):
    a = x_t @ params["weight_ih"].T + h_prev @ params["weight_hh"].T  # (B, H)
    if "bias_ih" in params:
        a = a + params["bias_ih"] + params["bias_hh"]
    return a, params


def _linear_step_backward(dh, params):
    return None, dh @ params["weight_hh"], None  # dh_prev = dh W_hh


# ----------------------------------------------------------------------------- gradient flow
def state_gradients(kind, params, x, v, state0=None, nonlinearity=None):
    """The gradient of L_T = sum_b v . h_T[b] on every state of one layer.

    kind: 'rnn' | 'rnn_relu' | 'lstm' | 'gru'; params: the layer's weights under the cell's names
    (``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H), biases optional); x (T, B, D); v (H,);
    state0 None (zeros), h0 (B, H) or (h0, c0); nonlinearity overrides the RNN's ('linear' is
    allowed here only). Returns {'h': (T+1, B, H)} with [t] = dL/dh_t, t = 0..T, plus for the LSTM
    'c': (T+1, B, H) the total gradient on c_t. Computed with float64 step functions.
    """
    cell, kw = _cell_and_kwargs(kind, nonlinearity)
    linear = kw.get("nonlinearity") == "linear"
    params = _f64(params)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be (T, B, D), got shape {x.shape}")
    T, B, _ = x.shape
    H = params["weight_hh"].shape[1]
    lstm = kind == "lstm"
    if state0 is None:
        state0 = (np.zeros((B, H)), np.zeros((B, H))) if lstm else np.zeros((B, H))
    state = tuple(np.asarray(s, np.float64) for s in state0) if lstm else np.asarray(state0, np.float64)

    caches = []
    for t in range(T):
        if linear:
            state, cache = _linear_step_forward(x[t], state, params)
        else:
            state, cache = cell.step_forward(x[t], state, params, **kw)
        caches.append(cache)

    dh = np.broadcast_to(np.asarray(v, np.float64), (B, H)).copy()  # dL/dh_T
    grads = {"h": np.empty((T + 1, B, H))}
    grads["h"][T] = dh
    if lstm:
        dc = np.zeros((B, H))  # from the (non-existent) step T+1
        grads["c"] = np.empty((T + 1, B, H))
        grads["c"][T] = dc + _through_h(dh, caches[T - 1]) if T else dc
    for t in range(T, 0, -1):  # the backward step of step t gives the gradient on state t-1
        if linear:
            _, dh, _ = _linear_step_backward(dh, caches[t - 1])
        elif lstm:
            _, (dh, dc), _ = cell.step_backward((dh, dc), caches[t - 1])
        else:
            _, dh, _ = cell.step_backward(dh, caches[t - 1])
        grads["h"][t - 1] = dh
        if lstm:
            grads["c"][t - 1] = dc + (_through_h(dh, caches[t - 2]) if t >= 2 else 0.0)
    return grads


def _through_h(dh, cache):
    """The part of dL/dc_t that comes through h_t = o * tanh(c_t): dh * o * (1 - tanh(c_t)^2)."""
    o, tc = cache[6], cache[7]
    return dh * o * (1.0 - tc * tc)


def norms_by_lag(grads):
    """{'h': (T+1, B, H), ...} -> {'h': (T+1,), ...}: [k] = the norm of the gradient on the state
    k steps before the last, averaged over the batch."""
    return {name: np.linalg.norm(g, axis=-1).mean(axis=-1)[::-1].copy() for name, g in grads.items()}


def gradient_norms(kind, params, x, v, state0=None, nonlinearity=None):
    """``norms_by_lag(state_gradients(...))``: the gradient norm against the lag T - t."""
    return norms_by_lag(state_gradients(kind, params, x, v, state0, nonlinearity))


def init_gradient_norms(kind, hidden=64, seq_len=100, scale=1.0, seed=0, batch=1):
    """Gradient norms against the lag for a freshly initialised layer (PyTorch's U(-1/sqrt(H),
    1/sqrt(H))) with its recurrent weights multiplied by ``scale``, driven by inputs x ~ N(0, 1)
    with as many features as hidden units. The same seed gives every cell the same x and v."""
    from .model import RECURRENT

    if kind not in CELL_KINDS:
        raise ValueError(f"cell must be one of {', '.join(CELL_KINDS)}, got {kind!r}")
    for name, val in (("hidden", hidden), ("seq_len", seq_len), ("batch", batch)):
        if int(val) < 1:
            raise ValueError(f"{name} must be a positive integer, got {val}")
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")
    kw = {"nonlinearity": "relu"} if kind == "rnn_relu" else {}
    layer = RECURRENT[kind.split("_")[0]](hidden, hidden, dtype="float64", seed=seed, **kw)
    params = _f64(layer._cell_params(0, 0))
    params["weight_hh"] *= scale
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((seq_len, batch, hidden))  # (T, B, D)
    v = rng.standard_normal(hidden)  # (H,)
    return gradient_norms(kind, params, x, v)


# ----------------------------------------------------------------------------- a trained model
def _model_kind(model):
    kind = model.config.cell
    if kind == "rnn" and model.rnn.cell_kwargs.get("nonlinearity") == "relu":
        return "rnn_relu"
    return kind


def _check_layer(model, layer):
    L = model.config.num_layers
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < L:
        raise ValueError(f"layer must be in [0, {L}) for this model ({L} layers), got {layer}")


def _as_ids(ids):
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[:, None]
    if ids.ndim != 2 or ids.shape[0] == 0:
        raise ValueError(f"token ids must be (T,) or (T, B) with T >= 1, got shape {ids.shape}")
    return ids


def layer_inputs(model, ids, layer):
    """The input of recurrent layer ``layer`` of a ``CharModel`` on tokens ids (T,) or (T, B), from
    zero initial states, dropout off, in float64: (T, B, D)."""
    _check_layer(model, layer)
    ids = _as_ids(ids)
    x = np.asarray(model.embedding.params["weight"], np.float64)[ids]  # (T, B, E)
    cell, kw = _cell_and_kwargs(_model_kind(model))
    for k in range(layer):
        params = _f64(model.rnn._cell_params(k, 0))
        B, H = x.shape[1], model.config.hidden_size
        h0 = np.zeros((B, H))
        x, _, _ = cell.forward(x, (h0, h0.copy()) if model.is_lstm else h0, params, **kw)
    return x


def model_gradient_norms(model, ids, layer=0, seed=0):
    """Gradient norms against the lag inside layer ``layer`` of a trained ``CharModel`` on tokens
    ids (T,) or (T, B): L_T = v . h_T of that layer, v ~ N(0, 1) from ``seed``."""
    x = layer_inputs(model, ids, layer)
    params = model.rnn._cell_params(layer, 0)
    v = np.random.default_rng([seed, 1]).standard_normal(model.config.hidden_size)
    return gradient_norms(_model_kind(model), params, x, v)


def gate_activations(model, ids, layer=0):
    """The gates and states of layer ``layer`` of a ``CharModel`` on tokens ids (T,), step by
    step with the cell's ``step_forward``: a dict name -> (T, H) in ``GATE_NAMES`` order
    (LSTM i, f, o, g, c, h; GRU r, z, n, h; RNN h)."""
    ids = _as_ids(ids)
    if ids.shape[1] != 1:
        raise ValueError(f"gate_activations takes one sequence, got {ids.shape[1]}")
    x = layer_inputs(model, ids, layer)  # (T, 1, D)
    kind = _model_kind(model)
    cell, kw = _cell_and_kwargs(kind)
    params = _f64(model.rnn._cell_params(layer, 0))
    H = model.config.hidden_size
    state = (np.zeros((1, H)), np.zeros((1, H))) if model.is_lstm else np.zeros((1, H))
    rows = {name: [] for name in GATE_NAMES[model.config.cell]}
    for t in range(x.shape[0]):
        state, cache = cell.step_forward(x[t], state, params, **kw)
        if kind == "lstm":  # cache: x_t, h_prev, c_prev, i, f, g, o, tanh(c), params
            vals = {"i": cache[3], "f": cache[4], "g": cache[5], "o": cache[6],
                    "c": state[1], "h": state[0]}
        elif kind == "gru":  # cache: x_t, h_prev, r, z, n, ghn, params
            vals = {"r": cache[2], "z": cache[3], "n": cache[4], "h": state}
        else:
            vals = {"h": state}
        for name in rows:
            rows[name].append(vals[name][0])
    return {name: np.array(r) for name, r in rows.items()}  # each (T, H)


def parse_units(text, hidden):
    """'0,5,7' or '0-3,9' -> a sorted list of distinct unit indices in [0, hidden)."""
    units = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                units.extend(range(int(lo), int(hi) + 1))
            else:
                units.append(int(part))
        except ValueError:
            raise ValueError(f"units must be integers like 0,5,7 or 0-3, got {text!r}") from None
    bad = [u for u in units if not 0 <= u < hidden]
    if bad:
        raise ValueError(f"unit {bad[0]} is out of range: the layer has {hidden} units (0-{hidden - 1})")
    if not units:
        raise ValueError(f"no units given in {text!r}")
    return sorted(set(units))
