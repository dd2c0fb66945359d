"""``sqabench run`` after its options are checked: announce, sweep with progress, tables, exit code."""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import threading
import uuid
from pathlib import Path
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from sqabench.ceilings import DeviceLimits, describe, get_ceilings
from sqabench.peaks import peaks_for
from sqabench.display import SweepDisplay, format_duration
from sqabench.estimate import ASSUMED_EFFICIENCY, Estimate, estimate
from sqabench.lengths import format_len
from sqabench.report import format_rate, results_tables
from sqabench.request import RunPlan
from sqabench.results import CsvWriter, key_of, read_rows
from sqabench.sweep import SweepAborted, run_sweep


def announce(plan: RunPlan, err: Console) -> None:
    where = f"{plan.env.gpu_name} ({plan.device})" if plan.device.type == "cuda" else "CPU"
    if plan.quick_default:
        where += ": a quick sweep (pass --seq for more)"
    first = plan.cells[0]
    lengths = ", ".join(f"{format_len(n)}={n}" for n in plan.lengths)
    err.print(
        Text(
            f"sqabench run on {where}: {len(plan.specs)} variants x lengths {lengths}, {plan.preset.name} preset, "
            f"{'causal' if first.causal else 'encoder'}, {first.mode}, {plan.dtype}"
        ),
        highlight=False,
    )
    if plan.resumed_missing:
        err.print(Text(f"--resume: {plan.path} does not exist yet; starting it afresh"), highlight=False)
    elif plan.done:
        pending = len(plan.pending)
        err.print(Text(f"resuming {plan.path}: {len(plan.cells) - pending} cells already ok, {pending} to run"))
    err.print(Text(f"writing {plan.path}"), highlight=False)


def device_limits(plan: RunPlan, err: Console) -> DeviceLimits:
    """This device's measured ceilings (cached, or measured now) and its published peaks, announced."""
    if not plan.pending:
        return DeviceLimits()
    lookup = get_ceilings(plan.device, plan.env, plan.dtype)
    rates = lookup.ceilings.rates
    err.print(
        Text(
            f"ceilings ({describe(lookup)}; sqabench ceilings shows how): "
            f"matmul {format_rate(rates.matmul_flops)}, exp {rates.exp_per_s / 1e9:.3g} G/s, "
            f"memory {rates.bytes_per_s / 1e9:.3g} GB/s"
        ),
        highlight=False,
    )
    published = peaks_for(plan.env.gpu_name, plan.dtype)
    if published is None:
        return DeviceLimits(measured=rates)
    return DeviceLimits(measured=rates, peak=published[1], peak_name=published[0])


def hard_exit(code: int) -> None:
    """Leave now, with a cell still running in its thread: finished rows are on disk already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def execute(plan: RunPlan, out: Console, err: Console, abandon: Callable[[int], None] = hard_exit) -> int:
    """Run the plan's pending cells; print the tables; 0, 1 (a cell failed or the GPU broke) or 130.

    The sweep runs in a worker thread so that Ctrl-C reaches the main thread at once, even while a
    long kernel runs; the main thread then reports what is kept and ``abandon``s the worker.
    """
    announce(plan, err)
    writer = CsvWriter(plan.path)
    new_rows: list[dict] = []
    display = SweepDisplay(err, len(plan.pending))
    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            limits = device_limits(plan, err)
            predict(plan.pending, plan, limits, display, err)
            run_sweep(
                plan.pending, writer, plan.env, on_start=display.start, on_phase=display.phase,
                on_row=lambda row: (new_rows.append(row), display.finished(row)), limits=limits,
            )  # fmt: skip
        except BaseException as error:  # handed to the main thread, which decides
            outcome["error"] = error

    worker = threading.Thread(target=work, name="sqabench-sweep", daemon=True)
    try:
        with display:
            worker.start()
            while worker.is_alive():
                worker.join(0.1)
    except KeyboardInterrupt:
        interrupted(writer, plan, err)
        abandon(130)
        return 130
    error = outcome.get("error")
    if isinstance(error, KeyboardInterrupt):
        interrupted(writer, plan, err)
        return 130
    if error is not None and not isinstance(error, SweepAborted):
        raise error

    return report(plan.path, plan, new_rows, writer.written, error, out, err)


def predict(pending: list, plan: RunPlan, limits: DeviceLimits, display: SweepDisplay, err: Console) -> None:
    """Announce the sweep's expected duration and hand each cell's prediction to the ETA."""
    if limits.measured is not None:
        predicted = estimate(pending, limits.measured)
        announce_estimate(predicted, plan, err)
        display.set_predictions(predicted.per_cell_s)


def report(path: Path, plan: RunPlan, new_rows: list[dict], written: int, aborted, out: Console, err: Console) -> int:
    """The tables of every row in ``path`` (earlier runs' too, when resumed), the failures, the exit code."""
    rows = read_rows(path) if path.exists() else []
    for title, table in results_tables(rows, plan.baseline):
        out.print(Text(title, style="bold"), soft_wrap=True, highlight=False)
        out.print(table)
    failed = [r for r in new_rows if r["status"] == "error"]
    for row in failed:
        err.print(Text("error ", style="red") + Text(f"{row['variant']} @ {row['seq_len']}: {row['error']}"))
    if aborted is not None:
        err.print(
            Text(
                f"stopped after {aborted}; {written} rows kept; continue in a new process with --resume --out {path}",
                style="bold red",
            ),
            highlight=False,
        )
    out.print(Text(f"results: {path}" if rows else "no rows written"), highlight=False)
    return 1 if failed or aborted is not None else 0


def interrupted(writer: CsvWriter, plan: RunPlan, err: Console) -> None:
    if writer.written:
        message = (
            f"interrupted: {writer.written} finished rows kept in {plan.path}; continue with --resume --out {plan.path}"
        )
    else:
        message = "interrupted before any cell finished: nothing written"
    err.print(Text(message, style="yellow"), highlight=False)


def announce_estimate(predicted: Estimate, plan: RunPlan, err: Console) -> None:
    """The sweep's expected duration, with a plain warning when it is long."""
    where = plan.env.gpu_name or "this CPU"
    text = (
        f"estimated duration: about {format_duration(predicted.total_s)} for {len(plan.pending)} cells on {where} "
        f"(cost model at {ASSUMED_EFFICIENCY:.0%} of the measured ceilings, compiles included; "
        "the ETA corrects it as cells finish)"
    )
    err.print(Text(text), highlight=False)
    if predicted.long:
        advice = "fewer or shorter --seq lengths, fewer --variants"
        if plan.device.type == "cpu":
            advice += ", or a GPU"
        err.print(
            Text(f"warning: this is a long sweep (about {format_duration(predicted.total_s)}); for less, pass {advice}",
                 style="bold yellow"),
            highlight=False,
        )  # fmt: skip


def execute_split(plan: RunPlan, out: Console, err: Console) -> int:
    """``sqabench run`` as one rank of a context-parallel job: rank 0 writes, prints and shows progress.

    Every rank plans the same cells; rank 0's output file and finished cells are what count, passed
    to the others through the job's store.
    """
    from sqabench.cp import join, leave, link_rate
    from sqabench.split import measure_split

    group = join(plan.device.type, plan.cp_timeout)
    try:
        if not group.is_main:
            out = err = Console(file=io.StringIO())  # one rank speaks
        else:
            announce(plan, err)
            run_id = uuid.uuid4().hex[:12]
            group.post("plan", {"path": str(plan.path), "done": sorted(map(list, plan.done)), "run": run_id})
        shared = group.fetch("plan")  # rank 0's file, finished cells and run id, on every rank
        done = {tuple(key) for key in shared["done"]}
        pending = [cell for cell in plan.cells if key_of(cell.identity()) not in done]
        link = link_rate(group)
        limits = device_limits(plan, err) if group.is_main else DeviceLimits()
        limits = dataclasses.replace(limits, link_bytes_per_s=link)
        err.print(Text(f"{group.world} ranks ({group.backend}); all-gather: {link / 1e9:.3g} GB/s received per rank"),
                  highlight=False)  # fmt: skip
        path = Path(shared["path"])
        writer = CsvWriter(path) if group.is_main else _Discard()
        display = SweepDisplay(err, len(pending))
        predict(pending, plan, limits, display, err)
        counter = iter(range(len(pending)))

        def measure(cell, phase):
            return measure_split(cell, phase, group, f"{shared['run']}/cell{next(counter)}")

        new_rows: list[dict] = []
        aborted = None
        try:
            with display:
                run_sweep(pending, writer, plan.env, on_start=display.start, on_phase=display.phase,
                          on_row=lambda row: (new_rows.append(row), display.finished(row)), measure=measure,
                          limits=limits, run_id=shared["run"])  # fmt: skip
        except SweepAborted as error:
            aborted = error
        if not group.is_main:
            return 1 if aborted is not None else 0
        return report(path, plan, new_rows, writer.written, aborted, out, err)
    finally:
        leave()


class _Discard:
    """The writer of a rank that writes nothing: rank 0 alone writes the CSV."""

    written = 0

    def write(self, row: dict) -> None:
        pass
