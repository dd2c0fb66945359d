"""``sqabench quality``'s flow: the plan, a probe when a budget or a dry run asks for one, every (variant, seed)
trained with progress shown, each row written as it finishes, then the tables and the paper's claims.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from rich.console import Console
from rich.text import Text

from sqabench.environment import Environment
from sqabench.files import CsvWriter
from sqabench.quality.options import QualityOptions
from sqabench.quality.plan import Plan, resolve_quality
from sqabench.quality.rows import COLUMNS, CURVE_COLUMNS, run_row
from sqabench.units import format_duration

SECOND_REFERENCES = ("mha", "gqa")  # the differences are also paired against these, when trained
INTERRUPTED = 130


def train_runs(plan: Plan, env: Environment, on_start: Callable[[str, int], None] = lambda label, steps: None,
               on_eval: Callable[[str, dict], None] = lambda label, row: None,
               on_row: Callable[[dict], None] = lambda row: None,
               on_step: Callable[[int], None] = lambda step: None) -> list[dict]:  # fmt: skip
    """Train every (variant, seed) still to train, seed-major, and write each row as it finishes; an out-of-memory
    or failed run is a row of its own (``oom`` / ``error``) and the next goes on. Returns every row, kept ones too."""
    from sqabench.failures import MEASURE_ERRORS, classify
    from sqabench.quality.train import train

    plan = plan if plan.run_id else replace(plan, run_id=uuid.uuid4().hex[:12])
    rows_out, curves_out = CsvWriter(plan.path, COLUMNS), CsvWriter(plan.curves_path, CURVE_COLUMNS)
    rows = list(plan.kept.values())
    for spec, seed in plan.runs():
        label, cfg = f"{spec.name} seed {seed}", plan.config(spec)
        on_start(label, cfg.steps)

        def heard(point: dict, spec=spec, seed=seed, label=label) -> None:
            curves_out.write({"run_id": plan.run_id, "variant": spec.name, "seed": seed, **point})
            on_eval(label, point)

        checkpoint = plan.checkpoint(spec, seed)
        try:
            result = train(cfg, spec, seed, on_eval=heard, on_step=on_step, checkpoint=checkpoint)
            row = run_row(plan, env, spec, seed, cfg, result)
        except MEASURE_ERRORS as error:
            outcome = classify(error)
            row = run_row(plan, env, spec, seed, cfg, None, outcome.error, outcome.status)
        rows_out.write(row)
        checkpoint.path.unlink(missing_ok=True)
        rows.append(row)
        on_row(row)
    if plan.checkpoints.is_dir() and not any(plan.checkpoints.iterdir()):
        plan.checkpoints.rmdir()
    return rows


@dataclass(frozen=True)
class Trained:
    """What a finished ``sqabench quality`` leaves: its plan and every row of its file."""

    plan: Plan
    rows: list[dict]


class Interrupted(Exception):
    """Ctrl-C during training: what is kept has been said; the command exits with ``code``."""

    code = INTERRUPTED


def run_quality(options: QualityOptions, out: Console, err: Console) -> Trained | None:
    """``sqabench quality``: resolve, probe when asked, train with progress, print the tables and the claims.
    Returns what was trained, or None after a dry run. ``ConfigError`` on bad input (nothing written);
    ``Interrupted`` on Ctrl-C, after saying what was kept."""
    from sqabench.quality.budget import estimate_s, fit_budget, probe
    from sqabench.quality.progress import QualityDisplay
    from sqabench.quality.summary import claims, summarise
    from sqabench.quality.tables import pairing_table, quality_plan, quality_table

    def say(message: str, style: str = "") -> None:
        err.print(Text(message, style=style), highlight=False)

    started = time.monotonic()
    plan, env = resolve_quality(options, say)
    probes = None
    if plan.budget_s is not None or options.dry_run:
        say(f"probing each variant's step and evaluation ({len(plan.specs)} variants, a few steps each) ...")
        probes = probe(plan, on_variant=lambda name: say(f"  probing {name} ...", "dim"))
        if plan.budget_s is not None:
            plan = fit_budget(plan, probes, time.monotonic() - started)
    runs = plan.runs()
    say(f"sqabench quality on {env.gpu_name or 'CPU'}: {plan.cfg.task.title()}; model {plan.cfg.preset.name}; "
        f"{len(plan.specs)} variants x {len(plan.seeds)} seeds, {len(runs)} runs to train, equal {plan.equal}"
        + ("" if options.dry_run else f"; writing {plan.path}"))  # fmt: skip
    out.print(quality_plan(plan, probes))
    if probes is not None:
        say(f"estimate: {format_duration(estimate_s(plan, probes))} for the runs" +
            ("" if plan.budget_s is None else f" (budget {format_duration(plan.budget_s)})"))  # fmt: skip
    if options.dry_run:
        say("dry run: nothing trained, nothing written")
        return None
    finished: list[dict] = []
    display = QualityDisplay(err, sum(plan.config(spec).steps for spec, _ in runs))

    def heard(row: dict) -> None:
        finished.append(row)
        display.finished(row, len(finished), len(runs))

    try:
        with display:
            rows = train_runs(plan, env, on_start=display.start, on_eval=lambda label, point: display.evaluated(point),
                              on_row=heard, on_step=display.step)  # fmt: skip
    except KeyboardInterrupt:
        kept = f"{len(finished)} finished run{'' if len(finished) == 1 else 's'} kept in {plan.path}" if finished \
            else "no run finished"
        say(f"interrupted: {kept}; a running run keeps its last checkpoint (every {options.checkpoint_every:g} min) "
            f"in {plan.checkpoints}; continue with --resume --out {plan.path}", "yellow")  # fmt: skip
        raise Interrupted from None
    out.print(quality_table(summarise(rows, plan.baseline), plan.baseline, len(plan.seeds)))
    trained = {str(row["variant"]) for row in rows if row["status"] == "ok"}
    for other in SECOND_REFERENCES:
        if other != plan.baseline and other in trained and len(trained) > 1:
            out.print(pairing_table(summarise(rows, other), other))
    for claim, said in claims(rows):
        out.print(Text(f"{claim}: {said}"), highlight=False)
    out.print(Text(f"results: {plan.path} (curves: {plan.curves_path})"), highlight=False)
    return Trained(plan, rows)
