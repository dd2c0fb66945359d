"""The options of ``sqabench quality``, written once, and every default they fall back on. No torch here.

A field left None takes its task's or device's default from the tables below; the help texts are written
from the same tables, so that what ``--help`` says is what the code uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from sqabench.options import PRESET_HELP, option

QUALITY_VARIANTS = "mha,gqa,mqa,sqa,ssqa,xsqa,xsmqa,swa"
TASKS = ("mqar", "text")
EQUAL = ("tokens", "flops")
DTYPES = ("fp32", "bf16")
TOKENIZERS = ("bytes", "bpe")
# By task: sequence length, vocabulary (MQAR's; text: the tokenizer's), sequences a step, steps between evaluations.
TASK_DEFAULTS = {"mqar": {"seq": 32, "vocab": 64, "batch": 64, "eval_every": 50},
                 "text": {"seq": 128, "vocab": None, "batch": 8, "eval_every": 100}}  # fmt: skip
EVAL_TOKENS = {"cpu": 8_192, "cuda": 262_144}  # text: held-out tokens an evaluation scores, by device
GPU_BUDGET_S = 600.0  # on a GPU with no --steps, --tokens or --budget: the steps that fit 10 minutes
TINY = {"d_model": 64, "layers": 2, "heads": 8}  # the model when no --preset is given
DEFAULT_STEPS = 400  # on a CPU with no --steps, --tokens or --budget
DEFAULT_SEEDS = 5  # fewer: the tables say their verdicts are exploratory (a paired t on 2-3 df is weak)
DEFAULT_PAIRS = 4
DEFAULT_HELD_OUT = 0.05
DEFAULT_TOKENIZER = "bytes"
DEFAULT_BPE_VOCAB = 4096
MQAR_EVAL_EXAMPLES = 256


def _by_task(name: str) -> str:
    return f"{TASK_DEFAULTS['mqar'][name]} for MQAR, {TASK_DEFAULTS['text'][name]} for text"


@dataclass(frozen=True)
class QualityOptions:
    """What the user asked for; None means the task's or device's default (the tables above)."""

    task: Annotated[str, option(
        "TASK", "mqar (multi-query associative recall; needs no data) or text (a corpus: --data).", "--task",
        choices=TASKS, noun="task",
    )] = "mqar"  # fmt: skip
    data: Annotated[str | None, option(
        "PATH", "Text corpus: a UTF-8 .txt (documents split at blank lines), a folder of .txt, .jsonl or .parquet "
        "with a 'text' column (.txt.gz and .jsonl.gz read as their contents), or a .tokens file of sqabench "
        "tokenize. Implies --task text.", "--data",
    )] = None  # fmt: skip
    tokenizer: Annotated[str | None, option(
        "NAME", f"{DEFAULT_TOKENIZER} (the default; no dependency) or bpe (trained on the training split; pip "
        "install 'sqabench[bpe]').", choices=TOKENIZERS, noun="tokenizer",
    )] = None  # fmt: skip
    held_out: Annotated[float | None, option(
        "FRACTION", f"Share of the documents held out, whole documents (default {DEFAULT_HELD_OUT}).",
        low=0, high=1, open_low=True, open_high=True, what="a fraction",
    )] = None  # fmt: skip
    pad_like_paper: Annotated[bool, option(
        None, "Lay each document out as the paper did (a row of --seq tokens: BOS, the text cut to fit, EOS, then "
        "pads, and the pads scored): the padded numbers beside the real-token ones.", "--pad-like-paper",
    )] = False  # fmt: skip
    variants: Annotated[str, option("VARIANTS", "Registry names or Hq/Hkv[@W], comma-separated.")] = QUALITY_VARIANTS
    preset: Annotated[str | None, option(
        "NAME", f"The model: {PRESET_HELP.rstrip('.')} (its vocabulary is the task's). Default: --d-model, "
        "--layers, --heads.", "--preset",
    )] = None  # fmt: skip
    seeds: Annotated[int, option(
        "N", "Seeds 0..N-1: each a model initialisation and a data order, the same for every variant.", low=1,
    )] = DEFAULT_SEEDS  # fmt: skip
    steps: Annotated[int | None, option(
        "N", f"Training steps of the baseline (every variant with --equal tokens). Default: {DEFAULT_STEPS} on a "
        f"CPU; on a GPU the steps that fit {GPU_BUDGET_S / 60:.0f} minutes.", low=1,
    )] = None  # fmt: skip
    tokens: Annotated[str | None, option(
        "N", "Training tokens of the baseline instead of --steps (sizes: 500k, 2M, 1.5G).", "--tokens",
    )] = None  # fmt: skip
    equal: Annotated[str, option(
        "WHAT", "tokens: every variant the same steps; flops: the baseline's training FLOPs, so cheaper variants "
        "take more steps.", "--equal", choices=EQUAL, noun="--equal",
    )] = "tokens"  # fmt: skip
    budget: Annotated[str | None, option(
        "TIME", "Size the steps to finish in this time (e.g. 10m, 90s), from a probe of each variant's step.",
        "--budget",
    )] = None  # fmt: skip
    dry_run: Annotated[bool, option(
        None, "Probe each variant, print the plan, its estimate and the difference its seeds can detect; train "
        "nothing.", "--dry-run",
    )] = False  # fmt: skip
    pilot: Annotated[str | None, option(
        "FILE", "A finished quality CSV of this setting: --dry-run and --budget state the minimum detectable effect "
        "in the metric's units from its noise (without it: in units of that noise).", "--pilot",
    )] = None  # fmt: skip
    confirm: Annotated[str | None, option(
        "FIRST", "A finished quality CSV: train --seeds fresh seeds (after its last one) with its setting, and test "
        "only its findings, one-sided in the direction it found (Holm over them): confirmed or not.", "--confirm",
    )] = None  # fmt: skip
    margin: Annotated[str | None, option(
        "MARGIN", "How close counts as close, for the paper's closeness claims (equivalence and non-inferiority): "
        "text, a share of the claim's reference's mean val loss (gqa's, mqa's; default 1.7%, the paper's own MHA-GQA gap in Table 1); MQAR, an "
        "accuracy (default 0.05).", "--margin",
    )] = None  # fmt: skip
    gpus: Annotated[int | None, option(
        "N", "With --dry-run or --budget: also the wall time on N GPUs (the runs in N shares, as --shard splits "
        "them) and the GPU-hours, from the probe.", "--gpus", low=1,
    )] = None  # fmt: skip
    shard: Annotated[str | None, option(
        "K/N", "Train only the K-th of N shares of the runs (balanced by the cost model, the same on every machine): "
        "for a Slurm array, a CI matrix; sqabench report reads the shards' files together as one run.", "--shard",
    )] = None  # fmt: skip
    also_against: Annotated[str | None, option(
        "VARIANTS", "Also pair every variant against these (e.g. gqa), in the run's one family of verdicts (more "
        "verdicts: each is judged more strictly).", "--also-against",
    )] = None  # fmt: skip
    seq: Annotated[str | None, option(
        "LENGTH", f"Sequence length (a size, as run's --seq: 512, 1k). Default: {_by_task('seq')}.",
    )] = None  # fmt: skip
    pairs: Annotated[
        int | None,
        option(
            "N",
            f"MQAR key-value pairs per example (default {DEFAULT_PAIRS}).",
            low=1,
        ),
    ] = None
    vocab: Annotated[int | None, option(
        "N", f"Vocabulary: MQAR's (default {TASK_DEFAULTS['mqar']['vocab']}; keys from its lower half, values "
        f"from its upper), or the BPE's (default {DEFAULT_BPE_VOCAB}). bytes has 259.",
    )] = None  # fmt: skip
    batch: Annotated[
        int | None,
        option(
            "N",
            f"Sequences per step. Default: {_by_task('batch')}.",
            low=1,
        ),
    ] = None
    lr: Annotated[
        float,
        option(
            "LR",
            "AdamW's peak learning rate (linear warm-up, then cosine to 0).",
            low=0,
            high=1,
            open_low=True,
            open_high=True,
        ),
    ] = 3e-3
    warmup: Annotated[
        float,
        option(
            "FRACTION",
            "Share of the steps warmed up.",
            low=0,
            high=1,
            open_high=True,
            what="a fraction",
        ),
    ] = 0.1
    weight_decay: Annotated[
        float,
        option(
            "DECAY",
            "AdamW's weight decay (on matrices only).",
            low=0,
            high=1,
            open_high=True,
        ),
    ] = 0.1
    eval_every: Annotated[int | None, option(
        "N", f"Evaluate the held-out set every N steps and at the end. Default: {_by_task('eval_every')}.", low=1,
    )] = None  # fmt: skip
    eval_tokens: Annotated[str | None, option(
        "BYTES", "Text: the held-out text each evaluation scores, the same every time: this many bytes, the same "
        "share of every document (the whole set when it holds less; tokens with --tokenizer bytes, fewer with a "
        f"BPE: the same text). Default: {EVAL_TOKENS['cpu']} on a CPU, {EVAL_TOKENS['cuda']} on a GPU.",
    )] = None  # fmt: skip
    d_model: Annotated[
        int | None,
        option(
            "N",
            f"Model width (default {TINY['d_model']}; not with --preset).",
            low=2,
        ),
    ] = None
    layers: Annotated[
        int | None,
        option(
            "N",
            f"Layers (default {TINY['layers']}; not with --preset).",
            low=1,
        ),
    ] = None
    heads: Annotated[int | None, option(
        "H", f"H, the baseline's heads: the variants take fractions of it (default {TINY['heads']}; not with "
        "--preset).", low=1,
    )] = None  # fmt: skip
    window: Annotated[
        int | None,
        option(
            "TOKENS",
            "Window of the windowed variants. Default: --seq / 4.",
            low=1,
        ),
    ] = None
    device: Annotated[str, option("NAME", "auto, cuda or cpu.", "--device")] = "auto"
    dtype: Annotated[str | None, option(
        "DTYPE", "fp32, or bf16 (autocast; the weights and AdamW stay fp32). Default: bf16 on a GPU, fp32 on a CPU.",
        "--dtype", choices=DTYPES, noun="--dtype", why="fp16 training would need loss scaling, which sqabench "
        "quality does not do",
    )] = None  # fmt: skip
    out: Annotated[str | None, option(
        "FILE", "CSV to write (the curves beside it). Default: results/quality-<device>-<time>.csv.", "--out",
    )] = None  # fmt: skip
    resume: Annotated[bool, option(
        None, "Continue --out: finished runs are kept, an interrupted one goes on from its checkpoint.", "--resume",
    )] = False  # fmt: skip
    checkpoint_every: Annotated[float, option(
        "MINUTES", "Save a running run's state this often (kept until its row is written).", low=0, open_low=True,
        unit="minutes",
    )] = 5.0  # fmt: skip
    baseline: Annotated[str | None, option(
        "VARIANT", "Variant the differences are paired against. Default: mha.", "--baseline",
    )] = None  # fmt: skip
