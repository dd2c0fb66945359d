"""What ``sqabench quality`` shows while it trains: on a terminal one bar over every step of every run; in a
CI log or behind ``| tee`` a plain line per evaluation and per finished run.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from sqabench.units import format_duration, format_ms, plural


def quality_line(row: dict) -> str:
    """``sqa seed 1: held-out loss 1.23, accuracy 0.456, 12.3 ms a step, 40 s``, or its status and error."""
    head = f"{row['variant']} seed {row['seed']}"
    if row["status"] != "ok":
        return f"{head}: {row['status']} ({row['error']})"
    said = f"{head}: held-out loss {float(row['val_loss']):.4g}, accuracy {float(row['val_accuracy']):.3f}"
    said += f", {float(row['val_bpb']):.4g} bits/byte" if row.get("val_bpb") not in ("", None) else ""
    said += " (solved)" if row.get("solved") is True else ""
    return said + f", {format_ms(float(row['step_ms']))} a step, {format_duration(float(row['wall_s']))} in all"


class QualityDisplay:
    """``sqabench quality``'s progress: on a terminal one bar over every step of every run (the run, its step,
    its last loss and the ETA); elsewhere a line per evaluation and per finished run."""

    def __init__(self, console: Console, total_steps: int, pads_scored: bool = False) -> None:
        self.console = console
        self.live = console.is_terminal
        self.label, self.steps, self.last = "", 0, ""
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self.total = total_steps
        self.task = None
        self._remote: dict[str, int] = {}  # another rank's run: the step of its last evaluation
        # --pad-like-paper trains with the pads scored; its held-out numbers score real tokens only: say which
        self.train_loss = "train loss (pads scored)" if pads_scored else "train loss"
        self.held_out = " (real tokens)" if pads_scored else ""

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
            self.console.print(Text(f"training {label} ({plural(steps, 'step')}) ..."), highlight=False)

    def _describe(self, step: int) -> None:
        if self.live:
            self.progress.update(self.task, description=f"{self.label} · step {step}/{self.steps}{self.last}")

    def step(self, step: int) -> None:
        if self.live:
            self.progress.update(self.task, advance=1)
            if step % 10 == 0 or step == self.steps:
                self._describe(step)

    def evaluated(self, point: dict) -> None:
        said = (f"{self.train_loss} {point['train_loss']:.3g}, held-out loss {point['val_loss']:.3g}, accuracy "
                f"{point['val_accuracy']:.3f}{self.held_out}")  # fmt: skip
        self.last = f" · {said}"
        if not self.live:
            self.console.print(Text(f"  {self.label}: step {point['step']}/{self.steps}, {said}", style="dim"),
                               highlight=False)  # fmt: skip

    def remote_start(self, rank: int, label: str, steps: int) -> None:
        """Another rank of a torchrun job started a run (its progress comes with its evaluations)."""
        self._remote[label] = 0
        if not self.live:
            self.console.print(Text(f"rank {rank}: training {label} ({plural(steps, 'step')}) ..."), highlight=False)

    def remote_evaluated(self, rank: int, label: str, point: dict) -> None:
        """Another rank's evaluation: the bar moves by the steps since its last one; off a terminal, a line."""
        if self.live:
            self.progress.update(self.task, advance=point["step"] - self._remote.get(label, 0))
        else:
            said = (f"{self.train_loss} {point['train_loss']:.3g}, held-out loss {point['val_loss']:.3g}, accuracy "
                    f"{point['val_accuracy']:.3f}{self.held_out}")  # fmt: skip
            self.console.print(Text(f"  rank {rank}: {label}: step {point['step']}, {said}", style="dim"),
                               highlight=False)  # fmt: skip
        self._remote[label] = point["step"]

    def finished(self, row: dict, done: int, runs: int) -> None:
        self.console.print(Text(f"[{done}/{runs}] {quality_line(row)}"), highlight=False)
