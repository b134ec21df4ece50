"""``bptt ARGS`` with a fault on one rank, counted in training steps of this launch:

    mpiexec -n 2 python tests/mpi_inject.py nan RANK CALL train ...    # the loss of step CALL on rank RANK is NaN
    mpiexec -n 2 python tests/mpi_inject.py oserror RANK CALL train ...  # rank RANK alone fails in step CALL (a full disk)
    mpiexec -n 2 python tests/mpi_inject.py otherdata RANK 0 train ...  # rank RANK reads the text with one more line
    mpiexec -n 2 python tests/mpi_inject.py drift RANK CALL train ...  # rank RANK's weights move by 1e-4 (relative) after step CALL
"""

import sys

import bptt.distributed as dist
import bptt.train as train_mod
from bptt.cli import main

what, bad_rank, bad_call = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
real_loss, real_step, calls = train_mod.cross_entropy_forward, train_mod.train_step, [0]


def poisoned(logits, targets, *a, **kw):
    loss, cache = real_loss(logits, targets, *a, **kw)
    return (float("nan") if dist.rank() == bad_rank and calls[0] == bad_call else loss), cache


def step(model, *a, **kw):
    calls[0] += 1
    if what == "oserror" and dist.rank() == bad_rank and calls[0] == bad_call:
        raise OSError(28, "No space left on device", "/pretend/scratch")
    out = real_step(model, *a, **kw)
    if what == "drift" and dist.rank() == bad_rank and calls[0] == bad_call:
        next(iter(model.params.values()))[0] *= 1 + 1e-4
    return out


def other_data(cfg):
    text, desc = real_load(cfg)
    return (text + "one more line\n" if dist.rank() == bad_rank else text), desc


real_load = train_mod._load_data
train_mod.train_step = step
if what == "otherdata":
    train_mod._load_data = other_data
if what == "nan":
    train_mod.cross_entropy_forward = poisoned
sys.exit(main(sys.argv[4:]))
