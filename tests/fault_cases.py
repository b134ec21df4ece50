"""The table of bad input and faults tried against every ``bptt`` command, shared by
``tests/test_faults.py`` (which asserts on each row) and ``benchmarks/faults_table.py`` (which runs
the same rows and writes ``docs/faults.md`` from the real messages).

Each row runs ``bptt.cli.main`` in this process on a fresh copy of a small trained run, with
stdout and stderr captured, optionally under a simulated fault (a full disk, a read-only
directory) or after damaging the copy's newest checkpoint. Rows already asserted in
``tests/test_cli.py`` with the same checks are marked ``covered`` there: the table shows them,
the tests here skip them.
"""

import contextlib
import errno
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Optional
from unittest import mock

import numpy as np

from bptt import checkpoint as ckpt_io
from bptt.cli import build_parser, main

from training_helpers import REPO, make_text, write_text

# the small model every training row uses (a step takes about a millisecond)
SMALL = ["--hidden", "8", "--layers", "1", "--embedding-dim", "4", "--seq-len", "4", "--batch", "2",
         "--eval-batches", "1", "--sample-length", "0", "--quiet"]
INFO = ("data: ", "model: ", "resuming ", "step ", "  sample: ")  # `bptt train`'s own progress lines


# ----------------------------------------------------------------------------- running
def run_cli(argv):
    """``bptt ARGV`` in this process -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # --help and the like; never expected for bad input
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def error_line(err):
    """stderr of a failed command -> its one error line. Fails unless there is no traceback, the
    error is the last line, and every other line is one of train's start-up lines."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    *before, last = lines
    assert last.startswith(("bptt: error: ", "error: bptt")), err
    assert all(line.startswith(INFO) for line in before), f"more than the error on stderr:\n{err}"
    return last


def checkpoint_files(run_dir):
    """relative path -> SHA-256 of every file of every checkpoint, and of ``latest``."""
    out = {}
    for root, _, files in os.walk(run_dir):
        rel_root = os.path.relpath(root, run_dir)
        for name in files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel == "latest" or rel.startswith("ckpt-"):
                with open(os.path.join(root, name), "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def leftovers(run_dir):
    """Names in run_dir left by an interrupted or failed write."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir) if n.startswith(".") or ".old-" in n)


# ----------------------------------------------------------------------------- the test bed
def bed_train_argv(text, steps, out):
    """The command that trains the bed's run (6 steps); with other steps, the same run longer."""
    return ["train", "--data", text, *SMALL, "--steps", steps, "--checkpoint-every", 3, "--out", out]


def make_bed(base):
    """Files and a trained run under ``base`` (a directory), built once per session/script:
    a 6-step run with checkpoints at 3 and 6, and bad files of every kind."""
    base = str(base)
    files = {
        "text": write_text(os.path.join(base, "text.txt"), make_text(200)),
        "one": write_text(os.path.join(base, "one.txt"), "a"),
        "short": write_text(os.path.join(base, "short.txt"), "the cat sat on a mat and a dog ran far\n"),
        "empty": write_text(os.path.join(base, "empty.txt"), ""),
        "unseen": write_text(os.path.join(base, "unseen.txt"), "the Zebra ate QQ x"),
    }
    for name, content in (("binary", bytes(range(256)) * 4), ("latin1", "café olé\n".encode("latin-1")),
                          ("garbage_metrics", b"step 1 loss 2.0\nstep 2 loss 1.9\n")):
        files[name] = os.path.join(base, name + ".dat")
        with open(files[name], "wb") as f:
            f.write(content)
    files["csv"] = write_text(os.path.join(base, "series.csv"), "t,v\n" + "".join(
        f"{i},{np.sin(i / 3):.4f}\n" for i in range(60)))
    files["csv_short"] = write_text(os.path.join(base, "short.csv"), "v\n1.5\n2.5\n")
    files["csv_text"] = write_text(os.path.join(base, "words.csv"), "t,v\n1,2.0\n2,three\n")
    files["series"] = os.path.join(base, "series-run")
    if "train --task" in available_commands() and not os.path.isdir(files["series"]):
        rc, _, err = run_cli(["train", "--task", "series", "--data", files["csv"], "--column", "v", "--window", 3,
                              "--hidden", 4, "--steps", 2, "--quiet", "--out", files["series"]])
        assert rc == 0, err
    run = os.path.join(base, "run")
    if not os.path.isdir(run):
        rc, _, err = run_cli(bed_train_argv(files["text"], 6, run))
        assert rc == 0, err
    return SimpleNamespace(base=base, run=run, **files)


def case_env(bed, tmp):
    """A fresh copy of the trained run in ``tmp`` (a directory) for one row."""
    tmp = str(tmp)
    run = os.path.join(tmp, "run")
    shutil.copytree(bed.run, run)
    env = SimpleNamespace(**vars(bed))
    env.tmp, env.run, env.new = tmp, run, os.path.join(tmp, "new")
    env.emptydir = os.path.join(tmp, "emptydir")  # a directory with nothing in it, of this row only
    os.makedirs(env.emptydir)
    with open(os.path.join(run, "latest"), encoding="utf-8") as f:
        env.latest = os.path.join(run, f.read().strip())
    return env


# ----------------------------------------------------------------------------- simulated faults
def _enospc(path=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([path] if path else []))


@contextlib.contextmanager
def disk_full_at_tensor_write(n):
    """The n-th tensor file written (two per checkpoint) fails with ENOSPC (no file name, as a
    raw write error would)."""
    real, calls = ckpt_io._write_tensors, [0]

    def flaky(path, *a, **kw):
        calls[0] += 1
        if calls[0] == n:
            raise _enospc()
        return real(path, *a, **kw)

    with mock.patch.object(ckpt_io, "_write_tensors", flaky):
        yield


@contextlib.contextmanager
def disk_full_in_tensor_file():
    """The disk fills up while a tensor file is being written: the first 16 bytes land (a partial
    file, as a real full disk leaves), then the write's own ENOSPC, which names no file."""

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:16])
            raise _enospc()

        def __getattr__(self, name):
            return getattr(self.f, name)

    def open_(path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        return Full(f) if str(path).endswith(".safetensors") and "w" in mode else f

    with mock.patch.object(ckpt_io, "open", open_, create=True):
        yield


@contextlib.contextmanager
def disk_full_at_json_write():
    def full(path, obj):
        with open(path, "w") as f:
            f.write("{")
        raise _enospc()

    with mock.patch.object(ckpt_io, "_write_json", full):
        yield


@contextlib.contextmanager
def read_only(pred):
    """os.makedirs raises PermissionError for paths where pred(path) (we run as root, so a chmod
    would not stop a write)."""
    real = os.makedirs

    def makedirs(path, *a, **kw):
        if pred(os.fspath(path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real(path, *a, **kw)

    with mock.patch.object(os, "makedirs", makedirs):
        yield


def _under(root):
    return lambda p: os.path.abspath(p).startswith(os.path.abspath(root))


def _is_tmp_ckpt(p):
    return os.path.basename(p).startswith(".tmp-ckpt-")


# ----------------------------------------------------------------------------- damage
def edit_meta(ckpt, fn):
    p = os.path.join(ckpt, "checkpoint.json")
    with open(p, encoding="utf-8") as f:
        meta = json.load(f)
    fn(meta)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(meta, f)


def edit_tensors(ckpt, fname, fn):
    """Rewrite a tensor file with fn applied to its dict, and put its new checksum in
    checkpoint.json, so that only the checks after the checksum can find the change."""
    from safetensors.numpy import load_file, save_file

    path = os.path.join(ckpt, fname)
    tensors = load_file(path)
    fn(tensors)
    save_file(tensors, path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    edit_meta(ckpt, lambda m: m["files"].__setitem__(fname, digest))


def truncate(path, keep=100):
    with open(path, "r+b") as f:
        f.truncate(keep)


def _set_hidden(m, h, train_too):
    m["model"]["hidden_size"] = h
    if train_too:
        m["train"]["hidden_size"] = h


def _drop_last_char(m, fix_size):
    m["vocab"] = m["vocab"][:-1]
    if fix_size:
        m["model"]["vocab_size"] = len(m["vocab"])


def flip_byte(path):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        f.seek(0)
        f.write(data)


# ----------------------------------------------------------------------------- the rows
@dataclass
class Case:
    command: str  # the command as the table shows it
    what: str  # what is tried
    argv: Callable  # env -> argv list
    expect: str  # regex the error line must match (or, with rc 0, stdout/stderr must match)
    rc: int = 1
    fault: Optional[Callable] = None  # env -> context manager
    damage: Optional[Callable] = None  # newest checkpoint directory of the copy -> None
    covered: Optional[str] = None  # the test file that already asserts this row
    run_unchanged: bool = True  # the copy's checkpoints and `latest` must be byte-identical after
    leftovers_ok: bool = False  # leftovers of an interrupted write may stay (a read-only command)
    resumes: bool = True  # after the fault, `train --resume` goes on (fault rows)
    group: str = "input"  # "input" | "fault" | "checkpoint"
    key: str = field(default="")

    def __post_init__(self):
        self.key = f"{self.command} | {self.what}"


def _train(env, data, *extra):
    return ["train", "--data", data, *SMALL, "--steps", 3, "--out", env.new, *extra]


def _resume(env, *extra):
    return ["train", "--resume", env.run, "--steps", 9, "--quiet", *extra]


ANY_RUN_CMDS = {  # command -> argv given the run-or-checkpoint path to use
    "sample": lambda e, r: ["sample", r, "--length", 5],
    "eval": lambda e, r: ["eval", r, "--data", e.text],
    "gates": lambda e, r: ["gates", r, "--text", "the cat", "--out-dir", os.path.join(e.tmp, "g")],
    "gradflow --checkpoint": lambda e, r: ["gradflow", "--cells", "none", "--seq-len", 5, "--checkpoint", r,
                                           "--out", os.path.join(e.tmp, "gf.png")],
    "train --resume": lambda e, r: ["train", "--resume", r, "--steps", 9, "--quiet"],
    "forecast": lambda e, r: ["forecast", r],
    "plot": lambda e, r: ["plot", r, "--out", os.path.join(e.tmp, "p.png")],
    "export": lambda e, r: ["export", r, "--onnx", os.path.join(e.tmp, "m.onnx")],
}

CASES = []


def _add(*a, **kw):
    CASES.append(Case(*a, **kw))


# --- text files given to train --data and eval --data
for cmd in ("train --data", "eval --data"):
    def argv_for(path_of, extra=(), cmd=cmd):
        if cmd == "train --data":
            return lambda e: _train(e, path_of(e), *extra)
        return lambda e: ["eval", e.run, "--data", path_of(e), *extra]

    tested = "test_cli.py" if cmd == "train --data" else None
    _add(cmd, "a missing file", argv_for(lambda e: os.path.join(e.tmp, "nope.txt")),
         r"data file not found: \S*nope\.txt$", covered="test_cli.py")
    _add(cmd, "a directory instead of a file", argv_for(lambda e: e.emptydir),
         r"emptydir is a directory, not a text file$", covered=tested)
    _add(cmd, "an empty file", argv_for(lambda e: e.empty), r"empty\.txt is empty$", covered=tested)
    _add(cmd, "a binary file", argv_for(lambda e: e.binary),
         r"binary\.dat looks like a binary file \(contains NUL bytes\)$", covered=tested)
    _add(cmd, "non-UTF-8 text (Latin-1)", argv_for(lambda e: e.latin1),
         r"latin1\.dat is not UTF-8 text \(invalid byte 0xe9 at offset 3\)$", covered=tested)

_add("train --data", "a one-character text", lambda e: _train(e, e.one),
     r"the validation part \(0\.1 of 1 tokens?\) would have 0 tokens, it needs at least 2")
_add("train --data", "a one-character text, --val-fraction 0", lambda e: _train(e, e.one, "--val-fraction", 0),
     r"the training part .* would have 1 token, it needs at least 2$")
_add("train --data", "a text shorter than one chunk (36 characters, --seq-len 16 --batch 4)",
     lambda e: _train(e, e.short, "--seq-len", 16, "--batch", 4),
     r"sequence length 16 x batch 4 needs at least 4\*16\+1 = 65 characters, the training data has 3\d$")
_add("eval --data", "a one-character text", lambda e: ["eval", e.run, "--data", e.one],
     r"one\.txt: evaluation needs at least 2 characters, the text has 1$")
_add("eval --data", "characters the model has never seen", lambda e: ["eval", e.run, "--data", e.unseen],
     r"3 characters not in the model's vocabulary: 'Z', 'Q', 'x'$", covered="test_cli.py")

# --- CSV files for the series task, and its forecasts
def _series(env, data, *extra):
    return ["train", "--task", "series", "--data", data, "--window", 3, "--hidden", 4, "--steps", 2, "--quiet",
            "--out", env.new, *extra]


_add("train --task series --data", "a missing file", lambda e: _series(e, os.path.join(e.tmp, "nope.csv")),
     r"nope\.csv: no such file$")
_add("train --task series --data", "a directory instead of a file", lambda e: _series(e, e.emptydir),
     r"emptydir is a directory, not a CSV file$")
_add("train --task series --data", "an empty file", lambda e: _series(e, e.empty),
     r"empty\.txt is empty \(a CSV file with a header row is expected\)$")
_add("train --task series --data", "a binary file", lambda e: _series(e, e.binary),
     r"binary\.dat is not a UTF-8 text \(CSV\) file$")
_add("train --task series --data", "non-UTF-8 text (Latin-1)", lambda e: _series(e, e.latin1),
     r"latin1\.dat is not a UTF-8 text \(CSV\) file$")
_add("train --task series --data", "two values, fewer than a window needs", lambda e: _series(e, e.csv_short),
     r"short\.csv has 2 values; a window of 3 with val-fraction 0\.2 needs at least \d+")
_add("train --task series --data", "a word where a number should be", lambda e: _series(e, e.csv_text, "--column", "v"),
     r"words\.csv, line 3: column 'v' holds 'three', not a number$")
_add("train --task series --data", "--column that is not in the file", lambda e: _series(e, e.csv, "--column", "zz"),
     r"series\.csv has no column 'zz'; its columns are: t, v$")
_add("train --task", "an option that does not apply (--task binary-add --seq-len 5)",
     lambda e: ["train", "--task", "binary-add", "--seq-len", 5, "--out", e.new],
     r"--seq-len does not apply to --task binary-add$")
_add("forecast", "a character-model run", lambda e: ["forecast", e.run], r"ckpt-00000006 is a character-model run, not a task run$")
_add("forecast --data", "a binary file", lambda e: ["forecast", e.series, "--data", e.binary],
     r"binary\.dat is not a UTF-8 text \(CSV\) file$")
_add("forecast --data", "two values, fewer than the model's window", lambda e: ["forecast", e.series, "--data", e.csv_short],
     r"short\.csv has 2 values; the model reads a window of 3$")
_add("sample", "a series-task run", lambda e: ["sample", e.series],
     r"holds a 'series' task run, not a character model; forecast with: bptt forecast RUN --steps K$")
_add("train --resume", "a series-task run", lambda e: ["train", "--resume", e.series, "--quiet"],
     r"holds a 'series' task run; task runs cannot be resumed \(train a new one with bptt train --task series\)$")

# --- numbers out of range
_add("train", "--seq-len 0", lambda e: _train(e, e.text, "--seq-len", 0),
     r"--seq-len: expected a positive integer, got 0", rc=2, covered="test_cli.py")
_add("train", "--seq-len -3", lambda e: _train(e, e.text, "--seq-len", -3),
     r"argument --seq-len: expected a positive integer, got -3 \(see bptt train --help\)$", rc=2)
_add("train", "a batch larger than the data allows (--batch 1000)", lambda e: _train(e, e.text, "--batch", 1000),
     r"sequence length 4 x batch 1000 needs at least 1000\*4\+1 = 4001 characters, the training data has \d+$")
_add("train", "--cell transformer", lambda e: _train(e, e.text, "--cell", "transformer"),
     r"argument --cell: invalid choice: 'transformer'", rc=2, covered="test_cli.py")
_add("train", "--hidden 0", lambda e: _train(e, e.text, "--hidden", 0),
     r"argument --hidden: expected a positive integer, got 0", rc=2)
_add("train", "--lr nan", lambda e: _train(e, e.text, "--lr", "nan"),
     r"argument --lr: expected a finite number >= 0, got nan", rc=2)
_add("train", "--warmup 10 longer than --steps 3 (cosine)",
     lambda e: _train(e, e.text, "--schedule", "cosine", "--warmup", 10),
     r"warmup_steps must be an integer in \[0, total_steps=3\], got 10$")
_add("eval", "--seq-len 0", lambda e: ["eval", e.run, "--data", e.text, "--seq-len", 0],
     r"argument --seq-len: expected a positive integer, got 0", rc=2)
_add("sample", "--length -1", lambda e: ["sample", e.run, "--length", -1], r"--length must be >= 0, got -1$")
_add("sample", "--temperature -1", lambda e: ["sample", e.run, "--temperature", -1],
     r"argument --temperature: expected a finite number >= 0, got -1", rc=2)
_add("sample", "--prime with characters the model has never seen", lambda e: ["sample", e.run, "--prime", "ZZ"],
     r"the text has 1 character not in the model's vocabulary: 'Z'$")
_add("gates", "--text ''", lambda e: ["gates", e.run, "--text", "", "--out-dir", e.tmp], r"--text is empty$")
_add("gates", "--layer 5 (the model has 1)", lambda e: ["gates", e.run, "--text", "the", "--layer", 5, "--out-dir", e.tmp],
     r"layer must be in \[0, 1\) for this model \(1 layers?\), got 5$")
_add("gates", "--units 99", lambda e: ["gates", e.run, "--text", "the", "--units", 99, "--out-dir", e.tmp],
     r"unit 99 is out of range")
_add("gradflow", "--seq-len 0", lambda e: ["gradflow", "--seq-len", 0],
     r"argument --seq-len: expected a positive integer, got 0", rc=2)
_add("gradflow", "--cells transformer", lambda e: ["gradflow", "--cells", "transformer"],
     r"argument --cells: cells must be among \S+, got 'transformer'", rc=2)
_add("gradflow", "--scale inf", lambda e: ["gradflow", "--scale", "inf"],
     r"argument --scale: expected finite numbers >= 0, got inf", rc=2)
_add("gradflow", "--text with characters the model has never seen",
     lambda e: ["gradflow", "--cells", "none", "--checkpoint", e.run, "--text", "ZZ", "--out", os.path.join(e.tmp, "g.png")],
     r"the text has 1 character not in the model's vocabulary: 'Z'$")
_add("gradcheck", "--cell transformer", lambda e: ["gradcheck", "--cell", "transformer"],
     r"argument --cell: invalid choice: 'transformer'", rc=2)
_add("gradcheck", "--seq-len 0", lambda e: ["gradcheck", "--seq-len", 0],
     r"argument --seq-len: expected a positive integer, got 0", rc=2)
_add("gradcheck", "--eps 0", lambda e: ["gradcheck", "--eps", 0], r"--eps must be > 0, got 0\.0$")
_add("plot", "an empty metrics.jsonl",
     lambda e: (open(os.path.join(e.emptydir, "metrics.jsonl"), "w").close(), ["plot", e.emptydir, "--out", os.path.join(e.tmp, "p.png")])[1],
     r"has no metrics yet \(metrics\.jsonl is empty\)$")
_add("plot", "a binary metrics.jsonl",
     lambda e: (shutil.copy(e.binary, os.path.join(e.run, "metrics.jsonl")), ["plot", e.run, "--out", os.path.join(e.tmp, "p.png")])[1],
     r"metrics\.jsonl is not UTF-8 text \(invalid byte at offset 128\); is it a metrics log\?$")
_add("plot", "a metrics.jsonl of other text",
     lambda e: (shutil.copy(e.garbage_metrics, os.path.join(e.run, "metrics.jsonl")), ["plot", e.run, "--out", os.path.join(e.tmp, "p.png")])[1],
     r"metrics\.jsonl, line 1: not a metrics record$")

# --- run directories that are not runs, for every command that reads one
for cmd, argv_of in ANY_RUN_CMDS.items():
    _add(cmd, "a missing run directory", lambda e, f=argv_of: f(e, os.path.join(e.tmp, "nowhere")),
         r"nowhere" if cmd == "plot" else r"no run or checkpoint at \S*nowhere$",
         covered="test_cli.py" if cmd == "sample" else None)
    _add(cmd, "a file instead of a run directory", lambda e, f=argv_of: f(e, e.text),
         r"text\.txt is not a (run directory or checkpoint directory|directory \(expected a run directory\))$",
         covered="test_cli.py" if cmd == "sample" else None)
    _add(cmd, "a directory that is not a run", lambda e, f=argv_of: f(e, e.emptydir),
         r"emptydir has no metrics\.jsonl; is it a run directory\?$" if cmd == "plot"
         else r"emptydir holds no checkpoint \(not a bptt run directory\)$",
         covered="test_cli.py" if cmd == "sample" else None)

# --- where the output goes
_add("train --out", "an existing file", lambda e: ["train", "--data", e.text, *SMALL, "--steps", 3, "--out", e.text],
     r"text\.txt is a file, not a run directory; choose another --out$", group="fault")
_add("train --out", "a path under a file (NotADirectoryError)",
     lambda e: ["train", "--data", e.text, *SMALL, "--steps", 3, "--out", os.path.join(e.text, "run")],
     r"Not a directory: \S*text\.txt/run$", group="fault")
_add("train --out", "a read-only directory (simulated PermissionError)",
     lambda e: ["train", "--data", e.text, *SMALL, "--steps", 3, "--out", os.path.join(e.tmp, "ro", "run")],
     r"Permission denied: \S*ro/run$", fault=lambda e: read_only(_under(os.path.join(e.tmp, "ro"))), group="fault")
_add("train --resume", "the run directory became read-only (simulated PermissionError at the next checkpoint)",
     lambda e: _resume(e), r"Permission denied: \S*/run/\.tmp-ckpt-00000009-\d+$",
     fault=lambda e: read_only(_is_tmp_ckpt), group="fault")
_add("gates --out-dir", "a path under a file", lambda e: ["gates", e.run, "--text", "the", "--out-dir", os.path.join(e.text, "g")],
     r"Not a directory: \S*text\.txt/g$", group="fault")
_add("gradflow --out", "a path under a file",
     lambda e: ["gradflow", "--cells", "rnn", "--seq-len", 3, "--hidden", 4, "--out", os.path.join(e.text, "g.png")],
     r"text\.txt is a file, not a directory$", group="fault")
_add("plot --out", "a path under a file", lambda e: ["plot", e.run, "--out", os.path.join(e.text, "p.png")],
     r"text\.txt is a file, not a directory$", group="fault")

_add("export --onnx", "a path under a file", lambda e: ["export", e.run, "--onnx", os.path.join(e.text, "m.onnx")],
     r"Not a directory: \S*text\.txt/m\.onnx$", group="fault", resumes=False)
_add("export --onnx", "a directory that does not exist", lambda e: ["export", e.run, "--onnx", os.path.join(e.tmp, "nowhere", "m.onnx")],
     r"No such file or directory: \S*nowhere/m\.onnx$", group="fault", resumes=False)
_add("export --onnx", "an existing directory", lambda e: ["export", e.run, "--onnx", e.emptydir],
     r"Is a directory: \S*emptydir$", group="fault", resumes=False)

# --- write errors while checkpointing
_add("train --resume", "disk full at the first tensor file of the next checkpoint (simulated ENOSPC)",
     lambda e: _resume(e), r"No space left on device: \S*/run/\.tmp-ckpt-00000009-\d+$",
     fault=lambda e: disk_full_at_tensor_write(1), group="fault")
_add("train", "disk full at the second checkpoint of a new run (simulated ENOSPC on the 3rd tensor write)",
     lambda e: _train(e, e.text, "--steps", 6, "--checkpoint-every", 2),
     r"No space left on device: \S*/new/\.tmp-ckpt-00000004-\d+$", fault=lambda e: disk_full_at_tensor_write(3),
     group="fault")
_add("train --resume", "disk full while a tensor file is written (a partial file, the write's own ENOSPC)",
     lambda e: _resume(e), r"No space left on device: \S*/\.tmp-ckpt-00000009-\d+/model\.safetensors$",
     fault=lambda e: disk_full_in_tensor_file(), group="fault")
_add("train --resume", "disk full writing checkpoint.json (simulated ENOSPC)",
     lambda e: _resume(e), r"No space left on device: \S*/run/\.tmp-ckpt-00000009-\d+$",
     fault=lambda e: disk_full_at_json_write(), group="fault")

# --- the run itself goes wrong
@contextlib.contextmanager
def nan_loss_at_call(n):
    """The loss of the n-th training step from here is NaN."""
    import bptt.train as train_mod

    real, calls = train_mod.cross_entropy_forward, [0]

    def poisoned(logits, targets, *a, **kw):
        loss, cache = real(logits, targets, *a, **kw)
        calls[0] += 1
        return (float("nan") if calls[0] == n else loss), cache

    with mock.patch.object(train_mod, "cross_entropy_forward", poisoned):
        yield


_add("train --resume", "the loss becomes NaN at the 2nd step (simulated)", lambda e: _resume(e),
     r"the loss became nan at step 8; training stopped\. The last checkpoint is kept: \S*ckpt-00000006$",
     fault=lambda e: nan_loss_at_call(2), group="fault", covered="test_cli.py")
_add("train", "the weights diverge to overflow (--optimizer sgd --lr 1e38 --clip 0)",
     lambda e: _train(e, e.text, "--optimizer", "sgd", "--lr", "1e38", "--clip", 0, "--steps", 50, "--checkpoint-every", 1),
     # which check fires first (the loss or the model's output) depends on the order of the
     # float32 sums that overflow, which differs between the backends
     r"(the model's output is not finite \(NaN or Inf\): its weights have diverged|the loss became "
     r"(inf|nan) at step \d+; training stopped\. The last checkpoint is kept: \S*ckpt-\d+)$",
     group="fault", resumes=False)
_add("train --resume", "a run that has already finished", lambda e: ["train", "--resume", e.run, "--quiet"],
     r"finished 6 steps in [\d.]+ min; validation loss [\d.]+ nats/char", rc=0, group="fault",
     run_unchanged=False)  # the last checkpoint is written again, the same weights

# --- damaged checkpoints (the newest of the copy), through sample and resume
CKPT_CMDS = {"sample": lambda e: ["sample", e.run, "--length", 5], "train --resume": lambda e: _resume(e)}
OLDER = r"; an older checkpoint is \S*ckpt-00000003 \(give that path instead\)$"
DAMAGE = [
    # (what, damage, {command: regex}, covered)
    ("truncated model.safetensors", lambda c: truncate(os.path.join(c, "model.safetensors")),
     r"model\.safetensors is damaged", "test_cli.py"),
    ("a flipped byte in model.safetensors", lambda c: flip_byte(os.path.join(c, "model.safetensors")),
     r"model\.safetensors is damaged: its checksum does not match checkpoint\.json" + OLDER, "test_cli.py"),
    ("format version 2", lambda c: edit_meta(c, lambda m: m.update(format_version=2)),
     r"checkpoint\.json has format version 2; this bptt reads version 1" + OLDER, "test_cli.py"),
    ("truncated state.safetensors", lambda c: truncate(os.path.join(c, "state.safetensors"), 50),
     r"ckpt-00000006/state\.safetensors is damaged: its checksum does not match checkpoint\.json" + OLDER, None),
    ("model.safetensors deleted", lambda c: os.remove(os.path.join(c, "model.safetensors")),
     r"ckpt-00000006/model\.safetensors is missing" + OLDER, None),
    ("checkpoint.json deleted", lambda c: os.remove(os.path.join(c, "checkpoint.json")),
     r"ckpt-00000006/checkpoint\.json is damaged: \[Errno 2\] No such file or directory: \S+" + OLDER, None),
    ("'files' in checkpoint.json is not a mapping", lambda c: edit_meta(c, lambda m: m.update(files=["x"])),
     r"checkpoint\.json is damaged: 'files' must map file names to checksums" + OLDER, None),
    ("hidden_size 9 in checkpoint.json (model and training parts), weights for 8",
     lambda c: edit_meta(c, lambda m: _set_hidden(m, 9, True)),
     {"sample": r"ckpt-00000006/model\.safetensors does not fit the model config: (rnn\.\w+|head\.weight) must have shape \(\d+,( \d+)?\), got \(\d+,( \d+)?\)$",
      "train --resume": r"ckpt-00000006: weights do not fit the model config: (rnn\.\w+|head\.weight) must have shape \(\d+,( \d+)?\), got \(\d+,( \d+)?\)$"}, None),
    ("hidden_size 9 in the model part only",
     lambda c: edit_meta(c, lambda m: _set_hidden(m, 9, False)),
     {"sample": r"ckpt-00000006/model\.safetensors does not fit the model config: (rnn\.\w+|head\.weight) must have shape \(\d+,( \d+)?\), got \(\d+,( \d+)?\)$",
      "train --resume": r"ckpt-00000006/checkpoint\.json is inconsistent: its model \(\{.*'hidden_size': 9.*\}, float32\) is not the one its training config builds$"}, None),
    ("a vocabulary one character short", lambda c: edit_meta(c, lambda m: _drop_last_char(m, False)),
     {"sample": r"ckpt-00000006: the vocabulary has 21 characters but the model was built for 22$",
      "train --resume": r"ckpt-00000006: the vocabulary \(21 characters\) does not match the model \(vocab_size 22\)$"}, None),
    ("a vocabulary one character short, vocab_size changed to match",
     lambda c: edit_meta(c, lambda m: _drop_last_char(m, True)),
     {"sample": r"model\.safetensors does not fit the model config: (embedding\.weight|head\.\w+) must have shape \((21, 4|21,|21, 8)\), got \((22, 4|22,|22, 8)\)$",
      "train --resume": r"ckpt-00000006: the checkpoint does not fit its training data: the text has 1 character not in the model's vocabulary: '\w'$"}, None),
    ("a vocabulary with a duplicate character", lambda c: edit_meta(c, lambda m: m["vocab"].__setitem__(1, m["vocab"][0])),
     r"checkpoint\.json(: bad model description| is incomplete): the vocabulary has duplicate characters: '\\n'$", None),
    ("dtype float16 in checkpoint.json", lambda c: edit_meta(c, lambda m: m.update(dtype="float16")),
     {"sample": r"checkpoint\.json: bad model description: dtype must be float32 or float64, got 'float16'$",
      "train --resume": r"checkpoint\.json is inconsistent: its model \(\{.*\}, float16\) is not the one its training config builds$"}, None),
    ("a weight renamed (checksum recomputed)",
     lambda c: edit_tensors(c, "model.safetensors", lambda t: t.__setitem__("head.w", t.pop("head.weight"))),
     r"weights do not match the model: missing \['head\.weight'\], unexpected \['head\.w'\]$", None),
    ("a weight of the wrong shape (checksum recomputed)",
     lambda c: edit_tensors(c, "model.safetensors", lambda t: t.__setitem__("head.weight", t["head.weight"][:, :3].copy())),
     r"fit the model config: head\.weight must have shape \(22, 8\), got \(22, 3\)$", None),
    ("weights that are NaN (checksum recomputed)",
     lambda c: edit_tensors(c, "model.safetensors", lambda t: t["head.weight"].fill(np.nan)),
     {"sample": r"the model's output is not finite \(NaN or Inf\): its weights have diverged$",
      "train --resume": r"the loss became nan at step 7; training stopped\. The last checkpoint is kept: \S*ckpt-00000006$"}, None),
    ("an optimizer buffer of the wrong shape (checksum recomputed)",
     lambda c: edit_tensors(c, "state.safetensors", lambda t: t.__setitem__("optim.exp_avg.head.bias", t["optim.exp_avg.head.bias"][:3].copy())),
     {"sample": "ok", "train --resume": r"training state does not fit: buffer exp_avg\['head\.bias'\] must be a numeric array of shape \(22,\), got float32 \(3,\)$"}, None),
    ("a carried hidden state of the wrong shape (checksum recomputed)",
     lambda c: edit_tensors(c, "state.safetensors", lambda t: t.__setitem__("carry.h", t["carry.h"][:, :1].copy())),
     {"sample": "ok", "train --resume": r"ckpt-00000006: training state does not fit: carry\.h must have shape \(1, 2, 8\), got \(1, 1, 8\)$"}, None),
    ("the carried cell state missing (checksum recomputed)",
     lambda c: edit_tensors(c, "state.safetensors", lambda t: t.pop("carry.c")),
     {"sample": "ok", "train --resume": r"ckpt-00000006: training state does not fit: 'carry\.c'$"}, None),
    ("step 'abc' in checkpoint.json", lambda c: edit_meta(c, lambda m: m.update(step="abc")),
     {"sample": "ok", "train --resume": r"ckpt-00000006: training state does not fit: invalid literal for int\(\)"}, None),
    ("a data position past the end", lambda c: edit_meta(c, lambda m: m["data"].update(position=10**6)),
     {"sample": "ok", "train --resume": r"training state does not fit: batch state position must be in \[0, \d+\), got 1000000"}, None),
    ("metrics.jsonl shorter than the checkpoint says", lambda c: truncate(os.path.join(os.path.dirname(c), "metrics.jsonl"), 10),
     {"sample": "ok", "train --resume": r"metrics\.jsonl is shorter than the checkpoint expects \(10 < \d+ bytes\)$"}, None),
    ("`latest` names a checkpoint that is not there", lambda c: write_text(os.path.join(os.path.dirname(c), "latest"), "../../etc\n"),
     {"sample": "ok", "train --resume": r"resuming \S+ at step 6"}, None),
    ("leftovers of a killed write (.tmp-ckpt-*, *.old-*, .latest.tmp-*)",
     lambda c: [os.makedirs(os.path.join(os.path.dirname(c), n)) for n in (".tmp-ckpt-00000099-1", "ckpt-00000006.old-1")]
     + [write_text(os.path.join(os.path.dirname(c), ".latest.tmp-1"), "ckpt-0000")],
     {"sample": "ok", "train --resume": r"resuming \S+ at step 6"}, None),
]
for what, damage, expect, covered in DAMAGE:
    for cmd, argv_of in CKPT_CMDS.items():
        pattern = expect.get(cmd) if isinstance(expect, dict) else expect
        ok = pattern == "ok" or pattern.startswith("resuming ")
        _add(cmd, what, argv_of, pattern, rc=0 if ok else 1, damage=damage, covered=covered,
             run_unchanged=not ok, group="checkpoint", leftovers_ok=what.startswith("leftovers") and cmd == "sample")

# --- export
_add("export", "a series-task run", lambda e: ["export", e.series, "--onnx", os.path.join(e.tmp, "m.onnx")],
     r"holds a 'series' task run, not a character model")
_add("export", "a flipped byte in model.safetensors", lambda e: ["export", e.run, "--onnx", os.path.join(e.tmp, "m.onnx")],
     r"ckpt-00000006/model\.safetensors is damaged: its checksum does not match checkpoint\.json" + OLDER,
     damage=lambda c: flip_byte(os.path.join(c, "model.safetensors")))
_add("export", "the onnx package not installed (simulated)", lambda e: ["export", e.run, "--onnx", os.path.join(e.tmp, "m.onnx")],
     r"ONNX export needs the onnx package, which is not installed: pip install 'bptt\[onnx\]'$",
     fault=lambda e: mock.patch.dict(sys.modules, {"onnx": None}))


def available_commands():
    """The subcommands of `bptt`, and "train --task" when train has tasks."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = set(sub.choices)
    if "train" in sub.choices and "--task" in sub.choices["train"]._option_string_actions:
        names.add("train --task")
    return names


def runnable(case, commands=None):
    commands = available_commands() if commands is None else commands
    word = "train --task" if case.command.startswith("train --task") else case.command.split()[0]
    return word in commands


def prepare(case, env):
    """Damage the copy's newest checkpoint as the row says."""
    if case.damage is not None:
        case.damage(env.latest)


def run_case(case, env):
    """Run the row (under its fault) -> (rc, stdout, stderr)."""
    argv = case.argv(env)
    fault = case.fault(env) if case.fault else contextlib.nullcontext()
    with fault:
        return run_cli(argv)


def shown(text, env):
    """A message as the table shows it: the temporary directory as <tmp>, the process id as <pid>."""
    text = text.replace(env.tmp, "<tmp>").replace(env.base, "<tmp>")
    return re.sub(r"(\.tmp-ckpt-\d{8}-)\d+", r"\1<pid>", text)


# ----------------------------------------------------------------------------- SIGKILL
KILL_STEPS, KILL_EVERY = 100, 2
KILL_TRAIN = ["--hidden", "8", "--layers", "2", "--embedding-dim", "4", "--seq-len", "4", "--batch", "2",
              "--dropout", "0.2", "--eval-every", "10", "--eval-batches", "1", "--sample-length", "0",
              "--checkpoint-every", str(KILL_EVERY), "--steps", str(KILL_STEPS), "--seed", "3", "--quiet"]


def _ckpts(run):
    return sorted(n for n in os.listdir(run) if n.startswith("ckpt-")) if os.path.isdir(run) else []


def _tmp_dirs(run):
    return {n for n in os.listdir(run) if n.startswith(".tmp-ckpt-")} if os.path.isdir(run) else set()


def _logged_steps(run):
    try:
        with open(os.path.join(run, "metrics.jsonl"), "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _kill_when(proc, ready, poll=0.0005):
    """SIGKILL as soon as ready() is true (or let the process end)."""
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(poll)
    return proc.wait()


def _at_nth_checkpoint_write(run, n):
    """-> ready(): true when the n-th checkpoint directory of this launch appears (being written)."""
    seen, left = set(_tmp_dirs(run)), [n]  # leftovers of earlier launches do not count

    def ready():
        new = _tmp_dirs(run) - seen
        if new:
            seen.update(new)
            left[0] -= 1
        return left[0] <= 0

    return ready


def _after(delay):
    t0 = time.monotonic()
    return lambda: time.monotonic() - t0 >= delay


def sigkill_run(workdir, kills=22, seed=1234, time_limit=150):
    """Train a tiny model in child processes (``python -m bptt.cli train``), killing each with
    SIGKILL: the first before anything is written, the second inside its first checkpoint write,
    then at random (fixed seed) one of: inside its n-th checkpoint write (n = 1..3), after it logs
    a random number of further steps (1..6), or after a random delay (0.05..0.6 s, often still
    starting up). Each launch resumes the run (``--resume``), or starts it again (``--out``) when
    no checkpoint exists yet (``fresh_over_leftovers`` counts those over a directory the killed
    launch left non-empty). After every kill the checkpoint the run names must load. Near the
    end only kills inside a checkpoint write (of the last step too, written again on resume). A
    last launch runs to the end. Returns counts and paths."""
    rng = random.Random(seed)
    data = write_text(os.path.join(workdir, "kill-text.txt"), make_text(100))  # about 400 characters
    run = os.path.join(workdir, "killed-run")
    env = dict(os.environ, BPTT_BACKEND="numpy")  # no numba start-up: a launch takes ~0.5 s
    n_kills = mid_write = fresh_starts = fresh_over_leftovers = last_step = launch = 0
    how_killed = []
    deadline = time.monotonic() + time_limit
    while True:
        assert time.monotonic() < deadline, f"only {n_kills} kills in {time_limit} s"
        if _ckpts(run):
            argv = ["train", "--resume", run, "--quiet"]
        else:  # killed before its first checkpoint: start again (the directory may hold a log, a tmp dir)
            argv = ["train", "--data", data, *KILL_TRAIN, "--out", run]
            fresh_starts += 1
            if os.path.isdir(run) and os.listdir(run):  # what the killed launch left: a log, a tmp dir
                fresh_over_leftovers += 1
        launch += 1
        near_end = last_step >= KILL_STEPS - 2 * KILL_EVERY
        mode = ("end" if n_kills >= kills else "delay" if launch == 1 else "write" if launch == 2 or near_end
                else rng.choice(["write", "step", "delay"]))
        if mode == "write":
            n = 1 if launch == 2 or near_end else rng.randint(1, 3)
            ready, what = _at_nth_checkpoint_write(run, n), f"checkpoint write {n}"
        elif mode == "step":
            target = _logged_steps(run) + rng.randint(1, 6)
            ready, what = (lambda t=target: _logged_steps(run) >= t), f"after logging step {target}"
        elif mode == "delay":
            delay = 0.1 if launch == 1 else rng.uniform(0.05, 0.6)
            ready, what = _after(delay), f"after {delay:.2f} s"
        else:
            ready, what = (lambda: False), "to the end"
        before = _tmp_dirs(run)
        log_path = os.path.join(workdir, f"stderr-{launch}.txt")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bptt.cli", *argv], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=log)
            if mode == "delay":
                ready = _after(delay)  # from the launch
            rc = _kill_when(proc, ready)
        with open(log_path) as f:
            err = f.read()
        assert "Traceback" not in err and "error" not in err, err
        killed = rc == -signal.SIGKILL
        if not killed:
            assert rc == 0, err
            if mode == "end":
                break
        else:
            n_kills += 1
            if _tmp_dirs(run) - before:
                mid_write += 1  # killed in the middle of writing a checkpoint
        if _ckpts(run):
            _, meta, weights, _ = ckpt_io.load_checkpoint(run)  # never unreadable
            assert meta["step"] >= last_step, "the newest checkpoint went back"
            last_step = meta["step"]
            assert os.path.getsize(os.path.join(run, "metrics.jsonl")) >= meta["metrics_bytes"]
            assert all(np.isfinite(w).all() for w in weights.values())
        how_killed.append((what, "killed" if killed else "finished", last_step))
    return {"run": run, "data": data, "kills": n_kills, "mid_write": mid_write,
            "fresh_starts": fresh_starts, "fresh_over_leftovers": fresh_over_leftovers,
            "launches": launch, "log": how_killed}
