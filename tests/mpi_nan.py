"""``bptt ARGS`` with a NaN on one rank: the loss of the CALL-th training step computed by rank
RANK (counted from this launch) is NaN; the other ranks compute as usual.

    mpiexec -n 2 python tests/mpi_nan.py RANK CALL train ...
"""

import sys

import bptt.distributed as dist
import bptt.train as train_mod
from bptt.cli import main

nan_rank, nan_call = int(sys.argv[1]), int(sys.argv[2])
real, calls = train_mod.cross_entropy_forward, [0]


def poisoned(logits, targets, *a, **kw):
    loss, cache = real(logits, targets, *a, **kw)
    calls[0] += 1
    if dist.rank() == nan_rank and calls[0] == nan_call:
        loss = float("nan")
    return loss, cache


train_mod.cross_entropy_forward = poisoned
sys.exit(main(sys.argv[3:]))
