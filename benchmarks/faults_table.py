"""Run every fault and every bad input of ``tests/fault_cases.py`` for real and write the table of
what happened, with the exact one-line messages, to ``docs/faults.md``.

    python benchmarks/faults_table.py             # writes docs/faults.md (about a minute)
    python benchmarks/faults_table.py --out -     # prints it instead

The same rows are asserted by ``tests/test_faults.py`` (and ``tests/test_cli.py`` for the rows
marked there), so the table cannot drift from the code without
a test failing.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import fault_cases as fc  # noqa: E402
import mpi_helpers as mh  # noqa: E402
from bptt import checkpoint as ckpt_io  # noqa: E402
from training_helpers import make_text, metrics, read_bytes, write_text  # noqa: E402


def cell(text):
    """Markdown table cell: a code span, pipes escaped."""
    text = text.replace("|", "\\|")
    return f"`{text}`" if text else ""


def run_rows(bed, base, commands):
    """-> list of (case, rc, message, checked) for every runnable row."""
    rows = []
    for i, case in enumerate(fc.CASES):
        if not fc.runnable(case, commands):
            continue
        tmp = tempfile.mkdtemp(prefix=f"row{i:03d}-", dir=base)
        env = fc.case_env(bed, tmp)
        fc.prepare(case, env)
        before = fc.checkpoint_files(env.run)
        rc, out, err = fc.run_case(case, env)
        if rc == 0:
            text = (out + err).strip().splitlines()
            if case.expect == "ok":
                msg = f"works (reads {os.path.basename(ckpt_io.resolve(env.run))})"
            else:
                msg = next((line for line in text if re.search(case.expect, line)), "")
        else:
            lines = err.strip().splitlines()
            msg = lines[-1] if lines else ""
        ok = rc == case.rc and (case.expect == "ok" or bool(re.search(case.expect, msg)))
        kept = ""
        if case.group in ("fault", "checkpoint") and rc != 0:
            same = fc.checkpoint_files(env.run) == before
            kept = "unchanged" if same else "CHANGED"
            if os.path.isdir(env.new) and fc.checkpoint_files(env.new):
                kept = f"{os.path.basename(ckpt_io.resolve(env.new))} kept"
            if fc.leftovers(env.run) or fc.leftovers(env.new):
                kept += ", leftovers"
        rows.append((case, rc, fc.shown(msg, env), ok, kept))
    return rows


def sigint_row(base):
    """Ctrl-C during training, in a child process."""
    data = os.path.join(base, "text.txt")
    run = os.path.join(base, "sigint-run")
    proc = subprocess.Popen([sys.executable, "-m", "bptt.cli", "train", "--data", data, *fc.SMALL,
                             "--steps", "1000000", "--checkpoint-every", "5", "--out", run],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(run, "latest")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    line = next((x for x in out.splitlines() if x.startswith("interrupted")), out.strip())
    return proc.returncode, line.replace(base, "<tmp>")


def kill_rows(base):
    res = fc.sigkill_run(base)
    run = res["run"]
    straight = os.path.join(base, "straight")
    env = dict(os.environ, BPTT_BACKEND="numpy")
    r = subprocess.run([sys.executable, "-m", "bptt.cli", "train", "--data", res["data"], *fc.KILL_TRAIN,
                        "--out", straight], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = ckpt_io.resolve(run), ckpt_io.resolve(straight)
    same_w = all(read_bytes(os.path.join(a, f)) == read_bytes(os.path.join(b, f))
                 for f in ("model.safetensors", "state.safetensors"))
    strip = lambda rs: [{k: v for k, v in x.items() if k != "time"} for x in rs]  # noqa: E731
    same_m = strip(metrics(run)) == strip(metrics(straight))
    return res, same_w, same_m


def mpi_rows(base):
    """The cases of ``tests/mpi_helpers.py`` (asserted by tests/test_distributed.py), run for real
    -> (bad-input rows, fault rows), each (name, exit code, error line, as expected, checkpoints
    untouched) -- or None when the test extra's mpiexec is not installed."""
    if not os.path.exists(mh.MPIEXEC):
        return None
    os.makedirs(os.path.join(base, "mpi"))
    text = write_text(os.path.join(base, "mpi", "text.txt"), make_text(600))
    small = mh.small_run(text, os.path.join(base, "mpi", "small"))
    bad, faults = [], []
    for i, (name, (_, _, expect)) in enumerate(mh.BAD.items()):
        tmp = os.path.join(base, "mpi", f"bad{i}")
        os.makedirs(tmp)
        before = fc.checkpoint_files(small)
        p = mh.bad_case(name, text, small, os.path.join(tmp, "new"), tmp)
        lines = p.stderr.strip().splitlines()
        line = lines[-1] if lines else ""
        ok = p.returncode == 1 and len(lines) == 1 and bool(re.match("bptt: error: " + expect, line))
        kept = fc.checkpoint_files(small) == before and not os.path.exists(os.path.join(tmp, "new", "latest"))
        bad.append((name, p.returncode, line.replace(base, "<tmp>"), ok, kept))
    for i, (name, (_, expect)) in enumerate(mh.FAULTS.items()):
        tmp = os.path.join(base, "mpi", f"fault{i}")
        run = os.path.join(tmp, "run")
        p, before, after = mh.fault_case(name, text, run)
        errors = [line for line in p.stderr.splitlines() if "error" in line]
        ok = p.returncode == 1 and errors == ["bptt: error: " + expect.replace("{run}", run)]
        faults.append((name, p.returncode, (errors[0] if errors else "").replace(tmp, "<tmp>"), ok, after == before))
    return bad, faults


def mpi_section(res):
    md = ["## Under mpiexec", ""]
    if res is None:
        return md + ["(not run: the test extra's `mpiexec` is not installed: `pip install -e '.[test]'`)", ""]
    bad, faults = res
    md += ["Each row runs `bptt` under the test extra's MPICH `mpiexec` (2-4 ranks on this machine); the "
           "same rows are asserted by `tests/test_distributed.py` (cases in `tests/mpi_helpers.py`). "
           "Killing a rank or its launcher-started guard, and Ctrl-C to `mpiexec`, are tested there too "
           "(one line naming the rank, the job ends within 30 s, the last checkpoint resumes).", "",
           "| command | input | exit | message | the earlier run |", "|---|---|---|---|---|"]
    for name, rc, line, ok, kept in bad:
        command, what, _ = mh.BAD[name]
        md.append(f"| `{command}` | {what} | {rc} | {cell(line)} | {'unchanged' if kept else 'CHANGED'} |")
    md += ["", "A fault injected on one rank while 2 ranks resume a 10-step run to step 30 "
           "(`tests/mpi_inject.py`):", "",
           "| fault | exit | message | checkpoints |", "|---|---|---|---|"]
    for name, rc, line, ok, kept in faults:
        md.append(f"| {mh.FAULTS[name][0]} | {rc} | {cell(line)} | {'unchanged' if kept else 'CHANGED'} |")
    return md + [""]


def write(path, text):
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "docs", "faults.md"))
    args = p.parse_args(argv)
    commands = fc.available_commands()
    with tempfile.TemporaryDirectory(prefix="bptt-faults-") as base:
        os.makedirs(os.path.join(base, "bed"))
        bed = fc.make_bed(os.path.join(base, "bed"))
        rows = run_rows(bed, base, commands)
        kill, same_w, same_m = kill_rows(base)
        sig_rc, sig_line = sigint_row(bed.base)
        mpi = mpi_rows(base)
        bad = [(c.key, m) for c, rc, m, ok, _ in rows if not ok]
        if mpi:
            bad += [(f"mpi {name}", m) for name, rc, m, ok, kept in mpi[0] + mpi[1] if not (ok and kept)]

    md = ["# Faults and bad input: what was tried and what happened", "",
          "Generated by `python benchmarks/faults_table.py` from real runs of `bptt` (each row on a "
          "fresh copy of a small trained run with checkpoints at steps 3 and 6); the same rows are "
          "asserted by `tests/test_faults.py` (rows marked † by `tests/test_cli.py`). `<tmp>` stands for the temporary directory, `<pid>` for the "
          "process id. Exit 1 is an error, exit 2 a usage error; stderr holds the one line shown "
          "(after `bptt train`'s own start-up lines, if it got that far), never a traceback.", ""]

    md += ["## Killed at random moments", "",
           "| fault | what happened |", "|---|---|",
           f"| SIGKILL {kill['kills']} times during one training run (`--checkpoint-every 2`, "
           f"{fc.KILL_STEPS} steps): {kill['mid_write']} kills inside a checkpoint write, "
           f"{kill['fresh_starts'] - 1} before the first checkpoint existed, the rest after random "
           f"delays or steps; each time resumed with `--resume` (or started again with `--out`) | "
           f"after every kill the checkpoint `latest` names loaded (checksums verified); the end is "
           f"{'byte-identical' if same_w else 'DIFFERENT'} in `model.safetensors` and "
           f"`state.safetensors`, and the {fc.KILL_STEPS} logged losses are "
           f"{'identical' if same_m else 'DIFFERENT'}, to the same run never interrupted |",
           f"| Ctrl-C (SIGINT) during training | exit {sig_rc}: {cell(sig_line)} (a checkpoint is "
           f"written first) |", ""]

    def section(title, group, header):
        out = [f"## {title}", "", header, "|---|---|---|---|" + ("---|" if group == "fault" else "")]
        for case, rc, msg, ok, kept in rows:
            if case.group != group:
                continue
            mark = " †" if case.covered else ""
            extra = f" {kept} |" if group == "fault" else ""
            out.append(f"| `{case.command}` | {case.what}{mark} | {rc} | {cell(msg)} |{extra}")
        return out + [""]

    md += section("Bad input", "input", "| command | input | exit | message |")
    md += section("Faults while running", "fault", "| command | fault | exit | message | checkpoints |")

    md += ["## Damaged or inconsistent checkpoints", "",
           "The newest checkpoint (`ckpt-00000006`) of the copy is damaged as described; an older one "
           "(`ckpt-00000003`) is kept beside it. `sample` only reads the weights, vocabulary and model "
           "description; `train --resume` reads everything.", "",
           "| damage | `bptt sample RUN` | `bptt train --resume RUN` |", "|---|---|---|"]
    by_what = {}
    for case, rc, msg, ok, kept in rows:
        if case.group == "checkpoint":
            by_what.setdefault(case.what, {})[case.command] = (rc, msg, case.covered)
    for what, cmds in by_what.items():
        mark = " †" if any(c[2] for c in cmds.values()) else ""
        cells = []
        for cmd in ("sample", "train --resume"):
            rc, msg, _ = cmds.get(cmd, (None, "", None))
            cells.append(f"exit {rc}: {cell(msg)}" if rc else f"exit 0: {msg if msg.startswith('works') else cell(msg)}")
        md.append(f"| {what}{mark} | {cells[0]} | {cells[1]} |")
    md.append("")
    md += mpi_section(mpi)
    if bad:
        md += ["## Rows that did not behave as the tests expect", ""] + [f"- {k}: {cell(m)}" for k, m in bad] + [""]
    write(args.out, "\n".join(md))
    return 1 if bad or not (same_w and same_m) else 0


if __name__ == "__main__":
    sys.exit(main())
