import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sqabench.check import Limits, compare
from sqabench.cli import app
from sqabench.results import COLUMNS, CsvWriter

runner = CliRunner()
LENGTHS = (1024, 32768)
TIMES = {"mha": 10.0, "gqa": 9.0, "sqa": 5.0, "xsqa": 3.0}


def write_run(path: Path, gpu="NVIDIA H100 80GB HBM3", scale=None, status=None, mem=None, drop=()) -> Path:
    """A synthetic results CSV: every variant at two lengths; ``scale`` multiplies one cell's time."""
    scale, status, mem = scale or {}, status or {}, mem or {}
    writer = CsvWriter(path)
    for n in LENGTHS:
        for variant, ms in TIMES.items():
            if (variant, n) in drop:
                continue
            t = ms * n / 1024 * scale.get((variant, n), scale.get("*", 1.0))
            row = {c: "" for c in COLUMNS}
            row.update(
                run_id="r", variant=variant, preset="paper", n_heads=16, n_q_heads={"sqa": 8, "xsqa": 4}.get(variant, 16),
                n_kv_heads=4, head_dim=16, d_model=256, n_layers=8, causal=False, mode="fwd", dtype="bf16",
                device="cuda", kernel="sdpa-flash", seq_len=n, batch=max(1, 131072 // n), warmup=2, repeats=10,
                time_ms=t, time_ms_min=t * 0.99, time_ms_max=t * 1.01, flops=1e12, tflops=1e12 / t / 1e9,
                peak_mem_bytes=int(1e9 * mem.get((variant, n), 1.0)), gpu_name=gpu, git_sha="abc",
                status=status.get((variant, n), "ok"),
            )  # fmt: skip
            if row["status"] != "ok":
                row.update(time_ms="", tflops="")
            writer.write(row)
    return path


@pytest.fixture
def base(tmp_path):
    return write_run(tmp_path / "base.csv")


def invoke(*args, env=None):
    return runner.invoke(app, ["check", *map(str, args)], env=env)


def test_identical_runs_pass(base):
    result = invoke(base, base)
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output


def test_one_cell_25_percent_slower_fails_and_is_named(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    result = invoke(base, cur)
    assert result.exit_code == 1
    assert "regression: sqa paper n=32768" in result.output.replace("\n", " ")
    assert "+25% time" in result.output


def test_small_noise_passes(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 1024): 1.02})
    assert invoke(base, cur).exit_code == 0


def test_geomean_slowdown_fails(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={"*": 1.05})  # every cell 5% slower: each passes alone
    result = invoke(base, cur)
    assert result.exit_code == 1 and "geometric-mean slowdown +5.0%" in result.output


def test_memory_growth_fails(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", mem={("xsqa", 1024): 1.10})
    result = invoke(base, cur)
    assert result.exit_code == 1 and "+10% memory" in result.output


def test_ratio_drop_fails_even_on_another_gpu(base, tmp_path):
    # Everything 2x slower on another GPU, and sqa 2.2x: its speed-up over mha drops by 9%.
    cur = write_run(tmp_path / "cur.csv", gpu="NVIDIA A100", scale={"*": 2.0, ("sqa", 1024): 2.2})
    result = invoke(base, cur)
    assert result.exit_code == 1
    assert "GPUs differ" in result.output and "only the speed-up ratio gate applies" in result.output
    assert "speed-up over mha 2.00x -> 1.82x" in result.output


def test_different_gpu_applies_only_the_ratio_gate(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", gpu="NVIDIA A100", scale={"*": 2.0})
    result = invoke(base, cur)
    assert result.exit_code == 0, result.output
    assert "GPUs differ" in result.output
    assert invoke(base, cur, "--strict").exit_code == 1


def test_missing_or_not_ok_cell_fails(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", status={("xsqa", 32768): "oom"}, drop={("gqa", 1024)})
    result = invoke(base, cur)
    assert result.exit_code == 1
    assert "now oom" in result.output and "missing" in result.output


def test_limits_are_options(base, tmp_path):
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    assert invoke(base, cur, "--max-slowdown", "0.3", "--max-geomean-slowdown", "0.1", "--max-ratio-drop", "0.3").exit_code == 0


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


def test_step_summary_and_json(base, tmp_path):
    summary = tmp_path / "summary.md"
    cur = write_run(tmp_path / "cur.csv", scale={("sqa", 32768): 1.25})
    out = tmp_path / "bench.json"
    result = invoke(base, cur, "--json", out, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    text = summary.read_text()
    assert "## sqabench check: **regression**" in text and "| cell | baseline ms |" in text and "FAIL: +25% time" in text
    entries = json.loads(out.read_text())
    assert len(entries) == 8 and {e["unit"] for e in entries} == {"ms"}
    assert all({"name", "unit", "value"} <= set(e) for e in entries)


def test_resumed_file_uses_the_latest_row(tmp_path):
    base = write_run(tmp_path / "b.csv", status={("sqa", 1024): "oom"})
    cur = write_run(tmp_path / "c.csv")
    report = compare(base, cur, Limits())
    assert report.ok  # an oom in the baseline cannot regress
