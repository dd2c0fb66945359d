"""``--budget`` and ``--dry-run``: each variant's costs probed on its real model and data, the time the plan
will take at those costs, and the steps that fit a budget. Torch is loaded only to probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqabench.errors import ConfigError

PROBE_STEPS = 6  # the first is the run's own warm-up; the other five are timed


@dataclass(frozen=True)
class Probe:
    """One variant's costs, measured on a short run of its real model and data: seconds."""

    build_s: float  # the model, the held-out set, the first step's warm-up beyond a steady one
    step_s: float  # the median of the steps after the first
    eval_s: float
    step_low_s: float = 0.0  # the fastest and slowest of those steps: the probe's own spread
    step_high_s: float = 0.0

    @property
    def spread(self) -> float:
        return (self.step_high_s - self.step_low_s) / self.step_s if self.step_s > 0 else 0.0


def probe(plan, on_variant: Callable[[str], None] = lambda name: None) -> dict[str, Probe]:
    """Each variant's build, step and evaluation times from ``PROBE_STEPS`` steps and one evaluation at seed 0,
    after one untimed step of the first variant has warmed the process up (allocator, thread pools): the
    variant probed first would otherwise pay for it. The first step of each is left out of its step time. A
    variant that cannot be probed (out of memory, a failing kernel) is refused in one line, naming it: no
    estimate can be made of a run that cannot take a step."""
    import statistics

    from sqabench.failures import MEASURE_ERRORS, classify
    from sqabench.quality.train import train

    def probed(cfg, spec):
        try:
            return train(cfg, spec, 0)
        except MEASURE_ERRORS as error:
            failure = classify(error)
            raise ConfigError(
                f"the probe of {spec.name} failed ({failure.status}: {failure.error}): no estimate "
                "can be made; lower --batch or --seq, or leave it out of --variants"
            ) from None

    probed(replace(plan.cfg, steps=1, eval_every=1), plan.specs[0])  # the process's warm-up, not timed
    found = {}
    for spec in plan.specs:
        on_variant(spec.name)
        cfg = replace(plan.cfg, steps=PROBE_STEPS, eval_every=PROBE_STEPS)
        started = time.perf_counter()
        result = probed(cfg, spec)
        wall = time.perf_counter() - started
        steady = [ms / 1e3 for ms in result.steps_ms[1:]]
        step = statistics.median(steady)
        build = wall - len(result.steps_ms) * step - result.eval_s  # the first step's excess lands here
        found[spec.name] = Probe(max(0.0, build), step, result.eval_s, min(steady), max(steady))
    return found


def run_s(probe: Probe, steps: int, eval_every: int) -> float:
    """One run's seconds at the probed costs: its build, its steps, and its evaluations (every ``eval_every``
    steps and at the end)."""
    return probe.build_s + steps * probe.step_s + -(-steps // eval_every) * probe.eval_s


def estimate_s(plan, probes: dict[str, Probe], step: str = "median") -> float:
    """Seconds the plan's runs still to train will take at the probed costs (``step``: the median step, or the
    probe's fastest, ``low``, or slowest, ``high``)."""
    chosen = {name: p if step == "median" else replace(p, step_s=p.step_low_s if step == "low" else p.step_high_s)
              for name, p in probes.items()}  # fmt: skip
    return sum(run_s(chosen[spec.name], plan.config(spec).steps, plan.cfg.eval_every) for spec, _ in plan.runs())


def shares_s(plan, probes: dict[str, Probe], parts: int) -> list[float]:
    """Seconds each of ``parts`` shares of the plan's runs (``plan.share``, as ``--shard`` splits them) takes at
    the probed costs: on ``parts`` GPUs the longest sets the wall time."""
    from sqabench.quality.plan import share

    return [sum(run_s(probes[spec.name], plan.config(spec).steps, plan.cfg.eval_every) for spec, _ in part)
            for part in share(plan, parts)]  # fmt: skip


def fit_budget(plan, probes: dict[str, Probe], spent_s: float):
    """The plan with the baseline's steps set so that every run fits ``plan.budget_s`` less ``spent_s``; the
    variants' steps follow from it as ``--equal`` says."""
    left = plan.budget_s - spent_s
    per_thousand = plan.with_steps(1000).steps_by_variant  # each variant's steps per 1000 of the baseline's
    fixed = sum(probes[spec.name].build_s for spec, _ in plan.runs())
    per_base_step = sum(per_thousand[spec.name] / 1000 * (probes[spec.name].step_s + probes[spec.name].eval_s
                                                          / plan.cfg.eval_every)
                        for spec, _ in plan.runs())  # fmt: skip
    steps = int((left - fixed) // per_base_step) if per_base_step > 0 else 0
    while steps >= 1 and estimate_s(plan.with_steps(steps), probes) > left:  # evaluations come whole
        steps -= 1
    if steps < 1:
        need = fixed + per_base_step + spent_s
        raise ConfigError(f"--budget {plan.budget_s:.0f} s is too short: one step of every run needs about "
                          f"{need:.0f} s here; give a longer --budget or fewer --variants or --seeds")  # fmt: skip
    return plan.with_steps(steps)
