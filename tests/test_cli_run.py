import csv
import json
import os
import statistics
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sqabench
import sqabench.speed.sweep as sweep
from sqabench.cli import app
from sqabench.device import no_compile
from sqabench.speed.cells import Outcome, Timing
from sqabench.speed.results import COLUMNS

runner = CliRunner()
TINY_RUN = ["run", "--device", "cpu", "--seq", "64", "--batch", "1", "--warmup", "0", "--repeats", "2"]
WIDE = {"COLUMNS": "250"}


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def fake_measure(cell, phase=None):
    return Outcome(kernel="fake", verify_rel_err=0.0, timing=Timing(5.0, (2.0, 1.0, 3.0)))


def invoke(args, **kwargs):
    return runner.invoke(app, args, env=WIDE, **kwargs)


def test_csv_schema_and_values(real_run):
    path, output = real_run
    rows = [row for row in rows_of(path) if row["seq_len"] == "64"]
    assert tuple(rows[0].keys()) == COLUMNS
    assert [r["variant"] for r in rows] == ["mha", "sqa", "xsqa", "6/2"]
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert row["kernel"].startswith("sdpa-") and row["kernel_requested"] == "auto"
        assert (row["seq_len"], row["batch"], row["repeats"], row["device"]) == ("64", "1", "3", "cpu")
        samples = [float(s) for s in row["samples_ms"].split(";")]
        assert len(samples) == 3 and float(row["time_ms"]) == statistics.median(samples)
        assert float(row["time_ms_min"]) == min(samples) and float(row["time_ms_max"]) == max(samples)
        seconds = float(row["time_ms"]) / 1e3
        # 6 significant digits each, whatever the machine's speed: exact to 2e-5 relative
        assert float(row["tflops"]) == pytest.approx(int(row["flops"]) / seconds / 1e12, rel=2e-5)
        assert float(row["tokens_per_s"]) == pytest.approx(64 / seconds, rel=2e-5)
        spread = (max(samples) - min(samples)) / statistics.median(samples)
        assert float(row["spread"]) == pytest.approx(spread, rel=1e-2, abs=1e-3)
        assert row["noisy"] == str(spread > 0.10)
        assert float(row["verify_rel_err"]) < 1e-4 and row["verify_grad_rel_err"] == ""
        assert row["torch_version"] == torch.__version__ and row["peak_mem_bytes"] == ""
        assert row["cpu_model"] and int(row["torch_threads"]) == torch.get_num_threads()
        assert row["baseline"] == "mha"  # docs/results.md: a plain run records mha when it has it, never empty
    assert rows[3]["n_q_heads"] == "6" and rows[3]["n_kv_heads"] == "2"
    assert "results:" in output and "mha" in output


def test_floats_keep_significant_digits(tmp_path, monkeypatch):
    monkeypatch.setattr(
        sweep, "measure_cell", lambda cell, phase: Outcome(timing=Timing(1.0, (0.000123456789, 123456.789)))
    )
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha", "--out", str(out)]).exit_code == 0
    (row,) = rows_of(out)
    assert row["time_ms_min"] == "0.000123457" and row["time_ms_max"] == "123457.0"
    assert row["samples_ms"] == "0.000123457;123457"
    mantissa = row["tflops"].split("e")[0].replace(".", "").replace("-", "").lstrip("0")
    assert 0 < len(mantissa) <= 6


def test_batch_from_tokens(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--variants", "mha", "--seq", "1k,4k,200k", "--tokens", "131072", "--yes"]
    assert invoke([*args, "--out", str(out)]).exit_code == 0
    rows = rows_of(out)
    assert [(r["seq_len"], r["batch"]) for r in rows] == [("1024", "128"), ("4096", "32"), ("200000", "1")]
    assert [float(r["time_ms"]) for r in rows] == [2.0, 2.0, 2.0]  # the median of 2, 1, 3
    assert {r["batch_rule"] for r in rows} == {"tokens=131072"}


def test_cpu_default_is_a_quick_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    monkeypatch.chdir(tmp_path)
    result = invoke(["run"])
    assert result.exit_code == 0, result.output
    assert "CPU: a quick sweep (pass --seq for more)" in result.output
    (path,) = (tmp_path / "results").glob("cpu-*.csv")
    rows = rows_of(path)
    assert len(rows) == 11 * 2
    assert {r["seq_len"] for r in rows} == {"256", "1024"} and {r["dtype"] for r in rows} == {"fp32"}
    assert {r["batch"] for r in rows} == {"4", "1"}
    result = invoke(["run", "--seq", "256", "--variants", "mha"])
    assert result.exit_code == 0 and "quick sweep" not in result.output


def test_one_plain_line_per_cell_when_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    result = invoke([*TINY_RUN, "--variants", "mha,sqa", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "mha 64 x1: ok 2 ms (spread 100.0%, noisy)" in lines
    assert "sqa 64 x1: ok 2 ms (spread 100.0%, noisy)" in lines


def test_case_insensitive_names(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    tiny = [arg.replace("cpu", "CPU") for arg in TINY_RUN]
    args = [*tiny, "--preset", "Paper", "--variants", "SQA,Mha", "--dtype", "FP32", "--mode", "FWD"]
    result = invoke([*args, "--kernel", "SDPA", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [(r["variant"], r["preset"], r["kernel_requested"]) for r in rows_of(out)] == [
        ("sqa", "paper", "sdpa"), ("mha", "paper", "sdpa"),
    ]  # fmt: skip


BAD_INPUTS = [
    (["--variants", "nope"], "unknown variant 'nope'"),
    (["--variants", "6/4"], "n_q_heads=6 is not a multiple of n_kv_heads=4"),
    (["--seq", "abc"], "'abc' is not a length"),
    (["--seq", "0"], "must be at least 1"),
    (["--seq", "-5"], "'-5' is not a length"),
    (["--seq", "1k,,2k"], "empty item"),
    (["--repeats", "0"], "--repeats 0: give auto or a whole number of timed calls from 1 to 100,000"),
    (["--repeats", "ten"], "--repeats ten: give auto or a whole number"),
    (["--timer", "graph"], "--timer graph captures a forward in a CUDA graph: it needs a CUDA GPU and --mode fwd"),
    (["--timer", "cupti"], "unknown timer 'cupti'; choose one of: events, graph"),
    (["--target-noise", "2"], "--target-noise"),
    (["--repeats", "5", "--target-noise", "2%"], "--target-noise applies with --repeats auto"),
    (["--warmup", "-1"], "--warmup -1 must be >= 0"),
    (["--dtype", "fp8"], "unknown dtype 'fp8'; choose one of: auto, bf16, fp16, fp32"),
    (["--window", "0"], "--window 0 must be >= 1"),
    (["--mode", "bwd"], "unknown mode 'bwd'; choose one of: fwd, train"),
    (["--kernel", "fast"], "unknown kernel 'fast'; choose one of"),
    (["--preset", "huge"], "unknown preset 'huge'; choose one of: paper, paper-moe, wide"),
    (["--device", "tpu"], "unknown device 'tpu'; choose one of: auto, cuda, cpu"),
    (["--baseline", "mhaa", "--variants", "mha,sqa"], "--baseline 'mhaa' is not among this run's variants: mha, sqa"),
    (["--out", "/proc/sqabench.csv"], "--out /proc/sqabench.csv cannot be created"),
    (["--out", "/sys/sqabench.csv"], "--out /sys/sqabench.csv cannot be created"),
    (["--out", "/dev/full"], "--out /dev/full is not a regular file"),
    (["--out", "newdir/"], "--out newdir/ names a directory; give a .csv file path"),
    (["--out", ""], "--out is empty"),
    (["--seq", ""], "--seq: empty item"),
    (["--variants", "８/４"], "unknown variant '８/４'"),
    (["--seq", "３２k"], "'３２k' is not a length"),
    (["--cp", "64", "--seq", "8k"], "--cp 64 --device cpu starts 64 processes but this machine has"),
    (["--seq", "999999999999999999999999"], "is more than 2,147,483,648 tokens (the paper preset's embeddings"),
    (["--tokens", "99999999999999999999"], "--tokens 99999999999999999999 must be <= 2,147,483,648"),
    (["--seq", "1m", "--batch", "4096"], "4096 x 1000000 tokens in one step is more than 2,147,483,648"),
    (["--repeats", "1000000"], "--repeats 1000000: give auto or a whole number of timed calls from 1 to 100,000"),
    (["--cp-timeout", "1e-9", "--cp", "2", "--seq", "256"], "--cp-timeout 1e-09 must be in [1, 86400] seconds"),
    (["--cp-timeout", "nan", "--cp", "2", "--seq", "256"], "--cp-timeout nan must be in [1, 86400] seconds"),
    (["--cp-timeout", "-5"], "--cp-timeout applies with --cp only"),
    (["--runs", "0"], "--runs 0 must be >= 1"),
    (["--runs", "2", "--resume"], "--runs 2 writes a new file of whole runs; --resume does not apply"),
    (["--runs", "2", "--budget", "1m"], "--runs 2 writes a new file of whole runs; --budget does not apply"),
    (["--seq", "1k", "--seq", "2k"], "--seq given more than once"),
    (["--seq=1k", "--variants", "mha", "--seq", "2k"], "--seq given more than once"),
    (["--causal", "--causal"], "--causal given more than once"),
    (["--window", "64", "--variants", "mha,sqa"], "--window 64 applies to windowed variants"),
    (["--trace-dir", "traces"], "--trace-dir applies with --breakdown only"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_no_file(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.csv"
    argv = ["run", *([] if "--device" in args else ["--device", "cpu"]), *args]
    result = invoke(argv + ([] if "--out" in args else ["--out", str(out)]))
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "results").exists() and list(tmp_path.iterdir()) == []


def test_default_out_creates_nothing_on_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["run", "--device", "cpu", "--variants", "nope"])
    assert result.exit_code == 2 and not (tmp_path / "results").exists()


def test_cuda_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke(["run", "--device", "cuda", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.output
    assert not (tmp_path / "r.csv").exists()


def test_dtype_the_device_cannot_run(tmp_path, monkeypatch):
    real = torch.nn.functional.scaled_dot_product_attention

    def no_fp16(q, *args, **kwargs):
        if q.dtype == torch.float16:
            raise RuntimeError("\"baddbmm\" not implemented for 'Half'")
        return real(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_fp16)
    result = invoke([*TINY_RUN, "--dtype", "fp16", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "--dtype fp16 cannot run on cpu" in result.output
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("out, message", [("missing/dir/r.csv", "does not exist"), (".", "is a directory")])
def test_unwritable_out(tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    result = invoke([*TINY_RUN, "--out", out])
    assert result.exit_code == 2 and message in result.output


def test_existing_out_needs_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha", "--out", str(out)]).exit_code == 0
    result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out)])
    assert result.exit_code == 2 and "pass --resume" in result.output
    assert len(rows_of(out)) == 1


def test_resume_runs_only_missing_or_failed_cells(tmp_path, monkeypatch):
    calls = []

    def measure(cell, phase):
        calls.append(cell.spec.name)
        if cell.spec.name == "sqa" and calls.count("sqa") == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha,sqa", "--out", str(out)]).exit_code == 0
    assert [r["status"] for r in rows_of(out)] == ["ok", "oom"]
    result = invoke([*TINY_RUN, "--variants", "mha,sqa,xsqa", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert "1 cell already ok, 2 to run" in result.output
    assert calls == ["mha", "sqa", "sqa", "xsqa"]
    assert [(r["variant"], r["status"]) for r in rows_of(out)] == [
        ("mha", "ok"), ("sqa", "oom"), ("sqa", "ok"), ("xsqa", "ok"),
    ]  # fmt: skip


def test_resume_of_a_missing_file_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "new.csv"
    result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out), "--resume"])
    assert result.exit_code == 0
    assert f"--resume: {out} does not exist yet; starting it afresh" in result.output
    assert len(rows_of(out)) == 1


def test_resume_with_other_settings_never_mixes_them_in_a_table(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha,sqa", "--out", str(out)]).exit_code == 0
    result = invoke([*TINY_RUN, "--variants", "mha,sqa", "--causal", "--out", str(out), "--resume"])
    assert result.exit_code == 0
    titles = [line for line in result.output.splitlines() if line.startswith("CPU")]
    assert len(titles) == 2
    assert "· encoder ·" in titles[0] and "· causal ·" in titles[1]


def test_resume_refuses_another_schema(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("a,b\n1,2\n")
    result = invoke([*TINY_RUN, "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "another schema" in result.output
    assert out.read_text() == "a,b\n1,2\n"


def test_resume_needs_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke([*TINY_RUN, "--resume"])
    assert result.exit_code == 2 and "--resume needs --out" in result.output


def test_oom_becomes_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    def measure(cell, phase):
        if cell.spec.name == "gqa":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha,gqa,sqa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["ok", "oom", "ok"]
    assert "out of memory" in rows[1]["error"] and rows[1]["time_ms"] == "" and rows[1]["kernel"] == ""
    assert "OOM" in result.output


def test_failure_mid_sweep_keeps_earlier_rows_and_exits_1(tmp_path, monkeypatch):
    def measure(cell, phase):
        if cell.spec.name == "sqa":
            raise RuntimeError("cuDNN error: [rank0] CUDNN_STATUS_BAD_PARAM [/] in [bold]markup[/bold]")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha,sqa,xsqa", "--out", str(out)])
    assert result.exit_code == 1
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert "[rank0] CUDNN_STATUS_BAD_PARAM [/] in [bold]markup[/bold]" in rows[1]["error"]
    assert "[rank0] CUDNN_STATUS_BAD_PARAM [/] in [bold]markup[/bold]" in result.output  # text, not markup


def test_sticky_cuda_error_stops_and_says_how_to_continue(tmp_path, monkeypatch):
    def measure(cell, phase):
        if cell.spec.name == "gqa":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha,gqa,sqa", "--out", str(out)])
    assert result.exit_code == 1
    assert [r["status"] for r in rows_of(out)] == ["ok", "error"]
    text = " ".join(result.output.split())
    assert "stopped after gqa · 64 x1" in text and "a sticky CUDA error fails every later cell" in text
    assert f"--resume --out {out}" in text


def test_interrupted_sweep_keeps_finished_rows(tmp_path, monkeypatch):
    def measure(cell, phase):
        if cell.spec.name == "sqa":
            raise KeyboardInterrupt
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha,gqa,sqa,xsqa", "--out", str(out)])
    assert result.exit_code == 130
    assert [r["variant"] for r in rows_of(out)] == ["mha", "gqa"]
    assert f"interrupted: 2 finished rows kept in {out}; continue with --resume --out {out}" in result.output


def test_interrupted_before_any_row_names_no_file(tmp_path, monkeypatch):
    def measure(cell, phase):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out)])
    assert result.exit_code == 130
    assert "interrupted before any cell finished: nothing written" in result.output
    assert not out.exists()


def test_unsupported_kernel_is_skipped(tmp_path):
    out = tmp_path / "r.csv"
    result = invoke([*TINY_RUN, "--variants", "mha", "--kernel", "sdpa-cudnn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = rows_of(out)
    assert row["status"] == "skipped" and "sdpa-cudnn cannot run this case" in row["error"]


@pytest.mark.slow
def test_windowed_variant_runs_flex_without_compiling_while_timed(tmp_path):
    # Same shapes as the flex tests of test_attention (batch 2, 200 tokens, window 48): no new compile.
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--seq", "200", "--batch", "2", "--warmup", "1", "--repeats", "2"]
    result = invoke([*args, "--variants", "swa,mha", "--window", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    swa, mha = rows_of(out)
    assert (swa["kernel"], swa["window"], swa["status"]) == ("flex", "48", "ok"), swa["error"]
    assert int(swa["flops"]) < int(mha["flops"])


def test_a_compile_during_timing_fails_instead_of_being_timed():
    compiled = torch.compile(lambda x: x * 2 + 1)
    with pytest.raises(RuntimeError, match="fail_on_recompile"), no_compile():
        compiled(torch.ones(3))


def test_train_mode_verifies_gradients(tmp_path):
    out = tmp_path / "t.csv"
    result = invoke([*TINY_RUN, "--variants", "sqa", "--mode", "train", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = rows_of(out)
    assert (row["mode"], row["status"]) == ("train", "ok"), row["error"]
    assert 0 <= float(row["verify_grad_rel_err"]) < 2e-4


def test_env_command():
    result = invoke(["env", "--device", "cpu"])
    assert result.exit_code == 0
    for field in ("torch_version", "git_sha", "nvml", "cpu_model", "torch_threads", torch.__version__):
        assert field in result.output


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sqabench {sqabench.__version__}"


def test_help_shows_flags_as_flags():
    text = invoke(["run", "--help"]).output
    assert "--causal " in text and "--causal <bool>" not in text and "--resume  " in text
    assert "--seq LENGTHS" in text and "Hq/Hkv[@W]" in text


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_variants_command(fmt):
    result = invoke(["variants", "--format", fmt])
    assert result.exit_code == 0
    assert "xsmqa" in result.output and "swa-xsqa" in result.output
    if fmt == "csv":
        lines = result.output.strip().splitlines()
        header = "variant,n_heads,n_q_heads,n_kv_heads,window,params,attn_flops_vs_mha,kv_cache_bytes_per_token,note"
        assert lines[0] == header
        assert len(lines) == 12  # the paper preset has no `base`: its shape is synthetic
        assert lines[1] == "mha,16,16,16,,11940096,1.0,8192,"
    if fmt == "json":
        records = json.loads(result.output)
        assert records[0]["window"] is None and records[-1]["window"] == 128


def test_variants_bad_format():
    result = invoke(["variants", "--format", "xml"])
    assert result.exit_code == 2 and "choose one of: table, csv, json" in result.output


@pytest.mark.slow
def test_ctrl_c_takes_effect_while_a_long_cell_runs(tmp_path):
    """The sweep runs in a worker thread: SIGINT reaches the main thread at once, mid-kernel."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.csv"
    args = [sys.executable, "-m", "sqabench", "run", "--device", "cpu", "--seq", "32k", "--variants", "mha"]
    child = subprocess.Popen(
        [*args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    seen = []
    for line in child.stdout:  # wait until the sweep is under way (a 32k cell takes minutes on a CPU)
        seen.append(line)
        if line.startswith("estimated duration"):
            break
    time.sleep(2)
    child.send_signal(signal.SIGINT)
    rest = child.communicate(timeout=60)[0]
    # The 32k cell takes minutes here: an exit 130 within the wait above, with nothing written, is one that
    # did not wait for it (no time window asserted: a busy machine may be slow to deliver the signal).
    assert child.returncode == 130, "".join(seen) + rest
    assert "interrupted before any cell finished: nothing written" in rest and not out.exists()
    assert not (tmp_path / "r.csv.lock").exists()  # the lock is released, even though the cell's thread is left


def test_an_unwritable_trace_dir_is_refused_before_the_sweep(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "r.csv"
    for folder in (blocker, blocker / "traces"):
        result = invoke([*TINY_RUN, "--breakdown", "--trace-dir", str(folder), "--out", str(out)])
        assert result.exit_code == 2 and "--trace-dir" in result.output and "is a file" in result.output
        assert not out.exists()


def test_cpu_tests_never_see_a_gpu():
    """On a GPU machine too, `sqabench run` without --device in a CPU test runs the CPU sweep."""
    from conftest import no_gpu
    from sqabench.device import resolve_device

    assert torch.cuda.is_available is no_gpu and resolve_device("auto") == torch.device("cpu")


def test_resume_of_a_file_with_a_bad_value_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha", "--out", str(out)]).exit_code == 0
    rows = rows_of(out)
    rows[0]["time_ms"] = "fast"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    before = out.read_text()
    result = invoke([*TINY_RUN, "--variants", "mha,sqa", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "line 2: time_ms='fast' is not a number" in result.output
    assert out.read_text() == before


def test_resume_of_an_empty_file_says_it_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    out.touch()
    result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out), "--resume"])
    assert result.exit_code == 0 and f"--resume: {out} is empty; starting it afresh" in result.output
    assert "does not exist" not in result.output and len(rows_of(out)) == 1


def test_the_csv_ends_lines_with_newlines_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    assert invoke([*TINY_RUN, "--variants", "mha,sqa", "--out", str(out)]).exit_code == 0
    assert b"\r" not in out.read_bytes() and out.read_bytes().count(b"\n") == 3


def test_a_second_writer_of_one_file_is_refused_naming_the_first(tmp_path, monkeypatch):
    """A --resume started while another run writes the same CSV would duplicate cells."""
    from sqabench.files import RunLock

    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    with RunLock(out):  # the first run, still writing
        result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and not out.exists()
    assert f"r.csv is being written by another sqabench run (pid {os.getpid()}" in result.output
    result = invoke([*TINY_RUN, "--variants", "mha", "--out", str(out), "--resume"])  # once it has finished
    assert result.exit_code == 0 and len(rows_of(out)) == 1
    assert not (tmp_path / "r.csv.lock").exists()


def test_sqabench_runs_from_a_directory_holding_a_folder_named_sqabench(tmp_path):
    """The parent of a clone holds a folder named sqabench: it must not shadow the package."""
    import subprocess
    import sys

    (tmp_path / "sqabench").mkdir()
    done = subprocess.run([sys.executable, "-m", "sqabench", "--version"], cwd=tmp_path, capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"sqabench {sqabench.__version__}"


def test_a_cp_job_starts_its_ranks_unshadowed(monkeypatch):
    """The ranks run `python -m sqabench` too: PYTHONSAFEPATH keeps the current directory off their path."""
    import subprocess

    import sqabench.speed.cp as cp

    seen = {}

    class Child:
        def __init__(self, command, env, preexec_fn=None):
            seen.update(command=command, env=env)

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Child)
    assert cp.launch(2, ["run", "--seq", "256"]) == 0
    assert seen["env"]["PYTHONSAFEPATH"] == "1"
    assert seen["command"][-5:] == ["-m", "sqabench", "run", "--seq", "256"]


def test_a_dry_run_measures_no_ceilings_and_writes_no_cache(tmp_path, monkeypatch):
    """`run --dry-run --dtype fp16` once measured fp16 ceilings for two minutes and cached them: a dry run runs
    nothing and writes nothing, so it reads the cache as it is, and without one gives no estimate."""
    import sqabench.speed.ceilings as ceilings

    monkeypatch.setenv("SQABENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ceilings, "measure_ceilings", lambda *a, **k: pytest.fail("a dry run measured ceilings"))
    monkeypatch.setattr(ceilings, "probe", lambda *a, **k: pytest.fail("a dry run probed the device"))
    result = invoke(["run", "--device", "cpu", "--dtype", "fp16", "--seq", "64", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "no fp16 ceilings cached for this device: no estimate" in " ".join(result.output.split())
    assert not (tmp_path / "cache").exists()


def test_the_default_file_names_the_cpu_the_tables_name(monkeypatch):
    from sqabench.environment import Environment, host_label

    assert host_label(Environment(device="cpu", cpu_model="Intel Xeon")) == "cpu-intel-xeon"
    assert host_label(Environment(device="cuda", gpu_name="NVIDIA H100 80GB HBM3")) == "nvidia-h100-80gb-hbm3"


def test_runs_writes_one_file_of_k_runs_each_from_its_own_process(tmp_path, monkeypatch):
    """--runs 2: two whole sweeps, each started as `python -m sqabench run ...` (here the command line runs in
    this process, the measure stubbed: what is checked is the orchestration), two run ids in one file (what
    check reads as a baseline of two runs), and no part file left beside it."""
    import sqabench.speed.runner as runner_module
    import sqabench.speed.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "measure_cell", fake_measure)
    started = []

    class InProcess:
        def __init__(self, argv):
            started.append(argv)
            self.code = runner.invoke(app, ["run", *argv]).exit_code

        def wait(self):
            return self.code

    monkeypatch.setattr(runner_module, "start_run", InProcess)
    out = tmp_path / "base.csv"
    result = invoke([*TINY_RUN, "--variants", "mha,sqa", "--runs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(started) == 2 and all("--runs" in c and c[c.index("--runs") + 1] == "1" for c in started)
    rows = rows_of(out)
    assert [r["variant"] for r in rows] == ["mha", "sqa", "mha", "sqa"]
    assert len({r["run_id"] for r in rows}) == 2 and {r["status"] for r in rows} == {"ok"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.csv"]
    assert "results: " + str(out) + " (2 runs)" in " ".join(result.output.split())
