"""ONNX export, checked with ONNX Runtime.

- Every cell (RNN tanh and relu, LSTM, GRU) x 1-3 layers x one or two directions: ONNX Runtime's
  outputs and final states equal the layer's forward to 1e-5 (float32) for batch sizes and
  lengths of its own (the graph is built from the weights, no example input), with and without
  the optional initial states; ``onnx.checker`` passes on the written file.
- A character model (every cell, 1-2 layers) likewise; its vocabulary and arguments are in the
  metadata.
- The README's ONNX Runtime sampling loop, run as it is in a process where bptt and torch cannot
  be imported, prints the same 200 characters as ``bptt sample --temperature 0`` of a trained run.
- Without the onnx package: one line, exit 1, and ``import bptt`` never imports onnx.
(Bad checkpoints and unwritable paths are rows of ``fault_cases.py``.)
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import bptt
from bptt.export import build_onnx, to_onnx

from helpers import make_layer, state_arrays
from training_helpers import REPO, TINY, cli, make_text, one_error_line, write_text

TOL = 1e-5
SHAPES = [(1, 1), (6, 3), (11, 2)]  # (T, B)
ort.set_default_logger_severity(3)  # the optional states' defaults draw a warning per session


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_err(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
    return max(float(np.abs(g - w).max()) for g, w in zip(got, want))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "gru"])
def test_layer_matches_onnx_runtime(kind, layers, bidirectional, tmp_path):
    D = 5
    layer = make_layer(kind, D, 4, dtype="float32", seed=layers, num_layers=layers,
                       bidirectional=bidirectional).eval()
    path = to_onnx(layer, tmp_path / "layer.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    sess = session(path)
    names = ["h0", "c0"][: 2 if kind == "lstm" else 1]
    rng = np.random.default_rng(7)
    for T, B in SHAPES:
        x = rng.standard_normal((T, B, D)).astype(np.float32)
        out, state = layer.forward(x)  # zero initial state: the inputs h0/c0 left out
        assert max_err(sess.run(None, {"x": x}), [out, *state_arrays(state)]) <= TOL
        s0 = [rng.standard_normal((layers * layer.num_directions, B, 4)).astype(np.float32) for _ in names]
        out, state = layer.forward(x, tuple(s0) if kind == "lstm" else s0[0])
        got = sess.run(None, {"x": x, **dict(zip(names, s0))})
        assert max_err(got, [out, *state_arrays(state)]) <= TOL


def test_layer_batch_first_without_bias(tmp_path):
    layer = bptt.GRU(3, 5, num_layers=2, bias=False, batch_first=True, bidirectional=True, seed=1).eval()
    sess = session(to_onnx(layer, tmp_path / "gru.onnx"))
    x = np.random.default_rng(0).standard_normal((4, 9, 3)).astype(np.float32)  # (B, T, D)
    out, h = layer.forward(x)
    assert max_err(sess.run(None, {"x": x}), [out, h]) <= TOL
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["model"])
    assert meta == {"class": "GRU", "input_size": 3, "hidden_size": 5, "num_layers": 2, "bias": False,
                    "batch_first": True, "bidirectional": True}


def _graph_ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_model_matches_onnx_runtime(cell, layers, tmp_path):
    cfg = bptt.ModelConfig(vocab_size=11, cell=cell, hidden_size=6, num_layers=layers, embedding_dim=4)
    model = bptt.CharModel(cfg, seed=3).eval()
    chars = list("abcdefghij\n")
    path = to_onnx(model, tmp_path / "char.onnx", vocab=chars)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = _graph_ops(proto)
    assert ops.count(cell.upper()) == layers and "Gather" in ops and "MatMul" in ops
    sess = session(path)
    assert [i.name for i in sess.get_inputs()][0] == "ids"
    assert [o.name for o in sess.get_outputs()] == ["logits", "h_n", "c_n"][: 3 if cell == "lstm" else 2]
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == chars
    assert json.loads(meta["model"]) == {"class": "CharModel", **cfg.to_dict()}
    names = ["h0", "c0"][: 2 if cell == "lstm" else 1]
    rng = np.random.default_rng(5)
    for T, B in SHAPES:
        ids = rng.integers(0, 11, (T, B)).astype(np.int64)
        logits, state = model.forward(ids)
        assert max_err(sess.run(None, {"ids": ids}), [logits, *state_arrays(state)]) <= TOL
        s0 = [rng.standard_normal((layers, B, 6)).astype(np.float32) for _ in names]
        logits, state = model.forward(ids, tuple(s0) if cell == "lstm" else s0[0])
        got = sess.run(None, {"ids": ids, **dict(zip(names, s0))})
        assert max_err(got, [logits, *state_arrays(state)]) <= TOL


@pytest.mark.parametrize("cell,pool,bidirectional,layers,patch,members,diff", [
    ("lstm", "last", False, 1, 1, 1, False), ("gru", "mean", True, 2, 3, 1, False), ("rnn", "last", True, 2, 4, 1, False),
    ("lstm", "mean", True, 1, 2, 1, True), ("gru", "mean", True, 1, 2, 3, False), ("gru", "last", False, 1, 3, 2, True),
    ("gru", "max", True, 1, 2, 1, False), ("lstm", "meanmax", True, 1, 1, 2, False),
    ("gru", "attn", True, 1, 2, 2, False)])
def test_classifier_matches_onnx_runtime(cell, pool, bidirectional, layers, patch, members, diff):
    """Raw series of unequal lengths (garbage past each length, a NaN inside) -> the graph's
    logits equal the model's on the standardised, zero-padded series (an ensemble: the log of
    its members' mean softmax; diff: the first differences computed in the graph)."""
    from bptt.classify import EnsembleClassifier, SequenceClassifier, Standardizer

    D, C = 2, 3
    kw = dict(cell=cell, hidden_size=4, num_layers=layers, bidirectional=bidirectional, pool=pool, seed=1, patch=patch)
    F = 2 * D if diff else D  # the model's input features
    model = (SequenceClassifier(F, C, **kw) if members == 1 else EnsembleClassifier(F, C, members, **kw)).eval()
    for k, v in model.params.items():  # attn: score weights away from their zero start (the mean)
        if k.endswith("attn.weight"):
            v[...] = np.random.default_rng(len(k)).standard_normal(v.shape)
    norm = Standardizer([0.5, -1.0, 0.1, -0.2][:F], [2.0, 0.5, 1.5, 0.7][:F], diff=diff)
    sess = ort.InferenceSession(build_onnx(model, ["a", "b", "c"], norm).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for T, lengths in [(10, [10, 1, 7, 4]), (1, [1]), (6, [2, 6, 5])]:
        raw = rng.standard_normal((T, len(lengths), D)).astype(np.float32) * 3
        raw[0, 0, 1] = np.nan
        z = norm.transform([raw[:n, b] for b, n in enumerate(lengths)], np.float32)
        x = np.zeros((T, len(lengths), F), np.float32)
        for b, n in enumerate(lengths):
            x[:n, b] = z[b]
        want = model.predict(x, np.array(lengths))
        got = sess.run(["logits"], {"series": raw, "sequence_lens": np.array(lengths, np.int32)})[0]
        assert got.shape == (len(lengths), C) and float(np.abs(got - want).max()) <= TOL
    meta = {p.key: json.loads(p.value) for p in build_onnx(model, ["a", "b", "c"], norm).metadata_props}
    assert meta["classes"] == ["a", "b", "c"] and meta["model"]["patch"] == patch
    assert meta["model"]["members"] == members and meta["model"]["diff"] == diff
    assert meta["model"]["input_size"] == D
    with pytest.raises(bptt.export.ExportError, match="standardisation"):
        build_onnx(model, ["a", "b", "c"])


def _classifier_onnx_runs(proto, norm, D, C, rng):
    """An exported classifier on series of unequal lengths (one of a single step), as ONNX Runtime
    runs it -> (T, the series standardised for bptt, the graph's logits (B, C)) for each batch."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for T, lengths in [(10, [10, 1, 7, 4]), (1, [1]), (6, [2, 6, 5, 3])]:
        raw = rng.standard_normal((T, len(lengths), D)).astype(np.float32) * 3
        z = norm.transform([raw[:n, b] for b, n in enumerate(lengths)], np.float32)
        got = sess.run(["logits"], {"series": raw, "sequence_lens": np.array(lengths, np.int32)})[0]
        assert got.shape == (len(lengths), C)
        yield T, z, got


@pytest.mark.parametrize("members,diff", [(2, False), (1, True)])
def test_rotation_tta_matches_onnx_runtime(members, diff):
    """A RotationTTA (--tta 8, as --patch auto's rotated candidate predicts): the graph's logits
    equal the log of bptt's mean probability over the 8 rotations, for unequal lengths whose
    rotations round halves (length 4: 0.5, 1.5, 2.5 and 3.5 steps) and a series of one step."""
    from bptt.classify import EnsembleClassifier, RotationTTA, SequenceClassifier, Standardizer, predict_logits

    D, C = 2, 3
    F = 2 * D if diff else D
    kw = dict(cell="gru", hidden_size=4, bidirectional=True, pool="mean", patch=2, seed=1)
    model = (EnsembleClassifier(F, C, members=members, **kw) if members > 1 else SequenceClassifier(F, C, **kw)).eval()
    tta = RotationTTA(model, 8)
    norm = Standardizer([0.5, -1.0, 0.1, -0.2][:F], [2.0, 0.5, 1.5, 0.7][:F], diff=diff)
    proto = build_onnx(tta, ["a", "b", "c"], norm)
    for T, z, got in _classifier_onnx_runs(proto, norm, D, C, np.random.default_rng(3)):
        assert float(np.abs(got - predict_logits(tta, z)).max()) <= TOL
        if T > 1:
            assert float(np.abs(got - predict_logits(model, z)).max()) > 10 * TOL  # the rotations count
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["model"]["rotations"] == 8 and meta["model"]["members"] == members and meta["model"]["patch"] == 2


@pytest.mark.parametrize("diff", [False, True])
def test_probability_mean_matches_onnx_runtime(diff):
    """A ProbabilityMean (--patch auto's mix) of an ensemble with patch 2, an LSTM with patch 1 and a
    RotationTTA with patch 3: the graph's logits equal the log of bptt's mean probability."""
    from bptt.classify import EnsembleClassifier, ProbabilityMean, RotationTTA, SequenceClassifier, Standardizer
    from bptt.classify import predict_logits

    D, C = 2, 3
    F = 2 * D if diff else D
    parts = [EnsembleClassifier(F, C, members=2, cell="gru", hidden_size=4, pool="mean", patch=2, seed=1).eval(),
             SequenceClassifier(F, C, cell="lstm", hidden_size=3, pool="last", bidirectional=True, seed=2).eval(),
             RotationTTA(SequenceClassifier(F, C, cell="gru", hidden_size=4, pool="meanmax", patch=3, seed=3).eval(), 4)]
    mix = ProbabilityMean(parts)
    norm = Standardizer([0.5, -1.0, 0.1, -0.2][:F], [2.0, 0.5, 1.5, 0.7][:F], diff=diff)
    proto = build_onnx(mix, ["a", "b", "c"], norm)
    for _, z, got in _classifier_onnx_runs(proto, norm, D, C, np.random.default_rng(4)):
        assert float(np.abs(got - predict_logits(mix, z)).max()) <= TOL
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["model"]["class"] == "ProbabilityMean"
    assert [(p["patch"], p["members"], p.get("rotations", 1)) for p in meta["model"]["parts"]] == [(2, 2, 1), (1, 1, 1),
                                                                                                   (3, 1, 4)]


def test_probability_mean_of_own_standardisations_matches_onnx_runtime():
    """A ProbabilityMean whose parts standardise each in their own way (--patch auto's rotated
    candidate reads first differences, the others do not): in the graph each part's series are
    standardised with its own statistics, as bptt does from the series as read (AsRead); a missing
    value too."""
    from bptt.classify import AsRead, ProbabilityMean, RotationTTA, SequenceClassifier, Standardizer, predict_logits

    D, C = 2, 3
    parts = [SequenceClassifier(D, C, cell="gru", hidden_size=4, pool="mean", patch=2, seed=1).eval(),
             SequenceClassifier(D, C, cell="lstm", hidden_size=3, pool="last", seed=2).eval(),
             RotationTTA(SequenceClassifier(2 * D, C, cell="gru", hidden_size=4, pool="mean", patch=3, seed=3).eval(), 4)]
    norms = [Standardizer([0.5, -1.0], [2.0, 0.5]), Standardizer([-0.3, 0.2], [1.2, 0.8]),
             Standardizer([0.5, -1.0, 0.1, -0.2], [2.0, 0.5, 1.5, 0.7], diff=True)]
    mix = ProbabilityMean(parts, norms)
    proto = build_onnx(mix, ["a", "b", "c"], AsRead(D))
    for _, raw, got in _classifier_onnx_runs(proto, AsRead(D), D, C, np.random.default_rng(6)):
        want = predict_logits(mix, raw)
        assert float(np.abs(got - want).max()) <= TOL
        same = ProbabilityMean(parts[:2] + [parts[2]], [norms[0]] * 2 + [norms[2]])  # the norms count
        assert float(np.abs(predict_logits(same, raw) - want).max()) > 10 * TOL
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    raw = np.random.default_rng(7).standard_normal((5, 2, D)).astype(np.float32)
    raw[2, 0, 1] = np.nan
    got = sess.run(["logits"], {"series": raw, "sequence_lens": np.array([5, 3], np.int32)})[0]
    assert float(np.abs(got - predict_logits(mix, [raw[:5, 0], raw[:3, 1]])).max()) <= TOL
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert [p["diff"] for p in meta["model"]["parts"]] == [False, False, True]


def test_unsupported_model_and_wrong_vocabulary():
    with pytest.raises(ValueError, match=r"cannot export a Linear to ONNX"):
        build_onnx(bptt.Linear(3, 4))
    model = bptt.CharModel(bptt.ModelConfig(vocab_size=3, hidden_size=4, num_layers=1, embedding_dim=2))
    with pytest.raises(ValueError, match=r"the vocabulary has 2 characters but the model was built for 3"):
        build_onnx(model, vocab=["a", "b"])


# ----------------------------------------------------------------------------- a trained run
def readme_snippet():
    """The Python block of the README's section "Use the model elsewhere"."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Use the model elsewhere", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small LSTM run trained until its greedy samples are words (one numba thread: for a model
    this small it is the fastest, and it does not wait on cores other processes keep busy)."""
    base = tmp_path_factory.mktemp("export")
    data = write_text(base / "text.txt", make_text(600))
    out = str(base / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "bptt.cli", "train", "--data", data, *TINY, "--cell", "lstm", "--steps", "150",
         "--lr", "0.02", "--optimizer", "adam", "--out", out],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return out


def test_readme_loop_samples_what_bptt_samples(run, tmp_path, capsys):
    rc, out, _ = cli(capsys, "export", run, "--onnx", tmp_path / "model.onnx")
    assert rc == 0 and "model.onnx" in out
    rc, expected, _ = cli(capsys, "sample", run, "--temperature", "0", "--length", "200")
    assert rc == 0
    # the snippet exactly as printed, in a process where neither bptt nor torch can be imported
    code = "import sys\nsys.modules['bptt'] = sys.modules['torch'] = None\n" + readme_snippet()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) == 201 and len(set(proc.stdout)) > 4  # 200 characters, not one repeated
    assert proc.stdout == expected


def test_export_without_onnx_is_one_line(run, tmp_path):
    """``import bptt`` and the CLI never import onnx; without it, export says what to install."""
    code = ("import sys\nsys.modules['onnx'] = None\nimport bptt, bptt.cli\n"
            "assert not any(m.startswith('onnx') for m in sys.modules if sys.modules[m] is not None)\n"
            f"sys.exit(bptt.cli.main(['export', {run!r}, '--onnx', {str(tmp_path / 'm.onnx')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert one_error_line(proc.stderr) == (
        "bptt: error: ONNX export needs the onnx package, which is not installed: pip install 'bptt[onnx]'")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_file(run, tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    rc, _, err = cli(capsys, "export", run, "--onnx", target)
    assert rc == 1 and one_error_line(err) == f"bptt: error: Is a directory: {target}"
    assert sorted(os.listdir(tmp_path)) == ["taken"] and os.listdir(target) == []
