"""docs/derivations.md against the code: its generated blocks (the worked LSTM example, the table
of cached arrays and gradients, the saturation counterexample) are exactly what
docs/worked_example.py prints, and that script's line-by-line numbers are what bptt computes."""

import importlib.util
import inspect
import os
import re

import numpy as np
import pytest

import bptt
from bptt.cells import _kernels, lstm, rnn
from bptt.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "derivations.md")


def _load_script():
    spec = importlib.util.spec_from_file_location("worked_example", os.path.join(ROOT, "docs", "worked_example.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


we = _load_script()


def _doc():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def test_the_generated_blocks_of_the_doc_are_what_the_script_prints():
    text = _doc()
    for name in we.BLOCKS:
        assert f"<!-- generated: {name} -->" in text, name
    assert we.render(text) == text, "docs/derivations.md drifted: run python docs/worked_example.py"


def _example_through_bptt():
    p = we.example_inputs()
    params = {k: np.asarray(p[k], dtype=np.float64).reshape(4, -1) if k.startswith("weight") else np.asarray(p[k])
              for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    x = p["x"].reshape(2, 1, 1)
    s0 = (np.array([[p["h0"]]]), np.array([[p["c0"]]]))
    out, _, cache = lstm.forward(x, s0, params)
    dout = out - p["y"].reshape(2, 1, 1)  # L = 1/2 sum (h - y)^2
    return params, x, s0, out, dout, cache


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_worked_example_is_what_the_lstm_code_computes(backend):
    """Every number of the worked example equals bptt's: the sequence functions' cache and
    gradients, the pre-activation gradients of the loop, and the step functions' intermediates."""
    steps, grads = we.lstm_example()
    before = _kernels._requested
    _kernels.set_backend(backend)
    try:
        params, x, s0, out, dout, cache = _example_through_bptt()
        _, hs, cs, gates, tcs = cache[:5]  # (then params, lengths)
        dx, (dh0, dc0), dparams = lstm.backward(dout, None, cache)
        da, _, _ = _kernels.lstm_backward_loop(dout, None, None, cs, gates, tcs, params["weight_hh"])
    finally:
        _kernels.set_backend(before if before in _kernels.BACKENDS else "numba")
    tol = dict(rtol=0, atol=1e-13)
    for t, s in enumerate(steps):
        np.testing.assert_allclose(hs[t + 1, 0, 0], s["h"], **tol)
        np.testing.assert_allclose(cs[t + 1, 0, 0], s["c"], **tol)
        np.testing.assert_allclose(tcs[t, 0, 0], s["tc"], **tol)
        np.testing.assert_allclose(gates[t, 0], [s["i"], s["f"], s["g"], s["o"]], **tol)
        np.testing.assert_allclose(dout[t, 0, 0], s["dout"], **tol)
        np.testing.assert_allclose(da[t, 0], s["da"], **tol)
        np.testing.assert_allclose(dx[t, 0, 0], s["dx"], **tol)
    np.testing.assert_allclose([dh0[0, 0], dc0[0, 0]], [grads["dh0"], grads["dc0"]], **tol)
    np.testing.assert_allclose(dparams["weight_ih"][:, 0], grads["weight_ih"], **tol)
    np.testing.assert_allclose(dparams["weight_hh"][:, 0], grads["weight_hh"], **tol)
    np.testing.assert_allclose(dparams["bias_ih"], grads["bias"], **tol)
    np.testing.assert_allclose(dparams["bias_hh"], grads["bias"], **tol)
    np.testing.assert_allclose(0.5 * (dout ** 2).sum(), grads["loss"], **tol)


def test_worked_example_intermediates_match_the_step_functions():
    """do, dc, di, df, dg of the example are the ones lstm.step_backward forms (recomputed here
    from its cache exactly as its lines do), and its outputs are the example's."""
    steps, _ = we.lstm_example()
    params, x, s0, out, dout, _ = _example_through_bptt()
    state, caches = s0, []
    for t in range(2):
        state, c = lstm.step_forward(x[t], state, params)
        caches.append(c)
    dh, dc = np.zeros((1, 1)), np.zeros((1, 1))
    for t in (1, 0):
        s = steps[t]
        _, _, _, i, f, g, o, tc, _ = caches[t]
        np.testing.assert_allclose([i[0, 0], f[0, 0], g[0, 0], o[0, 0], tc[0, 0]],
                                   [s["i"], s["f"], s["g"], s["o"], s["tc"]], rtol=0, atol=1e-15)
        dh = dh + dout[t]
        np.testing.assert_allclose([dh[0, 0], (dh * tc)[0, 0], (dc + dh * o * (1 - tc * tc))[0, 0]],
                                   [s["dh"], s["do"], s["dc"]], rtol=0, atol=1e-15)
        dc_t = dc + dh * o * (1 - tc * tc)
        np.testing.assert_allclose([(dc_t * g)[0, 0], (dc_t * caches[t][2])[0, 0], (dc_t * i)[0, 0]],
                                   [s["di"], s["df"], s["dg"]], rtol=0, atol=1e-15)
        _, (dh, dc), _ = lstm.step_backward((dh, dc), caches[t])
        np.testing.assert_allclose([dh[0, 0], dc[0, 0]], [s["dh_prev"], s["dc_prev"]], rtol=0, atol=1e-15)


def test_shape_table_letters_are_unambiguous_and_cover_every_cache_entry():
    table = we.cached_shapes()
    for cell, n_arrays in (("rnn", 2), ("lstm", 5), ("gru", 4)):
        assert sum(role == "cache" for role, _, _ in table[cell]) == n_arrays, cell
    assert ("cache", "gates", "(T, B, 4H)") in table["lstm"] and ("cache", "ghn", "(T, B, H)") in table["gru"]
    assert ("out", "dc0", "(B, H)") in table["lstm"] and ("out", "dweight_hh", "(3H, H)") in table["gru"]


def test_saturation_counterexample():
    """rho(W) = 0 and W^20 = 0, yet with one unit saturated the gradient grows by 1.5 per step:
    ||(DW)^20|| = 1.5^20 sqrt(2) ~ 4.7e3, and rnn.backward gives the same number."""
    r = we.saturation_counterexample()
    W = we.SAT_W
    assert r["square"] == 0.0 and np.abs(np.linalg.eigvals(W)).max() < 1e-7
    assert r["linear"] == 0.0
    np.testing.assert_allclose(r["sigma_max"], 3.0, rtol=1e-14)
    np.testing.assert_allclose(r["saturated"], 1.5 ** 20 * np.sqrt(2), rtol=1e-12)
    assert 4.65e3 < r["saturated"] < 4.75e3
    np.testing.assert_allclose(r["rnn_dh0_norm"], r["saturated"], rtol=1e-12)
    np.testing.assert_array_equal(r["rnn_states"], np.tile([1.0, 0.0], (we.SAT_STEPS, 1)))  # 1 saturated, 2 linear
    assert r["saturated"] <= r["bound"]
    assert "4.7e3" in _doc()


def test_linear_regime_numbers_of_section_3():
    """s = 0.9 gives 0.12 and s = 1.1 gives 6.7 over 20 steps, through rnn.backward."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    for s, want in ((0.9, 0.12), (1.1, 6.7), (1.0, 1.0)):
        params = {"weight_ih": np.zeros((6, 1)), "weight_hh": s * Q}
        _, _, cache = rnn.forward(np.zeros((20, 1, 1)), np.full((1, 6), 1e-8), params)
        dT = rng.standard_normal((1, 6))
        _, dh0, _ = rnn.backward(np.zeros((20, 1, 6)), dT, cache)
        ratio = np.linalg.norm(dh0) / np.linalg.norm(dT)
        np.testing.assert_allclose(ratio, s ** 20, rtol=1e-13)  # "to 13 digits"
        assert f"{ratio:.2g}" == f"{want:.2g}"


def test_doc_states_the_code_defaults():
    """The gradcheck step the doc gives is the library's and the CLI's default; the doc names
    files that exist and no file outside the repository."""
    text = _doc()
    default = inspect.signature(bptt.gradcheck).parameters["eps"].default
    assert default == build_parser().parse_args(["gradcheck"]).eps
    exp = int(round(np.log10(default)))
    assert f"The default is $\\varepsilon = 10^{{{exp}}}$" in text
    assert "DESIGN.md" not in text
    for path in set(re.findall(r"`((?:src|docs|tests|benchmarks)/[\w/.]+\.\w+)`", text)):
        assert os.path.exists(os.path.join(ROOT, path)), path
    src = inspect.getsource(bptt.encoding.embedding_backward)
    for call in ("np.argsort", "np.add.reduceat"):  # the embedding backward the doc describes
        assert call in src and call in text, call


def test_every_compiled_kernel_is_in_the_doc_map():
    """Each numba kernel of the fast path (and of ``_fused``) has its row in the doc's table (sections 10, 11), and
    each cell's backward kernel points to its step function and section."""
    from numba.core.registry import CPUDispatcher

    from bptt import _fused
    from bptt.cells import _numba_loops

    text = _doc()
    kernels = [n for n, v in vars(_numba_loops).items() if isinstance(v, CPUDispatcher)]
    assert len(kernels) > 30
    kernels += [n for n, v in vars(_fused).items() if isinstance(v, CPUDispatcher)]
    missing = [n for n in kernels if f"`{n}`" not in text and f"{n}/" not in text and f"/{n}`" not in text]
    assert not missing, missing
    for name, cell, section in (("_rnn_act_grad", "rnn", 3), ("_lstm_cell_bwd", "lstm", 4), ("_gru_cell_bwd", "gru", 5)):
        doc = getattr(_numba_loops, name).py_func.__doc__
        assert f"{cell}.step_backward" in doc and f"section {section}" in doc, name
        assert name in _numba_loops.__doc__


def test_clipping_as_the_doc_says():
    """Global-norm clipping keeps the direction, element-wise clipping changes it: (10, 1) at 5."""
    g = {"w": np.array([10.0, 1.0])}
    n = bptt.optim.clip_grad_norm(g, 5.0)
    assert n == pytest.approx(np.hypot(10, 1))
    np.testing.assert_allclose(g["w"] / np.linalg.norm(g["w"]), np.array([10.0, 1.0]) / np.hypot(10, 1), rtol=1e-15)
    assert np.linalg.norm(g["w"]) == pytest.approx(5.0, rel=1e-6)
    g = {"w": np.array([10.0, 1.0])}
    bptt.optim.clip_grad_value(g, 5.0)
    np.testing.assert_array_equal(g["w"], [5.0, 1.0])
