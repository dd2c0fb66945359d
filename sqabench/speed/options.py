"""``sqabench run``'s options, written once: each field one option, with its help and the rule its value keeps
(``sqabench.options``). ``resolve_run`` checks them and builds the plan; a ``--cp`` job's ranks are started with
``RunOptions.argv()``, the parsed options written back as arguments. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, get_type_hints

from sqabench.flops import MODES, SCOPES
from sqabench.options import BASELINE_HELP, PRESET_HELP, argv_of, option
from sqabench.units import MAX_TOKENS

CACHE_MODES = ("cold", "warm")
TIMERS = ("events", "graph")
MAX_CALLS = 100_000  # warm-up or timed calls of one cell: past this an estimate is meaningless
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _kernels() -> tuple[str, ...]:
    """--kernel's choices, from the kernels' registry (which loads torch: asked only when checked)."""
    from sqabench.kernels import CHOICES

    return CHOICES


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for; None means the device's default. Each field is one ``sqabench run``
    option: its Typer metadata lives here, once, and the command's signature is built from it."""

    seq: Annotated[str | None, option(
        "LENGTHS", "Lengths, e.g. 1k,32k,131k,200k (see README: Sizes). Default: GPU 1k,4k,32k,131k,200k; CPU 256,1k.",
    )] = None  # fmt: skip
    variants: Annotated[str, option(
        "VARIANTS", "Registry names, 'all', or heads Hq/Hkv[@W], comma-separated.",
    )] = "all"  # fmt: skip
    preset: Annotated[str, option("NAME|CONFIG", PRESET_HELP, "--preset")] = "paper"
    device: Annotated[str, option("NAME", "auto, cuda or cpu.", "--device")] = "auto"
    dtype: Annotated[str, option("DTYPE", "bf16, fp16, fp32, or auto (bf16 on GPU, fp32 on CPU).")] = "auto"
    mode: Annotated[str, option(
        "MODE", "fwd (inference), train (forward + backward of a loss) or decode (a KV cache, one token at a time).",
        choices=MODES, noun="mode",
    )] = "fwd"  # fmt: skip
    causal: Annotated[bool, option(
        None, "Causal masks (the paper's decoder) instead of the encoder.", "--causal",
    )] = False  # fmt: skip
    window: Annotated[int | None, option(
        "TOKENS", "Sliding window of the windowed variants (swa, swa-*): |i-j| <= window. Default: 128.",
        low=1, high=MAX_TOKENS,
    )] = None  # fmt: skip
    kernel: Annotated[str, option(
        "KERNEL", "auto (sdpa; flex when windowed), eager, sdpa, sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math, "
        "flex, or best (the fastest kernel that passes verification, per cell).",
        choices=_kernels, noun="kernel",
    )] = "auto"  # fmt: skip
    tokens: Annotated[int | None, option(
        "TOKENS", "Tokens per step; batch = max(1, tokens // seq_len). Default: GPU 131072, CPU 1024.",
        low=1, high=MAX_TOKENS,
    )] = None  # fmt: skip
    batch: Annotated[int | None, option("SIZE", "Fixed batch size (overrides --tokens).", low=1, high=MAX_TOKENS)] = (
        None
    )
    warmup: Annotated[int | None, option(
        "CALLS", "Untimed calls after the first (compiling) one. Default: GPU 2, CPU 1.", low=0, high=MAX_CALLS,
    )] = None  # fmt: skip
    repeats: Annotated[str | None, option(
        "CALLS", "Timed calls per cell (the median is reported), or auto: time until the median's 95% interval is "
        "within --target-noise of it (at least 10 and 0.05 s on a GPU, 6 on a CPU; at most 200 or 10 s on a GPU, "
        "30 or 2 s on a CPU). Default: auto.",
    )] = None  # fmt: skip
    target_noise: Annotated[str | None, option(
        "SHARE", "--repeats auto: the half-width of the median's 95% interval to reach, relative to it (2% or "
        "0.02). Default: GPU 2%, CPU 5%.", "--target-noise",
    )] = None  # fmt: skip
    out: Annotated[str | None, option(
        "FILE", "CSV to write. Default: results/<device>-<timestamp>.csv.", "--out",
    )] = None  # fmt: skip
    resume: Annotated[bool, option(None, "Continue --out: skip its ok cells, append the rest.", "--resume")] = False
    baseline: Annotated[str | None, option("VARIANT", BASELINE_HELP, "--baseline")] = None
    new_tokens: Annotated[int | None, option(
        "T", "Decode: tokens generated per pass after the --seq context. Default: 32.", low=1, high=MAX_TOKENS,
    )] = None  # fmt: skip
    cuda_graphs: Annotated[bool | None, option(
        None, "Decode: capture the decode step in a CUDA graph. Default: on for decode on a GPU.",
        "--cuda-graphs/--no-cuda-graphs",
    )] = None  # fmt: skip
    layers: Annotated[
        int | None,
        option(
            "N",
            "Time N layers of the preset (fewer than its config's).",
            low=1,
        ),
    ] = None
    scope: Annotated[str, option(
        "SCOPE", "model (default), block (one layer), or attention (the op alone on q, k, v).",
        choices=SCOPES, noun="scope",
    )] = "model"  # fmt: skip
    cp: Annotated[int | None, option(
        "N", "Split each sequence across N processes (context parallelism); see README.", low=1,
    )] = None  # fmt: skip
    cp_timeout: Annotated[float | None, option(
        "SECONDS", "--cp: how long a collective waits for a rank (1 to 86400). Default: 600.",
        low=1, high=86_400, unit="seconds",
    )] = None  # fmt: skip
    breakdown: Annotated[bool, option(
        None, "After the timed repeats, profile one more step: attention, matmul, other and idle time per cell.",
        "--breakdown",
    )] = False  # fmt: skip
    trace_dir: Annotated[str | None, option(
        "DIR", "--breakdown: where the Chrome traces of each variant's longest cell go. Default: beside --out.",
    )] = None  # fmt: skip
    compile: Annotated[bool, option(
        None, "Compile the whole model with torch.compile (compile time reported apart, as the first call).",
        "--compile",
    )] = False  # fmt: skip
    compile_mode: Annotated[str, option(
        "MODE", "--compile: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs.",
        choices=COMPILE_MODES, noun="--compile-mode",
    )] = "default"  # fmt: skip
    budget: Annotated[str | None, option(
        "DURATION", "Stop starting cells after this long (90s, 10m, 1.5h); when the sweep will not fit, the most "
        "valuable cells run first. The rest is left for --resume.",
    )] = None  # fmt: skip
    runs: Annotated[int, option(
        "K", "Run the whole sweep K times, each in a fresh process, into one file of K run ids: a baseline whose "
        "noise between runs sqabench check can measure (docs/ci.md).", "--runs", low=1, high=100,
    )] = 1  # fmt: skip
    dry_run: Annotated[bool, option(
        None, "Print the cells and the estimate's parts, run nothing.", "--dry-run",
    )] = False  # fmt: skip
    cache: Annotated[str | None, option(
        "MODE", "cold: the device's last-level cache evicted before every timed repeat (outside its time); warm: "
        "each repeat finds what the last one left. Default: cold on a GPU, warm on a CPU.", choices=CACHE_MODES,
        noun="cache",
    )] = None  # fmt: skip
    timer: Annotated[str, option(
        "TIMER", "events: each repeat between CUDA events (the wall clock on a CPU); graph: also the forward "
        "captured in a CUDA graph and its replays timed (graph_ms beside time_ms: the launch overhead made "
        "visible). graph: a GPU, --mode fwd.", "--timer", choices=TIMERS, noun="timer",
    )] = "events"  # fmt: skip
    yes: Annotated[bool, option(None, "Start a sweep estimated past an hour without asking.", "--yes")] = False

    def argv(self) -> list[str]:
        """These options as ``sqabench run`` arguments (what a rank of a --cp job is started with)."""
        return argv_of(self)


_RUN = get_type_hints(RunOptions, include_extras=True)
FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class VariantsOptions:
    """``sqabench variants``'s options."""

    preset: _RUN["preset"] = "paper"
    format: Annotated[str, option("FORMAT", "table, csv or json.", "--format", choices=FORMATS, noun="format")] = (
        "table"
    )


@dataclass(frozen=True)
class FloorOptions:
    """``sqabench floor``'s options: run's own where they mean the same (so they keep run's rules), and the
    published GPU whose peaks set the floor."""

    gpu: Annotated[str, option(
        "NAME", "A GPU of the published-peaks table, e.g. 'H100 SXM', 'A100 40GB'.", "--gpu",
    )] = "H100 SXM"  # fmt: skip
    seq: Annotated[str, option("LENGTHS", "Lengths, e.g. 1k,32k,200k.")] = "1k,32k,200k"
    variants: _RUN["variants"] = "all"
    window: _RUN["window"] = None
    preset: _RUN["preset"] = "paper"
    dtype: Annotated[str, option("DTYPE", "bf16, fp16 or fp32.")] = "bf16"
    mode: _RUN["mode"] = "fwd"
    causal: _RUN["causal"] = False
    tokens: Annotated[int, option(
        "TOKENS", "Tokens per step; batch = max(1, tokens // seq_len).", low=1, high=MAX_TOKENS,
    )] = 131072  # fmt: skip
    new_tokens: Annotated[int, option(
        "T", "Decode: tokens generated per pass after the --seq context.", low=1, high=MAX_TOKENS,
    )] = 32  # fmt: skip
