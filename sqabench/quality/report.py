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
    if missing:
        notes.append(f"{path} was written by an older sqabench: it lacks {', '.join(missing)} (shown as -)")
    return notes + _report_rows(rows, str(path), baseline, console, also, margin, confirm)


def _report_rows(rows: list[dict], where: str, baseline: str | None, console: Console, also: tuple[str, ...],
                 margin: float | None, confirm: Path | None) -> list[str]:  # fmt: skip
    """The tables of one run's ``rows`` (from ``where``: a file, or the shards' files), and a note per run that
    did not finish."""
    from sqabench.quality.summary import check_also

    names = list(dict.fromkeys(r["variant"] for r in rows if r["status"] == "ok"))
    if not names:
        return [f"{where} has no finished run (status ok): nothing to summarise"]
    chosen = pick_baseline(baseline, names, f"is not among the variants of {where}") or names[0]
    check_also(also, names, f"of {where}")
    print_tables(rows, chosen, console, also, margin, confirm)
    return [f"{r['variant']} seed {r['seed']}: {r['status']} ({r['error']})" for r in rows if r["status"] != "ok"]


# What must agree between the shards of one run: everything but the run's own variant, seed, steps and results.
SHARED = ("task", "data", "tokenizer", "pad_like_paper", "vocab", "seq_len", "pairs", "preset", "d_model",
          "n_layers", "batch", "equal", "lr", "warmup", "device", "dtype", "kernel")  # fmt: skip


def merged_rows(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """The rows of several quality CSVs read as one run (``--shard``'s files): refused when they differ in a
    setting (``SHARED``, or a variant's steps) or hold one (variant, seed) twice, naming the files; a
    (variant, seed) of the grid that no file holds is named in a note."""
    from sqabench.quality.rows import read_any

    rows, notes, seen, first = [], [], {}, {}
    for path in paths:
        found, missing = read_any(path)
        if missing:
            notes.append(f"{path} was written by an older sqabench: it lacks {', '.join(missing)} (shown as -)")
        for row in found:
            for column in SHARED:
                if column in first and str(row.get(column, "")) != first[column][0]:
                    raise ConfigError(f"{path} and {first[column][1]} are not shards of one run: {column} "
                                      f"{row.get(column, '')} against {first[column][0]}")  # fmt: skip
                first.setdefault(column, (str(row.get(column, "")), path))
            steps = first.setdefault(("steps", row["variant"]), (str(row["steps"]), path))
            if steps[0] != str(row["steps"]):
                raise ConfigError(f"{path} and {steps[1]} are not shards of one run: {row['variant']} trained "
                                  f"{row['steps']} steps against {steps[0]}")  # fmt: skip
            if row["status"] != "ok":
                rows.append(row)
                continue
            key = (row["variant"], int(row["seed"]))
            if key in seen:
                raise ConfigError(f"{row['variant']} seed {key[1]} is in both {seen[key]} and {path}: each (variant, "
                                  "seed) is one training; keep one of them")  # fmt: skip
            seen[key] = path
            rows.append(row)
    variants = sorted({v for v, _ in seen})
    seeds = sorted({s for _, s in seen})
    absent = [f"{v} seed {s}" for s in seeds for v in variants if (v, s) not in seen]
    if absent:
        notes.append(f"no finished run of {', '.join(absent[:8])}{' ...' if len(absent) > 8 else ''} in these "
                     "files (a shard not yet run, or a failed run): their pairs leave them out")  # fmt: skip
    return rows, notes


def report_shards(paths: list[Path], baseline: str | None, console: Console, also: tuple[str, ...] = (),
                  margin: float | None = None, confirm: Path | None = None) -> list[str]:  # fmt: skip
    """``sqabench report A.csv B.csv ...`` of quality files: one run's tables from its shards' files."""
    rows, notes = merged_rows(paths)
    return notes + _report_rows(rows, ", ".join(map(str, paths)), baseline, console, also, margin, confirm)


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
