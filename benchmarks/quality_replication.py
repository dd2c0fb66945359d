"""Does each verdict of a quality run replicate? The run's seeds split in two halves, each judged on its own.

    python benchmarks/quality_replication.py results/cpu-amd-epyc-quality-kjv-bytes.csv
    python benchmarks/quality_replication.py FILE --baseline gqa

Seeds are independent replications of one protocol, so the first half of a run's seeds (the "finding") and
the second half (its rerun) are two experiments: each half is summarised exactly as ``sqabench quality``
summarises a run (its own pooled noise, its own family), and so is the whole. A verdict is ``replicated`` when
both halves and the whole say the same; otherwise the line says which disagree. Prints the comparisons
against the baseline, against gqa, and the paper's claims. Reads the file only: no torch, no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqabench.errors import ConfigError  # noqa: E402
from sqabench.quality.rows import read_any  # noqa: E402
from sqabench.quality.summary import claims, summarise  # noqa: E402


def halves(rows: list[dict]) -> dict[str, list[dict]]:
    """The run's rows split by seed: the lower half of its seeds, the upper half, and all."""
    seeds = sorted({int(row["seed"]) for row in rows})
    if len(seeds) < 4:
        raise ConfigError(f"{len(seeds)} seeds: each half needs at least 2 for a verdict (give a run of 4 or more)")
    lower = set(seeds[: len(seeds) // 2])
    first, second = [r for r in rows if int(r["seed"]) in lower], [r for r in rows if int(r["seed"]) not in lower]
    label = lambda part: f"seeds {min(int(r['seed']) for r in part)}-{max(int(r['seed']) for r in part)}"  # noqa: E731
    return {label(first): first, label(second): second, "all": rows}


def short(verdict: str) -> str:
    """A verdict's word: better, worse, or n.d. (no detectable difference)."""
    word = verdict.split(":")[0]
    return word if word in ("better", "worse") else "n.d."


def judged(verdicts: dict[str, str]) -> str:
    words = {short(v) for v in verdicts.values()}
    if len(words) == 1:
        return "replicated" if words != {"n.d."} else "inside the noise throughout"
    return "NOT replicated"


def comparisons(parts: dict[str, list[dict]], baseline: str) -> list[str]:
    """One line per variant compared with ``baseline``: its difference and verdict in each part, and whether
    the verdict replicates."""
    found = {name: {s.variant: s for s in summarise(rows, baseline)} for name, rows in parts.items()}
    lines = []
    for variant in found["all"]:
        if variant == baseline or any(found[name].get(variant) is None or found[name][variant].diff is None
                                      for name in parts):  # fmt: skip
            continue
        cells = [f"{name}: {found[name][variant].diff.mean:+.3f} "
                 f"[{found[name][variant].diff.low:+.3f}, {found[name][variant].diff.high:+.3f}] "
                 f"{short(found[name][variant].verdict)}" for name in parts]  # fmt: skip
        verdicts = {name: found[name][variant].verdict for name in parts}
        lines.append(f"{variant:6s} vs {baseline}: " + " | ".join(cells) + f" -> {judged(verdicts)}")
    return lines


def claim_lines(parts: dict[str, list[dict]]) -> list[str]:
    found = {name: {text: (comparison, said) for text, comparison, said in claims(rows)}
             for name, rows in parts.items()}  # fmt: skip
    lines = []
    for text in found["all"]:
        cells = []
        for name in parts:
            comparison, said = found[name].get(text, (None, "not paired"))
            diff = comparison.diff if comparison else None
            cells.append(f"{name}: " + (f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] " if diff else "")
                         + short(said))  # fmt: skip
        verdicts = {name: found[name].get(text, (None, ""))[1] for name in parts}
        lines.append(f"{text}: " + " | ".join(cells) + f" -> {judged(verdicts)}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--baseline", default="mha")
    args = parser.parse_args(argv)
    try:
        rows, _ = read_any(args.csv)
        parts = halves([row for row in rows if row.get("status", "ok") == "ok"])
        if args.baseline not in {row["variant"] for row in rows}:
            raise ConfigError(f"no variant {args.baseline!r} in {args.csv}")
    except ConfigError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    lines = comparisons(parts, args.baseline)
    if args.baseline != "gqa" and "gqa" in {row["variant"] for row in rows}:
        lines += comparisons(parts, "gqa")
    lines += claim_lines(parts)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
