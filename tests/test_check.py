import csv
import json
import math
import random
import re
import statistics

import pytest
from typer.testing import CliRunner

from rows import LENGTHS, SPREAD, write_run
from sqabench.cli import app
from sqabench.speed.check import Limits, compare, markdown
from sqabench.speed.report import format_time

runner = CliRunner()


@pytest.fixture
def base(tmp_path):
    return write_run(tmp_path / "base.csv")


def invoke(*args, env=None):
    return runner.invoke(app, ["check", *map(str, args)], env={"COLUMNS": "300", **(env or {})})


def one_line(result) -> str:
    return " ".join(result.output.split())


def test_the_table_says_once_what_every_cell_shares(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.25})
    result = invoke(base, cur)
    text = one_line(result)
    assert "every cell: paper bf16 fwd encoder auto cuda 8 layers scope model" in text
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│ ")]
    assert "sqa n=1024 b=128 heads 8/4" in rows and "mha n=32768 b=4 heads 16/16" in rows
    # the regression line still names the whole cell: it is read alone
    assert "regression: sqa paper n=1024 b=128 bf16 fwd encoder auto cuda heads 8/4 8 layers scope model" in text
    summary = markdown(compare(base, cur, Limits()), base, cur)
    assert "| sqa n=1024 b=128 heads 8/4 |" in summary and "Every cell: paper bf16 fwd" in summary
    assert "Geometric-mean time ratio: 1.028 [1.027, 1.029] (90% interval, 1 baseline run)" in summary


@pytest.mark.parametrize("ms, text", [(None, "-"), (0.012345, "0.01235"), (220.7, "220.7"), (1325.4, "1325")])
def test_times_print_to_four_significant_digits(ms, text):
    assert format_time(ms) == text


def test_identical_runs_pass(base):
    result = invoke(base, base)
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output


def test_one_cell_25_percent_slower_fails_and_is_named(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    result = invoke(base, cur)
    assert result.exit_code == 1
    assert "regression: sqa paper n=32768" in one_line(result)
    assert "+25% time" in result.output


def test_small_noise_passes(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.02})
    assert invoke(base, cur).exit_code == 0


@pytest.mark.parametrize("seed", range(5))
def test_consistent_12_percent_slowdown_at_2_percent_spread_always_fails(tmp_path, seed):
    rng = random.Random(seed)
    spread = [0.99 + 0.02 * i / 9 for i in range(10)]  # (max-min)/median = 2%
    a, b = spread[:], spread[:]
    rng.shuffle(a)
    rng.shuffle(b)
    base = write_run(tmp_path / "b.csv", samples={("sqa", 1024): a})
    cur = write_run(tmp_path / "c.csv", scale={("sqa", 1024): 1.12}, samples={("sqa", 1024): b})
    report = compare(base, cur, Limits())
    (failing,) = report.failing
    assert failing.cell.startswith("sqa paper n=1024") and "+12% time" in failing.problems[0]


def test_one_noisy_repeat_never_fails(base, tmp_path):
    outlier = list(SPREAD)
    outlier[3] = 3.0  # one repeat three times slower: the median does not move
    cur = write_run(tmp_path / "cur.csv", samples={(v, n): outlier for v in ("mha", "sqa") for n in LENGTHS})
    result = invoke(base, cur)
    assert result.exit_code == 0, result.output


def test_a_slowdown_within_the_noise_is_not_judged_and_fails_unless_allowed(base, tmp_path):
    """12% slower at 60% spread: not a regression, not a pass either; the gate fails closed by default."""
    wide = [0.7, 1.3, 0.8, 1.2, 1.0, 0.75, 1.25, 0.9, 1.1, 1.0]  # 60% spread
    cur = write_run(tmp_path / "cur.csv", scale={("xsqa", 1024): 1.12}, samples={("xsqa", 1024): wide})
    report = compare(base, cur, Limits())
    assert not report.ok and not report.failing and len(report.unjudged) == 1
    (verdict,) = [v for v in report.cells if v.cell.startswith("xsqa paper n=1024")]
    assert verdict.ratio_low < 1.10 < verdict.ratio
    assert any("noisy in the current run" in note for note in verdict.notes)
    assert report.verdict().startswith("cannot tell: 0 failed, 1 not judged, 7 passed of 8 cells")
    assert compare(base, cur, Limits(allow_unjudged=True)).ok


def test_geomean_slowdown_fails(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={"*": 1.05})  # every cell 5% slower: each passes alone
    result = invoke(base, cur)
    text = one_line(result)
    assert result.exit_code == 1 and "geometric-mean +5% time (90% interval +4.9% to +5.1%; limit 3%)" in text
    assert "regression: the geometric mean failed (0 failed, 0 not judged, 8 passed of 8 cells)" in text


def test_memory_growth_fails(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", mem={("xsqa", 1024): 1.10})
    result = invoke(base, cur)
    assert result.exit_code == 1 and "+10% memory" in result.output


@pytest.mark.parametrize("growth, fails", [(1.06, True), (1.04, False)])
def test_memory_growth_is_judged_at_its_limit(base, tmp_path, growth, fails):
    """The default limit is +5%: 6% more memory fails, 4% passes."""
    for mem, attn_mem in (({("sqa", 1024): growth}, {}), ({}, {("sqa", 32768): growth})):
        cur = write_run(tmp_path / "cur.csv", mem=mem, attn_mem=attn_mem)
        report = compare(base, cur, Limits())
        assert [v.cell.split()[0] for v in report.failing] == (["sqa"] if fails else [])


def test_ratio_drop_fails_even_on_another_gpu(base, tmp_path):
    # Everything 2x slower on another GPU, and sqa 2.2x: its speed-up over mha drops by 9%.
    cur = write_run(tmp_path / "cur.csv", gpu="NVIDIA A100", scale={"*": 2.0, ("sqa", 1024): 2.2})
    result = invoke(base, cur)
    assert result.exit_code == 1
    text = one_line(result)
    assert "the GPU models differ" in text and "the speed-up ratio and memory gates apply" in text
    assert "drop of the speed-up over mha (2.00x -> 1.82x)" in text


def test_ratio_drop_of_3_percent_passes_and_uses_the_baseline_option(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.03})
    assert compare(base, cur, Limits()).ok
    cur = write_run(tmp_path / "cur2.csv", scale={("mha", 1024): 0.9})  # mha faster: every speed-up drops 10%
    assert not compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1)).ok
    assert compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1, baseline_variant="gqa")).ok


def test_a_speedup_drop_past_the_limit_that_its_noise_cannot_confirm_is_not_judged(base, tmp_path):
    """sqa 6.5% slower at 8% spread (under the 10% that marks a cell noisy): its speed-up over mha falls from
    2.00x to 1.88x, 6% at the point, past the 5% limit, but its noise allows a drop under 5%: neither a pass
    nor a failure. The gate cannot tell, and fails unless --allow-unjudged (once, it passed here)."""
    wide = [0.96 + 0.08 * i / 9 for i in range(10)]
    random.Random(1).shuffle(wide)
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.065}, samples={("sqa", 1024): wide})
    report = compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1))
    (verdict,) = [v for v in report.cells if v.cell.startswith("sqa paper n=1024")]
    assert not report.ok and not verdict.problems
    (said,) = verdict.unjudged
    assert (
        said.startswith("+6% drop of the speed-up over mha (2.00x -> 1.88x) (90% interval ") and "cannot tell" in said
    )
    assert compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1, allow_unjudged=True)).ok


def test_a_slowdown_the_clock_explains_is_clock_bound_not_a_regression(base, tmp_path):
    """nvbench's cycle space: 25% slower in time at an SM clock 25% lower is the same cycles: "slower,
    clock-bound", not judged (the gate fails unless allowed), never a code regression and never a pass; 25%
    slower at a clock only 5% lower is still a regression."""
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25}, clock={("sqa", 32768): 1980 / 1.25})
    result = invoke(base, cur, "--max-ratio-drop", "50%")  # the speed-up within the run dropped too: not this test
    text = one_line(result)
    assert result.exit_code == 1 and "slower, clock-bound" in text and "SM clock 1980 -> 1584 MHz" in text
    assert "not a regression of the code" in text and "cannot tell: 0 failed, 1 not judged" in text
    assert invoke(base, cur, "--allow-unjudged", "--max-ratio-drop", "50%").exit_code == 0
    slower = write_run(tmp_path / "slower.csv", scale={("sqa", 32768): 1.25}, clock={("sqa", 32768): 1980 * 0.95})
    result = invoke(base, slower, "--max-ratio-drop", "50%")
    assert result.exit_code == 1 and "regression: sqa paper n=32768" in one_line(result)
    assert "clock-bound" not in one_line(result)


def test_another_gpu_model_turns_off_the_clock_gates_only_and_says_so(base, tmp_path):
    """Twice as slow on an A100: time and the geometric mean are not compared across models (said in the verdict
    line), the speed-up ratio and memory gates still are; --strict applies them all."""
    cur = write_run(tmp_path / "cur.csv", gpu="NVIDIA A100", scale={"*": 2.0})
    result = invoke(base, cur)
    assert result.exit_code == 0, result.output
    assert (
        "no regression: 0 failed, 0 not judged, 8 passed of 8 cells; time and geometric-mean gates off: the GPU "
        "models differ" in one_line(result)
    )
    assert invoke(base, cur, "--strict").exit_code == 1
    grown = write_run(tmp_path / "grown.csv", gpu="NVIDIA A100", scale={"*": 2.0}, mem={("sqa", 1024): 2.0})
    assert "+100% memory" in one_line(invoke(base, grown)) and invoke(base, grown).exit_code == 1


@pytest.mark.parametrize("status", ["oom", "error", "skipped"])
def test_ok_cell_now_failed_is_named_with_its_status_and_error(base, tmp_path, status):
    cur = write_run(tmp_path / "cur.csv", status={("xsqa", 32768): status})
    result = invoke(base, cur)
    assert result.exit_code == 1
    text = one_line(result)
    assert "regression: xsqa paper n=32768" in text and f"now {status}" in text
    expected = {"oom": "CUDA out of memory", "error": "CUDNN_STATUS_EXECUTION_FAILED", "skipped": "no kernel"}
    assert expected[status] in text


def test_a_cell_the_current_run_did_not_measure_is_not_judged(base, tmp_path):
    """A --budget run stops starting cells: what it left out is not a regression, nor a pass; it fails the gate
    unless --allow-unjudged, and never counts as failed."""
    cur = write_run(tmp_path / "cur.csv", drop={("gqa", 1024)})
    result = invoke(base, cur)
    text = one_line(result)
    assert result.exit_code == 1 and "not measured in the current run" in text
    assert "cannot tell: 0 failed, 1 not judged, 7 passed of 8 cells" in text
    assert invoke(base, cur, "--allow-unjudged").exit_code == 0


def test_backend_change_is_a_note_and_still_gated(base, tmp_path):
    cudnn = {(v, n): "sdpa-cudnn" for v in ("mha", "gqa", "sqa", "xsqa") for n in LENGTHS}
    cur = write_run(tmp_path / "cur.csv", kernel=cudnn)
    result = invoke(base, cur)
    assert result.exit_code == 0, result.output
    assert "kernel sdpa-flash -> sdpa-cudnn" in one_line(result)
    slower = write_run(tmp_path / "slower.csv", kernel=cudnn, scale={("sqa", 32768): 1.25})
    result = invoke(base, slower)
    assert result.exit_code == 1 and "+25% time" in result.output


def test_unknown_baseline_variant_exits_2_naming_the_variants(base):
    result = invoke(base, base, "--baseline", "mhaa")
    assert result.exit_code == 2
    assert "--baseline 'mhaa' is not in the data; variants there: mha, gqa, sqa, xsqa" in one_line(result)


def test_limits_are_options(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    limits = ["--max-slowdown", "0.3", "--max-geomean-slowdown", "0.1", "--max-ratio-drop", "0.3"]
    assert invoke(base, cur, *limits).exit_code == 0


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such results file"), ("", "cannot read"), ("a,b\n1,2\n", "missing columns"), ("\x00\xff garbage", "")],
)
def test_bad_input_exits_2(base, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    if content is not None:
        bad.write_bytes(content.encode("latin-1"))
    result = invoke(base, bad)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_cell_in_common_exits_2(base, tmp_path):
    other = write_run(tmp_path / "other.csv")
    other.write_text(other.read_text().replace(",paper,", ",wide,"))
    result = invoke(base, other)
    assert result.exit_code == 2 and "no cell in common" in result.output


def test_title_names_the_files_in_the_order_given(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv")
    text = one_line(invoke(base, cur))
    assert text.index("base.csv") < text.index("cur.csv")


def test_step_summary_and_json(base, tmp_path):
    summary = tmp_path / "summary.md"
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    out = tmp_path / "bench.json"
    result = invoke(base, cur, "--json", out, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    text = summary.read_text()
    assert "**regression**" in text and "| cell | baseline ms |" in text and "FAIL: +25% time" in text
    entries = json.loads(out.read_text())
    assert len(entries) == 8 and {e["unit"] for e in entries} == {"ms"}
    assert all({"name", "unit", "value"} <= set(e) for e in entries)


def test_resumed_file_uses_the_latest_row(tmp_path):
    base = write_run(tmp_path / "b.csv", status={("sqa", 1024): "oom"})
    cur = write_run(tmp_path / "c.csv")
    assert compare(base, cur, Limits()).ok  # an oom in the baseline cannot regress
    both = tmp_path / "both.csv"
    both.write_text(base.read_text() + "".join(cur.read_text().splitlines(keepends=True)[1:]))
    report = compare(both, cur, Limits())
    assert report.ok and len(report.cells) == 8  # the later ok row of sqa 1k counts


def test_attention_memory_growth_fails_where_the_peak_cannot_see_it(base, tmp_path):
    """The paper preset's peak is its logits; the attention's own memory is gated apart."""
    cur = write_run(tmp_path / "cur.csv", attn_mem={("sqa", 32768): 1.2})
    report = compare(base, cur, Limits())
    (failing,) = report.failing
    assert failing.cell.startswith("sqa paper n=32768") and failing.problems == ["+20% attention memory (limit 5%)"]


def test_a_speedup_drop_its_interval_already_places_past_the_limit_fails_even_beside_a_noisy_row(base, tmp_path):
    """mha's cell in the current run was noisy (three repeats, spread 85%), every repeat far faster than the
    baseline's: xsqa's speed-up over mha collapses, and even the drop's better end (25%) is past the 5% limit.
    That is a failure, not "not judged" (which --allow-unjudged would pass); on another GPU model too, where the
    ratio gate still applies. The same drop measured cleanly fails as well."""
    noisy = [0.4, 0.41, 0.75]
    cur = write_run(tmp_path / "cur.csv", samples={("mha", 1024): noisy})
    report = compare(base, cur, Limits())
    (verdict,) = [v for v in report.cells if v.cell.startswith("xsqa paper n=1024")]
    (said,) = verdict.problems
    assert said.startswith("+59% drop of the speed-up over mha (3.33x -> 1.37x) (90% interval +24.9% to")
    result = invoke(base, cur, "--allow-unjudged")
    assert result.exit_code == 1 and "regression: 3 failed" in one_line(result)
    other_gpu = write_run(tmp_path / "a100.csv", gpu="NVIDIA A100", samples={("mha", 1024): noisy})
    assert invoke(base, other_gpu).exit_code == 1
    quiet = write_run(tmp_path / "quiet.csv", scale={("mha", 1024): 0.41})  # the same drop, measured cleanly
    assert not compare(base, quiet, Limits(max_slowdown=1, max_geomean_slowdown=1)).ok


def test_a_broad_slowdown_the_noise_cannot_place_is_not_judged(tmp_path):
    """Every cell 5% slower at 60% spread: the geometric mean's interval straddles its 3% limit. It is neither a
    pass (as it once was, with a note) nor a failure: the gate cannot tell, and says so in its verdict line."""
    wide = [0.7, 1.3, 0.8, 1.2, 1.0, 0.75, 1.25, 0.9, 1.1, 1.0]  # 60% spread in every cell
    cells = {(v, n): wide for v in ("mha", "gqa", "sqa", "xsqa") for n in (1024, 32768)}
    base = write_run(tmp_path / "b.csv", samples=cells)
    cur = write_run(tmp_path / "c.csv", scale={"*": 1.05}, samples=cells)  # every cell 5% slower
    report = compare(base, cur, Limits())
    assert not report.ok and not report.failing and not report.problems
    assert report.geomean_ratio == pytest.approx(1.05, rel=1e-3) and report.geomean_low < 1.03 < report.geomean_high
    assert report.geomean_unjudged.startswith("geometric-mean +5% time (90% interval")
    assert "the geometric mean not judged" in report.verdict()
    assert compare(base, cur, Limits(allow_unjudged=True)).ok


def test_a_file_holding_a_cell_twice_says_so(tmp_path):
    first = write_run(tmp_path / "a.csv", run_id="first")
    second = write_run(tmp_path / "b.csv", run_id="second")
    both = tmp_path / "both.csv"
    both.write_text(first.read_text() + "".join(second.read_text().splitlines(keepends=True)[1:]))
    assert compare(both, second, Limits()).baseline_runs == 2  # as a baseline: two runs, each its own noise
    report = compare(second, both, Limits())  # as the run under test: the later row of each cell
    assert any("8 cells measured twice as ok (runs first, second); the later row of each is used" in w
               for w in report.warnings)  # fmt: skip


# --- round three: the recorded baseline, decode noise, limits, unwritable outputs, bad values --------


def test_the_recorded_baseline_is_the_ratio_gates_and_is_named(tmp_path):
    """Two decode runs recorded with --baseline gqa; in the second every variant is 30% slower against gqa
    (gqa itself 30% faster, so its own time gate passes). The speed-ups over gqa dropped: a regression."""
    base = write_run(tmp_path / "b.csv", mode="decode", baseline="gqa")
    cur = write_run(tmp_path / "c.csv", mode="decode", baseline="gqa", scale={("gqa", n): 0.7 for n in LENGTHS})
    report = compare(base, cur, Limits())
    assert report.baseline_variant == "gqa" and report.baseline_source == "recorded by both runs"
    assert not report.ok
    drops = [v for v in report.failing if any("speed-up over gqa" in p for p in v.problems)]
    assert {v.cell.split()[0] for v in drops} == {"mha", "sqa", "xsqa"}
    result = invoke(base, cur)
    assert result.exit_code == 1 and "speed-ups over gqa (recorded by both runs)" in one_line(result)


def test_runs_that_recorded_different_baselines_say_which_is_used(tmp_path):
    base = write_run(tmp_path / "b.csv", baseline="gqa")
    cur = write_run(tmp_path / "c.csv", baseline="mha")
    report = compare(base, cur, Limits())
    assert report.baseline_variant == "mha" and "the runs differ (gqa vs mha)" in report.baseline_source


def test_decode_cells_are_judged_over_their_passes_not_their_tokens(tmp_path):
    """A decode repeat is a pass of T tokens. Single tokens vary widely (here 2x within each pass), passes
    hardly: the cell is not noisy, and a 25% slower run is a regression (it was never judged before)."""
    from sqabench.speed.cells import Timing

    per_token = [1.0, 2.0] * 16  # 32 tokens a pass, min 1 and max 2: a token spread of 67%
    calls = tuple(t * f for f in (0.999, 1.0, 1.001) for t in per_token)  # three passes
    timing = Timing.of_calls(0.0, calls, 32)
    assert timing.samples_ms == pytest.approx((1.4985, 1.5, 1.5015)) and timing.spread == pytest.approx(0.002)
    assert len(timing.token_samples_ms) == 96 and not timing.noisy
    passes = {(v, n): [s / 1.5 for s in timing.samples_ms] for v in ("mha", "gqa", "sqa", "xsqa") for n in LENGTHS}
    base = write_run(tmp_path / "b.csv", mode="decode", samples=passes)
    cur = write_run(tmp_path / "c.csv", mode="decode", samples=passes, scale={("sqa", 1024): 1.25})
    (failing,) = compare(base, cur, Limits()).failing
    assert failing.cell.startswith("sqa paper n=1024") and "+25% time" in failing.problems[0]


def test_a_decode_row_keeps_its_tokens_apart(tmp_path):
    """A real decode cell on the CPU: samples_ms has one mean per pass, token_samples_ms every token."""
    out = tmp_path / "d.csv"
    args = ["run", "--device", "cpu", "--mode", "decode", "--variants", "gqa", "--seq", "32", "--batch", "1",
            "--new-tokens", "4", "--warmup", "0", "--repeats", "3", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(out.open())
    passes = [float(s) for s in row["samples_ms"].split(";")]
    tokens = [float(s) for s in row["token_samples_ms"].split(";")]
    assert len(passes) == 3 and len(tokens) == 12
    for i, mean in enumerate(passes):
        assert mean == pytest.approx(sum(tokens[4 * i : 4 * i + 4]) / 4, rel=1e-5)
    assert float(row["spread"]) == pytest.approx((max(passes) - min(passes)) / sorted(passes)[1], rel=1e-2)


@pytest.mark.parametrize("flag", ["--max-slowdown", "--max-mem-growth", "--max-ratio-drop", "--max-geomean-slowdown"])
@pytest.mark.parametrize(
    "value, says",
    [("nan", "is not a limit; give a percentage or a fraction, e.g. 10% or 0.10"), ("inf", "is not a limit"),
     ("-0.1", "-0.1 must be in [0%, 100%]"), ("10", "10: a bare number is a fraction (0.10 = 10%); did you mean 10%?"),
     ("150%", "150% must be in [0%, 100%]"), ("ten", "is not a limit")],
)  # fmt: skip
def test_a_limit_that_is_not_a_fraction_or_a_percentage_is_refused(base, flag, value, says):
    result = invoke(base, base, flag, value)
    assert result.exit_code == 2 and says in one_line(result) and flag in one_line(result)


def test_an_unwritable_json_is_refused_before_the_comparison(base, tmp_path):
    for target, said in ((tmp_path, "is a directory"), (tmp_path / "no" / "b.json", "does not exist")):
        result = invoke(base, base, "--json", target)
        assert result.exit_code == 2 and said in one_line(result) and "Traceback" not in result.output
        assert "no regression" not in result.output  # refused before any verdict


def test_an_unwritable_step_summary_never_masks_the_verdict(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    summary = {"GITHUB_STEP_SUMMARY": str(tmp_path)}  # a directory: cannot be appended to
    regressed = invoke(base, cur, env=summary)
    assert regressed.exit_code == 1 and "regression: sqa paper n=32768" in one_line(regressed)
    assert "GITHUB_STEP_SUMMARY" in regressed.output and "Traceback" not in regressed.output
    passed = invoke(base, base, env=summary)
    assert passed.exit_code == 2 and "no regression" in passed.output and "cannot write" in one_line(passed)


@pytest.mark.parametrize(
    "column, value, said",
    [("time_ms", "0", "time_ms=0 in an ok row"), ("time_ms", "-3", "time_ms=-3 in an ok row"),
     ("time_ms", "nan", "time_ms=nan in an ok row; times must be"), ("time_ms", "inf", "time_ms=inf in an ok row"),
     ("time_ms_min", "-1", "time_ms_min=-1"), ("samples_ms", "1;x;2", "samples_ms='1;x;2' is not"),
     ("samples_ms", "1;-2;3", "times must be finite and > 0"), ("seq_len", "0", "seq_len='0' is not a positive")],
)  # fmt: skip
def test_a_value_no_run_writes_is_refused_by_check_plot_and_resume(base, tmp_path, column, value, said):
    """One validation for every reader of a results file."""
    bad = tmp_path / "bad.csv"
    rows = list(csv.DictReader(base.open()))
    rows[0][column] = value
    with bad.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    for args in (
        ["check", str(base), str(bad)],
        ["plot", str(bad), "--out", str(tmp_path / "p")],
        ["run", "--device", "cpu", "--variants", "mha", "--seq", "64", "--resume", "--out", str(bad)],
    ):
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 2, (args[0], result.output)
        assert said in one_line(result) and "line 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("column, factor", [("time_ms", 1.3), ("samples_ms", 1.3)])
def test_a_row_whose_median_and_samples_disagree_is_refused(base, tmp_path, column, factor):
    """mha's time_ms 1.3x its samples' median (or the samples 1.3x the time): one source must drive both the
    figure and the verdict, so the row is malformed: exit 2, naming the file, the line and the column."""
    import csv

    cur = write_run(tmp_path / "cur.csv")
    rows = list(csv.DictReader(cur.open()))
    for row in rows:
        if row["variant"] == "mha" and row["seq_len"] == "1024":
            if column == "time_ms":
                row["time_ms"] = f"{float(row['time_ms']) * factor:.6g}"
            else:
                row["samples_ms"] = ";".join(f"{float(s) * factor:.6g}" for s in row["samples_ms"].split(";"))
    with cur.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = invoke(base, cur)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{cur} line 2: time_ms=" in " ".join(result.output.split()) and "disagree with its samples" in " ".join(
        result.output.split())  # fmt: skip


@pytest.mark.parametrize("samples", ["", None])
def test_a_file_without_repeats_cannot_be_judged_exit_2(base, tmp_path, samples):
    """An empty samples_ms, or no such column: no noise can be stated, so no verdict (docs/ci.md)."""
    import csv

    cur = write_run(tmp_path / "cur.csv")
    rows = list(csv.DictReader(cur.open()))
    columns = [c for c in rows[0] if samples is not None or c != "samples_ms"]
    for row in rows:
        row["samples_ms"] = samples or ""
    with cur.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    result = invoke(base, cur)
    assert result.exit_code == 2 and "0 recorded repeats (samples_ms): its noise cannot be judged" in " ".join(
        result.output.split())  # fmt: skip


# --- three answers, one rule: holes in the gate that once passed open, and noise between runs -------------


@pytest.mark.parametrize(
    "low, high, state",
    [(0.11, 0.20, "fail"), (0.05, 0.10, "pass"), (0.05, 0.1000001, "not judged"), (0.1000001, 0.3, "fail"),
     (-0.5, 0.5, "not judged"), (-0.2, -0.1, "pass"), (0.05, 0.30, "not judged")],
)  # fmt: skip
def test_every_gate_has_three_answers_by_one_rule(low, high, state):
    """Pass when the worse end is within the limit, fail when the better end is beyond it, else cannot tell."""
    from sqabench.speed.check import Interval

    assert Interval((low + high) / 2, low, high).judge(0.10) == state


def test_a_reason_never_contradicts_itself_through_rounding():
    from sqabench.speed.check import Interval

    said = Interval(0.1004, 0.10004, 0.1008).said("time", 0.10)
    assert said == "+10.04% time (90% interval +10.004% to +10.1%; limit 10%)", said


def test_a_slowdown_whose_interval_reaches_past_the_limit_is_not_judged_never_ok(base, tmp_path):
    """Hole 2: a 5% slowdown measured at 50% spread, its interval reaching far past +10%, once read ok."""
    wide = [0.75, 1.25, 0.8, 1.2, 1.0, 0.85, 1.15, 0.9, 1.1, 1.0]
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.05}, samples={("sqa", 1024): wide})
    report = compare(base, cur, Limits(max_ratio_drop=1))
    (verdict,) = [v for v in report.cells if v.cell.startswith("sqa paper n=1024")]
    assert verdict.ratio_high > 1.10 and verdict.state == "not judged" and not report.ok
    assert verdict.unjudged[0].startswith("+5% time (90% interval")


def test_a_speedup_drop_of_a_three_repeat_cell_fails_or_is_not_judged_never_passes(base, tmp_path):
    """Hole 1: sqa's speed-up 2.00x -> 1.82x (9%, limit 5%) from three repeats once passed."""
    three = [0.99, 1.0, 1.01]
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.1}, samples={("sqa", 1024): three})
    report = compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1))
    (verdict,) = [v for v in report.cells if v.cell.startswith("sqa paper n=1024")]
    assert verdict.state in ("fail", "not judged") and not report.ok
    assert any("drop of the speed-up over mha (2.00x -> 1.82x)" in said for said in verdict.problems + verdict.unjudged)
    if verdict.state == "not judged":
        assert compare(base, cur, Limits(max_slowdown=1, max_geomean_slowdown=1, allow_unjudged=True)).ok


def test_a_limit_typed_as_a_percentage_gates_as_its_fraction(base, tmp_path):
    """Hole 4: --max-slowdown 10 --max-geomean-slowdown 3 once read 1000% and 300%; now refused, and 10% works."""
    cur = write_run(tmp_path / "cur.csv", scale={"*": 1.3})
    assert invoke(base, cur, "--max-slowdown", "10", "--max-geomean-slowdown", "3").exit_code == 2
    typed = invoke(base, cur, "--max-slowdown", "10%", "--max-geomean-slowdown", "3%")
    assert typed.exit_code == 1 and "limit 10%" in typed.output
    assert invoke(base, cur, "--max-slowdown", "0.10").exit_code == 1
    assert invoke(base, cur, "--max-slowdown", "35%", "--max-geomean-slowdown", "0.35").exit_code == 0


def test_a_mig_slice_of_the_same_board_keeps_every_gate_and_is_named(base, tmp_path):
    """Hole 5: the same runner on a MIG slice, every cell 30% slower and memory doubled, once exited 0."""
    cur = write_run(tmp_path / "cur.csv", gpu="NVIDIA H100 80GB HBM3 MIG 3g.40gb", scale={"*": 1.3},
                    mem={("sqa", 1024): 2.0})  # fmt: skip
    result = invoke(base, cur)
    text = one_line(result)
    assert result.exit_code == 1 and "regression: 8 failed" in text
    assert (
        "the model is one (nvidia h100 80gb hbm3); a MIG slice: NVIDIA H100 80GB HBM3 MIG 3g.40gb (slice 3g.40gb)"
        in text
    )
    assert "+100% memory" in text


def test_a_missing_memory_value_is_said_never_silent(base, tmp_path):
    cur = tmp_path / "cur.csv"
    rows = list(csv.DictReader(base.open()))
    for row in rows:
        row["peak_mem_bytes"] = ""
    with cur.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    report = compare(base, cur, Limits())
    assert report.ok
    assert any("the memory gate judged 8 cells less: no peak memory recorded in the current run" in w
               for w in report.warnings)  # fmt: skip
    assert all("memory not gated: none recorded in the current run" in v.notes for v in report.cells)


def test_each_cell_is_counted_once_in_its_worst_state(base, tmp_path):
    """A cell that fails its time gate and cannot tell its speed-up is one failed cell, not also an unjudged one;
    the verdict line's counts add up to the cells judged."""
    wide = [0.6, 1.4, 0.7, 1.3, 1.0, 0.8, 1.2, 0.9, 1.1, 1.0]
    cur = write_run(tmp_path / "cur.csv", scale={("xsqa", 1024): 1.5, ("mha", 1024): 1.0},
                    samples={("mha", 1024): wide})  # fmt: skip
    report = compare(base, cur, Limits())
    (verdict,) = [v for v in report.cells if v.cell.startswith("xsqa paper n=1024")]
    assert verdict.problems and verdict.state == "fail"
    assert verdict not in report.unjudged
    assert len(report.failing) + len(report.unjudged) + len(report.passed) == len(report.cells) == 8
    text = report.verdict()
    counts = [int(n) for n in re.findall(r"(\d+) (?:failed|not judged|passed)", text)]
    assert sum(counts) == 8, text


def test_the_noise_between_baseline_runs_widens_every_interval(tmp_path):
    """Three baseline runs whose medians move by about 9% between runs (as a shared runner's do): a current run
    12% slower than the first of them fails against that one run alone, but the three runs say such a move is
    their own noise (not judged). A 2x slowdown still fails against all three; the table says how many runs."""
    runs = [write_run(tmp_path / f"b{i}.csv", run_id=f"b{i}", scale={"*": s}) for i, s in enumerate((1.0, 1.1, 0.92))]
    cur = write_run(tmp_path / "cur.csv", run_id="cur", scale={"*": 1.12})
    alone = compare(runs[0], cur, Limits())
    assert len(alone.failing) == 8 and alone.baseline_runs == 1
    assert any("the baseline is one run" in w for w in alone.warnings)
    three = compare(runs, cur, Limits())
    assert three.baseline_runs == 3 and not three.failing and len(three.unjudged) == 8
    assert not any("the baseline is one run" in w for w in three.warnings)
    (first,) = [v for v in three.cells if v.cell.startswith("mha paper n=1024")]
    assert first.baseline_ms == pytest.approx(10.0 * (1.0 * 1.1 * 0.92) ** (1 / 3), rel=1e-3)  # geometric mean
    logs = [math.log(s) for s in (1.0, 1.1, 0.92)]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = 2.919986 * sd * math.sqrt(1 + 1 / 3)  # t(2) at 95%, by table
    assert first.ratio_low == pytest.approx(math.exp(math.log(1.12) - mean - half), rel=1e-3)
    assert first.ratio_high == pytest.approx(math.exp(math.log(1.12) - mean + half), rel=1e-3)
    slow = write_run(tmp_path / "slow.csv", run_id="slow", scale={"*": 2.0})
    assert len(compare(runs, slow, Limits()).failing) == 8
    one_file = tmp_path / "baseline.csv"  # the same three runs in one file, as run --runs 3 writes them
    one_file.write_text(runs[0].read_text() + "".join("".join(r.read_text().splitlines(True)[1:]) for r in runs[1:]))
    assert compare(one_file, cur, Limits()).baseline_runs == 3
    result = invoke(*runs, cur, "--allow-unjudged")
    assert result.exit_code == 0 and "3 baseline runs" in one_line(result)


def test_a_changed_environment_and_extra_cells_are_named(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv")
    rows = list(csv.DictReader(cur.open()))
    for row in rows:
        row["torch_version"], row["git_sha"] = "2.13.0", "def"
    extra = dict(rows[0], variant="lsqa", n_q_heads="12", run_id="run")
    with cur.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows([*rows, extra])
    text = " ".join(compare(base, cur, Limits()).warnings)
    assert "torch_version changed: 2.11.0 -> 2.13.0" in text and "git_sha changed: abc -> def" in text
    assert "1 cell only in the current run, not gated: lsqa paper n=1024" in text


def test_the_rerun_benchmarks_forgery_is_a_row_a_run_writes_and_the_gate_catches_it(base, tmp_path):
    """benchmarks/gate_reruns.py forges regressions from real rows: each stays whole (its median, minimum and
    maximum its samples'), and a 30% slower cell against a quiet baseline fails."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "gate_reruns.py"
    spec = importlib.util.spec_from_file_location("gate_reruns", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    forged = module.forged(base, tmp_path / "forged.csv", {"sqa": 1.3})
    report = compare(base, forged, Limits())  # loading it checks every row as a run writes it
    assert [v.cell.split()[0] for v in report.failing] == ["sqa", "sqa"]
    assert module.judge(base, forged)[0] == "fail"


def test_check_needs_a_baseline_and_a_current_file(base):
    result = invoke(base)
    assert result.exit_code == 2 and "check needs a BASELINE and a CURRENT results CSV" in one_line(result)
