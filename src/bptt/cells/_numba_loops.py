"""The time loops of the three cells compiled with numba: the fast path.

Same six functions, arguments and results as ``_numpy_loops`` (the reference they are tested
against, to 1e-12 in float64). What differs is only how the work is done:

- the element-wise gate math of a step is one fused, vectorised loop instead of a dozen NumPy
  temporaries, with ``tanh`` and ``sigmoid`` written out (``_tanh`` below) so that LLVM can
  vectorise them (calls to libm's ``tanh`` cannot be), accurate to 2 ulp;
- small problems run the whole sequence inside one compiled function with a hand-written
  recurrent product (``*_rows``): no interpreter and no dispatch per step;
- larger ones keep a thin Python loop: one ``np.matmul(..., out=)`` per step (NumPy's BLAS, on
  all its threads) and one compiled kernel for the gate math (``*_step``); the input projection
  before the loop and the weight gradients after it are single large products (``_common``).

numba's ``np.dot`` needs SciPy, which is not a dependency, hence the two strategies; which one
runs is chosen per call from the size of a step's recurrent product (``FUSED_MAX_WORK*``).

Threads: BLAS uses all of NumPy's. The compiled kernels run on the calling thread. Splitting
them over threads (the batch rows are independent; the kernels release the GIL) was measured and
dropped: after each BLAS call an OpenBLAS worker spins for about 0.1 s on one of the cores, so a
second thread of ours mostly competes with it, and waking a thread per step costs about as much
as a step's element-wise work on the machines measured (BENCHMARKS.md).

Nothing is compiled at import: each kernel is compiled, or loaded from numba's on-disk cache,
on its first call for a dtype. Dimensions: T time, B batch, H hidden, G gates.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_OPTS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy", boundscheck=False)

# Up to this many multiply-adds in one step's recurrent product (B * G*H * H) the whole sequence
# runs in one compiled loop, above it BLAS does each step's product. The backward's product
# (G*H -> H) is the narrower one for the hand-written loop, hence its lower switch. Set from
# measurements on a 2-core machine (BENCHMARKS.md); the results do not depend on them.
FUSED_MAX_WORK = 1 << 18
FUSED_MAX_WORK_BACKWARD = 1 << 15


# ----------------------------------------------------------------------------- scalar math
@intrinsic
def _bits_to_float(typingctx, n):
    """Reinterpret the bits of an int32 / int64 as a float32 / float64 (for 2**k)."""
    if not isinstance(n, types.Integer) or n.bitwidth not in (32, 64):
        return None
    sig = (types.float32 if n.bitwidth == 32 else types.float64)(n)
    ftype = ir.FloatType() if n.bitwidth == 32 else ir.DoubleType()

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ftype)

    return sig, codegen


def _tanh(x):
    """tanh for float32 / float64 scalars inside compiled code (see the overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


def _like(x, v):
    """The constant v in the float type of x (keeps float32 arithmetic in float32)."""
    raise NotImplementedError("only callable from numba-compiled code")


_F32 = np.float32
_TAYLOR = [1.0 / math.factorial(k) for k in range(2, 14)]  # 1/2!, ..., 1/13!


@overload(_like, jit_options=dict(_OPTS, cache=False))
def _like_ov(x, v):
    if x == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: np.float64(v)


@overload(_tanh, jit_options=dict(_OPTS, cache=False))
def _tanh_ov(x):
    """tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x.

    expm1(y), y <= 0, by the usual reduction y = k ln2 + r, |r| <= ln2/2:
    expm1(y) = 2^k expm1(r) + (2^k - 1), expm1(r) by its Taylor series (to 1/8! in float32,
    1/13! in float64, below half an ulp), 2^k built from its bits. No branches and no calls,
    so loops over it vectorise; relative error within 2 ulp (NumPy's is within 1), NaN stays
    NaN, |x| > 30 gives +-1 exactly as tanh does.
    """
    if x == types.float32:
        log2e, ln2_hi, ln2_lo = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
        clip, half, one, two, zero = _F32(30.0), _F32(0.5), _F32(1.0), _F32(2.0), _F32(0.0)
        c2, c3, c4, c5, c6, c7, c8 = (_F32(c) for c in _TAYLOR[:7])

        def impl(x):
            ax = abs(x)
            if ax > clip:
                ax = clip
            y = -(ax + ax)
            k = np.floor(y * log2e + half)
            r = (y - k * ln2_hi) - k * ln2_lo
            q = r + r * r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * c8))))))
            s = _bits_to_float(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
            em = s * q + (s - one)
            t = -em / (two + em)
            return t if x >= zero else -t

        return impl
    if x == types.float64:
        log2e, ln2_hi, ln2_lo = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
        c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _TAYLOR

        def impl(x):
            ax = abs(x)
            if ax > 30.0:
                ax = 30.0
            y = -(ax + ax)
            k = np.floor(y * log2e + 0.5)
            r = (y - k * ln2_hi) - k * ln2_lo
            p = c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13))))
            q = r + r * r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * p))))))
            s = _bits_to_float((np.int64(k) + np.int64(1023)) << np.int64(52))
            em = s * q + (s - 1.0)
            t = -em / (2.0 + em)
            return t if x >= 0.0 else -t

        return impl
    return None


@njit(**_OPTS)
def _sigmoid(x):
    """The reference's overflow-free form 1/(1+e^-x) = (1 + tanh(x/2)) / 2."""
    half = _like(x, 0.5)
    return half * (_like(x, 1.0) + _tanh(half * x))


@njit(**_OPTS)
def _tanh_array(x, out):
    """Element-wise ``_tanh`` over flat arrays (for tests of the scalar function)."""
    for i in range(x.size):
        out[i] = _tanh(x[i])


# ----------------------------------------------------------------------------- small products
@njit(**_OPTS)
def _vec_mat(v, M, out):
    """out[:] = v @ M for v (K,), M (K, N) C-contiguous: rows of M scaled and summed, four at a
    time (a quarter of the loads and stores of out), the inner loop running along N
    (contiguous, vectorised)."""
    K, N = M.shape
    k0 = K % 4
    if k0 == 0:
        for n in range(N):
            out[n] = ((v[0] * M[0, n] + v[1] * M[1, n]) + v[2] * M[2, n]) + v[3] * M[3, n]
        k0 = 4
    else:
        for n in range(N):
            out[n] = v[0] * M[0, n]
        for k in range(1, k0):
            vk = v[k]
            for n in range(N):
                out[n] += vk * M[k, n]
    for k in range(k0, K, 4):
        a0, a1, a2, a3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        for n in range(N):
            out[n] += ((a0 * M[k, n] + a1 * M[k + 1, n]) + a2 * M[k + 2, n]) + a3 * M[k + 3, n]


# ----------------------------------------------------------------------------- RNN
@njit(**_OPTS)
def _rnn_act(xr, ar, hr, relu, H):
    """hr = act(xr + ar) for one row (ar holds the recurrent product; hr may be ar)."""
    zero = _like(xr[0], 0.0)
    if relu:
        for j in range(H):
            a = xr[j] + ar[j]
            hr[j] = zero if a < zero else a
    else:
        for j in range(H):
            hr[j] = _tanh(xr[j] + ar[j])


@njit(**_OPTS)
def _rnn_act_grad(dr, g, hr, ar, relu, H):
    """ar = (dr + g) * act'(a), act' from the output hr: relu [h > 0], tanh 1 - h^2."""
    one = _like(dr[0], 1.0)
    zero = _like(dr[0], 0.0)
    if relu:
        for j in range(H):
            ar[j] = (dr[j] + g[j]) * (one if hr[j] > zero else zero)
    else:
        for j in range(H):
            h = hr[j]
            ar[j] = (dr[j] + g[j]) * (one - h * h)


@njit(**_OPTS)
def _rnn_fwd_rows(xw, W_hhT, relu, hs, b0, b1):
    """Batch rows b0:b1 through all T steps: hs[t+1] = act(xw[t] + hs[t] @ W_hh^T)."""
    T, _, H = xw.shape
    acc = np.empty(H, xw.dtype)
    for t in range(T):
        for b in range(b0, b1):
            _vec_mat(hs[t, b], W_hhT, acc)
            _rnn_act(xw[t, b], acc, hs[t + 1, b], relu, H)


@njit(**_OPTS)
def _rnn_bwd_rows(dout, hs, W_hh, relu, da, dh, b0, b1):
    """Rows b0:b1 back through all T steps; dh holds dh_T on entry and dh0 on exit."""
    T, _, H = dout.shape
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            _rnn_act_grad(dout[t, b], dh[b], hs[t + 1, b], da[t, b], relu, H)
            _vec_mat(da[t, b], W_hh, dh[b])


@njit(**_OPTS)
def _rnn_fwd_step(xw, ah, hs, t, relu):
    """ah holds hs[t] @ W_hh^T -> hs[t+1] = act(xw[t] + ah). (ah is a separate buffer: in
    place, LLVM could not prove the loop free of overlap and would not vectorise it.)"""
    _, B, H = xw.shape
    for b in range(B):
        _rnn_act(xw[t, b], ah[b], hs[t + 1, b], relu, H)


@njit(**_OPTS)
def _rnn_bwd_step(dout, hs, t, relu, dh, da):
    """da[t] = (dout[t] + dh) * act'(h_t)."""
    _, B, H = dout.shape
    for b in range(B):
        _rnn_act_grad(dout[t, b], dh[b], hs[t + 1, b], da[t, b], relu, H)


# ----------------------------------------------------------------------------- LSTM
@njit(**_OPTS)
def _lstm_cell_fwd(xr, zr, c_prev, c_out, tc_out, h_out, H):
    """One row: zr (4H) holds the recurrent product -> activated gates i, f, g, o in zr, c,
    tanh(c), h."""
    for j in range(H):
        i = _sigmoid(xr[j] + zr[j])
        f = _sigmoid(xr[H + j] + zr[H + j])
        g = _tanh(xr[2 * H + j] + zr[2 * H + j])
        o = _sigmoid(xr[3 * H + j] + zr[3 * H + j])
        c = f * c_prev[j] + i * g
        tc = _tanh(c)
        zr[j] = i
        zr[H + j] = f
        zr[2 * H + j] = g
        zr[3 * H + j] = o
        c_out[j] = c
        tc_out[j] = tc
        h_out[j] = o * tc


@njit(**_OPTS)
def _lstm_cell_bwd(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, H):
    """One row: reads dh_next, replaces dc_next by dc * f, fills dzr (4H)."""
    one = _like(dr[0], 1.0)
    for j in range(H):
        i = gr[j]
        f = gr[H + j]
        g = gr[2 * H + j]
        o = gr[3 * H + j]
        tc = tcr[j]
        dh = dr[j] + dh_next[j]
        dc = dc_next[j] + dh * o * (one - tc * tc)
        dzr[j] = dc * g * i * (one - i)
        dzr[H + j] = dc * c_prev[j] * f * (one - f)
        dzr[2 * H + j] = dc * i * (one - g * g)
        dzr[3 * H + j] = dh * tc * o * (one - o)
        dc_next[j] = dc * f


@njit(**_OPTS)
def _lstm_fwd_rows(xw, W_hhT, hs, cs, gates, tcs, b0, b1):
    T, _, H4 = xw.shape
    H = H4 // 4
    for t in range(T):
        for b in range(b0, b1):
            zr = gates[t, b]
            _vec_mat(hs[t, b], W_hhT, zr)
            _lstm_cell_fwd(xw[t, b], zr, cs[t, b], cs[t + 1, b], tcs[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _lstm_bwd_rows(dout, cs, gates, tcs, W_hh, dz, dh, dc, b0, b1):
    """dh, dc hold dh_T, dc_T on entry and dh0, dc0 on exit."""
    T, _, H = dout.shape
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            _lstm_cell_bwd(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)
            _vec_mat(dz[t, b], W_hh, dh[b])


@njit(**_OPTS)
def _lstm_fwd_step(xw, hs, cs, gates, tcs, t):
    """gates[t] holds hs[t] @ W_hh^T on entry."""
    _, B, H = hs.shape
    for b in range(B):
        _lstm_cell_fwd(xw[t, b], gates[t, b], cs[t, b], cs[t + 1, b], tcs[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _lstm_bwd_step(dout, cs, gates, tcs, t, dh, dc, dz):
    _, B, H = dout.shape
    for b in range(B):
        _lstm_cell_bwd(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)


# ----------------------------------------------------------------------------- GRU
@njit(**_OPTS)
def _gru_cell_fwd(xr, ghr, b_hh, h_prev, gr, ghn_out, h_out, H):
    """One row: ghr (3H) holds h_prev @ W_hh^T -> r, z, n in gr (3H), ghn, h."""
    one = _like(xr[0], 1.0)
    for j in range(H):
        r = _sigmoid(xr[j] + (ghr[j] + b_hh[j]))
        z = _sigmoid(xr[H + j] + (ghr[H + j] + b_hh[H + j]))
        gn = ghr[2 * H + j] + b_hh[2 * H + j]
        n = _tanh(xr[2 * H + j] + r * gn)
        gr[j] = r
        gr[H + j] = z
        gr[2 * H + j] = n
        ghn_out[j] = gn
        h_out[j] = (one - z) * n + z * h_prev[j]


@njit(**_OPTS)
def _gru_cell_bwd(dr, dh_next, h_prev, gr, gn, dgxr, dghr, dhz, H):
    """One row: dh = dr + dh_next -> dgx, dgh (3H) and dhz = dh * z."""
    one = _like(dr[0], 1.0)
    for j in range(H):
        r = gr[j]
        z = gr[H + j]
        n = gr[2 * H + j]
        dh = dr[j] + dh_next[j]
        dan = dh * (one - z) * (one - n * n)
        dar = dan * gn[j] * r * (one - r)
        daz = dh * (h_prev[j] - n) * z * (one - z)
        dgxr[j] = dar
        dgxr[H + j] = daz
        dgxr[2 * H + j] = dan
        dghr[j] = dar
        dghr[H + j] = daz
        dghr[2 * H + j] = dan * r
        dhz[j] = dh * z


@njit(**_OPTS)
def _gru_fwd_rows(xw, W_hhT, b_hh, hs, gates, ghn, b0, b1):
    T, _, H3 = xw.shape
    H = H3 // 3
    acc = np.empty(H3, xw.dtype)
    for t in range(T):
        for b in range(b0, b1):
            _vec_mat(hs[t, b], W_hhT, acc)
            _gru_cell_fwd(xw[t, b], acc, b_hh, hs[t, b], gates[t, b], ghn[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _gru_bwd_rows(dout, hs, gates, ghn, W_hh, dgx, dgh, dh, b0, b1):
    """dh holds dh_T on entry and dh0 on exit: dh_{t-1} = dh * z + dgh @ W_hh."""
    T, _, H = dout.shape
    dhz = np.empty(H, dout.dtype)
    acc = np.empty(H, dout.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            g = dh[b]
            _gru_cell_bwd(dout[t, b], g, hs[t, b], gates[t, b], ghn[t, b], dgx[t, b], dgh[t, b], dhz, H)
            _vec_mat(dgh[t, b], W_hh, acc)
            for j in range(H):
                g[j] = dhz[j] + acc[j]


@njit(**_OPTS)
def _gru_fwd_step(xw, gh, b_hh, hs, gates, ghn, t):
    """gh holds hs[t] @ W_hh^T on entry."""
    _, B, H = hs.shape
    for b in range(B):
        _gru_cell_fwd(xw[t, b], gh[b], b_hh, hs[t, b], gates[t, b], ghn[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _gru_bwd_step(dout, hs, gates, ghn, t, dhz, m, dgx, dgh):
    """dh_next = dhz + m (the step after's dh * z and dgh @ W_hh), kept in m; dhz <- dh * z."""
    _, B, H = dout.shape
    for b in range(B):
        g = m[b]
        d = dhz[b]
        for j in range(H):
            g[j] = d[j] + g[j]
        _gru_cell_bwd(dout[t, b], g, hs[t, b], gates[t, b], ghn[t, b], dgx[t, b], dgh[t, b], d, H)


# ----------------------------------------------------------------------------- planning
def _fused(B, GH, H, backward=False):
    """Whether the whole sequence runs in one compiled loop (else BLAS per step). One or two
    sequences go through the compiled loop up to the forward's size in the backward too: BLAS
    would do a matrix-vector product per step, where it is no faster."""
    work = B * GH * H
    if backward and B > 2:
        return work <= FUSED_MAX_WORK_BACKWARD
    return work <= FUSED_MAX_WORK


# ----------------------------------------------------------------------------- entry points
def _dtype_of(*arrays):
    """The common float32/float64 dtype of the arrays (None entries skipped), or None: then
    the NumPy loops run, with their own type promotion."""
    if not isinstance(arrays[0], np.ndarray):
        return None
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64):
        return None
    for a in arrays[1:]:
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != dt):
            return None
    return dt


def _c(a):
    return np.ascontiguousarray(a)


def _reference():
    from . import _numpy_loops

    return _numpy_loops


def rnn_forward_loop(xw, h0, W_hh, relu):
    """xw (T, B, H) input projection with both biases, h0 (B, H) -> hs (T+1, B, H)."""
    if _dtype_of(xw, h0, W_hh) is None:
        return _reference().rnn_forward_loop(xw, h0, W_hh, relu)
    xw, W_hh, relu = _c(xw), _c(W_hh), bool(relu)
    T, B, H = xw.shape
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    hs[0] = h0
    if _fused(B, H, H):
        _rnn_fwd_rows(xw, _c(W_hh.T), relu, hs, 0, B)
        return hs
    WT = W_hh.T  # BLAS reads the transpose in place, faster than a transposed copy
    ah = np.empty((B, H), xw.dtype)
    for t in range(T):
        np.matmul(hs[t], WT, out=ah)
        _rnn_fwd_step(xw, ah, hs, t, relu)
    return hs


def rnn_backward_loop(dout, dh_T, hs, W_hh, relu):
    """-> da (T, B, H) gradient on the pre-activations, dh0 (B, H)."""
    if _dtype_of(dout, dh_T, hs, W_hh) is None:
        return _reference().rnn_backward_loop(dout, dh_T, hs, W_hh, relu)
    dout, hs, W_hh, relu = _c(dout), _c(hs), _c(W_hh), bool(relu)
    T, B, H = dout.shape
    da = np.empty_like(dout)
    dh = np.array(dh_T, order="C")  # a copy: updated in place, step by step
    if _fused(B, H, H, backward=True):
        _rnn_bwd_rows(dout, hs, W_hh, relu, da, dh, 0, B)
        return da, dh
    for t in range(T - 1, -1, -1):
        _rnn_bwd_step(dout, hs, t, relu, dh, da)
        np.matmul(da[t], W_hh, out=dh)
    return da, dh


def lstm_forward_loop(xw, h0, c0, W_hh):
    """xw (T, B, 4H) -> hs, cs (T+1, B, H), gates (T, B, 4H) activated i, f, g, o, tcs (T, B, H)."""
    if _dtype_of(xw, h0, c0, W_hh) is None:
        return _reference().lstm_forward_loop(xw, h0, c0, W_hh)
    xw, W_hh = _c(xw), _c(W_hh)
    T, B, H4 = xw.shape
    H = H4 // 4
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    cs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty((T, B, H4), dtype=xw.dtype)
    tcs = np.empty((T, B, H), dtype=xw.dtype)
    hs[0], cs[0] = h0, c0
    if _fused(B, H4, H):
        _lstm_fwd_rows(xw, _c(W_hh.T), hs, cs, gates, tcs, 0, B)
        return hs, cs, gates, tcs
    WT = W_hh.T
    for t in range(T):
        np.matmul(hs[t], WT, out=gates[t])
        _lstm_fwd_step(xw, hs, cs, gates, tcs, t)
    return hs, cs, gates, tcs


def lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh):
    """-> dz (T, B, 4H) gradient on the pre-activations, dh0, dc0 (B, H)."""
    if _dtype_of(dout, dh_T, dc_T, cs, gates, tcs, W_hh) is None:
        return _reference().lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh)
    dout, cs, gates, tcs, W_hh = _c(dout), _c(cs), _c(gates), _c(tcs), _c(W_hh)
    T, B, H = dout.shape
    dz = np.empty_like(gates)
    dh = np.array(dh_T, order="C")
    dc = np.array(dc_T, order="C")
    if _fused(B, 4 * H, H, backward=True):
        _lstm_bwd_rows(dout, cs, gates, tcs, W_hh, dz, dh, dc, 0, B)
        return dz, dh, dc
    for t in range(T - 1, -1, -1):
        _lstm_bwd_step(dout, cs, gates, tcs, t, dh, dc, dz)
        np.matmul(dz[t], W_hh, out=dh)
    return dz, dh, dc


def gru_forward_loop(xw, h0, W_hh, b_hh):
    """xw (T, B, 3H) = x W_ih^T + b_ih; b_hh (3H,) or None
    -> hs (T+1, B, H), gates (T, B, 3H) activated r, z, n, ghn (T, B, H) = W_hn h + b_hn."""
    if _dtype_of(xw, h0, W_hh, b_hh) is None:
        return _reference().gru_forward_loop(xw, h0, W_hh, b_hh)
    xw, W_hh = _c(xw), _c(W_hh)
    T, B, H3 = xw.shape
    H = H3 // 3
    b = np.zeros(H3, xw.dtype) if b_hh is None else _c(b_hh)  # x + 0 is x: the same results
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty((T, B, H3), dtype=xw.dtype)
    ghn = np.empty((T, B, H), dtype=xw.dtype)
    hs[0] = h0
    if _fused(B, H3, H):
        _gru_fwd_rows(xw, _c(W_hh.T), b, hs, gates, ghn, 0, B)
        return hs, gates, ghn
    WT = W_hh.T
    gh = np.empty((B, H3), xw.dtype)
    for t in range(T):
        np.matmul(hs[t], WT, out=gh)
        _gru_fwd_step(xw, gh, b, hs, gates, ghn, t)
    return hs, gates, ghn


def gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh):
    """-> dgx (T, B, 3H) on the input-side pre-activations, dgh (T, B, 3H) on the
    recurrent side, dh0 (B, H)."""
    if _dtype_of(dout, dh_T, hs, gates, ghn, W_hh) is None:
        return _reference().gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh)
    dout, hs, gates, ghn, W_hh = _c(dout), _c(hs), _c(gates), _c(ghn), _c(W_hh)
    T, B, H = dout.shape
    dgx = np.empty_like(gates)
    dgh = np.empty_like(gates)
    dh = np.array(dh_T, order="C")
    if _fused(B, 3 * H, H, backward=True):
        _gru_bwd_rows(dout, hs, gates, ghn, W_hh, dgx, dgh, dh, 0, B)
        return dgx, dgh, dh
    dhz, m = dh, np.zeros_like(dh)  # dh_next = dhz + m: dh_T + 0 on the first step
    for t in range(T - 1, -1, -1):
        _gru_bwd_step(dout, hs, gates, ghn, t, dhz, m, dgx, dgh)
        np.matmul(dgh[t], W_hh, out=m)
    m += dhz
    return dgx, dgh, m
