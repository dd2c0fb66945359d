"""``sqabench quality``'s tables: the plan before training, the summary over seeds with its pairings, and ours
beside the paper's Tables 1 and 2. Every text that comes from data goes in as plain ``Text``, never markup; every
column folds rather than cuts (on a narrow terminal a cell takes more lines, never an ellipsis).
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from sqabench.quality.budget import run_s
from sqabench.quality.stats import FEW_SEEDS
from sqabench.units import format_seconds, plural


def _ms(ms: float) -> str:
    """Milliseconds in a column of them: 3 digits, whole from 100 (7450, never 7.45e+03)."""
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def family_caption(summaries, against: str, seeds: int) -> str:
    """What a table's differences are: paired by seed against ``against``, the family's method, the noise they
    rest on (its sd, where it was pooled, its degrees of freedom), the MDE's meaning; a warning under 3 seeds."""
    compared = [s.comparison for s in summaries if s.comparison is not None]
    with_noise = [c for c in compared if c.noise is not None]
    if not with_noise:
        said = f"diff: paired by seed against {against}; one seed: no interval, no verdict can be stated"
    else:
        c = with_noise[0]
        pooled = [x for x in with_noise if x.noise.variants > 2]
        noise = pooled[0].noise if pooled else c.noise
        said = (f"diff: paired by seed against {against}, with {c.method}'s family-wise 95% intervals over the "
                f"{c.family} comparisons of this table; noise: sd of one seed's paired difference "
                f"{noise.sd:.3g}, {noise.source}, df {noise.df}")  # fmt: skip
        if len(pooled) != len(with_noise):
            said += "; a variant that missed a seed uses its own differences (its df in the table)"
        said += "; MDE: the true difference this test finds with 80% probability"
    if seeds < FEW_SEEDS:
        said += (f"; warning: {plural(seeds, 'seed')}: the noise rests on too little (use --seeds "
                 f"{FEW_SEEDS} or more)")  # fmt: skip
    return said


def _diff_cells(s) -> list:
    c = s.comparison
    if c is None:
        return ["-", "-", "-"]
    return [c.diff.text(), "-" if c.df is None else str(c.df), "-" if c.mde is None else f"{c.mde:.3g}"]


def quality_table(summaries, baseline: str, seeds: int) -> Table:
    """``sqabench quality``: per variant over seeds, the task's metric (MQAR: accuracy, with solved runs and steps
    to 90%; text: val loss on real tokens, with bits per byte and the padded numbers when there are some) with its
    95% interval, step time, and the paired difference from the baseline with its family-wise interval, its
    degrees of freedom, the minimum detectable effect and the verdict (never a rank inside the noise)."""
    one = seeds < 2
    mqar = bool(summaries) and summaries[0].metric == "val_accuracy"
    what = (
        "accuracy on held-out queries (kept within [0, 1])"
        if mqar
        else "val loss on held-out real tokens (nats a token)"
    )
    caption = (f"{plural(seeds, 'seed')}; {what}, mean "
               + ("(one seed: no uncertainty can be stated)" if one else "[its own 95% t interval] and sd over seeds")
               + "; " + family_caption(summaries, baseline, seeds))  # fmt: skip
    extras = list(dict.fromkeys(name for s in summaries for name in s.extras))
    table = Table(caption=Text(caption), caption_justify="left")
    columns = ["variant", "Hq/Hkv", "steps", "accuracy" if mqar else "val loss", "sd", *extras,
               *(["solved", "steps to 90%"] if mqar else []), "step ms", f"diff vs {baseline}", "df", "MDE",
               "verdict"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right", overflow="fold")

    def shown(i) -> str:
        return f"{i.mean:.3f}" + ("" if i.low is None else f" [{i.low:.3f}, {i.high:.3f}]")

    for s in summaries:
        cells = [Text(s.variant), Text(s.heads), str(s.steps), shown(s.value),
                 "-" if s.value.sd is None else f"{s.value.sd:.3g}",
                 *(shown(s.extras[name]) if name in s.extras else "-" for name in extras)]  # fmt: skip
        if mqar:
            cells += [f"{s.solved}/{s.seeds}", ", ".join("-" if n is None else str(n) for n in s.steps_to_90)]
        cells += [_ms(s.step_ms), *_diff_cells(s), Text(s.verdict)]
        table.add_row(*cells)
    return table


def pairing_table(summaries, against: str, seeds: int) -> Table:
    """Each variant's difference from a second reference (``gqa`` beside ``mha``), paired by seed: a family of its
    own, with its intervals, degrees of freedom, minimum detectable effect and verdict."""
    what = "accuracy" if summaries and summaries[0].metric == "val_accuracy" else "val loss"
    table = Table(caption=Text(f"{what}: {family_caption(summaries, against, seeds)}"), caption_justify="left")
    for column in ("variant", "Hq/Hkv", f"diff vs {against}", "df", "MDE", "verdict"):
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right", overflow="fold")
    for s in summaries:
        if s.variant != against:
            table.add_row(Text(s.variant), Text(s.heads), *_diff_cells(s), Text(s.verdict))
    return table


def claims_table(judged) -> Table:
    """The paper's quality claims this run can judge, one family (Bonferroni over them), each with its paired
    difference, degrees of freedom and verdict."""
    family = next((c.family for _, c, _ in judged if c is not None), len(judged))
    table = Table(
        caption=Text(
            f"the paper's claims, one family: Bonferroni's family-wise 95% intervals over the "
            f"{family} claims judged, on the table's pooled noise"
        ),
        caption_justify="left",
    )
    for column in ("claim", "diff", "df", "verdict"):
        table.add_column(column, justify="right" if column in ("diff", "df") else "left", overflow="fold")
    for text, c, said in judged:
        table.add_row(Text(text), "-" if c is None else c.diff.text(), "-" if c is None or c.df is None else
                      str(c.df), Text(said))  # fmt: skip
    return table


def paper_quality_table(summaries, paper_rows: list[dict], setting: str) -> Table:
    """``sqabench reproduce quality``: ours (val loss on real tokens with its interval over seeds, perplexity of
    the mean, accuracy, step time) beside the paper's Table 1 or 2 (one seed, pads scored)."""
    theirs = {row["variant"]: row for row in paper_rows if row["setting"] == setting}
    table = Table(
        caption=Text(
            "ours: mean [95% t interval] over seeds, real tokens only; paper: one seed, the pads "
            "scored; their minutes and ours are on different machines and budgets"
        ),
        caption_justify="left",
    )
    for column in (
        "variant",
        "Hq/Hkv",
        "ours val loss",
        "ours ppl",
        "ours acc %",
        "ours step ms",
        "paper val loss",
        "paper ppl",
        "paper acc %",
        "paper " + ("s/batch" if setting == "dense" else "params"),
    ):
        table.add_column(column, justify="left" if column == "variant" else "right", overflow="fold")
    for s in summaries:
        loss = s.value
        row = theirs.get(s.variant, {})
        acc = s.extras.get("accuracy")
        table.add_row(
            Text(s.variant), Text(s.heads),
            f"{loss.mean:.4f}" + ("" if loss.low is None else f" [{loss.low:.4f}, {loss.high:.4f}]"),
            f"{math.exp(loss.mean):.4g}", "-" if acc is None else f"{100 * acc.mean:.2f}", _ms(s.step_ms),
            row.get("val_loss", "-"), row.get("perplexity", "-"), row.get("accuracy_pct", "-"),
            row.get("s_per_batch" if setting == "dense" else "params", "-") or "-",
        )  # fmt: skip
    return table


def quality_plan(plan, probes=None) -> Table:
    """What ``sqabench quality`` is about to train: each variant's steps, tokens and training FLOPs (the cost
    model's), and with a probe its step, evaluation and estimated time."""
    dense = plan.flops_counted == "dense"
    counted = "" if not any(spec.window for spec in plan.specs) else (
        "; a windowed variant's train FLOPs: " + ("the full square its masked kernel computes" if dense
                                                   else "its window's"))  # fmt: skip
    seeds = len(plan.seeds)
    table = Table(caption=Text(f"{plural(seeds, 'seed')} each; batch {plan.cfg.batch} x "
                               f"{plan.cfg.task.seq_len} tokens; equal {plan.equal}{counted}"),
                  caption_justify="left")  # fmt: skip
    for column in ("variant", "Hq/Hkv", "steps", "tokens", "train FLOPs", *(
            ("step ms", "probe spread", "eval ms", "est. per seed") if probes else ())):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right", overflow="fold")
    for spec in plan.specs:
        cfg = plan.config(spec)
        cells = [spec.name, spec.heads, str(cfg.steps), f"{cfg.steps * cfg.batch * cfg.task.seq_len:,}",
                 f"{plan.step_cost(spec).flops * cfg.steps:.3g}"]  # fmt: skip
        if probes:
            p = probes[spec.name]
            cells += [
                _ms(p.step_s * 1e3),
                f"±{p.spread:.0%}",
                _ms(p.eval_s * 1e3),
                format_seconds(run_s(p, cfg.steps, cfg.eval_every)),
            ]
        table.add_row(*cells)
    return table
