"""``sqabench quality``'s flow: the plan, a probe when a budget or a dry run asks for one, every (variant, seed)
trained with progress shown, each row written as it finishes, then the tables and the paper's claims.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

from rich.console import Console
from rich.text import Text

from sqabench.environment import Environment
from sqabench.errors import ConfigError
from sqabench.files import CsvWriter, RunLock
from sqabench.quality.options import QualityOptions
from sqabench.quality.plan import Plan, resolve_quality
from sqabench.quality.ranks import job
from sqabench.quality.rows import COLUMNS, CURVE_COLUMNS, run_row
from sqabench.units import format_duration, plural

INTERRUPTED = 130
NO_MACHINE_S = 30 * 86_400  # a plan estimated past this is refused: nothing would finish it


class Files:
    """Where a process's rows and curve points go: the run's two files (a torchrun rank other than 0 sends them
    to rank 0 instead: ``Messages``)."""

    def __init__(self, plan: Plan) -> None:
        self.rows, self.curves = CsvWriter(plan.path, COLUMNS), CsvWriter(plan.curves_path, CURVE_COLUMNS)

    def row(self, row: dict) -> None:
        self.rows.write(row)

    def curve(self, point: dict) -> None:
        self.curves.write(point)


class Messages:
    """A torchrun rank's rows, curve points and progress, sent to rank 0 (``ranks.Job.send``)."""

    def __init__(self, job) -> None:
        self.job = job

    def row(self, row: dict) -> None:
        self.job.send({"kind": "row", "row": row})

    def curve(self, point: dict) -> None:
        self.job.send({"kind": "curve", "point": point})


def train_runs(plan: Plan, env: Environment, on_start: Callable[[str, int], None] = lambda label, steps: None,
               on_eval: Callable[[str, dict], None] = lambda label, row: None,
               on_row: Callable[[dict], None] = lambda row: None,
               on_step: Callable[[int], None] = lambda step: None, sink=None) -> list[dict]:  # fmt: skip
    """Train every (variant, seed) still to train, seed-major, and write each row as it finishes (to ``sink``,
    default the plan's files); an out-of-memory or failed run is a row of its own (``oom`` / ``error``) and the
    next goes on, but for a CUDA error that leaves the GPU unusable: its row is written, then ``Stopped``.
    Returns every row, kept ones too."""
    from sqabench.failures import MEASURE_ERRORS, classify
    from sqabench.quality.train import train

    plan = plan if plan.run_id else replace(plan, run_id=uuid.uuid4().hex[:12])
    sink = sink or Files(plan)
    rows = list(plan.kept.values())
    for spec, seed in plan.runs():
        label, cfg = f"{spec.name} seed {seed}", plan.config(spec)
        on_start(label, cfg.steps)

        def heard(point: dict, spec=spec, seed=seed, label=label) -> None:
            sink.curve({"run_id": plan.run_id, "variant": spec.name, "seed": seed, **point})
            on_eval(label, point)

        checkpoint = plan.checkpoint(spec, seed)
        try:
            result = train(cfg, spec, seed, on_eval=heard, on_step=on_step, checkpoint=checkpoint)
            row = run_row(plan, env, spec, seed, cfg, result)
        except MEASURE_ERRORS as error:
            failure = classify(error)
            row = run_row(plan, env, spec, seed, cfg, None, failure.error, failure.status)
            if failure.sticky:
                sink.row(row)
                on_row(row)
                raise Stopped(f"{label}: {failure.error}; a sticky CUDA error fails every later run") from None
        sink.row(row)
        checkpoint.path.unlink(missing_ok=True)
        rows.append(row)
        on_row(row)
    if plan.checkpoints.is_dir() and not any(plan.checkpoints.iterdir()):
        plan.checkpoints.rmdir()
    return rows


class Stopped(RuntimeError):
    """A run left the GPU unusable (a sticky CUDA error): its row is written; the rest need a new process."""


@dataclass(frozen=True)
class Trained:
    """What a finished ``sqabench quality`` leaves: its plan and every row of its file."""

    plan: Plan
    rows: list[dict]


class Interrupted(Exception):
    """Training ended early, and what is kept has been said: Ctrl-C (``code`` 130) or a sticky CUDA error (1)."""

    def __init__(self, code: int = INTERRUPTED) -> None:
        super().__init__(code)
        self.code = code


def run_quality(options: QualityOptions, out: Console, err: Console) -> Trained | None:
    """``sqabench quality``: resolve, probe when asked, train with progress, print the tables and the claims.
    Returns what was trained, or None after a dry run. ``ConfigError`` on bad input (nothing written);
    ``Interrupted`` on Ctrl-C, after saying what was kept."""
    from sqabench.quality.budget import estimate_s, fit_budget
    from sqabench.quality.report import print_tables
    from sqabench.quality.resume import resume

    def say(message: str, style: str = "") -> None:
        err.print(Text(message, style=style), highlight=False)

    started = time.monotonic()
    plan, env = resolve_quality(options)
    ranked = job()
    if ranked is not None and not options.dry_run:
        return _run_job(plan, env, options, out, err, say)
    if ranked is not None and ranked[0] != 0:  # a dry run under torchrun: rank 0 plans it
        return None
    gpus = options.gpus or (ranked[1] if ranked else None)
    # One writer per file: a second run on it is refused before it touches anything. A dry run writes nothing.
    with nullcontext() if options.dry_run else RunLock(plan.path):
        if options.resume:
            plan = resume(plan, rewrite=not options.dry_run, say=say)
        planning = plan.budget_s is not None or options.dry_run
        if options.pilot is not None and not planning:
            raise ConfigError("--pilot applies with --dry-run or --budget (which state what the seeds can detect)")
        detectable = detectable_line(plan, options.pilot) if planning else None  # a bad --pilot: before the probe
        probes = _probe(plan, say) if planning else None
        if plan.budget_s is not None:
            plan = fit_budget(plan, probes, time.monotonic() - started)
        if probes is not None and estimate_s(plan, probes) > NO_MACHINE_S:
            raise ConfigError(f"this plan is estimated at {format_duration(estimate_s(plan, probes))} here: no machine "
                              "would finish it; give fewer --steps (or --tokens), --seeds or --variants, or a "
                              "--budget")  # fmt: skip
        if options.gpus is not None and not planning:
            raise ConfigError("--gpus applies with --dry-run or --budget (it plans the wall time from a probe)")
        _announce(plan, env, say, out, options.dry_run, probes)
        if gpus is not None:
            say(_gpus_line(plan, probes, gpus))
        if detectable is not None:
            say(detectable)
        if options.dry_run:
            say("dry run: nothing trained, nothing written")
            return None
        rows = _train(plan, env, err, say, options.checkpoint_every)
    print_tables(rows, plan.baseline, out, plan.also, plan.margin, plan.confirm)
    if plan.shard is not None:
        out.print(Text(f"shard {plan.shard[0]}/{plan.shard[1]}: these tables are this share's runs only; `sqabench "
                       "report` on every shard's file reads them as one run"), highlight=False)  # fmt: skip
    out.print(Text(f"results: {plan.path} (curves: {plan.curves_path})"), highlight=False)
    return Trained(plan, rows)


def _run_job(plan: Plan, env: Environment, options: QualityOptions, out: Console, err: Console, say):
    """``sqabench quality`` as one rank of a torchrun job (``quality.ranks``): each rank trains its share of the
    runs; rank 0 resumes, writes every rank's rows and curves as they arrive, shows the progress and prints the
    tables. The others send theirs and print nothing but errors."""
    import torch

    from sqabench.quality.ranks import Job
    from sqabench.quality.report import print_tables
    from sqabench.quality.resume import resume

    if plan.budget_s is not None:
        raise ConfigError("a torchrun job's ranks must train the same steps, but a budget would size each rank's "
                          "own: give --steps or --tokens (a --dry-run under torchrun says what fits)")  # fmt: skip
    if plan.shard is not None:
        raise ConfigError("--shard and a torchrun job each split the runs: use one of them")
    work = Job(torch.device(plan.cfg.device).type)
    plan = replace(plan, shard=(work.rank + 1, work.world))
    if work.rank:
        shared = work.share(None)
        if "error" in shared:
            work.close()
            raise ConfigError(shared["error"])
        plan = replace(plan, kept={(v, int(s)): row for v, s, row in shared["kept"]}, run_id=shared["run_id"])
        try:
            train_runs(plan, env, sink=Messages(work),
                       on_start=lambda label, steps: work.send({"kind": "start", "label": label, "steps": steps}),
                       on_eval=lambda label, point: work.send({"kind": "eval", "label": label, "point": point}))  # fmt: skip
        except Stopped as stop:
            work.send({"kind": "stopped", "why": str(stop)})
            work.close()
            raise Interrupted(1) from None
        work.close()
        return None
    with RunLock(plan.path):
        try:
            plan = resume(plan, say=say) if options.resume else plan
        except ConfigError as error:
            work.share({"error": str(error)})
            raise
        plan = plan if plan.run_id else replace(plan, run_id=uuid.uuid4().hex[:12])
        work.share({"kept": [[v, s, row] for (v, s), row in plan.kept.items()], "run_id": plan.run_id})
        _announce(replace(plan, shard=None), env, say, out, False, None)
        say(f"a torchrun job of {work.world} ranks: each trains its share of the runs; rank 0 writes them all")
        rows = _train_job(plan, env, err, say, options.checkpoint_every, work)
    work.close()
    print_tables(rows, plan.baseline, out, plan.also, plan.margin, plan.confirm)
    out.print(Text(f"results: {plan.path} (curves: {plan.curves_path})"), highlight=False)
    return Trained(plan, rows)


def _train_job(plan: Plan, env: Environment, err: Console, say, checkpoint_every: float, work) -> list[dict]:
    """Rank 0's part: its own share trained with progress, every other rank's rows and points written as they
    come (between its own steps, then until every rank is done); ``Interrupted`` after saying what is kept."""
    from sqabench.quality.progress import QualityDisplay

    every = replace(plan, shard=None).runs()
    display = QualityDisplay(err, sum(plan.config(spec).steps for spec, _ in every),
                             pads_scored=bool(getattr(plan.cfg.task, "pad_like_paper", False)))  # fmt: skip
    files, finished, stopped = Files(plan), [], []
    inbox = work.listen()

    def heard(row: dict) -> None:
        finished.append(row)
        display.finished(row, len(finished), len(every))

    def handle(rank: int, message: dict) -> None:
        kind = message["kind"]
        if kind == "row":
            files.row(message["row"])
            heard(message["row"])
        elif kind == "curve":
            files.curve(message["point"])
        elif kind == "start":
            display.remote_start(rank, message["label"], message["steps"])
        elif kind == "eval":
            display.remote_evaluated(rank, message["label"], message["point"])
        elif kind == "stopped":
            stopped.append(f"rank {rank} stopped after {message['why']}")

    def step(n: int) -> None:
        display.step(n)
        inbox.drain(handle)

    try:
        with display:
            train_runs(plan, env, on_start=display.start, on_eval=lambda label, point: display.evaluated(point),
                       on_row=heard, on_step=step, sink=files)  # fmt: skip
            inbox.drain(handle, wait=True)
    except KeyboardInterrupt:
        ok = sum(row["status"] == "ok" for row in finished)
        say(f"interrupted: {plural(ok, 'finished run')} kept in {plan.path}; continue with the same torchrun command "
            f"and --resume --out {plan.path}", "yellow")  # fmt: skip
        raise Interrupted(INTERRUPTED) from None
    except Stopped as stop:
        say(f"stopped after {stop}; its rows and every other rank's are kept in {plan.path}; continue in a new job "
            f"with --resume --out {plan.path}", "bold red")  # fmt: skip
        raise Interrupted(1) from None
    for line in stopped:
        say(f"{line}; continue in a new job with --resume --out {plan.path}", "bold red")
    return list(plan.kept.values()) + finished


def _gpus_line(plan: Plan, probes, gpus: int) -> str:
    """The plan on ``gpus`` GPUs like the one probed: its GPU-hours and its wall time (the longest share)."""
    from sqabench.quality.budget import shares_s

    parts = shares_s(plan, probes, gpus)
    runs = len(plan.runs())
    what = "GPU" if plan.cfg.device.startswith("cuda") else "machine"
    return (f"on {plural(gpus, what)} like this one: {plural(runs, 'run')}, {sum(parts) / 3600:.3g} GPU-hours, wall "
            f"time about {format_duration(max(parts))} (the longest of {gpus} shares, as --shard K/{gpus} splits them; "
            "a torchrun job or a Slurm array of that many)")  # fmt: skip


def _probe(plan: Plan, say):
    """Each variant's step and evaluation, probed; once the first is done, how long the whole probe will take
    is said (it trains a few steps of every variant: minutes at the paper's scale)."""
    import time

    from sqabench.quality.budget import PROBE_STEPS, probe

    count = len(plan.specs)
    say(f"probing each variant's step and evaluation ({plural(count, 'variant')}, {PROBE_STEPS} steps and an "
        "evaluation each) ...")  # fmt: skip
    started: list[float] = []

    def heard(name: str) -> None:
        started.append(time.perf_counter())
        if len(started) == 2:
            each = started[1] - started[0]
            say(f"  the probe: about {format_duration(each)} a variant, {format_duration(each * (count - 1))} more",
                "dim")  # fmt: skip
        say(f"  probing {name} ...", "dim")

    return probe(plan, on_variant=heard)


def _announce(plan: Plan, env: Environment, say, out: Console, dry_run: bool, probes) -> None:
    """What is about to be trained: the setting, the plan's table, and with a probe the estimate."""
    from sqabench.quality.budget import estimate_s
    from sqabench.quality.tables import quality_plan

    runs = plan.runs()
    say(f"sqabench quality on {env.gpu_name or 'CPU'}: {plan.cfg.task.title()}; model {plan.cfg.preset.name}; "
        f"{plural(len(plan.specs), 'variant')} x {plural(len(plan.seeds), 'seed')}, {plural(len(runs), 'run')} to "
        f"train, equal {plan.equal}"
        + ("" if dry_run else f"; writing {plan.path}"))  # fmt: skip
    out.print(quality_plan(plan, probes))
    if probes is not None:
        low, high = estimate_s(plan, probes, "low"), estimate_s(plan, probes, "high")
        say(f"estimate: {format_duration(estimate_s(plan, probes))} for the runs ({format_duration(low)} to "
            f"{format_duration(high)} at the probe's fastest and slowest steps)"
            + ("" if plan.budget_s is None else f"; budget {format_duration(plan.budget_s)}"))  # fmt: skip


def _train(plan: Plan, env: Environment, err: Console, say, checkpoint_every: float) -> list[dict]:
    """Every run still to train, with progress; ``Interrupted`` after saying what is kept."""
    from sqabench.quality.progress import QualityDisplay

    runs = plan.runs()
    finished: list[dict] = []
    display = QualityDisplay(
        err,
        sum(plan.config(spec).steps for spec, _ in runs),
        pads_scored=bool(getattr(plan.cfg.task, "pad_like_paper", False)),
    )

    def heard(row: dict) -> None:
        finished.append(row)
        display.finished(row, len(finished), len(runs))

    def kept() -> str:
        ok = [row for row in finished if row["status"] == "ok"]
        return f"{plural(len(ok), 'finished run')} kept in {plan.path}" if ok else "no run finished"

    try:
        with display:
            return train_runs(plan, env, on_start=display.start, on_eval=lambda label, point: display.evaluated(point),
                              on_row=heard, on_step=display.step)  # fmt: skip
    except KeyboardInterrupt:
        say(f"interrupted: {kept()}; a running run keeps its last checkpoint (every {checkpoint_every:g} min) in "
            f"{plan.checkpoints}; continue with --resume --out {plan.path}", "yellow")  # fmt: skip
        raise Interrupted(INTERRUPTED) from None
    except Stopped as stop:
        say(f"stopped after {stop}; {kept()}; continue in a new process with --resume --out {plan.path}", "bold red")
        raise Interrupted(1) from None


def detectable_line(plan: Plan, pilot: str | None) -> str:
    """What the planned seeds can detect: each comparison against the baseline on its own paired differences, the
    run's family (every difference and claim it will print, Bonferroni's level for Holm's first step), 80% power:
    in units of the noise of one seed's difference, and with a pilot CSV of this setting in the metric's units,
    pair by pair, with the seeds each closeness claim's margin needs."""
    from pathlib import Path

    from sqabench.quality.rows import read_any
    from sqabench.quality.stats import FEW_SEEDS, paired, planned_mde, seeds_for_margin
    from sqabench.quality.summary import CLAIMS, METRICS, finished_runs, margin_for, metric_of, seed_table

    names = [spec.name for spec in plan.specs]
    seeds = len(plan.seeds)
    claims = [c for c in CLAIMS if {c[0], c[1]} <= set(names)]
    family = len(names) - 1 + len(claims) + (len(names) - 2) * len(plan.also)
    factor = planned_mde(seeds, max(1, family))
    if factor is None:
        return f"detectable: nothing, with {plural(seeds, 'seed')}: no noise can be estimated"
    metric = METRICS[plan.cfg.task.name]
    said = (f"detectable at 80% power with {seeds} seeds, in a family of {plural(family, 'verdict')} (each pair's own "
            f"noise, paired t on {seeds - 1} df, Holm): {factor:.2f} x the sd of one seed's paired difference")  # fmt: skip
    if seeds < FEW_SEEDS:
        said += f"; with fewer than {FEW_SEEDS} seeds the verdicts are exploratory"
    if pilot is None:
        return said + "; --pilot FILE (a finished run of this setting) says it in " + metric.what + " pair by pair"
    rows = [row for row in read_any(Path(pilot))[0] if row["status"] == "ok"]
    if not rows or metric_of(rows).column != metric.column:
        raise ConfigError(f"--pilot {pilot}: no finished {plan.cfg.task.name} runs to take the noise from")
    table = seed_table(finished_runs(rows), metric.column)
    found = []
    for name in names:
        differences = paired(table, name, plan.baseline)[0] if name != plan.baseline else []
        if len(differences) >= 2 and statistics.stdev(differences) > 0:
            found.append(f"{name} {factor * statistics.stdev(differences):.3g}")
    if not found:
        raise ConfigError(f"--pilot {pilot}: its noise needs the baseline and another variant with two seeds or more")
    said += f"; from --pilot {pilot}, in {metric.what} against {plan.baseline}: " + ", ".join(found)
    for variant, against, text, kind in claims:
        differences = paired(table, variant, against)[0]
        if len(differences) < 2 or statistics.stdev(differences) <= 0:
            continue
        margin, _ = margin_for(metric, table, against, plan.margin)
        needed = seeds_for_margin(statistics.stdev(differences), margin, family)
        said += (f"; {text} within +-{margin:.3g}: " + (f"about {needed} seeds for 80% power" if needed else
                                                        "more than 1000 seeds"))  # fmt: skip
    return said
