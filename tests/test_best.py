"""bptt train keeps RUN/best, the checkpoint of the best validation loss: chosen by the
validation loss, kept whole when later checkpoints are pruned, carried across a resume, and used
by ``bptt sample/eval RUN --best``."""

import json
import os

import numpy as np
import pytest

import bptt.train as train_mod
from bptt.sample import load_model
from training_helpers import TINY, cli, make_text, metrics, write_text


def _scripted(monkeypatch, losses):
    """The validations return these losses, in turn (the selection is what is tested)."""
    it = iter(losses)
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: next(it))


def _best_meta(run):
    with open(os.path.join(run, "best", "checkpoint.json"), encoding="utf-8") as f:
        return json.load(f)


def test_best_by_validation_loss_survives_resume_and_is_used(tmp_path, capsys, monkeypatch):
    data = write_text(tmp_path / "text.txt", make_text(400))
    run = str(tmp_path / "run")
    base = ["--data", data, *TINY, "--eval-every", "1", "--checkpoint-every", "1", "--lr", "0.01"]
    _scripted(monkeypatch, [3.0, 2.0, 2.5, 1.5, 1.8, 1.9, 2.2])
    rc, out, _ = cli(capsys, "train", *base, "--steps", "7", "--out", run)
    assert rc == 0
    assert [r["val_loss"] for r in metrics(run)] == [3.0, 2.0, 2.5, 1.5, 1.8, 1.9, 2.2]
    meta = _best_meta(run)
    assert meta["step"] == 4 and meta["best"] == {"step": 4, "val_loss": 1.5}
    assert "best validation loss 1.5000 nats/char at step 4" in out
    # the run's own checkpoints are as without a best one (the newest two), nothing left over
    assert sorted(n for n in os.listdir(run) if n.startswith((".", "ckpt-"))) == ["ckpt-00000006", "ckpt-00000007"]
    # the copy is the step-4 model: the same run stopped at step 4 has the same weights
    _scripted(monkeypatch, [3.0, 2.0, 2.5, 1.5])
    assert cli(capsys, "train", *base, "--steps", "4", "--out", str(tmp_path / "four"))[0] == 0
    best_model = load_model(run, best=True)[0]
    four = load_model(str(tmp_path / "four"))[0]
    last = load_model(run)[0]
    for k, v in four.state_dict().items():
        np.testing.assert_array_equal(best_model.state_dict()[k], v)
    assert any(not np.array_equal(last.state_dict()[k], v) for k, v in four.state_dict().items())

    # resume: the best so far comes back with the run (1.6 is worse than 1.5: no new best) ...
    _scripted(monkeypatch, [1.6, 1.7])
    assert cli(capsys, "train", "--resume", run, "--steps", "9", "--quiet")[0] == 0
    assert _best_meta(run)["step"] == 4
    # ... and a better one replaces it
    _scripted(monkeypatch, [1.2, 1.4])
    assert cli(capsys, "train", "--resume", run, "--steps", "11", "--quiet")[0] == 0
    assert _best_meta(run)["step"] == 10 and _best_meta(run)["best"]["val_loss"] == 1.2

    # --best: sample and eval read RUN/best
    best_dir = os.path.join(run, "best")
    for cmd in (["sample", "--length", "30"], ["eval", "--data", data]):
        rc, via_flag, _ = cli(capsys, cmd[0], run, "--best", *cmd[1:])
        assert rc == 0
        assert via_flag == cli(capsys, cmd[0], best_dir, *cmd[1:])[1]
        assert via_flag != cli(capsys, cmd[0], run, *cmd[1:])[1]  # the latest (step 11) differs


def test_the_last_validation_at_the_end_can_be_the_best(tmp_path, capsys, monkeypatch):
    """The validation at the end of the budget (off the --eval-every grid, not logged) counts too:
    with a cosine schedule it is often the best, and the benchmark counts it the same way."""
    data = write_text(tmp_path / "text.txt", make_text(400))
    run = str(tmp_path / "run")
    _scripted(monkeypatch, [2.0, 1.8, 1.5])  # steps 3 and 6 (logged), then 7 (the end)
    rc, out, _ = cli(capsys, "train", "--data", data, *TINY, "--eval-every", "3", "--steps", "7",
                     "--out", run)
    assert rc == 0
    assert [r["val_loss"] for r in metrics(run) if "val_loss" in r] == [2.0, 1.8]
    assert _best_meta(run)["best"] == {"step": 7, "val_loss": 1.5}
    assert load_model(run)[0].state_dict().keys() == load_model(run, best=True)[0].state_dict().keys()
    for k, v in load_model(run)[0].state_dict().items():
        np.testing.assert_array_equal(load_model(run, best=True)[0].state_dict()[k], v)
    assert "best validation loss 1.5000 nats/char at step 7" in out
    # a worse last validation leaves the best where it was
    run2 = str(tmp_path / "run2")
    _scripted(monkeypatch, [2.0, 1.8, 1.9])
    assert cli(capsys, "train", "--data", data, *TINY, "--eval-every", "3", "--steps", "7", "--out", run2)[0] == 0
    assert _best_meta(run2)["best"] == {"step": 6, "val_loss": 1.8}


def test_best_needs_a_validation(tmp_path, capsys):
    data = write_text(tmp_path / "text.txt", make_text(400))
    run = str(tmp_path / "run")
    assert cli(capsys, "train", "--data", data, *TINY, "--steps", "2", "--val-fraction", "0",
               "--eval-every", "1", "--out", run)[0] == 0
    assert not os.path.exists(os.path.join(run, "best"))
    rc, out, err = cli(capsys, "sample", run, "--best")
    assert rc == 1 and out == ""
    assert err == f"bptt: error: {run} has no best checkpoint yet (it is kept from the first validation on, " \
                  f"and needs a validation part: --val-fraction > 0)\n"


@pytest.mark.parametrize("target", ["missing", "checkpoint"])
def test_best_flag_errors(tmp_path, capsys, target):
    path = str(tmp_path / "nothing")
    if target == "checkpoint":
        os.makedirs(path)
        with open(os.path.join(path, "checkpoint.json"), "w") as f:
            f.write("{}")
    rc, _, err = cli(capsys, "eval", path, "--best", "--data", path)
    assert rc == 1 and err.count("\n") == 1
    assert ("no run or checkpoint at" in err) if target == "missing" else ("--best needs a run directory" in err)


def test_the_copy_that_becomes_best_is_on_the_disk_before_it_is_named(tmp_path, monkeypatch):
    """copy_to_best (--patch auto's RUN/best, a classify run's best epoch): each copied file and the
    copy's directory are fsynced before the rename that makes the copy RUN/best, so that a power loss,
    not only a kill, leaves RUN/best whole."""
    from bptt import checkpoint as ck

    src = tmp_path / "run" / "ckpt-00000003"
    src.mkdir(parents=True)
    (src / "checkpoint.json").write_text('{"step": 3}')
    (src / "model.safetensors").write_bytes(b"w" * 1000)
    events, fsync, replace = [], os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def record_replace(a, b):
        events.append(("replace", os.path.realpath(a), os.path.realpath(b)))
        return replace(a, b)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    run = os.path.realpath(tmp_path / "run")
    ck.copy_to_best(str(src), run)
    new, best = os.path.join(run, "best.new"), os.path.join(run, "best")
    named = events.index(("replace", new, best))
    synced = {e[1] for e in events[:named] if e[0] == "fsync"}
    assert {os.path.join(new, "checkpoint.json"), os.path.join(new, "model.safetensors"), new} <= synced
    assert ("fsync", run) in events[named:]  # the rename itself made durable
    assert open(os.path.join(best, "model.safetensors"), "rb").read() == b"w" * 1000
    assert ck.best_dir(run) == best
