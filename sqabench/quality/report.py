"""``sqabench report`` on a quality CSV: the tables its run printed (the summary over seeds, the pairings, the
paper's claims), from the file alone, with the statistics of this version. No torch, no training."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from sqabench.errors import ConfigError
from sqabench.quality.rows import read_any
from sqabench.variants import pick_baseline


def report_quality(path: Path, baseline: str | None, console: Console, also: tuple[str, ...] = (),
                   margin: float | None = None, confirm: Path | None = None) -> list[str]:  # fmt: skip
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
    unknown = [name for name in also if name not in names]
    if unknown:
        raise ConfigError(f"--also-against {', '.join(unknown)}: not among the variants of {path} ({', '.join(names)})")
    print_tables(rows, chosen, console, also, margin, confirm)
    failed = [r for r in rows if r["status"] != "ok"]
    return notes + [f"{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})" for r in failed]


def _is_curves(path: Path) -> bool:
    from sqabench.files import header_of
    from sqabench.quality.rows import CURVE_COLUMNS

    header = header_of(path)
    return set(CURVE_COLUMNS) <= header and "config" not in header


def print_tables(rows: list[dict], baseline: str, console: Console, also: tuple[str, ...] = (),
                 margin: float | None = None, confirm: Path | None = None) -> None:  # fmt: skip
    """Everything a run judged, one family: the summary against ``baseline``, MQAR's counts, the pairings against
    ``also``, the paper's claims as closeness, and the line that says what the family promises; with ``confirm``
    (the first run's file) its findings tested on these rows' fresh seeds. What ``sqabench quality`` prints at the
    end of a run, and ``sqabench report`` from its file."""
    from sqabench.quality.summary import analyse
    from sqabench.quality.tables import claims_table, counts_table, family_line, pairing_table, quality_table

    analysis = analyse(rows, baseline, also, margin)
    console.print(quality_table(analysis))
    counts = counts_table(analysis)
    if counts is not None:
        console.print(counts)
    for other in analysis.also:
        console.print(pairing_table(analysis, other))
    if analysis.claims:
        console.print(claims_table(analysis))
    console.print(Text(family_line(analysis)), highlight=False)
    if confirm is not None:
        from sqabench.quality.confirm import confirm as confirmed
        from sqabench.quality.confirm import confirm_table, first_rows

        first = first_rows(confirm)
        used = {int(row["seed"]) for row in first}
        fresh = len({int(row["seed"]) for row in rows if int(row["seed"]) not in used and row["status"] == "ok"})
        findings = confirmed(first, rows, baseline, also, margin)
        if findings:
            console.print(confirm_table(findings, confirm, fresh))
        else:
            console.print(Text(f"{confirm} found nothing (no verdict of its family): nothing to confirm"),
                          highlight=False)  # fmt: skip
