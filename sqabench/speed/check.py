"""Baseline vs current results: the regression gate for GPU CI runners.

Cells pair by ``CELL_KEY`` (what was asked for: variant, heads, window, preset, layers, length,
batch, dtype, mode, causal, requested kernel, device), never by the kernel that ran: a change of
backend between runs is a note on the cell, and its time is still gated.

Noise: every row keeps its per-repeat times (``samples_ms``). A time ratio is the ratio of the two
medians, and its uncertainty comes from a bootstrap: both runs' repeats are resampled (with a fixed
seed, so a verdict is reproducible) and the ratio of medians recomputed ``RESAMPLES`` times. A gate
fails only when the one-sided 95% lower bound of the slowdown passes its limit, i.e. when the
slowdown is beyond what the two runs' own spread explains. The same holds for the geometric mean
and for the drop of a speed-up over the baseline variant.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sqabench.errors import ConfigError
from sqabench.files import writable_file
from sqabench.speed.report import SPREAD_MEANS, format_time, ratio_text, short_name, verdict_text
from sqabench.speed.results import (
    CELL_KEY,
    POINT_KEY,
    cell_name,
    cell_words,
    duplicate_notes,
    key_of,
    latest,
    load_results,
    normal,
    parse_samples,
    resolve_baseline,
    shared_words,
    variants_in,
)
from sqabench.units import plural

if TYPE_CHECKING:
    from rich.console import Console

RESAMPLES = 2000
CONFIDENCE = 0.95  # one-sided: a gate fails when it fails at the 5th percentile of the bootstrap
SEED = 20251001


@dataclass(frozen=True)
class Limits:
    max_slowdown: float = 0.10
    max_mem_growth: float = 0.05
    max_ratio_drop: float = 0.05
    max_geomean_slowdown: float = 0.03
    baseline_variant: str | None = None  # None: the one the runs recorded (``run --baseline``), else mha
    strict: bool = False
    allow_unjudged: bool = False  # pass although some cells' noise left them unjudged (fails by default)

    def __post_init__(self) -> None:
        for name in ("max_slowdown", "max_mem_growth", "max_ratio_drop", "max_geomean_slowdown"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:  # NaN passes every comparison: it would turn a gate off
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {value} must be a finite fraction >= 0 (0.10 = 10%)")


@dataclass
class CellVerdict:
    cell: str
    words: list[str]  # the cell's name in parts (``cell_words``)
    baseline_ms: float | None
    current_ms: float | None
    ratio_low: float | None = None  # bootstrap interval of current / baseline
    ratio_high: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)  # what the noise left undecided: neither passed nor failed

    @property
    def ratio(self) -> float | None:
        if self.baseline_ms and self.current_ms:
            return self.current_ms / self.baseline_ms
        return None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    cells: list[CellVerdict]
    geomean_ratio: float | None
    geomean_low: float | None
    warnings: list[str]
    problems: list[str]  # run-wide: the geometric mean
    current: pd.DataFrame
    baseline_variant: str | None
    baseline_source: str = ""  # where the speed-ups' variant came from, said beside the verdicts

    allow_unjudged: bool = False

    @property
    def failing(self) -> list[CellVerdict]:
        return [c for c in self.cells if not c.ok]

    @property
    def unjudged(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.ok and c.unjudged]

    @property
    def ok(self) -> bool:
        """No regression, and no cell left unjudged (unless that was allowed): a gate never passes open."""
        return not self.failing and not self.problems and (self.allow_unjudged or not self.unjudged)

    def verdict(self) -> str:
        """The one line that says what the gate decided, the unjudged cells counted."""
        if self.failing or self.problems:
            said = f"regression: {plural(len(self.failing), 'cell')} failed"
        else:
            said = "no regression"
        if self.unjudged:
            said += (f"; {plural(len(self.unjudged), 'cell')} not judged (their noise decides nothing): "
                     + ("accepted (--allow-unjudged)" if self.allow_unjudged else
                        "the gate fails: rerun with more --repeats, or pass --allow-unjudged"))  # fmt: skip
        return said


class Bootstrap:
    """Resampled medians of each row's repeats, drawn once per row and reused by every gate."""

    def __init__(self, resamples: int = RESAMPLES, seed: int = SEED) -> None:
        self.resamples = resamples
        self.rng = np.random.default_rng(seed)
        self._cache: dict[tuple, np.ndarray] = {}

    def medians(self, tag: str, row: pd.Series) -> np.ndarray:
        key = (tag, key_of(row))
        if key not in self._cache:
            samples = np.asarray(parse_samples(row.get("samples_ms")) or (float(row["time_ms"]),))
            picks = self.rng.integers(0, len(samples), size=(self.resamples, len(samples)))
            self._cache[key] = np.median(samples[picks], axis=1)
        return self._cache[key]


def lower(values: np.ndarray) -> float:
    """The one-sided lower confidence bound of a bootstrap distribution."""
    return float(np.quantile(values, 1 - CONFIDENCE))


def upper(values: np.ndarray) -> float:
    return float(np.quantile(values, CONFIDENCE))


def _by_key(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
    return {key_of(row): row for _, row in frame.iterrows()}


def _baseline_rows(rows: dict[tuple, pd.Series], variant: str | None) -> dict[tuple, pd.Series]:
    """The baseline variant's ok row at each (setting, length) point."""
    if variant is None:
        return {}
    return {key_of(row, POINT_KEY): row for row in rows.values() if row["variant"] == variant and row["status"] == "ok"}


def compare(baseline_path: Path, current_path: Path, limits: Limits) -> Report:
    baseline_frame, current_frame = load_results(baseline_path), load_results(current_path)
    variant, source = speedup_baseline(baseline_frame, current_frame, limits.baseline_variant)
    base, cur = _by_key(latest(baseline_frame)), _by_key(latest(current_frame))
    if not set(base) & set(cur):
        raise ConfigError(
            f"no cell in common between {baseline_path} and {current_path} (paired by {', '.join(CELL_KEY)})"
        )
    gpus = (set(baseline_frame["gpu_name"].dropna().astype(str)), set(current_frame["gpu_name"].dropna().astype(str)))
    warnings = duplicate_notes(baseline_frame) + duplicate_notes(current_frame)
    ratio_only = gpus[0] != gpus[1] and not limits.strict
    if gpus[0] != gpus[1]:
        names = " vs ".join(", ".join(sorted(g)) or "CPU" for g in gpus)
        scope = "strict, all gates apply" if limits.strict else "only the speed-up ratio gate applies"
        warnings.append(f"GPUs differ ({names}): {scope}")
    if variant is None:
        warnings.append(f"{source}: the speed-up ratio gate is off (name a variant with --baseline)")
    for path, rows in ((baseline_path, base), (current_path, cur)):
        for row in rows.values():
            repeats = len(parse_samples(row.get("samples_ms")))
            if row["status"] == "ok" and repeats < 2:
                raise ConfigError(
                    f"{path}: {cell_name(row)} has {repeats} "
                    "recorded repeats (samples_ms): its noise cannot be judged, and a gate that "
                    "assumed none would fail or pass it wrongly; rerun it with --repeats 2 or more"
                )
    boot = Bootstrap()
    base_refs, cur_refs = _baseline_rows(base, variant), _baseline_rows(cur, variant)

    verdicts, log_ratio_draws, log_ratios = [], [], []
    for key, b in base.items():
        if b["status"] != "ok":
            continue  # only cells that were ok can regress
        verdict = CellVerdict(cell_name(b), cell_words(b), float(b["time_ms"]), None)
        verdicts.append(verdict)
        c = cur.get(key)
        if c is None:
            verdict.problems.append("missing from the current run")
            continue
        if c["status"] != "ok":
            error = "" if pd.isna(c["error"]) else f": {c['error']}"
            verdict.problems.append(f"now {c['status']}{error}")
            continue
        if str(b["kernel"]) != str(c["kernel"]):
            verdict.notes.append(f"kernel {b['kernel']} -> {c['kernel']}")
        for row, tag in ((b, "baseline"), (c, "current")):
            if str(row.get("noisy")) == "True":
                verdict.notes.append(f"noisy in the {tag} run (spread {float(row['spread']):.0%})")
            if normal(row.get("throttle")):
                verdict.notes.append(f"throttled ({row['throttle']}) in the {tag} run")
                warnings.append(
                    f"{verdict.cell}: the GPU throttled ({row['throttle']}) during the {tag} run's timing; "
                    "its verdict compares a slowed clock"
                )
        verdict.current_ms = float(c["time_ms"])
        draws = boot.medians("current", c) / boot.medians("baseline", b)
        verdict.ratio_low, verdict.ratio_high = lower(draws), upper(draws)
        log_ratio_draws.append(np.log(draws))
        log_ratios.append(math.log(verdict.ratio))
        if not ratio_only:
            if verdict.ratio_low > 1 + limits.max_slowdown:
                verdict.problems.append(f"{verdict.ratio - 1:+.0%} time (at least {verdict.ratio_low - 1:+.0%})")
            elif verdict.ratio > 1 + limits.max_slowdown:
                verdict.unjudged.append(
                    f"{verdict.ratio - 1:+.0%} time, though its noise allows {verdict.ratio_low - 1:+.0%}"
                )
            for column, what in (("peak_mem_bytes", "memory"), ("attn_mem_bytes", "attention memory")):
                if pd.notna(b[column]) and pd.notna(c[column]) and float(b[column]) > 0:
                    growth = float(c[column]) / float(b[column]) - 1
                    if growth > limits.max_mem_growth:
                        verdict.problems.append(f"{growth:+.0%} {what}")
        _ratio_gate(verdict, b, c, base_refs, cur_refs, boot, variant, limits)

    geomean = geomean_low = None
    problems = []
    if log_ratios:
        geomean = math.exp(sum(log_ratios) / len(log_ratios))
        geomean_low = lower(np.exp(np.mean(log_ratio_draws, axis=0)))
        if not ratio_only and geomean_low > 1 + limits.max_geomean_slowdown:
            problems.append(
                f"geometric-mean slowdown {geomean - 1:+.1%} (at least {geomean_low - 1:+.1%}) "
                f"> {limits.max_geomean_slowdown:.0%}"
            )
        elif not ratio_only and geomean > 1 + limits.max_geomean_slowdown:
            warnings.append(
                f"geometric-mean slowdown {geomean - 1:+.1%} is within the runs' own spread (at least "
                f"{geomean_low - 1:+.1%}): not a regression"
            )
    return Report(
        verdicts,
        geomean,
        geomean_low,
        warnings,
        problems,
        latest(current_frame),
        variant,
        source,
        limits.allow_unjudged,
    )


def speedup_baseline(
    baseline_frame: pd.DataFrame, current_frame: pd.DataFrame, asked: str | None
) -> tuple[str | None, str]:
    """The variant the ratio gate measures speed-ups over, and where it came from.

    ``--baseline`` when given (it must be in both files); else the one the runs recorded
    (``sqabench run --baseline``, as ``plot`` reads it), else mha when both files have it.
    """
    if asked is not None:
        resolve_baseline(baseline_frame, asked)  # exit 2 naming the variants there, if absent
        return resolve_baseline(current_frame, asked), "--baseline"
    picks = resolve_baseline(baseline_frame, None), resolve_baseline(current_frame, None)
    recorded = [_recorded(baseline_frame), _recorded(current_frame)]
    both = set(variants_in(baseline_frame)) & set(variants_in(current_frame))
    if picks[0] is not None and picks[0] == picks[1]:
        how = "recorded by both runs" if picks[0] in recorded else "present in both runs"
        return picks[0], how
    for pick, which in ((picks[1], "the current"), (picks[0], "the baseline")):
        if pick is not None and pick in both:
            return pick, f"{which} run's; the runs differ ({picks[0] or 'none'} vs {picks[1] or 'none'})"
    return None, "no baseline variant in both runs"


def _recorded(frame: pd.DataFrame) -> str | None:
    names = list(dict.fromkeys(frame["baseline"].dropna().astype(str)))
    return names[0] if names else None


def _ratio_gate(verdict, b, c, base_refs, cur_refs, boot: Bootstrap, variant, limits: Limits) -> None:
    """Fail when the variant's speed-up over ``variant`` in its own run dropped beyond the noise."""
    if variant is None or b["variant"] == variant:
        return
    ref_b, ref_c = base_refs.get(key_of(b, POINT_KEY)), cur_refs.get(key_of(c, POINT_KEY))
    if ref_b is None or ref_c is None:
        return
    speedup_b = float(ref_b["time_ms"]) / float(b["time_ms"])
    speedup_c = float(ref_c["time_ms"]) / float(c["time_ms"])
    draws_b = boot.medians("baseline", ref_b) / boot.medians("baseline", b)
    draws_c = boot.medians("current", ref_c) / boot.medians("current", c)
    drop_low = lower(1 - draws_c / draws_b)
    note = f"speed-up over {variant} {speedup_b:.2f}x -> {speedup_c:.2f}x"
    noisy = [f"{row['variant']} is noisy in the {tag} run (spread {float(row['spread']):.0%})"
             for row, tag in ((ref_b, "baseline"), (ref_c, "current"), (b, "baseline"), (c, "current"))
             if str(row.get("noisy")) == "True"]  # fmt: skip
    if drop_low > limits.max_ratio_drop and noisy:
        # A speed-up is a ratio of two cells, so it carries both cells' noise; a noisy cell's median is not
        # worth quoting (spread > 10%), and a handful of repeats cannot bound it. A drop resting on one is
        # neither passed nor failed: it is unjudged, which fails the gate unless --allow-unjudged.
        verdict.unjudged.append(f"{note}, not judged: {'; '.join(noisy)}")
        return
    (verdict.problems if drop_low > limits.max_ratio_drop else verdict.notes).append(note)


def markdown(report: Report, baseline_path: Path, current_path: Path) -> str:
    """The report as a GitHub step summary."""
    lines = [f"## sqabench check: {baseline_path} (baseline) vs {current_path}: "
             + ("passed" if report.ok else "**regression**" if report.failing or report.problems else
                "**not judged**"), "", report.verdict(), ""]  # fmt: skip
    lines += [f"> {w}" for w in report.warnings]
    lines += [f"{baseline_line(report)}", ""] if report.baseline_variant else []
    shared = shared_words([v.words for v in report.cells])
    lines += [f"Every cell: {' '.join(shared)}", ""] if shared else []
    lines += ["| cell | baseline ms | current ms | ratio [95% interval] | verdict |", "|---|---:|---:|---:|---|"]
    for v in report.cells:
        lines.append(
            f"| {short_name(v, shared)} | {format_time(v.baseline_ms)} | {format_time(v.current_ms)} | {ratio_text(v)} "
            f"| {verdict_text(v)} |"
        )
    if report.geomean_ratio is not None:
        lines += ["", f"Geometric-mean time ratio: {report.geomean_ratio:.3f} (at least {report.geomean_low:.3f})"]
    lines += [f"**{p}**" for p in report.problems]
    return "\n".join(lines) + "\n"


def baseline_line(report: Report) -> str:
    """Which variant the speed-up gate measured against, and why that one."""
    return f"speed-ups over {report.baseline_variant} ({report.baseline_source})"


def benchmark_json(current: pd.DataFrame) -> list[dict]:
    """The current run in github-action-benchmark's ``customSmallerIsBetter`` format."""
    entries = []
    for _, row in current[current["status"] == "ok"].iterrows():
        spread = (float(row["time_ms_max"]) - float(row["time_ms_min"])) / float(row["time_ms"])
        entries.append(
            {
                "name": cell_name(row),
                "unit": "ms",
                "value": float(row["time_ms"]),
                "range": f"±{spread:.1%}{SPREAD_MEANS}",
                "extra": f"gpu: {_text(row['gpu_name'], 'cpu')}; kernel: {_text(row['kernel'], '-')}; "
                f"git: {_text(row['git_sha'], '-')}",
            }
        )
    return entries


def _text(value: object, missing: str) -> str:
    return missing if pd.isna(value) else str(value)


def gate(baseline_csv: Path, current_csv: Path, limits: Limits, out: Console, err: Console,
         json_out: Path | None = None) -> int:  # fmt: skip
    """``sqabench check``: compare, print the table and the verdict, write the step summary (when
    ``GITHUB_STEP_SUMMARY`` is set) and ``--json``; the exit code: 0 held, 1 a regression, 2 a file that could
    not be written (the verdict is said first: a file that cannot be written never masks it)."""
    from rich.text import Text

    from sqabench.speed.report import check_table

    if json_out is not None:
        writable_file(json_out, "--json")
    report = compare(baseline_csv, current_csv, limits)
    for warning in report.warnings:
        err.print(Text(f"warning: {warning}", style="yellow"), highlight=False)
    out.print(check_table(report, baseline_csv, current_csv))
    if report.baseline_variant:
        out.print(Text(baseline_line(report)), highlight=False)
    if report.geomean_ratio is not None:
        out.print(f"geometric-mean time ratio: {report.geomean_ratio:.3f} (at least {report.geomean_low:.3f})")
    for v in report.failing:
        err.print(Text(f"regression: {v.cell}: {'; '.join(v.problems)}", style="bold red"), highlight=False)
    for problem in report.problems:
        err.print(Text(f"regression: {problem}", style="bold red"), highlight=False)
    for v in report.unjudged:
        err.print(Text(f"not judged: {v.cell}: {'; '.join(v.unjudged)}", style="yellow"), highlight=False)
    out.print(Text(report.verdict(), style="green" if report.ok else "bold red"), highlight=False)
    written = []
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        written.append(_append(Path(summary), markdown(report, baseline_csv, current_csv), "GITHUB_STEP_SUMMARY",
                               "a", err))  # fmt: skip
    if json_out is not None:
        text = json.dumps(benchmark_json(report.current), indent=2) + "\n"
        written.append(_append(json_out, text, "--json", "w", err))
    if not report.ok:
        return 1
    return 0 if all(written) else 2


def _append(path: Path, text: str, what: str, mode: str, err: Console) -> bool:
    """Write ``text`` to ``path``; a failure is one error line (no traceback), and False."""
    from rich.text import Text

    try:
        with open(path, mode) as handle:
            handle.write(text)
    except OSError as error:
        err.print(Text("error: ", style="bold red") + Text(f"{what} {path}: cannot write: {error.strerror or error}"))
        return False
    return True
