"""The options of ``sqabench run``, written once: each field carries its own Typer option.

The command's signature is built from these fields (``sqabench.cli``), and a ``--cp`` job's ranks
are started with ``RunOptions.argv()``, the parsed options written back as arguments. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, get_type_hints

import typer

PRESET_HELP = "paper (d 256, 8 layers), wide (d 2048), qwen3-0.6b, llama-3.2-1b, or a path to a config.json."
BASELINE_HELP = "Variant the speed-ups are relative to. Default: mha, when present."


def _option(metavar: str | None, help: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, metavar=metavar, help=help)


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for; None means the device's default. Each field is one ``sqabench run``
    option: its Typer metadata lives here, once, and the command's signature is built from it."""

    seq: Annotated[str | None, _option(
        "LENGTHS", "Lengths, e.g. 1k,32k,131k,200k (see README: Sizes). Default: GPU 1k,4k,32k,131k,200k; CPU 256,1k.",
    )] = None  # fmt: skip
    variants: Annotated[str, _option(
        "VARIANTS", "Registry names, 'all', or heads Hq/Hkv[@W], comma-separated.",
    )] = "all"  # fmt: skip
    preset: Annotated[str, _option("NAME|CONFIG", PRESET_HELP, "--preset")] = "paper"
    device: Annotated[str, _option("NAME", "auto, cuda or cpu.", "--device")] = "auto"
    dtype: Annotated[str, _option("DTYPE", "bf16, fp16, fp32, or auto (bf16 on GPU, fp32 on CPU).")] = "auto"
    mode: Annotated[str, _option(
        "MODE", "fwd (inference), train (forward + backward of a loss) or decode (a KV cache, one token at a time).",
    )] = "fwd"  # fmt: skip
    causal: Annotated[bool, _option(
        None, "Causal masks (the paper's decoder) instead of the encoder.", "--causal",
    )] = False  # fmt: skip
    window: Annotated[int | None, _option(
        "TOKENS", "Sliding window of the windowed variants (swa, swa-*): |i-j| <= window. Default: 128.",
    )] = None  # fmt: skip
    kernel: Annotated[str, _option(
        "KERNEL", "auto (sdpa; flex when windowed), eager, sdpa, sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math, "
        "flex, or best (the fastest kernel that passes verification, per cell).",
    )] = "auto"  # fmt: skip
    tokens: Annotated[int | None, _option(
        "TOKENS", "Tokens per step; batch = max(1, tokens // seq_len). Default: GPU 131072, CPU 1024.",
    )] = None  # fmt: skip
    batch: Annotated[int | None, _option("SIZE", "Fixed batch size (overrides --tokens).")] = None
    warmup: Annotated[int | None, _option(
        "CALLS", "Untimed calls after the first (compiling) one. Default: GPU 2, CPU 1.",
    )] = None  # fmt: skip
    repeats: Annotated[int | None, _option(
        "CALLS", "Timed calls per cell; the median is reported. Default: GPU 10, CPU 3.",
    )] = None  # fmt: skip
    out: Annotated[str | None, _option(
        "FILE", "CSV to write. Default: results/<device>-<timestamp>.csv.", "--out",
    )] = None  # fmt: skip
    resume: Annotated[bool, _option(None, "Continue --out: skip its ok cells, append the rest.", "--resume")] = False
    baseline: Annotated[str | None, _option("VARIANT", BASELINE_HELP, "--baseline")] = None
    new_tokens: Annotated[int | None, _option(
        "T", "Decode: tokens generated per pass after the --seq context. Default: 32.",
    )] = None  # fmt: skip
    cuda_graphs: Annotated[bool | None, _option(
        None, "Decode: capture the decode step in a CUDA graph. Default: on for decode on a GPU.",
        "--cuda-graphs/--no-cuda-graphs",
    )] = None  # fmt: skip
    layers: Annotated[int | None, _option("N", "Time N layers of the preset (fewer than its config's).")] = None
    scope: Annotated[str, _option(
        "SCOPE", "model (default), block (one layer), or attention (the op alone on q, k, v).",
    )] = "model"  # fmt: skip
    cp: Annotated[int | None, _option(
        "N", "Split each sequence across N processes (context parallelism); see README.",
    )] = None  # fmt: skip
    cp_timeout: Annotated[float | None, _option(
        "SECONDS", "--cp: how long a collective waits for a rank (1 to 86400). Default: 600.",
    )] = None  # fmt: skip
    breakdown: Annotated[bool, _option(
        None, "After the timed repeats, profile one more step: attention, matmul, other and idle time per cell.",
        "--breakdown",
    )] = False  # fmt: skip
    trace_dir: Annotated[str | None, _option(
        "DIR", "--breakdown: where the Chrome traces of each variant's longest cell go. Default: beside --out.",
    )] = None  # fmt: skip
    compile: Annotated[bool, _option(
        None, "Compile the whole model with torch.compile (compile time reported apart, as the first call).",
        "--compile",
    )] = False  # fmt: skip
    compile_mode: Annotated[str, _option(
        "MODE", "--compile: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs.",
    )] = "default"  # fmt: skip
    budget: Annotated[str | None, _option(
        "DURATION", "Stop starting cells after this long (90s, 10m, 1.5h); when the sweep will not fit, the most "
        "valuable cells run first. The rest is left for --resume.",
    )] = None  # fmt: skip
    dry_run: Annotated[bool, _option(
        None, "Print the cells and the estimate's parts, run nothing.", "--dry-run",
    )] = False  # fmt: skip
    yes: Annotated[bool, _option(None, "Start a sweep estimated past an hour without asking.", "--yes")] = False

    def argv(self) -> list[str]:
        """These options as ``sqabench run`` arguments (what a rank of a --cp job is started with)."""
        args: list[str] = []
        for name, info in option_infos().items():
            value = getattr(self, name)
            on, _, off = flag_of(name, info).partition("/")
            if isinstance(value, bool):
                args += [on] if value else [off] if off else []
            elif value is not None:
                args += [on, str(value)]
        return args


def flag_of(name: str, info: typer.models.OptionInfo) -> str:
    """The option's declared flag (``--cuda-graphs/--no-cuda-graphs``), else the one Typer makes of its name.

    In ``Annotated`` use a declaration given first lands in ``OptionInfo.default``, not ``param_decls``."""
    declared = [d for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("-")]
    return declared[0] if declared else f"--{name.replace('_', '-')}"


def option_infos() -> dict[str, typer.models.OptionInfo]:
    """Each ``RunOptions`` field's Typer option, by field name."""
    hints = get_type_hints(RunOptions, include_extras=True)
    return {f.name: hints[f.name].__metadata__[0] for f in dataclasses.fields(RunOptions)}




QUALITY_VARIANTS = "mha,gqa,mqa,sqa,ssqa,xsqa,xsmqa,swa"


@dataclass(frozen=True)
class QualityOptions:
    """The options of ``sqabench quality``, written once, as ``RunOptions`` are for ``run``."""

    task: Annotated[str, _option("TASK", "mqar (multi-query associative recall; needs no data).", "--task")] = "mqar"
    variants: Annotated[str, _option(
        "VARIANTS", "Registry names or Hq/Hkv[@W], comma-separated.",
    )] = QUALITY_VARIANTS  # fmt: skip
    seeds: Annotated[int, _option(
        "N", "Seeds 0..N-1: each a model initialisation and a data order, the same for every variant.",
    )] = 2  # fmt: skip
    steps: Annotated[int, _option("N", "Training steps of every run.")] = 400
    seq: Annotated[int, _option("N", "MQAR sequence length (even).")] = 32
    pairs: Annotated[int, _option("N", "MQAR key-value pairs per example.")] = 4
    vocab: Annotated[int, _option("N", "MQAR vocabulary: keys from its lower half, values from its upper.")] = 64
    batch: Annotated[int, _option("N", "Examples per step.")] = 64
    lr: Annotated[float, _option("LR", "AdamW's peak learning rate (linear warm-up, then cosine to 0).")] = 3e-3
    warmup: Annotated[float, _option("FRACTION", "Share of the steps warmed up.")] = 0.1
    eval_every: Annotated[int, _option("N", "Evaluate the held-out set every N steps (and at the end).")] = 50
    d_model: Annotated[int, _option("N", "Model width.")] = 64
    layers: Annotated[int, _option("N", "Layers.")] = 2
    heads: Annotated[int, _option("H", "H, the baseline's heads: the variants take fractions of it.")] = 8
    window: Annotated[int | None, _option("TOKENS", "Window of the windowed variants. Default: --seq / 4.")] = None
    device: Annotated[str, _option("NAME", "auto, cuda or cpu.", "--device")] = "auto"
    out: Annotated[str | None, _option(
        "FILE", "CSV to write (the curves beside it). Default: results/quality-<device>-<time>.csv.", "--out",
    )] = None  # fmt: skip
    baseline: Annotated[str | None, _option(
        "VARIANT", "Variant the differences are paired against. Default: mha.", "--baseline",
    )] = None  # fmt: skip
