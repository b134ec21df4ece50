"""A hand-written data-parallel training loop with ``bptt.distributed``, as a user would write
it: an LSTM regressor on a fixed random batch of B sequences, each rank on its streams, one
Allreduce of the gradients per step, Adam. Run as one process or under ``mpiexec -n N``; rank 0
writes the final weights and the losses to OUT (safetensors), for the test to compare.

    python tests/mpi_user_loop.py OUT            # one process
    mpiexec -n 2 python tests/mpi_user_loop.py OUT
"""

import sys

import numpy as np
from safetensors.numpy import save_file

import bptt
import bptt.distributed as dist

T, B, D, H, STEPS = 7, 6, 3, 5, 15

dist.init()
rows = dist.shard(B)  # this rank's streams

data = np.random.default_rng(0)
x = data.standard_normal((T, B, D))  # the whole batch: the same on every rank
y = data.standard_normal((T, B, 1))

# each rank starts from its own random weights; broadcast_params makes them rank 0's
lstm = bptt.LSTM(D, H, dtype="float64", seed=dist.rank())
head = bptt.Linear(H, 1, dtype="float64", seed=100 + dist.rank())
params = {**{"lstm." + k: v for k, v in lstm.params.items()}, **{"head." + k: v for k, v in head.params.items()}}
grads = {**{"lstm." + k: v for k, v in lstm.grads.items()}, **{"head." + k: v for k, v in head.grads.items()}}
dist.broadcast_params(params)
opt = bptt.Adam(params, grads, lr=1e-2)

losses = []
for step in range(STEPS):
    for g in grads.values():
        g.fill(0.0)
    out, _ = lstm.forward(x[:, rows])
    pred = head.forward(out)
    loss, cache = bptt.mse_forward(pred, y[:, rows])
    lstm.backward(head.backward(bptt.mse_backward(cache)))
    (loss,) = dist.allreduce_grads(grads, extra=[loss])  # the whole batch's gradient and loss
    bptt.clip_grad_norm(grads, 1.0)
    opt.step()
    losses.append(loss)

assert not dist.check_same(params), "the ranks' weights differ"
if dist.size() > 1:  # a rank that drifts is caught by the checksum comparison
    if dist.rank() == 1:
        params["head.bias"][0] += 1e-12
    assert dist.check_same(params) == [1]
    if dist.rank() == 1:
        params["head.bias"][0] -= 1e-12
if dist.rank() == 0:
    save_file({**{k: np.ascontiguousarray(v) for k, v in params.items()}, "losses": np.array(losses)},
              sys.argv[1], metadata={"size": str(dist.size())})
