"""A confirmatory run: ``sqabench quality --confirm FIRST.csv`` trains fresh seeds (after the first run's last one)
with the first run's setting, and tests only the first run's findings on them, each one-sided in the direction
the first run found, Holm over the findings tested: "confirmed" or "not confirmed". No torch here.

The setting must be the first run's: every variant both runs train must hash to the first run's ``config`` (the
same task, data, model, steps and schedule), so that the fresh seeds are a new sample of the same experiment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqabench.errors import ConfigError


def first_rows(path: Path) -> list[dict]:
    """The finished rows of the first run, read and checked; a one-line error when there are none."""
    from sqabench.quality.rows import read_any

    if not path.is_file():
        raise ConfigError(f"--confirm {path}: no such file (the first run's quality CSV)")
    rows = [row for row in read_any(path)[0] if row["status"] == "ok"]
    if not rows:
        raise ConfigError(f"--confirm {path}: it holds no finished run, so there is nothing to confirm")
    return rows


def confirming(plan, path: Path):
    """``plan`` with fresh seeds, as many as it had, after the first run's last seed; ``ConfigError`` when a
    variant's setting differs from the first run's (its config hash) or the two runs share no variant."""
    from sqabench.quality.rows import config_hash

    if path.resolve() == plan.path.resolve():
        raise ConfigError(f"--confirm {path} is the file this run writes: give the first run's file, and another --out")
    rows = first_rows(path)
    seeds = sorted({int(row["seed"]) for row in rows})
    by_variant = {str(row["variant"]): row for row in rows}
    shared = [spec for spec in plan.specs if spec.name in by_variant]
    if not shared:
        raise ConfigError(f"--confirm {path}: it trained {', '.join(sorted(by_variant))}, none of the variants "
                          "asked for here")  # fmt: skip
    for spec in shared:
        row = by_variant[spec.name]
        if config_hash(plan.config(spec).key(spec, int(row["seed"]))) != row["config"]:
            raise ConfigError(f"--confirm {path}: {spec.name} was trained there with another setting (steps "
                              f"{row['steps']}, batch {row['batch']}, lr {row['lr']}, task {row['task']}, "
                              f"{row['preset']}); give the first run's options, only --seeds and --out may "
                              "differ")  # fmt: skip
    start = seeds[-1] + 1
    return replace(plan, seeds=list(range(start, start + len(plan.seeds))))


def confirm(first: list[dict], rows: list[dict], baseline: str, also: tuple[str, ...] = (),
            margin: float | None = None) -> list[tuple[str, object]]:  # fmt: skip
    """Each finding of the first run (every verdict of its family that Holm found, as ``sqabench report`` prints
    it today) tested on the fresh seeds of ``rows``, one-sided in its direction, Holm over the findings: a list
    of (the first run's verdict, its judged confirmation). Seeds the first run used are left out of ``rows``."""
    from sqabench.quality.stats import confirmation, judge
    from sqabench.quality.summary import _marks, analyse, finished_runs, seed_table

    found = analyse(first, baseline, also, margin)
    findings = [c for s in found.summaries if s.comparison for c in [s.comparison] if c.found]
    findings += [c for c in found.counts if c.found]
    findings += [c for tests in found.also.values() for c in tests if c.found]
    findings += [c for _, c in found.claims if c.found]
    used = {int(row["seed"]) for row in first}
    fresh = [row for row in rows if int(row["seed"]) not in used]
    by_variant = finished_runs(fresh)
    table = seed_table(by_variant, found.metric.column)
    marks = _marks(by_variant) if found.metric.column == "val_accuracy" else {}
    tests = [confirmation(c, table, marks.get(c.mark)) for c in findings]
    judged = judge(tests, (-1.0, 1.0) if found.metric.bounds else None)
    return [(_said(c, found.metric.what), j) for c, j in zip(findings, judged)]


def _said(c, what: str) -> str:
    from sqabench.quality.stats import verdict

    return f"{c.variant} vs {c.against}: {verdict(c, what)}"


def confirm_table(confirmed, first: Path, fresh_seeds: int):
    """The confirmatory run's table: each finding of ``first``, the fresh seeds' difference, the Holm-adjusted
    one-sided p-value, and confirmed or not confirmed."""
    from rich.table import Table
    from rich.text import Text

    table = Table(caption=Text(f"the findings of {first}, tested on {fresh_seeds} fresh seeds, each one-sided in the "
                               "direction found (a closeness claim against the first run's margin), Holm over the "
                               f"{len(confirmed)} findings at a family-wise 5%; only a confirmed finding is a "
                               "finding"), caption_justify="left")  # fmt: skip
    for column in ("first run's finding", "fresh diff", "seeds", "p", "confirmation"):
        table.add_column(column, justify="left" if column in ("first run's finding", "confirmation") else "right",
                         overflow="fold")  # fmt: skip
    for said, c in confirmed:
        result = ("confirmed" if c.found else "not confirmed") if c.p is not None else f"not tested: {c.untested}"
        table.add_row(Text(said), c.diff.text(), str(c.n), "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}",
                      Text(result))  # fmt: skip
    return table
