"""How long a sweep will take, before it starts, in parts a user can read (``sqabench run --dry-run``).

A cell costs:

- ``steps``: its timed calls (the first, the warm-up, the repeats; decode: passes of T steps and two
  prefills), each at the step's floor (``Cell.floor``) divided by ``ASSUMED_EFFICIENCY``;
- ``compile``: flex compiles one kernel per new shape and one block mask per new (length, window,
  mask); ``--compile`` compiles each cell's whole model anew (and again at the fp64 check's shape);
  ``--cp`` compiles each cell's split model on every rank at once; the first compile in a process
  also starts the compiler. A cell flex will refuse (train on a CPU: no backward there) compiles
  nothing. Costs per device, measured on a CPU (torch 2.13, 2 cores) with a cold and a warm
  inductor cache; the GPU's are guesses until a GPU run measures them (every row records its
  ``compile_ms``). A ``--cp`` job counts the launcher's start as time spent before the first cell;
- ``overhead``: building the model, the fp64 verification, freeing memory;
- ``energy``: on a GPU, a timed window under a second is extended to one second for NVML's counter.

The progress display's ETA corrects the estimate as cells finish, with the ratio of measured to
predicted time. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqabench.flops import Floor, Rates, floor, step_cost
from sqabench.speed.cells import BEST_BRIEF, Cell, stop_rule
from sqabench.speed.energy import MIN_ENERGY_WINDOW_S

ASSUMED_EFFICIENCY = 0.4
LONG_S = 600.0  # a sweep longer than this is announced with a warning
CONFIRM_S = 3600.0  # past this, a run asks (or needs --budget / --yes)
PARTS = ("steps", "compile", "overhead", "energy")


@dataclass(frozen=True)
class CompileCost:
    """Seconds: the compiler's start at the first compile in a process, each new flex kernel, each new block
    mask; a ``--compile`` cell's whole-model compiles (its shape's, and the fp64 check's at another shape);
    a ``--cp`` cell's split model on every rank (flex with the rank's mask, and its verification)."""

    first: float
    kernel: float
    block_mask: float
    model: float
    split: float


COMPILE = {  # (device, inductor cache warm)
    # measured, torch 2.13, 2 cores: flex from the default sweep; model and split from `--compile` and `--cp 2`
    # runs of mha,sqa (sqa,gqa) at 256 and 1k (256 and 512), cold and then warm (docs/run.md: the estimate)
    ("cpu", False): CompileCost(first=25.0, kernel=4.5, block_mask=3.0, model=41.0, split=18.0),
    ("cpu", True): CompileCost(first=5.0, kernel=0.5, block_mask=0.3, model=7.5, split=6.5),
    ("cuda", False): CompileCost(first=15.0, kernel=8.0, block_mask=2.0, model=40.0, split=12.0),  # guesses
    ("cuda", True): CompileCost(first=3.0, kernel=1.0, block_mask=0.3, model=5.0, split=2.0),
}
OVERHEAD_S = {"cpu": 0.15, "cuda": 0.5}  # build, verify, free: measured on the CPU, guessed on a GPU


@dataclass(frozen=True)
class Estimate:
    per_cell: list[dict[str, float]]  # each cell's seconds by part
    already_s: float = 0.0  # spent before the first cell: start-up, ceilings
    notes: list[str] = field(default_factory=list)

    @property
    def per_cell_s(self) -> list[float]:
        return [sum(parts.values()) for parts in self.per_cell]

    @property
    def parts_s(self) -> dict[str, float]:
        return {part: sum(cell.get(part, 0.0) for cell in self.per_cell) for part in PARTS}

    @property
    def cells_s(self) -> float:
        return sum(self.per_cell_s)

    @property
    def total_s(self) -> float:
        return self.already_s + self.cells_s

    @property
    def long(self) -> bool:
        return self.cells_s > LONG_S


def _seconds(bound: Floor | None) -> float:
    """A call's predicted seconds: its floor at the assumed efficiency (0 without a floor)."""
    return bound.floor_ms / 1e3 / ASSUMED_EFFICIENCY if bound else 0.0


def flex_shape(cell: Cell) -> str:
    """What one compiled flex kernel serves: a cell's heads, window, length, batch, mask, mode, dtype, head size
    (and, for a whole compiled model or a split one, its compile mode and ranks)."""
    s = cell.spec
    parts = (s.n_q_heads, s.n_kv_heads, s.window, cell.seq_len, cell.batch, cell.settings.causal, cell.settings.mode, cell.settings.dtype,
             cell.preset.head_dim, cell.settings.scope, cell.settings.device)  # fmt: skip
    extra = (f"compile {cell.settings.compile}",) if cell.settings.compile else ()
    extra += (f"ranks {cell.settings.world_size}",) if cell.settings.world_size > 1 else ()
    if extra:
        parts += (cell.preset.name, cell.preset.n_layers, *extra)
    return "|".join(map(str, parts))


def expected_repeats(cell: Cell, call_s: float) -> int:
    """The repeats a cell will time: ``--repeats N``'s N; under auto, the rule's minimum of repeats and of time
    (a quiet timer settles there), never past its maximum, and a slow cell as many as its time limit holds
    (``settle.time_until_settled`` stops within a repeat of it; a decode repeat is a pass of T)."""
    if cell.settings.repeats:
        return cell.settings.repeats
    rule = stop_rule(cell.settings)
    repeat_s = call_s * (cell.settings.new_tokens if cell.settings.mode == "decode" else 1)
    if repeat_s <= 0:
        return rule.min_repeats
    within = max(1, math.ceil(rule.limit_s / repeat_s))
    return min(max(rule.min_repeats, math.ceil(rule.min_s / repeat_s)), rule.max_repeats, within)


def estimate(
    cells: list[Cell], rates: Rates, compiled_before: frozenset[str] = frozenset(), already_s: float = 0.0
) -> Estimate:
    """Predicted seconds of each cell by part, in order; a flex shape or block mask seen before in this run
    compiles no more, and one that an earlier run compiled (``compiled_before``: its ``flex_shape``, with
    inductor's on-disk cache still there) comes from that cache, far cheaper."""
    kernels: set[str] = set()
    masks: set[tuple] = set()
    started = False  # the compiler's start is paid once a process
    per_cell = []
    for cell in cells:
        device = cell.settings.device.split(":")[0]
        bound = cell.floor(rates)  # the busiest rank's, when split: it sets the pace
        call_s = _seconds(bound)
        repeats = expected_repeats(cell, call_s)
        calls = 1 + cell.settings.warmup + repeats
        if cell.uses_flex and cell.flex_skipped and cell.settings.kernel != "best":
            per_cell.append({"steps": 0.0, "compile": 0.0, "overhead": OVERHEAD_S.get(device, OVERHEAD_S["cuda"])})
            continue  # flex refuses it at once: nothing compiles, nothing is timed
        candidates = [k for k in cell.best_candidates if not (k == "flex" and cell.flex_skipped)]
        tries = len(candidates) if cell.settings.kernel == "best" else 0  # each timed briefly first
        brief = 1 + BEST_BRIEF["warmup"] + BEST_BRIEF["repeats"]  # a candidate's first call, warm-up, repeats
        calls += tries * brief + (1 if cell.settings.breakdown else 0)  # (and --breakdown's profiled step)
        parts = {"steps": calls * call_s, "compile": 0.0,
                 "overhead": (1 + tries) * OVERHEAD_S.get(device, OVERHEAD_S["cuda"])}  # fmt: skip
        timed_s = repeats * call_s
        if cell.settings.mode == "decode":  # calls are passes of T steps, after a prefill (twice: compile, timed)
            prefill = step_cost(cell.spec, cell.preset, cell.batch, cell.seq_len, True, "fwd", cell.settings.dtype)
            prefill_s = _seconds(floor(prefill.flops, prefill.exps, prefill.min_bytes, rates))
            parts["steps"] = calls * cell.settings.new_tokens * call_s + 2 * prefill_s
            timed_s *= cell.settings.new_tokens
        if device == "cuda" and timed_s < MIN_ENERGY_WINDOW_S:
            parts["energy"] = MIN_ENERGY_WINDOW_S
        flex = cell.uses_flex and not cell.flex_skipped  # (a skipped flex candidate of --kernel best compiles nothing)
        compiles = flex or bool(cell.settings.compile) or cell.settings.world_size > 1
        if compiles:
            shape = flex_shape(cell)
            warm = shape in compiled_before
            cost = COMPILE.get((device, warm), COMPILE[("cuda", warm)])
            backward = 2 if cell.settings.mode == "train" else 1  # train compiles the backward too
            if not started:
                started = True
                parts["compile"] += COMPILE.get((device, bool(compiled_before)), cost).first
            if cell.settings.world_size > 1:  # every rank compiles its split model at once: one cell's worth
                parts["compile"] += cost.split
            elif cell.settings.compile:
                parts["compile"] += cost.model * backward  # a new model every cell: compiled anew
            elif shape not in kernels:
                kernels.add(shape)
                parts["compile"] += cost.kernel * backward
            mask = (cell.seq_len, cell.spec.window, cell.settings.causal)
            if flex and mask not in masks and (cell.spec.window is not None or cell.settings.causal or device == "cpu"):
                masks.add(mask)
                parts["compile"] += cost.block_mask
        per_cell.append(parts)
    notes = [f"{len(kernels)} flex kernels and {len(masks)} block masks to compile"] if kernels else []
    return Estimate(per_cell, already_s, notes)


class Pace:
    """How the finished cells compared with their predictions: the ratio scales what is left.

    The progress display's ETA and ``--budget`` both read it.
    """

    def __init__(self, predicted_s: list[float] | None = None) -> None:
        self.predicted = list(predicted_s or [])
        self.count = 0  # cells finished
        self.done_predicted = 0.0
        self.done_actual = 0.0

    @property
    def scale(self) -> float:
        return self.done_actual / self.done_predicted if self.done_predicted > 0 else 1.0

    def finished(self, actual_s: float) -> None:
        if self.count < len(self.predicted):
            self.done_predicted += self.predicted[self.count]
            self.done_actual += actual_s
        self.count += 1

    def next_s(self) -> float:
        """The next cell's prediction, scaled."""
        return self.predicted[self.count] * self.scale if self.count < len(self.predicted) else 0.0

    def remaining_s(self, in_cell_s: float = 0.0) -> float:
        """What is left: the cells not finished, scaled, less ``in_cell_s`` already spent in the running one.

        A running cell past its (scaled) prediction says the pace is slower than thought: the scale then
        counts it as if it finished now, so the ETA grows with it instead of standing still.
        """
        if self.count >= len(self.predicted):
            return 0.0
        current, scale = self.predicted[self.count], self.scale
        if in_cell_s > current * scale:
            scale = (self.done_actual + in_cell_s) / (self.done_predicted + current) if current > 0 else scale
        rest = sum(self.predicted[self.count + 1 :]) * scale
        return max(current * scale - in_cell_s, 0.0) + rest

    def skipped(self) -> None:
        """A cell left out (its prediction no longer counts)."""
        if self.count < len(self.predicted):
            del self.predicted[self.count]


HEADLINE = ("mha", "sqa", "xsqa", "swa")  # what a short budget measures first


def by_value(cells: list[Cell]) -> list[Cell]:
    """The most valuable cells first: the longest lengths of mha, sqa, xsqa and the windowed baseline, then
    the other variants, longest first (the registry's order within a length)."""

    def value(cell: Cell) -> tuple:
        name = cell.spec.name
        headline = name in HEADLINE
        return (not headline, -cell.seq_len, HEADLINE.index(name) if headline else 0)

    return sorted(cells, key=value)
