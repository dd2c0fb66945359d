"""Cells to rows: measure each cell, turn expected failures into rows, write the CSV as rows finish.

Out of memory (at run time or while compiling) becomes a row with status ``oom``; a case the
kernel cannot run (``NotImplementedError`` and the like, also when the compiler wraps it)
``skipped``; any other runtime failure ``error``; the sweep goes on. A sticky CUDA error (illegal
memory access, launch failure, ECC) poisons every later cell, so the sweep stops after its row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import torch

from sqabench.attention import KernelUnsupported, compile_settings
from sqabench.ceilings import DeviceLimits, floor
from sqabench.cells import Cell, Outcome
from sqabench.environment import Environment
from sqabench.decode import cache_slots
from sqabench.flops import kv_cache_bytes, split_cost
from sqabench.measure import free_memory, measure_cell
from sqabench.results import CsvWriter, format_samples, key_of, significant
from sqabench.verify import KernelVerifyFailed

STICKY_CUDA = (
    "illegal memory access", "unspecified launch failure", "uncorrectable ECC", "device-side assert",
    "misaligned address", "illegal instruction", "CUDA error: an illegal",
)  # fmt: skip


class SweepAborted(RuntimeError):
    """The device is unusable after a cell (a sticky CUDA error): later cells would all fail."""


def _recompile_limit_error() -> type[BaseException]:
    try:
        from torch._dynamo.exc import FailOnRecompileLimitHit  # derives from Exception, not RuntimeError
    except ImportError:
        return RuntimeError
    return FailOnRecompileLimitHit


MEASURE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, MemoryError, _recompile_limit_error())


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, the compiler's inner exceptions."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "inner_exception", None)]


def classify(err: BaseException) -> Outcome:
    """The row an expected failure becomes: ``oom``, ``skipped`` or ``error``."""
    chain = list(_chain(err))
    message = _first_line(err)
    if any(isinstance(e, torch.OutOfMemoryError) for e in chain):
        return Outcome(status="oom", error=_first_line(next(e for e in chain if isinstance(e, torch.OutOfMemoryError))))
    if any(isinstance(e, MemoryError) for e in chain):
        return Outcome(status="oom", error=f"host memory: {message}")
    unsupported = next(
        (e for e in chain if isinstance(e, (KernelUnsupported, NotImplementedError)) or _says_not_implemented(e)),
        None,
    )
    if unsupported is not None and not isinstance(err, KernelVerifyFailed):
        return Outcome(status="skipped", error=_first_line(unsupported))
    return Outcome(status="error", error=f"{type(err).__name__}: {message}")


def _says_not_implemented(err: BaseException) -> bool:
    """Inductor's ``LoweringException`` carries a wrapped ``NotImplementedError`` only in its text."""
    return str(err).startswith("NotImplementedError:")


def is_sticky(outcome: Outcome) -> bool:
    return outcome.status == "error" and any(marker.lower() in outcome.error.lower() for marker in STICKY_CUDA)


def run_cell(cell: Cell, measure: Callable[..., Outcome], phase: Callable[[str], None]) -> Outcome:
    """``measure`` with expected failures turned into outcomes; memory freed either way."""
    device = torch.device(cell.device)
    try:
        outcome = measure(cell, phase)
    except MEASURE_ERRORS as err:  # includes compiler and CUDA errors
        outcome = classify(err)
        del err
        free_memory(device, collect=True)  # the exception's frames held the cell's tensors
        return outcome
    free_memory(device, collect=device.type == "cuda")
    return outcome


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def to_row(
    cell: Cell, outcome: Outcome, env: Environment, run_id: str, limits: DeviceLimits = DeviceLimits()
) -> dict[str, object]:
    """The CSV row of a measured cell: identity, cost model, timing, floor, memory, GPU, environment, outcome."""
    cost = cell.cost()
    row: dict[str, object] = {
        "run_id": run_id,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **env.as_row(),
        **cell.identity(),  # the cell's device wins over the environment's: it is part of the key
        "kernel": outcome.kernel,
        "flops": cost.flops,
        "attention_flops": cost.attention_flops,
        "exps": cost.exps,
        "min_bytes": cost.min_bytes,
        **(_decode_columns(cell, cost) if cell.mode == "decode" else {}),
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
            spread=significant(timing.spread, 3),
            noisy=timing.noisy,
            samples_ms=format_samples(timing.samples_ms),
            compile_ms=significant(timing.compile_ms),
            tokens_per_s=significant(cell.batch * (1 if cell.mode == "decode" else cell.seq_len) / seconds),
            tflops=significant(cost.flops / seconds / 1e12),
            verify_rel_err=significant(outcome.verify_rel_err, 3),
            verify_grad_rel_err=significant(outcome.verify_grad_rel_err, 3),
            peak_mem_bytes=outcome.peak[0],
            peak_reserved_bytes=outcome.peak[1],
        )
        per_rank, comm = cost, 0
        if cell.world_size > 1:  # the busiest rank's share, and what it receives from the others
            per_rank, comm = split_cost(cell.spec, cell.preset, cell.batch, cell.seq_len, cell.causal, cell.dtype,
                                        cell.world_size)  # fmt: skip
            row.update(rank_flops=per_rank.flops, comm_bytes=comm,
                       ceiling_link_bytes_per_s=significant(limits.link_bytes_per_s, 4))  # fmt: skip
        bound = None
        if limits.measured:
            bound = floor(per_rank.flops, per_rank.exps, per_rank.min_bytes, limits.measured, comm,
                          limits.link_bytes_per_s)  # fmt: skip
        if bound is not None:
            row.update(
                floor_ms=significant(bound.floor_ms),
                bound=bound.bound,
                efficiency=significant(bound.floor_ms / timing.median_ms, 4),
            )
    return row


def _decode_columns(cell: Cell, cost) -> dict[str, object]:
    """Per decode step: the bytes the cost model says it reads; and the cache the run fills."""
    slots = cache_slots(cell.seq_len, cell.new_tokens, cell.spec.window)
    return {
        "bytes_per_token": cost.min_bytes,
        "kv_cache_bytes": kv_cache_bytes(cell.spec, cell.preset, cell.batch, slots, cell.dtype),
    }


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
) -> list[dict]:
    """Measure every cell whose key is not in ``done``; write and return the new rows.

    Raises ``SweepAborted`` after writing the row of a cell that left the GPU unusable.
    """
    measure = measure or measure_cell
    run_id = run_id or uuid.uuid4().hex[:12]
    rows = []
    with compile_settings():
        for cell in cells:
            if key_of(cell.identity()) in done:
                continue
            on_start(cell)
            outcome = run_cell(cell, measure, on_phase)
            row = to_row(cell, outcome, env, run_id, limits)
            writer.write(row)
            rows.append(row)
            on_row(row)
            if is_sticky(outcome):
                raise SweepAborted(f"{cell.label}: {outcome.error}; a sticky CUDA error fails every later cell")
            if outcome.fatal:
                raise SweepAborted(f"{cell.label}: {outcome.error}; a rank failed inside the split step, "
                                   "which leaves the process group unusable")  # fmt: skip
    return rows
