"""scripts/gpu-check's orchestration, with a stand-in interpreter (tests/fixtures/stub-python) that records each
call and writes what the real command would: which steps run, in what order, with which options, that a failed
step never stops the next, and that at most 8 flat files come back. The script's real run on a CPU
(``gpu-check cpu`` and ``quality-cpu``, the same steps at tiny sizes) is part of .ci/run."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
STUB = ROOT / "tests" / "fixtures" / "stub-python"
FILES = {"run.log", "doctor.json", "pytest.log", "pytest.xml", "headline.csv", "decode.csv", "headline-speedup.png",
         "decode-prefill-vs-decode.png"}  # fmt: skip
QUALITY_FILES = {"run.log", "quality-mqar.csv", "quality-mqar-curves.csv", "quality-mqar-trade.png",
                 "quality-text.csv", "quality-text-curves.csv", "quality-text-trade.png"}  # fmt: skip


def gpu_check(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, list[str], Path]:
    """Run the script with the stub: (exit code, run.log and then its stderr, the stub's calls, $OUT)."""
    out, calls = tmp_path / "out", tmp_path / "calls"
    environment = {**os.environ, "OUT": str(out), "PYTHON": str(STUB), "STUB_CALLS": str(calls), **env}
    done = subprocess.run(["bash", "scripts/gpu-check", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    log = ((out / "run.log").read_text() if (out / "run.log").exists() else "") + done.stderr
    return done.returncode, log, calls.read_text().splitlines() if calls.exists() else [], out


def steps(log: str) -> list[str]:
    """The steps run.log says ran, each with its exit code, in order."""
    return [line.removeprefix("== ") for line in log.splitlines() if line.startswith("== ") and ": exit " in line]


@pytest.mark.parametrize("mode", ["first", "cpu"])
def test_each_step_runs_in_order_and_eight_flat_files_come_back(tmp_path, mode):
    code, log, calls, out = gpu_check(tmp_path, mode)
    assert code == 0, log
    assert {p.name for p in out.iterdir()} == FILES  # what the device tool brings back: 8 flat files at most
    names = [step.split(": exit")[0].split(" (")[0] for step in steps(log)]
    assert names[0] == "doctor" and names[1].startswith("pytest -m gpu") and names[2] == "headline sweep"
    assert names[-3] == "decode sweep" and all(n.startswith("figures of") for n in names[-2:])
    assert all(": exit 0 after" in step for step in steps(log))
    assert "== done: every step exited 0" in log
    run, decode = [c for c in calls if c.startswith("-m sqabench run")]
    assert "--breakdown" in run and "--variants mha,sqa,xsqa,swa-xsqa" in run
    assert "--mode decode" in decode and "--baseline gqa" in decode
    gpu_tests = next(c for c in calls if c.startswith("-m pytest"))
    assert "-m gpu" in gpu_tests and f"--junitxml={out}/pytest.xml" in gpu_tests
    assert ("-k not flex" in gpu_tests) == (mode == "first")  # a GPU leaves flex's compiles for later
    if mode == "cpu":
        assert all("--device cpu" in c for c in (run, decode)) and "--seq 256 " in run
    else:
        assert "--seq 200k,32k,4k" in run and "--yes" in run and "--device" not in run


def test_a_failed_step_never_stops_the_next_and_the_script_says_so(tmp_path):
    code, log, calls, out = gpu_check(tmp_path, "cpu", STUB_FAIL="sqabench doctor")
    assert code == 1
    assert "== doctor: exit 1" in log and "== done: a step failed: see above" in log
    assert any(c.startswith("-m sqabench run") for c in calls)  # the sweep still ran after the failed doctor
    assert (out / "headline.csv").exists() and (out / "decode.csv").exists()


@pytest.mark.parametrize("mode", ["quality", "quality-cpu"])
def test_the_quality_steps_train_both_tasks_and_keep_seven_files(tmp_path, mode):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\n\ntwo\n")
    code, log, calls, out = gpu_check(tmp_path, mode, QUALITY_DATA=str(corpus))
    assert code == 0, log
    assert {p.name for p in out.iterdir()} == QUALITY_FILES
    mqar, text = [c for c in calls if c.startswith("-m sqabench quality")]
    assert "--data" not in mqar and f"--data {corpus}" in text
    if mode == "quality":
        assert "--vocab 8192 --seq 256 --pairs 16" in mqar and "--preset paper --seq 1024" in text
    else:
        assert all("--device cpu" in c for c in (mqar, text))


def test_without_a_corpus_the_text_step_is_skipped_and_said(tmp_path):
    code, log, calls, out = gpu_check(tmp_path, "quality-cpu", QUALITY_DATA="")
    assert code == 0 and "quality: text skipped: QUALITY_DATA names no corpus" in log
    assert len([c for c in calls if c.startswith("-m sqabench quality")]) == 1


def test_an_unknown_mode_is_refused(tmp_path):
    code, log, calls, out = gpu_check(tmp_path, "warp")
    assert code == 2 and "unknown mode warp" in log and not [c for c in calls if "sqabench" in c]
