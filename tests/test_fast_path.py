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
from bptt.cells import _blas, _numba_loops as fast  # noqa: E402
from training_helpers import REPO  # noqa: E402

SHAPES = [(1, 1, 3, 4), (7, 3, 5, 6), (20, 4, 8, 16)]  # (T, B, D, H)
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.fixture(params=["micro", "hand", "blas", "np-matmul"])
def strategy(request, monkeypatch):
    """Run the numba loops one way: each step's product by the float32 micro-kernel on packed
    weights (float64 then goes as "blas"), hand-written in the compiled loop, by NumPy's BLAS
    called from the compiled loop, or (no BLAS address) by np.matmul from a Python loop. The
    results must not depend on it."""
    big = request.param != "hand"
    monkeypatch.setattr(fast, "USE_MICROKERNEL", request.param == "micro")
    monkeypatch.setattr(fast, "FUSED_MAX_WORK", -1 if big else 1 << 40)
    monkeypatch.setattr(fast, "FUSED_MAX_WORK_BACKWARD", -1 if big else 1 << 40)
    monkeypatch.setattr(fast, "USE_BLAS_POINTER", request.param != "np-matmul")
    return request.param


@pytest.fixture(params=[1, 2, 3])
def shards(request, monkeypatch):
    """The batch split into this many blocks of rows (threads); uneven blocks included."""
    monkeypatch.setattr(fast, "SHARDS", request.param)
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
def test_loops_match_reference(cell, shape, dtype, strategy, shards):
    a = _loop_inputs(cell, shape, dtype, bias=True)
    _assert_same(_run_loops(fast, cell, a), _run_loops(ref, cell, a), TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_gru_loops_without_bias(shape, strategy, shards):
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("min_rows", [1, 1 << 30])
def test_lstm_input_side_inside_loops(dtype, bias, shards, min_rows, monkeypatch):
    """lstm_forward_x / lstm_backward_x (float32 with FUSED_MIN_ROWS rows per thread: x W_ih^T
    step by step inside the forward loop, biases added in the gate math; dx and the bias
    gradient inside the backward loop; else the loops and the products apart) against the
    reference, all rows and variable lengths, a reversed (strided) input; H = 37: whole
    16-column panels and a partial one."""
    monkeypatch.setattr(fast, "FUSED_MIN_ROWS", min_rows)
    T, B, D, H = 6, 5, 7, 37
    rng = np.random.default_rng(3)
    params = {k: v.astype(dtype) for k, v in _cell_params(4, D, H, bias, rng).items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)[::-1]
    h0, c0, dh_T, dc_T = (rng.standard_normal((B, H)).astype(dtype) for _ in range(4))
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    for lengths in (None, np.array([6, 6, 4, 1, 0]), np.array([2, 6, 0, 6, 3])):
        got = fast.lstm_forward_x(x, h0, c0, params, lengths)
        want = ref.lstm_forward_x(x, h0, c0, params, lengths)
        _assert_same(got, want, TOL[dtype])
        hs, cs, gates, tcs = want
        for ds in ((dh_T, dc_T), (None, None)):
            dx, dh0, dc0, dp = fast.lstm_backward_x(dout, *ds, x, hs, cs, gates, tcs, params, lengths)
            rdx, rdh0, rdc0, rdp = ref.lstm_backward_x(dout, *ds, x, hs, cs, gates, tcs, params, lengths)
            assert sorted(dp) == sorted(rdp)
            _assert_same([dx, dh0, dc0] + [dp[k] for k in sorted(dp)],
                         [rdx, rdh0, rdc0] + [rdp[k] for k in sorted(rdp)], TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_products_match_reference(cell, dtype, shards):
    """The input projection and the weight gradients on bptt's threads (row blocks, one BLAS
    call each, biases added and summed by compiled passes) against the reference products,
    with a reversed (strided) input as the reverse direction passes it, and GRU's narrow dgh."""
    T, B, D, H = 7, 5, 6, 4
    G = GATES["rnn_tanh" if cell == "rnn" else cell]
    rng = np.random.default_rng(2)
    params = {k: v.astype(dtype) for k, v in _cell_params(G, D, H, True, rng).items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)[::-1]
    for with_hh in (True, False):
        _assert_same([fast.input_projection(x, params, with_hh)], [ref.input_projection(x, params, with_hh)],
                     TOL[dtype])
    h_prev = rng.standard_normal((T, B, H)).astype(dtype)
    dgx = rng.standard_normal((T, B, G * H)).astype(dtype)
    dgh = rng.standard_normal((T, B, H)).astype(dtype) if cell == "gru" else dgx
    got_dx, got = fast.sequence_grads(x, h_prev, dgx, dgh, params)
    want_dx, want = ref.sequence_grads(x, h_prev, dgx, dgh, params)
    assert sorted(got) == sorted(want)
    _assert_same([got_dx] + [got[k] for k in sorted(got)], [want_dx] + [want[k] for k in sorted(want)], TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul_on_our_threads(dtype, shards):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((9, 4)).astype(dtype)
    b = rng.standard_normal((4, 6)).astype(dtype)
    col = rng.standard_normal((9, 1)).astype(dtype)  # its transpose: one row, NumPy's stride arbitrary
    cases = ((a, b), (a.T.copy().T, b), (np.asfortranarray(a), b.T.copy().T), (a[::2], b[:, ::2]),
             (col.T, a), (a[:1], b), (a, b[:, :1]), (col, b[:1]), (b[:, :1].T, b[:, 1:2]))
    for x, y in cases:
        got = fast.matmul(x, y)
        assert got.shape == (x.shape[0], y.shape[1]) and got.dtype == dtype
        np.testing.assert_allclose(got, np.matmul(x, y), rtol=TOL[dtype], atol=TOL[dtype])


def _lstm_backward_inputs(D, H, seed, T=9, B=5):
    """float32 LSTM weights (biases included) and random x (T, B, D), h0, c0, dh_T, dc_T (B, H),
    dout (T, B, H) for the backward loops' tests."""
    rng = np.random.default_rng(seed)
    params = {k: v.astype(np.float32) for k, v in _cell_params(4, D, H, True, rng).items()}
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    h0, c0, dh_T, dc_T = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(4))
    dout = rng.standard_normal((T, B, H)).astype(np.float32)
    return params, x, h0, c0, dh_T, dc_T, dout


@pytest.mark.parametrize("wgrad_rows", [1, 12, 128])
def test_lstm_weight_grads_inside_backward_loop(wgrad_rows, shards, monkeypatch):
    """float32 lstm_backward_x with the weight gradients taken inside the loop every
    WGRAD_ROWS // R steps (``_lstm_bwdw_par``; 1: every step, 12: blocks of a few steps and a
    shorter last one, 128: one block) against the reference, with and without lengths; and the
    same as the products after the loop (WGRAD_MAX_GATES below 4H) to float32 rounding. D = 20:
    a 16-column block and 4 columns through scratch; H = 40: the gate math's 16-float vectors
    and 8 elements after them, 5 column blocks of 8 in ``_tn_acc``'s A per gate."""
    monkeypatch.setattr(fast, "FUSED_MIN_ROWS", 1)
    monkeypatch.setattr(fast, "WGRAD_ROWS", wgrad_rows)
    D, H = 20, 40
    params, x, h0, c0, dh_T, dc_T, dout = _lstm_backward_inputs(D, H, seed=5)
    for lengths in (None, np.array([9, 2, 9, 1, 5])):
        hs, cs, gates, tcs = ref.lstm_forward_x(x, h0, c0, params, lengths)
        got = fast.lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths)
        want = ref.lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths)
        monkeypatch.setattr(fast, "WGRAD_MAX_GATES", 4 * H - 1)
        after = fast.lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths)
        monkeypatch.setattr(fast, "WGRAD_MAX_GATES", 1 << 30)
        for other, tol in ((want, TOL[np.float32]), (after, 1e-5)):
            _assert_same(got[:3] + tuple(got[3][k] for k in sorted(got[3])),
                         other[:3] + tuple(other[3][k] for k in sorted(other[3])), tol)
        assert np.array_equal(got[0], after[0]) and np.array_equal(got[3]["bias_ih"], after[3]["bias_ih"])


@pytest.mark.parametrize("path", ["wgrad-in-loop", "dx-in-loop", "after-loop"])
def test_lstm_backward_without_input_grad(path, shards, monkeypatch):
    """lstm_backward_x(input_grad=False) on each of its three paths (the weight gradients inside
    the loop; only dx and the bias inside; the loop, then the products): dx is None, W_ih is
    never packed nor multiplied for it, and dh0, dc0 and every weight gradient are the same bits
    as with dx."""
    monkeypatch.setattr(fast, "FUSED_MIN_ROWS", 1 if path != "after-loop" else 1 << 30)
    if path == "dx-in-loop":  # more gate units than the weight gradients inside the loop take
        monkeypatch.setattr(fast, "WGRAD_MAX_GATES", 4 * 40 - 1)
    D, H = 20, 40
    params, x, h0, c0, dh_T, dc_T, dout = _lstm_backward_inputs(D, H, seed=6)
    packed, products = [], []
    pack, rows_product = fast._pack, fast._rows_product
    monkeypatch.setattr(fast, "_pack", lambda W: packed.append(W.shape) or pack(W))
    monkeypatch.setattr(fast, "_rows_product", lambda A, Bop, *a: products.append(Bop.shape) or rows_product(A, Bop, *a))
    for lengths in (None, np.array([9, 2, 9, 1, 5])):
        hs, cs, gates, tcs = ref.lstm_forward_x(x, h0, c0, params, lengths)
        args = (dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths)
        packed.clear(), products.clear()
        with_dx = fast.lstm_backward_x(*args)
        assert (4 * H, D) in packed + products  # W_ih (4H, D), packed or in the product after the loop
        packed.clear(), products.clear()
        dx, dh0, dc0, dp = fast.lstm_backward_x(*args, input_grad=False)
        assert dx is None and (4 * H, D) not in packed + products and (D, 4 * H) not in packed + products
        assert np.array_equal(dh0, with_dx[1]) and np.array_equal(dc0, with_dx[2])
        assert sorted(dp) == sorted(with_dx[3])
        for k in dp:
            assert np.array_equal(dp[k], with_dx[3][k]), k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_sequence_grads_without_input_grad(cell, dtype, shards):
    """sequence_grads(input_grad=False), compiled and reference: dx None, the weight and bias
    gradients the same bits as with dx."""
    T, B, D, H = 7, 5, 6, 4
    G = GATES["rnn_tanh" if cell == "rnn" else cell]
    rng = np.random.default_rng(7)
    params = {k: v.astype(dtype) for k, v in _cell_params(G, D, H, True, rng).items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_prev = rng.standard_normal((T, B, H)).astype(dtype)
    dgx = rng.standard_normal((T, B, G * H)).astype(dtype)
    dgh = rng.standard_normal((T, B, H)).astype(dtype) if cell == "gru" else dgx
    for mod in (fast, ref):
        dx, want = mod.sequence_grads(x, h_prev, dgx, dgh, params)
        none, got = mod.sequence_grads(x, h_prev, dgx, dgh, params, input_grad=False)
        assert dx is not None and none is None and sorted(got) == sorted(want)
        for k in got:
            assert np.array_equal(got[k], want[k]), k


def test_weight_grad_blocks_an_odd_number_of_cache_lines_apart():
    """_ap_rows: the rows allocated per block of 8 columns of da (32 bytes a row) hold the K rows
    and put the blocks an odd number of 64-byte lines apart (never 4 KiB: K = 128 gives 130),
    with at most 3 rows of padding."""
    for K in list(range(1, 40)) + [64, 128, 256, 1024]:
        Ka = fast._ap_rows(K)
        assert K <= Ka <= K + 3 and (Ka * 32) % 64 == 0 and (Ka * 32 // 64) % 2 == 1
    assert fast._ap_rows(128) == 130


@pytest.mark.parametrize("k,m,n", [(1, 1, 1), (7, 8, 32), (13, 13, 45), (33, 20, 16), (64, 148, 70)])
def test_transposed_product_for_weight_grads(k, m, n):
    """_tn_acc: C = A^T X and C += A^T X (the weight gradients' products: A the rows of da in
    blocks of 8 columns, K > k rows allocated per block; X the rows of x or h, with a stride
    longer than their length) for row counts around its block of 8 and column counts around
    its 32 and 16, against float64 products."""
    rng = np.random.default_rng(k * 100 + m + n)
    A = rng.standard_normal((k, m)).astype(np.float32)
    K, M8 = k + 3, -(-m // 8) * 8
    ap = np.full((M8 // 8, K, 8), np.nan, np.float32)
    ap[:, :k, :] = np.pad(A, ((0, 0), (0, M8 - m))).reshape(k, M8 // 8, 8).transpose(1, 0, 2)
    ap = ap.ravel()
    X = rng.standard_normal((k, n + 3)).astype(np.float32)[:, :n]
    want = A.T.astype(np.float64) @ X.astype(np.float64)
    sb, sc = np.empty((k, 16), np.float32), np.empty((8, 16), np.float32)
    C = np.full((m, n + 5), np.nan, np.float32)[:, :n]
    fast._tn_acc(ap, K, k, m, X, C, 0, sb, sc)
    tol = 1e-5 * np.sqrt(k) * (1 + np.abs(want).max())
    assert np.max(np.abs(C - want)) <= tol
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    fast._tn_acc(ap, K, k, m, X, C, 1, sb, sc)
    assert np.max(np.abs(C - (want + C0))) <= tol


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 37, 70), (6, 16, 16), (7, 3, 33), (16, 128, 512), (13, 512, 128)])
def test_microkernel_product(m, k, n):
    """C = A @ Wt and C += A @ Wt by the micro-kernel on packed Wt, for row counts around its
    block of 6 and column counts around its panel of 16, against float64 products."""
    rng = np.random.default_rng(m * 1000 + n)
    A = rng.standard_normal((m, 2 * k)).astype(np.float32)[:, ::2].copy()
    A = np.concatenate([A, np.zeros((m, 3), np.float32)], axis=1)[:, :k]  # rows with a stride > k
    Wt = rng.standard_normal((k, n)).astype(np.float32)
    want = A.astype(np.float64) @ Wt.astype(np.float64)
    Bp = fast._pack(Wt)
    assert Bp.shape == (-(-n // 16), k, 16)
    scratch = np.empty((6, 16), np.float32)
    C = np.full((m, n + 5), np.nan, np.float32)[:, :n]
    fast._uk_mm(A, Bp, C, 0, scratch)
    tol = 1e-5 * np.sqrt(k) * (1 + np.abs(want).max())
    assert np.max(np.abs(C - want)) <= tol
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C = C0.copy()
    fast._uk_mm(A, Bp, C, 1, scratch)
    assert np.max(np.abs(C - (want + C0))) <= tol


@pytest.mark.parametrize("k,n", [(1, 1), (3, 16), (64, 512), (128, 512), (37, 70), (512, 2048)])
def test_pack_panels_aligned_and_exact(k, n):
    """_pack: Bp[p, k, j] = Wt[k, 16 p + j], zeros past the last column, the array starting on a
    64-byte boundary (every 16-float load of a panel within one cache line) whatever the size."""
    rng = np.random.default_rng(k + n)
    Wt = rng.standard_normal((k, n)).astype(np.float32)
    for _ in range(3):  # allocations land at different offsets
        Bp = fast._pack(Wt)
        assert Bp.ctypes.data % 64 == 0 and Bp.flags.c_contiguous
        P = -(-n // 16)
        want = np.zeros((k, P * 16), np.float32)
        want[:, :n] = Wt
        assert np.array_equal(Bp, want.reshape(k, P, 16).transpose(1, 0, 2))


def test_pack_reads_any_layout():
    """_pack from a C array, its transpose (read column by column, as the forward loops pack
    W_hh^T) and a strided view: the definition, every element written, the padding zero."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((70, 37)).astype(np.float32)
    for Wt in (W, W.T, W[::2, ::3], W.T[::2]):
        k, n = Wt.shape
        P = -(-n // 16)
        want = np.zeros((k, P * 16), np.float32)
        want[:, :n] = Wt
        Bp = fast._pack(Wt)
        assert Bp.ctypes.data % 64 == 0 and np.array_equal(Bp, want.reshape(k, P, 16).transpose(1, 0, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty64_aligned_writable(dtype):
    """_empty64: the shape and dtype asked for, C-contiguous, writable; from POOL_MIN_BYTES up
    (the pooled arrays) on a 64-byte boundary."""
    for shape in [(3, 5, 7), (1,), (0, 4), (100, 32, 512), (3, 1000, 99)]:
        a = fast._empty64(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.nbytes < fast.POOL_MIN_BYTES or a.ctypes.data % 64 == 0
        a[...] = 1.5
        assert a.sum() == 1.5 * a.size


@pytest.mark.parametrize("m,k,n", [(1, 7, 32), (8, 128, 512), (13, 33, 80), (17, 64, 48)])
def test_wide_microkernel_same_bits_as_panel_kernel(m, k, n):
    """The kernels that take two panels at a time (AVX-512) give the same bits as the one-panel
    kernels: every element is the same sequence of fused multiply-adds over k."""
    rng = np.random.default_rng(m + k + n)
    A = rng.standard_normal((m, k)).astype(np.float32)
    Bp = fast._pack(rng.standard_normal((k, n)).astype(np.float32))
    scratch = np.empty((6, 16), np.float32)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    for acc in (0, 1):
        wide, narrow = C0.copy(), C0.copy()
        fast._uk_mm(A, Bp, wide, acc, scratch)
        for p in range(Bp.shape[0]):
            fast._uk_panel(A, Bp, narrow, acc, scratch, p, k, n)
        assert np.array_equal(wide, narrow)


def test_wide_kernels_follow_numba_target(monkeypatch):
    """The AVX-512 kernels are chosen by the features numba compiles for: NUMBA_CPU_FEATURES
    without avx512f (code built for an AVX2 machine) picks the AVX2 kernels on any host."""
    from numba.core import config

    monkeypatch.setattr(config, "CPU_FEATURES", "+avx,+avx2,+fma,-avx512f,-avx512bw")
    assert fast._target_has_avx512() is False
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx,+avx2,+fma,+avx512f,+avx512bw")
    assert fast._target_has_avx512() is True
    monkeypatch.setattr(config, "CPU_FEATURES", None)  # unset: the host's own
    from llvmlite import binding

    assert fast._target_has_avx512() == bool(binding.get_host_cpu_features().get("avx512f", False))


def test_avx2_environment_picks_the_avx2_kernels(tmp_path):
    """benchmarks/avx2_env.py's exports (AVX-512 off for numba, OpenBLAS, PyTorch) make a fresh
    process choose bptt's AVX2 kernels, whatever the host."""
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "avx2_env.py")], capture_output=True,
                         text=True, check=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        key, value = line[len("export "):].split("=", 1)
        env[key] = value.strip("'")
    assert "-avx512f" in env["NUMBA_CPU_FEATURES"].split(",") and "+avx2" in env["NUMBA_CPU_FEATURES"].split(",")
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    code = "from bptt.cells import _numba_loops as f; print(f.WIDE_MICROKERNEL, f.TN_SPLIT)"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert got.split() == ["False", "True"]


def test_colsum_matches_sum():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((1001, 7))
    for n in (1, 2, 3, 7):
        np.testing.assert_allclose(fast._colsum_par(a, n), a.sum(axis=0), rtol=0, atol=1e-12)


class _CountingBlas:
    """NumPy's BLAS with its dgemm behind a ctypes callback that records each call's (m, n, k)
    and the number of OpenBLAS threads at that moment, then runs the real dgemm."""

    def __init__(self, real):
        import ctypes

        self.real, self.calls = real, []
        sig = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int64)
        dgemm = sig(real.dgemm)

        def counted(order, ta, tb, m, n, k, *rest):
            self.calls.append((m, n, k, real.get_num_threads()))
            dgemm(order, ta, tb, m, n, k, *rest)

        self._callback = sig(counted)  # kept alive as long as this object
        self.dgemm = ctypes.cast(self._callback, ctypes.c_void_p).value
        self.sgemm = real.sgemm

    def gemm(self, dtype):
        return self.sgemm if np.dtype(dtype) == np.float32 else self.dgemm

    def get_num_threads(self):
        return self.real.get_num_threads()

    def set_num_threads(self, n):
        self.real.set_num_threads(n)


def test_numpy_blas_is_reached_and_threads_restored(monkeypatch):
    """In float64 with the BLAS path forced, every step's recurrent product of the LSTM loops is
    one call of NumPy's own dgemm per block of rows (counted through a wrapper), made while
    OpenBLAS runs on one thread; OpenBLAS gets its thread count back afterwards, also after an
    error; and the results are the reference loops'."""
    from bptt.cells import _blas

    real = _blas.find()
    assert real is not None, "NumPy's OpenBLAS was not found: the fast path would use np.matmul per step"
    before = real.get_num_threads()
    real.set_num_threads(2)  # so that "one thread while ours run" is visible
    try:
        with pytest.raises(RuntimeError), _blas.single_threaded(real):
            assert real.get_num_threads() == 1
            raise RuntimeError("boom")
        assert real.get_num_threads() == 2
        counting = _CountingBlas(real)
        monkeypatch.setattr(_blas, "find", lambda: counting)
        monkeypatch.setattr(fast, "FUSED_MAX_WORK", -1)
        monkeypatch.setattr(fast, "FUSED_MAX_WORK_BACKWARD", -1)
        monkeypatch.setattr(fast, "SHARDS", 2)
        T, B, D, H = 4, 8, 3, 16
        a = _loop_inputs("lstm", (T, B, D, H), np.float64, bias=True)
        got = fast.lstm_forward_loop(a["xw"], a["h0"], a["c0"], a["W"])
        assert real.get_num_threads() == 2
        fwd = [c for c in counting.calls if c[:3] == (B // 2, 4 * H, H)]
        assert len(fwd) == 2 * T, counting.calls  # T steps x 2 blocks
        _assert_same(got, ref.lstm_forward_loop(a["xw"], a["h0"], a["c0"], a["W"]), 1e-12)
        hs, cs, gates, tcs = got
        dout = np.random.default_rng(3).standard_normal((T, B, H))
        counting.calls.clear()
        got = fast.lstm_backward_loop(dout, a["h0"], a["c0"], cs, gates, tcs, a["W"])
        bwd = [c for c in counting.calls if c[:3] == (B // 2, H, 4 * H)]
        assert len(bwd) == 2 * T, counting.calls
        _assert_same(got, ref.lstm_backward_loop(dout, a["h0"], a["c0"], cs, gates, tcs, a["W"]), 1e-12)
        layer = bptt.LSTM(D, H, dtype="float64", seed=0)
        counting.calls.clear()
        layer.forward(np.ones((T, B, D)))
        assert len(counting.calls) > 2 * T  # the input projection and the steps
        assert {c[3] for c in counting.calls} == {1}  # OpenBLAS on one thread during every call
        assert real.get_num_threads() == 2
    finally:
        real.set_num_threads(before)


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


def test_vector_gate_tanh():
    """The float32 forward gate math in 16-float vectors (on AVX-512 CPUs; elsewhere the scalar
    loop runs the same check): with i = 1 (pre-activation +inf) and f = 0 (-inf), c = g =
    tanh(x), within the scalar kernel's 3 ulp; o = sigmoid(0) = 1/2; NaN stays NaN."""
    x = np.concatenate([np.linspace(-25, 25, 200001), [0.0, -0.0, 1e-30, -1e-8, 1e-3, 19.5, 40.0, 1e30,
                                                        np.inf, -np.inf, np.nan]]).astype(np.float32)
    H = len(x) // 16 * 16 + 16
    xr = np.zeros(4 * H, np.float32)
    xr[:H], xr[H : 2 * H], xr[2 * H : 2 * H + len(x)] = np.inf, -np.inf, x
    zr = np.zeros(4 * H, np.float32)
    c_prev = np.ones(H, np.float32)
    c, tc, h = (np.empty(H, np.float32) for _ in range(3))
    fast._lstm_cell_fwd(xr, zr, c_prev, c, tc, h, H)
    g = zr[2 * H : 2 * H + len(x)]
    assert np.isnan(g[-1]) and np.isnan(c[len(x) - 1])
    want = np.tanh(x[:-1].astype(np.float64))
    rel = np.abs(g[:-1] - want) / np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    assert np.max(rel) <= 3 * np.finfo(np.float32).eps
    assert np.array_equal(c[: len(x) - 1], g[:-1])
    assert np.all(zr[:H] == 1.0) and np.all(zr[H : 2 * H] == 0.0) and np.all(zr[3 * H :] == 0.5)


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
        x = rng.standard_normal((T, B, D)).astype(dtype)
        n_states = 2 if name == "LSTM" else 1
        state = tuple(rng.standard_normal((4, B, H)).astype(dtype) for _ in range(n_states))
        out, state_T = layer.forward(x, state if n_states == 2 else state[0])
        dout = rng.standard_normal(out.shape)
        dstate = tuple(rng.standard_normal((4, B, H)) for _ in range(n_states))
        dx, dstate0 = layer.backward(dout, dstate if n_states == 2 else dstate[0])
        flat = [out, dx]
        for s in (state_T, dstate0):
            flat += list(s) if isinstance(s, tuple) else [s]
        results.append(flat + [layer.grads[k] for k in sorted(layer.grads)])
    _assert_same(results[1], results[0], 1e-12 if dtype == "float64" else 2e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lengths", [None, [3, 7, 1, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("bwd_state", [True, False], ids=["dstate", "no-dstate"])
def test_projected_lstm_loops_match_reference(lengths, dtype, bwd_state):
    """LSTM with proj_size (P < H): the compiled step kernels with np.matmul products equal the
    NumPy loops (1e-12 in float64), forward and backward, with and without lengths."""
    T, B, H, P = 7, 4, 6, 3
    rng = np.random.default_rng(5)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    xw, h0, c0, W_hh, W_hr = r(T, B, 4 * H), r(B, P), r(B, H), r(4 * H, P), r(P, H)
    lens = None if lengths is None else np.array(lengths)
    want = ref.lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lens)
    got = fast.lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lens)
    _assert_same(got, want, TOL[dtype])
    _, cs, gates, tcs = want
    dout = r(T, B, P)
    dh_T, dc_T = (r(B, P), r(B, H)) if bwd_state else (None, None)
    want = ref.lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lens)
    got = fast.lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lens)
    _assert_same(got, want, TOL[dtype])


def test_projected_lstm_layer_same_under_both_backends(restore_backend):
    T, B, D, H = 6, 3, 4, 5
    results = []
    for backend in ("numpy", "numba"):
        _kernels.set_backend(backend)
        layer = bptt.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=2, dtype="float64", seed=3)
        rng = np.random.default_rng(4)
        x = rng.standard_normal((T, B, D))
        out, (h_n, c_n) = layer.forward(x, None, lengths=[6, 2, 4])
        dx, (dh0, dc0) = layer.backward(rng.standard_normal(out.shape), (rng.standard_normal(h_n.shape), None))
        results.append([out, h_n, c_n, dx, dh0, dc0] + [layer.grads[k] for k in sorted(layer.grads)])
    _assert_same(results[1], results[0], 1e-12)


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
    """The harness in benchmarks/cells.py (not part of the library) runs and writes its table."""
    import importlib.util

    import torch  # noqa: F401 - a test dependency

    spec = importlib.util.spec_from_file_location("bench_cells", os.path.join(REPO, "benchmarks", "cells.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "B.md"
    argv = ["--quick", "--blocks", "1", "--steps", "1", "--warmup", "1", "--cells", "lstm", "--out", str(out)]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "| lstm | 5 | 1 | 3 | 4 |" in text and "GFLOP/s" in text
    assert "Made by `python benchmarks/cells.py --quick" in text
    # the row's numbers are measurements that agree with each other, not placeholders
    row = next(line for line in text.splitlines() if line.startswith("| lstm | 5 | 1 | 3 | 4 |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    b_ms, t_ms, ratio = float(cols[5]), float(cols[6]), float(cols[7])
    assert 0 < b_ms < 1e4 and 0 < t_ms < 1e4
    half = 0.005  # the table rounds to 2 decimals
    lo, hi = (b_ms - half) / (t_ms + half), (b_ms + half) / max(t_ms - half, 1e-9)
    assert lo - half <= ratio <= hi + half, (b_ms, t_ms, ratio)
    assert float(cols[13]) > 0 and float(cols[14]) > 0  # peak MB of both libraries
    dx_ratio, dx_range = cols[16].split(" ", 1)  # the steps with the input gradient: "r (lo-hi)"
    lo, hi = (float(v) for v in dx_range.strip("()").split("-"))
    assert 0 <= lo <= float(dx_ratio) <= hi
    import re

    # ... the ratio of the two times the run printed for them (ms, 2 decimals)
    b_dx, t_dx, r_dx = (float(v) for v in re.search(r"with dx: bptt ([\d.]+) ms torch ([\d.]+) ms ratio\s+([\d.]+)",
                                                      capsys.readouterr().out).groups())
    assert b_dx > 0 and t_dx > 0 and r_dx == float(dx_ratio)
    assert (b_dx - half) / (t_dx + half) - half <= r_dx <= (b_dx + half) / max(t_dx - half, 1e-9) + half


def test_pool_reuses_only_buffers_nothing_refers_to(monkeypatch):
    """_empty64's buffers: one still referred to (by the array, or only by a view of it) is never
    handed out again; once nothing refers to it, the next request of its size gets its memory;
    free buffers beyond POOL_FREE are dropped; release_buffers empties the pool; arrays under
    POOL_MIN_BYTES do not enter it."""
    import bptt.cells

    bptt.cells.release_buffers()
    small = fast._empty64((4, 16), np.float32)
    assert small.shape == (4, 16) and fast._pool() == []
    monkeypatch.setattr(fast, "POOL_MIN_BYTES", 0)
    bptt.cells.release_buffers()
    a = fast._empty64((10, 16), np.float32)
    view = a[3:]
    del a
    b = fast._empty64((10, 16), np.float32)
    assert not np.shares_memory(b, view)  # the view keeps the first buffer in use
    addr = view.ctypes.data
    del view
    c = fast._empty64((10, 16), np.float32)
    assert c.ctypes.data <= addr < c.ctypes.data + c.nbytes  # the freed buffer, reused
    del b, c
    for k in range(3 * fast.POOL_FREE):
        fast._empty64((k + 1, 16), np.float32)
    assert len(fast._pool()) <= fast.POOL_FREE
    bptt.cells.release_buffers()
    assert fast._pool() == []


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_results_kept_between_steps_unchanged(cell, monkeypatch):
    """Outputs and gradients a caller keeps from one training step are not overwritten by the
    next steps (whose arrays come from the reused buffers: every array pooled here), and every
    step gives what a fresh process would (the same step repeated gives the same bits)."""
    import bptt

    monkeypatch.setattr(fast, "POOL_MIN_BYTES", 0)

    T, B, D, H = 6, 16, 5, 32
    layer = {"lstm": bptt.LSTM, "gru": bptt.GRU}[cell](D, H, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((T, B, D)).astype(np.float32) for _ in range(3)]
    g = rng.standard_normal((T, B, H)).astype(np.float32)
    kept = []
    for x in xs + xs:
        layer.zero_grad()
        out, _ = layer.forward(x)
        dx, _ = layer.backward(g)
        kept.append((out, out.copy(), dx, dx.copy()))
    for out, out0, dx, dx0 in kept:
        assert np.array_equal(out, out0) and np.array_equal(dx, dx0)
    for k in range(3):
        assert np.array_equal(kept[k][0], kept[k + 3][0]) and np.array_equal(kept[k][2], kept[k + 3][2])


def test_blas_threads_are_warmed_once(monkeypatch):
    """Before the compiled loops first call OpenBLAS from their threads, each thread runs one
    WARM_SIZE^3 product (``_warm_blas``: OpenBLAS's single-threaded sgemm stayed three times
    slower in a thread whose first product was small), once per thread count; the products
    that follow are unchanged."""
    blas = _blas.find()
    if blas is None:
        pytest.fail("NumPy's OpenBLAS was not found: the compiled loops' BLAS path cannot run")
    calls = []
    warm_par = fast._warm_par
    monkeypatch.setattr(fast, "_warm_par", lambda gemm, A, C, n: calls.append((A.shape, n)) or warm_par(gemm, A, C, n))
    monkeypatch.setattr(fast, "_warmed", [0])
    rng = np.random.default_rng(0)
    x, h, dz = (rng.standard_normal((60, k)).astype(np.float32) for k in (5, 7, 28))
    for _ in range(2):
        got = fast._weight_grads(x, h, dz, dz, 2, blas)
        assert np.allclose(got["weight_ih"], dz.T @ x, rtol=1e-5, atol=1e-5)
        assert np.allclose(got["weight_hh"], dz.T @ h, rtol=1e-5, atol=1e-5)
    n = numba.get_num_threads()
    assert calls == [((n, fast.WARM_SIZE, fast.WARM_SIZE), n)]
    assert fast._warmed == [n]
