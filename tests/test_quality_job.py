"""sqabench quality as a torchrun job on the CPU (two gloo ranks): each rank trains its share, rank 0 writes every
row as it arrives; the rows are those of one process bit for bit, a rank's failed run is a row of its own, and a
job ended by SIGTERM resumes."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from texts import QUICK, runner

from sqabench.cli import app

HERE = Path(__file__).parent
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
COLUMNS = ("val_loss", "val_accuracy", "steps_to_50", "params", "config", "status")


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONSAFEPATH": "1", "COLUMNS": "200", **extra}


def rows(path: Path) -> dict:
    return {(r["variant"], r["seed"]): r for r in csv.DictReader(path.open())}


def same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(a[k][c] == b[k][c] for k in a for c in COLUMNS)


@pytest.mark.slow
def test_two_ranks_write_one_processs_rows_and_a_ranks_failed_run_is_a_row_of_its_own(tmp_path):
    one, job = tmp_path / "one.csv", tmp_path / "job.csv"
    assert runner.invoke(app, [*QUICK, "--seeds", "2", "--out", str(one)]).exit_code == 0
    worker = [*LAUNCH, str(HERE / "quality_rank_worker.py"), *QUICK, "--seeds", "2", "--out", str(job)]
    result = subprocess.run(worker, capture_output=True, text=True, timeout=600, env=env(SQABENCH_FAIL_RANK="1"),
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = rows(job)
    failed = [key for key, row in found.items() if row["status"] == "oom"]
    assert len(failed) == 1 and len(found) == 4 and "a test's" in found[failed[0]]["error"]
    assert same({k: v for k, v in found.items() if k not in failed}, {k: v for k, v in rows(one).items()
                                                                     if k not in failed})  # fmt: skip
    assert "rank 1: training" in result.stderr + result.stdout and "a torchrun job of 2 ranks" in result.stderr
    assert result.stdout.count("diff vs mha") == 1  # rank 0 alone prints the tables
    again = subprocess.run([*LAUNCH, "-m", "sqabench", *QUICK, "--seeds", "2", "--out", str(job), "--resume"],
                           capture_output=True, text=True, timeout=600, env=env(), cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert same(rows(job), rows(one))  # the failed run trained again, bit for bit as one process trains it


@pytest.mark.slow
def test_a_job_ended_by_sigterm_keeps_its_rows_and_resumes(tmp_path):
    job = tmp_path / "job.csv"
    steps = QUICK.index("--steps")
    longer = [*QUICK[: steps + 1], "100", *QUICK[steps + 2 :], "--seeds", "2", "--out", str(job)]
    child = subprocess.Popen([*LAUNCH, "-m", "sqabench", *longer], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env(), cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None and not (job.exists() and len(rows(job)) >= 1):
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)  # what a scheduler's time limit sends the launcher
    assert child.wait(timeout=120) != 0  # ended by the signal, its other runs unfinished
    kept = rows(job)
    assert kept and all(row["status"] == "ok" for row in kept.values())
    assert not Path(f"{job}.lock").exists()
    again = subprocess.run([*LAUNCH, "-m", "sqabench", *longer, "--resume"], capture_output=True, text=True,
                           timeout=600, env=env(), cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = rows(job)
    assert len(final) == 4 and all(row["status"] == "ok" for row in final.values())
    assert all(final[key]["val_loss"] == row["val_loss"] for key, row in kept.items())  # the kept rows stay
