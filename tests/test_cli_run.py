import csv
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sqabench.sweep as sweep
from sqabench.cli import app
from sqabench.measure import Timing
from sqabench.results import COLUMNS, REQUIRED_COLUMNS
from sqabench.sweep import Outcome, parse_length, parse_lengths

runner = CliRunner()
TINY_RUN = ["run", "--device", "cpu", "--seq", "64", "--batch", "1", "--warmup", "0", "--repeats", "2"]


def rows_of(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def fake_measure(cell):
    return Outcome(kernel="fake", check_rel_err=0.0, timing=Timing(5.0, (2.0, 1.0, 3.0)))


@pytest.mark.parametrize(
    "text, tokens",
    [("1k", 1024), ("4k", 4096), ("32k", 32768), ("128k", 131072), ("131k", 131072), ("200k", 200000),
     ("1000", 1000), ("1K", 1024), ("2k", 2048), ("64k", 65536), ("100k", 100000), ("1m", 1_000_000)],
)  # fmt: skip
def test_seq_sizes(text, tokens):
    assert parse_length(text) == tokens


def test_seq_list_keeps_order_and_drops_repeats():
    assert parse_lengths("32k, 1k,1024") == [32768, 1024]


def test_csv_schema_and_values(tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha,sqa,6/2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert tuple(rows[0].keys()) == COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(rows[0])
    assert [r["variant"] for r in rows] == ["mha", "sqa", "6/2"]
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert row["kernel"].startswith("sdpa-") and row["kernel_requested"] == "auto"
        assert (row["seq_len"], row["batch"], row["repeats"], row["device"]) == ("64", "1", "2", "cpu")
        seconds = float(row["time_ms"]) / 1e3
        assert float(row["tflops"]) == pytest.approx(int(row["flops"]) / seconds / 1e12, rel=1e-3)
        assert float(row["tokens_per_s"]) == pytest.approx(64 / seconds, rel=1e-3)
        assert float(row["time_ms_min"]) <= float(row["time_ms"]) <= float(row["time_ms_max"])
        assert float(row["check_rel_err"]) < 1e-4
        assert row["torch_version"] == torch.__version__ and row["peak_mem_bytes"] == ""
    assert rows[2]["n_q_heads"] == "6" and rows[2]["n_kv_heads"] == "2"
    assert "results:" in result.output and "mha" in result.output


def test_batch_from_tokens(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--variants", "mha", "--seq", "1k,4k,200k", "--tokens", "131072"]
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    assert [(r["seq_len"], r["batch"]) for r in rows_of(out)] == [("1024", "128"), ("4096", "32"), ("200000", "1")]
    assert [float(r["time_ms"]) for r in rows_of(out)] == [2.0, 2.0, 2.0]  # the median of 2, 1, 3


def test_cpu_default_is_a_quick_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    assert "CPU: a quick sweep" in result.output
    (path,) = (tmp_path / "results").glob("cpu-*.csv")
    rows = rows_of(path)
    assert len(rows) == 11 * 2
    assert {r["seq_len"] for r in rows} == {"256", "1024"} and {r["dtype"] for r in rows} == {"fp32"}
    assert {r["batch"] for r in rows} == {"4", "1"}


BAD_INPUTS = [
    (["--variants", "nope"], "unknown variant 'nope'"),
    (["--variants", "6/4"], "n_q_heads=6 is not a multiple of n_kv_heads=4"),
    (["--seq", "abc"], "'abc' is not a length"),
    (["--seq", "0"], "must be at least 1"),
    (["--seq", "-5"], "'-5' is not a length"),
    (["--seq", "1k,,2k"], "empty item"),
    (["--repeats", "0"], "--repeats 0 must be >= 1"),
    (["--warmup", "-1"], "--warmup -1 must be >= 0"),
    (["--dtype", "fp8"], "unknown dtype 'fp8'; choose one of: auto, bf16, fp16, fp32"),
    (["--window", "0"], "--window 0 must be >= 1"),
    (["--mode", "bwd"], "unknown mode 'bwd'; choose one of: fwd, train"),
    (["--kernel", "fast"], "unknown kernel 'fast'; choose one of"),
    (["--preset", "huge"], "unknown preset 'huge'; choose one of: paper, wide"),
    (["--device", "tpu"], "unknown device 'tpu'; choose one of: auto, cuda, cpu"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_no_file(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.csv"
    argv = ["run", "--device", "cpu", *args, "--out", str(out)] if "--device" not in args else ["run", *args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "results").exists()


def test_cuda_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["run", "--device", "cuda", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "torch sees no CUDA GPU" in result.output
    assert not (tmp_path / "r.csv").exists()


def test_dtype_the_device_cannot_run(tmp_path, monkeypatch):
    real = torch.nn.functional.scaled_dot_product_attention

    def no_fp16(q, *args, **kwargs):
        if q.dtype == torch.float16:
            raise RuntimeError('"baddbmm" not implemented for \'Half\'')
        return real(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_fp16)
    result = runner.invoke(app, [*TINY_RUN, "--dtype", "fp16", "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2 and "--dtype fp16 cannot run on cpu" in result.output
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("out, message", [("missing/dir/r.csv", "does not exist"), (".", "is a directory")])
def test_unwritable_out(tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*TINY_RUN, "--out", out])
    assert result.exit_code == 2 and message in result.output


def test_existing_out_needs_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "measure_cell", fake_measure)
    out = tmp_path / "r.csv"
    assert runner.invoke(app, [*TINY_RUN, "--variants", "mha", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha", "--out", str(out)])
    assert result.exit_code == 2 and "pass --resume" in result.output
    assert len(rows_of(out)) == 1


def test_resume_runs_only_missing_or_failed_cells(tmp_path, monkeypatch):
    calls = []

    def measure(cell):
        calls.append(cell.spec.name)
        if cell.spec.name == "sqa" and calls.count("sqa") == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    assert runner.invoke(app, [*TINY_RUN, "--variants", "mha,sqa", "--out", str(out)]).exit_code == 0
    assert [r["status"] for r in rows_of(out)] == ["ok", "oom"]
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha,sqa,xsqa", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert calls == ["mha", "sqa", "sqa", "xsqa"]
    assert [(r["variant"], r["status"]) for r in rows_of(out)] == [
        ("mha", "ok"), ("sqa", "oom"), ("sqa", "ok"), ("xsqa", "ok"),
    ]  # fmt: skip


def test_resume_refuses_another_schema(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("a,b\n1,2\n")
    result = runner.invoke(app, [*TINY_RUN, "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "another schema" in result.output
    assert out.read_text() == "a,b\n1,2\n"


def test_resume_needs_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*TINY_RUN, "--resume"])
    assert result.exit_code == 2 and "--resume needs --out" in result.output


def test_oom_becomes_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    def measure(cell):
        if cell.spec.name == "gqa":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha,gqa,sqa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["ok", "oom", "ok"]
    assert "out of memory" in rows[1]["error"] and rows[1]["time_ms"] == ""
    assert "OOM" in result.output


def test_failure_mid_sweep_keeps_earlier_rows_and_exits_1(tmp_path, monkeypatch):
    def measure(cell):
        if cell.spec.name == "sqa":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha,sqa,xsqa", "--out", str(out)])
    assert result.exit_code == 1
    rows = rows_of(out)
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert "illegal memory access" in rows[1]["error"]


def test_interrupted_sweep_keeps_finished_rows(tmp_path, monkeypatch):
    def measure(cell):
        if cell.spec.name == "sqa":
            raise KeyboardInterrupt
        return fake_measure(cell)

    monkeypatch.setattr(sweep, "measure_cell", measure)
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha,gqa,sqa,xsqa", "--out", str(out)])
    assert result.exit_code == 130
    assert [r["variant"] for r in rows_of(out)] == ["mha", "gqa"]
    assert "--resume" in result.output


def test_unsupported_kernel_is_skipped(tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "mha", "--kernel", "sdpa-cudnn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = rows_of(out)
    assert row["status"] == "skipped" and "sdpa-cudnn cannot run this case" in row["error"]


def test_windowed_variant_runs_flex_and_train_mode_runs(tmp_path):
    out = tmp_path / "r.csv"
    args = ["run", "--device", "cpu", "--seq", "200", "--batch", "2", "--warmup", "0", "--repeats", "1"]
    result = runner.invoke(app, [*args, "--variants", "swa,mha", "--window", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    swa, mha = rows_of(out)
    assert (swa["kernel"], swa["window"], swa["status"]) == ("flex", "48", "ok")
    assert int(swa["flops"]) < int(mha["flops"])
    train = tmp_path / "t.csv"
    result = runner.invoke(app, [*TINY_RUN, "--variants", "sqa", "--mode", "train", "--out", str(train)])
    (row,) = rows_of(train)
    assert (row["mode"], row["status"]) == ("train", "ok"), row["error"]


def test_env_command():
    result = runner.invoke(app, ["env", "--device", "cpu"])
    assert result.exit_code == 0
    for field in ("torch_version", "git_sha", "nvml", torch.__version__):
        assert field in result.output


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_variants_command(fmt):
    result = runner.invoke(app, ["variants", "--format", fmt])
    assert result.exit_code == 0
    assert "xsmqa" in result.output and "swa-xsqa" in result.output
    if fmt == "csv":
        lines = result.output.strip().splitlines()
        assert lines[0] == "variant,n_heads,n_q_heads,n_kv_heads,window,params,attn_flops_vs_mha,kv_cache_bytes_per_token"
        assert len(lines) == 12
        assert lines[1] == "mha,16,16,16,,11940096,1.0,8192"


def test_variants_bad_format():
    result = runner.invoke(app, ["variants", "--format", "xml"])
    assert result.exit_code == 2 and "choose one of: table, csv, json" in result.output
