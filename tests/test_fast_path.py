"""The numba time loops (``bptt.cells._numba_loops``) against the NumPy reference loops, the
backend switch, and a smoke run of the benchmark."""

import os
import subprocess
import sys

import numpy as np
import pytest

import bptt
from bptt.cells import _kernels, _numpy_loops as ref

import numba  # noqa: E402,F401 - a dependency: the fast path is always tested, never skipped
from bptt.cells import _numba_loops as fast  # noqa: E402

SHAPES = [(1, 1, 3, 4), (7, 3, 5, 6), (20, 4, 8, 16)]  # (T, B, D, H)
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.fixture(params=["fused", "blas"])
def strategy(request, monkeypatch):
    """Run the numba loops one way: the whole sequence in one compiled loop, or BLAS for each
    step's product. The results must not depend on it."""
    monkeypatch.setattr(fast, "FUSED_MAX_WORK", -1 if request.param == "blas" else 1 << 40)
    monkeypatch.setattr(fast, "FUSED_MAX_WORK_BACKWARD", -1 if request.param == "blas" else 1 << 40)
    return request.param


@pytest.fixture
def restore_backend():
    before = _kernels._requested
    yield
    _kernels.set_backend(before if before in _kernels.BACKENDS else "numba")


def _loop_inputs(cell, shape, dtype, bias, seed=0):
    T, B, _, H = shape
    GH = GATES[cell] * H
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return dict(
        xw=r(T, B, GH), h0=r(B, H), c0=r(B, H), W=(r(GH, H) / np.sqrt(H)).astype(dtype),
        b_hh=r(GH) if bias else None, dout=r(T, B, H), dh_T=r(B, H), dc_T=r(B, H),
    )


def _run_loops(mod, cell, a):
    """Forward then backward through one module's loops -> every array they return."""
    if cell.startswith("rnn"):
        relu = cell == "rnn_relu"
        hs = mod.rnn_forward_loop(a["xw"], a["h0"], a["W"], relu)
        return (hs,) + tuple(mod.rnn_backward_loop(a["dout"], a["dh_T"], hs, a["W"], relu))
    if cell == "lstm":
        fwd = mod.lstm_forward_loop(a["xw"], a["h0"], a["c0"], a["W"])
        _, cs, gates, tcs = fwd
        return tuple(fwd) + tuple(mod.lstm_backward_loop(a["dout"], a["dh_T"], a["dc_T"], cs, gates, tcs, a["W"]))
    fwd = mod.gru_forward_loop(a["xw"], a["h0"], a["W"], a["b_hh"])
    hs, gates, ghn = fwd
    return tuple(fwd) + tuple(mod.gru_backward_loop(a["dout"], a["dh_T"], hs, gates, ghn, a["W"]))


def _assert_same(got, want, tol):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, np.ndarray), k
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape, g.dtype, w.dtype)
        assert g.flags.c_contiguous, k
        err = float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0
        assert err <= tol, f"output {k}: max abs difference {err:.3g} > {tol:g}"


# ----------------------------------------------------------------------------- loop level
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_loops_match_reference(cell, shape, dtype, strategy):
    a = _loop_inputs(cell, shape, dtype, bias=True)
    _assert_same(_run_loops(fast, cell, a), _run_loops(ref, cell, a), TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_gru_loops_without_bias(shape, strategy):
    a = _loop_inputs("gru", shape, np.float64, bias=False)
    _assert_same(_run_loops(fast, "gru", a), _run_loops(ref, "gru", a), 1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_loops_take_strided_inputs(cell):
    """Reversed and sliced views (as the reverse direction passes them) give the same results."""
    a = _loop_inputs(cell, (6, 3, 4, 5), np.float64, bias=True)
    T = a["xw"].shape[0]
    a["xw"] = np.concatenate([a["xw"], a["xw"]], axis=2)[::-1, :, : a["xw"].shape[2]]
    a["dout"] = np.repeat(a["dout"], 2, axis=2)[::-1, :, ::2]
    a["W"] = np.asfortranarray(a["W"])
    assert a["xw"].shape[0] == T and not a["xw"].flags.c_contiguous
    _assert_same(_run_loops(fast, cell, a), _run_loops(ref, cell, a), 1e-12)


def test_mixed_dtypes_fall_back_to_reference():
    a = _loop_inputs("lstm", (4, 2, 3, 5), np.float64, bias=True)
    h0 = a["h0"].astype(np.float32)
    got = fast.lstm_forward_loop(a["xw"], h0, a["c0"], a["W"])
    _assert_same(got, ref.lstm_forward_loop(a["xw"], h0, a["c0"], a["W"]), 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_kernel(dtype):
    x = np.concatenate([np.linspace(-25, 25, 200001), [0.0, -0.0, 1e-30, -1e-8, 1e-3, 19.5, 40.0, 1e30,
                                                        np.inf, -np.inf]]).astype(dtype)
    out = np.empty_like(x)
    fast._tanh_array(x, out)
    want = np.tanh(x.astype(np.float64))
    rel = np.abs(out - want) / np.maximum(np.abs(want), np.finfo(dtype).tiny)
    assert np.max(rel) <= 3 * np.finfo(dtype).eps
    nan = np.array([np.nan], dtype)
    fast._tanh_array(nan, nan)
    assert np.isnan(nan[0])


# ----------------------------------------------------------------------------- cell and layer level
def _cell_params(G, D, H, bias, rng):
    """Weights scaled like PyTorch's initialisation so that relu RNN states stay O(1)."""
    p = {"weight_ih": rng.standard_normal((G * H, D)) / np.sqrt(D), "weight_hh": rng.standard_normal((G * H, H)) / np.sqrt(H)}
    if bias:
        p["bias_ih"] = rng.standard_normal(G * H)
        p["bias_hh"] = rng.standard_normal(G * H)
    return p


def _run_cell(cell, shape, bias):
    T, B, D, H = shape
    rng = np.random.default_rng(1)
    mod = bptt.cells.CELLS[cell.split("_")[0]]
    kw = {"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {}
    params = _cell_params(GATES[cell], D, H, bias, rng)
    x = rng.standard_normal((T, B, D))
    state0 = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if cell == "lstm" else rng.standard_normal((B, H))
    out, state_T, cache = mod.forward(x, state0, params, **kw)
    dout = rng.standard_normal(out.shape)
    dstate = (rng.standard_normal((B, H)), rng.standard_normal((B, H))) if cell == "lstm" else rng.standard_normal((B, H))
    dx, dstate0, dparams = mod.backward(dout, dstate, cache)
    flat = [out, dx]
    for s in (state_T, dstate0):
        flat += list(s) if isinstance(s, tuple) else [s]
    return flat + [dparams[k] for k in sorted(dparams)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_cells_same_under_both_backends(cell, shape, bias, restore_backend):
    _kernels.set_backend("numpy")
    want = _run_cell(cell, shape, bias)
    _kernels.set_backend("numba")
    got = _run_cell(cell, shape, bias)
    _assert_same(got, want, 1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layers_same_under_both_backends(name, dtype, restore_backend):
    T, B, D, H = 9, 3, 5, 7
    results = []
    for backend in ("numpy", "numba"):
        _kernels.set_backend(backend)
        kw = {"nonlinearity": "relu"} if name == "RNN" else {}
        layer = getattr(bptt, name)(D, H, num_layers=2, bidirectional=True, dtype=dtype, seed=3, **kw)
        rng = np.random.default_rng(4)
        x = rng.standard_normal((T, B, D))
        n_states = 2 if name == "LSTM" else 1
        state = tuple(rng.standard_normal((4, B, H)) for _ in range(n_states))
        out, state_T = layer.forward(x, state if n_states == 2 else state[0])
        dout = rng.standard_normal(out.shape)
        dstate = tuple(rng.standard_normal((4, B, H)) for _ in range(n_states))
        dx, dstate0 = layer.backward(dout, dstate if n_states == 2 else dstate[0])
        flat = [out, dx]
        for s in (state_T, dstate0):
            flat += list(s) if isinstance(s, tuple) else [s]
        results.append(flat + [layer.grads[k] for k in sorted(layer.grads)])
    _assert_same(results[1], results[0], 1e-12 if dtype == "float64" else 2e-5)


# ----------------------------------------------------------------------------- the switch
def test_set_and_get_backend(restore_backend):
    bptt.cells.set_backend("numpy")
    assert bptt.cells.get_backend() == "numpy"
    bptt.cells.set_backend("numba")
    assert bptt.cells.get_backend() == "numba"
    with pytest.raises(ValueError, match="backend"):
        bptt.cells.set_backend("cuda")
    assert bptt.cells.get_backend() == "numba"


def _python(code, **env):
    e = dict(os.environ)
    e.pop("BPTT_BACKEND", None)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True).stdout


def test_import_compiles_nothing():
    out = _python("import sys, bptt; print('numba' in sys.modules)")
    assert out.strip() == "False"


def test_env_var_forces_numpy():
    code = ("import sys, bptt; from bptt.cells import get_backend; "
            "print(get_backend(), 'numba' in sys.modules)")
    assert _python(code, BPTT_BACKEND="numpy").split() == ["numpy", "False"]
    assert _python(code).split() == ["numba", "True"]


def test_missing_numba_falls_back_silently():
    code = (
        "import sys; sys.modules['numba'] = None\n"  # makes `import numba` fail
        "import warnings; warnings.simplefilter('error')\n"
        "import numpy as np, bptt\n"
        "from bptt.cells import get_backend, set_backend\n"
        "m = bptt.GRU(3, 4, dtype='float64', seed=0); out, _ = m.forward(np.ones((2, 1, 3))); m.backward(out)\n"
        "print(get_backend())\n"
        "try:\n    set_backend('numba')\nexcept ImportError:\n    print('ImportError')\n"
    )
    assert _python(code).split() == ["numpy", "ImportError"]


# ----------------------------------------------------------------------------- benchmark smoke
def test_benchmark_quick(tmp_path, capsys):
    import torch  # noqa: F401 - a test dependency
    from bptt import bench

    out = tmp_path / "B.md"
    argv = ["--quick", "--repeats", "1", "--warmup", "0", "--settle", "0", "--cells", "lstm", "--out", str(out)]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "| lstm | 5 | 1 | 3 | 4 |" in text and "GFLOP/s" in text
    assert "ratio" in capsys.readouterr().out
