"""bptt.data: loading text, the default corpus, the vocabulary, the split and the (T, B) batches."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bptt import data
from bptt.data import Batches, DataError, Vocab, default_corpus, load_text, prepare, split


def raises(message):
    """pytest.raises(DataError) matching the whole one-line message exactly."""
    return pytest.raises(DataError, match="^" + re.escape(message) + "$")


# ------------------------------------------------------------------------------ load_text


def test_load_text_reads_utf8_and_keeps_crlf(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes("héllo\r\nwörld\n".encode("utf-8"))
    assert load_text(f) == "héllo\r\nwörld\n"
    assert load_text(str(f)) == "héllo\r\nwörld\n"


def test_load_text_strips_bom(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbfabc\r\n")
    assert load_text(f) == "abc\r\n"


def test_load_text_missing(tmp_path):
    f = tmp_path / "nope.txt"
    with raises(f"data file not found: {f}"):
        load_text(f)


def test_load_text_directory(tmp_path):
    with raises(f"{tmp_path} is a directory, not a text file"):
        load_text(tmp_path)


def test_load_text_empty(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_bytes(b"")
    with raises(f"{f} is empty"):
        load_text(f)
    f.write_bytes(b"\xef\xbb\xbf")  # a BOM and nothing else
    with raises(f"{f} is empty"):
        load_text(f)


def test_load_text_binary(tmp_path):
    f = tmp_path / "blob.bin"
    f.write_bytes(b"abc\x00\x01\x02def")
    with raises(f"{f} looks like a binary file (contains NUL bytes)"):
        load_text(f)


def test_load_text_latin1(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 au lait".encode("latin-1"))  # é is the single byte 0xe9
    with raises(f"{f} is not UTF-8 text (invalid byte 0xe9 at offset 3)"):
        load_text(f)


def test_load_text_utf16(tmp_path):
    f = tmp_path / "utf16.txt"
    f.write_bytes("hello".encode("utf-16"))
    with pytest.raises(DataError, match="is UTF-16 text, not UTF-8"):
        load_text(f)


def test_load_text_unreadable(tmp_path, monkeypatch):
    # chmod 000 does not stop root, so simulate the permission error the OS would give.
    f = tmp_path / "secret.txt"
    f.write_text("abc")

    def denied(path, mode="r"):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "open", denied, raising=False)
    with raises(f"cannot read {f}: permission denied"):
        load_text(f)


# --------------------------------------------------------------------------- default_corpus


def test_default_corpus_is_deterministic_and_capped():
    text1, desc1 = default_corpus()
    text2, desc2 = default_corpus()
    assert text1 == text2 and desc1 == desc2
    assert 2_000_000 - 4 < len(text1.encode("utf-8")) <= 2_000_000
    assert re.fullmatch(r"Python \d+\.\d+ standard library, \d+ files, 2\.0 MB \(.+\)", desc1)


def test_default_corpus_small_cap_is_a_prefix():
    small, desc = default_corpus(max_bytes=10_000)
    big, _ = default_corpus(max_bytes=100_000)
    assert 10_000 - 4 < len(small.encode("utf-8")) <= 10_000
    assert big.startswith(small)
    assert re.search(r", \d+ files?, 0\.0 MB ", desc)


def test_default_corpus_order_and_skips_non_utf8(tmp_path, monkeypatch):
    (tmp_path / "b.py").write_text("B\n")
    (tmp_path / "a.py").write_text("A\n")
    (tmp_path / "c.py").write_bytes(b"\xff\xfe bad\n")
    (tmp_path / "d.txt").write_text("not python\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.py").write_text("nested\n")
    monkeypatch.setattr(data.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    text, desc = default_corpus()
    assert text == "A\nB\n"
    assert ", 2 files, " in desc and str(tmp_path) in desc


def test_default_corpus_nothing_found(tmp_path, monkeypatch):
    monkeypatch.setattr(data.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with raises(f"no Python standard library source files found in {tmp_path}"):
        default_corpus()


# ---------------------------------------------------------------------------------- Vocab


def test_vocab_sorted_unique_and_round_trip():
    v = Vocab.from_text("hello world")
    assert v.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert len(v) == 8
    ids = v.encode("hello world")
    assert ids.dtype == np.int32
    assert ids.tolist() == [3, 2, 4, 4, 5, 0, 7, 5, 6, 4, 1]
    assert v.decode(ids) == "hello world"


def test_vocab_chinese_round_trip():
    text = "春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。\r\n"
    v = Vocab.from_text(text)
    assert v.chars == sorted(set(text))
    assert v.decode(v.encode(text)) == text


def test_vocab_json_round_trip_keeps_ids():
    v = Vocab.from_text("zéa中\t\n")
    w = Vocab(json.loads(json.dumps(v.to_list())))
    assert w == v and w.chars == v.chars
    # A vocabulary in any order (not sorted) still encodes by its own ids.
    r = Vocab(["c", "a", "b"])
    assert r.encode("abc").tolist() == [1, 2, 0]
    assert r.decode([0, 1, 2]) == "cab"


def test_vocab_unseen_characters():
    v = Vocab.from_text("abc")
    with raises("the text has 3 characters not in the model's vocabulary: 'é', '中', '\\t'"):
        v.encode("aé中\tbé\t")


def test_vocab_many_unseen_characters():
    v = Vocab.from_text("a")
    with raises(
        "the text has 12 characters not in the model's vocabulary: "
        "'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', and 2 more"
    ):
        v.encode("abcdefghijklm")


def test_vocab_rejects_duplicates_and_bad_entries():
    with raises("the vocabulary has duplicate characters: 'a'"):
        Vocab(["a", "b", "a"])
    with raises("vocabulary entries must be single characters, got 'ab'"):
        Vocab(["ab"])
    with raises("the vocabulary is empty"):
        Vocab([])
    with raises("cannot build a vocabulary from empty text"):
        Vocab.from_text("")


def test_vocab_decode_out_of_range():
    with raises("ids must lie in [0, 2), got values in [0, 5]"):
        Vocab("ab").decode([0, 5])


# ---------------------------------------------------------------------------------- split


def test_split_is_contiguous():
    ids = np.arange(100)
    train, val = split(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split(ids, 0.0)
    assert train.tolist() == list(range(100)) and len(val) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1"])
def test_split_bad_fraction(bad):
    with raises(f"val_fraction must be in [0, 1), got {bad!r}"):
        split(np.arange(10), bad)


def test_split_parts_too_short():
    with raises(
        "the validation part (0.1 of 10 tokens) would have 1 token, it needs at least 2; "
        "use more data or a larger val_fraction"
    ):
        split(np.arange(10), 0.1)
    with raises("the training part (10 tokens minus 9 for validation) would have 1 token, "
                "it needs at least 2"):
        split(np.arange(10), 0.9)


# -------------------------------------------------------------------------------- Batches


def test_batches_exact_chunks():
    # 23 ids, B=2 -> streams of L = 11: stream 0 = 0..10 (targets 1..11), stream 1 = 11..21.
    b = Batches(np.arange(23), batch_size=2, seq_len=3)
    assert (b.stream_len, b.n_chunks, len(b)) == (11, 3, 3)
    x, y = b.chunk(0)
    assert x.shape == (3, 2)  # (T, B), time-major
    assert x.tolist() == [[0, 11], [1, 12], [2, 13]]
    assert y.tolist() == [[1, 12], [2, 13], [3, 14]]
    x, y = b.chunk(2)
    assert x.tolist() == [[6, 17], [7, 18], [8, 19]]
    assert y.tolist() == [[7, 18], [8, 19], [9, 20]]


def test_batches_targets_are_next_inputs_in_each_stream():
    ids = np.random.default_rng(0).integers(0, 50, size=1001)
    b = Batches(ids, batch_size=4, seq_len=7)
    L = b.stream_len
    xs, ys = zip(*b.chunks())
    x = np.concatenate(xs)  # (n_chunks*T, B)
    y = np.concatenate(ys)
    for s in range(4):
        assert np.array_equal(x[:, s], ids[s * L : s * L + len(x)])
        assert np.array_equal(y[:, s], ids[s * L + 1 : s * L + 1 + len(x)])
    assert np.array_equal(x[1:], y[:-1])  # within a stream the target is the next input


def test_batches_next_wraps_and_flags_new_epoch():
    b = Batches(np.arange(23), batch_size=2, seq_len=3)
    seen = []
    for _ in range(7):
        x, y, new_epoch = b.next()
        seen.append((int(x[0, 0]), new_epoch, b.epoch, b.position))
    assert seen == [
        (0, True, 0, 1), (3, False, 0, 2), (6, False, 1, 0),
        (0, True, 1, 1), (3, False, 1, 2), (6, False, 2, 0),
        (0, True, 2, 1),
    ]


def test_batches_chunks_ignores_position():
    b = Batches(np.arange(23), batch_size=2, seq_len=3)
    b.next()
    first = [x[0, 0] for x, _ in b.chunks()]
    assert first == [0, 3, 6] and b.position == 1


def test_batches_state_dict_resumes_exactly():
    ids = np.random.default_rng(1).integers(0, 9, size=500)
    a = Batches(ids, batch_size=3, seq_len=5)
    for _ in range(40):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    assert state == {"position": a.position, "epoch": a.epoch} and state["epoch"] >= 1
    b = Batches(ids, batch_size=3, seq_len=5)
    b.load_state_dict(state)
    for _ in range(50):
        xa, ya, na = a.next()
        xb, yb, nb = b.next()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and na == nb
    assert a.state_dict() == b.state_dict()


def test_batches_load_state_dict_validates():
    b = Batches(np.arange(23), batch_size=2, seq_len=3)
    with raises("batch state position must be in [0, 3), got 3 "
                "(was the data or seq_len/batch_size changed?)"):
        b.load_state_dict({"position": 3, "epoch": 0})
    with raises("batch state epoch must be >= 0, got -1"):
        b.load_state_dict({"position": 0, "epoch": -1})
    with raises("batch state position must be an integer, got 1.5"):
        b.load_state_dict({"position": 1.5, "epoch": 0})
    with raises("batch state must be a dict with 'position' and 'epoch', got {'epoch': 0}"):
        b.load_state_dict({"epoch": 0})
    assert b.state_dict() == {"position": 0, "epoch": 0}


def test_batches_too_short():
    with raises("sequence length 3 x batch 2 needs at least 2*3+1 = 7 characters, "
                "the data has 6"):
        Batches(np.arange(6), batch_size=2, seq_len=3)
    b = Batches(np.arange(7), batch_size=2, seq_len=3)  # exactly enough
    assert b.n_chunks == 1


def test_batches_bad_sizes():
    with raises("seq_len must be >= 1, got 0"):
        Batches(np.arange(10), batch_size=1, seq_len=0)
    with raises("batch_size must be >= 1, got -2"):
        Batches(np.arange(10), batch_size=-2, seq_len=1)
    with raises("seq_len must be an integer, got 2.5"):
        Batches(np.arange(10), batch_size=1, seq_len=2.5)


# -------------------------------------------------------------------------------- prepare


def test_prepare_builds_vocab_train_and_val():
    text = "abcdefghij" * 30  # 300 characters
    vocab, train, val = prepare(text, 0.1, batch_size=4, seq_len=5)
    assert len(vocab) == 10
    assert (train.batch_size, train.seq_len) == (4, 5)
    assert (val.batch_size, val.seq_len) == (4, 5)  # 30 >= 4*5+1
    x, y = train.chunk(0)
    assert vocab.decode(x[:, 0]) == text[:5] and vocab.decode(y[:, 0]) == text[1:6]
    x, _ = val.chunk(0)
    assert vocab.decode(x[:, 0]) == text[270:275]


def test_prepare_val_falls_back_to_batch_one():
    text = "abcdefghij" * 10  # 100 characters: val has 10
    _, train, val = prepare(text, 0.1, batch_size=4, seq_len=5)
    assert (val.batch_size, val.seq_len, val.n_chunks) == (1, 5, 1)
    _, _, val = prepare(text, 0.1, batch_size=2, seq_len=20)
    assert (val.batch_size, val.seq_len, val.n_chunks) == (1, 9, 1)


def test_prepare_no_validation_and_given_vocab():
    vocab, train, val = prepare("hello world", 0.0, batch_size=1, seq_len=4)
    assert val is None and train.n_chunks == 2
    with raises("the text has 1 character not in the model's vocabulary: '!'"):
        prepare("hello world!", 0.0, 1, 4, vocab=vocab)


def test_prepare_too_short_training_data():
    with raises("sequence length 50 x batch 2 needs at least 2*50+1 = 101 characters, "
                "the training data has 90"):
        prepare("x" * 100, 0.1, batch_size=2, seq_len=50)


def test_prepare_tiny_shakespeare():
    # DESIGN.md: tiny-shakespeare lives in ../shared/data, never copied into the project.
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
    text = load_text(path)
    assert len(text) == 1_115_394
    vocab, train, val = prepare(text, 0.1, batch_size=50, seq_len=50)
    assert len(vocab) == 65  # char-rnn's count
    n_val = round(len(text) * 0.1)
    assert train.n_chunks == (len(text) - n_val - 1) // 50 // 50
    assert val.n_chunks == (n_val - 1) // 50 // 50
    x, y = train.chunk(0)
    assert vocab.decode(x[:, 0]) == text[:50] and vocab.decode(y[:, 0]) == text[1:51]


def test_prepare_small_validation_falls_back():
    text = "".join(np.random.default_rng(0).choice(list("abcdefgh"), size=20_000))
    _, train, val = prepare(text, 0.1, batch_size=50, seq_len=50)  # val 2000 < 50*50+1
    assert (val.batch_size, val.seq_len, val.n_chunks) == (1, 50, 1999 // 50)
