"""Statistics over seeds for ``sqabench quality``: means, paired differences with a t interval, the minimum
detectable effect, and verdicts that never rank inside the noise. No torch, no scipy.

Seeds are the unit of replication: each seed fixes a model's initialisation and its data order, and is the
same for every variant, so two variants' runs at one seed are a pair. Their difference, over seeds, gets a
two-sided 95% Student t interval: mean +- t(0.975, n-1) sd / sqrt(n). A difference whose interval holds 0
is no detectable difference at this budget. The minimum detectable effect at 80% power is
(t(0.975, n-1) + t(0.80, n-1)) sd / sqrt(n): the smallest true difference these seeds would find four
times in five.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Student t quantiles by degrees of freedom 1..30 (standard tables); past 30 the normal's.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip
T_80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868,
        0.866, 0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855,
        0.854, 0.854)  # fmt: skip
Z_975, Z_80 = 1.960, 0.842


def t_quantile(table: tuple[float, ...], normal: float, df: int) -> float:
    if df < 1:
        raise ValueError("a t quantile needs at least one degree of freedom (two seeds)")
    return table[df - 1] if df <= len(table) else normal


@dataclass(frozen=True)
class Interval:
    """A mean over n seeds with its two-sided 95% interval (None for one seed: no uncertainty can be stated)."""

    mean: float
    n: int
    low: float | None = None
    high: float | None = None
    sd: float | None = None

    @property
    def spans_zero(self) -> bool:
        return self.low is None or self.low <= 0 <= self.high

    def text(self, digits: int = 3) -> str:
        if self.low is None:
            return f"{self.mean:+.{digits}f} (1 seed: no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` with its t interval."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, n)
    sd = statistics.stdev(values)
    half = t_quantile(T_975, Z_975, n - 1) * sd / math.sqrt(n)
    return Interval(mean, n, mean - half, mean + half, sd)


def paired(variant: Sequence[float], baseline: Sequence[float]) -> Interval:
    """The variant's difference from the baseline, seed by seed (the i-th of each is one seed), with its interval."""
    if len(variant) != len(baseline):
        raise ValueError(f"{len(variant)} seeds against {len(baseline)}: a paired difference needs the same seeds")
    return interval([v - b for v, b in zip(variant, baseline)])


def minimum_detectable(sd: float | None, n: int) -> float | None:
    """The smallest true difference n paired seeds with this spread of differences detect at 80% power, alpha 5%."""
    if sd is None or n < 2:
        return None
    df = n - 1
    return (t_quantile(T_975, Z_975, df) + t_quantile(T_80, Z_80, df)) * sd / math.sqrt(n)


def verdict(diff: Interval, higher_is_better: bool, what: str) -> str:
    """What a difference says, in words: worse, better, or no detectable difference; never a rank in the noise."""
    if diff.low is None:
        return f"one seed: no uncertainty can be stated ({what} {diff.mean:+.3g})"
    if diff.spans_zero:
        return "no detectable difference at this budget"
    better = (diff.mean > 0) == higher_is_better
    return f"{'better' if better else 'worse'}: {what} {diff.text()}"
