"""Training runs of ``SequenceClassifier``: data, epochs, validation, checkpoints, exact resume.

    RUN/
      latest, ckpt-XXXXXXXX/   the checkpoint after each epoch (``bptt.checkpoint``): weights,
                               optimizer buffers, the training set's statistics, the classes,
                               the config, RNG states, epoch, history
      best/                    a checkpoint of the epoch with the best validation accuracy
                               (ties: the lower validation loss), replaced atomically; with
                               --ensemble M the validation is out of fold on all of TRAIN
      metrics.jsonl            one line per epoch

With ``--patch auto`` (``new_select`` / ``fit_select``) RUN holds one such run per candidate patch
instead, RUN/patch-K/ (and two rotated ones, RUN/patch-K-roll0.5-diff-uni-meanmax/ with the first K and
RUN/patch-K'-roll0.5-diff-uni-meanmax/ with three times its steps: --roll 0.5, --diff, --pool meanmax, one
direction),
trained one after the other, and RUN/select.json (the candidates, then their
scores and the choice); when the last has finished, the best checkpoint of the one with the highest
validation accuracy is copied to RUN/best, which eval, predict and export read as usual (the
rotated candidate's checkpoint keeps its --tta 8).

The epoch is the checkpoint step. Everything that decides the next epoch is in the checkpoint,
so a resumed run continues exactly as if it had not stopped.
"""

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import checkpoint as ckpt_io
from .classify import (AsRead, EnsembleClassifier, ProbabilityMean, RotationTTA, SequenceClassifier, Standardizer, augment, bucket_batches, circular_shift, crop,
                       fold_split, input_dropout, masked_cross_entropy, time_warp, check_dims, encode_labels,
                       natural_key, pad_batch, predict_logits, scores, stratified_split)
from .data import DataError
from .loss import CrossEntropyLoss
from .optim import clip_grad_norm, make_optimizer, make_schedule
from .series_files import read_series

TASK = "classify"
resolve_best = ckpt_io.resolve_best  # RUN -> RUN/best when it exists, else the path as given


@dataclass
class ClassifyConfig:
    data: str = None  # TRAIN file (.ts or .csv)
    test: str = None  # TEST file, evaluated at the end (optional)
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    pool: str = "last"
    patch: int = 1
    diff: bool = False  # first differences as more input features (classify.with_diff)
    dropout: float = 0.0
    batch_size: int = 16
    epochs: int = 60
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "constant"  # the lr of each epoch: constant, step (x0.1 per third), cosine (to 0 at the end)
    weight_decay: float = 0.0  # adam: L2 (wd p added to the gradient); adamw: decoupled, p *= 1 - lr wd per step
    augment: float = 0.0  # strength of classify.augment on the training part (0: off)
    roll: float = 0.0  # classify.circular_shift: rotate each training series by up to this fraction of it (0: off)
    tta: int = 0  # predict (eval, predict, export; not validation) by the mean over this many rotations (needs roll >= 0.5)
    crop: float = 0.0  # classify.crop: train on random windows of this fraction of each series (0: off)
    warp: float = 0.0  # strength of classify.time_warp on the training part (0: off)
    input_dropout: float = 0.0  # classify.input_dropout of the training batches (0: off)
    patience: int = 0  # stop after this many epochs without a better validation score (0: all epochs)
    ensemble: int = 1  # members; > 1: member m holds out fold m of TRAIN (instead of val_fraction)
    clip: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    dtype: str = "float32"
    out: str = None


AUTO_STEPS = (32, 8, 4, 2)  # --patch auto: one run with about this many recurrent steps per series each
AUTO_ROLL = 0.5  # ... and, unless --roll is given, rotated ones (--roll AUTO_ROLL),
AUTO_TTA = 8  # ... which predicts by its mean over AUTO_TTA rotations (--tta)
AUTO_DIFF = True  # ... and reads first differences as well (--diff)
AUTO_FINER = 3  # ... with the first candidate's steps, and again with about this many times as many
AUTO_ONE_WAY = True  # ... in one direction (--bidirectional off)
AUTO_ROTATED_POOL = "meanmax"  # ... pooling the mean and the max of the steps (--pool)
AUTO_MIX = 1  # the candidates within this many validation series of the best score predict by their mean
SELECT = "select.json"


def auto_patches(lengths, steps=AUTO_STEPS):
    """The candidate patches of --patch auto: K = ceil(median length / N) for each N of steps,
    without repeats, in that order (most steps first)."""
    med = int(np.median(lengths))
    out = []
    for n in steps:
        k = max(1, -(-med // n))
        if k not in out:
            out.append(k)
    return out


def auto_candidates(lengths, roll=0.0, steps=AUTO_STEPS):
    """The candidates of --patch auto, in order: {"patch": K, "dir": "patch-K"} for each K of
    ``auto_patches``, then, when ``roll`` is 0 (no --roll given), rotated ones, with the first K and
    with K' = ceil(median length / (AUTO_FINER * steps[0])) (three times its steps; one candidate
    when K' = K), each with {"roll": AUTO_ROLL, "tta": AUTO_TTA, "diff": AUTO_DIFF, "bidirectional":
    False, "pool": AUTO_ROTATED_POOL} in "patch-K-roll0.5-diff-uni-meanmax" (circular shifts: a
    series that is a closed outline, whose starting point means nothing, learns from every rotation,
    and is predicted by the mean over AUTO_TTA of them; with its first differences, which say how the
    outline turns wherever it starts; one direction, at half the work, learns it as well once every
    rotation is seen; two scales of steps, which the mix of near scores can average)."""
    patches = auto_patches(lengths, steps)
    out = [{"patch": k, "dir": f"patch-{k}"} for k in patches]
    if not roll:
        for k in auto_patches(lengths, (steps[0], AUTO_FINER * steps[0])):
            out.append({"patch": k, "roll": AUTO_ROLL, "tta": AUTO_TTA, "diff": AUTO_DIFF,
                        **({"bidirectional": False} if AUTO_ONE_WAY else {}), "pool": AUTO_ROTATED_POOL,
                        "dir": f"patch-{k}-roll{AUTO_ROLL:g}" + ("-diff" if AUTO_DIFF else "")
                        + ("-uni" if AUTO_ONE_WAY else "") + f"-{AUTO_ROTATED_POOL}"})
    return out


def describe(c):
    """A candidate as the messages name it: 'patch 14' or 'patch 5, --roll 0.5, --tta 8, --diff, one
    direction, --pool meanmax'."""
    return (f"patch {c['patch']}" + (f", --roll {c['roll']:g}" if "roll" in c else "")
            + (f", --tta {c['tta']}" if c.get("tta", 0) > 1 else "") + (", --diff" if c.get("diff") else "")
            + (", one direction" if c.get("bidirectional") is False else "")
            + (f", --pool {c['pool']}" if "pool" in c else ""))


def choose(scores):
    """The index of the candidate with the highest validation accuracy; ties go to the first (the
    one with more steps)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def load_labelled(path, what):
    """-> (series, labels); a file without labels or with an empty series is an error."""
    series, labels = read_series(path)
    if labels is None:
        raise DataError(f"{path}: no class labels ({what} needs a label per series)")
    return series, labels


class ClassifyRun:
    """One run: config, data split, model, optimizer, epoch, best so far."""

    def __init__(self, cfg, meta=None):
        self.cfg = cfg
        series, labels = load_labelled(cfg.data, "training")
        if meta is None:
            self.classes = sorted(set(labels), key=natural_key)
            if len(self.classes) < 2:
                raise DataError(f"{cfg.data}: only one class ({self.classes[0]}); nothing to classify")
            self.D = series[0].shape[1]
        else:
            self.classes, self.D = meta["classes"], int(meta["input_size"])
        check_dims(series, self.D, cfg.data)
        y = encode_labels(labels, self.classes, cfg.data)
        split_rng = np.random.default_rng([cfg.seed, 1])
        if cfg.ensemble > 1:  # every series trains all members but one, and validates that one
            self.fold = fold_split(y, cfg.ensemble, split_rng)
            tr, va = np.arange(len(y)), np.array([], np.int64)
        else:
            self.fold = None
            tr, va = stratified_split(y, cfg.val_fraction, split_rng)
        self.norm = (Standardizer.fit([series[i] for i in tr], cfg.diff) if meta is None
                     else Standardizer(meta["norm_mean"], meta["norm_std"], cfg.diff))
        dt = np.dtype(cfg.dtype)
        z = self.norm.transform(series, dt)
        self.train_x, self.train_y = [z[i] for i in tr], y[tr]
        self.val_x, self.val_y = [z[i] for i in va], y[va]
        self.model = build_model(cfg, self.D, len(self.classes))
        # weight_decay always given: 0 means none, also for adamw (whose own default is 0.01)
        self.opt = make_optimizer(cfg.optimizer, self.model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss = CrossEntropyLoss()
        self.rng = np.random.default_rng([cfg.seed, 2])  # batch order
        self.drop_rng = np.random.default_rng([cfg.seed, 11])  # --input-dropout masks
        self.epoch, self.best, self.history, self.elapsed = 0, None, [], 0.0

    # -- one epoch
    def train_epoch(self):
        total, n = 0.0, 0
        self.opt.lr = make_schedule(self.cfg.schedule, self.cfg.lr, self.cfg.epochs)(self.epoch)  # per epoch
        for idx in bucket_batches([len(s) for s in self.train_x], self.cfg.batch_size, self.rng):
            x, lengths = pad_batch(self._batch_series(idx), range(len(idx)), self.model.dtype)
            x = input_dropout(x, self.cfg.input_dropout, self.drop_rng)  # (T, B, D)
            self.model.zero_grad()
            if self.fold is None:
                logits = self.model(x, lengths)  # (B, C)
                loss = self.loss(logits, self.train_y[idx])
                dlogits = self.loss.backward()
            else:  # member m learns from the series outside its fold, and reads only those
                own = self.fold[idx][None, :] != np.arange(self.cfg.ensemble)[:, None]  # (M, B)
                logits = self.model(x, lengths, rows=own)  # (M, B, C)
                loss, dlogits = masked_cross_entropy(logits, self.train_y[idx], own.astype(logits.dtype))
            if not np.isfinite(loss):
                raise DataError(f"the loss became {loss} at epoch {self.epoch + 1}; training stopped "
                                f"(try a lower --lr); the last checkpoint is kept")
            self.update(dlogits)
            total, n = total + loss * len(idx), n + len(idx)
        self.epoch += 1
        return total / n

    def update(self, dlogits):
        """The batch's backward from dlogits (the forward's cache), gradient clipping, one
        optimizer step."""
        self.model.backward(dlogits, input_grad=False)  # the series are data: no dx
        if self.cfg.clip > 0:
            clip_grad_norm(self.model.grads, self.cfg.clip)
        self.opt.step()

    def _batch_series(self, idx):
        """The training series at idx, or random variants of them with roll, crop, warp or augment
        (in that order; drawn from the batch-order RNG, which the checkpoint keeps, so a resumed
        run draws the same)."""
        c = self.cfg
        out = []
        for i in idx:
            x = self.train_x[i]
            if c.roll:
                x = circular_shift(x, c.roll, self.rng)
            if c.crop:
                x = crop(x, c.crop, self.rng)
            if c.warp:
                x = time_warp(x, c.warp, self.rng)
            if c.augment:
                x = augment(x, c.augment, self.rng)
            out.append(x)
        return out

    def validate(self):
        """(accuracy, loss) on the validation part, or the training set when there is none; an
        ensemble: each series scored by the one member that did not train on it (out of fold)."""
        if self.fold is not None:  # member m predicts the series of fold m, and only those
            logits = np.empty((len(self.fold), len(self.classes)))  # (N, C)
            for m, member in enumerate(self.model.members):
                idx = np.flatnonzero(self.fold == m)
                logits[idx] = predict_logits(member, [self.train_x[i] for i in idx])
            s = scores(logits, self.train_y, len(self.classes))
            return s["accuracy"], s["loss"]
        x, y = (self.val_x, self.val_y) if len(self.val_y) else (self.train_x, self.train_y)
        s = scores(predict_logits(self.model, x), y, len(self.classes))
        return s["accuracy"], s["loss"]

    @property
    def val_series(self):
        """The number of series ``validate`` scores."""
        return len(self.val_y) if self.fold is None and len(self.val_y) else len(self.train_y)

    def _dropout_rngs(self):
        return [m.rnn.rng for m in getattr(self.model, "members", [self.model])]

    # -- checkpoints
    def meta(self):
        return {
            "task": TASK, "config": asdict(self.cfg), "classes": self.classes, "input_size": self.D,
            "norm_mean": self.norm.mean.tolist(), "norm_std": self.norm.std.tolist(),
            "optimizer": {k: v for k, v in self.opt.state_dict(copy=False).items() if k != "buffers"},
            "rng": {"batches": self.rng.bit_generator.state, "input_dropout": self.drop_rng.bit_generator.state,
                    "dropout": [r.bit_generator.state for r in self._dropout_rngs()]},
            "best": self.best, "history": self.history, "elapsed": self.elapsed,
        }

    def tensors(self):
        buffers = self.opt.state_dict(copy=False)["buffers"]  # written out at once
        return {f"optim.{b}.{p}": a for b, d in buffers.items() for p, a in d.items()}

    def save(self, best=False):
        path = ckpt_io.save_checkpoint(self.cfg.out, self.epoch, self.model.params, self.tensors(),  # written at once
                                       self.meta())
        if best:
            ckpt_io.copy_to_best(path, self.cfg.out)
        return path

    def restore(self, meta, weights, tensors, where):
        try:
            self.model.load_state_dict(weights)
            buffers = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, b, p = k.split(".", 2)
                    buffers.setdefault(b, {})[p] = v
            self.opt.load_state_dict({**meta["optimizer"], "buffers": buffers})
            self.rng.bit_generator.state = meta["rng"]["batches"]
            if "input_dropout" in meta["rng"]:  # (checkpoints from before --input-dropout have none)
                self.drop_rng.bit_generator.state = meta["rng"]["input_dropout"]
            states = meta["rng"]["dropout"]
            for r, state in zip(self._dropout_rngs(), [states] if isinstance(states, dict) else states):
                r.bit_generator.state = state
            self.epoch, self.best = int(meta["step"]), meta["best"]
            self.history, self.elapsed = list(meta["history"]), float(meta["elapsed"])
        except (ValueError, TypeError, KeyError) as e:
            raise ckpt_io.CheckpointError(f"{where}: the training state does not fit: {e}") from None


def build_model(cfg, D, C):
    """The run's model: a SequenceClassifier, or an EnsembleClassifier of cfg.ensemble of them, reading
    D features (2D with cfg.diff)."""
    D = 2 * D if cfg.diff else D
    kw = dict(cell=cfg.cell, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, bidirectional=cfg.bidirectional,
              dropout=cfg.dropout, pool=cfg.pool, dtype=cfg.dtype, seed=cfg.seed, patch=cfg.patch)
    if cfg.ensemble > 1:
        return EnsembleClassifier(D, C, members=cfg.ensemble, **kw)
    return SequenceClassifier(D, C, **kw)


def is_classify_run(path):
    if is_select_run(path):
        return True
    try:
        _, meta, _, _ = ckpt_io.load_checkpoint(path)
    except (ckpt_io.CheckpointError, OSError):
        return False
    return meta.get("task") == TASK


def new_run(cfg):
    _check_new(cfg)
    if not 1 <= cfg.ensemble <= 50:
        raise ValueError(f"--ensemble must be 1..50 members, got {cfg.ensemble}")
    if cfg.schedule not in ("constant", "step", "cosine"):
        raise ValueError(f"--schedule must be constant, step or cosine, got {cfg.schedule!r}")
    if not 0.0 <= cfg.crop < 1.0:
        raise ValueError(f"--crop must be a fraction of the series in (0, 1), got {cfg.crop}")
    if not 0.0 <= cfg.roll <= 1.0:
        raise ValueError(f"--roll must be a fraction of the series in [0, 1], got {cfg.roll}")
    if cfg.tta < 0:
        raise ValueError(f"--tta must be a number of rotations >= 0, got {cfg.tta}")
    if cfg.tta > 1 and cfg.roll < 0.5:
        raise ValueError("--tta averages over rotations of the whole series: it needs a model trained on "
                         "every rotation, --roll 0.5 (or more)")
    if not 0.0 <= cfg.warp <= 1.0:
        raise ValueError(f"--warp must be in [0, 1] (the spread of the log speed of time), got {cfg.warp}")
    if not 0.0 <= cfg.input_dropout < 1.0:
        raise ValueError(f"--input-dropout must be a probability in [0, 1), got {cfg.input_dropout}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
    run = ClassifyRun(cfg)
    if cfg.test:
        test_data(run, cfg.test)  # check TEST before any time is spent
    return run


def mix(scores, n):
    """The candidates that predict together: the indices (in candidate order) of every score within
    AUTO_MIX series of the best, each score an accuracy over the same n validation (or
    out-of-fold) series; n None (a selection from before the mix): the best alone (``choose``)."""
    if not n:
        return [choose(scores)]
    best = max(scores)
    return [i for i, v in enumerate(scores) if round((best - v) * n) <= AUTO_MIX]


def is_select_run(path):
    return os.path.isfile(os.path.join(path, SELECT))


def _check_new(cfg):
    if cfg.data is None:
        raise ValueError("--task classify needs --data TRAIN (a .ts or .csv file)")
    if cfg.out is None:
        cfg.out = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + "-classify")
    if is_select_run(cfg.out) or ckpt_io.holds_checkpoints(cfg.out):
        raise ValueError(f"{cfg.out} already holds a run; choose another --out or --resume it")


def _write_select(out, sel):
    path = os.path.join(out, SELECT)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(sel, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def read_select(out):
    try:
        with open(os.path.join(out, SELECT), encoding="utf-8") as f:
            sel = json.load(f)
        ClassifyConfig(**sel["config"])
        [(int(c["patch"]), float(c.get("roll", 0.0))) for c in sel["candidates"]]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ckpt_io.CheckpointError(f"{os.path.join(out, SELECT)}: not a readable patch selection: {e}") from None
    return sel


def new_select(cfg, steps=AUTO_STEPS):
    """--patch auto: check the config and the data (one ``new_run`` of the first candidate), then
    RUN/select.json with the candidates (``auto_candidates`` of the TRAIN lengths). cfg.patch is
    ignored. -> the selection (a dict), to train with ``fit_select``."""
    _check_new(cfg)
    if cfg.ensemble == 1 and cfg.val_fraction == 0:
        raise ValueError("--patch auto chooses by the validation score: it needs --val-fraction > 0 or --ensemble M")
    series, _ = load_labelled(cfg.data, "training")
    cands = auto_candidates([len(s) for s in series], cfg.roll, steps)
    first = ClassifyConfig(**{**asdict(cfg), "patch": cands[0]["patch"], "out": os.path.join(cfg.out, cands[0]["dir"])})
    new_run(first)  # every check of a run (options, TRAIN, TEST) before anything is written
    os.makedirs(cfg.out, exist_ok=True)
    sel = {"task": TASK, "config": {**asdict(cfg), "patch": None}, "steps": list(steps),
           "candidates": cands, "chosen": None}
    _write_select(cfg.out, sel)
    return sel


def fit_select(out, epochs=None, progress=True, jobs=1):
    """Train (or resume) each candidate of the patch selection in RUN=out, then copy the best
    checkpoint of the one with the highest validation accuracy to RUN/best. epochs: a new --epochs
    for every candidate. jobs: candidates trained at a time, each in its own process with one
    thread (1: one after the other here); each trains as it would alone, so the results are the
    same. -> the selection, with each candidate's best epoch and scores and the chosen index."""
    sel = read_select(out)
    if epochs is not None:
        sel["config"]["epochs"] = epochs
    cands = sel["candidates"]

    def done(i, result):
        cands[i]["best"], cands[i]["trained"] = result
        _write_select(out, {**sel, "chosen": None})

    if jobs > 1 and len(cands) > 1:
        import multiprocessing
        import queue

        from .progress import CandidatesBar

        finished = queue.Queue()  # (index, best, error) as each candidate ends
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent's numba threads may be running
        events = ctx.Queue() if progress else None  # (index, epoch, best accuracy) from the workers
        bar = CandidatesBar([describe(c) for c in cands], sel["config"]["epochs"], enabled=progress)
        # leaving the block in any way (an error, Ctrl-C) terminates the workers at once; what they
        # saved stays (each checkpoint is written whole or not at all) and --resume goes on from it
        try:
            with _sigterm_stops(out), ctx.Pool(min(jobs, len(cands)), initializer=_worker_init,
                                               initargs=(events,)) as pool:
                # the rolled candidate first: it trains longest (its best epochs come late), and the
                # others then share the remaining workers (the results do not depend on the order)
                for i in sorted(range(len(cands)), key=lambda i: "roll" not in cands[i]):
                    c = cands[i]
                    pool.apply_async(_fit_candidate, (out, c, sel["config"], False, i),
                                     callback=lambda result, i=i: finished.put((i, result, None)),
                                     error_callback=lambda e, i=i: finished.put((i, None, e)))
                for _ in cands:
                    while True:
                        try:
                            i, result, error = finished.get(timeout=0.2)
                            break
                        except queue.Empty:
                            _drain(events, bar)
                    if error is not None:
                        raise error
                    _drain(events, bar)
                    done(i, result)
                    bar.done(i, f"{describe(cands[i])} finished: {trained_line(cands[i])}")
        finally:
            bar.close()
    else:
        for i, c in enumerate(cands):
            if progress:
                print(f"candidate {i + 1} of {len(cands)}: {describe(c)} ({os.path.join(out, c['dir'])})",
                      file=sys.stderr)
            done(i, _fit_candidate(out, c, sel["config"], progress))
    scores = [c["best"]["val_accuracy"] for c in cands]
    k = choose(scores)
    ckpt_io.copy_to_best(ckpt_io.best_dir(os.path.join(out, cands[k]["dir"])), out)
    ns = {c["best"].get("val_series") for c in cands}
    sel["chosen"], sel["mixed"] = k, mix(scores, ns.pop() if len(ns) == 1 else None)
    _write_select(out, sel)
    return sel


def trained_line(c):
    """'best epoch E of N (S s), validation accuracy A': a trained candidate of the selection."""
    b, t = c["best"], c.get("trained")
    of = f" of {t['epochs']} ({t['seconds']:.1f} s)" if t else ""  # (none in a selection an older bptt wrote)
    return f"best epoch {b['epoch']}{of}, validation accuracy {b['val_accuracy']:.4f}"


class Terminated(KeyboardInterrupt):
    """SIGTERM to a --jobs selection: args[0] is RUN, to resume."""


@contextlib.contextmanager
def _sigterm_stops(out):
    """While --jobs workers train (in the main thread): SIGTERM raises Terminated, so leaving the
    Pool's block stops the workers with the parent. (Killed outright, the parent would leave them
    training on in RUN until each finished its candidate and its result met a broken pipe.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(out)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _drain(events, bar):
    """The workers' epoch reports so far (--jobs) -> the progress bar."""
    import queue

    while events is not None:
        try:
            bar.epoch(*events.get_nowait())
        except queue.Empty:
            return


_EVENTS = None  # in a --jobs worker with progress: the queue of (candidate, epoch, best accuracy)


def _fit_candidate(out, c, config, progress, index=None):
    """Train (or resume) candidate c (number ``index``) of the selection in RUN=out -> (its best
    epoch and scores, {"epochs": trained, "seconds": its training time}); in a --jobs worker with
    progress, each epoch is reported to the parent's bar."""
    path = os.path.join(out, c["dir"])
    if ckpt_io.holds_checkpoints(path):
        run = resume_run(path, config["epochs"])
    else:
        run = ClassifyRun(ClassifyConfig(**{**config, "patch": c["patch"], "roll": c.get("roll", config["roll"]),
                                            "tta": c.get("tta", config.get("tta", 0)),
                                            "diff": c.get("diff", config.get("diff", False)),
                                            "bidirectional": c.get("bidirectional", config["bidirectional"]),
                                            "pool": c.get("pool", config["pool"]),
                                            "out": path}))
    report = None if _EVENTS is None else (lambda r: _EVENTS.put((index, r.epoch, r.best["val_accuracy"])))
    fit(run, progress, on_epoch=report)
    return run.best, {"epochs": run.epoch, "seconds": round(run.elapsed, 3)}


def _worker_init(events=None):
    """A --jobs worker: one thread for the compiled loops (the others run in the other workers),
    freed memory kept for reuse (``memory.keep_freed_memory``), Ctrl-C left to the parent, which
    stops the workers (one message, not one per process), and the queue its epochs are reported
    to (None: no progress shown)."""
    import signal

    import numba

    from .memory import keep_freed_memory

    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    numba.set_num_threads(1)
    keep_freed_memory()  # (a worker is bptt's own process)
    _EVENTS = events


def resume_run(path, epochs=None):
    ckpt, meta, weights, tensors = ckpt_io.load_checkpoint(path)
    if meta.get("task") != TASK:
        raise ValueError(f"{path} is not a classify run")
    known = {f.name for f in fields(ClassifyConfig)}
    cfg = ClassifyConfig(**{k: v for k, v in meta["config"].items() if k in known})
    cfg.out = os.path.dirname(ckpt)
    if epochs is not None:
        cfg.epochs = epochs
    run = ClassifyRun(cfg, meta)
    run.restore(meta, weights, tensors, ckpt)
    _rewrite_metrics(run)  # the log as of the checkpoint: no line of an epoch that will be redone
    return run


def _rewrite_metrics(run):
    path = os.path.join(run.cfg.out, "metrics.jsonl")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in run.history)
    os.replace(tmp, path)


def test_data(run, path):
    """The standardised series and class indices of a labelled file for this run's model."""
    series, labels = load_labelled(path, "evaluation")
    check_dims(series, run.D, path)
    return run.norm.transform(series, run.model.dtype), encode_labels(labels, run.classes, path)


def fit(run, progress=True, on_epoch=None):
    """Train up to cfg.epochs (or until --patience stops it), saving after every epoch and the best
    one in RUN/best; on_epoch(run) after each epoch is saved."""
    log = open(os.path.join(run.cfg.out, "metrics.jsonl"), "a") if _ensure(run.cfg.out) else None
    try:
        while run.epoch < run.cfg.epochs and not stops(run):
            t0 = time.perf_counter()
            train_loss = run.train_epoch()
            lr = run.opt.lr
            val_acc, val_loss = run.validate()
            run.elapsed += time.perf_counter() - t0
            better = run.best is None or (val_acc, -val_loss) > (run.best["val_accuracy"], -run.best["val_loss"])
            if better:
                run.best = {"epoch": run.epoch, "val_accuracy": val_acc, "val_loss": val_loss,
                            "val_series": run.val_series}
            row = {"epoch": run.epoch, "lr": lr, "train_loss": train_loss, "val_accuracy": val_acc,
                   "val_loss": val_loss, "seconds": round(run.elapsed, 3)}
            run.history.append(row)
            run.save(best=better)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if on_epoch is not None:
                on_epoch(run)
            if progress:
                print(f"epoch {run.epoch}/{run.cfg.epochs}  train loss {train_loss:.4f}  "
                      f"val accuracy {val_acc:.3f}  val loss {val_loss:.4f}" + ("  (best)" if better else ""),
                      file=sys.stderr)
            if stops(run):
                if progress:
                    print(f"stopped: no better validation score in {run.cfg.patience} epochs (--patience)",
                          file=sys.stderr)
                break
    finally:
        log.close()
    return run


def stops(run):
    """--patience N: the best epoch (by validation accuracy, then loss) is N or more epochs old."""
    return run.cfg.patience > 0 and run.best is not None and run.epoch - run.best["epoch"] >= run.cfg.patience


def _ensure(d):
    os.makedirs(d, exist_ok=True)
    return True


def load_for_eval(path):
    """RUN (its best checkpoint) or a checkpoint directory -> (model, norm, classes, meta); a run
    with --tta R (R > 1) predicts by the mean over R rotations: the model is its RotationTTA. A
    --patch auto RUN whose selection mixes candidates (select.json's "mixed") predicts by their
    mean probability: the model is a ProbabilityMean of each one's best checkpoint (RUN/best is the
    best-scoring one's), and meta["mixed"] names them."""
    if is_select_run(path):
        if ckpt_io.best_dir(path) is None:
            raise ckpt_io.CheckpointError(f"{path}: the patch selection has not finished (no RUN/best yet); "
                                          f"resume it: bptt train --resume {path}")
        sel = read_select(path)
        if len(sel.get("mixed") or []) > 1:
            return _load_mix(path, sel)
    return _with_tta(*_load_one(resolve_best(path)))


def _with_tta(model, norm, classes, meta):
    tta = int(meta["config"].get("tta", 0))
    return (RotationTTA(model, tta) if tta > 1 else model), norm, classes, meta


def _load_mix(path, sel):
    """The mixed candidates of a selection -> (ProbabilityMean, norm, classes, the best one's meta)."""
    loaded = [_with_tta(*_load_one(resolve_best(os.path.join(path, sel["candidates"][i]["dir"]))))
              for i in sel["mixed"]]
    _, norm, classes, meta = loaded[sel["mixed"].index(sel["chosen"])]  # the best is always in the mix
    for _, n, c, m in loaded:
        if c != classes or n.input_size != norm.input_size:
            raise ckpt_io.CheckpointError(f"{m['_path']}: its classes or features differ from the other "
                                          f"candidates' of {path}; they cannot predict together")
    meta = {**meta, "_path": os.path.join(path, "best"),
            "mixed": [describe(sel["candidates"][i]) for i in sel["mixed"]]}
    norms = []  # each part's standardisation; equal ones as one object, applied once (in ONNX too)
    for _, n, _, _ in loaded:
        norms.append(next((u for u in norms if u.diff == n.diff and np.array_equal(u.mean, n.mean)
                           and np.array_equal(u.std, n.std)), n))
    models = [m for m, _, _, _ in loaded]
    if len({id(n) for n in norms}) == 1:  # one standardisation for all: once, before the parts
        return ProbabilityMean(models), norm, classes, meta
    # each part its own (--patch auto's rotated candidate reads first differences too)
    return ProbabilityMean(models, norms), AsRead(norm.input_size), classes, meta


def _load_one(path):
    """One checkpoint -> (its model in eval mode, norm, classes, meta)."""
    ckpt, meta, weights, _ = ckpt_io.load_checkpoint(path)
    if meta.get("task") != TASK:
        raise ValueError(f"{path} is not a classify run")
    c = meta["config"]
    known = {f.name for f in fields(ClassifyConfig)}
    cfg = ClassifyConfig(**{k: v for k, v in c.items() if k in known})
    cfg.dropout, cfg.seed = 0.0, None
    model = build_model(cfg, int(meta["input_size"]), len(meta["classes"]))
    try:
        model.load_state_dict(weights)
    except (ValueError, TypeError) as e:
        raise ckpt_io.CheckpointError(f"{ckpt}: weights do not fit the model config: {e}") from None
    model.eval()
    meta["_path"] = ckpt
    return model, Standardizer(meta["norm_mean"], meta["norm_std"], cfg.diff), meta["classes"], meta


def evaluate_file(path, run_path):
    """Scores of a run's best model on a labelled file (dict from ``classify.scores``)."""
    model, norm, classes, meta = load_for_eval(run_path)
    series, labels = load_labelled(path, "evaluation")
    check_dims(series, int(meta["input_size"]), path)
    y = encode_labels(labels, classes, path)
    logits = predict_logits(model, norm.transform(series, model.dtype))
    return scores(logits, y, len(classes)), classes, meta


def predict_file(path, run_path):
    """A label per series of the file (labels in it, if any, are not read)."""
    model, norm, classes, meta = load_for_eval(run_path)
    series, _ = read_series(path)
    check_dims(series, int(meta["input_size"]), path)
    logits = predict_logits(model, norm.transform(series, model.dtype))
    return [classes[k] for k in logits.argmax(axis=1)]
