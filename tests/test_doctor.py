"""sqabench doctor: every section reported, a failing one hides none, the exit code names what the default
sweep cannot run. The GPU sections are covered by tests/test_gpu.py."""

import json

import pytest
import torch
from typer.testing import CliRunner

import sqabench.speed.doctor as doctor
from sqabench.cli import app
from sqabench.speed.doctor import Check, run_doctor, summary

runner = CliRunner()


def test_a_failing_section_never_hides_the_others():
    def broken(device):
        raise RuntimeError("cuDNN handle could not be created\nsecond line")

    checks, interrupted = run_doctor(torch.device("cpu"), sections=(doctor.versions, broken, doctor.speed))
    assert not interrupted
    sections = [c.section for c in checks]
    assert sections[0] == "versions" and "broken" in sections and sections[-1] == "speed"
    (failed,) = [c for c in checks if c.section == "broken"]
    assert failed.status == "failed" and failed.detail == "RuntimeError: cuDNN handle could not be created"
    result = summary(checks)
    assert not result["ok"]
    assert result["broken"] == ["broken: section: failed RuntimeError: cuDNN handle could not be created"]


def test_an_interrupted_doctor_reports_the_checks_made(monkeypatch):
    """A time box's SIGINT in the middle of a section: what it had checked is printed, the rest named."""

    def slow(device):
        yield Check("kernels", "first case", "ok", "rel err 1e-3")
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor, "SECTIONS", (doctor.versions, slow, doctor.speed, doctor.graphs))
    result = runner.invoke(app, ["doctor", "--device", "cpu", "--json"])
    assert result.exit_code == 130
    report = json.loads(result.output.split("\ninterrupted")[0])
    names = [(c["section"], c["name"], c["status"]) for c in report["checks"]]
    assert report["interrupted"] and not report["ok"] and not report["broken"]  # incomplete: never "ready"
    assert ("kernels", "first case", "ok") in names and names[-1] == ("slow", "section", "skipped")
    assert report["checks"][-1]["detail"] == "interrupted here; sections not run: speed, graphs"
    assert "interrupted: the checks above are the ones made" in result.output
    result = runner.invoke(app, ["doctor", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 130 and "first case" in result.output and "ready" not in result.output


@pytest.mark.parametrize(
    "check, broken",
    [(Check("k", "x", "ok", needed=True), False), (Check("k", "x", "unsupported", needed=True), True),
     (Check("k", "x", "unsupported"), False), (Check("k", "x", "wrong"), True),
     (Check("k", "x", "skipped", needed=True), False)],
)  # fmt: skip
def test_what_breaks_the_default_sweep(check, broken):
    assert check.broken is broken


def test_a_wrong_kernel_is_named_and_exits_1(monkeypatch):
    wrong = Check("kernels", "paper gqa 16/4 full: sdpa", "wrong", "sdpa-flash output disagrees", needed=True)
    monkeypatch.setattr(doctor, "SECTIONS", (doctor.versions, lambda device: [wrong]))
    result = runner.invoke(app, ["doctor", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "not ready: kernels: paper gqa 16/4 full: sdpa: wrong sdpa-flash output disagrees" in result.output


def test_the_gpu_parts_are_named_as_skipped_on_a_cpu():
    for section in (doctor.speed, doctor.graphs, doctor.nvml):
        (check,) = section(torch.device("cpu"))
        assert check.status == "skipped" and check.detail == "no GPU"


@pytest.mark.slow
def test_doctor_on_this_cpu_is_ready_for_the_default_sweep():
    result = runner.invoke(app, ["doctor", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and not report["broken"]
    by_name = {(c["section"], c["name"]): c for c in report["checks"]}
    assert by_name[("kernels", "paper mha 16/16 full: sdpa")]["status"] == "ok"
    assert by_name[("kernels", "paper mha 16/16@128 windowed: flex")] == {
        **by_name[("kernels", "paper mha 16/16@128 windowed: flex")],
        "status": "ok",
        "needed": True,
    }
    assert by_name[("kernels", "paper gqa 16/4 full: sdpa-cudnn")]["status"] == "unsupported"  # no cuDNN on a CPU
    assert by_name[("speed", "cuDNN vs flash")]["status"] == "skipped"
    assert {c["section"] for c in report["checks"]} == {
        "versions",
        "kernels",
        "timer",
        "speed",
        "graphs",
        "nvml",
        "ceilings",
    }
