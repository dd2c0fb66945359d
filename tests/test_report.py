"""The tables flag what a number cannot be trusted for: a wrong floor, a launch-bound decode step, a
ratio across runs, a single repeat. Rows come from ``to_row``, as a real run's do."""

import pytest
from rich.console import Console

import factories
from sqabench.environment import Environment
from sqabench.flops import Rates
from sqabench.presets import PRESETS
from sqabench.speed.ceilings import DeviceLimits
from sqabench.speed.cells import Outcome, Timing
from sqabench.speed.report import cell_text, results_tables
from sqabench.speed.results import FLOOR_WRONG
from sqabench.speed.sweep import to_row

ENV = Environment(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", torch_version="2.11.0", git_sha="abc")


def rows_for(
    names,
    mode="fwd",
    times=(10.0, 10.5, 9.5),
    rates=None,
    run_ids=None,
    repeats=3,
    device="cuda",
    kernel="auto",
    length=1024,
):
    cells = factories.cells(
        names,
        [length],
        PRESETS["paper"],
        tokens=length,
        dtype="bf16",
        mode=mode,
        kernel=kernel,
        device=device,
        warmup=1,
        repeats=repeats,
        new_tokens=4,
    )
    limits = DeviceLimits(measured=rates) if rates else DeviceLimits()
    return [
        to_row(
            cell,
            Outcome(kernel="sdpa-flash", timing=Timing(100.0, times[:repeats])),
            ENV,
            (run_ids or {}).get(cell.spec.name, "run"),
            limits,
        )  # fmt: skip
        for cell in cells
    ]


def plain(text) -> str:
    return " ".join(text.plain.split())


def test_an_efficiency_above_one_is_flagged_in_the_row_and_the_table():
    (unrated,) = rows_for("mha")  # its work, from the cost model: exponentials of one step
    low = Rates(matmul_flops=1e15, exp_per_s=int(unrated["exps"]) / 0.015, bytes_per_s=1e15)  # an exp floor of 15 ms
    (row,) = rows_for("mha", rates=low)  # measured at 10 ms: efficiency 1.5, which no step can reach
    assert float(row["efficiency"]) == pytest.approx(1.5, rel=1e-3) and FLOOR_WRONG in row["note"]
    assert "floor wrong" in plain(cell_text(row, None))
    fine = Rates(matmul_flops=1e15, exp_per_s=1e13, bytes_per_s=1e13)
    (row,) = rows_for("mha", rates=fine)
    assert float(row["efficiency"]) < 1 and row["note"] == "" and "floor wrong" not in plain(cell_text(row, None))


def test_a_decode_step_far_above_its_memory_floor_is_called_launch_bound():
    fast_memory = Rates(matmul_flops=1e15, exp_per_s=1e13, bytes_per_s=3.35e12)
    (row,) = rows_for("gqa", mode="decode", rates=fast_memory, times=(1.0, 1.0, 1.0))  # 1 ms a step
    predicted_ms = int(row["min_bytes"]) / 3.35e12 * 1e3
    assert predicted_ms < 0.1
    assert f"launch-bound ({1.0 / predicted_ms:.1f}x it)" in plain(cell_text(row, None))
    (row,) = rows_for("gqa", mode="decode", rates=fast_memory, times=(predicted_ms,) * 3)
    assert "launch-bound" not in plain(cell_text(row, None))


def test_a_speedup_over_another_runs_baseline_says_so():
    base, row = rows_for("mha,sqa", run_ids={"mha": "first", "sqa": "second"})
    assert "vs another run" in plain(cell_text(row, base))
    base, row = rows_for("mha,sqa")
    assert "vs another run" not in plain(cell_text(row, base))


def test_the_speedup_is_the_baselines_time_over_the_cells():
    base, row = rows_for("mha,xsqa")
    faster = {**row, "time_ms": float(base["time_ms"]) / 2.5}
    assert "2.50x" in plain(cell_text(faster, base)) and "0.40x" not in plain(cell_text(faster, base))
    slower = {**row, "time_ms": float(base["time_ms"]) * 1.25}
    assert "0.80x" in plain(cell_text(slower, base))


def test_beside_a_speedup_the_ratio_the_cost_model_allows_flops_for_a_step_bytes_for_decode():
    """A forward step is bound by its FLOPs: mha over xsqa at 1k is their FLOPs' ratio. A decode step reads its
    weights and its K/V: the ratio beside it is of the bytes (at 32k, gqa 16/4 does mha's attention FLOPs but
    reads a quarter of its K/V)."""
    base, row = rows_for("mha,xsqa")
    flops = float(base["flops"]) / float(row["flops"])
    assert f"(FLOPs {flops:.2f}x)" in plain(cell_text(row, base))
    base, row = rows_for("mha,gqa", mode="decode", length=32768)
    moved = float(base["min_bytes"]) / float(row["min_bytes"])
    assert moved > 1.5 * float(base["flops"]) / float(row["flops"])
    assert f"(bytes {moved:.2f}x)" in plain(cell_text(row, base))


def test_one_repeat_has_no_spread():
    (row,) = rows_for("mha", repeats=1)
    assert row["spread"] == "" and row["noisy"] == ""
    assert "1 repeat: no spread" in plain(cell_text(row, None)) and "±" not in plain(cell_text(row, None))


def test_a_table_per_setting_prints():
    console = Console(record=True, width=200)
    for title, table in results_tables(rows_for("mha,sqa"), "mha"):
        console.print(title)
        console.print(table)
    text = console.export_text()
    assert "NVIDIA H100 80GB HBM3 · paper (8 layers)" in text and "sqa" in text and "x (FLOPs" in text


def test_a_slow_cpu_decode_step_is_overhead_bound_not_launch_bound():
    """A CPU launches no kernels: a decode step far above its memory floor waits on operator dispatch."""
    fast_memory = Rates(matmul_flops=1e15, exp_per_s=1e13, bytes_per_s=3.35e12)
    (row,) = rows_for("gqa", mode="decode", rates=fast_memory, times=(1.0, 1.0, 1.0), device="cpu")
    text = plain(cell_text(row, None))
    assert "overhead-bound" in text and "launch-bound" not in text


def test_the_winner_of_kernel_best_is_in_the_table():
    (row,) = rows_for("sqa", kernel="best")  # the outcome says sdpa-flash ran
    assert "best: sdpa-flash" in plain(cell_text(row, None))
    (row,) = rows_for("sqa")
    assert "best:" not in plain(cell_text(row, None))


def test_the_spread_means_one_thing_in_the_table_and_in_check_json(tmp_path):
    """(max - min) / median of the repeats, the full range: the table's ± and check --json's range alike."""
    from rows import write_run
    from sqabench.speed.check import benchmark_json
    from sqabench.speed.report import SPREAD_MEANS, results_table
    from sqabench.speed.results import latest, load_results

    (row,) = rows_for("mha", times=(10.0, 11.0, 9.0))  # (11 - 9) / 10 = 20%
    assert "±20%" in plain(cell_text(row, None))
    assert SPREAD_MEANS in " ".join(str(results_table([row], None).caption).split())
    entries = benchmark_json(latest(load_results(write_run(tmp_path / "r.csv"))))
    assert {e["range"] for e in entries} == {f"±1.0%{SPREAD_MEANS}"}  # rows.SPREAD: 0.995 .. 1.005, median 1
