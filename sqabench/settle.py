"""When to stop timing: ``--repeats auto``'s rule. Time until the median's distribution-free 95% interval is
within a target of it, after a minimum of repeats and of time, capped by a maximum of both (nvbench stops on a
relative noise too; ``torch.utils.benchmark``'s ``adaptive_autorange`` on the median's spread). No torch at
import: the interval is also what ``report`` and ``check`` read from a row's samples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def median_noise(samples) -> float | None:
    """The half-width of the median's distribution-free 95% interval, relative to the median: the order
    statistics X(l) and X(n+1-l) with l the largest rank for which Binomial(n, 1/2) puts at most 2.5% below l
    (the sign test's interval, from scipy's binomial law). None under 6 samples: no such interval exists."""
    from scipy import stats

    n = len(samples)
    if n < 6:
        return None
    low = 1  # the interval's ranks (1-based): low .. n + 1 - low, each tail's chance P(Binomial <= low - 1)
    while stats.binom.cdf(low, n, 0.5) <= 0.025:
        low += 1
    ordered = sorted(samples)
    median = statistics.median(ordered)
    return (ordered[n - low] - ordered[low - 1]) / (2 * median) if median > 0 else 0.0


@dataclass(frozen=True)
class StopRule:
    """``--repeats auto``: time until the median's 95% interval is within ``target`` of it (``median_noise``),
    after ``min_repeats`` and ``min_s``; at most ``max_repeats`` or ``limit_s`` (then the cell stopped on its cap,
    and is flagged noisy)."""

    target: float
    min_repeats: int = 6
    min_s: float = 0.0
    max_repeats: int = 100
    limit_s: float = 10.0


def time_until_settled(step: Callable[[], object], device, rule: StopRule, per_repeat: int = 1,
                       before_each: Callable[[], object] | None = None, timer=None,
                       clock: Callable[[], float] = time.perf_counter) -> tuple[tuple[float, ...], str]:  # fmt: skip
    """Timed calls until ``rule`` stops them: (every call's milliseconds, ``"target"`` or ``"cap"``). A repeat is
    ``per_repeat`` calls (decode: a pass of T tokens), its sample their mean. The calls are timed in batches
    (``timer``, default ``time_repeats``): one repeat first, then up to the minimum, then as many as were timed so far (so the rule is
    checked often without a synchronization between every two repeats), never more than the time left before
    ``limit_s`` holds (a slow cell stops within a repeat of its limit)."""
    if timer is None:
        from sqabench.device import time_repeats as timer
    calls: list[float] = []
    start, batch = clock(), 1
    while True:
        calls += timer(step, device, batch * per_repeat, before_each)
        repeats = len(calls) // per_repeat
        samples = [sum(calls[i * per_repeat : (i + 1) * per_repeat]) / per_repeat for i in range(repeats)]
        spent, noise = clock() - start, median_noise(samples)
        if repeats >= rule.min_repeats and spent >= rule.min_s and noise is not None and noise <= rule.target:
            return tuple(calls), "target"
        if repeats >= rule.max_repeats or spent >= rule.limit_s:
            return tuple(calls), "cap"
        each = spent / repeats
        room = int((rule.limit_s - spent) / each) + 1 if each > 0 else rule.max_repeats
        batch = max(1, min(max(repeats, rule.min_repeats - repeats), rule.max_repeats - repeats, room))
