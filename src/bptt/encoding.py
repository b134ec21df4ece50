"""Input encodings: a learned ``Embedding`` table and ``one_hot``.

Dimensions: V vocabulary (num_embeddings), E embedding size; indices of any shape (...).
"""

import numpy as np

from .module import Module, as_float_array, check_device, check_sizes, resolve_dtype


def check_indices(idx, num_embeddings, name="indices"):
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        raise ValueError(
            f"{name} must lie in [0, {num_embeddings}), got values in [{idx.min()}, {idx.max()}]"
        )
    return idx


def one_hot(idx, num_classes, dtype=np.float32):
    """Integer indices (...) -> one-hot vectors (..., num_classes)."""
    idx = check_indices(idx, num_classes)
    return np.eye(num_classes, dtype=resolve_dtype(dtype))[idx]


def embedding_forward(idx, weight):
    """idx (...) integer, weight (V, E) -> out (..., E)."""
    return weight[idx]


def embedding_backward(dout, idx, V):
    """dout (..., E) -> dweight (V, E); rows of repeated indices add up.

    The sums of ``np.add.at(dweight, idx, dout)``, done as one segment sum per index over the
    rows sorted by index (NumPy may add within a segment in another order) instead of one
    update per row: about 5 times faster for a character model's batch."""
    E = dout.shape[-1]
    dweight = np.zeros((V, E), dtype=dout.dtype)
    flat, d = idx.reshape(-1), dout.reshape(-1, E)
    if flat.size == 0:
        return dweight
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    dweight[ids[starts]] = np.add.reduceat(d[order], starts, axis=0)
    return dweight


class Embedding(Module):
    """A lookup table like ``torch.nn.Embedding``: ``weight`` (V, E), initialised N(0, 1)."""

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32", seed=None):
        super().__init__()
        check_sizes(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        check_device(device)
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((self.num_embeddings, self.embedding_dim))
        self.params = {"weight": w.astype(self.dtype)}
        self._init_grads()

    def forward(self, idx):
        """idx (...) integer -> (..., E)."""
        idx = check_indices(idx, self.num_embeddings)
        self._save_for_backward(idx)
        return embedding_forward(idx, self.params["weight"])

    def backward(self, dout):
        """dout (..., E): adds into grads['weight']; returns None (indices have no gradient)."""
        idx = self._saved_for_backward(peek=True)
        expected = idx.shape + (self.embedding_dim,)
        if np.shape(dout) != expected:
            raise ValueError(f"Embedding.backward: dout must have shape {expected}, got {np.shape(dout)}")
        dout = as_float_array(dout, self.dtype, "Embedding.backward dout", strict=False)
        self._saved_for_backward()
        self.grads["weight"] += embedding_backward(dout, idx, self.num_embeddings)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, dtype={np.dtype(self.dtype).name}"
