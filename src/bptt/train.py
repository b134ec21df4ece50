"""The training loop: truncated BPTT over B parallel streams, with evaluation, samples,
checkpoints, exact resume, Ctrl-C and NaN handling.

    for each step:  chunk (T, B) -> model forward from the carried state -> cross-entropy
                    -> backward (no gradient into the previous chunk) -> clip -> lr schedule
                    -> optimizer step -> log; every eval_every: validate and sample;
                    every checkpoint_every and at the end: checkpoint; at a validation better
                    than every one before (the last one at the end included): the checkpoint
                    RUN_DIR/best.

Everything that decides the next step (weights, optimizer buffers, carried state, data
position, dropout RNG, step) is in the checkpoint, so a resumed run continues bit for bit.

Under an MPI launcher (``bptt.distributed``) rank r of N trains on its block of the B streams,
the gradients (and the loss, the Ctrl-C flag, the clock) are averaged in one Allreduce per step,
and every rank takes the same step; rank 0 alone prints, logs and writes checkpoints, which hold
the carried states of all ranks, so they resume on any number of ranks.
"""

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import checkpoint as ckpt_io
from . import distributed as dist
from .data import Batches, DataError, Vocab, default_corpus, load_text, prepare
from .loss import cross_entropy_backward, cross_entropy_forward
from .memory import check_mode
from .model import CharModel, ModelConfig
from .optim import (OPTIMIZERS, clip_grad_norm, clip_grad_value, cosine_to_budget, make_optimizer,
                    make_schedule)

LN2 = math.log(2.0)
SCHEDULES = ("constant", "step", "cosine")
CHECK_EVERY = 100  # steps between two comparisons of the weights across ranks (MPI)


class TrainingError(RuntimeError):
    """Training stopped on a fault (NaN/Inf); the message says what and where the last good
    checkpoint is."""


@dataclass
class TrainConfig:
    data: str = None  # None: the default corpus (the Python standard library's source)
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    embedding_dim: int = 64
    dropout: float = 0.0
    seq_len: int = 64
    batch_size: int = 32
    steps: int = None  # None: train for ``minutes``
    minutes: float = None
    optimizer: str = "adam"
    lr: float = 2e-3
    schedule: str = "constant"  # "step" needs steps; "cosine" decays to the end of steps or minutes
    warmup: int = 0  # warm-up steps of "cosine"
    clip: float = 5.0  # max global gradient norm; 0 = off
    clip_value: float = 0.0  # clamp each gradient entry to +-clip_value; 0 = off
    val_fraction: float = 0.1
    eval_every: int = 200
    eval_batches: int = 20  # validation chunks per evaluation (0 = the whole split)
    sample_length: int = 200
    checkpoint_every: int = 500
    seed: int = 0
    dtype: str = "float32"
    memory: str = "full"  # "sqrt": bptt.memory's checkpointed BPTT (any seq_len in less memory)
    out: str = None
    preset: str = None  # the name of the preset (bptt.presets) these settings started from

    def model_config(self, vocab_size):
        return ModelConfig(vocab_size, self.cell, self.hidden_size, self.num_layers,
                           self.embedding_dim, self.dropout)

    def validate(self):
        def positive(name, v, allow_zero=False):
            if v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or (v < 0 if allow_zero else v <= 0):
                raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")

        for name in ("hidden_size", "num_layers", "embedding_dim", "seq_len", "batch_size",
                     "steps", "minutes", "eval_every", "checkpoint_every", "lr"):
            positive(name.replace("_", "-"), getattr(self, name))
        for name in ("clip", "clip_value", "warmup", "eval_batches", "sample_length"):
            positive(name.replace("_", "-"), getattr(self, name), allow_zero=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val-fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give --steps or --minutes")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "step" and self.steps is None:
            raise ValueError("--schedule step needs --steps")
        self.model_config(1)  # checks cell, dropout
        check_mode(self.memory)


# ----------------------------------------------------------------------------- one step
def train_step(model, x, y, state, opt, cfg, reduce=None):
    """One truncated-BPTT step on chunk x, y (T, B). Returns loss, grad norm, new state.
    ``reduce(grads, loss) -> loss`` (MPI) turns this rank's gradient and loss into the whole
    batch's before clipping."""
    logits, state = model.forward(x, state)  # (T, B, V)
    loss, cache = cross_entropy_forward(logits, y)
    model.zero_grad()
    model.backward(cross_entropy_backward(cache))
    if reduce is not None:
        loss = reduce(model.grads, loss)
    norm = grad_norm(model.grads) if not cfg.clip else clip_grad_norm(model.grads, cfg.clip)
    if cfg.clip_value:
        clip_grad_value(model.grads, cfg.clip_value)
    return loss, norm, state


def prepare_kernels(model, say=None):
    """Compile (or load from numba's on-disk cache) the kernels a training step runs, on a
    batch of 2 x 2 tokens, before the clock starts: the first run on a machine spends tens of
    seconds here, later runs well under one. ``say`` (if given) hears about it when it takes
    longer than a second. The model is left as it was: its dropout stream is put back where it
    was, and its gradients zeroed (every step zeroes them anyway)."""
    import threading

    def announce():
        say("compiling bptt's kernels (the first run on this machine; about 30 s, cached afterwards) ...")

    timer = threading.Timer(1.0, announce) if say else None
    if timer:
        timer.daemon = True
        timer.start()
    t = time.perf_counter()
    was, dropout_state = model.training, model.rnn.rng.bit_generator.state
    model.train()  # a backward needs a train-mode forward
    try:
        logits, _ = model.forward(np.zeros((2, 2), np.int64))
        model.backward(np.zeros_like(logits))
    finally:
        model.zero_grad()
        model.rnn.rng.bit_generator.state = dropout_state
        model.train(was)
        if timer:
            timer.cancel()
    took = time.perf_counter() - t
    if say and took > 1.0:
        say(f"kernels ready in {took:.0f} s")
    return took


def grad_norm(grads):
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def evaluate(model, batches, max_chunks=0, streams=None):
    """Mean cross-entropy (nats/char) over the first ``max_chunks`` chunks (0 = all), with the
    state carried from chunk to chunk as in training, dropout off. ``streams`` (MPI): this
    rank's slice of the streams; the sums of all ranks are added up."""
    if batches is None:
        return float("nan")
    was = model.training
    model.eval()  # dropout off, nothing recorded for backward
    total, count, state = 0.0, 0, None
    try:
        for k, (x, y) in enumerate(batches.chunks()):
            if max_chunks and k >= max_chunks:
                break
            if streams is not None:
                x, y = x[:, streams], y[:, streams]
                if not y.size:
                    continue
            logits, state = model.forward(x, state)
            loss, _ = cross_entropy_forward(logits, y)
            total += loss * y.size
            count += y.size
    finally:
        model.train(was)
    if streams is not None:
        total, count = dist.allreduce_sum([total, count])
    return total / max(count, 1)


# ----------------------------------------------------------------------------- run state
def _state_arrays(state):
    if state is None:
        return {}
    parts = state if isinstance(state, tuple) else (state,)
    return {f"carry.{n}": np.array(s) for n, s in zip("hc", parts)}


def _state_from(tensors, is_lstm):
    if "carry.h" not in tensors:
        return None
    return (tensors["carry.h"], tensors["carry.c"]) if is_lstm else tensors["carry.h"]


def _map_state(state, fn):
    if state is None:
        return None
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def _text_digest(text):
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Run:
    """Everything a training run holds; built fresh or from a checkpoint."""

    def __init__(self, cfg, text, vocab, data_desc):
        self.cfg, self.text, self.vocab, self.data_desc = cfg, text, vocab, data_desc
        _, self.train_batches, self.val_batches = prepare(
            text, cfg.val_fraction, cfg.batch_size, cfg.seq_len, vocab=vocab)
        self.model = CharModel(cfg.model_config(len(vocab)), dtype=cfg.dtype, seed=cfg.seed)
        self.model.rnn.memory = cfg.memory
        self.streams = self.val_streams = None  # this rank's streams (MPI); None: all of them
        if dist.size() > 1:
            self._split(cfg.batch_size)
        self.opt = make_optimizer(cfg.optimizer, self.model.params, self.model.grads, cfg.lr)
        self.schedule = self._schedule(cfg)
        self.step, self.elapsed, self.state = 0, 0.0, None
        self.metrics_bytes = 0
        self.best = None  # {"step", "val_loss"} of the best validation so far (RUN_DIR/best)

    def _schedule(self, cfg):
        """step -> lr. A cosine schedule with a time budget (--minutes) decays with the training
        time used (evaluations and checkpoints are not counted), to its end."""
        if cfg.schedule == "cosine" and cfg.steps is None:
            by_time = cosine_to_budget(cfg.lr, cfg.warmup)
            return lambda step: by_time(step, self.elapsed / (cfg.minutes * 60))
        kw = {"warmup_steps": cfg.warmup} if cfg.schedule == "cosine" else {}
        return make_schedule(cfg.schedule, cfg.lr, cfg.steps or 1, **kw)

    def _split(self, B):
        """Rank r of N takes streams [r*B/N, (r+1)*B/N); its dropout masks are its columns of
        the masks one process draws for the whole batch, so they do not depend on N. Validation
        too is split when its batch can be (else rank 0 computes it)."""
        self.streams = dist.shard(B)
        self.model.rnn.rng = dist.ShardedGenerator(self.model.rnn.rng, B, self.streams)
        vb = self.val_batches.batch_size if self.val_batches is not None else 0
        if vb:
            self.val_streams = dist.shard(vb) if vb % dist.size() == 0 else \
                slice(0, vb if dist.is_root() else 0)

    def local(self, x, y):
        """Chunk x, y (T, B) -> this rank's streams (all of them in one process)."""
        return (x, y) if self.streams is None else (x[:, self.streams], y[:, self.streams])

    # -- checkpoint
    def meta(self):
        return {
            "model": self.model.config.to_dict(),
            "dtype": self.cfg.dtype,
            "vocab": self.vocab.to_list(),
            "train": asdict(self.cfg),
            "data": {"description": self.data_desc, "sha256": _text_digest(self.text),
                     **self.train_batches.state_dict()},
            "optimizer": {k: v for k, v in self.opt.state_dict(copy=False).items() if k != "buffers"},
            "rng": {"dropout": self.model.rnn.rng.bit_generator.state},
            "elapsed": self.elapsed,
            "metrics_bytes": self.metrics_bytes,
            "best": self.best,
        }

    def state_tensors(self):
        buffers = self.opt.state_dict(copy=False)["buffers"]  # written out at once
        t = {f"optim.{b}.{p}": a for b, d in buffers.items() for p, a in d.items()}
        t.update(_state_arrays(self.whole_state()))
        return t

    def whole_state(self):
        """The carried state of all B streams: under MPI gathered from every rank into rank 0
        (a collective; None on the other ranks)."""
        if self.streams is None:
            return self.state
        return _map_state(self.state, dist.gather_batch)

    def check_ranks(self):
        """Under MPI: stop every rank if any rank's weights differ from rank 0's."""
        differ = dist.check_same(self.model.params)
        if differ:
            raise dist.everywhere(TrainingError(
                f"the weights of rank {', '.join(map(str, differ))} differ from rank 0's at step "
                f"{self.step}: the ranks diverged; training stopped. {_last_good(self.cfg.out)}"))

    def save(self):
        bad = [k for k, v in self.model.params.items() if not np.isfinite(v).all()]
        if bad:
            raise dist.everywhere(TrainingError(
                f"the weights became NaN or Inf at step {self.step} ({', '.join(bad[:3])}); "
                f"training stopped. {_last_good(self.cfg.out)}"))
        if self.streams is None:
            return ckpt_io.save_checkpoint(self.cfg.out, self.step, self.model.state_dict(),
                                           self.state_tensors(), self.meta())
        self.check_ranks()
        tensors = self.state_tensors()  # collective
        return dist.on_root(lambda: ckpt_io.save_checkpoint(
            self.cfg.out, self.step, self.model.state_dict(), tensors, self.meta()))

    def note_validation(self, val_loss):
        """Record a validation; True when it is the best so far (then save and ``keep_best``)."""
        if not math.isfinite(val_loss) or (self.best is not None and val_loss >= self.best["val_loss"]):
            return False
        self.best = {"step": self.step, "val_loss": val_loss}
        return True

    def save_best(self):
        """RUN_DIR/best := a checkpoint of this step (the run's own checkpoints stay as they are).
        Under MPI the carried states are gathered (collective) and rank 0 writes, as in ``save``."""
        if self.streams is None:
            return ckpt_io.save_best(self.cfg.out, self.step, self.model.state_dict(),
                                     self.state_tensors(), self.meta())
        tensors = self.state_tensors()  # collective
        return dist.on_root(lambda: ckpt_io.save_best(
            self.cfg.out, self.step, self.model.state_dict(), tensors, self.meta()))

    def restore(self, meta, weights, tensors):
        where = meta.get("_path", "checkpoint")
        try:
            self.model.load_state_dict(weights)
        except (ValueError, TypeError) as e:
            raise ckpt_io.CheckpointError(f"{where}: weights do not fit the model config: {e}") from None
        buffers = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, b, p = k.split(".", 2)
                buffers.setdefault(b, {})[p] = v
        try:
            self.opt.load_state_dict({**meta["optimizer"], "buffers": buffers})
            self.train_batches.load_state_dict({k: meta["data"][k] for k in ("position", "epoch")})
            self.model.rnn.rng.bit_generator.state = meta["rng"]["dropout"]
            self.state = _state_from(tensors, self.model.is_lstm)
            want = (self.cfg.num_layers, self.cfg.batch_size, self.cfg.hidden_size)
            for name, s in _state_arrays(self.state).items():
                if s.shape != want:
                    raise ValueError(f"{name} must have shape {want}, got {s.shape}")
            if self.streams is not None:  # the whole batch's state -> this rank's streams
                self.state = _map_state(self.state, lambda s: np.ascontiguousarray(s[:, self.streams]))
            self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
            self.metrics_bytes = int(meta.get("metrics_bytes", 0))
            self.best = meta.get("best")
        except (ValueError, TypeError, KeyError) as e:
            raise ckpt_io.CheckpointError(f"{where}: training state does not fit: {e}") from None


def _load_data(cfg):
    if cfg.data is None:
        text, desc = default_corpus()
    else:
        text = load_text(cfg.data)
        desc = f"{cfg.data} ({len(text):,} characters)"
    return text, desc


def build_run(cfg, resume=None, overrides=None):
    """A fresh run from ``cfg``, or the run in checkpoint ``resume`` with ``overrides`` (e.g.
    more steps) applied. Under MPI every rank builds it (rank 0 reads the checkpoint and sends
    it to all); an error on any rank is raised on every rank."""
    loaded = None if resume is None else _load_checkpoint(resume)
    if resume is None and cfg.out is None:  # (MPI: rank 0's clock names the directory)
        cfg.out = os.path.join("runs", dist.broadcast_bytes(time.strftime("%Y%m%d-%H%M%S").encode()).decode())
    run = dist.agree(lambda: _fresh_run(cfg) if resume is None else _resumed_run(loaded, overrides))
    differ = dist.check_same([np.frombuffer(bytes.fromhex(_text_digest(run.text)), np.uint8)])
    if differ:
        raise dist.everywhere(DataError(
            f"rank {', '.join(map(str, differ))} read other training data than rank 0 ({run.data_desc}): "
            f"every host needs the same text at the same path"))
    dist.broadcast_params(run.model.params)  # (MPI) rank 0's weights, whatever happened elsewhere
    return run


def _fresh_run(cfg):
    cfg.validate()
    text, desc = _load_data(cfg)
    if cfg.data is not None:
        cfg.data = os.path.abspath(cfg.data)  # so that --resume works from any directory
    run = Run(cfg, text, Vocab.from_text(text), desc)
    if not dist.is_root():
        return run
    if ckpt_io.holds_checkpoints(cfg.out):
        raise ValueError(f"{cfg.out} already holds a run; resume it with --resume {cfg.out} or choose another --out")
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"{cfg.out} is a file, not a run directory; choose another --out")
    os.makedirs(cfg.out, exist_ok=True)  # a directory that cannot be made fails here, before training
    return run


def _load_checkpoint(resume):
    """-> (checkpoint_dir, meta, weights, tensors). Under MPI rank 0 reads and checks it and
    sends the three files' contents to every rank (no other rank needs the run directory)."""
    if dist.size() == 1:
        return ckpt_io.load_checkpoint(resume)
    from safetensors.numpy import load, save

    files = {}

    def read():  # rank 0: the checked checkpoint, its tensors as safetensors bytes
        ckpt_dir, meta, weights, tensors = ckpt_io.load_checkpoint(resume)
        files.update(weights=save(weights), tensors=save(tensors) if tensors else b"")
        return json.dumps({"dir": ckpt_dir, "meta": meta})

    head = json.loads(dist.on_root(read))
    weights, tensors = (dist.broadcast_bytes(files.get(k, b"")) for k in ("weights", "tensors"))
    return head["dir"], head["meta"], load(weights), load(tensors) if tensors else {}


def _resumed_run(loaded, overrides):
    ckpt_dir, meta, weights, tensors = loaded
    if "task" in meta:  # `bptt train --task NAME` saves the trained model, not a training state
        raise ckpt_io.CheckpointError(f"{ckpt_dir} holds a {meta['task']!r} task run; task runs cannot be "
                                      f"resumed (train a new one with bptt train --task {meta['task']})")
    meta["_path"] = ckpt_dir
    try:
        saved = TrainConfig(**{f.name: meta["train"][f.name] for f in fields(TrainConfig) if f.name in meta["train"]})
        vocab = Vocab(meta["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise ckpt_io.CheckpointError(f"{ckpt_dir}/checkpoint.json is incomplete: {e}") from None
    for k, v in (overrides or {}).items():
        setattr(saved, k, v)
    saved.out = os.path.dirname(os.path.abspath(ckpt_dir))
    saved.validate()
    text, desc = _load_data(saved)
    if _text_digest(text) != meta["data"].get("sha256"):
        raise ValueError(f"the training data changed since the checkpoint ({desc}); resume needs the same text")
    if len(vocab) != meta["model"].get("vocab_size"):
        raise ckpt_io.CheckpointError(f"{ckpt_dir}: the vocabulary ({len(vocab)} characters) does not match the model (vocab_size {meta['model'].get('vocab_size')})")
    if meta["model"] != saved.model_config(len(vocab)).to_dict() or meta.get("dtype", saved.dtype) != saved.dtype:
        raise ckpt_io.CheckpointError(  # the model part and the training part disagree
            f"{ckpt_dir}/checkpoint.json is inconsistent: its model ({meta['model']}, {meta.get('dtype')}) "
            f"is not the one its training config builds")
    try:
        run = Run(saved, text, vocab, desc)
    except DataError as e:
        raise ckpt_io.CheckpointError(f"{ckpt_dir}: the checkpoint does not fit its training data: {e}") from None
    run.restore(meta, weights, tensors)
    return run


# ----------------------------------------------------------------------------- the loop
class _closed_on_error:
    """Closes the progress bar when an error leaves the loop, so the error is the last line."""

    def __init__(self, bar):
        self.bar = bar

    def __enter__(self):
        return self.bar

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.bar.close()


class _NoLog:
    """The metrics log of a rank other than 0: writes nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, text):
        pass

    def flush(self):
        pass

    def tell(self):
        return 0


class _Interrupt:
    """Turns SIGINT into a flag checked between steps."""

    def __init__(self):
        self.hit = False

    def __enter__(self):
        try:
            self.prev = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.prev = None
        return self

    def _handler(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        if self.prev is not None:
            signal.signal(signal.SIGINT, self.prev)


def _done(run):
    cfg = run.cfg
    if cfg.steps is not None and run.step >= cfg.steps:
        return True
    return cfg.minutes is not None and run.elapsed >= cfg.minutes * 60


def fit(run, progress=True, echo=print):
    """Train ``run`` until its steps or minutes are used up, or Ctrl-C. Returns a summary dict
    with 'status' ('finished' | 'interrupted'), 'step', 'val_loss', 'checkpoint'."""
    from .progress import ProgressBar

    cfg, model, opt = run.cfg, run.model, run.opt
    root, parallel = dist.is_root(), run.streams is not None
    metrics_path = os.path.join(cfg.out, "metrics.jsonl")
    if root:
        os.makedirs(cfg.out, exist_ok=True)
        dist.agree(lambda: _truncate(metrics_path, run.metrics_bytes))
    else:
        dist.agree(lambda: None)
    chars_per_step = cfg.seq_len * cfg.batch_size
    prepare_kernels(model, echo if progress and root else None)  # not on the clock
    bar = ProgressBar(cfg, run.step, run.elapsed, enabled=progress and root)
    status, smooth, val, ema, n_avg = "finished", None, None, 0.0, 0
    sync = {"stop": False}  # (MPI) a Ctrl-C on any rank, seen by all at the same step
    log_file = open(metrics_path, "a", encoding="utf-8") if root else _NoLog()
    with log_file as log, _Interrupt() as interrupt, _closed_on_error(bar):
        t_last = time.perf_counter()

        def reduce(grads, loss):  # (MPI) one Allreduce: gradient, loss, Ctrl-C, clock
            nonlocal t_last
            now = time.perf_counter()
            loss, hit, run.elapsed = dist.allreduce_grads(
                grads, extra=[loss, interrupt.hit, run.elapsed + now - t_last])
            sync["stop"], t_last = hit > 0, time.perf_counter()
            return float(loss)

        while not _done(run):
            x, y, new_epoch = run.train_batches.next()
            if new_epoch:
                run.state = None  # streams restart at the beginning of the data
            x, y = run.local(x, y)
            opt.lr = run.schedule(run.step)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
                loss, norm, run.state = train_step(model, x, y, run.state, opt, cfg,
                                                   reduce if parallel else None)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                bar.close()
                what = "loss" if not math.isfinite(loss) else "gradient norm"
                raise dist.everywhere(TrainingError(
                    f"the {what} became {loss if what == 'loss' else norm} at step {run.step + 1}; "
                    f"training stopped. {_last_good(cfg.out)}"))
            with np.errstate(over="ignore", invalid="ignore"):  # a diverged update is caught at the next step
                opt.step()
            run.step += 1
            if not parallel:  # (MPI: the clock is the ranks' mean, from the Allreduce)
                now = time.perf_counter()
                run.elapsed += now - t_last
                t_last = now
            if parallel and run.step % CHECK_EVERY == 0:
                run.check_ranks()
            ema = 0.98 * ema + 0.02 * loss
            n_avg += 1
            smooth = ema / (1 - 0.98**n_avg)  # bias-corrected moving average
            rec = {"step": run.step, "loss": loss, "lr": opt.lr, "grad_norm": norm,
                   "time": round(run.elapsed, 4), "epoch": run.train_batches.epoch}
            best = False
            if run.step % cfg.eval_every == 0:
                val = _evaluate_and_show(run, bar, smooth)
                rec.update(val_loss=val, val_bpc=val / LN2)
                best = run.note_validation(val)
            log.write(json.dumps(rec) + "\n")
            if best:
                log.flush()
                run.metrics_bytes = log.tell()
                run.save_best()
            bar.update(run.step, run.elapsed, smooth, val, chars_per_step)
            t_last = time.perf_counter()  # evaluation time is not training time
            if sync["stop"] if parallel else interrupt.hit:
                status = "interrupted"
                break
            if run.step % cfg.checkpoint_every == 0 and not _done(run):
                log.flush()
                run.metrics_bytes = log.tell()
                run.save()
        best = False
        if status == "finished" and (run.step % cfg.eval_every or val is None):  # (None: resumed at the end)
            # a last evaluation, shown but not logged (the log of a run stopped and resumed must
            # equal the log of the same run straight through); it may still be the best one
            val = _evaluate_and_show(run, bar, smooth)
            best = run.note_validation(val)
        log.flush()
        run.metrics_bytes = log.tell()
        path = run.save()
        if best:
            run.save_best()
    if root:
        _write_loss_plot(cfg.out)
    bar.close()
    return {"status": status, "step": run.step, "val_loss": val, "checkpoint": path,
            "train_loss": smooth, "elapsed": run.elapsed, "best": run.best}


def _evaluate_and_show(run, bar, smooth):
    val = evaluate(run.model, run.val_batches, run.cfg.eval_batches, run.val_streams)
    if not dist.is_root():
        return val
    text = sample_text(run, run.cfg.sample_length, seed=run.step)
    train = f"train {smooth:.4f}  " if smooth is not None else ""
    bar.write(f"step {run.step}: {train}val {val:.4f} nats/char ({val / LN2:.3f} bits/char)\n"
              f"  sample: {text!r}")
    return val


def sample_text(run, length, seed=0, prime=None, temperature=0.8):
    """A sample from the model with its own RNG (never the training RNG)."""
    if length <= 0:
        return ""
    vocab = run.vocab
    prime = prime or ("\n" if "\n" in vocab.chars else vocab.chars[0])
    ids = run.model.generate(vocab.encode(prime), length, temperature=temperature,
                             rng=np.random.default_rng([run.cfg.seed, seed]))
    return vocab.decode(ids)


def _write_loss_plot(run_dir):
    """RUN_DIR/loss.png from the metrics log; a missing matplotlib or a failed drawing is only
    a warning, never a failed run (the checkpoint is already saved)."""
    try:
        from .plots import write_loss_plot
    except ImportError:
        return
    try:
        write_loss_plot(run_dir)
    except Exception as e:  # noqa: BLE001 - a picture must not fail a finished run
        import sys

        print(f"warning: could not draw {os.path.join(run_dir, 'loss.png')}: {e}", file=sys.stderr)


def _last_good(run_dir):
    try:
        return f"The last checkpoint is kept: {ckpt_io.resolve(run_dir)}"
    except ckpt_io.CheckpointError:
        return "No checkpoint had been written yet."


def _truncate(path, size):
    """Cut the metrics log back to the checkpoint's length (what came after was not kept)."""
    if os.path.exists(path):
        if os.path.getsize(path) < size:
            raise ckpt_io.CheckpointError(
                f"{path} is shorter than the checkpoint expects ({os.path.getsize(path)} < {size} bytes)")
        with open(path, "r+b") as f:
            f.truncate(size)
    elif size:
        raise ckpt_io.CheckpointError(f"{path} is missing; the checkpoint expects {size} bytes of metrics")


__all__ = ["TrainConfig", "TrainingError", "build_run", "fit", "evaluate", "sample_text",
           "Batches", "DataError"]
