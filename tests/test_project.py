"""The shape of the project itself: no import cycle through the command-line modules, the
benchmark harness outside the library, and CI running exactly the README's test command with
the browser test required."""

import ast
import os
import sys
import re

from training_helpers import REPO

SRC = os.path.join(REPO, "src")
CLI_MODULES = ("bptt.cli", "bptt.tasks_cli", "bptt.viz_cli")


def package_modules():
    """module name -> file, for every module of the bptt package."""
    out = {}
    for root, _, files in os.walk(os.path.join(SRC, "bptt")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), SRC)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(root, f)
    return out


def imports_of(name, path, modules):
    """The bptt modules that ``name`` imports anywhere in its file (inside functions too)."""
    is_pkg = path.endswith("__init__.py")
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(parts + (node.module.split(".") if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def cycle_through(start, graph):
    """A list of modules from start back to start, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_the_cli_modules_import_no_cycle():
    modules = package_modules()
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    assert "bptt.argtypes" in graph["bptt.tasks_cli"] and "bptt.argtypes" in graph["bptt.viz_cli"]
    assert {"bptt.tasks_cli", "bptt.viz_cli"} <= graph["bptt.cli"]  # the parser reads both
    for m in CLI_MODULES:
        assert cycle_through(m, graph) is None, " -> ".join(cycle_through(m, graph))


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycle_through("a", graph) == ["a", "b", "c", "a"] and cycle_through("d", graph) is None


def test_the_benchmark_harness_is_not_in_the_library():
    modules = package_modules()
    assert not [m for m in modules if "bench" in m or m == "bptt.report"]
    assert os.path.isfile(os.path.join(REPO, "benchmarks", "cells.py"))


def test_ci_requires_the_browser_test_and_runs_the_readme_command():
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read().strip().splitlines()
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    test_line = re.search(r"```bash\n(.*?)\n(.*?)\n```", readme).group(2)
    assert "pytest" in test_line and ci[-1] == test_line
    assert "export BPTT_REQUIRE_BROWSER=1" in ci[:-1]
    assert any("apt-get install -y -qq chromium" in line for line in ci)


def test_before_after_benchmark_blocks_and_clock():
    """benchmarks/before_after.py times new and old in alternating blocks as cells.py does (one
    warm-up step each, the order turned each round, a lead-in step per block), by the clock it
    is given: per block, the clock's time over the timed steps / steps."""
    import importlib.util

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("before_after", os.path.join(REPO, "benchmarks", "before_after.py"))
        ba = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ba)
    finally:
        sys.path.remove(os.path.join(REPO, "benchmarks"))
    calls, ticks = [], iter(range(1000))
    fns = {name: (lambda name=name: calls.append(name)) for name in ("new", "old")}
    per = ba.time_blocks(fns, blocks=2, steps=3, clock=lambda: float(next(ticks)))
    assert calls == ["new", "old"] + ["new"] * 4 + ["old"] * 4 + ["old"] * 4 + ["new"] * 4
    assert per == {"new": [1 / 3, 1 / 3], "old": [1 / 3, 1 / 3]}  # one tick per block of 3 steps
    # the shapes timed: --shapes of one's own (e.g. one thread's share of a row), else grid rows
    args = ba.argparse.Namespace(shapes="64,16,128,192;8,4,8,16", rows="0")
    assert ba._shapes(args) == [(64, 16, 128, 192), (8, 4, 8, 16)]
    args = ba.argparse.Namespace(shapes=None, rows="3,0")
    assert ba._shapes(args) == [ba.cells.GRID[3], ba.cells.GRID[0]]


def test_cells_benchmark_turns_the_order_of_its_blocks():
    """benchmarks/cells.py alternates blocks of each library and turns their order each round, so
    no library always starts right after the same other one; each block starts with one untimed
    lead-in step of its own library, so every timed step follows one of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cells_bench", os.path.join(REPO, "benchmarks", "cells.py"))
    cells = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cells)
    calls = []

    class NoLoad:
        def sample(self):
            return None

        def share(self, a, b):
            return 0.0

    fns = {name: (lambda name=name: calls.append(name)) for name in ("bptt", "baseline", "torch")}
    per, _ = cells.time_blocks(fns, blocks=3, steps=2, warmup=1, load=NoLoad())
    assert calls[:3] == ["bptt", "baseline", "torch"]  # the warm-up
    rounds = calls[3:]  # per block: the lead-in step and 2 timed steps
    assert rounds == ["bptt"] * 3 + ["baseline"] * 3 + ["torch"] * 3 \
        + ["baseline"] * 3 + ["torch"] * 3 + ["bptt"] * 3 \
        + ["torch"] * 3 + ["bptt"] * 3 + ["baseline"] * 3
    assert {k: len(v) for k, v in per.items()} == {"bptt": 3, "baseline": 3, "torch": 3}
