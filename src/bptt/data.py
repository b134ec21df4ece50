"""Text data for a character language model trained with truncated BPTT.

    file (or the default corpus) --load_text--> str --Vocab.encode--> ids (N,)
        --split--> train ids, val ids --Batches--> chunks x, y of shape (T, B), time-major

Dimensions: N tokens (characters), V vocabulary size, B batch (parallel streams),
L stream length, T chunk length (time steps of one truncated-BPTT window).

Every bad input raises ``DataError`` (a ``ValueError``) with one line naming the file or the
quantity and the problem; the command-line tool prints it as it is.
"""

import sys
import sysconfig
from pathlib import Path

import numpy as np

_BOM = b"\xef\xbb\xbf"


class DataError(ValueError):
    """Bad data or bad data settings; the message is one line meant for the user."""


def _count(n, noun):
    """_count(1, "token") -> "1 token", _count(3, "token") -> "3 tokens"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------------------------- text


def _decode_utf8(data, name):
    """UTF-8 bytes -> str, a leading BOM stripped; DataError naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{name} is not UTF-8 text "
            f"(invalid byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def load_text(path):
    """Read a UTF-8 text file and return its text.

    A leading byte-order mark is dropped; line endings are kept as they are ("\\r\\n" stays).
    Raises DataError if the file is missing, a directory, unreadable, empty, binary (contains
    NUL bytes) or not valid UTF-8.
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {name}")
    if p.is_dir():
        raise DataError(f"{name} is a directory, not a text file")
    try:
        with open(p, "rb") as f:
            data = f.read()
    except PermissionError:
        raise DataError(f"cannot read {name}: permission denied") from None
    except OSError as err:
        raise DataError(f"cannot read {name}: {err.strerror or err}") from None
    if not data or data == _BOM:
        raise DataError(f"{name} is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name} is UTF-16 text, not UTF-8 (convert it, e.g. with iconv)")
    if b"\x00" in data:
        raise DataError(f"{name} looks like a binary file (contains NUL bytes)")
    return _decode_utf8(data, name)


def default_corpus(max_bytes=2_000_000):
    """The corpus used when no data file is given: this machine's Python standard library.

    The top-level ``.py`` files of ``sysconfig.get_paths()["stdlib"]``, sorted by file name,
    files that are not UTF-8 skipped, concatenated in that order; the last file is cut so
    that the UTF-8 size is max_bytes (or up to 3 bytes less, to end on a whole character).
    Nothing is downloaded. Returns (text, description).
    """
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise DataError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"), key=lambda f: f.name) if root.is_dir() else []
    parts, used, n_files = [], 0, 0
    for f in files:
        if used >= max_bytes:
            break
        try:
            data = f.read_bytes()
            data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        data = data[: max_bytes - used]  # only the last file gets cut
        text = data.decode("utf-8", errors="ignore")  # drops a character cut in half
        if not text:
            continue
        parts.append(text)
        used += len(text.encode("utf-8"))
        n_files += 1
    if not parts:
        raise DataError(f"no Python standard library source files found in {root}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    description = (
        f"Python {version} standard library, {_count(n_files, 'file')}, "
        f"{used / 1e6:.1f} MB ({root})"
    )
    return "".join(parts), description


# ----------------------------------------------------------------------------- vocabulary


class Vocab:
    """A character vocabulary: character <-> integer id in [0, V).

    ``Vocab.from_text(text)`` takes the sorted unique characters of the text (any Unicode).
    ``Vocab(chars)`` rebuilds one from ``to_list()`` (e.g. after a JSON round trip).
    """

    def __init__(self, chars):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"vocabulary entries must be single characters, got {c!r}")
        if not chars:
            raise DataError("the vocabulary is empty")
        seen, dups = set(), []
        for c in chars:
            if c in seen and c not in dups:
                dups.append(c)
            seen.add(c)
        if dups:
            raise DataError(
                "the vocabulary has duplicate characters: " + ", ".join(map(repr, dups[:10]))
            )
        self.chars = chars
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)  # (V,)
        self._order = np.argsort(codes).astype(np.int32)  # (V,) id of the k-th smallest code
        self._sorted_codes = codes[self._order]  # (V,)

    @classmethod
    def from_text(cls, text):
        """The sorted unique characters of text."""
        if not text:
            raise DataError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self):
        return f"Vocab({len(self)} characters)"

    def to_list(self):
        """The characters in id order, a plain list for JSON."""
        return list(self.chars)

    def encode(self, text):
        """str of N characters -> ids (N,) int32. DataError lists characters not in the vocab."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")  # (N,)
        pos = np.searchsorted(self._sorted_codes, codes)  # (N,)
        pos = np.minimum(pos, len(self) - 1)
        known = self._sorted_codes[pos] == codes  # (N,)
        if not known.all():
            unknown, first = np.unique(codes[~known], return_index=True)
            unknown = [chr(c) for c in unknown[np.argsort(first)]]  # in order of appearance
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f", and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise DataError(
                f"the text has {_count(len(unknown), 'character')} not in the model's vocabulary: "
                f"{shown}{more}"
            )
        return self._order[pos]

    def decode(self, ids):
        """ids (any shape, flattened in C order) -> str."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.dtype.kind not in "iu":
            raise DataError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= len(self):
            raise DataError(
                f"ids must lie in [0, {len(self)}), got values in [{ids.min()}, {ids.max()}]"
            )
        return "".join([self.chars[i] for i in ids.ravel().tolist()])


# ---------------------------------------------------------------------------------- split


def split(ids, val_fraction=0.1):
    """ids (N,) -> (train_ids (N - n_val,), val_ids (n_val,)), contiguous: train first.

    n_val = round(N * val_fraction). Both parts must have at least 2 tokens (one input and
    its target); with val_fraction == 0 the validation part is empty.
    """
    real = isinstance(val_fraction, (int, float, np.integer, np.floating))
    if not real or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    ids = np.asarray(ids)
    n = len(ids)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val < 2:
        raise DataError(
            f"the validation part ({val_fraction:g} of {n} tokens) would have "
            f"{_count(n_val, 'token')}, "
            f"it needs at least 2; use more data or a larger val_fraction"
        )
    if n - n_val < 2:
        raise DataError(
            f"the training part ({n} tokens minus {n_val} for validation) would have "
            f"{_count(n - n_val, 'token')}, it needs at least 2"
        )
    return ids[: n - n_val], ids[n - n_val:]


# -------------------------------------------------------------------------------- batches


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise DataError(f"{name} must be >= 1, got {value}")
    return int(value)


class Batches:
    """B parallel contiguous streams of ids cut into chunks of T steps (truncated BPTT).

    ids (N,) is cut into B equal streams of length L = (N - 1) // B: stream b has inputs
    ids[b*L + i] and targets ids[b*L + i + 1], i in [0, L). Chunk k holds stream positions
    [k*T, (k+1)*T) of every stream as x, y of shape (T, B), time-major, so the hidden state
    at the end of chunk k is the right initial state for chunk k + 1. An epoch is
    n_chunks = L // T chunks; the ragged tail is dropped.

    The iteration state (``position``, ``epoch``) is explicit; ``state_dict`` /
    ``load_state_dict`` save and restore it for checkpoints.
    """

    def __init__(self, ids, batch_size, seq_len, name="data"):
        B = self.batch_size = _check_positive_int(batch_size, "batch_size")
        T = self.seq_len = _check_positive_int(seq_len, "seq_len")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise DataError(f"ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        n = len(ids)
        L = self.stream_len = (n - 1) // B if n else 0
        self.n_chunks = L // T
        if self.n_chunks < 1:
            raise DataError(
                f"sequence length {T} x batch {B} needs at least {B}*{T}+1 = {B * T + 1} "
                f"characters, the {name} has {n}"
            )
        self._x = np.ascontiguousarray(ids[: B * L].reshape(B, L).T)  # (L, B)
        self._y = np.ascontiguousarray(ids[1 : B * L + 1].reshape(B, L).T)  # (L, B)
        self.position = 0  # index of the next chunk within the epoch
        self.epoch = 0  # epochs completed so far

    def __len__(self):
        return self.n_chunks

    def chunk(self, k):
        """Chunk k in [0, n_chunks) -> (x, y), each (T, B), copies."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk index must be in [0, {self.n_chunks}), got {k}")
        rows = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self._x[rows].copy(), self._y[rows].copy()

    def next(self):
        """-> (x (T, B), y (T, B), new_epoch). new_epoch is True for the first chunk of each
        epoch (the very first included): the caller resets the carried hidden state there."""
        new_epoch = self.position == 0
        x, y = self.chunk(self.position)
        self.position += 1
        if self.position == self.n_chunks:
            self.position = 0
            self.epoch += 1
        return x, y, new_epoch

    def chunks(self):
        """Yield (x, y), each (T, B), for one whole epoch in order; position is not touched."""
        for k in range(self.n_chunks):
            yield self.chunk(k)

    def state_dict(self):
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state):
        """Restore ``position`` and ``epoch`` from ``state_dict()``; DataError if out of range."""
        try:
            position, epoch = state["position"], state["epoch"]
        except (KeyError, TypeError):
            raise DataError(
                f"batch state must be a dict with 'position' and 'epoch', got {state!r}"
            ) from None
        for value, name in ((position, "position"), (epoch, "epoch")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise DataError(f"batch state {name} must be an integer, got {value!r}")
        if not 0 <= position < self.n_chunks:
            raise DataError(
                f"batch state position must be in [0, {self.n_chunks}), got {position} "
                f"(was the data or seq_len/batch_size changed?)"
            )
        if epoch < 0:
            raise DataError(f"batch state epoch must be >= 0, got {epoch}")
        self.position, self.epoch = int(position), int(epoch)


# -------------------------------------------------------------------------------- prepare


def prepare(text, val_fraction, batch_size, seq_len, vocab=None):
    """text -> (vocab, train_batches, val_batches or None).

    The vocabulary is built from the whole text unless given (then every character must be
    in it). Validation uses the same B and T if it can fill them, otherwise batch 1 and
    T' = min(T, n_val - 1). val_batches is None when val_fraction == 0.
    """
    vocab = Vocab.from_text(text) if vocab is None else vocab
    train_ids, val_ids = split(vocab.encode(text), val_fraction)
    train = Batches(train_ids, batch_size, seq_len, name="training data")
    if val_fraction == 0:
        return vocab, train, None
    if len(val_ids) >= train.batch_size * train.seq_len + 1:
        val = Batches(val_ids, train.batch_size, train.seq_len, name="validation data")
    else:
        val = Batches(val_ids, 1, min(train.seq_len, len(val_ids) - 1), name="validation data")
    return vocab, train, val


# ---------------------------------------------------------------------------------- labelled series
from .series_files import read_csv, read_series, read_ts  # noqa: E402,F401 - (T_i, D) series + labels
