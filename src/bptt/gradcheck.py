"""Finite-difference gradient checking.

``gradcheck(fn, wrt)`` perturbs every entry of every array in ``wrt`` (in place, float64) by
+-eps, evaluates ``fn()`` for the loss each time, and compares the centered difference
(L(x+eps) - L(x-eps)) / 2eps with the analytic gradient that ``fn`` returns.

The error of a tensor is  max_i |analytic_i - numeric_i| / max(max_i |analytic_i|, max_i |numeric_i|):
the worst entry measured against the tensor's own scale, so that entries that are zero or tiny
do not turn round-off into a large "relative" error.

The result is true only when every tensor passes (``assert gradcheck(fn, wrt)`` fails loudly on a
wrong gradient), and ``raise_on_failure=True`` raises ``GradcheckError`` with the table.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class TensorCheck:
    name: str
    shape: tuple
    rel_error: float
    abs_error: float
    worst_index: tuple
    analytic: float  # at the worst entry
    numeric: float


class GradcheckError(RuntimeError):
    """A gradient disagrees with its finite difference; the message is the per-tensor table."""


@dataclass
class GradcheckResult:
    checks: list
    eps: float
    tol: float = 1e-6

    @property
    def max_rel_error(self):
        return max((c.rel_error for c in self.checks), default=0.0)

    @property
    def worst(self):
        return max(self.checks, key=lambda c: c.rel_error)

    def passed(self, tol=None):
        return self.max_rel_error < (self.tol if tol is None else tol)

    def __bool__(self):
        return self.passed()

    def __getitem__(self, name):
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def table(self, tol=None):
        tol = self.tol if tol is None else tol
        lines = [f"{'tensor':<24} {'shape':<14} {'rel error':>10} {'abs error':>10}  worst entry"]
        for c in self.checks:
            flag = "" if c.rel_error < tol else "  <-- FAIL"
            lines.append(
                f"{c.name:<24} {str(c.shape):<14} {c.rel_error:>10.2e} {c.abs_error:>10.2e}  "
                f"{c.worst_index} analytic {c.analytic:+.6e} numeric {c.numeric:+.6e}{flag}"
            )
        return "\n".join(lines)

    __str__ = table


def gradcheck(fn, wrt, eps=1e-5, max_entries=None, seed=0, tol=1e-6, raise_on_failure=False):
    """Check the analytic gradients of a scalar computation by centered finite differences.

    fn:   a function of no arguments that runs the forward and backward passes on the arrays in
          ``wrt`` and returns ``(loss, grads)``, grads a dict with the same keys as ``wrt``.
    wrt:  dict name -> float64 array, perturbed in place (and restored) during the check.
    max_entries: check at most this many entries per tensor, chosen at random (all if None).
    tol: the largest relative error that passes.
    raise_on_failure: raise ``GradcheckError`` (with the table) when a tensor fails.
    Returns a ``GradcheckResult``: per tensor the error, the worst entry and both values there;
    its truth value is whether every tensor passed.
    """
    for name, arr in wrt.items():
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 arrays; {name} is {getattr(arr, 'dtype', type(arr))}")
    _, analytic = fn()
    missing = [n for n in wrt if n not in analytic]
    if missing:
        raise ValueError(f"gradcheck: fn returned no gradient for {missing}")
    analytic = {n: np.array(analytic[n], dtype=np.float64) for n in wrt}
    rng = np.random.default_rng(seed)
    checks = []
    for name, arr in wrt.items():
        a = analytic[name]
        if a.shape != arr.shape:
            raise ValueError(f"gradcheck: gradient of {name} has shape {a.shape}, the array {arr.shape}")
        flat = arr.reshape(-1)  # a view: perturbing it perturbs arr
        if not np.shares_memory(flat, arr):
            raise ValueError(f"gradcheck: {name} must be contiguous to be perturbed in place")
        idx = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            idx = np.sort(rng.choice(flat.size, max_entries, replace=False))
        num = np.zeros(len(idx))
        for n, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            lp, _ = fn()
            flat[i] = old - eps
            lm, _ = fn()
            flat[i] = old
            num[n] = (lp - lm) / (2 * eps)
        ana = a.reshape(-1)[idx]
        diff = np.abs(ana - num)
        scale = max(np.abs(ana).max(initial=0.0), np.abs(num).max(initial=0.0))
        w = int(np.argmax(diff)) if diff.size else 0
        rel = float(diff[w] / scale) if scale > 0 else float(diff.max(initial=0.0))
        checks.append(
            TensorCheck(
                name, arr.shape, rel, float(diff.max(initial=0.0)),
                tuple(int(v) for v in np.unravel_index(idx[w], arr.shape)) if diff.size else (),
                float(ana[w]) if diff.size else 0.0, float(num[w]) if diff.size else 0.0,
            )
        )
    result = GradcheckResult(checks, eps, tol)
    if raise_on_failure and not result:
        raise GradcheckError(
            f"gradcheck failed: largest relative error {result.max_rel_error:.2e} "
            f"(tolerance {tol:.0e}) in {result.worst.name}\n{result.table()}"
        )
    return result
