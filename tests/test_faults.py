"""Faults and bad input: nothing lost, clear errors.

- ``bptt train`` killed with SIGKILL at random moments (many of them in the middle of a checkpoint
  write) and resumed each time ends with the same weights, optimizer state and metrics as a run
  never interrupted; after every kill the newest checkpoint loads.
- Every command, given bad input or hit by a fault (a read-only directory, a full disk during a
  checkpoint), exits non-zero with one line on stderr and no traceback, and the checkpoints already
  written are untouched (the table is in ``fault_cases.py``; ``benchmarks/faults_table.py`` prints it
  to ``docs/faults.md``).
- Damaged or inconsistent checkpoints are refused with a message naming the file and the problem.
- No pickle anywhere: loading reads safetensors and JSON only.
"""

import ast
import json
import os
import pickle
import re

import numpy as np
import pytest

from bptt import checkpoint as ckpt_io
from bptt.cells import _kernels, _numpy_loops

import fault_cases as fc
from training_helpers import REPO, metrics, read_bytes


# ----------------------------------------------------------------------------- SIGKILL
def _comparable(run):
    return [{k: v for k, v in r.items() if k != "time"} for r in metrics(run)]


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """22 SIGKILLs over one run (the first before anything is written, the second inside the first
    checkpoint write, then at random: inside the n-th checkpoint write or after a random delay),
    resumed each time; after every kill the checkpoint `latest` names loads. The end is byte for
    byte the run straight through."""
    res = fc.sigkill_run(str(tmp_path), kills=22, seed=1234)
    run, data = res["run"], res["data"]
    assert res["kills"] >= 20
    assert res["mid_write"] >= 3, f"only {res['mid_write']} kills landed inside a checkpoint write"
    # `--out` again over a directory a killed run left non-empty but without a checkpoint (the
    # second launch is killed inside its first checkpoint write, so the third starts over its rest)
    assert res["fresh_over_leftovers"] >= 1, res["log"]
    assert not fc.leftovers(run)
    ckpt_dir, meta, _, _ = ckpt_io.load_checkpoint(run)
    assert meta["step"] == fc.KILL_STEPS
    assert [r["step"] for r in metrics(run)] == list(range(1, fc.KILL_STEPS + 1))

    # the same run straight through, in this process, with the same (NumPy) time loops
    monkeypatch.setattr(_kernels, "_requested", "numpy")
    monkeypatch.setattr(_kernels, "_impl", _numpy_loops)
    straight = str(tmp_path / "straight")
    rc, _, err = fc.run_cli(["train", "--data", data, *fc.KILL_TRAIN, "--out", straight])
    assert rc == 0, err
    ref = ckpt_io.resolve(straight)
    for f in ("model.safetensors", "state.safetensors"):
        assert read_bytes(os.path.join(ckpt_dir, f)) == read_bytes(os.path.join(ref, f)), f
    assert _comparable(run) == _comparable(straight)
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(straight)]


# ----------------------------------------------------------------------------- the table
@pytest.fixture(scope="session")
def bed(tmp_path_factory):
    return fc.make_bed(tmp_path_factory.mktemp("faults"))


COMMANDS = fc.available_commands()
ROWS = [c for c in fc.CASES if not c.covered]


@pytest.mark.parametrize("case", ROWS, ids=[c.key for c in ROWS])
def test_bad_input_and_faults_one_line_nothing_lost(case, bed, tmp_path):
    if not fc.runnable(case, COMMANDS):
        pytest.fail(f"no `bptt {case.command.split()[0]}` command")
    env = fc.case_env(bed, tmp_path)
    fc.prepare(case, env)
    before = fc.checkpoint_files(env.run)
    rc, out, err = fc.run_case(case, env)
    if case.rc == 0:
        assert rc == 0, err
        assert case.expect == "ok" or re.search(case.expect, out + err), out + err
    else:
        assert rc == case.rc, (rc, err)
        line = fc.error_line(err)
        assert re.search(case.expect, line), line
    if case.run_unchanged:  # nothing already saved changed
        assert fc.checkpoint_files(env.run) == before
    if not case.leftovers_ok:
        assert fc.leftovers(env.run) == [] and fc.leftovers(env.new) == []
    if case.damage is None and fc.checkpoint_files(env.run):
        ckpt_io.load_checkpoint(env.run)  # still loads
    if case.group == "fault" and rc != 0 and case.resumes:  # after the fault the run goes on from its last checkpoint
        for run, steps in ((env.new, 6), (env.run, 9)):
            if fc.checkpoint_files(run) and (run == env.new or case.command == "train --resume"):
                rc, _, err = fc.run_cli(["train", "--resume", run, "--steps", steps, "--quiet"])
                assert rc == 0, err
                assert ckpt_io.load_checkpoint(run)[1]["step"] == steps
                assert [r["step"] for r in metrics(run)] == list(range(1, steps + 1))
                assert fc.leftovers(run) == []
                # ... to the same weights and optimizer state as a run the fault never hit
                ref = _straight_run(case, env, bed, run, steps, tmp_path)
                for f in ("model.safetensors", "state.safetensors"):
                    assert read_bytes(os.path.join(ckpt_io.resolve(run), f)) == read_bytes(os.path.join(ref, f)), f
                assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(os.path.dirname(ref))]


def _straight_run(case, env, bed, run, steps, tmp_path):
    """The newest checkpoint of the same run trained straight to ``steps``, never stopped: its
    own command with ``--steps`` and ``--out`` changed (the bed's command for the bed's run)."""
    out = str(tmp_path / "straight")
    if run == env.new:
        argv = [str(a) for a in case.argv(env)]
        argv[argv.index("--steps") + 1], argv[argv.index("--out") + 1] = str(steps), out
    else:
        argv = fc.bed_train_argv(bed.text, steps, out)
    rc, _, err = fc.run_cli(argv)
    assert rc == 0, err
    return ckpt_io.resolve(out)


def test_fresh_run_disk_full_keeps_the_first_checkpoint(bed, tmp_path):
    """Disk full at the second checkpoint of a new run: the first one is whole and is `latest`."""
    case = next(c for c in fc.CASES if c.what.startswith("disk full at the second checkpoint"))
    env = fc.case_env(bed, tmp_path)
    rc, _, err = fc.run_case(case, env)
    assert rc == 1 and re.search(case.expect, fc.error_line(err))
    ckpt_dir, meta, _, _ = ckpt_io.load_checkpoint(env.new)
    assert os.path.basename(ckpt_dir) == "ckpt-00000002" == open(os.path.join(env.new, "latest")).read().strip()
    assert fc.leftovers(env.new) == []


def test_progress_bar_is_closed_before_the_error_line(bed, tmp_path):
    """Without --quiet the progress bar is on stderr too; the error is still the last line."""
    env = fc.case_env(bed, tmp_path)
    with fc.disk_full_at_tensor_write(1):
        rc, _, err = fc.run_cli(["train", "--resume", env.run, "--steps", 9])
    assert rc == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"bptt: error: No space left on device: \S+\.tmp-ckpt-00000009-\d+", last), err
    assert sum(line.count("bptt: error") for line in err.splitlines()) == 1


# ----------------------------------------------------------------------------- no pickle
SRC = os.path.join(REPO, "src", "bptt")


def _sources():
    for root, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(root, f)
                with open(p, encoding="utf-8") as fh:
                    yield os.path.relpath(p, REPO), fh.read()


def test_no_pickle_anywhere_in_the_source():
    bad = []
    for path, text in _sources():
        tree = ast.parse(text, path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle")
                       for n in names):
                    bad.append(f"{path}:{node.lineno}: imports {names}")
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                kw = {k.arg: k.value for k in node.keywords}
                if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
                    bad.append(f"{path}:{node.lineno}: allow_pickle not False")
                if name == "load" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") in ("np", "numpy", "torch"):
                    if getattr(f.value, "id", "") == "torch" or "allow_pickle" not in kw:
                        bad.append(f"{path}:{node.lineno}: {f.value.id}.load without allow_pickle=False")
        if re.search(r"\bpickle\b(?!\s+anywhere)", text.replace("No pickle anywhere", "")):
            bad.append(f"{path}: mentions pickle")
    assert not bad, "\n".join(bad)


def test_loading_reads_only_safetensors_and_json(bed, tmp_path, monkeypatch):
    """With every pickle and np.load entry point broken, checkpoints still load, sample and resume."""
    env = fc.case_env(bed, tmp_path)

    def forbidden(*a, **kw):
        raise AssertionError("pickle or np.load used while loading a checkpoint")

    for mod, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (np, "load")):
        monkeypatch.setattr(mod, name, forbidden)
    ckpt_dir, meta, weights, state = ckpt_io.load_checkpoint(env.run)
    assert set(os.listdir(ckpt_dir)) == {"model.safetensors", "state.safetensors", "checkpoint.json"}
    with open(os.path.join(ckpt_dir, "model.safetensors"), "rb") as f:  # a JSON header, then raw bytes
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert set(header) - {"__metadata__"} == set(weights)
    assert fc.run_cli(["sample", env.run, "--length", 5])[0] == 0
    assert fc.run_cli(["train", "--resume", env.run, "--steps", 8, "--quiet"])[0] == 0
