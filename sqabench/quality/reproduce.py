"""``sqabench reproduce quality``: the paper's quality protocols (Table 1 dense, Table 2 MoE) run through
``sqabench quality``, scaled to the device and budget, and ours printed beside theirs with what differs.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from sqabench.errors import ConfigError
from sqabench.quality.options import QualityOptions
from sqabench.shipped import shipped_rows
from sqabench.units import parse_length, plural

# The paper's quality protocols (Tables 1 and 2), and what of them a device's budget affords.
QUALITY = {
    "dense": {"preset": "paper", "variants": "mha,gqa,mqa,sqa,ssqa,xsqa,xsmqa", "baseline": "mha", "vocab": 10_000,
              "seq": 1024, "batch": 128, "lr": 5e-4, "warmup": 0.25, "weight_decay": 0.01,
              "theirs": "English Wikipedia (a 50% subset), ~22k steps of 128 x 1024 tokens (~2.9G tokens), one L40S"},
    "moe": {"preset": "paper-moe", "variants": "gqa,mqa,sqa,ssqa,xsqa", "baseline": "gqa", "vocab": 5_000,
            "seq": 256, "batch": 256, "lr": 2e-3, "warmup": 0.0, "weight_decay": 0.01,
            "theirs": "TinyStories, 5 epochs (~40k steps of 256 x 256 tokens, ~2.6G tokens), one L4"},
}  # fmt: skip
MEANINGFUL_STEPS = 200  # fewer: the table beside the paper's is said to mean nothing
QUALITY_CPU = {"seq": 256, "batch": 8, "budget": "10m"}  # what a CPU can afford of either protocol
QUALITY_GPU = {"budget": "10m"}


def quality_options(moe: bool, on_gpu: bool, **given):
    """The ``sqabench quality`` run behind ``reproduce quality`` (``moe``: Table 2's; else Table 1's): the
    protocol, scaled on a CPU, with ``given`` (data, seeds, steps, budget, out, resume, dry_run, device,
    tokenizer, pad_like_paper) on top."""
    protocol = QUALITY["moe" if moe else "dense"]
    scaled = {**{k: v for k, v in protocol.items() if k != "theirs"}, **(QUALITY_GPU if on_gpu else QUALITY_CPU)}
    given = {key: value for key, value in given.items() if value is not None}
    if "steps" in given:
        scaled.pop("budget")
    if str(given.get("tokenizer", "bpe")).lower() == "bytes":  # its own 259 tokens, not the paper's vocabulary
        scaled.pop("vocab")
    return QualityOptions(**{"task": "text", "tokenizer": "bpe", "eval_every": 100, **scaled, **given})


def quality_differences(rows: list[dict], moe: bool, seeds: int) -> list[str]:
    """What differs from the paper's quality set-up, in words."""
    protocol = QUALITY["moe" if moe else "dense"]
    first = next((r for r in rows if r["status"] == "ok"), rows[0] if rows else {})
    device = first.get("gpu_name") or f"a CPU ({first.get('cpu_model', '')})"
    steps = sorted({int(r["steps"]) for r in rows if r.get("steps")})
    tokens = sorted({int(r["tokens"]) for r in rows if r.get("tokens")})
    said = [f"device: ours {device}, {first.get('dtype', '?')}; theirs bf16 on "
            + ("one L4" if moe else "one L40S"),
            f"seeds: ours {seeds}, each variant paired by seed; theirs one run per variant, no error bars",
            f"budget: ours {', '.join(map(str, steps))} steps of {first.get('batch', '?')} x "
            f"{first.get('seq_len', '?')} tokens ({', '.join(f'{t:,}' for t in tokens)} tokens); "
            f"theirs {protocol['theirs']}",
            f"corpus: ours {first.get('data', '?')}, tokenizer {first.get('tokenizer', '?')} of "
            f"{first.get('vocab', '?')} tokens trained on its training split",
            "padding: " + ("ours padded like the paper's and the pads scored (--pad-like-paper), the real-token "
                           "numbers beside them" if str(first.get("pad_like_paper")) == "True" else
                           "ours packed with end-of-document tokens, real tokens only; theirs padded to the context "
                           "and the pads scored (lower loss, higher accuracy than real tokens give)")]  # fmt: skip
    return said


def reproduce_quality(console: Console, err_console: Console, moe: bool, device: str, seq: str | None,
                      plots: Path | None, **given) -> None:  # fmt: skip
    """``sqabench reproduce quality``: train the protocol (``given``: data, seeds, steps, budget, out, resume,
    dry_run, tokenizer, pad_like_paper), print ours beside the paper's table and what differs, draw the
    figures. ``ConfigError`` on bad input; ``quality.flow.Interrupted`` on Ctrl-C."""
    from sqabench.device import resolve_device
    from sqabench.drawing import save_figures
    from sqabench.quality.figures import quality_figures
    from sqabench.quality.flow import run_quality
    from sqabench.quality.rows import read_run
    from sqabench.quality.summary import summarise
    from sqabench.quality.tables import paper_quality_table

    if given.get("data") is None:
        raise ConfigError("reproduce quality needs --data PATH: a text corpus (the paper used English Wikipedia; "
                          "TinyStories for --moe), as .txt, a folder of .txt, .jsonl or .parquet")  # fmt: skip
    on_gpu = resolve_device(device).type == "cuda"
    length = None if seq is None else parse_length(seq, "--seq")
    trained = run_quality(quality_options(moe, on_gpu, device=device, seq=length, **given), console, err_console)
    if trained is None:
        return
    plan, rows = trained.plan, trained.rows
    setting = "moe" if moe else "dense"
    if plan.cfg.steps < MEANINGFUL_STEPS:
        tokens = plan.cfg.steps * plan.cfg.batch * plan.cfg.task.seq_len
        err_console.print(Text(f"warning: {plural(plan.cfg.steps, 'step')} ({tokens:,} tokens) is too short to mean "
                               f"anything beside the paper's {QUALITY[setting]['theirs']}: these are the losses of a "
                               "barely trained model", style="yellow"), highlight=False)  # fmt: skip
    console.print(Text(f"ours beside the paper's Table {2 if moe else 1} ({setting})", style="bold"), highlight=False)
    console.print(paper_quality_table(summarise(rows, plan.baseline), shipped_rows("paper_quality.csv"), setting))
    for difference in quality_differences(rows, moe, len(plan.seeds)):
        err_console.print(Text(f"differs from the paper: {difference}"), highlight=False)
    folder = plots or plan.path.with_name(plan.path.stem + "-plots")
    rows, curves, _ = read_run(plan.path)
    figures, _ = quality_figures(rows, curves, plan.baseline)
    for path in save_figures(figures, folder):
        if path.suffix == ".png":
            console.print(Text(str(path)), highlight=False)
