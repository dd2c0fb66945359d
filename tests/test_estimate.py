"""A sweep's estimate and what a user sees of it before and while it runs: the parts, the ETA, --dry-run,
--budget, the hour-long sweep that asks first, plain lines off a terminal."""

import csv

import pytest
from rich.console import Console
from typer.testing import CliRunner

import factories
import sqabench.speed.display as display
import sqabench.speed.runner as runner_module
import sqabench.speed.sweep as sweep
from conftest import TINY
from sqabench.cli import app
from sqabench.flops import Rates
from sqabench.speed.cells import Outcome, Timing
from sqabench.speed.estimate import COMPILE, OVERHEAD_S, Pace, by_value, estimate

RATES = Rates(matmul_flops=1e11, exp_per_s=1e9, bytes_per_s=1e10)
runner = CliRunner()


def cells(names, lengths, device="cpu", repeats=3, mode="fwd", preset=TINY):
    return factories.cells(
        names, lengths, preset, tokens=1024, window=48, device=device, repeats=repeats, mode=mode, warmup=1
    )


def test_estimate_grows_with_length_and_counts_each_flex_compile_once():
    short, long = estimate(cells("mha", [256]), RATES), estimate(cells("mha", [4096]), RATES)
    assert long.total_s > 10 * short.total_s
    flex = estimate(cells("swa", [256, 256]), RATES).per_cell  # the same shape twice: one compile
    cold = COMPILE[("cpu", False)]
    assert flex[0]["compile"] == pytest.approx(cold.first + cold.kernel + cold.block_mask)
    assert flex[1]["compile"] == 0.0
    assert estimate(cells("gqa", [256]), RATES).per_cell[0]["compile"] == 0.0  # sdpa compiles nothing
    other_length = estimate(cells("swa", [256, 512]), RATES).per_cell[1]
    assert other_length["compile"] == pytest.approx(cold.kernel + cold.block_mask)  # a new shape and mask
    from sqabench.speed.estimate import flex_shape

    (swa,) = cells("swa", [256])
    warm = estimate([swa], RATES, compiled_before=frozenset({flex_shape(swa)})).per_cell[0]["compile"]
    assert warm < flex[0]["compile"] / 4  # an earlier run compiled it: inductor's cache serves it


def test_estimate_parts_add_up_and_count_steps_from_the_floor():
    (cell,) = cells("mha", [256])
    predicted = estimate([cell], RATES, already_s=2.0)
    parts = predicted.per_cell[0]
    floor_s = cell.floor(RATES).floor_ms / 1e3
    assert parts["steps"] == pytest.approx((1 + 1 + 3) * floor_s / 0.4)  # first, warm-up, repeats at 40%
    assert parts["overhead"] == OVERHEAD_S["cpu"]
    assert predicted.total_s == pytest.approx(2.0 + sum(parts.values()))


def test_a_decode_estimate_charges_its_steps_and_two_causal_prefills():
    (dec,) = factories.cells("sqa", [512], tokens=1024, mode="decode", causal=True, warmup=1, repeats=3, new_tokens=8)
    # one causal forward of the context, twice (first and timed calls)
    (prefill,) = factories.cells("sqa", [512], tokens=1024, batch=dec.batch, causal=True, warmup=0, repeats=1)
    prefill_s = estimate([prefill], RATES).per_cell[0]["steps"]
    step_s = dec.floor(RATES).floor_ms / 1e3 / 0.4  # one token per sequence, at 40% of its floor
    steps = estimate([dec], RATES).per_cell[0]["steps"]
    assert steps == pytest.approx((1 + 1 + 3) * dec.settings.new_tokens * step_s + prefill_s)


def test_a_best_cell_is_charged_every_candidates_brief_timing(monkeypatch):
    """Each candidate --kernel best tries is measured as a cell of its own, briefly: the estimate charges
    the calls those measurements make (counted here), then the full cell's."""
    from sqabench.speed import measure

    (cell,) = factories.cells("mha", [256], tokens=1024, kernel="best", warmup=1, repeats=3)
    calls = []

    def counted(trial, phase=None):
        calls.append(1 + trial.settings.warmup + trial.settings.repeats)  # its first call, warm-up and timed repeats
        return Outcome(kernel=trial.settings.kernel, timing=Timing(1.0, (1.0,)))

    monkeypatch.setattr(measure, "measure_cell", counted)
    measure.measure_best(cell, lambda name: None)
    assert len(calls) == len(cell.best_candidates) + 1  # each candidate, then the winner in full
    step_s = cell.floor(RATES).floor_ms / 1e3 / 0.4
    assert estimate([cell], RATES).per_cell[0]["steps"] == pytest.approx(sum(calls) * step_s)


def test_a_short_gpu_cell_pays_for_its_energy_window():
    gpu = estimate(cells("mha", [256], device="cuda"), RATES).per_cell[0]
    assert gpu["energy"] == 1.0 and "energy" not in estimate(cells("mha", [256]), RATES).per_cell[0]


def test_eta_scales_the_prediction_by_how_finished_cells_compared(monkeypatch):
    clock = iter([0.0, 0.0, 20.0])  # construction, start of the first cell, its end
    monkeypatch.setattr(display.time, "monotonic", lambda: next(clock))
    shown = display.SweepDisplay(Console(file=open("/dev/null", "w")), 3, Pace([10.0, 10.0, 10.0]))
    assert shown.eta_text() == "ETA 30 s"
    shown.start(cells("mha", [256])[0])
    shown.finished({"variant": "mha", "seq_len": 256, "batch": 4, "status": "ok", "time_ms": 2, "spread": 0.01})
    assert shown.eta_text() == "ETA 40 s"  # the first cell took twice its prediction


def fake(cell, phase):
    return Outcome(kernel="fake", timing=Timing(1.0, (1.0, 1.0)))


def test_a_long_sweep_is_announced_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake)
    args = ["run", "--device", "cpu", "--variants", "mha", "--seq", "200k", "--yes", "--out", str(tmp_path / "r.csv")]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "estimated duration: about" in text and "warning: this is a long sweep" in text
    assert "--budget DURATION, fewer or shorter --seq lengths" in text and "or a GPU" in text


def test_past_an_hour_off_a_terminal_is_refused_naming_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", lambda cell, phase: pytest.fail("nothing may run"))
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["run", "--device", "cpu", "--seq", "32k,131k,200k", "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: this sweep is estimated at about") and " h on this CPU" in last
    assert "--budget DURATION" in last and "fewer or shorter --seq lengths" in last and "or a GPU" in last
    assert "--yes" in last and "Traceback" not in result.output


def test_dry_run_prints_the_cells_and_the_parts_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", lambda cell, phase: pytest.fail("nothing may run"))
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--variants", "mha,swa", "--seq", "256,1k", "--dry-run", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not out.exists() and "writing" not in result.output
    for text in ("--dry-run", "mha · 256 x4", "swa · 1k x1", "steps", "compile", "overhead", "all cells"):
        assert text in result.output
    assert "flex kernels and 2 block masks to compile" in result.output


def test_budget_runs_the_most_valuable_cells_first_and_stops_starting_cells(tmp_path, monkeypatch):
    """Long cells are predicted at 60 s, short ones at 1 s, and take that long (a fake clock): with 90 s,
    one long headline cell runs, then only short ones fit."""
    now = [0.0]
    ran = []

    def measure(cell, phase):
        ran.append(cell.label)
        now[0] += 60.0 if cell.seq_len >= 4096 else 1.0
        return fake(cell, phase)

    def fake_estimate(cells, rates, compiled_before=frozenset(), already_s=0.0):
        from sqabench.speed.estimate import Estimate

        return Estimate([{"steps": 60.0 if c.seq_len >= 4096 else 1.0} for c in cells], already_s)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    monkeypatch.setattr(runner_module, "estimate", fake_estimate)
    monkeypatch.setattr(runner_module, "process_age_s", lambda: now[0])
    monkeypatch.setattr(display.time, "monotonic", lambda: now[0])
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--variants", "gqa,mha,sqa,xsqa", "--seq", "256,4k", "--budget", "90s"]
    result = runner.invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert ran == ["mha · 4k x1", "mha · 256 x4", "sqa · 256 x4", "xsqa · 256 x4", "gqa · 256 x4"]
    assert now[0] <= 90
    with out.open() as handle:
        assert [r["variant"] for r in csv.DictReader(handle)] == ["mha", "mha", "sqa", "xsqa", "gqa"]
    text = " ".join(result.output.split())
    assert "the sweep will not fit; the most valuable cells run first" in text
    assert "3 cells not started (sqa · 4k x1, xsqa · 4k x1, gqa · 4k x1)" in text
    assert f"continue with --resume --out {out}" in text


def test_value_order():
    ordered = [c.label for c in by_value(cells("gqa,mha,sqa,xsqa,swa,ssqa", [256, 1024]))]
    assert ordered[:4] == ["mha · 1k x1", "sqa · 1k x1", "xsqa · 1k x1", "swa · 1k x1"]
    assert ordered[4:8] == ["mha · 256 x4", "sqa · 256 x4", "xsqa · 256 x4", "swa · 256 x4"]
    assert ordered[8:] == ["gqa · 1k x1", "ssqa · 1k x1", "gqa · 256 x4", "ssqa · 256 x4"]


@pytest.mark.parametrize(
    "text, message",
    [("soon", "'soon' is not a duration"), ("0", "--budget 0 must be more than no time"),
     ("0s", "--budget 0s must be more than no time")],
)  # fmt: skip
def test_a_bad_budget_is_refused(tmp_path, text, message):
    result = runner.invoke(app, ["run", "--device", "cpu", "--budget", text, "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("45 sec", 45), ("10m", 600), ("10min", 600),
                                           ("1.5h", 5400), (" 2H ", 7200)])  # fmt: skip
def test_a_budget_reads_its_unit(text, seconds):
    from sqabench.units import parse_duration

    assert parse_duration(text, "--budget") == seconds


def test_the_estimate_remembers_what_earlier_runs_compiled(tmp_path, monkeypatch):
    """A flex shape an earlier run compiled comes from inductor's on-disk cache: the next estimate charges a
    cache hit, not a compile (the cold estimate was 38% short, the warm one right, before this)."""
    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path))
    shapes = runner_module.CompiledShapes()
    shapes.alive = True
    (swa, mha) = cells("swa,mha", [256])
    assert shapes.known() == frozenset()
    shapes.add(swa)
    shapes.add(mha)  # not flex: nothing to remember
    again = runner_module.CompiledShapes()
    again.alive = True
    from sqabench.speed.estimate import flex_shape

    assert again.known() == frozenset({flex_shape(swa)})
    again.alive = False  # the inductor cache is gone: nothing is warm
    assert again.known() == frozenset()


# --- round three: every cost the estimate knows, and an ETA that moves within a cell -------------------


def planned(names, lengths, **given):
    return factories.cells(names, lengths, tokens=1024, window=48, **{"warmup": 1, "repeats": 3, **given})


def test_a_compiled_cell_is_charged_its_whole_model_compile_every_cell():
    cold = COMPILE[("cpu", False)]
    compiled = estimate(planned("mha,sqa", [256], compile="default"), RATES).per_cell
    assert compiled[0]["compile"] == pytest.approx(cold.first + cold.model)  # the compiler's start, once
    assert compiled[1]["compile"] == pytest.approx(cold.model)  # a new model: compiled anew
    assert estimate(planned("mha", [256]), RATES).per_cell[0]["compile"] == 0.0  # eager sdpa compiles nothing


def test_a_split_cell_is_charged_its_ranks_compile():
    cold = COMPILE[("cpu", False)]
    split = estimate(planned("sqa,gqa", [256], world_size=2), RATES).per_cell
    assert [p["compile"] for p in split] == pytest.approx([cold.first + cold.split, cold.split])


def test_a_train_cell_compiles_flex_backward_too():
    """A forward flex cell compiles one kernel, a train cell its backward as well: twice the kernel's cost."""
    warm = COMPILE[("cuda", False)]
    fwd = estimate(planned("swa", [256], device="cuda"), RATES).per_cell[0]["compile"]
    train = estimate(planned("swa", [256], device="cuda", mode="train"), RATES).per_cell[0]["compile"]
    assert train - fwd == pytest.approx(warm.kernel)
    assert fwd == pytest.approx(warm.first + warm.kernel + warm.block_mask)


def test_a_train_cell_that_flex_will_refuse_on_a_cpu_is_charged_no_compile():
    refused = estimate(planned("swa", [256], mode="train"), RATES).per_cell[0]
    assert refused["compile"] == 0.0 and refused["steps"] == 0.0  # skipped at once: no backward on a CPU
    best = estimate(planned("swa", [256], mode="train", kernel="best"), RATES).per_cell[0]
    assert best["compile"] == 0.0  # best's flex candidate is refused too; the SDPA ones compile nothing


def test_the_eta_counts_the_time_spent_in_the_running_cell(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(display.time, "monotonic", lambda: now[0])
    shown = display.SweepDisplay(Console(file=open("/dev/null", "w")), 3, Pace([10.0, 10.0, 10.0]))
    shown.start(cells("mha", [256])[0])
    now[0] = 4.0
    assert shown.eta_text() == "ETA 26 s"  # 6 s left of this cell, then two more
    now[0] = 600.0  # ten minutes in a cell predicted at 10 s: the pace is 60 times slower than thought
    assert shown.eta_text() == "ETA 20 min"  # not "ETA 20 s", standing still
    now[0] = 1200.0
    assert shown.eta_text() == "ETA 40 min"


def test_a_launched_rank_counts_the_launchers_start_as_spent(monkeypatch):
    import time

    from sqabench.environment import STARTED_ENV, process_age_s

    monkeypatch.setenv(STARTED_ENV, str(time.time() - 42.0))
    assert 42.0 <= process_age_s() < 42.0 + 60
