"""Recipe search for benchmarks/classify.py, blind to test accuracy: each variant's best
out-of-fold accuracy on TRAIN (--ensemble: every series scored by the member that did not
train on it) and its seconds. The TEST files are never read.

    python benchmarks/classify_search.py --variants recipe pool-last --datasets GunPoint ArrowHead --seeds 0 1
    SEARCH_HISTORY=h.jsonl python benchmarks/classify_search.py ...   # also keep each run's curve
    python benchmarks/classify_search.py --stopping h.jsonl          # what --patience N would have kept
    python benchmarks/classify_search.py --stopping h.jsonl --epochs 150   # ... with at most 150 epochs
    python benchmarks/classify_search.py --nested 4 --variants recipe pool-attn --datasets ArrowHead
        # each variant's held-out accuracy by nested cross-validation on TRAIN (round eight's score)
    python benchmarks/classify_search.py --nested 4 --refit --datasets ArrowHead   # refit on all of TRAIN
                                                                                   # against the recipe

The search runs with the recipe's --patience (benchmarks/classify.py SETUP); for --stopping, run
the curves without it (--patience 0).
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import threads_from_argv  # noqa: E402

threads_from_argv()

import numpy as np  # noqa: E402

import classify as bench  # noqa: E402  (the recipe: SETUP, patch_rule, data_dir)


# name -> changes to the recipe
VARIANTS = {
    "recipe": {},
    "round5": {"input_dropout": 0.0},  # the recipe before the sixth round (with --epochs 150)
    "layers2": {"num_layers": 2},
    "pool-last": {"pool": "last"},
    "pool-max": {"pool": "max"},
    "pool-meanmax": {"pool": "meanmax"},
    "batch32": {"batch_size": 32},
    "lr0.005": {"lr": 5e-3},
    "lr0.002": {"lr": 2e-3},
    "hidden96": {"hidden_size": 96},
    "diff": {"diff": True},
    "crop0.9": {"crop": 0.9},
    "crop0.8": {"crop": 0.8},
    "warp0.05": {"warp": 0.05},
    "warp0.1": {"warp": 0.1},
    "warp0.2": {"warp": 0.2},
    "mixed-cells": {},  # members 0, 2 with the run's cell, 1, 3 with the other (LSTM <-> GRU): mixed_cells
    "overlap": {},  # windows of K steps every ceil(K/2) instead of patches of K: overlap_windows
    "mixup0.2": {},  # mixup of the series of a batch, lam ~ Beta(0.2, 0.2): mixup_epoch
    "mixup0.4": {},
    "time": {},  # the relative time as one more feature: with_time
    "indrop0.1": {"input_dropout": 0.1},  # --input-dropout (first run as a search-only patch, the same draws)
    "indrop0.2": {"input_dropout": 0.2},
    "indrop0.05": {"input_dropout": 0.05},
    "phase": {},  # patches of K start at a random phase in training: random_phase
    "phase-tta": {},  # ... and the out-of-fold score averages over phases: phase_validate
    "snapshot": {},  # the recipe, scored also by means of consecutive epochs' predictions: snapshot_scores
    # seventh round
    "l2-0.001": {"weight_decay": 0.001},  # adam's coupled L2 (the second round's --weight-decay 0.001)
    "adamw0.01": {"optimizer": "adamw", "weight_decay": 0.01},  # decoupled decay p *= 1 - lr*wd each step
    "adamw0.03": {"optimizer": "adamw", "weight_decay": 0.03},
    "adamw0.1": {"optimizer": "adamw", "weight_decay": 0.1},
    "adamw0.5": {"optimizer": "adamw", "weight_decay": 0.5},
    "headdrop0.2": {},  # dropout on the pooled features before the Linear head: head_dropout
    "headdrop0.5": {},
    "ema0.8": {},  # each epoch scored (and kept) with the epoch-wise EMA of the weights: ema_weights
    "ema0.9": {},
    "scale0.1": {},  # each training series scaled by exp(N(0, 0.1)), new every epoch: amplitude
    "scaleshift0.1": {},  # ... and shifted by N(0, 0.1)
    "hidden32": {"hidden_size": 32},
    "hidden48": {"hidden_size": 48},
    "clip0.5": {"clip": 0.5},
    "clip5": {"clip": 5.0},
    "unidir": {"bidirectional": False},
    "ens5": {"ensemble": 5},
    "batch12": {"batch_size": 12},
    "lr0.004": {"lr": 4e-3},
    "pool-attn": {"pool": "attn"},  # --pool attn (a bptt option from this round)
    "roll0.1": {"roll": 0.1},  # --roll (a bptt option from this round; first run as a patch, other draws)
    "roll0.5": {"roll": 0.5},
    "roll0.05": {"roll": 0.05},
    "roll0.02": {"roll": 0.02},
    # eighth round (judged by --nested)
    "snap-trail2": {},  # each epoch predicts by the mean probability of epochs e-2..e: snapshot_choice
    "snap-centre1": {},  # ... of epochs e-1..e+1
    "snap-centre2": {},  # ... of epochs e-2..e+2
    "ens6": {"ensemble": 6},
    "ens8": {"ensemble": 8},
    "steps16": {},  # K = ceil(median length / 16): about 16 recurrent steps (patch_for)
    "steps8": {},  # about 8 steps of K values
    "steps4": {},  # about 4
    "steps1": {},  # the whole series as one step of T values (a gated one-layer network)
    "select": {},  # --nested only: a run per SELECT_STEPS, the best inner out-of-fold score predicts (select_parts)
    "steps2": {},
    "select-32,8,4,2": {},
    "select-32,8,4,1": {},
    "select-32,16,8,4": {},
    "select,roll0.5": {},  # select's candidates and one more: the 32-step run with --roll 0.5
    "select,roll0.5,2": {},  # --patch auto since round twelve (select,roll0.5) with a 2-step candidate
    "combos": {},  # round fourteen: --patch auto's runs, scored as select and as the mixes of COMBOS
    "combos+flip": {},  # round seventeen: combos with every candidate trained with flip (below)
    "flip": {},  # each training series reversed in time with probability 1/2, new every epoch, and
    # predicting by the mean probability over the series and its reversal (held-out): flip_series
    "roll0.5,flip": {"roll": 0.5},  # ... the rotated candidate with it (8 rotations x 2 directions)
    "combos+flipu": {},  # round eighteen: combos with flip in the unrotated candidates only
    "combos,rotdiff": {},  # round twenty-one: combos and a sixth run, the rotated candidate with --diff
    "combos,rotwarp": {},  # ... with --warp 0.1 (ROTATED; explored on OSULeaf alone, not run as a round)
    "combos,rotmeanmax": {},  # ... with --pool meanmax (the same)
    "auto": {},  # --patch auto as it is (select_parts), scored by the ways of COMBOS
    "auto23": {},  # round twenty-four: --patch auto as it was from round twenty-three to twenty-five (the rotated
    # candidate with --diff, both directions, 32 steps)
    "auto23,rotuni96": {},  # round twenty-five: auto23 and a sixth run, ROTATED["uni96"] (near-tta/uni96; adopted:
    # auto is now --patch auto with it)
    "auto25": {},  # --patch auto as round twenty-five adopted it (one rotated candidate, ROTATED["uni96"])
    "auto25,rotmm2": {},  # round twenty-six: auto25 and two more runs, ROTATED["mm2"], in place of its rotated
    # one (then named auto,rotmm2; adopted: auto is now --patch auto with them)
    "combos+ep400": {},  # round twenty: combos with every candidate trained for 400 epochs at most
    "ep400": {"epochs": 400},  # (its patience unchanged: 50)
    "roll0.5,ep400": {"roll": 0.5, "epochs": 400},
    "roll0.5,warp0.1": {"roll": 0.5, "warp": 0.1},  # the rotated candidate with --warp 0.1 (round four's)
    "roll0.5,meanmax": {"roll": 0.5, "pool": "meanmax"},  # ... with --pool meanmax (round five's)
    "roll0.5,diff": {"roll": 0.5, "diff": True},  # ... with --diff (round four's)
    # explored after round twenty-four (OSULeaf alone): --patch auto's rotated candidate (roll0.5,diff) and more
    "roll0.5,diff,warp0.1": {"roll": 0.5, "diff": True, "warp": 0.1},
    "roll0.5,diff,hidden96": {"roll": 0.5, "diff": True, "hidden_size": 96},
    "roll0.5,diff,layers2": {"roll": 0.5, "diff": True, "num_layers": 2},
    "roll0.5,diff,vtta8": {"roll": 0.5, "diff": True},  # its epochs scored over 8 rotations: tta_validate
    "roll0.5,diff,batch32": {"roll": 0.5, "diff": True, "batch_size": 32},
    "roll0.5,diff,ens6": {"roll": 0.5, "diff": True, "ensemble": 6},
    "roll0.5,diff,meanmax": {"roll": 0.5, "diff": True, "pool": "meanmax"},
    "roll0.5,diff,cosine": {"roll": 0.5, "diff": True, "schedule": "cosine"},
    "roll0.5,diff,lr0.002": {"roll": 0.5, "diff": True, "lr": 0.002},
    # ... and its members trained again on every outer-train series for E* epochs (refit, as in round
    # six), over 8 rotations: the refitted members alone and with the out-of-fold ones (REFIT_HITS)
    "roll0.5,diff,refit": {"roll": 0.5, "diff": True},
    # ... and two more rotated runs with patches K/2 and 2K (twice and half the steps), over 8 rotations:
    # each alone and the mean probabilities of two or three scales (SCALE_HITS)
    "roll0.5,diff,scales": {"roll": 0.5, "diff": True},
    "roll0.5,diff,fine": {"roll": 0.5, "diff": True},  # ... with patches K/3 and K/4 (3 and 4 times the steps)
    "roll0.5,diff,third": {"roll": 0.5, "diff": True},  # ... with patch K/3 alone
    # ... of 3 members instead of 4 (each trained on 2/3 of the series, 2/3 of the work), with K/3
    "roll0.5,diff,ens3": {"roll": 0.5, "diff": True, "ensemble": 3},
    "roll0.5,diff,ens3,third": {"roll": 0.5, "diff": True, "ensemble": 3},
    # ... one direction instead of two (half the work), with K/3
    "roll0.5,diff,uni": {"roll": 0.5, "diff": True, "bidirectional": False},
    "roll0.5,diff,uni,third": {"roll": 0.5, "diff": True, "bidirectional": False},
    # explored after round twenty-five: that candidate with --pool meanmax, with 80 hidden units, with K/4
    "roll0.5,diff,uni,meanmax": {"roll": 0.5, "diff": True, "bidirectional": False, "pool": "meanmax"},
    "roll0.5,diff,uni,meanmax,third": {"roll": 0.5, "diff": True, "bidirectional": False, "pool": "meanmax"},
    "roll0.5,diff,uni,hidden80": {"roll": 0.5, "diff": True, "bidirectional": False, "hidden_size": 80},
    "roll0.5,diff,uni,hidden80,third": {"roll": 0.5, "diff": True, "bidirectional": False, "hidden_size": 80},
    "roll0.5,diff,uni,quarter": {"roll": 0.5, "diff": True, "bidirectional": False},
    "roll0.5,diff,hidden32": {"roll": 0.5, "diff": True, "hidden_size": 32},
    "roll0.5,diff,hidden32,fine": {"roll": 0.5, "diff": True, "hidden_size": 32},
    # (--patch auto was combos' near-tta from round sixteen: select,roll0.5,2's candidates within one
    # inner series of the best, the rotated one predicting over 8 rotations, by their mean probability;
    # since round twenty-three it is auto's near-tta, the same with the rotated candidate roll0.5,diff)
}


VARIANTS.update({f"select+{v}": {} for v in ("indrop0.1", "indrop0.2", "ens6", "ens8", "hidden96", "pool-attn",
                                             "lr0.002", "adamw0.01", "clip0.5")})


def mixed_cells(build):
    """build_model for the variant mixed-cells (a search-only patch, not a bptt option): the
    ensemble's odd members get the other cell of LSTM and GRU, with their own seeds as usual."""
    from bptt.classify import SequenceClassifier

    def patched(cfg, D, C):
        model = build(cfg, D, C)
        other = {"lstm": "gru", "gru": "lstm"}[cfg.cell]
        for m in range(1, cfg.ensemble, 2):
            old = model.members[m]
            setattr(model, f"member{m}", SequenceClassifier(
                old.rnn.input_size // old.patch, C, cell=other, hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout, pool=cfg.pool,
                dtype=cfg.dtype, seed=cfg.seed + 2 * m, patch=cfg.patch))
        return model
    return patched


def overlap_model(build, K):
    """build_model for the variant overlap (a search-only patch): the series are read as
    overlapping windows of K steps every ceil(K/2) (see overlap_windows), one window per recurrent
    step, so the model reads K times the features with patch 1."""
    def patched(cfg, D, C):
        return build(dataclasses.replace(cfg, patch=1), D * K, C)
    return patched


def overlap_windows(x, K):
    """(T, D) -> (ceil(T/S), K*D) with S = ceil(K/2): row j holds x[jS : jS+K] (zeros past the end)."""
    S = -(-K // 2)
    T, D = x.shape
    n = -(-T // S)
    pad = np.zeros((n * S + K, D), x.dtype)
    pad[:T] = x
    return np.stack([pad[j * S:j * S + K].reshape(-1) for j in range(n)])


def mixup_epoch(run, alpha):
    """ClassifyRun.train_epoch with mixup (a search-only patch): each batch is mixed with a shuffled
    copy of itself, x = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha) per batch, the loss
    lam CE(y) + (1 - lam) CE(y[perm]); member m learns from a mixed pair only when neither series
    is in its fold (the out-of-fold score stays out of fold)."""
    from bptt.classify import bucket_batches, masked_cross_entropy, pad_batch
    from bptt.optim import make_schedule

    mix_rng = run.__dict__.setdefault("mix_rng", np.random.default_rng([run.cfg.seed, 9]))
    total, n = 0.0, 0
    run.opt.lr = make_schedule(run.cfg.schedule, run.cfg.lr, run.cfg.epochs)(run.epoch)
    M = run.cfg.ensemble
    for idx in bucket_batches([len(s) for s in run.train_x], run.cfg.batch_size, run.rng):
        x, lengths = pad_batch(run._batch_series(idx), range(len(idx)), run.model.dtype)
        perm = mix_rng.permutation(len(idx))
        lam = float(mix_rng.beta(alpha, alpha))
        x = (lam * x + (1 - lam) * x[:, perm]).astype(x.dtype)  # x (T, B, D)
        lengths = np.maximum(lengths, lengths[perm])
        run.model.zero_grad()
        logits = run.model(x, lengths)
        own = (run.fold[idx][None, :] != np.arange(M)[:, None])
        own = (own & own[:, perm]).astype(logits.dtype)
        y = run.train_y[idx]
        la, da = masked_cross_entropy(logits, y, own)
        lb, db = masked_cross_entropy(logits, y[perm], own)
        loss, dlogits = lam * la + (1 - lam) * lb, (lam * da + (1 - lam) * db).astype(logits.dtype)
        run.update(dlogits)
        total, n = total + loss * len(idx), n + len(idx)
    run.epoch += 1
    return total / n


def snapshot_scores(probs, y, widths=(1, 2, 3)):
    """The variant snapshot (scored after the run, nothing changes in training): probs (E, N, C),
    each epoch's out-of-fold probabilities. For each w: the best out-of-fold accuracy of the mean
    probability of epochs e-w..e (trailing) and of e-w..e+w (centred), over the epochs e.
    -> {name: (accuracy, epoch)}."""
    E = len(probs)
    out = {}
    for w in widths:
        for kind in ("trail", "centre"):
            best = (-1.0, 0)
            for e in range(E):
                lo, hi = max(0, e - w), (e + 1 if kind == "trail" else min(E, e + w + 1))
                acc = float((probs[lo:hi].mean(axis=0).argmax(axis=1) == y).mean())
                best = max(best, (acc, e + 1), key=lambda t: t[0])
            out[f"{kind}{w}"] = best
    return out


def record_oof(run):
    """Wrap run.validate to keep each epoch's out-of-fold probabilities in run.oof_probs."""
    from bptt.classify import predict_logits

    run.oof_probs = []
    validate = run.validate

    def recording():
        lg = predict_logits(run.model, run.train_x, members=True)[run.fold, np.arange(len(run.fold))]
        p = np.exp(lg - lg.max(axis=1, keepdims=True))
        run.oof_probs.append(p / p.sum(axis=1, keepdims=True))
        return validate()
    run.validate = recording


def head_dropout(run, p, seed):
    """The variant headdrop (a search-only patch): in training, each pooled feature the Linear head
    reads is zeroed with probability p and the others scaled by 1/(1-p) (a new mask per batch;
    the backward applies the same mask); eval reads the features as they are."""
    rng = np.random.default_rng([seed, 17])
    for member in getattr(run.model, "members", [run.model]):
        head = member.head
        forward, backward = head.forward, head.backward

        def fwd(feat, head=head, forward=forward):
            if head.training and p:
                head._mask = (rng.random(feat.shape) >= p) / (1 - p)  # (B, F)
                feat = (feat * head._mask).astype(feat.dtype)
            else:
                head._mask = None
            return forward(feat)

        def bwd(dy, head=head, backward=backward):
            dfeat = backward(dy)
            return dfeat if head._mask is None else (dfeat * head._mask).astype(dfeat.dtype)
        head.forward, head.backward = fwd, bwd


def ema_weights(run, decay):
    """The variant ema (a search-only patch): after each epoch e the exponential moving average of
    the weights over the epochs, a = decay a + (1 - decay) w, debiased by 1 - decay^e; each epoch is
    scored out of fold with the averaged weights (the training goes on from its own weights)."""
    params = run.model.params  # name -> the arrays the layers own
    avg = {k: np.zeros(v.shape, np.float64) for k, v in params.items()}
    train_epoch, validate = run.train_epoch, run.validate

    def epoch():
        loss = train_epoch()
        for k, v in params.items():
            avg[k] = decay * avg[k] + (1 - decay) * v
        return loss

    def scored():
        own = {k: v.copy() for k, v in params.items()}
        debias = 1 - decay ** run.epoch
        for k, v in params.items():
            v[...] = avg[k] / debias
        try:
            return validate()
        finally:
            for k, v in params.items():
                v[...] = own[k]
    run.train_epoch, run.validate = epoch, scored


def amplitude(run, sd, shift, seed):
    """The variants scale / scaleshift (a search-only patch): each training series x becomes
    s x + o, s = exp(N(0, sd)), o = N(0, sd) with shift (one draw per series, new every epoch)."""
    rng = np.random.default_rng([seed, 19])
    batch_series = run._batch_series

    def scaled(idx):
        out = []
        for x in batch_series(idx):
            s = np.exp(sd * rng.standard_normal())
            o = sd * rng.standard_normal() if shift else 0.0
            out.append((s * x + o).astype(x.dtype))
        return out
    run._batch_series = scaled


def with_time(x):
    """(T, D) -> (T, D + 1): the relative time 2t/(T-1) - 1 (-1 at the first step, 1 at the last)
    as one more feature (the variant time; a search-only patch)."""
    t = np.linspace(-1.0, 1.0, len(x)) if len(x) > 1 else np.zeros(1)
    return np.concatenate([x, t[:, None].astype(x.dtype)], axis=1)


def random_phase(run, K, seed):
    """The variant phase (a search-only patch): each training series drops its first r values,
    r uniform in 0..K-1 and new every epoch, so the patches of K start at every phase."""
    rng = np.random.default_rng([seed, 13])
    batch_series = run._batch_series

    def shifted(idx):
        return [x[int(rng.integers(K)):] if len(x) > K else x for x in batch_series(idx)]
    run._batch_series = shifted


def phase_validate(run, K):
    """The variant phase-tta: the out-of-fold score of the mean probability over the phases
    r = 0, s, 2s, ... < K (s = max(1, K // 4)), each series read from its r-th value."""
    from bptt.classify import predict_logits, scores

    def validate():
        p = 0.0
        shifts = range(0, K, max(1, K // 4))
        for r in shifts:
            lg = predict_logits(run.model, [x[r:] for x in run.train_x], members=True)
            lg = lg[run.fold, np.arange(len(run.fold))]
            e = np.exp(lg - lg.max(axis=1, keepdims=True))
            p = p + e / e.sum(axis=1, keepdims=True)
        s = scores(np.log(p / len(shifts)), run.train_y, len(run.classes))
        return s["accuracy"], s["loss"]
    run.validate = validate


def patch_for(variant, lengths):
    """The patch K of a run of the variant on series of these lengths: the recipe's rule, or for
    stepsN, K = ceil(median length / N) (about N recurrent steps)."""
    if variant.startswith("steps"):
        return max(1, -(-int(np.median(lengths)) // int(variant[len("steps"):])))
    return bench.patch_rule(lengths)


def prepare(path, variant, cell, seed, epochs, K, out, heldout=None):
    """The variant's run on the TRAIN file `path` (patch K), with its search-only patches applied,
    ready for fit. heldout: standardised (T, D) series (held out of `path`, --nested): each epoch's
    member logits on them, under the weights that epoch is scored with, are kept in run.ho_logits
    (E, M, n, C), the same transforms as the training series applied to them."""
    from bptt.classify_run import ClassifyConfig, ClassifyRun
    import bptt.classify_run as cr

    setup = {**bench.SETUP, "patch": K, **VARIANTS[variant]}
    build = cr.build_model
    cr.build_model = (mixed_cells(build) if variant == "mixed-cells" else
                      overlap_model(build, K) if variant == "overlap" else
                      (lambda cfg, D, C: build(cfg, D + 1, C)) if variant == "time" else build)
    try:
        run = ClassifyRun(ClassifyConfig(data=path, cell=cell, seed=seed, out=out, **{"epochs": epochs, **setup}))
    finally:
        cr.build_model = build
    xform = ((lambda x: overlap_windows(x, K)) if variant == "overlap" else
             with_time if variant == "time" else None)
    if xform:
        run.train_x = [xform(x) for x in run.train_x]
    if variant.endswith(",vtta8"):  # before record_heldout, which wraps run.validate
        tta_validate(run, TTA)
    if heldout is not None:
        record_heldout(run, [xform(x) for x in heldout] if xform else heldout)
    if variant.startswith("mixup"):
        alpha = float(variant[len("mixup"):])
        run.train_epoch = lambda: mixup_epoch(run, alpha)
    if variant == "snapshot" or variant.startswith("snap-"):
        record_oof(run)
    if variant.startswith("phase"):
        random_phase(run, K, seed)
    if variant == "phase-tta":
        if heldout is not None:
            raise SystemExit("phase-tta has no --nested score (its held-out predictions would need its phases)")
        phase_validate(run, K)
    if variant.startswith("headdrop"):
        head_dropout(run, float(variant[len("headdrop"):]), seed)
    if variant.startswith("ema"):
        ema_weights(run, float(variant[len("ema"):]))
    if variant.startswith("scale"):
        shift = variant.startswith("scaleshift")
        amplitude(run, float(variant[len("scaleshift" if shift else "scale"):]), shift, seed)
    if variant.endswith("flip"):
        flip_series(run, seed)
    return run


def flip_series(run, seed):
    """The variant flip (a search-only patch, round seventeen): each training series, after the
    run's own variants (roll), reversed in time with probability 1/2, drawn anew every epoch from
    a generator of its own (the run's draws unchanged). An outline read the other way round is
    its mirror image, a movement played backwards the same movement; the held-out prediction
    averages over both directions (tta_probs). Validation reads the series as they are."""
    rng = np.random.default_rng([seed, 17])
    batch = run._batch_series

    def flipped(idx):
        return [x[::-1].copy() if rng.random() < 0.5 else x for x in batch(idx)]
    run._batch_series = flipped


def tta_validate(run, R):
    """Score each epoch as the candidate predicts (a search-only patch, explored after round
    twenty-four): each out-of-fold series by its member's mean probability over R rotations
    (bptt's RotationTTA of that member)."""
    from bptt.classify import RotationTTA, predict_logits, scores

    def validate():
        logits = np.empty((len(run.train_y), len(run.classes)))  # (N, C)
        for m, member in enumerate(run.model.members):
            idx = np.flatnonzero(run.fold == m)
            logits[idx] = predict_logits(RotationTTA(member, R), [run.train_x[i] for i in idx])
        s = scores(logits, run.train_y, len(run.classes))
        return s["accuracy"], s["loss"]
    run.validate = validate


def record_heldout(run, x):
    """Wrap run.validate to keep each epoch's member logits on the series x in run.ho_logits
    (wrapped before any patch that swaps weights around validate, so they are the scored weights)."""
    from bptt.classify import predict_logits

    run.ho_logits = []
    validate = run.validate

    def recording():
        run.ho_logits.append(predict_logits(run.model, x, members=True))  # (M, n, C)
        return validate()
    run.validate = recording


def one(name, variant, cell, seed, epochs):
    from bptt.classify_run import fit
    from bptt.data import read_ts

    path = os.path.join(bench.data_dir(), name, f"{name}_TRAIN.ts")
    K = patch_for(variant, [len(x) for x in read_ts(path)[0]])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run = prepare(path, variant, cell, seed, epochs, K, out)
        fit(run, progress=False)
        sec = time.perf_counter() - t0
    if variant == "snapshot":
        for k, (acc, ep) in snapshot_scores(np.array(run.oof_probs), run.train_y).items():
            print(f"  snapshot {name} {cell} seed {seed}: {k} {acc:.4f} (epoch {ep})", flush=True)
    if variant.startswith("snap-"):
        acc, ep, _ = snapshot_choice(run, variant)
        print(f"  {variant} {name} {cell} seed {seed}: {acc:.4f} (epoch {ep})", flush=True)
    if os.environ.get("SEARCH_HISTORY"):  # the out-of-fold curve, for stopping rules (no test scores in it)
        with open(os.environ["SEARCH_HISTORY"], "a") as f:
            f.write(json.dumps({"variant": variant, "dataset": name, "cell": cell, "seed": seed,
                                "history": run.history}) + "\n")
    return run.best["val_accuracy"], run.best["epoch"], sec, K


def snapshot_choice(run, variant):
    """The variants snap-trailW / snap-centreW (a search-only patch; nothing changes in training):
    the prediction of epoch e is the mean probability of epochs e-W..e (trail) or e-W..e+W (centre);
    the epoch is chosen by that mean's out-of-fold accuracy, then loss, as fit chooses.
    -> (out-of-fold accuracy, epoch, (lo, hi): the epochs averaged, as slice bounds)."""
    kind = "trail" if variant.startswith("snap-trail") else "centre"
    w = int(variant[len("snap-" + kind):])
    probs, y = np.array(run.oof_probs), run.train_y  # (E, N, C)
    best = None
    for e in range(len(probs)):
        lo, hi = max(0, e - w), (e + 1 if kind == "trail" else min(len(probs), e + w + 1))
        p = probs[lo:hi].mean(axis=0)
        acc = float((p.argmax(axis=1) == y).mean())
        loss = float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean())
        if best is None or (acc, -loss) > best[0]:
            best = ((acc, -loss), e + 1, (lo, hi))
    return best[0][0], best[1], best[2]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["recipe"], choices=list(VARIANTS))
    p.add_argument("--datasets", nargs="+", default=["ItalyPowerDemand", "GunPoint", "ArrowHead"])
    p.add_argument("--cells", nargs="+", default=["gru"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=bench.EPOCHS)
    p.add_argument("--patience", type=int, default=None, help="instead of the recipe's (0: all epochs)")
    p.add_argument("--stopping", metavar="HISTORY", help="print what --patience N would have kept of these curves")
    p.add_argument("--nested", type=int, metavar="K", help="score each variant by nested cross-validation on "
                   "TRAIN in K outer folds: its whole run on K-1 of them, its chosen ensemble scores the Kth "
                   "(see nested)")
    p.add_argument("--refit", action="store_true", help="with --nested: the sixth round's comparison instead, "
                   "the recipe against its members refitted on all of each outer-train part (see nested_refit)")
    p.add_argument("--threads", default="1")
    args = p.parse_args(argv)
    if args.stopping:
        return stopping(args.stopping, cap=args.epochs)
    if any(v.startswith(("select", "combos", "auto")) for v in args.variants) and not args.nested:
        raise SystemExit("the variant select is scored by --nested only (its own score is the best of its candidates')")
    if args.patience is not None:
        bench.SETUP["patience"] = args.patience
    if args.nested and args.refit:
        for name in args.datasets:
            for cell in args.cells:
                accs = []
                for seed in args.seeds:
                    acc, sec = nested_refit(name, cell, seed, args.nested, args.epochs)
                    accs.append(acc)
                    print(f"nested {name} {cell} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items())
                          + f" ({sec:.0f} s)", flush=True)
                print(f"== nested {name} {cell}: mean held-out accuracy " + ", ".join(
                    f"{k} {np.mean([a[k] for a in accs]):.4f}" for k in accs[0]), flush=True)
        return 0
    if args.nested:
        for variant in args.variants:
            for name in args.datasets:
                for cell in args.cells:
                    accs = []
                    for seed in args.seeds:
                        acc, oof, sec = nested(name, variant, cell, seed, args.nested, args.epochs)
                        accs.append(acc)
                        print(f"nested {variant} {name} {cell} seed {seed}: held-out accuracy {acc:.4f} "
                              f"(inner out-of-fold {oof:.4f}), {sec:.0f} s", flush=True)
                    print(f"== nested {variant} {name} {cell}: mean held-out accuracy {np.mean(accs):.4f}", flush=True)
        return 0
    for variant in args.variants:
        for name in args.datasets:
            for cell in args.cells:
                accs = []
                for seed in args.seeds:
                    acc, ep, sec, patch = one(name, variant, cell, seed, args.epochs)
                    accs.append(acc)
                    print(f"{variant} {name} {cell} seed {seed}: out-of-fold accuracy {acc:.4f} (epoch {ep}), "
                          f"patch {patch}, {sec:.1f} s", flush=True)
                print(f"== {variant} {name} {cell}: mean out-of-fold accuracy {np.mean(accs):.4f}", flush=True)
    return 0


def write_ts(path, series, labels):
    """A small .ts file of these (T, D) series and labels (the outer folds of --nested)."""
    D = series[0].shape[1]
    classes = " ".join(sorted(set(labels)))
    with open(path, "w") as f:
        f.write(f"@problemName nested\n@timeStamps false\n@missing false\n@univariate {str(D == 1).lower()}\n"
                f"@dimensions {D}\n@equalLength false\n@classLabel true {classes}\n@data\n")
        for x, label in zip(series, labels):
            f.write(":".join(",".join(repr(float(v)) for v in x[:, d]) for d in range(D)) + f":{label}\n")


def refit(cfg, epochs):
    """The recipe's members trained on ALL of cfg.data (no fold held out) for `epochs` epochs ->
    the run (its model is the last epoch's)."""
    from bptt.classify_run import ClassifyConfig, ClassifyRun, fit

    run = ClassifyRun(ClassifyConfig(**{**cfg.__dict__, "epochs": epochs, "patience": 0}))
    run.fold = np.full(len(run.train_y), -1)  # member m trains on every series (own = fold != m)
    fit(run, progress=False)
    return run


def outer_folds(name, seed, outer):
    """TRAIN of `name` in `outer` stratified folds drawn from the seed -> (series, labels, y, fold)."""
    from bptt.classify import fold_split
    from bptt.data import read_ts

    series, labels = read_ts(os.path.join(bench.data_dir(), name, f"{name}_TRAIN.ts"))
    labels = [str(v) for v in labels]
    y = np.array([sorted(set(labels)).index(v) for v in labels])
    return series, labels, y, fold_split(y, outer, np.random.default_rng([seed, 7]))


def write_split(tmp, series, labels, ofold, o):
    """The outer-train part (folds != o) and the held-out fold o as .ts files in tmp -> their paths,
    the outer-train indices and the held-out ones."""
    tr, ho = np.flatnonzero(ofold != o), np.flatnonzero(ofold == o)
    p_tr, p_ho = os.path.join(tmp, "tr.ts"), os.path.join(tmp, "ho.ts")
    write_ts(p_tr, [series[i] for i in tr], [labels[i] for i in tr])
    write_ts(p_ho, [series[i] for i in ho], [labels[i] for i in ho])
    return p_tr, p_ho, tr, ho


def heldout_prediction(run, variant):
    """The class each held-out series gets from the variant's chosen ensemble: the mean member
    probability at the best out-of-fold epoch (fit's choice), or for snap-* over its chosen epochs."""
    from bptt.classify import mean_softmax_log

    lg = np.array(run.ho_logits)  # (E, M, n, C)
    if variant.startswith("snap-"):
        _, _, (lo, hi) = snapshot_choice(run, variant)
        e = lg[lo:hi]
        p = np.exp(e - e.max(axis=-1, keepdims=True))
        return (p / p.sum(axis=-1, keepdims=True)).mean(axis=(0, 1)).argmax(axis=1)
    return mean_softmax_log(lg[run.best["epoch"] - 1]).argmax(axis=1)


def nested(name, variant, cell, seed, outer=4, epochs=bench.EPOCHS):
    """Nested cross-validation of a variant on TRAIN (TEST never read): TRAIN in `outer` stratified
    folds; for each, the variant's whole procedure (prepare, fit: its members, its epoch chosen by
    its own inner out-of-fold score, its patch from the outer-train lengths) runs on the other folds
    and its chosen ensemble predicts the held-out fold.
    -> (held-out accuracy over all of TRAIN, mean inner out-of-fold score, seconds)."""
    series, labels, y, ofold = outer_folds(name, seed, outer)
    hits, oofs = 0, []
    without = 0  # select,roll0.5,2: the held-out hits of select,roll0.5, from the same runs
    combo_hits = {}  # combos: each way's held-out hits
    tta_hits = 0  # a rotated variant alone (roll*): its held-out hits over TTA rotations
    t0 = time.perf_counter()
    for o in range(outer):
        with tempfile.TemporaryDirectory() as tmp:
            p_tr, p_ho, tr, ho = write_split(tmp, series, labels, ofold, o)
            lengths = [len(series[i]) for i in tr]
            # round fourteen: each way of COMBOS from the same runs (combos+X: the candidates select,roll0.5,2+X)
            if variant.startswith(("combos", "auto")):
                # combos,rotX (round twenty-one): combos' runs and one more, X as the rotated candidate;
                # near-tta/X is near-tta with it in place of combos' rotated one, from the same runs
                # (AUTO,rotX from round twenty-five: the same with the runs of auto or auto23; X may be
                # several runs, all in place of the rotated one)
                rot = variant.split(",rot", 1)[1] if ",rot" in variant else None
                parts = select_parts(variant.split(",rot", 1)[0] if variant.startswith("auto")
                                     else "select,roll0.5,2" + ("" if rot else variant[len("combos"):]))
                extra = [] if rot is None else rotated_runs(rot)
                runs = [_fold_run(base, name, cell, seed, epochs, lengths, p_tr, p_ho, tmp, o, len(ho), n,
                                  probs=True) for base, n in parts + extra]
                yh = runs[0][3][2]
                ways = combo_probs([r[0] for r in runs[:5]], [r[3] for r in runs[:5]], parts, len(tr))
                if rot:
                    swap = runs[:4] + runs[5:]
                    other = combo_probs([r[0] for r in swap], [r[3] for r in swap], parts[:4] + extra, len(tr))
                    ways[f"near-tta/{rot}"], ways[f"lead-tta/{rot}"] = other["near-tta"], other["lead-tta"]
                for k, p in ways.items():
                    combo_hits[k] = combo_hits.get(k, 0) + int((p.argmax(axis=1) == yh).sum())
                oof, ep, h = runs[max(range(len(parts)), key=lambda i: (runs[i][0], -i))][:3]
            elif variant.startswith("select"):  # the recipe since round ten: a run per candidate, the best inner score
                parts = select_parts(variant)
                runs = [_fold_run(base, name, cell, seed, epochs, lengths, p_tr, p_ho, tmp, o, len(ho), n)
                        for base, n in parts]
                oof, ep, h = runs[max(range(len(runs)), key=lambda i: (runs[i][0], -i))]
                rest = [r for r, (base, n) in zip(runs, parts) if not (base == "recipe" and n == 2)]
                without += rest[max(range(len(rest)), key=lambda i: (rest[i][0], -i))][2]
            else:
                # a rotated variant alone: also its held-out hits over TTA rotations, as --patch auto predicts
                r = _fold_run(variant, name, cell, seed, epochs, lengths, p_tr, p_ho, tmp, o, len(ho),
                              probs=variant.startswith("roll"))
                oof, ep, h = r[:3]
                if len(r) > 3:
                    tta_hits += int((r[3][1].argmax(axis=1) == r[3][2]).sum())
            hits, oofs = hits + h, oofs + [oof]
    if variant == "select,roll0.5,2":
        print(f"nested select,roll0.5 {name} {cell} seed {seed}: held-out accuracy {without / len(y):.4f} "
              "(the same runs without the 2-step candidate)", flush=True)
    if variant.startswith("roll") and not variant.startswith(("combos", "select")):
        print(f"nested {variant} {name} {cell} seed {seed}: held-out accuracy over {TTA} rotations "
              f"{tta_hits / len(y):.4f}", flush=True)
        for mode in REFIT_HITS if variant.endswith(",refit") else ():
            print(f"nested {variant}:{mode} {name} {cell} seed {seed}: held-out accuracy over {TTA} rotations "
                  f"{REFIT_HITS[mode] / len(y):.4f}", flush=True)
            REFIT_HITS[mode] = 0
        for way in list(SCALE_HITS):
            print(f"nested {variant}:{way} {name} {cell} seed {seed}: held-out accuracy over {TTA} rotations "
                  f"{SCALE_HITS.pop(way) / len(y):.4f}", flush=True)
    for k, v in combo_hits.items():
        family = "auto" if variant.startswith("auto") else "combos"  # each way of COMBOS, from the variant's runs
        print(f"nested {family}:{k} {name} {cell} seed {seed}: held-out accuracy {v / len(y):.4f}", flush=True)
    return hits / len(y), float(np.mean(oofs)), time.perf_counter() - t0


# Round fourteen: ways to predict from --patch auto's candidates (each a chosen ensemble with its
# inner out-of-fold score), scored from the same runs. sel: the best inner score (--patch auto);
# avg: the mean probability of all candidates; top2: of the two best inner scores (a tie: the
# earlier); -tta: the rotated candidate predicts by its mean probability over TTA rotations of each
# series (rotated by j T / TTA steps, j = 0 .. TTA-1), being trained on rotations (--roll 0.5).
# Round fifteen: top2u-tta: the rotated candidate alone (with -tta) when its inner score is the
# best, else the mean of the two unrotated candidates with the best inner scores.
# Round sixteen (all with the rotated candidate over TTA rotations): tie-tta: the mean of every
# candidate whose inner score equals the best (sel-tta takes the earlier of them); near-tta: of every
# candidate whose inner score is within one inner series (1 / n_inner) of the best.
# Round nineteen: near2-tta, of every candidate within two inner series of the best.
# Round twenty-one: near-tta/X, near-tta with the rotated candidate trained as ROTATED[X] instead.
ROTATED = {"diff": "roll0.5,diff", "warp": "roll0.5,warp0.1", "meanmax": "roll0.5,meanmax",
           # round twenty-five: one direction, about 96 steps (a third of the patch): (variant, steps)
           "uni96": ("roll0.5,diff,uni", 96),
           # round twenty-six: two rotated candidates, one direction, --pool meanmax, about 32 and 96 steps
           "mm2": [("roll0.5,diff,uni,meanmax", 32), ("roll0.5,diff,uni,meanmax", 96)]}
# Round twenty-two: lead-tta (combo_probs). Round twenty-four: first-tta (combo_probs).
COMBOS = ("sel", "sel-tta", "avg", "avg-tta", "top2", "top2-tta", "top2u-tta", "tie-tta", "near-tta", "near2-tta",
          "lead-tta", "first-tta")
TTA = 8


def combo_probs(oofs, probs, parts, n_inner):
    """Inner scores (each over n_inner series) and (p, p_tta, y) per candidate -> {way: (n, C)
    probabilities} for COMBOS."""
    order = sorted(range(len(oofs)), key=lambda i: (-oofs[i], i))
    out = {}
    for tta in (False, True):
        p = [q[1] if tta and base.startswith("roll") else q[0] for q, (base, _) in zip(probs, parts)]
        t = "-tta" if tta else ""
        out["sel" + t] = p[order[0]]
        out["avg" + t] = np.mean(p, axis=0)
        out["top2" + t] = np.mean([p[i] for i in order[:2]], axis=0)
    rolled = [parts[i][0].startswith("roll") for i in range(len(parts))]
    if rolled[order[0]]:
        out["top2u-tta"] = probs[order[0]][1]
    else:
        out["top2u-tta"] = np.mean([probs[i][0] for i in order if not rolled[i]][:2], axis=0)
    best = oofs[order[0]]
    for way, slack in (("tie-tta", 0.0), ("near-tta", 1.0 / n_inner), ("near2-tta", 2.0 / n_inner)):
        # inner scores are printed and compared rounded to 3 places: a tie is within 5e-4
        pick = [i for i in order if best - oofs[i] <= slack + 5e-4]
        out[way] = np.mean([probs[i][1] if rolled[i] else probs[i][0] for i in pick], axis=0)
    # round twenty-two: lead-tta, near-tta when a rotated candidate's inner score is above every
    # unrotated one's, else near-tta of the unrotated candidates alone
    flat = [i for i in order if not rolled[i]]
    if rolled[order[0]] and oofs[order[0]] > oofs[flat[0]] + 5e-4:
        out["lead-tta"] = out["near-tta"]
    else:
        pick = [i for i in flat if oofs[flat[0]] - oofs[i] <= 1.0 / n_inner + 5e-4]
        out["lead-tta"] = np.mean([probs[i][0] for i in pick], axis=0)
    # round twenty-four: first-tta, the rotated candidate alone (over TTA rotations) when its inner
    # score is at the best, tied or above (the model trained on the most varied series), else near-tta
    first = [i for i in order if rolled[i] and oofs[i] >= best - 5e-4]
    out["first-tta"] = probs[first[0]][1] if first else out["near-tta"]
    return out


def rotations(x, R=TTA):
    """Each series x_i (T, D) rotated by round(j T / R) steps, j = 0 .. R-1 -> R lists (bptt's
    rotate_all, as --tta predicts)."""
    from bptt.classify import rotate_all

    return [rotate_all(x, j, R) for j in range(R)]


REFIT_HITS = {"refit": 0, "both": 0}


def refit_rotated(run, epochs, x, yh, pt, where, label):
    """roll0.5,diff,refit: the run's members trained again on all its series for its E* epochs
    (refit); their held-out hits over TTA rotations, alone and averaged with the run's (pt) ->
    REFIT_HITS."""
    from bptt.classify_run import ClassifyConfig

    r = refit(ClassifyConfig(**{**run.cfg.__dict__, "out": os.path.join(where, "refit")}), epochs)
    q = np.mean([member_probs(r.model, xs) for xs in rotations(x)], axis=0)
    for mode, p in (("refit", q), ("both", (q + pt) / 2)):
        h = int((p.argmax(axis=1) == yh).sum())
        REFIT_HITS[mode] += h
        print(f"  {label}: {mode} held out with {TTA} rotations {h}/{len(yh)}", flush=True)


SCALE_HITS = {}
SCALES = {"scales": (0.5, 2), "fine": (1 / 3, 1 / 4), "third": (1 / 3,), "quarter": (1 / 4,)}  # the other patches, as factors of K


def rotated_scales(base, K, factors, pt, yh, p_tr, p_ho, cell, seed, epochs, where, label):
    """roll0.5,diff,scales (fine): the rotated run again with patches K/2 and 2K (K/3 and K/4); the
    held-out hits over TTA rotations of each and of the mean probabilities of K with each other
    patch, and of all three -> SCALE_HITS."""
    probs = {K: pt}
    for k in (max(1, round(K * f)) for f in factors):
        run, x, _ = probe_and_fit(p_tr, p_ho, base, cell, seed, epochs, k, where, f"{k}")
        probs[k] = tta_probs(run, x)[2]
    ks = sorted(probs)
    ways = {f"patch {k}": probs[k] for k in ks}
    ways.update({f"patches {K}+{k}": (probs[K] + probs[k]) / 2 for k in ks if k != K})
    ways["patches " + "+".join(map(str, ks))] = np.mean([probs[k] for k in ks], axis=0)
    for way, p in ways.items():
        h = int((p.argmax(axis=1) == yh).sum())
        SCALE_HITS[way] = SCALE_HITS.get(way, 0) + h
        print(f"  {label}: {way} held out with {TTA} rotations {h}/{len(yh)}", flush=True)


def member_probs(model, xs):
    """An ensemble's mean member probability on the series xs: (n, C)."""
    from bptt.classify import predict_logits, softmax

    return softmax(predict_logits(model, xs, members=True)).mean(axis=0)  # members (M, n, C) -> (n, C)


def tta_probs(run, x, flip=False):
    """The run's best checkpoint (its chosen epoch) -> its mean member probability on x as the
    epoch was scored (the series as they are), as the candidate predicts (flip, round seventeen:
    the mean with the reversed series'; else the same), and as it predicts averaged over the
    rotations of each series: ((n, C), (n, C), (n, C))."""
    from bptt import checkpoint as ckpt_io

    _, _, weights, _ = ckpt_io.load_checkpoint(ckpt_io.resolve_best(run.cfg.out, required=True))
    run.model.load_state_dict(weights)
    ps = [member_probs(run.model, r) for r in rotations(x)]
    if not flip:
        return ps[0], ps[0], np.mean(ps, axis=0)
    qs = [member_probs(run.model, r) for r in rotations([s[::-1].copy() for s in x])]
    return ps[0], (ps[0] + qs[0]) / 2, (np.mean(ps, axis=0) + np.mean(qs, axis=0)) / 2


# select: bptt's --patch auto of round ten (classify_run.AUTO_STEPS: a run with about 32, 8 and 4
# steps; "recipe" is the 32-step run); --patch auto is select,roll0.5 since round twelve and
# select,roll0.5,2 since round thirteen. select+X: X's settings in every candidate;
# select-N,N,...: other numbers of steps; select,X: select's candidates and X's 32-step run last
# (a tie goes to the earlier candidate).
SELECT_STEPS = (32, 8, 4)


def rotated_runs(rot):
    """ROTATED[rot] as the runs it means, each (variant, steps): a variant alone runs at SELECT_STEPS[0]."""
    r = ROTATED[rot]
    return list(r) if isinstance(r, list) else [r if isinstance(r, tuple) else (r, SELECT_STEPS[0])]


def select_parts(variant):
    """'select', 'select+X', 'select-32,8,4,2' or 'select,X' -> the candidates, each (the variant it
    runs, its number of steps)."""
    if variant.startswith("select+"):
        return [(variant[len("select+"):], n) for n in SELECT_STEPS]
    if variant.startswith("select-"):
        return [("recipe", int(n)) for n in variant[len("select-"):].split(",")]
    # --patch auto since round twenty-six: two rotated candidates, meanmax, 32 and 96 steps; auto25: in round
    # twenty-five, one in one direction at 96 steps; auto23: from round twenty-three to twenty-five, with --diff
    # in both directions at 32 steps
    autos = {"auto": "mm2", "auto25": "uni96", "auto23": "diff"}
    if variant in autos:
        return [("recipe", n) for n in SELECT_STEPS + (2,)] + rotated_runs(autos[variant])
    if variant == "select,roll0.5,2":  # the order --patch auto would train them in: the patches, then the roll
        return [("recipe", n) for n in SELECT_STEPS + (2,)] + [("roll0.5", SELECT_STEPS[0])]
    if variant.startswith("select,roll0.5,2+"):  # combos+X: the same candidates, each with X (the rotated
        x = variant[len("select,roll0.5,2+"):]  # one as the variant roll0.5,X): flip (round seventeen), ep400 (twenty)
        if x == "flipu":  # round eighteen: flip in the unrotated candidates only
            return [("flip", n) for n in SELECT_STEPS + (2,)] + [("roll0.5", SELECT_STEPS[0])]
        return [(x, n) for n in SELECT_STEPS + (2,)] + [(f"roll0.5,{x}", SELECT_STEPS[0])]
    if variant.startswith("select,"):
        return [("recipe", n) for n in SELECT_STEPS] + [(variant[len("select,"):], SELECT_STEPS[0])]
    return [("recipe", n) for n in SELECT_STEPS]


def probe_and_fit(p_tr, p_ho, variant, cell, seed, epochs, K, where, tag="", record=False):
    """The variant's run with patch K on the outer-train file p_tr, in where/cv{tag}, trained ->
    (the run, the held-out series of p_ho standardised as it reads them, their classes); record:
    each epoch's held-out logits kept (run.ho_logits)."""
    from bptt.classify_run import fit, test_data

    probe = prepare(p_tr, variant, cell, seed, 1, K, os.path.join(where, f"probe{tag}"))  # its norm, classes
    x, yh = test_data(probe, p_ho)
    run = prepare(p_tr, variant, cell, seed, epochs, K, os.path.join(where, f"cv{tag}"), heldout=x if record else None)
    fit(run, progress=False)
    return run, x, yh


def _fold_run(variant, name, cell, seed, epochs, lengths, p_tr, p_ho, tmp, o, n_ho, steps=None, probs=False):
    """The variant's run on one outer-train part (with about `steps` recurrent steps, if given)
    -> (inner out-of-fold score, its epoch, held-out hits), and with probs=True (combos) also
    (its held-out probabilities, the same averaged over rotations (tta_probs), the classes)."""
    K = patch_for(variant if steps is None else f"steps{steps}", lengths)
    label = (variant if steps is None else f"{variant}@{steps}") + f" (patch {K})"
    where = os.path.join(tmp, variant if steps is None else f"{variant}@{steps}")  # a directory per candidate
    run, x, yh = probe_and_fit(p_tr, p_ho, variant, cell, seed, epochs, K, where, record=True)
    oof, ep = ((snapshot_choice(run, variant)[:2]) if variant.startswith("snap-")
               else (run.best["val_accuracy"], run.best["epoch"]))
    h = int((heldout_prediction(run, variant) == yh).sum())
    print(f"  {label} {name} seed {seed} outer fold {o}: E* {ep} of {run.epoch}, "
          f"inner out-of-fold {oof:.3f}, held out {h}/{n_ho}", flush=True)
    if probs:
        flip = variant.endswith("flip")
        scored, p, pt = tta_probs(run, x, flip)
        assert int((scored.argmax(axis=1) == yh).sum()) == h  # the best checkpoint is the scored epoch
        if flip:
            print(f"  {label} {name} seed {seed} outer fold {o}: held out over both directions "
                  f"{int((p.argmax(axis=1) == yh).sum())}/{n_ho}", flush=True)
        print(f"  {label} {name} seed {seed} outer fold {o}: held out with {TTA} rotations "
              f"{int((pt.argmax(axis=1) == yh).sum())}/{n_ho}", flush=True)
        if variant.endswith(",refit"):
            refit_rotated(run, ep, x, yh, pt, where, f"{label} {name} seed {seed} outer fold {o}")
        if variant[variant.rfind(",") + 1:] in SCALES:
            rotated_scales(variant[:variant.rfind(",")], K, SCALES[variant[variant.rfind(",") + 1:]], pt, yh, p_tr, p_ho, cell, seed, epochs, where,
                           f"{name} seed {seed} outer fold {o}")
        return oof, ep, h, (p, pt, yh)
    return oof, ep, h


def nested_refit(name, cell, seed, outer=4, epochs=bench.EPOCHS):
    """Nested cross-validation on TRAIN (TEST never read): TRAIN in `outer` stratified folds; on
    each outer-train part the recipe runs (its out-of-fold best epoch E*), then its members are
    refitted on all of that part for E* epochs; the held-out outer fold scores the recipe's
    ensemble, the refitted one, and both together (the mean of 2M members' probabilities).
    -> {mode: held-out accuracy over all of TRAIN}, seconds."""
    from bptt.classify import mean_softmax_log, predict_logits
    from bptt.classify_run import ClassifyConfig, ClassifyRun, fit, load_for_eval, test_data

    series, labels, y, ofold = outer_folds(name, seed, outer)
    hits = {"recipe": 0, "refit": 0, "both": 0}
    t0 = time.perf_counter()
    for o in range(outer):
        with tempfile.TemporaryDirectory() as tmp:
            p_tr, p_ho, tr, ho = write_split(tmp, series, labels, ofold, o)
            K = bench.patch_rule([len(series[i]) for i in tr])
            cfg = ClassifyConfig(data=p_tr, cell=cell, seed=seed, out=os.path.join(tmp, "cv"), epochs=epochs,
                                 **{**bench.SETUP, "patch": K})
            run = fit(ClassifyRun(cfg), progress=False)
            model, _, _, _ = load_for_eval(cfg.out)
            x, yh = test_data(run, p_ho)
            a = predict_logits(model, x, members=True)  # (M, n, C)
            rcfg = ClassifyConfig(**{**cfg.__dict__, "out": os.path.join(tmp, "refit")})
            r = refit(rcfg, run.best["epoch"])
            b = predict_logits(r.model, x, members=True)
            for mode, lg in (("recipe", a), ("refit", b), ("both", np.concatenate([a, b]))):
                hits[mode] += int((mean_softmax_log(lg).argmax(axis=1) == yh).sum())
            print(f"  {name} seed {seed} outer fold {o}: E* {run.best['epoch']}, held out {len(ho)}, "
                  f"recipe {int((mean_softmax_log(a).argmax(1) == yh).sum())}, refit "
                  f"{int((mean_softmax_log(b).argmax(1) == yh).sum())}", flush=True)
    return {k: v / len(y) for k, v in hits.items()}, time.perf_counter() - t0


def stopping(path, patience=(20, 30, 40, 50), cap=None):
    """For each curve of full runs: the best epoch and score (accuracy, then loss, as fit picks
    them) that --patience N would have kept, the epoch it stops at, and the seconds to there;
    cap: as if the runs had --epochs cap (curves longer than that are cut)."""
    curves = [json.loads(line) for line in open(path)]
    for c in curves:
        c["history"] = c["history"][:cap]
    for n in (0,) + tuple(patience):
        cells = []
        for c in curves:
            best = None
            for e, row in enumerate(c["history"], 1):
                score = (row["val_accuracy"], -row["val_loss"])
                if best is None or score > best[0]:
                    best = (score, e)
                if n and e - best[1] >= n:
                    break
            cells.append(f"{c['dataset']} {c['cell']} {c['seed']}: {best[0][0]:.3f} at {best[1]}, "
                         f"stop {e} ({c['history'][e - 1]['seconds']:.0f} s)")
        print(f"patience {n or 'off'}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
