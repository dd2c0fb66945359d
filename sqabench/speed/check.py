"""Baseline vs current results: the regression gate for GPU CI runners.

Cells pair by ``CELL_KEY`` (what was asked for: variant, heads, window, preset, layers, length, batch, dtype,
mode, causal, requested kernel, device ...), never by the kernel that ran: a change of backend between runs is
a note on the cell, and its time is still gated.

Every gate (a cell's time, the drop of its speed-up over the baseline variant, the geometric mean of the time
ratios, peak memory) gives one of three answers by one rule: *pass* when its interval's worse end is within the
limit, *fail* when its better end is beyond it, *not judged* otherwise (which fails the gate unless
``--allow-unjudged``; that never passes a failure). An interval is a central 90% one (each end a one-sided 95%
bound). Within a run the noise is the repeats' (``samples_ms``, bootstrapped with a fixed seed, so a verdict is
reproducible); across runs, a baseline of k >= 2 runs (several files, or a file of several run ids: ``sqabench
run --runs K``) adds the runs' own spread, as the prediction interval of one more run. Memory has no noise to
speak of: its growth is compared with its limit as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
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
from sqabench.units import format_percent, parse_fraction, plural

if TYPE_CHECKING:
    from rich.console import Console

RESAMPLES = 2000
CONFIDENCE = 0.95  # each end of an interval is a one-sided 95% bound: together, a central 90% interval
LEVEL = "90%"  # how every table, summary and verdict names the interval
SEED = 20251001
PASS, FAIL, UNJUDGED = "pass", "fail", "not judged"
ENVIRONMENT = ("torch_version", "git_sha", "sqabench_version", "driver_version", "cuda_version", "cudnn_version",
               "triton_version")  # fmt: skip
MIG = re.compile(r"\s+MIG\s+(\S+)\s*$", re.IGNORECASE)  # "NVIDIA H100 80GB HBM3 MIG 3g.40gb": the slice


@dataclass(frozen=True)
class Limits:
    max_slowdown: float = 0.10
    max_mem_growth: float = 0.05
    max_ratio_drop: float = 0.05
    max_geomean_slowdown: float = 0.03
    baseline_variant: str | None = None  # None: the one the runs recorded (``run --baseline``), else mha
    strict: bool = False
    allow_unjudged: bool = False  # pass although some gates could not tell (never a failed one)

    def __post_init__(self) -> None:
        for name in LIMIT_NAMES:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ConfigError(f"--{name.replace('_', '-')} {value} must be a fraction in [0, 1] (0.10 = 10%)")

    @classmethod
    def parse(cls, **given) -> "Limits":
        """Limits as typed (``10%`` or ``0.10``; a bare number above 1 refused), the rest as given."""
        return cls(**{name: parse_fraction(value, "--" + name.replace("_", "-")) if name in LIMIT_NAMES else value
                      for name, value in given.items()})  # fmt: skip


LIMIT_NAMES = ("max_slowdown", "max_mem_growth", "max_ratio_drop", "max_geomean_slowdown")


@dataclass(frozen=True)
class Interval:
    """A gated quantity (a slowdown, a drop, a growth: bigger is worse) and its central interval."""

    point: float
    low: float
    high: float

    def judge(self, limit: float) -> str:
        """One rule for every gate: pass when the interval's worse end is within the limit, fail when its better
        end is beyond it, otherwise the runs cannot tell."""
        if self.low > limit:
            return FAIL
        if self.high <= limit:
            return PASS
        return UNJUDGED

    def said(self, what: str, limit: float) -> str:
        """``+12.0% time (90% interval +10.4% to +13.5%; limit 10%)``: the ends printed with as many digits as
        tell them from the limit, so that no reason contradicts itself through rounding."""
        point, low, high = _apart(self.point, limit), _apart(self.low, limit, 1), _apart(self.high, limit, 1)
        return f"{point} {what} ({LEVEL} interval {low} to {high}; limit {format_percent(limit)})"


def _apart(value: float, limit: float, fewest: int = 0) -> str:
    """``value`` as a signed percentage with the fewest digits (from ``fewest``) that tell it from ``limit``."""
    for digits in range(fewest, 6):
        text = f"{value:+.{digits}%}"
        if float(text.rstrip("%")) / 100 != limit or digits == 5:
            return text
    return f"{value:+.5%}"


@dataclass
class CellVerdict:
    cell: str
    words: list[str]  # the cell's name in parts (``cell_words``)
    baseline_ms: float | None
    current_ms: float | None
    ratio_low: float | None = None  # the time ratio current / baseline: its central interval
    ratio_high: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)  # what the runs could not tell: neither passed nor failed

    @property
    def ratio(self) -> float | None:
        if self.baseline_ms and self.current_ms:
            return self.current_ms / self.baseline_ms
        return None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def state(self) -> str:
        """The cell's worst state, the one it is counted in: fail, then not judged, then pass."""
        return FAIL if self.problems else UNJUDGED if self.unjudged else PASS

    def gate(self, interval: Interval, limit: float, what: str) -> None:
        state = interval.judge(limit)
        text = interval.said(what, limit)
        if state == FAIL:
            self.problems.append(text)
        elif state == UNJUDGED:
            self.unjudged.append(f"{text}: cannot tell")
        elif interval.point > 0.5 * limit:
            self.notes.append(text)


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
    geomean_high: float | None = None
    geomean_unjudged: str = ""  # the geometric mean's gate could not tell: why
    gates_off: str = ""  # which gates were off, and why (GPUs of different models)
    baseline_runs: int = 1

    @property
    def failing(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.state == FAIL]

    @property
    def unjudged(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.state == UNJUDGED]

    @property
    def passed(self) -> list[CellVerdict]:
        return [c for c in self.cells if c.state == PASS]

    @property
    def undecided(self) -> bool:
        return bool(self.unjudged or self.geomean_unjudged)

    @property
    def ok(self) -> bool:
        """No regression, and nothing the runs could not tell (unless that was allowed): a gate never passes
        open, and ``--allow-unjudged`` never passes a failure."""
        return not self.failing and not self.problems and (self.allow_unjudged or not self.undecided)

    def verdict(self) -> str:
        """The one line that says what the gate decided: each cell counted once, in its worst state; the
        geometric mean's own verdict; the gates that were off."""
        counts = (f"{len(self.failing)} failed, {len(self.unjudged)} not judged, {len(self.passed)} passed of "
                  f"{plural(len(self.cells), 'cell')}")  # fmt: skip
        if self.failing and self.problems:
            said = f"regression: {counts}; the geometric mean failed too"
        elif self.problems:
            said = f"regression: the geometric mean failed ({counts})"
        elif self.failing:
            said = f"regression: {counts}"
        elif self.undecided:
            said = f"cannot tell: {counts}" + ("; the geometric mean not judged" if self.geomean_unjudged else "")
            said += (
                "; accepted (--allow-unjudged)"
                if self.allow_unjudged
                else "; the gate fails: rerun with more --repeats or more baseline runs, or pass --allow-unjudged"
            )
        else:
            said = f"no regression: {counts}"
        if self.gates_off:
            said += f"; {self.gates_off}"
        return said


class Bootstrap:
    """Resampled medians of each row's repeats, drawn once per row and reused by every gate."""

    def __init__(self, resamples: int = RESAMPLES, seed: int = SEED) -> None:
        self.resamples = resamples
        self.rng = np.random.default_rng(seed)
        self._cache: dict[tuple, np.ndarray] = {}

    def medians(self, tag: str, row: pd.Series) -> np.ndarray:
        key = (tag, normal(row.get("run_id")), key_of(row))
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


def log_interval(current: float, baseline: list[float], within: np.ndarray) -> tuple[float, float, float]:
    """The difference current - baseline of a log quantity, with its central interval.

    ``baseline`` holds one value per baseline run; ``within`` the bootstrap draws of the same difference from
    the repeats inside the runs. With one baseline run the interval is the bootstrap's alone. With k >= 2 the
    runs' own spread is noise too: the prediction interval of one more run's value, t(k - 1) x sd x
    sqrt(1 + 1/k), or the bootstrap's half-width where that is wider."""
    point = current - float(np.mean(baseline))
    low, high = lower(within), upper(within)
    if len(baseline) < 2:
        return point, low, high
    from scipy import stats

    k = len(baseline)
    half = float(stats.t.ppf(CONFIDENCE, k - 1) * np.std(baseline, ddof=1) * math.sqrt(1 + 1 / k))
    half = max(half, point - low, high - point)
    return point, point - half, point + half


def gpu_model(name: object) -> tuple[str, str]:
    """(the board's model, the MIG slice or ""): a slice or a spelling of one model is the same board."""
    text = normal(name)
    match = MIG.search(text)
    slice_ = match.group(1) if match else ""
    return " ".join(MIG.sub("", text).lower().split()), slice_


def _runs(frame: pd.DataFrame) -> dict[str, dict[tuple, pd.Series]]:
    """Each run (by ``run_id``) of a frame: its latest row of every cell."""
    ids = frame["run_id"].map(normal)
    return {run: _by_key(latest(frame[ids == run])) for run in dict.fromkeys(ids)}


def _by_key(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
    return {key_of(row): row for _, row in frame.iterrows()}


def _baseline_rows(rows: dict[tuple, pd.Series], variant: str | None) -> dict[tuple, pd.Series]:
    """The baseline variant's ok row at each (setting, length) point."""
    if variant is None:
        return {}
    return {key_of(row, POINT_KEY): row for row in rows.values() if row["variant"] == variant and row["status"] == "ok"}


def compare(baseline_path: Path | list[Path], current_path: Path, limits: Limits) -> Report:
    """Judge the current run against the baseline's runs (one file or several; a file may hold several run ids):
    every gate by the one rule of ``Interval.judge``."""
    baseline_frame, current_frame = load_results(baseline_path), load_results(current_path)
    variant, source = speedup_baseline(baseline_frame, current_frame, limits.baseline_variant)
    runs = _runs(baseline_frame)
    base = _by_key(latest(baseline_frame))  # every cell any baseline run has, its latest row
    cur = _by_key(latest(current_frame))
    if not set(base) & set(cur):
        raise ConfigError(
            f"no cell in common between {_names(baseline_path)} and {current_path} (paired by {', '.join(CELL_KEY)})"
        )
    ids = baseline_frame["run_id"].map(normal)
    warnings = [note for run in runs for note in duplicate_notes(baseline_frame[ids == run])]  # within a run
    warnings += duplicate_notes(current_frame)
    for frame, path in ((baseline_frame, baseline_path), (current_frame, current_path)):
        _need_repeats(frame, path)
    clock_gates, gates_off = _gpus(baseline_frame, current_frame, limits, warnings)
    if variant is None:
        warnings.append(f"{source}: the speed-up ratio gate is off (name a variant with --baseline)")
    if len(runs) < 2:
        warnings.append("the baseline is one run: its noise between runs is unknown, so every interval is the "
                        "repeats' alone; give check 3 or more baseline runs (sqabench run --runs 3, docs/ci.md)")  # fmt: skip
    warnings += _changes(baseline_frame, current_frame)
    boot = Bootstrap()
    cur_refs = _baseline_rows(cur, variant)
    run_refs = {run: _baseline_rows(rows, variant) for run, rows in runs.items()}
    memory_missing = {"baseline": 0, "current": 0}

    verdicts: list[CellVerdict] = []
    gm_cells = []  # (key, current row, {run: baseline row}) of every cell the time gate judged
    for key, b in base.items():
        if b["status"] != "ok":
            continue  # only cells that were ok can regress
        verdict = CellVerdict(cell_name(b), cell_words(b), float(b["time_ms"]), None)
        verdicts.append(verdict)
        c = cur.get(key)
        if c is None:
            verdict.unjudged.append("not measured in the current run (a --budget run stops starting cells; a "
                                    "crash leaves none)")  # fmt: skip
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
            if str(row.get("stopped")) == "cap":
                noise = normal(row.get("noise"))
                reached = f" (it reached +-{float(noise):.1%})" if noise not in (None, "") else ""
                verdict.notes.append(f"the {tag} run's repeats stopped on their cap before the median's interval "
                                     f"reached its target{reached}")  # fmt: skip
            if normal(row.get("throttle")):
                verdict.notes.append(f"throttled ({row['throttle']}) in the {tag} run")
                warnings.append(f"{verdict.cell}: the GPU throttled ({row['throttle']}) during the {tag} run's "
                                "timing; its verdict compares a slowed clock")  # fmt: skip
        verdict.current_ms = float(c["time_ms"])
        in_runs = {run: rows[key] for run, rows in runs.items() if key in rows and rows[key]["status"] == "ok"}
        base_logs = [math.log(float(row["time_ms"])) for row in in_runs.values()]
        verdict.baseline_ms = math.exp(float(np.mean(base_logs)))
        within = np.log(boot.medians("current", c)) - np.log(boot.medians("baseline", b)) + (
            math.log(float(b["time_ms"])) - float(np.mean(base_logs)))  # fmt: skip
        point, low, high = log_interval(math.log(float(c["time_ms"])), base_logs, within)
        verdict.ratio_low, verdict.ratio_high = math.exp(low), math.exp(high)
        gm_cells.append((c, b, in_runs))
        if clock_gates:
            slowdown = Interval(math.exp(point) - 1, math.exp(low) - 1, math.exp(high) - 1)
            clock = _clock_shift(c, in_runs)
            cycles = None if clock is None else Interval(*(math.exp(x + clock[0]) - 1 for x in (point, low, high)))
            if cycles is not None and slowdown.judge(limits.max_slowdown) == FAIL and \
                    cycles.judge(limits.max_slowdown) != FAIL:  # fmt: skip
                verdict.unjudged.append(
                    f"slower, clock-bound: {slowdown.said('time', limits.max_slowdown)}, but "
                    f"{cycles.said('cycles (time x SM clock)', limits.max_slowdown)}; SM clock {clock[1]:.0f} -> "
                    f"{clock[2]:.0f} MHz: not a regression of the code"
                )  # fmt: skip
            else:
                verdict.gate(slowdown, limits.max_slowdown, "time")
        _memory_gate(verdict, b, c, limits, memory_missing)
        _ratio_gate(verdict, b, c, in_runs, run_refs, cur_refs, boot, variant, limits)

    for tag, count in memory_missing.items():
        if count:
            warnings.append(f"the memory gate judged {plural(count, 'cell')} less: no peak memory recorded in the "
                            f"{tag} run (a CPU run records none)")  # fmt: skip
    extra = [cell_name(row) for k, row in cur.items() if k not in base and row["status"] == "ok"]
    if extra:
        warnings.append(f"{plural(len(extra), 'cell')} only in the current run, not gated: "
                        + "; ".join(extra[:6]) + (" ..." if len(extra) > 6 else ""))  # fmt: skip
    report = Report(verdicts, None, None, warnings, [], latest(current_frame), variant, source,
                    limits.allow_unjudged, gates_off=gates_off, baseline_runs=len(runs))  # fmt: skip
    _geomean_gate(report, gm_cells, boot, limits, clock_gates)
    return report


def _clock_shift(current, in_runs: dict) -> tuple[float, float, float] | None:
    """nvbench's cycle space: (the log of the current run's median SM clock over the baseline runs' geometric
    mean, the baseline's clock, the current's), when every run recorded one; None otherwise (a CPU run)."""
    clocks = [normal(row.get("sm_clock_median_mhz")) for row in (current, *in_runs.values())]
    try:
        values = [float(x) for x in clocks]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(x) and x > 0 for x in values):
        return None
    base = math.exp(float(np.mean([math.log(x) for x in values[1:]])))
    return math.log(values[0] / base), base, values[0]


def _names(paths) -> str:
    return ", ".join(map(str, paths)) if isinstance(paths, list) else str(paths)


def _need_repeats(frame: pd.DataFrame, path) -> None:
    for _, row in frame.iterrows():
        repeats = len(parse_samples(row.get("samples_ms")))
        if row["status"] == "ok" and repeats < 2:
            raise ConfigError(
                f"{_names(path)}: {cell_name(row)} has {repeats} recorded repeats (samples_ms): its noise cannot be "
                "judged, and a gate that assumed none would fail or pass it wrongly; rerun it with --repeats 2 or more"
            )


def _gpus(baseline: pd.DataFrame, current: pd.DataFrame, limits: Limits, warnings: list[str]) -> tuple[bool, str]:
    """Whether the clock-bound gates (time, geometric mean) apply, and which gates are off and why. GPUs compare
    by model: a MIG slice or another spelling of one board keeps every gate, and is said."""
    names = [set(frame["gpu_name"].dropna().map(normal)) - {""} for frame in (baseline, current)]
    models = [{gpu_model(n)[0] for n in found} for found in names]
    slices = sorted({f"{n} (slice {gpu_model(n)[1]})" for found in names for n in found if gpu_model(n)[1]})
    if names[0] != names[1] and models[0] == models[1]:
        warnings.append(f"GPU names differ but the model is one ({', '.join(sorted(models[0])) or 'CPU'})"
                        + (f"; a MIG slice: {', '.join(slices)}" if slices else "") + ": every gate applies")  # fmt: skip
    if models[0] == models[1] or limits.strict:
        if models[0] != models[1]:
            warnings.append("GPU models differ; --strict: every gate applies")
        return True, ""
    shown = " vs ".join(", ".join(sorted(found)) or "CPU" for found in names)
    off = f"time and geometric-mean gates off: the GPU models differ ({shown}; --strict applies them)"
    warnings.append(f"{off}; the speed-up ratio and memory gates apply")
    return False, off


def _changes(baseline: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """What changed in the environment between the runs (torch, the commit, the driver ...), named."""
    said = []
    for column in ENVIRONMENT:
        if column not in baseline or column not in current:
            continue
        before = sorted(set(baseline[column].dropna().map(normal)) - {""})
        after = sorted(set(current[column].dropna().map(normal)) - {""})
        if before and after and before != after:
            said.append(f"{column} changed: {', '.join(before)} -> {', '.join(after)} (every cell of the current run)")
    return said


def _memory_gate(verdict: CellVerdict, b, c, limits: Limits, missing: dict[str, int]) -> None:
    """Peak memory has no noise to speak of: its growth against the limit, on any GPU; a missing value is said."""
    for column, what in (("peak_mem_bytes", "memory"), ("attn_mem_bytes", "attention memory")):
        absent = [tag for row, tag in ((b, "baseline"), (c, "current")) if pd.isna(row[column])]
        if absent:
            if column == "peak_mem_bytes":
                verdict.notes.append(f"{what} not gated: none recorded in the {' and '.join(absent)} run")
                for tag in absent:
                    missing[tag] += 1
            continue
        if float(b[column]) > 0:
            growth = float(c[column]) / float(b[column]) - 1
            if growth > limits.max_mem_growth:
                limit = limits.max_mem_growth
                verdict.problems.append(f"{_apart(growth, limit)} {what} (limit {format_percent(limit)})")


def _geomean_gate(report: Report, cells, boot: Bootstrap, limits: Limits, clock_gates: bool) -> None:
    """The geometric mean of the time ratios over the cells the time gate judged, by the same rule; the runs'
    own spread from the baseline runs that hold every one of those cells."""
    if not cells:
        return
    runs = set.intersection(*(set(in_runs) for _, _, in_runs in cells))
    current = float(np.mean([math.log(float(c["time_ms"])) for c, _, _ in cells]))
    latest_base = float(np.mean([math.log(float(b["time_ms"])) for _, b, _ in cells]))
    per_run = [float(np.mean([math.log(float(in_runs[run]["time_ms"])) for _, _, in_runs in cells]))
               for run in sorted(runs)]  # fmt: skip
    base = per_run if len(per_run) >= 2 else [latest_base]
    draws = np.mean([np.log(boot.medians("current", c)) - np.log(boot.medians("baseline", b)) for c, b, _ in cells],
                    axis=0)  # fmt: skip
    point, low, high = log_interval(current, base, draws + latest_base - float(np.mean(base)))
    report.geomean_ratio, report.geomean_low, report.geomean_high = math.exp(point), math.exp(low), math.exp(high)
    if not clock_gates:
        return
    interval = Interval(math.exp(point) - 1, math.exp(low) - 1, math.exp(high) - 1)
    state = interval.judge(limits.max_geomean_slowdown)
    text = "geometric-mean " + interval.said("time", limits.max_geomean_slowdown)
    if state == FAIL:
        report.problems.append(text)
    elif state == UNJUDGED:
        report.geomean_unjudged = f"{text}: cannot tell"


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


def _ratio_gate(verdict, b, c, in_runs, run_refs, cur_refs, boot: Bootstrap, variant, limits: Limits) -> None:
    """The drop of the cell's speed-up over ``variant`` within its own run (a ratio of two cells of one run, so
    it holds on another GPU), by the one rule; the baseline runs' spread of that speed-up is noise too."""
    if variant is None or b["variant"] == variant:
        return
    ref_c = cur_refs.get(key_of(c, POINT_KEY))
    ref_b = run_refs.get(normal(b.get("run_id")), {}).get(key_of(b, POINT_KEY))
    logs = []
    for run, row in in_runs.items():
        ref = run_refs[run].get(key_of(row, POINT_KEY))
        if ref is not None:
            logs.append(math.log(float(ref["time_ms"]) / float(row["time_ms"])))
    if ref_c is None or ref_b is None or not logs:
        return
    speedup_b, speedup_c = math.exp(float(np.mean(logs))), float(ref_c["time_ms"]) / float(c["time_ms"])
    within = (np.log(boot.medians("current", ref_c)) - np.log(boot.medians("current", c))) - (
        np.log(boot.medians("baseline", ref_b)) - np.log(boot.medians("baseline", b))
    )
    within = within + math.log(float(ref_b["time_ms"]) / float(b["time_ms"])) - float(np.mean(logs))
    point, low, high = log_interval(math.log(speedup_c), logs, within)
    drop = Interval(1 - math.exp(point), 1 - math.exp(high), 1 - math.exp(low))  # a drop shrinks the speed-up
    verdict.gate(drop, limits.max_ratio_drop, f"drop of the speed-up over {variant} ({speedup_b:.2f}x -> "
                 f"{speedup_c:.2f}x)")  # fmt: skip


def markdown(report: Report, baseline_path: Path, current_path: Path) -> str:
    """The report as a GitHub step summary."""
    lines = [f"## sqabench check: {baseline_path} (baseline) vs {current_path}: "
             + ("passed" if report.ok else "**regression**" if report.failing or report.problems else
                "**cannot tell**"), "", report.verdict(), ""]  # fmt: skip
    lines += [f"> {w}" for w in report.warnings]
    lines += [f"{baseline_line(report)}", ""] if report.baseline_variant else []
    shared = shared_words([v.words for v in report.cells])
    lines += [f"Every cell: {' '.join(shared)}", ""] if shared else []
    lines += [f"| cell | baseline ms | current ms | ratio [{LEVEL} interval] | verdict |", "|---|---:|---:|---:|---|"]
    for v in report.cells:
        lines.append(
            f"| {short_name(v, shared)} | {format_time(v.baseline_ms)} | {format_time(v.current_ms)} | {ratio_text(v)} "
            f"| {verdict_text(v)} |"
        )
    if report.geomean_ratio is not None:
        lines += ["", f"Geometric-mean time ratio: {geomean_text(report)}"]
    lines += [f"**{p}**" for p in report.problems]
    return "\n".join(lines) + "\n"


def geomean_text(report: Report) -> str:
    return (f"{report.geomean_ratio:.3f} [{report.geomean_low:.3f}, {report.geomean_high:.3f}] ({LEVEL} interval, "
            f"{plural(report.baseline_runs, 'baseline run')})")  # fmt: skip


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


def gate(baseline_csv: Path | list[Path], current_csv: Path, limits: Limits, out: Console, err: Console,
         json_out: Path | None = None) -> int:  # fmt: skip
    """``sqabench check``: compare, print the table and the verdict, write the step summary (when
    ``GITHUB_STEP_SUMMARY`` is set) and ``--json``; the exit code: 0 held, 1 a regression, 2 a file that could
    not be written (the verdict is said first: a file that cannot be written never masks it)."""
    from rich.text import Text

    from sqabench.speed.report import check_table

    if json_out is not None:
        writable_file(json_out, "--json")
    report = compare(baseline_csv, current_csv, limits)
    baseline_csv = _names(baseline_csv)  # as the title and the summary name it
    for warning in report.warnings:
        err.print(Text(f"warning: {warning}", style="yellow"), highlight=False)
    out.print(check_table(report, baseline_csv, current_csv))
    if report.baseline_variant:
        out.print(Text(baseline_line(report)), highlight=False)
    if report.geomean_ratio is not None:
        out.print(f"geometric-mean time ratio: {geomean_text(report)}")
    for v in report.failing:
        err.print(Text(f"regression: {v.cell}: {'; '.join(v.problems)}", style="bold red"), highlight=False)
    for problem in report.problems:
        err.print(Text(f"regression: {problem}", style="bold red"), highlight=False)
    for v in report.unjudged:
        err.print(Text(f"not judged: {v.cell}: {'; '.join(v.unjudged)}", style="yellow"), highlight=False)
    if report.geomean_unjudged:
        err.print(Text(f"not judged: {report.geomean_unjudged}", style="yellow"), highlight=False)
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
