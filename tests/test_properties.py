"""Property-based tests of the public API (hypothesis): for random shapes, dtypes and layer
settings, valid input always gives finite outputs and gradients of the right shapes, and invalid
input always raises ValueError or TypeError with a message of our own — never an IndexError, a
broadcasting error or another message from deep inside NumPy."""

import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bptt

# fixed examples by default (the same on every run); BPTT_HYPOTHESIS_EXAMPLES=2000 explores at random
_EXPLORE = int(os.environ.get("BPTT_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 60, deadline=None, derandomize=not _EXPLORE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# messages that come from NumPy or Python internals, not from bptt's checks
INTERNAL = re.compile(
    r"could not be broadcast|not aligned|matmul: Input operand|cannot reshape|out of bounds|"
    r"too many indices|setting an array element|negative dimensions|zero-size array|"
    r"invalid literal|could not convert|unsupported operand|object of type|not subscriptable|"
    r"has no attribute|takes \d+ positional|index \d+ is out|tuple index|list index")

KINDS = {"rnn": (bptt.RNN, {}), "rnn_relu": (bptt.RNN, {"nonlinearity": "relu"}),
         "lstm": (bptt.LSTM, {}), "gru": (bptt.GRU, {})}
small = st.integers(1, 4)


@st.composite
def layers(draw):
    kind = draw(st.sampled_from(sorted(KINDS)))
    cls, extra = KINDS[kind]
    kw = dict(num_layers=draw(st.integers(1, 2)), bias=draw(st.booleans()), batch_first=draw(st.booleans()),
              bidirectional=draw(st.booleans()), dropout=draw(st.sampled_from([0.0, 0.3])),
              dtype=draw(st.sampled_from(["float32", "float64"])), seed=draw(st.integers(0, 2**16)), **extra)
    D, H = draw(small), draw(small)
    layer = cls(D, H, **kw)
    layer.train(draw(st.booleans()))
    return layer


@st.composite
def layer_and_input(draw):
    layer = draw(layers())
    T, B = draw(st.integers(1, 5)), draw(small)
    batched = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x_dtype = layer.dtype  # another float type is a TypeError (test_module_api)
    D = layer.input_size
    if batched:
        x = rng.standard_normal((B, T, D) if layer.batch_first else (T, B, D)).astype(x_dtype)
    else:
        x = rng.standard_normal((T, D)).astype(x_dtype)
    state = None
    if draw(st.booleans()):
        shape = (layer.num_layers * layer.num_directions, B, layer.hidden_size) if batched else \
            (layer.num_layers * layer.num_directions, layer.hidden_size)
        mk = lambda: (rng.standard_normal(shape) * 0.5).astype(layer.dtype)  # noqa: E731
        state = (mk(), mk()) if isinstance(layer, bptt.LSTM) else mk()
    return layer, x, state, batched, rng


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _expected_state_shape(layer, x, batched):
    B = (x.shape[0] if layer.batch_first else x.shape[1]) if batched else None
    L = layer.num_layers * layer.num_directions
    return (L, B, layer.hidden_size) if batched else (L, layer.hidden_size)


# ----------------------------------------------------------------------------- valid input
@SETTINGS
@given(layer_and_input(), st.booleans())
def test_forward_backward_never_fail_on_valid_input(case, with_dstate):
    layer, x, state, batched, rng = case
    layer.train()  # a backward needs a train-mode forward (an eval-mode one records nothing)
    out, sT = layer.forward(x, state)
    K, H = layer.num_directions, layer.hidden_size
    assert out.shape == x.shape[:-1] + (K * H,)
    assert out.dtype == layer.dtype and np.isfinite(out).all()
    n_states = 2 if isinstance(layer, bptt.LSTM) else 1
    assert len(_parts(sT)) == n_states
    for s in _parts(sT):
        assert s.shape == _expected_state_shape(layer, x, batched) and np.isfinite(s).all()
    dout = rng.standard_normal(out.shape)
    dsT = None
    if with_dstate:
        dsT = tuple(rng.standard_normal(s.shape) for s in _parts(sT))
        dsT = dsT if n_states == 2 else dsT[0]
    layer.zero_grad()
    dx, ds0 = layer.backward(dout, dsT)
    assert dx.shape == x.shape and np.isfinite(dx).all()
    for s in _parts(ds0):
        assert s.shape == _expected_state_shape(layer, x, batched) and np.isfinite(s).all()
    assert set(layer.grads) == set(layer.params)
    for k, g in layer.grads.items():
        assert g.shape == layer.params[k].shape and g.dtype == layer.dtype and np.isfinite(g).all(), k


def _time_major(a, layer, batched):
    """out / dx (T, B, *) whatever the layout; a final state (L*K, B, H)."""
    if not batched:
        return a[:, None, :]
    return a.swapaxes(0, 1) if layer.batch_first else a


@SETTINGS
@given(layer_and_input())
def test_nan_and_inf_input_propagate_to_their_own_sequence_only(case):
    """NaN or Inf in the input is not an error (no exception, no hang): it reaches the outputs,
    states and gradients of its own sequence — a NaN makes that step's every output NaN, and
    every later one in a one-direction layer (an Inf saturates the units it reaches) — while every other sequence
    of the batch gets exactly the values it gets without it. The weight gradients, sums over
    the batch, are no longer finite."""
    layer, x, state, batched, rng = case
    layer.train()  # a backward needs a train-mode forward (an eval-mode one records nothing)
    x = x.copy()
    xt = _time_major(x, layer, batched)  # a view: writing it writes x
    T, B, D = xt.shape
    t0, b0, d0 = (int(rng.integers(n)) for n in (T, B, D))
    bad = rng.choice([np.nan, np.inf, -np.inf])
    rng_state = layer.rng.bit_generator.state  # the same dropout masks in both runs

    def run():
        layer.rng.bit_generator.state = rng_state
        layer.zero_grad()
        out, sT = layer.forward(x, state)
        dx, ds0 = layer.backward(np.ones_like(out))
        states = [s if batched else s[:, None, :] for s in _parts(sT) + _parts(ds0)]
        return _time_major(out, layer, batched), _time_major(dx, layer, batched), states, \
            {k: g.copy() for k, g in layer.grads.items()}

    out0, dx0, states0, grads0 = run()
    assert np.isfinite(out0).all() and all(np.isfinite(g).all() for g in grads0.values())
    xt[t0, b0, d0] = bad
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out, dx, states, grads = run()
    others = [b for b in range(B) if b != b0]
    np.testing.assert_array_equal(out[:, others], out0[:, others])
    np.testing.assert_array_equal(dx[:, others], dx0[:, others])
    for s, s0 in zip(states, states0):
        np.testing.assert_array_equal(s[:, others], s0[:, others])
    if np.isnan(bad):
        assert np.isnan(out[t0, b0]).all()
        if not layer.bidirectional:
            assert np.isnan(out[t0:, b0]).all()
    assert not np.isfinite(grads["weight_ih_l0"]).all()


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["float32", "float64"]), st.integers(0, 2**16), st.booleans())
def test_embedding_linear_losses_on_valid_input(V, E, T, B, dtype, seed, use_mask):
    rng = np.random.default_rng(seed)
    emb, lin = bptt.Embedding(V, E, dtype=dtype, seed=seed), bptt.Linear(E, V, dtype=dtype, seed=seed)
    idx = rng.integers(0, V, (T, B))
    logits = lin.forward(emb.forward(idx))
    assert logits.shape == (T, B, V) and logits.dtype == np.dtype(dtype)
    mask = rng.integers(0, 2, (T, B)) if use_mask else None
    ce = bptt.CrossEntropyLoss()
    loss = ce(logits, idx, mask)
    d = ce.backward()
    assert np.isfinite(loss) and d.shape == logits.shape and np.isfinite(d).all()
    emb.backward(lin.backward(d))
    assert np.isfinite(emb.grads["weight"]).all() and np.isfinite(lin.grads["weight"]).all()
    for loss_cls, target in ((bptt.MSELoss, rng.standard_normal((T, B, V))),
                             (bptt.BCEWithLogitsLoss, rng.integers(0, 2, (T, B, V)).astype(float))):
        f = loss_cls()
        assert np.isfinite(f(logits, target, mask[..., None] if use_mask else None))
        assert f.backward().shape == logits.shape
    oh = bptt.one_hot(idx, V, dtype=dtype)
    assert oh.shape == (T, B, V) and (oh.sum(-1) == 1).all()


# ----------------------------------------------------------------------------- invalid input
def _raises_clearly(fn):
    """fn() must raise ValueError or TypeError with a message of bptt's own."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            fn()
        except (ValueError, TypeError) as e:
            msg = str(e)
            assert msg and "\n" not in msg, repr(e)
            assert not INTERNAL.search(msg), f"{type(e).__name__} from NumPy/Python internals: {msg}"
            return e
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{type(e).__name__} escaped: {e}")
    pytest.fail("no error raised")


def _wrong_shape(rng, shape, how):
    """A shape that differs from ``shape``: one dimension changed, one added, or one removed."""
    shape = list(shape)
    if how == "dim" and shape:
        i = rng.integers(len(shape))
        shape[i] += int(rng.integers(1, 3)) * (1 if shape[i] == 1 or rng.random() < 0.5 else -1)
    elif how == "add" or not shape:
        shape.insert(int(rng.integers(len(shape) + 1)), int(rng.integers(1, 3)) + (1 if len(shape) == 0 else 0))
    else:
        shape.pop(int(rng.integers(len(shape))))
    return tuple(shape)


BAD_X = ["width", "rank_low", "rank_high", "int", "bool", "complex", "str", "empty_T", "empty_B", "object"]


@SETTINGS
@given(layer_and_input(), st.sampled_from(BAD_X))
def test_bad_input_raises_value_or_type_error(case, how):
    layer, x, state, batched, rng = case
    bad = {
        "width": lambda: rng.standard_normal(x.shape[:-1] + (x.shape[-1] + int(rng.integers(1, 3)),)),
        "rank_low": lambda: rng.standard_normal(x.shape[-1:]) if rng.random() < 0.5 else np.float64(1.0),
        "rank_high": lambda: rng.standard_normal((2,) + x.shape if x.ndim == 3 else (2, 2) + x.shape),
        "int": lambda: x.astype(np.int64),
        "bool": lambda: x > 0,
        "complex": lambda: x.astype(np.complex128),
        "str": lambda: np.full(x.shape, "a"),
        "empty_T": lambda: np.zeros((0,) + x.shape[1:]) if not (x.ndim == 3 and layer.batch_first) else np.zeros((x.shape[0], 0, x.shape[2])),
        "empty_B": lambda: np.zeros((0,) + x.shape[1:]) if x.ndim == 3 and layer.batch_first else
                           (np.zeros((x.shape[0], 0, x.shape[2])) if x.ndim == 3 else np.zeros((0, x.shape[1]))),
        "object": lambda: np.array([None, "x"], dtype=object),
    }[how]()
    _raises_clearly(lambda: layer.forward(bad, state))


BAD_STATE = ["shape_dim", "shape_add", "shape_drop", "int", "not_a_pair", "triple", "str"]


@SETTINGS
@given(layer_and_input(), st.sampled_from(BAD_STATE), st.booleans())
def test_bad_state_raises_value_or_type_error(case, how, in_backward):
    """A wrong initial state to forward, or a wrong final-state gradient to backward."""
    layer, x, state, batched, rng = case
    layer.train()  # a backward needs a train-mode forward (an eval-mode one records nothing)
    good = _expected_state_shape(layer, x, batched)
    is_lstm = isinstance(layer, bptt.LSTM)

    def make():
        if how.startswith("shape"):
            s = rng.standard_normal(_wrong_shape(rng, good, how.split("_")[1]))
        elif how == "int":
            s = np.zeros(good, dtype=np.int32)
        elif how == "str":
            s = np.full(good, "h")
        elif how == "not_a_pair":
            return rng.standard_normal(good) if is_lstm else (rng.standard_normal(good),) * 2
        else:  # triple
            return (rng.standard_normal(good),) * 3
        if is_lstm:
            return (s, rng.standard_normal(good)) if rng.random() < 0.5 else (rng.standard_normal(good), s)
        return s

    bad = make()
    if in_backward:
        out, _ = layer.forward(x, state)
        _raises_clearly(lambda: layer.backward(np.ones_like(out), bad))
    else:
        _raises_clearly(lambda: layer.forward(x, bad))


@SETTINGS
@given(layer_and_input(), st.sampled_from(["dim", "add", "drop", "int", "str"]))
def test_bad_dout_raises_value_or_type_error(case, how):
    layer, x, state, batched, rng = case
    layer.train()  # a backward needs a train-mode forward (an eval-mode one records nothing)
    out, _ = layer.forward(x, state)
    if how == "int":
        dout = np.ones(out.shape, dtype=np.int64)
    elif how == "str":
        dout = np.full(out.shape, "d")
    else:
        dout = rng.standard_normal(_wrong_shape(rng, out.shape, how))
    _raises_clearly(lambda: layer.backward(dout))


BAD_ARGS = [0, -1, -3, 2.5, float("nan"), True, "4", None, [3], np.float64(3.0)]


@SETTINGS
@given(st.sampled_from(sorted(KINDS)), st.sampled_from(["input_size", "hidden_size", "num_layers",
                                                          "dropout", "nonlinearity", "dtype"]),
       st.sampled_from(BAD_ARGS + [1.0, 1.5, -0.1, "tanh", "sigmoid", "int32", "float16", np.int64]))
def test_bad_constructor_arguments_raise_value_or_type_error(kind, arg, value):
    cls, extra = KINDS[kind]
    kw = dict(input_size=3, hidden_size=4, **extra)
    if arg == "nonlinearity" and cls is not bptt.RNN:
        return
    kw[arg] = value
    valid = {
        "input_size": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
        "hidden_size": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
        "num_layers": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
        "dropout": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
        "nonlinearity": lambda v: v in ("tanh", "relu"),
        # a float64 scalar stands for its type, as np.dtype() reads it; None is refused
        "dtype": lambda v: isinstance(v, np.float64) or (isinstance(v, str) and v in ("float32", "float64")),
    }[arg](value)
    if valid:
        cls(**kw)
    else:
        _raises_clearly(lambda: cls(**kw))


@SETTINGS
@given(st.sampled_from(["embedding", "linear"]), st.sampled_from([0, 1]), st.sampled_from(BAD_ARGS))
def test_bad_embedding_and_linear_sizes_raise(which, pos, value):
    args = [3, 4]
    args[pos] = value
    cls = bptt.Embedding if which == "embedding" else bptt.Linear
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        cls(*args)
    else:
        _raises_clearly(lambda: cls(*args))


@SETTINGS
@given(st.integers(1, 6), st.integers(0, 2**16),
       st.sampled_from(["too_big", "negative", "float", "str", "object"]), st.sampled_from([(), (3,), (2, 3)]))
def test_embedding_and_one_hot_reject_bad_indices(V, seed, how, shape):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, shape)
    if how == "too_big":
        idx = np.asarray(idx).copy()
        idx.flat[0] = V + int(rng.integers(0, 5))
    elif how == "negative":
        idx = np.asarray(idx).copy()
        idx.flat[0] = -1 - int(rng.integers(0, 5))
    elif how == "float":
        idx = np.asarray(idx, dtype=float)
    elif how == "str":
        idx = np.full(shape, "a")
    else:
        idx = np.array([None] * (1 if shape == () else shape[0]), dtype=object)
    _raises_clearly(lambda: bptt.Embedding(V, 2).forward(idx))
    _raises_clearly(lambda: bptt.one_hot(idx, V))


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16),
       st.sampled_from(["target_dim", "target_add", "target_drop", "target_float", "target_range",
                        "logits_int", "logits_0d", "mask_shape", "mask_str", "V_zero"]),
       st.sampled_from(["ce", "mse", "bce"]))
def test_losses_reject_bad_targets_and_masks(V, T, B, seed, how, loss):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((T, B, V))
    if loss == "ce":
        target, fwd = rng.integers(0, V, (T, B)), bptt.cross_entropy_forward
    else:
        target = rng.random((T, B, V)) if loss == "bce" else rng.standard_normal((T, B, V))
        fwd = bptt.mse_forward if loss == "mse" else bptt.bce_with_logits_forward
    mask = None
    if how.startswith("target_") and how[7:] in ("dim", "add", "drop"):
        target = rng.integers(0, V, _wrong_shape(rng, target.shape, how[7:])) if loss == "ce" else \
            rng.standard_normal(_wrong_shape(rng, target.shape, how[7:]))
    elif how == "target_float":
        target = target.astype(float) if loss == "ce" else (target > 0.5)  # float for CE, bool for the others
    elif how == "target_range":
        if loss != "ce":
            return
        target = target.copy()
        target.flat[0] = V + int(rng.integers(0, 3))
    elif how == "logits_int":
        logits = logits.astype(np.int64)
    elif how == "logits_0d":  # no class axis (a 0-d MSE or BCE is a valid scalar loss)
        if loss != "ce":
            return
        logits, target = np.float64(1.0), np.array(0)
    elif how == "mask_shape":
        # one more axis than the loss terms: the mask must broadcast *to* their shape, so it is
        # rejected even when the two shapes broadcast together (e.g. (1, T, B) against (T, B))
        mask = np.ones(_wrong_shape(rng, target.shape if loss == "ce" else logits.shape, "add"))
    elif how == "mask_str":
        mask = np.full(target.shape if loss == "ce" else logits.shape, "m")
    elif how == "V_zero":
        logits = np.zeros((T, B, 0))
        target = np.zeros((T, B), dtype=int) if loss == "ce" else np.zeros((T, B, 0))
        mask = np.zeros((T, B)) if loss == "ce" else None
        if loss != "ce":
            return  # an empty MSE/BCE is just 0
    _raises_clearly(lambda: fwd(logits, target, mask))


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16), st.sampled_from(["dim", "add", "drop"]))
def test_linear_and_embedding_reject_bad_gradients(I, O, seed, how):
    rng = np.random.default_rng(seed)
    lin = bptt.Linear(I, O, dtype="float64")
    y = lin.forward(rng.standard_normal((3, 2, I)))
    _raises_clearly(lambda: lin.backward(rng.standard_normal(_wrong_shape(rng, y.shape, how))))
    emb = bptt.Embedding(5, I)
    e = emb.forward(rng.integers(0, 5, (3, 2)))
    _raises_clearly(lambda: emb.backward(rng.standard_normal(_wrong_shape(rng, e.shape, how))))
    _raises_clearly(lambda: lin.forward(rng.standard_normal((3, I + 1))))


@SETTINGS
@given(st.sampled_from(["rnn", "lstm", "gru"]), st.integers(1, 6), small, st.integers(1, 2), small,
       st.sampled_from([0.0, 0.4]), st.sampled_from(["float32", "float64"]), st.integers(1, 5),
       st.sampled_from([None, 1, 3]), st.integers(0, 2**16),
       st.sampled_from([None, "too_big", "negative", "float", "rank3"]))
def test_char_model_forward_backward_and_bad_tokens(cell, V, H, L, E, dropout, dtype, T, B, seed, bad):
    rng = np.random.default_rng(seed)
    model = bptt.CharModel(bptt.ModelConfig(V, cell, H, L, E, dropout), dtype=dtype, seed=seed)
    shape = (T,) if B is None else (T, B)
    tokens = rng.integers(0, V, shape)
    if bad is None:
        logits, state = model.forward(tokens)
        assert logits.shape == shape + (V,) and logits.dtype == np.dtype(dtype) and np.isfinite(logits).all()
        logits2, _ = model.forward(tokens, state)  # the carried state is accepted as it came
        model.zero_grad()
        model.backward(rng.standard_normal(logits2.shape))
        for k, g in model.grads.items():
            assert g.shape == model.params[k].shape and np.isfinite(g).all(), k
        return
    if bad == "too_big":
        tokens.flat[-1] = V
    elif bad == "negative":
        tokens.flat[0] = -1
    elif bad == "float":
        tokens = tokens.astype(float)
    else:
        tokens = tokens.reshape(shape + (1,) * (3 - len(shape)))  # 3-D tokens
    _raises_clearly(lambda: model.forward(tokens))
