"""``sqabench quality``'s tables: the plan before training, the summary over seeds with its pairings, and ours
beside the paper's Tables 1 and 2. Every text that comes from data goes in as plain ``Text``, never markup.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from sqabench.quality.budget import run_s


def quality_table(summaries, baseline: str, seeds: int) -> Table:
    """``sqabench quality``: per variant over seeds, the task's metric (MQAR: accuracy, with solved runs and steps
    to 90%; text: val loss on real tokens, with bits per byte and the padded numbers when there are some) with its
    95% interval, step time, and the paired difference from the baseline with its interval, the minimum
    detectable effect and the verdict (never a rank inside the noise)."""
    one = seeds < 2
    mqar = bool(summaries) and summaries[0].metric == "val_accuracy"
    what = "accuracy on held-out queries" if mqar else "val loss on held-out real tokens (nats a token)"
    caption = (f"{seeds} seed{'s' if seeds != 1 else ''}; {what}, mean "
               + ("(one seed: no uncertainty can be stated)" if one else "[95% t interval] and sd over seeds")
               + f"; diff: paired by seed against {baseline}; MDE: the smallest difference these seeds detect "
               "at 80% power")  # fmt: skip
    extras = list(dict.fromkeys(name for s in summaries for name in s.extras))
    table = Table(caption=caption, caption_justify="left")
    columns = ["variant", "Hq/Hkv", "steps", "accuracy" if mqar else "val loss", "sd", *extras,
               *(["solved", "steps to 90%"] if mqar else []), "step ms", f"diff vs {baseline}", "MDE", "verdict"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right")

    def shown(i) -> str:
        return f"{i.mean:.3f}" + ("" if i.low is None else f" [{i.low:.3f}, {i.high:.3f}]")

    for s in summaries:
        cells = [Text(s.variant), Text(s.heads), str(s.steps), shown(s.value),
                 "-" if s.value.sd is None else f"{s.value.sd:.3f}",
                 *(shown(s.extras[name]) if name in s.extras else "-" for name in extras)]  # fmt: skip
        if mqar:
            cells += [f"{s.solved}/{s.seeds}", ", ".join("-" if n is None else str(n) for n in s.steps_to_90)]
        cells += [f"{s.step_ms:.3g}", "-" if s.diff is None else s.diff.text(),
                  "-" if s.mde is None else f"{s.mde:.3f}", Text(s.verdict)]  # fmt: skip
        table.add_row(*cells)
    return table


def pairing_table(summaries, against: str) -> Table:
    """Each variant's difference from a second reference (``gqa`` beside ``mha``), paired by seed, with its
    interval, minimum detectable effect and verdict."""
    what = "accuracy" if summaries and summaries[0].metric == "val_accuracy" else "val loss"
    table = Table(caption=f"{what}: paired by seed against {against}", caption_justify="left")
    for column in ("variant", "Hq/Hkv", f"diff vs {against}", "MDE", "verdict"):
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right")
    for s in summaries:
        if s.variant != against:
            table.add_row(Text(s.variant), Text(s.heads), "-" if s.diff is None else s.diff.text(),
                          "-" if s.mde is None else f"{s.mde:.3f}", Text(s.verdict))  # fmt: skip
    return table


def paper_quality_table(summaries, paper_rows: list[dict], setting: str) -> Table:
    """``sqabench reproduce quality``: ours (val loss on real tokens with its interval over seeds, perplexity of
    the mean, accuracy, step time) beside the paper's Table 1 or 2 (one seed, pads scored)."""
    theirs = {row["variant"]: row for row in paper_rows if row["setting"] == setting}
    table = Table(caption="ours: mean [95% t interval] over seeds, real tokens only; paper: one seed, the pads "
                  "scored; their minutes and ours are on different machines and budgets", caption_justify="left")
    for column in ("variant", "Hq/Hkv", "ours val loss", "ours ppl", "ours acc %", "ours step ms", "paper val loss",
                   "paper ppl", "paper acc %", "paper " + ("s/batch" if setting == "dense" else "params")):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for s in summaries:
        loss = s.value
        row = theirs.get(s.variant, {})
        acc = s.extras.get("accuracy")
        table.add_row(
            Text(s.variant), Text(s.heads),
            f"{loss.mean:.4f}" + ("" if loss.low is None else f" [{loss.low:.4f}, {loss.high:.4f}]"),
            f"{math.exp(loss.mean):.4g}", "-" if acc is None else f"{100 * acc.mean:.2f}", f"{s.step_ms:.3g}",
            row.get("val_loss", "-"), row.get("perplexity", "-"), row.get("accuracy_pct", "-"),
            row.get("s_per_batch" if setting == "dense" else "params", "-") or "-",
        )  # fmt: skip
    return table


def quality_plan(plan, probes=None) -> Table:
    """What ``sqabench quality`` is about to train: each variant's steps, tokens and training FLOPs (the cost
    model's), and with a probe its step, evaluation and estimated time."""
    table = Table(caption=f"{len(plan.seeds)} seed(s) each; batch {plan.cfg.batch} x {plan.cfg.task.seq_len} tokens; "
                  f"equal {plan.equal}", caption_justify="left")  # fmt: skip
    for column in ("variant", "Hq/Hkv", "steps", "tokens", "train FLOPs", *(
            ("step ms", "eval ms", "est. per seed") if probes else ())):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    for spec in plan.specs:
        cfg = plan.config(spec)
        cells = [spec.name, spec.heads, str(cfg.steps), f"{cfg.steps * cfg.batch * cfg.task.seq_len:,}",
                 f"{plan.step_cost(spec).flops * cfg.steps:.3g}"]  # fmt: skip
        if probes:
            p = probes[spec.name]
            cells += [f"{p.step_s * 1e3:.3g}", f"{p.eval_s * 1e3:.3g}", f"{run_s(p, cfg.steps, cfg.eval_every):.3g} s"]
        table.add_row(*cells)
    return table
