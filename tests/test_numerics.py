"""Numerical robustness: huge logits in the losses, 10,000-step sequences through saturated gates,
and float32 kept float32 through a whole training step (parameters, gradients, optimizer buffers,
caches)."""

import numpy as np
import pytest

import bptt
from bptt.loss import (bce_with_logits_backward, bce_with_logits_forward, cross_entropy_backward,
                       cross_entropy_forward)
from bptt.model import CharModel, ModelConfig
from bptt.optim import OPTIMIZERS, make_optimizer
from bptt.train import TrainConfig, train_step


# ----------------------------------------------------------------------------- large logits
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_cross_entropy_with_huge_logits_is_finite_and_right(dtype, scale):
    big = dtype(scale) if np.isfinite(dtype(scale)) else np.finfo(dtype).max / 4
    logits = np.array([[big, -big, 0.0], [-big, big, -big], [big, big, -big]], dtype=dtype)  # (3, V=3)
    targets = np.array([0, 0, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # (underflow of exp to 0 is fine)
        loss, cache = cross_entropy_forward(logits, targets)
        d = cross_entropy_backward(cache)
    assert np.isfinite(loss) and np.isfinite(d).all() and d.dtype == dtype
    # row 0: right with certainty (0); row 1: wrong by 2*big; row 2: a tie of two (log 2)
    expected = (0.0 + 2 * float(big) + np.log(2.0)) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(d.sum(axis=-1), 0.0, atol=1e-7)  # softmax - onehot sums to 0
    np.testing.assert_allclose(d[1], np.array([-1, 1, 0]) / 3, atol=1e-7)
    np.testing.assert_allclose(d[2], np.array([0.5, -0.5, 0]) / 3, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_huge_logits_is_finite_and_right(dtype):
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0, np.finfo(dtype).max / 4], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, cache = bce_with_logits_forward(x, y)
        d = bce_with_logits_backward(cache)
    assert np.isfinite(loss) and np.isfinite(d).all() and d.dtype == dtype
    assert loss == pytest.approx((0 + 0 + 1e4 + 1e4 + np.log(2.0) + 0) / 6, rel=1e-6)
    np.testing.assert_allclose(d * 6, [0, 0, 1, -1, -0.5, 0], atol=1e-6)


# ----------------------------------------------------------------------------- long, saturated
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ten_thousand_steps_through_saturated_gates_stay_finite(kind, dtype):
    T, B, D, H = 10_000, 2, 3, 4
    layer = {"rnn": bptt.RNN, "lstm": bptt.LSTM, "gru": bptt.GRU}[kind](D, H, dtype=dtype, seed=1)
    for p in layer.params.values():
        p *= 40.0  # pre-activations of tens: sigmoid and tanh at 0 or +-1
    if kind == "lstm":  # i, f, g pinned at 1: the cell state adds 1 at every one of the 10,000 steps
        layer.params["bias_ih_l0"][: 3 * H] = 1000.0
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((T, B, D)) * 3).astype(dtype)
    with np.errstate(over="raise", invalid="raise"):
        out, sT = layer.forward(x)
        dx, ds0 = layer.backward(rng.standard_normal(out.shape).astype(dtype))
    states = list(sT) if kind == "lstm" else [sT]
    assert out.shape == (T, B, H) and out.dtype == np.dtype(dtype)
    assert np.isfinite(out).all() and all(np.isfinite(s).all() for s in states)
    saturated = (np.abs(out) < 1e-3) | (np.abs(out) > 0.999)  # tanh(+-big) = +-1; LSTM o(t) = 0
    assert saturated.mean() > 0.6, f"the gates did not saturate ({saturated.mean():.2f})"
    assert np.isfinite(dx).all() and all(np.isfinite(s).all() for s in (list(ds0) if kind == "lstm" else [ds0]))
    for k, g in layer.grads.items():
        assert np.isfinite(g).all() and g.dtype == np.dtype(dtype), k
    if kind == "lstm":
        np.testing.assert_allclose(states[1], T, rtol=1e-3)


# ----------------------------------------------------------------------------- float32 throughout
def _arrays(obj, path="cache"):
    """Every ndarray inside nested tuples, lists and dicts."""
    if isinstance(obj, np.ndarray):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _arrays(v, f"{path}[{k!r}]")
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _arrays(v, f"{path}[{i}]")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_float32_training_step_stays_float32(cell, optimizer):
    cfg = TrainConfig(cell=cell, hidden_size=8, num_layers=2, embedding_dim=4, dropout=0.2,
                      seq_len=5, batch_size=3, steps=2, optimizer=optimizer, clip=1.0, clip_value=0.5)
    model = CharModel(ModelConfig(11, cell, 8, 2, 4, 0.2), dtype="float32", seed=0)
    opt = make_optimizer(optimizer, model.params, model.grads, 1e-2)
    rng = np.random.default_rng(0)
    state = None
    for _ in range(2):  # the second step starts from the carried float32 state
        x, y = rng.integers(0, 11, (5, 3)), rng.integers(0, 11, (5, 3))
        loss, norm, state = train_step(model, x, y, state, opt, cfg)
        opt.step()
        assert np.isfinite(loss) and np.isfinite(norm)
    f32 = np.dtype(np.float32)
    for k in model.params:
        assert model.params[k].dtype == f32 and model.grads[k].dtype == f32, k
    for b, arrays in opt.state_dict()["buffers"].items():
        for k, a in arrays.items():
            assert a.dtype == f32, (b, k)
    for s in (state if isinstance(state, tuple) else (state,)):
        assert s.dtype == f32
    logits, _ = model.forward(x, state)
    assert logits.dtype == f32
    _, cache = cross_entropy_forward(logits, y)
    assert cross_entropy_backward(cache).dtype == f32
    for where, a in _arrays(model.rnn._tape[-1]):
        assert a.dtype.kind != "f" or a.dtype == f32, where
    for name, w in model.state_dict().items():
        assert w.dtype == f32, name
