import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sqabench.cli import app
from sqabench.plots import FIGURES, paper_table
from test_check import write_run

runner = CliRunner()


def test_paper_table_matches_the_issue():
    table = paper_table()
    assert list(table.index) == [1024, 4096, 32768, 131072, 200000]
    assert list(table.columns) == ["xsqa", "sqa", "ssqa", "swa", "mqa", "gqa", "mha"]
    assert table.loc[1024, "xsqa"] == 0.0570 and table.loc[1024, "mha"] == 0.0869
    assert table.loc[32768, "swa"] == 0.1871 and table.loc[131072, "sqa"] == 0.6308
    assert table.loc[200000, "xsqa"] == 0.8194 and table.loc[200000, "mha"] == 2.8734
    assert table.loc[4096, "gqa"] == 0.1027 and table.loc[200000, "ssqa"] == 1.4824


def assert_figures(out: Path):
    for name in FIGURES:
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 5_000, path


def test_plot_from_synthetic_csvs_of_two_gpus(tmp_path):
    a = write_run(tmp_path / "a.csv", status={("mha", 32768): "oom"})
    b = write_run(tmp_path / "b.csv", gpu="NVIDIA A100", scale={"*": 2.0})
    result = runner.invoke(app, ["plot", str(a), str(b), "--out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert_figures(tmp_path / "plots")


def test_plot_from_a_real_cpu_run(tmp_path):
    run = tmp_path / "run.csv"
    args = ["run", "--device", "cpu", "--seq", "64,128", "--batch", "1", "--warmup", "0", "--repeats", "1"]
    result = runner.invoke(app, [*args, "--variants", "mha,sqa,xsqa", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["plot", str(run), "--out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert_figures(tmp_path / "plots")


@pytest.mark.parametrize("content", ["", "variant,seq_len\nmha,1k\n", "\x00\x01\x02"])
def test_bad_csv_exits_2(tmp_path, content):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = runner.invoke(app, ["plot", str(bad), "--out", str(tmp_path / "plots")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "plots").exists()


def test_header_only_csv_exits_2(tmp_path):
    path = tmp_path / "empty.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerow(__import__("sqabench.results").results.COLUMNS)
    result = runner.invoke(app, ["plot", str(path)])
    assert result.exit_code == 2 and "has no rows" in result.output
