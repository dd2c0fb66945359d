"""``sqabench run`` after its options are checked: announce, estimate, sweep with progress, tables, exit code.

The flow: the plan's header; this device's ceilings; the estimate of what is left, in parts
(``--dry-run`` prints it with the cells and stops there); a sweep estimated past an hour asks on
a terminal and is refused off one (unless ``--budget`` or ``--yes``); the results file is locked
for the run; a ``--budget`` that the estimate exceeds reorders the cells by value, and no cell
starts that would end past it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sqabench.environment import process_age_s
from sqabench.errors import ConfigError
from sqabench.files import CsvWriter, RunLock, cache_dir, write_text
from sqabench.speed.ceilings import DeviceLimits, cached_ceilings, describe, get_ceilings
from sqabench.speed.cells import Cell
from sqabench.speed.display import SweepDisplay
from sqabench.speed.estimate import ASSUMED_EFFICIENCY, CONFIRM_S, PARTS, Estimate, Pace, by_value, estimate, flex_shape
from sqabench.speed.peaks import peaks_for
from sqabench.speed.report import format_rate, results_tables
from sqabench.speed.request import RunPlan
from sqabench.speed.results import key_of, read_rows, results_writer
from sqabench.speed.sweep import SweepAborted, run_sweep
from sqabench.units import format_duration, format_len, format_seconds, plural


def announce(plan: RunPlan, err: Console) -> None:
    where = f"{plan.env.gpu_name} ({plan.device})" if plan.device.type == "cuda" else "CPU"
    if plan.quick_default:
        where += ": a quick sweep (pass --seq for more)"
    first = plan.cells[0]
    lengths = ", ".join(f"{format_len(n)}={n}" for n in plan.lengths)
    extras = [f"{plural(first.layers_timed, 'layer')}", f"scope {first.settings.scope}"]
    if first.settings.mode == "decode":
        extras.append(
            f"{first.settings.new_tokens} new tokens" + (", CUDA graphs" if first.settings.cuda_graphs else "")
        )
    err.print(
        Text(
            f"sqabench run on {where}: {plural(len(plan.specs), 'variant')} x lengths {lengths}, {plan.preset.name} "
            f"preset ({', '.join(extras)}), {'causal' if first.settings.causal else 'encoder'}, {first.settings.mode}, {plan.dtype}, "
            f"{first.batch_rule}"
        ),
        highlight=False,
    )
    if plan.device.type == "cuda":
        from sqabench.environment import clock_lock

        locked, said = clock_lock(plan.device)
        if locked is False and os.environ.get("CI"):
            err.print(Text(f"warning: the GPU's clocks are {said}", style="yellow"), highlight=False)
        elif locked is not None:
            err.print(Text(f"clocks: {said}"), highlight=False)
    if plan.resumed_missing:
        err.print(Text(f"--resume: {plan.path} does not exist yet; starting it afresh"), highlight=False)
    elif plan.resumed_empty:
        err.print(Text(f"--resume: {plan.path} is empty; starting it afresh"), highlight=False)
    elif plan.done:
        pending = len(plan.pending)
        err.print(
            Text(f"resuming {plan.path}: {plural(len(plan.cells) - pending, 'cell')} already ok, {pending} to run"),
            highlight=False,
        )
    if not plan.dry_run:
        err.print(Text(f"writing {plan.path}"), highlight=False)


def device_limits(plan: RunPlan, err: Console) -> DeviceLimits:
    """This device's measured ceilings (cached, or measured now) and its published peaks, announced."""
    if not plan.pending:
        return DeviceLimits()
    if plan.dry_run:  # a dry run measures nothing and writes nothing: the cache's ceilings, or no estimate
        cached = cached_ceilings(plan.env, plan.dtype)
        if cached is None:
            err.print(
                Text(
                    f"no {plan.dtype} ceilings cached for this device: no estimate (the dry run measures "
                    f"nothing; `sqabench ceilings --dtype {plan.dtype}` measures them)"
                ),
                highlight=False,
            )
            return DeviceLimits()
        err.print(Text(f"ceilings: the cached ones (measured {cached.measured_at})"), highlight=False)
        return DeviceLimits(measured=cached.rates)
    lookup = get_ceilings(plan.device, plan.env, plan.dtype, before=lambda text: err.print(Text(text), highlight=False))
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
    return DeviceLimits(measured=rates, peak=published[1])


class CompiledShapes:
    """The flex shapes earlier runs compiled into this inductor cache (``compiled.json`` in sqabench's cache folder):
    the estimate charges them a cache hit, not a compile. Keyed by the cache's folder and torch's version."""

    def __init__(self) -> None:
        import torch

        try:
            from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache

            folder = Path(inductor_cache())
        except ImportError:
            folder = None
        self.path = cache_dir() / "compiled.json"
        self.key = f"{folder}|torch {torch.__version__}"
        self.alive = folder is not None and (folder / "fxgraph").is_dir()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def known(self) -> frozenset[str]:
        return frozenset(self._load().get(self.key, [])) if self.alive else frozenset()

    def recorder(self, cells: list[Cell]) -> Callable[[dict], None]:
        """What to call with each finished row: an ok row of one of ``cells`` adds that cell's shape."""
        by_key = {key_of(cell.identity()): cell for cell in cells}

        def heard(row: dict) -> None:
            if row["status"] == "ok" and key_of(row) in by_key:
                self.add(by_key[key_of(row)])

        return heard

    def add(self, cell: Cell) -> None:
        if not (cell.uses_flex or cell.settings.compile or cell.settings.world_size > 1):
            return
        data = self._load()
        shapes = set(data.get(self.key, [])) | {flex_shape(cell)}
        data[self.key] = sorted(shapes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(data, indent=1))
        except OSError:
            pass  # a read-only cache: estimates stay conservative


def predict(cells: list[Cell], limits: DeviceLimits, shapes: CompiledShapes | None = None) -> Estimate | None:
    if limits.measured is None:
        return None
    known = (shapes or CompiledShapes()).known()
    return estimate(cells, limits.measured, compiled_before=known, already_s=process_age_s())


def announce_estimate(predicted: Estimate, plan: RunPlan, cells: int, err: Console) -> None:
    """The sweep's expected duration and its parts, with a plain warning when it is long."""
    where = plan.env.gpu_name or "this CPU"
    parts = ", ".join(f"{part} {format_duration(s)}" for part, s in predicted.parts_s.items() if s > 0)
    total = format_duration(predicted.total_s)
    text = (
        f"estimated duration: {total if total.startswith('under') else 'about ' + total} "
        f"({predicted.total_s:.0f} s) for "
        f"{plural(cells, 'cell')} on {where} ({parts}; {format_duration(predicted.already_s)} spent so far; cost "
        f"model at {ASSUMED_EFFICIENCY:.0%} of the measured ceilings; the ETA corrects it as cells finish)"
    )
    err.print(Text(text), highlight=False)
    if predicted.long and plan.budget_s is None:
        err.print(
            Text(f"warning: this is a long sweep (about {format_duration(predicted.total_s)}); for less, pass "
                 f"{advice(plan)}", style="bold yellow"),
            highlight=False,
        )  # fmt: skip


def advice(plan: RunPlan) -> str:
    text = "--budget DURATION, fewer or shorter --seq lengths, fewer --variants"
    return text + (", or a GPU" if plan.device.type == "cpu" else "")


def dry_run_table(cells: list[Cell], predicted: Estimate | None) -> Table:
    """Each cell to run, with its predicted seconds by part."""
    table = Table(title="--dry-run: the cells this run would measure, in order", title_justify="left")
    for column in ("cell", *PARTS, "total"):
        table.add_column(column, justify="left" if column == "cell" else "right")
    for i, cell in enumerate(cells):
        parts = predicted.per_cell[i] if predicted else {}
        values = [format_seconds(parts[part]) if parts.get(part) else "-" for part in PARTS]
        table.add_row(Text(cell.label), *values, format_seconds(sum(parts.values())) if parts else "-")
    if predicted is not None:
        totals = predicted.parts_s
        table.add_row(Text("all cells", style="bold"), *(format_seconds(totals[p]) for p in PARTS),
                      format_seconds(predicted.cells_s))  # fmt: skip
    return table


def confirm_long(predicted: Estimate | None, plan: RunPlan, err: Console) -> None:
    """A sweep estimated past an hour needs a yes: asked on a terminal; off one, --budget or --yes."""
    if predicted is None or predicted.total_s <= CONFIRM_S or plan.budget_s is not None or plan.yes:
        return
    what = f"this sweep is estimated at about {format_duration(predicted.total_s)} on {plan.env.gpu_name or 'this CPU'}"
    if sys.stdin.isatty() and err.is_terminal:
        if typer.confirm(f"{what}; start it?", default=False, err=True):
            return
        raise ConfigError(f"not started: {what}; for less, pass {advice(plan)}")
    raise ConfigError(f"{what}; pass {advice(plan)} (or --yes to run it anyway)")


class Budget:
    """``--budget``: no cell starts that would end past it (by the estimate, scaled by the pace so far)."""

    def __init__(self, seconds: float | None, pace: Pace) -> None:
        self.seconds, self.pace = seconds, pace
        self.left: list[Cell] = []

    def allows(self, cell: Cell) -> bool:
        if self.seconds is None or process_age_s() + self.pace.next_s() <= self.seconds:
            return True
        self.left.append(cell)
        self.pace.skipped()
        return False


def hard_exit(code: int) -> None:
    """Leave now, with a cell still running in its thread: finished rows are on disk already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Solo:
    """This process measures every cell alone: its own file, its own Ctrl-C (the sweep runs in a worker thread, so
    that Ctrl-C reaches the main thread at once, even while a long kernel runs)."""

    is_main = True
    world = 1

    def __init__(self, plan: RunPlan) -> None:
        self.plan, self.run_id, self.path = plan, uuid.uuid4().hex[:12], plan.path

    def __enter__(self) -> "Solo":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def pending(self) -> list[Cell]:
        return self.plan.pending

    def lock(self):
        """The results file's lock, for the sweep (a dry run or a refused one takes none)."""
        return RunLock(self.plan.path)

    def limits(self, err: Console) -> DeviceLimits:
        return device_limits(self.plan, err)

    def measure(self, pending: list[Cell]):
        return None  # the sweep's own: one cell in this process


class Rank:
    """This process is one rank of a context-parallel job (``--cp``, or a torchrun job): every rank plans the same
    cells and measures each together; rank 0's file and finished cells are what count, passed to the others
    through the job's store, and rank 0 alone writes, prints and shows progress."""

    def __init__(self, plan: RunPlan, group, launched: bool) -> None:
        self.plan, self.group, self.launched = plan, group, launched
        self.is_main, self.world = group.is_main, group.world

    def __enter__(self) -> "Rank":
        self.held = RunLock(self.plan.path) if self.is_main else nullcontext()
        try:
            self.held.__enter__()  # rank 0 holds the file's lock for the whole job
        except BaseException:
            self.__exit__(None, None, None)
            raise
        if self.is_main:
            self.group.post("plan", {"path": str(self.plan.path), "done": sorted(map(list, self.plan.done)),
                                     "run": uuid.uuid4().hex[:12]})  # fmt: skip
        shared = self.group.fetch("plan")  # rank 0's file, finished cells and run id, on every rank
        self.done = {tuple(key) for key in shared["done"]}
        self.run_id, self.path = shared["run"], Path(shared["path"])
        return self

    def __exit__(self, *exc) -> None:
        from sqabench.speed.cp import leave

        if getattr(self, "held", None) is not None:
            self.held.__exit__(None, None, None)
        try:
            leave()
        except (RuntimeError, KeyboardInterrupt):  # a peer already gone: nothing left to tear down
            pass

    def pending(self) -> list[Cell]:
        return [cell for cell in self.plan.cells if key_of(cell.identity()) not in self.done]

    def lock(self):
        return nullcontext()  # held since the job started (``__enter__``)

    def limits(self, err: Console) -> DeviceLimits:
        from sqabench.speed.cp import link_rate

        link = link_rate(self.group)
        limits = device_limits(self.plan, err) if self.is_main else DeviceLimits()
        err.print(Text(f"{self.group.world} ranks ({self.group.backend}); all-gather: {link / 1e9:.3g} GB/s "
                       "received per rank"), highlight=False)  # fmt: skip
        return dataclasses.replace(limits, link_bytes_per_s=link)

    def measure(self, pending: list[Cell]):
        """Each cell measured on every rank at once, under a key of its own in the job's store."""
        from sqabench.speed.cp import stop_if_interrupted
        from sqabench.speed.split import measure_split

        counter = iter(range(len(pending)))

        def measure(cell, phase):
            def heard(name: str) -> None:  # each phase of a cell: where a dropped Ctrl-C takes effect
                stop_if_interrupted()
                phase(name)

            stop_if_interrupted()
            return measure_split(cell, heard, self.group, f"{self.run_id}/cell{next(counter)}")

        return measure


def execute(plan: RunPlan, out: Console, err: Console, abandon: Callable[[int], None] = hard_exit) -> int:
    """``sqabench run``'s flow, alone or as one rank of a split job: announce, ceilings, the estimate (a dry run
    stops there), the sweep under the file's lock with progress, the tables. 0, 1 (a cell failed or the GPU
    broke), 2 (refused, or the results could not be written) or 130 (interrupted).

    ``--cp N`` outside a torchrun job starts the job's ranks through torch's launcher, and this process waits
    for them; inside one, this process joins as its rank. On a Ctrl-C the main thread reports what is kept and
    ``abandon``s a cell still running in its worker thread."""
    if plan.options is not None and plan.options.runs > 1 and not plan.dry_run:
        return _runs(plan, err)
    if plan.launch and not plan.dry_run:
        from sqabench.speed.cp import launch

        err.print(Text(f"sqabench run --cp {plan.world}: starting {plan.world} ranks with torch.distributed.run"),
                  highlight=False)  # fmt: skip
        return launch(plan.world, list(plan.argv))
    if plan.world > 1 and not plan.dry_run:
        from sqabench.speed.cp import interruptible, join

        launched = interruptible()
        try:
            role = Rank(plan, join(plan.device.type, plan.cp_timeout), launched)
        except KeyboardInterrupt:
            if os.environ.get("RANK", "0") == "0":
                interrupted(_Discard(), plan, err)
            return 0 if launched else 130
    else:
        role = Solo(plan)
    with role:
        if not role.is_main:
            out = err = Console(file=io.StringIO())  # one rank speaks
        try:
            return _run(plan, role, out, err, abandon)
        except KeyboardInterrupt:  # a rank's Ctrl-C before its sweep (alone, the sweep's thread is what it stops)
            if role.world == 1:
                raise
            if role.is_main:
                interrupted(_Discard(), plan, err)
            return _interrupted_code(role)


def start_run(argv: list[str]) -> subprocess.Popen:
    """``sqabench run ARGV`` in a fresh process (``--runs``): its own interpreter, caches warm from the last."""
    return subprocess.Popen([sys.executable, "-m", "sqabench", "run", *argv], env={**os.environ, "PYTHONSAFEPATH": "1"})


def _runs(plan: RunPlan, err: Console) -> int:
    """``--runs K``: the sweep K times, each in a fresh process (its own run id, caches warm after the first),
    each run's rows appended to the one file as it ends. Ctrl-C ends the running one as a sweep ends, keeps its
    finished rows and starts no other; no part file is left behind."""
    k = plan.options.runs
    err.print(Text(f"sqabench run --runs {k}: {k} sweeps, each in a fresh process, into {plan.path}"), highlight=False)
    code = 0
    with RunLock(plan.path):
        writer = results_writer(plan.path)
        for i in range(1, k + 1):
            part = plan.path.with_name(f".{plan.path.stem}.run{i}{plan.path.suffix}")
            part.unlink(missing_ok=True)
            argv = dataclasses.replace(plan.options, out=str(part), runs=1).argv()
            err.print(Text(f"== run {i} of {k}", style="bold"), highlight=False)
            child = start_run(argv)
            try:
                done = child.wait()
            except KeyboardInterrupt:
                done = child.wait()  # the child heard it too: it keeps its finished rows and ends
                done = done or 130
            try:
                for row in read_rows(part) if part.exists() else []:
                    writer.write(row)
            finally:
                part.unlink(missing_ok=True)
            code = max(code, done) if done in (0, 1) else done
            if done not in (0, 1):  # refused, or interrupted: no further run
                break
    err.print(Text(f"results: {plan.path} ({plural(i, 'run')})"), highlight=False)
    return code


def _run(plan: RunPlan, role: "Solo | Rank", out: Console, err: Console, abandon: Callable[[int], None]) -> int:
    announce(plan, err)
    limits = role.limits(err)
    cells = role.pending()
    predicted = predict(cells, limits)
    if predicted is not None and plan.budget_s is not None and predicted.total_s > plan.budget_s:
        cells = by_value(cells)
        predicted = predict(cells, limits)
        err.print(Text(f"--budget {format_duration(plan.budget_s)}: the sweep will not fit; the most valuable cells "
                       "run first (the longest lengths of mha, sqa, xsqa and swa)"), highlight=False)  # fmt: skip
    if predicted is not None:
        announce_estimate(predicted, plan, len(cells), err)
        for note in predicted.notes:
            err.print(Text(f"  {note}"), highlight=False)
    if plan.dry_run:
        out.print(dry_run_table(cells, predicted))
        return 0
    if role.world == 1:  # a rank of a job never waits on a question: the job was started for it
        confirm_long(predicted, plan, err)
    with role.lock():
        code, stranded = _sweep(plan, role, cells, predicted, limits, out, err)
    if stranded:  # a cell still runs in its thread; the lock is released and the writer closed: leave now
        abandon(code)
    return code


def _sweep(plan, role, cells, predicted, limits, out, err) -> tuple[int, bool]:
    """The sweep; (exit code, whether a worker thread was left running by a Ctrl-C). Alone, the sweep runs in a
    worker thread; a rank runs it in its main thread, where the job's Ctrl-C lands between phases."""
    if any(cell.settings.breakdown for cell in cells):
        from sqabench.speed.profile import start_profiler

        start_profiler(plan.device)
    writer = results_writer(role.path) if role.is_main else _Discard()
    new_rows: list[dict] = []
    remember = CompiledShapes().recorder(cells) if role.is_main else (lambda row: None)  # rank 0 records
    pace = Pace(predicted.per_cell_s if predicted else None)
    budget = Budget(plan.budget_s, pace)
    display = SweepDisplay(err, len(cells), pace)
    outcome: dict[str, BaseException] = {}

    def finished(row: dict) -> None:
        new_rows.append(row)
        display.finished(row)
        remember(row)

    def work() -> None:
        try:
            run_sweep(
                cells, writer, plan.env, on_start=display.start, on_phase=display.phase, on_row=finished,
                measure=role.measure(cells), limits=limits, should_start=budget.allows, run_id=role.run_id,
                baseline=plan.baseline,
            )  # fmt: skip
        except BaseException as error:  # handed to the main thread, which decides
            outcome["error"] = error

    try:
        with display:
            if role.world == 1:
                worker = threading.Thread(target=work, name="sqabench-sweep", daemon=True)
                worker.start()
                while worker.is_alive():
                    worker.join(0.1)
            else:
                work()
    except KeyboardInterrupt:
        writer.close()  # a cell the worker finishes from now on is not written: the message below stays true
        interrupted(writer, plan, err)
        return _interrupted_code(role), role.world == 1
    error = outcome.get("error")
    if isinstance(error, KeyboardInterrupt):
        interrupted(writer, plan, err)
        return _interrupted_code(role), False
    if isinstance(error, OSError):
        err.print(Text("error: ", style="bold red") + Text(f"cannot write results to {role.path}: {error}"))
        return 2, False
    if error is not None and not isinstance(error, SweepAborted):
        raise error
    if not role.is_main:
        return (1 if error is not None else 0), False
    code = report(role.path, plan, new_rows, writer.written, error, out, err)
    if budget.left:
        labels = ", ".join(cell.label for cell in budget.left[:6]) + (", ..." if len(budget.left) > 6 else "")
        err.print(Text(f"--budget {format_duration(plan.budget_s)} spent: {plural(len(budget.left), 'cell')} not "
                       f"started ({labels}); continue with --resume --out {plan.path}", style="yellow"),
                  highlight=False)  # fmt: skip
    return code, False


def _interrupted_code(role: "Solo | Rank") -> int:
    """130; but under sqabench's own launcher a rank ends cleanly (the launcher would print a traceback for a rank
    that fails) and the launching process exits 130."""
    return 0 if getattr(role, "launched", False) else 130


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
                f"stopped after {aborted}; {plural(written, 'row')} kept; continue in a new process with "
                f"--resume --out {path}",
                style="bold red",
            ),
            highlight=False,
        )
    out.print(Text(f"results: {path}" if rows else "no rows written"), highlight=False)
    return 1 if failed or aborted is not None else 0


def interrupted(writer: CsvWriter, plan: RunPlan, err: Console) -> None:
    if writer.written:
        message = (
            f"interrupted: {plural(writer.written, 'finished row')} kept in {plan.path}; continue with --resume "
            f"--out {plan.path}"
        )
    else:
        message = "interrupted before any cell finished: nothing written"
    err.print(Text(message, style="yellow"), highlight=False)


class _Discard:
    """The writer of a rank that writes nothing: rank 0 alone writes the CSV."""

    written = 0

    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass
