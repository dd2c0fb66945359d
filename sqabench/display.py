"""What a sweep shows while it runs: a progress bar on a terminal, one plain line per cell elsewhere.

On a terminal the bar names the current cell and its phase (build, compile, verify, warm-up,
timing) with the sweep's elapsed time and ETA. In a CI log or behind ``| tee`` a live display
would only leave its last frame, so each finished cell prints one line instead.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)  # fmt: skip
from rich.text import Text

from sqabench.cells import Cell
from sqabench.estimate import Pace
from sqabench.lengths import format_len
from sqabench.report import format_ms


def row_line(row: dict) -> str:
    """``mha 1k x128: ok 12.3 ms (spread 1.2%)``, or the status and error of a failed cell."""
    head = f"{row['variant']} {format_len(int(row['seq_len']))} x{row['batch']}: {row['status']}"
    if row["status"] != "ok":
        return f"{head} ({row['error']})" if row.get("error") else head
    if row.get("spread") in ("", None):
        return f"{head} {format_ms(float(row['time_ms']))} (1 repeat: no spread)"
    line = f"{head} {format_ms(float(row['time_ms']))} (spread {float(row['spread']):.1%}"
    return line + (", noisy)" if row.get("noisy") is True or row.get("noisy") == "True" else ")")


class SweepDisplay:
    """Progress for ``total`` cells on ``console``; ``eta`` is told each cell's predicted seconds."""

    def __init__(self, console: Console, total: int, pace: Pace | None = None) -> None:
        self.console = console
        self.total = total
        self.live = console.is_terminal
        self.pace = pace or Pace()
        self.started = time.monotonic()
        self.cell_started = self.started
        self.cell: Cell | None = None
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            _EtaColumn(self), console=console, transient=False,
        )  # fmt: skip
        self.task = None

    def __enter__(self) -> "SweepDisplay":
        if self.live:
            self.progress.__enter__()
            self.task = self.progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.__exit__(*exc)

    def start(self, cell: Cell) -> None:
        self.cell = cell
        self.cell_started = time.monotonic()
        self.phase("build")

    def phase(self, name: str) -> None:
        if self.live and self.cell is not None:
            self.progress.update(self.task, description=f"{self.cell.label} · {name}")

    def finished(self, row: dict) -> None:
        self.pace.finished(time.monotonic() - self.cell_started)
        self.cell = None
        if self.live:
            self.progress.update(self.task, advance=1)
        else:
            self.console.print(Text(row_line(row)), highlight=False)

    def eta_text(self) -> str:
        """Remaining time: the prediction of the cells left, scaled by how the finished ones compared, less
        the time the running cell has taken so far (recomputed at every refresh, so it moves within a cell)."""
        in_cell = time.monotonic() - self.cell_started if self.cell is not None else 0.0
        left = self.pace.remaining_s(in_cell)
        return f"ETA {format_duration(left)}" if left > 0 else ""


class _EtaColumn(ProgressColumn):
    """The ETA, asked of the display at each refresh."""

    def __init__(self, display: SweepDisplay) -> None:
        super().__init__()
        self.display = display

    def render(self, task) -> Text:
        return Text(self.display.eta_text())


def format_seconds(seconds: float) -> str:
    """A predicted part of a sweep: seconds to 3 digits below 1000 s, then minutes, hours, days."""
    if seconds < 1000:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def quality_line(row: dict) -> str:
    """``sqa seed 1: loss 1.23, accuracy 0.456, 12.3 ms a step, 40 s``, or its status and error."""
    head = f"{row['variant']} seed {row['seed']}"
    if row["status"] != "ok":
        return f"{head}: {row['status']} ({row['error']})"
    said = f"{head}: loss {float(row['val_loss']):.4g}, accuracy {float(row['val_accuracy']):.3f}"
    said += f", {float(row['val_bpb']):.4g} bits/byte" if row.get("val_bpb") not in ("", None) else ""
    said += " (solved)" if row.get("solved") is True else ""
    return said + f", {float(row['step_ms']):.3g} ms a step, {row['wall_s']} s"


class QualityDisplay:
    """``sqabench quality``'s progress: on a terminal one bar over every step of every run (the run, its step,
    its last loss and the ETA); elsewhere a line per evaluation and per finished run."""

    def __init__(self, console: Console, total_steps: int) -> None:
        self.console = console
        self.live = console.is_terminal
        self.label, self.steps, self.last = "", 0, ""
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self.total = total_steps
        self.task = None

    def __enter__(self) -> "QualityDisplay":
        if self.live:
            self.progress.__enter__()
            self.task = self.progress.add_task("starting", total=max(1, self.total))
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.__exit__(*exc)

    def start(self, label: str, steps: int) -> None:
        self.label, self.steps, self.last = label, steps, ""
        self._describe(0)
        if not self.live:
            self.console.print(Text(f"training {label} ({steps} steps) ..."), highlight=False)

    def _describe(self, step: int) -> None:
        if self.live:
            self.progress.update(self.task, description=f"{self.label} · step {step}/{self.steps}{self.last}")

    def step(self, step: int) -> None:
        if self.live:
            self.progress.update(self.task, advance=1)
            if step % 10 == 0 or step == self.steps:
                self._describe(step)

    def evaluated(self, point: dict) -> None:
        self.last = (f" · loss {point['train_loss']:.3g} · held-out loss {point['val_loss']:.3g}, accuracy "
                     f"{point['val_accuracy']:.3f}")  # fmt: skip
        if not self.live:
            self.console.print(Text(f"  {self.label}: step {point['step']}/{self.steps}, loss "
                                    f"{point['train_loss']:.3g}, held-out loss {point['val_loss']:.3g}, accuracy "
                                    f"{point['val_accuracy']:.3f}", style="dim"), highlight=False)  # fmt: skip

    def finished(self, row: dict, done: int, runs: int) -> None:
        self.console.print(Text(f"[{done}/{runs}] {quality_line(row)}"), highlight=False)
