"""LSTM(..., proj_size=P): PyTorch's projected LSTM. Agreement with torch.nn.LSTM(proj_size=P)
(outputs, h_n (L*K, B, P), c_n (L*K, B, H), every gradient), with lengths too, and finite
differences of every parameter including weight_hr."""

import numpy as np
import pytest
import torch

import bptt
from helpers import layer_loss_fn, random_state, wrt_of
from test_fast_path import restore_backend  # noqa: F401 - a fixture
from torch_twin import assert_all_close, run_both, torch_twin

# torch's own notice that its oneDNN path has no projections
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

T, B, D, H, P = 5, 3, 4, 6, 3


def _layer(**kw):
    return bptt.LSTM(D, H, proj_size=P, dtype="float64", seed=0, **kw)


def _io(layer, rng, batch_first=False):
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    dout_shape = (T, B, layer.num_directions * P)
    dout = rng.standard_normal((B, T, dout_shape[2]) if batch_first else dout_shape)
    return x, random_state(layer, B, rng), dout, random_state(layer, B, rng)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_agrees_with_torch(num_layers, bidirectional, batch_first, with_lengths):
    rng = np.random.default_rng(num_layers * 4 + bidirectional * 2 + batch_first)
    layer = _layer(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    tmod = torch_twin(layer, seed=num_layers)
    assert list(layer.params) == list(tmod.state_dict())  # same names, same order
    x, state0, dout, dstate = _io(layer, rng, batch_first)
    lengths = np.array([3, 5, 1]) if with_lengths else None
    ours, theirs = run_both(layer, tmod, x, state0, dout, dstate, lengths=lengths)
    assert ours["out"].shape[-1] == layer.num_directions * P
    assert ours["state_T[0]"].shape == (num_layers * layer.num_directions, B, P)
    assert ours["state_T[1]"].shape == (num_layers * layer.num_directions, B, H)
    assert_all_close(ours, theirs, 1e-10)


def test_float32_agrees_with_torch():
    rng = np.random.default_rng(9)
    layer = bptt.LSTM(D, H, proj_size=P, num_layers=2, bidirectional=True, seed=0)
    tmod = torch_twin(layer)
    x, state0, dout, dstate = _io(layer, rng)
    f32 = lambda a: tuple(s.astype(np.float32) for s in a) if isinstance(a, tuple) else a.astype(np.float32)  # noqa: E731
    ours, theirs = run_both(layer, tmod, f32(x), f32(state0), f32(dout), f32(dstate))
    assert_all_close(ours, theirs, 1e-5)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradcheck(with_lengths, restore_backend):  # noqa: F811
    """(On the NumPy backend, to keep the check quick; the compiled loops are checked against
    it in test_fast_path.)"""
    bptt.cells.set_backend("numpy")
    rng = np.random.default_rng(3)
    layer = bptt.LSTM(2, 4, proj_size=2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((4, 3, 2))
    state0 = random_state(layer, 3, rng)
    if with_lengths:
        plain = layer.forward
        layer.forward = lambda x, state=None: plain(x, state, lengths=[2, 4, 1])
    result = bptt.gradcheck(layer_loss_fn(layer, x, state0, rng), wrt_of(layer, x, state0))
    assert result.passed(1e-6), "\n" + str(result)
    assert any(c.name == "weight_hr_l1_reverse" for c in result.checks)


def test_step_functions_equal_the_sequence():
    """The pure step functions with weight_hr, looped, give the sequence function's results."""
    from bptt.cells import lstm

    rng = np.random.default_rng(4)
    layer = _layer()
    params = layer._cell_params(0, 0)
    x = rng.standard_normal((T, B, D))
    s0 = (rng.standard_normal((B, P)), rng.standard_normal((B, H)))
    out, sT, cache = lstm.forward(x, s0, params)
    s, caches = s0, []
    for t in range(T):
        s, c = lstm.step_forward(x[t], s, params)
        np.testing.assert_allclose(s[0], out[t], rtol=0, atol=1e-13)
        caches.append(c)
    dout = rng.standard_normal(out.shape)
    dsT = (rng.standard_normal((B, P)), rng.standard_normal((B, H)))
    dx, ds0, dparams = lstm.backward(dout, dsT, cache)
    ds, total = dsT, None
    for t in range(T - 1, -1, -1):
        dx_t, ds, dp = lstm.step_backward((ds[0] + dout[t], ds[1]), caches[t])
        np.testing.assert_allclose(dx_t, dx[t], rtol=0, atol=1e-12)
        total = dp if total is None else {k: total[k] + dp[k] for k in dp}
    for k in dparams:
        np.testing.assert_allclose(dparams[k], total[k], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds[0], ds0[0], rtol=0, atol=1e-12)


def test_bad_proj_size():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size"):
        bptt.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="proj_size must be a non-negative integer"):
        bptt.LSTM(3, 4, proj_size=-1)
    layer = _layer()
    with pytest.raises(ValueError, match=r"initial state\[0\] must have shape \(1, 3, 3\)"):
        layer.forward(np.zeros((T, B, D)), (np.zeros((1, B, H)), np.zeros((1, B, H))))
    assert "proj_size=3" in repr(layer)
    tmod = torch.nn.LSTM(D, H, proj_size=P)
    bptt.LSTM(D, H, proj_size=P).load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})
