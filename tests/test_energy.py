"""Energy, clocks and throttling during the timed window, with a fake NVML (no GPU needed)."""

import time

import pytest

import factories
import fake_nvml
import sqabench.speed.measure as measure
from rows import write_run
from sqabench.environment import Environment
from sqabench.speed.check import Limits, compare
from sqabench.speed.energy import (
    MIN_ENERGY_WINDOW_S,
    SLOWDOWNS,
    GpuMonitor,
    Window,
    energy_of,
    energy_per_step,
    energy_steps,
)
from sqabench.speed.results import read_rows, results_writer
from sqabench.speed.sweep import run_cell, run_sweep


def test_sampler_reads_during_the_window():
    nvml = fake_nvml.make(sm_clock=1755, temperature=61, reasons=0x4 | 0x1)
    monitor = GpuMonitor(nvml, ("gpu", 0), interval_s=0.005)
    with monitor.sampling() as window:
        deadline = time.monotonic() + 60  # however busy the machine, the sampler gets its turns
        while len(window.sm_clocks) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        inside = len(window.sm_clocks)
    assert inside >= 5  # sampled while the block ran, not only at its ends
    columns = window.columns()
    assert columns["sm_clock_min_mhz"] == columns["sm_clock_median_mhz"] == 1755
    assert columns["temperature_max_c"] == 61 and columns["power_max_w"] == 300.0
    assert columns["throttle"] == "power-cap"  # idle (0x1) is not a slowdown


def test_slowdowns_are_nvmls_own_bits():
    """The reasons named are NVML's, by its constants' names; idle, application, sync-boost and display
    clocks are not slowdowns of this run."""
    import pynvml

    named = {"SwPowerCap": "power-cap", "HwSlowdown": "hw-slowdown", "SwThermalSlowdown": "sw-thermal",
             "HwThermalSlowdown": "hw-thermal", "HwPowerBrakeSlowdown": "power-brake", "BoardLimit": "board-limit",
             "Reliability": "reliability"}  # fmt: skip
    assert SLOWDOWNS == {getattr(pynvml, f"nvmlClocksThrottleReason{k}"): v for k, v in named.items()}
    for harmless in ("GpuIdle", "ApplicationsClocksSetting", "SyncBoost", "DisplayClockSetting"):
        assert Window(reasons=getattr(pynvml, f"nvmlClocksThrottleReason{harmless}")).throttle == ""
    both = pynvml.nvmlClocksThrottleReasonSwPowerCap | pynvml.nvmlClocksThrottleReasonHwThermalSlowdown
    assert Window(reasons=both).throttle == "power-cap+hw-thermal"


def test_window_columns_summarise_the_samples():
    window = Window(sm_clocks=[1980, 1410, 1755, 1980], mem_clocks=[2619, 2619, 1593], temperatures=[55, 71, 60],
                    powers_w=[300.0, 690.5, 420.0])  # fmt: skip
    columns = window.columns()
    assert (columns["sm_clock_min_mhz"], columns["sm_clock_median_mhz"]) == (1410, (1755 + 1980) / 2)
    assert (columns["mem_clock_mhz"], columns["temperature_max_c"], columns["power_max_w"]) == (2619, 71, 690.5)
    assert Window().columns() == {}  # nothing sampled: every column stays empty


def test_older_throttle_api_name_and_no_throttle():
    nvml = fake_nvml.make(old_names=True, reasons=0x40)
    with GpuMonitor(nvml, ("gpu", 0), interval_s=0.01).sampling() as window:
        pass
    assert window.columns()["throttle"] == "hw-thermal"
    with GpuMonitor(fake_nvml.make(), ("gpu", 0)).sampling() as window:
        pass
    assert window.columns()["throttle"] == ""


def test_energy_from_the_counter():
    energy = energy_of(1_000, 301_000, steps=10, seconds=1.0)
    assert energy.joules_per_step == pytest.approx(30.0) and energy.avg_power_w == pytest.approx(300.0)


@pytest.mark.parametrize(
    "start, end, seconds, note",
    [(None, None, 2.0, "no NVML energy counter"), (0, 50_000, 0.2, "too short"), (5, 5, 2.0, "did not advance")],
)
def test_energy_is_empty_when_it_cannot_be_measured(start, end, seconds, note):
    energy = energy_of(start, end, steps=10, seconds=seconds)
    assert energy.joules_per_step is None and energy.avg_power_w is None and note in energy.note


def test_short_windows_are_extended():
    assert energy_steps(step_ms=5.0) == 200  # 200 x 5 ms = 1 s
    assert energy_steps(step_ms=3000.0) == 1


def cells(names="mha,sqa"):
    return factories.cells(names, [64], repeats=3)


def on_fake_gpu(monkeypatch, **kwargs):
    """Real CPU cells, measured as if NVML watched a GPU: the fake's counter advances with time. The energy
    window is cut to a tenth of a second here (its arithmetic is tested with a fake clock above)."""
    import sqabench.speed.energy as energy

    monkeypatch.setattr(energy, "MIN_ENERGY_WINDOW_S", 0.1)
    nvml = fake_nvml.make(**kwargs)
    monkeypatch.setattr(measure, "open_monitor", lambda device: GpuMonitor(nvml, ("gpu", 0), interval_s=0.01))
    return nvml


class FakeClock:
    """A wall clock that a step advances by a fixed time: energy arithmetic independent of the machine."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("step_ms, timed_steps", [(5.0, 3), (0.01, 10), (400.0, 2)])
def test_a_short_window_is_extended_until_the_counter_can_resolve_it(step_ms, timed_steps):
    clock = FakeClock()
    nvml = fake_nvml.make(power_w=250.0, clock=clock)
    monitor = GpuMonitor(nvml, ("gpu", 0))
    steps, told = [], []

    def step():
        clock.now += step_ms / 1e3
        steps.append(1)

    start = monitor.energy_mj()
    for _ in range(timed_steps):
        step()
    timed = (start, monitor.energy_mj(), timed_steps, timed_steps * step_ms / 1e3)  # under a second
    energy = energy_per_step(monitor, step, lambda: None, timed, step_ms, clock=clock, extending=lambda: told.append(1))
    assert told == [1] and len(steps) > timed_steps  # more steps ran, in a window of at least a second
    assert (len(steps) - timed_steps) * step_ms / 1e3 >= MIN_ENERGY_WINDOW_S
    assert energy.joules_per_step == pytest.approx(250.0 * step_ms / 1e3, rel=1e-3)  # 250 W x the step's time
    assert energy.avg_power_w == pytest.approx(250.0, rel=1e-3)


def test_a_long_enough_window_is_used_as_it_is():
    clock = FakeClock()
    monitor = GpuMonitor(fake_nvml.make(power_w=100.0, clock=clock), ("gpu", 0))
    energy = energy_per_step(monitor, lambda: pytest.fail("no more steps"), lambda: None, (0, 300_000, 3, 1.5), 500.0,
                             clock=clock)  # fmt: skip
    assert energy.joules_per_step == pytest.approx(100.0) and energy.avg_power_w == pytest.approx(200.0)


def test_a_real_cell_gets_energy_and_clocks(monkeypatch):
    """The readings reach a real cell's outcome (their arithmetic: the fake-clock tests above)."""
    nvml = on_fake_gpu(monkeypatch, power_w=250.0)
    outcome = run_cell(cells("mha")[0], measure.measure_cell, lambda name: None)
    assert outcome.status == "ok", outcome.error
    r = outcome.readings
    assert r["energy_j"] > 0 and r["avg_power_w"] > 0
    assert r["tokens_per_j"] == pytest.approx(64 / r["energy_j"])
    assert r["sm_clock_median_mhz"] == 1980 and r["throttle"] == ""
    assert nvml.calls["shutdown"] == 1


def test_throttled_cells_reach_the_rows_and_the_table(monkeypatch, tmp_path):
    on_fake_gpu(monkeypatch, reasons=0x4)
    writer = results_writer(tmp_path / "r.csv")
    run_sweep(cells(), writer, Environment(device="cpu"))
    rows = read_rows(writer.path)
    assert [r["throttle"] for r in rows] == ["power-cap", "power-cap"]
    assert all(float(r["energy_j"]) > 0 for r in rows)

    from sqabench.speed.report import cell_text

    assert "throttled" in cell_text(rows[1], rows[0]).plain


def test_without_a_gpu_the_columns_are_empty_not_zero(tmp_path):
    writer = results_writer(tmp_path / "r.csv")
    run_sweep(cells("mha"), writer, Environment(device="cpu"))
    (row,) = read_rows(writer.path)
    for column in ("energy_j", "tokens_per_j", "avg_power_w", "sm_clock_median_mhz", "throttle", "temperature_max_c"):
        assert row[column] == "", column


def test_check_warns_about_throttled_cells(tmp_path):
    base = write_run(tmp_path / "b.csv")
    cur = write_run(tmp_path / "c.csv", throttle={("sqa", 1024): "hw-thermal"})
    report = compare(base, cur, Limits())
    assert any("throttled" in w and "sqa paper n=1024" in w for w in report.warnings)
    (verdict,) = [v for v in report.cells if v.cell.startswith("sqa paper n=1024")]
    assert any("throttled (hw-thermal) in the current run" in note for note in verdict.notes)
