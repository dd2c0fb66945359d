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
    """The options of ``sqabench quality``, written once, as ``RunOptions`` are for ``run``. None: the task's
    default (``sqabench.quality`` says which)."""

    task: Annotated[str, _option(
        "TASK", "mqar (multi-query associative recall; needs no data) or text (a corpus: --data).", "--task",
    )] = "mqar"  # fmt: skip
    data: Annotated[str | None, _option(
        "PATH", "Text corpus: a UTF-8 .txt (documents split at blank lines), a folder of .txt, or .jsonl/.parquet "
        "with a 'text' column. Implies --task text.", "--data",
    )] = None  # fmt: skip
    tokenizer: Annotated[str | None, _option(
        "NAME", "bytes (the default; no dependency) or bpe (trained on the training split; pip install "
        "'sqabench[bpe]').",
    )] = None  # fmt: skip
    held_out: Annotated[float | None, _option(
        "FRACTION", "Share of the documents held out, whole documents (default 0.05).",
    )] = None  # fmt: skip
    pad_like_paper: Annotated[bool, _option(
        None, "Lay each document out as the paper did (truncated, padded to --seq, the pads scored): the padded "
        "numbers beside the real-token ones.", "--pad-like-paper",
    )] = False  # fmt: skip
    variants: Annotated[str, _option(
        "VARIANTS", "Registry names or Hq/Hkv[@W], comma-separated.",
    )] = QUALITY_VARIANTS  # fmt: skip
    preset: Annotated[str | None, _option(
        "NAME", "The model: a preset or config.json (its vocabulary is the task's). Default: --d-model, --layers, "
        "--heads.", "--preset",
    )] = None  # fmt: skip
    seeds: Annotated[int, _option(
        "N", "Seeds 0..N-1: each a model initialisation and a data order, the same for every variant.",
    )] = 2  # fmt: skip
    steps: Annotated[int | None, _option("N", "Training steps of the baseline (every variant with --equal tokens). "
                                              "Default: 400.")] = None  # fmt: skip
    tokens: Annotated[str | None, _option(
        "N", "Training tokens of the baseline instead of --steps (k/M/G suffixes).", "--tokens",
    )] = None  # fmt: skip
    equal: Annotated[str, _option(
        "WHAT", "tokens: every variant the same steps; flops: the baseline's training FLOPs, so cheaper variants "
        "take more steps.", "--equal",
    )] = "tokens"  # fmt: skip
    budget: Annotated[str | None, _option(
        "TIME", "Size the steps to finish in this time (e.g. 10m, 90s), from a probe of each variant's step.",
        "--budget",
    )] = None  # fmt: skip
    dry_run: Annotated[bool, _option(None, "Probe each variant, print the plan and its estimate; train nothing.",
                                     "--dry-run")] = False  # fmt: skip
    seq: Annotated[int | None, _option("N", "Sequence length. Default: 32 for MQAR (even), 128 for text.")] = None
    pairs: Annotated[int, _option("N", "MQAR key-value pairs per example.")] = 4
    vocab: Annotated[int | None, _option(
        "N", "Vocabulary: MQAR's (default 64; keys from its lower half, values from its upper), or the BPE's "
        "(default 4096). bytes has 258.",
    )] = None  # fmt: skip
    batch: Annotated[int | None, _option("N", "Sequences per step. Default: 64 for MQAR, 16 for text.")] = None
    lr: Annotated[float, _option("LR", "AdamW's peak learning rate (linear warm-up, then cosine to 0).")] = 3e-3
    warmup: Annotated[float, _option("FRACTION", "Share of the steps warmed up.")] = 0.1
    weight_decay: Annotated[float, _option("DECAY", "AdamW's weight decay (on matrices only).")] = 0.1
    eval_every: Annotated[int | None, _option(
        "N", "Evaluate the held-out set every N steps and at the end. Default: 50 for MQAR, 100 for text.",
    )] = None  # fmt: skip
    eval_tokens: Annotated[int | None, _option(
        "N", "Text: each evaluation scores the first N held-out tokens, the same ones every time (default 16384).",
    )] = None  # fmt: skip
    d_model: Annotated[int | None, _option("N", "Model width (default 64; not with --preset).")] = None
    layers: Annotated[int | None, _option("N", "Layers (default 2; not with --preset).")] = None
    heads: Annotated[int | None, _option(
        "H", "H, the baseline's heads: the variants take fractions of it (default 8; not with --preset).",
    )] = None  # fmt: skip
    window: Annotated[int | None, _option("TOKENS", "Window of the windowed variants. Default: --seq / 4.")] = None
    device: Annotated[str, _option("NAME", "auto, cuda or cpu.", "--device")] = "auto"
    dtype: Annotated[str | None, _option(
        "DTYPE", "fp32, or bf16 (autocast; the weights and AdamW stay fp32). Default: bf16 on a GPU, fp32 on a CPU.",
        "--dtype",
    )] = None  # fmt: skip
    out: Annotated[str | None, _option(
        "FILE", "CSV to write (the curves beside it). Default: results/quality-<device>-<time>.csv.", "--out",
    )] = None  # fmt: skip
    resume: Annotated[bool, _option(
        None, "Continue --out: finished runs are kept, an interrupted one goes on from its checkpoint.", "--resume",
    )] = False  # fmt: skip
    checkpoint_every: Annotated[float, _option(
        "MINUTES", "Save a running run's state this often (kept until its row is written).",
    )] = 5.0  # fmt: skip
    baseline: Annotated[str | None, _option(
        "VARIANT", "Variant the differences are paired against. Default: mha.", "--baseline",
    )] = None  # fmt: skip
