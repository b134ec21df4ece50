"""Sequence classification: labelled series of different lengths -> one class per series.

    .ts / .csv --read_series--> list of (T_i, D), labels
      --Standardizer (the training set's statistics)--> [--roll, --crop, --warp, --augment: random
        variants, training only]
      --bucket_batches + pad_batch--> x (T, B, D) zero-padded, lengths (B,)
      --SequenceClassifier: patch_forward (K steps as one) -> RNN/LSTM/GRU with lengths -> the
        last valid state (or the mean, the max, both, or a learned softmax weighting (attn) over the
        valid steps) -> Linear--> logits (B, C)
        --CrossEntropyLoss
backward: exactly the reverse; training keeps the best epoch on a validation part of TRAIN.
EnsembleClassifier: M of them side by side, member m trained on the series outside fold m
(masked_cross_entropy), each epoch scored out of fold on all of TRAIN, the mean softmax predicts.

Dimensions: T steps (the longest of a batch), B batch, D features, H hidden, K directions,
L layers, C classes.
"""

import math
import re

import numpy as np

from .cells._kernels import fused
from .data import DataError
from .head import Linear
from .module import Module, no_grad
from .recurrent import GRU, LSTM, RNN

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
POOLS = ("last", "mean", "max", "meanmax", "attn")


# ----------------------------------------------------------------------------- data
class Standardizer:
    """Per-feature (x - mean) / std with the training set's statistics; missing values (NaN)
    become 0 afterwards (the mean). diff=True: each series (T, D) first gets its first
    differences as D more features (``with_diff``), standardised with their own statistics, so
    mean and std are (2D,)."""

    def __init__(self, mean, std, diff=False):
        self.mean = np.asarray(mean, np.float64)  # (D,) or (2D,) with diff
        self.std = np.asarray(std, np.float64)
        self.diff = bool(diff)

    @property
    def input_size(self):
        """D, the features of a series as read (before with_diff)."""
        return len(self.mean) // 2 if self.diff else len(self.mean)

    @classmethod
    def fit(cls, series, diff=False):
        allx = np.concatenate(with_diff(series) if diff else series, axis=0)  # (sum T_i, D or 2D)
        with np.errstate(all="ignore"):
            seen = np.isfinite(allx).any(axis=0)
            mean = np.where(seen, np.nanmean(np.where(seen, allx, 0.0), axis=0), 0.0)
            std = np.where(seen, np.nanstd(np.where(seen, allx, 0.0), axis=0), 1.0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean, std, diff)

    def transform(self, series, dtype):
        out = []
        for x in with_diff(series) if self.diff else series:
            z = (x - self.mean) / self.std
            out.append(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(dtype))
        return out


class AsRead:
    """The series as read (float64; a missing value stays NaN), D features each: the
    standardisation of a ``ProbabilityMean`` whose parts standardise each in their own way."""

    def __init__(self, input_size):
        self.input_size = int(input_size)
        self.diff = False

    def transform(self, series, dtype):
        return [np.asarray(x, np.float64) for x in series]


def with_diff(series):
    """Each series x (T, D) -> (T, 2D): x, then its first differences x[t] - x[t-1] (0 at t = 0;
    NaN next to a missing value)."""
    out = []
    for x in series:
        d = np.zeros_like(x, dtype=np.float64)
        d[1:] = x[1:] - x[:-1]
        out.append(np.concatenate([x, d], axis=1))
    return out


def natural_key(label):
    """Sort labels as numbers when they are numbers ('2' < '10'), else as text."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", label)]


def pad_batch(series, idx, dtype):
    """The series at idx -> x (T, B, D) zero-padded to the longest, lengths (B,)."""
    lengths = np.array([len(series[i]) for i in idx], np.int64)
    x = np.zeros((int(lengths.max()), len(idx), series[idx[0]].shape[1]), dtype)
    for b, i in enumerate(idx):
        x[: lengths[b], b] = series[i]
    return x, lengths


def bucket_batches(lengths, batch_size, rng=None):
    """Batches of indices of series of similar lengths: sorted by length (ties in random order
    with rng), cut into batches, the batches in random order (with rng)."""
    lengths = np.asarray(lengths)
    order = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def augment(x, strength, rng):
    """A random variant of one standardised series x (T, D) for training, of the same length:
    the time axis stretched by a factor in [1 - a, 1 + a] and shifted by up to a*T steps
    (linear interpolation, the edge values held), the values scaled by 1 + N(0, a) and given
    N(0, a/4) noise, a = strength. Only for the training part; never for validation or tests."""
    T, D = x.shape
    a = float(strength)
    stretch, shift = rng.uniform(1 - a, 1 + a), rng.uniform(-a, a) * T
    centre = (T - 1) / 2
    pos = np.clip(centre + (np.arange(T) - centre) * stretch + shift, 0, T - 1)  # (T,) where to read
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, T - 1)
    w = (pos - lo)[:, None]  # (T, 1)
    warped = x[lo] * (1 - w) + x[hi] * w  # (T, D)
    scale = 1 + a * rng.standard_normal()
    return (warped * scale + (a / 4) * rng.standard_normal((T, D))).astype(x.dtype)


def input_dropout(x, p, rng):
    """A training batch x (any shape, zero-padded) with each value zeroed with probability p and
    the others scaled by 1 / (1 - p), so the expected input stays x (dropout on the model's
    inputs, before patching; padding stays zero). p = 0: x itself."""
    if not p:
        return x
    return (x * (rng.random(x.shape) >= p) / (1 - p)).astype(x.dtype)


def circular_shift(x, fraction, rng):
    """One series x (T, D) rotated in time by r steps for training, r uniform in
    -floor(fraction T) .. floor(fraction T): step t of the result is x[(t - r) mod T] (for the
    outlines of closed shapes read as series: another starting point on the outline). fraction 0:
    x itself, nothing drawn; 0.5 reaches every rotation."""
    m = int(fraction * len(x))
    if m == 0:
        return x
    return np.roll(x, int(rng.integers(-m, m + 1)), axis=0)


def rotation_steps(length, j, R):
    """The j-th of R test-time rotations of a series of this length: round(j length / R) steps,
    halves to the even number (as Python's and ONNX's Round)."""
    return int(round(j * length / R))


def rotate_all(series, j, R):
    """Every series x (T, D) rotated by ``rotation_steps(T, j, R)``: step t of the result is
    x[(t - r) mod T], as ``circular_shift`` draws them in training."""
    return [np.roll(x, rotation_steps(len(x), j, R), axis=0) for x in series]


def crop(x, fraction, rng):
    """A random window of one series x (T, D) for training: round(fraction * T) consecutive
    steps (at least 1) from a uniformly drawn start (window slicing; fraction 1: the series)."""
    T = len(x)
    n = min(T, max(1, int(round(fraction * T))))
    start = int(rng.integers(0, T - n + 1))
    return x[start : start + n]


def time_warp(x, strength, rng, knots=4):
    """One series x (T, D) read at smoothly warped times, for training: the speed of time at
    knots + 2 evenly spaced points is exp(N(0, strength)), linear in between; the times are its
    running sum, scaled to run from 0 to T - 1 (so the warp is monotone and keeps both ends),
    read by linear interpolation. Strength 0: the series itself."""
    T, D = x.shape
    if T < 2 or strength == 0:
        return x
    speed_at = np.exp(strength * rng.standard_normal(knots + 2))  # (knots + 2,)
    speed = np.interp(np.arange(T), np.linspace(0, T - 1, knots + 2), speed_at)  # (T,)
    pos = np.cumsum(speed) - speed[0]
    pos = np.clip(pos * ((T - 1) / pos[-1]), 0, T - 1)  # (T,) where to read, 0 .. T - 1
    lo = np.minimum(np.floor(pos).astype(np.int64), T - 2)
    w = (pos - lo)[:, None]  # (T, 1)
    return (x[lo] * (1 - w) + x[lo + 1] * w).astype(x.dtype)


def stratified_split(labels, fraction, rng):
    """(train indices, validation indices): about ``fraction`` of each class, at least one of
    each class with two or more series, in validation."""
    labels = np.asarray(labels)
    val = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(fraction * len(idx))) if fraction > 0 else 0
        if fraction > 0 and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        val.extend(idx[:n].tolist())
    val = np.array(sorted(val), np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


# ----------------------------------------------------------------------------- model
class SequenceClassifier(Module):
    """RNN/LSTM/GRU over the series (with their lengths) -> a feature per series -> Linear.

    pool 'last': the top layer's state after each series' own last step (both directions'
    final states when bidirectional); 'mean': the top layer's outputs averaged over the valid
    steps; 'max': their element-wise maximum over the valid steps; 'meanmax': the mean and the
    max side by side (the head reads twice as many features); 'attn': a learned softmax weighting of
    the valid steps (``AttentionPool``; it starts as the mean).
    forward(x (T, B, D), lengths (B,) or None) -> logits (B, C); backward(dlogits) -> dx."""

    def __init__(self, input_size, num_classes, cell="lstm", hidden_size=64, num_layers=1,
                 bidirectional=False, dropout=0.0, pool="last", dtype="float32", seed=None, patch=1):
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if int(patch) != patch or patch < 1:
            raise ValueError(f"patch must be a whole number >= 1, got {patch!r}")
        self.cell, self.pool, self.patch, self.num_classes = cell, pool, int(patch), num_classes
        self.rnn = LAYERS[cell](self.patch * input_size, hidden_size, num_layers, dropout=dropout,
                                bidirectional=bidirectional, dtype=dtype, seed=seed)
        K = self.rnn.num_directions
        width = 2 if pool == "meanmax" else 1  # meanmax: the mean, then the max
        if pool == "attn":
            self.attn = AttentionPool(K * hidden_size, dtype=dtype)
        self.head = Linear(width * K * hidden_size, num_classes, dtype=dtype,
                           seed=None if seed is None else seed + 1)
        self.dtype = self.rnn.dtype

    def forward(self, x, lengths=None):
        T0, B, _ = np.shape(x)
        lengths = np.full(B, T0, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        lengths0 = lengths
        x, lengths = patch_forward(x, lengths, self.patch)  # (T, B, patch*D), T = ceil(T0 / patch)
        T = x.shape[0]
        last = self.pool == "last"  # the final state alone: no output sequence is kept
        out, state = self.rnn(x, None, lengths, return_output=not last)  # out (T, B, K*H) or None
        K = self.rnn.num_directions
        where = None  # max pooling: the step each feature's maximum came from
        if self.pool == "last":
            h_n = state[0] if self.cell == "lstm" else state  # (L*K, B, H)
            feat = np.concatenate(list(h_n[-K:]), axis=-1)  # (B, K*H)
        elif self.pool == "attn":
            feat = self.attn(out, lengths)  # (B, K*H)
        else:  # mean, max, or meanmax: the mean, then the max
            mean, feat_max, where = pool_forward(out, lengths, self.pool != "max", self.pool != "mean")  # (B, K*H)
            feat = mean if feat_max is None else feat_max if mean is None else np.concatenate([mean, feat_max], axis=1)
        self._save_for_backward(((T, x.shape[1], K * self.rnn.hidden_size), lengths, lengths0, T0, where))
        return self.head(feat)

    def backward(self, dlogits, input_grad=True):
        """dlogits (B, C) -> dx like the input (None with ``input_grad=False``: the series are
        data, and the first layer skips the product that dx takes)."""
        (T, B, KH), lengths, lengths0, T0, where = self._saved_for_backward()
        dfeat = self.head.backward(dlogits)  # (B, K*H), meanmax (B, 2*K*H)
        L, K, H = self.rnn.num_layers, self.rnn.num_directions, self.rnn.hidden_size
        if self.pool == "last":
            dh_n = np.zeros((L * K, B, H), self.dtype)
            dh_n[-K:] = dfeat.reshape(B, K, H).transpose(1, 0, 2)
            dstate = (dh_n, None) if self.cell == "lstm" else dh_n
            dout = None  # the forward kept no output sequence
        else:
            dstate = None
            if self.pool == "attn":
                dout = self.attn.backward(dfeat)
            else:
                dmean, dmax = {"mean": (dfeat, None), "max": (None, dfeat),
                               "meanmax": (dfeat[:, :KH], dfeat[:, KH:])}[self.pool]
                dout = pool_backward(dmean, dmax, where, lengths, T)
            dout = dout.astype(self.dtype, copy=False)
        dx, _ = self.rnn.backward(dout, dstate, input_grad=input_grad)
        return patch_backward(dx, lengths0, T0, self.patch) if input_grad else None

    def predict(self, x, lengths=None):
        return self(x, lengths)

    def extra_repr(self):
        return f"cell={self.cell!r}, pool={self.pool!r}, patch={self.patch}"


class EnsembleClassifier(Module):
    """M SequenceClassifiers trained side by side, member m on the training series outside fold
    m (``fold_split``), so that each series has one member that never trained on it: the
    out-of-fold predictions score every epoch on all of TRAIN, and the members' average
    predicts. forward(x, lengths, rows=None) -> member logits (M, B, C) (rows: the series each
    member reads; training passes each its own); backward(dlogits (M, B, C)) -> dx;
    predict(x, lengths) -> log of the members' mean softmax (B, C)."""

    def __init__(self, input_size, num_classes, members=2, seed=None, **kw):
        super().__init__()
        if int(members) != members or members < 2:
            raise ValueError(f"an ensemble has 2 or more members, got {members!r}")
        for m in range(int(members)):
            setattr(self, f"member{m}", SequenceClassifier(input_size, num_classes, seed=None if seed is None
                                                           else seed + 2 * m, **kw))
        first = self.members[0]
        self.cell, self.pool, self.patch, self.dtype = first.cell, first.pool, first.patch, first.dtype
        self.num_classes = num_classes

    @property
    def members(self):
        return [m for m in self._modules.values()]

    def forward(self, x, lengths=None, rows=None):
        """rows: None, or (M, B) booleans, member m reading only the series where rows[m] is
        True (the training series outside its fold: the rest would get no gradient, so they
        are not computed); its logits are 0 at the others."""
        if rows is None:
            self._save_for_backward((None, None))
            return np.stack([m(x, lengths) for m in self.members])  # (M, B, C)
        T, B, _ = np.shape(x)
        lengths = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        rows = np.asarray(rows, bool)
        if rows.shape != (len(self.members), B):
            raise ValueError(f"rows must be (members, batch) = {(len(self.members), B)}, got {rows.shape}")
        logits = np.zeros((len(self.members), B, self.num_classes), self.dtype)  # (M, B, C)
        seen = []  # (member, its rows, its steps) for those that read any
        for m, member in enumerate(self.members):
            r = np.flatnonzero(rows[m])
            if len(r):
                Tm = int(lengths[r].max())  # the steps its longest series needs
                logits[m, r] = member(x[:Tm, r], lengths[r])
                seen.append((m, r, Tm))
        self._save_for_backward((np.shape(x), seen))
        return logits

    def backward(self, dlogits, input_grad=True):
        """dlogits (M, B, C) -> dx (T, B, D), the members' sum (None with input_grad=False)."""
        shape, seen = self._saved_for_backward()
        if seen is None:  # a forward of every member on every series
            dx = [m.backward(d, input_grad) for m, d in zip(self.members[::-1], dlogits[::-1])]  # the reverse order
            return sum(dx[1:], dx[0]) if input_grad else None
        dx = np.zeros(shape, self.dtype) if input_grad else None  # (T, B, D)
        for m, r, Tm in seen[::-1]:
            d = self.members[m].backward(np.ascontiguousarray(dlogits[m, r]), input_grad)
            if input_grad:
                dx[:Tm, r] += d
        return dx

    def predict(self, x, lengths=None):
        return mean_softmax_log(self(x, lengths))

    def extra_repr(self):
        return f"members={len(self.members)}"


class RotationTTA:
    """A trained classifier (a SequenceClassifier or EnsembleClassifier) that predicts by its mean
    probability over R rotations of each series (``rotate_all``: by round(j T / R) steps, j = 0 ..
    R-1): test-time augmentation for a model trained on every rotation (--roll 0.5 --tta R), to
    which a series' starting point means nothing. Prediction only: ``predict_logits(tta, series)``
    -> the log of the mean probability (N, C)."""

    def __init__(self, model, rotations):
        if int(rotations) != rotations or rotations < 2:
            raise ValueError(f"RotationTTA averages over 2 or more rotations, got {rotations!r}")
        self.model, self.rotations = model, int(rotations)
        self.num_classes, self.dtype, self.patch = model.num_classes, model.dtype, model.patch

    def probabilities(self, series, batch_size=64):
        """(N, C): the mean over the rotations of the model's probability."""
        R = self.rotations
        return sum(softmax(predict_logits(self.model, rotate_all(series, j, R), batch_size)) for j in range(R)) / R

    def __repr__(self):
        return f"RotationTTA({type(self.model).__name__}(patch={self.patch}), rotations={self.rotations})"


class ProbabilityMean:
    """Classifiers trained apart on the same classes and features (each a SequenceClassifier,
    EnsembleClassifier or RotationTTA; their patches may differ) that predict by the mean of their
    probabilities: ``--patch auto`` when the validation scores of several candidates are within one
    series of the best, so that the score cannot tell them apart. Prediction only:
    ``predict_logits(mix, series)`` -> the log of the mean probability (N, C). norms: None when
    the series come standardised, one way for all the parts; else each part's own Standardizer
    (with diff or not), applied to the series as read (``AsRead``) before that part, once for the
    parts that share it (one object)."""

    def __init__(self, parts, norms=None):
        parts = list(parts)
        if len(parts) < 2:
            raise ValueError(f"ProbabilityMean averages 2 or more classifiers, got {len(parts)}")
        if len({p.num_classes for p in parts}) > 1 or len({np.dtype(p.dtype) for p in parts}) > 1:
            raise ValueError("ProbabilityMean averages classifiers of one number of classes and one dtype")
        if norms is not None and (len(norms) != len(parts) or len({n.input_size for n in norms}) > 1):
            raise ValueError("ProbabilityMean: one standardisation per part, all of one number of features")
        self.parts, self.norms = parts, (list(norms) if norms is not None else None)
        self.num_classes, self.dtype = parts[0].num_classes, parts[0].dtype

    def probabilities(self, series, batch_size=64):
        """(N, C): the mean over the parts of each part's probability."""
        norms = self.norms or [None] * len(self.parts)
        done = {}  # id(norm) -> the series it standardised

        def read(n):
            if n is None:
                return series
            if id(n) not in done:
                done[id(n)] = n.transform(series, self.dtype)
            return done[id(n)]
        return sum(softmax(predict_logits(p, read(n), batch_size)) for p, n in zip(self.parts, norms)) / len(self.parts)

    def __repr__(self):
        return f"ProbabilityMean({', '.join(map(repr, self.parts))})"


def softmax(logits):
    """Softmax over the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def mean_softmax_log(member_logits):
    """member logits (M, B, C) -> log of the mean of the members' softmax (B, C)."""
    return np.log(softmax(member_logits).mean(axis=0))


def fold_split(labels, folds, rng):
    """A fold 0..folds-1 for every series, each class spread evenly over the folds."""
    labels = np.asarray(labels)
    fold = np.empty(len(labels), np.int64)
    start = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = (start + np.arange(len(idx))) % folds
        start += len(idx)  # the next class continues where this one stopped: even fold sizes
    return fold


def masked_cross_entropy(logits, y, weight):
    """Mean softmax cross-entropy of each member over its own series: logits (M, B, C), y (B,),
    weight (M, B) with 1 where member m trains on series b -> (loss, dlogits (M, B, C)); the
    loss is the mean over members of each member's mean over its series."""
    M, B, C = logits.shape
    z = logits - logits.max(axis=2, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))  # (M, B, C)
    w = weight / np.maximum(weight.sum(axis=1, keepdims=True), 1) / M  # (M, B)
    loss = float(-(w * logp[:, np.arange(B), y]).sum())
    dlogits = np.exp(logp)
    dlogits[:, np.arange(B), y] -= 1
    return loss, (dlogits * w[..., None]).astype(logits.dtype)


def pool_forward(out, lengths, mean=True, max=True):
    """out (T, B, F) zero past each length, lengths (B,) -> (mean_pool_forward (B, F) or None,
    then max_pool_forward's max and where, or None, None): compiled in one pass with the
    compiled loops (``bptt._fused``, equal to the bit), else the two functions below."""
    fast = fused()
    if fast is not None:
        return fast.pool_forward(out, lengths, mean, max)
    mx, where = max_pool_forward(out, lengths) if max else (None, None)
    return (mean_pool_forward(out, lengths) if mean else None), mx, where


def pool_backward(dmean, dmax, where, lengths, T):
    """The gradient of pool_forward: dmean (B, F) or None, dmax (B, F) and where, or None ->
    dout (T, B, F), the sum of mean_pool_backward and max_pool_backward (compiled: one pass)."""
    fast = fused()
    if fast is not None:
        return fast.pool_backward(dmean, dmax, where, lengths, T)
    if dmax is None:
        return mean_pool_backward(dmean, lengths, T)
    dout = max_pool_backward(dmax, where, T)
    return dout if dmean is None else mean_pool_backward(dmean, lengths, T) + dout


def mean_pool_forward(out, lengths):
    """out (T, B, F) zero past each length (as the recurrent layers return it), lengths (B,) ->
    the mean over the valid steps (B, F): the sum over all steps, the padding adding zeros."""
    return out.sum(axis=0) / lengths[:, None].astype(out.dtype)


def mean_pool_backward(dfeat, lengths, T):
    """dfeat (B, F) -> dout (T, B, F): dfeat / length at each valid step, 0 past it."""
    mask = (np.arange(T)[:, None] < lengths)[..., None]  # (T, B, 1)
    share = dfeat / lengths[:, None].astype(dfeat.dtype)  # (B, F), in dfeat's dtype
    return np.where(mask, share[None], dfeat.dtype.type(0))


class AttentionPool(Module):
    """Attention pooling: a learned softmax weighting of each series' valid steps,
    score_t = out_t . weight, a = softmax of the scores over t < length, feat = sum_t a_t out_t.
    weight (F,) starts at zero, so the pooling starts as the mean over the valid steps.
    forward(out (T, B, F) zero past each length, lengths (B,)) -> feat (B, F); backward(dfeat) -> dout."""

    def __init__(self, features, dtype="float32"):
        super().__init__()
        self.params = {"weight": np.zeros(int(features), dtype)}
        self._init_grads()

    def forward(self, out, lengths):
        feat, a = attn_pool_forward(out, lengths, self.params["weight"])
        self._save_for_backward((out, a))
        return feat

    def backward(self, dfeat):
        out, a = self._saved_for_backward()
        dout, dweight = attn_pool_backward(dfeat, out, a, self.params["weight"])
        self.grads["weight"] += dweight
        return dout


def attn_pool_forward(out, lengths, weight):
    """out (T, B, F), lengths (B,), weight (F,) -> (feat (B, F), the weights a (T, B), 0 past each
    length): a = softmax over the valid steps of out . weight, feat = sum_t a_t out_t."""
    valid = np.arange(len(out))[:, None] < lengths  # (T, B)
    score = np.where(valid, out @ weight, -np.inf)  # (T, B)
    e = np.exp(score - score.max(axis=0))  # (T, B), 0 past each length
    a = (e / e.sum(axis=0)).astype(out.dtype)
    return (a[..., None] * out).sum(axis=0), a


def attn_pool_backward(dfeat, out, a, weight):
    """dfeat (B, F) -> (dout (T, B, F), dweight (F,)): through feat = sum_t a_t out_t directly
    (a_t dfeat) and through the weights, dscore_t = a_t (g_t - sum_s a_s g_s) with g_t = out_t . dfeat,
    dout_t += dscore_t weight, dweight = sum_{t,b} dscore_t out_t."""
    g = (out * dfeat[None]).sum(axis=2)  # (T, B)
    dscore = a * (g - (a * g).sum(axis=0))  # (T, B), 0 past each length (a = 0 there)
    dout = a[..., None] * dfeat[None] + dscore[..., None] * weight  # (T, B, F)
    dweight = np.einsum("tb,tbf->f", dscore, out)
    return dout.astype(out.dtype, copy=False), dweight.astype(weight.dtype, copy=False)


def max_pool_forward(out, lengths):
    """out (T, B, F), lengths (B,) -> (the element-wise max over each series' valid steps (B, F),
    the step it came from (B, F)). A padded step never wins; of equal values the earliest does."""
    valid = (np.arange(len(out))[:, None] < lengths)[..., None]  # (T, B, 1)
    where = np.where(valid, out, -np.inf).argmax(axis=0)  # (B, F), the first maximum
    return np.take_along_axis(out, where[None], axis=0)[0], where


def max_pool_backward(dfeat, where, T):
    """dfeat (B, F), the steps of the maxima where (B, F) -> dout (T, B, F): each feature's
    gradient at the one step its maximum came from, 0 elsewhere."""
    dout = np.zeros((T,) + dfeat.shape, dfeat.dtype)
    np.put_along_axis(dout, where[None], dfeat[None], axis=0)
    return dout


def patch_forward(x, lengths, K):
    """K consecutive steps as one: x (T0, B, D), lengths (B,) -> x (T, B, K*D) with
    T = ceil(T0 / K), step t holding x[t*K : t*K + K] in order, and lengths ceil(lengths / K).
    The steps past each length (in a series' last, partial patch) are zeros, as in pad_batch."""
    if K == 1:
        return x, lengths
    fast = fused()
    if fast is not None:  # the same copy, in one compiled pass
        return fast.patch_forward(x, lengths, K), -(-lengths // K)
    T0, B, D = x.shape
    T = -(-T0 // K)
    xp = np.zeros((T * K, B, D), x.dtype)
    xp[:T0] = x * (np.arange(T0)[:, None] < lengths)[..., None]  # (T0, B, D), zero past each length
    xp = xp.reshape(T, K, B, D).transpose(0, 2, 1, 3).reshape(T, B, K * D)
    return xp, -(-lengths // K)


def patch_backward(dxp, lengths0, T0, K):
    """The reverse of patch_forward: dx (T, B, K*D) -> (T0, B, D), zero past each series'
    own length lengths0 (B,) (the steps patch_forward set to zero)."""
    if K == 1:
        return dxp
    T, B, KD = dxp.shape
    D = KD // K
    dx = dxp.reshape(T, B, K, D).transpose(0, 2, 1, 3)  # (T, K, B, D)
    dx = dx.reshape(T * K, B, D)[:T0]  # (T0, B, D)
    return dx * (np.arange(T0)[:, None] < lengths0)[..., None]


# ----------------------------------------------------------------------------- evaluation
def predict_logits(model, series, batch_size=64, members=False):
    """Logits (N, C) for every series (eval mode, nothing recorded), in the given order (an
    ensemble: the log of its members' mean softmax; a RotationTTA: the log of its mean
    probability over the rotations; a ProbabilityMean: of its parts' mean probability);
    members=True: each member's (M, N, C)."""
    if isinstance(model, (RotationTTA, ProbabilityMean)):
        if members:
            raise ValueError(f"a {type(model).__name__} predicts by a mean probability; it has no members of its own")
        return np.log(model.probabilities(series, batch_size))
    was = model.training
    model.eval()
    M = len(model.members) if members else None
    out = np.empty(((M,) if members else ()) + (len(series), model.num_classes), np.float64)
    try:
        with no_grad():
            for idx in bucket_batches([len(s) for s in series], batch_size):
                x, lengths = pad_batch(series, idx, model.dtype)
                if members:
                    out[:, idx] = model(x, lengths)
                else:
                    out[idx] = model.predict(x, lengths)
    finally:
        model.train(was)
    return out


def cross_entropy_of(logits, y):
    """Mean softmax cross-entropy of logits (N, C) and class indices y (N,)."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def scores(logits, y, num_classes):
    """accuracy, loss, confusion (C, C) rows true / columns predicted, recall per class."""
    pred = logits.argmax(axis=1)
    conf = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(conf, (y, pred), 1)
    support = conf.sum(axis=1)
    recall = [float(conf[c, c] / support[c]) if support[c] else math.nan for c in range(num_classes)]
    return {"accuracy": float((pred == y).mean()), "loss": cross_entropy_of(logits, y), "n": int(len(y)),
            "confusion": conf, "recall": recall, "pred": pred}


def check_dims(series, D, name):
    """Every series has D features (the model's input size)."""
    for i, x in enumerate(series):
        if x.shape[1] != D:
            raise DataError(f"{name}: series {i + 1} has {x.shape[1]} dimensions; the model reads {D}")


def encode_labels(labels, classes, name):
    """Label strings -> indices into classes; a label not among them is an error."""
    index = {c: k for k, c in enumerate(classes)}
    out = np.empty(len(labels), np.int64)
    for i, lab in enumerate(labels):
        if lab not in index:
            raise DataError(f"{name}: label {lab!r} (series {i + 1}) is not one of the training classes "
                            f"({', '.join(classes)})")
        out[i] = index[lab]
    return out
