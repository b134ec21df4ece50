"""``CharModel``: Embedding -> recurrent stack (RNN | LSTM | GRU) -> Linear head, the language
model that ``bptt train`` trains.

Its parameters are named as a PyTorch module with attributes ``embedding``, ``rnn`` and ``head``
names them (``embedding.weight``, ``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``), so
the saved weights load into ``torch.nn.Module.load_state_dict`` of the same architecture.

Dimensions: T time, B batch, V vocabulary, E embedding size, H hidden, L layers.
"""

from dataclasses import asdict, dataclass

import numpy as np

from .encoding import Embedding
from .head import Linear
from .module import Module, resolve_dtype
from .recurrent import GRU, LSTM, RNN

RECURRENT = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    embedding_dim: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        if self.cell not in RECURRENT:
            raise ValueError(f"cell must be one of {', '.join(RECURRENT)}, got {self.cell!r}")
        for name in ("vocab_size", "hidden_size", "num_layers", "embedding_dim"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self):
        return asdict(self)


class CharModel(Module):
    """Embedding -> RNN/LSTM/GRU -> Linear at every step. ``params``/``grads`` span all parts."""

    def __init__(self, config: ModelConfig, dtype="float32", seed=None):
        super().__init__()
        self.config = config
        self.dtype = resolve_dtype(dtype)
        ss = np.random.SeedSequence(seed)
        s_emb, s_rnn, s_head = (int(s.generate_state(1)[0]) for s in ss.spawn(3))
        c = config
        self.embedding = Embedding(c.vocab_size, c.embedding_dim, dtype=dtype, seed=s_emb)
        self.rnn = RECURRENT[c.cell](
            c.embedding_dim, c.hidden_size, num_layers=c.num_layers, dropout=c.dropout,
            dtype=dtype, seed=s_rnn,
        )
        self.head = Linear(c.hidden_size, c.vocab_size, dtype=dtype, seed=s_head)
        # sub-modules: params/grads are theirs, under the torch module's names (rnn.weight_ih_l0...)

    @property
    def is_lstm(self):
        return self.config.cell == "lstm"

    def initial_state(self, batch_size):
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = np.zeros(shape, self.dtype)
        return (h, h.copy()) if self.is_lstm else h

    def forward(self, tokens, state=None):
        """tokens (T, B) int -> logits (T, B, V), final state."""
        x = self.embedding(tokens)  # (T, B, E)
        out, state = self.rnn(x, state)  # (T, B, H)
        return self.head(out), state

    def backward(self, dlogits):
        """dlogits (T, B, V): adds into ``grads``. The gradient on the final state is zero: in
        truncated BPTT the next chunk's gradient does not flow back into this one."""
        dout = self.head.backward(dlogits)
        dx, _ = self.rnn.backward(dout)
        self.embedding.backward(dx)

    def generate(self, prime_ids, length, temperature=1.0, top_k=None, rng=None, state=None):
        """Sample ``length`` tokens after feeding ``prime_ids`` (a non-empty sequence of ints).
        temperature 0 takes the most likely token; top_k keeps the k most likely. Returns a list
        of ids (the prime not included). Dropout is off while sampling."""
        if len(prime_ids) == 0:
            raise ValueError("generate needs at least one token to start from")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        rng = rng if rng is not None else np.random.default_rng()
        was_training = self.training
        self.eval()  # records nothing and switches dropout off
        try:
            logits, state = self.forward(np.asarray(prime_ids, dtype=np.int64)[:, None], state)
            last = logits[-1, 0].astype(np.float64)  # (V,)
            out = []
            for _ in range(length):
                nxt = sample_logits(last, temperature, top_k, rng)
                out.append(nxt)
                logits, state = self.forward(np.array([[nxt]]), state)
                last = logits[0, 0].astype(np.float64)
            return out
        finally:
            self.train(was_training)


def sample_logits(logits, temperature, top_k, rng):
    """One token from logits (V,): argmax at temperature 0, else softmax(logits / temperature)
    restricted to the top_k largest."""
    if not np.isfinite(logits).all():
        raise ValueError("the model's output is not finite (NaN or Inf): its weights have diverged")
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and top_k < z.size:
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(p.size, p=p))
