"""The GPU during the timed window, from NVML: energy per step, clocks, temperature, power, throttling.

``GpuMonitor.sampling()`` runs a background thread that reads SM and memory clocks, temperature,
power and the clock-event (throttle) reasons every ``SAMPLE_INTERVAL_S`` while the timed repeats
run: readings taken after the window would see an idle GPU. Energy comes from NVML's total-energy
counter (millijoules), read just before and just after a window of steps. The counter updates
slowly, so a window shorter than ``MIN_ENERGY_WINDOW_S`` is never used for energy: the caller runs
more steps until the window is long enough (``energy_steps``).

Without NVML or a GPU there is no monitor, and every column it fills stays empty, never zero.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SAMPLE_INTERVAL_S = 0.025
MIN_ENERGY_WINDOW_S = 1.0
MAX_ENERGY_STEPS = 100_000
# Clock-event reasons that mean the clocks were held below what the work asked for. Idle,
# application clocks, sync boost and display clocks are not slowdowns of this run.
SLOWDOWNS = {
    0x4: "power-cap",
    0x8: "hw-slowdown",
    0x20: "sw-thermal",
    0x40: "hw-thermal",
    0x80: "power-brake",
    0x200: "board-limit",
    0x400: "reliability",
}


@dataclass
class Window:
    """What the sampler saw during one timed window."""

    sm_clocks: list[int] = field(default_factory=list)
    mem_clocks: list[int] = field(default_factory=list)
    temperatures: list[int] = field(default_factory=list)
    powers_w: list[float] = field(default_factory=list)
    reasons: int = 0

    @property
    def throttle(self) -> str:
        """The slowdown reasons seen, e.g. ``power-cap+hw-thermal``; empty when none."""
        return "+".join(name for bit, name in SLOWDOWNS.items() if self.reasons & bit)

    def columns(self) -> dict[str, object]:
        if not self.sm_clocks:
            return {}
        return {
            "sm_clock_min_mhz": min(self.sm_clocks),
            "sm_clock_median_mhz": statistics.median(self.sm_clocks),
            "mem_clock_mhz": statistics.median(self.mem_clocks) if self.mem_clocks else None,
            "temperature_max_c": max(self.temperatures) if self.temperatures else None,
            "power_max_w": max(self.powers_w) if self.powers_w else None,
            "throttle": self.throttle,
        }


def energy_steps(step_ms: float, seconds: float = MIN_ENERGY_WINDOW_S) -> int:
    """How many steps of ``step_ms`` fill ``seconds`` (the caller repeats until the window is long enough)."""
    if step_ms <= 0:
        return MAX_ENERGY_STEPS
    return min(MAX_ENERGY_STEPS, max(1, math.ceil(seconds * 1e3 / step_ms)))


class GpuMonitor:
    """NVML readings of one GPU. ``pynvml`` is the initialised module; ``handle`` the device's."""

    def __init__(self, pynvml, handle, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.nvml, self.handle, self.interval_s = pynvml, handle, interval_s

    def energy_mj(self) -> int | None:
        """The total-energy counter in millijoules; None where the GPU does not report it."""
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError:
            return None

    def _reasons(self) -> int:
        getter = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            self.nvml, "nvmlDeviceGetCurrentClocksThrottleReasons"
        )  # the newer name, else the older one
        return int(getter(self.handle))

    def sample(self, window: Window) -> None:
        nvml, handle = self.nvml, self.handle
        try:
            window.sm_clocks.append(int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)))
            window.mem_clocks.append(int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)))
            window.temperatures.append(int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
            window.powers_w.append(nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
            window.reasons |= self._reasons()
        except nvml.NVMLError:
            pass  # a reading this GPU does not offer: the others still count

    @contextmanager
    def sampling(self) -> Iterator[Window]:
        """Sample in the background while the block runs; at least one sample at each end."""
        window = Window()
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval_s):
                self.sample(window)

        self.sample(window)
        thread = threading.Thread(target=loop, name="sqabench-nvml", daemon=True)
        thread.start()
        try:
            yield window
        finally:
            stop.set()
            thread.join()
            self.sample(window)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def open_monitor(device) -> GpuMonitor | None:
    """A monitor of this torch device's GPU; None on a CPU or without NVML."""
    if device.type != "cuda":
        return None
    from sqabench.environment import nvml_handle, nvml_module

    pynvml = nvml_module()
    if pynvml is None:
        return None
    try:
        return GpuMonitor(pynvml, nvml_handle(pynvml, device))
    except pynvml.NVMLError:
        return None


@dataclass(frozen=True)
class Energy:
    """Energy of a window of ``steps`` steps over ``seconds``; None fields when it could not be measured."""

    joules_per_step: float | None
    avg_power_w: float | None
    note: str = ""


def energy_per_step(
    monitor: GpuMonitor,
    step: Callable[[], object],
    sync: Callable[[], object],
    timed: tuple[int | None, int | None, int, float],
    step_ms: float,
    clock: Callable[[], float] = time.perf_counter,
    extending: Callable[[], object] = lambda: None,
) -> Energy:
    """Energy per step from the timed window ``timed`` = (start mJ, end mJ, steps, seconds), or, when that
    window was too short for NVML's counter, from a window of more steps run now until it is long
    enough (``extending`` is told first). ``clock`` is the wall clock (a test passes its own)."""
    start_mj, end_mj, steps, seconds = timed
    if seconds >= MIN_ENERGY_WINDOW_S or start_mj is None:
        return energy_of(start_mj, end_mj, steps, seconds)
    extending()
    steps = 0
    sync()
    start_mj, start = monitor.energy_mj(), clock()
    while (elapsed := clock() - start) < MIN_ENERGY_WINDOW_S:
        chunk = energy_steps(step_ms, MIN_ENERGY_WINDOW_S - elapsed)
        for _ in range(chunk):
            step()
        sync()
        steps += chunk
    return energy_of(start_mj, monitor.energy_mj(), steps, clock() - start)


def energy_of(start_mj: int | None, end_mj: int | None, steps: int, seconds: float) -> Energy:
    if start_mj is None or end_mj is None:
        return Energy(None, None, "energy: this GPU has no NVML energy counter")
    if seconds < MIN_ENERGY_WINDOW_S:
        return Energy(None, None, f"energy: window of {seconds:.2f} s is too short for NVML's counter")
    joules = (end_mj - start_mj) / 1e3
    if joules <= 0:
        return Energy(None, None, f"energy: the counter did not advance over {seconds:.2f} s")
    return Energy(joules / steps, joules / seconds)
