"""What a run shows while it works, and what it leaves in its folder's train.log.

One bar over the steps of each phase in turn (phantom rendering, CT reader, translator warm-up,
pretraining, training), the phase named, with its ETA, throughput and the latest losses. train.log
gets the resolved options at the start, a loss line every `log_every` steps (the mean of the terms
since the last line, as the CycleGAN reference code prints them) and a line per epoch. Where the
output is not a terminal the bar gives way to those same plain lines; with progress off nothing is
shown (the log is still written).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

LOG_NAME = "train.log"


def short_losses(losses: dict) -> str:
    """The loss terms a bar or a log line shows (grad_share is a measurement, not a loss)."""
    return " ".join(f"{k} {v:.4g}" for k, v in losses.items() if k != "grad_share")


class RunProgress:
    """show: display anything at all (the Trainer's `progress`); the bar needs a terminal (or a
    notebook), plain lines are printed otherwise."""

    def __init__(self, show: bool, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.show = show
        self.bar_ok = show and (_is_terminal(self.stream) or "ipykernel" in sys.modules)
        self.log_path: Optional[Path] = None
        self.log_every = 0
        self._bar = None
        self._phase = ""
        self._count, self._total = 0, 0
        self._window: dict[str, float] = {}   # loss sums since the last loss line
        self._window_steps, self._window_start, self._window_count = 0, 0.0, 0
        self.loss_names: list[str] = []       # the terms of the latest step (an epoch line shows their means)
        self.echo = True                      # the options and log lines shown too (the demo's runs: bar only)

    # -- train.log ----------------------------------------------------------------------------

    def open_log(self, folder, log_every: int) -> None:
        """Log into folder/train.log from now on, appending: a resumed or replaced run's lines stay."""
        self.log_path, self.log_every = Path(folder) / LOG_NAME, log_every

    def close_log(self) -> None:
        self.log_path = None

    def line(self, text: str, echo: bool = True) -> None:
        """A line in train.log; shown too (above the bar, or plain) when echo and showing."""
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        if echo and self.show and self.echo:
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def block(self, logged: str, shown: str) -> None:
        """Several lines at once (the options): `logged` into train.log as they are, `shown` shown."""
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(logged + "\n")
        if self.show and self.echo:
            print(shown, file=self.stream, flush=True)

    # -- phases -------------------------------------------------------------------------------

    @contextmanager
    def phase(self, name: str, total: int, done: int = 0, unit: str = "step"):
        """A phase of `total` units of which `done` are behind it (a resumed run): the bar restarts
        under its name; its start and end go to the log."""
        self._phase, self._count, self._total = name, done, total
        self._reset_window()
        self.line(f"{name}: {total - done} {unit}s" + (f" (from {done} of {total})" if done else ""),
                  echo=not self.bar_ok)
        if self.bar_ok:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=done, desc=name, unit=unit, leave=False, file=self.stream,
                             dynamic_ncols=True)
        start = time.perf_counter()
        try:
            yield self
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        self.line(f"{name}: done in {time.perf_counter() - start:.1f} s", echo=False)

    def iterate(self, iterable, total: int, desc: str):
        """The items of `iterable` as one phase (the data loaders' progress callable)."""
        with self.phase(desc, total, unit="patient"):
            for item in iterable:
                yield item
                self.advance()

    def advance(self, losses: Optional[dict] = None, where: str = "") -> None:
        """One unit done; losses (floats) shown on the bar and averaged into the next loss line."""
        self._count += 1
        if losses:
            self.loss_names = [k for k in losses if k != "grad_share"]
            for k, v in losses.items():
                self._window[k] = self._window.get(k, 0.0) + v
            self._window_steps += 1
        if self._bar is not None:
            if where:
                self._bar.set_description_str(f"{self._phase}, {where}", refresh=False)
            if losses:
                self._bar.set_postfix_str(short_losses(losses), refresh=False)
            self._bar.update(1)
        if losses and self.log_every and (self._count % self.log_every == 0 or self._count == self._total):
            self._loss_line(where)

    def _loss_line(self, where: str) -> None:
        n = max(self._window_steps, 1)   # steps whose losses were read (the CT reader reads every 25th)
        seconds = (time.perf_counter() - self._window_start) / max(self._count - self._window_count, 1)
        means = {k: v / n for k, v in self._window.items()}
        self.line(f"{self._phase} step {self._count}/{self._total}{', ' + where if where else ''} "
                  f"({seconds:.3f} s/step): {short_losses(means)}", echo=not self.bar_ok)
        self._reset_window()

    def _reset_window(self) -> None:
        self._window, self._window_steps, self._window_start = {}, 0, time.perf_counter()
        self._window_count = self._count


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def options_text(cfg, resolved: dict, changed_only: bool = False) -> str:
    """The options of a run as CycleGAN's reference code prints them: every field, and the default
    beside the ones that differ from it; `resolved` gives what the "auto" values became here."""
    from ..config import TrainConfig, leaf_fields
    ours, defaults = leaf_fields(cfg.to_dict()), leaf_fields(TrainConfig().to_dict())
    if changed_only:
        ours = {k: v for k, v in ours.items() if defaults.get(k) != v}
    width = max(map(len, [*ours, *(f"resolved {k}" for k in resolved)]))
    lines = ["---------------- options ----------------" if not changed_only else
             "-------- options (those not at their default) --------"]
    for k, v in ours.items():
        note = f"   [default: {defaults.get(k)!r}]" if defaults.get(k) != v else ""
        lines.append(f"{k:>{width}}: {v!r}{note}")
    lines += [f"{'resolved ' + k:>{width}}: {v}" for k, v in resolved.items()]
    lines.append("------------------ end ------------------")
    return "\n".join(lines)
