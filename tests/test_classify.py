"""Sequence classification: the classifier's gradients, the data pieces, and bptt train --task
classify / eval / predict / resume end to end, with bad inputs, on files the tests write and on
one real archive dataset shipped by sktime."""

import json
import os
import shutil

import numpy as np
import pytest

import bptt
from bptt.classify import SequenceClassifier, Standardizer, bucket_batches, pad_batch, stratified_split
from bptt.cli import main
from test_fast_path import restore_backend  # noqa: F401 - a fixture
from test_series_files import sktime_data_dir


@pytest.mark.parametrize("cell,pool,bidirectional,layers,patch", [
    ("lstm", "last", True, 1, 1), ("gru", "mean", False, 2, 1), ("rnn", "mean", True, 1, 1),
    ("lstm", "last", True, 1, 2), ("gru", "mean", True, 1, 3), ("gru", "max", True, 1, 1),
    ("lstm", "meanmax", True, 1, 2), ("gru", "attn", True, 1, 2), ("lstm", "attn", False, 2, 1)])
def test_classifier_gradcheck(cell, pool, bidirectional, layers, patch, restore_backend):  # noqa: F811
    """(The NumPy loops: the classifier's own math is checked here, the loops elsewhere.)
    patch K: K steps as one, a partial last patch for lengths not a multiple of K. attn: its
    score weights set away from their zero start, so the scores' own gradients count."""
    bptt.cells.set_backend("numpy")
    rng = np.random.default_rng(0)
    model = SequenceClassifier(2, 3, cell, hidden_size=3, num_layers=layers, bidirectional=bidirectional,
                               pool=pool, dtype="float64", seed=1, patch=patch)
    if pool == "attn":
        model.attn.params["weight"][...] = 2 * rng.standard_normal(model.attn.params["weight"].shape)
    x = rng.standard_normal((5, 4, 2))
    lengths = np.array([3, 5, 1, 4])
    y = np.array([0, 2, 1, 2])
    loss_fn = bptt.CrossEntropyLoss()

    def fn():
        model.zero_grad()
        loss = loss_fn(model(x, lengths), y)
        dx = model.backward(loss_fn.backward())
        return float(loss), {"x": dx, **{k: v.copy() for k, v in model.grads.items()}}

    result = bptt.gradcheck(fn, {"x": x, **model.params})
    assert result.passed(1e-6), "\n" + str(result)
    # padding never matters: the gradient on it is zero and changing it changes nothing
    _, grads = fn()
    assert np.all(grads["x"][3:, 0] == 0) and np.all(grads["x"][1:, 2] == 0)
    x2 = x.copy()
    x2[3:, 0] = 100.0
    model.eval()
    np.testing.assert_array_equal(model(x, lengths), model(x2, lengths))


def test_attn_pool_agrees_with_torch_and_starts_as_the_mean():
    """--pool attn: the softmax over each series' valid steps of out . w, and the weighted sum, as
    torch computes them in float64 (masked_fill -inf, softmax over time), forward and every
    gradient <= 1e-12; padding gets no weight and no gradient; w = 0 gives the mean pool."""
    import torch

    from bptt.classify import attn_pool_backward, attn_pool_forward, mean_pool_forward

    rng = np.random.default_rng(4)
    T, B, F = 6, 4, 5
    lengths = np.array([3, 6, 1, 4])
    valid = (np.arange(T)[:, None] < lengths)[..., None]  # (T, B, 1)
    out = rng.standard_normal((T, B, F)) * valid  # zero past each length, as the layers give it
    w = rng.standard_normal(F)
    dfeat = rng.standard_normal((B, F))
    feat, a = attn_pool_forward(out, lengths, w)
    dout, dw = attn_pool_backward(dfeat, out, a, w)

    to, tw = torch.tensor(out, requires_grad=True), torch.tensor(w, requires_grad=True)
    score = (to @ tw).masked_fill(~torch.tensor(valid[..., 0]), float("-inf"))  # (T, B)
    ta = torch.softmax(score, dim=0)
    tfeat = (ta[..., None] * to).sum(dim=0)
    tfeat.backward(torch.tensor(dfeat))
    np.testing.assert_allclose(feat, tfeat.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a, ta.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dout, to.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=0, atol=1e-12)
    assert np.all(a[~valid[..., 0]] == 0) and np.all(dout[~valid[..., 0]] == 0)
    np.testing.assert_allclose(attn_pool_forward(out, lengths, np.zeros(F))[0], mean_pool_forward(out, lengths),
                               rtol=0, atol=1e-15)


def test_max_pool_never_picks_padding_and_routes_the_gradient_to_one_step():
    """Max pooling over each series' valid steps: padded steps never win (not even over negative
    values), of equal values the earliest wins, and the gradient goes to that one step only."""
    from bptt.classify import max_pool_backward, max_pool_forward

    out = np.full((4, 2, 2), 9.0)  # (T, B, F): padding holds the largest values
    out[:2, 0] = [[-3.0, -1.0], [-2.0, -1.0]]  # series 0, length 2: a tie (-1, -1) in feature 1
    out[:3, 1] = [[0.5, -4.0], [0.2, -5.0], [0.7, -6.0]]  # series 1, length 3
    feat, where = max_pool_forward(out, np.array([2, 3]))
    np.testing.assert_array_equal(feat, [[-2.0, -1.0], [0.7, -4.0]])
    np.testing.assert_array_equal(where, [[1, 0], [2, 0]])  # the tie: the earlier step
    dout = max_pool_backward(np.array([[1.0, 2.0], [3.0, 4.0]]), where, 4)
    want = np.zeros((4, 2, 2))
    want[1, 0, 0], want[0, 0, 1], want[2, 1, 0], want[0, 1, 1] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(dout, want)


def test_diff_features_and_their_statistics():
    """with_diff appends x[t] - x[t-1] (0 at t = 0, NaN next to a missing value); a diff
    Standardizer fits and applies its own statistics to them; a run's model reads 2D features."""
    from bptt.classify import Standardizer, with_diff
    from bptt.classify_run import ClassifyConfig, build_model

    x = np.array([[1.0, 10.0], [3.0, np.nan], [6.0, 13.0]])  # (T=3, D=2)
    np.testing.assert_array_equal(with_diff([x])[0], [[1, 10, 0, 0], [3, np.nan, 2, np.nan], [6, 13, 3, np.nan]])
    y = np.array([[0.0, 0.0], [0.0, 4.0]])
    norm = Standardizer.fit([x, y], diff=True)
    assert norm.diff and norm.input_size == 2 and len(norm.mean) == 4
    np.testing.assert_allclose(norm.mean, [2.0, 27 / 4, 1.0, 4 / 3])  # differences: [0, 2, 3, 0, 0] and [0, 0, 4]
    z = norm.transform([x], np.float64)[0]
    assert z.shape == (3, 4) and z[1, 1] == 0 and z[1, 3] == 0 and z[2, 3] == 0  # NaN -> 0 (the mean)
    np.testing.assert_allclose(z[:, 2], (np.array([0, 2, 3]) - 1.0) / norm.std[2])
    assert build_model(ClassifyConfig(diff=True, patch=2), 2, 3).rnn.input_size == 2 * 2 * 2


def test_patch_is_a_reshape_of_consecutive_steps():
    from bptt.classify import patch_backward, patch_forward

    x = np.arange(7 * 2 * 2, dtype=np.float64).reshape(7, 2, 2) + 1  # (T0, B, D), no zeros
    xp, lens = patch_forward(x, np.array([7, 4]), 3)
    assert xp.shape == (3, 2, 6) and list(lens) == [3, 2]
    np.testing.assert_array_equal(xp[1, 0], x[3:6, 0].ravel())  # steps 3, 4, 5 of series 0
    np.testing.assert_array_equal(xp[2, 0], np.r_[x[6, 0], 0, 0, 0, 0])  # the partial last patch
    np.testing.assert_array_equal(xp[1, 1], np.r_[x[3, 1], 0, 0, 0, 0])  # past length 4: zeros
    dx = patch_backward(xp, np.array([7, 4]), 7, 3)  # the reverse, zero past each length
    np.testing.assert_array_equal(dx[:, 0], x[:, 0])
    np.testing.assert_array_equal(dx[:4, 1], x[:4, 1]) and np.testing.assert_array_equal(dx[4:, 1], 0)
    with pytest.raises(ValueError, match="patch"):
        SequenceClassifier(1, 2, patch=0)


def test_augment_variants():
    from bptt.classify import augment

    x = np.stack([np.linspace(-1, 1, 30), np.cos(np.linspace(0, 3, 30))], axis=1).astype(np.float32)  # (T, D)
    np.testing.assert_array_equal(augment(x, 0.0, np.random.default_rng(0)), x)  # strength 0: the series
    a, b = augment(x, 0.2, np.random.default_rng(1)), augment(x, 0.2, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b)  # the RNG decides
    assert 0 < np.abs(a - x).mean() < 1
    assert not np.array_equal(a, augment(x, 0.2, np.random.default_rng(2)))


def test_crop_and_time_warp_variants():
    """--crop: a window of round(F*T) consecutive steps at a random start, every start drawn;
    --warp: the series read at monotone warped times that keep both ends; both decided by the RNG."""
    from bptt.classify import crop, time_warp

    x = np.stack([np.arange(20.0), -np.arange(20.0)], axis=1).astype(np.float32)  # (T, D), step t holds t
    starts = set()
    for seed in range(40):
        w = crop(x, 0.8, np.random.default_rng(seed))
        assert w.shape == (16, 2) and w.dtype == np.float32
        np.testing.assert_array_equal(w, x[int(w[0, 0]) : int(w[0, 0]) + 16])  # consecutive steps of x
        starts.add(int(w[0, 0]))
    assert starts == set(range(5))  # every start 0..T-16
    assert crop(x, 0.01, np.random.default_rng(0)).shape == (1, 2)  # at least one step
    assert crop(x[:1], 0.5, np.random.default_rng(0)).shape == (1, 2)

    np.testing.assert_array_equal(time_warp(x, 0.0, np.random.default_rng(0)), x)  # strength 0: the series
    a, b = time_warp(x, 0.3, np.random.default_rng(1)), time_warp(x, 0.3, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b)
    t = a[:, 0]  # the times read, as x holds its own step index
    assert t[0] == 0 and abs(t[-1] - 19) < 1e-5 and np.all(np.diff(t) > 0)  # monotone, both ends kept
    np.testing.assert_allclose(a[:, 1], -t)  # every feature read at the same times
    assert 0.1 < np.abs(t - np.arange(20)).max() < 10
    assert not np.array_equal(a, time_warp(x, 0.3, np.random.default_rng(2)))
    assert time_warp(x[:1], 0.3, np.random.default_rng(0)).shape == (1, 2)


def test_circular_shift():
    """--roll F: the series rotated in time by r, |r| <= floor(F*T), every such r drawn; the values
    all kept, in order around the circle; F = 0 (or a shift below one step) draws nothing."""
    from bptt.classify import circular_shift

    x = np.stack([np.arange(20.0), -np.arange(20.0)], axis=1).astype(np.float32)  # (T, D), step t holds t
    shifts = set()
    for seed in range(200):
        y = circular_shift(x, 0.2, np.random.default_rng(seed))
        r = (-int(y[0, 0])) % 20  # y[0] = x[-r mod T]
        np.testing.assert_array_equal(y, np.roll(x, r, axis=0))
        shifts.add(r if r <= 10 else r - 20)
    assert shifts == set(range(-4, 5))  # floor(0.2 * 20) = 4
    rng = np.random.default_rng(0)
    assert circular_shift(x, 0.0, rng) is x and circular_shift(x, 0.04, rng) is x  # floor(0.8) = 0
    assert rng.random() == np.random.default_rng(0).random()
    assert set(np.unique(circular_shift(x, 1.0, np.random.default_rng(1))[:, 0])) == set(range(20))


def test_test_time_rotations():
    """--tta R: the j-th rotation of a series of length T is round(j T / R) steps, halves to the even
    number; a RotationTTA's probability is the mean over the rotations of its model's, here
    recomputed one series and one rotation at a time."""
    from bptt.classify import EnsembleClassifier, RotationTTA, predict_logits, rotate_all, rotation_steps

    assert [rotation_steps(4, j, 8) for j in range(8)] == [0, 0, 1, 2, 2, 2, 3, 4]  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    assert [rotation_steps(150, j, 8) for j in range(8)] == [0, 19, 38, 56, 75, 94, 112, 131]  # 112.5 -> 112
    rng = np.random.default_rng(4)
    series = [rng.standard_normal((n, 2)).astype(np.float32) for n in (9, 1, 4, 7, 12)]
    for j in range(3):
        for x, y in zip(series, rotate_all(series, j, 3)):
            np.testing.assert_array_equal(y, np.roll(x, int(round(j * len(x) / 3)), axis=0))
    for model in (EnsembleClassifier(2, 3, members=2, cell="gru", hidden_size=5, pool="mean", patch=2, seed=1,
                                     bidirectional=True),
                  SequenceClassifier(2, 3, cell="lstm", hidden_size=4, pool="last", seed=2)):
        tta = RotationTTA(model, 3)

        def prob(x):  # one series alone
            lg = model.eval().predict(x[:, None], np.array([len(x)]))[0].astype(np.float64)
            return np.exp(lg) / np.exp(lg).sum()
        want = np.array([np.mean([prob(np.roll(x, int(round(j * len(x) / 3)), axis=0)) for j in range(3)], axis=0)
                         for x in series])
        np.testing.assert_allclose(tta.probabilities(series), want, atol=1e-6)
        np.testing.assert_allclose(predict_logits(tta, series), np.log(want), atol=1e-5)
        plain = np.array([prob(x) for x in series])
        assert np.abs(plain - want).max() > 1e-3  # the rotations count
    with pytest.raises(ValueError, match="2 or more rotations"):
        RotationTTA(model, 1)


def test_probability_mean():
    """--patch auto's mix: a ProbabilityMean of classifiers with different patches (one of them a
    RotationTTA) predicts by the mean of their probabilities, recomputed here one series at a time."""
    from bptt.classify import AsRead, EnsembleClassifier, ProbabilityMean, RotationTTA, Standardizer, predict_logits

    rng = np.random.default_rng(5)
    series = [rng.standard_normal((n, 2)).astype(np.float32) for n in (9, 1, 4, 7, 12)]
    parts = [EnsembleClassifier(2, 3, members=2, cell="gru", hidden_size=5, pool="mean", patch=2, seed=1),
             SequenceClassifier(2, 3, cell="lstm", hidden_size=4, pool="last", seed=2),
             RotationTTA(SequenceClassifier(2, 3, cell="gru", hidden_size=4, pool="mean", patch=3, seed=3), 4)]

    def prob(part, x):  # one series alone
        lg = predict_logits(part, [x])[0]
        return np.exp(lg) / np.exp(lg).sum()
    want = np.array([np.mean([prob(p, x) for p in parts], axis=0) for x in series])
    mix = ProbabilityMean(parts)
    np.testing.assert_allclose(mix.probabilities(series), want, atol=1e-6)
    np.testing.assert_allclose(predict_logits(mix, series), np.log(want), atol=1e-5)
    for p in parts:
        assert np.abs(np.array([prob(p, x) for x in series]) - want).max() > 1e-3  # each part counts
    with pytest.raises(ValueError, match="2 or more classifiers"):
        ProbabilityMean(parts[:1])
    with pytest.raises(ValueError, match="one number of classes"):
        ProbabilityMean([parts[1], SequenceClassifier(2, 4, cell="gru", hidden_size=4, seed=4)])
    with pytest.raises(ValueError, match="no members of its own"):
        predict_logits(mix, series, members=True)
    # each part its own standardisation (one with first differences), from the series as read
    norms = [Standardizer([0.2, -0.1], [1.5, 0.7]), Standardizer([0.0, 0.3], [0.9, 1.1]),
             Standardizer([0.1, 0.0, -0.2, 0.1], [1.0, 2.0, 0.5, 0.8], diff=True)]
    parts[2] = RotationTTA(SequenceClassifier(4, 3, cell="gru", hidden_size=4, pool="mean", patch=3, seed=3), 4)
    own = ProbabilityMean(parts, norms)
    raw = [x * 2 + 1 for x in series]
    want = np.array([np.mean([prob(p, n.transform([x], np.float32)[0]) for p, n in zip(parts, norms)], axis=0)
                     for x in raw])
    np.testing.assert_allclose(own.probabilities(raw), want, atol=1e-6)
    calls = []  # parts that share one standardisation (one object) have it applied once
    shared = Standardizer([0.2, -0.1], [1.5, 0.7])
    shared.transform = lambda s, dt, f=shared.transform: calls.append(1) or f(s, dt)
    twice = ProbabilityMean(parts, [shared, shared, norms[2]])
    np.testing.assert_allclose(twice.probabilities(raw), np.array(
        [np.mean([prob(p, n.transform([x], np.float32)[0]) for p, n in zip(parts, [norms[0], norms[0], norms[2]])],
                 axis=0) for x in raw]), atol=1e-6)
    assert len(calls) == 1
    assert [x.dtype for x in AsRead(2).transform(series, np.float32)] == [np.float64] * 5
    with pytest.raises(ValueError, match="one standardisation per part"):
        ProbabilityMean(parts, norms[:2])
    with pytest.raises(ValueError, match="one standardisation per part"):
        ProbabilityMean(parts[:2], [norms[0], Standardizer([0.0], [1.0])])


def test_input_dropout():
    """--input-dropout P: each value zeroed with probability P, the rest scaled by 1/(1-P) (the
    expected input unchanged), padding stays zero, the RNG decides; P = 0 draws nothing."""
    from bptt.classify import input_dropout

    x = np.ones((50, 8, 3), np.float32)  # (T, B, D)
    x[40:, :2] = 0  # padding of two shorter series
    rng = np.random.default_rng(0)
    assert input_dropout(x, 0.0, rng) is x and rng.random() == np.random.default_rng(0).random()
    a, b = input_dropout(x, 0.25, np.random.default_rng(1)), input_dropout(x, 0.25, np.random.default_rng(1))
    assert a.dtype == np.float32 and a.shape == x.shape and np.array_equal(a, b)
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}  # dropped or scaled
    assert np.all(a[40:, :2] == 0)  # padding stays zero
    assert 0.2 < (a[x > 0] == 0).mean() < 0.3  # about P of the values dropped
    assert not np.array_equal(a, input_dropout(x, 0.25, np.random.default_rng(2)))


def test_training_batches_get_input_dropout(toy, tmp_path):
    """A run with --input-dropout trains on dropped-out batches (its weights move differently
    after an epoch); with 0 it trains exactly as without the option."""
    from bptt.classify_run import ClassifyConfig, ClassifyRun

    def one_epoch(name, **kw):
        run = ClassifyRun(ClassifyConfig(data=toy["train"], hidden_size=8, seed=3, out=str(tmp_path / name), **kw))
        run.train_epoch()
        return run.model.state_dict()

    plain, zero, dropped = one_epoch("a"), one_epoch("b", input_dropout=0.0), one_epoch("c", input_dropout=0.3)
    assert all(np.array_equal(plain[k], zero[k]) for k in plain)
    assert not all(np.array_equal(plain[k], dropped[k]) for k in plain)


def test_training_batches_are_cropped_and_warped(toy, tmp_path):
    """A run with --crop and --warp trains on windows of its series, read at warped times; the
    validation series stay whole."""
    from bptt.classify_run import ClassifyConfig, ClassifyRun

    run = ClassifyRun(ClassifyConfig(data=toy["train"], crop=0.5, warp=0.2, out=str(tmp_path / "r")))
    idx = np.arange(len(run.train_x))
    rolled = ClassifyRun(ClassifyConfig(data=toy["train"], roll=0.5, out=str(tmp_path / "ro")))
    for b, i in zip(rolled._batch_series(idx), idx):  # --roll: each a rotation of its series
        x = rolled.train_x[i]
        assert any(np.array_equal(b, np.roll(x, r, axis=0)) for r in range(len(x)))
    assert sum(not np.array_equal(b, rolled.train_x[i]) for b, i in zip(rolled._batch_series(idx), idx)) > len(idx) / 2
    batch = run._batch_series(idx)
    assert [len(b) for b in batch] == [max(1, round(0.5 * len(run.train_x[i]))) for i in idx]
    assert not any(np.array_equal(b, run.train_x[i][: len(b)]) for b, i in zip(batch, idx) if len(b) > 2)
    assert all(len(v) > 0 for v in run.val_x) and len(run.val_x) > 0
    plain = ClassifyRun(ClassifyConfig(data=toy["train"], out=str(tmp_path / "p")))
    assert all(np.array_equal(b, plain.train_x[i]) for b, i in zip(plain._batch_series(idx), idx))


def test_mean_pool_backward_stays_in_its_dtype():
    """The mean pool's backward in float32 is float32 throughout, and bit for bit the float64
    quotient rounded once (what it was when it went through float64): dfeat / length at each
    valid step, zero past it."""
    from bptt.classify import mean_pool_backward

    rng = np.random.default_rng(7)
    lengths = np.array([5, 1, 3, 5, 2])
    dfeat = rng.standard_normal((5, 6)).astype(np.float32)
    dout = mean_pool_backward(dfeat, lengths, 5)
    assert dout.dtype == np.float32 and dout.shape == (5, 5, 6)
    mask = (np.arange(5)[:, None] < lengths)[..., None]
    expected = (mask * (dfeat.astype(np.float64) / lengths[:, None])[None]).astype(np.float32)
    assert np.array_equal(dout, expected)
    assert not dout[lengths[1]:, 1].any()
    d64 = mean_pool_backward(dfeat.astype(np.float64), lengths, 5)
    assert d64.dtype == np.float64 and np.array_equal(d64, mask * (dfeat.astype(np.float64) / lengths[:, None])[None])


def test_ensemble_gradcheck_and_folds(restore_backend):  # noqa: F811
    """Each member learns only from the series outside its fold: the masked loss's gradients
    (finite differences), and a member's gradient does not depend on its own fold's labels."""
    from bptt.classify import EnsembleClassifier, fold_split, masked_cross_entropy, mean_softmax_log

    bptt.cells.set_backend("numpy")
    rng = np.random.default_rng(0)
    model = EnsembleClassifier(2, 3, members=3, cell="gru", hidden_size=3, pool="mean", dtype="float64",
                               seed=1, patch=2)
    x = rng.standard_normal((5, 6, 2))
    lengths = np.array([3, 5, 1, 4, 2, 5])
    y = np.array([0, 2, 1, 2, 0, 1])
    fold = fold_split(y, 3, np.random.default_rng(4))
    assert sorted(np.bincount(fold).tolist()) == [2, 2, 2]  # even folds, each class spread
    assert all(len(set(fold[y == c])) == 2 for c in range(3))
    own = (fold[None] != np.arange(3)[:, None]).astype(float)  # (M, B)

    def fn(labels=y):
        model.zero_grad()
        loss, dlogits = masked_cross_entropy(model(x, lengths), labels, own)
        dx = model.backward(dlogits)
        return loss, {"x": dx, **{k: v.copy() for k, v in model.grads.items()}}

    result = bptt.gradcheck(fn, {"x": x, **model.params})
    assert result.passed(1e-6), "\n" + str(result)
    other = y.copy()
    other[fold == 0] = (other[fold == 0] + 1) % 3  # change the labels member 0 never trains on
    g0, g1 = fn()[1], fn(other)[1]
    assert all(np.array_equal(g0[k], g1[k]) for k in g0 if k.startswith("member0."))
    assert any(not np.array_equal(g0[k], g1[k]) for k in g0 if k.startswith("member1."))
    model.eval()
    p = np.exp(model.predict(x, lengths))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(model.predict(x, lengths), mean_softmax_log(model(x, lengths)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ensemble_rows_compute_only_the_series_each_member_learns_from(backend, restore_backend):  # noqa: F811
    """forward(x, lengths, rows): member m reads only the series of rows[m] (shorter ones: only the
    steps they need); its logits there, every gradient and dx equal those of the forward of every
    member on every series under the same masked loss, and a member that reads none gets none."""
    from bptt.classify import EnsembleClassifier, masked_cross_entropy

    bptt.cells.set_backend(backend)
    rng = np.random.default_rng(5)
    model = EnsembleClassifier(2, 3, members=3, cell="lstm", hidden_size=4, pool="mean", dtype="float64",
                               seed=2, patch=2, bidirectional=True)
    x = rng.standard_normal((5, 6, 2))
    lengths = np.array([3, 5, 1, 4, 2, 5])
    y = np.array([0, 2, 1, 2, 0, 1])
    rows = np.array([[1, 0, 1, 0, 1, 0],   # member 0: lengths 3, 1, 2 (3 of the 5 steps)
                     [0, 0, 0, 0, 0, 0],   # member 1: none
                     [1, 1, 1, 1, 1, 1]], bool)

    def run(**kw):
        model.zero_grad()
        logits = model(x, lengths, **kw)
        loss, dlogits = masked_cross_entropy(logits, y, rows.astype(float))
        dx = model.backward(dlogits)
        return logits, loss, dx, {k: v.copy() for k, v in model.grads.items()}

    full, part = run(), run(rows=rows)
    np.testing.assert_allclose(part[0][rows], full[0][rows], rtol=0, atol=1e-13)
    assert np.all(part[0][~rows] == 0)
    assert abs(part[1] - full[1]) < 1e-13
    np.testing.assert_allclose(part[2], full[2], rtol=0, atol=1e-13)
    for k, g in full[3].items():
        np.testing.assert_allclose(part[3][k], g, rtol=0, atol=1e-13, err_msg=k)
    assert all(not np.any(g) for k, g in part[3].items() if k.startswith("member1."))
    assert all(np.any(g) for k, g in part[3].items() if k.startswith(("member0.", "member2.")))
    model(x, lengths, rows=rows)
    assert model.backward(np.zeros((3, 6, 3)), input_grad=False) is None  # no dx asked for
    with pytest.raises(ValueError, match=r"rows must be \(members, batch\) = \(3, 6\)"):
        model(x, lengths, rows=rows[:2])


def test_ensemble_run_scores_out_of_fold(toy, capsys):
    """The validation accuracy of an --ensemble run is the out-of-fold accuracy on all of TRAIN:
    recomputed from RUN/best's members and the run's folds, it is the best epoch's."""
    from bptt.classify import fold_split, predict_logits
    from bptt.classify_run import load_for_eval, load_labelled

    out = str(toy["dir"] / "ens")
    import numba

    threads = numba.get_num_threads()
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "3", "--ensemble", "3",
                 "--threads", "1", "--out", out] + TRAIN_ARGS) == 0
    assert numba.get_num_threads() == threads  # --threads holds for the run only
    assert "3 folds" in capsys.readouterr().err
    model, norm, classes, meta = load_for_eval(out)
    series, labels = load_labelled(toy["train"], "training")
    y = np.array([classes.index(lab) for lab in labels])
    fold = fold_split(y, 3, np.random.default_rng([3, 1]))  # --seed 3
    logits = predict_logits(model, norm.transform(series, np.float32), members=True)  # (M, N, C)
    oof = logits[fold, np.arange(len(y))].argmax(axis=1)
    assert meta["best"]["val_accuracy"] == pytest.approx(float(np.mean(oof == y)))
    assert main(["eval", out, "--data", toy["test"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20


def test_data_pieces():
    series = [np.array([[1.0, np.nan], [3.0, 2.0]]), np.array([[5.0, 4.0]])]
    norm = Standardizer.fit(series)
    np.testing.assert_allclose(norm.mean, [3.0, 3.0])
    z = norm.transform(series, np.float32)
    assert z[0].dtype == np.float32 and z[0][0, 1] == 0.0  # a missing value -> the mean
    x, lengths = pad_batch(z, [1, 0], np.float32)
    assert x.shape == (2, 2, 2) and list(lengths) == [1, 2] and np.all(x[1, 0] == 0)
    lens = np.random.default_rng(1).integers(1, 100, 40)
    batches = bucket_batches(lens, 8, np.random.default_rng(2))
    assert sorted(np.concatenate(batches).tolist()) == list(range(40))
    spread = [np.ptp(lens[b]) for b in batches]
    assert max(spread) < 40  # similar lengths in each batch
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    tr, va = stratified_split(labels, 0.2, np.random.default_rng(3))
    assert sorted(labels[va].tolist()) == [0, 0, 1, 2] and len(tr) + len(va) == 17


# ----------------------------------------------------------------------------- end to end
def _write_ts(path, n, rng, dims=2, labels=("up", "down"), declared=("up", "down")):
    """Easy classes: 'up' rises, 'down' falls; unequal lengths 4..12."""
    lines = ["@problemName Toy", "@univariate false", f"@dimensions {dims}", "@equalLength false",
             "@classLabel true " + " ".join(declared), "@data"]
    for i in range(n):
        lab = labels[i % len(labels)]
        T = int(rng.integers(4, 13))
        sign = 1.0 if lab == "up" else -1.0
        dims_txt = []
        for d in range(dims):
            v = sign * np.linspace(0, 1, T) * (d + 1) + 0.1 * rng.standard_normal(T)
            dims_txt.append(",".join(f"{a:.4f}" for a in v))
        lines.append(":".join(dims_txt) + f":{lab}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    return {"train": _write_ts(d / "TRAIN.ts", 40, rng), "test": _write_ts(d / "TEST.ts", 20, rng), "dir": d}


TRAIN_ARGS = ["--cell", "gru", "--hidden", "8", "--batch", "8", "--lr", "0.02", "--quiet", "--seed", "3"]


def test_train_eval_predict_resume(toy, capsys):
    out = str(toy["dir"] / "run")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--test", toy["test"], "--epochs", "6",
                 "--out", out] + TRAIN_ARGS) == 0
    text = capsys.readouterr().out
    assert "best epoch" in text and "test " in text
    assert os.path.isfile(os.path.join(out, "best", "checkpoint.json"))
    history = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    best = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    meta = json.load(open(os.path.join(out, "best", "checkpoint.json")))
    assert meta["step"] == best["epoch"]

    assert main(["eval", out, "--data", toy["test"], "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 20 and 0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0
    assert r["accuracy"] >= 0.9  # the classes are easy
    assert os.path.isfile(r["confusion_png"]) and open(r["confusion_png"], "rb").read(4) == b"\x89PNG"
    assert sum(map(sum, r["confusion"])) == 20
    assert main(["eval", out, "--data", toy["test"]]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "recall per class" in text and "confusion matrix" in text

    assert main(["predict", out, "--data", toy["test"]]) == 0
    pred = capsys.readouterr().out.split()
    assert len(pred) == 20 and set(pred) <= {"up", "down"}
    truth = [line.rsplit(":", 1)[1] for line in open(toy["test"]).read().split("@data\n")[1].split()]
    assert np.mean([p == t for p, t in zip(pred, truth)]) == r["accuracy"]


def test_tta_run_predicts_by_the_mean_over_rotations(toy, capsys, tmp_path):
    """--roll 0.5 --tta 4: the checkpoint keeps tta; eval, predict and the ONNX export predict by the
    mean probability over 4 rotations (the best checkpoint's model, rotated here by hand); the
    validation that picks the best epoch reads the series as they are. --tta without --roll 0.5
    is a one-line error."""
    from bptt.classify import predict_logits, rotate_all, softmax
    from bptt.classify_run import _load_one, load_labelled

    out = str(tmp_path / "tta")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "3", "--roll", "0.5", "--tta", "4",
                 "--pool", "mean", "--patch", "2", "--out", out] + TRAIN_ARGS) == 0
    capsys.readouterr()
    model, norm, classes, meta = _load_one(os.path.join(out, "best"))
    assert meta["config"]["tta"] == 4 and meta["config"]["roll"] == 0.5
    series, labels = load_labelled(toy["test"], "evaluation")
    z = norm.transform(series, np.float32)
    p = np.mean([softmax(predict_logits(model, rotate_all(z, j, 4))) for j in range(4)], axis=0)
    want = [classes[k] for k in p.argmax(axis=1)]
    assert main(["predict", out, "--data", toy["test"]]) == 0
    assert capsys.readouterr().out.split() == want
    assert main(["eval", out, "--data", toy["test"], "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["accuracy"] == np.mean([w == t for w, t in zip(want, labels)])
    assert abs(r["loss"] - float(-np.log(p[np.arange(len(labels)), [classes.index(t) for t in labels]]).mean())) < 1e-5
    path = str(tmp_path / "tta.onnx")
    assert main(["export", out, "--onnx", path]) == 0
    capsys.readouterr()
    assert float(np.abs(_onnx_logits(path, series) - np.log(p)).max()) <= 1e-5
    for extra in ([], ["--roll", "0.2"]):
        _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--tta", "4",
                                 "--out", str(tmp_path / "bad")] + extra, "--tta averages over rotations")
    assert not os.path.exists(tmp_path / "bad")


def test_max_pool_run_trains_and_its_checkpoint_keeps_the_pool(toy, capsys, tmp_path):
    """--pool max end to end: the checkpoint restores a max-pooling model whose predictions are
    eval's; a --pool value bptt does not have is a one-line usage error."""
    from bptt.classify import predict_logits
    from bptt.classify_run import load_for_eval

    out = str(toy["dir"] / "maxrun")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "3", "--pool", "max",
                 "--bidirectional", "--out", out] + TRAIN_ARGS) == 0
    assert "pool max" in capsys.readouterr().err
    model, norm, classes, _ = load_for_eval(out)
    assert model.pool == "max" and model.head.in_features == 2 * 8
    series, labels = bptt.data.read_ts(toy["test"])
    pred = predict_logits(model, norm.transform(series, np.float32)).argmax(axis=1)
    assert main(["eval", out, "--data", toy["test"], "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["accuracy"] == pytest.approx(np.mean([classes[k] == lab for k, lab in zip(pred, labels)]))
    assert r["accuracy"] >= 0.9  # the classes are easy
    assert main(["train", "--task", "classify", "--data", toy["train"], "--pool", "median",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pool: invalid choice: 'median'" in err and "max" in err, err
    assert not os.path.exists(tmp_path / "bad")


def test_resume_continues_exactly(toy, capsys):
    a, b = str(toy["dir"] / "a"), str(toy["dir"] / "b")
    args = ["train", "--task", "classify", "--data", toy["train"], "--dropout", "0.3", "--layers", "2",
            "--augment", "0.1", "--crop", "0.8", "--warp", "0.2", "--input-dropout", "0.2", "--roll", "0.3", "--ensemble", "2",
            "--diff", "--optimizer", "adamw", "--weight-decay", "0.05", "--pool", "attn"] + TRAIN_ARGS
    assert main(args + ["--epochs", "4", "--out", a]) == 0
    assert main(args + ["--epochs", "2", "--out", b]) == 0
    assert main(["train", "--resume", b, "--epochs", "4", "--quiet"]) == 0
    capsys.readouterr()
    for name in ("model.safetensors", "state.safetensors"):
        wa = open(os.path.join(a, "ckpt-00000004", name), "rb").read()
        wb = open(os.path.join(b, "ckpt-00000004", name), "rb").read()
        assert wa == wb, name
    def log(run):  # the training log without its timings
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in open(os.path.join(run, "metrics.jsonl"))]

    assert log(a) == log(b) and len(log(b)) == 4
    cfg = json.load(open(os.path.join(b, "ckpt-00000004", "checkpoint.json")))["config"]
    assert (cfg["crop"], cfg["warp"], cfg["augment"], cfg["input_dropout"], cfg["roll"]) == (0.8, 0.2, 0.1, 0.2, 0.3)
    opt = json.load(open(os.path.join(b, "ckpt-00000004", "checkpoint.json")))["optimizer"]
    assert (cfg["optimizer"], opt["type"], opt["hyper"]["weight_decay"]) == ("adamw", "adamw", 0.05)
    from safetensors.numpy import load_file

    w = load_file(os.path.join(b, "ckpt-00000004", "model.safetensors"))["member0.attn.weight"]
    assert cfg["pool"] == "attn" and np.abs(w).max() > 0  # the pool's weights learned, saved, resumed
    assert [row["lr"] for row in log(b)] == [0.02] * 4
    assert main(["train", "--resume", b, "--lr", "0.1"]) == 1
    assert "cannot change when resuming" in capsys.readouterr().err

    # --schedule cosine: the lr of epoch e is lr (1 + cos(pi e / epochs)) / 2; resumed from epoch 2 of 3
    # (a copy of the run without its third checkpoint), the third epoch is the same
    c, d = str(toy["dir"] / "c"), str(toy["dir"] / "d")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--schedule", "cosine", "--epochs", "3",
                 "--out", c] + TRAIN_ARGS) == 0
    want = [0.02 * 0.5 * (1 + np.cos(np.pi * e / 3)) for e in range(3)]
    np.testing.assert_allclose([row["lr"] for row in log(c)], want, rtol=1e-12)
    shutil.copytree(c, d)
    shutil.rmtree(os.path.join(d, "ckpt-00000003"))
    assert main(["train", "--resume", os.path.join(d, "ckpt-00000002"), "--quiet"]) == 0
    for name in ("model.safetensors", "state.safetensors"):
        assert (open(os.path.join(c, "ckpt-00000003", name), "rb").read()
                == open(os.path.join(d, "ckpt-00000003", name), "rb").read()), name
    assert log(c) == log(d)


def test_weight_decay_is_what_the_run_says(toy, capsys):
    """--weight-decay reaches the optimizer as given: 0 (the default) is no decay with adamw too
    (torch's AdamW would default to 0.01); with adamw the decay is decoupled: one epoch of AdamW
    with weight decay equals AdamW without it from weights shrunk by 1 - lr*wd before each step,
    which a coupled L2 term (adam) does not."""
    from bptt.classify_run import ClassifyConfig, ClassifyRun

    def run(opt, wd, hook=None):
        r = ClassifyRun(ClassifyConfig(data=toy["train"], cell="gru", hidden_size=4, batch_size=8, epochs=1,
                                       lr=0.02, seed=3, optimizer=opt, weight_decay=wd, out=str(toy["dir"] / "wd")))
        if hook:
            step = r.opt.step

            def shrunk_step():  # the decay by hand, then the undecayed step
                for p in r.model.params.values():
                    p *= np.float32(1 - 0.02 * hook)
                step()
            r.opt.step = shrunk_step
        r.train_epoch()
        return r, np.concatenate([p.ravel() for p in r.model.params.values()])

    r0, w0 = run("adamw", 0.0)
    assert r0.opt.weight_decay == 0.0
    _, w_decayed = run("adamw", 0.1)
    _, w_by_hand = run("adamw", 0.0, hook=0.1)
    _, w_l2 = run("adam", 0.1)
    np.testing.assert_allclose(w_decayed, w_by_hand, rtol=0, atol=1e-6)
    assert np.abs(w_decayed - w0).max() > 1e-4 and np.abs(w_l2 - w_decayed).max() > 1e-4


def test_patience_stops_and_resume_keeps_the_rule(toy, capsys):
    """--patience N: training stops N epochs after the best one (the checkpoint RUN/best holds);
    resuming with more --epochs does not train on, as the rule still holds."""
    head, data = open(toy["train"]).read().split("@data\n")
    rng = np.random.default_rng(1)  # labels at random: nothing to learn, the validation loss soon rises
    noise = toy["dir"] / "noise.ts"
    noise.write_text(head + "@data\n" + "".join(line.rsplit(":", 1)[0] + f":{rng.choice(['up', 'down'])}\n"
                                                for line in data.split()))
    out = str(toy["dir"] / "patience")
    assert main(["train", "--task", "classify", "--data", str(noise), "--epochs", "40", "--patience", "2",
                 "--out", out] + TRAIN_ARGS) == 0
    history = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    best = json.load(open(os.path.join(out, "best", "checkpoint.json")))["step"]
    assert len(history) == best + 2 < 40
    scores = [(h["val_accuracy"], -h["val_loss"]) for h in history]
    assert all(s <= scores[best - 1] for s in scores[best:])
    assert main(["train", "--resume", out, "--epochs", "60", "--quiet"]) == 0
    assert len(open(os.path.join(out, "metrics.jsonl")).readlines()) == best + 2
    capsys.readouterr()


def _one_line_error(capsys, argv, expected):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bptt: error: ") and expected in err, err


def test_bad_inputs(toy, capsys, tmp_path):
    rng = np.random.default_rng(5)
    unseen = _write_ts(tmp_path / "unseen.ts", 4, rng, labels=("up", "sideways"), declared=("up", "sideways"))
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--test", unseen,
                             "--out", str(tmp_path / "r1")] + TRAIN_ARGS,
                    "label 'sideways' (series 2) is not one of the training classes (down, up)")
    assert not os.path.exists(tmp_path / "r1" / "latest")  # refused before training
    three = _write_ts(tmp_path / "three.ts", 4, rng, dims=3)
    out = str(tmp_path / "r2")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "1", "--out", out] + TRAIN_ARGS) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["eval", out, "--data", three], "series 1 has 3 dimensions; the model reads 2")
    _one_line_error(capsys, ["predict", out, "--data", three], "series 1 has 3 dimensions; the model reads 2")
    _one_line_error(capsys, ["eval", out, "--data", unseen], "label 'sideways'")
    empty = tmp_path / "empty.ts"
    empty.write_text("@classLabel true up down\n@data\n1,2:3,4:up\n::up\n")
    _one_line_error(capsys, ["eval", out, "--data", str(empty)], "line 4: dimension 1 is empty")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", str(empty), "--out", str(tmp_path / "r3")],
                    "line 4: dimension 1 is empty")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--steps", "3"],
                    "--steps does not apply to --task classify")
    _one_line_error(capsys, ["train", "--pool", "mean"], "--pool needs --task classify")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--out", out],
                    "already holds a run")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--ensemble", "51",
                             "--out", str(tmp_path / "r4")], "--ensemble must be 1..50")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--crop", "1",
                             "--out", str(tmp_path / "r5")], "--crop must be a fraction of the series in (0, 1), got 1.0")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--warp", "1.5",
                             "--out", str(tmp_path / "r6")], "--warp must be in [0, 1]")
    _one_line_error(capsys, ["train", "--warp", "0.1"], "--warp needs --task classify")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--roll", "1.5",
                             "--out", str(tmp_path / "r8")], "--roll must be a fraction of the series in [0, 1], got 1.5")
    _one_line_error(capsys, ["train", "--roll", "0.5"], "--roll needs --task classify")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--input-dropout", "1",
                             "--out", str(tmp_path / "r7")], "--input-dropout must be a probability in [0, 1), got 1.0")
    _one_line_error(capsys, ["train", "--input-dropout", "0.1"], "--input-dropout needs --task classify")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--crop", "-0.5"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--crop: expected a finite number >= 0, got -0.5" in err, err
    _one_line_error(capsys, ["train", "--patch", "2"], "--patch needs --task classify")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--patch", "0"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--patch: expected a positive integer, got 0" in err, err


def test_real_dataset_end_to_end(tmp_path, capsys):
    """BasicMotions (UEA, 6 dimensions, 4 classes) from sktime's shipped files: train briefly,
    evaluate on its TEST split well above chance (0.25)."""
    d = sktime_data_dir() / "BasicMotions"
    out = str(tmp_path / "bm")
    assert main(["train", "--task", "classify", "--data", str(d / "BasicMotions_TRAIN.ts"), "--cell", "gru",
                 "--hidden", "16", "--epochs", "12", "--lr", "0.01", "--batch", "8", "--val-fraction", "0.2",
                 "--quiet", "--out", out]) == 0
    capsys.readouterr()
    assert main(["eval", out, "--data", str(d / "BasicMotions_TEST.ts"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 40 and r["accuracy"] >= 0.6, r


def test_export_classify_run_to_onnx(toy, capsys):
    """bptt export of a classify run (patch, mean pooling, both directions): ONNX Runtime on the
    raw TEST series of unequal lengths gives the model's logits and bptt predict's labels."""
    import onnxruntime as ort

    from bptt.classify import predict_logits
    from bptt.classify_run import load_for_eval

    out, path = str(toy["dir"] / "onnxrun"), str(toy["dir"] / "clf.onnx")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "2", "--patch", "3", "--diff",
                 "--pool", "mean", "--bidirectional", "--ensemble", "2", "--out", out] + TRAIN_ARGS) == 0
    assert main(["export", out, "--onnx", path]) == 0
    assert "sequence_lens" in capsys.readouterr().out
    series, _ = bptt.data.read_ts(toy["test"])
    lengths = np.array([len(s) for s in series])
    x = np.zeros((lengths.max(), len(series), 2), np.float32)  # raw values, zero-padded
    for b, s in enumerate(series):
        x[: len(s), b] = s
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"series": x, "sequence_lens": lengths.astype(np.int32)})[0]
    model, norm, classes, _ = load_for_eval(out)
    assert norm.diff and len(norm.mean) == 4 and model.members[0].rnn.input_size == 3 * 4  # --diff kept
    want = predict_logits(model, norm.transform(series, np.float32))
    assert float(np.abs(logits - want).max()) <= 1e-5
    assert main(["predict", out, "--data", toy["test"]]) == 0
    assert capsys.readouterr().out.split() == [classes[k] for k in logits.argmax(axis=1)]
    _, labels = bptt.data.read_ts(toy["test"])
    assert main(["eval", out, "--data", toy["test"], "--json"]) == 0  # eval reads the --diff run the same way
    r = json.loads(capsys.readouterr().out)
    assert r["accuracy"] == np.mean([classes[k] == t for k, t in zip(logits.argmax(axis=1), labels)])


# ----------------------------------------------------------------------------- --patch auto
def test_auto_patches_and_the_choice(capsys):
    from bptt.classify_run import (AUTO_DIFF, AUTO_FINER, AUTO_MIX, AUTO_ONE_WAY, AUTO_ROLL, AUTO_ROTATED_POOL,
                                   AUTO_STEPS, auto_candidates, auto_patches, choose, describe, mix)

    assert AUTO_STEPS == (32, 8, 4, 2) and AUTO_ROLL == 0.5 and AUTO_DIFF and AUTO_FINER == 3 and AUTO_ONE_WAY
    assert AUTO_ROTATED_POOL == "meanmax"
    assert auto_patches([251] * 36) == [8, 32, 63, 126]  # ArrowHead: ceil(251 / 32), / 8, / 4, / 2
    assert auto_patches([24, 24]) == [1, 3, 6, 12]  # ItalyPowerDemand
    assert auto_patches([5, 7, 9]) == [1, 2, 4]  # repeats dropped: K = 1, 1, 2, 4
    assert auto_patches([2]) == [1]
    # the candidates: each patch, then, unless --roll is given, two rotated ones with --roll 0.5, --diff and
    # --pool meanmax, in one direction, with about 32 and about 96 steps: K = 8 and ceil(251 / 96) = 3
    # (OSULeaf's 427: 14 and 5, GunPoint's 150: 5 and 2); one when both give the same K
    rotated = {"roll": 0.5, "tta": 8, "diff": True, "bidirectional": False, "pool": "meanmax"}
    assert auto_candidates([251] * 36) == [{"patch": 8, "dir": "patch-8"}, {"patch": 32, "dir": "patch-32"},
                                           {"patch": 63, "dir": "patch-63"}, {"patch": 126, "dir": "patch-126"},
                                           {"patch": 8, **rotated, "dir": "patch-8-roll0.5-diff-uni-meanmax"},
                                           {"patch": 3, **rotated, "dir": "patch-3-roll0.5-diff-uni-meanmax"}]
    assert [c["patch"] for c in auto_candidates([427])[-2:]] == [14, 5]
    assert [c["patch"] for c in auto_candidates([150])[-2:]] == [5, 2]
    assert auto_candidates([251] * 36, roll=0.1) == auto_candidates([251] * 36)[:4]
    assert [describe(c) for c in auto_candidates([24])] == [
        "patch 1", "patch 3", "patch 6", "patch 12", "patch 1, --roll 0.5, --tta 8, --diff, one direction, --pool meanmax"]
    assert choose([0.5, 0.7, 0.6]) == 1
    assert choose([0.7, 0.7, 0.6]) == 0 and choose([0.6, 0.7, 0.7]) == 1  # ties: more steps
    # the mix: every candidate within AUTO_MIX = 1 validation series of the best predicts
    assert AUTO_MIX == 1
    assert mix([27 / 36, 28 / 36, 26 / 36, 28 / 36, 20 / 36], 36) == [0, 1, 3]
    assert mix([1.0, 0.98, 0.96, 1.0, 1.0], 50) == [0, 1, 3, 4]
    assert mix([0.5, 0.7, 0.6], 10) == [1, 2] and mix([0.5, 0.7, 0.6], 100) == [1]
    assert mix([0.6, 0.7, 0.7], None) == [1]  # a selection from before the mix: the best alone
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "N = " + ", ".join(map(str, AUTO_STEPS)) + " (about N steps" in help_text  # the help says what the code does
    assert (f"two rotated ones (unless --roll is given): about {AUTO_STEPS[0]} and about "
            f"{AUTO_FINER * AUTO_STEPS[0]} steps (N = {AUTO_STEPS[0]} and {AUTO_FINER} x {AUTO_STEPS[0]}), one "
            f"direction, with --roll {AUTO_ROLL:g}, --tta 8, --diff and --pool {AUTO_ROTATED_POOL}, in "
            f"RUN/patch-K-roll{AUTO_ROLL:g}-diff-uni-{AUTO_ROTATED_POOL}") in help_text


def _onnx_logits(path, series):
    """ONNX Runtime's logits for raw (T_i, D) series, zero-padded, with their lengths."""
    import onnxruntime as ort

    lengths = np.array([len(x) for x in series])
    x = np.zeros((lengths.max(), len(series), series[0].shape[1]), np.float32)
    for b, v in enumerate(series):
        x[: len(v), b] = v
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        ["logits"], {"series": x, "sequence_lens": lengths.astype(np.int32)})[0]


def _auto_run(toy, out, epochs, extra=()):
    return main(["train", "--task", "classify", "--data", toy["train"], "--test", toy["test"], "--epochs", str(epochs),
                 "--patch", "auto", "--ensemble", "2", "--pool", "mean", "--out", out, *extra] + TRAIN_ARGS)


def test_patch_auto_trains_each_candidate_and_keeps_the_best(toy, capsys):
    """--patch auto: a full run per candidate in RUN/patch-K (and RUN/patch-K'-roll0.5-diff-uni, trained
    with --roll 0.5 and --diff in one direction, the others with --bidirectional as given), RUN/best a
    copy of the best checkpoint of the one with the highest validation accuracy; eval, predict and
    export read it. With --roll given, every candidate has it and there is no extra one."""
    from bptt.classify import predict_logits, rotate_all, softmax
    from bptt.classify_run import _load_one, auto_candidates, choose, describe, load_for_eval, load_labelled, mix

    out = str(toy["dir"] / "auto")
    assert _auto_run(toy, out, 3, ["--bidirectional"]) == 0
    text = capsys.readouterr().out
    sel = json.load(open(os.path.join(out, "select.json")))
    series, _ = load_labelled(toy["train"], "training")
    cands = auto_candidates([len(s) for s in series])
    assert [{k: c[k] for k in ("patch", "dir", "roll", "tta", "diff", "bidirectional", "pool") if k in c}
            for c in sel["candidates"]] == cands
    assert len(cands) >= 3 and "roll" not in cands[0] and cands[-1]["roll"] == 0.5
    accs = []
    for c in sel["candidates"]:
        run = os.path.join(out, c["dir"])
        history = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
        best = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
        meta = json.load(open(os.path.join(run, "best", "checkpoint.json")))
        assert meta["step"] == best["epoch"] == c["best"]["epoch"] and meta["config"]["patch"] == c["patch"]
        assert meta["config"]["roll"] == c.get("roll", 0.0) and meta["config"]["diff"] == c.get("diff", False)
        assert meta["config"]["bidirectional"] == ("roll" not in c)  # the rotated ones in one direction
        assert meta["config"]["pool"] == ("meanmax" if "roll" in c else "mean")
        assert len(history) == 3
        # each candidate's epochs and training time, in select.json and in the report
        assert c["trained"] == {"epochs": 3, "seconds": history[-1]["seconds"]} and c["trained"]["seconds"] > 0
        assert (f"{describe(c)}: best epoch {c['best']['epoch']} of 3 ({c['trained']['seconds']:.1f} s), "
                f"validation accuracy {c['best']['val_accuracy']:.4f}") in text
        accs.append(best["val_accuracy"])
    k = choose(accs)
    n_train = len(series)  # --ensemble 2: every score is out of fold over all of TRAIN
    assert all(c["best"]["val_series"] == n_train for c in sel["candidates"])
    assert sel["chosen"] == k and sel["mixed"] == mix(accs, n_train) and k in sel["mixed"]
    assert text.count("<- chosen") == len(sel["mixed"])
    assert all(f"{describe(c)}: best epoch" in text for c in cands)
    winner = os.path.join(out, sel["candidates"][k]["dir"], "best")
    for name in ("model.safetensors", "checkpoint.json"):
        assert open(os.path.join(out, "best", name), "rb").read() == open(os.path.join(winner, name), "rb").read()
    assert "test " in text
    # eval, predict and export of RUN: the mean probability of the mixed candidates, the rotated one
    # over its 8 rotations; then with every candidate in the mix
    for c in sel["candidates"]:
        assert json.load(open(os.path.join(out, c["dir"], "best", "checkpoint.json")))["config"]["tta"] == (
            8 if "roll" in c else 0)
    test_series, test_labels = load_labelled(toy["test"], "evaluation")

    def probability(i):  # candidate i's best checkpoint on TEST, by hand
        model, norm, classes, meta = _load_one(os.path.join(out, sel["candidates"][i]["dir"], "best"))
        R = meta["config"]["tta"]
        z = norm.transform(test_series, np.float32)
        return np.mean([softmax(predict_logits(model, rotate_all(z, j, R) if R else z)) for j in range(max(R, 1))],
                       axis=0), classes

    for mixed in (sel["mixed"], list(range(len(cands)))):
        json.dump({**sel, "mixed": mixed}, open(os.path.join(out, "select.json"), "w"))
        p = np.mean([probability(i)[0] for i in mixed], axis=0)
        classes = probability(k)[1]
        assert main(["eval", out, "--data", toy["test"], "--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["n"] == 20 and r["accuracy"] == np.mean([classes[c] == t for c, t in zip(p.argmax(axis=1), test_labels)])
        assert r["loss"] == pytest.approx(float(-np.mean(np.log(p[np.arange(20), [classes.index(t) for t in test_labels]]))),
                                          rel=1e-5)
        assert r.get("mixed", [describe(sel["candidates"][k])]) == [describe(sel["candidates"][i]) for i in mixed]
        assert main(["eval", out, "--data", toy["test"]]) == 0
        assert (f"the mean probability of {len(mixed)} candidates" in capsys.readouterr().out) == (len(mixed) > 1)
        if len(mixed) == 1:  # RUN/best alone
            assert main(["eval", winner, "--data", toy["test"], "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["accuracy"] == r["accuracy"]
        assert main(["predict", out, "--data", toy["test"]]) == 0
        assert capsys.readouterr().out.split() == [classes[c] for c in p.argmax(axis=1)]
        assert main(["export", out, "--onnx", str(toy["dir"] / "auto.onnx")]) == 0
        capsys.readouterr()
        assert float(np.abs(_onnx_logits(str(toy["dir"] / "auto.onnx"), test_series) - np.log(p)).max()) <= 1e-5
        if len(mixed) == len(cands):  # the unrotated candidates share one standardisation, the rotated one has its own
            norms = load_for_eval(out)[0].norms
            assert len({id(n) for n in norms}) == 2 and norms[0] is norms[-2] and norms[-1].diff
    # the rotated candidate alone: --tta 8 in eval, predict and export
    rot = next(c for c in sel["candidates"] if "roll" in c)
    model, norm, classes, meta = _load_one(os.path.join(out, rot["dir"], "best"))
    z = norm.transform(test_series, np.float32)
    p = np.mean([softmax(predict_logits(model, rotate_all(z, j, 8))) for j in range(8)], axis=0)
    assert main(["predict", os.path.join(out, rot["dir"]), "--data", toy["test"]]) == 0
    assert capsys.readouterr().out.split() == [classes[c] for c in p.argmax(axis=1)]
    assert main(["eval", os.path.join(out, rot["dir"]), "--data", toy["test"]]) == 0
    assert "the mean over 8 rotations" in capsys.readouterr().out
    rolled = str(toy["dir"] / "auto-roll")
    assert _auto_run(toy, rolled, 1, ["--roll", "0.1"]) == 0
    capsys.readouterr()
    sel = json.load(open(os.path.join(rolled, "select.json")))
    assert [c["dir"] for c in sel["candidates"]] == [c["dir"] for c in cands[:-1]]
    for c in sel["candidates"]:
        assert json.load(open(os.path.join(rolled, c["dir"], "best", "checkpoint.json")))["config"]["roll"] == 0.1


def test_patch_auto_resumes_exactly(toy, capsys):
    """A selection stopped after 2 of 3 epochs, or killed before its last candidate (no RUN/best),
    resumed with bptt train --resume RUN, ends as the run that never stopped; so does one trained
    with --jobs 2."""
    a, b, c = (str(toy["dir"] / n) for n in ("auto-a", "auto-b", "auto-c"))
    assert _auto_run(toy, a, 3) == 0
    assert _auto_run(toy, b, 2) == 0
    assert main(["train", "--resume", b, "--epochs", "3", "--quiet"]) == 0
    shutil.copytree(a, c)
    sel = json.load(open(os.path.join(a, "select.json")))
    shutil.rmtree(os.path.join(c, sel["candidates"][-1]["dir"]))
    shutil.rmtree(os.path.join(c, "best"))
    capsys.readouterr()
    _one_line_error(capsys, ["eval", c, "--data", toy["test"]], "the patch selection has not finished")
    assert main(["train", "--resume", c, "--quiet"]) == 0
    assert "resuming the patch selection" in capsys.readouterr().err
    # --jobs 2: the candidates side by side in their own processes, each trained as alone
    j = str(toy["dir"] / "auto-j")
    assert main(["train", "--task", "classify", "--data", toy["train"], "--epochs", "3", "--patch", "auto",
                 "--ensemble", "2", "--pool", "mean", "--jobs", "2", "--out", j]
                + [arg for arg in TRAIN_ARGS if arg != "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("finished: best epoch") == len(sel["candidates"]) >= 3 and "epoch 1/3" not in err  # the workers' own lines stay quiet
    n = len(sel["candidates"])  # one bar over every candidate's epochs, fed by the workers
    assert f"{n} candidates: 100%" in err and f"{3 * n}/{3 * n} epochs" in err
    for run in (b, c, j):
        assert json.load(open(os.path.join(run, "select.json")))["chosen"] == sel["chosen"]
        assert all(cand["trained"]["epochs"] == 3 for cand in json.load(open(os.path.join(run, "select.json")))["candidates"])
        for cand in sel["candidates"]:
            for name in ("model.safetensors", "state.safetensors"):
                path = os.path.join(cand["dir"], "ckpt-00000003", name)
                assert open(os.path.join(a, path), "rb").read() == open(os.path.join(run, path), "rb").read(), path
        assert (open(os.path.join(a, "best", "model.safetensors"), "rb").read()
                == open(os.path.join(run, "best", "model.safetensors"), "rb").read())
    _one_line_error(capsys, ["train", "--resume", b, "--lr", "0.1"], "cannot change when resuming")


def test_patch_auto_jobs_stop_at_ctrl_c(toy, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during a --jobs 2
    selection: one message, exit 130 at once, no worker process left behind, and --resume
    finishes the selection from what was saved."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "int"
    p = subprocess.Popen([sys.executable, "-m", "bptt", "train", "--task", "classify", "--data", toy["train"],
                          "--epochs", "100000", "--patch", "auto", "--ensemble", "2", "--jobs", "2", "--out", str(out)]
                         + TRAIN_ARGS, start_new_session=True, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "patch-1" / "metrics.jsonl").is_file() or not (out / "patch-1" / "metrics.jsonl").read_text():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    t = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "bptt: interrupted", err
    assert time.time() - t < 10
    def group_alive():
        try:
            os.killpg(p.pid, 0)
            return True
        except ProcessLookupError:
            return False

    while group_alive():  # the workers go with the parent (the resource tracker a moment later)
        assert time.time() - t < 10, "a worker outlived the interrupted run"
        time.sleep(0.05)
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert os.path.isfile(out / "best" / "checkpoint.json")


def test_patch_auto_bad_inputs(toy, capsys, tmp_path):
    out = str(tmp_path / "a1")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--patch", "auto",
                             "--val-fraction", "0", "--out", out], "--patch auto chooses by the validation score")
    assert not os.path.exists(out)
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--patch", "auto",
                             "--crop", "1", "--out", out], "--crop must be a fraction")
    assert not os.path.exists(out)  # every check of a run before anything is written
    assert main(["train", "--task", "classify", "--data", toy["train"], "--patch", "many"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--patch: expected a positive integer, got 'many'" in err, err
    assert _auto_run(toy, out, 1) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--out", out], "already holds a run")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--patch", "auto", "--out", out],
                    "already holds a run")
    _one_line_error(capsys, ["train", "--task", "classify", "--data", toy["train"], "--jobs", "2",
                             "--out", str(tmp_path / "a2")], "--jobs trains the candidates of --patch auto")
    _one_line_error(capsys, ["train", "--jobs", "2"], "--jobs needs --task classify")
    (tmp_path / "a1" / "select.json").write_text("{not json")
    _one_line_error(capsys, ["train", "--resume", out], "not a readable patch selection")


def test_search_select_runs_each_candidate_patch():
    """benchmarks/classify_search.py --nested, variant select (how the recipe's rounds are judged):
    each outer fold trains one run per candidate number of steps with its own patch (on
    ItalyPowerDemand's 24 steps: 32, 8, 4 steps -> patches 1, 3, 6) and the runs differ. A slip
    once made every candidate the 32-step run, which this catches."""
    import re
    import subprocess
    import sys

    from training_helpers import REPO

    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "classify_search.py"), "--nested", "2",
                          "--variants", "select", "select-32,8,4,1", "--datasets", "ItalyPowerDemand",
                          "--seeds", "0", "--epochs", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = re.findall(r"recipe@(\d+) \(patch (\d+)\) ItalyPowerDemand seed 0 outer fold (\d): .*inner out-of-fold "
                       r"([\d.]+)", out.stdout)
    runs = {(int(f), int(n)): (int(k), float(s)) for n, k, f, s in lines}
    assert {n: k for (_, n), (k, _) in runs.items()} == {32: 1, 8: 3, 4: 6, 1: 24}
    assert {f for f, _ in runs} == {0, 1}
    assert len({runs[(0, n)][1] for n in (32, 8, 4)} | {runs[(1, n)][1] for n in (32, 8, 4)}) > 1
    assert out.stdout.count("== nested select ItalyPowerDemand") == 1
    assert out.stdout.count("== nested select-32,8,4,1 ItalyPowerDemand") == 1


def test_search_combos_ways():
    """benchmarks/classify_search.py's combo_probs (rounds fourteen to sixteen: ways to predict from
    --patch auto's candidates): sel the best inner score, avg all, top2 the two best, -tta the rotated
    candidate's rotation-averaged probability, top2u-tta the rotated one alone when best, else the two
    best unrotated; ties go to the earlier; tie-tta the mean of all tied at the best, near-tta of all
    within one inner series of it, near2-tta (round nineteen) within two, lead-tta (round twenty-two)
    near-tta when a rotated candidate leads, else near-tta of the unrotated ones, first-tta (round
    twenty-four) the rotated one alone when at the best, tied or above, else near-tta; the variant auto
    (--patch auto since round twenty-three: the rotated candidate with --diff). Run in its own process
    (the module sets thread variables)."""
    import subprocess
    import sys

    from training_helpers import REPO

    code = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import classify_search as cs
parts = [("recipe", 32), ("recipe", 8), ("recipe", 4), ("recipe", 2), ("roll0.5", 32)]
p = [np.full((1, 2), k, float) for k in range(5)]                 # candidate k: probabilities k
pt = [np.full((1, 2), 10 + k, float) for k in range(5)]           # ... and over rotations 10 + k
probs = [(a, b, None) for a, b in zip(p, pt)]
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([0.7, 0.9, 0.8, 0.6, 0.85], probs, parts, 20).items()}
assert got == {"sel": 1, "avg": 2, "top2": 2.5, "sel-tta": 1, "avg-tta": (0 + 1 + 2 + 3 + 14) / 5,
               "top2-tta": 7.5, "top2u-tta": 1.5, "tie-tta": 1,           # top2u: the best two unrotated, 1 and 2
               "near-tta": (1 + 14) / 2, "near2-tta": (1 + 14 + 2) / 3, "lead-tta": 1,  # 0.85 within 1/20 of 0.9; 0.8 within 2/20
               "first-tta": (1 + 14) / 2}, got                             # the rotated one below the best: near-tta
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([0.7, 0.9, 0.8, 0.6, 0.95], probs, parts, 20).items()}
assert got["sel"] == 4 and got["sel-tta"] == 14 and got["top2"] == 2.5 and got["top2-tta"] == 7.5
assert got["top2u-tta"] == 14 and got["tie-tta"] == 14 and got["near-tta"] == (14 + 1) / 2, got
assert got["first-tta"] == 14, got                                   # it leads: alone
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([0.9, 0.9, 0.9, 0.6, 0.9], probs, parts, 20).items()}
assert got["sel"] == 0 and got["top2"] == 0.5 and got["top2u-tta"] == 0.5, got   # ties: the earlier
assert got["tie-tta"] == (0 + 1 + 2 + 14) / 4 and got["near-tta"] == got["tie-tta"], got
assert got["first-tta"] == 14, got                                   # tied at the best: alone
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([6 / 9, 7 / 9, 0.5, 0.6, 0.5], probs, parts, 9).items()}
assert got["tie-tta"] == 1 and got["near-tta"] == 0.5, got           # 6/9 is one series of 9 below 7/9
assert got["near2-tta"] == (1 + 0 + 3) / 3, got                      # 0.6 is 1.6 series below, 0.5 two and a half
assert got["lead-tta"] == 0.5, got               # best unrotated (7/9, 6/9); the rotated one (0.5) is not above them
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([0.7, 0.9, 0.8, 0.6, 0.95], probs, parts, 20).items()}
assert got["lead-tta"] == got["near-tta"] == (14 + 1) / 2, got      # the rotated one leads: near-tta
got = {k: float(v[0, 0]) for k, v in cs.combo_probs([0.7, 0.9, 0.86, 0.6, 0.9], probs, parts, 20).items()}
assert got["near-tta"] == (1 + 14 + 2) / 3 and got["lead-tta"] == (1 + 2) / 2, got  # a tie is no lead
assert cs.select_parts("select,roll0.5,2+ep400") == [("ep400", 32), ("ep400", 8), ("ep400", 4), ("ep400", 2),
                                                     ("roll0.5,ep400", 32)]          # round twenty
assert cs.select_parts("select,roll0.5,2+flip")[-1] == ("roll0.5,flip", 32)               # round seventeen
assert cs.select_parts("select,roll0.5,2+flipu") == [("flip", 32), ("flip", 8), ("flip", 4), ("flip", 2),
                                                     ("roll0.5", 32)]               # round eighteen
assert cs.VARIANTS[cs.ROTATED["diff"]] == {"roll": 0.5, "diff": True}                 # round twenty-one
assert cs.select_parts("auto23") == [("recipe", 32), ("recipe", 8), ("recipe", 4), ("recipe", 2),
                                     ("roll0.5,diff", 32)] and "auto" in cs.VARIANTS   # round twenty-four
assert cs.select_parts("auto25") == cs.select_parts("auto23")[:4] + [("roll0.5,diff,uni", 96)]  # round twenty-five
assert cs.select_parts("auto") == cs.select_parts("auto23")[:4] + cs.ROTATED["mm2"]  # round twenty-six
assert cs.VARIANTS["roll0.5,diff,uni"] == {"roll": 0.5, "diff": True, "bidirectional": False}
assert "auto23,rotuni96" in cs.VARIANTS and cs.ROTATED["uni96"] == ("roll0.5,diff,uni", 96)
assert cs.ROTATED["mm2"] == [("roll0.5,diff,uni,meanmax", 32), ("roll0.5,diff,uni,meanmax", 96)]  # round twenty-six
assert cs.VARIANTS["roll0.5,diff,uni,meanmax"] == {**cs.VARIANTS["roll0.5,diff,uni"], "pool": "meanmax"}
assert cs.VARIANTS["roll0.5,diff,warp0.1"] == {"roll": 0.5, "diff": True, "warp": 0.1}  # explored after it
assert cs.VARIANTS["roll0.5,diff,vtta8"] == cs.VARIANTS[cs.ROTATED["diff"]]          # (+ tta_validate)
assert cs.VARIANTS["ep400"] == {"epochs": 400} and cs.VARIANTS["roll0.5,ep400"] == {"roll": 0.5, "epochs": 400}
x = [np.arange(4.0)[:, None], np.arange(150.0)[:, None]]
r = cs.rotations(x, 8)
assert [int(s[0, 0]) for s in r[1]] == [0, 150 - 19]              # np.roll by round(j T / 8): 0.5 -> 0
assert [int(round(j * 150 / 8)) for j in range(8)] == [(-int(s[1][0, 0])) % 150 for s in r]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code, os.path.join(REPO, "benchmarks")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_sigterm_to_a_jobs_run_stops_its_workers_and_resumes(toy):
    """SIGTERM to bptt train --patch auto --jobs 2 stops the workers with the parent (one line,
    exit 143, no traceback from a worker): no checkpoint is written after it has exited, and
    --resume finishes the selection from what was saved."""
    import signal
    import subprocess
    import sys
    import time

    out = str(toy["dir"] / "auto-term")

    def saving():  # the candidates that have saved a checkpoint
        return [d for d in (os.listdir(out) if os.path.isdir(out) else []) if os.path.exists(os.path.join(out, d, "latest"))]
    cmd = [sys.executable, "-m", "bptt", "train", "--task", "classify", "--data", toy["train"], "--patch", "auto",
           "--ensemble", "2", "--pool", "mean", "--epochs", "5000", "--jobs", "2", "--out", out] + TRAIN_ARGS
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while len(saving()) < 2:  # until both workers have saved a checkpoint
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and "Traceback" not in err and "Error" not in err
    assert err.strip().splitlines()[-1] == f"bptt: terminated; what was saved stays: bptt train --resume {out}"

    def saved():
        return {d: open(os.path.join(out, d, "latest")).read() for d in saving()}
    before = saved()
    time.sleep(1.5)  # a worker left training would write a checkpoint every few ms
    assert saved() == before and len(before) >= 2
    assert main(["train", "--resume", out, "--epochs", "6", "--quiet"]) == 0
    sel = json.load(open(os.path.join(out, "select.json")))
    assert sel["chosen"] is not None and all(c["trained"]["epochs"] >= 6 for c in sel["candidates"])


def test_candidates_bar_counts_each_candidates_share(capsys):
    """--jobs' progress bar: each candidate's epochs count up to the cap; one that stops early
    (--patience) fills the rest of its share when it finishes; a report arriving after that
    changes nothing; not enabled (--quiet), it prints nothing."""
    from bptt.progress import CandidatesBar

    bar = CandidatesBar(["a", "b"], 10)
    bar.epoch(0, 3, 0.5)
    bar.epoch(1, 4, 0.25)
    assert bar.bar.n == 7 and bar.state == {0: (3, 0.5), 1: (4, 0.25)}
    bar.done(0, "a finished")
    assert bar.bar.n == 14 and bar.state == {1: (4, 0.25)}
    bar.epoch(0, 4, 0.5)
    assert bar.bar.n == 14 and 0 not in bar.state
    bar.epoch(1, 10, 0.75)
    bar.done(1, "b finished")
    assert bar.bar.n == 20
    bar.close()
    err = capsys.readouterr().err
    assert "a finished" in err and "b finished" in err and "20/20 epochs" in err and "b: epoch 4, best 0.250" in err
    quiet = CandidatesBar(["a"], 5, enabled=False)
    quiet.epoch(0, 1, 0.5)
    quiet.done(0, "a finished")
    quiet.close()
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- --preset ucr
def test_preset_ucr_is_the_benchmark_recipe_and_explicit_options_win(toy, capsys):
    """--task classify --preset ucr fills in the benchmark table's recipe (--patch auto and the rest);
    options given explicitly win; benchmarks/classify.py's SETUP is that preset; a character-model
    preset with --task classify, ucr without it, and --preset when resuming are one-line errors."""
    import subprocess
    import sys

    from bptt.presets import CLASSIFY_PRESETS
    from training_helpers import REPO

    ucr = CLASSIFY_PRESETS["ucr"]
    out = str(toy["dir"] / "ucr")
    assert main(["train", "--task", "classify", "--preset", "ucr", "--data", toy["train"], "--epochs", "2",
                 "--ensemble", "2", "--hidden", "8", "--quiet", "--out", out]) == 0
    assert "preset ucr: --cell gru --hidden 64 --lr 0.003 --pool mean --bidirectional" in capsys.readouterr().err
    sel = json.load(open(os.path.join(out, "select.json")))
    cfg = sel["config"]
    for k in ("cell", "lr", "pool", "bidirectional", "batch_size", "patience", "input_dropout"):
        assert cfg[k] == ucr[k], k  # from the preset
    assert (cfg["epochs"], cfg["ensemble"], cfg["hidden_size"]) == (2, 2, 8)  # given explicitly
    assert ucr["patch"] == "auto" and len(sel["candidates"]) >= 3 and any("roll" in c for c in sel["candidates"])
    assert all(c["trained"]["epochs"] == 2 for c in sel["candidates"])
    bench = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import classify; "
                            "print(sorted(classify.SETUP.items()), classify.EPOCHS)",
                            os.path.join(REPO, "benchmarks")], capture_output=True, text=True, check=True).stdout
    assert bench.strip() == f"{sorted((k, v) for k, v in ucr.items() if k not in ('cell', 'patch', 'epochs'))} 200"
    _one_line_error(capsys, ["train", "--task", "classify", "--preset", "shakespeare-10min", "--data", toy["train"]],
                    "--preset shakespeare-10min is a recipe for the character model; --task classify's presets: ucr")
    _one_line_error(capsys, ["train", "--preset", "ucr", "--data", toy["train"]],
                    "--preset ucr is a recipe for --task classify")
    _one_line_error(capsys, ["train", "--resume", out, "--preset", "ucr"], "--preset cannot change when resuming")
