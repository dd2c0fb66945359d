"""Where a step's time goes (``sqabench run --breakdown``): one more step, after the timed repeats, under
``torch.profiler``, its time summed by category.

- ``attention``: the attention kernel or kernels, whichever backend ran;
- ``matmul``: the projections, the feed-forward, the output head;
- ``other``: every other kernel (norms, RoPE, activations, copies);
- ``idle``: the step's wall time less the time any kernel ran (launches, Python, synchronisation).

On a GPU a kernel is a CUDA kernel (its device time; ``idle`` is the wall time less the union of their
intervals). On a CPU a kernel is an operator's own time (its self CPU time). Which category a kernel
belongs to is decided by one table, ``RULES``: first sqabench's own profiler range around every
attention kernel module (``ATTENTION_RANGE``), then the operators it was launched from, then its
name. The rules are tested against the operator names real traces produce (``tests/fixtures``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from sqabench.device import synchronize
from sqabench.kernels import ATTENTION_RANGE

CATEGORIES = ("attention", "matmul", "other", "idle")
# (category, what is matched, pattern): the first rule that matches a kernel decides; no match is "other".
# "op": the kernel's own operator or any operator it runs inside (on a GPU: the one that launched it);
# "kernel": a GPU kernel's own name, for kernels no operator names (a compiled region's).
RULES: tuple[tuple[str, str, str], ...] = (
    ("attention", "op", rf"^{re.escape(ATTENTION_RANGE)}$"),
    ("attention", "op", r"scaled_dot_product|flash_attention|efficient_attention|cudnn_attention|flex_attention"),
    ("attention", "kernel", r"flash|fmha|sdpa|attention|flex|triton_tem_fused"),
    ("matmul", "op", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_scaled_mm|addmv|mv)$"),
    ("matmul", "kernel", r"gemm|nvjet|cutlass|cublas|xmma|wgmma|s\d+gemm"),
)
_COMPILED = [(category, where, re.compile(pattern, re.IGNORECASE)) for category, where, pattern in RULES]


def category(ops: Iterable[str], kernel: str = "") -> str:
    """The category of a kernel: ``ops`` are the operators it runs inside, innermost first."""
    ops = list(ops)
    for name, where, pattern in _COMPILED:
        if where == "op" and any(pattern.search(op) for op in ops):
            return name
        if where == "kernel" and kernel and pattern.search(kernel):
            return name
    return "other"


@dataclass(frozen=True)
class Breakdown:
    """Milliseconds of one profiled step by category; they add up to ``wall_ms``."""

    attention_ms: float
    matmul_ms: float
    other_ms: float
    idle_ms: float
    note: str = ""  # e.g. a trace that could not be written: the breakdown itself still counts

    @property
    def wall_ms(self) -> float:
        return self.attention_ms + self.matmul_ms + self.other_ms + self.idle_ms

    @property
    def attention_share(self) -> float:
        return self.attention_ms / self.wall_ms if self.wall_ms > 0 else 0.0

    def columns(self) -> dict[str, float]:
        return {"attention_ms": self.attention_ms, "matmul_ms": self.matmul_ms, "other_ms": self.other_ms,
                "idle_ms": self.idle_ms, "attention_share": self.attention_share}  # fmt: skip


def _ancestry(event) -> list[str]:
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    return names


def _union_ms(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of (start, end) intervals in microseconds, in milliseconds."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total / 1e3


def summarise(events, wall_ms: float, device: torch.device) -> Breakdown:
    """A breakdown from a profile's events and the step's wall time."""
    from torch.autograd import DeviceType

    sums = dict.fromkeys(CATEGORIES[:3], 0.0)
    if device.type == "cuda":
        for event in events:
            if event.device_type == DeviceType.CPU and event.kernels:
                ops = _ancestry(event)
                for kernel in event.kernels:
                    sums[category(ops, kernel.name)] += kernel.duration / 1e3
        busy = _union_ms([(e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA])
    else:
        for event in events:
            if event.device_type == DeviceType.CPU and not event.is_async:
                sums[category(_ancestry(event))] += event.self_cpu_time_total / 1e3
        busy = sum(sums.values())
    busy = min(busy, wall_ms)  # kernels cannot outlast the step: clip rounding
    total = sum(sums.values())
    # The categories share the busy time in proportion to their kernels' own: kernels that overlap (two
    # streams) are not counted twice, and the step's gaps stay idle.
    scale = busy / total if total > 0 else 0.0
    parts = {name: value * scale for name, value in sums.items()}
    return Breakdown(parts["attention"], parts["matmul"], parts["other"], wall_ms - busy)


def _activities(device: torch.device):
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


KINETO_CHATTER = ("USDT:", "STAGE:")  # what the profiler's C++ backend prints at each start and stop


@contextmanager
def kineto_quiet() -> Iterator[None]:
    """Keep the profiler backend's own lines (``USDT: ... profiler_start``) off stderr: they are written by
    C++ to file descriptor 2, so it is pointed at a file for the call, and every other line is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not line.startswith(
                tuple(word.encode() for word in KINETO_CHATTER))]  # fmt: skip
            if kept:
                os.write(2, b"".join(kept))


def start_profiler(device: torch.device) -> None:
    """Initialise the profiler in this (the main) thread: a sweep profiles from its worker thread, and the
    profiler's backend registers itself in the first thread that uses it ("External init callback must run
    in same thread as registerClient")."""
    from torch.profiler import profile

    prof = profile(activities=_activities(device))
    with kineto_quiet():
        prof.start()
        prof.stop()


def profile_step(step: Callable[[], object], device: torch.device, trace: Path | None = None) -> Breakdown:
    """Run ``step`` once under the profiler (already warm: after the timed repeats) and sum its time."""
    from torch.profiler import profile

    synchronize(device)
    prof = profile(activities=_activities(device))
    with kineto_quiet():  # the start and the stop only: the step itself runs with stderr as it is
        prof.start()
    try:
        start = time.perf_counter()
        step()
        synchronize(device)
        wall_ms = (time.perf_counter() - start) * 1e3
    finally:
        with kineto_quiet():
            prof.stop()
    breakdown = summarise(prof.events(), wall_ms, device)
    if trace is not None:
        try:
            trace.parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(trace))
        except OSError as err:  # a note on the row, never a lost row
            return dataclasses.replace(breakdown, note=f"trace not written to {trace}: {err.strerror or err}")
    return breakdown


def trace_kernels(trace: dict) -> list[dict]:
    """The kernels of a Chrome trace (``--breakdown``'s, from a GPU), each with the operators it was launched
    inside (innermost first), its category and its milliseconds: what a GPU fixture of ``RULES`` records."""
    events = trace.get("traceEvents", [])
    ops = [e for e in events if e.get("cat") in ("cpu_op", "user_annotation") and "dur" in e]
    by_id = {e["args"].get("External id"): e for e in ops if e["args"].get("External id") is not None}
    found = []
    for kernel in (e for e in events if e.get("cat") == "kernel"):
        launcher = by_id.get(kernel.get("args", {}).get("External id"))
        chain = []
        if launcher is not None:
            start, end = launcher["ts"], launcher["ts"] + launcher["dur"]
            enclosing = [
                e for e in ops if e["tid"] == launcher["tid"] and e["ts"] <= start and e["ts"] + e["dur"] >= end
            ]
            chain = [e["name"] for e in sorted(enclosing, key=lambda e: e["dur"])]
        found.append({"kernel": kernel["name"], "ops": chain, "category": category(chain, kernel["name"]),
                      "ms": kernel.get("dur", 0) / 1e3})  # fmt: skip
    return found


def main(folder: str) -> None:
    """``python -m sqabench.speed.profile DIR``: every kernel name in DIR's traces, with its category, total time and
    an example of the operators it ran inside, as JSON lines (for a GPU fixture of the rules)."""
    import json

    totals: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("*.json")):
        for k in trace_kernels(json.loads(path.read_text())):
            entry = totals.setdefault(k["kernel"], {"kernel": k["kernel"], "category": k["category"], "ms": 0.0,
                                                    "count": 0, "ops": k["ops"][:8], "trace": path.name})  # fmt: skip
            entry["ms"] += k["ms"]
            entry["count"] += 1
    for entry in sorted(totals.values(), key=lambda e: -e["ms"]):
        print(json.dumps(entry))


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
