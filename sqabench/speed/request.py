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

from sqabench.device import resolve_device, validate_dtype
from sqabench.dtypes import DTYPES, get_dtype
from sqabench.environment import Environment, environment, host_label
from sqabench.errors import ConfigError
from sqabench.files import check_output, writable_folder
from sqabench.flops import Rates
from sqabench.kernels import resolve_kernel
from sqabench.options import check_options
from sqabench.presets import Preset, get_preset
from sqabench.speed.cells import Cell, Settings, plan
from sqabench.speed.cp import check_request, job_size
from sqabench.speed.options import MAX_CALLS, FloorOptions, RunOptions
from sqabench.speed.results import key_of, read_rows
from sqabench.units import MAX_TOKENS, MAX_TOKENS_WHY, parse_duration, parse_fraction, parse_lengths
from sqabench.variants import DEFAULT_WINDOW, VariantSpec, base_variant, check_window, parse_variants, pick_baseline

DEFAULT_NEW_TOKENS = 32
GPU_DEFAULTS = {"seq": "1k,4k,32k,131k,200k", "tokens": 131072, "warmup": 2, "repeats": "auto", "dtype": "bf16"}
CPU_DEFAULTS = {"seq": "256,1k", "tokens": 1024, "warmup": 1, "repeats": "auto", "dtype": "fp32"}
# Decode on a GPU: a step must read enough cache for its bytes, not its ~150 kernel launches, to set its
# time. 2M context tokens per step (batch = tokens // context) is 2-16 GB of bf16 cache for the paper
# preset (gqa-mha), 0.6-5 ms at 3.35 TB/s, above what a CUDA-graphed step of ~150 small kernels costs.
GPU_DECODE_TOKENS = 2**21
DEFAULT_CP_TIMEOUT_S = 600.0


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
    argv: tuple[str, ...] = ()  # this run as the arguments of `sqabench` (what a --cp job's ranks are started with)
    options: RunOptions | None = None  # what the user typed (--runs starts each run with them)

    @property
    def pending(self) -> list[Cell]:
        return [cell for cell in self.cells if key_of(cell.identity()) not in self.done]


def resolve_run(options: RunOptions) -> RunPlan:
    """Check every option and build the plan; raises ``ConfigError`` on the first bad one. The options' own
    rules (bounds, choices) are checked where they are declared (``check_options``); here only what ties one
    option to another, to the device or to the registry."""
    if options.cp_timeout is not None and options.cp is None and job_size() == 1:
        raise ConfigError("--cp-timeout applies with --cp only")
    check_options(options)
    device = resolve_device(options.device)
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    dtype = defaults["dtype"] if options.dtype.lower() == "auto" else get_dtype(options.dtype).name
    mode, scope, kernel = options.mode.lower(), options.scope.lower(), options.kernel.lower()
    if mode != "decode":
        for flag, given in (("--new-tokens", options.new_tokens is not None), ("--cuda-graphs", options.cuda_graphs)):
            if given:
                raise ConfigError(f"{flag} applies to --mode decode only (this run is --mode {mode})")
    if options.cuda_graphs and device.type != "cuda":
        raise ConfigError("--cuda-graphs needs a CUDA GPU; this run is on the CPU")
    if options.timer.lower() == "graph" and (device.type != "cuda" or mode != "fwd"):
        raise ConfigError(f"--timer graph captures a forward in a CUDA graph: it needs a CUDA GPU and --mode fwd (this "
                          f"run: {device.type}, --mode {mode}); decode has --cuda-graphs")  # fmt: skip
    gpu_decode = mode == "decode" and device.type == "cuda"
    tokens = options.tokens or (GPU_DECODE_TOKENS if gpu_decode else defaults["tokens"])
    budget_s = parse_duration(options.budget, "--budget") if options.budget is not None else None
    if mode == "decode" and scope != "model":
        raise ConfigError(f"--mode decode times the whole model with its cache; --scope {scope} does not apply")
    preset = get_preset(options.preset, options.layers)
    specs = _specs(options.variants, options.window, preset)
    lengths = parse_lengths(defaults["seq"] if options.seq is None else options.seq)
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
    if options.runs > 1:
        for flag, given in (("--resume", options.resume), ("--cp", world > 1 or options.cp is not None),
                            ("--budget", budget_s is not None)):  # fmt: skip
            if given:
                raise ConfigError(f"--runs {options.runs} writes a new file of whole runs; {flag} does not apply")
    if options.trace_dir is not None and not options.breakdown:
        raise ConfigError("--trace-dir applies with --breakdown only (it names where the profiler's traces go)")
    env = environment(device)
    if options.out is not None and not options.out.strip():
        raise ConfigError("--out is empty; give a .csv file path")
    if options.out is not None and options.out.endswith(("/", os.sep)):
        raise ConfigError(f"--out {options.out} names a directory; give a .csv file path")
    path = (
        Path(options.out)
        if options.out
        else _fresh(Path("results") / f"{host_label(env)}-{datetime.now():%Y%m%d-%H%M%S}.csv")
    )
    previous = prepare_output(path, options.resume, explicit=bool(options.out))
    settings = settings_of(
        options, dtype=dtype, mode=mode, scope=scope, kernel=kernel, device=str(device), world_size=world,
        compile=compile_mode, cuda_graphs=gpu_decode if options.cuda_graphs is None else options.cuda_graphs,
        warmup=defaults["warmup"] if options.warmup is None else options.warmup,
        repeats=parse_repeats(options.repeats or defaults["repeats"]), new_tokens=options.new_tokens or DEFAULT_NEW_TOKENS,
        target_noise=parse_target(options.target_noise, options.repeats or defaults["repeats"]),
        cache=(options.cache or default_cache(device, mode)).lower(), timer=options.timer.lower(),
    )  # fmt: skip
    cells = plan(specs, preset, lengths, settings, tokens=tokens, batch=options.batch)
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
        dry_run=options.dry_run, yes=options.yes, argv=("run", *dataclasses.replace(options, out=str(path)).argv()), options=options,
    )  # fmt: skip


def parse_repeats(text: str) -> int:
    """``--repeats``: ``auto`` (0: ``settle``'s rule) or a whole number of timed calls, 1 to ``MAX_CALLS``."""
    shown = str(text).strip().lower()
    if shown == "auto":
        return 0
    if not shown.isdigit() or not 1 <= int(shown) <= MAX_CALLS:
        raise ConfigError(f"--repeats {text}: give auto or a whole number of timed calls from 1 to {MAX_CALLS:,}")
    return int(shown)


def parse_target(text: str | None, repeats: str) -> float:
    """``--target-noise``: a share above 0 and below 1 (2% or 0.02), for ``--repeats auto`` only; 0: the
    device's default."""
    if text is None:
        return 0.0
    if str(repeats).strip().lower() != "auto":
        raise ConfigError(f"--target-noise applies with --repeats auto; --repeats {repeats} fixes the repeats")
    value = parse_fraction(text, "--target-noise")
    if not 0 < value < 1:
        raise ConfigError(f"--target-noise {text}: must lie above 0 and below 1, e.g. 2% or 0.02")
    return value


def default_cache(device: torch.device, mode: str) -> str:
    """``--cache``'s default: cold on a GPU, so that a short cell's working set (1k-8k tokens fit an H100's 50 MB
    L2) is never timed from the last repeat's cache; warm for decode (each step streams a KV cache of gigabytes,
    far beyond any L2, and evicting before every token would time what no generation sees) and on a CPU (its
    cells are the quick sweep's; the eviction would double their wall time)."""
    return "cold" if device.type == "cuda" and mode != "decode" else "warm"


def settings_of(options: object, **resolved) -> Settings:
    """A cell's settings: each field from ``resolved`` (what a default or a check turned it into), else from
    the option of the same name as given. A setting declared in ``Settings`` with an option of its name needs
    no line here."""
    given = {f.name: getattr(options, f.name) for f in dataclasses.fields(Settings) if hasattr(options, f.name)}
    return Settings(**{**given, **resolved})


def _specs(variants: str, window: int | None, preset: Preset) -> list[VariantSpec]:
    """The variants asked for, at ``preset``'s heads (a config's own heads as its mha); a ``--window`` given to
    no windowed variant is refused (``check_window``)."""
    base = base_variant(preset.n_heads, preset.n_kv_heads, preset.sliding_window)
    specs = parse_variants(variants, preset.n_heads, DEFAULT_WINDOW if window is None else window, base)
    check_window(window, specs, variants)
    return specs


def _compile_mode(options: RunOptions, mode: str, scope: str) -> str:
    """torch.compile's mode for the cell key ("" without --compile), checked against what it applies to."""
    if not options.compile:
        if options.compile_mode != "default":
            raise ConfigError("--compile-mode applies with --compile only")
        return ""
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

    return [cell.but(trace=trace(cell)) if longest[cell.spec.name] is cell else cell for cell in cells]


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


def resolve_floor(options: FloorOptions) -> tuple[str, Rates, Preset, list[Cell]]:
    """``sqabench floor``'s checks and cells: the published GPU's name and rates, the preset, and one cell per
    (variant, length) on a CUDA device that need not be here. The same rules as ``resolve_run``'s."""
    from sqabench.speed.peaks import published_gpu

    check_options(options)
    dtype = get_dtype(options.dtype).name
    name, rates = published_gpu(options.gpu, dtype)
    preset, lengths = get_preset(options.preset), parse_lengths(options.seq)
    specs = _specs(options.variants, options.window, preset)  # a config's own heads, as in run
    settings = Settings(dtype=dtype, mode=options.mode.lower(), causal=options.causal, device="cuda", warmup=0,
                        repeats=1, new_tokens=options.new_tokens)  # fmt: skip
    return name, rates, preset, plan(specs, preset, lengths, settings, tokens=options.tokens)
