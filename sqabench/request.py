"""From command-line options to a checked sweep: every usage error is found here, before any work.

``resolve_run`` turns ``RunOptions`` (what the user typed) into a ``RunPlan`` (device, dtype,
variants, lengths, cells, the output file and its finished cells), or raises ``ConfigError``
naming the bad value and the valid choices. Nothing is written until the plan is complete.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from sqabench.cells import Cell, plan
from sqabench.cp import check_request, job_size
from sqabench.device import resolve_device, validate_dtype
from sqabench.dtypes import DTYPES, get_dtype
from sqabench.environment import Environment, environment, host_label
from sqabench.errors import ConfigError
from sqabench.files import check_output, writable_folder
from sqabench.flops import MODES, SCOPES
from sqabench.kernels import CHOICES, resolve_kernel
from sqabench.options import RunOptions
from sqabench.presets import Preset, get_preset
from sqabench.results import key_of, read_rows
from sqabench.units import MAX_TOKENS, MAX_TOKENS_WHY, parse_duration, parse_lengths
from sqabench.variants import DEFAULT_WINDOW, VariantSpec, base_variant, parse_variants, pick_baseline

DEFAULT_NEW_TOKENS = 32
GPU_DEFAULTS = {"seq": "1k,4k,32k,131k,200k", "tokens": 131072, "warmup": 2, "repeats": 10, "dtype": "bf16"}
CPU_DEFAULTS = {"seq": "256,1k", "tokens": 1024, "warmup": 1, "repeats": 3, "dtype": "fp32"}
# Decode on a GPU: a step must read enough cache for its bytes, not its ~150 kernel launches, to set its
# time. 2M context tokens per step (batch = tokens // context) is 2-16 GB of bf16 cache for the paper
# preset (gqa-mha), 0.6-5 ms at 3.35 TB/s, above what a CUDA-graphed step of ~150 small kernels costs.
GPU_DECODE_TOKENS = 2**21
DEFAULT_CP_TIMEOUT_S = 600.0
MAX_CALLS = 100_000  # warm-up or timed calls of one cell: past this an estimate is meaningless
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
@dataclass(frozen=True)
class RunPlan:
    device: torch.device
    env: Environment
    preset: Preset
    specs: list[VariantSpec]
    lengths: list[int]
    dtype: str
    cells: list[Cell]
    path: Path
    done: frozenset[tuple[str, ...]]  # keys of the cells the file already holds as ok
    resumed_missing: bool  # --resume was given but the file did not exist yet
    quick_default: bool  # the CPU's quick default lengths were used
    baseline: str | None
    world: int = 1  # ranks each sequence is split across
    launch: bool = False  # start the ranks (--cp given outside a torchrun job)
    cp_timeout: float = DEFAULT_CP_TIMEOUT_S
    budget_s: float | None = None  # stop starting cells after this many seconds
    dry_run: bool = False
    yes: bool = False  # a sweep estimated past an hour starts without asking
    resumed_empty: bool = False  # --resume was given an empty file

    @property
    def pending(self) -> list[Cell]:
        return [cell for cell in self.cells if key_of(cell.identity()) not in self.done]


def _at_least(name: str, value: int | None, lowest: int) -> None:
    if value is not None and value < lowest:
        raise ConfigError(f"{name} {value} must be >= {lowest}")


def _at_most(name: str, value: int | None, highest: int) -> None:
    if value is not None and value > highest:
        raise ConfigError(f"{name} {value} must be <= {highest:,}")


def resolve_run(options: RunOptions) -> RunPlan:
    """Check every option and build the plan; raises ``ConfigError`` on the first bad one."""
    device = resolve_device(options.device)
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    dtype = defaults["dtype"] if options.dtype.lower() == "auto" else get_dtype(options.dtype).name
    mode = options.mode.lower()
    if mode not in MODES:
        raise ConfigError(f"unknown mode {options.mode!r}; choose one of: {', '.join(MODES)}")
    _at_least("--window", options.window, 1)
    _at_most("--window", options.window, MAX_TOKENS)
    _at_least("--new-tokens", options.new_tokens, 1)
    if mode != "decode":
        for flag, given in (("--new-tokens", options.new_tokens is not None), ("--cuda-graphs", options.cuda_graphs)):
            if given:
                raise ConfigError(f"{flag} applies to --mode decode only (this run is --mode {mode})")
    if options.cuda_graphs and device.type != "cuda":
        raise ConfigError("--cuda-graphs needs a CUDA GPU; this run is on the CPU")
    gpu_decode = mode == "decode" and device.type == "cuda"
    cuda_graphs = gpu_decode if options.cuda_graphs is None else options.cuda_graphs
    tokens = options.tokens or (GPU_DECODE_TOKENS if gpu_decode else defaults["tokens"])
    budget_s = parse_duration(options.budget, "--budget") if options.budget is not None else None
    for name, value, lowest, highest in (
        ("--tokens", options.tokens, 1, MAX_TOKENS), ("--batch", options.batch, 1, MAX_TOKENS),
        ("--warmup", options.warmup, 0, MAX_CALLS), ("--repeats", options.repeats, 1, MAX_CALLS),
        ("--new-tokens", options.new_tokens, 1, MAX_TOKENS),
    ):  # fmt: skip
        _at_least(name, value, lowest)
        _at_most(name, value, highest)
    scope = options.scope.lower()
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {options.scope!r}; choose one of: {', '.join(SCOPES)}")
    if mode == "decode" and scope != "model":
        raise ConfigError(f"--mode decode times the whole model with its cache; --scope {scope} does not apply")
    _at_least("--layers", options.layers, 1)
    preset = get_preset(options.preset, options.layers)
    base = base_variant(preset.n_heads, preset.n_kv_heads, preset.sliding_window)
    window = DEFAULT_WINDOW if options.window is None else options.window
    specs = parse_variants(options.variants, preset.n_heads, window, base)
    if options.window is not None and all(spec.window is None for spec in specs):
        raise ConfigError(f"--window {options.window} applies to windowed variants (swa, swa-sqa, swa-xsqa, or "
                          f"Hq/Hkv@W); none of {options.variants!r} has a window")  # fmt: skip
    lengths = parse_lengths(defaults["seq"] if options.seq is None else options.seq)
    kernel = options.kernel.lower()
    if kernel not in CHOICES:
        raise ConfigError(f"unknown kernel {options.kernel!r}; choose one of: {', '.join(CHOICES)}")
    for spec in specs:
        if kernel != "best":
            resolve_kernel(spec, kernel)
    compile_mode = _compile_mode(options, mode, scope)
    validate_dtype(device, DTYPES[dtype].torch, dtype)
    world, launch = _world(options.cp)
    if world > 1 or options.cp is not None:
        check_request(world, lengths, device, mode, scope, kernel, launching=launch)
        for flag, given in (("--budget", budget_s is not None), ("--breakdown", options.breakdown),
                            ("--compile", options.compile)):  # fmt: skip
            if given:
                raise ConfigError(f"{flag} does not apply to --cp: every rank must run the same cells the same way")
    if options.cp_timeout is not None:
        if world == 1 and options.cp is None:
            raise ConfigError("--cp-timeout applies with --cp only")
        if not 1 <= options.cp_timeout <= 86_400:  # NaN too: it fails both comparisons
            raise ConfigError(f"--cp-timeout {options.cp_timeout} must be 1 to 86400 seconds")
    if options.trace_dir is not None and not options.breakdown:
        raise ConfigError("--trace-dir applies with --breakdown only (it names where the profiler's traces go)")
    env = environment(device)
    if options.out is not None and not options.out.strip():
        raise ConfigError("--out is empty; give a .csv file path")
    if options.out is not None and options.out.endswith(("/", os.sep)):
        raise ConfigError(f"--out {options.out} names a directory; give a .csv file path")
    path = Path(options.out) if options.out else _fresh(
        Path("results") / f"{host_label(env)}-{datetime.now():%Y%m%d-%H%M%S}.csv"
    )
    previous = prepare_output(path, options.resume, explicit=bool(options.out))
    cells = plan(
        specs, preset, lengths, tokens=tokens, batch=options.batch, dtype=dtype,
        mode=mode, causal=options.causal, kernel=kernel, device=str(device),
        warmup=defaults["warmup"] if options.warmup is None else options.warmup,
        repeats=options.repeats or defaults["repeats"], new_tokens=options.new_tokens or DEFAULT_NEW_TOKENS,
        cuda_graphs=cuda_graphs, scope=scope, world_size=world, compile=compile_mode, breakdown=options.breakdown,
    )  # fmt: skip
    for cell in cells:
        if cell.batch * cell.seq_len > MAX_TOKENS:
            raise ConfigError(f"{cell.label}: {cell.batch} x {cell.seq_len} tokens in one step is more than "
                              f"{MAX_TOKENS:,} ({MAX_TOKENS_WHY}); use a smaller --batch or --tokens")  # fmt: skip
    if options.breakdown:
        traces = Path(options.trace_dir) if options.trace_dir else path.with_name(path.stem + "-traces")
        writable_folder(traces, "--trace-dir")
        cells = with_traces(cells, traces)
    baseline = _baseline(options.baseline, [s.name for s in specs], [str(r["variant"]) for r in previous or ()])
    return RunPlan(
        device=device, env=env, preset=preset, specs=specs, lengths=lengths, dtype=dtype, cells=cells, path=path,
        done=frozenset(key_of(row) for row in previous or () if row["status"] == "ok"),
        resumed_missing=options.resume and previous is None and not path.exists(),
        resumed_empty=options.resume and previous is None and path.exists(),
        quick_default=options.seq is None and device.type == "cpu", baseline=baseline, world=world, launch=launch,
        cp_timeout=DEFAULT_CP_TIMEOUT_S if options.cp_timeout is None else options.cp_timeout, budget_s=budget_s,
        dry_run=options.dry_run, yes=options.yes,
    )  # fmt: skip


def _compile_mode(options: RunOptions, mode: str, scope: str) -> str:
    """torch.compile's mode for the cell key ("" without --compile), checked against what it applies to."""
    if not options.compile:
        if options.compile_mode != "default":
            raise ConfigError("--compile-mode applies with --compile only")
        return ""
    if options.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"unknown --compile-mode {options.compile_mode!r}; choose one of: {', '.join(COMPILE_MODES)}")
    if mode == "decode" or scope != "model":
        raise ConfigError(
            f"--compile compiles the whole model of a fwd or train step; not --mode {mode} --scope {scope}"
        )
    return options.compile_mode


def with_traces(cells: list[Cell], folder: Path) -> list[Cell]:
    """--breakdown: each variant's longest cell writes its Chrome trace under ``folder``."""
    longest: dict[str, Cell] = {}
    for cell in cells:
        if cell.spec.name not in longest or cell.seq_len >= longest[cell.spec.name].seq_len:
            longest[cell.spec.name] = cell

    def trace(cell: Cell) -> str:
        name = "".join(c if c.isalnum() else "-" for c in cell.spec.name)
        return str(folder / f"{name}-{cell.seq_len}.json")

    return [dataclasses.replace(cell, trace=trace(cell)) if longest[cell.spec.name] is cell else cell for cell in cells]


def _world(cp: int | None) -> tuple[int, bool]:
    """(ranks, whether sqabench must start them): --cp outside a torchrun job launches, inside it joins."""
    running = job_size()
    if running > 1:
        if cp is not None and cp != running:
            raise ConfigError(f"--cp {cp} but this torchrun job has WORLD_SIZE={running}; drop --cp or make them equal")
        return running, False
    if cp is None:
        return 1, False
    return cp, cp > 1


def _fresh(path: Path) -> Path:
    """``path``, or ``path`` with -2, -3... when a run of the same second took it."""
    candidate, count = path, 1
    while candidate.exists():
        count += 1
        candidate = path.with_name(f"{path.stem}-{count}{path.suffix}")
    return candidate


def _baseline(baseline: str | None, requested: list[str], previous: list[str]) -> str | None:
    """The variant of the final table's speed-ups: explicit ones must be in the data; default mha if there."""
    return pick_baseline(baseline, list(dict.fromkeys(requested + previous)), "is not among this run's variants")


def prepare_output(path: Path, resume: bool, explicit: bool) -> list[dict] | None:
    """Check that ``path`` can be written (before any work); return the rows it holds, None if it is new."""
    if resume and not explicit:
        raise ConfigError("--resume needs --out FILE: the results file to continue")
    check_output(path, explicit)
    if path.exists() and path.stat().st_size > 0:
        if not resume:
            raise ConfigError(f"--out {path} exists; pass --resume to continue it, or choose another file")
        return read_rows(path)
    return None
