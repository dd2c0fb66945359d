"""Cells to rows: measure each cell, turn expected failures into rows, write the CSV as rows finish.

Out of memory (at run time or while compiling) becomes a row with status ``oom``; a case the
kernel cannot run ``skipped``; any other runtime failure ``error`` (``sqabench.failures`` decides);
the sweep goes on. A sticky CUDA error poisons every later cell, so the sweep stops after its row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import torch

from sqabench.device import free_memory
from sqabench.environment import Environment
from sqabench.failures import MEASURE_ERRORS, classify
from sqabench.files import CsvWriter
from sqabench.kernels import compile_settings
from sqabench.speed.ceilings import DeviceLimits
from sqabench.speed.cells import Cell, Outcome
from sqabench.speed.measure import measure_cell
from sqabench.speed.results import FLOOR_WRONG, format_samples, key_of, significant

PROCESS_WARMUP = 3  # extra untimed calls of a sweep's first cell: it also warms the process up


class SweepAborted(RuntimeError):
    """The device is unusable after a cell (a sticky CUDA error): later cells would all fail."""


def run_cell(cell: Cell, measure: Callable[..., Outcome], phase: Callable[[str], None]) -> Outcome:
    """``measure`` with expected failures turned into outcomes; memory freed either way."""
    device = torch.device(cell.settings.device)
    try:
        outcome = measure(cell, phase)
    except MEASURE_ERRORS as err:  # includes compiler and CUDA errors
        outcome = Outcome.failed(classify(err))
        del err
        free_memory(device, collect=True)  # the exception's frames held the cell's tensors
        return outcome
    free_memory(device, collect=device.type == "cuda")
    return outcome


def to_row(
    cell: Cell,
    outcome: Outcome,
    env: Environment,
    run_id: str,
    limits: DeviceLimits = DeviceLimits(),
    baseline: str | None = None,
) -> dict[str, object]:
    """The CSV row of a measured cell: identity, cost model, timing, floor, memory, GPU, environment, outcome."""
    work = cell.work
    cost = work.cost
    row: dict[str, object] = {
        "run_id": run_id,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **env.as_row(),
        **cell.identity(),  # the cell's device wins over the environment's: it is part of the key
        "baseline": baseline or "",
        "kernel": outcome.kernel,
        "flops": cost.flops,
        "attention_flops": cost.attention_flops,
        "exps": cost.exps,
        "min_bytes": cost.min_bytes,
        "bytes_per_token": work.bytes_per_token,
        "kv_cache_bytes": work.kv_cache_bytes,
        "status": outcome.status,
        "error": outcome.error,
        "note": outcome.note,
        **_rates("ceiling", limits.measured),
        **_rates("peak", limits.peak),
        **{column: _sig(value) for column, value in outcome.readings.items()},
    }
    timing = outcome.timing
    if timing is not None:
        seconds = timing.median_ms / 1e3
        row.update(
            time_ms=significant(timing.median_ms),
            time_ms_min=significant(timing.min_ms),
            time_ms_max=significant(timing.max_ms),
            spread=significant(timing.spread, 3) if len(timing.samples_ms) > 1 else "",  # one repeat: none
            noisy=timing.noisy if len(timing.samples_ms) > 1 else "",
            noise=significant(timing.noise, 3) if timing.noise is not None else "",
            stopped=timing.stopped,
            samples_ms=format_samples(timing.samples_ms),
            token_samples_ms=format_samples(timing.token_samples_ms),
            compile_ms=significant(timing.compile_ms),
            tokens_per_s=significant(cell.batch * (1 if cell.settings.mode == "decode" else cell.seq_len) / seconds),
            tflops=significant(cost.flops / seconds / 1e12),
            verify_rel_err=significant(outcome.verify_rel_err, 3),
            verify_grad_rel_err=significant(outcome.verify_grad_rel_err, 3),
            peak_mem_bytes=outcome.peak[0],
            peak_reserved_bytes=outcome.peak[1],
        )
        if cell.settings.world_size > 1:  # the busiest rank's share, and what it receives from the others
            row.update(rank_flops=work.rank.flops, comm_bytes=work.comm_bytes,
                       ceiling_link_bytes_per_s=significant(limits.link_bytes_per_s, 4))  # fmt: skip
        bound = cell.floor(limits.measured, limits.link_bytes_per_s)
        if bound is not None:
            efficiency = bound.floor_ms / timing.median_ms
            row.update(floor_ms=significant(bound.floor_ms), bound=bound.bound, efficiency=significant(efficiency, 4))
            if efficiency > 1:
                row["note"] = "; ".join(note for note in (row["note"], FLOOR_WRONG) if note)
    return row


def _rates(prefix: str, rates) -> dict[str, object]:
    if rates is None:
        return {}
    return {
        f"{prefix}_matmul_flops": significant(rates.matmul_flops, 4),
        f"{prefix}_exp_per_s": significant(rates.exp_per_s, 4),
        f"{prefix}_bytes_per_s": significant(rates.bytes_per_s, 4),
    }


def _sig(value: object) -> object:
    return significant(value) if isinstance(value, float) else value


def run_sweep(
    cells: list[Cell],
    writer: CsvWriter,
    env: Environment,
    *,
    done: frozenset[tuple[str, ...]] = frozenset(),
    on_start: Callable[[Cell], None] = lambda cell: None,
    on_phase: Callable[[str], None] = lambda phase: None,
    on_row: Callable[[dict], None] = lambda row: None,
    measure: Callable[..., Outcome] | None = None,
    limits: DeviceLimits = DeviceLimits(),
    run_id: str | None = None,
    should_start: Callable[[Cell], bool] = lambda cell: True,
    baseline: str | None = None,
) -> list[dict]:
    """Measure every cell whose key is not in ``done`` and that ``should_start`` lets start (a budget may
    leave some out); write and return the new rows.

    Raises ``SweepAborted`` after writing the row of a cell that left the GPU unusable.
    """
    measure = measure or measure_cell
    run_id = run_id or uuid.uuid4().hex[:12]
    rows = []
    with compile_settings():
        for cell in cells:
            if key_of(cell.identity()) in done or not should_start(cell):
                continue
            if not rows:  # the process is cold (allocator, thread pools, library handles): warm it with the
                # first cell's own step, so that the order of cells never changes a result; the row says so
                cell = cell.but(warmup=cell.settings.warmup + PROCESS_WARMUP)
            on_start(cell)
            outcome = run_cell(cell, measure, on_phase)
            row = to_row(cell, outcome, env, run_id, limits, baseline)
            writer.write(row)
            rows.append(row)
            on_row(row)
            if outcome.sticky:
                raise SweepAborted(f"{cell.label}: {outcome.error}; a sticky CUDA error fails every later cell")
            if outcome.fatal:
                raise SweepAborted(f"{cell.label}: {outcome.error}; a rank failed inside the split step, "
                                   "which leaves the process group unusable")  # fmt: skip
    return rows
