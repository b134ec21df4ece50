"""The pure cell functions: step functions pass finite differences, sequence functions equal the
step functions looped in Python (forward and backward), and they pass finite differences too."""

import numpy as np
import pytest

import bptt
from bptt.cells import gru, lstm, rnn

CELLS = {
    "rnn_tanh": (rnn, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnn, {"nonlinearity": "relu"}),
    "lstm": (lstm, {}),
    "gru": (gru, {}),
}


def make_params(cell, D, H, rng, bias=True):
    G = cell.GATES
    p = {"weight_ih": rng.uniform(-0.6, 0.6, (G * H, D)), "weight_hh": rng.uniform(-0.6, 0.6, (G * H, H))}
    if bias:
        p["bias_ih"] = rng.uniform(-0.5, 0.5, G * H)
        p["bias_hh"] = rng.uniform(-0.5, 0.5, G * H)
    return p


def make_state(cell, B, H, rng):
    if cell is lstm:
        return (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    return rng.standard_normal((B, H))


def as_list(s):
    return list(s) if isinstance(s, tuple) else [s]


def pack(lst):
    return tuple(lst) if len(lst) == 2 else lst[0]


def step_loop_forward(cell, x, s0, params, kw):
    s, outs, caches = s0, [], []
    for t in range(x.shape[0]):
        s, c = cell.step_forward(x[t], s, params, **kw)
        outs.append(as_list(s)[0])
        caches.append(c)
    return np.stack(outs), s, caches


def step_loop_backward(cell, dout, dsT, caches):
    ds = as_list(dsT)
    dxs, dparams = [], None
    for t in range(len(caches) - 1, -1, -1):
        ds[0] = ds[0] + dout[t]
        dx, dprev, dp = cell.step_backward(pack(ds), caches[t])
        dxs.append(dx)
        ds = as_list(dprev)
        dparams = dp if dparams is None else {k: dparams[k] + dp[k] for k in dp}
    return np.stack(dxs[::-1]), pack(ds), dparams


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 2, 3), (5, 3, 4, 3), (9, 2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_sequence_equals_looped_steps(name, T, B, D, H, bias):
    cell, kw = CELLS[name]
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    params = make_params(cell, D, H, rng, bias)
    x = rng.standard_normal((T, B, D))
    s0 = make_state(cell, B, H, rng)
    out, sT, cache = cell.forward(x, s0, params, **kw)
    out_ref, sT_ref, caches = step_loop_forward(cell, x, s0, params, kw)
    np.testing.assert_allclose(out, out_ref, rtol=0, atol=1e-13)
    for a, b in zip(as_list(sT), as_list(sT_ref)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)

    dout = rng.standard_normal(out.shape)
    dsT = pack([rng.standard_normal((B, H)) for _ in as_list(s0)])
    dx, ds0, dparams = cell.backward(dout, dsT, cache)
    dx_ref, ds0_ref, dparams_ref = step_loop_backward(cell, dout, dsT, caches)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)
    for a, b in zip(as_list(ds0), as_list(ds0_ref)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert set(dparams) == set(params)
    for k in params:
        np.testing.assert_allclose(dparams[k], dparams_ref[k], rtol=0, atol=1e-12)


def _check(fn, wrt):
    return bptt.gradcheck(fn, wrt, tol=1e-6, raise_on_failure=True)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_step_functions_gradcheck(name, bias):
    cell, kw = CELLS[name]
    rng = np.random.default_rng(1)
    B, D, H = 3, 4, 5
    params = make_params(cell, D, H, rng, bias)
    x = rng.standard_normal((B, D))
    s0 = make_state(cell, B, H, rng)
    W = [rng.standard_normal((B, H)) for _ in as_list(s0)]

    def fn():
        s, cache = cell.step_forward(x, s0, params, **kw)
        loss = sum((a * w).sum() for a, w in zip(as_list(s), W))
        dx, dprev, dp = cell.step_backward(pack(W), cache)
        return loss, {"x": dx, **dp, **dict(zip(["h0", "c0"], as_list(dprev)))}

    wrt = {"x": x, **params, **dict(zip(["h0", "c0"], as_list(s0)))}
    _check(fn, wrt)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("T", [1, 6])
def test_sequence_functions_gradcheck(name, T):
    cell, kw = CELLS[name]
    rng = np.random.default_rng(2)
    B, D, H = 2, 3, 4
    params = make_params(cell, D, H, rng)
    x = rng.standard_normal((T, B, D))
    s0 = make_state(cell, B, H, rng)
    R = rng.standard_normal((T, B, H))
    W = [rng.standard_normal((B, H)) for _ in as_list(s0)]

    def fn():
        out, sT, cache = cell.forward(x, s0, params, **kw)
        loss = (out * R).sum() + sum((a * w).sum() for a, w in zip(as_list(sT), W))
        dx, ds0, dp = cell.backward(R, pack(W), cache)
        return loss, {"x": dx, **dp, **dict(zip(["h0", "c0"], as_list(ds0)))}

    wrt = {"x": x, **params, **dict(zip(["h0", "c0"], as_list(s0)))}
    _check(fn, wrt)


def test_gradcheck_catches_a_wrong_gradient():
    """The checker itself must fail on a wrong gradient and name the tensor and entry."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4))

    def fn():
        g = 2 * w
        g[1, 2] += 1e-3  # a deliberate error in one entry
        return float((w**2).sum()), {"w": g}

    result = bptt.gradcheck(fn, {"w": w})
    assert not result.passed(1e-6)
    assert result["w"].worst_index == (1, 2)
    assert "FAIL" in result.table()


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        bptt.gradcheck(lambda: (0.0, {"w": 0}), {"w": np.zeros(3, np.float32)})


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CELLS))
def test_sequence_backward_takes_none_for_the_final_state_gradient(name, dtype, backend):
    """``backward(dout, None, cache)`` means a zero final-state gradient, as for the layers
    (for LSTM also ``(None, None)`` and one part None), under both backends."""
    from bptt.cells import _kernels

    cell, kw = CELLS[name]
    rng = np.random.default_rng(31)
    T, B, D, H = 3, 2, 3, 4
    params = {k: v.astype(dtype) for k, v in make_params(cell, D, H, rng).items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    s0 = make_state(cell, B, H, rng)
    s0 = tuple(s.astype(dtype) for s in s0) if cell is lstm else s0.astype(dtype)
    before = _kernels._requested
    _kernels.set_backend(backend)
    try:
        out, _, cache = cell.forward(x, s0, params, **kw)
        dout = rng.standard_normal(out.shape).astype(dtype)
        zeros = np.zeros((B, H), dtype)
        want = cell.backward(dout, (zeros, zeros) if cell is lstm else zeros, cache)
        nones = [None, (None, None), (None, zeros), (zeros, None)] if cell is lstm else [None]
        for none in nones:
            got = cell.backward(dout, none, cache)
            for a, b in zip([got[0], *as_list(got[1]), *got[2].values()],
                            [want[0], *as_list(want[1]), *want[2].values()]):
                assert a.dtype == dtype
                np.testing.assert_array_equal(a, b)
    finally:
        _kernels.set_backend(before if before in _kernels.BACKENDS else "numba")
