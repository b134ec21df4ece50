"""A hand-written data-parallel training loop with ``bptt.distributed``, as a user would write
it: an LSTM regressor (a ``bptt.Module``) on a fixed random batch of B sequences, each rank on
its streams, one Allreduce of the gradients (and the loss) per step, clipping, Adam. Run as one
process or under ``mpiexec -n N``; rank 0 writes the final weights and the losses to OUT
(safetensors), for the test to compare.

    python tests/mpi_user_loop.py OUT            # one process
    mpiexec -n 2 python tests/mpi_user_loop.py OUT
"""

import sys

import numpy as np
from safetensors.numpy import save_file

import bptt
import bptt.distributed as dist

T, B, D, H, STEPS = 7, 6, 3, 5, 15


class Regressor(bptt.Module):
    def __init__(self, seed):
        super().__init__()
        self.lstm = bptt.LSTM(D, H, dtype="float64", seed=seed)
        self.head = bptt.Linear(H, 1, dtype="float64", seed=seed + 100)

    def forward(self, x):  # x (T, b, D) -> (T, b, 1)
        out, _ = self.lstm(x)
        return self.head(out)

    def backward(self, dy):
        dx, _ = self.lstm.backward(self.head.backward(dy))
        return dx


dist.init()
rows = dist.shard(B)  # this rank's streams

data = np.random.default_rng(0)
x = data.standard_normal((T, B, D))  # the whole batch: the same on every rank
y = data.standard_normal((T, B, 1))

model = Regressor(seed=dist.rank())  # each rank starts from its own random weights ...
dist.broadcast_params(model)  # ... and broadcast_params makes them rank 0's
opt = bptt.Adam(model, lr=1e-2)

losses = []
for step in range(STEPS):
    model.zero_grad()
    loss, cache = bptt.mse_forward(model(x[:, rows]), y[:, rows])
    model.backward(bptt.mse_backward(cache))
    (loss,) = dist.allreduce_grads(model, extra=[loss])  # the whole batch's gradient and loss
    bptt.clip_grad_norm(model.grads, 1.0)
    opt.step()
    losses.append(loss)

params = model.params
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
