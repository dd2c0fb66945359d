"""``sqabench report`` on a quality CSV: the tables its run printed (the summary over seeds, the pairings, the
paper's claims), from the file alone, with the statistics of this version. No torch, no training."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sqabench.errors import ConfigError
from sqabench.quality.rows import read_any
from sqabench.variants import pick_baseline

SECOND_REFERENCES = ("mha", "gqa")  # the differences are also paired against these, when trained


def report_quality(path: Path, baseline: str | None, console: Console) -> list[str]:
    """Print the tables of ``path`` (a quality CSV of any sqabench version) against ``baseline`` (default mha,
    else the first variant); returns notes (the columns an older file lacks, shown as -, never invented)."""
    notes = []
    if _is_curves(path):  # the curves beside a run: its tables come from the run's own file
        main = path.with_name(path.name.removesuffix("-curves.csv") + ".csv")
        if not main.is_file():
            raise ConfigError(f"{path} is the curves file of a quality run; report reads the run's file, {main}, "
                              "which is not there")  # fmt: skip
        notes.append(f"{path} is the curves file of {main}: the tables below are {main}'s")
        path = main
    rows, missing = read_any(path)
    names = list(dict.fromkeys(r["variant"] for r in rows if r["status"] == "ok"))
    if missing:
        notes.append(f"{path} was written by an older sqabench: it lacks {', '.join(missing)} (shown as -)")
    if not names:
        return notes + [f"{path} has no finished run (status ok): nothing to summarise"]
    chosen = pick_baseline(baseline, names, f"is not among the variants of {path}") or names[0]
    print_tables(rows, chosen, len({r["seed"] for r in rows}), console)
    failed = [r for r in rows if r["status"] != "ok"]
    return notes + [f"{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})" for r in failed]


def _is_curves(path: Path) -> bool:
    from sqabench.files import header_of
    from sqabench.quality.rows import CURVE_COLUMNS

    header = header_of(path)
    return set(CURVE_COLUMNS) <= header and "config" not in header


def print_tables(rows: list[dict], baseline: str, seeds: int, console: Console) -> None:
    """The summary against ``baseline``, the pairings against the second references, the paper's claims: what
    ``sqabench quality`` prints at the end of a run, and ``sqabench report`` from its file."""
    from sqabench.quality.summary import claims, summarise
    from sqabench.quality.tables import claims_table, pairing_table, quality_table

    console.print(quality_table(summarise(rows, baseline), baseline, seeds))
    trained = {str(row["variant"]) for row in rows if row["status"] == "ok"}
    for other in SECOND_REFERENCES:
        if other != baseline and other in trained and len(trained) > 1:
            console.print(pairing_table(summarise(rows, other), other, seeds))
    judged = claims(rows)
    if judged:
        console.print(claims_table(judged))
