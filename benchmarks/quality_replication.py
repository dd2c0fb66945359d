"""Do the two halves of a quality run's seeds agree? A consistency test, not a replication.

    python benchmarks/quality_replication.py results/cpu-amd-epyc-quality-kjv-bytes.csv
    python benchmarks/quality_replication.py FILE --baseline gqa

A run's seeds split in two halves (the lower and the upper half of its seeds). For every comparison the run
prints (each variant against the baseline, and the pairs of the paper's claims), the halves' mean paired
differences d1 and d2 are compared: (d1 - d2) / sqrt(se1^2 + se2^2), each se from its own half's differences,
on Welch-Satterthwaite's degrees of freedom, two-sided, Holm over the comparisons at a family-wise 5%. A line
says "the halves disagree" only when that test finds it; otherwise "consistent" (which is not a proof that
they agree: small halves find little). Whether a finding replicates is a confirmatory run's question, on fresh
seeds: ``sqabench quality --confirm FIRST.csv``. Reads the file only: no torch, no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqabench.errors import ConfigError  # noqa: E402
from sqabench.quality.rows import read_any  # noqa: E402
from sqabench.quality.stats import halves_disagree, holm, paired  # noqa: E402
from sqabench.quality.summary import CLAIMS, finished_runs, metric_of, seed_table  # noqa: E402


def halves(seeds: list[int]) -> tuple[set[int], set[int]]:
    if len(seeds) < 4:
        raise ConfigError(f"{len(seeds)} seeds: each half needs at least 2 (give a run of 4 or more)")
    return set(seeds[: len(seeds) // 2]), set(seeds[len(seeds) // 2 :])


def consistency(rows: list[dict], baseline: str) -> list[str]:
    """One line per comparison: each half's mean difference, the consistency test's Holm-adjusted p, the word."""
    by_variant = finished_runs(rows)
    if baseline not in by_variant:
        raise ConfigError(f"no finished {baseline!r} runs to pair with")
    metric = metric_of([row for runs in by_variant.values() for row in runs.values()])
    table = seed_table(by_variant, metric.column)
    lower, upper = halves(sorted({s for runs in table.values() for s in runs}))
    pairs = [(v, baseline, f"{v} vs {baseline}") for v in table if v != baseline]
    pairs += [(v, a, text) for v, a, text, _ in CLAIMS if {v, a} <= set(table)]
    found = []
    for variant, against, label in pairs:
        parts = [paired({k: {s: x for s, x in runs.items() if s in half} for k, runs in table.items()}, variant,
                        against)[0] for half in (lower, upper)]  # fmt: skip
        found.append((label, parts, halves_disagree(*parts)))
    tested = [p for *_, p in found if p is not None]
    adjusted = iter(holm(tested))
    lines = [f"{metric.what}, seeds {min(lower)}-{max(lower)} against {min(upper)}-{max(upper)}; Holm over "
             f"{len(tested)} comparisons at a family-wise 5%"]  # fmt: skip
    for label, (first, second), p in found:
        means = " | ".join(f"{sum(d) / len(d):+.3f} ({len(d)} seeds)" if d else "-" for d in (first, second))
        if p is None:
            lines.append(f"{label}: {means} -> not testable (a half has under 2 seeds or no noise)")
            continue
        q = next(adjusted)
        lines.append(f"{label}: {means}, p {q:.2g} -> " + ("the halves disagree" if q <= 0.05 else "consistent"))
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--baseline", default="mha")
    args = parser.parse_args(argv)
    try:
        rows, _ = read_any(args.csv)
        lines = consistency(rows, args.baseline)
    except ConfigError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
