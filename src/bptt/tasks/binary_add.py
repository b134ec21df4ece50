"""Binary addition (Trask's "Anyone can code an RNN"): a + b in binary, one bit of each number per
step from the least significant, one bit of the sum out per step.

Setup here. a and b are any n-bit numbers (n = ``bits``, 8 by default: a, b in [0, 256), unlike
Trask's a, b < 128), so the sum has n + 1 bits: the sequence runs T = n + 1 steps, the last one
with input bits (0, 0), where the model writes out the final carry. Inputs x_t = (a_t, b_t);
targets s_t; a Linear head gives one logit per step; loss = binary cross-entropy on the logits,
summed over the T bits of a sum and averaged over the batch (Trask's error is summed over the
bits too, so plain SGD with his lr 0.1 takes steps of his size). One pair per step, as Trask;
the gradient norm is clipped at 1 (the cross-entropy's gradient on a confident wrong bit is larger
than that of Trask's squared error through a sigmoid, and unclipped single-sample SGD at lr 0.1
diverges now and then).

Held out: the 2^(2n) pairs (a, b) are shuffled and split; a fraction ``holdout`` is never trained
on and the model is judged by exact sums (every bit right) on all of them. Training draws
``batch`` pairs per step from the rest, ``samples`` pairs in all (Trask: 10,000 samples, one per
step). The same model then adds 16- and 32-bit numbers: the addition is the same per-bit rule, so
a learned carry works on any length; only the number of steps changes.
"""

import numpy as np

from ..module import no_grad
from ..loss import bce_with_logits_backward, bce_with_logits_forward
from ._common import SeqModel, TaskError, check_choice, check_positive, child_seeds, optimizer, train

REFERENCE = "Trask's 8-bit RNN (a, b < 128), H=16, plain SGD lr 0.1, 10,000 samples: exact sums on training pairs"


def to_bits(values, n):
    """values (N,) nonnegative integers -> bits (n, N), least significant first."""
    v = np.asarray(values, dtype=np.uint64)
    return ((v[None, :] >> np.arange(n, dtype=np.uint64)[:, None]) & np.uint64(1)).astype(np.float64)


def from_bits(bits):
    """bits (n, N) of 0/1, least significant first -> integers (N,) as Python ints (any n)."""
    n = bits.shape[0]
    return [sum(int(bits[i, j]) << i for i in range(n)) for j in range(bits.shape[1])]


def encode(a, b, n, dtype=np.float64):
    """Pairs of n-bit numbers -> x (n+1, N, 2), target (n+1, N, 1) holding the n+1 bits of a+b."""
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    x = np.zeros((n + 1, a.size, 2), dtype)
    x[:n, :, 0], x[:n, :, 1] = to_bits(a, n), to_bits(b, n)
    target = to_bits(a + b, n + 1)[..., None].astype(dtype)
    return x, target


@no_grad()
def add(model, a, b, n):
    """The model's sums of the n-bit numbers a, b (arrays of equal length) as Python ints."""
    x, _ = encode(a, b, n, model.dtype)
    logits, _ = model.forward(x)
    return from_bits((logits[..., 0] > 0).astype(np.int64))


@no_grad()
def exact_fraction(model, a, b, n, chunk=8192):
    """Fraction of pairs whose sum comes out with every bit right."""
    right = 0
    for i in range(0, len(a), chunk):
        x, target = encode(a[i:i + chunk], b[i:i + chunk], n, model.dtype)
        logits, _ = model.forward(x)
        right += int(np.all((logits > 0) == (target > 0.5), axis=(0, 2)).sum())
    return right / len(a)


def random_pairs(rng, n, count):
    """count random pairs of n-bit numbers, plus the hardest carries: all ones + 1, all ones + all
    ones, 0 + 0."""
    if n > 62:
        raise TaskError(f"test bits must be <= 62, got {n}")
    top = (1 << n) - 1
    a = [int(v) for v in rng.integers(0, 2**62, count, dtype=np.int64, endpoint=False)]
    b = [int(v) for v in rng.integers(0, 2**62, count, dtype=np.int64, endpoint=False)]
    a = [v & top for v in a] + [top, top, 0, 1]
    b = [v & top for v in b] + [1, top, 0, top]
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def split_pairs(bits, holdout, seed):
    """All 2^(2*bits) pairs (a, b), shuffled and split -> (held_a, held_b), (train_a, train_b):
    a fraction ``holdout`` held out, never trained on."""
    n_pairs = 1 << (2 * bits)
    order = np.random.default_rng(seed).permutation(n_pairs)
    n_held = int(round(holdout * n_pairs))
    top = (1 << bits) - 1
    held, pool = order[:n_held], order[n_held:]
    return ((held >> bits) & top, held & top), ((pool >> bits) & top, pool & top)


def run_binary_add(bits=8, hidden=16, cell="rnn", lr=0.1, samples=10_000, batch=1,
                   optimizer_name="sgd", holdout=0.25, test_bits=(16, 32), test_pairs=10_000,
                   eval_every=None, clip=1.0, dtype="float64", seed=0, progress=True):
    """Train on at most ``samples`` pairs; returns a dict with the held-out exactness (final and
    the first evaluation at which every held-out sum was exact), and exactness on longer numbers.
    """
    check_positive("bits", bits)
    if bits > 12:
        raise TaskError(f"bits must be <= 12 for training (all 2^(2*bits) pairs are enumerated), got {bits}")
    for n in test_bits:
        check_positive("test bits", n)
    check_positive("hidden", hidden)
    check_positive("samples", samples)
    check_positive("batch", batch)
    check_choice("cell", cell, ("rnn", "lstm", "gru"))
    if not 0 < holdout < 1:
        raise TaskError(f"holdout must be in (0, 1), got {holdout!r}")
    s_model, s_split, s_train, s_test = child_seeds(seed, 4)
    steps = max(1, samples // batch)
    (held_a, held_b), (pool_a, pool_b) = split_pairs(bits, holdout, s_split)
    n_held, pool_size = held_a.size, pool_a.size

    model = SeqModel(cell, 2, hidden, 1, dtype=dtype, seed=s_model)
    opt = optimizer(optimizer_name, model, lr)
    rng = np.random.default_rng(s_train)
    T = bits + 1

    def batch_fn(step):
        idx = rng.integers(0, pool_size, batch)
        x, target = encode(pool_a[idx], pool_b[idx], bits, model.dtype)
        return x, target, None

    def loss_fn(y, target, mask):
        loss, cache = bce_with_logits_forward(y, target)
        return loss * T, bce_with_logits_backward(cache, dloss=T)  # summed over the T bits

    def eval_fn(step):
        return {"held_out_exact": exact_fraction(model, held_a, held_b, bits)}

    every = eval_every or max(1, 250 // batch)
    hist = train(model, opt, batch_fn, loss_fn, steps, clip=clip, eval_fn=eval_fn,
                 eval_every=every, desc=f"binary-add {cell}", progress=progress)
    first_exact = next((s for s, m in hist["evals"] if m["held_out_exact"] == 1.0), None)
    trng = np.random.default_rng(s_test)
    longer = {}
    for n in test_bits:
        a, b = random_pairs(trng, n, test_pairs)
        longer[f"exact_{n}bit"] = exact_fraction(model, a, b, n)
    result = {
        "task": "binary-add", "cell": cell, "hidden": hidden, "bits": bits, "optimizer": optimizer_name,
        "lr": lr, "batch": batch, "steps": hist["steps"], "samples": hist["steps"] * batch,
        "held_out_pairs": int(n_held), "train_pairs": int(pool_size),
        "held_out_exact": hist["evals"][-1][1]["held_out_exact"],
        "samples_to_exact": None if first_exact is None else first_exact * batch,
        **longer, "test_pairs": test_pairs + 4,
        "final_loss": hist["last_loss"], "seconds": hist["seconds"],
        "curve": hist["curve"][:: max(1, len(hist["curve"]) // 200)],
        "evals": [(s, m["held_out_exact"]) for s, m in hist["evals"]],
    }
    result["model"] = model
    return result
