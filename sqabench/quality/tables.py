"""``sqabench quality``'s tables: the plan before training, the summary over seeds with its pairings, and ours
beside the paper's Tables 1 and 2. Every text that comes from data goes in as plain ``Text``, never markup; every
column folds rather than cuts (on a narrow terminal a cell takes more lines, never an ellipsis).
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from sqabench.quality.budget import run_s
from sqabench.quality.stats import FEW_SEEDS, verdict
from sqabench.units import format_seconds, plural


def _ms(ms: float) -> str:
    """Milliseconds in a column of them: 3 digits, whole from 100 (7450, never 7.45e+03)."""
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _p(c) -> str:
    return "-" if c is None or c.p_adjusted is None else f"{c.p_adjusted:.2g}"


def _diff_cells(c) -> list:
    if c is None:
        return ["-", "-", "-", "-"]
    return [c.diff.text(), "-" if c.df is None else str(c.df), _p(c), "-" if c.mde is None else f"{c.mde:.3g}"]


def _table(caption: str, columns) -> Table:
    table = Table(caption=Text(caption), caption_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "verdict", "claim", "mark") else "right",
                         overflow="fold")  # fmt: skip
    return table


def _diff_note(analysis, against: str) -> str:
    method = "paired t" + (" and, where the seeds allow, the exact sign-flip test (the larger p decides)"
                           if analysis.metric.robust else "")  # fmt: skip
    return (
        f"diff: variant - {against}, paired by seed, on the pair's own differences ({method}); the interval is "
        f"simultaneous over the run's family (Bonferroni, t on the pair's df); p: Holm-adjusted over the family, "
        f"which decides the verdict (Holm's later steps are more lenient than Bonferroni's single step: a verdict "
        f"can stand beside an interval that holds 0); MDE: the true difference this pair's test finds with 80% "
        f"probability, estimated from the same seeds"
    )


def quality_table(analysis) -> Table:
    """``sqabench quality``: per variant over seeds, the task's metric (MQAR: accuracy, with the runs that reached
    each mark; text: val loss on real tokens, with bits per byte and the padded numbers when there are some) with
    its own 95% interval, step time, and the paired difference from the baseline with its simultaneous interval,
    df, Holm-adjusted p, minimum detectable effect and verdict (never a rank inside the noise)."""
    summaries, baseline, seeds = analysis.summaries, analysis.baseline, analysis.seeds
    mqar = analysis.metric.column == "val_accuracy"
    what = (
        "accuracy on held-out queries (kept within [0, 1])"
        if mqar
        else "val loss on held-out real tokens (nats a token)"
    )
    caption = (f"{plural(seeds, 'seed')}; {what}, mean "
               + ("(one seed: no uncertainty can be stated)" if seeds < 2 else "[its own 95% t interval] and sd over seeds")
               + "; " + _diff_note(analysis, baseline))  # fmt: skip
    flagged = [s.variant for s in summaries if s.on_bound or s.value.no_noise]
    if flagged:
        caption += (f"; {', '.join(flagged)}: every seed on a bound of the metric or identical, so no interval is "
                    "stated for it (not certainty)")  # fmt: skip
    extras = list(dict.fromkeys(name for s in summaries for name in s.extras))
    marks = list(dict.fromkeys(mark for s in summaries for mark in s.reached))
    columns = ["variant", "Hq/Hkv", "steps", "accuracy" if mqar else "val loss", "sd", *extras,
               *(f"reached {m}" if m != "solved" else "solved" for m in marks), "step ms", f"diff vs {baseline}",
               "df", "p", "MDE", "verdict"]  # fmt: skip
    table = _table(caption, columns)

    def shown(s, i) -> str:
        if s is not None and (s.on_bound or i.no_noise):
            return f"{i.mean:.3f} (no interval)"
        return f"{i.mean:.3f}" + ("" if i.low is None else f" [{i.low:.3f}, {i.high:.3f}]")

    for s in summaries:
        cells = [Text(s.variant), Text(s.heads), str(s.steps), shown(s, s.value),
                 "-" if s.value.sd is None else f"{s.value.sd:.3g}",
                 *(shown(None, s.extras[name]) if name in s.extras else "-" for name in extras),
                 *(f"{s.reached[m]}/{s.seeds}" if m in s.reached else "-" for m in marks)]  # fmt: skip
        cells += [_ms(s.step_ms), *_diff_cells(s.comparison), Text(s.verdict)]
        table.add_row(*cells)
    return table


def counts_table(analysis) -> Table | None:
    """MQAR: each variant's runs that reached a mark against the baseline's, paired by seed (the exact McNemar
    test on the seeds where only one of the two did); the tests that cannot reach the family's level are counted
    in a line, not a row."""
    tests = [c for c in analysis.counts if c.p is not None and c.in_family]
    if not tests:  # none can reach the family's level: the family line says how many were left out
        return None
    untested = sum(c.p is None for c in analysis.counts)
    caption = (f"counts against {analysis.baseline}, paired by seed: the exact McNemar test on the discordant seeds "
               f"(only the variant's run reached the mark / only {analysis.baseline}'s), p Holm-adjusted over the "
               f"run's family; {plural(analysis.idle_counts, 'count test')} with too few discordant seeds to reach the "
               f"family's level are left out of it (Tarone's rule), and {untested} with no discordant seed test "
               "nothing; neither is shown")  # fmt: skip
    table = _table(caption, ("variant", "mark", "discordant", "p", "verdict"))
    for c in tests:
        table.add_row(Text(c.variant), Text(c.mark), f"{c.counts[0]} / {c.counts[1]}", _p(c),
                      Text(verdict(c, "count")))  # fmt: skip
    return table


def pairing_table(analysis, against: str) -> Table:
    """Each variant's difference from a second reference (``--also-against``), paired by seed, in the run's
    family, with its interval, df, Holm-adjusted p, minimum detectable effect and verdict."""
    heads = {s.variant: s.heads for s in analysis.summaries}
    what = analysis.metric.what
    table = _table(f"{what}: {_diff_note(analysis, against)}",
                   ("variant", "Hq/Hkv", f"diff vs {against}", "df", "p", "MDE", "verdict"))  # fmt: skip
    for c in analysis.also.get(against, []):
        table.add_row(Text(c.variant), Text(heads[c.variant]), *_diff_cells(c), Text(verdict(c, what)))
    return table


def claims_table(analysis) -> Table:
    """The paper's quality claims this run can judge, as closeness: equivalence within a margin (two one-sided
    tests) for "close to", non-inferiority for "no worse than", each in the run's family."""
    margins = "; ".join(dict.fromkeys(f"{c.against}: +-{c.margin:.3g} = {c.margin_from}" for _, c in analysis.claims))
    table = _table(f"the paper's claims as closeness, in the run's family (Holm-adjusted p); diff: variant - "
                   f"reference [simultaneous interval]; margins: {margins}", ("claim", "diff", "df", "margin", "p",
                                                                              "verdict"))  # fmt: skip
    for text, c in analysis.claims:
        table.add_row(Text(text), c.diff.text(), "-" if c.df is None else str(c.df), f"{c.margin:.3g}", _p(c),
                      Text(verdict(c, analysis.metric.what)))  # fmt: skip
    return table


def family_line(analysis) -> str:
    """What the verdicts above promise, together: their number, the family's size, the error rate; a warning
    under ``FEW_SEEDS`` seeds; the seeds a pairing could not use."""
    head = ("the 1 verdict above is the family" if analysis.verdicts == 1 else
            f"the {analysis.verdicts} verdicts above are one family")  # fmt: skip
    said = (f"family: {head}, decided by Holm's step-down at a family-wise 5% (the chance that any of them is false "
            f"is at most 5%"
            + ("" if not analysis.metric.robust else ", if the paired differences are near normal or the sign-flip "
               "test decides") + f"); its size {analysis.family}")  # fmt: skip
    if analysis.idle_counts:
        said += (f"; {plural(analysis.idle_counts, 'count test')} with too few discordant seeds to reach the family's level left out "
                 "of it (Tarone's rule), no verdict")  # fmt: skip
    if analysis.exploratory:
        said += (f"; exploratory: {plural(analysis.seeds, 'seed')} (fewer than {FEW_SEEDS}): a paired t on so few "
                 f"degrees of freedom finds little and rests on little; use --seeds {FEW_SEEDS} or more")  # fmt: skip
    if analysis.left_out:
        said += f"; left out of their pairings (the other variant has no such seed): {', '.join(analysis.left_out)}"
    return said + ". A verdict is a statement about these runs' setting (model, data, steps), not about SQA at scale."


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
