"""What a user sees while a sweep runs: the estimate, the ETA, plain lines off a terminal."""

import pytest
from rich.console import Console
from typer.testing import CliRunner

import sqabench.display as display
import sqabench.sweep as sweep
from conftest import TINY
from sqabench.cells import Outcome, Timing, plan
from sqabench.cli import app
from sqabench.estimate import COMPILE_S, estimate
from sqabench.flops import Rates
from sqabench.variants import parse_variants

RATES = Rates(matmul_flops=1e11, exp_per_s=1e9, bytes_per_s=1e10)


def cells(names, lengths, device="cpu", repeats=3):
    return plan(
        parse_variants(names, window=48), TINY, lengths, tokens=1024, batch=None, dtype="fp32", mode="fwd",
        causal=False, kernel="auto", device=device, warmup=1, repeats=repeats,
    )  # fmt: skip


def test_estimate_grows_with_length_and_counts_each_flex_compile_once():
    short, long = estimate(cells("mha", [256]), RATES), estimate(cells("mha", [4096]), RATES)
    assert long.total_s > 10 * short.total_s
    flex = estimate(cells("swa", [256, 256]), RATES).per_cell_s  # the same shape twice: one compile
    sdpa = estimate(cells("gqa", [256]), RATES).per_cell_s
    assert flex[0] - sdpa[0] == pytest.approx(COMPILE_S["cpu"], rel=0.2)
    assert flex[1] < COMPILE_S["cpu"]


def test_a_short_gpu_cell_pays_for_its_energy_window():
    cpu, gpu = estimate(cells("mha", [256]), RATES), estimate(cells("mha", [256], device="cuda"), RATES)
    assert gpu.total_s == pytest.approx(cpu.total_s + 1.0)


def test_eta_scales_the_prediction_by_how_finished_cells_compared(monkeypatch):
    clock = iter([0.0, 0.0, 20.0])  # construction, start of the first cell, its end
    monkeypatch.setattr(display.time, "monotonic", lambda: next(clock))
    shown = display.SweepDisplay(Console(file=open("/dev/null", "w")), 3, [10.0, 10.0, 10.0])
    assert shown.eta_text() == "ETA 30 s"
    shown.start(cells("mha", [256])[0])
    shown.finished({"variant": "mha", "seq_len": 256, "batch": 4, "status": "ok", "time_ms": 2, "spread": 0.01})
    assert shown.eta_text() == "ETA 40 s"  # the first cell took twice its prediction


def test_a_long_sweep_is_announced_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", lambda cell, phase: Outcome(timing=Timing(1.0, (1.0, 1.0))))
    args = ["run", "--device", "cpu", "--variants", "mha", "--seq", "200k", "--out", str(tmp_path / "r.csv")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimated duration: about" in text and "warning: this is a long sweep" in text
    assert "fewer or shorter --seq lengths" in text and "or a GPU" in text
