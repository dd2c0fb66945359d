"""--repeats auto: the median's interval by order statistics (binomial sums by hand), the stopping rule on a fake
timer and a fake clock (no test here depends on this machine's speed), what a row records, and the clock's
lock read from a fake NVML."""

import math
import types

import pytest
import torch
from typer.testing import CliRunner

import fake_nvml
from sqabench.cli import app
from sqabench.settle import StopRule, median_noise, time_until_settled

runner = CliRunner()


def _interval_ranks(n: int) -> int:
    """The largest l with P(Binomial(n, 1/2) <= l - 1) <= 2.5%, the tail summed by hand."""
    low = 1
    while sum(math.comb(n, k) for k in range(low + 1)) / 2**n <= 0.025:
        low += 1
    return low


@pytest.mark.parametrize("n", [6, 7, 10, 20, 31])
def test_the_medians_interval_is_the_sign_tests_order_statistics(n):
    samples = [10.0 + 0.1 * ((7 * i) % n) for i in range(n)]
    low = _interval_ranks(n)
    ordered = sorted(samples)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    assert median_noise(samples) == pytest.approx((ordered[n - low] - ordered[low - 1]) / (2 * median))
    assert median_noise(samples[:5]) is None  # no 95% interval of the median exists under 6 samples


def _fake(samples):
    """A timer that returns the next samples, and a clock that advances by each sample's time."""
    now = [0.0]
    feed = iter(samples)

    def timer(step, device, calls, before_each=None):
        out = tuple(next(feed) for _ in range(calls))
        now[0] += sum(out) / 1e3
        return out

    return timer, lambda: now[0]


def test_a_quiet_timer_stops_on_its_target_at_the_minimum():
    timer, clock = _fake([10.0] * 1000)
    calls, stopped = time_until_settled(None, None, StopRule(0.02, min_repeats=6), timer=timer, clock=clock)
    assert (len(calls), stopped) == (6, "target")


def test_a_noisy_timer_stops_on_its_cap_and_a_slow_one_on_its_time_limit():
    timer, clock = _fake([10.0, 20.0] * 1000)
    calls, stopped = time_until_settled(None, None, StopRule(0.02, min_repeats=6, max_repeats=40), timer=timer,
                                        clock=clock)  # fmt: skip
    assert (len(calls), stopped) == (40, "cap")
    timer, clock = _fake([400.0, 800.0] * 1000)
    calls, stopped = time_until_settled(None, None, StopRule(0.02, min_repeats=6, limit_s=5.0), timer=timer,
                                        clock=clock)  # fmt: skip
    assert stopped == "cap" and sum(calls) / 1e3 >= 5.0 and sum(calls[:-1]) / 1e3 < 5.0  # within a repeat of it
    timer, clock = _fake([20_000.0] * 10)  # one repeat already past the limit: it stops there
    calls, stopped = time_until_settled(None, None, StopRule(0.02, min_repeats=6, limit_s=5.0), timer=timer,
                                        clock=clock)  # fmt: skip
    assert (len(calls), stopped) == (1, "cap")


def test_a_repeat_of_a_decode_pass_is_its_calls_mean_and_the_minimum_time_holds():
    timer, clock = _fake([1.0, 3.0] * 10_000)  # each pass of 4 calls averages 2 ms: no noise between passes
    calls, stopped = time_until_settled(None, None, StopRule(0.02, min_repeats=6, min_s=0.1), per_repeat=4,
                                        timer=timer, clock=clock)  # fmt: skip
    assert stopped == "target" and len(calls) % 4 == 0 and sum(calls) / 1e3 >= 0.1


def test_the_estimate_counts_what_auto_will_time():
    from sqabench.speed.cells import AUTO_RULE
    from sqabench.speed.estimate import expected_repeats

    cell = types.SimpleNamespace(settings=types.SimpleNamespace(repeats=0, device="cuda", target_noise=0.0,
                                                                mode="fwd", new_tokens=0))  # fmt: skip
    rule = AUTO_RULE["cuda"]
    assert expected_repeats(cell, 1e-3) == math.ceil(rule["min_s"] / 1e-3) == 50  # a quick cell: the minimum time
    assert expected_repeats(cell, 1e-6) == rule["max_repeats"]  # never past the maximum
    assert expected_repeats(cell, 1.0) == rule["min_repeats"]
    assert expected_repeats(cell, 4.0) == 3  # a slow cell: as many as its 10 s limit holds, then the cap
    assert expected_repeats(cell, 60.0) == 1
    cell.settings.repeats = 7
    assert expected_repeats(cell, 1.0) == 7


def test_a_row_records_its_repeats_the_noise_it_reached_and_why_it_stopped(tmp_path):
    out = tmp_path / "r.csv"
    tiny = ["run", "--device", "cpu", "--seq", "64", "--batch", "1", "--warmup", "0", "--variants", "mha"]
    result = runner.invoke(app, [*tiny, "--out", str(out)])
    assert result.exit_code == 0, result.output
    import csv

    (row,) = csv.DictReader(out.open())
    samples = [float(x) for x in row["samples_ms"].split(";")]
    assert row["repeats"] == "auto" and row["stopped"] in ("target", "cap") and len(samples) >= 6
    assert float(row["noise"]) == pytest.approx(median_noise(samples), rel=1e-2)
    assert (row["stopped"] == "cap") <= (row["noisy"] == "True")  # a capped cell is flagged noisy
    fixed = tmp_path / "f.csv"
    result = runner.invoke(app, [*tiny, "--repeats", "3", "--out", str(fixed)])
    (row,) = csv.DictReader(fixed.open())
    assert (row["repeats"], row["stopped"], row["noise"]) == ("3", "fixed", "")


@pytest.mark.parametrize("app_clock, locked", [(1755, False), (1410, True)])
def test_the_clocks_lock_is_read_from_nvmls_application_clocks(monkeypatch, app_clock, locked):
    import sqabench.environment as environment

    monkeypatch.setattr(environment, "nvml_module", lambda: fake_nvml.make(app_clock=app_clock))
    monkeypatch.setattr(environment, "nvml_handle", lambda pynvml, device: ("gpu", 0))
    found, said = environment.clock_lock(torch.device("cuda"))
    assert found is locked
    assert said.startswith("locked: application SM clock 1410 MHz" if locked else "not locked: application SM")
    assert environment.clock_lock(torch.device("cpu")) == (None, "no GPU")
