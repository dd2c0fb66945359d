"""Does the gate fail clean reruns, and does it still catch forged regressions? Measured on this machine.

Runs one small CPU sweep several times, each in a fresh process: a baseline of K runs (``sqabench run --runs
K``) and N single reruns. Then ``sqabench check``'s own comparison judges

- every ordered pair of single reruns (a one-run baseline: the repeats' noise alone),
- every single rerun against the K-run baseline (the runs' own spread counted),

and, against the K-run baseline, regressions forged from a rerun (a cell 30% slower, every cell 30% slower,
a speed-up 15% smaller), which must fail or be not judged, never pass. It prints, for each way, the pairs run,
how many passed, failed or could not tell, and the cells failed and not judged in all.

    python benchmarks/gate_reruns.py [--runs 3] [--reruns 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SWEEP = ["--device", "cpu", "--seq", "256", "--variants", "mha,sqa,xsqa", "--batch", "1", "--warmup", "1",
         "--repeats", "5", "--yes"]  # fmt: skip


def sweep(out: Path, runs: int = 1) -> None:
    command = [sys.executable, "-m", "sqabench", "run", *SWEEP, "--runs", str(runs), "--out", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def forged(source: Path, out: Path, factor: dict[str, float]) -> Path:
    """``source`` with each named variant's times (every repeat, so the row stays whole) times its factor."""
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        f = factor.get(row["variant"], factor.get("*", 1.0))
        if row["status"] != "ok" or f == 1.0:
            continue
        samples = [float(s) * f for s in row["samples_ms"].split(";")]
        row["samples_ms"] = ";".join(f"{s:.6g}" for s in samples)
        row["time_ms"] = f"{statistics.median(samples):.6g}"
        row["time_ms_min"], row["time_ms_max"] = f"{min(samples):.6g}", f"{max(samples):.6g}"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out


def judge(baseline: Path, current: Path) -> tuple[str, int, int, int]:
    from sqabench.speed.check import Limits, compare

    report = compare(baseline, current, Limits())
    state = "fail" if report.failing or report.problems else "cannot tell" if report.undecided else "pass"
    return state, len(report.failing), len(report.unjudged), len(report.cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in the baseline (default 3)")
    parser.add_argument("--reruns", type=int, default=3, help="single reruns (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="keep the CSVs here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="sqabench-gate-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"sweep: sqabench run {' '.join(SWEEP)}; files in {folder}", flush=True)
    base = folder / f"baseline-{args.runs}-runs.csv"
    sweep(base, args.runs)
    reruns = [folder / f"rerun-{i}.csv" for i in range(1, args.reruns + 1)]
    for path in reruns:
        sweep(path)
    ways = {
        "one-run baseline (rerun vs rerun)": list(itertools.permutations(reruns, 2)),
        f"{args.runs}-run baseline (rerun vs baseline)": [(base, r) for r in reruns],
    }
    forgeries = {"a cell 30% slower": {"sqa": 1.3}, "every cell 30% slower": {"*": 1.3},
                 "sqa's speed-up 15% smaller": {"sqa": 1 / 0.85}}  # fmt: skip
    print(f"\n{'what':<52} {'pairs':>5} {'pass':>5} {'fail':>5} {'cannot tell':>11} {'cells':>5} "
          f"{'cells failed':>12} {'cells not judged':>16}")  # fmt: skip
    for name, pairs in ways.items():
        states = [judge(b, c) for b, c in pairs]
        _row(f"clean: {name}", states)
    for name, factor in forgeries.items():
        states = [judge(base, forged(r, folder / f"forged-{i}-{r.name}", factor)) for i, r in enumerate(reruns)]
        _row(f"forged vs {args.runs}-run baseline: {name}", states)


def _row(name: str, states: list[tuple[str, int, int, int]]) -> None:
    count = {s: sum(1 for state, *_ in states if state == s) for s in ("pass", "fail", "cannot tell")}
    cells = sum(n for *_, n in states)
    unjudged = sum(u for _, _, u, _ in states)
    print(f"{name:<52} {len(states):>5} {count['pass']:>5} {count['fail']:>5} {count['cannot tell']:>11} {cells:>5} "
          f"{sum(f for _, f, _, _ in states):>12} {unjudged:>9} ({unjudged / cells:.0%})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
