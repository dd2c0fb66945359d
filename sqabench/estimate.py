"""How long a sweep will take, before it starts: the cost model at a fraction of this device's ceilings.

Each cell costs its compilation (flex compiles one kernel per new shape) plus its calls: the
first, the warm-up, the timed repeats, a verification of one layer and, on a GPU whose timed
window is under a second, the energy window. A call takes the step's floor (``ceilings.floor``)
divided by ``ASSUMED_EFFICIENCY``: a rough guess, which the progress display's ETA corrects with
the ratio of measured to predicted time as cells finish.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqabench.cells import Cell
from sqabench.energy import MIN_ENERGY_WINDOW_S
from sqabench.flops import Rates, floor, step_cost

ASSUMED_EFFICIENCY = 0.4
COMPILE_S = {"cpu": 20.0, "cuda": 30.0}  # one flex kernel and its block mask, per new shape
LONG_S = 600.0  # a sweep longer than this is announced with a warning


@dataclass(frozen=True)
class Estimate:
    per_cell_s: list[float]

    @property
    def total_s(self) -> float:
        return sum(self.per_cell_s)

    @property
    def long(self) -> bool:
        return self.total_s > LONG_S


def _seconds(cost, rates: Rates) -> float:
    bound = floor(cost.flops, cost.exps, cost.min_bytes, rates)
    return bound.floor_ms / 1e3 / ASSUMED_EFFICIENCY if bound else 0.0


def estimate(cells: list[Cell], rates: Rates) -> Estimate:
    """Predicted seconds of each cell, in order; a flex shape seen before compiles no more."""
    compiled: set[tuple] = set()
    per_cell = []
    for cell in cells:
        bound = cell.floor(rates)  # the busiest rank's, when split: it sets the pace
        step_s = bound.floor_ms / 1e3 / ASSUMED_EFFICIENCY if bound else 0.0
        verify_s = step_s / cell.preset.n_layers  # one layer's attention and its fp64 reference
        calls = 1 + cell.warmup + cell.repeats
        seconds = calls * step_s + verify_s
        if cell.mode == "decode":  # calls are passes of T steps, after a prefill (twice: compile, timed)
            prefill = step_cost(cell.spec, cell.preset, cell.batch, cell.seq_len, True, "fwd", cell.dtype)
            seconds = calls * cell.new_tokens * step_s + 2 * _seconds(prefill, rates)
            step_s *= cell.new_tokens
        device = cell.device.split(":")[0]
        if device == "cuda" and step_s * cell.repeats < MIN_ENERGY_WINDOW_S:
            seconds += MIN_ENERGY_WINDOW_S
        shape = (cell.spec.n_q_heads, cell.spec.n_kv_heads, cell.spec.window, cell.seq_len, cell.batch,
                 cell.causal, cell.mode, cell.dtype, cell.preset.head_dim)  # fmt: skip
        if cell.uses_flex and shape not in compiled:
            compiled.add(shape)
            seconds += COMPILE_S.get(device, COMPILE_S["cuda"])
        per_cell.append(seconds)
    return Estimate(per_cell)
