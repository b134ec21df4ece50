"""The progress bars of long work (tqdm): the character model's (step, smoothed loss, validation
loss, chars/s and time left) and that of --patch auto's candidates trained side by side (--jobs)."""

import sys
import time

from tqdm import tqdm


class ProgressBar:
    def __init__(self, cfg, step, elapsed, enabled=True):
        self.by_steps = cfg.steps is not None
        total = cfg.steps if self.by_steps else int(round(cfg.minutes * 60))
        self.enabled = enabled
        self.rate = None
        self._last = (step, time.perf_counter())
        self.bar = None
        if enabled:
            self.bar = tqdm(total=total, initial=step if self.by_steps else int(elapsed),
                            unit="step" if self.by_steps else "s", dynamic_ncols=True,
                            file=sys.stderr, mininterval=0.5,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def update(self, step, elapsed, loss, val, chars_per_step):
        now = time.perf_counter()
        s0, t0 = self._last
        if now > t0 and step > s0:
            r = (step - s0) * chars_per_step / (now - t0)
            self.rate = r if self.rate is None else 0.9 * self.rate + 0.1 * r
        self._last = (step, now)
        if self.bar is None:
            return
        post = {"loss": f"{loss:.3f}"}
        if val is not None:
            post["val"] = f"{val:.3f}"
        if self.rate:
            post["chars/s"] = f"{self.rate:,.0f}"
        if not self.by_steps:
            post["step"] = step
        self.bar.set_postfix(post, refresh=False)
        self.bar.update((step if self.by_steps else int(elapsed)) - self.bar.n)

    def write(self, text):
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CandidatesBar:
    """--patch auto with --jobs: one bar over every candidate's epochs, each counted up to the
    --epochs cap (one that --patience stops early fills the rest of its share when it finishes),
    the running candidates' epoch and best validation accuracy so far as the postfix, and a line
    as each one finishes; nothing when not enabled (--quiet)."""

    def __init__(self, names, epochs, enabled=True):
        self.names, self.epochs = list(names), int(epochs)
        self.seen = [0] * len(self.names)  # epochs counted per candidate
        self.state = {}  # running candidate -> (epoch, best accuracy)
        self.bar = None
        if enabled:
            self.bar = tqdm(total=self.epochs * len(self.names), desc=f"{len(self.names)} candidates", unit="epoch",
                            dynamic_ncols=True, file=sys.stderr, mininterval=0.5,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]")

    def epoch(self, i, epoch, best):
        if self.bar is None or self.seen[i] >= self.epochs:  # (a report arriving after its end)
            return
        self.state[i] = (epoch, best)
        self._postfix()
        self._count(i, epoch)

    def done(self, i, line):
        self.state.pop(i, None)
        if self.bar is None:
            return
        self._postfix()
        self._count(i, self.epochs)
        self.bar.write(line, file=sys.stderr)

    def _postfix(self):
        self.bar.set_postfix_str("; ".join(f"{self.names[j]}: epoch {e}, best {b:.3f}"
                                           for j, (e, b) in sorted(self.state.items())), refresh=False)

    def _count(self, i, upto):
        step = min(upto, self.epochs) - self.seen[i]
        if step > 0:
            self.seen[i] += step
            self.bar.update(step)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
