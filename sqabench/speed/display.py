"""What a sweep shows while it runs: a progress bar on a terminal, one plain line per cell elsewhere.

On a terminal the bar names the current cell and its phase (build, compile, verify, warm-up,
timing) with the sweep's elapsed time and ETA. In a CI log or behind ``| tee`` a live display
would only leave its last frame, so each finished cell prints one line instead.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)  # fmt: skip
from rich.text import Text

from sqabench.speed.cells import Cell
from sqabench.speed.estimate import Pace
from sqabench.units import format_duration, format_len, format_ms


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
