"""Sampling and evaluation from a saved checkpoint: the model is rebuilt from the file alone."""

import math

import numpy as np

from . import checkpoint as ckpt_io
from .data import Batches, DataError, Vocab
from .loss import cross_entropy_forward
from .model import CharModel, ModelConfig
from .module import resolve_dtype


def load_model(path, best=False):
    """A run directory or checkpoint directory -> (model, vocab, meta); ``best``: the run
    directory's best checkpoint by validation loss (RUN/best), an error when it has none."""
    if best:
        path = ckpt_io.resolve_best(path, required=True)
    ckpt_dir, meta, weights, _ = ckpt_io.load_checkpoint(path)
    if "task" in meta:  # a run of `bptt train --task NAME` (bptt.tasks), not a character model
        hint = "; forecast with: bptt forecast RUN --steps K" if meta["task"] == "series" else ""
        raise ckpt_io.CheckpointError(f"{ckpt_dir} holds a {meta['task']!r} task run, not a character model{hint}")
    try:
        config = ModelConfig(**meta["model"])
        vocab = Vocab(meta["vocab"])
        dtype = resolve_dtype(meta.get("dtype", "float32"))
    except (KeyError, TypeError, ValueError) as e:
        raise ckpt_io.CheckpointError(f"{ckpt_dir}/checkpoint.json: bad model description: {e}") from None
    if len(vocab) != config.vocab_size:
        raise ckpt_io.CheckpointError(
            f"{ckpt_dir}: the vocabulary has {len(vocab)} characters but the model was built for "
            f"{config.vocab_size}")
    model = CharModel(config, dtype=dtype, seed=0)
    try:
        model.load_state_dict(weights)
    except (ValueError, TypeError) as e:
        raise ckpt_io.CheckpointError(f"{ckpt_dir}/model.safetensors does not fit the model config: {e}") from None
    model.eval()
    return model, vocab, meta


def sample(model, vocab, length=500, temperature=0.8, top_k=None, prime=None, seed=0):
    """-> the prime followed by ``length`` sampled characters. Same seed, same text."""
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if prime is None or prime == "":
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
        shown = ""
    else:
        shown = prime
    ids = model.generate(vocab.encode(prime), length, temperature=temperature, top_k=top_k,
                         rng=np.random.default_rng(seed))
    return shown + vocab.decode(ids)


def evaluate_text(model, vocab, text, batch_size=16, seq_len=128):
    """Loss of the model on ``text``: dict with nats/char, bits/char, perplexity, characters."""
    ids = vocab.encode(text)
    if len(ids) < 2:
        raise DataError(f"evaluation needs at least 2 characters, the text has {len(ids)}")
    B = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    T = min(seq_len, (len(ids) - 1) // B)
    batches = Batches(ids, B, T, name="evaluation data")
    total, count, state = 0.0, 0, None
    for x, y in batches.chunks():
        logits, state = model.forward(x, state)
        loss, _ = cross_entropy_forward(logits.astype(np.float64), y)
        total += loss * y.size
        count += y.size
    nats = total / count
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2), "perplexity": math.exp(nats),
            "characters": count}
