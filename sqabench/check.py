"""Baseline vs current results: the regression gate for GPU CI runners.

Cells pair by (variant, preset, seq_len, batch, dtype, mode, causal, window, kernel). A run fails
when a cell got slower or bigger than allowed, when a variant's speed-up over the run's own
baseline variant dropped (a gate that holds across machines and drifting clocks), when a cell
that was ok is missing or not ok, or when the geometric-mean slowdown passes its bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sqabench.errors import ConfigError
from sqabench.results import load_results

PAIR_KEY = ("variant", "preset", "seq_len", "batch", "dtype", "mode", "causal", "window", "kernel")
SETTING_KEY = ("preset", "seq_len", "batch", "dtype", "mode", "causal")  # pairs a variant with the baseline variant


@dataclass(frozen=True)
class Limits:
    max_slowdown: float = 0.10
    max_mem_growth: float = 0.05
    max_ratio_drop: float = 0.05
    max_geomean_slowdown: float = 0.03
    baseline_variant: str = "mha"
    strict: bool = False


@dataclass
class CellVerdict:
    cell: str
    baseline_ms: float | None
    current_ms: float | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
    warnings: list[str]
    problems: list[str]  # run-wide: the geometric mean
    current: pd.DataFrame

    @property
    def failing(self) -> list[CellVerdict]:
        return [c for c in self.cells if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failing and not self.problems


def cell_name(row: pd.Series) -> str:
    window = "" if pd.isna(row["window"]) else f"@{int(row['window'])}"
    causal = "causal" if str(row["causal"]) == "True" else "encoder"
    return (
        f"{row['variant']}{window} {row['preset']} n={int(row['seq_len'])} b={int(row['batch'])} "
        f"{row['dtype']} {row['mode']} {causal} {row['kernel']}"
    )


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the last one written (a resumed file may hold an oom and a later ok)."""
    frame = frame.copy()
    frame["window"] = frame["window"].astype("Float64")
    frame["causal"] = frame["causal"].astype(str)
    return frame.drop_duplicates(subset=list(PAIR_KEY), keep="last").set_index(list(PAIR_KEY), drop=False)


def speedups(frame: pd.DataFrame, baseline_variant: str) -> dict[tuple, float]:
    """Each ok cell's speed-up over the baseline variant at the same setting, within one run."""
    ok = frame[frame["status"] == "ok"]
    base = ok[ok["variant"] == baseline_variant]
    base_time = {tuple(r[k] for k in SETTING_KEY): float(r["time_ms"]) for _, r in base.iterrows()}
    result = {}
    for key, row in ok.iterrows():
        reference = base_time.get(tuple(row[k] for k in SETTING_KEY))
        if reference is not None and row["variant"] != baseline_variant:
            result[key] = reference / float(row["time_ms"])
    return result


def compare(baseline_path: Path, current_path: Path, limits: Limits) -> Report:
    baseline = _latest(load_results(baseline_path))
    current = _latest(load_results(current_path))
    common = baseline.index.intersection(current.index)
    if len(common) == 0:
        raise ConfigError(f"no cell in common between {baseline_path} and {current_path} (paired by {', '.join(PAIR_KEY)})")

    gpus = (set(baseline["gpu_name"].dropna().astype(str)), set(current["gpu_name"].dropna().astype(str)))
    warnings = []
    ratio_only = gpus[0] != gpus[1] and not limits.strict
    if gpus[0] != gpus[1]:
        names = " vs ".join(", ".join(sorted(g)) or "CPU" for g in gpus)
        warnings.append(
            f"GPUs differ ({names}): {'strict, all gates apply' if limits.strict else 'only the speed-up ratio gate applies'}"
        )
    base_speedups = speedups(baseline, limits.baseline_variant)
    cur_speedups = speedups(current, limits.baseline_variant)

    verdicts, log_ratios = [], []
    for key in baseline.index:
        b = baseline.loc[key]
        if b["status"] != "ok":
            continue  # only cells that were ok can regress
        if key not in current.index:
            verdicts.append(CellVerdict(cell_name(b), float(b["time_ms"]), None, ["missing"]))
            continue
        c = current.loc[key]
        verdict = CellVerdict(cell_name(b), float(b["time_ms"]), None)
        if c["status"] != "ok":
            verdict.problems.append(f"now {c['status']}")
            verdicts.append(verdict)
            continue
        verdict.current_ms = float(c["time_ms"])
        ratio = verdict.ratio
        log_ratios.append(math.log(ratio))
        if not ratio_only:
            if ratio > 1 + limits.max_slowdown:
                verdict.problems.append(f"{ratio - 1:+.0%} time")
            if pd.notna(b["peak_mem_bytes"]) and pd.notna(c["peak_mem_bytes"]) and b["peak_mem_bytes"] > 0:
                growth = float(c["peak_mem_bytes"]) / float(b["peak_mem_bytes"]) - 1
                if growth > limits.max_mem_growth:
                    verdict.problems.append(f"{growth:+.0%} memory")
        if key in base_speedups and key in cur_speedups:
            drop = 1 - cur_speedups[key] / base_speedups[key]
            note = f"speed-up over {limits.baseline_variant} {base_speedups[key]:.2f}x -> {cur_speedups[key]:.2f}x"
            (verdict.problems if drop > limits.max_ratio_drop else verdict.notes).append(note)
        verdicts.append(verdict)

    geomean = math.exp(sum(log_ratios) / len(log_ratios)) if log_ratios else None
    problems = []
    if geomean is not None and not ratio_only and geomean > 1 + limits.max_geomean_slowdown:
        problems.append(f"geometric-mean slowdown {geomean - 1:+.1%} > {limits.max_geomean_slowdown:.0%}")
    return Report(verdicts, geomean, warnings, problems, current)


def markdown(report: Report) -> str:
    """The report as a GitHub step summary."""
    lines = ["## sqabench check: " + ("passed" if report.ok else "**regression**"), ""]
    lines += [f"> {w}" for w in report.warnings]
    lines += ["| cell | baseline ms | current ms | ratio | verdict |", "|---|---:|---:|---:|---|"]
    for v in report.cells:
        lines.append(
            f"| {v.cell} | {format_number(v.baseline_ms)} | {format_number(v.current_ms)} | {format_number(v.ratio, 3)} | {verdict_text(v)} |"
        )
    if report.geomean_ratio is not None:
        lines += ["", f"Geometric-mean time ratio: {report.geomean_ratio:.3f}"]
    lines += [f"**{p}**" for p in report.problems]
    return "\n".join(lines) + "\n"


def verdict_text(v: CellVerdict) -> str:
    return ("FAIL: " + "; ".join(v.problems)) if v.problems else "ok" + (f" ({'; '.join(v.notes)})" if v.notes else "")


def format_number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def benchmark_json(current: pd.DataFrame) -> list[dict]:
    """The current run in github-action-benchmark's ``customSmallerIsBetter`` format."""
    entries = []
    for _, row in current[current["status"] == "ok"].iterrows():
        spread = (float(row["time_ms_max"]) - float(row["time_ms_min"])) / 2
        entries.append(
            {
                "name": cell_name(row),
                "unit": "ms",
                "value": round(float(row["time_ms"]), 4),
                "range": f"± {spread:.4f}",
                "extra": f"gpu: {_text(row['gpu_name'], 'cpu')}; git: {_text(row['git_sha'], '-')}",
            }
        )
    return entries


def _text(value: object, missing: str) -> str:
    return missing if pd.isna(value) else str(value)
