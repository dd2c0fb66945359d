"""scripts/gpu-check's CPU mode: the same steps as a GPU machine's first call, at tiny sizes, the same files."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FILES = {"run.log", "doctor.json", "pytest.log", "pytest.xml", "headline.csv", "decode.csv", "headline-speedup.png",
         "decode-prefill-vs-decode.png"}  # fmt: skip


@pytest.mark.slow
def test_the_cpu_mode_runs_every_step_and_writes_its_files(tmp_path):
    import sys

    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", "scripts/gpu-check", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    log = (tmp_path / "run.log").read_text()
    assert done.returncode == 0, log[-4000:]
    assert {p.name for p in tmp_path.iterdir()} == FILES  # 8 flat files at most: what the device tool brings back
    assert "== done: every step exited 0" in log
    for step in ("doctor", "pytest", "headline sweep", "decode sweep"):
        assert f"== {step}" in log, step
    assert '"ok": true' in (tmp_path / "doctor.json").read_text()
    assert all(p.stat().st_size < 16 * 2**20 for p in tmp_path.iterdir())


@pytest.mark.slow
def test_the_quality_steps_run_on_a_cpu_and_write_at_most_eight_files(tmp_path):
    import sys

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"document {i}: the cat sees the dog and the bird." for i in range(80)))
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "",
           "QUALITY_DATA": str(corpus)}  # fmt: skip
    done = subprocess.run(["bash", "scripts/gpu-check", "quality-cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    log = (out / "run.log").read_text()
    assert done.returncode == 0, log[-4000:]
    assert {p.name for p in out.iterdir()} == {"run.log", "quality-mqar.csv", "quality-mqar-curves.csv",
                                               "quality-mqar-trade.png", "quality-text.csv", "quality-text-curves.csv",
                                               "quality-text-trade.png"}  # fmt: skip
    assert "== done: every step exited 0" in log


def test_an_unknown_mode_is_refused(tmp_path):
    done = subprocess.run(["bash", "scripts/gpu-check", "warp"], cwd=ROOT, env={**os.environ, "OUT": str(tmp_path)},
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "unknown mode warp" in done.stderr
