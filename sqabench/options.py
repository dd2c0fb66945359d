"""Options written once, as dataclasses whose fields carry their own Typer option (``option``): those of
``sqabench run`` here, ``sqabench quality``'s in ``sqabench.quality.options``.

A command's signature is built from the fields (``sqabench.cli.command_of``), and a ``--cp`` job's ranks
are started with ``RunOptions.argv()``, the parsed options written back as arguments. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, get_type_hints

import typer

PRESET_HELP = "paper (d 256, 8 layers), wide (d 2048), qwen3-0.6b, llama-3.2-1b, or a path to a config.json."
BASELINE_HELP = "Variant the speed-ups are relative to. Default: mha, when present."


def option(metavar: str | None, help: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, metavar=metavar, help=help)


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
    )] = "fwd"  # fmt: skip
    causal: Annotated[bool, option(
        None, "Causal masks (the paper's decoder) instead of the encoder.", "--causal",
    )] = False  # fmt: skip
    window: Annotated[int | None, option(
        "TOKENS", "Sliding window of the windowed variants (swa, swa-*): |i-j| <= window. Default: 128.",
    )] = None  # fmt: skip
    kernel: Annotated[str, option(
        "KERNEL", "auto (sdpa; flex when windowed), eager, sdpa, sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math, "
        "flex, or best (the fastest kernel that passes verification, per cell).",
    )] = "auto"  # fmt: skip
    tokens: Annotated[int | None, option(
        "TOKENS", "Tokens per step; batch = max(1, tokens // seq_len). Default: GPU 131072, CPU 1024.",
    )] = None  # fmt: skip
    batch: Annotated[int | None, option("SIZE", "Fixed batch size (overrides --tokens).")] = None
    warmup: Annotated[int | None, option(
        "CALLS", "Untimed calls after the first (compiling) one. Default: GPU 2, CPU 1.",
    )] = None  # fmt: skip
    repeats: Annotated[int | None, option(
        "CALLS", "Timed calls per cell; the median is reported. Default: GPU 10, CPU 3.",
    )] = None  # fmt: skip
    out: Annotated[str | None, option(
        "FILE", "CSV to write. Default: results/<device>-<timestamp>.csv.", "--out",
    )] = None  # fmt: skip
    resume: Annotated[bool, option(None, "Continue --out: skip its ok cells, append the rest.", "--resume")] = False
    baseline: Annotated[str | None, option("VARIANT", BASELINE_HELP, "--baseline")] = None
    new_tokens: Annotated[int | None, option(
        "T", "Decode: tokens generated per pass after the --seq context. Default: 32.",
    )] = None  # fmt: skip
    cuda_graphs: Annotated[bool | None, option(
        None, "Decode: capture the decode step in a CUDA graph. Default: on for decode on a GPU.",
        "--cuda-graphs/--no-cuda-graphs",
    )] = None  # fmt: skip
    layers: Annotated[int | None, option("N", "Time N layers of the preset (fewer than its config's).")] = None
    scope: Annotated[str, option(
        "SCOPE", "model (default), block (one layer), or attention (the op alone on q, k, v).",
    )] = "model"  # fmt: skip
    cp: Annotated[int | None, option(
        "N", "Split each sequence across N processes (context parallelism); see README.",
    )] = None  # fmt: skip
    cp_timeout: Annotated[float | None, option(
        "SECONDS", "--cp: how long a collective waits for a rank (1 to 86400). Default: 600.",
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
    )] = "default"  # fmt: skip
    budget: Annotated[str | None, option(
        "DURATION", "Stop starting cells after this long (90s, 10m, 1.5h); when the sweep will not fit, the most "
        "valuable cells run first. The rest is left for --resume.",
    )] = None  # fmt: skip
    dry_run: Annotated[bool, option(
        None, "Print the cells and the estimate's parts, run nothing.", "--dry-run",
    )] = False  # fmt: skip
    yes: Annotated[bool, option(None, "Start a sweep estimated past an hour without asking.", "--yes")] = False

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
