"""Cells to rows: plan a sweep, measure each cell, turn expected failures into rows, write the CSV.

A cell is one (variant, sequence length) at fixed settings. Each finished cell is written and
flushed at once; out of memory becomes a row with status ``oom``, a case the kernel cannot run
``skipped``, any other runtime failure ``error``, and the sweep goes on.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from sqabench.attention import KernelUnsupported, compile_settings
from sqabench.encoder import build_encoder
from sqabench.errors import ConfigError
from sqabench.flops import step_cost
from sqabench.measure import (
    Timing,
    free_memory,
    nvml_reading,
    peak_memory,
    reset_peak_memory,
    time_first_call,
    time_repeats,
)
from sqabench.presets import Preset
from sqabench.results import CsvWriter, Environment, cell_key
from sqabench.variants import VariantSpec
from sqabench.verify import KernelCheckFailed, check_layer

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Cell:
    """One measurement: a variant at one length, with every setting that changes the number."""

    spec: VariantSpec
    preset: Preset
    seq_len: int
    batch: int
    dtype: str
    mode: str
    causal: bool
    kernel: str  # as requested: auto, eager, sdpa, sdpa-<backend>, flex
    device: str
    warmup: int
    repeats: int

    def identity(self) -> dict[str, object]:
        """The columns that say what was measured, as the CSV spells them."""
        p, s = self.preset, self.spec
        return {
            "variant": s.name, "preset": p.name, "n_heads": s.n_heads, "n_q_heads": s.n_q_heads,
            "n_kv_heads": s.n_kv_heads, "head_dim": p.head_dim, "d_model": p.d_model, "n_layers": p.n_layers,
            "window": "" if s.window is None else s.window, "causal": self.causal, "mode": self.mode,
            "dtype": self.dtype, "device": self.device, "kernel_requested": self.kernel,
            "seq_len": self.seq_len, "batch": self.batch, "warmup": self.warmup, "repeats": self.repeats,
        }  # fmt: skip

    @property
    def label(self) -> str:
        return f"{self.spec.name} · {format_len(self.seq_len)} x{self.batch}"


@dataclass
class Outcome:
    status: str = "ok"
    error: str = ""
    kernel: str = ""
    check_rel_err: float | None = None
    timing: Timing | None = None
    peak: tuple[int | None, int | None] = (None, None)
    nvml: dict = field(default_factory=dict)


def format_len(n: int) -> str:
    """Short length label: 1k, 32k, 128k for powers of two, 200k, else the number."""
    if n >= 1024 and n % 1024 == 0 and (n & (n - 1)) == 0:
        return f"{n // 1024}k"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")
POWER_OF_TWO_SLACK = 0.03


def parse_length(text: str) -> int:
    """One sequence length: an integer, or a size ``Nk`` / ``Nm`` (case-insensitive).

    ``Nk`` means N x 1,000 (``Nm`` N x 1,000,000), replaced by the nearest power of two when that
    is within 3%: 1k=1024, 4k=4096, 32k=32768, 128k=131k=131072, but 200k=200000 and 1m=1000000.
    """
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise ConfigError(f"--seq: {text.strip()!r} is not a length; use integers or sizes like 1k, 32k, 131k, 200k")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise ConfigError(f"--seq: {text.strip()!r} is not a whole number of tokens")
        value = int(number)
    else:
        exact = float(number) * (1_000 if unit == "k" else 1_000_000)
        power = 2 ** round(math.log2(exact)) if exact >= 1 else 1
        value = power if abs(power - exact) <= POWER_OF_TWO_SLACK * exact else round(exact)
    if value < 1:
        raise ConfigError(f"--seq: {text.strip()!r} must be at least 1 token")
    return value


def parse_lengths(text: str) -> list[int]:
    """Comma-separated lengths, in the order given, repeats dropped."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise ConfigError(f"--seq: empty item in {text!r}; give comma-separated lengths such as 1k,32k,200k")
    return list(dict.fromkeys(parse_length(item) for item in items))


def batch_for(seq_len: int, tokens: int, batch: int | None = None) -> int:
    """``--batch`` if given, else max(1, tokens // seq_len): the paper's 1024x128 ... 200000x1."""
    return batch if batch is not None else max(1, tokens // seq_len)


def plan(
    specs: Iterable[VariantSpec],
    preset: Preset,
    seq_lens: Iterable[int],
    *,
    tokens: int,
    batch: int | None,
    dtype: str,
    mode: str,
    causal: bool,
    kernel: str,
    device: str,
    warmup: int,
    repeats: int,
) -> list[Cell]:
    """Every cell of the sweep, shortest lengths first so that an OOM at the end loses nothing."""
    specs = list(specs)
    return [
        Cell(spec, preset, n, batch_for(n, tokens, batch), dtype, mode, causal, kernel, device, warmup, repeats)
        for n in seq_lens
        for spec in specs
    ]


def _step(model: torch.nn.Module, cell: Cell, device: torch.device) -> Callable[[], None]:
    tokens = torch.randint(0, cell.preset.vocab_size, (cell.batch, cell.seq_len), device=device)
    if cell.mode == "fwd":

        def forward() -> None:
            with torch.inference_mode():
                model(tokens)

        return forward
    targets = torch.randint(0, cell.preset.vocab_size, (cell.batch * cell.seq_len,), device=device)

    def train() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(tokens)  # (B, N, V)
        F.cross_entropy(logits.flatten(0, 1), targets).backward()

    return train


def measure_cell(cell: Cell) -> Outcome:
    """Build, compile (timed apart), check against fp64, warm up, time, read memory. May raise."""
    device = torch.device(cell.device)
    reset_peak_memory(device)
    model = build_encoder(cell.spec, cell.preset, cell.kernel, cell.causal, device, DTYPES[cell.dtype])
    step = _step(model, cell, device)
    compile_ms = time_first_call(step, device)
    check = check_layer(model.blocks[0].attn, cell.batch, cell.seq_len, cell.preset.rope_base)
    reset_peak_memory(device)  # the steady state, not the check's reference
    samples = time_repeats(step, device, cell.warmup, cell.repeats)
    return Outcome(
        kernel=check.kernel,
        check_rel_err=check.rel_err,
        timing=Timing(compile_ms, samples),
        peak=peak_memory(device),
        nvml=nvml_reading(device),
    )


def run_cell(cell: Cell, measure: Callable[[Cell], Outcome]) -> Outcome:
    """``measure`` with expected failures turned into outcomes; memory freed either way."""
    try:
        return measure(cell)
    except torch.OutOfMemoryError as err:
        return Outcome(status="oom", error=_first_line(err))
    except MemoryError as err:
        return Outcome(status="oom", error=f"host memory: {_first_line(err)}")
    except KernelUnsupported as err:
        return Outcome(status="skipped", error=_first_line(err))
    except (KernelCheckFailed, RuntimeError) as err:  # includes compiler and CUDA errors
        return Outcome(status="error", error=f"{type(err).__name__}: {_first_line(err)}")
    finally:
        free_memory(torch.device(cell.device))  # the exception and its frames are gone by now


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def to_row(cell: Cell, outcome: Outcome, env: Environment, run_id: str) -> dict[str, object]:
    cost = step_cost(cell.spec, cell.preset, cell.batch, cell.seq_len, cell.causal, cell.mode, cell.dtype)
    row: dict[str, object] = {
        "run_id": run_id,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **cell.identity(),
        **env.as_row(),
        "kernel": outcome.kernel,
        "status": outcome.status,
        "error": outcome.error,
        "flops": cost.flops,
        "attention_flops": cost.attention_flops,
        "exps": cost.exps,
        "min_bytes": cost.min_bytes,
        **outcome.nvml,
    }
    row["device"] = cell.device  # the cell's device wins over the environment's: it is part of the resume key
    timing = outcome.timing
    if timing is not None:
        seconds = timing.median_ms / 1e3
        row.update(
            time_ms=round(timing.median_ms, 4),
            time_ms_min=round(timing.min_ms, 4),
            time_ms_max=round(timing.max_ms, 4),
            compile_ms=round(timing.compile_ms, 1),
            tokens_per_s=round(cell.batch * cell.seq_len / seconds, 1),
            tflops=round(cost.flops / seconds / 1e12, 4),
            check_rel_err=f"{outcome.check_rel_err:.3e}",
            peak_mem_bytes="" if outcome.peak[0] is None else outcome.peak[0],
            peak_reserved_bytes="" if outcome.peak[1] is None else outcome.peak[1],
        )
    return row


def run_sweep(
    cells: list[Cell],
    writer: CsvWriter,
    env: Environment,
    *,
    done: set[tuple[str, ...]] = frozenset(),
    on_start: Callable[[Cell], None] = lambda cell: None,
    on_row: Callable[[dict], None] = lambda row: None,
    measure: Callable[[Cell], Outcome] | None = None,
) -> list[dict]:
    """Measure every cell whose key is not in ``done``; write and return the new rows."""
    measure = measure or measure_cell
    run_id = uuid.uuid4().hex[:12]
    rows = []
    with compile_settings():
        for cell in cells:
            if cell_key(cell.identity()) in done:
                continue
            on_start(cell)
            row = to_row(cell, run_cell(cell, measure), env, run_id)
            writer.write(row)
            rows.append(row)
            on_row(row)
    return rows
