"""The compiled element-wise passes (``bptt._fused``: Adam's update, the classifier's patching and
pooling) equal their NumPy references to the bit, and a classifier trained with them ends with the
very weights it ends with without them."""

import numpy as np
import pytest

import bptt
from bptt import _fused, classify, optim
from bptt.classify import (EnsembleClassifier, masked_cross_entropy, max_pool_backward, max_pool_forward,
                           mean_pool_backward, mean_pool_forward)
from test_fast_path import restore_backend  # noqa: F401 - a fixture


def bits(a):
    """The array's bytes, so that -0.0 differs from 0.0 and NaNs compare by payload."""
    a = np.ascontiguousarray(a)
    return a.dtype, a.shape, a.tobytes()


def test_the_compiled_passes_run_with_the_compiled_loops_only(restore_backend):  # noqa: F811
    bptt.cells.set_backend("numba")
    assert bptt.cells._kernels.fused() is _fused
    bptt.cells.set_backend("numpy")
    assert bptt.cells._kernels.fused() is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", [("adam", {}), ("adam", {"weight_decay": 0.1}), ("adamw", {}),
                                     ("adam", {"amsgrad": True}), ("adamw", {"amsgrad": True, "weight_decay": 0.3})])
def test_adam_update_equals_numpy_to_the_bit(name, kw, dtype, restore_backend):  # noqa: F811
    """Ten steps of Adam / AdamW (weight decay, amsgrad) on a matrix, a vector and a scalar, from
    the same start, with the compiled update and with NumPy's: every parameter and buffer the same
    bits, also where a gradient is NaN or Inf (the NaN spreads the same way)."""
    rng = np.random.default_rng(3)
    start = {"w": rng.standard_normal((7, 5)), "b": rng.standard_normal(5), "s": rng.standard_normal(())}
    grads_at = [{k: rng.standard_normal(v.shape) * 10.0 ** rng.integers(-6, 3) for k, v in start.items()}
                for _ in range(10)]
    grads_at[4]["w"][1, 2], grads_at[6]["b"][3] = np.nan, np.inf

    def train(backend):
        bptt.cells.set_backend(backend)
        params = {k: v.astype(dtype) for k, v in start.items()}
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        opt = optim.make_optimizer(name, params, grads, lr=0.01, **kw)
        for g in grads_at:
            for k in grads:
                grads[k][...] = g[k]
            with np.errstate(invalid="ignore"):
                opt.step()
        return params, opt.state_dict()["buffers"]

    (p1, b1), (p2, b2) = train("numba"), train("numpy")
    for k in p1:
        assert bits(p1[k]) == bits(p2[k]), k
        for b in b1:
            assert bits(b1[b][k]) == bits(b2[b][k]), (b, k)
    assert np.isnan(p1["w"][1, 2]) and np.isfinite(p1["w"][0]).all()


def _steps(dtype, nan=False):
    """A time-major (T, B, F) output zero past each (unsorted) length, with ties (the first of equal
    maxima must win), negative values only in one row, and optionally a NaN."""
    rng = np.random.default_rng(5)
    T, B, F = 9, 5, 6
    lengths = np.array([4, 9, 1, 7, 9])
    out = rng.standard_normal((T, B, F)).astype(dtype)
    out[:, 1] = -np.abs(out[:, 1])
    out[3, 0, :2] = out[1, 0, :2] = 5.0  # ties
    out *= (np.arange(T)[:, None] < lengths)[..., None]
    if nan:
        out[2, 3, 4] = np.nan
    return out, lengths


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nan", [False, True])
def test_pooling_equals_numpy_to_the_bit(dtype, nan):
    out, lengths = _steps(dtype, nan)
    mean, mx, where = _fused.pool_forward(out, lengths)
    ref_max, ref_where = max_pool_forward(out, lengths)
    assert bits(mean) == bits(mean_pool_forward(out, lengths))
    assert bits(mx) == bits(ref_max) and np.array_equal(where, ref_where)
    assert where[0, 0] == 1  # the first of the tied maxima
    mean_only, none, none_where = _fused.pool_forward(out, lengths, max=False)
    assert bits(mean_only) == bits(mean) and none is None and none_where is None
    rng = np.random.default_rng(6)
    dfeat = rng.standard_normal((out.shape[1], 2 * out.shape[2])).astype(dtype)
    F, T = out.shape[2], out.shape[0]
    both = _fused.pool_backward(dfeat[:, :F], dfeat[:, F:], where, lengths, T)
    assert bits(both) == bits(mean_pool_backward(dfeat[:, :F], lengths, T) + max_pool_backward(dfeat[:, F:], where, T))
    assert bits(_fused.pool_backward(dfeat[:, :F], None, None, lengths, T)) == bits(
        mean_pool_backward(dfeat[:, :F], lengths, T))
    assert bits(_fused.pool_backward(None, dfeat[:, F:], where, lengths, T)) == bits(
        max_pool_backward(dfeat[:, F:], where, T))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_patch_equals_numpy_to_the_bit(dtype, restore_backend):  # noqa: F811
    """K = 3 over 10 steps (a partial last patch), unsorted lengths, negative values past a length
    (NumPy's x * False leaves -0.0 there) and an Inf (NaN there)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((10, 4, 2)).astype(dtype)
    x[8, 1, 0] = np.inf
    lengths = np.array([10, 5, 1, 8])
    fast = _fused.patch_forward(x, lengths, 3)
    bptt.cells.set_backend("numpy")
    with np.errstate(invalid="ignore"):
        ref, ref_lengths = classify.patch_forward(x, lengths, 3)
    assert bits(fast) == bits(ref)
    assert np.array_equal(ref_lengths, [4, 2, 1, 3])


@pytest.mark.parametrize("pool", ["meanmax", "max", "mean"])
def test_a_classifier_trains_to_the_same_bits_with_and_without_them(pool, monkeypatch, restore_backend):  # noqa: F811
    """Five Adam steps of a four-member ensemble (patches of 3, one direction, the members reading
    their own rows) with the compiled loops: the same weights and optimizer buffers, bit for bit,
    whether the passes around the loops are compiled or NumPy's."""
    bptt.cells.set_backend("numba")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((23, 12, 2)).astype(np.float32)
    lengths = rng.integers(1, 24, 12)
    y = rng.integers(0, 3, 12)
    fold = np.arange(12) % 4

    def train(compiled):
        monkeypatch.setattr(classify, "fused", bptt.cells._kernels.fused if compiled else lambda: None)
        monkeypatch.setattr(optim, "fused", bptt.cells._kernels.fused if compiled else lambda: None)
        model = EnsembleClassifier(2, 3, members=4, seed=0, cell="lstm", hidden_size=8, pool=pool, patch=3)
        opt = optim.Adam(model, lr=0.01)
        own = fold[None, :] != np.arange(4)[:, None]
        for _ in range(5):
            model.zero_grad()
            logits = model(x, lengths, rows=own)
            _, dlogits = masked_cross_entropy(logits, y, own.astype(logits.dtype))
            model.backward(dlogits, input_grad=False)
            opt.step()
        return model.state_dict(), opt.state_dict()["buffers"]

    (w1, b1), (w2, b2) = train(True), train(False)
    assert all(bits(w1[k]) == bits(w2[k]) for k in w1)
    assert all(bits(b1[b][k]) == bits(b2[b][k]) for b in b1 for k in b1[b])
