"""Compiled (numba) passes for the element-wise work around the recurrent loops: Adam's update
and the classifier's patching and pooling.

Each function does the arithmetic of the NumPy reference it stands in for, element by element
in the same order and in the same dtype (the scalars cast to it first, as NumPy casts a Python
float against a float32 array), so the results are equal to the bit, not just to rounding:

    here                 the reference (the math, and what the tests compare with)
    adam_update          optim.Adam._update (and AdamW's)
    patch_forward        classify.patch_forward
    pool_forward         classify.mean_pool_forward / max_pool_forward (meanmax: both)
    pool_backward        classify.mean_pool_backward + max_pool_backward

What they save is NumPy's temporaries and a pass over memory for each operation: in a small
classifier's training step these passes and the calls around them, not the recurrent loops,
took a third of the time. No fast-math contraction (a*b + c stays two roundings, as in NumPy).

They run when the recurrent loops run compiled: ``bptt.cells._kernels.fused()`` is this module
then, and None with ``BPTT_BACKEND=numpy`` or without numba (the references run). Nothing is
compiled at import; each kernel on its first call for a dtype, or loaded from numba's cache.
Dimensions: T time, B batch, F features, D input features, K steps per patch.
"""

import numpy as np
from numba import njit

_OPTS = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)


# ----------------------------------------------------------------------------- Adam
@njit(**_OPTS)
def _adam(p, g, m, v, vmax, decay, wd, one_b1, beta2, one_b2, sqrt_bc2, eps, step_size):
    """One Adam step on flat arrays, in place; decay != 1: AdamW's p *= decay first; wd != 0:
    Adam's g + wd p; vmax of size 0: no amsgrad. The scalars are in p's dtype."""
    ams = vmax.size > 0
    for i in range(p.size):
        pi = p[i]
        if decay != 1:
            pi = pi * decay
        gi = g[i]
        if wd != 0:
            gi = gi + wd * pi
        mi = m[i] + one_b1 * (gi - m[i])  # torch's lerp: m = b1 m + (1 - b1) g
        vi = v[i] * beta2 + one_b2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        if ams:
            a = vmax[i]
            if a > vi or a != a:  # np.maximum (a NaN wins)
                vi = a
            vmax[i] = vi
        p[i] = pi - step_size * (mi / (np.sqrt(vi) / sqrt_bc2 + eps))


def adam_update(p, g, m, v, vmax, decay, wd, beta1, beta2, sqrt_bc2, eps, step_size):
    """optim.Adam._update's step on C-contiguous p, g, m, v (and vmax, or None) of one dtype, in
    place. decay: AdamW's factor 1 - lr wd (1: none); wd: Adam's L2 weight decay (0: none)."""
    t = p.dtype.type
    vmax = np.empty(0, p.dtype) if vmax is None else vmax.reshape(-1)
    _adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), vmax, t(decay), t(wd), t(1 - beta1),
          t(beta2), t(1 - beta2), t(sqrt_bc2), t(eps), t(step_size))


# ----------------------------------------------------------------------------- patches
@njit(**_OPTS)
def _patch(x, lengths, K, xp):
    T0, B, D = x.shape
    zero = x.dtype.type(0)
    for t in range(xp.shape[0]):
        for b in range(B):
            for k in range(K):
                s = t * K + k
                for d in range(D):
                    if s >= T0:
                        xp[t, b, k * D + d] = zero
                    elif s < lengths[b]:
                        xp[t, b, k * D + d] = x[s, b, d]
                    else:
                        xp[t, b, k * D + d] = x[s, b, d] * zero  # NumPy's x * False


def patch_forward(x, lengths, K):
    """classify.patch_forward for K > 1: x (T0, B, D), lengths (B,) int64 -> (T, B, K*D)."""
    T0, B, D = x.shape
    xp = np.empty((-(-T0 // K), B, K * D), x.dtype)
    _patch(x, lengths, K, xp)
    return xp


# ----------------------------------------------------------------------------- pooling
@njit(**_OPTS)
def _pool_fwd(out, lengths, mean, mx, where):
    """out (T, B, F) -> mean (B, F) (the sum over all T steps, in order, / length) and / or the max
    over the valid steps with its first step (mx, where of size 0: not wanted)."""
    T, B, F = out.shape
    if mean.size:
        for b in range(B):
            for f in range(F):
                mean[b, f] = out[0, b, f]
        for t in range(1, T):
            for b in range(B):
                for f in range(F):
                    mean[b, f] += out[t, b, f]
        for b in range(B):
            n = out.dtype.type(lengths[b])
            for f in range(F):
                mean[b, f] = mean[b, f] / n
    if mx.size:
        for b in range(B):
            for f in range(F):
                mx[b, f] = out[0, b, f]
                where[b, f] = 0
        for t in range(1, T):
            for b in range(B):
                if t < lengths[b]:
                    for f in range(F):
                        v = out[t, b, f]
                        m = mx[b, f]
                        if (v > m or v != v) and m == m:  # argmax: the first maximum, or the first NaN
                            mx[b, f] = v
                            where[b, f] = t


def pool_forward(out, lengths, mean=True, max=True):
    """classify's mean and / or max pooling in one pass: out (T, B, F), lengths (B,) int64 ->
    (mean (B, F) or None, max (B, F) or None, where (B, F) int64 or None)."""
    T, B, F = out.shape
    out = np.ascontiguousarray(out)
    m = np.empty((B, F) if mean else (0, 0), out.dtype)
    mx = np.empty((B, F) if max else (0, 0), out.dtype)
    where = np.empty((B, F) if max else (0, 0), np.int64)
    _pool_fwd(out, lengths, m, mx, where)
    return (m if mean else None), (mx if max else None), (where if max else None)


@njit(**_OPTS)
def _pool_bwd(dmean, dmax, where, lengths, dout):
    T, B, F = dout.shape
    zero = dout.dtype.type(0)
    for t in range(T):
        for b in range(B):
            if dmean.size and t < lengths[b]:
                n = dmean.dtype.type(lengths[b])
                for f in range(F):
                    dout[t, b, f] = dmean[b, f] / n
            else:
                for f in range(F):
                    dout[t, b, f] = zero
    if dmax.size:
        for b in range(B):
            for f in range(F):
                dout[where[b, f], b, f] += dmax[b, f]


def pool_backward(dmean, dmax, where, lengths, T):
    """classify's pooling backward: dmean (B, F) or None, dmax (B, F) and where or None ->
    dout (T, B, F) in their dtype: dmean / length at each valid step, plus dmax at the max's step."""
    d = dmean if dmean is not None else dmax
    B, F = d.shape
    empty = np.empty((0, 0), d.dtype)
    dout = np.empty((T, B, F), d.dtype)
    _pool_bwd(empty if dmean is None else np.ascontiguousarray(dmean),
              empty if dmax is None else np.ascontiguousarray(dmax),
              np.empty((0, 0), np.int64) if where is None else where, lengths, dout)
    return dout
