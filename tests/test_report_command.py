"""``sqabench report FILE...``: a finished run's tables from its file alone (speed or quality, any version), no
torch, and the statistics of this version applied to a file of an older one."""

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rows import write_run
from sqabench.cli import app

FIXTURES = Path(__file__).parent / "fixtures"
KJV_2_SEEDS = FIXTURES / "quality-kjv-bytes-2seeds.csv"  # the KJV example as first committed (18df2c6): 2 seeds
runner = CliRunner()


def report(*args: str):
    return runner.invoke(app, ["report", *map(str, args)], env={"COLUMNS": "250"})


def test_the_2_seed_kjv_example_reads_with_each_pairs_own_noise_one_family_and_its_warning():
    """An older file (2 seeds, lacking two columns) reads with today's analysis: each pair on its own two
    differences (1 df), every printed verdict one family, and the warning that 2 seeds are exploratory."""
    from sqabench.quality.rows import read_any
    from sqabench.quality.summary import analyse

    rows, missing = read_any(KJV_2_SEEDS)
    analysis = analyse(rows, "mha")
    (ssqa,) = [s for s in analysis.summaries if s.variant == "ssqa"]
    assert ssqa.comparison.method == "paired t" and ssqa.comparison.df == 1
    assert analysis.family == 7 + 3 == ssqa.comparison.family  # 7 differences, 3 claims
    assert set(missing) == {"eval_docs", "flops_counted"}
    result = report(KJV_2_SEEDS)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "family: the 10 verdicts above are one family, decided by Holm's step-down" in text
    assert "exploratory: 2 seeds (fewer than 5)" in text
    assert "written by an older sqabench: it lacks eval_docs, flops_counted" in text
    assert "the paper's claims as closeness" in text


def test_a_speed_csv_reads_as_its_run_printed_it_with_another_baseline_on_request(tmp_path):
    path = write_run(tmp_path / "r.csv")
    result = report(path)
    assert result.exit_code == 0, result.output
    assert "NVIDIA H100" in result.output and "2.00x" in result.output  # sqa over mha at 1k: 10 ms / 5 ms
    by_gqa = report(path, "--baseline", "gqa")
    assert by_gqa.exit_code == 0 and "1.80x" in by_gqa.output  # sqa over gqa: 9 ms / 5 ms


def test_a_file_of_an_older_sqabench_says_what_it_lacks(tmp_path):
    import csv

    path = write_run(tmp_path / "r.csv")
    rows = list(csv.DictReader(path.open()))
    dropped = ("energy_j", "attention_share")
    old = tmp_path / "old.csv"
    with old.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[c for c in rows[0] if c not in dropped], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    result = report(old)
    assert result.exit_code == 0, result.output
    assert "written by an older sqabench: it lacks attention_share, energy_j (shown as -)" in " ".join(
        result.output.split())  # in the file's column order  # fmt: skip


def test_bad_files_are_one_line_each(tmp_path):
    missing = report(tmp_path / "nope.csv")
    assert missing.exit_code == 2 and missing.output.strip() == f"error: no such results file: {tmp_path / 'nope.csv'}"
    garbage = tmp_path / "g.csv"
    garbage.write_text("a,b\n1,2\n")
    result = report(garbage)
    assert result.exit_code == 2 and "Traceback" not in result.output and "error:" in result.output


def test_report_loads_no_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from sqabench.cli import app; "
        f"r = CliRunner().invoke(app, ['report', {str(KJV_2_SEEDS)!r}]); "
        "print(r.exit_code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["0", "False"], done.stdout + done.stderr


def test_a_curves_file_reports_its_runs_file_or_names_it(tmp_path):
    """The -curves.csv beside a quality run once read as "another schema": its run's tables come out, said so;
    a curves file alone is one line naming the file report needs."""
    import shutil

    fixtures = Path(__file__).parent / "fixtures"
    result = runner.invoke(app, ["report", str(fixtures / "quality-kjv-bytes-2seeds-curves.csv")],
                           env={"COLUMNS": "250"})  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "is the curves file of" in text and "quality-kjv-bytes-2seeds.csv's" in text
    alone = tmp_path / "run-curves.csv"
    shutil.copy(fixtures / "quality-kjv-bytes-2seeds-curves.csv", alone)
    refused = runner.invoke(app, ["report", str(alone)])
    assert refused.exit_code == 2 and f"report reads the run's file, {tmp_path / 'run.csv'}" in " ".join(
        refused.output.split()
    )
